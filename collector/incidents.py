"""Incidents as attack stories: related findings of one conversation, with everything around them.

An incident is assembled from the store when it is read, so kernel events and spans that arrive
after the first finding still appear in it: the turn and the untrusted content that started it,
the tool calls, the processes (as a tree) and connections they led to, the data sent, and the
findings with their evidence, on one timeline, with a short narrative.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from pydantic import BaseModel, Field

from agentguard import semconv
from agentguard.collector.model import CONNECT, DNS, EXEC, EXIT, FORK, OPEN, SENT
from agentguard.collector.store import Store, StoredFinding
from agentguard.findings import SEVERITY_ORDER

__all__ = ["Incident", "ProcessNode", "TimelineEntry", "build_incident", "list_incidents"]

_EXCERPT = 600
# The model calls a story shows on its timeline (embeddings: e.g. a Bedrock embedding model
# given the text a tool fetched).
_MODEL_CALLS = (semconv.OP_CHAT, semconv.OP_EMBEDDINGS, semconv.OP_GENERATE_CONTENT)


class TimelineEntry(BaseModel):
    """One moment of the story."""

    ts_ns: int
    kind: str
    title: str
    severity: str | None = None
    tool: str | None = None
    span_id: str | None = None
    pid: int | None = None
    kernel_only: bool | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class ProcessNode(BaseModel):
    """A process the story's tool calls started, with what it did."""

    pid: int
    ppid: int | None = None
    exe: str | None = None
    argv: list[str] = Field(default_factory=list)
    start_ns: int | None = None
    exit_code: int | None = None
    tool: str | None = None
    span_id: str | None = None
    attribution: str | None = None
    kernel_only: bool | None = None
    connections: list[str] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)
    dns: list[str] = Field(default_factory=list)
    bytes_sent: int = 0
    # The agent's own process (the root of the tree), not something it started.
    is_agent: bool = False
    children: list[ProcessNode] = Field(default_factory=list)


class Incident(BaseModel):
    """The whole attack story, as JSON, terminal output or an HTML page."""

    id: str
    title: str
    severity: str
    agent: str | None = None
    conversation_id: str | None = None
    trace_ids: list[str] = Field(default_factory=list)
    first_ns: int
    last_ns: int
    narrative: str = ""
    trigger: dict[str, Any] = Field(default_factory=dict)
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    processes: list[ProcessNode] = Field(default_factory=list)
    connections: list[dict[str, Any]] = Field(default_factory=list)
    dns: list[dict[str, Any]] = Field(default_factory=list)
    files: list[dict[str, Any]] = Field(default_factory=list)
    data_volume: dict[str, Any] = Field(default_factory=dict)
    findings: list[StoredFinding] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)


def _excerpt(value: Any, limit: int = _EXCERPT) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"


def list_incidents(store: Store, limit: int = 100) -> list[dict[str, Any]]:
    """The incident index: id, severity, title, agent, conversation, time range, finding count."""
    return store.incidents(limit)


def build_incident(store: Store, incident_id: str) -> Incident | None:
    """The full story of one incident, or ``None`` when there is no such incident."""
    row = store.incident(incident_id)
    if row is None:
        return None
    findings = store.findings(incident_id=row["id"])
    conversation = row.get("conversation_id")
    trace_ids = sorted({f.trace_id for f in findings if f.trace_id} |
                       ({row["trace_id"]} if row.get("trace_id") else set()))
    spans = store.spans(trace_ids=trace_ids, conversation_id=conversation)
    trace_ids = sorted(set(trace_ids) | {s["trace_id"] for s in spans})
    events = store.events_for_traces(trace_ids)
    # A span is its agent's, trace's and span id's: another sender's span with the same ids
    # (stored beside it) never stands in for it.
    spans_by_id = {(s["pid"], s["trace_id"], s["span_id"]): s for s in spans}

    timeline: list[TimelineEntry] = []
    tool_calls: list[dict[str, Any]] = []
    turns: dict[int, dict[str, Any]] = {}
    untrusted: list[dict[str, Any]] = []
    for span in spans:
        attrs = span["attributes"]
        operation = span.get("operation")
        if operation == semconv.OP_INVOKE_AGENT and attrs.get(semconv.AG_TURN_TEXT) is not None:
            turn = span.get("turn")
            text = str(attrs.get(semconv.AG_TURN_TEXT))
            if turn is not None:
                turns.setdefault(turn, {"turn": turn, "text": text, "ts_ns": span["start_ns"]})
            timeline.append(TimelineEntry(ts_ns=span["start_ns"], kind="turn",
                                          title=f"turn {turn}: {_excerpt(text, 200)}",
                                          span_id=span["span_id"], detail={"text": _excerpt(text)}))
        elif operation == semconv.OP_RETRIEVAL:
            documents = attrs.get(semconv.AG_RETRIEVAL_DOCUMENTS)
            count = attrs.get(semconv.AG_RETRIEVAL_DOCUMENT_COUNT)
            timeline.append(TimelineEntry(
                ts_ns=span["start_ns"], kind="retrieval",
                title=f"retrieved {count if count is not None else '?'} document(s) "
                      f"({attrs.get(semconv.AG_RETRIEVER_NAME) or span['name']})",
                span_id=span["span_id"],
                detail={"query": _excerpt(attrs.get(semconv.AG_RETRIEVAL_QUERY) or "", 300),
                        "documents": _excerpt(documents) if documents else None}))
            if documents:
                untrusted.append({"source": f"retrieval {span['name']}", "turn": span.get("turn"),
                                  "ts_ns": span["start_ns"], "excerpt": _excerpt(documents)})
        elif operation in _MODEL_CALLS:
            model = attrs.get(semconv.GEN_AI_REQUEST_MODEL)
            timeline.append(TimelineEntry(
                ts_ns=span["start_ns"], kind="model", title=span["name"], span_id=span["span_id"],
                detail={"operation": operation,
                        "model": str(model) if model is not None else None}))
        elif operation == semconv.OP_EXECUTE_TOOL:
            call = {
                "tool": span.get("tool") or span["name"], "call_id": span.get("tool_call_id"),
                "span_id": span["span_id"], "trace_id": span["trace_id"],
                "start_ns": span["start_ns"], "end_ns": span["end_ns"], "turn": span.get("turn"),
                "arguments": _excerpt(attrs.get(semconv.GEN_AI_TOOL_CALL_ARGUMENTS) or "", 400),
                "result": _excerpt(attrs.get(semconv.GEN_AI_TOOL_CALL_RESULT) or "", 400),
                "decision": attrs.get(semconv.AG_DECISION), "status": span.get("status"),
                "pid": span.get("pid"), "thread": span.get("tid"),
            }
            tool_calls.append(call)
            timeline.append(TimelineEntry(
                ts_ns=span["start_ns"], kind="tool", title=f"tool {call['tool']}({call['arguments']})",
                tool=call["tool"], span_id=span["span_id"],
                detail={"result": call["result"], "decision": call["decision"],
                        "duration_ms": round((span["end_ns"] - span["start_ns"]) / 1e6, 2)}))

    processes, connections, dns, files, volume = _kernel_story(events, spans_by_id, timeline)

    for finding in findings:
        timeline.append(TimelineEntry(
            ts_ns=int(finding.timestamp * 1e9), kind="finding",
            title=f"[{finding.rule_id}] {finding.title}", severity=finding.severity,
            tool=finding.tool, span_id=finding.span_id,
            detail={"source": finding.source, "action": finding.action,
                    "evidence": finding.evidence}))
        if finding.category in ("injection", "taint"):
            untrusted.append({"source": f"finding {finding.rule_id}", "turn": finding.turn,
                              "ts_ns": int(finding.timestamp * 1e9),
                              "excerpt": _excerpt(finding.evidence)})
    timeline.sort(key=lambda entry: entry.ts_ns)

    first_turn = min((f.turn for f in findings if f.turn is not None), default=None)
    trigger: dict[str, Any] = {"turn": first_turn}
    if first_turn is not None and first_turn in turns:
        trigger["text"] = turns[first_turn]["text"]
    elif turns:
        earliest = min(turns.values(), key=lambda t: t["ts_ns"])
        trigger.update(turn=earliest["turn"], text=earliest["text"])
    first_finding_ns = min((int(f.timestamp * 1e9) for f in findings), default=row["first_ns"])
    trigger["untrusted_content"] = [
        item for item in sorted(untrusted, key=lambda i: i["ts_ns"])
        if item["ts_ns"] <= first_finding_ns or item["source"].startswith("finding")
    ][:10]

    incident = Incident(
        id=row["id"], title=row["title"], severity=row["severity"], agent=row.get("agent"),
        conversation_id=conversation, trace_ids=trace_ids,
        first_ns=min([row["first_ns"], *(e.ts_ns for e in timeline)]),
        last_ns=max([row["last_ns"], *(e.ts_ns for e in timeline)]),
        trigger=trigger, tool_calls=tool_calls, processes=processes, connections=connections,
        dns=dns, files=files, data_volume=volume, findings=findings, timeline=timeline,
    )
    incident.narrative = narrate(incident)
    return incident


def _kernel_story(
    events: list[dict[str, Any]], spans: dict[tuple[Any, ...], dict[str, Any]],
    timeline: list[TimelineEntry],
) -> tuple[list[ProcessNode], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]],
           dict[str, Any]]:
    nodes: dict[int, ProcessNode] = {}
    connections: list[dict[str, Any]] = []
    dns: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    sent: dict[int, int] = defaultdict(int)
    agents: dict[int, str] = {}
    for event in events:
        d = event["data"]
        pid = event["pid"]
        if event.get("agent_pid") is not None:
            agents.setdefault(int(event["agent_pid"]), str(event.get("service") or "agent"))
        span = spans.get((event["agent_pid"], event.get("trace_id"), event.get("span_id"))) \
            if event.get("agent_pid") is not None else None
        tool = span.get("tool") if span else event.get("tool")
        kernel_only = event.get("seen_by_library") is False
        kind = event["kind"]
        if kind == EXEC:
            node = nodes.setdefault(pid, ProcessNode(pid=pid))
            node.ppid = d.get("ppid", node.ppid)
            node.exe = d.get("exe")
            node.argv = list(d.get("argv") or [])[:64]
            node.start_ns = node.start_ns or event["ts_ns"]
            node.tool, node.span_id = tool, event.get("span_id")
            node.attribution, node.kernel_only = event["attribution"], kernel_only
            timeline.append(TimelineEntry(
                ts_ns=event["ts_ns"], kind="process",
                title=f"pid {pid} exec {_excerpt(' '.join(node.argv) or node.exe or '?', 200)}",
                tool=tool, span_id=event.get("span_id"), pid=pid, kernel_only=kernel_only,
                detail={"ppid": node.ppid, "attribution": event["attribution"],
                        "sensor": event["source"]}))
        elif kind == FORK:
            child = int(d.get("child_pid", 0))
            node = nodes.setdefault(child, ProcessNode(pid=child))
            node.ppid, node.start_ns = pid, event["ts_ns"]
            node.tool, node.span_id = tool, event.get("span_id")
            node.attribution = event["attribution"]
        elif kind == EXIT:
            exited = nodes.get(pid)
            if exited is not None:
                exited.exit_code = d.get("exit_code")
        elif kind == CONNECT:
            target = f"{d.get('address')}:{d.get('port')}"
            result = d.get("result_name") or d.get("result")
            connections.append({"ts_ns": event["ts_ns"], "pid": pid, "address": d.get("address"),
                                "port": d.get("port"), "result": result, "tool": tool,
                                "kernel_only": kernel_only, "span_id": event.get("span_id")})
            nodes.setdefault(pid, ProcessNode(pid=pid)).connections.append(target)
            timeline.append(TimelineEntry(
                ts_ns=event["ts_ns"], kind="connect",
                title=f"pid {pid} connect {target}" + (f" ({result})" if result not in (0, None)
                                                       else ""),
                tool=tool, span_id=event.get("span_id"), pid=pid, kernel_only=kernel_only))
        elif kind == DNS:
            dns.append({"ts_ns": event["ts_ns"], "pid": pid, "query": d.get("query"), "tool": tool})
            nodes.setdefault(pid, ProcessNode(pid=pid)).dns.append(str(d.get("query")))
            timeline.append(TimelineEntry(ts_ns=event["ts_ns"], kind="dns",
                                          title=f"pid {pid} dns {d.get('query')}", tool=tool,
                                          span_id=event.get("span_id"), pid=pid,
                                          kernel_only=kernel_only))
        elif kind == OPEN:
            files.append({"ts_ns": event["ts_ns"], "pid": pid, "path": d.get("path"),
                          "write": d.get("write"), "tool": tool, "kernel_only": kernel_only})
            nodes.setdefault(pid, ProcessNode(pid=pid)).files.append(str(d.get("path")))
            timeline.append(TimelineEntry(ts_ns=event["ts_ns"], kind="file",
                                          title=f"pid {pid} open {d.get('path')}", tool=tool,
                                          span_id=event.get("span_id"), pid=pid,
                                          kernel_only=kernel_only))
        elif kind == SENT:
            sent[pid] += int(d.get("bytes") or 0)
    for pid, count in sent.items():
        nodes.setdefault(pid, ProcessNode(pid=pid)).bytes_sent = count
    for pid, service in agents.items():
        agent = nodes.get(pid)
        if agent is not None:
            agent.is_agent = True
            if not agent.exe and not agent.argv:
                agent.exe = f"agent process ({service})"
    roots: list[ProcessNode] = []
    for node in sorted(nodes.values(), key=lambda n: n.start_ns or 0):
        parent = nodes.get(node.ppid) if node.ppid is not None else None
        if parent is not None and parent is not node:
            parent.children.append(node)
        else:
            roots.append(node)
    volume = {"bytes_sent": sum(sent.values()), "by_process": {str(k): v for k, v in sent.items()}}
    return roots, connections, dns, files, volume


def _walk(nodes: list[ProcessNode]) -> list[ProcessNode]:
    out: list[ProcessNode] = []
    stack = list(nodes)
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node.children)
    return out


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count / 1024 / 1024:.1f} MiB"


def narrate(incident: Incident) -> str:
    """A few plain sentences: who asked what, what the agent did, what the kernel saw, findings."""
    parts: list[str] = []
    who = incident.agent or "the agent"
    trigger = incident.trigger
    where = f"conversation {incident.conversation_id}" if incident.conversation_id else "a trace"
    if trigger.get("text"):
        parts.append(f"In {where}, turn {trigger.get('turn')} of {who} began with: "
                     f"\u201c{_excerpt(trigger['text'], 160)}\u201d.")
    else:
        parts.append(f"In {where} of {who}:")
    for item in trigger.get("untrusted_content", [])[:2]:
        parts.append(f"Untrusted content entered through {item['source']}: "
                     f"\u201c{_excerpt(item['excerpt'], 160)}\u201d.")
    if incident.tool_calls:
        names = sorted({str(call["tool"]) for call in incident.tool_calls})
        parts.append(f"The agent called {len(incident.tool_calls)} tool(s): {', '.join(names)}.")
    processes = [node for node in _walk(incident.processes)
                 if (node.exe or node.argv) and not node.is_agent]
    if processes:
        hidden = [node for node in processes if node.kernel_only]
        programs = sorted({(node.exe or node.argv[0]).rsplit("/", 1)[-1] for node in processes})
        sentence = f"The kernel saw {len(processes)} process(es) start ({', '.join(programs[:8])})"
        if hidden:
            sentence += f", {len(hidden)} of them invisible to the in-process sensor"
        parts.append(sentence + ".")
    if incident.connections:
        targets = sorted({f"{c['address']}:{c['port']}" for c in incident.connections})
        parts.append(f"They connected to {', '.join(targets[:6])}"
                     + (f" and sent {_size(incident.data_volume.get('bytes_sent', 0))}"
                        if incident.data_volume.get("bytes_sent") else "") + ".")
    if incident.files:
        paths = sorted({str(f["path"]) for f in incident.files})
        parts.append(f"Sensitive files were opened: {', '.join(paths[:5])}.")
    if incident.findings:
        worst = max(incident.findings, key=lambda f: SEVERITY_ORDER.get(f.severity, 0))
        blocked = sum(1 for f in incident.findings if f.action == "block")
        parts.append(f"agentguard raised {len(incident.findings)} finding(s)"
                     + (f", {blocked} blocked" if blocked else "")
                     + f"; the most severe ({worst.severity}): {worst.title}.")
    return " ".join(parts)
