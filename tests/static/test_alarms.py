"""Alarms of template.yaml: each watches a metric that really exists and each one reaches a person.

* ``sfsync`` metrics: the name is in the engine's catalogue (``sfsync.core.observability.METRICS``) and the
  dimensions an alarm uses (classic ``Dimensions``, or ``WHERE``/``GROUP BY`` of a Metrics Insights
  query) are among the catalogue's for that metric;
* ``AWS/*`` metrics: a known metric name, and the dimension value is a reference to a resource of
  the template of the right type;
* every alarm notifies the alarm topic on ALARM and on OK, and the topic's key lets CloudWatch use it
  (the AWS-managed ``alias/aws/sns`` cannot: its key policy does not admit cloudwatch.amazonaws.com).
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import pytest
from sfsync.core.observability import METRICS, NAMESPACE
from sfsync_local.cfn import Template, load_template

pytestmark = pytest.mark.static

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
REGION, ACCOUNT, STACK = "us-east-1", "123456789012", "static"

#: AWS namespaces alarms may use: metric names, and dimension -> the template resource type it names.
AWS_METRICS: dict[str, tuple[set[str], dict[str, str]]] = {
    "AWS/Lambda": ({"Errors", "Invocations", "Throttles", "Duration"}, {"FunctionName": "AWS::Serverless::Function"}),
    "AWS/States": (
        {"ExecutionsFailed", "ExecutionsAborted", "ExecutionsTimedOut", "ExecutionsStarted", "ExecutionsSucceeded"},
        {"StateMachineArn": "AWS::Serverless::StateMachine"},
    ),
    "AWS/SQS": (
        {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"},
        {"QueueName": "AWS::SQS::Queue"},
    ),
}

_INSIGHTS = re.compile(
    r"^SELECT\s+(?P<stat>MAX|MIN|SUM|AVG|COUNT)\((?P<metric>\w+)\)\s+FROM\s+(?P<source>\"?[\w/]+\"?|SCHEMA\([^)]*\))"
    r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+GROUP BY\s+(?P<group>[\w\s,\"]+?))?"
    r"(?:\s+ORDER BY\s+.+?)?(?:\s+LIMIT\s+\d+)?\s*$",
    re.IGNORECASE,
)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return load_template(TEMPLATE)


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.from_file(
        TEMPLATE,
        region=REGION,
        account_id=ACCOUNT,
        stack_name=STACK,
        parameter_overrides={"SalesforceSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:sf-AbCdEf"},
    )


class _Names:
    """Physical names for the resolver: the logical id (``Ref``), ``<id>.<attribute>`` (``GetAtt``)."""

    def ref(self, logical_id: str) -> str:
        return logical_id

    def get_att(self, logical_id: str, attribute: str) -> str:
        return f"{logical_id}.{attribute}"


def _alarms(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in doc["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"}


def insights_query(expression: str) -> tuple[str, str, set[str]]:
    """(namespace, metric, dimensions used) of a Metrics Insights query; AssertionError if unreadable."""
    match = _INSIGHTS.match(expression.strip())
    assert match, f"not a Metrics Insights query this check can read: {expression!r}"
    source = match["source"]
    dimensions: set[str] = set()
    if source.upper().startswith("SCHEMA("):
        namespace, *schema = [part.strip().strip('"') for part in source[7:-1].split(",")]
        dimensions |= set(schema)
    else:
        namespace = source.strip('"')
    if match["where"]:
        dimensions |= {m.strip('"') for m in re.findall(r"(\"?\w+\"?)\s*(?:=|!=|<>|LIKE|IN)\s*", match["where"])}
    if match["group"]:
        dimensions |= {part.strip().strip('"') for part in match["group"].split(",")}
    return namespace, match["metric"], dimensions


def check_engine_metric(metric: str, dimensions: set[str], where: str) -> None:
    assert metric in METRICS, f"{where}: {metric} is not a metric of sfsync.core.observability.METRICS"
    allowed = set(METRICS[metric].dimensions)
    assert dimensions <= allowed, f"{where}: {metric} has dimensions {sorted(allowed)}, not {sorted(dimensions)}"


def watched(alarm_id: str, alarm: dict[str, Any], doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(namespace, metric) of everything the alarm watches, each checked against the catalogue/template."""
    found: list[tuple[str, str]] = []
    if "Namespace" in alarm:
        namespace, metric = alarm["Namespace"], alarm["MetricName"]
        dimensions = alarm.get("Dimensions", [])
        if namespace == NAMESPACE:
            check_engine_metric(metric, {d["Name"] for d in dimensions}, alarm_id)
        else:
            assert namespace in AWS_METRICS, f"{alarm_id}: namespace {namespace} is not checked here"
            names, dimension_types = AWS_METRICS[namespace]
            assert metric in names, f"{alarm_id}: {namespace} {metric}"
            assert dimensions, f"{alarm_id}: an {namespace} alarm without a dimension watches the whole account"
            for dimension in dimensions:
                value = dimension["Value"]
                target = value.get("Ref") or (value.get("Fn::GetAtt") or [None])[0]
                expected_type = dimension_types.get(dimension["Name"])
                assert expected_type, f"{alarm_id}: dimension {dimension['Name']}"
                assert target in doc["Resources"], f"{alarm_id}: {dimension['Name']} does not name a resource"
                assert doc["Resources"][target]["Type"] == expected_type, f"{alarm_id}: {target}"
        found.append((namespace, metric))
    for query in alarm.get("Metrics", []):
        assert "Expression" in query, f"{alarm_id}: only Metrics Insights queries are checked here"
        namespace, metric, dimensions = insights_query(query["Expression"])
        assert namespace == NAMESPACE, f"{alarm_id}: a query over {namespace}"
        check_engine_metric(metric, dimensions, alarm_id)
        found.append((namespace, metric))
    assert found, f"{alarm_id} watches nothing"
    return found


# ---------------------------------------------------------------------- every alarm watches a real metric
def test_given_every_alarm_then_it_watches_a_metric_that_exists_with_its_real_dimensions(
    doc: dict[str, Any],
) -> None:
    for alarm_id, alarm in _alarms(doc).items():
        watched(alarm_id, alarm, doc)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("SELECT MAX(FreshnesSeconds) FROM sfsync", "not a metric"),
        ("SELECT MAX(FreshnessSeconds) FROM sfsync WHERE cycle_id = 'x'", "dimensions"),
        ("SELECT SUM(ConfigurationError) FROM sfsync GROUP BY object", "dimensions"),
        ("SELECT MAX(FreshnessSeconds) FROM SCHEMA(sfsync, object, function)", "dimensions"),
    ],
)
def test_given_a_wrong_alarm_query_when_checked_then_it_is_reported(
    doc: dict[str, Any], expression: str, message: str
) -> None:
    alarm = {"Metrics": [{"Id": "q", "Expression": expression, "Period": 300, "ReturnData": True}]}
    with pytest.raises(AssertionError, match=message):
        watched("Probe", alarm, doc)


def test_given_a_classic_alarm_on_a_foreign_resource_when_checked_then_it_is_reported(doc: dict[str, Any]) -> None:
    alarm = {
        "Namespace": "AWS/Lambda",
        "MetricName": "Errors",
        "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": "LeadTable"}}],
    }
    with pytest.raises(AssertionError, match="LeadTable"):
        watched("Probe", alarm, doc)


def test_given_the_metrics_the_engine_reports_failures_with_then_each_has_an_alarm(doc: dict[str, Any]) -> None:
    covered = {pair for alarm_id, alarm in _alarms(doc).items() for pair in watched(alarm_id, alarm, doc)}
    required = {
        ("AWS/States", "ExecutionsFailed"),
        ("AWS/States", "ExecutionsAborted"),
        ("AWS/States", "ExecutionsTimedOut"),
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Invocations"),  # the dispatcher stopped running
        (NAMESPACE, "CycleFailed"),
        (NAMESPACE, "NeedsAttention"),
        (NAMESPACE, "FreshnessSeconds"),
        (NAMESPACE, "LocalEditsOverdue"),
        (NAMESPACE, "ConfigurationError"),
        (NAMESPACE, "ApiUsagePercent"),
    }
    assert sorted(required - covered) == []
    # WatermarkLagSeconds is emitted by cycles only: idle objects have no cycle, so it cannot be alarmed.
    assert (NAMESPACE, "WatermarkLagSeconds") not in covered


def test_given_every_queue_then_an_alarm_watches_its_visible_messages(doc: dict[str, Any]) -> None:
    """A dead-letter or failure queue alarms on any visible message; a queue a function polls (the change
    events) on the age of its oldest message (messages there are normal, waiting ones are not)."""
    queues = {k for k, v in doc["Resources"].items() if v["Type"] == "AWS::SQS::Queue"}
    polled = {
        m["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]
        for m in doc["Resources"].values()
        if m["Type"] == "AWS::Lambda::EventSourceMapping"
        and m["Properties"]["EventSourceArn"]["Fn::GetAtt"][0] in queues
    }
    assert polled == {"ChangeEventQueue"}

    def watched(metric: str) -> set[str]:
        return {
            dimension["Value"]["Fn::GetAtt"][0]
            for alarm in _alarms(doc).values()
            if alarm.get("Namespace") == "AWS/SQS" and alarm["MetricName"] == metric
            for dimension in alarm["Dimensions"]
        }

    assert watched("ApproximateNumberOfMessagesVisible") == queues - polled
    assert watched("ApproximateAgeOfOldestMessage") == polled


def test_given_a_quiet_org_then_no_engine_metric_alarm_fires_and_a_stopped_dispatcher_does(
    doc: dict[str, Any],
) -> None:
    """Engine metrics have no datapoint when nothing happens: missing data must not breach. That the
    dispatcher runs at all is watched on AWS/Lambda Invocations, where missing data does breach."""
    alarms = _alarms(doc)
    for alarm_id, alarm in alarms.items():
        if "Metrics" in alarm:
            assert alarm["TreatMissingData"] == "notBreaching", alarm_id
    freshness = [a for a in alarms.values() if "FreshnessSeconds" in json.dumps(a.get("Metrics", []))]
    assert len(freshness) == 1
    assert freshness[0]["Threshold"] == {"Ref": "LagAlarmSeconds"}
    assert freshness[0]["ComparisonOperator"] == "GreaterThanThreshold"
    not_running = [
        a
        for a in alarms.values()
        if a.get("Namespace") == "AWS/Lambda"
        and a["MetricName"] == "Invocations"
        and a["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "DispatcherFunction"}}]
    ]
    assert len(not_running) == 1
    alarm = not_running[0]
    assert alarm["ComparisonOperator"] == "LessThanThreshold"
    assert alarm["Threshold"] == 1
    assert alarm["Statistic"] == "Sum"
    assert alarm["TreatMissingData"] == "breaching"
    assert 600 <= alarm["Period"] * alarm["EvaluationPeriods"] <= 900  # ~10-15 minutes without a tick


def test_given_the_dashboard_then_its_queries_and_metrics_exist(doc: dict[str, Any], template: Template) -> None:
    body = doc["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    widgets = json.loads(template.resolve(doc["Resources"]["Dashboard"]["Properties"]["DashboardBody"], _Names()))[
        "widgets"
    ]
    expressions = [
        entry["expression"]
        for widget in widgets
        for row in widget["properties"]["metrics"]
        for entry in row
        if isinstance(entry, dict) and "expression" in entry
    ]
    metrics = set()
    for expression in expressions:
        namespace, metric, dimensions = insights_query(expression)
        assert namespace == NAMESPACE
        check_engine_metric(metric, dimensions, f"dashboard: {expression}")
        metrics.add(metric)
    assert {"FreshnessSeconds", "NeedsAttention", "LocalEditsPending", "LocalEditsOverdue"} <= metrics
    assert "WatermarkLagSeconds" not in metrics
    for reference in re.findall(r"\$\{([A-Za-z0-9]+)(?:\.\w+)?\}", body):
        assert reference in doc["Resources"] or reference in doc["Parameters"], reference


# ---------------------------------------------------------------------- every alarm reaches a person
def test_given_every_alarm_then_it_notifies_the_topic_on_alarm_and_on_ok(doc: dict[str, Any]) -> None:
    assert doc["Resources"]["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    for alarm_id, alarm in _alarms(doc).items():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], alarm_id
        assert alarm["OKActions"] == [{"Ref": "AlarmTopic"}], alarm_id
        assert alarm.get("ActionsEnabled", True) is True, alarm_id


def test_given_the_alarm_topic_then_its_key_policy_lets_the_stacks_alarms_use_the_key(
    doc: dict[str, Any], template: Template
) -> None:
    key_ref = doc["Resources"]["AlarmTopic"]["Properties"]["KmsMasterKeyId"]
    assert isinstance(key_ref, dict) and set(key_ref) == {"Ref"}, (
        f"the alarm topic's key {key_ref!r} must be a key of the template: CloudWatch cannot use alias/aws/sns"
    )
    key = doc["Resources"][key_ref["Ref"]]
    assert key["Type"] == "AWS::KMS::Key"

    policy = template.resolve(key["Properties"]["KeyPolicy"], _Names())
    grants = [
        s
        for s in policy["Statement"]
        if s["Effect"] == "Allow" and s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert len(grants) == 1, policy
    grant = grants[0]
    actions = set(grant["Action"]) if isinstance(grant["Action"], list) else {grant["Action"]}
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= actions
    assert actions <= {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert grant["Condition"]["StringEquals"]["aws:SourceAccount"] == ACCOUNT
    source_arn = grant["Condition"]["ArnLike"]["aws:SourceArn"]
    assert source_arn.startswith(f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:")
    for alarm_id, alarm in _alarms(doc).items():
        name = template.resolve(alarm["AlarmName"], _Names())
        arn = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}"
        assert fnmatch.fnmatchcase(arn, source_arn), f"{alarm_id}: {arn} is not admitted by {source_arn}"
    names = [template.resolve(alarm["AlarmName"], _Names()) for alarm in _alarms(doc).values()]
    assert len(set(names)) == len(names)
    # The account keeps administering the key (a key policy without it locks everyone out).
    admin = [s for s in policy["Statement"] if s.get("Principal") == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}]
    assert admin and admin[0]["Action"] == "kms:*"
    assert key["Properties"]["EnableKeyRotation"] is True
