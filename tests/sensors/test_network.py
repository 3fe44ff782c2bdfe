"""Connections, datagrams and DNS lookups inside tool calls, on real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

import agentguard
from agentguard import sensors
from tests.otlp_receiver import OtlpReceiver
from tests.sensors.helpers import LoopbackHTTP, Recorder, events, make_tool, run_tool


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock


def _port(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port


def test_a_connection_in_a_tool_is_a_span_event(guarded: Any, spans: Any,
                                                listener: socket.socket) -> None:
    """A TCP connect to a loopback listener is a net.connect event and a NetConnect for the
    policy, both naming the tool call."""
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)
    port = _port(listener)

    def connect() -> str:
        """Connect to the listener."""
        with socket.create_connection(("127.0.0.1", port)):
            return "connected"

    assert run_tool(connect, call_id="call-net") == "connected"
    span = spans.one("execute_tool connect")
    (event,) = events(span, "net.connect")
    assert event == {"network.peer.address": "127.0.0.1", "network.peer.port": port,
                     "network.transport": "tcp", "network.type": "ipv4",
                     "agentguard.net.operation": "connect"}
    (connect_event,) = recorder.of("net_connect")
    assert (connect_event.address, connect_event.port, connect_event.protocol) == \
        ("127.0.0.1", port, "tcp")
    assert connect_event.context.tool_call_id == "call-net"
    assert connect_event.context.span_id == format(span.context.span_id, "016x")


def test_a_lookup_in_a_tool_is_a_dns_event(guarded: Any, spans: Any) -> None:
    """Resolving a name in a tool is a dns.lookup event; literal addresses are not lookups."""
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)

    def resolve() -> str:
        """Resolve two names."""
        socket.getaddrinfo("localhost", 443)
        socket.getaddrinfo("127.0.0.1", 443)
        socket.gethostbyname("localhost")
        return "ok"

    run_tool(resolve)
    (event,) = events(spans.one("execute_tool resolve"), "dns.lookup")
    assert event["dns.question.name"] == "localhost"
    assert [(e.hostname, e.port) for e in recorder.of("dns_lookup")] == [
        ("localhost", 443), ("localhost", None)]


def test_repeated_connections_are_judged_each_time_and_recorded_once(
        guarded: Any, spans: Any, listener: socket.socket) -> None:
    """Ten connections to one destination reach the policy ten times and leave one span event
    plus a count of the repeats."""
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)
    port = _port(listener)

    def pool() -> str:
        """Connect ten times."""
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", port)):
                pass
        return "ok"

    run_tool(pool)
    span = spans.one("execute_tool pool")
    assert len(events(span, "net.connect")) == 1
    assert span.attributes["agentguard.sensor.events_suppressed"] == 9
    assert len(recorder.of("net_connect")) == 10


def test_datagrams_are_reported_once_per_destination(guarded: Any, spans: Any) -> None:
    """UDP datagrams are net.connect events with transport udp, judged once per destination."""
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        port = _port(receiver)

        def send() -> str:
            """Send five datagrams."""
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                for _ in range(5):
                    sender.sendto(b"x", ("127.0.0.1", port))
            return "sent"

        run_tool(send)
    (event,) = events(spans.one("execute_tool send"), "net.connect")
    assert (event["network.transport"], event["network.peer.port"]) == ("udp", port)
    assert event["agentguard.net.operation"] == "sendto"
    assert len(recorder.of("net_connect")) == 1


def test_only_container_runtime_unix_sockets_are_reported(guarded: Any, spans: Any,
                                                          tmp_path: Path) -> None:
    """A Unix socket connection is reported only when it is a container runtime's API."""
    guarded()
    servers = []
    for name in ("app.sock", "docker.sock"):
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(tmp_path / name))
        server.listen(1)
        servers.append(server)

    def local_ipc() -> str:
        """Connect to two Unix sockets."""
        for name in ("app.sock", "docker.sock"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(str(tmp_path / name))
        return "ok"

    try:
        run_tool(local_ipc)
    finally:
        for server in servers:
            server.close()
    (event,) = events(spans.one("execute_tool local_ipc"), "net.connect")
    assert event["network.peer.address"] == str(tmp_path / "docker.sock")
    assert event["network.transport"] == "unix"


def test_enforce_blocks_a_connection_before_it_is_made(guarded: Any, spans: Any,
                                                       listener: socket.socket) -> None:
    """A blocked connect raises PermissionError and the listener never sees a connection."""
    port = _port(listener)
    findings: list[agentguard.Finding] = []
    guarded(on_block="raise", mode="enforce", builtin_rules=False, on_finding=findings.append,
            policy=[Recorder(block=lambda e: e.kind == "net_connect" and e.port == port,
                             rule_id="NO-EGRESS")])

    def exfiltrate() -> str:
        """Send data out."""
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(b"context window")
        return "sent"

    with pytest.raises(PermissionError, match="NO-EGRESS"):
        run_tool(exfiltrate)
    listener.settimeout(0.2)
    with pytest.raises(socket.timeout):
        listener.accept()
    assert [(f.rule_id, f.action, f.tool) for f in findings] == [
        ("NO-EGRESS", "block", "exfiltrate")]
    (event,) = events(spans.one("execute_tool exfiltrate"), "net.connect")
    assert event["agentguard.decision"] == "block"


def _fetch_urllib(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def _fetch_requests(url: str) -> str:
    return requests.get(url, timeout=5).text


def _fetch_httpx(url: str) -> str:
    with httpx.Client() as client:
        return client.get(url, timeout=5).text


def test_http_clients_in_a_thread_pool_are_attributed_to_their_tool(
        guarded: Any, spans: Any) -> None:
    """urllib, requests and httpx calls running concurrently in a thread pool, each in its own
    tool call, land on their own tool spans only."""
    guarded()
    clients = {"urllib": _fetch_urllib, "requests": _fetch_requests, "httpx": _fetch_httpx}
    barrier = threading.Barrier(len(clients), timeout=5)
    with contextlib.ExitStack() as stack:
        servers = {name: stack.enter_context(LoopbackHTTP()) for name in clients}

        def call(name: str) -> str:
            def fetch(path: str) -> str:
                """Fetch a URL."""
                barrier.wait()
                return clients[name](f"http://localhost:{servers[name].port}/{path}")

            return str(run_tool(fetch, name=f"fetch_{name}", path=name))

        with ThreadPoolExecutor(max_workers=len(clients)) as pool:
            results = dict(zip(clients, pool.map(call, clients), strict=True))
    for name, server in servers.items():
        assert results[name] == f"ok {server.port}"
        span = spans.one(f"execute_tool fetch_{name}")
        ports = {e["network.peer.port"] for e in events(span, "net.connect")}
        assert ports == {server.port}, name
        assert [e["dns.question.name"] for e in events(span, "dns.lookup")] == ["localhost"]


async def test_eight_concurrent_async_tool_calls_are_attributed(guarded: Any, spans: Any) -> None:
    """Eight async tool calls fetching at the same time (httpx's async client, and urllib and
    requests in worker threads) each get exactly their own connection and DNS lookup, including
    the lookups asyncio runs in its executor."""
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)
    count = 8
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(LoopbackHTTP()) for _ in range(count)]
        started = 0
        all_started = asyncio.Event()

        async def fetch(index: int) -> str:
            """Fetch from server ``index``."""
            nonlocal started
            started += 1
            if started == count:
                all_started.set()
            await asyncio.wait_for(all_started.wait(), 5)
            url = f"http://localhost:{servers[index].port}/"
            if index % 3 == 1:
                return await asyncio.to_thread(_fetch_requests, url)
            if index % 3 == 2:
                return await asyncio.to_thread(_fetch_urllib, url)
            async with httpx.AsyncClient() as client:
                response = await client.get(url, timeout=5)
            return response.text

        tool = make_tool(fetch)
        results = await asyncio.gather(*[
            tool.ainvoke({"name": "fetch", "args": {"index": i}, "id": f"call-{i}",
                          "type": "tool_call"}) for i in range(count)])
    assert [r.content for r in results] == [f"ok {s.port}" for s in servers]
    by_call = {s.attributes["gen_ai.tool.call.id"]: s for s in spans.named("execute_tool fetch")}
    for index, server in enumerate(servers):
        span = by_call[f"call-{index}"]
        assert {e["network.peer.port"] for e in events(span, "net.connect")} == {server.port}
        assert len(events(span, "dns.lookup")) == 1
    lookups = recorder.of("dns_lookup")
    assert len(lookups) == count
    assert {e.context.tool_call_id for e in lookups} == {f"call-{i}" for i in range(count)}


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_the_exporters_own_connections_are_never_reported(protocol: str, spans: Any) -> None:
    """Spans exported over real OTLP while tools make connections: the exporter's own
    connections and lookups never reach the policy or any span (the HTTP exporter connects
    from Python; gRPC connects from its C core, and must stay invisible just the same)."""
    recorder = Recorder()
    with OtlpReceiver() as receiver, LoopbackHTTP() as server:
        agentguard.instrument(exporter="otlp", otlp_protocol=protocol, service_name="exp",
                              otlp_endpoint=receiver.endpoint(protocol).replace(
                                  "127.0.0.1", "localhost"),
                              policy=[recorder], builtin_rules=False)

        def fetch(n: int) -> str:
            """Fetch a page."""
            return _fetch_urllib(f"http://127.0.0.1:{server.port}/{n}")

        for n in range(3):
            run_tool(fetch, n=n)
            assert agentguard.flush(5)
        received = receiver.wait_for(
            lambda got: len([s for s in got if s.name == "execute_tool fetch"]) == 3)
        agentguard.uninstrument()
        receiver_port = receiver.grpc_port if protocol == "grpc" else receiver.http_port
    tools = [s for s in received if s.name == "execute_tool fetch"]
    assert all(s.events == ["net.connect"] for s in tools)
    assert {e.port for e in recorder.of("net_connect")} == {server.port}
    assert recorder.of("dns_lookup") == []
    assert receiver_port != server.port
    assert sensors.stats()["events"] > 0
