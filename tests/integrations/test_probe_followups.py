"""Export pipeline and LangChain behaviour a user meets at the edges: forked workers, a backend
that never answers, spans written to without end, invalid endpoints."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.tools import tool
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.trace import StatusCode

import agentguard
from agentguard.config import ConfigError
from agentguard.demo.scripted import ScriptedChatModel, say
from agentguard.events import ModelCall
from tests.genai import plain
from tests.otlp_receiver import ReceivedSpan, decode

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _ConnectionRecorder:
    """An OTLP/HTTP endpoint that remembers which client connection (source port) brought which
    spans: a connection shared by two processes shows up as one port carrying both."""

    def __init__(self) -> None:
        self.requests: list[tuple[int, list[ReceivedSpan]]] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real collector serves it

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = trace_service_pb2.ExportTraceServiceRequest()
                try:
                    request.ParseFromString(body)
                except Exception:
                    self._reply(400, b"")
                    return
                with recorder._lock:
                    recorder.requests.append((self.client_address[1],
                                              decode(request, "http/protobuf")))
                self._reply(200, trace_service_pb2.ExportTraceServiceResponse()
                            .SerializeToString())

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1/traces"

    def __enter__(self) -> _ConnectionRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


_FORKING_AGENT = """
import json, os, sys
import agentguard
from langchain_core.tools import tool

@tool
def whoami(pid: int) -> str:
    '''Say which process ran this call.'''
    return str(pid)

agentguard.instrument(service_name="forking-agent", otlp_endpoint=sys.argv[1],
                      otlp_protocol="http/protobuf", runtime_sensor=False)
whoami.invoke({"pid": os.getpid()})
assert agentguard.flush(5)  # the parent's keep-alive connection to the backend is open now
child = os.fork()
if child == 0:
    whoami.invoke({"pid": os.getpid()})
    flushed = agentguard.flush(5)
    stats = agentguard.stats()
    os._exit(0 if flushed and stats["spans_failed"] == 0 and stats["spans_queued"] == 1 else 3)
_, status = os.waitpid(child, 0)
whoami.invoke({"pid": os.getpid()})
assert agentguard.flush(5)
agentguard.uninstrument()
print(json.dumps({"parent": os.getpid(), "child": child, "status": status}))
"""


def test_a_forked_child_exports_its_own_spans_on_its_own_connection() -> None:
    """A process forked after instrument() (a pre-fork server's worker) exports over a connection
    of its own, never the parent's inherited keep-alive socket, and its spans carry its own
    ``process.pid``; its counters start afresh."""
    with _ConnectionRecorder() as backend:
        done = subprocess.run([sys.executable, "-c", _FORKING_AGENT, backend.url],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
        pids = json.loads(done.stdout.strip().splitlines()[-1])
        assert pids["status"] == 0, "the child's export failed or its counters were inherited"
        deadline = time.monotonic() + 5
        while sum(len(spans) for _, spans in backend.requests) < 3 and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        requests = list(backend.requests)
    spans = [span for _, batch in requests for span in batch]
    assert len(spans) == 3
    for span in spans:
        ran_in = int(json.loads(span.attributes["gen_ai.tool.call.arguments"])["pid"])
        assert span.resource["process.pid"] == ran_in
    ports: dict[int, set[int]] = {}
    for port, batch in requests:
        for span in batch:
            ports.setdefault(port, set()).add(int(span.resource["process.pid"]))
    assert all(len(owners) == 1 for owners in ports.values()), ports
    assert {pid for owners in ports.values() for pid in owners} == {pids["parent"],
                                                                     pids["child"]}


@contextlib.contextmanager
def _silent_endpoint() -> Iterator[str]:
    """An endpoint that accepts connections and never answers (a hung collector, a firewall
    that swallows packets after the handshake)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@tool
def ping(n: int) -> str:
    """Answer a ping."""
    return f"pong {n}"


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_uninstrument_with_a_backend_that_never_answers_returns_quickly(protocol: str) -> None:
    """With the default 10 s export timeout and a backend that never answers, uninstrument()
    gives up on the export that hangs after about a second instead of waiting it out."""
    with _silent_endpoint() as endpoint:
        agentguard.instrument(service_name="hung-backend", exporter="otlp",
                              otlp_protocol=protocol, otlp_endpoint=endpoint,
                              runtime_sensor=False)
        assert ping.invoke({"n": 1}) == "pong 1"
        started = time.monotonic()
        agentguard.uninstrument()
        assert time.monotonic() - started < 3
    assert agentguard.stats()["spans_exported"] == 0


_EXITING_AGENT = """
import sys, time
import agentguard
from langchain_core.tools import tool

@tool
def ping(n: int) -> str:
    '''Answer a ping.'''
    return f"pong {n}"

agentguard.instrument(service_name="hung-backend", otlp_endpoint=sys.argv[1],
                      otlp_protocol=sys.argv[2], runtime_sensor=False)
ping.invoke({"n": 1})
print(time.time(), flush=True)
"""


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_an_agent_exits_promptly_when_the_backend_never_answers(protocol: str) -> None:
    """A process whose OTLP backend hangs ends within a couple of seconds of its last line,
    not after the exporter's timeout."""
    with _silent_endpoint() as endpoint:
        done = subprocess.run([sys.executable, "-c", _EXITING_AGENT, endpoint, protocol],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
        ended = time.time()
    assert done.returncode == 0, done.stderr[-2000:]
    last_line = float(done.stdout.strip().splitlines()[-1])
    assert ended - last_line < 4


def test_span_events_are_bounded_while_the_span_is_open(guarded: Any, spans: Any) -> None:
    """Events written on a span without end are bounded while it is open, as an SDK span bounds
    them: the newest are kept and the export says how many were dropped."""
    guarded(runtime_sensor=False)

    @tool
    def chatty(count: int) -> str:
        """Write many events on the current span."""
        span = trace.get_current_span()
        for index in range(count):
            span.add_event("progress", {"index": index})
        held = getattr(span, "events", None)
        assert held is not None and len(held) <= 128
        return "done"

    assert chatty.invoke({"count": 5000}) == "done"
    exported = spans.one("execute_tool chatty")
    assert len(exported.events) == 128
    assert exported.dropped_events == 5000 - 128
    assert [e.attributes["index"] for e in exported.events][-1] == 4999


def test_an_otlp_endpoint_no_exporter_can_use_fails_instrument_with_the_setting() -> None:
    """An OTLP endpoint the exporter cannot even be built for fails instrument() with a
    configuration error naming the setting, and leaves agentguard uninstrumented."""
    with pytest.raises(ConfigError, match="otlp_endpoint"):
        agentguard.instrument(service_name="bad-endpoint", exporter="otlp",
                              otlp_protocol="grpc", otlp_endpoint="http://[::1")
    assert agentguard.get_guard() is None



class _BreakingModel(ScriptedChatModel):
    """A chat model whose stream breaks after a few words (a dropped connection)."""

    def _stream(self, messages: Any, stop: Any = None, run_manager: Any = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        for word in ("partial", " answer"):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word))
        raise ConnectionResetError("the model endpoint hung up")

    async def _astream(self, messages: Any, stop: Any = None, run_manager: Any = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._stream(messages):
            yield chunk


def _output(span: Any) -> Any:
    return plain(span.attributes["gen_ai.output.messages"])


def test_an_abandoned_chat_stream_keeps_the_part_the_caller_read(guarded: Any,
                                                                 spans: Any) -> None:
    """A chat stream the caller stops reading ends abandoned with the text it did read, which
    the Guard judges, as a Bedrock stream does."""
    seen: list[Any] = []
    guarded(runtime_sensor=False, policy=lambda event: seen.append(event))
    stream = ScriptedChatModel(script=[say("one two three four")]).stream("count")
    assert [next(stream).content, next(stream).content] == ["one", " two"]
    stream.close()
    span = spans.one("chat scripted-1")
    assert span.attributes["agentguard.stream.abandoned"] is True
    assert _output(span) == [{"role": "assistant", "content": "one two"}]
    responses = [e for e in seen if isinstance(e, ModelCall) and e.phase == "response"]
    assert [r.output[0].content for r in responses] == ["one two"]


def test_a_chat_stream_that_fails_keeps_the_part_the_caller_read(guarded: Any,
                                                                  spans: Any) -> None:
    """A chat stream that raises mid-way hands the caller its own exception and fails the span,
    which keeps the text streamed before the failure."""
    guarded(runtime_sensor=False)
    received = []
    with pytest.raises(ConnectionResetError, match="hung up"):
        for chunk in _BreakingModel(script=[]).stream("hi"):
            received.append(chunk.content)
    assert received == ["partial", " answer"]
    span = spans.one("chat scripted-1")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "ConnectionResetError"
    assert [e.name for e in span.events] == ["exception"]
    assert _output(span) == [{"role": "assistant", "content": "partial answer"}]


async def test_an_async_chat_stream_abandoned_or_failing_keeps_its_part(guarded: Any,
                                                                        spans: Any) -> None:
    """``astream`` keeps the part read when abandoned or when it fails, like ``stream``."""
    guarded(runtime_sensor=False)
    stream = ScriptedChatModel(script=[say("a b c")]).astream("hi")
    async for _ in stream:
        break
    await stream.aclose()
    with pytest.raises(ConnectionResetError):
        async for _ in _BreakingModel(script=[]).astream("hi"):
            pass
    abandoned, failed = sorted(spans.named("chat"), key=lambda s: s.start_time)
    assert abandoned.attributes["agentguard.stream.abandoned"] is True
    assert _output(abandoned) == [{"role": "assistant", "content": "a"}]
    assert failed.status.status_code is StatusCode.ERROR
    assert _output(failed) == [{"role": "assistant", "content": "partial answer"}]


_ABANDONING_AGENT = """
import asyncio
import agentguard
from tests.integrations.langchain.agents import call, make_agent, say

agentguard.instrument(service_name="abandoning", exporter="console", runtime_sensor=False)

async def main():
    agent = make_agent([say("", call("get_weather", city="Oslo")), say("done")])
    async for _ in agent.astream({"messages": [("user", "weather?")]}):
        break  # left to asyncio.run to clean up, as many scripts do

asyncio.run(main())
print("finished", flush=True)
"""


def test_an_agent_stream_left_to_asyncio_run_closes_as_it_would_without_agentguard() -> None:
    """An agent ``astream`` the caller breaks out of and leaves to ``asyncio.run``'s clean-up
    is cancelled like an untraced one: no 'ignored GeneratorExit' at exit, its span ended."""
    done = subprocess.run([sys.executable, "-c", _ABANDONING_AGENT], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "finished" in done.stdout
    assert "Exception ignored" not in done.stderr, done.stderr[-2000:]
    assert "GeneratorExit" not in done.stderr
    assert '"name": "invoke_agent support"' in done.stdout
    assert '"agentguard.stream.abandoned": true' in done.stdout


def test_streamed_answers_and_chat_messages_keep_their_roles(guarded: Any, spans: Any) -> None:
    """A streamed answer is recorded as the assistant's (not as its chunk class), and a
    ``ChatMessage`` under the role it names, for the span and the Guard's event alike."""
    from langchain_core.messages import ChatMessage, HumanMessage

    seen: list[Any] = []
    guarded(runtime_sensor=False, policy=lambda event: seen.append(event))
    model = ScriptedChatModel(script=[say("streamed answer")])
    history = [ChatMessage(role="assistant", content="earlier answer"),
               HumanMessage("and now?")]
    assert "".join(str(c.content) for c in model.stream(history)) == "streamed answer"
    span = spans.one("chat scripted-1")
    assert plain(span.attributes["gen_ai.input.messages"]) == [
        {"role": "assistant", "content": "earlier answer"}, {"role": "user", "content": "and now?"}]
    assert _output(span)[0]["role"] == "assistant"
    [response] = [e for e in seen if isinstance(e, ModelCall) and e.phase == "response"]
    assert response.output[0].role == "assistant"


def test_a_full_export_queue_is_said_once_in_the_log(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """When the export queue overflows (a backend that cannot keep up), one warning says so and
    where the count is; the tool calls go on answering."""
    monkeypatch.setenv("AGENTGUARD_MAX_QUEUE_SIZE", "16")
    with _silent_endpoint() as endpoint, caplog.at_level("WARNING", logger="agentguard"):
        agentguard.instrument(service_name="slow-backend", exporter="otlp",
                              otlp_protocol="http/protobuf", otlp_endpoint=endpoint,
                              runtime_sensor=False)
        assert [ping.invoke({"n": n}) for n in range(80)] == [f"pong {n}" for n in range(80)]
        dropped = agentguard.stats()["spans_dropped"]
        agentguard.uninstrument()
    assert dropped > 0
    warnings = [r for r in caplog.records if "export queue is full" in r.getMessage()]
    assert len(warnings) == 1
    assert "spans_dropped" in warnings[0].getMessage()
