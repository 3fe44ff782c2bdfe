"""Decisions, findings and the exception that blocks a tool call."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

__all__ = [
    "SEVERITY_ORDER",
    "Action",
    "Category",
    "CloudCallBlocked",
    "Decision",
    "Finding",
    "ModelCallBlocked",
    "Severity",
    "ToolCallBlocked",
]

Severity = Literal["info", "low", "medium", "high", "critical"]
Action = Literal["alert", "block"]
Category = Literal["policy", "baseline", "injection", "taint", "runtime", "supply-chain", "internal"]

SEVERITY_ORDER: dict[str, int] = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
_ACTIONS: tuple[str, ...] = ("allow", "alert", "block")
_CATEGORIES: tuple[str, ...] = get_args(Category)


@dataclass(frozen=True, slots=True)
class Decision:
    """What a policy says about an event: allow it, alert on it, or block it."""

    action: Literal["allow", "alert", "block"]
    reason: str = ""
    severity: Severity = "medium"
    rule_id: str = "callback"
    category: Category = "policy"
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Checked here, in the policy that builds it, so a typo fails where it was made (and is
        # judged as that policy's error) rather than when the finding is built.
        if self.action not in _ACTIONS:
            raise ValueError(f"Decision action must be one of {', '.join(_ACTIONS)}, "
                             f"not {self.action!r}")
        if self.severity not in SEVERITY_ORDER:
            raise ValueError(f"Decision severity must be one of {', '.join(SEVERITY_ORDER)}, "
                             f"not {self.severity!r}")
        if self.category not in _CATEGORIES:
            raise ValueError(f"Decision category must be one of {', '.join(_CATEGORIES)}, "
                             f"not {self.category!r}")

    @classmethod
    def allow(cls) -> Decision:
        return _ALLOW

    @classmethod
    def alert(
        cls,
        reason: str,
        severity: Severity = "medium",
        *,
        rule_id: str = "callback",
        category: Category = "policy",
        evidence: dict[str, Any] | None = None,
    ) -> Decision:
        return cls("alert", reason, severity, rule_id, category, evidence or {})

    @classmethod
    def block(
        cls,
        reason: str,
        severity: Severity = "high",
        *,
        rule_id: str = "callback",
        category: Category = "policy",
        evidence: dict[str, Any] | None = None,
    ) -> Decision:
        return cls("block", reason, severity, rule_id, category, evidence or {})


_ALLOW = Decision("allow")


class Finding(BaseModel):
    """Something agentguard judged worth reporting, with the context and evidence that explain it."""

    rule_id: str
    category: Category = "policy"
    severity: Severity = "medium"
    title: str
    action: Action = "alert"
    kind: str
    tool: str | None = None
    agent: str | None = None
    conversation_id: str | None = None
    turn: int | None = None
    trace_id: str | None = None
    span_id: str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    timestamp: float = Field(default_factory=time.time)


class ToolCallBlocked(Exception):
    """Raised before a tool runs when agentguard blocks the call; carries the finding."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(f"agentguard blocked {finding.tool or finding.kind}: {finding.title} "
                         f"[{finding.rule_id}]")
        self.finding = finding


class ModelCallBlocked(ToolCallBlocked):
    """Raised before a model request is sent (or an agent starts a turn with the user's message)
    when agentguard blocks it; carries the finding.

    A subclass of :class:`ToolCallBlocked`, so one ``except ToolCallBlocked`` handles every block.
    A policy rule with ``action: block`` on ``model_call`` (request phase) or ``turn`` events
    raises it in ``enforce`` mode; nothing reaches the model.
    """

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding)
        what = "turn" if finding.kind == "turn" else "model request"
        self.args = (f"agentguard blocked the {what}: {finding.title} [{finding.rule_id}]",)


class CloudCallBlocked(ToolCallBlocked):
    """Raised before a cloud API request is sent when agentguard blocks it; carries the finding.

    A subclass of :class:`ToolCallBlocked` (a cloud call is one of the things a tool does), so one
    ``except ToolCallBlocked`` handles both; it is not an SDK error such as botocore's
    ``ClientError``, so code that retries or ignores AWS errors does not swallow it by accident.
    """

    def __init__(self, finding: Finding, call: str = "") -> None:
        super().__init__(finding)
        where = f" in tool {finding.tool}" if finding.tool else ""
        self.args = (f"agentguard blocked cloud call {call or finding.kind}{where}: "
                     f"{finding.title} [{finding.rule_id}]",)
        self.call = call
