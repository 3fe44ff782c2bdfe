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


def test_learning_through_a_link_to_a_file_not_created_yet_creates_it_and_keeps_the_link(
        guarded: Any, tmp_path: Path) -> None:
    """A profile path that is a symbolic link to a file that does not exist yet: learn mode
    creates the file the link points to (also through a relative link) and the link stays."""
    shared = tmp_path / "shared"
    shared.mkdir()
    links = tmp_path / "links"
    links.mkdir()
    absolute = links / "absolute.json"
    absolute.symlink_to(shared / "absolute.json")
    relative = links / "relative.json"
    relative.symlink_to(Path("..") / "shared" / "relative.json")
    for link in (absolute, relative):
        guard = guarded(mode="learn", profile=str(link), service_name="test-agent",
                        runtime_sensor=False, injection_detection=False)
        guard.start_tool("lookup", arguments={"customer_id": 7}).end_tool('{"id": 7}')
        agentguard.uninstrument()
        assert link.is_symlink()
        assert load_profile(shared / link.name).tools["lookup"].calls == 1
    assert sorted(p.name for p in links.iterdir()) == ["absolute.json", "relative.json"]


def test_a_link_to_a_missing_directory_fails_learn_mode_at_instrument(guarded: Any,
                                                                      tmp_path: Path) -> None:
    """A link whose target directory does not exist is refused by instrument() in learn mode,
    naming the link and where it points, instead of learning for the whole run and losing it all
    at the save; the link stays as it was."""
    link = tmp_path / "profile.json"
    link.symlink_to(tmp_path / "gone" / "profile.json")
    with pytest.raises(agentguard.ConfigError) as info:
        guarded(mode="learn", profile=str(link), runtime_sensor=False)
    message = str(info.value)
    assert f"{link}: cannot create the profile (a symbolic link to {tmp_path}/gone/profile.json)"\
        in message and f"directory {tmp_path}/gone does not exist" in message
    with pytest.raises(agentguard.ConfigError) as info:
        guarded(mode="monitor", profile=str(link), runtime_sensor=False)
    assert f"no such profile file (a symbolic link to {tmp_path}/gone/profile.json)" \
        in str(info.value)
    assert link.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["profile.json"]


def test_links_in_a_loop_are_refused_and_never_replaced(guarded: Any, tmp_path: Path,
                                                        capsys: Any) -> None:
    """Two links pointing at each other name no file: instrument() in learn mode and the CLI's
    writes refuse them, and both links stay links (not replaced by a regular file)."""
    from agentguard.cli import main

    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.symlink_to(second)
    second.symlink_to(first)
    with pytest.raises(agentguard.ConfigError, match=f"{first}: cannot use the profile: "
                                                     "symbolic links in a loop"):
        guarded(mode="learn", profile=str(first), runtime_sensor=False)
    with pytest.raises(OSError, match="symbolic links in a loop"):
        save_profile(_profile(), first)
    source = tmp_path / "source.json"
    save_profile(_profile(), source)
    assert main(["profile", "merge", str(source), "-o", str(first)]) == 2
    assert "symbolic links in a loop" in capsys.readouterr().err
    assert first.is_symlink() and second.is_symlink()


def test_a_profile_directory_removed_while_learning_is_reported_not_raised(
        guarded: Any, tmp_path: Path, caplog: Any) -> None:
    """When the profile's directory disappears before the save, uninstrument() logs that the
    profile was not saved, naming it (no internal error), and what was learned stays in memory."""
    directory = tmp_path / "profiles"
    directory.mkdir()
    path = directory / "p.json"
    guard = guarded(mode="learn", profile=str(path), runtime_sensor=False,
                    injection_detection=False)
    guard.start_tool("lookup", arguments={"customer_id": 7}).end_tool('{"id": 7}')
    stage = guard.baseline
    assert isinstance(stage, Baseline)
    directory.rmdir()
    with caplog.at_level(logging.WARNING, logger="agentguard"):
        agentguard.uninstrument()
    assert f"did not save the learned profile: {path}: cannot write the profile" in caplog.text
    assert "internal error" not in caplog.text
    assert stage.profile.tools["lookup"].calls == 1


def _tool_spans(count: int) -> bytes:
    """One OTLP/JSON line of ``count`` agentguard tool spans of agent 'test-agent'."""
    spans = [{"traceId": f"{n + 1:032x}", "spanId": f"{n + 1:016x}", "name": "execute_tool",
              "kind": 1, "startTimeUnixNano": str(1_800_000_000_000_000_000 + n),
              "endTimeUnixNano": str(1_800_000_000_000_000_001 + n),
              "attributes": [
                  {"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
                  {"key": "gen_ai.tool.name", "value": {"stringValue": "lookup"}},
                  {"key": "gen_ai.tool.call.arguments",
                   "value": {"stringValue": json.dumps({"customer_id": n})}}]}
             for n in range(count)]
    document = {"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "test-agent"}}]},
        "scopeSpans": [{"spans": spans}]}]}
    return (json.dumps(document) + "\n").encode()


def test_learning_from_traces_keeps_what_agents_saved_meanwhile(tmp_path: Path) -> None:
    """`profile learn -o shared.json` reads the profile, then the traces (which can take
    minutes); an agent that adds to the same file in between keeps its observations: the CLI
    adds what it learned under the lock agents use, instead of writing back the profile it read
    at the start."""
    import errno
    import threading
    import time

    from agentguard.baseline import merge_into_file
    from agentguard.cli import main

    path = tmp_path / "shared.json"
    save_profile(_profile(2), path)
    traces = tmp_path / "traces.jsonl"
    os.mkfifo(traces)
    result: list[int] = []
    cli = threading.Thread(target=lambda: result.append(main(
        ["profile", "learn", "--from", str(traces), "-o", str(path), "--agent", "test-agent",
         "--no-progress"])))
    cli.start()
    # The CLI has read the profile once it waits to read the traces.
    deadline = time.monotonic() + 30
    while True:
        try:
            writer = os.open(traces, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            assert exc.errno == errno.ENXIO and time.monotonic() < deadline
            time.sleep(0.01)
    merge_into_file(path, _profile(5))
    os.write(writer, _tool_spans(3))
    os.close(writer)
    cli.join(30)
    assert result == [0]
    assert load_profile(path).tools["lookup"].calls == 2 + 5 + 3


def test_a_link_planted_as_the_lock_file_is_not_followed(tmp_path: Path) -> None:
    """Whoever can write the profile's directory but not elsewhere could plant a link named like
    the lock file: saving refuses to open the lock through it (a clear error) instead of
    creating or opening the file the link points to, and the profile is left as it was."""
    from agentguard.baseline import merge_into_file

    path = tmp_path / "shared.json"
    save_profile(_profile(2), path)
    elsewhere = tmp_path / "outside" / "created-through-the-link"
    elsewhere.parent.mkdir()
    os.symlink(elsewhere, tmp_path / ".shared.json.lock")
    with pytest.raises(ProfileError, match=r"shared\.json"):
        merge_into_file(path, _profile(5))
    assert not elsewhere.exists()
    assert load_profile(path).tools["lookup"].calls == 2
