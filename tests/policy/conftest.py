"""Helpers for policy tests: policies from YAML text, events with a context, decision ids."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from typing import Any

import pytest

from agentguard.events import EventContext
from agentguard.findings import Decision
from agentguard.policy import Policy


def make_policy(text: str, **kwargs: Any) -> Policy:
    """A policy from indented YAML text (dedented first)."""
    return Policy.from_yaml(textwrap.dedent(text), name="test.yaml", **kwargs)


def ctx(**fields: Any) -> EventContext:
    """An event context; conversation c1, turn 1 and agent test-agent unless given."""
    base: dict[str, Any] = {"agent": "test-agent", "conversation_id": "c1", "turn": 1}
    base.update(fields)
    return EventContext(**base)


def rule_ids(decisions: Iterable[Decision] | None) -> list[str]:
    """The rule ids of some decisions, in order (empty for None)."""
    return [d.rule_id for d in decisions or ()]


@pytest.fixture
def policy_from() -> Any:
    return make_policy
