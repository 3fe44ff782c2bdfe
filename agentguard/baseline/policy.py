"""A profile turned into a reviewable policy file (``agentguard profile to-policy``).

Every rule allows only what was observed while learning: the tools called, argument values and
ranges, result sizes, hosts and e-mail domains in arguments, and per tool the processes started,
places connected to, names resolved, files written and cloud operations and resources used. The
result is an ordinary policy in the format of :mod:`agentguard.policy` that a person can read,
edit and enforce without the profile.

Parts of the profile still learning become ``alert`` rules; open (high-cardinality) sets give no
rule. Numeric bounds include the same margin the baseline scores with; a bound that margin would
put beyond the largest float (a range learned up to ``1e308``) is left out, as no finite number
lies beyond it, and the file's header says so. What a declarative rule
cannot express (calls per turn, tool order, decision drift, new argument keys) stays with the
baseline stage, and the file's header says so.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from typing import Any

from agentguard.baseline import _features as features
from agentguard.baseline._maturity import counts_state, profile_status, range_mature, set_state
from agentguard.baseline._settings import Thresholds
from agentguard.baseline._summaries import Histogram, ValueSet
from agentguard.baseline.profile import Activity, ArgSummary, Profile, ToolProfile

__all__ = ["policy_document", "policy_yaml"]

_NAME = re.compile(r"\A[A-Za-z_$@][A-Za-z0-9_$@-]*\Z")
_MAX_LIST = 1000


def _comment(text: str) -> str:
    """A note as it can stand in a YAML comment: characters that are not printable (line breaks,
    YAML's too: U+0085, U+2028; C1 controls the policy loader refuses; escape sequences and
    bidirectional overrides a terminal acts on) written as escapes (``\\n``, ``\\x9b``). The
    names in a note were learned from what a model asked for: one with a line break would
    otherwise end the comment and write its own YAML into the policy."""
    if text.isprintable():
        return text
    # repr escapes exactly the characters str.isprintable refuses.
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


class _Builder:
    """Collects rules and lists for one profile."""

    def __init__(self, profile: Profile, thresholds: Thresholds, action: str,
                 strict: bool) -> None:
        self.profile = profile
        self.thresholds = thresholds
        self.action = action
        self.strict = strict
        self.slug = re.sub(r"[^A-Za-z0-9_]", "_", profile.agent)[:40] or "agent"
        self.rules: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.lists: dict[str, list[Any]] = {}
        self.skipped: list[str] = []

    # -- helpers ---------------------------------------------------------------------------
    def rule(self, note: str, description: str, *, severity: str, mature: bool,
             match: dict[str, Any], when: Any = None, unless: Any = None,
             cap: str | None = None) -> None:
        # As the baseline does by default: only high-severity rules block (all mature ones
        # with strict=True); parts still learning only alert.
        blocks = mature and cap is None and (severity == "high" or self.strict)
        action = self.action if blocks else "alert"
        if not mature:
            note += " (still learning: alert only)"
        rule: dict[str, Any] = {
            "id": f"BL-{self.slug}-{len(self.rules) + 1:03d}",
            "description": description[:500],
            "severity": severity if mature else "low",
            "action": action,
            "category": "baseline",
            "tags": ["baseline", f"agent:{self.profile.agent}"[:64]],
            "match": {"agent": self.profile.agent, **match},
        }
        if when is not None:
            rule["when"] = when
        if unless is not None:
            rule["unless"] = unless
        self.rules.append(rule)
        self.notes.append(note)

    def named_list(self, name: str, values: list[Any]) -> str:
        key = re.sub(r"[^A-Za-z0-9_]", "_", f"{self.slug}_{name}")[:64]
        if not re.match(r"[A-Za-z_]", key):
            key = "l_" + key[:62]
        base = key
        n = 2
        while key in self.lists:
            key = f"{base[:60]}_{n}"
            n += 1
        self.lists[key] = values[:_MAX_LIST]
        return key

    def state(self, values: ValueSet | None) -> str:
        return set_state(values, self.thresholds)[0]

    def fences(self, histogram: Histogram) -> tuple[float | None, float | None]:
        """The lower and upper bound of a learned range with the scoring margin; ``None`` for a
        side whose bound overflows to infinity (nothing finite lies beyond it)."""
        lo = histogram.min if histogram.min is not None else 0.0
        hi = histogram.max if histogram.max is not None else 0.0
        scale = max(hi - lo, abs(hi), abs(lo)) or 1.0
        upper = hi + self.thresholds.margin * scale
        lower = lo - self.thresholds.margin * scale
        if lo >= 0:
            lower = max(lower, 0.0)
        return _round(lower, down=True), _round(upper, down=False)

    def unbounded(self, where: str, learned: Histogram) -> None:
        """Note a range that gives no rule: its bound with the margin is beyond every float."""
        self.skipped.append(f"{where}: learned up to {_number(learned.max or 0)}, no finite "
                            "bound above it (no rule)")

    def ceiling(self, where: str, histogram: Histogram) -> float | None:
        """The upper fence of a learned range; ``None``, noted as giving no rule, when it is
        beyond every float."""
        _, upper = self.fences(histogram)
        if upper is None:
            self.unbounded(where, histogram)
        return upper


def _round(value: float, *, down: bool) -> float | None:
    if not math.isfinite(value):
        return None
    if abs(value) >= 1:
        rounded = math.floor(value) if down else math.ceil(value)
        return float(rounded)
    return round(value, 6)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() and abs(value) < 1e15 else value


def _path(root: str, key: str) -> str:
    """A policy field path for an argument key of the profile (``a.b``, ``a[]``, odd names)."""
    if key == "":
        return root
    parts: list[str] = [root]
    for segment in key.split("."):
        listed = segment.endswith("[]")
        name = segment[:-2] if listed else segment
        parts.append(f".{name}" if _NAME.match(name) else f"[{json.dumps(name)}]")
        if listed:
            parts.append("[*]")
    return "".join(parts)


def _when_outside(path: str, lower: float | None, upper: float | None) -> dict[str, Any]:
    tests = []
    if upper is not None:
        tests.append({"field": path, "gt": _number(upper)})
    if lower is not None:
        tests.append({"field": path, "lt": _number(lower)})
    return tests[0] if len(tests) == 1 else {"any": tests}


def _outside(lower: float | None, upper: float | None) -> str:
    """What a range rule fires on, in words (``outside 0..10``, ``below 0``)."""
    if lower is None:
        return f"above {_number(upper)}" if upper is not None else "any number"
    if upper is None:
        return f"below {_number(lower)}"
    return f"outside {_number(lower)}..{_number(upper)}"


def _glob(prefix: str) -> str:
    if prefix.startswith("~"):
        prefix = "*" + prefix[1:]
    return prefix.rstrip("/") + "/*"


# -- tools ---------------------------------------------------------------------------------------

def _argument(b: _Builder, tool: str, key: str, arg: ArgSummary) -> None:
    path = _path("arguments", key)
    label = key or "(input)"
    match = {"kind": "tool_call", "tool": tool, "phase": "call"}
    th = b.thresholds
    if arg.numbers is not None and arg.numbers.count:
        lower, upper = b.fences(arg.numbers)
        if lower is None and upper is None:
            b.skipped.append(f"{tool}.{label}: learned {_number(arg.numbers.min or 0)}.."
                             f"{_number(arg.numbers.max or 0)}, no finite bound (no rule)")
        else:
            if upper is None:
                b.unbounded(f"{tool}.{label}", arg.numbers)
            b.rule(f"{tool}: {label} learned {_number(arg.numbers.min or 0)}.."
                   f"{_number(arg.numbers.max or 0)} over {arg.numbers.count} calls",
                   f"{tool} called with {label} {_outside(lower, upper)}",
                   severity="high", mature=range_mature(arg.numbers, th), match=match,
                   when=_when_outside(path, lower, upper))
    if features.secret_key(key):
        b.skipped.append(f"{tool}.{label}: a secret; only its form is learned")
        return
    state = b.state(arg.values)
    if arg.values is not None and state in ("closed", "mature", "learning") and \
            set(arg.types) <= {"str", "bool"}:
        values: list[Any] = sorted(arg.values.values)
        if set(arg.types) == {"bool"}:
            values = [v == "true" for v in values]
        # Strings too long to be kept as values are judged by the length rule below.
        when: dict[str, Any] = {"field": path, "not_in": b.named_list(f"{tool}_{key}", values)}
        if "str" in arg.types:
            when = {"all": [when, {"field": path, "length": {"lte": b.profile.limits.max_value_length}}]}
        b.rule(f"{tool}: {label} took {len(values)} values ({state})",
               f"{tool} called with a {label} never seen while learning",
               severity="medium", mature=state in ("closed", "mature"), match=match, when=when)
    elif arg.values is not None and state == "open":
        b.skipped.append(f"{tool}.{label}: {len(arg.values.values)}+ distinct values (no list)")
    if arg.lengths is not None and arg.lengths.count:
        upper = b.ceiling(f"{tool}.{label} length", arg.lengths)
        if upper is not None:
            b.rule(f"{tool}: {label} length learned up to {_number(arg.lengths.max or 0)}",
                   f"{tool} called with a {label} longer than {_number(upper)} characters",
                   severity="medium", mature=range_mature(arg.lengths, th), match=match,
                   when={"field": path, "length": {"gt": _number(upper)}}, cap="alert")
    hosts_state = b.state(arg.hosts)
    if arg.hosts is not None and hosts_state in ("closed", "mature", "learning"):
        hosts = sorted(arg.hosts.values)
        b.rule(f"{tool}: {label} pointed to {len(hosts)} hosts",
               f"{tool} called with a {label} pointing to a host never seen while learning",
               severity="high", mature=hosts_state in ("closed", "mature"), match=match,
               when={"field": path, "transform": "url_host",
                     "not_in": b.named_list(f"{tool}_{key}_hosts", hosts)})
    domains_state = b.state(arg.domains)
    if arg.domains is not None and domains_state in ("closed", "mature", "learning"):
        domains = sorted(arg.domains.values)
        b.rule(f"{tool}: {label} addressed {', '.join(domains[:5])}"
               f"{' ...' if len(domains) > 5 else ''} (an address at any other domain fires)",
               f"{tool} called with a {label} addressed to a domain never seen while learning",
               severity="high", mature=domains_state in ("closed", "mature"), match=match,
               when={"field": path, "transform": "email_domain",
                     "not_in": b.named_list(f"{tool}_{key}_domains", domains)})
    paths_state = b.state(arg.paths)
    if arg.paths is not None and paths_state in ("closed", "mature", "learning"):
        globs = sorted({_glob(p) for p in arg.paths.values})
        b.rule(f"{tool}: {label} named paths in {len(globs)} areas",
               f"{tool} called with a {label} naming a path outside the learned areas",
               severity="medium", mature=paths_state in ("closed", "mature"), match=match,
               when={"all": [{"field": path, "startswith": ["/", "~", "./", "../"]},
                             {"not": {"field": path, "transform": "normpath",
                                      "glob": b.named_list(f"{tool}_{key}_paths", globs)}}]})


def _tool(b: _Builder, name: str, tool: ToolProfile, mature_tool: bool) -> None:
    th = b.thresholds
    for key in sorted(tool.args):
        _argument(b, name, key, tool.args[key])
    result = {"kind": "tool_call", "tool": name, "phase": "result"}
    if tool.result_records is not None and tool.result_records.count:
        upper = b.ceiling(f"{name} result records", tool.result_records)
        if upper is not None:
            b.rule(f"{name}: results held {_number(tool.result_records.min or 0)}.."
                   f"{_number(tool.result_records.max or 0)} records",
                   f"{name} returned more than {_number(upper)} records",
                   severity="high", mature=range_mature(tool.result_records, th), match=result,
                   when={"field": "result", "count": {"gt": _number(upper)}})
    if tool.result_bytes is not None and tool.result_bytes.count:
        upper = b.ceiling(f"{name} result size", tool.result_bytes)
        if upper is not None:
            # Result sizes vary more than record counts: an alert, as the baseline's margin is.
            b.rule(f"{name}: results were up to {_number(tool.result_bytes.max or 0)} bytes",
                   f"{name} returned more than {_number(upper)} characters",
                   severity="medium", mature=range_mature(tool.result_bytes, th), match=result,
                   when={"field": "result", "length": {"gt": _number(upper)}})
    _activity(b, tool.activity, name, mature_tool)


# -- activity ------------------------------------------------------------------------------------

def _scope(b: _Builder, kind: str, tool: str | None) -> tuple[dict[str, Any], Any, str]:
    if tool is not None:
        return {"kind": kind, "tool": tool}, None, tool
    # Outside tools: events inside a tool are judged by that tool's rules.
    return {"kind": kind}, {"field": "context.tool", "exists": True}, "outside tools"


def _merge_unless(*conditions: Any) -> Any:
    present = [c for c in conditions if c is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else {"any": present}


def _allowed(b: _Builder, values: ValueSet | None, mature_scope: bool) -> tuple[bool, bool]:
    """Whether a set gives a rule, and whether that rule may block."""
    state = b.state(values)
    if state == "open":
        return False, False
    if state == "empty":
        return mature_scope, mature_scope
    return True, state in ("closed", "mature")


_QUIET_KINDS = {"process_exec": "started processes", "net_connect": "opened connections",
                "dns_lookup": "resolved names", "cloud_call": "called cloud APIs"}


def _never(b: _Builder, activity: Activity, tool: str | None, mature_scope: bool) -> set[str]:
    """One rule for everything a mature scope never did at all; returns those event kinds."""
    if not mature_scope:
        return set()
    empty = {
        "process_exec": not activity.processes and not activity.processes_dropped,
        "net_connect": activity.destinations is None,
        "dns_lookup": activity.dns is None,
        "cloud_call": activity.cloud_calls is None,
    }
    kinds = [kind for kind, nothing in empty.items() if nothing]
    if kinds:
        match, outside, where = _scope(b, kinds[0], tool)
        match["kind"] = kinds
        never = ", ".join(_QUIET_KINDS[k] for k in kinds)
        b.rule(f"{where}: never {never} while learning",
               f"{where}: did something it never did while learning ({never.replace(', ', ' / ')})",
               severity="high", mature=True, match=match, unless=outside)
    return set(kinds)


def _activity(b: _Builder, activity: Activity, tool: str | None, mature_scope: bool) -> None:
    label = tool or "outside tools"
    never = _never(b, activity, tool, mature_scope)
    # Processes, by executable name.
    if activity.processes and not activity.processes_dropped:
        names = sorted({path.rsplit("/", 1)[-1] for path in activity.processes})
        state = counts_state((p.count for p in activity.processes.values()), 0, b.thresholds)[0]
        match, outside, where = _scope(b, "process_exec", tool)
        allowed = {"field": "executable", "transform": "basename",
                   "in": b.named_list(f"{label}_processes", names)}
        b.rule(f"{where}: started {', '.join(names)}",
               f"{where}: a process never started while learning", severity="high",
               mature=state in ("closed", "mature"), match=match,
               unless=_merge_unless(allowed, outside))
    # Connections, by host name or network block.
    use, mature = _allowed(b, activity.destinations, mature_scope)
    if use and "net_connect" not in never:
        names, networks = _destinations(activity)
        allowed_parts: list[Any] = []
        if names:
            allowed_parts.append({"field": "hostname", "in": b.named_list(f"{label}_hosts", names)})
        if networks:
            allowed_parts.append({"field": "address",
                                  "cidr": b.named_list(f"{label}_networks", networks)})
        match, outside, where = _scope(b, "net_connect", tool)
        b.rule(f"{where}: connected to {len(names)} names and {len(networks)} networks",
               f"{where}: a connection to a place never reached while learning",
               severity="high", mature=mature, match=match,
               unless=_merge_unless(*allowed_parts, outside))
    use, mature = _allowed(b, activity.dns, mature_scope)
    if use and "dns_lookup" not in never and activity.dns is not None:
        names = sorted(activity.dns.values)
        match, outside, where = _scope(b, "dns_lookup", tool)
        b.rule(f"{where}: resolved {len(names)} names",
               f"{where}: a name never resolved while learning", severity="medium",
               mature=mature, match=match,
               unless=_merge_unless({"field": "hostname", "transform": "lower",
                                     "in": b.named_list(f"{label}_dns", names)}, outside))
    for write, values in ((True, activity.file_writes), (False, activity.file_reads)):
        use, mature = _allowed(b, values, mature_scope)
        if not use or (not write and values is None):
            continue
        globs = sorted({_glob(p) for p in values.values}) if values is not None else []
        match, outside, where = _scope(b, "file_open", tool)
        verb = "written" if write else "read"
        allowed_files = {"field": "path", "transform": "normpath",
                         "glob": b.named_list(f"{label}_files_{verb}", globs)} if globs else None
        b.rule(f"{where}: files {verb} in {len(globs)} areas" if globs else
               f"{where}: never wrote a file while learning",
               f"{where}: a file {verb} outside the areas seen while learning",
               severity="high" if write else "medium", mature=mature, match=match,
               when={"field": "write", "equals": write},
               unless=_merge_unless(allowed_files, outside))
    if "cloud_call" not in never:
        _cloud(b, activity, tool, mature_scope)
    use, mature = _allowed(b, activity.models, mature_scope)
    if use and activity.models is not None and activity.models.values:
        models = sorted({key.split("/", 1)[-1] for key in activity.models.values})
        match, outside, where = _scope(b, "model_call", tool)
        b.rule(f"{where}: called {', '.join(models[:5])}",
               f"{where}: a model never called while learning", severity="medium",
               mature=mature, match={**match, "phase": "request"},
               when={"field": "model", "not_in": b.named_list(f"{label}_models", models)},
               unless=outside)
    use, mature = _allowed(b, activity.model_artifacts, mature_scope)
    if use and activity.model_artifacts is not None:
        digests = sorted(v[7:] for v in activity.model_artifacts.values if v.startswith("sha256:"))
        if digests:
            match, outside, where = _scope(b, "model_load", tool)
            b.rule(f"{where}: loaded {len(digests)} model files",
                   f"{where}: a model file never loaded while learning", severity="high",
                   mature=mature, match=match,
                   when={"field": "sha256", "not_in": b.named_list(f"{label}_model_files",
                                                                    digests)},
                   unless=outside)


def _destinations(activity: Activity) -> tuple[list[str], list[str]]:
    names: set[str] = set()
    if activity.destinations is not None:
        for destination in activity.destinations.values:
            if destination.startswith("unix:"):
                continue
            host = destination.rsplit(":", 1)[0] if destination.count(":") == 1 else destination
            if not features.cidr(host):
                names.add(host)
    networks = sorted(n for n in (activity.networks.values if activity.networks else {})
                      if "/" in n)
    return sorted(names), networks


def _cloud(b: _Builder, activity: Activity, tool: str | None, mature_scope: bool) -> None:
    label = tool or "outside tools"
    use, mature = _allowed(b, activity.cloud_calls, mature_scope)
    if use:
        by_service: dict[str, list[str]] = {}
        if activity.cloud_calls is not None:
            for call in activity.cloud_calls.values:
                service, _, operation = call.partition(".")
                by_service.setdefault(service, []).append(operation)
        allowed = [{"all": [{"field": "service", "equals": service},
                            {"field": "operation", "in": sorted(operations)}]}
                   for service, operations in sorted(by_service.items())]
        match, outside, where = _scope(b, "cloud_call", tool)
        made = ", ".join(f"{s}.{{{','.join(sorted(o))}}}" for s, o in sorted(by_service.items()))
        b.rule(f"{where}: cloud calls {made or 'none'}",
               f"{where}: a cloud call never made while learning", severity="high",
               mature=mature, match=match, unless=_merge_unless(*allowed, outside))
    if activity.cloud_resources_dropped:
        return
    for name, values in sorted(activity.cloud_resources.items()):
        state = b.state(values)
        if state in ("open", "empty"):
            continue
        service, _, kind = name.partition(".")
        if kind in ("key", "prefix", "parameter_path"):
            b.skipped.append(f"{label}: {name} (object key areas are judged by the baseline)")
            continue
        match, outside, where = _scope(b, "cloud_call", tool)
        b.rule(f"{where}: {name} was {', '.join(sorted(values.values)[:5])}",
               f"{where}: a {service} {kind} never touched while learning", severity="high",
               mature=state in ("closed", "mature"), match=match,
               when={"all": [{"field": "service", "equals": service},
                             {"field": f"resource.{kind}" if _NAME.match(kind) else
                              f"resource[{json.dumps(kind)}]",
                              "not_in": b.named_list(f"{label}_{name}", sorted(values.values))}]},
               unless=outside)


# -- the document --------------------------------------------------------------------------------

def policy_document(profile: Profile, thresholds: Thresholds | None = None, *,
                    action: str = "block", strict: bool = False
                    ) -> tuple[dict[str, Any], list[str], list[str]]:
    """The policy as a dict (``version``, ``lists``, ``rules``), a note per rule, and what was
    left out. ``action`` is what mature high-severity rules do (every mature rule with
    ``strict``); the others alert."""
    th = thresholds or Thresholds()
    status = profile_status(profile, th)
    b = _Builder(profile, th, action, strict)
    tool_state = status.tool_set_state
    called = sorted(name for name, tool in profile.tools.items() if tool.calls)
    if called and tool_state != "open":
        b.rule(f"the agent called {len(called)} tools",
               f"{profile.agent}: a tool never called while learning", severity="high",
               mature=tool_state in ("closed", "mature"),
               match={"kind": "tool_call", "phase": "call"},
               unless={"field": "tool", "in": b.named_list("tools", called)})
    mature_tools = {scope.name: scope.state == "mature" for scope in status.tools}
    for name in sorted(profile.tools):
        _tool(b, name, profile.tools[name], mature_tools.get(name, False))
    _activity(b, profile.agent_activity, None, status.agent_scope.state == "mature")
    # match.tool and match.agent are name patterns, and one name of a list stands for the list:
    # learned names are written so that each matches only itself.
    from agentguard.policy._policy import builtin_source

    list_names = set(b.lists) | set(builtin_source().document.lists)
    for rule in b.rules:
        match = rule["match"]
        for key in ("tool", "agent"):
            if isinstance(match.get(key), str):
                match[key] = _exact_name(match[key], list_names)
    document = {"version": 1, "lists": b.lists, "rules": b.rules}
    return document, b.notes, b.skipped


def _exact_name(name: str, list_names: set[str]) -> str:
    """A name pattern that matches exactly ``name``: ``*``, ``?`` and ``[`` in brackets, and the
    first letter of a name some list has in brackets (``[s]hell_binaries``)."""
    pattern = re.sub(r"[*?\[]", lambda found: f"[{found.group()}]", name)
    return f"[{pattern[0]}]{pattern[1:]}" if pattern in list_names else pattern


def _stamp(value: float | None) -> str:
    if value is None:
        return "-"
    try:
        return datetime.datetime.fromtimestamp(value, tz=datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC")
    except (OverflowError, ValueError, OSError):
        # A time no calendar date stands for (a corrupt or hand-edited profile).
        return f"{value:.6g}"


def policy_yaml(profile: Profile, thresholds: Thresholds | None = None, *,
                action: str = "block", strict: bool = False) -> str:
    """The policy as commented YAML, ready for review."""
    import yaml

    document, notes, skipped = policy_document(profile, thresholds, action=action,
                                               strict=strict)
    out = [
        f"# Policy for agent {profile.agent!r}, generated from its behavioural profile",
        f"# ({profile.events:,} events, {profile.turns:,} turns, {_stamp(profile.first_seen)} to "
        f"{_stamp(profile.last_seen)}) by agentguard profile to-policy.",
        "#",
        "# Every rule allows only what was observed while learning. Review it before enforcing:",
        "# widen a list or a bound where learning saw too little, delete rules you do not want.",
        "# High-severity rules block (with --strict: every rule on a learned part); the others,",
        "# and every rule on a part of the profile that was still learning, only alert.",
        "# Not expressible here (the baseline stage judges them with the profile): calls per",
        "# turn, the order of tool calls, drift of model decisions, new argument keys.",
    ]
    if skipped:
        out.append("# Left out:")
        out.extend(f"#   {_comment(line)}" for line in skipped[:50])
    out.append("version: 1")
    if document["lists"]:
        out.append("lists:")
        for name, values in document["lists"].items():
            short = len(json.dumps(values)) <= 80
            text = yaml.safe_dump({name: values}, default_flow_style=None if short else False,
                                  width=100)
            out.extend("  " + line for line in text.rstrip("\n").splitlines())
    out.append("rules:")
    for rule, note in zip(document["rules"], notes, strict=True):
        out.append(f"  # {_comment(note)}")
        text = yaml.safe_dump([rule], default_flow_style=None, sort_keys=False, width=100)
        out.extend("  " + line for line in text.rstrip("\n").splitlines())
    return "\n".join(out) + "\n"
