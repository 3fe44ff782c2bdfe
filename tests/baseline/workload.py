"""A benign support-agent workload: varied but in-distribution tool calls over many conversations,
and two ways to run it (straight through the Guard, or through a real LangChain agent)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from langchain.agents import create_agent
from langchain_core.tools import tool

import agentguard
from agentguard.demo.scripted import ScriptedChatModel, call, say

__all__ = ["TOOLS", "Call", "Workload", "run_in_agent", "run_in_guard"]

_FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Dennis", "Margaret", "Linus", "Guido"]
_CITIES = ["Berlin", "Lyon", "Porto", "Austin", "Osaka", "Leeds", "Turin", "Malmo"]
_TOPICS = ["refund policy", "shipping times", "warranty terms", "password reset", "invoice copy",
           "delivery address change", "order cancellation", "loyalty points"]
_STATUSES = ["open", "shipped", "delivered", "returned"]
_DOC_PATHS = ["/guides/refunds", "/guides/shipping", "/faq/warranty", "/faq/accounts",
              "/guides/invoices", "/faq/loyalty"]
_DOMAINS = ["example.com", "example.org", "mail.example.net"]


def _customers(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"id": rng.randint(1000, 99999), "name": f"{rng.choice(_FIRST)} {chr(65 + i % 26)}.",
             "city": rng.choice(_CITIES), "tier": rng.choice(["gold", "silver", "bronze"])}
            for i in range(count)]


@tool
def lookup_customer(customer_id: int) -> dict[str, Any]:
    """Look up one customer record."""
    return _customers(1, customer_id)[0] | {"id": customer_id}


@tool
def query_customers(query: str, limit: int = 5) -> list[dict[str, Any]]:
    """Query customer records matching a filter."""
    return _customers(limit, len(query) * 31 + limit)


@tool
def search_orders(customer_id: int, status: str = "open", limit: int = 5) -> dict[str, Any]:
    """Orders of a customer in a status."""
    rng = random.Random(customer_id)
    count = min(limit, rng.randint(0, 4))
    return {"orders": [{"order": f"ORD-{rng.randint(10000, 99999)}", "status": status,
                        "total": round(rng.uniform(5, 400), 2)} for _ in range(count)]}


@tool
def fetch_doc(url: str) -> str:
    """Fetch a help-centre document."""
    return f"Document at {url}: " + "policy text. " * 20


@tool
def send_email(to: str, subject: str, body: str) -> str:
    """Send an e-mail to a customer."""
    return f"sent to {to}"


TOOLS = [lookup_customer, query_customers, search_orders, fetch_doc, send_email]


@dataclass
class Call:
    """One tool call of the workload."""

    tool: str
    args: dict[str, Any]

    def result(self) -> Any:
        function = {t.name: t for t in TOOLS}[self.tool]
        return function.func(**self.args)  # type: ignore[attr-defined]


class Workload:
    """Conversations of a support agent: each a few turns, each turn one of the usual flows."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def _customer_id(self) -> int:
        return self.rng.randint(1000, 99999)

    def _email(self) -> str:
        return f"{self.rng.choice(_FIRST).lower()}.{self.rng.randint(1, 999)}@" \
               f"{self.rng.choice(_DOMAINS)}"

    def turn(self) -> list[Call]:
        rng = self.rng
        flow = rng.choices(["lookup", "orders", "query", "docs", "reply"],
                           weights=[30, 25, 20, 15, 10])[0]
        customer = self._customer_id()
        if flow == "lookup":
            return [Call("lookup_customer", {"customer_id": customer})]
        if flow == "orders":
            calls = [Call("lookup_customer", {"customer_id": customer}),
                     Call("search_orders", {"customer_id": customer,
                                            "status": rng.choice(_STATUSES),
                                            "limit": rng.randint(1, 10)})]
            return calls
        if flow == "query":
            query = f"city = {rng.choice(_CITIES)} and tier = {rng.choice(['gold', 'silver'])}"
            return [Call("query_customers", {"query": query, "limit": rng.randint(1, 5)})]
        if flow == "docs":
            return [Call("fetch_doc", {"url": "https://help.example.com" +
                                       rng.choice(_DOC_PATHS)})]
        topic = rng.choice(_TOPICS)
        return [Call("fetch_doc", {"url": "https://help.example.com" + rng.choice(_DOC_PATHS)}),
                Call("send_email", {"to": self._email(), "subject": f"About your {topic}",
                                    "body": f"Hello, here is what we found about your {topic}. "
                                            * rng.randint(1, 4)})]

    def conversation(self) -> list[list[Call]]:
        return [self.turn() for _ in range(self.rng.randint(1, 3))]


def run_in_guard(guard: agentguard.Guard, conversation: list[list[Call]], conversation_id: str
                 ) -> list[Any]:
    """Run a conversation through the Guard's tool path (as an integration would); returns the
    verdicts (calls blocked before running are returned as the exception)."""
    outcomes: list[Any] = []
    with agentguard.conversation(conversation_id):
        for turn in conversation:
            agent = guard.start_agent("support", turn_text="please help")
            token = agent.activate()
            try:
                for item in turn:
                    try:
                        op = guard.start_tool(item.tool, arguments=item.args)
                    except agentguard.ToolCallBlocked as blocked:
                        outcomes.append(blocked)
                        continue
                    outcomes.append(op.verdict)
                    outcomes.append(op.end_tool(json.dumps(item.result())))
            finally:
                agent.deactivate(token)
                agent.end()
    return outcomes


def run_in_agent(conversation: list[list[Call]], conversation_id: str, *,
                 final: str = "Done.") -> list[Any]:
    """Run a conversation through a real LangChain agent (create_agent), one invocation per turn;
    returns the messages of every turn."""
    messages: list[Any] = []
    for number, turn in enumerate(conversation):
        script = [say("", call(item.tool, f"{conversation_id}-{number}-{i}", **item.args))
                  for i, item in enumerate(turn)]
        agent = create_agent(ScriptedChatModel(script=[*script, say(final)]), TOOLS,
                             name="support")
        with agentguard.conversation(conversation_id):
            result = agent.invoke({"messages": [("user", "please help")]})
        messages.extend(result["messages"])
    return messages
