"""Which AWS resource a call touches, and which request parameters may be shown at all.

The extractor table maps a service (botocore's service name, e.g. ``s3``) to the request
parameters that name a resource: each gives the key in ``CloudCall.resource`` and the span
attribute (the OpenTelemetry name where one exists, else ``agentguard.cloud.resource.<key>``).
Extend it with :func:`register_resource_params`, or :func:`register_resource_extractor` for a
resource that is not one top-level parameter (as the S3 destination of a Bedrock
``StartAsyncInvoke`` or batch inference job is: ``output_uri``, ``bucket``, ``bucket_owner``,
``kms_key``, and a batch job's ``input_uri``, ``input_bucket``, ``input_bucket_owner``).

Parameters given to policies are the top-level scalar ones, minus every name that can carry a
secret or bulk content (``SecretString``, ``Password``, ``Value``, ``Body``, ...), with strings
redacted and cut. The payload a call delivers (an S3 ``Body``, a Lambda ``Payload``, an SNS
``Message``, an SQS ``MessageBody``, a Step Functions execution's ``input``, ...) is such
content: where it goes is the call's resource (bucket, function, topic, queue, state machine),
which policies see; what it says is the agent's data, judged where the agent handled it (the
tool's arguments and result), and redaction knows secret formats, not customer records.
Responses are never read here: ``GetSecretValue``, ``GetParameter`` or ``AssumeRole`` results
stay with the caller.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentguard import semconv
from agentguard.redaction import redact

__all__ = [
    "RESOURCE_PARAMS",
    "ResourceParam",
    "extract_resources",
    "register_resource_extractor",
    "register_resource_params",
    "safe_parameters",
]

_MAX_VALUE = 256
_MAX_PARAMETER_TEXT = 1024
_MAX_PARAMETERS = 32


@dataclass(frozen=True, slots=True)
class ResourceParam:
    """A request parameter that names a resource: its resource key and its span attribute."""

    param: str
    key: str
    attribute: str | None = None

    @property
    def span_attribute(self) -> str:
        return self.attribute or semconv.AG_CLOUD_RESOURCE_PREFIX + self.key


def _p(param: str, key: str, attribute: str | None = None) -> ResourceParam:
    return ResourceParam(param, key, attribute)


# service → parameters naming the resource it acts on. Lookups are by exact parameter name.
RESOURCE_PARAMS: dict[str, tuple[ResourceParam, ...]] = {
    "s3": (_p("Bucket", "bucket", semconv.AWS_S3_BUCKET), _p("Key", "key", semconv.AWS_S3_KEY),
           _p("CopySource", "copy_source", semconv.AWS_S3_COPY_SOURCE),
           _p("UploadId", "upload_id", semconv.AWS_S3_UPLOAD_ID), _p("Prefix", "prefix")),
    "dynamodb": (_p("TableName", "table"), _p("IndexName", "index")),
    "secretsmanager": (_p("SecretId", "secret"), _p("Name", "secret")),
    "ssm": (_p("Name", "parameter"), _p("Path", "parameter_path"),
            _p("DocumentName", "document"), _p("InstanceId", "instance")),
    "sqs": (_p("QueueUrl", "queue", semconv.AWS_SQS_QUEUE_URL), _p("QueueName", "queue_name")),
    "sns": (_p("TopicArn", "topic", semconv.AWS_SNS_TOPIC_ARN), _p("TargetArn", "target"),
            _p("PhoneNumber", "phone_number")),
    "lambda": (_p("FunctionName", "function", semconv.FAAS_INVOKED_NAME),
               _p("Qualifier", "qualifier")),
    "kms": (_p("KeyId", "key"), _p("AliasName", "alias")),
    "sts": (_p("RoleArn", "role"), _p("RoleSessionName", "session")),
    "iam": (_p("UserName", "user"), _p("RoleName", "role"), _p("PolicyArn", "policy"),
            _p("GroupName", "group"), _p("InstanceProfileName", "instance_profile")),
    "kinesis": (_p("StreamName", "stream", semconv.AWS_KINESIS_STREAM_NAME),
                _p("StreamARN", "stream_arn")),
    "firehose": (_p("DeliveryStreamName", "stream"),),
    "stepfunctions": (_p("stateMachineArn", "state_machine",
                         semconv.AWS_STEP_FUNCTIONS_STATE_MACHINE_ARN),
                      _p("executionArn", "execution")),
    "logs": (_p("logGroupName", "log_group"), _p("logStreamName", "log_stream")),
    "events": (_p("EventBusName", "event_bus"), _p("Name", "rule")),
    "ecr": (_p("repositoryName", "repository"),),
    "ecs": (_p("cluster", "cluster"), _p("taskDefinition", "task_definition"),
            _p("service", "service")),
    "ec2": (_p("InstanceId", "instance"), _p("VpcId", "vpc"), _p("GroupId", "security_group")),
    "cloudformation": (_p("StackName", "stack"),),
    "athena": (_p("WorkGroup", "workgroup"), _p("QueryExecutionId", "query")),
    "glue": (_p("DatabaseName", "database"), _p("Name", "name")),
    "rds-data": (_p("resourceArn", "cluster"), _p("database", "database")),
    "cognito-idp": (_p("UserPoolId", "user_pool"), _p("ClientId", "client")),
    "bedrock-runtime": (_p("modelId", "model"), _p("guardrailIdentifier", "guardrail"),
                        _p("invocationArn", "invocation")),
    "bedrock-agent-runtime": (_p("agentId", "agent"), _p("agentAliasId", "agent_alias"),
                              _p("knowledgeBaseId", "knowledge_base"),
                              _p("flowIdentifier", "flow")),
    "bedrock": (_p("modelIdentifier", "model"), _p("modelId", "model"),
                _p("baseModelIdentifier", "model"), _p("guardrailIdentifier", "guardrail"),
                _p("roleArn", "role"), _p("jobIdentifier", "job")),
    "bedrock-agent": (_p("agentId", "agent"), _p("knowledgeBaseId", "knowledge_base")),
}

Extractor = Callable[[str, dict[str, Any]], "dict[str, str] | None"]


def _dynamodb_tables(operation: str, params: dict[str, Any]) -> dict[str, str] | None:
    # Batch and transaction calls name their tables inside the request, not in TableName.
    items = params.get("RequestItems")
    names: list[str] = []
    if isinstance(items, dict):
        names.extend(str(name) for name in list(items)[:16])
    transact = params.get("TransactItems")
    if isinstance(transact, list):
        for item in transact[:32]:
            if isinstance(item, dict):
                for action in item.values():
                    if isinstance(action, dict) and isinstance(action.get("TableName"), str):
                        names.append(action["TableName"])
    if not names:
        return None
    return {"tables": ",".join(sorted(set(names)))}


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _s3_location(uri: Any, owner: Any, prefix: str, bucket_key: str) -> dict[str, str]:
    """``{prefix}uri``, its bucket (under ``bucket_key``) and ``{bucket_key}_owner``."""
    if not isinstance(uri, str) or not uri:
        return {}
    uri = uri[:_MAX_VALUE * 4]
    out = {f"{prefix}uri": uri}
    if uri[:5].lower() == "s3://":
        bucket = uri[5:].split("/", 1)[0]
        if bucket:
            out[bucket_key] = bucket
    if isinstance(owner, str) and owner:
        out[f"{bucket_key}_owner"] = owner[:_MAX_VALUE]
    return out


def _bedrock_data(operation: str, params: dict[str, Any]) -> dict[str, str] | None:
    # Asynchronous Bedrock work (StartAsyncInvoke, a batch inference job, a customization or
    # evaluation job) writes its output to the S3 location the request names, encrypted with
    # the KMS key it names: where the model's work goes, as a PutObject's bucket is. A batch
    # job also reads its records from S3.
    output = _map(params.get("outputDataConfig"))
    s3 = _map(output.get("s3OutputDataConfig")) or output
    out = _s3_location(s3.get("s3Uri"), s3.get("bucketOwner") or s3.get("s3BucketOwner"),
                       "output_", "bucket")
    key = s3.get("kmsKeyId") or s3.get("s3EncryptionKeyId")
    if isinstance(key, str) and key:
        out["kms_key"] = key[:_MAX_VALUE]
    source = _map(_map(params.get("inputDataConfig")).get("s3InputDataConfig"))
    out.update(_s3_location(source.get("s3Uri"), source.get("s3BucketOwner"), "input_",
                            "input_bucket"))
    return out or None


_EXTRACTORS: dict[str, list[Extractor]] = {"dynamodb": [_dynamodb_tables],
                                           "bedrock-runtime": [_bedrock_data],
                                           "bedrock": [_bedrock_data]}
# The keys _bedrock_data gives, and their span attributes.
_BEDROCK_DATA_ATTRIBUTES = {"bucket": semconv.AWS_S3_BUCKET, **{
    key: semconv.AG_CLOUD_RESOURCE_PREFIX + key
    for key in ("output_uri", "bucket_owner", "kms_key", "input_uri", "input_bucket",
                "input_bucket_owner")}}
# Resource keys an extractor gives that have a span attribute of their own.
_EXTRA_ATTRIBUTES: dict[str, dict[str, str]] = {
    "bedrock-runtime": _BEDROCK_DATA_ATTRIBUTES,
    "bedrock": _BEDROCK_DATA_ATTRIBUTES,
}
_lock = threading.Lock()


def register_resource_params(service: str, *params: ResourceParam) -> None:
    """Add parameters that name resources of ``service`` (botocore service name, e.g. ``s3``)."""
    with _lock:
        RESOURCE_PARAMS[service] = (*RESOURCE_PARAMS.get(service, ()), *params)


def register_resource_extractor(service: str, extractor: Extractor) -> None:
    """Add ``extractor(operation, params) -> {key: value} | None`` for ``service``."""
    with _lock:
        _EXTRACTORS.setdefault(service, []).append(extractor)


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value[:_MAX_VALUE]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dict):
        # S3 CopySource may be {"Bucket": ..., "Key": ...}.
        parts = [str(value[k])[:_MAX_VALUE] for k in ("Bucket", "Key") if k in value]
        return "/".join(parts) if parts else None
    return None


def extract_resources(service: str, operation: str, params: dict[str, Any]
                      ) -> tuple[dict[str, str], dict[str, Any]]:
    """The resources a call names (``{key: value}``) and their span attributes."""
    resource: dict[str, str] = {}
    attributes: dict[str, Any] = {}
    for spec in RESOURCE_PARAMS.get(service, ()):
        value = _text(params.get(spec.param))
        if value is None or spec.key in resource:
            continue
        resource[spec.key] = value
        attributes[spec.span_attribute] = value
    for extractor in _EXTRACTORS.get(service, ()):
        try:
            extra = extractor(operation, params)
        except Exception:
            extra = None
        if extra:
            for key, value in extra.items():
                resource.setdefault(key, str(value)[:_MAX_VALUE * 4])
    for key, attribute in _EXTRA_ATTRIBUTES.get(service, {}).items():
        if key in resource:
            attributes[attribute] = resource[key]
    if service == "dynamodb":
        tables = resource.get("tables") or resource.get("table")
        if tables:
            attributes[semconv.AWS_DYNAMODB_TABLE_NAMES] = tables.split(",")
    elif service == "secretsmanager":
        secret = resource.get("secret")
        if secret is not None and secret.startswith("arn:"):
            attributes[semconv.AWS_SECRETSMANAGER_SECRET_ARN] = secret
    elif service == "logs":
        group = resource.get("log_group")
        if group is not None:
            attributes[semconv.AWS_LOG_GROUP_NAMES] = [group]
    return resource, attributes


# Parameter names that can carry a secret, a credential or bulk content: never passed on.
_SECRET_NAME = re.compile(
    r"passw|passphrase|secret(?!id$|arn$|name$)|token|credential|privatekey|plaintext|ciphertext"
    r"|keymaterial|sessionkey|authparameters|challengeresponses|authorization|signature|cookie"
    # Bearer credentials under other names: an STS SAML assertion, a Cognito auth-flow session,
    # the one-time code that resets a Cognito password.
    r"|assertion|^session$|confirmationcode"
    r"|^value$|^values$|^body$|^payload$|^data$|^blob$|^content$|^sourcefile$|^zipfile$"
    r"|^message$|^userdata$|^sharedsecret$|^pin$|^otp$|^mfa"
    # The payload a call delivers: an SQS message, a Step Functions execution's input and a
    # task's output or failure cause, EventBridge event detail, a text for Comprehend,
    # Translate or Polly, a prompt for an inline Bedrock agent.
    r"|^messagebody$|^input$|^output$|^cause$|^detail$|^text$|^inputtext$",
)
_name_cache: dict[str, bool] = {}


def _secret_name(name: str) -> bool:
    hit = _name_cache.get(name)
    if hit is None:
        hit = _SECRET_NAME.search(name.lower()) is not None
        if len(_name_cache) < 4096:
            _name_cache[name] = hit
    return hit


def safe_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """The request parameters a policy may see: top-level scalars without secret-bearing names."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if len(out) >= _MAX_PARAMETERS:
            break
        if not isinstance(name, str) or _secret_name(name):
            continue
        if isinstance(value, (bool, int, float)):
            out[name] = value
        elif isinstance(value, str):
            out[name] = redact(value[:_MAX_PARAMETER_TEXT])
    return out
