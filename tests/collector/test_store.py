"""The SQLite store's limits and safety, and the collector's counters as OpenTelemetry metrics."""

from __future__ import annotations

import http.client
import sqlite3
import time
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from agentguard.collector.daemon import Collector
from agentguard.collector.model import EXEC, KernelEvent, SpanInfo
from agentguard.collector.settings import load_settings
from agentguard.collector.store import Store, StoredFinding, StoreError
from tests.collector.helpers import wait_for
from tests.collector.test_receiver import export_request


def test_retention_drops_the_oldest_rows_beyond_the_limits(tmp_path: Path) -> None:
    """Rows past the age limit go, then the oldest rows beyond the count limit."""
    store = Store(str(tmp_path / "s.db"))
    now = time.time_ns()
    old = now - 10 * 86400 * 10**9
    store.add_events([KernelEvent(EXEC, old, 1, 1, {"exe": "/old"})])
    store.add_events([KernelEvent(EXEC, now + i, 2, 2, {"exe": f"/new{i}"}) for i in range(30)])
    store.add_spans([SpanInfo("a" * 32, f"{i:016x}", None, "s", None, now, now, 1, 1, "svc")
                     for i in range(5)])
    store.commit()
    removed = store.prune(max_age_ns=7 * 86400 * 10**9, max_events=20, max_spans=3)
    assert removed["events"] == 11 and removed["spans"] == 2
    remaining = [e["data"]["exe"] for e in store.events(limit=100)]
    assert remaining == [f"/new{i}" for i in range(10, 30)]
    store.close()


def test_findings_are_filed_under_one_incident_per_conversation(tmp_path: Path) -> None:
    """Findings of one conversation share an incident whose severity is the worst of them."""
    store = Store(str(tmp_path / "s.db"))
    for severity in ("low", "high", "medium"):
        stored = store.add_finding(StoredFinding(rule_id=f"R-{severity}", title=severity,
                                                 severity=severity, kind="process.exec",
                                                 conversation_id="conv-1"))
        assert stored is not None and stored.incident_id
    store.add_finding(StoredFinding(rule_id="R", title="other", kind="x", conversation_id="conv-2"))
    store.commit()
    incidents = {row["conversation_id"]: row for row in store.incidents()}
    assert incidents["conv-1"]["findings"] == 3 and incidents["conv-1"]["severity"] == "high"
    assert incidents["conv-1"]["title"] == "high"
    assert incidents["conv-2"]["findings"] == 1
    store.close()


def test_a_foreign_database_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    """A file that is not a collector database of this version is not touched."""
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '99')")
    with pytest.raises(StoreError, match="schema version 99"):
        Store(str(path))
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all " * 100)
    with pytest.raises(StoreError, match="not a usable collector database"):
        Store(str(text))


def test_counters_are_exported_as_opentelemetry_metrics(tmp_path: Path) -> None:
    """Spans received, events, lost, correlated and dropped are observable OTel instruments."""
    reader = InMemoryMetricReader()
    collector = Collector(load_settings({"db": str(tmp_path / "m.db"), "otlp_grpc": "off",
                                         "otlp_http": "127.0.0.1:0", "sensor": "none",
                                         "discover": False}, environ={}),
                          metric_readers=[reader]).start()
    try:
        host, port = collector.endpoints()["otlp_http"].rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("POST", "/v1/traces", export_request("a", "b").SerializeToString(),
                           {"Content-Type": "application/x-protobuf"})
        assert connection.getresponse().status == 200
        connection.close()
        wait_for(lambda: collector.sync() and collector.snapshot()["spans_received"] == 2)
        data = reader.get_metrics_data()
    finally:
        collector.stop()
    assert data is not None
    values = {metric.name: metric.data.data_points[0].value
              for rm in data.resource_metrics for sm in rm.scope_metrics for metric in sm.metrics}
    assert values["agentguard.collector.spans"] == 2
    for name in ("agentguard.collector.events", "agentguard.collector.events.lost",
                 "agentguard.collector.events.correlated", "agentguard.collector.events.dropped"):
        assert values[name] == 0
