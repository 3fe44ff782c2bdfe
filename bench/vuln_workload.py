"""A support agent of 2024 (LangChain 0.1/0.2, Bedrock configured), run to see what it loads.

The workload bench/reachability.py runs under ``agentguard run --aibom bom.json`` in an
environment locked in 2024 (tests/data/aibom/agent-env-2024-*.txt). It does what such an agent
does, with the installed versions: reads its ``.env`` and YAML configuration, builds its Bedrock
chat model (boto3 client; the conversation itself is scripted, no model endpoint is reachable),
and runs a LangChain tools agent (``create_openai_tools_agent`` + ``AgentExecutor``, in both
LangChain 0.1 and 0.2) whose tools make real calls: a web page fetched with the community
``WebBaseLoader`` (requests + BeautifulSoup) and an order looked up with aiohttp, both from an
HTTP server on loopback; a SQL query through LangChain's ``SQLDatabase`` (SQLAlchemy, SQLite);
tokens counted with a transformers fast tokenizer; the reply rendered by a Jinja2 prompt
template. No agentguard import: the program is the agent, unchanged.

    agentguard run --aibom bom.json -- python bench/vuln_workload.py
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from langchain.agents import AgentExecutor, create_openai_tools_agent
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder, PromptTemplate
from langchain_core.tools import tool

PAGE = ("<html><head><title>Returns policy</title></head><body><h1>Returns</h1>"
        "<p>Items can be returned within 30 days with the receipt.</p></body></html>")


class _Site(BaseHTTPRequestHandler):
    """The shop's help centre and order API, on loopback."""

    def do_GET(self) -> None:
        if self.path.startswith("/api/orders/"):
            order = self.path.rsplit("/", 1)[1]
            body = json.dumps({"order": order, "status": "shipped", "items": 2}).encode()
            kind = "application/json"
        else:
            body, kind = PAGE.encode(), "text/html; charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class ScriptedBedrock(BaseChatModel):
    """Plays the model's turns from a script, as OpenAI-style tool calls the agent executes."""

    script: list[Any]

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        turn = self.script.pop(0)
        if isinstance(turn, str):
            message = AIMessage(content=turn)
        else:
            name, args = turn
            call_id = f"call_{len(self.script)}"
            message = AIMessage(content="", additional_kwargs={"tool_calls": [{
                "id": call_id, "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)}}]})
        return ChatResult(generations=[ChatGeneration(message=message)])


def _configure(workdir: Path) -> dict[str, Any]:
    """The agent's settings: a .env file (python-dotenv) and a YAML file."""
    import yaml
    from dotenv import load_dotenv

    (workdir / ".env").write_text("AWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing\n"
                                  "AWS_DEFAULT_REGION=us-east-1\n")
    (workdir / "agent.yaml").write_text("model: anthropic.claude-3-haiku-20240307-v1:0\n"
                                        "max_iterations: 8\n")
    load_dotenv(workdir / ".env")
    return dict(yaml.safe_load((workdir / "agent.yaml").read_text()))


def _bedrock_model(config: dict[str, Any]) -> Any:
    """The chat model the agent is configured with (built, not called: no endpoint offline)."""
    import boto3

    client = boto3.client("bedrock-runtime", region_name=os.environ["AWS_DEFAULT_REGION"],
                          endpoint_url="http://127.0.0.1:9")
    try:  # LangChain 0.2 agents use langchain-aws; 0.1 agents the community class
        from langchain_aws import ChatBedrock
    except ImportError:
        from langchain_community.chat_models import BedrockChat as ChatBedrock
    return ChatBedrock(client=client, model_id=config["model"])


def _tokenizer(workdir: Path) -> Any:
    """A small fast tokenizer saved the way a model repository ships it, loaded by transformers."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "where", "is", "my", "order", "returns", "within", "30", "days"]
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.save(str(workdir / "tokenizer.json"))
    return PreTrainedTokenizerFast(tokenizer_file=str(workdir / "tokenizer.json"),
                                   unk_token="[UNK]")


def _database(workdir: Path) -> Any:
    from langchain_community.utilities import SQLDatabase

    path = workdir / "shop.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id TEXT, customer TEXT, total REAL)")
        db.execute("INSERT INTO orders VALUES ('A-1001', 'ada', 42.5), ('A-1002', 'bob', 7.0)")
    return SQLDatabase.from_uri(f"sqlite:///{path}")


def _tools(base: str, database: Any, tokenizer: Any) -> list[Any]:
    @tool
    def read_help_page(path: str) -> str:
        """Read a page of the help centre."""
        from langchain_community.document_loaders import WebBaseLoader

        return "\n".join(doc.page_content.strip() for doc in WebBaseLoader(base + path).load())

    @tool
    async def order_status(order_id: str) -> str:
        """Look an order up in the order API."""
        import aiohttp

        async with aiohttp.ClientSession() as session, \
                session.get(f"{base}/api/orders/{order_id}") as response:
            return json.dumps(await response.json())

    @tool
    def query_orders(sql: str) -> str:
        """Run a read-only SQL query on the orders database."""
        return str(database.run(sql))

    @tool
    def count_tokens(text: str) -> int:
        """Count the tokens of a text with the deployment's tokenizer."""
        return len(tokenizer(text)["input_ids"])

    @tool
    def render_reply(customer: str, status: str, policy: str) -> str:
        """Render the reply to the customer from the support template."""
        template = PromptTemplate.from_template(
            "Hello {{ customer | title }},\nyour order is {{ status }}.\n"
            "{% if policy %}{{ policy }}{% endif %}", template_format="jinja2")
        return template.format(customer=customer, status=status, policy=policy)

    return [read_help_page, order_status, query_orders, count_tokens, render_reply]


def _serve() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run(workdir: Path) -> str:
    """Run one support conversation; returns the agent's final answer."""
    config = _configure(workdir)
    _bedrock_model(config)
    database, tokenizer = _database(workdir), _tokenizer(workdir)
    serving = _serve()
    base = next(serving)
    try:
        model = ScriptedBedrock(script=[
            ("order_status", {"order_id": "A-1001"}),
            ("query_orders", {"sql": "SELECT total FROM orders WHERE id = 'A-1001'"}),
            ("read_help_page", {"path": "/help/returns"}),
            ("count_tokens", {"text": "where is my order"}),
            ("render_reply", {"customer": "ada", "status": "shipped",
                              "policy": "Items can be returned within 30 days."}),
            "Your order A-1001 has shipped; returns are accepted within 30 days.",
        ])
        prompt = ChatPromptTemplate.from_messages([
            ("system", "You are the shop's support agent."), ("human", "{input}"),
            MessagesPlaceholder("agent_scratchpad")])
        tools = _tools(base, database, tokenizer)
        agent = create_openai_tools_agent(model, tools, prompt)
        executor = AgentExecutor(agent=agent, tools=tools, return_intermediate_steps=True,
                                 max_iterations=int(config["max_iterations"]))
        result = asyncio.run(executor.ainvoke(
            {"input": "Where is my order A-1001, and can I return it?"}))
        steps = [f"{action.tool} -> {str(observation)[:40]!r}"
                 for action, observation in result["intermediate_steps"]]
        return "\n".join([*steps, result["output"]])
    finally:
        next(serving, None)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        print(run(Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
