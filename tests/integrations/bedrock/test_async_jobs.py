"""Asynchronous Bedrock work (StartAsyncInvoke, batch inference jobs): the judged cloud call names
everything a policy on where the output goes needs (destination, its owner, the KMS key it is
encrypted with, the role Bedrock uses), and an embedding job (TwelveLabs Marengo, Nova) is an
``embeddings`` span whose text inputs are judged as a model call's."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentguard import CloudCallBlocked, Decision, ModelCallBlocked
from tests.bedrock_server import Raw, Reply
from tests.genai import plain

REEL = "amazon.nova-reel-v1:1"
MARENGO = "twelvelabs.marengo-embed-2-7-v1:0"
MARENGO3 = "twelvelabs.marengo-embed-3-0-v1:0"
NOVA_EMBED = "amazon.nova-2-multimodal-embeddings-v1:0"
PROFILE = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/emb9"
KMS = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
FOREIGN_KMS = "arn:aws:kms:us-east-1:999999999999:key/attacker-key"
OUTPUT = "s3://agent-embeddings/run-1"
VIDEO = "s3://agent-media/clips/match.mp4"


def _start(client: Any, model: str, model_input: dict[str, Any], uri: str = OUTPUT,
           **s3: Any) -> Any:
    return client.start_async_invoke(
        modelId=model, modelInput=model_input,
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": uri, **s3}})


def _reel() -> dict[str, Any]:
    return {"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": "a fjord at dawn"}}


def _own_key(event: Any) -> Decision | None:
    """Output the agent writes is encrypted with the agent's own KMS key, or none."""
    key = event.resource.get("kms_key") if event.kind == "cloud_call" else None
    if key is not None and key != KMS:
        return Decision.block("output encrypted with a foreign key", rule_id="own-key")
    return None


# -- the KMS key and the rest of the destination -------------------------------------------------

def test_the_output_kms_key_of_a_video_is_part_of_the_judged_resource(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """``s3OutputDataConfig.kmsKeyId`` is the ``kms_key`` of the judged cloud call and a span
    attribute: a policy that allows only the agent's own key blocks a video whose output would
    be encrypted with another account's key, before anything is sent."""
    seen: list[Any] = []
    guarded(mode="enforce", policy=lambda event: seen.append(event) or _own_key(event),
            builtin_rules=False)
    client = runtime()
    with pytest.raises(CloudCallBlocked):
        _start(client, REEL, _reel(), kmsKeyId=FOREIGN_KMS)
    assert bedrock.requests == []
    [cloud] = [e for e in seen if e.kind == "cloud_call"]
    assert cloud.resource == {"model": REEL, "output_uri": OUTPUT, "bucket": "agent-embeddings",
                              "kms_key": FOREIGN_KMS}
    span = spans.one(f"generate_content {REEL}")
    assert span.attributes["agentguard.cloud.resource.kms_key"] == FOREIGN_KMS

    bedrock.push(Reply())
    _start(client, REEL, _reel(), kmsKeyId=KMS)  # the agent's own key: sent
    assert len(bedrock.requests) == 1


def test_the_output_kms_key_of_any_other_async_invocation_is_part_of_the_resource(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """StartAsyncInvoke of a model that is neither a video nor an embedding model is a plain cloud
    call; its destination's KMS key is in its resource too, and a policy can block on it."""
    guarded(mode="enforce", policy=_own_key, builtin_rules=False)
    with pytest.raises(CloudCallBlocked):
        _start(runtime(), "example.batch-model-v1:0", {"input": "a job"}, kmsKeyId=FOREIGN_KMS)
    assert bedrock.requests == []
    span = spans.one("aws.bedrock-runtime.StartAsyncInvoke")
    assert span.attributes["agentguard.cloud.resource.kms_key"] == FOREIGN_KMS
    assert span.attributes["aws.s3.bucket"] == "agent-embeddings"


def _batch(client: Any, output: str = "s3://agent-batch/out/", key: str | None = KMS) -> Any:
    s3_output: dict[str, Any] = {"s3Uri": output, "s3BucketOwner": "123456789012"}
    if key is not None:
        s3_output["s3EncryptionKeyId"] = key
    return client.create_model_invocation_job(
        jobName="nightly-summaries", modelId="anthropic.claude-3-haiku-20240307-v1:0",
        roleArn="arn:aws:iam::123456789012:role/BedrockBatch",
        inputDataConfig={"s3InputDataConfig": {"s3Uri": "s3://agent-batch/in/records.jsonl",
                                               "s3BucketOwner": "123456789012"}},
        outputDataConfig={"s3OutputDataConfig": s3_output})


def test_a_batch_inference_job_names_its_model_data_role_and_destination(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """CreateModelInvocationJob: the judged cloud call's resource is the model, the role Bedrock
    assumes, where the records are read from, and where the answers go (bucket, owner, KMS key);
    the span carries them as attributes."""
    seen: list[Any] = []
    guarded(policy=seen.append)
    bedrock.push(Raw({"jobArn": "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/j1"}))
    _batch(runtime("bedrock"))
    [cloud] = [e for e in seen if e.kind == "cloud_call"]
    assert (cloud.service, cloud.operation) == ("bedrock", "CreateModelInvocationJob")
    assert cloud.resource == {
        "model": "anthropic.claude-3-haiku-20240307-v1:0",
        "role": "arn:aws:iam::123456789012:role/BedrockBatch",
        "input_uri": "s3://agent-batch/in/records.jsonl", "input_bucket": "agent-batch",
        "input_bucket_owner": "123456789012",
        "output_uri": "s3://agent-batch/out/", "bucket": "agent-batch",
        "bucket_owner": "123456789012", "kms_key": KMS}
    span = spans.one("aws.bedrock.CreateModelInvocationJob")
    attrs = span.attributes
    assert attrs["aws.s3.bucket"] == "agent-batch"
    assert attrs["agentguard.cloud.resource.output_uri"] == "s3://agent-batch/out/"
    assert attrs["agentguard.cloud.resource.input_uri"] == "s3://agent-batch/in/records.jsonl"
    assert attrs["agentguard.cloud.resource.kms_key"] == KMS
    assert attrs["agentguard.cloud.resource.role"] == "arn:aws:iam::123456789012:role/BedrockBatch"


def test_a_batch_job_writing_to_a_foreign_bucket_is_never_created(
        guarded: Any, bedrock: Any, runtime: Any) -> None:
    """A policy that keeps the agent's output in its own buckets blocks a batch job whose answers
    would go elsewhere, as it blocks a PutObject: nothing is sent."""

    def own_buckets(event: Any) -> Decision | None:
        bucket = event.resource.get("bucket") if event.kind == "cloud_call" else None
        if bucket is not None and bucket != "agent-batch":
            return Decision.block("output outside the agent's buckets", rule_id="own-buckets")
        return None

    guarded(mode="enforce", policy=own_buckets, builtin_rules=False)
    with pytest.raises(CloudCallBlocked) as blocked:
        _batch(runtime("bedrock"), output="s3://attacker-drop/loot/")
    assert blocked.value.call == "bedrock.CreateModelInvocationJob"
    assert bedrock.requests == []


# -- embedding jobs ------------------------------------------------------------------------------

def test_a_marengo_embedding_job_is_an_embeddings_span_judged_twice(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """StartAsyncInvoke of TwelveLabs Marengo: ``embeddings {model}`` with the text input (and a
    placeholder for the video, never read) as input messages, the destination and the invocation
    ARN; judged as a model call (its inputs) and as the cloud call it is (where the vectors go)."""
    seen: list[Any] = []
    guarded(policy=seen.append)
    bedrock.push(Reply(), Reply())
    client = runtime()
    text = _start(client, MARENGO, {"inputType": "text", "inputText": "find the goal",
                                    "textTruncate": "end"}, kmsKeyId=KMS)
    _start(client, MARENGO, {"inputType": "video", "mediaSource": {
        "s3Location": {"uri": VIDEO, "bucketOwner": "123456789012"}},
        "embeddingOption": ["visual-text"]})

    first, second = spans.named(f"embeddings {MARENGO}")
    assert spans.named("aws.bedrock-runtime.StartAsyncInvoke") == []
    attrs = dict(first.attributes)
    assert plain(attrs.pop("gen_ai.input.messages")) == [
        {"role": "user", "content": "find the goal"}]
    assert attrs.pop("aws.request_id").startswith("req-")
    assert attrs == {
        "gen_ai.operation.name": "embeddings", "gen_ai.provider.name": "aws.bedrock",
        "gen_ai.request.model": MARENGO, "gen_ai.response.id": text["invocationArn"],
        "aws.s3.bucket": "agent-embeddings", "agentguard.cloud.resource.output_uri": OUTPUT,
        "agentguard.cloud.resource.kms_key": KMS,
        "rpc.system": "aws-api", "rpc.service": "Bedrock Runtime",
        "rpc.method": "StartAsyncInvoke", "aws.region": "us-east-1", "cloud.region": "us-east-1",
        "http.response.status_code": 200}
    assert plain(second.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "content": "<video>"}]

    requests = [e for e in seen if e.kind == "model_call"]
    assert [[m.content for m in e.messages] for e in requests] == [["find the goal"],
                                                                   ["<video>"]]
    clouds = [e for e in seen if e.kind == "cloud_call"]
    assert [c.resource["bucket"] for c in clouds] == ["agent-embeddings", "agent-embeddings"]
    assert clouds[0].context.span_id == requests[0].context.span_id


def test_a_refused_embedding_input_is_never_sent(guarded: Any, spans: Any, bedrock: Any,
                                                 runtime: Any) -> None:
    """A policy that keeps text out of a vector store sees an embedding job's text and stops it
    before it is sent (ModelCallBlocked), as for an InvokeModel embedding."""

    def no_names(event: Any) -> Decision | None:
        if event.kind == "model_call" and any("Jane Roe" in m.content for m in event.messages):
            return Decision.block("no customer names in vectors", rule_id="no-names")
        return None

    guarded(mode="enforce", policy=no_names, builtin_rules=False)
    with pytest.raises(ModelCallBlocked):
        _start(runtime(), MARENGO3, {"inputType": "text", "text": {"inputText": "Jane Roe"}})
    assert bedrock.requests == []
    assert spans.one(f"embeddings {MARENGO3}").attributes["agentguard.decision"] == "block"


def test_marengo_3_nova_and_profile_embedding_jobs_read_their_inputs(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """Marengo 3.0's nested inputs (text and image, several images with a text), a Nova segmented
    embedding job, and a Marengo body behind an application inference profile."""
    guarded()
    bedrock.push(Reply(), Reply(), Reply(), Reply())
    client = runtime()
    _start(client, MARENGO3, {"inputType": "text_image", "text_image": {
        "inputText": "man walking a dog",
        "mediaSource": {"s3Location": {"uri": "s3://agent-media/dog.jpg"}}}})
    _start(client, MARENGO3, {"inputType": "multi_input", "multi_input": {
        "inputText": "<@a> next to <@b>", "mediaSources": [
            {"name": "a", "mediaType": "image", "base64String": "aGVsbG8="},
            {"name": "b", "mediaType": "image", "base64String": "aGVsbG8="}]}})
    _start(client, NOVA_EMBED, {"taskType": "SEGMENTED_EMBEDDING", "segmentedEmbeddingParams": {
        "embeddingPurpose": "GENERIC_INDEX", "embeddingDimension": 1024,
        "video": {"format": "mp4", "source": {"s3Location": {"uri": VIDEO}}}}})
    _start(client, PROFILE, {"inputType": "audio", "audio": {
        "mediaSource": {"s3Location": {"uri": "s3://agent-media/call.wav"}}}})
    text_image, multi = spans.named(f"embeddings {MARENGO3}")
    assert plain(text_image.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "content": "man walking a dog"}, {"role": "user", "content": "<image>"}]
    assert plain(multi.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "content": "<@a> next to <@b>"}, {"role": "user", "content": "<image>"},
        {"role": "user", "content": "<image>"}]
    nova = spans.one(f"embeddings {NOVA_EMBED}")
    assert plain(nova.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "content": "<video>"}]
    assert nova.attributes["gen_ai.embeddings.dimension.count"] == 1024
    profile = spans.one(f"embeddings {PROFILE}")
    assert plain(profile.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "content": "<audio>"}]


def test_a_marengo_3_text_query_through_invoke_model_is_read(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """InvokeModel of Marengo 3.0 (a search query): the nested ``text.inputText`` is the input
    the span records and a policy sees; the vector answered gives the dimension count."""
    seen: list[Any] = []
    guarded(policy=seen.append)
    bedrock.push(Raw({"data": [{"embedding": [0.1] * 512}]}))
    runtime().invoke_model(modelId=f"us.{MARENGO3}", body=json.dumps(
        {"inputType": "text", "text": {"inputText": "goal in the last minute"}}))
    span = spans.one(f"embeddings us.{MARENGO3}")
    assert plain(span.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "content": "goal in the last minute"}]
    assert span.attributes["gen_ai.embeddings.dimension.count"] == 512
    [request] = [e for e in seen if e.kind == "model_call"]
    assert [m.content for m in request.messages] == ["goal in the last minute"]
