"""A scripted chat model: replays prepared answers (text or real tool calls) through LangChain.

It lets the demo and the tests drive real LangChain / LangGraph agents without a model service.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, PrivateAttr

__all__ = ["ScriptedChatModel", "call", "say"]

Step = AIMessage | Callable[[list[BaseMessage]], AIMessage]
_ids = itertools.count(1)


def call(name: str, call_id: str | None = None, **arguments: Any) -> dict[str, Any]:
    """One tool call request, as a model would emit it."""
    return {"name": name, "args": arguments, "id": call_id or f"call_{next(_ids)}",
            "type": "tool_call"}


def say(text: str = "", *calls: dict[str, Any]) -> AIMessage:
    """An assistant message with ``text`` and optional tool calls."""
    return AIMessage(content=text, tool_calls=list(calls),
                     usage_metadata={"input_tokens": 12, "output_tokens": 7, "total_tokens": 19},
                     response_metadata={"model_name": "scripted-1", "finish_reason":
                                        "tool_calls" if calls else "stop"})


class ScriptedChatModel(BaseChatModel):
    """Answers with the next scripted step; a step may be a function of the messages so far."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    script: Sequence[Any]
    model_name: str = "scripted-1"
    loop: bool = False
    _position: int = PrivateAttr(default=0)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "scripted"
        params["ls_model_name"] = self.model_name
        return params

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:
        return self

    def _next(self, messages: list[BaseMessage]) -> AIMessage:
        with self._lock:
            if self._position >= len(self.script):
                if not self.loop:
                    return say("(script finished)")
                self._position = 0
            step = self.script[self._position]
            self._position += 1
        message: AIMessage = step(messages) if callable(step) else step
        return message.model_copy()

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any
                  ) -> ChatResult:
        message = self._next(messages)
        return ChatResult(generations=[ChatGeneration(
            message=message,
            generation_info={"finish_reason": message.response_metadata.get("finish_reason")},
        )])

    def _chunks(self, message: AIMessage) -> Iterator[ChatGenerationChunk]:
        words = str(message.content).split(" ") if message.content else []
        for i, word in enumerate(words):
            yield ChatGenerationChunk(message=AIMessageChunk(
                content=word if i == 0 else " " + word))
        yield ChatGenerationChunk(message=AIMessageChunk(
            content="",
            tool_call_chunks=[
                tool_call_chunk(name=c["name"], args=_json(c["args"]), id=c["id"], index=i)
                for i, c in enumerate(message.tool_calls)
            ],
            usage_metadata=message.usage_metadata,
            response_metadata=dict(message.response_metadata),
            chunk_position="last",
        ))

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any
                ) -> Iterator[ChatGenerationChunk]:
        yield from self._chunks(self._next(messages))

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any
                       ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._chunks(self._next(messages)):
            yield chunk


def _json(value: Any) -> str:
    import json

    return json.dumps(value)
