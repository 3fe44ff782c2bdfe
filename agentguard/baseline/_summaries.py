"""Mergeable summaries a profile is made of: numeric histograms and bounded value sets.

Both merge exactly (sums, unions, minima and maxima of exact values, never floating-point sums),
so merging profiles is commutative and associative and learning in any order gives the same
result. Both are bounded: a histogram coarsens its resolution to stay within its bucket budget
(the OpenTelemetry exponential-histogram scheme), a value set keeps the lexicographically smallest
values up to its cap and counts the observations of the others.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import field
from typing import Annotated, TypeVar

from pydantic import ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass

__all__ = [
    "MAX_COUNT",
    "MAX_SCALE",
    "MIN_SCALE",
    "Histogram",
    "ValueSet",
    "map_slot",
    "merge_counts",
    "merge_maps",
]

MAX_SCALE = 8
MIN_SCALE = -10
# Bucket i at MAX_SCALE holds values in [2**(i/256), 2**((i+1)/256)): about 0.27% wide.
_FACTOR = float(1 << MAX_SCALE)
_INF = math.inf

# Every count a profile holds is at most this: no agent observes 2**53 events, every count is
# exact as a float, and arithmetic on counts (rates, quantile ranks) cannot overflow. A larger
# count in a file is corruption, refused when the profile is loaded.
MAX_COUNT = 1 << 53
NonNeg = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Positive = Annotated[int, Field(ge=1, le=MAX_COUNT)]
# Bucket indices at the finest scale of every finite float lie within +-2**19 (log2 of the
# largest float and of the smallest subnormal, times 256).
BucketIndex = Annotated[int, Field(ge=-(1 << 20), le=1 << 20)]
STRICT = ConfigDict(extra="forbid")


def _index(magnitude: float) -> int:
    """The bucket of a positive finite value at the finest scale."""
    return math.floor(math.log2(magnitude) * _FACTOR)


# Small whole numbers (lengths, counts, sizes) are most of what is recorded: their buckets are
# looked up instead of computed.
_SMALL = tuple(_index(i) if i else 0 for i in range(4096))


def _span(buckets: dict[int, int]) -> int:
    return max(buckets) - min(buckets) + 1 if buckets else 0


def _rekey(buckets: dict[int, int], shift: int) -> dict[int, int]:
    if shift == 0:
        return dict(buckets)
    out: dict[int, int] = {}
    for index, count in buckets.items():
        key = index >> shift
        out[key] = out.get(key, 0) + count
    return out


def _add_into(target: dict[int, int], source: dict[int, int]) -> None:
    for index, count in source.items():
        target[index] = target.get(index, 0) + count


@dataclass(slots=True, config=STRICT)
class Histogram:
    """Distribution of a number: exact count, minimum and maximum, and log-scale buckets.

    Bucket ``i`` at scale ``s`` holds magnitudes in ``[2**(i/2**s), 2**((i+1)/2**s))``. Indices
    are always computed at the finest scale and shifted down, so lowering the scale (to stay
    within the bucket budget) and merging give the same buckets in any order.
    """

    count: NonNeg = 0
    zero: NonNeg = 0
    # NaN and infinities seen: counted, not summarised.
    nonfinite: NonNeg = 0
    min: float | None = None
    max: float | None = None
    scale: Annotated[int, Field(ge=MIN_SCALE, le=MAX_SCALE)] = MAX_SCALE
    positive: dict[BucketIndex, Positive] = field(default_factory=dict)
    negative: dict[BucketIndex, Positive] = field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Histogram:
        total = self.zero + sum(self.positive.values()) + sum(self.negative.values())
        if total != self.count:
            raise ValueError(f"bucket counts add up to {total}, not count={self.count}")
        if (self.count == 0) != (self.min is None) or (self.min is None) != (self.max is None):
            raise ValueError("min and max must be set exactly when count > 0")
        if self.min is not None and self.max is not None and (
                not (math.isfinite(self.min) and math.isfinite(self.max)) or self.min > self.max):
            raise ValueError(f"min={self.min} and max={self.max} are not a finite range")
        return self

    def add(self, value: float, max_buckets: int) -> None:
        """Record one value (NaN and infinities are only counted)."""
        try:
            x = float(value)
        except (OverflowError, TypeError, ValueError):
            self.nonfinite += 1
            return
        if x != x or x == _INF or x == -_INF:
            self.nonfinite += 1
            return
        self.count += 1
        low = self.min
        if low is None or x < low:
            self.min = x
        high = self.max
        if high is None or x > high:
            self.max = x
        if x == 0.0:
            self.zero += 1
            return
        if x > 0:
            buckets = self.positive
            small = int(x)
            if small == x and small < 4096:
                index = _SMALL[small] >> (MAX_SCALE - self.scale)
            else:
                index = _index(x) >> (MAX_SCALE - self.scale)
        else:
            buckets = self.negative
            index = _index(-x) >> (MAX_SCALE - self.scale)
        seen = buckets.get(index)
        if seen is not None:
            buckets[index] = seen + 1
            return
        buckets[index] = 1
        if len(buckets) > 1 and _span(buckets) > max_buckets:
            self._fit(max_buckets)

    def _fit(self, max_buckets: int) -> None:
        """Lower the scale until both sides fit in ``max_buckets`` consecutive buckets."""
        while self.scale > MIN_SCALE and (
                _span(self.positive) > max_buckets or _span(self.negative) > max_buckets):
            self.scale -= 1
            self.positive = _rekey(self.positive, 1)
            self.negative = _rekey(self.negative, 1)

    def merged(self, other: Histogram, max_buckets: int) -> Histogram:
        """The histogram of both inputs' values together."""
        scale = min(self.scale, other.scale)
        positive = _rekey(self.positive, self.scale - scale)
        _add_into(positive, _rekey(other.positive, other.scale - scale))
        negative = _rekey(self.negative, self.scale - scale)
        _add_into(negative, _rekey(other.negative, other.scale - scale))
        lows = [v for v in (self.min, other.min) if v is not None]
        highs = [v for v in (self.max, other.max) if v is not None]
        out = Histogram(
            count=self.count + other.count, zero=self.zero + other.zero,
            nonfinite=self.nonfinite + other.nonfinite,
            min=min(lows) if lows else None, max=max(highs) if highs else None,
            scale=scale, positive=positive, negative=negative,
        )
        out._fit(max_buckets)
        return out

    def _value(self, index: int, negative: bool) -> float:
        try:
            magnitude = math.pow(2.0, (index + 0.5) / math.pow(2.0, self.scale))
        except OverflowError:
            magnitude = _INF
        return -magnitude if negative else magnitude

    def quantile(self, q: float) -> float | None:
        """An estimate of the ``q`` quantile (within one bucket's width, clamped to min/max)."""
        if self.count == 0 or self.min is None or self.max is None:
            return None
        if q <= 0.0:
            return self.min
        if q >= 1.0:
            return self.max
        rank = q * (self.count - 1)
        seen = 0
        value: float | None = None
        for index in sorted(self.negative, reverse=True):
            seen += self.negative[index]
            if seen > rank:
                value = self._value(index, True)
                break
        if value is None:
            seen += self.zero
            if seen > rank:
                value = 0.0
        if value is None:
            for index in sorted(self.positive):
                seen += self.positive[index]
                if seen > rank:
                    value = self._value(index, False)
                    break
        low, high = self.min, self.max
        if value is None:
            return high
        return min(max(value, low), high)


@dataclass(slots=True, config=STRICT)
class ValueSet:
    """Distinct values with their counts, at most ``cap`` of them; the rest counted in ``dropped``.

    The kept values are always the ``cap`` smallest ones ever offered, so the set is the same
    whatever the order of learning or merging. A set that has dropped anything is *open*: its
    values are a sample, and a value not in it may have been seen before.
    """

    values: dict[str, Positive] = field(default_factory=dict)
    dropped: NonNeg = 0

    @property
    def total(self) -> int:
        return sum(self.values.values()) + self.dropped

    @property
    def closed(self) -> bool:
        """Whether every value ever seen is kept (nothing was dropped)."""
        return self.dropped == 0

    def singletons(self) -> int:
        return sum(1 for count in self.values.values() if count == 1)

    def new_rate(self) -> float:
        """Good-Turing estimate of the chance that the next value is one never seen before."""
        total = self.total
        if total == 0:
            return 1.0
        return (self.singletons() + self.dropped) / total

    def add(self, value: str, cap: int) -> None:
        """Count one observation of ``value``."""
        values = self.values
        seen = values.get(value)
        if seen is not None:
            values[value] = seen + 1
            return
        if len(values) < cap:
            values[value] = 1
            return
        largest = max(values)
        if value < largest:
            self.dropped += values.pop(largest)
            values[value] = 1
        else:
            self.dropped += 1

    def merged(self, other: ValueSet, cap: int) -> ValueSet:
        values = dict(self.values)
        for value, count in other.values.items():
            values[value] = values.get(value, 0) + count
        dropped = self.dropped + other.dropped
        if len(values) > cap:
            keep = sorted(values)[:cap]
            kept = {value: values[value] for value in keep}
            dropped += sum(values.values()) - sum(kept.values())
            values = kept
        return ValueSet(values=values, dropped=dropped)

    def most_common(self, limit: int) -> list[tuple[str, int]]:
        return sorted(self.values.items(), key=lambda item: (-item[1], item[0]))[:limit]


T = TypeVar("T")


def map_slot(mapping: dict[str, T], key: str, cap: int, make: Callable[[], T],
             weight: Callable[[T], int]) -> tuple[T, int] | tuple[None, int]:
    """The entry for ``key`` in a capped map, created if it fits.

    Like :class:`ValueSet`, the map keeps the ``cap`` smallest keys: a new key smaller than the
    largest kept one evicts it. Returns the entry (``None`` when ``key`` itself does not fit) and
    the weight of what was evicted or refused, for the caller's dropped counter (a refused key
    weighs 1: the observation being recorded).
    """
    entry = mapping.get(key)
    if entry is not None:
        return entry, 0
    if len(mapping) < cap:
        entry = mapping[key] = make()
        return entry, 0
    largest = max(mapping)
    if key < largest:
        evicted = weight(mapping.pop(largest))
        entry = mapping[key] = make()
        return entry, evicted
    return None, 1


def merge_maps(left: dict[str, T], right: dict[str, T], cap: int,
               merge: Callable[[T, T], T], weight: Callable[[T], int],
               copy: Callable[[T], T]) -> tuple[dict[str, T], int]:
    """Merge two capped maps entry by entry; returns the map and the weight of what was dropped."""
    out: dict[str, T] = {}
    for key in set(left) | set(right):
        a = left.get(key)
        b = right.get(key)
        if a is not None and b is not None:
            out[key] = merge(a, b)
        else:
            only = a if a is not None else b
            assert only is not None
            out[key] = copy(only)
    dropped = 0
    if len(out) > cap:
        keep = sorted(out)[:cap]
        kept = set(keep)
        dropped = sum(weight(out[key]) for key in out if key not in kept)
        out = {key: out[key] for key in keep}
    return out, dropped


def merge_counts(left: dict[str, int], right: dict[str, int]) -> dict[str, int]:
    """Counts of both (sums per key)."""
    out = dict(left)
    for key, count in right.items():
        out[key] = out.get(key, 0) + count
    return out
