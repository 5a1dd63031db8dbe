"""The change-event envelope and payload rules, as pure functions (spec §9.6, every unverified encoding)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sfsync.changes.apply import convert_value, payload_change, unknown_fields
from sfsync.changes.envelope import event_entity, parse_envelope, stored_name
from sfsync.core.exceptions import InvalidChangeEvent
from sfsync.inbound.fields import Selection

pytestmark = pytest.mark.unit

LEAD = "00Q5g00000AbCdEEAV"


def envelope(**header: Any) -> dict[str, Any]:
    fields = header.pop("fields", {"Status": "Working", "LastModifiedDate": 1712693965000})
    base = {
        "entityName": "Lead",
        "recordIds": [LEAD],
        "changeType": "UPDATE",
        "changeOrigin": "com/salesforce/api/rest/59.0;client=my-sync",
        "transactionKey": "0001ade9-3f74-0b99-dbc4-42e73424b774",
        "sequenceNumber": 1,
        "commitTimestamp": 1712693965000,
        "commitNumber": 1100823480049,
        "changedFields": ["Status", "LastModifiedDate"],
    }
    base.update(header)
    return {
        "version": "0",
        "id": "5c42b99e-c214-4a9c-8fbd-1a41e5faa44a",
        "detail-type": f"{base['entityName']}ChangeEvent",
        "source": "aws.partner/salesforce.com/00D5f000005KcCnEAK/0YL5f000000CabWGAS",
        "detail": {"payload": {"ChangeEventHeader": base, **fields}},
    }


def test_given_the_specs_minimal_relay_message_when_parsed_then_every_header_field_is_read() -> None:
    event = parse_envelope(json.dumps(envelope()))
    assert (event.entity, event.change_type, event.record_ids) == ("Lead", "UPDATE", (LEAD,))
    assert event.changed_fields == ("Status", "LastModifiedDate")
    assert event.commit_at == dt.datetime(2024, 4, 9, 20, 19, 25, tzinfo=dt.UTC)
    assert event.fields == {"Status": "Working", "LastModifiedDate": 1712693965000}
    assert not event.is_echo and not event.is_gap


@pytest.mark.parametrize("stamp", [1712693965000, "1712693965000", "2024-04-09T20:19:25.000Z", "2024-04-09T20:19:25Z"])
def test_given_a_commit_timestamp_in_any_seen_form_when_parsed_then_it_is_the_same_instant(stamp: Any) -> None:
    assert parse_envelope(envelope(commitTimestamp=stamp)).commit_at == dt.datetime(
        2024, 4, 9, 20, 19, 25, tzinfo=dt.UTC
    )


def test_given_pub_sub_bitmaps_when_parsed_then_the_changed_fields_are_unknown() -> None:
    assert parse_envelope(envelope(changedFields=["0x650004E0", "4-0x10"])).changed_fields is None
    assert parse_envelope(envelope(changedFields=None)).changed_fields is None


def test_given_compound_values_nested_or_dotted_when_parsed_then_they_are_the_stored_components() -> None:
    fields = {
        "Name": {"FirstName": "Ada", "LastName": "Lovelace"},
        "Address": {"City": "London"},
        "LastModifiedDate": 1712693965000,
    }
    event = parse_envelope(envelope(fields=fields, changedFields=["Name.LastName", "Address.City", "LastModifiedDate"]))
    assert event.fields == {
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "City": "London",
        "LastModifiedDate": 1712693965000,
    }
    assert event.changed_fields == ("LastName", "City", "LastModifiedDate")
    assert stored_name("BillingAddress.Street") == "BillingStreet"


def test_given_custom_objects_echoes_gaps_and_wildcards_when_parsed_then_each_is_recognised() -> None:
    assert event_entity("Foo__ChangeEvent") == "Foo__c" and event_entity("LeadChangeEvent") == "Lead"
    assert event_entity("My_Event__e") is None
    assert parse_envelope(envelope(changeOrigin="com/salesforce/api/rest/59.0;client=sfsync")).is_echo
    overflow = parse_envelope(envelope(changeType="GAP_OVERFLOW", recordIds=[], fields={}))
    assert overflow.is_gap and overflow.record_ids == ()
    wildcard = parse_envelope(envelope(recordIds=["00Q*"]))
    assert wildcard.wildcard and wildcard.record_ids == ()
    assert parse_envelope(envelope(recordIds=[LEAD[:15]])).record_ids == (LEAD,)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda e: e.pop("detail"), "no detail.payload"),
        (lambda e: e.update({"detail-type": "My_Event__e"}), "not a change event"),
        (lambda e: e["detail"]["payload"].pop("ChangeEventHeader"), "no ChangeEventHeader"),
        (lambda e: e["detail"]["payload"]["ChangeEventHeader"].update(changeType="SNAPSHOT"), "changeType"),
        (lambda e: e["detail"]["payload"]["ChangeEventHeader"].update(recordIds=["00Q5g00000AbCdEAAA"]), "malformed"),
        (lambda e: e["detail"]["payload"]["ChangeEventHeader"].update(recordIds=[]), "without recordIds"),
        (lambda e: e["detail"]["payload"]["ChangeEventHeader"].update(entityName="Contact"), "does not match"),
        (lambda e: e["detail"]["payload"]["ChangeEventHeader"].update(commitTimestamp="yesterday"), "timestamp"),
        (lambda e: e["detail"]["payload"].update({"bad name": 1}), "not a field name"),
        (lambda e: e["detail"]["payload"].update({"Tags": [1, 2]}), "holds a list"),
    ],
)
def test_given_a_malformed_envelope_when_parsed_then_one_clear_error_names_the_problem(
    change: Any, problem: str
) -> None:
    body = envelope()
    change(body)
    with pytest.raises(InvalidChangeEvent, match=problem):
        parse_envelope(body)
    with pytest.raises(InvalidChangeEvent, match="not JSON"):
        parse_envelope("{not json")


SELECTION = Selection(
    fields=(
        "Id",
        "SystemModstamp",
        "IsDeleted",
        "Status",
        "LastModifiedDate",
        "NumberOfEmployees",
        "HasOptedOutOfEmail",
        "CloseDate",
    ),
    datetime_fields=frozenset({"SystemModstamp", "LastModifiedDate"}),
    types={
        "Status": "picklist",
        "LastModifiedDate": "datetime",
        "NumberOfEmployees": "int",
        "HasOptedOutOfEmail": "boolean",
        "CloseDate": "date",
    },
)


def test_given_values_as_relay_or_cometd_encodes_them_when_converted_then_they_are_rest_json_values() -> None:
    assert convert_value(1712693965000, "datetime") == "2024-04-09T20:19:25.000Z"
    assert convert_value("2024-04-09T20:19:25.000+0000", "datetime") == "2024-04-09T20:19:25.000Z"
    assert convert_value(1712620800000, "date") == "2024-04-09" == convert_value(19822, "date")
    assert convert_value("2024-04-09", "date") == "2024-04-09"
    assert convert_value(None, "int") is None and convert_value(12, "int") == 12


def test_given_an_update_when_read_then_only_changed_selected_fields_are_taken_and_nulls_are_kept() -> None:
    event = parse_envelope(
        envelope(
            changedFields=["Status", "NumberOfEmployees", "Formula__c", "LastModifiedDate"],
            fields={"Status": "Open", "LastModifiedDate": 1712693965000, "Untouched": "x"},
        )
    )
    change = payload_change(event, SELECTION)
    assert not isinstance(change, str)
    assert change.stamp == "2024-04-09T20:19:25.000Z"
    assert change.values == {
        "Status": "Open",
        "NumberOfEmployees": None,
        "LastModifiedDate": "2024-04-09T20:19:25.000Z",
    }


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ({"fields": {"Status": "Open"}}, "no LastModifiedDate"),
        ({"changedFields": ["0x650004E0"]}, "changed fields unknown"),
        (
            {
                "fields": {"NumberOfEmployees": "many", "LastModifiedDate": 1712693965000},
                "changedFields": ["NumberOfEmployees"],
            },
            "not a number",
        ),
    ],
)
def test_given_a_payload_that_cannot_be_applied_safely_then_the_reason_is_given_and_the_record_is_re_read(
    header: dict[str, Any], why: str
) -> None:
    change = payload_change(parse_envelope(envelope(**header)), SELECTION)
    assert isinstance(change, str) and why in change


def test_given_payload_fields_describe_does_not_show_then_they_are_named() -> None:
    event = parse_envelope(envelope(fields={"Secret__c": "x", "LastModifiedDate": 1}, changedFields=["Secret__c"]))
    assert unknown_fields(event, frozenset({"Status", "LastModifiedDate"})) == ["Secret__c"]


def _change(change_type: str, name: str, *, commit_number: int, sequence: int) -> Any:
    """A PayloadChange of one instant (the emulator's frozen clock: stamps and commit times equal)."""
    event = parse_envelope(
        envelope(
            changeType=change_type,
            commitNumber=commit_number,
            sequenceNumber=sequence,
            changedFields=["Status", "LastModifiedDate"],
            fields={"Status": name, "LastModifiedDate": 1712693965000},
        )
    )
    change = payload_change(event, SELECTION)
    assert not isinstance(change, str)
    return change


def test_given_changes_of_one_instant_when_folded_then_commit_order_decides_not_the_sequence_in_a_transaction() -> None:
    """A conversion creates a record as the 4th change of its transaction; an update committed after it is the
    1st of its own: the update must win (found by the convergence property)."""
    from sfsync.changes.apply import PayloadChange, _merge
    from sfsync.core.registry import build_registry

    spec = build_registry(["Lead"], []).get("Lead")
    created = _change("CREATE", "Created", commit_number=10, sequence=4)
    updated = _change("UPDATE", "Updated", commit_number=11, sequence=1)
    ordered = sorted([updated, created], key=PayloadChange.order)
    assert ordered == [created, updated]
    row, why = _merge(spec, LEAD, None, ordered, SELECTION)
    assert why is None and row is not None and row["Status"] == "Updated"


def test_given_a_version_read_from_salesforce_when_an_event_of_the_same_stamp_arrives_then_it_is_kept() -> None:
    """A read at a stamp holds every change of that stamp: a late event of it must not write older values."""
    from sfsync.changes.apply import _WHY_REREAD_ORDER, _merge
    from sfsync.core.registry import build_registry

    spec = build_registry(["Lead"], []).get("Lead")
    stored = {"Id": LEAD, "Status": "Final", "SystemModstamp": "2024-04-09T20:19:25.000Z", "_cycle_id": "Lead-x"}
    late = _change("UPDATE", "Earlier", commit_number=10, sequence=1)
    assert _merge(spec, LEAD, stored, [late], SELECTION) == (None, None)
    merged = {**stored, "_cycle_id": "cdc-event-20240409T201925"}
    row, why = _merge(spec, LEAD, merged, [late], SELECTION)
    assert row is None and why == _WHY_REREAD_ORDER  # the order of the two is only known in Salesforce


@pytest.mark.parametrize("two_way", [False, True])
def test_given_stored_numbers_beyond_a_float_when_an_update_of_another_field_is_merged_then_they_are_kept_exactly(
    two_way: bool,
) -> None:
    """Number(18, 0) and 18-digit decimals do not fit a float: the merged row must not round the fields the
    event did not change (it did: 123456789012345678 was written back as 123456789012345680)."""
    from decimal import Decimal

    from sfsync.changes.apply import _merge
    from sfsync.core.registry import build_registry
    from sfsync.items.codec import to_item
    from sfsync.items.snapshot import with_base

    spec = build_registry(["Lead" if two_way else "Account"], []).get("Lead" if two_way else "Account")
    selection = Selection(
        fields=("Id", "SystemModstamp", "IsDeleted", "Status", "Whole", "Fraction", "Short"),
        datetime_fields=frozenset({"SystemModstamp", "LastModifiedDate"}),
        types={"Status": "picklist", "Whole": "double", "Fraction": "double", "Short": "currency"},
    )
    exact = {
        "Whole": Decimal("123456789012345678"),
        "Fraction": Decimal("1234567890123456.78"),
        "Short": Decimal("0.1"),
    }
    stored: dict[str, Any] = {"Id": LEAD, "Status": "Open", **exact, "SystemModstamp": "2024-04-09T20:19:20.000Z"}
    stored["_cycle_id"] = "Lead-x"
    if two_way:
        with_base(stored)
    row, why = _merge(spec, LEAD, stored, [_change("UPDATE", "Working", commit_number=1, sequence=1)], selection)
    assert why is None and row is not None and row["Status"] == "Working"
    item = to_item(
        spec,
        row,
        cycle_id="cdc-event-x",
        synced_at=dt.datetime(2024, 4, 9, 20, 19, 30, tzinfo=dt.UTC),
        datetime_fields=selection.datetime_fields,
    )
    assert {name: item[name] for name in exact} == exact
