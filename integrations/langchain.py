"""LangChain: tools, chat models and retrievers, patched on ``langchain_core`` base classes.

Targets are the base-class entry points every implementation goes through, so one patch covers
``@tool``, ``StructuredTool``, every chat model and every retriever:

* ``BaseTool.run`` / ``BaseTool.arun``: what ``invoke`` / ``ainvoke`` (and LangGraph's
  ``ToolNode``) call, with the parsed input and the tool call id;
* ``BaseChatModel.generate`` / ``agenerate`` / ``stream`` / ``astream``: ``invoke`` goes through
  ``generate``, streaming bypasses it;
* ``BaseRetriever.invoke`` / ``ainvoke``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from opentelemetry.trace import Status, StatusCode

from agentguard import _state, semconv
from agentguard._context import current_frame
from agentguard._errors import internal_error
from agentguard._genai import REDACTED_REASONING
from agentguard._guard import Guard, Operation, error_text
from agentguard.findings import Finding, ToolCallBlocked
from agentguard.integrations._base import Integration
from agentguard.integrations._streams import (
    StreamWatch,
    adrive,
    asked_in,
    drive,
    mark_failed,
    opened_in,
)
from agentguard.sensors import OperationBlocked

__all__ = ["LangChainIntegration", "answered_tool_call", "message_to_dict"]

_SUPPRESS_CHAT = "chat"

_PROVIDERS = {
    "amazon_bedrock": "aws.bedrock",
    "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "google_vertexai": "gcp.vertex_ai",
    "google_genai": "gcp.gemini",
    "mistralai": "mistral_ai",
}

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool",
          "function": "tool", "chat": "user", "developer": "system",
          # A streamed answer is assembled from chunks, whose type names the class.
          "AIMessageChunk": "assistant", "HumanMessageChunk": "user",
          "SystemMessageChunk": "system", "ToolMessageChunk": "tool",
          "FunctionMessageChunk": "tool", "ChatMessageChunk": "user"}
# Message types whose ``role`` attribute says who spoke (``ChatMessage``).
_CUSTOM_ROLE = frozenset({"chat", "ChatMessageChunk"})


# Content blocks holding a model's reasoning: Anthropic ``thinking`` / ``redacted_thinking``
# (langchain-anthropic, langchain-aws ChatBedrock), langchain-aws Converse ``reasoning_content``,
# LangChain's standard ``reasoning`` block and OpenAI's reasoning items (``summary``).
_REASONING_BLOCKS = frozenset({"thinking", "redacted_thinking", "reasoning_content", "reasoning"})


def _block_reasoning(block: dict[str, Any]) -> str:
    """The reasoning text of a reasoning block; :data:`REDACTED_REASONING` for one the provider
    returned only encrypted (the opaque data and the signature are never read)."""
    kind = block.get("type")
    if kind == "redacted_thinking":
        return REDACTED_REASONING
    if kind == "thinking":
        text = block.get("thinking")
    elif kind == "reasoning_content":
        inner = block.get("reasoning_content")
        inner = inner if isinstance(inner, dict) else {}
        text = inner.get("text")
        if not isinstance(text, str) and "redacted_content" in inner:
            return REDACTED_REASONING
    else:  # "reasoning"
        text = block.get("reasoning")
        if not isinstance(text, str) and isinstance(block.get("summary"), list):
            text = "\n\n".join(str(item["text"]) for item in block["summary"]
                               if isinstance(item, dict) and isinstance(item.get("text"), str))
        if not text and block.get("encrypted_content"):
            return REDACTED_REASONING
    return text if isinstance(text, str) else ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict):
                if block.get("type") in _REASONING_BLOCKS:
                    continue  # the model's reasoning, kept apart from what it says
                if isinstance(block.get("text"), str):
                    parts.append(block["text"])
                else:
                    parts.append(f"<{block.get('type', 'block')}>")
        return "\n".join(parts)
    return str(content)


def _reasoning(content: Any, extra: Any) -> str:
    """A message's reasoning: its reasoning content blocks, else the ``reasoning_content``
    (DeepSeek, Qwen and others through their LangChain packages) or ``thinking`` (langchain-aws
    ChatBedrock) that its ``additional_kwargs`` hold."""
    pieces: list[str] = []
    if isinstance(content, list):
        pieces = [_block_reasoning(block) for block in content
                  if isinstance(block, dict) and block.get("type") in _REASONING_BLOCKS]
    joined = "\n\n".join(piece for piece in pieces if piece)
    if joined or not isinstance(extra, dict):
        return joined
    text = extra.get("reasoning_content")
    if not isinstance(text, str):
        thinking = extra.get("thinking")
        text = thinking.get("text") if isinstance(thinking, dict) else None
    return text if isinstance(text, str) else ""


def message_to_dict(message: Any) -> dict[str, Any]:
    """A LangChain message (or a ``(role, text)`` tuple, or a plain string) as a plain dict;
    the model's reasoning (thinking) as ``reasoning``, apart from the text of ``content``."""
    out: dict[str, Any]
    if isinstance(message, str):
        return {"role": "user", "content": message}
    if isinstance(message, tuple) and len(message) == 2:
        role = str(message[0])
        return {"role": _ROLES.get(role, role), "content": _content_text(message[1])}
    if isinstance(message, dict):
        role = str(message.get("role", message.get("type", "user")))
        out = {"role": _ROLES.get(role, role), "content": _content_text(message.get("content"))}
        reasoning = _reasoning(message.get("content"), message.get("additional_kwargs"))
        if reasoning:
            out["reasoning"] = reasoning
        return out
    kind = getattr(message, "type", "unknown")
    role = _ROLES.get(kind, kind)
    if kind in _CUSTOM_ROLE and isinstance(getattr(message, "role", None), str):
        role = _ROLES.get(message.role, message.role)
    content = getattr(message, "content", "")
    out = {"role": role, "content": _content_text(content)}
    reasoning = _reasoning(content, getattr(message, "additional_kwargs", None))
    if reasoning:
        out["reasoning"] = reasoning
    tool_calls = getattr(message, "tool_calls", None)
    if tool_calls:
        out["tool_calls"] = [
            {"id": call.get("id"), "name": call.get("name"), "arguments": call.get("args")}
            for call in tool_calls
        ]
    tool_call_id = getattr(message, "tool_call_id", None)
    if tool_call_id:
        out["tool_call_id"] = tool_call_id
    name = getattr(message, "name", None)
    if name:
        out["name"] = name
    return out


# -- tools ---------------------------------------------------------------------------------------

# (tool class, schema, function, input keys) → the keys LangChain injects (not from the model).
_INJECTED: dict[tuple[Any, ...], frozenset[str]] = {}
_INJECTED_LIMIT = 4096


def _tool_arguments(instance: Any, tool_input: Any) -> Any:
    """The arguments the model asked for: injected ones (graph state, runtime, store) dropped."""
    if not isinstance(tool_input, dict):
        return tool_input
    key = (type(instance), id(instance.args_schema), id(getattr(instance, "func", None)),
           frozenset(tool_input))
    injected = _INJECTED.get(key)
    if injected is None:
        # Asking LangChain which keys it filters is slow; the answer depends only on the tool's
        # schema and signature and on which keys are present, so it is cached.
        try:
            kept = instance._filter_injected_args(tool_input)
        except Exception:
            return tool_input
        injected = frozenset(k for k in tool_input if k not in kept)
        if len(_INJECTED) >= _INJECTED_LIMIT:
            _INJECTED.clear()
        _INJECTED[key] = injected
    if not injected:
        return tool_input
    return {k: v for k, v in tool_input.items() if k not in injected}


# Values of a LangGraph ``Command``'s state update, and messages in one, looked at for the tool
# messages it carries.
_MAX_UPDATE_ITEMS = 64


def _is_tool_message(value: Any) -> bool:
    return getattr(value, "type", None) == "tool" and hasattr(value, "content")


def _is_new_message(value: Any) -> bool:
    """Whether ``value`` is a message other than a tool message that a tool made itself (a page
    it read, handed to the model as a user message): messages already in the graph's state carry
    the id LangGraph gave them, so a handoff's copy of the history is left out."""
    kind = getattr(value, "type", None)
    return kind != "tool" and kind in _ROLES and hasattr(value, "content") and \
        getattr(value, "id", None) is None


def _update_messages(command: Any) -> list[Any]:
    """The tool messages in a LangGraph ``Command``'s state update (a dict of channels, or a
    list of ``(channel, value)`` pairs), whatever the channel of the messages is called, and the
    other messages the tool made and adds to the conversation with them."""
    update = getattr(command, "update", None)
    if isinstance(update, dict):
        values = list(update.values())[:_MAX_UPDATE_ITEMS]
    elif isinstance(update, (list, tuple)):
        values = [pair[1] for pair in update[:_MAX_UPDATE_ITEMS]
                  if isinstance(pair, tuple) and len(pair) == 2]
    else:
        return []
    found: list[Any] = []
    for value in values:
        items = value[:_MAX_UPDATE_ITEMS] if isinstance(value, (list, tuple)) else [value]
        found.extend(item for item in items if _is_tool_message(item) or _is_new_message(item))
    return found


def _tool_messages(output: Any, call_id: Any) -> list[Any] | None:
    """The messages that carry a tool's answer to the model, or ``None`` when the output is not
    wrapped in any: a ``ToolMessage`` (LangChain wraps the content in one when there is a call
    id), or what a LangGraph ``Command`` (or a list of them) adds to the conversation: its tool
    message and any message the tool made to go with it (all read by the model, so all judged
    as the tool's result)."""
    if _is_tool_message(output):
        return [output]
    # A Command is recognised by its shape, so LangGraph is never imported here.
    if isinstance(output, list):
        items = output[:_MAX_UPDATE_ITEMS]
    elif type(output).__name__ == "Command" and hasattr(output, "update"):
        items = [output]
    else:
        return None
    messages: list[Any] = []
    for item in items:
        if _is_tool_message(item):
            messages.append(item)
        elif type(item).__name__ == "Command":
            messages.extend(_update_messages(item))
    # The tool message ToolNode answers the model's call with; other tool messages in the update
    # are history.
    if call_id is not None and any(getattr(m, "tool_call_id", None) == call_id
                                   for m in messages):
        messages = [m for m in messages if not _is_tool_message(m)
                    or getattr(m, "tool_call_id", None) == call_id]
    return messages or None


def _tool_output(output: Any, call_id: Any = None) -> tuple[Any, Any]:
    """What the model gets from a tool's output (recorded and judged as the tool's result), and
    the tool message saying the tool failed, if one does (a ``ToolException`` the tool's
    ``handle_tool_error`` turned into an answer), else ``None``."""
    try:
        messages = _tool_messages(output, call_id)
        if messages is None:
            return output, None
        failed = next((m for m in messages if getattr(m, "status", None) == "error"), None)
        if len(messages) == 1:
            return messages[0].content, failed
        return [m.content for m in messages], failed
    except Exception:  # the tool's own object, whose attribute lookup raises: judged as it is
        return output, None


# The conventions' ``error.type`` for an error whose class is not known.
_ERROR_OTHER = "_OTHER"


def _mark_tool_error(op: Operation, message: Any) -> str:
    """Give ``op``'s span the error status of a tool failure LangChain reported to the model as
    an error tool message (the exception itself was handled inside the tool and is gone), and
    return the call's ``error``: the message's text, the only part of the error left."""
    error = "tool error"
    try:
        content = _content_text(message.content)
        error = content or error
        capture = op.guard.capture
        text = capture.text(content) if capture.mode in ("full", "redacted") else None
        op.span.set_status(Status(StatusCode.ERROR, (f"tool error: {text}" if text else
                                                     "tool error")[:512]))
        op.span.set_attribute(semconv.ERROR_TYPE, _ERROR_OTHER)
    except Exception as exc:
        internal_error("tool error status", exc)
    return error


# Tool calls whose tool failed with an error LangChain handled (a ``ToolException`` with
# ``handle_tool_error``, invalid input with ``handle_validation_error``), each with that error,
# until the call's result is recorded: the tool's answer is then the handler's text (a plain
# string on a direct call, without the error status a tool message carries), and LangChain
# keeps the exception nowhere else.
_HANDLED: dict[Operation, BaseException] = {}
_HANDLED_LIMIT = 4096


def _error_handled(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                   ) -> Any:
    content = wrapped(*args, **kwargs)
    if _state.guard is None:
        return content
    try:
        # BaseTool.run / arun call the handler with the tool call's operation current.
        op = current_frame().tool
        error = args[0] if args else kwargs.get("e")
        if op is not None and not op.ended and isinstance(error, BaseException):
            if len(_HANDLED) >= _HANDLED_LIMIT:
                _HANDLED.clear()
            _HANDLED[op] = error
    except Exception as exc:
        internal_error("tool error handled", exc)
    return content


def _mark_handled(op: Operation, error: BaseException) -> None:
    """Give ``op``'s span the error a handler of LangChain's turned into the tool's answer: an
    ``exception`` event (not escaped), error status and ``error.type``, as a tool error that
    propagates gets, while the agent carries on with the answer."""
    try:
        capture = op.guard.capture
        span = op.span
        span.add_event("exception", capture.exception(error))
        span.set_status(Status(StatusCode.ERROR, capture.error_status(error)))
        span.set_attribute(semconv.ERROR_TYPE, type(error).__qualname__)
    except Exception as exc:
        internal_error("tool error status", exc)


def _start_tool(guard: Guard, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                ) -> Operation | None:
    try:
        tool_input = args[0] if args else kwargs.get("tool_input")
        return guard.start_tool(
            instance.name,
            call_id=kwargs.get("tool_call_id"),
            arguments=_tool_arguments(instance, tool_input),
        )
    except ToolCallBlocked:
        raise
    except Exception as exc:
        _start_failed(guard, exc, getattr(instance, "name", None))
        return None


def _start_failed(guard: Guard, exc: Exception, tool: Any) -> None:
    """Contain an internal error starting a tool call; fail closed (block it) if so configured."""
    internal_error("langchain tool start", exc)
    if guard.fails_closed:
        raise ToolCallBlocked(guard.internal_failure_finding(
            "tool start", exc, kind="tool_call", tool=tool)) from exc


def _finish_tool(op: Operation, output: Any) -> None:
    result, failed = _tool_output(output, op.call_id)
    handled = _HANDLED.pop(op, None) if _HANDLED else None
    error = None
    if handled is not None:
        _mark_handled(op, handled)
        error = error_text(handled)
    elif failed is not None:
        error = _mark_tool_error(op, failed)
    verdict = op.end_tool(result, error=error)
    if verdict.blocked:
        finding = verdict.blocking_finding()
        if finding is not None:
            raise ToolCallBlocked(finding)


# Links of an exception's cause/context chain searched for a sensor block.
_MAX_CHAIN = 8


def _sensor_block(exc: BaseException) -> Finding | None:
    """The finding of an agentguard block inside the tool behind ``exc``: a runtime-sensor
    ``PermissionError`` or a blocked cloud call (``CloudCallBlocked``) or nested tool, itself or
    wrapped by an HTTP client or the tool in its own error (``raise ... from``)."""
    current: BaseException | None = exc
    for _ in range(_MAX_CHAIN):
        if current is None:
            return None
        if isinstance(current, (OperationBlocked, ToolCallBlocked)):
            return current.finding
        current = current.__cause__ or current.__context__
    return None


def _blocked_reply(guard: Guard, tool: str, call_id: Any,
                   blocked: Exception, finding: Finding | None = None) -> Any:
    """What a blocked call returns: an error tool message for the model, or the exception.

    With ``on_block="tool_message"`` (the default) and a call the model asked for (it has a tool
    call id), the model gets an error ``ToolMessage`` naming the rule, as LangChain reports a tool
    error, so the agent can recover; the blocked result never reaches it. A direct call from code
    has no model to tell, so it raises, as does every call with ``on_block="raise"``. ``blocked``
    is a :class:`ToolCallBlocked` (its own ``finding``) or the error a runtime-sensor block
    (``finding``) made the tool fail with.
    """
    if guard.config.on_block == "raise" or not call_id:
        raise blocked
    from langchain_core.messages import ToolMessage

    if finding is None:
        finding = blocked.finding if isinstance(blocked, ToolCallBlocked) else None
    if finding is None:
        raise blocked
    return ToolMessage(
        content=f"Error: agentguard blocked this call to {tool} "
                f"[{finding.rule_id}]: {finding.title}",
        tool_call_id=call_id,
        name=tool,
        status="error",
        additional_kwargs={"agentguard_rule_id": finding.rule_id},
    )


def _tool_run(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    guard = _state.guard
    if guard is None:
        return wrapped(*args, **kwargs)
    try:
        op = _start_tool(guard, instance, args, kwargs)
    except ToolCallBlocked as blocked:
        return _blocked_reply(guard, instance.name, kwargs.get("tool_call_id"), blocked)
    if op is None:
        return wrapped(*args, **kwargs)
    # Operation.call, inlined: this wrapper runs on every tool call.
    token = op.activate()
    try:
        output = wrapped(*args, **kwargs)
    except BaseException as exc:
        op.fail(exc)
        op.deactivate(token)
        if _HANDLED:
            _HANDLED.pop(op, None)
        # The runtime sensor or a cloud-call policy refused something the tool did: told to the
        # model like a policy block. Any other error propagates unchanged.
        if not isinstance(exc, Exception):
            raise
        finding = _sensor_block(exc)
        if finding is None:
            raise
        return _blocked_reply(guard, instance.name, kwargs.get("tool_call_id"), exc, finding)
    op.deactivate(token)
    try:
        _finish_tool(op, output)
    except ToolCallBlocked as blocked:
        return _blocked_reply(guard, instance.name, kwargs.get("tool_call_id"), blocked)
    return output


async def _tool_arun(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                     ) -> Any:
    guard = _state.guard
    if guard is None:
        return await wrapped(*args, **kwargs)
    try:
        op = _start_tool(guard, instance, args, kwargs)
    except ToolCallBlocked as blocked:
        return _blocked_reply(guard, instance.name, kwargs.get("tool_call_id"), blocked)
    if op is None:
        return await wrapped(*args, **kwargs)
    try:
        output = await op.acall(wrapped, *args, **kwargs)
    except BaseException as exc:
        if _HANDLED:
            _HANDLED.pop(op, None)
        if not isinstance(exc, Exception):
            raise
        finding = _sensor_block(exc)
        if finding is None:
            raise
        return _blocked_reply(guard, instance.name, kwargs.get("tool_call_id"), exc, finding)
    try:
        _finish_tool(op, output)
    except ToolCallBlocked as blocked:
        return _blocked_reply(guard, instance.name, kwargs.get("tool_call_id"), blocked)
    return output


# How much of a tool name the model chose is kept for a call no tool of the agent's answers:
# the model chooses it, and unbounded it would make every span and finding of the call as large
# (providers allow names of 64 to 128 characters).
_MAX_ANSWERED_NAME = 256


def _requested_name(call: Any) -> str:
    """The name of a call no tool answers, cut to ``_MAX_ANSWERED_NAME`` characters."""
    name = str(call["name"])
    if len(name) <= _MAX_ANSWERED_NAME:
        return name
    return f"{name[:_MAX_ANSWERED_NAME]}...[{len(name) - _MAX_ANSWERED_NAME} more characters]"


def answered_tool_call(guard: Guard, call: Any, answer: Any, *, unknown: bool) -> Any:
    """Trace a call the model asked for that the framework answered with ``answer`` (a tool
    message or ``Command``) without running a ``BaseTool``, and return what the model gets.

    It is the tool call the model made, so it is reported as one: an ``execute_tool`` span with
    the requested name, call id and arguments, judged before (policies, detectors, the
    baseline) and ended with ``answer`` as its result (an error status when ``answer`` says the
    call failed). ``unknown``: nothing answered it but the framework's refusal of a tool the
    agent does not have; span and events say so (``agentguard.tool.unknown``,
    ``ToolCall.unknown``) and no baseline learns it as the agent's. A block answers as for any
    tool (an error tool message naming the rule, or :class:`ToolCallBlocked` with
    ``on_block="raise"``); otherwise the model gets ``answer`` unchanged. A name longer than
    any real tool's is cut (the ``answer`` keeps it whole).
    """
    name = call_id = None
    try:
        name = _requested_name(call)
        call_id = call.get("id")
        op = guard.start_tool(name, call_id=call_id, arguments=call.get("args"),
                              unknown=unknown)
    except ToolCallBlocked as blocked:
        return _blocked_reply(guard, str(name), call_id, blocked)
    except Exception as exc:
        try:
            _start_failed(guard, exc, name)
        except ToolCallBlocked as blocked:
            return _blocked_reply(guard, str(name), call_id, blocked)
        return answer
    try:
        _finish_tool(op, answer)
    except ToolCallBlocked as blocked:
        return _blocked_reply(guard, name, call_id, blocked)
    return answer


# -- chat models ---------------------------------------------------------------------------------

def _model_info(instance: Any, kwargs: dict[str, Any]) -> tuple[str | None, str | None,
                                                                 dict[str, Any]]:
    params: dict[str, Any] = {}
    provider = model = None
    try:
        ls = instance._get_ls_params(stop=kwargs.get("stop"))
        provider = ls.get("ls_provider")
        model = ls.get("ls_model_name")
        if ls.get("ls_temperature") is not None:
            params["temperature"] = ls["ls_temperature"]
        if ls.get("ls_max_tokens") is not None:
            params["max_tokens"] = ls["ls_max_tokens"]
    except Exception:
        pass
    if not model:
        for attribute in ("model_name", "model", "model_id", "deployment_name"):
            value = getattr(instance, attribute, None)
            if isinstance(value, str) and value:
                model = value
                break
    if not provider:
        provider = getattr(instance, "_llm_type", None)
    if isinstance(provider, str):
        provider = _PROVIDERS.get(provider, provider)
    return provider, model, params


def _start_chat(guard: Guard, instance: Any, message_lists: Any, kwargs: dict[str, Any],
                *, stream: bool = False) -> Operation | None:
    try:
        provider, model, params = _model_info(instance, kwargs)
        messages: list[dict[str, Any]] = []
        batch = 0
        if message_lists:
            for message_list in message_lists:
                batch += 1
                messages.extend(message_to_dict(m) for m in message_list)
        attributes: dict[str, Any] = {}
        if batch > 1:
            attributes[semconv.AG_BATCH_SIZE] = batch
        if stream:
            attributes[semconv.AG_STREAM] = True
        # A single request ending with the user's message: in a hand-written loop (no agent
        # invocation around it) that starts a turn of the conversation.
        last = messages[-1] if batch == 1 and messages else None
        turn_text = last["content"] if last is not None and last["role"] == "user" and \
            last["content"] else None
        op = guard.start_chat(provider=provider, model=model, messages=messages,
                              parameters=params, attributes=attributes, turn_text=turn_text)
        op.frame.suppressed = op.frame.suppressed | {_SUPPRESS_CHAT}
        return op
    except ToolCallBlocked:
        raise
    except Exception as exc:
        internal_error("langchain chat start", exc)
        return None


def _plus(total: int | None, value: Any) -> int | None:
    """``total`` plus a token count, when ``value`` is one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (total or 0) + value
    return total


class _Usage:
    """Token counts of a model call, summed over its messages' ``usage_metadata`` (``None``
    where none said)."""

    __slots__ = ("cache_creation", "cache_read", "input", "output", "reasoning")

    def __init__(self) -> None:
        self.input: int | None = None
        self.output: int | None = None
        self.cache_read: int | None = None
        self.cache_creation: int | None = None
        self.reasoning: int | None = None

    def add(self, message: Any) -> None:
        usage = getattr(message, "usage_metadata", None)
        if not isinstance(usage, dict):
            return
        # LangChain's input count already includes the prompt-cache reads and writes that
        # input_token_details breaks out, as the conventions' gen_ai.usage.input_tokens does.
        self.input = _plus(self.input, usage.get("input_tokens"))
        self.output = _plus(self.output, usage.get("output_tokens"))
        details = usage.get("input_token_details")
        if isinstance(details, dict):
            self.cache_read = _plus(self.cache_read, details.get("cache_read"))
            self.cache_creation = _plus(self.cache_creation, details.get("cache_creation"))
        details = usage.get("output_token_details")
        if isinstance(details, dict):
            self.reasoning = _plus(self.reasoning, details.get("reasoning"))

    def record(self, op: Operation) -> None:
        """Set the counts that ``end_chat`` does not take on the chat span."""
        for attribute, value in ((semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, self.cache_read),
                                 (semconv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
                                  self.cache_creation),
                                 (semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, self.reasoning)):
            if value is not None:
                op.span.set_attribute(attribute, value)


def _finish_chat_result(op: Operation, result: Any) -> None:
    try:
        outputs: list[dict[str, Any]] = []
        reasons: list[str] = []
        usage = _Usage()
        response_model = None
        for generations in getattr(result, "generations", None) or []:
            for generation in generations:
                message = getattr(generation, "message", None)
                if message is None:
                    outputs.append({"role": "assistant", "content": str(generation.text)})
                    continue
                outputs.append(message_to_dict(message))
                usage.add(message)
                metadata = getattr(message, "response_metadata", None) or {}
                response_model = response_model or metadata.get("model_name") or \
                    metadata.get("model")
                info = getattr(generation, "generation_info", None) or {}
                reason = info.get("finish_reason") or metadata.get("finish_reason") or \
                    metadata.get("stop_reason")
                if reason:
                    reasons.append(str(reason))
        usage.record(op)
        op.end_chat(outputs, response_model=response_model, input_tokens=usage.input,
                    output_tokens=usage.output, finish_reasons=reasons)
    except Exception as exc:
        internal_error("langchain chat end", exc)
        op.end()


def _suppressed() -> bool:
    return _SUPPRESS_CHAT in current_frame().suppressed


def _messages_arg(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[0] if args else kwargs.get("messages")


def _chat_generate(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                   ) -> Any:
    guard = _state.guard
    if guard is None or _suppressed():
        return wrapped(*args, **kwargs)
    op = _start_chat(guard, instance, _messages_arg(args, kwargs), kwargs)
    if op is None:
        return wrapped(*args, **kwargs)
    result = op.call(wrapped, *args, **kwargs)
    _finish_chat_result(op, result)
    return result


async def _chat_agenerate(wrapped: Any, instance: Any, args: tuple[Any, ...],
                          kwargs: dict[str, Any]) -> Any:
    guard = _state.guard
    if guard is None or _suppressed():
        return await wrapped(*args, **kwargs)
    op = _start_chat(guard, instance, _messages_arg(args, kwargs), kwargs)
    if op is None:
        return await wrapped(*args, **kwargs)
    result = await op.acall(wrapped, *args, **kwargs)
    _finish_chat_result(op, result)
    return result


def _stream_input_messages(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                           ) -> list[list[Any]]:
    value = args[0] if args else kwargs.get("input")
    try:
        return [instance._convert_input(value).to_messages()]
    except Exception:
        return []


class _ChunkCollector(StreamWatch):
    """Accumulates streamed chunks into the answer (bounded in count) and ends the chat span
    with it: the whole answer, or the part the caller read before it stopped reading or the
    stream failed (recorded and judged like the whole one)."""

    __slots__ = ("chunks", "dropped")
    LIMIT = 20_000

    def __init__(self) -> None:
        self.chunks: list[Any] = []
        self.dropped = 0

    def observe(self, chunk: Any) -> None:
        if len(self.chunks) < self.LIMIT:
            self.chunks.append(chunk)
        else:
            self.dropped += 1

    def complete(self, op: Operation) -> None:
        self.finish(op)

    def abandoned(self, op: Operation) -> None:
        try:
            op.span.set_attribute(semconv.AG_STREAM_ABANDONED, True)
        except Exception as exc:
            internal_error("span abandon", exc)
        self.finish(op, "abandoned")

    def failed(self, op: Operation, exc: BaseException) -> None:
        if not self.chunks:
            op.fail(exc)
            return
        mark_failed(op, exc)
        self.finish(op, "error")

    def finish(self, op: Operation, unfinished: str | None = None) -> None:
        try:
            if not self.chunks:
                op.end_chat([])
                return
            from langchain_core.messages.ai import add_ai_message_chunks

            first, *rest = self.chunks
            message = add_ai_message_chunks(first, *rest) if rest else first
            usage = _Usage()
            usage.add(message)
            usage.record(op)
            metadata = getattr(message, "response_metadata", None) or {}
            reason = metadata.get("finish_reason") or metadata.get("stop_reason")
            op.end_chat([message_to_dict(message)], input_tokens=usage.input,
                        output_tokens=usage.output,
                        response_model=metadata.get("model_name") or metadata.get("model"),
                        finish_reasons=[str(reason)] if reason else [], unfinished=unfinished)
        except Exception as exc:
            internal_error("langchain stream end", exc)
            op.end()


def _chat_stream(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                 ) -> Any:
    guard = _state.guard
    if guard is None or _suppressed():
        return wrapped(*args, **kwargs)
    return _traced_chat_stream(guard, wrapped, instance, args, kwargs, asked_in())


def _traced_chat_stream(guard: Guard, wrapped: Any, instance: Any, args: tuple[Any, ...],
                        kwargs: dict[str, Any], asked: object) -> Iterator[Any]:
    op = opened_in(asked, lambda: _start_chat(
        guard, instance, _stream_input_messages(instance, args, kwargs), kwargs, stream=True))
    if op is None:
        yield from wrapped(*args, **kwargs)
        return
    token = op.activate()
    try:
        inner = wrapped(*args, **kwargs)
    finally:
        op.deactivate(token)
    yield from drive(op, inner, _ChunkCollector())


def _chat_astream(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                  ) -> Any:
    guard = _state.guard
    if guard is None or _suppressed():
        return wrapped(*args, **kwargs)

    asked = asked_in()

    def start() -> tuple[Operation | None, AsyncIterator[Any]]:
        op = opened_in(asked, lambda: _start_chat(
            guard, instance, _stream_input_messages(instance, args, kwargs), kwargs,
            stream=True))
        if op is None:
            return None, wrapped(*args, **kwargs)
        token = op.activate()
        try:
            return op, wrapped(*args, **kwargs)
        finally:
            op.deactivate(token)

    return adrive(start, _ChunkCollector())


# -- retrievers ----------------------------------------------------------------------------------

def _document(doc: Any) -> dict[str, Any]:
    metadata = getattr(doc, "metadata", None) or {}
    return {
        "id": getattr(doc, "id", None) or metadata.get("id"),
        "source": metadata.get("source"),
        "content": str(getattr(doc, "page_content", "")),
        "metadata": {k: v for k, v in list(metadata.items())[:32]
                     if isinstance(v, (str, int, float, bool))},
    }


def _start_retrieval(guard: Guard, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                     ) -> Operation | None:
    try:
        query = args[0] if args else kwargs.get("input", "")
        name = instance.get_name() if hasattr(instance, "get_name") else type(instance).__name__
        return guard.start_retrieval(name, query=str(query))
    except ToolCallBlocked:
        raise
    except Exception as exc:
        internal_error("langchain retrieval start", exc)
        return None


def _finish_retrieval(op: Operation, documents: Any) -> None:
    try:
        op.end_retrieval([_document(doc) for doc in documents or []])
    except Exception as exc:
        internal_error("langchain retrieval end", exc)
        op.end()


def _retriever_invoke(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                      ) -> Any:
    guard = _state.guard
    if guard is None:
        return wrapped(*args, **kwargs)
    op = _start_retrieval(guard, instance, args, kwargs)
    if op is None:
        return wrapped(*args, **kwargs)
    documents = op.call(wrapped, *args, **kwargs)
    _finish_retrieval(op, documents)
    return documents


async def _retriever_ainvoke(wrapped: Any, instance: Any, args: tuple[Any, ...],
                             kwargs: dict[str, Any]) -> Any:
    guard = _state.guard
    if guard is None:
        return await wrapped(*args, **kwargs)
    op = _start_retrieval(guard, instance, args, kwargs)
    if op is None:
        return await wrapped(*args, **kwargs)
    documents = await op.acall(wrapped, *args, **kwargs)
    _finish_retrieval(op, documents)
    return documents


class LangChainIntegration(Integration):
    """Tools, chat models and retrievers of ``langchain_core``."""

    name = "langchain"
    targets = (
        "langchain_core.tools.base",
        "langchain_core.language_models.chat_models",
        "langchain_core.retrievers",
    )

    def patch_module(self, target: str, module: Any) -> None:
        if target == "langchain_core.tools.base":
            self.wrap(module.BaseTool, "run", _tool_run)
            self.wrap(module.BaseTool, "arun", _tool_arun)
            # The module's own handlers, which BaseTool.run / arun look up at each call: the
            # only place a handled tool error is seen before it becomes the tool's answer.
            for handler in ("_handle_tool_error", "_handle_validation_error"):
                if callable(getattr(module, handler, None)):
                    self.wrap(module, handler, _error_handled)
        elif target == "langchain_core.language_models.chat_models":
            self.wrap(module.BaseChatModel, "generate", _chat_generate)
            self.wrap(module.BaseChatModel, "agenerate", _chat_agenerate)
            self.wrap(module.BaseChatModel, "stream", _chat_stream)
            self.wrap(module.BaseChatModel, "astream", _chat_astream)
        elif target == "langchain_core.retrievers":
            self.wrap(module.BaseRetriever, "invoke", _retriever_invoke)
            self.wrap(module.BaseRetriever, "ainvoke", _retriever_ainvoke)
        self.patched_modules.add(target)
