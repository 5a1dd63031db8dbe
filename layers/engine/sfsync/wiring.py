"""Building the adapters a handler passes to the engine (the handlers' dependency injection).

Each ``*_deps`` function reads the configuration once, builds real adapters (boto3, PynamoDB,
the Salesforce client) and returns a small dataclass; tests build the same dataclasses with their
own adapters and call the handlers' plain ``handle(event, context, deps)``.  ``run_<function>`` is each
handler's one engine call: it checks the event (before any adapter is built), builds the deps and runs
the use case.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from sfsync.core import clock
from sfsync.core.config import Settings, configured_secret_arn, load_secret, load_settings
from sfsync.core.events import (
    FullSyncStepEvent,
    ObjectSyncEvent,
    RetryEvent,
    SqsBatchEvent,
    SweepEvent,
    parse_dispatcher_event,
    parse_event,
    parse_writeback_event,
)
from sfsync.core.exceptions import ChangeEventNotApplied, ConfigurationError, RecordNotWrittenBack
from sfsync.core.observability import bind, count, logger
from sfsync.dispatch.copies import FullCopies
from sfsync.dispatch.dispatcher import run_tick
from sfsync.fullcopy.deps import FullSyncDeps
from sfsync.fullcopy.steps import run_step
from sfsync.inbound.cycle import CyclePort, CycleStores, lease_seconds_for, run_object_cycle
from sfsync.inbound.starts import CycleStarter
from sfsync.salesforce.ports import EconomyPort, WriteBackPort
from sfsync.store.aws import LambdaInvoker, dynamodb_client, stepfunctions_client
from sfsync.store.copies import CopyStore
from sfsync.store.org_state import OrgStateStore
from sfsync.store.records import RecordStore
from sfsync.store.state import StateStore
from sfsync.store.stepfunctions import FullCopyStarter
from sfsync.writeback import WRITEBACK_SETTINGS, WriteBackDeps, process_batch, run_retry, run_sweep

if TYPE_CHECKING:
    from sfsync.changes.apply import ChangeDeps


@dataclass(frozen=True)
class ObjectSyncDeps:
    settings: Settings
    sf: CyclePort
    stores: CycleStores
    clock: clock.Clock


@dataclass(frozen=True)
class DispatcherDeps:
    settings: Settings
    state: StateStore
    invoker: CycleStarter
    clock: clock.Clock
    #: Salesforce (change probe, API usage); the client authenticates on its first call only.
    sf: EconomyPort
    org: OrgStateStore
    #: the copy documents and the full-sync workflow (first copies, re-syncs)
    copies: FullCopies


_clients: dict[str, Any] = {}


def salesforce_client(secret: Mapping[str, Any]) -> Any:
    """One Salesforce client per distinct secret per process (keeps its token between invocations)."""
    from sfsync.salesforce import client_from_secret

    key = hashlib.sha256(json.dumps(secret, sort_keys=True, default=str).encode()).hexdigest()
    client = _clients.get(key)
    if client is None:
        _clients.clear()
        client = _clients[key] = client_from_secret(secret)
    return client


def stores_for(settings: Settings) -> CycleStores:
    """The state, record and copy stores of a cycle (``settings`` already checked by :func:`configuration`).

    The record store keeps the conditional per-item put by default (``exclusive_writer=False``):
    the full copy shares it.  An incremental cycle batches its pages only when it is provably the
    object's only writer - it holds the lease and the copy documents (``copies``) show no full
    copy under way - and decides that page by page (``sfsync.inbound.cycle._sole_writer``).
    """
    client = dynamodb_client()
    return CycleStores(
        state=StateStore(settings.state_table),
        records=RecordStore(
            client,
            settings.record_tables,
            errors_table=settings.errors_table,
            error_retention_days=settings.error_retention_days,
        ),
        copies=CopyStore(client, settings.state_table),
    )


@contextmanager
def _reported_configuration_errors() -> Iterator[None]:
    try:
        yield
    except ConfigurationError as exc:
        logger.error("configuration error", extra={"error": str(exc)})
        count("ConfigurationError")
        raise


def configuration(*required: str, secret: bool = True) -> tuple[Settings, dict[str, Any]]:
    """The function's settings and its Salesforce secret, read once and checked together.

    Every problem - of the environment, of the write-back options, of reading the secret, of the
    secret's content - comes back in ONE :class:`ConfigurationError` (logged, ``ConfigurationError``
    counted), so an operator fixes them all in one go and no function starts half-configured.
    """
    from sfsync.core.exceptions import SalesforceConfigError
    from sfsync.salesforce.credentials import SalesforceCredentials

    with _reported_configuration_errors():
        problems: list[str] = []
        settings: Settings | None = None
        try:
            settings = load_settings()
            settings.require(*required)
        except ConfigurationError as exc:
            problems.append(str(exc))
        value: dict[str, Any] = {}
        arn = settings.secret_arn if settings is not None else configured_secret_arn()
        if secret and arn:
            try:
                value = load_secret(str(arn))
                SalesforceCredentials.from_secret(value)
            except ConfigurationError as exc:
                problems.append(str(exc))
            except SalesforceConfigError as exc:
                problems.append(f"secret {arn}: {exc}")
        if problems or settings is None:
            raise ConfigurationError("; ".join(problems))
        return settings, value


#: What a function that writes record tables needs besides its secret.
_RECORD_SETTINGS = ("secret_arn", "state_table", "errors_table", "record_tables")


def object_sync_deps() -> ObjectSyncDeps:
    settings, secret = configuration(*_RECORD_SETTINGS)
    stores = stores_for(settings)
    return ObjectSyncDeps(settings, salesforce_client(secret), stores, clock.engine_clock())


def dispatcher_deps() -> DispatcherDeps:
    settings, secret = configuration("object_sync_function", "secret_arn", "full_sync_state_machine_arn")
    return DispatcherDeps(
        settings,
        StateStore(settings.state_table),
        LambdaInvoker(str(settings.object_sync_function)),
        clock.engine_clock(),
        salesforce_client(secret),
        OrgStateStore(settings.state_table),
        FullCopies(
            CopyStore(dynamodb_client(), settings.state_table),
            FullCopyStarter(str(settings.full_sync_state_machine_arn)),
        ),
    )


class _LazyStepFunctions:
    """A Step Functions client made on first use: only ``continue_as_new`` needs one."""

    def __getattr__(self, name: str) -> Any:
        return getattr(stepfunctions_client(), name)


def full_sync_deps() -> FullSyncDeps:
    """The adapters of FullSyncFunction (every Task state of the full-sync workflow)."""
    settings, secret = configuration(*_RECORD_SETTINGS)
    stores = stores_for(settings)
    return FullSyncDeps(
        settings=settings,
        sf=salesforce_client(secret),
        state=stores.state,
        records=stores.records,
        dynamodb=dynamodb_client(),
        clock=clock.engine_clock(),
        stepfunctions=_LazyStepFunctions(),
    )


def change_events_deps() -> ChangeDeps:
    """The adapters of ChangeEventFunction (the Event Relay queue's batches)."""
    from sfsync.changes.apply import ChangeDeps
    from sfsync.store.event_errors import EventErrors

    settings, secret = configuration(*_RECORD_SETTINGS)
    client = dynamodb_client()
    stores = stores_for(settings)
    invoker = LambdaInvoker(str(settings.object_sync_function)) if settings.object_sync_function else None
    return ChangeDeps(
        settings=settings,
        sf=salesforce_client(secret),
        records=stores.records,
        state=stores.state,
        errors=EventErrors(client, settings.errors_table, retention_days=settings.error_retention_days),
        clock=clock.engine_clock(),
        invoker=invoker,
    )


# -- one engine call per handler: the event checked (before any adapter is built), the deps, the use case


def run_object_sync(event: Any, context: Any, deps: ObjectSyncDeps | None = None) -> dict[str, Any]:
    """ObjectSyncFunction: one incremental cycle of the event's object, its lease sized to the invocation."""
    request = parse_event(ObjectSyncEvent, event)
    deps = deps or object_sync_deps()
    left = remaining_ms(context)
    result = run_object_cycle(
        configured_object(deps.settings, request.object),
        request.cycle_id,
        settings=deps.settings,
        sf=deps.sf,
        store=deps.stores,
        now=deps.clock,
        reason=request.reason,
        time_left_ms=(lambda: remaining_ms(context) or 0) if left is not None else None,
        lease_seconds=lease_seconds_for(left),
    )
    return result.to_dict()


def run_dispatcher(event: Any, deps: DispatcherDeps | None = None) -> dict[str, Any]:
    """DispatcherFunction: the schedule's tick, or an operator's re-sync request and then the tick."""
    request = parse_dispatcher_event(event)
    deps = deps or dispatcher_deps()
    return run_tick(
        request,
        deps.clock.now(),
        deps.settings,
        deps.state,
        deps.invoker,
        copies=deps.copies,
        sf=deps.sf,
        org=deps.org,
    )


def run_full_sync_step(event: Any, deps: FullSyncDeps | None = None) -> dict[str, Any]:
    """FullSyncFunction: the step a Task state of the full-sync workflow names (``InvalidEvent`` for a
    shapeless event before any adapter is built; the step validates its own input)."""
    request = parse_event(FullSyncStepEvent, event)
    bind(step=request.step)
    return run_step(event, deps or full_sync_deps())


def writeback_deps() -> WriteBackDeps:
    """The adapters of WriteBackFunction: settings, DynamoDB, the clock, and the Salesforce client made
    on first use (its secret is read then, cached per secret).

    Invalid write-back options (``SFSYNC_WRITEBACK``) do not stop the pending markers: the settings
    are then read without them and the problem is raised once the markers are down (with every
    other configuration problem, :func:`configuration`).
    """
    problem: ConfigurationError | None = None
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        problem = exc
        try:
            settings = load_settings({k: v for k, v in os.environ.items() if k != "SFSYNC_WRITEBACK"})
        except ConfigurationError:
            raise exc from None  # more than the write-back options is wrong: nothing can be marked
    settings.require("state_table", "errors_table", "record_tables")

    checked: list[tuple[Settings, dict[str, Any]]] = []

    def checked_configuration() -> tuple[Settings, dict[str, Any]]:
        """:func:`configuration` (every problem at once, counted), run once for this invocation."""
        if not checked:
            checked.append(configuration(*WRITEBACK_SETTINGS))
        return checked[0]

    def salesforce() -> WriteBackPort:
        _, secret = checked_configuration()
        client: WriteBackPort = salesforce_client(secret)
        return client

    return WriteBackDeps(
        settings,
        None,
        dynamodb_client(),
        clock.engine_clock(),
        sf_factory=salesforce,
        config_problem=problem,
        config_check=checked_configuration,
    )


def run_writeback(event: Any, context: Any, deps: WriteBackDeps | None = None) -> dict[str, Any]:
    """WriteBackFunction: the sweep, an operator's retry, or a DynamoDB stream batch (local edits ->
    Salesforce), whose records the batch could not finish are reported as batch item failures."""
    request = parse_writeback_event(event)
    if isinstance(request, SweepEvent):
        return run_sweep(request, deps or writeback_deps()).to_dict()
    if isinstance(request, RetryEvent):
        return run_retry(request, deps or writeback_deps())
    records = event["Records"]
    count("WriteBackRecordsSeen", len(records))
    failed = process_batch(records, deps or writeback_deps()).failed
    if failed:
        count("WriteBackRecordsFailed", len(failed))
        logger.warning("write-back records reported for retry", extra={"failed": len(failed)})
    return partial_batch_response(
        event,
        context,
        EventType.DynamoDBStreams,
        failed,
        key=lambda record: record.dynamodb.sequence_number if record.dynamodb else None,
        error=stream_record_retried,
    )


def run_change_events(event: Any, context: Any, deps: ChangeDeps | None = None) -> dict[str, Any]:
    """ChangeEventFunction: an SQS batch of change events applied at once; the messages it could not
    finish are reported as batch item failures (SQS delivers them again, then dead-letters them)."""
    from sfsync.changes.apply import Message, process_messages

    batch = parse_event(SqsBatchEvent, event)
    messages = [Message(record.messageId, record.body) for record in batch.Records]
    failed = set(process_messages(messages, deps or change_events_deps()).failed)
    if failed:
        logger.warning("change-event messages reported for retry", extra={"failed": len(failed)})
    return partial_batch_response(
        event,
        context,
        EventType.SQS,
        failed,
        key=lambda record: record.message_id,
        error=change_event_retried,
    )


def stream_record_retried(sequence: str) -> RecordNotWrittenBack:
    """The error a stream record the write-back could not finish is reported with (one engine class)."""
    return RecordNotWrittenBack(f"stream record {sequence} is retried")


def change_event_retried(message_id: str) -> ChangeEventNotApplied:
    """The error a change-event message the batch could not finish is reported with."""
    return ChangeEventNotApplied(f"change-event message {message_id} is retried")


def partial_batch_response(
    event: Any,
    context: Any,
    event_type: EventType,
    failed: Collection[str],
    *,
    key: Callable[[Any], str | None],
    error: Callable[[str], Exception],
) -> dict[str, Any]:
    """Powertools' partial-batch response for a batch the engine processed as a whole: the records
    whose ``key`` is in ``failed`` are reported as batch item failures (``ReportBatchItemFailures``)."""

    def record_handler(record: Any) -> None:
        record_key = key(record)
        if record_key in failed:
            raise error(str(record_key))

    processor = BatchProcessor(event_type=event_type)
    return dict(
        process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    )


def configured_object(settings: Settings, name: str) -> str:
    """``name`` if it is a configured object; otherwise a counted :class:`ConfigurationError`."""
    with _reported_configuration_errors():
        return settings.registry.get(name).name


def remaining_ms(context: Any) -> int | None:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return int(getter()) if callable(getter) else None


__all__ = [
    "DispatcherDeps",
    "ObjectSyncDeps",
    "configuration",
    "configured_object",
    "dispatcher_deps",
    "full_sync_deps",
    "object_sync_deps",
    "partial_batch_response",
    "remaining_ms",
    "run_change_events",
    "run_dispatcher",
    "run_full_sync_step",
    "run_object_sync",
    "run_writeback",
    "salesforce_client",
    "stores_for",
    "writeback_deps",
]
