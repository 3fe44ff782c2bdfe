"""Learning: every event kind lands in the right part of the profile, per tool where attributed."""

from __future__ import annotations

import json
import threading

from agentguard.baseline import TURN_START_MARKER, Learner, Profile
from agentguard.events import (
    CloudCall,
    DnsLookup,
    EventContext,
    FileOpen,
    Message,
    ModelCall,
    ModelLoad,
    ModuleLoad,
    NetConnect,
    ProcessExec,
    Retrieval,
    ToolCall,
    Turn,
)


def ctx(tool: str | None = None, conversation: str | None = None, turn: int | None = None
        ) -> EventContext:
    return EventContext(agent="support", tool=tool, conversation_id=conversation, turn=turn)


def call(tool: str, conversation: str | None = None, turn: int | None = None,
         **arguments: object) -> ToolCall:
    return ToolCall(context=ctx(tool, conversation, turn), tool=tool, arguments=arguments)


def result(tool: str, value: object) -> ToolCall:
    return ToolCall(context=ctx(tool), tool=tool, result=value, phase="result")


def test_tool_arguments_are_summarised_per_key() -> None:
    """Each argument key gets its types, categorical values, numeric range, shapes and places."""
    learner = Learner(Profile(agent="support"))
    learner.learn(call("query", limit=5, region="EU", url="https://api.example.com/v1",
                       to="ada@corp.example", path="/srv/reports/q1.csv", token="s3cr3t-v4lue",
                       opts={"deep": True, "ids": [1, 2]}))
    learner.learn(call("query", limit="3", region="US"))
    tool = learner.profile.tools["query"]
    assert tool.calls == 2
    limit = tool.args["limit"]
    assert limit.types == {"int": 1, "str": 1}
    assert limit.numbers is not None and (limit.numbers.min, limit.numbers.max) == (3, 5)
    assert tool.args["region"].values is not None
    assert tool.args["region"].values.values == {"EU": 1, "US": 1}
    assert tool.args["url"].hosts is not None and "api.example.com" in tool.args["url"].hosts.values
    assert tool.args["to"].domains is not None and "corp.example" in tool.args["to"].domains.values
    assert tool.args["path"].paths is not None and "/srv/reports" in tool.args["path"].paths.values
    # A secret's value is never kept, only its form.
    assert tool.args["token"].values is None and tool.args["token"].shapes is not None
    assert tool.args["opts.deep"].values is not None
    assert tool.args["opts.ids[]"].numbers is not None
    assert tool.args["opts"].items is not None


def test_results_record_size_and_record_count() -> None:
    """A tool result adds its size in bytes and its number of records."""
    learner = Learner(Profile(agent="support"))
    learner.learn(result("export", json.dumps([{"id": i} for i in range(4)])))
    learner.learn(result("export", "id,name\n1,Ada\n"))
    learner.learn(ToolCall(context=ctx("export"), tool="export", error="boom", phase="result"))
    tool = learner.profile.tools["export"]
    assert (tool.results, tool.errors) == (3, 1)
    assert tool.result_records is not None
    assert (tool.result_records.min, tool.result_records.max) == (1, 4)
    assert tool.result_bytes is not None and tool.result_bytes.count == 2


def test_runtime_events_are_learned_in_the_scope_of_their_tool() -> None:
    """Cloud calls, processes, connections, lookups, files and loads go to the enclosing tool."""
    learner = Learner(Profile(agent="support"))
    learner.learn(CloudCall(context=ctx("archive"), service="s3", operation="PutObject",
                            region="eu-west-1", resource={"bucket": "reports", "key": "exports/daily/x.csv",
                                                          "upload_id": "u-1"},
                            parameters={"ContentLength": 2048}))
    learner.learn(ProcessExec(context=ctx("archive"), executable="/usr/bin/git",
                              argv=["git", "push", "--force", "origin"]))
    learner.learn(NetConnect(context=ctx("web_search"), address="93.184.216.34", port=443,
                             hostname="api.example.com"))
    learner.learn(DnsLookup(context=ctx("web_search"), hostname="api.example.com"))
    learner.learn(FileOpen(context=ctx("archive"), path="/srv/out/a.csv", write=True))
    learner.learn(ModuleLoad(context=ctx(), module="yaml.loader", distribution="PyYAML"))
    learner.learn(ModelLoad(context=ctx("classify"), path="/models/m.safetensors", sha256="ab12"))
    profile = learner.profile
    archive = profile.tools["archive"].activity
    assert archive.cloud_calls is not None and "s3.PutObject" in archive.cloud_calls.values
    assert archive.cloud_resources["s3.bucket"].values == {"reports": 1}
    assert archive.cloud_resources["s3.key"].values == {"/exports/daily": 1}
    assert "s3.upload_id" not in archive.cloud_resources
    assert archive.cloud_numbers["s3.PutObject.ContentLength"].max == 2048
    git = archive.processes["/usr/bin/git"]
    assert git.subcommands.values == {"push": 1} and "--force" in git.flags.values
    assert archive.file_writes is not None and "/srv/out" in archive.file_writes.values
    web = profile.tools["web_search"].activity
    assert web.destinations is not None and web.destinations.values == {"api.example.com:443": 1}
    assert web.networks is not None and "93.184.216.0/24" in web.networks.values
    assert web.dns is not None and "api.example.com" in web.dns.values
    assert profile.agent_activity.modules is not None
    assert "PyYAML" in profile.agent_activity.modules.values
    classify = profile.tools["classify"].activity
    assert classify.model_artifacts is not None and "sha256:ab12" in classify.model_artifacts.values
    # A tool seen only through what ran inside it has no calls of its own.
    assert profile.tools["archive"].calls == 0


def test_model_calls_learn_models_tokens_and_decisions() -> None:
    """Model calls add the model used and, from structured answers, the decision distribution."""
    learner = Learner(Profile(agent="underwriter"))
    learner.learn(ModelCall(context=ctx(), provider="aws.bedrock", model="claude", phase="request"))
    for decision in ["approve", "approve", "deny"]:
        learner.learn(ModelCall(context=ctx(), provider="aws.bedrock", model="claude",
                                output=[Message(role="assistant",
                                                content=json.dumps({"decision": decision,
                                                                    "confidence": 0.8}))],
                                output_tokens=40, phase="response"))
    activity = learner.profile.agent_activity
    assert activity.models is not None and activity.models.values == {"aws.bedrock/claude": 1}
    assert activity.decisions["decision"].values == {"approve": 2, "deny": 1}
    assert activity.scores["confidence"].count == 3
    assert activity.output_tokens is not None and activity.output_tokens.max == 40


def test_turns_give_calls_per_turn_and_transitions() -> None:
    """Within a turn the learner records which tool followed which, and how often each ran."""
    learner = Learner(Profile(agent="support"))
    learner.learn(Turn(context=ctx(conversation="c1", turn=1), text="find Ada"))
    for tool in ["lookup", "orders", "orders"]:
        learner.learn(call(tool, "c1", 1))
    learner.learn(Turn(context=ctx(conversation="c1", turn=2), text="thanks"))
    learner.learn(call("lookup", "c1", 2))
    learner.flush_turns()
    profile = learner.profile
    assert profile.turns == 2
    assert profile.calls_per_turn is not None
    assert (profile.calls_per_turn.min, profile.calls_per_turn.max) == (1, 3)
    orders = profile.tools["orders"]
    assert orders.predecessors is not None
    assert orders.predecessors.values == {"lookup": 1, "orders": 1}
    assert orders.calls_per_turn is not None and orders.calls_per_turn.max == 2
    lookup = profile.tools["lookup"]
    assert lookup.predecessors is not None
    assert lookup.predecessors.values == {TURN_START_MARKER: 2}


def test_calls_of_tools_the_agent_does_not_have_are_not_learned() -> None:
    """A call the model made of a tool the framework does not have (``unknown``) and its error
    answer are counted as not learned: the name is no tool of the profile, its arguments and
    result are nowhere, and it is neither a step of the turn nor one of its calls."""
    learner = Learner(Profile(agent="support"))
    learner.learn(Turn(context=ctx(conversation="c1", turn=1), text="clean up"))
    ghost = ToolCall(context=ctx("drop_tables", "c1", 1), tool="drop_tables",
                     arguments={"all": True}, unknown=True)
    assert learner.learn(ghost) is False
    assert learner.learn(ToolCall(context=ctx("drop_tables"), tool="drop_tables", phase="result",
                                  result="Error: drop_tables is not a valid tool",
                                  unknown=True)) is False
    learner.learn(call("lookup", "c1", 1))
    learner.flush_turns()
    profile = learner.profile
    assert sorted(profile.tools) == ["lookup"]
    assert profile.skipped == {"unknown_tool": 2}
    assert profile.kinds == {"turn": 1, "tool_call": 1}
    lookup = profile.tools["lookup"]
    assert lookup.predecessors is not None
    assert lookup.predecessors.values == {TURN_START_MARKER: 1}
    assert profile.calls_per_turn is not None and profile.calls_per_turn.max == 1


def test_retrievals_and_unknown_events() -> None:
    """Retrievers and their document counts are learned; objects that are no event are counted."""
    learner = Learner(Profile(agent="support"))
    learner.learn(Retrieval(context=ctx(), retriever="kb", phase="request"))
    learner.learn(Retrieval(context=ctx(), retriever="kb", phase="response",
                            documents=[{"content": "a"}, {"content": "b"}]))
    assert learner.learn(object()) is False
    profile = learner.profile
    assert profile.agent_activity.documents is not None
    assert profile.agent_activity.documents.max == 2
    assert profile.skipped == {"unknown_kind": 1}


def test_concurrent_learning_loses_nothing() -> None:
    """Threads learning at once into one profile count every event."""
    learner = Learner(Profile(agent="support"))

    def work(worker: int) -> None:
        for i in range(500):
            learner.learn(call("lookup", f"c{worker}", i // 3, customer_id=i))
            learner.learn(result("lookup", '{"id": 1}'))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    learner.flush_turns()
    tool = learner.profile.tools["lookup"]
    assert (tool.calls, tool.results, learner.profile.events) == (4000, 4000, 8000)
    assert tool.args["customer_id"].numbers is not None
    assert tool.args["customer_id"].numbers.count == 4000
    assert tool.calls_per_turn is not None and tool.calls_per_turn.count == sum(
        len(range(0, 500, 3)) for _ in range(8))
