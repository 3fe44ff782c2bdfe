"""OTLP trace data in and out: agent spans decoded for correlation, kernel events encoded for export."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

from agentguard import semconv
from agentguard._errors import internal_error
from agentguard._text import faithful
from agentguard.collector import _names as names
from agentguard.collector.model import CONNECT, DNS, EXEC, EXIT, FORK, OPEN, SENT, KernelEvent, SpanInfo
from agentguard.semconv import int_value

__all__ = [
    "MAX_ATTRIBUTE_CHARS",
    "REJECT_INVALID_ID",
    "REJECT_UNREADABLE",
    "ExportRequest",
    "decode_request",
    "event_attributes",
    "invalid_ids",
    "kernel_event_span",
    "resource_pid",
    "span_infos",
    "to_any_value",
    "value_of",
]

ExportRequest = trace_service_pb2.ExportTraceServiceRequest

# Attribute values kept per span for the store and incidents (content is already redacted and
# capped by the library; this bounds what a hostile sender can make the collector keep).
MAX_ATTRIBUTE_CHARS = 16384
MAX_ATTRIBUTES = 128
MAX_SPAN_EVENTS = 256
MAX_CHILD_PIDS = 1024
# Linux never issues a pid above PID_MAX_LIMIT (2**22); the store keeps signed 64-bit integers.
_MAX_PID = 1 << 22
_MAX_TIME_NS = 2**63 - 1
_STATUS_NAMES = {0: "UNSET", 1: "OK", 2: "ERROR"}
_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)
# Why span_infos left a span out (the keys of its ``rejected`` counts).
REJECT_INVALID_ID = "invalid_id"
REJECT_UNREADABLE = "unreadable"


def decode_request(body: bytes) -> trace_service_pb2.ExportTraceServiceRequest:
    """Parse an OTLP export request; ``ValueError`` when it is not one."""
    request = trace_service_pb2.ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except Exception as exc:
        raise ValueError(f"not an OTLP ExportTraceServiceRequest: {type(exc).__name__}") from None
    return request


def value_of(value: AnyValue, depth: int = 0) -> Any:
    """An OTLP value as a plain Python value (bounded nesting)."""
    which = value.WhichOneof("value")
    if which is None or depth > 4:
        return None
    if which == "array_value":
        return [value_of(item, depth + 1) for item in value.array_value.values[:MAX_CHILD_PIDS]]
    if which == "kvlist_value":
        return {kv.key: value_of(kv.value, depth + 1) for kv in value.kvlist_value.values[:64]}
    if which == "bytes_value":
        return value.bytes_value.hex()[:MAX_ATTRIBUTE_CHARS]
    result = getattr(value, which)
    if isinstance(result, str) and len(result) > MAX_ATTRIBUTE_CHARS:
        return result[:MAX_ATTRIBUTE_CHARS]
    return result


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key[:256]: value_of(kv.value) for kv in pairs[:MAX_ATTRIBUTES]}


def to_any_value(value: Any) -> AnyValue:
    """A Python value as an OTLP value (lists of one scalar type, else JSON text)."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=faithful(value))
    if isinstance(value, (list, tuple)):
        array = AnyValue()
        for item in value:
            array.array_value.values.append(to_any_value(item))
        return array
    return AnyValue(string_value=json.dumps(value, default=str, sort_keys=True))




def _pid(value: Any) -> int | None:
    """A process or thread id as a sender reported it; ``None`` when no kernel could issue it."""
    number = int_value(value)
    return number if number is not None and 0 < number <= _MAX_PID else None


def _time_ns(value: int) -> int:
    """An OTLP timestamp (unsigned 64 bits) held to what the store's signed 64 bits can keep."""
    return min(int(value), _MAX_TIME_NS)


def _child_pids(attributes: Mapping[str, Any],
                events: list[tuple[str, int, dict[str, Any]]]) -> frozenset[int]:
    pids: set[int] = set()
    raw = attributes.get(names.AG_CHILD_PIDS)
    if isinstance(raw, (list, tuple)):
        pids.update(p for p in (_pid(item) for item in raw[:MAX_CHILD_PIDS]) if p)
    for name, _, attrs in events:
        if name in names.LIBRARY_EXEC_EVENTS:
            pid = _pid(attrs.get(semconv.PROCESS_PID))
            if pid:
                pids.add(pid)
    return frozenset(pids)


def invalid_ids(span: trace_pb2.Span) -> bool:
    """Whether a span lacks a valid identity: a 16-byte trace id and an 8-byte span id, neither
    all zeros (invalid in W3C trace context and OTLP)."""
    return len(span.trace_id) != 16 or len(span.span_id) != 8 or \
        span.trace_id == _ZERO_TRACE_ID or span.span_id == _ZERO_SPAN_ID


def resource_pid(resource_spans: trace_pb2.ResourceSpans) -> int | None:
    """The pid a resource reports (``process.pid``), as :func:`span_infos` reads it (the last
    of repeated keys)."""
    found = None
    for kv in resource_spans.resource.attributes[:MAX_ATTRIBUTES]:
        if kv.key[:256] == semconv.PROCESS_PID:
            found = kv.value
    return None if found is None else _pid(value_of(found))


def span_infos(request: trace_service_pb2.ExportTraceServiceRequest,
               rejected: dict[str, int] | None = None) -> Iterator[SpanInfo]:
    """Every span of a request with the fields correlation and incidents use.

    Values the store could not keep (times past 2**63, integers of any length in JSON text) are
    held or left out here. A span without valid ids, or one that cannot be read at all (an
    internal error), is left out and counted in ``rejected`` by cause
    (:data:`REJECT_INVALID_ID`, :data:`REJECT_UNREADABLE`), so one hostile span never costs the
    others of its request and none goes missing unseen.
    """
    counts = rejected if rejected is not None else {}
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        pid = _pid(resource.get(semconv.PROCESS_PID))
        service = _str(resource.get(semconv.SERVICE_NAME))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if invalid_ids(span):
                    counts[REJECT_INVALID_ID] = counts.get(REJECT_INVALID_ID, 0) + 1
                    continue
                try:
                    info = _span_info(span, pid, service)
                except Exception as exc:
                    internal_error("collector span decode", exc)
                    counts[REJECT_UNREADABLE] = counts.get(REJECT_UNREADABLE, 0) + 1
                    continue
                yield info


def _span_info(span: trace_pb2.Span, pid: int | None, service: str | None) -> SpanInfo:
    """One span's fields, each bounded and of a type the store keeps."""
    attributes = _attributes(span.attributes)
    events = [(event.name[:256], _time_ns(event.time_unix_nano), _attributes(event.attributes))
              for event in span.events[:MAX_SPAN_EVENTS]]
    start_ns = _time_ns(span.start_time_unix_nano)
    return SpanInfo(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex() or None,
        name=span.name[:256],
        operation=_str(attributes.get(semconv.GEN_AI_OPERATION_NAME)),
        start_ns=start_ns,
        end_ns=_time_ns(span.end_time_unix_nano) or start_ns,
        pid=pid,
        tid=_pid(attributes.get(semconv.AG_THREAD_NATIVE_ID)),
        service=service,
        tool=_str(attributes.get(semconv.GEN_AI_TOOL_NAME)),
        tool_call_id=_str(attributes.get(semconv.GEN_AI_TOOL_CALL_ID)),
        conversation_id=_str(attributes.get(semconv.GEN_AI_CONVERSATION_ID)),
        turn=int_value(attributes.get(semconv.AG_TURN_INDEX)),
        child_pids=_child_pids(attributes, events),
        events=tuple(events),
        attributes=attributes,
        status=_STATUS_NAMES.get(span.status.code, "UNSET"),
    )


def _str(value: Any) -> str | None:
    return value[:512] if isinstance(value, str) else None


def event_attributes(event: KernelEvent) -> dict[str, Any]:
    """A kernel event's details under OpenTelemetry attribute names."""
    d = event.data
    attrs: dict[str, Any] = {
        semconv.PROCESS_PID: event.pid,
        names.AG_ATTRIBUTION: event.attribution.method,
        names.AG_SENSOR: event.source,
    }
    if event.tid:
        attrs["thread.id"] = event.tid
    if event.seen_by_library is not None:
        attrs[names.AG_KERNEL_ONLY] = not event.seen_by_library
    if event.kind == EXEC:
        attrs[names.PROCESS_EXECUTABLE_PATH] = str(d.get("exe", ""))
        attrs[names.PROCESS_COMMAND_ARGS] = [str(a) for a in d.get("argv", [])][:64]
        if d.get("ppid") is not None:
            attrs[names.PROCESS_PARENT_PID] = int(d["ppid"])
    elif event.kind == FORK:
        attrs["process.child_pid"] = int(d.get("child_pid", 0))
    elif event.kind == EXIT:
        if d.get("exit_code") is not None:
            attrs[names.PROCESS_EXIT_CODE] = int(d["exit_code"])
    elif event.kind == CONNECT:
        attrs[names.NETWORK_PEER_ADDRESS] = str(d.get("address", ""))
        attrs[names.NETWORK_PEER_PORT] = int(d.get("port") or 0)
        attrs[names.NETWORK_TYPE] = str(d.get("family", ""))
        if d.get("result") is not None:
            attrs[names.AG_CONNECT_RESULT] = str(d.get("result_name") or d.get("result"))
    elif event.kind == DNS:
        attrs[names.DNS_QUESTION_NAME] = str(d.get("query") or "")
    elif event.kind == OPEN:
        attrs[names.FILE_PATH] = str(d.get("path", ""))
        attrs[names.AG_OPEN_WRITE] = bool(d.get("write"))
    elif event.kind == SENT:
        attrs[names.AG_BYTES_SENT] = int(d.get("bytes", 0))
    return attrs


def _key_values(attributes: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=key, value=to_any_value(value)) for key, value in attributes.items()]


def span_event(event: KernelEvent) -> trace_pb2.Span.Event:
    """A kernel event as an OTLP span event for the tool span it belongs to."""
    return trace_pb2.Span.Event(
        time_unix_nano=event.ts_ns, name=names.KERNEL_EVENT_PREFIX + event.kind,
        attributes=_key_values(event_attributes(event)),
    )


def kernel_event_span(event: KernelEvent, service: str | None) -> trace_pb2.ResourceSpans:
    """A kernel event that arrived after its span was forwarded, as a child span of that span."""
    attribution = event.attribution
    assert attribution.trace_id is not None and attribution.span_id is not None
    span = trace_pb2.Span(
        trace_id=bytes.fromhex(attribution.trace_id),
        span_id=os.urandom(8),
        parent_span_id=bytes.fromhex(attribution.span_id),
        name=faithful(f"{names.KERNEL_EVENT_PREFIX}{event.kind} {event.summary()[:80]}"),
        kind=trace_pb2.Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=event.ts_ns,
        end_time_unix_nano=event.ts_ns,
        attributes=_key_values(event_attributes(event)),
    )
    resource = Resource(attributes=_key_values({
        semconv.SERVICE_NAME: service or "unknown_service",
    }))
    return trace_pb2.ResourceSpans(
        resource=resource,
        scope_spans=[trace_pb2.ScopeSpans(
            scope=InstrumentationScope(name="agentguard.collector"), spans=[span])],
    )
