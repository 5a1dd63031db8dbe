"""``sfsync verify``: compare one object between Salesforce and its DynamoDB table, and repair.

The engine does the work (:func:`sfsync.ops.verify.verify_object`); this module finds the
deployment's configuration and prints the JSON report.  Everything comes from the deployed
ObjectSyncFunction's environment (``SFSYNC_RECORD_TABLES``, ``SFSYNC_OBJECTS``,
``SFSYNC_OBJECT_OPTIONS``, ``SFSYNC_SECRET_ARN`` ...), so verify sees the object exactly as the
cycles do:

* ``--stack-name NAME``: a deployed stack (its ``ObjectSyncFunctionName`` output);
* ``--local``: the local stack (template.yaml in moto) running in this process — the stack the
  tests and tools build with :class:`sfsync_local.stack.LocalStack` — or, with
  ``--endpoint-url``, AWS-compatible APIs at that URL; the function is found by its name.

The Salesforce credentials are the deployment's secret unless ``--credentials FILE`` is given.

Exit codes: 0 clean (with ``--repair``: clean after the repair), 1 differences remain, 2 bad
usage or input.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from .runner import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, load_credentials, utc_now
from .status import aws_client, session_for, stack_output, stack_outputs

OBJECT_SYNC_LOGICAL_ID = "ObjectSyncFunction"
OBJECT_SYNC_OUTPUT = "ObjectSyncFunctionName"


def sample_fraction(text: str) -> float:
    """``--sample``: a share in (0, 1], or a percentage like ``10%``."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a share or a percentage: {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1] (or 0%-100%): {text}")
    return value


def add_parser(sub: Any) -> None:
    verify = sub.add_parser(
        "verify",
        help="compare an object between Salesforce and DynamoDB (missing, extra, stale), optionally repair",
        description=(
            "Compare one object's ids, SystemModstamp and IsDeleted between Salesforce (queryAll, what the "
            "integration user sees) and its DynamoDB table; report missing, extra and stale items as JSON; "
            "--repair re-reads and rewrites them through the engine's monotonic write."
        ),
        epilog="exit codes: 0 clean (after the repair, with --repair); 1 differences remain; 2 bad usage or input",
    )
    verify.add_argument("--object", dest="object_name", required=True, help="Salesforce object (Account, Project__c)")
    verify.add_argument(
        "--sample", type=sample_fraction, default=None, help="check a random share of ids (0.1 or 10%%; default all)"
    )
    verify.add_argument("--repair", action="store_true", help="fix what differs, then verify again")
    where = verify.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", action="store_true", help="the local stack of this process (or at --endpoint-url)")
    where.add_argument("--stack-name", default=None, help="deployed CloudFormation stack")
    verify.add_argument("--endpoint-url", default=None, help="endpoint of the AWS APIs (e.g. a moto server)")
    verify.add_argument("--region", default=None, help="AWS region")
    verify.add_argument("--function", default=None, help="ObjectSyncFunction's name (default: discovered)")
    verify.add_argument("--credentials", default=None, help="Salesforce secret JSON file instead of the stack's secret")
    verify.add_argument("--seed", type=int, default=None, help="random seed of --sample (reproducible samples)")


def verify_command(args: argparse.Namespace, out: TextIO) -> int:
    from botocore.exceptions import BotoCoreError, ClientError
    from sfsync.core.config import load_settings
    from sfsync.core.exceptions import ConfigurationError, SalesforceError, SfsyncError

    session = session_for(args.region)
    try:
        # where the deployment is: a failure here is bad input (exit 2), a failure below a failed verify (1)
        try:
            function = args.function or _object_sync_function(args, session)
            env = _function_environment(args, function)
        except (ClientError, BotoCoreError) as exc:
            where = args.endpoint_url or f"AWS ({session.region_name})"
            raise CliError(f"cannot read the deployment at {where}: {exc}", exit_code=EXIT_USAGE) from None
        try:
            settings = load_settings(env)
        except ConfigurationError as exc:
            raise CliError(f"the configuration of {function} is unusable: {exc}", exit_code=EXIT_FAILED) from None
        if args.object_name not in settings.registry:
            configured = ", ".join(settings.registry.names())
            raise CliError(f"--object: {args.object_name!r} is not synced by this stack (synced: {configured})")
        secret = load_credentials(args.credentials) if args.credentials else _stack_secret(session, args, env)
        report = _run(args, settings, secret, session)
    except (ClientError, BotoCoreError) as exc:
        raise CliError(f"AWS call failed: {exc}", exit_code=EXIT_FAILED) from None
    except (SalesforceError, SfsyncError) as exc:
        raise CliError(f"verify failed: {type(exc).__name__}: {exc}", exit_code=EXIT_FAILED) from None
    print(json.dumps(report, indent=2), file=out)
    final = report.get("after_repair") or report
    return EXIT_OK if final["clean"] else EXIT_FAILED


def _run(args: argparse.Namespace, settings: Any, secret: dict[str, Any], session: Any) -> dict[str, Any]:
    import random

    from sfsync.ops.verify import RecordStoreWriter, verify_object
    from sfsync.salesforce import client_from_secret
    from sfsync.store.records import CLIENT_CONFIG, RecordStore
    from sfsync.store.verify_reader import DynamoTableReader

    spec = settings.registry.get(args.object_name)
    dynamodb = session.client("dynamodb", endpoint_url=args.endpoint_url, config=CLIENT_CONFIG)
    table = settings.table_for(spec.family)
    reader = DynamoTableReader(table, dynamodb)
    rng = random.Random(args.seed) if args.seed is not None else None
    with client_from_secret(secret) as sf:
        writer = None
        if args.repair:
            store = RecordStore(
                dynamodb,
                settings.record_tables,
                errors_table=settings.errors_table,
                error_retention_days=settings.error_retention_days,
            )
            writer = RecordStoreWriter(
                store, dynamodb, spec_of=settings.registry.get, cycle_id=f"verify-{utc_now():%Y%m%dT%H%M%SZ}"
            )
        first = verify_object(
            sf, reader, spec.name, sample=args.sample, repair=args.repair, writer=writer, spec=spec, rng=rng
        )
        report: dict[str, Any] = {"table": table, **first.to_dict()}
        if args.repair:
            again = verify_object(sf, reader, spec.name, sample=args.sample, spec=spec, rng=rng)
            report["after_repair"] = again.to_dict()
    return report


def _object_sync_function(args: argparse.Namespace, session: Any) -> str:
    if args.stack_name:
        outputs = stack_outputs(args.stack_name, region=args.region, endpoint_url=args.endpoint_url)
        return stack_output(outputs, OBJECT_SYNC_OUTPUT, args.stack_name)
    client = aws_client("lambda", region=args.region, endpoint_url=args.endpoint_url)
    names: list[str] = []
    for page in client.get_paginator("list_functions").paginate():
        names.extend(f["FunctionName"] for f in page["Functions"])
    matches = [name for name in names if OBJECT_SYNC_LOGICAL_ID.lower() in name.lower()]
    if len(matches) != 1:
        where = args.endpoint_url or "this process"
        found = ", ".join(matches) if matches else "none"
        raise CliError(
            f"cannot find the local stack's {OBJECT_SYNC_LOGICAL_ID} in {where} (candidates: {found}); "
            "pass --function, --endpoint-url or --stack-name",
            exit_code=EXIT_FAILED,
        )
    return matches[0]


def _function_environment(args: argparse.Namespace, function: str) -> dict[str, str]:
    client = aws_client("lambda", region=args.region, endpoint_url=args.endpoint_url)
    config = client.get_function_configuration(FunctionName=function)
    variables = (config.get("Environment") or {}).get("Variables") or {}
    return {str(k): str(v) for k, v in variables.items()}


def _stack_secret(session: Any, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    from .runner import validate_secret

    arn = env.get("SFSYNC_SECRET_ARN")
    if not arn:
        raise CliError("the function has no SFSYNC_SECRET_ARN; pass --credentials", exit_code=EXIT_FAILED)
    client = session.client("secretsmanager", endpoint_url=args.endpoint_url)
    text = client.get_secret_value(SecretId=arn).get("SecretString") or ""
    try:
        secret = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"secret {arn} is not valid JSON: {exc.msg}", exit_code=EXIT_FAILED) from None
    return validate_secret(secret, f"secret {arn}")


__all__ = ["add_parser", "sample_fraction", "verify_command"]
