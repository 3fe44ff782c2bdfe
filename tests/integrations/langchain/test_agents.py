"""LangChain / LangGraph agents produce correctly nested, tagged spans."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from opentelemetry.trace import StatusCode

import agentguard
from tests.genai import plain
from tests.integrations.langchain.agents import call, make_agent, say


def _ids(span: Any) -> tuple[int, int | None]:
    return span.context.span_id, span.parent.span_id if span.parent else None


def test_agent_turn_is_one_trace_with_nested_chat_and_tool_spans(guarded: Any, spans: Any) -> None:
    """One agent invocation yields invoke_agent → chat, execute_tool, chat, all in one trace."""
    guarded()
    agent = make_agent([say("", call("lookup_customer", "c1", customer_id=42)), say("Ada is gold.")])
    with agentguard.conversation("ticket-1", user="alice"):
        result = agent.invoke({"messages": [("user", "who is 42?")]})
    assert result["messages"][-1].content == "Ada is gold."

    root = spans.one("invoke_agent support")
    assert root.parent is None
    names = [s.name for s in sorted(spans.all(), key=lambda s: s.start_time)]
    assert names == ["invoke_agent support", "chat scripted-1", "execute_tool lookup_customer",
                     "chat scripted-1"]
    for span in spans.all():
        assert span.context.trace_id == root.context.trace_id
        if span is not root:
            assert span.parent.span_id == root.context.span_id
        assert span.attributes["gen_ai.conversation.id"] == "ticket-1"
        assert span.attributes["agentguard.turn.index"] == 1
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["gen_ai.agent.name"] == "support"
    assert root.attributes["agentguard.conversation.user"] == "alice"
    assert root.attributes["agentguard.turn.text"] == "who is 42?"

    tool = spans.one("execute_tool lookup_customer")
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "lookup_customer"
    assert tool.attributes["gen_ai.tool.call.id"] == "c1"
    assert tool.attributes["gen_ai.tool.call.arguments"] == '{"customer_id":42}'
    assert json.loads(tool.attributes["gen_ai.tool.call.result"]) == {
        "id": 42, "name": "Ada", "tier": "gold"}
    assert isinstance(tool.attributes["agentguard.thread.native_id"], int)

    chat = spans.named("chat")[0]
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.provider.name"] == "scripted"
    assert chat.attributes["gen_ai.request.model"] == "scripted-1"
    assert chat.attributes["gen_ai.usage.input_tokens"] == 12
    assert chat.attributes["gen_ai.usage.output_tokens"] == 7
    assert chat.attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    output = plain(chat.attributes["gen_ai.output.messages"])
    assert output[0]["tool_calls"] == [
        {"id": "c1", "name": "lookup_customer", "arguments": {"customer_id": 42}}]
    assert plain(chat.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "content": "who is 42?"}]


async def test_async_agent_nests_spans_like_sync(guarded: Any, spans: Any) -> None:
    """``ainvoke`` produces the same span tree, including async tools."""
    guarded()
    agent = make_agent([say("", call("async_weather", city="Oslo")), say("Rain.")])
    result = await agent.ainvoke({"messages": [("user", "weather?")]})
    assert result["messages"][-1].content == "Rain."
    root = spans.one("invoke_agent support")
    tool = spans.one("execute_tool async_weather")
    assert tool.parent.span_id == root.context.span_id
    assert tool.attributes["gen_ai.tool.call.result"] == "rainy in Oslo"
    assert tool.attributes["agentguard.turn.index"] == 1


def test_parallel_tool_calls_each_get_a_span_under_the_agent(guarded: Any, spans: Any) -> None:
    """Tool calls LangGraph runs in parallel threads are all children of the agent span."""
    guarded()
    agent = make_agent([
        say("", call("get_weather", city="Paris"), call("get_weather", city="Rome"),
            call("lookup_customer", customer_id=7)),
        say("done"),
    ])
    agent.invoke({"messages": [("user", "go")]})
    root = spans.one("invoke_agent support")
    tools = spans.named("execute_tool")
    assert sorted(t.attributes["gen_ai.tool.call.arguments"] for t in tools) == [
        '{"city":"Paris"}', '{"city":"Rome"}', '{"customer_id":7}']
    assert {t.parent.span_id for t in tools} == {root.context.span_id}
    assert {t.context.trace_id for t in tools} == {root.context.trace_id}


async def test_parallel_async_tool_calls_are_attributed(guarded: Any, spans: Any) -> None:
    """Concurrent async tool calls in one step each carry their own arguments and parent."""
    guarded()
    agent = make_agent([
        say("", *[call("async_weather", city=f"city-{i}") for i in range(8)]),
        say("done"),
    ])
    await agent.ainvoke({"messages": [("user", "go")]})
    root = spans.one("invoke_agent support")
    tools = spans.named("execute_tool async_weather")
    assert len(tools) == 8
    for span in tools:
        city = json.loads(span.attributes["gen_ai.tool.call.arguments"])["city"]
        assert span.attributes["gen_ai.tool.call.result"] == f"rainy in {city}"
        assert span.parent.span_id == root.context.span_id


def test_multi_turn_thread_counts_turns_and_uses_thread_id(guarded: Any, spans: Any) -> None:
    """Each new user message on a checkpointed thread is the next turn of that conversation."""
    guarded()
    agent = make_agent([say("one"), say("two"), say("three")], checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "thread-9"}}
    for text in ("a", "b", "c"):
        agent.invoke({"messages": [("user", text)]}, config)
    roots = sorted(spans.named("invoke_agent"), key=lambda s: s.start_time)
    assert [r.attributes["agentguard.turn.index"] for r in roots] == [1, 2, 3]
    assert {r.attributes["gen_ai.conversation.id"] for r in roots} == {"thread-9"}
    assert [r.attributes["agentguard.turn.text"] for r in roots] == ["a", "b", "c"]
    assert len({r.context.trace_id for r in roots}) == 3


def test_a_graph_resumed_after_an_interrupt_stays_in_its_turn_without_errors(
        guarded: Any, spans: Any) -> None:
    """A tool that pauses for a human (``interrupt()``) and the run resumed from the checkpoint
    are one turn of the thread, and the pause is not an error: the paused tool span is marked
    interrupted, with no error status."""
    from langchain.agents import create_agent
    from langchain_core.tools import tool
    from langgraph.types import Command, interrupt

    from tests.integrations.langchain.agents import ScriptedChatModel

    @tool
    def refund(order: str) -> str:
        """Refund an order once a human approves."""
        return f"refunded {order}" if interrupt({"approve": order}) else "refused"

    guarded()
    agent = create_agent(ScriptedChatModel(script=[say("", call("refund", order="A7")),
                                                   say("Refunded.")]),
                         [refund], checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "ticket-9"}}
    agent.invoke({"messages": [("user", "refund A7")]}, config)
    answer = agent.invoke(Command(resume=True), config)
    assert answer["messages"][-1].content == "Refunded."
    everything = spans.all()
    assert len(spans.named("invoke_agent")) == 2
    assert {s.attributes["agentguard.turn.index"] for s in everything} == {1}
    assert {s.attributes["gen_ai.conversation.id"] for s in everything} == {"ticket-9"}
    assert all(s.status.status_code is StatusCode.UNSET for s in everything)
    paused, done = sorted(spans.named("execute_tool refund"), key=lambda s: s.start_time)
    assert paused.attributes["agentguard.interrupted"] == "GraphInterrupt"
    assert not any(e.name == "exception" for e in paused.events)
    assert "agentguard.interrupted" not in done.attributes
    assert done.attributes["gen_ai.tool.call.result"] == "refunded A7"


def test_explicit_conversation_wins_over_thread_id(guarded: Any, spans: Any) -> None:
    """``agentguard.conversation()`` names the conversation even when a thread id is given."""
    guarded()
    agent = make_agent([say("hi")], checkpointer=InMemorySaver())
    with agentguard.conversation("crm-77"):
        agent.invoke({"messages": [("user", "x")]}, {"configurable": {"thread_id": "t-1"}})
    assert spans.one("invoke_agent support").attributes["gen_ai.conversation.id"] == "crm-77"


def test_invocations_without_a_conversation_get_distinct_ids(guarded: Any, spans: Any) -> None:
    """Without a conversation or thread id, each top-level invocation is its own conversation."""
    guarded()
    agent = make_agent([say("a"), say("b")])
    agent.invoke({"messages": [("user", "x")]})
    agent.invoke({"messages": [("user", "y")]})
    roots = spans.named("invoke_agent")
    ids = {r.attributes["gen_ai.conversation.id"] for r in roots}
    assert len(ids) == 2
    assert [r.attributes["agentguard.turn.index"] for r in roots] == [1, 1]


def test_sub_agent_called_from_a_tool_nests_without_a_new_turn(guarded: Any, spans: Any) -> None:
    """An agent invoked inside a tool is a child span in the same turn, not a new turn."""
    from langchain_core.tools import tool

    inner = make_agent([say("inner answer")], name="researcher")

    @tool
    def ask_researcher(question: str) -> str:
        """Delegate a question."""
        return str(inner.invoke({"messages": [("user", question)]})["messages"][-1].content)

    from langchain.agents import create_agent

    from agentguard.demo.scripted import ScriptedChatModel

    outer = create_agent(
        ScriptedChatModel(script=[say("", call("ask_researcher", question="why?")), say("ok")]),
        [ask_researcher], name="lead")
    guarded()
    with agentguard.conversation("conv-sub"):
        outer.invoke({"messages": [("user", "start")]})
    tool = spans.one("execute_tool ask_researcher")
    sub = spans.one("invoke_agent researcher")
    assert sub.parent.span_id == tool.context.span_id
    assert sub.attributes["agentguard.turn.index"] == 1
    assert sub.attributes["gen_ai.conversation.id"] == "conv-sub"
    assert "agentguard.turn.text" not in sub.attributes


def test_failing_tool_records_error_and_reraises_the_same_exception(guarded: Any, spans: Any
                                                                     ) -> None:
    """A tool's own exception reaches the caller unchanged and the span ends with error status."""
    from tests.integrations.langchain.agents import failing_tool

    guarded()
    try:
        failing_tool.invoke({"reason": "timeout"})
    except RuntimeError as exc:
        assert str(exc) == "backend down: timeout"
    else:
        raise AssertionError("the tool's exception was swallowed")
    span = spans.one("execute_tool failing_tool")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "RuntimeError"
    assert span.events[0].name == "exception"


@pytest.mark.parametrize("mode", ["redacted", "none"])
def test_a_tool_error_message_is_content_redacted_bounded_or_left_out(guarded: Any, spans: Any,
                                                                     mode: str) -> None:
    """A tool's exception message quoting a secret and megabytes of upstream output reaches the
    caller unchanged, while its span's exception event and status are redacted and cut to the
    capture size (or carry no message with capture off)."""
    from tests.integrations.langchain.agents import failing_tool

    secret = "AKIA" + "IOSFODNN7EXAMPLE"
    reason = f"password=hunter2-secret aws_access_key_id={secret} " + "x" * 2_000_000
    guarded(capture_content=mode, max_content_length=1024)
    with pytest.raises(RuntimeError) as info:
        failing_tool.invoke({"reason": reason})
    assert str(info.value) == f"backend down: {reason}"
    span = spans.one("execute_tool failing_tool")
    (event,) = [e for e in span.events if e.name == "exception"]
    texts = [*event.attributes.values(), span.status.description]
    assert all(isinstance(t, str) and secret not in t and "hunter2" not in t for t in texts)
    assert all(len(t) < 8192 for t in texts)
    assert event.attributes["exception.type"] == "RuntimeError"
    if mode == "redacted":
        assert event.attributes["exception.message"].startswith("backend down: password=[REDACTED:")
        assert span.status.description.startswith("RuntimeError: backend down: password=[REDACTED:")
    else:
        assert "exception.message" not in event.attributes
        assert span.status.description == "RuntimeError"


def test_agent_stream_abandoned_early_still_ends_the_span(guarded: Any, spans: Any) -> None:
    """Breaking out of ``agent.stream()`` ends the agent span and marks it abandoned."""
    guarded()
    agent = make_agent([say("", call("get_weather", city="Paris")), say("done")])
    stream = agent.stream({"messages": [("user", "go")]}, stream_mode="updates")
    next(stream)
    stream.close()
    root = spans.one("invoke_agent support")
    assert root.end_time is not None
    assert root.attributes["agentguard.stream.abandoned"] is True


def test_agent_stream_consumed_fully_records_everything(guarded: Any, spans: Any) -> None:
    """A fully consumed ``agent.stream()`` gives the same spans as ``invoke``."""
    guarded()
    agent = make_agent([say("", call("get_weather", city="Paris")), say("done")])
    chunks = list(agent.stream({"messages": [("user", "go")]}, stream_mode="updates"))
    assert chunks
    root = spans.one("invoke_agent support")
    assert "agentguard.stream.abandoned" not in root.attributes
    assert spans.one("execute_tool get_weather").parent.span_id == root.context.span_id


async def test_agent_astream_abandoned_early_still_ends_the_span(guarded: Any, spans: Any) -> None:
    """Abandoning ``agent.astream()`` ends the agent span too."""
    guarded()
    agent = make_agent([say("", call("get_weather", city="Paris")), say("done")])
    stream = agent.astream({"messages": [("user", "go")]}, stream_mode="updates")
    async for _ in stream:
        break
    await stream.aclose()
    await asyncio.sleep(0)
    root = spans.one("invoke_agent support")
    assert root.attributes["agentguard.stream.abandoned"] is True
