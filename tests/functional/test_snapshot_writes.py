"""The base snapshot (``_base``) on every engine write of a two-way item, against moto.

Covers the record store's write paths (conditional put, batched put, formula/back-fill patches,
tombstones from getDeleted / reconciliation and from ``sfsync verify``) and the replay rules: an
identical row is skipped, pending local edits are never overwritten by a replay, a Salesforce
change is written with Salesforce's values.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws
from sfsync.core.registry import ObjectSpec
from sfsync.items import snapshot
from sfsync.ops.verify import RecordStoreWriter
from sfsync.store.records import CLIENT_CONFIG, MAX_ITEM_BYTES, RecordStore
from sfsync.store.verify_reader import StoredState

from tests.support.item_rules import reference_base, rest_lead_row

pytestmark = pytest.mark.functional

TWO_WAY = ObjectSpec("Lead", "Lead", direction="both", tombstone_retention_days=30)
ONE_WAY = ObjectSpec("Account", "Account")
SYNCED = dt.datetime(2026, 11, 24, 13, 0, tzinfo=dt.UTC)
DATETIMES = frozenset({"CreatedDate", "SystemModstamp"})
SELECTED = ("Id", "IsDeleted", "SystemModstamp", "CreatedDate", "LastName", "Title", "Rating", "Score__c")
T1 = "2026-11-24T12:05:00.000+0000"
T2 = "2026-11-24T12:06:00.000+0000"
_ser, _de = TypeSerializer(), TypeDeserializer()


def lead(n: int, stamp: str, **fields: Any) -> dict[str, Any]:
    row = rest_lead_row(n, stamp, Title="Buyer", Rating=None)
    del row["Email"]
    row.update(fields)
    return row


@pytest.fixture
def client() -> Iterator[Any]:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1", config=CLIENT_CONFIG)
        for name in ("leads", "accounts"):
            ddb.create_table(
                TableName=name,
                KeySchema=[{"AttributeName": "Id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "Id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        ddb.create_table(
            TableName="errors",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield ddb


def store(client: Any) -> RecordStore:
    return RecordStore(client, {"Lead": "leads", "Account": "accounts"}, errors_table="errors", sleep=lambda _s: None)


def write(client: Any, rows: list[dict[str, Any]], *, exclusive: bool, spec: ObjectSpec = TWO_WAY) -> dict[str, str]:
    outcome = store(client).write_page(
        spec,
        rows,
        cycle_id="c1",
        synced_at=SYNCED,
        datetime_fields=DATETIMES,
        selected_fields=SELECTED,
        exclusive=exclusive,
    )
    return dict(outcome.outcomes)


def item(client: Any, record_id: str, table: str = "leads") -> dict[str, Any]:
    raw = client.get_item(TableName=table, Key={"Id": {"S": record_id}}, ConsistentRead=True)["Item"]
    return {k: _de.deserialize(v) for k, v in raw.items()}


def local_edit(client: Any, record_id: str, **values: Any) -> None:
    """An application's edit: UpdateItem of data attributes only (``_base`` untouched)."""
    names = {f"#f{i}": name for i, name in enumerate(values)}
    client.update_item(
        TableName="leads",
        Key={"Id": {"S": record_id}},
        UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(values))),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues={f":v{i}": _ser.serialize(v) for i, v in enumerate(values.values())},
    )


def assert_base_is_data(stored: dict[str, Any]) -> None:
    assert snapshot.base_of(stored) == snapshot.data_of(stored)
    assert stored[snapshot.BASE_ATTRIBUTE] == snapshot.encode_base(stored)


# -- puts -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("exclusive", [False, True], ids=["conditional", "batched"])
def test_given_a_two_way_row_when_written_then_the_item_carries_its_data_as_base(client: Any, exclusive: bool) -> None:
    assert write(client, [lead(1, T1), lead(2, T1, IsDeleted=True)], exclusive=exclusive) == {
        "00Q000000000000001": "created",
        "00Q000000000000002": "deleted",
    }
    for record_id in ("00Q000000000000001", "00Q000000000000002"):
        stored = item(client, record_id)
        assert_base_is_data(stored)
        assert snapshot.local_changes(stored) == {}
    assert (snapshot.base_of(item(client, "00Q000000000000001")) or {})["Score__c"] == Decimal(7)


@pytest.mark.parametrize("exclusive", [False, True], ids=["conditional", "batched"])
def test_given_a_one_way_object_when_written_then_no_base_is_stored(client: Any, exclusive: bool) -> None:
    row = {"Id": "001000000000000001", "IsDeleted": False, "SystemModstamp": T1, "Name": "Acme"}
    assert write(client, [row], exclusive=exclusive, spec=ONE_WAY) == {"001000000000000001": "created"}
    assert snapshot.BASE_ATTRIBUTE not in item(client, "001000000000000001", "accounts")


@pytest.mark.parametrize("exclusive", [False, True], ids=["conditional", "batched"])
def test_given_a_stored_item_when_the_same_row_is_replayed_then_it_is_skipped(client: Any, exclusive: bool) -> None:
    write(client, [lead(1, T1)], exclusive=exclusive)
    before = item(client, "00Q000000000000001")
    assert write(client, [lead(1, T1)], exclusive=exclusive) == {"00Q000000000000001": "skipped"}
    assert item(client, "00Q000000000000001") == before


@pytest.mark.parametrize("exclusive", [False, True], ids=["conditional", "batched"])
def test_given_a_local_edit_when_an_unchanged_row_is_replayed_then_the_edit_is_kept(
    client: Any, exclusive: bool
) -> None:
    write(client, [lead(1, T1)], exclusive=exclusive)
    local_edit(client, "00Q000000000000001", Title="Edited locally", Rating="Warm")
    assert write(client, [lead(1, T1)], exclusive=exclusive) == {"00Q000000000000001": "skipped"}
    stored = item(client, "00Q000000000000001")
    assert (stored["Title"], stored["Rating"]) == ("Edited locally", "Warm")
    changes = snapshot.local_changes(stored)
    assert {name: (c.base, c.local) for name, c in changes.items()} == {
        "Title": ("Buyer", "Edited locally"),
        "Rating": (None, "Warm"),
    }


@pytest.mark.parametrize("exclusive", [False, True], ids=["conditional", "batched"])
def test_given_a_local_edit_when_salesforce_changed_the_record_then_salesforce_values_are_written(
    client: Any, exclusive: bool
) -> None:
    write(client, [lead(1, T1)], exclusive=exclusive)
    local_edit(client, "00Q000000000000001", Title="Edited locally")
    assert write(client, [lead(1, T2, LastName="Renamed")], exclusive=exclusive) == {"00Q000000000000001": "updated"}
    stored = item(client, "00Q000000000000001")
    assert (stored["Title"], stored["LastName"]) == ("Buyer", "Renamed")
    assert_base_is_data(stored)


def test_given_a_local_edit_when_a_replay_has_the_same_stamp_but_another_base_text_then_it_is_still_skipped(
    client: Any,
) -> None:
    """The base compare is semantic: a base written in another JSON layout still matches."""
    write(client, [lead(1, T1)], exclusive=False)
    stored = item(client, "00Q000000000000001")
    reordered = json.dumps(dict(reversed(list(json.loads(stored["_base"]).items()))), indent=1)
    assert reordered != stored["_base"]
    local_edit(client, "00Q000000000000001", Title="Edited locally", _base=reordered)
    assert write(client, [lead(1, T1)], exclusive=True) == {"00Q000000000000001": "skipped"}
    after = item(client, "00Q000000000000001")
    assert (after["Title"], after["_base"]) == ("Edited locally", reordered)


def test_given_a_newer_stored_version_when_an_older_row_arrives_then_it_is_skipped(client: Any) -> None:
    write(client, [lead(1, T2, LastName="Newer")], exclusive=False)
    assert write(client, [lead(1, T1)], exclusive=True) == {"00Q000000000000001": "skipped"}
    assert item(client, "00Q000000000000001")["LastName"] == "Newer"


@pytest.mark.parametrize("exclusive", [False, True], ids=["conditional", "batched"])
def test_given_local_values_salesforce_now_has_when_the_row_arrives_then_only_the_base_is_refreshed(
    client: Any, exclusive: bool
) -> None:
    write(client, [lead(1, T1)], exclusive=exclusive)
    local_edit(client, "00Q000000000000001", Title="Agreed", SystemModstamp="2026-11-24T12:06:00.000Z")
    assert write(client, [lead(1, T2, Title="Agreed")], exclusive=exclusive) == {"00Q000000000000001": "skipped"}
    stored = item(client, "00Q000000000000001")
    assert stored["Title"] == "Agreed"
    assert_base_is_data(stored)
    assert snapshot.local_changes(stored) == {}


def test_given_an_item_written_before_snapshots_when_the_same_row_is_replayed_then_it_stays_untouched(
    client: Any,
) -> None:
    write(client, [lead(1, T1)], exclusive=False)
    client.update_item(
        TableName="leads", Key={"Id": {"S": "00Q000000000000001"}}, UpdateExpression="REMOVE #b",
        ExpressionAttributeNames={"#b": "_base"},
    )  # fmt: skip
    assert write(client, [lead(1, T1)], exclusive=True) == {"00Q000000000000001": "skipped"}
    assert snapshot.BASE_ATTRIBUTE not in item(client, "00Q000000000000001")
    assert write(client, [lead(1, T2)], exclusive=True) == {"00Q000000000000001": "updated"}
    assert_base_is_data(item(client, "00Q000000000000001"))


@pytest.mark.parametrize("exclusive", [False, True], ids=["conditional", "batched"])
def test_given_carried_over_fields_when_a_new_version_is_put_then_the_base_keeps_salesforce_values(
    client: Any, exclusive: bool
) -> None:
    """Unselected attributes (a formula) are carried over; a stale ``_base`` is not."""
    write(client, [lead(1, T1)], exclusive=exclusive)
    base = json.loads(item(client, "00Q000000000000001")["_base"])
    base["Formula__c"] = "from Salesforce"
    local_edit(client, "00Q000000000000001", Formula__c="edited locally", _base=json.dumps(base))
    assert write(client, [lead(1, T2, LastName="Renamed")], exclusive=exclusive) == {"00Q000000000000001": "updated"}
    stored = item(client, "00Q000000000000001")
    assert stored["Formula__c"] == "edited locally"
    new_base = snapshot.base_of(stored)
    assert new_base is not None
    assert (new_base["Formula__c"], new_base["LastName"], new_base["SystemModstamp"]) == (
        "from Salesforce",
        "Renamed",
        "2026-11-24T12:06:00.000Z",
    )
    assert set(snapshot.local_changes(stored)) == {"Formula__c"}


@pytest.mark.parametrize("exclusive", [False, True], ids=["conditional", "batched"])
def test_given_a_row_whose_base_would_pass_the_item_limit_then_it_fails_into_the_errors_table(
    client: Any, exclusive: bool
) -> None:
    big = "x" * (MAX_ITEM_BYTES * 6 // 10)  # fits alone, not twice
    assert write(client, [lead(1, T1, Description=big), lead(2, T1)], exclusive=exclusive) == {
        "00Q000000000000001": "failed",
        "00Q000000000000002": "created",
    }
    errors = client.scan(TableName="errors")["Items"]
    assert [e["record_id"]["S"] for e in errors] == ["00Q000000000000001"]
    assert "base snapshot" in errors[0]["reason"]["S"]
    assert write(client, [lead(3, T1, Description=big)], exclusive=exclusive, spec=ONE_WAY)["00Q000000000000003"] == (
        "created"
    )


# -- patches and tombstones -------------------------------------------------------------------------


def patch(client: Any, rows: list[dict[str, Any]], fields: tuple[str, ...]) -> dict[str, str]:
    outcome = store(client).patch_page(
        TWO_WAY,
        rows,
        fields,
        not_newer_than_row=False,
        cycle_id="refresh",
        synced_at=SYNCED,
        extra={"_formulas_as_of": "2026-11-24T13:00:00.000Z"},
    )
    return dict(outcome.outcomes)


def test_given_a_formula_refresh_when_values_change_then_the_base_equals_the_resulting_data(client: Any) -> None:
    write(client, [lead(1, T1), lead(2, T1)], exclusive=True)
    rows: list[dict[str, Any]] = [
        {"Id": "00Q000000000000001", "SystemModstamp": T1, "Formula__c": 12.5},
        {"Id": "00Q000000000000002", "SystemModstamp": T1, "Formula__c": None},
    ]
    assert patch(client, rows, ("Formula__c",)) == {"00Q000000000000001": "updated", "00Q000000000000002": "skipped"}
    stored = item(client, "00Q000000000000001")
    assert stored["Formula__c"] == Decimal("12.5")
    assert_base_is_data(stored)
    assert patch(client, rows, ("Formula__c",)) == {"00Q000000000000001": "skipped", "00Q000000000000002": "skipped"}


def test_given_a_local_edit_when_a_formula_refresh_patches_then_the_edit_stays_a_local_change(client: Any) -> None:
    write(client, [lead(1, T1)], exclusive=True)
    local_edit(client, "00Q000000000000001", Title="Edited locally")
    rows = [{"Id": "00Q000000000000001", "SystemModstamp": T1, "Formula__c": "new"}]
    assert patch(client, rows, ("Formula__c",)) == {"00Q000000000000001": "updated"}
    stored = item(client, "00Q000000000000001")
    assert snapshot.base_of(stored)["Formula__c"] == "new"  # type: ignore[index]
    assert set(snapshot.local_changes(stored)) == {"Title"}


def test_given_a_base_that_moved_after_the_read_when_patching_then_the_patch_rereads_and_keeps_it(
    client: Any,
) -> None:
    """A write of the base between the page's read and its update (the write-back) is not lost."""
    write(client, [lead(1, T1)], exclusive=True)
    moved = json.loads(item(client, "00Q000000000000001")["_base"])
    moved["Title"] = "Pushed"
    local_edit(client, "00Q000000000000001", Title="Pushed")

    class RacingClient:
        """The client, with the write-back's base update landing just before the first update."""

        def __init__(self) -> None:
            self.raced = False

        def __getattr__(self, name: str) -> Any:
            return getattr(client, name)

        def update_item(self, **request: Any) -> Any:
            if not self.raced:
                self.raced = True
                local_edit(client, "00Q000000000000001", _base=snapshot.encode_base(moved))
            return client.update_item(**request)

    racing = RacingClient()
    records = RecordStore(racing, {"Lead": "leads"}, errors_table="errors")
    rows = [{"Id": "00Q000000000000001", "SystemModstamp": T1, "Formula__c": "new"}]
    outcome = records.patch_page(
        TWO_WAY, rows, ("Formula__c",), not_newer_than_row=False, cycle_id="refresh", synced_at=SYNCED
    )
    assert dict(outcome.outcomes) == {"00Q000000000000001": "updated"}
    assert racing.raced
    stored = item(client, "00Q000000000000001")
    assert_base_is_data(stored)
    assert (stored["Title"], stored["Formula__c"]) == ("Pushed", "new")


def test_given_a_hard_delete_when_tombstoned_then_the_base_is_deleted_with_the_delete_time(client: Any) -> None:
    write(client, [lead(1, T1), lead(2, T1)], exclusive=True)
    local_edit(client, "00Q000000000000002", Title="Edited locally")
    records = store(client)
    deleted_at = dt.datetime(2026, 11, 24, 12, 30, tzinfo=dt.UTC)
    for record_id in ("00Q000000000000001", "00Q000000000000002"):
        outcome = records.tombstone(
            TWO_WAY, record_id, reason="getDeleted", deleted_at=deleted_at, synced_at=SYNCED, cycle_id="c2"
        )
        assert outcome == "deleted"
    first = item(client, "00Q000000000000001")
    assert (first["IsDeleted"], first["SystemModstamp"], first["_deleted_by"]) == (
        True,
        "2026-11-24T12:30:00.000Z",
        "getDeleted",
    )
    assert_base_is_data(first)
    second = item(client, "00Q000000000000002")
    assert snapshot.base_of(second)["IsDeleted"] is True  # type: ignore[index]
    assert set(snapshot.local_changes(second)) == {"Title"}
    again = records.tombstone(
        TWO_WAY, "00Q000000000000001", reason="getDeleted", deleted_at=deleted_at, synced_at=SYNCED, cycle_id="c3"
    )
    assert again == "skipped"
    assert records.tombstone(TWO_WAY, "00Q00000000000000X", reason="reconcile", deleted_at=None, synced_at=SYNCED,
                             cycle_id="c3") == "skipped"  # fmt: skip


def test_given_a_delete_older_than_the_stored_version_when_tombstoned_then_it_is_skipped(client: Any) -> None:
    write(client, [lead(1, T2)], exclusive=True)
    early = dt.datetime(2026, 11, 24, 12, 5, tzinfo=dt.UTC)
    outcome = store(client).tombstone(
        TWO_WAY, "00Q000000000000001", reason="getDeleted", deleted_at=early, synced_at=SYNCED, cycle_id="c2"
    )
    assert outcome == "skipped"
    assert item(client, "00Q000000000000001")["IsDeleted"] is False


def test_given_verify_repairs_when_it_tombstones_an_extra_item_then_the_base_follows(client: Any) -> None:
    write(client, [lead(1, T1), lead(2, T1)], exclusive=True)
    writer = RecordStoreWriter(store(client), client, spec_of=lambda _name: TWO_WAY, now=lambda: SYNCED)
    seen = [
        StoredState("00Q000000000000001", "2026-11-24T12:05:00.000Z", False),
        StoredState("00Q000000000000002", "2026-11-24T11:00:00.000Z", False),  # changed since the compare
    ]
    assert writer.tombstone("Lead", seen) == {"RecordsDeleted": 1, "RecordsSkipped": 1}
    first = item(client, "00Q000000000000001")
    assert first["IsDeleted"] is True
    assert_base_is_data(first)
    assert item(client, "00Q000000000000002")["IsDeleted"] is False
    repaired = writer.write_records("Lead", [lead(3, T1)], datetime_fields=DATETIMES)
    assert repaired["RecordsCreated"] == 1
    assert_base_is_data(item(client, "00Q000000000000003"))


# -- the fast base encoding --------------------------------------------------------------------------

_NAMES = st.sampled_from(
    ["Id", "Name", "Title", "sobject", "_synced_at", "_base", "Amount", "Ümlaut", "IsDeleted", "Tags"]
)
_VALUES = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.booleans(),
    st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-(10**12), max_value=10**12),
    st.integers(min_value=-(10**20), max_value=10**20).map(Decimal),
    st.frozensets(st.text(max_size=4), max_size=3).map(set),
)


@pytest.mark.property
@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_NAMES, _VALUES, max_size=10), st.randoms(use_true_random=False))
def test_the_snapshot_encoding_follows_the_layout_rules_whatever_the_item_layout(
    item: dict[str, Any], rng: Any
) -> None:
    assert snapshot.encode_base(item) == reference_base(item)
    # the same layout again (its name order is cached) with other values, then the names reordered
    again = dict(item)
    if again:
        again[next(iter(again))] = "changed"
    assert snapshot.encode_base(again) == reference_base(again)
    names = list(item)
    rng.shuffle(names)
    shuffled = {name: item[name] for name in names}
    assert snapshot.encode_base(shuffled) == reference_base(shuffled)


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (Decimal("1.50"), 1.5, True),
        (Decimal("1"), "1", True),  # a number the snapshot kept as its text
        (Decimal("0.1000000000000000000001"), "0.1000000000000000000001", True),
        (Decimal("1"), "one", False),
        (True, Decimal("1"), False),
        (True, 1, False),
        (True, True, True),
        (None, "", False),
        (None, None, True),
        ("a", "a", True),
        (["x"], ["x"], True),
    ],
)
def test_local_changes_and_conflicts_share_one_value_equality(a: Any, b: Any, equal: bool) -> None:
    from sfsync.writeback import decide as conflicts

    assert snapshot.same(a, b) is equal and snapshot.same(b, a) is equal
    assert conflicts.same is snapshot.same
    item = {"Id": "00Q000000000001AAA", "Amount": a, snapshot.BASE_ATTRIBUTE: snapshot.encode_base({"Amount": b})}
    if b is not None and not isinstance(b, list):
        assert ("Amount" not in snapshot.local_changes(item)) is equal


# -- the write-back's attributes ----------------------------------------------------------------------


@pytest.mark.parametrize("exclusive", [False, True], ids=["conditional", "batched"])
def test_given_a_pending_local_edit_when_the_sync_writes_a_salesforce_change_then_the_marker_is_kept(
    client: Any, exclusive: bool
) -> None:
    from sfsync.store.put_rules import WRITEBACK_ATTRIBUTES

    write(client, [lead(1, T1)], exclusive=exclusive)
    local_edit(client, lead(1, T1)["Id"], Title="Local Title")
    marks = {name: f"{name}-value" for name in WRITEBACK_ATTRIBUTES}
    local_edit(client, lead(1, T1)["Id"], **marks)

    write(client, [lead(1, T2, Rating="Hot")], exclusive=exclusive)

    stored = item(client, lead(1, T1)["Id"])
    assert stored["Rating"] == "Hot"  # Salesforce's change was written
    assert {name: stored.get(name) for name in WRITEBACK_ATTRIBUTES} == marks  # the write-back's kept
    assert not any(name in (snapshot.base_of(stored) or {}) for name in WRITEBACK_ATTRIBUTES)  # never data
