"""``transformers`` ``from_pretrained`` through the real library (configurations and tokenizers,
no torch): a local model directory and a hub model from a local cache, no network."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from agentguard import aibom
from agentguard.aibom import _hub, _inventory
from tests.sensors.helpers import run_tool

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

COMMIT = "89abcdef0123456789abcdef0123456789abcdef"
REPO = "acme/tiny-triage"


def _model_dir(directory: Path) -> Path:
    """A tiny BERT-shaped model directory: its configuration and a word-level tokenizer."""
    directory.mkdir(parents=True)
    vocab = {"[UNK]": 0, "[PAD]": 1, "printer": 2, "on": 3, "fire": 4}
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]", "pad_token": "[PAD]",
        "model_max_length": 32}))
    (directory / "config.json").write_text(json.dumps({
        "model_type": "bert", "vocab_size": len(vocab), "hidden_size": 8,
        "num_hidden_layers": 1, "num_attention_heads": 1, "intermediate_size": 8}))
    return directory


def _hub_cache(root: Path) -> Path:
    """A hub cache holding one commit of the model, laid out as huggingface_hub keeps it."""
    repo = root / "models--acme--tiny-triage"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    _model_dir(repo / "snapshots" / COMMIT)
    return root


def _digests(directory: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in directory.iterdir()}


def _load(model: str, cache: str | None = None) -> list[int]:
    """Load the tokenizer and configuration the way an agent's tool does, and encode a text."""
    options: dict[str, Any] = {"cache_dir": cache, "local_files_only": True} if cache else {}
    tokenizer = transformers.AutoTokenizer.from_pretrained(model, **options)
    config = transformers.AutoConfig.from_pretrained(model, **options)
    assert config.model_type == "bert"
    return list(tokenizer("printer on fire")["input_ids"])


def test_transformers_entry_points_are_patched(bom_guard: Any) -> None:
    """With transformers present (and no torch), its configuration and tokenizer loaders are
    patched when transformers imports them (lazily, after the AI-BOM was turned on)."""
    bom_guard(enable={})
    assert transformers.AutoTokenizer and transformers.AutoConfig and \
        transformers.PreTrainedTokenizerBase
    assert {"transformers.configuration_utils.PreTrainedConfig.get_config_dict",
            "transformers.tokenization_utils_base.PreTrainedTokenizerBase.from_pretrained",
            "transformers.models.auto.tokenization_auto.AutoTokenizer.from_pretrained"} <= \
        _hub.installed_targets()


def test_local_model_directory(tmp_path: Path, bom_guard: Any) -> None:
    """A model directory loaded with ``from_pretrained`` inside a tool is inventoried as one
    model with each of its files and their digests, and is an undeclared model (BOM002) when
    the allow-list does not name it."""
    model = _model_dir(tmp_path / "models" / "tiny-triage")
    allowlist = tmp_path / "models.yaml"
    allowlist.write_text("models:\n  - id: acme/approved-*\n")
    _, found = bom_guard(enable={"models_allowlist": allowlist})
    assert run_tool(_load, "tokenize", model=str(model)) == "[2, 3, 4]"
    inv = _inventory.inventory()
    inv.settle(10)
    files = {Path(a.path).name: a for a in inv.artifacts.values()
             if a.model_id == str(model) and a.format != "directory"}
    assert {name: a.sha256 for name, a in files.items()} == _digests(model)
    assert inv.artifacts[str(model)].format == "directory"
    assert {a.source for a in files.values()} == \
        {"transformers.AutoTokenizer.from_pretrained"}
    assert all(a.seen.tool == "tokenize" for a in files.values())
    undeclared = [f for f in found if f.rule_id == "BOM002"]
    assert [(f.tool, f.evidence["model_id"], f.evidence["format"]) for f in undeclared] == \
        [("tokenize", str(model), "directory")]
    document = aibom.build()
    assert aibom.validate(document) == []
    hashed = {c["name"] for c in document["components"] if c.get("hashes")}
    assert str(model) in hashed


def test_hub_model_from_the_local_cache(tmp_path: Path, bom_guard: Any) -> None:
    """A hub model loaded from the cache (offline) is inventoried with its repo id, the commit
    the cache resolved, each file fetched with its digest, and reported as undeclared; the
    document names it by a huggingface purl pinned to the commit."""
    cache = _hub_cache(tmp_path / "hub")
    allowlist = tmp_path / "models.yaml"
    allowlist.write_text("models:\n  - id: acme/approved-*\n")
    _, found = bom_guard(enable={"models_allowlist": allowlist})
    assert run_tool(_load, "tokenize", model=REPO, cache=str(cache)) == "[2, 3, 4]"
    inv = _inventory.inventory()
    inv.settle(10)
    # (A snapshot_download the loader made is there too, with no file name.)
    downloads = {d.filename: d for d in inv.downloads.values() if d.repo_id == REPO and d.filename}
    assert set(downloads) == {"config.json", "tokenizer.json", "tokenizer_config.json"}
    assert {d.revision for d in downloads.values()} == {COMMIT}
    assert {d.seen.tool for d in downloads.values()} == {"tokenize"}
    snapshot = cache / "models--acme--tiny-triage" / "snapshots" / COMMIT
    files = {Path(a.path).name: a for a in inv.artifacts.values()
             if a.model_id == REPO and not a.path.startswith("hub:")}
    assert {name: a.sha256 for name, a in files.items()} == _digests(snapshot)
    assert {a.revision for a in files.values()} == {COMMIT}
    undeclared = [f for f in found if f.rule_id == "BOM002"]
    assert [(f.tool, f.evidence["model_id"], f.evidence["path"]) for f in undeclared] == \
        [("tokenize", REPO, f"hub:{REPO}")]
    document = aibom.build()
    assert aibom.validate(document) == []
    purls = {c.get("purl") for c in document["components"]}
    assert f"pkg:huggingface/acme/tiny-triage@{COMMIT}" in purls


def test_allowed_hub_model_at_its_pinned_commit(tmp_path: Path, bom_guard: Any) -> None:
    """A hub model the allow-list names at the commit the cache resolved is not a finding; at
    another pinned commit it is a critical one (BOM003)."""
    cache = _hub_cache(tmp_path / "hub")
    allowlist = tmp_path / "models.yaml"
    allowlist.write_text(f"models:\n  - id: {REPO}\n    revision: '{COMMIT}'\n")
    _, found = bom_guard(enable={"models_allowlist": allowlist})
    run_tool(_load, "tokenize", model=REPO, cache=str(cache))
    _inventory.inventory().settle(10)
    assert [f.rule_id for f in found if f.rule_id.startswith("BOM")] == []

    aibom.disable()
    _inventory.reset()
    found.clear()
    allowlist.write_text(f"models:\n  - id: {REPO}\n    revision: '{'e' * 40}'\n")
    aibom.enable(models_allowlist=allowlist)
    run_tool(_load, "tokenize", model=REPO, cache=str(cache))
    assert [(f.rule_id, f.severity) for f in found if f.rule_id.startswith("BOM")] == \
        [("BOM003", "critical")]
