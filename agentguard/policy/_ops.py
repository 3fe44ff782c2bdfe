"""Operators of field tests and transforms of values: the per-value building blocks of rules.

Each operator is an :class:`Op`: a test on one value, an explanation of why a value matched, and,
for text operators, a test on all of a path's values joined into one text (exact for
``contains``, a prefilter for ``regex``) plus the literal strings a match must contain, which
let several rules share one linear search (see ``Gate`` in the compiler).
"""

from __future__ import annotations

import functools
import ipaddress
import math
import operator
import posixpath
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from agentguard._urls import email_domains, reached_hosts
from agentguard.policy._models import Bounds
from agentguard.policy._paths import MISSING, as_number
from agentguard.policy._regex import MAX_REGEX_INPUT, required_literals

__all__ = [
    "EXPANDING_TRANSFORMS",
    "MAX_SCAN",
    "REGEX_BUDGET",
    "SEPARATOR",
    "TRANSFORM_FUNCTIONS",
    "Alternatives",
    "Op",
    "big_int_text",
    "bounds_test",
    "cidr_op",
    "glob_literal",
    "joined_text",
    "length_of",
    "literal_set",
    "lowercase",
    "membership",
    "number_text",
    "numeric_op",
    "regex_op",
    "short_label",
    "show",
    "text_op",
    "trie_pattern",
]

# Text values longer than this are scanned only this far (1 MiB).
MAX_SCAN = 1 << 20
# Integers up to this size have decimal text (Python refuses int → str past 4300 digits).
_TEXT_INT_BITS = 14_000


def big_int_text(value: int) -> str:
    """An integer of any size in scientific notation (``≈1.000e+5000``), without building its
    decimal text."""
    magnitude = math.log10(abs(value)) if value else 0.0
    exponent = math.floor(magnitude)
    mantissa = round(10 ** (magnitude - exponent), 3)
    if mantissa >= 10:
        mantissa, exponent = 1.0, exponent + 1
    return f"≈{'-' if value < 0 else ''}{mantissa:.3f}e+{exponent}"


def show(value: Any, limit: int = 200) -> Any:
    """A value as evidence: numbers and booleans as they are, text redacted and cut short."""
    from agentguard._content import to_json
    from agentguard.redaction import redact

    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, int):
        # Too long to show (past 4300 digits Python cannot even write it out, and a tool may be
        # called with such an integer): scientific notation instead.
        return value if value.bit_length() <= 3 * limit else big_int_text(value)
    text = value if isinstance(value, str) else to_json(value, 4 * limit)
    text = redact(text[: 4 * limit])
    return text if len(text) <= limit else text[: limit - 1] + "…"



# -- operators on one value -----------------------------------------------------------------------

@dataclass
class Op:
    """One operator of a field test, compiled."""

    name: str
    expect: str
    test: Callable[[Any], bool]
    why: Callable[[Any], str] | None = None
    # A test on the path's string values joined by newlines: exact for ``contains`` (no needle
    # holds a newline), a prefilter for ``regex`` (a value that matches makes the joined text
    # match; the reverse is checked value by value).
    text_test: Callable[[str], bool] | None = None
    # The same as one compiled search, when it is one (saves a call per rule and event).
    text_search: Callable[[str], Any] | None = None
    # Strings one of which the joined text holds whenever this operator matches (for gates).
    gate: tuple[str, ...] | None = None


SEPARATOR = "\n"
# Work bounds for regex: all values of one path together, and the joined text a prefilter scans.
REGEX_BUDGET = 4 * MAX_REGEX_INPUT


def joined_text(items: list[Any]) -> str:
    """The string items joined by newlines (each cut to the scan limit)."""
    if len(items) == 1 and type(items[0]) is str and len(items[0]) <= MAX_SCAN:
        return items[0]
    return SEPARATOR.join([item if len(item) <= MAX_SCAN else item[:MAX_SCAN]
                            for item in items if isinstance(item, str)])


def short_label(items: Sequence[Any], name: str | None) -> str:
    if name is not None:
        return f"list {name}"
    shown = ", ".join(repr(i) for i in items[:5])
    return f"[{shown}{', ...' if len(items) > 5 else ''}]"


def literal_set(items: Iterable[Any], fold: bool) -> frozenset[Any]:
    out: set[Any] = set()
    for item in items:
        if isinstance(item, str):
            out.add(item.lower() if fold else item)
        elif isinstance(item, bool):
            out.add(item)
        elif isinstance(item, int):
            out.add(item)
            # A model may send 443 as "443": numbers also match their plain text form (up to
            # Python's limit on turning an int into text).
            if item.bit_length() <= _TEXT_INT_BITS:
                out.add(str(item))
        elif isinstance(item, float):
            out.add(item)
            out.add(str(int(item)) if item.is_integer() else str(item))
    return frozenset(out)


def membership(values: frozenset[Any]) -> Callable[[Any], bool]:
    # True == 1 in Python sets: booleans are kept apart so `equals: true` never matches 1.
    flags = frozenset(v for v in values if isinstance(v, bool))
    others = frozenset(v for v in values if not isinstance(v, bool))

    def test(x: Any) -> bool:
        if isinstance(x, bool):
            return x in flags
        if isinstance(x, (str, int, float)):
            return x in others
        return False
    return test


def bounds_test(bounds: Bounds) -> tuple[Callable[[float], bool], str]:
    checks: list[tuple[str, float, Callable[[float, float], bool]]] = []
    if bounds.equals is not None:
        checks.append(("=", bounds.equals, lambda a, b: a == b))
    if bounds.gt is not None:
        checks.append((">", bounds.gt, lambda a, b: a > b))
    if bounds.gte is not None:
        checks.append((">=", bounds.gte, lambda a, b: a >= b))
    if bounds.lt is not None:
        checks.append(("<", bounds.lt, lambda a, b: a < b))
    if bounds.lte is not None:
        checks.append(("<=", bounds.lte, lambda a, b: a <= b))
    text = " and ".join(f"{sym} {number_text(limit)}" for sym, limit, _ in checks)
    if len(checks) == 1:
        # One bound (the usual "count: {gt: N}"): no loop on every judged event.
        _, only, check = checks[0]

        def test_one(n: float) -> bool:
            return check(n, only)
        return test_one, text

    def test(n: float) -> bool:
        return all(fn(n, limit) for _, limit, fn in checks)
    return test, text


def number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def length_of(value: Any) -> int | None:
    if isinstance(value, (str, list, tuple, dict, bytes)):
        return len(value)
    return None


# -- transforms ----------------------------------------------------------------------------------

def _basename(x: Any) -> Any:
    if not isinstance(x, str):
        return x
    trimmed = x.rstrip("/\\")
    if not trimmed:
        return x
    return trimmed.rpartition("/")[2].rpartition("\\")[2]


def _dirname(x: Any) -> Any:
    if not isinstance(x, str):
        return x
    head = re.split(r"[/\\][^/\\]*$", x.rstrip("/\\"), maxsplit=1)[0]
    return head if head != x.rstrip("/\\") else ""


def lowercase(x: Any) -> Any:
    return x.lower() if isinstance(x, str) else x


def _normpath(x: Any) -> Any:
    if not isinstance(x, str) or not x:
        return x
    normal = posixpath.normpath(x)
    return normal[1:] if normal.startswith("//") else normal


class Alternatives(tuple[Any, ...]):
    """What a transform returns when a value stands for several (a URL that HTTP clients read
    as different hosts): a test holds on the value when it holds on any of them, as if the
    field held each."""

    __slots__ = ()


def _url_host(x: Any) -> Any:
    if not isinstance(x, str) or "://" not in x[:64]:
        return None
    hosts = reached_hosts(x[:4096].strip())
    if not hosts:
        return None
    return hosts[0] if len(hosts) == 1 else Alternatives(hosts)


def _email_domain(x: Any) -> Any:
    if not isinstance(x, str) or "@" not in x[:4096]:
        return None
    domains = email_domains(x)
    if not domains:
        return None
    return domains[0] if len(domains) == 1 else Alternatives(domains)


# Transforms that can return Alternatives.
EXPANDING_TRANSFORMS = frozenset({"email_domain", "url_host"})

TRANSFORM_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "basename": _basename, "dirname": _dirname, "email_domain": _email_domain, "lower": lowercase,
    "normpath": _normpath, "url_host": _url_host,
}


_IP_CACHE: dict[str, Any] = {}
_IP_CACHE_LIMIT = 4096


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address (IPv4-mapped IPv6 as IPv4), or None; parses are cached (agents talk to
    the same few addresses, and ``ipaddress`` is slow)."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    hit = _IP_CACHE.get(text, MISSING)
    if hit is not MISSING:
        return hit  # type: ignore[no-any-return]
    if len(_IP_CACHE) >= _IP_CACHE_LIMIT:
        _IP_CACHE.clear()
    address = _IP_CACHE[text] = _parse_ip(text)
    return address


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    candidate = text.strip().strip("[]").split("%", 1)[0]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address



# Constructs for which a match in one value need not give a match in values joined by newlines.
_NO_PREFILTER = re.compile(r"\\A|\\Z|\(\?<|\(\?!")


def _prefilter(compiled: list[re.Pattern[str]]) -> Callable[[str], Any] | None:
    """One search for any of the patterns, with MULTILINE so ^ and $ also match at the joins;
    None when a pattern has a construct that could miss a match across a join."""
    if any(_NO_PREFILTER.search(regex.pattern) for regex in compiled):
        return None
    ignore_case = compiled[0].flags & _IGNORECASE
    if any((regex.flags & _IGNORECASE) != ignore_case for regex in compiled):
        return None
    return _joined_search(tuple(regex.pattern for regex in compiled), _MULTILINE | ignore_case)


# The flags as plain ints: '&' of an int with a RegexFlag runs Python code of the enum module.
_IGNORECASE = int(re.IGNORECASE)
_MULTILINE = int(re.MULTILINE)


# Global inline flags, '(?i)': Python 3.11 refuses them anywhere but at the very start.
_GLOBAL_FLAGS = re.compile(r"\(\?[aiLmsux]+\)") if sys.version_info >= (3, 11) else None


@functools.lru_cache(maxsize=1024)
def _joined_search(patterns: tuple[str, ...], flags: int) -> Callable[[str], Any] | None:
    """The search of the patterns joined as alternatives (made once for each set of patterns:
    every policy built in the process has the built-in ones), or None when they cannot be."""
    if _GLOBAL_FLAGS is not None and any(_GLOBAL_FLAGS.match(p) for p in patterns):
        return None  # what re.compile below would refuse, known without parsing the patterns
    try:
        return re.compile("|".join(f"(?:{pattern})" for pattern in patterns), flags).search
    except re.error:
        # Inline global flags such as (?i) cannot be combined; keep the value-by-value test.
        return None

_GLOB_SPECIAL = re.compile(r"[*?\[]")


def glob_literal(glob: str) -> str:
    """The longest run of plain characters in a shell pattern (every match contains it)."""
    chunks = _GLOB_SPECIAL.split(glob)
    # A '[...]' class leaves its contents in the next chunk; drop up to the closing bracket.
    cleaned = [chunk.split("]", 1)[1] if i and "[" in glob and "]" in chunk else chunk
               for i, chunk in enumerate(chunks)]
    return max(cleaned, key=len) if cleaned else ""


def trie_pattern(words: Iterable[str]) -> str:
    """A regex alternation of literal strings factored as a trie (no quantifiers, so linear,
    and much faster in ``re`` than a flat alternation of many words)."""
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        if "" in node:
            return ""  # a shorter word ends here: any longer one contains it
        branches = [re.escape(char) + build(child) for char, child in sorted(node.items())]
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    return build(root)


def text_op(key: str, needles: tuple[str, ...], label: str) -> Op:
    """``contains``, ``startswith`` or ``endswith`` with any of ``needles``."""
    if key == "contains":
        joinable = not any(SEPARATOR in needle for needle in needles)
        if len(needles) > 3:
            # One alternation of escaped literals: no quantifiers, so linear, and the scan
            # runs in C instead of one Python-level ``in`` per needle.
            search = re.compile("|".join(re.escape(n) for n in
                                         sorted(needles, key=len, reverse=True))).search

            def contains(x: Any) -> bool:
                if not isinstance(x, str):
                    return False
                return search(x if len(x) <= MAX_SCAN else x[:MAX_SCAN]) is not None

            def text_test(text: str) -> bool:
                return search(text) is not None
        else:
            def contains(x: Any) -> bool:
                if not isinstance(x, str):
                    return False
                if len(x) > MAX_SCAN:
                    x = x[:MAX_SCAN]
                for needle in needles:
                    if needle in x:
                        return True
                return False

            def text_test(text: str) -> bool:
                for needle in needles:
                    if needle in text:
                        return True
                return False

        def why(x: Any) -> str:
            hit = next((n for n in needles if n in x[:MAX_SCAN]), "?")
            return f"contains {hit!r}"
        return Op(key, f"contains {label}", contains, why, text_test if joinable else None,
                   search if joinable and len(needles) > 3 else None,
                   needles if joinable else None)
    if key == "startswith":
        return Op(key, f"starts with {label}",
                   lambda x: isinstance(x, str) and x.startswith(needles),
                   lambda x: f"starts with {next(n for n in needles if x.startswith(n))!r}")
    return Op(key, f"ends with {label}",
               lambda x: isinstance(x, str) and x.endswith(needles),
               lambda x: f"ends with {next(n for n in needles if x.endswith(n))!r}")

def regex_op(compiled: list[re.Pattern[str]], label: str, fold_text: bool) -> Op:
    """``regex``: a search for any of the (checked) patterns in a bounded prefix."""
    searches = tuple(r.search for r in compiled)
    prefilter = _prefilter(compiled)

    def text_test(text: str) -> bool:
        return prefilter is not None and prefilter(text) is not None

    def test(x: Any) -> bool:
        if not isinstance(x, str):
            return False
        x = x[:MAX_REGEX_INPUT]
        for search in searches:
            if search(x) is not None:
                return True
        return False

    def why(x: Any) -> str:
        for regex in compiled:
            found = regex.search(x[:MAX_REGEX_INPUT])
            if found is not None:
                return f"regex {regex.pattern!r} matched {show(found.group(0), 80)!r}"
        return "regex matched"
    literals: list[str] | None = []
    for regex in compiled:
        required = required_literals(regex.pattern)
        if required is None or literals is None or \
                (regex.flags & _IGNORECASE and not fold_text):
            literals = None
            break
        literals.extend(required)
    return Op("regex", f"matches regex {label}", test, why,
               text_test if prefilter is not None else None, prefilter,
               tuple(literals) if literals else None)

def cidr_op(networks: tuple[Any, ...], label: str) -> Op:
    """``cidr``: an IP address value inside any of the networks."""
    def test(x: Any) -> bool:
        address = _ip(x)
        if address is None:
            return False
        for network in networks:
            if address.version == network.version and address in network:
                return True
        return False

    def why(x: Any) -> str:
        address = _ip(x)
        hit = next((n for n in networks if address is not None and
                    address.version == n.version and address in n), None)
        return f"in network {hit}"
    return Op("cidr", f"in network {label}", test, why)

def numeric_op(bounds: list[tuple[str, float]]) -> Op:
    """``gt``/``gte``/``lt``/``lte``: numbers, and short strings that are numbers."""
    checks: dict[str, Callable[[float, float], bool]] = {
        ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
    pairs = tuple((checks[sym], limit) for sym, limit in bounds)
    text = " and ".join(f"{sym} {number_text(limit)}" for sym, limit in bounds)
    if len(bounds) == 1:
        check, limit = pairs[0]

        def test_one(x: Any) -> bool:
            kind = type(x)
            if kind is int or kind is float:
                return check(x, limit)
            number = as_number(x)
            return number is not None and check(number, limit)
        return Op("number", text, test_one)

    def test(x: Any) -> bool:
        number = as_number(x)
        if number is None:
            return False
        for check, limit in pairs:
            if not check(number, limit):
                return False
        return True
    return Op("number", text, test)
