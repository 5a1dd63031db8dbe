"""What every stage of the write-back shares: its constants, its Salesforce and store ports, its
adapters, the typed stream change and the outcome of a batch.  No logic beyond small value helpers.

The key layout of what the write-back stores (pending markers, intents, open rows) belongs to its
store adapter, :mod:`sfsync.store.writeback`."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sfsync.core import clock as sfclock
from sfsync.core.config import Settings
from sfsync.core.registry import ObjectSpec
from sfsync.salesforce.client import (
    MAX_COLLECTION_RECORDS,
    MAX_COMPOSITE_QUERIES,
    MAX_COMPOSITE_SUBREQUESTS,
    MAX_RETRIEVE_IDS,
)
from sfsync.salesforce.ports import WriteBackPort
from sfsync.store.writeback import DELETE_SK

MAX_COLLECTION = MAX_COLLECTION_RECORDS
MAX_RETRIEVE = MAX_RETRIEVE_IDS
MAX_COMPOSITE = MAX_COMPOSITE_SUBREQUESTS
MAX_COMPOSITE_COLLECTIONS = MAX_COMPOSITE_QUERIES  # collections count against the same 5 as queries
MAX_QUERY_IDS = 200
LOCK_RETRIES = 3
LOCK_BACKOFF_SECONDS = 0.2
DESCRIBE_MAX_AGE_SECONDS = 900
CALL_OPTIONS_CLIENT = "sfsync"
WRITEBACK_CYCLE_ID = "writeback"
ERROR_ATTRIBUTE = "_writeback_error"
CREATED_ID_ATTRIBUTE = "_created_id"
LOCAL_STATUS_ATTRIBUTE = "_local_status"
#: What the write-back needs of its configuration (its secret included).
WRITEBACK_SETTINGS = ("secret_arn", "state_table", "errors_table", "record_tables")
#: a create intent older than this (Salesforce's clock) is looked for from this far back
INTENT_LOOKBACK = dt.timedelta(minutes=10)
LAG_SAMPLES = 100
#: Salesforce codes retried inside the invocation and then by Lambda.
RETRYABLE_CODES = frozenset({"UNABLE_TO_LOCK_ROW"})

# -- re-drives (sweep, retry): the back-off of a pending change whose push keeps failing ------------

#: A change pending longer than this is the sweep's (the stream path's own retries are over by then).
OVERDUE = dt.timedelta(minutes=10)
#: Back-off of a re-drive that failed: the first wait, doubling up to the cap.
BACKOFF_FIRST = dt.timedelta(minutes=5)
BACKOFF_CAP = dt.timedelta(hours=4)
#: After this many failed re-drives (about a day of them) the record is listed as ``failed``.
FAILED_AFTER_ATTEMPTS = 10


def next_attempt(attempts: int, now: dt.datetime) -> dt.datetime:
    """When the next re-drive of an item that failed ``attempts`` times may run."""
    wait = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** max(0, min(attempts - 1, 20)))
    return now + wait


# -- ports ---------------------------------------------------------------------------------------


class WriteBackStore(Protocol):
    """What the stages read and write in DynamoDB (:class:`sfsync.store.writeback.WriteBackTables`).

    Item keys are DynamoDB keys (``{"Id": {"S": key}}``, or :meth:`delete_key` for a delete intent);
    items come back as Python values.  A conditional write that fails returns False (``mark``:
    ``held`` / ``absent``); an item DynamoDB refuses (``put_synced``) raises
    :class:`~sfsync.core.exceptions.UnstorableRecord`; any other failure raises
    :class:`sfsync.core.exceptions.StoreError` (:class:`~sfsync.core.exceptions.StoreThrottled` when throttled).
    """

    def table(self, spec: ObjectSpec) -> str: ...

    def get_items(self, table: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    def update(
        self,
        table: str,
        key: str,
        *,
        sets: Mapping[str, Any],
        removes: Iterable[str] = (),
        expect: Mapping[str, Any] | None = None,
        must_exist: bool = True,
    ) -> bool: ...

    def put_synced(self, table: str, item: dict[str, Any]) -> bool: ...

    def record(self, obj: str, record_id: str, kind: str, when: dt.datetime, tag: str, **details: Any) -> None: ...

    def mark(self, table: str, key: dict[str, Any], seq: str, owner: str, now: dt.datetime) -> str: ...

    def claim(self, table: str, key: dict[str, Any], owner: str, now: dt.datetime, *, due_only: bool) -> bool: ...

    def back_off(
        self, table: str, key: dict[str, Any], seq: str | None, attempts: int, retry_at: dt.datetime
    ) -> bool: ...

    def query_pending(self, table: str, obj: str, before: str | None) -> tuple[int, list[str]]: ...

    def delete_key(self, obj: str, record_id: str) -> dict[str, Any]: ...

    def delete_intents(self, obj: str) -> list[dict[str, Any]]: ...

    def get_delete_intent(self, obj: str, record_id: str) -> dict[str, Any] | None: ...

    def settle_delete_intent(self, obj: str, record_id: str, seq: str | None, *, refused: bool) -> bool: ...

    def open_problem(
        self,
        obj: str,
        record_id: str,
        kind: str,
        *,
        code: str,
        message: str,
        fields: Sequence[str],
        since: dt.datetime,
        now: dt.datetime,
        attempts: int | None = None,
    ) -> None: ...

    def resolve_problem(self, obj: str, record_id: str) -> None: ...

    def open_problems(self, obj: str) -> list[dict[str, Any]]: ...

    def get_intent(self, obj: str, local_id: str) -> dict[str, Any] | None: ...

    def put_intent(self, obj: str, local_id: str, intent_at: dt.datetime) -> None: ...

    def intent_created(self, obj: str, local_id: str, sf_id: str) -> None: ...


@dataclass(frozen=True)
class WriteBackDeps:
    """The write-back's adapters.  ``sf`` may be None with ``sf_factory`` set: the client (and its
    secret) is then made on first use, after the pending markers are down.  ``config_problem``: the
    configuration error found while loading settings without the write-back options (raised once
    the markers are down, so a bad ``WriteBackOptions`` cannot lose a local change);
    ``config_check`` (:func:`sfsync.wiring.writeback_deps`) is called first, to report every
    configuration problem at once."""

    settings: Settings
    sf: WriteBackPort | None
    dynamodb: Any
    clock: sfclock.Clock
    sleep: Callable[[float], None] = time.sleep
    wall_clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    sf_factory: Callable[[], WriteBackPort] | None = None
    config_problem: Exception | None = None
    config_check: Callable[[], object] | None = None


# -- values --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamChange:
    """One stream record (or one pending item a re-drive read), decoded."""

    sequence: str
    event: str
    table: str
    key: str
    new: dict[str, Any] | None
    old: dict[str, Any] | None
    at: dt.datetime | None
    by_service: bool = False

    @property
    def image(self) -> dict[str, Any] | None:
        return self.new if self.new is not None else self.old

    @property
    def mark_key_suffix(self) -> str:
        """The key of the change's pending marker within its object: the item's key, or (a REMOVE)
        the key of its delete intent."""
        return DELETE_SK.format(record_id=self.key) if self.event == "REMOVE" else self.key


@dataclass
class Counters:
    pushed: int = 0
    created: int = 0
    conflicts: int = 0
    refused: int = 0
    rejected: int = 0
    retried: int = 0
    redirected: int = 0
    deleted: int = 0
    ignored: int = 0
    lag_seconds: list[float] = field(default_factory=list)


@dataclass
class BatchResult:
    """The outcome of one stream batch: failed sequence numbers and counters per object."""

    failed: set[str] = field(default_factory=set)
    counters: dict[str, Counters] = field(default_factory=dict)
    api_calls: int = 0

    def count(self, obj: str) -> Counters:
        return self.counters.setdefault(obj, Counters())


def instant(value: Any) -> dt.datetime | None:
    """An ISO instant of an item attribute or a Salesforce row; None when absent or unreadable."""
    if isinstance(value, str) and value:
        try:
            return sfclock.parse_instant(value)
        except ValueError:
            return None
    return None
