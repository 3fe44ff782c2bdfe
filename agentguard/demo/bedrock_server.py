"""A local Bedrock-compatible HTTP server speaking the real wire formats, with a scriptable model.

bedrock-runtime (``Converse``, ``ConverseStream``, ``InvokeModel``,
``InvokeModelWithResponseStream``) and bedrock-agent-runtime (``InvokeAgent``, ``Retrieve``,
``RetrieveAndGenerate``) over HTTP/1.1 on loopback: JSON bodies for the plain calls, and the AWS
event-stream binary framing (prelude, headers, CRC32 checksums; :func:`encode_message`) sent
chunked for the streaming ones. boto3 clients reach it with ``endpoint_url`` and dummy
credentials, so request signing, retries, response parsing and event-stream decoding all run
for real.

Each request takes the next scripted step (:meth:`BedrockServer.push`): a :class:`Reply` (one
model answer, rendered in whatever shape the called API and model family use), a
:class:`Failure` (an AWS error response), :class:`AgentEvents` (an ``InvokeAgent`` stream) or
:class:`Raw` JSON. Every request is recorded (:attr:`BedrockServer.requests`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import itertools
import json
import struct
import threading
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "AgentEvents",
    "BedrockServer",
    "Failure",
    "Raw",
    "RecordedRequest",
    "Reply",
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
    """One model answer; rendered in the shape of the API and model family that was called."""

    text: str = ""
    tool_uses: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None
    input_tokens: int = 11
    output_tokens: int = 7
    # Streams: after this many events, send this exception event instead of the rest.
    fail_after: int | None = None
    exception: str = "modelStreamErrorException"

    @property
    def stop(self) -> str:
        return self.stop_reason or ("tool_use" if self.tool_uses else "end_turn")

    def words(self) -> list[str]:
        parts = self.text.split(" ")
        return [part if i == 0 else " " + part for i, part in enumerate(parts)] if self.text \
            else []


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
class AgentEvents:
    """An ``InvokeAgent`` event stream: ``(event type, payload)`` pairs."""

    events: list[tuple[str, dict[str, Any]]]


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
    for marker, family in (("anthropic.", "anthropic"), ("amazon.nova", "nova"),
                           ("amazon.titan", "titan"), ("meta.", "llama"), ("mistral.", "mistral")):
        if marker in model:
            return family
    return "anthropic"


def _converse_content(reply: Reply) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [{"text": reply.text}] if reply.text else []
    content.extend({"toolUse": use} for use in reply.tool_uses)
    return content


def _converse_json(reply: Reply) -> dict[str, Any]:
    return {"output": {"message": {"role": "assistant", "content": _converse_content(reply)}},
            "stopReason": reply.stop,
            "usage": {"inputTokens": reply.input_tokens, "outputTokens": reply.output_tokens,
                      "totalTokens": reply.input_tokens + reply.output_tokens},
            "metrics": {"latencyMs": 12}}


def _converse_events(reply: Reply) -> list[tuple[str, dict[str, Any]]]:
    """ConverseStream events; the same shapes are Nova's InvokeModel stream chunks."""
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    index = 0
    if reply.text:
        for word in reply.words():
            events.append(("contentBlockDelta", {"contentBlockIndex": 0,
                                                 "delta": {"text": word}}))
        events.append(("contentBlockStop", {"contentBlockIndex": 0}))
        index = 1
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
    events.append(("metadata", {"usage": {"inputTokens": reply.input_tokens,
                                          "outputTokens": reply.output_tokens,
                                          "totalTokens": reply.input_tokens + reply.output_tokens},
                                "metrics": {"latencyMs": 12}}))
    return events


def _anthropic_json(reply: Reply, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
    content.extend({"type": "tool_use", "id": use["toolUseId"], "name": use["name"],
                    "input": use["input"]} for use in reply.tool_uses)
    return {"id": f"msg_{next(_ids):04d}", "type": "message", "role": "assistant",
            "model": model, "content": content, "stop_reason": reply.stop,
            "stop_sequence": None,
            "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens}}


def _anthropic_chunks(reply: Reply, model: str) -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = [{"type": "message_start", "message": {
        "id": f"msg_{next(_ids):04d}", "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1}}}]
    index = 0
    if reply.text:
        chunks.append({"type": "content_block_start", "index": 0,
                       "content_block": {"type": "text", "text": ""}})
        chunks.extend({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": word}} for word in reply.words())
        chunks.append({"type": "content_block_stop", "index": 0})
        index = 1
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
    chunks.append({"type": "message_stop", "amazon-bedrock-invocationMetrics": {
        "inputTokenCount": reply.input_tokens, "outputTokenCount": reply.output_tokens,
        "invocationLatency": 12, "firstByteLatency": 3}})
    return chunks


def _invoke_json(reply: Reply, family: str, model: str) -> dict[str, Any]:
    if family == "anthropic":
        return _anthropic_json(reply, model)
    if family == "nova":
        return {k: v for k, v in _converse_json(reply).items() if k != "metrics"}
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
        chunks[-1]["amazon-bedrock-invocationMetrics"] = {
            "inputTokenCount": reply.input_tokens, "outputTokenCount": reply.output_tokens}
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
        owner.record(RecordedRequest("POST", path, {k.lower(): v for k, v in
                                                    self.headers.items()}, body))
        step = owner.next_step()
        # A client that stops reading (an abandoned stream) hangs up mid-response.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._respond(path, step)

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

    def _respond(self, path: str, step: Any) -> None:
        if isinstance(step, Failure):
            self._json(step.status, {"message": step.message},
                       {"x-amzn-ErrorType": f"{step.code}:http://internal.amazon.com/coral/"})
            return
        if isinstance(step, Raw):
            self._json(step.status, step.body)
            return
        parts = path.strip("/").split("/")
        if parts[0] == "model" and len(parts) == 3:
            self._model(parts[1], parts[2], step)
        elif parts[0] == "agents" and parts[-1] == "text":
            self._agent(step, parts[-2])
        else:
            self._json(404, {"message": f"no scripted route for {path}"},
                       {"x-amzn-ErrorType": "ResourceNotFoundException"})

    def _model(self, model: str, action: str, step: Any) -> None:
        if not isinstance(step, Reply):
            raise TypeError(f"a model call needs a Reply, got {step!r}")
        family = _family(model)
        if action == "converse":
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
            self.send_header("X-Amzn-Bedrock-Input-Token-Count", str(step.input_tokens))
            self.send_header("X-Amzn-Bedrock-Output-Token-Count", str(step.output_tokens))
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

    @staticmethod
    def _maybe_fail(messages: list[bytes], reply: Reply) -> list[bytes]:
        if reply.fail_after is None:
            return messages
        return [*messages[:reply.fail_after],
                exception_message(reply.exception, "the model stream broke")]

    def _agent(self, step: Any, session: str) -> None:
        if not isinstance(step, AgentEvents):
            raise TypeError(f"InvokeAgent needs AgentEvents, got {step!r}")
        self._stream([event_message(name, payload) for name, payload in step.events],
                     {"x-amzn-bedrock-agent-content-type": "application/json",
                      "x-amz-bedrock-agent-session-id": session})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: BedrockServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        return None  # a client that hangs up mid-response is not an error here


class BedrockServer:
    """The fake Bedrock endpoint: start, script, point boto3 at :attr:`url`, stop."""

    def __init__(self, default: Any = None) -> None:
        self._lock = threading.Lock()
        self._steps: deque[Any] = deque()
        # Served when nothing is queued (a benchmark's endless identical calls); else a 500.
        self.default = default
        self.requests: list[RecordedRequest] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="bedrock-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> BedrockServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def push(self, *steps: Any) -> None:
        """Queue responses, one per request, in order."""
        with self._lock:
            self._steps.extend(steps)

    def reset(self) -> None:
        with self._lock:
            self._steps.clear()
            self.requests.clear()

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
