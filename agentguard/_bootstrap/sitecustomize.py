"""Instruments a program started by ``agentguard run`` before its own code runs.

Configured entirely by ``AGENTGUARD_*`` / ``OTEL_*`` variables. Any ``sitecustomize`` this one
shadows is loaded afterwards, so the program's own start-up hooks keep working.
"""

from __future__ import annotations

import importlib.util
import os
import sys


def _instrument() -> None:
    if os.environ.get("AGENTGUARD_AUTO_INSTRUMENT") != "1":
        return
    try:
        import agentguard

        try:
            agentguard.instrument()
        except Exception:
            problem = _aibom_declarations_problem()
            if problem is None:
                raise
            # A declared-dependency or models file that cannot be read costs the AI-BOM its
            # declarations, not the program its protection: said once, then guarded without them.
            print(f"agentguard: AI-BOM declarations not used: {problem}", file=sys.stderr)
            agentguard.instrument(aibom_declared=[], aibom_models="")
    except Exception as exc:  # a bad setting must not stop the program from starting
        print(f"agentguard: not instrumenting this program: {exc}", file=sys.stderr)
        return
    if os.environ.get("AGENTGUARD_AIBOM_FILE"):
        try:
            from agentguard.aibom._autorun import start

            start()  # `agentguard run --aibom FILE`: the AI-BOM, written at exit
        except Exception as exc:
            print(f"agentguard: no AI-BOM for this program: {exc}", file=sys.stderr)


def _aibom_declarations_problem() -> str | None:
    """Why the AI-BOM declared files the environment names cannot be used, if they cannot."""
    try:
        from agentguard.aibom import DeclaredError, load_declared
        from agentguard.config import resolve_config

        config = resolve_config({})
        if not (config.aibom_declared or config.aibom_models):
            return None
        load_declared(config.aibom_declared, config.aibom_models)
    except DeclaredError as exc:
        return str(exc)
    except Exception:
        return None  # another setting is wrong: the caller reports it
    return None


def _chain() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        if not entry or os.path.abspath(entry) == here:
            continue
        candidate = os.path.join(entry, "sitecustomize.py")
        if os.path.isfile(candidate):
            spec = importlib.util.spec_from_file_location("_agentguard_next_sitecustomize", candidate)
            if spec is not None and spec.loader is not None:
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            return


_instrument()
_chain()
