"""From something the sensor saw to a span event, a judged event and, when blocked, an exception.

Every handler of the audit hook describes what it saw as an :class:`Observation`; :func:`report`
finds the tool (or agent) operation running in this thread or task, builds the typed event only
when someone will read it (a pipeline stage or a sensor rule), judges it, writes the span event
and raises :class:`OperationBlocked` when the verdict is a block.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from agentguard import semconv
from agentguard._context import FRAME_KEY, Frame, current_frame, runtime_variable
from agentguard._guard import Verdict, running_tool
from agentguard.events import EventContext
from agentguard.findings import Decision, Finding
from agentguard.sensors import _state
from agentguard.sensors._state import MAX_CHILD_PIDS, MAX_EVENTS_PER_SPAN, MAX_KEYS_PER_SPAN

if TYPE_CHECKING:
    from agentguard._guard import Guard, Operation

__all__ = [
    "RULE_LOAD_SPAWN",
    "RULE_TAMPER",
    "RULE_UNSAFE_PICKLE",
    "Observation",
    "OperationBlocked",
    "add_child_pid",
    "context_reader",
    "current_operation",
    "emit_native",
    "event_context",
    "in_tool",
    "native_finding",
    "needless",
    "report",
    "rule_enabled",
    "write_span_event",
]

# The sensor's own rules: facts only the sensor can establish, on whenever the sensor is on and
# switched off one by one with ``disabled_rules``.
RULE_TAMPER = "sensor-tamper"
RULE_UNSAFE_PICKLE = "sensor-unsafe-pickle"
RULE_LOAD_SPAWN = "sensor-model-load-activity"


class OperationBlocked(PermissionError):
    """Raised by the runtime sensor when agentguard blocks a process, connection, file or load.

    It is a :class:`PermissionError` (``errno.EACCES``), so the code that asked fails the way it
    would on a real permission error; ``finding`` says why.
    """

    def __init__(self, finding: Finding, what: str, filename: str | None = None) -> None:
        message = f"agentguard blocked {what}: {finding.title} [{finding.rule_id}]"
        if filename is None:
            super().__init__(errno.EACCES, message)
        else:
            super().__init__(errno.EACCES, message, filename)
        self.finding = finding


class Observation:
    """What one audit event showed: its span event, how to build its typed event, what it is."""

    __slots__ = ("attributes", "decisions", "filename", "key", "make", "name", "time_ns",
                 "verdict", "what")

    def __init__(
        self,
        name: str,
        attributes: dict[str, Any],
        make: Callable[[EventContext], Any],
        what: str,
        *,
        key: Any = None,
        filename: str | None = None,
    ) -> None:
        self.name = name
        self.attributes = attributes
        self.make = make
        self.what = what
        self.key = key
        self.filename = filename
        self.time_ns = time.time_ns()
        # Decisions of the sensor's own rules, added to the pipeline's verdict.
        self.decisions: list[Decision] = []
        self.verdict: Verdict | None = None


class _Subject:
    """Stands in for an event where a finding needs a kind and a context but no event exists."""

    __slots__ = ("context", "kind")

    def __init__(self, kind: str, context: EventContext) -> None:
        self.kind = kind
        self.context = context


def rule_enabled(guard: Guard, rule_id: str) -> bool:
    disabled = guard.config.disabled_rules
    return not disabled or rule_id not in disabled


def context_reader() -> Callable[[], Any] | None:
    """``get`` of the context variable holding OpenTelemetry's current context, when the
    runtime context is the standard contextvars one (else ``None``: use the public API)."""
    variable = runtime_variable()
    return variable.get if variable is not None else None


# Every event inside a tool call asks for the operation: one context variable read and one
# dictionary lookup instead of four calls through the context API.
_read_context = context_reader()


def current_operation() -> Operation | None:
    """The tool operation running in this thread or task, or ``None`` outside any tool call.

    Only tool spans get the sensor's span events: what happens around a model call (the
    provider's connection) or in agent code is judged, but would only be noise on those spans.
    Code inside a tool that runs in a context without it (``contextvars.Context().run``) is
    still the tool's: the tool operation this thread (and asyncio task) is running.
    """
    if _read_context is None:
        op = current_frame().tool
    else:
        frame = _read_context().get(FRAME_KEY)
        op = frame.tool if type(frame) is Frame else None
    return op if op is not None else running_tool()


def in_tool() -> bool:
    """Whether the code running now is inside a tool call (by its context or its thread)."""
    return current_operation() is not None


def event_context(guard: Guard, op: Operation | None) -> EventContext:
    """The context stamped on a sensor event: the tool call's (cached per thread for the last
    one seen), else whatever encloses the code (agent invocation, conversation)."""
    if op is None:
        return guard.context_here()
    local = _state.local
    cached = local.context
    if cached is not None and cached[0] is op and cached[1] is guard:
        context: EventContext = cached[2]
        return context
    context = op.event_context()
    _state.set_local("context", (op, guard, context))
    return context


# The verdict of an event nobody judged; shared, never changed.
_NO_FINDINGS = Verdict()


def _judge(guard: Guard, obs: Observation, op: Operation | None) -> tuple[Verdict, Any]:
    if not guard.has_stages and not obs.decisions:
        return _NO_FINDINGS, None
    event = obs.make(event_context(guard, op))
    verdict = guard.evaluate(event) if guard.has_stages else _NO_FINDINGS
    if obs.decisions:
        merged = Verdict()
        for finding in verdict.findings:
            merged.add(finding)
        for decision in obs.decisions:
            merged.add(guard.finding_for(event, decision))
        verdict = merged
    return verdict, event


_CURRENT: Any = object()


def report(guard: Guard, obs: Observation, *, park: Any = None, op: Any = _CURRENT) -> Verdict:
    """Judge an observation and record it on the enclosing tool call's span.

    With ``park`` (a spawn wrapper in progress), the span event is left to the wrapper, which
    writes it once the child's pid is known. ``op`` is the tool operation when the caller
    already looked it up. Raises :class:`OperationBlocked` on a block.
    """
    _state.counters["events"] += 1
    if op is _CURRENT:
        op = current_operation()
    if park is None and not obs.decisions and not guard.has_stages:
        # Nothing judges it: only the span event, which runs no code of anyone else's.
        obs.verdict = _NO_FINDINGS
        write_span_event(op, obs)
        return _NO_FINDINGS
    # Policies and finding sinks run here: what they do is not the agent's doing.
    with _state.busy():
        verdict, _ = _judge(guard, obs, op)
        obs.verdict = verdict
        if park is not None:
            park.observation = obs
            park.operation = op
        else:
            write_span_event(op, obs)
        if verdict.findings:
            span = op.span if op is not None else trace.get_current_span()
            guard.emit(verdict, span)
    if verdict.blocked:
        _state.counters["blocked"] += 1
        finding = verdict.blocking_finding()
        if finding is not None:
            raise OperationBlocked(finding, obs.what, obs.filename)
    return verdict


def needless(guard: Guard, op: Operation | None, key: Any) -> bool:
    """Whether reporting an observation keyed ``key`` would change nothing, so the caller can
    skip building it: no pipeline stage judges it, no model load is in progress on this thread,
    and it is outside any tool call or already on the tool's span (then it is counted there)."""
    if guard.has_stages or _state.local.loads:
        return False
    if op is None:
        return True
    span = op.span
    if not span.is_recording():
        return True
    state = _state.span_state(span)
    if key in state.keys:
        _suppress(span, state)
        # For the hook: the next identical event in this context is settled without a handler.
        _state.set_local("repeat", (span, state))
        return True
    return False


def _suppress(span: trace.Span, state: _state.SpanState) -> None:
    state.suppressed += 1
    _state.counters["span_events_suppressed"] += 1
    span.set_attribute(semconv.AG_SENSOR_SUPPRESSED, state.suppressed)


def write_span_event(op: Operation | None, obs: Observation,
                     extra: dict[str, Any] | None = None) -> None:
    """Add the observation's span event to ``op``'s span (repeats and events over budget are
    counted on the span instead)."""
    if op is None:
        return
    span = op.span
    if not span.is_recording():
        return
    state = _state.span_state(span)
    verdict = obs.verdict
    judged = verdict is not None and bool(verdict.findings)
    if obs.key is not None and not judged:
        keys = state.keys
        if obs.key in keys:
            _suppress(span, state)
            return
        if len(keys) < MAX_KEYS_PER_SPAN:
            keys.add(obs.key)
            if verdict is _NO_FINDINGS and not _state.local.loads:
                # Nothing judges it: the next identical event in this context would only be
                # counted (see ``needless``), so the hook may settle it from the first sight.
                _state.set_local("repeat", (span, state))
    if state.written >= MAX_EVENTS_PER_SPAN:
        _suppress(span, state)
        return
    attributes = obs.attributes
    if extra:
        attributes = {**attributes, **extra}
    if judged and verdict is not None:
        attributes = {**attributes, semconv.AG_DECISION: verdict.action}
    span.add_event(obs.name, attributes, obs.time_ns)
    state.written += 1
    _state.counters["span_events"] += 1


def add_child_pid(op: Operation | None, pid: int) -> None:
    """Record a child process on ``op``'s span (``agentguard.process.child_pids``)."""
    if op is None:
        return
    span = op.span
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None)
    seed = attributes.get(semconv.AG_PROCESS_CHILD_PIDS) if attributes is not None else None
    state = _state.span_state(span, seed)
    if len(state.child_pids) >= MAX_CHILD_PIDS:
        _state.counters["child_pids_dropped"] += 1
        return
    state.child_pids.append(pid)
    span.set_attribute(semconv.AG_PROCESS_CHILD_PIDS, list(state.child_pids))


def native_finding(guard: Guard, kind: str, decision: Decision) -> Finding:
    """A finding of one of the sensor's own rules about the code running now (no event needed)."""
    subject = _Subject(kind, event_context(guard, current_operation()))
    return guard.finding_for(subject, decision)


def emit_native(guard: Guard, finding: Finding, what: str, filename: str | None = None) -> None:
    """Emit a finding of the sensor's own rules on the current operation; raise on a block."""
    verdict = Verdict()
    verdict.add(finding)
    op = current_operation()
    with _state.busy():
        guard.emit(verdict, op.span if op is not None else trace.get_current_span())
    if finding.action == "block":
        _state.counters["blocked"] += 1
        raise OperationBlocked(finding, what, filename)
