"""A function traced with ``@agentguard.tool`` that raises is judged with its error, and the
caller gets the exception unchanged."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import agentguard
from agentguard.findings import Finding

POLICY = """
rules:
  - id: TOOL-ERR-001
    description: A tool failed with a permission error
    severity: low
    match: {kind: tool_call, phase: result}
    when: {field: error, contains: "PermissionError: [Errno 13]"}
"""


@agentguard.tool
def read_report(path: str) -> str:
    """Read a report."""
    raise PermissionError(13, "Permission denied", path)


@agentguard.tool
async def aread_report(path: str) -> str:
    """Read a report."""
    raise PermissionError(13, "Permission denied", path)


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message")


@agentguard.tool
def flaky(path: str) -> str:
    """Fail with an exception whose message cannot be read."""
    raise Unprintable()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_decorated_tool_that_raises_is_judged_with_its_error(guarded: Any, tmp_path: Path,
                                                               mode: str) -> None:
    """The rule on ``error`` sees the exception's type and message; the same exception reaches
    the caller."""
    policy = tmp_path / "errors.yaml"
    policy.write_text(POLICY)
    seen: list[Finding] = []
    guarded(policy=str(policy), on_finding=seen.append, runtime_sensor=False)
    with pytest.raises(PermissionError) as raised:
        if mode == "sync":
            read_report("/srv/q3.csv")
        else:
            asyncio.run(aread_report("/srv/q3.csv"))
    assert raised.value.filename == "/srv/q3.csv"
    assert [(f.rule_id, f.tool) for f in seen] == [
        ("TOOL-ERR-001", "read_report" if mode == "sync" else "aread_report")]


def test_an_error_whose_message_cannot_be_read_is_judged_by_its_type(guarded: Any,
                                                                     tmp_path: Path) -> None:
    """An exception whose ``__str__`` raises is judged as its type name alone, and propagates
    unchanged."""
    policy = tmp_path / "errors.yaml"
    policy.write_text("rules:\n  - id: FLAKY\n    description: Unprintable failure\n"
                      "    match: {kind: tool_call, phase: result}\n"
                      "    when: {field: error, equals: Unprintable}\n")
    seen: list[Finding] = []
    guarded(policy=str(policy), on_finding=seen.append, runtime_sensor=False)
    before = dict(agentguard.stats()["internal_errors"])  # counted per process, over all tests
    with pytest.raises(Unprintable):
        flaky("/srv/q3.csv")
    assert [f.rule_id for f in seen] == ["FLAKY"]
    assert agentguard.stats()["internal_errors"] == before
