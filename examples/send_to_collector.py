"""An ops agent that sends its spans to the agentguard collector, which joins them to what the
agent's processes did in the kernel.

Start a collector (as root it uses eBPF; otherwise, or with ``--sensor procfs``, it polls /proc
and says what it cannot see), then run the agent with the collector's OTLP/HTTP address::

    sudo agentguard collector run --db /tmp/agentguard.db
    AGENTGUARD_COLLECTOR_ENDPOINT=http://127.0.0.1:4318 python examples/send_to_collector.py
    agentguard collector events --db /tmp/agentguard.db          # add --json for scripts
    agentguard collector incidents --db /tmp/agentguard.db

``AGENTGUARD_COLLECTOR_ENDPOINT`` does two things: this script exports its spans there, and the
collector, which looks for that variable in the environment of new processes, starts watching
this process before its first span arrives. The agent's ``check_service`` tool starts a probe
process that polls a health endpoint (a stand-in served by this script) three times. The
collector sees the probe's exec, its connections and its exit, and attributes them to the
conversation, turn and tool call that caused them. (The /proc fallback sensor polls every 0.2 s:
it sees the probe, which runs for about a second, but may miss its short connections; eBPF sees
every one.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from langchain.agents import create_agent
from langchain_core.tools import tool
from opentelemetry import trace

import agentguard
from agentguard.demo.scripted import ScriptedChatModel, call, say

ENDPOINT = os.environ.get("AGENTGUARD_COLLECTOR_ENDPOINT", "http://127.0.0.1:4318")

# The probe a health check runs in its own process (as a real ops tool would shell out to one).
# Healthy only when three probes in a row succeed, like a readiness check's success threshold.
PROBE = """
import sys, time, urllib.request
for attempt in range(3):
    with urllib.request.urlopen(sys.argv[1], timeout=5) as response:
        body = response.read().decode()
    time.sleep(0.3)
print(response.status, body)
"""


class HealthEndpoint(BaseHTTPRequestHandler):
    """A stand-in for an internal service's health endpoint."""

    def do_GET(self) -> None:
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


services: dict[str, str] = {}
tool_spans: dict[str, str] = {}


@tool
def check_service(service: str) -> str:
    """Run the health probe of an internal service."""
    span = trace.get_current_span().get_span_context()
    tool_spans[service] = format(span.span_id, "016x")
    done = subprocess.run([sys.executable, "-c", PROBE, services[service]], capture_output=True,
                          text=True, timeout=15)
    return done.stdout.strip() or done.stderr.strip()[-200:]


def main() -> int:
    agentguard.instrument(service_name="ops-agent", exporter="otlp", otlp_endpoint=ENDPOINT,
                          otlp_protocol="http/protobuf")
    server = ThreadingHTTPServer(("127.0.0.1", 0), HealthEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    services["billing"] = f"http://127.0.0.1:{server.server_address[1]}/health"

    model = ScriptedChatModel(script=[
        say("", call("check_service", service="billing")),
        say("The billing service is healthy."),
    ])
    agent = create_agent(model, [check_service], name="ops-agent")
    try:
        with agentguard.conversation("incident-88", user="oncall"):
            result = agent.invoke({"messages": [("user", "Is billing up?")]})
        print(f"agent: {result['messages'][-1].content}")
    finally:
        agentguard.uninstrument()  # flushes the spans to the collector
        server.shutdown()
    exported = agentguard.stats().get("spans_exported", 0)
    print(f"sent {exported} spans to {ENDPOINT}; check_service span {tool_spans['billing']}")
    print("see what the probe did: agentguard collector events --db <the collector's database>")
    return 0 if exported else 1


if __name__ == "__main__":
    sys.exit(main())
