"""``Policy``: a compiled rule set that judges events (a Guard policy stage)."""

from __future__ import annotations

import gc
import math
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

from agentguard import events as _events
from agentguard._files import NotRegularFile, open_regular
from agentguard.events import EventContext
from agentguard.findings import Category, Decision, Severity
from agentguard.policy._errors import PolicyError
from agentguard.policy._memory import Flag, History, RateWindow
from agentguard.policy._paths import MISSING, Scratch, attribute, context_fields, event_fields

# Kept equal to agentguard.policy._yaml.MAX_SOURCE_BYTES (that module imports PyYAML).
MAX_SOURCE_BYTES = 1 << 20

if TYPE_CHECKING:
    from agentguard.policy._compile import CompiledPolicy, CompiledRule, Gate, Source
    from agentguard.policy._nodes import Explained, Test

__all__ = ["Policy", "RuleExplanation", "RuleInfo", "builtin_source"]

# Per event kind, the candidate rules for each (tool, agent, phase) seen; cleared when full.
_CACHE_LIMIT = 4096
_MAX_EVIDENCE = 16
_FLAG_CATEGORIES = ("injection", "taint")
INJECTION_ANNOTATION = "injection"
# Kept equal to the kinds in agentguard.policy._compile.PHASED (imported lazily).
_PHASED_KINDS = frozenset({"tool_call", "model_call", "retrieval"})
# The event models: their instance dict is exactly their fields (fast path of evaluate).
_EVENT_TYPES = frozenset({_events.Turn, _events.ModelCall, _events.Retrieval, _events.ToolCall,
                          _events.CloudCall, _events.ProcessExec, _events.NetConnect,
                          _events.DnsLookup, _events.FileOpen, _events.ModuleLoad,
                          _events.ModelLoad})


@dataclass(frozen=True)
class RuleInfo:
    """What a rule is, for listing (``agentguard policy check``) and documentation."""

    id: str
    description: str
    severity: str
    action: str
    category: str
    kinds: tuple[str, ...] | None
    tools: tuple[str, ...] | None
    agents: tuple[str, ...] | None
    phases: dict[str, str | None]
    tags: tuple[str, ...]
    source: str
    line: int | None
    rate_limit: str | None
    after: tuple[str, ...]


@dataclass
class RuleExplanation:
    """Whether one rule fired for an event, and why or why not."""

    rule: RuleInfo
    matched: bool
    decision: Decision | None = None
    reason: str = ""
    evidence: list[dict[str, Any]] = field(default_factory=list)
    failed: Any = None


# Candidate rules behind one gate (or none): (gate, [(test or None, rule, stateful), ...]).
_Group = tuple["Gate | None", list[tuple["Test | None", "CompiledRule", bool]]]
# The gates a tool call's arguments must all fail, the one per-conversation rate limit counted,
# and whether every gate reads only the strings in the arguments.
_QuickPlan = tuple[tuple["Gate", ...], "RateWindow | None", bool]
_SCALARS = (int, float, bool, type(None))


def _no_text(arguments: dict[Any, Any]) -> bool:
    """Whether a dict of tool arguments holds only numbers, flags and nulls (no string at all)."""
    # A plain loop: all() over a generator costs twice as much for the usual one or two values.
    for value in arguments.values():  # noqa: SIM110
        if type(value) not in _SCALARS:
            return False
    return True

_builtin_lock = threading.Lock()
_builtin: Source | None = None

_collector_lock = threading.Lock()
_collector_pauses = 0
_collector_resumes = False


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while a policy is read and compiled.

    Loading builds hundreds of thousands of objects that all stay alive, so every automatic
    collection on the way finds nothing to free; the full ones walk everything built so far, and
    there are more of them the larger the policy: they took over a third of the time to load
    8000 rules, and made the cost per rule grow with the rule count. Nested and concurrent loads
    share one pause; the collector runs again after the last of them, if it was running before
    the first.
    """
    global _collector_pauses, _collector_resumes
    with _collector_lock:
        if _collector_pauses == 0:
            _collector_resumes = gc.isenabled()
            gc.disable()
        _collector_pauses += 1
    try:
        yield
    finally:
        with _collector_lock:
            _collector_pauses -= 1
            if _collector_pauses == 0 and _collector_resumes:
                gc.enable()


def _reported(verdict: Any, ids: frozenset[str]) -> bool:
    """Whether ``verdict`` already holds a finding of one of the rules ``ids``."""
    return any(getattr(finding, "rule_id", None) in ids
               for finding in getattr(verdict, "findings", None) or ())


def builtin_source() -> Source:
    """The built-in rule pack (parsed once per process)."""
    global _builtin
    with _builtin_lock:
        if _builtin is None:
            from importlib import resources

            text = resources.files("agentguard.policy").joinpath("builtin.yaml").read_text("utf-8")
            _builtin = _parse(text, "agentguard/policy/builtin.yaml", builtin=True)
        return _builtin


def _parse(text: str | bytes, name: str, *, builtin: bool = False) -> Source:
    from agentguard.policy._compile import Source
    from agentguard.policy._models import validate_document
    from agentguard.policy._yaml import load_yaml

    with _collector_paused():
        data, marks = load_yaml(text, name)
        return Source(name, validate_document(data, marks), marks, builtin=builtin)


def _read_policy_file(name: str) -> bytes:
    """The bytes of a policy file (one over the size limit at most); raises :class:`PolicyError`."""
    try:
        # A named pipe nobody writes to would otherwise hang the agent at instrument().
        handle, _ = open_regular(name)
        with handle:
            # One byte over the limit is enough for the loader to refuse the file.
            return handle.read(MAX_SOURCE_BYTES + 1)
    except FileNotFoundError:
        raise PolicyError.single(name, "policy file not found") from None
    except NotRegularFile as exc:
        if exc.directory:
            raise PolicyError.single(name, "is a directory, not a policy file") from None
        raise PolicyError.single(name, "is a named pipe, device or socket, not a policy file",
                                 hint="give the path of a regular file") from None
    except OSError as exc:
        raise PolicyError.single(name, f"cannot read the policy file: "
                                       f"{exc.strerror or exc}") from None


def _from_data(data: Any, name: str) -> Source:
    from agentguard.policy._compile import Source
    from agentguard.policy._models import validate_document
    from agentguard.policy._yaml import Marks

    # A dict has no lines: problems are located by their field path alone.
    marks = Marks(name)
    with _collector_paused():
        return Source(name, validate_document(_plain(data, name, 0), marks), marks)


def _plain(data: Any, name: str, depth: int) -> Any:
    """A copy of user data as plain dicts and lists (tuples too), refusing cycles and depth."""
    if depth > 64:
        raise PolicyError.single(name, "the policy nests deeper than 64 levels")
    if isinstance(data, Mapping):
        return {key: _plain(value, name, depth + 1) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_plain(value, name, depth + 1) for value in data]
    return data


def _ctx(ctx: Any, name: str) -> Any:
    """A field of an event context (an EventContext, a mapping, or absent)."""
    if ctx is None:
        return None
    value = attribute(ctx, name)
    return None if value is MISSING else value


def _injection(verdict: Any) -> Any:
    annotations = getattr(verdict, "annotations", None)
    return annotations.get(INJECTION_ANNOTATION) if isinstance(annotations, Mapping) else None


def _flag_attr(annotation: Any, name: str) -> bool:
    """``annotation.name`` or ``annotation[name]`` as a boolean, whatever shape it has."""
    if annotation is None:
        return False
    try:
        value = annotation.get(name) if isinstance(annotation, Mapping) else \
            getattr(annotation, name, None)
        return bool(value)
    except Exception:
        return False


class Policy:
    """Declarative rules (YAML) compiled for fast evaluation: a Guard policy stage.

    Build one with :meth:`from_file`, :meth:`from_files`, :meth:`from_yaml` or :meth:`from_dict`
    and pass it to ``agentguard.instrument(policy=...)``. Lists and macros of the built-in pack are
    available to every policy; ``evaluate(event, verdict)`` returns the decisions of every rule
    that fired (or ``None``). A policy keeps bounded state for rate limits and sequences.
    """

    def __init__(self, sources: Sequence[Source], *, disabled: Iterable[str] = (),
                 name: str | None = None, environ: Mapping[str, str] | None = None,
                 _reuse: Policy | None = None) -> None:
        self._sources = tuple(sources)
        self._disabled = frozenset(disabled)
        from agentguard.policy._compile import compile_sources

        self._environ = dict(environ) if environ is not None else None
        # _reuse: a policy of the same files whose compiled rules this one may take.
        with _collector_paused():
            self._compiled: CompiledPolicy = compile_sources(
                self._sources, disabled=self._disabled, environ=self._environ,
                reuse=_reuse._compiled if _reuse is not None else None)
        self.name = name or ", ".join(s.name for s in self._sources if s.include_rules) or "policy"
        self._by_kind = {kind: entries for kind, entries in self._compiled.by_kind.items()}
        self._caches: dict[str, dict[tuple[Any, ...], tuple[_Group, ...]]] = {
            kind: {} for kind in self._by_kind}
        self._history = History()
        # Who built it: "config-files" for the policy instrument() loads from file paths.
        self.origin = "api"
        self._tracks_flags = self._compiled.tracks_flags
        self._after_tools = self._compiled.after_tools
        self._recorded_tools: dict[str, bool] = {}
        self._tracking = self._after_tools is not None or self._tracks_flags
        self._result_floors: dict[tuple[Any, Any], float] = {}
        # Per (tool, agent): what quick_allow checks, or None when it cannot answer.
        self._quick_plans: dict[tuple[Any, Any], _QuickPlan | None] = {}
        self.cache_clears = 0

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> Policy:
        """A policy from one YAML file; raises :class:`PolicyError` naming the file and line."""
        return cls.from_files([path], **kwargs)

    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike[str]], *, builtin_rules: bool = False,
                   disabled: Iterable[str] = (), environ: Mapping[str, str] | None = None
                   ) -> Policy:
        """One policy from several files sharing lists and macros (later files may extend them).

        With ``builtin_rules=True`` the built-in rules are part of it too (the CLI does this).
        """
        sources = [replace(builtin_source(), include_rules=builtin_rules)]
        with _collector_paused():
            for path in paths:
                name = os.fspath(path)
                sources.append(_parse(_read_policy_file(name), name))
            return cls(sources, disabled=disabled, environ=environ)

    @classmethod
    def from_yaml(cls, text: str | bytes, name: str = "<string>", *, builtin_rules: bool = False,
                  **kwargs: Any) -> Policy:
        """A policy from YAML text (with the built-in rules too if ``builtin_rules``)."""
        return cls([replace(builtin_source(), include_rules=builtin_rules), _parse(text, name)],
                   **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], name: str = "<dict>", *,
                  builtin_rules: bool = False, **kwargs: Any) -> Policy:
        """A policy from a dict shaped like the YAML document."""
        return cls([replace(builtin_source(), include_rules=builtin_rules),
                    _from_data(data, name)], **kwargs)

    @classmethod
    def builtin(cls, *, disabled: Iterable[str] = (), overlays: Iterable[Policy] = (),
                environ: Mapping[str, str] | None = None) -> Policy:
        """The built-in rule pack; ``overlays`` (user policies) may extend its lists and macros
        and change its rules through ``overrides``."""
        sources = [builtin_source()]
        for policy in overlays:
            sources.extend(replace(s, include_rules=False) for s in policy._sources if
                           not s.builtin)
        return cls(sources, disabled=disabled, name="agentguard built-in rules", environ=environ)

    def with_builtin(self, *, disabled: Iterable[str] = (), overlays: Iterable[Policy] = ()
                     ) -> Policy:
        """This policy with the built-in rules in it: one rule set, one evaluation per event
        (``overlays``' lists, macros and overrides apply too, before this policy's own)."""
        sources = [builtin_source()]
        for policy in overlays:
            sources.extend(replace(s, include_rules=False) for s in policy._sources if
                           not s.builtin)
        sources.extend(s for s in self._sources if not s.builtin)
        merged = Policy(sources, disabled=frozenset(disabled) | self._disabled, name=self.name,
                        environ=self._environ, _reuse=self)
        merged.origin = self.origin
        return merged

    def without(self, rule_ids: Iterable[str]) -> Policy:
        """A copy of this policy with the given rules switched off (fresh rate/sequence state)."""
        ids = frozenset(rule_ids) & self._compiled.known_ids
        if not ids - self._disabled:
            return self
        copy = Policy(self._sources, disabled=self._disabled | ids, name=self.name,
                      environ=self._environ, _reuse=self)
        copy.origin = self.origin
        return copy

    # -- introspection ---------------------------------------------------------------------
    @property
    def rules(self) -> list[RuleInfo]:
        """The enabled rules, in the order they are evaluated."""
        return [_info(rule) for rule in self._compiled.rules]

    @property
    def rule_ids(self) -> frozenset[str]:
        """Ids of the enabled rules."""
        return frozenset(rule.id for rule in self._compiled.rules)

    @property
    def known_ids(self) -> frozenset[str]:
        """Ids of every rule the sources define, enabled or not (built-in ones included)."""
        return self._compiled.known_ids

    @property
    def kinds(self) -> frozenset[str]:
        """The event kinds some rule looks at."""
        return frozenset(self._by_kind)

    @property
    def lists(self) -> dict[str, tuple[Any, ...]]:
        """The resolved lists of the namespace (built-in ones included)."""
        return dict(self._compiled.lists)

    @property
    def includes_builtin(self) -> bool:
        """Whether the built-in rules are part of this policy."""
        return any(s.builtin and s.include_rules for s in self._sources)

    @property
    def user_sources(self) -> tuple[str, ...]:
        """Names of the non-built-in sources (file paths, '<string>', '<dict>')."""
        return tuple(s.name for s in self._sources if not s.builtin)

    def stats(self) -> dict[str, int]:
        """Counters of the bounded state: conversations tracked and dropped, cache clears."""
        return {
            "rules": len(self._compiled.rules),
            "conversations": len(self._history),
            "conversations_evicted": self._history.evicted,
            "rate_keys_evicted": sum(r.rate.evicted for r in self._compiled.rules if r.rate),
            "candidate_cache_clears": self.cache_clears,
        }

    def __repr__(self) -> str:
        return f"Policy({self.name!r}, {len(self._compiled.rules)} rules)"

    # -- evaluation ------------------------------------------------------------------------
    def _candidates(self, kind: str, tool: Any, agent: Any, phase: Any) -> tuple[_Group, ...]:
        """The rules that can fire for this kind, tool, agent and phase, in order, grouped so
        rules behind one gate are skipped together."""
        key = (tool, agent, phase)
        cache = self._caches[kind]
        found = cache.get(key)
        if found is not None:
            return found
        out: list[tuple[Test | None, CompiledRule, bool, Gate | None]] = []
        for rule, rule_phase, test, gate in self._by_kind[kind]:
            if rule_phase is not None and rule_phase != phase:
                continue
            if rule.tool is not None and (not isinstance(tool, str) or not rule.tool.match(tool)):
                continue
            if rule.agent is not None and (not isinstance(agent, str) or
                                           not rule.agent.match(agent)):
                continue
            # A condition that always holds (a rule with only match, rate_limit or after) needs
            # no call.
            always = rule.tests_always.get(kind, False)
            out.append((None if always else test, rule,
                        bool(rule.after) or rule.rate is not None, gate))
        groups: list[_Group] = []
        for member_test, member, stateful, gate in out:
            if groups and groups[-1][0] is gate:
                groups[-1][1].append((member_test, member, stateful))
            else:
                groups.append((gate, [(member_test, member, stateful)]))
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
            self.cache_clears += 1
        found = cache[key] = tuple(groups)
        return found

    def result_floor(self, tool: Any, agent: Any) -> float:
        """How large the result of ``tool`` must be for this policy to have anything to say
        about it: 0 judges every result, ``inf`` none. The size is the length of a text and the
        records of a plain list or dict (a text never holds more records than characters);
        other results are always judged.

        The Guard skips building and judging the result event of a small text result when every
        stage agrees (the built-in pack only looks at results for bulk data).
        """
        key = (tool, agent)
        found = self._result_floors.get(key)
        if found is not None:
            return found
        floor = math.inf
        if isinstance(tool, str) and self._after_tools is not None and self._records(tool):
            floor = 0.0  # sequence rules need to see this tool return
        elif "tool_call" in self._caches:
            for _, members in self._candidates("tool_call", tool, agent, "result"):
                for test, rule, stateful in members:
                    # Rate limits and sequences count every event; a rule without a condition
                    # fires on any.
                    member = 0.0 if stateful or test is None else \
                        rule.condition_for("tool_call").min_text("result")
                    floor = min(floor, member)
        if len(self._result_floors) >= _CACHE_LIMIT:
            self._result_floors.clear()
        self._result_floors[key] = floor
        return floor

    def quick_allow(self, tool: str, agent: str | None, arguments: Any,
                    conversation: str | None, now: float) -> bool:
        """Whether a call of ``tool`` (before it runs) with ``arguments`` certainly makes no rule
        fire, answered without the event: then its rate-limit count is recorded as
        :meth:`evaluate` would, and the Guard need not build the event at all. ``False`` means
        "evaluate it" (nothing recorded).

        It answers only for calls whose rules are all behind gates (a string some argument must
        hold: a metadata address, a shell pattern, ...) or a rate limit per conversation with no
        condition: the built-in pack's rules for a tool call. Any other rule makes it ``False``.
        """
        key = (tool, agent)
        plans = self._quick_plans
        try:
            plan = plans[key]
        except KeyError:
            plan = self._quick_plan(tool, agent)
            if len(plans) >= _CACHE_LIMIT:
                plans.clear()
            plans[key] = plan
        if plan is None:
            return False
        gates, rate, deep_only = plan
        if gates and not (deep_only and type(arguments) is dict and _no_text(arguments)):
            fields = {"kind": "tool_call", "timestamp": now, "tool": tool, "call_id": None,
                      "arguments": arguments, "result": None, "error": None, "phase": "call"}
            scratch = Scratch()
            for gate in gates:
                if gate.passed(fields, scratch):
                    return False
        if rate is not None and conversation is not None:
            # Counted only when still within the limit; over it, evaluate() counts and decides.
            return rate.hit_within((conversation,), now)
        return True

    def _quick_plan(self, tool: str, agent: str | None) -> _QuickPlan | None:
        if "tool_call" not in self._caches:
            return ((), None, False)
        gates: list[Gate] = []
        rate: RateWindow | None = None
        for gate, members in self._candidates("tool_call", tool, agent, "call"):
            if gate is not None:
                if gate.key[1:2] and str(gate.key[1]).startswith("context"):
                    return None  # a gate on the event's context: the event is needed
                gates.append(gate)
                continue
            for test, rule, stateful in members:
                if test is None and stateful and not rule.after and rule.rate is not None and \
                        rule.rate_by == ("conversation",) and rate is None:
                    rate = rule.rate
                    continue
                return None
        # Gates on the strings anywhere in the arguments only ("arguments.**"): arguments
        # without any string (ids, counts, flags) pass none of them.
        deep_only = all(gate.key[1:2] == ("arguments.**",) for gate in gates)
        return tuple(gates), rate, deep_only

    def evaluate(self, event: Any, verdict: Any = None) -> list[Decision] | None:
        """The decisions of every rule that fires for ``event`` (``None`` when none does)."""
        fields = event.__dict__ if type(event) in _EVENT_TYPES else event_fields(event)
        kind = fields.get("kind")
        decisions: list[Decision] | None = None
        entries = self._caches.get(kind) if isinstance(kind, str) else None
        if entries is not None:
            ctx = fields.get("context")
            ctx = ctx.__dict__ if type(ctx) is EventContext else context_fields(ctx)
            tool = fields.get("tool") if kind == "tool_call" else ctx.get("tool")
            key = (tool, ctx.get("agent"), fields.get("phase") if kind in _PHASED_KINDS else None)
            candidates = entries.get(key)
            if candidates is None:
                candidates = self._candidates(str(kind), *key)
            if candidates:
                scratch = Scratch()
                for gate, members in candidates:
                    if gate is not None:
                        passed = scratch.cache.get(gate.result_key)
                        if passed is None:
                            passed = gate.passed(fields, scratch)
                        if not passed:
                            continue
                    for test, rule, stateful in members:
                        if test is not None and not test(fields, scratch):
                            continue
                        if rule.unless_reported and _reported(verdict, rule.unless_reported):
                            continue
                        after = rate = None
                        if stateful:
                            if rule.after:
                                after = self._after(rule, fields, verdict)
                                if after is None:
                                    continue
                            if rule.rate is not None:
                                rate = self._rate(rule, fields)
                                if rate is None:
                                    continue
                        if decisions is None:
                            decisions = []
                        decisions.append(self._decide(rule, fields, scratch, after, rate))
        if self._tracking and isinstance(kind, str) and (
                (kind == "tool_call" and self._after_tools is not None and
                 fields.get("phase") == "result") or
                (self._tracks_flags and verdict is not None and
                 (getattr(verdict, "annotations", None) or getattr(verdict, "findings", None)))):
            self._track(fields, kind, verdict)
        return decisions

    @staticmethod
    def _now(fields: Mapping[str, Any]) -> float:
        stamp = fields.get("timestamp")
        return float(stamp) if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) \
            else time.time()

    def _current_flag(self, fields: Mapping[str, Any], verdict: Any) -> Flag | None:
        """Untrusted content flagged before this event, as the verdict shows it."""
        if verdict is None:
            return None
        injection = _injection(verdict)
        turn = _ctx(fields.get("context"), "turn")
        if _flag_attr(injection, "conversation_flagged"):
            return Flag(self._now(fields), turn, "injection detector: conversation flagged")
        if _flag_attr(injection, "tainted"):
            return Flag(self._now(fields), turn, "injection detector: tainted values")
        for finding in getattr(verdict, "findings", None) or ():
            # Taint on this event means its values came from content flagged earlier.
            if getattr(finding, "category", None) == "taint":
                return Flag(self._now(fields), turn, f"finding {finding.rule_id}")
        return None

    def _after(self, rule: CompiledRule, fields: Mapping[str, Any], verdict: Any
               ) -> list[dict[str, Any]] | None:
        ctx = fields.get("context")
        conversation = _ctx(ctx, "conversation_id")
        if conversation is None:
            return None
        turn = _ctx(ctx, "turn")
        now = self._now(fields)
        history = self._history.get(str(conversation))
        found: list[dict[str, Any]] = []
        for item in rule.after:
            if item.flagged:
                flag = self._current_flag(fields, verdict)
                if flag is None and history is not None:
                    with self._history.lock:
                        flag = history.flag
                if flag is None or (item.within is not None and now - flag.at > item.within) or \
                        (item.same_turn and flag.turn != turn):
                    return None
                found.append({"after": "untrusted_content_flagged", "by": flag.source,
                              "seconds_ago": round(max(0.0, now - flag.at), 3),
                              "turn": flag.turn})
                continue
            if history is None or item.tool is None:
                return None
            with self._history.lock:
                tools = list(history.tools.items())
            hit = None
            for name, (at, tool_turn) in reversed(tools):
                if at > now or not item.tool.match(name):
                    continue
                if item.within is not None and now - at > item.within:
                    continue
                if item.same_turn and tool_turn != turn:
                    continue
                hit = {"after": "tool", "tool": name, "seconds_ago": round(now - at, 3),
                       "turn": tool_turn}
                break
            if hit is None:
                return None
            found.append(hit)
        return found

    def _rate(self, rule: CompiledRule, fields: Mapping[str, Any]) -> dict[str, Any] | None:
        assert rule.rate is not None
        ctx = fields.get("context")
        if rule.rate_by == ("conversation",):
            conversation = (ctx.__dict__ if type(ctx) is EventContext else
                            context_fields(ctx)).get("conversation_id")
            if conversation is None:
                return None
            stamp = fields.get("timestamp")
            count = rule.rate.hit((conversation,), stamp if type(stamp) is float
                                  else self._now(fields))
            if count <= rule.rate.limit:
                return None
            return {"count": count, "max": rule.rate.limit, "per_seconds": rule.rate.per,
                    "by": {"conversation": conversation}}
        key: list[str] = []
        for part in rule.rate_by:
            if part == "conversation":
                value = _ctx(ctx, "conversation_id")
            elif part == "agent":
                value = _ctx(ctx, "agent") or "-"
            elif part == "user":
                value = _ctx(ctx, "user")
            elif part == "tool":
                value = fields.get("tool") if fields.get("kind") == "tool_call" else \
                    _ctx(ctx, "tool")
            else:
                value = "*"
            if value is None:
                # Events outside a conversation (user, tool) are not counted for that key.
                return None
            key.append(str(value))
        count = rule.rate.hit(tuple(key), self._now(fields))
        if count <= rule.rate.limit:
            return None
        return {"count": count, "max": rule.rate.limit, "per_seconds": rule.rate.per,
                "by": dict(zip(rule.rate_by, key, strict=True))}

    def _track(self, fields: Mapping[str, Any], kind: str, verdict: Any) -> None:
        # A tool counts as called once it returned (its result event): a call blocked before it
        # ran moved no data.
        tool = fields.get("tool") if kind == "tool_call" and self._after_tools is not None \
            else None
        record_tool = isinstance(tool, str) and fields.get("phase") == "result" and \
            self._records(tool)
        flags = self._tracks_flags and verdict is not None and \
            bool(getattr(verdict, "annotations", None) or getattr(verdict, "findings", None))
        if not record_tool and not flags:
            return
        ctx = fields.get("context")
        conversation = _ctx(ctx, "conversation_id")
        if conversation is None:
            return
        now = self._now(fields)
        turn = _ctx(ctx, "turn")
        flag: Flag | None = None
        if flags:
            injection = _injection(verdict)
            if _flag_attr(injection, "flagged") or _flag_attr(injection, "conversation_flagged"):
                flag = Flag(now, turn, f"injection detector on a {kind} event")
            else:
                for finding in getattr(verdict, "findings", None) or ():
                    if getattr(finding, "category", None) in _FLAG_CATEGORIES:
                        flag = Flag(now, turn, f"finding {getattr(finding, 'rule_id', '?')} on "
                                               f"a {kind} event")
                        break
        if not record_tool and flag is None:
            return
        with self._history.lock:
            history = self._history.update(str(conversation))
            if record_tool:
                history.record_tool(str(tool), now, turn)
            if flag is not None:
                history.flag = flag

    def _records(self, tool: str) -> bool:
        known = self._recorded_tools.get(tool)
        if known is None:
            known = self._after_tools is not None and self._after_tools.match(tool) is not None
            if len(self._recorded_tools) > _CACHE_LIMIT:
                self._recorded_tools.clear()
            self._recorded_tools[tool] = known
        return known

    def _decide(self, rule: CompiledRule, fields: Mapping[str, Any], scratch: Scratch,
                after: list[dict[str, Any]] | None, rate: dict[str, Any] | None) -> Decision:
        evidence: dict[str, Any] = {"policy": rule.source}
        if rule.line is not None:
            evidence["line"] = rule.line
        try:
            explained = rule.condition_for(fields.get("kind")).explain(fields, scratch)
            if explained.matched:
                evidence["matched"] = explained.matched[:_MAX_EVIDENCE]
        except Exception as exc:  # evidence is a courtesy; never lose the decision over it
            evidence["evidence_error"] = type(exc).__name__
        if after:
            evidence["after"] = after
        if rate:
            evidence["rate"] = rate
        if rule.tags:
            evidence["tags"] = list(rule.tags)
        title = rule.render_title(fields, scratch)
        severity = cast(Severity, rule.severity)
        category = cast(Category, rule.category)
        if rule.action == "block":
            return Decision.block(title, severity, rule_id=rule.id, category=category,
                                  evidence=evidence)
        return Decision.alert(title, severity, rule_id=rule.id, category=category,
                              evidence=evidence)

    # -- explanation -----------------------------------------------------------------------
    def explain(self, event: Any, verdict: Any = None) -> list[RuleExplanation]:
        """For every rule, whether it fires for ``event`` and why (or the first check that failed).

        Like :meth:`evaluate`, this counts rate limits and records sequence history, so a list
        of events explained in order behaves as the same events would at run time.
        """
        fields = event_fields(event)
        kind = fields.get("kind")
        ctx = fields.get("context")
        tool = fields.get("tool") if kind == "tool_call" else _ctx(ctx, "tool")
        agent = _ctx(ctx, "agent")
        phase = fields.get("phase") if kind in _PHASED_KINDS else None
        scratch = Scratch()
        out: list[RuleExplanation] = []
        for rule in self._compiled.rules:
            info = _info(rule)
            reason = _prefilter(rule, kind, tool, agent, phase)
            if reason is not None:
                out.append(RuleExplanation(info, False, reason=reason))
                continue
            result: Explained = rule.condition_for(kind).explain(fields, scratch)
            if not result.ok:
                out.append(RuleExplanation(info, False, reason="condition not met",
                                           failed=result.failed))
                continue
            if rule.unless is not None:
                exception = rule.unless.explain(fields, scratch)
                if exception.ok:
                    out.append(RuleExplanation(info, False, reason="an exception (unless) holds",
                                               evidence=exception.matched))
                    continue
            after = self._after(rule, fields, verdict) if rule.after else None
            if rule.after and after is None:
                wanted = "; ".join(a.describe() for a in rule.after)
                out.append(RuleExplanation(info, False, reason=f"sequence not met ({wanted})",
                                           evidence=result.matched))
                continue
            rate = self._rate(rule, fields) if rule.rate is not None else None
            if rule.rate is not None and rate is None:
                out.append(RuleExplanation(info, False, reason=f"within the rate limit "
                                           f"({rule.rate.limit} per {rule.rate.per:g}s)",
                                           evidence=result.matched))
                continue
            decision = self._decide(rule, fields, scratch, after, rate)
            out.append(RuleExplanation(info, True, decision=decision, reason="matched",
                                       evidence=decision.evidence.get("matched", [])))
        if self._tracking and isinstance(kind, str):
            self._track(fields, kind, verdict)
        return out


def _prefilter(rule: CompiledRule, kind: Any, tool: Any, agent: Any, phase: Any) -> str | None:
    if kind not in rule.phases:
        wanted = "/".join(rule.kinds) if rule.kinds else "other"
        return f"event kind is {kind}, the rule looks at {wanted} events"
    wanted_phase = rule.phases[kind]
    if wanted_phase is not None and wanted_phase != phase:
        return f"phase is {phase}, the rule looks at the {wanted_phase} phase"
    if rule.tool is not None and (not isinstance(tool, str) or not rule.tool.match(tool)):
        globs = ", ".join(rule.tool_globs or ())
        return f"tool {tool!r} does not match {globs}" if tool else \
            f"the event is not inside a tool (the rule wants {globs})"
    if rule.agent is not None and (not isinstance(agent, str) or not rule.agent.match(agent)):
        return f"agent {agent!r} does not match {', '.join(rule.agent_globs or ())}"
    return None


def _info(rule: CompiledRule) -> RuleInfo:
    rate = None
    if rule.rate is not None:
        rate = f"{rule.rate.limit} per {rule.rate.per:g}s by {'+'.join(rule.rate_by)}"
    return RuleInfo(
        id=rule.id, description=rule.description, severity=rule.severity, action=rule.action,
        category=rule.category, kinds=rule.kinds, tools=rule.tool_globs,
        agents=rule.agent_globs, phases=dict(rule.phases), tags=rule.tags, source=rule.source,
        line=rule.line, rate_limit=rate, after=tuple(a.describe() for a in rule.after),
    )

