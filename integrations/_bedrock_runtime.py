"""bedrock-runtime: ``Converse``, ``ConverseStream``, ``InvokeModel``, ``InvokeModelWithResponseStream``.

Each call is one ``chat {model}`` span (``gen_ai.provider.name=aws.bedrock``) carrying the request
messages (system, user, assistant ``toolUse`` requests, ``toolResult`` blocks as ``tool``
messages: untrusted content the Guard scans, which Bedrock Guardrails never looks at), sampling
parameters, the guardrail, and once the answer is in, output, usage and finish reasons. Streams
are proxied (:mod:`._aws_streams`): the span ends when the caller has read, closed or dropped it.
Tool calls the model asks for are noted for ``@agentguard.tool`` (:func:`expect_tool_call`).

``InvokeModel`` of an embedding model is an ``embeddings {model}`` span instead: its inputs,
the input token count and the dimension count, and no output (a vector is not content). Of an
image generation model, a ``generate_content {model}`` span: its prompts, and how many images
came back and their size, never the images (neither recorded nor read as text).

``StartAsyncInvoke`` of a video generation model (Nova Reel, Luma Ray) is a ``generate_content
{model}`` span too (``gen_ai.output.type=video``), of an embedding model (TwelveLabs Marengo,
Nova multimodal embeddings) an ``embeddings {model}`` span: its prompts or inputs judged as a
model call's, and the call judged as the cloud call it also is, whose resource is the S3
location the output will be written to (and the KMS key it is encrypted with). Other
asynchronous invocations are ordinary cloud calls, with that location too.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from opentelemetry.trace import Status, StatusCode

from agentguard import semconv
from agentguard._errors import internal_error
from agentguard._guard import Guard, Operation
from agentguard._tool import expect_tool_call
from agentguard.events import CloudCall
from agentguard.findings import CloudCallBlocked
from agentguard.integrations._aws_call import (
    CallerError,
    CallInfo,
    Handler,
    error_code,
    record_response,
)
from agentguard.integrations._aws_resources import extract_resources, safe_parameters
from agentguard.integrations._aws_streams import (
    StreamFollower,
    TracedAioEventStream,
    TracedEventStream,
    buffered_aio_body,
    buffered_body,
)
from agentguard.integrations._bedrock_models import (
    CUT_SIZE,
    ModelReply,
    StreamAccumulator,
    converse_messages,
    converse_output,
    converse_usage,
    embedding_request,
    embedding_response,
    family_of,
    image_request,
    image_response,
    is_embedding,
    is_image_generation,
    is_video_generation,
    parse_json_partial,
    parse_request,
    parse_response,
    prompt_variables,
    raw_text,
    shorten_strings,
    text_of,
    token_count,
    video_request,
)
from agentguard.integrations._streams import mark_failed

__all__ = ["HANDLERS"]

# Request and response bodies parsed at most this large; a larger answer passes untouched.
MAX_BODY = 8 * 1024 * 1024
# A request body past MAX_BODY is read with its long strings cut to these lengths (enough for
# the 256 KiB of a document that is read, then for a glimpse of each), if it is not past this.
LONG_STRING = 512 * 1024
SHORT_STRING = 4 * 1024
MAX_REQUEST_BODY = 32 * 1024 * 1024

_EMBEDDING = "embedding"
_IMAGE = "image"
_VIDEO = "video"


class _State:
    __slots__ = ("dimensions", "family", "op")

    def __init__(self, op: Operation, family: str = "converse",
                 dimensions: int | None = None) -> None:
        self.op = op
        # a model family, or _EMBEDDING / _IMAGE / _VIDEO for an embedding / image / video
        # generation model
        self.family = family
        self.dimensions = dimensions


def _parameters(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sampling parameters for the Guard, and their span attributes beyond the core two."""
    attrs: dict[str, Any] = {}
    if isinstance(params.get("top_p"), (int, float)):
        attrs[semconv.GEN_AI_REQUEST_TOP_P] = float(params["top_p"])
    stops = params.get("stop_sequences")
    if isinstance(stops, list) and stops:
        attrs[semconv.GEN_AI_REQUEST_STOP_SEQUENCES] = [str(s) for s in stops[:16]]
    return params, attrs


def _guardrail_attributes(identifier: Any, version: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if identifier:
        attrs[semconv.AWS_BEDROCK_GUARDRAIL_ID] = str(identifier)
        if version:
            attrs[semconv.AG_BEDROCK_GUARDRAIL_VERSION] = str(version)
    return attrs


def _user_turn(raw_messages: Any) -> str | None:
    """The text of a Converse request's last message when it is a new message from the user
    (text blocks, no tool results): what starts a turn in a hand-written loop."""
    if not isinstance(raw_messages, list) or not raw_messages:
        return None
    last = raw_messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    blocks = last.get("content")
    if not isinstance(blocks, list):
        return None
    texts: list[str] = []
    for block in blocks:
        if not isinstance(block, dict) or "toolResult" in block:
            return None
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
    return "\n".join(texts) or None


def _invoke_turn(family: str, body: Any) -> str | None:
    """The new user message an ``InvokeModel`` body ends with, for the families whose body keeps
    the conversation as messages: Anthropic Messages, Nova (Converse's shape), OpenAI-style
    ``messages`` (Llama, Mistral, DeepSeek, ...) and Cohere Command R's ``message``. A prompt
    string (Titan, completion-style bodies) holds the whole exchange as text, with nothing to tell
    a new message from a continuation: no turn."""
    if not isinstance(body, dict):
        return None
    if family == "nova":
        return _user_turn(body.get("messages"))
    if family == "cohere" and isinstance(body.get("message"), str):
        # Command R: the user's message, or the tool results it asked for (a continuation).
        return None if body.get("tool_results") else body["message"] or None
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        return None  # an assistant prefill, or a "tool" message with results
    content = last.get("content")
    if isinstance(content, list):
        if any(isinstance(block, dict) and block.get("type") == "tool_result"
               for block in content):
            return None  # Anthropic: tool results sent back
        content = [block for block in content
                   if isinstance(block, dict) and isinstance(block.get("text"), str)]
    return text_of(content) or None


def _start_chat(guard: Guard, call: CallInfo, messages: list[dict[str, Any]],
                params: dict[str, Any], extra: dict[str, Any], stream: bool,
                turn_text: str | None = None) -> Operation:
    params, param_attrs = _parameters(params)
    attrs = call.rpc_attributes()
    attrs.update(param_attrs)
    attrs.update(extra)
    if stream:
        attrs[semconv.AG_STREAM] = True
    model = call.params.get("modelId")
    return guard.start_chat(provider=semconv.PROVIDER_AWS_BEDROCK,
                            model=str(model) if model else None, messages=messages,
                            parameters=params, attributes=attrs, turn_text=turn_text)


def _start_generation(guard: Guard, call: CallInfo, attrs: dict[str, Any],
                      messages: list[dict[str, Any]], operation: str,
                      turn_text: str | None = None) -> Operation:
    """Open the span of a model call that is no chat (embeddings, image or video generation):
    ``attrs`` and the guardrail the call names, judged as a model call (and its ``turn_text`` as
    the user's message)."""
    attrs.update(_guardrail_attributes(call.params.get("guardrailIdentifier"),
                                       call.params.get("guardrailVersion")))
    model = call.params.get("modelId")
    return guard.start_chat(provider=semconv.PROVIDER_AWS_BEDROCK,
                            model=str(model) if model else None, messages=messages,
                            attributes=attrs, turn_text=turn_text, operation=operation)


def _finish(op: Operation, reply: ModelReply, abandoned: bool = False,
            broken: bool = False) -> None:
    """End the chat span with the reply and note the tool calls it asks for."""
    span = op.span
    if reply.response_id:
        span.set_attribute(semconv.GEN_AI_RESPONSE_ID, str(reply.response_id))
    if abandoned:
        span.set_attribute(semconv.AG_STREAM_ABANDONED, True)
    if reply.truncated:
        span.set_attribute(semconv.AG_BEDROCK_RESPONSE_TRUNCATED, reply.truncated)
    if "guardrail_intervened" in reply.finish_reasons or reply.guardrail_action == "INTERVENED":
        span.set_attribute(semconv.AG_BEDROCK_GUARDRAIL_ACTION, "INTERVENED")
    if reply.cache_read_tokens is not None:
        span.set_attribute(semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, reply.cache_read_tokens)
    if reply.cache_write_tokens is not None:
        span.set_attribute(semconv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
                           reply.cache_write_tokens)
    op.end_chat(reply.output, response_model=reply.response_model,
                input_tokens=reply.total_input_tokens(), output_tokens=reply.output_tokens,
                finish_reasons=reply.finish_reasons,
                unfinished="abandoned" if abandoned else "error" if broken else None)
    if abandoned or broken:
        return  # the caller never saw the whole answer, so it will not run these tools
    for message in reply.output:
        for tool_call in message.get("tool_calls", ()):
            name, call_id = tool_call.get("name"), tool_call.get("id")
            if isinstance(name, str) and isinstance(call_id, str):
                expect_tool_call(name, call_id, tool_call.get("arguments"))


def _broken(op: Operation, reply: ModelReply, exc: BaseException) -> None:
    """End the chat span of a stream that failed mid-way (an exception event, a dropped
    connection): an error with the AWS error code, as a call failing before its stream would
    have, keeping the part of the answer the caller already read, recorded and judged as for
    a stream the caller abandoned."""
    span = op.span
    if isinstance(getattr(exc, "response", None), dict):
        span.set_attribute(semconv.RPC_RESPONSE_STATUS_CODE, error_code(exc))
    if not reply.output and reply.input_tokens is None and reply.output_tokens is None:
        op.fail(exc)
        return
    mark_failed(op, exc)
    _finish(op, reply, broken=True)


# -- Converse / ConverseStream -------------------------------------------------------------------

def _converse_request(call: CallInfo) -> tuple[list[dict[str, Any]], dict[str, Any],
                                               dict[str, Any]]:
    params = call.params
    messages = converse_messages(params.get("messages"), params.get("system"))
    variables = prompt_variables(params.get("promptVariables"))
    if variables is not None:
        messages.insert(0, variables)  # they fill the managed prompt, which comes first
    config = params.get("inferenceConfig")
    config = config if isinstance(config, dict) else {}
    sampling = {"max_tokens": config.get("maxTokens"), "temperature": config.get("temperature"),
                "top_p": config.get("topP"), "stop_sequences": config.get("stopSequences")}
    guardrail = params.get("guardrailConfig")
    guardrail = guardrail if isinstance(guardrail, dict) else {}
    extra = _guardrail_attributes(guardrail.get("guardrailIdentifier"),
                                  guardrail.get("guardrailVersion"))
    return messages, {k: v for k, v in sampling.items() if v is not None}, extra


def _converse_reply(result: dict[str, Any]) -> ModelReply:
    reply = ModelReply()
    output = result.get("output")
    if isinstance(output, dict):
        reply.output = [converse_output(output.get("message"))]
    if result.get("stopReason"):
        reply.finish_reasons = [str(result["stopReason"])]
    converse_usage(result.get("usage"), reply)
    return reply


class Converse(Handler):
    """``Converse``: the whole answer is in the parsed response."""

    model_call = True

    def start(self, guard: Guard, call: CallInfo) -> _State:
        messages, sampling, extra = _converse_request(call)
        return _State(_start_chat(guard, call, messages, sampling, extra, stream=False,
                                  turn_text=_user_turn(call.params.get("messages"))))

    def done(self, state: _State, result: Any, asynchronous: bool) -> None:
        record_response(state.op.span, result)
        _finish(state.op, _converse_reply(result))


class _ConverseStreamFollower(StreamFollower):
    """Accumulates ``ConverseStream`` events (the same shapes as Nova's stream chunks)."""

    __slots__ = ("acc", "op")

    def __init__(self, op: Operation) -> None:
        super().__init__()
        self.op = op
        self.acc = StreamAccumulator("nova")

    def observe(self, event: Any) -> None:
        if isinstance(event, dict):
            self.acc.add(event)

    def complete(self) -> None:
        _finish(self.op, self.acc.result())

    def failed(self, exc: BaseException) -> None:
        _broken(self.op, self.acc.result(), exc)

    def abandoned(self) -> None:
        _finish(self.op, self.acc.result(), abandoned=True)


def _trace_stream(result: Any, key: str, follower: StreamFollower, asynchronous: bool) -> None:
    stream = result.get(key) if isinstance(result, dict) else None
    if stream is None:
        follower.on_complete()
        return
    result[key] = (TracedAioEventStream if asynchronous else TracedEventStream)(stream, follower)


class ConverseStream(Handler):
    """``ConverseStream``: the span ends when the event stream does."""

    model_call = True

    def start(self, guard: Guard, call: CallInfo) -> _State:
        messages, sampling, extra = _converse_request(call)
        return _State(_start_chat(guard, call, messages, sampling, extra, stream=True,
                                  turn_text=_user_turn(call.params.get("messages"))))

    def done(self, state: _State, result: Any, asynchronous: bool) -> None:
        record_response(state.op.span, result)
        _trace_stream(result, "stream", _ConverseStreamFollower(state.op), asynchronous)


# -- InvokeModel / InvokeModelWithResponseStream ---------------------------------------------------

def _request_body(body: Any) -> tuple[Any, str | None]:
    """The JSON request body, if it can be read without disturbing the caller's object, and why
    it was not read whole (``depth``, ``invalid_json``, ``size``), if it was not.

    A body past :data:`MAX_BODY` is read with its long strings (the base64 of attached images
    and documents) cut, first to :data:`LONG_STRING`, then to :data:`SHORT_STRING` bytes, when
    that brings it within :data:`MAX_BODY`: the prompt is judged, the attachments in part. One
    past :data:`MAX_REQUEST_BODY` (more than Bedrock takes), or with more structure than the
    scan reads, is not read."""
    data: Any = None
    if isinstance(body, (bytes, bytearray, memoryview)):
        if (body.nbytes if isinstance(body, memoryview) else len(body)) > MAX_REQUEST_BODY:
            return None, CUT_SIZE
        data = body if isinstance(body, bytes) else bytes(body)
    elif isinstance(body, str):
        if len(body) > MAX_REQUEST_BODY:
            return None, CUT_SIZE
        data = body
    elif hasattr(body, "read") and hasattr(body, "seek") and hasattr(body, "tell"):
        try:  # a seekable file: read, then put the position back for botocore
            position = body.tell()
            data = body.read(MAX_REQUEST_BODY + 1)
            body.seek(position)
        except Exception:
            return None, None
    if isinstance(data, bytearray):
        data = bytes(data)
    if not isinstance(data, (bytes, str)):
        return None, None
    if len(data) <= MAX_BODY:
        return parse_json_partial(data)
    if len(data) > MAX_REQUEST_BODY:
        return None, CUT_SIZE
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    for keep in (LONG_STRING, SHORT_STRING):
        shorter = shorten_strings(raw, keep)
        if shorter is None:
            break
        if len(shorter) <= MAX_BODY:
            return parse_json_partial(shorter)[0], CUT_SIZE
    return None, CUT_SIZE


def _embeddings_start(guard: Guard, call: CallInfo, body: Any,
                      attrs: dict[str, Any] | None = None) -> _State:
    """An ``embeddings {model}`` span: the inputs (per the capture setting), the dimension count
    and the encoding formats asked for, and ``attrs``; judged as a model call (there is no turn
    in it)."""
    request = embedding_request(body)
    attrs = {**call.rpc_attributes(), **(attrs or {})}
    if request.dimensions is not None:
        attrs[semconv.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = request.dimensions
    if request.formats:
        attrs[semconv.GEN_AI_REQUEST_ENCODING_FORMATS] = request.formats
    op = _start_generation(guard, call, attrs, request.messages, semconv.OP_EMBEDDINGS)
    return _State(op, _EMBEDDING, request.dimensions)


def _finish_embeddings(state: _State, data: bytes | None, result: Any) -> None:
    """End an embeddings span with the input token count and the dimension count the answer
    shows; the vectors themselves are not recorded or judged."""
    body = parse_json_partial(data)[0] if data is not None else None
    tokens, dimensions = embedding_response(body)
    reply = ModelReply()
    reply.input_tokens = tokens
    _header_usage(result, reply)
    if dimensions is not None and state.dimensions is None:
        state.op.span.set_attribute(semconv.GEN_AI_EMBEDDINGS_DIMENSION_COUNT, dimensions)
    state.op.end_chat(None, input_tokens=reply.input_tokens)


def _image_start(guard: Guard, call: CallInfo, body: Any,
                 attrs: dict[str, Any] | None = None) -> _State:
    """A ``generate_content {model}`` span: the prompt (judged as the user's message, a turn in a
    conversation, as a chat model's is), the negative and mask prompts, a placeholder per input
    image, the image count and seed asked for, and ``attrs``."""
    request = image_request(body)
    attrs = {**call.rpc_attributes(), **(attrs or {})}
    attrs[semconv.GEN_AI_OUTPUT_TYPE] = semconv.OUTPUT_TYPE_IMAGE
    if request.count is not None:
        attrs[semconv.GEN_AI_REQUEST_CHOICE_COUNT] = request.count
    if request.seed is not None:
        attrs[semconv.GEN_AI_REQUEST_SEED] = request.seed
    op = _start_generation(guard, call, attrs, request.messages, semconv.OP_GENERATE_CONTENT,
                           request.prompt)
    return _State(op, _IMAGE)


def _finish_image(state: _State, data: bytes | None, result: Any) -> None:
    """End an image generation span with the number of images and their size in bytes, the
    finish reasons and the usage headers. The images are not output messages: base64 is not
    text, so none of it is recorded or judged (a body that is not JSON is not read as text)."""
    span = state.op.span
    count: int | None = None
    size = 0
    reasons: list[str] = []
    if data is None:
        body_size = _body_size(result) if isinstance(result, dict) else None
        if body_size is not None and body_size > MAX_BODY:
            span.set_attribute(semconv.AG_BEDROCK_RESPONSE_TRUNCATED, CUT_SIZE)
    elif _json_or_text(result):
        parsed, cut = parse_json_partial(data)
        images = image_response(parsed)
        count, size, reasons = images.count, images.size, images.finish_reasons
        if cut is not None:
            span.set_attribute(semconv.AG_BEDROCK_RESPONSE_TRUNCATED, cut)
    else:  # the image itself (an ``accept`` of image/png or image/jpeg)
        count, size = 1, len(data)
    if count is not None:
        span.set_attribute(semconv.AG_OUTPUT_IMAGE_COUNT, count)
        span.set_attribute(semconv.AG_OUTPUT_IMAGE_SIZE, size)
    reply = ModelReply()
    _header_usage(result, reply)
    state.op.end_chat(None, input_tokens=reply.total_input_tokens(),
                      output_tokens=reply.output_tokens, finish_reasons=reasons)


def _invoke_start(guard: Guard, call: CallInfo, stream: bool) -> _State:
    params = call.params
    body, cut = _request_body(params.get("body"))
    marks = {semconv.AG_BEDROCK_REQUEST_TRUNCATED: cut} if cut else {}
    if is_embedding(str(params.get("modelId") or ""), body):
        return _embeddings_start(guard, call, body, marks)
    if is_image_generation(str(params.get("modelId") or ""), body):
        return _image_start(guard, call, body, marks)
    family = family_of(str(params.get("modelId") or ""), body)
    messages: list[dict[str, Any]] = []
    sampling: dict[str, Any] = {}
    if isinstance(body, dict):
        messages, sampling = parse_request(family, body)
    extra = _guardrail_attributes(params.get("guardrailIdentifier"),
                                  params.get("guardrailVersion"))
    extra.update(marks)
    return _State(_start_chat(guard, call, messages, sampling, extra, stream=stream,
                              turn_text=_invoke_turn(family, body)), family)


# InvokeModel's usage headers, and the ModelReply slot each one fills.
_USAGE_HEADERS = (("x-amzn-bedrock-input-token-count", "input_tokens"),
                  ("x-amzn-bedrock-output-token-count", "output_tokens"),
                  ("x-amzn-bedrock-cache-read-input-token-count", "cache_read_tokens"),
                  ("x-amzn-bedrock-cache-write-input-token-count", "cache_write_tokens"))


def _header_usage(result: Any, reply: ModelReply) -> None:
    # InvokeModel reports token counts in response headers for every model family.
    headers = result.get("ResponseMetadata", {}).get("HTTPHeaders", {}) if isinstance(
        result, dict) else {}
    if not isinstance(headers, dict):
        return
    for header, slot in _USAGE_HEADERS:
        value = headers.get(header)
        if value is not None and getattr(reply, slot) is None:
            with contextlib.suppress(ValueError):
                setattr(reply, slot, token_count(int(value)))


def _body_size(result: dict[str, Any]) -> int | None:
    metadata = result.get("ResponseMetadata")
    headers = metadata.get("HTTPHeaders") if isinstance(metadata, dict) else None
    length = headers.get("content-length") if isinstance(headers, dict) else None
    try:
        return int(length) if length is not None else None
    except (TypeError, ValueError):
        return None


def _json_or_text(result: Any) -> bool:
    """Whether the response's content type is JSON or text (or not given)."""
    kind = result.get("contentType") if isinstance(result, dict) else None
    if not isinstance(kind, str) or not kind:
        return True
    kind = kind.lower()
    return "json" in kind or kind.startswith("text/")


def _reply_from(family: str, data: bytes | None, result: Any) -> ModelReply:
    """The answer in an ``InvokeModel`` body: decoded per family; a body too deep to decode
    whole read without its deepest parts; a body that is not JSON read as text (what a lenient
    reader would show); a body too large to read, none. Usage from the headers if not in it."""
    reply = ModelReply()
    if data is None:
        size = _body_size(result) if isinstance(result, dict) else None
        if size is not None and size > MAX_BODY:
            reply.truncated = CUT_SIZE
    elif _json_or_text(result):  # not an image or other media the caller asked for (accept)
        parsed, cut = parse_json_partial(data)
        if isinstance(parsed, dict):
            reply = parse_response(family, parsed)
        elif parsed is None and cut is not None:
            text = raw_text(data)
            if text is not None:
                reply.output = [{"role": "assistant", "content": text}]
        reply.truncated = cut
    _header_usage(result, reply)
    return reply


def _invoke_end(state: _State, data: bytes | None, result: Any) -> None:
    if state.family == _EMBEDDING:
        _finish_embeddings(state, data, result)
    elif state.family == _IMAGE:
        _finish_image(state, data, result)
    else:
        _finish(state.op, _reply_from(state.family, data, result))


class InvokeModel(Handler):
    """``InvokeModel``: the body is read here and handed back as a new body over the same bytes.

    Bodies larger than :data:`MAX_BODY` (or of unknown length) are left alone; the span then
    has the usage the response headers carry, and no output.
    """

    model_call = True

    def start(self, guard: Guard, call: CallInfo) -> _State:
        return _invoke_start(guard, call, stream=False)

    def _body(self, result: Any) -> Any:
        if not isinstance(result, dict):
            return None
        body = result.get("body")
        size = _body_size(result)
        return body if body is not None and size is not None and size <= MAX_BODY else None

    def done(self, state: _State, result: Any, asynchronous: bool) -> None:
        record_response(state.op.span, result)
        body = self._body(result)
        data = None
        if body is not None:
            try:
                data = body.read()
            except Exception as exc:
                # The caller would have met this error reading the body; it meets it here.
                state.op.fail(exc)
                raise CallerError(exc) from exc
            result["body"] = buffered_body(data)
        _invoke_end(state, data, result)

    async def adone(self, state: _State, result: Any) -> None:
        record_response(state.op.span, result)
        body = self._body(result)
        data = None
        if body is not None:
            try:
                data = await body.read()
            except Exception as exc:
                state.op.fail(exc)
                raise CallerError(exc) from exc
            result["body"] = buffered_aio_body(body, data)
        _invoke_end(state, data, result)


class _InvokeStreamFollower(StreamFollower):
    """Decodes the JSON chunks of ``InvokeModelWithResponseStream``."""

    __slots__ = ("acc", "op")

    def __init__(self, op: Operation, family: str) -> None:
        super().__init__()
        self.op = op
        self.acc = StreamAccumulator(family)

    def observe(self, event: Any) -> None:
        chunk = event.get("chunk") if isinstance(event, dict) else None
        data = chunk.get("bytes") if isinstance(chunk, dict) else None
        if not isinstance(data, (bytes, bytearray)):
            return
        if len(data) > MAX_BODY:
            self.acc.reply.truncated = self.acc.reply.truncated or CUT_SIZE
            return
        decoded, cut = parse_json_partial(data)
        if cut is not None and self.acc.reply.truncated is None:
            self.acc.reply.truncated = cut
        if isinstance(decoded, dict):
            self.acc.add(decoded)

    def complete(self) -> None:
        _finish(self.op, self.acc.result())

    def failed(self, exc: BaseException) -> None:
        _broken(self.op, self.acc.result(), exc)

    def abandoned(self) -> None:
        _finish(self.op, self.acc.result(), abandoned=True)


class InvokeModelWithResponseStream(Handler):
    """``InvokeModelWithResponseStream``: chunks decoded as the caller reads them."""

    model_call = True

    def start(self, guard: Guard, call: CallInfo) -> _State:
        return _invoke_start(guard, call, stream=True)

    def done(self, state: _State, result: Any, asynchronous: bool) -> None:
        record_response(state.op.span, result)
        # Bedrock streams neither embeddings nor images: nothing to follow
        if state.family == _EMBEDDING:
            _finish_embeddings(state, None, result)
            return
        if state.family == _IMAGE:
            _finish_image(state, None, result)
            return
        _trace_stream(result, "body", _InvokeStreamFollower(state.op, state.family), asynchronous)


# -- StartAsyncInvoke (video generation, embeddings) ---------------------------------------------

def _judge_destination(guard: Guard, op: Operation, call: CallInfo,
                       resource: dict[str, str]) -> None:
    """Judge the call as the cloud call it is (a ``CloudCall`` whose resource is where the
    output goes), so a policy on where data may be written sees it as it sees a PutObject; a
    block ends ``op`` and raises :class:`CloudCallBlocked` before anything is sent."""
    event = CloudCall.model_construct(
        context=op.event_context(), provider="aws", service=call.service,
        operation=call.operation, region=call.region, resource=resource,
        parameters=safe_parameters(call.params), status=None, error=None,
        timestamp=time.time())
    verdict = guard.emit_event(event, op.span)
    finding = verdict.blocking_finding() if verdict.blocked else None
    if finding is None:
        return
    op.span.set_status(Status(StatusCode.ERROR, "blocked by agentguard"))
    op.end()
    raise CloudCallBlocked(finding, f"{call.service}.{call.operation}")


_MODEL_RESOURCE_ATTRIBUTE = semconv.AG_CLOUD_RESOURCE_PREFIX + "model"


class StartAsyncInvoke(Handler):
    """``StartAsyncInvoke`` of a video generation model (a ``generate_content {model}`` span) or
    of an embedding model (TwelveLabs Marengo, Nova multimodal embeddings: ``embeddings
    {model}``)."""

    def takes(self, call: CallInfo) -> bool:
        model, body = str(call.params.get("modelId") or ""), call.params.get("modelInput")
        return is_video_generation(model, body) or is_embedding(model, body)

    def start(self, guard: Guard, call: CallInfo) -> _State:
        """The prompts or inputs (a video's prompt judged as the user's message, a turn in a
        conversation, as an image model's is), a placeholder per input image or media, the seed
        or the dimensions, and the S3 destination, judged as the cloud call it is."""
        model, body = str(call.params.get("modelId") or ""), call.params.get("modelInput")
        resource, resource_attrs = extract_resources(call.service, call.operation, call.params)
        # The destination's attributes; the model is gen_ai.request.model already.
        destination = {key: value for key, value in resource_attrs.items()
                       if key != _MODEL_RESOURCE_ATTRIBUTE}
        if is_video_generation(model, body):
            request = video_request(body)
            attrs = call.rpc_attributes()
            attrs[semconv.GEN_AI_OUTPUT_TYPE] = semconv.OUTPUT_TYPE_VIDEO
            if request.seed is not None:
                attrs[semconv.GEN_AI_REQUEST_SEED] = request.seed
            attrs.update(destination)
            state = _State(_start_generation(guard, call, attrs, request.messages,
                                             semconv.OP_GENERATE_CONTENT, request.prompt),
                           _VIDEO)
        else:
            state = _embeddings_start(guard, call, body, destination)
        if guard.has_stages:
            try:
                _judge_destination(guard, state.op, call, resource)
            except CloudCallBlocked:
                raise
            except Exception as exc:  # the model call is traced and judged all the same
                internal_error("bedrock async invocation destination", exc)
        return state

    def done(self, state: _State, result: Any, asynchronous: bool) -> None:
        """The invocation's ARN is the response id (a later ``GetAsyncInvoke`` names it); the
        video or the vectors are not in the answer, so there is no output to record or judge."""
        record_response(state.op.span, result)
        arn = result.get("invocationArn") if isinstance(result, dict) else None
        if isinstance(arn, str) and arn:
            state.op.span.set_attribute(semconv.GEN_AI_RESPONSE_ID, arn)
        state.op.end()


HANDLERS: dict[str, Handler] = {
    "StartAsyncInvoke": StartAsyncInvoke(),
    "Converse": Converse(),
    "ConverseStream": ConverseStream(),
    "InvokeModel": InvokeModel(),
    "InvokeModelWithResponseStream": InvokeModelWithResponseStream(),
}
