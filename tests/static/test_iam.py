"""The IAM the deployed stack really gets: template.yaml translated by the SAM translator, every role walked.

SAM turns policy templates, event sources, dead-letter queues and destinations into roles; what it
adds on its own (a managed policy for a DynamoDB event source, say) is only visible after the
translation. The translation runs in ``.venv-sam`` (``tests/static/sam_translate.py``: the
translator's pydantic pin conflicts with the engine's).

Each function's role must reach exactly its own tables, streams, queues, secret (and the optional
key of the secret) and state machine, with the actions listed in ``ACTIONS``; ``"*"`` is allowed
only for the state machine's log-delivery actions (and X-Ray's), which accept nothing else; managed
policies only from ``MANAGED_ALLOW_LIST``.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.static

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
TRANSLATE = Path(__file__).with_name("sam_translate.py")
PARAMETERS = {"SalesforceSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:sf-AbCdEf"}

FAMILIES = ["Lead", "Contact", "Account", "User", "Opportunity", "Campaign", "CampaignMember", "Activity", "Custom"]
TWO_WAY = ["Lead", "Contact", "Campaign", "CampaignMember"]

#: Managed policies SAM attaches by itself and that are accepted: CloudWatch Logs for every function
#: (logs:CreateLogGroup/CreateLogStream/PutLogEvents) and X-Ray for ``Tracing``.
MANAGED_ALLOW_LIST = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}

#: Actions that accept only Resource "*": the state machine's log delivery (Logging) and X-Ray.
STAR_ACTIONS = {
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
}

#: What a role may do on each kind of thing it reaches.
ACTIONS: dict[str, set[str]] = {
    "table": {
        "dynamodb:GetItem",
        "dynamodb:DeleteItem",
        "dynamodb:PutItem",
        "dynamodb:Scan",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:BatchGetItem",
        "dynamodb:DescribeTable",
        "dynamodb:ConditionCheckItem",
    },
    "stream": {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"},
    "queue": {"sqs:SendMessage", "sqs:SendMessage*"},
    "function": {"lambda:InvokeFunction"},
    "statemachine": {"states:StartExecution"},
    "execution": {"states:DescribeExecution"},
    "secret": {"secretsmanager:GetSecretValue"},
    "key": {"kms:Decrypt"},
}

SECRET = {"secret:SalesforceSecretArn", "key:SalesforceSecretKmsKeyArn"}
ENGINE_TABLES = {"table:StateTable", "table:ErrorsTable"}
RECORD_TABLES = {f"table:{family}Table" for family in FAMILIES}

#: Role -> everything it may reach (kind:logical id or parameter). Nothing more, nothing less.
EXPECTED_REACH: dict[str, set[str]] = {
    "DispatcherFunctionRole": SECRET
    | {
        "table:StateTable",  # no errors table: the dispatcher never writes record errors
        "function:ObjectSyncFunction",
        "statemachine:FullSyncStateMachine",
        "execution:FullSyncStateMachine",  # copy documents reconciled with their execution
        "queue:DispatcherDeadLetterQueue",  # the function's own dead-letter queue
    },
    "ObjectSyncFunctionRole": SECRET | ENGINE_TABLES | RECORD_TABLES | {"queue:ObjectSyncFailureQueue"},
    "FullSyncFunctionRole": SECRET | ENGINE_TABLES | RECORD_TABLES | {"statemachine:FullSyncStateMachine"},
    "WriteBackFunctionRole": SECRET
    | ENGINE_TABLES
    | {f"table:{family}Table" for family in TWO_WAY}
    | {f"stream:{family}Table" for family in TWO_WAY}
    | {"queue:WriteBackFailureQueue"},
    "FullSyncStateMachineRole": {"function:FullSyncFunction", "*"},
    # change events (only with EventRelayBusName): its queue, the records, and the cycle a loss starts
    "ChangeEventFunctionRole": SECRET
    | ENGINE_TABLES
    | RECORD_TABLES
    | {"queue:ChangeEventQueue", "function:ObjectSyncFunction"},
}

#: Targets whose actions differ from their kind's: the queue a function polls (SQSPollerPolicy).
TARGET_ACTIONS: dict[str, set[str]] = {
    "queue:ChangeEventQueue": {
        "sqs:ChangeMessageVisibility",
        "sqs:ChangeMessageVisibilityBatch",
        "sqs:DeleteMessage",
        "sqs:DeleteMessageBatch",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
    },
}

_REFERENCE = re.compile(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z]+)?\}")


def translate_template(template: Path = TEMPLATE) -> dict[str, Any]:
    assert SAM_PYTHON.exists(), f"{SAM_PYTHON} is missing: run `make sam-venv` (the SAM translator lives there)"
    result = subprocess.run(
        [str(SAM_PYTHON), str(TRANSLATE), str(template), *(f"{k}={v}" for k, v in PARAMETERS.items())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "AWS_DEFAULT_REGION": "us-east-1"},
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    translated: dict[str, Any] = json.loads(result.stdout)
    return translated


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    return translate_template()


# ---------------------------------------------------------------------- walking the translated roles
def render(node: Any) -> str:
    """An ARN expression as text, references kept as ``${LogicalId}`` / ``${LogicalId.Attribute}``."""
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and len(node) == 1:
        ((key, arg),) = node.items()
        if key == "Ref":
            return "${" + str(arg) + "}"
        if key == "Fn::GetAtt":
            logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
            return "${" + f"{logical_id}.{attribute}" + "}"
        if key == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            return re.sub(
                r"\$\{([^}]+)\}",
                lambda m: render(variables[m.group(1)]) if m.group(1) in variables else m.group(0),
                text,
            )
        if key == "Fn::Select":  # a part of a split reference: keep the reference it came from
            return render(arg[1])
        if key == "Fn::Split":
            return render(arg[1])
        if key == "Fn::Join":
            return str(arg[0]).join(render(part) for part in arg[1])
    raise AssertionError(f"cannot read the ARN expression {node!r}")


def _branches(node: Any) -> Iterator[Any]:
    """A policy or statement list item, with both branches of an ``Fn::If`` (``AWS::NoValue`` dropped)."""
    if isinstance(node, dict) and set(node) == {"Fn::If"}:
        for branch in node["Fn::If"][1:]:
            yield from _branches(branch)
    elif node != {"Ref": "AWS::NoValue"}:
        yield node


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(role: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for policy in role["Properties"].get("Policies", []):
        for document in _branches(policy):
            for statement in _as_list(document["PolicyDocument"]["Statement"]):
                yield from _branches(statement)


def _named_resources(translated: dict[str, Any]) -> dict[str, str]:
    """Names built from the stack name (``${AWS::StackName}-full-sync``) -> the logical id carrying them."""
    named = {}
    for logical_id, resource in translated["Resources"].items():
        properties = resource.get("Properties") or {}
        name = properties.get("StateMachineName", properties.get("Name"))
        if name is not None and "AWS::StackName" in json.dumps(name):
            named[render(name)] = logical_id
    return named


def reach_of(statement: dict[str, Any], resource: Any, translated: dict[str, Any]) -> str:
    """``kind:target`` for one resource of a statement (``*`` for a star)."""
    text = render(resource)
    if text == "*":
        return "*"
    for name, logical_id in _named_resources(translated).items():
        text = text.replace(name, "${" + logical_id + "}")
    targets = {m.group(1) for m in _REFERENCE.finditer(text)}
    assert len(targets) == 1, f"{text}: a statement resource must name exactly one resource of the stack"
    (target,) = targets
    parameters = translated.get("Parameters", {})
    if target == "SalesforceSecretArn":
        return f"secret:{target}"
    if target == "SalesforceSecretKmsKeyArn":
        condition = statement.get("Condition", {}).get("StringEquals", {})
        assert render(condition.get("kms:ViaService", "")) == "secretsmanager.${AWS::Region}.amazonaws.com", (
            f"kms:Decrypt on the secret's key must be limited to Secrets Manager: {statement}"
        )
        return f"key:{target}"
    assert target not in parameters, f"{text}: reaches a resource given as parameter {target}"
    resource_type = translated["Resources"][target]["Type"]
    kind = {
        "AWS::DynamoDB::Table": "stream" if "/stream/" in text else "table",
        "AWS::SQS::Queue": "queue",
        "AWS::Lambda::Function": "function",
        "AWS::StepFunctions::StateMachine": "execution" if ":execution:" in text else "statemachine",
    }.get(resource_type)
    assert kind is not None, f"{text}: a role reaching a {resource_type} is not expected"
    return f"{kind}:{target}"


def reach(role: dict[str, Any], translated: dict[str, Any]) -> dict[str, set[str]]:
    """Everything a role reaches -> the actions it may do there."""
    found: dict[str, set[str]] = {}
    for statement in role_statements(role):
        assert statement["Effect"] == "Allow", statement
        assert "NotAction" not in statement and "NotResource" not in statement, statement
        for resource in _as_list(statement["Resource"]):
            found.setdefault(reach_of(statement, resource, translated), set()).update(_as_list(statement["Action"]))
    return found


def _roles(translated: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in translated["Resources"].items() if v["Type"] == "AWS::IAM::Role"}


# ---------------------------------------------------------------------- the tests
def test_given_the_translated_template_then_the_roles_are_the_functions_and_the_state_machine(
    translated: dict[str, Any],
) -> None:
    assert sorted(_roles(translated)) == sorted(EXPECTED_REACH)


def test_given_every_role_then_its_managed_policies_are_on_the_allow_list(translated: dict[str, Any]) -> None:
    for logical_id, role in _roles(translated).items():
        managed = {render(arn) for arn in role["Properties"].get("ManagedPolicyArns", [])}
        assert managed <= MANAGED_ALLOW_LIST, f"{logical_id}: {sorted(managed - MANAGED_ALLOW_LIST)}"


def test_given_every_role_then_a_star_resource_only_carries_log_delivery_and_xray_actions(
    translated: dict[str, Any],
) -> None:
    for logical_id, role in _roles(translated).items():
        for statement in role_statements(role):
            if "*" in [render(r) for r in _as_list(statement["Resource"])]:
                extra = set(_as_list(statement["Action"])) - STAR_ACTIONS
                assert not extra, f"{logical_id}: {sorted(extra)} on Resource '*'"


@pytest.mark.parametrize("role_id", sorted(EXPECTED_REACH))
def test_given_a_role_then_it_reaches_only_its_own_resources_with_the_actions_of_their_kind(
    translated: dict[str, Any], role_id: str
) -> None:
    found = reach(_roles(translated)[role_id], translated)
    assert set(found) == EXPECTED_REACH[role_id], (
        f"{role_id}: unexpected {sorted(set(found) - EXPECTED_REACH[role_id])}, "
        f"missing {sorted(EXPECTED_REACH[role_id] - set(found))}"
    )
    for target, actions in found.items():
        allowed = STAR_ACTIONS if target == "*" else TARGET_ACTIONS.get(target, ACTIONS[target.split(":", 1)[0]])
        assert actions <= allowed, f"{role_id} on {target}: {sorted(actions - allowed)}"


def test_given_the_secret_key_parameter_then_the_key_grant_exists_only_under_its_condition(
    translated: dict[str, Any],
) -> None:
    assert translated["Conditions"]["HasSecretKmsKey"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "SalesforceSecretKmsKeyArn"}, ""]}]
    }
    for role_id in sorted(set(EXPECTED_REACH) - {"FullSyncStateMachineRole"}):
        guarded = [
            policy
            for policy in _roles(translated)[role_id]["Properties"]["Policies"]
            if "SalesforceSecretKmsKeyArn" in json.dumps(policy)
        ]
        assert len(guarded) == 1, role_id
        assert guarded[0]["Fn::If"][0] == "HasSecretKmsKey"
        assert guarded[0]["Fn::If"][2] == {"Ref": "AWS::NoValue"}


def test_given_the_translated_template_then_every_reference_names_a_resource_or_parameter(
    translated: dict[str, Any],
) -> None:
    """cfn-lint (even through `sam validate --lint`) accepts a GetAtt of a misspelt SAM-generated rule."""
    declared = set(translated["Resources"]) | set(translated.get("Parameters", {}))

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if set(node) == {"Ref"} and isinstance(node["Ref"], str):
                yield node["Ref"]
            elif set(node) == {"Fn::GetAtt"}:
                arg = node["Fn::GetAtt"]
                yield (arg.split(".", 1) if isinstance(arg, str) else arg)[0]
            elif set(node) == {"Fn::Sub"}:
                arg = node["Fn::Sub"]
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                for name in re.findall(r"\$\{([^}!][^}]*)\}", text):
                    if name not in variables:
                        yield name.split(".", 1)[0]
                yield from walk(variables)
            else:
                for value in node.values():
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    names = {name for name in walk(translated["Resources"]) if not name.startswith("AWS::")}
    names |= {name for name in walk(translated.get("Outputs", {})) if not name.startswith("AWS::")}
    assert sorted(names - declared) == []


def test_given_a_dynamodb_event_on_a_function_when_translated_then_the_walk_reports_the_account_wide_policy(
    tmp_path: Path,
) -> None:
    """The check can fail: a SAM DynamoDB event brings AWSLambdaDynamoDBExecutionRole back."""
    text = TEMPLATE.read_text(encoding="utf-8").replace(
        "      Events:\n        Sweep:\n",
        "      Events:\n"
        "        LeadStream:\n"
        "          Type: DynamoDB\n"
        "          Properties:\n"
        "            Stream: !GetAtt LeadTable.StreamArn\n"
        "            StartingPosition: LATEST\n"
        "        Sweep:\n",
        1,
    )
    assert "LeadStream:" in text
    (tmp_path / "template.yaml").write_text(text, encoding="utf-8")
    role = _roles(translate_template(tmp_path / "template.yaml"))["WriteBackFunctionRole"]
    managed = {render(arn) for arn in role["Properties"]["ManagedPolicyArns"]}
    assert "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole" in managed - MANAGED_ALLOW_LIST


def test_given_an_extra_table_grant_when_walked_then_it_is_reported(translated: dict[str, Any]) -> None:
    role = json.loads(json.dumps(_roles(translated)["DispatcherFunctionRole"]))
    role["Properties"]["Policies"].append(
        {
            "PolicyName": "extra",
            "PolicyDocument": {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["dynamodb:PutItem"],
                        "Resource": {
                            "Fn::Sub": [
                                "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${t}",
                                {"t": {"Ref": "ErrorsTable"}},
                            ]
                        },
                    }
                ]
            },
        }
    )
    assert set(reach(role, translated)) - EXPECTED_REACH["DispatcherFunctionRole"] == {"table:ErrorsTable"}
