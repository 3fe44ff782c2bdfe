"""``agentguard profile status / show / merge``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentguard.baseline import Learner, Profile, load_profile, save_profile
from agentguard.cli import main
from agentguard.events import CloudCall, EventContext, ToolCall


def _learned(calls: int, *, tool: str = "lookup", seed: int = 0) -> Profile:
    learner = Learner(Profile(agent="support"))
    for n in range(calls):
        context = EventContext(agent="support", tool=tool)
        learner.learn(ToolCall(context=context, tool=tool,
                               arguments={"customer_id": 1000 + (n * 7 + seed) % 50,
                                          "region": ["EU", "US"][n % 2]},
                               timestamp=1.8e9 + n))
        learner.learn(ToolCall(context=context, tool=tool, result='{"id": 1}', phase="result",
                               timestamp=1.8e9 + n))
        learner.learn(CloudCall(context=context, service="s3", operation="GetObject",
                                resource={"bucket": "customers"}, timestamp=1.8e9 + n))
    return learner.profile


@pytest.fixture
def profile_file(tmp_path: Path) -> Path:
    path = tmp_path / "support.json"
    save_profile(_learned(40), path)
    return path


def test_status_shows_each_tool_and_what_is_still_learning(tmp_path: Path, capsys: Any) -> None:
    """status lists tools with their maturity; --check fails while a tool is still learning."""
    profile = _learned(40).merge(_learned(3, tool="refund"))
    path = tmp_path / "p.json"
    save_profile(profile, path)
    assert main(["profile", "status", str(path)]) == 0
    out = capsys.readouterr().out
    assert "lookup" in out and "mature" in out
    assert "refund" in out and "learning" in out
    assert main(["profile", "status", str(path), "--check"]) == 1
    capsys.readouterr()
    assert main(["profile", "status", str(path), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    states = {tool["name"]: tool["state"] for tool in status["tools"]}
    assert states == {"lookup": "mature", "refund": "learning"}
    refund = next(t for t in status["tools"] if t["name"] == "refund")
    assert refund["calls"] == 3
    assert main(["profile", "status", str(path), "--check", "--min-observations", "2"]) == 0


def test_show_renders_arguments_results_and_activity(profile_file: Path, capsys: Any) -> None:
    """show prints the tools, argument summaries, result sizes and cloud resources."""
    assert main(["profile", "show", str(profile_file)]) == 0
    out = capsys.readouterr().out
    for text in ("agent support", "lookup", "customer_id", "region", "EU", "records",
                 "s3.bucket", "customers"):
        assert text in out
    assert main(["profile", "show", str(profile_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["agent"] == "support"
    assert main(["profile", "show", str(profile_file), "--tool", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no tool nope in this profile" in err and "lookup" in err


def test_show_json_of_one_tool(tmp_path: Path, capsys: Any) -> None:
    """show --json --tool prints the profile document with that tool only (the same shape as the
    whole profile's, so the same reader takes it); an unknown tool is an error in both forms."""
    profile = _learned(40).merge(_learned(3, tool="refund"))
    path = tmp_path / "p.json"
    save_profile(profile, path)
    assert main(["profile", "show", str(path), "--json", "--tool", "refund"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert list(document["tools"]) == ["refund"]
    assert document["agent"] == profile.agent
    whole = json.loads(profile.to_json())
    assert document["tools"]["refund"] == whole["tools"]["refund"]
    assert main(["profile", "show", str(path), "--json", "--tool", "\x1b[2Jnope"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b[2Jnope" in err


def test_merge_writes_the_merged_profile(tmp_path: Path, capsys: Any) -> None:
    """merge combines replica profiles into one file."""
    a, b = _learned(10, seed=1), _learned(15, seed=2)
    save_profile(a, tmp_path / "a.json")
    save_profile(b, tmp_path / "b.json")
    out = tmp_path / "merged.json"
    assert main(["profile", "merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                 "-o", str(out)]) == 0
    assert load_profile(out) == a.merge(b)
    assert "merged 2 profiles" in capsys.readouterr().out


def test_bad_files_fail_with_the_file_named(tmp_path: Path, capsys: Any) -> None:
    """Commands given a corrupt profile or profiles of different agents exit 2 and say why."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "agentguard-profile", "version": 3}')
    for command in (["status", str(bad)], ["show", str(bad)],
                    ["merge", str(bad), "-o", str(tmp_path / "x.json")]):
        assert main(["profile", *command]) == 2
        assert f"{bad}: profile format version 3 is not supported" in capsys.readouterr().err
    save_profile(Profile(agent="a"), tmp_path / "a.json")
    save_profile(Profile(agent="b"), tmp_path / "b.json")
    assert main(["profile", "merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                 "-o", str(tmp_path / "ab.json")]) == 2
    assert "cannot merge" in capsys.readouterr().err
    assert not (tmp_path / "ab.json").exists()


def test_show_and_status_print_control_characters_as_escapes(tmp_path: Path,
                                                             capsys: Any) -> None:
    """Learned names and values are chosen by whoever steers the model: terminal escape
    sequences and bidirectional overrides in them are shown as escapes, never sent to the
    terminal (where they could hide a value or rewrite the screen), and markup-like text in a
    hand-edited profile is printed as written."""
    learner = Learner(Profile(agent="support\x1b[8m"))
    for _ in range(3):
        context = EventContext(agent="support\x1b[8m", tool="send\x1b]0;title\x07")
        learner.learn(ToolCall(context=context, tool="send\x1b]0;title\x07",
                               arguments={"to\u202e": "evil.example\x1b[8m\x9b2J"}))
    learner.skip("[/dim] reason")
    path = tmp_path / "support.json"
    save_profile(learner.profile, path)
    for command in ("show", "status"):
        assert main(["profile", command, str(path)]) == 0
        out = capsys.readouterr().out
        assert not any(c in out for c in "\x1b\x07\x9b\u202e")
        assert "send\\x1b]0;title" in out and "support\\x1b[8m" in out
    assert main(["profile", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "send\\x1b]0;title\\x07" in out and "to\\u202e" in out and "evil.example\\x1b[8m\\x9b2J" in out
    assert "[/dim] reason 1" in out


def _hostile_profile(tmp_path: Path) -> tuple[Path, Profile]:
    """A profile whose learned tool name, argument key and values carry C1 controls (U+009B is
    the 8-bit CSI), a DEL, bidirectional overrides and line breaks."""
    tool = "send\x9b2J\nrules: []\n#"
    learner = Learner(Profile(agent="support"))
    for _ in range(3):
        context = EventContext(agent="support", tool=tool)
        learner.learn(ToolCall(context=context, tool=tool,
                               arguments={"to\u202e\x85": "evil.example\x9b31m\x7f\u2066",
                                          "mode": "caf\u00e9"}))
    path = tmp_path / "support.json"
    save_profile(learner.profile, path)
    return path, learner.profile


_TERMINAL = "\x1b\x7f\x85\x9b\u202e\u2066"


def test_show_json_escapes_what_a_terminal_acts_on_and_round_trips(tmp_path: Path,
                                                                  capsys: Any) -> None:
    """show --json writes C1 controls, DEL and bidirectional overrides in learned values as
    \\u escapes, so printing it cannot send an escape sequence to the terminal; it is still
    valid JSON that reads back to the same profile (other non-ASCII text stays as it is). The
    profile file itself is as safe to print."""
    path, profile = _hostile_profile(tmp_path)
    assert main(["profile", "show", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert not any(c in out for c in _TERMINAL)
    assert '"send\\u009b2J\\nrules: []\\n#"' in out and "caf\u00e9" in out
    assert Profile.from_json(out) == profile
    text = path.read_text("utf-8")
    assert not any(c in text for c in _TERMINAL) and load_profile(path) == profile


def test_to_policy_keeps_learned_line_breaks_and_controls_out_of_its_comments(
        tmp_path: Path, capsys: Any) -> None:
    """to-policy names learned tools and arguments in the comment above each rule: a line
    break in one would end the comment and write YAML of the model's choosing into the policy,
    and a C1 control makes the file one the policy loader refuses. They are written as escapes,
    and the policy loads and keeps the learned names exactly."""
    from agentguard.policy import Policy

    path, _ = _hostile_profile(tmp_path)
    out = tmp_path / "policy.yaml"
    assert main(["profile", "to-policy", str(path), "-o", str(out)]) == 0
    text = out.read_text("utf-8")
    assert not any(c in text for c in _TERMINAL)
    assert "# send\\x9b2J\\nrules: []\\n#" in text
    assert not any(line.startswith("rules: []") for line in text.splitlines())
    policy = Policy.from_file(out)
    tool = "send\x9b2J\nrules: []\n#"
    event = ToolCall(context=EventContext(agent="support", tool=tool), tool=tool,
                     arguments={"mode": "other"})
    assert any("called with a mode never seen" in d.reason for d in policy.evaluate(event) or [])
