"""``agentguard demo``: a scripted LangGraph support agent, instrumented, and its span tree.

Three turns of one conversation on a checkpointed thread: a customer lookup, a knowledge-base
search through a real retriever, and two order look-ups the model asks for in parallel. No
network, no model service and no keys are needed.
"""

from __future__ import annotations

import os
import time
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rich.console import Console
from rich.tree import Tree

import agentguard
from agentguard import semconv

__all__ = ["build_agent", "run_demo"]

_CUSTOMERS = {
    42: {"id": 42, "name": "Ada Lovelace", "plan": "enterprise",
         "integration_token": "ghp_" + "x7Kq2Lm9Pz4Rt8Vw1Yb5Nc3Hd6Jf0Gs2Ae4U"},
}
_KB = [
    ("kb-refunds", "Refund policy: annual plans are refundable within 30 days of purchase."),
    ("kb-shipping", "Shipping: orders ship within two business days from the EU warehouse."),
    ("kb-security", "Security: never share customer tokens outside the support tool."),
]


def build_agent() -> Any:
    """The demo's support agent: a real ``create_agent`` graph with a scripted model."""
    from langchain.agents import create_agent
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.tools import tool
    from langgraph.checkpoint.memory import InMemorySaver

    from agentguard.demo.scripted import ScriptedChatModel, call, say

    class KeywordRetriever(BaseRetriever):
        """Returns knowledge-base passages sharing a word with the query."""

        def _get_relevant_documents(
            self, query: str, *, run_manager: CallbackManagerForRetrieverRun
        ) -> list[Document]:
            words = {w.strip(".,:?").lower() for w in query.split()}
            return [
                Document(page_content=text, id=doc_id, metadata={"source": f"kb://{doc_id}"})
                for doc_id, text in _KB
                if words & {w.strip(".,:?").lower() for w in text.split()}
            ]

    retriever = KeywordRetriever()

    @tool
    def lookup_customer(customer_id: int) -> dict[str, Any]:
        """Look up one customer record by id."""
        return _CUSTOMERS.get(customer_id, {"id": customer_id, "error": "not found"})

    @tool
    def search_kb(query: str) -> str:
        """Search the support knowledge base."""
        return "\n".join(doc.page_content for doc in retriever.invoke(query))

    @tool
    def order_status(order_id: int) -> str:
        """Status of one order."""
        time.sleep(0.01)
        return f"order {order_id}: shipped"

    model = ScriptedChatModel(script=[
        say("", call("lookup_customer", customer_id=42)),
        say("Customer 42 is Ada Lovelace on the enterprise plan."),
        say("", call("search_kb", query="refund policy")),
        say("Annual plans are refundable within 30 days."),
        say("", call("order_status", order_id=1001), call("order_status", order_id=1002)),
        say("Both orders have shipped."),
    ])
    return create_agent(model, [lookup_customer, search_kb, order_status],
                        name="support-agent", checkpointer=InMemorySaver())


_SHOWN = (
    semconv.GEN_AI_CONVERSATION_ID, semconv.AG_TURN_INDEX, semconv.AG_TURN_TEXT,
    semconv.GEN_AI_TOOL_CALL_ARGUMENTS, semconv.GEN_AI_TOOL_CALL_RESULT,
    semconv.AG_RETRIEVAL_QUERY, semconv.AG_RETRIEVAL_DOCUMENT_COUNT,
    semconv.GEN_AI_USAGE_INPUT_TOKENS, semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
)


def _label(span: ReadableSpan) -> str:
    attrs = span.attributes or {}
    duration = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    details = []
    for key in _SHOWN:
        if key in attrs:
            value = str(attrs[key])
            details.append(f"[dim]{key}[/dim]={value[:90] + '…' if len(value) > 90 else value}")
    text = f"[bold]{span.name}[/bold] [cyan]{duration:.1f} ms[/cyan]"
    return text + ("\n" + "\n".join(details) if details else "")


def render(spans: list[ReadableSpan], console: Console) -> None:
    """Print spans as one tree per trace, children under their parents, in start order."""
    by_parent: dict[int | None, list[ReadableSpan]] = {}
    ids = {s.context.span_id for s in spans if s.context is not None}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent is not None else None
        by_parent.setdefault(parent if parent in ids else None, []).append(span)

    def add(node: Tree, span: ReadableSpan) -> None:
        branch = node.add(_label(span))
        for child in by_parent.get(span.context.span_id if span.context else None, []):
            add(branch, child)

    for root in by_parent.get(None, []):
        tree = Tree(_label(root))
        for child in by_parent.get(root.context.span_id if root.context else None, []):
            add(tree, child)
        console.print(tree)


def run_demo(otlp: bool = False) -> int:
    """Run the demo agent for three turns and print its span tree; returns the exit status."""
    console = Console()
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-agent",
                                                        "process.pid": os.getpid()}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    if otlp:
        from agentguard._telemetry import BoundedBatchSpanProcessor, _otlp_exporter
        from agentguard.config import resolve_config

        provider.add_span_processor(BoundedBatchSpanProcessor(_otlp_exporter(resolve_config({}))))
    agentguard.instrument(service_name="support-agent", tracer_provider=provider)
    try:
        agent = build_agent()
        config = {"configurable": {"thread_id": "ticket-4711"}}
        turns = ["Who is customer 42?", "What is the refund policy?",
                 "Where are orders 1001 and 1002?"]
        with agentguard.conversation("ticket-4711", user="alice"):
            for text in turns:
                result = agent.invoke({"messages": [("user", text)]}, config)
                console.print(f"[green]user[/green]: {text}\n[blue]agent[/blue]: "
                              f"{result['messages'][-1].content}")
    finally:
        agentguard.uninstrument()
        provider.force_flush()
    spans = list(memory.get_finished_spans())
    console.rule("spans (one trace per turn)")
    render(spans, console)
    tools = [s for s in spans if s.name.startswith(semconv.OP_EXECUTE_TOOL)]
    console.print(f"\n{len(spans)} spans, {len(tools)} tool calls; secrets in tool results "
                  "are redacted before they leave the process.")
    provider.shutdown()
    return 0 if tools else 1
