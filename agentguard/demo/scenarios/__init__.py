"""The seed's threat scenarios, one module each (``s<N>_<key>.py`` exposing ``SCENARIO``)."""

from __future__ import annotations

import importlib
import pkgutil

from agentguard.demo._scenario import Scenario

__all__ = ["all_scenarios"]


def all_scenarios() -> list[Scenario]:
    """Every scenario module's ``SCENARIO``, in scenario-number order."""
    found: list[Scenario] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("s") and "_" in info.name:
            module = importlib.import_module(f"{__name__}.{info.name}")
            found.append(module.SCENARIO)
    return sorted(found, key=lambda s: s.number)
