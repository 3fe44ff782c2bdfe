"""The collector's health counters as OpenTelemetry metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["COUNTERS", "GAUGES", "CollectorMetrics"]

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
    "agentguard.collector.spans.sent_by_other": (
        "spans_sent_by_other", "agent spans whose process.pid names a process of this node that "
        "did not hold the connection they came on (a relay forwarding for it, or another local "
        "process); stored, joined and forwarded, marked agentguard.sent_by_other_process",
        "{span}"),
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
    "agentguard.collector.forward.resource_lost": (
        "late_spans_resource_lost", "kernel events forwarded as child spans after their tool span "
        "went out under the agent's service.name alone: its resource was no longer remembered "
        "(past the bound on agents' resources kept)", "{span}"),
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
    "agentguard.collector.findings": (
        "findings", "findings of the collector's own rules stored", "{finding}"),
    "agentguard.collector.findings.library": (
        "library_findings", "findings the agents' libraries reported in their spans, stored",
        "{finding}"),
    "agentguard.collector.sensor.restarts": ("sensor_restarts", "kernel sensor restarts", "{restart}"),
    "agentguard.collector.sensor.gaps": (
        "sensor_gaps", "stretches of time the eBPF sensor was blind (detached until a restart "
        "re-attached it)", "{gap}"),
    "agentguard.collector.processes.unwatched": (
        "unwatched_processes", "processes of watched trees the kernel program could not watch, "
        "its map being full (watch_map_size)", "{process}"),
    "agentguard.collector.events.unattributed": (
        "unattributed", "kernel events joined to no agent span in time (hold_seconds)",
        "{event}"),
    "agentguard.collector.events.ambiguous": (
        "ambiguous", "kernel events that could belong to more than one tool call", "{event}"),
    "agentguard.collector.spans.evicted": (
        "spans_evicted", "agent spans pushed out of the correlator's bounded index (kernel events "
        "can no longer join them)", "{span}"),
    "agentguard.collector.spans.unindexed": (
        "spans_unindexed", "agent spans the correlator failed to index (stored, never joined)",
        "{span}"),
    "agentguard.collector.library_records.evicted": (
        "library_records_evicted", "records of the agents' library calls pushed out of the "
        "correlator's bounded index", "{record}"),
    "agentguard.collector.requests": (
        "requests", "OTLP export requests received, accepted or not", "{request}"),
    "agentguard.collector.forward.requests": (
        "forward_requests", "export requests sent onward", "{request}"),
    "agentguard.collector.aibom.entries": (
        "aibom_entries", "runtime AI-BOM inventory entries stored (new or changed)", "{entry}"),
    "agentguard.collector.aibom.unverified": (
        "aibom_unverified", "runtime AI-BOM inventory spans not verified as sent by the process "
        "they name (a sender found on no process of this node, or another process than the "
        "one named), kept apart as the sender's unverified claims", "{span}"),
    "agentguard.collector.aibom.refused": (
        "aibom_refused", "runtime AI-BOM inventory spans of such senders not kept: the bounded "
        "inventory table was full of verified processes' inventories", "{span}"),
}
# metric name → (gauge key in the collector's snapshot, description, unit)
GAUGES: dict[str, tuple[str, str, str]] = {
    "agentguard.collector.watched_processes": (
        "watched_processes", "processes the kernel sensor is watching", "{process}"),
    "agentguard.collector.pending_events": (
        "pending", "kernel events waiting for their agent span", "{event}"),
    "agentguard.collector.agents": (
        "agents", "agent processes the collector knows (running, or exited within the hold "
        "window)", "{agent}"),
    "agentguard.collector.queue.requests": (
        "queued_requests", "OTLP requests accepted and waiting for the core thread", "{request}"),
    "agentguard.collector.queue.bytes": (
        "queued_request_bytes", "bytes of the OTLP requests waiting for the core thread (bounded "
        "by max_queue_bytes)", "By"),
    "agentguard.collector.forward.queue.requests": (
        "forward_queue", "requests waiting to be forwarded (bounded by forward_queue)",
        "{request}"),
    "agentguard.collector.forward.queue.bytes": (
        "forward_queued_bytes", "serialized bytes of the requests waiting to be forwarded "
        "(bounded by forward_queue_bytes)", "By"),
}
# OTLP requests the receiver refused, by cause: the snapshot's ``otlp_<reason>`` counters.
_REJECTED = ("malformed", "too_large", "unauthenticated", "busy", "unsupported", "timed_out",
             "connections_refused")


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

        def rejected(options: CallbackOptions) -> Iterable[Observation]:
            snapshot = self._snapshot()
            return [Observation(int(snapshot.get(f"otlp_{reason}", 0)), {"reason": reason})
                    for reason in _REJECTED]

        def internal_errors(options: CallbackOptions) -> Iterable[Observation]:
            from agentguard._errors import internal_error_counts

            # One total, there from the start (zero is what an alert compares with); where each
            # happened is in status (internal_errors) and the log.
            return [Observation(sum(internal_error_counts().values()))]

        for name, (key, description, unit) in COUNTERS.items():
            meter.create_observable_counter(name, callbacks=[counter(key)],
                                            description=description, unit=unit)
        meter.create_observable_counter(
            "agentguard.collector.requests.rejected", callbacks=[rejected],
            description="OTLP requests refused, by reason (otlp_<reason> in status): malformed, "
                        "too_large, unauthenticated (token), busy (told to retry), unsupported, "
                        "timed_out, connections_refused", unit="{request}")
        meter.create_observable_counter(
            "agentguard.collector.internal_errors", callbacks=[internal_errors],
            description="internal errors the collector contained and carried on from (where: "
                        "internal_errors in status; the first of each place is logged)",
            unit="{error}")
        for name, (key, description, unit) in GAUGES.items():
            meter.create_observable_gauge(name, callbacks=[counter(key)],
                                          description=description, unit=unit)

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
