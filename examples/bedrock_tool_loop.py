"""A hand-written Bedrock Converse tool loop with boto3, guarded by agentguard.

Run it::

    python examples/bedrock_tool_loop.py

Where the model runs:

* no AWS credentials (the default on a laptop or CI): a local Bedrock-compatible server is started
  in this process and plays a scripted model, so boto3 signs, sends and parses real Converse
  requests without an account;
* ``AGENTGUARD_EXAMPLE_BEDROCK_URL=http://host:port``: that Bedrock-compatible endpoint (a proxy,
  a gateway, or the same local server run elsewhere) answers instead;
* AWS credentials present: the real Amazon Bedrock, with ``AWS_REGION`` (default ``us-east-1``)
  and ``AGENTGUARD_EXAMPLE_BEDROCK_MODEL`` (default: Claude 3.5 Haiku's US inference profile;
  the model must be enabled in the account).

``agentguard.instrument()`` turns every Converse call into a ``chat`` span and every
``@agentguard.tool`` function into an ``execute_tool`` span tied to the model's ``toolUseId``.
The policy below blocks refunds above 100 unless the order is under review; the blocked call is
sent back to the model as an error ``toolResult`` and the model tells the customer.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import boto3

import agentguard
from agentguard import Policy, ToolCallBlocked

MODEL_ID = os.environ.get("AGENTGUARD_EXAMPLE_BEDROCK_MODEL",
                          "us.anthropic.claude-3-5-haiku-20241022-v1:0")
SYSTEM = [{"text": "You are a support agent for an online shop. Use the tools; be brief."}]

ORDERS = {1002: {"order_id": 1002, "total": 1200.0, "status": "delivered", "customer": 42}}

# An inline policy (Policy.from_yaml); a file works the same (see examples/policy.yaml).
POLICY = Policy.from_yaml("""
rules:
  - id: SHOP-REFUND-LIMIT
    description: Refund above 100 without a review
    message: 'refund of {arguments.amount} on order {arguments.order_id} needs a review'
    severity: high
    action: block
    match: {kind: tool_call, tool: issue_refund}
    when: {field: arguments.amount, gt: 100}
""")


@agentguard.tool
def get_order(order_id: int) -> dict[str, Any]:
    """Look up an order by id."""
    return ORDERS.get(order_id, {"order_id": order_id, "error": "not found"})


@agentguard.tool
def issue_refund(order_id: int, amount: float) -> str:
    """Refund an amount on an order."""
    return f"refunded {amount} on order {order_id}"


TOOLS: dict[str, Callable[..., Any]] = {"get_order": get_order, "issue_refund": issue_refund}
TOOL_CONFIG = {"tools": [
    {"toolSpec": {"name": "get_order", "description": "Look up an order by id.",
                  "inputSchema": {"json": {"type": "object", "required": ["order_id"],
                                           "properties": {"order_id": {"type": "integer"}}}}}},
    {"toolSpec": {"name": "issue_refund", "description": "Refund an amount on an order.",
                  "inputSchema": {"json": {"type": "object", "required": ["order_id", "amount"],
                                           "properties": {"order_id": {"type": "integer"},
                                                          "amount": {"type": "number"}}}}}},
]}


def run_tool(use: dict[str, Any]) -> dict[str, Any]:
    """Run one ``toolUse`` request; a block goes back to the model as an error result."""
    content: list[dict[str, Any]]
    try:
        output = TOOLS[use["name"]](**use["input"])
        content, status = [{"json": {"result": output}}], "success"
    except ToolCallBlocked as blocked:
        print(f"  agentguard blocked {use['name']}: [{blocked.finding.rule_id}] "
              f"{blocked.finding.title}")
        content, status = [{"text": f"blocked by policy: {blocked.finding.title}"}], "error"
    return {"toolResult": {"toolUseId": use["toolUseId"], "content": content, "status": status}}


def converse(client: Any, question: str, max_steps: int = 8) -> str:
    """The tool loop: ask, run the tools the model requests, send the results, until it answers."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"text": question}]}]
    for _ in range(max_steps):
        response = client.converse(modelId=MODEL_ID, system=SYSTEM, messages=messages,
                                   toolConfig=TOOL_CONFIG, inferenceConfig={"maxTokens": 512})
        message = response["output"]["message"]
        messages.append(message)
        uses = [block["toolUse"] for block in message["content"] if "toolUse" in block]
        if response["stopReason"] != "tool_use" or not uses:
            return "".join(block.get("text", "") for block in message["content"])
        for use in uses:
            print(f"  model asks for {use['name']}({json.dumps(use['input'])})")
        messages.append({"role": "user", "content": [run_tool(use) for use in uses]})
    return "(no answer within the step limit)"


def script_local_model(server: Any) -> None:
    """What the local server's scripted model answers, one reply per Converse request."""
    from agentguard.demo.bedrock_server import Reply, tool_use

    server.push(
        Reply(tool_uses=[tool_use("get_order", {"order_id": 1002})]),
        Reply(tool_uses=[tool_use("issue_refund", {"order_id": 1002, "amount": 1200.0})]),
        Reply(text="I could not refund the full 1200.00: refunds above 100 need a review. "
                   "I have passed your request to a colleague."),
    )


def bedrock_client() -> tuple[Any, Any]:
    """A bedrock-runtime client for the configured endpoint, and the local server if one was
    started (to stop it afterwards)."""
    region = os.environ.get("AWS_REGION", "us-east-1")
    url = os.environ.get("AGENTGUARD_EXAMPLE_BEDROCK_URL")
    if url is None and boto3.Session().get_credentials() is not None:
        print(f"model: Amazon Bedrock {MODEL_ID} in {region}")
        return boto3.client("bedrock-runtime", region_name=region), None
    server = None
    if url is None:
        from agentguard.demo.bedrock_server import BedrockServer

        server = BedrockServer().start()
        script_local_model(server)
        url = server.url
    print(f"model: Bedrock-compatible endpoint {url} ({'scripted, local' if server else 'remote'})")
    # The endpoint needs signed requests but checks no account: any key pair will do.
    client = boto3.client("bedrock-runtime", region_name=region, endpoint_url=url,
                          aws_access_key_id="local", aws_secret_access_key="local")
    return client, server


def main() -> int:
    findings: list[agentguard.Finding] = []
    agentguard.instrument(service_name="shop-agent", mode="enforce", policy=POLICY,
                          on_finding=findings.append,
                          exporter=os.environ.get("AGENTGUARD_EXPORTER", "none"))
    client, server = bedrock_client()
    try:
        question = "Order 1002 arrived broken. Please refund the full amount."
        print(f"customer: {question}")
        with agentguard.conversation("chat-311", user="customer-42"):
            answer = converse(client, question)
        print(f"agent: {answer}")
    finally:
        agentguard.uninstrument()
        if server is not None:
            server.stop()
    blocked = [f for f in findings if f.action == "block"]
    print(f"summary: {agentguard.stats().get('spans_exported', 0)} spans exported, "
          f"{len(findings)} finding(s), {len(blocked)} tool call(s) blocked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
