"""In-process runtime sensor: what the agent's process does, attributed to the tool call doing it.

A ``sys.addaudithook`` hook turns process spawns, connections, DNS lookups, sensitive file opens,
module and native library loads and model loads into typed events (``ProcessExec``,
``NetConnect``, ``DnsLookup``, ``FileOpen``, ``ModuleLoad``, ``ModelLoad``) carrying the context
of the tool call running in that thread or asyncio task. Each is judged by the Guard, written as a
span event on the tool's span and, when blocked in ``enforce`` mode, refused with a
:class:`PermissionError` (:class:`OperationBlocked`) before it happens. Child processes started
inside a tool call get ``TRACEPARENT`` and the agent's identity in their environment.

``instrument()`` starts the sensor when ``runtime_sensor`` is on (the default); importing this
package installs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentguard.sensors import _state
from agentguard.sensors._emit import (
    RULE_LOAD_SPAWN,
    RULE_TAMPER,
    RULE_UNSAFE_PICKLE,
    OperationBlocked,
)

if TYPE_CHECKING:
    from agentguard._guard import Guard

# The only module that starts and stops the sensor.
_API = "agentguard._api"

__all__ = [
    "RULE_LOAD_SPAWN",
    "RULE_TAMPER",
    "RULE_UNSAFE_PICKLE",
    "OperationBlocked",
    "before_instrument",
    "before_uninstrument",
    "hook_kind",
    "installed",
    "quiet_thread",
    "start",
    "stats",
    "stop",
]


def start(guard: Guard) -> None:
    """Install the hook (once) and the wrappers; called by ``instrument()`` under its lock (from
    anywhere else it is tampering: reported, and refused in a tool call in enforce mode)."""
    from agentguard import _context, _guard
    from agentguard.sensors import (
        _emit,
        _fspaths,
        _hook,
        _models,
        _modules,
        _patches,
        _propagation,
        _tamper,
    )

    _tamper.check_caller(_API, "agentguard.sensors.start", "pointing the runtime sensor elsewhere")
    _modules.prime()
    # Verdicts cached for datagram destinations belong to the previous configuration.
    _state.datagrams.clear()
    _patches.install()
    _fspaths.install()
    protected: set[Any] = {_hook.HOOK, *_patches.wrapper_functions(),
                           *_fspaths.wrapper_functions(), _context.current_frame}
    for module in (_emit, _fspaths, _hook, _models, _modules, _propagation, _tamper):
        protected.update(value for value in vars(module).values()
                         if callable(value) and getattr(value, "__module__", None) ==
                         module.__name__ and hasattr(value, "__code__"))
    for name in ("evaluate", "emit", "finding_for", "context_here", "emit_event", "__setattr__",
                 "__delattr__"):
        method = getattr(_guard.Guard, name, None)
        if method is not None:
            protected.add(method)
    _tamper.protect(frozenset(protected))
    _tamper.guard_state_module()
    _hook.install()
    _hook.activate(True, guard)


def stop() -> None:
    """Remove the wrappers (the hook stays, and does nothing while agentguard is off); called by
    ``instrument()`` and ``uninstrument()`` (from anywhere else it is tampering, as for
    :func:`start`)."""
    from agentguard.sensors import _hook, _patches, _tamper

    _tamper.check_caller(_API, "agentguard.sensors.stop", "stopping the runtime sensor")
    _hook.activate(False)
    _patches.remove()


def before_uninstrument() -> None:
    """Report (and in ``enforce`` mode refuse) ``uninstrument()`` called from inside a tool."""
    from agentguard.sensors import _tamper

    _tamper.before_uninstrument()


def before_instrument() -> None:
    """Report (and in ``enforce`` mode refuse) ``instrument()`` called from inside a tool."""
    from agentguard.sensors import _tamper

    _tamper.before_instrument()


def quiet_thread() -> None:
    """Mark the calling thread as agentguard's own (the span exporter, the AI-BOM's workers):
    the sensor ignores it.

    Only agentguard's own modules may call it, and never from inside a tool call (whatever
    context the call is made in): any other call is refused, and reported as tampering.
    """
    import sys

    from agentguard import _state as agentguard_state
    from agentguard.sensors import _emit, _tamper

    caller = sys._getframe(1).f_globals.get("__name__")
    inside = _emit.in_tool()
    if _tamper.ours(caller) and not inside:
        _state.set_local("state", _state.QUIET)
        return
    guard = agentguard_state.guard
    if guard is not None and guard.config.runtime_sensor:
        who = "a tool call" if inside else f"code outside agentguard ({caller})"
        _tamper.report_tamper(guard, f"{who} tried to hide its thread from agentguard",
                              {"call": "agentguard.sensors.quiet_thread", "module": caller},
                              "quiet_thread()")


def installed() -> bool:
    """Whether the audit hook is in place (once added, it stays for the life of the process)."""
    return _state.hook_installed


def hook_kind() -> str | None:
    """How the audit hook is entered: ``"native"`` (the C extension), ``"python"``, or ``None``
    before the sensor first started."""
    from agentguard.sensors import _hook

    return _hook.hook_kind()


def stats() -> dict[str, int]:
    """Counters: events seen, span events written and suppressed, blocks, tamper findings, tool
    calls no longer tracked per thread, and with the C hook the events it passed to Python and
    settled itself (of those, the repeats it only counted)."""
    native = _state.native
    if native is not None:
        native.flush()  # repeats counted in C: into span_events_suppressed first
    counters = _state.stats()
    # Tool calls a thread no longer tracks as running (more than 64 at once on one thread).
    from agentguard import _guard

    counters["running_tools_dropped"] = _guard.running_tools_dropped
    if native is not None:
        native_stats = native.stats()
        counters["native_forwarded"] = native_stats["forwarded"]
        counters["native_filtered"] = native_stats["filtered"]
        counters["native_repeats"] = native_stats["repeats"]
    return counters
