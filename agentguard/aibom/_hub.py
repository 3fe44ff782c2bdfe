"""Model hub downloads: ``huggingface_hub`` and ``transformers`` ``from_pretrained``, when present.

Patched with wrapt post-import hooks, so nothing is imported here: a process that never imports
these libraries pays nothing. Each wrapper calls through first and records what the call
resolved (repo id, revision, file, local path) afterwards, then hands a ``ModelLoad`` event with
the repo id to the Guard, so the models allow-list applies to hub models as to local files.
A ``transformers`` load (configuration, tokenizer, model) also inventories the files of the model
directory it read from (a local directory, or the hub cache's snapshot of the resolved commit);
their digests are taken by the inventory's hash thread.
"""

from __future__ import annotations

import contextvars
import os
import re
import time
from typing import Any

import wrapt

from agentguard._errors import internal_error
from agentguard.events import ModelLoad
from agentguard.sensors._paths import model_format

__all__ = ["install", "installed_targets"]

_installed: set[str] = set()
_COMMIT = re.compile(r"[0-9a-f]{40}")


def installed_targets() -> set[str]:
    """The hub entry points patched so far (``module.function``)."""
    return set(_installed)


def _revision(revision: Any, local_path: str | None) -> str | None:
    """The commit the hub cache resolved (``snapshots/<sha>``), else the revision asked for.

    A branch or tag (``main``, as ``transformers`` passes it) moves; the commit is what loaded.
    """
    if isinstance(revision, str) and _COMMIT.fullmatch(revision):
        return revision
    if local_path:
        parts = local_path.replace(os.sep, "/").split("/")
        if "snapshots" in parts:
            index = parts.index("snapshots")
            if index + 1 < len(parts) and _COMMIT.fullmatch(parts[index + 1]):
                return parts[index + 1]
    return revision if isinstance(revision, str) and revision else None


def _report(library: str, repo_id: Any, revision: Any, filename: Any, result: Any) -> None:
    from agentguard import _state
    from agentguard.aibom._inventory import inventory

    guard = _state.guard
    if guard is None or not isinstance(repo_id, str):
        return
    context = guard.context_here()
    local_path = os.fspath(result) if isinstance(result, (str, os.PathLike)) else None
    resolved = _revision(revision, local_path)
    inv = inventory()
    inv.record_download(repo_id, resolved, filename if isinstance(filename, str) else None,
                        local_path, library, context)
    # A file is the artifact itself (its digest is taken off the hot path); a snapshot directory
    # is known by its repo id.
    path = local_path if local_path is not None and os.path.isfile(local_path) else None
    inv.expect_revision(path or f"hub:{repo_id}", resolved)
    if guard.has_stages:
        fmt = model_format(path) if path is not None else None
        guard.emit_event(ModelLoad(context=context, timestamp=time.time(), path=path,
                                   format=fmt, sha256=None, size=None, source=library,
                                   model_id=repo_id))


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else None


def _hf_download(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                 ) -> Any:
    result = wrapped(*args, **kwargs)
    try:
        _report("huggingface_hub.hf_hub_download", _arg(args, kwargs, 0, "repo_id"),
                kwargs.get("revision"), _arg(args, kwargs, 1, "filename"), result)
    except Exception as exc:
        internal_error("aibom hf_hub_download", exc)
    return result


def _hf_snapshot(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                 ) -> Any:
    result = wrapped(*args, **kwargs)
    try:
        _report("huggingface_hub.snapshot_download", _arg(args, kwargs, 0, "repo_id"),
                kwargs.get("revision"), None, result)
    except Exception as exc:
        internal_error("aibom snapshot_download", exc)
    return result


# Outermost transformers loading call of this thread/task: nested ones (AutoTokenizer → config →
# tokenizer class) are one load, reported once by the call the program made.
_loading: contextvars.ContextVar[bool] = contextvars.ContextVar("agentguard_aibom_loading",
                                                                default=False)
MAX_MODEL_FILES = 64


def _from_pretrained(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                     ) -> Any:
    if _loading.get():
        return wrapped(*args, **kwargs)
    token = _loading.set(True)
    try:
        result = wrapped(*args, **kwargs)
    finally:
        _loading.reset(token)
    try:
        name = _arg(args, kwargs, 0, "pretrained_model_name_or_path")
        owner = getattr(instance, "__name__", type(instance).__name__)
        caller = getattr(wrapped, "__name__", "from_pretrained")
        if isinstance(name, (str, os.PathLike)):
            _report_pretrained(f"transformers.{owner}.{caller}", os.fspath(name), kwargs)
    except Exception as exc:
        internal_error("aibom from_pretrained", exc)
    return result


def _hub_snapshot(repo_id: str, revision: str | None, cache_dir: Any) -> tuple[str | None, str | None]:
    """(the commit, the snapshot directory) the hub cache holds for ``repo_id`` at ``revision``."""
    from huggingface_hub import constants

    root = os.fspath(cache_dir) if isinstance(cache_dir, (str, os.PathLike)) else \
        constants.HF_HUB_CACHE
    folder = os.path.join(root, "models--" + repo_id.replace("/", "--"))
    commit = revision if revision and _COMMIT.fullmatch(revision) else None
    if commit is None:
        try:
            with open(os.path.join(folder, "refs", revision or "main"), encoding="utf-8") as ref:
                commit = ref.read(64).strip() or None
        except OSError:
            return None, None
    snapshot = os.path.join(folder, "snapshots", commit) if commit else None
    return commit, snapshot if snapshot and os.path.isdir(snapshot) else None


def _model_files(directory: str, subfolder: Any) -> list[tuple[str, str]]:
    """(relative name, path) of the regular files of a model directory (bounded, sorted)."""
    if isinstance(subfolder, str) and subfolder:
        directory = os.path.join(directory, subfolder)
    found: list[tuple[str, str]] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))[:16]
        for filename in sorted(files):
            if filename.startswith("."):
                continue
            path = os.path.join(root, filename)
            if os.path.isfile(path):  # follows the hub cache's links to its blobs
                found.append((os.path.relpath(path, directory), path))
            if len(found) >= MAX_MODEL_FILES:
                return found
    return found


def _report_pretrained(library: str, name: str, kwargs: dict[str, Any]) -> None:
    """Record a ``from_pretrained`` load: the model (repo id and commit, or local directory), and
    each of its files as an artifact whose digest the hash thread takes."""
    from agentguard import _state
    from agentguard.aibom._inventory import DIRECTORY, inventory

    guard = _state.guard
    if guard is None:
        return
    revision = kwargs.get("revision") if isinstance(kwargs.get("revision"), str) else None
    local = os.path.exists(name)
    if local:
        model_id = os.path.abspath(name)
        directory: str | None = model_id if os.path.isdir(model_id) else None
        files = _model_files(directory, kwargs.get("subfolder")) if directory else \
            [(os.path.basename(model_id), model_id)]
        commit = None
        key = model_id
    else:
        model_id = name
        commit, directory = _hub_snapshot(name, revision, kwargs.get("cache_dir"))
        files = _model_files(directory, kwargs.get("subfolder")) if directory else []
        key = f"hub:{name}"
    context = guard.context_here()
    inv = inventory()
    now = time.time()
    resolved = commit or revision
    for relative, path in files:
        if not local:
            inv.record_download(name, resolved, relative, path, library, context)
        inv.expect_revision(path, resolved)
        # The files are inventoried (and hashed off the hot path) as parts of the model; the
        # model itself is judged once, below.
        inv.record_artifact(ModelLoad(context=context, timestamp=now, path=path,
                                      format=model_format(path), sha256=None, size=None,
                                      source=library, model_id=model_id))
    if not files and not local:
        inv.record_download(name, resolved, None, None, library, context)
    inv.expect_revision(key, resolved)
    if guard.has_stages:
        guard.emit_event(ModelLoad(context=context, timestamp=now,
                                   path=model_id if local else None,
                                   format=DIRECTORY if local and directory else None,
                                   sha256=None, size=None, source=library, model_id=model_id))


def _patch_hub(module: Any) -> None:
    # The public functions; file_download holds the implementation other libraries import.
    for target, name, wrapper in (("huggingface_hub", "hf_hub_download", _hf_download),
                                  ("huggingface_hub", "snapshot_download", _hf_snapshot),
                                  ("huggingface_hub.file_download", "hf_hub_download", _hf_download),
                                  ("huggingface_hub._snapshot_download", "snapshot_download",
                                   _hf_snapshot)):
        key = f"{target}.{name}"
        if key in _installed:
            continue
        try:
            wrapt.wrap_function_wrapper(target, name, wrapper)
            _installed.add(key)
        except Exception as exc:
            internal_error(f"aibom patch {key}", exc)


# transformers entry points, by module: every Auto* class and model, config and tokenizer class
# ends in one of them (PEFT adapters load through the base model's from_pretrained). Without
# torch only configurations and tokenizers load, and modeling_utils is never imported.
_TRANSFORMERS_TARGETS: dict[str, tuple[str, ...]] = {
    "transformers.configuration_utils": ("PreTrainedConfig.get_config_dict",
                                         "PretrainedConfig.get_config_dict"),
    "transformers.tokenization_utils_base": ("PreTrainedTokenizerBase.from_pretrained",),
    "transformers.models.auto.configuration_auto": ("AutoConfig.from_pretrained",),
    "transformers.models.auto.tokenization_auto": ("AutoTokenizer.from_pretrained",),
    "transformers.modeling_utils": ("PreTrainedModel.from_pretrained",),
}


def _patch_transformers(module: Any) -> None:
    # The names are alternatives (one per transformers version); the first one present is patched.
    for name in _TRANSFORMERS_TARGETS.get(module.__name__, ()):
        key = f"{module.__name__}.{name}"
        owner, _, attribute = name.partition(".")
        if owner not in vars(module) or attribute not in vars(vars(module)[owner]):
            continue
        if key not in _installed:
            try:
                wrapt.wrap_function_wrapper(module.__name__, name, _from_pretrained)
                _installed.add(key)
            except Exception as exc:
                internal_error(f"aibom patch {key}", exc)
        return


_hooks_registered = False


def install() -> None:
    """Patch the hub libraries now if imported, else when they are (once per process)."""
    global _hooks_registered
    if _hooks_registered:
        return
    _hooks_registered = True
    wrapt.register_post_import_hook(_patch_hub, "huggingface_hub")
    for target in _TRANSFORMERS_TARGETS:
        wrapt.register_post_import_hook(_patch_transformers, target)
