"""Threads a tool starts act for that tool call: their events carry its context and land on its
span, and policies scoped to the tool apply to them."""

from __future__ import annotations

import _thread
import asyncio
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import agentguard
from tests.sensors.helpers import Recorder, events, make_tool, run_tool


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock
    sock.close()


def _in_thread(work: Callable[[], None]) -> None:
    thread = threading.Thread(target=work)
    thread.start()
    thread.join(5)


class _Worker(threading.Thread):
    """A Thread subclass with its own run(): the context reaches it too."""

    def __init__(self, work: Callable[[], None]) -> None:
        super().__init__()
        self.work = work

    def run(self) -> None:
        self.work()


def _in_subclass(work: Callable[[], None]) -> None:
    worker = _Worker(work)
    worker.start()
    worker.join(5)


def _in_raw_thread(work: Callable[[], None]) -> None:
    done = threading.Event()

    def body() -> None:
        try:
            work()
        finally:
            done.set()

    _thread.start_new_thread(body, ())
    done.wait(5)


def _in_pool(work: Callable[[], None]) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(work).result(5)


@pytest.mark.parametrize("start", [_in_thread, _in_subclass, _in_raw_thread, _in_pool],
                         ids=["thread", "subclass", "start_new_thread", "pool"])
def test_a_tools_worker_thread_is_attributed_to_the_tool(
        guarded: Any, spans: Any, listener: socket.socket,
        start: Callable[[Callable[[], None]], None]) -> None:
    """A spawn and a connection made by a thread the tool started carry the tool call's
    context and are span events of the tool's span."""
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)
    port = listener.getsockname()[1]

    def work() -> None:
        subprocess.run(["/bin/true"], check=True)
        with socket.create_connection(("127.0.0.1", port)):
            pass

    def fan_out() -> str:
        """Do the work in another thread."""
        start(work)
        return "done"

    run_tool(fan_out, call_id="call-fan")
    (spawn,) = recorder.of("process_exec")
    (connect,) = [e for e in recorder.of("net_connect") if e.port == port]
    span = spans.one("execute_tool fan_out")
    for event in (spawn, connect):
        assert event.context.tool == "fan_out"
        assert event.context.tool_call_id == "call-fan"
        assert event.context.trace_id == format(span.context.trace_id, "032x")
        assert event.context.tid != threading.get_native_id()
    assert [e["process.executable.path"] for e in events(span, "process.exec")] == ["/bin/true"]
    assert [e["network.peer.port"] for e in events(span, "net.connect")] == [port]


def test_a_shared_pool_runs_each_task_in_its_submitters_context(guarded: Any) -> None:
    """One pool serving two tool calls: each task's events belong to the call that submitted
    it, not to the one whose submit started the pool's thread."""
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)
    with ThreadPoolExecutor(max_workers=1) as pool:

        def spawn_in_pool(label: str) -> str:
            """Spawn in the shared pool."""
            pool.submit(subprocess.run, ["/bin/echo", label], check=True,
                        stdout=subprocess.DEVNULL).result(5)
            return label

        run_tool(spawn_in_pool, name="first", call_id="call-1", label="one")
        run_tool(spawn_in_pool, name="second", call_id="call-2", label="two")
    assert [(e.argv[1], e.context.tool, e.context.tool_call_id)
            for e in recorder.of("process_exec")] == [("one", "first", "call-1"),
                                                      ("two", "second", "call-2")]


def test_a_tool_scoped_block_reaches_its_worker_thread(guarded: Any) -> None:
    """In enforce mode a policy that blocks spawns only for one tool blocks them in that tool's
    worker thread too (moving the work to a thread does not escape the rule)."""
    guarded(mode="enforce", builtin_rules=False, policy=[Recorder(
        block=lambda e: e.kind == "process_exec" and e.context.tool == "escape")])
    outcome: list[str] = []

    def work() -> None:
        try:
            subprocess.run(["/bin/true"], check=True)
            outcome.append("ran")
        except PermissionError:
            outcome.append("blocked")

    def escape() -> str:
        """Spawn from a worker thread."""
        _in_thread(work)
        return "done"

    run_tool(escape)
    assert outcome == ["blocked"]


def test_threads_started_outside_agentguards_scopes_are_unchanged(guarded: Any) -> None:
    """A thread started outside any conversation, agent or tool call gets no context."""
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)
    _in_thread(lambda: subprocess.run(["/bin/true"], check=True))
    (spawn,) = recorder.of("process_exec")
    assert spawn.context.tool is None and spawn.context.trace_id is None
    assert agentguard.get_guard() is not None


def test_a_pool_started_in_a_tool_call_does_not_keep_that_call(guarded: Any) -> None:
    """The first submit to a lazily started pool happens inside a tool call; a task submitted
    after that call ended, outside any tool, belongs to no tool call, and a block scoped to the
    first tool does not reach it."""
    recorder = Recorder(block=lambda e: e.kind == "process_exec" and e.context.tool == "first")
    guarded(mode="enforce", policy=[recorder], builtin_rules=False)
    pool = ThreadPoolExecutor(max_workers=1)
    try:

        def first() -> str:
            """Starts the pool's thread."""
            try:
                pool.submit(subprocess.run, ["/bin/echo", "in-tool"], check=True,
                            stdout=subprocess.DEVNULL).result(5)
            except PermissionError:
                return "blocked"
            return "ran"

        assert run_tool(first, call_id="call-1") == "blocked"
        later = pool.submit(subprocess.run, ["/bin/echo", "later"], check=True,
                            stdout=subprocess.DEVNULL).result(5)
    finally:
        pool.shutdown()
    assert later.returncode == 0
    assert [(e.argv[1], e.context.tool, e.context.tool_call_id)
            for e in recorder.of("process_exec")] == [("in-tool", "first", "call-1"),
                                                      ("later", None, None)]


def test_asyncios_default_executor_serves_each_caller_in_its_own_context(guarded: Any) -> None:
    """``run_in_executor`` first called by a tool starts the loop's default pool; later calls
    from another tool and from outside any tool keep their own attribution."""
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)

    def spawn(label: str) -> None:
        subprocess.run(["/bin/echo", label], check=True, stdout=subprocess.DEVNULL)

    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def in_executor(label: str) -> str:
            """Spawn in the loop's default executor."""
            await loop.run_in_executor(None, spawn, label)
            return label

        tool = make_tool(in_executor)
        for label, call_id in (("one", "call-1"), ("two", "call-2")):
            await tool.ainvoke({"name": tool.name, "args": {"label": label}, "id": call_id,
                                "type": "tool_call"})
        await loop.run_in_executor(None, spawn, "outside")

    asyncio.run(main())
    assert [(e.argv[1], e.context.tool_call_id) for e in recorder.of("process_exec")] == [
        ("one", "call-1"), ("two", "call-2"), ("outside", None)]


@pytest.mark.parametrize("submit", ["apply_async", "map", "imap", "imap_unordered", "starmap"])
def test_a_multiprocessing_thread_pool_runs_each_task_in_its_callers_context(
        guarded: Any, submit: str) -> None:
    """A ``multiprocessing.pool.ThreadPool`` created inside one tool call serves a second one:
    each task belongs to the call that handed it over, and a task from outside any tool call to
    none (its threads do not keep the creating call)."""
    from multiprocessing.pool import ThreadPool

    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)
    pools: list[ThreadPool] = []

    def spawn(label: str) -> None:
        subprocess.run(["/bin/echo", label], check=True, stdout=subprocess.DEVNULL)

    def hand_over(label: str) -> None:
        pool = pools[0]
        if submit == "apply_async":
            pool.apply_async(spawn, (label,)).get(5)
        elif submit == "map":
            pool.map(spawn, [label])
        elif submit == "starmap":
            pool.starmap(spawn, [(label,)])
        else:
            list(getattr(pool, submit)(spawn, [label]))

    def create(label: str) -> str:
        """Creates the pool and uses it."""
        pools.append(ThreadPool(2))
        hand_over(label)
        return label

    def reuse(label: str) -> str:
        """Uses the pool another call created."""
        hand_over(label)
        return label

    try:
        run_tool(create, call_id="call-1", label="one")
        run_tool(reuse, call_id="call-2", label="two")
        hand_over("outside")
    finally:
        for pool in pools:
            pool.terminate()
            pool.join()
    assert [(e.argv[1], e.context.tool_call_id) for e in recorder.of("process_exec")] == [
        ("one", "call-1"), ("two", "call-2"), ("outside", None)]


def test_a_process_pool_is_left_alone(guarded: Any) -> None:
    """A process pool pickles its tasks: they reach the children as they were handed over."""
    import multiprocessing

    guarded(policy=[Recorder()], builtin_rules=False)

    def compute() -> str:
        """Uses a process pool."""
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            return repr((pool.map(abs, [-1, -2]), pool.apply_async(abs, (-3,)).get(30)))

    assert run_tool(compute) == "([1, 2], 3)"


def _tool_and_outcome(label: str) -> tuple[str, str | None, str]:
    """In a pool's worker process: the tool call the sensor there attributes work to, and
    whether a spawn ran."""
    from agentguard._context import current_frame

    tool = current_frame().tool
    try:
        subprocess.run(["/bin/echo", label], check=True, stdout=subprocess.DEVNULL)
        outcome = "ran"
    except PermissionError:
        outcome = "blocked"
    return label, getattr(tool, "name", None) if tool is not None else None, outcome


def _forked_executor() -> Any:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))


class _ForkedPool:
    """A forked ``multiprocessing.Pool`` behind the executor's ``submit(...).result()``."""

    def __init__(self) -> None:
        import multiprocessing

        self.pool = multiprocessing.get_context("fork").Pool(1)

    def submit(self, fn: Callable[..., Any], *args: Any) -> _ForkedPool:
        self.pending = self.pool.apply_async(fn, args)
        return self

    def result(self, timeout: float) -> Any:
        return self.pending.get(timeout)

    def shutdown(self) -> None:
        self.pool.terminate()
        self.pool.join()


@pytest.mark.parametrize("make_pool", [_forked_executor, _ForkedPool],
                         ids=["ProcessPoolExecutor", "multiprocessing.Pool"])
def test_a_forked_pool_worker_does_not_keep_the_tool_call_that_started_it(
        guarded: Any, make_pool: Callable[[], Any]) -> None:
    """A process pool forked inside a tool call: its worker is a copy of the tool's thread, but
    it serves every later caller, so it drops that call's context; a task submitted after the
    call ended is neither attributed to it nor blocked by its tool-scoped rule."""
    guarded(mode="enforce", builtin_rules=False, policy=[Recorder(
        block=lambda e: e.kind == "process_exec" and e.context.tool == "starter"
        and "/bin/echo" in (e.argv or []))])
    pools: list[Any] = []

    def starter() -> str:
        """Starts a process pool."""
        pools.append(make_pool())
        return repr(pools[0].submit(_tool_and_outcome, "in-tool").result(60))

    try:
        run_tool(starter)
        later = pools[0].submit(_tool_and_outcome, "later").result(60)
    finally:
        for pool in pools:
            pool.shutdown()
    assert later == ("later", None, "ran")
