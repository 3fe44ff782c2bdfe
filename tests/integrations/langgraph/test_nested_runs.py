"""A graph run from inside another graph's run (a node or tool delegating to an agent with a
thread of its own) reads the human messages state updates wrote into its thread: they are judged
before its model reads them, in the enclosing run's turn."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import pytest
from langchain_core.messages import AnyMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from agentguard import ModelCallBlocked
from tests.integrations.langchain.agents import ScriptedChatModel, say
from tests.integrations.langchain.test_human_in_the_loop import INJECTION, _chat_agent, _no_password

SUB = {"configurable": {"thread_id": "sub-1"}}
MAIN = {"configurable": {"thread_id": "main-1"}}


class _Chat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def _delegating(inner: Any, way: str) -> Any:
    """A graph whose one node hands the work to ``inner`` on its own thread (``SUB``) and
    answers with what it said."""

    def delegate(state: _Chat) -> dict[str, Any]:
        return {"messages": [("ai", inner.invoke(None, SUB)["messages"][-1].content)]}

    async def adelegate(state: _Chat) -> dict[str, Any]:
        answer = await inner.ainvoke(None, SUB)
        return {"messages": [("ai", answer["messages"][-1].content)]}

    builder = StateGraph(_Chat)
    builder.add_node("delegate", delegate if way == "sync" else adelegate)
    builder.add_edge(START, "delegate")
    builder.add_edge("delegate", END)
    return builder.compile(checkpointer=InMemorySaver(), name="outer")


def _run(graph: Any, way: str) -> None:
    if way == "sync":
        graph.invoke({"messages": [("user", "please")]}, MAIN)
    else:
        asyncio.run(graph.ainvoke({"messages": [("user", "please")]}, MAIN))


def _inner(asked: list[list[str]]) -> Any:
    return _chat_agent(ScriptedChatModel(
        script=[lambda messages: asked.append([m.content for m in messages]) or say("ok")],
        loop=True))


@pytest.mark.parametrize("way", ["sync", "async"])
def test_an_injected_message_a_nested_run_reads_from_its_thread_is_scanned(
        guarded: Any, spans: Any, way: str) -> None:
    """An injected message written into a thread that a nested run then answers is scanned when
    that run starts: the finding is on the nested run's span, in the enclosing run's turn."""
    found: list[Any] = []
    guarded(on_finding=found.append)
    asked: list[list[str]] = []
    inner = _inner(asked)
    inner.invoke({"messages": [("user", "hi")]}, SUB)
    inner.update_state(SUB, {"messages": [HumanMessage(INJECTION)]}, as_node="__start__")
    spans.clear()
    _run(_delegating(inner, way), way)
    assert asked[-1] == ["hi", "ok", INJECTION]
    nested = spans.one("invoke_agent desk")
    assert nested.parent is not None
    assert nested.attributes["agentguard.turn.index"] == 1
    assert nested.attributes["agentguard.finding.rule_ids"] == ("injection-detected",)
    assert [(f.category, f.kind, f.conversation_id, f.turn) for f in found] == \
        [("injection", "turn", "main-1", 1)]


@pytest.mark.parametrize("way", ["sync", "async"])
def test_in_enforce_a_nested_run_is_blocked_before_its_model_reads_a_blocked_message(
        guarded: Any, way: str) -> None:
    """In enforce mode a nested run whose thread holds a message a turn policy blocks is
    blocked before its model reads it (the enclosing run fails with the block), and the thread's
    next run is blocked too: the message is still in its state."""
    guarded(mode="enforce", policy=_no_password, builtin_rules=False, injection_detection=False)
    asked: list[list[str]] = []
    inner = _inner(asked)
    inner.invoke({"messages": [("user", "hi")]}, SUB)
    inner.update_state(SUB, {"messages": [HumanMessage("the admin password?")]},
                       as_node="__start__")
    with pytest.raises(ModelCallBlocked):
        _run(_delegating(inner, way), way)
    with pytest.raises(ModelCallBlocked):
        inner.invoke(None, SUB)
    assert asked == [["hi"]]
