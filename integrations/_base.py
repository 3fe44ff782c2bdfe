"""The base class of every integration: patch targets, patch bookkeeping and undo."""

from __future__ import annotations

import abc
from typing import Any

import wrapt

__all__ = ["UNPATCHED", "Integration"]

# How a tamper finding names framework patches removed from outside agentguard.
UNPATCHED = "agentguard's framework patches were being removed"


class Integration(abc.ABC):
    """Patches one framework with ``wrapt`` and remembers how to undo it.

    Subclasses list their ``targets`` (module names whose import triggers patching) and implement
    :meth:`patch_module`, calling :meth:`wrap` for each entry point.
    """

    name: str = ""
    targets: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.wanted = False
        self.patched_modules: set[str] = set()
        self._patches: list[tuple[Any, str, Any, Any]] = []

    @abc.abstractmethod
    def patch_module(self, target: str, module: Any) -> None:
        """Wrap the entry points found in ``module`` (the import of ``target`` just finished)."""

    def wrap(self, owner: Any, attribute: str, wrapper: Any) -> None:
        """Wrap ``owner.attribute`` once; a second call for the same attribute does nothing."""
        for patched_owner, patched_attribute, _, _ in self._patches:
            if patched_owner is owner and patched_attribute == attribute:
                return
        original = owner.__dict__[attribute] if attribute in owner.__dict__ else \
            getattr(owner, attribute)
        wrapped = wrapt.FunctionWrapper(original, wrapper)
        setattr(owner, attribute, wrapped)
        self._patches.append((owner, attribute, original, wrapped))

    def unpatch(self) -> None:
        """Restore every wrapped attribute that still holds our wrapper (see :meth:`_unpatch`).

        Called by :func:`agentguard.integrations.disable` only: from anywhere else, while the
        runtime sensor runs, it is tampering (reported, and refused in a tool call in enforce
        mode).
        """
        from agentguard.sensors import _tamper

        _tamper.check_caller("agentguard.integrations", f"{type(self).__name__}.unpatch",
                             "removing agentguard's framework patches",
                             UNPATCHED)
        self._unpatch()

    def _unpatch(self) -> None:
        """Restore every wrapped attribute that still holds our wrapper.

        If another library wrapped on top of ours, its wrapper stays; ours underneath becomes a
        pass-through because the Guard is gone.
        """
        for owner, attribute, original, wrapped in reversed(self._patches):
            if owner.__dict__.get(attribute) is wrapped:
                setattr(owner, attribute, original)
        self._patches.clear()
        self.patched_modules.clear()
