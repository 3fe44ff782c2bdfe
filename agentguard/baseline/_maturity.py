"""How far learning has come: per dimension, per tool and for the whole profile.

A value set is judged by the Good-Turing estimate of the chance that the next observation is a
value never seen before (values seen once / observations): *learning* while that chance is above
``max_new_rate`` or there are fewer than ``min_observations``; *mature* below it; *closed* when
every value has been seen at least twice (no evidence that unseen values still turn up); *open*
when it outgrew its cap (high cardinality: novelty is not judged). A numeric range is mature once
it has ``min_observations``. A tool is mature when it was called ``min_observations`` times and
its pooled new-value rate is below ``max_new_rate``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from agentguard.baseline._settings import Thresholds
from agentguard.baseline._summaries import Histogram, ValueSet
from agentguard.baseline.profile import Activity, Profile, ToolProfile

__all__ = [
    "DimensionStatus",
    "ProfileStatus",
    "ScopeStatus",
    "SetState",
    "counts_state",
    "profile_status",
    "range_mature",
    "set_state",
]

SetState = Literal["empty", "learning", "mature", "closed", "open"]


def counts_state(counts: Iterable[int], dropped: int, thresholds: Thresholds
                 ) -> tuple[SetState, int, float]:
    """``(state, observations, new-value rate)`` of a set given its value counts."""
    total = dropped
    singletons = 0
    for count in counts:
        total += count
        if count == 1:
            singletons += 1
    if total == 0:
        return "empty", 0, 1.0
    rate = (singletons + dropped) / total
    if dropped:
        return "open", total, rate
    if total < thresholds.min_observations:
        return "learning", total, rate
    if singletons == 0:
        return "closed", total, rate
    if rate <= thresholds.max_new_rate:
        return "mature", total, rate
    return "learning", total, rate


def set_state(values: ValueSet | None, thresholds: Thresholds) -> tuple[SetState, int, float]:
    if values is None:
        return "empty", 0, 1.0
    return counts_state(values.values.values(), values.dropped, thresholds)


def range_mature(histogram: Histogram | None, thresholds: Thresholds) -> bool:
    return histogram is not None and histogram.count >= thresholds.min_observations


@dataclass(frozen=True)
class DimensionStatus:
    """One learned dimension (a value set or a numeric range) and how far it has come."""

    name: str
    kind: Literal["set", "range"]
    observations: int
    state: str
    new_rate: float | None = None


@dataclass
class ScopeStatus:
    """A tool (or the agent outside tools): calls, maturity and its under-observed dimensions."""

    name: str
    calls: int
    observations: int
    new_rate: float
    state: Literal["learning", "mature"]
    dimensions: list[DimensionStatus] = field(default_factory=list)

    @property
    def under_observed(self) -> list[DimensionStatus]:
        return [d for d in self.dimensions if d.state == "learning"]


@dataclass
class ProfileStatus:
    """The maturity of a whole profile, for ``agentguard profile status``."""

    agent: str
    events: int
    turns: int
    tool_set_state: str
    tool_set_rate: float
    agent_scope: ScopeStatus
    tools: list[ScopeStatus]

    @property
    def ready(self) -> bool:
        """Whether every tool is mature (enforce mode will block on evidence everywhere)."""
        return bool(self.tools) and all(tool.state == "mature" for tool in self.tools)


def _set_dimensions(prefix: str, sets: Iterable[tuple[str, ValueSet | None]],
                    thresholds: Thresholds) -> Iterator[DimensionStatus]:
    for name, values in sets:
        if values is None:
            continue
        state, total, rate = set_state(values, thresholds)
        yield DimensionStatus(f"{prefix}{name}", "set", total, state, rate)


def _range_dimensions(prefix: str, ranges: Iterable[tuple[str, Histogram | None]],
                      thresholds: Thresholds) -> Iterator[DimensionStatus]:
    for name, histogram in ranges:
        if histogram is None:
            continue
        state = "mature" if histogram.count >= thresholds.min_observations else "learning"
        yield DimensionStatus(f"{prefix}{name}", "range", histogram.count, state)


def activity_dimensions(activity: Activity, thresholds: Thresholds) -> list[DimensionStatus]:
    dims = list(_set_dimensions("", [
        ("cloud calls", activity.cloud_calls), ("regions", activity.regions),
        ("destinations", activity.destinations), ("networks", activity.networks),
        ("dns names", activity.dns), ("file reads", activity.file_reads),
        ("file writes", activity.file_writes), ("modules", activity.modules),
        ("model artifacts", activity.model_artifacts), ("models", activity.models),
        ("retrievers", activity.retrievers),
    ], thresholds))
    dims.extend(_set_dimensions("cloud ", sorted(activity.cloud_resources.items()), thresholds))
    dims.extend(_set_dimensions("decision ", sorted(activity.decisions.items()), thresholds))
    if activity.processes:
        state, total, rate = counts_state((p.count for p in activity.processes.values()),
                                          activity.processes_dropped, thresholds)
        dims.append(DimensionStatus("processes", "set", total, state, rate))
    dims.extend(_range_dimensions("", [("output tokens", activity.output_tokens),
                                       ("documents", activity.documents)], thresholds))
    dims.extend(_range_dimensions("cloud ", sorted(activity.cloud_numbers.items()), thresholds))
    dims.extend(_range_dimensions("score ", sorted(activity.scores.items()), thresholds))
    return dims


def tool_dimensions(tool: ToolProfile, thresholds: Thresholds) -> list[DimensionStatus]:
    dims: list[DimensionStatus] = []
    if tool.args:
        state, total, rate = counts_state((a.present for a in tool.args.values()),
                                          tool.args_dropped, thresholds)
        dims.append(DimensionStatus("argument keys", "set", total, state, rate))
    for key in sorted(tool.args):
        arg = tool.args[key]
        label = f"arg {key or '(input)'} "
        state, total, rate = counts_state(arg.types.values(), 0, thresholds)
        dims.append(DimensionStatus(label + "types", "set", total, state, rate))
        dims.extend(_set_dimensions(label, [
            ("values", arg.values), ("shapes", arg.shapes), ("hosts", arg.hosts),
            ("e-mail domains", arg.domains), ("paths", arg.paths)], thresholds))
        dims.extend(_range_dimensions(label, [
            ("numbers", arg.numbers), ("lengths", arg.lengths), ("sizes", arg.items)],
            thresholds))
    dims.extend(_range_dimensions("", [
        ("result bytes", tool.result_bytes), ("result records", tool.result_records),
        ("calls per turn", tool.calls_per_turn)], thresholds))
    dims.extend(_set_dimensions("", [("preceding tools", tool.predecessors)], thresholds))
    dims.extend(activity_dimensions(tool.activity, thresholds))
    return dims


def pooled_rate(dims: Iterable[DimensionStatus]) -> tuple[int, float]:
    """Observations and new-value rate pooled over the closed-world sets (open sets excluded)."""
    observations = 0
    new = 0.0
    for dim in dims:
        if dim.kind != "set" or dim.state in ("open", "empty") or dim.new_rate is None:
            continue
        observations += dim.observations
        new += dim.new_rate * dim.observations
    return observations, (new / observations if observations else 0.0)


def tool_status(name: str, tool: ToolProfile, thresholds: Thresholds) -> ScopeStatus:
    dims = tool_dimensions(tool, thresholds)
    observations, rate = pooled_rate(dims)
    mature = tool.calls >= thresholds.min_observations and rate <= thresholds.max_new_rate
    return ScopeStatus(name, tool.calls, observations, rate, "mature" if mature else "learning",
                       dims)


def agent_observed(profile: Profile, thresholds: Thresholds) -> bool:
    """Whether the agent outside its tools was observed long enough for "it never did this" to
    mean something: enough turns, or plenty of events when turns are not seen."""
    return profile.turns >= thresholds.min_observations or \
        profile.agent_activity.total >= 5 * thresholds.min_observations


def agent_status(profile: Profile, thresholds: Thresholds) -> ScopeStatus:
    dims = activity_dimensions(profile.agent_activity, thresholds)
    dims.extend(_range_dimensions("", [("calls per turn", profile.calls_per_turn)], thresholds))
    observations, rate = pooled_rate(dims)
    mature = agent_observed(profile, thresholds) and rate <= thresholds.max_new_rate
    return ScopeStatus("(agent)", profile.turns, observations, rate,
                       "mature" if mature else "learning", dims)


def tool_set(profile: Profile, thresholds: Thresholds) -> tuple[SetState, int, float]:
    """The state of the set of tool names (called tools only)."""
    return counts_state((t.calls for t in profile.tools.values() if t.calls),
                        profile.tools_dropped, thresholds)


def profile_status(profile: Profile, thresholds: Thresholds | None = None) -> ProfileStatus:
    """The maturity of every tool and of the agent scope."""
    th = thresholds or Thresholds()
    state, _, rate = tool_set(profile, th)
    tools = [tool_status(name, profile.tools[name], th) for name in sorted(profile.tools)]
    return ProfileStatus(profile.agent, profile.events, profile.turns, state, rate,
                         agent_status(profile, th), tools)
