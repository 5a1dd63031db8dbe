"""The dispatcher starts the first full copy through the real workflow: schedule -> DispatcherFunction ->
StartExecution -> moto's Step Functions running statemachine/full_sync.asl.json -> FullSyncFunction ->
record tables, against the emulator over HTTPS and the local stack from template.yaml.

A copy can be parked in its Wait state (:func:`tests.support.fullcopy.held_waits`) while the test fires
more ticks, makes changes in the org, or re-syncs.
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from sfsync.store.stepfunctions import FullCopyStarter
from sfsync_local.cli import main
from sfsync_local.lambda_runtime import LocalInvokeError

import tests.support.compare as compare
from tests.functional.conftest import DeployStack
from tests.support.fullcopy import copy_executions, first_copy, held_waits, wait_for_copies

pytestmark = pytest.mark.functional

LAG_SECONDS = 60
PAUSE = 300


@pytest.fixture
def emulator_records() -> int:
    return 120


@pytest.fixture
def stack(deploy_stack: DeployStack) -> Any:
    return deploy_stack({"SyncObjects": "Account,Contact", "PauseSeconds": str(PAUSE)})


def table(stack: Any, obj: str) -> str:
    return str(stack.table_name(f"{obj}Table"))


def items(stack: Any, obj: str) -> dict[str, dict[str, Any]]:
    return compare.table_items(stack.boto3_client("dynamodb"), table(stack, obj), obj)


def assert_equal_to_salesforce(stack: Any, emulator: Any, obj: str) -> None:
    view = compare.salesforce_view(emulator, obj, ["Id", "SystemModstamp", "IsDeleted"])
    compare.assert_items_equal_view(items(stack, obj), view, obj)


def executions(stack: Any) -> list[dict[str, Any]]:
    sfn = stack.boto3_client("stepfunctions")
    found: list[dict[str, Any]] = sfn.list_executions(stateMachineArn=stack.state_machine_arn())["executions"]
    return found


def emf_values(text: str, metric: str) -> list[float]:
    values: list[float] = []
    for line in text.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            blob = json.loads(line)
            if metric in blob:
                raw = blob[metric]
                values.extend(float(v) for v in (raw if isinstance(raw, list) else [raw]))
    return values


def sync_runs(stack: Any) -> list[Any]:
    name = stack.function_name("ObjectSyncFunction")
    return [inv for inv in stack.invocations if inv.function_name == name]


def first_id(emulator: Any, obj: str) -> str:
    return str(emulator.salesforce().query(f"SELECT Id FROM {obj} ORDER BY Id LIMIT 1")["records"][0]["Id"])


# ------------------------------------------------------------------------------------------------


def test_given_never_copied_objects_when_the_schedule_fires_twice_then_one_execution_copies_them_and_the_second_tick_starts_nothing(  # noqa: E501
    stack: Any, emulator: Any, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="sfsync")
    with held_waits(emulator) as waits:
        waits.hold()
        capsys.readouterr()
        first = stack.fire_schedule()

        [started] = first["copies"]["started"]
        assert started["objects"] == ["Account", "Contact"] and started["reason"] == "first"
        assert first["started"] == [], "no incremental cycle from the epoch"
        assert emf_values(capsys.readouterr().out, "FullCopiesStarted") == [1.0]
        assert waits.entered.wait(20), "the copy reached its Wait state"

        second = stack.fire_schedule()

        assert second["started"] == [] and copy_executions(second) == []
        assert set(second["copies"]["held"]) == {"Account", "Contact"}
        assert all(why.startswith("full copy running") for why in second["copies"]["held"].values()), second
        assert emf_values(capsys.readouterr().out, "ObjectsHeldForCopy") == [2.0]
        dispatched = [r for r in caplog.records if r.getMessage() == "dispatch finished"]
        assert dispatched[-1].__dict__["copies"]["held"] == second["copies"]["held"]

        # the same start again (a dispatcher that lost its bookkeeping) is no second execution
        again = FullCopyStarter(stack.state_machine_arn(), stack.boto3_client("stepfunctions")).start_full_copy(
            started["execution_name"], {"objects": ["Account", "Contact"], "requested_by": "dispatcher"}
        )
        assert again.execution_arn == started["execution_arn"]
        assert [e["name"] for e in executions(stack)] == [started["execution_name"]]
        waits.release()
        [description] = wait_for_copies(stack, first)

    assert description["status"] == "SUCCEEDED", description
    assert_equal_to_salesforce(stack, emulator, "Account")
    assert_equal_to_salesforce(stack, emulator, "Contact")
    emulator.clock.advance(LAG_SECONDS + 1)
    third = stack.fire_schedule()
    assert {item["object"]: item["reason"] for item in third["started"]} == {"Account": "first", "Contact": "first"}
    empty: dict[str, Any] = {"started": [], "already_started": [], "held": {}, "reconciled": {}, "attention": {}}
    assert third["copies"] == empty


def test_given_one_object_re_syncing_when_ticks_run_then_the_others_keep_syncing_and_its_cycles_resume_with_changes_made_meanwhile(  # noqa: E501
    stack: Any, emulator: Any
) -> None:
    first_copy(stack)
    emulator.clock.advance(LAG_SECONDS + 1)
    stack.fire_schedule()  # the first incremental cycles
    lost = sorted(items(stack, "Account"))[0]
    stack.boto3_client("dynamodb").delete_item(TableName=table(stack, "Account"), Key={"Id": {"S": lost}})

    with held_waits(emulator) as waits:
        waits.hold()
        requested = stack.invoke("DispatcherFunction", {"resync": ["Account"], "requested_by": "ops"})
        assert requested["resync"] == {"requested": {"Account": 1}, "rejected": {}}
        [resync] = requested["copies"]["started"]
        assert resync["objects"] == ["Account"] and resync["execution_name"].endswith("-g1")
        assert waits.entered.wait(20), "the re-sync reached its Wait state (its Bulk job exists)"

        account, contact = first_id(emulator, "Account"), first_id(emulator, "Contact")
        emulator.org.update("Account", account, {"Name": "Changed During The Copy"}, as_api=False)
        emulator.org.update("Contact", contact, {"Title": "Synced While Account Copies"}, as_api=False)
        runs_before = len(sync_runs(stack))
        emulator.clock.advance(PAUSE + LAG_SECONDS + 1)
        during = stack.fire_schedule()

        assert {item["object"] for item in during["started"]} == {"Contact"}
        assert during["copies"]["held"]["Account"].startswith("full copy running"), during
        assert [run.event["object"] for run in sync_runs(stack)[runs_before:]] == ["Contact"]
        assert items(stack, "Contact")[contact]["Title"] == "Synced While Account Copies"
        waits.release()
        [description] = wait_for_copies(stack, requested)

    assert description["status"] == "SUCCEEDED", description
    assert lost in items(stack, "Account"), "the re-sync copied every Account again"
    assert items(stack, "Account")[account]["Name"] != "Changed During The Copy", "changed after its Bulk job"

    emulator.clock.advance(LAG_SECONDS + 1)
    after = stack.fire_schedule()

    assert "Account" in {item["object"] for item in after["started"]}
    assert items(stack, "Account")[account]["Name"] == "Changed During The Copy"
    assert_equal_to_salesforce(stack, emulator, "Account")
    assert_equal_to_salesforce(stack, emulator, "Contact")


def test_given_a_resync_naming_an_unknown_object_then_a_clear_error_naming_it_and_the_rest_goes_on(
    stack: Any, emulator: Any
) -> None:
    first_copy(stack)
    result = stack.invoke("DispatcherFunction", {"resync": ["Contact", "Nope__c"], "requested_by": "ops"})
    assert result["resync"]["requested"] == {"Contact": 1}
    assert result["resync"]["rejected"] == {
        "Nope__c": "'Nope__c' is not a configured object (configured: Account, Contact)"
    }
    [description] = wait_for_copies(stack, result)
    assert description["status"] == "SUCCEEDED"
    stack.drain()  # the same tick fanned out Account's first cycle: let it run (a copy never starts under it)

    out, err = io.StringIO(), io.StringIO()
    argv = ["resync", "Account", "Lead", "--function", stack.function_name("DispatcherFunction")]
    code = main([*argv, "--region", stack.region, "--requested-by", "cli-test"], stdout=out, stderr=err)

    assert code == 2, err.getvalue()
    assert "error: 'Lead' is not a configured object (configured: Account, Contact)" in err.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Account: re-sync g1 requested; full copy resync-") and lines[0].endswith(" started")
    assert lines[1] == "Lead: refused"
    [execution] = [
        e
        for e in executions(stack)
        if e["name"].startswith("resync-") and e["name"] != result["copies"]["started"][0]["execution_name"]
    ]
    assert stack.wait_for_execution(execution["executionArn"])["status"] == "SUCCEEDED"

    bad_events: list[dict[str, Any]] = [{"resync": "Account"}, {"resync": []}, {"resync": ["Account"], "extra": 1}]
    for bad in bad_events:
        with pytest.raises(LocalInvokeError) as failure:
            stack.invoke("DispatcherFunction", bad)
        assert failure.value.payload["errorType"] == "InvalidEvent", bad


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("resync", "Account"), "one of the arguments --stack-name --function is required"),
        (("resync", "--function", "x"), "the following arguments are required: OBJECT"),
    ],
)
def test_given_bad_resync_usage_then_a_clear_error_and_exit_2(argv: tuple[str, ...], message: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(list(argv), stdout=out, stderr=err) == 2
    assert out.getvalue() == ""
    assert message in err.getvalue()
