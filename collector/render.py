"""Incidents and kernel events for people: rich terminal output and a self-contained HTML page.

Everything shown may come from an attacker (prompts, arguments, file names), so the HTML page
escapes every value and loads nothing from anywhere; the terminal output escapes rich markup.
File and program names that are not UTF-8 (kept exactly in the store, as surrogate escapes) are
shown with their odd bytes written ``\\xff``, in both.
"""

from __future__ import annotations

import datetime
import html
import json
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.tree import Tree

from agentguard._text import faithful
from agentguard.collector.incidents import Incident, ProcessNode

__all__ = ["BASE_CSS", "escape_html", "html_page", "incident_html", "print_events",
           "print_incident", "print_incidents", "print_status", "severity_badge"]

_SEVERITY_STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "yellow",
                   "low": "cyan", "info": "dim"}


def _time(ts_ns: int | None) -> str:
    if not ts_ns:
        return "-"
    stamp = datetime.datetime.fromtimestamp(ts_ns / 1e9, tz=datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _text(value: str) -> str:
    """``value`` for the terminal: printable (no surrogates, which no encoding of a terminal
    takes) and with rich markup escaped."""
    return escape(faithful(value))


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"


# -- terminal ------------------------------------------------------------------------------

# The counters of `collector status`, in order: what came in; "dropped" and its causes (the
# *_over_queue_bytes counters are parts of the one before them, requests_lost_at_stop counts the
# loss of spans_lost_at_stop by request); what was found (inventories too) and watched;
# forwarding.
_STATUS_COUNTERS = (
    "events", "lost", "correlated", "unattributed", "ambiguous", "pending",
    "dropped", "events_dropped", "requests_dropped", "requests_over_queue_bytes", "spans_dropped",
    "requests_lost_at_stop", "spans_lost_at_stop", "forward_dropped", "forward_over_queue_bytes",
    "forward_too_large", "forward_lost_at_stop", "spans_rejected", "spans_rejected_invalid_id",
    "spans_rejected_unreadable", "events_unparsed", "events_failed", "forward_events_dropped",
    "requests_failed", "agent_lookups_deferred", "pending_forced", "unwatched_processes",
    "spans_received", "findings", "library_findings", "aibom_entries", "aibom_unverified",
    "aibom_refused", "watched_processes", "watched_roots",
    "agents", "agents_replaced", "agents_evicted", "sensor_restarts", "sensor_gaps", "requests",
    "requests_rejected", "forwarded_spans", "forward_failed", "forward_queue",
)


def print_status(console: Console, status: dict[str, Any], alive: bool) -> None:
    collector = status.get("collector", {}).get("value", {})
    updated = status.get("collector", {}).get("updated_ns")
    state = collector.get("state", "unknown")
    if state == "running" and not alive:
        state = "not running (stale status)"
    table = Table(show_header=False, box=None)
    table.add_row("state", _text(state))
    table.add_row("pid", str(collector.get("pid")))
    table.add_row("started", _time(collector.get("started_ns")))
    table.add_row("last update", _time(updated))
    table.add_row("sensor", _text(f"{collector.get('sensor')} "
                                  f"({'healthy' if collector.get('sensor_healthy') else 'NOT healthy'})"))
    if collector.get("fallback_reason"):
        table.add_row("why not eBPF", _text(str(collector["fallback_reason"])))
    if collector.get("sensor_error"):
        table.add_row("sensor error", _text(str(collector["sensor_error"])))
    for name, address in (collector.get("endpoints") or {}).items():
        table.add_row(name, _text(address))
    table.add_row("forward", _text(str(collector.get("forward") or "-")))
    table.add_row("database", _text(str(collector.get("db"))))
    console.print(Panel(table, title="agentguard collector"))
    if collector.get("sensor") != "ebpf" and collector.get("blind_spots"):
        console.print("[bold yellow]This sensor cannot see:[/]")
        for item in collector["blind_spots"]:
            console.print(f"  • {_text(item)}")
    counters = collector.get("counters") or {}
    counts = Table("counter", "value", title="counters")
    for key in _STATUS_COUNTERS:
        if key in counters:
            counts.add_row(key, _text(str(counters[key])))
    console.print(counts)


def print_events(console: Console, events: Sequence[dict[str, Any]]) -> None:
    table = Table("time", "pid", "tid", "event", "conversation", "turn", "tool / span", "how",
                  "library saw", title=f"{len(events)} kernel event(s)")
    for event in events:
        span = event.get("span_id")
        where = "unattributed" if not span else \
            f"{event.get('tool') or event.get('span_name') or '?'} {span[:8]}"
        seen = event.get("seen_by_library")
        table.add_row(
            _time(event["ts_ns"]), str(event["pid"]), str(event["tid"] or ""),
            _text(_short(_event_text(event), 80)), _text(str(event.get("conversation_id") or "")),
            str(event.get("turn") if event.get("turn") is not None else ""), _text(where),
            _text(event["attribution"]), "" if seen is None else ("yes" if seen else "[red]no[/]"),
        )
    console.print(table)


def _event_text(event: dict[str, Any]) -> str:
    d = event["data"]
    kind = event["kind"]
    if kind == "process.exec":
        return "exec " + " ".join(d.get("argv") or [d.get("exe") or "?"])
    if kind == "process.fork":
        return f"fork → {d.get('child_pid')}"
    if kind == "process.exit":
        return f"exit {d.get('exit_code')}"
    if kind == "net.connect":
        result = d.get("result_name") or d.get("result")
        return f"connect {d.get('address')}:{d.get('port')}" + \
            (f" ({result})" if result not in (0, None) else "")
    if kind == "dns.query":
        return f"dns {d.get('query')}"
    if kind == "file.open":
        return f"open {d.get('path')}"
    if kind == "net.sent":
        return f"sent {d.get('bytes')} bytes"
    if kind == "sensor.gap":
        return f"SENSOR GAP {d.get('seconds', 0):.1f}s: {d.get('reason')}"
    if kind == "sensor.lost":
        return f"{d.get('count')} events LOST"
    if kind == "sensor.unwatched":
        return f"process {d.get('child_pid')} NOT WATCHED (kernel watch map full)"
    return str(kind)


def print_incidents(console: Console, incidents: Iterable[dict[str, Any]]) -> None:
    table = Table("id", "severity", "title", "agent", "conversation", "findings", "last seen",
                  title="incidents")
    for row in incidents:
        style = _SEVERITY_STYLE.get(row["severity"], "")
        table.add_row(row["id"], f"[{style}]{row['severity']}[/]", _text(_short(row["title"], 70)),
                      _text(str(row.get("agent") or "")),
                      _text(str(row.get("conversation_id") or row.get("trace_id") or "")),
                      str(row["findings"]), _time(row["last_ns"]))
    console.print(table)


def _tree(node: ProcessNode, tree: Tree) -> None:
    label = f"[bold]{node.pid}[/] {_text(_short(' '.join(node.argv) or node.exe or '?', 100))}"
    if node.tool:
        label += f"  [dim]tool {_text(node.tool)}[/]"
    if node.kernel_only:
        label += "  [red]kernel-only[/]"
    branch = tree.add(label)
    for target in node.connections[:10]:
        branch.add(f"[magenta]connect {_text(target)}[/]")
    for path in node.files[:10]:
        branch.add(f"[yellow]open {_text(path)}[/]")
    for query in node.dns[:10]:
        branch.add(f"[blue]dns {_text(query)}[/]")
    if node.bytes_sent:
        branch.add(f"sent {node.bytes_sent} bytes")
    for child in node.children:
        _tree(child, branch)


def print_incident(console: Console, incident: Incident) -> None:
    style = _SEVERITY_STYLE.get(incident.severity, "")
    console.print(Panel(_text(incident.narrative),
                        title=f"{incident.id} [{style}]{incident.severity}[/] "
                              f"{_text(_short(incident.title, 80))}"))
    if incident.trigger.get("text"):
        console.print(f"[bold]Turn {incident.trigger.get('turn')}:[/] "
                      f"{_text(_short(incident.trigger['text'], 400))}")
    for item in incident.trigger.get("untrusted_content", []):
        console.print(f"[bold]Untrusted ({_text(item['source'])}):[/] "
                      f"{_text(_short(item['excerpt'], 400))}")
    timeline = Table("time", "what", "tool", "pid", "", title="timeline")
    for entry in incident.timeline:
        mark = f"[{_SEVERITY_STYLE.get(entry.severity or '', '')}]{entry.severity}[/]" \
            if entry.severity else ("[red]kernel-only[/]" if entry.kernel_only else "")
        timeline.add_row(_time(entry.ts_ns), _text(_short(entry.title, 100)),
                         _text(entry.tool or ""), str(entry.pid or ""), mark)
    console.print(timeline)
    if incident.processes:
        tree = Tree("processes")
        for root in incident.processes:
            _tree(root, tree)
        console.print(tree)
    findings = Table("severity", "rule", "title", "source", "evidence", title="findings")
    for finding in incident.findings:
        findings.add_row(f"[{_SEVERITY_STYLE.get(finding.severity, '')}]{finding.severity}[/]",
                         _text(finding.rule_id), _text(_short(finding.title, 80)),
                         _text(finding.source), _text(_short(finding.evidence, 100)))
    console.print(findings)


# -- HTML ----------------------------------------------------------------------------------

# The look every agentguard HTML page shares (incident reports, the demo's pages).
BASE_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1d232b;background:#f6f7f9}
header{background:#1d232b;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:20px}
header .meta{color:#b9c2cf;font-size:13px}
main{padding:18px 28px;max-width:1200px}
section{background:#fff;border:1px solid #dfe3e8;border-radius:6px;margin:0 0 16px;padding:14px 18px}
h2{font-size:15px;margin:0 0 10px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;vertical-align:top;padding:4px 8px;border-bottom:1px solid #eef0f3}
th{color:#5b6573;font-weight:600}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}
pre{white-space:pre-wrap;word-break:break-word;margin:0;background:#f6f7f9;padding:6px;border-radius:4px}
.sev{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;font-weight:600;color:#fff}
.sev-critical{background:#8b0000}.sev-high{background:#c62828}.sev-medium{background:#e08e0b}
.sev-low{background:#1976d2}.sev-info{background:#78909c}
"""
_INCIDENT_CSS = """
.kernel{color:#c62828;font-weight:600}
.kind{font-weight:600;color:#37474f}
ul.tree{list-style:none;padding-left:18px;margin:0}
ul.tree li{margin:3px 0}
ul.tree li::before{content:"└ ";color:#9aa5b1}
.narrative{font-size:15px}
.quote{border-left:3px solid #e08e0b;padding:4px 10px;background:#fff8e7;margin:6px 0}
"""


_KERNEL_ONLY = '<span class="kernel">kernel-only</span>'


def escape_html(value: Any) -> str:
    """``value`` as text safe in HTML content and attribute values (None: empty)."""
    return html.escape("" if value is None else faithful(str(value)), quote=True)


_e = escape_html


def severity_badge(value: str | None) -> str:
    """A coloured severity label (``.sev`` in :data:`BASE_CSS`); empty for no severity."""
    if not value:
        return ""
    return f'<span class="sev sev-{_e(value)}">{_e(value)}</span>'


_severity = severity_badge


def html_page(title: str, body: str, css: str = "") -> str:
    """A self-contained page: inline CSS (:data:`BASE_CSS` then ``css``), no scripts, and a
    Content-Security-Policy that forbids loading anything."""
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'\">"
            f"<title>{_e(title)}</title><style>{BASE_CSS}{css}</style></head><body>{body}"
            "</body></html>")


def _process_html(node: ProcessNode) -> str:
    argv = " ".join(node.argv) or node.exe or "?"
    parts = [f"<li><code>{node.pid}</code> <code>{_e(_short(argv, 300))}</code>"]
    if node.tool:
        parts.append(f" &middot; tool <b>{_e(node.tool)}</b>")
    if node.attribution:
        parts.append(f" &middot; <small>{_e(node.attribution)}</small>")
    if node.kernel_only:
        parts.append(' &middot; <span class="kernel">kernel-only</span>')
    if node.exit_code is not None:
        parts.append(f" &middot; exit {_e(node.exit_code)}")
    details = [f"<li>connect <code>{_e(t)}</code></li>" for t in node.connections[:20]]
    details += [f"<li>open <code>{_e(p)}</code></li>" for p in node.files[:20]]
    details += [f"<li>dns <code>{_e(q)}</code></li>" for q in node.dns[:20]]
    if node.bytes_sent:
        details.append(f"<li>sent {node.bytes_sent} bytes</li>")
    details += [_process_html(child) for child in node.children]
    if details:
        parts.append('<ul class="tree">' + "".join(details) + "</ul>")
    parts.append("</li>")
    return "".join(parts)


def incident_html(incidents: Sequence[Incident], *, before: str = "", css: str = "") -> str:
    """One self-contained page (inline CSS, no scripts, no external assets) for the incidents;
    ``before`` is HTML put above them (with ``css`` for its styles)."""
    body: list[str] = [before] if before else []
    title = incidents[0].title if len(incidents) == 1 else f"{len(incidents)} incidents"
    for incident in incidents:
        body.append(f'<article id="{_e(incident.id)}">')
        body.append(
            f"<header><h1>{_e(incident.id)} {_severity(incident.severity)} {_e(incident.title)}"
            f'</h1><div class="meta">agent {_e(incident.agent or "?")} &middot; conversation '
            f"{_e(incident.conversation_id or '-')} &middot; {_e(_time(incident.first_ns))} → "
            f"{_e(_time(incident.last_ns))} &middot; traces "
            f"{_e(', '.join(t[:16] for t in incident.trace_ids[:5]))}</div></header><main>")
        body.append(f'<section><h2>What happened</h2><p class="narrative">{_e(incident.narrative)}</p>')
        trigger = incident.trigger
        if trigger.get("text"):
            body.append(f'<p><b>Turn {_e(trigger.get("turn"))}</b></p>'
                        f'<div class="quote">{_e(trigger["text"])}</div>')
        for item in trigger.get("untrusted_content", []):
            body.append(f"<p><b>Untrusted content</b> via {_e(item['source'])}</p>"
                        f'<div class="quote"><pre>{_e(item["excerpt"])}</pre></div>')
        body.append("</section>")
        rows = "".join(
            f"<tr><td><code>{_e(_time(e.ts_ns))}</code></td><td class=\"kind\">{_e(e.kind)}</td>"
            f"<td>{_e(e.title)}</td><td>{_e(e.tool or '')}</td><td>{_e(e.pid or '')}</td>"
            f"<td>{_severity(e.severity)}{_KERNEL_ONLY if e.kernel_only else ''}</td></tr>"
            for e in incident.timeline)
        body.append("<section><h2>Timeline</h2><table><tr><th>time</th><th>kind</th><th>what</th>"
                    f"<th>tool</th><th>pid</th><th></th></tr>{rows}</table></section>")
        if incident.tool_calls:
            calls = "".join(
                f"<tr><td>{_e(c['tool'])}</td><td><pre>{_e(c['arguments'])}</pre></td>"
                f"<td><pre>{_e(c['result'])}</pre></td><td>{_e(c.get('decision') or '')}</td>"
                f"<td><code>{_e(c['span_id'])}</code></td></tr>" for c in incident.tool_calls)
            body.append("<section><h2>Tool calls</h2><table><tr><th>tool</th><th>arguments</th>"
                        f"<th>result</th><th>decision</th><th>span</th></tr>{calls}</table></section>")
        if incident.processes:
            tree = "".join(_process_html(root) for root in incident.processes)
            body.append(f'<section><h2>Process tree</h2><ul class="tree">{tree}</ul></section>')
        if incident.connections:
            conns = "".join(
                f"<tr><td><code>{_e(_time(c['ts_ns']))}</code></td><td>{_e(c['pid'])}</td>"
                f"<td><code>{_e(c['address'])}:{_e(c['port'])}</code></td><td>{_e(c['result'])}</td>"
                f"<td>{_e(c.get('tool') or '')}</td></tr>" for c in incident.connections)
            body.append("<section><h2>Connections</h2><table><tr><th>time</th><th>pid</th>"
                        f"<th>destination</th><th>result</th><th>tool</th></tr>{conns}</table>"
                        f"<p>Bytes sent by these processes: "
                        f"{_e(incident.data_volume.get('bytes_sent', 0))}</p></section>")
        findings = "".join(
            f"<tr><td>{_severity(f.severity)}</td><td><code>{_e(f.rule_id)}</code></td>"
            f"<td>{_e(f.title)}</td><td>{_e(f.source)}</td><td>{_e(f.action)}</td>"
            f"<td><pre>{_e(json.dumps(f.evidence, indent=1, default=str, ensure_ascii=False))}"
            f"</pre></td></tr>" for f in incident.findings)
        body.append("<section><h2>Findings and evidence</h2><table><tr><th>severity</th><th>rule"
                    "</th><th>title</th><th>source</th><th>action</th><th>evidence</th></tr>"
                    f"{findings}</table></section></main></article>")
    return html_page(f"agentguard: {title}", "".join(body), _INCIDENT_CSS + css)
