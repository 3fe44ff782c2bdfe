"""What the collector takes in and keeps: the byte budget of its queue, the loss report of a stop
that cannot drain, compressed and short HTTP bodies, and slow or greedy HTTP senders.

Every test runs a real collector and talks to it over loopback sockets."""

from __future__ import annotations

import gzip
import http.client
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from agentguard._errors import internal_error_counts
from agentguard.collector.daemon import Collector
from agentguard.collector.store import Store
from tests.collector.helpers import wait_for
from tests.collector.test_receiver import export_request, grpc_export, post


def bulk_request(count: int, first: int = 0) -> bytes:
    """An OTLP request of ``count`` small spans with span ids ``first + 1`` onwards (no agent pid,
    so the core only stores them)."""
    trace_id = os.urandom(16)
    spans = [trace_pb2.Span(trace_id=trace_id, span_id=struct.pack(">Q", first + i + 1),
                            name="bulk", start_time_unix_nano=1_000, end_time_unix_nano=2_000)
             for i in range(count)]
    request = trace_service_pb2.ExportTraceServiceRequest(resource_spans=[
        trace_pb2.ResourceSpans(scope_spans=[trace_pb2.ScopeSpans(spans=spans)])])
    body: bytes = request.SerializeToString()
    return body


def stored_spans(db: str) -> int:
    store = Store(db, readonly=True)
    try:
        return int(store.db.execute("SELECT count(*) FROM spans").fetchone()[0])
    finally:
        store.close()


def final_state(db: str) -> str | None:
    store = Store(db, readonly=True)
    try:
        state = store.status().get("collector", {}).get("value", {}).get("state")
    finally:
        store.close()
    return None if state is None else str(state)


def raw_http(port: int, head: bytes, body: bytes = b"", *, half_close: bool = False,
             timeout: float = 5.0) -> tuple[int, bytes]:
    """Send ``head`` and ``body`` as they are; the response's status and everything after it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + body)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    return int(response.split(b" ", 2)[1]), response


def http_port(collector: Collector) -> int:
    return int(collector.endpoints()["otlp_http"].rsplit(":", 1)[1])


@pytest.fixture
def collector(collector_factory: Callable[..., Collector]) -> Collector:
    return collector_factory(sensor="none", max_request_bytes=256 * 1024)


# -- the queue's byte budget -----------------------------------------------------------------


def test_request_bytes_waiting_for_the_core_are_bounded(collector: Collector) -> None:
    """Past the queue's byte budget both transports are told to retry later (HTTP 503 with
    Retry-After, gRPC UNAVAILABLE), refusals are counted, and everything answered OK is stored."""
    body = bulk_request(4000)
    # Less than one request: a request is admitted only while no other one waits for the core.
    collector.max_queue_bytes = len(body) // 2
    accepted = 0
    refused = {"http": 0, "grpc": 0}
    for attempt in range(40):
        request = bulk_request(4000, first=(attempt + 1) * 10_000)
        if attempt % 2:
            try:
                grpc_export(collector, request)
                accepted += 4000
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE
                refused["grpc"] += 1
        else:
            status, answer, headers = post(collector, request)
            if status == 200:
                accepted += 4000
            else:
                assert status == 503 and headers.get("Retry-After") == "1"
                assert status_pb2.Status.FromString(answer).code == code_pb2.UNAVAILABLE
                refused["http"] += 1
        if attempt == 0:
            assert accepted == 4000, "a request into an idle queue is always admitted"
        if refused["http"] and refused["grpc"]:
            break
    assert refused["http"] and refused["grpc"], refused
    assert collector.counters["requests_over_queue_bytes"] == sum(refused.values())
    assert collector.snapshot()["otlp_busy"] == sum(refused.values())
    wait_for(lambda: collector.sync() and stored_spans(collector.settings.db) == accepted)


# -- stopping --------------------------------------------------------------------------------


def post_backlog(port: int, requests: int = 80, spans: int = 1000) -> int:
    """Post requests of ``spans`` small spans each, on one connection to the OTLP/HTTP ``port``,
    faster than the core stores them; returns the spans answered with 200."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for index in range(requests):
            connection.request("POST", "/v1/traces", bulk_request(spans, first=index * spans),
                               {"Content-Type": "application/x-protobuf"})
            response = connection.getresponse()
            response.read()
            assert response.status == 200
    finally:
        connection.close()
    return requests * spans


def daemon_port(daemon: subprocess.Popen[str]) -> int:
    """The OTLP/HTTP port a ``collector run`` daemon announces on stderr."""
    assert daemon.stderr is not None
    while True:
        line = daemon.stderr.readline()
        assert line, "collector exited before listening"
        if "listening on otlp_http" in line:
            return int(line.split("otlp_http ", 1)[1].split(",", 1)[0].rsplit(":", 1)[1])


def test_a_stop_that_cannot_drain_in_time_counts_and_logs_what_is_lost(
        collector: Collector, caplog: pytest.LogCaptureFixture) -> None:
    """A stop whose drain runs out of time says so: it returns False, logs and counts the accepted
    requests and spans it did not store, and every accepted span is either stored or counted."""
    collector.max_queue_bytes = 1 << 30
    errors_before = sum(internal_error_counts().values())
    sent = post_backlog(http_port(collector))
    with caplog.at_level(logging.ERROR, logger="agentguard.collector"):
        assert collector.stop(timeout=1.0) is False
    # Had the core still been storing a request at the deadline, it records the stop when done.
    wait_for(lambda: final_state(collector.settings.db) == "stopped", timeout=10)
    lost_requests = collector.counters["requests_lost_at_stop"]
    lost_spans = collector.counters["spans_lost_at_stop"]
    assert lost_requests > 0 and lost_spans == lost_requests * 1000
    assert f"{lost_requests} accepted request(s) ({lost_spans} spans) were not stored" in caplog.text
    assert stored_spans(collector.settings.db) + lost_spans == sent
    assert sum(internal_error_counts().values()) == errors_before
    store = Store(collector.settings.db, readonly=True)
    try:
        status = store.status()["collector"]["value"]
    finally:
        store.close()
    assert status["state"] == "stopped"
    assert status["counters"]["spans_lost_at_stop"] == lost_spans


def test_the_store_is_not_closed_under_a_core_still_storing(collector: Collector,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """When the core is still storing a request at the stop deadline the store stays open: that
    request is stored in full, with no internal error, and the stop reports the shortfall."""
    collector.receiver.max_request_bytes = 8 * 1024 * 1024
    collector.max_queue_bytes = 1 << 30
    errors_before = sum(internal_error_counts().values())
    assert post(collector, bulk_request(40_000))[0] == 200
    wait_for(lambda: collector.counters["spans_received"] == 40_000)
    with caplog.at_level(logging.ERROR, logger="agentguard.collector"):
        assert collector.stop(timeout=0.05) is False
    assert "still storing" in caplog.text
    wait_for(lambda: stored_spans(collector.settings.db) == 40_000, timeout=30)
    # The core, done, closes the store itself and records the stop.
    wait_for(lambda: final_state(collector.settings.db) == "stopped", timeout=10)
    assert sum(internal_error_counts().values()) == errors_before


_RUN = """
import logging, sys
from agentguard.collector.daemon import Collector
from agentguard.collector.settings import load_settings
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
settings = load_settings({"db": sys.argv[1], "otlp_grpc": "off", "otlp_http": "127.0.0.1:0",
                          "sensor": "none", "discover": False}, environ={})
sys.exit(Collector(settings).run(stop_timeout=float(sys.argv[2])))
"""


def test_sigterm_with_accepted_spans_left_exits_nonzero(tmp_path: Path) -> None:
    """A collector that receives SIGTERM with accepted spans it cannot store in time exits with
    status 1, names the loss on stderr and records it in its final status."""
    db = str(tmp_path / "c.db")
    daemon = subprocess.Popen([sys.executable, "-c", _RUN, db, "1.0"], stderr=subprocess.PIPE,
                              text=True)
    try:
        # Small requests, posted much faster than the core stores them: a backlog of seconds,
        # and the one request the core is storing at the deadline is done well within its grace.
        sent = post_backlog(daemon_port(daemon))
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=20)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert daemon.returncode == 1, err[-2000:]
    assert "were not stored" in err
    store = Store(db, readonly=True)
    try:
        counters = store.status()["collector"]["value"]["counters"]
    finally:
        store.close()
    assert counters["spans_lost_at_stop"] > 0
    assert stored_spans(db) + counters["spans_lost_at_stop"] == sent


# -- HTTP bodies -----------------------------------------------------------------------------


def test_truncated_or_trailing_compressed_bodies_are_refused(collector: Collector) -> None:
    """A gzip body cut short, or a deflate body with bytes after its end, gets 400 and none of its
    spans are stored."""
    first = export_request("first_half").SerializeToString()
    second = export_request("second_half").SerializeToString()
    deflater = zlib.compressobj(6, zlib.DEFLATED, 31)
    # A full flush makes the first half decodable on its own: only the end of stream is missing.
    cut = deflater.compress(first) + deflater.flush(zlib.Z_FULL_FLUSH)
    status, answer, _ = post(collector, cut, {"Content-Encoding": "gzip"})
    assert status == 400
    assert status_pb2.Status.FromString(answer).code == code_pb2.INVALID_ARGUMENT
    whole = cut + deflater.compress(second) + deflater.flush()
    assert post(collector, whole, {"Content-Encoding": "gzip"})[0] == 200
    trailing = zlib.compress(export_request("trailing").SerializeToString()) + b"junk"
    assert post(collector, trailing, {"Content-Encoding": "deflate"})[0] == 400
    assert post(collector, b"", {"Content-Encoding": "gzip"})[0] == 400
    collector.sync()
    store = Store(collector.settings.db, readonly=True)
    try:
        names = [span["name"] for span in store.spans()]
    finally:
        store.close()
    assert sorted(names) == ["execute_tool first_half", "execute_tool second_half"]


def test_every_member_of_a_multi_member_gzip_body_is_read(collector: Collector) -> None:
    """A gzip body of several members (RFC 1952) is read whole, as ``gzip -d`` reads it, and its
    inflated size counts against the request limit over all members."""
    one = export_request("member_one", "member_one_b").SerializeToString()
    two = export_request("member_two").SerializeToString()
    status, _, _ = post(collector, gzip.compress(one) + gzip.compress(two),
                        {"Content-Encoding": "gzip"})
    assert status == 200
    collector.sync()
    store = Store(collector.settings.db, readonly=True)
    try:
        names = {span["name"] for span in store.spans()}
    finally:
        store.close()
    assert names == {"execute_tool member_one", "execute_tool member_one_b",
                     "execute_tool member_two"}
    # Two members of 200 KiB each: each under the 256 KiB limit, together over it.
    half = b"\x00" * (200 * 1024)
    status, answer, _ = post(collector, gzip.compress(half) + gzip.compress(half),
                             {"Content-Encoding": "gzip"})
    assert status == 413
    assert status_pb2.Status.FromString(answer).code == code_pb2.RESOURCE_EXHAUSTED


def test_a_body_shorter_than_its_content_length_is_refused(collector: Collector) -> None:
    """A sender that declares more bytes than it sends gets 400 and a closed connection, and
    the part it did send is not stored."""
    part = export_request("partial").SerializeToString()
    head = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: %d\r\n\r\n" % (len(part) * 2))
    status, response = raw_http(http_port(collector), head, part, half_close=True)
    assert status == 400
    assert b"\r\nConnection: close\r\n" in response
    assert collector.receiver.counters["malformed"] == 1
    collector.sync()
    assert stored_spans(collector.settings.db) == 0


# -- slow and greedy senders -----------------------------------------------------------------


@pytest.fixture
def trickle() -> Iterator[Callable[[list[socket.socket], bytes], None]]:
    """Keep sending one byte (of ``data``, cycling) every 0.1 s on each socket, until the test ends
    or the collector closes it."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(socks: list[socket.socket], data: bytes) -> None:
        def run() -> None:
            position = 0
            while not stop.wait(0.1) and socks:
                for sock in list(socks):
                    try:
                        sock.send(data[position % len(data):position % len(data) + 1])
                    except OSError:
                        socks.remove(sock)
                position += 1
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)

    yield start
    stop.set()
    for thread in threads:
        thread.join(5)


def try_post(collector: Collector, name: str) -> int | None:
    """The status of one export (None: the connection was refused or closed under it)."""
    try:
        return post(collector, export_request(name).SerializeToString())[0]
    except OSError:
        return None


def _read_status(sock: socket.socket) -> int | None:
    """The status of the response the collector sent on ``sock`` (None: closed without one)."""
    sock.settimeout(5)
    try:
        response = sock.recv(4096)
    except OSError:
        return None
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else None


def test_slow_senders_are_cut_off_at_the_request_deadline(
        collector: Collector, trickle: Callable[[list[socket.socket], bytes], None]) -> None:
    """Senders that trickle headers or a body hold a connection only until the request deadline:
    they get 408 and are closed, and an agent locked out meanwhile gets through again."""
    collector.receiver.request_timeout = 0.6
    port = http_port(collector)
    head = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: 100000\r\n\r\n")
    body_senders = [socket.create_connection(("127.0.0.1", port)) for _ in range(60)]
    for sock in body_senders:
        sock.sendall(head)
    header_senders = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    for sock in header_senders:
        sock.sendall(head[:10])
    watched = body_senders + header_senders
    trickle(list(body_senders), b"\x0a")
    trickle(list(header_senders), head[10:])
    try:
        assert try_post(collector, "locked_out") in (503, None)
        started = time.monotonic()
        wait_for(lambda: try_post(collector, "let_in") == 200, timeout=3, interval=0.1)
        assert time.monotonic() - started < 3
        statuses = [_read_status(sock) for sock in watched]
    finally:
        for sock in watched:
            sock.close()
    assert statuses.count(408) == len(watched), statuses
    assert collector.receiver.counters["timed_out"] == len(watched)


def _non_loopback_address() -> str | None:
    """An IPv4 address of this host's that is not loopback."""
    import ipaddress

    import psutil

    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and \
                    not ipaddress.ip_address(address.address).is_loopback:
                return str(address.address)
    return None


def test_one_remote_address_cannot_take_every_connection(
        collector_factory: Callable[..., Collector]) -> None:
    """Connections from one non-loopback address are capped (16 of 64): its seventeenth gets 503
    while other senders still get through."""
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this host has no non-loopback IPv4 address")
    collector = collector_factory(sensor="none", otlp_http="0.0.0.0:0")
    port = http_port(collector)
    held = [socket.create_connection((address, port)) for _ in range(16)]
    try:
        wait_for(lambda: collector.receiver.connections.get(address) == 16)
        status, _ = raw_http_to(address, port)
        assert status == 503
        assert post(collector, export_request("from_loopback").SerializeToString())[0] == 200
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: address not in collector.receiver.connections)
    assert raw_http_to(address, port)[0] == 200
    assert collector.receiver.counters["connections_refused"] == 1


def raw_http_to(address: str, port: int) -> tuple[int, bytes]:
    body = export_request("remote").SerializeToString()
    with socket.create_connection((address, port), timeout=5) as sock:
        sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Type: application/x-protobuf\r\nContent-Length: %d\r\n\r\n"
                     % len(body) + body)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    return int(response.split(b" ", 2)[1]), response
