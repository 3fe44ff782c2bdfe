"""Regular expressions in policies: catastrophic shapes are refused, the rest run bounded."""

from __future__ import annotations

import time

import pytest

from agentguard.events import EventContext, ToolCall
from agentguard.policy import Policy, PolicyError
from agentguard.policy._regex import MAX_REGEX_INPUT, RegexProblem, check_regex, required_literals

SAFE = [r"\d+\.\d+", r"[^/]*/[^/]*x", r"(?:169\.254|metadata)", r"curl[^|]{0,200}\|\s*sh",
        r"(?:\d{1,3}\.){3}\d{1,3}", r"\w+@\w+\.com", r"^https?://[^/]*\.example\.com/",
        r"(?:foo|bar)+", r"\w+\s+\w+", r"(?i)select\s+\*\s+from", r"AKIA[0-9A-Z]{16}",
        r".*password.*", r"\bbash\s+-i\b", r"[a-z]+[0-9]+[a-z]+"]
CATASTROPHIC = {
    r"(a+)+b": "nested quantifiers",
    r"(\w+\s?)+$": "nested quantifiers",
    r"(a|ab)*c": "can match nothing",
    r"(?:x|xy)+z": "can match nothing",
    r"a.*b.*c": "two unbounded quantifiers",
    r"\d+\w+": "two unbounded quantifiers",
    r"(?:a.*){2}": "two unbounded quantifiers",
    r"\w+\s*\w+": "two unbounded quantifiers",
    r"(a)\1": "back-references",
    r"(?=.*x)y": "look-ahead",
    r"a{1,2000}": "counted repetition",
    r"[": "invalid regular expression",
}


@pytest.mark.parametrize("pattern", SAFE)
def test_linear_or_separated_patterns_are_accepted(pattern: str) -> None:
    """Common patterns whose quantifiers cannot fight over the same text are accepted."""
    check_regex(pattern)


@pytest.mark.parametrize(("pattern", "problem"), CATASTROPHIC.items())
def test_catastrophic_patterns_are_refused_with_a_reason(pattern: str, problem: str) -> None:
    """Patterns that backtrack exponentially or polynomially are refused, saying why and how."""
    with pytest.raises(RegexProblem) as info:
        check_regex(pattern)
    assert problem in str(info.value)
    assert info.value.hint


def test_refused_regex_in_a_policy_names_the_rule_and_line() -> None:
    """A refused pattern fails the policy load with its location."""
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml("rules:\n  - id: R\n    description: d\n"
                         "    when: {field: arguments.q, regex: 'a.*b.*c'}\n", name="p.yaml")
    assert (info.value.first.line, info.value.first.field) == (4, "rules[0].when.regex")


def test_a_leading_any_is_dropped_for_search() -> None:
    """'.*x' is searched as 'x' (same answer, linear instead of quadratic)."""
    assert check_regex(".*secret") == "secret"
    assert check_regex("secret.*") == "secret"
    assert check_regex(r"(?s).*x") == r"(?s).*x"


def test_regexes_run_on_a_bounded_prefix_of_long_values() -> None:
    """A value longer than the regex input bound is searched only in its first part, so an
    adversarial value costs bounded time; contains still sees the whole value."""
    policy = Policy.from_yaml(r"""
rules:
  - {id: RX, description: d, match: {kind: tool_call}, when: {field: arguments.v, regex: 'needle'}}
  - {id: IN, description: d, match: {kind: tool_call}, when: {field: arguments.v, contains: needle}}
""")
    late = "x" * (MAX_REGEX_INPUT + 10) + "needle"
    event = ToolCall(context=EventContext(), tool="t", arguments={"v": late})
    assert [d.rule_id for d in policy.evaluate(event) or []] == ["IN"]


def test_worst_case_accepted_pattern_on_adversarial_input_is_fast() -> None:
    """An accepted pattern with one unbounded quantifier, on text built to make it backtrack,
    finishes quickly thanks to the input bound."""
    policy = Policy.from_yaml(r"""
rules:
  - {id: RX, description: d, match: {kind: tool_call}, when: {field: 'arguments.v[*]', regex: '[a-z]+x'}}
""")
    values = ["a" * 100_000] * 50
    event = ToolCall(context=EventContext(), tool="t", arguments={"v": values})
    start = time.perf_counter()
    assert policy.evaluate(event) is None
    assert time.perf_counter() - start < 1.0


def test_required_literals_are_found_for_gating() -> None:
    """The literal strings every match must contain are extracted (used to skip regexes)."""
    assert required_literals(r"(?:curl|wget)[^|]{0,9}\|\s*sh") == ("curl", "wget")
    assert required_literals(r"/proc/(?:self|\d+)/environ") == ("/environ",)
    assert required_literals(r"(?i)\bDROP\s+TABLE\b") == ("table",)
    assert required_literals(r"\d+") is None
