"""The compiler: policy documents → rules as closures, indexed by event kind.

Several sources (the built-in pack, user files) share one namespace of lists and macros, in
order: a later source may ``append`` to or ``override`` a list or macro defined earlier, and may
change a rule defined earlier through ``overrides``. Each condition becomes a closure
``test(fields, scratch) -> bool``; the explain functions walk the same conditions again, slowly
and only when asked (a rule fired, or ``agentguard policy explain``), to say why.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from agentguard.policy._errors import (
    MAX_ISSUES,
    PolicyError,
    PolicyIssue,
    did_you_mean,
    rule_id_hint,
)
from agentguard.policy._memory import RateWindow
from agentguard.policy._models import (
    CONTEXT_FIELDS,
    EVENT_KINDS,
    KIND_FIELDS,
    NAME_PATTERN,
    After,
    Condition,
    PolicyDocument,
    Rule,
)
from agentguard.policy._nodes import (
    AllNode,
    AnyNode,
    Const,
    FieldNode,
    MacroNode,
    Node,
    NotNode,
    Test,
)
from agentguard.policy._ops import (
    TRANSFORM_FUNCTIONS,
    Op,
    bounds_test,
    cidr_op,
    glob_literal,
    literal_set,
    lowercase,
    membership,
    number_text,
    numeric_op,
    regex_op,
    short_label,
    show,
    text_op,
    trie_pattern,
)
from agentguard.policy._paths import FieldPath, PathSyntaxError, Scratch
from agentguard.policy._regex import RegexProblem, compile_regex

if TYPE_CHECKING:
    from agentguard.policy._yaml import Marks

__all__ = [
    "BUILTIN_ID",
    "CompiledAfter",
    "CompiledPolicy",
    "CompiledRule",
    "Gate",
    "NameMatcher",
    "Source",
    "compile_sources",
]

Path = tuple[str | int, ...]

BUILTIN_ID = re.compile(r"^AG\d+$")
_NAME = re.compile(NAME_PATTERN)
_ENV = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_PLACEHOLDER = re.compile(r"\{([^{}]{1,200})\}")
# A condition, with every macro it uses written out in place, is at most this deep and has at most
# this many parts: a macro used twice by a macro used twice... doubles at each level, so a file of
# forty lines could otherwise ask for a trillion tests per event (and take as long to load).
MAX_CONDITION_DEPTH = 64
MAX_CONDITION_SIZE = 10_000
# Lists naming lists naming lists...: at most this deep.
MAX_LIST_DEPTH = 32
# Values all lists hold together once the lists they name are written out: a file of a few
# thousand names could otherwise ask for a list naming a 10 000-value list 10 000 times over
# (each list is written out once, and a name given twice in one list counts once).
MAX_LIST_VALUES = 500_000
_TOO_DEEP = "flatten nested all:/any: groups, or use fewer layers of macros"

# Event kind → (fields that only exist once the work is done, that phase, the phase before it).
PHASED: dict[str, tuple[frozenset[str], str, str]] = {
    "tool_call": (frozenset({"result", "error"}), "result", "call"),
    "model_call": (frozenset({"output", "finish_reasons", "input_tokens", "output_tokens"}),
                   "response", "request"),
    "retrieval": (frozenset({"documents"}), "response", "request"),
}


class NameMatcher(Protocol):
    """Tool or agent name patterns: ``match(name)`` is truthy when one matches."""

    def match(self, string: str, /) -> object: ...


class _Names:
    """Names without a pattern character: a set lookup, no regular expression to build (a
    policy of thousands of rules, each for its own tool, would otherwise compile thousands)."""

    __slots__ = ("names",)

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)

    def match(self, string: str, /) -> bool | None:
        return True if string in self.names else None


_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass
class Source:
    """One parsed policy document and where it came from."""

    name: str
    document: PolicyDocument
    marks: Marks
    builtin: bool = False
    include_rules: bool = True



# -- compiled rules ------------------------------------------------------------------------------

@dataclass
class CompiledAfter:
    """A compiled sequence condition."""

    tool: NameMatcher | None
    tool_globs: tuple[str, ...]
    flagged: bool
    within: float | None
    same_turn: bool

    def describe(self) -> str:
        what = f"after tool {' or '.join(self.tool_globs)}" if self.tool is not None else \
            "after untrusted content was flagged"
        if self.within is not None:
            what += f" within {number_text(self.within)}s"
        if self.same_turn:
            what += " in the same turn"
        return what


@dataclass
class CompiledRule:
    """A rule ready to run: its match filters, condition closure and what it decides."""

    id: str
    description: str
    severity: str
    action: str
    category: str
    tags: tuple[str, ...]
    source: str
    line: int | None
    kinds: tuple[str, ...] | None
    tool_globs: tuple[str, ...] | None
    agent_globs: tuple[str, ...] | None
    phases: dict[str, str | None]
    when: Node
    unless: Node | None
    # Per event kind: the condition specialised for that kind (kinds where it never holds left out).
    tests: dict[str, Test]
    # Per event kind: whether the condition always holds (no test to call).
    tests_always: dict[str, bool]
    # Per event kind: the condition with the tests of fields that kind lacks folded away.
    specials: dict[str, Node]
    # Per event kind: (text key, text builder, regex sources) of a necessary text condition.
    gates: dict[str, Any]

    def condition_for(self, kind: Any) -> Node:
        """The condition as it applies to events of ``kind`` (for explanations)."""
        return self.specials.get(kind, self.when) if isinstance(kind, str) else self.when
    after: tuple[CompiledAfter, ...]
    rate: RateWindow | None
    rate_by: tuple[str, ...]
    title: tuple[str | FieldPath, ...] | None
    tool: NameMatcher | None = None
    agent: NameMatcher | None = None
    # Rule ids whose finding on the same event keeps this rule quiet (unless_reported).
    unless_reported: frozenset[str] = frozenset()

    def render_title(self, fields: Any, scratch: Scratch) -> str:
        if self.title is None:
            return self.description
        parts: list[str] = []
        for part in self.title:
            if isinstance(part, str):
                parts.append(part)
            else:
                values = part.get(fields, scratch)
                shown = show(values[0], 120) if values else "?"
                parts.append(str(shown))
        return "".join(parts)[:500]


@dataclass
class CompiledPolicy:
    """Every rule of a set of sources, indexed by event kind, with the namespace they used."""

    rules: list[CompiledRule]
    lists: dict[str, tuple[Any, ...]]
    macros: dict[str, str]
    by_kind: dict[str, list[tuple[CompiledRule, str | None, Test, Gate | None]]]
    after_tools: re.Pattern[str] | None
    tracks_flags: bool
    known_ids: frozenset[str]
    # The documents compiled, in order: another compile of the same documents with the same
    # lists may take its rules from this one (see compile_sources).
    documents: tuple[PolicyDocument, ...] = ()




class Gate:
    """A necessary condition several rules share: their joined text holds one of some strings.

    ``passed(fields, scratch)`` runs one linear search per event and remembers the answer.
    """

    __slots__ = ("key", "result_key", "search", "text")

    def __init__(self, key: tuple[str, ...], text: Callable[[Any, Scratch], str],
                 search: Callable[[str], Any]) -> None:
        self.key = key
        self.result_key = ("g", *key)
        self.text = text
        self.search = search

    def passed(self, fields: Any, scratch: Scratch) -> bool:
        cache = scratch.cache
        joined = cache.get(self.key)
        if joined is None:
            joined = self.text(fields, scratch)
        # No gate string is empty, so an empty text (arguments without strings) holds none.
        result = cache[self.result_key] = bool(joined) and self.search(joined) is not None
        return result



def _gates(entries: list[tuple[CompiledRule, Any]]) -> dict[str, Gate]:
    """Rules that can only fire when the same joined text holds one of some strings share one
    linear search for all those strings: when it finds none (most events), none of them fire."""
    by_key: dict[tuple[str, ...], list[tuple[CompiledRule, Any]]] = {}
    for rule, gate in entries:
        by_key.setdefault(gate[0], []).append((rule, gate))
    out: dict[str, Gate] = {}
    for key, group in by_key.items():
        if len(group) < 2:
            continue
        words: set[str] = set()
        seen: set[int] = set()
        for _, gate in group:
            # Rules on one named list share its words: each set is added once.
            if id(gate[2]) not in seen:
                seen.add(id(gate[2]))
                words.update(gate[2])
        if not words or "" in words:
            continue
        shared = Gate(key, group[0][1][1], re.compile(trie_pattern(sorted(words))).search)
        for rule, _ in group:
            out[rule.id] = shared
    return out


def _and_not(positive: Test, negative: Test | None) -> Test:
    if negative is None:
        return positive

    def test(fields: Any, scratch: Scratch) -> bool:
        return positive(fields, scratch) and not negative(fields, scratch)
    return test


def _globs_regex(globs: Sequence[str]) -> re.Pattern[str]:
    return _globs_pattern(tuple(globs))


@functools.lru_cache(maxsize=1024)
def _globs_pattern(globs: tuple[str, ...]) -> re.Pattern[str]:
    """The regex of shell patterns (made once for each set: every policy built in the process
    has the built-in pack's, each of which takes milliseconds)."""
    if not globs:
        # No pattern (a list left empty by an unset environment variable) matches nothing; an
        # empty alternation would match everything.
        return re.compile("(?!)")
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs))


class _Compiler:
    def __init__(self, sources: Sequence[Source], disabled: frozenset[str],
                 environ: dict[str, str] | None, reuse: CompiledPolicy | None = None) -> None:
        self.sources = sources
        self.disabled = disabled
        self.environ = os.environ if environ is None else environ
        self.reuse = reuse
        self.issues: list[PolicyIssue] = []
        # name → (items, source index, path)
        self.raw_lists: dict[str, tuple[list[Any], int, Path]] = {}
        self.lists: dict[str, tuple[Any, ...]] = {}
        self.raw_macros: dict[str, tuple[Condition, int, Path, str | None]] = {}
        self.macro_nodes: dict[str, Node | None] = {}
        self.macro_stack: list[str] = []
        # Size and depth of each condition measured with its macros written out (see _shape; the
        # node is kept so its id stays its own), and the depth of the condition being compiled.
        self.shapes: dict[int, tuple[Node, int, int]] = {}
        self.depth = 0
        # The rule being compiled, named in problems found in what it uses (a regex, a list).
        self.rule_id: str | None = None
        # Name patterns already built (many rules name the same tools).
        self.matchers: dict[tuple[str, ...], NameMatcher] = {}
        # Operators on named lists already built (see cached_op).
        self.ops: dict[tuple[Any, ...], Op | None] = {}
        # Field paths already parsed (many rules test the same fields).
        self.paths: dict[str, FieldPath] = {}
        # Values of the resolved lists together (MAX_LIST_VALUES).
        self.list_values = 0
        self.lists_too_large = False

    def error(self, source: int, path: Path, message: str, hint: str | None = None, *,
              key: bool = False) -> None:
        self.issues.append(self.sources[source].marks.issue(path, message, hint, key=key))

    def suggest(self, word: str, candidates: Iterable[str]) -> str | None:
        """A did-you-mean hint, while the problem will be listed: past the first few only a
        count is reported, and comparing every misspelt name with thousands of defined ones
        would make a large policy with many problems take minutes to refuse."""
        if len(self.issues) >= MAX_ISSUES:
            return None
        return did_you_mean(word, candidates)

    def where(self, source: int, path: Path) -> str:
        marks = self.sources[source].marks
        line, _ = marks.locate(path)
        return f"{marks.file}:{line}" if line else marks.file

    # -- namespace -------------------------------------------------------------------------
    def collect(self) -> None:
        for index, source in enumerate(self.sources):
            doc = source.document
            for name, definition in doc.lists.items():
                path: Path = ("lists", name)
                if not _NAME.match(name):
                    self.error(index, path, f"invalid list name {name!r}",
                               "use letters, digits and _, starting with a letter", key=True)
                    continue
                known = self.raw_lists.get(name)
                if known is None:
                    if definition.append:
                        self.error(index, path, f"list {name!r} appends to a list that is not "
                                   "defined", self.suggest(name, self.raw_lists) or
                                   "drop append: true to define it here", key=True)
                        continue
                    self.raw_lists[name] = (list(definition.items), index, path)
                elif definition.append:
                    self.raw_lists[name] = (known[0] + list(definition.items), index, path)
                elif definition.override:
                    self.raw_lists[name] = (list(definition.items), index, path)
                else:
                    self.error(index, path, f"list {name!r} is already defined "
                               f"({self.where(known[1], known[2])})",
                               "add append: true to extend it, or override: true to replace it",
                               key=True)
            for name, macro in doc.macros.items():
                path = ("macros", name)
                if not _NAME.match(name):
                    self.error(index, path, f"invalid macro name {name!r}",
                               "use letters, digits and _, starting with a letter", key=True)
                    continue
                known_macro = self.raw_macros.get(name)
                if known_macro is not None and not macro.override:
                    self.error(index, path, f"macro {name!r} is already defined "
                               f"({self.where(known_macro[1], known_macro[2])})",
                               "add override: true to replace it", key=True)
                    continue
                # The long form has its condition under 'condition:'; the short form is one.
                long_form = (*path, "condition") in source.marks.keys
                self.raw_macros[name] = (macro.condition, index,
                                         (*path, "condition") if long_form else path,
                                         macro.description)
        for name in self.raw_lists:
            self.resolve_list(name, [])

    def resolve_list(self, name: str, stack: list[str]) -> tuple[Any, ...] | None:
        if name in self.lists:
            return self.lists[name]
        items, index, path = self.raw_lists[name]
        if name in stack:
            self.error(index, path, f"list {name!r} includes itself "
                       f"({' → '.join([*stack, name])})", key=True)
            return None
        if len(stack) >= MAX_LIST_DEPTH:
            self.error(index, path, f"lists include lists more than {MAX_LIST_DEPTH} levels deep "
                       f"({' → '.join([*stack[:3], '...', name])})",
                       "include the values of the inner lists directly", key=True)
            return None
        out: list[Any] = []
        included: set[str] = set()
        for item in items:
            if isinstance(item, str):
                env = _ENV.match(item)
                if env:
                    value = self.environ.get(env.group(1), "").strip()
                    if value:
                        out.append(value)
                    continue
                if item in self.raw_lists and item != name:
                    if item not in included:
                        included.add(item)
                        nested = self.resolve_list(item, [*stack, name])
                        if nested is not None:
                            out.extend(nested)
                    continue
            out.append(item)
        resolved = tuple(dict.fromkeys(out))
        self.list_values += len(resolved)
        if self.list_values > MAX_LIST_VALUES:
            if not self.lists_too_large:
                self.lists_too_large = True
                self.error(index, path, f"the lists hold more than {MAX_LIST_VALUES:,} values "
                           f"with the lists they include written out (at list {name!r})",
                           "include a large list in fewer other lists", key=True)
            resolved = ()
        self.lists[name] = resolved
        return resolved

    # -- conditions ------------------------------------------------------------------------
    def value_list(self, source: int, path: Path, value: list[Any] | str
                   ) -> tuple[Sequence[Any], str | None] | None:
        if isinstance(value, str):
            if value in self.lists:
                return self.lists[value], value
            self.error(source, path, f"{value!r} is not a defined list",
                       self.suggest(value, self.lists) or
                       "write [a, b] for literal values, or define the list under 'lists:'")
            return None
        return list(value), None

    def list_name(self, patterns: list[str]) -> str | None:
        """The list a one-item pattern list names, if it names one."""
        return patterns[0] if len(patterns) == 1 and patterns[0] in self.lists else None

    def pattern_list(self, patterns: list[str]) -> tuple[list[str], str | None]:
        name = self.list_name(patterns)
        if name is not None:
            return [str(item) for item in self.lists[name]], name
        return patterns, None

    def cached_op(self, key: tuple[Any, ...] | None, build: Callable[[], Op | None]
                  ) -> Op | None:
        """The operator ``build`` makes, made once per ``key`` (an operator on a named list;
        ``None``: not a named list). A list of thousands of values used by thousands of rules
        would otherwise be copied and indexed again for each. ``None`` when it could not be
        made (its problem is reported once, where the list is defined)."""
        if key is None:
            return build()
        if key not in self.ops:
            self.ops[key] = build()
        return self.ops[key]

    def condition(self, cond: Condition, source: int, path: Path,
                  kinds: tuple[str, ...] | None) -> Node | None:
        if self.depth >= MAX_CONDITION_DEPTH:
            self.error(source, path, f"the condition nests deeper than {MAX_CONDITION_DEPTH} "
                       "levels (with its macros written out)", _TOO_DEEP)
            return None
        self.depth += 1
        try:
            return self._condition(cond, source, path, kinds)
        finally:
            self.depth -= 1

    def _condition(self, cond: Condition, source: int, path: Path,
                   kinds: tuple[str, ...] | None) -> Node | None:
        if cond.all_ is not None or cond.any_ is not None:
            key = "all" if cond.all_ is not None else "any"
            items = cond.all_ if cond.all_ is not None else cond.any_
            assert items is not None
            children = [self.condition(child, source, (*path, key, i), kinds)
                        for i, child in enumerate(items)]
            if any(child is None for child in children):
                return None
            kept = [child for child in children if child is not None]
            return AllNode(kept) if key == "all" else AnyNode(kept)
        if cond.not_ is not None:
            inner = self.condition(cond.not_, source, (*path, "not"), kinds)
            return NotNode(inner) if inner is not None else None
        if cond.macro is not None:
            return self.macro(cond.macro, source, (*path, "macro"))
        assert cond.field is not None
        return self.field(cond, source, path, kinds)

    def macro(self, name: str, source: int, path: Path) -> Node | None:
        if name not in self.raw_macros:
            self.error(source, path, f"unknown macro {name!r}",
                       self.suggest(name, self.raw_macros) or "define it under 'macros:'")
            return None
        if name in self.macro_stack:
            cycle = " → ".join([*self.macro_stack[self.macro_stack.index(name):], name])
            self.error(source, path, f"macros refer to each other in a cycle: {cycle}",
                       "a macro cannot use itself, directly or through other macros")
            return None
        if name in self.macro_nodes:
            node = self.macro_nodes[name]
            if node is None:
                return None
            # Compiled earlier, elsewhere: written out here, it must still fit.
            if self.depth + self._shape(node)[1] > MAX_CONDITION_DEPTH:
                self.error(source, path, f"the condition nests deeper than "
                           f"{MAX_CONDITION_DEPTH} levels (with macro {name!r} written out)",
                           _TOO_DEEP)
                return None
            return MacroNode(name, node)
        condition, index, macro_path, _ = self.raw_macros[name]
        self.macro_stack.append(name)
        try:
            inner = self.condition(condition, index, macro_path, None)
        finally:
            self.macro_stack.pop()
        self.macro_nodes[name] = inner
        return MacroNode(name, inner) if inner is not None else None

    def _shape(self, node: Node) -> tuple[int, int]:
        """The number of parts and the depth of a condition with its macros written out."""
        known = self.shapes.get(id(node))
        if known is not None:
            return known[1], known[2]
        children: list[Node] = []
        if isinstance(node, (AllNode, AnyNode)):
            children = node.children
        elif isinstance(node, NotNode):
            children = [node.child]
        elif isinstance(node, MacroNode):
            children = [node.inner]
        size, depth = 1, 0
        for child in children:
            child_size, child_depth = self._shape(child)
            size += child_size
            depth = max(depth, child_depth)
        # A macro's condition is shared by every use of the macro: it is measured once.
        self.shapes[id(node)] = (node, size, depth + 1)
        return size, depth + 1

    def field_path(self, text: str, source: int, path: Path,
                   kinds: tuple[str, ...] | None) -> FieldPath | None:
        parsed = self.paths.get(text)
        if parsed is None:
            try:
                parsed = FieldPath(text)
            except PathSyntaxError as exc:
                self.error(source, path, f"invalid field path: {exc}",
                           "e.g. arguments.query.limit, result[*].email, argv[0], arguments.**")
                return None
            self.paths[text] = parsed
        allowed: set[str] = set()
        for kind in kinds or EVENT_KINDS:
            allowed |= KIND_FIELDS[kind]
        if parsed.context:
            if parsed.head not in CONTEXT_FIELDS:
                self.error(source, path, f"unknown context field {parsed.head!r}",
                           self.suggest(parsed.head, CONTEXT_FIELDS) or
                           "context fields: " + ", ".join(sorted(CONTEXT_FIELDS)))
                return None
        elif parsed.head not in allowed:
            scope = f"{'/'.join(kinds)} events" if kinds else "any event"
            self.error(source, path, f"{parsed.head!r} is not a field of {scope}",
                       self.suggest(parsed.head, allowed | {"context"}) or
                       "fields: " + ", ".join(sorted(allowed)))
            return None
        return parsed

    def field(self, cond: Condition, source: int, path: Path,
              kinds: tuple[str, ...] | None) -> Node | None:
        assert cond.field is not None
        parsed = self.field_path(cond.field, source, (*path, "field"), kinds)
        if parsed is None:
            return None
        fold = cond.ignore_case
        transforms = [(name, TRANSFORM_FUNCTIONS[name]) for name in cond.transform or ()]
        if fold:
            transforms.append(("lower", lowercase))
        ops: list[Op] = []
        ok = True

        def fold_text(items: Iterable[str]) -> list[str]:
            return [i.lower() for i in items] if fold else list(items)

        if cond.equals is not None:
            literal = literal_set([cond.equals], fold)
            ops.append(Op("equals", f"equals {cond.equals!r}", membership(literal)))
        if cond.not_equals is not None:
            different = membership(literal_set([cond.not_equals], fold))
            ops.append(Op("not_equals", f"differs from {cond.not_equals!r}",
                           lambda x: isinstance(x, (str, int, float)) and not different(x)))
        for key, negate in (("in", False), ("not_in", True)):
            raw = cond.in_ if key == "in" else cond.not_in
            if raw is None:
                continue
            found = self.value_list(source, (*path, key), raw)
            if found is None:
                ok = False
                continue
            items, name = found

            def membership_op(key: str = key, negate: bool = negate,
                              items: Sequence[Any] = items, name: str | None = name) -> Op:
                member = membership(literal_set(items, fold))
                label = short_label(items, name)
                if negate:
                    def not_member(x: Any, member: Callable[[Any], bool] = member) -> bool:
                        return isinstance(x, (str, int, float)) and not member(x)
                    return Op(key, f"not in {label}", not_member)
                words = [i.lower() if fold else i for i in items if isinstance(i, str) and i]
                return Op(key, f"in {label}", member,
                          gate=tuple(words) if len(words) == len(items) else None)
            op = self.cached_op((key, name, fold) if name is not None else None, membership_op)
            assert op is not None
            ops.append(op)
        for key in ("contains", "startswith", "endswith"):
            raw_patterns = getattr(cond, key)
            if raw_patterns is None:
                continue

            def text_test_op(key: str = key, raw: list[str] = raw_patterns) -> Op:
                patterns, name = self.pattern_list(raw)
                return text_op(key, tuple(fold_text(patterns)), short_label(patterns, name))
            name = self.list_name(raw_patterns)
            op = self.cached_op((key, name, fold) if name is not None else None, text_test_op)
            assert op is not None
            ops.append(op)
        if cond.glob is not None:
            def glob_op(raw: list[str] = cond.glob) -> Op:
                patterns, name = self.pattern_list(raw)
                globs = fold_text(patterns)
                regex = _globs_regex(globs)

                def glob_why(x: Any, globs: list[str] = globs) -> str:
                    hit = next((g for g in globs if fnmatch.fnmatchcase(x, g)), "?")
                    return f"matches {hit!r}"
                chunks = [glob_literal(g) for g in globs]

                def glob_test(x: Any, regex: re.Pattern[str] = regex) -> bool:
                    return isinstance(x, str) and regex.match(x) is not None
                return Op("glob", f"matches {short_label(patterns, name)}", glob_test,
                          glob_why, gate=tuple(chunks) if all(chunks) else None)
            name = self.list_name(cond.glob)
            op = self.cached_op(("glob", name, fold) if name is not None else None, glob_op)
            assert op is not None
            ops.append(op)
        if cond.regex is not None:
            # The gate literals are matched on lower-cased text only when the values are
            # lower-cased (ignore_case or a 'lower' transform).
            lowered = fold or "lower" in (cond.transform or ())

            def regexes_op(raw: list[str] = cond.regex) -> Op | None:
                patterns, name = self.pattern_list(raw)
                compiled = []
                refused = False
                for i, pattern in enumerate(patterns):
                    try:
                        compiled.append(compile_regex(pattern, fold))
                    except RegexProblem as exc:
                        where = (*path, "regex") if name is None else ("lists", name)
                        if name is None and len(raw) > 1:
                            where = (*where, i)
                        used_by = f" in rule {self.rule_id!r}" if self.rule_id else ""
                        self.error(source if name is None else self._list_source(name), where,
                                   f"regex {pattern[:80]!r} refused{used_by}: {exc}", exc.hint)
                        refused = True
                if refused:
                    return None
                return regex_op(compiled, short_label(patterns, name), lowered) if compiled \
                    else Op("regex", "matches no regex", lambda x: False)
            name = self.list_name(cond.regex)
            op = self.cached_op(("regex", name, fold, lowered) if name is not None else None,
                                regexes_op)
            if op is None:
                ok = False
            else:
                ops.append(op)
        if cond.cidr is not None:
            def networks_op(raw: list[str] = cond.cidr) -> Op | None:
                patterns, name = self.pattern_list(raw)
                networks = []
                refused = False
                for pattern in patterns:
                    try:
                        networks.append(ipaddress.ip_network(pattern.strip(), strict=False))
                    except ValueError:
                        # A bad item of a named list is reported where the list is defined.
                        self.error(source if name is None else self._list_source(name),
                                   (*path, "cidr") if name is None else ("lists", name),
                                   f"{pattern!r} is not an IP address or network",
                                   "e.g. 169.254.169.254, 10.0.0.0/8, fd00:ec2::254")
                        refused = True
                return None if refused else cidr_op(tuple(networks), short_label(patterns, name))
            name = self.list_name(cond.cidr)
            op = self.cached_op(("cidr", name) if name is not None else None, networks_op)
            if op is None:
                ok = False
            else:
                ops.append(op)
        numeric = [(sym, getattr(cond, key)) for key, sym in
                   (("gt", ">"), ("gte", ">="), ("lt", "<"), ("lte", "<="))
                   if getattr(cond, key) is not None]
        if numeric:
            ops.append(numeric_op(numeric))
        count = bounds_test(cond.count) if cond.count is not None else None
        length = bounds_test(cond.length) if cond.length is not None else None
        if not ok:
            return None
        node = FieldNode(parsed, transforms, ops, cond.exists, count, length)
        if cond.count is not None:
            # The smallest count the bounds accept (counts are whole numbers).
            floors = [float(cond.count.equals)] if cond.count.equals is not None else []
            if cond.count.gt is not None:
                floors.append(float(int(cond.count.gt) + 1) if cond.count.gt >= 0 else 0.0)
            if cond.count.gte is not None:
                floors.append(max(0.0, float(cond.count.gte)))
            node.count_floor = max(floors, default=0.0)
        return node

    def _list_source(self, name: str) -> int:
        return self.raw_lists[name][1]


    # -- rules -----------------------------------------------------------------------------
    def phases(self, rule: Rule, kinds: tuple[str, ...] | None, nodes: list[Node],
               title: Sequence[str | FieldPath], source: int, path: Path
               ) -> dict[str, str | None] | None:
        heads = {p.first for node in nodes for p in node.paths()}
        heads |= {p.first for p in title if isinstance(p, FieldPath)}
        out: dict[str, str | None] = {}
        explicit = rule.match.phase
        for kind in kinds or EVENT_KINDS:
            phased = PHASED.get(kind)
            if phased is None:
                out[kind] = None
                continue
            late_fields, late, early = phased
            if explicit is not None:
                if explicit in (late, early):
                    out[kind] = explicit
                continue
            out[kind] = late if heads & late_fields else early
        if explicit is not None and not any(v == explicit for v in out.values()):
            where = "tool_call" if explicit in ("call", "result") else "model_call/retrieval"
            self.error(source, (*path, "match", "phase"), f"phase {explicit!r} applies to "
                       f"{where} events only", "set match.kind accordingly or drop the phase")
            return None
        if explicit is not None:
            out = {k: v for k, v in out.items() if v == explicit}
        return out

    def title(self, rule: Rule, source: int, path: Path, kinds: tuple[str, ...] | None
              ) -> tuple[str | FieldPath, ...] | None:
        if rule.message is None:
            return None
        parts: list[str | FieldPath] = []
        pos = 0
        for found in _PLACEHOLDER.finditer(rule.message):
            parts.append(rule.message[pos:found.start()])
            parsed = self.field_path(found.group(1).strip(), source, (*path, "message"), kinds)
            if parsed is None:
                return None
            parts.append(parsed)
            pos = found.end()
        parts.append(rule.message[pos:])
        return tuple(p for p in parts if p != "")

    def globs(self, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        """Name patterns; a single name of a defined list stands for that list's items."""
        if value is not None and len(value) == 1 and value[0] in self.lists:
            return tuple(str(item) for item in self.lists[value[0]]) or ("\x00",)
        return value

    def matcher(self, globs: tuple[str, ...] | None) -> NameMatcher | None:
        """What matches a name against ``globs``."""
        if not globs:
            return None
        found = self.matchers.get(globs)
        if found is None:
            found = self.matchers[globs] = _globs_regex(globs) if any(
                _GLOB_CHARS.search(g) for g in globs) else _Names(globs)
        return found

    def after(self, items: list[After]) -> tuple[CompiledAfter, ...]:
        out = []
        for item in items:
            globs = self.globs(item.tool)
            out.append(CompiledAfter(
                tool=self.matcher(globs), tool_globs=globs or (),
                flagged=item.untrusted_content_flagged, within=item.within,
                same_turn=item.same_turn))
        return tuple(out)

    def rule(self, rule: Rule, source: int, path: Path, extra_unless: list[tuple[Condition, int,
             Path]]) -> CompiledRule | None:
        kinds = rule.match.kind
        self.rule_id = rule.id
        try:
            when = self.condition(rule.when, source, (*path, "when"), kinds) if rule.when else \
                Const(True)
            unless_nodes: list[Node | None] = []
            if rule.unless is not None:
                unless_nodes.append(self.condition(rule.unless, source, (*path, "unless"), kinds))
            for cond, index, where in extra_unless:
                unless_nodes.append(self.condition(cond, index, where, kinds))
        finally:
            self.rule_id = None
        title = self.title(rule, source, path, kinds)
        if when is None or any(node is None for node in unless_nodes) or \
                (rule.message is not None and title is None):
            return None
        unless_list = [node for node in unless_nodes if node is not None]
        size = sum(self._shape(node)[0] for node in [when, *unless_list])
        if size > MAX_CONDITION_SIZE:
            self.error(source, (*path, "when" if rule.when else "unless"),
                       f"the rule's conditions have {size:,} parts with their macros written out, "
                       f"more than {MAX_CONDITION_SIZE:,}", "a macro that uses another macro "
                       "several times doubles its size at each level; test the fields once")
            return None
        # A value read in several ways (an ambiguous URL's hosts) decides each test on the
        # reading that makes the rule fire; an exception counts against firing.
        when = when.polarize(False)
        unless_list = [node.polarize(True) for node in unless_list]
        unless: Node | None = None
        if unless_list:
            unless = unless_list[0] if len(unless_list) == 1 else AnyNode(unless_list)
        phases = self.phases(rule, kinds, [when, *unless_list], title or (), source, path)
        if phases is None:
            return None
        tests: dict[str, Test] = {}
        always: dict[str, bool] = {}
        specials: dict[str, Node] = {}
        gates: dict[str, Any] = {}
        for kind in phases:
            special = when.specialize(kind)
            exception = unless.specialize(kind) if unless is not None else Const(False)
            if (isinstance(special, Const) and not special.value) or \
                    (isinstance(exception, Const) and exception.value):
                continue  # never fires for this kind
            specials[kind] = special
            tests[kind] = _and_not(special.compile(), None if isinstance(exception, Const)
                                   else exception.compile())
            always[kind] = isinstance(special, Const) and isinstance(exception, Const)
            gate = special.gate()
            if gate is not None:
                gates[kind] = gate
        rate = RateWindow(rule.rate_limit.max, rule.rate_limit.per) if rule.rate_limit else None
        line, _ = self.sources[source].marks.locate(path)
        tools = self.globs(rule.match.tool)
        agents = self.globs(rule.match.agent)
        compiled = CompiledRule(
            id=rule.id, description=rule.description, severity=rule.severity,
            action=rule.action, category=rule.category, tags=tuple(rule.tags),
            source=self.sources[source].name, line=line, kinds=kinds,
            tool_globs=tools, agent_globs=agents, phases=phases, when=when,
            unless=unless, tests=tests, tests_always=always, specials=specials, gates=gates,
            after=self.after(rule.after), rate=rate,
            rate_by=rule.rate_limit.by if rule.rate_limit else (), title=title,
            tool=self.matcher(tools), agent=self.matcher(agents),
            unless_reported=frozenset(rule.unless_reported),
        )
        return compiled

    def run(self) -> CompiledPolicy:
        self.collect()
        # Every rule id any source defines (overrides may target rules not included here).
        defined: dict[str, tuple[int, Path]] = {}
        included: list[tuple[Rule, int, Path]] = []
        for index, source in enumerate(self.sources):
            for position, rule in enumerate(source.document.rules):
                path: Path = ("rules", position)
                if not source.builtin and BUILTIN_ID.match(rule.id):
                    self.error(index, (*path, "id"), f"rule id {rule.id!r} is reserved for "
                               "built-in rules", "choose another id; to change a built-in rule "
                               "use overrides: {" + rule.id + ": {...}}")
                    continue
                if rule.id in defined:
                    first = defined[rule.id]
                    self.error(index, (*path, "id"), f"duplicate rule id {rule.id!r} (first "
                               f"defined at {self.where(*first)})", "rule ids must be unique")
                    continue
                defined[rule.id] = (index, path)
                if source.include_rules:
                    included.append((rule, index, path))
        changes: dict[str, dict[str, Any]] = {}
        extra_unless: dict[str, list[tuple[Condition, int, Path]]] = {}
        for index, source in enumerate(self.sources):
            for rule_id, override in source.document.overrides.items():
                path = ("overrides", rule_id)
                if rule_id not in defined:
                    self.error(index, path, f"overrides an unknown rule {rule_id!r}",
                               rule_id_hint(rule_id, defined) if len(self.issues) < MAX_ISSUES
                               else None, key=True)
                    continue
                values = {k: v for k, v in (("action", override.action),
                                            ("severity", override.severity),
                                            ("enabled", override.enabled)) if v is not None}
                changes.setdefault(rule_id, {}).update(values)
                if override.unless is not None:
                    extra_unless.setdefault(rule_id, []).append(
                        (override.unless, index, (*path, "unless")))
        documents = tuple(source.document for source in self.sources)
        # The same documents with the same lists (environment variables included) compile to
        # the same rules: a policy switched to include the built-in rules, or with rules
        # disabled, takes the rules compiled before (with rate limits of its own) and compiles
        # only the others. instrument() does both to the policy files it loads.
        earlier: dict[str, CompiledRule] = {}
        reuse = self.reuse
        if reuse is not None and len(reuse.documents) == len(documents) and all(
                a is b for a, b in zip(reuse.documents, documents, strict=True)) and \
                reuse.lists == self.lists:
            earlier = {rule.id: rule for rule in reuse.rules}
        else:
            # Every macro is compiled (and so checked) even when no rule uses it.
            for name in self.raw_macros:
                self.macro(name, self.raw_macros[name][1], self.raw_macros[name][2])
        rules: list[CompiledRule] = []
        for rule, index, path in included:
            if rule.id in changes:
                rule = rule.model_copy(update=changes[rule.id])
            if not rule.enabled or rule.id in self.disabled:
                # Still compiled, and so checked, unless it was before.
                if rule.id not in earlier:
                    self.rule(rule, index, path, extra_unless.get(rule.id, []))
                continue
            compiled = earlier.get(rule.id)
            if compiled is not None:
                # The same rule with a rate window of its own (a shallow copy: the rest is
                # never changed once compiled).
                compiled = copy.copy(compiled)
                if compiled.rate is not None:
                    compiled.rate = RateWindow(compiled.rate.limit, compiled.rate.per)
            else:
                compiled = self.rule(rule, index, path, extra_unless.get(rule.id, []))
            if compiled is not None:
                rules.append(compiled)
        if self.issues:
            raise PolicyError(self.issues[:MAX_ISSUES], max(0, len(self.issues) - MAX_ISSUES))
        # Per event kind, in rule order: the rules with a test for it, and their gates.
        tested: dict[str, list[CompiledRule]] = {kind: [] for kind in EVENT_KINDS}
        gating: dict[str, list[tuple[CompiledRule, Any]]] = {kind: [] for kind in EVENT_KINDS}
        for compiled in rules:
            for kind in compiled.tests:
                tested[kind].append(compiled)
            for kind, gate in compiled.gates.items():
                gating[kind].append((compiled, gate))
        by_kind: dict[str, list[tuple[CompiledRule, str | None, Test, Gate | None]]] = {}
        for kind in EVENT_KINDS:
            if tested[kind]:
                gated = _gates(gating[kind])
                by_kind[kind] = [(compiled, compiled.phases[kind], compiled.tests[kind],
                                  gated.get(compiled.id)) for compiled in tested[kind]]
        after_globs = [g for r in rules for a in r.after for g in a.tool_globs]
        return CompiledPolicy(
            rules=rules, lists=dict(self.lists),
            macros={name: (entry[3] or "") for name, entry in self.raw_macros.items()},
            by_kind=by_kind,
            after_tools=_globs_regex(after_globs) if after_globs else None,
            tracks_flags=any(a.flagged for r in rules for a in r.after),
            known_ids=frozenset(defined),
            documents=documents,
        )


def compile_sources(sources: Sequence[Source], *, disabled: Iterable[str] = (),
                    environ: dict[str, str] | None = None,
                    reuse: CompiledPolicy | None = None) -> CompiledPolicy:
    """Compile sources in order into one rule set; raises :class:`PolicyError`.

    ``reuse``: an earlier compile whose rules may be taken when it compiled the same documents
    (the same objects, in the same order) into the same lists.
    """
    return _Compiler(sources, frozenset(disabled), environ, reuse).run()

