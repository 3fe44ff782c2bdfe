"""Regular expressions in policies: catastrophic shapes are refused, the rest run bounded."""

from __future__ import annotations

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


def test_worst_case_accepted_pattern_reads_only_the_bounded_head_of_each_value() -> None:
    """An accepted pattern with one unbounded quantifier, on text built to make it backtrack,
    is matched against the first MAX_REGEX_INPUT characters of each value only (so its work is
    bounded): an ``x`` just past the bound is not found, one just inside it is."""
    policy = Policy.from_yaml(r"""
rules:
  - {id: RX, description: d, match: {kind: tool_call}, when: {field: 'arguments.v[*]', regex: '[a-z]+x'}}
""")
    past = ["a" * MAX_REGEX_INPUT + "x" + "a" * 100_000] * 50
    assert policy.evaluate(ToolCall(context=EventContext(), tool="t",
                                    arguments={"v": past})) is None
    inside = ["a" * (MAX_REGEX_INPUT - 1) + "x"]
    decision = policy.evaluate(ToolCall(context=EventContext(), tool="t",
                                        arguments={"v": inside}))
    assert [d.rule_id for d in decision or []] == ["RX"]


def test_required_literals_are_found_for_gating() -> None:
    """The literal strings every match must contain are extracted (used to skip regexes)."""
    assert required_literals(r"(?:curl|wget)[^|]{0,9}\|\s*sh") == ("curl", "wget")
    assert required_literals(r"/proc/(?:self|\d+)/environ") == ("/environ",)
    assert required_literals(r"(?i)\bDROP\s+TABLE\b") == ("table",)
    assert required_literals(r"\d+") is None


@pytest.mark.parametrize(("patterns", "values", "fires"), [
    (["(?i)secret"], ["a", "the SECRET"], True),
    (["(?i)secret"], ["a", "b"], False),
    (["(?i)secret", "token"], ["a", "TOKEN"], False),
    (["(?i)secret", "token"], ["a", "a token"], True),
    (["(?s)a.b"], ["x", "a\nb"], True),
    (["^b", "c$"], ["a", "b"], True),
    (["^b", "c$"], ["ab", "cd"], False),
])
def test_regexes_on_several_values_decide_value_by_value(patterns: list[str],
                                                         values: list[str], fires: bool) -> None:
    """A regex list on a path of several values fires when one value matches one pattern, as
    the pattern reads it: patterns with global flags ('(?i)', which cannot be joined into one
    search of all the values) as well as anchored ones (which can)."""
    policy = Policy.from_dict({"rules": [{
        "id": "RX", "description": "d", "match": {"kind": "tool_call"},
        "when": {"field": "arguments.v[*]", "regex": patterns}}]})
    event = ToolCall(context=EventContext(), tool="t", arguments={"v": values})
    assert bool(policy.evaluate(event)) is fires


@pytest.mark.parametrize("pattern", [*SAFE, r"\w+\s+table\b", r"(?i)\bDROP\s+TABLE\b"])
def test_the_literals_a_compiled_regex_is_gated_on_are_those_of_its_pattern(pattern: str) -> None:
    """Compiling a regex also gives the strings every match contains, which rules share as a
    gate, without parsing the pattern again; they are the strings a fresh parse of the compiled
    pattern (a look-behind put in front included) gives."""
    from agentguard.policy import _regex

    _regex.compile_regex.cache_clear()
    _regex._literals.clear()
    compiled = _regex.compile_regex(pattern)
    remembered = required_literals(compiled.pattern)
    _regex._literals.clear()
    assert remembered == required_literals(compiled.pattern)
