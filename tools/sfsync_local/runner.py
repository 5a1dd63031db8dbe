"""Orchestration behind the ``sfsync`` commands: emulator + local stack, cycles, invoke.

* :class:`LocalEnvironment` starts the Salesforce emulator (optional) and deploys the local AWS
  stack from ``template.yaml`` with the emulator's credentials as the Salesforce secret.
* :meth:`LocalEnvironment.run_cycle` is one dispatcher cycle as the schedule would run it: fire
  the EventBridge payload at the dispatcher, wait until the fan-out (object syncs, full-copy
  executions) is idle, and collect the cycle summary rows the engine wrote.
* ``run_command`` / ``invoke_command`` implement ``sfsync run`` and ``sfsync invoke``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import signal
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

API_VERSION = "59.0"
PRODUCTION_PAUSE_SECONDS = 300
#: While full copies run, their progress is reported about this often (seconds).
PROGRESS_SECONDS = 1.0

# short names users type → template logical ids
FUNCTIONS: dict[str, str] = {
    "dispatcher": "DispatcherFunction",
    "object_sync": "ObjectSyncFunction",
    "full_sync": "FullSyncFunction",
    "writeback": "WriteBackFunction",
    "change_events": "ChangeEventFunction",
}
#: ``sfsync invoke change_events`` without an emulator: change events on, on this (unused) partner bus.
SAMPLE_EVENT_RELAY_BUS = "aws.partner/salesforce.com/00D000000000000AAA/0YL000000000000AAA"


class CliError(Exception):
    """A user-facing failure: printed as ``error: <message>`` (no traceback), then exit."""

    def __init__(self, message: str, *, exit_code: int = EXIT_USAGE, detail: str | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.detail = detail


# --------------------------------------------------------------------------- input files


def rate_seconds(expression: str) -> float | None:
    """Seconds between the ticks of an EventBridge ``rate(N unit)`` expression (None: not a rate)."""
    parts = expression.strip().removeprefix("rate(").removesuffix(")").split()
    if not expression.strip().startswith("rate(") or len(parts) != 2 or not parts[0].isdigit():
        return None
    unit = parts[1].rstrip("s")
    seconds = {"minute": 60, "hour": 3600, "day": 86400}.get(unit)
    return None if seconds is None else int(parts[0]) * seconds


def load_json_file(path: str, what: str) -> Any:
    """Parse a JSON file, turning a missing file or bad JSON into a :class:`CliError`."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise CliError(f"{what} path is a directory, not a file: {path}") from None
    except (PermissionError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {what} file {path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"{what} file {path} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None


def validate_secret(secret: Any, source: str, *, base_dir: Path | None = None) -> dict[str, Any]:
    """Check a Salesforce secret (docs/engine-design.md) with the engine's own model.

    Also accepts what ``sfsync-emulator serve`` prints: no ``auth_flow`` with a client id and
    secret means ``client_credentials``, and a ``ca_bundle`` that is a file path is read as PEM.
    """
    from sfsync.core.exceptions import SalesforceConfigError
    from sfsync.salesforce.credentials import SalesforceCredentials

    if not isinstance(secret, dict):
        raise CliError(f"{source}: expected a JSON object with the Salesforce secret fields")
    secret = dict(secret)
    if "auth_flow" not in secret and secret.get("client_id") and secret.get("client_secret"):
        secret["auth_flow"] = "client_credentials"
    bundle = secret.get("ca_bundle")
    if isinstance(bundle, str) and bundle and not bundle.lstrip().startswith("-----BEGIN"):
        bundle_path = Path(bundle) if base_dir is None else base_dir / bundle
        try:
            secret["ca_bundle"] = bundle_path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"{source}: ca_bundle is neither PEM text nor a readable file: {exc}") from None
    try:
        SalesforceCredentials.from_secret(secret)
    except SalesforceConfigError as exc:
        raise CliError(f"{source}: {exc}") from None
    return secret


def load_credentials(path: str) -> dict[str, Any]:
    return validate_secret(load_json_file(path, "credentials"), path, base_dir=Path(path).parent)


def resolve_function(name: str) -> str:
    """``dispatcher`` / ``object-sync`` / ``DispatcherFunction`` → the template logical id."""
    key = name.strip().replace("-", "_")
    if key.lower() in FUNCTIONS:
        return FUNCTIONS[key.lower()]
    for logical_id in FUNCTIONS.values():
        if key.lower() == logical_id.lower():
            return logical_id
    choices = ", ".join([*FUNCTIONS, *FUNCTIONS.values()])
    raise CliError(f"unknown function {name!r}; choose one of: {choices}")


# --------------------------------------------------------------------------- progress output


@contextlib.contextmanager
def step(out: TextIO, label: str) -> Iterator[Callable[[str], None]]:
    """Print ``label… done in 1.2 s`` around a long step; the yielded callable adds a detail."""
    details: list[str] = []
    print(f"{label}…", end=" ", file=out, flush=True)
    started = time.monotonic()
    try:
        yield details.append
    except BaseException:
        print("failed", file=out, flush=True)
        raise
    extra = f" ({', '.join(details)})" if details else ""
    print(f"done in {time.monotonic() - started:.1f} s{extra}", file=out, flush=True)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso_ms(when: dt.datetime) -> str:
    """The engine's timestamp format: ISO-8601 UTC with milliseconds and ``Z``."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


# --------------------------------------------------------------------------- function output


class _ForwardingStream(io.TextIOBase):
    """Where the functions' stdout (Powertools logs, EMF metrics) goes while they run in-process.

    Powertools binds its log handler to the ``sys.stdout`` of the moment the engine is first
    imported; pointing ``sys.stdout`` at this one long-lived object during every stack operation
    means later invocations can be routed (to a log file, to stderr) or dropped by switching
    ``target``, whatever ran first.
    """

    def __init__(self) -> None:
        super().__init__()
        self.target: TextIO | None = None

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        target = self.target
        if target is not None:
            target.write(text)
        return len(text)

    def flush(self) -> None:
        if self.target is not None:
            self.target.flush()


_FUNCTION_STDOUT = _ForwardingStream()


@contextlib.contextmanager
def function_output(target: TextIO | None) -> Iterator[None]:
    """Send what the in-process functions print to ``target`` (None: drop it) for the block."""
    previous = _FUNCTION_STDOUT.target
    _FUNCTION_STDOUT.target = target
    try:
        with contextlib.redirect_stdout(_FUNCTION_STDOUT), warnings.catch_warnings():
            # Powertools warns on stderr when a handler emitted no metric (the dispatcher often does not)
            warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
            yield
    finally:
        _FUNCTION_STDOUT.target = previous


def emulator_secret(emulator: Any) -> dict[str, Any]:
    """The Salesforce secret that points the engine at a running emulator (client credentials)."""
    creds = emulator.credentials
    secret: dict[str, Any] = {
        "auth_flow": "client_credentials",
        "token_url": emulator.token_url,
        "client_id": creds.client_id,
        "client_secret": creds.client_secret,
        "username": creds.username,
        "password": creds.password,
        "api_version": getattr(emulator, "api_version", API_VERSION),
    }
    if emulator.ca_path:
        secret["ca_bundle"] = Path(emulator.ca_path).read_text(encoding="ascii")
    return secret


@dataclass
class CycleOutcome:
    """What one dispatcher tick did."""

    number: int
    started: dt.datetime
    seconds: float
    dispatch: dict[str, Any]  # the dispatcher's result: {"started": [...], "skipped": {...}}
    summaries: list[Any] = field(default_factory=list)  # sfsync.store.state.CycleSummary rows of this tick
    copies: list[Any] = field(default_factory=list)  # sfsync.store.copies.Copy documents that moved in this tick
    api_calls: int | None = None  # emulator-side count for the whole tick, when the emulator is ours
    executions: int = 0  # full-copy executions that ran during the tick

    @property
    def started_objects(self) -> list[str]:
        return [str(item.get("object")) for item in self.dispatch.get("started", [])]

    @property
    def did_work(self) -> bool:
        return bool(self.started_objects) or self.executions > 0 or bool(self.copies)


class LocalEnvironment:
    """The emulator (optional) and the local stack, started together and closed together.

    Every stack operation runs inside :func:`function_output` so the functions' logs go to
    ``function_log`` (a file, stderr, or nowhere), never into the command's own output.
    """

    def __init__(self, stack: Any, emulator: Any | None, function_log: TextIO | None) -> None:
        self.stack = stack
        self.emulator = emulator
        self.function_log = function_log
        self.cycles_run = 0
        #: the emulator's change events onto the stack's partner bus (``start(event_relay=True)``)
        self.relay: Any | None = None
        self._objects: list[str] | None = None
        #: rule name -> when (monotonic) a schedule other than the dispatcher's last fired
        self._fired: dict[str, float] = {}

    @classmethod
    def start(
        cls,
        out: TextIO,
        *,
        template: str = "template.yaml",
        parameters: Mapping[str, str] | None = None,
        records: int = 2000,
        seed: int = 7,
        with_emulator: bool = True,
        secret: Mapping[str, Any] | None = None,
        function_log: TextIO | None = None,
        event_relay: bool = False,
    ) -> LocalEnvironment:
        """``event_relay`` (with the emulator): change events on - the stack's ``EventRelayBusName`` is the
        emulator org's partner bus and :attr:`relay` (:class:`sfsync_local.relay.LocalEventRelay`) is
        attached; start its thread with ``env.relay.start()``."""
        emulator = start_emulator(out, records=records, seed=seed) if with_emulator else None
        parameters = dict(parameters or {})
        try:
            if secret is None and emulator is not None:
                secret = emulator_secret(emulator)
            if event_relay and emulator is not None:
                from .relay import bus_name

                parameters["EventRelayBusName"] = bus_name(emulator.org.org_id)
            with function_output(function_log):
                stack = deploy_stack(out, template, parameters=parameters, secret=secret)
        except BaseException:
            if emulator is not None:
                emulator.stop()
            raise
        env = cls(stack, emulator, function_log)
        if event_relay and emulator is not None:
            from .relay import LocalEventRelay

            env.relay = LocalEventRelay(stack, emulator.org).attach()
        return env

    def close(self) -> None:
        if self.relay is not None:
            self.relay.stop()
        try:
            with function_output(self.function_log):
                self.stack.close()
        finally:
            if self.emulator is not None:
                self.emulator.stop()

    def __enter__(self) -> LocalEnvironment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- names ---------------------------------------------------------------------------

    @property
    def state_table(self) -> str:
        return str(self.stack.table_name("StateTable"))

    @property
    def region(self) -> str:
        return str(self.stack.region)

    def objects(self) -> list[str]:
        """The objects the deployed functions sync (``SFSYNC_OBJECTS`` + custom objects)."""
        if self._objects is None:
            env = self.stack.function_environment("ObjectSyncFunction")
            names = [n.strip() for n in env.get("SFSYNC_OBJECTS", "").split(",") if n.strip()]
            names += [n.strip() for n in env.get("SFSYNC_CUSTOM_OBJECTS", "").split(",") if n.strip()]
            if not names:
                from sfsync.core.registry import standard_object_names

                names = standard_object_names()
            self._objects = names
        return list(self._objects)

    # -- running ------------------------------------------------------------------------

    def invoke(self, function: str, event: Any, *, run_async: bool = True, timeout: float = 120.0) -> InvokeOutcome:
        """Invoke one function synchronously; a handler failure becomes an error outcome.

        With ``run_async`` the asynchronous invocations it started (the dispatcher's fan-out) run
        before this returns; otherwise they stay queued and are counted in ``queued``.  Full-copy
        executions it started (the dispatcher's first copies) are waited for either way.
        """
        from .lambda_runtime import LocalInvokeError

        with function_output(self.function_log):
            executions_before = self._execution_arns()
            try:
                result = self.stack.invoke(function, event)
            except LocalInvokeError as exc:
                return InvokeOutcome(exc.payload, is_error=True)
            # full-copy executions it started run on moto's worker thread: wait for them, with or without an org
            executions = self._finished_executions(executions_before, timeout)
            if not run_async:
                return InvokeOutcome(result, is_error=False, queued=self.stack.runtime.pending, executions=executions)
            follow_up = self.stack.drain()  # what the function started asynchronously (the fan-out)
        return InvokeOutcome(result, is_error=False, follow_up=len(follow_up), executions=executions)

    def _finished_executions(self, before: set[str], timeout: float) -> dict[str, str]:
        """Wait for the executions started since ``before``; their final status by name."""
        statuses: dict[str, str] = {}
        for arn in sorted(self._execution_arns() - before):
            try:
                description = self.stack.wait_for_execution(arn, timeout_seconds=timeout)
            except RuntimeError as exc:  # LocalStackError: still running at the deadline
                raise CliError(str(exc), exit_code=EXIT_FAILED) from None
            statuses[arn.rsplit(":", 1)[1]] = str(description["status"])
        return statuses

    def emulator_api_calls(self) -> int | None:
        return None if self.emulator is None else int(self.emulator.api_calls())

    def run_cycle(
        self, *, idle_timeout: float = 300.0, on_progress: Callable[[str], None] | None = None
    ) -> CycleOutcome:
        """One schedule tick: dispatcher, its fan-out, any full-copy executions; then the summaries.

        While full-copy executions run, ``on_progress`` receives a line with each running copy's
        progress about every :data:`PROGRESS_SECONDS`.
        """
        from .lambda_runtime import LocalInvokeError
        from .status import read_cycle_summaries, read_full_copies

        started = utc_now()
        clock = time.monotonic()
        calls_before = self.emulator_api_calls()
        with function_output(self.function_log):
            executions_before = self._execution_arns()
            try:
                result = self.stack.fire_schedule(drain=True)
            except LocalInvokeError as exc:
                raise CliError(f"the dispatcher failed: {_error_summary(exc.payload)}", exit_code=EXIT_FAILED) from None
            self.wait_idle(idle_timeout, on_progress=on_progress)
            self._sweep_when_due()
            executions = len(self._execution_arns() - executions_before)
        calls_after = self.emulator_api_calls()
        self.cycles_run += 1
        summaries = read_cycle_summaries(self.state_table, self.objects(), since=started, region=self.region)
        since = iso_ms(started)
        copies = [
            copy
            for copy in read_full_copies(self.state_table, self.objects(), region=self.region).values()
            if copy.status == "running" or (copy.finished_at or "") >= since
        ]
        return CycleOutcome(
            number=self.cycles_run,
            started=started,
            seconds=time.monotonic() - clock,
            dispatch=result if isinstance(result, dict) else {},
            summaries=summaries,
            copies=copies,
            api_calls=None if calls_before is None or calls_after is None else calls_after - calls_before,
            executions=executions,
        )

    def _sweep_when_due(self) -> None:
        """Fire the other schedules of the template when their rate says so (the write-back's sweep):
        local edits whose push failed are pushed again as in AWS."""
        from .lambda_runtime import LocalInvokeError

        now = time.monotonic()
        for schedule in self.stack.schedules:
            if schedule.function_logical_id == "DispatcherFunction":
                continue
            every = rate_seconds(schedule.expression)
            last = self._fired.get(schedule.rule_name)
            if every is None or (last is not None and now - last < every):
                continue
            self._fired[schedule.rule_name] = now
            try:
                self.stack.fire_schedule(schedule.function_logical_id, event_name=schedule.event_name, drain=True)
            except LocalInvokeError as exc:
                warnings.warn(
                    f"{schedule.function_logical_id}.{schedule.event_name} failed: {_error_summary(exc.payload)}",
                    stacklevel=1,
                )

    def wait_idle(self, timeout: float, *, on_progress: Callable[[str], None] | None = None) -> None:
        """Wait until queued async invokes and running full-copy executions are done."""
        deadline = time.monotonic() + timeout
        next_report = time.monotonic() + PROGRESS_SECONDS
        while True:
            self.stack.drain()
            if not self._running_executions():
                self.stack.drain()  # an execution's last step may have queued more work
                return
            if time.monotonic() > deadline:
                raise CliError(f"the local stack did not become idle within {timeout:.0f} s", exit_code=EXIT_FAILED)
            if on_progress is not None and time.monotonic() >= next_report:
                next_report = time.monotonic() + PROGRESS_SECONDS
                line = self.copy_progress_line()
                if line:
                    on_progress(line)
            time.sleep(0.05)

    def copy_progress_line(self) -> str | None:
        """``copying: Lead 1,200/5,000 (24%, 800/s, ETA 5 s), ...`` for the copies running now (None: none)."""
        from .status import format_duration, read_copy_progress

        parts = []
        for name, progress in sorted(read_copy_progress(self.state_table, self.objects(), region=self.region).items()):
            if progress.status != "running":
                continue
            figures = []
            if progress.total:
                figures.append(f"{100 * progress.records_copied / progress.total:.0f}%")
            if progress.rate_per_s is not None:
                figures.append(f"{progress.rate_per_s:,.0f}/s")
            if progress.eta_seconds is not None:
                figures.append(f"ETA {format_duration(progress.eta_seconds)}")
            of = f"/{progress.total:,}" if progress.total is not None else ""
            detail = f" ({', '.join(figures)})" if figures else ""
            parts.append(f"{name} {progress.records_copied:,}{of}{detail}")
        return f"  copying: {', '.join(parts)}" if parts else None

    def _execution_arns(self, status: str | None = None) -> set[str]:
        sfn = self.stack.boto3_client("stepfunctions")
        request: dict[str, Any] = {"stateMachineArn": self.stack.state_machine_arn()}
        if status:
            request["statusFilter"] = status
        arns: set[str] = set()
        for page in sfn.get_paginator("list_executions").paginate(**request):
            arns.update(item["executionArn"] for item in page["executions"])
        return arns

    def _running_executions(self) -> int:
        return len(self._execution_arns("RUNNING"))


def start_emulator(out: TextIO, *, records: int, seed: int) -> Any:
    from sfsync_emulator.emulator import Emulator

    with step(out, f"starting the Salesforce emulator, seeding {records:,} records (seed {seed})") as detail:
        try:
            emulator = Emulator.start(seed=seed, records=records, port=0, tls=True)
        except ValueError as exc:  # the generator's bounds on --records / --seed
            raise CliError(str(exc)) from None
        detail(emulator.instance_url)
    return emulator


def deploy_stack(out: TextIO, template: str, *, parameters: Mapping[str, str], secret: Mapping[str, Any] | None) -> Any:
    from .cfn import TemplateError
    from .stack import LocalStack, LocalStackError

    with step(out, f"deploying the local stack from {template}") as detail:
        try:
            stack = LocalStack.deploy(template_path=template, parameters=dict(parameters), salesforce_secret=secret)
        except (LocalStackError, TemplateError) as exc:
            raise CliError(f"cannot deploy {template}: {exc}") from None
        detail(f"{len(stack.template.resources)} resources")
    return stack


# --------------------------------------------------------------------------- Ctrl-C


class StopFlag:
    """Set by Ctrl-C (SIGINT) or by code; loops poll it and sleep on it."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    @property
    def is_set(self) -> bool:
        return self._event.is_set()

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when stopped meanwhile."""
        return self._event.wait(max(0.0, seconds))

    @contextlib.contextmanager
    def on_sigint(self) -> Iterator[StopFlag]:
        """The first Ctrl-C sets the flag (the current step finishes); a second one interrupts."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            if self.is_set:
                raise KeyboardInterrupt
            self.set()

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


# --------------------------------------------------------------------------- invoke


@dataclass(frozen=True)
class InvokeOutcome:
    payload: Any
    is_error: bool
    follow_up: int = 0  # async invocations the function queued, run after it returned
    queued: int = 0  # async invocations the function queued, left unrun
    executions: dict[str, str] = field(default_factory=dict)  # full-copy executions it started: name -> status


def _error_summary(payload: Any) -> str:
    if isinstance(payload, dict):
        kind = payload.get("errorType", "error")
        message = payload.get("errorMessage", "")
        return f"{kind}: {message}" if message else str(kind)
    return str(payload)


def invoke_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``sfsync invoke FUNCTION EVENT.json``: one in-process invocation on a fresh local stack.

    The function's JSON result goes to stdout; progress and the function's logs go to stderr
    (as ``sam local invoke`` does).
    """
    logical_id = resolve_function(args.function)
    event = load_json_file(args.event, "event")
    secret = load_credentials(args.credentials) if args.credentials else None
    log = err
    with_emulator = not args.no_emulator and secret is None
    change_events = logical_id == "ChangeEventFunction"  # the function exists only with change events on
    env = LocalEnvironment.start(
        log,
        template=args.template,
        records=args.records,
        seed=args.seed,
        with_emulator=with_emulator,
        secret=secret,
        function_log=log,
        parameters={"EventRelayBusName": SAMPLE_EVENT_RELAY_BUS} if change_events and not with_emulator else None,
        event_relay=change_events,
    )
    has_org = secret is not None or env.emulator is not None
    with env:
        outcome = env.invoke(logical_id, event, run_async=has_org)
    if outcome.follow_up:
        print(f"(ran {outcome.follow_up} asynchronous invocation(s) the function started)", file=log)
    if outcome.queued:
        print(f"({outcome.queued} asynchronous invocation(s) the function started were not run: no org)", file=log)
    for name, status in outcome.executions.items():
        print(f"(full-copy execution {name} the function started: {status})", file=log)
    print(json.dumps(outcome.payload, indent=2, default=str), file=out)
    if outcome.is_error:
        raise CliError(f"{logical_id} failed: {_error_summary(outcome.payload)}", exit_code=EXIT_FAILED)
    return EXIT_OK


# --------------------------------------------------------------------------- run


def local_parameters(*, pause_seconds: float, objects: Sequence[str] | None, log_level: str = "INFO") -> dict[str, str]:
    """Template parameters of a local deployment; unknown objects are refused before anything starts."""
    from sfsync.core.exceptions import ConfigurationError
    from sfsync.core.registry import build_registry

    parameters = {"PauseSeconds": str(max(0, round(pause_seconds))), "LogLevel": log_level}
    if objects:
        standard = [name for name in objects if not name.endswith("__c")]
        custom = [name for name in objects if name.endswith("__c")]
        try:
            build_registry(standard, custom)
        except ConfigurationError as exc:
            raise CliError(f"--objects: {exc}") from None
        parameters["SyncObjects"] = ",".join(standard)
        if custom:
            parameters["CustomObjects"] = ",".join(custom)
    return parameters


def run_command(args: argparse.Namespace, out: TextIO) -> int:
    """``sfsync run``: the sync loop against the org of a credentials file, on the local stack.

    The local stack's AWS APIs are served on a loopback port (``--endpoint-port``) and its tables can be
    kept between runs (``--data-dir``): see :mod:`sfsync_local.serving`."""
    from .serving import prepare
    from .status import format_cycle

    if args.stack_name:
        return run_aws(args, out)
    if not args.credentials:
        raise CliError("--credentials is required (local mode; AWS mode is --stack-name)")
    secret = load_credentials(args.credentials)
    if args.endpoint_url:
        raise CliError(
            "--endpoint-url needs --stack-name: in local mode the stack's AWS APIs are served at the endpoint "
            "printed at start (--endpoint-port); watch the sync with `sfsync status --local`"
        )
    parameters = local_parameters(pause_seconds=args.pause, objects=args.objects)
    state_file = state_file_path(args.state_file)
    cycles = None if args.forever else args.cycles
    serving = prepare(args, source="sfsync run")
    try:
        print(
            f"sfsync run: org at {secret['token_url']}, local stack, pause {args.pause:g} s between cycles of an "
            "object" + ("" if cycles is None else f", {cycles} cycle(s)"),
            file=out,
        )
        log_file, log_path = open_function_log("run")
        print(f"function logs -> {log_path}", file=out)
        stop = StopFlag()
        # the whole run inside function_output: served requests and the stream poller run functions too
        with log_file, function_output(log_file):
            env = LocalEnvironment.start(
                out,
                template=args.template,
                parameters=parameters,
                with_emulator=False,
                secret=secret,
                function_log=log_file,
            )
            with env, stop.on_sigint():
                try:
                    serving.start(env, out, log=log_file, org=str(secret["token_url"]))
                    done = 0
                    while not stop.is_set:
                        outcome = env.run_cycle()
                        if outcome.did_work:
                            done += 1
                            save_state_snapshot(env, state_file, source="sfsync run")
                            print(f"\n{format_cycle(outcome, number=done)}", file=out, flush=True)
                        serving.checkpoint(env, cycle_did_work=outcome.did_work)
                        if cycles is not None and done >= cycles:
                            break
                        stop.sleep(tick_seconds(args.pause))
                finally:
                    serving.stop(env, out)
    finally:
        serving.stop(None, out)  # what prepare() took, when the run failed before it started
    print("stopped (Ctrl-C)" if stop.is_set else "done", file=out)
    return EXIT_OK


# --------------------------------------------------------------------------- state snapshots

STATE_FILE_ENV = "SFSYNC_LOCAL_STATE_FILE"


def state_file_path(explicit: str | None = None) -> Path:
    """Where demo/run keep the local state snapshot: --state-file, $SFSYNC_LOCAL_STATE_FILE, or the cache dir."""
    if explicit:
        path = Path(explicit)
    elif os.environ.get(STATE_FILE_ENV):
        path = Path(os.environ[STATE_FILE_ENV])
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sfsync" / "local-state.json"
    if path.exists() and not path.is_file():  # never replace a device or a directory with a snapshot
        raise CliError(f"state file {path} exists and is not a regular file")
    return path


def save_state_snapshot(env: LocalEnvironment, path: Path, *, source: str) -> None:
    """Copy the local state table (raw DynamoDB items) to ``path`` for ``sfsync status --local``.

    The local stack lives in this process, so another process cannot query it; the snapshot is
    replaced atomically after each cycle.
    """
    client = env.stack.boto3_client("dynamodb")
    table = env.state_table
    description = client.describe_table(TableName=table)["Table"]
    items: list[dict[str, Any]] = []
    for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        items.extend(page["Items"])
    snapshot = {
        "source": source,
        "pid": os.getpid(),
        "saved_at": iso_ms(utc_now()),
        "state_table": table,
        "region": env.region,
        "objects": env.objects(),
        "key_schema": description["KeySchema"],
        "attribute_definitions": description["AttributeDefinitions"],
        "items": items,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(snapshot), encoding="utf-8")
    os.replace(partial, path)


def tick_seconds(pause: float) -> float:
    """How often the local scheduler fires: every few seconds, never slower than the pause."""
    return min(5.0, max(0.5, pause + 0.25))


def open_function_log(command: str) -> tuple[TextIO, str]:
    directory = tempfile.mkdtemp(prefix=f"sfsync-{command}-")
    path = os.path.join(directory, "functions.log")
    return open(path, "w", encoding="utf-8"), path


def invoke_deployed(
    function: str, event: Any, *, region: str | None, endpoint_url: str | None, what: str | None = None
) -> tuple[Any, bool]:
    """Invoke a deployed function synchronously: ``(its JSON answer, whether it is a function error)``.

    An invoke that cannot be made (no such function, an endpoint that does not answer) and an answer that
    is not JSON (a stand-in that cannot run Lambda code, a proxy in the way) are one clear error each,
    exit 2.  The invoke is made once (a retried invoke would run the function twice), and the client waits
    as long as the longest function may run."""
    from botocore.exceptions import BotoCoreError, ClientError

    from .status import aws_client

    name = what or function
    client = aws_client(
        "lambda",
        region=region,
        endpoint_url=endpoint_url,
        retries={"total_max_attempts": 1},
        read_timeout=LONGEST_FUNCTION_SECONDS + 60,
    )
    try:
        response = client.invoke(FunctionName=function, InvocationType="RequestResponse", Payload=json.dumps(event))
        raw = response["Payload"].read()
    except (ClientError, BotoCoreError) as exc:
        raise CliError(f"cannot invoke {name} ({function}): {exc}", exit_code=EXIT_USAGE) from None
    try:
        payload = json.loads(raw or b"null")
    except ValueError:
        kind = "a function error" if response.get("FunctionError") else "an answer"
        raise CliError(
            f"{name} ({function}) sent {kind} that is not JSON: {raw[:200]!r}; the Lambda service at "
            f"{endpoint_url or 'AWS'} did not run the function as Lambda does (a stand-in that cannot run its "
            "code, or a proxy in the way)",
            exit_code=EXIT_USAGE,
        ) from None
    return payload, bool(response.get("FunctionError"))


#: The longest Timeout of the template's functions (ObjectSyncFunction, FullSyncFunction).
LONGEST_FUNCTION_SECONDS = 900


def run_aws(args: argparse.Namespace, out: TextIO) -> int:
    """AWS mode: fire the deployed dispatcher and report each tick as the local mode does.

    Everything is found from the stack (CloudFormation outputs at ``--endpoint-url`` / ``--region``): the
    dispatcher, the state table and, from the object-sync function's configuration, the objects.  After a
    tick that started work, the block printed is the local mode's: the dispatcher's economy and full-copy
    lines, then one row per object cycle and full copy (waiting for the cycles it started to end and for
    the copies it started to finish, with their progress meanwhile)."""
    from .status import (
        OBJECT_SYNC_OUTPUT,
        STATE_TABLE_OUTPUT,
        deployed_objects,
        format_cycle,
        session_for,
        stack_output,
        stack_outputs,
    )

    for option in ("data_dir", "credentials"):
        if getattr(args, option, None):
            flag = "--" + option.replace("_", "-")
            raise CliError(f"{flag} is for local mode; a deployed stack has its own tables and secret")
    region = args.region or session_for(None).region_name
    outputs = stack_outputs(args.stack_name, region=region, endpoint_url=args.endpoint_url)
    dispatcher = stack_output(outputs, "DispatcherFunctionName", args.stack_name)
    state_table = stack_output(outputs, STATE_TABLE_OUTPUT, args.stack_name)
    objects = deployed_objects(
        stack_output(outputs, OBJECT_SYNC_OUTPUT, args.stack_name), region=region, endpoint_url=args.endpoint_url
    )
    cycles = None if args.forever else args.cycles
    where = args.endpoint_url or f"AWS {region}"
    print(
        f"sfsync run: stack {args.stack_name} at {where}, dispatcher {dispatcher}, state table {state_table}, "
        f"objects {', '.join(objects)}",
        file=out,
    )
    stop = StopFlag()
    done = 0
    with stop.on_sigint():
        while not stop.is_set:
            started = utc_now()
            clock = time.monotonic()
            payload, failed = invoke_deployed(
                dispatcher,
                schedule_payload(region=region),
                region=region,
                endpoint_url=args.endpoint_url,
                what="the dispatcher",
            )
            if failed:
                raise CliError(f"the dispatcher failed: {_error_summary(payload)}", exit_code=EXIT_FAILED)
            dispatch = payload if isinstance(payload, dict) else {}
            outcome = _follow_tick(
                dispatch,
                started=started,
                clock=clock,
                table=state_table,
                objects=objects,
                stop=stop,
                region=region,
                endpoint_url=args.endpoint_url,
                out=out,
            )
            if outcome.did_work:
                done += 1
                print(f"\n{format_cycle(outcome, number=done)}", file=out, flush=True)
            else:
                print(f"tick at {started:%H:%M:%S} UTC: nothing due", file=out, flush=True)
            if cycles is not None and done >= cycles:
                break
            stop.sleep(tick_seconds(args.pause))
    print("stopped (Ctrl-C)" if stop.is_set else "done", file=out)
    return EXIT_OK


def _follow_tick(
    dispatch: dict[str, Any],
    *,
    started: dt.datetime,
    clock: float,
    table: str,
    objects: Sequence[str],
    stop: StopFlag,
    region: str,
    endpoint_url: str | None,
    out: TextIO,
    timeout: float = 900.0,
) -> CycleOutcome:
    """Wait for what one tick started (its object cycles' summaries, its full copies' end); the outcome."""
    from .status import format_duration, read_copy_progress, read_cycle_summaries, read_full_copies

    started_objects = [str(item.get("object")) for item in dispatch.get("started", [])]
    copies = dispatch.get("copies") or {}
    copying = sorted({name for entry in copies.get("started", []) for name in entry.get("objects", [])})
    executions = [str(e["execution_arn"]) for e in copies.get("started", []) if e.get("execution_arn")]
    deadline = time.monotonic() + timeout
    next_report = time.monotonic() + PROGRESS_SECONDS * 5
    while not stop.is_set:
        summaries = read_cycle_summaries(
            table, started_objects, since=started, region=region, endpoint_url=endpoint_url
        )
        executions = _running_executions(executions, region=region, endpoint_url=endpoint_url)
        progress = read_copy_progress(table, copying, region=region, endpoint_url=endpoint_url)
        running = {name: p for name, p in progress.items() if p.status == "running"}
        if {s.object_name for s in summaries} >= set(started_objects) and not executions and not running:
            break
        if not executions and not running and time.monotonic() > deadline:
            break  # a cycle that never reports (it failed twice: its failure queue) must not hold the run
        if running and time.monotonic() >= next_report:
            next_report = time.monotonic() + PROGRESS_SECONDS * 5
            parts = [
                f"{name} {p.records_copied:,}"
                + (f"/{p.total:,}" if p.total else "")
                + (f" (ETA {format_duration(p.eta_seconds)})" if p.eta_seconds is not None else "")
                for name, p in sorted(running.items())
            ]
            print(f"  copying: {', '.join(parts)}", file=out, flush=True)
        stop.sleep(1.0)
    since = iso_ms(started)
    summaries = read_cycle_summaries(table, objects, since=started, region=region, endpoint_url=endpoint_url)
    moved = [
        copy
        for copy in read_full_copies(table, objects, region=region, endpoint_url=endpoint_url).values()
        if copy.status == "running" or (copy.finished_at or "") >= since
    ]
    return CycleOutcome(
        number=0,
        started=started,
        seconds=time.monotonic() - clock,
        dispatch=dispatch,
        summaries=summaries,
        copies=moved,
        executions=len(copies.get("started", [])),
    )


def _running_executions(arns: Sequence[str], *, region: str, endpoint_url: str | None) -> list[str]:
    """The executions of ``arns`` still RUNNING (a full copy the tick started)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from .status import aws_client

    if not arns:
        return []
    client = aws_client("stepfunctions", region=region, endpoint_url=endpoint_url)
    try:
        return [arn for arn in arns if client.describe_execution(executionArn=arn)["status"] == "RUNNING"]
    except (ClientError, BotoCoreError) as exc:
        raise CliError(f"cannot follow the full-copy execution: {exc}", exit_code=EXIT_FAILED) from None


# --------------------------------------------------------------------------- resync


def resync_command(args: argparse.Namespace, out: TextIO) -> int:
    """``sfsync resync OBJECT...``: invoke the dispatcher with ``{"resync": [...]}`` and report.

    Exit 0 when every object was accepted; 2 (after the accepted ones went on) when the dispatcher
    refused some object, naming it; 1 when the dispatcher failed.
    """
    from .status import stack_output, stack_outputs

    function = args.function
    if args.stack_name:
        outputs = stack_outputs(args.stack_name, region=args.region, endpoint_url=args.endpoint_url)
        function = stack_output(outputs, "DispatcherFunctionName", args.stack_name)
    requested_by = args.requested_by or os.environ.get("USER") or "operator"
    event = {"resync": list(dict.fromkeys(args.objects)), "requested_by": requested_by[:100]}
    payload, failed = invoke_deployed(
        function, event, region=args.region, endpoint_url=args.endpoint_url, what="the dispatcher"
    )
    if failed:
        raise CliError(f"the dispatcher failed: {_error_summary(payload)}", exit_code=EXIT_FAILED)
    print(format_resync(payload), file=out)
    rejected = ((payload or {}).get("resync") or {}).get("rejected") or {}
    if rejected:
        raise CliError("; ".join(str(why) for why in rejected.values()), exit_code=EXIT_USAGE)
    return EXIT_OK


def format_resync(result: Mapping[str, Any]) -> str:
    """One line per object the re-sync request named: its generation and the execution started."""
    outcome = result.get("resync") or {}
    copies = result.get("copies") or {}
    executions = {
        obj: entry
        for key in ("started", "already_started")
        for entry in copies.get(key, [])
        for obj in entry.get("objects", [])
    }
    lines = []
    for obj, generation in (outcome.get("requested") or {}).items():
        entry = executions.get(obj)
        if entry is not None:
            what = f"full copy {entry['execution_name']} started"
        else:
            what = f"waiting: {(copies.get('held') or {}).get(obj) or (result.get('skipped') or {}).get(obj, 'queued')}"
        lines.append(f"{obj}: re-sync g{generation} requested; {what}")
    for obj in outcome.get("rejected") or {}:
        lines.append(f"{obj}: refused")
    return "\n".join(lines) if lines else "nothing requested"


def schedule_payload(*, region: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """An EventBridge ``Scheduled Event`` (what the schedule delivers to the dispatcher)."""
    moment = (now or utc_now()).astimezone(dt.UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [],
        "detail": {},
    }
