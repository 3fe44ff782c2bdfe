"""Settings for the collector's queues and deadlines, commits under a backlog, the forward queue's
byte budget, loss counters that add up in status and metrics, names that are not UTF-8 in the
text views, and the stop grace of the deploy manifests.

Real collectors (in this process, or the ``agentguard collector`` command), real loopback
backends for forwarded spans and exported metrics, and real databases."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from agentguard.collector import cli
from agentguard.collector.daemon import Collector
from agentguard.collector.forward import Forwarder
from agentguard.collector.model import EXEC, OPEN, Attribution, KernelEvent
from agentguard.collector.settings import CollectorSettings, SettingsError, load_settings
from agentguard.collector.store import Store, StoredFinding
from tests.collector.conftest import Listener, start_collector
from tests.collector.helpers import wait_for
from tests.collector.test_forward_limits import make_request
from tests.collector.test_ingest_limits import (
    bulk_request,
    daemon_port,
    final_state,
    http_port,
    post_backlog,
    stored_spans,
)
from tests.collector.test_receiver import post

ROOT = Path(__file__).parents[2]
AGENTGUARD = [sys.executable, "-m", "agentguard.cli"]


class Sink:
    """A loopback OTLP/HTTP endpoint that keeps what it is sent: trace exports (the requests,
    their span names and sizes) and metric exports (the latest value of each metric)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.export_sizes: list[int] = []
        self.span_names: list[str] = []
        self.metrics: dict[str, int] = {}
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path.endswith("/v1/metrics"):
                    sink.take_metrics(body)
                else:
                    sink.take_spans(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def take_spans(self, body: bytes) -> None:
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        with self.lock:
            self.requests.append(request)
            self.export_sizes.append(len(body))
            self.span_names.extend(span.name for rs in request.resource_spans
                                   for scope in rs.scope_spans for span in scope.spans)

    def spans(self) -> list[tuple[dict[str, Any], trace_pb2.Span]]:
        """Every span received, with its resource's attributes."""
        with self.lock:
            return [({kv.key: kv.value for kv in rs.resource.attributes}, span)
                    for request in self.requests for rs in request.resource_spans
                    for scope in rs.scope_spans for span in scope.spans]

    def take_metrics(self, body: bytes) -> None:
        request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
        with self.lock:
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        points = metric.sum.data_points if metric.HasField("sum") else \
                            metric.gauge.data_points
                        if points:
                            self.metrics[metric.name] = int(points[-1].as_int)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink()
    yield server
    server.close()


def started(tmp_path: Path, environ: dict[str, str] | None = None, **overrides: Any) -> Collector:
    """A collector without a kernel sensor (see :func:`start_collector`)."""
    return start_collector(tmp_path, environ, **{"sensor": "none", **overrides})


@pytest.fixture
def collectors() -> Iterator[list[Collector]]:
    """Collectors a test started, stopped at its end."""
    made: list[Collector] = []
    yield made
    for collector in made:
        collector.stop(timeout=30)


# -- settings ------------------------------------------------------------------------------


def test_queue_and_export_bounds_come_from_the_environment(
        tmp_path: Path, sink: Sink, collectors: list[Collector]) -> None:
    """AGENTGUARD_COLLECTOR_MAX_QUEUE_BYTES bounds the queue to the core (senders told to retry),
    and AGENTGUARD_COLLECTOR_FORWARD_MAX_BATCH_BYTES the exports sent onward, which still carry
    every accepted span."""
    environ = {"AGENTGUARD_COLLECTOR_MAX_QUEUE_BYTES": "2048",
               "AGENTGUARD_COLLECTOR_FORWARD_MAX_BATCH_BYTES": "65536",
               "AGENTGUARD_COLLECTOR_FORWARD_QUEUE_BYTES": "50000000"}
    collector = started(tmp_path, environ, forward=sink.url)
    collectors.append(collector)
    assert collector.forwarder.max_queue_bytes == 50_000_000
    accepted = refused = 0
    for attempt in range(40):
        status, _, headers = post(collector, bulk_request(3000, first=attempt * 10_000))
        if status == 200:
            accepted += 3000
        else:
            assert status == 503 and headers.get("Retry-After") == "1"
            refused += 1
            if refused >= 2:
                break
    assert refused >= 2 and collector.counters["requests_over_queue_bytes"] == refused
    wait_for(lambda: collector.sync() and len(sink.span_names) == accepted, timeout=30)
    assert max(sink.export_sizes) <= 65536
    assert collector.snapshot()["forward_too_large"] == 0


def test_request_and_stop_deadlines_come_from_the_config_file(tmp_path: Path) -> None:
    """``collector run --config`` takes request_timeout (a slow sender gets 408 at that deadline)
    and stop_timeout (a SIGTERM with a backlog stops within it, counts the loss and exits 1)."""
    db = tmp_path / "c.db"
    config = tmp_path / "collector.yaml"
    config.write_text(f"db: {db}\notlp_grpc: 'off'\notlp_http: 127.0.0.1:0\nsensor: none\n"
                      "discover: false\nrequest_timeout: 0.5\nstop_timeout: 1\n")
    daemon = subprocess.Popen([*AGENTGUARD, "collector", "run", "--config", str(config)],
                              stderr=subprocess.PIPE, text=True)
    try:
        port = daemon_port(daemon)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            begun = time.monotonic()
            slow.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            answer = slow.recv(4096)
            waited = time.monotonic() - begun
        assert answer.startswith(b"HTTP/1.1 408 ") and 0.4 < waited < 5, (answer, waited)
        post_backlog(port)
        stopping = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=20)
        took = time.monotonic() - stopping
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert daemon.returncode == 1, err[-2000:]
    assert "were not stored: the queue was not drained within the 1s the stop allows" in err
    assert took < 8


def test_bad_values_of_the_new_settings_name_their_source(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Out-of-range queue, deadline and batch settings are refused with where they came from,
    and ``collector run`` exits 2 on them."""
    for name, value in (("max_queue_bytes", "10"), ("request_timeout", "0"),
                        ("stop_timeout", "-1"), ("forward_max_batch_bytes", "100"),
                        ("forward_queue_bytes", "nonsense")):
        variable = f"AGENTGUARD_COLLECTOR_{name.upper()}"
        with pytest.raises(SettingsError, match=rf"{name} \(from environment variable {variable}\)"):
            load_settings({}, environ={variable: value})
    monkeypatch.setenv("AGENTGUARD_COLLECTOR_STOP_TIMEOUT", "0")
    assert cli.main(["run", "--db", str(tmp_path / "c.db"), "--sensor", "none"]) == 2
    assert "stop_timeout (from environment variable AGENTGUARD_COLLECTOR_STOP_TIMEOUT)" in \
        capsys.readouterr().err
    assert not (tmp_path / "c.db").exists()


# -- commits under a backlog ---------------------------------------------------------------


def test_a_sustained_backlog_is_committed_while_it_is_stored(
        tmp_path: Path, collectors: list[Collector]) -> None:
    """Spans the core has stored are committed (visible to readers, kept by a kill) while
    accepted requests still wait, not only once the queue runs empty."""
    collector = started(tmp_path, max_queue_bytes=1 << 30)
    collectors.append(collector)
    for index in range(40):
        assert post(collector, bulk_request(2000, first=index * 2000))[0] == 200

    def committed_with_requests_waiting() -> int | None:
        stored = stored_spans(collector.settings.db)
        waiting = collector.snapshot()["queued_requests"]
        assert stored or waiting, "the backlog drained before anything was seen committed"
        return stored if stored and waiting else None

    stored = wait_for(committed_with_requests_waiting, timeout=30, interval=0.02)
    assert 0 < stored < 80_000
    wait_for(lambda: collector.sync() and stored_spans(collector.settings.db) == 80_000,
             timeout=60)


# -- the forward queue ---------------------------------------------------------------------


def test_the_forward_queue_is_bounded_by_bytes(sink: Sink) -> None:
    """Past the forward queue's byte budget a request is dropped and its spans counted
    (forward_dropped, forward_over_queue_bytes); a request larger than the budget still goes
    when the queue is empty, and everything queued is sent."""
    requests = [make_request(20, 2_000, prefix=f"r{n}.") for n in range(6)]
    size = requests[0].ByteSize()
    forwarder = Forwarder(sink.url, max_queue_bytes=3 * size + size // 2)
    assert [forwarder.submit(request) for request in requests] == [True] * 3 + [False] * 3
    stats = forwarder.stats()
    assert stats["forward_dropped"] == stats["forward_over_queue_bytes"] == 60
    assert stats["forward_queued_bytes"] == 3 * size
    forwarder.start()
    forwarder.stop(timeout=10)
    lone = Forwarder(sink.url, max_queue_bytes=1024)
    assert lone.submit(make_request(5, 2_000, prefix="big."))
    lone.start()
    lone.stop(timeout=10)
    assert sink.span_names == [f"r{n}.{i}" for n in range(3) for i in range(20)] + \
        [f"big.{i}" for i in range(5)]


def test_spans_still_queued_when_the_forwarder_stops_are_counted(
        listener: Listener, caplog: pytest.LogCaptureFixture) -> None:
    """Spans a stop leaves in the forward queue (the backend hangs) are counted as
    forward_lost_at_stop and logged, not dropped silently."""
    forwarder = Forwarder(f"http://127.0.0.1:{listener.port}")
    for n in range(40):
        assert forwarder.submit(make_request(3, 10, prefix=f"q{n}."))
    forwarder.start()
    # The first 32 requests are being sent to a backend that never answers.
    wait_for(lambda: listener.received > 0)
    with caplog.at_level(logging.ERROR, logger="agentguard.collector"):
        forwarder.stop(timeout=0.3)
    assert forwarder.stats()["forward_lost_at_stop"] == 8 * 3
    assert forwarder.stats()["forward_queue"] == 0
    assert "24 span(s) bound for" in caplog.text and "forward_lost_at_stop" in caplog.text


# -- loss counters -------------------------------------------------------------------------


_ROW = re.compile(r"│\s*(\w+)\s*│\s*(\d+)\s*│")


def _status_table(db: str, capsys: pytest.CaptureFixture[str]) -> dict[str, int]:
    """The counters ``agentguard collector status`` prints (its table, not --json)."""
    capsys.readouterr()
    cli.main(["status", "--db", db])
    return {name: int(value) for name, value in _ROW.findall(capsys.readouterr().out)}


def test_forwarding_losses_add_up_in_status_and_metrics(
        tmp_path: Path, sink: Sink, capsys: pytest.CaptureFixture[str]) -> None:
    """A span too large to forward is counted in forward_too_large and in the aggregate dropped,
    alike in the snapshot, the status table and the exported metrics."""
    collector = started(tmp_path, forward=sink.url, forward_max_batch_bytes=1024,
                        metrics=sink.url, metrics_interval=60)
    try:
        request = make_request(3, 10, prefix="small.")
        request.resource_spans[0].scope_spans[0].spans.extend(
            make_request(1, 5_000, prefix="huge.").resource_spans[0].scope_spans[0].spans)
        assert post(collector, request.SerializeToString())[0] == 200
        wait_for(lambda: collector.sync() and collector.snapshot()["forwarded_spans"] == 3
                 and collector.snapshot()["forward_too_large"] == 1)
        snapshot = collector.snapshot()
    finally:
        assert collector.stop()
    assert snapshot["dropped"] == 1
    assert sink.span_names == ["small.0", "small.1", "small.2"]
    assert sink.metrics["agentguard.collector.forward.too_large"] == 1
    assert sink.metrics["agentguard.collector.events.dropped"] == 1
    assert sink.metrics["agentguard.collector.forward.spans"] == 3
    assert sink.metrics["agentguard.collector.agents.evicted"] == 0
    table = _status_table(collector.settings.db, capsys)
    assert table["forward_too_large"] == table["dropped"] == 1
    assert table["agents_replaced"] == table["agents_evicted"] == 0


def test_a_stop_that_loses_spans_reports_them_in_metrics_and_status(
        tmp_path: Path, sink: Sink, capsys: pytest.CaptureFixture[str]) -> None:
    """Accepted spans a stop could not store are in the metrics' last export and in the status
    table (spans_lost_at_stop, requests_lost_at_stop) and in dropped."""
    collector = started(tmp_path, max_queue_bytes=1 << 30, metrics=sink.url, metrics_interval=60)
    post_backlog(http_port(collector))
    assert collector.stop(timeout=1.0) is False
    lost_spans = collector.counters["spans_lost_at_stop"]
    lost_requests = collector.counters["requests_lost_at_stop"]
    assert lost_spans == lost_requests * 1000 > 0
    assert sink.metrics["agentguard.collector.spans.lost_at_stop"] == lost_spans
    assert sink.metrics["agentguard.collector.requests.lost_at_stop"] == lost_requests
    assert sink.metrics["agentguard.collector.events.dropped"] == lost_spans
    wait_for(lambda: final_state(collector.settings.db) == "stopped", timeout=30)
    table = _status_table(collector.settings.db, capsys)
    assert table["spans_lost_at_stop"] == table["dropped"] == lost_spans
    assert table["requests_lost_at_stop"] == lost_requests


# -- names that are not UTF-8 --------------------------------------------------------------


NAME = os.fsdecode(b"/home/x/\xff\xfe/.aws/credentials")
PROGRAM = os.fsdecode(b"/opt/t\xe2che")


@pytest.fixture
def odd_names_db(tmp_path: Path) -> tuple[str, str]:
    """A collector database whose events and finding name a file and a program by bytes that
    are not UTF-8 (as the eBPF sensor stores them); the database and the incident id."""
    db = str(tmp_path / "c.db")
    trace, span = "a" * 32, "b" * 16
    joined = Attribution("thread", trace, span)
    store = Store(db)
    try:
        store.add_events([
            KernelEvent(EXEC, 1_000_000_000, 77, 77, {"exe": PROGRAM, "argv": [PROGRAM, NAME],
                                                       "ppid": 1}, attribution=joined),
            KernelEvent(OPEN, 1_100_000_000, 77, 77, {"path": NAME}, attribution=joined)])
        finding = store.add_finding(StoredFinding(
            rule_id="AGK004", category="runtime", severity="high", title=f"read {NAME}",
            kind=OPEN, evidence={"path": NAME}, timestamp=1.1, agent="agent", trace_id=trace,
            span_id=span))
        store.commit()
    finally:
        store.close()
    assert finding is not None and finding.incident_id is not None
    return db, finding.incident_id


def _run(*args: str) -> str:
    """Run ``agentguard ARGS`` with a strict UTF-8 standard output, as under a UTF-8 locale."""
    done = subprocess.run([*AGENTGUARD, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8", "COLUMNS": "250"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_names_that_are_not_utf8_are_printed_with_backslash_escapes(
        odd_names_db: tuple[str, str]) -> None:
    """``collector events`` and ``incidents show`` print a file or program name that is not UTF-8
    with its odd bytes as ``\\xff`` instead of failing."""
    db, incident = odd_names_db
    events = _run("collector", "events", "--db", db)
    assert "open /home/x/\\xff\\xfe/.aws/credentials" in events
    assert "exec /opt/t\\xe2che" in events
    shown = _run("incidents", "show", incident, "--db", db)
    assert "read /home/x/\\xff\\xfe/.aws/credentials" in shown
    assert "/opt/t\\xe2che" in shown


def test_html_reports_write_such_names_with_backslash_escapes(
        odd_names_db: tuple[str, str], tmp_path: Path) -> None:
    """``incidents report`` and ``collector incidents --html`` write valid UTF-8 pages that show
    a name that is not UTF-8 with its odd bytes as ``\\xff``."""
    db, incident = odd_names_db
    one, every = tmp_path / "one.html", tmp_path / "all.html"
    _run("incidents", "report", incident, "--db", db, "-o", str(one))
    _run("collector", "incidents", "--db", db, "--html", str(every))
    for page in (one, every):
        text = page.read_bytes().decode("utf-8")
        assert "open <code>/home/x/\\xff\\xfe/.aws/credentials</code>" in text
        assert "/opt/t\\xe2che" in text


# -- deployment ----------------------------------------------------------------------------


def test_deploy_manifests_give_a_stop_its_full_time() -> None:
    """The Kubernetes DaemonSet and the compose service let a stop store, forward and export
    before the container is killed: a grace of at least stop_timeout + 10 s."""
    needed = CollectorSettings().stop_timeout + 10
    documents = yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "collector.yaml").read_text())
    (daemonset,) = [d for d in documents if d and d["kind"] == "DaemonSet"]
    assert daemonset["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= needed
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yaml").read_text())
    grace = re.fullmatch(r"(\d+)s", str(compose["services"]["collector"]["stop_grace_period"]))
    assert grace is not None and int(grace.group(1)) >= needed

