"""Unit tests of the emulated org's store: DML pipeline, lifecycle, replication, cursors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sfsync_emulator.catalogue import default_schema
from sfsync_emulator.clock import Clock
from sfsync_emulator.errors import ApiError, DmlError
from sfsync_emulator.schema import format_rest_datetime, parse_datetime_ms
from sfsync_emulator.store import MultipleMatches, Org, OrgConfig

from .conftest import START_MS

pytestmark = pytest.mark.unit

DAY_S = 86_400


def dml_error(fn: Callable[[], Any]) -> DmlError:
    with pytest.raises(DmlError) as info:
        fn()
    return info.value


def api_error(fn: Callable[[], Any]) -> ApiError:
    with pytest.raises(ApiError) as info:
        fn()
    return info.value


def stamp(org: Org, obj: str, rid: str, name: str = "SystemModstamp") -> int:
    rec = org.get(obj, rid, include_deleted=True, as_api=False)
    assert rec is not None
    return parse_datetime_ms(rec[name])


def new_lead(org: Org, **extra: Any) -> str:
    return org.create("Lead", {"LastName": "Doe", "Company": "Acme", **extra})


# ------------------------------------------------------------------------------------ create


def test_given_clock_with_millis_when_lead_created_then_system_fields_are_set_and_stamped_to_the_second(
    org: Org, clock: Clock
) -> None:
    clock.advance(1.234)
    rid = new_lead(org, FirstName="Jane")
    rec = org.get("Lead", rid)
    assert rec is not None
    assert rid.startswith("00Q") and len(rid) == 18
    expected = format_rest_datetime(START_MS + 1000)
    assert rec["CreatedDate"] == rec["LastModifiedDate"] == rec["SystemModstamp"] == expected
    assert rec["CreatedById"] == rec["OwnerId"] == org.integration_user_id
    assert rec["Name"] == "Jane Doe"
    assert rec["Status"] == "Open - Not Contacted"
    assert rec["IsDeleted"] is False and rec["IsConverted"] is False


def test_given_case_insensitive_field_names_when_created_then_values_are_stored(org: Org) -> None:
    rid = org.create("Contact", {"lastname": "Low", "EMAIL": "low@example.com", "attributes": {"type": "Contact"}})
    rec = org.get("Contact", rid)
    assert rec is not None and rec["LastName"] == "Low" and rec["Email"] == "low@example.com"


def test_given_unknown_field_when_created_then_invalid_field(org: Org) -> None:
    err = dml_error(lambda: new_lead(org, Bacon__c="x"))
    assert err.status_code == "INVALID_FIELD"
    assert err.message == "No such column 'Bacon__c' on sobject of type Lead"


def test_given_read_only_fields_when_created_via_api_then_invalid_field_for_insert_update_lists_them(org: Org) -> None:
    err = dml_error(lambda: new_lead(org, Name="X", IsConverted=True))
    assert err.status_code == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert err.fields == ["Name", "IsConverted"]
    assert err.message.startswith("Unable to create/update fields: Name, IsConverted. Please check the security")


def test_given_admin_call_when_setting_stored_non_system_field_then_allowed_but_derived_name_is_not(org: Org) -> None:
    rid = org.create("Lead", {"LastName": "A", "Company": "B", "IsConverted": True}, as_api=False)
    rec = org.get("Lead", rid)
    assert rec is not None and rec["IsConverted"] is True
    assert rec["CreatedById"] == org.admin_user_id
    err = dml_error(lambda: org.create("Lead", {"LastName": "A", "Company": "B", "Name": "Z"}, as_api=False))
    assert err.status_code == "INVALID_FIELD_FOR_INSERT_UPDATE"


@pytest.mark.parametrize(
    ("values", "code", "fields"),
    [
        ({"NumberOfEmployees": "many"}, "INVALID_TYPE_ON_FIELD_IN_RECORD", ["NumberOfEmployees"]),
        ({"OwnerId": "not-an-id"}, "MALFORMED_ID", ["OwnerId"]),
        ({"Email": "x" * 70 + "@example.com"}, "STRING_TOO_LONG", ["Email"]),
        ({"Email": "not-an-email"}, "INVALID_EMAIL_ADDRESS", ["Email"]),
        ({"Status": "Maybe"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ["Status"]),
        ({"LastName": None}, "REQUIRED_FIELD_MISSING", ["LastName"]),
    ],
)
def test_given_bad_value_when_created_then_specific_dml_error(
    org: Org, values: dict[str, Any], code: str, fields: list[str]
) -> None:
    err = dml_error(lambda: org.create("Lead", {"LastName": "Doe", "Company": "Acme", **values}))
    assert err.status_code == code
    assert err.fields == fields


def test_given_too_long_email_then_message_names_field_and_max_length(org: Org) -> None:
    err = dml_error(lambda: new_lead(org, Email="y" * 90 + "@example.com"))
    assert err.message.startswith("Email: data value too large: ")
    assert err.message.endswith("(max length=80)")


def test_given_missing_required_fields_then_message_lists_them(org: Org) -> None:
    err = dml_error(lambda: org.create("Lead", {"FirstName": "x"}))
    assert err.message == "Required fields are missing: [LastName, Company]"


def test_given_reference_to_missing_or_wrong_type_record_then_invalid_cross_reference_key(org: Org) -> None:
    lead = new_lead(org)
    missing_account = "001" + lead[3:15]
    err = dml_error(lambda: org.create("Contact", {"LastName": "C", "AccountId": missing_account}))
    assert err.status_code == "INVALID_CROSS_REFERENCE_KEY"
    err = dml_error(lambda: org.create("Contact", {"LastName": "C", "AccountId": lead}))
    assert err.status_code == "INVALID_CROSS_REFERENCE_KEY"


def test_given_polymorphic_who_when_task_points_to_lead_or_contact_then_accepted_else_refused(org: Org) -> None:
    lead = new_lead(org)
    account = org.create("Account", {"Name": "Acme"})
    task = org.create("Task", {"Subject": "Call", "WhoId": lead, "WhatId": None})
    assert org.get("Task", task) is not None
    err = dml_error(lambda: org.create("Task", {"Subject": "Call", "WhoId": account}))
    assert err.status_code == "INVALID_CROSS_REFERENCE_KEY"


def test_given_external_id_taken_when_another_record_uses_it_then_duplicate_value_names_the_holder(org: Org) -> None:
    first = new_lead(org, Sfsync_Key__c="K-1")
    err = dml_error(lambda: new_lead(org, Sfsync_Key__c="K-1"))
    assert err.status_code == "DUPLICATE_VALUE"
    assert err.message == f"duplicate value found: Sfsync_Key__c duplicates value on record with id: {first}"
    assert err.fields == ["Sfsync_Key__c"]


def test_given_campaign_member_when_same_lead_added_twice_then_duplicate_value(org: Org) -> None:
    camp = org.create("Campaign", {"Name": "Webinar"})
    lead = new_lead(org)
    org.create("CampaignMember", {"CampaignId": camp, "LeadId": lead})
    err = dml_error(lambda: org.create("CampaignMember", {"CampaignId": camp, "LeadId": lead}))
    assert err.status_code == "DUPLICATE_VALUE"


def test_given_campaign_member_when_status_becomes_responded_then_has_responded_and_first_responded_date(
    org: Org,
) -> None:
    camp = org.create("Campaign", {"Name": "Webinar"})
    contact = org.create("Contact", {"LastName": "C"})
    member = org.create("CampaignMember", {"CampaignId": camp, "ContactId": contact})
    rec = org.get("CampaignMember", member)
    assert rec is not None
    assert rec["Status"] == "Sent" and rec["HasResponded"] is False and rec["LeadOrContactId"] == contact
    org.update("CampaignMember", member, {"Status": "Responded"})
    rec = org.get("CampaignMember", member)
    assert rec is not None and rec["HasResponded"] is True and rec["FirstRespondedDate"] == "2026-11-24"
    err = dml_error(lambda: org.update("CampaignMember", member, {"ContactId": contact}))
    assert err.status_code == "INVALID_FIELD_FOR_INSERT_UPDATE"


def test_given_validation_rule_when_predicate_true_then_field_custom_validation_exception(org: Org) -> None:
    org.add_validation_rule("Lead", "need_email", lambda r: r["Email"] is None, "Email is required", "Email")
    err = dml_error(lambda: new_lead(org))
    assert (err.status_code, err.message, err.fields) == (
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "Email is required",
        ["Email"],
    )
    assert new_lead(org, Email="a@b.c").startswith("00Q")


def test_given_duplicate_rule_when_matching_record_exists_then_duplicates_detected(org: Org) -> None:
    org.add_duplicate_rule("Contact", ("Email",))
    org.create("Contact", {"LastName": "A", "Email": "dup@example.com"})
    err = dml_error(lambda: org.create("Contact", {"LastName": "B", "Email": "DUP@example.com"}))
    assert (err.status_code, err.message) == ("DUPLICATES_DETECTED", "Use one of these records?")


def test_given_dml_fault_hook_when_api_write_then_the_injected_error_is_raised_and_nothing_written(org: Org) -> None:
    org.dml_fault = lambda obj, rid: DmlError("UNABLE_TO_LOCK_ROW", f"unable to obtain exclusive access: {rid}")
    err = dml_error(lambda: new_lead(org))
    assert err.status_code == "UNABLE_TO_LOCK_ROW"
    assert org.count("Lead") == 0


def test_given_unknown_or_hidden_object_when_created_then_invalid_type(org: Org) -> None:
    assert api_error(lambda: org.create("Nope__c", {})).error_code == "INVALID_TYPE"
    org.hide_object("Campaign")
    assert api_error(lambda: org.create("Campaign", {"Name": "x"})).error_code == "INVALID_TYPE"
    assert org.create("Campaign", {"Name": "x"}, as_api=False).startswith("701")


# ------------------------------------------------------------------------------------ update


def test_given_record_when_updated_then_last_modified_and_stamp_move_and_changed_fields_reported(
    org: Org, clock: Clock
) -> None:
    rid = new_lead(org)
    clock.advance(10)
    org.update("Lead", rid, {"Title": "CTO"}, origin="sync-engine")
    assert stamp(org, "Lead", rid) == stamp(org, "Lead", rid, "LastModifiedDate") == START_MS + 10_000
    ev = org.cdc.events[-1]
    assert ev.change_type == "UPDATE"
    assert ev.changed_fields == ["Title", "LastModifiedDate"]
    assert ev.change_origin == "com/salesforce/api/rest/59.0;client=sync-engine"
    assert ev.fields == {"Title": "CTO", "LastModifiedDate": format_rest_datetime(START_MS + 10_000)}


def test_given_deleted_record_when_updated_then_entity_is_deleted(org: Org) -> None:
    rid = new_lead(org)
    org.delete("Lead", rid)
    err = dml_error(lambda: org.update("Lead", rid, {"Title": "x"}))
    assert (err.status_code, err.message) == ("ENTITY_IS_DELETED", "entity is deleted")


def test_given_system_update_then_only_system_modstamp_moves(org: Org, clock: Clock) -> None:
    rid = new_lead(org)
    clock.advance(60)
    org.system_update("Lead", rid, {"Rating": "Hot"})
    assert stamp(org, "Lead", rid) == START_MS + 60_000
    assert stamp(org, "Lead", rid, "LastModifiedDate") == START_MS
    assert "LastModifiedDate" not in org.cdc.events[-1].changed_fields


def test_given_formula_over_parent_when_parent_changes_then_value_changes_without_child_stamp_change(
    org: Org, clock: Clock
) -> None:
    acc = org.create("Account", {"Name": "Acme", "Rating": "Hot"})
    con = org.create("Contact", {"LastName": "C", "AccountId": acc})
    before = org.get("Contact", con)
    assert before is not None and before["Account_Rating__c"] == "Hot"
    clock.advance(120)
    org.update("Account", acc, {"Rating": "Cold"})
    after = org.get("Contact", con)
    assert after is not None and after["Account_Rating__c"] == "Cold"
    assert after["SystemModstamp"] == before["SystemModstamp"]


def test_given_compound_address_when_components_set_then_compound_assembled_and_not_writable(org: Org) -> None:
    acc = org.create("Account", {"Name": "Acme", "BillingCity": "Paris", "BillingCountry": "France"})
    rec = org.get("Account", acc)
    assert rec is not None
    assert rec["BillingAddress"]["city"] == "Paris" and rec["BillingAddress"]["country"] == "France"
    assert rec["ShippingAddress"] is None
    err = dml_error(lambda: org.update("Account", acc, {"BillingAddress": {"city": "Rome"}}))
    assert err.status_code == "INVALID_FIELD_FOR_INSERT_UPDATE"


def test_given_upsert_when_key_new_then_created_and_when_key_known_then_updated(org: Org) -> None:
    rid, created = org.upsert("Lead", "Sfsync_Key__c", "E-1", {"LastName": "U", "Company": "C"})
    assert created is True
    again, created_again = org.upsert("Lead", "sfsync_key__c", "E-1", {"Title": "Boss"})
    assert (again, created_again) == (rid, False)
    rec = org.get("Lead", rid)
    assert rec is not None and rec["Title"] == "Boss" and rec["Sfsync_Key__c"] == "E-1"


def test_given_non_unique_external_id_matching_two_records_when_upserted_then_multiple_matches(org: Org) -> None:
    a = org.create("Account", {"Name": "A", "Legacy_Id__c": "L1"})
    b = org.create("Account", {"Name": "B", "Legacy_Id__c": "L1"})
    err = dml_error(lambda: org.upsert("Account", "Legacy_Id__c", "L1", {"Name": "C"}))
    assert isinstance(err, MultipleMatches)
    assert sorted(err.ids) == sorted([a, b])
    assert api_error(lambda: org.upsert("Account", "Name", "x", {})).status == 404


# ------------------------------------------------------------------------------------ transactions


def test_given_transaction_when_it_raises_then_rows_change_log_and_events_are_dropped(org: Org) -> None:
    events_before = len(org.cdc.events)
    with pytest.raises(DmlError), org.transaction():
        new_lead(org)
        new_lead(org, Status="bad")
    assert org.count("Lead") == 0
    assert len(org.cdc.events) == events_before and org.change_log == []


def test_given_nested_failure_caught_when_outer_commits_then_only_good_rows_publish_with_one_transaction_key(
    org: Org,
) -> None:
    with org.transaction():
        a = new_lead(org)
        with pytest.raises(DmlError):
            new_lead(org, LastName=None)
        b = new_lead(org)
    assert org.count("Lead") == 2
    events = org.cdc.events[-2:]
    assert [e.record_ids for e in events] == [[a], [b]]
    assert events[0].transaction_key == events[1].transaction_key
    assert [e.sequence_number for e in events] == [1, 2]


# ------------------------------------------------------------------------------------ delete lifecycle


def test_given_account_tree_when_deleted_then_cascade_to_contacts_opportunities_roles_and_undelete_restores(
    org: Org, clock: Clock
) -> None:
    acc = org.create("Account", {"Name": "Acme"})
    con = org.create("Contact", {"LastName": "C", "AccountId": acc})
    opp = org.create(
        "Opportunity", {"Name": "O", "AccountId": acc, "StageName": "Prospecting", "CloseDate": "2026-12-31"}
    )
    role = org.create("OpportunityContactRole", {"OpportunityId": opp, "ContactId": con})
    camp = org.create("Campaign", {"Name": "W"})
    member = org.create("CampaignMember", {"CampaignId": camp, "ContactId": con})
    clock.advance(30)
    org.delete("Account", acc)
    for obj, rid in (("Account", acc), ("Contact", con), ("Opportunity", opp)):
        assert org.get(obj, rid) is None
        rec = org.get(obj, rid, include_deleted=True)
        assert rec is not None and rec["IsDeleted"] is True
        assert stamp(org, obj, rid) == START_MS + 30_000
        assert stamp(org, obj, rid, "LastModifiedDate") == START_MS  # default: delete keeps LastModifiedDate
    # OpportunityContactRole and CampaignMember are not undeletable: gone for good
    assert org.get("OpportunityContactRole", role, include_deleted=True) is None
    assert org.get("CampaignMember", member, include_deleted=True) is None
    deleted_types = [(e.entity_name, e.change_type) for e in org.cdc.events[-5:]]
    assert deleted_types[0] == ("Account", "DELETE") and all(t == "DELETE" for _, t in deleted_types)
    clock.advance(30)
    org.undelete("Account", acc)
    for obj, rid in (("Account", acc), ("Contact", con), ("Opportunity", opp)):
        assert org.get(obj, rid) is not None
        assert stamp(org, obj, rid) == START_MS + 60_000
    assert org.cdc.events[-1].change_type == "UNDELETE"
    assert org.get_deleted("Account", START_MS, START_MS + 120_000)["deletedRecords"] == []


def test_given_delete_moves_last_modified_switch_when_deleted_then_last_modified_moves(clock: Clock) -> None:
    org = Org(default_schema(), clock, OrgConfig(delete_moves_last_modified=True))
    rid = org.create("Lead", {"LastName": "D", "Company": "C"})
    clock.advance(5)
    org.delete("Lead", rid)
    assert stamp(org, "Lead", rid, "LastModifiedDate") == START_MS + 5000


def test_given_project_with_milestones_when_deleted_then_two_level_cascade_and_undelete(org: Org) -> None:
    acc = org.create("Account", {"Name": "A"})
    prj = org.create("Project__c", {"Name": "P", "Account__c": acc})
    ms = org.create("Milestone__c", {"Name": "M", "Project__c": prj})
    org.delete("Project__c", prj)
    assert org.get("Milestone__c", ms) is None
    org.undelete("Project__c", prj)
    assert org.get("Milestone__c", ms) is not None


def test_given_not_deleted_record_when_undeleted_then_undelete_failed(org: Org) -> None:
    rid = new_lead(org)
    assert dml_error(lambda: org.undelete("Lead", rid)).status_code == "UNDELETE_FAILED"


def test_given_recycle_bin_when_fifteen_days_pass_then_rows_are_purged_but_delete_log_keeps_them_until_window(
    org: Org, clock: Clock
) -> None:
    rid = new_lead(org)
    org.delete("Lead", rid)
    clock.advance(14 * DAY_S)
    assert org.get("Lead", rid, include_deleted=True) is not None
    clock.advance(DAY_S + 60)
    assert org.get("Lead", rid, include_deleted=True) is None
    assert dml_error(lambda: org.undelete("Lead", rid)).status_code == "UNDELETE_FAILED"
    out = org.get_deleted("Lead", clock.now_ms() - 15 * DAY_S * 1000 + 60_000, clock.now_ms())
    assert out["deletedRecords"] == []
    assert parse_datetime_ms(out["earliestDateAvailable"]) == START_MS  # the purged entry's minute


def test_given_deleted_rows_when_recycle_bin_emptied_or_hard_deleted_then_rows_are_gone(org: Org) -> None:
    a, b, c = new_lead(org), new_lead(org), new_lead(org)
    org.delete("Lead", a)
    assert org.empty_recycle_bin("Lead") == 1
    assert org.get("Lead", a, include_deleted=True) is None
    org.hard_delete("Lead", b)
    assert org.get("Lead", b, include_deleted=True) is None
    deleted = {d["id"] for d in org.get_deleted("Lead", START_MS, START_MS + 60_000)["deletedRecords"]}
    assert deleted == {a, b}
    assert org.get("Lead", c) is not None


# ------------------------------------------------------------------------------------ merge / convert / archive


def test_given_accounts_when_merged_then_children_reparented_losers_deleted_with_master_record_id(
    org: Org, clock: Clock
) -> None:
    master = org.create("Account", {"Name": "Master"})
    loser = org.create("Account", {"Name": "Loser"})
    con = org.create("Contact", {"LastName": "C", "AccountId": loser})
    opp = org.create(
        "Opportunity", {"Name": "O", "AccountId": loser, "StageName": "Prospecting", "CloseDate": "2026-12-31"}
    )
    clock.advance(90)
    result = org.merge("Account", master, [loser])
    assert result["mergedRecordIds"] == [loser]
    assert set(result["updatedRelatedIds"]) == {con, opp}
    con_rec = org.get("Contact", con)
    assert con_rec is not None and con_rec["AccountId"] == master
    assert stamp(org, "Contact", con) == START_MS + 90_000
    assert stamp(org, "Contact", con, "LastModifiedDate") == START_MS
    assert org.get("Account", loser) is None
    loser_rec = org.get("Account", loser, include_deleted=True)
    assert loser_rec is not None and loser_rec["MasterRecordId"] == master and loser_rec["IsDeleted"] is True
    assert org.get("Contact", con) is not None  # reparented, so not cascade-deleted with the loser
    assert stamp(org, "Account", master) == START_MS + 90_000
    kinds = [(e.entity_name, e.change_type) for e in org.cdc.events if e.commit_timestamp == START_MS + 90_000]
    assert ("Account", "DELETE") in kinds and ("Account", "UPDATE") in kinds and ("Contact", "UPDATE") in kinds


def test_given_contacts_in_same_campaign_when_merged_then_loser_membership_dropped_not_duplicated(org: Org) -> None:
    camp = org.create("Campaign", {"Name": "W"})
    master = org.create("Contact", {"LastName": "M"})
    loser = org.create("Contact", {"LastName": "L"})
    org.create("CampaignMember", {"CampaignId": camp, "ContactId": master})
    org.create("CampaignMember", {"CampaignId": camp, "ContactId": loser})
    org.merge("Contact", master, [loser])
    cur = org.open_cursor('SELECT "ContactId" FROM "CampaignMember" WHERE "CampaignId" = ?', [camp])
    assert org.fetch_cursor(cur.id, 0, 10) == [(master,)]


def test_given_too_many_losers_or_unmergeable_object_when_merged_then_refused(org: Org) -> None:
    ids = [org.create("Account", {"Name": f"A{i}"}) for i in range(4)]
    assert dml_error(lambda: org.merge("Account", ids[0], ids[1:])).status_code == "LIMIT_EXCEEDED"
    camp = org.create("Campaign", {"Name": "x"})
    assert dml_error(lambda: org.merge("Campaign", camp, [camp])).status_code == "INVALID_TYPE_FOR_OPERATION"


def test_given_lead_when_converted_then_records_created_in_one_transaction_and_lead_read_only(
    org: Org, clock: Clock
) -> None:
    lead = new_lead(org, FirstName="Ann", Email="ann@example.com", City="Paris")
    clock.advance(3600)
    before = len(org.cdc.events)
    result = org.convert_lead(lead)
    rec = org.get("Lead", lead)
    assert rec is not None
    assert rec["IsConverted"] is True and rec["Status"] == "Closed - Converted"
    assert rec["ConvertedDate"] == "2026-11-24"
    assert (rec["ConvertedAccountId"], rec["ConvertedContactId"], rec["ConvertedOpportunityId"]) == (
        result["accountId"],
        result["contactId"],
        result["opportunityId"],
    )
    con = org.get("Contact", str(result["contactId"]))
    assert con is not None and con["Email"] == "ann@example.com" and con["AccountId"] == result["accountId"]
    assert con["MailingCity"] == "Paris"
    events = org.cdc.events[before:]
    assert len({e.transaction_key for e in events}) == 1
    assert [e.sequence_number for e in events] == list(range(1, len(events) + 1))
    lead_event = events[-1]
    assert lead_event.entity_name == "Lead" and "IsConverted" in lead_event.changed_fields
    assert "LastModifiedDate" not in lead_event.changed_fields
    err = dml_error(lambda: org.update("Lead", lead, {"Title": "x"}))
    assert (err.status_code, err.message) == ("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead")


def test_given_existing_account_and_no_opportunity_when_converting_then_reused(org: Org) -> None:
    acc = org.create("Account", {"Name": "Existing"})
    lead = new_lead(org)
    result = org.convert_lead(lead, account_id=acc, create_opportunity=False)
    assert result["accountId"] == acc and result["opportunityId"] is None
    assert org.count("Account") == 1


def test_given_task_when_archived_then_is_archived_stamp_only_and_gap_update(org: Org, clock: Clock) -> None:
    task = org.create("Task", {"Subject": "Call"})
    clock.advance(15)
    org.archive("Task", task)
    rec = org.get("Task", task)
    assert rec is not None and rec["IsArchived"] is True
    assert stamp(org, "Task", task) == START_MS + 15_000
    assert stamp(org, "Task", task, "LastModifiedDate") == START_MS
    ev = org.cdc.events[-1]
    assert (ev.change_type, ev.record_ids, ev.sequence_number, ev.fields) == ("GAP_UPDATE", [task], 1, {})
    assert dml_error(lambda: org.archive("Lead", new_lead(org))).status_code == "INVALID_TYPE_FOR_OPERATION"


def test_given_mass_update_when_same_change_then_one_event_with_all_record_ids(org: Org, clock: Clock) -> None:
    leads = [new_lead(org) for _ in range(5)]
    clock.advance(1)
    org.mass_update("Lead", leads, {"Rating": "Hot"})
    ev = org.cdc.events[-1]
    assert ev.change_type == "UPDATE" and ev.record_ids == leads
    assert ev.change_origin == ""
    assert {stamp(org, "Lead", x) for x in leads} == {START_MS + 1000}


# ------------------------------------------------------------------------------------ late commits


def test_given_late_commit_when_clock_has_not_reached_visibility_then_invisible_then_visible_with_past_stamp(
    org: Org, clock: Clock
) -> None:
    rid = org.late_commit("Lead", {"LastName": "Late", "Company": "C"}, stamp_ago_s=120, visible_after_s=300)
    assert org.get("Lead", rid) is None
    window = org.get_updated("Lead", START_MS - 600_000, START_MS + 60_000)
    assert rid not in window["ids"]
    assert parse_datetime_ms(window["latestDateCovered"]) == START_MS - 120_000  # held back by the pending commit
    clock.advance(299)
    assert org.get("Lead", rid) is None
    clock.advance(1)
    rec = org.get("Lead", rid)
    assert rec is not None
    assert parse_datetime_ms(rec["SystemModstamp"]) == START_MS - 120_000
    assert org.cdc.events[-1].commit_timestamp == START_MS + 300_000
    assert rid in org.get_updated("Lead", START_MS - 600_000, START_MS + 360_000)["ids"]


def test_given_late_update_when_visible_then_values_change_with_old_stamp(org: Org, clock: Clock) -> None:
    clock.advance(600)
    rid = new_lead(org)
    org.late_commit("Lead", {"Title": "VP"}, record_id=rid, stamp_ago_s=30, visible_after_s=10)
    rec = org.get("Lead", rid)
    assert rec is not None and rec["Title"] is None
    clock.advance(10)
    rec = org.get("Lead", rid)
    assert rec is not None and rec["Title"] == "VP"
    assert parse_datetime_ms(rec["SystemModstamp"]) == START_MS + 570_000


def test_given_invalid_late_commit_then_refused_at_staging(org: Org) -> None:
    err = dml_error(lambda: org.late_commit("Lead", {"Company": "C"}, stamp_ago_s=1, visible_after_s=1))
    assert err.status_code == "REQUIRED_FIELD_MISSING"
    assert org.pending_late_commits() == []


# ------------------------------------------------------------------------------------ sharing / profile


def test_given_hidden_row_then_absent_from_reads_and_get_updated_and_refused_for_update(org: Org) -> None:
    rid = new_lead(org)
    org.set_hidden("Lead", rid, True)
    assert org.get("Lead", rid) is None
    assert org.get("Lead", rid, as_api=False) is not None
    assert rid not in org.get_updated("Lead", START_MS, START_MS + 60_000)["ids"]
    assert dml_error(lambda: org.update("Lead", rid, {"Title": "x"})).status_code == "INSUFFICIENT_ACCESS_OR_READONLY"
    org.set_hidden("Lead", rid, False)
    assert org.get("Lead", rid) is not None


def test_given_hidden_field_then_absent_from_get_and_unknown_for_writes_and_metadata_bumped(
    org: Org, clock: Clock
) -> None:
    rid = new_lead(org, Email="e@x.com")
    clock.advance(5)
    org.hide_field("Lead", "Email")
    assert org.schema.modified_ms == START_MS + 5000
    rec = org.get("Lead", rid)
    assert rec is not None and "Email" not in rec
    assert dml_error(lambda: org.update("Lead", rid, {"Email": "n@x.com"})).status_code == "INVALID_FIELD"
    org.show_field("Lead", "Email")
    org.set_field_readonly("Lead", "Email", True)
    err = dml_error(lambda: org.update("Lead", rid, {"Email": "n@x.com"}))
    assert (err.status_code, err.fields) == ("INVALID_FIELD_FOR_INSERT_UPDATE", ["Email"])


# ------------------------------------------------------------------------------------ getUpdated / getDeleted


def test_given_changes_when_get_updated_then_minute_window_on_system_modstamp(org: Org, clock: Clock) -> None:
    early = new_lead(org)
    clock.advance(61)
    late = new_lead(org)
    out = org.get_updated("Lead", START_MS + 30_000, START_MS + 180_000)  # start floors to START_MS
    assert out["ids"] == [early, late]
    out = org.get_updated("Lead", START_MS + 60_000, START_MS + 180_000)
    assert out["ids"] == [late]
    assert out["latestDateCovered"] == format_rest_datetime(START_MS + 60_000)  # min(end, now) floored


def test_given_inflight_lag_when_get_updated_then_latest_date_covered_lags(clock: Clock) -> None:
    org = Org(default_schema(), clock, OrgConfig(replication_inflight_lag_s=120))
    clock.advance(600)
    out = org.get_updated("Lead", START_MS, START_MS + 900_000)
    assert out["latestDateCovered"] == format_rest_datetime(START_MS + 480_000)


@pytest.mark.parametrize(
    ("start_offset_s", "end_offset_s"),
    [(0, 0), (60, 0), (0, 30), (-31 * DAY_S, 0)],
)
def test_given_bad_window_when_get_updated_then_invalid_replication_date(
    org: Org, start_offset_s: int, end_offset_s: int
) -> None:
    err = api_error(lambda: org.get_updated("Lead", START_MS + start_offset_s * 1000, START_MS + end_offset_s * 1000))
    assert (err.status, err.error_code) == (400, "INVALID_REPLICATION_DATE")


def test_given_start_older_than_fifteen_days_when_get_deleted_then_invalid_replication_date(org: Org) -> None:
    err = api_error(lambda: org.get_deleted("Lead", START_MS - 16 * DAY_S * 1000, START_MS))
    assert err.error_code == "INVALID_REPLICATION_DATE"
    assert org.get_deleted("Lead", START_MS - 14 * DAY_S * 1000, START_MS)["deletedRecords"] == []


def test_given_more_ids_than_limit_when_get_updated_or_deleted_then_exceeded_id_limit(clock: Clock) -> None:
    org = Org(default_schema(), clock, OrgConfig(replication_id_limit=2))
    leads = [org.create("Lead", {"LastName": "x", "Company": "c"}) for _ in range(3)]
    assert api_error(lambda: org.get_updated("Lead", START_MS, START_MS + 60_000)).error_code == "EXCEEDED_ID_LIMIT"
    for rid in leads:
        org.delete("Lead", rid)
    assert api_error(lambda: org.get_deleted("Lead", START_MS, START_MS + 60_000)).error_code == "EXCEEDED_ID_LIMIT"


def test_given_deletes_when_get_deleted_then_ids_with_deleted_date_and_earliest_available(
    org: Org, clock: Clock
) -> None:
    rid = new_lead(org)
    clock.advance(90)
    org.delete("Lead", rid)
    clock.advance(120)
    out = org.get_deleted("Lead", START_MS, START_MS + 180_000)
    assert out["deletedRecords"] == [{"id": rid, "deletedDate": format_rest_datetime(START_MS + 90_000)}]
    assert out["earliestDateAvailable"] == format_rest_datetime(START_MS)
    assert out["latestDateCovered"] == format_rest_datetime(START_MS + 180_000)


# ------------------------------------------------------------------------------------ cursors


def test_given_cursor_when_data_changes_after_open_then_pages_come_from_the_snapshot(org: Org) -> None:
    leads = sorted(new_lead(org, Title=f"T{i}") for i in range(5))
    cur = org.open_cursor('SELECT "Id", "Title" FROM "Lead" WHERE "IsDeleted" = ? ORDER BY "Id"', [0])
    assert cur.id.startswith("01g") and len(cur.id) == 18 and cur.total == 5
    assert cur.columns == ("Id", "Title")
    org.delete("Lead", leads[0])
    new_lead(org)
    org.update("Lead", leads[3], {"Title": "changed"})
    first = org.fetch_cursor(cur.id, 0, 2)
    rest = org.fetch_cursor(cur.id, 2, 10)
    assert [r[0] for r in first + rest] == leads
    assert rest[1][1] != "changed"
    assert [len(c) for c in org.iter_cursor(cur.id, 1, None, chunk=2)] == [2, 2]


def test_given_cursor_when_ttl_passes_or_closed_then_invalid_query_locator(org: Org, clock: Clock) -> None:
    new_lead(org)
    cur = org.open_cursor('SELECT "Id" FROM "Lead"', ())
    clock.advance(2 * DAY_S - 1)
    assert len(org.fetch_cursor(cur.id, 0, 10)) == 1
    clock.advance(1)
    err = api_error(lambda: org.fetch_cursor(cur.id, 0, 10))
    assert (err.status, err.error_code, err.message) == (400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    other = org.open_cursor('SELECT "Id" FROM "Lead"', ())
    org.close_cursor(other.id)
    assert api_error(lambda: org.fetch_cursor(other.id, 0, 1)).error_code == "INVALID_QUERY_LOCATOR"


def test_given_users_at_init_then_integration_user_exists_and_is_queryable(org: Org) -> None:
    user = org.get("User", org.integration_user_id)
    assert user is not None and user["Username"] == "integration@sfsync.example.com"
    assert org.org_id.startswith("00D")
