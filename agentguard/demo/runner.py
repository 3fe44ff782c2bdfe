"""``agentguard demo``: the seed's threat scenarios end to end, with the collector beside them.

The runner starts the real collector (``agentguard collector run``) in a child process on
loopback, with the eBPF sensor when this machine can run it and the ``/proc`` fallback otherwise
(it says which, and what the fallback cannot see). It then runs every scenario of
:func:`agentguard.demo.scenarios.all_scenarios` in order, each exporting its spans to the
collector: a benign phase in ``learn``, then the attack in ``enforce``. For each it prints the
control plane's one line beside what agentguard found and the attack story (the collector's
incident, or a story built from the findings when no collector runs), writes a self-contained
HTML report, and ends with a summary table. The exit status is 0 only when every scenario was
detected. Nothing is left running: the collector gets SIGTERM and the scratch directory is
removed.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from agentguard.demo._collector import DemoCollector, DemoCollectorError
from agentguard.demo._report import (
    failed_html,
    index_html,
    print_outcome,
    scenario_html,
    summary_table,
)
from agentguard.demo._scenario import DemoEnv, Outcome, Scenario

__all__ = ["DemoResult", "run_demo"]

#: The budget the demo is built for; the closing line says whether it held.
TIME_BUDGET = 60.0


class DemoResult:
    """What one scenario ended as: its outcome (None when it raised), the error, the incidents."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.outcome: Outcome | None = None
        self.error: str | None = None
        self.incident_ids: list[str] = []
        self.report: Path | None = None
        self.seconds = 0.0


@contextmanager
def _quiet_findings_log() -> Iterator[None]:
    """The demo prints findings itself: keep the findings logger's one-line copies off stderr."""
    log = logging.getLogger("agentguard.findings")
    handler = logging.NullHandler()
    propagate = log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


def _sensor_lines(collector: DemoCollector) -> list[str]:
    if collector.sensor == "ebpf":
        return [f"collector: running (pid {collector.process.pid if collector.process else '?'}), "
                f"kernel sensor [bold green]eBPF[/] (bpftrace on tracepoints), OTLP/HTTP on "
                f"{collector.status['endpoints']['otlp_http']}"]
    if collector.sensor_option == collector.sensor:
        why = f"chosen with --sensor {collector.sensor}"
    else:
        from agentguard.collector.sensor import ebpf_unavailable_reason

        why = "no eBPF: " + (collector.fallback_reason or ebpf_unavailable_reason() or
                             "bpftrace did not attach")
    lines = [f"collector: running (pid {collector.process.pid if collector.process else '?'}), "
             f"kernel sensor [bold yellow]{escape(collector.sensor)} fallback[/] ({escape(why)}), "
             f"OTLP/HTTP on {collector.status['endpoints']['otlp_http']}"]
    if collector.blind_spots:
        lines.append("[yellow]without eBPF the collector cannot see:[/] "
                     + escape("; ".join(collector.blind_spots)))
    return lines


def _select(scenarios: Sequence[Scenario], only: set[int] | None) -> list[Scenario]:
    return [s for s in scenarios if only is None or s.number in only]


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _report_name(scenario: Scenario) -> str:
    return f"s{scenario.number}_{scenario.key}.html"


def _run_one(scenario: Scenario, workroot: Path, output: Path,
             collector: DemoCollector | None, endpoint: str | None) -> DemoResult:
    """Run one scenario and find its incident; a scenario that raises is a failed result."""
    result = DemoResult(scenario)
    workdir = workroot / f"s{scenario.number}_{scenario.key}"
    workdir.mkdir(parents=True)
    env = DemoEnv(workdir=workdir, output_dir=output, collector_endpoint=endpoint)
    started = time.monotonic()
    try:
        result.outcome = scenario.run(env)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
    finally:
        # A scenario that raised inside env.instrument() has already uninstrumented; one that
        # raised outside must not leave the next one instrumented.
        import agentguard

        if agentguard.get_guard() is not None:
            agentguard.uninstrument()
    result.seconds = time.monotonic() - started
    outcome = result.outcome
    if collector is not None and outcome is not None and outcome.findings:
        conversations = sorted({f.conversation_id for f in outcome.findings if f.conversation_id})
        incidents = collector.incidents_for(conversations, outcome.trace_ids,
                                            expected=len(outcome.findings))
        result.incident_ids = [incident.id for incident in incidents]
    return result


def _write_report(result: DemoResult, output: Path, incidents: Sequence[Any]) -> None:
    path = output / _report_name(result.scenario)
    if result.outcome is None:
        _write(path, failed_html(result.scenario, result.error or "failed"))
    else:
        _write(path, scenario_html(result.scenario, result.outcome, incidents))
        result.outcome.report = path
    result.report = path


def run_demo(output: str | Path = "demo-output", *, only: Sequence[int] | None = None,
             use_collector: bool = True, sensor: str = "auto", otlp: str | None = None,
             console: Console | None = None) -> int:
    """Run the demo; returns the exit status (0 when every scenario was detected)."""
    started = time.monotonic()
    import importlib.util

    missing = [name for name in ("langchain", "langgraph", "boto3")
               if importlib.util.find_spec(name) is None]
    if missing:
        print(f"agentguard demo needs the demo extra (pip install 'agentguard[demo]'); missing: "
              f"{', '.join(missing)}", file=sys.stderr)
        return 2
    from agentguard.demo.scenarios import all_scenarios

    available = all_scenarios()
    scenarios = _select(available, set(only) if only else None)
    if not scenarios:
        print(f"agentguard demo: no scenario numbered {', '.join(map(str, only or []))} (there "
              f"are: {', '.join(str(s.number) for s in available) or 'none'})", file=sys.stderr)
        return 2
    if console is None:
        console = Console(highlight=False)
        if not console.is_terminal and not os.environ.get("COLUMNS"):
            # Piped into a file or CI log: wide enough for the findings tables.
            console = Console(highlight=False, width=120)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    workroot = Path(tempfile.mkdtemp(prefix="agentguard-demo-"))
    collector: DemoCollector | None = None
    results: list[DemoResult] = []
    collector_line = "no collector (in-process sensor only)"
    console.rule("[bold]agentguard demo[/]: the seed's threats, learn on benign traffic, then "
                 "attack under enforce")
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            startup_error: str | None = None
            if use_collector:
                # bpftrace compiles and attaches while the agent frameworks import below.
                collector = DemoCollector(workroot / "collector", sensor=sensor, forward=otlp)
                try:
                    collector.start()
                except DemoCollectorError as exc:
                    startup_error, collector = str(exc), None
            task = progress.add_task("loading the agent frameworks (LangChain, LangGraph)")
            import langchain.agents  # noqa: F401 - the scenarios' first import, timed here

            endpoint = otlp if not use_collector else None
            if use_collector:
                progress.update(task, description="starting the collector (kernel sensor, OTLP "
                                                  "receiver)")
                try:
                    if collector is None:
                        raise DemoCollectorError(startup_error or "not started")
                    collector.wait_ready()
                    endpoint = collector.endpoint
                    collector_line = (f"collector with the {collector.sensor} sensor"
                                      + (f" (eBPF unavailable: {collector.fallback_reason})"
                                         if collector.sensor != "ebpf" and
                                         collector.fallback_reason else ""))
                    for line in _sensor_lines(collector):
                        console.print(line)
                except DemoCollectorError as exc:
                    console.print(f"[bold red]collector: not running[/] ({escape(str(exc))}); "
                                  "the demo continues with the in-process sensor only and "
                                  "builds each story from the findings")
                    if collector is not None:
                        collector.stop()
                    collector = None
            else:
                console.print("collector: [yellow]off[/] (--no-collector): the in-process sensor "
                              "judges everything; no kernel view, stories come from the findings")
            progress.remove_task(task)
            with _quiet_findings_log():
                for index, scenario in enumerate(scenarios, 1):
                    task = progress.add_task(f"[{index}/{len(scenarios)}] scenario "
                                             f"{scenario.number}: {scenario.title} (learn, then "
                                             "attack under enforce)")
                    result = _run_one(scenario, workroot, output, collector, endpoint)
                    incidents = collector.build(result.incident_ids) if collector else []
                    _write_report(result, output, incidents)
                    progress.remove_task(task)
                    print_outcome(console, scenario, result.outcome, incidents, result.error)
                    results.append(result)
        if collector is not None:
            code = collector.stop()
            console.print(f"collector: stopped (SIGTERM, exit status {code})")
            # The stopped collector resolved what was still waiting for a span: the final
            # incidents may hold kernel events the first look did not.
            for result in results:
                if result.incident_ids:
                    _write_report(result, output, collector.build(result.incident_ids))
    finally:
        if collector is not None:
            collector.stop()
        shutil.rmtree(workroot, ignore_errors=True)

    elapsed = time.monotonic() - started
    _write(output / "index.html", index_html(
        [(r.scenario, r.outcome, r.report.name if r.report else None) for r in results],
        collector=collector_line, elapsed=elapsed))
    console.print(summary_table([(r.scenario, r.outcome) for r in results]))
    missed = [r for r in results if r.outcome is None or not r.outcome.detected]
    within = "within" if elapsed < TIME_BUDGET else "over"
    console.print(f"{len(results)} scenario(s): {sum(1 for r in results if r.outcome and r.outcome.blocked)} "
                  f"blocked, {sum(1 for r in results if r.outcome and r.outcome.detected)} detected, "
                  f"{len(missed)} missed or failed; reports in {escape(str(output))}/ "
                  f"(index.html); finished in {elapsed:.1f} s ({within} the {TIME_BUDGET:.0f} s "
                  "budget)")
    return 1 if missed or not results else 0
