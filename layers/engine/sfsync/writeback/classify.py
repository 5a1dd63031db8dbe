"""Stage 2, classify: what a change asks of Salesforce, computed once per record.

:func:`classify` turns one decoded change into a :class:`Classified` value: its kind (``update``,
``create``, ``delete`` or ``ignore``) and, for an update, its local changes (the fields whose value
differs from ``_base``; :func:`sfsync.items.snapshot.local_changes` runs once per record, here).  Once
describe is known (after the pending markers are down, so no Salesforce call precedes them),
:func:`split_update` splits those changes once per record into the fields the integration user can
update and the ones it cannot (:func:`writable`); the later stages read that split and never
recompute it.  A create's values are filtered the same way (:func:`create_values`).

Also here: describe's fields per client (:func:`field_map`) and the value checks against describe
(:func:`check_value`), the rules of what a field accepts.
"""

from __future__ import annotations

import re
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from sfsync.core import clock as sfclock
from sfsync.core.registry import KEY_PREFIXES
from sfsync.inbound.fields import SKIPPED_TYPES
from sfsync.items import snapshot
from sfsync.items.snapshot import LocalChange, same
from sfsync.salesforce.ports import WriteBackPort
from sfsync.writeback.model import (
    DESCRIBE_MAX_AGE_SECONDS,
    LOCAL_STATUS_ATTRIBUTE,
    StreamChange,
)

Kind = Literal["update", "create", "delete", "ignore"]

_SALESFORCE_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
TEXT_TYPES = frozenset(
    {"string", "textarea", "email", "phone", "url", "picklist", "multipicklist", "combobox", "reference", "id"}
)
_TEXT_TYPES_ALL = TEXT_TYPES | {"encryptedstring"}
_INT_TYPES = frozenset({"int", "long"})
_DECIMAL_TYPES = frozenset({"double", "currency", "percent"})
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: Fields never written (compound values: their components are).
NOT_WRITTEN_TYPES = SKIPPED_TYPES


def looks_like_salesforce_id(value: str) -> bool:
    """15 or 18 alphanumeric characters (whatever the object)."""
    return bool(_SALESFORCE_ID.match(value))


def is_salesforce_id(obj: str, value: Any) -> bool:
    """``value`` looks like an Id of ``obj`` (its key prefix, 15 or 18 characters)."""
    if not isinstance(value, str) or not _SALESFORCE_ID.match(value):
        return False
    prefix = KEY_PREFIXES.get(obj)
    return prefix is None or value.startswith(prefix)


def _same_data(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    da, db = snapshot.data_of(a or {}), snapshot.data_of(b or {})
    return da.keys() == db.keys() and all(same(da[k], db[k]) for k in da)


# -- the classified change -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Classified:
    """One change of a two-way object, classified.  ``local``: the update's local changes (every
    field but ``Id`` and ``IsDeleted`` whose value differs from ``_base``); empty for other kinds."""

    obj: str
    kind: Kind
    change: StreamChange
    local: Mapping[str, LocalChange] = field(default_factory=dict)


def classify(obj: str, change: StreamChange) -> Classified:
    """What ``change`` asks of Salesforce.  Raises ValueError when the item's ``_base`` is unreadable."""
    if change.event == "REMOVE":
        old = change.old or {}
        if change.by_service or old.get("IsDeleted") or snapshot.BASE_ATTRIBUTE not in old:
            return Classified(obj, "ignore", change)  # TTL expiry of a tombstone, or never in Salesforce
        return Classified(obj, "delete" if is_salesforce_id(obj, old.get("Id")) else "ignore", change)
    new = change.new
    if not new or new.get(LOCAL_STATUS_ATTRIBUTE) == "created":
        return Classified(obj, "ignore", change)
    if change.event == "MODIFY" and _same_data(new, change.old):
        return Classified(obj, "ignore", change)  # only the engine's attributes changed (our own bookkeeping)
    if snapshot.BASE_ATTRIBUTE not in new:
        return Classified(obj, "ignore" if is_salesforce_id(obj, new.get("Id")) else "create", change)
    changes = snapshot.local_changes(new, ignore=("Id",))
    if not changes:
        return Classified(obj, "ignore", change)  # written by the sync: no echo
    if "IsDeleted" in changes and new.get("IsDeleted") is True:
        return Classified(obj, "delete", change)
    return Classified(obj, "update", change, {n: c for n, c in changes.items() if n != "IsDeleted"})


@dataclass(frozen=True, slots=True)
class UpdateFields:
    """An update's local changes split once against describe: ``writable`` (in the order of the local
    changes) go on to the decisions; ``refused`` (field -> why, by name) are rejected."""

    record: Classified
    writable: Mapping[str, LocalChange]
    refused: Mapping[str, str]

    @property
    def change(self) -> StreamChange:
        return self.record.change


def split_update(record: Classified, describe: Mapping[str, Mapping[str, Any]]) -> UpdateFields:
    """The one writability check of an update's fields (see the module docstring)."""
    why_not = {name: writable(describe, name, create=False) for name in record.local}
    return UpdateFields(
        record,
        {name: lc for name, lc in record.local.items() if why_not[name] is None},
        {name: why for name in sorted(why_not) if (why := why_not[name]) is not None},
    )


def create_values(
    new: Mapping[str, Any], describe: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """A create's values the integration user can set, and the fields it cannot (field -> why)."""
    values: dict[str, Any] = {}
    refused: dict[str, str] = {}
    for name, value in snapshot.data_of(new).items():
        if name in ("Id", "IsDeleted", "SystemModstamp"):
            continue
        why = writable(describe, name, create=True)
        if why is None:
            values[name] = value
        else:
            refused[name] = why
    return values, refused


# -- describe ------------------------------------------------------------------------------------

#: describe's fields per client (the client object itself is the key, so a new client - another
#: org or credentials - never sees another's entries) and object, with the time they were read.
_describes: weakref.WeakKeyDictionary[Any, dict[str, tuple[float, dict[str, dict[str, Any]]]]] = (
    weakref.WeakKeyDictionary()
)


def field_map(sf: WriteBackPort, obj: str) -> dict[str, dict[str, Any]]:
    """describe's fields of ``obj`` by name (kept per client for a quarter of an hour)."""
    per_client = _describes.setdefault(sf, {})
    cached = per_client.get(obj)
    if cached is not None and time.monotonic() - cached[0] < DESCRIBE_MAX_AGE_SECONDS:
        return cached[1]
    fields = {str(f["name"]): dict(f) for f in sf.describe(obj).get("fields") or [] if isinstance(f, dict)}
    per_client[obj] = (time.monotonic(), fields)
    return fields


def clear_describe_cache() -> None:
    _describes.clear()


def writable(describe: Mapping[str, Mapping[str, Any]], name: str, *, create: bool) -> str | None:
    """None when the integration user can set ``name``; else why not."""
    f = describe.get(name)
    if f is None:
        return f"field {name} is not visible to the integration user"
    if f.get("calculated"):
        return f"field {name} is a formula (calculated) field"
    if f.get("type") in NOT_WRITTEN_TYPES:
        return f"field {name} is a compound field (write its components)"
    if not f.get("createable" if create else "updateable"):
        return f"field {name} is not {'createable' if create else 'updateable'}"
    return None


def check_value(name: str, value: Any, f: Mapping[str, Any]) -> tuple[str, str] | None:
    """(statusCode-like code, message) when ``value`` cannot be valid for the field; None when plausible."""
    if value is None:
        return None
    ftype = str(f.get("type", ""))
    if ftype in _TEXT_TYPES_ALL:
        if not isinstance(value, str):
            return "INVALID_TYPE", f"field {name} expects text ({ftype}), got {type(value).__name__}"
        length = int(f.get("length") or 0)
        if length and len(value) > length:
            return "STRING_TOO_LONG", f"field {name} is {len(value)} characters long, at most {length} allowed"
        if ftype == "picklist" and f.get("restrictedPicklist"):
            allowed = {str(p.get("value")) for p in f.get("picklistValues") or [] if p.get("active", True)}
            if value not in allowed:
                return (
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"field {name}: bad value for restricted picklist: {value}",
                )
        return None
    if ftype == "boolean":
        return None if isinstance(value, bool) else ("INVALID_TYPE", f"field {name} expects a boolean")
    if ftype in _INT_TYPES or ftype in _DECIMAL_TYPES:
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            return "INVALID_TYPE", f"field {name} expects a number ({ftype}), got {type(value).__name__}"
        if ftype in _INT_TYPES and Decimal(str(value)) != Decimal(str(value)).to_integral_value():
            return "INVALID_TYPE", f"field {name} expects a whole number"
        return None
    if ftype == "date":
        ok = isinstance(value, str) and bool(_DATE.match(value))
        return None if ok else ("INVALID_TYPE", f"field {name} expects a date YYYY-MM-DD")
    if ftype == "datetime":
        if not isinstance(value, str):
            return "INVALID_TYPE", f"field {name} expects a datetime"
        try:
            sfclock.parse_instant(value)
        except ValueError:
            return "INVALID_TYPE", f"field {name} expects an ISO-8601 datetime"
    return None


__all__ = [
    "KEY_PREFIXES",
    "Classified",
    "Kind",
    "UpdateFields",
    "check_value",
    "classify",
    "clear_describe_cache",
    "create_values",
    "field_map",
    "is_salesforce_id",
    "split_update",
    "writable",
]
