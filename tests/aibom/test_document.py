"""The CycloneDX document: schema-valid, dependencies, frameworks, reachability of vulnerabilities."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentguard import aibom
from agentguard.aibom import reachability
from agentguard.aibom._vulns import parse_report


def test_document_is_valid_cyclonedx_1_6(bom_guard: Any) -> None:
    """The document of the running process validates against the CycloneDX 1.6 JSON Schema, with
    the agent as the metadata component depending on every loaded library."""
    bom_guard()
    import langchain_core  # noqa: F401  (an agent framework, loaded now or before)

    document = aibom.build(include_installed=True)
    assert aibom.validate(document) == []
    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.6"
    assert document["metadata"]["component"]["name"] == "test-agent"
    libraries = [c for c in document["components"] if c["type"] == "library"]
    assert any(c["name"] == "pydantic" and c["purl"].startswith("pkg:pypi/pydantic@")
               for c in libraries)
    top = next(d for d in document["dependencies"] if d["ref"] == "agent")
    loaded = [c["bom-ref"] for c in libraries
              if {"name": "agentguard:loaded", "value": "true"} in c["properties"]]
    assert set(loaded) <= set(top["dependsOn"])
    pydantic = next(c for c in libraries if c["name"] == "pydantic")
    edges = next(d for d in document["dependencies"] if d["ref"] == pydantic["bom-ref"])
    assert any(ref.startswith("pkg:pypi/pydantic-core@") for ref in edges["dependsOn"])
    langchain = next(c for c in libraries if c["name"] == "langchain-core")
    assert {"name": "agentguard:ai_framework", "value": "agent-framework"} in \
        langchain["properties"]


def test_validation_reports_a_broken_document(bom_guard: Any) -> None:
    """Schema validation is real: a component without a name is reported as invalid."""
    bom_guard()
    document = aibom.build()
    del document["components"][0]["name"]
    assert aibom.validate(document) != []


PIP_AUDIT = {
    "dependencies": [
        {"name": "PyYAML", "version": "6.0.3",
         "vulns": [{"id": "PYSEC-0000-1", "fix_versions": ["9.9"], "aliases": []}]},
        {"name": "moto", "version": "5.0.0",
         "vulns": [{"id": "GHSA-aaaa-bbbb-cccc", "fix_versions": []},
                   {"id": "GHSA-dddd-eeee-ffff", "fix_versions": []}]},
        {"name": "rich", "version": "15.0.0", "vulns": []},
    ],
    "fixes": [],
}


def test_reachability_of_a_pip_audit_report() -> None:
    """Each vulnerable package of a pip-audit report is marked loaded or installed-only, and the
    noise reduction counts the vulnerabilities in packages never loaded."""
    result = reachability(json.dumps(PIP_AUDIT), loaded=["pyyaml", "pydantic"])
    assert [(p.name, p.loaded, p.vulnerabilities) for p in result.packages] == [
        ("pyyaml", True, ["PYSEC-0000-1"]),
        ("moto", False, ["GHSA-aaaa-bbbb-cccc", "GHSA-dddd-eeee-ffff"]),
    ]
    assert result.noise_reduction == pytest.approx(2 / 3)
    assert "3 vulnerabilities in 2 packages; 1 in 1 packages loaded" in result.summary()


def test_reachability_of_osv_reports(tmp_path: Any, bom_guard: Any) -> None:
    """osv-scanner output and plain OSV records are read too; without ``loaded`` the running
    process's own inventory decides (pydantic is loaded here, an uninstalled name is not)."""
    scanner = {"results": [{"packages": [
        {"package": {"name": "pydantic", "version": "2.0", "ecosystem": "PyPI"},
         "vulnerabilities": [{"id": "GHSA-1"}]},
        {"package": {"name": "left-pad", "version": "1.0", "ecosystem": "npm"},
         "vulnerabilities": [{"id": "GHSA-2"}]},
        {"package": {"name": "not-installed-pkg", "version": "1.0", "ecosystem": "PyPI"},
         "vulnerabilities": [{"id": "PYSEC-3"}]},
    ]}]}
    path = tmp_path / "osv.json"
    path.write_text(json.dumps(scanner))
    bom_guard()
    result = reachability(str(path))
    assert [(p.name, p.loaded) for p in result.packages] == [("pydantic", True),
                                                            ("not-installed-pkg", False)]
    records = [{"id": "PYSEC-9", "affected": [{"package": {"name": "Jinja2", "ecosystem": "PyPI"},
                                               "versions": ["3.1.2"]}]}]
    assert [(p.name, p.version) for p in parse_report(records)] == [("jinja2", "3.1.2")]
    with pytest.raises(ValueError, match="not a pip-audit or OSV report"):
        parse_report({"something": 1})
