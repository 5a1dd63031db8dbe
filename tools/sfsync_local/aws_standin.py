"""A stand-in AWS in a process of its own: what ``sfsync ... --stack-name NAME --endpoint-url URL`` is tested against.

The local stack (:mod:`sfsync_local.stack`) deploys template.yaml itself, inside the caller's process.  The
AWS mode of the CLI needs the opposite: an AWS endpoint in *another* process, where the template was
deployed the way ``sam deploy`` does it — translated by the SAM translator and created by CloudFormation —
and where the CLI knows nothing but the stack's name and the endpoint's URL.

Server (``python -m sfsync_local.aws_standin serve``): a moto server (moto's own WSGI application, served as
:class:`sfsync_local.endpoint.LocalEndpoint` serves the local stack) over moto's in-process backends, plus
what moto lacks to run this template:

* **Lambda runs code** (``--lambda run``, the default): :class:`DeployedFunctions` is the project's
  in-process Lambda runtime (:mod:`sfsync_local.lambda_runtime`) fed from what CloudFormation deployed: a
  function's handler, environment, timeout and memory come from moto's Lambda, its code is the zip
  CloudFormation took from S3 (extracted to a work directory, ``app.py`` imported from there), its stream
  triggers are the event source mappings CloudFormation created, its async retries and failure destination
  its ``AWS::Lambda::EventInvokeConfig``.  Asynchronous invokes are run by a thread, as Lambda's async queue
  does.  The engine package itself (the layer) is this interpreter's ``sfsync``: the layer zip is deployed
  and listed, but a Python process imports one copy of a package.
  ``--lambda none`` leaves moto's own Lambda, which needs Docker to run code: every invoke answers moto's
  ``error running docker: ...`` text (not JSON), what a stand-in that cannot run Lambda code answers.
* **CloudFormation**: moto creates ``AWS::StepFunctions::StateMachine`` without applying
  ``DefinitionSubstitutions`` and in the Step Functions backend that never executes; here it is created with
  its substitutions applied in the backend that executes (moto's ``execute_state_machine``).
  ``AWS::Lambda::EventInvokeConfig`` (not modelled by moto's CloudFormation) is put on its function.
* ``--fast-waits``: Wait states and Retry back-offs of executions take no time (a test's choice; AWS waits).

Everything the functions call (DynamoDB, Step Functions, Secrets Manager, SQS, ...) is the same backends
the endpoint serves.  ``/moto-api`` is refused, as on the local endpoint.

Deployer (:func:`deploy`, ``python -m sfsync_local.aws_standin deploy``): what ``sam build`` + ``sam deploy``
do, against the endpoint: the functions' and the layer's directories are zipped to an S3 bucket of the
endpoint, the Salesforce secret is put in its Secrets Manager, template.yaml is translated by
``aws-sam-translator`` (in the SAM CLI's environment, ``.venv-sam``: :mod:`sfsync_local.sam_translate`)
with those S3 locations and each state machine's definition inlined, and ``CreateStack`` is called; the
deployer waits for ``CREATE_COMPLETE``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .event_filter import parse_filters
from .lambda_runtime import FunctionSpec, InProcessLambdaRuntime, LocalInvokeError, StreamTrigger

__all__ = [
    "DEFAULT_REGION",
    "DeployedFunctions",
    "StandinError",
    "StandinStack",
    "deploy",
    "main",
    "serve",
]

DEFAULT_REGION = "us-east-1"
#: Credentials the stand-in accepts (any would do); what the deployer and the banner use.
ACCESS_KEY_ID = "standin"
SECRET_ACCESS_KEY = "standin"  # noqa: S105 - a dummy: the stand-in accepts any credentials
ARTIFACT_BUCKET = "sfsync-standin-artifacts"
REPO_ROOT = Path(__file__).resolve().parents[2]
SAM_PYTHON = REPO_ROOT / ".venv-sam" / "bin" / "python"
TRANSLATOR = Path(__file__).with_name("sam_translate.py")
#: How long the deployer waits for CREATE_COMPLETE.
DEPLOY_TIMEOUT_SECONDS = 300.0


class StandinError(RuntimeError):
    """The stand-in cannot start, or the template cannot be deployed into it."""


# =========================================================================== server side


class DeployedFunctions(InProcessLambdaRuntime):
    """The in-process Lambda runtime for the functions CloudFormation created in this process's moto.

    Functions are not registered in advance: the first invoke of a function name moto knows builds its
    :class:`FunctionSpec` from moto's Lambda (handler, environment, timeout, memory, event invoke config)
    and extracts its deployed code; a new code hash (an update) is extracted and imported anew.
    """

    def __init__(self, work_dir: Path) -> None:
        super().__init__(sqs_client_factory=self._sqs_client, record_invocations=False)
        self._work_dir = work_dir
        self._code_hash: dict[str, str] = {}
        self._spec_guard = threading.RLock()

    @staticmethod
    def _sqs_client() -> Any:
        import boto3

        return boto3.client("sqs", region_name=os.environ.get("AWS_DEFAULT_REGION", DEFAULT_REGION))

    @staticmethod
    def _moto_function(name: str) -> Any | None:
        from moto.awslambda.models import lambda_backends

        for account_id, regions in list(lambda_backends.items()):
            for region in list(regions):
                backend = lambda_backends[account_id][region]
                with contextlib.suppress(Exception):
                    return backend.get_function(name)
        return None

    def owns(self, function_name: str) -> bool:
        return self._moto_function(function_name) is not None

    def spec(self, name_or_arn: str) -> FunctionSpec:
        name = name_or_arn.split(":function:", 1)[1].split(":", 1)[0] if ":function:" in name_or_arn else name_or_arn
        function = self._moto_function(name)
        if function is None:
            raise LocalInvokeError(name, f"no function {name} is deployed")
        with self._spec_guard:
            code_hash = str(function.code_sha_256)
            if self._code_hash.get(name) != code_hash or name not in self._specs:
                self.register(self._build_spec(function))
                self._modules.pop(name, None)
                self._code_hash[name] = code_hash
            return self._specs[name]

    def _build_spec(self, function: Any) -> FunctionSpec:
        code_dir = self._work_dir / f"{function.function_name}-{str(function.code_sha_256)[:12]}"
        if not code_dir.is_dir():
            with zipfile.ZipFile(io.BytesIO(function.code_bytes)) as archive:
                archive.extractall(code_dir)
        retries, on_failure = 2, None  # Lambda's defaults for asynchronous invokes
        for config in function.event_invoke_config:
            retries = int(config.config.get("MaximumRetryAttempts", retries))
            destination = ((config.config.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
            on_failure = _queue_url(destination) if destination else on_failure
        return FunctionSpec(
            logical_id=str(function.function_name),
            function_name=str(function.function_name),
            function_arn=str(function.function_arn),
            code_dir=code_dir,
            handler=str(function.handler),
            timeout_seconds=int(function.timeout),
            memory_mb=int(function.memory_size),
            environment={str(k): str(v) for k, v in (function.environment_vars or {}).items()},
            region=str(function.region),
            max_async_retries=retries,
            on_failure_queue_url=on_failure,
        )

    def _moto_invoke(self, function_name: str, event: Any) -> tuple[str, bool, str]:
        self._register_stream_triggers(function_name)
        return super()._moto_invoke(function_name, event)

    def _register_stream_triggers(self, function_name: str) -> None:
        """The DynamoDB stream mappings of the function, as CloudFormation created them."""
        from moto.awslambda.models import lambda_backends

        function = self._moto_function(function_name)
        if function is None:
            return
        backend = lambda_backends[function.account_id][function.region]
        for mapping in list(backend._event_source_mappings.values()):
            if mapping.function_arn != function.function_arn or ":dynamodb:" not in str(mapping.event_source_arn):
                continue
            destination = ((mapping.destination_config or {}).get("OnFailure") or {}).get("Destination")
            self.register_stream_trigger(
                StreamTrigger(
                    function_name=function_name,
                    stream_arn=str(mapping.event_source_arn),
                    batch_size=int(mapping.batch_size or 100),
                    max_retry_attempts=int(
                        mapping.max_retry_attempts if mapping.max_retry_attempts is not None else 10_000
                    ),
                    report_batch_item_failures="ReportBatchItemFailures" in (mapping.function_response_types or []),
                    on_failure_queue_url=_queue_url(destination) if destination else None,
                    bisect_on_function_error=bool(mapping.bisect_on_error),
                    filters=parse_filters(mapping.filter_criteria),
                )
            )


def _queue_url(arn: str) -> str | None:
    parts = str(arn).split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        return None
    return f"https://sqs.{parts[3]}.amazonaws.com/{parts[4]}/{parts[5]}"


class _CloudFormationGaps:
    """What moto's CloudFormation lacks for this template (see the module docstring), patched in this process."""

    @staticmethod
    def install() -> None:
        from moto.cloudformation.parsing import get_model_map
        from moto.core.common_models import CloudFormationModel
        from moto.stepfunctions.models import StateMachine

        def create_state_machine(
            cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
        ) -> Any:
            from moto.stepfunctions.parser.models import stepfunctions_parser_backends
            from moto.stepfunctions.utils import cfn_to_api_tags

            properties = cloudformation_json["Properties"]
            definition = str(properties.get("DefinitionString", ""))
            for key, value in (properties.get("DefinitionSubstitutions") or {}).items():
                definition = definition.replace("${" + str(key) + "}", str(value))
            backend = stepfunctions_parser_backends[account_id][region_name]
            return backend.create_state_machine(
                name=properties.get("StateMachineName", resource_name),
                definition=definition,
                roleArn=properties.get("RoleArn", ""),
                tags=cfn_to_api_tags(properties.get("Tags") or []),
                sm_type=properties.get("StateMachineType"),
            )

        def delete_state_machine(
            cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
        ) -> None:
            from moto.stepfunctions.parser.models import stepfunctions_parser_backends

            stepfunctions_parser_backends[account_id][region_name].delete_state_machine(resource_name)

        StateMachine.create_from_cloudformation_json = classmethod(create_state_machine)  # type: ignore[assignment,method-assign]
        StateMachine.delete_from_cloudformation_json = classmethod(delete_state_machine)  # type: ignore[assignment,method-assign]

        class EventInvokeConfigModel(CloudFormationModel):
            """``AWS::Lambda::EventInvokeConfig``: PutFunctionEventInvokeConfig on its function."""

            # moto's model metaclass files every model under the service named by its module
            __module__ = "moto.awslambda.sfsync_standin"

            def __init__(self, function_name: str) -> None:
                self.physical_resource_id = function_name

            @staticmethod
            def cloudformation_name_type() -> str:
                return ""

            @staticmethod
            def cloudformation_type() -> str:
                return "AWS::Lambda::EventInvokeConfig"

            @classmethod
            def has_cfn_attr(cls, attr: str) -> bool:
                return False

            @classmethod
            def create_from_cloudformation_json(  # type: ignore[misc]
                cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
            ) -> EventInvokeConfigModel:
                from moto.awslambda.models import lambda_backends

                properties = cloudformation_json["Properties"]
                config = {
                    key: properties[key]
                    for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")
                    if key in properties
                }
                function_name = str(properties["FunctionName"])
                lambda_backends[account_id][region_name].put_function_event_invoke_config(function_name, config)
                return cls(function_name)

            @classmethod
            def update_from_cloudformation_json(  # type: ignore[misc]
                cls,
                original_resource: Any,
                new_resource_name: str,
                cloudformation_json: Any,
                account_id: str,
                region_name: str,
            ) -> EventInvokeConfigModel:
                return cls.create_from_cloudformation_json(
                    new_resource_name, cloudformation_json, account_id, region_name
                )

            @classmethod
            def delete_from_cloudformation_json(  # type: ignore[misc]
                cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
            ) -> None:
                return None

            def is_created(self) -> bool:
                return True

        get_model_map.cache_clear()  # the model map lists CloudFormationModel's subclasses once

        # AWS::NoValue removes a list element (a role's `Policies: [!If [Cond, {...}, !Ref AWS::NoValue]]`);
        # moto keeps it as None and then fails to create the role.
        from moto.cloudformation import parsing

        original_clean_json = parsing.clean_json

        def clean_json(resource_json: Any, resources_map: Any) -> Any:
            if not isinstance(resource_json, list):
                return original_clean_json(resource_json, resources_map)
            cleaned = [(value, original_clean_json(value, resources_map)) for value in resource_json]
            return [result for value, result in cleaned if not (result is None and _may_be_no_value(value))]

        parsing.clean_json = clean_json

        # Resources moto does not model (CloudWatch alarms, the dashboard, the queue policy, ...) are kept
        # as None, and DescribeStackResources with a logical id then fails on them: record each one
        # (listed and described as in AWS; it does nothing here).
        original_create = parsing.parse_and_create_resource

        def parse_and_create_resource(
            logical_id: str, resource_json: Any, resources_map: Any, account_id: str, region_name: str
        ) -> Any:
            resource = original_create(logical_id, resource_json, resources_map, account_id, region_name)
            kind = str(resource_json.get("Type"))
            condition = resource_json.get("Condition")
            if resource is not None or parsing.resource_class_from_type(kind) is not None:
                return resource
            if condition and not resources_map.lazy_condition_map[condition]:
                return None  # disabled by its condition: absent, as in AWS
            return _Unmodelled(logical_id, kind, f"{resources_map['AWS::StackName']}-{logical_id}")

        parsing.parse_and_create_resource = parse_and_create_resource

        # A resource its condition disables is absent in AWS; moto lists it as None (and fails on it).
        from moto.cloudformation.models import Stack

        def stack_resources(stack: Any) -> list[Any]:
            return [resource for resource in stack.resource_map.values() if resource is not None]

        Stack.stack_resources = property(stack_resources)  # type: ignore[assignment,method-assign]


class _Unmodelled:
    """A resource of a stack that moto's CloudFormation does not model: named, listed, inert."""

    def __init__(self, logical_id: str, kind: str, physical_id: str) -> None:
        self.logical_resource_id = logical_id
        self.cf_resource_type = kind
        self.physical_resource_id = physical_id

    def is_created(self) -> bool:
        return True


def _may_be_no_value(node: Any) -> bool:
    """A template node that may resolve to ``AWS::NoValue`` (a ``Ref`` to it, or an ``Fn::If``)."""
    return isinstance(node, dict) and (node.get("Ref") == "AWS::NoValue" or "Fn::If" in node)


class _AsyncQueue:
    """A thread running the queued asynchronous invokes (Lambda's async queue) as they come."""

    def __init__(self, runtime: InProcessLambdaRuntime, log: TextIO | None) -> None:
        self._runtime = runtime
        self._log = log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sfsync-standin-async", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _loop(self) -> None:
        import traceback

        while not self._stop.is_set():
            if not self._runtime.pending:
                self._stop.wait(0.05)
                continue
            try:
                self._runtime.drain()
            except Exception:  # noqa: BLE001 - the queue outlives one bad invocation; the log says what failed
                if self._log is not None:
                    self._log.write("async queue: a run failed\n" + traceback.format_exc())
                self._stop.wait(1.0)


def serve(
    *, port: int = 0, lambda_mode: str = "run", fast_waits: bool = False, log: TextIO | None = None, out: TextIO
) -> int:
    """Serve the stand-in until SIGTERM or Ctrl-C; the first line on ``out`` is its JSON banner."""
    from moto import mock_aws

    from .endpoint import LocalEndpoint, LocalEndpointError
    from .runner import function_output
    from .stack import _FastWaits, moto_dynamodb_speedups

    os.environ.setdefault("AWS_DEFAULT_REGION", DEFAULT_REGION)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        endpoint = LocalEndpoint.bind(port, log=log)
    except LocalEndpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    moto = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
    moto.start()
    waits: list[float] = []
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(moto.stop)
        _CloudFormationGaps.install()
        cleanup.enter_context(moto_dynamodb_speedups())
        if fast_waits:
            _FastWaits.attach(waits)
            cleanup.callback(_FastWaits.detach, waits)
        work_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sfsync-standin-")))
        runtime: InProcessLambdaRuntime
        if lambda_mode == "run":
            runtime = DeployedFunctions(work_dir)
            runtime.install()
            cleanup.callback(runtime.uninstall)
        else:
            runtime = InProcessLambdaRuntime(sqs_client_factory=DeployedFunctions._sqs_client)  # runs nothing
        cleanup.enter_context(function_output(log))
        endpoint.serve(runtime)
        cleanup.callback(endpoint.close)
        queue = _AsyncQueue(runtime, log)
        queue.start()
        cleanup.callback(queue.stop)
        banner = {
            "endpoint_url": endpoint.url,
            "region": DEFAULT_REGION,
            "lambda": lambda_mode,
            "fast_waits": fast_waits,
            "pid": os.getpid(),
        }
        print(json.dumps(banner), file=out, flush=True)
        while not stop.wait(0.2):
            pass
    return 0


# =========================================================================== deployer (client side)


@dataclass(frozen=True)
class StandinStack:
    """A stack deployed into a stand-in: its name, the endpoint and its outputs."""

    name: str
    endpoint_url: str
    region: str
    outputs: dict[str, str]
    secret_arn: str


def _session(region: str) -> Any:
    import boto3

    return boto3.session.Session(
        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY, region_name=region
    )


def _zip_directory(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            info = zipfile.ZipInfo(path.relative_to(directory).as_posix(), date_time=(2026, 1, 1, 0, 0, 0))
            archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def _code_locations(template_path: Path, session: Any, endpoint_url: str, stack_name: str) -> dict[str, str]:
    """Zip each function's ``CodeUri`` and each layer's ``ContentUri`` to the stand-in's S3 (as ``sam package``)."""
    from .cfn import load_template

    document = load_template(template_path)
    code_globals = ((document.get("Globals") or {}).get("Function") or {}).get("CodeUri")
    s3 = session.client("s3", endpoint_url=endpoint_url)
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=ARTIFACT_BUCKET)
    locations: dict[str, str] = {}
    for logical_id, resource in (document.get("Resources") or {}).items():
        properties = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Serverless::Function":
            source = properties.get("CodeUri", code_globals)
        elif resource.get("Type") == "AWS::Serverless::LayerVersion":
            source = properties.get("ContentUri")
        else:
            continue
        if not isinstance(source, str):
            raise StandinError(f"{logical_id}: only a local directory CodeUri/ContentUri can be packaged")
        body = _zip_directory(template_path.parent / source)
        key = f"{stack_name}/{logical_id}-{hashlib.sha256(body).hexdigest()[:16]}.zip"
        s3.put_object(Bucket=ARTIFACT_BUCKET, Key=key, Body=body)
        locations[logical_id] = f"s3://{ARTIFACT_BUCKET}/{key}"
    return locations


def translate(
    template_path: Path, parameters: Mapping[str, str], *, locations: Mapping[str, str], region: str
) -> dict[str, Any]:
    """template.yaml through ``aws-sam-translator`` (in ``.venv-sam``), code at ``locations``, definitions inlined."""
    if not SAM_PYTHON.exists():
        raise StandinError(f"{SAM_PYTHON} is missing: run `make sam-venv` (the SAM translator lives there)")
    command = [
        str(SAM_PYTHON),
        str(TRANSLATOR),
        str(template_path),
        "--inline-definitions",
        "--locations",
        json.dumps(dict(locations)),
        *(f"{key}={value}" for key, value in parameters.items()),
    ]
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "AWS_DEFAULT_REGION": region}
    result = subprocess.run(  # noqa: S603 - our own script, run by the SAM CLI's interpreter
        command, capture_output=True, text=True, timeout=120, check=False, env=environment
    )
    if result.returncode != 0:
        raise StandinError(f"the SAM translation of {template_path} failed: {result.stderr.strip()[-2000:]}")
    translated: dict[str, Any] = json.loads(result.stdout)
    return translated


def deploy(
    endpoint_url: str,
    *,
    stack_name: str,
    salesforce_secret: Mapping[str, Any],
    parameters: Mapping[str, str] | None = None,
    template: str | Path = REPO_ROOT / "template.yaml",
    region: str = DEFAULT_REGION,
    translated: dict[str, Any] | None = None,
) -> StandinStack:
    """``sam build`` + ``sam deploy`` of ``template`` into the stand-in at ``endpoint_url``; waits for CREATE_COMPLETE.

    The Salesforce secret is created as ``<stack>-salesforce`` in the endpoint's Secrets Manager and passed
    as ``SalesforceSecretArn``.  ``translated`` reuses a translation of an earlier call (same template and
    parameters; the code locations are content-addressed, so they match).
    """
    template_path = Path(template).resolve()
    session = _session(region)
    secrets = session.client("secretsmanager", endpoint_url=endpoint_url)
    secret_arn = str(
        secrets.create_secret(Name=f"{stack_name}-salesforce", SecretString=json.dumps(dict(salesforce_secret)))["ARN"]
    )
    values = {**(parameters or {}), "SalesforceSecretArn": secret_arn}
    locations = _code_locations(template_path, session, endpoint_url, stack_name)
    body = (
        translated if translated is not None else translate(template_path, values, locations=locations, region=region)
    )
    cloudformation = session.client("cloudformation", endpoint_url=endpoint_url)
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(body),
        Parameters=[{"ParameterKey": key, "ParameterValue": str(value)} for key, value in values.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    deadline = time.monotonic() + DEPLOY_TIMEOUT_SECONDS
    while True:
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = str(stack["StackStatus"])
        if status == "CREATE_COMPLETE":
            break
        if not status.endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            events = cloudformation.describe_stack_events(StackName=stack_name)["StackEvents"]
            reasons = [
                f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
                for e in events
                if "FAILED" in str(e["ResourceStatus"])
            ]
            raise StandinError(f"stack {stack_name} ended {status}: {'; '.join(reasons[:5]) or 'no reason given'}")
        time.sleep(0.2)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return StandinStack(stack_name, endpoint_url, region, outputs, secret_arn)


# =========================================================================== command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sfsync_local.aws_standin", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="serve a stand-in AWS on a loopback port (prints one JSON line)")
    run.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    run.add_argument(
        "--lambda",
        dest="lambda_mode",
        choices=("run", "none"),
        default="run",
        help="run: the deployed handlers run in this process; none: moto's own Lambda (needs Docker)",
    )
    run.add_argument("--fast-waits", action="store_true", help="Step Functions Wait states and back-offs take no time")
    run.add_argument("--log", default=None, help="file for the functions' logs and the access log (default: none)")
    dep = sub.add_parser("deploy", help="deploy template.yaml into a running stand-in (prints the stack's outputs)")
    dep.add_argument("--endpoint-url", required=True)
    dep.add_argument("--stack-name", required=True)
    dep.add_argument("--credentials", required=True, help="Salesforce secret JSON file (what `sfsync run` takes)")
    dep.add_argument("--template", default=str(REPO_ROOT / "template.yaml"))
    dep.add_argument("--region", default=DEFAULT_REGION)
    dep.add_argument("--parameter", action="append", default=[], metavar="NAME=VALUE", help="template parameter")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        with contextlib.ExitStack() as files:
            log = files.enter_context(open(args.log, "a", encoding="utf-8")) if args.log else None
            return serve(
                port=args.port, lambda_mode=args.lambda_mode, fast_waits=args.fast_waits, log=log, out=sys.stdout
            )
    from .runner import CliError, load_credentials

    try:
        secret = load_credentials(args.credentials)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from botocore.exceptions import BotoCoreError, ClientError

    parameters = dict(item.split("=", 1) for item in args.parameter)
    try:
        stack = deploy(
            args.endpoint_url,
            stack_name=args.stack_name,
            salesforce_secret=secret,
            parameters=parameters,
            template=args.template,
            region=args.region,
        )
    except (StandinError, ClientError, BotoCoreError) as exc:
        print(f"error: cannot deploy {args.template} into {args.endpoint_url}: {exc}", file=sys.stderr)
        return 2
    print(
        json.dumps({"stack_name": stack.name, "endpoint_url": stack.endpoint_url, "outputs": stack.outputs}, indent=2)
    )
    return 0


@contextlib.contextmanager
def running(
    *, lambda_mode: str = "run", fast_waits: bool = True, log_path: Path | None = None
) -> Iterator[dict[str, Any]]:
    """A stand-in in a child process for the block; yields its banner (``endpoint_url``, ``pid``, ...)."""
    command = [sys.executable, "-m", "sfsync_local.aws_standin", "serve", "--lambda", lambda_mode]
    if fast_waits:
        command.append("--fast-waits")
    if log_path is not None:
        command += ["--log", str(log_path)]
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "tools"), str(REPO_ROOT / "layers" / "engine")]),
    }
    errors = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115 - closed below
    process = subprocess.Popen(  # noqa: S603 - this module, in this interpreter
        command, stdout=subprocess.PIPE, stderr=errors, text=True, env=environment, cwd=REPO_ROOT
    )
    try:
        line = process.stdout.readline() if process.stdout is not None else ""
        if not line:
            process.wait(timeout=60)
            errors.seek(0)
            raise StandinError(f"the stand-in did not start: {errors.read().strip()[-2000:]}")
        # whatever it prints later is read and dropped, so the pipe never fills
        threading.Thread(target=lambda: [None for _ in process.stdout or ()], daemon=True).start()
        yield json.loads(line)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        errors.close()


if __name__ == "__main__":
    sys.exit(main())
