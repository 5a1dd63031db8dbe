"""The CLI's AWS mode (``--stack-name NAME --endpoint-url URL``) against an AWS endpoint in another process.

The stand-in (:mod:`sfsync_local.aws_standin`) is a moto server in a child process; template.yaml is
deployed into it as ``sam deploy`` does it (SAM translation, code zips in S3, CloudFormation
``CreateStack``), and the CLI knows nothing but the stack's name and the endpoint's URL.  The functions
run the real handlers in the stand-in's process against the Salesforce emulator (this process, HTTPS).
A second stand-in that cannot run Lambda code (moto's own Lambda without a container engine) answers
every invoke with text that is not JSON.
"""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from sfsync_emulator.emulator import Emulator
from sfsync_local import aws_standin
from sfsync_local.cli import main

from tests.support.emulator import salesforce_secret

pytestmark = pytest.mark.e2e

REGION = "us-east-1"
OBJECTS = ["Account", "Lead", "Contact"]
PARAMETERS = {
    "SyncObjects": ",".join(OBJECTS),
    "PauseSeconds": "0",
    "SafetyLagSeconds": "1",
    "FormulaRefreshSeconds": "3600",
}
#: Fields whose value depends on the moment status is asked (lag and freshness grow with the clock).
MOMENT_FIELDS = {"lag_seconds", "freshness_seconds"}


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's boto3 chain: dummy credentials, nothing of the machine's AWS configuration."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "operator")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "operator")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emu = Emulator.start(seed=11, records=150, port=0, tls=True)
    try:
        yield emu
    finally:
        emu.stop()


def _client(service: str, url: str) -> Any:
    session = boto3.session.Session(aws_access_key_id="app", aws_secret_access_key="app", region_name=REGION)
    return session.client(service, endpoint_url=url)  # type: ignore[call-overload]


def _wait(condition: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _open_lead(url: str, table: str) -> str:
    items = _client("dynamodb", url).scan(TableName=table)["Items"]
    live = [i for i in items if not i.get("IsDeleted", {}).get("BOOL") and not i.get("IsConverted", {}).get("BOOL")]
    return str(sorted(i["Id"]["S"] for i in live)[0])


def test_given_a_stack_deployed_by_cloudformation_in_another_process_then_every_stack_name_command_works(
    emulator: Emulator, aws_credentials: None, tmp_path: Path
) -> None:
    with aws_standin.running(log_path=tmp_path / "standin.log") as standin:
        url = standin["endpoint_url"]
        stack = aws_standin.deploy(
            url, stack_name="sfsync-prod", salesforce_secret=salesforce_secret(emulator), parameters=PARAMETERS
        )
        where = ("--stack-name", "sfsync-prod", "--endpoint-url", url, "--region", REGION)

        # CloudFormation made every resource; the functions carry the template's parameters
        cloudformation = _client("cloudformation", url)
        assert cloudformation.describe_stacks(StackName="sfsync-prod")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
        summaries = cloudformation.list_stack_resources(StackName="sfsync-prod")["StackResourceSummaries"]
        assert {r["ResourceStatus"] for r in summaries} == {"CREATE_COMPLETE"} and len(summaries) > 50
        kinds = {r["LogicalResourceId"]: r["ResourceType"] for r in summaries}
        assert kinds["FullSyncStateMachine"] == "AWS::StepFunctions::StateMachine"
        assert kinds["WriteBackLeadStream"] == "AWS::Lambda::EventSourceMapping"
        assert kinds["FreshnessAlarm"] == "AWS::CloudWatch::Alarm"  # listed; the stand-in has no alarms
        assert "AlarmEmailSubscription" not in kinds  # its condition (no AlarmEmail) leaves it out
        env = _client("lambda", url).get_function_configuration(FunctionName=stack.outputs["ObjectSyncFunctionName"])
        assert str(env["Environment"]["Variables"]["SFSYNC_FORMULA_REFRESH_SECONDS"]) == "3600"  # moto: a number

        code, out, err = cli("status", *where)
        assert (code, err) == (0, "") and "no sync state yet" in out

        # run: the first tick starts the first copy (Step Functions, Bulk API); the run waits for it
        code, out, err = cli("run", *where, "--cycles", "1", "--pause", "0")
        assert code == 0, err
        assert "full copy: started first-" in out, out
        for name in OBJECTS:
            row = next(line for line in out.splitlines() if line.startswith(f"{name} "))
            assert row.split()[1:4] == ["full", "copy", "done"], out
        leads = _client("dynamodb", url).scan(TableName=stack.outputs["LeadTableName"], Select="COUNT")["Count"]
        assert leads > 0

        # a change in Salesforce: the next tick's Lead cycle brings it
        lead = _open_lead(url, stack.outputs["LeadTableName"])
        emulator.admin.update("Lead", lead, {"Title": "VP Cloud"})
        time.sleep(1.5)  # past the stack's SafetyLagSeconds
        code, out, err = cli("run", *where, "--cycles", "1", "--pause", "0")
        assert code == 0, err
        row = next(line for line in out.splitlines() if line.startswith("Lead "))
        assert row.split()[1:5] == ["complete", "1", "0", "1"], out  # status, read, created, updated
        item = _client("dynamodb", url).get_item(TableName=stack.outputs["LeadTableName"], Key={"Id": {"S": lead}})
        assert item["Item"]["Title"]["S"] == "VP Cloud"

        _status_as_the_local_stack_shows_it(url, stack, where, tmp_path)
        _verify_and_repair(url, stack, where)
        _errors_and_retry(url, stack, where, emulator)
        _resync(url, stack, where)


def _status_as_the_local_stack_shows_it(url: str, stack: Any, where: tuple[str, ...], tmp_path: Path) -> None:
    """``status --stack-name`` shows what ``status --local`` shows for the same state table and objects."""
    code, text, err = cli("status", *where)
    assert code == 0, err
    assert text.splitlines()[0] == f"state table {stack.outputs['StateTableName']}: stack sfsync-prod at {url}"
    assert [line.split()[0] for line in text.splitlines()[3:]] == sorted(OBJECTS, key=OBJECTS.index)

    # the local stack's snapshot of the same table (what `sfsync run` saves for `sfsync status --local`)
    dynamodb = _client("dynamodb", url)
    table = stack.outputs["StateTableName"]
    description = dynamodb.describe_table(TableName=table)["Table"]
    snapshot = {
        "source": "sfsync run",
        "saved_at": "2026-12-07T00:00:00.000Z",
        "state_table": table,
        "region": REGION,
        "objects": OBJECTS,
        "key_schema": description["KeySchema"],
        "attribute_definitions": description["AttributeDefinitions"],
        "items": dynamodb.scan(TableName=table, ConsistentRead=True)["Items"],
    }
    state_file = tmp_path / "local-state.json"
    state_file.write_text(json.dumps(snapshot), encoding="utf-8")
    code, local, err = cli("status", "--local", "--state-file", str(state_file), "--json")
    assert code == 0, err
    code, deployed, err = cli("status", *where, "--json")
    assert code == 0, err

    def comparable(text: str) -> list[dict[str, Any]]:
        return [{k: v for k, v in o.items() if k not in MOMENT_FIELDS} for o in json.loads(text)["objects"]]

    assert comparable(deployed) == comparable(local)
    assert [o["object"] for o in json.loads(deployed)["objects"]] == OBJECTS
    assert all(o["full_copy_status"] == "done" for o in json.loads(deployed)["objects"])


def _verify_and_repair(url: str, stack: Any, where: tuple[str, ...]) -> None:
    code, out, err = cli("verify", "--object", "Account", *where)
    assert code == 0, err
    assert json.loads(out)["clean"] is True
    table = stack.outputs["AccountTableName"]
    dynamodb = _client("dynamodb", url)
    gone = sorted(i["Id"]["S"] for i in dynamodb.scan(TableName=table)["Items"])[0]
    dynamodb.delete_item(TableName=table, Key={"Id": {"S": gone}})
    code, out, err = cli("verify", "--object", "Account", *where, "--repair")
    report = json.loads(out)
    assert code == 0, err
    assert report["missing"] == {"count": 1, "examples": [gone]} and report["after_repair"]["clean"] is True, report
    assert dynamodb.get_item(TableName=table, Key={"Id": {"S": gone}}).get("Item") is not None


def _errors_and_retry(url: str, stack: Any, where: tuple[str, ...], emulator: Emulator) -> None:
    """An edit Salesforce refuses is listed by ``errors --stack-name``; ``errors retry`` pushes it once allowed."""
    table = stack.outputs["LeadTableName"]
    lead = _open_lead(url, table)
    emulator.admin.add_validation_rule("Lead", "NoTestCity", "City", "Testville", "City may not be Testville")
    _client("dynamodb", url).update_item(
        TableName=table,
        Key={"Id": {"S": lead}},
        UpdateExpression="SET City = :c",
        ExpressionAttributeValues={":c": {"S": "Testville"}},
    )

    def listed() -> list[dict[str, Any]]:
        code, out, err = cli("errors", *where, "--json")
        assert code == 0, err
        records: list[dict[str, Any]] = json.loads(out)["records"]
        return records

    (row,) = _wait(listed, "the refused edit in `sfsync errors`")
    assert (row["id"], row["kind"], row["code"]) == (lead, "refused", "FIELD_CUSTOM_VALIDATION_EXCEPTION")

    emulator.admin.remove_validation_rule("Lead", "NoTestCity")
    code, out, err = cli("errors", "retry", *where, "--object", "Lead", "--id", lead, "--json")
    assert code == 0, err
    (answer,) = json.loads(out)["retries"]
    assert (answer["records"], answer["pushed"], answer["failed"]) == (1, 1, 0)
    assert listed() == []
    assert emulator.admin.get("Lead", lead)["City"] == "Testville"


def _resync(url: str, stack: Any, where: tuple[str, ...]) -> None:
    code, out, err = cli("resync", "Lead", *where[:4], "--region", REGION, "--requested-by", "e2e")
    assert code == 0, err
    assert out.startswith("Lead: re-sync g1 requested; full copy "), out
    execution = out.split("full copy ", 1)[1].split()[0]
    sfn = _client("stepfunctions", url)
    arn = f"{stack.outputs['FullSyncStateMachineArn'].replace(':stateMachine:', ':execution:')}:{execution}"

    def ended() -> str | None:
        status = str(sfn.describe_execution(executionArn=arn)["status"])
        return None if status == "RUNNING" else status

    status = _wait(ended, "the re-sync's execution")
    assert status == "SUCCEEDED"
    code, out, err = cli("status", *where, "--object", "Lead", "--json")
    (lead,) = json.loads(out)["objects"]
    assert lead["full_copy_status"] == "done"


# --------------------------------------------------------------------------- bad input


@pytest.fixture
def unanswered_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


COMMANDS: list[tuple[str, ...]] = [
    ("run", "--cycles", "1"),
    ("status",),
    ("verify", "--object", "Lead"),
    ("resync", "Lead"),
    ("errors",),
    ("errors", "retry", "--object", "Lead"),
]


def test_given_bad_targets_then_every_stack_name_command_gives_one_clear_error_exit_2_and_writes_nothing(
    emulator: Emulator, aws_credentials: None, unanswered_url: str, tmp_path: Path
) -> None:
    with aws_standin.running(lambda_mode="none", log_path=tmp_path / "standin.log") as standin:
        url = standin["endpoint_url"]
        stack = aws_standin.deploy(
            url, stack_name="sfsync-crippled", salesforce_secret=salesforce_secret(emulator), parameters=PARAMETERS
        )
        for command in COMMANDS:
            # a stack that does not exist
            code, out, err = cli(*command, "--stack-name", "no-such-stack", "--endpoint-url", url)
            assert (code, out) == (2, ""), (command, err)
            assert err == f"error: stack no-such-stack does not exist in {url}\n", (command, err)
            # an endpoint that does not answer
            code, out, err = cli(*command, "--stack-name", "sfsync-crippled", "--endpoint-url", unanswered_url)
            assert (code, out) == (2, ""), (command, err)
            assert err.startswith(f"error: cannot reach CloudFormation at {unanswered_url}: "), (command, err)
            assert err.count("\n") == 1 and "Traceback" not in err

        # a Lambda service that cannot run the code: its answer is not JSON
        for command, who in ((("run", "--cycles", "1"), "the dispatcher"), (("resync", "Lead"), "the dispatcher")):
            code, out, err = cli(*command, "--stack-name", "sfsync-crippled", "--endpoint-url", url)
            assert code == 2, (command, err)
            prefix = f"error: {who} ({stack.outputs['DispatcherFunctionName']}) sent a function error that is not JSON"
            assert err.startswith(prefix) and "error running docker" in err, (command, err)
            assert "Traceback" not in err and err.count("\n") == 1
        code, _, err = cli(
            "errors", "retry", "--object", "Lead", "--stack-name", "sfsync-crippled", "--endpoint-url", url
        )
        assert code == 2 and "the write-back" in err and "not JSON" in err, err

        # nothing was written: the stack's tables are as CloudFormation made them
        dynamodb = _client("dynamodb", url)
        for output in ("StateTableName", "ErrorsTableName", "LeadTableName"):
            assert dynamodb.scan(TableName=stack.outputs[output], Select="COUNT")["Count"] == 0
