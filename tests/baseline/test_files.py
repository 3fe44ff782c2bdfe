"""Profile files: atomic writes, strict loading, learn-and-extend, and the instrument() wiring."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import agentguard
from agentguard.baseline import (
    Baseline,
    Learner,
    Profile,
    ProfileError,
    load_profile,
    save_profile,
)
from agentguard.events import EventContext, ToolCall
from tests.baseline.workload import Workload, run_in_guard


def _profile(calls: int = 3) -> Profile:
    learner = Learner(Profile(agent="test-agent"))
    for i in range(calls):
        learner.learn(ToolCall(context=EventContext(agent="test-agent", tool="lookup"),
                               tool="lookup", arguments={"customer_id": i}))
    return learner.profile


def test_save_is_atomic_and_keeps_the_file_mode(tmp_path: Path) -> None:
    """Saving replaces the file in one step, leaves no temporary files and keeps its mode."""
    path = tmp_path / "p.json"
    path.write_text("{}")
    os.chmod(path, 0o640)
    profile = _profile()
    save_profile(profile, path)
    assert load_profile(path) == profile
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]


@pytest.mark.parametrize(("content", "message"), [
    (b'{"format": "agentguard-profile", "version": 1, "agent": "test-agent", "tools": {',
     "not valid JSON"),
    (b'{"hello": "world"}', "not an agentguard profile"),
    (b'{"format": "agentguard-profile", "version": 7, "agent": "test-agent"}',
     "version 7 is not supported"),
    (b'{"format": "agentguard-profile", "version": 1, "agent": "test-agent", '
     b'"tools": {"lookup": {"calls": -4}}}', "tools.lookup.calls"),
    (b'{"format": "agentguard-profile", "version": 1, "agent": "test-agent", '
     b'"tools": {"lookup": {"result_records": {"count": 3, "min": 1, "max": 2}}}}',
     "bucket counts add up to 0"),
    (b'{"format": "agentguard-profile", "version": 1, "agent": "test-agent", '
     b'"limits": {"max_values": 1}, "tools": {"t": {"args": {"a": {"values": '
     b'{"values": {"x": 1, "y": 1}}}}}}}', "more than the limits allow"),
    (b'{"format": "agentguard-profile", "version": 1, "agent": "test-agent", "surprise": 1}',
     "surprise"),
])
def test_corrupt_or_incompatible_files_are_refused(tmp_path: Path, content: bytes,
                                                   message: str) -> None:
    """A file that is not a valid profile of this version is refused with its name and why."""
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert str(path) in str(info.value) and message in str(info.value)


@pytest.mark.parametrize("mode", ["learn", "monitor", "enforce"])
def test_instrument_refuses_a_corrupt_profile_and_never_overwrites_it(
        guarded: Any, tmp_path: Path, mode: str) -> None:
    """instrument() fails with a ConfigError naming the file; the file stays as it was."""
    path = tmp_path / "corrupt.json"
    path.write_bytes(b'{"format": "agentguard-profile", "version": 1, "agent": "test-agent", "tools"')
    with pytest.raises(agentguard.ConfigError) as info:
        guarded(mode=mode, profile=str(path), runtime_sensor=False)
    assert str(path) in str(info.value) and "not valid JSON" in str(info.value)
    assert agentguard.get_guard() is None
    agentguard.uninstrument()
    assert path.read_bytes().endswith(b'"tools"')


def test_monitor_needs_an_existing_profile_for_this_agent(guarded: Any, tmp_path: Path) -> None:
    """Monitoring without a profile file, or with another agent's, fails at instrument()."""
    with pytest.raises(agentguard.ConfigError, match="no such profile file"):
        guarded(mode="monitor", profile=str(tmp_path / "missing.json"), runtime_sensor=False)
    other = tmp_path / "other.json"
    save_profile(Profile(agent="billing-agent"), other)
    with pytest.raises(agentguard.ConfigError, match="learned for agent 'billing-agent'"):
        guarded(mode="enforce", profile=str(other), runtime_sensor=False)
    with pytest.raises(agentguard.ConfigError, match="not writable"):
        guarded(mode="learn", profile=str(tmp_path / "no" / "such" / "dir.json"),
                runtime_sensor=False)


def test_learn_creates_then_extends_the_profile(guarded: Any, tmp_path: Path) -> None:
    """learn mode writes the profile at uninstrument() and adds to it on the next run."""
    path = tmp_path / "support.json"
    guard = guarded(mode="learn", profile=str(path), runtime_sensor=False,
                    injection_detection=False)
    run_in_guard(guard, [[_call("lookup_customer", customer_id=7)]], "c1")
    agentguard.uninstrument()
    first = load_profile(path)
    assert first.tools["lookup_customer"].calls == 1
    guard = guarded(mode="learn", profile=str(path), runtime_sensor=False,
                    injection_detection=False)
    run_in_guard(guard, [[_call("lookup_customer", customer_id=8)] * 2], "c2")
    agentguard.uninstrument()
    second = load_profile(path)
    assert second.tools["lookup_customer"].calls == 3
    assert second.turns == 2


def test_learn_with_nothing_learned_still_creates_the_file(guarded: Any, tmp_path: Path) -> None:
    """A learn run that saw nothing writes an empty profile for the agent."""
    path = tmp_path / "empty.json"
    guarded(mode="learn", profile=str(path), runtime_sensor=False)
    agentguard.uninstrument()
    assert load_profile(path) == Profile(agent="test-agent")


def test_reconfiguring_from_learn_to_enforce_uses_what_was_learned(guarded: Any,
                                                                   tmp_path: Path) -> None:
    """instrument(mode="enforce") after a learn run in the same process saves and then scores."""
    path = tmp_path / "p.json"
    guard = guarded(mode="learn", profile=str(path), runtime_sensor=False,
                    injection_detection=False)
    workload = Workload(3)
    for n in range(60):
        run_in_guard(guard, workload.conversation(), f"learn-{n}")
    guard = guarded(mode="enforce", profile=str(path), runtime_sensor=False,
                    injection_detection=False)
    assert load_profile(path).tools["lookup_customer"].calls > 20
    with pytest.raises(agentguard.ToolCallBlocked) as info:
        guard.start_tool("query_customers", arguments={"query": "city = Lyon and tier = gold",
                                                        "limit": 50_000})
    assert info.value.finding.rule_id == "baseline-argument-range"


def test_a_profile_corrupted_while_learning_is_not_overwritten(guarded: Any, tmp_path: Path,
                                                               caplog: Any) -> None:
    """If the file stops being a valid profile before the save, it is left alone and the
    problem is logged; the learned profile stays available in memory."""
    path = tmp_path / "p.json"
    save_profile(Profile(agent="test-agent"), path)
    guard = guarded(mode="learn", profile=str(path), runtime_sensor=False,
                    injection_detection=False)
    run_in_guard(guard, [[_call("lookup_customer", customer_id=1)]], "c1")
    path.write_bytes(b"garbage")
    stage = guard.baseline
    assert isinstance(stage, Baseline)
    with caplog.at_level(logging.WARNING, logger="agentguard"):
        agentguard.uninstrument()
    assert path.read_bytes() == b"garbage"
    assert "did not save the learned profile" in caplog.text and str(path) in caplog.text
    assert stage.profile.tools["lookup_customer"].calls == 1


def _call(tool: str, **args: Any) -> Any:
    from tests.baseline.workload import Call

    return Call(tool, args)


_LEARNER = textwrap.dedent("""
    import sys
    import agentguard
    guard = agentguard.instrument(service_name="shared", mode="learn", profile={path!r},
                                  exporter="none", runtime_sensor=False,
                                  injection_detection=False)
    for n in range({calls}):
        with agentguard.conversation(f"{{sys.argv[1]}}-{{n}}"):
            agent = guard.start_agent("support", turn_text="hello")
            token = agent.activate()
            guard.start_tool("lookup_customer", arguments={{"customer_id": n}}).end_tool('{{"id": 1}}')
            agent.deactivate(token)
            agent.end()
    {finish}
""")


def _run_learner(path: Path, worker: str, calls: int, finish: str) -> subprocess.Popen[bytes]:
    script = _LEARNER.format(path=str(path), calls=calls, finish=finish)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTGUARD_", "OTEL_"))}
    return subprocess.Popen([sys.executable, "-c", script, worker], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_processes_sharing_one_profile_file_add_up(tmp_path: Path) -> None:
    """Four processes learning into one file at once each add their calls (read-merge-write
    under a lock), and a process that exits without uninstrument() still saves."""
    path = tmp_path / "shared.json"
    workers = [_run_learner(path, f"w{n}", 25, "agentguard.uninstrument()" if n % 2 else "")
               for n in range(4)]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err.decode()
    profile = load_profile(path)
    assert profile.tools["lookup_customer"].calls == 100
    assert profile.turns == 100
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_learned_profile_json_is_compact_and_versioned(tmp_path: Path) -> None:
    """The file names its format, version, agent and limits, and leaves out empty parts."""
    path = tmp_path / "p.json"
    save_profile(_profile(), path)
    data = json.loads(path.read_text())
    assert list(data)[:4] == ["format", "version", "agent", "limits"]
    assert data["format"] == "agentguard-profile" and data["version"] == 1
    assert "activity" not in data["tools"]["lookup"] or data["tools"]["lookup"]["activity"]


def test_saving_with_the_runtime_sensor_on_does_not_learn_its_own_files(
        guarded: Any, tmp_path: Path) -> None:
    """The profile's own temporary and lock files, written while the sensor watches (a
    reconfiguration saves with the old guard still active), are not learned as the agent's."""
    from agentguard.baseline import _features as features

    path = tmp_path / "p.json"
    guard = guarded(mode="learn", profile=str(path), injection_detection=False)
    run_in_guard(guard, [[_call("lookup_customer", customer_id=1)]], "c1")
    guard = guarded(mode="learn", profile=str(path), injection_detection=False)
    run_in_guard(guard, [[_call("lookup_customer", customer_id=2)]], "c2")
    agentguard.uninstrument()
    profile = load_profile(path)
    assert profile.tools["lookup_customer"].calls == 2
    own_area = features.path_prefix(str(tmp_path / ".p.json.x.tmp"))
    writes = profile.agent_activity.file_writes
    assert writes is None or own_area not in writes.values


def test_a_named_pipe_as_profile_is_refused_without_waiting_for_a_writer(
        guarded: Any, tmp_path: Path, capsys: Any) -> None:
    """A profile path that is a named pipe (or a directory) is refused at once, naming it:
    instrument() fails with a ConfigError instead of waiting for a writer, the CLI exits 2."""
    from agentguard.cli import main
    from tests.policy.fifo import named_pipe

    with named_pipe(tmp_path / "p.json", _profile().to_json()) as path:
        with pytest.raises(ProfileError, match="is a named pipe, device or socket, not a "
                                               "profile file"):
            load_profile(path)
        with pytest.raises(agentguard.ConfigError, match=f"{path}: is a named pipe"):
            guarded(mode="enforce", profile=str(path), service_name="test-agent")
        assert main(["profile", "status", str(path)]) == 2
        assert f"{path}: is a named pipe" in capsys.readouterr().err
    with pytest.raises(ProfileError, match=f"{tmp_path}: is a directory, not a profile file"):
        load_profile(tmp_path)


def test_a_profile_behind_a_symbolic_link_is_saved_through_it(guarded: Any,
                                                              tmp_path: Path) -> None:
    """Saving to a symbolic link replaces the file it points to and keeps the link, so
    processes that name the shared file directly or through the link learn into one profile."""
    shared = tmp_path / "shared" / "support.json"
    shared.parent.mkdir()
    save_profile(_profile(2), shared)
    link = tmp_path / "profile.json"
    link.symlink_to(shared)
    guard = guarded(mode="learn", profile=str(link), service_name="test-agent",
                    runtime_sensor=False, injection_detection=False)
    guard.start_tool("lookup", arguments={"customer_id": 7}).end_tool('{"id": 7}')
    agentguard.uninstrument()
    assert link.is_symlink() and link.resolve() == shared
    assert load_profile(shared).tools["lookup"].calls == 3
    save_profile(_profile(5), link)
    assert link.is_symlink() and load_profile(shared).tools["lookup"].calls == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profile.json", "shared"]
