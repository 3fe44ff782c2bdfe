"""File opens, module imports and native library loads inside tool calls."""

from __future__ import annotations

import contextlib
import ctypes.util
import importlib
import importlib.metadata
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agentguard
from tests.sensors.helpers import Recorder, events, run_tool


def test_writes_are_reported_and_ordinary_reads_are_not(guarded: Any, spans: Any,
                                                        tmp_path: Path) -> None:
    """A write in a tool is a file.open event; reading an ordinary file is not an event."""
    data = tmp_path / "notes.txt"
    data.write_text("hello")
    out = tmp_path / "out.txt"
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)

    def copy() -> str:
        """Copy a file."""
        text = data.read_text()
        with open(out, "a") as handle:
            handle.write(text)
        return text

    assert run_tool(copy) == "hello"
    (event,) = events(spans.one("execute_tool copy"), "file.open")
    assert event == {"file.path": str(out), "agentguard.file.write": True}
    (opened,) = recorder.of("file_open")
    assert (opened.path, opened.mode, opened.write) == (str(out), "a", True)
    assert opened.context.tool == "copy"


def test_credential_reads_are_reported(guarded: Any, spans: Any, tmp_path: Path) -> None:
    """Reading cloud credentials, an SSH key or a .env file is a file.open event marked as a
    credential, even through a relative path."""
    guarded()
    files = [tmp_path / ".aws" / "credentials", tmp_path / "keys" / "id_ed25519",
             tmp_path / "app" / ".env"]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("secret")

    def snoop() -> str:
        """Read credentials."""
        cwd = os.getcwd()
        os.chdir(tmp_path)
        try:
            return "".join(open(path).read() for path in (".aws/credentials",
                                                          files[1], files[2]))
        finally:
            os.chdir(cwd)

    run_tool(snoop)
    opened = events(spans.one("execute_tool snoop"), "file.open")
    assert [(e["file.path"], e["agentguard.file.category"], e["agentguard.file.write"])
            for e in opened] == [(str(path), "credential", False) for path in files]


def test_enforce_blocks_a_credential_read_before_the_file_opens(
        guarded: Any, spans: Any, tmp_path: Path) -> None:
    """A blocked open raises PermissionError in the tool before the file is opened."""
    secret = tmp_path / ".ssh" / "id_rsa"
    secret.parent.mkdir()
    secret.write_text("PRIVATE KEY")
    findings: list[agentguard.Finding] = []
    guarded(on_block="raise", mode="enforce", builtin_rules=False, on_finding=findings.append,
            policy=[Recorder(block=lambda e: e.kind == "file_open" and "/.ssh/" in e.path,
                             rule_id="NO-KEYS")])
    read: list[str] = []

    def steal() -> str:
        """Read an SSH key."""
        with open(secret) as handle:
            read.append(handle.read())
        return "stolen"

    with pytest.raises(PermissionError, match="NO-KEYS") as info:
        run_tool(steal)
    assert read == []
    assert info.value.filename == str(secret)
    assert [(f.rule_id, f.action, f.kind) for f in findings] == [("NO-KEYS", "block", "file_open")]


def test_agentguards_own_files_and_bytecode_caches_are_not_reported(
        guarded: Any, tmp_path: Path) -> None:
    """The findings file agentguard writes, /dev/null and __pycache__ are not file events."""
    findings_file = tmp_path / "findings.jsonl"
    recorder = Recorder(alert=lambda e: e.kind == "tool_call" and e.phase == "result")
    guarded(policy=[recorder], builtin_rules=False, findings_file=str(findings_file))
    cache = tmp_path / "__pycache__"
    cache.mkdir()

    def quiet() -> str:
        """Write to places nobody needs to hear about."""
        with open(os.devnull, "w") as sink:
            sink.write("x")
        (cache / "m.cpython-311.pyc.123").write_bytes(b"")
        return "ok"

    run_tool(quiet)
    assert json.loads(findings_file.read_text())["rule_id"] == "T-SENSOR"
    assert recorder.of("file_open") == []


@pytest.fixture
def module_dir(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name.startswith("agtest_")]:
            del sys.modules[name]


def test_first_import_of_a_local_module_is_reported(guarded: Any, spans: Any,
                                                    module_dir: Path) -> None:
    """Importing a module a tool wrote to disk is a module.load event with its file; the second
    import is not."""
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)
    package = module_dir / "agtest_plugin"
    package.mkdir()
    (package / "__init__.py").write_text("VALUE = 41\n")
    (package / "extra.py").write_text("VALUE = 1\n")

    def load() -> str:
        """Import a plugin."""
        module = importlib.import_module("agtest_plugin.extra")
        return str(importlib.import_module("agtest_plugin").VALUE + module.VALUE)

    assert run_tool(load) == "42"
    assert run_tool(load, name="load_again") == "42"
    (event,) = events(spans.one("execute_tool load"), "module.load")
    assert event == {"agentguard.module.name": "agtest_plugin",
                     "agentguard.module.origin": "path",
                     "file.path": str(package / "__init__.py")}
    assert events(spans.one("execute_tool load_again"), "module.load") == []
    (loaded,) = [e for e in recorder.of("module_load") if e.module == "agtest_plugin"]
    assert (loaded.distribution, loaded.context.tool) == (None, "load")


def _unimported_distribution() -> tuple[str, str]:
    """An installed single-distribution top-level package this process has not loaded yet."""
    from agentguard.sensors import _state as sensor_state

    mapping = importlib.metadata.packages_distributions()
    for top in ("sortedcontainers", "mpmath", "pyparsing", "itsdangerous", "xmltodict",
                "jmespath", "six", "markupsafe", "blinker"):
        dists = mapping.get(top)
        if dists and len(set(dists)) == 1 and top not in sys.modules and \
                top not in sensor_state.modules_seen:
            return top, dists[0]
    pytest.skip("every candidate distribution is already imported")


def test_first_import_of_an_installed_distribution_names_it(guarded: Any, spans: Any) -> None:
    """Importing an installed package for the first time is reported with its distribution and
    version."""
    top, distribution = _unimported_distribution()
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)

    def load() -> str:
        """Import an installed package."""
        importlib.import_module(top)
        return "ok"

    run_tool(load)
    # Its own dependencies may be first loads too; each is reported once, under its own name.
    loads = events(spans.one("execute_tool load"), "module.load")
    names = [e["agentguard.module.name"] for e in loads]
    assert len(names) == len(set(names))
    (event,) = [e for e in loads if e["agentguard.module.name"] == top]
    assert event["agentguard.module.distribution"] == distribution
    assert event["agentguard.module.version"] == importlib.metadata.version(distribution)
    assert event["agentguard.module.origin"] == "distribution"
    (loaded,) = [e for e in recorder.of("module_load") if e.module == top]
    assert (loaded.distribution, loaded.version) == (distribution,
                                                     importlib.metadata.version(distribution))


def test_a_failed_import_probe_is_not_a_load(guarded: Any, spans: Any) -> None:
    """``import`` of a name nobody can find (an optional dependency probe) is not reported."""
    guarded()

    def probe() -> str:
        """Probe for an optional module."""
        try:
            importlib.import_module("agtest_not_installed_anywhere")
        except ImportError:
            return "missing"
        return "found"

    assert run_tool(probe) == "missing"
    assert events(spans.one("execute_tool probe"), "module.load") == []


def test_enforce_blocks_an_import(guarded: Any, module_dir: Path) -> None:
    """A blocked module load raises PermissionError at the import and the module never runs."""
    (module_dir / "agtest_dropper.py").write_text(
        f"open({str(module_dir / 'ran')!r}, 'w').close()\n")
    guarded(on_block="raise", mode="enforce", builtin_rules=False,
            policy=[Recorder(block=lambda e: e.kind == "module_load"
                             and e.module == "agtest_dropper", rule_id="NO-DROPPER")])

    def load() -> str:
        """Import a dropper."""
        importlib.import_module("agtest_dropper")
        return "loaded"

    with pytest.raises(PermissionError, match="NO-DROPPER"):
        run_tool(load)
    assert "agtest_dropper" not in sys.modules
    assert not (module_dir / "ran").exists()


def test_a_native_library_load_is_reported(guarded: Any, spans: Any) -> None:
    """``ctypes`` loading a shared library in a tool is a module.load event of origin native."""
    library = ctypes.util.find_library("m") or "libm.so.6"
    guarded()

    def native() -> str:
        """Load the maths library."""
        return str(ctypes.CDLL(library).cos(ctypes.c_double(0.0)) == 0 or "loaded")

    run_tool(native)
    (event,) = events(spans.one("execute_tool native"), "module.load")
    assert event["agentguard.module.name"] == library
    assert event["agentguard.module.origin"] == "native"


def test_a_sqlite_database_opened_in_a_tool_is_a_write(guarded: Any, spans: Any,
                                                       tmp_path: Path) -> None:
    """``sqlite3.connect`` (which opens its file in C) is a file.open write event; in-memory
    databases are not files."""
    import sqlite3

    database = tmp_path / "notes.db"
    guarded()

    def store() -> str:
        """Store a note."""
        sqlite3.connect(":memory:").close()
        with contextlib.closing(sqlite3.connect(database)) as connection:
            connection.execute("create table notes (text)")
        return "stored"

    run_tool(store)
    (event,) = events(spans.one("execute_tool store"), "file.open")
    assert event == {"file.path": str(database), "agentguard.file.write": True}


def test_the_distribution_map_matches_importlib_metadata(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sensor's quick reading of installed distributions (top-level name -> distribution)
    is exactly what importlib.metadata.packages_distributions() answers: for this environment
    and for odd layouts (a folded Name header, RECORD paths with "./", "..", quoting and a
    bare ".py", an egg-info without RECORD, a declared top_level.txt)."""
    from agentguard.sensors import _modules

    odd = tmp_path / "odd_pkg-1.0.dist-info"
    odd.mkdir()
    (odd / "METADATA").write_text("Metadata-Version: 2.1\nName: odd-pkg  \nVersion: 1.0\n\nText\n")
    (odd / "RECORD").write_text(
        "odd_pkg/__init__.py,sha256=x,1\n./solo.py,,\n../../bin/tool.py,,\n"
        '"weird,name/mod.py",,\nodd_pkg/data.json,,\n.py,,\nodd_pkg-1.0.dist-info/RECORD,,\n')
    folded = tmp_path / "folded-2.0.dist-info"
    folded.mkdir()
    (folded / "METADATA").write_text("Metadata-Version: 2.1\nName: folded\n  -name\n\nBody\n")
    (folded / "RECORD").write_text("folded/__init__.py,,\n")
    declared = tmp_path / "declared-3.0.dist-info"
    declared.mkdir()
    (declared / "METADATA").write_text("Metadata-Version: 2.1\nname: Declared\n\n")
    (declared / "top_level.txt").write_text("alpha\nbeta\n")
    egg = tmp_path / "eggy-0.1.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: eggy\nVersion: 0.1\n")
    (egg / "SOURCES.txt").write_text("eggy/__init__.py\nsetup.py\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    expected = {name: list(dists) for name, dists in
                importlib.metadata.packages_distributions().items()}
    assert {"odd_pkg", "solo", "..", "weird,name", "folded", "alpha", "eggy"} <= set(expected)
    assert _modules._read_distributions() == expected
