"""Which distribution a first import names, when the installed metadata is odd or hostile."""

from __future__ import annotations

import importlib
import os
import site
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentguard.sensors import _modules
from agentguard.sensors import _state as sensor_state
from tests.sensors.helpers import events, run_tool

PREFIX = "agprobe_"


def _distribution(site: Path, folder: str, metadata: bytes, *, top_level: str | None = None,
                  record: bytes | None = None, module: str | None = None) -> None:
    """A ``.dist-info`` directory in ``site`` (and the package ``module`` it ships)."""
    info = site / folder
    info.mkdir(parents=True)
    (info / "METADATA").write_bytes(metadata)
    if top_level is not None:
        (info / "top_level.txt").write_text(top_level)
    if record is not None:
        (info / "RECORD").write_bytes(record)
    if module is not None:
        (site / module).mkdir(exist_ok=True)
        (site / module / "__init__.py").write_text("VALUE = 1\n")


@pytest.fixture
def sites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """Two fresh ``sys.path`` entries (the first shadows the second); the sensor reads the
    installed distributions again when it starts."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    monkeypatch.syspath_prepend(str(second))
    monkeypatch.syspath_prepend(str(first))
    monkeypatch.setattr(sensor_state, "distributions", None)
    importlib.invalidate_caches()
    yield first, second
    for name in [name for name in sys.modules if name.startswith(PREFIX)]:
        del sys.modules[name]


def _first_import(guarded: Any, spans: Any, module: str) -> dict[str, Any]:
    """The module.load event of a tool's first import of ``module``."""
    guarded(builtin_rules=False)

    def load() -> str:
        """Import a package."""
        return str(importlib.import_module(module).VALUE)

    assert run_tool(load) == "1"
    (event,) = [e for e in events(spans.one("execute_tool load"), "module.load")
                if e["agentguard.module.name"] == module]
    return event


def test_a_distribution_whose_metadata_is_not_utf8_is_still_named(
        guarded: Any, spans: Any, sites: tuple[Path, Path]) -> None:
    """One distribution whose METADATA has a Latin-1 author name neither hides itself nor every
    other installed distribution: its import names it and its version."""
    first, _ = sites
    _distribution(first, "agprobe_latin-1.0.dist-info",
                  b"Metadata-Version: 2.1\nName: agprobe-latin\nVersion: 1.0\n"
                  b"Author: Jos\xe9 Garc\xeda\n\nDescription\n",
                  top_level=f"{PREFIX}latin\n", module=f"{PREFIX}latin")
    _distribution(first, "agprobe_plain-2.0.dist-info",
                  b"Metadata-Version: 2.1\nName: agprobe-plain\nVersion: 2.0\n\n",
                  top_level=f"{PREFIX}plain\n", module=f"{PREFIX}plain")

    assert _first_import(guarded, spans, f"{PREFIX}latin") == {
        "agentguard.module.name": f"{PREFIX}latin", "agentguard.module.origin": "distribution",
        "agentguard.module.distribution": "agprobe-latin", "agentguard.module.version": "1.0"}
    assert _modules._read_distributions()[f"{PREFIX}plain"] == ["agprobe-plain"]
    assert _modules._read_distributions()["pytest"] == ["pytest"]


def test_a_distribution_without_a_name_does_not_break_the_import_report(
        guarded: Any, spans: Any, sites: tuple[Path, Path]) -> None:
    """A leftover ``.dist-info`` without a Name header that claims the same package as a real
    distribution ships nothing: the import is reported, naming the real one."""
    first, _ = sites
    _distribution(first, "agprobe_real-3.0.dist-info",
                  b"Metadata-Version: 2.1\nName: agprobe-real\nVersion: 3.0\n\n",
                  top_level=f"{PREFIX}shared\n", module=f"{PREFIX}shared")
    _distribution(first, "leftover-0.dist-info", b"Metadata-Version: 2.1\nVersion: 0\n\n",
                  top_level=f"{PREFIX}shared\n")

    event = _first_import(guarded, spans, f"{PREFIX}shared")
    assert (event["agentguard.module.distribution"], event["agentguard.module.version"]) == \
        ("agprobe-real", "3.0")


def test_a_distribution_installed_twice_is_named_by_the_copy_that_loads(
        guarded: Any, spans: Any, sites: tuple[Path, Path]) -> None:
    """The same distribution in two ``sys.path`` entries (spelled ``agprobe_Twin`` in the later
    one) is one distribution, named and versioned by the first copy, the one imported."""
    first, second = sites
    _distribution(first, "agprobe_twin-1.0.dist-info",
                  b"Metadata-Version: 2.1\nName: agprobe-twin\nVersion: 1.0\n\n",
                  top_level=f"{PREFIX}twin\n", module=f"{PREFIX}twin")
    _distribution(second, "agprobe_Twin-0.9.dist-info",
                  b"Metadata-Version: 2.1\nName: agprobe_Twin\nVersion: 0.9\n\n",
                  top_level=f"{PREFIX}twin\n", module=f"{PREFIX}twin")

    event = _first_import(guarded, spans, f"{PREFIX}twin")
    assert (event["agentguard.module.distribution"], event["agentguard.module.version"]) == \
        ("agprobe-twin", "1.0")


def test_a_huge_record_is_read_only_up_to_the_bound(sites: tuple[Path, Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A RECORD larger than the bound (a tool wrote gigabytes there) is read only up to it: the
    modules listed within it are found, a line cut by the bound is not taken for a module, and
    nothing after it is read."""
    first, _ = sites
    monkeypatch.setattr(_modules, "MAX_METADATA_BYTES", 4096)
    rows = b"".join(b"agprobe_early/m%05d.py,sha256=x,1\n" % index for index in range(200))
    assert len(rows) > 4096
    _distribution(first, "agprobe_big-1.0.dist-info",
                  b"Metadata-Version: 2.1\nName: agprobe-big\nVersion: 1.0\n\n",
                  record=b"agprobe_first.py,,\n" + rows + b"agprobe_late/__init__.py,,\n")

    mapping = _modules._read_distributions()
    assert mapping[f"{PREFIX}first"] == mapping[f"{PREFIX}early"] == ["agprobe-big"]
    assert f"{PREFIX}late" not in mapping
    assert not [top for top in mapping if top.startswith(PREFIX) and top not in
                (f"{PREFIX}first", f"{PREFIX}early")]


def _editable(site: Path, project: Path, name: str, module: str) -> None:
    """An editable install as hatchling, flit or pdm write one: a ``.pth`` file naming the
    project's source directory, listed in the RECORD of a ``.dist-info`` that ships no module."""
    source = project / "src"
    (source / module).mkdir(parents=True)
    (source / module / "__init__.py").write_text("VALUE = 1\n")
    (source / "agprobe_helper.py").write_text("VALUE = 1\n")
    (project / "README.md").write_text("not a module\n")
    (site / f"_{module}.pth").write_text(f"# editable\n{source}\nimport os\n")
    info = site / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n\n")
    (info / "direct_url.json").write_text(
        f'{{"url": "file://{project}", "dir_info": {{"editable": true}}}}')
    (info / "RECORD").write_text(f"_{module}.pth,sha256=x,1\n{info.name}/METADATA,,\n"
                                 f"{info.name}/RECORD,,\n")


def test_an_editable_install_by_a_pth_file_is_named(
        guarded: Any, spans: Any, sites: tuple[Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A package of an editable install whose RECORD lists only a ``.pth`` file (its modules stay
    in the project's source tree) is reported with its distribution and version, not as a module
    from a plain directory; so is a module beside it in that tree."""
    first, _ = sites
    monkeypatch.setattr(sys, "path", list(sys.path))
    _editable(first, tmp_path / "project", "agprobe-edit", f"{PREFIX}edit")
    site.addsitedir(str(first))  # what the interpreter does with the .pth at start-up
    assert str(tmp_path / "project" / "src") in sys.path

    assert _first_import(guarded, spans, f"{PREFIX}edit") == {
        "agentguard.module.name": f"{PREFIX}edit", "agentguard.module.origin": "distribution",
        "agentguard.module.distribution": "agprobe-edit", "agentguard.module.version": "1.0"}
    mapping = _modules._read_distributions()
    assert mapping[f"{PREFIX}helper"] == ["agprobe-edit"]
    assert "README" not in mapping


def test_a_pth_file_naming_the_site_directory_or_a_pipe_adds_nothing(
        sites: tuple[Path, Path], tmp_path: Path) -> None:
    """A ``.pth`` line naming the site directory itself would give the distribution every other
    one's modules; a ``.pth`` that is a named pipe would block the read: neither adds a module,
    and the other distributions are still mapped."""
    first, _ = sites
    (first / f"{PREFIX}own.py").write_text("VALUE = 1\n")
    (first / "_agprobe_self.pth").write_text(".\n" + str(first) + "\n")
    os.mkfifo(first / "_agprobe_fifo.pth")
    for folder, pth in (("agprobe_self-1.dist-info", "_agprobe_self.pth"),
                        ("agprobe_fifo-1.dist-info", "_agprobe_fifo.pth")):
        _distribution(first, folder, b"Metadata-Version: 2.1\nName: " +
                      folder.partition("-")[0].replace("_", "-").encode() + b"\nVersion: 1\n\n",
                      record=f"{pth},,\n".encode())
    _distribution(first, "agprobe_plain-1.dist-info",
                  b"Metadata-Version: 2.1\nName: agprobe-plain\nVersion: 1\n\n",
                  top_level=f"{PREFIX}plain\n", module=f"{PREFIX}plain")

    mapping = _modules._read_distributions()
    assert f"{PREFIX}own" not in mapping
    assert mapping[f"{PREFIX}plain"] == ["agprobe-plain"]
