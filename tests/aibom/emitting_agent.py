"""An instrumented LangChain agent that sends its runtime AI-BOM to a collector, run as a process.

``python emitting_agent.py ENDPOINT MODELS_DIR REQUIREMENTS``: instruments with OTLP to the
collector at ``ENDPOINT`` and enables the AI-BOM (emission interval from
``AGENTGUARD_AIBOM_EMIT_INTERVAL``). Phase one: a tool imports ``joblib``, which the requirements
do not declare; it prints ``phase-one`` and waits for a line on stdin, while the periodic
emission sends what changed. Phase two: a tool loads a safetensors model (not on the empty models
allow-list), then the program exits without calling ``uninstrument()``: the last changes go out
from the exit handler.
"""

from __future__ import annotations

import sys
from typing import Any

from langchain.agents import create_agent
from langchain_core.tools import tool

import agentguard
from agentguard import aibom
from agentguard.demo.scripted import ScriptedChatModel, call, say

sys.path.insert(0, __file__.rsplit("/", 3)[0])
from tests.aibom.models import read_safetensors


@tool
def classify(text: str) -> str:
    """Classify a ticket with the classical model library."""
    import joblib  # not in the requirements

    return f"{text}: {joblib.__name__}"


@tool
def embed(path: str) -> str:
    """Load the embedding table (safetensors)."""
    return f"{len(read_safetensors(path))} tensors"


def _run(script: list[Any], tools: list[Any], conversation: str) -> None:
    agent = create_agent(ScriptedChatModel(script=script), tools, name="triage")
    with agentguard.conversation(conversation, user="ada"):
        agent.invoke({"messages": [{"role": "user", "content": "triage the ticket"}]})


def main(endpoint: str, models: str, requirements: str) -> None:
    agentguard.instrument(service_name="bom-agent", exporter="otlp", otlp_endpoint=endpoint,
                          otlp_protocol="http/protobuf")
    allowlist = f"{models}/models.yaml"
    with open(allowlist, "w", encoding="utf-8") as out:
        out.write("models: []\n")
    aibom.enable(declared=[requirements], models_allowlist=allowlist)
    _run([say("", call("classify", text="printer on fire")), say("done")], [classify],
         "ticket-1")
    print("phase-one", flush=True)
    sys.stdin.readline()
    _run([say("", call("embed", path=f"{models}/embeddings.safetensors")), say("done")], [embed],
         "ticket-2")
    print("phase-two", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
