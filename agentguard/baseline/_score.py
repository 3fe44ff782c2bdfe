"""Scoring: how far an event is from the learned profile, as a list of deviations.

The profile is compiled once into lookup tables (frozen sets, precomputed range fences, the state
of every value set), so scoring an event is a few dictionary lookups and comparisons per argument.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from agentguard.baseline import _features as features
from agentguard.baseline._learn import (
    _TYPE_NAMES,
    artifact_key,
    destination_key,
    destination_of,
    executable_key,
    flags_of,
    model_key,
    module_key,
    resource_values,
    subcommand_of,
)
from agentguard.baseline._maturity import (
    SetState,
    agent_observed,
    counts_state,
    set_state,
    tool_status,
)
from agentguard.baseline._numbers import as_float, number_text
from agentguard.baseline._settings import Thresholds
from agentguard.baseline._summaries import Histogram, ValueSet
from agentguard.baseline._turns import TurnTracker
from agentguard.baseline.profile import TURN_START, Activity, ArgSummary, Profile, ToolProfile
from agentguard.findings import SEVERITY_ORDER, Severity

__all__ = ["BaselineAnnotation", "Deviation", "Scorer"]

_LEVELS: tuple[Severity, ...] = ("info", "low", "medium", "high", "critical")
_SAMPLE = 8
_INF = math.inf


def _cap(severity: Severity, cap: Severity) -> Severity:
    return severity if SEVERITY_ORDER[severity] <= SEVERITY_ORDER[cap] else cap


def _lower(severity: Severity) -> Severity:
    return _LEVELS[max(SEVERITY_ORDER[severity] - 1, 1)]


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > 120:
        return value[:117] + "..."
    return value


@dataclass(frozen=True, slots=True)
class Deviation:
    """One way an event differs from the profile, with the evidence."""

    # What kind of difference (``new-tool``, ``argument-range``, ``result-records``, ...).
    rule: str
    severity: Severity
    message: str
    tool: str | None
    # The learned dimension compared (``args.limit.numbers``, ``result.records``, ...).
    dimension: str
    observed: Any
    expected: dict[str, Any] = field(default_factory=dict)
    # Whether the learned part had enough evidence to block on.
    mature: bool = False
    # The state of the learned part (``closed``, ``mature``, ``learning``, ``empty``, ``range``).
    state: str = "range"

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "severity": self.severity, "message": self.message,
                "tool": self.tool, "dimension": self.dimension, "observed": _short(self.observed),
                "expected": self.expected, "mature": self.mature, "state": self.state}


@dataclass(frozen=True, slots=True)
class BaselineAnnotation:
    """The baseline's verdict on one event, for the policy stage (``verdict.annotations["baseline"]``)."""

    deviations: tuple[Deviation, ...] = ()
    # Deviations beyond the first ``max_findings`` that did not become findings.
    suppressed: int = 0

    @property
    def max_severity(self) -> Severity | None:
        if not self.deviations:
            return None
        return max((d.severity for d in self.deviations), key=SEVERITY_ORDER.__getitem__)

    def rules(self) -> list[str]:
        return [d.rule for d in self.deviations]

    def to_dict(self) -> dict[str, Any]:
        return {"deviations": [d.to_dict() for d in self.deviations],
                "suppressed": self.suppressed}


class _Set:
    """A compiled value set: membership and how much an unseen value means."""

    __slots__ = ("floor", "observations", "rate", "sample", "state", "values")

    def __init__(self, values: ValueSet | None, thresholds: Thresholds) -> None:
        self.state: SetState
        self.state, self.observations, self.rate = set_state(values, thresholds)
        self.floor = thresholds.novelty_floor
        self.values = frozenset(values.values) if values is not None else frozenset()
        self.sample = tuple(v for v, _ in values.most_common(_SAMPLE)) if values else ()

    @classmethod
    def of_counts(cls, counts: dict[str, int], dropped: int, thresholds: Thresholds) -> _Set:
        compiled = cls(None, thresholds)
        compiled.floor = thresholds.novelty_floor
        compiled.state, compiled.observations, compiled.rate = counts_state(
            counts.values(), dropped, thresholds)
        compiled.values = frozenset(counts)
        compiled.sample = tuple(sorted(counts, key=lambda k: (-counts[k], k))[:_SAMPLE])
        return compiled

    def novelty(self, base: Severity, scope_mature: bool,
                empty: Severity | None = None) -> tuple[Severity, bool] | None:
        """Severity of a value not in the set and whether the set may block; ``None`` when the
        set is open (high cardinality)."""
        state = self.state
        if state == "closed":
            return base, True
        if state == "mature":
            return _cap(base, "medium"), True
        if state == "learning":
            # Where most values are new, one more new value says nothing.
            return None if self.rate > self.floor else ("low", False)
        if state == "open":
            return None
        if scope_mature:
            return (empty or base), True
        return "low", False

    def expected(self) -> dict[str, Any]:
        return {"learned": list(self.sample), "distinct": len(self.values),
                "observations": self.observations, "new_value_rate": round(self.rate, 4)}


class _Range:
    """A compiled numeric range with its deviation fences."""

    __slots__ = ("hi", "high_hi", "high_lo", "histogram", "lo", "mature", "med_hi", "med_lo")

    def __init__(self, histogram: Histogram, thresholds: Thresholds) -> None:
        lo = histogram.min if histogram.min is not None else 0.0
        hi = histogram.max if histogram.max is not None else 0.0
        scale = max(hi - lo, abs(hi), abs(lo)) or 1.0
        self.lo = lo
        self.hi = hi
        self.med_lo = lo - thresholds.margin * scale
        self.med_hi = hi + thresholds.margin * scale
        self.high_lo = lo - thresholds.high_margin * scale
        self.high_hi = hi + thresholds.high_margin * scale
        self.mature = histogram.count >= thresholds.min_observations
        self.histogram = histogram

    def check(self, value: float, upward_only: bool = False) -> Severity | None:
        if value != value:
            return "medium"
        # Beyond every learned (always finite) value, even where a fence overflowed to infinity.
        if value == _INF:
            return "high"
        if value == -_INF:
            return None if upward_only else "high"
        if value > self.med_hi:
            return "high" if value > self.high_hi else "medium"
        if upward_only:
            return None
        if value < self.med_lo:
            return "high" if value < self.high_lo else "medium"
        if value < 0 <= self.lo:
            return "medium"
        return None

    def expected(self) -> dict[str, Any]:
        h = self.histogram
        return {"min": h.min, "max": h.max, "p50": h.quantile(0.5), "p99": h.quantile(0.99),
                "observations": h.count}


def _range(histogram: Histogram | None, thresholds: Thresholds) -> _Range | None:
    return _Range(histogram, thresholds) if histogram is not None and histogram.count else None


class _Arg:
    __slots__ = ("domains", "hosts", "items", "lengths", "numbers", "paths", "present", "shapes",
                 "string_mature", "types", "values")

    def __init__(self, arg: ArgSummary, thresholds: Thresholds, tool_mature: bool) -> None:
        self.present = arg.present
        self.types = _Set.of_counts(arg.types, 0, thresholds)
        self.values = _Set(arg.values, thresholds) if arg.values is not None else None
        self.numbers = _range(arg.numbers, thresholds)
        self.lengths = _range(arg.lengths, thresholds)
        self.items = _range(arg.items, thresholds)
        self.shapes = _Set(arg.shapes, thresholds)
        self.hosts = _Set(arg.hosts, thresholds)
        self.domains = _Set(arg.domains, thresholds)
        self.paths = _Set(arg.paths, thresholds)
        strings = arg.lengths.count if arg.lengths is not None else 0
        self.string_mature = tool_mature and strings >= thresholds.min_observations


class _Process:
    __slots__ = ("argc", "flags", "subcommands")

    def __init__(self, process: Any, thresholds: Thresholds) -> None:
        self.argc = _range(process.argc, thresholds)
        self.subcommands = _Set(process.subcommands, thresholds)
        self.flags = _Set(process.flags, thresholds)


class _Activity:
    __slots__ = ("cloud_calls", "cloud_numbers", "cloud_resources", "decision_counts",
                 "decisions", "destinations", "dns", "dns_suffixes", "documents", "file_reads",
                 "file_writes", "mature", "model_artifacts", "models", "modules", "networks",
                 "output_tokens", "process_basenames", "process_set", "processes", "regions",
                 "resources_open", "retrievers", "scores")

    def __init__(self, activity: Activity, thresholds: Thresholds, mature: bool) -> None:
        th = thresholds
        self.mature = mature
        self.cloud_calls = _Set(activity.cloud_calls, th)
        self.cloud_resources = {k: _Set(v, th) for k, v in activity.cloud_resources.items()}
        self.resources_open = activity.cloud_resources_dropped > 0
        self.cloud_numbers = {k: _Range(v, th) for k, v in activity.cloud_numbers.items()
                              if v.count}
        self.regions = _Set(activity.regions, th)
        self.processes = {k: _Process(v, th) for k, v in activity.processes.items()}
        self.process_set = _Set.of_counts({k: v.count for k, v in activity.processes.items()},
                                          activity.processes_dropped, th)
        self.process_basenames = frozenset(k.rsplit("/", 1)[-1] for k in activity.processes)
        self.destinations = _Set(activity.destinations, th)
        self.networks = _Set(activity.networks, th)
        self.dns = _Set(activity.dns, th)
        self.dns_suffixes = _Set(activity.dns_suffixes, th)
        self.file_reads = _Set(activity.file_reads, th)
        self.file_writes = _Set(activity.file_writes, th)
        self.modules = _Set(activity.modules, th)
        self.model_artifacts = _Set(activity.model_artifacts, th)
        self.models = _Set(activity.models, th)
        self.output_tokens = _range(activity.output_tokens, th)
        self.decisions = {k: _Set(v, th) for k, v in activity.decisions.items()}
        # Drift needs the whole learned distribution: sets that never dropped a value.
        self.decision_counts = {k: (dict(v.values), v.total) for k, v in
                                activity.decisions.items() if v.closed}
        self.scores = {k: _Range(v, th) for k, v in activity.scores.items() if v.count}
        self.retrievers = _Set(activity.retrievers, th)
        self.documents = _range(activity.documents, th)


class _Tool:
    __slots__ = ("activity", "args", "calls_per_turn", "keys", "mature", "name", "predecessors",
                 "result_bytes", "result_records")

    def __init__(self, name: str, tool: ToolProfile, thresholds: Thresholds) -> None:
        self.name = name
        self.mature = tool_status(name, tool, thresholds).state == "mature"
        self.args = {k: _Arg(v, thresholds, self.mature) for k, v in tool.args.items()}
        self.keys = _Set.of_counts({k: v.present for k, v in tool.args.items()},
                                   tool.args_dropped, thresholds)
        self.result_bytes = _range(tool.result_bytes, thresholds)
        self.result_records = _range(tool.result_records, thresholds)
        self.calls_per_turn = _range(tool.calls_per_turn, thresholds)
        self.predecessors = _Set(tool.predecessors, thresholds)
        self.activity = _Activity(tool.activity, thresholds, self.mature)


class _Window:
    """Recent decisions of one field (with their counts), compared with the learned distribution."""

    __slots__ = ("cooldown", "counts", "recent", "size")

    def __init__(self, size: int) -> None:
        self.recent: deque[str] = deque()
        self.counts: dict[str, int] = {}
        self.size = size
        self.cooldown = 0

    def add(self, value: str) -> int:
        """Add a decision; returns how many of the recent ones have this value."""
        recent = self.recent
        counts = self.counts
        if len(recent) >= self.size:
            old = recent.popleft()
            left = counts[old] - 1
            if left:
                counts[old] = left
            else:
                del counts[old]
        recent.append(value)
        seen = counts.get(value, 0) + 1
        counts[value] = seen
        return seen


class Scorer:
    """Scores events against a profile (thread-safe; the profile must not change meanwhile)."""

    def __init__(self, profile: Profile, thresholds: Thresholds | None = None,
                 *, turns: TurnTracker | None = None) -> None:
        th = thresholds or Thresholds()
        self.thresholds = th
        self.profile = profile
        self.max_value_length = profile.limits.max_value_length
        self.turns = turns if turns is not None else TurnTracker()
        self.tools = {name: _Tool(name, tool, th) for name, tool in profile.tools.items()}
        self.tool_set = _Set.of_counts(
            {name: tool.calls for name, tool in profile.tools.items() if tool.calls},
            profile.tools_dropped, th)
        self.agent_mature = agent_observed(profile, th)
        self.agent = _Activity(profile.agent_activity, th, self.agent_mature)
        self.unknown_tool = _Activity(Activity(), th, False)
        self.calls_per_turn = _range(profile.calls_per_turn, th)
        self._windows: dict[tuple[str | None, str], _Window] = {}
        self._lock = threading.Lock()
        self._handlers = {
            "cloud_call": self._cloud_call, "process_exec": self._process_exec,
            "net_connect": self._net_connect, "dns_lookup": self._dns_lookup,
            "file_open": self._file_open, "module_load": self._module_load,
            "model_load": self._model_load, "model_call": self._model_call,
            "retrieval": self._retrieval, "turn": self._turn,
        }

    # -- entry -----------------------------------------------------------------------------
    def score(self, event: Any) -> list[Deviation]:
        """The deviations of ``event`` from the profile (empty when it looks as learned)."""
        kind = getattr(event, "kind", None)
        if kind == "tool_call":
            return self._tool_call(event)
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            return []
        scope_name = event.context.tool
        if scope_name:
            tool = self.tools.get(scope_name)
            scope = tool.activity if tool is not None else self.unknown_tool
        else:
            scope = self.agent
        out: list[Deviation] = []
        handler(event, scope, scope_name, out)
        return out

    # -- tool calls ------------------------------------------------------------------------
    def _tool_call(self, event: Any) -> list[Deviation]:
        name = event.tool
        if getattr(event, "unknown", False) is True:
            return self._unknown_tool(event)
        tool = self.tools.get(name)
        out: list[Deviation] = []
        if tool is None:
            if event.phase == "call":
                verdict = self.tool_set.novelty("high", self.agent_mature)
                if verdict is not None:
                    severity, mature = verdict
                    out.append(Deviation(
                        "new-tool", severity, f"tool {name!r} was never called while learning",
                        name, "tools", name, self.tool_set.expected(), mature,
                        self.tool_set.state))
            return out
        if event.phase == "result":
            if not event.error:
                self._result(tool, event.result, out)
            return out
        for key, value in features.flatten_arguments(event.arguments):
            arg = tool.args.get(key)
            if arg is None:
                verdict = tool.keys.novelty("medium", tool.mature)
                if verdict is not None:
                    severity, mature = verdict
                    out.append(Deviation(
                        "new-argument", severity,
                        f"{name}: argument {key!r} was never passed while learning", name,
                        "args", key, tool.keys.expected(), mature, tool.keys.state))
                continue
            self._argument(tool, key, arg, value, out)
        context = event.context
        if context.conversation_id:
            previous, count, total, _ = self.turns.call(context.conversation_id, context.turn,
                                                         name)
            self._turn_calls(tool, previous, count, total, out)
        return out

    def _unknown_tool(self, event: Any) -> list[Deviation]:
        """A call of a tool the framework does not have: never learned, so always outside the
        profile (a tool of that name in it was one the agent had then, or learned before such
        calls were told apart), and reported however few tools were learned, since it is no
        sign of the agent using tools of its own."""
        if event.phase != "call":
            return []
        name = event.tool
        tools = self.tool_set
        severity, mature = tools.novelty("high", self.agent_mature) or ("low", False)
        return [Deviation("unknown-tool", severity,
                          f"the model called {name!r}, a tool the agent does not have "
                          "(nothing ran)", name, "tools", name, tools.expected(), mature,
                          tools.state)]

    def _result(self, tool: _Tool, result: Any, out: list[Deviation]) -> None:
        size, records = features.measure(result)
        name = tool.name
        if records is not None and tool.result_records is not None:
            severity = tool.result_records.check(records, upward_only=True)
            if severity is not None:
                out.append(Deviation(
                    "result-records", severity,
                    f"{name} returned {records} records; learned at most "
                    f"{_num(tool.result_records.hi)}", name, "result.records", records,
                    tool.result_records.expected(), tool.result_records.mature))
        if size is not None and tool.result_bytes is not None:
            severity = tool.result_bytes.check(size, upward_only=True)
            if severity is not None:
                out.append(Deviation(
                    "result-bytes", severity,
                    f"{name} returned {size} bytes; learned at most "
                    f"{_num(tool.result_bytes.hi)}", name, "result.bytes", size,
                    tool.result_bytes.expected(), tool.result_bytes.mature))

    def _turn_calls(self, tool: _Tool, previous: str | None, count: int, total: int,
                    out: list[Deviation]) -> None:
        name = tool.name
        step = previous or TURN_START
        if step not in tool.predecessors.values:
            verdict = tool.predecessors.novelty("low", tool.mature)
            if verdict is not None:
                severity, mature = verdict
                before = "the start of the turn" if previous is None else repr(previous)
                out.append(Deviation(
                    "transition", severity,
                    f"{name} called after {before}, a sequence never seen while learning", name,
                    "predecessors", step, tool.predecessors.expected(), mature,
                    tool.predecessors.state))
        per_turn = tool.calls_per_turn
        if per_turn is not None and count > per_turn.hi:
            excess = per_turn.check(count, upward_only=True)
            if excess is not None:
                out.append(Deviation(
                    "calls-per-turn", excess,
                    f"{name} called {count} times in this turn; learned at most "
                    f"{_num(per_turn.hi)}", name, "calls_per_turn", count, per_turn.expected(),
                    per_turn.mature))
        all_calls = self.calls_per_turn
        if all_calls is not None and total > all_calls.hi:
            excess = all_calls.check(total, upward_only=True)
            if excess is not None:
                out.append(Deviation(
                    "turn-calls", excess,
                    f"{total} tool calls in this turn; learned at most {_num(all_calls.hi)}",
                    name, "turn.calls", total, all_calls.expected(), all_calls.mature))

    def _argument(self, tool: _Tool, key: str, arg: _Arg, value: Any,
                  out: list[Deviation]) -> None:
        name = tool.name
        kind = type(value)
        type_name = _TYPE_NAMES.get(kind) or ("dict" if isinstance(value, dict) else
                                              "list" if isinstance(value, (list, tuple))
                                              else "object")
        if type_name not in arg.types.values:
            verdict = arg.types.novelty("medium", tool.mature)
            if verdict is not None:
                severity, mature = verdict
                out.append(Deviation(
                    "argument-type", severity,
                    f"{name}: argument {key!r} is a {type_name}, never seen while learning", name,
                    f"args.{key}.types", type_name, arg.types.expected(), mature,
                    arg.types.state))
        if kind is str:
            self._string(tool, key, arg, value, out)
        elif kind is bool:
            if arg.values is not None:
                self._categorical(tool, key, arg.values, "true" if value else "false", out)
        elif kind is int or kind is float:
            self._number(tool, key, arg, value, out)
        elif type_name in ("list", "dict") and arg.items is not None:
            oversize = arg.items.check(len(value), upward_only=True)
            if oversize is not None:
                out.append(Deviation(
                    "argument-size", oversize,
                    f"{name}: argument {key!r} has {len(value)} items; learned at most "
                    f"{_num(arg.items.hi)}", name, f"args.{key}.items", len(value),
                    arg.items.expected(), arg.items.mature))

    def _number(self, tool: _Tool, key: str, arg: _Arg, value: float,
                out: list[Deviation]) -> None:
        numbers = arg.numbers
        if numbers is None:
            return
        severity = numbers.check(as_float(value))
        if severity is not None:
            out.append(Deviation(
                "argument-range", severity,
                f"{tool.name}: argument {key!r} = {_num(value)} is outside the learned range "
                f"{_num(numbers.lo)}..{_num(numbers.hi)}", tool.name, f"args.{key}.numbers",
                _observed(value), numbers.expected(), numbers.mature))

    def _categorical(self, tool: _Tool, key: str, values: _Set, value: str,
                     out: list[Deviation]) -> None:
        if value in values.values or values.state == "open":
            return
        if len(value) >= 16 and features.clean_value(value) in values.values:
            return
        verdict = values.novelty("medium", tool.mature)
        if verdict is not None:
            severity, mature = verdict
            out.append(Deviation(
                "argument-value", severity,
                f"{tool.name}: argument {key!r} has a value never seen while learning",
                tool.name, f"args.{key}.values", features.clean_value(value),
                values.expected(), mature, values.state))

    def _string(self, tool: _Tool, key: str, arg: _Arg, value: str,
                out: list[Deviation]) -> None:
        name = tool.name
        if arg.lengths is not None:
            severity = arg.lengths.check(len(value), upward_only=True)
            if severity is not None:
                out.append(Deviation(
                    "argument-length", _cap(severity, "medium"),
                    f"{name}: argument {key!r} is {len(value)} characters long; learned at most "
                    f"{_num(arg.lengths.hi)}", name, f"args.{key}.lengths", len(value),
                    arg.lengths.expected(), arg.lengths.mature))
        shapes = arg.shapes
        if shapes.state != "open" and shapes.state != "empty":
            outline = features.shape(value)
            if outline not in shapes.values:
                verdict = shapes.novelty("medium", tool.mature)
                if verdict is not None:
                    severity, mature = verdict
                    out.append(Deviation(
                        "argument-shape", severity,
                        f"{name}: argument {key!r} has the form {outline!r}, never seen while "
                        "learning", name, f"args.{key}.shapes", outline, shapes.expected(),
                        mature, shapes.state))
        if arg.numbers is not None:
            number = features.numeric_text(value)
            if number is not None:
                self._number(tool, key, arg, number, out)
        if features.secret_key(key):
            return
        if arg.values is not None and len(value) <= self.max_value_length:
            self._categorical(tool, key, arg.values, value, out)
        if arg.hosts.state != "open":
            self._hosts(tool, key, arg, value, out)
        if arg.domains.state != "open":
            self._domains(tool, key, arg, value, out)
        if arg.paths.state != "open" and features.looks_like_path(value):
            self._paths(tool, key, arg, value, out)

    def _hosts(self, tool: _Tool, key: str, arg: _Arg, value: str, out: list[Deviation]) -> None:
        name = tool.name
        for host in features.url_hosts(value):
            if host in arg.hosts.values:
                continue
            verdict = arg.hosts.novelty("high", arg.string_mature, empty="medium")
            if verdict is not None:
                severity, mature = verdict
                out.append(Deviation(
                    "argument-host", severity,
                    f"{name}: argument {key!r} points to host {host!r}, never seen while learning",
                    name, f"args.{key}.hosts", host, arg.hosts.expected(), mature,
                    arg.hosts.state))

    def _domains(self, tool: _Tool, key: str, arg: _Arg, value: str,
                 out: list[Deviation]) -> None:
        name = tool.name
        for domain in features.email_domains(value):
            if domain in arg.domains.values:
                continue
            verdict = arg.domains.novelty("high", arg.string_mature, empty="medium")
            if verdict is not None:
                severity, mature = verdict
                out.append(Deviation(
                    "argument-email-domain", severity,
                    f"{name}: argument {key!r} has an address at {domain!r}, a domain never seen "
                    "while learning", name, f"args.{key}.domains", domain, arg.domains.expected(),
                    mature, arg.domains.state))

    def _paths(self, tool: _Tool, key: str, arg: _Arg, value: str, out: list[Deviation]) -> None:
        area = features.path_prefix(value)
        if area in arg.paths.values:
            return
        verdict = arg.paths.novelty("medium", arg.string_mature, empty="low")
        if verdict is not None:
            severity, mature = verdict
            out.append(Deviation(
                "argument-path", severity,
                f"{tool.name}: argument {key!r} names a path in {area!r}, an area never seen "
                "while learning", tool.name, f"args.{key}.paths", area, arg.paths.expected(),
                mature, arg.paths.state))

    # -- activity --------------------------------------------------------------------------
    @staticmethod
    def _new(out: list[Deviation], rule: str, base: Severity, values: Any, scope: _Activity,
             tool: str | None, dimension: str, observed: Any, message: str,
             empty: Severity | None = None) -> None:
        compiled: _Set = values
        verdict = compiled.novelty(base, scope.mature, empty)
        if verdict is None:
            return
        severity, mature = verdict
        where = f"{tool}: " if tool else ""
        out.append(Deviation(rule, severity, where + message, tool, dimension, observed,
                             compiled.expected(), mature, compiled.state))

    def _cloud_call(self, event: Any, scope: _Activity, tool: str | None,
                    out: list[Deviation]) -> None:
        service = str(event.service)
        operation = f"{service}.{event.operation}"
        if operation not in scope.cloud_calls.values:
            self._new(out, "cloud-operation", "high", scope.cloud_calls, scope, tool,
                      "cloud_calls", operation, f"cloud call {operation} never made while learning")
        if event.region and str(event.region) not in scope.regions.values:
            self._new(out, "cloud-region", "medium", scope.regions, scope, tool, "regions",
                      event.region, f"cloud region {event.region!r} never used while learning")
        for kind, raw in list(event.resource.items())[:16]:
            name = f"{service}.{kind}"
            learned = scope.cloud_resources.get(name)
            if learned is None and scope.resources_open:
                continue
            for value in resource_values(service, str(kind), str(raw)):
                value = features.clean_value(value[:self.profile.limits.max_value_length * 4])
                if learned is not None and value in learned.values:
                    continue
                compiled = learned if learned is not None else _EMPTY
                self._new(out, "cloud-resource", "high", compiled, scope, tool,
                          f"cloud_resources.{name}", value,
                          f"{service} {kind} {value!r} never touched while learning")
        for key, number in list(event.parameters.items())[:32]:
            if type(number) is not int and type(number) is not float:
                continue
            learned_range = scope.cloud_numbers.get(f"{operation}.{key}")
            if learned_range is None:
                continue
            out_of_range = learned_range.check(as_float(number))
            if out_of_range is not None:
                out.append(Deviation(
                    "cloud-parameter", out_of_range,
                    f"{operation} parameter {key} = {_num(number)} is outside the learned range "
                    f"{_num(learned_range.lo)}..{_num(learned_range.hi)}", tool,
                    f"cloud_numbers.{operation}.{key}", _observed(number),
                    learned_range.expected(), learned_range.mature))

    def _process_exec(self, event: Any, scope: _Activity, tool: str | None,
                      out: list[Deviation]) -> None:
        path = executable_key(str(event.executable))
        argv = list(event.argv or [])
        process = scope.processes.get(path)
        if process is None:
            known_name = path.rsplit("/", 1)[-1] in scope.process_basenames
            self._new(out, "process", "medium" if known_name else "high", scope.process_set,
                      scope, tool, "processes", path,
                      f"process {path!r} never started while learning")
            return
        subcommand = subcommand_of(argv)
        if subcommand is not None and subcommand not in process.subcommands.values:
            self._new(out, "process-subcommand", "medium", process.subcommands, scope, tool,
                      f"processes.{path}.subcommands", subcommand,
                      f"{path} run with subcommand {subcommand!r}, never seen while learning",
                      empty="low")
        for flag in flags_of(argv):
            if flag not in process.flags.values:
                self._new(out, "process-flag", "medium", process.flags, scope, tool,
                          f"processes.{path}.flags", flag,
                          f"{path} run with option {flag!r}, never seen while learning",
                          empty="low")
                break
        if process.argc is not None:
            too_many = process.argc.check(len(argv), upward_only=True)
            if too_many is not None:
                out.append(Deviation(
                    "process-arguments", _cap(too_many, "medium"),
                    f"{path} run with {len(argv)} arguments; learned at most "
                    f"{_num(process.argc.hi)}", tool, f"processes.{path}.argc", len(argv),
                    process.argc.expected(), process.argc.mature))

    def _net_connect(self, event: Any, scope: _Activity, tool: str | None,
                     out: list[Deviation]) -> None:
        if destination_key(event) in scope.destinations.values:
            return
        destination, network, suffix = destination_of(event)
        near = network in scope.networks.values or (
            suffix is not None and suffix in scope.dns_suffixes.values)
        self._new(out, "destination", "medium" if near else "high", scope.destinations, scope,
                  tool, "destinations", destination,
                  f"connection to {destination} never made while learning")

    def _dns_lookup(self, event: Any, scope: _Activity, tool: str | None,
                    out: list[Deviation]) -> None:
        name = str(event.hostname).rstrip(".").lower()[:255]
        if name in scope.dns.values:
            return
        suffix = features.domain_suffix(name)
        near = suffix is not None and suffix in scope.dns_suffixes.values
        self._new(out, "dns-name", "low" if near else "medium", scope.dns, scope, tool, "dns",
                  name, f"name {name!r} never resolved while learning")

    def _file_open(self, event: Any, scope: _Activity, tool: str | None,
                   out: list[Deviation]) -> None:
        area = features.path_prefix(str(event.path))
        if event.write:
            if area not in scope.file_writes.values:
                self._new(out, "file-write", "high", scope.file_writes, scope, tool,
                          "file_writes", area, f"write in {area!r}, an area never written to "
                          "while learning")
        elif area not in scope.file_reads.values:
            self._new(out, "file-read", "medium", scope.file_reads, scope, tool, "file_reads",
                      area, f"read in {area!r}, an area never read while learning")

    def _module_load(self, event: Any, scope: _Activity, tool: str | None,
                     out: list[Deviation]) -> None:
        key = module_key(event)
        if key not in scope.modules.values:
            self._new(out, "module", "low", scope.modules, scope, tool, "modules", key,
                      f"module {key!r} never imported while learning")

    def _model_load(self, event: Any, scope: _Activity, tool: str | None,
                    out: list[Deviation]) -> None:
        key = artifact_key(event)
        if key not in scope.model_artifacts.values:
            self._new(out, "model-artifact", "high", scope.model_artifacts, scope, tool,
                      "model_artifacts", key, f"model artifact {key!r} never loaded while learning")

    def _model_call(self, event: Any, scope: _Activity, tool: str | None,
                    out: list[Deviation]) -> None:
        if event.phase == "request":
            key = model_key(event.provider, event.model)
            if key not in scope.models.values:
                self._new(out, "model", "medium", scope.models, scope, tool, "models", key,
                          f"model {key!r} never called while learning")
            return
        where = f"{tool}: " if tool else ""
        tokens = event.output_tokens
        if tokens is not None and scope.output_tokens is not None:
            severity = scope.output_tokens.check(as_float(tokens), upward_only=True)
            if severity is not None:
                out.append(Deviation(
                    "output-tokens", _cap(severity, "medium"),
                    f"{where}model answered with {_num(tokens)} tokens; learned at most "
                    f"{_num(scope.output_tokens.hi)}", tool, "output_tokens", _observed(tokens),
                    scope.output_tokens.expected(), scope.output_tokens.mature))
        labels, scores = features.decisions(event.output)
        for field_name, value in labels:
            learned = scope.decisions.get(field_name)
            if learned is None:
                continue
            if value not in learned.values:
                self._new(out, "decision-value", "medium", learned, scope, tool,
                          f"decisions.{field_name}", value,
                          f"model decided {field_name} = {value!r}, never seen while learning")
            self._drift(scope, tool, field_name, value, out)
        for field_name, number in scores:
            learned_range = scope.scores.get(field_name)
            if learned_range is None:
                continue
            off = learned_range.check(number)
            if off is not None:
                out.append(Deviation(
                    "decision-score", _cap(off, "medium"),
                    f"{where}model {field_name} = {_num(number)} is outside the learned range "
                    f"{_num(learned_range.lo)}..{_num(learned_range.hi)}", tool,
                    f"scores.{field_name}", number, learned_range.expected(),
                    learned_range.mature))

    def _drift(self, scope: _Activity, tool: str | None, field_name: str, value: str,
               out: list[Deviation]) -> None:
        """Compare the recent decisions of a field with the learned shares (a binomial z-test
        per value over a sliding window)."""
        learned = scope.decision_counts.get(field_name)
        if learned is None:
            return
        counts, total = learned
        th = self.thresholds
        with self._lock:
            window = self._windows.get((tool, field_name))
            if window is None:
                window = self._windows[(tool, field_name)] = _Window(th.drift_window)
            seen = window.add(value)
            if window.cooldown > 0:
                window.cooldown -= 1
                return
            size = len(window.recent)
            if size < th.drift_window:
                return
        share = seen / size
        distinct = len(counts) + 1
        expected = (counts.get(value, 0) + 0.5) / (total + 0.5 * distinct)
        if share - expected < th.drift_min_share:
            return
        z = (share - expected) / max((expected * (1 - expected) / size) ** 0.5, 1e-9)
        if z < th.drift_z:
            return
        with self._lock:
            window.cooldown = th.drift_window
        where = f"{tool}: " if tool else ""
        mature = total >= th.min_observations
        out.append(Deviation(
            "decision-drift", "medium",
            f"{where}model decided {field_name} = {value!r} in {seen} of the last {size} answers "
            f"({share:.0%}); learned share {expected:.0%}", tool, f"decisions.{field_name}",
            value, {"learned_share": round(expected, 4), "recent_share": round(share, 4),
                    "window": size, "z": round(z, 1),
                    "learned": dict(sorted(counts.items(), key=lambda kv: -kv[1])[:_SAMPLE])},
            mature, "distribution"))

    def _retrieval(self, event: Any, scope: _Activity, tool: str | None,
                   out: list[Deviation]) -> None:
        if event.phase == "request":
            name = str(event.retriever or "retriever")
            if name not in scope.retrievers.values:
                self._new(out, "retriever", "low", scope.retrievers, scope, tool, "retrievers",
                          name, f"retriever {name!r} never used while learning")
            return
        if scope.documents is not None:
            count = len(event.documents)
            severity = scope.documents.check(count, upward_only=True)
            if severity is not None:
                out.append(Deviation(
                    "documents", _cap(severity, "medium"),
                    f"retrieval returned {count} documents; learned at most "
                    f"{_num(scope.documents.hi)}", tool, "documents", count,
                    scope.documents.expected(), scope.documents.mature))

    def _turn(self, event: Any, scope: _Activity, tool: str | None,
              out: list[Deviation]) -> None:
        conversation = event.context.conversation_id
        if conversation:
            self.turns.end(conversation)


_EMPTY = _Set(None, Thresholds())


def _num(value: float | None) -> str:
    return number_text(value)


def _observed(value: float) -> float | str:
    """A number as a deviation's evidence holds it: an integer too large for a float as its
    description (evidence is serialised, and such an integer is not portable JSON)."""
    if type(value) is int and math.isinf(as_float(value)):
        return number_text(value)
    return value
