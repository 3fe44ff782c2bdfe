"""Hub downloads through the real ``huggingface_hub`` (from a local cache, no network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentguard import aibom
from agentguard.aibom import _inventory
from tests.aibom.models import write_safetensors
from tests.sensors.helpers import run_tool

huggingface_hub = pytest.importorskip("huggingface_hub")

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "acme/sentiment-lora"


def _cache(root: Path) -> Path:
    """A hub cache holding one revision of one repo, laid out as huggingface_hub keeps it."""
    repo = root / "models--acme--sentiment-lora"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    write_safetensors(snapshot / "adapter_model.safetensors", {"lora_a": [0.5, 0.25]})
    return root


def _fetch(cache: str) -> str:
    """Fetch the adapter from the hub."""
    return str(huggingface_hub.hf_hub_download(REPO, "adapter_model.safetensors",
                                                cache_dir=cache, local_files_only=True))


def _props(component: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for prop in component.get("properties", []):
        out.setdefault(prop["name"], []).append(prop["value"])
    return out


def test_undeclared_hub_adapter(tmp_path: Path, bom_guard: Any) -> None:
    """An adapter fetched from the hub inside a tool is inventoried with its repo id and the
    revision the cache resolved, and reported when the allow-list does not name it."""
    cache = _cache(tmp_path / "hub")
    models = tmp_path / "models.yaml"
    models.write_text("models:\n  - id: acme/base-*\n")
    _, found = bom_guard(enable={"models_allowlist": models})
    path = run_tool(_fetch, "fetch_adapter", cache=str(cache))
    assert _inventory.inventory().hasher.wait(10.0)
    undeclared = [f for f in found if f.rule_id == "BOM002"]
    assert [(f.tool, f.evidence["model_id"], f.evidence["path"]) for f in undeclared] == \
        [("fetch_adapter", REPO, path)]
    download = next(iter(_inventory.inventory().downloads.values()))
    assert (download.repo_id, download.revision, download.seen.tool) == \
        (REPO, COMMIT, "fetch_adapter")
    document = aibom.build()
    assert aibom.validate(document) == []
    hub = next(c for c in document["components"] if c["bom-ref"].startswith("hub:"))
    assert hub["purl"] == f"pkg:huggingface/acme/sentiment-lora@{COMMIT}"
    artifact = next(c for c in document["components"] if c["bom-ref"] == f"artifact:{path}")
    assert _props(artifact)["agentguard:revision"] == [COMMIT]
    assert artifact["name"] == REPO


def test_hub_revision_pinned(tmp_path: Path, bom_guard: Any) -> None:
    """A repo the allow-list names at another revision (a new upload) is a critical finding; at
    the pinned revision it is allowed."""
    cache = _cache(tmp_path / "hub")
    models = tmp_path / "models.yaml"
    models.write_text(f"models:\n  - id: {REPO}\n    revision: '{'f' * 40}'\n")
    _, found = bom_guard(enable={"models_allowlist": models})
    run_tool(_fetch, "fetch_adapter", cache=str(cache))
    assert _inventory.inventory().hasher.wait(10.0)
    assert [(f.rule_id, f.severity, f.evidence["revision"]) for f in found
            if f.rule_id.startswith("BOM")] == [("BOM003", "critical", COMMIT)]

    aibom.disable()
    _inventory.reset()
    models.write_text(f"models:\n  - id: {REPO}\n    revision: '{COMMIT}'\n")
    found.clear()
    aibom.enable(models_allowlist=models)
    run_tool(_fetch, "fetch_adapter", cache=str(cache))
    assert _inventory.inventory().hasher.wait(10.0)
    assert [f for f in found if f.rule_id.startswith("BOM")] == []
