"""The write-back engine on moto's DynamoDB with a scripted Salesforce port: what it sends, how it
batches, how it retries and what it ignores."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from sfsync.core.clock import FixedClock
from sfsync.core.config import load_settings
from sfsync.items import snapshot
from sfsync.writeback import LOCK_BACKOFF_SECONDS, LOCK_RETRIES, WriteBack, WriteBackDeps, clear_describe_cache

from tests.support.aws import create_table, mocked_aws

pytestmark = pytest.mark.functional

T0 = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
STAMP = "2026-11-24T11:00:00.000Z"
LEAD_FIELDS = [
    {"name": "Id", "type": "id", "updateable": False, "createable": False},
    {"name": "SystemModstamp", "type": "datetime", "updateable": False, "createable": False},
    {"name": "Title", "type": "string", "length": 128, "updateable": True, "createable": True, "filterable": True},
    {"name": "LastName", "type": "string", "length": 80, "updateable": True, "createable": True, "filterable": True},
    {"name": "IsConverted", "type": "boolean", "updateable": False, "createable": False},
    {"name": "ConvertedContactId", "type": "reference", "updateable": False, "createable": False},
]
_ser, _de = TypeSerializer(), TypeDeserializer()


class ScriptedSalesforce:
    """The write-back's Salesforce port: Salesforce's values in a dict, every call recorded."""

    api_version = "59.0"

    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, Any]] = []
        #: record Id -> how many more saves of it fail with UNABLE_TO_LOCK_ROW
        self.locks: dict[str, int] = {}

    def describe(self, obj: str) -> dict[str, Any]:
        self.calls.append(("describe", obj))
        return {"fields": LEAD_FIELDS}

    def retrieve(self, obj: str, ids: list[str], fields: list[str]) -> list[dict[str, Any] | None]:
        self.calls.append(("retrieve", len(ids)))
        return [{f: self.values[i].get(f) for f in fields} if i in self.values else None for i in ids]

    def _save(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for record in records:
            if self.locks.get(record["id"], 0) > 0:
                self.locks[record["id"]] -= 1
                out.append({"success": False, "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "locked"}]})
                continue
            values = {k: v for k, v in record.items() if k not in ("attributes", "id")}
            self.values[record["id"]].update(values)
            out.append({"id": record["id"], "success": True, "errors": []})
        return out

    def collections(self, method: Any, records: list[dict[str, Any]], all_or_none: bool = False, **_: Any) -> Any:
        self.calls.append(("collections", len(records)))
        return self._save(records)

    def composite(
        self, subrequests: list[dict[str, Any]], all_or_none: bool = False, *, headers: Any = None
    ) -> list[dict[str, Any]]:
        self.calls.append(("composite", [len(s["body"]["records"]) for s in subrequests]))
        assert all(s["httpHeaders"]["Sforce-Call-Options"] == "client=sfsync" for s in subrequests)
        assert headers is not None and headers["Sforce-Call-Options"] == "client=sfsync"
        return [{"httpStatusCode": 200, "body": self._save(s["body"]["records"])} for s in subrequests]

    def upsert_collection(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no upsert expected")

    def query_pages(self, soql: str, **_: Any) -> Any:
        raise AssertionError(f"no query expected: {soql}")

    def server_time(self) -> dt.datetime | None:
        return T0


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, ScriptedSalesforce, list[float]]]:
    clear_describe_cache()
    with mocked_aws(monkeypatch) as client:
        create_table(client, "lead", "Id")
        create_table(client, "errors", "pk", "sk")
        create_table(client, "state", "pk", "sk")
        yield client, ScriptedSalesforce(), []
    clear_describe_cache()


def deps(client: Any, sf: ScriptedSalesforce, sleeps: list[float]) -> WriteBackDeps:
    settings = load_settings(
        {
            "SFSYNC_STATE_TABLE": "state",
            "SFSYNC_ERRORS_TABLE": "errors",
            "SFSYNC_RECORD_TABLES": json.dumps({"Lead": "lead"}),
            "SFSYNC_OBJECTS": "Lead",
        }
    )
    return WriteBackDeps(settings, sf, client, FixedClock(T0), sleep=sleeps.append, wall_clock=lambda: T0)


def lead_id(n: int) -> str:
    return f"00Q5g{n:010d}AAA"


def seed(client: Any, sf: ScriptedSalesforce, count: int) -> list[dict[str, Any]]:
    """``count`` Leads synced (values and base) into the table and known to Salesforce."""
    items = []
    for n in range(count):
        item = snapshot.with_base(
            {"Id": lead_id(n), "sobject": "Lead", "SystemModstamp": STAMP, "IsDeleted": False, "Title": f"T{n}"}
        )
        client.put_item(TableName="lead", Item={k: _ser.serialize(v) for k, v in item.items()})
        sf.values[lead_id(n)] = {"Id": lead_id(n), "SystemModstamp": "2026-11-24T11:00:00.000+0000", "Title": f"T{n}"}
        items.append(item)
    return items


def record(event: str, new: dict[str, Any] | None, old: dict[str, Any] | None, seq: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ApproximateCreationDateTime": T0.timestamp(),
        "Keys": {"Id": {"S": (new or old or {})["Id"]}},
        "SequenceNumber": str(1000 + seq),
    }
    if new is not None:
        body["NewImage"] = {k: _ser.serialize(v) for k, v in new.items()}
    if old is not None:
        body["OldImage"] = {k: _ser.serialize(v) for k, v in old.items()}
    arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/lead/stream/x"
    return {"eventName": event, "eventSourceARN": arn, "dynamodb": body}


def edit(client: Any, item: dict[str, Any], **values: Any) -> dict[str, Any]:
    """Apply a local edit to the table; the edited image."""
    edited = {**item, **values}
    client.put_item(TableName="lead", Item={k: _ser.serialize(v) for k, v in edited.items()})
    return edited


def stored(client: Any, key: str) -> dict[str, Any]:
    raw = client.get_item(TableName="lead", Key={"Id": {"S": key}}, ConsistentRead=True)["Item"]
    return {k: _de.deserialize(v) for k, v in raw.items()}


def test_given_sync_writes_and_bookkeeping_then_nothing_is_called_or_written(world: Any) -> None:
    client, sf, sleeps = world
    items = seed(client, sf, 3)
    newer = snapshot.with_base({**items[1], "Title": "From Salesforce", "SystemModstamp": "2026-11-24T11:30:00.000Z"})
    marked = {**items[2], "_writeback_error": "{}"}
    records = [
        record("INSERT", items[0], None, 1),
        record("MODIFY", newer, items[1], 2),
        record("MODIFY", marked, items[2], 3),
        record("REMOVE", None, {**items[0], "IsDeleted": True}, 4),
    ]
    result = WriteBack(deps(client, sf, sleeps)).run(records)
    assert sf.calls == []
    assert result.failed == set() and result.counters["Lead"].ignored == 4
    assert client.scan(TableName="errors")["Items"] == []


def test_given_210_edits_in_a_batch_then_one_retrieve_and_one_composite_carry_them(world: Any) -> None:
    client, sf, sleeps = world
    items = seed(client, sf, 210)
    records = [record("MODIFY", edit(client, item, Title=f"Edited {n}"), item, n) for n, item in enumerate(items)]
    result = WriteBack(deps(client, sf, sleeps)).run(records)

    assert sf.calls == [("describe", "Lead"), ("retrieve", 210), ("composite", [200, 10])]
    assert result.failed == set() and result.counters["Lead"].pushed == 210
    assert result.api_calls == 1
    assert sf.values[lead_id(209)]["Title"] == "Edited 209"
    assert json.loads(stored(client, lead_id(209))["_base"])["Title"] == "Edited 209"


def test_given_a_row_locked_a_few_times_then_it_is_retried_with_back_off_and_lands(world: Any) -> None:
    client, sf, sleeps = world
    item = seed(client, sf, 1)[0]
    sf.locks[lead_id(0)] = LOCK_RETRIES  # the last retry succeeds
    result = WriteBack(deps(client, sf, sleeps)).run([record("MODIFY", edit(client, item, Title="X"), item, 1)])
    assert result.failed == set()
    assert sleeps == [LOCK_BACKOFF_SECONDS * 2**n for n in range(LOCK_RETRIES)]
    assert sf.values[lead_id(0)]["Title"] == "X"
    assert result.counters["Lead"].retried == LOCK_RETRIES


def test_given_a_row_locked_longer_than_the_retries_then_only_its_record_is_reported_for_lambda(world: Any) -> None:
    client, sf, sleeps = world
    locked, free = seed(client, sf, 2)
    sf.locks[lead_id(0)] = LOCK_RETRIES + 1
    records = [
        record("MODIFY", edit(client, locked, Title="Locked"), locked, 1),
        record("MODIFY", edit(client, free, Title="Free"), free, 2),
    ]
    result = WriteBack(deps(client, sf, sleeps)).run(records)
    assert result.failed == {"1001"}
    assert sf.values[lead_id(1)]["Title"] == "Free"
    assert json.loads(stored(client, lead_id(0))["_base"])["Title"] == "T0", "not pushed: the base stays"


def test_given_a_non_updateable_change_then_it_is_rejected_once_per_record_that_made_it(world: Any) -> None:
    client, sf, sleeps = world
    item = seed(client, sf, 1)[0]
    first = edit(client, item, IsConverted=True)
    second = edit(client, first, Title="Later")
    WriteBack(deps(client, sf, sleeps)).run([record("MODIFY", first, item, 1), record("MODIFY", second, first, 2)])
    rows = [{k: _de.deserialize(v) for k, v in raw.items()} for raw in client.scan(TableName="errors")["Items"]]
    assert [(r["kind"], json.loads(r["fields"])) for r in rows] == [("rejected", ["IsConverted"])]
    assert sf.values[lead_id(0)]["Title"] == "Later"


def test_given_a_number_edit_then_it_is_sent_as_json_and_the_base_keeps_a_decimal(world: Any) -> None:
    client, sf, sleeps = world
    item = seed(client, sf, 1)[0]
    global LEAD_FIELDS
    fields = [*LEAD_FIELDS, {"name": "NumberOfEmployees", "type": "int", "updateable": True, "createable": True}]
    original, LEAD_FIELDS = LEAD_FIELDS, fields
    try:
        WriteBack(deps(client, sf, sleeps)).run(
            [record("MODIFY", edit(client, item, NumberOfEmployees=Decimal(42)), item, 1)]
        )
    finally:
        LEAD_FIELDS = original
    assert sf.values[lead_id(0)]["NumberOfEmployees"] == 42
    assert isinstance(sf.values[lead_id(0)]["NumberOfEmployees"], int)
    assert json.loads(stored(client, lead_id(0))["_base"])["NumberOfEmployees"] == 42


def test_given_an_unreadable_base_then_the_record_is_refused_and_the_rest_goes_through(world: Any) -> None:
    client, sf, sleeps = world
    broken, fine = seed(client, sf, 2)
    records = [
        record("MODIFY", edit(client, broken, Title="X", _base="not json"), broken, 1),
        record("MODIFY", edit(client, fine, Title="Y"), fine, 2),
    ]
    result = WriteBack(deps(client, sf, sleeps)).run(records)
    assert result.failed == set()
    rows = [{k: _de.deserialize(v) for k, v in raw.items()} for raw in client.scan(TableName="errors")["Items"]]
    history = [r for r in rows if r["pk"].startswith("ERRORS#")]
    assert [(r["record_id"], r["code"]) for r in history] == [(lead_id(0), "INVALID_BASE")]
    # and the record is listed by `sfsync errors` (its one open row) until a push of it is accepted
    assert [(r["pk"], r["sk"], r["kind"]) for r in rows if r["pk"].startswith("OPEN#")] == [
        ("OPEN#Lead", lead_id(0), "refused")
    ]
    assert "_writeback_error" in stored(client, lead_id(0))
    assert sf.values[lead_id(1)]["Title"] == "Y"


def test_given_a_salesforce_value_dynamodb_cannot_hold_then_the_record_is_refused_and_the_rest_goes_through(
    world: Any,
) -> None:
    client, sf, sleeps = world
    big, fine = seed(client, sf, 2)
    sf.values[lead_id(0)]["Title"] = 1e200  # what a retrieve could answer: beyond DynamoDB's number range
    records = [
        record("MODIFY", edit(client, big, Title="X"), big, 1),
        record("MODIFY", edit(client, fine, Title="Y"), fine, 2),
    ]
    result = WriteBack(deps(client, sf, sleeps)).run(records)
    assert result.failed == set()
    rows = [{k: _de.deserialize(v) for k, v in raw.items()} for raw in client.scan(TableName="errors")["Items"]]
    history = [r for r in rows if r["pk"].startswith("ERRORS#")]
    assert [(r["record_id"], r["code"], json.loads(r["fields"])) for r in history] == [
        (lead_id(0), "UNSTORABLE", ["Title"])
    ]
    assert "range/precision" in history[0]["message"]
    assert sf.values[lead_id(0)]["Title"] == 1e200, "nothing pushed over a value the item could not hold"
    assert "_writeback_error" in stored(client, lead_id(0))
    assert sf.values[lead_id(1)]["Title"] == "Y"


@pytest.mark.parametrize("path", ["stream", "retry"])
def test_given_a_batch_of_edits_then_each_records_local_changes_and_writability_are_computed_once(
    world: Any, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """classify computes an update's local changes once per record, and its writable split once per
    record and field; decide, push and settle read that value instead of computing it again."""
    from collections import Counter

    from sfsync.writeback import classify as classify_stage

    client, sf, sleeps = world
    items = seed(client, sf, 4)
    edited = [edit(client, item, Title=f"Edited {n}") for n, item in enumerate(items[:3])]
    edited.append(edit(client, items[3], Title="Edited 3", IsConverted=True))  # one field not updateable
    local_changes_of: Counter[str] = Counter()
    writable_of: Counter[str] = Counter()
    counted_local_changes, counted_writable = snapshot.local_changes, classify_stage.writable

    def local_changes(item: Any, **kwargs: Any) -> Any:
        local_changes_of[str(item.get("Id"))] += 1
        return counted_local_changes(item, **kwargs)

    def writable(describe: Any, name: str, **kwargs: Any) -> Any:
        writable_of[name] += 1
        return counted_writable(describe, name, **kwargs)

    monkeypatch.setattr(snapshot, "local_changes", local_changes)
    monkeypatch.setattr(classify_stage, "writable", writable)
    run = WriteBack(deps(client, sf, sleeps), owner="stream" if path == "stream" else "retry-test")
    if path == "stream":
        pairs = zip(edited, items, strict=True)
        result = run.run([record("MODIFY", new, old, n) for n, (new, old) in enumerate(pairs)])
    else:
        result = run.redrive("Lead", [lead_id(n) for n in range(4)], [], mark_first=True)

    assert result.failed == set() and result.counters["Lead"].pushed == 4
    assert [sf.values[lead_id(n)]["Title"] for n in range(4)] == [f"Edited {n}" for n in range(4)]
    assert local_changes_of == {lead_id(n): 1 for n in range(4)}, "local changes computed once per record"
    assert writable_of == {"Title": 4, "IsConverted": 1}, "each changed field checked once per record"
    assert result.counters["Lead"].rejected == 1
