"""Malformed policy files: each is refused with the exact file, line, column, field and hint."""

from __future__ import annotations

from pathlib import Path

import pytest

import agentguard
from agentguard.policy import Policy, PolicyError

# (name, policy text, line, column, field path, message, hint) of the first problem reported.
CASES: list[tuple[str, str, int | None, int | None, str, str, str | None]] = [
    ('tabs',
     'rules:\n\t- id: X\n',
     2, 1, '',
     "YAML syntax error: found character '\\t' that cannot start any token",
     'indent with spaces; YAML does not allow tabs'),
    ('unclosed',
     'rules: [\n  {id: X, description: d\n',
     3, 1, '',
     "YAML syntax error: expected ',' or '}', but got '<stream end>'",
     None),
    ('two_docs',
     'rules: []\n---\nrules: []\n',
     2, 1, '',
     'YAML syntax error: but found another document',
     "put every rule in one document (one policy per file, no '---')"),
    ('empty',
     '',
     None, None, '',
     'the policy is empty',
     "start with 'rules:' (see docs/policy.md)"),
    ('list_top',
     '- id: X\n  description: d\n',
     1, 1, '',
     "a policy is a mapping with 'rules:' (and optionally 'lists:', 'macros:', 'overrides:'); got a list",
     "start the file with 'rules:'"),
    ('scalar_top',
     'just text\n',
     1, 1, '',
     "a policy is a mapping with 'rules:' (and optionally 'lists:', 'macros:', 'overrides:'); got string 'just text'",
     "start the file with 'rules:'"),
    ('unknown_top',
     'rule:\n  - id: X\n    description: d\n',
     1, 1, 'rule',
     "unknown field 'rule'",
     "did you mean 'rules'?"),
    ('rules_not_list',
     'rules:\n  id: X\n',
     2, 3, 'rules',
     'expected a list; got a mapping',
     None),
    ('rule_scalar',
     'rules:\n  - X1\n',
     2, 5, 'rules[0]',
     "expected a mapping (key: value pairs); got string 'X1'",
     None),
    ('missing_id',
     'rules:\n  - description: d\n',
     2, 5, 'rules[0].id',
     "missing required field 'id'",
     'every rule needs a stable id such as ACME-001; findings report it'),
    ('missing_desc',
     'rules:\n  - id: X1\n',
     2, 5, 'rules[0].description',
     "missing required field 'description'",
     "every rule needs a one-line description; it becomes the finding's title"),
    ('bad_id',
     "rules:\n  - id: 'has space'\n    description: d\n",
     2, 9, 'rules[0].id',
     "invalid rule id 'has space'",
     'use letters, digits and . _ : - (at most 64 characters), starting with a letter or digit'),
    ('typo_severity_key',
     'rules:\n  - id: X1\n    description: d\n    severty: high\n',
     4, 5, 'rules[0].severty',
     "unknown field 'severty'",
     "did you mean 'severity'?"),
    ('bad_severity',
     'rules:\n  - id: X1\n    description: d\n    severity: hihg\n',
     4, 15, 'rules[0].severity',
     "string 'hihg' is not one of info, low, medium, high, critical",
     "did you mean 'high'?"),
    ('bad_action',
     'rules:\n  - id: X1\n    description: d\n    action: deny\n',
     4, 13, 'rules[0].action',
     "string 'deny' is not one of alert, block",
     'choose one of alert, block'),
    ('bad_kind',
     'rules:\n  - id: X1\n    description: d\n    match: {kind: toolcall}\n',
     4, 19, 'rules[0].match.kind',
     "unknown event kind 'toolcall'",
     "did you mean 'tool_call'?"),
    ('bad_kind_case',
     'rules:\n  - id: X1\n    description: d\n    match: {kind: ProcessExec}\n',
     4, 19, 'rules[0].match.kind',
     "unknown event kind 'ProcessExec'",
     "did you mean 'process_exec'?"),
    ('typo_match_key',
     'rules:\n  - id: X1\n    description: d\n    match: {tools: x}\n',
     4, 13, 'rules[0].match.tools',
     "unknown field 'tools'",
     "did you mean 'tool'?"),
    ('unknown_field',
     'rules:\n  - id: X1\n    description: d\n    match: {kind: tool_call}\n    when: {field: argument.x, equals: 1}\n',
     5, 19, 'rules[0].when.field',
     "'argument' is not a field of tool_call events",
     "did you mean 'arguments'?"),
    ('unknown_context',
     'rules:\n  - id: X1\n    description: d\n    when: {field: context.conversation, equals: 1}\n',
     4, 19, 'rules[0].when.field',
     "unknown context field 'conversation'",
     "did you mean 'conversation_id'?"),
    ('no_operator',
     'rules:\n  - id: X1\n    description: d\n    when: {field: tool}\n',
     4, 11, 'rules[0].when',
     "field 'tool' has no operator",
     'add one of equals, not_equals, in, not_in, contains, startswith, endswith, glob, regex, cidr, gt, gte, lt, lte, exists, length, count'),
    ('two_shapes',
     'rules:\n  - id: X1\n    description: d\n    when: {field: tool, equals: a, any: [{field: tool, equals: b}]}\n',
     4, 11, 'rules[0].when',
     'a condition has exactly one of all, any, not, macro, field; got any and field',
     'wrap several conditions in all: [...] or any: [...]'),
    ('op_without_field',
     'rules:\n  - id: X1\n    description: d\n    when: {equals: a}\n',
     4, 11, 'rules[0].when',
     "operator(s) equals need a 'field' to test",
     'add field: <path>, e.g. field: arguments.url'),
    ('unknown_op',
     'rules:\n  - id: X1\n    description: d\n    when: {field: tool, equal: a}\n',
     4, 25, 'rules[0].when.equal',
     "unknown field 'equal'",
     "did you mean 'equals'?"),
    ('unknown_list',
     'lists:\n  shells: [sh]\nrules:\n  - id: X1\n    description: d\n    when: {field: tool, in: shell}\n',
     6, 29, 'rules[0].when.in',
     "'shell' is not a defined list",
     "did you mean 'shells'?"),
    ('unknown_macro',
     'rules:\n  - id: X1\n    description: d\n    when: {macro: spawned_shel}\n',
     4, 19, 'rules[0].when.macro',
     "unknown macro 'spawned_shel'",
     "did you mean 'spawned_shell'?"),
    ('macro_cycle',
     'macros:\n  a: {macro: b}\n  b: {macro: a}\nrules: []\n',
     3, 14, 'macros.b.macro',
     'macros refer to each other in a cycle: a → b → a',
     'a macro cannot use itself, directly or through other macros'),
    ('bad_regex',
     "rules:\n  - id: X1\n    description: d\n    when: {field: tool, regex: '(a+)+b'}\n",
     4, 32, 'rules[0].when.regex',
     "regex '(a+)+b' refused in rule 'X1': nested quantifiers (a quantified group that contains another quantifier, like (a+)+) can take exponential time",
     'remove the inner quantifier, or make it possessive (a++) or atomic ((?>...)) so it never gives characters back'),
    ('invalid_regex',
     "rules:\n  - id: X1\n    description: d\n    when: {field: tool, regex: '[a-'}\n",
     4, 32, 'rules[0].when.regex',
     "regex '[a-' refused in rule 'X1': invalid regular expression: unterminated character set at position 0",
     'check the escaping; in YAML, single-quote patterns so backslashes stay as written'),
    ('bad_path',
     "rules:\n  - id: X1\n    description: d\n    when: {field: 'arguments[x]', equals: 1}\n",
     4, 19, 'rules[0].when.field',
     'invalid field path: expected [*], [number] or ["name"] at position 9 of \'arguments[x]\'; got [x]',
     'e.g. arguments.query.limit, result[*].email, argv[0], arguments.**'),
    ('bad_cidr',
     'rules:\n  - id: X1\n    description: d\n    when: {field: tool, cidr: 10.0.0.300/8}\n',
     4, 31, 'rules[0].when.cidr',
     "'10.0.0.300/8' is not an IP address or network",
     'e.g. 169.254.169.254, 10.0.0.0/8, fd00:ec2::254'),
    ('bad_transform',
     'rules:\n  - id: X1\n    description: d\n    when: {field: tool, transform: basname, equals: a}\n',
     4, 36, 'rules[0].when.transform',
     "unknown transform 'basname'",
     "did you mean 'basename'?"),
    ('bad_duration',
     'rules:\n  - id: X1\n    description: d\n    rate_limit: {max: 5, per: 5 minutes}\n',
     4, 31, 'rules[0].rate_limit.per',
     "expected a duration; got string '5 minutes'",
     "write a number of seconds or e.g. '500ms', '30s', '5m', '2h', '1d'"),
    ('rate_max_zero',
     'rules:\n  - id: X1\n    description: d\n    rate_limit: {max: 0, per: 1m}\n',
     4, 23, 'rules[0].rate_limit.max',
     'must be at least 1; got number 0',
     None),
    ('rate_missing_per',
     'rules:\n  - id: X1\n    description: d\n    rate_limit: {max: 5}\n',
     4, 17, 'rules[0].rate_limit.per',
     "missing required field 'per'",
     'e.g. rate_limit: {max: 20, per: 1m}'),
    ('bad_after',
     'rules:\n  - id: X1\n    description: d\n    after: untrusted_content\n',
     4, 12, 'rules[0].after',
     "unknown sequence condition 'untrusted_content'",
     "did you mean 'untrusted_content_flagged'?"),
    ('after_empty',
     'rules:\n  - id: X1\n    description: d\n    after: {within: 5m}\n',
     4, 12, 'rules[0].after',
     'give either tool: <pattern> or untrusted_content_flagged: true',
     'e.g. after: {tool: read_inbox} or after: untrusted_content_flagged'),
    ('dup_key',
     'rules:\n  - id: X1\n    description: d\n    severity: high\n    severity: low\n',
     5, 5, 'rules[0].severity',
     "duplicate key 'severity' (first at line 4)",
     'YAML keeps only the last value of a repeated key; remove one of them'),
    ('dup_rule',
     'rules:\n  - id: X1\n    description: d\n  - id: X1\n    description: e\n',
     4, 9, 'rules[1].id',
     "duplicate rule id 'X1' (first defined at p.yaml:2)",
     'rule ids must be unique'),
    ('reserved_id',
     'rules:\n  - id: AG001\n    description: d\n',
     2, 9, 'rules[0].id',
     "rule id 'AG001' is reserved for built-in rules",
     'choose another id; to change a built-in rule use overrides: {AG001: {...}}'),
    ('override_unknown',
     'overrides:\n  AG01: {action: alert}\n',
     2, 3, 'overrides.AG01',
     "overrides an unknown rule 'AG01'",
     "did you mean 'AG001'?"),
    ('list_redefined',
     'lists:\n  shell_binaries: [sh]\n',
     2, 3, 'lists.shell_binaries',
     "list 'shell_binaries' is already defined (agentguard/policy/builtin.yaml:11)",
     'add append: true to extend it, or override: true to replace it'),
    ('append_undefined',
     'lists:\n  my_list: {items: [a], append: true}\n',
     2, 3, 'lists.my_list',
     "list 'my_list' appends to a list that is not defined",
     'drop append: true to define it here'),
    ('macro_redefined',
     'macros:\n  spawned_shell: {field: tool, equals: sh}\n',
     2, 3, 'macros.spawned_shell',
     "macro 'spawned_shell' is already defined (agentguard/policy/builtin.yaml:112)",
     'add override: true to replace it'),
    ('phase_mismatch',
     'rules:\n  - id: X1\n    description: d\n    match: {kind: process_exec, phase: result}\n',
     4, 40, 'rules[0].match.phase',
     "phase 'result' applies to tool_call events only",
     'set match.kind accordingly or drop the phase'),
    ('bad_message_field',
     "rules:\n  - id: X1\n    description: d\n    message: 'hello {argumnts.x}'\n    match: {kind: tool_call}\n",
     4, 14, 'rules[0].message',
     "'argumnts' is not a field of tool_call events",
     "did you mean 'arguments'?"),
    ('list_item_null',
     'lists:\n  things: [a, null]\n',
     2, 15, 'lists.things[1]',
     'expected a string, number or boolean; got null',
     None),
    ('bad_bounds',
     'rules:\n  - id: X1\n    description: d\n    when: {field: result, count: {}}\n',
     4, 34, 'rules[0].when.count',
     'give at least one bound',
     'e.g. {gt: 1000}'),
    ('bool_key',
     'rules:\n  - id: X1\n    description: d\n    true: 1\n',
     4, 5, 'rules[0]',
     'mapping keys must be strings; got bool True',
     'quote the key'),
    ('version',
     'version: 2\nrules: []\n',
     1, 10, 'version',
     'number 2 is not one of 1',
     'this agentguard reads version 1'),
    ('alias_loop',
     'a: &a [*a]\n',
     1, 4, '',
     'a YAML alias refers to the value that contains it',
     None),
    ('glob_type',
     'rules:\n  - id: X1\n    description: d\n    match: {tool: [1, 2]}\n',
     4, 19, 'rules[0].match.tool',
     'name patterns must be non-empty strings (at most 512 characters); got number 1',
     "patterns use * ? [abc] like shell globs, e.g. 'db_*'"),
    ('control_character',
     'rules: []\nlists: {a: [x\x07y]}\n',
     2, 14, '',
     'character U+0007 is not allowed in YAML',
     'remove control characters; write them as escapes inside double quotes'),
    ('int_list_name',
     'lists:\n  1: [a]\n',
     2, 3, 'lists',
     'mapping keys must be strings; got int 1',
     'quote the key'),
    ('bad_name',
     'lists:\n  bad-name: [a]\n',
     2, 3, 'lists.bad-name',
     "invalid list name 'bad-name'",
     'use letters, digits and _, starting with a letter'),
]


@pytest.mark.parametrize(("name", "text", "line", "column", "field", "message", "hint"), CASES,
                         ids=[case[0] for case in CASES])
def test_malformed_policy_is_refused_with_its_location_and_a_hint(
        name: str, text: str, line: int | None, column: int | None, field: str, message: str,
        hint: str | None) -> None:
    """The first problem names the file, line, column and field, says what is wrong and how to fix it."""
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(text, name="p.yaml")
    issue = info.value.first
    assert (issue.file, issue.line, issue.column, issue.field, issue.message, issue.hint) == (
        "p.yaml", line, column, field, message, hint)
    where = "p.yaml" + (f":{line}:{column}" if line is not None else "")
    assert str(info.value).startswith(f"invalid policy: {where}: ")


def test_there_are_at_least_25_cases() -> None:
    """The table covers at least 25 distinct malformed files."""
    assert len({case[0] for case in CASES}) >= 25


def test_every_problem_in_a_file_is_reported() -> None:
    """Several mistakes in one file are all listed, each with its own line."""
    text = (
        "rules:\n"
        "  - id: A1\n"
        "    description: d\n"
        "    severity: hihg\n"
        "  - id: A2\n"
        "    description: d\n"
        "    actoin: block\n"
    )
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(text, name="p.yaml")
    assert [(i.line, i.field) for i in info.value.issues] == [
        (4, "rules[0].severity"), (7, "rules[1].actoin")]
    assert str(info.value).splitlines()[0] == "invalid policy (2 problems):"


def test_a_policy_error_is_a_config_error() -> None:
    """PolicyError is a ConfigError (and a ValueError), so one except clause catches both."""
    assert issubclass(PolicyError, agentguard.ConfigError)
    assert issubclass(PolicyError, ValueError)


def test_instrument_names_the_policy_file_and_line(tmp_path: Path, guarded: object) -> None:
    """A bad policy file fails instrument() with its path, line, field and hint."""
    path = tmp_path / "team-policy.yaml"
    path.write_text("rules:\n  - id: T1\n    description: d\n    match: {kind: toolcall}\n")
    with pytest.raises(PolicyError) as info:
        agentguard.instrument(policy=str(path), exporter="none")
    issue = info.value.first
    assert (issue.file, issue.line, issue.field) == (str(path), 4, "rules[0].match.kind")
    assert issue.hint == "did you mean 'tool_call'?"
    assert agentguard.get_guard() is None


def test_missing_and_unreadable_files_are_policy_errors(tmp_path: Path) -> None:
    """A path that does not exist, or is a directory, is reported as a PolicyError naming it."""
    with pytest.raises(PolicyError, match="policy file not found"):
        Policy.from_file(tmp_path / "nope.yaml")
    with pytest.raises(PolicyError, match="is a directory"):
        Policy.from_file(tmp_path)


def test_oversized_and_non_utf8_files_are_refused(tmp_path: Path) -> None:
    """Files over 1 MiB, or not UTF-8, are refused before parsing."""
    big = tmp_path / "big.yaml"
    big.write_text("rules: []\n" + "#" * (1 << 20))
    with pytest.raises(PolicyError, match="larger than"):
        Policy.from_file(big)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"rules: []\n\xff\xfe")
    with pytest.raises(PolicyError, match="not valid UTF-8"):
        Policy.from_file(binary)


def test_alias_bombs_are_refused_quickly() -> None:
    """A 'billion laughs' of nested aliases is refused by the node budget, not expanded."""
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        levels.append(f"a{i}: &a{i} [{refs}]")
    with pytest.raises(PolicyError, match="more than 50000 values"):
        Policy.from_yaml("\n".join(levels) + "\nrules: []\n")


def test_merge_key_bombs_are_refused_by_the_value_budget() -> None:
    """Merging one large mapping many times ('<<: [*a, *a, ...]', a few bytes per merge) counts
    every merged pair against the value budget: refused as too many values instead of expanded
    pair by pair (3000 keys merged 3000 times; a 1 MiB file could ask for billions)."""
    keys = ", ".join(f"k{i}: 1" for i in range(3000))
    merges = ", ".join(["*a"] * 3000)
    text = f"lists:\n  base: &a {{{keys}}}\nmacros:\n  m: {{<<: [{merges}]}}\nrules: []\n"
    with pytest.raises(PolicyError, match="more than 50000 values"):
        Policy.from_yaml(text)
    # Merges within the budget expand as in PyYAML: merged pairs first, a key merged twice once.
    policy = Policy.from_yaml(
        "macros:\n"
        "  big: &big {field: arguments.limit, gt: 10}\n"
        "  a: {<<: [*big, *big]}\n"
        "  b: {<<: *big}\n"
        "rules: [{id: R1, description: d, when: {any: [{macro: a}, {macro: b}]}}]\n")
    assert [r.id for r in policy.rules] == ["R1"]


def test_deep_nesting_is_refused() -> None:
    """Nesting deeper than 64 levels is refused (no recursion error escapes)."""
    with pytest.raises(PolicyError, match="nests deeper"):
        Policy.from_yaml("rules: " + "[" * 5000 + "]" * 5000)
    with pytest.raises(PolicyError, match="nests deeper"):
        Policy.from_dict({"rules": [{"id": "X", "description": "d", "when": _deep_not(200)}]})


def _deep_not(depth: int) -> dict[str, object]:
    condition: dict[str, object] = {"field": "tool", "equals": "x"}
    for _ in range(depth):
        condition = {"not": condition}
    return condition


def test_names_given_in_a_dict_must_be_strings() -> None:
    """from_dict with a non-string list name says so, at the right place."""
    with pytest.raises(PolicyError) as info:
        Policy.from_dict({"lists": {1: ["a"]}})
    assert (info.value.first.field, info.value.first.message) == (
        "lists", "names must be strings; got number 1")


def test_yaml_1_1_booleans_stay_strings() -> None:
    """'no', 'yes', 'on' and 'off' are strings (YAML 1.2), so a list of them means what it says."""
    policy = Policy.from_yaml("lists: {answers: [no, yes, on, off, true]}\nrules: []\n")
    assert policy.lists["answers"] == ("no", "yes", "on", "off", True)


def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path: Path,
                                                              guarded: object) -> None:
    """A policy path that is a named pipe is refused at once, naming it (opening it to read would
    wait for a writer and hang instrument() and the CLI); the CLI exits 1."""
    from agentguard.cli import main
    from tests.policy.fifo import named_pipe

    with named_pipe(tmp_path / "policy.yaml", b"rules: []\n") as path:
        with pytest.raises(PolicyError) as info:
            Policy.from_file(path)
        assert info.value.first.file == str(path)
        assert "is a named pipe, device or socket, not a policy file" in str(info.value)
        with pytest.raises(PolicyError, match="named pipe"):
            agentguard.instrument(policy=str(path), exporter="none")
        assert agentguard.get_guard() is None
        assert main(["policy", "check", str(path)]) == 1


_RULE_ON_MACRO = ("rules:\n  - id: R1\n    description: d\n    match: {kind: tool_call}\n"
                  "    when: {macro: m0}\n")


def _doubling_macros(levels: int) -> str:
    """Macros each using the next one twice: the condition written out doubles at each level."""
    lines = [f"  m{i}: {{any: [{{macro: m{i + 1}}}, {{not: {{macro: m{i + 1}}}}}]}}"
             for i in range(levels)]
    lines.append(f"  m{levels}: {{field: tool, equals: x}}")
    return "macros:\n" + "\n".join(lines) + "\n" + _RULE_ON_MACRO


def test_macros_that_double_at_each_level_are_refused_by_size() -> None:
    """A short file whose macros use each other twice per level would mean 2**levels tests per
    event (and as long to load): it is refused at load, naming the rule; a few levels load."""
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(_doubling_macros(14), "p.yaml")
    issue = info.value.first
    assert (issue.line, issue.field) == (21, "rules[0].when")
    assert "with their macros written out, more than 10,000" in issue.message
    policy = Policy.from_yaml(_doubling_macros(6), "p.yaml")
    from agentguard.events import ToolCall

    assert [d.rule_id for d in policy.evaluate(ToolCall(tool="x")) or []] == ["R1"]


@pytest.mark.parametrize("order", ["forward", "backward"])
def test_long_chains_of_macros_and_lists_are_refused_not_a_recursion_error(order: str) -> None:
    """Macros using macros, or lists including lists, hundreds of levels deep are a PolicyError
    naming the place (defined in either order), not a RecursionError out of instrument()."""
    macros = [f"  m{i}: {{macro: m{i + 1}}}" for i in range(300)] + \
        ["  m300: {field: tool, equals: x}"]
    lists = [f"  l{i}: [l{i + 1}]" for i in range(300)] + ["  l300: [x]"]
    if order == "backward":
        macros.reverse()
        lists.reverse()
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml("macros:\n" + "\n".join(macros) + "\n" + _RULE_ON_MACRO)
    assert "the condition nests deeper than 64 levels" in info.value.first.message
    assert info.value.first.field.startswith("macros.m")
    lists_policy = "lists:\n" + "\n".join(lists) + "\n" + _RULE_ON_MACRO.replace(
        "{macro: m0}", "{field: tool, in: l0}")
    if order == "forward":
        with pytest.raises(PolicyError) as info:
            Policy.from_yaml(lists_policy)
        assert "lists include lists more than 32 levels deep" in info.value.first.message
    else:
        # Each list is resolved before the one including it: nothing is deep, all is kept.
        assert Policy.from_yaml(lists_policy).lists["l0"] == ("x",)
