"""Sends enriched spans onward by OTLP (HTTP/protobuf or gRPC) from a bounded queue.

The queue never blocks the collector: past its size a batch is dropped and counted. A failed
export is retried a few times with back-off when the backend says it is transient.
:class:`AgentResources` keeps each agent's OTLP resource, so spans the collector makes on an
agent's behalf (kernel events that came after their span went out) land under the same resource.
"""

from __future__ import annotations

import collections
import http.client
import logging
import ssl
import threading
import time
import urllib.parse
from typing import Any

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from agentguard import semconv
from agentguard._errors import internal_error

__all__ = ["AgentResources", "Forwarder", "ResourceKey"]

logger = logging.getLogger("agentguard.collector")

_RETRYABLE_HTTP = {429, 502, 503, 504}
_ATTEMPTS = 4
_TIMEOUT = 10.0
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


class Forwarder:
    """One background thread exporting queued OTLP requests to ``url``."""

    def __init__(self, url: str, *, max_queue: int = 2048, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self.max_queue = max_queue
        self._queue: collections.deque[trace_service_pb2.ExportTraceServiceRequest] = \
            collections.deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._grpc_channel: Any = None
        self._grpc_call: Any = None
        self.counters = {"forwarded_spans": 0, "forward_dropped": 0, "forward_failed": 0,
                         "forward_requests": 0}
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
        """Queue a request; ``False`` (and counted) when the queue is full."""
        with self._wake:
            if len(self._queue) >= self.max_queue:
                self.counters["forward_dropped"] += _span_count(request)
                return False
            self._queue.append(request)
            self._wake.notify()
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued (within ``timeout``), then stop."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._grpc_channel is not None:
            self._grpc_channel.close()

    def stats(self) -> dict[str, int]:
        return {**self.counters, "forward_queue": len(self._queue)}

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._stopping:
                    self._wake.wait(1.0)
                if not self._queue and self._stopping:
                    return
                batch = self._merge()
            try:
                ok = self._export(batch)
            except Exception as exc:
                internal_error("collector forward", exc)
                ok = False
            spans = _span_count(batch)
            self.counters["forward_requests"] += 1
            if ok:
                self.counters["forwarded_spans"] += spans
            else:
                self.counters["forward_failed"] += spans

    def _merge(self) -> trace_service_pb2.ExportTraceServiceRequest:
        """Up to 32 queued requests as one."""
        merged = trace_service_pb2.ExportTraceServiceRequest()
        for _ in range(min(32, len(self._queue))):
            merged.resource_spans.extend(self._queue.popleft().resource_spans)
        return merged

    def _export(self, request: trace_service_pb2.ExportTraceServiceRequest) -> bool:
        body = request.SerializeToString()
        delay = 0.25
        for attempt in range(_ATTEMPTS):
            retry = self._send_grpc(body) if self.scheme.startswith("grpc") else self._send_http(body)
            if retry is None:
                return True
            if not retry or attempt == _ATTEMPTS - 1 or self._stopping:
                return False
            time.sleep(delay)
            delay *= 2
        return False

    def _send_http(self, body: bytes) -> bool | None:
        """``None`` on success, else whether the failure is worth retrying."""
        connection: http.client.HTTPConnection
        if self.scheme == "https":
            connection = http.client.HTTPSConnection(self.host, self.port, timeout=_TIMEOUT,
                                                     context=ssl.create_default_context())
        else:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=_TIMEOUT)
        try:
            connection.request("POST", self.path, body, {
                "Content-Type": "application/x-protobuf", **self.headers})
            response = connection.getresponse()
            response.read(64 * 1024)
        except OSError as exc:
            logger.debug("agentguard collector: forward to %s failed: %s", self.url, exc)
            return True
        finally:
            connection.close()
        if 200 <= response.status < 300:
            return None
        logger.debug("agentguard collector: forward to %s answered %s", self.url, response.status)
        return response.status in _RETRYABLE_HTTP

    def _send_grpc(self, body: bytes) -> bool | None:
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
            return code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                            grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED)
        return None


def _span_count(request: trace_service_pb2.ExportTraceServiceRequest) -> int:
    return sum(len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans)
