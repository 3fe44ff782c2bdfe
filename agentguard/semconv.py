"""Attribute and span names: GenAI semantic conventions and agentguard's own ``agentguard.*`` names.

Every attribute key the project writes is defined here, so a name is spelled once.
"""

from __future__ import annotations

__all__ = [
    "AG_AGENT_GRAPH",
    "AG_BATCH_SIZE",
    "AG_CANCELLED",
    "AG_CAPTURE",
    "AG_CONVERSATION_USER",
    "AG_DECISION",
    "AG_FINDING_COUNT",
    "AG_FINDING_RULES",
    "AG_FINDING_SEVERITY",
    "AG_INTERRUPTED",
    "AG_LINK_REASON",
    "AG_MODE",
    "AG_RETRIEVAL_DOCUMENTS",
    "AG_RETRIEVAL_DOCUMENT_COUNT",
    "AG_RETRIEVAL_QUERY",
    "AG_RETRIEVER_NAME",
    "AG_RISK",
    "AG_STREAM",
    "AG_STREAM_ABANDONED",
    "AG_THREAD_NATIVE_ID",
    "AG_TOOL_UNKNOWN",
    "AG_TURN_INDEX",
    "AG_TURN_TEXT",
    "EVENT_FINDING",
    "GEN_AI_AGENT_NAME",
    "GEN_AI_CONVERSATION_ID",
    "GEN_AI_EMBEDDINGS_DIMENSION_COUNT",
    "GEN_AI_INPUT_MESSAGES",
    "GEN_AI_OPERATION_NAME",
    "GEN_AI_OUTPUT_MESSAGES",
    "GEN_AI_PROVIDER_NAME",
    "GEN_AI_REQUEST_ENCODING_FORMATS",
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
    "GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS",
    "GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS",
    "GEN_AI_USAGE_INPUT_TOKENS",
    "GEN_AI_USAGE_OUTPUT_TOKENS",
    "GEN_AI_USAGE_REASONING_OUTPUT_TOKENS",
    "OP_CHAT",
    "OP_EMBEDDINGS",
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
# Parts of gen_ai.usage.input_tokens (which counts them) served from / written to a provider's
# prompt cache, and the part of gen_ai.usage.output_tokens spent on reasoning.
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT = "gen_ai.tool.call.result"
GEN_AI_TOOL_DESCRIPTION = "gen_ai.tool.description"
GEN_AI_TOOL_TYPE = "gen_ai.tool.type"
GEN_AI_EMBEDDINGS_DIMENSION_COUNT = "gen_ai.embeddings.dimension.count"
GEN_AI_REQUEST_ENCODING_FORMATS = "gen_ai.request.encoding_formats"

OP_CHAT = "chat"
OP_EMBEDDINGS = "embeddings"
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
# An operation a LangGraph interrupt or parent command ended, or a top-level graph that paused for
# a human (the interrupt's class name).
AG_INTERRUPTED = "agentguard.interrupted"
# An operation whose asyncio task was cancelled (no error status).
AG_CANCELLED = "agentguard.cancelled"
# A tool call the model made of a tool the framework does not have: nothing ran (the framework
# answered with an error), so it is no tool of the agent's.
AG_TOOL_UNKNOWN = "agentguard.tool.unknown"
AG_RETRIEVER_NAME = "agentguard.retriever.name"
AG_RETRIEVAL_QUERY = "agentguard.retrieval.query"
AG_RETRIEVAL_DOCUMENTS = "agentguard.retrieval.documents"
AG_RETRIEVAL_DOCUMENT_COUNT = "agentguard.retrieval.document_count"
# On a link from an agentguard span to another instrumentor's span that was current when it began.
AG_LINK_REASON = "agentguard.link.reason"

# Span event names.
EVENT_FINDING = "agentguard.finding"

# Cloud API calls (OpenTelemetry RPC, cloud, HTTP and AWS conventions) and Bedrock.
RPC_SYSTEM = "rpc.system"
RPC_SERVICE = "rpc.service"
RPC_METHOD = "rpc.method"
RPC_RESPONSE_STATUS_CODE = "rpc.response.status_code"
CLOUD_PROVIDER = "cloud.provider"
CLOUD_REGION = "cloud.region"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
ERROR_TYPE = "error.type"
FAAS_INVOKED_NAME = "faas.invoked_name"
AWS_REGION = "aws.region"
AWS_REQUEST_ID = "aws.request_id"
AWS_EXTENDED_REQUEST_ID = "aws.extended_request_id"
AWS_S3_BUCKET = "aws.s3.bucket"
AWS_S3_KEY = "aws.s3.key"
AWS_S3_COPY_SOURCE = "aws.s3.copy_source"
AWS_S3_UPLOAD_ID = "aws.s3.upload_id"
AWS_DYNAMODB_TABLE_NAMES = "aws.dynamodb.table_names"
AWS_SQS_QUEUE_URL = "aws.sqs.queue.url"
AWS_SNS_TOPIC_ARN = "aws.sns.topic.arn"
AWS_SECRETSMANAGER_SECRET_ARN = "aws.secretsmanager.secret.arn"
AWS_KINESIS_STREAM_NAME = "aws.kinesis.stream_name"
AWS_STEP_FUNCTIONS_STATE_MACHINE_ARN = "aws.step_functions.state_machine.arn"
AWS_LOG_GROUP_NAMES = "aws.log.group.names"
AWS_BEDROCK_GUARDRAIL_ID = "aws.bedrock.guardrail.id"
AWS_BEDROCK_KNOWLEDGE_BASE_ID = "aws.bedrock.knowledge_base.id"
GEN_AI_AGENT_ID = "gen_ai.agent.id"
GEN_AI_DATA_SOURCE_ID = "gen_ai.data_source.id"
GEN_AI_REQUEST_TOP_P = "gen_ai.request.top_p"
GEN_AI_REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
PROVIDER_AWS_BEDROCK = "aws.bedrock"
RPC_SYSTEM_AWS = "aws-api"
# A resource a cloud call touches that has no OpenTelemetry attribute: prefix + resource key.
AG_CLOUD_RESOURCE_PREFIX = "agentguard.cloud.resource."
AG_CLOUD_RETRY_ATTEMPTS = "agentguard.cloud.retry_attempts"
AG_CLOUD_REQUEST_ID = "agentguard.cloud.request_id"
AG_BEDROCK_AGENT_ALIAS_ID = "agentguard.bedrock.agent.alias_id"
AG_BEDROCK_ACTION_GROUP = "agentguard.bedrock.action_group"
AG_BEDROCK_EXECUTION = "agentguard.bedrock.action_execution"
AG_BEDROCK_TRACE_ID = "agentguard.bedrock.trace_id"
AG_BEDROCK_GUARDRAIL_VERSION = "agentguard.bedrock.guardrail.version"
AG_BEDROCK_GUARDRAIL_ACTION = "agentguard.bedrock.guardrail.action"
# Why a model's answer was not read whole: "depth" (parts nested too deep for the JSON decoder
# read as null), "invalid_json" (not JSON: its text read as the answer), "size" (too large, unread).
AG_BEDROCK_RESPONSE_TRUNCATED = "agentguard.bedrock.response.truncated"
AG_BEDROCK_STEP = "agentguard.bedrock.agent.step"
EVENT_BEDROCK_GUARDRAIL = "agentguard.bedrock.guardrail"
EVENT_BEDROCK_FAILURE = "agentguard.bedrock.failure"
# Image generation: the GenAI conventions' operation, output type and request attributes, and
# what the answer held (never the images themselves): how many, and their size in bytes.
OP_GENERATE_CONTENT = "generate_content"
GEN_AI_OUTPUT_TYPE = "gen_ai.output.type"
OUTPUT_TYPE_IMAGE = "image"
GEN_AI_REQUEST_CHOICE_COUNT = "gen_ai.request.choice.count"
GEN_AI_REQUEST_SEED = "gen_ai.request.seed"
AG_OUTPUT_IMAGE_COUNT = "agentguard.output.image.count"
AG_OUTPUT_IMAGE_SIZE = "agentguard.output.image.size"
# Video generation (Bedrock StartAsyncInvoke): the output type; the video goes to S3, not back.
OUTPUT_TYPE_VIDEO = "video"
# A Bedrock agent's trace: the rationale step (a span event on the agent span), and what the
# agent made of a pre-/post-processing model's answer (on that step's chat span): whether the
# input was judged valid, and the parsed text (pre-processing's rationale, post-processing's
# answer). The text of a span event that carries content: captured per capture_content.
EVENT_BEDROCK_RATIONALE = "agentguard.bedrock.rationale"
AG_BEDROCK_INPUT_VALID = "agentguard.bedrock.agent.input_valid"
AG_BEDROCK_PARSED_RESPONSE = "agentguard.bedrock.agent.parsed_response"
EVENT_ATTR_MESSAGE = "message"
# A Bedrock agent's trace texts no model invocation carries (span events on the agent span): the
# final response, a reprompt shown to the user (and its source), a custom orchestrator's text.
EVENT_BEDROCK_FINAL_RESPONSE = "agentguard.bedrock.final_response"
EVENT_BEDROCK_REPROMPT = "agentguard.bedrock.reprompt"
EVENT_BEDROCK_CUSTOM_ORCHESTRATION = "agentguard.bedrock.custom_orchestration"
AG_BEDROCK_REPROMPT_SOURCE = "agentguard.bedrock.reprompt.source"
# Why a request body was not read whole ("depth", "invalid_json", "size": its long strings cut,
# or it was too large to read), as AG_BEDROCK_RESPONSE_TRUNCATED says it of the answer.
AG_BEDROCK_REQUEST_TRUNCATED = "agentguard.bedrock.request.truncated"

__all__ += [
    "AG_BEDROCK_ACTION_GROUP", "AG_BEDROCK_AGENT_ALIAS_ID", "AG_BEDROCK_EXECUTION",
    "AG_BEDROCK_GUARDRAIL_ACTION", "AG_BEDROCK_GUARDRAIL_VERSION", "AG_BEDROCK_RESPONSE_TRUNCATED",
    "AG_BEDROCK_STEP",
    "AG_BEDROCK_TRACE_ID", "AG_CLOUD_REQUEST_ID", "AG_CLOUD_RESOURCE_PREFIX",
    "AG_CLOUD_RETRY_ATTEMPTS",
    "AWS_BEDROCK_GUARDRAIL_ID", "AWS_BEDROCK_KNOWLEDGE_BASE_ID",
    "AWS_DYNAMODB_TABLE_NAMES", "AWS_EXTENDED_REQUEST_ID", "AWS_KINESIS_STREAM_NAME",
    "AWS_LOG_GROUP_NAMES", "AWS_REGION", "AWS_REQUEST_ID", "AWS_S3_BUCKET", "AWS_S3_COPY_SOURCE",
    "AWS_S3_KEY", "AWS_S3_UPLOAD_ID", "AWS_SECRETSMANAGER_SECRET_ARN", "AWS_SNS_TOPIC_ARN",
    "AWS_SQS_QUEUE_URL", "AWS_STEP_FUNCTIONS_STATE_MACHINE_ARN", "CLOUD_PROVIDER", "CLOUD_REGION",
    "ERROR_TYPE", "EVENT_BEDROCK_FAILURE", "EVENT_BEDROCK_GUARDRAIL", "FAAS_INVOKED_NAME",
    "GEN_AI_AGENT_ID", "GEN_AI_DATA_SOURCE_ID", "GEN_AI_REQUEST_STOP_SEQUENCES",
    "GEN_AI_REQUEST_TOP_P", "GEN_AI_RESPONSE_ID", "HTTP_RESPONSE_STATUS_CODE", "PROVIDER_AWS_BEDROCK",
    "RPC_METHOD", "RPC_RESPONSE_STATUS_CODE", "RPC_SERVICE", "RPC_SYSTEM", "RPC_SYSTEM_AWS",
]
__all__ += [
    "AG_OUTPUT_IMAGE_COUNT", "AG_OUTPUT_IMAGE_SIZE", "GEN_AI_OUTPUT_TYPE",
    "GEN_AI_REQUEST_CHOICE_COUNT", "GEN_AI_REQUEST_SEED", "OP_GENERATE_CONTENT",
    "OUTPUT_TYPE_IMAGE",
]
__all__ += [
    "AG_BEDROCK_INPUT_VALID", "AG_BEDROCK_PARSED_RESPONSE", "EVENT_ATTR_MESSAGE",
    "EVENT_BEDROCK_RATIONALE", "OUTPUT_TYPE_VIDEO",
]
__all__ += [
    "AG_BEDROCK_REPROMPT_SOURCE", "AG_BEDROCK_REQUEST_TRUNCATED",
    "EVENT_BEDROCK_CUSTOM_ORCHESTRATION", "EVENT_BEDROCK_FINAL_RESPONSE", "EVENT_BEDROCK_REPROMPT",
]

# Runtime sensor: span events on the tool span for what the process did while it ran
# (OpenTelemetry process, network, DNS and file conventions where they exist).
EVENT_PROCESS_EXEC = "process.exec"
EVENT_NET_CONNECT = "net.connect"
EVENT_DNS_LOOKUP = "dns.lookup"
EVENT_FILE_OPEN = "file.open"
EVENT_MODULE_LOAD = "module.load"
EVENT_MODEL_LOAD = "model.load"
PROCESS_EXECUTABLE_PATH = "process.executable.path"
PROCESS_COMMAND_LINE = "process.command_line"
PROCESS_PARENT_PID = "process.parent_pid"
PROCESS_WORKING_DIRECTORY = "process.working_directory"
NETWORK_PEER_ADDRESS = "network.peer.address"
NETWORK_PEER_PORT = "network.peer.port"
NETWORK_TRANSPORT = "network.transport"
NETWORK_TYPE = "network.type"
SERVER_ADDRESS = "server.address"
DNS_QUESTION_NAME = "dns.question.name"
FILE_PATH = "file.path"
# On the tool span: every child process it started (updated as they start).
AG_PROCESS_CHILD_PIDS = "agentguard.process.child_pids"
AG_PROCESS_OPERATION = "agentguard.process.operation"
AG_NET_OPERATION = "agentguard.net.operation"
AG_FILE_WRITE = "agentguard.file.write"
AG_FILE_CATEGORY = "agentguard.file.category"
AG_MODULE_NAME = "agentguard.module.name"
AG_MODULE_DISTRIBUTION = "agentguard.module.distribution"
AG_MODULE_VERSION = "agentguard.module.version"
AG_MODULE_ORIGIN = "agentguard.module.origin"
AG_MODEL_FORMAT = "agentguard.model.format"
AG_MODEL_SHA256 = "agentguard.model.sha256"
AG_MODEL_SIZE = "agentguard.model.size"
AG_MODEL_SOURCE = "agentguard.model.source"
# On a process.exec or net.connect event: the model file being deserialised when it happened.
AG_MODEL_LOADING = "agentguard.model.loading"
AG_SENSOR_AUDIT_EVENT = "agentguard.sensor.audit_event"
# On the tool span: sensor events not written (repeats of one already written, or over budget).
AG_SENSOR_SUPPRESSED = "agentguard.sensor.events_suppressed"

__all__ += [
    "AG_FILE_CATEGORY", "AG_FILE_WRITE", "AG_MODEL_FORMAT", "AG_MODEL_LOADING", "AG_MODEL_SHA256",
    "AG_MODEL_SIZE", "AG_MODEL_SOURCE", "AG_MODULE_DISTRIBUTION", "AG_MODULE_NAME",
    "AG_MODULE_ORIGIN", "AG_MODULE_VERSION", "AG_NET_OPERATION", "AG_PROCESS_CHILD_PIDS",
    "AG_PROCESS_OPERATION", "AG_SENSOR_AUDIT_EVENT", "AG_SENSOR_SUPPRESSED", "DNS_QUESTION_NAME",
    "EVENT_DNS_LOOKUP", "EVENT_FILE_OPEN", "EVENT_MODEL_LOAD", "EVENT_MODULE_LOAD",
    "EVENT_NET_CONNECT", "EVENT_PROCESS_EXEC", "FILE_PATH", "NETWORK_PEER_ADDRESS",
    "NETWORK_PEER_PORT", "NETWORK_TRANSPORT", "NETWORK_TYPE", "PROCESS_COMMAND_LINE",
    "PROCESS_EXECUTABLE_PATH", "PROCESS_PARENT_PID", "PROCESS_WORKING_DIRECTORY", "SERVER_ADDRESS",
]

__all__ += ["int_value"]


def int_value(value: object) -> int | None:
    """An integer attribute as it reads back from OTLP (JSON encodes 64-bit ints as strings);
    ``None`` for anything else, booleans and values outside OTLP's signed 64 bits included."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else None
    # ASCII digits only: str.isdigit() also accepts superscripts and other scripts' digits, which
    # int() refuses or reads differently. Nineteen digits cover every positive int64.
    if isinstance(value, str) and 0 < len(value) <= 19 and value.isascii() and value.isdigit():
        number = int(value)
        return number if number < 2**63 else None
    return None
