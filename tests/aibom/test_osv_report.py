"""bench/osv_report.py: OSV advisories matched against an installed environment."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agentguard.aibom import reachability
from bench.osv_report import (
    Database,
    Installed,
    affects,
    installed,
    load_database,
    main,
    report,
    version_affected,
)


def _range(*events: dict[str, str]) -> dict[str, Any]:
    return {"type": "ECOSYSTEM", "events": list(events)}


def _entry(*ranges: dict[str, Any], versions: list[str] | None = None,
           name: str = "demo") -> dict[str, Any]:
    entry: dict[str, Any] = {"package": {"ecosystem": "PyPI", "name": name}, "ranges": list(ranges)}
    if versions is not None:
        entry["versions"] = versions
    return entry


@pytest.mark.parametrize(("version", "expected"), [
    ("0.0.1", True), ("1.4.9", True), ("1.5.0rc1", True), ("1.5", False), ("1.5.0", False),
    ("2.0", False),
])
def test_introduced_zero_to_fixed(version: str, expected: bool) -> None:
    """A range from "0" to a fix covers every earlier version (the fix's pre-releases too), not the fix."""
    entry = _entry(_range({"introduced": "0"}, {"fixed": "1.5.0"}))
    assert version_affected(entry, version) is expected


@pytest.mark.parametrize(("version", "expected"), [
    ("1.9", False), ("2.0", True), ("2.3.1", True), ("2.3.1.post1", False), ("2.4", False),
])
def test_last_affected_is_inclusive(version: str, expected: bool) -> None:
    """A last_affected bound covers that version itself and nothing after it."""
    entry = _entry(_range({"introduced": "2.0"}, {"last_affected": "2.3.1"}))
    assert version_affected(entry, version) is expected


@pytest.mark.parametrize(("version", "expected"), [
    ("0.9", False), ("1.0", True), ("1.1.5", True), ("1.2", False), ("1.9", False),
    ("2.0.5", True), ("2.1", False), ("3.0", True), ("3.1", True),
])
def test_several_ranges_and_events(version: str, expected: bool) -> None:
    """Several ranges, and several introduced/fixed pairs in one range, open and close in version order."""
    entry = _entry(
        _range({"introduced": "1.0"}, {"fixed": "1.2"}),
        # unsorted on purpose: the schema orders events by version, not by position
        _range({"fixed": "2.1"}, {"introduced": "3.0"}, {"introduced": "2.0"}),
    )
    assert version_affected(entry, version) is expected


def test_versions_list_matches_exact_and_equal_versions() -> None:
    """A version in the versions list is affected, spelled exactly or as an equal PEP 440 version."""
    entry = _entry(versions=["1.0", "1.1rc1"])
    assert version_affected(entry, "1.0")
    assert version_affected(entry, "1.0.0")
    assert version_affected(entry, "1.1rc1")
    assert not version_affected(entry, "1.1")


def test_unparsable_range_is_skipped_and_counted() -> None:
    """A range with a version PEP 440 cannot read matches nothing; the versions list still does."""
    from bench.osv_report import _Counters

    counters = _Counters()
    entry = _entry(_range({"introduced": "0"}, {"fixed": "not a version!"}), versions=["0.5"])
    assert not version_affected(entry, "0.4", counters)
    assert version_affected(entry, "0.5", counters)
    assert counters.unparsable_ranges == 1
    # an installed version PEP 440 cannot read matches no range either
    assert not version_affected(_entry(_range({"introduced": "0"})), "custom-build", counters)
    assert counters.unparsable_installed == 1


def test_only_ecosystem_ranges_of_pypi_entries_for_the_same_name() -> None:
    """GIT ranges, other ecosystems and other packages are ignored; names compare PEP 503 normalised."""
    record = {"id": "PYSEC-1", "affected": [
        {"package": {"ecosystem": "PyPI", "name": "Foo_Bar"},
         "ranges": [{"type": "GIT", "events": [{"introduced": "0"}, {"fixed": "abc123"}]}]},
        {"package": {"ecosystem": "npm", "name": "foo-bar"}, "ranges": [_range({"introduced": "0"})]},
        {"package": {"ecosystem": "PyPI", "name": "other"}, "ranges": [_range({"introduced": "0"})]},
    ]}
    assert not affects(record, "foo-bar", "1.0")
    record["affected"].append(_entry(_range({"introduced": "0"}, {"fixed": "2"}), name="Foo_Bar"))
    assert affects(record, "foo.bar", "1.0")
    assert affects(record, "FOO-BAR", "1.0")
    assert not affects(record, "foo.bar", "2.0")


def test_withdrawn_advisories_are_skipped() -> None:
    """A withdrawn advisory is counted but never matched."""
    database = Database(source="test")
    database.add({"id": "PYSEC-W", "withdrawn": "2024-01-01T00:00:00Z",
                  "affected": [_entry(_range({"introduced": "0"}))]})
    database.add({"id": "PYSEC-A", "affected": [_entry(_range({"introduced": "0"}))]})
    result = report(database, [Installed("demo", "1.0")])
    (package,) = result["results"][0]["packages"]
    assert [v["id"] for v in package["vulnerabilities"]] == ["PYSEC-A"]
    assert result["database"]["withdrawn_skipped"] == 1


def _write_database(root: Path) -> None:
    (root / "vulns" / "demo").mkdir(parents=True)
    (root / "vulns" / "unused").mkdir()
    # Unquoted 2.10 would be the float 2.1 to a YAML loader that types scalars.
    (root / "vulns" / "demo" / "PYSEC-2024-1.yaml").write_text(
        "id: PYSEC-2024-1\naliases:\n- CVE-2024-0001\naffected:\n- package:\n    name: Demo\n"
        "    ecosystem: PyPI\n  ranges:\n  - type: ECOSYSTEM\n    events:\n    - introduced: '0'\n"
        "    - fixed: 2.10\n")
    (root / "vulns" / "demo" / "PYSEC-2024-2.json").write_text(json.dumps(
        {"id": "PYSEC-2024-2", "affected": [_entry(versions=["2.9"], name="demo")]}))
    (root / "vulns" / "unused" / "PYSEC-2024-3.yaml").write_text(
        "id: PYSEC-2024-3\naffected:\n- package:\n    name: unused\n    ecosystem: PyPI\n"
        "  ranges:\n  - type: ECOSYSTEM\n    events:\n    - introduced: '0'\n")


def _site_packages(root: Path, dists: dict[str, str]) -> Path:
    site = root / "site-packages"
    for name, version in dists.items():
        info = site / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return site


@pytest.mark.parametrize("as_git", [False, True])
def test_report_of_an_environment_reads_back_as_reachability(tmp_path: Path, as_git: bool) -> None:
    """A database (checkout or git dir) and a site-packages give a report reachability() splits."""
    db = tmp_path / "advisory-database"
    _write_database(db)
    if as_git:
        git = ["git", "-C", str(db), "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run(["git", "init", "-q", str(db)], check=True)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "advisories"], check=True)
        db = db / ".git"
    site = _site_packages(tmp_path, {"Demo": "2.9", "safe": "1.0", "other_pkg": "0.1"})
    assert [d.key for d in installed([site])] == ["demo", "other-pkg", "safe"]
    database = load_database(db)
    assert database.records == 3
    assert (database.revision is not None) is as_git
    out = tmp_path / "report.json"
    assert main(["--db", str(db), "--site-packages", str(site), "-o", str(out)]) == 0
    data = json.loads(out.read_text())
    (package,) = data["results"][0]["packages"]
    assert package["package"] == {"name": "Demo", "version": "2.9", "ecosystem": "PyPI"}
    # 2.9 < 2.10: read as text, the fix version keeps its meaning
    assert [v["id"] for v in package["vulnerabilities"]] == ["PYSEC-2024-1", "PYSEC-2024-2"]
    assert package["groups"][0]["aliases"] == ["CVE-2024-0001", "PYSEC-2024-1"]
    assert reachability(data, loaded=["demo"]).noise_reduction == 0.0
    split = reachability(data, loaded=["safe"])
    assert [(p.name, p.loaded) for p in split.packages] == [("demo", False)]
    assert split.vulnerability_counts() == (2, 0)
