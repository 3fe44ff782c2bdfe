"""An offline vulnerability report of a Python environment, from an OSV advisory database.

Reads the advisories of a checkout (or bare git directory) of the PyPA advisory database (OSV
records in YAML or JSON under ``vulns/<package>/``), the distributions installed in a
``site-packages`` directory (``importlib.metadata`` on that path, not this interpreter's), and
writes the installed distributions that advisories affect in the shape osv-scanner gives
(``{"results": [{"packages": [{"package": ..., "vulnerabilities": [...]}]}]}``), which
``agentguard aibom --vulns`` and ``bench/reachability.py`` read.

Matching follows the OSV schema: an ``affected`` entry of ecosystem PyPI whose package name
equals the distribution's (both PEP 503 normalised) affects the installed version when it is in
its ``versions`` list or inside one of its ``ECOSYSTEM`` ranges (``introduced`` / ``fixed`` /
``last_affected`` events, PEP 440 order with ``packaging.version``). Withdrawn advisories are
skipped; a range with a version PEP 440 cannot parse is skipped (its ``versions`` list still
counts) and counted.

    python bench/osv_report.py --db /path/to/advisory-database \\
        --site-packages ENV/lib/python3.11/site-packages -o report.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

__all__ = ["Database", "Installed", "affects", "installed", "load_database", "main", "report",
           "version_affected"]

# Records read as plain strings: YAML would turn an unquoted ``2.10`` into the float 2.1.
_LOADER: Any = getattr(yaml, "CBaseLoader", yaml.BaseLoader)
MAX_RECORD_BYTES = 4 << 20


@dataclass
class Database:
    """The advisories of one database, indexed by normalised PyPI package name."""

    source: str
    revision: str | None = None
    by_package: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    records: int = 0
    withdrawn: int = 0
    unreadable: int = 0

    def add(self, record: Any) -> None:
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            self.unreadable += 1
            return
        self.records += 1
        if record.get("withdrawn"):
            self.withdrawn += 1
            return
        names = set()
        for entry in record.get("affected") or ():
            package = (entry or {}).get("package") or {}
            if str(package.get("ecosystem", "")).lower() == "pypi" and package.get("name"):
                names.add(canonicalize_name(str(package["name"])))
        for name in names:
            self.by_package.setdefault(name, []).append(record)


@dataclass(frozen=True)
class Installed:
    """One distribution installed in the scanned environment."""

    name: str  # as its metadata spells it
    version: str

    @property
    def key(self) -> str:
        return canonicalize_name(self.name)


def _parse(path: str, data: bytes) -> Any:
    if len(data) > MAX_RECORD_BYTES:
        return None
    try:
        if path.endswith(".json"):
            return json.loads(data)
        return yaml.load(data, Loader=_LOADER)
    except (ValueError, yaml.YAMLError):
        return None


def _git_records(git_dir: Path) -> Iterator[tuple[str, bytes]]:
    """(path, content) of every advisory file at HEAD of a git directory, one ``cat-file``."""
    listing = subprocess.run(
        ["git", "--git-dir", str(git_dir), "ls-tree", "-r", "-z", "HEAD", "--", "vulns"],
        check=True, capture_output=True).stdout.decode()
    blobs: list[tuple[str, str]] = []
    for line in filter(None, listing.split("\0")):
        meta, path = line.split("\t", 1)
        _mode, kind, sha = meta.split()
        if kind == "blob" and path.endswith((".yaml", ".yml", ".json")):
            blobs.append((path, sha))
    with subprocess.Popen(["git", "--git-dir", str(git_dir), "cat-file", "--batch"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        # One request at a time, its answer read before the next is asked: neither pipe fills.
        for path, sha in blobs:
            proc.stdin.write(sha.encode() + b"\n")
            proc.stdin.flush()
            header = proc.stdout.readline().split()
            size = int(header[2])
            content = proc.stdout.read(size)
            proc.stdout.read(1)  # the newline after the content
            yield path, content
        proc.stdin.close()


def _revision(git_dir: Path) -> str | None:
    done = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", "HEAD"],
                          capture_output=True, text=True)
    return done.stdout.strip() or None if done.returncode == 0 else None


def load_database(source: str | Path) -> Database:
    """Every advisory of a database checkout (a directory with ``vulns/``) or git directory."""
    root = Path(source)
    if (root / "vulns").is_dir():
        database = Database(source=str(root), revision=_revision(root / ".git")
                            if (root / ".git").exists() else None)
        for path in sorted((root / "vulns").rglob("*")):
            if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
                database.add(_parse(path.name, path.read_bytes()))
        return database
    git_dir = root / ".git" if (root / ".git").is_dir() else root
    database = Database(source=str(root), revision=_revision(git_dir))
    for path, content in _git_records(git_dir):
        database.add(_parse(path, content))
    return database


def _version(text: Any) -> Version | None:
    if not isinstance(text, str):
        return None
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _in_range(version: Version, events: list[Any]) -> bool | None:
    """Whether ``version`` is inside one ECOSYSTEM range; None when an event does not parse."""
    parsed: list[tuple[Version | None, str]] = []
    for event in events:
        if not isinstance(event, dict) or len(event) != 1:
            return None
        ((kind, value),) = event.items()
        if kind not in ("introduced", "fixed", "last_affected"):
            continue  # "limit" concerns git ranges
        if kind == "introduced" and value == "0":
            parsed.append((None, kind))  # before every version
            continue
        bound = _version(value)
        if bound is None:
            return None
        parsed.append((bound, kind))
    # The schema's evaluation: walk the events in version order; an introduced at or below the
    # version opens the range, a fixed at or below it (a last_affected below it) closes it.
    order = {"introduced": 0, "last_affected": 1, "fixed": 1}
    parsed.sort(key=lambda item: (item[0] is not None, item[0] or Version("0"), order[item[1]]))
    affected = False
    for bound, kind in parsed:
        if kind == "introduced":
            affected = affected or bound is None or version >= bound
        elif bound is not None and (version > bound if kind == "last_affected" else version >= bound):
            affected = False
    return affected


@dataclass
class _Counters:
    unparsable_ranges: int = 0
    unparsable_installed: int = 0


def version_affected(entry: dict[str, Any], version: str, counters: _Counters | None = None) -> bool:
    """Whether one OSV ``affected`` entry covers ``version`` (its versions list or a range)."""
    counters = counters if counters is not None else _Counters()
    installed_version = _version(version)
    for listed in entry.get("versions") or ():
        if not isinstance(listed, str):
            continue
        if listed == version:
            return True
        listed_version = _version(listed)
        if installed_version is not None and listed_version == installed_version:
            return True  # 1.0 and 1.0.0 are one PEP 440 version
    ranges = [r for r in entry.get("ranges") or () if isinstance(r, dict)
              and r.get("type") == "ECOSYSTEM"]
    if ranges and installed_version is None:
        counters.unparsable_installed += 1
        return False
    for range_ in ranges:
        assert installed_version is not None
        inside = _in_range(installed_version, list(range_.get("events") or ()))
        if inside is None:
            counters.unparsable_ranges += 1
        elif inside:
            return True
    return False


def affects(record: dict[str, Any], name: str, version: str,
            counters: _Counters | None = None) -> bool:
    """Whether an OSV record affects distribution ``name`` (any spelling) at ``version``."""
    key = canonicalize_name(name)
    for entry in record.get("affected") or ():
        package = (entry or {}).get("package") or {}
        if (str(package.get("ecosystem", "")).lower() == "pypi"
                and canonicalize_name(str(package.get("name", ""))) == key
                and version_affected(entry, version, counters)):
            return True
    return False


def installed(site_packages: Iterable[str | Path]) -> list[Installed]:
    """The distributions installed in these directories (the first of each name wins)."""
    found: dict[str, Installed] = {}
    for dist in metadata.distributions(path=[str(p) for p in site_packages]):
        name = dist.metadata["Name"]
        if not name or not dist.version:
            continue
        item = Installed(name=str(name), version=str(dist.version))
        found.setdefault(item.key, item)
    return sorted(found.values(), key=lambda item: item.key)


def report(database: Database, distributions: Iterable[Installed],
           source_path: str = "") -> dict[str, Any]:
    """The osv-scanner-shaped report of the distributions the database's advisories affect."""
    counters = _Counters()
    packages: list[dict[str, Any]] = []
    scanned = 0
    for dist in distributions:
        scanned += 1
        hits = [record for record in database.by_package.get(dist.key, ())
                if affects(record, dist.key, dist.version, counters)]
        if not hits:
            continue
        hits.sort(key=lambda record: str(record["id"]))
        packages.append({
            "package": {"name": dist.name, "version": dist.version, "ecosystem": "PyPI"},
            "vulnerabilities": hits,
            "groups": [{"ids": [record["id"]], "aliases": sorted(
                {record["id"], *(record.get("aliases") or ())})} for record in hits],
        })
    return {
        "results": [{"source": {"path": source_path, "type": "directory"}, "packages": packages}],
        "database": {
            "source": database.source, "revision": database.revision,
            "records": database.records, "withdrawn_skipped": database.withdrawn,
            "unreadable": database.unreadable,
            "unparsable_ranges_skipped": counters.unparsable_ranges,
            "unparsable_installed_versions": counters.unparsable_installed,
        },
        "scanned_distributions": scanned,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True,
                        help="advisory-database checkout (with vulns/) or its git directory")
    parser.add_argument("--site-packages", action="append", required=True,
                        help="site-packages directory of the environment (repeatable)")
    parser.add_argument("-o", "--output", help="write the JSON report here (default: stdout)")
    parser.add_argument("--source-name", help="the path to record as the scanned source")
    args = parser.parse_args(argv)
    database = load_database(args.db)
    dists = installed(args.site_packages)
    result = report(database, dists, args.source_name or ":".join(args.site_packages))
    text = json.dumps(result, indent=1, sort_keys=True) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    packages = result["results"][0]["packages"]
    print(f"{len(dists)} distributions, {database.records} advisories "
          f"({database.withdrawn} withdrawn): {len(packages)} vulnerable distributions, "
          f"{sum(len(p['vulnerabilities']) for p in packages)} advisories",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
