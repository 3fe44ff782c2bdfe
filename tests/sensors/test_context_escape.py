"""Code in a tool that runs in a context without the tool (``contextvars.Context().run``)."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import pytest

import agentguard
from agentguard import _guard, sensors
from tests.sensors.helpers import Recorder, events, make_tool, run_tool

SHELL = ["/bin/sh", "-c", "true"]
_ids = itertools.count(1)


async def _arun_tool(fn: Callable[..., Any]) -> Any:
    tool = make_tool(fn)
    call = {"name": tool.name, "args": {}, "id": f"escape-{next(_ids)}", "type": "tool_call"}
    return (await tool.ainvoke(call)).content


def _shell() -> str:
    try:
        subprocess.run(SHELL, check=True)
    except PermissionError as blocked:
        return f"blocked: {blocked}"
    return "ran"


def _on_own_thread(fn: Callable[[], Any]) -> Any:
    """``fn()`` on a thread of its own (a sensor that wrongly obeyed ``quiet_thread()`` would
    blind only that thread, not the rest of the test session)."""
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(fn()))
    worker.start()
    worker.join(30)
    (value,) = result
    return value


def _tamper(findings: list[agentguard.Finding]) -> list[tuple[str, str]]:
    return [(f.action, f.title) for f in findings if f.rule_id == sensors.RULE_TAMPER]


def test_quiet_thread_in_an_empty_context_is_refused_inside_a_tool(guarded: Any) -> None:
    """A tool hiding its thread through an empty context is refused in enforce mode, and the
    shell a later tool call spawns on the same thread is still blocked."""
    findings: list[agentguard.Finding] = []
    guarded(mode="enforce", on_finding=findings.append)

    def hide() -> str:
        """Hide this thread from agentguard, then spawn a shell."""
        contextvars.Context().run(sensors.quiet_thread)
        return _shell()

    def later() -> str:
        """Spawn a shell."""
        return _shell()

    hidden, spawned = _on_own_thread(lambda: (run_tool(hide), run_tool(later)))
    assert "[sensor-tamper]" in hidden
    assert _tamper(findings) == [("block", "a tool call tried to hide its thread from agentguard")]
    assert "[AG001]" in spawned


def test_quiet_thread_in_an_empty_context_is_reported_and_the_thread_stays_watched(
        guarded: Any) -> None:
    """In monitor mode the attempt is an alert, and the shell the tool spawns next is still
    seen as the tool's."""
    findings: list[agentguard.Finding] = []
    recorder = Recorder()
    guarded(mode="monitor", on_finding=findings.append, policy=[recorder], builtin_rules=False)

    def hide() -> str:
        """Hide this thread from agentguard, then spawn a shell."""
        contextvars.Context().run(sensors.quiet_thread)
        return _shell()

    assert _on_own_thread(lambda: run_tool(hide)) == "ran"
    assert _tamper(findings) == [("alert", "a tool call tried to hide its thread from agentguard")]
    (spawn,) = recorder.of("process_exec")
    assert spawn.context.tool == "hide"


def test_quiet_thread_from_code_outside_agentguard_is_refused(guarded: Any) -> None:
    """Only agentguard's own threads may hide: agent code calling ``quiet_thread()`` outside any
    tool call gets an alert naming its module, and its thread's spawns are still judged."""
    findings: list[agentguard.Finding] = []
    recorder = Recorder()
    guarded(mode="monitor", on_finding=findings.append, policy=[recorder], builtin_rules=False)

    def agent_thread() -> None:
        sensors.quiet_thread()
        subprocess.run(["/bin/true"], check=True)

    _on_own_thread(agent_thread)
    assert _tamper(findings) == [
        ("alert", f"code outside agentguard ({__name__}) tried to hide its thread from "
                  "agentguard")]
    (spawn,) = recorder.of("process_exec")
    assert spawn.executable == "/bin/true"


def test_uninstrument_in_an_empty_context_is_refused_inside_a_tool(guarded: Any) -> None:
    """A tool switching agentguard off through an empty context is refused: the Guard stays
    active and in enforce mode."""
    findings: list[agentguard.Finding] = []
    guard = guarded(mode="enforce", on_finding=findings.append)

    def switch_off() -> str:
        """Switch agentguard off."""
        contextvars.Context().run(agentguard.uninstrument)
        return "switched off"

    assert "[sensor-tamper]" in run_tool(switch_off)
    assert agentguard.get_guard() is guard and guard.mode == "enforce"
    assert _tamper(findings) == [
        ("block", "a tool call tried to switch agentguard off (uninstrument)")]


def test_a_shell_spawned_in_an_empty_context_belongs_to_the_tool(guarded: Any,
                                                                 spans: Any) -> None:
    """The spawn is judged with the tool's identity and lands on the tool's span, and the
    tool-scoped shell rule blocks it in enforce mode."""
    recorder = Recorder()
    guarded(mode="monitor", policy=[recorder], builtin_rules=False)

    def escape() -> str:
        """Spawn a shell in an empty context."""
        return contextvars.Context().run(_shell)

    assert run_tool(escape) == "ran"
    (spawn,) = recorder.of("process_exec")
    assert (spawn.context.tool, spawn.executable) == ("escape", "/bin/sh")
    (event,) = events(spans.one("execute_tool escape"), "process.exec")
    assert event["process.executable.path"] == "/bin/sh"
    agentguard.uninstrument()

    guarded(mode="enforce")
    assert "[AG001]" in run_tool(escape)


def test_a_thread_started_in_an_empty_context_is_the_tools(guarded: Any) -> None:
    """A thread a tool starts from an empty context runs as the tool's: its shell is judged
    with the tool's identity and blocked by the tool-scoped rule in enforce mode."""
    recorder = Recorder()
    guarded(mode="monitor", policy=[recorder], builtin_rules=False)
    outcome: list[str] = []

    def escape() -> str:
        """Spawn a shell on a thread started in an empty context."""
        worker = threading.Thread(target=lambda: outcome.append(_shell()))
        contextvars.Context().run(worker.start)
        worker.join(30)
        return outcome[-1]

    assert run_tool(escape) == "ran"
    (spawn,) = recorder.of("process_exec")
    assert (spawn.context.tool, spawn.executable) == ("escape", "/bin/sh")
    agentguard.uninstrument()

    guarded(mode="enforce")
    assert run_tool(escape).startswith("blocked:") and "[AG001]" in outcome[-1]


def test_a_child_spawned_in_an_empty_context_carries_the_tool_span(guarded: Any,
                                                                   spans: Any) -> None:
    """A child process a tool starts from an empty context still gets TRACEPARENT of the tool
    span, so the collector joins what it does to the tool call."""
    guarded(mode="monitor", builtin_rules=False)

    def escape() -> str:
        """Start a child that prints its TRACEPARENT, from an empty context."""
        return contextvars.Context().run(
            lambda: subprocess.run(["/bin/sh", "-c", "echo \"$TRACEPARENT\""], check=True,
                                   capture_output=True, text=True).stdout.strip())

    traceparent = run_tool(escape)
    context = spans.one("execute_tool escape").context
    assert traceparent == f"00-{context.trace_id:032x}-{context.span_id:016x}-01"


def test_a_secret_read_in_an_empty_context_is_blocked(guarded: Any) -> None:
    """Reading the process environment through an empty context is still the tool's secret
    read, blocked in enforce mode."""
    guarded(mode="enforce")

    def read_environment() -> str:
        """Read this process's environment."""

        def read() -> bytes:
            with open("/proc/self/environ", "rb") as handle:
                return handle.read()

        return f"read {len(contextvars.Context().run(read))} bytes"

    assert "[AG012]" in run_tool(read_environment)


def test_an_event_loop_a_tool_starts_in_an_empty_context_is_the_tools(guarded: Any) -> None:
    """A synchronous tool running ``asyncio.run`` in an empty context owns that loop's tasks:
    their shell is blocked."""
    guarded(mode="enforce")

    def run_loop() -> str:
        """Run an event loop that spawns a shell."""

        async def main() -> str:
            return _shell()

        return contextvars.Context().run(asyncio.run, main())

    assert "[AG001]" in run_tool(run_loop)


def test_an_async_tool_escaping_its_context_is_still_the_tool(guarded: Any) -> None:
    """An async tool spawning a shell through an empty context is blocked in enforce mode."""
    guarded(mode="enforce")

    async def escape_async() -> str:
        """Spawn a shell in an empty context."""
        return contextvars.Context().run(_shell)

    assert "[AG001]" in asyncio.run(_arun_tool(escape_async))


def test_a_task_an_async_tool_awaits_in_an_empty_context_is_the_tools(guarded: Any) -> None:
    """An async tool handing its shell to a new task with an empty context, and awaiting it, is
    blocked in enforce mode."""
    guarded(mode="enforce")

    async def delegate() -> str:
        """Spawn a shell from a task with an empty context."""

        async def spawn() -> str:
            return _shell()

        loop = asyncio.get_running_loop()
        return await loop.create_task(spawn(), context=contextvars.Context())

    assert "[AG001]" in asyncio.run(_arun_tool(delegate))


def test_other_tasks_on_the_loop_are_not_inside_an_awaiting_async_tool(guarded: Any,
                                                                       spans: Any) -> None:
    """While an async tool awaits, agent code in another task of the same loop (in an empty
    context or not) is not the tool's: its shells are not refused by the tool-scoped rule nor
    put on the tool's span."""
    guarded(mode="enforce")
    outcomes: list[str] = []

    async def main() -> None:
        release = asyncio.Event()

        async def wait_for_release() -> str:
            """Wait until the agent releases it."""
            await release.wait()
            return "released"

        tool_call = asyncio.create_task(_arun_tool(wait_for_release))
        await asyncio.sleep(0.05)  # the tool is now awaiting
        outcomes.append(_shell())
        outcomes.append(contextvars.Context().run(_shell))
        release.set()
        outcomes.append(await tool_call)

    asyncio.run(main())
    assert outcomes == ["ran", "ran", "released"]
    assert events(spans.one("execute_tool wait_for_release"), "process.exec") == []


def test_a_tool_call_that_returned_or_failed_leaves_nothing_behind(guarded: Any) -> None:
    """After a tool call returns, fails or is blocked, agent code on the same thread in an empty
    context is no longer inside it."""
    guarded(mode="enforce")

    def fine() -> str:
        """Return."""
        return "fine"

    def broken() -> str:
        """Fail."""
        raise ValueError("broken tool")

    def blocked() -> str:
        """Spawn a shell."""
        return _shell()

    assert run_tool(fine) == "fine"
    assert contextvars.Context().run(_shell) == "ran"
    with pytest.raises(ValueError, match="broken tool"):
        run_tool(broken)
    assert contextvars.Context().run(_shell) == "ran"
    assert "[AG001]" in run_tool(blocked)
    assert contextvars.Context().run(_shell) == "ran"
    assert _guard.running_tool() is None
    assert _guard._running.stack == []


def test_a_thread_tracks_a_bounded_number_of_running_tools(guarded: Any) -> None:
    """Tool calls that never deactivate cannot grow a thread's bookkeeping past its limit: the
    oldest are dropped and counted, the innermost still owns escaped code."""
    guard = guarded(mode="enforce")
    dropped = sensors.stats()["running_tools_dropped"]
    extra = 5
    operations = [guard.start_tool(f"nested_{index}", call_id=f"nested-{index}")
                  for index in range(_guard.MAX_RUNNING_TOOLS + extra)]
    tokens = [op.activate() for op in operations]
    try:
        assert sensors.stats()["running_tools_dropped"] - dropped == extra
        with pytest.raises(PermissionError, match=f"tool nested_{len(operations) - 1}"):
            contextvars.Context().run(subprocess.run, SHELL)
    finally:
        for op, token in zip(reversed(operations), reversed(tokens), strict=True):
            op.deactivate(token)
            op.end_tool(None)
    assert contextvars.Context().run(_shell) == "ran"
