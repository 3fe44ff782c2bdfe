"""``InvokeModel`` body shapes of the model families on Bedrock, as chat messages and usage.

``InvokeModel`` carries the model vendor's own JSON. Families covered: Anthropic Messages
(``anthropic_version``), Amazon Nova (``schemaVersion: messages-v1`` or a Converse-like
``messages`` list), Amazon Titan Text, Meta Llama, Mistral (prompt and chat-completion forms)
and Cohere Command. A family is recognised from the model id (also inside an inference profile
id or ARN, e.g. ``us.anthropic.claude-...``) and, failing that, from the body's shape.
Messages come out in the same plain-dict form every integration uses
(``role``, ``content``, ``tool_calls``, ``tool_call_id``).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "ModelReply",
    "StreamAccumulator",
    "family_of",
    "parse_request",
    "parse_response",
    "text_of",
]

_FAMILIES = (("anthropic.", "anthropic"), ("amazon.nova", "nova"), ("amazon.titan", "titan"),
             ("meta.", "llama"), ("mistral.", "mistral"), ("cohere.", "cohere"),
             ("ai21.", "ai21"), ("deepseek.", "deepseek"))
# Text kept per stream while accumulating (the span shows less; the Guard sees this much).
MAX_TEXT = 256 * 1024
MAX_BLOCKS = 256


def family_of(model_id: str | None, body: Any = None) -> str:
    """The vendor family of a Bedrock model id (or of a request body when the id says nothing)."""
    model = (model_id or "").lower()
    for marker, family in _FAMILIES:
        if marker in model:
            return family
    if isinstance(body, dict):
        if "anthropic_version" in body:
            return "anthropic"
        if body.get("schemaVersion") == "messages-v1" or isinstance(body.get("inferenceConfig"),
                                                                     dict):
            return "nova"
        if "inputText" in body:
            return "titan"
        if "max_gen_len" in body:
            return "llama"
    return "unknown"


def text_of(content: Any) -> str:
    """Text of an Anthropic/Converse-style content list (or a plain string)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return "" if content is None else str(content)
    parts: list[str] = []
    for block in content[:MAX_BLOCKS]:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict):
            if isinstance(block.get("text"), str):
                parts.append(block["text"])
            elif "json" in block:
                parts.append(json.dumps(block["json"], default=str))
            else:
                kind = block.get("type") or next(iter(block), "block")
                parts.append(f"<{kind}>")
    return "\n".join(parts)


def anthropic_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Messages of an Anthropic Messages request: system, turns, ``tool_use`` and ``tool_result``."""
    out: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        out.append({"role": "system", "content": text_of(system)})
    for message in _list(body.get("messages")):
        if not isinstance(message, dict):
            continue
        role = str(message.get("role", "user"))
        content = message.get("content")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for block in _list(content):
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "tool_result":
                # Tool output is untrusted content; it travels as its own "tool" message.
                out.append({"role": "tool", "tool_call_id": block.get("tool_use_id"),
                            "content": text_of(block.get("content"))})
            elif kind == "tool_use":
                calls.append({"id": block.get("id"), "name": block.get("name"),
                              "arguments": block.get("input")})
            elif isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif kind:
                texts.append(f"<{kind}>")
        if texts or calls:
            item: dict[str, Any] = {"role": role, "content": "\n".join(texts)}
            if calls:
                item["tool_calls"] = calls
            out.append(item)
    return out


def converse_messages(messages: Any, system: Any = None) -> list[dict[str, Any]]:
    """Messages in the Converse shape (also Nova's): ``text``, ``toolUse`` and ``toolResult``."""
    out: list[dict[str, Any]] = []
    if system:
        text = text_of([block for block in _list(system)
                         if isinstance(block, dict) and "cachePoint" not in block])
        if text:
            out.append({"role": "system", "content": text})
    for message in _list(messages):
        if not isinstance(message, dict):
            continue
        role = str(message.get("role", "user"))
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for block in _list(message.get("content")):
            if not isinstance(block, dict):
                continue
            if "text" in block:
                texts.append(str(block["text"]))
            elif isinstance(block.get("toolResult"), dict):
                result = block["toolResult"]
                out.append({"role": "tool", "tool_call_id": result.get("toolUseId"),
                            "content": text_of(result.get("content"))})
            elif isinstance(block.get("toolUse"), dict):
                use = block["toolUse"]
                calls.append({"id": use.get("toolUseId"), "name": use.get("name"),
                              "arguments": use.get("input")})
            elif isinstance(block.get("guardContent"), dict):
                texts.append(text_of([block["guardContent"].get("text") or {}]))
            elif "cachePoint" not in block:
                texts.append(f"<{next(iter(block), 'block')}>")
        if texts or calls:
            entry: dict[str, Any] = {"role": role, "content": "\n".join(texts)}
            if calls:
                entry["tool_calls"] = calls
            out.append(entry)
    return out


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _number(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def parse_request(family: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]],
                                                                  dict[str, Any]]:
    """The messages and the sampling parameters of an ``InvokeModel`` request body."""
    params: dict[str, Any] = {}
    messages: list[dict[str, Any]] = []
    if family == "anthropic":
        messages = anthropic_messages(body)
        params = {"max_tokens": body.get("max_tokens"), "temperature": body.get("temperature"),
                  "top_p": body.get("top_p"), "stop_sequences": body.get("stop_sequences")}
    elif family == "nova":
        messages = converse_messages(body.get("messages"), body.get("system"))
        config = _map(body.get("inferenceConfig"))
        params = {"max_tokens": config.get("maxTokens", config.get("max_new_tokens")),
                  "temperature": config.get("temperature"),
                  "top_p": config.get("topP", config.get("top_p")),
                  "stop_sequences": config.get("stopSequences")}
    elif family == "titan":
        messages = [{"role": "user", "content": str(body.get("inputText", ""))}]
        config = _map(body.get("textGenerationConfig"))
        params = {"max_tokens": config.get("maxTokenCount"), "temperature": config.get("temperature"),
                  "top_p": config.get("topP"), "stop_sequences": config.get("stopSequences")}
    elif family in ("llama", "mistral", "cohere", "deepseek", "unknown", "ai21"):
        if isinstance(body.get("messages"), list):
            messages = [{"role": str(m.get("role", "user")), "content": text_of(m.get("content"))}
                        for m in body["messages"] if isinstance(m, dict)]
        elif isinstance(body.get("message"), str):  # Cohere Command R
            messages = [{"role": "user", "content": body["message"]}]
        elif isinstance(body.get("prompt"), str):
            messages = [{"role": "user", "content": body["prompt"]}]
        params = {"max_tokens": body.get("max_gen_len", body.get("max_tokens")),
                  "temperature": body.get("temperature"),
                  "top_p": body.get("top_p", body.get("p")), "stop_sequences": body.get("stop")}
    return messages, {k: v for k, v in params.items() if v is not None}


class ModelReply:
    """What a model answered: output messages, finish reasons, usage, response id and model."""

    __slots__ = ("finish_reasons", "input_tokens", "output", "output_tokens", "response_id",
                 "response_model")

    def __init__(self) -> None:
        self.output: list[dict[str, Any]] = []
        self.finish_reasons: list[str] = []
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.response_id: str | None = None
        self.response_model: str | None = None


def _anthropic_output(content: Any) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in _list(content):
        if not isinstance(block, dict):
            continue
        if block.get("type") == "tool_use":
            calls.append({"id": block.get("id"), "name": block.get("name"),
                          "arguments": block.get("input")})
        elif isinstance(block.get("text"), str):
            texts.append(block["text"])
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if calls:
        message["tool_calls"] = calls
    return message


def converse_output(message: Any) -> dict[str, Any]:
    """The assistant message of a Converse / Nova response (text and ``toolUse`` requests)."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    content = message.get("content") if isinstance(message, dict) else None
    for block in _list(content):
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            calls.append({"id": use.get("toolUseId"), "name": use.get("name"),
                          "arguments": use.get("input")})
        elif isinstance(block.get("text"), str):
            texts.append(block["text"])
    out: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if calls:
        out["tool_calls"] = calls
    return out


def parse_response(family: str, body: dict[str, Any]) -> ModelReply:
    """An ``InvokeModel`` response body as a :class:`ModelReply`."""
    reply = ModelReply()
    if family == "anthropic":
        reply.output = [_anthropic_output(body.get("content"))]
        if body.get("stop_reason"):
            reply.finish_reasons = [str(body["stop_reason"])]
        usage = _map(body.get("usage"))
        reply.input_tokens = _number(usage.get("input_tokens"))
        reply.output_tokens = _number(usage.get("output_tokens"))
        reply.response_id = body.get("id")
        reply.response_model = body.get("model")
    elif family == "nova":
        output = _map(body.get("output"))
        reply.output = [converse_output(output.get("message"))]
        if body.get("stopReason"):
            reply.finish_reasons = [str(body["stopReason"])]
        usage = _map(body.get("usage"))
        reply.input_tokens = _number(usage.get("inputTokens"))
        reply.output_tokens = _number(usage.get("outputTokens"))
    elif family == "titan":
        results = [r for r in _list(body.get("results")) if isinstance(r, dict)]
        reply.output = [{"role": "assistant", "content": str(r.get("outputText", ""))}
                        for r in results]
        reply.finish_reasons = [str(r["completionReason"]) for r in results
                                if r.get("completionReason")]
        reply.input_tokens = _number(body.get("inputTextTokenCount"))
        counts = [_number(r.get("tokenCount")) for r in results]
        reply.output_tokens = sum(c for c in counts if c is not None) if results else None
    elif family == "llama" or "generation" in body:
        reply.output = [{"role": "assistant", "content": str(body.get("generation", ""))}]
        if body.get("stop_reason"):
            reply.finish_reasons = [str(body["stop_reason"])]
        reply.input_tokens = _number(body.get("prompt_token_count"))
        reply.output_tokens = _number(body.get("generation_token_count"))
    elif isinstance(body.get("outputs"), list):  # Mistral prompt form
        outputs = [o for o in body["outputs"] if isinstance(o, dict)]
        reply.output = [{"role": "assistant", "content": str(o.get("text", ""))} for o in outputs]
        reply.finish_reasons = [str(o["stop_reason"]) for o in outputs if o.get("stop_reason")]
    elif isinstance(body.get("choices"), list):  # chat-completion form (Mistral, DeepSeek)
        for choice in body["choices"]:
            if not isinstance(choice, dict):
                continue
            message = _map(choice.get("message"))
            reply.output.append({"role": "assistant", "content": text_of(message.get("content"))})
            if choice.get("finish_reason") or choice.get("stop_reason"):
                reply.finish_reasons.append(str(choice.get("finish_reason")
                                                or choice.get("stop_reason")))
        usage = _map(body.get("usage"))
        reply.input_tokens = _number(usage.get("prompt_tokens"))
        reply.output_tokens = _number(usage.get("completion_tokens"))
    elif isinstance(body.get("text"), str):  # Cohere Command R
        reply.output = [{"role": "assistant", "content": body["text"]}]
        if body.get("finish_reason"):
            reply.finish_reasons = [str(body["finish_reason"])]
    return reply


class StreamAccumulator:
    """Rebuilds the answer from the chunks of ``InvokeModelWithResponseStream`` (bounded)."""

    __slots__ = ("_blocks", "_size", "family", "reply")

    def __init__(self, family: str) -> None:
        self.family = family
        self.reply = ModelReply()
        # content block index → [kind, text or JSON fragments, tool id, tool name]
        self._blocks: dict[int, list[Any]] = {}
        self._size = 0

    def _append(self, index: int, kind: str, text: str, call_id: Any = None,
                name: Any = None) -> None:
        block = self._blocks.get(index)
        if block is None:
            if len(self._blocks) >= MAX_BLOCKS:
                return
            block = self._blocks[index] = [kind, [], call_id, name]
        if text and self._size < MAX_TEXT:
            text = text[:MAX_TEXT - self._size]
            block[1].append(text)
            self._size += len(text)

    def add(self, chunk: dict[str, Any]) -> None:
        """One decoded chunk (the JSON inside ``{"chunk": {"bytes": ...}}``)."""
        metrics = chunk.get("amazon-bedrock-invocationMetrics")
        if isinstance(metrics, dict):
            self.reply.input_tokens = _number(metrics.get("inputTokenCount"))
            self.reply.output_tokens = _number(metrics.get("outputTokenCount"))
        family = self.family
        if family == "anthropic":
            self._anthropic(chunk)
        elif family == "nova":
            self._nova(chunk)
        elif family == "titan":
            if isinstance(chunk.get("outputText"), str):
                self._append(0, "text", chunk["outputText"])
            if chunk.get("completionReason"):
                self.reply.finish_reasons = [str(chunk["completionReason"])]
        elif isinstance(chunk.get("generation"), str):
            self._append(0, "text", chunk["generation"])
            if chunk.get("stop_reason"):
                self.reply.finish_reasons = [str(chunk["stop_reason"])]
        elif isinstance(chunk.get("outputs"), list):
            for output in chunk["outputs"]:
                if isinstance(output, dict):
                    self._append(0, "text", str(output.get("text", "")))
                    if output.get("stop_reason"):
                        self.reply.finish_reasons = [str(output["stop_reason"])]
        elif isinstance(chunk.get("text"), str):
            self._append(0, "text", chunk["text"])

    def _anthropic(self, chunk: dict[str, Any]) -> None:
        kind = chunk.get("type")
        if kind == "content_block_delta":
            delta = _map(chunk.get("delta"))
            index = _number(chunk.get("index")) or 0
            if delta.get("type") == "input_json_delta":
                self._append(index, "tool", str(delta.get("partial_json", "")))
            elif isinstance(delta.get("text"), str):
                self._append(index, "text", delta["text"])
        elif kind == "content_block_start":
            block = _map(chunk.get("content_block"))
            index = _number(chunk.get("index")) or 0
            if block.get("type") == "tool_use":
                self._append(index, "tool", "", block.get("id"), block.get("name"))
            elif isinstance(block.get("text"), str):
                self._append(index, "text", block["text"])
        elif kind == "message_start":
            message = _map(chunk.get("message"))
            self.reply.response_id = message.get("id")
            self.reply.response_model = message.get("model")
            usage = _map(message.get("usage"))
            if self.reply.input_tokens is None:
                self.reply.input_tokens = _number(usage.get("input_tokens"))
        elif kind == "message_delta":
            delta = _map(chunk.get("delta"))
            if delta.get("stop_reason"):
                self.reply.finish_reasons = [str(delta["stop_reason"])]
            usage = _map(chunk.get("usage"))
            if usage.get("output_tokens") is not None and self.reply.output_tokens is None:
                self.reply.output_tokens = _number(usage.get("output_tokens"))

    def _nova(self, chunk: dict[str, Any]) -> None:
        if isinstance(chunk.get("contentBlockDelta"), dict):
            event = chunk["contentBlockDelta"]
            delta = _map(event.get("delta"))
            index = _number(event.get("contentBlockIndex")) or 0
            if isinstance(delta.get("text"), str):
                self._append(index, "text", delta["text"])
            elif isinstance(delta.get("toolUse"), dict):
                self._append(index, "tool", str(delta["toolUse"].get("input", "")))
        elif isinstance(chunk.get("contentBlockStart"), dict):
            event = chunk["contentBlockStart"]
            start = _map(event.get("start"))
            use = start.get("toolUse")
            if isinstance(use, dict):
                self._append(_number(event.get("contentBlockIndex")) or 0, "tool", "",
                             use.get("toolUseId"), use.get("name"))
        elif isinstance(chunk.get("messageStop"), dict):
            reason = chunk["messageStop"].get("stopReason")
            if reason:
                self.reply.finish_reasons = [str(reason)]
        elif isinstance(chunk.get("metadata"), dict):
            usage = chunk["metadata"].get("usage")
            if isinstance(usage, dict):
                self.reply.input_tokens = _number(usage.get("inputTokens"))
                self.reply.output_tokens = _number(usage.get("outputTokens"))

    def result(self) -> ModelReply:
        """The reply so far (complete once the stream ended)."""
        self.reply.output = [assemble(self._blocks)] if self._blocks else []
        return self.reply


def assemble(blocks: dict[int, list[Any]]) -> dict[str, Any]:
    """One assistant message from accumulated blocks ``[kind, fragments, tool id, tool name]``."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for index in sorted(blocks):
        kind, fragments, call_id, name = blocks[index]
        joined = "".join(fragments)
        if kind == "tool":
            try:
                arguments: Any = json.loads(joined) if joined else {}
            except ValueError:
                arguments = joined
            calls.append({"id": call_id, "name": name, "arguments": arguments})
        else:
            texts.append(joined)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if calls:
        message["tool_calls"] = calls
    return message
