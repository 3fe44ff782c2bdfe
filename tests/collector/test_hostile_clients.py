"""Hostile and buggy clients: HTTP framing a sender and a proxy could read two ways, chunked
bodies, library findings the decoder cannot take, pid reuse inside a watched tree, and input that
never lets the core's queue run empty.

Receivers run for real on loopback; correlation runs on event sequences as the sensors give them."""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from google.rpc import status_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from agentguard.collector.correlate import Correlator
from agentguard.collector.daemon import Collector
from agentguard.collector.model import FORK, KernelEvent, SpanInfo
from agentguard.collector.store import Store
from tests.collector.helpers import wait_for
from tests.collector.test_receiver import export_request, stored_span_names

_HEAD = b"POST /v1/traces HTTP/1.1\r\nHost: collector\r\nContent-Type: application/x-protobuf\r\n"


def exchange(collector: Collector, data: bytes) -> list[tuple[int, bytes, bool]]:
    """Send ``data`` on one connection, half-close it, and read every response until the
    collector closes: (status, google.rpc.Status message or body, whether it said close)."""
    port = int(collector.endpoints()["otlp_http"].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    responses = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        fields = dict(line.split(b": ", 1) for line in lines[1:])
        length = int(fields.get(b"Content-Length", b"0"))
        body, raw = rest[:length], rest[length:]
        if fields.get(b"Content-Type") == b"application/x-protobuf" and body:
            body = status_pb2.Status.FromString(body).message.encode()
        responses.append((int(lines[0].split(b" ")[1]), body,
                          fields.get(b"Connection") == b"close"))
    return responses


def chunked(body: bytes, size: int = 7) -> bytes:
    """``body`` in chunks of ``size`` bytes, with a chunk extension and a trailer field."""
    pieces = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x;note=x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + \
        b"0\r\nX-Trailer: 1\r\n\r\n"


@pytest.fixture
def collector(collector_factory: Callable[..., Collector]) -> Collector:
    return collector_factory(sensor="none", max_request_bytes=64 * 1024)


# -- HTTP framing ------------------------------------------------------------------------------


def test_a_content_length_in_other_digits_gets_400_not_a_silent_close(collector: Collector) -> None:
    """A Content-Length of a superscript digit (which str.isdigit accepts and int refuses) is
    answered 400 with a reason, and the collector still takes the next request."""
    ((status, message, closed),) = exchange(collector, _HEAD + b"Content-Length: \xb2\r\n\r\nab")
    assert status == 400 and closed
    assert b"Content-Length" in message
    assert collector.receiver.counters["malformed"] == 1
    body = export_request("after").SerializeToString()
    ((status, _, _),) = exchange(collector, _HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert status == 200


def test_ambiguous_framing_is_refused_and_the_rest_is_not_read_as_a_request(
        collector: Collector) -> None:
    """Two different Content-Lengths, or Transfer-Encoding beside Content-Length, get 400 and the
    connection is closed: bytes a proxy may have read as part of the body are never taken as a
    request of their own (request smuggling)."""
    smuggled = export_request("smuggled").SerializeToString()
    hidden = _HEAD + b"Content-Length: %d\r\n\r\n" % len(smuggled) + smuggled
    first = export_request("first").SerializeToString()
    for framing in (b"Content-Length: %d\r\nContent-Length: %d\r\n" % (len(first), len(first) +
                                                                        len(hidden)),
                    b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n" % len(first)):
        if framing.startswith(b"Transfer"):
            payload = chunked(first + hidden, size=len(first) + len(hidden))
        else:
            payload = first + hidden
        responses = exchange(collector, _HEAD + framing + b"\r\n" + payload)
        assert [(status, closed) for status, _, closed in responses] == [(400, True)], responses
    ((status, message, closed),) = exchange(
        collector, _HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n" + chunked(first))
    assert (status, closed) == (501, True) and b"Transfer-Encoding" in message
    assert stored_span_names(collector) == set()


def test_a_chunked_gzip_body_is_accepted(collector: Collector) -> None:
    """A gzip body sent in chunks without Content-Length (how Node's OTLP exporter sends
    compressed requests) is stored, and the connection stays usable."""
    body = gzip.compress(export_request("chunked_tool").SerializeToString())
    one = _HEAD + b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(body)
    responses = exchange(collector, one + one)
    assert [(status, closed) for status, _, closed in responses] == [(200, False), (200, False)]
    assert stored_span_names(collector) == {"execute_tool chunked_tool"}


def test_chunked_bodies_are_held_to_the_size_limit_and_must_end(collector: Collector) -> None:
    """Chunks adding up past max_request_bytes get 413, a chunked body cut short or with a chunk
    longer than its size gets 400; each closes the connection and nothing is stored."""
    body = export_request("never").SerializeToString()
    head = _HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
    cases = {
        413: head + b"8000\r\n" + b"\0" * 0x8000 + b"\r\n" + b"8001\r\n" + b"\0" * 0x8001,
        400: head + chunked(body)[:-20],
    }
    for status, data in cases.items():
        ((got, message, closed),) = exchange(collector, data)
        assert (got, closed) == (status, True), message
    ((got, _, closed),) = exchange(collector, head + b"2\r\n" + body + b"\r\n0\r\n\r\n")
    assert (got, closed) == (400, True)
    assert stored_span_names(collector) == set()
    assert collector.receiver.counters["too_large"] == 1


# -- library findings --------------------------------------------------------------------------


def test_a_finding_with_evidence_nested_too_deep_is_kept_with_the_others(
        collector: Collector) -> None:
    """Evidence JSON nested deeper than the decoder goes is kept as text; the span's other
    findings are stored too."""
    request = export_request("fetch")
    span = request.resource_spans[0].scope_spans[0].spans[0]
    for rule, evidence in (("AG-DEEP", "[" * 5000 + "]" * 5000), ("AG-NEXT", '{"ok": 1}')):
        span.events.append(trace_pb2.Span.Event(
            time_unix_nano=1_500, name="agentguard.finding",
            attributes=[KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in {
                "agentguard.finding.rule_id": rule, "agentguard.finding.severity": "high",
                "agentguard.finding.title": "t", "agentguard.finding.evidence": evidence}.items()]))
    body = request.SerializeToString()
    ((status, _, _),) = exchange(collector, _HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert status == 200
    wait_for(lambda: collector.sync() and collector.snapshot()["library_findings"] == 2)
    store = Store(collector.settings.db, readonly=True)
    try:
        findings = {finding.rule_id: finding.evidence for finding in store.findings()}
    finally:
        store.close()
    assert findings["AG-NEXT"] == {"ok": 1}
    assert findings["AG-DEEP"] == {"raw": ("[" * 5000 + "]" * 5000)[:2000]}


# -- correlation -------------------------------------------------------------------------------


def test_a_pid_reused_inside_a_watched_tree_does_not_hang_correlation() -> None:
    """A process forks a child and exits; the child forks a process that gets the old pid, which
    then sends spans. The loop this makes in the process table is walked once: the agent is
    registered and its own events join its span."""
    script = textwrap.dedent("""
        import resource
        # A walk that never ends fills memory; fail fast instead of taking the machine down.
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
        from agentguard.collector.correlate import Correlator
        from agentguard.collector.model import EXEC, EXIT, FORK, KernelEvent, SpanInfo
        c = Correlator(hold_seconds=0.0)
        root, old, child, t = 4_000_001, 4_000_002, 4_000_003, 1_700_000_000_000_000_000
        c.register_agent(root, "launcher")
        c.observe(KernelEvent(FORK, t, root, root, {"child_pid": old}))
        c.observe(KernelEvent(FORK, t + 1, old, old, {"child_pid": child}))
        c.observe(KernelEvent(EXIT, t + 2, old, old, {"exit_code": 0}))
        c.observe(KernelEvent(FORK, t + 3, child, child, {"child_pid": old}))
        assert c.register_agent(old, "reborn") is not None
        assert sorted(c.descendants_of(old, 0)) == [child]
        span = SpanInfo("a" * 32, "b" * 16, None, "execute_tool x", "execute_tool", t + 4, t + 9,
                        old, old, "reborn")
        c.add_spans([span])
        event = KernelEvent(EXEC, t + 5, old, old, {"exe": "/bin/true", "ppid": child})
        (done,) = c.observe(event)
        assert done.attribution.span_id == "b" * 16, done.attribution
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, cwd=os.getcwd())
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_waiting_room_keeps_nothing_for_agents_whose_events_are_done() -> None:
    """Agents come and go (one per job); once their waiting events are resolved or expired the
    correlator keeps no queue for them, so its memory and the search for the oldest waiting
    event do not grow with every agent pid ever seen."""
    c = Correlator(hold_seconds=0.0)
    t = 1_700_000_000_000_000_000
    for n in range(500):
        pid = 3_000_000 + n
        c.register_agent(pid, f"job-{n}")
        event = KernelEvent(FORK, t + n, pid, pid, {"child_pid": 3_900_000 + n})
        assert c.observe(event) == []
        if n % 2:
            # Its span arrives: the event joins it.
            c.add_spans([SpanInfo(f"{n:032x}", f"{n:016x}", None, "execute_tool x",
                                  "execute_tool", t, t + 10_000, pid, pid, "job")])
        else:
            # No span: it expires.
            c.expire(time.monotonic() + 1)
    assert c.pending_count == 0
    assert c.stats()["pending"] == 0
    assert len(c._pending) == 0, f"{len(c._pending)} empty queues kept"


# -- the core under input that never stops -----------------------------------------------------


@pytest.fixture
def feeder() -> Iterator[Callable[[Collector], threading.Event]]:
    stops: list[tuple[threading.Event, threading.Thread]] = []

    def start(collector: Collector) -> threading.Event:
        request = export_request(*(f"tool_{i}" for i in range(300)))
        stop = threading.Event()

        def feed() -> None:
            while not stop.is_set():
                if not collector.submit_request(request, "127.0.0.1", request.ByteSize()):
                    time.sleep(0.001)

        thread = threading.Thread(target=feed, daemon=True)
        thread.start()
        stops.append((stop, thread))
        return stop

    yield start
    for stop, thread in stops:
        stop.set()
        thread.join(10)


def test_status_stays_fresh_while_the_queue_never_runs_empty(
        collector_factory: Callable[..., Collector],
        feeder: Callable[[Collector], threading.Event]) -> None:
    """Under a sender that keeps the core's queue from ever emptying, the collector still writes
    its status (so `status` does not call it dead) while it works through the backlog."""
    collector = collector_factory(sensor="none")
    # A backlog of a few requests at a time, so the stop at the end drains it quickly.
    collector.max_queue_bytes = 8 * export_request(*(f"tool_{i}" for i in range(300))).ByteSize()
    feeder(collector)
    wait_for(lambda: collector.snapshot()["queued_requests"] > 2)
    since = time.time_ns()

    def status_written() -> bool:
        store = Store(collector.settings.db, readonly=True)
        try:
            status = store.status().get("collector", {})
        finally:
            store.close()
        return int(status.get("updated_ns") or 0) > since

    wait_for(status_written, timeout=30)
    assert collector.snapshot()["queued_requests"] > 0, "the backlog ran out; nothing was shown"
