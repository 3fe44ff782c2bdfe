"""Which tools have side effects: sending, executing, writing or paying.

A tool is a *sink* when its call can move data out or change the world. Users name theirs in
the detector's settings or in a policy file's ``sensitive_tools`` / ``safe_tools`` lists (exact
names or shell-style patterns); a learned profile adds the tools seen with side effects
(processes started, files written, cloud calls that send or change something); otherwise the
words of the tool's name decide (``send_email`` → send, email → network), which covers the
common cases and is easy to override both ways.
"""

from __future__ import annotations

import fnmatch
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["ToolClassifier", "side_effects"]

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
# Cloud operations (``service.Operation`` in a profile) that act on the world, by the verb the
# operation name starts with; anything else (Get, List, Describe, Query, a model call) reads.
_CLOUD_EXEC = frozenset({"lambda.Invoke", "lambda.InvokeAsync", "lambda.InvokeWithResponseStream",
                         "ssm.SendCommand", "ssm.StartSession", "ecs.RunTask",
                         "ecs.ExecuteCommand", "ec2.RunInstances", "glue.StartJobRun",
                         "states.StartExecution", "codebuild.StartBuild"})
_CLOUD_SENDING = ("Send", "Publish")
_CLOUD_WRITING = ("Put", "Delete", "Create", "Update", "Modify", "Write", "BatchWrite",
                  "BatchDelete", "Upload", "Copy", "Attach", "Detach", "Terminate", "Stop",
                  "Reboot", "Replace", "Remove", "Add", "Set", "Tag", "Untag", "Restore",
                  "Import", "Export", "Revoke", "Authorize", "Grant", "Enable", "Disable",
                  "Associate", "Disassociate", "Register", "Deregister", "Change", "Reset",
                  "Rotate", "Complete", "Abort", "Transact")
_MAX_LEARNED = 4096


def side_effects(profile: Any) -> dict[str, str]:
    """The tools a learned profile saw acting on the world, with the kind of act: ``exec``
    (started a process, or a cloud call that runs code), ``network`` (a cloud call that sends:
    ``ses.SendEmail``, ``sns.Publish``) or ``write`` (wrote a file, or a cloud call that
    changes something). Connections alone do not count: reading an API connects too."""
    tools = getattr(profile, "tools", None)
    if not isinstance(tools, Mapping):
        return {}
    found: dict[str, str] = {}
    for name, tool in list(tools.items())[:_MAX_LEARNED]:
        activity = getattr(tool, "activity", None)
        if activity is None:
            continue
        calls = getattr(getattr(activity, "cloud_calls", None), "values", None) or {}
        operations = [str(call) for call in list(calls)[:256]]
        if getattr(activity, "processes", None) or any(op in _CLOUD_EXEC for op in operations):
            found[str(name)] = "exec"
        elif any(op.partition(".")[2].startswith(_CLOUD_SENDING) for op in operations):
            found[str(name)] = "network"
        elif _written(getattr(activity, "file_writes", None)) or any(
                op.partition(".")[2].startswith(_CLOUD_WRITING) for op in operations):
            found[str(name)] = "write"
    return found


def _written(files: Any) -> bool:
    return files is not None and bool(getattr(files, "values", None) or
                                      getattr(files, "dropped", 0))


class ToolClassifier:
    """Says whether a tool is a sink (and why), from configured names and name heuristics."""

    def __init__(self, sensitive: Iterable[str] = (), safe: Iterable[str] = (),
                 *, heuristics: bool = True) -> None:
        self._own = ([p for p in sensitive if p], [p for p in safe if p])
        self._sensitive = list(self._own[0])
        self._safe = list(self._own[1])
        self.heuristics = heuristics
        # Tools a learned profile saw with side effects, and their kind of act.
        self._learned: dict[str, str] = {}
        self._cache: dict[str, str | None] = {}
        self._lock = threading.Lock()
        # Bumped when the sources change: an answer worked out before is not cached after.
        self._generation = 0

    def set_sources(self, *, sensitive: Iterable[Any] = (), safe: Iterable[Any] = (),
                    learned: Mapping[str, str] | None = None) -> None:
        """Take sink names from a policy (its ``sensitive_tools`` and ``safe_tools`` lists, added
        to the settings' own) and from a learned profile (:func:`side_effects`), replacing what
        was given before."""
        with self._lock:
            self._sensitive = self._own[0] + [p for p in sensitive if isinstance(p, str) and p]
            self._safe = self._own[1] + [p for p in safe if isinstance(p, str) and p]
            self._learned = dict(learned or {})
            self._cache = {}
            self._generation += 1

    def origin(self, tool: str | None) -> str | None:
        """Why ``tool`` is a sink: ``"configured"`` (settings or policy), ``"profile"`` (seen
        with side effects) or ``"name"``; ``None`` when it is not one."""
        if self.category(tool) is None or tool is None:
            return None
        if any(fnmatch.fnmatchcase(tool, pattern) for pattern in self._sensitive):
            return "configured"
        return "name" if self._by_name(tool) is not None else "profile"

    def category(self, tool: str | None) -> str | None:
        """``"configured"``, ``"network"``, ``"exec"``, ``"write"`` or ``"pay"``; ``None`` when the
        tool is not a sink."""
        if not tool:
            return None
        cached = self._cache.get(tool, "")
        if cached != "":
            return cached
        generation = self._generation
        result = self._classify(tool)
        with self._lock:
            if generation == self._generation:
                if len(self._cache) >= _CACHE_LIMIT:
                    self._cache.clear()
                self._cache[tool] = result
        return result

    def _classify(self, tool: str) -> str | None:
        if any(fnmatch.fnmatchcase(tool, pattern) for pattern in self._safe):
            return None
        if any(fnmatch.fnmatchcase(tool, pattern) for pattern in self._sensitive):
            return "configured"
        return self._by_name(tool) or self._learned.get(tool)

    def _by_name(self, tool: str) -> str | None:
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
