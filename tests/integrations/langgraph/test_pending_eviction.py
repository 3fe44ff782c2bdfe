"""More threads with human messages waiting for their next run than agentguard keeps: the
messages of a thread that has to go are judged as they go, never forgotten unjudged, and a
message a turn policy blocks keeps blocking its thread's run."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from agentguard import ModelCallBlocked
from agentguard.integrations import langgraph
from tests.integrations.langchain.agents import ScriptedChatModel, say
from tests.integrations.langchain.test_human_in_the_loop import INJECTION, _chat_agent, _no_password

# As many other threads as agentguard keeps waiting messages for.
THREADS = 1024


def _agent(asked: list[int]) -> Any:
    return _chat_agent(ScriptedChatModel(
        script=[lambda messages: asked.append(len(messages)) or say("ok")], loop=True))


def _write(agent: Any, thread: str, text: str) -> None:
    agent.update_state({"configurable": {"thread_id": thread}},
                       {"messages": [HumanMessage(text)]}, as_node="__start__")


def test_an_injected_message_pushed_out_by_other_threads_is_reported_for_its_thread(
        guarded: Any, spans: Any, caplog: pytest.LogCaptureFixture) -> None:
    """An injected message written into a thread, then pushed out by messages written into as
    many other threads, is scanned as it goes: the injection finding names its conversation and
    the turn it starts, the thread's next run continues that turn (without reporting it twice),
    the eviction is counted in ``stats()`` and said once in the log."""
    found: list[Any] = []
    guarded(on_finding=found.append)
    asked: list[int] = []
    agent = _agent(asked)
    config = {"configurable": {"thread_id": "victim"}}
    agent.invoke({"messages": [("user", "hi")]}, config)
    evicted = langgraph.stats()["pending_evicted"]
    _write(agent, "victim", INJECTION)
    for n in range(THREADS):
        _write(agent, f"other-{n}", "hello")
    assert langgraph.stats() == {"pending_threads": THREADS, "pending_evicted": evicted + 1}
    assert [(f.conversation_id, f.category, f.kind, f.turn, f.action, f.span_id,
             f.evidence["pending_evicted"]) for f in found] == \
        [("victim", "injection", "turn", 2, "alert", None, True)]
    assert "pending_evicted" in caplog.text
    spans.clear()
    agent.invoke(None, config)
    assert asked == [1, 3]
    run = spans.one("invoke_agent desk")
    assert run.attributes["agentguard.turn.index"] == 2
    assert "agentguard.turn.text" not in run.attributes
    assert len(found) == 1


def test_in_enforce_a_blocked_message_stays_while_other_threads_can_go(guarded: Any) -> None:
    """In enforce mode a message a turn policy blocks is not what goes when too many threads
    have messages waiting: harmless ones of other threads go (judged), and the blocked thread's
    next run is still blocked before its model reads the message."""
    found: list[Any] = []
    guarded(mode="enforce", policy=_no_password, builtin_rules=False, injection_detection=False,
            on_finding=found.append)
    asked: list[int] = []
    agent = _agent(asked)
    config = {"configurable": {"thread_id": "victim"}}
    agent.invoke({"messages": [("user", "hi")]}, config)
    _write(agent, "victim", "the admin password?")
    for n in range(THREADS):
        _write(agent, f"other-{n}", "hello")
    assert found == []
    with pytest.raises(ModelCallBlocked):
        agent.invoke(None, config)
    assert asked == [1]
    assert [(f.conversation_id, f.action) for f in found] == [("victim", "block")]


def test_when_every_waiting_thread_is_blocked_the_oldest_goes_reported(guarded: Any) -> None:
    """When every thread waiting has a message a turn policy blocks, the oldest still goes when
    another comes (memory stays bounded), and not silently: its finding is reported as an alert
    for its conversation (there is no run to stop yet) and the eviction is counted."""
    found: list[Any] = []
    guarded(mode="enforce", policy=_no_password, builtin_rules=False, injection_detection=False,
            on_finding=found.append)
    agent = _agent([])
    evicted = langgraph.stats()["pending_evicted"]
    for n in range(THREADS + 1):
        _write(agent, f"blocked-{n}", "the admin password?")
    assert langgraph.stats() == {"pending_threads": THREADS, "pending_evicted": evicted + 1}
    assert [(f.conversation_id, f.rule_id, f.action, f.turn) for f in found] == \
        [("blocked-0", "no-password", "alert", 1)]
