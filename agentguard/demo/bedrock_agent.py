"""The demo's Bedrock agent: a hand-written Converse tool loop on boto3, with ``@agentguard.tool``
functions as its tools.

It is the loop an application writes around ``bedrock-runtime`` ``Converse``: send the
conversation and the tool specifications, run the tools the model asks for, send their results
back, stop when the model answers without asking for a tool. The client is a real boto3 client
pointed at the local server (:class:`~agentguard.demo.bedrock_server.BedrockServer`) with dummy
credentials, so signing, retries, parsing and agentguard's botocore integration all run for real
and nothing leaves the machine.

A tool that agentguard blocks (``ToolCallBlocked``, ``CloudCallBlocked``, or the runtime sensor's
``PermissionError``) fails like any failing tool: the model gets an error ``toolResult`` naming
the reason and the loop goes on, as a production agent would.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentguard.findings import ToolCallBlocked

__all__ = [
    "ACCESS_KEY",
    "MODEL_ID",
    "REGION",
    "AgentRun",
    "ConverseAgent",
    "ToolOutcome",
    "aws_client",
    "tool_spec",
]

MODEL_ID = "anthropic.claude-3-5-sonnet-20240620-v1:0"
REGION = "us-east-1"
# AWS's documented example key pair: botocore signs every request with it, no account exists.
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
# Bounded conversation: a model that keeps asking for tools stops the loop here.
_MAX_STEPS = 12
# A tool result sent back to the model is cut here (a real application would cap it too).
_MAX_RESULT = 16_384

_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean",
                               dict: "object", list: "array"}


def aws_client(service: str, endpoint_url: str, **config: Any) -> Any:
    """A boto3 client of ``service`` on a local endpoint: dummy credentials, one attempt, short
    timeouts (a demo must never hang), path-style S3 addressing."""
    import boto3
    from botocore.config import Config

    settings: dict[str, Any] = {"retries": {"mode": "standard", "total_max_attempts": 1},
                                "connect_timeout": 2, "read_timeout": 10,
                                "s3": {"addressing_style": "path"}}
    settings.update(config)
    return boto3.client(service, endpoint_url=endpoint_url, region_name=REGION,
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=_SECRET_KEY,
                        config=Config(**settings))


def _json_type(annotation: Any) -> str:
    origin = typing.get_origin(annotation) or annotation
    if origin is typing.Union or origin is types.UnionType:
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _json_type(options[0]) if options else "string"
    return _JSON_TYPES.get(origin, "string")


def tool_spec(fn: Callable[..., Any]) -> dict[str, Any]:
    """The Converse ``toolSpec`` of a function: its tool name, its docstring's first line and a
    JSON schema of its parameters (from the annotations; parameters without default required)."""
    name = getattr(fn, "agentguard_tool_name", None) or fn.__name__
    doc = inspect.getdoc(fn) or name
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or param.name == "self":
            continue
        properties[param.name] = {"type": _json_type(hints.get(param.name, str))}
        if param.default is param.empty:
            required.append(param.name)
    return {"toolSpec": {"name": name, "description": doc.strip().splitlines()[0],
                         "inputSchema": {"json": {"type": "object", "properties": properties,
                                                  "required": required}}}}


@dataclass
class ToolOutcome:
    """One tool call the model asked for and what came of it."""

    name: str
    tool_use_id: str
    input: dict[str, Any]
    #: ``success``, ``blocked`` (agentguard stopped it) or ``error`` (the tool failed).
    status: str
    output: str
    #: The exception the tool raised (a ``ToolCallBlocked``, an ``OperationBlocked``, ...).
    error: BaseException | None = None


@dataclass
class AgentRun:
    """What one :meth:`ConverseAgent.run` did: the answer, the tool calls, the conversation."""

    answer: str
    tools: list[ToolOutcome] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0

    def blocked(self) -> list[ToolOutcome]:
        """The tool calls agentguard stopped."""
        return [t for t in self.tools if t.status == "blocked"]


def _blocked_reason(exc: BaseException) -> str | None:
    """The agentguard finding behind an exception, when agentguard raised it."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:  # a block may come wrapped by the tool's client
        finding = getattr(current, "finding", None)
        if isinstance(current, (ToolCallBlocked, PermissionError)) and finding is not None:
            return f"{finding.title} [{finding.rule_id}]"
        current = current.__cause__ or current.__context__
        seen += 1
    return None


class ConverseAgent:
    """A Bedrock Converse tool loop over ``tools`` (functions, normally ``@agentguard.tool``)."""

    def __init__(self, client: Any, tools: Sequence[Callable[..., Any]], *, system: str,
                 model_id: str = MODEL_ID, max_steps: int = _MAX_STEPS,
                 inference: dict[str, Any] | None = None) -> None:
        self.client = client
        self.system = system
        self.model_id = model_id
        self.max_steps = max_steps
        self.inference = inference or {"maxTokens": 1024, "temperature": 0.0}
        self.tools = {getattr(fn, "agentguard_tool_name", None) or fn.__name__: fn
                      for fn in tools}
        self.tool_config = {"tools": [tool_spec(fn) for fn in tools]}

    def run(self, prompt: str) -> AgentRun:
        """Answer ``prompt``: call Converse, run the requested tools, until the model answers."""
        messages: list[dict[str, Any]] = [{"role": "user", "content": [{"text": prompt}]}]
        run = AgentRun(answer="", messages=messages)
        for step in range(self.max_steps):
            run.steps = step + 1
            request: dict[str, Any] = {"modelId": self.model_id, "messages": messages,
                                       "system": [{"text": self.system}],
                                       "inferenceConfig": self.inference}
            if self.tools:
                request["toolConfig"] = self.tool_config
            response = self.client.converse(**request)
            message = response["output"]["message"]
            messages.append(message)
            if response.get("stopReason") != "tool_use":
                run.answer = "".join(block.get("text", "") for block in message["content"])
                return run
            results = [self._run_tool(block["toolUse"], run) for block in message["content"]
                       if "toolUse" in block]
            messages.append({"role": "user", "content": results})
        run.answer = "(the agent stopped: too many tool steps)"
        return run

    def _run_tool(self, use: dict[str, Any], run: AgentRun) -> dict[str, Any]:
        name = str(use.get("name"))
        given = use.get("input")
        arguments: dict[str, Any] = given if isinstance(given, dict) else {}
        fn = self.tools.get(name)
        error: BaseException | None = None
        if fn is None:
            status, output = "error", f"unknown tool {name!r}"
        else:
            try:
                value = fn(**arguments)
                output = value if isinstance(value, str) else json.dumps(value, default=str)
                status = "success"
            except Exception as exc:  # a tool failure goes back to the model, as in production
                error = exc
                reason = _blocked_reason(exc)
                status = "blocked" if reason is not None else "error"
                output = (f"blocked by agentguard: {reason}" if reason is not None
                          else f"{type(exc).__name__}: {exc}")
        run.tools.append(ToolOutcome(name, str(use.get("toolUseId")), dict(arguments), status,
                                     output[:_MAX_RESULT], error))
        return {"toolResult": {"toolUseId": use.get("toolUseId"),
                               "status": "success" if status == "success" else "error",
                               "content": [{"text": output[:_MAX_RESULT]}]}}
