"""A real LangChain agent whose tools load models and import a package its requirements miss.

Run as a program (``agentguard run --aibom ... -- python workload.py MODELS_DIR``): the AI-BOM
tests read the document and the findings it leaves behind.
"""

from __future__ import annotations

import sys
from typing import Any

from langchain.agents import create_agent
from langchain_core.tools import tool

import agentguard
from agentguard.demo.scripted import ScriptedChatModel, call, say

sys.path.insert(0, __file__.rsplit("/", 3)[0])
from tests.aibom.models import read_safetensors


@tool
def embed(path: str) -> str:
    """Load the embedding table (safetensors)."""
    return f"{len(read_safetensors(path))} tensors"


@tool
def classify(path: str) -> str:
    """Load the classifier (joblib) and say what it is."""
    import joblib  # not in the requirements: the import this test is about

    return type(joblib.load(path)).__name__


def main(models: str) -> None:
    script: list[Any] = [
        say("", call("embed", path=f"{models}/embeddings.safetensors")),
        say("", call("classify", path=f"{models}/classifier.joblib")),
        say("done"),
    ]
    agent = create_agent(ScriptedChatModel(script=script), [embed, classify], name="triage")
    with agentguard.conversation("ticket-9", user="ada"):
        agent.invoke({"messages": [{"role": "user", "content": "triage ticket 9"}]})


if __name__ == "__main__":
    main(sys.argv[1])
