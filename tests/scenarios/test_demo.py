"""``agentguard demo`` end to end, as a user runs it: a real collector beside the scenarios, one
HTML report per scenario, a summary table, exit status 0, and nothing left running."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from rich.console import Console

from agentguard.collector.sensor import ebpf_unavailable_reason
from agentguard.demo.runner import run_demo
from agentguard.demo.scenarios import all_scenarios


def test_demo_runs_every_scenario_with_the_collector(tmp_path: Path) -> None:
    """The demo starts the collector (eBPF where it can run, else the fallback, said plainly),
    detects every scenario, writes a report per scenario and an index, prints the summary and
    its wall time, exits 0 and leaves no collector or bpftrace behind."""
    reason = ebpf_unavailable_reason()
    if reason is not None and os.environ.get("AGENTGUARD_REQUIRE_EBPF") == "1":
        pytest.fail(f"eBPF required (AGENTGUARD_REQUIRE_EBPF=1) but unavailable: {reason}")
    output = tmp_path / "demo-output"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTGUARD_", "OTEL_"))}
    env["COLUMNS"] = "160"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "agentguard.cli", "demo", "--output", str(output),
         "--sensor", "ebpf" if reason is None else "auto"],
        capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path, check=False)
    elapsed = time.monotonic() - started
    out = done.stdout

    assert done.returncode == 0, out[-4000:] + done.stderr[-2000:]
    if reason is None:
        assert "kernel sensor eBPF" in out
    else:
        assert "fallback" in out and "cannot see" in out
    assert "collector: stopped (SIGTERM, exit status 0)" in out
    assert "agentguard demo: summary" in out
    scenarios = all_scenarios()
    for scenario in scenarios:
        report = output / f"s{scenario.number}_{scenario.key}.html"
        assert report.is_file(), f"no report for scenario {scenario.number}"
        page = report.read_text(encoding="utf-8")
        assert "default-src 'none'" in page and "<script" not in page
        assert scenario.title in page
        assert scenario.title in out
    assert (output / "index.html").is_file()
    assert f"{len(scenarios)} scenario(s)" in out and "0 missed or failed" in out
    assert "finished in" in out and "budget" in out
    # The wall time is reported, not asserted tightly: the machine may be shared.
    print(f"agentguard demo took {elapsed:.1f} s")
    leftovers = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
                 if any("agentguard-demo-" in part for part in (p.info["cmdline"] or []))]
    assert leftovers == []


def test_demo_without_collector_builds_stories_from_findings(tmp_path: Path) -> None:
    """With --no-collector and --only, the demo runs the chosen scenario alone, says there is no
    kernel view, and its report tells the attack story from agentguard's findings."""
    output = tmp_path / "out"
    console = Console(file=io.StringIO(), width=160, highlight=False)

    code = run_demo(output, only=[1], use_collector=False, console=console)

    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert code == 0, out[-3000:]
    assert "--no-collector" in out and "attack story (from the findings)" in out
    assert [p.name for p in sorted(output.iterdir())] == ["index.html", "s1_agent_escape.html"]
    page = (output / "s1_agent_escape.html").read_text(encoding="utf-8")
    assert "the story below is built from agentguard" in page and "AG002" in page
    assert "agentguard demo: summary" in out and "detected, blocked" in out
