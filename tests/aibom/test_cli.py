"""``agentguard run --aibom`` on a real agent program, and ``agentguard aibom`` reading the result."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import pytest

from agentguard import aibom
from agentguard.cli import main
from tests.aibom.models import write_safetensors

ROOT = Path(__file__).resolve().parents[2]
AGENTGUARD = str(Path(sys.executable).with_name("agentguard"))


def _props(component: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for prop in component.get("properties", []):
        out.setdefault(prop["name"], []).append(prop["value"])
    return out


@pytest.fixture(scope="module")
def run_result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the workload agent once under ``agentguard run --aibom`` and keep what it wrote."""
    tmp = tmp_path_factory.mktemp("aibom-run")
    models = tmp / "models"
    models.mkdir()
    embeddings = write_safetensors(models / "embeddings.safetensors", {"w": [0.1, 0.2, 0.3]})
    joblib.dump({"coef": [1.0, 2.0]}, models / "classifier.joblib")
    (tmp / "requirements.txt").write_text("langchain>=1.0\n")
    (tmp / "models.yaml").write_text(
        "models:\n  - id: scripted-*\n  - path: '*/embeddings.safetensors'\n"
        f"    sha256: {hashlib.sha256(embeddings.read_bytes()).hexdigest()}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTGUARD_", "OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    completed = subprocess.run(
        [AGENTGUARD, "run", "--exporter", "none", "--service-name", "triage-agent",
         "--findings-file", str(tmp / "findings.jsonl"), "--aibom", "bom.json",
         "--aibom-declared", str(tmp / "requirements.txt"), "--aibom-models",
         str(tmp / "models.yaml"), "--", str(ROOT / "tests/aibom/workload.py"), str(models)],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    findings = [json.loads(line) for line in (tmp / "findings.jsonl").read_text().splitlines()]
    return {"tmp": tmp, "models": models, "document": json.loads((tmp / "bom.json").read_text()),
            "findings": findings, "stderr": completed.stderr}


def test_run_writes_a_valid_aibom_at_exit(run_result: dict[str, Any]) -> None:
    """``agentguard run --aibom`` writes the program's CycloneDX 1.6 document when it exits."""
    document = run_result["document"]
    assert aibom.validate(document) == []
    assert document["metadata"]["component"]["name"] == "triage-agent"


def test_undeclared_import_in_a_tool(run_result: dict[str, Any]) -> None:
    """A tool importing a distribution the requirements miss (joblib) is reported once, in that
    tool's conversation and turn; declared packages and their installed requirements are not."""
    undeclared = [f for f in run_result["findings"] if f["rule_id"] == "BOM001"]
    joblib_findings = [f for f in undeclared if f["evidence"]["distribution"] == "joblib"]
    assert len(joblib_findings) == 1
    finding = joblib_findings[0]
    assert (finding["tool"], finding["conversation_id"], finding["turn"]) == \
        ("classify", "ticket-9", 1)
    assert finding["category"] == "supply-chain" and finding["kind"] == "module_load"
    flagged = {f["evidence"]["distribution"] for f in undeclared}
    assert not flagged & {"langchain", "langchain-core", "langgraph", "pydantic", "agentguard"}
    joblib_component = next(c for c in run_result["document"]["components"]
                            if c["name"] == "joblib")
    props = _props(joblib_component)
    assert props["agentguard:first_tool"] == ["classify"]
    assert props["agentguard:finding"] == ["BOM001"]
    assert props["agentguard:ai_framework"] == ["ml-runtime"]
    assert joblib_component["evidence"]["occurrences"][0]["symbol"] == "joblib"


def test_models_in_the_run(run_result: dict[str, Any]) -> None:
    """The document lists the model the agent called and both artifacts its tools loaded: the
    allowed safetensors file by digest, the joblib classifier as undeclared and pickle-family."""
    components = run_result["document"]["components"]
    models = {c["bom-ref"]: c for c in components if c["type"] == "machine-learning-model"}
    directory = run_result["models"]
    assert set(models) == {"model:scripted:scripted-1",
                           f"artifact:{directory}/embeddings.safetensors",
                           f"artifact:{directory}/classifier.joblib"}
    embeddings = _props(models[f"artifact:{directory}/embeddings.safetensors"])
    assert embeddings["agentguard:declared"] == ["true"] and "agentguard:finding" not in embeddings
    classifier = _props(models[f"artifact:{directory}/classifier.joblib"])
    assert sorted(classifier["agentguard:finding"]) == ["BOM002", "BOM004"]
    assert classifier["agentguard:first_tool"] == ["classify"]
    rules = {f["rule_id"] for f in run_result["findings"] if f["kind"] == "model_load"}
    assert {"BOM002", "AG021"} <= rules and "BOM004" not in rules  # the built-in rule reports it


def test_aibom_command_table_and_reachability(run_result: dict[str, Any],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """``agentguard aibom --bom`` prints the components with their findings and splits a
    vulnerability report into loaded and installed-only packages."""
    tmp = run_result["tmp"]
    (tmp / "audit.json").write_text(json.dumps({"dependencies": [
        {"name": "joblib", "version": "1.0", "vulns": [{"id": "PYSEC-1", "fix_versions": []}]},
        {"name": "moto", "version": "5.0", "vulns": [{"id": "PYSEC-2", "fix_versions": []}]},
    ]}))
    assert main(["aibom", "--bom", str(tmp / "bom.json"), "--vulns", str(tmp / "audit.json")]) == 0
    out = capsys.readouterr().out
    joblib_row = next(line for line in out.splitlines() if " joblib " in line)
    assert "classify" in joblib_row and "BOM001" in joblib_row
    assert "2 vulnerabilities in 2 packages; 1 in 1 packages loaded at runtime" in out
    assert "LOADED          joblib" in out and "installed-only  moto" in out


def test_aibom_command_redeclares(run_result: dict[str, Any], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """``--declared`` checks a written document against other declarations (joblib declared
    now), and ``--format cyclonedx-json`` prints a document that is still schema-valid."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("langchain\njoblib\n")
    assert main(["aibom", "--bom", str(run_result["tmp"] / "bom.json"), "--declared",
                 str(requirements), "--format", "cyclonedx-json"]) == 0
    document = json.loads(capsys.readouterr().out)
    joblib_component = next(c for c in document["components"] if c["name"] == "joblib")
    assert _props(joblib_component)["agentguard:declared"] == ["true"]
    assert aibom.validate(document) == []


def test_aibom_from_findings(run_result: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """``--from-findings`` turns the supply-chain findings of a findings file into a partial,
    schema-valid BOM; a bad file is refused with its line number."""
    tmp = run_result["tmp"]
    assert main(["aibom", "--from-findings", str(tmp / "findings.jsonl"),
                 "--format", "cyclonedx-json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert aibom.validate(document) == []
    names = {c["name"] for c in document["components"]}
    assert {"joblib", "classifier.joblib"} <= names
    (tmp / "bad.jsonl").write_text('{"rule_id": "BOM001"}\n')
    assert main(["aibom", "--from-findings", str(tmp / "bad.jsonl")]) == 2
    assert "bad.jsonl:1: not a finding" in capsys.readouterr().err
