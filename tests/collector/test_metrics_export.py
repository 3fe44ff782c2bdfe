"""The collector's counters as exported metrics: runtime AI-BOM inventories (stored, unverified,
refused), OTLP requests refused by reason, contained internal errors and the queues, each a
monotonic cumulative sum (a Prometheus ``_total`` counter) or a gauge, with its help text; and
every counter of the status either exported or left out on purpose.

Real collectors receiving real OTLP on loopback, exporting to a real loopback OTLP/HTTP endpoint."""

from __future__ import annotations

import fnmatch
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from agentguard.collector import store as store_module
from agentguard.collector.forward import AgentResources
from agentguard.collector.metrics import COUNTERS, GAUGES
from tests.collector.helpers import wait_for
from tests.collector.test_agent_churn import MS, _connect, _request
from tests.collector.test_aibom_identity import NO_SUCH_PID, _aibom, _idle, _library, _send
from tests.collector.test_followups import Sink, started
from tests.collector.test_receiver import post

# Status counters not exported as metrics, each with why: bookkeeping of how the collector works,
# never of what it lost, dropped or refused.
NOT_EXPORTED: dict[str, str] = {
    "own_traffic": "the agents' exports to the collector, not acts",
    "reattributed": "stored events moved to a span that came late",
    "late_spans_forwarded": "kernel events forwarded as child spans of a span already sent",
    "discovered": "processes found to watch by their environment",
    "watched_roots": "the roots being watched (the setting and the agents)",
    "forward_splits": "exports sent again in halves (the spans still went out)",
}
# Status counters that are parts of an exported counter, or the same count under another name:
# the metric that carries them.
EXPORTED_AS: dict[str, str] = {
    "spans_rejected_invalid_id": "agentguard.collector.spans.rejected",
    "spans_rejected_unreadable": "agentguard.collector.spans.rejected",
    "requests_rejected": "agentguard.collector.requests.rejected",
    "otlp_requests": "agentguard.collector.requests",
    "otlp_accepted": "agentguard.collector.requests",
}
# What a counter of loss or refusal is called: such a counter is never mere bookkeeping.
_LOSS = re.compile(r"lost|drop|fail|refuse|reject|evict|too_large|unverified|unparsed|forced|"
                   r"deferred|not_found|unwatched|unattributed|ambiguous|unindexed")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "collector.md"


class MetricSink(Sink):
    """The loopback endpoint, keeping each metric's latest export whole."""

    def __init__(self) -> None:
        super().__init__()
        self.exported: dict[str, metrics_pb2.Metric] = {}

    def take_metrics(self, body: bytes) -> None:
        super().take_metrics(body)
        request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
        with self.lock:
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        self.exported[metric.name] = metric

    def points(self, name: str) -> dict[tuple[tuple[str, str], ...], int]:
        """The values of a metric's last export, by attribute set."""
        metric = self.exported[name]
        points = metric.sum.data_points if metric.HasField("sum") else metric.gauge.data_points
        return {tuple(sorted((kv.key, kv.value.string_value) for kv in point.attributes)):
                int(point.as_int) for point in points}


@pytest.fixture
def sink() -> Iterator[MetricSink]:
    server = MetricSink()
    yield server
    server.close()


def test_inventory_and_request_counters_reach_the_metrics_endpoint(
        tmp_path: Path, sink: MetricSink, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent's inventory, a claim from a sender found on no process and one refused for want
    of room, and a malformed request are counted in the exported metrics as in ``status``."""
    monkeypatch.setattr(store_module, "MAX_AIBOM_AGENTS", 2)
    collector = started(tmp_path, metrics=sink.url, metrics_interval=60)
    try:
        me = os.getpid()
        started_at = time.time() - 5
        _send(collector, _aibom(sender_pid=me, service="metered-agent", claimed_pid=me,
                                started=started_at, sequence=1,
                                entries=[_library("numpy", "2.0"), _library("torch", "2.4")]))
        # A claim naming the agent takes the free place.
        _send(collector, _aibom(sender_pid=NO_SUCH_PID, service="metered-agent", claimed_pid=me,
                                started=started_at + 60, sequence=1,
                                entries=[_library("evil", "1")]))
        # With room for one inventory only, the next claim finds no place it may take: the
        # agent's inventory is not pushed out for it.
        monkeypatch.setattr(store_module, "MAX_AIBOM_AGENTS", 1)
        _send(collector, _aibom(sender_pid=NO_SUCH_PID, service="metered-agent",
                                claimed_pid=me + 1, started=started_at, sequence=1,
                                entries=[_library("evil", "2")]))
        assert post(collector, b"\x0a\xff\xff")[0] == 400
        snapshot = collector.snapshot()
    finally:
        collector.stop()
    assert (snapshot["aibom_entries"], snapshot["aibom_unverified"],
            snapshot["aibom_refused"]) == (3, 2, 1)
    for name, value in (("agentguard.collector.aibom.entries", 3),
                        ("agentguard.collector.aibom.unverified", 2),
                        ("agentguard.collector.aibom.refused", 1),
                        ("agentguard.collector.requests", 4),
                        ("agentguard.collector.spans", 3)):
        assert sink.points(name) == {(): value}, name
    rejected = sink.points("agentguard.collector.requests.rejected")
    assert rejected[(("reason", "malformed"),)] == 1
    assert sum(rejected.values()) == 1 == snapshot["requests_rejected"]
    assert sink.points("agentguard.collector.queue.requests") == {(): 0}
    assert "agentguard.collector.internal_errors" in sink.exported


def test_every_metric_is_a_named_counter_or_gauge_with_help(
        tmp_path: Path, sink: MetricSink) -> None:
    """Each counter is exported as a monotonic cumulative sum (what a Prometheus exporter writes
    as a ``_total`` counter) and each level as a gauge, every one with a description (the
    ``# HELP`` line) and a name that stays distinct once dots become underscores."""
    collector = started(tmp_path, metrics=sink.url, metrics_interval=60)
    collector.stop()
    counters = set(COUNTERS) | {"agentguard.collector.requests.rejected",
                                "agentguard.collector.internal_errors"}
    assert set(sink.exported) == counters | set(GAUGES)
    for name, metric in sink.exported.items():
        assert metric.description, name
        assert re.fullmatch(r"agentguard\.collector(\.[a-z_]+)+", name), name
        if name in counters:
            assert metric.HasField("sum") and metric.sum.is_monotonic, name
            assert metric.sum.aggregation_temporality == \
                metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE, name
            # The exporter adds the suffix: a name of its own must not say it.
            assert not name.endswith(("total", "_count")), name
        else:
            assert metric.HasField("gauge"), name
    prometheus = {name.replace(".", "_") + ("_total" if name in counters else "")
                  for name in sink.exported}
    assert len(prometheus) == len(sink.exported)


def test_every_status_counter_is_exported_or_left_out_on_purpose(tmp_path: Path) -> None:
    """A counter the collector keeps is a metric, part of one, or one of the few left out for a
    stated reason that is not a loss; and the documentation lists exactly those left out: a new
    counter cannot go unexported unnoticed, nor a loss be filed as bookkeeping."""
    collector = started(tmp_path, forward="http://127.0.0.1:9")
    try:
        snapshot: dict[str, Any] = collector.snapshot()
    finally:
        collector.stop()
    exported = {key for key, _, _ in COUNTERS.values()} | \
        {key for key, _, _ in GAUGES.values()} | \
        {f"otlp_{reason}" for reason in ("malformed", "too_large", "unauthenticated", "busy",
                                         "unsupported", "timed_out", "connections_refused")}
    assert set(snapshot) - exported - set(NOT_EXPORTED) - set(EXPORTED_AS) == set()
    assert not exported & (set(NOT_EXPORTED) | set(EXPORTED_AS))
    assert [key for key in NOT_EXPORTED if _LOSS.search(key)] == []
    metrics = set(COUNTERS) | {"agentguard.collector.requests.rejected"}
    assert set(EXPORTED_AS.values()) <= metrics

    # The paragraph of docs/collector.md that names the counters left out.
    text = " ".join(DOCS.read_text(encoding="utf-8").split())
    paragraph = text[text.index("Left out on purpose"):]
    paragraph = paragraph[:paragraph.index(". ")]
    named = set(re.findall(r"`([a-z_*]+)`", paragraph))
    documented = {key for key in snapshot if any(fnmatch.fnmatchcase(key, name) for name in named)}
    assert documented == set(NOT_EXPORTED) | set(EXPORTED_AS)


def test_late_spans_that_lost_their_agents_resource_are_counted_in_the_metrics(
        tmp_path: Path, sink: MetricSink) -> None:
    """A kernel event joined after its tool span went out, when the agent's resource was no
    longer remembered, is forwarded under the agent's service.name alone: that loss is exported
    as ``agentguard.collector.forward.resource_lost``, as ``status`` counts it."""
    collector = started(tmp_path, forward=sink.url, metrics=sink.url, metrics_interval=60)
    agent, other = _idle(), _idle()
    try:
        # Room for one agent's resource: the second agent's spans push the first one's out.
        collector._resources = AgentResources(max_agents=1)
        now = time.time_ns()
        assert post(collector, _request(agent.pid, "execute_tool fetch", "execute_tool",
                                        now - 50 * MS, now + 50 * MS, tid=agent.pid))[0] == 200
        assert post(collector, _request(other.pid, "invoke_agent other", "invoke_agent",
                                        now - MS, now + MS))[0] == 200
        assert collector.sync()
        collector._on_kernel_event(_connect(agent.pid, now))
        wait_for(lambda: collector.sync() and collector.snapshot()["late_spans_forwarded"] == 1)
        snapshot = collector.snapshot()
    finally:
        collector.stop()
        for process in (agent, other):
            process.kill()
            process.wait()
    assert snapshot["late_spans_resource_lost"] == 1
    assert sink.points("agentguard.collector.forward.resource_lost") == {(): 1}
    late = [resource for resource, span in sink.spans()
            if span.name.startswith("agentguard.kernel.net.connect")]
    assert [{key: value.string_value for key, value in resource.items()} for resource in late] == \
        [{"service.name": f"job-{agent.pid}"}]
