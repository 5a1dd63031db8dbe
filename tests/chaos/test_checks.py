"""The chaos checks can fail: one short schedule runs, then a defect of every kind the checks look for is
planted before they run, and each must be reported (a checker that always passes would pass the tier)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from sfsync_local.chaos import CI, FaultSpec, Schedule, run_schedule
from sfsync_local.chaos.workload import scan

pytestmark = pytest.mark.chaos

PROFILE = dataclasses.replace(CI, fault_minutes=30, resync_chance=0.0)


def plant_defects(run: Any) -> None:
    ledger, org, dynamodb = run.workload.ledger, run.emulator.org, run.dynamodb
    # an edit the application made that Salesforce never got
    lead = next(i["Id"] for i in scan(dynamodb, run.tables["Lead"]) if "_base" in i and not i.get("IsConverted"))
    ledger.edits[("Lead", lead)] = {"Title": "an edit the engine lost"}
    # a local create that made two records
    for _ in range(2):
        org.create("Contact", {"LastName": "Twice"}, as_api=False)
    ledger.creates["app-planted"] = ("Contact", "Twice")
    # a local change left pending
    contact = next(i["Id"] for i in scan(dynamodb, run.tables["Contact"]) if "_base" in i)
    from sfsync_local.lambda_runtime import suppress_stream_records

    with suppress_stream_records():
        dynamodb.update_item(
            TableName=run.tables["Contact"],
            Key={"Id": {"S": contact}},
            UpdateExpression="SET #p = :p",
            ExpressionAttributeNames={"#p": "_pending_since"},
            ExpressionAttributeValues={":p": {"S": "2026-11-24T12:00:00.000Z"}},
        )
    # an item lost from the copy
    account = next(i["Id"] for i in scan(dynamodb, run.tables["Account"]) if not i.get("IsDeleted"))
    dynamodb.delete_item(TableName=run.tables["Account"], Key={"Id": {"S": account}})
    # every signal the faults left
    run.interceptor.records.clear()
    run.sink.metrics.clear()
    run.executions.clear()
    run.concurrent.clear()
    run.planted = {"lead": lead, "contact": contact, "account": account}


def test_given_planted_defects_then_the_checks_report_each_and_the_schedule_fails() -> None:
    schedule = Schedule(
        seed=4242,
        profile=PROFILE,
        faults=(
            FaultSpec(1, "kill-copy-step", 0, params={"step": "load_page", "mode": "before"}),
            FaultSpec(2, "kill-cycle", 900, params={"mode": "after"}),
            # a step the small org never reaches (one execution copies it): armed, never fired
            FaultSpec(3, "kill-copy-step", 0, params={"step": "continue_as_new", "mode": "before"}),
        ),
        resyncs=(),
    )
    planted: dict[str, Any] = {}

    def before_checks(run: Any) -> None:
        plant_defects(run)
        planted.update(run.planted)

    report = run_schedule(schedule, before_checks=before_checks)

    assert not report.ok
    text = report.explain(schedule)
    assert "make chaos SEED=4242" in text
    assert any(planted["lead"] in line and "an edit the engine lost" in line for line in report.lost), report.lost
    assert any("app-planted" in line and "2 records" in line for line in report.duplicated), report.duplicated
    assert any("Contact" in line and planted["contact"] in line for line in report.stuck), report.stuck
    assert any("verify Account: 1 missing" in line for line in report.copy), report.copy
    assert any(planted["account"] in line for line in report.copy), report.copy
    assert {line.split()[0] for line in report.unseen} == {"#1", "#2"}, report.unseen
    assert [line.split()[0] for line in report.unfired] == ["#3"], report.unfired
