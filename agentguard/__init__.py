"""agentguard: runtime security for AI agents.

``agentguard.instrument()`` traces prompts, model calls, retrievals and tool calls of LangChain /
LangGraph agents as OpenTelemetry spans and runs every event through the Guard pipeline.
Importing this package patches nothing and imports no framework.
"""

from __future__ import annotations

from agentguard._api import flush, get_guard, instrument, stats, uninstrument
from agentguard._context import conversation
from agentguard._guard import BaselineStage, Detector, Guard, Operation, PolicyStage, Verdict
from agentguard._tool import tool
from agentguard.config import Config, ConfigError
from agentguard.events import (
    CloudCall,
    DnsLookup,
    Document,
    EventContext,
    FileOpen,
    Message,
    ModelCall,
    ModelLoad,
    ModuleLoad,
    NetConnect,
    ProcessExec,
    Retrieval,
    ToolCall,
    Turn,
    parse_event,
)
from agentguard.findings import (
    CloudCallBlocked,
    Decision,
    Finding,
    ModelCallBlocked,
    ToolCallBlocked,
)
from agentguard.policy import Policy, PolicyError
from agentguard.redaction import redact

__version__ = "0.1.0"

__all__ = [
    "BaselineStage",
    "CloudCall",
    "CloudCallBlocked",
    "Config",
    "ConfigError",
    "Decision",
    "Detector",
    "DnsLookup",
    "Document",
    "EventContext",
    "FileOpen",
    "Finding",
    "Guard",
    "Message",
    "ModelCall",
    "ModelCallBlocked",
    "ModelLoad",
    "ModuleLoad",
    "NetConnect",
    "Operation",
    "Policy",
    "PolicyError",
    "PolicyStage",
    "ProcessExec",
    "Retrieval",
    "ToolCall",
    "ToolCallBlocked",
    "Turn",
    "Verdict",
    "__version__",
    "conversation",
    "flush",
    "get_guard",
    "instrument",
    "parse_event",
    "redact",
    "stats",
    "tool",
    "uninstrument",
]
