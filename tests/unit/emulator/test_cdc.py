"""Unit tests of change events, the CDC bus and Event Relay envelopes."""

from __future__ import annotations

import random

import pytest
from sfsync_emulator.cdc import CdcBus, ChangeEvent, PendingChange, change_origin, event_name, relay_envelope
from sfsync_emulator.clock import Clock
from sfsync_emulator.store import Org

from .conftest import START_MS

pytestmark = pytest.mark.unit


def change(rid: str, change_type: str = "UPDATE", **fields: object) -> PendingChange:
    changed = [*fields, "LastModifiedDate"] if change_type == "UPDATE" else []
    return PendingChange("Lead", rid, change_type, changed, dict(fields), frozenset(), "", "005000000000001AAA")


def test_given_origin_variants_then_change_origin_and_event_names_follow_salesforce() -> None:
    assert change_origin("sync") == "com/salesforce/api/rest/59.0;client=sync"
    assert change_origin(None) == "com/salesforce/api/rest/59.0"
    assert change_origin("sync", api=False) == ""
    assert event_name("Lead") == "LeadChangeEvent"
    assert event_name("Project__c") == "Project__ChangeEvent"


def test_given_created_record_then_event_has_all_fields_empty_changed_fields_and_no_system_modstamp(org: Org) -> None:
    rid = org.create("Lead", {"LastName": "Doe", "Company": "Acme"}, origin="engine")
    ev = org.cdc.events[-1]
    assert (ev.entity_name, ev.record_ids, ev.change_type, ev.changed_fields) == ("Lead", [rid], "CREATE", [])
    assert ev.fields["LastName"] == "Doe" and ev.fields["Company"] == "Acme"
    assert "SystemModstamp" not in ev.fields and "IsDeleted" not in ev.fields
    assert ev.commit_timestamp == START_MS and ev.commit_user == org.integration_user_id
    header = ev.payload()["ChangeEventHeader"]
    assert header["changeOrigin"] == "com/salesforce/api/rest/59.0;client=engine"
    assert header["commitNumber"] > 0 and header["sequenceNumber"] == 1


def test_given_same_seed_when_two_orgs_commit_then_transaction_keys_are_identical_and_uuid_shaped(clock: Clock) -> None:
    from sfsync_emulator.catalogue import default_schema

    keys = []
    for _ in range(2):
        org = Org(default_schema(), clock)
        org.create("Lead", {"LastName": "x", "Company": "y"})
        keys.append(org.cdc.events[-1].transaction_key)
    assert keys[0] == keys[1]
    assert len(keys[0]) == 36 and keys[0][14] == "4"


def test_given_identical_updates_in_one_transaction_then_merged_and_different_ones_not() -> None:
    bus = CdcBus(Clock(START_MS), random.Random(1))
    events = bus.publish_transaction(
        [change("a", Rating="Hot"), change("b", Rating="Hot"), change("c", Rating="Cold"), change("d", "DELETE")]
    )
    assert [(e.record_ids, e.sequence_number) for e in events] == [(["a", "b"], 1), (["c"], 2), (["d"], 3)]
    assert len({e.transaction_key for e in events}) == 1


def test_given_transaction_over_threshold_then_first_changes_kept_and_one_gap_overflow_per_entity() -> None:
    bus = CdcBus(Clock(START_MS), random.Random(1), overflow_threshold=3)
    changes = [change(f"r{i}", "CREATE") for i in range(5)]
    changes.append(PendingChange("Contact", "c1", "CREATE", [], {}, frozenset(), "", "u"))
    events = bus.publish_transaction(changes)
    assert [e.change_type for e in events] == ["CREATE"] * 3 + ["GAP_OVERFLOW", "GAP_OVERFLOW"]
    assert [e.entity_name for e in events[3:]] == ["Lead", "Contact"]
    assert all(e.record_ids == [] for e in events[3:])


def test_given_sink_when_events_and_injections_then_sink_sees_them_in_order_with_increasing_replay_ids(
    org: Org,
) -> None:
    seen: list[ChangeEvent] = []
    unsubscribe = org.cdc.subscribe(seen.append)
    rid = org.create("Lead", {"LastName": "Doe", "Company": "Acme"})
    gap = org.cdc.inject_gap("Lead", [rid], "GAP_UPDATE")
    overflow = org.cdc.inject_overflow("Contact")
    dup = org.cdc.inject_duplicate(seen[0])
    assert [e.change_type for e in seen] == ["CREATE", "GAP_UPDATE", "GAP_OVERFLOW", "CREATE"]
    assert gap.record_ids == [rid] and gap.fields == {} and overflow.record_ids == []
    assert dup.transaction_key == seen[0].transaction_key and dup.replay_id > overflow.replay_id
    assert [e.replay_id for e in org.cdc.since(seen[1].replay_id)] == [overflow.replay_id, dup.replay_id]
    unsubscribe()
    org.create("Lead", {"LastName": "Doe", "Company": "Acme"})
    assert len(seen) == 4
    with pytest.raises(ValueError, match="gap change type"):
        org.cdc.inject_gap("Lead", [rid], "UPDATE")


def test_given_events_older_than_retention_then_dropped(org: Org, clock: Clock) -> None:
    org.create("Lead", {"LastName": "Doe", "Company": "Acme"})
    clock.advance(72 * 3600 + 1)
    org.create("Lead", {"LastName": "Doe", "Company": "Acme"})
    assert len(org.cdc.since(0)) == 1


def test_given_update_event_when_relayed_then_eventbridge_envelope_with_payload_and_epoch_dates(
    org: Org, clock: Clock
) -> None:
    rid = org.create("Lead", {"LastName": "Doe", "Company": "Acme"})
    clock.advance(2)
    org.update("Lead", rid, {"Status": "Working - Contacted"}, origin="my-sync")
    ev = org.cdc.events[-1]
    env = relay_envelope(ev, org.org_id, "0YL5f000000CabWGAS")
    assert env["version"] == "0" and env["detail-type"] == "LeadChangeEvent"
    assert env["source"] == f"aws.partner/salesforce.com/{org.org_id}/0YL5f000000CabWGAS"
    assert env["time"] == "2026-11-24T12:00:02Z" and env["resources"] == []
    payload = env["detail"]["payload"]
    assert payload["Status"] == "Working - Contacted"
    assert payload["LastModifiedDate"] == START_MS + 2000
    header = payload["ChangeEventHeader"]
    assert header["changedFields"] == ["Status", "LastModifiedDate"]
    assert header["changeOrigin"].endswith(";client=my-sync")
    assert relay_envelope(ev, org.org_id, "0YL5f000000CabWGAS")["id"] == env["id"]
    cometd = ev.cometd()
    assert cometd["channel"] == "/data/LeadChangeEvent"
    assert cometd["data"]["payload"]["LastModifiedDate"] == "2026-11-24T12:00:02.000+0000"
