"""Names the collector reads from agents' spans and writes onto forwarded spans.

Names shared with the library (the in-process sensor's span events and attributes) come from
:mod:`agentguard.semconv`; the ones defined here are the collector's own.
"""

from __future__ import annotations

from agentguard import semconv

__all__ = [
    "AG_ATTRIBUTION",
    "AG_BYTES_SENT",
    "AG_CHILD_PIDS",
    "AG_CONNECT_RESULT",
    "AG_KERNEL_ONLY",
    "AG_OPEN_WRITE",
    "AG_SENSOR",
    "AG_SENT_BY_OTHER",
    "DNS_QUESTION_NAME",
    "ENV_IDENTITY_PREFIX",
    "ENV_TRACEPARENT",
    "FILE_PATH",
    "KERNEL_EVENT_PREFIX",
    "LIBRARY_CONNECT_EVENTS",
    "LIBRARY_DNS_EVENTS",
    "LIBRARY_EXEC_EVENTS",
    "LIBRARY_OPEN_EVENTS",
    "NETWORK_PEER_ADDRESS",
    "NETWORK_PEER_PORT",
    "NETWORK_TYPE",
    "PROCESS_COMMAND_ARGS",
    "PROCESS_EXECUTABLE_PATH",
    "PROCESS_EXIT_CODE",
    "PROCESS_PARENT_PID",
    "SERVER_ADDRESS",
]

# Shared with the in-process sensor (OpenTelemetry process, network, DNS and file conventions).
PROCESS_EXECUTABLE_PATH = semconv.PROCESS_EXECUTABLE_PATH
PROCESS_PARENT_PID = semconv.PROCESS_PARENT_PID
NETWORK_PEER_ADDRESS = semconv.NETWORK_PEER_ADDRESS
NETWORK_PEER_PORT = semconv.NETWORK_PEER_PORT
NETWORK_TYPE = semconv.NETWORK_TYPE
SERVER_ADDRESS = semconv.SERVER_ADDRESS
DNS_QUESTION_NAME = semconv.DNS_QUESTION_NAME
FILE_PATH = semconv.FILE_PATH
AG_OPEN_WRITE = semconv.AG_FILE_WRITE
# What the in-process sensor records on a tool span: the pids of the processes the tool started
# (span attribute), and span events for the spawns, connections, lookups and opens it saw.
AG_CHILD_PIDS = semconv.AG_PROCESS_CHILD_PIDS
LIBRARY_EXEC_EVENTS = frozenset({semconv.EVENT_PROCESS_EXEC})
LIBRARY_CONNECT_EVENTS = frozenset({semconv.EVENT_NET_CONNECT})
LIBRARY_DNS_EVENTS = frozenset({semconv.EVENT_DNS_LOOKUP})
LIBRARY_OPEN_EVENTS = frozenset({semconv.EVENT_FILE_OPEN})

# OpenTelemetry process conventions the library does not write.
PROCESS_COMMAND_ARGS = "process.command_args"
PROCESS_EXIT_CODE = "process.exit.code"

# The collector's own attributes on forwarded span events and child spans.
AG_ATTRIBUTION = "agentguard.attribution"
AG_KERNEL_ONLY = "agentguard.kernel_only"
AG_SENSOR = "agentguard.sensor"
AG_CONNECT_RESULT = "agentguard.connect.result"
AG_BYTES_SENT = "agentguard.net.bytes_sent"
KERNEL_EVENT_PREFIX = "agentguard.kernel."
# On a stored and a forwarded span whose process.pid names a process of this node that did not
# hold the connection the span came on: a relay forwarding for it, or another local process.
AG_SENT_BY_OTHER = "agentguard.sent_by_other_process"

# What the library puts into a child's environment: W3C trace context and agent identity.
ENV_TRACEPARENT = "TRACEPARENT"
ENV_IDENTITY_PREFIX = "AGENTGUARD_"
