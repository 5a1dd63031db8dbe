"""The template-driven local AWS stack: template.yaml deployed into moto, the real handlers run in-process.

Nothing here repeats the template: table keys and indexes, streams, TTL, queues, function settings and
environment (SAM ``Globals`` merged), stream triggers, schedules and the state machine definition (with
its ``DefinitionSubstitutions``) are all read from ``template.yaml`` and resolved with
:mod:`sfsync_local.cfn`. Physical names are the template's own name properties where it sets them
(the state machine: ``<stack name>-full-sync``), else ``<stack name>-<logical id>``.

Usage::

    with LocalStack.deploy(salesforce_secret={...}) as stack:
        stack.fire_schedule()                      # dispatcher + the object syncs it fans out
        stack.fire_schedule("WriteBackFunction")   # the write-back's sweep schedule
        stack.invoke("WriteBackFunction", event)   # any function, synchronously
        stack.run_state_machine({"objects": ["Account"], "requested_by": "cli"})

Execution model (see :mod:`sfsync_local.lambda_runtime`): synchronous invokes, Step Functions Task
states and DynamoDB stream triggers run the handler at once, in-process. Asynchronous invokes
(``InvocationType="Event"``, the dispatcher's fan-out) are queued and run by :meth:`LocalStack.drain`
(:meth:`LocalStack.fire_schedule` drains by default). Step Functions executions run on moto's worker
thread; with ``fast_waits`` their Wait states and Retry back-offs take no time (the requested
seconds are recorded in :attr:`LocalStack.waits`).  moto's DynamoDB gets two speed-ups that leave its
answers unchanged (:class:`_MotoDynamoDBSpeedups`: item size measured once, batch bodies without
binary values parsed with :func:`json.loads`).
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
import types
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Self
from unittest import mock

import boto3
from moto import mock_aws

from sfsync_local.cfn import Template, TemplateError
from sfsync_local.event_filter import UnsupportedFilter, parse_filters
from sfsync_local.lambda_runtime import (
    FunctionSpec,
    InProcessLambdaRuntime,
    Invocation,
    LocalInvokeError,
    QueueTrigger,
    StreamTrigger,
)

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_REGION",
    "REPO_ROOT",
    "LocalStack",
    "LocalStackError",
    "ScheduleSpec",
    "moto_dynamodb_speedups",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account
DEFAULT_STACK_NAME = "sfsync-local"
#: the longest pause between two polls of a running state machine execution (they start at 20 ms)
MAX_EXECUTION_POLL_SECONDS = 0.2

# Used only when the caller gives neither salesforce_secret nor a SalesforceSecretArn parameter: the stack
# deploys, and functions that talk to Salesforce fail at authentication until put_salesforce_secret().
PLACEHOLDER_SECRET: dict[str, str] = {
    "auth_flow": "client_credentials",
    "token_url": "https://127.0.0.1:1/services/oauth2/token",
    "client_id": "local-placeholder",
    "client_secret": "local-placeholder",
    "api_version": "59.0",
}

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
_SUPPORTED_TYPES = {
    "AWS::DynamoDB::Table",
    "AWS::SQS::Queue",
    "AWS::SQS::QueuePolicy",
    "AWS::KMS::Key",
    "AWS::SNS::Topic",
    "AWS::Lambda::EventSourceMapping",
    "AWS::Logs::LogGroup",
    "AWS::Serverless::LayerVersion",
    "AWS::Serverless::Function",
    "AWS::Serverless::StateMachine",
    "AWS::Events::Rule",
}


# The property that names a resource, where the template may set it.
_NAME_PROPERTY = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Serverless::StateMachine": "Name",
}


class LocalStackError(RuntimeError):
    """The local stack cannot be deployed or used as asked."""


@dataclass(frozen=True)
class ScheduleSpec:
    """A ``Schedule`` event of a function (moto never fires schedules: :meth:`LocalStack.fire_schedule` does)."""

    function_logical_id: str
    event_name: str
    expression: str
    rule_name: str
    rule_arn: str
    input: str | None = None  # the event's ``Input``: delivered instead of the scheduled-event payload


class _FastWaits:
    """Wait states and Retry back-offs of moto's Step Functions take no time while any stack asks for it.

    One patch of the parser's clock for all active stacks (they may nest and close in any order); each
    requested wait is recorded in every attached list.
    """

    _lists: ClassVar[list[list[float]]] = []
    _patches: ClassVar[list[Any]] = []
    _guard = threading.Lock()

    @classmethod
    def _record(cls, seconds: float) -> None:
        for waits in cls._lists:
            waits.append(float(seconds))

    @classmethod
    def attach(cls, waits: list[float]) -> None:
        from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function import wait_function

        with cls._guard:
            cls._lists.append(waits)
            if len(cls._lists) > 1:
                return

            def instant_wait(_self: Any, env: Any, wait_seconds: int) -> None:
                cls._record(wait_seconds)

            instant_time = types.SimpleNamespace(sleep=cls._record, time=time.time)
            for patcher in (
                mock.patch.object(wait_function.WaitFunction, "_wait_interval", instant_wait),
                mock.patch.object(retrier_decl, "time", instant_time),
            ):
                patcher.start()
                cls._patches.append(patcher)

    @classmethod
    def detach(cls, waits: list[float]) -> None:
        with cls._guard:
            cls._lists[:] = [w for w in cls._lists if w is not waits]
            if not cls._lists:
                while cls._patches:
                    cls._patches.pop().stop()


class _MotoDynamoDBSpeedups:
    """Three costs of moto's DynamoDB that grow with item width, removed without changing what it answers.

    * ``Item.__init__`` adds attributes one by one to a ``LimitedSizeDict`` that re-measures the whole
      item on every addition (quadratic in the attribute count: most of moto's time for a 40-field
      Salesforce row).  Here the item is measured once and refused with the same
      ``ItemSizeTooLarge`` above the same limit (sizes only add up, so "too large after some
      addition" is "too large in total").
    * ``BatchWriteItem``/``BatchGetItem`` request bodies are parsed by walking the service model;
      for DynamoDB JSON that walk only base64-decodes binary values.  A body with no binary tag is
      the same after :func:`json.loads`, which is what is used then (any ``"B":``/``"BS":`` in the
      body, even inside a string, takes moto's own parser).
    * Responses carrying items (``GetItem``, ``BatchGetItem``, ``Query``, ``Scan``) are serialised by
      walking the service model once per attribute value (tens of µs per attribute; 80 % of a cycle's
      moto time with 10,000 pre-read items).  For the JSON protocol that walk writes the
      ``{"S": ...}`` maps out as they are, binary values aside: the items are taken out, moto
      serialises the rest of the response (status, headers, capacity, keys), and the items are put
      back into its JSON document with :func:`json.dumps`.  Items holding binary values (bytes, which
      :func:`json.dumps` refuses) take moto's own serialiser whole.

    One patch for all active stacks (they may nest and close in any order).
    """

    _users = 0
    _patches: ClassVar[list[Any]] = []
    _guard = threading.Lock()
    _FAST_ACTIONS = frozenset({"BatchWriteItem", "BatchGetItem"})
    #: Operations whose response carries items, and the response keys that hold them.
    _ITEM_KEYS: ClassVar[dict[str, tuple[str, ...]]] = {
        "GetItem": ("Item",),
        "BatchGetItem": ("Responses",),
        "Query": ("Items",),
        "Scan": ("Items",),
    }

    @classmethod
    def attach(cls) -> None:
        from moto.core.responses import ActionResult
        from moto.dynamodb.exceptions import ItemSizeTooLarge
        from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
        from moto.dynamodb.models.utilities import bytesize
        from moto.dynamodb.responses import DynamoHandler, DynamoResult

        with cls._guard:
            cls._users += 1
            if cls._users > 1:
                return
            original_parse = DynamoHandler.parse_parameters
            original_execute = DynamoResult.execute_result

            def item_init(item: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
                item.hash_key = hash_key
                item.range_key = range_key
                converted = {key: DynamoType(value) for key, value in attrs.items()}
                if sum(bytesize(key) + value.size() for key, value in converted.items()) > 405000:
                    raise ItemSizeTooLarge  # moto's own limit (see LimitedSizeDict.__setitem__)
                item.attrs = LimitedSizeDict(converted)  # dict.update: no per-key re-measuring

            def parse_parameters(handler: Any, request: Any) -> None:
                body = request.data
                if (
                    isinstance(body, bytes)
                    and b'"B":' not in body
                    and b'"BS":' not in body
                    and handler._get_action() in cls._FAST_ACTIONS
                ):
                    try:
                        parsed = json.loads(body)
                    except ValueError:
                        parsed = None
                    if isinstance(parsed, dict):
                        handler.params = parsed
                        return
                original_parse(handler, request)

            def execute_result(result: Any, context: Any) -> Any:
                keys = cls._ITEM_KEYS.get(context.operation_model.name, ())
                document = result.result
                carried = {key: document[key] for key in keys if isinstance(document, dict) and key in document}
                if not carried:
                    return original_execute(result, context)
                rest = ActionResult({key: value for key, value in document.items() if key not in carried})
                status, headers, body = ActionResult.execute_result(rest, context)
                try:
                    body = json.dumps({**carried, **json.loads(body or "{}")})
                except TypeError:  # binary values (bytes): moto's serialiser base64-encodes them
                    return original_execute(result, context)
                return status, headers, body

            for owner, attribute, replacement in (
                (Item, "__init__", item_init),
                (DynamoHandler, "parse_parameters", parse_parameters),
                (DynamoResult, "execute_result", execute_result),
            ):
                patcher = mock.patch.object(owner, attribute, replacement)
                patcher.start()
                cls._patches.append(patcher)

    @classmethod
    def detach(cls) -> None:
        with cls._guard:
            cls._users -= 1
            if cls._users == 0:
                while cls._patches:
                    cls._patches.pop().stop()


@contextmanager
def moto_dynamodb_speedups() -> Iterator[None]:
    """The local stack's moto DynamoDB speed-ups (see :class:`_MotoDynamoDBSpeedups`), for measuring moto
    itself (``bench/full_sync.py --moto-ceiling``); every deployed stack has them already."""
    _MotoDynamoDBSpeedups.attach()
    try:
        yield
    finally:
        _MotoDynamoDBSpeedups.detach()


class _MotoPartnerBusNames:
    """moto reads an ``EventBusName`` of rules and targets as an ARN and keeps what follows its last
    ``/``, which breaks partner bus names (``aws.partner/salesforce.com/<org>/<channel>``, the names
    Event Relay's buses have in AWS).  While attached, a name is kept whole and an ARN is cut after
    ``:event-bus/``, as EventBridge does."""

    _attached = 0
    _original: ClassVar[Any] = None

    @classmethod
    def attach(cls) -> None:
        from moto.events.models import EventsBackend

        if cls._attached == 0:
            cls._original = EventsBackend._normalize_event_bus_arn

            def normalize(backend: Any, event_bus_arn: str | None) -> str:
                if event_bus_arn is None:
                    return "default"
                marker = ":event-bus/"
                return event_bus_arn.split(marker, 1)[1] if marker in event_bus_arn else event_bus_arn

            EventsBackend._normalize_event_bus_arn = normalize  # type: ignore[method-assign,assignment]
        cls._attached += 1

    @classmethod
    def detach(cls) -> None:
        from moto.events.models import EventsBackend

        cls._attached -= 1
        if cls._attached == 0 and cls._original is not None:
            EventsBackend._normalize_event_bus_arn = cls._original  # type: ignore[method-assign]


class _Resources:
    """Logical id -> physical name/ARN, for Ref and Fn::GetAtt (deterministic, or recorded at creation)."""

    def __init__(self, template: Template):
        self._template = template
        self.created: dict[tuple[str, str], str] = {}

    def physical_name(self, logical_id: str) -> str:
        """The resource's own name property when the template sets one, else ``<stack name>-<logical id>``."""
        resource = self._template.resources.get(logical_id) or {}
        name_property = _NAME_PROPERTY.get(str(resource.get("Type")))
        explicit = (resource.get("Properties") or {}).get(name_property) if name_property else None
        if explicit is not None:
            return str(self._template.resolve(explicit))  # parameters and pseudo parameters only
        return f"{self._template.stack_name}-{logical_id}"

    def _rule_name(self, logical_id: str) -> str | None:
        """The local name of a rule SAM generates for a ``Schedule`` event (``<function>-<event>``), else None."""
        generated = self._template.sam_generated_resources().get(logical_id)
        if generated is None:
            return None
        _, function_logical_id, event_name = generated
        return f"{self.physical_name(function_logical_id)}-{event_name}"

    def _type(self, logical_id: str) -> str:
        resource = self._template.resources.get(logical_id)
        if resource is None and self._rule_name(logical_id) is not None:
            return "AWS::Events::Rule"
        if resource is None:
            raise TemplateError(f"unknown resource {logical_id}")
        resource_type = str(resource.get("Type"))
        if resource_type not in _SUPPORTED_TYPES:
            raise TemplateError(f"{logical_id}: {resource_type} is not created by the local stack")
        if not self._template.resource_enabled(logical_id):
            raise TemplateError(f"{logical_id} is disabled by its condition")
        return resource_type

    def ref(self, logical_id: str) -> str:
        resource_type = self._type(logical_id)
        t, name = self._template, self.physical_name(logical_id)
        if resource_type in {"AWS::DynamoDB::Table", "AWS::Serverless::Function"}:
            return name
        if resource_type == "AWS::SQS::Queue":
            return f"https://sqs.{t.region}.amazonaws.com/{t.account_id}/{name}"
        if resource_type == "AWS::SNS::Topic":
            return f"arn:aws:sns:{t.region}:{t.account_id}:{name}"
        if resource_type == "AWS::Serverless::StateMachine":
            return f"arn:aws:states:{t.region}:{t.account_id}:stateMachine:{name}"
        if resource_type == "AWS::Logs::LogGroup":
            properties = self._template.resources[logical_id].get("Properties") or {}
            return str(self._template.resolve(properties.get("LogGroupName", name), self))
        if resource_type == "AWS::Events::Rule":
            return str(self._rule_name(logical_id) or name)
        return self._created(logical_id, "Ref")

    def get_att(self, logical_id: str, attribute: str) -> str:
        resource_type = self._type(logical_id)
        t, name = self._template, self.physical_name(logical_id)
        value: str | None = None
        if resource_type == "AWS::DynamoDB::Table":
            if attribute == "Arn":
                value = f"arn:aws:dynamodb:{t.region}:{t.account_id}:table/{name}"
            elif attribute == "StreamArn":
                value = self._created(logical_id, "StreamArn")
        elif resource_type == "AWS::SQS::Queue":
            value = {
                "Arn": f"arn:aws:sqs:{t.region}:{t.account_id}:{name}",
                "QueueName": name,
                "QueueUrl": self.ref(logical_id),
            }.get(attribute)
        elif resource_type == "AWS::Serverless::Function" and attribute == "Arn":
            value = f"arn:aws:lambda:{t.region}:{t.account_id}:function:{name}"
        elif resource_type == "AWS::Serverless::StateMachine":
            value = {"Arn": self.ref(logical_id), "Name": name}.get(attribute)
        elif resource_type == "AWS::Logs::LogGroup" and attribute == "Arn":
            value = f"arn:aws:logs:{t.region}:{t.account_id}:log-group:{self.ref(logical_id)}:*"
        elif resource_type == "AWS::SNS::Topic" and attribute == "TopicArn":
            value = self.ref(logical_id)
        elif resource_type == "AWS::Events::Rule" and attribute == "Arn":
            bus = self._rule_bus(logical_id)
            path = f"{bus}/{self.ref(logical_id)}" if bus != "default" else self.ref(logical_id)
            value = f"arn:aws:events:{t.region}:{t.account_id}:rule/{path}"
        elif resource_type == "AWS::KMS::Key" and attribute in {"Arn", "KeyId"}:
            value = self._created(logical_id, attribute)
        if value is None:
            raise TemplateError(f"Fn::GetAtt {logical_id}.{attribute} is not supported by the local stack")
        return value

    def _rule_bus(self, logical_id: str) -> str:
        """The event bus of a rule the template declares (``EventBusName``), ``default`` otherwise."""
        resource = self._template.resources.get(logical_id) or {}
        bus = (resource.get("Properties") or {}).get("EventBusName")
        return str(self._template.resolve(bus)) if bus is not None else "default"

    def _created(self, logical_id: str, attribute: str) -> str:
        try:
            return self.created[(logical_id, attribute)]
        except KeyError:
            raise TemplateError(f"{logical_id}.{attribute} is not known before {logical_id} is created") from None


def _zip_directory(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        files = (
            sorted(p for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
            if directory.is_dir()
            else []
        )
        for path in files:
            archive.write(path, path.relative_to(directory).as_posix())
        if not files:
            archive.writestr("EMPTY", "")
    return buffer.getvalue()


def _str_env(variables: Mapping[str, Any]) -> dict[str, str]:
    return {
        key: "true" if value is True else "false" if value is False else str(value) for key, value in variables.items()
    }


class LocalStack:
    """template.yaml deployed into moto; see the module docstring."""

    def __init__(self, template: Template, *, repo_root: Path, moto_mock: Any | None):
        self.template = template
        self.region = template.region
        self.account_id = template.account_id
        self.stack_name = template.stack_name
        self.repo_root = repo_root
        self.schedules: list[ScheduleSpec] = []
        self.waits: list[float] = []
        self._mock = moto_mock
        self._resources = _Resources(template)
        self._undo_patches: list[Callable[[], Any]] = []
        self._clients: dict[str, Any] = {}
        self._undo: list[Callable[[], Any]] = []
        self.runtime = InProcessLambdaRuntime(sqs_client_factory=lambda: self.boto3_client("sqs"))
        self._closed = False
        self.secret_arn = ""

    # ------------------------------------------------------------------ deployment
    @classmethod
    def deploy(
        cls,
        *,
        template_path: str | Path = "template.yaml",
        parameters: Mapping[str, str] | None = None,
        salesforce_secret: Mapping[str, Any] | None = None,
        fast_waits: bool = True,
        stack_name: str = DEFAULT_STACK_NAME,
        region: str = DEFAULT_REGION,
        record_invocations: bool = True,
    ) -> LocalStack:
        """Deploy ``template_path`` into moto (starting ``mock_aws``; nested inside the caller's if active).

        ``parameters`` override template parameter defaults. Unless ``parameters`` names a
        ``SalesforceSecretArn``, a Secrets Manager secret ``<stack>-salesforce`` is created holding
        ``salesforce_secret`` (or a placeholder) and passed as that parameter.  ``record_invocations``
        False keeps :attr:`invocations` empty (a long benchmark would hold every event in memory).
        """
        path = Path(template_path)
        if not path.is_absolute() and not path.exists():
            path = REPO_ROOT / path
        if not path.is_file():
            raise LocalStackError(f"template {template_path} not found")
        moto_mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        moto_mock.start()
        secret_arn: str | None = None
        try:
            overrides = dict(parameters or {})
            if "SalesforceSecretArn" not in overrides:
                secret_arn = cls._create_secret(region, f"{stack_name}-salesforce", salesforce_secret)
                overrides["SalesforceSecretArn"] = secret_arn
            elif salesforce_secret is not None:
                raise LocalStackError("give salesforce_secret or a SalesforceSecretArn parameter, not both")
            template = Template.from_file(
                path, region=region, account_id=DEFAULT_ACCOUNT_ID, stack_name=stack_name, parameter_overrides=overrides
            )
            stack = cls(template, repo_root=path.resolve().parent, moto_mock=moto_mock)
            stack.runtime.record_invocations = record_invocations
            stack.secret_arn = secret_arn or str(overrides["SalesforceSecretArn"])
            if secret_arn:
                stack._undo.append(
                    lambda: stack.boto3_client("secretsmanager").delete_secret(
                        SecretId=secret_arn, ForceDeleteWithoutRecovery=True
                    )
                )
        except BaseException:
            if secret_arn:  # inside a caller's mock_aws the backend outlives this attempt
                boto3.client("secretsmanager", region_name=region).delete_secret(
                    SecretId=secret_arn, ForceDeleteWithoutRecovery=True
                )
            moto_mock.stop()
            raise
        try:
            stack._create_all(fast_waits=fast_waits)
        except BaseException:
            stack.close()
            raise
        return stack

    @staticmethod
    def _create_secret(region: str, name: str, secret: Mapping[str, Any] | None) -> str:
        client = boto3.client("secretsmanager", region_name=region)
        payload = json.dumps(dict(secret) if secret is not None else PLACEHOLDER_SECRET)
        return str(client.create_secret(Name=name, SecretString=payload)["ARN"])

    def put_salesforce_secret(self, secret: Mapping[str, Any]) -> None:
        """Replace the Salesforce credentials the functions read (e.g. once the emulator is up)."""
        self.boto3_client("secretsmanager").put_secret_value(
            SecretId=self.secret_arn, SecretString=json.dumps(dict(secret))
        )

    def _create_all(self, *, fast_waits: bool) -> None:
        self.runtime.install()
        _MotoDynamoDBSpeedups.attach()
        self._undo_patches.append(_MotoDynamoDBSpeedups.detach)
        if fast_waits:
            self._install_fast_waits()
        t = self.template
        unsupported = sorted(
            f"{logical_id} ({resource['Type']})"
            for logical_id, resource in t.resources.items()
            if resource.get("Type") not in _SUPPORTED_TYPES
            and not str(resource.get("Type")).startswith("AWS::CloudWatch::")
            and resource.get("Type") != "AWS::SNS::Subscription"
        )
        if unsupported:
            raise LocalStackError(f"template resources the local stack cannot create: {', '.join(unsupported)}")
        for logical_id, resource in t.resources_of_type("AWS::KMS::Key").items():
            self._create_key(logical_id, t.resolve(resource.get("Properties") or {}, self._resources))
        for logical_id, resource in t.resources_of_type("AWS::DynamoDB::Table").items():
            self._create_table(logical_id, t.resolve(resource.get("Properties") or {}, self._resources))
        for logical_id, resource in t.resources_of_type("AWS::SQS::Queue").items():
            self._create_queue(logical_id, t.resolve(resource.get("Properties") or {}, self._resources))
        for logical_id, resource in t.resources_of_type("AWS::SNS::Topic").items():
            self._create_topic(logical_id, t.resolve(resource.get("Properties") or {}, self._resources))
        for logical_id, resource in t.resources_of_type("AWS::Logs::LogGroup").items():
            self._create_log_group(logical_id, t.resolve(resource.get("Properties") or {}, self._resources))
        for logical_id, resource in t.resources_of_type("AWS::Serverless::LayerVersion").items():
            self._create_layer(logical_id, t.resolve(resource.get("Properties") or {}, self._resources))
        for logical_id in t.resources_of_type("AWS::Serverless::Function"):
            self._create_function(logical_id)
        for resource in t.resources_of_type("AWS::Lambda::EventSourceMapping").values():
            self._create_stream_mapping(t.resolve(resource.get("Properties") or {}, self._resources))
        for logical_id, resource in t.resources_of_type("AWS::Events::Rule").items():
            self._create_rule(logical_id, t.resolve(resource.get("Properties") or {}, self._resources))
        # After the functions: a queue policy may name the rules of their Schedule events.
        for resource in t.resources_of_type("AWS::SQS::QueuePolicy").values():
            self._put_queue_policy(t.resolve(resource.get("Properties") or {}, self._resources))
        for logical_id, resource in t.resources_of_type("AWS::Serverless::StateMachine").items():
            self._create_state_machine(logical_id, resource.get("Properties") or {})

    def _create_rule(self, logical_id: str, properties: dict[str, Any]) -> None:
        """An ``AWS::Events::Rule`` on its bus with its SQS targets.  A partner bus
        (``aws.partner/...``, Event Relay) is associated with its partner event source as a customer
        does in AWS: the source is created first (the partner's side), then the bus named after it."""
        events = self.boto3_client("events")
        bus = str(properties.get("EventBusName") or "default")
        if bus != "default":
            _MotoPartnerBusNames.attach()
            self._undo.append(_MotoPartnerBusNames.detach)  # after the rule and the bus are deleted
            self._create_event_bus(bus)
        name = self._resources.ref(logical_id)
        request: dict[str, Any] = {"Name": name, "EventBusName": bus, "State": str(properties.get("State", "ENABLED"))}
        if "EventPattern" in properties:
            request["EventPattern"] = json.dumps(properties["EventPattern"])
        if "ScheduleExpression" in properties:
            request["ScheduleExpression"] = str(properties["ScheduleExpression"])
        rule_arn = events.put_rule(**request)["RuleArn"]
        if rule_arn != self._resources.get_att(logical_id, "Arn"):
            raise LocalStackError(f"{logical_id}: moto returned the rule ARN {rule_arn}")
        targets: list[dict[str, Any]] = []
        for target in properties.get("Targets") or []:
            if not str(target["Arn"]).startswith("arn:aws:sqs:"):
                raise LocalStackError(f"{logical_id}: only SQS rule targets are supported locally, not {target['Arn']}")
            entry: dict[str, Any] = {"Id": str(target["Id"]), "Arn": str(target["Arn"])}
            if target.get("DeadLetterConfig"):
                entry["DeadLetterConfig"] = {"Arn": str(target["DeadLetterConfig"]["Arn"])}
            targets.append(entry)
        if targets:
            events.put_targets(Rule=name, EventBusName=bus, Targets=targets)

        def delete_rule() -> None:
            client = self.boto3_client("events")
            if targets:
                client.remove_targets(Rule=name, EventBusName=bus, Ids=[t["Id"] for t in targets])
            client.delete_rule(Name=name, EventBusName=bus)

        self._undo.append(delete_rule)

    def _create_event_bus(self, bus: str) -> None:
        events = self.boto3_client("events")
        if any(b["Name"] == bus for b in events.list_event_buses()["EventBuses"]):
            return
        if bus.startswith("aws.partner/"):
            events.create_partner_event_source(Name=bus, Account=self.account_id)
            events.create_event_bus(Name=bus, EventSourceName=bus)
            self._undo.append(
                lambda: self.boto3_client("events").delete_partner_event_source(Name=bus, Account=self.account_id)
            )
        else:
            events.create_event_bus(Name=bus)
        self._undo.append(lambda: self.boto3_client("events").delete_event_bus(Name=bus))

    def put_change_events(self, envelopes: list[dict[str, Any]], *, bus: str | None = None) -> int:
        """Put Event Relay envelopes on the stack's partner bus (``EventRelayBusName``), as Event Relay does;
        returns how many EventBridge accepted.  Delivery to the queue happens inside PutEvents; the
        change-event function runs on :meth:`drain` (or the relay's pump)."""
        target = bus or str(self.template.parameters.get("EventRelayBusName") or "")
        if not target:
            raise LocalStackError("the stack has no EventRelayBusName: change events are off")
        events = self.boto3_client("events")
        accepted = 0
        for start in range(0, len(envelopes), 10):
            entries = [
                {
                    "Source": str(envelope["source"]),
                    "DetailType": str(envelope["detail-type"]),
                    "Detail": json.dumps(envelope["detail"]),
                    "EventBusName": target,
                    "Time": datetime.fromisoformat(str(envelope["time"]).replace("Z", "+00:00")),
                    "Resources": list(envelope.get("resources") or []),
                }
                for envelope in envelopes[start : start + 10]
            ]
            response = events.put_events(Entries=entries)
            accepted += len(entries) - int(response.get("FailedEntryCount", 0))
        return accepted

    def _create_key(self, logical_id: str, properties: dict[str, Any]) -> None:
        """A KMS key with the template's key policy (moto stores the policy; it does not evaluate it)."""
        kms = self.boto3_client("kms")
        request: dict[str, Any] = {"Description": str(properties.get("Description", ""))}
        if properties.get("KeyPolicy"):
            request["Policy"] = json.dumps(properties["KeyPolicy"])
        metadata = kms.create_key(**request)["KeyMetadata"]
        key_id = metadata["KeyId"]
        self._undo.append(lambda: kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7))
        if properties.get("EnableKeyRotation"):
            kms.enable_key_rotation(KeyId=key_id)
        self._resources.created[(logical_id, "Ref")] = key_id
        self._resources.created[(logical_id, "KeyId")] = key_id
        self._resources.created[(logical_id, "Arn")] = metadata["Arn"]

    def _create_topic(self, logical_id: str, properties: dict[str, Any]) -> None:
        sns = self.boto3_client("sns")
        attributes = {"KmsMasterKeyId": str(properties["KmsMasterKeyId"])} if "KmsMasterKeyId" in properties else {}
        topic_arn = sns.create_topic(Name=self._resources.physical_name(logical_id), Attributes=attributes)["TopicArn"]
        self._undo.append(lambda: sns.delete_topic(TopicArn=topic_arn))

    def _put_queue_policy(self, properties: dict[str, Any]) -> None:
        """``AWS::SQS::QueuePolicy``: the queues' ``Policy`` attribute (moto stores it; it does not evaluate it)."""
        sqs = self.boto3_client("sqs")
        for url in properties["Queues"]:
            sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(properties["PolicyDocument"])})

    def _create_log_group(self, logical_id: str, properties: dict[str, Any]) -> None:
        logs = self.boto3_client("logs")
        name = self._resources.ref(logical_id)
        logs.create_log_group(logGroupName=name)
        self._undo.append(lambda: logs.delete_log_group(logGroupName=name))
        if "RetentionInDays" in properties:
            logs.put_retention_policy(logGroupName=name, retentionInDays=int(properties["RetentionInDays"]))

    def _role(self, logical_id: str) -> str:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        role_name = f"{self._resources.physical_name(logical_id)}-role"
        role = self.boto3_client("iam").create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))
        self._undo.append(lambda: self.boto3_client("iam").delete_role(RoleName=role_name))
        return str(role["Role"]["Arn"])

    def _create_table(self, logical_id: str, properties: dict[str, Any]) -> None:
        name = self._resources.physical_name(logical_id)
        request: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": properties["AttributeDefinitions"],
            "KeySchema": properties["KeySchema"],
            "BillingMode": properties.get("BillingMode", "PROVISIONED"),
        }
        if "ProvisionedThroughput" in properties:
            request["ProvisionedThroughput"] = {k: int(v) for k, v in properties["ProvisionedThroughput"].items()}
        if properties.get("GlobalSecondaryIndexes"):
            request["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
        if properties.get("LocalSecondaryIndexes"):
            request["LocalSecondaryIndexes"] = properties["LocalSecondaryIndexes"]
        stream = properties.get("StreamSpecification")
        if stream:
            request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
        sse = properties.get("SSESpecification")
        if sse:
            request["SSESpecification"] = {"Enabled": bool(sse.get("SSEEnabled"))}
        if properties.get("Tags"):
            request["Tags"] = properties["Tags"]
        dynamodb = self.boto3_client("dynamodb")
        description = dynamodb.create_table(**request)["TableDescription"]
        self._undo.append(lambda: self.boto3_client("dynamodb").delete_table(TableName=name))
        if "LatestStreamArn" in description:
            self._resources.created[(logical_id, "StreamArn")] = description["LatestStreamArn"]
        ttl = properties.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
            )
        pitr = properties.get("PointInTimeRecoverySpecification")
        if pitr and pitr.get("PointInTimeRecoveryEnabled"):
            dynamodb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )

    def _create_queue(self, logical_id: str, properties: dict[str, Any]) -> None:
        attributes = {
            key: str(value).lower() if isinstance(value, bool) else str(value)
            for key, value in properties.items()
            if key in {"MessageRetentionPeriod", "VisibilityTimeout", "DelaySeconds", "SqsManagedSseEnabled"}
        }
        if properties.get("RedrivePolicy"):
            attributes["RedrivePolicy"] = json.dumps(properties["RedrivePolicy"])
        sqs = self.boto3_client("sqs")
        url = sqs.create_queue(QueueName=self._resources.physical_name(logical_id), Attributes=attributes)["QueueUrl"]
        self._undo.append(lambda: self.boto3_client("sqs").delete_queue(QueueUrl=url))

    def _create_layer(self, logical_id: str, properties: dict[str, Any]) -> None:
        content_dir = self.repo_root / str(properties["ContentUri"])
        requirements = content_dir / "requirements.txt"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            # The engine itself is importable through the editable install; the layer only records its pins.
            archive.writestr(
                "requirements.txt", requirements.read_text(encoding="utf-8") if requirements.exists() else ""
            )
        response = self.boto3_client("lambda").publish_layer_version(
            LayerName=self._resources.physical_name(logical_id),
            Description=str(properties.get("Description", "")),
            Content={"ZipFile": buffer.getvalue()},
            CompatibleRuntimes=list(properties.get("CompatibleRuntimes", [])),
            CompatibleArchitectures=list(properties.get("CompatibleArchitectures", [])),
        )
        self._resources.created[(logical_id, "Ref")] = response["LayerVersionArn"]
        self._undo.append(
            lambda: self.boto3_client("lambda").delete_layer_version(
                LayerName=self._resources.physical_name(logical_id), VersionNumber=response["Version"]
            )
        )

    def _create_function(self, logical_id: str) -> None:
        t = self.template
        properties = t.resolve(t.function_properties(logical_id), self._resources)
        name = self._resources.physical_name(logical_id)
        code_dir = self.repo_root / str(properties["CodeUri"])
        environment = _str_env((properties.get("Environment") or {}).get("Variables") or {})
        request: dict[str, Any] = {
            "FunctionName": name,
            "Runtime": properties["Runtime"],
            "Role": self._role(logical_id),
            "Handler": properties["Handler"],
            "Code": {"ZipFile": _zip_directory(code_dir)},
            "Description": str(properties.get("Description", "")),
            "Timeout": int(properties.get("Timeout", 3)),
            "MemorySize": int(properties.get("MemorySize", 128)),
            "Environment": {"Variables": environment},
            "Architectures": list(properties.get("Architectures", ["x86_64"])),
            "Layers": list(properties.get("Layers", [])),
        }
        if properties.get("Tracing"):
            request["TracingConfig"] = {"Mode": properties["Tracing"]}
        dead_letter = properties.get("DeadLetterQueue")
        if dead_letter:
            request["DeadLetterConfig"] = {"TargetArn": dead_letter["TargetArn"]}
        lambda_client = self.boto3_client("lambda")
        lambda_client.create_function(**request)
        self._undo.append(lambda: self.boto3_client("lambda").delete_function(FunctionName=name))

        invoke_config = properties.get("EventInvokeConfig") or {}
        on_failure = ((invoke_config.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        if invoke_config:
            destination = {"OnFailure": {"Destination": on_failure}} if on_failure else {}
            lambda_client.put_function_event_invoke_config(
                FunctionName=name,
                MaximumRetryAttempts=int(invoke_config.get("MaximumRetryAttempts", 2)),
                MaximumEventAgeInSeconds=int(invoke_config.get("MaximumEventAgeInSeconds", 21600)),
                DestinationConfig=destination,
            )
        self.runtime.register(
            FunctionSpec(
                logical_id=logical_id,
                function_name=name,
                function_arn=self._resources.get_att(logical_id, "Arn"),
                code_dir=code_dir,
                handler=str(properties["Handler"]),
                timeout_seconds=request["Timeout"],
                memory_mb=request["MemorySize"],
                environment=environment,
                region=self.region,
                max_async_retries=int(invoke_config.get("MaximumRetryAttempts", 2)),
                on_failure_queue_url=self._queue_url_from_arn(on_failure) if on_failure else None,
                dead_letter_queue_url=self._queue_url_from_arn(dead_letter["TargetArn"]) if dead_letter else None,
            )
        )
        for event_name, event in (properties.get("Events") or {}).items():
            self._create_event_source(logical_id, name, event_name, event)

    def _queue_url_from_arn(self, arn: str) -> str:
        if not arn.startswith("arn:aws:sqs:"):
            raise LocalStackError(f"only SQS destinations are supported locally, not {arn}")
        queue_name = arn.rsplit(":", 1)[1]
        return str(self.boto3_client("sqs").get_queue_url(QueueName=queue_name)["QueueUrl"])

    def _create_event_source(self, logical_id: str, function_name: str, event_name: str, event: dict[str, Any]) -> None:
        kind, properties = event.get("Type"), event.get("Properties") or {}
        if kind == "DynamoDB":
            destination = ((properties.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
            mapping = {key: value for key, value in properties.items() if key not in {"Stream", "DestinationConfig"}}
            mapping.update(EventSourceArn=properties["Stream"], FunctionName=function_name)
            if destination:
                mapping["DestinationConfig"] = {"OnFailure": {"Destination": destination}}
            self._create_stream_mapping(mapping)
        elif kind == "Schedule":
            rule_name = self._resources.ref(f"{logical_id}{event_name}")
            events = self.boto3_client("events")
            rule_arn = events.put_rule(
                Name=rule_name,
                ScheduleExpression=str(properties["Schedule"]),
                State="ENABLED" if properties.get("Enabled", True) else "DISABLED",
            )["RuleArn"]
            if rule_arn != self._resources.get_att(f"{logical_id}{event_name}", "Arn"):
                raise LocalStackError(f"{logical_id}.Events.{event_name}: moto returned the rule ARN {rule_arn}")
            target: dict[str, Any] = {"Id": "Function", "Arn": self._resources.get_att(logical_id, "Arn")}
            if "Input" in properties:
                target["Input"] = str(properties["Input"])
            dead_letter_arn = (properties.get("DeadLetterConfig") or {}).get("Arn")
            if dead_letter_arn:
                target["DeadLetterConfig"] = {"Arn": str(dead_letter_arn)}
            events.put_targets(Rule=rule_name, Targets=[target])

            def delete_rule() -> None:
                self.boto3_client("events").remove_targets(Rule=rule_name, Ids=["Function"])
                self.boto3_client("events").delete_rule(Name=rule_name)

            self._undo.append(delete_rule)
            self.schedules.append(
                ScheduleSpec(
                    logical_id,
                    event_name,
                    str(properties["Schedule"]),
                    rule_name,
                    rule_arn,
                    str(properties["Input"]) if "Input" in properties else None,
                )
            )
        else:
            raise LocalStackError(f"{logical_id}.Events.{event_name}: event type {kind} is not supported locally")

    def _create_stream_mapping(self, properties: Mapping[str, Any]) -> None:
        """A DynamoDB stream -> function mapping (``AWS::Lambda::EventSourceMapping`` properties, resolved);
        an SQS queue -> function mapping is delivered by the runtime's queue poller."""
        function_name = str(properties["FunctionName"])
        if str(properties["EventSourceArn"]).startswith("arn:aws:sqs:"):
            queue_arn = str(properties["EventSourceArn"])
            self.runtime.register_queue_trigger(
                QueueTrigger(
                    function_name=function_name,
                    queue_url=self._queue_url_from_arn(queue_arn),
                    queue_arn=queue_arn,
                    batch_size=int(properties.get("BatchSize", 10)),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in (properties.get("FunctionResponseTypes") or []),
                )
            )
            return
        destination = ((properties.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        request: dict[str, Any] = {
            "EventSourceArn": properties["EventSourceArn"],
            "FunctionName": function_name,
            "StartingPosition": properties["StartingPosition"],
            "BatchSize": int(properties.get("BatchSize", 100)),
            "Enabled": bool(properties.get("Enabled", True)),
        }
        optional = {
            "MaximumBatchingWindowInSeconds": int,
            "MaximumRetryAttempts": int,
            "MaximumRecordAgeInSeconds": int,
            "BisectBatchOnFunctionError": bool,
            "FunctionResponseTypes": list,
        }
        for key, convert in optional.items():
            if key in properties:
                request[key] = convert(properties[key])
        if destination:
            request["DestinationConfig"] = {"OnFailure": {"Destination": destination}}
        try:
            filters = parse_filters(properties.get("FilterCriteria"))
        except UnsupportedFilter as exc:
            raise LocalStackError(f"stream mapping of {function_name}: {exc}") from exc
        if filters:
            request["FilterCriteria"] = properties["FilterCriteria"]
        mapping_id = self.boto3_client("lambda").create_event_source_mapping(**request)["UUID"]
        self._undo.append(lambda: self.boto3_client("lambda").delete_event_source_mapping(UUID=mapping_id))
        self.runtime.register_stream_trigger(
            StreamTrigger(
                function_name=function_name,
                stream_arn=str(properties["EventSourceArn"]),
                batch_size=request["BatchSize"],
                max_retry_attempts=int(properties.get("MaximumRetryAttempts", 10_000)),
                report_batch_item_failures="ReportBatchItemFailures" in (properties.get("FunctionResponseTypes") or []),
                on_failure_queue_url=self._queue_url_from_arn(destination) if destination else None,
                bisect_on_function_error=bool(properties.get("BisectBatchOnFunctionError", False)),
                filters=filters,
            )
        )

    def state_machine_definition(self, logical_id: str = "FullSyncStateMachine") -> dict[str, Any]:
        """The state machine's ASL (``DefinitionUri``) with its ``DefinitionSubstitutions`` applied."""
        t = self.template
        properties = t.resources[logical_id].get("Properties") or {}
        substitutions = {
            key: str(value)
            for key, value in t.resolve(properties.get("DefinitionSubstitutions") or {}, self._resources).items()
        }
        path = self.repo_root / str(properties["DefinitionUri"])
        text = path.read_text(encoding="utf-8")
        missing = sorted(set(_PLACEHOLDER.findall(text)) - set(substitutions))
        if missing:
            raise LocalStackError(f"{path}: placeholders without DefinitionSubstitutions: {', '.join(missing)}")
        definition: dict[str, Any] = json.loads(_PLACEHOLDER.sub(lambda m: substitutions[m.group(1)], text))
        return definition

    def _create_state_machine(self, logical_id: str, properties: dict[str, Any]) -> None:
        definition = self.state_machine_definition(logical_id)
        request: dict[str, Any] = {
            "name": self._resources.physical_name(logical_id),
            "definition": json.dumps(definition),
            "roleArn": self._role(logical_id),
            "type": str(properties.get("Type", "STANDARD")),
        }
        tracing = self.template.resolve(properties.get("Tracing") or {}, self._resources)
        if tracing:
            request["tracingConfiguration"] = {"enabled": bool(tracing.get("Enabled"))}
        arn = self.boto3_client("stepfunctions").create_state_machine(**request)["stateMachineArn"]
        self._undo.append(lambda: self.boto3_client("stepfunctions").delete_state_machine(stateMachineArn=arn))
        if arn != self._resources.ref(logical_id):
            raise LocalStackError(f"{logical_id}: moto returned {arn}, expected {self._resources.ref(logical_id)}")

    def _install_fast_waits(self) -> None:
        _FastWaits.attach(self.waits)
        self._undo_patches.append(lambda: _FastWaits.detach(self.waits))

    # ------------------------------------------------------------------ names
    def table_name(self, logical_id: str) -> str:
        self._expect(logical_id, "AWS::DynamoDB::Table")
        return self._resources.ref(logical_id)

    def function_name(self, logical_id: str) -> str:
        self._expect(logical_id, "AWS::Serverless::Function")
        return self._resources.ref(logical_id)

    def queue_url(self, logical_id: str) -> str:
        self._expect(logical_id, "AWS::SQS::Queue")
        return self._resources.ref(logical_id)

    def state_machine_arn(self, logical_id: str = "FullSyncStateMachine") -> str:
        self._expect(logical_id, "AWS::Serverless::StateMachine")
        return self._resources.ref(logical_id)

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """The environment a function runs with (template Globals + function, resolved)."""
        return dict(self.runtime.spec(self.function_name(logical_id)).environment)

    def _expect(self, logical_id: str, resource_type: str) -> None:
        resource = self.template.resources.get(logical_id)
        if resource is None or resource.get("Type") != resource_type:
            known = ", ".join(sorted(self.template.resources_of_type(resource_type)))
            raise LocalStackError(f"{logical_id} is not a {resource_type} of the template (known: {known})")

    @property
    def outputs(self) -> dict[str, str]:
        """The template's Outputs, resolved."""
        return {
            key: str(self.template.resolve(output["Value"], self._resources))
            for key, output in (self.template.document.get("Outputs") or {}).items()
            if "Condition" not in output or self.template.condition(str(output["Condition"]))
        }

    # ------------------------------------------------------------------ using the stack
    def boto3_client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = boto3.client(service, region_name=self.region)  # type: ignore[call-overload]
        return self._clients[service]

    def _resolve_function(self, logical_id_or_name: str) -> str:
        resource = self.template.resources.get(logical_id_or_name)
        if resource is not None and resource.get("Type") == "AWS::Serverless::Function":
            return self._resources.ref(logical_id_or_name)
        return self.runtime.spec(logical_id_or_name).function_name

    def invoke(self, logical_id_or_name: str, event: Any) -> Any:
        """Invoke a function synchronously (boto3 -> moto -> the real handler, in-process); return its result.

        Raises :class:`LocalInvokeError` (with Lambda's error payload) when the function fails.
        """
        name = self._resolve_function(logical_id_or_name)
        response = self.boto3_client("lambda").invoke(
            FunctionName=name, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
        )
        payload = response["Payload"].read()
        result = json.loads(payload) if payload else None
        if response.get("FunctionError"):
            raise LocalInvokeError(name, result)
        return result

    def invoke_async(self, logical_id_or_name: str, event: Any) -> None:
        """``InvocationType="Event"``: queued, like Lambda's async queue; run it with :meth:`drain`."""
        name = self._resolve_function(logical_id_or_name)
        response = self.boto3_client("lambda").invoke(
            FunctionName=name, InvocationType="Event", Payload=json.dumps(event).encode()
        )
        if response["StatusCode"] != 202:
            raise LocalStackError(f"async invoke of {name} answered {response['StatusCode']}")

    def drain(self) -> list[Invocation]:
        """Run every queued async invocation (retries and OnFailure destinations included) and deliver
        what the SQS event sources' queues hold (the change events), until both are idle; returns them."""
        done = self.runtime.drain()
        while self.runtime.poll_queues():
            done.extend(self.runtime.drain())
        return done

    @property
    def invocations(self) -> list[Invocation]:
        """Every in-process handler call so far, oldest first."""
        return self.runtime.invocations

    def scheduled_event(self, schedule: ScheduleSpec | None = None, *, at: datetime | None = None) -> Any:
        """What the schedule delivers: its ``Input`` when it has one, else the ``Scheduled Event`` payload."""
        schedule = schedule or self.schedule()
        if schedule.input is not None:
            return json.loads(schedule.input)
        moment = (at or datetime.now(UTC)).astimezone(UTC)
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.account_id,
            "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [schedule.rule_arn],
            "detail": {},
        }

    def schedule(self, function: str = "DispatcherFunction", event_name: str | None = None) -> ScheduleSpec:
        """The ``Schedule`` event of a function (its only one unless ``event_name`` is given)."""
        found = [
            s
            for s in self.schedules
            if s.function_logical_id == function and (event_name is None or s.event_name == event_name)
        ]
        if len(found) != 1:
            known = ", ".join(f"{s.function_logical_id}.{s.event_name}" for s in self.schedules) or "none"
            raise LocalStackError(f"no single Schedule event {function}.{event_name or '*'} (known: {known})")
        return found[0]

    def fire_schedule(
        self,
        function: str = "DispatcherFunction",
        *,
        event_name: str | None = None,
        drain: bool = True,
        at: datetime | None = None,
    ) -> Any:
        """One tick of a function's schedule (the dispatcher's by default; ``"WriteBackFunction"``: the sweep),
        invoked with what EventBridge would deliver.

        With ``drain`` (default) the async invocations it fans out run before this returns.
        """
        schedule = self.schedule(function, event_name)
        result = self.invoke(schedule.function_logical_id, self.scheduled_event(schedule, at=at))
        if drain:
            self.drain()
        return result

    def run_state_machine(
        self,
        execution_input: Mapping[str, Any],
        *,
        logical_id: str = "FullSyncStateMachine",
        name: str | None = None,
        timeout_seconds: float = 60.0,
    ) -> dict[str, Any]:
        """Start an execution and wait until it is no longer RUNNING; returns ``describe_execution``."""
        sfn = self.boto3_client("stepfunctions")
        request: dict[str, Any] = {
            "stateMachineArn": self.state_machine_arn(logical_id),
            "input": json.dumps(execution_input),
            "name": name or str(uuid.uuid4()),  # as Step Functions does; moto would leave the name None
        }
        execution_arn = sfn.start_execution(**request)["executionArn"]
        return self.wait_for_execution(execution_arn, timeout_seconds=timeout_seconds)

    def wait_for_execution(self, execution_arn: str, *, timeout_seconds: float = 60.0) -> dict[str, Any]:
        sfn = self.boto3_client("stepfunctions")
        deadline = time.monotonic() + timeout_seconds
        # Each poll is a DescribeExecution through botocore and moto, in this process: a few ms of the
        # CPU (and the GIL) the execution's own thread needs.  Polled every 20 ms, a long execution (the
        # first copy) lost about an eighth of that to its waiter; the back-off keeps short ones prompt.
        pause = 0.02
        while True:
            description: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
            if description["status"] != "RUNNING":
                return description
            if time.monotonic() > deadline:
                raise LocalStackError(f"execution {execution_arn} still RUNNING after {timeout_seconds} s")
            time.sleep(pause)
            pause = min(MAX_EXECUTION_POLL_SECONDS, pause * 1.5)

    def receive_all(self, queue_logical_id: str) -> list[dict[str, Any]]:
        """Every message currently in a queue of the stack (JSON bodies), removed from it."""
        sqs, url = self.boto3_client("sqs"), self.queue_url(queue_logical_id)
        messages: list[dict[str, Any]] = []
        while True:
            batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return messages
            for message in batch:
                messages.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Delete the stack's resources, remove the patches and stop the mock this stack started."""
        if self._closed:
            return
        self._closed = True
        while self._undo_patches:
            self._undo_patches.pop()()
        self.runtime.uninstall()
        # Delete what was created, newest first: inside a caller's mock_aws the backend outlives this stack.
        while self._undo:
            self._undo.pop()()
        if self._mock is not None:
            self._mock.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
