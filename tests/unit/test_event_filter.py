"""The local stack's Lambda event filtering (``sfsync_local.event_filter``) against Lambda's rules."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sfsync_local.event_filter import UnsupportedFilter, accepts, parse_filters

pytestmark = pytest.mark.unit

ENGINE_INSERTS_OUT = {
    "Filters": [
        {"Pattern": '{"dynamodb": {"OldImage": {"Id": {"S": [{"exists": true}]}}}}'},
        {"Pattern": '{"dynamodb": {"NewImage": {"_cycle_id": {"S": [{"exists": false}]}}}}'},
    ]
}


def record(event: str, new: dict[str, Any] | None, old: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"Keys": {"Id": {"S": "00Q1"}}}
    if new is not None:
        body["NewImage"] = {k: {"S": v} for k, v in new.items()}
    if old is not None:
        body["OldImage"] = {k: {"S": v} for k, v in old.items()}
    return {"eventName": event, "eventSource": "aws:dynamodb", "dynamodb": body}


@pytest.mark.parametrize(
    ("change", "delivered"),
    [
        (record("INSERT", {"Id": "00Q1", "_cycle_id": "copy-1"}, None), False),  # the engine's insert
        (record("INSERT", {"Id": "local-1", "LastName": "X"}, None), True),  # an application's insert
        (record("MODIFY", {"Id": "00Q1", "_cycle_id": "c"}, {"Id": "00Q1", "_cycle_id": "c"}), True),
        (record("REMOVE", None, {"Id": "00Q1", "_cycle_id": "c"}), True),
    ],
    ids=["engine-insert", "application-insert", "modify", "remove"],
)
def test_given_the_write_backs_filters_then_only_the_engines_inserts_are_dropped(
    change: dict[str, Any], delivered: bool
) -> None:
    assert accepts(parse_filters(ENGINE_INSERTS_OUT), change) is delivered


def test_given_no_filters_then_every_record_is_delivered() -> None:
    assert parse_filters(None) == () and accepts((), record("INSERT", {"Id": "1", "_cycle_id": "c"}, None))


@pytest.mark.parametrize(
    ("pattern", "change", "delivered"),
    [
        ({"eventName": ["INSERT", "MODIFY"]}, record("MODIFY", {"Id": "1"}, {"Id": "1"}), True),
        ({"eventName": ["INSERT"]}, record("REMOVE", None, {"Id": "1"}), False),
        ({"dynamodb": {"NewImage": {"Id": {"S": ["1"]}}}}, record("INSERT", {"Id": "1"}, None), True),
        ({"dynamodb": {"NewImage": {"Id": {"S": ["2"]}}}}, record("INSERT", {"Id": "1"}, None), False),
        # exists matches leaves only: the image object itself is not a leaf
        ({"dynamodb": {"NewImage": [{"exists": True}]}}, record("INSERT", {"Id": "1"}, None), False),
        ({"dynamodb": {"Keys": {"Id": {"S": [{"exists": True}]}}}}, record("REMOVE", None, {"Id": "1"}), True),
    ],
)
def test_given_a_pattern_then_a_record_matches_when_every_key_matches(
    pattern: dict[str, Any], change: dict[str, Any], delivered: bool
) -> None:
    assert accepts(parse_filters({"Filters": [{"Pattern": json.dumps(pattern)}]}), change) is delivered


@pytest.mark.parametrize(
    "criteria",
    [
        {"Filters": "not a list"},
        {"Filters": [{"Pattern": "{not json"}]},
        {"Filters": [{"Pattern": "[]"}]},
        {"Filters": [{}]},
        {"Filters": [{"Pattern": '{"dynamodb": {"NewImage": {"N": {"N": [{"numeric": [">", 1]}]}}}}'}]},
        {"Filters": [{"Pattern": '{"eventName": "INSERT"}'}]},
    ],
    ids=["filters-not-a-list", "not-json", "not-an-object", "no-pattern", "unsupported-operator", "bare-value"],
)
def test_given_a_filter_the_local_stack_cannot_evaluate_then_it_is_refused_with_a_clear_error(
    criteria: dict[str, Any],
) -> None:
    with pytest.raises(UnsupportedFilter):
        parse_filters(criteria)
