"""Behavioural baselines: learn what an agent normally does, then score how far it strays.

``instrument(mode="learn", profile="support-agent.json")`` learns a :class:`Profile` from every
event (tool calls and results, cloud calls, processes, connections, lookups, files, modules,
models and their decisions) and saves it at ``uninstrument()``; ``mode="monitor"`` or
``"enforce"`` with the same file scores every event against it (:class:`Baseline`, the pipeline
stage). ``agentguard profile ...`` shows, merges, learns from OTLP traces and turns a profile
into a reviewable policy. See ``docs/baselines.md``.

Importing this package is cheap: its modules load on first use of a name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentguard.baseline._learn import Learner
    from agentguard.baseline._maturity import (
        DimensionStatus,
        ProfileStatus,
        ScopeStatus,
        profile_status,
    )
    from agentguard.baseline._score import BaselineAnnotation, Deviation, Scorer
    from agentguard.baseline._settings import Limits, Thresholds
    from agentguard.baseline._summaries import Histogram, ValueSet
    from agentguard.baseline.profile import TURN_START as TURN_START_MARKER
    from agentguard.baseline.profile import (
        Activity,
        ArgSummary,
        ProcessProfile,
        Profile,
        ProfileError,
        ToolProfile,
    )
    from agentguard.baseline.stage import ANNOTATION_KEY, Baseline
    from agentguard.baseline.store import load_profile, merge_into_file, save_profile

__all__ = [
    "ANNOTATION_KEY",
    "TURN_START_MARKER",
    "Activity",
    "ArgSummary",
    "Baseline",
    "BaselineAnnotation",
    "Deviation",
    "DimensionStatus",
    "Histogram",
    "Learner",
    "Limits",
    "ProcessProfile",
    "Profile",
    "ProfileError",
    "ProfileStatus",
    "ScopeStatus",
    "Scorer",
    "Thresholds",
    "ToolProfile",
    "ValueSet",
    "load_profile",
    "merge_into_file",
    "merge_profiles",
    "profile_status",
    "save_profile",
]

# Public name → (module, attribute).
_EXPORTS: dict[str, tuple[str, str]] = {
    "ANNOTATION_KEY": ("stage", "ANNOTATION_KEY"),
    "TURN_START_MARKER": ("profile", "TURN_START"),
    "Activity": ("profile", "Activity"),
    "ArgSummary": ("profile", "ArgSummary"),
    "Baseline": ("stage", "Baseline"),
    "BaselineAnnotation": ("_score", "BaselineAnnotation"),
    "Deviation": ("_score", "Deviation"),
    "DimensionStatus": ("_maturity", "DimensionStatus"),
    "Histogram": ("_summaries", "Histogram"),
    "Learner": ("_learn", "Learner"),
    "Limits": ("_settings", "Limits"),
    "ProcessProfile": ("profile", "ProcessProfile"),
    "Profile": ("profile", "Profile"),
    "ProfileError": ("profile", "ProfileError"),
    "ProfileStatus": ("_maturity", "ProfileStatus"),
    "ScopeStatus": ("_maturity", "ScopeStatus"),
    "Scorer": ("_score", "Scorer"),
    "Thresholds": ("_settings", "Thresholds"),
    "ToolProfile": ("profile", "ToolProfile"),
    "ValueSet": ("_summaries", "ValueSet"),
    "load_profile": ("store", "load_profile"),
    "merge_into_file": ("store", "merge_into_file"),
    "profile_status": ("_maturity", "profile_status"),
    "save_profile": ("store", "save_profile"),
}


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{target[0]}"), target[1])
    globals()[name] = value
    return value


def merge_profiles(*profiles: Profile) -> Profile:
    """All the profiles' observations together (order does not matter)."""
    from agentguard.baseline.profile import Profile, ProfileError

    if not profiles:
        raise ProfileError("nothing to merge")
    merged: Profile = profiles[0].merge(Profile(agent=profiles[0].agent,
                                                limits=profiles[0].limits))
    for profile in profiles[1:]:
        merged = merged.merge(profile)
    return merged
