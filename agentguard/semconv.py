"""Attribute and span names: GenAI semantic conventions and agentguard's own ``agentguard.*`` names.

Every attribute key the project writes is defined here, so a name is spelled once.
"""

from __future__ import annotations

__all__ = [
    "AG_AGENT_GRAPH",
    "AG_BATCH_SIZE",
    "AG_CAPTURE",
    "AG_CONVERSATION_USER",
    "AG_DECISION",
    "AG_FINDING_COUNT",
    "AG_FINDING_RULES",
    "AG_FINDING_SEVERITY",
    "AG_MODE",
    "AG_RETRIEVAL_DOCUMENTS",
    "AG_RETRIEVAL_DOCUMENT_COUNT",
    "AG_RETRIEVAL_QUERY",
    "AG_RETRIEVER_NAME",
    "AG_RISK",
    "AG_STREAM",
    "AG_STREAM_ABANDONED",
    "AG_THREAD_NATIVE_ID",
    "AG_TURN_INDEX",
    "AG_TURN_TEXT",
    "EVENT_FINDING",
    "GEN_AI_AGENT_NAME",
    "GEN_AI_CONVERSATION_ID",
    "GEN_AI_INPUT_MESSAGES",
    "GEN_AI_OPERATION_NAME",
    "GEN_AI_OUTPUT_MESSAGES",
    "GEN_AI_PROVIDER_NAME",
    "GEN_AI_REQUEST_MAX_TOKENS",
    "GEN_AI_REQUEST_MODEL",
    "GEN_AI_REQUEST_TEMPERATURE",
    "GEN_AI_RESPONSE_FINISH_REASONS",
    "GEN_AI_RESPONSE_MODEL",
    "GEN_AI_TOOL_CALL_ARGUMENTS",
    "GEN_AI_TOOL_CALL_ID",
    "GEN_AI_TOOL_CALL_RESULT",
    "GEN_AI_TOOL_DESCRIPTION",
    "GEN_AI_TOOL_NAME",
    "GEN_AI_TOOL_TYPE",
    "GEN_AI_USAGE_INPUT_TOKENS",
    "GEN_AI_USAGE_OUTPUT_TOKENS",
    "OP_CHAT",
    "OP_EXECUTE_TOOL",
    "OP_INVOKE_AGENT",
    "OP_RETRIEVAL",
    "PROCESS_PID",
    "SERVICE_NAME",
    "THREAD_NAME",
]

# OpenTelemetry GenAI semantic conventions.
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT = "gen_ai.tool.call.result"
GEN_AI_TOOL_DESCRIPTION = "gen_ai.tool.description"
GEN_AI_TOOL_TYPE = "gen_ai.tool.type"

OP_CHAT = "chat"
OP_EXECUTE_TOOL = "execute_tool"
OP_INVOKE_AGENT = "invoke_agent"
OP_RETRIEVAL = "retrieval"

# General OpenTelemetry conventions.
SERVICE_NAME = "service.name"
PROCESS_PID = "process.pid"
THREAD_NAME = "thread.name"

# agentguard's own attributes.
AG_TURN_INDEX = "agentguard.turn.index"
AG_TURN_TEXT = "agentguard.turn.text"
AG_CONVERSATION_USER = "agentguard.conversation.user"
AG_THREAD_NATIVE_ID = "agentguard.thread.native_id"
AG_MODE = "agentguard.mode"
AG_CAPTURE = "agentguard.capture_content"
AG_DECISION = "agentguard.decision"
AG_RISK = "agentguard.risk"
AG_FINDING_COUNT = "agentguard.finding.count"
AG_FINDING_RULES = "agentguard.finding.rule_ids"
AG_FINDING_SEVERITY = "agentguard.finding.severity"
AG_AGENT_GRAPH = "agentguard.agent.graph"
AG_BATCH_SIZE = "agentguard.model.batch_size"
AG_STREAM = "agentguard.stream"
AG_STREAM_ABANDONED = "agentguard.stream.abandoned"
AG_RETRIEVER_NAME = "agentguard.retriever.name"
AG_RETRIEVAL_QUERY = "agentguard.retrieval.query"
AG_RETRIEVAL_DOCUMENTS = "agentguard.retrieval.documents"
AG_RETRIEVAL_DOCUMENT_COUNT = "agentguard.retrieval.document_count"

# Span event names.
EVENT_FINDING = "agentguard.finding"
