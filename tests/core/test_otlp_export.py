"""Spans of a real LangChain agent reach a real OTLP receiver over gRPC and HTTP/protobuf."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool

import agentguard
from agentguard.demo.scripted import ScriptedChatModel, call, say
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

PROTOCOLS = ["grpc", "http/protobuf"]
ANSWER = "It is sunny in Paris."


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@tool
def echo(n: int) -> str:
    """Echo a number back."""
    return f"echo {n}"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as started:
        yield started


@contextlib.contextmanager
def _dead_endpoint(kind: str) -> Iterator[str]:
    """An OTLP endpoint on 127.0.0.1 that never accepts an export.

    ``refused``: a closed port, so every connection is refused at once. ``silent``: a socket that
    listens but never answers, so every export runs into its timeout.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        if kind == "silent":
            sock.listen(64)
            yield f"http://127.0.0.1:{port}"
            return
    yield f"http://127.0.0.1:{port}"


def _run_weather_agent(conversation: str = "c-1") -> str:
    model = ScriptedChatModel(script=[say("", call("get_weather", city="Paris")), say(ANSWER)])
    agent = create_agent(model, [get_weather], name="weather")
    with agentguard.conversation(conversation):
        out = agent.invoke({"messages": [HumanMessage("What is the weather in Paris?")]})
    return str(out["messages"][-1].content)


def _agent_spans(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [s for s in spans if s.attributes.get("gen_ai.operation.name")]


def _has_full_turn(spans: list[ReceivedSpan]) -> bool:
    ops = [s.attributes.get("gen_ai.operation.name") for s in spans]
    return "invoke_agent" in ops and ops.count("chat") >= 2 and "execute_tool" in ops


def _assert_weather_turn(spans: list[ReceivedSpan], *, transport: str, service_name: str) -> None:
    by_op: dict[str, list[ReceivedSpan]] = {}
    for span in _agent_spans(spans):
        by_op.setdefault(span.attributes["gen_ai.operation.name"], []).append(span)
    assert sorted(by_op) == ["chat", "execute_tool", "invoke_agent"], [s.name for s in spans]
    (root,) = by_op["invoke_agent"]
    (tool_span,) = by_op["execute_tool"]
    chats = by_op["chat"]
    assert len(chats) == 2
    assert root.parent_span_id is None
    assert root.name.startswith("invoke_agent")
    assert tool_span.name == "execute_tool get_weather"
    for span in [*chats, tool_span]:
        assert span.parent_span_id == root.span_id, span.name
    for span in [root, *chats, tool_span]:
        assert span.trace_id == root.trace_id
        assert span.transport == transport
        assert span.resource["service.name"] == service_name
        assert span.resource["process.pid"] == os.getpid()
        assert span.attributes["gen_ai.conversation.id"] == "c-1"
        assert span.status_code != "ERROR"
    assert tool_span.attributes["gen_ai.tool.name"] == "get_weather"
    assert json.loads(tool_span.attributes["gen_ai.tool.call.arguments"]) == {"city": "Paris"}
    # Nothing was sent twice.
    assert len({s.span_id for s in spans}) == len(spans)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_keyword_configured_otlp_export(receiver: OtlpReceiver, protocol: str) -> None:
    """With exporter/otlp_protocol/otlp_endpoint keywords, the agent's spans reach the receiver."""
    agentguard.instrument(
        service_name="kw-agent",
        exporter="otlp",
        otlp_protocol=protocol,
        otlp_endpoint=receiver.endpoint(protocol),
    )
    assert _run_weather_agent() == ANSWER
    agentguard.uninstrument()
    spans = receiver.wait_for(_has_full_turn, timeout=10)
    _assert_weather_turn(spans, transport=protocol, service_name="kw-agent")


def test_http_endpoint_with_traces_path(receiver: OtlpReceiver) -> None:
    """An HTTP otlp_endpoint that already names /v1/traces is used as given."""
    agentguard.instrument(
        service_name="kw-agent",
        exporter="otlp",
        otlp_protocol="http/protobuf",
        otlp_endpoint=receiver.http_endpoint + "/v1/traces",
    )
    assert _run_weather_agent() == ANSWER
    agentguard.uninstrument()
    spans = receiver.wait_for(_has_full_turn, timeout=10)
    _assert_weather_turn(spans, transport="http/protobuf", service_name="kw-agent")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_env_configured_otlp_export(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_PROTOCOL alone route the spans."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint(protocol))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    agentguard.instrument(service_name="env-agent")
    assert _run_weather_agent() == ANSWER
    agentguard.uninstrument()
    spans = receiver.wait_for(_has_full_turn, timeout=10)
    _assert_weather_turn(spans, transport=protocol, service_name="env-agent")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OTEL_SERVICE_NAME": "otel-named"}, "otel-named"),
        (
            {"OTEL_SERVICE_NAME": "otel-named", "AGENTGUARD_SERVICE_NAME": "guard-named"},
            "guard-named",
        ),
    ],
)
def test_service_name_from_environment(
    receiver: OtlpReceiver,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    expected: str,
) -> None:
    """OTEL_SERVICE_NAME names the exported service, and AGENTGUARD_SERVICE_NAME wins over it."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    agentguard.instrument(
        exporter="otlp", otlp_protocol="http/protobuf", otlp_endpoint=receiver.http_endpoint
    )
    assert _run_weather_agent() == ANSWER
    agentguard.uninstrument()
    spans = receiver.wait_for(_has_full_turn, timeout=10)
    assert {s.resource["service.name"] for s in spans} == {expected}


@pytest.mark.parametrize("kind", ["refused", "silent"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unreachable_endpoint_never_breaks_the_agent(
    monkeypatch: pytest.MonkeyPatch, protocol: str, kind: str
) -> None:
    """A dead OTLP endpoint leaves the answer intact, counts spans failed, shuts down fast."""
    monkeypatch.setenv("AGENTGUARD_EXPORT_TIMEOUT", "0.5")
    with _dead_endpoint(kind) as endpoint:
        agentguard.instrument(
            service_name="offline-agent",
            exporter="otlp",
            otlp_protocol=protocol,
            otlp_endpoint=endpoint,
        )
        assert _run_weather_agent() == ANSWER
        assert agentguard.flush(timeout=10)
        stats = agentguard.stats()
        assert stats["spans_queued"] >= 4
        assert stats["spans_failed"] == stats["spans_queued"]
        assert stats["spans_exported"] == 0
        assert stats["spans_dropped"] == 0
        assert stats["queue_length"] == 0
        started = time.monotonic()
        agentguard.uninstrument()
        assert time.monotonic() - started < 5
    assert agentguard.get_guard() is None


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_uninstrument_does_not_wait_out_retries_to_a_dead_backend(protocol: str) -> None:
    """With the default 10 s export timeout, uninstrument() during an export that keeps being
    refused returns in about a second instead of waiting for the exporter's retries."""
    with _dead_endpoint("refused") as endpoint:
        agentguard.instrument(exporter="otlp", otlp_protocol=protocol, otlp_endpoint=endpoint)
        assert _run_weather_agent() == ANSWER
        agentguard.flush(timeout=1.5)  # the export is now retrying with back-off
        started = time.monotonic()
        agentguard.uninstrument()
        assert time.monotonic() - started < 2.5
    stats = agentguard.stats()
    assert stats["spans_exported"] == 0 and stats["spans_failed"] == stats["spans_queued"]


@pytest.mark.parametrize("kind", ["silent"])
def test_tiny_queue_drops_spans_but_not_tool_results(
    monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """With a 16-span queue and a dead endpoint, spans are dropped yet every tool call answers."""
    calls = 80
    monkeypatch.setenv("AGENTGUARD_EXPORT_TIMEOUT", "0.5")
    monkeypatch.setenv("AGENTGUARD_MAX_QUEUE_SIZE", "16")
    with _dead_endpoint(kind) as endpoint:
        agentguard.instrument(
            service_name="offline-agent",
            exporter="otlp",
            otlp_protocol="grpc",
            otlp_endpoint=endpoint,
        )
        model = ScriptedChatModel(
            script=[say("", *(call("echo", n=i) for i in range(calls))), say("all echoed")]
        )
        agent = create_agent(model, [echo], name="echoer")
        with agentguard.conversation("c-queue"):
            out = agent.invoke({"messages": [HumanMessage("echo everything")]})
        assert out["messages"][-1].content == "all echoed"
        results = [m.content for m in out["messages"] if isinstance(m, ToolMessage)]
        assert sorted(results) == sorted(f"echo {i}" for i in range(calls))
        assert agentguard.flush(timeout=10)
        stats = agentguard.stats()
        assert stats["spans_dropped"] > 0
        assert stats["spans_queued"] + stats["spans_dropped"] >= calls
        assert stats["spans_exported"] == 0
        assert stats["spans_failed"] == stats["spans_queued"]
        started = time.monotonic()
        agentguard.uninstrument()
        assert time.monotonic() - started < 5


_APP_SCRIPT = """
import json

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

provider = TracerProvider(resource=Resource.create({"service.name": "shop-frontend"}))
# The application's own exporter reads OTEL_EXPORTER_OTLP_ENDPOINT.
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)

import agentguard
from langchain.agents import create_agent
from langchain_core.tools import tool
from agentguard.demo.scripted import ScriptedChatModel, call, say


@tool
def get_weather(city: str) -> str:
    \"\"\"The weather in a city.\"\"\"
    return f"sunny in {city}"


agentguard.instrument()
model = ScriptedChatModel(script=[say("", call("get_weather", city="Paris")), say("Sunny.")])
agent = create_agent(model, [get_weather], name="weather")
app_tracer = trace.get_tracer("shop")
with app_tracer.start_as_current_span("handle-request"):
    with agentguard.conversation("c-1"):
        out = agent.invoke({"messages": [("user", "weather?")]})
stats = agentguard.stats()
agentguard.uninstrument()
with app_tracer.start_as_current_span("after-uninstrument"):
    pass
provider.shutdown()
print(json.dumps({"answer": out["messages"][-1].content,
                  "span_stats": sorted(k for k in stats if k.startswith("spans_"))}))
"""


@pytest.mark.parametrize(
    "extra_env",
    [
        pytest.param({}, id="app-only"),
        pytest.param({"OTEL_TRACES_EXPORTER": "otlp"}, id="with-OTEL_TRACES_EXPORTER"),
    ],
)
def test_application_tracer_provider_is_honoured(
    receiver: OtlpReceiver, tmp_path: Path, extra_env: dict[str, str]
) -> None:
    """When the app set a global SDK TracerProvider, agentguard's spans go to the app's exporter."""
    script = tmp_path / "app.py"
    script.write_text(_APP_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AGENTGUARD_"))}
    env.update(extra_env, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.http_endpoint)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["answer"] == "Sunny."
    spans = receiver.wait_for(
        lambda got: _has_full_turn(got) and any(s.name == "after-uninstrument" for s in got),
        timeout=10,
    )
    assert len({s.span_id for s in spans}) == len(spans), "a span was exported twice"
    # agentguard built no export pipeline of its own.
    assert report["span_stats"] == []
    assert {s.resource["service.name"] for s in spans} == {"shop-frontend"}
    assert {s.transport for s in spans} == {"http/protobuf"}
    (request,) = [s for s in spans if s.name == "handle-request"]
    (root,) = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "invoke_agent"]
    assert root.parent_span_id == request.span_id
    assert root.trace_id == request.trace_id
    agent_spans = _agent_spans(spans)
    assert {s.scope for s in agent_spans} == {"agentguard"}
    for span in agent_spans:
        assert span.attributes["gen_ai.conversation.id"] == "c-1"
        if span is not root:
            assert span.parent_span_id == root.span_id


def test_bad_otlp_protocol_keyword_is_a_clear_config_error() -> None:
    """A wrong otlp_protocol keyword raises ConfigError naming the setting and valid values."""
    with pytest.raises(agentguard.ConfigError) as raised:
        agentguard.instrument(exporter="otlp", otlp_protocol="http")
    message = str(raised.value)
    assert "otlp_protocol" in message
    assert "argument otlp_protocol=" in message
    assert "'grpc'" in message and "'http/protobuf'" in message
    assert "'http'" in message
    assert agentguard.get_guard() is None


def test_bad_otlp_protocol_env_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unsupported OTEL_EXPORTER_OTLP_PROTOCOL raises ConfigError naming that variable."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(agentguard.ConfigError) as raised:
        agentguard.instrument()
    message = str(raised.value)
    assert "otlp_protocol" in message
    assert "OTEL_EXPORTER_OTLP_PROTOCOL" in message
    assert "'http/json'" in message
    assert agentguard.get_guard() is None


@pytest.mark.parametrize(("endpoint", "env", "reason"), [
    ("ftp://collector:4318", {}, "scheme must be http or https"),
    ("http://:4318/v1/traces", {}, "no host"),
    ("http://collector:99999", {}, "not a usable URL"),
    ("http://collector :4318", {}, "whitespace"),
    (None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "grpc://collector:4317"}, "scheme must be"),
])
def test_an_http_endpoint_that_cannot_work_is_refused_at_instrument(
        endpoint: str | None, env: dict[str, str], reason: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An HTTP endpoint no request could reach is a ConfigError at instrument(), not a log line
    at the first export with every span lost."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(agentguard.ConfigError) as raised:
        agentguard.instrument(exporter="otlp", otlp_endpoint=endpoint)
    assert reason in str(raised.value)
    assert "otlp_endpoint" in str(raised.value)
    assert agentguard.get_guard() is None
