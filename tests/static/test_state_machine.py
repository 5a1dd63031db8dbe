"""Static checks of statemachine/full_sync.asl.json against the template and the engine's exceptions."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
import sfsync.core.exceptions
from pydantic import BaseModel
from sfsync_local.cfn import load_template

pytestmark = pytest.mark.static

ROOT = Path(__file__).resolve().parents[2]
STATELINT = Path(sys.executable).parent / "statelint"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
STEPS = {
    "plan",
    "plan_failed",
    "start_job",
    "poll_job",
    "load_page",
    "finish",
    "mark_failed",
    "summarize",
    "continue_as_new",
}


def _state_machines() -> dict[str, dict[str, Any]]:
    doc = load_template(ROOT / "template.yaml")
    return {k: v["Properties"] for k, v in doc["Resources"].items() if v["Type"] == "AWS::Serverless::StateMachine"}


@pytest.fixture(scope="module")
def asl() -> dict[str, Any]:
    definition: dict[str, Any] = json.loads((ROOT / "statemachine/full_sync.asl.json").read_text(encoding="utf-8"))
    return definition


def _all_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in states.items():
        yield name, state
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from _all_states(processor["States"])
        for branch in state.get("Branches", []):
            yield from _all_states(branch["States"])


def _statelint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(STATELINT), "--ignore=URI,FLOAT", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def test_given_the_template_then_the_full_sync_state_machine_is_standard_and_logged() -> None:
    machines = _state_machines()
    assert list(machines) == ["FullSyncStateMachine"]
    properties = machines["FullSyncStateMachine"]
    assert properties["Type"] == "STANDARD"
    assert properties["DefinitionUri"] == "statemachine/full_sync.asl.json"
    assert properties["Tracing"] == {"Enabled": True}
    assert properties["Logging"]["Destinations"]
    assert {"LambdaInvokePolicy": {"FunctionName": {"Ref": "FullSyncFunction"}}} in properties["Policies"]
    # continue_as_new (FullSyncFunction) starts the machine again: allowed by name, fixed for that reason
    assert properties["Name"] == {"Fn::Sub": "${AWS::StackName}-full-sync"}
    function_policies = load_template(ROOT / "template.yaml")["Resources"]["FullSyncFunction"]["Properties"]["Policies"]
    assert {"StepFunctionsExecutionPolicy": {"StateMachineName": properties["Name"]}} in function_policies


@pytest.mark.parametrize("logical_id", sorted(_state_machines()))
def test_given_a_state_machine_then_its_placeholders_match_its_definition_substitutions_exactly(
    logical_id: str,
) -> None:
    properties = _state_machines()[logical_id]
    path = ROOT / properties["DefinitionUri"]
    assert path.is_file(), f"{logical_id}: DefinitionUri {path} does not exist"
    placeholders = set(PLACEHOLDER.findall(path.read_text(encoding="utf-8")))
    assert placeholders == set(properties.get("DefinitionSubstitutions", {}))


@pytest.mark.parametrize("logical_id", sorted(_state_machines()))
def test_given_a_state_machine_definition_when_statelint_checks_it_then_it_is_valid(logical_id: str) -> None:
    result = _statelint(ROOT / _state_machines()[logical_id]["DefinitionUri"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_given_a_dangling_next_when_statelint_checks_it_then_it_fails(asl: dict[str, Any], tmp_path: Path) -> None:
    broken = json.loads(json.dumps(asl))
    broken["States"]["CopyObjects"]["ItemProcessor"]["States"]["WaitForJob"]["Next"] = "NoSuchState"
    path = tmp_path / "broken.asl.json"
    path.write_text(json.dumps(broken), encoding="utf-8")
    result = _statelint(path)
    assert result.returncode != 0
    assert "NoSuchState" in result.stdout + result.stderr


def _function_tasks(asl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: state
        for name, state in _all_states(asl["States"])
        if state["Type"] == "Task" and state["Resource"] == "${FullSyncFunctionArn}"
    }


def test_given_the_definition_then_arns_appear_only_as_placeholders(asl: dict[str, Any]) -> None:
    text = json.dumps(asl)
    assert "arn:aws" not in text
    assert "123456789012" not in text
    resources = {state["Resource"] for _, state in _all_states(asl["States"]) if state["Type"] == "Task"}
    assert resources == {"${FullSyncFunctionArn}"}
    continuation = next(t for t in _function_tasks(asl).values() if t["Parameters"]["step"] == "continue_as_new")
    assert continuation["Parameters"]["state_machine_arn.$"] == "$$.StateMachine.Id"  # itself, never a literal


def test_given_the_definition_then_it_plans_then_maps_over_the_planned_objects_with_bounded_concurrency(
    asl: dict[str, Any],
) -> None:
    states = asl["States"]
    plan = states[states[asl["StartAt"]]["Next"]]
    assert plan["Parameters"]["step"] == "plan"
    assert plan["Parameters"]["execution_name.$"] == "$$.Execution.Name"
    copy = states[plan["Next"]]
    assert copy["Type"] == "Map"
    assert copy["ItemsPath"] == "$.plan.objects"
    assert 1 <= copy["MaxConcurrency"] <= 10
    assert copy["ItemSelector"]["object.$"] == "$$.Map.Item.Value.object"


def test_given_the_tasks_then_every_engine_step_is_called_with_the_inputs_the_engine_accepts(
    asl: dict[str, Any],
) -> None:
    from sfsync.fullcopy import planning
    from sfsync.fullcopy import steps as fullsync

    tasks = _function_tasks(asl)
    assert {task["Parameters"]["step"] for task in tasks.values()} == STEPS == set(fullsync.STEPS)
    # the engine's input models forbid extra fields: the definition may pass only what they declare
    accepted: dict[str, type[BaseModel]] = {
        "plan": planning._PlanInput,
        "plan_failed": planning._PlanFailedInput,
        "mark_failed": fullsync._FailedInput,
        "summarize": planning._SummaryInput,
        "continue_as_new": planning._ContinueInput,
    }
    iteration = asl["States"]["CopyObjects"]["ItemProcessor"]["States"]
    for name, task in tasks.items():
        step = task["Parameters"]["step"]
        given = {key.removesuffix(".$") for key in task["Parameters"]}
        model = accepted.get(step, fullsync._StepInput)
        assert given <= set(model.model_fields), f"{name}: {sorted(given - set(model.model_fields))}"
        required = {field for field, info in model.model_fields.items() if info.is_required()}
        assert required <= given, f"{name} misses {sorted(required - given)}"
        if name in iteration:
            assert task["Parameters"]["object.$"] == "$.object", name
            assert task["ResultPath"] == "$.copy", name


def test_given_the_iterator_then_it_routes_on_the_engines_next_and_polls_through_a_wait(asl: dict[str, Any]) -> None:
    from sfsync.fullcopy import plan

    states = dict(_all_states(asl["States"]))
    route = states["Route"]
    assert {c["Variable"] for c in route["Choices"]} == {"$.copy.next"}
    assert {c["StringEquals"] for c in route["Choices"]} == set(get_args(plan.Next))
    targets = {c["StringEquals"]: states[c["Next"]] for c in route["Choices"]}
    assert targets["wait"]["Type"] == "Wait"
    assert targets["wait"]["SecondsPath"] == "$.copy.wait_seconds"
    assert states[targets["wait"]["Next"]]["Parameters"]["step"] == "poll_job"
    for route_name, step in {"start": "start_job", "load": "load_page", "finish": "finish"}.items():
        assert targets[route_name]["Parameters"]["step"] == step
        assert targets[route_name]["Next"] == "Route"
    for route_name in ("done", "failed", "continue"):
        assert targets[route_name]["Type"] == "Succeed", route_name
        assert targets[route_name]["OutputPath"] == "$.copy", route_name  # summarize reads the step outputs
    assert states[route["Default"]]["Next"] == "MarkFailed"


def test_given_every_task_then_engine_errors_are_retried_and_failures_are_caught_per_object(
    asl: dict[str, Any],
) -> None:
    iteration = asl["States"]["CopyObjects"]["ItemProcessor"]["States"]
    for name, state in _function_tasks(asl).items():
        retried = {error for retrier in state["Retry"] for error in retrier["ErrorEquals"]}
        assert {
            "SalesforceUnavailable",
            "SalesforceRateLimited",
            "States.Timeout",
            "Lambda.ServiceException",
        } <= retried
        assert state["TimeoutSeconds"] <= 900, name
        if name not in iteration:
            continue  # outside the Map: see the test below
        catches = state["Catch"]
        assert catches[-1]["ErrorEquals"] == ["States.ALL"], name
        target = catches[-1]["Next"]
        assert target == ("MarkFailedFailed" if state["Parameters"]["step"] == "mark_failed" else "MarkFailed")
    for name, state in iteration.items():
        if state["Type"] == "Fail":
            raise AssertionError(f"{name}: a Fail state inside the Map would stop every object")


def test_given_every_state_that_can_fail_outside_the_map_then_it_has_a_catch_ending_in_a_recorded_failure(
    asl: dict[str, Any],
) -> None:
    # Finding 1/2 of issue #11: Plan, Summarize and ContinueAsNew had no Catch, so a failure there left
    # copy documents "running" for good. Pass/Choice/Wait/Succeed/Fail states cannot fail on their own.
    states = asl["States"]
    for name, state in states.items():
        if state["Type"] not in {"Task", "Map", "Parallel"}:
            continue
        catches = state.get("Catch") or []
        assert catches and catches[-1]["ErrorEquals"] == ["States.ALL"], f"{name} has no catch-all"
    assert states["Plan"]["Catch"][-1]["Next"] == "PlanFailed"
    assert states["PlanFailed"]["Parameters"]["step"] == "plan_failed"
    for name in ("PlanFailed", "CopyObjects", "Summarize", "ContinueAsNew"):
        target = states[states[name]["Catch"][-1]["Next"]]
        assert target["Type"] == "Fail", name  # the execution ends FAILED: ExecutionsFailed is alarmed
    iteration = states["CopyObjects"]["ItemProcessor"]["States"]
    route = {c["StringEquals"]: c["Next"] for c in iteration["Route"]["Choices"]}
    assert iteration[route["superseded"]]["Type"] == "Succeed"


def test_given_the_error_names_the_definition_matches_then_each_is_an_engine_exception_class(
    asl: dict[str, Any],
) -> None:
    from sfsync.fullcopy import steps as fullsync

    engine = {
        name for name, obj in inspect.getmembers(sfsync.core.exceptions, inspect.isclass) if issubclass(obj, Exception)
    }
    engine |= {name for name, obj in inspect.getmembers(fullsync, inspect.isclass) if issubclass(obj, Exception)}
    named = {
        error
        for _, state in _all_states(asl["States"])
        for rule in state.get("Retry", []) + state.get("Catch", [])
        for error in rule["ErrorEquals"]
        if not error.startswith(("States.", "Lambda."))
    }
    assert named
    assert named <= engine, f"not engine exception classes: {sorted(named - engine)}"
