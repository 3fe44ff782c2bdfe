"""Text from file names and other processes made valid Unicode, for documents, databases and
terminals that accept nothing else."""

from __future__ import annotations

__all__ = ["faithful"]


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
