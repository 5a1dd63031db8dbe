"""Issue #11, "Unattended, every day": faults an operator meets, injected on the local stack (the real
template, handlers, state machine and emulator) - stopped executions, failed plans, a wrong secret,
duplicate deliveries and concurrent ticks run on real threads, unreadable objects - and what the
engine does about each without a person.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sfsync.dispatch.copies import COPY_HEARTBEAT_CHECK_SECONDS, FAILED_COPY_RETRY_SECONDS, PLAN_CHECK_SECONDS
from sfsync.fullcopy import steps as fullsync
from sfsync.store.copies import CopyStore
from sfsync_local.lambda_runtime import LocalInvokeError, load_handler_module

import tests.support.compare as compare
from tests.functional.conftest import DeployStack
from tests.support.emulator import reset_engine_caches
from tests.support.fullcopy import copy_executions, held_waits, wait_for_copies, wait_until_quiet
from tests.support.metrics import values_of

pytestmark = pytest.mark.functional

REPO = Path(__file__).resolve().parents[2]
PAUSE = 300


@pytest.fixture
def emulator_records() -> int:
    return 150


@pytest.fixture
def stack(deploy_stack: DeployStack) -> Any:
    return deploy_stack({"SyncObjects": "Account,Contact", "PauseSeconds": str(PAUSE)})


def items(stack: Any, obj: str) -> dict[str, dict[str, Any]]:
    return compare.table_items(stack.boto3_client("dynamodb"), stack.table_name(f"{obj}Table"), obj)


def assert_equal_to_salesforce(stack: Any, emulator: Any, obj: str) -> None:
    view = compare.salesforce_view(emulator, obj, ["Id", "SystemModstamp", "IsDeleted"])
    compare.assert_items_equal_view(items(stack, obj), view, obj)


def copies(stack: Any) -> CopyStore:
    env = stack.function_environment("DispatcherFunction")
    return CopyStore(stack.boto3_client("dynamodb"), env["SFSYNC_STATE_TABLE"])


def executions(stack: Any) -> list[dict[str, Any]]:
    sfn = stack.boto3_client("stepfunctions")
    found: list[dict[str, Any]] = sfn.list_executions(stateMachineArn=stack.state_machine_arn())["executions"]
    return found


def handler(name: str) -> Any:
    """A function's handler module, loaded as the Lambda runtime loads it (its plain ``handle`` is called)."""
    return load_handler_module(REPO / "functions" / name / "app.py", f"unattended_{name}_app")


def function_environment(stack: Any, logical_id: str) -> Any:
    """The process environment of ``logical_id`` (as Lambda gives it), for building its real dependencies."""
    runtime = stack.runtime
    return runtime.environment(runtime.spec(stack.function_name(logical_id)))


def at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls on their own threads, released together; their results (or exceptions) in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except Exception as exc:  # noqa: BLE001 - reported to the test as the result
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), "a concurrent call did not finish"
    return results


def copied(stack: Any, emulator: Any) -> None:
    """The first copy of every object, done through the dispatcher and the real workflow."""
    with held_waits(emulator):
        result = stack.fire_schedule()
        for description in wait_for_copies(stack, result):
            assert description["status"] == "SUCCEEDED", description
    stack.drain()


# -- exactly one runner (finding 4) ------------------------------------------------------------------------


def test_given_one_object_sync_event_delivered_twice_at_once_then_exactly_one_delivery_runs(
    stack: Any, emulator: Any
) -> None:
    copied(stack, emulator)
    emulator.clock.advance(PAUSE + 61)
    sf = emulator.salesforce()
    for row in sf.query("SELECT Id FROM Account ORDER BY Id LIMIT 5")["records"]:
        sf.Account.update(row["Id"], {"Description": "changed while a delivery was duplicated"})
    emulator.clock.advance(120)
    app = handler("object_sync")
    with function_environment(stack, "ObjectSyncFunction"):  # as Lambda's, for the whole run
        from sfsync.wiring import object_sync_deps

        deps = object_sync_deps()
        # the first delivery's query takes a while: the duplicate arrives while it runs
        emulator.add_fault("slow", family="query", count=1, delay_s=1.0)
        event = {"object": "Account", "cycle_id": "Account-20261124T121000Z-dup00001", "reason": "due"}

        results = at_once(lambda: app.handle(event, None, deps), lambda: app.handle(event, None, deps))

    assert not any(isinstance(r, Exception) for r in results), results
    assert sorted(r["status"] for r in results) == ["complete", "lease-held"], results
    assert_equal_to_salesforce(stack, emulator, "Account")


def test_given_two_dispatcher_ticks_at_once_then_each_object_is_started_once(stack: Any, emulator: Any) -> None:
    app = handler("dispatcher")
    with function_environment(stack, "DispatcherFunction"):  # as Lambda's, for the whole run
        from sfsync.wiring import dispatcher_deps

        deps = dispatcher_deps()

        def tick() -> Any:
            return app.handle(stack.scheduled_event(), None, deps)

        with held_waits(emulator) as waits:
            waits.hold()  # the copy parks in its Wait state while both ticks run
            first = at_once(tick, tick)
            assert not any(isinstance(r, Exception) for r in first), first
            assert len(executions(stack)) == 1, "two ticks started one full copy, once"
            started = [entry for result in first for entry in copy_executions(result)]
            waits.release()
            for description in wait_for_copies(stack, {"copies": {"started": started[:1]}}):
                assert description["status"] == "SUCCEEDED"
        stack.drain()

        emulator.clock.advance(PAUSE + 61)
        sf = emulator.salesforce()
        for obj in ("Account", "Contact"):
            row = sf.query(f"SELECT Id FROM {obj} ORDER BY Id LIMIT 1")["records"][0]
            getattr(sf, obj).update(row["Id"], {"Description": "two ticks"})
        emulator.clock.advance(120)
        second = at_once(tick, tick)
    assert not any(isinstance(r, Exception) for r in second), second
    starts = sorted(entry["object"] for result in second for entry in result["started"])
    assert starts == ["Account", "Contact"], second
    stack.drain()
    syncs = [inv for inv in stack.invocations if inv.function_name == stack.function_name("ObjectSyncFunction")]
    assert sorted(inv.event["object"] for inv in syncs) == ["Account", "Contact"]
    for obj in ("Account", "Contact"):
        assert_equal_to_salesforce(stack, emulator, obj)


# -- failures that raise (finding 6) -----------------------------------------------------------------------


def test_given_an_object_the_integration_user_cannot_read_then_its_cycle_is_a_lambda_error_and_counted(
    stack: Any, emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    copied(stack, emulator)
    emulator.org.hide_object("Contact")
    emulator.clock.advance(PAUSE + 61)
    capsys.readouterr()
    with pytest.raises(LocalInvokeError) as failed:
        stack.invoke("ObjectSyncFunction", {"object": "Contact", "cycle_id": "Contact-hidden-1", "reason": "manual"})
    payload = failed.value.args[1] if len(failed.value.args) > 1 else str(failed.value)
    assert "ObjectUnavailable" in json.dumps(payload) and "Contact" in json.dumps(payload)
    out = capsys.readouterr().out
    assert values_of(out, "CycleFailed", object="Contact") == [1]
    assert values_of(out, "ObjectUnavailable") == [1]


def test_given_several_configuration_and_secret_problems_then_one_configuration_error_names_them_all(
    stack: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = stack.runtime.spec(stack.function_name("DispatcherFunction")).environment
    options = {"Lead": {"conflict": "newest", "colour": "red"}, "Contact": {"allow_deletes": "yes"}}
    monkeypatch.setitem(env, "SFSYNC_WRITEBACK", json.dumps(options))
    monkeypatch.setitem(env, "SFSYNC_OBJECTS", "Account,Contact,Lead")
    stack.put_salesforce_secret({"auth_flow": "password", "token_url": "http://example.com/token"})
    capsys.readouterr()
    with pytest.raises(LocalInvokeError) as failed:
        stack.invoke("DispatcherFunction", stack.scheduled_event())
    text = json.dumps(failed.value.args[1] if len(failed.value.args) > 1 else str(failed.value))
    assert "ConfigurationError" in text
    for problem in ("newest", "colour", "allow_deletes", "plain HTTP", "'client_id'", "'password'"):
        assert problem in text, (problem, text)
    assert values_of(capsys.readouterr().out, "ConfigurationError") == [1]


# -- self-healing copies (findings 1 and 2) -----------------------------------------------------------------


def test_given_a_copy_execution_stopped_midway_then_a_later_tick_marks_it_failed_and_a_new_execution_finishes_it(
    deploy_stack: DeployStack, emulator: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = deploy_stack({"SyncObjects": "Contact", "PauseSeconds": str(PAUSE)})
    real_load = fullsync.STEPS["load_page"]
    stopped: list[str] = []

    def load_then_stop(event: Any, deps: Any) -> dict[str, Any]:
        out = real_load(event, deps)
        if not stopped:  # the operator stops the execution after its first page
            stack.boto3_client("stepfunctions").stop_execution(executionArn=event["execution_id"], cause="test stop")
            stopped.append(event["execution_id"])
        return out

    monkeypatch.setitem(fullsync.STEPS, "load_page", load_then_stop)
    with held_waits(emulator):
        request = {"objects": ["Contact"], "requested_by": "ops", "max_records": 10}
        description = stack.run_state_machine(request, timeout_seconds=90)
    assert description["status"] in {"ABORTED", "FAILED"}, description
    wait_until_quiet(stack)
    stuck = copies(stack).get("Contact")
    assert stuck is not None and stuck.status == "running" and stuck.records_copied == 10
    monkeypatch.setitem(fullsync.STEPS, "load_page", real_load)

    held = stack.fire_schedule()
    assert held["copies"]["held"]["Contact"].startswith("full copy running"), "a fresh heartbeat: not checked yet"
    emulator.clock.advance(COPY_HEARTBEAT_CHECK_SECONDS + 1)
    capsys.readouterr()
    healed = stack.fire_schedule()
    cause = healed["copies"]["reconciled"]["Contact"]
    assert "ended ABORTED" in cause or "ended FAILED" in cause, healed["copies"]
    assert values_of(capsys.readouterr().out, "CopyReconciled", object="Contact") == [1]
    failed = copies(stack).get("Contact")
    assert failed is not None and failed.status == "failed" and failed.records_copied == 10

    emulator.clock.advance(FAILED_COPY_RETRY_SECONDS + 1)
    with held_waits(emulator):
        retried = stack.fire_schedule()
        [again] = wait_for_copies(stack, retried)
    assert again["status"] == "SUCCEEDED", again
    assert [entry["reason"] for entry in retried["copies"]["started"]] == ["retry"]
    done = copies(stack).get("Contact")
    assert done is not None and done.status == "done" and done.failures == 0
    assert done.bulk_jobs == stuck.bulk_jobs, "resumed from the checkpoint: the same Bulk job, no new one"
    assert_equal_to_salesforce(stack, emulator, "Contact")
    stack.drain()
    emulator.clock.advance(PAUSE + 61)
    stack.fire_schedule()  # incremental cycles run again
    cycles = [inv for inv in stack.invocations if inv.function_name == stack.function_name("ObjectSyncFunction")]
    assert "Contact" in {inv.event["object"] for inv in cycles}


def test_given_a_wrong_secret_at_first_deploy_when_it_is_fixed_then_the_copies_run_within_minutes(
    stack: Any, emulator: Any, salesforce_secret: dict[str, Any]
) -> None:
    stack.put_salesforce_secret({**salesforce_secret, "client_secret": "wrong"})
    with held_waits(emulator):
        first = stack.fire_schedule()  # never-copied objects: the copy starts without a Salesforce call
        [description] = wait_for_copies(stack, first)
    assert description["status"] == "FAILED", description  # Plan failed (invalid client), recorded by PlanFailed
    for obj in ("Account", "Contact"):
        doc = copies(stack).get(obj)
        assert doc is not None and doc.status == "failed" and doc.failures == 1, obj
        assert doc.error is not None and doc.error["Error"] == "SalesforceAuthError", doc.error
    status = io.StringIO()
    from sfsync_local.cli import main

    env = stack.function_environment("DispatcherFunction")
    argv = ["status", "--table", env["SFSYNC_STATE_TABLE"], "--region", stack.region, "--object=Account"]
    assert main(argv, stdout=status) == 0
    assert "failed" in status.getvalue() and "SalesforceAuthError" in status.getvalue()

    stack.put_salesforce_secret(salesforce_secret)  # the operator fixes the secret
    reset_engine_caches()  # the cached secret expires (Parameters' max_age) while the retry waits
    emulator.clock.advance(max(FAILED_COPY_RETRY_SECONDS, PLAN_CHECK_SECONDS) + 1)
    with held_waits(emulator):
        retried = stack.fire_schedule()
        descriptions = wait_for_copies(stack, retried)
    assert descriptions and all(d["status"] == "SUCCEEDED" for d in descriptions), descriptions
    for obj in ("Account", "Contact"):
        assert_equal_to_salesforce(stack, emulator, obj)
