"""``sfsync verify`` against the real emulator over HTTPS and a moto DynamoDB record table."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer
from sfsync.core.exceptions import ConfigurationError, StoreThrottled
from sfsync.ops.verify import RecordStoreWriter, verify_object
from sfsync.salesforce import SalesforceClient, client_from_secret
from sfsync.store.records import RecordStore
from sfsync.store.verify_reader import DynamoTableReader, StoredState
from sfsync_emulator.clock import Clock
from sfsync_emulator.emulator import Emulator

from tests.support.aws import create_table, mocked_aws
from tests.support.emulator import salesforce_secret

pytestmark = pytest.mark.functional

START = dt.datetime(2026, 11, 24, 12, 0, 0, tzinfo=dt.UTC)
REGION = "eu-west-1"
TABLE = "sfsync-Account"
ERRORS = "sfsync-errors"
FAKE_ID = "001000000000FAKEAA"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    emulator = Emulator.start(seed=11, records=150, clock=Clock(int(START.timestamp() * 1000), running=False))
    try:
        for i in range(30):
            emulator.org.create("Account", {"Name": f"Verify Co {i:02d}", "Description": "x" * i}, as_api=False)
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def sf(emu: Emulator) -> Iterator[SalesforceClient]:
    with client_from_secret(salesforce_secret(emu)) as client:
        yield client


@pytest.fixture
def ddb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with mocked_aws(monkeypatch, REGION) as client:
        create_table(client, TABLE, "Id")
        create_table(client, ERRORS, "pk", "sk")
        yield client


@pytest.fixture
def writer(ddb: Any, emu: Emulator) -> RecordStoreWriter:
    store = RecordStore(ddb, {"Account": TABLE}, errors_table=ERRORS)
    return RecordStoreWriter(store, ddb, cycle_id="verify-test", now=emu.clock.now)


@pytest.fixture
def reader(ddb: Any) -> DynamoTableReader:
    return DynamoTableReader(TABLE, ddb, page_size=25)  # small pages: the scan must follow LastEvaluatedKey


def item(ddb: Any, record_id: str) -> dict[str, Any] | None:
    raw = ddb.get_item(TableName=TABLE, Key={"Id": {"S": record_id}}, ConsistentRead=True).get("Item")
    de = TypeDeserializer()
    return {k: de.deserialize(v) for k, v in raw.items()} if raw else None


def put(ddb: Any, record_id: str, stamp: str, *, sobject: str = "Account", deleted: bool = False) -> None:
    ddb.put_item(
        TableName=TABLE,
        Item={
            "Id": {"S": record_id},
            "sobject": {"S": sobject},
            "SystemModstamp": {"S": stamp},
            "IsDeleted": {"BOOL": deleted},
            "Name": {"S": "planted"},
        },
    )


def live_account_ids(emu: Emulator) -> list[str]:
    rows = emu.salesforce().query_all("SELECT Id FROM Account ORDER BY Id")["records"]
    return [str(r["Id"]) for r in rows]


def test_given_an_empty_table_when_repaired_then_it_holds_every_account_and_verifies_clean(
    emu: Emulator, sf: SalesforceClient, ddb: Any, reader: DynamoTableReader, writer: RecordStoreWriter
) -> None:
    emu.clock.advance(3600)
    report = verify_object(sf, reader, "Account")
    live = live_account_ids(emu)
    assert report.missing.count == len(live) > 10
    assert report.extra.count == report.stale.count == 0
    assert not report.clean

    repaired = verify_object(sf, reader, "Account", repair=True, writer=writer)
    assert repaired.repaired is not None
    assert repaired.repaired["RecordsCreated"] == len(live)
    after = verify_object(sf, reader, "Account")
    assert after.clean
    assert after.dynamodb_items == len(live)
    stored = item(ddb, live[0])
    assert stored is not None
    assert stored["sobject"] == "Account"
    assert stored["_cycle_id"] == "verify-test"
    assert stored["Name"]  # the full record, not only the compared fields


def test_given_planted_differences_when_verified_then_reported_and_repair_fixes_them(
    emu: Emulator, sf: SalesforceClient, ddb: Any, reader: DynamoTableReader, writer: RecordStoreWriter
) -> None:
    emu.clock.advance(3600)
    verify_object(sf, reader, "Account", repair=True, writer=writer)
    assert verify_object(sf, reader, "Account").clean
    live = live_account_ids(emu)
    missing_id, stale_id, deleted_id = live[1], live[2], live[3]

    ddb.delete_item(TableName=TABLE, Key={"Id": {"S": missing_id}})  # missing
    put(ddb, FAKE_ID, "2026-11-20T00:00:00.000Z")  # extra: unknown to Salesforce
    put(ddb, "003000000000OTHERA", "2026-11-20T00:00:00.000Z", sobject="Contact")  # another object: ignored
    emu.clock.advance(60)
    emu.org.update("Account", stale_id, {"Description": "changed after the copy"}, as_api=False)  # stale
    emu.org.delete("Account", deleted_id, as_api=False)  # extra: deleted in Salesforce
    emu.clock.advance(60)

    report = verify_object(sf, reader, "Account", examples=5)
    assert (report.missing.count, report.extra.count, report.stale.count) == (1, 2, 1)
    assert report.missing.examples == [missing_id]
    assert sorted(report.extra.examples) == sorted([FAKE_ID, deleted_id])
    assert report.stale.examples == [stale_id]
    assert report.api_calls == 1  # one queryAll page of Id, SystemModstamp, IsDeleted
    assert report.to_dict()["clean"] is False

    fixed = verify_object(sf, reader, "Account", repair=True, writer=writer)
    assert fixed.repaired is not None
    assert fixed.repaired["RecordsCreated"] == 1
    assert fixed.repaired["RecordsUpdated"] == 1
    assert fixed.repaired["RecordsDeleted"] == 2  # the Salesforce tombstone and the planted extra

    assert verify_object(sf, reader, "Account").clean
    stale_item, deleted_item, fake_item = item(ddb, stale_id), item(ddb, deleted_id), item(ddb, FAKE_ID)
    assert stale_item is not None and stale_item["Description"] == "changed after the copy"
    assert deleted_item is not None and deleted_item["IsDeleted"] is True and deleted_item["Name"]
    assert fake_item is not None and fake_item["IsDeleted"] is True and fake_item["Name"] == "planted"
    other = item(ddb, "003000000000OTHERA")
    assert other is not None and other["IsDeleted"] is False  # not Account's business


def test_given_an_item_changed_after_the_compare_then_the_tombstone_does_not_overwrite_it(
    ddb: Any, writer: RecordStoreWriter
) -> None:
    put(ddb, FAKE_ID, "2026-11-20T00:00:01.000Z")
    seen_before = StoredState(FAKE_ID, "2026-11-20T00:00:00.000Z", False)
    assert writer.tombstone("Account", [seen_before]) == {"RecordsDeleted": 0, "RecordsSkipped": 1}
    stored = item(ddb, FAKE_ID)
    assert stored is not None and stored["IsDeleted"] is False


def test_given_many_differences_when_sampled_then_about_that_share_is_checked_and_found(
    emu: Emulator, sf: SalesforceClient, ddb: Any, reader: DynamoTableReader
) -> None:
    emu.clock.advance(3600)
    for i in range(60):
        put(ddb, f"001000000000X{i:03d}AA", "2026-11-20T00:00:00.000Z")  # 60 extras
    full = verify_object(sf, reader, "Account")
    assert full.extra.count == 60
    assert full.missing.count == len(live_account_ids(emu)) > 10

    sampled = verify_object(sf, reader, "Account", sample=0.3, rng=random.Random(5))
    assert sampled.sample == 0.3
    assert 0 < sampled.checked_salesforce < full.checked_salesforce
    assert 0 < sampled.checked_dynamodb < full.checked_dynamodb
    assert 0 < sampled.extra.count < full.extra.count
    assert 0 < sampled.missing.count < full.missing.count


def test_given_bad_arguments_then_verify_refuses(sf: SalesforceClient, reader: DynamoTableReader) -> None:
    with pytest.raises(ValueError, match="object name"):
        verify_object(sf, reader, "Account; DROP")
    with pytest.raises(ValueError, match="sample"):
        verify_object(sf, reader, "Account", sample=0)
    with pytest.raises(ValueError, match="writer"):
        verify_object(sf, reader, "Account", repair=True)
    with pytest.raises(ConfigurationError, match="Solution"):
        verify_object(sf, reader, "Solution")


def test_given_items_an_application_created_under_its_own_keys_then_verify_neither_reports_nor_repairs_them(
    emu: Emulator, sf: SalesforceClient, ddb: Any, reader: DynamoTableReader, writer: RecordStoreWriter
) -> None:
    """A local create leaves the application's item under its own key (a redirect, ``_created_id``, once the
    record exists; the pending create before): not a copy of a Salesforce record, so never "extra" (found by
    the chaos runs: verify reported every local create as extra, and --repair tombstoned them)."""
    emu.clock.advance(3600)
    verify_object(sf, reader, "Account", repair=True, writer=writer)
    created = live_account_ids(emu)[0]
    redirect = {"Id": "app-account-1", "sobject": "Account", "_created_id": created, "_local_status": "created"}
    pending = {"Id": "app-account-2", "sobject": "Account", "Name": "Waiting For Salesforce"}
    for planted in (redirect, pending):
        ddb.put_item(TableName=TABLE, Item={k: {"S": v} for k, v in planted.items()})

    for report in (
        verify_object(sf, reader, "Account"),
        verify_object(sf, reader, "Account", sample=0.999, rng=random.Random(3)),
        verify_object(sf, reader, "Account", repair=True, writer=writer),
    ):
        assert (report.missing.count, report.extra.count, report.stale.count) == (0, 0, 0), report.to_dict()
    assert item(ddb, "app-account-1") == redirect
    assert item(ddb, "app-account-2") == pending


class _LeavesKeysUnprocessed:
    """The moto client, except that its first ``times`` BatchGetItem answers leave every key unprocessed (as a
    throttled table does: moto never does it by itself)."""

    def __init__(self, client: Any, times: int) -> None:
        self._client = client
        self.left = times
        self.requests: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_get_item(self, **kwargs: Any) -> dict[str, Any]:
        self.requests.append(kwargs["RequestItems"])
        if self.left:
            self.left -= 1
            return {"Responses": {}, "UnprocessedKeys": kwargs["RequestItems"]}
        return dict(self._client.batch_get_item(**kwargs))


def test_given_a_throttled_table_when_verify_reads_by_id_then_it_pauses_between_attempts_and_reads_consistently(
    ddb: Any,
) -> None:
    """verify's read by id had a BatchGetItem loop of its own that sent unprocessed keys again at once, ten
    times, and read eventually-consistent items.  It now goes through the record tables' one batch read:
    consistent, a growing pause between attempts, and the engine's throttling error when keys stay
    unprocessed."""
    put(ddb, "001A", "2026-11-24T12:00:00.000Z")
    put(ddb, "001B", "2026-11-24T12:00:00.000Z", deleted=True)
    put(ddb, "003C", "2026-11-24T12:00:00.000Z", sobject="Contact")
    pauses: list[float] = []
    throttled = _LeavesKeysUnprocessed(ddb, times=3)
    reader = DynamoTableReader(TABLE, throttled, sleep=pauses.append)

    got = reader.get_many("Account", ["001A", "001B", "003C", "001-missing", "001A"])

    assert got == {
        "001A": StoredState("001A", "2026-11-24T12:00:00.000Z", False),
        "001B": StoredState("001B", "2026-11-24T12:00:00.000Z", True),
    }
    assert len(pauses) == 3 and pauses == sorted(pauses) and pauses[0] > 0
    assert all(r[TABLE]["ConsistentRead"] is True for r in throttled.requests)
    assert len(throttled.requests[0][TABLE]["Keys"]) == 4  # a repeated id is asked once

    always = DynamoTableReader(TABLE, _LeavesKeysUnprocessed(ddb, times=1000), sleep=pauses.append)
    with pytest.raises(StoreThrottled, match="unprocessed"):
        always.get_many("Account", ["001A"])
