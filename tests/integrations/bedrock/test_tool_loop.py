"""A hand-written Converse tool loop with ``@agentguard.tool``: spans, call ids, blocking, AWS calls."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

import agentguard
from agentguard import Decision, ToolCallBlocked
from tests.bedrock_server import Reply, tool_use

MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
TOOL_CONFIG = {"tools": [
    {"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}},
    {"toolSpec": {"name": "save_report", "inputSchema": {"json": {"type": "object"}}}},
    {"toolSpec": {"name": "wipe_bucket", "inputSchema": {"json": {"type": "object"}}}},
]}


def converse_loop(client: Any, tools: dict[str, Callable[..., Any]], question: str,
                  max_turns: int = 5, history: list[dict[str, Any]] | None = None
                  ) -> tuple[str, list[dict[str, Any]]]:
    """The loop an application writes around Converse: run requested tools, send results back.
    ``history``: the messages of the conversation so far (the question continues it)."""
    messages: list[dict[str, Any]] = [*(history or []),
                                      {"role": "user", "content": [{"text": question}]}]
    for _ in range(max_turns):
        response = client.converse(modelId=MODEL, messages=messages, toolConfig=TOOL_CONFIG)
        message = response["output"]["message"]
        messages.append(message)
        if response["stopReason"] != "tool_use":
            return "".join(block.get("text", "") for block in message["content"]), messages
        results = []
        for block in message["content"]:
            if "toolUse" not in block:
                continue
            use = block["toolUse"]
            try:
                output, status = tools[use["name"]](**use["input"]), "success"
            except ToolCallBlocked as blocked:
                output, status = f"blocked: {blocked.finding.title}", "error"
            results.append({"toolResult": {"toolUseId": use["toolUseId"], "status": status,
                                           "content": [{"text": str(output)}]}})
        messages.append({"role": "user", "content": results})
    raise AssertionError("the loop did not finish")


@pytest.fixture
def bucket(aws: Any) -> Any:
    s3 = aws("s3")
    name = "reports-tool-loop"
    s3.create_bucket(Bucket=name)
    yield name
    for item in s3.list_objects_v2(Bucket=name).get("Contents", []):
        s3.delete_object(Bucket=name, Key=item["Key"])
    s3.delete_bucket(Bucket=name)


def _tools(s3: Any, bucket: str, ran: list[str]) -> dict[str, Callable[..., Any]]:
    @agentguard.tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        ran.append("get_weather")
        return f"sunny in {city}"

    @agentguard.tool(name="save_report", description="Store a report in S3.")
    def save(key: str, text: str) -> str:
        ran.append("save_report")
        s3.put_object(Bucket=bucket, Key=key, Body=text.encode())
        return f"saved {key}"

    @agentguard.tool
    def wipe_bucket(name: str) -> str:
        """Delete everything."""
        ran.append("wipe_bucket")
        return "wiped"

    return {"get_weather": get_weather, "save_report": save, "wipe_bucket": wipe_bucket}


def test_converse_tool_loop_spans_nest_and_carry_tool_use_ids(guarded: Any, spans: Any,
                                                              bedrock: Any, runtime: Any,
                                                              aws: Any, bucket: str) -> None:
    """chat → execute_tool (with the model's toolUseId) → aws.s3.PutObject under it → chat, one
    conversation; the tool results go back to the model and to the Guard."""
    seen: list[Any] = []
    guarded(policy=lambda event: seen.append(event))
    ran: list[str] = []
    tools = _tools(aws("s3"), bucket, ran)
    bedrock.push(
        Reply("Checking.", [tool_use("get_weather", {"city": "Oslo"}, "tu-w"),
                            tool_use("save_report", {"key": "oslo.txt", "text": "sunny"}, "tu-s")]),
        Reply("Saved the Oslo weather report."))
    with agentguard.conversation("ticket-7", user="ada"):
        answer, _ = converse_loop(runtime(), tools, "Weather in Oslo, then save it.")
    assert answer == "Saved the Oslo weather report."
    assert ran == ["get_weather", "save_report"]

    ordered = sorted(spans.all(), key=lambda s: s.start_time)
    assert [s.name for s in ordered] == [
        f"chat {MODEL}", "execute_tool get_weather", "execute_tool save_report",
        "aws.s3.PutObject", f"chat {MODEL}"]
    chat1, weather, save, put, chat2 = ordered
    for span in ordered:
        assert span.attributes["gen_ai.conversation.id"] == "ticket-7"
    # No agent span encloses a hand-written loop: each step is a root, the S3 call is the tool's.
    assert [s.parent for s in (chat1, weather, save, chat2)] == [None] * 4
    assert weather.attributes["gen_ai.tool.call.id"] == "tu-w"
    assert weather.attributes["gen_ai.tool.description"] == "Current weather in a city."
    assert weather.attributes["gen_ai.tool.type"] == "function"
    assert json.loads(weather.attributes["gen_ai.tool.call.arguments"]) == {"city": "Oslo"}
    assert weather.attributes["gen_ai.tool.call.result"] == "sunny in Oslo"
    assert save.attributes["gen_ai.tool.call.id"] == "tu-s"
    assert save.attributes["gen_ai.tool.description"] == "Store a report in S3."
    assert put.parent is not None and put.parent.span_id == save.context.span_id
    assert put.attributes["aws.s3.bucket"] == bucket
    assert put.attributes["aws.s3.key"] == "oslo.txt"

    # The model got the tool results, and the Guard saw them as tool messages of the next call.
    sent = bedrock.requests[1].json()["messages"][-1]["content"]
    assert [block["toolResult"]["toolUseId"] for block in sent] == ["tu-w", "tu-s"]
    request = [e for e in seen if e.kind == "model_call" and e.phase == "request"][-1]
    assert [(m.role, m.tool_call_id, m.content) for m in request.messages if m.role == "tool"] == [
        ("tool", "tu-w", "sunny in Oslo"), ("tool", "tu-s", "saved oslo.txt")]

    cloud = next(e for e in seen if e.kind == "cloud_call")
    assert (cloud.service, cloud.operation, cloud.resource) == (
        "s3", "PutObject", {"bucket": bucket, "key": "oslo.txt"})
    assert cloud.context.tool == "save_report"
    assert cloud.context.tool_call_id == "tu-s"
    assert cloud.context.conversation_id == "ticket-7"
    assert "Body" not in cloud.parameters
    assert agentguard._tool.pending_tool_calls() == 0


def test_a_loop_continued_in_a_later_conversation_block_stays_in_its_turn(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """A web app serving a tool loop one request at a time (a ``conversation()`` block per
    request) keeps the loop in the conversation's turn: the continuation, which sends tool
    results and no new user message, is still turn 1; the next question is turn 2."""
    guarded()
    client = runtime()
    bedrock.push(Reply(tool_uses=[tool_use("get_weather", {"city": "Oslo"}, "tu-1")]),
                 Reply("Sunny."), Reply("You are welcome."))
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"text": "Oslo weather?"}]}]
    with agentguard.conversation("web-1"):
        messages.append(client.converse(modelId=MODEL, messages=messages)["output"]["message"])
    messages.append({"role": "user", "content": [
        {"toolResult": {"toolUseId": "tu-1", "content": [{"text": "sunny"}]}}]})
    with agentguard.conversation("web-1"):
        messages.append(client.converse(modelId=MODEL, messages=messages)["output"]["message"])
    messages.append({"role": "user", "content": [{"text": "Thanks!"}]})
    with agentguard.conversation("web-1"):
        client.converse(modelId=MODEL, messages=messages)
    chats = sorted(spans.named("chat"), key=lambda s: s.start_time)
    assert [c.attributes.get("agentguard.turn.index") for c in chats] == [1, 1, 2]


def test_a_blocked_tool_never_runs_and_the_loop_recovers(guarded: Any, spans: Any, bedrock: Any,
                                                         runtime: Any, aws: Any,
                                                         bucket: str) -> None:
    """A policy block raises ToolCallBlocked before the body; the model hears about it."""
    def no_wipes(event: Any) -> Decision | None:
        if event.kind == "tool_call" and event.tool == "wipe_bucket":
            return Decision.block("destructive tool", rule_id="no-wipe")
        return None

    # Only this test's policy: the exact findings below are its own.
    guarded(mode="enforce", policy=no_wipes, builtin_rules=False)
    ran: list[str] = []
    bedrock.push(Reply("", [tool_use("wipe_bucket", {"name": bucket}, "tu-x")]),
                 Reply("I may not do that."))
    answer, messages = converse_loop(runtime(), _tools(aws("s3"), bucket, ran), "wipe it")
    assert answer == "I may not do that."
    assert ran == []
    result = messages[2]["content"][0]["toolResult"]
    assert result["status"] == "error"
    assert result["content"][0]["text"] == "blocked: destructive tool"
    span = spans.one("execute_tool wipe_bucket")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["agentguard.decision"] == "block"
    assert span.attributes["agentguard.finding.rule_ids"] == ("no-wipe",)
    assert span.attributes["gen_ai.tool.call.id"] == "tu-x"


def test_a_blocked_result_is_not_returned(guarded: Any, spans: Any) -> None:
    """A block on the result raises instead of handing the result back."""
    def no_keys(event: Any) -> Decision | None:
        if event.kind == "tool_call" and event.phase == "result" and "KEY" in str(event.result):
            return Decision.block("secret in tool output", rule_id="leak")
        return None

    guarded(mode="enforce", policy=no_keys, builtin_rules=False)

    @agentguard.tool
    def read_env(name: str) -> str:
        return f"{name}=KEY-123"

    with pytest.raises(ToolCallBlocked, match="leak"):
        read_env("TOKEN")
    assert spans.one("execute_tool read_env").attributes["agentguard.decision"] == "block"


def test_monitor_mode_alerts_and_runs_the_tool(guarded: Any, spans: Any) -> None:
    """In monitor mode a block decision becomes an alert: the body runs and returns."""
    findings: list[Any] = []
    guarded(policy=lambda e: Decision.block("nope") if e.kind == "tool_call" else None,
            on_finding=findings.append, builtin_rules=False, injection_detection=False)

    @agentguard.tool
    def ping() -> str:
        return "pong"

    assert ping() == "pong"
    assert [f.action for f in findings] == ["alert", "alert"]
    assert spans.one("execute_tool ping").attributes["agentguard.decision"] == "alert"


async def test_async_tools_get_the_same_spans(guarded: Any, spans: Any) -> None:
    """An async function decorated with @agentguard.tool is traced when awaited, args and result."""
    guarded()

    @agentguard.tool
    async def fetch(url: str, retries: int = 2) -> dict[str, Any]:
        """Fetch a URL."""
        await asyncio.sleep(0)
        return {"url": url, "status": 200}

    assert await fetch("https://example.com") == {"url": "https://example.com", "status": 200}
    span = spans.one("execute_tool fetch")
    assert json.loads(span.attributes["gen_ai.tool.call.arguments"]) == {
        "url": "https://example.com"}
    assert json.loads(span.attributes["gen_ai.tool.call.result"]) == {
        "url": "https://example.com", "status": 200}


def test_tool_errors_propagate_and_fail_the_span(guarded: Any, spans: Any) -> None:
    """An exception from the tool reaches the caller unchanged; the span records it."""
    guarded()

    @agentguard.tool
    def broken() -> None:
        raise LookupError("no such record")

    with pytest.raises(LookupError, match="no such record"):
        broken()
    span = spans.one("execute_tool broken")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "LookupError"


def test_uninstrumented_tools_are_called_straight_through(spans: Any) -> None:
    """Without instrument() the decorated function behaves exactly like the original."""
    @agentguard.tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    assert add(2, b=3) == 5
    assert add.__name__ == "add"
    assert add.__doc__ == "Add two numbers."
    assert spans.all() == []


def test_methods_and_the_decorator_forms(guarded: Any, spans: Any) -> None:
    """``@tool`` on a method leaves ``self`` out of the arguments; ``name=`` renames the span."""
    guarded()

    class Shop:
        @agentguard.tool(name="price_of")
        def price(self, item: str) -> int:
            return 3

    assert Shop().price("apple") == 3
    span = spans.one("execute_tool price_of")
    assert json.loads(span.attributes["gen_ai.tool.call.arguments"]) == {"item": "apple"}


def test_generators_are_refused_at_decoration() -> None:
    """Decorating a generator function is an error (its work happens after the call returns)."""
    with pytest.raises(TypeError, match="generator function"):
        @agentguard.tool
        def numbers() -> Any:
            yield 1


def test_tool_call_ids_match_arguments_and_the_notes_are_bounded() -> None:
    """A decorated function claims the request with its arguments; old requests drop first."""
    from agentguard._tool import _PendingCalls

    pending = _PendingCalls()
    pending.LIMIT = 3
    pending.add(None, "lookup", "id-1", {"q": "a"})
    pending.add(None, "lookup", "id-2", {"q": "b"})
    pending.add("conv", "lookup", "id-3", {"q": "a"})
    assert pending.claim(None, "lookup", {"q": "b"}) == "id-2"
    assert pending.claim(None, "lookup", {"q": "zzz"}) == "id-1"  # else the oldest one
    assert pending.claim(None, "lookup", {"q": "a"}) is None      # conversations stay apart
    for index in range(5):
        pending.add(None, "other", f"x-{index}", {})
    assert len(pending) == 3 and pending.dropped == 3
