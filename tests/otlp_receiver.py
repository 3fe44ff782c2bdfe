"""A real OTLP trace receiver for tests: gRPC and HTTP/protobuf on 127.0.0.1.

``OtlpReceiver`` runs both transports at once on free loopback ports and decodes every
``ExportTraceServiceRequest`` it receives into :class:`ReceivedSpan` records::

    with OtlpReceiver() as receiver:
        ...  # point an OTLP exporter at receiver.grpc_endpoint or receiver.http_endpoint
        spans = receiver.wait_for(3, timeout=5)
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status

__all__ = ["OtlpReceiver", "ReceivedSpan", "decode"]

Transport = Literal["grpc", "http/protobuf"]


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived at the receiver, with OTLP values turned into Python values."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status_code: str  # "UNSET", "OK" or "ERROR"
    scope: str
    transport: Transport
    kind: int = 0
    events: list[str] = field(default_factory=list)


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return tuple(_value(item) for item in value.array_value.values)
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, which)


def _attributes(pairs: Sequence[KeyValue]) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def decode(
    request: trace_service_pb2.ExportTraceServiceRequest, transport: Transport
) -> list[ReceivedSpan]:
    """Flatten an export request into one record per span."""
    records: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                records.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        attributes=_attributes(span.attributes),
                        resource=dict(resource),
                        status_code=Status.StatusCode.Name(span.status.code).removeprefix(
                            "STATUS_CODE_"
                        ),
                        scope=scope_spans.scope.name,
                        transport=transport,
                        kind=span.kind,
                        events=[event.name for event in span.events],
                    )
                )
    return records


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._receiver._store(decode(request, "grpc"))
        return trace_service_pb2.ExportTraceServiceResponse()


def _handler(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path.split("?", 1)[0] != "/v1/traces":
                self._reply(404, b"", "text/plain")
                return
            content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip()
            if content_type != "application/x-protobuf":
                self._reply(415, b"only application/x-protobuf", "text/plain")
                return
            encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
            try:
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
            except Exception:
                self._reply(400, b"undecodable body", "text/plain")
                return
            receiver._store(decode(request, "http/protobuf"))
            response = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self._reply(200, response, "application/x-protobuf")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


class OtlpReceiver:
    """OTLP/gRPC and OTLP/HTTP (protobuf) trace endpoints on free ports of 127.0.0.1.

    Every span received on either transport is kept, in arrival order, in :attr:`spans`.
    """

    def __init__(self) -> None:
        self._spans: list[ReceivedSpan] = []
        self._changed = threading.Condition()
        self.requests = 0
        self._grpc: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self.grpc_port = 0
        self.http_port = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> OtlpReceiver:
        """Bind both servers and start serving; returns ``self``."""
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _TraceService(self), server
        )
        self.grpc_port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._grpc = server
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._http.daemon_threads = True
        self.http_port = self._http.server_address[1]
        self._http_thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="otlp-receiver-http",
            daemon=True,
        )
        self._http_thread.start()
        return self

    def stop(self) -> None:
        """Stop both servers (idempotent)."""
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait(5)
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(5)
            self._http_thread = None

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- endpoints -------------------------------------------------------------------------

    @property
    def grpc_endpoint(self) -> str:
        """``http://127.0.0.1:<port>`` of the gRPC server (``http`` meaning plaintext)."""
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """Base URL of the HTTP server; traces are POSTed to ``/v1/traces`` under it."""
        return f"http://127.0.0.1:{self.http_port}"

    def endpoint(self, transport: str) -> str:
        """The endpoint for ``transport`` (``"grpc"`` or ``"http/protobuf"``)."""
        return self.grpc_endpoint if transport == "grpc" else self.http_endpoint

    # -- received data ---------------------------------------------------------------------

    def _store(self, records: list[ReceivedSpan]) -> None:
        with self._changed:
            self.requests += 1
            self._spans.extend(records)
            self._changed.notify_all()

    @property
    def spans(self) -> list[ReceivedSpan]:
        """A snapshot of every span received so far."""
        with self._changed:
            return list(self._spans)

    def clear(self) -> None:
        """Forget everything received so far."""
        with self._changed:
            self._spans.clear()
            self.requests = 0

    def wait_for(
        self,
        until: int | Callable[[list[ReceivedSpan]], bool],
        timeout: float = 10.0,
    ) -> list[ReceivedSpan]:
        """Block until ``until`` spans arrived (or ``until(spans)`` is true); return the spans.

        Raises ``TimeoutError`` listing what did arrive when ``timeout`` seconds pass first.
        """
        predicate: Callable[[list[ReceivedSpan]], bool]
        if isinstance(until, int):
            count = until
            predicate = lambda spans: len(spans) >= count  # noqa: E731
        else:
            predicate = until
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self._spans):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    names = [span.name for span in self._spans]
                    raise TimeoutError(
                        f"OTLP receiver: condition not met within {timeout}s; "
                        f"{len(names)} span(s) received: {names}"
                    )
                self._changed.wait(remaining)
            return list(self._spans)
