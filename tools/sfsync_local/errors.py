"""``sfsync errors``: the records whose local change still needs attention, and ``sfsync errors retry``.

The write-back keeps one row per such record in the errors table (``pk`` = ``OPEN#<object>``,
``sk`` = the record's Id; owned by :mod:`sfsync.writeback`): ``refused`` (Salesforce or the engine
refused the change: a validation rule, a bad value, a delete that is not allowed) or ``failed`` (a
day of re-drives did not get it through).  The row goes when a push of the record is accepted, so
the list shows only what still needs a person.  ``retry`` invokes WriteBackFunction with
``{"retry": {"object": ..., "ids": [...]}}``: the records are pushed again at once, through the same
path as the stream.

Where: ``--stack-name`` (the errors table and WriteBackFunction from the stack's resources),
``--endpoint-url`` (AWS APIs at that endpoint, e.g. a moto server: the errors table found by name,
``retry`` needs ``--function``), or ``--table`` / ``--function`` with the default AWS chain.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from .runner import EXIT_OK, EXIT_USAGE, CliError

ERRORS_TABLE_LOGICAL_ID = "ErrorsTable"
WRITEBACK_FUNCTION_LOGICAL_ID = "WriteBackFunction"
TWO_WAY_OBJECTS = ("Lead", "Contact", "Campaign", "CampaignMember")
KINDS = ("refused", "failed")
OPEN_PK = "OPEN#{object}"


def add_parser(sub: Any) -> None:
    errors = sub.add_parser(
        "errors",
        help="records whose local change was refused or failed (and retry them)",
        description=(
            "List the records of two-way objects whose local change Salesforce refused or that failed for a "
            "day (object, Id, fields, code, message, since); `sfsync errors retry` pushes them again."
        ),
    )
    _where(errors)
    errors.add_argument("--object", dest="objects", action="append", default=None, help="only this object (repeat)")
    errors.add_argument("--kind", choices=KINDS, default=None, help="only refused or only failed records")
    errors.add_argument("--json", action="store_true", help="machine-readable JSON")
    actions = errors.add_subparsers(dest="action", metavar="ACTION")
    retry = actions.add_parser(
        "retry",
        help="push the listed records again (all of an object, or one Id)",
        description=(
            'Invoke WriteBackFunction with {"retry": ...}: the records\' local changes are pushed again now. '
            "Without --id, every listed or pending record of the object."
        ),
    )
    # the same options after `retry` as before it: given on either side, they count (SUPPRESS keeps the
    # value given before `retry` when the subcommand does not repeat it)
    _where(retry, default=argparse.SUPPRESS)
    retry.add_argument("--object", dest="retry_object", default=None, help="the object (default: every listed one)")
    retry.add_argument("--id", dest="ids", action="append", default=None, help="only this record Id (repeat)")
    retry.add_argument("--requested-by", default=None, help="who asks (default: $USER)")
    retry.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable JSON")


def _where(parser: argparse.ArgumentParser, default: Any = None) -> None:
    parser.add_argument("--stack-name", default=default, help="deployed CloudFormation stack")
    parser.add_argument("--endpoint-url", default=default, help="endpoint of the AWS APIs (e.g. a moto server)")
    parser.add_argument("--table", default=default, help="errors table name (default: discovered)")
    parser.add_argument("--function", default=default, help="WriteBackFunction's name (retry; default: discovered)")
    parser.add_argument("--region", default=default, help="AWS region")


# --------------------------------------------------------------------------- where things are


def _stack_resource(args: argparse.Namespace, logical_id: str) -> str:
    from .status import stack_resource

    return stack_resource(args.stack_name, logical_id, region=args.region, endpoint_url=args.endpoint_url)


def errors_table(args: argparse.Namespace) -> str:
    if args.table:
        return str(args.table)
    if args.stack_name:
        return _stack_resource(args, ERRORS_TABLE_LOGICAL_ID)
    return _discover(args, "dynamodb", ERRORS_TABLE_LOGICAL_ID, "--table")


def writeback_function(args: argparse.Namespace) -> str:
    if args.function:
        return str(args.function)
    if args.stack_name:
        return _stack_resource(args, WRITEBACK_FUNCTION_LOGICAL_ID)
    return _discover(args, "lambda", WRITEBACK_FUNCTION_LOGICAL_ID, "--function")


def _discover(args: argparse.Namespace, service: str, logical_id: str, option: str) -> str:
    """The one table / function whose name contains the logical id (how the local stack names them)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from .status import aws_client

    client = aws_client(service, region=args.region, endpoint_url=args.endpoint_url)
    names: list[str] = []
    try:
        if service == "dynamodb":
            for page in client.get_paginator("list_tables").paginate():
                names.extend(page["TableNames"])
        else:
            for page in client.get_paginator("list_functions").paginate():
                names.extend(f["FunctionName"] for f in page["Functions"])
    except (ClientError, BotoCoreError) as exc:
        where = args.endpoint_url or "AWS"
        raise CliError(f"cannot reach {service} at {where}: {exc}", exit_code=EXIT_USAGE) from None
    matches = [name for name in names if logical_id.lower() in name.lower()]
    if len(matches) != 1:
        found = ", ".join(matches) if matches else "none"
        raise CliError(f"cannot tell which is the {logical_id} (candidates: {found}); pass {option}")
    return matches[0]


# --------------------------------------------------------------------------- listing


def read_open(args: argparse.Namespace, table: str, objects: Sequence[str]) -> list[dict[str, Any]]:
    """The open rows of ``objects`` (oldest first), as plain values."""
    from boto3.dynamodb.types import TypeDeserializer
    from botocore.exceptions import BotoCoreError, ClientError

    from .status import aws_client

    de = TypeDeserializer()
    client = aws_client("dynamodb", region=args.region, endpoint_url=args.endpoint_url)
    rows: list[dict[str, Any]] = []
    try:
        for obj in objects:
            pages = client.get_paginator("query").paginate(
                TableName=table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": OPEN_PK.format(object=obj)}},
                ConsistentRead=True,
            )
            for page in pages:
                rows.extend({k: de.deserialize(v) for k, v in item.items()} for item in page["Items"])
    except (ClientError, BotoCoreError) as exc:
        raise CliError(f"cannot read the errors table {table}: {exc}", exit_code=EXIT_USAGE) from None
    listed = [_row(r) for r in rows if args.kind is None or r.get("kind") == args.kind]
    return sorted(listed, key=lambda r: (r["since"], r["object"], r["id"]))


def _row(raw: Mapping[str, Any]) -> dict[str, Any]:
    try:
        fields = json.loads(str(raw.get("fields") or "[]"))
    except ValueError:
        fields = []
    row: dict[str, Any] = {
        "object": str(raw.get("object", "")),
        "id": str(raw.get("record_id", raw.get("sk", ""))),
        "kind": str(raw.get("kind", "")),
        "fields": [str(f) for f in fields] if isinstance(fields, list) else [],
        "code": str(raw.get("code", "")),
        "message": str(raw.get("message", "")),
        "since": str(raw.get("since", "")),
    }
    if raw.get("attempts") is not None:
        row["attempts"] = int(raw["attempts"])
    return row


def format_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    from .status import render_table

    if not rows:
        return "no refused or failed records"
    table = [
        [r["object"], r["id"], r["kind"], ",".join(r["fields"]) or "-", r["code"], r["message"][:80], r["since"]]
        for r in rows
    ]
    return render_table(["object", "id", "kind", "fields", "code", "message", "since"], table)


# --------------------------------------------------------------------------- the commands


def errors_command(args: argparse.Namespace, out: TextIO) -> int:
    if getattr(args, "action", None) == "retry":
        return retry_command(args, out)
    objects = args.objects or list(TWO_WAY_OBJECTS)
    table = errors_table(args)
    rows = read_open(args, table, objects)
    if args.json:
        print(json.dumps({"errors_table": table, "records": rows}, indent=2), file=out)
    else:
        print(f"errors table {table}: {len(rows)} record(s) need attention", file=out)
        print(format_rows(rows), file=out)
    return EXIT_OK


def retry_command(args: argparse.Namespace, out: TextIO) -> int:
    """Invoke WriteBackFunction with one ``retry`` event per object; exit 1 when a record still failed."""
    from .runner import invoke_deployed

    if args.ids and not args.retry_object:
        raise CliError("--id needs --object", exit_code=EXIT_USAGE)
    if args.retry_object:
        plan = {args.retry_object: list(args.ids or [])}
    else:
        listed = read_open(argparse.Namespace(**{**vars(args), "kind": None}), errors_table(args), TWO_WAY_OBJECTS)
        plan = {}
        for row in listed:
            plan.setdefault(row["object"], []).append(row["id"])
    function = writeback_function(args)
    requested_by = (args.requested_by or os.environ.get("USER") or "operator")[:100]
    answers: list[dict[str, Any]] = []
    for obj, ids in plan.items():
        event = {"retry": {"object": obj, "ids": ids}, "requested_by": requested_by}
        payload, failed = invoke_deployed(
            function, event, region=args.region, endpoint_url=args.endpoint_url, what="the write-back"
        )
        if failed or not isinstance(payload, dict) or "retry" not in payload:
            detail = payload.get("errorMessage") if isinstance(payload, dict) else payload
            raise CliError(f"the write-back failed: {detail}", exit_code=1)
        answers.append(payload["retry"])
    if args.json:
        print(json.dumps({"function": function, "retries": answers}, indent=2), file=out)
    else:
        if not answers:
            print("nothing to retry", file=out)
        for answer in answers:
            print(_retry_line(answer), file=out)
    refused = [a for a in answers if a.get("refused")]
    if refused:
        raise CliError("; ".join(str(a["refused"]) for a in refused), exit_code=EXIT_USAGE)
    return 1 if any(a.get("failed") for a in answers) else EXIT_OK


def _retry_line(answer: Mapping[str, Any]) -> str:
    if answer.get("refused"):
        return f"{answer.get('object')}: refused ({answer['refused']})"
    parts = [f"{answer.get(k, 0)} {k}" for k in ("pushed", "created", "deleted", "refused", "failed")]
    unknown = answer.get("unknown") or []
    line = f"{answer.get('object')}: {answer.get('records', 0)} record(s) re-driven: " + ", ".join(parts)
    return line + (f"; not found: {', '.join(unknown)}" if unknown else "")


__all__ = ["add_parser", "errors_command", "format_rows", "read_open", "retry_command"]
