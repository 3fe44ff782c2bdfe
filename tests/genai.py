"""Reading captured GenAI messages in tests.

Spans hold ``gen_ai.input.messages``/``gen_ai.output.messages`` in the GenAI conventions' shape
(a role and typed parts; ``tests/core/test_genai_messages.py`` checks that shape). Tests about
*what* was captured compare a plain view of them: ``role``, the text as ``content`` (a tool
message's response, or ``""`` when there is none), and ``tool_calls``, ``tool_call_id`` and
``name`` when present.
"""

from __future__ import annotations

import json
from typing import Any


def plain(messages: Any) -> list[dict[str, Any]]:
    """The plain view of captured messages (their JSON text or the parsed list)."""
    parsed = json.loads(messages) if isinstance(messages, str) else messages
    out = []
    for message in parsed:
        item: dict[str, Any] = {"role": message["role"]}
        if message.get("name"):
            item["name"] = message["name"]
        texts, calls = [], []
        for part in message["parts"]:
            if part["type"] == "text":
                texts.append(part["content"])
            elif part["type"] == "tool_call":
                calls.append({"id": part["id"], "name": part["name"],
                              "arguments": part["arguments"]})
            elif part["type"] == "tool_call_response":
                item["tool_call_id"] = part["id"]
                texts.append(part["response"])
        item["content"] = "".join(texts)
        if calls:
            item["tool_calls"] = calls
        out.append(item)
    return out
