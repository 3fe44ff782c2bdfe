"""Cost and value of the runtime AI-BOM on this project's own environment.

* cost: reading the installed environment, the snapshot of imported modules, the AI-BOM stage's
  work per event (``guard.evaluate`` of a ``ModuleLoad`` and a ``ModelLoad`` with and without the
  stage), building + serialising the CycloneDX document, and one emission of the inventory as
  ``agentguard.aibom`` spans (a full copy, and a tick when nothing changed);
* value: a real workload (a LangChain agent with the scripted model, whose tools load a
  safetensors and a joblib model, run under ``agentguard run --aibom``) loads only part of what
  is installed. With a vulnerability report (``--vulns pip-audit.json`` or OSV JSON) the
  reduction is computed on it; without one, the share of installed distributions never loaded is
  what a report spread evenly over the environment would shrink by.

    .venv/bin/python bench/aibom.py
    .venv/bin/python bench/aibom.py --vulns audit.json --json
"""

from __future__ import annotations

import argparse
import hashlib
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


def _best(fn: Any, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def _per_event(n: int = 20000) -> dict[str, float]:
    import agentguard
    from agentguard import aibom
    from agentguard.events import EventContext, ModelLoad, ModuleLoad

    guard = agentguard.instrument(exporter="none", runtime_sensor=False, builtin_rules=False,
                                  injection_detection=False)
    context = EventContext(agent="bench", tool="t")
    module = ModuleLoad(context=context, module="yaml", distribution="PyYAML", version="6")
    model = ModelLoad(context=context, path="/models/m.safetensors", format="safetensors",
                      sha256="0" * 64, size=1)

    def loop(event: Any) -> None:
        for _ in range(n):
            guard.evaluate(event)

    out: dict[str, float] = {}
    guard.add_policy(lambda event: None)  # so the pipeline runs without the stage too
    for label, event in (("module_load", module), ("model_load", model)):
        out[f"{label}_without_us"] = _best(lambda e=event: loop(e)) / n * 1e6
    aibom.enable(declared=[str(ROOT / "pyproject.toml")])
    for label, event in (("module_load", module), ("model_load", model)):
        out[f"{label}_with_us"] = _best(lambda e=event: loop(e)) / n * 1e6
    agentguard.uninstrument()
    return out


def _emission_cost() -> dict[str, float]:
    """One emission of the inventory as spans (on the emit thread): full, and with nothing changed."""
    # An agent's imports: the inventory the emission carries is what a LangChain agent loads.
    import boto3  # noqa: F401
    import langchain.agents  # noqa: F401

    import agentguard
    from agentguard import aibom
    from agentguard.aibom import _emit, _wire
    from bench._harness import noop_exporter

    agentguard.instrument(exporter=noop_exporter(), runtime_sensor=False, builtin_rules=False,
                          injection_detection=False)
    aibom.enable(emit_interval=3600)
    emitter = _emit.emitter()
    entries = len(_wire.entries_of(aibom.inventory()))

    def full() -> None:
        emitter.reset()
        emitter.emit()

    out = {"entries": float(entries), "full_s": _best(full), "unchanged_s": _best(emitter.emit)}
    agentguard.uninstrument()
    return out


def _build_cost() -> dict[str, float]:
    from agentguard.aibom._cyclonedx import to_bom, to_json
    from agentguard.aibom._environment import Environment
    from agentguard.aibom._inventory import Inventory

    env_time = _best(Environment, 3)
    env = Environment()
    inv = Inventory()
    snapshot = _best(inv.snapshot, 3)
    build = _best(lambda: to_json(to_bom(inv, include_installed=True, env=env)), 3)
    return {"installed_distributions": len(env.distributions), "environment_read_s": env_time,
            "snapshot_s": snapshot, "build_installed_s": build}


def _workload(vulns: str | None) -> dict[str, Any]:
    import joblib

    from agentguard.aibom import reachability
    from agentguard.aibom._environment import environment
    from agentguard.aibom.cli import loaded_names
    from tests.aibom.models import write_safetensors

    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        models.mkdir()
        emb = write_safetensors(models / "embeddings.safetensors", {"w": [0.1, 0.2]})
        joblib.dump({"coef": [1.0]}, models / "classifier.joblib")
        (Path(tmp) / "requirements.txt").write_text("langchain>=1.0\n")
        (Path(tmp) / "models.yaml").write_text(
            f"models:\n  - id: scripted-*\n  - path: '*/embeddings.safetensors'\n"
            f"    sha256: {hashlib.sha256(emb.read_bytes()).hexdigest()}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTGUARD_", "OTEL_"))}
        env["PYTHONPATH"] = str(ROOT)
        started = time.perf_counter()
        subprocess.run(
            [str(Path(sys.executable).with_name("agentguard")), "run", "--exporter", "none",
             "--aibom", "bom.json", "--aibom-declared", "requirements.txt", "--aibom-models",
             "models.yaml", "--", str(ROOT / "tests/aibom/workload.py"), str(models)],
            cwd=tmp, env=env, check=True, capture_output=True, timeout=300)
        elapsed = time.perf_counter() - started
        document = json.loads((Path(tmp) / "bom.json").read_text())
    loaded = loaded_names(document)
    installed = set(environment().distributions)
    result: dict[str, Any] = {
        "workload_s": elapsed, "installed": len(installed), "loaded": len(loaded & installed),
        "installed_only_share": 1 - len(loaded & installed) / len(installed),
        "components": len(document["components"]),
    }
    if vulns:
        report = reachability(vulns, loaded)
        total, in_loaded = report.vulnerability_counts()
        result.update({"vulnerabilities": total, "vulnerabilities_loaded": in_loaded,
                       "noise_reduction": report.noise_reduction, "summary": report.summary()})
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vulns", help="pip-audit or OSV JSON report of this environment")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {"build": _build_cost(), "per_event": _per_event(),
               "emission": _emission_cost(), "workload": _workload(args.vulns)}
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    build, per_event, work = results["build"], results["per_event"], results["workload"]
    print(f"environment: {build['installed_distributions']} distributions read in "
          f"{build['environment_read_s'] * 1e3:.0f} ms; snapshot {build['snapshot_s'] * 1e3:.1f} ms; "
          f"CycloneDX of all of them {build['build_installed_s'] * 1e3:.0f} ms")
    for label in ("module_load", "model_load"):
        print(f"{label}: {per_event[f'{label}_without_us']:.1f} µs per evaluate without the "
              f"stage, {per_event[f'{label}_with_us']:.1f} µs with it")
    emission = results["emission"]
    print(f"emission as spans: {emission['entries']:.0f} entries in "
          f"{emission['full_s'] * 1e3:.1f} ms (full copy), {emission['unchanged_s'] * 1e3:.2f} ms "
          "when nothing changed (emit thread)")
    print(f"workload: {work['loaded']} of {work['installed']} installed distributions loaded; "
          f"{work['installed_only_share']:.0%} installed only ({work['workload_s']:.1f} s)")
    if "summary" in work:
        print(work["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
