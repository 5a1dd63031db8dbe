"""The whole record lifecycle, over the real emulator (HTTPS, simple-salesforce) and the real local
stack (template.yaml in moto): every object family, schema and permission changes, soft and hard
deletes, purged recycle bins, merges, conversions, archived activities, formula refreshes and the
Bulk path for large backlogs.

Every test ends by comparing the DynamoDB copy with what the integration user sees through the
emulator's API (:func:`assert_copy_matches`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from collections.abc import Sequence
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer
from sfsync.core.clock import normalize_stamp
from sfsync.core.config import Settings, load_settings
from sfsync.inbound.cycle import CycleResult, CycleStores, run_object_cycle
from sfsync.items.snapshot import BASE_ATTRIBUTE
from sfsync.salesforce import RetryPolicy, SalesforceClient, client_from_secret
from sfsync.store.records import RecordStore
from sfsync.store.state import StateStore

from tests.functional.conftest import DeployStack
from tests.support.compare import UNSELECTED_TYPES, stored_number_or_value

pytestmark = pytest.mark.functional

STANDARD = "Lead,Contact,Account,User,Opportunity,OpportunityContactRole,Campaign,CampaignMember,Task,Event"
CUSTOM = "Project__c,Milestone__c"
LAG = 60
STEP = LAG + 301  # a pause plus the safety lag: a change made now is inside the next window
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}(?:[+-]\d{4}|Z)$")
ENGINE_ATTRIBUTES = {
    "sobject",
    "SystemModstamp",
    "IsDeleted",
    "_synced_at",
    "_cycle_id",
    "_expires_at",
    "_merged_into",
    "_deleted_by",
    "_formulas_as_of",
    BASE_ATTRIBUTE,  # the write-back's base snapshot (sfsync.items.snapshot) on the write-back objects' items
}
FAMILY_OF = {
    "Lead": "LeadTable",
    "Contact": "ContactTable",
    "Account": "AccountTable",
    "User": "UserTable",
    "Opportunity": "OpportunityTable",
    "OpportunityContactRole": "OpportunityTable",
    "Campaign": "CampaignTable",
    "CampaignMember": "CampaignMemberTable",
    "Task": "ActivityTable",
    "Event": "ActivityTable",
    "Project__c": "CustomTable",
    "Milestone__c": "CustomTable",
}


# -- fixtures: a small org, the stack, and a harness that runs cycles ---------------------------


@pytest.fixture
def emulator_seed() -> int:
    return 11


@pytest.fixture
def emulator_records() -> int:
    return 100


@pytest.fixture(name="stack")
def stack_fixture(deploy_stack: DeployStack) -> Any:
    return deploy_stack({"SyncObjects": STANDARD, "CustomObjects": CUSTOM, "PauseSeconds": "300"})


class Harness:
    """Runs object cycles the way ObjectSyncFunction does, with per-test settings."""

    def __init__(self, emulator: Any, stack: Any, secret: dict[str, Any], clock: Any) -> None:
        self.emulator = emulator
        self.stack = stack
        self.clock = clock
        self.env = dict(stack.function_environment("ObjectSyncFunction"))
        self.env["SFSYNC_SAFETY_LAG_SECONDS"] = str(LAG)
        self.options: dict[str, dict[str, Any]] = {}
        self.sf: SalesforceClient = client_from_secret(secret, retry=RetryPolicy(max_attempts=4), sleep=lambda _s: None)
        self.ddb = stack.boto3_client("dynamodb")
        self.records = RecordStore(
            self.ddb,
            json.loads(self.env["SFSYNC_RECORD_TABLES"]),
            errors_table=self.env["SFSYNC_ERRORS_TABLE"],
            sleep=lambda _s: None,
        )
        self.state = StateStore(self.env["SFSYNC_STATE_TABLE"], region=stack.region)
        self._ids = itertools.count(1)

    def settings(self, **env: str) -> Settings:
        merged = {**self.env, **env}
        if self.options:
            merged["SFSYNC_OBJECT_OPTIONS"] = json.dumps(self.options)
        return load_settings(merged)

    def cycle(self, obj: str, records: RecordStore | None = None, /, **env: str) -> CycleResult:
        return run_object_cycle(
            obj,
            f"{obj}-t{next(self._ids)}",
            settings=self.settings(**env),
            sf=self.sf,
            store=CycleStores(self.state, records or self.records),
            now=self.clock,
            reason="manual",
            sleep=lambda _s: None,
        )

    def step(self, seconds: float = STEP) -> None:
        self.emulator.clock.advance(seconds)

    def sync(self, *objects: str, **env: str) -> dict[str, CycleResult]:
        """Move time past the lag, then one cycle per object; every cycle must complete."""
        self.step()
        results = {obj: self.cycle(obj, **env) for obj in objects}
        for obj, result in results.items():
            assert result.status == "complete", (obj, result.to_dict())
        return results

    def items(self, obj: str) -> dict[str, dict[str, Any]]:
        de = TypeDeserializer()
        found: dict[str, dict[str, Any]] = {}
        table = self.stack.table_name(FAMILY_OF[obj])
        for page in self.ddb.get_paginator("scan").paginate(TableName=table):
            for raw in page["Items"]:
                item = {k: de.deserialize(v) for k, v in raw.items()}
                if item.get("sobject") == obj:
                    found[str(item["Id"])] = item
        return found

    def item(self, obj: str, record_id: str) -> dict[str, Any]:
        return self.items(obj)[record_id]

    def errors(self, obj: str) -> list[dict[str, Any]]:
        de = TypeDeserializer()
        response = self.ddb.query(
            TableName=self.env["SFSYNC_ERRORS_TABLE"],
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"ERRORS#{obj}"}},
        )
        return [{k: de.deserialize(v) for k, v in raw.items()} for raw in response["Items"]]


@pytest.fixture(name="h")
def harness_fixture(emulator: Any, stack: Any, salesforce_secret: dict[str, Any], engine_time: Any) -> Harness:
    return Harness(emulator, stack, salesforce_secret, engine_time)


# -- the comparison: DynamoDB copy == what the integration user sees -----------------------------


def expected_value(value: Any) -> Any:
    if isinstance(value, str) and _DATETIME.match(value):
        return normalize_stamp(value)
    return stored_number_or_value(value)


def salesforce_view(
    h: Harness, obj: str, fields: Sequence[str] | None, *, formulas: bool, exclude: Sequence[str] = ()
) -> dict[str, dict[str, Any]]:
    """Every row of ``obj`` the integration user can see, deleted and archived ones included."""
    sf = h.emulator.salesforce()
    describe = getattr(sf, obj).describe()
    names = [
        f["name"]
        for f in describe["fields"]
        if f["type"] not in UNSELECTED_TYPES
        and (formulas or not f["calculated"])
        and (fields is None or f["name"] in fields or f["name"] in ("Id", "SystemModstamp", "IsDeleted"))
        and f["name"] not in exclude
    ]
    rows = sf.query_all(f"SELECT {', '.join(names)} FROM {obj}", include_deleted=True)["records"]
    return {row["Id"]: {k: v for k, v in row.items() if k != "attributes"} for row in rows}


def assert_copy_matches(
    h: Harness,
    obj: str,
    *,
    fields: Sequence[str] | None = None,
    formulas: bool = False,
    retained: Sequence[str] = (),
    exclude: Sequence[str] = (),
    unstorable: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """The table holds exactly what the integration user sees of ``obj``.

    Every visible row is an item with equal values (null = absent attribute); an item whose row is
    gone from Salesforce (hard delete, purge, lost access) must be a tombstone; an item carries no
    attribute beyond the visible fields, formula fields, the engine's attributes and ``retained``
    (fields that stopped being readable, whose last values are kept).  ``unstorable`` rows may be
    absent (they must have an errors-table row instead).
    """
    for record_id in unstorable:
        assert any(e["record_id"] == record_id for e in h.errors(obj)), f"{obj} {record_id} has no errors row"
    items = h.items(obj)
    view = salesforce_view(h, obj, fields, formulas=formulas, exclude=exclude)
    missing = sorted(set(view) - set(items) - set(unstorable))
    assert not missing, f"{obj}: {len(missing)} rows missing from the table, e.g. {missing[:3]}"
    for record_id, item in items.items():
        row = view.get(record_id)
        if row is None:
            assert item["IsDeleted"] is True, f"{obj} {record_id} is gone from Salesforce but live in the table"
            continue
        for name, value in row.items():
            if value is None:
                assert name not in item, f"{obj} {record_id}.{name} should be absent (null in Salesforce)"
            else:
                assert item.get(name) == expected_value(value), f"{obj} {record_id}.{name}"
        extra = set(item) - set(row) - ENGINE_ATTRIBUTES - set(retained)
        if not formulas:
            extra -= formula_names(h, obj)
        assert not extra, f"{obj} {record_id} carries unexpected attributes {sorted(extra)}"
    return items


def formula_names(h: Harness, obj: str) -> set[str]:
    describe = getattr(h.emulator.salesforce(), obj).describe()
    return {f["name"] for f in describe["fields"] if f["calculated"]}


def sf_now(h: Harness) -> dt.datetime:
    return dt.datetime.fromtimestamp(h.emulator.clock.now_ms() / 1000, tz=dt.UTC)


# -- 1. every object family ------------------------------------------------------------------------


def test_given_every_configured_object_when_each_cycles_through_the_handler_then_every_table_matches(
    h: Harness, stack: Any
) -> None:
    objects = [*STANDARD.split(","), *CUSTOM.split(",")]
    h.step()
    for obj in objects:
        result = stack.invoke("ObjectSyncFunction", {"object": obj, "cycle_id": f"all-{obj}", "reason": "manual"})
        assert result["status"] == "complete", result
    for obj in objects:
        items = assert_copy_matches(h, obj, formulas=True)
        assert items, f"the seeded org has {obj} rows"
    account = next(iter(h.items("Account").values()))
    assert "BillingAddress" not in account, "compound fields are stored as their components only"
    assert any("BillingCity" in item for item in h.items("Account").values())


def test_given_include_and_exclude_options_when_cycling_then_only_those_fields_are_stored(h: Harness) -> None:
    h.options = {
        "Contact": {"include_fields": ["LastName", "Email", "AccountId"]},
        "Lead": {"exclude_fields": ["Phone"]},
    }
    h.sync("Contact", "Lead")
    contacts = assert_copy_matches(h, "Contact", fields=["LastName", "Email", "AccountId"])
    allowed = {"Id", "LastName", "Email", "AccountId"} | formula_names(h, "Contact")
    assert all(set(item) - ENGINE_ATTRIBUTES <= allowed for item in contacts.values())
    leads = assert_copy_matches(h, "Lead", exclude=["Phone"])
    assert not any("Phone" in item for item in leads.values())
    assert any("Email" in item for item in leads.values())


def live_ids(h: Harness, obj: str, where: str = "") -> list[str]:
    sf = h.emulator.salesforce()
    soql = f"SELECT Id FROM {obj}" + (f" WHERE {where}" if where else "") + " ORDER BY Id"
    return [row["Id"] for row in sf.query_all(soql)["records"]]


# -- 2. schema and permission changes --------------------------------------------------------------


def test_given_a_field_that_becomes_visible_when_the_next_cycle_runs_then_it_is_backfilled(h: Harness) -> None:
    org = h.emulator.org
    org.hide_field("Lead", "Title")
    h.sync("Lead")
    assert not any("Title" in item for item in h.items("Lead").values())

    org.show_field("Lead", "Title")
    result = h.sync("Lead")["Lead"]
    assert result.extra["FieldsAppeared"] == 1
    assert result.extra["RowsBackfilled"] > 0
    items = assert_copy_matches(h, "Lead")
    assert any("Title" in item for item in items.values()), "existing items got the new field"


def test_given_a_field_that_disappears_when_cycles_run_then_it_is_no_longer_read_and_values_are_kept(
    h: Harness,
) -> None:
    org = h.emulator.org
    h.sync("Lead")
    lead = next(i for i, item in h.items("Lead").items() if "Title" in item and not item["IsDeleted"])
    kept = h.item("Lead", lead)["Title"]

    org.hide_field("Lead", "Title")
    org.update("Lead", lead, {"Company": "Changed After Hiding"}, as_api=False)
    result = h.sync("Lead")["Lead"]
    assert result.extra["FieldsDisappeared"] == 1
    item = h.item("Lead", lead)
    assert item["Company"] == "Changed After Hiding"
    assert item["Title"] == kept, "the last readable value is kept, not dropped"
    assert_copy_matches(h, "Lead", retained=["Title"])


# -- 3. deletes ------------------------------------------------------------------------------------


def test_given_soft_delete_then_undelete_when_cycles_run_then_tombstone_with_ttl_then_live_again(h: Harness) -> None:
    h.options = {"Lead": {"tombstone_retention_days": 7}}
    h.sync("Lead")
    lead = live_ids(h, "Lead", "IsConverted = false")[0]

    h.emulator.org.delete("Lead", lead, as_api=False)
    result = h.sync("Lead")["Lead"]
    assert result.counts["RecordsDeleted"] == 1
    tombstone = h.item("Lead", lead)
    assert tombstone["IsDeleted"] is True
    expected_ttl = (sf_now(h) + dt.timedelta(days=7)).timestamp()
    assert abs(int(tombstone["_expires_at"]) - expected_ttl) < 120
    assert_copy_matches(h, "Lead")

    h.emulator.org.undelete("Lead", lead, as_api=False)
    h.sync("Lead")
    revived = h.item("Lead", lead)
    assert revived["IsDeleted"] is False
    assert "_expires_at" not in revived
    assert_copy_matches(h, "Lead")


def test_given_a_hard_delete_when_the_next_cycle_runs_then_getdeleted_tombstones_it(h: Harness) -> None:
    h.sync("Project__c")
    project = live_ids(h, "Project__c")[0]
    h.emulator.org.hard_delete("Project__c", project)
    assert project not in salesforce_view(h, "Project__c", ["Id"], formulas=False)

    result = h.sync("Project__c")["Project__c"]
    assert result.extra["HardDeletesTombstoned"] == 1
    item = h.item("Project__c", project)
    assert (item["IsDeleted"], item["_deleted_by"]) == (True, "getDeleted")
    assert_copy_matches(h, "Project__c")


def test_given_a_purged_delete_log_when_getdeleted_cannot_cover_then_an_id_reconciliation_tombstones(
    h: Harness,
) -> None:
    h.sync("Project__c")
    gone = live_ids(h, "Project__c")[:2]
    for project in gone:
        h.emulator.org.hard_delete("Project__c", project)
    h.step()
    h.emulator.org.purge_delete_log()  # the deletes fall out of getDeleted's reach

    result = h.sync("Project__c")["Project__c"]
    assert result.extra["ReconcileTombstoned"] == 2
    assert [h.item("Project__c", p)["_deleted_by"] for p in gone] == ["reconcile", "reconcile"]
    assert_copy_matches(h, "Project__c")


def test_given_an_object_without_recycle_bin_when_its_reconcile_interval_passes_then_lost_rows_go_and_come_back(
    h: Harness,
) -> None:
    h.options = {"CampaignMember": {"reconcile_seconds": 600}}
    h.sync("CampaignMember")
    member = live_ids(h, "CampaignMember")[0]
    h.emulator.org.set_hidden("CampaignMember", member, True)  # sharing: no delete, no stamp change

    h.sync("CampaignMember")  # inside the interval: nothing notices
    assert h.item("CampaignMember", member)["IsDeleted"] is False
    h.step(600)
    result = h.sync("CampaignMember")["CampaignMember"]
    assert result.extra["ReconcileTombstoned"] == 1
    assert h.item("CampaignMember", member)["_deleted_by"] == "reconcile"
    assert_copy_matches(h, "CampaignMember")

    h.emulator.org.set_hidden("CampaignMember", member, False)
    h.step(600)
    h.sync("CampaignMember")
    assert h.item("CampaignMember", member)["IsDeleted"] is False
    assert_copy_matches(h, "CampaignMember")


def test_given_a_deleted_campaign_member_when_the_next_cycle_runs_then_it_is_tombstoned(h: Harness) -> None:
    h.sync("CampaignMember")
    member = live_ids(h, "CampaignMember")[0]
    h.emulator.org.delete("CampaignMember", member, as_api=False)  # no recycle bin: the row is gone
    h.sync("CampaignMember")
    assert h.item("CampaignMember", member)["IsDeleted"] is True
    assert_copy_matches(h, "CampaignMember")


# -- 4. merges -------------------------------------------------------------------------------------


def test_given_an_account_merge_when_cycles_run_then_loser_points_to_winner_and_contacts_move(h: Harness) -> None:
    h.sync("Account", "Contact")
    org = h.emulator.org
    accounts = live_ids(h, "Account")
    winner, loser = accounts[0], accounts[1]
    moved = org.create("Contact", {"LastName": "Mover", "AccountId": loser}, as_api=False)
    h.sync("Contact")
    stamp_before = h.item("Contact", moved)["SystemModstamp"]

    org.merge("Account", winner, [loser])
    h.sync("Account", "Contact")
    tombstone = h.item("Account", loser)
    assert (tombstone["IsDeleted"], tombstone["MasterRecordId"], tombstone["_merged_into"]) == (True, winner, winner)
    contact = h.item("Contact", moved)
    assert contact["AccountId"] == winner
    assert contact["SystemModstamp"] > stamp_before, "the merge bumped the child's stamp"
    assert_copy_matches(h, "Account")
    assert_copy_matches(h, "Contact")


def test_given_a_lead_merge_when_cycles_run_then_campaign_members_follow_the_winner(h: Harness) -> None:
    org = h.emulator.org
    campaign = live_ids(h, "Campaign")[0]
    winner = org.create("Lead", {"LastName": "Winner", "Company": "W"}, as_api=False)
    loser = org.create("Lead", {"LastName": "Loser", "Company": "L"}, as_api=False)
    member = org.create("CampaignMember", {"CampaignId": campaign, "LeadId": loser}, as_api=False)
    h.sync("Lead", "CampaignMember")

    org.merge("Lead", winner, [loser])
    h.sync("Lead", "CampaignMember")
    assert h.item("Lead", loser)["_merged_into"] == winner
    assert h.item("CampaignMember", member)["LeadId"] == winner
    assert_copy_matches(h, "Lead")
    assert_copy_matches(h, "CampaignMember")


# -- 5. lead conversion ----------------------------------------------------------------------------


def test_given_a_converted_lead_when_cycles_run_then_lead_points_to_the_new_records(h: Harness) -> None:
    objects = ("Lead", "Contact", "Account", "Opportunity", "OpportunityContactRole")
    h.sync(*objects)
    lead = live_ids(h, "Lead", "IsConverted = false")[0]
    converted = h.emulator.org.convert_lead(lead)

    h.sync(*objects)
    item = h.item("Lead", lead)
    assert item["IsConverted"] is True
    assert item["ConvertedContactId"] == converted["contactId"]
    assert item["ConvertedAccountId"] == converted["accountId"]
    assert item["ConvertedOpportunityId"] == converted["opportunityId"]
    assert converted["contactId"] in h.items("Contact")
    assert converted["accountId"] in h.items("Account")
    assert converted["opportunityId"] in h.items("Opportunity")
    for obj in objects:
        assert_copy_matches(h, obj)


# -- 6. archived activities ------------------------------------------------------------------------


def test_given_archived_activities_when_cycles_run_then_they_stay_with_isarchived(h: Harness) -> None:
    h.sync("Task", "Event")
    task, event = live_ids(h, "Task")[0], live_ids(h, "Event")[0]
    h.emulator.org.archive("Task", task)
    h.emulator.org.archive("Event", event)

    h.sync("Task", "Event")
    assert h.item("Task", task)["IsArchived"] is True
    assert h.item("Event", event)["IsArchived"] is True
    assert_copy_matches(h, "Task")
    assert_copy_matches(h, "Event")


# -- 7. formula fields -----------------------------------------------------------------------------


def test_given_a_parent_change_when_the_formula_refresh_is_due_then_the_child_formula_arrives(h: Harness) -> None:
    h.options = {"Contact": {"formula_refresh_seconds": 900}}
    h.sync("Contact")
    org = h.emulator.org
    contact = next(i for i, item in h.items("Contact").items() if item.get("AccountId") and not item["IsDeleted"])
    account = h.item("Contact", contact)["AccountId"]
    rating = "Cold" if org.get("Account", account)["Rating"] == "Hot" else "Hot"
    stamp = org.get("Contact", contact)["SystemModstamp"]

    org.update("Account", account, {"Rating": rating}, as_api=False)
    assert org.get("Contact", contact)["SystemModstamp"] == stamp, "a formula change does not move the stamp"
    h.sync("Contact")  # inside the refresh interval: the old value stays
    assert h.item("Contact", contact).get("Account_Rating__c") != rating

    h.step(900)
    result = h.sync("Contact")["Contact"]
    assert result.extra["FormulaRowsRefreshed"] >= 1
    item = h.item("Contact", contact)
    assert item["Account_Rating__c"] == rating
    assert item["_formulas_as_of"][:16] == sf_now(h).strftime("%Y-%m-%dT%H:%M")
    assert_copy_matches(h, "Contact", formulas=True)


# -- 8. large backlog through Bulk API 2.0 ---------------------------------------------------------


def test_given_a_backlog_over_the_threshold_when_cycling_then_bulk_reads_it_and_the_copy_matches(
    h: Harness,
) -> None:
    h.sync("Lead")
    org = h.emulator.org
    for n in range(260):
        org.create("Lead", {"LastName": f"Backlog {n}", "Company": "Bulk Co", "AnnualRevenue": n * 1.5}, as_api=False)
    h.step()
    calls = h.emulator.api_calls()
    result = h.cycle("Lead", SFSYNC_BULK_THRESHOLD="220", SFSYNC_PAGE_SIZE="200")
    assert result.status == "complete", result.to_dict()
    assert result.counts["RecordsCreated"] == 260
    assert result.extra["BulkRows"] == result.counts["RecordsRead"] - 200, "REST told the size, Bulk read the rest"
    # describe, the first REST page, Bulk create + status + one result set, getDeleted
    assert h.emulator.api_calls() - calls <= 8
    assert not h.state.get_checkpoint("Lead"), "the window is complete"
    assert_copy_matches(h, "Lead")


# -- 11. observability -----------------------------------------------------------------------------


def test_given_a_cycle_when_it_finishes_then_log_line_emf_metrics_and_summary_row_tell_what_it_did(
    h: Harness, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    h.sync("Account")
    org = h.emulator.org
    org.create("Account", {"Name": "Observed Ltd"}, as_api=False)
    org.delete("Account", live_ids(h, "Account")[0], as_api=False)
    capsys.readouterr()
    caplog.clear()
    result = h.sync("Account")["Account"]

    (line,) = [r for r in caplog.records if r.getMessage() == "cycle finished"]
    counts = line.__dict__["counts"]
    assert (counts["RecordsCreated"], counts["RecordsDeleted"]) == (1, 1)
    assert counts["ApiCalls"] == result.counts["ApiCalls"] > 0
    assert line.__dict__["watermark_lag_s"] == LAG
    assert line.__dict__["backlog"] == 0 and line.__dict__["duration_ms"] > 0

    blobs = [json.loads(text) for text in capsys.readouterr().out.splitlines() if text.startswith('{"_aws"')]
    (emf,) = [b for b in blobs if b.get("object") == "Account" and "RecordsRead" in b]
    names = {m["Name"] for m in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {
        "RecordsRead",
        "RecordsCreated",
        "RecordsUpdated",
        "RecordsDeleted",
        "RecordsSkipped",
        "RecordsFailed",
        "ApiCalls",
        "WatermarkLagSeconds",
        "Backlog",
        "CycleDurationMs",
    } <= names
    assert emf["RecordsCreated"] == [1.0]

    summary = h.state.recent_cycles("Account", limit=1)[0]
    assert (summary.status, summary.counts["RecordsDeleted"]) == ("complete", 1)
