"""Numbers from attacker-controlled values: converted and shown without raising, in bounded time.

A model's JSON can carry an integer of hundreds of digits (``10**400`` is valid JSON and a valid
Python ``int``). ``float()`` of it raises ``OverflowError`` and ``str()`` of one beyond 4300 digits
raises ``ValueError``; either, raised while an event is scored, would lose the whole event's
deviations. Here such an integer is an infinity of its sign, which is outside every learned range.
"""

from __future__ import annotations

import math

__all__ = ["as_float", "digits", "number_text"]

_LOG10_2 = math.log10(2)
# Above this many bits the exact digit count is not worth a power of ten: it is estimated.
_EXACT_BITS = 1 << 16


def as_float(value: int | float) -> float:
    """``value`` as a float; an integer too large for one becomes an infinity of its sign."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def digits(value: int) -> int:
    """The number of decimal digits of an integer's magnitude, without writing it out."""
    magnitude = abs(value)
    if magnitude < 10:
        return 1
    bits = magnitude.bit_length()
    # 2**(bits-1) <= magnitude < 2**bits: the count is this estimate or one more.
    estimate = int((bits - 1) * _LOG10_2) + 1
    if bits <= _EXACT_BITS and magnitude >= 10 ** estimate:
        return estimate + 1
    return estimate


def number_text(value: int | float | None) -> str:
    """A number as a message shows it: whole numbers exactly (below 10**15), others to 4 digits,
    and an integer too large for a float by its digit count."""
    if value is None:
        return "?"
    number = as_float(value)
    if math.isinf(number) and isinstance(value, int):
        return f"{'-' if value < 0 else ''}({digits(value)}-digit integer)"
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return f"{number:.4g}"
