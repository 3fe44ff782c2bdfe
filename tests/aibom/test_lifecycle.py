"""Attaching and detaching the AI-BOM stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import agentguard
from agentguard import aibom


def test_enable_needs_an_active_guard() -> None:
    """``enable()`` before ``instrument()`` says what to do instead of doing nothing."""
    with pytest.raises(RuntimeError, match=r"call agentguard.instrument\(\) first"):
        aibom.enable()


def test_enable_replaces_and_disable_detaches(tmp_path: Path, guarded: Any) -> None:
    """A second ``enable()`` replaces the stage and its sink (one of each); ``disable()`` removes
    them and the Guard no longer runs a pipeline it does not need; the inventory stays."""
    guard = guarded(builtin_rules=False, injection_detection=False)
    assert not guard.has_stages
    first = aibom.enable()
    second = aibom.enable(allow=["Some_Package"])
    assert [d for d in guard.detectors if isinstance(d, aibom.AibomStage)] == [second]
    assert first.sink not in guard.sinks and guard.sinks.count(second.sink) == 1
    assert second.settings.extra_allowed == ["some-package"]
    assert aibom.stage() is second and guard.has_stages
    aibom.disable()
    assert aibom.stage() is None and not guard.has_stages
    assert second.sink not in guard.sinks
    assert aibom.inventory().counts()["distributions"] > 0
    agentguard.uninstrument()


def test_bad_declared_file_fails_enable(tmp_path: Path, guarded: Any) -> None:
    """A declared file that cannot be parsed fails ``enable()`` with the file and line."""
    guarded()
    bad = tmp_path / "requirements.txt"
    bad.write_text("ok-package\n!!!\n")
    with pytest.raises(aibom.DeclaredError, match=r"requirements.txt:2"):
        aibom.enable(declared=[bad])



def test_instrument_settings_start_the_aibom(tmp_path: Path, guarded: Any) -> None:
    """aibom_models= on instrument() attaches the AI-BOM: a model call missing from the
    allow-list is reported, through the normal findings path."""
    from agentguard.demo.scripted import ScriptedChatModel, say

    models = tmp_path / "models.yaml"
    models.write_text("models:\n  - id: anthropic.claude-3-haiku-*\n")
    found: list[agentguard.Finding] = []
    guard = guarded(aibom_models=str(models), on_finding=found.append)
    assert aibom.stage(guard) is not None
    ScriptedChatModel(script=[say("hi")]).invoke("hello")
    assert [f.evidence for f in found if f.rule_id == "BOM002"] == [
        {"provider": "scripted", "model": "scripted-1"}]


def test_a_bad_declared_file_fails_instrument(tmp_path: Path, guarded: Any) -> None:
    """An unreadable declared file given to instrument() is a ConfigError naming it."""
    bad = tmp_path / "pyproject.toml"
    bad.write_text("[project\n")
    with pytest.raises(agentguard.ConfigError, match=r"pyproject\.toml"):
        guarded(aibom_declared=[str(bad)])
