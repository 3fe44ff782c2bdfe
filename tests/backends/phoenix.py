"""Arize Phoenix as a real, local trace backend for the tests: a server process and its REST API.

``PhoenixServer`` runs ``phoenix serve`` in its own process on loopback ports, with its SQLite
database and working directory in a temporary folder, telemetry and every outside request turned
off, and its output in a log file (a pipe nobody reads would fill up and stall it). Spans are read
back through the REST API (``GET /v1/projects/{project}/spans``), attributes flattened to their
dotted OpenTelemetry keys.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["PHOENIX_ENVIRONMENT", "PhoenixServer", "PhoenixSpan", "free_port", "phoenix_version",
           "wait_for"]

T = TypeVar("T")

# What makes a Phoenix server private to a test: nothing leaves the host (no analytics pixels, no
# web fonts, no sandbox binary download), and the parts not needed here (the LLM assistant, the
# MCP server) stay off, which also shortens start-up. docs/backends.md gives the same settings.
PHOENIX_ENVIRONMENT = {
    "PHOENIX_TELEMETRY_ENABLED": "false",
    "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
    "PHOENIX_DISABLE_AGENT_ASSISTANT": "true",
    "PHOENIX_ENABLE_MCP_SERVER": "false",
    "PHOENIX_ENABLE_PROMETHEUS": "false",
    "PHOENIX_LOG_MIGRATIONS": "false",
    "PHOENIX_DB_LOGGING_LEVEL": "warning",
}


def phoenix_version() -> str | None:
    """The installed ``arize-phoenix`` version, or ``None`` (read from metadata: importing
    Phoenix itself takes many seconds)."""
    try:
        return metadata.version("arize-phoenix")
    except metadata.PackageNotFoundError:
        return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(condition: Callable[[], T | None], *, timeout: float, interval: float = 0.2,
             what: str = "condition") -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout:.0f}s (last value {value!r})")
        time.sleep(interval)


@dataclass(frozen=True)
class PhoenixSpan:
    """One span as Phoenix's REST API returns it."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    attributes: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    status_code: str = "UNSET"

    def event_names(self) -> list[str]:
        return [str(event.get("name")) for event in self.events]


class PhoenixServer:
    """One Phoenix server process on loopback; ``start()``, ``wait_ready()``, ``stop()``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.log_path = workdir / "phoenix.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self._started_at = 0.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def otlp_http_endpoint(self) -> str:
        """Phoenix takes OTLP/HTTP on its web port, at ``/v1/traces``."""
        return f"{self.base_url}/v1/traces"

    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    def environment(self) -> dict[str, str]:
        """This process's environment without OTel or Phoenix settings, plus a private server's."""
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("OTEL_", "PHOENIX_", "AGENTGUARD_"))}
        env.update(PHOENIX_ENVIRONMENT)
        env.update({
            "HOME": str(self.workdir),
            "PHOENIX_WORKING_DIR": str(self.workdir),
            "PHOENIX_SQL_DATABASE_URL": f"sqlite:///{self.workdir / 'phoenix.db'}",
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(self.http_port),
            "PHOENIX_GRPC_PORT": str(self.grpc_port),
        })
        return env

    def start(self) -> PhoenixServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._started_at = time.monotonic()
        with self.log_path.open("wb") as log:
            # Its own session, so stop() can end the server and anything it started, and no
            # terminal signal meant for pytest reaches it.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "phoenix.server.main", "serve"],
                cwd=self.workdir, env=self.environment(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_ready(self, timeout: float) -> float:
        """Wait until ``/healthz`` answers; returns the start-up time in seconds."""
        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"Phoenix exited with status {self.process.returncode}:\n"
                                     f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        try:
            wait_for(ready, timeout=timeout, interval=0.25, what="Phoenix /healthz")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nPhoenix log:\n{self.log_tail()}") from None
        self.startup_seconds = time.monotonic() - self._started_at
        return self.startup_seconds

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the server's process group, SIGKILL after ``timeout``."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        except ProcessLookupError:
            pass

    # -- the REST API ----------------------------------------------------------------------

    def get(self, path: str, **query: Any) -> Any:
        """``GET`` a JSON document from the REST API; ``None`` on 404 (e.g. no such project)."""
        url = f"{self.base_url}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise AssertionError(f"GET {url}: HTTP {exc.code}: {exc.read()[:2000]!r}") from None

    def spans(self, project: str = "default", *, trace_ids: list[str] | None = None,
              max_pages: int = 20) -> list[PhoenixSpan]:
        """Every span of ``project`` (optionally of these traces), following the cursor."""
        found: list[PhoenixSpan] = []
        cursor: str | None = None
        for _ in range(max_pages):
            query: dict[str, Any] = {"limit": 1000}
            if trace_ids:
                query["trace_id"] = trace_ids
            if cursor:
                query["cursor"] = cursor
            page = self.get(f"/v1/projects/{urllib.parse.quote(project, safe='')}/spans", **query)
            if page is None:
                return found
            for item in page["data"]:
                context = item["context"]
                found.append(PhoenixSpan(
                    name=item["name"], trace_id=context["trace_id"], span_id=context["span_id"],
                    parent_id=item.get("parent_id"), attributes=dict(item.get("attributes") or {}),
                    events=list(item.get("events") or []),
                    status_code=str(item.get("status_code", "UNSET"))))
            cursor = page.get("next_cursor")
            if not cursor:
                return found
        raise AssertionError(f"more than {max_pages} pages of spans in {project!r}")
