"""Where the chaos harness reaches into the local stack, moto, botocore and the engine.

Everything that patches or wraps something lives here, so a change elsewhere (the engine package
re-laid out, a moto upgrade) has one place to be fixed:

* :class:`Interceptor` wraps the local Lambda runtime's handlers: it records every invocation with
  the virtual time and its error type (the stand-in for ``AWS/Lambda`` ``Errors``), and lets a fault
  kill an invocation before, after or in the middle of its work (:class:`TaskKilled`), stop or time
  out the Step Functions execution a step belongs to, or throttle DynamoDB;
* :class:`DynamoFaults` patches moto's DynamoDB request handler (the one hook every DynamoDB request
  of every client passes): ``ProvisionedThroughputExceededException`` answers as DynamoDB sends them,
  and the kill "after N writes" of an invocation;
* :func:`quiet_retries`: botocore's and the Salesforce adapter's retry back-offs take no real time
  (a 5xx storm or a throttled table would otherwise cost minutes of wall time per schedule);
* :class:`MetricSink` reads the EMF blobs Powertools prints to stdout (every engine metric) and
  stamps them with the virtual time;
* :class:`EngineClock` is the engine's clock: the emulator's virtual clock plus a skew a fault sets;
* :class:`VirtualWaits`: Wait states and Retry back-offs of the state machine move the virtual clock;
* :func:`time_out_execution`: an execution ends ``TIMED_OUT`` through moto's own time-out path.

Engine modules touched: ``sfsync.core.clock`` (the engine clock seam), ``sfsync.salesforce``
(``client_from_secret``, to pass a sleep), ``sfsync.store.aws`` and ``sfsync.wiring`` (per-process caches).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

#: DynamoDB write actions (what a kill "after N writes" counts).
WRITE_ACTIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
#: What a table's throttling refuses: its reads and its writes (a re-sync of unchanged rows only reads).
THROTTLED_ACTIONS = WRITE_ACTIONS | {"GetItem", "BatchGetItem", "Query", "Scan"}
THROTTLED = "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"


class TaskKilled(Exception):
    """Stands for the Lambda runtime ending an invocation (time-out, out of memory, a lost container).

    Raised by the harness inside the handler call, so the local runtime reports the invocation failed
    exactly as Lambda would: its retries, Step Functions' Retry/Catch and the on-failure queues act on it.
    """


# ---------------------------------------------------------------------------------------------- clocks


class EngineClock:
    """The engine clock (``sfsync.core.clock.use_clock``): the emulator's virtual clock plus ``skew`` seconds."""

    def __init__(self, now_ms: Callable[[], int]) -> None:
        self._now_ms = now_ms
        self.skew = 0.0

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._now_ms() / 1000 + self.skew, tz=dt.UTC)


class VirtualWaits(list[float]):
    """Attached to the local stack's fast waits: each Wait state and Retry back-off moves the virtual clock."""

    def __init__(self, advance: Callable[[float], Any]) -> None:
        super().__init__()
        self._advance = advance
        self._lock = threading.Lock()

    def append(self, seconds: float) -> None:
        with self._lock:
            super().append(seconds)
            self._advance(seconds)


@contextmanager
def virtual_waits(advance: Callable[[float], Any]) -> Iterator[VirtualWaits]:
    from sfsync_local.stack import _FastWaits

    waits = VirtualWaits(advance)
    _FastWaits.attach(waits)
    try:
        yield waits
    finally:
        _FastWaits.detach(waits)


@contextmanager
def engine_clock(clock: EngineClock) -> Iterator[EngineClock]:
    from sfsync.core import clock as sfsync_clock

    with sfsync_clock.use_clock(clock):
        yield clock


# ---------------------------------------------------------------------------------------------- caches and retries


def reset_engine_caches() -> None:
    """Per-process caches of the engine: boto3 clients, Salesforce clients, cached secrets (Powertools
    Parameters caches a secret for minutes of *real* time, which is hours of a chaos run's time)."""
    from aws_lambda_powertools.utilities import parameters
    from sfsync import wiring
    from sfsync.store import aws as sfsync_aws

    sfsync_aws.reset_clients()
    wiring._clients.clear()
    parameters.clear_caches()


@dataclass
class RetrySleeps:
    """What the quietened back-offs asked for (seconds), by whom."""

    botocore: list[float] = field(default_factory=list)
    salesforce: list[float] = field(default_factory=list)


@contextmanager
def quiet_retries() -> Iterator[RetrySleeps]:
    """botocore's retry back-off and the Salesforce adapter's take no real time (they are recorded).

    The run's time is virtual: a back-off of seconds changes nothing at the minute scale the schedule
    works on, but real sleeps would make one 5xx storm cost minutes of wall time."""
    import botocore.endpoint
    import sfsync.salesforce as sfsync_salesforce

    slept = RetrySleeps()
    fake_time = types.SimpleNamespace(**{name: getattr(time, name) for name in dir(time) if not name.startswith("_")})
    fake_time.sleep = slept.botocore.append
    original_client_from_secret = sfsync_salesforce.client_from_secret

    def client_from_secret(secret: Mapping[str, Any], **kwargs: Any) -> Any:
        kwargs.setdefault("sleep", slept.salesforce.append)
        return original_client_from_secret(secret, **kwargs)

    with (
        mock.patch.object(botocore.endpoint, "time", fake_time),
        mock.patch.object(sfsync_salesforce, "client_from_secret", client_from_secret),
    ):
        yield slept


@contextmanager
def quiet_engine_logs(level: str = "WARNING") -> Iterator[None]:
    """The engine's logger at ``level`` for the run (the template's ``LogLevel`` is read when the
    logger is created, once per process here, not per invocation as in Lambda): a chaos run's INFO
    lines cost a good share of its CPU and nobody reads them."""
    from sfsync.core.observability import logger

    previous = logger.log_level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


@contextmanager
def quiet_moto_logs() -> Iterator[None]:
    """moto's Step Functions interpreter logs a stopped or timed-out execution's state tree (pages of
    text per fault): expected here, so its logger is silenced for the run."""
    import logging

    logger = logging.getLogger("moto.stepfunctions")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


# ---------------------------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Metric:
    """One EMF value: when (virtual ms), name, value, dimensions."""

    at_ms: int
    name: str
    value: float
    dimensions: dict[str, str]


class MetricSink(io.TextIOBase):
    """Replaces ``sys.stdout`` during a run: EMF blobs (lines holding ``"_aws"``) become :class:`Metric`
    rows stamped with the virtual time; other lines are kept in a short ring (shown when a schedule fails)."""

    def __init__(self, now_ms: Callable[[], int], *, keep_lines: int = 300) -> None:
        super().__init__()
        self._now_ms = now_ms
        self._buffer = ""
        self._lock = threading.Lock()
        self.metrics: list[Metric] = []
        self.lines: deque[str] = deque(maxlen=keep_lines)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._buffer += text
            while "\n" in self._buffer:
                line, self._buffer = self._buffer.split("\n", 1)
                self._line(line)
        return len(text)

    def _line(self, line: str) -> None:
        if '"_aws"' not in line:
            if line.strip():
                self.lines.append(line)
            return
        try:
            blob = json.loads(line)
        except ValueError:
            self.lines.append(line)
            return
        at = self._now_ms()
        for directive in blob.get("_aws", {}).get("CloudWatchMetrics", []):
            dims = {name: str(blob.get(name)) for group in directive.get("Dimensions", []) for name in group}
            for metric in directive.get("Metrics", []):
                values = blob.get(metric["Name"])
                for value in values if isinstance(values, list) else [values]:
                    if isinstance(value, int | float):
                        self.metrics.append(Metric(at, metric["Name"], float(value), dims))


@contextmanager
def captured_metrics(sink: MetricSink) -> Iterator[MetricSink]:
    import sys

    previous = sys.stdout
    sys.stdout = sink
    try:
        yield sink
    finally:
        sys.stdout = previous


# ---------------------------------------------------------------------------------------------- invocations


@dataclass(frozen=True)
class InvocationRecord:
    """One handler call as Lambda's metrics see it: when (virtual ms), which function, what, its error."""

    at_ms: int
    function: str  # logical id
    detail: str  # the step, the object or the event kind
    error_type: str | None
    error: str = ""


@dataclass
class _Current:
    function: str
    event: Any
    kill_at_write: int | None = None
    writes: int = 0
    on_kill: Callable[[], None] | None = None


@dataclass
class Throttle:
    """Answer the next ``remaining`` record-table reads and writes of ``function`` with throttling."""

    function: str
    tables: frozenset[str]
    remaining: int
    on_first: Callable[[], None] | None = None
    answered: int = 0


#: A fault's hook on one invocation: given (function logical id, event), return what to do or None.
Hook = Callable[[str, Any], "Action | None"]


@dataclass
class Action:
    """What happens to a matched invocation: ``kill`` before/after/mid (at DynamoDB write ``at_write``),
    and/or ``after`` (a callable run once the real handler returned, e.g. stopping its execution)."""

    kill: str | None = None  # "before" | "after" | "mid"
    at_write: int = 1
    after: Callable[[Any], None] | None = None
    on_fire: Callable[[], None] | None = None


def detail_of(function: str, event: Any) -> str:
    if not isinstance(event, Mapping):
        return ""
    if "step" in event:
        return str(event["step"])
    if "object" in event:
        return str(event["object"])
    if "Records" in event:
        return f"stream x{len(event['Records'])}"
    for key in ("sweep", "retry", "resync"):
        if key in event:
            return key
    return "schedule" if event.get("detail-type") == "Scheduled Event" else ""


class Interceptor:
    """Wraps every handler the local runtime calls (see the module docstring)."""

    def __init__(self, now_ms: Callable[[], int]) -> None:
        self._now_ms = now_ms
        self._local = threading.local()
        self._lock = threading.Lock()
        self.hooks: list[Hook] = []
        self.records: list[InvocationRecord] = []
        self.in_flight = 0

    def install(self, runtime: Any) -> Callable[[], None]:
        original = runtime._handler

        def handler_for(spec: Any) -> Callable[[Any, Any], Any]:
            real = original(spec)

            def call(event: Any, context: Any) -> Any:
                return self._call(spec.logical_id, real, event, context)

            return call

        runtime._handler = handler_for

        def uninstall() -> None:
            runtime.__dict__.pop("_handler", None)

        return uninstall

    @property
    def current(self) -> _Current | None:
        stack: list[_Current] = getattr(self._local, "stack", [])
        return stack[-1] if stack else None

    def _action(self, function: str, event: Any) -> tuple[Hook, Action] | None:
        with self._lock:
            for hook in list(self.hooks):
                action = hook(function, event)
                if action is not None:
                    self.hooks.remove(hook)
                    return hook, action
        return None

    def _call(self, function: str, real: Callable[[Any, Any], Any], event: Any, context: Any) -> Any:
        matched = self._action(function, event)
        action = matched[1] if matched else None
        current = _Current(function, event)
        fired = False

        def fire() -> None:
            nonlocal fired
            fired = True
            if action is not None and action.on_fire is not None:
                action.on_fire()

        stack: list[_Current] = getattr(self._local, "stack", None) or []
        self._local.stack = stack
        stack.append(current)
        with self._lock:
            self.in_flight += 1
        error: BaseException | None = None
        try:
            if action is not None and action.kill == "before":
                fire()
                raise TaskKilled(f"{function} killed before its work")
            if action is not None and action.kill == "mid":
                current.kill_at_write = action.at_write
                current.on_kill = fire
            result = real(event, context)
            if action is not None and action.after is not None:
                action.after(event)
                if action.kill is None:
                    fire()
            if action is not None and action.kill == "after":
                fire()
                raise TaskKilled(f"{function} killed after its work (its result lost)")
            return result
        except Exception as exc:
            error = exc
            raise
        finally:
            stack.pop()
            with self._lock:
                self.in_flight -= 1
                if matched is not None and not fired:
                    self.hooks.insert(0, matched[0])  # it did not happen here: the next matching call
                self.records.append(
                    InvocationRecord(
                        self._now_ms(),
                        function,
                        detail_of(function, event),
                        type(error).__name__ if error is not None else None,
                        str(error)[:300] if error is not None else "",
                    )
                )

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Until no handler runs (a stopped execution's worker may still be finishing its Task)."""
        deadline = time.monotonic() + timeout
        while self.in_flight:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True


# ---------------------------------------------------------------------------------------------- DynamoDB


class DynamoFaults:
    """Patches moto's DynamoDB handler: throttling answers and kills after N writes (see the module docstring).

    The hook is the authorisation check moto runs inside its error handling for every request, so an
    ``HTTPException`` raised there becomes the service's error response (botocore parses and retries
    it as DynamoDB's), while :class:`TaskKilled` propagates to the invocation making the request."""

    def __init__(self, interceptor: Interceptor) -> None:
        self._interceptor = interceptor
        self._lock = threading.Lock()
        self.throttles: list[Throttle] = []

    @contextmanager
    def installed(self) -> Iterator[DynamoFaults]:
        from moto.dynamodb.responses import DynamoHandler

        original = DynamoHandler._authenticate_and_authorize_normal_action
        faults = self

        def check(handler: Any, *args: Any, **kwargs: Any) -> Any:
            faults._before(handler._get_action(), getattr(handler, "params", None) or {})
            return original(handler, *args, **kwargs)

        with mock.patch.object(DynamoHandler, "_authenticate_and_authorize_normal_action", check):
            yield self

    def _before(self, action: str, params: Mapping[str, Any]) -> None:
        if action not in THROTTLED_ACTIONS:
            return
        current = self._interceptor.current
        if current is None:
            return
        tables = set(params.get("RequestItems") or {}) | ({params["TableName"]} if "TableName" in params else set())
        with self._lock:
            for throttle in self.throttles:
                if throttle.remaining > 0 and current.function == throttle.function and tables & throttle.tables:
                    throttle.remaining -= 1
                    throttle.answered += 1
                    if throttle.answered == 1 and throttle.on_first is not None:
                        throttle.on_first()
                    raise _throttled()
        if action not in WRITE_ACTIONS:
            return
        current.writes += 1
        if current.kill_at_write is not None and current.writes >= current.kill_at_write:
            current.kill_at_write = None
            if current.on_kill is not None:
                current.on_kill()
            raise TaskKilled(f"{current.function} killed in the middle of its work (after {current.writes - 1} writes)")


def _throttled() -> Exception:
    from moto.dynamodb.exceptions import DynamodbException

    return DynamodbException(
        THROTTLED, message="The level of configured provisioned throughput for the table was exceeded."
    )


@contextmanager
def fast_transactions() -> Iterator[None]:
    """moto's ``TransactWriteItems`` without its deep copy of every table it touches.

    moto backs a transaction out by deep-copying each table it names first (the whole table, every
    time): with the state table's cycle history growing through a run, each lease operation cost tens
    of milliseconds more per hour simulated.  Here only the items the transaction names are copied, and
    put back (or removed) when moto cancels it; moto's own restore then puts the same table object back.
    The answers are unchanged.  (The local stack could adopt this next to its other moto speed-ups.)
    """
    import copy

    import moto.dynamodb.models as dynamodb_models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    original = dynamodb_models.DynamoDBBackend.transact_write_items
    real_deepcopy = copy.deepcopy

    def deepcopy(value: Any, memo: Any = None) -> Any:
        return value if isinstance(value, Table) else real_deepcopy(value, memo)

    fake_copy = types.SimpleNamespace(deepcopy=deepcopy, copy=copy.copy)

    def transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> Any:
        saved: list[tuple[Any, Any, Any, Any]] = []
        seen: set[tuple[str, str]] = set()
        for entry in transact_items if isinstance(transact_items, list) else []:
            if not isinstance(entry, dict) or len(entry) != 1:
                continue
            op = next(iter(entry.values()))
            table = backend.tables.get(op.get("TableName")) if isinstance(op, dict) else None
            source = (op.get("Key") or op.get("Item") or {}) if table is not None else {}
            if table is None or table.hash_key_attr not in source:
                continue
            hash_value = DynamoType(source[table.hash_key_attr])
            range_value = None
            if table.range_key_attr is not None:
                if table.range_key_attr not in source:
                    continue
                range_value = DynamoType(source[table.range_key_attr])
            ident = (table.name, repr((source.get(table.hash_key_attr), source.get(table.range_key_attr))))
            if ident in seen:
                continue
            seen.add(ident)
            saved.append((table, hash_value, range_value, real_deepcopy(table.get_item(hash_value, range_value))))
        try:
            return original(backend, transact_items)
        except Exception:
            for table, hash_value, range_value, item in reversed(saved):
                if range_value is None:
                    if item is None:
                        table.items.pop(hash_value, None)
                    else:
                        table.items[hash_value] = item
                elif item is None:
                    table.items.get(hash_value, {}).pop(range_value, None)
                else:
                    table.items[hash_value][range_value] = item
            raise

    with (
        mock.patch.object(dynamodb_models, "copy", fake_copy),
        mock.patch.object(dynamodb_models.DynamoDBBackend, "transact_write_items", transact_write_items),
    ):
        yield


# ---------------------------------------------------------------------------------------------- Step Functions


def wait_for_execution_end(execution_arn: str, account_id: str, region: str, *, timeout: float) -> str:
    """The execution's status once it is no longer RUNNING (read from moto's backend: polling
    ``DescribeExecution`` through boto3 every few milliseconds cost more CPU than the execution itself)."""
    from moto.stepfunctions.responses import get_backend

    backend = get_backend(account_id, region)
    deadline = time.monotonic() + timeout
    while True:
        status = str(backend.describe_execution(execution_arn).status)
        if status != "RUNNING" or time.monotonic() > deadline:
            return status
        time.sleep(0.01)


def time_out_execution(execution_arn: str, account_id: str, region: str) -> None:
    """End a running execution ``TIMED_OUT``: what moto does itself when an execution outlives its
    ``TimeoutSeconds`` (it measures real seconds; a chaos run's hours are virtual)."""
    from moto.stepfunctions.responses import get_backend

    execution = get_backend(account_id, region).describe_execution(execution_arn)
    worker = getattr(execution, "exec_worker", None)
    if worker is None:
        raise RuntimeError(f"execution {execution_arn} has no worker: is the state machine executing?")
    worker.env.set_timed_out()


__all__ = [
    "THROTTLED",
    "Action",
    "DynamoFaults",
    "EngineClock",
    "Interceptor",
    "InvocationRecord",
    "Metric",
    "MetricSink",
    "RetrySleeps",
    "TaskKilled",
    "Throttle",
    "VirtualWaits",
    "captured_metrics",
    "detail_of",
    "engine_clock",
    "fast_transactions",
    "quiet_engine_logs",
    "quiet_moto_logs",
    "quiet_retries",
    "reset_engine_caches",
    "time_out_execution",
    "virtual_waits",
    "wait_for_execution_end",
]
