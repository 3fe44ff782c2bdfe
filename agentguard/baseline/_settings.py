"""The size limits a profile is learned under, and the thresholds deviations are scored with."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from agentguard.findings import Severity

__all__ = ["Limits", "Thresholds"]


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class Limits:
    """Caps on every growing part of a profile; what does not fit is counted, not kept.

    Stored in the profile: two profiles merge only when they were learned under the same limits,
    so a merge never depends on which side was truncated more.
    """

    # Tools per profile, argument keys per tool, processes and cloud resource kinds per scope.
    max_tools: Annotated[int, Field(ge=1, le=4096)] = 128
    max_args: Annotated[int, Field(ge=1, le=1024)] = 48
    # Distinct values kept per categorical set (argument values, string shapes, decisions).
    max_values: Annotated[int, Field(ge=1, le=4096)] = 48
    # Distinct values kept per activity set (hosts, destinations, executables, paths, buckets).
    max_set: Annotated[int, Field(ge=1, le=16384)] = 128
    # Distinct module distributions kept per scope (an agent imports hundreds of modules).
    max_modules: Annotated[int, Field(ge=1, le=65536)] = 1024
    # Keyed sub-maps: processes, cloud resource kinds, decision fields, cloud parameters.
    max_keys: Annotated[int, Field(ge=1, le=1024)] = 32
    # Buckets of a numeric summary (its resolution coarsens to stay within them).
    max_buckets: Annotated[int, Field(ge=2, le=1024)] = 48
    # A string longer than this is never kept as a categorical value, only summarised.
    max_value_length: Annotated[int, Field(ge=8, le=1024)] = 48


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class Thresholds:
    """How far is too far, and how much evidence a part of the profile needs before it may block."""

    # Observations before a part of the profile counts as learned at all.
    min_observations: Annotated[int, Field(ge=1)] = 20
    # A set still finding new values faster than this (Good-Turing: values seen once / all
    # observations) is still learning: an unseen value is reported at low severity.
    max_new_rate: Annotated[float, Field(ge=0, le=1)] = 0.05
    # A set whose new-value rate is above this behaves like an identifier (most values are new):
    # an unseen value in it is not a deviation at all.
    novelty_floor: Annotated[float, Field(gt=0, le=1)] = 0.5
    # A value beyond the learned range by more than ``margin`` times the range's scale is a
    # deviation; by more than ``high_margin`` times, a high-severity one.
    margin: Annotated[float, Field(gt=0)] = 1.0
    high_margin: Annotated[float, Field(gt=0)] = 10.0
    # In enforce mode, deviations at or above this severity block (on mature parts only).
    block_severity: Severity = "high"
    # Decision drift: recent decisions compared with the learned distribution.
    drift_window: Annotated[int, Field(ge=10, le=10_000)] = 50
    drift_min_share: Annotated[float, Field(gt=0, le=1)] = 0.2
    drift_z: Annotated[float, Field(gt=0)] = 4.0
    # At most this many deviations become findings per event (the rest are counted).
    max_findings: Annotated[int, Field(ge=1, le=100)] = 5
