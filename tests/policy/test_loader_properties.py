"""Property tests: whatever it is given, the loader returns a Policy or raises PolicyError."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentguard.events import EventContext, ToolCall
from agentguard.policy import Policy, PolicyError

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# The words of the format, so generated documents get past the first checks often.
KEYS = ["rules", "lists", "macros", "overrides", "version", "id", "description", "severity",
        "action", "category", "enabled", "tags", "match", "when", "unless", "after", "rate_limit",
        "message", "kind", "tool", "agent", "phase", "all", "any", "not", "macro", "field",
        "transform", "ignore_case", "equals", "not_equals", "in", "not_in", "contains",
        "startswith", "endswith", "glob", "regex", "cidr", "gt", "gte", "lt", "lte", "exists",
        "length", "count", "max", "per", "by", "within", "same_turn",
        "untrusted_content_flagged", "items", "append", "override", "condition"]
WORDS = ["tool_call", "process_exec", "high", "block", "alert", "arguments.x", "arguments.**",
         "result[*].a", "context.user", "(a+)+", "a.*b.*c", "[a-", "10.0.0.0/8", "1m", "5 m",
         "basename", "url_host", "conversation", "shell_binaries", "spawned_shell", "AG001",
         "X-1", "untrusted_content_flagged", "*", "{tool}", "${HOME}", "", "\x00", "é"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(WORDS),
    st.text(max_size=20),
)
structures = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children,
                        max_size=6),
    ),
    max_leaves=40,
)


def _accepts_or_refuses(load: Any, value: Any) -> None:
    try:
        policy = load(value)
    except PolicyError as exc:
        assert exc.issues, "a PolicyError always lists at least one problem"
        assert str(exc)
        return
    assert isinstance(policy, Policy)
    # A policy that loads must also evaluate without raising.
    event = ToolCall(context=EventContext(conversation_id="c", agent="a"), tool="t",
                     arguments={"x": 1, "q": "a" * 50})
    policy.evaluate(event)
    policy.explain(event)


@SETTINGS
@given(st.text(max_size=400))
def test_any_text_loads_or_raises_policy_error(text: str) -> None:
    """Arbitrary text never raises anything but PolicyError."""
    _accepts_or_refuses(Policy.from_yaml, text)


@SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes_load_or_raise_policy_error(data: bytes) -> None:
    """Arbitrary bytes (not UTF-8, NULs, BOMs) never raise anything but PolicyError."""
    _accepts_or_refuses(Policy.from_yaml, data)


@SETTINGS
@given(structures)
def test_any_structure_loads_or_raises_policy_error(value: Any) -> None:
    """Arbitrary nested dicts, lists and scalars (from_dict) never raise anything but PolicyError."""
    _accepts_or_refuses(lambda v: Policy.from_dict(v), value)


@SETTINGS
@given(structures)
def test_any_yaml_document_loads_or_raises_policy_error(value: Any) -> None:
    """The same structures written as YAML never raise anything but PolicyError."""
    text = yaml.safe_dump(value, allow_unicode=True)
    _accepts_or_refuses(Policy.from_yaml, text)


def _parsed(text: str | bytes, fast: bool) -> Any:
    """What the YAML layer makes of ``text``: the values (repr: NaN equals itself, 1 and True
    stay apart), the position of every key and of every value but empty ones, or the error;
    parsed by libyaml when it may, or by PyYAML's own parser."""
    from agentguard.policy import _yaml

    saved = _yaml._FastLoader
    if not fast:
        _yaml._FastLoader = None
    try:
        data, marks = _yaml.load_yaml(text, "p.yaml")
    except PolicyError as exc:
        return str(exc)
    finally:
        _yaml._FastLoader = saved

    def value_at(path: tuple[Any, ...]) -> Any:
        value = data
        for part in path:
            value = value[part]
        return value

    # Where an empty value (a null) is: one column apart between the parsers in a flow mapping.
    positions = {path: mark for path, mark in marks.values.items() if value_at(path) is not None}
    return repr(data), positions, marks.keys


# What PyYAML's parser refuses and libyaml, following the YAML spec, reads: tabs as white space
# inside and after a value, a comment or tab right after a block scalar's '|' or '>', '?' inside
# an unquoted value in a flow collection.
_LENIENT = ("'\\t'", "chomping or indentation indicators",
            "expected a comment or a line break", "but got '?'")


def _same_or_lenient(text: str) -> None:
    fast, pure = _parsed(text, fast=True), _parsed(text, fast=False)
    if isinstance(pure, str) and not isinstance(fast, str):
        assert any(word in pure for word in _LENIENT), (text, pure)
    else:
        assert fast == pure


yaml_styles = st.sampled_from([{}, {"default_flow_style": True}, {"default_flow_style": False},
                               {"default_style": '"'}, {"default_style": "'"},
                               {"allow_unicode": True, "width": 20}])


@SETTINGS
@given(structures, yaml_styles)
def test_libyaml_parsing_gives_what_pure_python_parsing_gives(value: Any,
                                                              style: dict[str, Any]) -> None:
    """Policies are parsed by libyaml for speed: every document, in every YAML style, gives
    the same values at the same lines and columns as PyYAML's own parser gives."""
    from agentguard.policy import _yaml

    assert _yaml._FastLoader is not None
    text = yaml.safe_dump(value, **style)
    assert _parsed(text, fast=True) == _parsed(text, fast=False)


@SETTINGS
@given(st.text(alphabet=st.sampled_from([*"ab0:-[]{},#&*!|>'\"%@`? \t\r\n\\x",
                                         "\u00e9", "\U0001f600", "\ufeff", "\x85",
                                         "\u2028"]),
               max_size=60))
def test_libyaml_parsing_reports_the_errors_pure_python_parsing_reports(text: str) -> None:
    """Text made of YAML's punctuation gives the same values, or the same error with the same
    line, column and hint, through libyaml as through PyYAML's parser; the only documents libyaml
    takes that PyYAML's parser refuses are the ones the YAML spec allows."""
    _same_or_lenient(text)


conditions = st.recursive(
    st.fixed_dictionaries(
        {"field": st.sampled_from(["arguments.x", "arguments.**", "tool", "result",
                                   "context.user", "argv[*]", "arguments[0]", "bogus", "a..b"])},
        optional={
            "equals": scalars, "in": st.one_of(st.lists(scalars, max_size=3),
                                               st.sampled_from(WORDS)),
            "contains": st.one_of(st.sampled_from(WORDS), st.lists(st.text(max_size=5))),
            "regex": st.sampled_from(["^a", "(a+)+", "a.*b.*c", "[a-", "x{2000}", "(?i)ok"]),
            "glob": st.sampled_from(["*", "a[b", "db_*"]),
            "cidr": st.sampled_from(["10.0.0.0/8", "nope", "::1"]),
            "gt": scalars, "count": st.dictionaries(st.sampled_from(["gt", "lt", "x"]),
                                                    scalars, max_size=2),
            "transform": st.sampled_from(["lower", "basename", "nope", ["lower", "url_host"]]),
            "exists": scalars,
        }),
    lambda inner: st.one_of(
        st.fixed_dictionaries({"all": st.lists(inner, max_size=3)}),
        st.fixed_dictionaries({"any": st.lists(inner, max_size=3)}),
        st.fixed_dictionaries({"not": inner}),
        st.fixed_dictionaries({"macro": st.sampled_from(["spawned_shell", "m1", "nope"])}),
    ),
    max_leaves=6,
)
rules = st.fixed_dictionaries(
    {"id": st.sampled_from(["R1", "R2", "AG001", "bad id", ""]),
     "description": st.sampled_from(["d", "", "x" * 600])},
    optional={
        "severity": st.sampled_from(["high", "hihg", 3]),
        "action": st.sampled_from(["alert", "block", "deny"]),
        "match": st.fixed_dictionaries({}, optional={
            "kind": st.sampled_from(["tool_call", ["tool_call", "process_exec"], "x", []]),
            "tool": st.sampled_from(["*", ["a", 1], "shell_binaries"]),
            "phase": st.sampled_from(["call", "result", "response", "x"])}),
        "when": conditions, "unless": conditions,
        "after": st.sampled_from(["untrusted_content_flagged", {"tool": "a", "within": "1m"},
                                  [{"tool": "a"}, "untrusted_content_flagged"], {"within": 3},
                                  "x"]),
        "rate_limit": st.fixed_dictionaries({"max": scalars, "per": scalars}),
        "message": st.sampled_from(["{tool}", "{bogus}", "{", "plain"]),
    })
documents = st.fixed_dictionaries(
    {"rules": st.lists(rules, max_size=3)},
    optional={
        "lists": st.dictionaries(st.sampled_from(["l1", "shell_binaries", "bad-name"]),
                                 st.one_of(st.lists(scalars, max_size=3),
                                           st.fixed_dictionaries({"items": st.lists(scalars),
                                                                  "append": st.booleans()})),
                                 max_size=2),
        "macros": st.dictionaries(st.sampled_from(["m1", "spawned_shell"]), conditions,
                                  max_size=2),
        "overrides": st.dictionaries(st.sampled_from(["R1", "AG001", "AG1", "nope"]),
                                     st.fixed_dictionaries({}, optional={
                                         "action": st.sampled_from(["alert", "x"]),
                                         "enabled": scalars}), max_size=2),
    })


@settings(max_examples=500, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(documents)
def test_near_valid_documents_load_or_raise_policy_error(document: dict[str, Any]) -> None:
    """Documents built from the format's own vocabulary reach the compiler's checks, and still
    never raise anything but PolicyError."""
    _accepts_or_refuses(lambda v: Policy.from_dict(v), document)
    _accepts_or_refuses(Policy.from_yaml, yaml.safe_dump(document))


def _built(text: str, direct: bool) -> Any:
    """Values, value positions and key positions of ``text`` built straight from libyaml's
    events, or from the node tree PyYAML composes from them; None when the events are not
    enough (anchors, aliases, tags, merge keys, problems), or the node tree's error."""
    from agentguard.policy import _yaml

    try:
        data, marks = (_yaml._load_events(text, "p.yaml") if direct else
                       _yaml._load(text, "p.yaml", _yaml._FastLoader))
    except Exception as exc:  # the loader takes the node tree after any exception
        return None if direct else str(exc)
    return repr(data), marks.values, marks.keys


@SETTINGS
@given(structures, yaml_styles)
def test_documents_built_from_events_give_what_the_node_tree_gives(
        value: Any, style: dict[str, Any]) -> None:
    """Ordinary documents (no anchors, tags or problems) are built straight from libyaml's
    events, for speed: every one, in every YAML style, gives the same values, and the same
    lines and columns for every value and key, as the node tree gives."""
    text = yaml.safe_dump(value, **style)
    direct = _built(text, direct=True)
    # Quoted styles tag what is not a string ('!!int "1"'): those take the node tree.
    assert direct is not None or "!!" in text, text
    if direct is not None:
        assert direct == _built(text, direct=False)


@SETTINGS
@given(st.text(alphabet=st.sampled_from([*"ab0:-[]{},#&*!|>'\"%@`?<= \t\r\n\\x", "\u00e9"]),
               max_size=60))
def test_odd_documents_built_from_events_give_what_the_node_tree_gives(text: str) -> None:
    """Text made of YAML's punctuation (anchors, aliases, tags, merge keys, repeated keys, keys
    that are not strings) is built from the events only when that gives exactly what the node
    tree gives; anything else is left to the node tree, which words every problem."""
    direct = _built(text, direct=True)
    if direct is not None:
        assert direct == _built(text, direct=False)


def test_anchors_repeated_keys_and_merge_keys_load_as_before() -> None:
    """What the events alone cannot build still loads, through the node tree: aliases are
    written out, merge keys merged, and a repeated key is reported at its line."""
    from agentguard.policy import _yaml

    data, _ = _yaml.load_yaml("base: &b {x: 1}\ncopy: *b\nmerged: {<<: *b, y: 2}\n", "p.yaml")
    assert data == {"base": {"x": 1}, "copy": {"x": 1}, "merged": {"x": 1, "y": 2}}
    try:
        _yaml.load_yaml("a: 1\nb: 2\na: 3\n", "p.yaml")
    except PolicyError as exc:
        assert (exc.first.line, exc.first.field) == (3, "a")
        assert exc.first.message == "duplicate key 'a' (first at line 1)"
    else:
        raise AssertionError("accepted")
