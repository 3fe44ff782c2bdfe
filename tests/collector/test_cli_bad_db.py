"""The collector's read commands on a file that is not a collector database.

Every read command says what is wrong with the file in one line and exits with status 2 (1 stays
"no such incident"); ``run`` refuses such a file without writing to it.
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agentguard.cli import main
from agentguard.collector.store import Store

READ_COMMANDS = [
    ["collector", "status"],
    ["collector", "events"],
    ["incidents", "list"],
    ["incidents", "show", "X"],
    ["incidents", "report", "X", "-o", "story.html"],
    ["collector", "incidents"],
    ["collector", "incidents", "X"],
]


def garbage(path: Path) -> None:
    path.write_text("not sqlite at all\n" * 100)


def _execute(path: Path, *statements: str) -> None:
    connection = sqlite3.connect(path)
    for statement in statements:
        connection.execute(statement)
    connection.commit()
    connection.close()


def other_program(path: Path) -> None:
    _execute(path, "CREATE TABLE t (x)", "INSERT INTO t VALUES (1)")


def newer_collector(path: Path) -> None:
    Store(str(path)).close()
    _execute(path, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")


def empty(path: Path) -> None:
    path.write_bytes(b"")


def half_copied(path: Path) -> None:
    """The collector's version, none of its tables (a file cut short or put together by hand)."""
    _execute(path, "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
             "INSERT INTO meta VALUES ('schema_version', '1')")


BAD_FILES: dict[str, tuple[Callable[[Path], None], str]] = {
    "garbage": (garbage, "not a usable collector database (file is not a database)"),
    "other_program": (other_program, "not an agentguard collector database"),
    "newer_collector": (newer_collector, "schema version 99, this collector reads version 1"),
    "empty": (empty, "not an agentguard collector database (no tables"),
    "half_copied": (half_copied, "cannot read the collector database (no such table"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
@pytest.mark.parametrize("command", READ_COMMANDS, ids=" ".join)
def test_read_command_on_a_bad_file_says_so_in_one_line_and_exits_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        command: list[str], kind: str) -> None:
    """A read command given a file that is not a readable collector database prints one line
    naming the file and what is wrong with it, and exits with status 2."""
    make, reason = BAD_FILES[kind]
    db = tmp_path / "collector.db"
    make(db)
    monkeypatch.chdir(tmp_path)
    status = main([*command, "--db", str(db)])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1, err
    assert str(db) in err and reason in err
    assert not (tmp_path / "story.html").exists()


@pytest.mark.parametrize("command", [["incidents", "show", "nope"],
                                     ["collector", "incidents", "nope"]], ids=" ".join)
def test_unknown_incident_in_a_good_database_still_exits_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    """An incident id a real collector database does not have exits with status 1, told apart
    from an unreadable database (2)."""
    db = tmp_path / "collector.db"
    Store(str(db)).close()
    assert main([*command, "--db", str(db)]) == 1
    assert "no incident 'nope'" in capsys.readouterr().err


def test_cli_prints_no_traceback_on_a_non_database(tmp_path: Path) -> None:
    """Through the installed entry point, ``collector status`` on a non-database file prints
    one line and no traceback, with exit status 2."""
    db = tmp_path / "garbage.db"
    garbage(db)
    done = subprocess.run([sys.executable, "-m", "agentguard", "collector", "status", "--db",
                           str(db)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"agentguard collector: {db}: not a usable collector database (file is not a database)"]


def test_run_refuses_another_programs_database_and_leaves_it_untouched(tmp_path: Path) -> None:
    """``collector run --db`` on another program's SQLite database exits 2 with one line and
    writes nothing to it (no collector tables, no journal mode change)."""
    db = tmp_path / "app.db"
    other_program(db)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    done = subprocess.run(
        [sys.executable, "-m", "agentguard.collector.cli", "run", "--sensor", "none",
         "--otlp-grpc", "off", "--otlp-http", "127.0.0.1:0", "--no-discover", "--db", str(db)],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"agentguard collector: {db}: not an agentguard collector database (no schema version; "
        f"its tables: t)")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]
