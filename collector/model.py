"""The collector's records: kernel events, the agent spans they are joined to, and attributions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ATTRIBUTION_METHODS",
    "EVENT_KINDS",
    "Attribution",
    "AttributionMethod",
    "KernelEvent",
    "SpanInfo",
]

# Kernel event kinds (the same names the in-process sensor gives its span events).
EXEC = "process.exec"
FORK = "process.fork"
EXIT = "process.exit"
CONNECT = "net.connect"
DNS = "dns.query"
OPEN = "file.open"
SENT = "net.sent"
GAP = "sensor.gap"
LOST = "sensor.lost"
# A watched process set up an io_uring ring: what it submits there bypasses system calls.
IO_URING = "io_uring.setup"
# A process of a watched tree the kernel program could not watch (its watch map was full): what
# it does is not seen.
UNWATCHED = "sensor.unwatched"
EVENT_KINDS = (EXEC, FORK, EXIT, CONNECT, DNS, OPEN, SENT, GAP, LOST, IO_URING, UNWATCHED)

AttributionMethod = Literal[
    "thread",       # same process and native thread as a tool span open at that time
    "time",         # same process, thread unknown (polling sensor): the one tool span open then
    "child_pid",    # the library recorded this process as started by the span
    "traceparent",  # TRACEPARENT in the process's environment names the span
    "inherited",    # forked by a process (or thread) that belongs to the span
    "agent",        # no tool span was open; the agent invocation span of that time
    "ambiguous",    # several tool spans were open on that thread (asyncio) and nothing decides
    "unattributed",
]
ATTRIBUTION_METHODS: tuple[str, ...] = (
    "thread", "time", "child_pid", "traceparent", "inherited", "agent", "ambiguous", "unattributed",
)


@dataclass(frozen=True, slots=True)
class Attribution:
    """Which span a kernel event belongs to, and how that was decided."""

    method: AttributionMethod
    trace_id: str | None = None
    span_id: str | None = None
    candidates: tuple[str, ...] = ()

    @property
    def attributed(self) -> bool:
        return self.span_id is not None

    def inherited(self) -> Attribution:
        """The same span, reached through a parent process."""
        if self.span_id is None or self.method == "inherited":
            return self
        return Attribution("inherited", self.trace_id, self.span_id, self.candidates)


UNATTRIBUTED = Attribution("unattributed")


@dataclass(slots=True)
class KernelEvent:
    """One thing a watched process did, as a sensor saw it; times are Unix nanoseconds."""

    kind: str
    ts_ns: int
    pid: int
    tid: int = 0
    data: dict[str, Any] = field(default_factory=dict)
    source: str = "ebpf"
    attribution: Attribution = UNATTRIBUTED
    # The agent process whose tree this process belongs to (None: watched for another reason).
    agent_pid: int | None = None
    # False when the in-process sensor did not report it (a child of a child, native code, a bypass).
    seen_by_library: bool | None = None
    # Monotonic deadline after which a pending event is resolved with what is known.
    deadline: float = 0.0
    row_id: int | None = None

    def summary(self) -> str:
        """One line for people: what happened."""
        d = self.data
        if self.kind == EXEC:
            argv = d.get("argv") or [d.get("exe", "?")]
            return "exec " + " ".join(str(a) for a in argv)[:300]
        if self.kind == FORK:
            return f"fork → pid {d.get('child_pid')}"
        if self.kind == EXIT:
            return f"exit code {d.get('exit_code')}"
        if self.kind == CONNECT:
            result = d.get("result")
            outcome = "" if result in (None, 0) else f" ({d.get('result_name') or result})"
            via = f" via {d['via']}" if d.get("via") else ""
            return f"connect {d.get('address')}:{d.get('port')}{outcome}{via}"
        if self.kind == DNS:
            return f"dns {d.get('query') or '?'}"
        if self.kind == OPEN:
            return f"open {d.get('path')}" + (" for writing" if d.get("write") else "") + \
                (f" via {d['via']}" if d.get("via") else "")
        if self.kind == IO_URING:
            return "io_uring ring set up" + (" with a submission thread (SQPOLL)"
                                             if d.get("sqpoll") else "")
        if self.kind == SENT:
            return f"sent {d.get('bytes')} bytes"
        if self.kind == GAP:
            return f"sensor gap {d.get('seconds', 0):.1f}s ({d.get('reason')})"
        if self.kind == LOST:
            return f"{d.get('count')} kernel events lost"
        if self.kind == UNWATCHED:
            return f"process {d.get('child_pid')} not watched: the kernel watch map is full"
        return self.kind


@dataclass(slots=True)
class SpanInfo:
    """What correlation needs to know about one agent span."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    operation: str | None
    start_ns: int
    end_ns: int
    pid: int | None
    tid: int | None
    service: str | None
    tool: str | None = None
    tool_call_id: str | None = None
    conversation_id: str | None = None
    turn: int | None = None
    child_pids: frozenset[int] = frozenset()
    # (event name, time, attributes) of the span events the library wrote (exec, connect, findings).
    events: tuple[tuple[str, int, dict[str, Any]], ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)
    status: str = "UNSET"

    @property
    def is_tool(self) -> bool:
        return self.operation == "execute_tool"

    def covers(self, ts_ns: int, slack_ns: int = 0) -> bool:
        return self.start_ns - slack_ns <= ts_ns <= self.end_ns + slack_ns
