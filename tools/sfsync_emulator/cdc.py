"""Change Data Capture (spec §9): change events, the in-memory event bus, Event Relay envelopes.

The store (:mod:`sfsync_emulator.store`) buffers one :class:`PendingChange` per record change
inside a transaction and hands the list to :meth:`CdcBus.publish_transaction` when the outermost
transaction commits.  The bus then:

* gives every event of the transaction the same ``transactionKey`` and increasing
  ``sequenceNumber`` (§9.3);
* merges UPDATE changes of the same entity carrying the *same change* (identical changed
  values) into one event with several ``recordIds`` (§9.3, "merged change events");
* caps a transaction at ``overflow_threshold`` changes: the rest become one ``GAP_OVERFLOW``
  event per entity, header only, no record ids (§9.4).

Payload values are kept in REST JSON form (datetimes ``…000+0000``); ``epoch_fields`` lists the
datetime fields so that :func:`relay_envelope` can encode them as epoch ms like Event Relay does.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock
from .schema import format_rest_datetime, parse_datetime_ms

CHANGE_TYPES = frozenset(
    {"CREATE", "UPDATE", "DELETE", "UNDELETE", "GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW"}
)
GAP_TYPES = frozenset({"GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE"})
DEFAULT_RETENTION_MS = 72 * 3600 * 1000
_COMMIT_NUMBER_BASE = 1_100_823_480_000


@dataclass(frozen=True)
class CallOrigin:
    """Which API a change came through: ``changeOrigin`` is ``com/salesforce/api/<api>/<version>``
    plus ``;client=<client>`` from ``Sforce-Call-Options`` (§9.3).  ``api`` is ``rest`` for REST
    and composite writes, ``bulkapi`` for Bulk API 2.0 ingest jobs."""

    api: str = "rest"
    version: str = "59.0"
    client: str | None = None


Origin = str | CallOrigin | None  # a bare client id (REST, the org's default version) or a CallOrigin


def change_origin(origin: Origin, *, api: bool = True, api_version: str = "59.0") -> str:
    """``changeOrigin`` for a change (§9.3): empty for non-API changes."""
    if not api:
        return ""
    if isinstance(origin, CallOrigin):
        base = f"com/salesforce/api/{origin.api}/{origin.version}"
        return f"{base};client={origin.client}" if origin.client else base
    base = f"com/salesforce/api/rest/{api_version}"
    return f"{base};client={origin}" if origin else base


def event_name(entity: str) -> str:
    """``LeadChangeEvent``; custom ``Foo__c`` → ``Foo__ChangeEvent`` (§9.1)."""
    if entity.endswith("__c"):
        return entity[:-1] + "ChangeEvent"
    return entity + "ChangeEvent"


@dataclass
class PendingChange:
    """One record change buffered inside a transaction (before commit)."""

    entity: str
    record_id: str
    change_type: str
    changed_fields: list[str]
    fields: dict[str, Any]
    epoch_fields: frozenset[str]
    origin: str
    user_id: str


@dataclass
class ChangeEvent:
    entity_name: str
    record_ids: list[str]
    change_type: str
    changed_fields: list[str]
    change_origin: str
    transaction_key: str
    sequence_number: int
    commit_timestamp: int
    commit_number: int
    commit_user: str
    fields: dict[str, Any] = field(default_factory=dict)
    epoch_fields: frozenset[str] = frozenset()
    replay_id: int = 0

    def header(self) -> dict[str, Any]:
        return {
            "entityName": self.entity_name,
            "recordIds": list(self.record_ids),
            "changeType": self.change_type,
            "changeOrigin": self.change_origin,
            "transactionKey": self.transaction_key,
            "sequenceNumber": self.sequence_number,
            "commitTimestamp": self.commit_timestamp,
            "commitNumber": self.commit_number,
            "commitUser": self.commit_user,
            "nulledFields": [],
            "diffFields": [],
            "changedFields": list(self.changed_fields),
        }

    def payload(self, *, epoch_dates: bool = False) -> dict[str, Any]:
        """``ChangeEventHeader`` plus field values (REST strings or epoch-ms datetimes)."""
        out: dict[str, Any] = {"ChangeEventHeader": self.header()}
        for name, value in self.fields.items():
            if epoch_dates and name in self.epoch_fields and isinstance(value, str):
                out[name] = parse_datetime_ms(value)
            else:
                out[name] = value
        return out

    def cometd(self) -> dict[str, Any]:
        """CometD/Streaming message form (§9.2)."""
        return {
            "data": {
                "schema": f"{self.entity_name}-schema",
                "payload": self.payload(),
                "event": {"replayId": self.replay_id},
            },
            "channel": f"/data/{event_name(self.entity_name)}",
        }


def relay_envelope(
    event: ChangeEvent,
    org_id: str,
    channel_id: str,
    *,
    account: str = "000000000000",
    region: str = "us-east-1",
    epoch_dates: bool = True,
) -> dict[str, Any]:
    """The EventBridge event Event Relay would put on the partner bus (§9.6)."""
    seed = f"{org_id}/{event.transaction_key}/{event.sequence_number}/{event.replay_id}"
    time_text = format_rest_datetime(event.commit_timestamp)[:19] + "Z"
    return {
        "version": "0",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, seed)),
        "detail-type": event_name(event.entity_name),
        "source": f"aws.partner/salesforce.com/{org_id}/{channel_id}",
        "account": account,
        "time": time_text,
        "region": region,
        "resources": [],
        "detail": {"payload": event.payload(epoch_dates=epoch_dates)},
    }


Sink = Callable[[ChangeEvent], None]


class CdcBus:
    """The org's change event bus: ordered event list, sinks, gap/overflow injection."""

    def __init__(
        self,
        clock: Clock,
        rng: random.Random,
        *,
        api_version: str = "59.0",
        overflow_threshold: int = 100_000,
        retention_ms: int = DEFAULT_RETENTION_MS,
    ) -> None:
        self.clock = clock
        self.rng = rng
        self.api_version = api_version
        self.overflow_threshold = overflow_threshold
        self.retention_ms = retention_ms
        self.events: list[ChangeEvent] = []
        self._sinks: list[Sink] = []
        self._lock = threading.RLock()
        self._replay = 0
        self._commit_number = _COMMIT_NUMBER_BASE
        self.default_user = ""
        self._reorder_left = 0  # events still to hold back for out-of-order delivery
        self._held: list[ChangeEvent] = []

    # ---------------------------------------------------------------- subscription
    def subscribe(self, sink: Sink) -> Callable[[], None]:
        """Call ``sink(event)`` for every future event; returns an unsubscribe function."""
        with self._lock:
            self._sinks.append(sink)

        def unsubscribe() -> None:
            with self._lock:
                if sink in self._sinks:
                    self._sinks.remove(sink)

        return unsubscribe

    def since(self, replay_id: int = 0) -> list[ChangeEvent]:
        """Retained events with a replay id greater than ``replay_id`` (replay by position)."""
        with self._lock:
            self._expire()
            return [e for e in self.events if e.replay_id > replay_id]

    def clear(self) -> None:
        with self._lock:
            self.events.clear()

    # ---------------------------------------------------------------- publishing
    def new_transaction_key(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def publish_transaction(self, changes: list[PendingChange]) -> list[ChangeEvent]:
        """Turn one committed transaction's changes into events (merging, overflow)."""
        if not changes:
            return []
        with self._lock:
            now = self.clock.now_ms()
            key = self.new_transaction_key()
            self._commit_number += 1
            commit_number = self._commit_number
            kept, overflow_entities = self._apply_overflow(changes)
            out: list[ChangeEvent] = []
            merge_index: dict[tuple[Any, ...], ChangeEvent] = {}
            for ch in kept:
                sig: tuple[Any, ...] = ()
                if ch.change_type == "UPDATE":
                    sig = (
                        ch.entity,
                        ch.origin,
                        ch.user_id,
                        tuple(ch.changed_fields),
                        tuple(sorted((k, repr(v)) for k, v in ch.fields.items())),
                    )
                    existing = merge_index.get(sig)
                    if existing is not None:
                        existing.record_ids.append(ch.record_id)
                        continue
                ev = ChangeEvent(
                    entity_name=ch.entity,
                    record_ids=[ch.record_id],
                    change_type=ch.change_type,
                    changed_fields=list(ch.changed_fields),
                    change_origin=ch.origin,
                    transaction_key=key,
                    sequence_number=len(out) + 1,
                    commit_timestamp=now,
                    commit_number=commit_number,
                    commit_user=ch.user_id,
                    fields=dict(ch.fields),
                    epoch_fields=ch.epoch_fields,
                )
                if sig:
                    merge_index[sig] = ev
                out.append(ev)
            for entity in overflow_entities:
                out.append(
                    self._header_only(
                        entity, [], "GAP_OVERFLOW", key=key, seq=len(out) + 1, now=now, commit_number=commit_number
                    )
                )
            self._emit(out)
            return out

    def _apply_overflow(self, changes: list[PendingChange]) -> tuple[list[PendingChange], list[str]]:
        kept: list[PendingChange] = []
        overflow: list[str] = []
        budget = self.overflow_threshold
        for ch in changes:
            cost = max(1, len(ch.changed_fields)) if ch.change_type == "UPDATE" else 1
            if budget - cost >= 0 and not overflow:
                budget -= cost
                kept.append(ch)
            elif ch.entity not in overflow:
                overflow.append(ch.entity)
        return kept, overflow

    def _header_only(
        self, entity: str, ids: list[str], change_type: str, *, key: str, seq: int, now: int, commit_number: int
    ) -> ChangeEvent:
        return ChangeEvent(
            entity_name=entity,
            record_ids=ids,
            change_type=change_type,
            changed_fields=[],
            change_origin="",
            transaction_key=key,
            sequence_number=seq,
            commit_timestamp=now,
            commit_number=commit_number,
            commit_user=self.default_user,
        )

    def _emit(self, events: list[ChangeEvent]) -> None:
        self._expire()
        for ev in events:
            self._replay += 1
            ev.replay_id = self._replay
            self.events.append(ev)
        deliver: list[ChangeEvent] = []
        for ev in events:
            if self._reorder_left > 0:
                self._held.append(ev)
                self._reorder_left -= 1
                if self._reorder_left == 0:
                    deliver.extend(reversed(self._held))
                    self._held = []
            else:
                deliver.append(ev)
        sinks = list(self._sinks)
        for ev in deliver:
            for sink in sinks:
                sink(ev)

    def _expire(self) -> None:
        horizon = self.clock.now_ms() - self.retention_ms
        if self.events and self.events[0].commit_timestamp < horizon:
            self.events[:] = [e for e in self.events if e.commit_timestamp >= horizon]

    # ---------------------------------------------------------------- injection hooks
    def inject_gap(self, obj: str, ids: list[str], change_type: str = "GAP_UPDATE") -> ChangeEvent:
        """A header-only gap event (§9.4): ``GAP_CREATE/UPDATE/DELETE/UNDELETE``."""
        if change_type not in GAP_TYPES:
            raise ValueError(f"not a gap change type: {change_type!r} (one of {sorted(GAP_TYPES)})")
        return self._inject_header_only(obj, list(ids), change_type)

    def inject_overflow(self, obj: str) -> ChangeEvent:
        """A ``GAP_OVERFLOW`` event for ``obj`` (header only, no record ids)."""
        return self._inject_header_only(obj, [], "GAP_OVERFLOW")

    def _inject_header_only(self, obj: str, ids: list[str], change_type: str) -> ChangeEvent:
        """Emit one header-only event as a transaction of its own."""
        with self._lock:
            self._commit_number += 1
            ev = self._header_only(
                obj,
                ids,
                change_type,
                key=self.new_transaction_key(),
                seq=1,
                now=self.clock.now_ms(),
                commit_number=self._commit_number,
            )
            self._emit([ev])
            return ev

    def inject_duplicate(self, event: ChangeEvent) -> ChangeEvent:
        """Deliver ``event`` again (at-least-once delivery), with a new replay id."""
        with self._lock:
            dup = ChangeEvent(
                **{
                    **event.__dict__,
                    "record_ids": list(event.record_ids),
                    "changed_fields": list(event.changed_fields),
                    "fields": dict(event.fields),
                }
            )
            self._emit([dup])
            return dup

    def reorder_next(self, n: int) -> None:
        """Out-of-order delivery (§9.5): the next ``n`` events reach the sinks in reverse order,
        all at once when the ``n``-th is published.  Replay ids and the retained list
        (:meth:`since`) keep commit order, as a replaying subscriber would see them."""
        if n < 2:
            raise ValueError(f"reorder_next needs at least 2 events, got {n}")
        with self._lock:
            self._reorder_left = n
            self._held = []

    def event(self, replay_id: int) -> ChangeEvent:
        """The retained event with ``replay_id`` (ValueError when unknown or expired)."""
        with self._lock:
            for ev in self.events:
                if ev.replay_id == replay_id:
                    return ev
        raise ValueError(f"no retained change event with replay id {replay_id}")

    def relay_envelopes(
        self, org_id: str, channel_id: str, *, since: int = 0, epoch_dates: bool = True
    ) -> list[dict[str, Any]]:
        """The §9.6 EventBridge envelopes of the retained events after ``since`` (commit order)."""
        return [relay_envelope(e, org_id, channel_id, epoch_dates=epoch_dates) for e in self.since(since)]
