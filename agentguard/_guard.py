"""The Guard: every event goes through detectors → baseline → policy → emit.

Integrations call the ``start_*`` methods, which open a span carrying the GenAI attributes, judge
the event before the work happens, and return an :class:`Operation` to finish when it is done.
The stages are extension points: detectors (:class:`Detector`), one baseline
(:class:`BaselineStage`), policies (:class:`PolicyStage` or plain callables), and finding sinks.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from agentguard import semconv
from agentguard._content import ContentCapture, to_json
from agentguard._context import (
    FRAME_KEY,
    ConversationRegistry,
    Frame,
    attach_context,
    current_context,
    current_frame,
    current_pid,
    current_tid,
    detach_context,
)
from agentguard._errors import internal_error
from agentguard._genai import input_messages, output_messages
from agentguard._spans import LightTracer
from agentguard.config import Config
from agentguard.events import (
    EventContext,
    ModelCall,
    Retrieval,
    ToolCall,
    Turn,
    _EventBase,
    trusted,
)
from agentguard.findings import (
    SEVERITY_ORDER,
    Decision,
    Finding,
    ModelCallBlocked,
    ToolCallBlocked,
)

__all__ = [
    "BaselineStage",
    "Detector",
    "FindingSink",
    "Guard",
    "Operation",
    "PolicyStage",
    "Verdict",
    "error_text",
]

logger = logging.getLogger("agentguard.findings")

FindingSink = Callable[[Finding], None]
PolicyCallback = Callable[[Any], "Decision | None"]


class Verdict:
    """The Guard's judgement of one event: the final action, findings, and stage annotations."""

    __slots__ = ("action", "annotations", "findings")

    def __init__(self) -> None:
        self.action = "allow"
        self.findings: list[Finding] = []
        # Detector and baseline results, keyed by stage name, for the stages after them.
        self.annotations: dict[str, Any] = {}

    @property
    def blocked(self) -> bool:
        return self.action == "block"

    def blocking_finding(self) -> Finding | None:
        for finding in self.findings:
            if finding.action == "block":
                return finding
        return None

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)
        if finding.action == "block":
            self.action = "block"
        elif self.action == "allow":
            self.action = "alert"


_ALLOW = Verdict()
# Bound of the per-tool cache of Guard.result_floor (cleared when full).
_FLOOR_CACHE_LIMIT = 4096


@runtime_checkable
class Detector(Protocol):
    """Inspects an event (usually untrusted text) and annotates the verdict or adds findings."""

    name: str

    def inspect(self, event: Any, verdict: Verdict, guard: Guard) -> None: ...


@runtime_checkable
class BaselineStage(Protocol):
    """Learns the agent's behaviour in ``learn`` mode and scores deviations otherwise."""

    def process(self, event: Any, verdict: Verdict, guard: Guard) -> None: ...


@runtime_checkable
class PolicyStage(Protocol):
    """Decides about an event given what detectors and the baseline found.

    ``evaluate`` returns ``None`` (nothing to say), one :class:`Decision`, or several (a rule set
    where more than one rule matched); each non-allow decision becomes a finding.
    """

    def evaluate(self, event: Any, verdict: Verdict) -> Decision | Iterable[Decision] | None: ...


class CallbackPolicy:
    """Adapts a plain ``fn(event) -> Decision | None`` to the policy stage; a callback that
    takes a second positional argument is given the verdict so far, ``fn(event, verdict)``
    (what detectors and the baseline found, ``verdict.annotations``)."""

    def __init__(self, fn: PolicyCallback) -> None:
        self.fn = fn
        self.name = getattr(fn, "__name__", repr(fn))
        self.wants_verdict = _takes_two_arguments(fn)

    def evaluate(self, event: Any, verdict: Verdict) -> Decision | Iterable[Decision] | None:
        if self.wants_verdict:
            return self.fn(event, verdict)  # type: ignore[call-arg]
        return self.fn(event)


def _takes_two_arguments(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` can be called with two positional arguments (read once, at registration)."""
    import inspect

    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return False  # a builtin or C callable without a signature: called as documented first
    try:
        signature.bind(None, None)
    except TypeError:
        return False
    return True


class JsonLinesSink:
    """Appends each finding as one JSON line to a file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def __call__(self, finding: Finding) -> None:
        line = finding.model_dump_json() + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)


def logging_sink(finding: Finding) -> None:
    """Logs findings on the ``agentguard.findings`` logger (blocks and high severity as warnings)."""
    level = (
        logging.WARNING
        if finding.action == "block" or SEVERITY_ORDER[finding.severity] >= 3
        else logging.INFO
    )
    if logger.isEnabledFor(level):
        logger.log(
            level,
            "%s %s [%s] %s (tool=%s conversation=%s turn=%s)",
            finding.action.upper(),
            finding.severity,
            _printable(finding.rule_id),
            _printable(finding.title),
            _printable(finding.tool),
            _printable(finding.conversation_id),
            finding.turn,
        )


def _printable(text: str | None) -> str | None:
    """``text`` with control, format and line-separator characters escaped: a finding's title
    quotes what an attacker named (a file, a tool, a host), and a log line must not carry escape
    sequences to the operator's terminal or a line break that forges another log line."""
    if text is None or text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


_SPAN_KEY: str | None
try:
    from opentelemetry.trace.propagation import _SPAN_KEY
except ImportError:  # pragma: no cover - the key's home moved
    _SPAN_KEY = None


def _context_with(span: trace.Span, frame: Frame) -> otel_context.Context:
    """The current context with ``span`` current and ``frame`` set, built in one copy."""
    if _SPAN_KEY is None:
        return otel_context.set_value(FRAME_KEY, frame, trace.set_span_in_context(span))
    values = dict(current_context())
    values[_SPAN_KEY] = span
    values[FRAME_KEY] = frame
    return otel_context.Context(values)


# A dict with more keys than this is not looked through for its largest list: it is judged.
_SIZE_KEYS = 64


# Characters of an error's text kept in a ``ToolCall``'s ``error``.
_MAX_ERROR = 4096


def error_text(error: BaseException) -> str:
    """The ``error`` of a failed tool call: the exception's type and message
    (``"PermissionError: [Errno 13] Permission denied: '/etc/shadow'"``), at most 4,096
    characters; the type alone when the message cannot be read."""
    name = type(error).__qualname__
    try:
        message = str(error)
    except Exception:  # the exception's own __str__ raised
        return name
    return (f"{name}: {message}" if message else name)[:_MAX_ERROR]


def _result_size(result: Any) -> float:
    """The size a result floor is compared with: characters of a text, records of a plain list,
    tuple or dict (as the policy's ``count`` reads them: a dict holds as many as its longest list,
    at least one), 0 for ``None``; anything else is always judged (``inf``).

    A text never holds more records than characters, so one floor serves both.
    """
    kind = type(result)
    if kind is str or kind is list or kind is tuple:
        return len(result)
    if result is None:
        return 0
    if kind is dict:
        if len(result) > _SIZE_KEYS:
            return math.inf
        size = 1
        for value in result.values():
            if isinstance(value, (list, tuple)) and len(value) > size:
                size = len(value)
        return size
    return math.inf


# Set by the runtime sensor while its C hook runs (``agentguard.sensors._fasthook.flush``):
# called just before an operation's span ends, it writes the repeats counted in C on their spans.
before_span_end: Callable[[], object] | None = None
# Set by the runtime sensor while its C hook runs: told each time a Guard's stages change
# (``has_stages``), so the hook knows whether repeats must still be judged.
stages_changed: Callable[[Guard], object] | None = None
# Set by the runtime sensor while it runs: told ``(guard, name)`` before any attribute of a Guard
# is assigned or deleted, so that code outside agentguard changing how events are judged (its
# mode, stages, configuration) is reported as tampering, and refused in a tool call in enforce
# mode (the exception it raises stops the write).
attribute_written: Callable[[Guard, str], object] | None = None


# Tool operations in progress on one thread, at most: past it, the ones that ended or belong to
# another process are dropped first, then the oldest (counted in ``running_tools_dropped``).
MAX_RUNNING_TOOLS = 64
running_tools_dropped = 0


class _RunningTools(threading.local):
    """The tool operations this thread is running, innermost last, each with the asyncio task
    that runs it (``None``: a synchronous call) and the process: the runtime sensor's answer to
    "inside a tool?" when code in a tool runs in a context that no longer says so
    (``contextvars.Context().run``)."""

    def __init__(self) -> None:
        self.stack: list[tuple[Operation, object, int]] = []


_running = _RunningTools()


def _current_task() -> object:
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    loop = asyncio._get_running_loop()
    return asyncio.current_task(loop) if loop is not None else None


def running_tool() -> Operation | None:
    """The innermost tool operation running on this thread and in this process, whatever the
    current context says; ``None`` when there is none.

    A tool called synchronously owns everything that runs on its thread until it returns (an
    event loop it starts included). A tool running in an asyncio task owns that task and the
    tasks it is waiting for (LangChain runs an async tool's body in a task of its own), not the
    other tasks of the loop, which run on the same thread while it awaits. A forked child does
    not inherit its parent's tools (a pool's worker serves every later caller).
    """
    stack = _running.stack
    if not stack:
        return None
    task = _current_task()
    pid = current_pid()
    for op, owner, process in reversed(stack):
        if process != pid or op.ended:
            continue
        if owner is None or owner is task or (task is not None and _awaits(owner, task)):
            return op
    return None


# Links followed from a task to what it waits for, and tasks of one asyncio.gather looked at.
MAX_AWAITED = 8
MAX_GATHERED = 256


def _awaits(owner: object, task: object) -> bool:
    """Whether asyncio task ``owner`` is waiting for ``task``: directly, through the tasks it
    waits for, or among the tasks of an ``asyncio.gather`` it waits for."""
    waiter: object = owner
    for _ in range(MAX_AWAITED):
        waiter = getattr(waiter, "_fut_waiter", None)
        if waiter is None:
            return False
        if waiter is task:
            return True
        children = getattr(waiter, "_children", None)
        if isinstance(children, list) and any(
                child is task for child in children[:MAX_GATHERED]):
            return True
    return False


def _push_running(op: Operation) -> None:
    global running_tools_dropped
    stack = _running.stack
    if len(stack) >= MAX_RUNNING_TOOLS:
        pid = current_pid()
        live = [entry for entry in stack if not entry[0].ended and entry[2] == pid]
        if len(live) >= MAX_RUNNING_TOOLS:
            running_tools_dropped += len(live) - MAX_RUNNING_TOOLS + 1
            live = live[len(live) - MAX_RUNNING_TOOLS + 1:]
        stack[:] = live
    stack.append((op, _current_task(), current_pid()))


def _pop_running(op: Operation) -> None:
    stack = _running.stack
    for index in range(len(stack) - 1, -1, -1):
        if stack[index][0] is op:
            del stack[index]
            return


class Operation:
    """One traced unit of agent work (agent invocation, model call, retrieval or tool call)."""

    __slots__ = (
        "arguments",
        "call_id",
        "context",
        "ended",
        "event",
        "frame",
        "guard",
        "kind",
        "name",
        "span",
        "unknown",
        "verdict",
    )

    def __init__(
        self, guard: Guard, kind: str, name: str, span: trace.Span, frame: Frame
    ) -> None:
        self.guard = guard
        self.kind = kind
        self.name = name
        self.span = span
        self.frame = frame
        self.event: Any = None
        # A tool call's id and arguments, for its events (the call event may not be built).
        self.call_id: str | None = None
        self.arguments: Any = None
        # A call of a tool the framework does not have (ToolCall.unknown).
        self.unknown = False
        self.verdict: Verdict = _ALLOW
        self.ended = False
        frame.span = span
        self.context = _context_with(span, frame)

    # -- context ---------------------------------------------------------------------------
    def activate(self) -> object:
        """Make this operation current (returns a token for :meth:`deactivate`); a tool also
        counts as running on this thread until then (:func:`running_tool`)."""
        # (Only the runtime sensor asks: without it a tool call costs nothing more.)
        if self.kind == "tool" and self.guard.config.runtime_sensor:
            _push_running(self)
        return attach_context(self.context)

    def deactivate(self, token: object) -> None:
        """Undo :meth:`activate` (``token`` is what it returned)."""
        if self.kind == "tool":
            _pop_running(self)
        try:
            detach_context(token)  # type: ignore[arg-type]
        except Exception as exc:
            internal_error("context detach", exc)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` with this operation current; an exception ends it as failed and propagates
        unchanged. The caller finishes the operation with the result."""
        token = self.activate()
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:
            self.fail(exc)
            raise
        finally:
            self.deactivate(token)

    async def acall(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """:meth:`call` for a coroutine function."""
        token = self.activate()
        try:
            return await fn(*args, **kwargs)
        except BaseException as exc:
            self.fail(exc)
            raise
        finally:
            self.deactivate(token)

    def event_context(self) -> EventContext:
        """The context stamped on events that happen inside this operation."""
        frame = self.frame
        span_context = self.span.get_span_context()
        conv = frame.conversation
        tool = frame.tool
        if span_context.is_valid:
            # %-formatting: twice as fast as format() for these ints, on every judged tool call.
            trace_id: str | None = "%032x" % span_context.trace_id  # noqa: UP031
            span_id: str | None = "%016x" % span_context.span_id  # noqa: UP031
        else:
            trace_id = span_id = None
        return trusted(EventContext, {
            "agent": self.guard.agent_name,
            "conversation_id": conv.id if conv is not None else None,
            "user": conv.user if conv is not None else None,
            "turn": frame.turn,
            "trace_id": trace_id,
            "span_id": span_id,
            "tool": tool.name if tool is not None else None,
            "tool_call_id": tool.call_id if tool is not None else None,
            "pid": current_pid(),
            "tid": current_tid(),
        })

    # -- ending ----------------------------------------------------------------------------
    def _finish(self, verdict: Verdict | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        if verdict is not None and verdict.findings:
            self.guard.emit(verdict, self.span)
        if before_span_end is not None:
            before_span_end()  # the runtime sensor's counts (never raises)
        self.span.end()

    def fail(self, exc: BaseException) -> None:
        """End with an error status; the exception itself propagates unchanged to the caller."""
        if self.ended:
            return
        try:
            span = self.span
            pause = langgraph_pause(exc)
            if pause is not None:
                # A graph pausing for a human (interrupt()) or handing control to its parent:
                # flow control, not a failure; error-rate dashboards must not count it.
                span.set_attribute(semconv.AG_INTERRUPTED, pause)
                self._finish()
                return
            if cancelled(exc):
                # The task running it was cancelled (a timeout, a client that went away): the
                # caller stopped waiting, the work did not fail. Marked so, without error status.
                span.set_attribute(semconv.AG_CANCELLED, True)
                self._finish()
                return
            capture = self.guard.capture
            span.add_event("exception", capture.exception(exc, escaped=True))
            span.set_status(Status(StatusCode.ERROR, capture.error_status(exc)))
            span.set_attribute("error.type", type(exc).__qualname__)
        except Exception as err:
            internal_error("span error", err)
        if self.kind == "tool" and self.guard.has_stages:
            # A failed tool call is judged with its error (rules on ``error``, the baseline's
            # error counts); the exception propagates unchanged whatever the verdict.
            self._finish(self._judge_result(None, error_text(exc)))
            return
        self._finish()

    def abandon(self) -> None:
        """End a stream the caller stopped reading before it was exhausted."""
        if self.ended:
            return
        try:
            self.span.set_attribute(semconv.AG_STREAM_ABANDONED, True)
        except Exception as err:
            internal_error("span abandon", err)
        self._finish()

    def end(self) -> None:
        self._finish()

    def end_tool(self, result: Any, *, error: str | None = None) -> Verdict:
        """Record a tool's result and judge it (post-call checks); returns the verdict.
        ``error``: the tool failed and ``result`` is what the model is told (an error a
        framework handled, see :func:`error_text`); kept to 4,096 characters."""
        if self.ended:
            return _ALLOW
        guard = self.guard
        verdict = _ALLOW
        try:
            captured = guard.content(result) if guard.capture.enabled else None
            if captured is not None:
                self.span.set_attribute(semconv.GEN_AI_TOOL_CALL_RESULT, captured)
            if guard.has_stages and self.kind == "tool" and (
                    error is not None
                    or _result_size(result) >= guard.result_floor(self.name, guard.agent_name)):
                verdict = self._judge_result(result, error)
                if verdict.blocked:
                    self.span.set_status(Status(StatusCode.ERROR, "blocked by agentguard"))
        except Exception as exc:
            internal_error("tool end", exc)
        self._finish(verdict)
        return verdict

    def _judge_result(self, result: Any, error: str | None) -> Verdict:
        """Judge the result-phase ``ToolCall`` of this tool operation."""
        try:
            call = self.event
            if call is None:
                call = self.event = self.guard.call_event(self)
            return self.guard.evaluate(trusted(ToolCall, {
                "context": call.context, "timestamp": time.time(), "kind": "tool_call",
                "tool": call.tool, "call_id": call.call_id, "arguments": call.arguments,
                "result": result, "error": None if error is None else error[:_MAX_ERROR],
                "phase": "result", "unknown": call.unknown,
            }))
        except Exception as exc:
            internal_error("tool result", exc)
            return _ALLOW

    def end_chat(
        self,
        output: Sequence[dict[str, Any]] | None,
        *,
        response_model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        finish_reasons: Sequence[str] = (),
        unfinished: str | None = None,
    ) -> Verdict:
        """Record a model's answer and usage, and judge it. ``unfinished``: the answer is the
        part the caller read of a stream that failed (``"error"``) or that it stopped reading
        (``"abandoned"``); its messages say so when the provider gave no finish reason."""
        if self.ended:
            return _ALLOW
        guard = self.guard
        verdict = _ALLOW
        try:
            span = self.span
            if response_model:
                span.set_attribute(semconv.GEN_AI_RESPONSE_MODEL, response_model)
            if input_tokens is not None:
                span.set_attribute(semconv.GEN_AI_USAGE_INPUT_TOKENS, input_tokens)
            if output_tokens is not None:
                span.set_attribute(semconv.GEN_AI_USAGE_OUTPUT_TOKENS, output_tokens)
            if finish_reasons:
                span.set_attribute(semconv.GEN_AI_RESPONSE_FINISH_REASONS, list(finish_reasons))
            if output is not None and guard.capture.enabled:
                captured = guard.content(output_messages(output, finish_reasons, unfinished))
                if captured is not None:
                    span.set_attribute(semconv.GEN_AI_OUTPUT_MESSAGES, captured)
            if guard.has_stages and self.event is not None and output is not None:
                event = self.event.model_copy(
                    update={
                        "output": _messages(output),
                        "phase": "response",
                        "input_tokens": input_tokens,
                        "output_tokens": output_tokens,
                        "finish_reasons": list(finish_reasons),
                    }
                )
                verdict = guard.evaluate(event)
        except Exception as exc:
            internal_error("chat end", exc)
        self._finish(verdict)
        return verdict

    def end_retrieval(self, documents: Sequence[dict[str, Any]]) -> Verdict:
        """Record retrieved documents (untrusted content) and judge them."""
        if self.ended:
            return _ALLOW
        guard = self.guard
        verdict = _ALLOW
        try:
            span = self.span
            span.set_attribute(semconv.AG_RETRIEVAL_DOCUMENT_COUNT, len(documents))
            if guard.capture.enabled:
                captured = guard.content(list(documents))
                if captured is not None:
                    span.set_attribute(semconv.AG_RETRIEVAL_DOCUMENTS, captured)
            if guard.has_stages and self.event is not None:
                from agentguard.events import Document

                docs = [Document.model_validate(doc) for doc in documents]
                event = self.event.model_copy(update={"documents": docs, "phase": "response"})
                verdict = guard.evaluate(event)
        except Exception as exc:
            internal_error("retrieval end", exc)
        self._finish(verdict)
        return verdict

    def end_cloud_call(
        self,
        status: int | None = None,
        *,
        request_id: str | None = None,
        error: str | None = None,
        exception: BaseException | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        """Record a cloud call's outcome (HTTP status, request id, error code) and end its span.

        The call was judged before it was sent; the outcome is kept on the event (``status``,
        ``error``) for whoever reads it later, and is not judged again.
        """
        if self.ended:
            return
        try:
            span = self.span
            if status is not None:
                span.set_attribute(semconv.HTTP_RESPONSE_STATUS_CODE, status)
            provider = getattr(self.event, "provider", None)
            if request_id:
                span.set_attribute(semconv.AWS_REQUEST_ID if provider == "aws" else
                                   semconv.AG_CLOUD_REQUEST_ID, request_id)
            if attributes:
                span.set_attributes(attributes)
            capture = self.guard.capture
            if exception is not None:
                span.add_event("exception", capture.exception(exception))
            if error or exception is not None:
                kind = error or type(exception).__qualname__
                detail = capture.error_status(exception, kind) if exception is not None else kind
                span.set_status(Status(StatusCode.ERROR, detail[:512]))
                span.set_attribute(semconv.ERROR_TYPE, kind)
            if self.event is not None and (status is not None or error):
                self.event = self.event.model_copy(update={"status": status, "error": error})
        except Exception as exc:
            internal_error("cloud call end", exc)
        self._finish()


def cancelled(exc: BaseException) -> bool:
    """Whether ``exc`` is asyncio's cancellation (looked up, never imported for it)."""
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and isinstance(exc, asyncio.CancelledError)


def langgraph_pause(exc: BaseException, family: str = "GraphBubbleUp") -> str | None:
    """The name of ``exc`` when it is LangGraph's flow control rather than an error (by default
    its ``GraphBubbleUp`` family: ``GraphInterrupt``, ``ParentCommand``; ``family`` names a
    narrower one), else ``None``; recognised by class name, so LangGraph is never imported."""
    for cls in type(exc).__mro__:
        if cls.__name__ == family and cls.__module__.startswith("langgraph"):
            return type(exc).__name__
    return None


def _messages(items: Iterable[dict[str, Any]]) -> list[Any]:
    from agentguard.events import Message

    out = []
    for item in items:
        try:
            out.append(Message.model_validate(item))
        except Exception:
            out.append(Message(role=str(item.get("role", "unknown")), content=to_json(item)))
    return out


# Distinct rule ids kept in a span's agentguard.finding.rule_ids.
_MAX_RULE_IDS = 64


class Guard:
    """Runs events through the pipeline and opens the spans integrations ask for."""

    def __init__(
        self,
        config: Config,
        tracer: trace.Tracer,
        conversations: ConversationRegistry,
        *,
        policies: Sequence[PolicyStage | PolicyCallback] = (),
    ) -> None:
        self.config = config
        self.mode = config.mode
        # Stamped on every event's context (read once: it is on the path of every judged event).
        self.agent_name = config.service_name
        self.tracer = tracer
        self.conversations = conversations
        self.capture = ContentCapture(config.capture_content, config.max_content_length)
        # Light spans take content whose redaction is left to the export thread.
        self._light = tracer if isinstance(tracer, LightTracer) else None
        self.content = self.capture.pending if self._light is not None else self.capture.value
        # Tuples: changed only by the methods below (a tool cannot empty them in place, and
        # assigning them from outside agentguard is a tamper finding while the sensor runs).
        self.detectors: tuple[Detector, ...] = ()
        self.baseline: BaselineStage | None = None
        self.policies: tuple[PolicyStage, ...] = ()
        self.sinks: tuple[FindingSink, ...] = (logging_sink,)
        self.findings_emitted = 0
        self.disabled_rules = frozenset(config.disabled_rules)
        self.has_stages = False
        # Per (tool, agent): how long a text result must be for some stage to judge it.
        self._result_floors: dict[tuple[Any, Any], float] = {}
        self._quick_allow: Callable[..., bool] | None = None
        if config.on_finding is not None:
            self.add_sink(config.on_finding)
        if config.findings_file:
            self.add_sink(JsonLinesSink(config.findings_file))
        for policy in policies:
            self.add_policy(policy)

    def __setattr__(self, name: str, value: Any) -> None:
        watch = attribute_written
        if watch is not None:
            watch(self, name)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        watch = attribute_written
        if watch is not None:
            watch(self, name)
        object.__delattr__(self, name)

    # -- extension points ------------------------------------------------------------------
    def _refresh(self) -> None:
        self.has_stages = bool(self.detectors or self.baseline is not None or self.policies)
        if stages_changed is not None:
            stages_changed(self)
        self._result_floors = {}
        # A tool call is first put to the one policy stage's quick_allow when nothing else
        # judges events: the usual call, which no rule can make fire, then costs no event.
        quick = getattr(self.policies[0], "quick_allow", None) \
            if len(self.policies) == 1 and not self.detectors and self.baseline is None else None
        self._quick_allow = quick if callable(quick) else None

    def result_floor(self, tool: str, agent: str | None) -> float:
        """How large a tool's result must be for any stage to judge it (0: every result; the size
        is a text's length, a plain list's or dict's records, see ``_result_size``).

        Detectors, the baseline and plain callbacks see every result; a policy stage may say
        (``result_floor(tool, agent)``) that it only looks at large ones, as the built-in pack
        does (bulk data), so a small result is not built into an event nobody would judge.
        """
        key = (tool, agent)
        floors = self._result_floors
        found = floors.get(key)
        if found is not None:
            return found
        floor = math.inf
        if self.detectors or self.baseline is not None:
            floor = 0.0
        for policy in self.policies:
            ask = getattr(policy, "result_floor", None)
            try:
                floor = min(floor, float(ask(tool, agent)) if callable(ask) else 0.0)
            except Exception as exc:
                internal_error(f"policy {getattr(policy, 'name', policy)!s} result floor", exc)
                floor = 0.0
        if len(floors) >= _FLOOR_CACHE_LIMIT:
            floors.clear()
        floors[key] = floor
        return floor

    def add_detector(self, detector: Detector) -> None:
        self.detectors = (*self.detectors, detector)
        self._refresh()

    def remove_detector(self, detector: Detector) -> None:
        """Take ``detector`` out of the pipeline (nothing happens when it is not in it)."""
        self.detectors = tuple(d for d in self.detectors if d is not detector)
        self._refresh()

    def set_baseline(self, baseline: BaselineStage | None) -> None:
        self.baseline = baseline
        self._refresh()

    def add_policy(self, policy: PolicyStage | PolicyCallback) -> None:
        stage: PolicyStage = policy if isinstance(policy, PolicyStage) else CallbackPolicy(policy)
        self.policies = (*self.policies, stage)
        self._refresh()

    def replace_policies(self, policies: Sequence[PolicyStage]) -> None:
        """Put ``policies`` in place of the Guard's policy stages."""
        self.policies = tuple(policies)
        self._refresh()

    def policy(self, fn: PolicyCallback) -> PolicyCallback:
        """Decorator form of :meth:`add_policy`: ``@guard.policy``."""
        self.add_policy(fn)
        return fn

    def add_sink(self, sink: FindingSink) -> None:
        self.sinks = (*self.sinks, sink)

    def remove_sink(self, sink: FindingSink) -> None:
        """Stop sending findings to ``sink`` (nothing happens when it is not a sink). Compared
        by equality: a bound method is a new object at each access."""
        self.sinks = tuple(s for s in self.sinks if s != sink)

    # -- the pipeline ----------------------------------------------------------------------
    def evaluate(self, event: Any) -> Verdict:
        """Run ``event`` through detectors, baseline and policy; the caller emits the verdict."""
        if not self.has_stages:
            return _ALLOW
        verdict = Verdict()
        for detector in self.detectors:
            try:
                detector.inspect(event, verdict, self)
            except Exception as exc:
                internal_error(f"detector {getattr(detector, 'name', detector)!s}", exc)
        if self.baseline is not None:
            try:
                self.baseline.process(event, verdict, self)
            except Exception as exc:
                internal_error("baseline", exc)
        for policy in self.policies:
            try:
                result = policy.evaluate(event, verdict)
            except Exception as exc:
                result = self._policy_error(policy, exc)
            if result is None:
                continue
            try:
                # A decision the finding cannot be made of (a callback's typo) is the policy's
                # error, judged as one: it must not take the other stages' findings with it.
                for decision in (result,) if isinstance(result, Decision) else result:
                    if decision.action != "allow":
                        verdict.add(self.finding_for(event, decision))
            except Exception as exc:
                verdict.add(self.finding_for(event, self._policy_error(policy, exc)))
        if self.disabled_rules and verdict.findings:
            verdict = self._without_disabled(verdict)
        return verdict

    def _without_disabled(self, verdict: Verdict) -> Verdict:
        """The verdict without findings of rules switched off by ``disabled_rules`` (detector,
        baseline and sensor rules included; policy files drop their own before evaluating)."""
        disabled = self.disabled_rules
        if not any(f.rule_id in disabled or (f.rule_id.startswith("baseline-") and
                   "baseline-*" in disabled) for f in verdict.findings):
            return verdict
        kept = Verdict()
        kept.annotations = verdict.annotations
        for finding in verdict.findings:
            if finding.rule_id in disabled or (
                    finding.rule_id.startswith("baseline-") and "baseline-*" in disabled):
                continue
            kept.add(finding)
        return kept

    def _policy_error(self, policy: PolicyStage, exc: Exception) -> Decision:
        internal_error(f"policy {getattr(policy, 'name', policy)!s}", exc)
        reason = f"policy {getattr(policy, 'name', type(policy).__name__)} raised " \
                 f"{type(exc).__name__}: {exc}"
        evidence = {"exception": type(exc).__name__, "message": str(exc)[:500]}
        on_error = self.config.on_policy_error or ("block" if self.mode == "enforce" else "allow")
        if on_error == "block":
            return Decision.block(reason, "high", rule_id="policy-error", evidence=evidence)
        return Decision.alert(reason, "medium", rule_id="policy-error", evidence=evidence)

    @property
    def fails_closed(self) -> bool:
        """Whether an internal error must block (``enforce`` mode with ``fail_closed=True``)."""
        return self.mode == "enforce" and self.config.fail_closed

    def internal_failure_finding(self, where: str, exc: BaseException, *, kind: str,
                                 tool: str | None = None) -> Finding:
        """The blocking finding for an internal error when failing closed."""
        conv = current_frame().conversation
        finding = Finding(
            rule_id="internal-error", category="internal", severity="high",
            title=f"agentguard could not judge this {kind} ({where}) and fails closed",
            action="block", kind=kind, tool=tool, agent=self.config.service_name,
            conversation_id=conv.id if conv is not None else None, turn=current_frame().turn,
            evidence={"exception": type(exc).__name__, "message": str(exc)[:500]},
        )
        verdict = Verdict()
        verdict.add(finding)
        self.emit(verdict, trace.get_current_span())
        return finding

    def finding_for(self, event: Any, decision: Decision) -> Finding:
        """Turn a decision about ``event`` into a finding, applying the mode (monitor never blocks)."""
        action = decision.action
        if action == "block" and self.mode == "monitor":
            action = "alert"
        ctx: EventContext = getattr(event, "context", None) or EventContext()
        return Finding(
            rule_id=decision.rule_id,
            category=decision.category,
            severity=decision.severity,
            title=decision.reason or decision.rule_id,
            action="block" if action == "block" else "alert",
            kind=getattr(event, "kind", "unknown"),
            tool=getattr(event, "tool", None) or ctx.tool,
            agent=ctx.agent,
            conversation_id=ctx.conversation_id,
            turn=ctx.turn,
            trace_id=ctx.trace_id,
            span_id=ctx.span_id,
            evidence=decision.evidence,
        )

    def emit(self, verdict: Verdict, span: trace.Span | None) -> None:
        """Write a verdict to the span (attributes and events) and to every finding sink."""
        findings = verdict.findings
        if not findings:
            return
        try:
            if span is not None and span.is_recording():
                top: str = max(findings, key=lambda f: SEVERITY_ORDER[f.severity]).severity
                action = verdict.action
                count = len(findings)
                rules = [f.rule_id for f in findings]
                # A span judged more than once (a tool call and its result, sensor events
                # inside it) keeps the totals of every verdict, not just the last one.
                earlier = getattr(span, "attributes", None)
                if earlier:
                    before = earlier.get(semconv.AG_FINDING_COUNT)
                    if isinstance(before, int):
                        count += before
                        rules = [*earlier.get(semconv.AG_FINDING_RULES, ()), *rules]
                        if earlier.get(semconv.AG_DECISION) == "block":
                            action = "block"
                        previous = earlier.get(semconv.AG_FINDING_SEVERITY)
                        if SEVERITY_ORDER.get(str(previous), -1) > SEVERITY_ORDER[top]:
                            top = str(previous)
                span.set_attribute(semconv.AG_DECISION, action)
                span.set_attribute(semconv.AG_FINDING_COUNT, count)
                # Each rule once, and a bounded list: a long-lived span (an agent's, which
                # sensor findings land on) may be judged thousands of times.
                span.set_attribute(semconv.AG_FINDING_RULES,
                                   list(dict.fromkeys(rules))[:_MAX_RULE_IDS])
                span.set_attribute(semconv.AG_FINDING_SEVERITY, top)
                capture = self.capture
                for finding in findings:
                    span.add_event(
                        semconv.EVENT_FINDING,
                        {
                            "agentguard.finding.rule_id": finding.rule_id,
                            "agentguard.finding.category": finding.category,
                            "agentguard.finding.severity": finding.severity,
                            "agentguard.finding.action": finding.action,
                            "agentguard.finding.title": finding.title,
                            "agentguard.finding.evidence": capture.evidence(finding.evidence),
                        },
                    )
        except Exception as exc:
            internal_error("emit span", exc)
        for finding in findings:
            self.findings_emitted += 1
            for sink in self.sinks:
                try:
                    sink(finding)
                except Exception as exc:
                    internal_error(f"finding sink {getattr(sink, '__name__', sink)!s}", exc)

    # -- operations ------------------------------------------------------------------------
    def _open_span(self, frame: Frame, name: str, attributes: dict[str, Any],
                   kind: SpanKind = SpanKind.INTERNAL) -> trace.Span:
        """Start a span under the innermost agentguard span of ``frame``.

        Another instrumentor may have made its own span current inside ours (OpenLLMetry does,
        from LangChain callbacks); agentguard's spans still nest under agentguard's, so its own
        export is always one complete tree, and the interleaved span is kept as a link.
        """
        ours = frame.span
        current = current_context().get(_SPAN_KEY) if _SPAN_KEY is not None else None
        if not isinstance(current, trace.Span):
            current = trace.INVALID_SPAN  # as trace.get_current_span() answers
        links = None
        parent = current
        if ours is not None and current is not ours:
            parent = ours
            foreign = current.get_span_context()
            if foreign.is_valid:
                links = [trace.Link(foreign, {semconv.AG_LINK_REASON: "interleaved"})]
        light = self._light
        if light is not None:
            return light.start_child(name, parent.get_span_context(), kind, attributes, links)
        return self.tracer.start_span(name, context=trace.set_span_in_context(parent), kind=kind,
                                      attributes=attributes, links=links)

    def _base_attributes(self, frame: Frame, operation: str) -> dict[str, Any]:
        attrs: dict[str, Any] = {semconv.GEN_AI_OPERATION_NAME: operation}
        conv = frame.conversation
        if conv is not None:
            attrs[semconv.GEN_AI_CONVERSATION_ID] = conv.id
        if frame.turn is not None:
            attrs[semconv.AG_TURN_INDEX] = frame.turn
        return attrs

    def _judge_start(self, op: Operation, event: Any) -> None:
        op.event = event
        verdict = self.evaluate(event)
        op.verdict = verdict
        if verdict.findings and not verdict.blocked:
            self.emit(verdict, op.span)

    def _stop_if_blocked(self, op: Operation,
                         blocked: Callable[[Finding], ToolCallBlocked]) -> None:
        """End ``op`` with its blocking verdict (its findings emitted) and raise
        ``blocked(finding)``; nothing when the verdict does not block."""
        if not op.verdict.blocked:
            return
        finding = op.verdict.blocking_finding()
        op.span.set_status(Status(StatusCode.ERROR, "blocked by agentguard"))
        op._finish(op.verdict)
        assert finding is not None
        raise blocked(finding)

    def judge_turn(self, op: Operation, text: str) -> None:
        """Judge a new user turn on ``op`` (its span carries the findings); a block ends ``op``
        and raises :class:`ModelCallBlocked`: the message must not reach the model. Integrations
        call it for user messages an operation reads other than through its start (a graph run
        nested in another reading what was written into its thread)."""
        event = Turn.model_construct(context=op.event_context(), text=text)
        verdict = self.evaluate(event)
        if not verdict.findings:
            return
        if verdict.blocked:
            op.verdict = verdict
            self._stop_if_blocked(op, ModelCallBlocked)
        self.emit(verdict, op.span)

    def start_agent(
        self,
        name: str,
        *,
        conversation_id: str | None = None,
        turn_text: str | None = None,
        attributes: dict[str, Any] | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> Operation:
        """Open an ``invoke_agent`` span. A top-level invocation with a new user message is a turn.

        The conversation comes from :func:`agentguard.conversation`, else ``conversation_id`` (a
        framework's thread id), else a fresh id for this invocation alone. ``kind``: ``CLIENT``
        for an agent a remote service runs (Bedrock Agents), as the GenAI conventions ask.
        """
        parent = current_frame()
        top_level = parent.agent is None
        conv = parent.conversation
        if conv is None:
            conv = self.conversations.get(conversation_id) if conversation_id else \
                self.conversations.new()
        turn = parent.turn
        new_turn = top_level and turn_text is not None
        if new_turn:
            turn = conv.next_turn()
        elif turn is None and top_level and conv.turns:
            # A run that goes on without a new user message (a graph resumed after an interrupt,
            # re-invoked from its checkpoint) is still in the conversation's latest turn.
            turn = conv.turns
        frame = parent.replace(conversation=conv, turn=turn)
        attrs = self._base_attributes(frame, semconv.OP_INVOKE_AGENT)
        attrs[semconv.GEN_AI_AGENT_NAME] = name
        if conv.user is not None:
            attrs[semconv.AG_CONVERSATION_USER] = conv.user
        if new_turn and turn_text is not None and self.capture.enabled:
            captured = self.content(turn_text)
            if captured is not None:
                attrs[semconv.AG_TURN_TEXT] = captured
        if attributes:
            attrs.update(attributes)
        span = self._open_span(parent, f"{semconv.OP_INVOKE_AGENT} {name}", attrs, kind)
        op = Operation(self, "agent", name, span, frame)
        frame.agent = op
        if new_turn and self.has_stages:
            self.judge_turn(op, turn_text or "")
        return op

    def start_tool(
        self,
        name: str,
        *,
        call_id: str | None = None,
        arguments: Any = None,
        attributes: dict[str, Any] | None = None,
        unknown: bool = False,
    ) -> Operation:
        """Open an ``execute_tool`` span and judge the call; raises :class:`ToolCallBlocked`.
        ``unknown``: the model asked for a tool the framework does not have (nothing will run)."""
        parent = current_frame()
        attrs = self._base_attributes(parent, semconv.OP_EXECUTE_TOOL)
        attrs[semconv.GEN_AI_TOOL_NAME] = name
        attrs[semconv.AG_THREAD_NATIVE_ID] = current_tid()
        if call_id is not None:
            attrs[semconv.GEN_AI_TOOL_CALL_ID] = call_id
        if unknown:
            attrs[semconv.AG_TOOL_UNKNOWN] = True
        if arguments is not None and self.capture.enabled:
            captured = self.content(arguments)
            if captured is not None:
                attrs[semconv.GEN_AI_TOOL_CALL_ARGUMENTS] = captured
        if attributes:
            attrs.update(attributes)
        span = self._open_span(parent, f"{semconv.OP_EXECUTE_TOOL} {name}", attrs)
        frame = parent.replace()
        op = Operation(self, "tool", name, span, frame)
        op.call_id = call_id
        op.arguments = arguments
        op.unknown = unknown
        frame.tool = op
        if self.has_stages:
            quick = self._quick_allow
            if quick is not None:
                conv = parent.conversation
                try:
                    if quick(name, self.agent_name, arguments,
                             conv.id if conv is not None else None, time.time()):
                        return op
                except Exception as exc:
                    internal_error("policy quick check", exc)
            event = self.call_event(op)
            self._judge_start(op, event)
            self._stop_if_blocked(op, ToolCallBlocked)
        return op

    def call_event(self, op: Operation) -> ToolCall:
        """The ``ToolCall`` event (phase ``call``) of tool operation ``op``."""
        event = trusted(ToolCall, {
            "context": None, "timestamp": time.time(), "kind": "tool_call", "tool": op.name,
            "call_id": op.call_id, "arguments": op.arguments, "result": None, "error": None,
            "phase": "call", "unknown": op.unknown,
        })
        event.__dict__["context"] = op.event_context()
        return event

    def start_chat(
        self,
        *,
        provider: str | None,
        model: str | None,
        messages: Sequence[dict[str, Any]] = (),
        parameters: dict[str, Any] | None = None,
        attributes: dict[str, Any] | None = None,
        turn_text: str | None = None,
        operation: str = semconv.OP_CHAT,
    ) -> Operation:
        """Open a ``chat {model}`` span for a model call and judge the request; a block raises
        :class:`ModelCallBlocked` (the caller must not send the request). ``operation``: the
        GenAI operation name of a model call that is not a chat (``embeddings``), which also
        names the span.

        ``turn_text``: the request ends with this new message from the user. In a conversation
        (:func:`agentguard.conversation`) outside any agent invocation, as in a hand-written
        Converse tool loop, that starts a turn: numbered like an agent's, judged as a ``Turn``
        (direct injection, policy), and the turn of every later call in the block until the
        next one.
        """
        parent = current_frame()
        new_turn = False
        if turn_text and parent.agent is None and parent.tool is None and \
                parent.conversation is not None:
            turn, new_turn = parent.conversation.loop_turn(turn_text, len(messages))
            # The conversation block's own frame: the tools this loop runs next, outside the
            # model call, belong to the same turn.
            parent.turn = turn
        attrs = self._base_attributes(parent, operation)
        if new_turn and turn_text is not None and self.capture.enabled:
            captured = self.content(turn_text)
            if captured is not None:
                attrs[semconv.AG_TURN_TEXT] = captured
        if provider:
            attrs[semconv.GEN_AI_PROVIDER_NAME] = provider
        if model:
            attrs[semconv.GEN_AI_REQUEST_MODEL] = model
        params = parameters or {}
        if params.get("temperature") is not None:
            attrs[semconv.GEN_AI_REQUEST_TEMPERATURE] = float(params["temperature"])
        if params.get("max_tokens") is not None:
            attrs[semconv.GEN_AI_REQUEST_MAX_TOKENS] = int(params["max_tokens"])
        if messages and self.capture.enabled:
            captured = self.content(input_messages(messages))
            if captured is not None:
                attrs[semconv.GEN_AI_INPUT_MESSAGES] = captured
        if attributes:
            attrs.update(attributes)
        span = self._open_span(parent, f"{operation} {model or 'unknown'}", attrs,
                               SpanKind.CLIENT)
        op = Operation(self, "chat", model or "unknown", span, parent.replace())
        if self.has_stages:
            event = ModelCall.model_construct(
                context=op.event_context(), provider=provider, model=model,
                messages=_messages(messages), output=None, parameters=dict(params),
                input_tokens=None, output_tokens=None, finish_reasons=[], phase="request",
                timestamp=time.time(),
            )
            if new_turn and turn_text is not None:
                self.judge_turn(op, turn_text)
            self._judge_start(op, event)
            self._stop_if_blocked(op, ModelCallBlocked)
        return op

    def start_retrieval(
        self,
        name: str,
        *,
        query: str,
        attributes: dict[str, Any] | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> Operation:
        """Open a ``retrieval {name}`` span for a retriever lookup (``kind`` ``CLIENT`` for a
        request to a remote retrieval service, such as a Bedrock knowledge base)."""
        parent = current_frame()
        attrs = self._base_attributes(parent, semconv.OP_RETRIEVAL)
        attrs[semconv.AG_RETRIEVER_NAME] = name
        if self.capture.enabled:
            captured = self.content(query)
            if captured is not None:
                attrs[semconv.AG_RETRIEVAL_QUERY] = captured
        if attributes:
            attrs.update(attributes)
        span = self._open_span(parent, f"{semconv.OP_RETRIEVAL} {name}", attrs, kind)
        op = Operation(self, "retrieval", name, span, parent.replace())
        if self.has_stages:
            event = Retrieval.model_construct(
                context=op.event_context(), retriever=name, query=query, documents=[],
                phase="request", timestamp=time.time(),
            )
            self._judge_start(op, event)
            self._stop_if_blocked(op, ToolCallBlocked)
        return op

    def context_here(self) -> EventContext:
        """The context of whatever is running in this thread or task right now (for sensors).

        Inside a tool call that is the tool's span; else the innermost agent operation; else just
        the agent identity, pid and thread.
        """
        frame = current_frame()
        op = frame.tool or frame.agent
        if op is not None:
            return op.event_context()
        conv = frame.conversation
        return EventContext.model_construct(
            agent=self.config.service_name,
            conversation_id=conv.id if conv is not None else None,
            user=conv.user if conv is not None else None,
            turn=frame.turn, trace_id=None, span_id=None, tool=None, tool_call_id=None,
            pid=current_pid(), tid=current_tid(),
        )

    def emit_event(self, event: _EventBase, span: trace.Span | None = None) -> Verdict:
        """Judge an event that has no span of its own (sensors); findings land on ``span``, else
        on the current span."""
        verdict = self.evaluate(event)
        if verdict.findings:
            self.emit(verdict, span if span is not None else trace.get_current_span())
        return verdict

    def start_cloud_call(
        self,
        service: str,
        operation: str,
        *,
        provider: str = "aws",
        region: str | None = None,
        resource: dict[str, str] | None = None,
        parameters: dict[str, Any] | None = None,
        name: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> Operation:
        """Open a CLIENT span for a cloud API call and judge the call before it is sent.

        The span nests under the enclosing tool or agent operation, and the ``CloudCall`` event
        names that tool in its context. A block raises :class:`CloudCallBlocked` (a
        :class:`ToolCallBlocked`): the caller must not send the request. Finish with
        :meth:`Operation.end_cloud_call`.
        """
        from agentguard.events import CloudCall
        from agentguard.findings import CloudCallBlocked

        parent = current_frame()
        attrs: dict[str, Any] = {semconv.CLOUD_PROVIDER: provider}
        conv = parent.conversation
        if conv is not None:
            attrs[semconv.GEN_AI_CONVERSATION_ID] = conv.id
        if parent.turn is not None:
            attrs[semconv.AG_TURN_INDEX] = parent.turn
        if region:
            attrs[semconv.CLOUD_REGION] = region
        if attributes:
            attrs.update(attributes)
        call = f"{service}.{operation}"
        span = self._open_span(parent, name or f"{provider}.{call}", attrs, SpanKind.CLIENT)
        op = Operation(self, "cloud", call, span, parent.replace())
        # Built even without stages: end_cloud_call reads the provider from it.
        event = CloudCall.model_construct(
            context=EventContext(), provider=provider, service=service, operation=operation,
            region=region, resource=dict(resource) if resource else {},
            parameters=dict(parameters) if parameters else {}, status=None, error=None,
            timestamp=time.time(),
        )
        op.event = event
        if self.has_stages:
            event.context = op.event_context()
            self._judge_start(op, event)
            self._stop_if_blocked(op, lambda finding: CloudCallBlocked(finding, call))
        return op


