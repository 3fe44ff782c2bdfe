"""AI-BOM fixtures: a fresh process inventory per test, the stage detached afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import agentguard
from agentguard import aibom
from agentguard.aibom import _inventory
from agentguard.findings import Finding


@pytest.fixture(autouse=True)
def fresh_inventory() -> Iterator[_inventory.Inventory]:
    """Each test starts from a snapshot of the modules imported so far."""
    yield _inventory.reset()
    if agentguard.get_guard() is not None:
        aibom.disable()


@pytest.fixture
def bom_guard(guarded: Callable[..., agentguard.Guard]
              ) -> Callable[..., tuple[agentguard.Guard, list[Finding]]]:
    """``bom_guard(enable={...}, **instrument_kwargs)``: instrument, enable the AI-BOM, collect findings."""

    def start(enable: dict[str, Any] | None = None, **kwargs: Any
              ) -> tuple[agentguard.Guard, list[Finding]]:
        found: list[Finding] = []
        kwargs.setdefault("on_finding", found.append)
        guard = guarded(**kwargs)
        aibom.enable(**(enable or {}))
        return guard, found

    return start
