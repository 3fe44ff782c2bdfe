"""Secret redaction for captured content: cloud keys, tokens, private keys, URL passwords, JWTs.

Every pattern is anchored on a literal and uses bounded repetition, so the work is linear in the
input. A cheap substring pre-check on the lower-cased text skips the patterns that cannot match,
which keeps the common case (no secret anywhere) at a few microseconds per kilobyte.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["REDACTION_RULES", "redact"]

_Sub = Callable[[str], str]


def _marker(name: str) -> str:
    return f"[REDACTED:{name}]"


# (name, triggers on the lower-cased text, pattern, replacement). A rule runs only when one of
# its triggers occurs in the text.
_RULES: list[tuple[str, tuple[str, ...], re.Pattern[str], str]] = [
    (
        "private_key",
        ("private key",),
        re.compile(
            r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY-----"
            r"[\s\S]*?(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY-----|\Z)"
        ),
        _marker("private_key"),
    ),
    (
        "aws_access_key_id",
        ("akia", "asia"),
        re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"),
        _marker("aws_access_key_id"),
    ),
    (
        "jwt",
        ("eyj",),
        re.compile(r"(?<![\w-])eyJ[\w-]{4,4096}\.eyJ[\w-]{4,8192}\.[\w-]{0,4096}"),
        _marker("jwt"),
    ),
    (
        "url_password",
        ("://",),
        re.compile(r"(?<=[a-zA-Z0-9+.-]://)([^/\s:@]{1,256}):[^/\s@]{1,256}@"),
        r"\1:" + _marker("password") + "@",
    ),
    (
        "bearer",
        ("bearer",),
        re.compile(r"(?i)(\bbearer\s{1,8})[A-Za-z0-9._~+/=-]{8,4096}"),
        r"\1" + _marker("token"),
    ),
    (
        "basic_auth",
        ("basic ",),
        re.compile(r"(\bBasic\s{1,8})[A-Za-z0-9+/]{12,4096}={0,2}"),
        r"\1" + _marker("credentials"),
    ),
    (
        "provider_token",
        ("sk-", "gh", "xox", "glpat-", "aiza"),
        re.compile(
            r"(?<![\w-])(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,512}"
            r"|gh[pousr]_[A-Za-z0-9]{36,255}"
            r"|github_pat_[A-Za-z0-9_]{22,255}"
            r"|xox[abposr]-[A-Za-z0-9-]{10,255}"
            r"|glpat-[A-Za-z0-9_-]{20,64}"
            r"|AIza[0-9A-Za-z_-]{35})"
        ),
        _marker("token"),
    ),
    (
        "assignment",
        ("pass", "pwd", "secret", "key", "token", "credential", "authorization"),
        # A secret-looking key name, then ':' or '=', then the value (JSON, YAML, env, query
        # strings, headers). Bare prose ("the token expired") has no separator and is left alone.
        re.compile(
            r"(?i)((?:password|passwd|pwd|passphrase|secret|api[_-]?key|access[_-]?key"
            r"|private[_-]?key|auth[_-]?token|access[_-]?token|refresh[_-]?token"
            r"|session[_-]?token|security[_-]?token|id[_-]?token|client[_-]?secret|credentials?"
            r"|authorization)[\w-]{0,40}[\"']?\s{0,3}[:=]\s{0,3}[\"']?)"
            r"(?!\[REDACTED|(?i:bearer|basic)\s)([^\s\"',;&}<>]{1,1024})"
        ),
        r"\1" + _marker("secret"),
    ),
]

REDACTION_RULES: tuple[str, ...] = tuple(rule[0] for rule in _RULES)


def redact(text: str) -> str:
    """Return ``text`` with every recognised secret replaced by ``[REDACTED:<kind>]``."""
    lowered = text.lower()
    for _name, triggers, pattern, replacement in _RULES:
        for trigger in triggers:
            if trigger in lowered:
                text = pattern.sub(replacement, text)
                lowered = text.lower()
                break
    return text
