"""Helpers for the runtime sensor tests: tools built from plain functions, recording policies."""

from __future__ import annotations

import inspect
import itertools
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from langchain_core.tools import StructuredTool

import agentguard

__all__ = ["LoopbackHTTP", "Recorder", "events", "make_tool", "run_tool"]

_ids = itertools.count(1)


def make_tool(fn: Callable[..., Any], name: str | None = None) -> StructuredTool:
    """A LangChain tool running ``fn`` (its docstring is the description); async functions
    become async tools."""
    description = fn.__doc__ or fn.__name__
    if inspect.iscoroutinefunction(fn):
        return StructuredTool.from_function(coroutine=fn, name=name or fn.__name__,
                                            description=description)
    return StructuredTool.from_function(func=fn, name=name or fn.__name__,
                                        description=description)


def run_tool(fn: Callable[..., Any], name: str | None = None, call_id: str | None = None,
             **arguments: Any) -> Any:
    """Invoke ``fn`` as a LangChain tool the way an agent does (with a tool call id)."""
    tool = make_tool(fn, name)
    call = {"name": tool.name, "args": arguments, "id": call_id or f"call-{next(_ids)}",
            "type": "tool_call"}
    return tool.invoke(call).content


def events(span: Any, name: str | None = None) -> list[dict[str, Any]]:
    """The attributes of ``span``'s events (only those called ``name`` when given)."""
    return [dict(event.attributes or {}) for event in span.events
            if name is None or event.name == name]


class Recorder:
    """A policy callback that keeps every event it is shown and blocks or alerts on some."""

    def __init__(self, block: Callable[[Any], bool] | None = None,
                 alert: Callable[[Any], bool] | None = None, rule_id: str = "T-SENSOR") -> None:
        self.block = block
        self.alert = alert
        self.rule_id = rule_id
        self.seen: list[Any] = []
        self._lock = threading.Lock()
        self.__name__ = "recorder"

    def __call__(self, event: Any) -> agentguard.Decision | None:
        with self._lock:
            self.seen.append(event)
        if self.block is not None and self.block(event):
            return agentguard.Decision.block(f"{event.kind} not allowed", rule_id=self.rule_id,
                                             category="runtime", evidence={"kind": event.kind})
        if self.alert is not None and self.alert(event):
            return agentguard.Decision.alert(f"{event.kind} noticed", rule_id=self.rule_id,
                                             category="runtime")
        return None

    def of(self, kind: str) -> list[Any]:
        with self._lock:
            return [event for event in self.seen if event.kind == kind]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self._answer(b"")

    def do_POST(self) -> None:
        self._answer(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _answer(self, received: bytes) -> None:
        self.server.received.append((self.command, self.path, received))
        body = f"ok {self.server.server_address[1]}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class _Server(ThreadingHTTPServer):
    received: list[tuple[str, str, bytes]]


class LoopbackHTTP:
    """A real HTTP server on a free port of 127.0.0.1 answering ``ok <port>`` to every GET and
    POST; ``received`` lists (method, path, body) of every request."""

    def __init__(self) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.received = []
        self.received = self.server.received
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> LoopbackHTTP:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
