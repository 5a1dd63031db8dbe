"""The dispatcher's API economy: org back-off, API budget (pause, re-check, resume) and the change
probe, decided per tick over the real state table (moto DynamoDB via PynamoDB) and a scripted
Salesforce composite client."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sfsync.clock import UTC
from sfsync.config import Settings, load_settings
from sfsync.dispatcher import BUDGET_RECHECK_SECONDS, ApiEconomy, DispatchResult, dispatch, event_reason
from sfsync.exceptions import SalesforceRateLimited
from sfsync.org_state import BudgetRecord, OrgStateStore
from sfsync.state import Lifecycle, StateStore

from tests.support.aws import mocked_state_store

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
OBJECTS = ["Account", "Contact", "Lead"]


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


class ScriptedSalesforce:
    """Answers composite probes from ``changed`` (objects with updated ids) and reports ``usage``."""

    api_version = "59.0"

    def __init__(self, usage: tuple[int, int] | None = (10, 1000)) -> None:
        self.calls_made = 0
        self.usage_next = usage
        self._usage: tuple[int, int] | None = None
        self.changed: set[str] = set()
        #: objects whose delete log was purged after their probe window started
        self.purged: set[str] = set()
        self.rate_limited = False
        self.probed: list[str] = []

    def api_usage(self) -> tuple[int, int] | None:
        return self._usage

    def _call(self) -> None:
        self.calls_made += 1
        if self.rate_limited:
            raise SalesforceRateLimited(
                "TotalRequests Limit exceeded.", error_code="REQUEST_LIMIT_EXCEEDED", status=403
            )
        self._usage = self.usage_next

    def limits(self) -> dict[str, Any]:
        self._call()
        used, maximum = self.usage_next or (0, 1)
        return {"DailyApiRequests": {"Max": maximum, "Remaining": maximum - used}}

    def composite(self, subrequests: list[dict[str, Any]], all_or_none: bool = False) -> list[dict[str, Any]]:
        self._call()
        out = []
        for sub in subrequests:
            obj, kind = sub["url"].split("/sobjects/")[1].split("/")[:2]
            if kind == "updated":
                self.probed.append(obj)
                body: dict[str, Any] = {"ids": ["001000000000001AAA"] if obj in self.changed else []}
                body["latestDateCovered"] = "2026-11-24T12:00:00.000+0000"
            else:
                earliest = "2026-11-24T12:05:00.000+0000" if obj in self.purged else "2026-11-01T00:00:00.000+0000"
                body = {"deletedRecords": [], "earliestDateAvailable": earliest}
            out.append({"referenceId": sub["referenceId"], "httpStatusCode": 200, "body": body})
        return out


class RecordingInvoker:
    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []

    def start_object_sync(self, object_name: str, cycle_id: str, reason: str) -> None:
        self.started.append((object_name, reason))


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch) -> Iterator[StateStore]:
    with mocked_state_store(monkeypatch) as store:
        yield store


@pytest.fixture
def org(state: StateStore) -> OrgStateStore:
    return OrgStateStore("state", region="eu-west-1")


def settings(**extra: str) -> Settings:
    return load_settings({"SFSYNC_STATE_TABLE": "state", "SFSYNC_OBJECTS": ",".join(OBJECTS), **extra})


def finished_cycles(
    state: StateStore,
    *,
    ended: dt.datetime,
    objects: list[str] = OBJECTS,
    lifecycle: dict[str, Lifecycle] | None = None,
) -> None:
    """Every object has run once, ended at ``ended``, with a watermark a minute before (and the
    lifecycle bookkeeping ``lifecycle`` gives it, saved under the cycle's lease)."""
    for name in objects:
        state.acquire_lease(name, f"{name}-c0", now=ended, ttl_seconds=600)
        state.set_full_copy_watermark(name, ended - dt.timedelta(minutes=1), by="test")
        if lifecycle and name in lifecycle:
            state.save_lifecycle(name, lifecycle[name], holder=f"{name}-c0", now=ended)
        state.release_lease(name, f"{name}-c0", ended_at=ended, status="complete", resume_pending=False)


def tick(
    when: dt.datetime, state: StateStore, org: OrgStateStore, sf: ScriptedSalesforce, **env: str
) -> tuple[DispatchResult, RecordingInvoker]:
    invoker = RecordingInvoker()
    config = settings(**env)
    result = dispatch(when, config, state, invoker, economy=ApiEconomy(sf, state, org, config, when))
    return result, invoker


def test_given_idle_objects_when_due_then_one_probe_call_and_nothing_starts(
    state: StateStore, org: OrgStateStore
) -> None:
    finished_cycles(state, ended=at(0))
    sf = ScriptedSalesforce()
    result, invoker = tick(at(400), state, org, sf)
    assert invoker.started == []
    assert sf.calls_made == 1
    assert sorted(sf.probed) == sorted(OBJECTS)
    assert set(result.skipped) == set(OBJECTS)
    assert result.to_dict()["probe"]["api_calls"] == 1


def test_given_a_change_on_one_object_then_only_it_starts(state: StateStore, org: OrgStateStore) -> None:
    finished_cycles(state, ended=at(0))
    sf = ScriptedSalesforce()
    sf.changed = {"Contact"}
    result, invoker = tick(at(400), state, org, sf)
    assert invoker.started == [("Contact", "due")]
    assert result.skipped["Account"].startswith("probe: no change since")


def test_given_first_and_resume_objects_then_they_start_without_a_probe(state: StateStore, org: OrgStateStore) -> None:
    state.acquire_lease("Contact", "c1", now=at(0), ttl_seconds=600)
    state.release_lease("Contact", "c1", ended_at=at(10), status="partial", resume_pending=True)
    sf = ScriptedSalesforce()
    _, invoker = tick(at(11), state, org, sf)
    assert sorted(invoker.started) == [("Account", "first"), ("Contact", "resume"), ("Lead", "first")]
    assert sf.calls_made == 0


def test_given_usage_above_the_share_then_nothing_starts_until_it_falls_with_rechecks_spaced(
    state: StateStore, org: OrgStateStore
) -> None:
    finished_cycles(state, ended=at(0))
    sf = ScriptedSalesforce(usage=(850, 1000))
    sf.changed = {"Account"}

    paused, invoker = tick(at(400), state, org, sf)
    assert invoker.started == []
    assert paused.skipped["Account"] == "api budget: API usage 85.0% ≥ limit 80%"
    assert org.get_budget().state.paused is True

    calls = sf.calls_made
    still, invoker = tick(at(460), state, org, sf)  # inside the re-check interval: no call at all
    assert invoker.started == [] and sf.calls_made == calls
    assert "usage re-read after" in still.skipped["Account"]

    sf.usage_next = (780, 1000)  # between the resume threshold (75 %) and the limit: stays paused
    between, invoker = tick(at(400 + BUDGET_RECHECK_SECONDS), state, org, sf)
    assert invoker.started == [] and sf.calls_made == calls + 1  # one /limits call, no probe
    assert "stay paused" in between.skipped["Account"]

    sf.usage_next = (100, 1000)
    resumed, invoker = tick(at(400 + 2 * BUDGET_RECHECK_SECONDS), state, org, sf)
    assert invoker.started == [("Account", "due")]
    assert resumed.to_dict()["api_budget"]["allow_new_work"] is True
    assert org.get_budget() == BudgetRecord(
        org.get_budget().state, 100, 1000, "Sforce-Limit-Info", at(400 + 2 * BUDGET_RECHECK_SECONDS)
    )
    assert org.get_budget().state.paused is False


def test_given_a_configured_share_then_the_budget_uses_it(state: StateStore, org: OrgStateStore) -> None:
    finished_cycles(state, ended=at(0))
    sf = ScriptedSalesforce(usage=(600, 1000))
    sf.changed = {"Lead"}
    result, invoker = tick(at(400), state, org, sf, SFSYNC_API_BUDGET_PERCENT="50")
    assert invoker.started == []
    assert result.skipped["Lead"] == "api budget: API usage 60.0% ≥ limit 50%"


def test_given_request_limit_exceeded_in_the_probe_then_the_org_backs_off_and_no_call_until_it_passes(
    state: StateStore, org: OrgStateStore
) -> None:
    finished_cycles(state, ended=at(0))
    sf = ScriptedSalesforce()
    sf.changed = {"Account"}
    sf.rate_limited = True

    hit, invoker = tick(at(400), state, org, sf, SFSYNC_ORG_BACKOFF_SECONDS="600")
    assert invoker.started == []
    assert state.get_org_backoff() == at(1000)
    assert all(reason.startswith("org backed off until") for reason in hit.skipped.values())

    sf.rate_limited = False
    calls = sf.calls_made
    held, invoker = tick(at(999), state, org, sf)
    assert invoker.started == [] and sf.calls_made == calls
    assert held.skipped["Account"] == "org backed off until 2026-11-24T12:16:40.000Z (REQUEST_LIMIT_EXCEEDED)"

    _, invoker = tick(at(1000), state, org, sf)
    assert invoker.started == [("Account", "due")]


def test_given_a_cycle_backed_off_the_org_then_even_first_runs_wait(state: StateStore, org: OrgStateStore) -> None:
    state.set_org_backoff(at(300), reason="Account: REQUEST_LIMIT_EXCEEDED", now=at(0))
    sf = ScriptedSalesforce()
    result, invoker = tick(at(10), state, org, sf)
    assert invoker.started == [] and sf.calls_made == 0
    assert set(result.skipped) == set(OBJECTS)
    assert result.to_dict()["held_all"].startswith("org backed off until")


# -- lifecycle work while the probe says idle ----------------------------------------------------


def started_reasons(result: DispatchResult) -> dict[str, str]:
    return {item["object"]: item["reason"] for item in result.started}


def test_given_an_idle_object_when_its_formula_refresh_falls_due_then_it_starts_with_that_reason(
    state: StateStore, org: OrgStateStore
) -> None:
    refreshed = Lifecycle(formulas_refreshed_at=at(0), reconciled_at=at(0))
    finished_cycles(state, ended=at(0), lifecycle={"Contact": refreshed, "Lead": Lifecycle(reconciled_at=at(0))})
    sf = ScriptedSalesforce()

    early, invoker = tick(at(3599), state, org, sf, SFSYNC_FORMULA_REFRESH_SECONDS="3600")
    assert invoker.started == []
    assert early.skipped["Contact"].startswith("probe: no change since")

    due, invoker = tick(at(3600), state, org, sf, SFSYNC_FORMULA_REFRESH_SECONDS="3600")
    assert started_reasons(due) == {"Contact": "formula-refresh"}
    assert invoker.started == [("Contact", event_reason("formula-refresh"))]
    assert due.economy["probe"]["objects"]["Contact"]["has_work"] is False, "the probe saw no change"
    assert set(due.skipped) == {"Account", "Lead"}
    assert due.economy["reasons"] == {"Contact": "formula-refresh"}


def test_given_an_object_option_when_the_formula_interval_is_shorter_then_it_wins_over_the_global_one(
    state: StateStore, org: OrgStateStore
) -> None:
    finished_cycles(state, ended=at(0), lifecycle={"Lead": Lifecycle(formulas_refreshed_at=at(0))})
    options = '{"Lead": {"formula_refresh_seconds": 900}}'
    result, _ = tick(at(900), state, org, ScriptedSalesforce(), SFSYNC_OBJECT_OPTIONS=options)
    assert started_reasons(result) == {"Lead": "formula-refresh"}


def test_given_an_object_without_recycle_bin_when_its_reconcile_interval_passes_then_it_starts_to_reconcile(
    state: StateStore, org: OrgStateStore
) -> None:
    objects = ["Account", "CampaignMember"]
    reconciled = {name: Lifecycle(reconciled_at=at(0)) for name in objects}
    finished_cycles(state, ended=at(0), objects=objects, lifecycle=reconciled)
    env = {"SFSYNC_OBJECTS": ",".join(objects), "SFSYNC_RECONCILE_SECONDS": "1800"}
    sf = ScriptedSalesforce()

    early, invoker = tick(at(1799), state, org, sf, **env)
    assert invoker.started == [] and set(early.skipped) == set(objects)

    due, invoker = tick(at(1800), state, org, sf, **env)
    assert started_reasons(due) == {"CampaignMember": "reconcile"}
    assert [name for name, _ in invoker.started] == ["CampaignMember"]
    assert due.skipped["Account"].startswith("probe: no change since"), "Account has a recycle bin: getDeleted"


def test_given_a_purged_delete_log_and_no_change_when_probed_then_it_starts_to_resync(
    state: StateStore, org: OrgStateStore
) -> None:
    finished_cycles(state, ended=at(0))
    sf = ScriptedSalesforce()
    sf.purged = {"Lead"}
    sf.changed = {"Account"}

    result, _ = tick(at(400), state, org, sf)

    assert started_reasons(result) == {"Account": "due", "Lead": "resync"}


def test_given_lifecycle_work_due_when_the_api_budget_is_reached_then_it_waits_too(
    state: StateStore, org: OrgStateStore
) -> None:
    finished_cycles(state, ended=at(0), lifecycle={"Contact": Lifecycle(formulas_refreshed_at=at(0))})
    sf = ScriptedSalesforce(usage=(900, 1000))

    result, invoker = tick(at(3600), state, org, sf, SFSYNC_FORMULA_REFRESH_SECONDS="3600")

    assert invoker.started == []
    assert result.skipped["Contact"].startswith("api budget:")


def test_given_reasons_when_sent_in_the_event_then_only_ones_the_event_accepts_pass_and_others_become_due() -> None:
    from sfsync.events import ObjectSyncEvent

    for reason in ("due", "first", "resume", "formula-refresh", "reconcile", "resync"):
        sent = event_reason(reason)
        ObjectSyncEvent(object="Contact", cycle_id="Contact-1", reason=sent)  # type: ignore[arg-type]
        assert sent in (reason, "due")
    assert event_reason("first") == "first" and event_reason("resume") == "resume"
