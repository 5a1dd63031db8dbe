"""The full copy's batch loader against a moto DynamoDB table: two-way bases, refused rows, pending edits,
clients without the wire hooks, chunks read once."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from sfsync.core.registry import ObjectSpec
from sfsync.items import snapshot
from sfsync.items.csv import FieldTypes, typed_row

pytestmark = pytest.mark.functional


SYNCED = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC)

# -- two-way objects: the copy writes the base snapshot -------------------------------------------

LEAD = ObjectSpec("Lead", "Lead", direction="both")
LEAD_TYPES = FieldTypes(
    booleans=frozenset({"IsDeleted", "IsConverted"}),
    integers=frozenset({"NumberOfEmployees"}),
    floats=frozenset({"AnnualRevenue"}),
    datetimes=frozenset({"SystemModstamp", "CreatedDate"}),
)
LEAD_FIELDS = ("Id", "IsDeleted", "SystemModstamp", "CreatedDate", "LastName", "Title", "IsConverted",
               "NumberOfEmployees", "AnnualRevenue")  # fmt: skip


def lead_row(n: int, **values: str | None) -> dict[str, str | None]:
    row: dict[str, str | None] = {
        "Id": f"00Q{n:015d}",
        "IsDeleted": "false",
        "SystemModstamp": "2026-11-24T12:05:00.000Z",
        "CreatedDate": "2026-11-24T12:00:00.000Z",
        "LastName": f'Name \u00e9 "{n}"',
        "Title": None,
        "IsConverted": "false",
        "NumberOfEmployees": str(n),
        "AnnualRevenue": "2500.0" if n % 2 else "1250.75",
    }
    row.update(values)
    return row


@pytest.fixture
def lead_table() -> Any:
    import boto3
    from moto import mock_aws
    from sfsync.store.records import CLIENT_CONFIG

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1", config=CLIENT_CONFIG)
        keys = {"Lead": ("Id",), "errors": ("pk", "sk")}
        for table, names in keys.items():
            client.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": n, "KeyType": k} for n, k in zip(names, ("HASH", "RANGE"), strict=False)],
                AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in names],
                BillingMode="PAY_PER_REQUEST",
            )
        yield client


def copy_leads(
    client: Any, rows: list[dict[str, str | None]], *, bulk_csv: bool = True, as_lines: bool = False
) -> dict[str, int]:
    """Copy Bulk CSV rows (as dict rows, or ``as_lines``: as csv.reader's lines) or REST rows."""
    from sfsync.store.batch_loader import BatchLoader
    from sfsync.store.records import RecordStore

    records = RecordStore(client, {"Lead": "Lead"}, errors_table="errors", sleep=lambda _s: None)
    loader = BatchLoader(client, records, sleep=lambda _s: None)
    if as_lines:
        header = tuple(rows[0])
        lines = [[row[name] or "" for name in header] for row in rows]
        return loader.write_lines(
            LEAD, header, lines, copy_id="copy-1", synced_at=SYNCED, types=LEAD_TYPES, selected_fields=LEAD_FIELDS
        )
    source = rows if bulk_csv else [typed_row(r, LEAD_TYPES) for r in rows]
    return loader.write(
        LEAD,
        source,
        copy_id="copy-1",
        synced_at=SYNCED,
        types=LEAD_TYPES,
        bulk_csv=bulk_csv,
        selected_fields=LEAD_FIELDS,
    )


def stored_leads(client: Any) -> dict[str, dict[str, Any]]:
    from boto3.dynamodb.types import TypeDeserializer

    de = TypeDeserializer()
    items = client.scan(TableName="Lead", ConsistentRead=True)["Items"]
    return {item["Id"]["S"]: {k: de.deserialize(v) for k, v in item.items()} for item in items}


LINES = pytest.mark.parametrize("as_lines", [False, True], ids=["dict-rows", "csv-lines"])


@pytest.mark.parametrize(
    ("bulk_csv", "as_lines"), [(True, False), (True, True), (False, False)], ids=["bulk-csv", "bulk-lines", "rest"]
)
def test_given_a_two_way_object_when_copied_then_every_item_carries_its_base_and_no_local_change(
    lead_table: Any, bulk_csv: bool, as_lines: bool
) -> None:
    rows = [lead_row(n) for n in range(1, 31)]
    rows[3]["CreatedDate"] = "2026-11-24T12:00:00.000+0000"  # not in the stored form: the general path
    rows[4]["IsConverted"] = "TRUE"  # not plain: the general path
    rows[6]["LastName"] = "Plain ASCII"  # no escape needed: the one-format path

    counts = copy_leads(lead_table, rows, bulk_csv=bulk_csv, as_lines=as_lines)

    assert counts["RecordsCreated"] == 30 and counts["RecordsFailed"] == 0
    items = stored_leads(lead_table)
    assert len(items) == 30
    for item in items.values():
        assert item["_base"] == snapshot.encode_base(item)
        assert snapshot.local_changes(item) == {}
    assert snapshot.base_of(items["00Q000000000000004"]) == {
        **{k: v for k, v in lead_row(4).items() if v is not None},
        "IsDeleted": False,
        "IsConverted": False,
        "NumberOfEmployees": 4,
        "AnnualRevenue": Decimal("1250.75"),
    }


def test_given_a_copy_of_a_one_way_object_when_written_then_items_have_no_base(lead_table: Any) -> None:
    from sfsync.store.batch_loader import BatchLoader
    from sfsync.store.records import RecordStore

    one_way = ObjectSpec("Lead", "Lead")
    records = RecordStore(lead_table, {"Lead": "Lead"}, errors_table="errors", sleep=lambda _s: None)
    counts = BatchLoader(lead_table, records, sleep=lambda _s: None).write(
        one_way, [lead_row(1)], copy_id="copy-1", synced_at=SYNCED, types=LEAD_TYPES, bulk_csv=True
    )
    assert counts["RecordsCreated"] == 1
    assert "_base" not in stored_leads(lead_table)["00Q000000000000001"]


@LINES
def test_given_rows_the_item_rules_refuse_when_copied_then_they_fail_alone_and_the_reason_is_recorded(
    lead_table: Any, as_lines: bool
) -> None:
    rows = [
        lead_row(1),
        lead_row(2, NumberOfEmployees="1" * 39),  # beyond DynamoDB's 38 digits
        lead_row(3, AnnualRevenue="1e200"),  # beyond DynamoDB's range
        lead_row(4, LastName="x" * (410 * 1024)),  # beyond the 400 KB item limit
        lead_row(5, CreatedDate="not a date"),
        lead_row(6, NumberOfEmployees="12 people"),  # not a number: kept as Salesforce sent it
    ]
    counts = copy_leads(lead_table, rows, as_lines=as_lines)

    assert counts["RecordsCreated"] == 2 and counts["RecordsFailed"] == 4
    items = stored_leads(lead_table)
    assert sorted(items) == ["00Q000000000000001", "00Q000000000000006"]
    assert items["00Q000000000000006"]["NumberOfEmployees"] == "12 people"
    reasons = {i["record_id"]["S"]: i["reason"]["S"] for i in lead_table.scan(TableName="errors")["Items"]}
    assert "range/precision" in reasons["00Q000000000000002"] and "range/precision" in reasons["00Q000000000000003"]
    assert "400 KB" in reasons["00Q000000000000004"] and "CreatedDate" in reasons["00Q000000000000005"]


@LINES
def test_given_a_page_that_repeats_an_id_when_copied_then_its_newest_version_is_stored_once(
    lead_table: Any, as_lines: bool
) -> None:
    """A result set can hold a record twice (it changed while the job ran): within one batch of rows,
    across batches, and next to a refused row, the version with the newest stamp wins."""
    older, newer = "2026-11-24T12:05:00.000Z", "2026-11-24T12:09:00.000Z"
    rows = [lead_row(n) for n in range(1, 251)]
    rows[10] = lead_row(5, SystemModstamp=newer, Title="newer in the same batch")  # row 5 again, later
    rows[150] = lead_row(20, SystemModstamp=older, Title="older, in a later batch")  # loses to row 20
    rows[20 - 1] = lead_row(20, SystemModstamp=newer, Title="newer, first")
    rows[160] = lead_row(161, NumberOfEmployees="1" * 39)  # refused, in the same batch as a repeat
    rows[170] = lead_row(5, SystemModstamp=older, Title="older, in a later batch")  # loses to rows[10]
    counts = copy_leads(lead_table, rows, as_lines=as_lines)

    items = stored_leads(lead_table)
    assert items["00Q000000000000005"]["Title"] == "newer in the same batch"
    assert items["00Q000000000000020"]["Title"] == "newer, first"
    ids = {row["Id"] for row in rows} - {"00Q000000000000161"}
    assert set(items) == ids
    assert counts["RecordsFailed"] == 1
    # a repeat already queued is replaced in the queue; one already written goes through the store's rule
    # the repeat within a batch replaces the queued row; the two older repeats of rows already written
    # are skipped by the store's rule
    assert (counts["RecordsCreated"], counts["RecordsSkipped"]) == (len(ids), 2)


@LINES
def test_given_a_pending_local_edit_when_the_copy_rereads_the_same_row_then_the_edit_survives(
    lead_table: Any, as_lines: bool
) -> None:
    copy_leads(lead_table, [lead_row(1), lead_row(2)], as_lines=as_lines)
    for n in (1, 2):  # an application edits both items (never touching _base)
        lead_table.update_item(
            TableName="Lead",
            Key={"Id": {"S": f"00Q{n:015d}"}},
            UpdateExpression="SET Title = :t",
            ExpressionAttributeValues={":t": {"S": "Edited locally"}},
        )
    # a resumed copy re-reads row 1 unchanged; row 2 changed in Salesforce since
    changed = lead_row(2, LastName="Renamed", SystemModstamp="2026-11-24T12:09:00.000Z")

    counts = copy_leads(lead_table, [lead_row(1), changed], as_lines=as_lines)

    items = stored_leads(lead_table)
    kept = items["00Q000000000000001"]
    assert kept["Title"] == "Edited locally" and set(snapshot.local_changes(kept)) == {"Title"}
    assert counts["RecordsSkipped"] == 1 and counts["RecordsUpdated"] == 1
    rewritten = items["00Q000000000000002"]
    assert rewritten["LastName"] == "Renamed" and "Title" not in rewritten
    assert snapshot.local_changes(rewritten) == {}


class _PlainClient:
    """A DynamoDB client without botocore's event system (no ``meta``): the loader sends plain requests."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[str] = []

    def batch_get_item(self, **kwargs: Any) -> Any:
        self.calls.append("batch_get_item")
        return self._client.batch_get_item(**kwargs)

    def batch_write_item(self, **kwargs: Any) -> Any:
        self.calls.append("batch_write_item")
        return self._client.batch_write_item(**kwargs)


def test_given_a_client_without_wire_hooks_when_a_copy_is_written_then_the_same_items_are_stored(
    lead_table: Any,
) -> None:
    from sfsync.store.batch_loader import BatchLoader
    from sfsync.store.records import RecordStore

    plain = _PlainClient(lead_table)
    records = RecordStore(lead_table, {"Lead": "Lead"}, errors_table="errors", sleep=lambda _s: None)
    rows = [lead_row(n) for n in range(1, 31)]
    counts = BatchLoader(plain, records, sleep=lambda _s: None).write(
        LEAD, rows, copy_id="copy-1", synced_at=SYNCED, types=LEAD_TYPES, bulk_csv=True, selected_fields=LEAD_FIELDS
    )

    assert counts["RecordsCreated"] == 30 and plain.calls.count("batch_write_item") == 2
    items = stored_leads(lead_table)
    assert len(items) == 30
    assert all(item["_base"] == snapshot.encode_base(item) for item in items.values())


@LINES
def test_given_a_re_synced_copy_when_every_row_is_stored_then_each_chunk_is_read_once(
    lead_table: Any, as_lines: bool
) -> None:
    reads: list[int] = []

    def count(request: Any, **_kw: Any) -> None:
        reads.append(len(json.loads(request.body)["RequestItems"]["Lead"]["Keys"]))

    rows = [lead_row(n) for n in range(1, 151)]
    assert copy_leads(lead_table, rows, as_lines=as_lines)["RecordsCreated"] == 150
    lead_table.meta.events.register_first("before-send.dynamodb.BatchGetItem", count)
    changed = [lead_row(n, LastName=f"Renamed {n}", SystemModstamp="2026-11-24T12:09:00.000Z") for n in range(1, 151)]
    counts = copy_leads(lead_table, changed, as_lines=as_lines)

    assert counts["RecordsUpdated"] == 150
    assert reads == [100, 50]  # one read of each chunk, shared by the existence check and the write rule
    assert all(item["LastName"].startswith("Renamed") for item in stored_leads(lead_table).values())
