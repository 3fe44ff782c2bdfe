"""The forwarder keeps its exports within the size a backend accepts.

Real :class:`Forwarder` threads export to real OTLP backends on loopback (an HTTP server and a
gRPC server) that refuse bodies above a limit the way receivers do: HTTP 413, and gRPC
``RESOURCE_EXHAUSTED`` from the server's receive limit.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from agentguard.collector.forward import DEFAULT_MAX_BATCH_BYTES, Forwarder
from tests.collector.helpers import wait_for

MiB = 1024 * 1024
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class Backend:
    """What an OTLP backend received: accepted bodies, their spans in order, refusals."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lock = threading.Lock()
        self.accepted_sizes: list[int] = []
        self.refused_sizes: list[int] = []
        self.span_names: list[str] = []
        self.services: set[str] = set()

    def take(self, body: bytes) -> None:
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        with self.lock:
            self.accepted_sizes.append(len(body))
            for resource_spans in request.resource_spans:
                for kv in resource_spans.resource.attributes:
                    if kv.key == "service.name":
                        self.services.add(kv.value.string_value)
                for scope_spans in resource_spans.scope_spans:
                    self.span_names.extend(span.name for span in scope_spans.spans)


@pytest.fixture
def http_backend() -> Iterator[Any]:
    """Start OTLP/HTTP backends that answer 413 above their limit, like a proxy, without reading
    the body."""
    servers: list[ThreadingHTTPServer] = []

    def start(limit: int) -> tuple[Backend, str]:
        backend = Backend(limit)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                if length > backend.limit:
                    with backend.lock:
                        backend.refused_sizes.append(length)
                    self.send_response(413)
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    return
                backend.take(self.rfile.read(length))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        servers.append(server)
        return backend, f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def make_request(spans: int, span_bytes: int, *, service: str = "agent",
                 prefix: str = "s") -> trace_service_pb2.ExportTraceServiceRequest:
    """An OTLP request of ``spans`` spans named ``prefix0..``, each carrying ``span_bytes`` of
    attribute text."""
    request = trace_service_pb2.ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(common_pb2.KeyValue(
        key="service.name", value=common_pb2.AnyValue(string_value=service)))
    scope = resource_spans.scope_spans.add()
    scope.scope.name = "agentguard"
    filler = "x" * span_bytes
    for index in range(spans):
        scope.spans.append(trace_pb2.Span(
            trace_id=os.urandom(16), span_id=os.urandom(8), name=f"{prefix}{index}",
            attributes=[common_pb2.KeyValue(key="gen_ai.prompt",
                                            value=common_pb2.AnyValue(string_value=filler))]))
    return request


def drain(forwarder: Forwarder, requests: list[trace_service_pb2.ExportTraceServiceRequest]) -> None:
    """Queue ``requests`` before the thread runs (so they are merged, as a backlog is), then send
    everything and stop."""
    for request in requests:
        assert forwarder.submit(request)
    forwarder.start()
    forwarder.stop(timeout=30)
    assert forwarder.stats()["forward_queue"] == 0


def test_backlog_is_merged_into_exports_within_the_default_limit(http_backend: Any) -> None:
    """A backlog of 1 MiB requests reaches a backend with the usual 4 MiB limit complete, in
    exports under that limit, with nothing refused or lost."""
    backend, url = http_backend(4 * MiB)
    forwarder = Forwarder(url)
    requests = [make_request(100, 10_000, prefix=f"r{n}.") for n in range(12)]
    drain(forwarder, requests)
    assert backend.refused_sizes == []
    assert len(backend.span_names) == 1200
    assert backend.span_names == [f"r{n}.{i}" for n in range(12) for i in range(100)]
    assert max(backend.accepted_sizes) <= DEFAULT_MAX_BATCH_BYTES
    assert len(backend.accepted_sizes) < 12  # still merged, not sent one by one
    stats = forwarder.stats()
    assert stats["forwarded_spans"] == 1200
    assert stats["forward_failed"] == stats["forward_too_large"] == 0


def test_export_refused_as_too_large_is_split_and_later_ones_are_smaller(
        http_backend: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A backend with a 1 MiB limit answers 413 to the merged export; the forwarder sends it
    again in halves, delivers every span in order, says so once, and sends later backlogs in
    exports that fit without being refused again."""
    backend, url = http_backend(1 * MiB)
    forwarder = Forwarder(url)
    caplog.set_level(logging.WARNING, logger="agentguard.collector")
    first = [make_request(60, 10_000, prefix=f"a{n}.") for n in range(6)]
    for request in first:
        assert forwarder.submit(request)
    forwarder.start()
    try:
        wait_for(lambda: forwarder.stats()["forwarded_spans"] == 360, timeout=20)
        refused_first = len(backend.refused_sizes)
        assert refused_first >= 1
        second = [make_request(60, 10_000, prefix=f"b{n}.") for n in range(6)]
        for request in second:
            assert forwarder.submit(request)
    finally:
        forwarder.stop(timeout=30)
    assert backend.span_names == [f"{p}{n}.{i}" for p in "ab" for n in range(6) for i in range(60)]
    assert max(backend.accepted_sizes) <= 1 * MiB
    assert len(backend.refused_sizes) == refused_first
    stats = forwarder.stats()
    assert stats["forwarded_spans"] == 720
    assert stats["forward_splits"] >= 1
    assert stats["forward_failed"] == stats["forward_too_large"] == 0
    refusals = [r for r in caplog.records if "refused an export" in r.getMessage()]
    assert len(refusals) == 1


def test_span_too_large_alone_is_dropped_counted_and_logged_once(
        http_backend: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Spans that alone exceed what the backend takes are dropped, counted as forward_too_large
    and logged once, while the spans around them are delivered."""
    backend, url = http_backend(256 * 1024)
    forwarder = Forwarder(url)
    caplog.set_level(logging.WARNING, logger="agentguard.collector")
    drain(forwarder, [
        make_request(20, 1_000, prefix="before"),
        make_request(1, 300_000, prefix="huge"),
        make_request(1, 400_000, prefix="bigger"),
        make_request(20, 1_000, prefix="after"),
    ])
    assert backend.span_names == [f"before{i}" for i in range(20)] + [f"after{i}" for i in range(20)]
    stats = forwarder.stats()
    assert stats["forward_too_large"] == 2
    assert stats["forwarded_spans"] == 40
    assert stats["forward_failed"] == 0
    drops = [r for r in caplog.records if "forward_too_large" in r.getMessage()]
    assert len(drops) == 1


def test_configured_limit_cuts_a_large_request_between_spans(http_backend: Any) -> None:
    """With max_batch_bytes set to a backend's 256 KiB limit, a 1 MiB request is sent in pieces
    under it, never refused, every span in order and under its own resource."""
    backend, url = http_backend(256 * 1024)
    forwarder = Forwarder(url, max_batch_bytes=256 * 1024)
    drain(forwarder, [make_request(500, 2_000, service="big-agent")])
    assert backend.refused_sizes == []
    assert backend.span_names == [f"s{i}" for i in range(500)]
    assert backend.services == {"big-agent"}
    assert len(backend.accepted_sizes) >= 4
    assert max(backend.accepted_sizes) <= 256 * 1024
    assert forwarder.stats()["forward_splits"] == 0
    with pytest.raises(ValueError, match="max_batch_bytes"):
        Forwarder(url, max_batch_bytes=10)


# -- gRPC -------------------------------------------------------------------------------------


def _retry_info_status(message: str) -> bytes:
    """A serialized ``google.rpc.Status`` (RESOURCE_EXHAUSTED) carrying a RetryInfo detail."""
    detail = any_pb2.Any(type_url="type.googleapis.com/google.rpc.RetryInfo", value=b"")
    encoded_detail = bytes(detail.SerializeToString())
    text = message.encode()
    # Fields 1 (code: 8, RESOURCE_EXHAUSTED), 2 (message) and 3 (details), encoded by hand.
    return (b"\x08\x08"
            + b"\x12" + bytes([len(text)]) + text
            + b"\x1a" + bytes([len(encoded_detail)]) + encoded_detail)


@pytest.fixture
def grpc_backend() -> Iterator[Any]:
    """Start OTLP/gRPC backends with a receive limit; ``busy`` calls first answer
    RESOURCE_EXHAUSTED with RetryInfo, as a rate-limited receiver does."""
    servers: list[grpc.Server] = []

    def start(limit: int, busy: int = 0) -> tuple[Backend, str]:
        backend = Backend(limit)
        remaining = [busy]

        def export(body: bytes, context: grpc.ServicerContext) -> bytes:
            with backend.lock:
                refuse = remaining[0] > 0
                remaining[0] -= 1
            if refuse:
                context.set_trailing_metadata(
                    [("grpc-status-details-bin", _retry_info_status("slow down"))])
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")
            backend.take(body)
            return b""

        handler = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {"Export": grpc.unary_unary_rpc_method_handler(export)})
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                             options=[("grpc.max_receive_message_length", limit)])
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return backend, f"grpc://127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(grace=None)


def test_grpc_message_above_the_receive_limit_is_split(grpc_backend: Any) -> None:
    """A gRPC backend whose receive limit is 1 MiB answers RESOURCE_EXHAUSTED to the merged
    export; the forwarder splits it and every span arrives."""
    backend, url = grpc_backend(1 * MiB)
    forwarder = Forwarder(url)
    drain(forwarder, [make_request(60, 10_000, prefix=f"g{n}.") for n in range(5)])
    assert backend.span_names == [f"g{n}.{i}" for n in range(5) for i in range(60)]
    assert max(backend.accepted_sizes) <= 1 * MiB
    stats = forwarder.stats()
    assert stats["forward_splits"] >= 1
    assert stats["forwarded_spans"] == 300
    assert stats["forward_failed"] == stats["forward_too_large"] == 0


def test_grpc_resource_exhausted_with_retry_info_is_retried_whole(grpc_backend: Any) -> None:
    """RESOURCE_EXHAUSTED with RetryInfo (a receiver asking to slow down) is retried as one
    export, not split."""
    backend, url = grpc_backend(4 * MiB, busy=1)
    forwarder = Forwarder(url)
    for request in (make_request(10, 100, prefix="a"), make_request(10, 100, prefix="b")):
        assert forwarder.submit(request)
    forwarder.start()
    try:
        # Waited for before stopping: a stopping forwarder does not retry.
        wait_for(lambda: forwarder.stats()["forwarded_spans"] == 20, timeout=20)
    finally:
        forwarder.stop(timeout=30)
    assert backend.span_names == [f"{p}{i}" for p in "ab" for i in range(10)]
    assert len(backend.accepted_sizes) == 1
    stats = forwarder.stats()
    assert stats["forward_splits"] == 0
    assert stats["forward_requests"] == 1
    assert stats["forwarded_spans"] == 20

