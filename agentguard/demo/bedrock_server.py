"""A local Bedrock-compatible HTTP server speaking the real wire formats, with a scriptable model.

bedrock-runtime (``Converse``, ``ConverseStream``, ``InvokeModel``,
``InvokeModelWithResponseStream``; ``InvokeModel`` of an embedding model answers with vectors,
of an image generation model with PNG images; ``StartAsyncInvoke``, ``GetAsyncInvoke`` and
``ListAsyncInvokes``: asynchronous invocations, such as a Nova Reel video, remembered and
reported as completed, nothing written anywhere)
and bedrock-agent-runtime (``InvokeAgent``, ``Retrieve``,
``RetrieveAndGenerate``) over HTTP/1.1 on loopback: JSON bodies for the plain calls, and the AWS
event-stream binary framing (prelude, headers, CRC32 checksums; :func:`encode_message`) sent
chunked for the streaming ones. boto3 clients reach it with ``endpoint_url`` and dummy
credentials, so request signing, retries, response parsing and event-stream decoding all run
for real.

Beside it, for the demo's agents: :class:`S3Server`, a small S3-compatible endpoint (path-style
REST and XML, in memory), and :class:`HttpService`, a plain HTTP service on a loopback address
standing in for the internal APIs around an agent. All stdlib, all on loopback.

Each request takes the next scripted step (:meth:`BedrockServer.push`): a :class:`Reply` (one
model answer, rendered in whatever shape the called API and model family use), a
:class:`Failure` (an AWS error response), :class:`AgentEvents` (an ``InvokeAgent`` stream, or
any event stream answering a streaming model call), :class:`Raw` JSON or a :class:`Body` of
bytes as given. Every request is recorded (:attr:`BedrockServer.requests`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import itertools
import json
import re
import socket
import struct
import threading
import urllib.parse
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

__all__ = [
    "AgentEvents",
    "BedrockServer",
    "Body",
    "Failure",
    "HttpService",
    "Raw",
    "RecordedRequest",
    "Reply",
    "Response",
    "S3Server",
    "agent_chunk",
    "agent_trace",
    "encode_message",
    "event_message",
    "exception_message",
    "return_control",
    "tool_use",
]

_ids = itertools.count(1)

# -- the event-stream framing (application/vnd.amazon.eventstream) ----------------------------------
#
# message := prelude prelude_crc headers payload message_crc
# prelude := total_length:uint32 headers_length:uint32          (big-endian)
# prelude_crc := CRC32 of the 8 prelude bytes; message_crc := CRC32 of everything before it.
# header := name_length:uint8 name value_type:uint8 value       (value by type, below)

_TRUE, _FALSE, _BYTE, _SHORT, _INT, _LONG, _BYTES, _STRING, _TIMESTAMP, _UUID = range(10)


def _header(name: str, value: Any) -> bytes:
    encoded_name = name.encode("utf-8")
    out = struct.pack("!B", len(encoded_name)) + encoded_name
    if value is True:
        return out + struct.pack("!B", _TRUE)
    if value is False:
        return out + struct.pack("!B", _FALSE)
    if isinstance(value, int):
        return out + struct.pack("!Bi", _INT, value)
    if isinstance(value, (bytes, bytearray)):
        return out + struct.pack("!BH", _BYTES, len(value)) + bytes(value)
    text = str(value).encode("utf-8")
    return out + struct.pack("!BH", _STRING, len(text)) + text


def encode_message(headers: dict[str, Any], payload: bytes) -> bytes:
    """One event-stream message: prelude, prelude CRC, headers, payload, message CRC."""
    encoded_headers = b"".join(_header(name, value) for name, value in headers.items())
    total = 4 + 4 + 4 + len(encoded_headers) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded_headers))
    prelude_crc = struct.pack("!I", binascii.crc32(prelude) & 0xFFFFFFFF)
    body = prelude + prelude_crc + encoded_headers + payload
    return body + struct.pack("!I", binascii.crc32(body) & 0xFFFFFFFF)


def _json_bytes(value: Any) -> bytes:
    def default(obj: Any) -> Any:
        if isinstance(obj, (bytes, bytearray)):  # blob members travel base64-encoded in JSON
            return base64.b64encode(obj).decode("ascii")
        raise TypeError(f"not JSON serialisable: {obj!r}")

    return json.dumps(value, default=default).encode("utf-8")


def event_message(event_type: str, payload: dict[str, Any]) -> bytes:
    """An ``event`` message of type ``event_type`` with a JSON payload."""
    return encode_message({":event-type": event_type, ":content-type": "application/json",
                           ":message-type": "event"}, _json_bytes(payload))


def exception_message(exception_type: str, message: str) -> bytes:
    """An ``exception`` message (botocore raises it as ``EventStreamError`` while iterating)."""
    return encode_message({":exception-type": exception_type, ":content-type": "application/json",
                           ":message-type": "exception"}, _json_bytes({"message": message}))


# -- the script ----------------------------------------------------------------------------------

def tool_use(name: str, tool_input: dict[str, Any], tool_use_id: str | None = None
             ) -> dict[str, Any]:
    """A tool call the scripted model makes (Converse ``toolUse`` shape)."""
    return {"toolUseId": tool_use_id or f"tooluse_{next(_ids):04d}", "name": name,
            "input": tool_input}


@dataclass
class Reply:
    """One model answer; rendered in the shape of the API and model family that was called.

    ``reasoning`` is the model's reasoning (extended thinking), sent before the answer with
    ``signature`` as Converse ``reasoningContent`` and Anthropic ``thinking`` blocks (Converse,
    ConverseStream, Nova and Anthropic ``InvokeModel`` and their streams); ``redacted_reasoning``
    a block of reasoning the provider encrypted (``redactedContent``, ``redacted_thinking``).
    ``input_tokens`` counts, as Bedrock does, the tokens neither read from nor written to the
    prompt cache, which ``cache_read_tokens`` and ``cache_write_tokens`` count (sent when not 0).
    """

    text: str = ""
    tool_uses: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None
    input_tokens: int = 11
    output_tokens: int = 7
    # Streams: after this many events, send this exception event instead of the rest.
    fail_after: int | None = None
    exception: str = "modelStreamErrorException"
    reasoning: str = ""
    redacted_reasoning: bytes = b""
    signature: str = "EqMBCkgIARABGAIiQL2sYg5kOAs7Zfake-signature"
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def stop(self) -> str:
        return self.stop_reason or ("tool_use" if self.tool_uses else "end_turn")

    def words(self, text: str | None = None) -> list[str]:
        text = self.text if text is None else text
        parts = text.split(" ")
        return [part if i == 0 else " " + part for i, part in enumerate(parts)] if text else []

    def converse_usage(self) -> dict[str, int]:
        usage = {"inputTokens": self.input_tokens, "outputTokens": self.output_tokens,
                 "totalTokens": self.input_tokens + self.output_tokens + self.cache_read_tokens
                 + self.cache_write_tokens}
        if self.cache_read_tokens or self.cache_write_tokens:
            usage["cacheReadInputTokens"] = self.cache_read_tokens
            usage["cacheWriteInputTokens"] = self.cache_write_tokens
        return usage

    def anthropic_usage(self, output_tokens: int) -> dict[str, int]:
        usage = {"input_tokens": self.input_tokens, "output_tokens": output_tokens}
        if self.cache_read_tokens or self.cache_write_tokens:
            usage["cache_read_input_tokens"] = self.cache_read_tokens
            usage["cache_creation_input_tokens"] = self.cache_write_tokens
        return usage

    def invocation_metrics(self) -> dict[str, int]:
        """The ``amazon-bedrock-invocationMetrics`` of a stream's last chunk."""
        metrics = {"inputTokenCount": self.input_tokens, "outputTokenCount": self.output_tokens,
                   "invocationLatency": 12, "firstByteLatency": 3}
        if self.cache_read_tokens or self.cache_write_tokens:
            metrics["cacheReadInputTokenCount"] = self.cache_read_tokens
            metrics["cacheWriteInputTokenCount"] = self.cache_write_tokens
        return metrics

    def usage_headers(self) -> dict[str, str]:
        """InvokeModel's token count headers."""
        headers = {"X-Amzn-Bedrock-Input-Token-Count": str(self.input_tokens),
                   "X-Amzn-Bedrock-Output-Token-Count": str(self.output_tokens)}
        if self.cache_read_tokens or self.cache_write_tokens:
            headers["X-Amzn-Bedrock-Cache-Read-Input-Token-Count"] = str(self.cache_read_tokens)
            headers["X-Amzn-Bedrock-Cache-Write-Input-Token-Count"] = str(
                self.cache_write_tokens)
        return headers


@dataclass
class Failure:
    """An AWS error response (``x-amzn-ErrorType`` header and a JSON message)."""

    status: int
    code: str
    message: str = "scripted failure"


@dataclass
class Raw:
    """A JSON response as given."""

    body: dict[str, Any]
    status: int = 200


@dataclass
class Body:
    """A response body sent as given: bytes that need not be JSON, of any size (with a
    ``Content-Type`` of ``application/json`` unless ``headers`` name another)."""

    data: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class AgentEvents:
    """An ``InvokeAgent`` or ``RetrieveAndGenerateStream`` event stream: ``(event type,
    payload)`` pairs, or messages already encoded (an :func:`exception_message` breaks it)."""

    events: list[tuple[str, dict[str, Any]] | bytes]

    def messages(self) -> list[bytes]:
        return [item if isinstance(item, bytes) else event_message(*item) for item in self.events]


def agent_chunk(text: str) -> tuple[str, dict[str, Any]]:
    """A piece of the agent's answer."""
    return "chunk", {"bytes": text.encode("utf-8")}


def agent_trace(agent_id: str = "AGENT1", **trace: Any) -> tuple[str, dict[str, Any]]:
    """A trace event, e.g. ``agent_trace(orchestrationTrace={...})``."""
    return "trace", {"agentId": agent_id, "agentAliasId": "ALIAS1", "sessionId": "session-1",
                     "agentVersion": "1", "trace": trace}


def return_control(invocation_id: str, *inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A ``returnControl`` event handing ``inputs`` (function/API invocation inputs) to the app."""
    return "returnControl", {"invocationId": invocation_id, "invocationInputs": list(inputs)}


@dataclass
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


# -- rendering -----------------------------------------------------------------------------------

def _family(model_id: str) -> str:
    model = model_id.lower()
    for marker, family in (("amazon.titan-embed", "titan-embed"), ("cohere.embed", "cohere-embed"),
                           ("amazon.nova-2-multimodal-embeddings", "nova-embed"),
                           ("amazon.titan-image-generator", "titan-image"),
                           ("amazon.nova-canvas", "titan-image"),  # Titan's request shape
                           ("stability.stable-diffusion-xl", "stability-sdxl"),
                           ("stability.", "stability"),
                           ("anthropic.", "anthropic"), ("amazon.nova", "nova"),
                           ("amazon.titan", "titan"), ("meta.", "llama"), ("mistral.", "mistral")):
        if marker in model:
            return family
    return "anthropic"


_EMBEDDING_FAMILIES = frozenset({"titan-embed", "cohere-embed", "nova-embed"})
_IMAGE_FAMILIES = frozenset({"titan-image", "stability", "stability-sdxl"})
# What the server draws at most (Bedrock refuses more): pixels a side, images per call.
_MAX_SIDE = 4096
_MAX_IMAGES = 5
# What the server answers at most (Bedrock refuses more): dimensions per vector, inputs per call.
_MAX_DIMENSIONS = 4096
_MAX_INPUTS = 96


def _vector(size: Any, seed: int) -> list[float]:
    """A made-up embedding: ``size`` floats in [-0.5, 0.5), the same for the same seed;
    ``ValueError`` for a size Bedrock would refuse."""
    size = int(size)
    if not 0 < size <= _MAX_DIMENSIONS:
        raise ValueError(f"dimensions must be within 1 and {_MAX_DIMENSIONS}")
    return [((seed * 7919 + i * 104729) % 1000) / 1000 - 0.5 for i in range(size)]


def _embedding_json(family: str, model: str, body: dict[str, Any], reply: Reply
                    ) -> dict[str, Any]:
    """An embedding answer in the model's shape, with as many dimensions as the request asks
    for (else the model's default)."""
    if family == "titan-embed":
        config = body.get("embeddingConfig") or {}
        size = (body.get("dimensions") or config.get("outputEmbeddingLength")
                or (1024 if "v2" in model or "image" in model else 1536))
        vector = _vector(size, len(str(body.get("inputText", ""))))
        out: dict[str, Any] = {"embedding": vector, "inputTextTokenCount": reply.input_tokens}
        types = body.get("embeddingTypes")
        if types:
            out["embeddingsByType"] = {kind: vector if kind == "float"
                                       else [1 if value > 0 else 0 for value in vector]
                                       for kind in types}
        return out
    if family == "nova-embed":
        params = body.get("singleEmbeddingParams") or {}
        size = params.get("embeddingDimension") or 3072
        return {"embeddings": [{"embeddingType": "TEXT", "embedding": _vector(size, 1)}]}
    inputs = body.get("texts") or body.get("images") or body.get("inputs") or []
    if not isinstance(inputs, list) or len(inputs) > _MAX_INPUTS:
        raise ValueError(f"at most {_MAX_INPUTS} inputs")
    size = body.get("output_dimension") or (1536 if "v4" in model else 1024)
    vectors = [_vector(size, index) for index in range(len(inputs))]
    out = {"id": f"emb-{next(_ids):04d}", "texts": body.get("texts") or []}
    types = body.get("embedding_types")
    if types:
        out["embeddings"] = {kind: vectors for kind in types}
        out["response_type"] = "embeddings_by_type"
    else:
        out["embeddings"] = vectors
        out["response_type"] = "embeddings_floats"
    return out


def _png(width: Any, height: Any, seed: int) -> bytes:
    """A made-up PNG of one colour (the same for the same seed); ``ValueError`` for a size
    Bedrock would refuse."""
    width, height = int(width), int(height)
    if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
        raise ValueError(f"width and height must be within 1 and {_MAX_SIDE}")

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", binascii.crc32(kind + data)))

    pixel = bytes(((seed * 67) % 256, (seed * 131) % 256, (seed * 199) % 256))
    rows = b"".join(b"\x00" + pixel * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _image_json(family: str, body: dict[str, Any]) -> dict[str, Any]:
    """An image generation answer in the model's shape: as many base64 PNGs as asked for, of the
    size asked for (else 512 pixels a side)."""
    if family == "titan-image":
        config = body.get("imageGenerationConfig") or {}
        count = int(config.get("numberOfImages") or 1)
        if not 0 < count <= _MAX_IMAGES:
            raise ValueError(f"numberOfImages must be within 1 and {_MAX_IMAGES}")
        width, height = config.get("width") or 512, config.get("height") or 512
        seed = int(config.get("seed") or 0)
        return {"images": [base64.b64encode(_png(width, height, seed + i)).decode()
                           for i in range(count)]}
    seed = int(body.get("seed") or 0)
    if family == "stability-sdxl":
        count = int(body.get("samples") or 1)
        if not 0 < count <= _MAX_IMAGES:
            raise ValueError(f"samples must be within 1 and {_MAX_IMAGES}")
        return {"result": "success", "artifacts": [
            {"seed": seed + i, "finishReason": "SUCCESS", "base64": base64.b64encode(
                _png(body.get("width") or 512, body.get("height") or 512, seed + i)).decode()}
            for i in range(count)]}
    return {"seeds": [seed], "finish_reasons": [None],
            "images": [base64.b64encode(_png(512, 512, seed)).decode()]}


def _converse_content(reply: Reply) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    if reply.reasoning:
        content.append({"reasoningContent": {"reasoningText": {
            "text": reply.reasoning, "signature": reply.signature}}})
    if reply.redacted_reasoning:
        content.append({"reasoningContent": {"redactedContent": reply.redacted_reasoning}})
    if reply.text:
        content.append({"text": reply.text})
    content.extend({"toolUse": use} for use in reply.tool_uses)
    return content


def _converse_json(reply: Reply) -> dict[str, Any]:
    return {"output": {"message": {"role": "assistant", "content": _converse_content(reply)}},
            "stopReason": reply.stop, "usage": reply.converse_usage(),
            "metrics": {"latencyMs": 12}}


def _converse_events(reply: Reply) -> list[tuple[str, dict[str, Any]]]:
    """ConverseStream events; the same shapes are Nova's InvokeModel stream chunks."""
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    index = 0
    if reply.reasoning:
        # Reasoning arrives as deltas of its own block, its signature last.
        for word in reply.words(reply.reasoning):
            events.append(("contentBlockDelta", {"contentBlockIndex": index, "delta": {
                "reasoningContent": {"text": word}}}))
        events.append(("contentBlockDelta", {"contentBlockIndex": index, "delta": {
            "reasoningContent": {"signature": reply.signature}}}))
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    if reply.redacted_reasoning:
        events.append(("contentBlockDelta", {"contentBlockIndex": index, "delta": {
            "reasoningContent": {"redactedContent": reply.redacted_reasoning}}}))
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    if reply.text:
        for word in reply.words():
            events.append(("contentBlockDelta", {"contentBlockIndex": index,
                                                 "delta": {"text": word}}))
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    for use in reply.tool_uses:
        events.append(("contentBlockStart", {"contentBlockIndex": index, "start": {
            "toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}}))
        arguments = json.dumps(use["input"])
        half = len(arguments) // 2
        for piece in (arguments[:half], arguments[half:]):
            events.append(("contentBlockDelta", {"contentBlockIndex": index,
                                                 "delta": {"toolUse": {"input": piece}}}))
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    events.append(("messageStop", {"stopReason": reply.stop}))
    events.append(("metadata", {"usage": reply.converse_usage(), "metrics": {"latencyMs": 12}}))
    return events


def _redacted_data(reply: Reply) -> str:
    return base64.b64encode(reply.redacted_reasoning).decode("ascii")


def _anthropic_json(reply: Reply, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if reply.reasoning:
        content.append({"type": "thinking", "thinking": reply.reasoning,
                        "signature": reply.signature})
    if reply.redacted_reasoning:
        content.append({"type": "redacted_thinking", "data": _redacted_data(reply)})
    if reply.text:
        content.append({"type": "text", "text": reply.text})
    content.extend({"type": "tool_use", "id": use["toolUseId"], "name": use["name"],
                    "input": use["input"]} for use in reply.tool_uses)
    return {"id": f"msg_{next(_ids):04d}", "type": "message", "role": "assistant",
            "model": model, "content": content, "stop_reason": reply.stop,
            "stop_sequence": None, "usage": reply.anthropic_usage(reply.output_tokens)}


def _anthropic_chunks(reply: Reply, model: str) -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = [{"type": "message_start", "message": {
        "id": f"msg_{next(_ids):04d}", "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": None, "usage": reply.anthropic_usage(1)}}]
    index = 0
    if reply.reasoning:
        chunks.append({"type": "content_block_start", "index": index,
                       "content_block": {"type": "thinking", "thinking": ""}})
        chunks.extend({"type": "content_block_delta", "index": index,
                       "delta": {"type": "thinking_delta", "thinking": word}}
                      for word in reply.words(reply.reasoning))
        chunks.append({"type": "content_block_delta", "index": index,
                       "delta": {"type": "signature_delta", "signature": reply.signature}})
        chunks.append({"type": "content_block_stop", "index": index})
        index += 1
    if reply.redacted_reasoning:
        chunks.append({"type": "content_block_start", "index": index, "content_block": {
            "type": "redacted_thinking", "data": _redacted_data(reply)}})
        chunks.append({"type": "content_block_stop", "index": index})
        index += 1
    if reply.text:
        chunks.append({"type": "content_block_start", "index": index,
                       "content_block": {"type": "text", "text": ""}})
        chunks.extend({"type": "content_block_delta", "index": index,
                       "delta": {"type": "text_delta", "text": word}} for word in reply.words())
        chunks.append({"type": "content_block_stop", "index": index})
        index += 1
    for use in reply.tool_uses:
        chunks.append({"type": "content_block_start", "index": index, "content_block": {
            "type": "tool_use", "id": use["toolUseId"], "name": use["name"], "input": {}}})
        chunks.append({"type": "content_block_delta", "index": index, "delta": {
            "type": "input_json_delta", "partial_json": json.dumps(use["input"])}})
        chunks.append({"type": "content_block_stop", "index": index})
        index += 1
    chunks.append({"type": "message_delta", "delta": {"stop_reason": reply.stop,
                                                      "stop_sequence": None},
                   "usage": {"output_tokens": reply.output_tokens}})
    chunks.append({"type": "message_stop",
                   "amazon-bedrock-invocationMetrics": reply.invocation_metrics()})
    return chunks


def _invoke_json(reply: Reply, family: str, model: str) -> dict[str, Any]:
    if family == "anthropic":
        return _anthropic_json(reply, model)
    if family == "nova":
        answer = {k: v for k, v in _converse_json(reply).items() if k != "metrics"}
        usage = answer["usage"]
        for converse, invoke in (("cacheReadInputTokens", "cacheReadInputTokenCount"),
                                 ("cacheWriteInputTokens", "cacheWriteInputTokenCount")):
            if converse in usage:  # Nova's own body names them so
                usage[invoke] = usage.pop(converse)
        return answer
    if family == "titan":
        return {"inputTextTokenCount": reply.input_tokens, "results": [{
            "tokenCount": reply.output_tokens, "outputText": reply.text,
            "completionReason": "FINISH"}]}
    if family == "llama":
        return {"generation": reply.text, "prompt_token_count": reply.input_tokens,
                "generation_token_count": reply.output_tokens, "stop_reason": "stop"}
    return {"outputs": [{"text": reply.text, "stop_reason": "stop"}]}


def _invoke_chunks(reply: Reply, family: str, model: str) -> list[dict[str, Any]]:
    if family == "anthropic":
        return _anthropic_chunks(reply, model)
    if family == "nova":
        chunks = [{name: payload} for name, payload in _converse_events(reply)]
        chunks[-1]["amazon-bedrock-invocationMetrics"] = reply.invocation_metrics()
        return chunks
    words = reply.words()
    if family == "titan":
        return [{"outputText": word, "index": 0, "totalOutputTextTokenCount": i + 1,
                 "completionReason": "FINISH" if i == len(words) - 1 else None,
                 "inputTextTokenCount": reply.input_tokens} for i, word in enumerate(words)]
    if family == "llama":
        return [{"generation": word, "prompt_token_count": reply.input_tokens if i == 0 else None,
                 "generation_token_count": i + 1,
                 "stop_reason": "stop" if i == len(words) - 1 else None}
                for i, word in enumerate(words)]
    return [{"outputs": [{"text": word, "stop_reason": "stop" if i == len(words) - 1 else None}]}
            for i, word in enumerate(words)]


# -- asynchronous invocations ----------------------------------------------------------------------

_S3_URI = re.compile(r"s3://[a-z0-9][.\-a-z0-9]{1,61}[a-z0-9](/.*)?")
_REEL_TASKS = {"TEXT_VIDEO": "textToVideoParams", "MULTI_SHOT_AUTOMATED": "multiShotAutomatedParams",
               "MULTI_SHOT_MANUAL": "multiShotManualParams"}
_SUBMITTED = "2026-01-01T00:00:00Z"


def _async_invocation(body: Any) -> dict[str, Any]:
    """A ``StartAsyncInvoke`` request checked as Bedrock checks it (the S3 URI's form, a Nova Reel
    task's prompt, a Luma Ray prompt); ``ValueError`` for one it would refuse. Returns what
    ``GetAsyncInvoke`` reports of it, but its ARN."""
    if not isinstance(body, dict) or not isinstance(body.get("modelId"), str):
        raise ValueError("modelId is required")
    model, model_input = body["modelId"], body.get("modelInput")
    if not isinstance(model_input, dict):
        raise ValueError("modelInput must be a JSON object")
    s3 = (body.get("outputDataConfig") or {}).get("s3OutputDataConfig") or {}
    uri = s3.get("s3Uri")
    if not isinstance(uri, str) or not _S3_URI.fullmatch(uri):
        raise ValueError("outputDataConfig.s3OutputDataConfig.s3Uri must be an S3 URI")
    if "nova-reel" in model:
        task = model_input.get(_REEL_TASKS.get(str(model_input.get("taskType")), ""))
        if not isinstance(task, dict):
            raise ValueError("taskType and its parameters are required")
        shots = task.get("shots") if model_input["taskType"] == "MULTI_SHOT_MANUAL" else [task]
        if not isinstance(shots, list) or not shots or not all(
                isinstance(shot, dict) and isinstance(shot.get("text"), str) and shot["text"]
                for shot in shots):
            raise ValueError("every shot needs a text prompt")
    elif "luma." in model and not (isinstance(model_input.get("prompt"), str)
                                   and model_input["prompt"]):
        raise ValueError("prompt is required")
    arn = model if model.startswith("arn:") else \
        f"arn:aws:bedrock:us-east-1::foundation-model/{model}"
    return {"modelArn": arn, "status": "Completed", "submitTime": _SUBMITTED,
            "lastModifiedTime": _SUBMITTED, "endTime": _SUBMITTED,
            "outputDataConfig": {"s3OutputDataConfig": dict(s3)}}


# -- the server ----------------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate small writes; with Nagle's algorithm on, the second
    # waits for the client's delayed ACK (tens of milliseconds per call on loopback).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        owner = self.server.owner
        path = urllib.parse.unquote(self.path.split("?", 1)[0])
        request = RecordedRequest(self.command, path, {k.lower(): v for k, v in
                                                       self.headers.items()}, body)
        owner.record(request)
        step = owner.next_step()
        if callable(step):  # a scripted model that reads the request it answers
            step = step(request)
        # A client that stops reading (an abandoned stream) hangs up mid-response.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._respond(path, step, request)

    do_GET = do_POST
    do_PUT = do_POST

    # -- responses ---------------------------------------------------------------------------
    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = _json_bytes(payload)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", f"req-{next(_ids):06d}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, messages: list[bytes], headers: dict[str, str] | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-amzn-RequestId", f"req-{next(_ids):06d}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        for message in messages:
            self.wfile.write(f"{len(message):x}\r\n".encode() + message + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _respond(self, path: str, step: Any, request: RecordedRequest) -> None:
        if isinstance(step, Failure):
            self._json(step.status, {"message": step.message},
                       {"x-amzn-ErrorType": f"{step.code}:http://internal.amazon.com/coral/"})
            return
        if isinstance(step, Raw):
            self._json(step.status, step.body)
            return
        if isinstance(step, Body):
            self.send_response(step.status)
            headers = {"Content-Type": "application/json", **step.headers}
            self.send_header("Content-Length", str(len(step.data)))
            self.send_header("x-amzn-RequestId", f"req-{next(_ids):06d}")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(step.data)
            return
        parts = path.strip("/").split("/")
        if parts[0] == "model" and len(parts) >= 3:
            # A model ARN (an inference profile's) keeps its slashes once the path is unquoted.
            self._model("/".join(parts[1:-1]), parts[-1], step, request)
        elif parts[0] == "agents" and parts[-1] == "text":
            self._agent(step, parts[-2])
        elif parts == ["retrieveAndGenerateStream"]:
            self._generation(step)
        elif parts[0] == "async-invoke":
            self._async_invoke(parts[1:], step, request)
        else:
            self._json(404, {"message": f"no scripted route for {path}"},
                       {"x-amzn-ErrorType": "ResourceNotFoundException"})

    def _model(self, model: str, action: str, step: Any, request: RecordedRequest) -> None:
        if isinstance(step, AgentEvents) and action.endswith("stream"):
            self._stream(step.messages())  # events as given, for either streaming call
            return
        if not isinstance(step, Reply):
            raise TypeError(f"a model call needs a Reply, got {step!r}")
        family = _family(model)
        if family in _EMBEDDING_FAMILIES or family in _IMAGE_FAMILIES:
            self._vectors_or_images(family, model, action, step, request)
        elif action == "converse":
            self._json(200, _converse_json(step))
        elif action == "converse-stream":
            messages = [event_message(name, payload) for name, payload in _converse_events(step)]
            self._stream(self._maybe_fail(messages, step))
        elif action == "invoke":
            data = _json_bytes(_invoke_json(step, family, model))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", f"req-{next(_ids):06d}")
            for name, value in step.usage_headers().items():
                self.send_header(name, value)
            self.send_header("X-Amzn-Bedrock-Invocation-Latency", "12")
            self.end_headers()
            self.wfile.write(data)
        elif action == "invoke-with-response-stream":
            messages = [event_message("chunk", {"bytes": _json_bytes(chunk)})
                        for chunk in _invoke_chunks(step, family, model)]
            self._stream(self._maybe_fail(messages, step),
                         {"X-Amzn-Bedrock-Content-Type": "application/json"})
        else:
            self._json(404, {"message": action}, {"x-amzn-ErrorType": "UnknownOperation"})

    def _vectors_or_images(self, family: str, model: str, action: str, reply: Reply,
                           request: RecordedRequest) -> None:
        """An embedding or image generation model: InvokeModel answers with vectors or images;
        the other calls are refused as Bedrock refuses them."""
        if action != "invoke":
            self._json(400, {"message": f"The provided model {model} does not support {action}"},
                       {"x-amzn-ErrorType": "ValidationException"})
            return
        try:
            body = request.json()
            if not isinstance(body, dict):
                raise ValueError("the body is not a JSON object")
            answer = (_image_json(family, body) if family in _IMAGE_FAMILIES
                      else _embedding_json(family, model, body, reply))
        except (AttributeError, TypeError, ValueError, RecursionError) as exc:
            self._json(400, {"message": f"Malformed input request: {exc}"},
                       {"x-amzn-ErrorType": "ValidationException"})
            return
        headers = {"X-Amzn-Bedrock-Invocation-Latency": "12"}
        if family in _EMBEDDING_FAMILIES:  # an image model's answer has no token counts
            headers["X-Amzn-Bedrock-Input-Token-Count"] = str(reply.input_tokens)
        self._json(200, answer, headers)

    def _async_invoke(self, rest: list[str], step: Any, request: RecordedRequest) -> None:
        """``StartAsyncInvoke`` (POST), ``GetAsyncInvoke`` (GET with the ARN), ``ListAsyncInvokes``
        (GET): a :class:`Reply` step each, answered from the invocations started so far."""
        if not isinstance(step, Reply):
            raise TypeError(f"an asynchronous invocation call needs a Reply, got {step!r}")
        owner = self.server.owner
        if request.method == "POST" and not rest:
            try:
                invocation = _async_invocation(request.json())
            except (AttributeError, TypeError, ValueError, RecursionError) as exc:
                self._json(400, {"message": f"Malformed input request: {exc}"},
                           {"x-amzn-ErrorType": "ValidationException"})
                return
            self._json(200, {"invocationArn": owner.add_invocation(invocation)})
        elif request.method == "GET" and rest:
            found = owner.invocation("/".join(rest))
            if found is None:
                self._json(400, {"message": "Invocation not found"},
                           {"x-amzn-ErrorType": "ValidationException"})
                return
            self._json(200, found)
        elif request.method == "GET":
            self._json(200, {"asyncInvokeSummaries": owner.invocations()})
        else:
            self._json(404, {"message": request.method}, {"x-amzn-ErrorType": "UnknownOperation"})

    @staticmethod
    def _maybe_fail(messages: list[bytes], reply: Reply) -> list[bytes]:
        if reply.fail_after is None:
            return messages
        return [*messages[:reply.fail_after],
                exception_message(reply.exception, "the model stream broke")]

    def _generation(self, step: Any) -> None:
        if not isinstance(step, AgentEvents):
            raise TypeError(f"RetrieveAndGenerateStream needs AgentEvents, got {step!r}")
        self._stream(step.messages(), {"x-amzn-bedrock-knowledge-base-session-id": "kb-session-1"})

    def _agent(self, step: Any, session: str) -> None:
        if not isinstance(step, AgentEvents):
            raise TypeError(f"InvokeAgent needs AgentEvents, got {step!r}")
        self._stream(step.messages(), {"x-amzn-bedrock-agent-content-type": "application/json",
                                       "x-amz-bedrock-agent-session-id": session})


def _host_of(server: ThreadingHTTPServer) -> str:
    host = server.server_address[0]
    return host.decode() if isinstance(host, bytes) else str(host)


def _url_of(server: ThreadingHTTPServer) -> str:
    host = _host_of(server)
    return f"http://{f'[{host}]' if ':' in host else host}:{server.server_address[1]}"


# How often a server's loop checks for stop(): stopping waits up to this long (default 0.5 s).
_POLL_INTERVAL = 0.05


class _LoopbackServer(ThreadingHTTPServer):
    """A threading HTTP server that can close the keep-alive connections clients left open.

    A handler thread serves one connection until the client closes it; a boto3 client keeps its
    pooled connections open, so stopping the listener alone would leave those threads and
    sockets behind. :meth:`close` shuts every open connection down, and its thread ends.
    """

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return None  # a client that hangs up mid-response is not an error here

    def close(self, thread: threading.Thread) -> None:
        """Stop serving, end the open connections, release the socket."""
        self.shutdown()
        with self._connections_lock:
            open_connections = list(self._connections)
        for connection in open_connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self.server_close()
        thread.join(timeout=5)


_ServiceT = TypeVar("_ServiceT", bound="_Service")


class _Service:
    """What the loopback services share: a server served by a daemon thread from start() until
    stop() (also as a context manager), reachable at :attr:`url`."""

    _server: _LoopbackServer
    _thread: threading.Thread

    def _serve(self, server: _LoopbackServer, thread_name: str) -> None:
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(_POLL_INTERVAL,),
                                        name=thread_name, daemon=True)

    @property
    def url(self) -> str:
        return _url_of(self._server)

    def start(self: _ServiceT) -> _ServiceT:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.close(self._thread)

    def __enter__(self: _ServiceT) -> _ServiceT:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _RecordingService(_Service):
    """A service that records every request, at most :attr:`MAX_REQUESTS` (the rest counted)."""

    MAX_REQUESTS = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self.requests_dropped = 0

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            if len(self.requests) < self.MAX_REQUESTS:
                self.requests.append(request)
            else:
                self.requests_dropped += 1


class _Server(_LoopbackServer):
    owner: BedrockServer


class BedrockServer(_Service):
    """The fake Bedrock endpoint: start, script, point boto3 at :attr:`url`, stop."""

    MAX_INVOCATIONS = 256

    def __init__(self, default: Any = None) -> None:
        self._lock = threading.Lock()
        self._steps: deque[Any] = deque()
        # Served when nothing is queued (a benchmark's endless identical calls); else a 500.
        self.default = default
        self.requests: list[RecordedRequest] = []
        self._invocations: OrderedDict[str, dict[str, Any]] = OrderedDict()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.owner = self
        self._serve(server, "bedrock-server")

    def push(self, *steps: Any) -> None:
        """Queue responses, one per request, in order; a callable step is called with the
        :class:`RecordedRequest` it answers and returns the step to serve."""
        with self._lock:
            self._steps.extend(steps)

    def reset(self) -> None:
        with self._lock:
            self._steps.clear()
            self.requests.clear()
            self._invocations.clear()

    def add_invocation(self, invocation: dict[str, Any]) -> str:
        """Remember an asynchronous invocation (the newest :attr:`MAX_INVOCATIONS`); its ARN."""
        arn = f"arn:aws:bedrock:us-east-1:123456789012:async-invoke/{next(_ids):012d}"
        s3 = invocation["outputDataConfig"]["s3OutputDataConfig"]
        # Bedrock writes the output under a folder named after the invocation.
        s3["s3Uri"] = f"{s3['s3Uri'].rstrip('/')}/{arn.rsplit('/', 1)[1]}"
        with self._lock:
            self._invocations[arn] = {"invocationArn": arn, **invocation}
            while len(self._invocations) > self.MAX_INVOCATIONS:
                self._invocations.popitem(last=False)
        return arn

    def invocation(self, arn: str) -> dict[str, Any] | None:
        with self._lock:
            return self._invocations.get(arn)

    def invocations(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._invocations.values())

    def next_step(self) -> Any:
        with self._lock:
            if not self._steps:
                if self.default is not None:
                    return self.default
                return Failure(500, "InternalServerException", "nothing scripted")
            return self._steps.popleft()

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            if self.default is None:  # an endless benchmark keeps no history
                self.requests.append(request)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._steps)


# -- S3 (path-style REST, XML) -------------------------------------------------------------------

_S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
# One object, and all the objects of one server: a demo store, not a data lake.
_S3_MAX_OBJECT = 16 << 20
_S3_MAX_TOTAL = 256 << 20


def _decode_aws_chunked(body: bytes) -> bytes:
    """The payload of an ``aws-chunked`` body (``<hex size>[;chunk-signature=..]\\r\\n<data>\\r\\n``
    chunks, then a zero-size chunk and optional trailers such as ``x-amz-checksum-crc32``)."""
    out = bytearray()
    position = 0
    while position < len(body):
        end = body.find(b"\r\n", position)
        if end < 0:
            break
        size = int(body[position:end].split(b";", 1)[0] or b"0", 16)
        if size == 0:
            break
        start = end + 2
        out += body[start:start + size]
        position = start + size + 2
    return bytes(out)


def _xml(tag: str, children: list[tuple[str, Any]]) -> bytes:
    from xml.sax.saxutils import escape

    def render(name: str, value: Any) -> str:
        if isinstance(value, list):
            return f"<{name}>" + "".join(render(k, v) for k, v in value) + f"</{name}>"
        return f"<{name}>{escape(str(value))}</{name}>"

    inner = "".join(render(k, v) for k, v in children)
    # Results carry S3's namespace; error documents do not (as S3 sends them).
    namespace = "" if tag == "Error" else f' xmlns="{_S3_NS}"'
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{tag}{namespace}>{inner}</{tag}>'.encode()


@dataclass
class _Object:
    data: bytes
    etag: str
    modified: str
    content_type: str


class _S3Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _S3HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _S3_MAX_OBJECT:
            self._error(400, "EntityTooLarge", "the object is larger than this server keeps")
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        if "aws-chunked" in encoding or \
                (self.headers.get("x-amz-content-sha256") or "").startswith("STREAMING-"):
            body = _decode_aws_chunked(body)
        split = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        bucket, _, key = split.path.lstrip("/").partition("/")
        bucket, key = urllib.parse.unquote(bucket), urllib.parse.unquote(key)
        owner = self.server.owner
        owner.record(RecordedRequest(self.command, split.path,
                                     {k.lower(): v for k, v in self.headers.items()}, body))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._route(owner, bucket, key, query, body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    def _send(self, status: int, data: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/xml") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amz-request-id", f"S3REQ{next(_ids):08d}")
        self.send_header("x-amz-id-2", f"demo-host-{next(_ids):06d}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, code: str, message: str, **extra: str) -> None:
        self._send(status, _xml("Error", [("Code", code), ("Message", message),
                                          *extra.items(), ("RequestId", f"S3REQ{next(_ids):08d}")]))

    def _route(self, owner: S3Server, bucket: str, key: str, query: dict[str, str],
               body: bytes) -> None:
        method = self.command
        if not bucket:
            if method != "GET":
                self._error(405, "MethodNotAllowed", "not supported here")
                return
            self._send(200, _xml("ListAllMyBucketsResult", [("Buckets", [
                ("Bucket", [("Name", name), ("CreationDate", "2026-01-01T00:00:00.000Z")])
                for name in owner.bucket_names()])]))
            return
        if not key:
            self._bucket(owner, bucket, query)
            return
        if not owner.has_bucket(bucket):
            self._error(404, "NoSuchBucket", "The specified bucket does not exist",
                        BucketName=bucket)
            return
        if method == "PUT":
            stored = owner.store(bucket, key, body,
                                 self.headers.get("Content-Type") or "binary/octet-stream")
            if stored is None:
                self._error(400, "EntityTooLarge", "this server's store is full")
                return
            self._send(200, headers={"ETag": stored.etag})
        elif method in ("GET", "HEAD"):
            found = owner.get(bucket, key)
            if found is None:
                if method == "HEAD":
                    self._send(404)
                else:
                    self._error(404, "NoSuchKey", "The specified key does not exist.", Key=key)
                return
            self.send_response(200)
            self.send_header("Content-Type", found.content_type)
            self.send_header("Content-Length", str(len(found.data)))
            self.send_header("ETag", found.etag)
            self.send_header("Last-Modified", found.modified)
            self.send_header("x-amz-request-id", f"S3REQ{next(_ids):08d}")
            self.end_headers()
            if method == "GET":
                self.wfile.write(found.data)
        elif method == "DELETE":
            owner.delete(bucket, key)
            self._send(204)
        else:
            self._error(405, "MethodNotAllowed", f"{method} on an object")

    def _bucket(self, owner: S3Server, bucket: str, query: dict[str, str]) -> None:
        method = self.command
        if method == "PUT":
            owner.create_bucket(bucket)
            self._send(200, headers={"Location": f"/{bucket}"})
            return
        if not owner.has_bucket(bucket):
            if method == "HEAD":
                self._send(404)
            else:
                self._error(404, "NoSuchBucket", "The specified bucket does not exist",
                            BucketName=bucket)
            return
        if method == "HEAD":
            self._send(200)
        elif method == "GET" and query.get("list-type") == "2":
            self._send(200, _xml("ListBucketResult", owner.list_v2(bucket, query)))
        elif method == "GET" and "location" in query:
            self._send(200, _xml("LocationConstraint", []))
        else:
            self._error(501, "NotImplemented", "this server supports ListObjectsV2 only")


class _S3HTTPServer(_LoopbackServer):
    owner: S3Server


class S3Server(_RecordingService):
    """A small S3-compatible endpoint on loopback (path-style addressing, XML responses).

    Buckets (``CreateBucket``, ``HeadBucket``, ``ListBuckets``) and objects (``PutObject``,
    ``GetObject``, ``HeadObject``, ``DeleteObject``, ``ListObjectsV2`` with prefix, delimiter,
    ``MaxKeys`` and continuation tokens), ``aws-chunked`` uploads included, so boto3's S3 client
    runs unchanged (``Config(s3={"addressing_style": "path"})``). Objects live in memory, bounded
    per object and in total; every request is recorded (:attr:`requests`, at most 4,096).
    """

    def __init__(self, buckets: tuple[str, ...] | list[str] = ()) -> None:
        super().__init__()
        self._buckets: dict[str, dict[str, _Object]] = {name: {} for name in buckets}
        self._bytes = 0
        server = _S3HTTPServer(("127.0.0.1", 0), _S3Handler)
        server.owner = self
        self._serve(server, "s3-server")

    # -- the store (also used directly by a demo to seed and inspect buckets) --------------------
    def create_bucket(self, bucket: str) -> None:
        with self._lock:
            self._buckets.setdefault(bucket, {})

    def has_bucket(self, bucket: str) -> bool:
        with self._lock:
            return bucket in self._buckets

    def bucket_names(self) -> list[str]:
        with self._lock:
            return sorted(self._buckets)

    def store(self, bucket: str, key: str, data: bytes,
              content_type: str = "binary/octet-stream") -> _Object | None:
        """Put an object (``None`` when the store is full); creates the bucket if needed."""
        import email.utils
        import hashlib

        with self._lock:
            objects = self._buckets.setdefault(bucket, {})
            previous = objects.get(key)
            grown = len(data) - (len(previous.data) if previous else 0)
            if self._bytes + grown > _S3_MAX_TOTAL:
                return None
            self._bytes += grown
            stored = _Object(bytes(data), f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"',
                             email.utils.formatdate(usegmt=True), content_type)
            objects[key] = stored
            return stored

    def get(self, bucket: str, key: str) -> _Object | None:
        with self._lock:
            return self._buckets.get(bucket, {}).get(key)

    def delete(self, bucket: str, key: str) -> None:
        with self._lock:
            removed = self._buckets.get(bucket, {}).pop(key, None)
            if removed is not None:
                self._bytes -= len(removed.data)

    def objects(self, bucket: str) -> dict[str, bytes]:
        """The objects of a bucket, key → content (empty when the bucket does not exist)."""
        with self._lock:
            return {key: obj.data for key, obj in self._buckets.get(bucket, {}).items()}

    def list_v2(self, bucket: str, query: dict[str, str]) -> list[tuple[str, Any]]:
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        max_keys = max(0, min(int(query.get("max-keys") or 1000), 1000))
        after = query.get("continuation-token") or query.get("start-after") or ""
        with self._lock:
            keys = sorted(k for k in self._buckets.get(bucket, {}) if k.startswith(prefix)
                          and k > after)
            objects = dict(self._buckets.get(bucket, {}))
        contents: list[tuple[str, Any]] = []
        prefixes: list[str] = []
        last = ""
        truncated = False
        for key in keys:
            cut = key.find(delimiter, len(prefix)) if delimiter else -1
            common = key[:cut + len(delimiter)] if cut >= 0 else None
            if common is not None and prefixes and prefixes[-1] == common:
                last = key  # keys sorted: the rest of a common prefix follow each other
                continue
            if len(contents) + len(prefixes) >= max_keys:
                truncated = True
                break
            last = key
            if common is not None:
                prefixes.append(common)
                continue
            found = objects[key]
            contents.append(("Contents", [("Key", key), ("LastModified",
                                                          "2026-01-01T00:00:00.000Z"),
                                          ("ETag", found.etag), ("Size", len(found.data)),
                                          ("StorageClass", "STANDARD")]))
        result: list[tuple[str, Any]] = [("Name", bucket), ("Prefix", prefix),
                                         ("KeyCount", len(contents) + len(prefixes)),
                                         ("MaxKeys", max_keys),
                                         ("IsTruncated", "true" if truncated else "false")]
        if delimiter:
            result.append(("Delimiter", delimiter))
        if truncated:
            result.append(("NextContinuationToken", last))
        result.extend(contents)
        result.extend(("CommonPrefixes", [("Prefix", p)]) for p in prefixes)
        return result


# -- a plain HTTP service (an internal API, a document store) --------------------------------------

@dataclass
class Response:
    """What :class:`HttpService` answers: a status, a JSON-able or bytes body, extra headers."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, (bytes, bytearray)):
            return bytes(self.body), "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode("utf-8"), "text/plain; charset=utf-8"
        return _json_bytes(self.body), "application/json"


class _ServiceHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _ServiceHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _handle(self) -> None:
        owner = self.server.owner
        declared = int(self.headers.get("Content-Length") or 0)
        length = min(declared, owner.max_body)
        body = self.rfile.read(length) if length else b""
        if declared > length:  # the rest of the body is still in the stream: no keep-alive
            self.close_connection = True
        request = RecordedRequest(self.command, self.path,
                                  {k.lower(): v for k, v in self.headers.items()}, body)
        owner.record(request)
        try:
            response = owner.handler(request)
        except Exception as exc:  # a broken handler answers 500, like a real service would
            response = Response(500, {"error": type(exc).__name__})
        data, content_type = response.encoded()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(response.status)
            self.send_header("Content-Type", response.headers.get("Content-Type", content_type))
            self.send_header("Content-Length", str(len(data)))
            for name, value in response.headers.items():
                if name.lower() != "content-type":
                    self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle


class _ServiceHTTPServer(_LoopbackServer):
    owner: HttpService


class _ServiceHTTPServer6(_ServiceHTTPServer):
    address_family = socket.AF_INET6


class HttpService(_RecordingService):
    """A small HTTP service on a loopback address, answering with ``handler(request)``.

    Stands in for the services around an agent (an internal API, a document store). ``host`` is
    any local address (``127.0.0.1``, another ``127.x.y.z`` on Linux, ``::1``); binding fails
    with ``OSError`` where the address does not exist. Every request is recorded (at most
    :attr:`MAX_REQUESTS`, bodies cut at ``max_body``).
    """

    def __init__(self, handler: Callable[[RecordedRequest], Response], *,
                 host: str = "127.0.0.1", name: str = "service", max_body: int = 1 << 20) -> None:
        super().__init__()
        self.handler = handler
        self.name = name
        self.max_body = max_body
        server_class = _ServiceHTTPServer6 if ":" in host else _ServiceHTTPServer
        server = server_class((host, 0), _ServiceHandler)
        server.owner = self
        self._serve(server, f"{name}-http")

    @property
    def host(self) -> str:
        return _host_of(self._server)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

