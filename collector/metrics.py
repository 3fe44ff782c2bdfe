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
        "dropped", "events and spans the collector dropped (full queues)", "{event}"),
    "agentguard.collector.spans": ("spans_received", "agent spans received by OTLP", "{span}"),
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
