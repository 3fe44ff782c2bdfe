"""``agentguard run --aibom FILE``: the AI-BOM of a program started by the CLI, written at exit.

Read by the bootstrap ``sitecustomize`` once ``instrument()`` has run in the child:
``AGENTGUARD_AIBOM_FILE`` (where to write), ``AGENTGUARD_AIBOM_DECLARED`` (declared files,
``os.pathsep``-separated), ``AGENTGUARD_AIBOM_MODELS`` (the models allow-list) and
``AGENTGUARD_AIBOM_BLOCK`` (``true``: the BOM rules block in enforce mode).
"""

from __future__ import annotations

import atexit
import os
import sys

__all__ = ["ENV_BLOCK", "ENV_DECLARED", "ENV_FILE", "ENV_MODELS", "start"]

ENV_FILE = "AGENTGUARD_AIBOM_FILE"
ENV_DECLARED = "AGENTGUARD_AIBOM_DECLARED"
ENV_MODELS = "AGENTGUARD_AIBOM_MODELS"
ENV_BLOCK = "AGENTGUARD_AIBOM_BLOCK"

_started = False


def start() -> None:
    """Enable the AI-BOM from the environment and write the document when the program exits."""
    global _started
    target = os.environ.get(ENV_FILE)
    if not target or _started:
        return
    _started = True
    from agentguard import aibom

    declared = [item for item in os.environ.get(ENV_DECLARED, "").split(os.pathsep) if item]
    models = os.environ.get(ENV_MODELS) or None
    block = os.environ.get(ENV_BLOCK, "").strip().lower() in ("1", "true", "yes", "on")
    try:
        aibom.enable(declared=declared, models_allowlist=models, block=block)
    except Exception as exc:  # a bad declared file must not stop the program from starting
        print(f"agentguard: AI-BOM declarations not used: {exc}", file=sys.stderr)
        try:
            aibom.enable(block=block)
        except Exception as again:
            print(f"agentguard: AI-BOM not enabled: {again}", file=sys.stderr)
            return
    # Registered after instrument()'s own exit handler, so it runs first (atexit is LIFO), while
    # the Guard is still in place.
    atexit.register(_write, target)


def _write(target: str) -> None:
    from agentguard import aibom

    try:
        aibom.write(target, settle_timeout=10.0)
    except Exception as exc:
        print(f"agentguard: could not write the AI-BOM to {target}: {exc}", file=sys.stderr)
