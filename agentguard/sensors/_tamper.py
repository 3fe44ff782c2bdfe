"""Tamper tripwires: code that tries to switch agentguard off produces a finding.

Covered: ``uninstrument()`` or ``instrument()`` called from inside a tool call; assignments to
agentguard's active Guard or telemetry (``agentguard._state``) from anywhere but agentguard's own
API; assigning or deleting any attribute of the active Guard (its mode, stages, configuration)
from code outside agentguard; starting or stopping the sensor (``sensors.start``/``stop``, the
hook's ``activate``) or removing the framework patches (``integrations.disable``, an
integration's ``unpatch``) from anywhere but agentguard's own switches; changing the sensor's own state
(any attribute of ``agentguard.sensors._state`` or of its per-thread object) from outside
agentguard; replacing the code, defaults or keyword defaults of the audit hook, its handlers and
wrappers, or the Guard's judgement (the ``object.__setattr__`` audit event); and removing the
sensor's process-spawn patches. Inside a tool call in ``enforce`` mode the attempt is refused
with :class:`~agentguard.sensors._emit.OperationBlocked`; elsewhere it is reported.

This is a tripwire, not a sandbox: Python code in the same process can always reach further
(``ctypes``, writing a module's ``__dict__``, ``object.__setattr__`` on the Guard or
``threading.local.__setattr__`` on the sensor's per-thread object, entering the sensor's own
``busy()`` block, changing a policy object's own rules). The kernel sensor of the collector sees
what such code does next.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from agentguard import _state as _agentguard_state
from agentguard._errors import internal_error
from agentguard.findings import Decision
from agentguard.sensors import _state
from agentguard.sensors._emit import (
    RULE_TAMPER,
    OperationBlocked,
    emit_native,
    in_tool,
    native_finding,
    rule_enabled,
)

if TYPE_CHECKING:
    from agentguard._guard import Guard

__all__ = [
    "CODE_ATTRIBUTES",
    "before_instrument",
    "before_uninstrument",
    "check_caller",
    "check_patches",
    "guard_attribute_written",
    "guard_state_module",
    "local_written",
    "on_setattr",
    "ours",
    "protect",
    "report_tamper",
]

# Module attributes that switch part of agentguard off when replaced, with the only module
# allowed to replace them and what they are: agentguard's state (its Guard and telemetry), and
# the runtime sensor's hooks in the Guard (repeat counts at span end; whether a stage judges).
_WATCHED: dict[str, tuple[frozenset[str] | None, str, str]] = {
    "agentguard._state": (frozenset({"guard", "telemetry"}), "agentguard._api",
                          "agentguard's active {name} was replaced outside "
                          "instrument()/uninstrument()"),
    "agentguard._guard": (frozenset({"before_span_end", "stages_changed", "attribute_written"}),
                          "agentguard.sensors._hook",
                          "the runtime sensor's {name} hook in agentguard's Guard was replaced "
                          "outside instrument()/uninstrument()"),
    # Every attribute (``None``), written only by the sensor's modules (an owner ending in "."
    # is a package): its per-thread flags, protected functions, patches, the C hook's handle.
    "agentguard.sensors._state": (None, "agentguard.sensors.",
                                  "the runtime sensor's state ({name}) was replaced outside "
                                  "agentguard"),
}
_NOTHING: tuple[frozenset[str] | None, str, str] = (frozenset(), "", "")
CODE_ATTRIBUTES = frozenset({"__code__", "__defaults__", "__kwdefaults__"})


def report_tamper(guard: Guard, reason: str, evidence: dict[str, Any], what: str) -> None:
    """Emit a tamper finding; refuse (raise) when it is a block inside a tool call."""
    if not rule_enabled(guard, RULE_TAMPER):
        return
    _state.counters["tamper"] += 1
    factory = Decision.block if in_tool() else Decision.alert
    decision = factory(reason, "critical", rule_id=RULE_TAMPER, category="runtime",
                       evidence=evidence)
    emit_native(guard, native_finding(guard, "tamper", decision), what)


def _report(guard: Guard, reason: str, evidence: dict[str, Any], what: str, where: str) -> None:
    """:func:`report_tamper` from a watch: the refusal propagates, any other error is agentguard's
    own (reported as ``where``) and never reaches the code being watched."""
    try:
        report_tamper(guard, reason, evidence, what)
    except OperationBlocked:
        raise
    except Exception as exc:
        internal_error(where, exc)


def _sensor_guard() -> Guard | None:
    guard = _agentguard_state.guard
    if guard is None or not guard.config.runtime_sensor:
        return None
    return guard


def before_uninstrument() -> None:
    """Called by ``uninstrument()``: a tool call switching agentguard off is tampering."""
    _from_tool("a tool call tried to switch agentguard off (uninstrument)", "uninstrument")


def before_instrument() -> None:
    """Called by ``instrument()``: a tool call configuring agentguard again (another mode, no
    policy, the sensor off) is tampering."""
    _from_tool("a tool call tried to configure agentguard again (instrument)", "instrument")


def _from_tool(title: str, call: str) -> None:
    guard = _sensor_guard()
    if guard is None or _state.local.state or not in_tool():
        return
    _report(guard, title, {"call": f"agentguard.{call}"}, f"agentguard.{call}()",
            f"sensor tamper {call}")


def ours(module: object) -> bool:
    """Whether ``module`` (a module's ``__name__``) is agentguard or one of its modules."""
    return isinstance(module, str) and (module == "agentguard" or module.startswith("agentguard."))


def guard_attribute_written(guard: Guard, name: str) -> None:
    """``agentguard._guard.attribute_written``: an attribute of the active Guard (its mode,
    stages, configuration, ...) assigned or deleted by code outside agentguard is tampering."""
    try:
        caller = sys._getframe(2)  # this function, Guard.__setattr__, the writer
        origin = caller.f_globals.get("__name__")
        if ours(origin) or guard is not _sensor_guard() or _state.local.state:
            return
        evidence = {"attribute": f"Guard.{name}", "module": origin,
                    "file": caller.f_code.co_filename, "line": caller.f_lineno}
    except Exception as exc:
        internal_error("sensor tamper guard", exc)
        return
    _report(guard, f"agentguard's active Guard was changed ({name}) outside agentguard",
            evidence, f"changing agentguard's Guard ({name})", "sensor tamper guard")


def check_caller(owner: str, call: str, doing: str,
                 what: str = "the runtime sensor was being switched") -> None:
    """Called first by agentguard's own switches (``sensors.start``/``stop``, the hook's
    ``activate``, the framework integrations' ``disable``/``unpatch``): a call from anywhere but
    ``owner`` is tampering (refused in a tool call in enforce mode)."""
    try:
        caller = sys._getframe(2)  # this function, the switch, its caller
        origin = caller.f_globals.get("__name__")
        if origin == owner:
            return
        guard = _sensor_guard()
        if guard is None or _state.local.state:
            return
        evidence = {"call": call, "module": origin, "file": caller.f_code.co_filename,
                    "line": caller.f_lineno}
    except Exception as exc:
        internal_error("sensor tamper switch", exc)
        return
    _report(guard, f"{what} outside instrument()/uninstrument() ({call})", evidence, doing,
            "sensor tamper switch")


class _GuardedModule(types.ModuleType):
    """The type of ``agentguard._state`` and ``agentguard._guard`` once the sensor runs:
    replacing their watched attributes from anywhere but agentguard's own code is reported."""

    def __setattr__(self, name: str, value: Any) -> None:
        names = _WATCHED.get(self.__name__, _NOTHING)[0]
        if names is None or name in names:
            _check_state_write(self, name)
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        names = _WATCHED.get(self.__name__, _NOTHING)[0]
        if names is None or name in names:
            _check_state_write(self, name)
        super().__delattr__(name)


def _check_state_write(module: types.ModuleType, name: str) -> None:
    try:
        _, owner, title = _WATCHED[module.__name__]
        caller = sys._getframe(2)
        origin = caller.f_globals.get("__name__")
        if origin == owner or (owner.endswith(".") and isinstance(origin, str)
                               and origin.startswith(owner)):
            return
        guard = _sensor_guard()
        if guard is None or _state.local.state:
            return
        evidence = {"attribute": f"{module.__name__}.{name}", "module": origin,
                    "file": caller.f_code.co_filename, "line": caller.f_lineno}
    except Exception as exc:
        internal_error("sensor tamper state", exc)
        return
    _report(guard, title.format(name=name), evidence, f"replacing agentguard's {name}",
            "sensor tamper state")


def local_written(name: str) -> None:
    """``_state.on_local_write``: one of the sensor's checked per-thread attributes (``state``
    marks a thread as agentguard's own, which the hook ignores) written by code outside
    agentguard."""
    try:
        caller = sys._getframe(2)  # this function, _Local.__setattr__ or set_local, the writer
        guard = _sensor_guard()
        if guard is None or _state.local.state or ours(caller.f_globals.get("__name__")):
            return
        evidence = {"attribute": f"agentguard.sensors._state.local.{name}",
                    "module": caller.f_globals.get("__name__"),
                    "file": caller.f_code.co_filename, "line": caller.f_lineno}
    except Exception as exc:
        internal_error("sensor tamper thread state", exc)
        return
    _report(guard, f"the runtime sensor's per-thread state ({name}) was changed outside "
                   "agentguard", evidence, f"changing the sensor's thread state ({name})",
            "sensor tamper thread state")


def guard_state_module() -> None:
    """Watch assignments to ``agentguard._state``, to the sensor's hooks in
    ``agentguard._guard``, to the sensor's own state module and its per-thread attributes
    (once; the watch only reads, never blocks agentguard's own code)."""
    _state.on_local_write = local_written
    for name in _WATCHED:
        module = sys.modules.get(name)
        if module is not None and not isinstance(module, _GuardedModule):
            module.__class__ = _GuardedModule


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
