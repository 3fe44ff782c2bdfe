"""The AI-BOM on hostile and broken inputs: bad declaration files, runtime installs, odd file
names, absurd values from other processes, broken documents and reports, slow digests."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from agentguard import aibom
from agentguard.aibom import _environment, _inventory
from agentguard.aibom._wire import EVENT_ENTRY, decode_span
from agentguard.cli import main
from agentguard.collector.store import AgentProcess, Store

ROOT = Path(__file__).resolve().parents[2]
AGENTGUARD = str(Path(sys.executable).with_name("agentguard"))
BOOTSTRAP = str(ROOT / "agentguard" / "_bootstrap")


def _env(**extra: str) -> dict[str, str]:
    """A child environment without the caller's agentguard settings, importing this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTGUARD_", "OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _props(component: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for prop in component.get("properties", []):
        out.setdefault(prop["name"], []).append(prop["value"])
    return out


def _artifacts(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {_props(c)["agentguard:path"][0]: c for c in document["components"]
            if c["type"] == "machine-learning-model"
            and _props(c).get("agentguard:model_kind") == ["artifact"]}


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["aibom", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- agentguard run with declaration files that cannot be read ---------------------------------

PROBE = "import agentguard, pathlib, sys; pathlib.Path(sys.argv[1]).write_text(" \
        "repr(agentguard.get_guard() is not None))"


@pytest.mark.parametrize("option,content", [
    ("--aibom-declared", None),  # a typo: the file does not exist
    ("--aibom-models", b"models:\n  - id: \xff\xfe\n"),  # not UTF-8
    ("--aibom-declared", b'[project]\noptional-dependencies = ["a"]\n'),  # TOML of another shape
])
def test_run_refuses_unreadable_declarations_before_starting(tmp_path: Path, option: str,
                                                             content: bytes | None) -> None:
    """``agentguard run`` with a declared or models file it cannot read exits 2 with one line
    naming the file, and never starts the program (which would otherwise run unguarded)."""
    name = "models.yaml" if option == "--aibom-models" else \
        "pyproject.toml" if content else "requirments.txt"
    target = tmp_path / name
    if content is not None:
        target.write_bytes(content)
    marker = tmp_path / "ran"
    completed = subprocess.run(
        [AGENTGUARD, "run", "--exporter", "none", "--mode", "enforce", "--aibom", "bom.json",
         option, str(target), "--", sys.executable, "-c", PROBE, str(marker)],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 2, completed.stderr
    (line,) = completed.stderr.strip().splitlines()
    assert line.startswith("agentguard run: aibom: ") and str(target) in line
    assert not marker.exists()


def test_run_refuses_a_declared_file_name_the_environment_cannot_carry(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A declared file whose name holds a comma (the separator of the list setting) is refused
    before the program starts, instead of being split into two names that do not exist."""
    declared = tmp_path / "req,old.txt"
    declared.write_text("pyyaml\n")
    code = main(["run", "--aibom", str(tmp_path / "bom.json"), "--aibom-declared", str(declared),
                 "--", sys.executable, "-c", "pass"])
    assert code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"agentguard run: --aibom-declared {declared}: a file name with a comma")


def test_bootstrap_keeps_the_guard_when_declarations_become_unreadable(tmp_path: Path) -> None:
    """A program whose AI-BOM declarations cannot be read once it starts is still instrumented
    (the AI-BOM without them, its document written at exit) and the problem is said once."""
    marker = tmp_path / "guarded"
    code = ("import agentguard, pathlib, sys; from agentguard import aibom; "
            "pathlib.Path(sys.argv[1]).write_text(repr((agentguard.get_guard() is not None, "
            "aibom.stage() is not None)))")
    completed = subprocess.run(
        [sys.executable, "-c", code, str(marker)], cwd=tmp_path, timeout=120, check=False,
        capture_output=True, text=True,
        env=_env(PYTHONPATH=os.pathsep.join((BOOTSTRAP, str(ROOT))),
                 AGENTGUARD_AUTO_INSTRUMENT="1", AGENTGUARD_EXPORTER="none",
                 AGENTGUARD_MODE="enforce", AGENTGUARD_AIBOM_FILE=str(tmp_path / "bom.json"),
                 AGENTGUARD_AIBOM_DECLARED=str(tmp_path / "gone.txt")))
    assert completed.returncode == 0, completed.stderr
    assert marker.read_text() == "(True, True)"
    lines = completed.stderr.strip().splitlines()
    assert lines == [f"agentguard: AI-BOM declarations not used: {tmp_path / 'gone.txt'}: "
                     "cannot read: No such file or directory"]
    assert aibom.validate(json.loads((tmp_path / "bom.json").read_text())) == []


def test_run_passes_several_declared_files(tmp_path: Path) -> None:
    """Two ``--aibom-declared`` files both reach the program: it is guarded and its document
    names both (they were once joined into one unreadable name, which turned protection off)."""
    (tmp_path / "a.txt").write_text("pyyaml\n")
    (tmp_path / "b.txt").write_text("requests\n")
    marker = tmp_path / "ran"
    completed = subprocess.run(
        [AGENTGUARD, "run", "--exporter", "none", "--aibom", "bom.json", "--aibom-declared",
         "a.txt", "--aibom-declared", "b.txt", "--", sys.executable, "-c", PROBE, str(marker)],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    assert marker.read_text() == "True"
    assert completed.stderr == ""
    document = json.loads((tmp_path / "bom.json").read_text())
    files = _props({"properties": document["metadata"]["properties"]})["agentguard:declared_files"]
    assert files == [f"{tmp_path / 'a.txt'},{tmp_path / 'b.txt'}"]


# -- a package installed while the agent runs ---------------------------------------------------

def test_package_installed_at_runtime_is_a_distribution(tmp_path: Path, bom_guard: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution a tool installs into a ``sys.path`` directory after start-up and then imports
    is listed with its version and reported as undeclared, not taken for a local module."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    # The environment as read at start-up, before the install.
    monkeypatch.setattr(_environment, "_cached", _environment.Environment())
    (tmp_path / "requirements.txt").write_text("pyyaml\n")
    _, found = bom_guard(enable={"declared": [tmp_path / "requirements.txt"]})
    module = f"rtinstalled_{uuid.uuid4().hex[:8]}"
    dist = site / f"{module}-1.2.dist-info"
    dist.mkdir()  # what pip writes
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.2\n")
    (dist / "top_level.txt").write_text(f"{module}\n")
    (site / f"{module}.py").write_text("VALUE = 1\n")
    import importlib

    importlib.invalidate_caches()
    try:
        assert importlib.import_module(module).VALUE == 1
    finally:
        sys.modules.pop(module, None)
    name = module.replace("_", "-")
    assert [f.evidence["version"] for f in found
            if f.rule_id == "BOM001" and f.evidence["distribution"] == name] == ["1.2"]
    document = aibom.build(settle_timeout=5)
    assert [c["version"] for c in document["components"] if c["name"] == module] == ["1.2"]
    local = _props({"properties": document["metadata"]["properties"]})
    assert module not in local.get("agentguard:local_modules", [""])[0].split(",")


# -- models allow-list: a pinned file of an allowed repo ----------------------------------------

def test_a_pin_on_one_file_does_not_apply_to_the_repos_other_files(tmp_path: Path, bom_guard: Any,
                                                                   monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    """An allow-list entry with an id, a path and a digest pins only the file its path matches:
    fetching the same repo's config.json is allowed by the id, not a critical digest mismatch."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--adapter"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (snapshot / "adapter.safetensors").write_bytes(b"weights")
    (snapshot / "config.json").write_text("{}")
    models = tmp_path / "models.json"
    pinned = hashlib.sha256(b"weights").hexdigest()
    models.write_text(json.dumps({"models": [
        {"id": "org/adapter", "path": "*/adapter.safetensors", "sha256": pinned}]}))
    _, found = bom_guard(enable={"models_allowlist": models}, builtin_rules=False)
    for filename in ("adapter.safetensors", "config.json"):
        huggingface_hub.hf_hub_download("org/adapter", filename, local_files_only=True,
                                        cache_dir=str(tmp_path / "hub"))
    assert _inventory.inventory().hasher.wait(10.0)
    document = aibom.build(settle_timeout=10)
    assert [f.rule_id for f in found if f.rule_id.startswith("BOM")] == []
    flagged = {path: _props(c).get("agentguard:finding") for path, c in
               _artifacts(document).items()}
    assert flagged == {str(snapshot / "adapter.safetensors"): None,
                       str(snapshot / "config.json"): None}
    # The pin still holds where the path matches: other weights under that name are refused.
    (snapshot / "adapter.safetensors").write_bytes(b"tampered")
    _inventory.reset()
    _, found = bom_guard(enable={"models_allowlist": models}, builtin_rules=False)
    huggingface_hub.hf_hub_download("org/adapter", "adapter.safetensors", local_files_only=True,
                                    cache_dir=str(tmp_path / "hub"))
    assert _inventory.inventory().hasher.wait(10.0)  # judged on the hash thread, then done
    assert [(f.rule_id, f.severity) for f in found if f.rule_id.startswith("BOM")] == \
        [("BOM003", "critical")]


# -- digests still being taken when the document is built ---------------------------------------

def test_build_does_not_hash_on_the_callers_thread_after_the_timeout(tmp_path: Path,
                                                                     bom_guard: Any) -> None:
    """``build(settle_timeout=...)`` returns once the time is up: artifacts the hash thread has
    not reached have no digest and are marked ``agentguard:sha256_pending``, and get their
    digest from that thread later."""
    bom_guard(builtin_rules=False)
    inv = _inventory.inventory()
    release = threading.Event()
    hashed: list[str] = []

    def slow(artifact: _inventory.Artifact) -> None:
        # Holds the hash thread after its first digest, as a multi-gigabyte file would.
        hashed.append(artifact.path)
        release.wait(30)

    inv.on_hashed = slow
    paths = []
    for index in range(3):
        path = tmp_path / f"big{index}.safetensors"
        with open(path, "wb") as handle:  # over the sensor's 16 MiB: hashed off the hot path
            handle.truncate(20 << 20)
        with open(path, "rb") as handle:
            handle.read(8)
        paths.append(str(path))
    try:
        started = time.monotonic()
        document = aibom.build(settle_timeout=0.3)
        elapsed = time.monotonic() - started
        artifacts = _artifacts(document)
        pending = [p for p in paths if _props(artifacts[p]).get("agentguard:sha256_pending")]
        assert len(pending) == 2 and all("hashes" not in artifacts[p] for p in pending)
        assert hashed == [p for p in paths if p not in pending]
        assert elapsed < 5.0
    finally:
        release.set()
    assert inv.settle(30)
    document = aibom.build(settle_timeout=0)
    digest = hashlib.sha256(bytes(20 << 20)).hexdigest()
    for path in paths:
        component = _artifacts(document)[path]
        assert component["hashes"] == [{"alg": "SHA-256", "content": digest}]
        assert "agentguard:sha256_pending" not in _props(component)


# -- schema validation --------------------------------------------------------------------------

def test_validate_returns_the_schema_errors() -> None:
    """``aibom.validate()`` names each schema error with where it is in the document."""
    document = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
                "components": [{"type": "library", "name": "x", "bom-ref": "a",
                                "hashes": [{"alg": "SHA-256", "content": "zz"}]}]}
    (error,) = aibom.validate(document)
    assert error.startswith("$.components[0].hashes[0].content: 'zz' does not match")
    assert aibom.validate({**document, "version": "one", "components": []}) == \
        ["$.version: 'one' is not of type 'integer'"]


# -- what other processes report -----------------------------------------------------------------

def _store(tmp_path: Path, started: float, entries: list[tuple[str, str, dict[str, Any]]]) -> str:
    """A collector database holding one agent's inventory as given (no checks on the way in), as
    sent by a process the collector verified."""
    db = str(tmp_path / "collector.db")
    store = Store(db)
    try:
        store.add_inventory(service="evil-agent", host="h", pid=42, started=started, sequence=1,
                            final=False, info={}, entries=entries,
                            process=AgentProcess(42, "boot", 1))
        store.commit()
    finally:
        store.close()
    return db


def test_collected_absurd_values_still_make_a_valid_document(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    """Times no clock gives, a digest that is not one and a negative size, stored for an agent,
    give a table and a schema-valid CycloneDX document, not a traceback."""
    db = _store(tmp_path, 1e300, [
        ("artifact", "/m.bin", {"path": "/m.bin", "first_seen": 1e300, "sha256": "not-a-digest",
                                "size": -5}),
        ("artifact", "/n.bin", {"path": "/n.bin", "first_seen": -1e20}),
        ("module", "x", {"name": "x", "first_seen": float("nan")}),
        ("library", "lib", {"name": "lib", "version": "1", "first_seen": float("inf")}),
    ])
    code, out, err = _cli(capsys, "--db", db)
    assert (code, err) == (0, "")
    assert "m.bin" in out
    code, out, err = _cli(capsys, "--db", db, "--format", "cyclonedx-json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert aibom.validate(document) == []
    artifact = _artifacts(document)["/m.bin"]
    assert "hashes" not in artifact and "agentguard:size" not in _props(artifact)
    assert _props(artifact)["agentguard:first_seen"] == ["unknown"]


@pytest.mark.parametrize("attributes", [
    {"agentguard.aibom.started": 1e300}, {"agentguard.aibom.started": float("nan")},
    {"agentguard.aibom.started": -1.0}, {"process.pid": 2**70}, {"agentguard.aibom.sequence": -3},
])
def test_collector_refuses_spans_with_absurd_process_identity(attributes: dict[str, Any]) -> None:
    """An ``agentguard.aibom`` span whose start time, pid or sequence no real process has is not
    stored."""
    valid = {"process.pid": 42, "agentguard.aibom.started": 1.7e9, "agentguard.aibom.sequence": 1}
    event = {"agentguard.aibom.kind": "module", "agentguard.aibom.key": "x"}
    assert decode_span(valid, [(EVENT_ENTRY, 0, event)], "agent") is not None
    assert decode_span({**valid, **attributes}, [(EVENT_ENTRY, 0, event)], "agent") is None


# -- agentguard aibom on broken inputs ----------------------------------------------------------

GOOD = {"components": [{"type": "library", "name": "pyyaml",
                        "properties": [{"name": "agentguard:loaded", "value": "true"}]}]}


@pytest.mark.parametrize("files,argv,expected", [
    ({"b.json": '{"components": "x"}'}, ["--bom", "b.json"], "'components' is not an array"),
    ({"b.json": "[1, 2]"}, ["--bom", "b.json"], "an array, not an object"),
    ({"b.json": '{"components": [{"properties": [3]}]}'}, ["--bom", "b.json"],
     "components[0].properties[0] is not an object"),
    ({"b.json": "{not json"}, ["--bom", "b.json"], "not JSON"),
    ({"b.json": b'{"x": "\xff"}'}, ["--bom", "b.json"], "not UTF-8 JSON"),
    ({"v.json": '{"results": [{"packages": [1]}]}'}, ["--bom", "good.json", "--vulns", "v.json"],
     "results[0].packages[0] is not an object"),
    ({"v.json": '{"vulns": [1]}'}, ["--bom", "good.json", "--vulns", "v.json"],
     "vulns[0] is not an object"),
    ({"v.json": '{"dependencies": [{"name": "x", "vulns": ["PYSEC-1"]}]}'},
     ["--bom", "good.json", "--vulns", "v.json"], "dependencies[0].vulns[0] is not an object"),
    ({"pyproject.toml": 'project = "x"\n'}, ["--bom", "good.json", "--declared", "pyproject.toml"],
     "[project]: expected a table"),
    ({"uv.lock": "package = [1]\n"}, ["--bom", "good.json", "--declared", "uv.lock"],
     "package[0]: expected a table"),
    ({"pyproject.toml": '[project]\noptional-dependencies = ["a"]\n'},
     ["--bom", "good.json", "--declared", "pyproject.toml"],
     "[project.optional-dependencies]: expected a table"),
    ({"adir/x": ""}, ["--bom", "good.json", "-o", "adir"], "adir: is a directory"),
    ({}, ["--bom", "good.json", "-o", "missing/out.txt"], "missing/out.txt: No such file"),
    ({"f.jsonl": b'{"rule_id": "BOM001\xff"}\n'}, ["--from-findings", "f.jsonl"],
     "f.jsonl:1: not a finding: json: Invalid JSON"),
])
def test_aibom_command_reports_bad_inputs_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        files: dict[str, str | bytes], argv: list[str], expected: str) -> None:
    """A document, report, declared file or output path of the wrong shape is one line naming
    the file and exit status 2, never a traceback."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.json").write_text(json.dumps(GOOD))
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (tmp_path / name).write_bytes(content)
        else:
            (tmp_path / name).write_text(content)
    code, _, err = _cli(capsys, *argv)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("agentguard aibom: ") and expected in line, line
    named = [arg for arg in argv if arg in files or "/" in arg or arg == "adir"]
    assert all(name in line for name in named), line


def test_aibom_command_stops_quietly_when_the_reader_goes_away(tmp_path: Path) -> None:
    """``agentguard aibom ... | head`` whose reader has gone ends without a traceback."""
    (tmp_path / "good.json").write_text(json.dumps(GOOD))
    process = subprocess.Popen([AGENTGUARD, "aibom", "--bom", "good.json"], cwd=tmp_path,
                               env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before anything was written
    err = process.stderr.read()
    assert process.wait(timeout=120) == 1
    assert err == b""


def test_from_findings_takes_only_text_and_digests_from_evidence(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Findings whose evidence holds lists, numbers or a malformed digest give a valid partial
    document from what is usable."""
    base = {"category": "supply-chain", "severity": "high", "title": "t", "action": "alert",
            "kind": "model_load", "timestamp": 1.0}
    lines = [{**base, "rule_id": "BOM001", "evidence": {"distribution": ["a", "b"], "version": 3}},
             {**base, "rule_id": "BOM001", "evidence": {"distribution": "yaml", "version": 3}},
             {**base, "rule_id": "BOM004", "evidence": {"path": "/m.pkl", "sha256": "xyz"}},
             {**base, "rule_id": "BOM004", "evidence": {"path": "/n.pkl", "sha256": 12345}},
             {**base, "rule_id": "BOM004", "evidence": {"path": 7}}]
    findings = tmp_path / "findings.jsonl"
    findings.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, out, err = _cli(capsys, "--from-findings", str(findings), "--format", "cyclonedx-json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert aibom.validate(document) == []
    assert sorted(c["name"] for c in document["components"]) == ["m.pkl", "n.pkl", "yaml"]
    assert all("hashes" not in c for c in document["components"])


# -- declaration files that are not UTF-8 -------------------------------------------------------

@pytest.mark.parametrize("name,content,where", [
    ("requirements.txt", b"pyyaml\nr\xe9quests\n", ":2: not UTF-8 text: byte 0xe9 at offset 8"),
    ("models.yaml", b"models:\n  - id: \xff\n", ":2: not UTF-8 text: byte 0xff at offset 16"),
])
def test_non_utf8_declarations_name_the_file_and_offset(tmp_path: Path, name: str,
                                                        content: bytes, where: str) -> None:
    """A declared or models file that is not UTF-8 is a DeclaredError naming the file, line and
    byte offset."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(aibom.DeclaredError) as raised:
        if name == "models.yaml":
            aibom.load_declared((), path)
        else:
            aibom.load_declared([path])
    assert str(raised.value) == f"{path}{where}"


# -- model file names with control characters or bytes that are not UTF-8 -----------------------

def test_odd_model_file_names_are_escaped_and_recoverable(tmp_path: Path, bom_guard: Any,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    """A model whose file name holds terminal escapes or a byte that is not UTF-8 is written to
    the document as valid UTF-8 with its bytes recoverable, and shown escaped in the table."""
    bom_guard(builtin_rules=False)
    names = [b"m\xff.pkl", b"evil\x1b]0;pwned\x07\x1b[2J.pkl"]
    raw_paths = [os.path.join(os.fsencode(tmp_path), name) for name in names]
    for raw in raw_paths:
        with open(raw, "wb") as handle:
            pickle.dump(1, handle)
        with open(raw, "rb") as handle:
            pickle.load(handle)
    bom = tmp_path / "bom.json"
    aibom.write(bom, settle_timeout=10)
    text = bom.read_bytes().decode("utf-8")
    assert "\\udcff" not in text
    document = json.loads(text)
    assert aibom.validate(document) == []
    escaped = f"{tmp_path}/m\\xff.pkl"
    props = _props(_artifacts(document)[escaped])
    assert bytes.fromhex(props["agentguard:path_bytes_hex"][0]) == raw_paths[0]
    assert "agentguard:path_bytes_hex" not in _props(_artifacts(document)[os.fsdecode(raw_paths[1])])
    code, out, err = _cli(capsys, "--bom", str(bom))
    assert (code, err) == (0, "")
    assert "\x1b" not in out and "\x07" not in out
    assert "evil\\x1b]0;pwned\\x07\\x1b[2J.pkl" in out and "m\\xff.pkl" in out
    # A terminal that takes only UTF-8 gets the table too.
    completed = subprocess.run([AGENTGUARD, "aibom", "--bom", str(bom)], capture_output=True,
                               env=_env(PYTHONIOENCODING="utf-8:strict"), timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    completed.stdout.decode("utf-8")


# -- a vulnerability report whose file name looks like JSON -------------------------------------

def test_vulns_report_named_like_json_is_read_as_a_file(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """``--vulns "[audit].json"`` reads that file (a name starting with ``[`` or ``{`` is not
    JSON text)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.json").write_text(json.dumps(GOOD))
    report = {"dependencies": [{"name": "PyYAML", "version": "6.0",
                                "vulns": [{"id": "PYSEC-0000-1", "fix_versions": []}]}]}
    for name in ("[audit].json", "{audit}.json"):
        (tmp_path / name).write_text(json.dumps(report))
        code, out, err = _cli(capsys, "--bom", "good.json", "--vulns", name)
        assert (code, err) == (0, "")
        assert "LOADED          pyyaml 6.0: PYSEC-0000-1" in out
        assert aibom.reachability(name, loaded=["pyyaml"]).loaded[0].name == "pyyaml"
