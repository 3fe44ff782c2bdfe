"""Light spans for the tracer agentguard owns: cheap to record, converted when exported.

An SDK span validates, locks and copies on every call; on a tool call that is most of what
tracing costs. When agentguard owns the tracer provider (the application installed none), its
spans are these instead: a few slots written on the agent's thread, turned into SDK
``ReadableSpan`` objects (with the SDK's attribute limits and validation) by the export thread.
They implement the whole ``opentelemetry.trace.Span`` API, so code that gets one from
``trace.get_current_span()`` (the application, another instrumentor) can use it as any span.

Content attributes may be :class:`PendingContent`: text serialised on the agent's thread and
redacted in the export thread, so secret redaction costs the agent nothing and still happens
before anything leaves the process.
"""

from __future__ import annotations

import random
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import Attributes

__all__ = ["LightSpan", "LightTracer", "PendingContent", "to_readable"]

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_UNSET = Status(StatusCode.UNSET)
_getrandbits = random.getrandbits


class PendingContent:
    """An attribute value still to be finished (redacted and cut) in the export thread: the text
    serialised on the agent's thread, or a snapshot of immutable values ``finish`` serialises."""

    __slots__ = ("complete", "finish", "text")

    def __init__(self, text: Any, complete: bool, finish: Callable[[Any, bool], str]) -> None:
        self.text = text
        self.complete = complete
        self.finish = finish

    def resolve(self) -> str:
        return self.finish(self.text, self.complete)


class LightSpan(trace.Span):
    """A recording span that only stores what it is told until it is exported."""

    __slots__ = (
        "_context",
        "_end_time",
        "_on_end",
        "attributes",
        "events",
        "events_dropped",
        "kind",
        "links",
        "name",
        "parent",
        "sensor_state",
        "start_time",
        "status",
        "tracer",
    )

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, Any],
        links: Sequence[Link],
        start_time: int,
        tracer: LightTracer,
    ) -> None:
        self.name = name
        self._context = context
        self.parent = parent
        self.kind = kind
        self.attributes = attributes
        self.links = links
        # (name, attributes, time in ns): SDK events are built in the export thread. At most the
        # tracer's event limit are held, the newest (as an SDK span keeps them), the rest counted.
        self.events: deque[tuple[str, Any, int]] | None = None
        self.events_dropped = 0
        self.status = _UNSET
        self.start_time = start_time
        self._end_time: int | None = None
        self.tracer = tracer
        # What the runtime sensor has written on this span (its SpanState), kept with the span.
        self.sensor_state: Any = None

    # -- the Span API ----------------------------------------------------------------------
    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attribute(self, key: str, value: Any) -> None:
        if self._end_time is None:
            self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self._end_time is None:
            self.attributes.update(attributes)

    def add_event(self, name: str, attributes: Attributes = None,
                  timestamp: int | None = None) -> None:
        if self._end_time is not None:
            return
        events = self.events
        if events is None:
            events = self.events = deque(maxlen=self.tracer.limits.max_events)
        elif len(events) == events.maxlen:
            self.events_dropped += 1
        events.append((name, dict(attributes) if attributes else None,
                       timestamp if timestamp is not None else time.time_ns()))

    def add_link(self, context: SpanContext, attributes: Attributes = None) -> None:
        if self._end_time is None and context.is_valid:
            self.links = [*self.links, Link(context, attributes)]

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end_time is not None:
            return
        if isinstance(status, StatusCode):
            status = Status(status, description)
        # As in the SDK: OK is final, and UNSET never overrides a status that was set.
        if self.status.status_code is StatusCode.OK or status.status_code is StatusCode.UNSET:
            return
        self.status = status

    def record_exception(self, exception: BaseException, attributes: Attributes = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        stacktrace = "".join(traceback.format_exception(type(exception), value=exception,
                                                        tb=exception.__traceback__))
        event_attributes: dict[str, Any] = {
            "exception.type": type(exception).__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": stacktrace,
            "exception.escaped": str(escaped),
        }
        if attributes:
            event_attributes.update(attributes)
        self.add_event("exception", event_attributes, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            return
        self._end_time = end_time if end_time is not None else time.time_ns()
        self.tracer.on_end(self)

    @property
    def end_time(self) -> int | None:
        return self._end_time

    def __repr__(self) -> str:
        ctx = self._context
        return f"LightSpan(name={self.name!r}, trace_id={ctx.trace_id:032x}, " \
               f"span_id={ctx.span_id:016x})"


class LightTracer(trace.Tracer):
    """Starts :class:`LightSpan` objects and hands finished ones to a span processor.

    Sampling is the SDK default, parent-based always-on: a span whose parent was not sampled is
    not recorded.
    """

    def __init__(self, resource: Resource, scope: InstrumentationScope,
                 on_end: Callable[[Any], None], limits: SpanLimits | None = None) -> None:
        self.resource = resource
        self.scope = scope
        self.on_end = on_end
        self.limits = limits or SpanLimits()

    def start_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        return self.start_child(name, trace.get_current_span(context).get_span_context(), kind,
                                dict(attributes) if attributes else {}, links, start_time)

    def start_child(self, name: str, parent: SpanContext, kind: SpanKind,
                    attributes: dict[str, Any], links: Sequence[Link] | None,
                    start_time: int | None = None) -> trace.Span:
        """``start_span`` for callers that already hold the parent's context and hand over
        their attribute dict (agentguard's own hot path)."""
        if parent.is_valid:
            if not parent.trace_flags.sampled:
                return trace.NonRecordingSpan(SpanContext(
                    parent.trace_id, _getrandbits(64) or 1, False, _NOT_SAMPLED,
                    parent.trace_state))
            span_context = SpanContext(parent.trace_id, _getrandbits(64) or 1, False, _SAMPLED,
                                       parent.trace_state)
            parent_context: SpanContext | None = parent
        else:
            span_context = SpanContext(_getrandbits(128) or 1, _getrandbits(64) or 1, False,
                                       _SAMPLED, None)
            parent_context = None
        return LightSpan(name, span_context, parent_context, kind, attributes,
                         [link for link in links if link.context.is_valid] if links else (),
                         start_time if start_time is not None else time.time_ns(), self)

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        with trace.use_span(span, end_on_exit=end_on_exit, record_exception=record_exception,
                            set_status_on_exception=set_status_on_exception) as current:
            yield current


_PRIMITIVE = (str, bool, int, float)


def _attributes(values: dict[str, Any], max_count: int | None, max_length: int | None) -> Any:
    """Attributes for the SDK span: a plain dict when every value is already valid (the usual
    case: agentguard's own), else the SDK's validating, bounded mapping."""
    plain: dict[str, Any] = {}
    valid = max_count is None or len(values) <= max_count
    for key, value in values.items():
        kind = type(value)
        if kind is PendingContent:
            value = value.resolve()
            kind = str
        if kind not in _PRIMITIVE or (
                max_length is not None and kind is str and len(value) > max_length):
            valid = False
        plain[key] = value
    if valid:
        return plain
    from opentelemetry.attributes import BoundedAttributes

    return BoundedAttributes(max_count, plain, immutable=True, max_value_len=max_length)


def to_readable(span: LightSpan) -> ReadableSpan:
    """The SDK form of a finished light span (pending content resolved, SDK limits applied)."""
    tracer = span.tracer
    limits = tracer.limits
    attributes = _attributes(span.attributes, limits.max_span_attributes,
                             limits.max_span_attribute_length)
    events: Sequence[Event] = ()
    if span.events:
        events = [
            Event(name,
                  _attributes(event_attributes or {}, limits.max_event_attributes,
                              limits.max_attribute_length),
                  timestamp, None)
            for name, event_attributes, timestamp in span.events
        ]
        if span.events_dropped:
            # A BoundedList is how a ReadableSpan tells its exporter how many events it dropped.
            bounded: BoundedList[Event] = BoundedList(None)
            bounded.extend(events)
            bounded.dropped = span.events_dropped
            events = bounded
    links = span.links
    if limits.max_links is not None and len(links) > limits.max_links:
        links = links[: limits.max_links]
    return ReadableSpan(
        name=span.name,
        context=span.get_span_context(),
        parent=span.parent,
        resource=tracer.resource,
        attributes=attributes,
        events=events,
        links=links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=tracer.scope,
    )
