"""instrument() / uninstrument(): idempotent, re-callable, undoable, before or after the import."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import agentguard
from agentguard.config import resolve_config

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str, env: dict[str, str] | None = None, timeout: float = 60) -> str:
    import os

    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("AGENTGUARD_", "OTEL_"))}
    full_env.update(env or {})
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=full_env, timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_importing_agentguard_patches_nothing_and_imports_no_framework() -> None:
    """``import agentguard`` leaves LangChain unimported and unpatched."""
    out = _run("""
        import sys, agentguard
        print(any(m.startswith(("langchain", "langgraph")) for m in sys.modules))
    """)
    assert out.strip() == "False"


_INSTRUMENT = """
import agentguard
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
agentguard.instrument(exporter=exporter)
"""
_IMPORT = "from langchain_core.tools import tool\n"
_USE = """
@tool
def ping(x: int) -> int:
    "ping"
    return x
ping.invoke({"x": 1})
agentguard.uninstrument()
print([s.name for s in exporter.get_finished_spans()])
"""


@pytest.mark.parametrize("order", ["instrument-first", "import-first"])
def test_instrument_before_or_after_the_framework_import_traces_its_tools(order: str) -> None:
    """instrument() traces LangChain tools whether it runs before or after ``import langchain_core``."""
    setup = _INSTRUMENT + _IMPORT if order == "instrument-first" else _IMPORT + _INSTRUMENT
    assert _run(setup + _USE).strip() == "['execute_tool ping']"


def test_double_instrument_gives_one_span_per_call(guarded: Any, spans: Any) -> None:
    """Calling instrument() twice patches once: one span per tool call, not two."""
    from tests.integrations.langchain.agents import lookup_customer

    guarded()
    guarded()
    lookup_customer.invoke({"customer_id": 1})
    assert len(spans.named("execute_tool")) == 1


def test_reinstrument_reconfigures(guarded: Any, spans: Any) -> None:
    """A second instrument() call replaces the configuration (here: content capture)."""
    from tests.integrations.langchain.agents import lookup_customer

    guarded(capture_content="full")
    guarded(capture_content="none")
    lookup_customer.invoke({"customer_id": 1})
    assert "gen_ai.tool.call.arguments" not in spans.one("execute_tool lookup_customer").attributes


def test_reinstrument_while_an_agent_runs_loses_none_of_its_spans(guarded: Any,
                                                                   spans: Any) -> None:
    """instrument() called again (from another thread) while an agent is inside a tool: the
    run's spans that end afterwards are still exported, as one unbroken trace."""
    import threading

    from langchain_core.tools import tool

    from tests.integrations.langchain.agents import ScriptedChatModel, call, say

    inside, release = threading.Event(), threading.Event()

    @tool
    def slow(x: int) -> str:
        """Wait for the test."""
        inside.set()
        release.wait(10)
        return "ok"

    from langchain.agents import create_agent

    guarded(service_name="before")
    agent = create_agent(ScriptedChatModel(script=[say("", call("slow", x=1)), say("done")]),
                         [slow])
    worker = threading.Thread(target=lambda: agent.invoke({"messages": [("user", "go")]}))
    worker.start()
    assert inside.wait(10)
    guarded(service_name="after")
    release.set()
    worker.join(10)
    agentguard.flush()
    names = sorted(s.name for s in spans.all())
    assert names == ["chat scripted-1", "chat scripted-1", "execute_tool slow",
                     "invoke_agent LangGraph"]
    assert len({s.context.trace_id for s in spans.all()}) == 1
    ids = {s.context.span_id for s in spans.all()}
    assert all(s.parent is None or s.parent.span_id in ids for s in spans.all())


def test_uninstrument_restores_the_original_methods(guarded: Any, spans: Any) -> None:
    """After uninstrument() the framework's methods are the originals and nothing is traced."""
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.tools import BaseTool

    from tests.integrations.langchain.agents import lookup_customer

    original_run = BaseTool.__dict__["run"]
    original_generate = BaseChatModel.__dict__["generate"]
    guarded()
    assert BaseTool.__dict__["run"] is not original_run
    agentguard.uninstrument()
    assert BaseTool.__dict__["run"] is original_run
    assert BaseChatModel.__dict__["generate"] is original_generate
    lookup_customer.invoke({"customer_id": 1})
    assert spans.all() == []
    assert agentguard.get_guard() is None


def test_instrument_uninstrument_instrument_works_again(guarded: Any) -> None:
    """Instrumenting again after uninstrument() traces again (uninstrument closed the first exporter)."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tests.integrations.langchain.agents import lookup_customer

    guarded()
    agentguard.uninstrument()
    second = InMemorySpanExporter()
    guarded(exporter=second)
    lookup_customer.invoke({"customer_id": 1})
    agentguard.flush()
    assert [s.name for s in second.get_finished_spans()] == ["execute_tool lookup_customer"]


def test_disabled_integration_is_not_patched(guarded: Any, spans: Any) -> None:
    """``disabled_integrations`` leaves that framework alone."""
    from tests.integrations.langchain.agents import make_agent, say

    guarded(disabled_integrations=["langgraph"])
    make_agent([say("hi")]).invoke({"messages": [("user", "x")]})
    assert spans.named("invoke_agent") == []
    assert len(spans.named("chat")) == 1


def test_settings_precedence_kwargs_then_agentguard_env_then_otel_env() -> None:
    """Keyword arguments beat AGENTGUARD_* variables, which beat OTEL_* variables."""
    env = {"OTEL_SERVICE_NAME": "otel-name", "AGENTGUARD_MODE": "enforce",
           "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    assert resolve_config({}, env).service_name == "otel-name"
    assert resolve_config({}, {**env, "AGENTGUARD_SERVICE_NAME": "ag"}).service_name == "ag"
    assert resolve_config({"service_name": "kw"}, env).service_name == "kw"
    assert resolve_config({}, env).mode == "enforce"
    assert resolve_config({}, env).otlp_protocol == "grpc"
    assert resolve_config({}, {}).mode == "monitor"
    assert resolve_config({}, {}).capture_content == "redacted"


@pytest.mark.parametrize(("kwargs", "env", "message"), [
    ({"mode": "observe"}, {}, "mode (from argument mode=): Input should be 'learn', 'monitor' or "
                              "'enforce'; got 'observe'"),
    ({}, {"AGENTGUARD_CAPTURE_CONTENT": "all"}, "capture_content (from environment variable "
                                                "AGENTGUARD_CAPTURE_CONTENT)"),
    ({"exporter": "jaeger"}, {}, "exporter (from argument exporter=): Value error, must be "
                                 "'otlp', 'console', 'none' or a SpanExporter instance"),
    ({}, {"AGENTGUARD_MAX_CONTENT_LENGTH": "ten"}, "max_content_length (from environment variable "
                                                   "AGENTGUARD_MAX_CONTENT_LENGTH)"),
])
def test_bad_settings_fail_with_the_setting_and_its_source(kwargs: dict[str, Any],
                                                            env: dict[str, str], message: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad setting fails at instrument() naming the setting, where it came from and the value."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(agentguard.ConfigError) as info:
        agentguard.instrument(**kwargs)
    assert message in str(info.value)
    assert agentguard.get_guard() is None


def test_unknown_integration_is_refused() -> None:
    """Naming an integration that does not exist is an error that lists the available ones."""
    with pytest.raises(agentguard.ConfigError, match=r"unknown integration.*mcp.*available: langchain"):
        agentguard.instrument(integrations=["mcp"], exporter="none")


def test_agentguard_run_instruments_a_program_without_code_changes(tmp_path: Path) -> None:
    """``agentguard run -- python agent.py`` traces an unmodified program (console exporter)."""
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent("""
        from langchain_core.tools import tool

        @tool
        def ping(x: int) -> int:
            "ping"
            return x + 1

        print("result", ping.invoke({"x": 41}))
    """))
    existing = tmp_path / "site"
    existing.mkdir()
    (existing / "sitecustomize.py").write_text("import os\nos.environ['CHAINED'] = 'yes'\n")
    (tmp_path / "check.py").write_text("import os\nprint('chained', os.environ.get('CHAINED'))\n")
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTGUARD_", "OTEL_"))}
    env["PYTHONPATH"] = str(existing)
    agentguard_cli = [sys.executable, "-m", "agentguard"]
    done = subprocess.run([*agentguard_cli, "run", "--exporter", "console", "--service-name",
                           "launched", "--", sys.executable, str(script)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "result 42" in done.stdout
    start = done.stdout.index("{")
    span = json.loads(done.stdout[start:done.stdout.rindex("}") + 1])
    assert span["name"] == "execute_tool ping"
    assert span["attributes"]["gen_ai.tool.call.arguments"] == '{"x":41}'
    assert span["resource"]["attributes"]["service.name"] == "launched"
    chained = subprocess.run([*agentguard_cli, "run", "--exporter", "none", "--",
                              sys.executable, str(tmp_path / "check.py")],
                             capture_output=True, text=True, env=env, timeout=60)
    assert chained.stdout.strip() == "chained yes"


def test_agentguard_run_rejects_bad_settings_before_starting(tmp_path: Path) -> None:
    """``agentguard run`` with an invalid setting exits with status 2 and names the setting."""
    done = subprocess.run([sys.executable, "-m", "agentguard", "run", "--", sys.executable, "-c",
                           "print('started')"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "AGENTGUARD_MODE": "yolo"})
    assert done.returncode == 2
    assert "started" not in done.stdout
    assert "mode (from environment variable AGENTGUARD_MODE)" in done.stderr


def test_events_built_on_the_hot_path_equal_validated_ones() -> None:
    """Events the Guard builds without validation are the same as validated events, field for
    field, so policies and sinks see exactly what a parsed event would give them."""
    import time

    from agentguard.events import EventContext, ToolCall, parse_event, trusted

    ctx_values = {"agent": "a", "conversation_id": "c", "user": None, "turn": 2,
                  "trace_id": "0" * 31 + "1", "span_id": "0" * 15 + "2", "tool": "t",
                  "tool_call_id": "id", "pid": 1, "tid": 2}
    assert list(ctx_values) == list(EventContext.model_fields)
    ctx = trusted(EventContext, dict(ctx_values))
    values = {"context": ctx, "timestamp": time.time(), "kind": "tool_call", "tool": "t",
              "call_id": "id", "arguments": {"q": 1}, "result": [1], "error": None,
              "phase": "result", "unknown": False}
    assert list(values) == list(ToolCall.model_fields)
    event = trusted(ToolCall, values)
    validated = parse_event(event.model_dump())
    assert validated == event
    assert event.model_dump_json() == validated.model_dump_json()
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ctx.agent = "changed"  # type: ignore[misc]


def test_tool_calls_requested_before_uninstrument_are_not_claimed_after(guarded: Any) -> None:
    """A tool call a model asked for under one instrumentation does not lend its id to a run of
    the same tool after uninstrument() and instrument() again."""
    from agentguard._tool import expect_tool_call, pending_tool_calls

    @agentguard.tool
    def refund(order: str) -> str:
        """Refund one order."""
        return f"refunded {order}"

    guarded()
    with agentguard.conversation("ticket-1"):
        expect_tool_call("refund", "tu-stale", {"order": "A-1"})
    assert pending_tool_calls() == 1
    agentguard.uninstrument()
    assert pending_tool_calls() == 0

    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    second = InMemorySpanExporter()  # uninstrument() shut the first exporter down
    guarded(exporter=second)
    with agentguard.conversation("ticket-1"):
        assert refund(order="A-1") == "refunded A-1"
    agentguard.flush()
    (span,) = [s for s in second.get_finished_spans() if s.name == "execute_tool refund"]
    assert "gen_ai.tool.call.id" not in (span.attributes or {})
