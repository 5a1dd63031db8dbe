"""The dispatcher's API economy: org back-off, API budget (pause, re-check, resume) and the change
probe, decided per tick over the real state table (moto DynamoDB via PynamoDB) and a scripted
Salesforce composite client."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from sfsync.clock import UTC
from sfsync.config import Settings, load_settings
from sfsync.dispatcher import BUDGET_RECHECK_SECONDS, ApiEconomy, DispatchResult, dispatch
from sfsync.exceptions import SalesforceRateLimited
from sfsync.org_state import BudgetRecord, OrgStateStore
from sfsync.state import StateStore

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
                body = {"deletedRecords": [], "earliestDateAvailable": "2026-11-01T00:00:00.000+0000"}
            out.append({"referenceId": sub["referenceId"], "httpStatusCode": 200, "body": body})
        return out


class RecordingInvoker:
    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []

    def start_object_sync(self, object_name: str, cycle_id: str, reason: str) -> None:
        self.started.append((object_name, reason))


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch) -> Iterator[StateStore]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        boto3.client("dynamodb", region_name="eu-west-1").create_table(
            TableName="state",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield StateStore("state", region="eu-west-1")


@pytest.fixture
def org(state: StateStore) -> OrgStateStore:
    return OrgStateStore("state", region="eu-west-1")


def settings(**extra: str) -> Settings:
    return load_settings({"SFSYNC_STATE_TABLE": "state", "SFSYNC_OBJECTS": ",".join(OBJECTS), **extra})


def finished_cycles(state: StateStore, *, ended: dt.datetime) -> None:
    """Every object has run once, ended at ``ended``, with a watermark a minute before."""
    for name in OBJECTS:
        state.acquire_lease(name, f"{name}-c0", now=ended, ttl_seconds=600)
        state.set_full_copy_watermark(name, ended - dt.timedelta(minutes=1), by="test")
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
