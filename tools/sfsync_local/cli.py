"""The ``sfsync`` command line: demo, run, invoke, status, resync, verify and errors on the local (or a real) stack.

Local tooling only, never shipped to Lambda.  ``main(argv)`` parses the arguments, runs one
command and returns its exit code; user errors (missing file, malformed JSON, unknown function)
print one ``error: ...`` line on stderr and return a non-zero code, never a traceback.

Exit codes: 0 success, 1 the work ran but failed (function error, not converged),
2 bad usage or input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from .runner import EXIT_INTERRUPTED, CliError

_DESCRIPTION = "sfsync local tooling: run the sync engine against the Salesforce emulator and moto."


def _at_least[N: (int, float)](
    convert: Callable[[str], N], kind: str, minimum: N, too_small: str
) -> Callable[[str], N]:
    """An argparse ``type``: ``convert(text)``, refusing what is not ``kind`` or is below ``minimum``."""

    def parse(text: str) -> N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {kind}: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{too_small}: {value}")
        return value

    return parse


_positive_int = _at_least(int, "an integer", 1, "must be at least 1")
_non_negative_int = _at_least(int, "an integer", 0, "must not be negative")
_non_negative_float = _at_least(float, "a number", 0.0, "must not be negative")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535 (0: any free port): {value}")
    return value


def _add_local_endpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """``--endpoint-port`` / ``--no-endpoint`` (the local stack's AWS APIs served: sfsync_local.endpoint)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--endpoint-port",
        type=_port,
        default=0,
        help="serve the local stack's AWS APIs (DynamoDB, DynamoDB Streams, ...) on 127.0.0.1:N "
        "for the AWS CLI, NoSQL Workbench, boto3 (default: a free port)",
    )
    group.add_argument("--no-endpoint", action="store_true", help="do not serve the local stack's AWS APIs")


def _objects(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of Salesforce objects")
    return names


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as :class:`CliError` (so ``main`` returns, never exits)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(f"{self.prog}: {message}", exit_code=2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sfsync",
        description=_DESCRIPTION,
        epilog="exit codes: 0 success; 1 the work ran but failed (function error, not converged); "
        "2 bad usage or input; 130 interrupted",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    demo = sub.add_parser(
        "demo",
        help="emulated org + local stack, live changes, per-cycle sync status",
        description=(
            "Start the Salesforce emulator with a seeded org and the local AWS stack from template.yaml, "
            "fire the dispatcher schedule in a loop while a simulated user edits the org, and print a "
            "sync status table after each cycle."
        ),
    )
    demo.add_argument("--records", type=_non_negative_int, default=2000, help="records in the seeded org (2000)")
    demo.add_argument("--seed", type=int, default=7, help="generator seed (7)")
    demo.add_argument(
        "--pause",
        type=_non_negative_float,
        default=20.0,
        help="seconds between cycles of one object (20 here; production default 300)",
    )
    stop = demo.add_mutually_exclusive_group()
    stop.add_argument(
        "--cycles",
        type=_positive_int,
        default=None,
        help="stop after N cycles (schedule ticks that started work; default 6)",
    )
    stop.add_argument("--forever", action="store_true", help="run until Ctrl-C")
    demo.add_argument(
        "--changes-per-cycle", type=_non_negative_int, default=12, help="user changes made in the org per cycle (12)"
    )
    demo.add_argument("--objects", type=_objects, default=None, help="comma-separated objects to sync (default all)")
    demo.add_argument(
        "--tick", type=_non_negative_float, default=None, help="seconds between schedule ticks (default: few seconds)"
    )
    demo.add_argument(
        "--safety-lag",
        type=_non_negative_int,
        default=2,
        help="seconds the engine stays behind Salesforce's clock (2 here; production default 60)",
    )
    demo.add_argument("--template", default="template.yaml", help="SAM template to deploy (template.yaml)")
    demo.add_argument(
        "--no-cdc",
        action="store_true",
        help="polling only: no change events (by default the org's changes also arrive through Event Relay)",
    )
    demo.add_argument("--state-file", default=None, help="where to keep the state snapshot for `sfsync status --local`")
    _add_local_endpoint_arguments(demo)
    demo.add_argument(
        "--data-dir",
        default=None,
        help="refused: the demo's org is generated anew each run (keep a copy with `sfsync run --data-dir`)",
    )

    run = sub.add_parser(
        "run",
        help="the sync loop against any Salesforce given a credentials file",
        description=(
            "Run the sync loop against the org in a credentials file (the Salesforce secret JSON). "
            "Local mode (default) deploys the local stack from template.yaml in moto; --stack-name "
            "targets a deployed stack in AWS (resource names read from CloudFormation)."
        ),
    )
    run.add_argument("--credentials", default=None, help="Salesforce secret JSON file (local mode)")
    run.add_argument(
        "--endpoint-url", default=None, help="with --stack-name: endpoint of the AWS APIs (e.g. a moto server)"
    )
    run.add_argument("--region", default=None, help="AWS region (default from the boto3 chain, else us-east-1)")
    run.add_argument("--stack-name", default=None, help="deployed CloudFormation stack (AWS mode)")
    run.add_argument("--objects", type=_objects, default=None, help="comma-separated objects to sync")
    run.add_argument(
        "--pause", type=_non_negative_float, default=300.0, help="local mode: seconds between cycles of an object (300)"
    )
    run_stop = run.add_mutually_exclusive_group()
    run_stop.add_argument("--cycles", type=_positive_int, default=None, help="stop after N dispatcher cycles")
    run_stop.add_argument("--forever", action="store_true", help="run until Ctrl-C (the default)")
    run.add_argument("--template", default="template.yaml", help="SAM template to deploy locally (template.yaml)")
    run.add_argument("--state-file", default=None, help="where to keep the state snapshot for `sfsync status --local`")
    _add_local_endpoint_arguments(run)
    run.add_argument(
        "--data-dir",
        default=None,
        help="local mode: keep the DynamoDB tables in DIR between runs (a restart resumes from the watermarks)",
    )

    invoke = sub.add_parser(
        "invoke",
        help="run one function with a sample event (sam local invoke, without containers)",
        description="Invoke one function of the local stack in-process with an event file and print its result.",
    )
    invoke.add_argument(
        "function", help="logical id (DispatcherFunction) or dispatcher/object_sync/full_sync/writeback"
    )
    invoke.add_argument("event", help="event JSON file")
    invoke.add_argument("--no-emulator", action="store_true", help="do not start the Salesforce emulator")
    invoke.add_argument("--credentials", default=None, help="Salesforce secret JSON instead of the emulator")
    invoke.add_argument("--records", type=_non_negative_int, default=100, help="records in the emulated org (100)")
    invoke.add_argument("--seed", type=int, default=7, help="generator seed (7)")
    invoke.add_argument("--template", default="template.yaml", help="SAM template to deploy (template.yaml)")

    status = sub.add_parser(
        "status",
        help="per-object sync state from the state table",
        description=(
            "Show per-object state (watermark, lag, last cycle, lease, last counts, full copy) from the "
            "state table of a local DynamoDB (--local / --endpoint-url) or a deployed stack (--stack-name)."
        ),
    )
    where = status.add_mutually_exclusive_group()
    where.add_argument(
        "--local",
        action="store_true",
        help="the local stack of a running or finished `sfsync demo` / `sfsync run` (its state snapshot)",
    )
    where.add_argument("--stack-name", default=None, help="deployed CloudFormation stack (its state table and objects)")
    status.add_argument(
        "--endpoint-url",
        default=None,
        help="endpoint of the AWS APIs: with --stack-name, where the stack is (e.g. a moto server); "
        "alone, a DynamoDB endpoint whose state table is found by name",
    )
    status.add_argument("--table", default=None, help="state table name (default: discovered)")
    status.add_argument("--state-file", default=None, help="with --local: the snapshot file to read")
    status.add_argument("--region", default=None, help="AWS region")
    status.add_argument("--object", dest="objects", action="append", default=None, help="only this object (repeat)")
    status.add_argument("--json", action="store_true", help="machine-readable JSON")

    resync = sub.add_parser(
        "resync",
        help="ask the dispatcher for a new full copy of objects",
        description=(
            'Invoke the dispatcher with {"resync": [OBJECT...]}: each configured object gets a new full copy '
            "(a new execution of the full-sync workflow; its incremental cycles wait until the copy is done). "
            "Unknown objects are refused by name; the others go on."
        ),
    )
    resync.add_argument("objects", nargs="+", metavar="OBJECT", help="Salesforce object(s) to copy again")
    target = resync.add_mutually_exclusive_group(required=True)
    target.add_argument("--stack-name", default=None, help="deployed CloudFormation stack (its dispatcher)")
    target.add_argument("--function", default=None, help="the dispatcher's function name")
    resync.add_argument("--region", default=None, help="AWS region")
    resync.add_argument("--endpoint-url", default=None, help="endpoint of the AWS APIs (e.g. a moto server)")
    resync.add_argument("--requested-by", default=None, help="who asks (default: $USER)")

    from .errors import add_parser as add_errors_parser
    from .verify import add_parser as add_verify_parser

    add_verify_parser(sub)
    add_errors_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Entry point of the ``sfsync`` console script; returns the exit code."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(args_list)
        return _dispatch(args, out, err)
    except SystemExit as exc:  # --help / --version print and "exit"; keep main() returning
        return exc.code if isinstance(exc.code, int) else 0
    except CliError as exc:
        print(f"error: {exc}", file=err)
        if exc.detail:
            print(exc.detail, file=err)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return EXIT_INTERRUPTED


def _dispatch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    # Imports are deferred so that ``sfsync --help`` stays fast and works without moto.
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args, out)
    if args.command == "run":
        from .runner import run_command

        return run_command(args, out)
    if args.command == "invoke":
        from .runner import invoke_command

        return invoke_command(args, out, err)
    if args.command == "status":
        from .status import status_command

        return status_command(args, out)
    if args.command == "resync":
        from .runner import resync_command

        return resync_command(args, out)
    if args.command == "errors":
        from .errors import errors_command

        return errors_command(args, out)
    if args.command == "verify":
        from .verify import verify_command

        return verify_command(args, out)
    raise CliError(f"unknown command {args.command!r}", exit_code=2)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
