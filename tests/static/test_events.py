"""Every sample event in events/ is well-formed, realistic, and accepted by its function on the local stack.

For most samples there is no Salesforce (the stack's secret is a placeholder), so a function may fail
further on; what must never happen is that a sample event is rejected as malformed or that a handler
cannot load.  The full-sync samples also run, in workflow order, on a stack whose secret points at a
seeded emulator: each does its step, or (before ``plan``) fails with a typed error naming what it lacks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from sfsync_local.lambda_runtime import LocalInvokeError
from sfsync_local.samples import SampleEvent, list_samples, load_sample
from sfsync_local.stack import LocalStack

from tests.support.emulator import reset_engine_caches, salesforce_secret

pytestmark = pytest.mark.static

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
EVENT_FILES = sorted(EVENTS.rglob("*.json"))
SAMPLES = list_samples()
REJECTED = {"InvalidEvent", "Runtime.ImportModuleError"}
#: The full-sync samples in the order a workflow runs them; what each must do on a fresh stack whose
#: secret points at a seeded emulator.  The step samples (start_job ... finish) need a planned copy:
#: before ``plan`` they fail with a typed InvalidExecutionInput that says so.
FULL_SYNC_ORDER = (
    "plan",
    "start_job",
    "poll_job",
    "load_page",
    "finish",
    "mark_failed",
    "summarize",
    "continue_as_new",
)
REQUIRED = {
    "dispatcher/schedule.json",
    "object_sync/account.json",
    *(f"full_sync/{step}.json" for step in FULL_SYNC_ORDER),
    "writeback/lead_stream_modify.json",
    "writeback/lead_stream_insert.json",
    "writeback/campaign_member_stream_insert.json",
    "writeback/sweep.json",
    "writeback/retry.json",
    "statemachine/full_sync_input.json",
    "change_events/lead_update.json",
    "change_events/account_batch.json",
}
#: The stack the samples run on has change events on (EventRelayBusName), so ChangeEventFunction exists.
EVENT_RELAY_BUS = "aws.partner/salesforce.com/00D5g0000000001EAA/0YL5g0000000001GAA"


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _rel(path: Path) -> str:
    return path.relative_to(EVENTS).as_posix()


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack.deploy(stack_name="sfsync-events", parameters={"EventRelayBusName": EVENT_RELAY_BUS}) as deployed:
        yield deployed


def test_given_the_events_folder_then_every_function_and_trigger_has_its_sample() -> None:
    assert {_rel(p) for p in EVENT_FILES} >= REQUIRED
    assert sorted(sample.path for sample in SAMPLES) == EVENT_FILES  # no stray file outside events/<group>/
    targets = {sample.group: sample.target for sample in SAMPLES}
    assert targets == {
        "dispatcher": "DispatcherFunction",
        "object_sync": "ObjectSyncFunction",
        "full_sync": "FullSyncFunction",
        "writeback": "WriteBackFunction",
        "statemachine": "FullSyncStateMachine",
        "change_events": "ChangeEventFunction",
    }


def test_given_a_sample_name_when_loaded_then_it_is_the_file_and_an_unknown_name_lists_the_known_ones() -> None:
    assert load_sample("object_sync/account") == _load(EVENTS / "object_sync/account.json")
    with pytest.raises(FileNotFoundError, match="writeback/lead_stream_insert"):
        load_sample("writeback/no_such_event")


def test_given_an_event_folder_without_a_function_then_listing_the_samples_fails(tmp_path: Path) -> None:
    (tmp_path / "nofunction").mkdir()
    (tmp_path / "nofunction" / "x.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match="no function has CodeUri functions/nofunction/"):
        list_samples(tmp_path)


@pytest.mark.parametrize("path", EVENT_FILES, ids=_rel)
def test_given_a_sample_event_then_it_is_a_json_object_of_the_local_account_and_region(path: Path) -> None:
    event = _load(path)
    assert isinstance(event, dict) and event
    text = json.dumps(event)
    for arn in (word.strip('"') for word in text.split() if word.startswith('"arn:')):
        assert arn.split(":")[3] in {"us-east-1"}, arn
        assert arn.split(":")[4] == "123456789012", arn


def test_given_the_write_back_samples_then_sweep_is_the_schedule_input_and_retry_a_valid_request() -> None:
    from sfsync.core.events import RetryEvent, SweepEvent, parse_writeback_event

    assert isinstance(parse_writeback_event(_load(EVENTS / "writeback/sweep.json")), SweepEvent)
    assert isinstance(parse_writeback_event(_load(EVENTS / "writeback/retry.json")), RetryEvent)


def test_given_the_schedule_sample_then_it_is_an_eventbridge_scheduled_event() -> None:
    event = _load(EVENTS / "dispatcher/schedule.json")
    assert event["source"] == "aws.events"
    assert event["detail-type"] == "Scheduled Event"
    assert event["detail"] == {}
    assert set(event) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}


@pytest.mark.parametrize(
    "path", [p for p in sorted((EVENTS / "writeback").glob("*.json")) if "Records" in _load(p)], ids=_rel
)
def test_given_a_stream_sample_then_it_has_the_dynamodb_stream_record_shape(path: Path) -> None:
    for record in _load(path)["Records"]:
        assert record["eventSource"] == "aws:dynamodb"
        assert record["eventName"] in {"INSERT", "MODIFY", "REMOVE"}
        body = record["dynamodb"]
        assert body["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        assert set(body["Keys"]) == {"Id"}
        assert ("OldImage" in body) == (record["eventName"] != "INSERT")
        assert ("NewImage" in body) == (record["eventName"] != "REMOVE")
        image = body.get("NewImage") or body["OldImage"]
        assert image["SystemModstamp"]["S"].endswith(".000Z")
        table = record["eventSourceARN"].split(":table/")[1].split("/")[0]
        assert table == f"sfsync-local-{image['sobject']['S']}Table"


@pytest.mark.parametrize("path", sorted((EVENTS / "change_events").glob("*.json")), ids=_rel)
def test_given_a_change_event_sample_then_it_is_an_sqs_batch_of_event_relay_envelopes(path: Path) -> None:
    from sfsync.changes.envelope import parse_envelope
    from sfsync.core.events import SqsBatchEvent

    batch = SqsBatchEvent.model_validate(_load(path))
    for record in batch.Records:
        envelope = json.loads(record.body)
        assert envelope["source"] == EVENT_RELAY_BUS
        event = parse_envelope(envelope)
        assert envelope["detail-type"] == f"{event.entity}ChangeEvent"
        assert event.change_type == "GAP_OVERFLOW" or event.record_ids


@pytest.mark.parametrize("path", sorted((EVENTS / "full_sync").glob("*.json")), ids=_rel)
def test_given_a_full_sync_sample_then_its_file_name_is_its_step(path: Path) -> None:
    assert _load(path)["step"] == path.stem


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s.group != "statemachine"], ids=lambda s: s.name)
def test_given_a_sample_event_when_its_function_runs_on_the_local_stack_then_it_is_not_rejected(
    stack: LocalStack, sample: SampleEvent
) -> None:
    try:
        result = stack.invoke(sample.target, sample.load())
    except LocalInvokeError as exc:
        payload = exc.payload if isinstance(exc.payload, dict) else {"errorType": repr(exc.payload)}
        assert payload.get("errorType") not in REJECTED, str(exc)
    else:
        assert result is None or isinstance(result, dict)
    assert stack.invocations[-1].function_name == stack.function_name(sample.target)


def test_given_the_state_machine_sample_input_when_executed_then_plan_receives_it_and_accepts_it(
    stack: LocalStack,
) -> None:
    execution_input = load_sample("statemachine/full_sync_input")
    before = len(stack.invocations)
    description = stack.run_state_machine(execution_input, timeout_seconds=60)
    assert description["status"] in {"SUCCEEDED", "FAILED"}, description  # no Salesforce here: plan may fail on it
    calls = [c for c in stack.invocations[before:] if c.function_name == stack.function_name("FullSyncFunction")]
    plan = calls[0]
    assert plan.event["step"] == "plan"
    assert plan.event["objects"] == execution_input["objects"]
    assert plan.event["requested_by"] == execution_input["requested_by"]
    assert plan.event["execution_id"] == description["executionArn"]
    if plan.is_error:
        assert plan.result["errorType"] not in REJECTED | {"InvalidExecutionInput"}, plan.result


@pytest.mark.parametrize("path", sorted((EVENTS / "full_sync").glob("*.json")), ids=_rel)
def test_given_a_full_sync_sample_then_the_engines_input_model_for_its_step_accepts_it(path: Path) -> None:
    from sfsync.fullcopy import planning
    from sfsync.fullcopy import steps as fullsync

    models: dict[str, type[BaseModel]] = {
        "plan": planning._PlanInput,
        "mark_failed": fullsync._FailedInput,
        "summarize": planning._SummaryInput,
        "continue_as_new": planning._ContinueInput,
    }
    event = _load(path)
    models.get(event["step"], fullsync._StepInput).model_validate(event)


NEEDS_A_PLANNED_COPY = ("start_job", "poll_job", "load_page", "finish")
ROUTES = {"wait", "load", "start", "finish", "continue", "done", "failed"}


@pytest.fixture
def emulator_stack() -> Iterator[tuple[Any, LocalStack]]:
    from sfsync_emulator.emulator import Emulator

    emulator = Emulator.start(seed=5, records=100)  # its clock runs with real time, like the engine's
    secret = salesforce_secret(emulator)
    reset_engine_caches()
    try:
        # the default stack name: the continue_as_new sample names the state machine sfsync-local-full-sync
        with LocalStack.deploy(salesforce_secret=secret) as deployed:
            yield emulator, deployed
    finally:
        reset_engine_caches()
        emulator.stop()


def _invoke_error(stack: LocalStack, event: Any) -> dict[str, Any]:
    with pytest.raises(LocalInvokeError) as failure:
        stack.invoke("FullSyncFunction", event)
    payload = failure.value.payload
    assert isinstance(payload, dict), payload
    return payload


def test_given_an_emulator_org_when_every_full_sync_sample_runs_in_workflow_order_then_each_does_its_step(
    emulator_stack: tuple[Any, LocalStack],
) -> None:
    emulator, stack = emulator_stack
    samples = {step: load_sample(f"full_sync/{step}") for step in FULL_SYNC_ORDER}
    assert set(samples) == {p.stem for p in (EVENTS / "full_sync").glob("*.json")}

    for step in NEEDS_A_PLANNED_COPY:  # no prior state: a typed error that names what is missing
        error = _invoke_error(stack, samples[step])
        assert error["errorType"] == "InvalidExecutionInput", error
        assert "no planned full copy" in error["errorMessage"] and "plan" in error["errorMessage"]
    assert emulator.api_calls() == 0

    planned = stack.invoke("FullSyncFunction", samples["plan"])
    assert [o["object"] for o in planned["objects"]] == samples["plan"]["objects"]
    assert planned["failed"] == [] and planned["requested_by"] == samples["plan"]["requested_by"]

    for step in NEEDS_A_PLANNED_COPY:
        out = stack.invoke("FullSyncFunction", samples[step])
        assert out["object"] == "Account" and out["next"] in ROUTES, out
        assert out["status"] in {"running", "done"}
    copied = stack.invoke("FullSyncFunction", samples["load_page"])["records_copied"]
    assert copied > 0

    failed = stack.invoke("FullSyncFunction", samples["mark_failed"])
    assert failed["status"] == "failed" and failed["error"]["Error"] == "SalesforceUnavailable"

    summary = stack.invoke("FullSyncFunction", samples["summarize"])
    assert summary["continue"] is True and summary["objects"] == ["Contact"]
    assert summary["name"] == f"{samples['summarize']['base_name']}-1"

    continued = stack.invoke("FullSyncFunction", samples["continue_as_new"])
    assert continued["started"] is True and continued["name"] == samples["continue_as_new"]["name"]
    again = stack.invoke("FullSyncFunction", samples["continue_as_new"])  # a retried Task: no second execution
    assert again["execution_arn"] == continued["execution_arn"]
    executions = stack.boto3_client("stepfunctions").list_executions(stateMachineArn=stack.state_machine_arn())
    assert [e["name"] for e in executions["executions"]].count(continued["name"]) == 1
    execution = stack.wait_for_execution(continued["execution_arn"], timeout_seconds=60)
    assert execution["status"] == "SUCCEEDED", execution
    result = json.loads(execution["output"])["summary"]["summary"]["Contact"]
    assert result["status"] == "done"  # the continuation resumed Contact's planned copy and finished it
    assert (
        result["records_copied"]
        == result["total"]
        == emulator.salesforce().query("SELECT COUNT() FROM Contact")["totalSize"]
    )
