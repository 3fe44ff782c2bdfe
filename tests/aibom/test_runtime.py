"""Runtime inventory and diff findings: models loaded in tools, hashes, pickle payloads, model calls."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import agentguard
from agentguard import aibom
from agentguard.aibom import _inventory
from agentguard.events import EventContext, ModelLoad
from tests.aibom.models import read_safetensors, write_safetensors, write_trapped_pickle
from tests.integrations.langchain.agents import call, make_agent, say
from tests.sensors.helpers import events, run_tool


def _load_tensors(path: str) -> int:
    """Load an embedding table."""
    return len(read_safetensors(path))


def _component(document: dict[str, Any], ref: str) -> dict[str, Any]:
    found = [c for c in document["components"] if c["bom-ref"] == ref]
    assert len(found) == 1, [c["bom-ref"] for c in document["components"]]
    return found[0]


def _props(component: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for prop in component.get("properties", []):
        out.setdefault(prop["name"], []).append(prop["value"])
    return out


def test_safetensors_not_on_allowlist(tmp_path: Path, bom_guard: Any, spans: Any) -> None:
    """A safetensors file opened inside a tool and missing from the allow-list is reported as an
    undeclared model, attributed to the tool, and listed in the BOM with its digest and evidence."""
    allowed = write_safetensors(tmp_path / "approved.safetensors", {"w": [1.0]})
    adapter = write_safetensors(tmp_path / "adapter.safetensors", {"lora_a": [0.5, 0.25, 0.125]})
    digest = hashlib.sha256(adapter.read_bytes()).hexdigest()
    models = tmp_path / "models.yaml"
    models.write_text(f"models:\n  - path: '*/approved.safetensors'\n"
                      f"    sha256: {hashlib.sha256(allowed.read_bytes()).hexdigest()}\n")
    _, found = bom_guard(enable={"models_allowlist": models})

    assert run_tool(_load_tensors, "load_adapter", path=str(adapter)) == "1"
    assert run_tool(_load_tensors, "load_base", path=str(allowed)) == "1"

    bom_findings = [f for f in found if f.rule_id.startswith("BOM")]
    assert [(f.rule_id, f.tool, f.category, f.evidence["path"]) for f in bom_findings] == \
        [("BOM002", "load_adapter", "supply-chain", str(adapter))]
    assert bom_findings[0].evidence["sha256"] == digest
    tool_span = spans.one("execute_tool load_adapter")
    assert "BOM002" in tool_span.attributes["agentguard.finding.rule_ids"]
    assert [e["file.path"] for e in events(tool_span, "model.load")] == [str(adapter)]

    document = aibom.build()
    component = _component(document, f"artifact:{adapter}")
    assert component["type"] == "machine-learning-model"
    assert component["hashes"] == [{"alg": "SHA-256", "content": digest}]
    props = _props(component)
    assert props["agentguard:first_tool"] == ["load_adapter"]
    assert props["agentguard:format"] == ["safetensors"]
    assert props["agentguard:declared"] == ["false"]
    assert props["agentguard:finding"] == ["BOM002"]
    assert component["evidence"]["occurrences"][0]["location"] == str(adapter)
    assert _props(_component(document, f"artifact:{allowed}"))["agentguard:declared"] == ["true"]


def test_hash_mismatch_alerts_and_blocks_in_enforce(tmp_path: Path, bom_guard: Any) -> None:
    """An artifact whose digest differs from the one the allow-list pins is a critical finding;
    with ``block=True`` in enforce mode the open is refused before the file is read."""
    model = write_safetensors(tmp_path / "adapter.safetensors", {"w": [1.0, 2.0]})
    models = tmp_path / "models.json"
    models.write_text('{"models": [{"id": "org/adapter", "path": "*/adapter.safetensors", '
                      '"sha256": "' + "0" * 64 + '"}]}')
    _, found = bom_guard(enable={"models_allowlist": models})
    run_tool(_load_tensors, "load", path=str(model))
    mismatch = [f for f in found if f.rule_id == "BOM003"]
    assert len(mismatch) == 1
    assert mismatch[0].severity == "critical" and mismatch[0].action == "alert"
    assert mismatch[0].evidence["expected_sha256"] == ["0" * 64]
    assert mismatch[0].evidence["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()

    agentguard.uninstrument()
    _inventory.reset()
    _, found = bom_guard(enable={"models_allowlist": models, "block": True}, mode="enforce",
                         builtin_rules=False, on_block="raise")
    with pytest.raises(PermissionError, match=r"agentguard blocked model load .*\[BOM003\]"):
        run_tool(_load_tensors, "load", path=str(model))
    assert [f.action for f in found if f.rule_id == "BOM003"] == ["block"]


def test_pickle_payload_chain(tmp_path: Path, bom_guard: Any, spans: Any) -> None:
    """A pickle "model" whose payload spawns a process while it loads: the BOM rule reports the
    pickle format, the sensor the spawn during the load, and the BOM links that finding to the
    artifact; the tool span shows load → exec → findings in order."""
    marker = tmp_path / "payload-ran"
    trapped = write_trapped_pickle(tmp_path / "classifier.pkl", marker)
    models = tmp_path / "models.yaml"
    models.write_text("models: []\n")  # nothing allowed
    _, found = bom_guard(enable={"models_allowlist": models}, mode="monitor", builtin_rules=False)

    def load_classifier(path: str) -> str:
        """Load the classifier."""
        import pickle

        with open(path, "rb") as handle:
            return type(pickle.load(handle)).__name__

    assert run_tool(load_classifier, path=str(trapped)) == "dict"
    assert marker.exists()  # monitor mode: the payload really ran

    rules = [f.rule_id for f in found]
    assert "BOM004" in rules  # the built-in pack is off, so the BOM rule reports the format
    assert "BOM002" in rules  # an empty allow-list allows no model
    assert "sensor-unsafe-pickle" in rules and "sensor-model-load-activity" in rules
    assert rules.index("BOM004") < rules.index("sensor-model-load-activity")
    spawn = next(f for f in found if f.rule_id == "sensor-model-load-activity")
    assert spawn.tool == "load_classifier" and spawn.evidence["model"] == str(trapped)

    tool_span = spans.one("execute_tool load_classifier")
    names = [e.name for e in tool_span.events]
    assert names.index("model.load") < names.index("process.exec")
    execs = events(tool_span, "process.exec")
    assert execs[0]["agentguard.model.loading"] == str(trapped)

    artifact = _inventory.inventory().artifacts[str(trapped)]
    assert {a["rule_id"] for a in artifact.activity} == {"sensor-unsafe-pickle",
                                                        "sensor-model-load-activity"}
    assert all(a["span_id"] == spans.one("execute_tool load_classifier").context.span_id
               .to_bytes(8, "big").hex() for a in artifact.activity)
    props = _props(_component(aibom.build(), f"artifact:{trapped}"))
    assert "BOM004" in props["agentguard:finding"]
    assert any(v.startswith("sensor-model-load-activity:") for v in props["agentguard:load_activity"])


def test_builtin_pickle_rule_is_not_repeated(tmp_path: Path, bom_guard: Any) -> None:
    """With the built-in policy pack on, its pickle-model rule reports the load once; BOM004 stays
    in the document only."""
    path = tmp_path / "weights.pkl"
    import pickle

    path.write_bytes(pickle.dumps([1, 2, 3]))
    _, found = bom_guard()

    def load(path: str) -> str:
        """Load weights."""
        with open(path, "rb") as handle:
            return str(pickle.load(handle))

    run_tool(load, path=str(path))
    rules = [f.rule_id for f in found]
    assert "AG021" in rules and "BOM004" not in rules
    assert "BOM004" in _props(_component(aibom.build(), f"artifact:{path}"))["agentguard:finding"]


def test_model_calls_against_allowlist(tmp_path: Path, bom_guard: Any) -> None:
    """Models a real LangChain agent calls are inventoried with provider and tool context; a model
    missing from the allow-list is reported once, an allowed one (glob) not at all."""
    models = tmp_path / "models.yaml"
    models.write_text("models:\n  - id: anthropic.claude-3-haiku-*\n    provider: aws.bedrock\n")
    _, found = bom_guard(enable={"models_allowlist": models})
    agent = make_agent([say("", call("get_weather", city="Oslo")), say("done")])
    with agentguard.conversation("c-1"):
        agent.invoke({"messages": [{"role": "user", "content": "weather?"}]})
    undeclared = [f for f in found if f.rule_id == "BOM002"]
    assert len(undeclared) == 1
    assert undeclared[0].kind == "model_call"
    assert undeclared[0].evidence == {"provider": "scripted", "model": "scripted-1"}
    use = _inventory.inventory().models[("scripted", "scripted-1")]
    assert use.seen.count == 2 and use.seen.conversation_id == "c-1"

    agentguard.uninstrument()
    models.write_text("models:\n  - id: scripted-*\n")
    _, found = bom_guard(enable={"models_allowlist": models})
    make_agent([say("done")]).invoke({"messages": [{"role": "user", "content": "hi"}]})
    assert [f for f in found if f.rule_id.startswith("BOM")] == []
    component = _component(aibom.build(), "model:scripted:scripted-1")
    assert component["type"] == "machine-learning-model" and component["group"] == "scripted"


def test_large_artifact_hashed_off_the_hot_path(tmp_path: Path, bom_guard: Any) -> None:
    """A model file too large for the sensor to hash on the agent's thread is hashed by the
    inventory's own thread, checked against the allow-list then (a wrong digest is reported late,
    a right one not at all, and nothing is called undeclared early), and the document carries
    its digest."""
    big = tmp_path / "big.gguf"
    big.write_bytes(b"GGUF" + b"\x01" * (17 << 20))
    good = tmp_path / "good.gguf"
    good.write_bytes(b"GGUF" + b"\x02" * (17 << 20))
    good_digest = hashlib.sha256(good.read_bytes()).hexdigest()
    models = tmp_path / "models.yaml"
    models.write_text(f"models:\n  - path: '*/big.gguf'\n    sha256: {'ab' * 32}\n"
                      f"  - sha256: {good_digest}\n")
    _, found = bom_guard(enable={"models_allowlist": models})

    def load(path: str) -> int:
        """Read the model header."""
        with open(path, "rb") as handle:
            return len(handle.read(4))

    run_tool(load, path=str(big))
    run_tool(load, path=str(good))
    assert [f for f in found if f.rule_id.startswith("BOM")] == []  # nothing known yet
    inv = _inventory.inventory()
    assert inv.hasher.wait(30.0)
    late = [f for f in found if f.rule_id.startswith("BOM")]
    assert [(f.rule_id, f.tool, f.evidence["path"]) for f in late] == \
        [("BOM003", "load", str(big))]
    assert late[0].evidence["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()
    artifact = inv.artifacts[str(big)]
    assert artifact.format == "gguf" and artifact.size == big.stat().st_size
    document = aibom.build()
    component = _component(document, f"artifact:{big}")
    assert component["hashes"][0]["content"] == late[0].evidence["sha256"]
    assert _props(_component(document, f"artifact:{good}"))["agentguard:declared"] == ["true"]


def test_inventory_is_thread_safe_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Concurrent loads from many threads are all counted; past the limit, new artifacts are
    dropped and counted instead of stored."""
    monkeypatch.setattr(_inventory, "MAX_ARTIFACTS", 50)
    inv = _inventory.Inventory()
    context = EventContext(tool="t")

    def worker(n: int) -> None:
        for i in range(40):
            inv.record_artifact(ModelLoad(context=context, path=f"/m/{n}-{i % 10}.onnx",
                                          format="onnx", sha256="ab" * 32, size=1))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = inv.counts()
    assert counts["artifacts"] == 50
    stored = sum(a.seen.count for a in inv.artifacts.values())
    assert stored + counts["dropped"]["artifacts"] == 8 * 40


def test_large_environment_inventoried_quickly() -> None:
    """The whole installed environment (well over a hundred distributions) is read, mapped to
    modules and written as a valid CycloneDX document in well under a second."""
    from agentguard.aibom._cyclonedx import to_bom, to_json
    from agentguard.aibom._environment import Environment

    started = time.perf_counter()
    env = Environment()
    inv = _inventory.Inventory()
    inv.snapshot()
    text = to_json(to_bom(inv, include_installed=True, env=env))
    elapsed = time.perf_counter() - started
    assert len(env.distributions) >= 100
    assert text.count('"type": "library"') == len(env.distributions)
    # Typically about 0.3 s here; the bound leaves room for a loaded shared machine.
    assert elapsed < 3.0, elapsed
