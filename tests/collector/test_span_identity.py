"""A span is its agent's, trace's and span id's: another sender's span with the same ids (read
from a TRACEPARENT, or a traceparent header the agent sent it) cannot take an agent's kernel
events, relabel them, replace the agent's stored span or ride along when it is forwarded.

Real collectors with the eBPF sensor, a real forwarding backend on loopback, and the correlator,
judge and store on their own."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

from agentguard.collector.correlate import Correlator
from agentguard.collector.judge import Judge
from agentguard.collector.model import CONNECT, EXEC, FORK, Attribution, KernelEvent, SpanInfo
from agentguard.collector.store import Store, StoredFinding
from tests.collector.conftest import Listener, require_ebpf, start_collector
from tests.collector.helpers import SendingProcess, stored_events, wait_for
from tests.collector.test_followups import Sink
from tests.collector.test_receiver import post

MS = 1_000_000

# An agent process that connects to the port it is given once told to, prints its thread and the
# times around the connect, and stays alive until told again (so its spans find it).
AGENT = """
import json, socket, sys, threading, time
sys.stdin.readline()
start = time.time_ns()
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.close()
end = time.time_ns()
print(json.dumps({"tid": threading.get_native_id(), "start": start, "end": end}), flush=True)
sys.stdin.readline()
"""


# A loopback OTLP/HTTP trace backend that keeps every request it is sent.
Backend = Sink


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend()
    yield server
    server.close()


def _string(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _tool_span(trace_id: bytes, span_id: bytes, tool: str, conversation: str, tid: int,
               start: int, end: int) -> trace_pb2.Span:
    return trace_pb2.Span(
        trace_id=trace_id, span_id=span_id, name=f"execute_tool {tool}",
        start_time_unix_nano=start, end_time_unix_nano=end,
        attributes=[_string("gen_ai.operation.name", "execute_tool"),
                    _string("gen_ai.tool.name", tool),
                    _string("gen_ai.conversation.id", conversation),
                    KeyValue(key="agentguard.thread.native_id", value=AnyValue(int_value=tid))])


def _request(span: trace_pb2.Span, pid: int, service: str) -> bytes:
    return trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource=Resource(attributes=[_string("service.name", service),
                                      KeyValue(key="process.pid", value=AnyValue(int_value=pid))]),
        scope_spans=[trace_pb2.ScopeSpans(spans=[span])])]).SerializeToString()


def test_another_senders_span_with_the_same_ids_takes_nothing_from_an_agent(
        tmp_path: Path, listener: Listener, backend: Backend) -> None:
    """A hostile sender posts copies of an agent's tool span (same trace and span id, its own
    tool name and conversation) before and after the agent's own: the agent's kernel connect is
    still joined to the agent's span, both spans are stored side by side, and only the agent's
    forwarded span carries the kernel event."""
    require_ebpf()
    collector = start_collector(tmp_path, sensor="ebpf", forward=backend.url)
    agent = subprocess.Popen([sys.executable, "-c", AGENT, str(listener.port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    hostile = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"],
                               stdin=subprocess.PIPE, text=True)
    try:
        assert collector.watch(agent.pid, "test agent") and collector.sync()
        assert agent.stdin is not None and agent.stdout is not None
        agent.stdin.write("go\n")
        agent.stdin.flush()
        done = json.loads(agent.stdout.readline())
        trace_id, span_id = os.urandom(16), os.urandom(8)
        times = (done["tid"], done["start"] - 5 * MS, done["end"] + 5 * MS)
        forged = _request(_tool_span(trace_id, span_id, "forged", "conv-forged", *times),
                          hostile.pid, "hostile")
        real = _request(_tool_span(trace_id, span_id, "fetch", "conv-real", *times),
                        agent.pid, "agent-a")
        for body in (forged, real, forged):
            assert post(collector, body)[0] == 200

        def connect() -> list[dict[str, Any]]:
            collector.sync()
            return [e for e in stored_events(collector, kind="net.connect", pid=agent.pid)
                    if e["data"]["port"] == listener.port]

        (event,) = wait_for(connect, timeout=15)
        assert (event["attribution"], event["trace_id"], event["span_id"]) == \
            ("thread", trace_id.hex(), span_id.hex())
        assert (event["tool"], event["conversation_id"], event["service"]) == \
            ("fetch", "conv-real", "agent-a")
        store = Store(collector.settings.db, readonly=True)
        try:
            stored = sorted((s["pid"], s["name"], s["conversation_id"])
                            for s in store.spans(trace_ids=[trace_id.hex()]))
        finally:
            store.close()
        assert stored == sorted([(agent.pid, "execute_tool fetch", "conv-real"),
                                 (hostile.pid, "execute_tool forged", "conv-forged")])

        def forwarded() -> list[tuple[str, list[str]]] | None:
            found = [(resource["service.name"].string_value,
                      [e.name for e in span.events])
                     for resource, span in backend.spans() if span.trace_id == trace_id]
            return found if len(found) == 3 else None

        assert sorted(wait_for(forwarded, timeout=15)) == [
            ("agent-a", ["agentguard.kernel.net.connect"]), ("hostile", []), ("hostile", [])]
    finally:
        for process in (agent, hostile):
            if process.poll() is None:
                process.kill()
            process.wait()
        collector.stop()


def test_spans_another_process_sends_for_an_agent_are_joined_and_marked(
        tmp_path: Path, listener: Listener, backend: Backend) -> None:
    """A relay beside the agent (an OpenTelemetry Collector, or any other local process) sends
    the agent's tool span with the agent's pid; the agent sends a span of its own. The agent's
    kernel connect is still joined to the relayed span, which is stored and forwarded with the
    kernel event, marked ``agentguard.sent_by_other_process`` and counted; the agent's own span
    is not marked."""
    require_ebpf()
    collector = start_collector(tmp_path, sensor="ebpf", forward=backend.url)
    agent, relay = SendingProcess(collector), SendingProcess(collector)
    try:
        assert collector.watch(agent.pid, "test agent") and collector.sync()
        done = agent.connect(listener.port)
        trace_id, tool_id, own_id = os.urandom(16), os.urandom(8), os.urandom(8)
        times = (done["tid"], done["start"] - 5 * MS, done["end"] + 5 * MS)
        relay.send(_request(_tool_span(trace_id, tool_id, "fetch", "conv-relayed", *times),
                            agent.pid, "agent-a"))
        # Later than the connect: it does not compete for it.
        own = _tool_span(trace_id, own_id, "plan", "conv-relayed", done["tid"],
                         done["end"] + 10 * MS, done["end"] + 20 * MS)
        agent.send(_request(own, agent.pid, "agent-a"))

        def connect() -> list[dict[str, Any]]:
            collector.sync()
            return [e for e in stored_events(collector, kind="net.connect", pid=agent.pid)
                    if e["data"]["port"] == listener.port]

        (event,) = wait_for(connect, timeout=15)
        assert (event["attribution"], event["span_id"], event["tool"]) == \
            ("thread", tool_id.hex(), "fetch")
        store = Store(collector.settings.db, readonly=True)
        try:
            marks = {s["span_id"]: s["attributes"].get("agentguard.sent_by_other_process")
                     for s in store.spans(trace_ids=[trace_id.hex()])}
        finally:
            store.close()
        assert marks == {tool_id.hex(): True, own_id.hex(): None}
        assert collector.snapshot()["spans_sent_by_other"] == 1

        def forwarded() -> dict[bytes, tuple[bool, list[str]]] | None:
            found = {span.span_id: (any(kv.key == "agentguard.sent_by_other_process" and
                                        kv.value.bool_value for kv in span.attributes),
                                    [e.name for e in span.events])
                     for _, span in backend.spans() if span.trace_id == trace_id}
            return found if len(found) == 2 else None

        assert wait_for(forwarded, timeout=15) == {
            tool_id: (True, ["agentguard.kernel.net.connect"]), own_id: (False, [])}
    finally:
        agent.close()
        relay.close()
        collector.stop()


# -- the correlator, judge and store on their own -----------------------------------------------

T0 = 1_700_000_000_000_000_000


def _span(pid: int, trace: str, span: str, tool: str, conversation: str) -> SpanInfo:
    return SpanInfo(trace, span, None, f"execute_tool {tool}", "execute_tool", T0, T0 + 100 * MS,
                    pid, pid, tool, tool=tool, conversation_id=conversation, turn=1)


def test_a_child_naming_a_span_by_traceparent_waits_for_its_own_agents_span() -> None:
    """A tool's child names its span by TRACEPARENT; another agent's span with those very ids
    neither resolves the child's event nor gives it its conversation: it waits for, and then
    carries, its own agent's span."""
    agent, other = os.getpid(), os.getppid()
    c = Correlator()
    c.register_agent(agent, "agent")
    c.register_agent(other, "other")
    trace, span = "a" * 32, "b" * 16
    c.observe(KernelEvent(FORK, T0 + 10 * MS, agent, agent + 1, {"child_pid": 4_100_000}))
    child = KernelEvent(EXEC, T0 + 11 * MS, 4_100_000, 4_100_000, {
        "exe": "/bin/sh", "argv": ["sh"], "ppid": agent,
        "env": {"TRACEPARENT": f"00-{trace}-{span}-01"}})
    assert c.observe(child) == []
    assert c.add_spans([_span(other, trace, span, "forged", "conv-forged")]) == []
    assert c.pending_count >= 1
    own = _span(agent, trace, span, "shell", "conv-real")
    assert child in c.add_spans([own])
    assert (child.attribution.method, child.attribution.span_id) == ("traceparent", span)
    assert c.span_for(child) is own


def test_a_span_sent_first_by_another_agent_does_not_hide_the_agents_own() -> None:
    """Another agent's span with the same ids, indexed first, leaves the agent's own span to be
    indexed too: the agent's connect joins its own tool span."""
    agent, other = os.getpid(), os.getppid()
    c = Correlator()
    c.register_agent(agent, "agent")
    c.register_agent(other, "other")
    event = KernelEvent(CONNECT, T0 + 50 * MS, agent, agent,
                        {"address": "203.0.113.5", "port": 443, "result": 0})
    assert c.observe(event) == []
    c.add_spans([_span(other, "a" * 32, "b" * 16, "forged", "conv-forged")])
    own = _span(agent, "a" * 32, "b" * 16, "fetch", "conv-real")
    assert c.add_spans([own]) == [event]
    assert c.span_for(event) is own


def test_findings_of_two_traces_with_one_span_id_are_each_kept(tmp_path: Path) -> None:
    """The kernel-only finding of one tool call is not used up by another trace's span with the
    same span id, and the library's findings of both are stored."""
    judge = Judge(builtin_rules=False)
    agent = os.getpid()
    raised = []
    for trace in ("a" * 32, "c" * 32):
        event = KernelEvent(CONNECT, T0, agent, agent,
                            {"address": "203.0.113.5", "port": 443, "result": 0},
                            attribution=Attribution("thread", trace, "b" * 16), agent_pid=agent,
                            seen_by_library=False)
        raised += [(f.rule_id, f.trace_id) for f in judge.judge(event, None, "agent")]
    assert raised == [("AGK002", "a" * 32), ("AGK002", "c" * 32)]
    store = Store(str(tmp_path / "c.db"))
    try:
        for trace in ("a" * 32, "c" * 32):
            assert store.add_finding(StoredFinding(
                rule_id="AG001", category="policy", severity="high", title="t", kind="tool",
                trace_id=trace, span_id="b" * 16, timestamp=1.0, source="library")) is not None
        store.commit()
        assert sorted(f.trace_id for f in store.findings()) == ["a" * 32, "c" * 32]
    finally:
        store.close()


def test_spans_are_kept_per_agent_and_trace_and_a_resend_replaces(tmp_path: Path) -> None:
    """Spans with one span id in two traces, or from two agents, are all stored; the same span
    sent again by its agent (an exporter's retry) replaces the stored one."""
    store = Store(str(tmp_path / "c.db"))
    try:
        store.add_spans([_span(1, "a" * 32, "b" * 16, "first", "c1"),
                         _span(1, "c" * 32, "b" * 16, "other-trace", "c1"),
                         _span(2, "a" * 32, "b" * 16, "other-agent", "c2"),
                         _span(1, "a" * 32, "b" * 16, "first-again", "c1")])
        store.commit()
        assert sorted((s["pid"], s["trace_id"][0], s["tool"]) for s in store.spans()) == [
            (1, "a", "first-again"), (1, "c", "other-trace"), (2, "a", "other-agent")]
    finally:
        store.close()


_OLD_SPANS = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
CREATE TABLE spans (
    span_id TEXT PRIMARY KEY, trace_id TEXT NOT NULL, parent_span_id TEXT, name TEXT NOT NULL,
    operation TEXT, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, pid INTEGER, tid INTEGER,
    service TEXT, tool TEXT, tool_call_id TEXT, conversation_id TEXT, turn INTEGER, status TEXT,
    attributes TEXT NOT NULL, events TEXT NOT NULL, received_ns INTEGER NOT NULL);
CREATE INDEX spans_trace ON spans (trace_id);
CREATE INDEX spans_conversation ON spans (conversation_id);
CREATE INDEX spans_received ON spans (received_ns);
INSERT INTO spans VALUES ('bbbbbbbbbbbbbbbb', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', NULL, 'kept',
    'execute_tool', 1, 2, 7, 7, 'agent', 'fetch', NULL, 'c1', 1, 'OK', '{}', '[]', 3);
"""


def test_a_database_of_an_earlier_collector_keeps_its_spans_under_the_new_key(
        tmp_path: Path) -> None:
    """A database whose spans were keyed by span id alone is opened by a writer with every span
    kept, and from then on spans with that span id in other traces are stored beside it; an
    earlier reader's query still works on it."""
    path = str(tmp_path / "old.db")
    db = sqlite3.connect(path)
    db.executescript(_OLD_SPANS)
    db.close()
    store = Store(path)
    try:
        store.add_spans([_span(7, "c" * 32, "b" * 16, "new", "c1")])
        store.commit()
        assert sorted((s["trace_id"][0], s["name"]) for s in store.spans()) == [
            ("a", "kept"), ("c", "execute_tool new")]
    finally:
        store.close()
    reader = Store(path, readonly=True)
    try:
        assert len(reader.spans(trace_ids=["a" * 32])) == 1
    finally:
        reader.close()
    again = Store(path)
    again.close()


def test_an_event_outside_every_agent_is_not_held_for_a_span() -> None:
    """A process no agent's tree holds (watched by name or cgroup) that names a span by
    TRACEPARENT is not made to wait for it: no agent's span could be its."""
    c = Correlator()
    event = KernelEvent(EXEC, time.time_ns(), 4_200_000, 4_200_000, {
        "exe": "/bin/sh", "argv": ["sh"], "ppid": 4_199_999,
        "env": {"TRACEPARENT": f"00-{'a' * 32}-{'b' * 16}-01"}})
    (resolved,) = c.observe(event)
    assert (resolved.attribution.method, resolved.attribution.span_id) == \
        ("traceparent", "b" * 16)
    assert c.span_for(resolved) is None
