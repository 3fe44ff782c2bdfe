"""bedrock-agent-runtime: ``InvokeAgent``, ``Retrieve``, ``RetrieveAndGenerate``.

``InvokeAgent`` is one ``invoke_agent {agentId}`` span (the session id is the conversation, the
input text a turn). With ``enableTrace`` the orchestration trace events the stream carries
become child spans as the caller reads them: model invocations (``chat``: the prompt, and the
raw response read as the model's own JSON, its reasoning apart from its answer, the leading
``<thinking>`` blocks of an orchestration answer included, its usage with the prompt-cache
counts, what the agent parsed from a pre-/post-processing answer), action-group calls
(``execute_tool``) and knowledge-base lookups (``retrieval``, whose passages the Guard sees as
untrusted content); the ``rationale`` step, the final response, a reprompt and a custom
orchestrator's trace events are span events (the final response and a reprompt, what the user
is shown, judged as the agent's answer).

Action groups with ``RETURN_CONTROL`` hand the tool call to the application: each one becomes a
``ToolCall`` judged when its ``returnControl`` event arrives. A block raises
:class:`~agentguard.ToolCallBlocked` from the iteration that would have yielded that event, so
the application never sees the request. Otherwise the ``execute_tool`` span stays open until the
application sends the results back (``sessionState.returnControlInvocationResults`` of the next
``InvokeAgent`` call), where they are judged as the tool's result; a block there raises before
the results are sent. Server-side (Lambda) action groups have already run when their trace event
arrives: a block on one stops the application from receiving the rest of the agent's answer.

``Retrieve``, ``RetrieveAndGenerate`` and ``RetrieveAndGenerateStream`` are
``retrieval {knowledgeBaseId}`` spans whose documents are the retrieved passages (for the last
two, those their citations name): a structured source's rows read as ``column: value`` lines,
audio and video results as their transcription or summary. The generated answer is judged as the
model's output, on the same span.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from opentelemetry.trace import SpanKind

from agentguard import semconv
from agentguard._errors import internal_error
from agentguard._genai import output_messages
from agentguard._guard import Guard, Operation
from agentguard.events import Document, Message, ModelCall, Retrieval, trusted
from agentguard.findings import ToolCallBlocked
from agentguard.integrations._aws_call import CallInfo, Handler, error_code, record_response
from agentguard.integrations._aws_streams import (
    StreamFollower,
    TracedAioEventStream,
    TracedEventStream,
)
from agentguard.integrations._bedrock_models import (
    MAX_TEXT,
    ContentBudget,
    ModelReply,
    converse_reasoning,
    parse_json,
    parse_response,
    text_of,
    token_count,
)

__all__ = ["HANDLERS", "PendingReturnControl", "pending_return_control"]

# Trace steps open at once in one agent stream (a step is closed by its observation).
MAX_OPEN_STEPS = 256
MAX_DOCUMENTS = 100
# Cells read from one structured (ROW) result; binary cells carry nothing the scanner can read.
MAX_COLUMNS = 256
_UNREADABLE_COLUMNS = frozenset({"BLOB", "NULL"})


class PendingReturnControl:
    """Tool calls handed to the application (``RETURN_CONTROL``) whose results are not back yet.

    Keyed by invocation id, bounded: the oldest invocation is dropped first and its spans end
    as abandoned, so an application that never answers cannot make this grow.
    """

    LIMIT = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[str, list[tuple[str, Operation]]] = OrderedDict()
        self.dropped = 0

    def add(self, invocation_id: str, calls: list[tuple[str, Operation]]) -> None:
        evicted: list[tuple[str, Operation]] = []
        with self._lock:
            self._items.setdefault(invocation_id, []).extend(calls)
            while len(self._items) > self.LIMIT:
                evicted.extend(self._items.popitem(last=False)[1])
                self.dropped += 1
        for _, op in evicted:
            op.abandon()

    def take(self, invocation_id: str) -> list[tuple[str, Operation]]:
        with self._lock:
            return self._items.pop(invocation_id, [])

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            items = list(self._items.values())
            self._items.clear()
        for calls in items:
            for _, op in calls:
                op.abandon()


pending_return_control = PendingReturnControl()


def _scalar_params(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(items, list):
        for item in items[:64]:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                out[item["name"]] = item.get("value")
    return out


def _action(item: dict[str, Any]) -> tuple[str, dict[str, Any], str | None]:
    """Tool name, arguments and action group of an action-group invocation input."""
    group = str(item.get("actionGroup") or item.get("actionGroupName") or "action_group")
    arguments = _scalar_params(item.get("parameters"))
    body = item.get("requestBody")
    content = body.get("content") if isinstance(body, dict) else None
    if isinstance(content, dict):
        for media in content.values():
            if isinstance(media, dict):
                arguments.update(_scalar_params(media.get("properties")))
            elif isinstance(media, list):
                arguments.update(_scalar_params(media))
    if item.get("function"):
        return f"{group}::{item['function']}", arguments, group
    verb = str(item.get("httpMethod") or item.get("verb") or "").upper()
    return f"{group}::{verb}::{item.get('apiPath', '')}", arguments, group


def _result_text(result: dict[str, Any]) -> tuple[str, Any]:
    """Tool name and returned body of one ``returnControlInvocationResults`` item."""
    inner = result.get("functionResult") or result.get("apiResult") or {}
    if not isinstance(inner, dict):
        return "", None
    name, _, _ = _action(inner)
    response = inner.get("responseBody")
    body: Any = None
    if isinstance(response, dict):
        for media in response.values():
            if isinstance(media, dict) and "body" in media:
                body = media["body"]
                break
    if inner.get("responseState"):
        body = {"state": inner["responseState"], "body": body}
    return name, body


def _source(location: Any) -> str | None:
    if not isinstance(location, dict):
        return None
    for value in location.values():
        if isinstance(value, dict):
            for key in ("uri", "url", "id"):
                if isinstance(value.get(key), str):
                    return str(value[key])
    return None


def _row_text(row: list[Any]) -> str:
    """A structured result's cells as ``column: value`` lines (bounded)."""
    lines: list[str] = []
    size = 0
    for column in row[:MAX_COLUMNS]:
        if not isinstance(column, dict) or column.get("type") in _UNREADABLE_COLUMNS:
            continue
        value = column.get("columnValue")
        if value is None:
            continue
        line = f"{column.get('columnName') or '?'}: {value}"[:MAX_TEXT - size]
        lines.append(line)
        size += len(line) + 1
        if size >= MAX_TEXT:
            break
    return "\n".join(lines)


def _content_text(content: Any) -> str:
    """The text of a retrieval result the model will read: the passage (``TEXT``), the row's
    cells (``ROW``), an audio transcription or a video summary. Images carry no text."""
    if not isinstance(content, dict):
        return ""
    if isinstance(content.get("text"), str):
        return str(content["text"])
    if isinstance(content.get("row"), list):
        return _row_text(content["row"])
    for key, field in (("audio", "transcription"), ("video", "summary")):
        segment = content.get(key)
        if isinstance(segment, dict) and isinstance(segment.get(field), str):
            return str(segment[field])
    return ""


def _document(reference: Any) -> dict[str, Any] | None:
    if not isinstance(reference, dict):
        return None
    text = _content_text(reference.get("content"))
    metadata = reference.get("metadata")
    kept = {str(k): v for k, v in list(metadata.items())[:32]
            if isinstance(v, (str, int, float, bool))} if isinstance(metadata, dict) else {}
    if isinstance(reference.get("score"), (int, float)):
        kept["score"] = reference["score"]
    doc_id = reference.get("documentId")
    return {"id": str(doc_id) if doc_id else None, "source": _source(reference.get("location")),
            "content": text, "metadata": kept}


def _documents(references: Any) -> list[dict[str, Any]]:
    docs = []
    if isinstance(references, list):
        for reference in references[:MAX_DOCUMENTS]:
            doc = _document(reference)
            if doc is not None:
                docs.append(doc)
    return docs


def _prompt_messages(text: Any) -> list[dict[str, Any]]:
    """The prompt of an agent's model invocation: its messages when it is JSON, else one text."""
    if not isinstance(text, str):
        return []
    if text[:1] == "{" and len(text) <= MAX_TEXT:
        parsed = parse_json(text)
        if isinstance(parsed, dict) and isinstance(parsed.get("messages"), list):
            messages: list[dict[str, Any]] = []
            budget = ContentBudget()
            if parsed.get("system"):
                messages.append({"role": "system", "content": text_of(
                    parsed["system"], encoded=True, budget=budget)})
            for message in parsed["messages"][:MAX_DOCUMENTS]:
                if isinstance(message, dict):
                    messages.append({"role": str(message.get("role", "user")), "content": text_of(
                        message.get("content"), encoded=True, budget=budget)})
            return messages
    return [{"role": "user", "content": text}]


# The longest raw model response decoded as JSON (a longer one is recorded as the text it is).
MAX_RAW_RESPONSE = 4 * MAX_TEXT

_THINKING_OPEN = "<thinking>"
_THINKING_CLOSE = "</thinking>"
# Leading <thinking> blocks read apart from one answer; any further one stays in the answer.
MAX_THINKING_BLOCKS = 8


def split_thinking(text: str) -> tuple[list[str], str]:
    """The leading ``<thinking>...</thinking>`` blocks of an orchestration answer (what Claude 3.x
    writes before acting, as the agent's prompt asks; the agent shows it as the ``rationale``,
    never to the user), and the answer after them.

    Only whole blocks at the very start count, in exactly that spelling: a tag that is not
    closed, a block with another ``<thinking`` inside it, or a block after the answer began
    leaves the text where it is, so a tag the model was led to write cannot take the answer
    (or a link in it) out of the judgement of the answer."""
    thoughts: list[str] = []
    rest = text
    taken = False
    for _ in range(MAX_THINKING_BLOCKS):
        head = rest.lstrip()
        if not head.startswith(_THINKING_OPEN):
            break
        end = head.find(_THINKING_CLOSE, len(_THINKING_OPEN))
        if end < 0:
            break
        inner = head[len(_THINKING_OPEN):end]
        if "<thinking" in inner.lower():
            break
        if inner.strip():
            thoughts.append(inner.strip())
        rest = head[end + len(_THINKING_CLOSE):]
        taken = True
    return (thoughts, rest.lstrip()) if taken else ([], text)


def _thinking_apart(reply: ModelReply) -> None:
    """Move the leading ``<thinking>`` blocks of the answer's text to its reasoning (after any
    reasoning the model returned as such)."""
    if not reply.output:
        return
    message = reply.output[0]
    content = message.get("content")
    if not isinstance(content, str) or _THINKING_OPEN not in content:
        return
    thoughts, rest = split_thinking(content)
    if rest == content:
        return
    message["content"] = rest
    earlier = message.get("reasoning")
    joined = "\n\n".join([earlier, *thoughts] if earlier else thoughts)
    if joined:
        message["reasoning"] = joined


def _raw_block(block: Any) -> Any:
    """A content block of an agent's raw Anthropic response, with the reasoning Bedrock puts in
    its own fields (``reasoningText``, ``reasoningRedactedContent``) as Anthropic's ``thinking``
    / ``redacted_thinking`` block; the signature and the redacted bytes are left out."""
    if not isinstance(block, dict):
        return block
    thought = block.get("reasoningText")
    if isinstance(thought, dict):
        thought = thought.get("text")
    if isinstance(thought, str):
        return {"type": "thinking", "thinking": thought}
    if block.get("reasoningRedactedContent") is not None:
        return {"type": "redacted_thinking"}
    return block


def _model_reply(item: dict[str, Any]) -> ModelReply:
    """The answer of an agent's model invocation: its raw response read as the model's own JSON
    (Anthropic Messages, or Converse for other models: text, tool calls, reasoning, finish
    reason, usage with the prompt-cache counts), else as the text it is; the ``reasoningContent``
    the trace gives beside it as the reasoning; the trace's token counts where it has them."""
    raw = item.get("rawResponse")
    content = raw.get("content") if isinstance(raw, dict) else None
    parsed = parse_json(content) if isinstance(content, str) and content[:1] == "{" and \
        len(content) <= MAX_RAW_RESPONSE else None
    reply = ModelReply()
    if isinstance(parsed, dict) and isinstance(parsed.get("content"), list) and (
            parsed.get("type") == "message" or parsed.get("role") == "assistant"):
        parsed = {**parsed, "content": [_raw_block(block) for block in parsed["content"]]}
        reply = parse_response("anthropic", parsed)
    elif isinstance(parsed, dict) and isinstance(parsed.get("output"), dict) and \
            isinstance(parsed["output"].get("message"), dict):
        reply = parse_response("nova", parsed)
    elif content is not None:
        reply.output = [{"role": "assistant", "content": str(content)}]
    thought = converse_reasoning({"reasoningContent": item.get("reasoningContent")})
    if thought:
        if not reply.output:
            reply.output = [{"role": "assistant", "content": ""}]
        reply.output[0]["reasoning"] = thought
    metadata = item.get("metadata")
    usage = metadata.get("usage") if isinstance(metadata, dict) else None
    if isinstance(usage, dict):
        # Bedrock's own count, as the raw response's (which leaves out the cached tokens).
        for field, slot in (("inputTokens", "input_tokens"), ("outputTokens", "output_tokens")):
            if (count := token_count(usage.get(field))) is not None:
                setattr(reply, slot, count)
    return reply


# -- InvokeAgent ---------------------------------------------------------------------------------

# The trace part of the orchestration step (the one whose prompt asks for <thinking>).
_ORCHESTRATION = "orchestrationTrace"
# The trace part a custom orchestrator (a Lambda function of the application's) writes.
_CUSTOM_ORCHESTRATION = "customOrchestrationTrace"
# Text of the judged answers kept per agent stream, to know the final response by.
MAX_JUDGED_TEXT = 4 * MAX_TEXT

class _AgentState:
    __slots__ = ("call", "guard", "op")

    def __init__(self, guard: Guard, op: Operation, call: CallInfo) -> None:
        self.guard = guard
        self.op = op
        self.call = call


class _AgentFollower(StreamFollower):
    """Turns an ``InvokeAgent`` stream into child spans and ``ToolCall`` events."""

    __slots__ = ("answer", "answer_size", "call", "guard", "judged", "judged_size", "op", "steps")

    def __init__(self, state: _AgentState) -> None:
        super().__init__()
        self.guard = state.guard
        self.op = state.op
        self.call = state.call
        self.answer: list[str] = []
        self.answer_size = 0
        self.steps: dict[tuple[str, str], Operation] = {}
        # The text of the answers judged so far (the models' answers the trace carried, the
        # agent's final response), runs of whitespace made one space: with any, the answer
        # streamed back is one of them and is not judged a second time.
        self.judged: list[str] = []
        self.judged_size = 0

    # -- events ----------------------------------------------------------------------------
    def observe(self, event: Any) -> None:
        if not isinstance(event, dict):
            return
        chunk = event.get("chunk")
        if isinstance(chunk, dict):
            data = chunk.get("bytes")
            if isinstance(data, (bytes, bytearray)) and self.answer_size < MAX_TEXT:
                text = bytes(data[:MAX_TEXT - self.answer_size]).decode("utf-8", "replace")
                self.answer.append(text)
                self.answer_size += len(text)
            return
        token = self.op.activate()
        try:
            trace_part = event.get("trace")
            if isinstance(trace_part, dict) and isinstance(trace_part.get("trace"), dict):
                self._trace(trace_part["trace"])
            elif isinstance(event.get("returnControl"), dict):
                self._return_control(event["returnControl"])
        finally:
            self.op.deactivate(token)

    def _trace(self, trace: dict[str, Any]) -> None:
        for key, step in trace.items():
            if not isinstance(step, dict):
                continue
            if key == "guardrailTrace":
                self.op.span.add_event(semconv.EVENT_BEDROCK_GUARDRAIL, {
                    semconv.AG_BEDROCK_GUARDRAIL_ACTION: str(step.get("action", "")),
                    semconv.AG_BEDROCK_TRACE_ID: str(step.get("traceId", ""))})
            elif key == "failureTrace":
                self._failure(step)
            elif key == _CUSTOM_ORCHESTRATION:
                self._custom_orchestration(step)
            else:
                # orchestration, pre-/post-processing, routing
                self._step(key, step)

    def _captured(self, text: Any) -> str | None:
        """Trace text as content: captured per capture_content (redacted, hashed or left out),
        at most :data:`MAX_TEXT` of it; ``None`` when there is none or it is not recorded."""
        if not isinstance(text, str) or not text or not self.guard.capture.enabled:
            return None
        return self.guard.content(text[:MAX_TEXT])

    def _text_event(self, name: str, step: dict[str, Any], text: Any,
                    attributes: dict[str, Any] | None = None) -> None:
        """A span event on the agent span for one text of the trace: its trace id, and the text
        in ``message`` as content (redacted, hashed or left out per capture_content)."""
        event: dict[str, Any] = {semconv.AG_BEDROCK_TRACE_ID: str(step.get("traceId", ""))}
        event.update(attributes or {})
        captured = self._captured(text)
        if captured is not None:
            event[semconv.EVENT_ATTR_MESSAGE] = captured
        self.op.span.add_event(name, event)

    def _failure(self, step: dict[str, Any]) -> None:
        # Content like any error message (a Lambda's error often quotes its input).
        reason = step.get("failureReason")
        self._text_event(semconv.EVENT_BEDROCK_FAILURE, step, str(reason) if reason else None)

    def _rationale(self, step: dict[str, Any]) -> None:
        """The agent's account of the model's reasoning for the next action: a span event on the
        agent span (the step's chat span has ended by now), the text captured as content. It is
        reasoning: not judged as the model's answer."""
        self._text_event(semconv.EVENT_BEDROCK_RATIONALE, step, step.get("text"))

    def _custom_orchestration(self, step: dict[str, Any]) -> None:
        """A trace event of a custom orchestrator: a span event with its text as content. It is
        the orchestrator's own log (it may quote a prompt or what a tool returned), not what the
        user is shown, so it is not judged as the agent's answer; the answer streamed back is."""
        event = step.get("event")
        self._text_event(semconv.EVENT_BEDROCK_CUSTOM_ORCHESTRATION, step,
                         event.get("text") if isinstance(event, dict) else None)

    def _step(self, phase: str, step: dict[str, Any]) -> None:
        model_input = step.get("modelInvocationInput")
        if isinstance(model_input, dict):
            self._model_input(phase, model_input)
        model_output = step.get("modelInvocationOutput")
        if isinstance(model_output, dict):
            self._model_output(phase, model_output)
        rationale = step.get("rationale")
        if isinstance(rationale, dict):
            self._rationale(rationale)
        invocation = step.get("invocationInput")
        if isinstance(invocation, dict):
            self._invocation(invocation)
        observation = step.get("observation")
        if isinstance(observation, dict):
            self._observation(observation)

    def _open(self, kind: str, trace_id: Any, op: Operation) -> None:
        key = (kind, str(trace_id))
        previous = self.steps.pop(key, None)
        if previous is not None:
            previous.end()
        if len(self.steps) >= MAX_OPEN_STEPS:
            oldest = next(iter(self.steps))
            self.steps.pop(oldest).end()
        self.steps[key] = op

    def _model_input(self, phase: str, item: dict[str, Any]) -> None:
        config = item.get("inferenceConfiguration")
        config = config if isinstance(config, dict) else {}
        params = {"temperature": config.get("temperature"),
                  "max_tokens": config.get("maximumLength"), "top_p": config.get("topP")}
        attrs: dict[str, Any] = {semconv.AG_BEDROCK_STEP: phase}
        if item.get("traceId"):
            attrs[semconv.AG_BEDROCK_TRACE_ID] = str(item["traceId"])
        model = item.get("foundationModel")
        op = self.guard.start_chat(
            provider=semconv.PROVIDER_AWS_BEDROCK, model=str(model) if model else None,
            messages=_prompt_messages(item.get("text")),
            parameters={k: v for k, v in params.items() if v is not None}, attributes=attrs)
        self._open("model", item.get("traceId"), op)

    def _model_output(self, phase: str, item: dict[str, Any]) -> None:
        op = self.steps.pop(("model", str(item.get("traceId"))), None)
        if op is None:
            return
        reply = _model_reply(item)
        if phase == _ORCHESTRATION:
            _thinking_apart(reply)
        span = op.span
        parsed = item.get("parsedResponse")
        if isinstance(parsed, dict):
            self._parsed_response(span, parsed)
        if reply.response_id:
            span.set_attribute(semconv.GEN_AI_RESPONSE_ID, str(reply.response_id))
        if reply.cache_read_tokens is not None:
            span.set_attribute(semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
                               reply.cache_read_tokens)
        if reply.cache_write_tokens is not None:
            span.set_attribute(semconv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
                               reply.cache_write_tokens)
        op.end_chat(reply.output, response_model=reply.response_model,
                    input_tokens=reply.total_input_tokens(), output_tokens=reply.output_tokens,
                    finish_reasons=reply.finish_reasons)
        self._note_judged(reply.output)

    def _note_judged(self, output: list[dict[str, Any]]) -> None:
        for message in output:
            content = message.get("content")
            if not isinstance(content, str) or not content.strip():
                continue
            if self.judged_size + len(content) > MAX_JUDGED_TEXT:
                # Past the bound only the fact is kept: the final response is judged again.
                self.judged.append("")
                continue
            self.judged.append(" ".join(content.split()))
            self.judged_size += len(content)

    def _parsed_response(self, span: Any, parsed: dict[str, Any]) -> None:
        """What the agent read from a pre-processing answer (whether the input is valid, and the
        model's rationale) or a post-processing one (the text for the user)."""
        if isinstance(parsed.get("isValid"), bool):
            span.set_attribute(semconv.AG_BEDROCK_INPUT_VALID, parsed["isValid"])
        text = parsed.get("rationale") if "rationale" in parsed else parsed.get("text")
        captured = self._captured(text)
        if captured is not None:
            span.set_attribute(semconv.AG_BEDROCK_PARSED_RESPONSE, captured)

    def _invocation(self, item: dict[str, Any]) -> None:
        trace_id = item.get("traceId")
        action = item.get("actionGroupInvocationInput")
        if isinstance(action, dict):
            if action.get("executionType") == "RETURN_CONTROL":
                return  # judged when the returnControl event hands it to the application
            name, arguments, group = _action(action)
            attrs = {semconv.AG_BEDROCK_EXECUTION: str(action.get("executionType") or "LAMBDA")}
            if group:
                attrs[semconv.AG_BEDROCK_ACTION_GROUP] = group
            # A block raises ToolCallBlocked out of the caller's iteration.
            op = self.guard.start_tool(name, call_id=str(trace_id) if trace_id else None,
                                       arguments=arguments, attributes=attrs)
            self._open("tool", trace_id, op)
            return
        lookup = item.get("knowledgeBaseLookupInput")
        if isinstance(lookup, dict):
            kb = str(lookup.get("knowledgeBaseId") or "knowledge_base")
            op = self.guard.start_retrieval(kb, query=str(lookup.get("text") or ""), attributes={
                semconv.GEN_AI_DATA_SOURCE_ID: kb, semconv.AWS_BEDROCK_KNOWLEDGE_BASE_ID: kb})
            self._open("kb", trace_id, op)

    def _observation(self, item: dict[str, Any]) -> None:
        trace_id = str(item.get("traceId"))
        output = item.get("actionGroupInvocationOutput")
        if isinstance(output, dict):
            op = self.steps.pop(("tool", trace_id), None)
            if op is not None:
                verdict = op.end_tool(output.get("text"))
                if verdict.blocked:
                    finding = verdict.blocking_finding()
                    if finding is not None:
                        raise ToolCallBlocked(finding)
            return
        lookup = item.get("knowledgeBaseLookupOutput")
        if isinstance(lookup, dict):
            op = self.steps.pop(("kb", trace_id), None)
            if op is not None:
                op.end_retrieval(_documents(lookup.get("retrievedReferences")))
            return
        final = item.get("finalResponse")
        if isinstance(final, dict):
            self._text_event(semconv.EVENT_BEDROCK_FINAL_RESPONSE, item, final.get("text"))
            self._final_response(final.get("text"))
            return
        reprompt = item.get("repromptResponse")
        if isinstance(reprompt, dict):
            source = reprompt.get("source")
            self._text_event(semconv.EVENT_BEDROCK_REPROMPT, item, reprompt.get("text"),
                             {semconv.AG_BEDROCK_REPROMPT_SOURCE: str(source)} if source else None)
            # The agent asks the user again: its answer for this turn, judged as the final
            # response is.
            self._final_response(reprompt.get("text"))

    def _return_control(self, event: dict[str, Any]) -> None:
        invocation_id = str(event.get("invocationId") or "")
        started: list[tuple[str, Operation]] = []
        try:
            for entry in event.get("invocationInputs") or []:
                if not isinstance(entry, dict):
                    continue
                item = entry.get("functionInvocationInput") or entry.get("apiInvocationInput")
                if not isinstance(item, dict):
                    continue
                name, arguments, group = _action(item)
                attrs = {semconv.AG_BEDROCK_EXECUTION: "RETURN_CONTROL"}
                if group:
                    attrs[semconv.AG_BEDROCK_ACTION_GROUP] = group
                op = self.guard.start_tool(name, call_id=invocation_id or None,
                                           arguments=arguments, attributes=attrs)
                started.append((name, op))
        except ToolCallBlocked:
            # The application will not get this event, so none of its calls will run.
            for _, op in started:
                op.abandon()
            raise
        if started:
            pending_return_control.add(invocation_id, started)

    # -- end -------------------------------------------------------------------------------
    def _close_steps(self) -> None:
        steps, self.steps = self.steps, {}
        for op in steps.values():
            op.end()

    def _record_answer(self) -> None:
        """Record the answer the caller read, and judge it as model output unless an answer
        judged before (a model's in the trace, the final response) carried it: without a trace
        (no ``enableTrace``, the default) it is all there is of the models' output, and a
        harmless earlier answer in a trace is no judgement of it. It is found, not withheld
        (the caller has read it)."""
        if not self.answer:
            return
        answer = "".join(self.answer)
        _capture_answer(self.op, answer)
        self._judge_unless_carried(answer)

    def _final_response(self, text: Any) -> None:
        """The answer the trace says the agent returns (``finalResponse``, or the
        ``repromptResponse`` that asks the user again): judged as model output on the agent
        span, before it streams back, unless a model's judged answer carried it already. A
        pre-processing verdict or an earlier step's answer is no judgement of it, nor is a final
        answer the model gave only as reasoning or a tool call's input."""
        if isinstance(text, str):
            self._judge_unless_carried(text[:MAX_TEXT])

    def _judge_unless_carried(self, answer: str) -> None:
        """Judge ``answer`` (the agent's) as model output on the agent span, unless an answer
        judged before carried it (runs of whitespace read as one space); then note it judged."""
        flat = " ".join(answer.split())
        if not flat or any(flat in judged for judged in self.judged):
            return
        if self.guard.has_stages and not self.op.ended:
            question = self.call.params.get("inputText")
            _judge_answer(self.op, None, question if isinstance(question, str) and question
                          else None, answer, "bedrock agent answer")
        self._note_judged([{"content": answer}])

    def complete(self) -> None:
        self._close_steps()
        self._record_answer()
        self.op.end()

    def failed(self, exc: BaseException) -> None:
        self._close_steps()
        # The part of the answer the caller received before the stream broke.
        self._record_answer()
        if isinstance(getattr(exc, "response", None), dict):
            self.op.span.set_attribute(semconv.RPC_RESPONSE_STATUS_CODE, error_code(exc))
        self.op.fail(exc)

    def abandoned(self) -> None:
        self._close_steps()
        self._record_answer()
        self.op.abandon()


def _return_results(guard: Guard, params: dict[str, Any]) -> None:
    """Judge the results an application sends back for ``RETURN_CONTROL`` calls, and end them."""
    state = params.get("sessionState")
    if not isinstance(state, dict):
        return
    results = state.get("returnControlInvocationResults")
    invocation_id = state.get("invocationId")
    if not isinstance(results, list) or not invocation_id:
        return
    calls = pending_return_control.take(str(invocation_id))
    if not calls:
        return
    by_name: dict[str, Any] = {}
    for result in results:
        if isinstance(result, dict):
            name, body = _result_text(result)
            by_name.setdefault(name, body)
    blocked = None
    for name, op in calls:
        if name not in by_name:
            op.abandon()
            continue
        verdict = op.end_tool(by_name[name])
        if verdict.blocked and blocked is None:
            blocked = verdict.blocking_finding()
    if blocked is not None:
        raise ToolCallBlocked(blocked)


class InvokeAgent(Handler):
    """``InvokeAgent``: an agent span, child spans from the trace, RETURN_CONTROL tool calls."""

    def start(self, guard: Guard, call: CallInfo) -> _AgentState:
        params = call.params
        _return_results(guard, params)
        agent_id = str(params.get("agentId") or "agent")
        attrs = call.rpc_attributes()
        attrs[semconv.GEN_AI_AGENT_ID] = agent_id
        attrs[semconv.GEN_AI_PROVIDER_NAME] = semconv.PROVIDER_AWS_BEDROCK
        if params.get("agentAliasId"):
            attrs[semconv.AG_BEDROCK_AGENT_ALIAS_ID] = str(params["agentAliasId"])
        text = params.get("inputText")
        session = params.get("sessionId")
        op = guard.start_agent(agent_id, conversation_id=str(session) if session else None,
                               turn_text=text if isinstance(text, str) and text else None,
                               attributes=attrs, kind=SpanKind.CLIENT)
        return _AgentState(guard, op, call)

    def done(self, state: _AgentState, result: Any, asynchronous: bool) -> None:
        record_response(state.op.span, result)
        _follow(result, "completion", _AgentFollower(state), asynchronous)


def _follow(result: Any, key: str, follower: StreamFollower, asynchronous: bool) -> None:
    """Hand the caller the response's event stream (``result[key]``) through a proxy that
    shows every event to ``follower``; without a stream, the operation is complete."""
    stream = result.get(key) if isinstance(result, dict) else None
    if stream is None:
        follower.on_complete()
        return
    result[key] = (TracedAioEventStream if asynchronous else TracedEventStream)(stream, follower)


# -- Retrieve / RetrieveAndGenerate ----------------------------------------------------------------

class _RetrievalState:
    __slots__ = ("model", "op", "query")

    def __init__(self, op: Operation, query: str = "", model: str | None = None) -> None:
        self.op = op
        self.query = query
        self.model = model


def _kb_attributes(call: CallInfo, kb: str | None) -> dict[str, Any]:
    attrs = call.rpc_attributes()
    if kb:
        attrs[semconv.GEN_AI_DATA_SOURCE_ID] = kb
        attrs[semconv.AWS_BEDROCK_KNOWLEDGE_BASE_ID] = kb
    return attrs


class Retrieve(Handler):
    """``Retrieve``: the query and the passages a knowledge base returned."""

    def start(self, guard: Guard, call: CallInfo) -> _RetrievalState:
        params = call.params
        kb = str(params.get("knowledgeBaseId") or "knowledge_base")
        query = params.get("retrievalQuery")
        text = query.get("text") if isinstance(query, dict) else None
        return _RetrievalState(guard.start_retrieval(kb, query=str(text or ""),
                                                     attributes=_kb_attributes(call, kb),
                                                     kind=SpanKind.CLIENT))

    def done(self, state: _RetrievalState, result: Any, asynchronous: bool) -> None:
        record_response(state.op.span, result)
        results = result.get("retrievalResults") if isinstance(result, dict) else None
        state.op.end_retrieval(_documents(results))


def _cited(citation: Any, docs: list[dict[str, Any]]) -> None:
    """Add the passages one citation names (the current shape, or the older nested one)."""
    if not isinstance(citation, dict):
        return
    references = citation.get("retrievedReferences")
    nested = citation.get("citation")
    if references is None and isinstance(nested, dict):
        references = nested.get("retrievedReferences")
    if len(docs) < MAX_DOCUMENTS:
        docs.extend(_documents(references)[:MAX_DOCUMENTS - len(docs)])


def _judge(op: Operation, event: Any, where: str) -> None:
    """Judge an event of a span that stays open; findings land on that span."""
    try:
        op.guard.emit_event(event, op.span)
    except Exception as exc:
        internal_error(where, exc)


def _capture_answer(op: Operation, text: str) -> None:
    """An answer as the span's ``gen_ai.output.messages`` (per ``capture_content``)."""
    guard = op.guard
    if guard.capture.enabled:
        captured = guard.content(output_messages([{"role": "assistant", "content": text}]))
        if captured is not None:
            op.span.set_attribute(semconv.GEN_AI_OUTPUT_MESSAGES, captured)


def _record_answer(state: _RetrievalState, answer: str) -> None:
    """Record the generated answer and judge it as model output (exfiltration links, hidden
    text, instructions): the model wrote it after reading the retrieved passages."""
    op = state.op
    guard = op.guard
    if op.ended:
        return
    try:
        _capture_answer(op, answer)
    except Exception as exc:
        internal_error("bedrock answer capture", exc)
    if guard.has_stages:
        _judge_answer(op, state.model, state.query, answer, "bedrock answer")


def _judge_answer(op: Operation, model: str | None, question: str | None, answer: str,
                  where: str) -> None:
    """Judge ``answer`` as a model's output to ``question`` (a ``ModelCall`` response), with its
    findings on ``op``'s span, which stays open."""
    _judge(op, trusted(ModelCall, {
        "context": op.event_context(), "timestamp": time.time(), "kind": "model_call",
        "provider": semconv.PROVIDER_AWS_BEDROCK, "model": model,
        "messages": [Message(role="user", content=question)] if question is not None else [],
        "output": [Message(role="assistant", content=answer)], "parameters": {},
        "input_tokens": None, "output_tokens": None, "finish_reasons": [],
        "phase": "response"}), where)


def _start_generation(guard: Guard, call: CallInfo) -> _RetrievalState:
    params = call.params
    config = params.get("retrieveAndGenerateConfiguration")
    config = config if isinstance(config, dict) else {}
    kb_config = config.get("knowledgeBaseConfiguration")
    if not isinstance(kb_config, dict):
        kb_config = config.get("externalSourcesConfiguration")
    kb_config = kb_config if isinstance(kb_config, dict) else {}
    kb = kb_config.get("knowledgeBaseId")
    attrs = _kb_attributes(call, str(kb) if kb else None)
    model = kb_config.get("modelArn")
    if model:
        attrs[semconv.GEN_AI_REQUEST_MODEL] = str(model)
    query = params.get("input")
    text = str((query.get("text") if isinstance(query, dict) else None) or "")
    name = str(kb) if kb else str(config.get("type") or "retrieve_and_generate").lower()
    return _RetrievalState(guard.start_retrieval(name, query=text, attributes=attrs,
                                                 kind=SpanKind.CLIENT),
                           text, str(model) if model else None)


class RetrieveAndGenerate(Handler):
    """``RetrieveAndGenerate``: the passages its citations name, and the generated answer."""

    def start(self, guard: Guard, call: CallInfo) -> _RetrievalState:
        return _start_generation(guard, call)

    def done(self, state: _RetrievalState, result: Any, asynchronous: bool) -> None:
        op = state.op
        record_response(op.span, result)
        docs: list[dict[str, Any]] = []
        if isinstance(result, dict):
            for citation in _list(result.get("citations")):
                _cited(citation, docs)
            out = result.get("output")
            output = out.get("text") if isinstance(out, dict) else None
            if output is not None:
                _record_answer(state, str(output)[:MAX_TEXT])
        op.end_retrieval(docs)


class _GenerationFollower(StreamFollower):
    """Follows a ``RetrieveAndGenerateStream``: answer pieces, citations, guardrail actions."""

    __slots__ = ("answer", "answer_size", "docs", "state")

    def __init__(self, state: _RetrievalState) -> None:
        super().__init__()
        self.state = state
        self.answer: list[str] = []
        self.answer_size = 0
        self.docs: list[dict[str, Any]] = []

    def observe(self, event: Any) -> None:
        if not isinstance(event, dict):
            return
        output = event.get("output")
        if isinstance(output, dict) and isinstance(output.get("text"), str):
            if self.answer_size < MAX_TEXT:
                text = output["text"][:MAX_TEXT - self.answer_size]
                self.answer.append(text)
                self.answer_size += len(text)
            return
        if isinstance(event.get("citation"), dict):
            _cited(event["citation"], self.docs)
            return
        guardrail = event.get("guardrail")
        if isinstance(guardrail, dict):
            self.state.op.span.add_event(semconv.EVENT_BEDROCK_GUARDRAIL, {
                semconv.AG_BEDROCK_GUARDRAIL_ACTION: str(guardrail.get("action", ""))})

    def _partial(self) -> None:
        """What the caller read before the stream ended early is recorded and judged like a
        whole answer."""
        op = self.state.op
        op.span.set_attribute(semconv.AG_RETRIEVAL_DOCUMENT_COUNT, len(self.docs))
        if self.docs and op.guard.has_stages:
            _judge(op, trusted(Retrieval, {
                "context": op.event_context(), "timestamp": time.time(), "kind": "retrieval",
                "retriever": op.name, "query": self.state.query,
                "documents": [Document.model_validate(doc) for doc in self.docs],
                "phase": "response"}), "bedrock passages")
        if self.answer:
            _record_answer(self.state, "".join(self.answer))

    def complete(self) -> None:
        if self.answer:
            _record_answer(self.state, "".join(self.answer))
        self.state.op.end_retrieval(self.docs)

    def failed(self, exc: BaseException) -> None:
        op = self.state.op
        self._partial()
        if isinstance(getattr(exc, "response", None), dict):
            op.span.set_attribute(semconv.RPC_RESPONSE_STATUS_CODE, error_code(exc))
        op.fail(exc)

    def abandoned(self) -> None:
        op = self.state.op
        self._partial()
        op.abandon()


class RetrieveAndGenerateStream(Handler):
    """``RetrieveAndGenerateStream``: the same span as ``RetrieveAndGenerate``, read from the
    stream as the caller reads it."""

    def start(self, guard: Guard, call: CallInfo) -> _RetrievalState:
        return _start_generation(guard, call)

    def done(self, state: _RetrievalState, result: Any, asynchronous: bool) -> None:
        record_response(state.op.span, result)
        _follow(result, "stream", _GenerationFollower(state), asynchronous)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


HANDLERS: dict[str, Handler] = {
    "InvokeAgent": InvokeAgent(),
    "Retrieve": Retrieve(),
    "RetrieveAndGenerate": RetrieveAndGenerate(),
    "RetrieveAndGenerateStream": RetrieveAndGenerateStream(),
}
