"""The policy file format as pydantic models: what a file may contain, and the first line of checks.

These models check structure and types. What needs the whole document (list and macro names,
field paths, regular-expression safety, rule ids) is checked by the compiler, which reports
problems the same way: file, line, field path and a hint.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from agentguard import events as _events
from agentguard.policy._errors import (
    MAX_ISSUES,
    PolicyError,
    PolicyIssue,
    did_you_mean,
    format_path,
)
from agentguard.policy._yaml import Marks

__all__ = [
    "AFTER_FLAGGED",
    "EVENT_KINDS",
    "KIND_FIELDS",
    "RATE_KEYS",
    "TRANSFORMS",
    "After",
    "Bounds",
    "Condition",
    "ListDef",
    "MacroDef",
    "Match",
    "Override",
    "PolicyDocument",
    "RateLimit",
    "Rule",
    "policy_json_schema",
    "validate_document",
]

Scalar = str | int | float | bool

# Event kind → the event model; a rule's field paths are checked against these.
_EVENT_MODELS: dict[str, type[BaseModel]] = {
    model.model_fields["kind"].default: model
    for model in (_events.Turn, _events.ModelCall, _events.Retrieval, _events.ToolCall,
                  _events.CloudCall, _events.ProcessExec, _events.NetConnect, _events.DnsLookup,
                  _events.FileOpen, _events.ModuleLoad, _events.ModelLoad)
}
EVENT_KINDS: tuple[str, ...] = tuple(_EVENT_MODELS)
KIND_FIELDS: dict[str, frozenset[str]] = {
    kind: frozenset(model.model_fields) for kind, model in _EVENT_MODELS.items()
}
CONTEXT_FIELDS: frozenset[str] = frozenset(_events.EventContext.model_fields)

TRANSFORMS: dict[str, str] = {
    "basename": "the last component of a path ('/usr/bin/curl' → 'curl')",
    "dirname": "everything before the last '/' of a path",
    "email_domain": "the domain of each e-mail address in the value, lower case "
                    "('Ops <ops@Corp.example>' → 'corp.example'); values without one are dropped",
    "lower": "lower case",
    "normpath": "a normalised path ('/a/./b/../c' → '/a/c', '//x' → '/x')",
    "url_host": "the host of a URL, lower case ('https://Example.com:8443/x' → 'example.com'); "
                "values that are not URLs are dropped",
}
RATE_KEYS = ("conversation", "agent", "user", "tool", "global")
AFTER_FLAGGED = "untrusted_content_flagged"
PHASES = ("call", "result", "request", "response")

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
RULE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
_MAX_ITEMS = 10_000
_MAX_TEXT = 4096
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_DURATION = 7 * 86400.0


def _fail(message: str, hint: str | None = None) -> PydanticCustomError:
    return PydanticCustomError("policy", "{message}", {"message": message, "hint": hint})


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int) and value.bit_length() > 1024:
        # Beyond every float (and maybe beyond what Python turns into text).
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value[:60]!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


# -- value validators (one clear error each instead of pydantic's per-union-member errors) ---------

_NAN_HINT = "NaN equals nothing, not even itself: the test could never hold"


# Integers in a policy have at most about 3900 digits (Python writes ints as text up to 4300).
_MAX_INT_BITS = 13_000


def _odd_number(value: Any, what: str) -> None:
    if isinstance(value, float) and value != value:
        raise _fail(f"{what} cannot be NaN", _NAN_HINT)
    if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
        raise _fail(f"{what} is too large a number; got {_describe(value)}")


def _scalar(value: Any) -> Scalar:
    _odd_number(value, "a value")
    if isinstance(value, (str, int, float)) and not (isinstance(value, str) and
                                                      len(value) > _MAX_TEXT):
        return value
    if isinstance(value, str):
        raise _fail(f"a value is longer than {_MAX_TEXT} characters")
    raise _fail(f"expected a string, number or boolean; got {_describe(value)}")


def _value_list(value: Any) -> list[Scalar] | str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        if len(value) > _MAX_ITEMS:
            raise _fail(f"more than {_MAX_ITEMS} values")
        for item in value:
            if not isinstance(item, (str, int, float)) or (isinstance(item, str) and \
                    len(item) > _MAX_TEXT):
                raise _fail(f"list items must be strings, numbers or booleans; got {_describe(item)}")
            _odd_number(item, "a list item")
        return list(value)
    raise _fail(f"expected a list of values or the name of a list; got {_describe(value)}",
                "write [a, b, c], or name a list defined under 'lists:'")


def _pattern_set(value: Any) -> list[str]:
    items = [value] if isinstance(value, (str, int, float)) else value
    if not isinstance(items, list) or not items:
        raise _fail(f"expected a string or a non-empty list of strings; got {_describe(value)}")
    if len(items) > _MAX_ITEMS:
        raise _fail(f"more than {_MAX_ITEMS} patterns")
    out: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise _fail(f"patterns must be strings; got {_describe(item)}")
        text = str(item)
        if len(text) > _MAX_TEXT:
            raise _fail(f"a pattern is longer than {_MAX_TEXT} characters")
        out.append(text)
    return out


def _choices(name: str, allowed: tuple[str, ...] | dict[str, str]) -> Callable[[Any], tuple[str, ...]]:
    options = tuple(allowed)

    def check(value: Any) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise _fail(f"expected one {name} or a non-empty list of them; got {_describe(value)}",
                        "choose from " + ", ".join(options))
        out = []
        for item in items:
            if not isinstance(item, str) or item not in options:
                raise _fail(f"unknown {name} {item!r}",
                            did_you_mean(item, options) if isinstance(item, str) else None
                            or "choose from " + ", ".join(options))
            out.append(item)
        return tuple(dict.fromkeys(out))

    return check


def _globs(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    hint = "patterns use * ? [abc] like shell globs, e.g. 'db_*'"
    if not isinstance(items, list) or not items:
        raise _fail(f"expected a name pattern or a non-empty list of them; got {_describe(value)}",
                    hint)
    for item in items:
        if not isinstance(item, str) or not 0 < len(item) <= 512:
            raise _fail(f"name patterns must be non-empty strings (at most 512 characters); got "
                        f"{_describe(item)}", hint)
    if len(items) > 1000:
        raise _fail("more than 1000 patterns")
    return tuple(items)


def parse_duration(value: Any) -> float:
    """``"250ms"``, ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"`` or a number of seconds → seconds."""
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        found = _DURATION.match(value)
        if found:
            seconds = float(found.group(1)) * _UNITS[found.group(2)]
    if seconds is None:
        raise _fail(f"expected a duration; got {_describe(value)}",
                    "write a number of seconds or e.g. '500ms', '30s', '5m', '2h', '1d'")
    if not 0 < seconds <= MAX_DURATION:
        raise _fail(f"a duration must be more than 0 and at most 7 days; got {value!r}")
    return seconds


def _after(value: Any) -> Any:
    items = value if isinstance(value, list) else [value]
    out: list[Any] = []
    for item in items:
        if isinstance(item, str):
            if item != AFTER_FLAGGED:
                raise _fail(f"unknown sequence condition {item!r}",
                            did_you_mean(item, [AFTER_FLAGGED]) or
                            f"write '{AFTER_FLAGGED}' or a mapping such as {{tool: fetch_url}}")
            out.append({AFTER_FLAGGED: True})
        else:
            out.append(item)
    return out


_DURATION_SCHEMA = {"anyOf": [
    {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DURATION},
    {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)\s*$"},
]}
_STR_OR_LIST = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"},
                                                "minItems": 1}]}
_SCALAR_SCHEMA = {"type": ["string", "number", "boolean"]}

Duration = Annotated[float, PlainValidator(parse_duration, json_schema_input_type=str | float)]
PatternSet = Annotated[list[str], PlainValidator(_pattern_set, json_schema_input_type=str | list[str])]
ValueList = Annotated[list[Scalar] | str,
                      PlainValidator(_value_list, json_schema_input_type=str | list[Scalar])]
ScalarValue = Annotated[Scalar, PlainValidator(_scalar, json_schema_input_type=Scalar)]
Globs = Annotated[tuple[str, ...], PlainValidator(_globs, json_schema_input_type=str | list[str])]
Kinds = Annotated[tuple[str, ...], PlainValidator(_choices("event kind", EVENT_KINDS),
                                                  json_schema_input_type=str | list[
                                                      Literal[EVENT_KINDS]])]  # type: ignore[valid-type]
Transforms = Annotated[tuple[str, ...], PlainValidator(
    _choices("transform", TRANSFORMS),
    json_schema_input_type=str | list[Literal[tuple(TRANSFORMS)]])]  # type: ignore[misc]
RateKeys = Annotated[tuple[str, ...], PlainValidator(
    _choices("rate-limit key", RATE_KEYS),
    json_schema_input_type=str | list[Literal[RATE_KEYS]])]  # type: ignore[valid-type]

Severity = Literal["info", "low", "medium", "high", "critical"]
RuleAction = Literal["alert", "block"]
RuleCategory = Literal["policy", "baseline", "injection", "taint", "runtime", "supply-chain"]


class _Model(BaseModel):
    """Base of every policy model: unknown keys are refused with a did-you-mean hint."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)
    _keys: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def keys(cls) -> frozenset[str]:
        if not cls.__dict__.get("_keys_built"):
            cls._keys = frozenset(f.alias or name for name, f in cls.model_fields.items())
            cls._keys_built = True  # type: ignore[attr-defined]
        return cls._keys

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = cls.keys()
            if allowed.issuperset(data):
                return data
            for key in data:
                if key not in allowed:
                    raise PydanticCustomError(
                        "unknown_field", "unknown field '{field}'",
                        {"field": key, "hint": did_you_mean(str(key), allowed) or
                         "allowed here: " + ", ".join(sorted(allowed))})
        return data


class Bounds(_Model):
    """Numeric bounds on a length or a record count; every bound given must hold."""

    equals: int | None = Field(None, ge=0, description="exactly this many")
    gt: float | None = Field(None, allow_inf_nan=False, description="more than")
    gte: float | None = Field(None, allow_inf_nan=False, description="at least")
    lt: float | None = Field(None, allow_inf_nan=False, description="fewer than")
    lte: float | None = Field(None, allow_inf_nan=False, description="at most")

    @model_validator(mode="after")
    def _some_bound(self) -> Bounds:
        if all(v is None for v in (self.equals, self.gt, self.gte, self.lt, self.lte)):
            raise _fail("give at least one bound", "e.g. {gt: 1000}")
        return self


_FIELD_OPS = ("equals", "not_equals", "in", "not_in", "contains", "startswith", "endswith",
              "glob", "regex", "cidr", "gt", "gte", "lt", "lte", "exists", "length", "count")
_SHAPES = ("all", "any", "not", "macro", "field")
# Each operator and the attribute holding it ('in' is a Python keyword).
_OP_ATTRIBUTES = tuple((op, "in_" if op == "in" else op) for op in _FIELD_OPS)


class Condition(_Model):
    """A test on an event: a combination (all / any / not), a macro, or a field test.

    A field test names a field path and one or more operators, all of which must hold. A path
    that yields several values (``[*]``, ``**``) matches when any value satisfies the operators;
    a missing field never matches (test absence with ``exists: false``).
    """

    all_: list[Condition] | None = Field(None, alias="all", min_length=1, max_length=1000,
                                         description="every condition holds")
    any_: list[Condition] | None = Field(None, alias="any", min_length=1, max_length=1000,
                                         description="at least one condition holds")
    not_: Condition | None = Field(None, alias="not", description="the condition does not hold")
    macro: str | None = Field(None, description="the name of a macro (a named condition)")
    field: str | None = Field(None, max_length=512, description=(
        "a field path: 'arguments.query.limit', 'result[*].email', 'argv[0]', 'arguments.**' "
        "(every value below), 'context.conversation_id'"))
    transform: Transforms | None = Field(None, description=(
        "applied to each value before the operators, in order: " + ", ".join(TRANSFORMS)))
    ignore_case: bool = Field(False, description="compare strings case-insensitively")
    equals: ScalarValue | None = Field(None, description="the value equals this")
    not_equals: ScalarValue | None = Field(None, description="the value differs from this")
    in_: ValueList | None = Field(None, alias="in", description=(
        "the value is one of these (a list, or the name of a list under 'lists:')"))
    not_in: ValueList | None = Field(None, description="the value is none of these")
    contains: PatternSet | None = Field(None, description=(
        "a string value contains one of these substrings (a list value: has one of these items)"))
    startswith: PatternSet | None = Field(None, description="a string value starts with one of these")
    endswith: PatternSet | None = Field(None, description="a string value ends with one of these")
    glob: PatternSet | None = Field(None, description=(
        "a string value matches one of these shell patterns (* ? [abc]; * also matches '/')"))
    regex: PatternSet | None = Field(None, description=(
        "a string value contains a match of one of these regular expressions (checked for "
        "catastrophic backtracking when the policy loads)"))
    cidr: PatternSet | None = Field(None, description=(
        "an IP address value lies in one of these networks ('169.254.0.0/16', 'fd00:ec2::254')"))
    # A NaN bound would never hold and an infinite one always or never: both are refused.
    gt: float | None = Field(None, allow_inf_nan=False,
                             description="a numeric value (or numeric string) is greater")
    gte: float | None = Field(None, allow_inf_nan=False, description="... greater or equal")
    lt: float | None = Field(None, allow_inf_nan=False, description="... less")
    lte: float | None = Field(None, allow_inf_nan=False, description="... less or equal")
    exists: bool | None = Field(None, description="the field is present (true) or absent (false)")
    length: Bounds | None = Field(None, description=(
        "bounds on the length of a string (characters), list or mapping (entries)"))
    count: Bounds | None = Field(None, description=(
        "bounds on a record count: a list's length; a mapping's longest list of rows; a JSON "
        "string parsed first; other text counts its non-empty lines. For a path with [*] or **, "
        "the number of values it yields"))

    @model_validator(mode="after")
    def _one_shape(self) -> Condition:
        used = [name for name, attr in (("all", self.all_), ("any", self.any_),
                                        ("not", self.not_), ("macro", self.macro),
                                        ("field", self.field)) if attr is not None]
        ops = self.operators()
        if len(used) != 1:
            if not used:
                if ops:
                    raise _fail(f"operator(s) {', '.join(ops)} need a 'field' to test",
                                "add field: <path>, e.g. field: arguments.url")
                raise _fail("a condition needs one of all, any, not, macro or field",
                            "e.g. {field: tool, equals: run_shell}")
            raise _fail(f"a condition has exactly one of all, any, not, macro, field; "
                        f"got {' and '.join(used)}",
                        "wrap several conditions in all: [...] or any: [...]")
        if self.field is None and (ops or self.transform or self.ignore_case):
            extra = ops + [n for n, v in (("transform", self.transform),
                                          ("ignore_case", self.ignore_case)) if v]
            raise _fail(f"{', '.join(extra)} can only be used with 'field'",
                        "wrap several conditions in all: [...]")
        if self.field is not None and not ops:
            raise _fail(f"field {self.field!r} has no operator",
                        "add one of " + ", ".join(_FIELD_OPS))
        return self

    def operators(self) -> list[str]:
        """The field operators this condition uses, by their names in the file."""
        values = self.__dict__
        return [op for op, attribute in _OP_ATTRIBUTES if values[attribute] is not None]


class Match(_Model):
    """Which events a rule looks at: event kinds, agents and tools (globs), and the phase."""

    kind: Kinds | None = Field(None, description="event kind(s): " + ", ".join(EVENT_KINDS))
    agent: Globs | None = Field(None, description="agent (service) name pattern(s)")
    tool: Globs | None = Field(None, description=(
        "tool name pattern(s): the tool called, or the tool running when a process, connection "
        "or file event happened; events outside any tool do not match"))
    phase: Literal["call", "result", "request", "response"] | None = Field(None, description=(
        "tool calls: 'call' (before it runs) or 'result'; model calls and retrievals: 'request' "
        "or 'response'. Default: inferred from the fields the rule reads"))


class RateLimit(_Model):
    """The rule fires for each matching event beyond ``max`` within the sliding window ``per``."""

    max: int = Field(ge=1, le=10_000, description="matching events allowed in the window")
    per: Duration = Field(description="the window: seconds, or '30s', '5m', '1h', '1d'")
    by: RateKeys = Field(("conversation",), description=(
        "what is counted separately: conversation, agent, user, tool, global (or a list)"))


class After(_Model):
    """A sequence condition: something happened earlier in the same conversation."""

    tool: Globs | None = Field(None, description="a tool matching these patterns ran earlier")
    untrusted_content_flagged: bool = Field(False, description=(
        "untrusted content (a prompt injection or tainted value) was flagged earlier"))
    within: Duration | None = Field(None, description="... no longer ago than this")
    same_turn: bool = Field(False, description="... in the same turn")

    @model_validator(mode="after")
    def _one_kind(self) -> After:
        if (self.tool is None) == (not self.untrusted_content_flagged):
            raise _fail(f"give either tool: <pattern> or {AFTER_FLAGGED}: true",
                        f"e.g. after: {{tool: read_inbox}} or after: {AFTER_FLAGGED}")
        return self


_AfterInput = Literal["untrusted_content_flagged"] | After | \
    list[Literal["untrusted_content_flagged"] | After]


class ListDef(_Model):
    """A named list of values; ``append`` extends a list defined earlier, ``override`` replaces it."""

    items: list[ScalarValue] = Field(max_length=_MAX_ITEMS, description=(
        "the values; an item naming another list includes it, '${VAR}' is the value of an "
        "environment variable (left out when unset)"))
    append: bool = Field(False, description="add to a list defined earlier (e.g. a built-in one)")
    override: bool = Field(False, description="replace a list defined earlier")

    @model_validator(mode="after")
    def _not_both(self) -> ListDef:
        if self.append and self.override:
            raise _fail("a list cannot both append and override")
        return self


class MacroDef(_Model):
    """A named, reusable condition; ``override`` replaces a macro defined earlier."""

    condition: Condition
    description: str | None = Field(None, max_length=500)
    override: bool = Field(False, description="replace a macro defined earlier (e.g. a built-in one)")



def _list_short_form(data: Any) -> Any:
    return {"items": data} if isinstance(data, list) else data


def _macro_short_form(data: Any) -> Any:
    if isinstance(data, dict) and "condition" not in data:
        return {"condition": data}
    return data


ListEntry = Annotated[ListDef, BeforeValidator(
    _list_short_form, json_schema_input_type=list[Scalar] | ListDef)]
MacroEntry = Annotated[MacroDef, BeforeValidator(
    _macro_short_form, json_schema_input_type=Condition | MacroDef)]


class Rule(_Model):
    """One rule: when an event matches, the rule alerts or blocks with its id and severity."""

    id: str = Field(pattern=RULE_ID_PATTERN, description=(
        "a stable identifier, reported in findings (ids AG<digits> are reserved for built-in rules)"))
    description: str = Field(min_length=1, max_length=500, description=(
        "one line saying what the rule catches; it becomes the finding's title"))
    message: str | None = Field(None, max_length=500, description=(
        "optional finding title with {field.path} placeholders, e.g. 'shell {executable} "
        "spawned by tool {context.tool}'"))
    severity: Severity = "medium"
    action: RuleAction = Field("alert", description=(
        "alert, or block (blocks in enforce and learn modes; an alert in monitor mode)"))
    category: RuleCategory = "policy"
    enabled: bool = True
    tags: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=32)
    match: Match = Field(default_factory=Match)
    when: Condition | None = Field(None, description="the condition; none means every matched event")
    unless: Condition | None = Field(None, description="exceptions: the rule does not fire when this holds")
    after: Annotated[list[After], BeforeValidator(_after, json_schema_input_type=_AfterInput)] = Field(
        default_factory=list, max_length=16, description=(
            "sequence conditions, all of which must hold: 'untrusted_content_flagged', or "
            "{tool: pattern, within: 10m, same_turn: true}"))
    rate_limit: RateLimit | None = None
    unless_reported: list[Annotated[str, Field(pattern=RULE_ID_PATTERN)]] = Field(
        default_factory=list, max_length=16, description=(
            "rule ids (a detector's, the baseline's or a rule's): the rule does not fire on an "
            "event that already has a finding of one of them, the same story told once"))

    @field_validator("description")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return " ".join(value.split())


class Override(_Model):
    """Changes to a rule defined elsewhere (usually a built-in one), by id."""

    action: RuleAction | None = None
    severity: Severity | None = None
    enabled: bool | None = None
    unless: Condition | None = Field(None, description=(
        "an extra exception, added to the rule's own 'unless'"))


class PolicyDocument(_Model):
    """A policy file: lists, macros, rules and overrides of rules defined elsewhere."""

    version: Literal[1] = Field(1, description="the format version; 1")
    lists: dict[str, ListEntry] = Field(default_factory=dict, description=(
        "named lists: name: [values] or name: {items: [...], append: true}"))
    macros: dict[str, MacroEntry] = Field(default_factory=dict, description=(
        "named conditions: name: <condition> or name: {condition: ..., override: true}"))
    rules: list[Rule] = Field(default_factory=list, max_length=10_000)
    overrides: dict[str, Override] = Field(default_factory=dict, description=(
        "changes to rules by id (e.g. built-in ones): {AG014: {action: alert}}"))


# -- pydantic errors → policy issues -------------------------------------------------------------

_TYPE_NAMES = {"dict_type": "a mapping (key: value pairs)", "model_type": "a mapping (key: value "
               "pairs)", "list_type": "a list", "string_type": "a string", "bool_type": "true or "
               "false", "int_type": "a whole number", "int_parsing": "a whole number",
               "float_type": "a number", "float_parsing": "a number", "int_from_float":
               "a whole number", "bool_parsing": "true or false", "tuple_type": "a list"}

_BOUND_WORDS = {"greater_than_equal": "at least", "greater_than": "more than",
                "less_than_equal": "at most", "less_than": "less than"}
_BOUND_KEYS = {"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le",
               "less_than": "lt"}

_MISSING_HINTS = {
    "id": "every rule needs a stable id such as ACME-001; findings report it",
    "description": "every rule needs a one-line description; it becomes the finding's title",
    "items": "a list is name: [values] or name: {items: [values], append: true}",
    "condition": "a macro is name: <condition> or name: {condition: <condition>}",
    "max": "e.g. rate_limit: {max: 20, per: 1m}",
    "per": "e.g. rate_limit: {max: 20, per: 1m}",
}


def _data_path(data: Any, loc: tuple[Any, ...]) -> tuple[list[str | int], Any]:
    """The part of pydantic's ``loc`` that names real keys and indexes in ``data``."""
    path: list[str | int] = []
    current = data
    for part in loc:
        if isinstance(current, dict):
            present = isinstance(part, str) and part in current
        elif isinstance(current, list):
            present = isinstance(part, int) and 0 <= part < len(current)
        else:
            present = False
        if present:
            path.append(part)
            current = current[part]
    return path, current


def _issue_for(error: Any, data: Any, marks: Marks) -> PolicyIssue:
    loc = tuple(error.get("loc", ()))
    path, value = _data_path(data, loc)
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    message = str(error.get("msg", "invalid value"))
    hint: str | None = ctx.get("hint") if isinstance(ctx.get("hint"), str) else None
    key = False
    if kind == "unknown_field":
        path.append(str(ctx.get("field")))
        key = True
    elif kind == "missing":
        name = str(loc[-1]) if loc else "?"
        line, column = marks.locate(tuple(path))
        return PolicyIssue(marks.file, line, column, format_path([*path, name]),
                           f"missing required field {name!r}", _MISSING_HINTS.get(name))
    elif kind == "literal_error":
        expected = re.findall(r"'([^']*)'|(\d+)", str(ctx.get("expected", "")))
        options = [a or b for a, b in expected]
        message = f"{_describe(value)} is not one of {', '.join(options)}"
        hint = (did_you_mean(value, options) if isinstance(value, str) else None) or \
            (f"this agentguard reads version {options[0]}" if path == ["version"] else
             f"choose one of {', '.join(options)}")
    elif kind == "finite_number" or (kind == "float_type" and isinstance(value, int) and
                                     not isinstance(value, bool)):
        message = f"must be a finite number; got {_describe(value)}"
        hint = "a bound is an ordinary number, e.g. 1000"
    elif kind in _BOUND_WORDS:
        message = f"must be {_BOUND_WORDS[kind]} {ctx.get(_BOUND_KEYS[kind])}; got " \
                  f"{_describe(value)}"
    elif kind in ("too_long", "too_short", "string_too_long", "string_too_short"):
        message = message.replace("Value should", "must").replace("String should", "must")
    elif "[key]" in loc:
        message = f"names must be strings; got {_describe(error.get('input'))}"
    elif kind in _TYPE_NAMES:
        message = f"expected {_TYPE_NAMES[kind]}; got {_describe(value)}"
    elif kind == "string_pattern_mismatch" and path and path[-1] == "id":
        message = f"invalid rule id {value!r}"
        hint = "use letters, digits and . _ : - (at most 64 characters), starting with a letter " \
               "or digit"
    elif kind == "extra_forbidden":
        key = True
        message = f"unknown field {path[-1]!r}" if path else message
    elif message.startswith("Value error, "):
        message = message[len("Value error, "):]
    line, column = marks.locate(tuple(path), key=key)
    return PolicyIssue(marks.file, line, column, format_path(path), message, hint)


def validate_document(data: Any, marks: Marks) -> PolicyDocument:
    """Validate plain data (from YAML, JSON or Python) as a policy document."""
    if not isinstance(data, dict):
        raise PolicyError([marks.issue((), f"a policy is a mapping with 'rules:' (and optionally "
                                           f"'lists:', 'macros:', 'overrides:'); got {_describe(data)}",
                                       "start the file with 'rules:'")])
    try:
        return PolicyDocument.model_validate(data)
    except ValidationError as exc:
        issues: list[PolicyIssue] = []
        seen: set[tuple[str, str]] = set()
        for error in exc.errors(include_url=False):
            issue = _issue_for(error, data, marks)
            if (issue.field, issue.message) in seen:
                continue
            seen.add((issue.field, issue.message))
            issues.append(issue)
        raise PolicyError(issues[:MAX_ISSUES], max(0, len(issues) - MAX_ISSUES)) from None


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file (published as docs/policy-schema.json)."""
    schema = PolicyDocument.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://agentguard.dev/schemas/policy.json",
        "title": "agentguard policy",
        **{key: value for key, value in schema.items() if key != "title"},
    }
