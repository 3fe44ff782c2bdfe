"""How the demo shows a scenario: in the terminal (rich) and as self-contained HTML pages.

Each scenario is told three ways side by side: the one line a control plane logs, what agentguard
found (rule, severity, action, where), and the attack story: the collector's incident when the
collector ran, else a story built from the findings themselves. Every page is one file with inline
CSS, no scripts and a Content-Security-Policy that forbids loading anything.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agentguard.collector.render import escape_html as _e
from agentguard.collector.render import html_page, incident_html
from agentguard.collector.render import severity_badge as _sev
from agentguard.demo._scenario import Outcome, Scenario
from agentguard.findings import SEVERITY_ORDER, Finding

__all__ = ["control_plane_verdict", "failed_html", "findings_story", "index_html",
           "print_outcome", "scenario_html", "summary_table", "verdict"]

_STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": "cyan",
          "info": "dim"}
_MAX_FINDINGS_SHOWN = 12


def verdict(outcome: Outcome | None) -> str:
    """One word for the summary: blocked, detected, missed or failed."""
    if outcome is None:
        return "failed"
    if outcome.blocked:
        return "blocked"
    return "detected" if outcome.detected else "missed"


def control_plane_verdict(line: str) -> str:
    """What the control plane concluded, in its own words ("authorized, 200")."""
    status = next((part.split("=", 1)[1] for part in line.split() if part.startswith("status=")),
                  None)
    authorized = "authorized" in line.split()
    if status is None:
        return line
    return f"authorized, {status}" if authorized else f"status {status}"


def _ordered(findings: Sequence[Finding]) -> list[Finding]:
    """Blocks first, then by severity, then in time order."""
    return sorted(findings, key=lambda f: (f.action != "block", -SEVERITY_ORDER.get(f.severity, 0),
                                           f.timestamp))


def findings_story(findings: Sequence[Finding]) -> list[str]:
    """The attack story told by the findings alone (no collector): one line per step, in order."""
    lines: list[str] = []
    seen: set[tuple[Any, ...]] = set()
    for finding in sorted(findings, key=lambda f: f.timestamp):
        key = (finding.turn, finding.tool, finding.rule_id)
        if key in seen:
            continue
        seen.add(key)
        where = f"turn {finding.turn}" if finding.turn is not None else "outside any turn"
        tool = f", tool {finding.tool}" if finding.tool else ""
        lines.append(f"{time.strftime('%H:%M:%S', time.localtime(finding.timestamp))} {where}"
                     f"{tool}: {finding.action.upper()} {finding.rule_id} - {finding.title}")
    return lines


def _findings_table(findings: Sequence[Finding]) -> Table:
    table = Table("rule", "severity", "action", "where", "what", box=None, pad_edge=False,
                  show_edge=False, header_style="dim")
    shown = _ordered(findings)
    for finding in shown[:_MAX_FINDINGS_SHOWN]:
        where = " ".join(part for part in (
            finding.conversation_id or "", f"turn {finding.turn}" if finding.turn is not None
            else "", finding.tool or "") if part)
        table.add_row(escape(finding.rule_id),
                      f"[{_STYLE.get(finding.severity, '')}]{finding.severity}[/]",
                      "[bold red]block[/]" if finding.action == "block" else "alert",
                      escape(where), escape(finding.title[:110]))
    if len(shown) > _MAX_FINDINGS_SHOWN:
        table.add_row("", "", "", "", f"[dim]... and {len(shown) - _MAX_FINDINGS_SHOWN} more[/]")
    return table


def print_outcome(console: Console, scenario: Scenario, outcome: Outcome | None,
                  incidents: Sequence[Any], error: str | None = None) -> None:
    """One scenario in the terminal: control plane, agentguard, the attack story, the report."""
    head = f"{scenario.number}. {scenario.title}: {scenario.threat}"
    if outcome is None:
        console.print(Panel(Text(error or "failed", style="red"), title=escape(head),
                            title_align="left", border_style="red"))
        return
    word = verdict(outcome)
    colour = {"blocked": "green", "detected": "yellow"}.get(word, "red")
    parts: list[Any] = [
        Text.from_markup(f"[bold]control plane[/]  [dim]{escape(outcome.control_plane)}[/]"),
        Text.from_markup(f"[bold]agentguard[/]     [{colour}]{word.upper()}[/]  "
                         f"{escape(outcome.summary)}"),
    ]
    if outcome.findings:
        parts.append(_findings_table(outcome.findings))
    for line in outcome.details:
        parts.append(Text.from_markup(f"  [dim]-[/] {escape(line)}"))
    if outcome.noise:
        parts.append(Text.from_markup(f"  [yellow]benign phase: {len(outcome.noise)} finding(s) "
                                      f"(false positives): "
                                      f"{escape(', '.join(sorted({f.rule_id for f in outcome.noise})))}"
                                      "[/]"))
    if incidents:
        for incident in incidents:
            parts.append(Text.from_markup(
                f"[bold]attack story[/] (collector incident {escape(incident.id)}, "
                f"{len(incident.timeline)} timeline entries, {len(incident.processes)} process "
                f"tree(s)): {escape(incident.narrative)}"))
    elif outcome.findings:
        parts.append(Text.from_markup("[bold]attack story[/] (from the findings):"))
        for line in findings_story(outcome.findings)[:8]:
            parts.append(Text.from_markup(f"  {escape(line)}"))
    if outcome.report is not None:
        parts.append(Text.from_markup(f"[bold]report[/]  {escape(_shown_path(outcome.report))}"))
    console.print(Panel(Group(*parts), title=f"[bold]{escape(head)}[/]", title_align="left",
                        border_style=colour))


def _shown_path(path: Path) -> str:
    """A report's path as the user would type it: relative to the working directory if inside."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def summary_table(rows: Sequence[tuple[Scenario, Outcome | None]]) -> Table:
    """The closing table: scenario, threat, control plane, agentguard, report."""
    table = Table("#", "scenario", "threat", "control plane", "agentguard",
                  title="agentguard demo: summary", title_justify="left")
    table.add_column("report", overflow="fold")
    for scenario, outcome in rows:
        word = verdict(outcome)
        colour = {"blocked": "green", "detected": "yellow"}.get(word, "red")
        shown = {"blocked": "detected, blocked", "detected": "detected, not blocked"}.get(word, word)
        table.add_row(str(scenario.number), escape(scenario.title), escape(scenario.threat),
                      escape(control_plane_verdict(outcome.control_plane)) if outcome else "-",
                      f"[{colour}]{shown}[/]",
                      escape(_shown_path(outcome.report)) if outcome is not None and
                      outcome.report else "-")
    return table


# -- HTML ----------------------------------------------------------------------------------

# What the demo's pages add to the look all agentguard pages share (collector/render.py).
_DEMO_CSS = """
.verdict{display:inline-block;padding:2px 10px;border-radius:4px;font-weight:700;color:#fff}
.v-blocked{background:#2e7d32}.v-detected{background:#e08e0b}.v-missed,.v-failed{background:#c62828}
.cp{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;background:#eef0f3;padding:6px 10px;
border-radius:4px}
"""


def _scenario_section(scenario: Scenario, outcome: Outcome) -> str:
    word = verdict(outcome)
    details = "".join(f"<li>{_e(line)}</li>" for line in outcome.details)
    noise = (f"<p>Benign (learn) phase: {len(outcome.noise)} finding(s): "
             f"{_e(', '.join(sorted({f.rule_id for f in outcome.noise})))}</p>"
             if outcome.noise else "<p>Benign (learn) phase: no findings.</p>")
    return (f"<section><h2>Scenario {scenario.number}: {_e(scenario.title)}</h2>"
            f"<p>{_e(scenario.threat)}</p>"
            f"<p><b>What the control plane logged</b></p><p class=\"cp\">{_e(outcome.control_plane)}"
            f"</p><p><b>What agentguard showed</b> <span class=\"verdict v-{word}\">{word}</span> "
            f"{_e(outcome.summary)}</p><ul>{details}</ul>{noise}</section>")


def _findings_html(findings: Sequence[Finding]) -> str:
    rows = "".join(
        f"<tr><td>{_sev(f.severity)}</td><td><code>{_e(f.rule_id)}</code></td><td>{_e(f.action)}"
        f"</td><td>{_e(f.category)}</td><td>{_e(f.conversation_id or '')}</td>"
        f"<td>{_e(f.turn if f.turn is not None else '')}</td><td>{_e(f.tool or '')}</td>"
        f"<td>{_e(f.title)}</td><td><pre>"
        f"{_e(json.dumps(f.evidence, indent=1, default=str, ensure_ascii=False)[:4000])}</pre>"
        f"</td><td><code>{_e((f.trace_id or '')[:16])}</code><br><code>{_e(f.span_id or '')}</code>"
        "</td></tr>" for f in _ordered(findings))
    return ("<section><h2>Findings and evidence</h2><table><tr><th>severity</th><th>rule</th>"
            "<th>action</th><th>category</th><th>conversation</th><th>turn</th><th>tool</th>"
            "<th>title</th><th>evidence</th><th>trace / span</th></tr>"
            f"{rows}</table></section>")


def scenario_html(scenario: Scenario, outcome: Outcome, incidents: Sequence[Any]) -> str:
    """The scenario's report: its summary above the collector's incident page, or, without an
    incident, a page of its own with the findings and the story they tell."""
    section = _scenario_section(scenario, outcome)
    if incidents:
        # The collector's incident page, with the scenario's summary above the story.
        return incident_html(list(incidents), before=f"<main>{section}</main>", css=_DEMO_CSS)
    story = "".join(f"<li><code>{_e(line)}</code></li>" for line in findings_story(outcome.findings))
    return html_page(
        f"agentguard demo: {scenario.title}",
        f"<header><h1>Scenario {scenario.number}: {_e(scenario.title)}</h1>"
        f"<div class=\"meta\">{_e(scenario.threat)} &middot; trace(s) "
        f"{_e(', '.join(t[:16] for t in outcome.trace_ids[:5]) or '-')} &middot; no collector "
        f"incident: the story below is built from agentguard's findings</div></header><main>"
        f"{section}<section><h2>Attack story</h2><ul>{story or '<li>no findings</li>'}</ul>"
        f"</section>{_findings_html(outcome.findings)}</main>", _DEMO_CSS)


def failed_html(scenario: Scenario, error: str) -> str:
    """The report of a scenario that raised."""
    return html_page(
        f"agentguard demo: {scenario.title}",
        f"<header><h1>Scenario {scenario.number}: {_e(scenario.title)}</h1>"
        f"<div class=\"meta\">{_e(scenario.threat)}</div></header><main><section><h2>The "
        f"scenario failed</h2><span class=\"verdict v-failed\">failed</span><pre>{_e(error)}"
        "</pre></section></main>", _DEMO_CSS)


def index_html(rows: Sequence[tuple[Scenario, Outcome | None, str | None]], *,
               collector: str, elapsed: float) -> str:
    """The demo's index page: one row per scenario, linking to its report."""
    body = []
    for scenario, outcome, report in rows:
        word = verdict(outcome)
        link = f'<a href="{_e(report)}">{_e(report)}</a>' if report else "-"
        body.append(
            f"<tr><td>{scenario.number}</td><td>{_e(scenario.title)}</td><td>{_e(scenario.threat)}"
            f"</td><td class=\"cp\">{_e(outcome.control_plane if outcome else '-')}</td>"
            f"<td><span class=\"verdict v-{word}\">{word}</span> "
            f"{_e(outcome.summary if outcome else '')}</td><td>{link}</td></tr>")
    return html_page(
        "agentguard demo",
        f"<header><h1>agentguard demo</h1><div class=\"meta\">{_e(collector)} &middot; "
        f"{elapsed:.1f} s</div></header><main><section><h2>Scenarios</h2><table><tr><th>#</th>"
        "<th>scenario</th><th>threat</th><th>control plane</th><th>agentguard</th>"
        f"<th>report</th></tr>{''.join(body)}</table></section></main>", _DEMO_CSS)
