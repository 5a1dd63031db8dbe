"""Spec §8 "Data and behaviour" semantics, observed the way the sync observes them: over real HTTPS
through the unmodified simple-salesforce client (raw ``requests`` only where it has no helper).

The emulator's Python admin API is used only to act as a Salesforce user would (create, merge,
convert, archive, ...), to step the virtual clock and to inject faults.  The module runs its own
emulator on a *held* clock, so every timestamp below is exact.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from collections.abc import Iterator
from email.utils import format_datetime
from typing import Any

import pytest
from sfsync_emulator.clock import Clock
from sfsync_emulator.emulator import Emulator
from sfsync_emulator.errors import DmlError
from sfsync_emulator.schema import datetime_to_ms, format_rest_datetime, ms_to_datetime, parse_datetime_ms
from simple_salesforce import (
    Salesforce,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)
from simple_salesforce.exceptions import SalesforceOperationError

pytestmark = pytest.mark.contract

START = dt.datetime(2026, 11, 24, 12, 0, 0, tzinfo=dt.UTC)
DAY_S = 86_400


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    """Overrides the suite-wide emulator for this module: small org on a held clock."""
    with Emulator.start(seed=21, records=300, clock=Clock(datetime_to_ms(START))) as running:
        yield running


# ------------------------------------------------------------------------------- helpers


def _ms(text: str) -> int:
    return parse_datetime_ms(text)


def _one(sf: Salesforce, soql: str, *, all_rows: bool = False) -> dict[str, Any] | None:
    records = sf.query_all(soql, include_deleted=all_rows)["records"]
    assert len(records) <= 1, records
    return records[0] if records else None


def _ids(sf: Salesforce, soql: str, *, all_rows: bool = False) -> set[str]:
    return {r["Id"] for r in sf.query_all(soql, include_deleted=all_rows)["records"]}


def _window(emu: Emulator, back_s: int = 3600) -> tuple[dt.datetime, dt.datetime]:
    """A getUpdated/getDeleted window ending two minutes after now (minute granularity)."""
    now = emu.clock.now()
    return now - dt.timedelta(seconds=back_s), now + dt.timedelta(minutes=2)


def _error_code(exc: Any) -> str:
    return str(exc.content[0].get("errorCode") or exc.content[0].get("statusCode"))


def _lead(emu: Emulator, name: str, **extra: Any) -> str:
    return str(emu.admin.create("Lead", {"LastName": name, "Company": f"{name} Co", **extra}))


# ------------------------------------------------------------------------------- §8.1 stamps


def test_given_system_process_update_when_queried_then_only_system_modstamp_moved(emu, sf):
    lid = _lead(emu, "Sysproc", Rating="Cold")
    created = emu.clock.now_ms()
    emu.clock.advance(10)
    emu.admin.system_update("Lead", lid, {"Rating": "Hot"})

    row = _one(sf, f"SELECT Rating, LastModifiedDate, SystemModstamp FROM Lead WHERE Id = '{lid}'")
    assert row is not None
    assert row["Rating"] == "Hot"
    assert _ms(row["LastModifiedDate"]) == created
    assert _ms(row["SystemModstamp"]) == created + 10_000
    # a LastModifiedDate cursor misses the change, a SystemModstamp cursor sees it
    since = format_rest_datetime(created + 1000)
    assert lid not in _ids(sf, f"SELECT Id FROM Lead WHERE LastModifiedDate >= {since}")
    assert lid in _ids(sf, f"SELECT Id FROM Lead WHERE SystemModstamp >= {since}")

    emu.clock.advance(5)
    emu.admin.update("Lead", lid, {"Rating": "Warm"})
    row = _one(sf, f"SELECT LastModifiedDate, SystemModstamp FROM Lead WHERE Id = '{lid}'")
    assert row is not None
    assert _ms(row["LastModifiedDate"]) == _ms(row["SystemModstamp"]) == created + 15_000


def test_given_formula_over_parent_when_parent_changes_then_child_value_changes_without_stamp_change(emu, sf):
    acc = emu.admin.create("Account", {"Name": "Formula Parent", "Rating": "Cold"})
    con = emu.admin.create("Contact", {"LastName": "Formula Child", "AccountId": acc})
    soql = f"SELECT Account_Rating__c, SystemModstamp, LastModifiedDate FROM Contact WHERE Id = '{con}'"
    before = _one(sf, soql)
    assert before is not None and before["Account_Rating__c"] == "Cold"
    emu.clock.advance(120)
    emu.admin.update("Account", acc, {"Rating": "Hot"})

    after = _one(sf, soql)
    assert after is not None
    assert after["Account_Rating__c"] == "Hot"
    assert after["SystemModstamp"] == before["SystemModstamp"]
    assert after["LastModifiedDate"] == before["LastModifiedDate"]
    assert sf.Contact.get(con)["Account_Rating__c"] == "Hot"
    start, end = emu.clock.now() - dt.timedelta(seconds=60), emu.clock.now() + dt.timedelta(minutes=2)
    assert con not in sf.Contact.updated(start, end)["ids"]
    assert acc in sf.Account.updated(start, end)["ids"]


# ------------------------------------------------------------------------------- §8.3 deletes


def test_given_api_delete_then_query_hides_query_all_shows_is_deleted_and_get_deleted_lists(emu, sf):
    lid = sf.Lead.create({"LastName": "Binned", "Company": "Bin Co"})["id"]
    emu.clock.advance(30)
    deleted_at = emu.clock.now_ms()
    assert sf.Lead.delete(lid) == 204

    assert _one(sf, f"SELECT Id FROM Lead WHERE Id = '{lid}'") is None
    row = _one(sf, f"SELECT Id, IsDeleted, SystemModstamp FROM Lead WHERE Id = '{lid}'", all_rows=True)
    assert row is not None and row["IsDeleted"] is True
    assert _ms(row["SystemModstamp"]) == deleted_at
    with pytest.raises(SalesforceResourceNotFound):
        sf.Lead.get(lid)
    got = sf.Lead.deleted(*_window(emu))
    assert {"id": lid, "deletedDate": format_rest_datetime(deleted_at)} in got["deletedRecords"]
    assert lid not in sf.Lead.updated(*_window(emu))["ids"]


def test_given_recycle_bin_when_fifteen_days_pass_then_purged_from_query_all(emu, sf):
    lid = _lead(emu, "Purged")
    emu.admin.delete("Lead", lid)
    deleted_at = emu.clock.now()
    emu.clock.advance(14 * DAY_S)
    assert _one(sf, f"SELECT Id, IsDeleted FROM Lead WHERE Id = '{lid}'", all_rows=True) is not None
    window = (deleted_at - dt.timedelta(minutes=1), emu.clock.now())
    assert lid in {d["id"] for d in sf.Lead.deleted(*window)["deletedRecords"]}

    emu.clock.advance(DAY_S + 120)
    sf = emu.salesforce()
    assert _one(sf, f"SELECT Id FROM Lead WHERE Id = '{lid}'", all_rows=True) is None
    with pytest.raises(SalesforceMalformedRequest) as exc:  # its day is now beyond getDeleted's window
        sf.Lead.deleted(*window)
    assert _error_code(exc.value) == "INVALID_REPLICATION_DATE"


def test_given_empty_recycle_bin_or_hard_delete_then_gone_from_query_all_but_listed_by_get_deleted(emu, sf):
    binned, hard = _lead(emu, "Emptied"), _lead(emu, "Hard")
    emu.clock.advance(60)
    emu.admin.delete("Lead", binned)
    emu.admin.hard_delete("Lead", hard)
    assert _ids(sf, f"SELECT Id FROM Lead WHERE Id IN ('{binned}', '{hard}')", all_rows=True) == {binned}
    assert emu.admin.empty_recycle_bin("Lead") >= 1

    assert _ids(sf, f"SELECT Id FROM Lead WHERE Id IN ('{binned}', '{hard}')", all_rows=True) == set()
    with pytest.raises(SalesforceResourceNotFound):
        sf.Lead.get(binned)
    listed = {d["id"] for d in sf.Lead.deleted(*_window(emu))["deletedRecords"]}
    assert {binned, hard} <= listed


def test_given_deleted_record_when_undeleted_then_live_with_is_deleted_false_and_new_stamp(emu, sf):
    lid = _lead(emu, "Lazarus")
    emu.admin.delete("Lead", lid)
    deleted = _one(sf, f"SELECT SystemModstamp FROM Lead WHERE Id = '{lid}'", all_rows=True)
    assert deleted is not None
    emu.clock.advance(300)
    emu.admin.undelete("Lead", lid)

    row = _one(sf, f"SELECT Id, IsDeleted, SystemModstamp FROM Lead WHERE Id = '{lid}'")
    assert row is not None and row["IsDeleted"] is False
    assert _ms(row["SystemModstamp"]) == _ms(deleted["SystemModstamp"]) + 300_000 == emu.clock.now_ms()
    assert lid in sf.Lead.updated(*_window(emu, 60))["ids"]


def test_given_account_with_children_when_deleted_then_cascade_and_undelete_brings_them_back(emu, sf):
    acc = sf.Account.create({"Name": "Cascade Root"})["id"]
    con = sf.Contact.create({"LastName": "Cascade Kid", "AccountId": acc})["id"]
    opp = sf.Opportunity.create(
        {"Name": "Cascade Deal", "AccountId": acc, "StageName": "Prospecting", "CloseDate": "2026-12-31"}
    )["id"]
    emu.clock.advance(5)
    sf.Account.delete(acc)

    assert _ids(sf, f"SELECT Id FROM Contact WHERE Id = '{con}'") == set()
    assert _ids(sf, f"SELECT Id FROM Opportunity WHERE Id = '{opp}'") == set()
    for obj, rid in (("Contact", con), ("Opportunity", opp)):
        row = _one(sf, f"SELECT IsDeleted, SystemModstamp FROM {obj} WHERE Id = '{rid}'", all_rows=True)
        assert row is not None and row["IsDeleted"] is True
        assert _ms(row["SystemModstamp"]) == emu.clock.now_ms()
    deleted_ids = {d["id"] for d in sf.Contact.deleted(*_window(emu))["deletedRecords"]}
    assert con in deleted_ids

    emu.clock.advance(5)
    emu.admin.undelete("Account", acc)
    assert _ids(sf, f"SELECT Id FROM Contact WHERE AccountId = '{acc}'") == {con}
    assert _ids(sf, f"SELECT Id FROM Opportunity WHERE AccountId = '{acc}'") == {opp}


# ------------------------------------------------------------------------------- §8.4 merge


def test_given_accounts_merged_then_losers_deleted_with_master_record_id_and_children_reparented(emu, sf):
    winner = emu.admin.create("Account", {"Name": "Merge Winner"})
    losers = [emu.admin.create("Account", {"Name": f"Merge Loser {i}"}) for i in range(2)]
    kids = [emu.admin.create("Contact", {"LastName": f"Merge Kid {i}", "AccountId": lo}) for i, lo in enumerate(losers)]
    emu.clock.advance(60)
    emu.admin.merge("Account", winner, losers)

    in_list = ", ".join(f"'{x}'" for x in losers)
    assert _ids(sf, f"SELECT Id FROM Account WHERE Id IN ({in_list})") == set()
    merged = sf.query_all(
        f"SELECT Id, IsDeleted, MasterRecordId FROM Account WHERE IsDeleted = true AND MasterRecordId != null "
        f"AND Id IN ({in_list})",
        include_deleted=True,
    )["records"]
    assert {r["Id"] for r in merged} == set(losers)
    assert {r["MasterRecordId"] for r in merged} == {winner}
    assert _ids(sf, f"SELECT Id FROM Contact WHERE AccountId = '{winner}'") == set(kids)
    assert _one(sf, f"SELECT Id FROM Account WHERE Id = '{winner}'") is not None


# ------------------------------------------------------------------------------- §8.5 conversion


def test_given_lead_converted_then_conversion_fields_set_and_rest_update_cannot_update_converted_lead(emu, sf):
    lid = sf.Lead.create({"LastName": "Convertee", "Company": "Convert Co", "Email": "c@convert.example"})["id"]
    emu.admin.convert_lead(lid)

    lead = sf.Lead.get(lid)
    assert lead["IsConverted"] is True
    assert lead["ConvertedDate"] == emu.clock.now().date().isoformat()
    acc, con, opp = lead["ConvertedAccountId"], lead["ConvertedContactId"], lead["ConvertedOpportunityId"]
    assert sf.Account.get(acc)["Name"] == "Convert Co"
    contact = sf.Contact.get(con)
    assert contact["AccountId"] == acc and contact["Email"] == "c@convert.example"
    assert sf.Opportunity.get(opp)["AccountId"] == acc
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Lead.update(lid, {"Title": "Nope"})
    assert _error_code(exc.value) == "CANNOT_UPDATE_CONVERTED_LEAD"
    assert sf.Lead.get(lid).get("Title") is None


# ------------------------------------------------------------------------------- §8.6 activities


def test_given_archived_task_and_event_then_only_query_all_and_bulk_query_all_return_them(emu, sf):
    lid = _lead(emu, "Busy")
    task = emu.admin.create("Task", {"Subject": "Archived call", "WhoId": lid})
    event = emu.admin.create(
        "Event",
        {
            "Subject": "Old meeting",
            "WhoId": lid,
            "StartDateTime": START.isoformat(),
            "DurationInMinutes": 30,
            "EndDateTime": (START + dt.timedelta(minutes=30)).isoformat(),
            "ActivityDateTime": START.isoformat(),
        },
    )
    emu.admin.archive("Task", task)
    emu.admin.archive("Event", event)

    assert _ids(sf, f"SELECT Id FROM Task WHERE Id = '{task}'") == set()
    assert _ids(sf, f"SELECT Id FROM Event WHERE Id = '{event}'") == set()
    row = _one(sf, f"SELECT Id, IsArchived, IsDeleted FROM Task WHERE Id = '{task}'", all_rows=True)
    assert row is not None and row["IsArchived"] is True and row["IsDeleted"] is False
    assert _ids(sf, f"SELECT Id FROM Event WHERE Id = '{event}'", all_rows=True) == {event}

    soql = f"SELECT Id, IsArchived FROM Task WHERE Id = '{task}'"
    plain = [r for chunk in sf.bulk2.Task.query(soql, wait=0) for r in csv.DictReader(io.StringIO(chunk))]
    every = [r for chunk in sf.bulk2.Task.query_all(soql, wait=0) for r in csv.DictReader(io.StringIO(chunk))]
    assert plain == []
    assert every == [{"Id": task, "IsArchived": "true"}]


# ------------------------------------------------------------------------------- §8.7 members


def test_given_same_lead_added_to_campaign_twice_then_duplicate_value(emu, sf):
    camp = sf.Campaign.create({"Name": "Uniq Campaign"})["id"]
    lid = sf.Lead.create({"LastName": "Member", "Company": "M Co"})["id"]
    sf.CampaignMember.create({"CampaignId": camp, "LeadId": lid, "Status": "Sent"})
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.CampaignMember.create({"CampaignId": camp, "LeadId": lid, "Status": "Sent"})
    assert _error_code(exc.value) == "DUPLICATE_VALUE"
    assert len(_ids(sf, f"SELECT Id FROM CampaignMember WHERE CampaignId = '{camp}'", all_rows=True)) == 1


def test_given_campaign_member_deleted_then_hard_deleted_no_recycle_bin_but_in_get_deleted(emu, sf):
    camp = sf.Campaign.create({"Name": "Hard Member Campaign"})["id"]
    lid = sf.Lead.create({"LastName": "Leaver", "Company": "L Co"})["id"]
    member = sf.CampaignMember.create({"CampaignId": camp, "LeadId": lid, "Status": "Sent"})["id"]
    sf.CampaignMember.delete(member)

    assert _ids(sf, f"SELECT Id FROM CampaignMember WHERE Id = '{member}'", all_rows=True) == set()
    assert member in {d["id"] for d in sf.CampaignMember.deleted(*_window(emu))["deletedRecords"]}
    with pytest.raises(DmlError, match="UNDELETE_FAILED"):
        emu.admin.undelete("CampaignMember", member)
    # the member can be added again: the deleted one does not count for uniqueness
    assert sf.CampaignMember.create({"CampaignId": camp, "LeadId": lid, "Status": "Sent"})["success"] is True


# ------------------------------------------------------------------------------- sharing and FLS


def test_given_record_hidden_by_sharing_then_absent_from_query_query_all_retrieve_and_get_updated(emu, sf):
    seen, hidden = _lead(emu, "Shared"), _lead(emu, "Private")
    emu.admin.set_hidden("Lead", hidden)
    both = f"SELECT Id FROM Lead WHERE Id IN ('{seen}', '{hidden}')"

    assert _ids(sf, both) == {seen}
    assert _ids(sf, both, all_rows=True) == {seen}
    with pytest.raises(SalesforceResourceNotFound):
        sf.Lead.get(hidden)
    retrieved = sf.restful("composite/sobjects/Lead", method="POST", json={"ids": [seen, hidden], "fields": ["Id"]})
    assert [r["Id"] if r else None for r in retrieved] == [seen, None]
    updated = sf.Lead.updated(*_window(emu, 60))["ids"]
    assert seen in updated and hidden not in updated

    emu.admin.set_hidden("Lead", hidden, False)
    assert _ids(sf, both) == {seen, hidden}


def _describe_raw(emu: Emulator, obj: str, since: dt.datetime | None = None) -> Any:
    headers = {"Authorization": f"Bearer {emu.access_token()}"}
    if since is not None:
        headers["If-Modified-Since"] = format_datetime(since, usegmt=True)
    with emu.session() as s:
        return s.get(f"{emu.instance_url}/services/data/v59.0/sobjects/{obj}/describe", headers=headers, timeout=30)


def test_given_field_hidden_by_fls_then_absent_from_describe_invalid_field_and_describe_changes(emu, sf):
    emu.clock.advance(5)
    checked = emu.clock.now()
    assert _describe_raw(emu, "Lead", checked).status_code == 304
    assert "Industry" in {f["name"] for f in sf.Lead.describe()["fields"]}
    emu.clock.advance(5)
    emu.admin.hide_field("Lead", "Industry")
    try:
        assert "Industry" not in {f["name"] for f in sf.Lead.describe()["fields"]}
        with pytest.raises(SalesforceMalformedRequest) as exc:
            sf.query("SELECT Id, Industry FROM Lead LIMIT 1")
        assert _error_code(exc.value) == "INVALID_FIELD"
        assert "Industry" not in sf.query("SELECT FIELDS(STANDARD) FROM Lead LIMIT 1")["records"][0]
        resp = _describe_raw(emu, "Lead", checked)
        assert resp.status_code == 200
        assert "Industry" not in {f["name"] for f in resp.json()["fields"]}
    finally:
        emu.admin.show_field("Lead", "Industry")
    assert "Industry" in {f["name"] for f in sf.Lead.describe()["fields"]}


def test_given_readonly_field_then_describe_not_updateable_and_rest_update_invalid_field_for_insert_update(emu, sf):
    lid = sf.Lead.create({"LastName": "Readonly", "Company": "RO Co"})["id"]
    emu.admin.set_field_readonly("Lead", "Title", True)
    try:
        title = next(f for f in sf.Lead.describe()["fields"] if f["name"] == "Title")
        assert title["updateable"] is False and title["createable"] is False
        with pytest.raises(SalesforceMalformedRequest) as exc:
            sf.Lead.update(lid, {"Title": "CTO"})
        assert _error_code(exc.value) == "INVALID_FIELD_FOR_INSERT_UPDATE"
        assert sf.Lead.get(lid)["Title"] is None  # still readable, unchanged
    finally:
        emu.admin.set_field_readonly("Lead", "Title", False)
    assert sf.Lead.update(lid, {"Title": "CTO"}) == 204


# ------------------------------------------------------------------------------- late commits


def test_given_late_commit_then_invisible_until_the_clock_passes_then_visible_with_its_old_stamp(emu, sf):
    emu.clock.advance(600)
    marker = _lead(emu, "Cursor Marker")  # stamped now: what a cursor has seen last
    last_max_seen = emu.clock.now_ms()
    late = emu.admin.late_commit("Lead", {"LastName": "Late", "Company": "Late Co"}, stamp_ago_s=30, visible_after_s=90)
    assert _one(sf, f"SELECT Id FROM Lead WHERE Id = '{late}'", all_rows=True) is None
    emu.clock.advance(60)
    assert _one(sf, f"SELECT Id FROM Lead WHERE Id = '{late}'", all_rows=True) is None

    emu.clock.advance(31)
    row = _one(sf, f"SELECT Id, SystemModstamp, CreatedDate FROM Lead WHERE Id = '{late}'")
    assert row is not None
    assert _ms(row["SystemModstamp"]) == _ms(row["CreatedDate"]) == last_max_seen - 30_000
    since = format_rest_datetime(last_max_seen)
    naive = _ids(sf, f"SELECT Id FROM Lead WHERE SystemModstamp >= {since}")
    assert marker in naive and late not in naive  # the trap
    overlap = format_rest_datetime(last_max_seen - 600_000)
    assert late in _ids(sf, f"SELECT Id FROM Lead WHERE SystemModstamp >= {overlap}")


def test_given_pending_late_commit_then_get_updated_latest_date_covered_stops_before_its_stamp(emu, sf):
    emu.clock.advance(600)
    late = emu.admin.late_commit(
        "Lead", {"LastName": "Late2", "Company": "Late Co"}, stamp_ago_s=180, visible_after_s=60
    )
    stamp_ms = emu.clock.now_ms() - 180_000
    start, end = _window(emu, 900)
    pending = sf.Lead.updated(start, end)
    assert late not in pending["ids"]
    assert _ms(pending["latestDateCovered"]) <= stamp_ms
    emu.clock.advance(61)
    assert late in sf.Lead.updated(start, end)["ids"]


# ------------------------------------------------------------------------------- clock


def test_given_held_clock_then_writes_share_a_stamp_and_a_step_moves_stamps_exactly(emu, sf):
    a = sf.Lead.create({"LastName": "Same1", "Company": "C"})["id"]
    time.sleep(0.05)
    b = sf.Lead.create({"LastName": "Same2", "Company": "C"})["id"]
    emu.clock.advance(90)
    c = sf.Lead.create({"LastName": "Later", "Company": "C"})["id"]
    stamps = {
        r["Id"]: _ms(r["SystemModstamp"])
        for r in sf.query_all(f"SELECT Id, SystemModstamp FROM Lead WHERE Id IN ('{a}', '{b}', '{c}')")["records"]
    }
    assert stamps[a] == stamps[b] == stamps[c] - 90_000


def test_given_running_clock_then_stamps_follow_real_time_and_freeze_holds_them(emu, sf):
    emu.admin.clock_run(rate=1000.0)
    try:
        first = sf.Lead.create({"LastName": "Run1", "Company": "C"})["id"]
        time.sleep(0.05)
        second = sf.Lead.create({"LastName": "Run2", "Company": "C"})["id"]
    finally:
        emu.admin.clock_freeze()
    rows = {
        r["Id"]: _ms(r["SystemModstamp"])
        for r in sf.query_all(f"SELECT Id, SystemModstamp FROM Lead WHERE Id IN ('{first}', '{second}')")["records"]
    }
    assert rows[second] - rows[first] >= 40_000  # >= 40 ms real x 1000
    held = emu.clock.now_ms()
    time.sleep(0.02)
    assert emu.clock.now_ms() == held
    assert emu.admin.clock_get()["running"] is False


# ------------------------------------------------------------------------------- generator


def _describe_fields(sf: Salesforce, obj: str) -> list[str]:
    return [f["name"] for f in getattr(sf, obj).describe()["fields"] if f["type"] not in ("address", "location")]


def _dump(running: Emulator) -> dict[str, list[dict[str, Any]]]:
    sf = running.salesforce()
    out: dict[str, list[dict[str, Any]]] = {}
    described = sf.describe()
    assert described is not None
    for obj in (o["name"] for o in described["sobjects"] if o["queryable"]):
        fields = _describe_fields(sf, obj)
        rows = sf.query_all(f"SELECT {', '.join(fields)} FROM {obj} ORDER BY Id", include_deleted=True)["records"]
        out[obj] = [{k: v for k, v in r.items() if k != "attributes"} for r in rows]
    return out


def test_given_same_seed_and_clock_then_identical_org_and_other_seed_differs():
    def start(seed: int) -> Emulator:
        return Emulator.start(seed=seed, records=400, clock=Clock(datetime_to_ms(START)))

    with start(5) as a, start(5) as b, start(6) as c:
        dump_a, dump_b, dump_c = _dump(a), _dump(b), _dump(c)
    assert sum(len(v) for v in dump_a.values()) >= 400
    assert len(dump_a) >= 13
    assert dump_a == dump_b
    assert dump_a != dump_c
    assert dump_a["Lead"] != dump_c["Lead"]


def test_given_generated_org_then_relationships_point_at_existing_records():
    with Emulator.start(seed=9, records=2000, clock=Clock(datetime_to_ms(START))) as running:
        sf = running.salesforce()

        def rows(soql: str) -> list[dict[str, Any]]:
            return sf.query_all(soql, include_deleted=True)["records"]

        def ids(obj: str) -> set[str]:
            return {r["Id"] for r in rows(f"SELECT Id FROM {obj}")}

        accounts, contacts, leads = ids("Account"), ids("Contact"), ids("Lead")
        campaigns, opps, projects = ids("Campaign"), ids("Opportunity"), ids("Project__c")
        contact_rows = rows("SELECT AccountId FROM Contact")
        linked = [r for r in contact_rows if r["AccountId"] is not None]  # private contacts have none
        assert len(linked) >= 0.8 * len(contact_rows) > 0
        assert all(r["AccountId"] in accounts for r in linked)
        opp_rows = rows("SELECT AccountId FROM Opportunity")
        assert opp_rows and all(r["AccountId"] is None or r["AccountId"] in accounts for r in opp_rows)
        assert any(r["AccountId"] for r in opp_rows)
        members = rows("SELECT CampaignId, LeadId, ContactId, LeadOrContactId FROM CampaignMember")
        assert members
        for m in members:
            assert m["CampaignId"] in campaigns
            assert (m["LeadId"] in leads) or (m["ContactId"] in contacts)
            assert m["LeadOrContactId"] == (m["ContactId"] or m["LeadId"])
        roles = rows("SELECT OpportunityId, ContactId FROM OpportunityContactRole")
        assert roles and all(r["OpportunityId"] in opps and r["ContactId"] in contacts for r in roles)
        milestones = rows("SELECT Project__c FROM Milestone__c")
        assert milestones and all(m["Project__c"] in projects for m in milestones)
        assert all(p["Account__c"] in accounts for p in rows("SELECT Account__c FROM Project__c") if p["Account__c"])
        whats = accounts | campaigns | opps | projects
        for obj in ("Task", "Event"):
            acts = rows(f"SELECT WhoId, WhatId FROM {obj}")
            assert acts and any(a["WhoId"] for a in acts) and any(a["WhatId"] for a in acts)
            assert all(a["WhoId"] is None or a["WhoId"] in leads | contacts for a in acts)
            assert all(a["WhatId"] is None or a["WhatId"] in whats for a in acts)


@pytest.mark.parametrize("records", [500, 1000, 2000])
def test_given_generated_org_of_any_size_then_campaign_members_include_leads_and_contacts(records):
    with Emulator.start(seed=3, records=records, clock=Clock(datetime_to_ms(START))) as running:
        members = running.salesforce().query_all("SELECT LeadId, ContactId FROM CampaignMember")["records"]
    assert members
    assert any(m["LeadId"] for m in members), "no campaign member is a lead"
    assert any(m["ContactId"] for m in members), "no campaign member is a contact"


# ------------------------------------------------------------------------------- faults


@pytest.mark.parametrize(("kind", "status"), [("http_500", 500), ("http_503", 503)])
def test_given_next_two_server_errors_then_exactly_two_calls_fail(emu, sf, kind, status):
    emu.add_fault(kind, family="query", count=2)
    outcomes = []
    for _ in range(4):
        try:
            sf.query("SELECT Id FROM Lead LIMIT 1")
            outcomes.append(200)
        except SalesforceGeneralError as exc:
            outcomes.append(exc.status)
    assert outcomes == [status, status, 200, 200]


def test_given_probability_fault_then_some_but_not_all_calls_fail(emu, sf):
    emu.add_fault("http_500", family="describe", probability=0.5)
    failures = 0
    for _ in range(40):
        try:
            sf.Lead.describe()
        except SalesforceGeneralError:
            failures += 1
    assert 5 <= failures <= 35


def test_given_slow_fault_then_the_call_takes_that_long_and_succeeds(emu, sf):
    emu.add_fault("slow", family="query", count=1, delay_s=0.6)
    began = time.monotonic()
    assert sf.query("SELECT Id FROM Lead LIMIT 1")["done"] is True
    assert time.monotonic() - began >= 0.6
    began = time.monotonic()
    sf.query("SELECT Id FROM Lead LIMIT 1")
    assert time.monotonic() - began < 0.6


@pytest.mark.parametrize(
    ("kind", "exc_type", "code"),
    [
        ("invalid_session", SalesforceExpiredSession, "INVALID_SESSION_ID"),
        ("request_limit", SalesforceRefusedRequest, "REQUEST_LIMIT_EXCEEDED"),
        ("query_timeout", SalesforceMalformedRequest, "QUERY_TIMEOUT"),
    ],
)
def test_given_error_fault_for_next_call_then_salesforce_error_once(emu, sf, kind, exc_type, code):
    emu.add_fault(kind, family="sobjects", method="GET", count=1)
    lid = _lead(emu, "Faulted")
    with pytest.raises(exc_type) as exc:
        sf.Lead.get(lid)
    assert _error_code(exc.value) == code
    assert sf.Lead.get(lid)["Id"] == lid


def test_given_lock_row_fault_when_collection_save_then_those_records_unable_to_lock_row(emu, sf):
    emu.add_fault("lock_row", family="composite", count=1, records=2)
    body = {
        "allOrNone": False,
        "records": [{"attributes": {"type": "Lead"}, "LastName": f"Lock{i}", "Company": "L"} for i in range(3)],
    }
    results = sf.restful("composite/sobjects", method="POST", json=body)
    assert [r["success"] for r in results] == [False, False, True]
    assert {r["errors"][0]["statusCode"] for r in results[:2]} == {"UNABLE_TO_LOCK_ROW"}
    again = sf.restful("composite/sobjects", method="POST", json=body)
    assert all(r["success"] for r in again)


def test_given_bulk_job_failed_fault_then_simple_salesforce_reports_the_failed_job(emu, sf):
    emu.add_fault("bulk_job_failed", family="bulk", count=1, message="emulated outage")
    with pytest.raises(SalesforceOperationError, match="emulated outage"):
        list(sf.bulk2.Lead.query("SELECT Id FROM Lead", wait=0))
    assert list(sf.bulk2.Lead.query("SELECT Id FROM Lead LIMIT 3", wait=0))


# ------------------------------------------------------------------------------- accounting, tokens


def test_given_calls_then_request_log_and_per_endpoint_api_call_counts(emu, sf):
    emu.reset_counters()
    logged = len(emu.request_log())
    sf.query("SELECT Id FROM Lead LIMIT 1")
    sf.query_all("SELECT Id FROM Account LIMIT 1", include_deleted=True)
    sf.Lead.describe()
    sf.restful(
        "composite",
        method="POST",
        json={
            "compositeRequest": [
                {
                    "method": "GET",
                    "url": "/services/data/v59.0/query?q=SELECT+Id+FROM+Lead+LIMIT+1",
                    "referenceId": "q1",
                },
                {"method": "GET", "url": "/services/data/v59.0/limits", "referenceId": "l1"},
            ]
        },
    )
    emu.admin.clock_get()  # admin: neither counted nor an API call

    assert emu.api_calls("query") == 2
    assert emu.api_calls("describe") == 1
    assert emu.api_calls("composite") == 1
    assert emu.api_calls() == 4
    counts = emu.admin.api_calls()
    assert counts["by_family"] == {"query": 2, "describe": 1, "composite": 1}
    assert counts["used"] == 4
    new = emu.request_log()[logged:]
    assert [(e["method"], e["path"].split("/v59.0")[-1].rstrip("/"), e["status"]) for e in new[:4]] == [
        ("GET", "/query", 200),
        ("GET", "/queryAll", 200),
        ("GET", "/sobjects/Lead/describe", 200),
        ("POST", "/composite", 200),
    ]
    assert [e["family"] for e in new[:4]] == ["query", "query", "describe", "composite"]


def test_given_tokens_expired_on_demand_then_every_data_endpoint_401_until_new_login(emu, sf):
    lid = _lead(emu, "Expiry")
    emu.expire_tokens()
    calls = [
        lambda: sf.query("SELECT Id FROM Lead LIMIT 1"),
        lambda: sf.Lead.get(lid),
        sf.Lead.describe,
        sf.limits,
        lambda: sf.Lead.updated(*_window(emu)),
    ]
    for call in calls:
        with pytest.raises(SalesforceExpiredSession) as exc:
            call()
        assert exc.value.content == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    fresh = emu.salesforce()
    assert fresh.Lead.get(lid)["Id"] == lid


def test_given_clock_helpers_then_ms_and_datetime_agree():
    # guards the helper used by every stamp assertion above
    assert _ms(format_rest_datetime(datetime_to_ms(START) + 7)) == datetime_to_ms(START) + 7
    assert ms_to_datetime(datetime_to_ms(START)) == START
