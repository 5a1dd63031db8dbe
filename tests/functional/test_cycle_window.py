"""The cycle's window, checkpoint and persistence rules, with a scripted Salesforce and moto DynamoDB."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import boto3
import pytest
from sfsync.core.clock import UTC, FixedClock, to_iso_ms
from sfsync.core.config import Settings, load_settings
from sfsync.core.exceptions import ConfigurationError, SalesforceUnavailable, StoreThrottled
from sfsync.core.registry import FAMILIES, ObjectSpec, build_registry
from sfsync.core.window import Checkpoint, Position, WindowPlan
from sfsync.inbound.cycle import CycleStores, build_soql, run_object_cycle, select_fields
from sfsync.store.copies import CopyStore
from sfsync.store.put_rules import classify
from sfsync.store.records import MAX_ITEM_BYTES, RecordStore
from sfsync.store.state import StateStore

from tests.support.aws import create_table, mocked_aws

pytestmark = pytest.mark.functional

REGION = "eu-west-1"
T0 = dt.datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
ACCOUNT = build_registry(["Account"]).get("Account")


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def sf_stamp(when: dt.datetime) -> str:
    """REST form: ``2026-11-24T12:00:00.000+0000``."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}+0000"


def field(name: str, type_: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "calculated": False, "compoundFieldName": None, **extra}


DESCRIBE: dict[str, Any] = {
    "name": "Account",
    "fields": [
        field("Id", "id"),
        field("IsDeleted", "boolean"),
        field("Name", "string"),
        field("OwnerId", "reference"),
        field("BillingAddress", "address"),
        field("BillingCity", "string", compoundFieldName="BillingAddress"),
        field("AnnualRevenue", "currency"),
        field("NumberOfEmployees", "int"),
        field("Score__c", "double", calculated=True),
        field("LastModifiedDate", "datetime"),
        field("SystemModstamp", "datetime"),
    ],
}


def account(n: int, stamp: dt.datetime, **values: Any) -> dict[str, Any]:
    record_id = f"001000000000{n:03d}AAA"
    row: dict[str, Any] = {
        "attributes": {"type": "Account", "url": f"/services/data/v59.0/sobjects/Account/{record_id}"},
        "Id": record_id,
        "IsDeleted": False,
        "Name": f"Account {n}",
        "OwnerId": "005000000000001AAA",
        "BillingAddress": {"city": "Lyon", "street": None},
        "BillingCity": "Lyon",
        "AnnualRevenue": 1250.5,
        "NumberOfEmployees": 12,
        "LastModifiedDate": sf_stamp(stamp),
        "SystemModstamp": sf_stamp(stamp),
    }
    row.update(values)
    return row


@dataclass
class Page:
    records: list[dict[str, Any]]
    total_size: int
    next_url: str | None
    done: bool


class ScriptedSalesforce:
    """Serves scripted pages for each query; an Exception in the script is raised at that page."""

    def __init__(self, *scripts: list[Any], server_time: dt.datetime | None = None) -> None:
        self.scripts = list(scripts)
        self.queries: list[str] = []
        self.calls_made = 0
        self._server_time = server_time
        self.lifecycle_queries: list[str] = []
        self.deleted_calls: list[tuple[dt.datetime, dt.datetime]] = []

    def bulk_query_create(self, soql: str, *, operation: str = "queryAll") -> dict[str, Any]:
        raise AssertionError("no Bulk job is scripted")

    def bulk_job_status(self, job_id: str) -> dict[str, Any]:
        raise AssertionError("no Bulk job is scripted")

    def bulk_results_pages(self, job_id: str, *, max_records: int = 50000, locator: str | None = None) -> Iterator[Any]:
        raise AssertionError("no Bulk job is scripted")

    def get_deleted(self, obj: str, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        self.calls_made += 1
        self.deleted_calls.append((start, end))
        return {"deletedRecords": [], "earliestDateAvailable": sf_stamp(T0 - dt.timedelta(days=15))}

    def describe(self, obj: str) -> dict[str, Any]:
        self.calls_made += 1
        return DESCRIBE

    def server_time(self) -> dt.datetime | None:
        return self._server_time

    def query_pages(self, soql: str, *, include_deleted: bool = True, batch_size: int = 2000) -> Iterator[Page]:
        assert include_deleted, "cycles must read with queryAll"
        self.queries.append(soql)
        if "ORDER BY" not in soql:  # lifecycle passes (formula refresh, back-fill): nothing scripted
            self.lifecycle_queries.append(self.queries.pop())
            self.calls_made += 1
            yield Page([], 0, None, True)
            return
        script = self.scripts.pop(0) if self.scripts else [[]]
        pages = [p for p in script if not isinstance(p, Exception)]
        total = sum(len(p) for p in pages)
        for index, page in enumerate(script):
            self.calls_made += 1
            if isinstance(page, Exception):
                raise page
            last = index == len(script) - 1
            yield Page(page, total, None if last else f"/services/data/v59.0/query/01g-{index}", last)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with mocked_aws(monkeypatch, REGION) as client:
        for name, keys in (("state", ("pk", "sk")), ("errors", ("pk", "sk")), ("accounts", ("Id",))):
            create_table(client, name, *keys)
        yield client


@pytest.fixture
def settings() -> Settings:
    return load_settings(
        {
            "SFSYNC_STATE_TABLE": "state",
            "SFSYNC_ERRORS_TABLE": "errors",
            "SFSYNC_RECORD_TABLES": json.dumps({f: "accounts" for f in FAMILIES}),
            "SFSYNC_OBJECTS": "Account",
        }
    )


@pytest.fixture
def stores(aws: Any) -> CycleStores:
    return CycleStores(
        StateStore("state", region=REGION), RecordStore(aws, {"Account": "accounts"}, errors_table="errors")
    )


def run(settings: Settings, sf: ScriptedSalesforce, stores: CycleStores, clock: FixedClock, cycle_id: str, **kw: Any):
    return run_object_cycle("Account", cycle_id, settings=settings, sf=sf, store=stores, now=clock, **kw)


# -- SOQL and field selection ---------------------------------------------------------------------


def test_select_skips_compound_and_formula_fields_and_keeps_components() -> None:
    selection = select_fields(ACCOUNT, DESCRIBE)
    assert "BillingAddress" not in selection.fields
    assert "Score__c" not in selection.fields
    assert {"Id", "SystemModstamp", "IsDeleted", "BillingCity", "OwnerId"} <= set(selection.fields)
    assert selection.datetime_fields == {"LastModifiedDate", "SystemModstamp"}


def test_select_honours_include_and_exclude_and_validates_against_describe() -> None:
    spec = ObjectSpec("Account", "Account", include_fields=("Name", "Score__c"), include_formulas=True)
    assert set(select_fields(spec, DESCRIBE).fields) == {"Id", "SystemModstamp", "IsDeleted", "Name", "Score__c"}
    # an unreadable include-field is reported (warned about by the cycle), the rest is still selected
    partly = select_fields(ObjectSpec("Account", "Account", include_fields=("Hidden__c", "Name")), DESCRIBE)
    assert partly.unreadable == ("Hidden__c",)
    assert set(partly.fields) == {"Id", "SystemModstamp", "IsDeleted", "Name"}
    with pytest.raises(ConfigurationError, match="SystemModstamp"):
        select_fields(ObjectSpec("Account", "Account", exclude_fields=("SystemModstamp",)), DESCRIBE)


def test_given_no_cursor_visible_when_selecting_then_configuration_error() -> None:
    hidden = {"fields": [f for f in DESCRIBE["fields"] if f["name"] != "SystemModstamp"]}
    with pytest.raises(ConfigurationError, match="SystemModstamp"):
        select_fields(ACCOUNT, hidden)


def test_soql_is_a_half_open_window_ordered_by_stamp_then_id() -> None:
    soql = build_soql(ACCOUNT, ["Id", "Name", "SystemModstamp"], WindowPlan(at(-600), at(3540)))
    assert soql == (
        "SELECT Id, Name, SystemModstamp FROM Account WHERE SystemModstamp >= 2026-11-24T11:50:00.000Z"
        " AND SystemModstamp < 2026-11-24T12:59:00.000Z ORDER BY SystemModstamp, Id"
    )


def test_soql_resumes_after_the_last_row_with_equal_stamps_ordered_by_id() -> None:
    plan = WindowPlan(at(0), at(100), Position(at(50), "001000000000007AAA"))
    soql = build_soql(ACCOUNT, ["Id"], plan)
    assert (
        "AND (SystemModstamp > 2026-11-24T12:00:50.000Z OR (SystemModstamp = 2026-11-24T12:00:50.000Z"
        " AND Id > '001000000000007AAA'))" in soql
    )


def test_soql_refuses_a_malformed_checkpoint_id() -> None:
    with pytest.raises(ValueError, match="malformed"):
        build_soql(ACCOUNT, ["Id"], WindowPlan(at(0), at(1), Position(at(0), "x' OR Name != '")))


# -- cycles --------------------------------------------------------------------------------------------


def test_given_two_pages_when_the_cycle_completes_then_rows_stored_and_watermark_is_hi(
    settings: Settings, stores: CycleStores
) -> None:
    clock = FixedClock(at(3600))
    sf = ScriptedSalesforce([[account(1, at(10)), account(2, at(20))], [account(3, at(20), IsDeleted=True)]])
    result = run(settings, sf, stores, clock, "c1")
    assert result.status == "complete"
    assert result.counts["RecordsRead"] == 3
    assert (result.counts["RecordsCreated"], result.counts["RecordsDeleted"]) == (2, 1)
    # describe + two pages + the first formula refresh (Score__c is a formula field)
    assert len(sf.lifecycle_queries) == 1
    assert result.counts["ApiCalls"] == 4
    assert stores.state.get_watermark("Account").value == at(3600 - 60)
    assert stores.state.get_checkpoint("Account") is None
    lease = stores.state.lease_status("Account")
    assert lease.holder is None and lease.last_status == "complete" and lease.last_ended_at == at(3600)
    assert "SystemModstamp >= 1970-01-01T00:00:00.000Z" in sf.queries[0]  # never copied: from the epoch
    assert [c.cycle_id for c in stores.state.recent_cycles("Account")] == ["c1"]
    item = stores.records.get(ACCOUNT, "001000000000003AAA")
    assert item is not None and item["IsDeleted"] is True


def test_given_a_watermark_when_the_next_cycle_runs_then_it_reads_from_watermark_minus_overlap(
    settings: Settings, stores: CycleStores
) -> None:
    clock = FixedClock(at(3600))
    run(settings, ScriptedSalesforce([[account(1, at(10))]]), stores, clock, "c1")
    clock.advance(600)
    sf = ScriptedSalesforce([[account(1, at(10))]], server_time=at(4300))
    result = run(settings, sf, stores, clock, "c2")
    assert f"SystemModstamp >= {to_iso_ms(at(3540 - 600))}" in sf.queries[0]
    assert f"SystemModstamp < {to_iso_ms(at(4300 - 60))}" in sf.queries[0]  # Salesforce's clock wins
    assert result.counts["RecordsSkipped"] == 1  # the overlap replay changed nothing
    assert stores.state.get_watermark("Account").value == at(4240)


def test_given_a_failure_on_page_two_when_cycling_then_watermark_stays_and_the_next_cycle_resumes(
    settings: Settings, stores: CycleStores
) -> None:
    clock = FixedClock(at(3600))
    page1 = [account(1, at(10)), account(2, at(20))]
    sf = ScriptedSalesforce([page1, SalesforceUnavailable("503 from Salesforce", status=503)])
    with pytest.raises(SalesforceUnavailable):
        run(settings, sf, stores, clock, "c1")
    assert stores.state.get_watermark("Account").value is None
    checkpoint = stores.state.get_checkpoint("Account")
    assert checkpoint is not None
    assert checkpoint.last == Position(at(20), "001000000000002AAA")
    assert stores.state.lease_status("Account").holder is None
    assert stores.state.lease_status("Account").last_status == "failed"

    clock.advance(400)
    # two rows share the last persisted stamp: only the one after the checkpoint's Id is still to read
    sf2 = ScriptedSalesforce([[account(5, at(20)), account(6, at(30))]])
    result = run(settings, sf2, stores, clock, "c2")
    assert "(SystemModstamp > 2026-11-24T12:00:20.000Z OR (SystemModstamp = 2026-11-24T12:00:20.000Z" in sf2.queries[0]
    assert "Id > '001000000000002AAA'" in sf2.queries[0]
    assert f"SystemModstamp < {to_iso_ms(at(3540))}" in sf2.queries[0]  # the original window's hi
    assert result.status == "complete"
    assert stores.state.get_watermark("Account").value == at(3540)


def test_given_little_time_left_when_more_pages_remain_then_the_cycle_stops_with_a_checkpoint(
    settings: Settings, stores: CycleStores
) -> None:
    clock = FixedClock(at(3600))
    sf = ScriptedSalesforce([[account(1, at(10))], [account(2, at(20))], [account(3, at(30))]])
    result = run(settings, sf, stores, clock, "c1", time_left_ms=lambda: 1_000)
    assert result.status == "partial"
    assert result.backlog == 2
    assert stores.state.get_watermark("Account").value is None
    assert stores.state.get_checkpoint("Account").last == Position(at(10), "001000000000001AAA")  # type: ignore[union-attr]
    assert stores.state.lease_status("Account").resume_pending


def test_given_a_held_lease_when_cycling_then_nothing_is_read(settings: Settings, stores: CycleStores) -> None:
    clock = FixedClock(at(3600))
    stores.state.acquire_lease("Account", "other", now=at(3590), ttl_seconds=600)
    sf = ScriptedSalesforce([[account(1, at(10))]])
    result = run(settings, sf, stores, clock, "c1")
    assert (result.status, result.held_by) == ("lease-held", "other")
    assert sf.calls_made == 0
    assert stores.records.get(ACCOUNT, "001000000000001AAA") is None


def test_given_now_inside_the_lag_when_cycling_then_the_window_is_empty_and_nothing_moves(
    settings: Settings, stores: CycleStores
) -> None:
    stores.state.set_full_copy_watermark("Account", at(3590), by="full")
    sf = ScriptedSalesforce(server_time=at(3600))
    result = run(settings, sf, stores, FixedClock(at(3600)), "c1")
    assert result.status == "empty"
    assert sf.queries == []
    assert stores.state.get_watermark("Account").value == at(3590)


# -- record writes -------------------------------------------------------------------------------------


def write(stores: CycleStores, *rows: dict[str, Any], cycle: str = "c") -> dict[str, int]:
    return stores.records.write_page(
        ACCOUNT, list(rows), cycle_id=cycle, synced_at=at(0), datetime_fields={"SystemModstamp", "LastModifiedDate"}
    ).counts


def test_item_shape_drops_attributes_compounds_and_nulls_and_uses_decimals(stores: CycleStores) -> None:
    write(stores, account(1, at(10), Name=None))
    item = stores.records.get(ACCOUNT, "001000000000001AAA")
    assert item is not None
    assert "attributes" not in item and "BillingAddress" not in item and "Name" not in item
    assert item["BillingCity"] == "Lyon"
    assert item["AnnualRevenue"] == Decimal("1250.5") and item["NumberOfEmployees"] == Decimal(12)
    assert item["SystemModstamp"] == "2026-11-24T12:00:10.000Z"
    assert item["LastModifiedDate"] == "2026-11-24T12:00:10.000Z"
    assert (item["sobject"], item["IsDeleted"], item["_cycle_id"]) == ("Account", False, "c")


def test_an_older_version_never_overwrites_a_newer_one(stores: CycleStores) -> None:
    write(stores, account(1, at(20), Name="new"))
    counts = write(stores, account(1, at(10), Name="old"))
    assert counts["RecordsSkipped"] == 1
    assert stores.records.get(ACCOUNT, "001000000000001AAA")["Name"] == "new"  # type: ignore[index]


def test_the_write_condition_holds_when_a_newer_version_lands_after_the_pre_read(
    aws: Any, stores: CycleStores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A race with the full copy: the stored version changes between the batch read and the put."""
    write(stores, account(1, at(10), Name="v1"))
    records = stores.records
    stale_read = records.stored_wire

    def read_then_race(table: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        seen = stale_read(table, ids)
        monkeypatch.setattr(records, "stored_wire", stale_read)
        write(stores, account(1, at(30), Name="v3"), cycle="full-copy")
        return seen

    monkeypatch.setattr(records, "stored_wire", read_then_race)
    counts = write(stores, account(1, at(20), Name="v2"))
    assert counts["RecordsSkipped"] == 1
    assert records.get(ACCOUNT, "001000000000001AAA")["Name"] == "v3"  # type: ignore[index]


def test_an_equal_stamp_replay_is_harmless_and_an_equal_stamp_change_is_applied(stores: CycleStores) -> None:
    write(stores, account(1, at(20), Name="a"))
    assert write(stores, account(1, at(20), Name="a"), cycle="replay")["RecordsSkipped"] == 1
    # the replay wrote nothing (no write capacity, no stream event): the item is the first cycle's
    assert stores.records.get(ACCOUNT, "001000000000001AAA")["_cycle_id"] == "c"  # type: ignore[index]
    assert write(stores, account(1, at(20), Name="b"))["RecordsUpdated"] == 1
    assert stores.records.get(ACCOUNT, "001000000000001AAA")["Name"] == "b"  # type: ignore[index]


def test_a_delete_becomes_a_tombstone_and_an_undelete_revives_it(stores: CycleStores) -> None:
    write(stores, account(1, at(10)))
    assert write(stores, account(1, at(20), IsDeleted=True))["RecordsDeleted"] == 1
    assert stores.records.get(ACCOUNT, "001000000000001AAA")["IsDeleted"] is True  # type: ignore[index]
    assert write(stores, account(1, at(30)))["RecordsUpdated"] == 1
    assert stores.records.get(ACCOUNT, "001000000000001AAA")["IsDeleted"] is False  # type: ignore[index]


def test_unstorable_rows_go_to_the_errors_table_and_the_page_goes_on(aws: Any, stores: CycleStores) -> None:
    huge = account(1, at(10), Name="x" * (MAX_ITEM_BYTES + 10))
    nan = account(2, at(10), AnnualRevenue=float("nan"))
    fine = account(3, at(10))
    counts = write(stores, huge, nan, fine)
    assert (counts["RecordsFailed"], counts["RecordsCreated"]) == (2, 1)
    errors = aws.query(
        TableName="errors", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "ERRORS#Account"}}
    )["Items"]
    reasons = sorted(e["reason"]["S"] for e in errors)
    assert len(reasons) == 2
    assert any("400 KB" in r for r in reasons) and any("non-finite" in r for r in reasons)


def test_classify_ignores_the_engine_bookkeeping_attributes() -> None:
    old = {"Id": "1", "Name": "a", "IsDeleted": False, "_synced_at": "x", "_cycle_id": "c1"}
    assert classify(old, {**old, "_synced_at": "y", "_cycle_id": "c2"}) == "skipped"
    assert classify(None, {**old, "IsDeleted": True}) == "deleted"
    assert classify(old, {**old, "Name": "b"}) == "updated"


def test_checkpoint_is_a_value_object() -> None:
    assert Checkpoint("c", at(0), at(1)) == Checkpoint("c", at(0), at(1))


def test_persistent_throttling_fails_the_page_with_store_throttled() -> None:
    from botocore.stub import Stubber

    client = boto3.client("dynamodb", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    store = RecordStore(client, {"Account": "accounts"}, errors_table="errors")
    with Stubber(client) as stub:
        stub.add_response("batch_get_item", {"Responses": {"accounts": []}})
        stub.add_client_error("put_item", service_error_code="ProvisionedThroughputExceededException")
        with pytest.raises(StoreThrottled):
            store.write_page(ACCOUNT, [account(1, at(10))], cycle_id="c", synced_at=at(0))


def test_given_throttling_on_page_two_when_cycling_then_the_checkpoint_stays_at_page_one(
    settings: Settings, stores: CycleStores, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = stores.records.write_page
    calls = {"n": 0}

    def flaky_write(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise StoreThrottled("accounts kept throttling writes")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(stores.records, "write_page", flaky_write)
    sf = ScriptedSalesforce([[account(1, at(10))], [account(2, at(20))]])
    with pytest.raises(StoreThrottled):
        run(settings, sf, stores, FixedClock(at(3600)), "c1")
    assert stores.state.get_watermark("Account").value is None
    assert stores.state.get_checkpoint("Account").last == Position(at(10), "001000000000001AAA")  # type: ignore[union-attr]
    assert stores.state.recent_cycles("Account")[0].status == "failed"


class RevalidatingSalesforce:
    """describe + describe_if_modified (None = 304) with a metadata change time."""

    def __init__(self, changed_at: dt.datetime) -> None:
        self.changed_at = changed_at
        self.full = 0
        self.conditional = 0

    def describe(self, obj: str) -> dict[str, Any]:
        self.full += 1
        return {"name": obj, "version": self.changed_at.isoformat()}

    def describe_if_modified(self, obj: str, since: dt.datetime) -> dict[str, Any] | None:
        self.conditional += 1
        return None if since >= self.changed_at else self.describe(obj)


def test_given_an_adapter_with_conditional_describe_when_cycles_repeat_then_describe_is_revalidated() -> None:
    from sfsync.inbound.fields import DescribeCache

    cache = DescribeCache()
    sf = RevalidatingSalesforce(changed_at=at(0))
    first = cache.describe(sf, "Account", now=at(1000))  # revalidated from 5 min before our clock
    assert cache.describe(sf, "Account", now=at(2000)) == first
    assert (sf.full, sf.conditional) == (1, 1)
    sf.changed_at = at(3000)  # a permission change
    changed = cache.describe(sf, "Account", now=at(4000))
    assert changed["version"] == at(3000).isoformat()
    assert (sf.full, sf.conditional) == (2, 2)


def test_given_an_adapter_without_conditional_describe_when_cycles_repeat_then_every_cycle_describes() -> None:
    from sfsync.inbound.fields import DescribeCache

    sf = ScriptedSalesforce()
    cache = DescribeCache()
    cache.describe(sf, "Account", now=at(0))
    cache.describe(sf, "Account", now=at(10))
    assert sf.calls_made == 2


def test_given_lifecycle_bookkeeping_when_asking_if_work_is_due_then_formulas_and_reconciles_are_reported() -> None:
    from sfsync.inbound.lifecycle import lifecycle_work_due
    from sfsync.store.state import Lifecycle

    member = build_registry(["CampaignMember"]).get("CampaignMember")
    due = lambda spec, lc, now: lifecycle_work_due(  # noqa: E731
        spec, lc, now=now, formula_refresh_seconds=600, reconcile_seconds=3600
    )
    assert due(ACCOUNT, Lifecycle(), at(0)) is None, "an object never refreshed has no formulas to refresh"
    assert due(ACCOUNT, Lifecycle(formulas_refreshed_at=at(0)), at(599)) is None
    assert due(ACCOUNT, Lifecycle(formulas_refreshed_at=at(0)), at(600)) == "formula refresh due"
    assert due(ACCOUNT, Lifecycle(reconciled_at=at(0)), at(7200)) is None, "Accounts have a recycle bin"
    assert due(member, Lifecycle(reconciled_at=at(0)), at(3600)) == "id reconciliation due"


# -- the exclusive writer: batched pages only when no full copy is under way ------------------------


def count_write_paths(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the puts of each path (the real methods still run)."""
    seen = {"batched": 0, "conditional": 0}
    batch_put, put = RecordStore._batch_put, RecordStore._put

    def counted_batch(self: RecordStore, table: str, items: list[dict[str, Any]]) -> bool:
        seen["batched"] += len(items)
        return batch_put(self, table, items)

    def counted_put(self: RecordStore, table: str, item: dict[str, Any]) -> Any:
        seen["conditional"] += 1
        return put(self, table, item)

    monkeypatch.setattr(RecordStore, "_batch_put", counted_batch)
    monkeypatch.setattr(RecordStore, "_put", counted_put)
    return seen


@pytest.mark.parametrize(
    ("copy_status", "with_copies", "batched"),
    [
        (None, True, True),  # never fully copied by the workflow: nothing else writes
        ("done", True, True),
        ("running", True, False),  # a full copy may write newer versions of the same rows
        ("failed", True, False),  # a failed copy waits to be resumed
        (None, False, False),  # without the copy documents nothing proves the cycle is alone
    ],
)
def test_given_the_full_copy_state_when_cycling_then_pages_are_batched_only_when_the_cycle_is_the_only_writer(
    aws: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    copy_status: str | None,
    with_copies: bool,
    batched: bool,
) -> None:
    if copy_status is not None:
        aws.put_item(
            TableName="state",
            Item={"pk": {"S": "OBJECT#Account"}, "sk": {"S": "FULLCOPY"}, "status": {"S": copy_status}},
        )
    stores = CycleStores(
        StateStore("state", region=REGION),
        RecordStore(aws, {"Account": "accounts"}, errors_table="errors"),
        CopyStore(aws, "state") if with_copies else None,
    )
    seen = count_write_paths(monkeypatch)
    sf = ScriptedSalesforce([[account(1, at(10)), account(2, at(20))], [account(3, at(20), IsDeleted=True)]])
    result = run(settings, sf, stores, FixedClock(at(3600)), "c1")
    assert result.status == "complete"
    assert (result.counts["RecordsCreated"], result.counts["RecordsDeleted"]) == (2, 1)
    assert seen == ({"batched": 3, "conditional": 0} if batched else {"batched": 0, "conditional": 3})
    item = stores.records.get(ACCOUNT, "001000000000003AAA")
    assert item is not None and item["IsDeleted"] is True


def test_given_a_full_copy_starting_mid_cycle_when_the_next_page_is_written_then_it_is_conditional(
    aws: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    stores = CycleStores(
        StateStore("state", region=REGION),
        RecordStore(aws, {"Account": "accounts"}, errors_table="errors"),
        CopyStore(aws, "state"),
    )
    seen = count_write_paths(monkeypatch)
    start_copy = {"pk": {"S": "OBJECT#Account"}, "sk": {"S": "FULLCOPY"}, "status": {"S": "running"}}
    original = stores.state.save_checkpoint

    def copy_starts_after_page_one(name: str, checkpoint: Checkpoint, **kw: Any) -> None:
        original(name, checkpoint, **kw)
        if checkpoint.records_done == 2:
            aws.put_item(TableName="state", Item=start_copy)

    monkeypatch.setattr(stores.state, "save_checkpoint", copy_starts_after_page_one)
    sf = ScriptedSalesforce([[account(1, at(10)), account(2, at(20))], [account(3, at(30))]])
    assert run(settings, sf, stores, FixedClock(at(3600)), "c1").status == "complete"
    assert seen == {"batched": 2, "conditional": 1}


def test_given_an_unordered_page_when_persisted_then_the_checkpoint_is_its_greatest_row(
    settings: Settings, stores: CycleStores
) -> None:
    page1 = [account(3, at(20)), account(1, at(10)), account(2, at(20)), account(4, at(5))]
    sf = ScriptedSalesforce([page1, SalesforceUnavailable("503 from Salesforce", status=503)])
    with pytest.raises(SalesforceUnavailable):
        run(settings, sf, stores, FixedClock(at(3600)), "c1")
    checkpoint = stores.state.get_checkpoint("Account")
    assert checkpoint is not None and checkpoint.records_done == 4
    assert checkpoint.last == Position(at(20), "001000000000003AAA")
