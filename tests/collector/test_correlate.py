"""Correlation rules on event and span sequences: thread and time, child pids, TRACEPARENT,
inheritance, asyncio ambiguity, late spans and the bounded waiting room."""

from __future__ import annotations

import os
import time
from typing import Any

from agentguard.collector.correlate import Correlator
from agentguard.collector.model import CONNECT, EXEC, FORK, KernelEvent, SpanInfo

AGENT = os.getpid()
MS = 1_000_000
T0 = 1_700_000_000_000_000_000


def tool(name: str, start_ms: int, end_ms: int, *, tid: int = AGENT, children: tuple[int, ...] = (),
         events: tuple[tuple[str, int, dict[str, Any]], ...] = (), trace: str = "a" * 32) -> SpanInfo:
    return SpanInfo(
        trace_id=trace, span_id=name.encode().hex()[:16].ljust(16, "0"), parent_span_id=None,
        name=f"execute_tool {name}", operation="execute_tool", start_ns=T0 + start_ms * MS,
        end_ns=T0 + end_ms * MS, pid=AGENT, tid=tid, service="agent", tool=name,
        conversation_id="c1", turn=1, child_pids=frozenset(children), events=events)


def fork(child: int, at_ms: int, *, pid: int = AGENT, tid: int = AGENT) -> KernelEvent:
    return KernelEvent(FORK, T0 + at_ms * MS, pid, tid, {"child_pid": child})


def exec_(pid: int, ppid: int, at_ms: int, env: dict[str, str] | None = None) -> KernelEvent:
    data: dict[str, Any] = {"exe": "/bin/sh", "argv": ["sh"], "ppid": ppid}
    if env:
        data["env"] = env
    return KernelEvent(EXEC, T0 + at_ms * MS, pid, pid, data)


def connect(pid: int, tid: int, at_ms: int, port: int = 443) -> KernelEvent:
    return KernelEvent(CONNECT, T0 + at_ms * MS, pid, tid,
                       {"address": "10.0.0.5", "port": port, "result": 0})


def correlator(**kwargs: Any) -> Correlator:
    c = Correlator(**kwargs)
    c.register_agent(AGENT, "agent")
    return c


def test_agent_thread_event_waits_for_its_span_then_joins_it() -> None:
    """A connect on the agent's thread waits for the tool span open at that moment."""
    c = correlator()
    event = connect(AGENT, AGENT, 50)
    assert c.observe(event) == []
    resolved = c.add_spans([tool("early", 0, 40), tool("fetch", 45, 90)])
    assert resolved == [event]
    assert event.attribution.method == "thread"
    assert event.attribution.span_id == tool("fetch", 45, 90).span_id


def test_other_threads_and_back_to_back_tools_do_not_steal_events() -> None:
    """Only the span of the same native thread counts, and adjacent tools do not overlap."""
    c = correlator()
    c.add_spans([tool("a", 0, 10, tid=111), tool("b", 10, 20, tid=AGENT), tool("c", 20, 30)])
    (event,) = c.observe(connect(AGENT, AGENT, 15)) or [None]
    assert event is not None and event.attribution.span_id == tool("b", 10, 20).span_id
    assert c.observe(connect(AGENT, 111, 5))[0].attribution.span_id == tool("a", 0, 10).span_id


def test_children_join_by_recorded_pid_traceparent_or_inheritance() -> None:
    """A child recorded on the span, one naming a span by TRACEPARENT, and their children join."""
    c = correlator()
    recorded = tool("shell", 0, 100, children=(9001,))
    named = tool("other", 200, 300)
    c.add_spans([recorded, named])
    assert c.observe(fork(9001, 10))[0].attribution.method == "child_pid"
    assert c.observe(exec_(9001, AGENT, 11))[0].attribution.span_id == recorded.span_id
    # A grandchild forked by the shell inherits the shell's span.
    grandchild_fork = KernelEvent(FORK, T0 + 12 * MS, 9001, 9001, {"child_pid": 9002})
    assert c.observe(grandchild_fork)[0].attribution.span_id == recorded.span_id
    gc = c.observe(connect(9002, 9002, 13))[0]
    assert (gc.attribution.method, gc.attribution.span_id) == ("inherited", recorded.span_id)
    # A process whose environment names a span joins it, whoever its parent is.
    traceparent = f"00-{named.trace_id}-{named.span_id}-01"
    c.observe(fork(9003, 210, tid=4321))
    joined = c.observe(exec_(9003, AGENT, 211, {"TRACEPARENT": traceparent}))[0]
    assert (joined.attribution.method, joined.attribution.span_id) == ("traceparent", named.span_id)


def test_interleaved_asyncio_tools_are_decided_by_library_records_or_called_ambiguous() -> None:
    """Two tool spans open at once on one thread: the library's connect record decides."""
    c = correlator()
    recorded = {"network.peer.address": "10.0.0.5", "network.peer.port": 443}
    first = tool("first", 0, 100, events=(("net.connect", T0 + 30 * MS, recorded),))
    second = tool("second", 20, 120)
    c.add_spans([first, second])
    decided = c.observe(connect(AGENT, AGENT, 30))[0]
    assert (decided.attribution.method, decided.attribution.span_id) == ("thread", first.span_id)
    assert decided.seen_by_library is True
    unknown = c.observe(connect(AGENT, AGENT, 40, port=8443))[0]
    assert unknown.attribution.method == "ambiguous"
    assert set(unknown.attribution.candidates) == {first.span_id, second.span_id}
    assert unknown.attribution.trace_id == first.trace_id
    assert unknown.seen_by_library is False


def test_nested_tools_on_one_thread_pick_the_innermost() -> None:
    """A tool that calls a tool: the inner span owns what happens inside it."""
    c = correlator()
    outer, inner = tool("outer", 0, 100), tool("inner", 10, 50)
    c.add_spans([outer, inner])
    assert c.observe(connect(AGENT, AGENT, 20))[0].attribution.span_id == inner.span_id
    assert c.observe(connect(AGENT, AGENT, 70))[0].attribution.span_id == outer.span_id


def test_waiting_is_bounded_in_time_and_number() -> None:
    """Unjoined events give up after the hold window, and a flood cannot grow the waiting room."""
    c = correlator(hold_seconds=0.05, max_pending=800)
    waiting = [connect(AGENT, AGENT, i) for i in range(100)]
    for event in waiting:
        assert c.observe(event) == []
    assert c.pending_count == 100
    flood = [c.observe(connect(AGENT, AGENT, 1000 + i)) for i in range(200)]
    # Past the per-agent limit (max_pending / 8) events are resolved at once, not queued.
    assert c.pending_count == 100
    assert sum(len(r) for r in flood) == 200
    assert c.counters["pending_forced"] == 200
    time.sleep(0.06)
    expired = c.expire()
    assert len(expired) == 100 and c.pending_count == 0
    assert {e.attribution.method for e in expired} == {"unattributed"}


def test_agent_invocation_span_is_the_fallback_when_no_tool_was_open() -> None:
    """An act outside any tool call is given the agent invocation span of that time."""
    c = correlator(hold_seconds=0.0)
    invocation = SpanInfo("b" * 32, "1" * 16, None, "invoke_agent graph", "invoke_agent",
                          T0, T0 + 500 * MS, AGENT, None, "agent", conversation_id="c1", turn=2)
    c.add_spans([invocation])
    event = connect(AGENT, AGENT, 100)
    assert c.observe(event) == []
    (expired,) = c.expire()
    assert (expired.attribution.method, expired.attribution.span_id) == ("agent", "1" * 16)
