"""``agentguard policy check`` and ``agentguard policy explain``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agentguard._text import visible

if TYPE_CHECKING:
    from rich.console import Console

    from agentguard.policy._policy import Policy, RuleExplanation, RuleInfo

__all__ = ["add_parser", "check_command", "explain_command"]

# Events given to `policy explain` in one file (a list or JSON lines) are capped.
MAX_EVENTS = 10_000
MAX_EVENT_FILE_BYTES = 64 << 20
_TOO_DEEP = "the JSON nests too deeply to read"


def _shown(text: Any) -> str:
    """Text from a policy or an event as printed: control characters as escapes (``\\x1b``).
    Rule texts may come from a generated policy (``profile to-policy`` writes learned tool names)
    and explained events from captured traffic."""
    return visible(str(text))


def add_parser(commands: Any) -> None:
    """Add the ``policy`` command group to the ``agentguard`` parser's subcommands."""
    policy = commands.add_parser(
        "policy", help="validate policy files and explain what they decide",
        description="Validate policy files and explain which rules match an event.")
    sub = policy.add_subparsers(dest="policy_command", required=True)

    check = sub.add_parser(
        "check", help="validate policy files and list their rules",
        description="Validate FILE(s) (one namespace, in order, like instrument(policy=[...])) "
                    "and list their rules. Exit status 1 names the file, line and field of "
                    "every problem.")
    check.add_argument("files", nargs="*", metavar="FILE", help="policy files (YAML)")
    check.add_argument("--builtin", action="store_true", help="also list the built-in rules")
    check.set_defaults(handler=check_command)

    explain = sub.add_parser(
        "explain", help="show which rules match an event, and why",
        description="Evaluate events against FILE(s) and the built-in rules and show which "
                    "rules match and why. EVENT is a JSON file holding one event, a list of "
                    "events, or JSON lines; events are replayed in order, so rate limits and "
                    "sequences behave as at run time. An item may also be {\"event\": {...}, "
                    "\"annotations\": {\"injection\": {\"flagged\": true}}} to stand in for "
                    "what detectors would have found.")
    explain.add_argument("files", nargs="*", metavar="FILE", help="policy files (YAML)")
    explain.add_argument("--event", required=True, metavar="EVENT.json",
                         help="events as JSON ('-' reads standard input)")
    explain.add_argument("--no-builtin", dest="builtin", action="store_false",
                         help="leave the built-in rules out")
    explain.add_argument("--disable", action="append", default=[], metavar="RULE_ID",
                         help="switch a rule off (repeatable)")
    explain.add_argument("--verbose", "-v", action="store_true",
                         help="also show every rule that did not match and the check that failed")
    explain.add_argument("--json", action="store_true", help="print the results as JSON")
    explain.set_defaults(handler=explain_command)


def _console() -> Console:
    from rich.console import Console

    # Not a terminal (a pipe, a file, a test): wide lines rather than wrapped table cells. No
    # markup: rule descriptions, tool names and event values are printed as written ('[/]' in
    # one is text, not a closing tag that makes rich raise).
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False, markup=False)


def _error(message: str) -> None:
    print(message, file=sys.stderr)


def _load(files: Sequence[str], builtin: bool, disabled: Sequence[str] = ()) -> Policy | None:
    from agentguard.policy._errors import PolicyError
    from agentguard.policy._policy import Policy

    try:
        policy = Policy.from_files(files, builtin_rules=builtin)
        unknown = [rule_id for rule_id in disabled if rule_id not in policy.known_ids]
        if unknown:
            _error(f"agentguard policy: unknown rule id(s) {', '.join(unknown)}")
            return None
        return policy.without(disabled) if disabled else policy
    except PolicyError as exc:
        _error(str(exc))
        return None


def _rules_table(rules: Sequence[RuleInfo], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_lines=False)
    for column in ("id", "action", "severity", "events", "tools", "description", "defined at"):
        table.add_column(column, overflow="fold")
    for rule in rules:
        kinds = ", ".join(rule.kinds) if rule.kinds else "any"
        phases = sorted({p for p in rule.phases.values() if p})
        if phases:
            kinds += f" ({'/'.join(phases)})"
        extra = []
        if rule.rate_limit:
            extra.append(f"rate: {rule.rate_limit}")
        extra.extend(rule.after)
        description = rule.description + (f" [{'; '.join(extra)}]" if extra else "")
        tools = ", ".join(rule.tools) if rule.tools else "-"
        if len(tools) > 60:
            tools = tools[:57] + "..."
        where = f"{rule.source}:{rule.line}" if rule.line else rule.source
        table.add_row(*map(_shown, (rule.id, rule.action, rule.severity, kinds, tools,
                                    description, where)))
    return table


def check_command(args: argparse.Namespace) -> int:
    """Validate policy files; print their rules (exit 1 and the problems when invalid)."""
    if not args.files and not args.builtin:
        _error("agentguard policy check: give at least one FILE (or --builtin)")
        return 2
    policy = _load(args.files, args.builtin)
    if policy is None:
        return 1
    console = _console()
    rules = policy.rules
    where = ", ".join(args.files) if args.files else "built-in rules"
    console.print(_rules_table(rules, _shown(f"{where}: {len(rules)} rule(s)")))
    if args.files:
        console.print(_shown(f"OK: {', '.join(args.files)} valid ({len(rules)} rule(s) enabled)"))
    return 0


# -- explain --------------------------------------------------------------------------------------

class _Replayed:
    """The part of a verdict a policy reads: detector annotations and earlier findings."""

    def __init__(self, annotations: dict[str, Any]) -> None:
        self.annotations = annotations
        self.findings: list[Any] = []
        self.action = "allow"

    @property
    def blocked(self) -> bool:
        return False


def _read_items(path: str) -> list[Any]:
    if path == "-":
        text = sys.stdin.read(MAX_EVENT_FILE_BYTES + 1)
    else:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(MAX_EVENT_FILE_BYTES + 1)
    if len(text) > MAX_EVENT_FILE_BYTES:
        raise ValueError(f"the event file is larger than {MAX_EVENT_FILE_BYTES} bytes")
    stripped = text.strip()
    if not stripped:
        raise ValueError("the event file is empty")
    try:
        data = json.loads(stripped)
    except RecursionError:
        raise ValueError(_TOO_DEEP) from None
    except json.JSONDecodeError:
        # JSON lines.
        data = []
        for number, line in enumerate(stripped.splitlines(), 1):
            if line.strip():
                try:
                    data.append(json.loads(line))
                except RecursionError:
                    raise ValueError(f"line {number}: {_TOO_DEEP}") from None
                except json.JSONDecodeError as exc:
                    raise ValueError(f"line {number}: not JSON ({exc.msg})") from None
    items = data if isinstance(data, list) else [data]
    if len(items) > MAX_EVENTS:
        raise ValueError(f"more than {MAX_EVENTS} events")
    return items


def _events(path: str) -> list[tuple[Any, _Replayed]]:
    from pydantic import ValidationError

    from agentguard.events import parse_event

    out = []
    for index, item in enumerate(_read_items(path), 1):
        annotations: dict[str, Any] = {}
        raw = item
        if isinstance(item, dict) and "event" in item and "kind" not in item:
            raw = item["event"]
            if isinstance(item.get("annotations"), dict):
                annotations = dict(item["annotations"])
        if not isinstance(raw, dict):
            raise ValueError(f"event {index}: expected a JSON object, got {type(raw).__name__}")
        try:
            event = parse_event(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}"
                for e in exc.errors(include_url=False)[:5])
            raise ValueError(f"event {index}: {problems}") from None
        out.append((event, _Replayed(annotations)))
    return out


def _value(text: Any) -> str:
    return json.dumps(text, ensure_ascii=False) if not isinstance(text, str) else repr(text)


def describe_evidence(entries: Sequence[Any]) -> str:
    """Matched-condition evidence as one readable line."""
    parts = []
    for entry in entries:
        if not isinstance(entry, dict):
            parts.append(str(entry))
            continue
        if "macro" in entry:
            inner = describe_evidence(entry.get("because") or [])
            parts.append(f"macro {entry['macro']}" + (f": {inner}" if inner else ""))
            continue
        if "not" in entry:
            parts.append(f"not ({describe_failure(entry['not'])})")
            continue
        text = str(entry.get("field", "?"))
        if "value" in entry:
            text += f" = {_value(entry['value'])}"
        if "transformed" in entry:
            text += f" (→ {_value(entry['transformed'])})"
        if "count" in entry:
            text += f" (count {entry['count']})"
        text += f": {entry.get('matched') or entry.get('condition', '')}"
        parts.append(text)
    return "; ".join(parts)


def describe_failure(failed: Any) -> str:
    """The first failing check of a rule as one readable line."""
    if failed is None:
        return ""
    if isinstance(failed, list):
        return "; ".join(describe_failure(f) for f in failed)
    if not isinstance(failed, dict):
        return str(failed)
    if "none of" in failed:
        return "none of: " + " | ".join(describe_failure(f) for f in failed["none of"])
    if "not" in failed:
        return f"excluded because {describe_evidence(failed['not'])}"
    if "macro" in failed:
        return f"macro {failed['macro']}: {describe_failure(failed.get('because'))}"
    text = str(failed.get("field", ""))
    if "value" in failed:
        text += f" = {_value(failed['value'])}"
    if "count" in failed:
        text += f" (count {failed['count']})"
    condition = failed.get("condition")
    return f"{text}: not {condition}" if condition and text else str(condition or text)


def _explanation_json(explanations: Sequence[RuleExplanation]) -> dict[str, Any]:
    matched = []
    other = []
    for item in explanations:
        if item.matched and item.decision is not None:
            matched.append({"rule_id": item.rule.id, "action": item.decision.action,
                            "severity": item.decision.severity, "title": item.decision.reason,
                            "evidence": item.decision.evidence})
        else:
            other.append({"rule_id": item.rule.id, "reason": item.reason,
                          "failed": item.failed, "evidence": item.evidence})
    return {"matched": matched, "not_matched": other}


def explain_command(args: argparse.Namespace) -> int:
    """Show which rules match each event of a file, and why."""
    from rich.table import Table

    if not args.files and not args.builtin:
        _error("agentguard policy explain: give a policy FILE, or leave the built-in rules on")
        return 2
    policy = _load(args.files, args.builtin, args.disable)
    if policy is None:
        return 1
    try:
        events = _events(args.event)
    except RecursionError:
        # Nested too deeply for the event models to read, past what the JSON reader took.
        _error(f"agentguard policy explain: {args.event}: {_TOO_DEEP}")
        return 1
    except (OSError, ValueError) as exc:
        _error(f"agentguard policy explain: {args.event}: {exc}")
        return 1
    results = []
    for event, verdict in events:
        results.append((event, policy.explain(event, verdict)))
    if args.json:
        payload = [{"event": index, "kind": event.kind, **_explanation_json(explanations)}
                   for index, (event, explanations) in enumerate(results, 1)]
        print(json.dumps(payload, indent=2, default=str))
        return 0
    console = _console()
    for index, (event, explanations) in enumerate(results, 1):
        tool = getattr(event, "tool", None) or event.context.tool
        phase = getattr(event, "phase", None)
        header = _shown(f"event {index}: {event.kind}" + (f" {tool}" if tool else "") +
                        (f" ({phase})" if phase else ""))
        matched = [e for e in explanations if e.matched and e.decision is not None]
        if matched:
            table = Table(title=f"{header}: {len(matched)} rule(s) matched", title_justify="left")
            for column in ("rule", "action", "severity", "finding", "why"):
                table.add_column(column, overflow="fold")
            for item in matched:
                assert item.decision is not None
                reasons = [describe_evidence(item.decision.evidence.get("matched", []))]
                for extra in item.decision.evidence.get("after", []):
                    reasons.append(f"after {extra.get('tool') or extra.get('after')} "
                                   f"({extra.get('seconds_ago')}s earlier)")
                rate = item.decision.evidence.get("rate")
                if rate:
                    reasons.append(f"rate {rate['count']} > {rate['max']} per "
                                   f"{rate['per_seconds']:g}s")
                why = "; ".join(r for r in reasons if r)
                table.add_row(*map(_shown, (item.rule.id, item.decision.action,
                                            item.decision.severity, item.decision.reason,
                                            why or "matched")))
            console.print(table)
            worst = "block" if any(m.decision and m.decision.action == "block"
                                   for m in matched) else "alert"
            console.print(f"decision: {worst} (in monitor mode every block is reported as an "
                          "alert)" if worst == "block" else f"decision: {worst}")
        else:
            console.print(f"{header}: no rule matched (decision: allow)")
        others = [e for e in explanations if not e.matched]
        if args.verbose and others:
            table = Table(title=f"{header}: rules that did not match", title_justify="left")
            for column in ("rule", "why not"):
                table.add_column(column, overflow="fold")
            for item in others:
                reason = item.reason
                if item.failed is not None:
                    reason += f": {describe_failure(item.failed)}"
                table.add_row(_shown(item.rule.id), _shown(reason))
            console.print(table)
        elif others:
            console.print(f"  ({len(others)} other rule(s) did not match; --verbose shows why)")
    return 0
