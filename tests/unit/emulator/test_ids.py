"""Record ids (``ids.py``) and the storage/rendering value codecs of ``schema.py``."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sfsync_emulator import ids
from sfsync_emulator.catalogue import default_schema
from sfsync_emulator.schema import FieldDef, ValueError_, to_csv, to_db, to_json

pytestmark = pytest.mark.unit

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
id15s = st.text(alphabet=_B62, min_size=15, max_size=15)


# ------------------------------------------------------------------------------- ids


@pytest.mark.parametrize(
    ("id15", "id18"),
    [
        ("0015000000VALDt", "0015000000VALDtAAP"),  # a published Salesforce example
        ("001000000000000", "001000000000000AAA"),
        ("ZZZZZZZZZZZZZZZ", "ZZZZZZZZZZZZZZZ555"),
        ("A0000B0000C0000", "A0000B0000C0000BBB"),
    ],
)
def test_given_15_char_id_when_converted_then_real_case_safe_suffix(id15: str, id18: str) -> None:
    assert ids.to18(id15) == id18
    assert ids.normalize(id15) == id18
    assert ids.normalize(id18) == id18


def test_given_ids_differing_only_in_case_then_18_char_forms_differ() -> None:
    assert ids.to18("0015000000VALDt") != ids.to18("0015000000vALDt")


@pytest.mark.parametrize(
    "bad",
    ["", "001", "0015000000VALDtAAA", "0015000000VALD!", "0015000000VALDt-AP", "0015000000VALDtAAPX", "0" * 16],
)
def test_given_malformed_or_bad_checksum_id_when_normalized_then_none(bad: str) -> None:
    assert ids.normalize(bad) is None


@given(id15s)
def test_property_any_15_char_id_normalizes_to_an_18_char_id_that_is_stable(id15: str) -> None:
    id18 = ids.normalize(id15)
    assert id18 is not None and len(id18) == 18 and id18[:15] == id15
    assert ids.normalize(id18) == id18
    assert all(c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345" for c in id18[15:])


def test_given_minter_when_minting_then_prefix_pod_and_valid_unique_ids() -> None:
    minter = ids.IdMinter()
    minted = [minter.mint("00Q") for _ in range(200)]
    assert len(set(minted)) == 200
    for rid in minted:
        assert rid.startswith("00Q5g")
        assert ids.normalize(rid) == rid


def test_given_two_minters_then_same_sequence_per_prefix_independent_of_other_prefixes() -> None:
    a, b = ids.IdMinter(), ids.IdMinter()
    seq_a = [a.mint("001") for _ in range(5)]
    b.mint("003")
    b.mint("003")
    seq_b = [b.mint("001") for _ in range(5)]
    assert seq_a == seq_b


def test_given_minted_ids_when_resolved_through_schema_then_object_from_key_prefix() -> None:
    schema = default_schema()
    minter = ids.IdMinter()
    for name in ("Lead", "Contact", "Account", "Project__c", "Milestone__c"):
        rid = minter.mint(schema.objects[name].key_prefix)
        found = schema.object_for_id(rid)
        assert found is not None and found.name == name


def test_given_concurrent_minting_then_no_duplicates() -> None:
    minter = ids.IdMinter()
    out: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [minter.mint("003") for _ in range(500)]
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == len(set(out)) == 2000


# ------------------------------------------------------------------------------- value codecs


def _f(type_: str) -> FieldDef:
    return FieldDef(name=f"X_{type_}__c", type=type_)


@pytest.mark.parametrize(
    ("type_", "value", "db", "json_value", "csv"),
    [
        (
            "datetime",
            "2026-11-24T13:00:00+01:00",
            1_795_521_600_000,
            "2026-11-24T12:00:00.000+0000",
            "2026-11-24T12:00:00.000Z",
        ),
        (
            "datetime",
            dt.datetime(2026, 11, 24, 12, tzinfo=dt.UTC),
            1_795_521_600_000,
            "2026-11-24T12:00:00.000+0000",
            "2026-11-24T12:00:00.000Z",
        ),
        ("date", "2026-11-24", "2026-11-24", "2026-11-24", "2026-11-24"),
        ("date", dt.date(2026, 1, 2), "2026-01-02", "2026-01-02", "2026-01-02"),
        ("boolean", True, 1, True, "true"),
        ("boolean", "false", 0, False, "false"),
        ("int", 7, 7, 7, "7"),
        ("int", 3.0, 3, 3, "3"),
        ("currency", 12, 12.0, 12.0, "12.0"),
        ("percent", 12.5, 12.5, 12.5, "12.5"),
        ("double", "0.25", 0.25, 0.25, "0.25"),
        ("string", "a,b", "a,b", "a,b", "a,b"),
        ("picklist", "Hot", "Hot", "Hot", "Hot"),
        ("string", None, None, None, ""),
    ],
)
def test_given_value_of_type_when_encoded_and_rendered_then_db_json_and_csv_forms(
    type_: str, value: object, db: object, json_value: object, csv: str
) -> None:
    f = _f(type_)
    stored = to_db(f, value)
    assert stored == db and type(stored) is type(db)
    assert to_json(f, stored) == json_value and type(to_json(f, stored)) is type(json_value)
    assert to_csv(f, stored) == csv


@pytest.mark.parametrize(
    ("type_", "value"),
    [
        ("datetime", "yesterday"),
        ("date", "2026-02-30"),
        ("boolean", "yes"),
        ("boolean", 2),
        ("int", 1.5),
        ("int", True),
        ("int", "x"),
        ("double", True),
        ("currency", "lots"),
        ("string", {"a": 1}),
    ],
)
def test_given_value_of_wrong_type_when_encoded_then_value_error_naming_the_field(type_: str, value: object) -> None:
    with pytest.raises(ValueError_, match=f"X_{type_}__c"):
        to_db(_f(type_), value)
