"""The installed environment as the AI-BOM reads it, when distribution metadata is odd or hostile."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentguard import aibom
from agentguard.aibom import _environment
from agentguard.sensors import _modules
from agentguard.sensors import _state as sensor_state

pytest.importorskip("jsonschema")  # aibom.validate: cyclonedx-python-lib[json-validation]

PREFIX = "agbomprobe_"


def _distribution(site: Path | bytes, folder: str, metadata: bytes, top_level: str) -> None:
    info = os.path.join(os.fsencode(site), os.fsencode(folder))
    os.makedirs(info)
    with open(os.path.join(info, b"METADATA"), "wb") as handle:
        handle.write(metadata)
    with open(os.path.join(info, b"top_level.txt"), "w") as handle:
        handle.write(top_level)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh ``sys.path`` entry; the environment and the sensor's map are read with it."""
    directory = tmp_path / "site"
    directory.mkdir()
    monkeypatch.syspath_prepend(str(directory))
    monkeypatch.setattr(sensor_state, "distributions", None)
    importlib.invalidate_caches()
    yield directory
    for name in [name for name in sys.modules if name.startswith(PREFIX)]:
        del sys.modules[name]


def _libraries(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in document["components"] if c["type"] == "library"}


def test_a_distribution_whose_metadata_is_not_utf8_is_a_library(
        site: Path, tmp_path: Path, bom_guard: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution whose METADATA is Latin-1 (an old installer's author name) is inventoried
    with its version when the agent imports it, reported as undeclared, and not taken for a
    local module; the document stays valid."""
    _distribution(site, "agbomprobe_latin-1.4.dist-info",
                  b"Metadata-Version: 2.1\nName: agbomprobe-latin\nVersion: 1.4\n"
                  b"Summary: Caf\xe9 models\nAuthor: Jos\xe9\n\n", f"{PREFIX}latin\n")
    (site / f"{PREFIX}latin.py").write_text("VALUE = 1\n")
    monkeypatch.setattr(_environment, "_cached", _environment.Environment())
    (tmp_path / "requirements.txt").write_text("pyyaml\n")
    _, found = bom_guard(enable={"declared": [tmp_path / "requirements.txt"]})

    assert importlib.import_module(f"{PREFIX}latin").VALUE == 1

    assert [(f.evidence["distribution"], f.evidence["version"]) for f in found
            if f.rule_id == "BOM001" and f.evidence["module"] == f"{PREFIX}latin"] == \
        [("agbomprobe-latin", "1.4")]
    document = aibom.build(settle_timeout=5)
    library = _libraries(document)["agbomprobe-latin"]
    assert (library["version"], library["purl"], library["description"]) == \
        ("1.4", "pkg:pypi/agbomprobe-latin@1.4", "Caf\ufffd models")
    local = {p["name"]: p["value"] for p in document["metadata"]["properties"]}
    assert f"{PREFIX}latin" not in local.get("agentguard:local_modules", "").split(",")
    assert aibom.validate(document) == []


def test_odd_installed_distributions_make_a_valid_document(
        site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every installed distribution (``include_installed``) is listed in a valid document, the
    odd ones too: no version, control characters in the name, a copy shadowed by an earlier
    ``sys.path`` entry, a directory whose name is not UTF-8; one without a name is left out."""
    later = tmp_path / "later"
    later.mkdir()
    undecodable = os.path.join(os.fsencode(tmp_path), b"\xffsite")
    os.mkdir(undecodable)
    monkeypatch.setattr(sys, "path", [*sys.path, str(later), os.fsdecode(undecodable)])
    _distribution(site, "agbomprobe_nover.dist-info",
                  b"Metadata-Version: 2.1\nName: agbomprobe-nover\n\n", f"{PREFIX}nover\n")
    _distribution(site, "agbomprobe_ctl-1.dist-info",
                  b"Metadata-Version: 2.1\nName: agbomprobe-ctl\x1b[31m\nVersion: 1\x00\n\n",
                  f"{PREFIX}ctl\n")
    _distribution(site, "agbomprobe_twin-2.0.dist-info",
                  b"Metadata-Version: 2.1\nName: agbomprobe-twin\nVersion: 2.0\n\n",
                  f"{PREFIX}twin\n")
    _distribution(later, "agbomprobe_Twin-1.0.dist-info",
                  b"Metadata-Version: 2.1\nName: agbomprobe_Twin\nVersion: 1.0\n\n",
                  f"{PREFIX}twin\n")
    _distribution(site, "nameless-0.dist-info", b"Metadata-Version: 2.1\nVersion: 0\n\n",
                  f"{PREFIX}twin\n")
    _distribution(undecodable, "agbomprobe_far-3.dist-info",
                  b"Metadata-Version: 2.1\nName: agbomprobe-far\nVersion: 3\n\nJos\xe9\n",
                  f"{PREFIX}far\n")
    monkeypatch.setattr(_environment, "_cached", _environment.Environment())

    document = aibom.build(include_installed=True, settle_timeout=5)

    listed = {name: c.get("version") for name, c in _libraries(document).items()
              if name.lower().startswith("agbomprobe")}
    assert listed == {"agbomprobe-nover": "", "agbomprobe-ctl\x1b[31m": "1\x00",
                      "agbomprobe-twin": "2.0", "agbomprobe-far": "3"}
    assert _environment.environment().owner(f"{PREFIX}twin") == ("agbomprobe-twin",)
    assert aibom.validate(document) == []


def test_a_huge_record_is_read_only_up_to_the_bound(site: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The modules of a distribution without ``top_level.txt`` come from its RECORD, read only up
    to the bound (a RECORD of gigabytes costs no more than one of a few MiB)."""
    monkeypatch.setattr(_modules, "MAX_METADATA_BYTES", 4096)
    info = site / "agbomprobe_big-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: agbomprobe-big\nVersion: 1.0\n\n")
    rows = "".join(f"{PREFIX}early/m{index:05d}.py,sha256=x,1\n" for index in range(200))
    (info / "RECORD").write_text(f"{PREFIX}first.py,,\n{rows}{PREFIX}late/__init__.py,,\n")

    env = _environment.Environment()

    assert env.distributions["agbomprobe-big"].top_level == (f"{PREFIX}early", f"{PREFIX}first")
    assert env.owner(f"{PREFIX}late") == ()


def test_an_editable_install_by_a_pth_file_is_a_library(
        site: Path, tmp_path: Path, bom_guard: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A package of an editable install whose RECORD lists only a ``.pth`` file (hatchling, flit,
    pdm) is inventoried as its distribution with its version when the agent imports it, not as a
    local module from a plain directory."""
    source = tmp_path / "project" / "src"
    (source / f"{PREFIX}edit").mkdir(parents=True)
    (source / f"{PREFIX}edit" / "__init__.py").write_text("VALUE = 1\n")
    (site / f"_{PREFIX}edit.pth").write_text(f"{source}\n")
    info = site / f"{PREFIX}edit-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: agbomprobe-edit\nVersion: 0.3\n\n")
    (info / "RECORD").write_text(f"_{PREFIX}edit.pth,sha256=x,1\n{info.name}/METADATA,,\n")
    monkeypatch.setattr(sys, "path", [*sys.path, str(source)])  # what site.py does with the .pth
    monkeypatch.setattr(_environment, "_cached", _environment.Environment())
    (tmp_path / "requirements.txt").write_text("pyyaml\n")
    _, found = bom_guard(enable={"declared": [tmp_path / "requirements.txt"]})

    assert importlib.import_module(f"{PREFIX}edit").VALUE == 1

    assert [(f.evidence["distribution"], f.evidence["version"]) for f in found
            if f.rule_id == "BOM001" and f.evidence["module"] == f"{PREFIX}edit"] == \
        [("agbomprobe-edit", "0.3")]
    document = aibom.build(settle_timeout=5)
    assert _libraries(document)["agbomprobe-edit"]["version"] == "0.3"
    local = {p["name"]: p["value"] for p in document["metadata"]["properties"]}
    assert f"{PREFIX}edit" not in local.get("agentguard:local_modules", "").split(",")
    assert _environment.environment().owner(f"{PREFIX}edit") == ("agbomprobe-edit",)
