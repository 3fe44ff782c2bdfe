"""The collector's health counters as OpenTelemetry metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["COUNTERS", "CollectorMetrics"]

# metric name → (counter key in the collector's snapshot, description, unit)
COUNTERS: dict[str, tuple[str, str, str]] = {
    "agentguard.collector.events": ("events", "kernel events received from the sensor", "{event}"),
    "agentguard.collector.events.lost": ("lost", "kernel events the sensor reported lost", "{event}"),
    "agentguard.collector.events.correlated": (
        "correlated", "kernel events joined to an agent span", "{event}"),
    "agentguard.collector.events.dropped": (
        "dropped", "events, requests and spans the collector dropped itself (full queues, "
        "sensor output it could not read, spans it rejected, the store, a stop, the export "
        "bounds): the sum of the causes counted below; failed exports are forward.failed",
        "{item}"),
    "agentguard.collector.events.refused": (
        "events_dropped", "kernel events dropped by the full queue to the core thread", "{event}"),
    "agentguard.collector.events.unparsed": (
        "events_unparsed", "lines of the kernel sensor's output it could not read (an event "
        "each)", "{event}"),
    "agentguard.collector.events.failed": (
        "events_failed", "kernel events the core thread could not handle or store", "{event}"),
    "agentguard.collector.events.forced": (
        "pending_forced", "kernel events resolved before their span came, the waiting room being "
        "full", "{event}"),
    "agentguard.collector.spans": ("spans_received", "agent spans received by OTLP", "{span}"),
    "agentguard.collector.spans.dropped": (
        "spans_dropped", "agent spans the store could not take (left out alone)", "{span}"),
    "agentguard.collector.spans.rejected": (
        "spans_rejected", "agent spans left out unread: ids that are missing, of the wrong "
        "length or all zeros, or a span that could not be read", "{span}"),
    "agentguard.collector.spans.lost_at_stop": (
        "spans_lost_at_stop", "accepted spans a stop could not store in time", "{span}"),
    "agentguard.collector.requests.refused": (
        "requests_dropped", "OTLP requests told to retry later (queue full by count or bytes, or "
        "stopping)", "{request}"),
    "agentguard.collector.requests.over_queue_bytes": (
        "requests_over_queue_bytes", "OTLP requests refused by the queue's byte budget",
        "{request}"),
    "agentguard.collector.requests.failed": (
        "requests_failed", "accepted OTLP requests the core thread failed on (stored in part at "
        "most)", "{request}"),
    "agentguard.collector.requests.lost_at_stop": (
        "requests_lost_at_stop", "accepted OTLP requests a stop could not store in time",
        "{request}"),
    "agentguard.collector.forward.spans": ("forwarded_spans", "spans sent onward", "{span}"),
    "agentguard.collector.forward.dropped": (
        "forward_dropped", "spans not forwarded: the forward queue was full", "{span}"),
    "agentguard.collector.forward.over_queue_bytes": (
        "forward_over_queue_bytes", "spans not forwarded: the forward queue's byte budget",
        "{span}"),
    "agentguard.collector.forward.too_large": (
        "forward_too_large", "spans not forwarded: too large for any export", "{span}"),
    "agentguard.collector.forward.events_dropped": (
        "forward_events_dropped", "kernel events stored but not added to their forwarded span "
        "(its bounds on waiting events)", "{event}"),
    "agentguard.collector.forward.failed": (
        "forward_failed", "spans whose export failed after retries", "{span}"),
    "agentguard.collector.forward.lost_at_stop": (
        "forward_lost_at_stop", "spans still queued for forwarding when the stop ended", "{span}"),
    "agentguard.collector.agents.not_found": (
        "agents_not_found", "looks for the process that sent spans that found none on this node",
        "{lookup}"),
    "agentguard.collector.agents.lookups_deferred": (
        "agent_lookups_deferred", "looks for an agent's process put off to a later request (the "
        "budget of core time for walking /proc was spent)", "{lookup}"),
    "agentguard.collector.agents.replaced": (
        "agents_replaced", "agents succeeded by a new process on the same pid", "{agent}"),
    "agentguard.collector.agents.evicted": (
        "agents_evicted", "agents forgotten: exited longer than the hold window ago, or past "
        "the bound on agents kept", "{agent}"),
    "agentguard.collector.findings": ("findings", "findings stored", "{finding}"),
    "agentguard.collector.sensor.restarts": ("sensor_restarts", "kernel sensor restarts", "{restart}"),
}


class CollectorMetrics:
    """A meter provider whose observable instruments read the collector's counters."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]], readers: Sequence[Any]) -> None:
        from opentelemetry.metrics import CallbackOptions, Observation
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.resources import Resource

        self._snapshot = snapshot
        self.provider = MeterProvider(
            metric_readers=list(readers),
            resource=Resource.create({"service.name": "agentguard-collector"}),
        )
        meter = self.provider.get_meter("agentguard.collector")

        def counter(key: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
            def observe(options: CallbackOptions) -> Iterable[Observation]:
                return [Observation(int(self._snapshot().get(key, 0)))]
            return observe

        for name, (key, description, unit) in COUNTERS.items():
            meter.create_observable_counter(name, callbacks=[counter(key)],
                                            description=description, unit=unit)
        meter.create_observable_gauge(
            "agentguard.collector.watched_processes", callbacks=[counter("watched_processes")],
            description="processes the kernel sensor is watching", unit="{process}")
        meter.create_observable_gauge(
            "agentguard.collector.pending_events", callbacks=[counter("pending")],
            description="kernel events waiting for their agent span", unit="{event}")

    @classmethod
    def for_endpoint(cls, snapshot: Callable[[], dict[str, Any]], url: str | None,
                     interval: float) -> CollectorMetrics | None:
        """Metrics exported by OTLP to ``url`` every ``interval`` seconds (``None`` without one)."""
        if not url:
            return None
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        exporter: Any
        if url.startswith(("grpc://", "grpcs://")):
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

            target = url.split("://", 1)[1].rstrip("/")
            exporter = OTLPMetricExporter(endpoint=target, insecure=url.startswith("grpc://"))
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter as HttpMetricExporter,
            )

            base = url.rstrip("/").removesuffix("/v1/traces")
            exporter = HttpMetricExporter(endpoint=f"{base}/v1/metrics")
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=interval * 1000)
        return cls(snapshot, [reader])

    def shutdown(self) -> None:
        self.provider.shutdown(timeout_millis=3000)
