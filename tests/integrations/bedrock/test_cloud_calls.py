"""Every other AWS call: CloudCall events, ``aws.*`` spans, attribution, blocking, no secrets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from opentelemetry.trace import StatusCode

import agentguard
from agentguard import CloudCallBlocked, Decision, ToolCallBlocked
from agentguard.integrations.botocore import ResourceParam, register_resource_params
from tests.integrations.bedrock.conftest import ACCESS_KEY, SECRET_KEY


@pytest.fixture
def bucket(aws: Any) -> Any:
    s3 = aws("s3")
    name = "agent-exports"
    s3.create_bucket(Bucket=name)
    yield name
    for item in s3.list_objects_v2(Bucket=name).get("Contents", []):
        s3.delete_object(Bucket=name, Key=item["Key"])
    s3.delete_bucket(Bucket=name)


def _base(service_id: str, operation: str) -> dict[str, Any]:
    return {"cloud.provider": "aws", "cloud.region": "us-east-1", "aws.region": "us-east-1",
            "rpc.system": "aws-api", "rpc.service": service_id, "rpc.method": operation,
            "http.response.status_code": 200}


def _traced(span: Any) -> dict[str, Any]:
    """A span's attributes without the Guard's verdict (built-in rules may alert on reads)."""
    return {k: v for k, v in span.attributes.items()
            if not k.startswith(("agentguard.decision", "agentguard.finding."))}


def test_s3_calls_are_client_spans_with_the_bucket_and_key(guarded: Any, spans: Any, aws: Any,
                                                           bucket: str) -> None:
    """PutObject / GetObject: ``aws.s3.*`` CLIENT spans with exactly the RPC and S3 attributes."""
    guarded()
    s3 = aws("s3")
    s3.put_object(Bucket=bucket, Key="q3/report.csv", Body=b"id,total\n1,10\n")
    assert s3.get_object(Bucket=bucket, Key="q3/report.csv")["Body"].read() == \
        b"id,total\n1,10\n"
    put, get = spans.named("aws.s3.")
    assert (put.name, get.name) == ("aws.s3.PutObject", "aws.s3.GetObject")
    assert put.kind.name == "CLIENT"
    request_id = put.attributes["aws.request_id"]
    assert _traced(put) == {**_base("S3", "PutObject"), "aws.s3.bucket": bucket,
                                    "aws.s3.key": "q3/report.csv", "aws.request_id": request_id}


def test_dynamodb_calls_name_their_tables(guarded: Any, spans: Any, aws: Any) -> None:
    """Single-table and batch DynamoDB calls carry the table names."""
    ddb = aws("dynamodb")
    ddb.create_table(TableName="orders", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    seen: list[Any] = []
    guarded(policy=lambda event: seen.append(event))
    try:
        ddb.put_item(TableName="orders", Item={"id": {"S": "o-1"}, "total": {"N": "10"}})
        ddb.batch_get_item(RequestItems={"orders": {"Keys": [{"id": {"S": "o-1"}}]}})
    finally:
        ddb.delete_table(TableName="orders")
    put = spans.one("aws.dynamodb.PutItem")
    assert put.attributes["aws.dynamodb.table_names"] == ("orders",)
    assert put.attributes["agentguard.cloud.resource.table"] == "orders"
    batch = spans.one("aws.dynamodb.BatchGetItem")
    assert batch.attributes["aws.dynamodb.table_names"] == ("orders",)
    events = {e.operation: e for e in seen if e.kind == "cloud_call"}
    assert events["PutItem"].resource == {"table": "orders"}
    assert events["PutItem"].parameters == {"TableName": "orders"}
    assert events["BatchGetItem"].resource == {"tables": "orders"}


def test_cloud_calls_are_attributed_to_the_enclosing_tool(guarded: Any, spans: Any, aws: Any,
                                                          bucket: str) -> None:
    """An S3 call made by a LangChain tool nests under its execute_tool span, and its event
    names the tool, the call id, the conversation and the turn."""
    from langchain_core.tools import tool

    seen: list[Any] = []
    guarded(policy=lambda event: seen.append(event))
    s3 = aws("s3")

    @tool
    def export_orders(key: str) -> str:
        """Export orders to S3."""
        s3.put_object(Bucket=bucket, Key=key, Body=b"[]")
        return "exported"

    from langchain.agents import create_agent

    from agentguard.demo.scripted import ScriptedChatModel
    from tests.integrations.langchain.agents import call, say

    agent = create_agent(ScriptedChatModel(script=[
        say("", call("export_orders", "call-42", key="orders.json")), say("Done.")]),
        [export_orders], name="exporter")
    with agentguard.conversation("conv-9", user="ada"):
        agent.invoke({"messages": [("user", "export the orders")]})

    tool_span = spans.one("execute_tool export_orders")
    put = spans.one("aws.s3.PutObject")
    assert put.parent.span_id == tool_span.context.span_id
    assert put.context.trace_id == spans.one("invoke_agent exporter").context.trace_id
    assert put.attributes["gen_ai.conversation.id"] == "conv-9"
    assert put.attributes["agentguard.turn.index"] == 1
    event = next(e for e in seen if e.kind == "cloud_call")
    assert (event.context.tool, event.context.tool_call_id) == ("export_orders", "call-42")
    assert (event.context.conversation_id, event.context.user, event.context.turn) == (
        "conv-9", "ada", 1)
    assert event.context.span_id == format(put.context.span_id, "016x")


def _no_exports(event: Any) -> Decision | None:
    if event.kind == "cloud_call" and (event.service, event.operation) == ("s3", "PutObject") \
            and event.resource.get("bucket") == "agent-exports":
        return Decision.block("this agent never writes to agent-exports", "high",
                              rule_id="no-s3-export", evidence={"key": event.resource["key"]})
    return None


def test_s3_put_object_blocked_in_enforce_mode_is_never_sent(guarded: Any, spans: Any, aws: Any,
                                                             bucket: str) -> None:
    """A policy block raises CloudCallBlocked (a ToolCallBlocked) and the object is not written."""
    findings: list[Any] = []
    guarded(mode="enforce", policy=_no_exports, on_finding=findings.append, builtin_rules=False)
    s3 = aws("s3")
    with pytest.raises(CloudCallBlocked) as info:
        s3.put_object(Bucket=bucket, Key="dump.csv", Body=b"customer data")
    assert isinstance(info.value, ToolCallBlocked)
    assert info.value.call == "s3.PutObject"
    assert "agentguard blocked cloud call s3.PutObject" in str(info.value)
    assert info.value.finding.rule_id == "no-s3-export"
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    span = spans.one("aws.s3.PutObject")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["agentguard.decision"] == "block"
    assert "http.response.status_code" not in span.attributes
    assert [(f.action, f.kind, f.evidence) for f in findings] == [
        ("block", "cloud_call", {"key": "dump.csv"})]


def test_the_same_policy_in_monitor_mode_alerts_and_writes(guarded: Any, spans: Any, aws: Any,
                                                           bucket: str) -> None:
    """In monitor mode the call goes through and the span carries the alert."""
    guarded(mode="monitor", policy=_no_exports)
    s3 = aws("s3")
    s3.put_object(Bucket=bucket, Key="dump.csv", Body=b"x")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1
    span = spans.one("aws.s3.PutObject")
    assert span.attributes["agentguard.decision"] == "alert"
    assert span.status.status_code is StatusCode.UNSET


def test_aws_errors_fail_the_span_with_the_error_code(guarded: Any, spans: Any, aws: Any,
                                                      bucket: str) -> None:
    """A ClientError propagates unchanged; the span has the AWS error code and HTTP status."""
    guarded()
    with pytest.raises(ClientError) as info:
        aws("s3").get_object(Bucket=bucket, Key="missing")
    assert info.value.response["Error"]["Code"] == "NoSuchKey"
    span = spans.one("aws.s3.GetObject")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "NoSuchKey"
    assert span.attributes["rpc.response.status_code"] == "NoSuchKey"
    assert span.attributes["http.response.status_code"] == 404


def _everything(spans: Any) -> str:
    """Every attribute and span-event attribute of every span, as text."""
    parts = []
    for span in spans.all():
        parts.append(json.dumps(dict(span.attributes), default=str))
        for event in span.events:
            parts.append(json.dumps(dict(event.attributes or {}), default=str))
    return "\n".join(parts)


def test_secrets_and_credentials_never_reach_spans_or_events(guarded: Any, spans: Any,
                                                             aws: Any) -> None:
    """Secret values, parameters, assumed-role credentials and signing material appear nowhere."""
    seen: list[Any] = []
    guarded(capture_content="full", policy=lambda event: seen.append(event))
    secrets, ssm, sts = aws("secretsmanager"), aws("ssm"), aws("sts")
    secrets.create_secret(Name="prod/db", SecretString="s3cr3t-DB-PASSWORD-value")
    secrets.put_secret_value(SecretId="prod/db", SecretString="r0tated-DB-PASSWORD-value")
    value = secrets.get_secret_value(SecretId="prod/db")["SecretString"]
    ssm.put_parameter(Name="/prod/api-key", Value="sk-live-PARAMETER-value", Type="SecureString")
    parameter = ssm.get_parameter(Name="/prod/api-key", WithDecryption=True)["Parameter"]["Value"]
    credentials = sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/agent",
                                  RoleSessionName="agent-session")["Credentials"]
    secrets.delete_secret(SecretId="prod/db", ForceDeleteWithoutRecovery=True)
    ssm.delete_parameter(Name="/prod/api-key")
    assert value == "r0tated-DB-PASSWORD-value"
    assert parameter == "sk-live-PARAMETER-value"

    get_secret = spans.one("aws.secretsmanager.GetSecretValue")
    assert _traced(get_secret) == {
        **_base("Secrets Manager", "GetSecretValue"),
        "agentguard.cloud.resource.secret": "prod/db",
        "aws.request_id": get_secret.attributes["aws.request_id"]}
    get_parameter = spans.one("aws.ssm.GetParameter")
    assert _traced(get_parameter) == {
        **_base("SSM", "GetParameter"), "agentguard.cloud.resource.parameter": "/prod/api-key",
        "aws.request_id": get_parameter.attributes["aws.request_id"]}
    assume = spans.one("aws.sts.AssumeRole")
    assert _traced(assume) == {
        **_base("STS", "AssumeRole"),
        "agentguard.cloud.resource.role": "arn:aws:iam::123456789012:role/agent",
        "agentguard.cloud.resource.session": "agent-session",
        "aws.request_id": assume.attributes["aws.request_id"]}

    forbidden = ["s3cr3t-DB-PASSWORD", "r0tated-DB-PASSWORD", "sk-live-PARAMETER",
                 credentials["SecretAccessKey"], credentials["SessionToken"][:24],
                 credentials["AccessKeyId"], ACCESS_KEY, SECRET_KEY, "AWS4-HMAC-SHA256",
                 "Signature="]
    text = _everything(spans) + "\n".join(repr(event) for event in seen)
    for secret in forbidden:
        assert secret not in text, secret
    put_secret = next(e for e in seen if e.kind == "cloud_call" and
                      e.operation == "PutSecretValue")
    assert put_secret.parameters == {"SecretId": "prod/db"}
    put_parameter = next(e for e in seen if e.kind == "cloud_call" and
                         e.operation == "PutParameter")
    assert put_parameter.parameters == {"Name": "/prod/api-key", "Type": "SecureString"}


def test_the_extractor_table_can_be_extended(guarded: Any, spans: Any, aws: Any) -> None:
    """A registered parameter becomes a resource of the event and a span attribute."""
    register_resource_params("sqs", ResourceParam("MessageGroupId", "message_group"))
    seen: list[Any] = []
    guarded(policy=lambda event: seen.append(event))
    sqs = aws("sqs")
    url = sqs.create_queue(QueueName="jobs.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="job", MessageGroupId="tenant-a",
                     MessageDeduplicationId="d1")
    sqs.delete_queue(QueueUrl=url)
    span = spans.one("aws.sqs.SendMessage")
    assert span.attributes["aws.sqs.queue.url"] == url
    assert span.attributes["agentguard.cloud.resource.message_group"] == "tenant-a"
    event = next(e for e in seen if e.kind == "cloud_call" and e.operation == "SendMessage")
    assert event.resource == {"queue": url, "message_group": "tenant-a"}


async def test_async_cloud_calls_through_aiobotocore(guarded: Any, spans: Any, moto_url: str,
                                                     bucket: str) -> None:
    """aiobotocore calls get the same CloudCall spans and the same blocking."""
    from aiobotocore.session import get_session

    from tests.integrations.bedrock.conftest import client_kwargs

    guarded(mode="enforce", policy=_no_exports, builtin_rules=False)
    async with get_session().create_client("s3", **client_kwargs(moto_url)) as s3:
        await s3.list_objects_v2(Bucket=bucket)
        with pytest.raises(CloudCallBlocked):
            await s3.put_object(Bucket=bucket, Key="async.csv", Body=b"x")
    listed = spans.one("aws.s3.ListObjectsV2")
    assert listed.attributes["aws.s3.bucket"] == bucket
    assert listed.attributes["http.response.status_code"] == 200
    assert spans.one("aws.s3.PutObject").attributes["agentguard.decision"] == "block"


def test_cloud_call_blocked_inside_a_langchain_tool_becomes_an_error_tool_message(
        guarded: Any, aws: Any, bucket: str) -> None:
    """A LangChain agent whose tool writes to S3 against policy gets an error tool message naming
    the rule (as for a blocked tool call) and finishes its turn; the object is never written, and
    on_block="raise" raises CloudCallBlocked instead."""
    from langchain.agents import create_agent
    from langchain_core.tools import tool

    from agentguard.demo.scripted import ScriptedChatModel, call, say

    s3 = aws("s3")

    @tool
    def export_report(key: str) -> str:
        """Write a report to the exports bucket."""
        s3.put_object(Bucket=bucket, Key=key, Body=b"customer data")
        return "exported"

    def agent() -> Any:
        return create_agent(ScriptedChatModel(script=[
            say("", call("export_report", "c1", key="dump.csv")), say("Could not export.")]),
            [export_report], name="exporter")

    guarded(mode="enforce", policy=_no_exports, builtin_rules=False)
    result = agent().invoke({"messages": [("user", "export everything")]})
    (reply,) = [m for m in result["messages"] if getattr(m, "type", "") == "tool"]
    assert reply.status == "error" and "[no-s3-export]" in str(reply.content)
    assert result["messages"][-1].content == "Could not export."
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0

    agentguard.uninstrument()
    guarded(mode="enforce", policy=_no_exports, builtin_rules=False, on_block="raise")
    with pytest.raises(CloudCallBlocked):
        agent().invoke({"messages": [("user", "export everything")]})
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_the_payload_a_call_delivers_is_not_a_parameter_but_its_destination_is(
        guarded: Any, spans: Any, aws: Any) -> None:
    """An SQS message body and a Step Functions execution's input are the payload, as an S3
    Body or an SNS Message is: a policy sees the queue and the state machine they go to (and
    can block the call on them), never the data, which reaches no span either."""
    seen: list[Any] = []
    guarded(capture_content="full", policy=lambda event: seen.append(event))
    payload = "customer list: ana@example.com, card 4111 1111 1111 1111, notes: call back"
    sqs = aws("sqs")
    url = sqs.create_queue(QueueName="exports")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=payload, DelaySeconds=0)
    sfn = aws("stepfunctions")
    machine = sfn.create_state_machine(
        name="export", roleArn="arn:aws:iam::123456789012:role/sfn",
        definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}),
    )["stateMachineArn"]
    sfn.start_execution(stateMachineArn=machine, name="run-1",
                        input=json.dumps({"records": payload}))
    sqs.delete_queue(QueueUrl=url)
    sfn.delete_state_machine(stateMachineArn=machine)

    sent = next(e for e in seen if e.kind == "cloud_call" and e.operation == "SendMessage")
    assert sent.resource == {"queue": url}
    assert sent.parameters == {"QueueUrl": url, "DelaySeconds": 0}
    started = next(e for e in seen if e.kind == "cloud_call" and e.operation == "StartExecution")
    assert started.resource == {"state_machine": machine}
    assert started.parameters == {"stateMachineArn": machine, "name": "run-1"}
    assert spans.one("aws.sqs.SendMessage").attributes["aws.sqs.queue.url"] == url
    everything = _everything(spans) + "\n".join(repr(event) for event in seen)
    for part in ("ana@example.com", "4111 1111 1111 1111", "call back"):
        assert part not in everything, part
