"""End to end: an agent process sends its AI-BOM to a real collector; ``agentguard aibom --db`` reads it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentguard import aibom
from agentguard.cli import main
from agentguard.collector.daemon import Collector
from agentguard.collector.store import AgentProcess, Store
from tests.aibom.models import write_safetensors
from tests.collector.conftest import start_collector
from tests.collector.helpers import wait_for
from tests.collector.test_aibom_identity import _OLD_INVENTORIES

ROOT = Path(__file__).resolve().parents[2]
AGENTGUARD = str(Path(sys.executable).with_name("agentguard"))
AGENT = str(Path(__file__).with_name("emitting_agent.py"))
NODE = os.uname().nodename
# A sender's address as the receiver reports it, with a terminal escape sequence in it.
HOSTILE_SENDER = "10.0.0.9\x1b[2J"


def _props(component: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for prop in component.get("properties", []):
        out.setdefault(prop["name"], []).append(prop["value"])
    return out


def _entries(db: str) -> dict[tuple[str, str], dict[str, Any]]:
    store = Store(db, readonly=True)
    try:
        agents = store.inventories()
        if not agents:
            return {}
        return {(row["kind"], row["key"]): row["data"]
                for row in store.inventory_entries(agents[0]["id"])}
    finally:
        store.close()


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Run the emitting agent against a collector (the /proc sensor) and keep what was stored."""
    tmp = tmp_path_factory.mktemp("aibom-collected")
    collector: Collector = start_collector(tmp, sensor="procfs", poll_interval=0.2)
    models = tmp / "models"
    models.mkdir()
    write_safetensors(models / "embeddings.safetensors", {"w": [0.5, 0.25, 0.125]})
    (tmp / "requirements.txt").write_text("langchain>=1.0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTGUARD_", "OTEL_"))}
    env.update(PYTHONPATH=str(ROOT), AGENTGUARD_AIBOM_EMIT_INTERVAL="0.3")
    db = collector.settings.db
    process = subprocess.Popen(
        [sys.executable, AGENT, "http://" + collector.endpoints()["otlp_http"], str(models),
         str(tmp / "requirements.txt")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None and process.stdin is not None
        assert process.stdout.readline().strip() == "phase-one"
        # The agent is alive and waiting: what is stored now came from the periodic emission.
        during = wait_for(lambda: collector.sync() and
                          ("library", "joblib") in _entries(db) and _entries(db), timeout=20)
        process.stdin.write("go\n")
        process.stdin.flush()
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err[-3000:]
        assert collector.sync()
        store = Store(db, readonly=True)
        try:
            agents = store.inventories()
        finally:
            store.close()
        yield {"db": db, "pid": process.pid, "during": during, "agents": agents, "tmp": tmp,
               "models": models, "after": _entries(db)}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        collector.stop()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AGENTGUARD, "aibom", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``agentguard aibom ARGS`` in this process (the command itself runs once as a program)."""
    status = main(["aibom", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_periodic_emission_reaches_the_collector(collected: dict[str, Any]) -> None:
    """While the agent runs, the periodic emission puts its loaded packages in the collector's
    store, with the tool that first imported them and the undeclared-package finding."""
    joblib = collected["during"][("library", "joblib")]
    assert joblib["tool"] == "classify"
    assert joblib["findings"] == ["BOM001"]
    assert not joblib["preloaded"]
    assert collected["during"][("library", "langchain-core")]["version"]


def test_collector_keeps_one_inventory_per_agent(collected: dict[str, Any]) -> None:
    """The collector keeps one inventory for the agent process (service, host, pid), marked as
    ended by the emission the agent sent when it exited, with no emission missed."""
    [agent] = collected["agents"]
    assert (agent["service"], agent["pid"], agent["host"]) == \
        ("bom-agent", collected["pid"], os.uname().nodename)
    assert agent["final"] is True
    assert agent["gaps"] == 0 and agent["dropped"] == 0
    assert agent["sequence"] >= 2
    artifact = collected["after"][("artifact", str(collected["models"] / "embeddings.safetensors"))]
    assert artifact["tool"] == "embed" and len(artifact["sha256"]) == 64
    assert "BOM002" in artifact["findings"]


def test_aibom_db_prints_a_valid_cyclonedx_document(collected: dict[str, Any]) -> None:
    """``agentguard aibom --db PATH --format cyclonedx-json`` prints a schema-valid CycloneDX 1.6
    document of the agent's packages and models, with where and when each was loaded."""
    completed = _cli("--db", collected["db"], "--format", "cyclonedx-json")
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)
    assert aibom.validate(document) == []
    assert document["metadata"]["component"]["name"] == "bom-agent"
    assert _props(document["metadata"]["component"])["agentguard:pid"] == [str(collected["pid"])]
    by_name = {c["name"]: c for c in document["components"]}
    joblib = by_name["joblib"]
    assert joblib["purl"].startswith("pkg:pypi/joblib@")
    assert _props(joblib)["agentguard:first_tool"] == ["classify"]
    assert _props(joblib)["agentguard:finding"] == ["BOM001"]
    assert _props(by_name["langchain-core"])["agentguard:ai_framework"] == ["agent-framework"]
    path = str(collected["models"] / "embeddings.safetensors")
    artifact = next(c for c in document["components"] if c["bom-ref"] == f"artifact:{path}")
    assert artifact["type"] == "machine-learning-model"
    assert artifact["hashes"][0]["alg"] == "SHA-256"
    assert "BOM002" in _props(artifact)["agentguard:finding"]
    called = [c for c in document["components"]
              if _props(c).get("agentguard:model_kind") == ["called"]]
    assert called and all(c["type"] == "machine-learning-model" for c in called)
    # The dependency graph of what the agent loaded: langchain-core needs pydantic.
    graph = {d["ref"]: d.get("dependsOn", []) for d in document["dependencies"]}
    core = by_name["langchain-core"]["bom-ref"]
    assert by_name["pydantic"]["bom-ref"] in graph[core]


def test_aibom_db_table_and_agent_selection(collected: dict[str, Any],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The table names the agent's components and findings; ``--agent`` selects by service,
    pid or service@host:pid, and an unknown agent is an error that lists the known ones."""
    status, out, err = _main(capsys, "--db", collected["db"], "--agent", "bom-agent")
    assert status == 0, err
    assert "joblib" in out and "BOM001" in out
    status, out, _ = _main(capsys, "--db", collected["db"], "--agent", str(collected["pid"]),
                           "--format", "cyclonedx-json")
    assert json.loads(out)["metadata"]["component"]["name"] == "bom-agent"
    status, _, err = _main(capsys, "--db", collected["db"], "--agent", "other-agent")
    assert status == 2
    assert f"bom-agent@{os.uname().nodename}:{collected['pid']}" in err


def test_aibom_db_lists_several_agents(collected: dict[str, Any], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """With several agents in the store, the table lists them, and a document needs --agent."""
    db = str(tmp_path / "copy.db")
    with sqlite3.connect(collected["db"]) as source, sqlite3.connect(db) as target:
        source.backup(target)  # with what is still in the running collector's WAL
    store = Store(db)
    store.add_inventory(service="other-agent", host="node-b", pid=7, started=1.0, sequence=1,
                        final=False, info={}, entries=[("library", "requests", {"version": "2"})])
    store.commit()
    store.close()
    status, out, _ = _main(capsys, "--db", db)
    assert status == 0
    assert "other-agent@node-b:7" in out and "bom-agent@" in out and "2 agents" in out
    status, _, err = _main(capsys, "--db", db, "--format", "cyclonedx-json")
    assert status == 2 and "2 agents match" in err
    status, out, _ = _main(capsys, "--db", db, "--agent", "other-agent@node-b:7", "--format",
                           "cyclonedx-json")
    document = json.loads(out)
    assert aibom.validate(document) == []
    assert [c["name"] for c in document["components"]] == ["requests"]


def test_aibom_db_rechecks_against_declarations(collected: dict[str, Any],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """``--declared`` re-checks a stored inventory against another requirements file."""
    requirements = collected["tmp"] / "more-requirements.txt"
    requirements.write_text("langchain>=1.0\njoblib\n")
    status, out, err = _main(capsys, "--db", collected["db"], "--declared", str(requirements),
                             "--format", "cyclonedx-json")
    assert status == 0, err
    joblib = next(c for c in json.loads(out)["components"] if c["name"] == "joblib")
    assert _props(joblib)["agentguard:declared"] == ["true"]
    assert "agentguard:finding" not in _props(joblib)


# -- which inventory is whose ------------------------------------------------------------

def _with_claim(collected: dict[str, Any], tmp_path: Path, sender: str = "10.0.0.9") -> tuple[
        str, int]:
    """A copy of the database where a sender found on no process claims the agent's service,
    host and pid (a newer start, an entry of its own): the path and the claim's id."""
    db = str(tmp_path / "claimed.db")
    with sqlite3.connect(collected["db"]) as source, sqlite3.connect(db) as target:
        source.backup(target)
    store = Store(db)
    try:
        store.add_inventory(service="bom-agent", host=NODE, pid=collected["pid"],
                            started=4e9, sequence=9, final=True, info={},
                            entries=[("library", "evil-backdoor",
                                      {"name": "evil-backdoor", "version": "1"})],
                            process=None, sender=sender)
        store.commit()
        [claim] = [agent for agent in store.inventories() if not agent["verified"]]
    finally:
        store.close()
    return db, int(claim["id"])


def _names(document: dict[str, Any]) -> list[str]:
    return sorted(component["name"] for component in document["components"])


def test_the_table_marks_each_inventory_verified_or_whose_claim_it_is(
        collected: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two inventories naming the same ``service@host:pid`` are told apart in the table: the
    process's as verified with its host pid, the other as a claim of the sender's address, shown
    with its escape sequence written out, not acted upon."""
    db, claim = _with_claim(collected, tmp_path, sender=HOSTILE_SENDER)
    status, out, _ = _main(capsys, "--db", db)
    assert status == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("#")}
    own = rows[f"#{collected['agents'][0]['id']}"]
    assert f"bom-agent@{NODE}:{collected['pid']}" in own
    assert own.endswith(f"verified: host pid {collected['pid']}")
    assert rows[f"#{claim}"].endswith("unverified: claim of sender 10.0.0.9\\x1b[2J")
    assert "\x1b" not in out
    assert "2 agents (1 unverified" in out


def test_agent_naming_a_service_prefers_the_verified_inventory_and_says_so(
        collected: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--agent`` naming the service or pid both inventories claim shows the verified process's
    document, and says on stderr which one it chose and by which ``#id`` the other is shown."""
    db, claim = _with_claim(collected, tmp_path)
    for selector in ("bom-agent", str(collected["pid"]),
                     f"bom-agent@{NODE}:{collected['pid']}"):
        status, out, err = _main(capsys, "--db", db, "--agent", selector, "--format",
                                 "cyclonedx-json")
        assert status == 0, err
        document = json.loads(out)
        assert "evil-backdoor" not in _names(document) and "joblib" in _names(document)
        props = _props(document["metadata"]["component"])
        assert props["agentguard:verified"] == ["true"]
        assert props["agentguard:host_pid"] == [str(collected["pid"])]
        assert props["agentguard:process_started"][0].startswith("20")
        assert "agentguard:sender" not in props
        assert f"showing #{collected['agents'][0]['id']} " in err
        assert f"#{claim} bom-agent@{NODE}:{collected['pid']} (unverified: claim of " \
               f"sender 10.0.0.9)" in err


def test_a_document_of_a_senders_claim_says_it_is_unverified(
        collected: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The claim, chosen by its ``#id``, is a valid document whose agent component says it is
    not verified and names the sender; stderr says so too."""
    db, claim = _with_claim(collected, tmp_path)
    status, out, err = _main(capsys, "--db", db, "--agent", f"#{claim}", "--format",
                             "cyclonedx-json")
    assert status == 0, err
    document = json.loads(out)
    assert aibom.validate(document) == []
    assert _names(document) == ["evil-backdoor"]
    props = _props(document["metadata"]["component"])
    assert props["agentguard:verified"] == ["false"]
    assert props["agentguard:sender"] == ["10.0.0.9"]
    assert props["agentguard:pid"] == [str(collected["pid"])]
    assert "agentguard:host_pid" not in props
    assert f"showing #{claim} " in err and "not an inventory of a process the collector " \
                                           "verified" in err


def test_agent_matching_several_verified_inventories_names_each(
        collected: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Where two verified processes' inventories match (another process reported the same
    service, host and pid), ``--agent`` picks neither: the error lists each by ``#id`` and host
    pid, and the claim too, so the user can name one."""
    db, claim = _with_claim(collected, tmp_path)
    store = Store(db)
    try:
        store.add_inventory(service="bom-agent", host=NODE, pid=collected["pid"], started=5e9,
                            sequence=1, final=False, info={}, entries=[],
                            process=AgentProcess(4_000_000, "boot", 1, None))
        store.commit()
        [other] = [agent["id"] for agent in store.inventories()
                   if agent["host_pid"] == 4_000_000]
    finally:
        store.close()
    status, out, err = _main(capsys, "--db", db, "--agent", "bom-agent", "--format",
                             "cyclonedx-json")
    assert (status, out) == (2, "")
    assert "3 agents match" in err
    where = f"bom-agent@{NODE}:{collected['pid']}"
    for named in (f"#{collected['agents'][0]['id']} {where} (verified: host pid "
                  f"{collected['pid']})", f"#{other} {where} (verified: host pid 4000000)",
                  f"#{claim} {where} (unverified: claim of sender 10.0.0.9)"):
        assert named in err


def test_an_earlier_collectors_inventory_is_marked_unverified(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An inventory an earlier collector kept by what its spans claimed is shown as unverified,
    read as it is and after a collector moved it, in the table and in its document."""
    path = str(tmp_path / "old.db")
    with sqlite3.connect(path) as db:
        db.executescript(_OLD_INVENTORIES)
    for moved in (False, True):
        if moved:
            Store(path).close()
        status, out, err = _main(capsys, "--db", path, "--format", "cyclonedx-json")
        assert status == 0, err
        props = _props(json.loads(out)["metadata"]["component"])
        assert props["agentguard:verified"] == ["false"]
        assert props["agentguard:legacy"] == ["true"]
        assert "showing #5 svc@node:7 (unverified: kept by an earlier collector)" in err
