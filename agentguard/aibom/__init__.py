"""Runtime AI-BOM: the models, frameworks and packages an agent actually loads, as CycloneDX.

Build-time SBOMs and image scans list what was declared; only the running process knows what
it loaded. ``enable()`` attaches a pipeline stage to the active Guard that records every module,
model call and model artifact the runtime sensor and the integrations see, and reports what the
declarations do not cover (``BOM001``-``BOM004``, category ``supply-chain``). ``build()`` returns
the CycloneDX 1.6 document of the running process.

    guard = agentguard.instrument()
    agentguard.aibom.enable(declared=["requirements.txt"], models_allowlist="models.yaml")
    ...
    document = agentguard.aibom.build()

Importing this package patches nothing.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import tempfile
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agentguard.aibom._declared import (
    AllowedModel,
    Declared,
    DeclaredError,
    DeclaredPackage,
    ModelAllowList,
    load_declared,
)
from agentguard.aibom._inventory import AI_FRAMEWORKS, Inventory, inventory
from agentguard.aibom._stage import (
    RULE_HASH_MISMATCH,
    RULE_PICKLE_MODEL,
    RULE_UNDECLARED_MODEL,
    RULE_UNDECLARED_PACKAGE,
    RULES,
    AibomStage,
    Settings,
)
from agentguard.aibom._vulns import Reachability, reachability

if TYPE_CHECKING:
    from agentguard._guard import Guard

__all__ = [
    "AI_FRAMEWORKS",
    "RULES",
    "RULE_HASH_MISMATCH",
    "RULE_PICKLE_MODEL",
    "RULE_UNDECLARED_MODEL",
    "RULE_UNDECLARED_PACKAGE",
    "AibomStage",
    "AllowedModel",
    "Declared",
    "DeclaredError",
    "DeclaredPackage",
    "Inventory",
    "ModelAllowList",
    "Reachability",
    "Settings",
    "attach",
    "build",
    "build_json",
    "disable",
    "enable",
    "inventory",
    "load_declared",
    "reachability",
    "stage",
    "validate",
    "write",
]

_lock = threading.Lock()
_settings: Settings | None = None
MAX_VALIDATION_ERRORS = 100


def _declared_from(declared: Sequence[str | os.PathLike[str]] | Declared | None,
                   models_allowlist: Any) -> Declared | None:
    if isinstance(declared, Declared):
        if models_allowlist is not None:
            declared = declared.model_copy(deep=True)
            declared.merge(load_declared((), models_allowlist))
        return declared
    if not declared and models_allowlist is None:
        return None
    return load_declared(list(declared or ()), models_allowlist)


def stage(guard: Guard | None = None) -> AibomStage | None:
    """The AI-BOM stage attached to ``guard`` (the active one by default), if any."""
    if guard is None:
        from agentguard import _state

        guard = _state.guard
    if guard is None:
        return None
    for detector in guard.detectors:
        if isinstance(detector, AibomStage):
            return detector
    return None


def attach(guard: Guard, settings: Settings | None = None) -> AibomStage:
    """Attach the AI-BOM stage (and its finding sink) to ``guard``, replacing an earlier one.

    Without ``settings`` it uses those of the last :func:`enable`, else the configuration's
    ``aibom_declared`` / ``aibom_models`` / ``aibom_block`` settings when they exist.
    """
    from agentguard.aibom import _hub

    if settings is None:
        settings = _settings or _settings_from_config(guard)
    old = stage(guard)
    if old is not None:
        guard.remove_detector(old)
        guard.remove_sink(old.sink)
    inv = inventory()
    # Modules imported since the inventory started but before this Guard's sensor did (the
    # sensor reports only first loads it sees) would otherwise be missed.
    inv.snapshot()
    created = AibomStage(settings, inv)
    inv.on_hashed = created.hashed  # late digests are judged by the stage in place
    guard.add_detector(created)
    guard.add_sink(created.sink)
    _hub.install()
    from agentguard.aibom import _emit

    _emit.start(_emit.interval_from(settings.emit_interval, guard.config))
    return created


def _settings_from_config(guard: Guard) -> Settings:
    config = guard.config
    files = getattr(config, "aibom_declared", None) or []
    models = getattr(config, "aibom_models", None)
    declared = load_declared(list(files), models) if files or models else None
    return Settings(declared=declared, block=bool(getattr(config, "aibom_block", False)),
                    emit_interval=getattr(config, "aibom_emit_interval", None))


def enable(declared: Sequence[str | os.PathLike[str]] | Declared | None = None, *,
           models_allowlist: str | os.PathLike[str] | ModelAllowList | None = None,
           block: bool = False, ignore_own_dependencies: bool = True, transitive: bool = True,
           allow: Sequence[str] = (), emit_interval: float | None = None) -> AibomStage:
    """Start the runtime AI-BOM on the active Guard (call after ``agentguard.instrument()``).

    ``declared``: requirements files, ``pyproject.toml``, ``uv.lock``, ``poetry.lock`` (a bad
    file raises :class:`DeclaredError` naming it). ``models_allowlist``: a YAML/JSON file of
    allowed model ids, artifact hashes and sources. ``block``: the BOM rules block in ``enforce``
    mode instead of alerting. ``allow``: distributions allowed without being declared.
    ``emit_interval``: seconds between emissions of the inventory's changes as
    ``agentguard.aibom`` spans (default ``AGENTGUARD_AIBOM_EMIT_INTERVAL``, else 60; 0: never).
    """
    global _settings
    from packaging.utils import canonicalize_name

    from agentguard import _state

    settings = Settings(declared=_declared_from(declared, models_allowlist), block=block,
                        ignore_own_dependencies=ignore_own_dependencies, transitive=transitive,
                        extra_allowed=[canonicalize_name(name) for name in allow],
                        emit_interval=emit_interval)
    guard = _state.guard
    if guard is None:
        raise RuntimeError("agentguard.aibom.enable(): call agentguard.instrument() first")
    with _lock:
        _settings = settings
        return attach(guard, settings)


def disable() -> None:
    """Detach the AI-BOM stage from the active Guard (the inventory is kept)."""
    global _settings
    from agentguard import _state
    from agentguard.aibom import _emit

    _emit.final()  # what changed since the last emission, while the stage is still attached
    _emit.emitter().stop()
    with _lock:
        _settings = None
        guard = _state.guard
        old = stage(guard) if guard is not None else None
        inventory().on_hashed = None
        if guard is not None and old is not None:
            guard.remove_detector(old)
            guard.remove_sink(old.sink)


def _before_uninstrument() -> None:
    """``uninstrument()``: send the inventory's last changes while the export pipeline is open;
    :func:`enable` lasts until here."""
    global _settings
    from agentguard.aibom import _emit

    _emit.final()
    _emit.emitter().stop()
    _settings = None


def build(declared: Sequence[str | os.PathLike[str]] | Declared | None = None, *,
          models_allowlist: str | os.PathLike[str] | ModelAllowList | None = None,
          include_installed: bool = False, settle_timeout: float = 30.0) -> dict[str, Any]:
    """The CycloneDX 1.6 document (a JSON-ready dict) of what this process has loaded so far.

    Without ``declared`` the declarations given to :func:`enable` are used. Digests the sensor
    left to the hash thread are waited for, at most ``settle_timeout`` seconds: an artifact it
    has not reached by then has no digest and is marked ``agentguard:sha256_pending``.
    """
    document: dict[str, Any] = json.loads(build_json(
        declared, models_allowlist=models_allowlist, include_installed=include_installed,
        settle_timeout=settle_timeout))
    return document


def build_json(declared: Sequence[str | os.PathLike[str]] | Declared | None = None, *,
               models_allowlist: str | os.PathLike[str] | ModelAllowList | None = None,
               include_installed: bool = False, settle_timeout: float = 30.0) -> str:
    """Like :func:`build`, as CycloneDX JSON text."""
    from agentguard import _state
    from agentguard.aibom._cyclonedx import to_bom, to_json

    resolved = _declared_from(declared, models_allowlist)
    current = _settings or Settings()
    settings = Settings(declared=resolved if resolved is not None else current.declared,
                        ignore_own_dependencies=current.ignore_own_dependencies,
                        transitive=current.transitive, extra_allowed=current.extra_allowed)
    inv = inventory()
    inv.snapshot()  # anything imported while no sensor watched (between instrument() calls)
    inv.settle(settle_timeout)
    guard = _state.guard
    service = guard.config.service_name if guard is not None else \
        os.environ.get("AGENTGUARD_SERVICE_NAME") or os.environ.get("OTEL_SERVICE_NAME") or "agent"
    return to_json(to_bom(inv, settings, service_name=service,
                          include_installed=include_installed))


def write(path: str | os.PathLike[str], **kwargs: Any) -> str:
    """Write :func:`build_json` to ``path`` atomically (temporary file, then rename)."""
    text = build_json(**kwargs)
    target = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(target)
    handle, temporary = tempfile.mkstemp(prefix=".aibom-", suffix=".json", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        # mkstemp creates the file private; a BOM is a report others read (no secrets in it).
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return target


def validate(document: str | dict[str, Any]) -> list[str]:
    """Errors of a CycloneDX 1.6 JSON document against the official schema (empty when valid).

    Needs ``cyclonedx-python-lib[json-validation]``.
    """
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = document if isinstance(document, str) else json.dumps(document)
    errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text, all_errors=True)
    if errors is None:
        return []
    out: list[str] = []
    # An iterable of the library's errors, each wrapping a jsonschema error in ``data``.
    for error in itertools.islice(errors, MAX_VALIDATION_ERRORS):
        detail = getattr(error, "data", error)
        message = str(getattr(detail, "message", detail))
        where = getattr(detail, "json_path", None)
        line = f"{where}: {message}" if isinstance(where, str) else message
        out.append(line if len(line) <= 500 else line[:499] + "…")
    return out
