"""API economy of the dispatcher on the real path: schedule -> DispatcherFunction (change probe over
``/composite``, API budget, org back-off) -> ObjectSyncFunction -> record tables, against the
emulator over HTTPS and the local stack from template.yaml.

Time is the emulator's virtual clock (the engine clock follows it, see conftest): a tick is
``emulator.clock.advance(...)`` then ``stack.fire_schedule()``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

from tests.functional.conftest import DeployStack
from tests.support.fullcopy import first_copy

pytestmark = pytest.mark.functional

LAG_SECONDS = 60  # the engine's default safety lag
OVERLAP_SECONDS = 120
ALL_OBJECTS = "Lead,Contact,Account,User,Opportunity,OpportunityContactRole,Campaign,CampaignMember,Task,Event"
CUSTOM_OBJECTS = "Project__c"

Deploy = Callable[..., Any]


@pytest.fixture
def emulator_records() -> int:
    """A smaller seeded org than conftest's (these tests are about calls, not volume)."""
    return 120


@pytest.fixture
def deploy(deploy_stack: DeployStack, monkeypatch: pytest.MonkeyPatch) -> Deploy:
    """Deploy the local stack with template parameters and engine tunables (env) of the test."""

    def make(objects: str, *, pause: int = 300, custom: str = "", **env: str) -> Any:
        monkeypatch.setenv("SFSYNC_OVERLAP_SECONDS", str(OVERLAP_SECONDS))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        parameters = {"SyncObjects": objects, "PauseSeconds": str(pause)}
        if custom:
            parameters["CustomObjects"] = custom
        return deploy_stack(parameters)

    return make


def sync_runs(stack: Any) -> list[Any]:
    name = stack.function_name("ObjectSyncFunction")
    return [inv for inv in stack.invocations if inv.function_name == name]


def tick(stack: Any, emulator: Any, seconds: float) -> tuple[dict[str, Any], list[Any], int]:
    """Advance the clocks, fire the schedule: (dispatcher result, object-sync runs, API calls)."""
    emulator.clock.advance(seconds)
    runs_before = len(sync_runs(stack))
    calls_before = emulator.api_calls()
    result = stack.fire_schedule()
    runs = sync_runs(stack)[runs_before:]
    assert not any(run.is_error for run in runs), [run.result for run in runs]
    return result, runs, emulator.api_calls() - calls_before


def copied(stack: Any, emulator: Any, seconds: float = 0) -> tuple[dict[str, Any], list[Any], int]:
    """The first full copy (the real workflow), then a tick after ``seconds``: the first incremental cycles."""
    first_copy(stack)
    return tick(stack, emulator, seconds)


def started(result: dict[str, Any]) -> dict[str, str]:
    return {item["object"]: item["reason"] for item in result["started"]}


def items_of(stack: Any, logical_table: str) -> dict[str, dict[str, Any]]:
    client = stack.boto3_client("dynamodb")
    de = TypeDeserializer()
    out: dict[str, dict[str, Any]] = {}
    for page in client.get_paginator("scan").paginate(TableName=stack.table_name(logical_table)):
        for raw in page["Items"]:
            item = {k: de.deserialize(v) for k, v in raw.items()}
            out[str(item["Id"])] = item
    return out


def salesforce_stamps(emulator: Any, obj: str) -> dict[str, tuple[str, bool]]:
    sf = emulator.salesforce()
    rows = sf.query_all(f"SELECT Id, SystemModstamp, IsDeleted FROM {obj}", include_deleted=True)["records"]
    return {row["Id"]: (row["SystemModstamp"][:23] + "Z", bool(row["IsDeleted"])) for row in rows}


def assert_table_equals_salesforce(stack: Any, emulator: Any, obj: str, table: str) -> None:
    stored = {i: (item["SystemModstamp"], bool(item["IsDeleted"])) for i, item in items_of(stack, table).items()}
    assert stored == salesforce_stamps(emulator, obj)


def settle(stack: Any, emulator: Any, step: float) -> None:
    """Tick until a tick starts nothing.

    A fresh org reports a delete log (``earliestDateAvailable``) that starts after the first windows,
    and the first copy's rows sit in the overlap: the probe says "work" (the safe answer) until the
    windows have moved past both.
    """
    for _ in range(4):
        result, _, _ = tick(stack, emulator, step)
        if not result["started"]:
            return
    raise AssertionError(f"the objects never became idle: {result}")


def emf_values(text: str, metric: str) -> list[float]:
    """Values of ``metric`` in the EMF blobs printed on stdout."""
    values: list[float] = []
    for line in text.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        blob = json.loads(line)
        if metric in blob:
            value = blob[metric]
            values.extend(float(v) for v in (value if isinstance(value, list) else [value]))
    return values


def first_ids(emulator: Any, obj: str, n: int) -> list[str]:
    rows = emulator.salesforce().query(f"SELECT Id FROM {obj} ORDER BY Id LIMIT {n}")["records"]
    return [str(row["Id"]) for row in rows]


# ------------------------------------------------------------------------------------------------


def test_given_idle_objects_when_the_schedule_fires_then_one_call_per_ten_objects_and_one_change_one_fan_out(
    deploy: Deploy, emulator: Any
) -> None:
    stack = deploy(ALL_OBJECTS, custom=CUSTOM_OBJECTS)
    objects = [*ALL_OBJECTS.split(","), CUSTOM_OBJECTS]
    first, _, _ = copied(stack, emulator, LAG_SECONDS + 1)
    assert started(first) == dict.fromkeys(objects, "first")
    step = 300 + OVERLAP_SECONDS + LAG_SECONDS
    settle(stack, emulator, step)

    idle, runs, calls = tick(stack, emulator, step)

    assert len(objects) >= 10
    assert idle["started"] == [] and runs == []
    assert set(idle["skipped"]) == set(objects)
    assert all(reason.startswith("probe: no change since") for reason in idle["skipped"].values()), idle
    assert calls <= len(objects) // 10, f"{calls} API calls for an idle tick over {len(objects)} objects"
    assert idle["probe"]["api_calls"] == calls

    contact = first_ids(emulator, "Contact", 1)[0]
    emulator.org.update("Contact", contact, {"Title": "Probed"}, as_api=False)
    changed, runs, _ = tick(stack, emulator, step)

    assert started(changed) == {"Contact": "due"}
    assert [run.event["object"] for run in runs] == ["Contact"]
    assert items_of(stack, "ContactTable")[contact]["Title"] == "Probed"


def test_given_usage_above_the_budget_when_the_schedule_fires_then_no_work_until_usage_falls(
    deploy: Deploy, emulator: Any, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="sfsync")
    stack = deploy("Account,Contact")
    copied(stack, emulator)
    account = first_ids(emulator, "Account", 1)[0]
    emulator.org.update("Account", account, {"Name": "Over Budget Ltd"}, as_api=False)
    used = emulator.app.counter.used()
    emulator.org.config.daily_api_limit = math.ceil(used / 0.85)  # the org now stands at ~85 % of its day
    capsys.readouterr()
    caplog.clear()

    held, runs, _ = tick(stack, emulator, 300 + LAG_SECONDS + 1)

    assert held["started"] == [] and runs == []
    assert held["skipped"]["Account"].startswith("api budget: API usage 8")
    assert held["api_budget"]["allow_new_work"] is False
    assert any("API budget reached" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert emf_values(capsys.readouterr().out, "ApiBudgetPaused") == [1.0]
    assert items_of(stack, "AccountTable")[account]["Name"] != "Over Budget Ltd"

    still, runs, calls = tick(stack, emulator, 60)  # paused: no Salesforce call before the re-check is due
    assert still["started"] == [] and runs == [] and calls == 0
    assert "usage re-read after" in still["skipped"]["Account"]

    caplog.clear()
    resumed, runs, _ = tick(stack, emulator, 24 * 3600 + 1)  # the rolling 24 h window empties

    assert "Account" in started(resumed)
    assert resumed["api_budget"]["allow_new_work"] is True
    assert any("cycles start again" in r.getMessage() for r in caplog.records)
    assert 0.0 in emf_values(capsys.readouterr().out, "ApiBudgetPaused")
    assert items_of(stack, "AccountTable")[account]["Name"] == "Over Budget Ltd"
    emulator.org.config.daily_api_limit = 100_000  # room for the test's own comparison queries
    assert_table_equals_salesforce(stack, emulator, "Account", "AccountTable")


def test_given_request_limit_exceeded_in_a_cycle_then_the_whole_org_backs_off_and_nothing_is_lost(
    deploy: Deploy, emulator: Any
) -> None:
    stack = deploy("Account,Contact", SFSYNC_ORG_BACKOFF_SECONDS="900")
    copied(stack, emulator)
    account, contact = first_ids(emulator, "Account", 1)[0], first_ids(emulator, "Contact", 1)[0]
    emulator.org.update("Account", account, {"Name": "Limited Inc"}, as_api=False)
    emulator.org.update("Contact", contact, {"Title": "Limited"}, as_api=False)
    emulator.add_fault("request_limit", family="query", count=1)

    hit, runs, _ = tick(stack, emulator, 300 + LAG_SECONDS + 1)

    assert set(started(hit)) == {"Account", "Contact"}
    statuses = {run.event["object"]: run.result["status"] for run in runs}
    assert statuses == {"Account": "backoff", "Contact": "backoff"}  # the second one never touched Salesforce
    assert any("REQUEST_LIMIT_EXCEEDED" in (run.result["error"] or "") for run in runs)

    for _ in range(2):  # past the pause, inside the back-off: nothing starts, Salesforce is left alone
        held, runs, calls = tick(stack, emulator, 301)
        assert held["started"] == [] and runs == [] and calls == 0
        assert all("org backed off until" in held["skipped"][name] for name in ("Account", "Contact"))

    after, runs, _ = tick(stack, emulator, 301)  # 903 s after the limit was hit

    assert set(started(after)) == {"Account", "Contact"}
    assert {run.result["status"] for run in runs} == {"complete"}
    assert items_of(stack, "AccountTable")[account]["Name"] == "Limited Inc"
    assert items_of(stack, "ContactTable")[contact]["Title"] == "Limited"
    assert_table_equals_salesforce(stack, emulator, "Account", "AccountTable")
    assert_table_equals_salesforce(stack, emulator, "Contact", "ContactTable")


def test_given_a_long_backlog_on_one_object_then_another_objects_cycles_still_run_on_time(
    deploy: Deploy, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sfsync_local.lambda_runtime import LambdaContext

    stack = deploy("Account,Contact", pause=60, SFSYNC_PAGE_SIZE="200")
    copied(stack, emulator)
    accounts = [emulator.org.create("Account", {"Name": f"Backlog {i:04d}"}, as_api=False) for i in range(450)]
    contact = first_ids(emulator, "Contact", 1)[0]
    time_limited = [True]

    # while time_limited, every object-sync invocation reaches its time limit after its first page
    def near_the_time_limit(self: Any) -> int:
        self.time_checks = getattr(self, "time_checks", 0) + 1
        return 900_000 if self.time_checks == 1 or not time_limited[0] else 1_000

    monkeypatch.setattr(LambdaContext, "get_remaining_time_in_millis", near_the_time_limit)

    account_runs: list[str] = []
    for round_ in range(1, 3):
        emulator.org.update("Contact", contact, {"Title": f"Round {round_}"}, as_api=False)
        result, runs, _ = tick(stack, emulator, 61)
        statuses = {run.event["object"]: run.result["status"] for run in runs}
        account_runs.append(statuses["Account"])
        assert started(result)["Account"] == ("due" if round_ == 1 else "resume")
        assert started(result)["Contact"] == "due"  # on time, every pause, whatever Account's backlog
        assert statuses["Contact"] == "complete"
        assert items_of(stack, "ContactTable")[contact]["Title"] == f"Round {round_}"

    assert account_runs == ["partial"] * 2  # 200 rows per invocation: the backlog is still there
    time_limited[0] = False
    tick(stack, emulator, 61)
    stored = items_of(stack, "AccountTable")
    assert set(accounts) <= set(stored)
    assert_table_equals_salesforce(stack, emulator, "Account", "AccountTable")


def test_given_a_cycle_then_a_log_line_emf_metrics_per_object_and_a_summary_row_kept_30_days(
    deploy: Deploy, emulator: Any, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="sfsync")
    stack = deploy("Account")
    first_copy(stack)
    emulator.org.create("Account", {"Name": "Read By The First Cycle"}, as_api=False)
    capsys.readouterr()
    _, runs, _ = tick(stack, emulator, LAG_SECONDS + 1)

    [run] = runs
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    [cycle_blob] = [b for b in blobs if b.get("object") == "Account" and "RecordsRead" in b]

    def value(name: str) -> float:
        raw = cycle_blob[name]
        return float(raw[0] if isinstance(raw, list) else raw)

    assert value("RecordsRead") == run.result["counts"]["RecordsRead"] > 0
    for name in ("RecordsCreated", "RecordsUpdated", "RecordsDeleted", "RecordsSkipped", "RecordsFailed", "ApiCalls"):
        assert value(name) == run.result["counts"][name]
    assert {"WatermarkLagSeconds", "Backlog", "CycleDurationMs"} <= set(cycle_blob)
    [line] = [r for r in caplog.records if r.getMessage() == "cycle finished"]
    assert line.__dict__["counts"] == run.result["counts"]

    rows = stack.boto3_client("dynamodb").query(
        TableName=stack.table_name("StateTable"),
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "CYCLES#Account"}},
    )["Items"]
    [row] = rows
    ended = emulator.clock.now().timestamp()
    assert int(row["expires_at"]["N"]) == int(ended) + 30 * 86400
    assert row["status"]["S"] == "complete"
