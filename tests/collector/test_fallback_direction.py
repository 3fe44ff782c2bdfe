"""The /proc polling sensor tells connections a watched process accepted from ones it opened."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from agentguard.collector.daemon import Collector
from agentguard.collector.fallback import ListeningPorts, ProcSensor
from agentguard.collector.procfs import net_namespace
from agentguard.collector.store import Store
from tests.collector.conftest import Listener, require_ebpf
from tests.collector.helpers import tree_events, wait_for

# An instrumented agent that serves HTTP inside its own process. Its first conversation runs a
# tool that connects out through Python (seen in-process) and one that waits until a peer has
# called the health endpoint (the request is held open for a few polls); its second runs a tool
# that connects out through libc, below the audit hooks, and holds the connection a few polls so
# the polling sensor sees it.
SERVING_AGENT = r'''
import ctypes, json, socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import agentguard

endpoint, port, upstream = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
agentguard.instrument(service_name="serving-agent", exporter="otlp", otlp_endpoint=endpoint,
                      otlp_protocol="http/protobuf")
from langchain_core.tools import tool
from opentelemetry import trace

served = threading.Event()


class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(0.6)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        served.set()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
threading.Thread(target=server.serve_forever, daemon=True).start()
spans = {}


def remember(name):
    context = trace.get_current_span().get_span_context()
    spans[name] = format(context.span_id, "016x")


@tool
def check_upstream(target: str) -> str:
    """Connect to the upstream through Python, where the in-process sensor sees it."""
    remember("check_upstream")
    with socket.create_connection(("127.0.0.1", upstream)):
        time.sleep(0.3)
    return "reachable"


@tool
def wait_for_health_check(reason: str) -> str:
    """Wait until the health endpoint has been called."""
    remember("wait_for_health_check")
    print(json.dumps({"serving": True}), flush=True)
    return "served" if served.wait(20) else "timeout"


@tool
def native_connect(target: str) -> str:
    """Connect through libc, below Python's audit hooks."""
    remember("native_connect")
    # Clear of the previous tool call's end, so attribution by time cannot hesitate.
    time.sleep(0.2)
    libc = ctypes.CDLL(None, use_errno=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    address = socket.inet_aton("127.0.0.1")
    sockaddr = (ctypes.c_ubyte * 16)(2, 0, port >> 8, port & 0xFF, *address, *([0] * 8))
    result = libc.connect(sock.fileno(), sockaddr, 16)
    time.sleep(0.6)
    sock.close()
    return str(result)


print(json.dumps({"ready": True, "http_port": server.server_address[1]}), flush=True)
if sys.stdin.readline().strip() != "go":
    sys.exit(1)
with agentguard.conversation("conv-serving", user="tester"):
    check_upstream.invoke({"target": "127.0.0.1"})
    # Its span tells the collector that the in-process sensor runs here and reports connects.
    agentguard.flush()
    wait_for_health_check.invoke({"reason": "probe"})
with agentguard.conversation("conv-native", user="tester"):
    native_connect.invoke({"target": "127.0.0.1"})
agentguard.flush()
print(json.dumps(spans), flush=True)
server.shutdown()
agentguard.uninstrument()
'''


def _findings_and_incidents(collector: Collector) -> tuple[list[Any], list[dict[str, Any]]]:
    store = Store(collector.settings.db, readonly=True)
    try:
        return store.findings(), store.incidents()
    finally:
        store.close()


@pytest.mark.parametrize("sensor", ["procfs", "ebpf"])
def test_agent_serving_http_raises_no_bypass_but_a_native_connect_does(
        collector_factory: Callable[..., Collector], listener: Listener, sensor: str) -> None:
    """A health check served inside the agent is no bypass; its own native connect still is (the
    eBPF sensor traces connect() only, so it never had the confusion: checked the same way)."""
    if sensor == "ebpf":
        require_ebpf()
    collector = collector_factory(sensor=sensor, poll_interval=0.05)
    assert collector.sensor.name == sensor
    endpoint = "http://" + collector.endpoints()["otlp_http"]
    upstream = Listener()
    process = subprocess.Popen(
        [sys.executable, "-c", SERVING_AGENT, endpoint, str(listener.port), str(upstream.port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "AGENTGUARD_RUNTIME_SENSOR": "true"})
    try:
        assert process.stdout is not None and process.stdin is not None
        ready = json.loads(process.stdout.readline())
        assert ready["ready"] is True
        assert collector.watch(process.pid, "test agent")
        assert collector.sync()
        process.stdin.write("go\n")
        process.stdin.flush()
        assert json.loads(process.stdout.readline()) == {"serving": True}
        # This test process is the other local process calling the agent's endpoint.
        caller = http.client.HTTPConnection("127.0.0.1", ready["http_port"], timeout=10)
        caller.connect()
        assert caller.sock is not None
        caller_port = caller.sock.getsockname()[1]
        caller.request("GET", "/health")
        assert caller.getresponse().read() == b"ok"
        caller.close()
        out, err = process.communicate(timeout=60)
    finally:
        upstream.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err[-3000:]
    spans = json.loads(out.strip().splitlines()[-1])
    native = spans["native_connect"]

    def native_joined() -> list[dict[str, Any]]:
        collector.sync()
        return [e for e in tree_events(collector, process.pid, "net.connect")
                if e["span_id"] == native]

    connects = wait_for(native_joined, timeout=20)
    assert [(e["pid"], e["data"]["port"], e["seen_by_library"]) for e in connects] == \
        [(process.pid, listener.port, False)]
    # The accepted socket (local port: the server's, peer port: the caller's) is no connect.
    agent_connects = [e for e in tree_events(collector, process.pid, "net.connect")
                      if e["pid"] == process.pid]
    # The connect Python made was matched to the library's record: the collector knows the
    # in-process sensor runs here, so an unmatched connect would be flagged.
    assert [(e["span_id"], e["seen_by_library"]) for e in agent_connects
            if e["data"]["port"] == upstream.port] == [(spans["check_upstream"], True)]
    assert [e for e in agent_connects if e["data"]["port"] == caller_port] == []
    if isinstance(collector.sensor, ProcSensor):
        assert collector.sensor.stats()["inbound"] >= 1

    def judged() -> tuple[list[Any], list[dict[str, Any]]] | None:
        collector.sync()
        findings, incidents = _findings_and_incidents(collector)
        return (findings, incidents) if any(f.span_id == native for f in findings) else None

    findings, incidents = wait_for(judged, timeout=20)
    assert [f for f in findings if f.conversation_id == "conv-serving"] == []
    assert [i for i in incidents if i["conversation_id"] == "conv-serving"] == []
    assert [i["conversation_id"] for i in incidents] == ["conv-native"]
    bypass = [f for f in findings if f.rule_id == "AGK002"]
    assert [(f.span_id, f.severity, f.conversation_id) for f in bypass] == \
        [(native, "high", "conv-native")]


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def _own_connections() -> tuple[str | None, list[Any]]:
    return net_namespace(os.getpid()), psutil.Process().net_connections(kind="inet")


def _find(connections: list[Any], local: int, remote: int) -> Any:
    return next(c for c in connections if c.laddr and c.raddr and c.laddr.port == local
                and c.raddr.port == remote)


def test_accepted_and_opened_sockets_of_one_process_are_told_apart(
        sockets: list[socket.socket]) -> None:
    """Both ends of a loopback connection inside one process: the accepted one is inbound, the
    connecting one outbound, also on a dual-stack listener reporting IPv4-mapped addresses."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    dual = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    dual.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    dual.bind(("::", 0))
    dual.listen(4)
    sockets.extend([server, dual])
    pairs = []
    for listening in (server, dual):
        client = socket.create_connection(("127.0.0.1", listening.getsockname()[1]))
        accepted, _ = listening.accept()
        sockets.extend([client, accepted])
        pairs.append((client.getsockname()[1], listening.getsockname()[1]))
    netns, connections = _own_connections()
    listeners = ListeningPorts()
    for conn in connections:
        listeners.add(netns, conn)
    for client_port, server_port in pairs:
        assert not listeners.accepted(netns, _find(connections, client_port, server_port))
        assert listeners.accepted(netns, _find(connections, server_port, client_port))
        # The same sockets seen from another network namespace match nothing.
        assert not listeners.accepted("net:[0]", _find(connections, server_port, client_port))
    # A listener bound to one address does not claim that port on another address.
    only_server = ListeningPorts()
    for conn in connections:
        if conn.laddr and conn.laddr.port == pairs[0][1] and not conn.raddr:
            only_server.add(netns, conn)
    accepted_conn = _find(connections, pairs[0][1], pairs[0][0])
    assert only_server.accepted(netns, accepted_conn)
    other = type(accepted_conn)(accepted_conn.fd, accepted_conn.family, accepted_conn.type,
                                accepted_conn.laddr._replace(ip="127.0.0.2"), accepted_conn.raddr,
                                accepted_conn.status)
    assert not only_server.accepted(netns, other)


def test_listener_memory_is_bounded_and_fails_towards_reporting(
        sockets: list[socket.socket]) -> None:
    """Past its limit the listener table drops (and counts) listeners, so their accepted
    connections are reported as connects rather than silently hidden."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    sockets.extend([server, client, accepted])
    netns, connections = _own_connections()
    full = ListeningPorts(limit=0)
    for conn in connections:
        full.add(netns, conn)
    assert full.dropped >= 1
    server_port = server.getsockname()[1]
    assert not full.accepted(netns, _find(connections, server_port, client.getsockname()[1]))


def test_accepted_sockets_of_a_watched_child_are_not_reported_as_connects(
        collector_factory: Callable[..., Collector], listener: Listener, tmp_path: Path) -> None:
    """A watched process that serves a peer and also connects out reports only the connect."""
    collector = collector_factory(sensor="procfs", poll_interval=0.05)
    ports = tmp_path / "ports.json"
    code = f"""
import json, socket, sys, time
sys.stdin.readline()
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
peer = socket.create_connection(server.getsockname())
accepted, _ = server.accept()
out = socket.create_connection(("127.0.0.1", {listener.port}))
open({str(ports)!r}, "w").write(json.dumps([server.getsockname()[1], peer.getsockname()[1]]))
time.sleep(0.6)
"""
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, text=True)
    try:
        assert collector.watch(process.pid, "test", agent=False)
        assert collector.sync()
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert collector.sync()
    server_port, peer_port = json.loads(ports.read_text())
    connects = [(e["data"]["address"], e["data"]["port"])
                for e in tree_events(collector, process.pid, "net.connect")]
    # Its own connection to its server is a connect it made; the accepted end of it is not.
    assert sorted(connects) == sorted([("127.0.0.1", server_port), ("127.0.0.1", listener.port)])
    assert ("127.0.0.1", peer_port) not in connects
    assert collector.sensor.stats()["inbound"] == 1
