"""The dispatcher's API economy: org back-off, API budget (pause, re-check, resume) and the change
probe, decided per tick over the real state table (moto DynamoDB via PynamoDB) and a scripted
Salesforce composite client."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sfsync.core.clock import UTC, to_iso_ms
from sfsync.core.config import Settings, load_settings
from sfsync.core.exceptions import DispatchFailed, SalesforceRateLimited
from sfsync.dispatch.copies import (
    COPY_START_TIMEOUT_SECONDS,
    FAILED_COPY_RETRY_SECONDS,
    FullCopies,
    copy_execution_name,
)
from sfsync.dispatch.dispatcher import DispatchResult, dispatch, event_reason, request_resync
from sfsync.dispatch.economy import BUDGET_RECHECK_SECONDS, ApiEconomy
from sfsync.fullcopy.plan import CopyPolicy
from sfsync.store.copies import Copy, CopyStore
from sfsync.store.org_state import BudgetRecord, OrgStateStore
from sfsync.store.state import Lifecycle, StateStore

from tests.support.aws import REGION, mocked_state_store
from tests.support.fullcopy import RecordingCopyStarter

pytestmark = pytest.mark.functional

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
                # Salesforce covers the window up to its end (the probe asks up to the next whole minute)
                end = parse_qs(urlsplit(sub["url"]).query)["end"][0]
                body["latestDateCovered"] = end
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
        state.release_lease(
            name, f"{name}-c0", cycle_id=f"{name}-c0", ended_at=ended, status="complete", resume_pending=False
        )


@pytest.fixture
def copy_store(state: StateStore) -> CopyStore:
    import boto3

    return CopyStore(boto3.client("dynamodb", region_name=REGION), "state")


@pytest.fixture
def starter() -> RecordingCopyStarter:
    return RecordingCopyStarter()


#: set by the autouse fixture below: the copy adapters every ``tick`` uses
_COPIES: list[FullCopies] = []


@pytest.fixture(autouse=True)
def copies(copy_store: CopyStore, starter: RecordingCopyStarter) -> Iterator[FullCopies]:
    _COPIES[:] = [FullCopies(copy_store, starter)]
    yield _COPIES[0]
    _COPIES.clear()


def tick(
    when: dt.datetime, state: StateStore, org: OrgStateStore, sf: ScriptedSalesforce, **env: str
) -> tuple[DispatchResult, RecordingInvoker]:
    invoker = RecordingInvoker()
    config = settings(**env)
    economy = ApiEconomy(sf, state, org, config, when)
    result = dispatch(when, config, state, invoker, copies=_COPIES[0], economy=economy)
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


def test_given_copied_first_and_resume_objects_then_they_start_without_a_probe(
    state: StateStore, org: OrgStateStore
) -> None:
    for name in OBJECTS:
        state.set_full_copy_watermark(name, at(0), by="test")  # copied, never cycled
    state.acquire_lease("Contact", "c1", now=at(0), ttl_seconds=600)
    state.release_lease("Contact", "c1", cycle_id="c1", ended_at=at(10), status="partial", resume_pending=True)
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
    from sfsync.core.events import ObjectSyncEvent

    for reason in ("due", "first", "resume", "formula-refresh", "reconcile", "resync"):
        sent = event_reason(reason)
        ObjectSyncEvent(object="Contact", cycle_id="Contact-1", reason=sent)  # type: ignore[arg-type]
        assert sent in (reason, "due")
    assert event_reason("first") == "first" and event_reason("resume") == "resume"


# -- the first full copy -------------------------------------------------------------------------


def save_copy(
    store: CopyStore,
    name: str,
    status: str,
    *,
    when: dt.datetime,
    requested_by: str = "dispatcher",
    execution_arn: str | None = None,
    job_id: str | None = None,
) -> None:
    """A copy document as the workflow leaves it (``status`` running / done / failed) at ``when``."""
    existing = store.get(name)
    copy = Copy(
        object_name=name,
        copy_id=f"{name}-copy",
        fields=["Id", "SystemModstamp"],
        types={},
        policy=asdict(CopyPolicy()),
        status=status,  # type: ignore[arg-type]
        records_copied=40,
        engine_started_at=to_iso_ms(when),
        requested_by=requested_by,
        execution_arn=execution_arn,
        version=existing.version if existing else 0,
    )
    copy.parts[0].job_id = job_id
    assert store.save(copy, now=when)


def test_given_never_copied_objects_when_ticks_run_then_one_execution_for_all_and_a_second_tick_starts_nothing(
    state: StateStore, org: OrgStateStore, starter: RecordingCopyStarter
) -> None:
    finished_cycles(state, ended=at(0), objects=["Contact"])
    sf = ScriptedSalesforce()
    sf.changed = {"Contact"}

    first, invoker = tick(at(400), state, org, sf)

    name = copy_execution_name(["Account", "Lead"], "first")
    assert starter.calls == [(name, {"objects": ["Account", "Lead"], "requested_by": "dispatcher"})]
    assert invoker.started == [("Contact", "due")], "a copied object keeps its cycles in the same tick"
    assert [entry["objects"] for entry in first.copies.started] == [["Account", "Lead"]]
    assert first.skipped["Account"] == f"full copy started ({name})"
    assert sf.probed == ["Contact"], "never-copied objects are not probed"

    second, invoker = tick(at(460), state, org, sf)
    assert len(starter.calls) == 1, "the recorded start is not repeated"
    assert second.copies.held == {
        "Account": f"full copy starting ({name}), waiting for its plan",
        "Lead": f"full copy starting ({name}), waiting for its plan",
    }
    assert invoker.started == []


def test_given_an_execution_that_already_exists_when_started_then_it_is_reported_as_already_started(
    state: StateStore, org: OrgStateStore, starter: RecordingCopyStarter
) -> None:
    starter.existing.add(copy_execution_name(OBJECTS, "first"))
    result, _ = tick(at(10), state, org, ScriptedSalesforce())
    assert result.copies.started == []
    assert [entry["objects"] for entry in result.copies.already_started] == [sorted(OBJECTS)]
    assert result.skipped["Lead"].startswith("full copy already started")


def test_given_a_copy_running_then_the_object_is_held_with_its_progress_and_once_done_it_cycles(
    state: StateStore, org: OrgStateStore, copy_store: CopyStore, starter: RecordingCopyStarter
) -> None:
    finished_cycles(state, ended=at(0), objects=["Account", "Contact"])
    save_copy(copy_store, "Lead", "running", when=at(5))

    held, invoker = tick(at(10), state, org, ScriptedSalesforce())
    assert held.copies.held == {"Lead": "full copy running: 40 records"}
    assert starter.calls == [] and invoker.started == []

    save_copy(copy_store, "Lead", "done", when=at(20))
    state.set_full_copy_watermark("Lead", at(0), by="fullsync")
    done, invoker = tick(at(30), state, org, ScriptedSalesforce())
    assert invoker.started == [("Lead", "first")] and done.copies.held == {}


def test_given_a_failed_copy_then_it_is_held_and_started_again_alone_after_the_retry_delay(
    state: StateStore, org: OrgStateStore, copy_store: CopyStore, starter: RecordingCopyStarter
) -> None:
    finished_cycles(state, ended=at(0), objects=["Account", "Contact"])
    save_copy(copy_store, "Lead", "failed", when=at(100))

    early, _ = tick(at(100 + FAILED_COPY_RETRY_SECONDS - 1), state, org, ScriptedSalesforce())
    assert early.copies.held["Lead"].startswith("full copy failed; started again after")
    assert starter.calls == []

    later, _ = tick(at(100 + FAILED_COPY_RETRY_SECONDS), state, org, ScriptedSalesforce())
    name = copy_execution_name(["Lead"], "retry", "retry-20261124T120140Z")
    assert starter.calls == [(name, {"objects": ["Lead"], "requested_by": "dispatcher (retry)"})]
    assert later.copies.started[0]["reason"] == "retry"
    again, _ = tick(at(100 + FAILED_COPY_RETRY_SECONDS + 60), state, org, ScriptedSalesforce())
    assert len(starter.calls) == 1 and "waiting for its plan" in again.copies.held["Lead"]


def test_given_a_resync_request_then_a_new_execution_per_generation_and_the_object_waits_until_taken_up(
    state: StateStore, org: OrgStateStore, copy_store: CopyStore, starter: RecordingCopyStarter
) -> None:
    finished_cycles(state, ended=at(0))
    save_copy(copy_store, "Lead", "done", when=at(0))
    config = settings()

    outcome = request_resync(["Lead", "Nope__x"], config, state, at(10), requested_by="alice")
    assert outcome.requested == {"Lead": 1}
    assert "'Nope__x' is not a configured object" in outcome.rejected["Nope__x"]

    sf = ScriptedSalesforce()
    sf.changed = {"Lead"}
    _, invoker = tick(at(400), state, org, sf)
    g1 = copy_execution_name(["Lead"], "resync", "g1")
    assert starter.calls == [(g1, {"objects": ["Lead"], "resync": ["Lead"], "requested_by": "alice (re-sync g1)"})]
    assert "Lead" not in {name for name, _ in invoker.started}, "no incremental cycle during a re-sync"

    waiting, _ = tick(at(460), state, org, sf)
    assert waiting.copies.held["Lead"] == f"re-sync g1 requested; {g1} started, waiting for its plan"

    save_copy(copy_store, "Lead", "running", when=at(470), requested_by="alice (re-sync g1)")  # plan took it up
    running, _ = tick(at(480), state, org, sf)
    assert running.copies.held["Lead"].startswith("full copy running")

    request_resync(["Lead"], config, state, at(500), requested_by="alice")
    tick(at(520), state, org, sf)
    assert starter.calls[-1][0] == copy_execution_name(["Lead"], "resync", "g2") != g1


def test_given_a_running_cycle_when_a_copy_must_start_then_it_waits_for_the_cycle(
    state: StateStore, org: OrgStateStore, starter: RecordingCopyStarter
) -> None:
    state.acquire_lease("Lead", "Lead-c9", now=at(0), ttl_seconds=600)  # a cycle from before the copy feature
    result, _ = tick(at(10), state, org, ScriptedSalesforce(), SFSYNC_OBJECTS="Lead")
    assert starter.calls == []
    assert result.copies.held["Lead"] == "full copy (never copied) waits for the cycle of Lead-c9"


def test_given_a_failing_start_then_the_other_work_still_starts_and_the_tick_fails_naming_it(
    state: StateStore, org: OrgStateStore, starter: RecordingCopyStarter
) -> None:
    finished_cycles(state, ended=at(0), objects=["Contact"])
    starter.fail = True
    sf = ScriptedSalesforce()
    sf.changed = {"Contact"}
    invoker = RecordingInvoker()
    config = settings()
    economy = ApiEconomy(sf, state, org, config, at(400))
    with pytest.raises(DispatchFailed, match="Account, Lead"):
        dispatch(at(400), config, state, invoker, copies=_COPIES[0], economy=economy)
    assert invoker.started == [("Contact", "due")]
    assert state.copy_requests(["Account"])["Account"].execution_name is None, "a failed start is tried again"


def test_given_an_org_back_off_then_no_copy_starts_either(
    state: StateStore, org: OrgStateStore, starter: RecordingCopyStarter
) -> None:
    state.set_org_backoff(at(300), reason="test", now=at(0))
    result, _ = tick(at(10), state, org, ScriptedSalesforce())
    assert starter.calls == []
    assert all(why.startswith("org backed off") for why in result.copies.held.values())
    assert set(result.copies.held) == set(OBJECTS)


def test_given_a_start_that_never_planned_when_the_timeout_passes_then_it_is_started_again_under_a_new_name(
    state: StateStore, org: OrgStateStore, starter: RecordingCopyStarter
) -> None:
    first, _ = tick(at(0), state, org, ScriptedSalesforce(), SFSYNC_OBJECTS="Lead")
    name = first.copies.started[0]["execution_name"]
    held, _ = tick(at(COPY_START_TIMEOUT_SECONDS - 1), state, org, ScriptedSalesforce(), SFSYNC_OBJECTS="Lead")
    assert held.copies.held["Lead"] == f"full copy starting ({name}), waiting for its plan"

    again, _ = tick(at(COPY_START_TIMEOUT_SECONDS), state, org, ScriptedSalesforce(), SFSYNC_OBJECTS="Lead")

    [restart] = again.copies.started
    assert restart["execution_name"] == copy_execution_name(["Lead"], "retry", "restart-20261124T120000Z") != name
    assert len(starter.calls) == 2


def test_given_a_resync_start_that_never_planned_then_it_is_restarted_once_per_timeout_without_flapping(
    state: StateStore, org: OrgStateStore, starter: RecordingCopyStarter
) -> None:
    finished_cycles(state, ended=at(0), objects=["Lead"])
    request_resync(["Lead"], settings(SFSYNC_OBJECTS="Lead"), state, at(0), requested_by="ops")
    tick(at(10), state, org, ScriptedSalesforce(), SFSYNC_OBJECTS="Lead")
    restarted, _ = tick(at(10 + COPY_START_TIMEOUT_SECONDS), state, org, ScriptedSalesforce(), SFSYNC_OBJECTS="Lead")
    g1 = copy_execution_name(["Lead"], "resync", "g1")
    assert restarted.copies.started[0]["execution_name"].startswith(g1 + "-r")
    later, _ = tick(at(70 + COPY_START_TIMEOUT_SECONDS), state, org, ScriptedSalesforce(), SFSYNC_OBJECTS="Lead")
    assert later.copies.started == [] and "waiting for its plan" in later.copies.held["Lead"]
    assert len(starter.calls) == 2


# -- self-healing copies (issue #11, findings 1 and 2) ----------------------------------------------------


def running_copy(store: CopyStore, name: str, *, beat: dt.datetime, execution: str | None) -> None:
    """A copy document an execution left ``running`` at ``beat`` (its last heartbeat)."""
    arn = None if execution is None else RecordingCopyStarter().execution_arn(execution)
    save_copy(store, name, "running", when=beat, execution_arn=arn, job_id="750000000000001AAA")


@pytest.mark.parametrize("ended", ["ABORTED", "TIMED_OUT", "FAILED", "SUCCEEDED", None])
def test_given_a_copy_left_running_by_an_execution_that_ended_then_it_is_marked_failed_and_resumed_by_a_new_one(
    state: StateStore,
    org: OrgStateStore,
    copy_store: CopyStore,
    starter: RecordingCopyStarter,
    ended: str | None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.support.metrics import values_of

    finished_cycles(state, ended=at(0), objects=["Account", "Contact"])
    running_copy(copy_store, "Lead", beat=at(100), execution="first-abc")
    if ended is not None:
        starter.existing.add("first-abc")
        starter.statuses["first-abc"] = ended

    fresh, _ = tick(at(100 + 60), state, org, ScriptedSalesforce())
    assert fresh.copies.held["Lead"].startswith("full copy running") and starter.described == []  # heartbeat fresh

    healed, _ = tick(at(100 + 301), state, org, ScriptedSalesforce())
    doc = copy_store.get("Lead")
    assert doc is not None and doc.status == "failed" and doc.failures == 1
    assert doc.parts[0].job_id == "750000000000001AAA", "the checkpoint is kept: the retry resumes it"
    assert "first-abc" in healed.copies.reconciled["Lead"]
    assert values_of(capsys.readouterr().out, "CopyReconciled", object="Lead") == [1]

    retried, _ = tick(at(100 + 301 + FAILED_COPY_RETRY_SECONDS), state, org, ScriptedSalesforce())
    assert [entry["reason"] for entry in retried.copies.started] == ["retry"]
    assert starter.calls[-1][1] == {"objects": ["Lead"], "requested_by": "dispatcher (retry)"}


def test_given_a_running_execution_then_a_quiet_copy_is_left_alone_until_it_stalls_for_hours(
    state: StateStore, org: OrgStateStore, copy_store: CopyStore, starter: RecordingCopyStarter
) -> None:
    from sfsync.dispatch.copies import COPY_STALL_SECONDS

    finished_cycles(state, ended=at(0), objects=["Account", "Contact"])
    running_copy(copy_store, "Lead", beat=at(0), execution="first-abc")
    starter.existing.add("first-abc")  # RUNNING: a long Salesforce retry of one step, say

    waiting, _ = tick(at(COPY_STALL_SECONDS - 60), state, org, ScriptedSalesforce())
    assert waiting.copies.reconciled == {} and copy_store.get("Lead").status == "running"  # type: ignore[union-attr]

    stalled, _ = tick(at(COPY_STALL_SECONDS), state, org, ScriptedSalesforce())
    assert "made no progress" in stalled.copies.reconciled["Lead"]
    assert copy_store.get("Lead").status == "failed"  # type: ignore[union-attr]


def test_given_a_first_copy_whose_execution_failed_in_plan_then_it_is_retried_within_minutes_not_an_hour(
    state: StateStore, org: OrgStateStore, copy_store: CopyStore, starter: RecordingCopyStarter
) -> None:
    from sfsync.dispatch.copies import PLAN_CHECK_SECONDS

    first, _ = tick(at(0), state, org, ScriptedSalesforce(), SFSYNC_OBJECTS="Lead")
    name = first.copies.started[0]["execution_name"]
    starter.statuses[name] = "FAILED"  # a wrong secret at first deploy: plan fails, no copy document

    early, _ = tick(at(PLAN_CHECK_SECONDS - 1), state, org, ScriptedSalesforce(), SFSYNC_OBJECTS="Lead")
    assert "waiting for its plan" in early.copies.held["Lead"]

    checked, _ = tick(at(PLAN_CHECK_SECONDS), state, org, ScriptedSalesforce(), SFSYNC_OBJECTS="Lead")
    assert f"{name} ended FAILED before planning" in checked.copies.reconciled["Lead"]
    doc = copy_store.get("Lead")
    assert doc is not None and doc.status == "failed" and doc.error is not None

    retried, _ = tick(
        at(PLAN_CHECK_SECONDS + FAILED_COPY_RETRY_SECONDS), state, org, ScriptedSalesforce(), SFSYNC_OBJECTS="Lead"
    )
    assert [entry["reason"] for entry in retried.copies.started] == ["retry"]
    assert PLAN_CHECK_SECONDS + FAILED_COPY_RETRY_SECONDS < COPY_START_TIMEOUT_SECONDS / 10


def test_given_a_copy_that_keeps_failing_then_the_retries_back_off_and_it_needs_attention_but_is_still_retried(
    state: StateStore,
    org: OrgStateStore,
    copy_store: CopyStore,
    starter: RecordingCopyStarter,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sfsync.dispatch.copies import FAILED_COPY_RETRY_CAP_SECONDS, NEEDS_ATTENTION_AFTER, retry_delay

    from tests.support.metrics import values_of

    assert [retry_delay(n).total_seconds() for n in (1, 2, 3)] == [
        FAILED_COPY_RETRY_SECONDS,
        2 * FAILED_COPY_RETRY_SECONDS,
        4 * FAILED_COPY_RETRY_SECONDS,
    ]
    assert retry_delay(40).total_seconds() == FAILED_COPY_RETRY_CAP_SECONDS
    finished_cycles(state, ended=at(0), objects=["Account", "Contact"])
    when = 0.0
    for failures in range(1, NEEDS_ATTENTION_AFTER + 1):
        copy_store.record_failure(
            "Lead",
            {"Error": "SalesforceAuthError", "Cause": "invalid_grant"},
            now=at(when),
            requested_by=None,
            policy={},
        )
        result, _ = tick(at(when + 1), state, org, ScriptedSalesforce())
        assert ("Lead" in result.copies.attention) == (failures >= NEEDS_ATTENTION_AFTER), failures
        held_until = at(when) + retry_delay(failures)
        assert result.copies.held["Lead"].endswith(f"started again after {to_iso_ms(held_until)}")
        when += retry_delay(failures).total_seconds() + 10
    out = capsys.readouterr().out
    attention = values_of(out, "NeedsAttention", object="Lead")
    assert attention[-1] == 1 and set(attention[:-1]) == {0}
    assert set(values_of(out, "NeedsAttention", object="Account")) == {0}
    reason = result.copies.attention["Lead"]
    assert "invalid_grant" in reason and "sfsync resync Lead" in reason

    later, _ = tick(at(when), state, org, ScriptedSalesforce())  # still retried: a fixed cause heals alone
    assert [entry["reason"] for entry in later.copies.started] == ["retry"]


def test_given_a_resync_whose_plan_failed_then_the_retry_copies_from_zero(
    state: StateStore, org: OrgStateStore, copy_store: CopyStore, starter: RecordingCopyStarter
) -> None:
    from sfsync.dispatch.copies import PLAN_CHECK_SECONDS

    finished_cycles(state, ended=at(0), objects=["Lead"])
    save_copy(copy_store, "Lead", "done", when=at(0))
    request_resync(["Lead"], settings(SFSYNC_OBJECTS="Lead"), state, at(10), requested_by="ops")
    started, _ = tick(at(20), state, org, ScriptedSalesforce(), SFSYNC_OBJECTS="Lead")
    g1 = started.copies.started[0]["execution_name"]
    starter.statuses[g1] = "FAILED"

    healed, _ = tick(at(20 + PLAN_CHECK_SECONDS), state, org, ScriptedSalesforce(), SFSYNC_OBJECTS="Lead")
    assert "before planning" in healed.copies.reconciled["Lead"]
    doc = copy_store.get("Lead")
    assert doc is not None and doc.status == "failed" and doc.parts == [] and doc.requested_by == "ops (re-sync g1)"

    retried, _ = tick(
        at(30 + PLAN_CHECK_SECONDS + FAILED_COPY_RETRY_SECONDS), state, org, ScriptedSalesforce(), SFSYNC_OBJECTS="Lead"
    )
    assert [entry["reason"] for entry in retried.copies.started] == ["retry"]


# -- freshness (issue #11, finding 7) ------------------------------------------------------------------


def test_given_a_quiet_org_then_freshness_is_emitted_for_every_copied_object_every_tick_and_stays_low(
    state: StateStore, org: OrgStateStore, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.metrics import values_of

    finished_cycles(state, ended=at(0))  # watermark at(-60)
    ages = []
    for minute in range(1, 60):
        result, invoker = tick(at(300 + 60 * minute), state, org, ScriptedSalesforce())
        assert invoker.started == []
        ages.append(result.freshness["Lead"])
    out = capsys.readouterr().out
    assert len(values_of(out, "FreshnessSeconds", object="Account")) == 59
    # a quiet hour: the probe finds nothing each due tick, and the copy stays known-complete (~ lag old)
    assert max(ages) < 300, ages


def test_given_an_object_whose_cycles_keep_failing_then_its_freshness_grows_while_the_others_stay_fresh(
    state: StateStore, org: OrgStateStore
) -> None:
    finished_cycles(state, ended=at(0))
    sf = ScriptedSalesforce()
    sf.changed = {"Lead"}  # Lead always has work; its cycles never complete (no watermark moves)
    for minute in range(1, 60):
        result, _ = tick(at(300 + 60 * minute), state, org, sf)
        state.acquire_lease("Lead", f"Lead-x{minute}", now=at(300 + 60 * minute), ttl_seconds=30)
        state.release_lease(
            "Lead",
            f"Lead-x{minute}",
            cycle_id=f"Lead-x{minute}",
            ended_at=at(301 + 60 * minute),
            status="failed",
            resume_pending=False,
        )
    assert result.freshness["Lead"] > 3600
    assert result.freshness["Account"] < 300
