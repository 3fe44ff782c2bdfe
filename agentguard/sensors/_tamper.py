"""Tamper tripwires: code that tries to switch agentguard off produces a finding.

Covered: ``uninstrument()`` called from inside a tool call; assignments to agentguard's active
Guard or telemetry (``agentguard._state``) from anywhere but agentguard's own API; replacing the
code, defaults or keyword defaults of the audit hook, its handlers and wrappers, or the Guard's
judgement (the ``object.__setattr__`` audit event); and removing the sensor's process-spawn
patches. Inside a tool call in ``enforce`` mode the attempt is refused with
:class:`~agentguard.sensors._emit.OperationBlocked`; elsewhere it is reported.

This is a tripwire, not a sandbox: Python code in the same process can always reach further
(``ctypes``, writing a module's ``__dict__``). The kernel sensor of the collector sees what such
code does next.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from agentguard import _state as _agentguard_state
from agentguard._context import current_frame
from agentguard._errors import internal_error
from agentguard.findings import Decision
from agentguard.sensors import _state
from agentguard.sensors._emit import (
    RULE_TAMPER,
    OperationBlocked,
    emit_native,
    native_finding,
    rule_enabled,
)

if TYPE_CHECKING:
    from agentguard._guard import Guard

__all__ = [
    "CODE_ATTRIBUTES",
    "before_uninstrument",
    "check_patches",
    "guard_state_module",
    "on_setattr",
    "protect",
    "report_tamper",
]

# Attributes of agentguard._state that switch agentguard off when replaced.
_WATCHED = frozenset({"guard", "telemetry"})
# The only module allowed to replace them.
_OWNER = "agentguard._api"
CODE_ATTRIBUTES = frozenset({"__code__", "__defaults__", "__kwdefaults__"})


def report_tamper(guard: Guard, reason: str, evidence: dict[str, Any], what: str) -> None:
    """Emit a tamper finding; refuse (raise) when it is a block inside a tool call."""
    if not rule_enabled(guard, RULE_TAMPER):
        return
    _state.counters["tamper"] += 1
    in_tool = current_frame().tool is not None
    factory = Decision.block if in_tool else Decision.alert
    decision = factory(reason, "critical", rule_id=RULE_TAMPER, category="runtime",
                       evidence=evidence)
    emit_native(guard, native_finding(guard, "tamper", decision), what)


def _sensor_guard() -> Guard | None:
    guard = _agentguard_state.guard
    if guard is None or not guard.config.runtime_sensor:
        return None
    return guard


def before_uninstrument() -> None:
    """Called by ``uninstrument()``: a tool call switching agentguard off is tampering."""
    guard = _sensor_guard()
    if guard is None or current_frame().tool is None or _state.local.state:
        return
    try:
        report_tamper(guard, "a tool call tried to switch agentguard off (uninstrument)",
                      {"call": "agentguard.uninstrument"}, "agentguard.uninstrument()")
    except OperationBlocked:
        raise
    except Exception as exc:
        internal_error("sensor tamper uninstrument", exc)


class _GuardedStateModule(types.ModuleType):
    """The type of ``agentguard._state`` once the sensor runs: replacing its Guard or telemetry
    from anywhere but agentguard's API is reported."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _WATCHED:
            _check_state_write(self, name)
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if name in _WATCHED:
            _check_state_write(self, name)
        super().__delattr__(name)


def _check_state_write(module: types.ModuleType, name: str) -> None:
    try:
        caller = sys._getframe(2)
        origin = caller.f_globals.get("__name__")
        if origin == _OWNER:
            return
        guard = module.__dict__.get("guard")
        if guard is None or not guard.config.runtime_sensor or _state.local.state:
            return
        evidence = {"attribute": f"agentguard._state.{name}", "module": origin,
                    "file": caller.f_code.co_filename, "line": caller.f_lineno}
    except Exception as exc:
        internal_error("sensor tamper state", exc)
        return
    try:
        report_tamper(guard, f"agentguard's active {name} was replaced outside "
                             "instrument()/uninstrument()", evidence, f"replacing agentguard's {name}")
    except OperationBlocked:
        raise
    except Exception as exc:
        internal_error("sensor tamper state", exc)


def guard_state_module() -> None:
    """Watch assignments to ``agentguard._state`` (once; the watch only reads, never blocks
    agentguard's own API)."""
    module = sys.modules.get("agentguard._state")
    if module is None or isinstance(module, _GuardedStateModule):
        return
    module.__class__ = _GuardedStateModule


def protect(functions: frozenset[Any]) -> None:
    """Remember the functions whose code must not change."""
    _state.protected = _state.protected | functions


def on_setattr(guard: Guard, args: tuple[Any, ...]) -> None:
    """``object.__setattr__`` audit event: replacing a protected function's code is tampering."""
    if len(args) < 2 or args[1] not in CODE_ATTRIBUTES:
        return
    target = args[0]
    try:
        if target not in _state.protected:
            return
    except TypeError:
        return
    name = getattr(target, "__qualname__", repr(target))
    module = getattr(target, "__module__", None)
    report_tamper(guard, f"code of agentguard's {module}.{name} was being replaced ({args[1]})",
                  {"function": f"{module}.{name}", "attribute": args[1]},
                  f"replacing {name}.{args[1]}")


def _still_ours(current: Any, wrapper: Any) -> bool:
    """Whether ``current`` is our wrapper, or a wrapper stacked on it (``__wrapped__`` chain)."""
    for _ in range(8):
        if current is wrapper:
            return True
        current = getattr(current, "__wrapped__", None)
        if current is None:
            return False
    return False


def check_patches(guard: Guard) -> None:
    """Report (once each) the sensor's patches that someone removed while it runs."""
    for owner, attribute, _original, wrapper in list(_state.patches):
        current = owner.__dict__.get(attribute) if hasattr(owner, "__dict__") else None
        if _still_ours(current, wrapper):
            continue
        key = (id(owner), attribute)
        if key in _state.reported_patches:
            continue
        _state.reported_patches.add(key)
        owner_name = getattr(owner, "__qualname__", getattr(owner, "__name__", repr(owner)))
        report_tamper(guard, f"agentguard's patch of {owner_name}.{attribute} was removed",
                      {"patch": f"{owner_name}.{attribute}"}, f"removing {attribute}")
