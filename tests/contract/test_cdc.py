"""Spec §9 change events: what a subscriber of the emulated org receives for changes made over
real HTTPS (simple-salesforce) or by a user (admin API), in CometD form and in the Event Relay →
EventBridge envelope (§9.6), through a pluggable sink.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sfsync_emulator.cdc import ChangeEvent, relay_envelope
from sfsync_emulator.clock import Clock
from sfsync_emulator.emulator import Emulator
from sfsync_emulator.schema import datetime_to_ms, parse_datetime_ms

pytestmark = pytest.mark.contract

START = dt.datetime(2026, 11, 24, 12, 0, 0, tzinfo=dt.UTC)
CLIENT = {"Sforce-Call-Options": "client=sfsync-writeback"}
REST_ORIGIN = "com/salesforce/api/rest/59.0"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    """Overrides the suite-wide emulator: an empty org on a held clock."""
    with Emulator.start(seed=4, records=0, clock=Clock(datetime_to_ms(START))) as running:
        yield running


class Recorder:
    """A pluggable sink: keeps every event delivered to it."""

    def __init__(self) -> None:
        self.events: list[ChangeEvent] = []

    def __call__(self, event: ChangeEvent) -> None:
        self.events.append(event)

    def payloads(self) -> list[dict[str, Any]]:
        return [e.cometd()["data"]["payload"] for e in self.events]

    def headers(self) -> list[dict[str, Any]]:
        return [p["ChangeEventHeader"] for p in self.payloads()]


@pytest.fixture
def sink(emu: Emulator) -> Iterator[Recorder]:
    recorder = Recorder()
    unsubscribe = emu.org.cdc.subscribe(recorder)
    yield recorder
    unsubscribe()


def _lead(sf: Any, name: str, headers: dict[str, str] | None = None) -> str:
    return str(sf.Lead.create({"LastName": name, "Company": f"{name} Co"}, headers=headers)["id"])


# ------------------------------------------------------------------------------- header fields


def test_given_rest_create_with_call_options_then_create_event_with_every_header_field(emu, sf, sink):
    emu.clock.advance(1)
    lid = _lead(sf, "Created", CLIENT)

    assert len(sink.events) == 1
    message = sink.events[0].cometd()
    assert message["channel"] == "/data/LeadChangeEvent"
    assert isinstance(message["data"]["event"]["replayId"], int)
    payload = message["data"]["payload"]
    header = payload["ChangeEventHeader"]
    assert header["entityName"] == "Lead"
    assert header["recordIds"] == [lid]
    assert header["changeType"] == "CREATE"
    assert header["changedFields"] == []
    assert header["changeOrigin"] == f"{REST_ORIGIN};client=sfsync-writeback"
    assert UUID_RE.match(header["transactionKey"])
    assert header["sequenceNumber"] == 1
    assert header["commitTimestamp"] == emu.clock.now_ms()
    assert isinstance(header["commitNumber"], int)
    assert header["commitUser"] == emu.org.integration_user_id
    assert payload["LastName"] == "Created" and payload["Company"] == "Created Co"
    assert parse_datetime_ms(payload["CreatedDate"]) == emu.clock.now_ms()
    assert "IsDeleted" not in payload and "SystemModstamp" not in payload


def test_given_rest_update_then_changed_fields_and_values_only_and_origin_from_call_options(emu, sf, sink):
    lid = _lead(sf, "Updated")
    emu.clock.advance(3)
    sf.Lead.update(lid, {"Rating": "Hot", "LastName": "Updated"}, headers=CLIENT)  # LastName unchanged
    sf.Lead.update(lid, {"Rating": "Warm"})  # no call options

    created, tagged, untagged = sink.payloads()
    assert created["ChangeEventHeader"]["changeOrigin"] == REST_ORIGIN
    h = tagged["ChangeEventHeader"]
    assert h["changeType"] == "UPDATE" and h["recordIds"] == [lid]
    assert set(h["changedFields"]) == {"Rating", "LastModifiedDate"}
    assert h["changeOrigin"] == f"{REST_ORIGIN};client=sfsync-writeback"
    assert tagged["Rating"] == "Hot" and "LastName" not in tagged and "Company" not in tagged
    assert parse_datetime_ms(tagged["LastModifiedDate"]) == emu.clock.now_ms()
    assert untagged["ChangeEventHeader"]["changeOrigin"] == REST_ORIGIN
    assert untagged["Rating"] == "Warm"


def test_given_no_op_update_then_no_event(emu, sf, sink):
    lid = _lead(sf, "Same")
    sf.Lead.update(lid, {"LastName": "Same"})
    assert [h["changeType"] for h in sink.headers()] == ["CREATE"]


def test_given_user_change_then_empty_change_origin_and_user_as_commit_user(emu, sink):
    lid = emu.admin.create("Lead", {"LastName": "ByUser", "Company": "U"})
    emu.admin.update("Lead", lid, {"Rating": "Cold"})
    headers = sink.headers()
    assert [h["changeType"] for h in headers] == ["CREATE", "UPDATE"]
    assert {h["changeOrigin"] for h in headers} == {""}
    assert {h["commitUser"] for h in headers} == {emu.org.admin_user_id}


def test_given_delete_and_undelete_then_header_only_delete_and_full_undelete(emu, sf, sink):
    lid = _lead(sf, "Phoenix")
    sf.Lead.delete(lid, headers=CLIENT)
    emu.admin.undelete("Lead", lid)

    created, deleted, undeleted = sink.payloads()
    assert deleted["ChangeEventHeader"]["changeType"] == "DELETE"
    assert deleted["ChangeEventHeader"]["changedFields"] == []
    assert deleted["ChangeEventHeader"]["changeOrigin"].endswith("client=sfsync-writeback")
    assert set(deleted) == {"ChangeEventHeader"}
    assert undeleted["ChangeEventHeader"]["changeType"] == "UNDELETE"
    assert undeleted["LastName"] == "Phoenix"
    assert created["ChangeEventHeader"]["transactionKey"] != deleted["ChangeEventHeader"]["transactionKey"]


# ------------------------------------------------------------------------------- transactions


def test_given_lead_conversion_then_one_transaction_key_and_ordered_sequence_numbers(emu, sf, sink):
    lid = _lead(sf, "Convert")
    sink.events.clear()
    result = emu.admin.convert_lead(lid)

    headers = sink.headers()
    assert len({h["transactionKey"] for h in headers}) == 1
    assert [h["sequenceNumber"] for h in headers] == list(range(1, len(headers) + 1))
    kinds = [(h["entityName"], h["changeType"]) for h in headers]
    for expected in (("Account", "CREATE"), ("Contact", "CREATE"), ("Opportunity", "CREATE"), ("Lead", "UPDATE")):
        assert expected in kinds
    assert kinds[-1] == ("Lead", "UPDATE")
    lead_update = sink.payloads()[-1]
    assert lead_update["ChangeEventHeader"]["recordIds"] == [lid]
    assert lead_update["IsConverted"] is True
    assert lead_update["ConvertedContactId"] == result["contactId"]
    assert "LastModifiedDate" not in lead_update["ChangeEventHeader"]["changedFields"]
    assert {"IsConverted", "ConvertedAccountId", "ConvertedContactId"} <= set(
        lead_update["ChangeEventHeader"]["changedFields"]
    )
    assert len({h["commitTimestamp"] for h in headers}) == 1


def test_given_mass_update_with_same_change_then_one_event_with_merged_record_ids(emu, sf, sink):
    ids = [_lead(sf, f"Mass{i}") for i in range(4)]
    sink.events.clear()
    emu.admin.mass_update("Lead", ids, {"Rating": "Hot"})

    assert len(sink.events) == 1
    header = sink.headers()[0]
    assert header["changeType"] == "UPDATE"
    assert sorted(header["recordIds"]) == sorted(ids)
    assert sink.payloads()[0]["Rating"] == "Hot"


def test_given_all_or_none_collection_failure_then_no_event_at_all(emu, sf, sink):
    body = {
        "allOrNone": True,
        "records": [
            {"attributes": {"type": "Lead"}, "LastName": "Good", "Company": "G"},
            {"attributes": {"type": "Lead"}, "LastName": "Bad"},  # Company missing
        ],
    }
    results = sf.restful("composite/sobjects", method="POST", json=body)
    assert not any(r["success"] for r in results)
    assert sink.events == []


# ------------------------------------------------------------------------------- gaps, overflow


def test_given_archived_activity_then_gap_update_header_only(emu, sink):
    lid = emu.admin.create("Lead", {"LastName": "Archivist", "Company": "A"})
    task = emu.admin.create("Task", {"Subject": "Old", "WhoId": lid})
    sink.events.clear()
    emu.admin.archive("Task", task)
    (payload,) = sink.payloads()
    assert set(payload) == {"ChangeEventHeader"}
    assert payload["ChangeEventHeader"]["changeType"] == "GAP_UPDATE"
    assert payload["ChangeEventHeader"]["recordIds"] == [task]
    assert payload["ChangeEventHeader"]["sequenceNumber"] == 1


def test_given_injected_gap_and_overflow_then_header_only_events_delivered(emu, sf, sink):
    lid = _lead(sf, "Gapped")
    sink.events.clear()
    gap = emu.admin.inject_gap("Lead", [lid], "GAP_CREATE")
    overflow = emu.admin.inject_overflow("Contact")
    gap_h, over_h = sink.headers()
    assert gap_h["changeType"] == "GAP_CREATE" and gap_h["recordIds"] == [lid]
    assert over_h["changeType"] == "GAP_OVERFLOW" and over_h["entityName"] == "Contact"
    assert over_h["recordIds"] == []
    assert {frozenset(p) for p in sink.payloads()} == {frozenset({"ChangeEventHeader"})}
    assert gap["data"]["payload"]["ChangeEventHeader"]["changeType"] == "GAP_CREATE"
    assert overflow["channel"] == "/data/ContactChangeEvent"
    with pytest.raises(ValueError, match="gap"):
        emu.admin.inject_gap("Lead", [lid], "UPDATE")


def test_given_transaction_over_the_overflow_threshold_then_rest_becomes_one_gap_overflow(emu, sf, sink):
    ids = [_lead(sf, f"Flood{i}") for i in range(4)]
    sink.events.clear()
    bus = emu.org.cdc
    saved = bus.overflow_threshold
    # an update costs one per changed field: Rating, LastModifiedById (API user -> admin), LastModifiedDate
    bus.overflow_threshold = 3
    try:
        emu.admin.mass_update("Lead", ids, {"Rating": "Cold"})
    finally:
        bus.overflow_threshold = saved
    headers = sink.headers()
    assert [h["changeType"] for h in headers] == ["UPDATE", "GAP_OVERFLOW"]
    assert len(headers[0]["recordIds"]) == 1
    assert headers[1]["recordIds"] == [] and headers[1]["entityName"] == "Lead"
    assert headers[0]["transactionKey"] == headers[1]["transactionKey"]


# ------------------------------------------------------------------------------- Event Relay


def test_given_relay_sink_then_eventbridge_envelopes_of_spec_9_6(emu, sf):
    envelopes: list[dict[str, Any]] = []
    channel = "0YL5g0000000001AAA"
    unsubscribe = emu.org.cdc.subscribe(lambda ev: envelopes.append(relay_envelope(ev, emu.org.org_id, channel)))
    try:
        emu.clock.advance(7)
        now = emu.clock.now()
        lid = _lead(sf, "Relayed", CLIENT)
        sf.Lead.update(lid, {"Status": "Working - Contacted"}, headers=CLIENT)
        project = sf.Project__c.create({"Name": "Relay Project"})["id"]
    finally:
        unsubscribe()

    created, updated, custom = envelopes
    for env in envelopes:
        assert set(env) == {
            "version",
            "id",
            "detail-type",
            "source",
            "account",
            "time",
            "region",
            "resources",
            "detail",
        }
        assert env["version"] == "0"
        assert uuid.UUID(env["id"])
        assert env["source"] == f"aws.partner/salesforce.com/{emu.org.org_id}/{channel}"
        assert re.fullmatch(r"\d{12}", env["account"]) and env["region"] and env["resources"] == []
        assert env["time"] == now.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert set(env["detail"]) == {"payload"}
    assert len({e["id"] for e in envelopes}) == 3
    assert created["detail-type"] == "LeadChangeEvent" and custom["detail-type"] == "Project__ChangeEvent"
    header = updated["detail"]["payload"]["ChangeEventHeader"]
    assert header["changeType"] == "UPDATE" and header["recordIds"] == [lid]
    assert header["changeOrigin"] == f"{REST_ORIGIN};client=sfsync-writeback"
    assert header["nulledFields"] == [] and header["diffFields"] == []
    assert set(header["changedFields"]) == {"Status", "LastModifiedDate"}
    assert updated["detail"]["payload"]["Status"] == "Working - Contacted"
    # Relay carries datetimes as epoch milliseconds
    assert updated["detail"]["payload"]["LastModifiedDate"] == datetime_to_ms(now)
    assert header["commitTimestamp"] == datetime_to_ms(now)
    assert custom["detail"]["payload"]["ChangeEventHeader"]["recordIds"] == [project]
    assert relay_envelope(emu.org.cdc.since(0)[-1], emu.org.org_id, channel)["id"] == custom["id"]  # stable id


def test_given_unsubscribed_sink_then_it_receives_nothing_more(emu, sf):
    got: list[ChangeEvent] = []
    unsubscribe = emu.org.cdc.subscribe(got.append)
    _lead(sf, "Heard")
    unsubscribe()
    _lead(sf, "Unheard")
    assert [e.fields.get("LastName") for e in got] == ["Heard"]


# ------------------------------------------------------------------------------- replay, retention


def test_given_admin_http_cdc_events_then_replay_from_a_position(emu, sf, raw):
    last = emu.org.cdc.since(0)[-1].replay_id if emu.org.cdc.since(0) else 0
    first = _lead(sf, "Replay1")
    second = _lead(sf, "Replay2")
    with emu.session() as s:
        resp = s.get(f"{emu.instance_url}/__admin/cdc_events", params={"since": last}, timeout=30)
    assert resp.status_code == 200
    events = resp.json()["result"]
    assert [e["data"]["payload"]["ChangeEventHeader"]["recordIds"] for e in events] == [[first], [second]]
    replay_ids = [e["data"]["event"]["replayId"] for e in events]
    assert replay_ids == sorted(replay_ids) and replay_ids[0] > last
    again = raw.admin("cdc_events", since=replay_ids[0])
    assert [e["data"]["payload"]["ChangeEventHeader"]["recordIds"] for e in again] == [[second]]


def test_given_events_older_than_72_hours_then_no_longer_retained(emu, sf):
    lid = _lead(sf, "Ephemeral")
    assert any(e.record_ids == [lid] for e in emu.org.cdc.since(0))
    emu.clock.advance(72 * 3600 + 1)
    assert not any(e.record_ids == [lid] for e in emu.org.cdc.since(0))


# ------------------------------------------------------------------------------- origins per API


def _ingest(raw: Any, obj: str, operation: str, data: bytes, headers: dict[str, str] | None = None) -> str:
    job = raw.request("POST", "/jobs/ingest", json={"object": obj, "operation": operation}, headers=headers)
    assert job.status_code == 200, job.text
    job_id = str(job.json()["id"])
    upload = raw.session.put(
        f"{raw.base}/jobs/ingest/{job_id}/batches",
        data=data,
        headers=raw.headers({"Content-Type": "text/csv"}),
        timeout=30,
    )
    assert upload.status_code == 201
    assert raw.request("PATCH", f"/jobs/ingest/{job_id}", json={"state": "UploadComplete"}).status_code == 200
    assert raw.get(f"/jobs/ingest/{job_id}").json()["state"] == "JobComplete"
    return job_id


def test_given_bulk_ingest_created_with_call_options_then_every_row_event_names_bulkapi_and_client(emu, raw, sink):
    loader = {"Sforce-Call-Options": "client=bulk-loader"}
    _ingest(raw, "Lead", "insert", b"LastName,Company\nBulkA,A Co\nBulkB,B Co\nBulkC,C Co\n", loader)
    created = [e for e in sink.events if e.change_type == "CREATE"]
    ids = [rid for e in created for rid in e.record_ids]
    assert len(ids) == 3
    assert {e.change_origin for e in created} == {"com/salesforce/api/bulkapi/59.0;client=bulk-loader"}

    update = "Id,Company\n" + "".join(f"{rid},Renamed Co\n" for rid in ids)
    _ingest(raw, "Lead", "update", update.encode())  # no Call-Options on this job: no client part
    _ingest(raw, "Lead", "delete", ("Id\n" + f"{ids[0]}\n").encode(), loader)

    updates = [e for e in sink.events if e.change_type == "UPDATE"]
    deletes = [e for e in sink.events if e.change_type == "DELETE"]
    assert sorted(rid for e in updates for rid in e.record_ids) == sorted(ids)
    assert {e.change_origin for e in updates} == {"com/salesforce/api/bulkapi/59.0"}
    assert [e.record_ids for e in deletes] == [[ids[0]]]
    assert deletes[0].change_origin == "com/salesforce/api/bulkapi/59.0;client=bulk-loader"


def test_given_rest_write_at_another_api_version_then_origin_names_rest_and_that_version(emu, raw, sink):
    resp = raw.request(
        "POST",
        "/services/data/v58.0/sobjects/Lead",
        json={"LastName": "Older", "Company": "Older Co"},
        headers=CLIENT,
    )
    assert resp.status_code == 201
    (event,) = sink.events
    assert event.change_origin == "com/salesforce/api/rest/58.0;client=sfsync-writeback"


# ------------------------------------------------------------------ relay sink and delivery faults


def test_given_changes_when_relay_events_read_then_envelopes_in_commit_order_in_python_and_http(emu, sf, raw):
    start = emu.org.cdc.since(0)[-1].replay_id if emu.org.cdc.since(0) else 0
    first = _lead(sf, "RelayOne", CLIENT)
    second = _lead(sf, "RelayTwo", CLIENT)

    envelopes = emu.relay_events(since=start)
    resp = raw.session.get(f"{emu.instance_url}/__admin/relay_events", params={"since": start}, timeout=30)
    over_http = resp.json()["result"]

    assert [e["detail"]["payload"]["ChangeEventHeader"]["recordIds"] for e in envelopes] == [[first], [second]]
    assert over_http == envelopes
    assert {e["detail-type"] for e in envelopes} == {"LeadChangeEvent"}
    assert all(e["source"].startswith(f"aws.partner/salesforce.com/{emu.org.org_id}/0YL") for e in envelopes)
    other = emu.relay_events(since=start, channel_id="0YL000000000009AAA")
    assert {e["source"] for e in other} == {f"aws.partner/salesforce.com/{emu.org.org_id}/0YL000000000009AAA"}


def test_given_duplicate_injected_then_sink_gets_the_same_event_again_with_a_new_replay_id(emu, sf, raw, sink):
    lid = _lead(sf, "Twice", CLIENT)
    (original,) = sink.events

    dup = emu.inject_duplicate()
    over_http = raw.admin("inject_duplicate", replay_id=original.replay_id)

    assert [e.record_ids for e in sink.events] == [[lid], [lid], [lid]]
    assert dup.replay_id > original.replay_id
    assert (dup.transaction_key, dup.sequence_number) == (original.transaction_key, original.sequence_number)
    header = original.cometd()["data"]["payload"]["ChangeEventHeader"]
    assert over_http["data"]["payload"]["ChangeEventHeader"] == header
    envelopes = emu.relay_events(since=original.replay_id - 1)
    assert len(envelopes) == 3 and len({e["id"] for e in envelopes}) == 3  # distinct deliveries


def test_given_out_of_order_injected_then_next_events_reach_the_sink_reversed(emu, sf, raw, sink):
    emu.inject_out_of_order(2)
    first = _lead(sf, "OrderOne")
    assert sink.events == []  # held back until the second arrives
    second = _lead(sf, "OrderTwo")
    raw.admin("reorder_next", n=3)
    third, fourth, fifth = (_lead(sf, f"Order{n}") for n in ("Three", "Four", "Five"))

    delivered = [e.record_ids[0] for e in sink.events]
    assert delivered == [second, first, fifth, fourth, third]
    replayed = [e.record_ids[0] for e in emu.org.cdc.since(sink.events[1].replay_id - 1)]
    assert replayed == [first, second, third, fourth, fifth]  # replay keeps commit order


def test_given_nothing_to_duplicate_or_bad_reorder_then_admin_says_so(raw):
    resp = raw.session.post(f"{raw.emu.instance_url}/__admin/inject_duplicate", json={"replay_id": 10**9}, timeout=30)
    assert resp.status_code == 400 and resp.json()[0]["errorCode"] == "INVALID_ADMIN_REQUEST"
    resp = raw.session.post(f"{raw.emu.instance_url}/__admin/reorder_next", json={"n": 1}, timeout=30)
    assert resp.status_code == 400 and "at least 2" in resp.json()[0]["message"]
