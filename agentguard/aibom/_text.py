"""Values from files, other processes and file names, made safe to store, serialise and print.

A file name is bytes: one that is not UTF-8 reaches Python as lone surrogates (``os.fsdecode``),
which no UTF-8 document or terminal can hold. Another process's report may carry any number and
any text. These helpers turn both into what a CycloneDX document, a span attribute and a
terminal accept, keeping what is needed to recover the original.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, TypeGuard

from agentguard._text import faithful

__all__ = ["MAX_TIMESTAMP", "faithful", "is_sha256", "path_bytes_hex", "printable", "timestamp"]

# 2100-01-01T00:00:00Z: later (or negative, or not finite) is no time a process was seen at.
MAX_TIMESTAMP = 4102444800.0
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Characters a terminal may act on or hide: C0/C1 controls, DEL, lone surrogates; the rest of
# what str.isprintable() refuses (format characters, separators) too, but not the plain space.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def path_bytes_hex(path: str) -> str | None:
    """The hex of a path's bytes when :func:`faithful` had to change it (else ``None``): the
    original file name, recoverable from a document."""
    if faithful(path) == path:
        return None
    try:
        return os.fsencode(path).hex()
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogatepass").hex()


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode: show the byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters, escape sequences' introducers and
    undecodable bytes shown as ``\\xNN`` / ``\\uNNNN`` instead of acted upon."""
    if text.isascii() and text.isprintable():
        return text
    escaped = _UNSAFE.sub(_escape, text)
    if escaped.isprintable():
        return escaped
    return "".join(ch if ch.isprintable() or ch == " " else
                    (f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
                    for ch in escaped)


def is_sha256(value: Any) -> TypeGuard[str]:
    """Whether ``value`` is a SHA-256 digest as this package writes it (64 lower-case hex)."""
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def timestamp(value: Any) -> float | None:
    """``value`` as seconds since the epoch when it is a plausible one (a finite number from
    1970 to 2100), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    if not math.isfinite(seconds) or not 0.0 <= seconds <= MAX_TIMESTAMP:
        return None
    return seconds
