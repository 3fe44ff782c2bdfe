"""Learning a profile from exported traces: OTLP/JSON files as the OpenTelemetry Collector's file
exporter writes them (one ``{"resourceSpans": [...]}`` document per line, or one document).

Spans made by agentguard, by OpenInference (``openinference.span.kind``, ``tool.name``,
``input.value``, ``output.value``, ``llm.*``) and by OpenLLMetry (``traceloop.span.kind``,
``traceloop.entity.name``, ``traceloop.entity.input/output``, ``gen_ai.*``) become the same events
a live agent produces, so a team that already traces its agents gets a baseline on day one. Each
trace is one turn; events inside a tool span are attributed to that tool. Tool calls agentguard
blocked, spans with high-severity findings, and calls of tools the agent does not have
(``agentguard.tool.unknown``) are not learned.
"""

from __future__ import annotations

import ast
import base64
import binascii
import gzip
import json
import os
import re
import shlex
import zlib
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, cast

from agentguard import semconv
from agentguard.baseline._learn import Learner
from agentguard.events import (
    CloudCall,
    DnsLookup,
    Document,
    EventContext,
    FileOpen,
    Message,
    ModelCall,
    ModelLoad,
    ModuleLoad,
    NetConnect,
    ProcessExec,
    Retrieval,
    ToolCall,
    Turn,
)
from agentguard.semconv import int_value

__all__ = ["OtlpStats", "learn_otlp_files", "peek_service", "read_spans", "span_events"]

# Attribute names of the conventions read here (agentguard's own come from semconv).
OI_SPAN_KIND = "openinference.span.kind"
OI_TOOL_NAME = "tool.name"
OI_INPUT = "input.value"
OI_OUTPUT = "output.value"
OI_SESSION = "session.id"
OI_MODEL = "llm.model_name"
OI_PROVIDER = "llm.provider"
OI_SYSTEM = "llm.system"
OI_OUTPUT_MESSAGES = "llm.output_messages."
OI_COMPLETION_TOKENS = "llm.token_count.completion"
OI_DOCUMENTS = "retrieval.documents."
TL_SPAN_KIND = "traceloop.span.kind"
TL_ENTITY_NAME = "traceloop.entity.name"
TL_ENTITY_INPUT = "traceloop.entity.input"
TL_ENTITY_OUTPUT = "traceloop.entity.output"
TL_THREAD = "traceloop.association.properties.thread_id"
GEN_AI_SYSTEM = "gen_ai.system"
GEN_AI_COMPLETION = "gen_ai.completion."
GEN_AI_USAGE_COMPLETION_TOKENS = "gen_ai.usage.completion_tokens"
LLM_USAGE_COMPLETION_TOKENS = "llm.usage.completion_tokens"
SERVICE_NAME = "service.name"

# Cloud resource attributes → the resource kind agentguard's CloudCall uses.
_RESOURCE_ATTRIBUTES = {
    semconv.AWS_S3_BUCKET: "bucket", semconv.AWS_S3_KEY: "key",
    semconv.AWS_S3_COPY_SOURCE: "copy_source", semconv.AWS_DYNAMODB_TABLE_NAMES: "tables",
    semconv.AWS_SQS_QUEUE_URL: "queue", semconv.AWS_SNS_TOPIC_ARN: "topic",
    semconv.FAAS_INVOKED_NAME: "function", semconv.AWS_KINESIS_STREAM_NAME: "stream",
    semconv.AWS_STEP_FUNCTIONS_STATE_MACHINE_ARN: "state_machine",
    semconv.AWS_SECRETSMANAGER_SECRET_ARN: "secret", semconv.AWS_LOG_GROUP_NAMES: "log_group",
}
_KIND_NAMES = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer",
               5: "consumer"}
# Text captured by agentguard past its size cap ends like this; N is the full size.
_TRUNCATED = re.compile(r"\.\.\.\[truncated(?:, (more than )?(\d{1,15}) chars)?\]\Z")
_MAX_TEXT = 4 << 20
_MAX_LITERAL = 64 * 1024
# Traces held open while their spans arrive, and spans kept per trace.
_MAX_OPEN_TRACES = 2000
_MAX_SPANS_PER_TRACE = 20_000
_MAX_DOCUMENT = 256 << 20
_HEX = re.compile(r"\A[0-9a-fA-F]+\Z")
# What reading a malformed file raises: a document nested too deep for the parser, a compressed
# file cut short or corrupt (gzip.BadGzipFile is an OSError, zlib.error is not).
_UNREADABLE = (RecursionError, EOFError, zlib.error, OSError)
_DIGEST = re.compile(r"\Asha256:[0-9a-f]{64}\Z")


@dataclass(slots=True)
class SpanRecord:
    """One span read from an OTLP/JSON file."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    start: float
    end: float
    attributes: dict[str, Any]
    events: list[tuple[str, float, dict[str, Any]]]
    status: str
    status_message: str
    service: str | None
    scope: str | None


@dataclass
class OtlpStats:
    """What reading the files found."""

    files: int = 0
    documents: int = 0
    spans: int = 0
    traces: int = 0
    events: int = 0
    learned: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    services: dict[str, int] = field(default_factory=dict)
    conventions: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count


# -- reading -----------------------------------------------------------------------------------

def _open(path: str) -> IO[bytes]:
    if path.endswith(".gz"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    return open(path, "rb")


def _parse(data: bytes) -> Any:
    """JSON text as Python values; :class:`ValueError` for anything else, too deep included."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _not_otlp(document: Any) -> str | None:
    """Why a parsed document is not an OTLP/JSON trace export, if it is not one.

    A document without ``resourceSpans`` is an empty export (protobuf's JSON mapping leaves out
    empty lists), not an error.
    """
    if not isinstance(document, dict):
        return f"a JSON {_json_type(document)}, not an object"
    spans = document.get("resourceSpans")
    if spans is not None and not isinstance(spans, list):
        return f"resourceSpans is a JSON {_json_type(spans)}, not an array"
    return None


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string" if isinstance(value, str) else "null"


def _documents(path: str, stats: OtlpStats, advance: Callable[[int], None]
               ) -> Iterator[dict[str, Any]]:
    """The OTLP documents of a file: one per line, or the whole file as one document.

    Raises what reading the file raises (``OSError``, and ``EOFError`` or ``zlib.error`` for a
    compressed file cut short or corrupt); a part that is not OTLP/JSON is reported in ``stats``,
    and so is a line or document larger than ``_MAX_DOCUMENT`` (read through, never held).
    """
    with _open(path) as handle:
        first = _line(handle, advance)
        try:
            document = _parse(first) if first is not None and first.strip() else None
        except ValueError:
            document = None
        if first is not None and first.strip() and document is None:
            # Not JSON lines: a single (pretty-printed) document.
            rest = handle.read(_MAX_DOCUMENT + 1 - len(first))
            advance(len(rest))
            if len(first) + len(rest) > _MAX_DOCUMENT:
                stats.errors.append(f"{path}: not read: a document larger than "
                                    f"{_size(_MAX_DOCUMENT)}")
                return
            try:
                whole = _parse(first + rest)
            except ValueError as exc:
                stats.errors.append(f"{path}: not OTLP/JSON ({exc})")
                return
            problem = _not_otlp(whole)
            if problem is not None:
                stats.errors.append(f"{path}: not OTLP/JSON ({problem})")
                return
            yield whole
            return
        number, line = 0, first
        while True:
            number += 1
            if line is None:
                stats.errors.append(f"{path}:{number}: not read: a line longer than "
                                    f"{_size(_MAX_DOCUMENT)}")
            elif not line:
                return  # the end of the file
            elif line.strip():
                try:  # the first line was parsed above
                    parsed: Any = document if number == 1 else _parse(line)
                except ValueError as exc:
                    stats.errors.append(f"{path}:{number}: not JSON ({exc})")
                else:
                    problem = _not_otlp(parsed)
                    if problem is not None:
                        stats.errors.append(f"{path}:{number}: not OTLP/JSON ({problem})")
                    else:
                        yield parsed
            line = _line(handle, advance)


def _size(count: int) -> str:
    return f"{count >> 20} MiB" if count >= 1 << 20 and not count % (1 << 20) else f"{count} bytes"


def _line(handle: IO[bytes], advance: Callable[[int], None]) -> bytes | None:
    """The next line (``b""`` at the end of the file), or ``None`` for one longer than
    ``_MAX_DOCUMENT``, which is read through in bounded pieces and dropped."""
    line = handle.readline(_MAX_DOCUMENT + 1)
    advance(len(line))
    if len(line) <= _MAX_DOCUMENT or line.endswith(b"\n"):
        return line
    while True:
        piece = handle.readline(1 << 20)
        advance(len(piece))
        if not piece or piece.endswith(b"\n"):
            return None


def _unreadable(path: str, exc: BaseException) -> str:
    """The error line for a file whose reading raised ``exc`` (one of ``_UNREADABLE``)."""
    if isinstance(exc, RecursionError):
        return f"{path}: not OTLP/JSON (nested too deeply)"
    if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile):
        return f"{path}: cannot read ({exc.strerror or exc})"
    return f"{path}: not OTLP/JSON (compressed data cut short or corrupt: {exc})"


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _id(value: Any) -> str | None:
    """A trace or span id as hex (OTLP/JSON writes hex; protobuf's JSON mapping writes base64)."""
    if not isinstance(value, str) or not value:
        return None
    if len(value) in (16, 32) and _HEX.match(value):
        return value.lower()
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        return value


def _any(value: Any) -> Any:
    """An OTLP ``AnyValue`` as a Python value."""
    if not isinstance(value, dict):
        return None
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        try:
            return int(value["intValue"])
        except (TypeError, ValueError):
            return None
    if "doubleValue" in value:
        try:
            return float(value["doubleValue"])
        except (TypeError, ValueError):
            return None
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        items = _list(_dict(value["arrayValue"]).get("values"))
        return [_any(item) for item in items[:1024]]
    if "kvlistValue" in value:
        return _attributes(_dict(value["kvlistValue"]).get("values"))
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def _attributes(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(items, list):
        for item in items[:4096]:
            if isinstance(item, dict) and isinstance(item.get("key"), str):
                out[item["key"]] = _any(item.get("value"))
    return out


def _seconds(value: Any) -> float:
    """A ``*UnixNano`` time in seconds; 0 for anything that is not a fixed64 count of nanoseconds."""
    try:
        nanos = int(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return nanos / 1e9 if 0 <= nanos < 1 << 64 else 0.0


def _kind(value: Any) -> str:
    if isinstance(value, int):
        return _KIND_NAMES.get(value, "unspecified")
    if isinstance(value, str):
        return value.removeprefix("SPAN_KIND_").lower()
    return "unspecified"


def read_spans(documents: Iterable[dict[str, Any]], stats: OtlpStats
               ) -> Generator[SpanRecord, None, None]:
    """The spans of OTLP documents, with their resource's service name."""
    for document in documents:
        stats.documents += 1
        for resource_spans in _list(document.get("resourceSpans")):
            if not isinstance(resource_spans, dict):
                stats.skip("malformed_resource_spans")
                continue
            resource = _attributes(_dict(resource_spans.get("resource")).get("attributes"))
            service = resource.get(SERVICE_NAME)
            for scope_spans in _list(resource_spans.get("scopeSpans")):
                if not isinstance(scope_spans, dict):
                    stats.skip("malformed_scope_spans")
                    continue
                scope = _dict(scope_spans.get("scope")).get("name")
                for raw in _list(scope_spans.get("spans")):
                    span = _span(raw, service if isinstance(service, str) else None,
                                 scope if isinstance(scope, str) else None)
                    if span is None:
                        stats.skip("malformed_span")
                        continue
                    stats.spans += 1
                    yield span


def _span(raw: Any, service: str | None, scope: str | None) -> SpanRecord | None:
    if not isinstance(raw, dict):
        return None
    trace_id = _id(raw.get("traceId"))
    span_id = _id(raw.get("spanId"))
    if trace_id is None or span_id is None:
        return None
    events = []
    for event in _list(raw.get("events")):
        if isinstance(event, dict) and isinstance(event.get("name"), str):
            events.append((event["name"], _seconds(event.get("timeUnixNano")),
                           _attributes(event.get("attributes"))))
    status = raw.get("status") or {}
    code = status.get("code") if isinstance(status, dict) else None
    status_name = {0: "unset", 1: "ok", 2: "error"}.get(code, "") if isinstance(code, int) else \
        str(code or "unset").removeprefix("STATUS_CODE_").lower()
    return SpanRecord(
        trace_id=trace_id, span_id=span_id, parent_id=_id(raw.get("parentSpanId")),
        name=str(raw.get("name") or ""), kind=_kind(raw.get("kind")),
        start=_seconds(raw.get("startTimeUnixNano")), end=_seconds(raw.get("endTimeUnixNano")),
        attributes=_attributes(raw.get("attributes")), events=events, status=status_name,
        status_message=str(status.get("message") or "") if isinstance(status, dict) else "",
        service=service, scope=scope,
    )


# -- values ------------------------------------------------------------------------------------

def _json(text: Any) -> Any:
    if not isinstance(text, str) or len(text) > _MAX_TEXT:
        return None
    stripped = text.strip()
    if not stripped or stripped[0] not in "[{\"":
        return None
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError):
        return None


def _literal(text: str) -> Any:
    """A Python literal (OpenLLMetry writes tool input as ``str(dict)``), safely and bounded."""
    if len(text) > _MAX_LITERAL:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return None


class _Text(str):
    """Captured text that was cut: ``full_size`` is how long it was."""

    full_size: int | None = None


def _captured(value: Any) -> Any:
    """A captured attribute value: a truncated one keeps its full size (for result sizes)."""
    if not isinstance(value, str):
        return value
    match = _TRUNCATED.search(value)
    if match is None:
        return value
    text = _Text(value[:match.start()])
    text.full_size = int(match.group(2)) if match.group(2) and not match.group(1) else None
    return text


def _message_content(value: Any) -> Any:
    """The content of a serialised LangChain message (``ToolMessage`` and friends)."""
    if isinstance(value, dict):
        if value.get("lc") == 1 and isinstance(value.get("kwargs"), dict):
            return value["kwargs"].get("content", value)
        data = value.get("data")
        if value.get("type") in ("tool", "ai", "human", "system") and isinstance(data, dict):
            return data.get("content", value)
        if value.get("type") == "tool" and "content" in value:
            return value["content"]
    return value


def _hashed(value: Any) -> bool:
    """Whether captured content is only a digest (capture mode ``hash``)."""
    return isinstance(value, str) and _DIGEST.match(value) is not None


def _arguments(value: Any) -> Any:
    if _hashed(value):
        return None
    parsed = _json(value)
    if isinstance(parsed, dict):
        return parsed
    return value if isinstance(value, str) else None


def _tool_result(value: Any) -> Any:
    """A tool result as the model saw it (the content of a serialised tool message)."""
    if isinstance(value, _Text):
        return value
    if _hashed(value):
        return None
    parsed = _json(value)
    if isinstance(parsed, dict):
        content = _message_content(parsed)
        if content is not parsed:
            return content
    return value


def _messages(value: Any) -> list[Message]:
    """Output messages from ``gen_ai.output.messages`` (agentguard's shape or the GenAI
    conventions' ``parts``)."""
    parsed = _json(value) if isinstance(value, str) else value
    if not isinstance(parsed, list):
        return []
    out: list[Message] = []
    for item in parsed[:16]:
        if not isinstance(item, dict):
            continue
        role = str(item.get("role") or "assistant")
        content = item.get("content")
        listed = item.get("tool_calls")
        calls: list[Any] = list(listed) if isinstance(listed, list) else []
        text = content if isinstance(content, str) else ""
        for part in item.get("parts") or []:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text" and isinstance(part.get("content"), str):
                text += part["content"]
            elif part.get("type") == "tool_call":
                calls.append({"name": part.get("name"), "args": part.get("arguments")})
        out.append(Message(role=role, content=text, tool_calls=[c for c in calls
                                                                  if isinstance(c, dict)]))
    return out


def _indexed(attributes: dict[str, Any], prefix: str) -> dict[int, dict[str, Any]]:
    """Flattened list attributes (``prefix.0.message.content``) grouped by index."""
    groups: dict[int, dict[str, Any]] = {}
    for key, value in attributes.items():
        if not key.startswith(prefix):
            continue
        index, _, rest = key[len(prefix):].partition(".")
        if index.isascii() and index.isdigit() and int(index) < 256:
            groups.setdefault(int(index), {})[rest] = value
    return groups


def _oi_messages(attributes: dict[str, Any]) -> list[Message]:
    out = []
    for _, fields in sorted(_indexed(attributes, OI_OUTPUT_MESSAGES).items()):
        calls = [{"name": f.get("tool_call.function.name"),
                  "args": f.get("tool_call.function.arguments")}
                 for _, f in sorted(_indexed(fields, "message.tool_calls.").items())]
        out.append(Message(role=str(fields.get("message.role") or "assistant"),
                           content=str(fields.get("message.content") or ""), tool_calls=calls))
    return out


def _completion_messages(attributes: dict[str, Any]) -> list[Message]:
    out = []
    for _, fields in sorted(_indexed(attributes, GEN_AI_COMPLETION).items()):
        out.append(Message(role=str(fields.get("role") or "assistant"),
                           content=str(fields.get("content") or "")))
    return out




# -- spans to events ---------------------------------------------------------------------------

class _Trace:
    __slots__ = ("spans",)

    def __init__(self) -> None:
        self.spans: dict[str, SpanRecord] = {}


def _convention(span: SpanRecord) -> str:
    attrs = span.attributes
    if TL_SPAN_KIND in attrs:
        return "openllmetry"
    if OI_SPAN_KIND in attrs:
        return "openinference"
    if span.scope == "agentguard" or any(k.startswith("agentguard.") for k in attrs):
        return "agentguard"
    if semconv.GEN_AI_OPERATION_NAME in attrs or GEN_AI_SYSTEM in attrs:
        return "genai"
    if attrs.get(semconv.RPC_SYSTEM) == semconv.RPC_SYSTEM_AWS:
        return "aws"
    return "other"


def _tool_name(span: SpanRecord, convention: str) -> str | None:
    """The tool a span executes, when it is a tool span."""
    attrs = span.attributes
    if convention == "openllmetry":
        if attrs.get(TL_SPAN_KIND) == "tool":
            return str(attrs.get(TL_ENTITY_NAME) or attrs.get(semconv.GEN_AI_TOOL_NAME) or span.name)
        return None
    if convention == "openinference":
        if str(attrs.get(OI_SPAN_KIND)).upper() == "TOOL":
            return str(attrs.get(OI_TOOL_NAME) or span.name)
        return None
    if attrs.get(semconv.GEN_AI_OPERATION_NAME) == semconv.OP_EXECUTE_TOOL:
        name = attrs.get(semconv.GEN_AI_TOOL_NAME)
        return str(name) if name else span.name.removeprefix(f"{semconv.OP_EXECUTE_TOOL} ")
    return None


# An agentguard flag as OTLP/JSON carries it (a boolean), or as a string from a re-export.
_TRUE = (True, "true")


def _suspicious(span: SpanRecord) -> bool:
    """Whether agentguard blocked this span's work or reported a high-severity finding on it."""
    if span.attributes.get(semconv.AG_DECISION) == "block":
        return True
    return any(name == semconv.EVENT_FINDING and
               attrs.get("agentguard.finding.severity") in ("high", "critical")
               for name, _, attrs in span.events)


def span_events(spans: list[SpanRecord], agent: str, stats: OtlpStats) -> list[Any]:
    """The events of one trace, in time order (each trace is one turn)."""
    by_id = {span.span_id: span for span in spans}
    conventions = {span.span_id: _convention(span) for span in spans}
    tools = {span.span_id: _tool_name(span, conventions[span.span_id]) for span in spans}
    trace_id = spans[0].trace_id
    conversation = None
    turn = None
    for span in spans:
        attrs = span.attributes
        conversation = conversation or attrs.get(semconv.GEN_AI_CONVERSATION_ID) or \
            attrs.get(OI_SESSION) or attrs.get(TL_THREAD)
        if turn is None:
            turn = int_value(attrs.get(semconv.AG_TURN_INDEX))
    # Each trace is its own turn; the conversation keeps traces of one session apart.
    conversation_id = f"{conversation}/{trace_id}" if conversation else trace_id
    turn_index = turn if turn is not None else 1

    def enclosing_tool(span: SpanRecord) -> tuple[str | None, str | None]:
        seen = 0
        current: SpanRecord | None = span
        while current is not None and seen < 256:
            name = tools.get(current.span_id)
            if name:
                call_id = current.attributes.get(semconv.GEN_AI_TOOL_CALL_ID)
                return name, str(call_id) if call_id else None
            current = by_id.get(current.parent_id) if current.parent_id else None
            seen += 1
        return None, None

    def context(span: SpanRecord, tool: str | None, call_id: str | None) -> EventContext:
        return EventContext(agent=agent, conversation_id=conversation_id, turn=turn_index,
                            trace_id=trace_id, span_id=span.span_id, tool=tool,
                            tool_call_id=call_id)

    events: list[tuple[float, int, Any]] = []
    order = 0

    def add(stamp: float, event: Any) -> None:
        nonlocal order
        order += 1
        events.append((stamp, order, event))

    roots = [s for s in spans if not s.parent_id or s.parent_id not in by_id]
    root = min(roots, key=lambda s: s.start) if roots else None
    if root is not None:
        text = root.attributes.get(semconv.AG_TURN_TEXT)
        add(root.start, Turn(context=context(root, None, None), timestamp=root.start,
                             text=str(text) if isinstance(text, str) else ""))
    for span in spans:
        convention = conventions[span.span_id]
        stats.conventions[convention] = stats.conventions.get(convention, 0) + 1
        if _suspicious(span):
            stats.skip("blocked_or_flagged")
            continue
        tool_name = tools[span.span_id]
        if tool_name is not None:
            if span.attributes.get(semconv.AG_TOOL_UNKNOWN) in _TRUE:
                # A call of a tool the framework does not have: nothing ran, no tool to learn.
                stats.skip("unknown_tool")
                continue
            parent = by_id.get(span.parent_id) if span.parent_id else None
            outer, _ = enclosing_tool(parent) if parent is not None else (None, None)
            _tool_events(span, convention, tool_name, context, add, outer)
            continue
        tool, call_id = enclosing_tool(span)
        ctx = context(span, tool, call_id)
        _model_or_cloud_events(span, convention, ctx, add)
        for name, stamp, attrs in span.events:
            event = _sensor_event(name, stamp or span.start, attrs, ctx)
            if event is not None:
                add(stamp or span.start, event)
    events.sort(key=lambda item: (item[0], item[1]))
    return [event for _, _, event in events]


def _tool_events(span: SpanRecord, convention: str, tool: str,
                 context: Callable[[SpanRecord, str | None, str | None], EventContext],
                 add: Callable[[float, Any], None], outer: str | None) -> None:
    attrs = span.attributes
    call_id = attrs.get(semconv.GEN_AI_TOOL_CALL_ID)
    call_id = str(call_id) if call_id else None
    if convention == "openllmetry":
        wrapper = _json(attrs.get(TL_ENTITY_INPUT))
        arguments: Any = None
        if isinstance(wrapper, dict):
            inputs = wrapper.get("inputs")
            if isinstance(inputs, dict) and inputs:
                arguments = inputs
            elif isinstance(wrapper.get("input_str"), str):
                text = wrapper["input_str"]
                literal = _literal(text)
                arguments = literal if isinstance(literal, dict) else text
        output = _json(attrs.get(TL_ENTITY_OUTPUT))
        result = _message_content(output.get("output")) if isinstance(output, dict) else None
    elif convention == "openinference":
        arguments = _arguments(attrs.get(OI_INPUT))
        result = _tool_result(_captured(attrs.get(OI_OUTPUT)))
    else:
        arguments = _arguments(_captured(attrs.get(semconv.GEN_AI_TOOL_CALL_ARGUMENTS)))
        result = _tool_result(_captured(attrs.get(semconv.GEN_AI_TOOL_CALL_RESULT)))
    if isinstance(arguments, _Text):
        # Cut arguments cannot be parsed: only the call itself is learned.
        arguments = None
    ctx = context(span, tool, call_id)
    error = span.status_message or "error" if span.status == "error" else None
    add(span.start, ToolCall(context=ctx, timestamp=span.start, tool=tool, call_id=call_id,
                             arguments=arguments, phase="call"))
    # A result not captured (capture mode hash or none) is not learned: nothing is known of it.
    if result is not None or error is not None:
        add(span.end or span.start, ToolCall(
            context=ctx, timestamp=span.end or span.start, tool=tool, call_id=call_id,
            arguments=arguments, result=_ResultText.of(result), error=error, phase="result"))
    for name, stamp, event_attrs in span.events:
        event = _sensor_event(name, stamp or span.start, event_attrs, ctx)
        if event is not None:
            add(stamp or span.start, event)


class _ResultText(str):
    """A tool result cut at capture: measured as its full size, records estimated from the part
    that was kept."""

    full_size: int = 0

    @classmethod
    def of(cls, value: Any) -> Any:
        if isinstance(value, _Text) and value.full_size:
            text = cls(value)
            text.full_size = value.full_size
            return text
        return str(value) if isinstance(value, _Text) else value


def _model_or_cloud_events(span: SpanRecord, convention: str, ctx: EventContext,
                           add: Callable[[float, Any], None]) -> None:
    attrs = span.attributes
    if convention == "openinference":
        kind = str(attrs.get(OI_SPAN_KIND)).upper()
        if kind == "LLM":
            provider = attrs.get(OI_PROVIDER) or attrs.get(OI_SYSTEM)
            _model_events(span, ctx, add, provider, attrs.get(OI_MODEL), _oi_messages(attrs),
                          int_value(attrs.get(OI_COMPLETION_TOKENS)))
        elif kind == "RETRIEVER":
            count = len(_indexed(attrs, OI_DOCUMENTS))
            add(span.start, Retrieval(context=ctx, timestamp=span.start, retriever=span.name,
                                      phase="request"))
            add(span.end, Retrieval(context=ctx, timestamp=span.end, retriever=span.name,
                                    documents=[Document() for _ in range(count)],
                                    phase="response"))
        return
    operation = attrs.get(semconv.GEN_AI_OPERATION_NAME)
    # Every model call of the conventions (an embedding model too: it is a model the agent calls).
    is_llm = operation in ("chat", "text_completion", "generate_content", "embeddings") or (
        convention == "openllmetry" and "llm.request.type" in attrs)
    if is_llm:
        provider = attrs.get(semconv.GEN_AI_PROVIDER_NAME) or attrs.get(GEN_AI_SYSTEM)
        model = attrs.get(semconv.GEN_AI_REQUEST_MODEL) or attrs.get(semconv.GEN_AI_RESPONSE_MODEL)
        messages = _messages(_captured(attrs.get(semconv.GEN_AI_OUTPUT_MESSAGES))) or \
            _completion_messages(attrs)
        tokens = int_value(attrs.get(semconv.GEN_AI_USAGE_OUTPUT_TOKENS)) or \
            int_value(attrs.get(GEN_AI_USAGE_COMPLETION_TOKENS)) or \
            int_value(attrs.get(LLM_USAGE_COMPLETION_TOKENS))
        _model_events(span, ctx, add, provider, model, messages, tokens)
        return
    if operation == semconv.OP_RETRIEVAL:
        name = attrs.get(semconv.AG_RETRIEVER_NAME) or span.name
        count = int_value(attrs.get(semconv.AG_RETRIEVAL_DOCUMENT_COUNT)) or 0
        add(span.start, Retrieval(context=ctx, timestamp=span.start, retriever=str(name),
                                  phase="request"))
        add(span.end, Retrieval(context=ctx, timestamp=span.end, retriever=str(name),
                                documents=[Document() for _ in range(min(count, 10_000))],
                                phase="response"))
        return
    if attrs.get(semconv.RPC_SYSTEM) == semconv.RPC_SYSTEM_AWS:
        event = _cloud_call(span, ctx)
        if event is not None:
            add(span.start, event)


def _model_events(span: SpanRecord, ctx: EventContext, add: Callable[[float, Any], None],
                  provider: Any, model: Any, messages: list[Message], tokens: int | None) -> None:
    provider_name = str(provider) if provider else None
    model_name = str(model) if model else None
    add(span.start, ModelCall(context=ctx, timestamp=span.start, provider=provider_name,
                              model=model_name, phase="request"))
    add(span.end, ModelCall(context=ctx, timestamp=span.end, provider=provider_name,
                            model=model_name, output=messages, output_tokens=tokens,
                            phase="response"))


def _cloud_call(span: SpanRecord, ctx: EventContext) -> CloudCall | None:
    attrs = span.attributes
    parts = span.name.split(".")
    if len(parts) == 3 and parts[0] == "aws":
        service, operation = parts[1], parts[2]
    else:
        service = str(attrs.get(semconv.RPC_SERVICE) or "").lower().replace(" ", "")
        operation = str(attrs.get(semconv.RPC_METHOD) or "")
    if not service or not operation:
        return None
    resource: dict[str, str] = {}
    for key, value in attrs.items():
        kind = _RESOURCE_ATTRIBUTES.get(key)
        if kind is None and key.startswith(semconv.AG_CLOUD_RESOURCE_PREFIX):
            kind = key[len(semconv.AG_CLOUD_RESOURCE_PREFIX):]
        if kind is None or value is None:
            continue
        resource[kind] = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
    region = attrs.get(semconv.CLOUD_REGION) or attrs.get(semconv.AWS_REGION)
    return CloudCall(context=ctx, timestamp=span.start, provider="aws", service=service,
                     operation=operation, region=str(region) if region else None,
                     resource=resource)


def _sensor_event(name: str, stamp: float, attrs: dict[str, Any], ctx: EventContext) -> Any:
    """The event of one of agentguard's runtime-sensor span events."""
    if name == semconv.EVENT_PROCESS_EXEC:
        path = attrs.get(semconv.PROCESS_EXECUTABLE_PATH)
        if not isinstance(path, str):
            return None
        line = attrs.get(semconv.PROCESS_COMMAND_LINE)
        argv: list[str] = []
        if isinstance(line, str):
            try:
                argv = shlex.split(line[:_MAX_LITERAL])
            except ValueError:
                argv = line[:_MAX_LITERAL].split()
        return ProcessExec(context=ctx, timestamp=stamp, executable=path, argv=argv[:256])
    if name == semconv.EVENT_NET_CONNECT:
        address = attrs.get(semconv.NETWORK_PEER_ADDRESS)
        if not isinstance(address, str):
            return None
        transport = attrs.get(semconv.NETWORK_TRANSPORT)
        hostname = attrs.get(semconv.SERVER_ADDRESS)
        return NetConnect(context=ctx, timestamp=stamp, address=address,
                          port=int_value(attrs.get(semconv.NETWORK_PEER_PORT)),
                          family="unix" if transport == "unix" else attrs.get(semconv.NETWORK_TYPE),
                          protocol=transport if isinstance(transport, str) else None,
                          hostname=hostname if isinstance(hostname, str) else None)
    if name == semconv.EVENT_DNS_LOOKUP:
        host = attrs.get(semconv.DNS_QUESTION_NAME)
        return DnsLookup(context=ctx, timestamp=stamp, hostname=host) \
            if isinstance(host, str) else None
    if name == semconv.EVENT_FILE_OPEN:
        path = attrs.get(semconv.FILE_PATH)
        if not isinstance(path, str):
            return None
        write = bool(attrs.get(semconv.AG_FILE_WRITE))
        return FileOpen(context=ctx, timestamp=stamp, path=path, write=write,
                        mode="w" if write else "r")
    if name == semconv.EVENT_MODULE_LOAD:
        module = attrs.get(semconv.AG_MODULE_NAME)
        if not isinstance(module, str):
            return None
        distribution = attrs.get(semconv.AG_MODULE_DISTRIBUTION)
        return ModuleLoad(context=ctx, timestamp=stamp, module=module,
                          distribution=distribution if isinstance(distribution, str) else None,
                          version=str(attrs[semconv.AG_MODULE_VERSION])
                          if attrs.get(semconv.AG_MODULE_VERSION) else None)
    if name == semconv.EVENT_MODEL_LOAD:
        path = attrs.get(semconv.FILE_PATH)
        sha = attrs.get(semconv.AG_MODEL_SHA256)
        return ModelLoad(context=ctx, timestamp=stamp, path=path if isinstance(path, str) else None,
                         sha256=sha if isinstance(sha, str) else None,
                         format=str(attrs.get(semconv.AG_MODEL_FORMAT) or "") or None,
                         size=int_value(attrs.get(semconv.AG_MODEL_SIZE)))
    return None


# -- the whole run -----------------------------------------------------------------------------

def learn_otlp_files(paths: Iterable[str], learner: Learner, *, service: str | None = None,
                     advance: Callable[[int], None] | None = None) -> OtlpStats:
    """Learn every trace in ``paths`` into ``learner``'s profile.

    ``service`` keeps only spans of that ``service.name``; ``advance(bytes)`` reports progress.
    """
    stats = OtlpStats()
    agent = learner.profile.agent
    step = advance or (lambda _: None)
    open_traces: OrderedDict[str, _Trace] = OrderedDict()

    def finish(trace: _Trace) -> None:
        stats.traces += 1
        try:
            events = span_events(sorted(trace.spans.values(), key=lambda s: s.start), agent,
                                 stats)
        except (ValueError, TypeError, RecursionError):
            # Attribute values of the wrong type for an event (a validation error): the trace
            # is not learned, the others are.
            stats.skip("malformed_trace")
            return
        for event in events:
            stats.events += 1
            if learner.learn(event):
                stats.learned += 1
        learner.flush_turns()

    for path in paths:
        stats.files += 1
        if not os.path.exists(path):
            stats.errors.append(f"{path}: no such file")
            continue
        try:
            for span in read_spans(_documents(path, stats, step), stats):
                name = span.service or "unknown"
                stats.services[name] = stats.services.get(name, 0) + 1
                if service is not None and span.service != service:
                    stats.skip("other_service")
                    continue
                trace = open_traces.get(span.trace_id)
                if trace is None:
                    trace = open_traces[span.trace_id] = _Trace()
                    if len(open_traces) > _MAX_OPEN_TRACES:
                        finish(open_traces.popitem(last=False)[1])
                else:
                    open_traces.move_to_end(span.trace_id)
                if len(trace.spans) >= _MAX_SPANS_PER_TRACE:
                    stats.skip("trace_too_large")
                    continue
                trace.spans[span.span_id] = span
        except _UNREADABLE as exc:
            # Spans read before the problem are kept (a cut .gz still holds whole traces).
            stats.errors.append(_unreadable(path, exc))
    while open_traces:
        finish(open_traces.popitem(last=False)[1])
    return stats


def peek_service(paths: Iterable[str], errors: list[str] | None = None) -> str | None:
    """The ``service.name`` of the first span in the files, if any names one; what made a file
    unreadable on the way is appended to ``errors``."""
    import contextlib

    for path in paths:
        stats = OtlpStats()
        try:
            with contextlib.closing(read_spans(_documents(path, stats, lambda _: None), stats)) \
                    as spans:
                for span in spans:
                    if span.service and not span.service.startswith("unknown_service"):
                        return span.service
        except _UNREADABLE as exc:
            stats.errors.append(_unreadable(path, exc))
        if errors is not None:
            errors.extend(stats.errors)
    return None
