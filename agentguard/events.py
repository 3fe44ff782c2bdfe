"""The typed events every sensor and integration produces, and the context each one carries.

An integration translates a framework call into one of these; the Guard judges it. Events built
inside the process from trusted values are constructed without re-validation (``model_construct``)
on hot paths; events read from files or the network go through :func:`parse_event`.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "CloudCall",
    "DnsLookup",
    "Document",
    "Event",
    "EventContext",
    "FileOpen",
    "Message",
    "ModelCall",
    "ModelLoad",
    "ModuleLoad",
    "NetConnect",
    "ProcessExec",
    "Retrieval",
    "ToolCall",
    "Turn",
    "parse_event",
    "trusted",
]


class EventContext(BaseModel):
    """Where an event happened: agent, conversation, turn, trace, enclosing tool, process and thread."""

    model_config = ConfigDict(frozen=True)

    agent: str | None = None
    conversation_id: str | None = None
    user: str | None = None
    turn: int | None = None
    trace_id: str | None = None
    span_id: str | None = None
    tool: str | None = None
    tool_call_id: str | None = None
    pid: int = 0
    tid: int = 0


class _EventBase(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    context: EventContext = Field(default_factory=EventContext)
    timestamp: float = Field(default_factory=time.time)


class Message(BaseModel):
    """One chat message as the model saw it or produced it.

    ``content`` is the text of the message (for the model's answer: what it told the caller);
    ``reasoning`` is the reasoning (thinking) the model wrote before it, when the provider
    returned it, ``"<redacted_reasoning>"`` for a block it returned only encrypted.
    """

    role: str
    content: str = ""
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None
    reasoning: str = ""


class Document(BaseModel):
    """A retrieved passage: untrusted content the model will read."""

    id: str | None = None
    source: str | None = None
    content: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


class Turn(_EventBase):
    """A new user message entering an agent: the start of a turn."""

    kind: Literal["turn"] = "turn"
    text: str = ""
    role: str = "user"


class ModelCall(_EventBase):
    """A call to a chat model: the messages it was given and, once it returned, what it said."""

    kind: Literal["model_call"] = "model_call"
    provider: str | None = None
    model: str | None = None
    messages: list[Message] = Field(default_factory=list)
    output: list[Message] | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reasons: list[str] = Field(default_factory=list)
    phase: Literal["request", "response"] = "request"


class Retrieval(_EventBase):
    """A retriever lookup and the documents it returned."""

    kind: Literal["retrieval"] = "retrieval"
    retriever: str | None = None
    query: str = ""
    documents: list[Document] = Field(default_factory=list)
    phase: Literal["request", "response"] = "request"


class ToolCall(_EventBase):
    """A tool call: judged before the tool runs (``phase="call"``) and again with its result.

    ``unknown``: the model called a tool the framework does not have (a LangGraph ``ToolNode``
    lacking it); nothing runs, and the framework answers the model with an error.
    ``error`` (result phase): the call failed. The exception's type and message
    (``"PermissionError: [Errno 13] Permission denied: ..."``), also when a framework handler
    turned it into the answer in ``result``; or the text of an error message the tool answered
    with. At most 4,096 characters.
    """

    kind: Literal["tool_call"] = "tool_call"
    tool: str
    call_id: str | None = None
    arguments: dict[str, Any] | str | None = None
    result: Any = None
    error: str | None = None
    phase: Literal["call", "result"] = "call"
    unknown: bool = False


class CloudCall(_EventBase):
    """A cloud API call (service, operation, the resource it touches)."""

    kind: Literal["cloud_call"] = "cloud_call"
    provider: str = "aws"
    service: str
    operation: str
    region: str | None = None
    resource: dict[str, str] = Field(default_factory=dict)
    parameters: dict[str, Any] = Field(default_factory=dict)
    status: int | None = None
    error: str | None = None


class ProcessExec(_EventBase):
    """A process started (or about to start)."""

    kind: Literal["process_exec"] = "process_exec"
    executable: str
    argv: list[str] = Field(default_factory=list)
    pid: int | None = None
    ppid: int | None = None
    cwd: str | None = None


class NetConnect(_EventBase):
    """An outbound connection (or a datagram sent) to an address and port."""

    kind: Literal["net_connect"] = "net_connect"
    address: str
    port: int | None = None
    family: str | None = None
    protocol: str | None = None
    hostname: str | None = None


class DnsLookup(_EventBase):
    """A name resolution."""

    kind: Literal["dns_lookup"] = "dns_lookup"
    hostname: str
    port: int | None = None


class FileOpen(_EventBase):
    """A file opened for reading or writing."""

    kind: Literal["file_open"] = "file_open"
    path: str
    mode: str = "r"
    write: bool = False


class ModuleLoad(_EventBase):
    """A Python module imported, with the distribution that ships it."""

    kind: Literal["module_load"] = "module_load"
    module: str
    distribution: str | None = None
    version: str | None = None


class ModelLoad(_EventBase):
    """A model artifact loaded from disk or a hub."""

    kind: Literal["model_load"] = "model_load"
    path: str | None = None
    format: str | None = None
    sha256: str | None = None
    size: int | None = None
    source: str | None = None
    model_id: str | None = None


Event = Annotated[
    Turn | ModelCall | Retrieval | ToolCall | CloudCall | ProcessExec | NetConnect | DnsLookup
    | FileOpen | ModuleLoad | ModelLoad,
    Field(discriminator="kind"),
]

_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(data: dict[str, Any] | str | bytes) -> Event:
    """Validate an event from a dict or JSON text; raises ``pydantic.ValidationError``."""
    if isinstance(data, (str, bytes)):
        return _EVENT_ADAPTER.validate_json(data)
    return _EVENT_ADAPTER.validate_python(data)


_M = TypeVar("_M", bound=BaseModel)
_set = object.__setattr__


def trusted(cls: type[_M], values: dict[str, Any]) -> _M:
    """A model built from values this process produced itself, without validation or defaults.

    ``model_construct`` still walks every field to fill defaults, which costs more than a whole
    policy check on the hot path. ``values`` must name every field of ``cls`` in declaration
    order (``kind`` included); the test suite checks the result equals a validated model.
    """
    obj = object.__new__(cls)
    _set(obj, "__dict__", values)
    fields = _FIELD_SETS.get(cls)
    if fields is None:
        # Every field is set, so pydantic's later `fields_set.add(name)` never changes this one
        # set, which the instances of a class can therefore share.
        fields = _FIELD_SETS[cls] = set(cls.model_fields)
    _set(obj, "__pydantic_fields_set__", fields)
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


_FIELD_SETS: dict[type[BaseModel], set[str]] = {}
