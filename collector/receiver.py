"""The OTLP trace receiver: gRPC and HTTP/protobuf, with size limits and an optional bearer token.

A malformed, oversized or unauthenticated request gets the error OTLP prescribes (gRPC status,
or an HTTP status with a ``google.rpc.Status`` body) and the collector carries on. Accepted
requests are handed to ``submit``, which never blocks; when the collector is saturated the sender
is told to retry (``UNAVAILABLE`` / HTTP 503), as the OTLP specification asks.

HTTP is served by a thread per connection, so connections are bounded: 64 in all, 16 from one
non-loopback address. A request must arrive whole (request line, headers and body) within
``request_timeout`` of its first byte, whatever the pace of its bytes, and a kept-alive connection
waits ``idle_timeout`` for its next request; a sender that is too slow gets 408 and is closed.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import ipaddress
import logging
import re
import socket
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from agentguard.collector.otlp import ExportRequest, decode_request, invalid_ids
from agentguard.collector.peers import Connection
from agentguard.collector.settings import parse_hostport

__all__ = ["Receiver", "ReceiverError"]

logger = logging.getLogger("agentguard.collector")

# (request, the connection it came on (or only the sender's address; None: unknown), size of
# its body after inflation) → accepted?
Submit = Callable[[ExportRequest, "Connection | str | None", int], bool]
_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
_MAX_HTTP_CONNECTIONS = 64
# One remote address may hold this many; loopback senders are not told apart by address.
_MAX_CONNECTIONS_PER_PEER = 16
_REQUEST_TIMEOUT = 10.0
_IDLE_TIMEOUT = 10.0
# HTTP bodies inflated and parsed at once, and how long one waits for its turn before 503.
_MAX_DECODING = 4
_DECODE_WAIT = 2.0
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n"
         b"Connection: close\r\n\r\n")
_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
# After answering with "Connection: close" a request whose body was not read whole (413, a
# broken chunked body), what the sender still sends is read and dropped, for this long and this
# much at most, before the connection closes: closing with unread input resets the connection,
# and the reset can destroy the answer before the sender reads it (a lingering close).
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 8 << 20


class ReceiverError(RuntimeError):
    """A listener could not be started (address in use, bad address)."""


class _Refused(Exception):
    """An HTTP request refused: the status, ``google.rpc`` code and counter that go with it, and
    whether the connection must close (its body was not read whole, or its framing is unclear)."""

    def __init__(self, status: int, code: int, message: str, counter: str, *,
                 close: bool = False) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.counter = status, code, message, counter
        self.close = close


class _DeadlineExpired(TimeoutError):
    """A request did not arrive whole within the request deadline."""


def _invalid_spans(request: ExportRequest) -> int:
    return sum(1 for resource_spans in request.resource_spans
               for scope_spans in resource_spans.scope_spans
               for span in scope_spans.spans if invalid_ids(span))


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` decompressed, at most ``limit`` bytes: every member of a gzip body (RFC 1952 allows
    several, and ``gzip -d`` reads them all), the one stream of a deflate body.

    Raises :class:`_Refused`: 400 for a stream cut short or followed by other bytes (taking what
    inflated so far would store part of a request and answer OK), 413 past ``limit``.
    """
    parts: list[bytes] = []
    size = 0
    rest = body
    while True:
        inflater = zlib.decompressobj(31 if encoding == "gzip" else 15)
        try:
            # Bounded output: a small body cannot inflate past the limit in memory.
            part = inflater.decompress(rest, limit + 1 - size)
        except zlib.error:
            raise _Refused(400, code_pb2.INVALID_ARGUMENT, f"body is not valid {encoding}",
                           "malformed") from None
        size += len(part)
        parts.append(part)
        if size > limit:
            raise _Refused(413, code_pb2.RESOURCE_EXHAUSTED,
                           f"decompressed body exceeds {limit} bytes", "too_large")
        if not inflater.eof:
            raise _Refused(400, code_pb2.INVALID_ARGUMENT,
                           f"{encoding} body is cut short (its stream does not end)", "malformed")
        rest = inflater.unused_data
        if not rest:
            return parts[0] if len(parts) == 1 else b"".join(parts)
        if encoding != "gzip":
            raise _Refused(400, code_pb2.INVALID_ARGUMENT,
                           f"{len(rest)} byte(s) after the end of the deflate stream", "malformed")


_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
# A chunk-size line (with any chunk extensions) and a trailer line, and the trailer lines read.
_MAX_CHUNK_LINE = 1024
_MAX_TRAILER_LINE = 8192
_MAX_TRAILERS = 64


def _malformed(message: str) -> _Refused:
    return _Refused(400, code_pb2.INVALID_ARGUMENT, message, "malformed", close=True)


def _read_chunked(rfile: Any, limit: int) -> bytes:
    """A ``Transfer-Encoding: chunked`` body (RFC 9112 section 7.1), at most ``limit`` bytes of
    data; trailer fields are read and ignored. Raises :class:`_Refused` (the connection closes):
    400 for a body cut short or not in chunks, 413 past ``limit``."""
    # One buffer: a list of parts would cost an object per chunk, and chunks may be one byte.
    body = bytearray()
    while True:
        line = rfile.readline(_MAX_CHUNK_LINE + 1)
        if not line.endswith(b"\n"):
            raise _malformed("chunked body is cut short or a chunk-size line is too long")
        size_text = line.split(b";", 1)[0].strip()
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise _malformed(f"chunk size {size_text[:32].decode('latin-1')!r} is not a "
                             f"hexadecimal number")
        chunk = int(size_text, 16)
        if chunk == 0:
            break
        if len(body) + chunk > limit:
            raise _Refused(413, code_pb2.RESOURCE_EXHAUSTED,
                           f"chunked body exceeds {limit} bytes", "too_large", close=True)
        data = rfile.read(chunk)
        if len(data) != chunk or rfile.readline(3) not in (b"\r\n", b"\n"):
            raise _malformed("chunked body is cut short or a chunk is longer than its size")
        body += data
    for _ in range(_MAX_TRAILERS):
        line = rfile.readline(_MAX_TRAILER_LINE + 1)
        if line in (b"\r\n", b"\n"):
            return bytes(body)
        if not line.endswith(b"\n"):
            raise _malformed("chunked body is cut short or a trailer line is too long")
    raise _malformed(f"more than {_MAX_TRAILERS} trailer lines")


def _is_loopback(address: str) -> bool:
    """Whether ``address`` is loopback (also as an IPv4-mapped IPv6 address)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


class _DeadlineReader(io.RawIOBase):
    """A connection's socket, read against the deadline of the request that is arriving.

    Between requests a read waits up to ``idle_timeout``. The first bytes of a request set its
    deadline ``request_timeout`` later, and every further read waits only until then: a timeout
    per read alone lets a sender hold a connection for ever with a byte every few seconds.
    """

    def __init__(self, sock: socket.socket, receiver: Receiver) -> None:
        super().__init__()
        self._sock = sock
        self._receiver = receiver
        self.deadline: float | None = None
        self.expired = False

    def readable(self) -> bool:
        return True

    def next_request(self) -> None:
        self.deadline = None
        self.expired = False

    def readinto(self, buffer: Any) -> int:
        if self.deadline is None:
            wait = self._receiver.idle_timeout
        else:
            wait = self.deadline - time.monotonic()
            if wait <= 0:
                self.expired = True
                raise _DeadlineExpired("request deadline passed")
        self._sock.settimeout(wait)
        try:
            received = self._sock.recv_into(buffer)
        except TimeoutError:
            if self.deadline is None:
                raise
            self.expired = True
            raise _DeadlineExpired("request deadline passed") from None
        if received and self.deadline is None:
            self.deadline = time.monotonic() + self._receiver.request_timeout
        return received


def _response(request: ExportRequest) -> bytes:
    response = trace_service_pb2.ExportTraceServiceResponse()
    bad = _invalid_spans(request)
    if bad:
        response.partial_success.rejected_spans = bad
        response.partial_success.error_message = \
            f"{bad} span(s) without a valid trace id (16 bytes, not all zero) and span id " \
            f"(8 bytes, not all zero) were dropped"
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
        request_timeout: float = _REQUEST_TIMEOUT,
        idle_timeout: float = _IDLE_TIMEOUT,
        max_connections: int = _MAX_HTTP_CONNECTIONS,
        max_connections_per_peer: int = _MAX_CONNECTIONS_PER_PEER,
    ) -> None:
        self.submit = submit
        self.grpc_address = grpc_address
        self.http_address = http_address
        self.token = token
        self.max_request_bytes = max_request_bytes
        self.health = health or (lambda: True)
        # HTTP: read each request whole within request_timeout of its first byte; wait at most
        # idle_timeout for the next one on a kept-alive connection. Read per request, so they
        # may be changed while serving.
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_connections_per_peer = max_connections_per_peer
        # Open HTTP connections by sender address.
        self.connections: dict[str, int] = {}
        self._decoding = threading.BoundedSemaphore(_MAX_DECODING)
        self._open_connections = 0
        self.grpc_port = 0
        self.http_port = 0
        self._grpc: Any = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.counters = {
            "requests": 0, "accepted": 0, "malformed": 0, "too_large": 0, "unauthenticated": 0,
            "busy": 0, "unsupported": 0, "timed_out": 0, "connections_refused": 0,
        }

    def count(self, name: str) -> None:
        with self._lock:
            self.counters[name] += 1

    def take_body(self, body: bytes, encoding: str, peer: Connection | str | None) -> bytes:
        """Inflate, parse and hand over one HTTP body; the OTLP response, or :class:`_Refused`.

        Only four bodies are inflated and parsed at a time: a parsed request takes two
        to four times its wire size, and requests parsed beside the queue are outside its byte
        budget (the core thread stores one request at a time anyway).
        """
        if not self._decoding.acquire(timeout=_DECODE_WAIT):
            raise _Refused(503, code_pb2.UNAVAILABLE, "collector busy; retry later", "busy")
        try:
            if encoding in ("gzip", "deflate"):
                body = _inflate(body, encoding, self.max_request_bytes)
            try:
                request = decode_request(body)
            except ValueError as exc:
                raise _Refused(400, code_pb2.INVALID_ARGUMENT, str(exc), "malformed") from None
            if not self.submit(request, peer, len(body)):
                raise _Refused(503, code_pb2.UNAVAILABLE, "collector busy; retry later", "busy")
            return _response(request)
        finally:
            self._decoding.release()

    def open_connection(self, peer: str) -> bool:
        """Take an HTTP connection slot for ``peer``; ``False`` (counted) when none is left."""
        with self._lock:
            held = self.connections.get(peer, 0)
            if self._open_connections >= self.max_connections or \
                    (held >= self.max_connections_per_peer and not _is_loopback(peer)):
                self.counters["connections_refused"] += 1
                return False
            self._open_connections += 1
            self.connections[peer] = held + 1
            return True

    def close_connection(self, peer: str) -> None:
        """Give back the slot :meth:`open_connection` took for ``peer``."""
        with self._lock:
            self._open_connections -= 1
            held = self.connections.get(peer, 0) - 1
            if held > 0:
                self.connections[peer] = held
            else:
                self.connections.pop(peer, None)

    def authorized(self, header: str | None) -> bool:
        if not self.token:
            return True
        if header is None:
            return False
        # The scheme is case-insensitive (RFC 9110 section 11.1): "bearer x" is "Bearer x".
        scheme, _, credentials = header.strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode("utf-8", "surrogateescape"), self.token.encode())

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
            if not receiver.submit(request, _grpc_connection(context.peer(), local_address,
                                                             receiver.grpc_port), len(body)):
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
        # gRPC tells a call's sender, not which of our addresses it reached: known only when the
        # listener is on one address.
        local_address = None if _is_wildcard(host) else host
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

        receiver = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
            # The listen backlog: socketserver's 5 makes a burst of connecting senders wait
            # for SYN retransmissions (a second each).
            request_queue_size = 128

            def process_request(self, request: Any, client_address: Any) -> None:
                # A thread per connection, so connections are bounded, in all and per sender:
                # beyond, a connection is answered 503 and closed without being read.
                peer = str(client_address[0])
                if not receiver.open_connection(peer):
                    with contextlib.suppress(OSError):
                        request.sendall(_BUSY)
                    self.shutdown_request(request)
                    return
                try:
                    super().process_request(request, client_address)
                except BaseException:
                    receiver.close_connection(peer)
                    raise

            def process_request_thread(self, request: Any, client_address: Any) -> None:
                try:
                    super().process_request_thread(request, client_address)
                finally:
                    receiver.close_connection(str(client_address[0]))

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A sender that resets its connection is not worth a traceback on stderr.
                logger.debug("agentguard collector: OTLP/HTTP connection from %s failed",
                             client_address[0], exc_info=True)

        try:
            server = Server((host, port), handler)
        except OSError as exc:
            raise ReceiverError(f"OTLP/HTTP cannot listen on {address}: {exc.strerror}") from None
        self._http = server
        self.http_port = server.server_address[1]
        self._http_thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                             name="agentguard-otlp-http", daemon=True)
        self._http_thread.start()


def _linger(connection: socket.socket) -> None:
    """Half-close ``connection`` after its last answer and drop what the sender still sends (at
    most ``_LINGER_BYTES``, for ``_LINGER_SECONDS``), so that closing it does not reset it."""
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + _LINGER_SECONDS
        drained = 0
        while drained < _LINGER_BYTES:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            connection.settimeout(left)
            chunk = connection.recv(65536)
            if not chunk:
                break
            drained += len(chunk)


def _grpc_connection(peer: str | None, local_address: str | None,
                     local_port: int) -> Connection | str | None:
    """The connection of a gRPC call from its peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``,
    the brackets percent-encoded by some releases), else the sender's address alone."""
    if not peer or not peer.startswith(("ipv4:", "ipv6:")):
        return None
    address, _, port = urllib.parse.unquote(peer.split(":", 1)[1]).rpartition(":")
    address = address.strip("[]")
    connection = Connection.of(address, int(port), local_address, local_port) \
        if port.isdigit() else None
    return connection or address or None


def _is_wildcard(host: str) -> bool:
    """Whether a listener on ``host`` listens on every address (or on a name, not an address)."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return True


def _http_connection(client_address: Any, connection: socket.socket) -> Connection | str:
    """The connection an HTTP request came on, else the sender's address alone."""
    address = str(client_address[0])
    try:
        local = connection.getsockname()
        return Connection.of(address, int(client_address[1]), str(local[0]),
                             int(local[1])) or address
    except (OSError, IndexError, TypeError, ValueError):
        return address


def _status_body(code: int, message: str) -> bytes:
    body: bytes = status_pb2.Status(code=code, message=message).SerializeToString()
    return body


def _http_handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "agentguard-collector"
        sys_version = ""
        reader: _DeadlineReader
        answered = False

        def setup(self) -> None:
            super().setup()
            self.rfile.close()
            self.reader = _DeadlineReader(self.connection, receiver)
            self.rfile = io.BufferedReader(self.reader)

        def finish(self) -> None:
            super().finish()
            if self.close_connection and self.answered:
                _linger(self.connection)

        def handle_one_request(self) -> None:
            self.reader.next_request()
            self.answered = False
            super().handle_one_request()
            if self.reader.expired and not self.answered:
                # The request line or headers did not arrive in time (the base class gives up on
                # a timeout without a word); a slow body is answered in do_POST.
                receiver.count("requests")
                receiver.count("timed_out")
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.settimeout(receiver.request_timeout)
                    self.connection.sendall(_TIMED_OUT)

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
            try:
                body = self._read_body()
            except _DeadlineExpired:
                receiver.count("timed_out")
                self._error(408, code_pb2.DEADLINE_EXCEEDED,
                            f"request not received whole within {receiver.request_timeout:g}s",
                            close=True)
                return
            except _Refused as refused:
                receiver.count(refused.counter)
                self._error(refused.status, refused.code, refused.message, close=refused.close)
                return
            content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
            if content_type != "application/x-protobuf":
                receiver.count("unsupported")
                self._error(415, code_pb2.INVALID_ARGUMENT,
                            f"unsupported Content-Type {content_type!r}; send application/x-protobuf")
                return
            encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
            if encoding not in ("", "identity", "gzip", "deflate"):
                receiver.count("unsupported")
                self._error(415, code_pb2.INVALID_ARGUMENT, f"unsupported Content-Encoding {encoding!r}")
                return
            try:
                answer = receiver.take_body(body, encoding,
                                            _http_connection(self.client_address, self.connection))
            except _Refused as refused:
                receiver.count(refused.counter)
                self._error(refused.status, refused.code, refused.message,
                            headers={"Retry-After": "1"} if refused.status == 503 else None)
                return
            receiver.count("accepted")
            self._reply(200, answer, "application/x-protobuf")

        def _read_body(self) -> bytes:
            """The request's body as its framing says (``Content-Length``, or chunks), at most
            ``max_request_bytes``; :class:`_Refused` when the framing is missing, unclear or
            broken, or the body is over the limit or cut short."""
            headers = self.headers
            transfer = headers.get_all("Transfer-Encoding") or []
            lengths = headers.get_all("Content-Length") or []
            if transfer:
                # Both headers: a sender and a proxy could each read the body differently (RFC
                # 9112 section 6.1), so the request is refused and the connection closed.
                if lengths:
                    raise _malformed("both Transfer-Encoding and Content-Length are set")
                codings = [c.strip().lower() for value in transfer for c in value.split(",")]
                if codings != ["chunked"]:
                    raise _Refused(501, code_pb2.UNIMPLEMENTED,
                                   f"unsupported Transfer-Encoding {', '.join(codings)!r}; "
                                   f"send chunked or a Content-Length", "unsupported", close=True)
                return _read_chunked(self.rfile, receiver.max_request_bytes)
            if not lengths:
                raise _Refused(411, code_pb2.INVALID_ARGUMENT,
                               "Content-Length (or Transfer-Encoding: chunked) is required",
                               "malformed", close=True)
            # One number; a list of copies of it is allowed (RFC 9112 section 6.3), ASCII digits
            # only (str.isdigit also takes superscripts, which int() refuses).
            values = {v.strip() for value in lengths for v in value.split(",")}
            if len(values) != 1:
                raise _malformed(f"Content-Length values differ: {', '.join(sorted(values))[:64]}")
            length_text = values.pop()
            if not (length_text.isascii() and length_text.isdigit()):
                raise _malformed(f"Content-Length {length_text[:32]!r} is not a byte count")
            length = int(length_text)
            if length > receiver.max_request_bytes:
                # The body is not read; the connection is closed so it cannot be misparsed.
                raise _Refused(413, code_pb2.RESOURCE_EXHAUSTED,
                               f"request of {length} bytes exceeds {receiver.max_request_bytes}",
                               "too_large", close=True)
            body: bytes = self.rfile.read(length)
            if len(body) != length:
                # The sender stopped short: what came may parse, but it is not what was sent.
                raise _malformed(f"body ended after {len(body)} of {length} bytes")
            return body

        def _error(self, status: int, code: int, message: str, *, close: bool = False,
                   headers: dict[str, str] | None = None) -> None:
            self._reply(status, _status_body(code, message), "application/x-protobuf",
                        close=close, headers=headers)

        def _reply(self, status: int, body: bytes, content_type: str, *, close: bool = False,
                   headers: dict[str, str] | None = None) -> None:
            self.answered = True
            try:
                # Replies are small; the deadline of the request may have little time left.
                self.connection.settimeout(receiver.request_timeout)
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
