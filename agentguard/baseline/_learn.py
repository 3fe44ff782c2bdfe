"""Learning: each event updates the part of the profile it belongs to.

Events inside a tool call (``event.context.tool``) are learned in that tool's scope, the rest in
the agent's. One lock guards the profile; an update is a handful of dictionary operations, so
learning a small tool call costs a few microseconds.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from agentguard.baseline import _features as features
from agentguard.baseline._summaries import Histogram, ValueSet, map_slot
from agentguard.baseline._turns import TurnState, TurnTracker
from agentguard.baseline.profile import (
    TURN_START,
    Activity,
    ArgSummary,
    ProcessProfile,
    Profile,
    ToolProfile,
)

__all__ = ["Learner", "executable_key", "model_key", "resource_values"]

_TYPE_NAMES: dict[type, str] = {str: "str", int: "int", float: "float", bool: "bool",
                                type(None): "null", list: "list", dict: "dict", tuple: "list"}
# Resource kinds whose values are per-request identifiers, not places: never learned.
_VOLATILE_RESOURCES = frozenset({"upload_id", "query", "execution", "session", "request"})
# Resource kinds whose values are object paths: learned as their directory area.
_PATH_RESOURCES = frozenset({"key", "prefix", "parameter_path"})
_MAX_FLAGS = 16
_HOME = os.path.expanduser("~").rstrip("/")


def executable_key(path: str) -> str:
    """An executable as the profile names it (the home directory as ``~``)."""
    if _HOME and path.startswith(_HOME + "/"):
        return "~" + path[len(_HOME):]
    return path


def model_key(provider: str | None, model: str | None) -> str:
    return f"{provider or 'unknown'}/{model or 'unknown'}"


def resource_values(service: str, kind: str, value: str) -> list[str]:
    """The values a cloud resource contributes to the set ``service.kind`` (none for volatile
    identifiers; directory areas for object keys; each table of a comma-separated list)."""
    if kind in _VOLATILE_RESOURCES:
        return []
    if kind in _PATH_RESOURCES:
        return [features.path_prefix("/" + value.lstrip("/"), 2)]
    if kind == "copy_source":
        return [value.lstrip("/").split("/", 1)[0]]
    if kind == "tables":
        return [v for v in value.split(",")[:16] if v]
    return [value]


def _grow(value: ValueSet | None) -> ValueSet:
    return value if value is not None else ValueSet()


class Learner:
    """Applies events to a profile (thread-safe)."""

    def __init__(self, profile: Profile, *, turns: TurnTracker | None = None) -> None:
        self.profile = profile
        self.limits = profile.limits
        self.turns = turns if turns is not None else TurnTracker()
        self.lock = threading.RLock()
        self._handlers: dict[str, Callable[[Any, Activity, ToolProfile | None], None]] = {
            "tool_call": self._tool_call,
            "cloud_call": self._cloud_call,
            "process_exec": self._process_exec,
            "net_connect": self._net_connect,
            "dns_lookup": self._dns_lookup,
            "file_open": self._file_open,
            "module_load": self._module_load,
            "model_load": self._model_load,
            "model_call": self._model_call,
            "retrieval": self._retrieval,
            "turn": self._turn,
        }

    # -- entry -----------------------------------------------------------------------------
    def learn(self, event: Any) -> bool:
        """Learn one event; returns ``False`` when it was skipped (counted in ``skipped``)."""
        kind = getattr(event, "kind", None)
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        profile = self.profile
        with self.lock:
            if handler is None or not isinstance(kind, str):
                self._skip("unknown_kind")
                return False
            if kind == "tool_call":
                if not event.tool:
                    # A call of no tool in particular (an empty name from a trace or a model)
                    # has no place in the profile.
                    self._skip("unnamed_tool")
                    return False
                if getattr(event, "unknown", False) is True:
                    # The model asked for a tool the framework does not have: nothing ran, and
                    # learning it would make its next call look like one of the agent's tools.
                    self._skip("unknown_tool")
                    return False
            context = event.context
            profile.events += 1
            kinds = profile.kinds
            kinds[kind] = kinds.get(kind, 0) + 1
            stamp = event.timestamp
            if profile.first_seen is None or stamp < profile.first_seen:
                profile.first_seen = stamp
            if profile.last_seen is None or stamp > profile.last_seen:
                profile.last_seen = stamp
            # A turn belongs to the agent, whatever the context says about tools.
            tool_name = event.tool if kind == "tool_call" else \
                None if kind == "turn" else context.tool
            tool: ToolProfile | None = None
            if tool_name:
                tool = self._tool(tool_name)
                if tool is None:
                    # Over the tool limit: counted in tools_dropped, nothing else kept.
                    return False
                scope = tool.activity
            else:
                scope = profile.agent_activity
            events = scope.events
            events[kind] = events.get(kind, 0) + 1
            handler(event, scope, tool)
            return True

    def skip(self, reason: str) -> None:
        with self.lock:
            self._skip(reason)

    def _skip(self, reason: str) -> None:
        skipped = self.profile.skipped
        skipped[reason] = skipped.get(reason, 0) + 1

    def _tool(self, name: str) -> ToolProfile | None:
        profile = self.profile
        tool, dropped = map_slot(profile.tools, name, self.limits.max_tools, ToolProfile,
                                 ToolProfile.weight)
        profile.tools_dropped += dropped
        return tool

    def end_turns(self, ended: list[TurnState]) -> None:
        """Learn the calls per turn of turns that ended."""
        if not ended:
            return
        profile = self.profile
        buckets = self.limits.max_buckets
        with self.lock:
            for state in ended:
                if state.total == 0:
                    continue
                if profile.calls_per_turn is None:
                    profile.calls_per_turn = Histogram()
                profile.calls_per_turn.add(state.total, buckets)
                for name, count in state.counts.items():
                    tool = profile.tools.get(name)
                    if tool is None:
                        continue
                    if tool.calls_per_turn is None:
                        tool.calls_per_turn = Histogram()
                    tool.calls_per_turn.add(count, buckets)

    def flush_turns(self) -> None:
        """End the turns in progress (before the profile is saved)."""
        self.end_turns(self.turns.drain())

    # -- tool calls ------------------------------------------------------------------------
    def _tool_call(self, event: Any, scope: Activity, tool: ToolProfile | None) -> None:
        assert tool is not None
        if event.phase == "result":
            tool.results += 1
            if event.error:
                tool.errors += 1
                return
            size, records = features.measure(event.result)
            buckets = self.limits.max_buckets
            if size is not None:
                if tool.result_bytes is None:
                    tool.result_bytes = Histogram()
                tool.result_bytes.add(size, buckets)
            if records is not None:
                if tool.result_records is None:
                    tool.result_records = Histogram()
                tool.result_records.add(records, buckets)
            return
        tool.calls += 1
        limits = self.limits
        args = tool.args
        for key, value in features.flatten_arguments(event.arguments):
            summary = args.get(key)
            if summary is None:
                summary, dropped = map_slot(args, key, limits.max_args, ArgSummary,
                                            _present)
                tool.args_dropped += dropped
                if summary is None:
                    continue
            self._argument(summary, key, value)
        conversation = event.context.conversation_id
        if conversation:
            previous, _, _, ended = self.turns.call(conversation, event.context.turn, event.tool)
            if tool.predecessors is None:
                tool.predecessors = ValueSet()
            tool.predecessors.add(previous or TURN_START, limits.max_set)
            if ended:
                self.end_turns(ended)

    def _argument(self, summary: ArgSummary, key: str, value: Any) -> None:
        limits = self.limits
        summary.present += 1
        kind = type(value)
        name = _TYPE_NAMES.get(kind) or ("dict" if isinstance(value, dict) else
                                        "list" if isinstance(value, (list, tuple)) else "object")
        types = summary.types
        types[name] = types.get(name, 0) + 1
        if kind is str:
            self._string(summary, key, value)
        elif kind is bool:
            if summary.values is None:
                summary.values = ValueSet()
            summary.values.add("true" if value else "false", limits.max_values)
        elif kind is int or kind is float:
            if summary.numbers is None:
                summary.numbers = Histogram()
            summary.numbers.add(value, limits.max_buckets)
        elif name in ("list", "dict"):
            if summary.items is None:
                summary.items = Histogram()
            summary.items.add(len(value), limits.max_buckets)

    def _string(self, summary: ArgSummary, key: str, value: str) -> None:
        limits = self.limits
        if summary.lengths is None:
            summary.lengths = Histogram()
        summary.lengths.add(len(value), limits.max_buckets)
        if summary.shapes is None:
            summary.shapes = ValueSet()
        summary.shapes.add(features.shape(value), limits.max_values)
        # A number sent as a string is still a number ("limit": "50000").
        number = features.numeric_text(value)
        if number is not None:
            if summary.numbers is None:
                summary.numbers = Histogram()
            summary.numbers.add(number, limits.max_buckets)
        if features.secret_key(key):
            return
        if len(value) <= limits.max_value_length:
            if summary.values is None:
                summary.values = ValueSet()
            summary.values.add(features.clean_value(value), limits.max_values)
        for host in features.url_hosts(value):
            if summary.hosts is None:
                summary.hosts = ValueSet()
            summary.hosts.add(host, limits.max_set)
        for domain in features.email_domains(value):
            if summary.domains is None:
                summary.domains = ValueSet()
            summary.domains.add(domain, limits.max_set)
        if features.looks_like_path(value):
            if summary.paths is None:
                summary.paths = ValueSet()
            summary.paths.add(features.path_prefix(value), limits.max_set)

    # -- what happens inside a scope -------------------------------------------------------
    def _cloud_call(self, event: Any, scope: Activity, tool: ToolProfile | None) -> None:
        limits = self.limits
        service = str(event.service)
        operation = f"{service}.{event.operation}"
        scope.cloud_calls = _grow(scope.cloud_calls)
        scope.cloud_calls.add(operation, limits.max_set)
        if event.region:
            scope.regions = _grow(scope.regions)
            scope.regions.add(str(event.region), limits.max_set)
        for kind, raw in list(event.resource.items())[:16]:
            values = resource_values(service, str(kind), str(raw))
            if not values:
                continue
            name = f"{service}.{kind}"
            resources, dropped = map_slot(scope.cloud_resources, name, limits.max_keys, ValueSet,
                                          _total)
            # A kind that does not fit drops each of its values (as its set would count them).
            scope.cloud_resources_dropped += dropped if resources is not None else len(values)
            if resources is not None:
                for value in values:
                    resources.add(features.clean_value(value[:limits.max_value_length * 4]),
                                  limits.max_set)
        for key, number in list(event.parameters.items())[:32]:
            if type(number) is int or type(number) is float:
                name = f"{operation}.{key}"
                histogram, dropped = map_slot(scope.cloud_numbers, name, limits.max_keys,
                                              Histogram, _count)
                scope.cloud_numbers_dropped += dropped
                if histogram is not None:
                    histogram.add(number, limits.max_buckets)

    def _process_exec(self, event: Any, scope: Activity, tool: ToolProfile | None) -> None:
        limits = self.limits
        path = executable_key(str(event.executable))
        process, dropped = map_slot(scope.processes, path, limits.max_keys, ProcessProfile,
                                    _process_count)
        scope.processes_dropped += dropped
        if process is None:
            return
        argv = list(event.argv or [])
        process.count += 1
        process.argc.add(len(argv), limits.max_buckets)
        subcommand = subcommand_of(argv)
        if subcommand is not None:
            process.subcommands.add(subcommand, limits.max_values)
        for flag in flags_of(argv):
            process.flags.add(flag, limits.max_values)

    def _net_connect(self, event: Any, scope: Activity, tool: ToolProfile | None) -> None:
        limits = self.limits
        destination, network, suffix = destination_of(event)
        scope.destinations = _grow(scope.destinations)
        scope.destinations.add(destination, limits.max_set)
        scope.networks = _grow(scope.networks)
        scope.networks.add(network, limits.max_set)
        if suffix is not None:
            scope.dns_suffixes = _grow(scope.dns_suffixes)
            scope.dns_suffixes.add(suffix, limits.max_set)

    def _dns_lookup(self, event: Any, scope: Activity, tool: ToolProfile | None) -> None:
        limits = self.limits
        name = str(event.hostname).rstrip(".").lower()[:255]
        scope.dns = _grow(scope.dns)
        scope.dns.add(name, limits.max_set)
        suffix = features.domain_suffix(name)
        if suffix is not None:
            scope.dns_suffixes = _grow(scope.dns_suffixes)
            scope.dns_suffixes.add(suffix, limits.max_set)

    def _file_open(self, event: Any, scope: Activity, tool: ToolProfile | None) -> None:
        area = features.path_prefix(str(event.path))
        if event.write:
            scope.file_writes = _grow(scope.file_writes)
            scope.file_writes.add(area, self.limits.max_set)
        else:
            scope.file_reads = _grow(scope.file_reads)
            scope.file_reads.add(area, self.limits.max_set)

    def _module_load(self, event: Any, scope: Activity, tool: ToolProfile | None) -> None:
        scope.modules = _grow(scope.modules)
        scope.modules.add(module_key(event), self.limits.max_modules)

    def _model_load(self, event: Any, scope: Activity, tool: ToolProfile | None) -> None:
        scope.model_artifacts = _grow(scope.model_artifacts)
        scope.model_artifacts.add(artifact_key(event), self.limits.max_set)

    def _model_call(self, event: Any, scope: Activity, tool: ToolProfile | None) -> None:
        limits = self.limits
        if event.phase == "request":
            scope.models = _grow(scope.models)
            scope.models.add(model_key(event.provider, event.model), limits.max_set)
            return
        if event.output_tokens is not None:
            if scope.output_tokens is None:
                scope.output_tokens = Histogram()
            scope.output_tokens.add(event.output_tokens, limits.max_buckets)
        labels, scores = features.decisions(event.output)
        for name, value in labels:
            values, dropped = map_slot(scope.decisions, name, limits.max_keys, ValueSet, _total)
            scope.decisions_dropped += dropped
            if values is not None:
                values.add(value, limits.max_values)
        for name, number in scores:
            histogram, dropped = map_slot(scope.scores, name, limits.max_keys, Histogram, _count)
            scope.decisions_dropped += dropped
            if histogram is not None:
                histogram.add(number, limits.max_buckets)

    def _retrieval(self, event: Any, scope: Activity, tool: ToolProfile | None) -> None:
        limits = self.limits
        if event.phase == "request":
            scope.retrievers = _grow(scope.retrievers)
            scope.retrievers.add(str(event.retriever or "retriever"), limits.max_set)
            return
        if scope.documents is None:
            scope.documents = Histogram()
        scope.documents.add(len(event.documents), limits.max_buckets)

    def _turn(self, event: Any, scope: Activity, tool: ToolProfile | None) -> None:
        profile = self.profile
        profile.turns += 1
        if profile.turn_lengths is None:
            profile.turn_lengths = Histogram()
        profile.turn_lengths.add(len(event.text or ""), self.limits.max_buckets)
        conversation = event.context.conversation_id
        if conversation:
            ended = self.turns.end(conversation)
            if ended is not None:
                self.end_turns([ended])


def _present(summary: ArgSummary) -> int:
    return summary.present


def _total(values: ValueSet) -> int:
    return values.total


def _count(histogram: Histogram) -> int:
    return histogram.count + histogram.nonfinite


def _process_count(process: ProcessProfile) -> int:
    return process.count


def subcommand_of(argv: list[str]) -> str | None:
    """The subcommand of a command line (``git status`` → ``status``), if it has one."""
    if len(argv) < 2:
        return None
    first = str(argv[1])
    if not first or first.startswith("-") or "/" in first or len(first) > 32:
        return None
    return features.shape(first) if any(c.isdigit() for c in first) else first


def flags_of(argv: list[str]) -> list[str]:
    """The option names of a command line (``--output=x`` → ``--output``)."""
    flags: list[str] = []
    for arg in argv[1:64]:
        text = str(arg)
        if text.startswith("-") and 1 < len(text) <= 40 and text != "--":
            flag = text.partition("=")[0]
            if flag not in flags:
                flags.append(flag)
                if len(flags) >= _MAX_FLAGS:
                    break
    return flags


def destination_key(event: Any) -> str:
    """A connection's destination: ``host:port`` (the name when known, else the address)."""
    address = str(event.address)
    if event.family == "unix" or event.protocol == "unix":
        return f"unix:{address[:200]}"
    hostname = event.hostname
    host = str(hostname).rstrip(".").lower() if hostname else address.lower()
    return (f"{host}:{event.port}" if event.port is not None else host)[:300]


def destination_of(event: Any) -> tuple[str, str, str | None]:
    """``(destination, network block, name suffix)`` of a connection."""
    address = str(event.address)
    destination = destination_key(event)
    if destination.startswith("unix:"):
        return destination, "unix", None
    hostname = str(event.hostname).rstrip(".").lower() if event.hostname else None
    network = features.cidr(address) or (features.domain_suffix(address) or address)[:255]
    suffix = features.domain_suffix(hostname) if hostname else None
    return destination, network, suffix


def module_key(event: Any) -> str:
    if event.distribution:
        return str(event.distribution)
    return str(event.module).split(".", 1)[0]


def artifact_key(event: Any) -> str:
    if event.sha256:
        return f"sha256:{event.sha256}"
    if event.model_id:
        return str(event.model_id)
    return executable_key(str(event.path or "unknown"))
