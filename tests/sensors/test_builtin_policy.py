"""The sensor's events judged by agentguard's built-in policy pack (no policy of the user's)."""

from __future__ import annotations

import pickle
import subprocess
from pathlib import Path
from typing import Any

import pytest

import agentguard
from tests.sensors.helpers import events, run_tool


def test_builtin_rules_block_a_shell_spawned_by_a_tool(guarded: Any, spans: Any,
                                                       tmp_path: Path) -> None:
    """In enforce mode the built-in shell rule refuses ``sh -c`` in a tool before it runs."""
    marker = tmp_path / "ran"
    findings: list[agentguard.Finding] = []
    guarded(on_block="raise", mode="enforce", on_finding=findings.append)

    def shell_out() -> str:
        """Run a shell command."""
        subprocess.run(["sh", "-c", f"touch {marker}"], check=True)
        return "done"

    with pytest.raises(PermissionError, match="AG001"):
        run_tool(shell_out)
    assert not marker.exists()
    assert [(f.rule_id, f.action, f.tool) for f in findings] == [("AG001", "block", "shell_out")]
    (event,) = events(spans.one("execute_tool shell_out"), "process.exec")
    assert event["agentguard.decision"] == "block"


def test_builtin_rules_flag_credential_reads_and_pickle_models(guarded: Any, spans: Any,
                                                                tmp_path: Path) -> None:
    """In monitor mode reading cloud credentials and loading a pickle model in a tool are
    reported by the built-in rules, and the tool runs."""
    credentials = tmp_path / ".aws" / "credentials"
    credentials.parent.mkdir()
    credentials.write_text("[default]\naws_access_key_id = AKIA0000000000000000\n")
    model = tmp_path / "model.pkl"
    model.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    findings: list[agentguard.Finding] = []
    guarded(mode="monitor", on_finding=findings.append)

    def prepare() -> str:
        """Read credentials and load a model."""
        credentials.read_text()
        with open(model, "rb") as handle:
            return str(sorted(pickle.load(handle)))

    assert run_tool(prepare) == "['weights']"
    assert sorted((f.rule_id, f.action, f.kind) for f in findings) == [
        ("AG013", "alert", "file_open"), ("AG021", "alert", "model_load")]
    span = spans.one("execute_tool prepare")
    assert [e.get("agentguard.decision") for e in events(span, "file.open")] == ["alert"]
    assert [e.get("agentguard.decision") for e in events(span, "model.load")] == ["alert"]
