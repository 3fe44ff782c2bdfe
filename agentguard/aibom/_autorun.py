"""``agentguard run --aibom FILE``: the AI-BOM of a program started by the CLI, written at exit.

Read by the bootstrap ``sitecustomize`` once ``instrument()`` has run in the child:
``AGENTGUARD_AIBOM_FILE`` (where to write); the declarations come from the configuration
``instrument()`` resolved: ``AGENTGUARD_AIBOM_DECLARED`` (declared files, comma-separated, as every
list setting), ``AGENTGUARD_AIBOM_MODELS`` (the models allow-list) and ``AGENTGUARD_AIBOM_BLOCK``
(``true``: the BOM rules block in enforce mode).
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
    from agentguard import _state, aibom

    guard = _state.guard
    if guard is None:
        return
    # What instrument() used: without the declarations when they could not be read (the
    # bootstrap said so once), not read again here.
    config = guard.config
    declared = list(config.aibom_declared)
    models = config.aibom_models or None
    block = config.aibom_block
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


# At exit the program waits at most this long for model digests still being taken; the
# document lists what was not reached without a digest (agentguard:sha256_pending).
EXIT_SETTLE_TIMEOUT = 5.0


def _write(target: str) -> None:
    from agentguard import aibom

    try:
        aibom.write(target, settle_timeout=EXIT_SETTLE_TIMEOUT)
    except Exception as exc:
        print(f"agentguard: could not write the AI-BOM to {target}: {exc}", file=sys.stderr)
