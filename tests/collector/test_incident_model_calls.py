"""The model calls of an incident's conversation are on its timeline: chat calls, embeddings
calls and image generation calls (``gen_ai.operation.name`` ``embeddings`` and
``generate_content``, as the Bedrock integration reports such models), in the JSON, the terminal
output and the HTML page.

A real collector receives the agent's spans as real OTLP on loopback."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

from agentguard import semconv
from agentguard.cli import main
from agentguard.collector.daemon import Collector
from agentguard.collector.otlp import to_any_value
from agentguard.collector.store import Store
from tests.collector.test_receiver import post

MS = 1_000_000
CONVERSATION = "conv-embeddings"
EMBED_MODEL = "amazon.titan-embed-text-v2:0"
CHAT_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
IMAGE_MODEL = "amazon.nova-canvas-v1:0"


def _span(trace_id: bytes, name: str, operation: str, start: int, *, parent: bytes = b"",
          attributes: dict[str, object] | None = None,
          events: list[trace_pb2.Span.Event] | None = None) -> trace_pb2.Span:
    values = {semconv.GEN_AI_OPERATION_NAME: operation,
              semconv.GEN_AI_CONVERSATION_ID: CONVERSATION, **(attributes or {})}
    return trace_pb2.Span(
        trace_id=trace_id, span_id=os.urandom(8), parent_span_id=parent, name=name,
        start_time_unix_nano=start, end_time_unix_nano=start + 5 * MS,
        attributes=[KeyValue(key=k, value=to_any_value(v)) for k, v in values.items()],
        events=events or [])


def _finding(ts: int) -> trace_pb2.Span.Event:
    attributes = {"agentguard.finding.rule_id": "AG001", "agentguard.finding.severity": "high",
                  "agentguard.finding.title": "tool fetched an injected instruction",
                  "agentguard.finding.category": "injection",
                  "agentguard.finding.evidence": json.dumps({"text": "ignore previous"})}
    return trace_pb2.Span.Event(
        name=semconv.EVENT_FINDING, time_unix_nano=ts,
        attributes=[KeyValue(key=k, value=to_any_value(v)) for k, v in attributes.items()])


def test_embeddings_calls_are_on_the_incident_timeline_like_chat_calls(
        ebpf_collector: Collector, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An agent's turn embeds the user's question with a Bedrock embedding model, calls a chat
    model and a tool that raises a finding: the incident's timeline shows the embeddings call
    (with its model) between the turn and the chat call, in ``incidents show --json``, in the
    terminal and in the HTML report."""
    collector = ebpf_collector
    trace_id, now = os.urandom(16), time.time_ns()
    root = _span(trace_id, "invoke_agent support", semconv.OP_INVOKE_AGENT, now,
                 attributes={semconv.AG_TURN_TEXT: "what does our refund policy say?",
                             semconv.AG_TURN_INDEX: 1})
    spans = [
        root,
        _span(trace_id, f"embeddings {EMBED_MODEL}", semconv.OP_EMBEDDINGS, now + 10 * MS,
              parent=root.span_id, attributes={semconv.GEN_AI_REQUEST_MODEL: EMBED_MODEL,
                                               semconv.GEN_AI_PROVIDER_NAME: "aws.bedrock"}),
        _span(trace_id, f"chat {CHAT_MODEL}", semconv.OP_CHAT, now + 20 * MS,
              parent=root.span_id, attributes={semconv.GEN_AI_REQUEST_MODEL: CHAT_MODEL}),
        _span(trace_id, "execute_tool fetch", semconv.OP_EXECUTE_TOOL, now + 30 * MS,
              parent=root.span_id, attributes={semconv.GEN_AI_TOOL_NAME: "fetch"},
              events=[_finding(now + 32 * MS)]),
        _span(trace_id, f"generate_content {IMAGE_MODEL}", semconv.OP_GENERATE_CONTENT,
              now + 40 * MS, parent=root.span_id,
              attributes={semconv.GEN_AI_REQUEST_MODEL: IMAGE_MODEL}),
    ]
    body = trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource=Resource(attributes=[KeyValue(key="service.name",
                                               value=to_any_value("embedding-agent"))]),
        scope_spans=[trace_pb2.ScopeSpans(spans=spans)])]).SerializeToString()
    assert post(collector, body)[0] == 200
    assert collector.sync()
    db = collector.settings.db
    store = Store(db, readonly=True)
    try:
        [incident] = [row["id"] for row in store.incidents()
                      if row["conversation_id"] == CONVERSATION]
    finally:
        store.close()

    assert main(["incidents", "show", incident, "--db", db, "--json"]) == 0
    timeline = json.loads(capsys.readouterr().out)["timeline"]
    assert [(entry["kind"], entry["title"]) for entry in timeline
            if entry["kind"] != "finding"][:5] == [
        ("turn", "turn 1: what does our refund policy say?"),
        ("model", f"embeddings {EMBED_MODEL}"),
        ("model", f"chat {CHAT_MODEL}"),
        ("tool", "tool fetch()"),
        ("model", f"generate_content {IMAGE_MODEL}")]
    assert timeline[1]["detail"] == {"operation": "embeddings", "model": EMBED_MODEL}
    assert timeline[2]["detail"] == {"operation": "chat", "model": CHAT_MODEL}

    assert main(["incidents", "show", incident, "--db", db]) == 0
    assert f"embeddings {EMBED_MODEL}" in capsys.readouterr().out
    page = tmp_path / "story.html"
    assert main(["incidents", "report", incident, "--db", db, "-o", str(page)]) == 0
    assert f"<td>embeddings {EMBED_MODEL}</td>" in page.read_text(encoding="utf-8")
