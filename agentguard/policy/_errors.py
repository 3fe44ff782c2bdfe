"""``PolicyError``: an invalid policy file, with the file, line, field and a hint for each problem."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agentguard.config import ConfigError

__all__ = ["PolicyError", "PolicyIssue", "did_you_mean", "format_path", "rule_id_hint"]

# More problems than this in one file are counted, not listed: the first few are what a person fixes.
MAX_ISSUES = 20


@dataclass(frozen=True)
class PolicyIssue:
    """One problem in a policy source: where it is, what is wrong, and how to fix it."""

    file: str
    line: int | None
    column: int | None
    field: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class PolicyError(ConfigError):
    """A policy file (or dict, or string) is invalid; ``issues`` lists every problem found."""

    def __init__(self, issues: Sequence[PolicyIssue], omitted: int = 0) -> None:
        self.issues: list[PolicyIssue] = list(issues)
        self.omitted = omitted
        lines = [str(issue) for issue in self.issues]
        if omitted:
            lines.append(f"... and {omitted} more problem(s)")
        if len(lines) == 1:
            message = f"invalid policy: {lines[0]}"
        else:
            message = f"invalid policy ({len(self.issues) + omitted} problems):\n  " + \
                "\n  ".join(lines)
        super().__init__(message)

    @property
    def first(self) -> PolicyIssue:
        """The first problem (every PolicyError has at least one)."""
        return self.issues[0]

    @classmethod
    def single(cls, file: str, message: str, *, line: int | None = None,
               column: int | None = None, field: str = "", hint: str | None = None
               ) -> PolicyError:
        return cls([PolicyIssue(file, line, column, field, message, hint)])


def did_you_mean(word: str, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    """A hint naming the candidate closest to ``word`` (ignoring case and '_'/'-'), if any is close."""
    options = sorted({c for c in candidates if isinstance(c, str)})
    if not options or not isinstance(word, str):
        return None

    def norm(text: str) -> str:
        return text.lower().replace("_", "").replace("-", "")

    by_norm = {norm(option): option for option in options}
    if norm(word) in by_norm and by_norm[norm(word)] != word:
        return f"did you mean {by_norm[norm(word)]!r}?"
    close = difflib.get_close_matches(norm(word[:200]), list(by_norm), n=1, cutoff=cutoff)
    if close:
        return f"did you mean {by_norm[close[0]]!r}?"
    return None


def format_path(path: Sequence[str | int]) -> str:
    """``("rules", 2, "when", "all", 0)`` → ``rules[2].when.all[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = str(part)
    return out


def rule_id_hint(rule_id: str, known: Iterable[str]) -> str | None:
    """A did-you-mean for a rule id: 'AG1' or 'ag01' → 'AG001' when that exists."""
    ids = set(known)
    number = re.fullmatch(r"(?i)ag0*(\d{1,3})", rule_id.strip())
    if number:
        padded = f"AG{int(number.group(1)):03d}"
        return f"did you mean {padded!r}?" if padded in ids and padded != rule_id else None
    return did_you_mean(rule_id, ids, cutoff=0.8)
