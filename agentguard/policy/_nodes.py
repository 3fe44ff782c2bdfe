"""Compiled conditions: a fast test closure and a slow explanation for each condition.

Nodes are built by the compiler. ``compile()`` gives ``test(fields, scratch) -> bool`` (``fields``
is the event's fields as a mapping, ``scratch`` per-event working memory); ``explain()`` walks the
same condition again and says which values matched, or which check failed, for evidence and for
``agentguard policy explain``. ``specialize(kind)`` folds away tests of fields an event kind lacks.

A transform may read one value in several ways (``url_host`` of a URL that HTTP clients read as
different hosts): ``polarize`` settles, for each test, which reading decides. Policies only alert
and block, so the reading that makes the rule fire decides: a test that counts for firing (in
``when:``, under an even number of ``not:``) holds when it holds for any reading, a test that
counts against it (under an odd number of ``not:``, and in ``unless:``) only when it holds for
every reading. ``not: {field: url, transform: url_host, in: allowed}`` then fires for a URL one
client reads as an allowed host and another as a host that is not, as ``not_in`` does.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentguard.policy._models import KIND_FIELDS
from agentguard.policy._ops import (
    EXPANDING_TRANSFORMS,
    MAX_SCAN,
    REGEX_BUDGET,
    Alternatives,
    Op,
    joined_text,
    length_of,
    lowercase,
    show,
)
from agentguard.policy._paths import _JSON_FIRST, MISSING, FieldPath, Scratch, record_count
from agentguard.policy._regex import MAX_REGEX_INPUT

__all__ = [
    "AllNode",
    "AnyNode",
    "Const",
    "Explained",
    "FieldNode",
    "MacroNode",
    "Node",
    "NotNode",
    "Test",
]

Test = Callable[[Any, Scratch], bool]
GateSpec = tuple[tuple[str, ...], Callable[[Any, Scratch], str], tuple[str, ...]]


@dataclass
class Explained:
    """Whether a condition held, and why (matched evidence) or why not (the first failure)."""

    ok: bool
    matched: list[dict[str, Any]] = field(default_factory=list)
    failed: dict[str, Any] | None = None




# -- condition nodes -------------------------------------------------------------------------------

class Node:
    """A compiled condition: a fast test and a slow explanation."""

    def compile(self) -> Test:
        raise NotImplementedError

    def explain(self, fields: Any, scratch: Scratch) -> Explained:
        raise NotImplementedError

    def paths(self) -> list[FieldPath]:
        return []

    def specialize(self, kind: str) -> Node:
        """This condition for events of one kind: tests of fields that kind lacks folded away."""
        return self

    def polarize(self, negative: bool) -> Node:
        """This condition with each test of a value read in several ways deciding on the reading
        that makes the rule fire: any reading when the test counts for firing, every reading when
        it counts against it (``negative``: under an odd number of ``not:``, or in ``unless:``).
        Returns ``self`` when nothing changes."""
        return self

    def gate(self) -> tuple[tuple[str, ...], Callable[[Any, Scratch], str], tuple[str, ...]] | None:
        """A necessary condition on one joined text, if the condition has one (see FieldNode)."""
        return None

    def min_text(self, field: str) -> float:
        """A necessary condition on a top-level field: when it holds a text shorter than this,
        the condition cannot hold (0: no such bound). Lets the Guard skip judging small tool
        results that only bulk-data rules look at."""
        return 0.0


class Const(Node):
    """A condition known in advance (for one event kind)."""

    def __init__(self, value: bool) -> None:
        self.value = value

    def compile(self) -> Test:
        value = self.value
        return lambda fields, scratch: value

    def explain(self, fields: Any, scratch: Scratch) -> Explained:
        return Explained(True) if self.value else \
            Explained(False, failed={"condition": "never holds for this event kind"})




class FieldNode(Node):
    """A field path, optional transforms, and operators that must all hold for one value."""

    def __init__(self, path: FieldPath, transforms: Sequence[tuple[str, Callable[[Any], Any]]],
                 ops: list[Op], exists: bool | None,
                 count: tuple[Callable[[float], bool], str] | None,
                 length: tuple[Callable[[float], bool], str] | None) -> None:
        self.path = path
        self._test: Test | None = None
        self.transform_names = tuple(name for name, _ in transforms)
        self.transforms = tuple(fn for _, fn in transforms)
        # A transform may turn one value into several (Alternatives); such paths take the
        # general code below instead of the one-value shortcuts.
        self.expands = any(name in EXPANDING_TRANSFORMS for name in self.transform_names)
        self.ops = ops
        self.exists = exists
        self.count = count
        self.length = length
        self.count_floor = 0.0
        # A value read in several ways (Alternatives) passes when every reading passes (instead
        # of any): set by polarize() where the test counts against the rule firing.
        self.every_reading = False

    def min_text(self, field: str) -> float:
        # A text never holds more records than characters (see _count), so a count bound on the
        # field itself is a bound on its length.
        path = self.path
        if self.count is None or path.context or path.steps or path.head != field:
            return 0.0
        return self.count_floor

    def paths(self) -> list[FieldPath]:
        return [self.path]

    def specialize(self, kind: str) -> Node:
        if self.path.context or self.path.head in KIND_FIELDS.get(kind, ()):
            return self
        # The field never exists on this kind: only "exists: false" alone can hold.
        return Const(self.exists is False and self.count is None and not self.ops and
                     self.length is None)

    def polarize(self, negative: bool) -> Node:
        if not self.expands or not self.ops or self.every_reading == negative:
            return self
        node = copy.copy(self)
        node.every_reading = negative
        node._test = None
        return node

    def _count(self, values: list[Any], scratch: Scratch) -> int:
        if self.path.multi:
            return len(values)
        if not values:
            return 0
        value = values[0]
        # A text never holds more records than characters: a short one cannot reach the lower
        # bound, and parsing it (JSON) would be wasted work.
        if isinstance(value, str) and len(value) < self.count_floor:
            return len(value)
        return record_count(value, scratch)

    def _transformed(self) -> Callable[[Any], list[Any]]:
        """The values one value becomes through the transforms: none when a transform drops
        it, several when one reads it in several ways (:class:`Alternatives`)."""
        transforms = self.transforms

        def run(x: Any) -> list[Any]:
            values = [x]
            for transform in transforms:
                out: list[Any] = []
                for value in values:
                    value = transform(value)
                    if type(value) is Alternatives:
                        out.extend(value)
                    elif value is not None:
                        out.append(value)
                if not out:
                    return out
                values = out
            return values
        return run

    def _element_test(self) -> Callable[[Any], bool]:
        transforms = self.transforms
        tests = tuple(op.test for op in self.ops)
        if not tests:
            return lambda value: True
        single = tests[0] if len(tests) == 1 else None
        if self.expands:
            run = self._transformed()
            if self.every_reading:
                def check_each(x: Any) -> bool:
                    # A value no transform could read (not a URL) has no reading: it does not
                    # pass, as with any other test of a value a transform drops.
                    readings = run(x)
                    return bool(readings) and all(all(test(value) for test in tests)
                                                  for value in readings)
            else:
                def check_each(x: Any) -> bool:
                    return any(all(test(value) for test in tests) for value in run(x))

            def element_each(value: Any) -> bool:
                if isinstance(value, (list, tuple)):
                    return any(check_each(item) for item in value[:1000])
                return check_each(value)
            return element_each

        def check(x: Any) -> bool:
            for transform in transforms:
                x = transform(x)
                if x is None:
                    return False
            if single is not None:
                return single(x)
            for test in tests:
                if not test(x):
                    return False
            return True

        def element(value: Any) -> bool:
            if isinstance(value, (list, tuple)):
                for item in value[:1000]:
                    if check(item):
                        return True
                return False
            return check(value)
        return element

    def _items(self) -> Callable[[Any, Scratch], list[Any]]:
        """The path's values, list values flattened one level, transformed (values a transform
        drops left out); cached per event for a path and transforms several rules share."""
        get = self.path.get
        transforms = self.transforms
        cached = bool(transforms) or self.path.multi
        key = ("i", self.path.text, *self.transform_names)

        run = self._transformed() if self.expands else None

        def items(fields: Any, scratch: Scratch) -> list[Any]:
            if cached:
                hit = scratch.cache.get(key)
                if hit is not None:
                    return hit  # type: ignore[no-any-return]
            out: list[Any] = []
            for value in get(fields, scratch):
                elements = value[:1000] if type(value) is list or type(value) is tuple else \
                    (value,)
                for x in elements:
                    if run is not None:
                        out.extend(run(x))
                        continue
                    for transform in transforms:
                        x = transform(x)
                        if x is None:
                            break
                    if x is not None:
                        out.append(x)
            if cached:
                scratch.cache[key] = out
            return out
        return items

    def text_key(self) -> tuple[str, ...]:
        """The scratch key of this path's values joined into one text (after transforms)."""
        return ("t", self.path.text, *self.transform_names)

    def _text(self) -> Callable[[Any, Scratch], str]:
        key = self.text_key()
        if self.transform_names in ((), ("lower",)) and self.path.steps == (("deep", None),) \
                and not self.path.context:
            # "head.**": collect the strings straight from a flat mapping (tool arguments
            # usually are one), falling back to the full walk for anything nested or JSON.
            head = self.path.head
            deep = self.path.get
            lower_deep = bool(self.transform_names)

            def deep_text(fields: Any, scratch: Scratch) -> str:
                found = scratch.cache.get(key)
                if found is None:
                    value = fields.get(head)
                    parts: list[str] = []
                    if type(value) is dict:
                        for item in value.values():
                            kind = type(item)
                            if kind is str and item[:1] not in _JSON_FIRST:
                                parts.append(item if len(item) <= MAX_SCAN else
                                             item[:MAX_SCAN])
                            elif kind is int or kind is float or kind is bool or item is None:
                                continue
                            else:
                                parts = [x for x in deep(fields, scratch) if isinstance(x, str)]
                                break
                    elif value is not None:
                        parts = [x for x in deep(fields, scratch) if isinstance(x, str)]
                    if parts:
                        found = joined_text(parts)
                        if lower_deep:
                            found = found.lower()
                    else:
                        found = ""  # no text at all (ids, counts, flags): the common case
                    scratch.cache[key] = found
                return found
            return deep_text
        if self.transform_names in ((), ("lower",)):
            # Join the raw strings and lower-case the whole text once.
            get = self.path.get
            lower = bool(self.transform_names)

            def plain_text(fields: Any, scratch: Scratch) -> str:
                found = scratch.cache.get(key)
                if found is None:
                    parts: list[str] = []
                    for value in get(fields, scratch):
                        if type(value) is list or type(value) is tuple:
                            parts.extend(x for x in value[:1000] if isinstance(x, str))
                        elif isinstance(value, str):
                            parts.append(value)
                    found = joined_text(parts)
                    if lower:
                        found = found.lower()
                    scratch.cache[key] = found
                return found
            return plain_text
        items = self._items()

        def text(fields: Any, scratch: Scratch) -> str:
            found = scratch.cache.get(key)
            if found is None:
                found = scratch.cache[key] = joined_text(items(fields, scratch))
            return found
        return text

    def gate(self) -> tuple[tuple[str, ...], Callable[[Any, Scratch], str], tuple[str, ...]] | None:
        """(text key, text builder, regex sources) when this test can only hold if one of the
        sources matches the joined text."""
        if self.exists is not None or self.count is not None or self.length is not None:
            return None
        if self.transform_names[:1] == ("url_host",):
            # url_host drops every value without "://": the lower-cased values must have one.
            plain = FieldNode(self.path, [("lower", lowercase)], [], None, None, None)
            return plain.text_key(), plain._text(), ("://",)
        if len(self.ops) != 1 or self.ops[0].gate is None:
            return None
        gate = self.ops[0].gate
        if "lower" in self.transform_names:
            gate = tuple(g.lower() for g in gate)
        return self.text_key(), self._text(), gate

    def compile(self) -> Test:
        get = self.path.get
        exists = self.exists
        count = self.count[0] if self.count else None
        length = self.length[0] if self.length else None
        element = self._element_test()
        per_value = bool(self.ops) or length is not None
        node = self

        if exists is None and count is None and length is None and len(self.ops) == 1 and \
                self.path.get_one is not None and not self.transforms and \
                self.path.child is not None:
            # "head.name" without transforms, the most common test: read the two dict levels
            # inline (no list, no cache, no helper call).
            head, name = self.path.child
            single = self.ops[0].test
            slow_get = self.path.get_one

            def test_child(fields: Any, scratch: Scratch) -> bool:
                parent = fields.get(head)
                if type(parent) is dict:
                    value = parent.get(name)
                    if value is None:
                        return False
                else:
                    value = slow_get(fields, scratch)
                    if value is MISSING:
                        return False
                if type(value) is list or type(value) is tuple:
                    return element(value)
                return single(value)
            return test_child

        if count is not None and exists is None and length is None and not self.ops and \
                self.path.get_one is not None and not self.path.multi:
            # "result: count > N" (the bulk-data rules): a text shorter than the smallest
            # accepted count is rejected before any list is built or any JSON is parsed.
            get_count_one = self.path.get_one
            floor = self.count_floor

            def test_count(fields: Any, scratch: Scratch) -> bool:
                value = get_count_one(fields, scratch)
                if value is MISSING:
                    return False
                if type(value) is str and len(value) < floor:
                    return count(len(value))
                return count(node._count([value], scratch))
            return test_count

        if exists is None and count is None and length is None and len(self.ops) == 1 and \
                self.path.get_one is not None and not self.expands:
            # One value (no [*] or **): no list, no cache.
            get_one = self.path.get_one
            single = self.ops[0].test
            transforms = self.transforms

            def test_single(fields: Any, scratch: Scratch) -> bool:
                value = get_one(fields, scratch)
                if value is MISSING:
                    return False
                if type(value) is list or type(value) is tuple:
                    return element(value)
                for transform in transforms:
                    value = transform(value)
                    if value is None:
                        return False
                return single(value)
            return test_single

        if exists is None and count is None and length is None and len(self.ops) == 1 and \
                not self.every_reading:
            # (The values' readings flattened into one list: a test on every reading of one
            # value takes the general path below, which keeps each value's readings together.)
            op = self.ops[0]
            items = self._items()
            single = op.test
            key = self.text_key()
            if op.name == "contains" and op.text_test is not None:
                text = self._text()
                whole = op.text_test
                search = op.text_search
                if search is not None:
                    def search_text(fields: Any, scratch: Scratch) -> bool:
                        found = scratch.cache.get(key)
                        return search(found if found is not None else text(fields, scratch)) \
                            is not None
                    return search_text

                def test_text(fields: Any, scratch: Scratch) -> bool:
                    found = scratch.cache.get(key)
                    return whole(found if found is not None else text(fields, scratch))
                return test_text
            if op.name == "regex":
                text = self._text()
                prefilter = op.text_search

                def test_regex(fields: Any, scratch: Scratch) -> bool:
                    if prefilter is not None:
                        joined = scratch.cache.get(key)
                        if joined is None:
                            joined = text(fields, scratch)
                        if len(joined) <= MAX_REGEX_INPUT and prefilter(joined) is None:
                            return False
                    budget = REGEX_BUDGET
                    for x in items(fields, scratch):
                        if isinstance(x, str):
                            if budget <= 0:
                                break
                            budget -= min(len(x), MAX_REGEX_INPUT)
                            if single(x):
                                return True
                    return False
                return test_regex

            def test_items(fields: Any, scratch: Scratch) -> bool:
                for x in items(fields, scratch):
                    if single(x):
                        return True
                return False
            return test_items

        if exists is None and count is None and length is None:
            def test_values(fields: Any, scratch: Scratch) -> bool:
                for value in get(fields, scratch):
                    if element(value):
                        return True
                return False
            return test_values

        def test(fields: Any, scratch: Scratch) -> bool:
            values = get(fields, scratch)
            if exists is not None and bool(values) != exists:
                return False
            if count is not None and (not values or not count(node._count(values, scratch))):
                return False
            if not per_value:
                return True
            for value in values:
                if length is not None:
                    size = length_of(value)
                    if size is None or not length(size):
                        continue
                if element(value):
                    return True
            return False
        return test

    def _describe_ops(self) -> str:
        parts = [op.expect for op in self.ops]
        if self.exists is not None:
            parts.insert(0, "exists" if self.exists else "is absent")
        if self.count:
            parts.append(f"count {self.count[1]}")
        if self.length:
            parts.append(f"length {self.length[1]}")
        return " and ".join(parts)

    def explain(self, fields: Any, scratch: Scratch) -> Explained:
        values = self.path.get(fields, scratch)
        base: dict[str, Any] = {"field": self.path.text, "condition": self._describe_ops()}
        if not self.test_cached(fields, scratch):
            failed = dict(base)
            if not values:
                failed["value"] = "<missing>"
            elif self.count:
                failed["count"] = self._count(values, scratch)
            else:
                failed["value"] = show(values[0]) if len(values) == 1 else \
                    [show(v, 80) for v in values[:5]]
            return Explained(False, failed=failed)
        matched = dict(base)
        if self.count:
            matched["count"] = self._count(values, scratch)
        witness = self._witness(values)
        if witness is not None:
            value, transformed, reasons = witness
            matched["value"] = show(value)
            if transformed is not value and transformed != value:
                matched["transformed"] = show(transformed)
            why = "; ".join(reasons)
            if why and why != matched["condition"]:
                matched["matched"] = why
        return Explained(True, matched=[matched])

    def test_cached(self, fields: Any, scratch: Scratch) -> bool:
        if self._test is None:
            self._test = self.compile()
        return self._test(fields, scratch)

    def _witness(self, values: list[Any]) -> tuple[Any, Any, list[str]] | None:
        """The first value (or list item) that satisfies every operator, and why."""
        if not self.ops and not self.length:
            return None if self.count else (values[0], values[0], []) if values else None
        run = self._transformed()
        for value in values:
            if self.length is not None:
                size = length_of(value)
                if size is None or not self.length[0](size):
                    continue
            items = value if isinstance(value, (list, tuple)) else [value]
            for item in items[:1000]:
                for x in run(item):
                    if all(op.test(x) for op in self.ops):
                        reasons = [op.why(x) if op.why else op.expect for op in self.ops]
                        return item, x, reasons
        return None


def _polarized(children: list[Node], negative: bool) -> list[Node] | None:
    """The children polarized, or ``None`` when none of them changes."""
    out = [child.polarize(negative) for child in children]
    return None if all(a is b for a, b in zip(out, children, strict=True)) else out


class AllNode(Node):
    """``all:`` every child holds."""

    def __init__(self, children: list[Node]) -> None:
        self.children = children

    def polarize(self, negative: bool) -> Node:
        children = _polarized(self.children, negative)
        return self if children is None else AllNode(children)

    def min_text(self, field: str) -> float:
        return max((child.min_text(field) for child in self.children), default=0.0)

    def gate(self) -> tuple[tuple[str, ...], Callable[[Any, Scratch], str], tuple[str, ...]] | None:
        # Every child must hold, so any child's necessary condition is one for the whole.
        for child in self.children:
            found = child.gate()
            if found is not None:
                return found
        return None

    def specialize(self, kind: str) -> Node:
        kept: list[Node] = []
        for child in self.children:
            special = child.specialize(kind)
            if isinstance(special, Const):
                if not special.value:
                    return special
                continue
            kept.append(special)
        if not kept:
            return Const(True)
        return kept[0] if len(kept) == 1 else AllNode(kept)

    def paths(self) -> list[FieldPath]:
        return [p for child in self.children for p in child.paths()]

    def compile(self) -> Test:
        tests = [child.compile() for child in self.children]
        if len(tests) == 1:
            return tests[0]
        if len(tests) == 2:
            first, second = tests
            return lambda fields, scratch: first(fields, scratch) and second(fields, scratch)

        def test(fields: Any, scratch: Scratch) -> bool:
            for each in tests:
                if not each(fields, scratch):
                    return False
            return True
        return test

    def explain(self, fields: Any, scratch: Scratch) -> Explained:
        matched: list[dict[str, Any]] = []
        for child in self.children:
            result = child.explain(fields, scratch)
            if not result.ok:
                return Explained(False, failed=result.failed)
            matched.extend(result.matched)
        return Explained(True, matched=matched)


class AnyNode(Node):
    """``any:`` at least one child holds."""

    def __init__(self, children: list[Node]) -> None:
        self.children = children

    def polarize(self, negative: bool) -> Node:
        children = _polarized(self.children, negative)
        return self if children is None else AnyNode(children)

    def specialize(self, kind: str) -> Node:
        kept: list[Node] = []
        for child in self.children:
            special = child.specialize(kind)
            if isinstance(special, Const):
                if special.value:
                    return special
                continue
            kept.append(special)
        if not kept:
            return Const(False)
        return kept[0] if len(kept) == 1 else AnyNode(kept)

    def min_text(self, field: str) -> float:
        return min((child.min_text(field) for child in self.children), default=0.0)

    def gate(self) -> tuple[tuple[str, ...], Callable[[Any, Scratch], str], tuple[str, ...]] | None:
        gates = [child.gate() for child in self.children]
        if not gates or any(g is None for g in gates):
            return None
        keys = {g[0] for g in gates if g is not None}
        if len(keys) != 1:
            return None
        first = gates[0]
        assert first is not None
        return first[0], first[1], tuple(p for g in gates if g is not None for p in g[2])

    def paths(self) -> list[FieldPath]:
        return [p for child in self.children for p in child.paths()]

    def compile(self) -> Test:
        tests = [child.compile() for child in self.children]
        if len(tests) == 1:
            return tests[0]
        if len(tests) == 2:
            first, second = tests
            return lambda fields, scratch: first(fields, scratch) or second(fields, scratch)

        def test(fields: Any, scratch: Scratch) -> bool:
            for each in tests:
                if each(fields, scratch):
                    return True
            return False
        return test

    def explain(self, fields: Any, scratch: Scratch) -> Explained:
        failures = []
        for child in self.children:
            result = child.explain(fields, scratch)
            if result.ok:
                return result
            if result.failed is not None:
                failures.append(result.failed)
        return Explained(False, failed={"none of": failures[:8]})


class NotNode(Node):
    """``not:`` the child does not hold."""

    def __init__(self, child: Node) -> None:
        self.child = child

    def polarize(self, negative: bool) -> Node:
        child = self.child.polarize(not negative)
        return self if child is self.child else NotNode(child)

    def specialize(self, kind: str) -> Node:
        special = self.child.specialize(kind)
        if isinstance(special, Const):
            return Const(not special.value)
        return NotNode(special)

    def paths(self) -> list[FieldPath]:
        return self.child.paths()

    def compile(self) -> Test:
        inner = self.child.compile()
        return lambda fields, scratch: not inner(fields, scratch)

    def explain(self, fields: Any, scratch: Scratch) -> Explained:
        result = self.child.explain(fields, scratch)
        if result.ok:
            return Explained(False, failed={"not": result.matched[:8]})
        return Explained(True, matched=[{"not": result.failed}] if result.failed else [])


class MacroNode(Node):
    """``macro:`` a named condition (explanations name the macro)."""

    def __init__(self, name: str, inner: Node) -> None:
        self.name = name
        self.inner = inner

    def polarize(self, negative: bool) -> Node:
        # The macro's condition is shared by the rules using it, some perhaps under a not:
        # and some not: the polarized one is a copy.
        inner = self.inner.polarize(negative)
        return self if inner is self.inner else MacroNode(self.name, inner)

    def specialize(self, kind: str) -> Node:
        special = self.inner.specialize(kind)
        return special if isinstance(special, Const) else MacroNode(self.name, special)

    def gate(self) -> tuple[tuple[str, ...], Callable[[Any, Scratch], str], tuple[str, ...]] | None:
        return self.inner.gate()

    def min_text(self, field: str) -> float:
        return self.inner.min_text(field)

    def paths(self) -> list[FieldPath]:
        return self.inner.paths()

    def compile(self) -> Test:
        return self.inner.compile()

    def explain(self, fields: Any, scratch: Scratch) -> Explained:
        result = self.inner.explain(fields, scratch)
        if result.ok:
            return Explained(True, matched=[{"macro": self.name, "because": result.matched}]
                             if result.matched else [{"macro": self.name}])
        return Explained(False, failed={"macro": self.name, "because": result.failed})

