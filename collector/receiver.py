"""The OTLP trace receiver: gRPC and HTTP/protobuf, with size limits and an optional bearer token.

A malformed, oversized or unauthenticated request gets the error OTLP prescribes (gRPC status,
or an HTTP status with a ``google.rpc.Status`` body) and the collector carries on. Accepted
requests are handed to ``submit``, which never blocks; when the collector is saturated the sender
is told to retry (``UNAVAILABLE`` / HTTP 503), as the OTLP specification asks.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import socket
import threading
import zlib
from collections.abc import Callable
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from agentguard.collector.otlp import ExportRequest, decode_request
from agentguard.collector.settings import parse_hostport

__all__ = ["Receiver", "ReceiverError"]

logger = logging.getLogger("agentguard.collector")

Submit = Callable[[ExportRequest, "str | None"], bool]
_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
_MAX_HTTP_CONNECTIONS = 64
_HTTP_TIMEOUT = 10.0


class ReceiverError(RuntimeError):
    """A listener could not be started (address in use, bad address)."""


def _invalid_spans(request: ExportRequest) -> int:
    bad = 0
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    bad += 1
    return bad


def _response(request: ExportRequest) -> bytes:
    response = trace_service_pb2.ExportTraceServiceResponse()
    bad = _invalid_spans(request)
    if bad:
        response.partial_success.rejected_spans = bad
        response.partial_success.error_message = \
            f"{bad} span(s) without a 16-byte trace id and 8-byte span id were dropped"
    body: bytes = response.SerializeToString()
    return body


class Receiver:
    """Both OTLP listeners; :attr:`counters` tell what was accepted and refused, and why."""

    def __init__(
        self,
        submit: Submit,
        *,
        grpc_address: str | None = "127.0.0.1:4317",
        http_address: str | None = "127.0.0.1:4318",
        token: str | None = None,
        max_request_bytes: int = 4 * 1024 * 1024,
        health: Callable[[], bool] | None = None,
    ) -> None:
        self.submit = submit
        self.grpc_address = grpc_address
        self.http_address = http_address
        self.token = token
        self.max_request_bytes = max_request_bytes
        self.health = health or (lambda: True)
        self.grpc_port = 0
        self.http_port = 0
        self._grpc: Any = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.counters = {
            "requests": 0, "accepted": 0, "malformed": 0, "too_large": 0, "unauthenticated": 0,
            "busy": 0, "unsupported": 0,
        }

    def count(self, name: str) -> None:
        with self._lock:
            self.counters[name] += 1

    def authorized(self, header: str | None) -> bool:
        if not self.token:
            return True
        expected = f"Bearer {self.token}".encode()
        return header is not None and hmac.compare_digest(header.strip().encode(), expected)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self.grpc_address:
            self._start_grpc(self.grpc_address)
        if self.http_address:
            self._start_http(self.http_address)

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=1.0).wait(5)
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(5)
            self._http_thread = None

    # -- gRPC ------------------------------------------------------------------------------

    def _start_grpc(self, address: str) -> None:
        import grpc

        receiver = self

        def export(body: bytes, context: Any) -> bytes:
            receiver.count("requests")
            metadata = dict(context.invocation_metadata())
            if not receiver.authorized(metadata.get("authorization")):
                receiver.count("unauthenticated")
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
            try:
                request = decode_request(body)
            except ValueError as exc:
                receiver.count("malformed")
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            if not receiver.submit(request, _grpc_peer(context.peer())):
                receiver.count("busy")
                context.abort(grpc.StatusCode.UNAVAILABLE, "collector busy; retry later")
            receiver.count("accepted")
            return _response(request)

        handler = grpc.method_handlers_generic_handler(
            _SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(export)})
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="agentguard-otlp-grpc"),
            handlers=[handler],
            options=[("grpc.max_receive_message_length", self.max_request_bytes),
                     ("grpc.max_send_message_length", 1024 * 1024),
                     ("grpc.so_reuseport", 0)],
            maximum_concurrent_rpcs=64,
        )
        host, port = parse_hostport(address)
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            bound = server.add_insecure_port(target)
        except RuntimeError as exc:
            raise ReceiverError(f"OTLP/gRPC cannot listen on {address}: {exc}") from None
        if bound == 0:
            raise ReceiverError(f"OTLP/gRPC cannot listen on {address} (address in use?)")
        server.start()
        self._grpc = server
        self.grpc_port = bound

    # -- HTTP ------------------------------------------------------------------------------

    def _start_http(self, address: str) -> None:
        host, port = parse_hostport(address)
        handler = _http_handler(self)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
            slots = threading.BoundedSemaphore(_MAX_HTTP_CONNECTIONS)

            def process_request(self, request: Any, client_address: Any) -> None:
                # Bounded concurrency: beyond the limit a connection is answered 503 and closed.
                if not self.slots.acquire(blocking=False):
                    with contextlib.suppress(OSError):
                        request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                                        b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                    self.shutdown_request(request)
                    return
                super().process_request(request, client_address)

            def process_request_thread(self, request: Any, client_address: Any) -> None:
                try:
                    super().process_request_thread(request, client_address)
                finally:
                    self.slots.release()

        try:
            server = Server((host, port), handler)
        except OSError as exc:
            raise ReceiverError(f"OTLP/HTTP cannot listen on {address}: {exc.strerror}") from None
        self._http = server
        self.http_port = server.server_address[1]
        self._http_thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                             name="agentguard-otlp-http", daemon=True)
        self._http_thread.start()


def _grpc_peer(peer: str | None) -> str | None:
    """The address in a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``)."""
    if not peer or not peer.startswith(("ipv4:", "ipv6:")):
        return None
    address = peer.split(":", 1)[1].rsplit(":", 1)[0]
    return address.strip("[]")


def _status_body(code: int, message: str) -> bytes:
    body: bytes = status_pb2.Status(code=code, message=message).SerializeToString()
    return body


def _http_handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = _HTTP_TIMEOUT
        server_version = "agentguard-collector"
        sys_version = ""

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] in ("/healthz", "/health"):
                ok = receiver.health()
                self._reply(200 if ok else 503, b"ok\n" if ok else b"unhealthy\n", "text/plain")
                return
            self._reply(404, b"not found\n", "text/plain")

        def do_POST(self) -> None:
            receiver.count("requests")
            if self.path.split("?", 1)[0] != "/v1/traces":
                receiver.count("unsupported")
                self._error(404, code_pb2.NOT_FOUND, "only /v1/traces is served", close=True)
                return
            if not receiver.authorized(self.headers.get("Authorization")):
                receiver.count("unauthenticated")
                self._error(401, code_pb2.UNAUTHENTICATED, "missing or wrong bearer token",
                            close=True)
                return
            length_text = self.headers.get("Content-Length")
            if length_text is None or not length_text.strip().isdigit():
                receiver.count("malformed")
                self._error(411, code_pb2.INVALID_ARGUMENT, "Content-Length is required",
                            close=True)
                return
            length = int(length_text)
            if length > receiver.max_request_bytes:
                receiver.count("too_large")
                # The body is not read; the connection is closed so it cannot be misparsed.
                self._error(413, code_pb2.RESOURCE_EXHAUSTED,
                            f"request of {length} bytes exceeds {receiver.max_request_bytes}",
                            close=True)
                return
            body = self.rfile.read(length)
            content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
            if content_type != "application/x-protobuf":
                receiver.count("unsupported")
                self._error(415, code_pb2.INVALID_ARGUMENT,
                            f"unsupported Content-Type {content_type!r}; send application/x-protobuf")
                return
            encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
            if encoding in ("gzip", "deflate"):
                inflater = zlib.decompressobj(31 if encoding == "gzip" else 15)
                try:
                    body = inflater.decompress(body, receiver.max_request_bytes + 1)
                except zlib.error:
                    receiver.count("malformed")
                    self._error(400, code_pb2.INVALID_ARGUMENT, f"body is not valid {encoding}")
                    return
                if len(body) > receiver.max_request_bytes or inflater.unconsumed_tail:
                    receiver.count("too_large")
                    self._error(413, code_pb2.RESOURCE_EXHAUSTED,
                                f"decompressed body exceeds {receiver.max_request_bytes} bytes")
                    return
            elif encoding not in ("", "identity"):
                receiver.count("unsupported")
                self._error(415, code_pb2.INVALID_ARGUMENT, f"unsupported Content-Encoding {encoding!r}")
                return
            try:
                request = decode_request(body)
            except ValueError as exc:
                receiver.count("malformed")
                self._error(400, code_pb2.INVALID_ARGUMENT, str(exc))
                return
            if not receiver.submit(request, str(self.client_address[0])):
                receiver.count("busy")
                self._error(503, code_pb2.UNAVAILABLE, "collector busy; retry later",
                            headers={"Retry-After": "1"})
                return
            receiver.count("accepted")
            self._reply(200, _response(request), "application/x-protobuf")

        def _error(self, status: int, code: int, message: str, *, close: bool = False,
                   headers: dict[str, str] | None = None) -> None:
            self._reply(status, _status_body(code, message), "application/x-protobuf",
                        close=close, headers=headers)

        def _reply(self, status: int, body: bytes, content_type: str, *, close: bool = False,
                   headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                if close:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler
