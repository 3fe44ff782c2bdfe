"""Numeric histograms, bounded value sets and the features a profile learns from values."""

from __future__ import annotations

import json

import pytest

from agentguard.baseline import Histogram, ValueSet
from agentguard.baseline import _features as features


def test_histogram_keeps_exact_bounds_and_estimates_quantiles() -> None:
    """A histogram knows its exact minimum and maximum and estimates quantiles within a bucket."""
    histogram = Histogram()
    for value in range(1, 1001):
        histogram.add(value, 48)
    assert (histogram.count, histogram.min, histogram.max) == (1000, 1, 1000)
    median = histogram.quantile(0.5)
    assert median is not None and 450 <= median <= 550
    assert histogram.quantile(0.0) == 1 and histogram.quantile(1.0) == 1000


def test_histogram_stays_within_its_bucket_budget_over_a_huge_range() -> None:
    """Values spanning many orders of magnitude coarsen the scale instead of adding buckets."""
    histogram = Histogram()
    for exponent in range(-300, 300, 7):
        histogram.add(10.0 ** exponent, 16)
        histogram.add(-(10.0 ** exponent), 16)
    for side in (histogram.positive, histogram.negative):
        assert max(side) - min(side) + 1 <= 16
    assert histogram.count == 2 * len(range(-300, 300, 7))


def test_histogram_counts_non_finite_values_without_summarising_them() -> None:
    """NaN, infinities and numbers too large for a float are counted apart from the range."""
    histogram = Histogram()
    for value in (float("nan"), float("inf"), -float("inf"), 10 ** 400, 3):
        histogram.add(value, 48)
    assert histogram.nonfinite == 4
    assert (histogram.count, histogram.min, histogram.max) == (1, 3, 3)


def test_value_set_keeps_the_smallest_values_and_counts_the_rest() -> None:
    """A full set keeps the lexicographically smallest values and counts what it drops."""
    values = ValueSet()
    for value in ["m", "z", "a", "q", "b", "a"]:
        values.add(value, 3)
    assert values.values == {"a": 2, "b": 1, "m": 1}
    assert values.dropped == 2
    assert not values.closed
    assert values.total == 6


def test_shape_outlines_identifiers_and_describes_free_text() -> None:
    """Identifiers become class outlines; long free text becomes the set of its classes."""
    assert features.shape("ticket-4711") == "a-9"
    assert features.shape("C-1234") == features.shape("Q-99")
    assert features.shape("2024-01-15") == "9-9-9"
    assert features.shape("alice@example.com") == "a@a.a"
    assert features.shape("please find all gold customers in Berlin") == "~ Aa"
    assert features.shape("x' OR 1=1; DROP TABLE users; -- and more text") .startswith("~")
    assert features.shape("x' OR 1=1; DROP TABLE users; -- and more text") != \
        features.shape("please find all gold customers in Berlin")


def test_hosts_domains_and_paths_are_extracted_from_text() -> None:
    """URLs give hosts (no user info, no port), addresses give domains, paths give areas."""
    text = "see https://user:pw@API.Example.com:8443/v1?q=1 and http://[::1]:80/x, mail bob@Corp.io"
    assert features.url_hosts(text) == ["api.example.com", "::1"]
    assert features.email_domains(text) == ["corp.io"]
    assert features.path_prefix("/srv/data/reports/2024/q1.csv") == "/srv/data/reports"
    assert features.path_prefix("/tmp/tmpk2j3h4/out.csv") == "/tmp/*"
    assert features.path_prefix("/etc/passwd") == "/etc"
    assert features.looks_like_path("/etc/passwd") and not features.looks_like_path("and/or")


def test_domain_suffix_and_network_block() -> None:
    """Names reduce to their registrable suffix and addresses to a /24 or /48 block."""
    assert features.domain_suffix("eu.api.example.com") == "example.com"
    assert features.domain_suffix("www.bbc.co.uk") == "bbc.co.uk"
    assert features.domain_suffix("10.0.0.1") is None
    assert features.cidr("10.1.2.3") == "10.1.2.0/24"
    assert features.cidr("2001:db8::1") == "2001:db8::/48"


@pytest.mark.parametrize(("value", "expected"), [
    ([{"id": i} for i in range(7)], 7),
    (json.dumps([{"id": i} for i in range(50_000)]), 50_000),
    ({"rows": [1, 2, 3], "next": None}, 3),
    ({"Items": [{"a": 1}] * 4, "Count": 4}, 4),
    ({"a": {"x": 1}, "b": {"x": 2}}, 2),
    ({"id": 1, "name": "Ada", "tags": ["x", "y"]}, 1),
    ("id,name\n1,Ada\n2,Bob\n3,Cy\n", 3),
    ("| id | name |\n|---|---|\n| 1 | Ada |\n| 2 | Bob |\n", 2),
    ('{"id": 1}\n{"id": 2}\n', None),
    ("Ada is a gold customer.", None),
    ([{"type": "text", "text": "[1, 2, 3]"}], 3),
])
def test_record_counts_of_tool_results(value: object, expected: int | None) -> None:
    """Records are counted in lists, JSON text, row objects, CSV and Markdown tables."""
    _, records = features.measure(value)
    if value == '{"id": 1}\n{"id": 2}\n':
        # JSON lines: not one JSON document, counted by lines.
        assert records == 2
    else:
        assert records == expected


def test_result_size_is_utf8_bytes() -> None:
    """The size of a result is its UTF-8 size (of its JSON text for objects)."""
    assert features.measure("héllo")[0] == 6
    assert features.measure({"a": 1})[0] == len('{"a":1}')


def test_structured_decisions_are_read_from_json_and_tool_calls() -> None:
    """A model's JSON answer or structured-output call yields decision labels and scores."""
    from agentguard.events import Message

    labels, scores = features.decisions([
        Message(role="assistant", content='```json\n{"decision": "Approve", "confidence": 0.93}\n```'),
    ])
    assert labels == [("decision", "approve")]
    assert scores == [("confidence", 0.93)]
    labels, _ = features.decisions([Message(role="assistant", content="", tool_calls=[
        {"name": "Verdict", "args": {"approved": False}}])])
    assert labels == [("Verdict.approved", "false")]


def test_secret_argument_names_are_recognised() -> None:
    """Arguments named like secrets keep no values; max_tokens is not one."""
    assert features.secret_key("api_key") and features.secret_key("Password")
    assert not features.secret_key("max_tokens") and not features.secret_key("customer_id")
