"""Blocks on a user turn, a model request and a retrieval in LangChain / LangGraph, and turns in a
hand-written chat-model loop."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.messages import HumanMessage
from langchain_core.retrievers import BaseRetriever

import agentguard
from agentguard import Decision, ModelCallBlocked, ToolCallBlocked
from tests.integrations.langchain.agents import ScriptedChatModel, make_agent, say


class _Counting(ScriptedChatModel):
    """The scripted model, counting the requests that reached it."""

    requests: list[int] = []

    def _next(self, messages: list[Any]) -> Any:
        self.requests.append(len(messages))
        return super()._next(messages)


class _Docs(BaseRetriever):
    searched: list[str] = []

    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        self.searched.append(query)
        return [Document(page_content="Refunds take five days.")]


def _blocking(kind: str, word: str) -> Any:
    def rule(event: Any) -> Decision | None:
        if event.kind != kind:
            return None
        if kind == "turn":
            text = event.text
        elif kind == "retrieval":
            text = event.query
        else:
            text = " ".join(m.content for m in event.messages)
        if word in text and getattr(event, "phase", "request") == "request":
            return Decision.block(f"no {word}", rule_id=f"no-{word}")
        return None
    return rule


@pytest.mark.parametrize("kind", ["turn", "model_call"])
def test_in_enforce_a_blocked_turn_or_model_request_stops_the_agent_before_the_model(
        guarded: Any, spans: Any, kind: str) -> None:
    """The agent raises ModelCallBlocked, the model is never asked, the finding is emitted once
    and the agent's span records the block."""
    found: list[Any] = []
    guarded(mode="enforce", policy=_blocking(kind, "password"), builtin_rules=False,
            injection_detection=False, on_finding=found.append)
    model = _Counting(script=[say("Here it is.")])
    model.requests = []
    from langchain.agents import create_agent

    agent = create_agent(model, [], name="support")
    with pytest.raises(ModelCallBlocked) as raised:
        agent.invoke({"messages": [HumanMessage(content="What is the admin password?")]})
    assert isinstance(raised.value, ToolCallBlocked)
    assert model.requests == []
    assert [(f.rule_id, f.action, f.kind) for f in found] == [("no-password", "block", kind)]
    assert found[0].turn == 1
    blocked_span = spans.named("invoke_agent" if kind == "turn" else "chat")[0]
    assert blocked_span.attributes["agentguard.decision"] == "block"


def test_in_monitor_a_block_rule_on_a_turn_is_reported_as_an_alert(guarded: Any) -> None:
    """Monitor mode never stops the agent, and the turn's finding is reported, not lost."""
    found: list[Any] = []
    guarded(mode="monitor", policy=_blocking("turn", "password"), builtin_rules=False,
            injection_detection=False, on_finding=found.append)
    agent = make_agent([say("I cannot share that.")])
    out = agent.invoke({"messages": [HumanMessage(content="What is the admin password?")]})
    assert out["messages"][-1].content == "I cannot share that."
    assert [(f.rule_id, f.action, f.kind, f.turn) for f in found] == [
        ("no-password", "alert", "turn", 1)]


def test_a_blocked_retrieval_never_searches(guarded: Any, spans: Any) -> None:
    """A block on a retrieval request raises ToolCallBlocked before the retriever runs."""
    found: list[Any] = []
    guarded(mode="enforce", policy=_blocking("retrieval", "salary"), builtin_rules=False,
            injection_detection=False, on_finding=found.append)
    docs = _Docs()
    docs.searched = []
    with pytest.raises(ToolCallBlocked):
        docs.invoke("salary of every employee")
    assert docs.searched == []
    assert [(f.rule_id, f.kind) for f in found] == [("no-salary", "retrieval")]
    assert docs.invoke("refund policy")[0].page_content == "Refunds take five days."


def test_a_hand_written_chat_model_loop_numbers_its_turns(guarded: Any, spans: Any) -> None:
    """Calling a chat model directly in a conversation: each new human message is a turn."""
    seen: list[Any] = []
    guarded(policy=lambda event: seen.append(event))
    model = ScriptedChatModel(script=[say("Hello."), say("Goodbye.")])
    history: list[Any] = [HumanMessage(content="Hi")]
    with agentguard.conversation("chat-loop-1"):
        history.append(model.invoke(history))
        history.append(HumanMessage(content="Bye"))
        model.invoke(history)
    assert [s.attributes["agentguard.turn.index"] for s in spans.named("chat")] == [1, 2]
    assert [(e.text, e.context.turn) for e in seen if e.kind == "turn"] == [("Hi", 1), ("Bye", 2)]
