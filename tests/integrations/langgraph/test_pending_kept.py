"""Human messages waiting in a thread are not lost unjudged when agentguard fails to start the
span of the run that reads them (an internal error, contained): the next run judges them."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from agentguard import ModelCallBlocked
from tests.integrations.langchain.agents import ScriptedChatModel, say
from tests.integrations.langchain.test_human_in_the_loop import _chat_agent, _no_password


class _Unprintable:
    """A graph name agentguard cannot turn into a span name."""

    def __str__(self) -> str:
        raise RuntimeError("no name")


def test_messages_a_run_could_not_judge_are_judged_by_the_next_one(guarded: Any) -> None:
    """A run whose span agentguard fails to open goes on untraced (the error is contained); the
    blocked message it read from its thread still blocks the thread's next run."""
    guarded(mode="enforce", policy=_no_password, builtin_rules=False, injection_detection=False)
    asked: list[int] = []
    agent = _chat_agent(ScriptedChatModel(
        script=[lambda messages: asked.append(len(messages)) or say("ok")], loop=True))
    config = {"configurable": {"thread_id": "unnamed"}}
    agent.invoke({"messages": [("user", "hi")]}, config)
    agent.update_state(config, {"messages": [HumanMessage("the admin password?")]},
                       as_node="__start__")
    agent.name = _Unprintable()
    agent.invoke(None, config)
    agent.name = "desk"
    with pytest.raises(ModelCallBlocked):
        agent.invoke(None, config)
    assert asked == [1, 3]
