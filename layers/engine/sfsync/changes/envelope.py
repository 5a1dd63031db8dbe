"""The Event Relay envelope (spec §9.6) as the engine reads it: one EventBridge event -> :class:`ChangeEvent`.

Event Relay puts each Salesforce change event on the partner event bus as an EventBridge event whose
``detail-type`` is the change event's name (``LeadChangeEvent``, ``Foo__ChangeEvent``) and whose
``detail.payload`` is the change event: ``ChangeEventHeader`` plus the record's fields.  The parts
of that encoding the spec marks unverified are accepted in every form seen:

* ``commitTimestamp`` and datetime field values as epoch milliseconds **or** ISO strings (the
  values are converted against describe later, :mod:`sfsync.changes.apply`);
* ``changedFields`` / ``nulledFields`` as field-name lists **or** Pub/Sub hex bitmaps
  (``0x650004E0``, ``4-0x10``): a bitmap cannot be decoded without the event schema, so the
  event's changed fields are *unknown* (None) and its records are re-read;
* compound values nested (``Name: {FirstName, LastName}``, ``BillingAddress: {City, ...}``) or flat,
  and change-field names with a dot (``Name.LastName``, ``BillingAddress.City``): both become the
  component fields the tables store (``LastName``, ``BillingCity``).

Anything else wrong with an envelope is an :class:`~sfsync.core.exceptions.InvalidChangeEvent` naming
the problem (the caller records it and never retries it).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sfsync.core.clock import UTC, parse_instant
from sfsync.core.exceptions import InvalidChangeEvent
from sfsync.fullcopy.plan import id_with_checksum

ChangeType = Literal[
    "CREATE",
    "UPDATE",
    "DELETE",
    "UNDELETE",
    "GAP_CREATE",
    "GAP_UPDATE",
    "GAP_DELETE",
    "GAP_UNDELETE",
    "GAP_OVERFLOW",
]
CHANGE_TYPES: frozenset[str] = frozenset(
    {"CREATE", "UPDATE", "DELETE", "UNDELETE", "GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW"}
)
GAP_TYPES: frozenset[str] = frozenset({"GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW"})
#: The client id the write-back sends in ``Sforce-Call-Options`` (``changeOrigin`` ``...;client=sfsync``).
ECHO_CLIENT = "sfsync"

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
_WILDCARD_ID = re.compile(r"^[A-Za-z0-9]{3}\*$")
_BITMAP = re.compile(r"^(?:\d+-)?0x[0-9A-Fa-f]+$")
_HEADER = "ChangeEventHeader"
#: The most record ids one event may name (merged change events); more is not an event Salesforce sends.
MAX_RECORD_IDS = 10_000


@dataclass(frozen=True)
class ChangeEvent:
    """One change event, checked: what :mod:`sfsync.changes.apply` works with.

    ``changed_fields``: the changed fields (flattened to stored names), or None when unknown (absent
    or bitmap-encoded).  ``fields``: the payload's field values, flattened, header removed, as sent
    (epoch ms or strings: converted against describe when applied).  ``wildcard``: the event names
    records by key prefix (``001*``, custom-field type conversions), so every record may have changed.
    """

    event_id: str
    entity: str
    change_type: str
    record_ids: tuple[str, ...]
    changed_fields: tuple[str, ...] | None
    nulled_fields: tuple[str, ...]
    origin: str
    transaction_key: str
    sequence_number: int
    commit_at: dt.datetime
    commit_number: int | None
    fields: Mapping[str, Any] = field(default_factory=dict)
    wildcard: bool = False

    @property
    def is_gap(self) -> bool:
        return self.change_type in GAP_TYPES

    @property
    def is_echo(self) -> bool:
        """Caused by the write-back (``Sforce-Call-Options: client=sfsync``)."""
        return self.origin.endswith(f";client={ECHO_CLIENT}") or f";client={ECHO_CLIENT};" in self.origin

    def key(self, record_id: str) -> tuple[str, int, str]:
        """A per-record identity for de-duplication within a batch (§9.6: transaction, sequence, record)."""
        return (self.transaction_key, self.sequence_number, record_id)


def _problem(text: str) -> InvalidChangeEvent:
    return InvalidChangeEvent(text)


def _epoch_ms_instant(value: Any, what: str) -> dt.datetime:
    if isinstance(value, bool):
        raise _problem(f"{what} is not a timestamp: {value!r}")
    if isinstance(value, int | float):
        try:
            return dt.datetime.fromtimestamp(float(value) / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise _problem(f"{what} is out of range: {value!r}") from exc
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return _epoch_ms_instant(int(text), what)
        try:
            return parse_instant(text)
        except ValueError:
            pass
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise _problem(f"{what} is not a timestamp: {value!r}") from exc
        if parsed.tzinfo is None:
            raise _problem(f"{what} has no time zone: {value!r}")
        return parsed.astimezone(UTC)
    raise _problem(f"{what} is not a timestamp: {value!r}")


def stored_name(name: str) -> str:
    """``Name.LastName`` -> ``LastName``, ``BillingAddress.City`` -> ``BillingCity``, ``Email`` -> ``Email``."""
    if "." not in name:
        return name
    compound, _, component = name.partition(".")
    if compound.endswith("Address"):
        return compound[: -len("Address")] + component
    return component


def _names(value: Any, what: str) -> tuple[str, ...] | None:
    """A field-name list (flattened), None when absent or bitmap-encoded."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _problem(f"{what} must be a list of field names")
    if any(_BITMAP.match(v) for v in value):
        return None
    names = tuple(dict.fromkeys(stored_name(v) for v in value))
    bad = [n for n in names if not _NAME.match(n)]
    if bad:
        raise _problem(f"{what} holds names that are not field names: {', '.join(repr(b) for b in bad[:5])}")
    return names


def _flatten(payload: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, value in payload.items():
        if name == _HEADER:
            continue
        if not isinstance(name, str) or not _NAME.match(name):
            raise _problem(f"payload field {name!r} is not a field name")
        if isinstance(value, Mapping):
            for component, inner in value.items():
                flat = stored_name(f"{name}.{component}")
                if not isinstance(component, str) or not _NAME.match(flat):
                    raise _problem(f"payload field {name}.{component!r} is not a field name")
                fields[flat] = inner
        elif isinstance(value, list):
            raise _problem(f"payload field {name} holds a list, not a field value")
        else:
            fields[name] = value
    return fields


def event_entity(detail_type: str) -> str | None:
    """``LeadChangeEvent`` -> ``Lead``; ``Foo__ChangeEvent`` -> ``Foo__c``; None when not a change event name."""
    if not detail_type.endswith("ChangeEvent") or detail_type == "ChangeEvent":
        return None
    stem = detail_type[: -len("ChangeEvent")]
    return stem + "c" if stem.endswith("__") else stem


def parse_envelope(body: Any) -> ChangeEvent:
    """One EventBridge event (a dict, or the JSON text of an SQS message body) -> :class:`ChangeEvent`."""
    if isinstance(body, str | bytes):
        try:
            body = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _problem(f"the message is not JSON ({exc})") from exc
    if not isinstance(body, Mapping):
        raise _problem(f"the event must be a JSON object, got {type(body).__name__}")
    detail_type = body.get("detail-type")
    event_id = body.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise _problem("the event has no id")
    if not isinstance(detail_type, str):
        raise _problem("the event has no detail-type")
    named = event_entity(detail_type)
    if named is None:
        raise _problem(f"detail-type {detail_type!r} is not a change event")
    detail = body.get("detail")
    payload = detail.get("payload") if isinstance(detail, Mapping) else None
    if not isinstance(payload, Mapping):
        raise _problem("the event has no detail.payload")
    header = payload.get(_HEADER)
    if not isinstance(header, Mapping):
        raise _problem(f"detail.payload has no {_HEADER}")
    entity = header.get("entityName")
    if not isinstance(entity, str) or not _NAME.match(entity):
        raise _problem(f"{_HEADER}.entityName is not an object name: {entity!r}")
    if entity != named:
        raise _problem(f"{_HEADER}.entityName {entity!r} does not match detail-type {detail_type!r}")
    change_type = header.get("changeType")
    if change_type not in CHANGE_TYPES:
        raise _problem(f"{_HEADER}.changeType {change_type!r} is not one of {', '.join(sorted(CHANGE_TYPES))}")
    raw_ids = header.get("recordIds", [])
    if not isinstance(raw_ids, list) or not all(isinstance(v, str) for v in raw_ids):
        raise _problem(f"{_HEADER}.recordIds must be a list of record ids")
    if len(raw_ids) > MAX_RECORD_IDS:
        raise _problem(f"{_HEADER}.recordIds names {len(raw_ids)} records (at most {MAX_RECORD_IDS})")
    wildcard = any(_WILDCARD_ID.match(v) for v in raw_ids)
    listed = [v for v in raw_ids if not _WILDCARD_ID.match(v)]
    bad_ids = [v for v in listed if not _RECORD_ID.match(v) or (len(v) == 18 and id_with_checksum(v[:15]) != v)]
    if bad_ids:
        raise _problem(f"{_HEADER}.recordIds holds malformed ids: {', '.join(repr(b) for b in bad_ids[:5])}")
    ids = tuple(dict.fromkeys(v if len(v) == 18 else id_with_checksum(v) for v in listed))
    if not ids and not wildcard and change_type != "GAP_OVERFLOW":
        raise _problem(f"a {change_type} event without recordIds")
    commit_at = _epoch_ms_instant(header.get("commitTimestamp"), f"{_HEADER}.commitTimestamp")
    sequence = header.get("sequenceNumber", 1)
    if isinstance(sequence, bool) or not isinstance(sequence, int):
        raise _problem(f"{_HEADER}.sequenceNumber is not a number: {sequence!r}")
    commit_number = header.get("commitNumber")
    if isinstance(commit_number, bool) or not isinstance(commit_number, int | None):
        raise _problem(f"{_HEADER}.commitNumber is not a number: {commit_number!r}")
    origin = header.get("changeOrigin") or ""
    key = header.get("transactionKey") or ""
    if not isinstance(origin, str) or not isinstance(key, str):
        raise _problem(f"{_HEADER}.changeOrigin and transactionKey must be strings")
    return ChangeEvent(
        event_id=event_id,
        entity=entity,
        change_type=str(change_type),
        record_ids=ids,
        changed_fields=_names(header.get("changedFields"), f"{_HEADER}.changedFields"),
        nulled_fields=_names(header.get("nulledFields"), f"{_HEADER}.nulledFields") or (),
        origin=origin,
        transaction_key=key,
        sequence_number=sequence,
        commit_at=commit_at,
        commit_number=commit_number,
        fields=_flatten(payload),
        wildcard=wildcard,
    )


__all__ = [
    "CHANGE_TYPES",
    "ECHO_CLIENT",
    "GAP_TYPES",
    "ChangeEvent",
    "ChangeType",
    "event_entity",
    "parse_envelope",
    "stored_name",
]
