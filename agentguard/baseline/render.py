"""Terminal views of a profile (rich): ``agentguard profile show`` and ``profile status``."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from agentguard._text import visible
from agentguard.baseline._maturity import ProfileStatus, ScopeStatus
from agentguard.baseline._summaries import Histogram, ValueSet
from agentguard.baseline.profile import Activity, ArgSummary, Profile, ToolProfile

if TYPE_CHECKING:
    from rich.console import Console
    from rich.tree import Tree

__all__ = ["render_profile", "render_status"]

_SHOWN_VALUES = 8


def _text(value: str) -> str:
    """A string from the profile as shown: control characters written as escapes (``\\x1b``;
    learned strings come from tool calls a model made, so whoever steered the model chooses
    them), rich markup escaped."""
    from rich.markup import escape

    return escape(visible(value))


def _number(value: float | None) -> str:
    if value is None:
        return "?"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.4g}"


def _range(histogram: Histogram | None) -> str:
    if histogram is None or histogram.count == 0:
        return "-"
    text = (f"{_number(histogram.min)} … {_number(histogram.max)}  "
            f"[dim](p50 {_number(histogram.quantile(0.5))}, p99 {_number(histogram.quantile(0.99))}, "
            f"n={histogram.count:,})[/dim]")
    if histogram.nonfinite:
        text += f" [yellow]+{histogram.nonfinite} non-finite[/yellow]"
    return text


def _values(values: ValueSet | None, limit: int = _SHOWN_VALUES) -> str:
    if values is None or not values.values:
        return "-"
    shown = ", ".join(f"{_text(v)} [dim]x{n:,}[/dim]" for v, n in values.most_common(limit))
    more = len(values.values) - limit
    if more > 0:
        shown += f" [dim]… {more} more[/dim]"
    if values.dropped:
        shown += f" [yellow](open: {values.dropped:,} observations of other values)[/yellow]"
    return shown


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    try:
        return datetime.datetime.fromtimestamp(stamp, tz=datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, ValueError, OSError):
        # A time no calendar date stands for (a corrupt or hand-edited profile).
        return f"{stamp:.6g}"


def _arg(node: Tree, key: str, arg: ArgSummary) -> None:
    types = ", ".join(f"{t} x{n:,}" for t, n in sorted(arg.types.items(), key=lambda i: -i[1]))
    branch = node.add(f"[bold]{_text(key) or '(input)'}[/bold] [dim]{types}[/dim]")
    rows: list[tuple[str, str]] = [
        ("values", _values(arg.values)), ("numbers", _range(arg.numbers)),
        ("length", _range(arg.lengths)), ("size", _range(arg.items)),
        ("shapes", _values(arg.shapes, 5)), ("hosts", _values(arg.hosts)),
        ("e-mail domains", _values(arg.domains)), ("paths", _values(arg.paths)),
    ]
    for label, text in rows:
        if text != "-":
            branch.add(f"{label}: {text}")


def _activity(node: Tree, activity: Activity) -> None:
    sets: list[tuple[str, ValueSet | None]] = [
        ("cloud calls", activity.cloud_calls), ("regions", activity.regions),
        ("destinations", activity.destinations), ("networks", activity.networks),
        ("names resolved", activity.dns), ("files read", activity.file_reads),
        ("files written", activity.file_writes), ("models", activity.models),
        ("model artifacts", activity.model_artifacts), ("retrievers", activity.retrievers),
        ("modules", activity.modules),
    ]
    for label, values in sets:
        if values is not None and values.values:
            node.add(f"{label}: {_values(values)}")
    for name, values in sorted(activity.cloud_resources.items()):
        node.add(f"cloud {_text(name)}: {_values(values)}")
    for name, histogram in sorted(activity.cloud_numbers.items()):
        node.add(f"cloud {_text(name)}: {_range(histogram)}")
    if activity.processes:
        processes = node.add("processes")
        for path, process in sorted(activity.processes.items()):
            entry = processes.add(f"[bold]{_text(path)}[/bold] [dim]x{process.count:,}[/dim]")
            entry.add(f"arguments: {_range(process.argc)}")
            if process.subcommands.values:
                entry.add(f"subcommands: {_values(process.subcommands)}")
            if process.flags.values:
                entry.add(f"options: {_values(process.flags)}")
    for name, values in sorted(activity.decisions.items()):
        node.add(f"decision {_text(name)}: {_values(values)}")
    for name, histogram in sorted(activity.scores.items()):
        node.add(f"score {_text(name)}: {_range(histogram)}")
    if activity.output_tokens is not None:
        node.add(f"output tokens: {_range(activity.output_tokens)}")
    if activity.documents is not None:
        node.add(f"documents retrieved: {_range(activity.documents)}")


def _tool(tree: Tree, name: str, tool: ToolProfile, status: ScopeStatus | None) -> None:
    state = ""
    if status is not None:
        color = "green" if status.state == "mature" else "yellow"
        state = f" [{color}]{status.state}[/{color}]"
    node = tree.add(f"[bold cyan]{_text(name)}[/bold cyan]{state} [dim]{tool.calls:,} calls, "
                    f"{tool.errors:,} errors[/dim]")
    if tool.args:
        args = node.add("arguments")
        for key in sorted(tool.args):
            _arg(args, key, tool.args[key])
        if tool.args_dropped:
            args.add(f"[yellow]{tool.args_dropped:,} observations of keys not kept[/yellow]")
    results = node.add("results")
    results.add(f"bytes: {_range(tool.result_bytes)}")
    results.add(f"records: {_range(tool.result_records)}")
    node.add(f"calls per turn: {_range(tool.calls_per_turn)}")
    if tool.predecessors is not None:
        node.add(f"called after: {_values(tool.predecessors)}")
    if tool.activity.total - tool.activity.events.get("tool_call", 0) > 0:
        _activity(node.add("inside the tool"), tool.activity)


def render_profile(profile: Profile, console: Console, *, tool: str | None = None,
                   status: ProfileStatus | None = None) -> None:
    """Print a profile as a tree: tools, their arguments and results, and what ran inside them."""
    from rich.tree import Tree

    tree = Tree(f"[bold]agent {_text(profile.agent)}[/bold] [dim]{profile.events:,} events, "
                f"{profile.turns:,} turns, {_when(profile.first_seen)} → "
                f"{_when(profile.last_seen)}[/dim]")
    statuses = {s.name: s for s in status.tools} if status is not None else {}
    names = [tool] if tool is not None else sorted(profile.tools)
    for name in names:
        if name in profile.tools:
            _tool(tree, name, profile.tools[name], statuses.get(name))
        else:
            tree.add(f"[red]no tool {_text(name)!s} in this profile[/red]")
    if tool is None:
        tree.add(f"tool calls per turn: {_range(profile.calls_per_turn)}")
        agent = tree.add("outside tools")
        _activity(agent, profile.agent_activity)
        dropped = _dropped(profile)
        if dropped:
            tree.add("[yellow]not kept (over the limits): " +
                     ", ".join(f"{k} {v:,}" for k, v in dropped.items()) + "[/yellow]")
        if profile.skipped:
            tree.add("[dim]not learned: " +
                     ", ".join(f"{_text(k)} {v:,}" for k, v in sorted(profile.skipped.items())) +
                     "[/dim]")
    console.print(tree)


def _dropped(profile: Profile) -> dict[str, int]:
    dropped: dict[str, int] = {}
    if profile.tools_dropped:
        dropped["tools"] = profile.tools_dropped
    args = sum(t.args_dropped for t in profile.tools.values())
    if args:
        dropped["argument keys"] = args
    return dropped


def render_status(status: ProfileStatus, console: Console, *, verbose: bool = False) -> None:
    """Print how far learning has come for each tool and what is still under-observed."""
    from rich.table import Table

    table = Table(title=f"profile of agent {_text(status.agent)}: {status.events:,} events, "
                        f"{status.turns:,} turns", title_justify="left")
    table.add_column("scope")
    table.add_column("calls", justify="right")
    table.add_column("new-value rate", justify="right")
    table.add_column("state")
    table.add_column("still learning")
    for scope in [*status.tools, status.agent_scope]:
        color = "green" if scope.state == "mature" else "yellow"
        learning = scope.under_observed
        names = ", ".join(f"{_text(d.name)} ({d.observations:,})" for d in
                          (learning if verbose else learning[:4]))
        if not verbose and len(learning) > 4:
            names += f" … {len(learning) - 4} more"
        table.add_row(_text(scope.name), f"{scope.calls:,}", f"{scope.new_rate:.1%}",
                      f"[{color}]{scope.state}[/{color}]", names or "-")
    console.print(table)
    verdict = ("[green]every tool is mature: deviations on mature parts block in enforce "
               "mode[/green]" if status.ready else
               "[yellow]still learning: deviations on immature parts only alert[/yellow]")
    console.print(f"tool set: {status.tool_set_state} (new-tool rate {status.tool_set_rate:.1%}); "
                  + verdict)


def status_dict(status: ProfileStatus) -> dict[str, Any]:
    """The status as plain data (``--json``)."""
    def scope(s: ScopeStatus) -> dict[str, Any]:
        return {"name": s.name, "calls": s.calls, "observations": s.observations,
                "new_rate": round(s.new_rate, 6), "state": s.state,
                "under_observed": [{"name": d.name, "observations": d.observations,
                                    "new_rate": d.new_rate} for d in s.under_observed]}

    return {"agent": status.agent, "events": status.events, "turns": status.turns,
            "ready": status.ready, "tool_set": {"state": status.tool_set_state,
                                                "new_rate": round(status.tool_set_rate, 6)},
            "tools": [scope(s) for s in status.tools], "agent_scope": scope(status.agent_scope)}
