"""Tracer provider, exporters and a bounded, non-blocking span export queue."""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from agentguard import semconv
from agentguard._errors import internal_error
from agentguard._spans import LightSpan, LightTracer, to_readable
from agentguard.config import Config, ConfigError
from agentguard.sensors import quiet_thread

__all__ = ["BoundedBatchSpanProcessor", "Telemetry", "build_telemetry"]

logger = logging.getLogger("agentguard")

_VERSION = "0.1.0"

# An export in flight this long (seconds) means the backend is not answering: shutdown stops
# waiting for it.
STALLED_AFTER = 1.0
# How long shutdown still waits for a worker stuck in such an export, once its exporter is shut.
_STALLED_JOIN = 0.25


class BoundedBatchSpanProcessor(SpanProcessor):
    """Queues finished spans and exports them in batches from one background thread.

    ``on_end`` never blocks: when the queue is full the span is dropped and counted, so an
    unreachable or slow backend costs the agent nothing but the lost spans.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int = 4096,
        max_batch_size: int = 512,
        schedule_delay: float = 0.5,
        only_scope: str | None = None,
        exporter_factory: Callable[[], SpanExporter] | None = None,
    ) -> None:
        self.exporter = exporter
        # Builds the exporter anew in a forked child: an exporter agentguard made holds pooled
        # connections (a keep-alive socket, a gRPC channel) that the parent goes on using.
        self.exporter_factory = exporter_factory
        self._rebuild_exporter = False
        # The parent's exporter in a forked child: never used there, and never closed (closing
        # it could end the parent's connection), only kept from being collected.
        self._inherited: SpanExporter | None = None
        # On a provider agentguard does not own, export only agentguard's spans: the
        # application's own pipeline already exports the rest.
        self.only_scope = only_scope
        # Wake the worker early enough that a small queue is drained before it fills up.
        self._wake_at = max(1, min(max_batch_size, max_queue_size // 2))
        self.max_queue_size = max_queue_size
        self.max_batch_size = max_batch_size
        self.schedule_delay = schedule_delay
        self.queued = 0
        self.exported = 0
        self.dropped = 0
        self.failed = 0
        # Whether the backend took the last batch, and since when an export is under way: a
        # backend that is down must not hold up shutdown for the exporter's whole retry budget.
        self.last_export_ok: bool | None = None
        self.exporting_since: float | None = None
        self._queue: collections.deque[ReadableSpan | LightSpan] = collections.deque()
        self._wake = threading.Condition(threading.Lock())
        self._flush_requests: list[threading.Event] = []
        self._shutdown = False
        self._active = True
        # The processor of the configuration that replaced this one: spans of operations begun
        # before ``instrument()`` was called again end here after shutdown, and go there.
        self.successor: BoundedBatchSpanProcessor | None = None
        self._worker: threading.Thread | None = None
        self._start_worker()
        ref = weakref.ref(self)

        def _after_fork() -> None:
            processor = ref()
            if processor is not None:
                processor._reinit_after_fork()

        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork)

    def _start_worker(self) -> None:
        self._worker = threading.Thread(target=self._run, name="agentguard-export", daemon=True)
        self._worker.start()

    def _reinit_after_fork(self) -> None:
        # The worker thread does not survive fork; the child exports its own spans, over
        # connections of its own, and counts only them.
        self._wake = threading.Condition(threading.Lock())
        self._queue.clear()
        self._flush_requests = []
        self.queued = self.exported = self.dropped = self.failed = 0
        self.last_export_ok = None
        self.exporting_since = None
        if self.exporter_factory is not None:
            self._rebuild_exporter = True
        if not self._shutdown:
            self._start_worker()

    def _fresh_exporter(self) -> None:
        """Replace the exporter inherited across ``fork`` (in the worker: building a gRPC
        channel in the fork handler itself is not safe)."""
        self._rebuild_exporter = False
        factory = self.exporter_factory
        if factory is None:
            return
        try:
            exporter = factory()
        except Exception as exc:
            internal_error("exporter rebuild after fork", exc)
            return
        self._inherited, self.exporter = self.exporter, exporter

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan | LightSpan) -> None:
        if not self._active:
            successor = self.successor
            if successor is not None:
                successor.on_end(span)
            return
        if self.only_scope is not None and not isinstance(span, LightSpan):
            scope = span.instrumentation_scope
            if scope is None or scope.name != self.only_scope:
                return
        queue = self._queue
        if len(queue) >= self.max_queue_size:
            self.dropped += 1
            if self.dropped == 1:
                # Said once: a backend that cannot keep up shows in the logs, not just in stats().
                logger.warning(
                    "agentguard: the span export queue is full (%d spans); spans are dropped "
                    "until the exporter catches up (counted in agentguard.stats()"
                    "['spans_dropped'])", self.max_queue_size)
            return
        queue.append(span)
        self.queued += 1
        if len(queue) >= self._wake_at:
            with self._wake:
                self._wake.notify()

    def _drain(self) -> None:
        queue = self._queue
        while queue:
            batch: list[ReadableSpan] = []
            while queue and len(batch) < self.max_batch_size:
                span = queue.popleft()
                if isinstance(span, LightSpan):
                    # Light spans become SDK spans here, off the agent's threads.
                    try:
                        batch.append(to_readable(span))
                    except Exception as exc:
                        internal_error("span conversion", exc)
                        self.failed += 1
                    continue
                batch.append(span)
            if not batch:
                continue
            self.exporting_since = time.monotonic()
            try:
                result = self.exporter.export(batch)
            except Exception as exc:
                internal_error("span export", exc)
                result = SpanExportResult.FAILURE
            finally:
                self.exporting_since = None
            if result is SpanExportResult.SUCCESS:
                self.exported += len(batch)
                self.last_export_ok = True
            else:
                self.failed += len(batch)
                self.last_export_ok = False

    def _run(self) -> None:
        # The exporter's own connections and lookups are agentguard's, not the agent's.
        quiet_thread()
        # Nor are its HTTP or AWS calls: instrumentations (ours included) skip them.
        otel_context.attach(otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        if self._rebuild_exporter:
            self._fresh_exporter()
        while True:
            with self._wake:
                if not self._shutdown and not self._flush_requests and (
                    len(self._queue) < self._wake_at
                ):
                    self._wake.wait(self.schedule_delay)
                requests, self._flush_requests = self._flush_requests, []
                stopping = self._shutdown
            self._drain()
            for request in requests:
                request.set()
            if stopping:
                return

    def _request_flush(self) -> threading.Event | None:
        """Ask the worker to export what is queued: the event it sets when done, or ``None``
        when no worker is running (nothing will be exported)."""
        worker = self._worker
        if worker is None or not worker.is_alive():
            return None
        done = threading.Event()
        with self._wake:
            self._flush_requests.append(done)
            self._wake.notify()
        return done

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        done = self._request_flush()
        if done is None:
            return not self._queue
        return done.wait(timeout_millis / 1000)

    def backend_down(self, stalled_after: float = STALLED_AFTER) -> bool:
        """Whether the backend looks unreachable: the last export failed, or one has been
        retrying for longer than ``stalled_after`` seconds."""
        since = self.exporting_since
        return self.last_export_ok is False or (
            since is not None and time.monotonic() - since > stalled_after)

    def stalled(self) -> bool:
        """Whether the worker is inside an export that looks hung (see :meth:`backend_down`)."""
        return self.exporting_since is not None and self.backend_down()

    def flush_before_shutdown(self, timeout: float) -> bool:
        """Export what is queued, waiting at most ``timeout`` seconds, and less when the backend
        is down: from the start (the last export failed), or while waiting (an export has hung
        for a second). Nobody waits at exit for a backend that does not answer."""
        if self.backend_down():
            timeout = min(timeout, 0.5)
        deadline = time.monotonic() + timeout
        done = self._request_flush()
        if done is None:
            return not self._queue
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if done.wait(min(left, 0.1)):
                return True
            if self.stalled():
                return False

    def shutdown(self, timeout_millis: int = 5000, *, close_exporter: bool = True) -> None:
        if self._shutdown:
            return
        self._active = False
        with self._wake:
            self._shutdown = True
            self._wake.notify()
        worker = self._worker
        wait = timeout_millis / 1000
        if self.stalled():
            # An export that hangs (a backend that accepts and never answers) is not waited out:
            # shutting the exporter down cuts its retry back-off short (and a gRPC call at
            # once); an HTTP request still in flight ends with its timeout, in the daemon worker.
            wait = min(wait, _STALLED_JOIN)
            if close_exporter:
                self._close_exporter()
                close_exporter = False
        if worker is not None and worker is not threading.current_thread():
            worker.join(wait)
        if close_exporter:
            self._close_exporter()

    def _close_exporter(self) -> None:
        try:
            self.exporter.shutdown()
        except Exception as exc:
            internal_error("exporter shutdown", exc)

    def stats(self) -> dict[str, int]:
        return {
            "spans_queued": self.queued,
            "spans_exported": self.exported,
            "spans_dropped": self.dropped,
            "spans_failed": self.failed,
            "queue_length": len(self._queue),
        }


def _otlp_exporter(config: Config) -> SpanExporter:
    protocol = config.otlp_protocol
    endpoint = config.otlp_endpoint
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        if endpoint is None:
            return GrpcExporter(timeout=config.export_timeout)
        insecure = endpoint.startswith("http://") or "://" not in endpoint
        return GrpcExporter(endpoint=endpoint, insecure=insecure, timeout=config.export_timeout)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    if endpoint is None:
        for variable in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
            if os.environ.get(variable):
                _check_http_url(os.environ[variable].strip())
                break
        return HttpExporter(timeout=config.export_timeout)
    if "://" not in endpoint:
        endpoint = "http://" + endpoint
    scheme, rest = endpoint.split("://", 1)
    if "/" not in rest.rstrip("/"):
        # OTEL_EXPORTER_OTLP_ENDPOINT names the base URL; the traces path is appended to it.
        endpoint = f"{scheme}://{rest.rstrip('/')}/v1/traces"
    _check_http_url(endpoint)
    return HttpExporter(endpoint=endpoint, timeout=config.export_timeout)


def _check_http_url(url: str) -> None:
    """Raise ValueError for a URL the HTTP exporter could never send to (it would only say so
    at its first export, in a log line, with every span of the process lost)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a usable URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"the scheme must be http or https, not {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if port == 0:
        raise ValueError("port 0 cannot be connected to")
    if any(c.isspace() for c in url):
        raise ValueError("the URL contains whitespace")


def _make_exporter(config: Config) -> SpanExporter | None:
    exporter: Any = config.exporter
    if isinstance(exporter, SpanExporter):
        return exporter
    if exporter == "none":
        return None
    if exporter == "console":
        return ConsoleSpanExporter()
    if config.collector_endpoint and not _otlp_elsewhere(config):
        # The collector is the exporter: no second copy to the OTLP default (which is where a
        # local collector listens anyway).
        return None
    try:
        return _otlp_exporter(config)
    except ValueError as exc:
        # The exporter refuses the endpoint outright (gRPC parses it at once; HTTP only when
        # it first sends): a configuration mistake, said at instrument().
        raise ConfigError(
            f"invalid agentguard configuration: otlp_endpoint (or OTEL_EXPORTER_OTLP_"
            f"(TRACES_)ENDPOINT) cannot be used by the {config.otlp_protocol} exporter: "
            f"{exc}; got {config.otlp_endpoint!r}") from None


def _otlp_factory(config: Config, exporter: SpanExporter | None
                  ) -> Callable[[], SpanExporter] | None:
    """What rebuilds ``exporter`` in a forked child: set for the OTLP exporters agentguard
    builds from the configuration; an exporter instance the application gave is its own."""
    if exporter is None or isinstance(config.exporter, SpanExporter) or \
            config.exporter == "console":
        return None
    return lambda: _otlp_exporter(config)


def _otlp_elsewhere(config: Config) -> bool:
    """Whether an OTLP endpoint other than the collector's is configured."""
    configured = config.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or \
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not configured or not config.collector_endpoint:
        return bool(configured)
    return _host_port(configured) != _host_port(config.collector_target()[1])


def _host_port(endpoint: str) -> tuple[str | None, int | None]:
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint if "://" in endpoint else "//" + endpoint)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.hostname, port or (443 if parts.scheme == "https" else None)


def _collector_exporter(config: Config) -> SpanExporter:
    """The OTLP exporter to the node's collector (protocol chosen by its URL)."""
    protocol, endpoint, secure = config.collector_target()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter(endpoint=endpoint, insecure=not secure, timeout=config.export_timeout)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter(endpoint=endpoint, timeout=config.export_timeout)


class _WithPid(SpanExporter):
    """Exports spans with ``process.pid`` on their resource (the collector joins by it), for a
    provider the application owns whose resource may lack it."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter
        self._resources: dict[int, tuple[Resource, Resource]] = {}

    def export(self, spans: Any) -> SpanExportResult:
        import copy

        pid = os.getpid()
        out = []
        for span in spans:
            resource = span.resource
            if resource.attributes.get(semconv.PROCESS_PID) == pid:
                out.append(span)
                continue
            cached = self._resources.get(id(resource))
            if cached is None or cached[0] is not resource:
                if len(self._resources) > 64:
                    self._resources.clear()
                cached = (resource, resource.merge(Resource({semconv.PROCESS_PID: pid})))
                self._resources[id(resource)] = cached
            # A copy, not the application's span: its own exporters see it unchanged.
            clone = copy.copy(span)
            clone._resource = cached[1]
            out.append(clone)
        return self.exporter.export(out)

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


class Telemetry:
    """The tracer agentguard writes to, and the export pipeline it owns (if any).

    ``provider`` is the application's SDK provider when agentguard writes to it; ``None`` when
    agentguard owns its pipeline and writes light spans to its own processor.
    """

    def __init__(
        self,
        provider: Any,
        processor: BoundedBatchSpanProcessor | None,
        owns_provider: bool,
        tracer: trace.Tracer | None = None,
        collector: BoundedBatchSpanProcessor | None = None,
    ) -> None:
        self.provider = provider
        self.processor = processor
        # The collector's own export queue when spans go to an OTLP backend as well: a slow or
        # unreachable backend must not delay what the collector needs within its hold time.
        self.collector = collector
        self.owns_provider = owns_provider
        self.tracer = tracer if tracer is not None else provider.get_tracer("agentguard", _VERSION)
        # Content can be left for the export thread to redact only on light spans.
        self.light = isinstance(self.tracer, LightTracer)
        if owns_provider and hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)

            def _after_fork() -> None:
                telemetry = ref()
                if telemetry is not None:
                    telemetry._own_pid()

            os.register_at_fork(after_in_child=_after_fork)

    def _own_pid(self) -> None:
        """Put a forked child's pid on the resource of the spans it starts (the collector joins
        spans to processes by ``process.pid``; a pre-fork server's workers are processes of
        their own). Both agentguard's light tracer and the SDK's tracer read ``resource`` when
        a span starts."""
        try:
            resource: Resource = getattr(self.tracer, "resource")  # noqa: B009
            setattr(self.tracer, "resource",  # noqa: B010
                    resource.merge(Resource({semconv.PROCESS_PID: os.getpid()})))
        except Exception as exc:
            internal_error("resource after fork", exc)

    def flush(self, timeout: float = 5.0) -> bool:
        if self.collector is not None:
            self.collector.force_flush(int(timeout * 1000))
        if self.processor is not None:
            return self.processor.force_flush(int(timeout * 1000))
        flush = getattr(self.provider, "force_flush", None) if self.provider is not None else None
        return bool(flush(int(timeout * 1000))) if callable(flush) else True

    def shutdown(self, timeout: float = 5.0, *, keep_exporter: object = None,
                 successor: Telemetry | None = None) -> None:
        """Flush and stop; an exporter the next configuration reuses (``keep_exporter``) stays open.

        ``successor``: the pipeline replacing this one; spans still open here (an agent running
        while ``instrument()`` is called again) are exported by it when they end.
        """
        if successor is not None:
            if self.processor is not None:
                self.processor.successor = successor.processor or successor.collector
            if self.collector is not None:
                self.collector.successor = successor.collector or successor.processor
        # One deadline for everything: a second export queue must not double the wait.
        deadline = time.monotonic() + timeout
        for processor, keep in ((self.collector, None), (self.processor, keep_exporter)):
            if processor is None:
                continue
            # Waiting for a backend that is down would only delay the agent's exit.
            processor.flush_before_shutdown(max(0.0, deadline - time.monotonic()))
            processor.shutdown(int(max(0.0, deadline - time.monotonic()) * 1000),
                               close_exporter=processor.exporter is not keep)
        if self.owns_provider and self.provider is not None:
            self.provider.shutdown()

    def stats(self) -> dict[str, int]:
        stats = self.processor.stats() if self.processor is not None else {}
        if self.collector is not None:
            stats.update({f"collector_{k}": v for k, v in self.collector.stats().items()})
        return stats


def build_telemetry(config: Config, tracer_provider: Any = None) -> Telemetry:
    """Build the tracing pipeline for ``config``.

    Precedence: an explicit ``tracer_provider``; else an SDK provider already installed as the
    global one (the application's own OpenTelemetry set-up wins, and agentguard adds its exporter
    only when one was configured explicitly); else a private provider of agentguard's own.
    """
    provider = tracer_provider
    if provider is None:
        global_provider = trace.get_tracer_provider()
        if isinstance(global_provider, TracerProvider):
            provider = global_provider
    if provider is not None:
        processor = None
        if config.exporter_explicit:
            exporter = _make_exporter(config)
            if exporter is not None:
                processor = BoundedBatchSpanProcessor(
                    exporter, max_queue_size=config.max_queue_size, only_scope="agentguard",
                    exporter_factory=_otlp_factory(config, exporter))
                provider.add_span_processor(processor)
        collector = None
        if config.collector_endpoint:
            collector = BoundedBatchSpanProcessor(
                _WithPid(_collector_exporter(config)), max_queue_size=config.max_queue_size,
                only_scope="agentguard",
                exporter_factory=lambda: _WithPid(_collector_exporter(config)))
            provider.add_span_processor(collector)
        return Telemetry(provider, processor, owns_provider=False, collector=collector)
    resource = Resource.create(
        {
            semconv.SERVICE_NAME: config.service_name,
            semconv.PROCESS_PID: os.getpid(),
            "telemetry.distro.name": "agentguard",
            "telemetry.distro.version": _VERSION,
        }
    )
    exporter = _make_exporter(config)
    processor = None
    if exporter is not None:
        processor = BoundedBatchSpanProcessor(exporter, max_queue_size=config.max_queue_size,
                                              exporter_factory=_otlp_factory(config, exporter))
    collector = None
    if config.collector_endpoint:
        collector = BoundedBatchSpanProcessor(
            _collector_exporter(config), max_queue_size=config.max_queue_size,
            exporter_factory=lambda: _collector_exporter(config))
        if processor is None:
            # The collector is the only exporter: it is the pipeline's processor.
            processor, collector = collector, None
    if _default_sampling():
        on_end = processor.on_end if processor is not None else _discard
        if processor is not None and collector is not None:
            on_end = _both(processor.on_end, collector.on_end)
        tracer = LightTracer(resource, InstrumentationScope("agentguard", _VERSION), on_end)
        return Telemetry(None, processor, owns_provider=True, tracer=tracer, collector=collector)
    # A sampler chosen by OTEL_TRACES_SAMPLER needs the SDK's sampling machinery.
    provider = TracerProvider(resource=resource)
    for each in (processor, collector):
        if each is not None:
            provider.add_span_processor(each)
    return Telemetry(provider, processor, owns_provider=True, collector=collector)


def _both(first: Any, second: Any) -> Any:
    def on_end(span: Any) -> None:
        first(span)
        second(span)

    return on_end


def _discard(span: Any) -> None:
    return None


def _default_sampling() -> bool:
    sampler = os.environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    return sampler in ("", "parentbased_always_on", "always_on")
