"""Numbers sent as text, read the way the tool that receives them reads them.

Models often pass numbers as strings (``"limit": "5000"``), and a tool reads them with
``int()`` or ``float()``, which accept more than digits: surrounding whitespace, a sign, leading
zeros, ``_`` between digits and the decimal digits of every script. A check that reads less than
the tool does can be walked around (``" 50000"`` or forty zeros before ``50000`` still make
``int()`` return 50000), so policies and baselines both read numbers here.
"""

from __future__ import annotations

import re

__all__ = ["MAX_NUMBER_SCAN", "MAX_NUMBER_TEXT", "text_number"]

# Numeric strings longer than this are read without float()'s parser (see _long_number); longer
# than MAX_NUMBER_SCAN, like the text other checks see, they are not read as numbers.
MAX_NUMBER_TEXT = 256
MAX_NUMBER_SCAN = 1 << 20

_PADDING = re.compile(r"\s*([-+]?)[0_]*")
# What float() reads (but "nan"), without backtracking: no other text costs a conversion.
_NUMBER = re.compile(r"\s*[-+]?(?:(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][-+]?\d[\d_]*)?|"
                     r"(?i:inf|infinity))\s*")
# The characters a number can start with besides whitespace and decimal digits of any script.
_STARTS = frozenset("+-.iI")


def text_number(text: str) -> float | None:
    """The number ``text`` spells as ``float()`` reads it (``int()`` reads a subset), or ``None``.

    ``"nan"`` is not a number; ``"inf"`` and digits beyond the range of a float are ±infinity.
    Linear in the length of ``text``, and no conversion at all for text that cannot be a number.
    """
    first = text[:1]
    if not first or not (first in _STARTS or first.isdecimal() or first.isspace()):
        return None
    if len(text) > MAX_NUMBER_TEXT:
        if len(text) > MAX_NUMBER_SCAN:
            return None
        # Padding (spaces, leading zeros) does not change the number: drop it first.
        padding = _PADDING.match(text)
        assert padding is not None
        rest = text[padding.end():].rstrip()
        if not rest or rest[0] in ".eE":
            rest = "0" + rest
        if len(rest) > MAX_NUMBER_TEXT:
            return _long_number(padding.group(1) + rest)
        text = padding.group(1) + rest
    if not _NUMBER.fullmatch(text):
        return None
    try:
        number = float(text)
    except ValueError:  # misplaced '_'
        return None
    return None if number != number else number


def _long_number(text: str) -> float | None:
    """A numeric string with more than MAX_NUMBER_TEXT significant characters, read from its
    first significant digits with string methods only (linear in its length; '_' is ignored)."""
    core = text.lower()
    negative = core[:1] == "-"
    if core[:1] in ("+", "-"):
        core = core[1:]
    mantissa, has_exponent, exponent = core.partition("e")
    whole, _, fraction = mantissa.partition(".")
    whole, fraction = whole.replace("_", ""), fraction.replace("_", "")
    exponent = exponent.replace("_", "")
    if not (whole or fraction) or any(part and not part.isdecimal() for part in (whole, fraction)):
        return None
    power = 0
    if has_exponent:
        exponent_negative = exponent[:1] == "-"
        digits = exponent[1:] if exponent[:1] in ("+", "-") else exponent
        if not digits.isdecimal():
            return None
        digits = digits.lstrip("0") or "0"
        # An exponent this long puts the number beyond every float whatever the (at most
        # MAX_NUMBER_SCAN) digits before it: no need to read it.
        power = 10**9 if len(digits) > 9 else int(digits)
        power = -power if exponent_negative else power
    significant = (whole + fraction).lstrip("0")
    if not significant:
        return -0.0 if negative else 0.0
    # The mantissa is 0.<significant> times 10**position.
    stripped_whole = whole.lstrip("0")
    position = len(stripped_whole) if stripped_whole else -(len(fraction) - len(fraction.lstrip("0")))
    number = float(f"0.{significant[:40]}e{position + power}")
    return -number if negative else number
