"""An instrumented LangChain agent that reports to a collector, run as its own process.

Usage: ``collector_agent.py LISTENER_PORT CONVERSATION_ID``, configured by its environment as a
deployment would configure it (``AGENTGUARD_COLLECTOR_ENDPOINT``, ``OTEL_RESOURCE_ATTRIBUTES``).
It builds a real ``create_agent`` agent on the scripted model, prints ``{"ready": true}`` and
waits for ``go`` on stdin (so the collector is up and watching it before anything happens), then
instruments itself and runs two turns of one conversation: a plain answer, then a tool
call whose body starts a Python child that connects to the loopback listener, sends a request and
holds the connection open long enough for the ``/proc`` sensor's polls too. It prints the pid of
that child and exits.
"""

from __future__ import annotations

import json
import subprocess
import sys

# The child: connect, send, keep the connection for 0.6 s (three /proc polls), close.
CHILD = (
    "import socket, sys, time\n"
    "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5)\n"
    "s.sendall(('GET /' + sys.argv[2] + ' HTTP/1.0\\r\\n\\r\\n').encode())\n"
    "time.sleep(0.6)\n"
    "s.close()\n"
)


def main() -> int:
    port, conversation = int(sys.argv[1]), sys.argv[2]
    from langchain.agents import create_agent
    from langchain_core.tools import tool

    import agentguard
    from agentguard.demo.scripted import ScriptedChatModel, call, say

    children: list[int] = []

    @tool
    def fetch_report(report: str, port: int) -> str:
        """Fetch a report from the internal reporting service."""
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(port), report])
        children.append(child.pid)
        child.wait(timeout=20)
        return f"report {report}: {child.returncode}"

    model = ScriptedChatModel(script=[
        say("Hello, how can I help?"),
        say("", call("fetch_report", call_id="call_report_1", report="q3-revenue", port=port)),
        say("The Q3 revenue report is ready."),
    ])
    agent = create_agent(model, [fetch_report], name="reports")
    print(json.dumps({"ready": True}), flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    agentguard.instrument(service_name="phoenix-collector-agent")
    try:
        with agentguard.conversation(conversation, user="tester"):
            agent.invoke({"messages": [("user", "hello")]})
            agent.invoke({"messages": [("user", "fetch the q3 revenue report")]})
    finally:
        agentguard.uninstrument()
    print(json.dumps({"children": children}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
