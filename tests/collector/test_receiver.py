"""The OTLP receiver: real gRPC and HTTP servers, valid and hostile input."""

from __future__ import annotations

import gzip
import http.client
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

from agentguard.collector.daemon import Collector
from agentguard.collector.store import Store
from tests.collector.helpers import wait_for

_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def export_request(*names: str, pid: int = 4242, service: str = "agent-x",
                   trace_id: bytes | None = None) -> trace_service_pb2.ExportTraceServiceRequest:
    """An OTLP request with one tool span per name."""
    trace_id = trace_id or os.urandom(16)
    spans = [
        trace_pb2.Span(
            trace_id=trace_id, span_id=os.urandom(8), name=f"execute_tool {name}",
            start_time_unix_nano=1_000, end_time_unix_nano=2_000,
            attributes=[KeyValue(key="gen_ai.operation.name",
                                 value=AnyValue(string_value="execute_tool")),
                        KeyValue(key="gen_ai.tool.name", value=AnyValue(string_value=name))])
        for name in names
    ]
    resource = Resource(attributes=[
        KeyValue(key="service.name", value=AnyValue(string_value=service)),
        KeyValue(key="process.pid", value=AnyValue(int_value=pid))])
    return trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource=resource, scope_spans=[trace_pb2.ScopeSpans(spans=spans)])])


def post(collector: Collector, body: bytes, headers: dict[str, str] | None = None,
         path: str = "/v1/traces") -> tuple[int, bytes, dict[str, str]]:
    host, port = collector.endpoints()["otlp_http"].rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", path, body, {"Content-Type": "application/x-protobuf",
                                                **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        connection.close()


def grpc_export(collector: Collector, body: bytes, metadata: Any = None) -> bytes:
    with grpc.insecure_channel(collector.endpoints()["otlp_grpc"]) as channel:
        call = channel.unary_unary(_EXPORT)
        response: bytes = call(body, timeout=10, metadata=metadata)
        return response


def stored_span_names(collector: Collector) -> set[str]:
    collector.sync()
    store = Store(collector.settings.db, readonly=True)
    try:
        return {s["name"] for s in store.spans()}
    finally:
        store.close()


@pytest.fixture
def collector(collector_factory: Callable[..., Collector]) -> Collector:
    return collector_factory(sensor="none", max_request_bytes=64 * 1024)


def test_valid_spans_are_accepted_on_both_transports(collector: Collector) -> None:
    """A well-formed export over gRPC and over HTTP is answered OK and stored."""
    grpc_export(collector, export_request("by_grpc").SerializeToString())
    status, body, _ = post(collector, export_request("by_http").SerializeToString())
    assert status == 200
    trace_service_pb2.ExportTraceServiceResponse.FromString(body)
    assert {"execute_tool by_grpc", "execute_tool by_http"} <= stored_span_names(collector)


def test_gzip_http_body_is_accepted(collector: Collector) -> None:
    """A gzip-compressed OTLP/HTTP body is inflated and stored."""
    body = gzip.compress(export_request("zipped").SerializeToString())
    status, _, _ = post(collector, body, {"Content-Encoding": "gzip"})
    assert status == 200
    assert "execute_tool zipped" in stored_span_names(collector)


def test_garbage_gets_invalid_argument_and_the_collector_carries_on(collector: Collector) -> None:
    """Bytes that are not an OTLP request get INVALID_ARGUMENT / 400, then valid data still works."""
    garbage = b"\xff\xfe\x00 not protobuf \x0a\x99\x99\x99"
    with pytest.raises(grpc.RpcError) as caught:
        grpc_export(collector, garbage)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status, body, headers = post(collector, garbage)
    assert status == 400
    assert headers["Content-Type"] == "application/x-protobuf"
    error = status_pb2.Status.FromString(body)
    assert error.code == code_pb2.INVALID_ARGUMENT and "ExportTraceServiceRequest" in error.message
    status, _, _ = post(collector, export_request("after_garbage").SerializeToString())
    assert status == 200
    assert "execute_tool after_garbage" in stored_span_names(collector)
    assert collector.receiver.counters["malformed"] == 2


def test_oversized_requests_are_refused(collector: Collector) -> None:
    """Requests over the size limit get RESOURCE_EXHAUSTED / 413, compressed or not."""
    big = export_request(*(f"tool_{i}_{'x' * 200}" for i in range(600))).SerializeToString()
    assert len(big) > 64 * 1024
    with pytest.raises(grpc.RpcError) as caught:
        grpc_export(collector, big)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status, _, headers = post(collector, big)
    assert status == 413 and headers.get("Connection") == "close"
    bomb = gzip.compress(b"\x00" * (8 * 1024 * 1024))
    status, body, _ = post(collector, bomb, {"Content-Encoding": "gzip"})
    assert status == 413
    assert status_pb2.Status.FromString(body).code == code_pb2.RESOURCE_EXHAUSTED


def test_wrong_path_content_type_and_length_are_refused(collector: Collector) -> None:
    """Wrong path → 404, JSON → 415, bad gzip → 400; nothing of it is stored."""
    body = export_request("never").SerializeToString()
    assert post(collector, body, path="/v1/logs")[0] == 404
    assert post(collector, body, {"Content-Type": "application/json"})[0] == 415
    assert post(collector, b"not gzip", {"Content-Encoding": "gzip"})[0] == 400
    assert "execute_tool never" not in stored_span_names(collector)


def test_spans_without_valid_ids_are_reported_as_partial_success(collector: Collector) -> None:
    """Spans with malformed ids are dropped and the sender is told how many, per OTLP."""
    request = export_request("good")
    request.resource_spans[0].scope_spans[0].spans.append(trace_pb2.Span(trace_id=b"\x01",
                                                                         span_id=b"", name="bad"))
    status, body, _ = post(collector, request.SerializeToString())
    assert status == 200
    response = trace_service_pb2.ExportTraceServiceResponse.FromString(body)
    assert response.partial_success.rejected_spans == 1
    assert stored_span_names(collector) == {"execute_tool good"}


def test_bearer_token_is_required_when_configured(
        collector_factory: Callable[..., Collector]) -> None:
    """With a token set, requests without it get UNAUTHENTICATED / 401; with it they pass."""
    collector = collector_factory(sensor="none", token="s3cret")
    body = export_request("authed").SerializeToString()
    with pytest.raises(grpc.RpcError) as caught:
        grpc_export(collector, body)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert post(collector, body, {"Authorization": "Bearer wrong"})[0] == 401
    assert post(collector, body, {"Authorization": "Bearer s3cret"})[0] == 200
    assert post(collector, body, {"Authorization": "Basic s3cret"})[0] == 401
    assert post(collector, body, {"Authorization": "s3cret"})[0] == 401
    # The scheme is case-insensitive, as senders spell it either way.
    assert post(collector, body, {"Authorization": "bearer s3cret"})[0] == 200
    grpc_export(collector, body, metadata=[("authorization", "BEARER s3cret")])
    grpc_export(collector, body, metadata=[("authorization", "Bearer s3cret")])
    assert "execute_tool authed" in stored_span_names(collector)


def test_health_endpoint(collector: Collector) -> None:
    """``GET /healthz`` answers 200 while the collector runs."""
    host, port = collector.endpoints()["otlp_http"].rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    connection.request("GET", "/healthz")
    assert connection.getresponse().status == 200
    connection.close()


def test_library_findings_on_spans_are_stored_and_make_an_incident(collector: Collector) -> None:
    """A finding the library put on a span becomes a stored finding and an incident."""
    request = export_request("fetch")
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.attributes.append(KeyValue(key="gen_ai.conversation.id",
                                    value=AnyValue(string_value="conv-lib")))
    span.events.append(trace_pb2.Span.Event(
        time_unix_nano=1_500, name="agentguard.finding",
        attributes=[KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in {
            "agentguard.finding.rule_id": "AG001", "agentguard.finding.severity": "high",
            "agentguard.finding.title": "shell from a tool", "agentguard.finding.action": "block",
            "agentguard.finding.category": "policy",
            "agentguard.finding.evidence": '{"argv": ["sh"]}'}.items()]))
    body = request.SerializeToString()
    assert post(collector, body)[0] == 200
    assert post(collector, body)[0] == 200  # a retried export is not a second finding
    wait_for(lambda: collector.sync() and collector.snapshot()["library_findings"] == 1)
    store = Store(collector.settings.db, readonly=True)
    try:
        (finding,) = store.findings()
        (incident,) = store.incidents()
    finally:
        store.close()
    assert (finding.rule_id, finding.source, finding.action) == ("AG001", "library", "block")
    assert finding.evidence == {"argv": ["sh"]}
    assert incident["conversation_id"] == "conv-lib" and incident["severity"] == "high"


def test_a_busy_port_fails_the_start_with_a_clear_error(tmp_path: Path) -> None:
    """Listening on a port another process holds is refused at start, naming the address."""
    import socket

    from agentguard.collector.receiver import ReceiverError
    from agentguard.collector.settings import load_settings

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    address = f"127.0.0.1:{holder.getsockname()[1]}"
    try:
        collector = Collector(load_settings({"db": str(tmp_path / "c.db"), "otlp_grpc": "off",
                                             "otlp_http": address, "sensor": "none",
                                             "discover": False}, environ={}))
        with pytest.raises(ReceiverError, match=f"OTLP/HTTP cannot listen on {address}"):
            collector.start()
        collector.stop()
    finally:
        holder.close()
