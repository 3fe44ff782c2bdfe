"""Everything the collector leaves out is counted where `collector status` shows it: spans it
rejects (and why), lines of the kernel sensor's output it cannot read, an event the core cannot
handle (which costs nothing else), and kernel events that cannot ride on their forwarded span.

Real collectors (the eBPF sensor where its output is the subject), real OTLP requests over
HTTP, and the status the CLI prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

from agentguard.collector import cli, daemon
from agentguard.collector.daemon import Collector
from agentguard.collector.model import CONNECT, EXEC, FORK, KernelEvent
from tests.collector.conftest import require_ebpf
from tests.collector.helpers import stored_events, wait_for
from tests.collector.test_receiver import post
from tests.collector.test_span_identity import Backend


def _status_json(collector: Collector, capsys: pytest.CaptureFixture[str]) -> dict[str, int]:
    """The counters of ``agentguard collector status --json`` once the collector's core has
    written its status (every second) after what was handed in before this call; the core owns
    the database connection, so the test only reads."""
    from agentguard.collector.store import Store

    collector.sync()
    synced = time.time_ns()

    def written() -> bool:
        store = Store(collector.settings.db, readonly=True)
        try:
            return int(store.status().get("collector", {}).get("updated_ns") or 0) > synced
        finally:
            store.close()

    wait_for(written, timeout=15)
    capsys.readouterr()
    cli.main(["status", "--db", collector.settings.db, "--json"])
    counters: dict[str, int] = json.loads(capsys.readouterr().out)["counters"]
    return counters


def test_spans_without_valid_ids_are_rejected_counted_and_told(
        collector_factory: Callable[..., Collector], capsys: pytest.CaptureFixture[str]) -> None:
    """Spans whose trace or span id is missing, of the wrong length or all zeros are left out:
    the sender is told how many (partial_success), and status counts them as rejected, by
    cause, and in dropped; the valid spans of the same request are stored."""
    collector = collector_factory(sensor="none")
    now = time.time_ns()
    ids = [(os.urandom(16), os.urandom(8)), (os.urandom(16), os.urandom(8)),
           (os.urandom(16), os.urandom(7)), (bytes(16), os.urandom(8)),
           (os.urandom(16), bytes(8)), (b"", b"")]
    spans = [trace_pb2.Span(trace_id=trace_id, span_id=span_id, name=f"span-{n}",
                            start_time_unix_nano=now, end_time_unix_nano=now)
             for n, (trace_id, span_id) in enumerate(ids)]
    request = trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource=Resource(attributes=[
            KeyValue(key="service.name", value=AnyValue(string_value="agent"))]),
        scope_spans=[trace_pb2.ScopeSpans(spans=spans)])])
    status, body, _ = post(collector, request.SerializeToString())
    assert status == 200
    answer = trace_service_pb2.ExportTraceServiceResponse.FromString(body)
    assert answer.partial_success.rejected_spans == 4
    assert collector.sync()
    counters = _status_json(collector, capsys)
    assert (counters["spans_received"], counters["spans_rejected"],
            counters["spans_rejected_invalid_id"], counters["dropped"]) == (2, 4, 4, 4)
    # The terminal table shows them too, not only the JSON.
    cli.main(["status", "--db", collector.settings.db])
    table = capsys.readouterr().out
    cells = [line.replace("\u2502", " ").split() for line in table.splitlines()]
    assert [row for row in cells if row[:1] in (["spans_rejected"], ["spans_rejected_invalid_id"])] \
        == [["spans_rejected", "4"], ["spans_rejected_invalid_id", "4"]], table
    names = {e["name"] for e in _stored_spans(collector)}
    assert names == {"span-0", "span-1"}


def _stored_spans(collector: Collector) -> list[dict[str, object]]:
    from agentguard.collector.store import Store

    store = Store(collector.settings.db, readonly=True)
    try:
        return store.spans()
    finally:
        store.close()


def test_output_of_the_kernel_sensor_it_cannot_read_is_counted_as_lost(
        collector_factory: Callable[..., Collector], capsys: pytest.CaptureFixture[str]) -> None:
    """A line of bpftrace output the sensor cannot read (cut short, garbled) is an event the
    collector lost: status shows it as events_unparsed and in dropped."""
    require_ebpf()
    collector = collector_factory(sensor="ebpf")
    before = _status_json(collector, capsys)
    for line in (b'{"type": "printf", "data": "F 12 12\\n"}', b'{"type": "printf", "da',
                 b"\x00\xff garbage"):
        collector.sensor.handle_line(line)
    counters = _status_json(collector, capsys)
    assert counters["events_unparsed"] - before["events_unparsed"] == 3
    assert counters["dropped"] - before["dropped"] == 3


def test_an_event_the_core_cannot_handle_costs_only_itself(
        collector_factory: Callable[..., Collector], capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed kernel event is counted as events_failed; the events around it are stored and
    a sync waiting behind it is answered."""
    collector = collector_factory(sensor="none")
    pid = os.getpid()
    now = time.time_ns()
    collector._on_kernel_event(KernelEvent(CONNECT, now, pid, pid, {"address": "203.0.113.1",
                                                                    "port": 1, "result": 0}))
    collector._on_kernel_event(KernelEvent(FORK, now + 1, pid, pid, {"child_pid": "not a pid"}))
    collector._on_kernel_event(KernelEvent(CONNECT, now + 2, pid, pid, {"address": "203.0.113.2",
                                                                        "port": 2, "result": 0}))
    assert collector.sync()
    stored = sorted(e["data"]["port"] for e in stored_events(collector, kind="net.connect"))
    assert stored == [1, 2]
    counters = _status_json(collector, capsys)
    assert counters["events_failed"] == 1 and counters["dropped"] == 1


def test_kernel_events_waiting_for_a_span_that_never_comes_are_bounded(
        collector_factory: Callable[..., Collector], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Processes whose TRACEPARENT names spans that are never sent (made up by the tool) keep
    their events waiting to be forwarded only up to a bound; the rest are counted."""
    monkeypatch.setattr(daemon, "_MAX_ENRICH_EVENTS", 10, raising=False)
    backend = Backend()
    try:
        collector = collector_factory(sensor="none", hold_seconds=0.1, forward=backend.url)
        process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"],
                                   stdin=subprocess.PIPE)
        agent = process.pid
        assert collector.watch(agent, "test agent") and collector.sync()
        now = time.time_ns()
        for n in range(30):
            child = 4_300_000 + n
            collector._on_kernel_event(KernelEvent(FORK, now + n, agent, agent,
                                                   {"child_pid": child}))
            collector._on_kernel_event(KernelEvent(EXEC, now + n, child, child, {
                "exe": "/bin/sh", "argv": ["sh"], "ppid": agent,
                "env": {"TRACEPARENT": f"00-{'a' * 32}-{n + 1:016x}-01"}}))
        time.sleep(0.3)
        wait_for(lambda: collector.sync() and collector.snapshot()["pending"] == 0)
        assert len(collector._enrich) <= 10
        counters = _status_json(collector, capsys)
        assert counters["forward_events_dropped"] >= 20
        process.communicate(b"\n", timeout=10)
    finally:
        backend.close()


def test_an_event_the_store_cannot_keep_costs_only_itself(
        collector_factory: Callable[..., Collector], capsys: pytest.CaptureFixture[str]) -> None:
    """An event with a value the database cannot keep (a time past 2**63) is counted as
    events_failed; the events of its batch are stored."""
    collector = collector_factory(sensor="none")
    pid = os.getpid()
    now = time.time_ns()
    for ts_ns, port in ((now, 1), (2**64, 2), (now + 1, 3)):
        collector._on_kernel_event(KernelEvent(CONNECT, ts_ns, pid, pid,
                                               {"address": "203.0.113.1", "port": port,
                                                "result": 0}))
    assert collector.sync()
    stored = sorted(e["data"]["port"] for e in stored_events(collector, kind="net.connect"))
    assert stored == [1, 3]
    counters = _status_json(collector, capsys)
    assert counters["events_failed"] == 1 and counters["dropped"] == 1
