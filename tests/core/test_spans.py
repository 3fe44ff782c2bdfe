"""agentguard's own spans: full Span API, SDK limits and sampling, parents among other spans."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, StatusCode, TraceFlags

import agentguard
from agentguard._spans import LightSpan


def test_the_application_can_use_the_current_tool_span_like_any_span(guarded: Any,
                                                                       spans: Any) -> None:
    """Inside a tool, trace.get_current_span() is agentguard's span and takes attributes, events,
    status and exceptions as the SDK's would."""
    guard = guarded()
    op = guard.start_tool("lookup", call_id="c1", arguments={"id": 1})
    token = op.activate()
    try:
        current = trace.get_current_span()
        assert current.is_recording()
        current.set_attribute("app.customer_tier", "gold")
        current.set_attributes({"app.rows": 3, "app.flags": ["a", "b"]})
        current.add_event("cache.miss", {"key": "customer:1"})
        current.record_exception(ValueError("bad row"))
        current.set_status(StatusCode.OK)
        current.set_status(StatusCode.ERROR, "ignored: OK is final")
        current.update_name("execute_tool lookup_v2")
    finally:
        op.deactivate(token)
    op.end_tool({"id": 1})
    span = spans.one("execute_tool lookup_v2")
    assert span.attributes["app.customer_tier"] == "gold"
    assert span.attributes["app.flags"] == ("a", "b")
    assert [e.name for e in span.events] == ["cache.miss", "exception"]
    assert span.events[1].attributes["exception.type"] == "ValueError"
    assert "bad row" in span.events[1].attributes["exception.stacktrace"]
    assert span.status.status_code is StatusCode.OK
    assert span.resource.attributes["service.name"] == "test-agent"
    assert span.instrumentation_scope.name == "agentguard"


def test_invalid_attribute_values_are_cleaned_as_the_sdk_cleans_them(guarded: Any,
                                                                     spans: Any) -> None:
    """A value OpenTelemetry cannot carry (an arbitrary object) is cleaned exactly as an SDK span
    cleans it, and the span is still exported."""
    odd = object()
    sdk_exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(sdk_exporter))
    with provider.get_tracer("sdk").start_as_current_span("sdk") as sdk_span:
        sdk_span.set_attribute("app.object", odd)
    guard = guarded()
    op = guard.start_tool("lookup")
    op.span.set_attribute("app.object", odd)
    op.span.set_attribute("app.ok", 1)
    op.end()
    span = spans.one("execute_tool lookup")
    assert span.attributes.get("app.object") == \
        sdk_exporter.get_finished_spans()[0].attributes.get("app.object")
    assert span.attributes["app.ok"] == 1


def test_sdk_attribute_limits_apply(guarded: Any, spans: Any,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT and OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT bound exported spans."""
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "5")
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "8")
    guard = guarded(capture_content="full")
    op = guard.start_tool("lookup")
    for i in range(10):
        op.span.set_attribute(f"app.{i}", "x" * 20)
    op.end()
    span = spans.one("execute_tool lookup")
    assert len(span.attributes) == 5
    assert span.dropped_attributes > 0
    assert all(len(v) <= 8 for v in span.attributes.values() if isinstance(v, str))


def test_an_unsampled_parent_means_no_agentguard_spans(guarded: Any, spans: Any) -> None:
    """Under a parent the application decided not to sample, agentguard records nothing."""
    guard = guarded()
    parent = NonRecordingSpan(SpanContext(0xABC, 0xDEF, True, TraceFlags(TraceFlags.DEFAULT)))
    with trace.use_span(parent):
        op = guard.start_tool("lookup")
        assert not op.span.is_recording()
        assert op.span.get_span_context().trace_id == 0xABC
        op.end()
    assert spans.all() == []


def test_a_remote_sampled_parent_is_continued(guarded: Any, spans: Any) -> None:
    """A sampled parent from an incoming request (traceparent) becomes the tool span's parent."""
    guard = guarded()
    parent = NonRecordingSpan(SpanContext(0xABC, 0xDEF, True, TraceFlags(TraceFlags.SAMPLED)))
    with trace.use_span(parent):
        guard.start_tool("lookup").end()
    span = spans.one("execute_tool lookup")
    assert span.context.trace_id == 0xABC
    assert span.parent is not None and span.parent.span_id == 0xDEF


def test_a_child_span_context_is_the_one_the_api_would_build(guarded: Any, spans: Any) -> None:
    """A light child span's context (built without the API's checks) equals a ``SpanContext``
    made through the API: same trace, its own valid span id, sampled, the parent's trace state."""
    from opentelemetry.trace import TraceState

    guard = guarded()
    state = TraceState([("vendor", "x1")])
    parent = NonRecordingSpan(SpanContext(0xABC, 0xDEF, True, TraceFlags(TraceFlags.SAMPLED),
                                          state))
    with trace.use_span(parent):
        op = guard.start_tool("lookup")
    context = op.span.get_span_context()
    op.end()
    assert context == SpanContext(0xABC, context.span_id, False, TraceFlags(TraceFlags.SAMPLED),
                                  state)
    assert context.is_valid and 0 < context.span_id < 2**64
    assert spans.one("execute_tool lookup").context.trace_state == state


def test_a_configured_sampler_uses_the_sdk_pipeline(guarded: Any, spans: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_TRACES_SAMPLER=always_off is honoured: nothing is exported."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    guard = guarded()
    op = guard.start_tool("lookup")
    assert not isinstance(op.span, LightSpan)
    op.end()
    assert spans.all() == []


def test_spans_nest_under_agentguards_own_when_another_span_interleaves(
        guarded: Any, spans: Any) -> None:
    """A span another instrumentor made current inside a tool call does not adopt agentguard's
    next span: it nests under the tool span and links to the interleaved one."""
    guard = guarded()
    foreign_exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(foreign_exporter))
    foreign = provider.get_tracer("other-instrumentor")
    tool = guard.start_tool("research")
    token = tool.activate()
    try:
        with foreign.start_as_current_span("other.task") as theirs:
            chat = guard.start_chat(provider="scripted", model="m1")
            chat.end()
    finally:
        tool.deactivate(token)
    tool.end()
    tool_span = spans.one("execute_tool research")
    chat_span = spans.one("chat m1")
    assert chat_span.parent is not None and chat_span.parent.span_id == tool_span.context.span_id
    assert [link.context.span_id for link in chat_span.links] == [
        theirs.get_span_context().span_id]
    assert chat_span.links[0].attributes["agentguard.link.reason"] == "interleaved"
    assert foreign_exporter.get_finished_spans()[0].parent.span_id == tool_span.context.span_id


def test_an_application_span_around_the_agent_is_the_parent(guarded: Any, spans: Any) -> None:
    """Outside any agentguard span, the application's current span is the parent (a request)."""
    guard = guarded()
    provider = TracerProvider()
    app = provider.get_tracer("app")
    with app.start_as_current_span("POST /chat") as request:
        guard.start_agent("support", turn_text="hi").end()
    agent = spans.one("invoke_agent support")
    assert agent.parent is not None
    assert agent.parent.span_id == request.get_span_context().span_id


def test_content_is_redacted_before_export_even_when_left_to_the_export_thread(
        guarded: Any, spans: Any) -> None:
    """Arguments carrying a secret are exported redacted; the live span never holds clear text
    that could be exported."""
    guard = guarded()
    key = "AKIA" + "ABCDEFGHIJKLMNOP"
    op = guard.start_tool("upload", arguments={"aws_access_key_id": key, "bucket": "b"})
    op.end_tool("ok")
    exported = spans.one("execute_tool upload").attributes["gen_ai.tool.call.arguments"]
    assert key not in exported and '"bucket":"b"' in exported
    assert agentguard.stats()["spans_exported"] >= 1
