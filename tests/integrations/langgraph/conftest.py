"""Each test starts with no human messages waiting in any LangGraph thread: the ones an earlier
test wrote (some blocked in enforce mode, so never answered) would otherwise be judged in its
place when threads are evicted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentguard.integrations import langgraph


@pytest.fixture(autouse=True)
def _no_pending_turns() -> Iterator[None]:
    _forget()
    yield
    _forget()


def _forget() -> None:
    langgraph._pending.clear()
    langgraph._blocking.clear()
    # The first eviction is said in the log once per process: once per test here.
    langgraph._warned = False
