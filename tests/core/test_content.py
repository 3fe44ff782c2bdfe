"""Content capture: capture modes, size caps with an honest truncation marker, bounded JSON."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import re
import string
import time
from datetime import datetime
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from agentguard._content import ContentCapture, to_json

GITHUB = "ghp" + "_" + "A1b2C3d4E5f6G7h8I9j0" * 2  # 44 characters
PEM_BEGIN = "-----BEGIN RSA " + "PRIVATE KEY-----"
PEM_END = "-----END RSA " + "PRIVATE KEY-----"
MARKED = re.compile(r"(?P<head>.*)\.\.\.\[truncated, (?:more than )?\d+ chars\]", re.DOTALL)


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------
# Capture modes.


def test_full_mode_keeps_short_text_as_it_is() -> None:
    """In ``full`` mode text within the size cap is captured unchanged, secrets included."""
    assert ContentCapture("full", 100).text("login password=hunter2") == "login password=hunter2"


def test_redacted_mode_replaces_secrets() -> None:
    """In ``redacted`` mode secrets are replaced and the rest of the text is kept."""
    capture = ContentCapture("redacted", 100)
    assert capture.text("login password=hunter2 ok") == "login password=[REDACTED:secret] ok"


def test_redacted_is_the_default_mode() -> None:
    """A capture without arguments redacts and caps at 4096 characters."""
    capture = ContentCapture()
    assert (capture.mode, capture.max_length, capture.enabled) == ("redacted", 4096, True)
    assert capture.text(f"token {GITHUB}") == "token [REDACTED:token]"


def test_hash_mode_is_sha256_of_the_whole_text() -> None:
    """In ``hash`` mode the capture is the sha256 of the full text, however long it is."""
    text = "x" * 10_000 + " password=hunter2"
    expected = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    assert ContentCapture("hash", 64).text(text) == expected


def test_hash_mode_accepts_lone_surrogates() -> None:
    """Text that is not valid Unicode (a lone surrogate) still hashes instead of failing."""
    expected = "sha256:" + hashlib.sha256(b"a\xed\xa0\x80b").hexdigest()
    assert ContentCapture("hash").text("a\ud800b") == expected


def test_hash_mode_of_a_value_hashes_its_json() -> None:
    """In ``hash`` mode a value is captured as the sha256 of its compact JSON text."""
    value = {"city": "Zürich", "days": [1, 2]}
    expected = "sha256:" + hashlib.sha256(compact(value).encode()).hexdigest()
    assert ContentCapture("hash").value(value) == expected


def test_none_mode_captures_nothing() -> None:
    """In ``none`` mode neither text nor values are captured at all."""
    capture = ContentCapture("none")
    assert capture.enabled is False
    assert capture.text("password=hunter2") is None
    assert capture.value({"password": "hunter2"}) is None


@pytest.mark.parametrize("mode", ["full", "redacted", "hash"])
def test_other_modes_are_enabled(mode: Any) -> None:
    """Every mode but ``none`` captures something."""
    assert ContentCapture(mode).enabled is True


def test_unknown_mode_is_rejected() -> None:
    """A misspelt mode is an error rather than a silent fall-back to capturing everything."""
    with pytest.raises(ValueError, match="capture mode"):
        ContentCapture("redact")  # type: ignore[arg-type]


def test_negative_size_cap_is_rejected() -> None:
    """A negative size cap is an error."""
    with pytest.raises(ValueError, match="max_length"):
        ContentCapture("full", -1)


def test_text_of_a_non_string_is_its_json() -> None:
    """Passing a value where text is expected captures the value's JSON instead of failing."""
    assert ContentCapture("redacted").text({"a": 1}) == '{"a":1}'  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Size cap and truncation marker.


def test_text_over_the_cap_is_truncated_with_its_size() -> None:
    """Text over the cap is cut and marked with the size of the whole text."""
    alphabet = string.ascii_lowercase
    assert ContentCapture("full", 10).text(alphabet) == "abcdefghij...[truncated, 26 chars]"
    assert ContentCapture("redacted", 10).text(alphabet) == "abcdefghij...[truncated, 26 chars]"


def test_text_exactly_at_the_cap_is_not_marked() -> None:
    """Text exactly as long as the cap is captured whole, without a marker."""
    assert ContentCapture("full", 26).text(string.ascii_lowercase) == string.ascii_lowercase


def test_secret_straddling_the_cut_is_redacted_whole() -> None:
    """A secret that starts before the cut and ends after it is redacted, never shown in part."""
    text = f"see {GITHUB} for details"
    assert ContentCapture("full", 20).text(text) == "see ghp_A1b2C3d4E5f6...[truncated, 60 chars]"
    redacted = ContentCapture("redacted", 20).text(text)
    assert redacted == "see [REDACTED:token]...[truncated, 60 chars]"


def test_cut_does_not_split_a_redaction_marker() -> None:
    """When the cut falls inside a redaction marker, the marker is dropped rather than split."""
    text = f"see {GITHUB} for details"
    assert ContentCapture("redacted", 10).text(text) == "see ...[truncated, 60 chars]"


def test_assignment_straddling_the_cut_shows_no_part_of_the_value() -> None:
    """A password whose value crosses the cut shows at most its key name."""
    text = "x" * 15 + " password=hunter2hunter2"
    expected = "x" * 15 + " pass...[truncated, 39 chars]"
    assert ContentCapture("redacted", 20).text(text) == expected


def test_private_key_longer_than_the_lookahead_is_redacted() -> None:
    """A private key running far past the cut is redacted, not shown up to the cut."""
    body = "\n".join("MIIEpAIBAAKCAQEA" * 4 for _ in range(200))  # about 13 KB
    text = "x" * 50 + "\n" + PEM_BEGIN + "\n" + body + "\n" + PEM_END + "\nafter" * 20
    expected = ("x" * 50 + "\n[REDACTED:private_key]" + "\nafter" * 20)[:100]
    expected += f"...[truncated, {len(text)} chars]"
    assert ContentCapture("redacted", 100).text(text) == expected


def test_secret_after_large_redactions_is_still_redacted() -> None:
    """Secrets after long redacted ones (which shrink the text) are redacted too."""
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJ" + "a" * 5000 + ".c2lnbmF0dXJl"
    text = (jwt + " ") * 3 + GITHUB + " end"
    expected = "[REDACTED:jwt] [REDACTED:jwt] [REDACTED:jwt] [REDACTED:token] end"
    assert ContentCapture("redacted", 100).text(text) == expected


def test_huge_value_with_an_unfinished_private_key_is_captured_quickly() -> None:
    """A huge value whose private key never ends is captured quickly and shows nothing of it."""
    value = [PEM_BEGIN + "\n" + "A" * 10_000] * 1000
    start = time.perf_counter()
    captured = ContentCapture("redacted", 4096).value(value)
    assert time.perf_counter() - start < 1.0
    assert captured is not None
    marker = r"\.\.\.\[truncated, more than \d+ chars\]"
    assert re.fullmatch(r'\["\[REDACTED:private_key\]' + marker, captured)


def test_json_value_straddling_the_cut() -> None:
    """A token in a JSON value that crosses the cut is dropped, and the marker gives the size."""
    value = ["a" * 90, GITHUB]
    expected = '["' + "a" * 90 + '","' + f"...[truncated, {len(compact(value))} chars]"
    assert ContentCapture("redacted", 100).value(value) == expected


def test_marker_of_a_value_too_large_to_serialise_says_more_than() -> None:
    """When a value was too large to serialise completely, the marker says its size is larger."""
    value = list(range(100_000))
    expected = "[0,1,2,3,4,5,6,7,8,9...[truncated, more than 4116 chars]"
    assert ContentCapture("full", 20).value(value) == expected
    assert ContentCapture("redacted", 20).value(value) == expected
    assert len(compact(value)) > 4116


def test_marker_of_a_value_serialised_completely_gives_its_size() -> None:
    """A value serialised completely but longer than the cap reports its exact JSON size."""
    value = {"items": list(range(50))}
    expected = compact(value)[:20] + f"...[truncated, {len(compact(value))} chars]"
    assert ContentCapture("redacted", 20).value(value) == expected


# ---------------------------------------------------------------------------------------------
# Values.


def test_value_is_captured_as_compact_json() -> None:
    """A value is captured as compact JSON with non-ASCII characters kept."""
    value = {"city": "Zürich", "days": 3, "units": ["C", "mm"], "ok": True, "note": None}
    expected = '{"city":"Zürich","days":3,"units":["C","mm"],"ok":true,"note":null}'
    assert ContentCapture("full").value(value) == expected


def test_secret_in_a_value_is_redacted() -> None:
    """Secrets inside tool arguments are redacted in the captured JSON."""
    value = {"user": "bob", "password": "hunter2", "dsn": "postgres://app:s3cr3t@db/app"}
    expected = (
        '{"user":"bob","password":"[REDACTED:secret]",'
        '"dsn":"postgres://app:[REDACTED:password]@db/app"}'
    )
    assert ContentCapture("redacted").value(value) == expected


def test_string_value_is_captured_as_text() -> None:
    """A string value is captured as the text itself, not as a JSON string literal."""
    assert ContentCapture("redacted").value("password=hunter2") == "password=[REDACTED:secret]"


# ---------------------------------------------------------------------------------------------
# to_json: bounded, never raising.


class Color(enum.Enum):
    RED = "red"


class User(BaseModel):
    name: str
    password: SecretStr


@dataclasses.dataclass
class Point:
    x: int
    y: tuple[int, ...]


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr failed")


class Hostile:
    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")

    def __repr__(self) -> str:
        raise ValueError("no repr either")


class Plain:
    def __repr__(self) -> str:
        return "Plain(1)"


def test_strings_are_returned_as_they_are() -> None:
    """A string is its own JSON form, so it is returned unchanged."""
    assert to_json("plain text, not JSON") == "plain text, not JSON"


def test_plain_values_are_compact_json() -> None:
    """Dicts, lists, tuples, numbers, booleans and None become compact JSON."""
    value = {"a": [1, 2.5, None, True], "t": (1, "x"), "nan": [float("nan"), float("inf")]}
    assert to_json(value) == '{"a":[1,2.5,null,true],"t":[1,"x"],"nan":[NaN,Infinity]}'


def test_pydantic_models_become_objects() -> None:
    """A pydantic model is written as its JSON dump, with secret fields masked by pydantic."""
    user = User(name="ada", password=SecretStr("hunter2"))
    assert to_json(user) == '{"name":"ada","password":"**********"}'
    assert to_json({"user": user}) == '{"user":{"name":"ada","password":"**********"}}'


def test_dataclasses_become_objects() -> None:
    """A dataclass is written as an object of its fields."""
    assert to_json(Point(1, (2, 3))) == '{"x":1,"y":[2,3]}'


def test_bytes_become_their_size() -> None:
    """Bytes are written as their size only, never their content."""
    assert to_json(b"secret-bytes") == '"<12 bytes>"'
    assert to_json({"blob": bytearray(5), "view": memoryview(b"abc")}) == (
        '{"blob":"<5 bytes>","view":"<3 bytes>"}'
    )


def test_sets_become_arrays() -> None:
    """Sets and frozensets are written as arrays."""
    assert to_json({"tags": {"a"}, "frozen": frozenset([1])}) == '{"tags":["a"],"frozen":[1]}'
    assert sorted(json.loads(to_json({3, 1, 2}))) == [1, 2, 3]


def test_common_standard_types_become_strings() -> None:
    """Dates, UUIDs, decimals, paths and enums are written as their natural string or value."""
    value = {
        "at": datetime(2024, 1, 2, 3, 4, 5),
        "id": UUID("12345678-1234-5678-1234-567812345678"),
        "amount": Decimal("1.10"),
        "path": PurePosixPath("/tmp/x"),
        "color": Color.RED,
    }
    expected = (
        '{"at":"2024-01-02T03:04:05","id":"12345678-1234-5678-1234-567812345678",'
        '"amount":"1.10","path":"/tmp/x","color":"red"}'
    )
    assert to_json(value) == expected


def test_other_objects_become_their_repr() -> None:
    """Objects JSON cannot encode otherwise are written as their repr."""
    assert to_json({"obj": Plain()}) == '{"obj":"Plain(1)"}'


def test_objects_whose_repr_raises_do_not_break_serialisation() -> None:
    """An object whose ``__repr__`` (or attribute lookup) raises is written as a placeholder."""
    assert to_json(BadRepr()) == '"<unrepresentable BadRepr>"'
    assert to_json({"a": BadRepr(), "b": [Hostile()]}) == (
        '{"a":"<unrepresentable BadRepr>","b":["<unrepresentable Hostile>"]}'
    )


class BrokenMapping(dict[str, int]):
    def items(self) -> Any:
        raise RuntimeError("changed while iterating")


def test_container_that_fails_while_written_is_cut_there() -> None:
    """A container that raises while it is being written is cut at that point, not dropped."""
    assert to_json([1, BrokenMapping(a=1)]) == "[1,{...[truncated]"
    assert ContentCapture("redacted", 100).value([1, BrokenMapping(a=1)]) == (
        "[1,{...[truncated, more than 4 chars]"
    )


def test_non_string_keys_are_written_as_json_would() -> None:
    """Keys that are not strings are written as strings."""
    assert to_json({1: "a", None: "b", 2.5: "c", ("t",): "d"}) == (
        '{"1":"a","null":"b","2.5":"c","(\'t\',)":"d"}'
    )
    assert to_json({False: 0}) == '{"false":0}'


def test_huge_integers_do_not_break_serialisation() -> None:
    """An integer too long to print is written as a placeholder instead of raising."""
    assert to_json([10**5000]) == '["<unrepresentable int>"]'


def test_circular_references_are_marked() -> None:
    """A container that contains itself is written with a ``<circular>`` placeholder."""
    items: list[Any] = [1]
    items.append(items)
    assert to_json(items) == '[1,"<circular>"]'
    record: dict[str, Any] = {"name": "x"}
    record["self"] = record
    assert to_json(record) == '{"name":"x","self":"<circular>"}'


def test_shared_references_are_not_circular() -> None:
    """The same list appearing twice is written twice, not as a circular reference."""
    shared = [1]
    assert to_json([shared, shared]) == "[[1],[1]]"


@pytest.mark.parametrize("make", [lambda inner: [inner], lambda inner: {"a": inner}])
def test_deep_nesting_is_cut_at_a_fixed_depth(make: Any) -> None:
    """A value nested 10,000 levels deep is written to a fixed depth, quickly and without error."""
    value: Any = []
    for _ in range(10_000):
        value = make(value)
    start = time.perf_counter()
    result = to_json(value)
    assert time.perf_counter() - start < 1.0
    opening, closing = ("[", "]") if isinstance(value, list) else ('{"a":', "}")
    assert result == opening * 32 + '"<nested too deep>"' + closing * 32


def test_huge_list_is_serialised_quickly_and_bounded() -> None:
    """A list of a million dicts is cut at the limit quickly, ending with a truncation marker."""
    value = [{"id": i, "name": f"n{i}"} for i in range(1_000_000)]
    start = time.perf_counter()
    result = to_json(value, 1 << 20)
    assert time.perf_counter() - start < 2.0
    assert len(result) == 1 << 20
    assert result == compact(value[:50_000])[: (1 << 20) - 14] + "...[truncated]"


def test_huge_list_is_captured_quickly() -> None:
    """Capturing a list of a million dicts serialises only what can be shown."""
    value = [{"id": i, "name": f"n{i}"} for i in range(1_000_000)]
    start = time.perf_counter()
    result = ContentCapture("redacted", 4096).value(value)
    assert time.perf_counter() - start < 0.5
    assert result == compact(value[:1000])[:4096] + "...[truncated, more than 8192 chars]"


def test_huge_dict_and_string_are_bounded() -> None:
    """A dict with a million keys and a string of ten million characters are cut at the limit."""
    assert to_json({f"k{i}": i for i in range(1_000_000)}, 40) == (
        '{"k0":0,"k1":1,"k2":2,"k3"...[truncated]'
    )
    assert to_json(["x" * 10_000_000], 100) == '["' + "x" * 84 + "...[truncated]"
    assert to_json("x" * 100, 20) == "x" * 6 + "...[truncated]"
    assert to_json("x" * 100, 5) == "xxxxx"


# ---------------------------------------------------------------------------------------------
# Properties.

leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=50)
    | st.binary(max_size=20)
    | st.builds(BadRepr)
    | st.builds(Hostile)
    | st.builds(Plain)
    | st.builds(Point, st.integers(), st.tuples(st.integers()))
    | st.sampled_from([Color.RED, Decimal("1.5"), UUID(int=7)])
)
values = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.text(max_size=10) | st.integers(), children, max_size=6)
    | st.tuples(children, children)
    | st.frozensets(st.integers() | st.text(max_size=5), max_size=4),
    max_leaves=40,
)
modes = st.sampled_from(["full", "redacted", "hash", "none"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, modes, st.integers(min_value=0, max_value=300))
def test_capture_never_raises_and_respects_the_cap(value: Any, mode: Any, max_length: int) -> None:
    """Any value is captured without error, within the cap plus the truncation marker."""
    captured = ContentCapture(mode, max_length).value(value)
    if mode == "none":
        assert captured is None
        return
    assert captured is not None
    if mode == "hash":
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", captured)
        return
    if len(captured) > max_length:
        marked = MARKED.fullmatch(captured)
        assert marked is not None
        assert len(marked.group("head")) <= max_length


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.integers(min_value=0, max_value=500))
def test_to_json_never_raises_and_respects_the_limit(value: Any, limit: int) -> None:
    """``to_json`` of any value never raises and never exceeds its limit."""
    assert len(to_json(value, limit)) <= limit


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        [
            ("ghp" + "_", 36, string.ascii_letters),
            ("AKIA", 16, string.ascii_uppercase),
            ("password=", 24, string.ascii_uppercase),
            ("Authorization: Bearer 9", 30, string.ascii_uppercase),
            ("eyJhbGciOiJIUzI1NiJ9.eyJ", 300, string.ascii_uppercase),
        ]
    ),
    st.data(),
    st.integers(min_value=0, max_value=900),
    st.integers(min_value=0, max_value=50),
    st.integers(min_value=0, max_value=6000),
)
def test_no_part_of_a_secret_survives_the_cut(
    kind: tuple[str, int, str], data: st.DataObject, words: int, after: int, max_length: int
) -> None:
    """Wherever the cut falls, no eight characters of a secret appear in the capture."""
    prefix, size, alphabet = kind
    body = data.draw(st.text(alphabet, min_size=size, max_size=size))
    text = "lorem ipsum " * words + prefix + body + " dolor" * after
    captured = ContentCapture("redacted", max_length).text(text)
    assert captured is not None
    assert not any(body[i : i + 8] in captured for i in range(len(body) - 7))


# ---------------------------------------------------------------------------------------------
# Exceptions: their messages are content.


def _raised(make: Any) -> BaseException:
    try:
        make()
    except Exception as exc:
        return exc
    raise AssertionError("nothing raised")


def _chained() -> None:
    try:
        raise KeyError("row 7 password=hunter2-secret")
    except KeyError as inner:
        raise RuntimeError("lookup failed for " + GITHUB) from inner


def test_exception_messages_are_redacted_and_bounded_in_redacted_mode() -> None:
    """An exception event's message and stack trace carry no secret and stay within the cap,
    and the trace still shows where the error came from."""
    capture = ContentCapture("redacted", max_length=200)
    exc = _raised(lambda: (_ for _ in ()).throw(
        RuntimeError(f"upstream said password=hunter2-secret token {GITHUB} " + "x" * 1_000_000)))
    event = capture.exception(exc)
    assert event["exception.type"] == "RuntimeError"
    for text in event.values():
        assert "hunter2" not in text and GITHUB not in text
    assert "[REDACTED:" in event["exception.message"]
    assert len(event["exception.message"]) < 300
    assert len(event["exception.stacktrace"]) < 5000
    assert "_raised" in event["exception.stacktrace"]
    status = capture.error_status(exc)
    assert status.startswith("RuntimeError: upstream said password=[REDACTED:")
    assert len(status) <= 512 and "hunter2" not in status


def test_exception_chains_keep_their_order_and_every_message_is_captured() -> None:
    """A chained exception's trace shows the cause first, then the error, like Python prints
    it, with both messages redacted."""
    event = ContentCapture("redacted").exception(_raised(_chained))
    trace = event["exception.stacktrace"]
    cause = trace.index("KeyError: ")
    link = trace.index("The above exception was the direct cause of the following exception")
    error = trace.index("RuntimeError: lookup failed for [REDACTED:")
    assert cause < link < error
    assert "hunter2" not in trace and GITHUB not in trace


def test_no_exception_message_is_captured_in_none_mode() -> None:
    """With content capture off, an exception event has its type and frames but no message,
    and the status names only the error type."""
    capture = ContentCapture("none")
    exc = _raised(_chained)
    event = capture.exception(exc)
    assert "exception.message" not in event
    # The frames' source lines are code and stay; the messages built at run time do not.
    assert GITHUB not in event["exception.stacktrace"]
    assert "KeyError: " not in event["exception.stacktrace"]
    assert "RuntimeError: " not in event["exception.stacktrace"]
    assert event["exception.stacktrace"].rstrip().endswith("RuntimeError")
    assert "_chained" in event["exception.stacktrace"]
    assert capture.error_status(exc) == "RuntimeError"


def test_exception_messages_are_hashed_in_hash_mode() -> None:
    """In ``hash`` mode the message is its digest and the status names only the error type."""
    capture = ContentCapture("hash")
    exc = ValueError("customer 42 is overdrawn")
    expected = "sha256:" + hashlib.sha256(b"customer 42 is overdrawn").hexdigest()
    assert capture.exception(exc)["exception.message"] == expected
    assert capture.error_status(exc) == "ValueError"


def test_an_exception_that_cannot_be_printed_still_gives_an_event() -> None:
    """An exception whose ``__str__`` raises is recorded by type, not lost."""

    class Odd(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    event = ContentCapture("full").exception(_raised(lambda: (_ for _ in ()).throw(Odd())))
    assert event["exception.message"] == "<unprintable " + Odd.__qualname__ + ">"
    assert event["exception.type"].endswith("Odd")
