"""One fresh interpreter's run of the sensor through its main behaviours, printed as JSON.

Run by ``test_native.py`` once with the C hook and once with the pure-Python hook
(``AGENTGUARD_SENSOR_HOOK=python``): both must print the same observations.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from typing import Any

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentguard
from agentguard import sensors


def _policy(event: Any) -> agentguard.Decision | None:
    if event.kind == "process_exec" and event.executable == "/bin/false":
        return agentguard.Decision.block("false is not allowed", rule_id="NO-FALSE")
    if event.kind == "net_connect" and event.port == BLOCKED_PORT:
        return agentguard.Decision.block("that port is closed", rule_id="NO-PORT")
    return None


def _refused(fn: Any) -> str | None:
    try:
        fn()
    except PermissionError as exc:
        return f"{exc.errno} {type(exc).__name__}"
    return None


BLOCKED_PORT = 0


def main() -> None:
    global BLOCKED_PORT
    folder = tempfile.mkdtemp(prefix="agentguard-scenario-")
    ordinary = os.path.join(folder, "notes.txt")
    secret = os.path.join(folder, ".env")
    for path in (ordinary, secret):
        with open(path, "w") as handle:
            handle.write("x")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    BLOCKED_PORT = closed.getsockname()[1]
    exporter = InMemorySpanExporter()
    guard = agentguard.instrument(exporter=exporter, service_name="scenario", mode="enforce",
                                  policy=[_policy], builtin_rules=False,
                                  injection_detection=False)
    out: dict[str, Any] = {"hook": sensors.hook_kind()}
    op = guard.start_tool("scenario_tool", call_id="call-1")
    token = op.activate()
    try:
        subprocess.run(["/bin/true"], check=True)
        out["blocked_spawn"] = _refused(lambda: subprocess.run(["/bin/false"]))
        for _ in range(2):
            with open(ordinary) as handle:
                handle.read()
        with open(secret) as handle:
            handle.read()
        with open(os.path.join(folder, "out.txt"), "w") as handle:
            handle.write("y")
        socket.getaddrinfo("127.0.0.1", 80)
        socket.getaddrinfo("localhost", 80)
        with socket.create_connection(listener.getsockname()):
            pass
        out["blocked_connect"] = _refused(
            lambda: socket.create_connection(("127.0.0.1", BLOCKED_PORT)))
        import wave  # noqa: F401  (a first import of a package: a module.load event)

        from agentguard.sensors import _hook

        def replace_hook_code() -> None:
            _hook.HOOK.__code__ = (lambda event, args: None).__code__

        out["blocked_tamper"] = _refused(replace_hook_code)
        child = os.path.join(folder, "child.txt")
        os.system(f"echo \"$AGENTGUARD_TOOL_CALL_ID\" > {child}")
        with open(child) as handle:
            out["system_child"] = handle.read().strip()
    finally:
        op.deactivate(token)
        op.end_tool(None)
    agentguard.flush()
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "execute_tool scenario_tool"]
    kept = ("file.path", "agentguard.file.category", "agentguard.file.write", "dns.question.name",
            "agentguard.module.name", "agentguard.decision", "process.executable.path",
            "network.peer.port", "agentguard.finding.rule_id")
    ports = {listener.getsockname()[1]: "listener", BLOCKED_PORT: "blocked"}
    out["events"] = []
    for event in span.events:
        attributes = {key: value for key, value in (event.attributes or {}).items()
                      if key in kept}
        if isinstance(attributes.get("file.path"), str):
            attributes["file.path"] = attributes["file.path"].replace(folder, "<folder>")
        if "network.peer.port" in attributes:
            attributes["network.peer.port"] = ports.get(attributes["network.peer.port"], "other")
        out["events"].append([event.name, attributes])
    agentguard.uninstrument()
    before = sensors.stats()["events"]
    with open(secret) as handle:
        handle.read()
    subprocess.run(["/bin/true"], check=True)
    out["events_after_uninstrument"] = sensors.stats()["events"] - before
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
