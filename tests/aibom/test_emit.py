"""The inventory as ``agentguard.aibom`` spans: deltas, bounds, the last emission, the store's merge."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import agentguard
from agentguard import aibom
from agentguard.aibom import _emit, _wire
from agentguard.collector.store import Store
from tests.aibom.models import read_safetensors, write_safetensors
from tests.sensors.helpers import run_tool


def _bom_spans(spans: Any) -> list[Any]:
    agentguard.flush()
    return [span for span in spans.all() if span.name == _wire.SPAN_NAME]


def _entries(span: Any) -> list[_wire.Entry]:
    decoded = [_wire.decode_event(dict(event.attributes)) for event in span.events]
    return [entry for entry in decoded if entry is not None]


@pytest.fixture
def emitting(guarded: Any, spans: Any) -> Any:
    """Instrumented with the AI-BOM on; the timer is slow, so each test emits by hand."""
    guarded()
    aibom.enable(emit_interval=3600)
    _emit.emitter().reset()
    spans.clear()
    return spans


def test_first_emission_is_the_whole_inventory_then_only_changes(
        emitting: Any, tmp_path: Path) -> None:
    """The first emission carries every inventory entry; the next ones only what was added or
    changed (a model file a tool loaded, with its digest), and nothing at all when nothing did."""
    emitter = _emit.emitter()
    assert emitter.emit() >= 1
    first = _bom_spans(emitting)
    assert all(dict(span.attributes)[_wire.ATTR_FULL] is True for span in first)
    assert all(span.parent is None for span in first)
    sent = {(e.kind, e.key) for span in first for e in _entries(span)}
    assert len(sent) == len(_wire.entries_of(aibom.inventory()))
    emitting.clear()

    assert emitter.emit() == 0
    assert _bom_spans(emitting) == []

    model = write_safetensors(tmp_path / "embeddings.safetensors", {"w": [1.0, 2.0]})
    run_tool(lambda path: len(read_safetensors(path)), "embed", path=str(model))
    aibom.inventory().settle(10)
    assert emitter.emit() == 1
    [delta] = _bom_spans(emitting)
    attributes = dict(delta.attributes)
    assert attributes[_wire.ATTR_FULL] is False
    assert attributes[_wire.ATTR_SEQUENCE] == 2
    changed = {e.kind: e for e in _entries(delta)}
    assert changed["artifact"].key == str(model)
    assert len(changed["artifact"].data["sha256"]) == 64
    assert changed["artifact"].data["tool"] == "embed"
    assert len(_entries(delta)) < len(sent)


def test_emission_is_split_and_bounded(emitting: Any, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A large inventory goes out in spans of at most 100 entries and a bounded number of spans
    per emission; what did not fit is counted on the span and goes out next time."""
    package = tmp_path / "many"
    package.mkdir()
    for index in range(250):
        (package / f"bomlocal_{index}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(package))

    def import_all() -> int:
        import importlib

        for index in range(250):
            importlib.import_module(f"bomlocal_{index}")
        return 250

    run_tool(import_all, "load_plugins")
    total = len(_wire.entries_of(aibom.inventory()))
    assert total > 250
    monkeypatch.setattr(_emit, "MAX_SPANS", 2)
    emitter = _emit.emitter()
    assert emitter.emit() == 2
    first = _bom_spans(emitting)
    assert [len(span.events) for span in first] == [100, 100]
    assert {dict(s.attributes)[_wire.ATTR_PENDING] for s in first} == {total - 200}
    assert {dict(s.attributes)[_wire.ATTR_FULL] for s in first} == {False}
    assert [dict(s.attributes)[_wire.ATTR_PART] for s in first] == [0, 1]
    emitting.clear()
    monkeypatch.setattr(_emit, "MAX_SPANS", 32)
    emitter.emit()
    rest = _bom_spans(emitting)
    sent = [e for span in first + rest for e in _entries(span)]
    assert len({(e.kind, e.key) for e in sent}) == total
    assert all(len(span.events) <= _wire.MAX_ENTRIES_PER_SPAN for span in rest)
    modules = [e for e in sent if e.kind == "module" and e.key.startswith("bomlocal_")]
    assert len(modules) == 250 and modules[0].data["tool"] == "load_plugins"


def test_uninstrument_sends_the_last_changes(emitting: Any, tmp_path: Path) -> None:
    """``uninstrument()`` sends what changed since the last emission, marked final, before the
    export pipeline closes."""
    _emit.emitter().emit()
    model = write_safetensors(tmp_path / "late.safetensors", {"w": [3.0]})
    run_tool(lambda path: len(read_safetensors(path)), "late_load", path=str(model))
    emitting.clear()
    agentguard.uninstrument()
    [last] = [span for span in emitting.all() if span.name == _wire.SPAN_NAME]
    assert dict(last.attributes)[_wire.ATTR_FINAL] is True
    assert str(model) in {e.key for e in _entries(last)}


def test_emission_runs_on_its_own_thread(guarded: Any, spans: Any, tmp_path: Path) -> None:
    """With a short interval the timer thread sends the inventory without the agent doing
    anything, and ``emit_interval=0`` stops it."""
    from tests.collector.helpers import wait_for

    guarded()
    aibom.enable(emit_interval=0.1)
    _emit.emitter().reset()
    aibom.enable(emit_interval=0.1)
    wait_for(lambda: _bom_spans(spans), timeout=10)
    assert _emit.emitter().running()
    aibom.enable(emit_interval=0)
    assert not _emit.emitter().running()
    # The timer reset() left behind (as in a forked child, or here) stops emitting too: no
    # thread goes on sending the inventory a second time.
    import threading

    wait_for(lambda: not [t for t in threading.enumerate() if t.name == "agentguard-aibom-emit"],
             timeout=10)


def test_interval_setting(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
                          ) -> None:
    """The interval comes from the argument, else AGENTGUARD_AIBOM_EMIT_INTERVAL, else 60 s; a
    value that is not a number warns and keeps the default."""
    monkeypatch.delenv(_emit.ENV_INTERVAL, raising=False)
    assert _emit.interval_from() == 60.0
    monkeypatch.setenv(_emit.ENV_INTERVAL, "5")
    assert _emit.interval_from() == 5.0
    assert _emit.interval_from(0) == 0.0
    assert _emit.interval_from(0.001) == _emit.MIN_INTERVAL
    monkeypatch.setenv(_emit.ENV_INTERVAL, "soon")
    assert _emit.interval_from() == 60.0
    assert "AGENTGUARD_AIBOM_EMIT_INTERVAL='soon'" in capsys.readouterr().err


def _add(store: Store, pid: int = 41, *, started: float = 1000.0, sequence: int = 1,
         entries: list[tuple[str, str, dict[str, Any]]] | None = None, final: bool = False) -> int:
    return store.add_inventory(service="svc", host="node-a", pid=pid, started=started,
                               sequence=sequence, final=final, info={"python": "3.11"},
                               entries=entries if entries is not None else [])


def test_store_merges_counts_gaps_and_replaces_a_reused_pid(tmp_path: Path) -> None:
    """The store merges an agent's deltas into one inventory, counts emissions it never got,
    and starts over when the same pid belongs to a new process."""
    store = Store(str(tmp_path / "c.db"))
    assert _add(store, entries=[("library", "a", {"version": "1"}),
                                ("library", "b", {"version": "1"})]) == 2
    _add(store, sequence=1, entries=[("library", "c", {"version": "1"})])  # a second part
    _add(store, sequence=4, entries=[("library", "a", {"version": "2"})])
    store.commit()
    [agent] = store.inventories()
    assert (agent["sequence"], agent["gaps"], agent["entries"]) == (4, 2, 3)
    entries = {row["key"]: row["data"] for row in store.inventory_entries(agent["id"])}
    assert entries["a"] == {"version": "2"}
    _add(store, started=2000.0, entries=[("library", "z", {})], final=True)
    store.commit()
    [again] = store.inventories()
    assert [row["key"] for row in store.inventory_entries(again["id"])] == ["z"]
    assert again["final"] is True and again["gaps"] == 0
    store.close()


def test_store_bounds_entries_and_agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the per-agent entry limit new entries are counted, not stored; past the agent limit
    the agent heard from least recently goes; retention drops idle agents."""
    from agentguard.collector import store as store_module

    monkeypatch.setattr(store_module, "MAX_AIBOM_ENTRIES", 3)
    monkeypatch.setattr(store_module, "MAX_AIBOM_AGENTS", 2)
    store = Store(str(tmp_path / "c.db"))
    _add(store, entries=[("module", f"m{i}", {}) for i in range(5)])
    store.commit()
    [agent] = store.inventories()
    assert (agent["entries"], agent["dropped"]) == (3, 2)
    _add(store, pid=42)
    _add(store, pid=43)
    store.commit()
    assert sorted(a["pid"] for a in store.inventories()) == [42, 43]
    assert store.prune_inventories(max_age_ns=-10**12) == 2
    assert store.inventories() == []
    store.close()


def test_wire_refuses_malformed_entries() -> None:
    """A span event without a known kind or a key is not an entry; foreign attributes and
    oversized lists are cut."""
    assert _wire.decode_event({"agentguard.aibom.kind": "rootkit", "agentguard.aibom.key": "x"}) \
        is None
    assert _wire.decode_event({"agentguard.aibom.kind": "library"}) is None
    entry = _wire.decode_event({"agentguard.aibom.kind": "library", "agentguard.aibom.key": "x",
                                "agentguard.aibom.modules": [str(i) for i in range(100)],
                                "other": "ignored"})
    assert entry is not None and len(entry.data["modules"]) == _wire.MAX_LIST
    assert "other" not in entry.data
    assert _wire.decode_span({"process.pid": "1"}, [], "svc") is None
    assert sys.modules.get("agentguard.aibom._wire") is _wire


def test_emission_through_the_applications_tracer_provider(tmp_path: Path) -> None:
    """With the application's own SDK tracer provider, the inventory spans go through its
    pipeline with every entry as an event (within the SDK's event limit)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    agentguard.instrument(tracer_provider=provider, service_name="app-agent")
    aibom.enable(emit_interval=3600)
    _emit.emitter().reset()
    sent = _emit.emitter().emit()
    finished = [span for span in exporter.get_finished_spans() if span.name == _wire.SPAN_NAME]
    assert len(finished) == sent >= 1
    entries = [e for span in finished for e in _entries(span)]
    assert len(entries) == len(_wire.entries_of(aibom.inventory()))
    assert all(span.parent is None for span in finished)


def test_aibom_db_without_inventories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``agentguard aibom --db`` on a collector database no agent sent an inventory to says so."""
    from agentguard.cli import main

    db = str(tmp_path / "collector.db")
    Store(db).close()
    assert main(["aibom", "--db", db]) == 2
    assert "no agent inventories" in capsys.readouterr().err
    assert main(["aibom", "--db", str(tmp_path / "missing.db")]) == 2
    assert "no collector database" in capsys.readouterr().err


def test_forked_child_starts_over_as_a_new_agent(emitting: Any) -> None:
    """A forked child forgets what its parent sent: its first emission is a full copy under its
    own pid, sequence 1, from a timer thread of its own."""
    import os

    emitter = _emit.emitter()
    emitter.emit()
    assert emitter.sequence == 1
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        code = 1
        try:
            emitting.clear()
            if emitter.sequence == 0 and emitter.running() and emitter.emit() >= 1:
                spans = _bom_spans(emitting)
                attributes = dict(spans[0].attributes)
                if attributes[_wire.ATTR_PID] == os.getpid() and attributes[_wire.ATTR_FULL] \
                        and attributes[_wire.ATTR_SEQUENCE] == 1:
                    code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert emitter.sequence == 1
