"""``instrument()`` / ``uninstrument()`` and the small functions around them."""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from agentguard import _state, _tool
from agentguard._errors import internal_error, internal_error_counts
from agentguard._guard import Guard, PolicyStage
from agentguard.config import ConfigError, resolve_config

__all__ = ["flush", "get_guard", "instrument", "stats", "uninstrument"]

_atexit_registered = False


def _normalise_policy(policy: Any) -> list[Any] | None:
    """``policy=`` may be one item or a list; each item a file path, a callable or a policy object."""
    if policy is None:
        return None
    if isinstance(policy, (str, bytes, os.PathLike)) or callable(policy) or \
            isinstance(policy, PolicyStage):
        return [policy]
    if isinstance(policy, Sequence):
        return list(policy)
    raise ConfigError(
        f"policy: expected a file path, a callable, a policy object or a list of them, got {policy!r}"
    )


def _policies(items: Sequence[Any]) -> list[Any]:
    """The policy stages named by the configuration, in order; policy files are loaded here, so
    a mistake in one fails ``instrument()`` with the file, line and field."""
    from agentguard.policy._setup import load_policy_items

    return load_policy_items(items)


def _attach_aibom(guard: Guard) -> None:
    """The runtime AI-BOM stage, when declared files or a models allow-list are configured (or
    :func:`agentguard.aibom.enable` was called since the last ``uninstrument()``)."""
    config = guard.config
    aibom = sys.modules.get("agentguard.aibom")
    enabled_before = aibom is not None and getattr(aibom, "_settings", None) is not None
    if not (config.aibom_declared or config.aibom_models or enabled_before):
        return
    from agentguard import aibom as bom
    from agentguard.aibom._declared import DeclaredError

    # The AI-BOM's exit handler (its last emission) must run before the one that closes the
    # export pipeline: atexit runs handlers in reverse order of registration.
    _register_atexit()
    try:
        if config.aibom_declared or config.aibom_models:
            bom.attach(guard, bom._settings_from_config(guard))
        else:
            bom.attach(guard)
    except DeclaredError as exc:
        raise ConfigError(f"aibom: {exc}") from None


def _build_stages(guard: Guard) -> None:
    """Attach the pipeline stages the configuration asks for (detectors, baseline, sensors)."""
    from agentguard import sensors
    from agentguard.policy._setup import attach_policies

    # First: it validates disabled_rules, and nothing has started yet if that fails.
    attach_policies(guard)

    if guard.config.injection_detection:
        from agentguard.detectors import InjectionDetector, InjectionSettings

        guard.add_detector(InjectionDetector(InjectionSettings.from_config(guard.config)))

    _attach_aibom(guard)

    # Before the sensor starts: a profile file that cannot be used fails instrument() here.
    if guard.config.profile or (_state.guard is not None and _state.guard.baseline is not None):
        from agentguard.baseline.stage import configure as configure_baseline

        configure_baseline(guard, _state.guard)

    try:
        if guard.config.runtime_sensor:
            sensors.start(guard)
        else:
            sensors.stop()
    except Exception as exc:
        internal_error("runtime sensor start", exc)


def instrument(
    *,
    service_name: str | None = None,
    mode: str | None = None,
    policy: Any = None,
    on_finding: Callable[..., Any] | None = None,
    exporter: Any = None,
    capture_content: str | None = None,
    max_content_length: int | None = None,
    integrations: Sequence[str] | None = None,
    disabled_integrations: Sequence[str] | None = None,
    otlp_endpoint: str | None = None,
    otlp_protocol: str | None = None,
    collector_endpoint: str | None = None,
    findings_file: str | None = None,
    fail_closed: bool | None = None,
    max_queue_size: int | None = None,
    export_timeout: float | None = None,
    on_block: str | None = None,
    on_policy_error: str | None = None,
    builtin_rules: bool | None = None,
    disabled_rules: Sequence[str] | None = None,
    injection_detection: bool | None = None,
    runtime_sensor: bool | None = None,
    propagate_context: bool | None = None,
    profile: str | None = None,
    aibom_declared: Sequence[str] | None = None,
    aibom_models: str | None = None,
    aibom_block: bool | None = None,
    tracer_provider: Any = None,
) -> Guard:
    """Start guarding this process: patch the available frameworks and begin tracing.

    Safe to call again: a second call replaces the configuration (and the export pipeline)
    without patching anything twice. Every keyword also reads an ``AGENTGUARD_*`` variable.
    """
    from agentguard import integrations as registry
    from agentguard import sensors

    # A tool call configuring agentguard again is reported (and refused in enforce mode).
    sensors.before_instrument()
    config = resolve_config(
        {
            "service_name": service_name,
            "mode": mode,
            "on_finding": on_finding,
            "exporter": exporter,
            "capture_content": capture_content,
            "max_content_length": max_content_length,
            "integrations": list(integrations) if integrations is not None else None,
            "disabled_integrations": (
                list(disabled_integrations) if disabled_integrations is not None else None
            ),
            "otlp_endpoint": otlp_endpoint,
            "otlp_protocol": otlp_protocol,
            "collector_endpoint": collector_endpoint,
            "findings_file": findings_file,
            "fail_closed": fail_closed,
            "max_queue_size": max_queue_size,
            "export_timeout": export_timeout,
            "policy": _normalise_policy(policy),
            "on_block": on_block,
            "on_policy_error": on_policy_error,
            "builtin_rules": builtin_rules,
            "disabled_rules": list(disabled_rules) if disabled_rules is not None else None,
            "injection_detection": injection_detection,
            "runtime_sensor": runtime_sensor,
            "propagate_context": propagate_context,
            "profile": profile,
            "aibom_declared": list(aibom_declared) if aibom_declared is not None else None,
            "aibom_models": aibom_models,
            "aibom_block": aibom_block,
        }
    )
    policies = _policies(config.policy)
    wanted = config.integrations if config.integrations is not None else list(registry.AVAILABLE)
    unknown = [name for name in [*wanted, *config.disabled_integrations]
               if name not in registry.AVAILABLE]
    if unknown:
        raise ConfigError(
            f"integrations: unknown integration(s) {', '.join(unknown)}; "
            f"available: {', '.join(registry.AVAILABLE)}"
        )
    wanted = [name for name in wanted if name not in config.disabled_integrations]
    with _state.lock:
        from agentguard._telemetry import build_telemetry

        telemetry = build_telemetry(config, tracer_provider)
        guard = Guard(config, telemetry.tracer, _state.conversations, policies=policies)
        try:
            _build_stages(guard)
        except BaseException:
            # Nothing was switched over yet: close what this call built, keep the old set-up.
            telemetry.shutdown(timeout=0.5, keep_exporter=config.exporter)
            raise
        previous = _state.telemetry
        _state.telemetry = telemetry
        _state.guard = guard
        if previous is not None:
            previous.shutdown(timeout=2.0, keep_exporter=config.exporter, successor=telemetry)
        registry.disable([name for name in registry.AVAILABLE if name not in wanted])
        registry.enable(wanted)
        _state.enabled_integrations = set(wanted)
        _register_atexit()
    return guard


def uninstrument() -> None:
    """Stop guarding: remove every patch, flush and close the export pipeline."""
    from agentguard import integrations as registry
    from agentguard import sensors

    # A tool call switching agentguard off is reported (and refused in enforce mode).
    sensors.before_uninstrument()
    aibom = sys.modules.get("agentguard.aibom")
    if aibom is not None:
        # The inventory's last changes go out while the export pipeline is still open; enable()
        # lasts until uninstrument().
        aibom._before_uninstrument()
    with _state.lock:
        registry.disable()
        sensors.stop()
        _state.enabled_integrations = set()
        # Tool calls a model asked for under this instrumentation are not answered by the next.
        _tool._pending.clear()
        stopped, _state.guard = _state.guard, None
        telemetry, _state.telemetry = _state.telemetry, None
    if stopped is not None and stopped.baseline is not None:
        # Saved once nothing is patched any more: a learned profile, written atomically.
        from agentguard.baseline.stage import finish as finish_baseline

        finish_baseline(stopped)
    if telemetry is not None:
        try:
            telemetry.shutdown(timeout=5.0)
        except Exception as exc:
            internal_error("telemetry shutdown", exc)
        # Kept so the outcome of the final flush can still be read from stats().
        _state.last_export_stats = telemetry.stats()


def get_guard() -> Guard | None:
    """The active Guard, or ``None`` when agentguard is not instrumented."""
    return _state.guard


def flush(timeout: float = 5.0) -> bool:
    """Export every finished span now; returns ``False`` if the timeout ran out."""
    telemetry = _state.telemetry
    return telemetry.flush(timeout) if telemetry is not None else True


def stats() -> dict[str, Any]:
    """Counters: spans exported and dropped, findings emitted, internal errors contained."""
    telemetry = _state.telemetry
    guard = _state.guard
    return {
        **(telemetry.stats() if telemetry is not None else _state.last_export_stats),
        "findings": guard.findings_emitted if guard is not None else 0,
        "conversations_evicted": _state.conversations.evicted,
        "internal_errors": internal_error_counts(),
    }


def _at_exit() -> None:
    telemetry = _state.telemetry
    if telemetry is not None:
        try:
            telemetry.shutdown(timeout=min(5.0, telemetry_timeout()))
        except Exception as exc:
            internal_error("exit flush", exc)


def telemetry_timeout() -> float:
    guard = _state.guard
    return guard.config.export_timeout if guard is not None else 5.0


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(_at_exit)
        _atexit_registered = True
