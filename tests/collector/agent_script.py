"""A small instrumented agent for the collector tests, run as its own process.

It sends its spans by OTLP to the collector given on the command line (or, given ``env``, where
its environment says), waits for ``go`` on stdin (so the test can first make sure the collector
watches it), then runs one LangChain tool whose
body starts ``sh -c`` with a grandchild that connects to the given loopback port, and a second
tool that connects from the agent process itself through native code (libc ``connect``), which
the in-process sensor cannot see, and a third whose child outlives it. It prints the ids of the
tool spans as JSON and exits.
"""

from __future__ import annotations

import ctypes
import json
import socket
import subprocess
import sys
import threading

import agentguard


def main() -> int:
    endpoint, protocol, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if endpoint == "env":
        # Configured by the environment alone (AGENTGUARD_COLLECTOR_ENDPOINT and friends).
        agentguard.instrument(service_name="kernel-test-agent", capture_content="full")
    else:
        agentguard.instrument(service_name="kernel-test-agent", exporter="otlp",
                              otlp_endpoint=endpoint, otlp_protocol=protocol,
                              capture_content="full")
    from langchain_core.tools import tool
    from opentelemetry import trace

    seen: dict[str, dict[str, object]] = {}

    def remember(name: str) -> None:
        context = trace.get_current_span().get_span_context()
        seen[name] = {"trace_id": format(context.trace_id, "032x"),
                      "span_id": format(context.span_id, "016x"),
                      "thread": threading.get_native_id()}

    @tool
    def run_shell(command: str) -> str:
        """Run a shell command."""
        remember("run_shell")
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=20)
        return done.stdout[-200:]

    @tool
    def native_connect(target: str) -> str:
        """Connect through libc, below Python's audit hooks."""
        remember("native_connect")
        libc = ctypes.CDLL(None, use_errno=True)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        address = socket.inet_aton("127.0.0.1")
        sockaddr = (ctypes.c_ubyte * 16)(2, 0, port >> 8, port & 0xFF, *address, *([0] * 8))
        result = libc.connect(sock.fileno(), sockaddr, 16)
        sock.close()
        return str(result)

    @tool
    def background(command: str) -> str:
        """Start a command and return without waiting for it."""
        remember("background")
        subprocess.Popen(["sh", "-c", command], start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return "started"

    print(json.dumps({"ready": True}), flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    grandchild = (f"{sys.executable} -c 'import socket; s = socket.create_connection("
                  f"(\"127.0.0.1\", {port})); s.sendall(b\"exfiltrated-secret\" * 64); s.close()'")
    with agentguard.conversation("conv-kernel", user="tester"):
        run_shell.invoke({"command": f"echo start; {grandchild}; echo done"})
        native_connect.invoke({"target": "127.0.0.1"})
        # Outlives the tool call: its connection comes after the tool's span was exported.
        background.invoke({"command": f"sleep 1.5; {grandchild}"})
    agentguard.flush()
    print(json.dumps(seen), flush=True)
    agentguard.uninstrument()
    return 0


if __name__ == "__main__":
    sys.exit(main())
