"""Vulnerability reachability measured: which vulnerable packages a real agent actually loads.

A report (osv-scanner JSON written by bench/osv_report.py from the PyPA advisory database, or any
report ``agentguard aibom --vulns`` reads) lists the vulnerable distributions *installed*; the
runtime AI-BOM of a real workload says which of them were *loaded*. ``aibom.reachability`` splits
the report, and this prints the figures: vulnerable packages installed and loaded, advisories in
total and on loaded packages, and the noise reduction.

By default it reads what is stored under tests/data/aibom/ (the report of an agent environment
locked in January 2024, and the inventory of bench/vuln_workload.py run in it), so the figures
are reproducible without that environment. ``--env`` recomputes the inventory by running the
workload under ``agentguard run --aibom`` in an environment built from the stored requirements
(and ``--db`` the report, from an advisory-database checkout); ``--pytest`` measures an
environment under part of this project's test suite instead.

    .venv/bin/python bench/reachability.py
    .venv/bin/python bench/reachability.py --env ENV --db advisory-database [--save]
    .venv/bin/python bench/reachability.py --env .venv --pytest tests/integrations --db ...
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "tests" / "data" / "aibom"
NAME = "agent-env-2024-01"


def _site_packages(env: Path) -> Path:
    (site,) = (env / "lib").glob("python3*/site-packages")
    return site


def _run_loaded(env: Path, command: list[str], label: str) -> dict[str, Any]:
    """Run ``command`` under ``agentguard run --aibom`` in ``env``; the distributions it loaded."""
    from agentguard.aibom.cli import loaded_names

    with tempfile.TemporaryDirectory() as tmp:
        bom = Path(tmp) / "bom.json"
        child_env = {k: v for k, v in os.environ.items()
                     if not k.startswith(("AGENTGUARD_", "OTEL_", "PYTHONPATH"))}
        started = time.perf_counter()
        done = subprocess.run(
            [str(env / "bin" / "agentguard"), "run", "--exporter", "none", "--aibom", str(bom),
             "--", *command], cwd=ROOT, env=child_env, capture_output=True, text=True, timeout=1800)
        elapsed = time.perf_counter() - started
        if not bom.exists():
            raise SystemExit(f"{label}: no AI-BOM written (exit {done.returncode}):\n"
                             f"{done.stderr[-2000:]}")
        document = json.loads(bom.read_text())
    names = loaded_names(document)
    libraries = {c["name"]: c for c in document.get("components", ()) if c.get("type") == "library"}

    def entry(name: str) -> dict[str, Any]:
        component = libraries.get(name, {})
        modules = [p["value"] for p in component.get("properties", ())
                   if p.get("name") == "agentguard:modules"]
        return {"version": component.get("version"), "modules": modules}

    return {"workload": label, "exit_code": done.returncode, "seconds": round(elapsed, 1),
            "loaded": {name: entry(name) for name in sorted(names)}}


def _report(db: str, env: Path) -> dict[str, Any]:
    from bench.osv_report import installed, load_database, report

    site = _site_packages(env)
    return report(load_database(db), installed([site]), f"{env.name}/{site.relative_to(env)}")


def figures(report: dict[str, Any], loaded: dict[str, Any]) -> dict[str, Any]:
    """The reachability figures of a report against a set of loaded distributions."""
    from agentguard.aibom import reachability

    split = reachability(report, list(loaded["loaded"]))
    total, on_loaded = split.vulnerability_counts()
    installed = int(report.get("scanned_distributions") or 0)
    return {
        "installed_distributions": installed,
        "loaded_distributions": len(loaded["loaded"]),
        "vulnerable_packages": len(split.packages),
        "vulnerable_packages_loaded": len(split.loaded),
        "advisories": total,
        "advisories_on_loaded": on_loaded,
        "noise_reduction": split.noise_reduction,
        "summary": split.summary(),
        "packages": [{"name": p.name, "version": p.version, "loaded": p.loaded,
                      "modules": loaded["loaded"].get(p.name, {}).get("modules", []),
                      "advisories": p.vulnerabilities} for p in split.packages],
    }


def _print(label: str, result: dict[str, Any]) -> None:
    print(f"{label}:")
    print(f"  distributions: {result['loaded_distributions']} loaded of "
          f"{result['installed_distributions']} installed")
    print(f"  vulnerable packages: {result['vulnerable_packages']} installed, "
          f"{result['vulnerable_packages_loaded']} loaded at runtime")
    print(f"  advisories: {result['advisories']} in total, {result['advisories_on_loaded']} on "
          f"loaded packages; noise reduction {result['noise_reduction']:.0%}")
    for package in result["packages"]:
        state = "LOADED        " if package["loaded"] else "installed-only"
        # The modules show how it was loaded: setuptools' `_distutils_hack` alone is the shim its
        # .pth file runs at every interpreter start, not a use of setuptools.
        modules = f" (modules: {', '.join(package['modules'])})" if package["modules"] else ""
        print(f"    {state}  {package['name']} {package['version']}: "
              f"{', '.join(package['advisories'])}{modules}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default=NAME,
                        help="stored data set: tests/data/aibom/osv-NAME.json, loaded-NAME.json")
    parser.add_argument("--env", type=Path, help="recompute the inventory in this venv")
    parser.add_argument("--pytest", nargs="+", metavar="PATH",
                        help="with --env: run these tests of this project instead of the workload")
    parser.add_argument("--db", help="with --env: recompute the report from this advisory database")
    parser.add_argument("--save", action="store_true", help="store what was recomputed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report_path, loaded_path = DATA / f"osv-{args.name}.json", DATA / f"loaded-{args.name}.json"
    if args.env:
        env = args.env.resolve()
        python = str(env / "bin" / "python")
        if args.pytest:
            loaded = _run_loaded(env, [python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                       *args.pytest], "pytest " + " ".join(args.pytest))
        else:
            loaded = _run_loaded(env, [python, str(ROOT / "bench" / "vuln_workload.py")],
                                 "bench/vuln_workload.py")
        report = _report(args.db, env) if args.db else json.loads(report_path.read_text())
        if args.save:
            loaded_path.write_text(json.dumps(loaded, indent=1, sort_keys=True) + "\n")
            if args.db:
                report_path.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    else:
        report, loaded = json.loads(report_path.read_text()), json.loads(loaded_path.read_text())
    result = figures(report, loaded)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(f"{args.name} under {loaded['workload']}", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
