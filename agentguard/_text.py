"""Text from file names and other processes made valid Unicode, for documents, databases and
terminals that accept nothing else; and made visible, for terminals that would act on it."""

from __future__ import annotations

import re

__all__ = ["faithful", "visible"]

# Characters a terminal acts on rather than shows: C0 controls (escape sequences that recolour,
# hide or rewrite what is on screen), DEL, the C1 controls (U+009B is the 8-bit CSI) and the
# bidirectional overrides that reorder a line.
_TERMINAL_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with the characters a terminal acts on written as escapes (``\\x1b``,
    ``\\u202e``): strings chosen by whoever steered a model (learned tool names, event values)
    printed as they are, not obeyed."""
    return _TERMINAL_CONTROLS.sub(_escape, text)


def faithful(text: str) -> str:
    """``text`` as valid Unicode: bytes of a file name that were not UTF-8 (``os.fsdecode``'s
    surrogate escapes) written ``\\xNN``, any other lone surrogate ``\\udNNN``.

    A file name is bytes: one that is not UTF-8 reaches Python as lone surrogates, which no UTF-8
    document, SQLite text column or terminal can hold.
    """
    if text.isascii():
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
