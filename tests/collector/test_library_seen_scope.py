"""An act of the agent process counts as seen by the in-process sensor only when the library
recorded that very act: the same peer, name or file, no later than the act, in the same tool
call. A record from an earlier (legitimate) tool call cannot hide an attacker's tool that goes
around Python to the same host, and a lookup or open of something else in the same tool call is
not covered by a record of another one.

The correlator on its own, and a real instrumented agent under the eBPF sensor."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agentguard.collector.correlate import Correlator
from agentguard.collector.model import CONNECT, DNS, OPEN, KernelEvent, SpanInfo
from tests.collector.conftest import Listener, require_ebpf, start_collector
from tests.collector.helpers import run_agent_script, stored_events, stored_findings, wait_for

AGENT = os.getpid()
MS = 1_000_000
T0 = 1_700_000_000_000_000_000
PEER = {"network.peer.address": "10.0.0.5", "network.peer.port": 443}


def _span(name: str, start_ms: int, end_ms: int, *, operation: str = "execute_tool",
          events: tuple[tuple[str, int, dict[str, Any]], ...] = (),
          parent: str | None = None) -> SpanInfo:
    return SpanInfo("a" * 32, name.encode().hex()[:16].ljust(16, "0"), parent,
                    f"{operation} {name}", operation, T0 + start_ms * MS, T0 + end_ms * MS,
                    AGENT, AGENT, "agent", tool=name if operation == "execute_tool" else None,
                    conversation_id="c1", turn=1, events=events)


def _record(name: str, at_ms: int, **attributes: Any) -> tuple[str, int, dict[str, Any]]:
    return (name, T0 + at_ms * MS, attributes)


def _act(kind: str, at_ms: int, *, tid: int = AGENT, **data: Any) -> KernelEvent:
    return KernelEvent(kind, T0 + at_ms * MS, AGENT, tid, data)


def _seen(c: Correlator, event: KernelEvent) -> bool | None:
    (done,) = c.observe(event) or c.expire(everything=True)
    return done.seen_by_library


def test_a_connect_to_a_host_an_earlier_tool_call_reached_is_not_hidden() -> None:
    """The library saw a connection to 10.0.0.5:443 in one tool call; the same connection made
    around Python in a later tool call, or before the library's own in the same call, is
    reported as unseen."""
    c = Correlator(hold_seconds=0.0)
    c.register_agent(AGENT, "agent")
    legit = _span("check", 0, 100, events=(_record("net.connect", 10, **PEER),))
    attacker = _span("payload", 200, 300)
    c.add_spans([legit, attacker])
    connect = {"address": "10.0.0.5", "port": 443, "result": 0}
    assert _seen(c, _act(CONNECT, 11, **connect)) is True
    assert _seen(c, _act(CONNECT, 250, **connect)) is False
    assert _seen(c, _act(CONNECT, 5, **connect)) is False


def test_acts_outside_the_tools_thread_count_as_seen_by_a_record_open_at_that_time() -> None:
    """A connect from a thread no tool span names (a worker the tool used, a model client's
    connection inside a chat span) counts as seen by the library's record of it on a span open
    at that moment; the same connect later, with no record then, does not."""
    c = Correlator(hold_seconds=0.0)
    c.register_agent(AGENT, "agent")
    tool = _span("fetch", 0, 100, events=(_record("net.connect", 10, **PEER),))
    chat = _span("model", 200, 300, operation="chat",
                 events=(_record("net.connect", 210, **PEER),))
    c.add_spans([tool, chat])
    connect = {"address": "10.0.0.5", "port": 443, "result": 0}
    assert _seen(c, _act(CONNECT, 12, tid=777, **connect)) is True
    assert _seen(c, _act(CONNECT, 211, tid=778, **connect)) is True
    assert _seen(c, _act(CONNECT, 400, tid=778, **connect)) is False


def test_a_record_on_a_span_inside_the_tool_call_counts_for_it() -> None:
    """A connection the library recorded on a chat span inside the tool call (a tool that asks a
    model) covers the kernel's connect, which is joined to the tool span."""
    c = Correlator(hold_seconds=0.0)
    c.register_agent(AGENT, "agent")
    tool = _span("ask", 0, 100)
    inner = _span("inner-chat", 10, 50, operation="chat", parent=tool.span_id,
                  events=(_record("net.connect", 20, **PEER),))
    c.add_spans([inner, tool])
    event = _act(CONNECT, 21, address="10.0.0.5", port=443, result=0)
    assert _seen(c, event) is True
    assert event.attribution.span_id == tool.span_id


def test_lookups_and_opens_are_matched_by_name_and_path() -> None:
    """A lookup the library recorded covers the kernel's query of that name (also with a search
    domain of the agent's resolver appended), not a query of another name in the same tool
    call; an open it recorded covers that file (also opened by a relative name), not another."""
    c = Correlator(hold_seconds=0.0)
    agent = c.register_agent(AGENT, "agent")
    assert agent is not None
    tool = _span("work", 0, 100, events=(
        _record("net.connect", 1, **PEER),
        _record("dns.lookup", 10, **{"dns.question.name": "api.example.com"}),
        _record("file.open", 20, **{"file.path": "/home/u/.aws/credentials",
                                    "agentguard.file.write": False})))
    c.add_spans([tool])
    assert _seen(c, _act(DNS, 30, query="c2.attacker.example")) is False
    assert _seen(c, _act(DNS, 30, query="api.example.com.attacker.example")) is False
    assert _seen(c, _act(OPEN, 30, path="/home/u/.ssh/id_rsa", write=False)) is False
    assert _seen(c, _act(OPEN, 31, path="/home/u/.aws/credentials", write=True)) is False
    assert _seen(c, _act(DNS, 11, query="api.example.com")) is True
    assert _seen(c, _act(OPEN, 21, path="/home/u/.aws/credentials", write=False)) is True
    assert _seen(c, _act(OPEN, 21, path="credentials", write=False)) is True
    # The resolver's search list, as read from the agent's /etc/resolv.conf.
    agent.search_domains = ("svc.cluster.local",)
    assert _seen(c, _act(DNS, 11, query="api.example.com.svc.cluster.local")) is True


def test_the_search_list_is_read_from_the_agents_own_file_system(tmp_path: Path) -> None:
    """An agent in a mount namespace of its own (a container) has its own /etc/resolv.conf: its
    search domains are read from there, so its lookups with them appended count as seen."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a mount namespace of its own needs root and unshare")
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local\n"
                    "options ndots:5\n")
    process = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f"mount --bind {conf} /etc/resolv.conf && echo ready && exec sleep 30"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        agent = process.pid
        c = Correlator(hold_seconds=0.0)
        c.register_agent(agent, "agent")
        c.add_spans([SpanInfo("a" * 32, "b" * 16, None, "execute_tool work", "execute_tool",
                              T0, T0 + 100 * MS, agent, agent, "agent", tool="work", events=(
                                  _record("net.connect", 1, **PEER),
                                  _record("dns.lookup", 10,
                                          **{"dns.question.name": "api.example.com"})))])
        query = KernelEvent(DNS, T0 + 11 * MS, agent, agent,
                            {"query": "api.example.com.default.svc.cluster.local"})
        (done,) = c.observe(query)
        assert done.seen_by_library is True
        assert c.agents[agent].search_domains == ("default.svc.cluster.local",
                                                  "svc.cluster.local")
    finally:
        process.kill()
        process.wait()


# -- a real agent --------------------------------------------------------------------------------

SCRIPT = r'''
import ctypes, json, socket, sys, threading
import agentguard

endpoint, protocol, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
agentguard.instrument(service_name="scope-agent", exporter="otlp", otlp_endpoint=endpoint,
                      otlp_protocol=protocol)
from opentelemetry import trace

seen = {}


def remember(name):
    context = trace.get_current_span().get_span_context()
    seen[name] = format(context.span_id, "016x")


@agentguard.tool
def check_service(target: str) -> str:
    """Connect to the service through Python."""
    remember("check_service")
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    return "up"


@agentguard.tool
def payload(target: str) -> str:
    """Connect to the same service through libc, below Python's audit hooks."""
    remember("payload")
    libc = ctypes.CDLL(None, use_errno=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    address = socket.inet_aton("127.0.0.1")
    sockaddr = (ctypes.c_ubyte * 16)(2, 0, port >> 8, port & 0xFF, *address, *([0] * 8))
    result = libc.connect(sock.fileno(), sockaddr, 16)
    sock.close()
    return str(result)


print(json.dumps({"ready": True}), flush=True)
if sys.stdin.readline().strip() != "go":
    sys.exit(1)
with agentguard.conversation("conv-scope", user="tester"):
    check_service("svc")
    payload("svc")
agentguard.flush()
print(json.dumps(seen), flush=True)
agentguard.uninstrument()
'''


def test_an_attacker_tool_connecting_natively_to_a_host_a_legit_tool_used_is_flagged(
        tmp_path: Path, listener: Listener) -> None:
    """A real agent: one tool connects to a service through Python, the next connects to the
    same service through libc. The first connect is seen by the library; the second is kernel
    only and raises AGK002 on the second tool's span."""
    require_ebpf()
    collector = start_collector(tmp_path, sensor="ebpf")
    try:
        script = tmp_path / "scope_agent.py"
        script.write_text(SCRIPT)
        endpoint = "http://" + collector.endpoints()["otlp_http"]
        pid, out = run_agent_script(collector, [endpoint, "http/protobuf", str(listener.port)],
                                    env={**os.environ, "AGENTGUARD_RUNTIME_SENSOR": "true"},
                                    script=str(script))
        spans = json.loads(out.strip().splitlines()[-1])

        def connects() -> dict[str, Any] | None:
            collector.sync()
            found = {e["span_id"]: e for e in stored_events(collector, kind="net.connect", pid=pid)
                     if e["data"]["port"] == listener.port}
            return found if set(spans.values()) <= set(found) else None

        found = wait_for(connects, timeout=20)
        assert found[spans["check_service"]]["seen_by_library"] is True
        assert found[spans["payload"]]["seen_by_library"] is False

        (finding,) = wait_for(lambda: stored_findings(collector, "AGK002"), timeout=20)
        assert (finding.span_id, finding.tool, finding.severity) == \
            (spans["payload"], "payload", "high")
    finally:
        collector.stop()
