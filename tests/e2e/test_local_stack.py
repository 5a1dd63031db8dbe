"""The local stack deployed from template.yaml into moto: resources match the template, triggers run
the real handlers in-process, and the real ASL executes (over scripted handlers where the engine's own
steps need a Salesforce org)."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sfsync_local.cfn import TemplateError, load_template
from sfsync_local.lambda_runtime import LocalInvokeError
from sfsync_local.stack import LocalStack, LocalStackError

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = ["Lead", "Contact", "Account", "User", "Opportunity", "Campaign", "CampaignMember", "Activity", "Custom"]
TWO_WAY = ["Lead", "Contact", "Campaign", "CampaignMember"]
SECRET = {
    "auth_flow": "client_credentials",
    "token_url": "https://127.0.0.1:8443/services/oauth2/token",
    "client_id": "e2e-client",
    "client_secret": "e2e-secret",
    "api_version": "59.0",
}

# Scripted handlers: enough behaviour to drive the real ASL, the async queue and the stream trigger.
SCRIPTED = {
    "full_sync": """
        import json
        import boto3

        class SalesforceUnavailable(Exception):
            pass

        PAGES = {"Account": 2, "Big": 3}
        PAGES_PER_EXECUTION = 2
        progress = {}  # object -> {"polls", "pages"}: the scripted "copy document"

        def out(event, obj, route, **extra):
            return {"object": obj, "next": route, "pages_this_execution": event.get("pages_this_execution", 0), **extra}

        def lambda_handler(event, context):
            step = event["step"]
            assert context.get_remaining_time_in_millis() > 0
            if step == "plan":
                base = event["base_name"] or event["execution_name"]
                return {"objects": [{"object": o, "mode": "bulk", "resumed": o in progress} for o in event["objects"]],
                        "skipped": [], "failed": [], "warnings": [], "requested_by": event["requested_by"],
                        "base_name": base, "generation": event["generation"]}
            if step == "summarize":
                remaining = [r["object"] for r in event["results"] if r["next"] == "continue"]
                generation = event["generation"] + 1
                return {"continue": bool(remaining), "objects": remaining, "generation": generation,
                        "name": event["base_name"] + "-" + str(generation), "base_name": event["base_name"],
                        "requested_by": event["requested_by"],
                        "summary": {r["object"]: r["next"] for r in event["results"]}}
            if step == "continue_as_new":
                payload = {k: event[k] for k in ("objects", "requested_by", "base_name", "generation")}
                response = boto3.client("stepfunctions").start_execution(
                    stateMachineArn=event["state_machine_arn"], name=event["name"], input=json.dumps(payload))
                return {"execution_arn": response["executionArn"], "name": event["name"]}
            obj = event["object"]
            state = progress.setdefault(obj, {"polls": 0, "pages": 0})
            if step == "start_job":
                if obj == "Broken":
                    raise SalesforceUnavailable("503 SERVER_UNAVAILABLE")
                return out(event, obj, "load" if state["polls"] >= 2 else "wait", wait_seconds=7)
            if step == "poll_job":
                state["polls"] += 1
                return out(event, obj, "load" if state["polls"] >= 2 else "wait", wait_seconds=7 * 2 ** state["polls"])
            if step == "load_page":
                state["pages"] += 1
                used = event["pages_this_execution"] + 1
                route = "load" if used < PAGES_PER_EXECUTION else "continue"
                route = "finish" if state["pages"] >= PAGES[obj] else route
                return dict(out(event, obj, route), pages_this_execution=used)
            if step == "finish":
                return out(event, obj, "done", status="done", pages=state["pages"])
            if step == "mark_failed":
                return out(event, obj, "failed", status="failed", error=event["error"]["Error"])
            raise ValueError(step)
    """,
    "dispatcher": """
        import json, os
        import boto3

        def lambda_handler(event, context):
            assert event["detail-type"] == "Scheduled Event"
            client = boto3.client("lambda")
            objects = os.environ["SFSYNC_OBJECTS"].split(",")
            for obj in objects:
                payload = {"object": obj, "cycle_id": obj + "-tick", "reason": "due"}
                response = client.invoke(
                    FunctionName=os.environ["SFSYNC_OBJECT_SYNC_FUNCTION"], InvocationType="Event",
                    Payload=json.dumps(payload).encode(),
                )
                assert response["StatusCode"] == 202
            return {"fanned_out": objects}
    """,
    "object_sync": """
        import os
        import boto3

        class SalesforceUnavailable(Exception):
            pass

        def lambda_handler(event, context):
            if event["object"] == "Broken":
                raise SalesforceUnavailable("cannot reach the org")
            if event["object"] == "Unserialisable":
                return {"at": object()}
            boto3.client("dynamodb").put_item(
                TableName=os.environ["SFSYNC_STATE_TABLE"],
                Item={"pk": {"S": "cycle#" + event["object"]}, "sk": {"S": event["cycle_id"]}},
            )
            return {"object": event["object"], "function": context.function_name}
    """,
    "writeback": """
        class WriteBackCrashed(Exception):
            pass

        def lambda_handler(event, context):
            if "sweep" in event:
                return {"swept": event["sweep"], "function": context.function_name}
            if any(r["dynamodb"].get("NewImage", {}).get("Status", {}).get("S") == "Crash" for r in event["Records"]):
                raise WriteBackCrashed("a record of this batch crashes the function")
            failures = [
                {"itemIdentifier": r["dynamodb"]["SequenceNumber"]}
                for r in event["Records"]
                if r["dynamodb"].get("NewImage", {}).get("Status", {}).get("S") == "Fail"
            ]
            return {"batchItemFailures": failures}
    """,
}


def _scripted_project(tmp_path: Path) -> Path:
    """A copy of the real template and ASL whose functions are the scripted handlers above."""
    shutil.copy(ROOT / "template.yaml", tmp_path / "template.yaml")
    shutil.copytree(ROOT / "statemachine", tmp_path / "statemachine")
    (tmp_path / "layers/engine").mkdir(parents=True)
    for name, source in SCRIPTED.items():
        (tmp_path / "functions" / name).mkdir(parents=True)
        (tmp_path / "functions" / name / "app.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return tmp_path / "template.yaml"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack.deploy(salesforce_secret=SECRET) as deployed:
        yield deployed


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[LocalStack]:
    with LocalStack.deploy(
        template_path=_scripted_project(tmp_path),
        stack_name="sfsync-scripted",
        parameters={"SyncObjects": "Lead,Account,Broken"},
    ) as deployed:
        yield deployed


def _resources(resource_type: str) -> dict[str, dict[str, Any]]:
    """The template's resources of a type that the default deployment creates (no ``Condition``: the
    change-event resources exist only with EventRelayBusName, see tests/e2e/test_change_events.py)."""
    doc = load_template(ROOT / "template.yaml")
    return {k: v for k, v in doc["Resources"].items() if v["Type"] == resource_type and "Condition" not in v}


# ---------------------------------------------------------------------- the deployed resources match the template
def test_given_the_stack_then_every_table_has_the_template_keys_indexes_streams_ttl_and_pitr(stack: LocalStack) -> None:
    dynamodb = stack.boto3_client("dynamodb")
    for logical_id, resource in _resources("AWS::DynamoDB::Table").items():
        properties = resource["Properties"]
        table = dynamodb.describe_table(TableName=stack.table_name(logical_id))["Table"]
        assert table["KeySchema"] == properties["KeySchema"], logical_id
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert {g["IndexName"]: g["KeySchema"] for g in table.get("GlobalSecondaryIndexes", [])} == {
            g["IndexName"]: g["KeySchema"] for g in properties.get("GlobalSecondaryIndexes", [])
        }
        expected_stream = properties.get("StreamSpecification")
        if expected_stream:
            assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
        else:
            assert not table.get("StreamSpecification", {}).get("StreamEnabled"), logical_id
        backups = dynamodb.describe_continuous_backups(TableName=stack.table_name(logical_id))
        pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
        assert pitr["PointInTimeRecoveryStatus"] == "ENABLED", logical_id
    ttl = dynamodb.describe_time_to_live(TableName=stack.table_name("ErrorsTable"))["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    assert stack.table_name("LeadTable") == "sfsync-local-LeadTable"


def test_given_the_stack_then_functions_run_python312_arm64_with_the_resolved_environment(stack: LocalStack) -> None:
    lambda_client = stack.boto3_client("lambda")
    record_tables = {family: stack.table_name(f"{family}Table") for family in FAMILIES}
    for logical_id, resource in _resources("AWS::Serverless::Function").items():
        config = lambda_client.get_function_configuration(FunctionName=stack.function_name(logical_id))
        assert config["Runtime"] == "python3.12"
        assert config["Architectures"] == ["arm64"]
        assert config["Handler"] == resource["Properties"]["Handler"]
        assert config["Timeout"] == resource["Properties"].get("Timeout", 60)
        assert config["TracingConfig"] == {"Mode": "Active"}
        assert len(config["Layers"]) == 1
        env = config["Environment"]["Variables"]
        assert env == stack.function_environment(logical_id)
        assert json.loads(env["SFSYNC_RECORD_TABLES"]) == record_tables
        assert env["SFSYNC_STATE_TABLE"] == stack.table_name("StateTable")
        assert env["SFSYNC_ERRORS_TABLE"] == stack.table_name("ErrorsTable")
        assert env["POWERTOOLS_SERVICE_NAME"] == "sfsync"
        secret = stack.boto3_client("secretsmanager").get_secret_value(SecretId=env["SFSYNC_SECRET_ARN"])
        assert json.loads(secret["SecretString"]) == SECRET
    dispatcher = stack.function_environment("DispatcherFunction")
    assert dispatcher["SFSYNC_OBJECT_SYNC_FUNCTION"] == stack.function_name("ObjectSyncFunction")
    assert dispatcher["SFSYNC_FULL_SYNC_STATE_MACHINE_ARN"] == stack.state_machine_arn()
    invoke_config = lambda_client.get_function_event_invoke_config(
        FunctionName=stack.function_name("ObjectSyncFunction")
    )
    assert invoke_config["DestinationConfig"]["OnFailure"]["Destination"].endswith("-ObjectSyncFailureQueue")


def test_given_the_stack_then_the_write_back_reads_the_four_two_way_streams(stack: LocalStack) -> None:
    mappings = stack.boto3_client("lambda").list_event_source_mappings(
        FunctionName=stack.function_name("WriteBackFunction")
    )["EventSourceMappings"]
    dynamodb = stack.boto3_client("dynamodb")
    streams = {
        dynamodb.describe_table(TableName=stack.table_name(f"{family}Table"))["Table"]["LatestStreamArn"]
        for family in TWO_WAY
    }
    assert {m["EventSourceArn"] for m in mappings} == streams
    declared = _resources("AWS::Lambda::EventSourceMapping")
    assert len(declared) == len(mappings) == 4
    for mapping in mappings:
        assert mapping["BatchSize"] == next(iter(declared.values()))["Properties"]["BatchSize"]
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["DestinationConfig"]["OnFailure"]["Destination"].endswith("-WriteBackFailureQueue")


def test_given_the_stack_then_the_state_machine_runs_the_asl_file_with_substitutions_applied(stack: LocalStack) -> None:
    described = stack.boto3_client("stepfunctions").describe_state_machine(stateMachineArn=stack.state_machine_arn())
    function_arn = stack.boto3_client("lambda").get_function_configuration(
        FunctionName=stack.function_name("FullSyncFunction")
    )["FunctionArn"]
    asl_text = (ROOT / "statemachine/full_sync.asl.json").read_text(encoding="utf-8")
    assert json.loads(described["definition"]) == json.loads(asl_text.replace("${FullSyncFunctionArn}", function_arn))
    assert described["type"] == "STANDARD"


def test_given_the_stack_then_the_schedule_rules_and_queues_exist(stack: LocalStack) -> None:
    events = stack.boto3_client("events")
    rules = {r["Name"]: r["ScheduleExpression"] for r in events.list_rules()["Rules"]}
    tick, sweep = stack.schedule("DispatcherFunction"), stack.schedule("WriteBackFunction", "Sweep")
    assert rules[tick.rule_name] == "rate(1 minute)"
    assert rules[sweep.rule_name] == "rate(5 minutes)"
    dead_letters = stack.boto3_client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_url("ScheduleDeadLetterQueue"), AttributeNames=["QueueArn", "Policy"]
    )["Attributes"]
    for schedule in (tick, sweep):
        (target,) = events.list_targets_by_rule(Rule=schedule.rule_name)["Targets"]
        assert target["DeadLetterConfig"] == {"Arn": dead_letters["QueueArn"]}
    assert json.loads(target["Input"]) == {"sweep": {}}
    (statement,) = json.loads(dead_letters["Policy"])["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert sorted(statement["Condition"]["ArnEquals"]["aws:SourceArn"]) == sorted([tick.rule_arn, sweep.rule_arn])
    queues = ("DispatcherDeadLetterQueue", "ScheduleDeadLetterQueue", "ObjectSyncFailureQueue", "WriteBackFailureQueue")
    for queue in queues:
        attributes = stack.boto3_client("sqs").get_queue_attributes(
            QueueUrl=stack.queue_url(queue), AttributeNames=["All"]
        )
        assert attributes["Attributes"]["MessageRetentionPeriod"] == "1209600"
    assert stack.outputs["FullSyncStateMachineArn"] == stack.state_machine_arn()


def test_given_the_stack_then_the_alarm_topic_is_encrypted_with_the_stacks_own_key(stack: LocalStack) -> None:
    sns, kms = stack.boto3_client("sns"), stack.boto3_client("kms")
    attributes = sns.get_topic_attributes(TopicArn=stack.outputs["AlarmTopicArn"])["Attributes"]
    key_id = attributes["KmsMasterKeyId"]
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyManager"] == "CUSTOMER"
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    policy = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    assert {"Service": "cloudwatch.amazonaws.com"} in [s["Principal"] for s in policy["Statement"]]


def test_given_the_write_back_sweep_schedule_when_fired_then_the_write_back_gets_the_sweep_input(
    scripted: LocalStack,
) -> None:
    before = len(scripted.invocations)
    result = scripted.fire_schedule("WriteBackFunction")
    assert result == {"swept": {}, "function": scripted.function_name("WriteBackFunction")}
    calls = scripted.invocations[before:]
    assert [(c.function_name, c.event) for c in calls] == [(scripted.function_name("WriteBackFunction"), {"sweep": {}})]
    with pytest.raises(LocalStackError, match=r"DispatcherFunction\.Schedule, WriteBackFunction\.Sweep"):
        scripted.fire_schedule("ObjectSyncFunction")


def test_given_an_unknown_logical_id_when_asked_for_its_name_then_the_error_lists_the_known_ones(
    stack: LocalStack,
) -> None:
    with pytest.raises(LocalStackError, match="LeadTable"):
        stack.table_name("LeadsTable")


# ---------------------------------------------------------------------- the real handlers, in-process
def test_given_a_write_to_the_lead_table_then_the_real_write_back_handler_runs_on_its_stream(stack: LocalStack) -> None:
    table = stack.boto3_client("dynamodb")
    before = len(stack.invocations)
    item = {
        "Id": {"S": "00Q5g00000E2eE2EAV"},
        "sobject": {"S": "Lead"},
        "Status": {"S": "Open"},
        "SystemModstamp": {"S": "2026-11-25T12:00:00.000Z"},
    }
    lead_stream_prefix = f"arn:aws:dynamodb:us-east-1:123456789012:table/{stack.table_name('LeadTable')}/stream/"
    table.put_item(TableName=stack.table_name("LeadTable"), Item=item)
    table.put_item(TableName=stack.table_name("LeadTable"), Item={**item, "Status": {"S": "Working"}})
    calls = [c for c in stack.invocations[before:] if c.function_name == stack.function_name("WriteBackFunction")]
    # First delivery of each stream record (a handler that reports the record failed gets it again).
    first: dict[str, dict[str, Any]] = {}
    for call in calls:
        for record in call.event["Records"]:
            first.setdefault(record["dynamodb"]["SequenceNumber"], record)
    records = sorted(first.values(), key=lambda r: int(r["dynamodb"]["SequenceNumber"]))
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY"]
    assert all(r["eventSourceARN"].startswith(lead_stream_prefix) for r in records)
    modify = records[-1]["dynamodb"]
    assert modify["Keys"] == {"Id": {"S": "00Q5g00000E2eE2EAV"}}
    assert modify["OldImage"]["Status"] == {"S": "Open"}
    assert modify["NewImage"]["Status"] == {"S": "Working"}
    assert not calls[0].is_error, calls[0].result


def test_given_a_malformed_event_when_invoked_then_the_functions_error_payload_is_raised(stack: LocalStack) -> None:
    with pytest.raises(LocalInvokeError) as caught:
        stack.invoke("ObjectSyncFunction", {"object": "Account"})
    assert caught.value.payload["errorType"] == "InvalidEvent"
    assert caught.value.payload["stackTrace"]


# ---------------------------------------------------------------------- real ASL, async queue and stream retries
def test_given_scripted_steps_when_the_full_sync_runs_then_the_real_asl_completes_and_isolates_failures(
    scripted: LocalStack,
) -> None:
    description = scripted.run_state_machine(
        {"objects": ["Account", "Broken", "Big"], "requested_by": "e2e"}, timeout_seconds=30
    )
    assert description["status"] == "SUCCEEDED", description
    output = json.loads(description["output"])
    results = {r["object"]: r for r in output["results"]}
    assert results["Account"]["next"] == "done"
    assert results["Account"]["pages"] == 2
    assert results["Broken"] == {
        "object": "Broken",
        "next": "failed",
        "pages_this_execution": 0,
        "status": "failed",
        "error": "SalesforceUnavailable",
    }
    assert results["Big"]["next"] == "continue"
    assert output["summary"]["objects"] == ["Big"]

    def steps(obj: str) -> list[str]:
        return [c.event["step"] for c in scripted.invocations if c.event.get("object") == obj]

    assert steps("Account") == ["start_job", "poll_job", "poll_job", "load_page", "load_page", "finish"]
    assert steps("Broken") == ["start_job"] * 5 + ["mark_failed"]
    # Wait back-off from the job (7, 14 s) and Retry back-off (10, 20, 40, 80 s) took no real time.
    assert {7.0, 14.0} <= set(scripted.waits)
    assert [w for w in scripted.waits if w not in (7.0, 14.0)] == [10.0, 20.0, 40.0, 80.0]

    # Big reached the per-execution page budget: a continuation execution named <base>-1 finished it.
    continuation_arn = output["continuation"]["execution_arn"]
    assert continuation_arn.endswith(f":{description['name']}-1")
    continued = scripted.wait_for_execution(continuation_arn, timeout_seconds=30)
    assert continued["status"] == "SUCCEEDED", continued
    continued_output = json.loads(continued["output"])
    assert [r["object"] for r in continued_output["results"]] == ["Big"]
    assert continued_output["results"][0]["next"] == "done"
    assert continued_output["results"][0]["pages"] == 3
    assert "continuation" not in continued_output


def test_given_a_schedule_tick_then_the_dispatcher_fans_out_and_failed_async_invokes_reach_the_failure_queue(
    scripted: LocalStack,
) -> None:
    environment_before = dict(os.environ)
    result = scripted.fire_schedule(drain=False)
    assert dict(os.environ) == environment_before  # the function's variables were applied only while it ran
    assert result == {"fanned_out": ["Lead", "Account", "Broken"]}
    assert scripted.runtime.pending == 3
    ran = scripted.drain()
    # Broken: first attempt + MaximumRetryAttempts (1) retry, then the OnFailure destination.
    assert [(c.event["object"], c.is_error) for c in ran] == [
        ("Lead", False),
        ("Account", False),
        ("Broken", True),
        ("Broken", True),
    ]
    assert ran[0].result == {"object": "Lead", "function": scripted.function_name("ObjectSyncFunction")}
    items = scripted.boto3_client("dynamodb").scan(TableName=scripted.table_name("StateTable"))["Items"]
    assert sorted(i["pk"]["S"] for i in items) == ["cycle#Account", "cycle#Lead"]
    failures = scripted.receive_all("ObjectSyncFailureQueue")
    assert len(failures) == 1
    assert failures[0]["requestPayload"]["object"] == "Broken"
    assert failures[0]["requestContext"]["condition"] == "RetriesExhausted"
    assert failures[0]["responsePayload"]["errorType"] == "SalesforceUnavailable"


def test_given_a_record_the_write_back_reports_failed_then_it_is_retried_and_sent_to_the_failure_queue(
    scripted: LocalStack,
) -> None:
    scripted.boto3_client("dynamodb").put_item(
        TableName=scripted.table_name("ContactTable"),
        Item={"Id": {"S": "0035g00000F4iL4AAJ"}, "sobject": {"S": "Contact"}, "Status": {"S": "Fail"}},
    )
    calls = [c for c in scripted.invocations if c.function_name == scripted.function_name("WriteBackFunction")]
    assert len(calls) == 1 + 5  # first delivery + MaximumRetryAttempts
    failures = scripted.receive_all("WriteBackFailureQueue")
    assert len(failures) == 1
    info = failures[0]["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1
    assert ":table/sfsync-scripted-ContactTable/stream/" in info["streamArn"]


def test_given_the_moto_speed_ups_then_items_too_large_binary_values_and_batch_reads_behave_as_in_moto(
    stack: LocalStack,
) -> None:
    from botocore.exceptions import ClientError

    client, table = stack.boto3_client("dynamodb"), stack.table_name("AccountTable")
    too_large = {"Id": {"S": "001000000000BIGAAA"}, "Description": {"S": "x" * 300_000}, "Notes": {"S": "y" * 110_000}}
    with pytest.raises(ClientError) as caught:
        client.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": too_large}}]})
    assert "Item size has exceeded the maximum allowed size" in str(caught.value)
    just_fits = {"Id": {"S": "001000000000FITAAA"}, "Description": {"S": "x" * 300_000}}
    with_binary = {"Id": {"S": "001000000000BINAAA"}, "Blob": {"B": b"\x00\x01binary"}, "Tags": {"BS": [b"a", b"b"]}}
    client.batch_write_item(
        RequestItems={table: [{"PutRequest": {"Item": just_fits}}, {"PutRequest": {"Item": with_binary}}]}
    )
    keys = [{"Id": {"S": "001000000000FITAAA"}}, {"Id": {"S": "001000000000BINAAA"}}]
    found = client.batch_get_item(RequestItems={table: {"Keys": keys}})["Responses"][table]
    by_id = {item["Id"]["S"]: item for item in found}
    assert by_id["001000000000BINAAA"]["Blob"] == {"B": b"\x00\x01binary"}
    assert sorted(by_id["001000000000BINAAA"]["Tags"]["BS"]) == [b"a", b"b"]
    assert len(by_id["001000000000FITAAA"]["Description"]["S"]) == 300_000
    client.batch_write_item(RequestItems={table: [{"DeleteRequest": {"Key": key}} for key in keys]})


def _contact_items(statuses: list[str]) -> list[dict[str, Any]]:
    return [
        {"Id": {"S": f"0035g00000F4i{n:02d}AAA"}, "sobject": {"S": "Contact"}, "Status": {"S": status}}
        for n, status in enumerate(statuses)
    ]


def _write_back_calls(stack: LocalStack, since: int) -> list[Any]:
    name = stack.function_name("WriteBackFunction")
    return [c for c in stack.invocations[since:] if c.function_name == name]


def test_given_a_batch_write_then_its_stream_records_reach_the_write_back_in_one_batch_in_order(
    scripted: LocalStack,
) -> None:
    table = scripted.table_name("ContactTable")
    items = _contact_items(["Open"] * 25)
    before = len(scripted.invocations)
    scripted.boto3_client("dynamodb").batch_write_item(
        RequestItems={table: [{"PutRequest": {"Item": item}} for item in items]}
    )
    calls = _write_back_calls(scripted, before)
    assert len(calls) == 1  # 25 records within BatchSize: one invocation, as Lambda's stream poller makes
    records = calls[0].event["Records"]
    assert [r["dynamodb"]["Keys"]["Id"]["S"] for r in records] == [i["Id"]["S"] for i in items]
    numbers = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    assert numbers == sorted(numbers) and len(set(numbers)) == 25
    assert scripted.runtime.pending == 0 and scripted.drain() == []  # nothing left to deliver


def test_given_a_record_that_crashes_the_write_back_then_the_batch_is_bisected_and_only_it_fails(
    scripted: LocalStack,
) -> None:
    table = scripted.table_name("ContactTable")
    items = _contact_items(["Open", "Open", "Open", "Open", "Open", "Crash", "Open", "Open"])
    before = len(scripted.invocations)
    scripted.boto3_client("dynamodb").batch_write_item(
        RequestItems={table: [{"PutRequest": {"Item": item}} for item in items]}
    )
    calls = _write_back_calls(scripted, before)
    delivered = [r["dynamodb"]["Keys"]["Id"]["S"] for c in calls if not c.is_error for r in c.event["Records"]]
    crash_id = items[5]["Id"]["S"]
    assert delivered == [i["Id"]["S"] for i in items if i["Id"]["S"] != crash_id]  # each once, in order
    alone = [c for c in calls if [r["dynamodb"]["Keys"]["Id"]["S"] for r in c.event["Records"]] == [crash_id]]
    assert len(alone) == 1 + 5 and all(c.is_error for c in alone)  # isolated, then MaximumRetryAttempts
    failures = scripted.receive_all("WriteBackFailureQueue")
    assert [f["DDBStreamBatchInfo"]["batchSize"] for f in failures] == [1]
    crashed = alone[0].event["Records"][0]["dynamodb"]["SequenceNumber"]
    assert failures[0]["DDBStreamBatchInfo"]["startSequenceNumber"] == crashed


def test_given_a_stack_inside_another_mock_when_closed_then_its_resources_are_deleted(
    stack: LocalStack, tmp_path: Path
) -> None:
    inner = LocalStack.deploy(template_path=_scripted_project(tmp_path), stack_name="sfsync-inner")
    other = LocalStack.deploy(template_path=tmp_path / "template.yaml", stack_name="sfsync-other")
    assert "sfsync-inner-LeadTable" in stack.boto3_client("dynamodb").list_tables()["TableNames"]
    inner.close()  # closed before the stack deployed after it: the other one keeps working
    ok = other.invoke("ObjectSyncFunction", {"object": "Lead", "cycle_id": "c1"})
    assert ok == {"object": "Lead", "function": "sfsync-other-ObjectSyncFunction"}
    assert other.run_state_machine({"objects": ["Account"]})["status"] == "SUCCEEDED"
    assert {7.0, 14.0} <= set(other.waits)  # still instant
    other.close()
    tables = stack.boto3_client("dynamodb").list_tables()["TableNames"]
    assert not [t for t in tables if t.startswith(("sfsync-inner-", "sfsync-other-"))]
    assert stack.table_name("LeadTable") in tables
    functions = [f["FunctionName"] for f in stack.boto3_client("lambda").list_functions()["Functions"]]
    assert not [f for f in functions if f.startswith(("sfsync-inner-", "sfsync-other-"))]
    # the outer stack still runs its real handlers once the inner one is gone
    sample = json.loads((ROOT / "events/writeback/lead_stream_insert.json").read_text(encoding="utf-8"))
    assert stack.invoke("WriteBackFunction", sample) == {"batchItemFailures": []}


def test_given_a_missing_handler_file_then_the_stack_deploys_and_invoking_it_fails_like_lambda(tmp_path: Path) -> None:
    template = _scripted_project(tmp_path)
    (tmp_path / "functions/writeback/app.py").unlink()
    with LocalStack.deploy(template_path=template, stack_name="sfsync-partial") as partial:
        with pytest.raises(LocalInvokeError) as caught:
            partial.invoke("WriteBackFunction", {"Records": []})
        assert caught.value.payload["errorType"] == "Runtime.ImportModuleError"
        assert "functions/writeback/app.py does not exist" in caught.value.payload["errorMessage"]
        with pytest.raises(LocalInvokeError) as unserialisable:
            partial.invoke("ObjectSyncFunction", {"object": "Unserialisable", "cycle_id": "c1"})
        assert unserialisable.value.payload["errorType"] == "Runtime.MarshalError"


def test_given_an_async_dispatcher_failure_then_the_event_lands_in_its_dead_letter_queue_without_retry(
    scripted: LocalStack,
) -> None:
    bad_tick = {"detail-type": "Not A Schedule"}
    scripted.invoke_async("DispatcherFunction", bad_tick)
    ran = scripted.drain()
    assert [(c.function_name, c.is_error) for c in ran] == [(scripted.function_name("DispatcherFunction"), True)]
    assert scripted.receive_all("DispatcherDeadLetterQueue") == [bad_tick]


def test_given_a_bad_parameter_when_deploying_inside_another_stack_then_nothing_is_left_behind(
    stack: LocalStack,
) -> None:
    with pytest.raises(TemplateError, match="PauseSeconds"):
        LocalStack.deploy(stack_name="sfsync-bad", parameters={"PauseSeconds": "soon"})
    secrets = stack.boto3_client("secretsmanager").list_secrets()["SecretList"]
    assert not [s for s in secrets if s["Name"].startswith("sfsync-bad")]
    # and the same name deploys once the parameter is right
    LocalStack.deploy(stack_name="sfsync-bad").close()
