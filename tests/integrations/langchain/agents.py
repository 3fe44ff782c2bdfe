"""Real LangChain / LangGraph agents for the tests, driven by the scripted chat model."""

from __future__ import annotations

from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import BaseMessage, ToolMessage
from langchain_core.tools import tool

from agentguard.demo.scripted import ScriptedChatModel, call, say

__all__ = ["ScriptedChatModel", "call", "lookup_customer", "make_agent", "say", "tools"]


@tool
def lookup_customer(customer_id: int) -> dict[str, Any]:
    """Look up a customer record."""
    return {"id": customer_id, "name": "Ada", "tier": "gold"}


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"sunny in {city}"


@tool
async def async_weather(city: str) -> str:
    """Current weather in a city (async)."""
    return f"rainy in {city}"


@tool
def failing_tool(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"backend down: {reason}")


tools = [lookup_customer, get_weather, async_weather, failing_tool]


def make_agent(script: list[Any], *, name: str = "support", **kwargs: Any) -> Any:
    return create_agent(ScriptedChatModel(script=script), tools, name=name, **kwargs)


class Recorder:
    """A scripted step that records the messages the model was given, then answers."""

    def __init__(self) -> None:
        self.seen: list[BaseMessage] = []

    def __call__(self, messages: list[BaseMessage]) -> Any:
        self.seen = list(messages)
        return say("done")

    def tool_messages(self) -> list[ToolMessage]:
        return [m for m in self.seen if isinstance(m, ToolMessage)]
