"""The one item codec (``sfsync.items``) against the rules it implements.

DynamoDB's rules: a number has at most 38 significant digits and a magnitude from 1E-130 up to
below 1E+126; an item is at most 400 KB (names + values); the JSON protocol's ``AttributeValue``
forms.  Salesforce's: datetimes as fixed-width ISO ms ``Z``, dates and text as they are, booleans,
numbers exact (a double as its shortest text), compound fields (JSON objects) left out, nulls
absent.  The base snapshot's layout rules (``sfsync.items.snapshot``).  Bulk CSV text typed as REST types
it.  Each rule is written out plainly here and the codec is held to it, for any input hypothesis
finds.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import Binary
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sfsync.core.exceptions import UnstorableRecord
from sfsync.core.registry import ObjectSpec
from sfsync.items import codec
from sfsync.items.codec import (
    MAX_ITEM_BYTES,
    check_size,
    ddb_number,
    encode,
    encode_base,
    item_value,
    salesforce_value,
    to_item,
    wire_with_base,
)
from sfsync.items.csv import FieldTypes, typed_row
from sfsync.items.images import from_wire, item_from_wire

from tests.support.item_rules import reference_base
from tests.support.item_rules import rest_lead_row as row

pytestmark = pytest.mark.unit

SPEC = ObjectSpec(name="Lead", family="Lead", tombstone_retention_days=30)
SYNCED = dt.datetime(2026, 11, 24, 13, 0, tzinfo=dt.UTC)
DATETIMES = ("CreatedDate", "SystemModstamp")


# -- DynamoDB's number rule ------------------------------------------------------------------------


def dynamodb_holds(number: Decimal) -> bool:
    """DynamoDB's documented number rule, written out: 38 significant digits, 1E-130 <= |x| < 1E+126."""
    if not number:
        return True
    significant = "".join(map(str, number.as_tuple().digits)).rstrip("0")
    return len(significant) <= 38 and Decimal("1E-130") <= number.copy_abs() < Decimal("1E+126")


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (Decimal("1E-130"), True),
        (Decimal("9.9999999999999999999999999999999999999E-131"), False),
        (Decimal("9.9999999999999999999999999999999999999E+125"), True),
        (Decimal("1E+126"), False),
        (Decimal("-1E+126"), False),
        (Decimal("12345678901234567890123456789012345678"), True),  # 38 digits
        (Decimal("123456789012345678901234567890123456789"), False),  # 39 digits
        (Decimal("1.0000000000000000000000000000000000000000"), True),  # trailing zeros do not count
        (10**37, True),
        (10**38 + 1, False),
        (-(10**38), True),  # 1 significant digit
        (0.1, True),
        (1e200, False),
        (5e-324, False),
        (0, True),
    ],
)
def test_numbers_follow_dynamodbs_range_and_precision(value: Any, ok: bool) -> None:
    if ok:
        assert ddb_number(value) == (Decimal(repr(value)) if isinstance(value, float) else Decimal(value))
    else:
        with pytest.raises(UnstorableRecord, match="outside DynamoDB's range/precision"):
            ddb_number(value)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.decimals(allow_nan=False, allow_infinity=False),
        st.integers(min_value=-(10**45), max_value=10**45),
        st.floats(allow_nan=False, allow_infinity=False),
    )
)
def test_any_number_is_stored_exactly_when_dynamodb_holds_it_and_refused_otherwise(value: Any) -> None:
    exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if dynamodb_holds(exact):
        stored = ddb_number(value)
        assert stored == exact and str(stored) == str(exact)  # a double as its shortest text: 0.1 stays 0.1
    else:
        with pytest.raises(UnstorableRecord):
            ddb_number(value)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), Decimal("NaN"), Decimal("-Infinity")])
def test_non_finite_numbers_are_unstorable(value: Any) -> None:
    with pytest.raises(UnstorableRecord, match="non-finite"):
        ddb_number(value)


# -- Salesforce values -> item values --------------------------------------------------------------


def test_given_a_rest_row_when_converted_then_nulls_objects_and_engine_names_are_left_out() -> None:
    record = row(1, "2026-11-24T12:05:00.000+0000", Address={"city": "x"}, _cycle_id="forged", Ratio=0.25)
    item = to_item(SPEC, record, cycle_id="c1", synced_at=SYNCED, datetime_fields=DATETIMES)
    assert item == {
        "Id": "00Q000000000000001",
        "CreatedDate": "2026-11-24T12:00:00.000Z",
        "LastName": "Name 1",
        "Score__c": Decimal(7),
        "Ratio": Decimal("0.25"),
        "SystemModstamp": "2026-11-24T12:05:00.000Z",
        "sobject": "Lead",
        "IsDeleted": False,
        "_synced_at": "2026-11-24T13:00:00.000Z",
        "_cycle_id": "c1",
    }


def test_given_other_offsets_when_converted_then_datetimes_are_utc_and_the_cache_keeps_them_apart() -> None:
    first = to_item(SPEC, row(1, "2026-11-24T14:05:00.000+0200"), cycle_id="c", synced_at=SYNCED)
    second = to_item(SPEC, row(1, "2026-11-24T14:05:00.000+0000"), cycle_id="c", synced_at=SYNCED)
    assert first["SystemModstamp"] == "2026-11-24T12:05:00.000Z"
    assert second["SystemModstamp"] == "2026-11-24T14:05:00.000Z"


def test_dates_text_and_booleans_are_kept_as_salesforce_sends_them() -> None:
    record = row(1, "2026-11-24T12:05:00.000Z", Birthdate="1990-02-28", Active__c=True, Empty="")
    item = to_item(SPEC, record, cycle_id="c", synced_at=SYNCED, datetime_fields=DATETIMES)
    assert item["Birthdate"] == "1990-02-28" and item["Active__c"] is True and item["Empty"] == ""


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("CreatedDate", "yesterday", "CreatedDate"),
        ("Score__c", float("inf"), "non-finite"),
        ("Score__c", 10**40 + 1, "range/precision"),
        ("Score__c", 1e130, "range/precision"),
        ("Blob", b"x", "bytes"),
    ],
)
def test_given_a_value_dynamodb_cannot_hold_when_converted_then_it_is_unstorable(
    field: str, value: Any, reason: str
) -> None:
    with pytest.raises(UnstorableRecord, match=reason) as raised:
        to_item(
            SPEC,
            row(1, "2026-11-24T12:05:00.000Z", **{field: value}),
            cycle_id="c",
            synced_at=SYNCED,
            datetime_fields=DATETIMES,
        )
    assert raised.value.field == field


def test_given_a_deleted_merge_loser_when_converted_then_it_is_a_tombstone_with_expiry_and_winner() -> None:
    record = row(1, "2026-11-24T12:05:00.000Z", IsDeleted=True, MasterRecordId="00Q000000000000009")
    item = to_item(SPEC, record, cycle_id="c", synced_at=SYNCED)
    assert item["IsDeleted"] is True
    assert item["_merged_into"] == "00Q000000000000009"
    assert item["_expires_at"] == int((SYNCED + dt.timedelta(days=30)).timestamp())


def test_one_value_rule_serves_every_path_and_goes_back_to_salesforce_json() -> None:
    assert item_value("N", 7) == Decimal(7) and item_value("N", 1.25) == Decimal("1.25")
    assert item_value("D", "2026-11-24T12:00:00.000+0000", is_datetime=True) == "2026-11-24T12:00:00.000Z"
    assert item_value("B", True) is True and item_value("X", None) is None
    with pytest.raises(UnstorableRecord, match="field N"):
        item_value("N", Decimal("1E+200"))
    assert salesforce_value(Decimal(5)) == 5 and isinstance(salesforce_value(Decimal(5)), int)
    assert salesforce_value(Decimal("2.5")) == 2.5
    assert salesforce_value({"b", "a"}) == "a;b"


# -- the item size rule ----------------------------------------------------------------------------


def test_items_above_400_kb_are_unstorable_and_the_base_snapshot_counts() -> None:
    item = {"Id": "00Q000000000000001", "Big": "x" * (MAX_ITEM_BYTES - 100)}
    wire, base = encode(item, with_base=True)
    check_size(item, wire, two_way=False)  # under the limit: the wire text alone exceeds it, the item not
    assert base is not None
    with pytest.raises(UnstorableRecord, match=r"base snapshot included\) exceeds DynamoDB's 400 KB limit"):
        check_size(item, wire_with_base(wire, base), two_way=True, base=base)
    with pytest.raises(UnstorableRecord, match="400 KB"):
        check_size({**item, "More": "y" * 200}, encode({**item, "More": "y" * 200}, with_base=False)[0], two_way=False)


# -- the wire JSON and the base snapshot -----------------------------------------------------------


def attribute_value(value: Any) -> dict[str, Any]:
    """DynamoDB's JSON ``AttributeValue`` of a Python value, written out (the JSON protocol's forms)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int | Decimal):
        return {"N": str(value)}
    if isinstance(value, Binary):
        return {"B": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, set):
        first = next(iter(value))
        if isinstance(first, str):
            return {"SS": sorted(value)}
        return {"NS": sorted(str(v) for v in value)}
    if isinstance(value, list):
        return {"L": [attribute_value(v) for v in value]}
    return {"M": {k: attribute_value(v) for k, v in value.items()}}


def comparable(wire: dict[str, Any]) -> dict[str, Any]:
    """Set members in a stable order (a set's JSON order is the set's own)."""
    return {k: ({t: sorted(v)} if (t := next(iter(v))) in ("SS", "NS") else v) for k, v in wire.items()}


_NAMES = st.sampled_from(
    ["Id", "Name", "Title", "sobject", "_synced_at", "_expires_at", "\u00dcmlaut", "IsDeleted", "N", "Z"]
)
_VALUES = st.one_of(
    st.text(max_size=12),  # any code point: quotes, backslashes, controls, non-ASCII, lone surrogates
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**12), max_value=10**12),
    st.integers(min_value=-(10**30), max_value=10**30).map(Decimal),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: Decimal(repr(f))),
    st.none(),
    st.frozensets(st.text(min_size=1, max_size=4), min_size=1, max_size=3).map(set),
)


@pytest.mark.property
@settings(max_examples=500, deadline=None)
@given(st.dictionaries(_NAMES, _VALUES, min_size=1, max_size=10))
@example({"Id": ","})  # found by hypothesis: the text "," made the fast path's separator
@example({"A": ":", "B": ",", "C": "x"})
def test_the_wire_json_and_the_base_snapshot_follow_the_rules_for_any_item(item: dict[str, Any]) -> None:
    wire, base = encode(item, with_base=True)
    assert comparable(json.loads(wire)) == comparable({k: attribute_value(v) for k, v in item.items()})
    assert base == reference_base(item) == encode_base(item)
    assert encode(item, with_base=False) == (wire, None)
    assert json.loads(wire_with_base(wire, base))["_base"] == {"S": base}


@pytest.mark.parametrize("text", [",", ":", '","', '":"', ", ", "a,b:c"])
def test_a_text_made_of_the_separators_keeps_its_value_on_the_wire(text: str) -> None:
    item = {"Id": "00Q1", "Company": text, "City": "Gent"}
    wire, _ = encode(item, with_base=True)
    assert json.loads(wire) == {"Id": {"S": "00Q1"}, "Company": {"S": text}, "City": {"S": "Gent"}}


def test_the_base_snapshot_is_ascii_whatever_the_text() -> None:
    item = {"Id": "00Q1", "Name": "Soci\u00e9t\u00e9 \u6771\u4eac \U0001f600 \x7f \n"}
    assert encode_base(item) == json.dumps({"Id": "00Q1", "Name": item["Name"]}, separators=(",", ":"))
    assert encode_base(item).isascii()


def test_the_layout_cache_follows_each_items_names() -> None:
    first = {"Id": "1", "_x": "engine", "A": "a"}
    again = {"Id": "1", "_x": "engine", "A": "b"}
    moved = {"_x": "engine", "Id": "1", "A": "a"}
    assert [encode_base(i) for i in (first, again, moved)] == [
        '{"A":"a","Id":"1"}',
        '{"A":"b","Id":"1"}',
        '{"A":"a","Id":"1"}',
    ]
    assert codec.decode_base(encode_base({"Id": "1", "N": Decimal("0.1000000000000000000001")})) == {
        "Id": "1",
        "N": "0.1000000000000000000001",
    }


def test_wire_json_reads_back_as_the_same_values() -> None:
    item = {"S": "x", "N": Decimal("12.50"), "B": True, "L": [Decimal(1), "y"], "M": {"k": False}, "Z": None}
    wire = json.loads(encode(item, with_base=False)[0])
    assert item_from_wire(wire) == item
    assert from_wire({"B": base64.b64encode(b"\x00").decode()}) == Binary(b"\x00")


# -- Bulk CSV typing -------------------------------------------------------------------------------

CSV_TYPES = FieldTypes(
    booleans=frozenset({"IsDeleted", "Active__c"}),
    integers=frozenset({"Employees"}),
    floats=frozenset({"Revenue"}),
    datetimes=frozenset({"SystemModstamp", "CreatedDate"}),
)


def rest_typed(name: str, text: str | None) -> Any:
    """What Salesforce's REST API sends for a Bulk CSV value of the field, written out."""
    if text is None:
        return None
    if name in CSV_TYPES.booleans and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if name in CSV_TYPES.integers:
        try:
            return int(text)
        except ValueError:
            return text
    if name in CSV_TYPES.floats:
        try:
            return float(text)
        except ValueError:
            return text
    return text


_CSV_VALUES = {
    "Name": st.one_of(
        st.none(),
        st.text(max_size=20),
        # the fast paths' own separators and forms, as text: NUL, its JSON escape, % formats
        st.sampled_from(["\\u0000", "a\x00b", "%s%%", "%.0s", 'q"uote', "caf\u00e9", "back\\slash", "tab\there"]),
    ),
    "Active__c": st.one_of(st.none(), st.sampled_from(["true", "false", "TRUE", "False", "yes"])),
    "Employees": st.one_of(
        st.none(), st.integers(-(10**40), 10**40).map(str), st.sampled_from(["-0", "007", "1e3", "x"])
    ),
    "Revenue": st.one_of(
        st.none(),
        st.floats(allow_nan=False).map(repr),
        st.sampled_from(
            [
                *("100.0", "1.50", "-0.0", "12.345", "1e400", "nan", "1e-400", "abc", "0.0", "-5.0"),
                *("0.0001", "0.00001", "123456789012345.5", "12345678901234.5", "0.1234567890123456", "-0.5"),
                *("00.5", "5."),
            ]
        ),
    ),
    "CreatedDate": st.one_of(
        st.none(),
        st.sampled_from(
            [
                *("2026-01-02T03:04:05.000Z", "2026-01-02T03:04:05Z", "2026-01-02T03:04:05.000+0100", "bad"),
                *("2024-02-29T03:04:05.000Z", "2023-02-29T03:04:05.000Z", "2026-04-31T03:04:05.000Z"),
            ]
        ),
    ),
    "IsDeleted": st.sampled_from(["true", "false", None]),
    "MasterRecordId": st.one_of(st.none(), st.just("001000000000009AAA")),
    "SystemModstamp": st.sampled_from(["2026-01-02T03:04:05.000Z", "2026-01-02T03:04:05.123+0000"]),
}
_REQUIRED = ("IsDeleted", "SystemModstamp")


@settings(max_examples=400, deadline=None)
@given(
    csv_row=st.fixed_dictionaries(
        {"Id": st.just("001000000000001AAA"), **{k: v for k, v in _CSV_VALUES.items() if k in _REQUIRED}},
        optional={k: v for k, v in _CSV_VALUES.items() if k not in _REQUIRED},
    )
)
def test_any_bulk_csv_row_is_typed_as_rest_would_type_it(csv_row: dict[str, str | None]) -> None:
    typed = typed_row(csv_row, CSV_TYPES)
    expected = {name: rest_typed(name, text) for name, text in csv_row.items()}
    assert typed.keys() == expected.keys()
    for name, value in typed.items():  # float("nan") != itself: compare its text
        assert type(value) is type(expected[name]) and repr(value) == repr(expected[name]), name
    spec = ObjectSpec("Account", "Account", direction="both", tombstone_retention_days=15)
    try:
        item = to_item(spec, typed, cycle_id="copy", synced_at=SYNCED, datetime_fields=CSV_TYPES.datetimes)
    except UnstorableRecord as exc:  # only a value DynamoDB or the datetime rule refuses
        assert exc.field in ("Revenue", "Employees", "CreatedDate"), exc
        return
    for name in ("Employees", "Revenue"):
        value = typed.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            assert item[name] == Decimal(repr(value) if isinstance(value, float) else value)
    assert all(item[name] is None or type(item[name]) is not float for name in item)


@settings(max_examples=800, deadline=None)
@given(
    csv_row=st.fixed_dictionaries(
        {"Id": st.just("001000000000001AAA"), **{k: v for k, v in _CSV_VALUES.items() if k in _REQUIRED}},
        optional={k: v for k, v in _CSV_VALUES.items() if k not in _REQUIRED},
    ),
    two_way=st.booleans(),
    retention=st.booleans(),
    as_line=st.booleans(),
)
def test_any_bulk_csv_row_becomes_the_item_and_wire_json_the_rules_give(
    csv_row: dict[str, str | None], two_way: bool, retention: bool, as_line: bool
) -> None:
    """A dict row (``encode_rows``) or the same CSV line as ``csv.reader`` gives it (``encode_lines``)."""
    from sfsync.items.csv import CsvItems

    spec = ObjectSpec(
        "Account",
        "Account",
        direction="both" if two_way else "inbound",
        tombstone_retention_days=15 if retention else None,
    )
    rows = CsvItems(spec, CSV_TYPES, cycle_id="copy", synced_at=SYNCED)
    if as_line:  # a CSV line cannot tell an empty text from a null: both are null
        csv_row = {name: (text if text != "" else None) for name, text in csv_row.items()}
    expected_item = expected_csv_item(spec, csv_row)
    if as_line:
        (result,) = rows.encode_lines(tuple(csv_row), [[text or "" for text in csv_row.values()]])
    else:
        (result,) = rows.encode_rows([csv_row])
    if expected_item is None:
        assert isinstance(result, UnstorableRecord), result
        return
    assert not isinstance(result, UnstorableRecord), result
    wire = json.loads(result.text)
    base = wire.pop("_base", None)
    assert wire == {k: attribute_value(v) for k, v in expected_item.items()}
    assert base == ({"S": reference_base(expected_item)} if two_way else None)
    assert (result.record_id, result.stamp, result.deleted) == (
        csv_row["Id"],
        expected_item["SystemModstamp"],
        expected_item["IsDeleted"],
    )
    assert rows.item(csv_row) == expected_item


def expected_csv_item(spec: ObjectSpec, csv_row: dict[str, str | None]) -> dict[str, Any] | None:
    """The item the rules give for a Bulk CSV row (None: DynamoDB or the datetime rule refuses it)."""
    item: dict[str, Any] = {}
    for name, text in csv_row.items():
        value = rest_typed(name, text)
        if value is None or name in ("IsDeleted", "SystemModstamp"):
            continue
        if isinstance(value, float | int) and not isinstance(value, bool):
            exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
            if not (value == value and abs(value) != float("inf")) or not dynamodb_holds(exact):
                return None
            value = exact
        elif name == "CreatedDate":
            try:
                value = dt.datetime.fromisoformat(value.replace("+0100", "+01:00")).astimezone(dt.UTC)
            except ValueError:
                return None
            value = value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
        item[name] = value
    modstamp = dt.datetime.fromisoformat(csv_row["SystemModstamp"].replace("+0000", "+00:00"))  # type: ignore[union-attr]
    item["SystemModstamp"] = modstamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{modstamp.microsecond // 1000:03d}Z"
    deleted = rest_typed("IsDeleted", csv_row.get("IsDeleted")) is True
    item.update(
        {"sobject": "Account", "IsDeleted": deleted, "_synced_at": "2026-11-24T13:00:00.000Z", "_cycle_id": "copy"}
    )
    if deleted and spec.tombstone_retention_days is not None:
        item["_expires_at"] = int((SYNCED + dt.timedelta(days=15)).timestamp())
    if deleted and csv_row.get("MasterRecordId"):
        item["_merged_into"] = csv_row["MasterRecordId"]
    return item


@pytest.mark.parametrize(
    "text",
    [
        "2024-02-29T10:00:00.000Z",  # a leap day: the memoised check, not the one-call pattern
        "2026-02-29T10:00:00.000Z",  # not a real day
        "2026-04-31T10:00:00.000Z",
        "2026-12-31T23:59:59.999Z",
        "2026-01-01T24:00:00.000Z",
        "0000-01-01T00:00:00.000Z",
        "2026-11-24T12:00:00.000+0000",
        "2026-11-24T12:00:00.000+0100",
        "2026-1l-24T12:00:00.000Z",
    ],
)
def test_given_a_csv_datetime_in_any_form_then_the_fast_path_gives_what_the_rules_give(text: str) -> None:
    from sfsync.items.csv import CsvItems

    spec = ObjectSpec("Account", "Account", direction="both")
    row = {"Id": "001000000000001AAA", "IsDeleted": "false", "SystemModstamp": "2026-11-24T12:00:00.000Z"}
    rows = CsvItems(spec, CSV_TYPES, cycle_id="copy", synced_at=SYNCED)
    (fast,) = rows.encode_rows([{**row, "CreatedDate": text}])
    try:
        plain: Any = codec.encoded_item(spec, rows.item({**row, "CreatedDate": text}))
    except UnstorableRecord as exc:
        plain = exc
    assert type(fast) is type(plain)
    if not isinstance(plain, UnstorableRecord):
        assert not isinstance(fast, UnstorableRecord)
        assert json.loads(fast.text) == json.loads(plain.text)


def _outcome(result: Any) -> Any:
    """An encoding result compared by meaning: the wire JSON parsed, the snapshot parsed, or the refusal."""
    if isinstance(result, UnstorableRecord):
        return ("unstorable", str(result))
    wire = json.loads(result.text)
    if "_base" in wire:
        wire["_base"] = json.loads(wire["_base"]["S"])
    return (result.record_id, result.stamp, result.deleted, wire)


@pytest.mark.parametrize(
    "csv_text",
    [
        # a line longer than the header, one shorter, a blank line, an empty text (a null on a CSV line)
        "Id,IsDeleted,SystemModstamp,Name\n"
        "001000000000001AAA,false,2026-01-02T03:04:05.000Z,A,surplus,more\n"
        "001000000000002AAA,false,2026-01-02T03:04:05.000Z\n"
        "\n"
        '001000000000003AAA,true,2026-01-02T03:04:05.000Z,""\n',
        # a column named twice (csv.DictReader keeps the last one's text)
        "Id,Name,IsDeleted,Name,SystemModstamp\n001000000000001AAA,first,false,second,2026-01-02T03:04:05.000Z\n",
    ],
    ids=["ragged-lines", "repeated-column"],
)
def test_given_malformed_csv_lines_when_encoded_as_lines_then_they_become_what_csv_dictreader_rows_become(
    csv_text: str,
) -> None:
    import csv
    import io

    from sfsync.items.csv import CsvItems, line_row, null_if_empty

    spec = ObjectSpec("Account", "Account", direction="both", tombstone_retention_days=15)
    lines = list(csv.reader(io.StringIO(csv_text)))
    header, body = lines[0], [line for line in lines[1:] if line]
    rows = [null_if_empty(r) for r in csv.DictReader(io.StringIO(csv_text))]  # the client's dict rows
    assert [line_row(header, line) for line in body] == rows  # a line's dict row when its item is needed

    by_line = CsvItems(spec, CSV_TYPES, cycle_id="copy", synced_at=SYNCED).encode_lines(header, body)
    by_row = CsvItems(spec, CSV_TYPES, cycle_id="copy", synced_at=SYNCED).encode_rows(rows)

    assert len(by_line) == len(rows)
    assert [_outcome(r) for r in by_line] == [_outcome(r) for r in by_row]


def test_given_more_sets_of_present_values_than_the_cache_holds_then_every_row_is_still_encoded_right(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sfsync.items import csv as csv_items

    monkeypatch.setattr(csv_items, "_MAX_FORMS", 2)
    spec = ObjectSpec("Account", "Account", direction="both")
    header = ("Id", "IsDeleted", "SystemModstamp", "Name", "Active__c", "Employees", "Revenue")
    full = ["001000000000001AAA", "false", "2026-01-02T03:04:05.000Z", "A", "true", "7", "2.5"]
    lines = [[text if n < 3 or (mask >> n) & 1 else "" for n, text in enumerate(full)] for mask in range(16, 128)]
    encoder = csv_items.CsvItems(spec, CSV_TYPES, cycle_id="copy", synced_at=SYNCED)
    for line, result in zip(lines, encoder.encode_lines(header, lines), strict=True):
        row = {name: (text or None) for name, text in zip(header, line, strict=True)}
        expected = expected_csv_item(spec, row)
        assert expected is not None and _outcome(result)[3] == {
            **{k: attribute_value(v) for k, v in expected.items()},
            "_base": json.loads(reference_base(expected)),
        }
