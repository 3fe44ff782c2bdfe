"""Model hub downloads: ``huggingface_hub`` and ``transformers`` ``from_pretrained``, when present.

Patched with wrapt post-import hooks, so nothing is imported here: a process that never imports
these libraries pays nothing. Each wrapper calls through first and records what the call
resolved (repo id, revision, file, local path) afterwards, then hands a ``ModelLoad`` event with
the repo id to the Guard, so the models allow-list applies to hub models as to local files.
"""

from __future__ import annotations

import os
import time
from typing import Any

import wrapt

from agentguard._errors import internal_error
from agentguard.events import ModelLoad
from agentguard.sensors._paths import model_format

__all__ = ["install", "installed_targets"]

_installed: set[str] = set()


def installed_targets() -> set[str]:
    """The hub entry points patched so far (``module.function``)."""
    return set(_installed)


def _revision(revision: Any, local_path: str | None) -> str | None:
    """The revision asked for, else the commit the hub cache resolved it to (``snapshots/<sha>``)."""
    if isinstance(revision, str) and revision:
        return revision
    if local_path:
        parts = local_path.replace(os.sep, "/").split("/")
        if "snapshots" in parts:
            index = parts.index("snapshots")
            if index + 1 < len(parts):
                return parts[index + 1]
    return None


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


def _from_pretrained(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                     ) -> Any:
    result = wrapped(*args, **kwargs)
    try:
        name = _arg(args, kwargs, 0, "pretrained_model_name_or_path")
        owner = getattr(instance, "__name__", type(instance).__name__)
        if isinstance(name, (str, os.PathLike)) and not os.path.exists(name):
            # A hub repo id (a local directory is already seen by the sensor's file opens).
            _report(f"transformers.{owner}.from_pretrained", os.fspath(name),
                    kwargs.get("revision"), None, None)
    except Exception as exc:
        internal_error("aibom from_pretrained", exc)
    return result


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


def _patch_transformers(module: Any) -> None:
    # PreTrainedModel.from_pretrained is where every Auto* and model class ends; PEFT adapters
    # load through the same call on the base model.
    key = "transformers.modeling_utils.PreTrainedModel.from_pretrained"
    if key in _installed:
        return
    try:
        wrapt.wrap_function_wrapper("transformers.modeling_utils",
                                    "PreTrainedModel.from_pretrained", _from_pretrained)
        _installed.add(key)
    except Exception as exc:
        internal_error(f"aibom patch {key}", exc)


_hooks_registered = False


def install() -> None:
    """Patch the hub libraries now if imported, else when they are (once per process)."""
    global _hooks_registered
    if _hooks_registered:
        return
    _hooks_registered = True
    wrapt.register_post_import_hook(_patch_hub, "huggingface_hub")
    wrapt.register_post_import_hook(_patch_transformers, "transformers.modeling_utils")
