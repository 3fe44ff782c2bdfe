"""Merging profiles is commutative and associative, and equals learning everything in one place."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentguard.baseline import Learner, Limits, Profile, ProfileError, merge_profiles
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

# Small limits, so the properties also cover what happens when sets and maps overflow.
LIMITS = Limits(max_tools=3, max_args=3, max_values=3, max_set=4, max_modules=3, max_keys=2,
                max_buckets=4, max_value_length=12)
TOOLS = st.sampled_from(["alpha", "beta", "gamma", "delta", None])
WORDS = st.sampled_from(["a", "b", "gold", "EU", "x-1", "https://h1.example/p",
                         "https://h2.example", "bob@corp.io", "/srv/data/f.csv", "a longer free text"])
NUMBERS = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, 1, 2, 3, 50_000]))
SCALARS = st.one_of(WORDS, NUMBERS, st.booleans(), st.none())
ARGUMENTS = st.one_of(
    st.dictionaries(st.sampled_from(["id", "q", "limit", "opts", "to"]),
                    st.one_of(SCALARS, st.lists(SCALARS, max_size=3),
                              st.dictionaries(st.sampled_from(["k", "m"]), SCALARS, max_size=2)),
                    max_size=4),
    WORDS, st.none())
RESULTS = st.one_of(st.none(), WORDS, st.lists(st.integers(), max_size=5),
                    st.sampled_from(['[{"a": 1}, {"a": 2}]', "id,x\n1,2\n3,4\n", {"rows": [1, 2]}]))
STAMPS = st.floats(1.7e9, 1.8e9)


def _context(tool: str | None) -> EventContext:
    return EventContext(agent="agent", tool=tool)


@st.composite
def events(draw: Any) -> Any:
    kind = draw(st.sampled_from(["tool_call", "tool_result", "cloud", "process", "net", "dns",
                                 "file", "module", "model_load", "model", "model_out",
                                 "retrieval", "turn", "unknown"]))
    tool = draw(TOOLS)
    stamp = draw(STAMPS)
    ctx = _context(tool)
    if kind in ("tool_call", "tool_result"):
        name = tool or "alpha"
        return ToolCall(context=_context(name), timestamp=stamp, tool=name,
                        arguments=draw(ARGUMENTS), result=draw(RESULTS),
                        error=draw(st.sampled_from([None, None, "boom"])),
                        phase="call" if kind == "tool_call" else "result")
    if kind == "cloud":
        return CloudCall(context=ctx, timestamp=stamp, service=draw(st.sampled_from(["s3", "sqs"])),
                         operation=draw(st.sampled_from(["GetObject", "PutObject", "Send"])),
                         region=draw(st.sampled_from([None, "us-east-1", "eu-west-1"])),
                         resource=draw(st.dictionaries(
                             st.sampled_from(["bucket", "key", "tables", "upload_id"]),
                             st.sampled_from(["b1", "b2", "a/b/c", "t1,t2", "u"]), max_size=3)),
                         parameters=draw(st.dictionaries(st.sampled_from(["MaxKeys", "Limit"]),
                                                         NUMBERS, max_size=2)))
    if kind == "process":
        return ProcessExec(context=ctx, timestamp=stamp,
                           executable=draw(st.sampled_from(["/usr/bin/git", "/bin/sh", "/usr/bin/curl"])),
                           argv=draw(st.lists(st.sampled_from(["git", "status", "-v", "--x=1", "9"]),
                                              max_size=4)))
    if kind == "net":
        return NetConnect(context=ctx, timestamp=stamp,
                          address=draw(st.sampled_from(["10.0.0.1", "10.0.0.9", "::1", "/run/x"])),
                          port=draw(st.sampled_from([None, 443, 80])),
                          hostname=draw(st.sampled_from([None, "api.example.com", "evil.io"])),
                          family=draw(st.sampled_from([None, "unix"])))
    if kind == "dns":
        return DnsLookup(context=ctx, timestamp=stamp,
                         hostname=draw(st.sampled_from(["a.example.com", "b.example.com", "x.io"])))
    if kind == "file":
        return FileOpen(context=ctx, timestamp=stamp,
                        path=draw(st.sampled_from(["/etc/passwd", "/home/u/.ssh/id", "/tmp/x1/y"])),
                        write=draw(st.booleans()))
    if kind == "module":
        return ModuleLoad(context=ctx, timestamp=stamp,
                          module=draw(st.sampled_from(["json", "yaml.x", "requests", "numpy"])),
                          distribution=draw(st.sampled_from([None, "PyYAML", "requests"])))
    if kind == "model_load":
        return ModelLoad(context=ctx, timestamp=stamp, path="/models/m.bin",
                         sha256=draw(st.sampled_from([None, "ab", "cd"])))
    if kind == "model":
        return ModelCall(context=ctx, timestamp=stamp, provider="openai",
                         model=draw(st.sampled_from(["gpt-a", "gpt-b"])), phase="request")
    if kind == "model_out":
        content = draw(st.sampled_from(['{"decision": "approve", "score": 0.7}',
                                        '{"decision": "deny", "label": "x"}', "plain", "{bad"]))
        return ModelCall(context=ctx, timestamp=stamp, provider="openai", model="gpt-a",
                         output=[Message(role="assistant", content=content)],
                         output_tokens=draw(st.one_of(st.none(), st.integers(0, 5000))),
                         phase="response")
    if kind == "retrieval":
        return Retrieval(context=ctx, timestamp=stamp, retriever=draw(st.sampled_from(["kb", "web"])),
                         phase=draw(st.sampled_from(["request", "response"])))
    if kind == "turn":
        return Turn(context=ctx, timestamp=stamp, text=draw(WORDS))
    return ctx  # not an event: counted as skipped


def _learn(items: list[Any]) -> Profile:
    learner = Learner(Profile(agent="agent", limits=LIMITS))
    for item in items:
        learner.learn(item)
    return learner.profile


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.lists(events(), max_size=25), st.lists(events(), max_size=25))
def test_merge_is_commutative(a: list[Any], b: list[Any]) -> None:
    """merge(a, b) equals merge(b, a)."""
    left, right = _learn(a), _learn(b)
    assert left.merge(right) == right.merge(left)


@FAST
@given(st.lists(events(), max_size=20), st.lists(events(), max_size=20),
       st.lists(events(), max_size=20))
def test_merge_is_associative(a: list[Any], b: list[Any], c: list[Any]) -> None:
    """merge(merge(a, b), c) equals merge(a, merge(b, c))."""
    pa, pb, pc = _learn(a), _learn(b), _learn(c)
    assert pa.merge(pb).merge(pc) == pa.merge(pb.merge(pc))


@FAST
@given(st.lists(events(), max_size=30), st.integers(0, 30))
def test_learning_in_two_replicas_then_merging_equals_learning_in_one(items: list[Any],
                                                                      cut: int) -> None:
    """Two replicas that each learned part of the events merge into what one would have learned."""
    assert _learn(items[:cut]).merge(_learn(items[cut:])) == _learn(items)


@FAST
@given(st.lists(events(), max_size=30))
def test_merge_with_an_empty_profile_changes_nothing(items: list[Any]) -> None:
    """An empty profile is the identity of merge, and merging never changes its inputs."""
    learned = _learn(items)
    before = learned.to_json()
    empty = Profile(agent="agent", limits=LIMITS)
    assert learned.merge(empty) == learned == empty.merge(learned)
    assert learned.to_json() == before


@FAST
@given(st.lists(events(), max_size=30))
def test_a_saved_profile_reads_back_equal(items: list[Any]) -> None:
    """A profile survives its JSON form unchanged."""
    learned = _learn(items)
    assert Profile.from_json(learned.to_json()) == learned


def test_profiles_of_different_agents_or_limits_do_not_merge() -> None:
    """Merging profiles of two agents, or learned under different limits, is refused."""
    import pytest

    with pytest.raises(ProfileError, match=r"agent 'a'.*agent 'b'"):
        Profile(agent="a").merge(Profile(agent="b"))
    with pytest.raises(ProfileError, match="different limits"):
        Profile(agent="a").merge(Profile(agent="a", limits=Limits(max_tools=5)))
    with pytest.raises(ProfileError):
        merge_profiles()
