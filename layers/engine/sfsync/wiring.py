"""Building the adapters a handler passes to the engine (the handlers' dependency injection).

Each ``*_deps`` function reads the configuration once, builds real adapters (boto3, PynamoDB,
the Salesforce client) and returns a small dataclass; tests build the same dataclasses with their
own adapters and call the handlers' plain ``handle(event, context, deps)``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sfsync import clock
from sfsync.aws import LambdaInvoker, dynamodb_client, stepfunctions_client
from sfsync.config import Settings, configured_secret_arn, load_secret, load_settings
from sfsync.cycle import CycleStores, SalesforcePort
from sfsync.dispatcher import EconomyClient, FullCopies, Invoker
from sfsync.exceptions import ConfigurationError
from sfsync.fullsync import CopyStore, FullSyncDeps
from sfsync.observability import count, logger
from sfsync.org_state import OrgStateStore
from sfsync.records import RecordStore
from sfsync.state import StateStore
from sfsync.stepfunctions import FullCopyStarter
from sfsync.writeback import WRITEBACK_SETTINGS, WriteBackDeps, WriteBackSalesforce

if TYPE_CHECKING:
    from sfsync.changes.apply import ChangeDeps


@dataclass(frozen=True)
class ObjectSyncDeps:
    settings: Settings
    sf: SalesforcePort
    stores: CycleStores
    clock: clock.Clock


@dataclass(frozen=True)
class DispatcherDeps:
    settings: Settings
    state: StateStore
    invoker: Invoker
    clock: clock.Clock
    #: Salesforce (change probe, API usage); the client authenticates on its first call only.
    sf: EconomyClient
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
    """The state, record and copy stores of a cycle.

    The record store keeps the conditional per-item put by default (``exclusive_writer=False``):
    the full copy shares it.  An incremental cycle batches its pages only when it is provably the
    object's only writer - it holds the lease and the copy documents (``copies``) show no full
    copy under way - and decides that page by page (``sfsync.cycle._sole_writer``).
    """
    settings.require("state_table", "errors_table", "record_tables")
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
    from sfsync.salesforce.credentials import SalesforceCredentials
    from sfsync.salesforce.errors import SalesforceConfigError

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
    from sfsync.changes.errors import EventErrors

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

    def salesforce() -> WriteBackSalesforce:
        _, secret = configuration(*WRITEBACK_SETTINGS)  # every problem at once, counted
        client: WriteBackSalesforce = salesforce_client(secret)
        return client

    return WriteBackDeps(
        settings,
        None,
        dynamodb_client(),
        clock.engine_clock(),
        sf_factory=salesforce,
        config_problem=problem,
        config_check=lambda: configuration(*WRITEBACK_SETTINGS),
    )


def configured_object(settings: Settings, name: str) -> str:
    """``name`` if it is a configured object; otherwise a counted :class:`ConfigurationError`."""
    if name not in settings.registry:
        count("ConfigurationError")
        message = f"object {name!r} is not configured for sync (configured: {', '.join(settings.registry.names())})"
        logger.error("configuration error", extra={"error": message})
        raise ConfigurationError(message)
    return name


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
    "remaining_ms",
    "salesforce_client",
    "stores_for",
    "writeback_deps",
]
