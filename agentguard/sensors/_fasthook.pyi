"""Types of the runtime sensor's C audit hook entry point (``_fasthook.c``)."""

from collections.abc import Callable, Collection, Sequence
from contextvars import ContextVar
from types import ModuleType
from typing import Any

CONTROL_EVENT: str

def install(callback: Callable[[str, tuple[Any, ...]], None], events: Sequence[str],
            always: Collection[str], ordinary: set[str], modules_seen: set[str],
            code_attributes: frozenset[str], write_flags: int) -> bool | None: ...
def set_active(flag: bool) -> None: ...
def repeats(local: Any, holder: ModuleType, variable: ContextVar[Any],
            fold: Callable[[list[tuple[Any, Any, int]]], None]) -> None: ...
def flush() -> None: ...
def stats() -> dict[str, Any]: ...
