"""Which fields a cycle reads, and what happens when that set changes.

The field list of an object always comes from describe (what the integration user can read, at
this moment), narrowed by the object's ``include_fields`` / ``exclude_fields``; a name reaches
SOQL only if describe returned it.  Compound fields (``address``, ``location``) are never read
whole: their components are fields of their own.  Formula (``calculated``) fields are kept out of
incremental reads unless ``include_formulas``: their values change without a ``SystemModstamp``
change, so :mod:`sfsync.inbound.formulas` re-reads them on their own schedule.

Schema and permission changes are noticed by comparing the selection with the one the last
completed cycle recorded (:attr:`sfsync.store.state.Lifecycle.known_fields`):

* a field that **appears** is read by every later cycle and **back-filled** at once for the items
  already stored (:func:`backfill`: ``SELECT Id, SystemModstamp, <new fields>`` over queryAll,
  setting only those attributes, never on an item newer than the row read);
* a field that **disappears** is no longer read; stored values are **kept** (the record store
  carries unselected attributes over on every put), so a permission change never loses data.
  If the field comes back, it is back-filled again and the values refresh.
"""

from __future__ import annotations

import datetime as dt
import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sfsync.core.clock import to_soql
from sfsync.core.exceptions import ConfigurationError
from sfsync.core.registry import ObjectSpec
from sfsync.salesforce.ports import QueryPort
from sfsync.store.put_rules import PageOutcome
from sfsync.store.records import RecordStore

#: describe types never selected: compound values (their components are fields of their own) and
#: blobs (REST returns a URL per row, not the content).
SKIPPED_TYPES = frozenset({"address", "location", "base64"})
REQUIRED_FIELDS = ("IsDeleted",)

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")


@dataclass(frozen=True, slots=True)
class Selection:
    """The SELECT list of an object for this cycle and which of its fields are datetimes.

    ``formulas``: the readable formula fields (after include/exclude) the formula refresh reads;
    ``types``: describe type per selected or formula field; ``unreadable``: configured
    ``include_fields`` that describe does not show (warned about, then ignored).
    """

    fields: tuple[str, ...]
    datetime_fields: frozenset[str]
    formulas: tuple[str, ...] = ()
    types: Mapping[str, str] = field(default_factory=dict)
    unreadable: tuple[str, ...] = ()

    @property
    def tracked(self) -> tuple[str, ...]:
        """Every field whose appearance or disappearance matters (read fields + formulas)."""
        return tuple(dict.fromkeys((*self.fields, *self.formulas)))


def select_fields(spec: ObjectSpec, describe: Mapping[str, Any]) -> Selection:
    """The fields to read, from describe (what the integration user can see) and the spec's options.

    A missing engine-required field (key, cursor, ``IsDeleted``) is a :class:`ConfigurationError`
    naming it; an ``include_fields`` entry that is not readable is only reported in
    :attr:`Selection.unreadable` (the rest of the object still syncs).
    """
    visible: dict[str, Mapping[str, Any]] = {}
    for f in describe.get("fields") or []:
        name = f.get("name")
        if isinstance(name, str) and _NAME.match(name):
            visible[name] = f
    required = (spec.key, spec.cursor, *REQUIRED_FIELDS)
    missing = [name for name in required if name not in visible]
    if missing:
        raise ConfigurationError(
            f"{spec.name} cannot be synced incrementally: the integration user cannot read {', '.join(missing)}"
        )
    unreadable = tuple(name for name in spec.include_fields if name not in visible)
    not_excludable = [name for name in spec.exclude_fields if name in required]
    if not_excludable:
        raise ConfigurationError(f"{spec.name}.exclude_fields cannot exclude {', '.join(not_excludable)}")

    chosen: list[str] = []
    formulas: list[str] = []
    for name, f in visible.items():
        if name not in required:
            if spec.include_fields and name not in spec.include_fields:
                continue
            if name in spec.exclude_fields:
                continue
            if f.get("type") in SKIPPED_TYPES:
                continue
            if f.get("calculated"):
                formulas.append(name)
                if not spec.include_formulas:
                    continue
        chosen.append(name)
    datetimes = frozenset(name for name in (*chosen, *formulas) if visible[name].get("type") == "datetime")
    types = {name: str(visible[name].get("type")) for name in (*chosen, *formulas)}
    return Selection(tuple(chosen), datetimes, tuple(formulas), types, unreadable)


def field_changes(known: Sequence[str] | None, selection: Selection) -> tuple[list[str], list[str]]:
    """(appeared, disappeared) since the last recorded selection (nothing when none was recorded)."""
    if known is None:
        return [], []
    before, now = set(known), selection.tracked
    return [name for name in now if name not in before], sorted(set(before) - set(now))


def check_soql_names(*names: str) -> None:
    """:class:`ConfigurationError` unless every name is a plain API name (the only kind put into SOQL)."""
    for name in names:
        if not _NAME.match(name):
            raise ConfigurationError(f"refusing to put {name!r} into SOQL")


def keyset_after(spec: ObjectSpec, stamp: dt.datetime, record_id: str) -> str:
    """The SOQL condition for the rows after ``(stamp, record_id)`` in ``(cursor, key)`` order (keyset resume)."""
    if not _RECORD_ID.match(record_id):
        raise ValueError(f"checkpoint holds a malformed record id {record_id!r}")
    cursor, key, at = spec.cursor, spec.key, to_soql(stamp)
    return f"({cursor} > {at} OR ({cursor} = {at} AND {key} > '{record_id}'))"


def soql_select(spec: ObjectSpec, names: Iterable[str], where: str = "") -> str:
    """``SELECT <names> FROM <object> [WHERE …]`` after checking every name is a plain API name."""
    columns = list(dict.fromkeys(names))
    check_soql_names(*columns, spec.name)
    return f"SELECT {', '.join(columns)} FROM {spec.name}" + (f" WHERE {where}" if where else "")


def read_columns(
    sf: QueryPort, spec: ObjectSpec, names: Iterable[str], *, page_size: int, where: str = ""
) -> Iterator[list[dict[str, Any]]]:
    """Pages of ``Id, SystemModstamp, <names>`` for every row of the object (queryAll)."""
    soql = soql_select(spec, (spec.key, spec.cursor, *names), where)
    for page in sf.query_pages(soql, include_deleted=True, batch_size=page_size):
        yield list(page.records)


def backfill(
    sf: QueryPort,
    records: RecordStore,
    spec: ObjectSpec,
    names: Sequence[str],
    selection: Selection,
    *,
    page_size: int,
    cycle_id: str,
    synced_at: dt.datetime,
) -> PageOutcome:
    """Set ``names`` on every stored item of the object from one pass over all its rows."""
    total = PageOutcome()
    for rows in read_columns(sf, spec, names, page_size=page_size):
        outcome = records.patch_page(
            spec,
            rows,
            names,
            datetime_fields=selection.datetime_fields,
            not_newer_than_row=True,
            cycle_id=cycle_id,
            synced_at=synced_at,
        )
        for name, value in outcome.counts.items():
            total.counts[name] += value
    return total


DESCRIBE_CLOCK_MARGIN = dt.timedelta(minutes=5)


class DescribeCache:
    """describe results kept per adapter instance (so per process and per org), revalidated cheaply.

    When the adapter offers ``describe_if_modified(obj, since) -> dict | None`` (describe with
    ``If-Modified-Since``; None = 304 Not Modified — still an API call, but no download and no
    describe work on Salesforce's side), a cached describe is revalidated with it; otherwise every cycle asks for
    a full describe.  Either way a permission or schema change is seen by the next cycle, without a
    restart.
    """

    def __init__(self) -> None:
        self._entries: weakref.WeakKeyDictionary[object, dict[str, tuple[dict[str, Any], dt.datetime]]] = (
            weakref.WeakKeyDictionary()
        )

    def describe(self, sf: Any, obj: str, *, now: dt.datetime) -> dict[str, Any]:
        revalidate: Callable[[str, dt.datetime], dict[str, Any] | None] | None = getattr(
            sf, "describe_if_modified", None
        )
        if revalidate is None:
            return dict(sf.describe(obj))
        per_client = self._entries.setdefault(sf, {})
        cached = per_client.get(obj)
        if cached is not None:
            fresh = revalidate(obj, cached[1])
            if fresh is None:
                return cached[0]
        else:
            fresh = dict(sf.describe(obj))
        # revalidate from a little before our own clock: a change stamped by a Salesforce clock
        # that runs behind ours must still be newer than the time we ask "modified since"
        per_client[obj] = (fresh, now - DESCRIBE_CLOCK_MARGIN)
        return fresh

    def clear(self) -> None:
        self._entries.clear()


__all__ = [
    "REQUIRED_FIELDS",
    "SKIPPED_TYPES",
    "DescribeCache",
    "Selection",
    "backfill",
    "check_soql_names",
    "field_changes",
    "keyset_after",
    "read_columns",
    "select_fields",
    "soql_select",
]
