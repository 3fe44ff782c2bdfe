"""Edges of joining kernel events to agents: connections to the collector's port numbers on other
hosts, a pid handed out again to a new agent, agents that are gone, and spans carrying values the
store cannot keep."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

from agentguard.collector import procfs
from agentguard.collector.correlate import Correlator, OwnEndpoints
from agentguard.collector.daemon import Collector
from agentguard.collector.model import EXIT, KernelEvent, SpanInfo
from agentguard.collector.store import Store
from agentguard.semconv import int_value
from tests.collector.conftest import require_ebpf, start_collector
from tests.collector.helpers import run_watched, tree_events, wait_for
from tests.collector.test_receiver import post

# The agent of the pid-reuse test: it reports one span, waits for "go", runs a tool (a child
# process named after the agent) and reports that tool's span, then prints its span id.
AGENT = r'''
import http.client, os, subprocess, sys, threading, time
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

port, service = int(sys.argv[1]), sys.argv[2]
trace_id = os.urandom(16)


def send(name, start, end, attributes):
    request = trace_service_pb2.ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.extend([
        KeyValue(key="service.name", value=AnyValue(string_value=service)),
        KeyValue(key="process.pid", value=AnyValue(int_value=os.getpid()))])
    span = resource.scope_spans.add().spans.add(
        trace_id=trace_id, span_id=os.urandom(8), name=name, start_time_unix_nano=start,
        end_time_unix_nano=end)
    for key, value in attributes.items():
        span.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)
                                        if isinstance(value, str) else AnyValue(int_value=value)))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", "/v1/traces", request.SerializeToString(),
                       {"Content-Type": "application/x-protobuf"})
    assert connection.getresponse().status == 200
    connection.close()
    return span.span_id.hex()


now = time.time_ns()
send("invoke_agent " + service, now, now, {"gen_ai.operation.name": "invoke_agent"})
print("ready", flush=True)
sys.stdin.readline()
start = time.time_ns()
subprocess.run(["/bin/true", "child-of-" + service], check=True)
tool = send("execute_tool run", start, time.time_ns(), {
    "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "run",
    "agentguard.thread.native_id": threading.get_native_id()})
print(tool, flush=True)
'''


@pytest.fixture(scope="module")
def edges(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """An eBPF collector with gRPC on every IPv4 address of the host and HTTP on loopback only;
    the hold window is long, so an agent that exits is still known when its pid is reused."""
    require_ebpf()
    collector = start_collector(tmp_path_factory.mktemp("edges"), sensor="ebpf",
                                otlp_grpc="0.0.0.0:0", otlp_http="127.0.0.1:0", hold_seconds=30.0)
    yield collector
    collector.stop()


def _span(name: str, **fields: Any) -> trace_pb2.Span:
    now = time.time_ns()
    return trace_pb2.Span(trace_id=os.urandom(16), span_id=os.urandom(8), name=name,
                          start_time_unix_nano=fields.pop("start", now),
                          end_time_unix_nano=fields.pop("end", now), **fields)


def _request(spans: list[trace_pb2.Span], pid: int | str, service: str
             ) -> trace_service_pb2.ExportTraceServiceRequest:
    value = AnyValue(int_value=pid) if isinstance(pid, int) else AnyValue(string_value=pid)
    return trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource=Resource(attributes=[
            KeyValue(key="service.name", value=AnyValue(string_value=service)),
            KeyValue(key="process.pid", value=value)]),
        scope_spans=[trace_pb2.ScopeSpans(spans=spans)])])


# -- connections on the collector's port numbers ---------------------------------------------

CONNECT_ALL = """
import socket
for pair in sys.argv[1].split(","):
    host, port = pair.rsplit(":", 1)
    s = socket.socket(); s.setblocking(False)
    try:
        s.connect((host, int(port)))
    except OSError:
        pass
    s.close()
"""


def test_connections_to_our_port_numbers_on_other_hosts_are_recorded(edges: Collector) -> None:
    """A watched process's connections to other hosts on the collector's port numbers are recorded
    as net.connect events; only those that reach the receiver itself are left out."""
    grpc_port, http_port = edges.receiver.grpc_port, edges.receiver.http_port
    theirs = [("198.51.100.7", http_port), ("203.0.113.9", grpc_port),
              # HTTP listens on 127.0.0.1 alone: another loopback address is not the receiver.
              ("127.0.0.2", http_port)]
    ours = [("127.0.0.1", http_port), ("127.0.0.1", grpc_port), ("127.0.0.2", grpc_port)]
    host_addresses = sorted(a for a in procfs.local_addresses(os.getpid())
                            if ":" not in a and not a.startswith("127."))
    ours += [(address, grpc_port) for address in host_addresses[:1]]
    before = edges.counters["own_traffic"]
    pid = run_watched(edges, CONNECT_ALL,
                      args=[",".join(f"{host}:{port}" for host, port in theirs + ours)])
    seen = {(e["data"]["address"], e["data"]["port"]) for e in tree_events(edges, pid, "net.connect")}
    assert seen == set(theirs)
    assert edges.counters["own_traffic"] - before == len(ours)


def test_own_endpoints_follow_the_bound_address_and_family() -> None:
    """An exact bind owns only its address, ``0.0.0.0`` every local IPv4 address and ``::`` every
    local address of both families (IPv4-mapped ones too), never another host's."""
    own = OwnEndpoints([("127.0.0.1", 4318), ("0.0.0.0", 4317), ("::", 9999)])
    assert own.owns("127.0.0.1", 4318) and own.owns("::ffff:127.0.0.1", 4318)
    assert not own.owns("127.0.0.2", 4318) and not own.owns("203.0.113.9", 4318)
    assert own.owns("127.9.9.9", 4317) and own.owns("0.0.0.0", 4317)
    assert not own.owns("::1", 4317) and not own.owns("198.51.100.7", 4317)
    assert own.owns("::1", 9999) and own.owns("127.0.0.1", 9999) and own.owns("::", 9999)
    assert not own.owns("2001:db8::5", 9999) and not own.owns("127.0.0.1", 4319)
    assert not own.owns("not an address", 4318)
    for address in procfs.local_addresses(os.getpid()):
        assert own.owns(address, 9999)
        assert own.owns(address, 4317) == (":" not in address)


# -- a pid handed out again ---------------------------------------------------------------------


def _spawn(collector: Collector, service: str, pid: int | None = None) -> subprocess.Popen[str]:
    """Start the test agent (on ``pid`` when given: the kernel is told the last pid it handed
    out, as after a wrap-around) and wait until it has reported its first span."""
    command = [sys.executable, "-c", AGENT, str(collector.receiver.http_port), service]
    for _ in range(200):
        if pid is not None:
            with open("/proc/sys/kernel/ns_last_pid", "w") as handle:
                handle.write(str(pid - 1))
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   text=True)
        if pid is None or process.pid == pid:
            break
        # Another process on the machine took the pid first: try again.
        process.kill()
        process.wait()
    else:
        pytest.fail(f"pid {pid} could not be had again")
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    return process


def _run_tool(collector: Collector, process: subprocess.Popen[str], service: str
              ) -> dict[str, Any]:
    """Let the agent run its tool once it is watched; returns the stored exec of its child."""
    assert collector.sync()
    out, _ = process.communicate("go\n", timeout=30)
    assert process.returncode == 0
    tool_span = out.strip()

    def child_exec() -> list[dict[str, Any]]:
        return [e for e in tree_events(collector, process.pid, "process.exec")
                if f"child-of-{service}" in e["data"]["argv"] and e["span_id"] == tool_span]

    (event,) = wait_for(lambda: collector.sync() and child_exec(), timeout=15)
    return event


def _status_agents(collector: Collector) -> list[dict[str, Any]]:
    store = Store(collector.settings.db, readonly=True)
    try:
        return list(store.status()["collector"]["value"]["agents"])
    finally:
        store.close()


def test_a_new_agent_on_a_reused_pid_is_watched_and_filed_under_itself(edges: Collector) -> None:
    """An agent that starts on the pid of one that exited is watched afresh: its tool's child
    process is recorded and joined to its own tool span, and it is listed under its own name."""
    first = _spawn(edges, "agent-a")
    pid = first.pid
    a_exec = _run_tool(edges, first, "agent-a")
    assert a_exec["service"] == "agent-a"
    # A span of the first agent read after it is gone (an exporter's last flush): still its own.
    late = _span("late flush of agent-a")
    assert post(edges, _request([late], pid, "agent-a").SerializeToString())[0] == 200
    assert edges.sync()
    store = Store(edges.settings.db, readonly=True)
    try:
        (late_row,) = [s for s in store.spans() if s["name"] == "late flush of agent-a"]
    finally:
        store.close()
    assert late_row["pid"] == pid
    replaced = edges.correlator.counters["agents_replaced"]

    second = _spawn(edges, "agent-b", pid=pid)
    b_exec = _run_tool(edges, second, "agent-b")
    assert b_exec["data"]["ppid"] == pid and b_exec["service"] == "agent-b"
    assert b_exec["trace_id"] != a_exec["trace_id"]
    # Told apart by its start time, well within the hold window that keeps the first one known.
    assert edges.correlator.counters["agents_replaced"] == replaced + 1
    wait_for(lambda: {"pid": pid, "service": "agent-b"} in [
        {"pid": a["pid"], "service": a["service"]} for a in _status_agents(edges)], timeout=5)


def test_an_agent_found_nowhere_at_first_is_joined_once_it_appears(
        edges: Collector, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spans reporting a pid no process on the node has yet are kept and counted; once an agent
    runs on that pid (a container still starting), it is looked for again, watched, and its
    tool's child process is joined to its tool span."""
    from agentguard.collector import daemon

    monkeypatch.setattr(daemon, "_HOST_PID_RETRY", 0.2)
    pid = _exited_process()
    before = edges.counters["agents_not_found"]
    early = _span("span of an agent not yet visible")
    assert post(edges, _request([early], pid, "agent-late").SerializeToString())[0] == 200
    assert edges.sync()
    assert edges.counters["agents_not_found"] == before + 1
    # Within the backoff the answer is kept: no second walk of /proc.
    again = _span("second span, within the backoff")
    assert post(edges, _request([again], pid, "agent-late").SerializeToString())[0] == 200
    assert edges.sync() and edges.counters["agents_not_found"] == before + 1
    time.sleep(0.3)
    agent = _spawn(edges, "agent-late", pid=pid)
    event = _run_tool(edges, agent, "agent-late")
    assert event["service"] == "agent-late" and event["data"]["ppid"] == pid


def _exited_process() -> int:
    """The pid of a real process that ran and was reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(10)
    return process.pid


def test_agents_that_exited_are_forgotten_after_the_hold_window() -> None:
    """An agent whose process exited is dropped once the hold window has passed, with what still
    waited for it resolved, so a long-running collector does not keep every agent it ever saw."""
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"],
                               stdin=subprocess.PIPE)
    c = Correlator(hold_seconds=0.05)
    try:
        assert c.register_agent(process.pid, "short-lived") is not None
        waiting = KernelEvent("net.connect", time.time_ns(), process.pid, process.pid,
                              {"address": "203.0.113.9", "port": 443, "result": 0})
        assert c.observe(waiting) == []
    finally:
        process.communicate(b"\n", timeout=10)
    assert c.observe(KernelEvent(EXIT, time.time_ns(), process.pid, process.pid,
                                 {"exit_code": 0})) != []
    assert process.pid in c.agents
    time.sleep(0.06)
    resolved = c.expire()
    assert waiting in resolved and waiting.attribution.method == "unattributed"
    assert process.pid not in c.agents and c.pending_count == 0
    assert c.stats()["agents"] == 0 and c.counters["agents_evicted"] == 1


def test_the_agent_table_is_bounded() -> None:
    """Past ``max_agents`` the agents gone longest are forgotten first, then the oldest."""
    c = Correlator(hold_seconds=60, max_agents=2)
    gone = _exited_process()
    assert c.register_agent(gone, "gone") is not None  # its process is no more: kept as exited
    assert c.register_agent(os.getpid(), "this") is not None
    assert c.register_agent(os.getppid(), "parent") is not None
    assert set(c.agents) == {os.getpid(), os.getppid()}
    assert c.register_agent(1, "init") is not None
    assert set(c.agents) == {os.getppid(), 1}
    assert c.counters["agents_evicted"] == 2


def test_late_spans_of_an_agent_that_exited_stay_with_it() -> None:
    """Spans read after their agent's process is gone (its last export) are still that agent's:
    an event of its tool call joins them."""
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"],
                               stdin=subprocess.PIPE)
    c = Correlator(hold_seconds=60)
    agent = c.register_agent(process.pid, "agent")
    assert agent is not None and agent.start_ticks is not None
    process.communicate(b"\n", timeout=10)
    assert c.register_agent(process.pid, "agent") is None and c.agents[process.pid] is agent
    now = time.time_ns()
    event = KernelEvent("net.connect", now, process.pid, process.pid,
                        {"address": "203.0.113.9", "port": 443, "result": 0})
    assert c.observe(event) == []
    tool = SpanInfo("a" * 32, "b" * 16, None, "execute_tool fetch", "execute_tool",
                    now - 1_000_000, now + 1_000_000, process.pid, process.pid, "agent")
    assert c.add_spans([tool]) == [event] and event.attribution.span_id == tool.span_id
    assert c.counters["agents_replaced"] == 0


# -- spans with values the store cannot keep ---------------------------------------------------


def test_one_poisoned_span_does_not_cost_the_others_of_its_request(
        collector_factory: Callable[..., Collector]) -> None:
    """Spans with times past 2**63, integers of 30 digits or other scripts' digits, and a finding
    dated 2**64-1 are stored with those values held or left out, beside the 50 ordinary spans of
    the same request, and the finding is stored."""
    collector = collector_factory(sensor="none")
    good = [_span(f"good-{i}") for i in range(50)]
    turn = KeyValue(key="agentguard.turn.index", value=AnyValue(string_value="1" * 30))
    digits = KeyValue(key="agentguard.turn.index", value=AnyValue(string_value="²³"))
    tid = KeyValue(key="agentguard.thread.native_id", value=AnyValue(string_value="9" * 19))
    finding = trace_pb2.Span.Event(time_unix_nano=2**64 - 1, name="agentguard.finding", attributes=[
        KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in {
            "agentguard.finding.rule_id": "AG001", "agentguard.finding.severity": "high",
            "agentguard.finding.title": "dated past the end of time"}.items()])
    poison = [_span("late", start=2**63, end=2**64 - 1), _span("long-turn", attributes=[turn]),
              _span("digits", attributes=[digits, tid]), _span("finding", events=[finding])]
    request = _request([*poison[:2], *good, *poison[2:]], "1" * 25, "agent-x")
    assert post(collector, request.SerializeToString())[0] == 200
    wait_for(lambda: collector.sync() and collector.snapshot()["spans_received"] == 54)
    store = Store(collector.settings.db, readonly=True)
    try:
        stored = {s["name"]: s for s in store.spans()}
        findings = store.findings()
    finally:
        store.close()
    assert set(stored) == {f"good-{i}" for i in range(50)} | {"late", "long-turn", "digits",
                                                              "finding"}
    assert (stored["late"]["start_ns"], stored["late"]["end_ns"]) == (2**63 - 1, 2**63 - 1)
    assert stored["long-turn"]["turn"] is None and stored["digits"]["turn"] is None
    assert stored["digits"]["tid"] is None and stored["late"]["pid"] is None
    assert [(f.rule_id, f.title) for f in findings] == [("AG001", "dated past the end of time")]
    assert collector.snapshot().get("spans_dropped", 0) == 0


def _span_info(span_id: str, start_ns: int) -> SpanInfo:
    return SpanInfo("a" * 32, span_id, None, f"span {span_id}", None, start_ns, start_ns, None,
                    None, "agent")


def test_a_span_the_database_refuses_is_left_out_alone_and_counted(tmp_path: Path) -> None:
    """A span the database cannot take is counted as dropped; the rest of its batch is stored."""
    store = Store(str(tmp_path / "c.db"))
    try:
        spans = [_span_info(f"{i:016x}", 1_000 + i) for i in range(5)]
        spans.insert(2, _span_info("f" * 16, 2**63))
        assert store.add_spans(spans) == 1
        store.commit()
        assert {s["span_id"] for s in store.spans()} == {f"{i:016x}" for i in range(5)}
        assert store.add_spans(spans[:2]) == 0
    finally:
        store.close()


def test_int_value_reads_only_what_otlp_can_carry() -> None:
    """Integer attributes outside signed 64 bits, in other scripts' digits or of any length are
    not numbers to the collector."""
    assert int_value(2**63 - 1) == 2**63 - 1 and int_value(-(2**63)) == -(2**63)
    assert int_value("9223372036854775807") == 2**63 - 1
    for bad in (2**63, -(2**63) - 1, "9223372036854775808", "1" * 30, "1" * 5000, "²", "١٢",
                "", "-1", True, 1.0, None):
        assert int_value(bad) is None, bad

