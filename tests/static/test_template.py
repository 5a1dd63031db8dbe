"""Static checks of template.yaml: linters, the names of docs/engine-design.md, code locations, IAM."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sfsync_local.cfn import Template, TemplateError, load_template, merge_function_globals
from sfsync_local.lambda_runtime import load_handler_module

pytestmark = pytest.mark.static

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
VENV_BIN = Path(sys.executable).parent
SAM = ROOT / ".venv-sam" / "bin" / "sam"

FAMILIES = ["Lead", "Contact", "Account", "User", "Opportunity", "Campaign", "CampaignMember", "Activity", "Custom"]
TWO_WAY = ["Lead", "Contact", "Campaign", "CampaignMember"]
# docs/engine-design.md, "DynamoDB tables": family -> {index name: hash key attribute}
EXPECTED_GSIS: dict[str, dict[str, str]] = {
    "Lead": {"ByEmail": "Email", "ByOwner": "OwnerId"},
    "Contact": {"ByEmail": "Email", "ByAccount": "AccountId", "ByOwner": "OwnerId"},
    "Account": {"ByOwner": "OwnerId"},
    "User": {},
    "Opportunity": {"ByAccount": "AccountId", "ByOwner": "OwnerId"},
    "Campaign": {},
    "CampaignMember": {"ByCampaign": "CampaignId", "ByLeadOrContact": "LeadOrContactId"},
    "Activity": {"ByWho": "WhoId", "ByWhat": "WhatId", "ByObject": "sobject"},
    "Custom": {"ByObject": "sobject"},
}
FUNCTIONS = {
    "DispatcherFunction": "functions/dispatcher/",
    "ObjectSyncFunction": "functions/object_sync/",
    "FullSyncFunction": "functions/full_sync/",
    "WriteBackFunction": "functions/writeback/",
    "ChangeEventFunction": "functions/change_events/",
}
GLOBAL_ENV = [
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "SFSYNC_SECRET_ARN",
    "SFSYNC_STATE_TABLE",
    "SFSYNC_ERRORS_TABLE",
    "SFSYNC_RECORD_TABLES",
    "SFSYNC_OBJECTS",
    "SFSYNC_CUSTOM_OBJECTS",
    "SFSYNC_PAUSE_SECONDS",
    "SFSYNC_API_BUDGET_PERCENT",
    "SFSYNC_FORMULA_REFRESH_SECONDS",
    "SFSYNC_WRITEBACK",
]
SAM_POLICY_TEMPLATES = {
    "AWSSecretsManagerGetSecretValuePolicy",
    "DynamoDBCrudPolicy",
    "DynamoDBReadPolicy",
    "DynamoDBStreamReadPolicy",
    "LambdaInvokePolicy",
    "StepFunctionsExecutionPolicy",
    "SQSSendMessagePolicy",
    "SQSPollerPolicy",
}


class _Names:
    """Physical names for the resolver: ``<logical id>-name`` / a fake ARN."""

    def ref(self, logical_id: str) -> str:
        return f"{logical_id}-name"

    def get_att(self, logical_id: str, attribute: str) -> str:
        if attribute == "StreamArn":
            return f"arn:aws:dynamodb:us-east-1:123456789012:table/{logical_id}-name/stream/2026-11-25T11:58:03.417"
        return f"arn:test:{logical_id}:{attribute}"


class _StrictNames(_Names):
    """Like :class:`_Names`, but only for logical ids the template declares."""

    def __init__(self, declared: set[str]):
        self.declared = declared
        self.seen: set[str] = set()

    def ref(self, logical_id: str) -> str:
        assert logical_id in self.declared, f"Ref to undeclared {logical_id}"
        self.seen.add(logical_id)
        return super().ref(logical_id)

    def get_att(self, logical_id: str, attribute: str) -> str:
        assert logical_id in self.declared, f"GetAtt of undeclared {logical_id}"
        self.seen.add(logical_id)
        return super().get_att(logical_id, attribute)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return load_template(TEMPLATE)


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.from_file(
        TEMPLATE,
        region="us-east-1",
        account_id="123456789012",
        stack_name="static",
        parameter_overrides={"SalesforceSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:sf-AbCdEf"},
    )


def _resources_of(doc: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in doc["Resources"].items() if v["Type"] == resource_type}


# ---------------------------------------------------------------------- linters
def test_given_the_template_when_cfn_lint_runs_then_it_reports_nothing() -> None:
    result = subprocess.run(
        [str(VENV_BIN / "cfn-lint"), str(TEMPLATE)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_given_the_template_when_sam_validate_lint_runs_then_it_is_valid() -> None:
    assert SAM.exists(), f"{SAM} is missing: run `make sam-venv` (SAM CLI lives in its own venv)"
    result = subprocess.run(
        [str(SAM), "validate", "--lint", "--template", str(TEMPLATE)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={"SAM_CLI_TELEMETRY": "0", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_given_a_broken_template_when_cfn_lint_runs_then_it_fails(tmp_path: Path) -> None:
    broken = TEMPLATE.read_text(encoding="utf-8").replace(
        "BillingMode: PAY_PER_REQUEST", "BillingMode: PAY_PER_LUNCH", 1
    )
    assert "PAY_PER_LUNCH" in broken
    (tmp_path / "template.yaml").write_text(broken, encoding="utf-8")
    result = subprocess.run(
        [str(VENV_BIN / "cfn-lint"), str(tmp_path / "template.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "PAY_PER_LUNCH" in result.stdout


def test_given_every_section_when_resolved_then_each_reference_names_a_declared_parameter_or_resource(
    template: Template,
) -> None:
    """cfn-lint and `sam validate --lint` both miss a dangling !Ref inside Globals; resolving everything does not."""
    names = _StrictNames(set(template.resources))
    names.declared |= set(template.sam_generated_resources())  # the rules of Schedule events (SAM documents them)
    template.resolve(template.document["Globals"], names)
    for logical_id in template.resources:
        template.resolve(template.resources[logical_id].get("Properties") or {}, names)
    template.resolve(template.document["Outputs"], names)
    assert {"StateTable", "ErrorsTable", "LeadTable", "FullSyncFunction"} <= names.seen


def test_given_a_dangling_reference_when_resolved_then_it_is_rejected(template: Template) -> None:
    with pytest.raises(TemplateError, match="unknown name NoSuchTable"):
        template.resolve({"Fn::Sub": "${NoSuchTable}"}, _Names())


# ---------------------------------------------------------------------- tables (docs/engine-design.md)
def test_given_the_template_then_there_is_one_record_table_per_family_keyed_by_id(doc: dict[str, Any]) -> None:
    tables = _resources_of(doc, "AWS::DynamoDB::Table")
    assert sorted(tables) == sorted([f"{family}Table" for family in FAMILIES] + ["StateTable", "ErrorsTable"])
    for family in FAMILIES:
        properties = tables[f"{family}Table"]["Properties"]
        assert properties["KeySchema"] == [{"AttributeName": "Id", "KeyType": "HASH"}], family


@pytest.mark.parametrize("family", FAMILIES)
def test_given_a_record_table_then_its_indexes_and_stream_are_the_designed_ones(
    doc: dict[str, Any], family: str
) -> None:
    properties = doc["Resources"][f"{family}Table"]["Properties"]
    gsis = {
        gsi["IndexName"]: [key["AttributeName"] for key in gsi["KeySchema"]]
        for gsi in properties.get("GlobalSecondaryIndexes", [])
    }
    pending = gsis.pop("ByPending", None)
    assert gsis == {name: [attribute] for name, attribute in EXPECTED_GSIS[family].items()}
    for gsi in properties.get("GlobalSecondaryIndexes", []):
        if gsi["IndexName"] != "ByPending":
            assert gsi["Projection"] == {"ProjectionType": "ALL"}
    defined = {d["AttributeName"]: d["AttributeType"] for d in properties["AttributeDefinitions"]}
    expected_defined = {"Id": "S", **{attribute: "S" for attribute in EXPECTED_GSIS[family].values()}}
    stream = properties.get("StreamSpecification")
    if family in TWO_WAY:
        assert stream == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
        assert pending == ["sobject", "_pending_since"]
        expected_defined |= {"sobject": "S", "_pending_since": "S"}
    else:
        assert stream is None
        assert pending is None
    assert defined == expected_defined


@pytest.mark.parametrize("family", TWO_WAY)
def test_given_a_two_way_table_then_local_edits_pending_are_found_through_the_sparse_by_pending_index(
    doc: dict[str, Any], family: str
) -> None:
    (index,) = [
        gsi
        for gsi in doc["Resources"][f"{family}Table"]["Properties"]["GlobalSecondaryIndexes"]
        if gsi["IndexName"] == "ByPending"
    ]
    assert index["KeySchema"] == [
        {"AttributeName": "sobject", "KeyType": "HASH"},
        {"AttributeName": "_pending_since", "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}


def test_given_the_engine_tables_then_keys_and_ttl_follow_the_design(doc: dict[str, Any]) -> None:
    for logical_id in ("StateTable", "ErrorsTable"):
        properties = doc["Resources"][logical_id]["Properties"]
        assert properties["KeySchema"] == [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ]
    assert doc["Resources"]["ErrorsTable"]["Properties"]["TimeToLiveSpecification"] == {
        "AttributeName": "expires_at",
        "Enabled": True,
    }


def test_given_every_table_then_it_is_on_demand_with_pitr_and_sse(doc: dict[str, Any]) -> None:
    for logical_id, table in _resources_of(doc, "AWS::DynamoDB::Table").items():
        properties = table["Properties"]
        assert properties["BillingMode"] == "PAY_PER_REQUEST", logical_id
        assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}, logical_id
        assert properties["SSESpecification"] == {"SSEEnabled": True}, logical_id
        assert table.get("DeletionPolicy") == "Retain", logical_id


# ---------------------------------------------------------------------- functions
def test_given_the_functions_then_code_locations_and_handlers_follow_the_design(doc: dict[str, Any]) -> None:
    functions = _resources_of(doc, "AWS::Serverless::Function")
    assert {k: v["Properties"]["CodeUri"] for k, v in functions.items()} == FUNCTIONS
    assert {v["Properties"]["Handler"] for v in functions.values()} == {"app.lambda_handler"}


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_given_a_function_then_its_code_uri_exists_and_its_handler_is_callable(
    doc: dict[str, Any], logical_id: str
) -> None:
    properties = doc["Resources"][logical_id]["Properties"]
    code_dir = ROOT / properties["CodeUri"]
    assert code_dir.is_dir(), f"{logical_id}: CodeUri {code_dir} does not exist"
    module_name, _, attribute = properties["Handler"].rpartition(".")
    module_file = code_dir / f"{module_name}.py"
    assert module_file.is_file(), f"{logical_id}: {module_file} does not exist"
    module = load_handler_module(module_file, f"static_check_{logical_id}")
    assert callable(getattr(module, attribute, None)), f"{logical_id}: {properties['Handler']} is not callable"


def test_given_the_globals_then_every_function_runs_python312_arm64_traced_with_the_engine_layer(
    doc: dict[str, Any],
) -> None:
    function_globals = doc["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.12"
    assert function_globals["Architectures"] == ["arm64"]
    assert function_globals["Tracing"] == "Active"
    assert function_globals["Layers"] == [{"Ref": "EngineLayer"}]
    layer = doc["Resources"]["EngineLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/engine/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer["Metadata"] == {"BuildMethod": "python3.12", "BuildArchitecture": "arm64"}
    assert (ROOT / "layers/engine/requirements.txt").is_file()
    for logical_id in FUNCTIONS:
        overrides = set(doc["Resources"][logical_id]["Properties"]) & {"Runtime", "Architectures", "Layers"}
        assert not overrides, f"{logical_id} overrides {overrides}"


def test_given_the_resolved_environment_then_every_function_has_the_engine_variables(template: Template) -> None:
    names = _Names()
    for logical_id in FUNCTIONS:
        env = template.resolve(template.function_properties(logical_id), names)["Environment"]["Variables"]
        assert sorted(set(GLOBAL_ENV) - set(env)) == [], logical_id
        tables = json.loads(env["SFSYNC_RECORD_TABLES"])
        assert tables == {family: f"{family}Table-name" for family in FAMILIES}
        assert env["SFSYNC_STATE_TABLE"] == "StateTable-name"
        assert env["SFSYNC_ERRORS_TABLE"] == "ErrorsTable-name"
        assert env["SFSYNC_PAUSE_SECONDS"] == "300"
        assert env["SFSYNC_API_BUDGET_PERCENT"] == "80"
        assert env["SFSYNC_FORMULA_REFRESH_SECONDS"] == "21600"  # the engine's own default (sfsync.core.config)
        assert env["SFSYNC_OBJECTS"].split(",") == [
            "Lead",
            "Contact",
            "Account",
            "User",
            "Opportunity",
            "OpportunityContactRole",
            "Campaign",
            "CampaignMember",
            "Task",
            "Event",
        ]
    dispatcher = template.resolve(template.function_properties("DispatcherFunction"), names)["Environment"]
    assert dispatcher["Variables"]["SFSYNC_OBJECT_SYNC_FUNCTION"] == "ObjectSyncFunction-name"
    assert dispatcher["Variables"]["SFSYNC_FULL_SYNC_STATE_MACHINE_ARN"] == "FullSyncStateMachine-name"


def test_given_the_dispatcher_then_it_runs_on_the_schedule_with_a_dead_letter_queue(doc: dict[str, Any]) -> None:
    properties = doc["Resources"]["DispatcherFunction"]["Properties"]
    schedule = properties["Events"]["Schedule"]
    assert schedule["Type"] == "Schedule"
    assert schedule["Properties"]["Schedule"] == {"Ref": "ScheduleExpression"}
    assert doc["Parameters"]["ScheduleExpression"]["Default"] == "rate(1 minute)"
    assert properties["DeadLetterQueue"]["Type"] == "SQS"
    assert properties["EventInvokeConfig"]["MaximumRetryAttempts"] == 0  # the next tick is the retry


@pytest.mark.parametrize(("function", "event"), [("DispatcherFunction", "Schedule"), ("WriteBackFunction", "Sweep")])
def test_given_a_schedule_then_undeliverable_events_go_to_our_own_queue_with_14_days_and_an_alarm(
    doc: dict[str, Any], function: str, event: str
) -> None:
    """`DeadLetterConfig: {Type: SQS}` makes SAM create a queue with the default 4-day retention and no alarm."""
    properties = doc["Resources"][function]["Properties"]["Events"][event]["Properties"]
    assert properties["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}}
    assert properties["RetryPolicy"]["MaximumRetryAttempts"] == 0
    queue = doc["Resources"]["ScheduleDeadLetterQueue"]
    assert queue["Type"] == "AWS::SQS::Queue"
    assert queue["Properties"]["MessageRetentionPeriod"] == 1209600
    policies = [
        r["Properties"]
        for r in doc["Resources"].values()
        if r["Type"] == "AWS::SQS::QueuePolicy" and {"Ref": "ScheduleDeadLetterQueue"} in r["Properties"]["Queues"]
    ]
    assert len(policies) == 1
    (statement,) = policies[0]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}
    # Only the stack's own schedule rules (the rule SAM generates is <function><event name>).
    assert {"Fn::GetAtt": [f"{function}{event}", "Arn"]} in statement["Condition"]["ArnEquals"]["aws:SourceArn"]
    alarms = [
        r["Properties"]
        for r in doc["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and r["Properties"].get("Dimensions")
        == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "QueueName"]}}]
    ]
    assert len(alarms) == 1


def test_given_the_write_back_then_a_sweep_runs_every_5_minutes_with_its_own_input(doc: dict[str, Any]) -> None:
    properties = doc["Resources"]["WriteBackFunction"]["Properties"]
    sweep = properties["Events"]["Sweep"]
    assert sweep["Type"] == "Schedule"
    assert sweep["Properties"]["Schedule"] == "rate(5 minutes)"
    assert json.loads(sweep["Properties"]["Input"]) == {"sweep": {}}
    assert properties["EventInvokeConfig"]["MaximumRetryAttempts"] == 0  # the next sweep is the retry


def test_given_the_globals_then_every_function_reads_the_write_back_options(doc: dict[str, Any]) -> None:
    """The dispatcher validates the write-back options on its first tick."""
    assert doc["Globals"]["Function"]["Environment"]["Variables"]["SFSYNC_WRITEBACK"] == {"Ref": "WriteBackOptions"}
    for logical_id in FUNCTIONS:
        variables = (doc["Resources"][logical_id]["Properties"].get("Environment") or {}).get("Variables") or {}
        assert "SFSYNC_WRITEBACK" not in variables, logical_id


def test_given_the_object_sync_then_async_failures_go_to_an_sqs_destination(doc: dict[str, Any]) -> None:
    config = doc["Resources"]["ObjectSyncFunction"]["Properties"]["EventInvokeConfig"]
    assert 0 <= config["MaximumRetryAttempts"] <= 2
    on_failure = config["DestinationConfig"]["OnFailure"]
    assert on_failure["Type"] == "SQS"
    assert doc["Resources"][on_failure["Destination"]["Fn::GetAtt"][0]]["Type"] == "AWS::SQS::Queue"


def test_given_the_write_back_then_it_reads_the_four_two_way_streams_with_partial_batch_failures(
    doc: dict[str, Any],
) -> None:
    """Plain event source mappings, not SAM DynamoDB events (which add an account-wide managed policy)."""
    mappings = {
        k: m
        for k, m in _resources_of(doc, "AWS::Lambda::EventSourceMapping").items()
        if m["Properties"]["EventSourceArn"]["Fn::GetAtt"][1] == "StreamArn"
    }
    streams = sorted(m["Properties"]["EventSourceArn"]["Fn::GetAtt"][0] for m in mappings.values())
    assert streams == sorted(f"{family}Table" for family in TWO_WAY)
    for name, mapping in mappings.items():
        properties = mapping["Properties"]
        assert properties["FunctionName"] == {"Ref": "WriteBackFunction"}, name
        assert properties["EventSourceArn"]["Fn::GetAtt"][1] == "StreamArn"
        assert properties["StartingPosition"] == "LATEST"
        assert 1 <= properties["BatchSize"] <= 1000
        assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert properties["BisectBatchOnFunctionError"] is True
        assert 0 <= properties["MaximumRetryAttempts"] <= 10000
        assert properties["DestinationConfig"]["OnFailure"]["Destination"] == {
            "Fn::GetAtt": ["WriteBackFailureQueue", "Arn"]
        }
    for logical_id in FUNCTIONS:
        events = doc["Resources"][logical_id]["Properties"].get("Events") or {}
        assert all(event["Type"] not in ("DynamoDB", "SQS") for event in events.values()), logical_id


#: What exists only when EventRelayBusName is set (condition HasEventRelay).
CHANGE_EVENT_RESOURCES = {
    "ChangeEventDeadLetterQueue",
    "ChangeEventQueue",
    "ChangeEventQueuePolicy",
    "ChangeEventRule",
    "ChangeEventFunction",
    "ChangeEventQueueMapping",
    "ChangeEventLogGroup",
    "ChangeEventErrorsAlarm",
    "ChangeEventDeadLetterQueueAlarm",
    "ChangeEventBacklogAlarm",
    "ChangeEventsRejectedAlarm",
    "CdcUnhealthyAlarm",
}


def test_given_no_event_relay_bus_then_the_change_event_resources_do_not_exist(doc: dict[str, Any]) -> None:
    assert doc["Conditions"]["HasEventRelay"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "EventRelayBusName"}, ""]}]}
    conditioned = {k for k, v in doc["Resources"].items() if v.get("Condition") == "HasEventRelay"}
    assert conditioned == CHANGE_EVENT_RESOURCES
    for name, output in doc["Outputs"].items():
        if name.startswith("ChangeEvent"):
            assert output["Condition"] == "HasEventRelay", name
    variables = doc["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["SFSYNC_CDC_ENABLED"] == {"Fn::If": ["HasEventRelay", "true", "false"]}
    assert variables["SFSYNC_CDC_PAUSE_SECONDS"] == {"Ref": "CdcPauseSeconds"}


def test_given_the_change_event_path_then_the_rule_queue_and_mapping_never_lose_an_event(doc: dict[str, Any]) -> None:
    """Rule on the partner bus -> queue (five receives, then the DLQ) -> the function with partial-batch failures."""
    resources = doc["Resources"]
    rule = resources["ChangeEventRule"]["Properties"]
    assert rule["EventBusName"] == {"Ref": "EventRelayBusName"}
    assert rule["EventPattern"] == {"source": [{"prefix": "aws.partner/salesforce.com"}]}
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["ChangeEventQueue", "Arn"]}
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["ChangeEventDeadLetterQueue", "Arn"]}
    queue = resources["ChangeEventQueue"]["Properties"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["ChangeEventDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5,
    }
    timeout = resources["ChangeEventFunction"]["Properties"]["Timeout"]
    assert queue["VisibilityTimeout"] >= 6 * timeout
    assert resources["ChangeEventDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] == 1209600
    mapping = resources["ChangeEventQueueMapping"]["Properties"]
    assert mapping["FunctionName"] == {"Ref": "ChangeEventFunction"}
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["ChangeEventQueue", "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 1 <= mapping["BatchSize"] <= 10000 and mapping["MaximumBatchingWindowInSeconds"] <= 1
    statement = resources["ChangeEventQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Fn::GetAtt": ["ChangeEventRule", "Arn"]}


def test_given_the_event_relay_parameter_when_the_local_stack_reads_the_template_then_conditions_decide(
    template: Template,
) -> None:
    assert all(not template.resource_enabled(name) for name in CHANGE_EVENT_RESOURCES)
    assert "ChangeEventFunction" not in template.resources_of_type("AWS::Serverless::Function")
    on = Template.from_file(
        TEMPLATE,
        region="us-east-1",
        account_id="123456789012",
        stack_name="static",
        parameter_overrides={
            **template.parameter_overrides,
            "EventRelayBusName": "aws.partner/salesforce.com/00D000000000001AAA/0YL000000000001AAA",
        },
    )
    assert all(on.resource_enabled(name) for name in CHANGE_EVENT_RESOURCES)
    env = on.resolve(on.function_properties("DispatcherFunction"), _Names())["Environment"]["Variables"]
    assert env["SFSYNC_CDC_ENABLED"] == "true"
    with pytest.raises(TemplateError, match="EventRelayBusName"):
        Template.from_file(
            TEMPLATE,
            region="us-east-1",
            account_id="123456789012",
            stack_name="static",
            parameter_overrides={**template.parameter_overrides, "EventRelayBusName": "my-bus"},
        )


#: Inline statements, only for actions no SAM policy template covers: (resource, actions).
INLINE_STATEMENTS = {
    ("FullSyncStateMachine", "logs:"),  # log delivery: accepts nothing but "*"
    ("DispatcherFunction", "states:DescribeExecution"),
    *((f, "kms:Decrypt") for f in FUNCTIONS),  # the secret's optional key, through Secrets Manager only
}


def test_given_the_two_way_tables_then_each_has_the_sparse_by_pending_index_of_the_sweep(doc: dict[str, Any]) -> None:
    for family in TWO_WAY:
        properties = doc["Resources"][f"{family}Table"]["Properties"]
        (index,) = [g for g in properties["GlobalSecondaryIndexes"] if g["IndexName"] == "ByPending"]
        assert index["KeySchema"] == [
            {"AttributeName": "sobject", "KeyType": "HASH"},
            {"AttributeName": "_pending_since", "KeyType": "RANGE"},
        ]
        assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}
        defined = {a["AttributeName"]: a["AttributeType"] for a in properties["AttributeDefinitions"]}
        assert defined["sobject"] == defined["_pending_since"] == "S"


def test_given_every_policy_then_it_is_a_sam_policy_template_scoped_to_named_resources(doc: dict[str, Any]) -> None:
    """What the policies become after SAM's translation is checked by test_iam.py."""
    for logical_id, resource in doc["Resources"].items():
        if resource["Type"] not in {"AWS::Serverless::Function", "AWS::Serverless::StateMachine"}:
            continue
        for listed in resource["Properties"].get("Policies", []):
            entry = listed
            if isinstance(listed, dict) and set(listed) == {"Fn::If"}:  # [condition, policy, AWS::NoValue]
                assert listed["Fn::If"][2] == {"Ref": "AWS::NoValue"}, logical_id
                entry = listed["Fn::If"][1]
            assert isinstance(entry, dict) and len(entry) == 1, f"{logical_id}: {entry!r}"
            (name, arguments), *_ = entry.items()
            if name == "Statement":
                for statement in arguments:
                    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                    for action in actions:
                        allowed = any(
                            logical_id == owner and action.startswith(prefix) for owner, prefix in INLINE_STATEMENTS
                        )
                        assert allowed, f"{logical_id}: inline {action} (use a SAM policy template)"
                continue
            assert name in SAM_POLICY_TEMPLATES, f"{logical_id}: {name}"
            for value in arguments.values():
                assert value != "*", f"{logical_id}: {name} is not scoped"
    crud = [
        p["DynamoDBCrudPolicy"]["TableName"]["Ref"]
        for p in doc["Resources"]["WriteBackFunction"]["Properties"]["Policies"]
        if "DynamoDBCrudPolicy" in p
    ]
    assert sorted(crud) == sorted(["StateTable", "ErrorsTable"] + [f"{family}Table" for family in TWO_WAY])


def test_given_the_template_then_every_log_group_has_the_retention_parameter(doc: dict[str, Any]) -> None:
    groups = _resources_of(doc, "AWS::Logs::LogGroup")
    named = {json.dumps(g["Properties"]["LogGroupName"]) for g in groups.values()}
    for logical_id in FUNCTIONS:
        assert json.dumps({"Fn::Sub": f"/aws/lambda/${{{logical_id}}}"}) in named, logical_id
    for group in groups.values():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_given_the_template_then_outputs_name_tables_functions_and_the_state_machine(doc: dict[str, Any]) -> None:
    values = {json.dumps(output["Value"]) for output in doc["Outputs"].values()}
    for logical_id in [f"{family}Table" for family in FAMILIES] + ["StateTable", "ErrorsTable", *FUNCTIONS]:
        assert json.dumps({"Ref": logical_id}) in values, logical_id
    assert json.dumps({"Ref": "FullSyncStateMachine"}) in values


def test_given_the_alarm_email_parameter_then_the_subscription_is_conditional(template: Template) -> None:
    assert template.resource_enabled("AlarmEmailSubscription") is False
    with_email = Template(
        template.document,
        template.region,
        template.account_id,
        template.stack_name,
        {**template.parameter_overrides, "AlarmEmail": "ops@example.com"},
    )
    assert with_email.resource_enabled("AlarmEmailSubscription") is True


# ---------------------------------------------------------------------- the resolver the local stack uses
def test_given_short_form_tags_when_loaded_then_they_become_long_form_intrinsics(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "Resources:\n  A:\n    Type: X\n    Properties:\n"
        "      R: !Ref P\n      G: !GetAtt T.StreamArn\n      S: !Sub '${P}-x'\n"
        "      J: !Join [',', [a, b]]\n      L: !Select [1, !Split ['/', 'a/b/c']]\n",
        encoding="utf-8",
    )
    properties = load_template(path)["Resources"]["A"]["Properties"]
    assert properties == {
        "R": {"Ref": "P"},
        "G": {"Fn::GetAtt": ["T", "StreamArn"]},
        "S": {"Fn::Sub": "${P}-x"},
        "J": {"Fn::Join": [",", ["a", "b"]]},
        "L": {"Fn::Select": [1, {"Fn::Split": ["/", "a/b/c"]}]},
    }


def test_given_intrinsics_when_resolved_then_parameters_pseudo_params_and_resources_are_substituted(
    template: Template,
) -> None:
    names = _Names()
    node = {
        "a": {"Fn::Sub": "${AWS::Region}/${AWS::AccountId}/${PauseSeconds}/${LeadTable}/${LeadTable.Arn}/${!Literal}"},
        "b": {"Fn::Select": [3, {"Fn::Split": ["/", "arn:x/table/T/stream/2026"]}]},
        "c": {"Fn::If": ["HasAlarmEmail", "yes", {"Ref": "AWS::NoValue"}]},
        "d": [{"Ref": "AWS::NoValue"}, {"Fn::Join": ["-", [{"Ref": "AWS::StackName"}, "x"]]}],
        "e": {"Fn::Sub": ["${X}!", {"X": {"Ref": "ApiBudgetPercent"}}]},
    }
    assert template.resolve(node, names) == {
        "a": "us-east-1/123456789012/300/LeadTable-name/arn:test:LeadTable:Arn/${Literal}",
        "b": "stream",
        "d": ["static-x"],
        "e": "80!",
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"Nope": "1"}, "unknown template parameter"),
        ({"PauseSeconds": "abc"}, "not a number"),
        ({"PauseSeconds": "-1"}, "below MinValue"),
        ({"FormulaRefreshSeconds": "-1"}, "below MinValue"),
        ({"FormulaRefreshSeconds": "hourly"}, "not a number"),
        ({"LogRetentionDays": "2"}, "is not one of"),
        ({"CustomObjects": "Project"}, "CustomObjects"),
    ],
)
def test_given_bad_parameters_when_the_template_is_read_then_a_clear_error_names_them(
    overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(TemplateError, match=message):
        Template.from_file(
            TEMPLATE,
            region="us-east-1",
            account_id="123456789012",
            stack_name="static",
            parameter_overrides={
                "SalesforceSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:x",
                **overrides,
            },
        )


def test_given_no_secret_parameter_when_the_template_is_read_then_the_missing_parameter_is_named() -> None:
    with pytest.raises(TemplateError, match="SalesforceSecretArn has no default"):
        Template.from_file(TEMPLATE, region="us-east-1", account_id="123456789012", stack_name="static")


def test_given_globals_when_merged_then_function_values_win_and_maps_merge() -> None:
    merged = merge_function_globals(
        {"Timeout": 60, "Environment": {"Variables": {"A": "1", "B": "2"}}, "Layers": ["L1"]},
        {"Timeout": 900, "Environment": {"Variables": {"B": "3", "C": "4"}}, "Layers": ["L2"]},
    )
    assert merged == {
        "Timeout": 900,
        "Environment": {"Variables": {"A": "1", "B": "3", "C": "4"}},
        "Layers": ["L1", "L2"],
    }
