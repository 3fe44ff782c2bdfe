"""Which tools have side effects: sending, executing, writing or paying, judged by name.

A tool is a *sink* when its call can move data out or change the world. Users name theirs in
the configuration (exact names or shell-style patterns); the default guesses from the words of
the tool's name (``send_email`` → send, email → network), which covers the common cases and is
easy to override both ways.
"""

from __future__ import annotations

import fnmatch
import re
import threading
from collections.abc import Iterable

__all__ = ["ToolClassifier"]

_CATEGORIES: dict[str, frozenset[str]] = {
    "network": frozenset({
        "send", "email", "mail", "smtp", "post", "http", "https", "request", "requests", "fetch",
        "curl", "wget", "webhook", "notify", "notification", "slack", "teams", "discord",
        "telegram", "sms", "message", "publish", "share", "upload", "browse", "browser",
        "url", "web", "socket", "ftp", "sftp", "tweet", "reply", "forward", "navigate", "visit",
        "open_url", "call_api", "dm", "whatsapp", "sendgrid", "mailgun", "twilio",
    }),
    "exec": frozenset({
        "exec", "execute", "run", "shell", "bash", "sh", "zsh", "cmd", "command", "terminal",
        "subprocess", "eval", "python", "run_code", "script", "interpreter", "repl", "powershell",
        "spawn", "sql", "query_db", "jupyter", "notebook", "sandbox", "docker",
        "kubectl", "ssh",
    }),
    "write": frozenset({
        "write", "save", "store", "delete", "remove", "rm", "drop", "update", "create", "insert",
        "put", "modify", "edit", "append", "patch", "deploy", "commit", "push", "merge", "grant",
        "invite", "revoke", "upsert", "truncate", "move", "rename", "chmod", "chown", "kill",
        "terminate", "destroy", "purge", "wipe", "overwrite", "set", "assign", "approve",
        "close", "reset", "disable", "enable", "install", "uninstall", "publish", "export",
    }),
    "pay": frozenset({
        "pay", "payment", "payments", "transfer", "wire", "refund", "charge", "purchase", "buy",
        "checkout", "withdraw", "withdrawal", "transaction", "payout", "invoice", "billing",
        "stripe", "paypal", "crypto", "bitcoin", "swap", "trade", "sell",
    }),
}
# A name that starts with a read verb reads, unless it also names an outbound or destructive act
# (``get_messages`` reads; ``fetch_url`` can carry data out in its query string).
_READ_VERBS = frozenset({
    "get", "list", "read", "search", "lookup", "look", "find", "query", "describe", "show",
    "check", "view", "count", "retrieve", "load", "status", "summarize", "summarise",
})
_STRONG = frozenset({
    "send", "post", "upload", "exec", "execute", "run", "shell", "bash", "delete", "transfer",
    "pay", "write", "fetch", "http", "https", "curl", "wget", "browse", "webhook", "url", "wire",
    "email", "mail", "sms", "refund", "drop", "remove",
})
_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
_CACHE_LIMIT = 4096


class ToolClassifier:
    """Says whether a tool is a sink (and why), from configured names and name heuristics."""

    def __init__(self, sensitive: Iterable[str] = (), safe: Iterable[str] = (),
                 *, heuristics: bool = True) -> None:
        self._sensitive = [p for p in sensitive if p]
        self._safe = [p for p in safe if p]
        self.heuristics = heuristics
        self._cache: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def category(self, tool: str | None) -> str | None:
        """``"configured"``, ``"network"``, ``"exec"``, ``"write"`` or ``"pay"``; ``None`` when the
        tool is not a sink."""
        if not tool:
            return None
        cached = self._cache.get(tool, "")
        if cached != "":
            return cached
        result = self._classify(tool)
        with self._lock:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[tool] = result
        return result

    def _classify(self, tool: str) -> str | None:
        if any(fnmatch.fnmatchcase(tool, pattern) for pattern in self._safe):
            return None
        if any(fnmatch.fnmatchcase(tool, pattern) for pattern in self._sensitive):
            return "configured"
        if not self.heuristics:
            return None
        words = [w.lower() for w in _SPLIT.split(tool) if w]
        if not words:
            return None
        joined = "_".join(words)
        if words[0] in _READ_VERBS and not any(w in _STRONG for w in words[1:]):
            return None
        for category in ("pay", "exec", "network", "write"):
            names = _CATEGORIES[category]
            if joined in names or any(word in names for word in words):
                return category
        return None
