"""The installed environment, read once: distributions, versions, requirements, module owners.

``importlib.metadata`` scans every ``sys.path`` entry on each query; a process with a few hundred
distributions pays that once here (one pass over ``distributions()``) and reads dictionaries
afterwards. :func:`refresh` reads it again (a tool may have run pip).
"""

from __future__ import annotations

import importlib.metadata
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from agentguard._errors import internal_error

__all__ = ["Environment", "InstalledDistribution", "environment", "refresh"]

MAX_CLOSURE = 4096


@dataclass(slots=True)
class InstalledDistribution:
    """One installed distribution: its names, version, location and requirements."""

    name: str  # normalised (PEP 503)
    display_name: str
    version: str
    location: str | None
    requires: tuple[str, ...] = ()  # normalised names of requirements that apply here
    summary: str | None = None
    license: str | None = None
    top_level: tuple[str, ...] = field(default_factory=tuple)


def _applies(requirement: Requirement, extras: Iterable[str]) -> bool:
    marker: Marker | None = requirement.marker
    if marker is None:
        return True
    for extra in ("", *extras):
        try:
            if marker.evaluate({"extra": extra}):
                return True
        except Exception:
            return True
    return False


class Environment:
    """An index of the installed distributions and which top-level modules each ships."""

    def __init__(self, *, read: bool = True) -> None:
        self.distributions: dict[str, InstalledDistribution] = {}
        self.module_owners: dict[str, tuple[str, ...]] = {}
        self.stdlib: frozenset[str] = frozenset(getattr(sys, "stdlib_module_names", ())) | \
            frozenset(sys.builtin_module_names)
        self._raw_requires: dict[str, list[Requirement]] = {}
        if read:
            self._read()

    @classmethod
    def recorded(cls, distributions: Iterable[InstalledDistribution]) -> Environment:
        """An environment known only from what an agent reported (another process, another host)."""
        env = cls(read=False)
        owners: dict[str, set[str]] = {}
        for dist in distributions:
            env.distributions.setdefault(dist.name, dist)
            for top in dist.top_level:
                owners.setdefault(top, set()).add(dist.name)
        env.module_owners = {top: tuple(sorted(names)) for top, names in owners.items()}
        return env

    def _read(self) -> None:
        owners: dict[str, set[str]] = {}
        for dist in importlib.metadata.distributions():
            try:
                headers = _headers(dist.read_text("METADATA") or dist.read_text("PKG-INFO") or "")
                display = (headers.get("name") or [""])[0]
                if not display:
                    continue
                name = canonicalize_name(display)
                if name in self.distributions:
                    continue  # an earlier sys.path entry shadows this one, as the import system does
                requirements: list[Requirement] = []
                for text in headers.get("requires-dist", ()):
                    try:
                        requirements.append(Requirement(text))
                    except InvalidRequirement:
                        continue
                self._raw_requires[name] = requirements
                try:
                    location: str | None = str(dist.locate_file(""))
                except Exception:
                    location = None
                tops = _top_level(dist)
                for top in tops:
                    owners.setdefault(top, set()).add(name)
                license_text = _first(headers, "license-expression") or _first(headers, "license")
                self.distributions[name] = InstalledDistribution(
                    name=name, display_name=display, version=(headers.get("version") or [""])[0],
                    location=location,
                    requires=tuple(canonicalize_name(r.name) for r in requirements
                                   if _applies(r, ())),
                    summary=_first(headers, "summary"),
                    license=license_text if license_text and len(license_text) < 100 else None,
                    top_level=tuple(sorted(tops)),
                )
            except Exception as exc:
                internal_error("aibom environment", exc)
        self.module_owners = {top: tuple(sorted(names)) for top, names in owners.items()}

    def owner(self, module: str) -> tuple[str, ...]:
        """The normalised names of the distributions that ship top-level ``module``."""
        return self.module_owners.get(module.partition(".")[0], ())

    def closure(self, roots: Iterable[str], *, with_extras: bool = False) -> set[str]:
        """``roots`` and every installed distribution they require, transitively (bounded).

        With ``with_extras`` a root's requirements under any of its extras count too (a project
        that installs ``agentguard[dev]`` declares what the extra brings).
        """
        seen: set[str] = set()
        stack: list[str] = [canonicalize_name(root) for root in roots]
        first = set(stack)
        while stack and len(seen) < MAX_CLOSURE:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            requires: list[str]
            if with_extras and name in first:
                requires = [canonicalize_name(r.name) for r in self._raw_requires.get(name, ())]
            else:
                dist = self.distributions.get(name)
                requires = list(dist.requires) if dist is not None else []
            stack.extend(req for req in requires if req not in seen)
        return seen


def _first(headers: dict[str, list[str]], key: str) -> str | None:
    values = headers.get(key)
    return values[0] if values else None


def _headers(text: str) -> dict[str, list[str]]:
    """The header fields of a core-metadata file (lower-case keys), without its long description.

    ``Distribution.metadata`` runs the e-mail parser over the whole file, description included,
    on every call; the headers alone are all an inventory needs.
    """
    fields: dict[str, list[str]] = {}
    key: str | None = None
    for line in text.split("\n"):
        if not line.strip():
            break
        if line[:1] in (" ", "\t") and key is not None:
            values = fields[key]
            values[-1] = values[-1] + " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        fields.setdefault(key, []).append(value.strip())
    return fields


def _top_level(dist: importlib.metadata.Distribution) -> set[str]:
    """Top-level import names a distribution ships (``top_level.txt``, else its ``RECORD``)."""
    text = dist.read_text("top_level.txt")
    if text:
        return {line.strip() for line in text.splitlines() if line.strip()}
    tops: set[str] = set()
    for line in (dist.read_text("RECORD") or "").splitlines():
        path = line.split(",", 1)[0].strip('"')
        head, sep, _ = path.partition("/")
        if not head or head.endswith((".dist-info", ".egg-info", ".data")) or \
                head in ("..", "__pycache__"):
            continue
        if not sep:
            if head.endswith(".py"):
                tops.add(head[:-3])
            elif head.endswith((".so", ".pyd")):
                tops.add(head.partition(".")[0])
        elif "." not in head and "-" not in head:
            tops.add(head)
    return tops


_lock = threading.Lock()
_cached: Environment | None = None


def environment() -> Environment:
    """The environment index, read on first use and cached."""
    global _cached
    cached = _cached
    if cached is not None:
        return cached
    with _lock:
        if _cached is None:
            _cached = Environment()
        return _cached


def refresh() -> Environment:
    """Read the installed distributions again."""
    global _cached
    with _lock:
        _cached = Environment()
        return _cached
