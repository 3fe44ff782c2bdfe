"""Shared fixtures: an in-memory span exporter and an instrument() that is always undone."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentguard

# Tests never send anything to a real OTLP endpoint unless they start one themselves.
for _name in list(os.environ):
    if _name.startswith(("AGENTGUARD_", "OTEL_")) and _name != "AGENTGUARD_REQUIRE_EBPF":
        del os.environ[_name]


class Spans:
    """Finished spans of the in-memory exporter, flushed first."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def all(self) -> list[ReadableSpan]:
        agentguard.flush()
        return list(self.exporter.get_finished_spans())

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.all() if s.name.startswith(prefix)]

    def one(self, name: str) -> ReadableSpan:
        found = [s for s in self.all() if s.name == name]
        assert len(found) == 1, f"expected one span {name!r}, got {[s.name for s in self.all()]}"
        return found[0]

    def clear(self) -> None:
        agentguard.flush()
        self.exporter.clear()


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> Spans:
    return Spans(exporter)


@pytest.fixture
def guarded(exporter: InMemorySpanExporter) -> Iterator[Callable[..., agentguard.Guard]]:
    """``guarded(**kwargs)`` instruments with the in-memory exporter; undone after the test."""

    def start(**kwargs: Any) -> agentguard.Guard:
        kwargs.setdefault("exporter", exporter)
        kwargs.setdefault("service_name", "test-agent")
        return agentguard.instrument(**kwargs)

    yield start
    agentguard.uninstrument()


@pytest.fixture(autouse=True)
def _always_uninstrumented() -> Iterator[None]:
    yield
    if agentguard.get_guard() is not None:
        agentguard.uninstrument()
    # Turn counters live as long as the process: each test starts its conversations afresh.
    from agentguard import _state

    _state.conversations.clear()
