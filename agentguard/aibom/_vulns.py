"""Runtime reachability of vulnerability reports: which vulnerable packages were actually loaded.

A scanner (pip-audit, osv-scanner) reports every vulnerable distribution *installed*. A package
that was never imported by the running agent cannot be exploited through it; marking each
finding ``loaded`` or ``installed-only`` turns the report into a short list. Reads pip-audit JSON
(``pip-audit -f json``, both the current ``{"dependencies": [...]}`` and the older list form),
osv-scanner JSON (``{"results": [{"packages": [...]}]}``) and plain lists of OSV records.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from packaging.utils import canonicalize_name
from pydantic import BaseModel, Field

__all__ = ["Reachability", "VulnerablePackage", "parse_report", "reachability"]

MAX_REPORT_BYTES = 64 << 20
MAX_PACKAGES = 100000


class VulnerablePackage(BaseModel):
    """One vulnerable distribution from a report, and whether the agent loaded it."""

    name: str  # normalised
    version: str | None = None
    vulnerabilities: list[str] = Field(default_factory=list)
    loaded: bool = False
    fix_versions: list[str] = Field(default_factory=list)


class Reachability(BaseModel):
    """The report split into loaded and installed-only packages, with the noise reduction."""

    packages: list[VulnerablePackage] = Field(default_factory=list)

    @property
    def loaded(self) -> list[VulnerablePackage]:
        return [package for package in self.packages if package.loaded]

    @property
    def installed_only(self) -> list[VulnerablePackage]:
        return [package for package in self.packages if not package.loaded]

    def vulnerability_counts(self) -> tuple[int, int]:
        """(vulnerabilities in total, vulnerabilities in loaded packages)."""
        total = sum(len(p.vulnerabilities) or 1 for p in self.packages)
        loaded = sum(len(p.vulnerabilities) or 1 for p in self.loaded)
        return total, loaded

    @property
    def noise_reduction(self) -> float:
        """The share of reported vulnerabilities in packages the agent never loaded (0..1)."""
        total, loaded = self.vulnerability_counts()
        return (total - loaded) / total if total else 0.0

    def summary(self) -> str:
        total, loaded = self.vulnerability_counts()
        return (f"{total} vulnerabilities in {len(self.packages)} packages; {loaded} in "
                f"{len(self.loaded)} packages loaded at runtime; "
                f"{total - loaded} in {len(self.installed_only)} installed-only packages "
                f"(noise reduction {self.noise_reduction:.0%})")


def _objects(value: Any, where: str) -> list[dict[str, Any]]:
    """``value`` as a list of JSON objects (absent: empty), else a ``ValueError`` saying where:
    a report of another shape must not read as "nothing vulnerable"."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"not a pip-audit or OSV report: {where} is not an array")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ValueError(f"not a pip-audit or OSV report: {where}[{index}] is not an object")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"not a pip-audit or OSV report: {where} is not an object")
    return value


def _ids(vulns: Iterable[dict[str, Any]]) -> tuple[list[str], list[str]]:
    ids: list[str] = []
    fixes: list[str] = []
    for vuln in vulns:
        identifier = vuln.get("id")
        if isinstance(identifier, str) and identifier not in ids:
            ids.append(identifier)
        fix_versions = vuln.get("fix_versions")
        for fix in fix_versions if isinstance(fix_versions, list) else ():
            if isinstance(fix, str) and fix not in fixes:
                fixes.append(fix)
    return ids, fixes


def parse_report(data: Any) -> list[VulnerablePackage]:
    """The vulnerable packages of a pip-audit or OSV report (already parsed JSON)."""
    found: dict[tuple[str, str | None], VulnerablePackage] = {}

    def add(name: Any, version: Any, ids: list[str], fixes: list[str]) -> None:
        if not isinstance(name, str) or not ids or len(found) >= MAX_PACKAGES:
            return
        key = (canonicalize_name(name), version if isinstance(version, str) else None)
        package = found.get(key)
        if package is None:
            found[key] = VulnerablePackage(name=key[0], version=key[1], vulnerabilities=ids,
                                           fix_versions=fixes)
        else:
            package.vulnerabilities.extend(i for i in ids if i not in package.vulnerabilities)

    entries: list[Any]
    if isinstance(data, dict) and isinstance(data.get("dependencies"), list):
        entries = data["dependencies"]  # pip-audit
    elif isinstance(data, dict) and isinstance(data.get("results"), list):
        for r, result in enumerate(_objects(data["results"], "results")):  # osv-scanner
            where = f"results[{r}].packages"
            for p, item in enumerate(_objects(result.get("packages"), where)):
                package = _object(item.get("package"), f"{where}[{p}].package")
                if str(package.get("ecosystem", "PyPI")).lower() != "pypi":
                    continue
                ids, fixes = _ids(_objects(item.get("vulnerabilities"),
                                           f"{where}[{p}].vulnerabilities"))
                add(package.get("name"), package.get("version"), ids, fixes)
        return list(found.values())
    elif isinstance(data, list):
        entries = _objects(data, "the list")
    elif isinstance(data, dict) and isinstance(data.get("vulns"), list):
        entries = [{"id": vuln.get("id"), **vuln} for vuln in _objects(data["vulns"], "vulns")]
    else:
        raise ValueError("not a pip-audit or OSV report: expected 'dependencies', 'results' or "
                         "a list")
    for index, entry in enumerate(_objects(entries, "dependencies")):
        if "vulns" in entry or "name" in entry:  # pip-audit dependency
            ids, fixes = _ids(_objects(entry.get("vulns"), f"dependencies[{index}].vulns"))
            add(entry.get("name"), entry.get("version"), ids, fixes)
        elif "affected" in entry:  # one OSV record
            for a, affected in enumerate(_objects(entry.get("affected"), f"[{index}].affected")):
                package = _object(affected.get("package"), f"[{index}].affected[{a}].package")
                if str(package.get("ecosystem", "PyPI")).lower() != "pypi":
                    continue
                versions = affected.get("versions")
                versions = versions if isinstance(versions, list) and versions else [None]
                add(package.get("name"), versions[0] if len(versions) == 1 else None,
                    [str(entry.get("id"))], [])
    return list(found.values())


def reachability(report: str | bytes | dict[str, Any] | list[Any],
                 loaded: Iterable[str] | None = None) -> Reachability:
    """Mark each vulnerable package of ``report`` (a path, JSON text or parsed JSON) as loaded
    at runtime or installed only; ``loaded`` defaults to this process's inventory."""
    data: Any = report
    if isinstance(report, (str, bytes)):
        text = report
        # A path when it names a file ("[audit].json" does), JSON text when it looks like it.
        if isinstance(report, str) and (os.path.isfile(report) or
                                        not report.lstrip().startswith(("{", "["))):
            with open(report, "rb") as handle:
                text = handle.read(MAX_REPORT_BYTES + 1)
            if len(text) > MAX_REPORT_BYTES:
                raise ValueError(f"{report}: larger than {MAX_REPORT_BYTES} bytes")
        data = json.loads(text)
    if loaded is None:
        from agentguard.aibom._inventory import inventory

        loaded_names = inventory().loaded_distributions()
    else:
        loaded_names = {canonicalize_name(name) for name in loaded}
    packages = parse_report(data)
    for package in packages:
        package.loaded = package.name in loaded_names
    packages.sort(key=lambda p: (not p.loaded, p.name))
    return Reachability(packages=packages)
