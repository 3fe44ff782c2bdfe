"""The behavioural profile of one agent: what its tools are called with, what they return, and
what runs, connects, opens and calls the cloud under each of them.

A profile is plain data (pydantic dataclasses, stored as versioned JSON), bounded by its
:class:`~agentguard.baseline.Limits`, and mergeable: :meth:`Profile.merge` is commutative and
associative, so replicas of one agent can learn separately and be combined.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import re
from dataclasses import field
from typing import Any, Final, Literal, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from agentguard.baseline._settings import Limits
from agentguard.baseline._summaries import (
    STRICT,
    Histogram,
    NonNeg,
    Positive,
    ValueSet,
    merge_counts,
    merge_maps,
)

__all__ = [
    "FORMAT",
    "VERSION",
    "Activity",
    "ArgSummary",
    "ProcessProfile",
    "Profile",
    "ProfileError",
    "ToolProfile",
    "terminal_safe_json",
]

FORMAT: Final = "agentguard-profile"
VERSION: Final = 1
# The predecessor recorded for the first tool call of a turn.
TURN_START = "^"


class ProfileError(ValueError):
    """A profile file or value that cannot be used; the message names the file and the problem."""


# Characters a terminal acts on that JSON leaves as they are (it escapes only those below U+0020):
# DEL, the C1 controls (U+009B is the 8-bit CSI that starts an escape sequence) and the
# bidirectional overrides. Learned strings come from tool calls a model made, so whoever steered
# the model chooses them; structural JSON is ASCII, so these only ever occur inside strings.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_safe_json(text: str) -> str:
    """JSON text with the characters a terminal acts on written as ``\\u`` escapes: the same
    JSON value, safe to print (``profile show --json``) or to ``cat`` (the profile file)."""
    return _JSON_UNSAFE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


_T = TypeVar("_T")


def _clone(value: _T) -> _T:
    return copy.deepcopy(value)


def _hist(a: Histogram | None, b: Histogram | None, limits: Limits) -> Histogram | None:
    if a is None:
        return _clone(b)
    if b is None:
        return _clone(a)
    return a.merged(b, limits.max_buckets)


def _set(a: ValueSet | None, b: ValueSet | None, cap: int) -> ValueSet | None:
    if a is None:
        return _clone(b)
    if b is None:
        return _clone(a)
    return a.merged(b, cap)


def _set_map(a: dict[str, ValueSet], b: dict[str, ValueSet], limits: Limits, cap: int
             ) -> tuple[dict[str, ValueSet], int]:
    return merge_maps(a, b, limits.max_keys, lambda x, y: x.merged(y, cap),
                      lambda s: s.total, _clone)


def _hist_map(a: dict[str, Histogram], b: dict[str, Histogram], limits: Limits
              ) -> tuple[dict[str, Histogram], int]:
    return merge_maps(a, b, limits.max_keys, lambda x, y: x.merged(y, limits.max_buckets),
                      lambda h: h.count + h.nonfinite, _clone)


@dataclass(slots=True, config=STRICT)
class ArgSummary:
    """What one argument of one tool looked like."""

    present: NonNeg = 0
    # Observations per JSON type name: str, int, float, bool, null, list, dict.
    types: dict[str, Positive] = field(default_factory=dict)
    # Categorical values: short strings (secrets redacted) and booleans.
    values: ValueSet | None = None
    numbers: Histogram | None = None
    lengths: Histogram | None = None
    # Sizes of list and object values.
    items: Histogram | None = None
    shapes: ValueSet | None = None
    hosts: ValueSet | None = None
    # E-mail domains.
    domains: ValueSet | None = None
    paths: ValueSet | None = None

    def merged(self, other: ArgSummary, limits: Limits) -> ArgSummary:
        return ArgSummary(
            present=self.present + other.present,
            types=merge_counts(self.types, other.types),
            values=_set(self.values, other.values, limits.max_values),
            numbers=_hist(self.numbers, other.numbers, limits),
            lengths=_hist(self.lengths, other.lengths, limits),
            items=_hist(self.items, other.items, limits),
            shapes=_set(self.shapes, other.shapes, limits.max_values),
            hosts=_set(self.hosts, other.hosts, limits.max_set),
            domains=_set(self.domains, other.domains, limits.max_set),
            paths=_set(self.paths, other.paths, limits.max_set),
        )


@dataclass(slots=True, config=STRICT)
class ProcessProfile:
    """How one executable was started: argument counts, subcommands and flags."""

    count: NonNeg = 0
    argc: Histogram = field(default_factory=Histogram)
    subcommands: ValueSet = field(default_factory=ValueSet)
    flags: ValueSet = field(default_factory=ValueSet)

    def merged(self, other: ProcessProfile, limits: Limits) -> ProcessProfile:
        return ProcessProfile(
            count=self.count + other.count,
            argc=self.argc.merged(other.argc, limits.max_buckets),
            subcommands=self.subcommands.merged(other.subcommands, limits.max_values),
            flags=self.flags.merged(other.flags, limits.max_values),
        )


@dataclass(slots=True, config=STRICT)
class Activity:
    """What happened in one scope (inside one tool, or in the agent outside any tool)."""

    # Events learned in this scope, per event kind.
    events: dict[str, Positive] = field(default_factory=dict)
    # Cloud API calls as ``service.Operation``, the resources they named (``s3.bucket`` →
    # bucket names), numeric request parameters (``dynamodb.Scan.Limit``), regions.
    cloud_calls: ValueSet | None = None
    cloud_resources: dict[str, ValueSet] = field(default_factory=dict)
    cloud_resources_dropped: NonNeg = 0
    cloud_numbers: dict[str, Histogram] = field(default_factory=dict)
    cloud_numbers_dropped: NonNeg = 0
    regions: ValueSet | None = None
    # Processes started, by executable (the home directory written as ``~``).
    processes: dict[str, ProcessProfile] = field(default_factory=dict)
    processes_dropped: NonNeg = 0
    # Connections: ``host:port`` (the name when known, else the address), and network blocks.
    destinations: ValueSet | None = None
    networks: ValueSet | None = None
    # Names resolved, and their registrable suffixes (also of names connected to).
    dns: ValueSet | None = None
    dns_suffixes: ValueSet | None = None
    # Directory areas of files read (sensitive ones) and written.
    file_reads: ValueSet | None = None
    file_writes: ValueSet | None = None
    # Distributions imported, model artifacts loaded, chat models called (``provider/model``).
    modules: ValueSet | None = None
    model_artifacts: ValueSet | None = None
    models: ValueSet | None = None
    output_tokens: Histogram | None = None
    # Structured decisions in model output, per field, and numeric scores.
    decisions: dict[str, ValueSet] = field(default_factory=dict)
    scores: dict[str, Histogram] = field(default_factory=dict)
    decisions_dropped: NonNeg = 0
    # Retrievers used and how many documents they returned.
    retrievers: ValueSet | None = None
    documents: Histogram | None = None

    def merged(self, other: Activity, limits: Limits) -> Activity:
        resources, resources_dropped = _set_map(self.cloud_resources, other.cloud_resources,
                                                limits, limits.max_set)
        numbers, numbers_dropped = _hist_map(self.cloud_numbers, other.cloud_numbers, limits)
        processes, processes_dropped = merge_maps(
            self.processes, other.processes, limits.max_keys,
            lambda x, y: x.merged(y, limits), lambda p: p.count, _clone)
        decision_sets, decisions_dropped = _set_map(self.decisions, other.decisions, limits,
                                                    limits.max_values)
        scores, scores_dropped = _hist_map(self.scores, other.scores, limits)
        s = limits.max_set
        return Activity(
            events=merge_counts(self.events, other.events),
            cloud_calls=_set(self.cloud_calls, other.cloud_calls, s),
            cloud_resources=resources,
            cloud_resources_dropped=self.cloud_resources_dropped + other.cloud_resources_dropped
            + resources_dropped,
            cloud_numbers=numbers,
            cloud_numbers_dropped=self.cloud_numbers_dropped + other.cloud_numbers_dropped
            + numbers_dropped,
            regions=_set(self.regions, other.regions, s),
            processes=processes,
            processes_dropped=self.processes_dropped + other.processes_dropped + processes_dropped,
            destinations=_set(self.destinations, other.destinations, s),
            networks=_set(self.networks, other.networks, s),
            dns=_set(self.dns, other.dns, s),
            dns_suffixes=_set(self.dns_suffixes, other.dns_suffixes, s),
            file_reads=_set(self.file_reads, other.file_reads, s),
            file_writes=_set(self.file_writes, other.file_writes, s),
            modules=_set(self.modules, other.modules, limits.max_modules),
            model_artifacts=_set(self.model_artifacts, other.model_artifacts, s),
            models=_set(self.models, other.models, s),
            output_tokens=_hist(self.output_tokens, other.output_tokens, limits),
            decisions=decision_sets,
            scores=scores,
            decisions_dropped=self.decisions_dropped + other.decisions_dropped
            + decisions_dropped + scores_dropped,
            retrievers=_set(self.retrievers, other.retrievers, s),
            documents=_hist(self.documents, other.documents, limits),
        )

    @property
    def total(self) -> int:
        return sum(self.events.values())


@dataclass(slots=True, config=STRICT)
class ToolProfile:
    """One tool: how often and how it is called, what it returns, and what runs inside it."""

    calls: NonNeg = 0
    results: NonNeg = 0
    errors: NonNeg = 0
    args: dict[str, ArgSummary] = field(default_factory=dict)
    # Observations of argument keys that did not fit in ``args``.
    args_dropped: NonNeg = 0
    result_bytes: Histogram | None = None
    result_records: Histogram | None = None
    # Calls of this tool per turn (turns in which it was called at all).
    calls_per_turn: Histogram | None = None
    # The tool called just before this one in the same turn (``^``: it was the first).
    predecessors: ValueSet | None = None
    activity: Activity = field(default_factory=Activity)

    def merged(self, other: ToolProfile, limits: Limits) -> ToolProfile:
        args, args_dropped = merge_maps(self.args, other.args, limits.max_args,
                                        lambda x, y: x.merged(y, limits), lambda a: a.present,
                                        _clone)
        return ToolProfile(
            calls=self.calls + other.calls,
            results=self.results + other.results,
            errors=self.errors + other.errors,
            args=args,
            args_dropped=self.args_dropped + other.args_dropped + args_dropped,
            result_bytes=_hist(self.result_bytes, other.result_bytes, limits),
            result_records=_hist(self.result_records, other.result_records, limits),
            calls_per_turn=_hist(self.calls_per_turn, other.calls_per_turn, limits),
            predecessors=_set(self.predecessors, other.predecessors, limits.max_set),
            activity=self.activity.merged(other.activity, limits),
        )

    def weight(self) -> int:
        """Events learned in this tool's scope (what is counted as dropped if it is evicted)."""
        return self.activity.total


@dataclass(slots=True, config=STRICT)
class Profile:
    """Everything learned about one agent (identified by its service name)."""

    agent: str
    format: Literal["agentguard-profile"] = FORMAT
    version: Literal[1] = VERSION
    limits: Limits = field(default_factory=Limits)
    first_seen: float | None = None
    last_seen: float | None = None
    # Events learned, per event kind; events seen but not learned, per reason.
    events: NonNeg = 0
    kinds: dict[str, Positive] = field(default_factory=dict)
    skipped: dict[str, Positive] = field(default_factory=dict)
    # Turns started (user messages), their lengths, and tool calls per turn (all tools).
    turns: NonNeg = 0
    turn_lengths: Histogram | None = None
    calls_per_turn: Histogram | None = None
    tools: dict[str, ToolProfile] = field(default_factory=dict)
    # Observations of tools that did not fit in ``tools``.
    tools_dropped: NonNeg = 0
    # What happened outside any tool call.
    agent_activity: Activity = field(default_factory=Activity)

    # -- merging ---------------------------------------------------------------------------
    def merge(self, other: Profile) -> Profile:
        """Both profiles' observations together (commutative and associative; inputs unchanged).

        Raises :class:`ProfileError` when the profiles are of different agents, were learned
        under different limits, or together count more than ``MAX_COUNT`` of something.
        """
        try:
            return self._merge(other)
        except ValidationError as exc:
            raise ProfileError(f"cannot merge the profiles of agent {self.agent!r}: "
                               f"{_problems(exc)}") from None

    def _merge(self, other: Profile) -> Profile:
        if self.agent != other.agent:
            raise ProfileError(f"cannot merge the profile of agent {self.agent!r} with the profile "
                               f"of agent {other.agent!r}")
        if self.limits != other.limits:
            raise ProfileError("cannot merge profiles learned under different limits: "
                               f"{self.limits} and {other.limits}")
        limits = self.limits
        tools, tools_dropped = merge_maps(self.tools, other.tools, limits.max_tools,
                                          lambda x, y: x.merged(y, limits),
                                          lambda t: t.weight(), _clone)
        firsts = [t for t in (self.first_seen, other.first_seen) if t is not None]
        lasts = [t for t in (self.last_seen, other.last_seen) if t is not None]
        return Profile(
            agent=self.agent,
            limits=limits,
            first_seen=min(firsts) if firsts else None,
            last_seen=max(lasts) if lasts else None,
            events=self.events + other.events,
            kinds=merge_counts(self.kinds, other.kinds),
            skipped=merge_counts(self.skipped, other.skipped),
            turns=self.turns + other.turns,
            turn_lengths=_hist(self.turn_lengths, other.turn_lengths, limits),
            calls_per_turn=_hist(self.calls_per_turn, other.calls_per_turn, limits),
            tools=tools,
            tools_dropped=self.tools_dropped + other.tools_dropped + tools_dropped,
            agent_activity=self.agent_activity.merged(other.agent_activity, limits),
        )

    # -- files -----------------------------------------------------------------------------
    def to_json(self) -> bytes:
        """The profile as compact JSON (parts still at their defaults left out; the format, version,
        agent and limits always written)."""
        adapter = _adapter()
        body = adapter.dump_python(self, mode="json", exclude_none=True, exclude_defaults=True)
        head = {"format": FORMAT, "version": VERSION, "agent": self.agent,
                "limits": dataclasses.asdict(self.limits)}
        return terminal_safe_json(json.dumps({**head, **body}, ensure_ascii=False,
                                             separators=(",", ":"), allow_nan=False)
                                  ).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str, source: str = "profile") -> Profile:
        """Parse and check a profile; raises :class:`ProfileError` naming ``source`` and the problem."""
        try:
            raw = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise ProfileError(f"{source}: not valid JSON ({exc})") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise ProfileError(f"{source}: not an agentguard profile (expected a JSON object with "
                               f'"format": "{FORMAT}")')
        version = raw.get("version")
        if version != VERSION:
            raise ProfileError(f"{source}: profile format version {version!r} is not supported "
                               f"(this agentguard reads version {VERSION})")
        try:
            profile = _adapter().validate_python(raw)
        except ValidationError as exc:
            raise ProfileError(f"{source}: invalid profile: {_problems(exc)}") from None
        problem = _within_limits(profile)
        if problem is not None:
            raise ProfileError(f"{source}: invalid profile: {problem}")
        return profile

    def size_bytes(self) -> int:
        return len(self.to_json())


def _problems(exc: ValidationError) -> str:
    """The first few problems of a validation error, each with where it is."""
    problems = []
    for error in exc.errors()[:5]:
        # A location holds the file's keys, which may be anything: each part is kept short.
        where = ".".join(_short(str(part)) for part in error["loc"]) or "(top level)"
        problems.append(f"{where}: {error['msg']}")
    more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return "; ".join(problems) + more


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


@functools.cache
def _adapter() -> TypeAdapter[Profile]:
    return TypeAdapter(Profile)


_VALUE_CAPPED = frozenset({"values", "shapes", "subcommands", "flags", "decisions"})


def _within_limits(profile: Profile) -> str | None:
    """The first part of a loaded profile that is larger than its limits allow, if any."""
    limits = profile.limits
    if len(profile.tools) > limits.max_tools:
        return f"{len(profile.tools)} tools, more than limits.max_tools={limits.max_tools}"

    def cap_of(name: str) -> int:
        if name in _VALUE_CAPPED:
            return limits.max_values
        if name == "modules":
            return limits.max_modules
        return limits.max_set

    def walk(value: Any, where: str, name: str) -> str | None:
        if isinstance(value, ValueSet):
            cap = cap_of(name)
            if len(value.values) > cap:
                return f"{where}: {len(value.values)} values, more than the limits allow ({cap})"
            return None
        if isinstance(value, Histogram):
            for side in (value.positive, value.negative):
                if side and max(side) - min(side) + 1 > limits.max_buckets:
                    return f"{where}: histogram wider than limits.max_buckets"
            return None
        if isinstance(value, ToolProfile) and len(value.args) > limits.max_args:
            return f"{where}.args: {len(value.args)} keys, more than limits.max_args"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for item in dataclasses.fields(value):
                problem = walk(getattr(value, item.name), f"{where}.{item.name}", item.name)
                if problem is not None:
                    return problem
        elif isinstance(value, dict):
            if value and all(isinstance(v, (ValueSet, Histogram, ProcessProfile)) for v in
                             value.values()) and len(value) > limits.max_keys:
                return f"{where}: {len(value)} keys, more than limits.max_keys"
            for key, item in value.items():
                # Sets inside a keyed map take the map's cap (decisions) or the set cap.
                problem = walk(item, f"{where}.{key}", name)
                if problem is not None:
                    return problem
        elif isinstance(value, float) and not math.isfinite(value):
            return f"{where}: not a finite number"
        return None

    return walk(profile, "profile", "profile")
