"""A file is judged by where an open goes, whatever the spelling of its path or its directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agentguard
from tests.sensors.helpers import Recorder, events, run_tool

SHADOW_SPELLINGS = ["//etc/shadow", "/etc//shadow", "/etc/./shadow", "/./etc/shadow",
                    "/tmp/../etc/shadow", "/etc/shadow/."]
ENVIRON_SPELLINGS = ["//proc/self/environ", "/proc//self/environ", "/proc/self/./environ"]


class _Descriptor:
    """An integer-like object (what ``os.open`` accepts as ``dir_fd``)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __index__(self) -> int:
        return self.fd


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """``project/id_rsa`` (a credential wherever it lives) with a subdirectory beside it."""
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "id_rsa").write_text("PRIVATE KEY")
    return project


@pytest.fixture
def directory(keys: Path) -> Iterator[int]:
    """An open descriptor of the ``project`` directory."""
    fd = os.open(keys, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def _reported(recorder: Recorder, tool: str) -> list[tuple[str, bool]]:
    return [(event.path, event.write) for event in recorder.of("file_open")
            if event.context.tool == tool]


@pytest.mark.parametrize("path", SHADOW_SPELLINGS + ENVIRON_SPELLINGS)
def test_secret_files_are_blocked_under_any_spelling(guarded: Any, path: str) -> None:
    """Repeated slashes, ``.`` and ``..`` in a secret's path do not get a tool's read past the
    secret-file rule, and the finding names the file itself."""
    findings: list[agentguard.Finding] = []
    guarded(mode="enforce", on_finding=findings.append)

    def read_file() -> str:
        """Read a file whose path the tool computed."""
        with open(path, "rb") as handle:
            return f"read {len(handle.read())} bytes"

    assert "[AG012]" in run_tool(read_file)
    expected = "/etc/shadow" if "shadow" in path else "/proc/self/environ"
    assert [(f.rule_id, f.title) for f in findings] == [
        ("AG012", f"secret file {expected} opened by tool read_file")]


def test_a_dot_dot_after_a_symbolic_link_follows_the_link(guarded: Any, spans: Any,
                                                          keys: Path, tmp_path: Path) -> None:
    """``link/../id_rsa`` is reported as the file the kernel opens (beside the link's target),
    not as the path's text folded (beside the link)."""
    (tmp_path / "link").symlink_to(keys / "sub")
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)

    def read_key() -> str:
        """Read a key through a link."""
        with open(f"{tmp_path}/link/../id_rsa") as handle:
            return handle.read()

    assert run_tool(read_key) == "PRIVATE KEY"
    assert _reported(recorder, "read_key") == [(str(keys / "id_rsa"), False)]
    (event,) = events(spans.one("execute_tool read_key"), "file.open")
    assert event["agentguard.file.category"] == "credential"


def test_a_relative_path_is_reported_where_it_leads(guarded: Any, keys: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative path with ``..`` is reported as the absolute file it opens."""
    monkeypatch.chdir(keys / "sub")
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)

    def read_key() -> str:
        """Read a key by a relative path."""
        with open("../sub/./../id_rsa") as handle:
            return handle.read()

    assert run_tool(read_key) == "PRIVATE KEY"
    assert _reported(recorder, "read_key") == [(str(keys / "id_rsa"), False)]


def test_ordinary_files_stay_unreported_under_any_spelling(guarded: Any, tmp_path: Path) -> None:
    """Reading an ordinary file through ``//``, ``.`` or ``..`` is still no event."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("hello")
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)

    def read_notes() -> str:
        """Read the notes three ways."""
        return "".join(Path(path).read_text() for path in (
            f"{tmp_path}//docs/notes.txt", f"{tmp_path}/./docs/notes.txt",
            f"{tmp_path}/docs/../docs/notes.txt"))

    assert run_tool(read_notes) == "hello" * 3
    assert _reported(recorder, "read_notes") == []


def test_a_secret_opened_relative_to_a_directory_descriptor_is_blocked(guarded: Any) -> None:
    """``os.open("shadow", dir_fd=<fd of /etc>)`` is the secret-file read it is, blocked in
    enforce mode."""
    guarded(mode="enforce")

    def read_shadow() -> str:
        """Read shadow relative to a descriptor of /etc."""
        etc = os.open("/etc", os.O_RDONLY | os.O_DIRECTORY)
        try:
            fd = os.open("shadow", os.O_RDONLY, dir_fd=etc)
            os.close(fd)
        finally:
            os.close(etc)
        return "read"

    result = run_tool(read_shadow)
    assert "[AG012]" in result and "/etc/shadow" in result


@pytest.mark.parametrize("how", ["int", "index", "opener"])
def test_a_file_opened_relative_to_a_directory_descriptor_is_reported_there(
        guarded: Any, keys: Path, directory: int, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """A read through ``dir_fd`` (an int, an integer-like object, or ``open``'s ``opener``) is
    reported as the file in that directory, not only as a name in the working directory."""
    monkeypatch.chdir(tmp_path)
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)

    def read_key() -> str:
        """Read a key relative to a directory descriptor."""
        if how == "opener":
            with open("id_rsa", opener=lambda name, flags: os.open(
                    name, flags, dir_fd=directory)) as handle:
                return handle.read()
        fd = os.open("id_rsa", os.O_RDONLY,
                     dir_fd=_Descriptor(directory) if how == "index" else directory)
        try:
            return os.read(fd, 100).decode()
        finally:
            os.close(fd)

    assert run_tool(read_key) == "PRIVATE KEY"
    reported = _reported(recorder, "read_key")
    if how == "opener":
        # open() raises its own event first, with the name alone (it cannot know where the
        # opener will open it); the opener's os.open then names the file itself.
        assert reported == [(str(tmp_path / "id_rsa"), False), (str(keys / "id_rsa"), False)]
    else:
        assert reported == [(str(keys / "id_rsa"), False)]


def test_a_write_relative_to_a_directory_descriptor_names_the_real_file(
        guarded: Any, keys: Path, directory: int, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A file created with ``dir_fd`` is reported at the path it was created at."""
    monkeypatch.chdir(tmp_path)
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)

    def write_report() -> str:
        """Write a report relative to a directory descriptor."""
        os.close(os.open("report.txt", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=directory))
        return "written"

    assert run_tool(write_report) == "written"
    assert (keys / "report.txt").exists()
    assert _reported(recorder, "write_report") == [(str(keys / "report.txt"), True)]


def test_a_directory_descriptor_that_cannot_be_resolved_is_reported_as_unknown(
        guarded: Any, spans: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read relative to a removed directory is reported with the category ``unknown`` under
    the descriptor's name, never as a file in the working directory."""
    gone = tmp_path / "gone"
    gone.mkdir()
    fd = os.open(gone, os.O_RDONLY | os.O_DIRECTORY)
    gone.rmdir()
    monkeypatch.chdir(tmp_path)
    guarded(builtin_rules=False)

    def read_missing() -> str:
        """Read a file relative to a removed directory."""
        try:
            os.open("data.txt", os.O_RDONLY, dir_fd=fd)
        except FileNotFoundError:
            return "missing"
        return "found"

    try:
        assert run_tool(read_missing) == "missing"
    finally:
        os.close(fd)
    (event,) = events(spans.one("execute_tool read_missing"), "file.open")
    assert (event["file.path"], event["agentguard.file.category"]) == (
        f"/proc/self/fd/{fd}/data.txt", "unknown")
