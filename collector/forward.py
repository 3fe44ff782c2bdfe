"""Sends enriched spans onward by OTLP (HTTP/protobuf or gRPC) from a bounded queue.

The queue never blocks the collector: past its size in requests or in serialized bytes a request is
dropped and counted (one request is always taken while the queue is empty). Queued requests
are merged into exports of at most ``max_batch_bytes`` serialized bytes (a request larger than that
is cut into pieces by span); an export the backend refuses as too large (HTTP 413, gRPC
``RESOURCE_EXHAUSTED`` without retry advice) is split in halves and sent again, and a single span
too large alone is dropped and counted. A failed export is retried a few times with back-off when
the backend says it is transient.
:class:`AgentResources` keeps each agent's OTLP resource, so spans the collector makes on an
agent's behalf (kernel events that came after their span went out) land under the same resource.
"""

from __future__ import annotations

import collections
import dataclasses
import http.client
import logging
import ssl
import threading
import time
import urllib.parse
from typing import Any, Literal

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from agentguard import semconv
from agentguard._errors import internal_error
from agentguard.collector.settings import DEFAULT_FORWARD_QUEUE_BYTES, DEFAULT_MAX_BATCH_BYTES

__all__ = ["DEFAULT_MAX_BATCH_BYTES", "AgentResources", "Forwarder", "ResourceKey"]

logger = logging.getLogger("agentguard.collector")

_RETRYABLE_HTTP = {429, 502, 503, 504}
_TOO_LARGE_HTTP = 413
_ATTEMPTS = 4
_TIMEOUT = 10.0
# Queued requests merged into one round of exports at most.
_MAX_MERGE = 32
# The merge limit learned from refusals stays above this, so one odd refusal (a proxy's) cannot
# make every later export a single span; a backend stricter still is handled by splitting.
_MIN_MERGE_LIMIT = 64 * 1024
# Splits of a round's exports after refusals as too large; past it, what is refused is dropped, so
# a backend that refuses everything as too large cannot keep the forwarder splitting.
_MAX_SPLITS = 64
# OTLP/gRPC: RESOURCE_EXHAUSTED is worth retrying only when the server sends RetryInfo.
_RETRY_INFO = b"type.googleapis.com/google.rpc.RetryInfo"
# OpenTelemetry resource convention; agentguard.semconv has no name for it.
_HOST_NAME = "host.name"

# A resource is a few hundred bytes; a sender's oversized one is cut, so the memory stays bounded
# by the number of agents times this.
_MAX_RESOURCE_BYTES = 16 * 1024

# An agent as its resource names it: (process.pid, service.name, host.name).
ResourceKey = tuple[int | None, str | None, str | None]


class AgentResources:
    """The OTLP resource each agent last sent, bounded by agent (not by span).

    Backends group spans by resource (service, host, deployment, a project name), so a span the
    collector sends for an agent must carry the agent's resource as received, not a resource of
    its own. Spans refer to their agent by the key :meth:`remember` returns; the same key object
    is handed out for every span of an agent, so remembering spans costs a reference each.
    """

    def __init__(self, max_agents: int = 1024) -> None:
        self.max_agents = max_agents
        # key → (serialized Resource, ResourceSpans.schema_url); least recently sent first.
        self._resources: collections.OrderedDict[ResourceKey, tuple[bytes, str]] = \
            collections.OrderedDict()
        self.counters = {"resources_evicted": 0, "resources_trimmed": 0}

    def __len__(self) -> int:
        return len(self._resources)

    def remember(self, resource_spans: trace_pb2.ResourceSpans) -> ResourceKey:
        """Keep the resource of ``resource_spans`` (the newest wins) and return its agent key."""
        pid: int | None = None
        service: str | None = None
        host: str | None = None
        for kv in resource_spans.resource.attributes:
            if kv.key == semconv.SERVICE_NAME:
                service = kv.value.string_value
            elif kv.key == semconv.PROCESS_PID:
                which = kv.value.WhichOneof("value")
                if which == "int_value":
                    pid = kv.value.int_value
                elif which == "string_value" and kv.value.string_value.isdigit():
                    pid = int(kv.value.string_value)
            elif kv.key == _HOST_NAME:
                host = kv.value.string_value
        key: ResourceKey = (pid, service, host)
        serialized = resource_spans.resource.SerializeToString()
        if len(serialized) > _MAX_RESOURCE_BYTES:
            serialized = self._trimmed(resource_spans.resource)
        stored = (serialized, resource_spans.schema_url[:_MAX_RESOURCE_BYTES])
        resources = self._resources
        if key in resources:
            resources.move_to_end(key)
            # Hand out the stored key object, so every span of the agent shares it.
            key = next(reversed(resources))
        elif len(resources) >= self.max_agents:
            resources.popitem(last=False)
            self.counters["resources_evicted"] += 1
        resources[key] = stored
        return key

    def _trimmed(self, resource: resource_pb2.Resource) -> bytes:
        """An oversized resource cut to its leading attributes within the byte bound (the
        identifying ones come first from OpenTelemetry SDKs); the rest counted as dropped."""
        self.counters["resources_trimmed"] += 1
        kept = resource_pb2.Resource()
        size = 0
        for kv in resource.attributes:
            size += kv.ByteSize() + 4
            if size > _MAX_RESOURCE_BYTES:
                break
            kept.attributes.append(kv)
        kept.dropped_attributes_count = (resource.dropped_attributes_count
                                         + len(resource.attributes) - len(kept.attributes))
        return bytes(kept.SerializeToString())

    def apply(self, resource_spans: trace_pb2.ResourceSpans, key: ResourceKey) -> bool:
        """Give ``resource_spans`` the resource of agent ``key``; ``False`` when it is forgotten
        (evicted), leaving the resource as it was."""
        stored = self._resources.get(key)
        if stored is None:
            return False
        serialized, schema_url = stored
        resource_spans.resource.Clear()
        resource_spans.resource.ParseFromString(serialized)
        resource_spans.schema_url = schema_url
        return True


# What one export came to: sent, worth retrying, failed for good, or refused as too large.
_Outcome = Literal["sent", "retry", "failed", "too_large"]


@dataclasses.dataclass(slots=True)
class _Part:
    """A queued request (or a piece of one) serialized once; exports are concatenations of parts
    (concatenated ``ExportTraceServiceRequest`` messages parse as their merge)."""

    request: trace_service_pb2.ExportTraceServiceRequest
    body: bytes
    spans: int


class Forwarder:
    """One background thread exporting queued OTLP requests to ``url``."""

    def __init__(self, url: str, *, max_queue: int = 2048, headers: dict[str, str] | None = None,
                 max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
                 max_queue_bytes: int = DEFAULT_FORWARD_QUEUE_BYTES) -> None:
        if max_batch_bytes < 1024:
            raise ValueError(f"max_batch_bytes must be at least 1024, got {max_batch_bytes}")
        self.url = url
        self.headers = dict(headers or {})
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self.max_batch_bytes = max_batch_bytes
        # Below max_batch_bytes once the backend refused an export as too large: about half the
        # refused size, so later exports stop sending what it will refuse. A single span is
        # still tried alone up to max_batch_bytes.
        self._merge_limit = max_batch_bytes
        # Each queued request with its serialized size, and the sum of those sizes.
        self._queue: collections.deque[tuple[trace_service_pb2.ExportTraceServiceRequest, int]] = \
            collections.deque()
        self._queue_bytes = 0
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._grpc_channel: Any = None
        self._grpc_call: Any = None
        self._warned_refused = False
        self._warned_dropped = False
        self._warned_full = False
        # forward_over_queue_bytes: the spans of forward_dropped refused by the byte budget.
        self.counters = {"forwarded_spans": 0, "forward_dropped": 0, "forward_failed": 0,
                         "forward_requests": 0, "forward_splits": 0, "forward_too_large": 0,
                         "forward_over_queue_bytes": 0, "forward_lost_at_stop": 0}
        parsed = urllib.parse.urlsplit(url)
        self.scheme = parsed.scheme
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or (443 if parsed.scheme in ("https", "grpcs") else 4318
                                    if parsed.scheme.startswith("http") else 4317)
        path = parsed.path.rstrip("/")
        self.path = path if path.endswith("/v1/traces") else f"{path}/v1/traces"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="agentguard-forward", daemon=True)
        self._thread.start()

    def submit(self, request: trace_service_pb2.ExportTraceServiceRequest) -> bool:
        """Queue a request; ``False`` (its spans counted as dropped) when the queue is full by
        count or by bytes. One request is always taken while none waits, so a budget below the
        size of a request still lets every request through in turn."""
        size = request.ByteSize()
        with self._wake:
            over_bytes = bool(self._queue) and self._queue_bytes + size > self.max_queue_bytes
            if over_bytes or len(self._queue) >= self.max_queue:
                spans = _span_count(request)
                self.counters["forward_dropped"] += spans
                if over_bytes:
                    self.counters["forward_over_queue_bytes"] += spans
                if not self._warned_full:
                    self._warned_full = True
                    logger.warning("agentguard collector: the queue of spans bound for %s is full "
                                   "(%s); dropping what does not fit (counted as forward_dropped; "
                                   "logged once)", self.url,
                                   f"{self.max_queue_bytes} bytes" if over_bytes else
                                   f"{self.max_queue} requests")
                return False
            self._queue.append((request, size))
            self._queue_bytes += size
            self._wake.notify()
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued (within ``timeout``), then stop; what is still queued then is
        counted (``forward_lost_at_stop``) and logged."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._wake:
            left = sum(_span_count(request) for request, _ in self._queue)
            self._queue.clear()
            self._queue_bytes = 0
        if left:
            self.counters["forward_lost_at_stop"] += left
            logger.error("agentguard collector: %d span(s) bound for %s were not sent within the "
                         "%gs the stop allows (counted as forward_lost_at_stop)", left, self.url,
                         timeout)
        if self._grpc_channel is not None:
            self._grpc_channel.close()

    def stats(self) -> dict[str, int]:
        return {**self.counters, "forward_queue": len(self._queue),
                "forward_queued_bytes": self._queue_bytes}

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._stopping:
                    self._wake.wait(1.0)
                if not self._queue and self._stopping:
                    return
                # Serializing happens outside the lock, so submit() never waits on it.
                taken: list[trace_service_pb2.ExportTraceServiceRequest] = []
                for _ in range(min(_MAX_MERGE, len(self._queue))):
                    request, size = self._queue.popleft()
                    self._queue_bytes -= size
                    taken.append(request)
            try:
                batches = self._pack(taken)
            except Exception as exc:
                internal_error("collector forward", exc)
                self.counters["forward_failed"] += sum(_span_count(r) for r in taken)
                continue
            self._send_batches(batches)

    def _pack(self, requests: list[trace_service_pb2.ExportTraceServiceRequest]) -> list[list[_Part]]:
        """``requests`` as exports in order, each at most the merge limit in bytes (a part larger
        than that goes alone)."""
        batches: list[list[_Part]] = []
        current: list[_Part] = []
        size = 0
        limit = self._merge_limit
        for request in requests:
            for part in self._fit(request):
                if current and size + len(part.body) > limit:
                    batches.append(current)
                    current, size = [], 0
                current.append(part)
                size += len(part.body)
        if current:
            batches.append(current)
        return batches

    def _fit(self, request: trace_service_pb2.ExportTraceServiceRequest) -> list[_Part]:
        """``request`` as parts of at most ``max_batch_bytes``, cut by span; a span larger than
        that alone is dropped and counted."""
        body = request.SerializeToString()
        spans = _span_count(request)
        if len(body) <= self.max_batch_bytes:
            return [_Part(request, body, spans)]
        if spans <= 1:
            self._drop_too_large(spans, len(body), refused=False)
            return []
        parts: list[_Part] = []
        for piece in _split(request, -(-len(body) // self.max_batch_bytes)):
            parts.extend(self._fit(piece))
        return parts

    def _send_batches(self, batches: list[list[_Part]]) -> None:
        """Export ``batches`` in order, splitting an export the backend refuses as too large."""
        work = collections.deque(batches)
        splits = 0
        while work:
            batch = work.popleft()
            spans = sum(part.spans for part in batch)
            try:
                if sum(len(p.body) for p in batch) > self._merge_limit:
                    # Packed before the backend refused a smaller export: cut it without trying.
                    halves = _halves(batch)
                    if halves is not None:
                        work.extendleft(reversed(halves))
                        continue
                body = batch[0].body if len(batch) == 1 else b"".join(p.body for p in batch)
                outcome = self._export(body)
                self.counters["forward_requests"] += 1
                if outcome == "sent":
                    self.counters["forwarded_spans"] += spans
                elif outcome == "too_large":
                    self._refused(len(body))
                    halves = _halves(batch) if splits < _MAX_SPLITS else None
                    if halves is None:
                        self._drop_too_large(spans, len(body), refused=True)
                    else:
                        splits += 1
                        self.counters["forward_splits"] += 1
                        work.extendleft(reversed(halves))
                else:
                    self.counters["forward_failed"] += spans
            except Exception as exc:
                internal_error("collector forward", exc)
                self.counters["forward_failed"] += spans

    def _refused(self, size: int) -> None:
        """The backend refused ``size`` bytes as too large: merge less from now on."""
        # A little over half: the halves of what was refused (each with its own copy of the
        # resource and scope) must fit.
        self._merge_limit = max(_MIN_MERGE_LIMIT, min(self._merge_limit, size // 2 + size // 16))
        if not self._warned_refused:
            self._warned_refused = True
            logger.warning("agentguard collector: %s refused an export of %d bytes as too large; "
                           "splitting it, and merging at most %d bytes from now on", self.url,
                           size, self._merge_limit)

    def _drop_too_large(self, spans: int, size: int, *, refused: bool) -> None:
        """Count (and the first time, log) spans dropped because they do not fit an export."""
        self.counters["forward_too_large"] += spans
        if not self._warned_dropped:
            self._warned_dropped = True
            why = "the backend refused it as too large" if refused else \
                f"a single span is above the limit of {self.max_batch_bytes} bytes"
            logger.warning("agentguard collector: dropped %d span(s) bound for %s, an export of "
                           "%d bytes: %s (counted as forward_too_large; logged once)", spans,
                           self.url, size, why)

    def _export(self, body: bytes) -> _Outcome:
        delay = 0.25
        for attempt in range(_ATTEMPTS):
            outcome = self._send_grpc(body) if self.scheme.startswith("grpc") else \
                self._send_http(body)
            if outcome != "retry":
                return outcome
            if attempt == _ATTEMPTS - 1 or self._stopping:
                return "failed"
            time.sleep(delay)
            delay *= 2
        return "failed"

    def _send_http(self, body: bytes) -> _Outcome:
        connection: http.client.HTTPConnection
        if self.scheme == "https":
            connection = http.client.HTTPSConnection(self.host, self.port, timeout=_TIMEOUT,
                                                     context=ssl.create_default_context())
        else:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=_TIMEOUT)
        try:
            try:
                connection.request("POST", self.path, body, {
                    "Content-Type": "application/x-protobuf", **self.headers})
            except OSError:
                # A server may answer a body it will not take (413 on its Content-Length) and
                # close before reading it all; its answer is then still there to read.
                if connection.sock is None:
                    raise
            response = connection.getresponse()
            response.read(64 * 1024)
        except (OSError, http.client.HTTPException) as exc:
            logger.debug("agentguard collector: forward to %s failed: %s", self.url, exc)
            return "retry"
        finally:
            connection.close()
        if 200 <= response.status < 300:
            return "sent"
        logger.debug("agentguard collector: forward to %s answered %s", self.url, response.status)
        if response.status == _TOO_LARGE_HTTP:
            return "too_large"
        return "retry" if response.status in _RETRYABLE_HTTP else "failed"

    def _send_grpc(self, body: bytes) -> _Outcome:
        import grpc

        if self._grpc_call is None:
            target = f"{self.host}:{self.port}"
            self._grpc_channel = grpc.secure_channel(target, grpc.ssl_channel_credentials()) \
                if self.scheme == "grpcs" else grpc.insecure_channel(target)
            self._grpc_call = self._grpc_channel.unary_unary(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        try:
            self._grpc_call(body, timeout=_TIMEOUT, metadata=list(self.headers.items()) or None)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                # A message above the server's limit comes back as RESOURCE_EXHAUSTED too; only
                # RetryInfo in the status details marks a transient shortage (OTLP spec).
                trailers = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
                advised = any(key == "grpc-status-details-bin" and isinstance(value, bytes)
                              and _RETRY_INFO in value for key, value in trailers or ())
                return "retry" if advised else "too_large"
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                        grpc.StatusCode.ABORTED):
                return "retry"
            return "failed"
        return "sent"


def _halves(batch: list[_Part]) -> list[list[_Part]] | None:
    """``batch`` in two exports (a lone request cut between its spans); ``None`` for one span."""
    if len(batch) > 1:
        middle = len(batch) // 2
        return [batch[:middle], batch[middle:]]
    part = batch[0]
    if part.spans <= 1:
        return None
    return [[_Part(piece, piece.SerializeToString(), _span_count(piece))]
            for piece in _split(part.request, 2)]


def _split(request: trace_service_pb2.ExportTraceServiceRequest,
           pieces: int) -> list[trace_service_pb2.ExportTraceServiceRequest]:
    """``request`` cut into up to ``pieces`` requests of about as many spans each, in order, every
    span under its own resource and scope."""
    per = max(1, -(-_span_count(request) // max(1, pieces)))
    out: list[trace_service_pb2.ExportTraceServiceRequest] = []
    target = trace_service_pb2.ExportTraceServiceRequest()
    room = 0
    for resource_spans in request.resource_spans:
        target_rs: trace_pb2.ResourceSpans | None = None
        for scope_spans in resource_spans.scope_spans:
            spans = scope_spans.spans
            start = 0
            while start < len(spans):
                if room == 0:
                    target = trace_service_pb2.ExportTraceServiceRequest()
                    out.append(target)
                    room = per
                    target_rs = None
                if target_rs is None:
                    target_rs = target.resource_spans.add()
                    target_rs.resource.CopyFrom(resource_spans.resource)
                    target_rs.schema_url = resource_spans.schema_url
                target_scope = target_rs.scope_spans.add()
                target_scope.scope.CopyFrom(scope_spans.scope)
                target_scope.schema_url = scope_spans.schema_url
                take = min(len(spans) - start, room)
                target_scope.spans.extend(spans[start:start + take])
                start += take
                room -= take
    return out


def _span_count(request: trace_service_pb2.ExportTraceServiceRequest) -> int:
    return sum(len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans)
