"""Periodic lifecycle work reaches objects the change probe calls idle, on the real path: schedule ->
DispatcherFunction (probe over ``/composite``, then the lifecycle schedule from the state table) ->
ObjectSyncFunction -> record tables, against the emulator over HTTPS and the local stack.

A formula value and a row deleted without a delete-log entry change nothing the probe can see
(no ``SystemModstamp`` moves, getDeleted lists nothing): only the formula refresh and the Id
reconciliation find them, so the dispatcher must start those cycles on their own schedule.

Time is the emulator's virtual clock (the engine clock follows it); see test_dispatcher_economy.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sfsync.store.state import Lifecycle, StateStore

from tests.functional.conftest import DeployStack
from tests.functional.test_dispatcher_economy import (
    LAG_SECONDS,
    OVERLAP_SECONDS,
    Deploy,
    copied,
    items_of,
    settle,
    started,
    tick,
)

pytestmark = pytest.mark.functional

PAUSE = 300
STEP = PAUSE + OVERLAP_SECONDS + LAG_SECONDS
INTERVAL = 1800  # formula refresh / reconciliation interval of the object under test


@pytest.fixture
def emulator_records() -> int:
    return 120


@pytest.fixture
def deploy(deploy_stack: DeployStack, monkeypatch: pytest.MonkeyPatch) -> Deploy:
    """Deploy the local stack syncing ``objects`` with per-object options (``SFSYNC_OBJECT_OPTIONS``)."""

    def make(objects: str, options: dict[str, dict[str, Any]]) -> Any:
        monkeypatch.setenv("SFSYNC_OVERLAP_SECONDS", str(OVERLAP_SECONDS))
        monkeypatch.setenv("SFSYNC_OBJECT_OPTIONS", json.dumps(options))
        return deploy_stack({"SyncObjects": objects, "PauseSeconds": str(PAUSE)})

    return make


def lifecycle_of(stack: Any, obj: str) -> Lifecycle:
    return StateStore(stack.table_name("StateTable"), region=stack.region).get_lifecycle(obj)


def org_now(emulator: Any) -> dt.datetime:
    return dt.datetime.fromtimestamp(emulator.clock.now_ms() / 1000, tz=dt.UTC)


def start_idle(stack: Any, emulator: Any, obj: str) -> None:
    """First copy of ``obj`` (the workflow), its first cycle, then ticks until the probe finds it idle."""
    first, _, _ = copied(stack, emulator, LAG_SECONDS + 1)
    assert started(first) == {obj: "first"}
    settle(stack, emulator, STEP)


def idle_until(stack: Any, emulator: Any, obj: str, due_at: dt.datetime) -> int:
    """Tick (whole pauses) up to just before ``due_at``; every tick must find ``obj`` idle and start nothing."""
    idle_ticks = 0
    while (left := (due_at - org_now(emulator)).total_seconds()) > 1:
        result, runs, _ = tick(stack, emulator, min(STEP, left - 1))
        assert result["started"] == [] and runs == [], result
        assert result["skipped"][obj].startswith("probe: no change since"), result
        idle_ticks += 1
    return idle_ticks


def test_given_a_parent_change_that_moves_only_a_formula_when_contact_is_idle_then_the_refresh_brings_it(
    deploy: Deploy, emulator: Any
) -> None:
    stack = deploy("Contact", {"Contact": {"formula_refresh_seconds": INTERVAL}})
    start_idle(stack, emulator, "Contact")
    refreshed = lifecycle_of(stack, "Contact").formulas_refreshed_at
    assert refreshed is not None
    org = emulator.org
    contact = next(i for i, item in items_of(stack, "ContactTable").items() if item.get("AccountId"))
    account = org.get("Contact", contact)["AccountId"]
    rating = "Cold" if org.get("Account", account)["Rating"] == "Hot" else "Hot"
    stamp = org.get("Contact", contact)["SystemModstamp"]

    org.update("Account", account, {"Rating": rating}, as_api=False)  # Account is not synced: only Contact is probed
    assert org.get("Contact", contact)["SystemModstamp"] == stamp, "a formula change does not move the stamp"
    assert org.get("Contact", contact)["Account_Rating__c"] == rating

    assert idle_until(stack, emulator, "Contact", refreshed + dt.timedelta(seconds=INTERVAL)) >= 1
    assert items_of(stack, "ContactTable")[contact].get("Account_Rating__c") != rating, "not before the refresh"

    due, runs, _ = tick(stack, emulator, 2)

    assert started(due) == {"Contact": "formula-refresh"}
    assert due["probe"]["objects"]["Contact"]["has_work"] is False, "the probe saw no change"
    [run] = runs
    assert run.result["status"] == "complete" and run.result["counts"]["RecordsRead"] == 0
    assert run.result["extra"]["FormulaRowsRefreshed"] >= 1
    item = items_of(stack, "ContactTable")[contact]
    assert item["Account_Rating__c"] == rating
    assert item["_formulas_as_of"][:16] == org_now(emulator).strftime("%Y-%m-%dT%H:%M")
    after = lifecycle_of(stack, "Contact").formulas_refreshed_at
    assert after is not None and after > refreshed

    quiet, runs, _ = tick(stack, emulator, STEP)  # the schedule starts over: idle again
    assert quiet["started"] == [] and runs == []


def forget_delete_log_entry(emulator: Any, record_id: str) -> None:
    """Remove one row from the emulator's delete log without moving ``earliestDateAvailable``.

    Models the case the reconciliation exists for: a row of an object without a recycle bin that
    is gone and that getDeleted does not list.  (The store's ``purge_delete_log`` would also move
    ``earliestDateAvailable``, which the probe reports as a gap: see the next test.)
    """
    org = emulator.org
    with org.lock:
        org.conn.execute("DELETE FROM _deletelog WHERE id = ?", (record_id,))


def live_members(stack: Any) -> list[str]:
    return sorted(i for i, item in items_of(stack, "CampaignMemberTable").items() if not item["IsDeleted"])


def salesforce_member_ids(emulator: Any) -> set[str]:
    rows = emulator.salesforce().query_all("SELECT Id FROM CampaignMember", include_deleted=True)["records"]
    return {str(row["Id"]) for row in rows}


def test_given_a_campaign_member_gone_without_a_delete_log_entry_when_idle_then_reconciled_after_the_interval(
    deploy: Deploy, emulator: Any
) -> None:
    stack = deploy("CampaignMember", {"CampaignMember": {"reconcile_seconds": INTERVAL}})
    start_idle(stack, emulator, "CampaignMember")
    reconciled = lifecycle_of(stack, "CampaignMember").reconciled_at
    assert reconciled is not None
    member = live_members(stack)[0]

    emulator.org.delete("CampaignMember", member, as_api=False)  # no recycle bin: the row is gone
    forget_delete_log_entry(emulator, member)
    assert member not in salesforce_member_ids(emulator)

    assert idle_until(stack, emulator, "CampaignMember", reconciled + dt.timedelta(seconds=INTERVAL)) >= 1
    assert items_of(stack, "CampaignMemberTable")[member]["IsDeleted"] is False, "nothing can see it before"

    due, runs, _ = tick(stack, emulator, 2)

    assert started(due) == {"CampaignMember": "reconcile"}
    assert due["probe"]["objects"]["CampaignMember"]["has_work"] is False
    [run] = runs
    assert run.result["extra"]["ReconcileTombstoned"] == 1
    item = items_of(stack, "CampaignMemberTable")[member]
    assert item["IsDeleted"] is True and item["_deleted_by"] == "reconcile"
    assert set(live_members(stack)) == salesforce_member_ids(emulator)


def test_given_a_purged_delete_log_when_probed_then_the_object_resyncs_at_once_and_reconciles(
    deploy: Deploy, emulator: Any
) -> None:
    stack = deploy("CampaignMember", {"CampaignMember": {"reconcile_seconds": 86_400}})
    start_idle(stack, emulator, "CampaignMember")
    member = live_members(stack)[0]

    emulator.org.delete("CampaignMember", member, as_api=False)
    emulator.clock.advance(1)
    emulator.org.purge_delete_log()  # getDeleted can no longer list it: earliestDateAvailable moves past us

    result, runs, _ = tick(stack, emulator, STEP)

    assert started(result) == {"CampaignMember": "resync"}
    assert "re-sync needed" in result["probe"]["objects"]["CampaignMember"]["reason"]
    [run] = runs
    assert run.result["extra"]["ReconcileTombstoned"] == 1
    item = items_of(stack, "CampaignMemberTable")[member]
    assert item["IsDeleted"] is True and item["_deleted_by"] == "reconcile"
    assert set(live_members(stack)) == salesforce_member_ids(emulator)


def test_given_a_cached_describe_when_a_changed_object_cycles_then_describe_is_revalidated_with_a_304(
    deploy: Deploy, emulator: Any
) -> None:
    stack = deploy("Contact", {})
    start_idle(stack, emulator, "Contact")
    contact = sorted(items_of(stack, "ContactTable"))[0]
    emulator.org.update("Contact", contact, {"Title": "Revalidated"}, as_api=False)
    entry = len(emulator.request_log())

    result, runs, _ = tick(stack, emulator, STEP)

    assert started(result) == {"Contact": "due"}
    describes = [e for e in emulator.request_log()[entry:] if e["path"].endswith("/sobjects/Contact/describe")]
    assert [e["status"] for e in describes] == [304], "the cycle downloads no full describe"
    assert items_of(stack, "ContactTable")[contact]["Title"] == "Revalidated"
    assert runs[0].result["counts"]["ApiCalls"] >= 1
