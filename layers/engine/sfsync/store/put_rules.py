"""The put rules of the record store: what a put of a Salesforce row does to the stored item.

Pure decisions, no I/O (:class:`sfsync.store.records.RecordStore` makes the calls): which stored
attributes a put carries over (:func:`carry_over`), the base snapshot a two-way put writes
(:func:`salesforce_base`, :func:`patched_base`), whether a row is skipped, written, or written only
to refresh ``_base`` (:func:`decide_two_way`, :func:`decide_one_way`, on a stored item read in wire
format: :class:`StoredItem`), and what a successful put did (:func:`classify`).  The rules are
described in :mod:`sfsync.store.records`' docstring.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sfsync.items.codec import ENGINE_ATTRIBUTES, decode_base, encode_base
from sfsync.items.images import from_wire, item_from_wire
from sfsync.items.snapshot import BASE_ATTRIBUTE, is_data_attribute, local_changes

#: The write-back's attributes on two-way items (:mod:`sfsync.writeback`): never data (``_`` prefix,
#: :func:`sfsync.items.snapshot.is_data_attribute`) and always carried over by a put, so a sync write over an
#: item keeps its refusal mark, its redirect and its pending marker (the sweep's ``ByPending`` index).
#: The write-back's pending marker (see :meth:`StoredItem.keep_pending_edits`).
PENDING_SINCE = "_pending_since"
WRITEBACK_ATTRIBUTES = (
    "_writeback_error",
    "_created_id",
    "_local_status",
    "_pending_since",
    "_pending_seq",
    "_pending_claim",
    "_pending_attempts",
    "_pending_retry_at",
)
#: Engine attributes that belong to one version of a row (dropped when a newer version is put).
_VERSION_ATTRIBUTES = frozenset({"_merged_into", "_deleted_by"})
_VOLATILE = frozenset({"_synced_at", "_cycle_id", "_expires_at"})
#: Left out of the "same data" comparison: the volatile bookkeeping and the base snapshot (whose
#: equality the two-way rules decide on their own, see :meth:`sfsync.store.records.RecordStore.write_page`).
_NOT_COMPARED = _VOLATILE | {BASE_ATTRIBUTE}
#: Engine attributes a put never carries over from the stored item (it computes its own).
_NEVER_CARRIED = frozenset({BASE_ATTRIBUTE})
#: Engine attributes every put keeps from the stored item.
_ALWAYS_CARRIED = frozenset({"_formulas_as_of", *WRITEBACK_ATTRIBUTES})


Outcome = Literal["created", "updated", "deleted", "skipped", "failed"]
COUNTER_FOR: dict[Outcome, str] = {
    "created": "RecordsCreated",
    "updated": "RecordsUpdated",
    "deleted": "RecordsDeleted",
    "skipped": "RecordsSkipped",
    "failed": "RecordsFailed",
}


@dataclass
class PageOutcome:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTER_FOR.values(), 0))
    outcomes: list[tuple[str, Outcome]] = field(default_factory=list)

    def add(self, record_id: str, outcome: Outcome) -> None:
        self.counts[COUNTER_FOR[outcome]] += 1
        self.outcomes.append((record_id, outcome))


def _carried(name: str, item: Mapping[str, Any], selected_fields: frozenset[str]) -> bool:
    """Does a put of ``item`` keep the stored attribute ``name`` (see :func:`carry_over`)?"""
    if name in item or name in selected_fields or name in _VERSION_ATTRIBUTES or name in _NEVER_CARRIED:
        return False
    return name in _ALWAYS_CARRIED or name not in ENGINE_ATTRIBUTES


def carry_over(stored: Mapping[str, Any] | None, item: dict[str, Any], selected_fields: frozenset[str]) -> list[str]:
    """Copy into ``item`` the stored attributes the cycle did not select (formulas, hidden fields).

    Returns the names of the *data* attributes copied (see :func:`sfsync.items.snapshot.is_data_attribute`).
    The base snapshot (``_base``) is never copied: every put computes its own.
    """
    carried: list[str] = []
    if not stored:
        return carried
    for name, value in stored.items():
        if _carried(name, item, selected_fields):
            item[name] = value
            if is_data_attribute(name):
                carried.append(name)
    return carried


class StoredItem:
    """A stored item as the page's read returned it (wire format), decoded only as far as needed.

    Most rows of a page are decided on ``SystemModstamp`` and ``_base`` alone (a new version of the
    row): their other attributes are never turned into Python values.
    """

    __slots__ = ("_full", "raw")

    def __init__(self, raw: Mapping[str, Mapping[str, Any]]) -> None:
        self.raw = raw
        self._full: dict[str, Any] | None = None

    def full(self) -> dict[str, Any]:
        if self._full is None:
            self._full = item_from_wire(self.raw)
        return self._full

    def text(self, name: str) -> str | None:
        """A string attribute's value (None: absent or not a string)."""
        attribute = self.raw.get(name)
        value = attribute.get("S") if attribute is not None else None
        return value if isinstance(value, str) else None

    def stamp(self) -> str:
        """``str(stored["SystemModstamp"])``, "" when absent."""
        attribute = self.raw.get("SystemModstamp")
        if attribute is None:
            return ""
        value = attribute.get("S")
        return value if isinstance(value, str) else str(self.full()["SystemModstamp"])

    def has_text_stamp(self) -> bool:
        attribute = self.raw.get("SystemModstamp")
        return attribute is not None and isinstance(attribute.get("S"), str)

    def deleted(self) -> bool:
        attribute = self.raw.get("IsDeleted")
        if attribute is None:
            return False
        value = attribute.get("BOOL")
        return value if isinstance(value, bool) else bool(self.full()["IsDeleted"])

    def keep_pending_edits(self, item: dict[str, Any], carried: list[str]) -> None:
        """A stored item whose local edit is pending (marked ``_pending_since`` by the write-back, not yet
        in Salesforce) keeps its edited fields - their local values and the base they were edited
        against - when Salesforce's new version is written over it: the edit lives on the item, not only
        in a stream record that expires after 24 hours, so the write-back (or its sweep) can still push
        it and judge a conflict against the right base, however long it is down."""
        if self.text(PENDING_SINCE) is None:
            return
        stored = self.full()
        for name in local_changes(stored, ignore=("Id",)):
            if name not in carried:
                if name in stored:
                    item[name] = stored[name]
                else:
                    item.pop(name, None)  # a field the application removed stays removed
                carried.append(name)

    def carry_over(self, item: dict[str, Any], selected_fields: frozenset[str]) -> list[str]:
        """:func:`carry_over`, decoding only the attributes carried."""
        carried: list[str] = []
        raw = self.raw
        # usually only bookkeeping is left once the row's own attributes are set aside (set difference in C)
        for name in sorted(raw.keys() - item.keys()):
            if _carried(name, item, selected_fields):
                attribute = raw[name]
                item[name] = attribute["S"] if "S" in attribute else from_wire(attribute)
                if is_data_attribute(name):
                    carried.append(name)
        return carried


def salesforce_base(
    item: Mapping[str, Any], carried: Iterable[str], stored_base: str | None, *, own: str | None = None
) -> str:
    """The ``_base`` text of an item a put is about to write from Salesforce values.

    The item's data as Salesforce has it: the values read, and for the attributes carried over
    from the stored item (not selected: formulas, fields no longer readable) the stored base's
    values when there is one (a local edit of such an attribute stays a local edit).  ``own``:
    :func:`~sfsync.items.snapshot.encode_base` of ``item``, when the caller has it already.
    """
    names = list(carried)
    if not names or stored_base is None:
        return own if own is not None else encode_base(item)
    base = decode_base(stored_base) or {}
    view = dict(item)
    for name in names:
        view[name] = base.get(name)
    return encode_base(view)


def patched_base(stored: Mapping[str, Any], changes: Mapping[str, Any]) -> str:
    """The ``_base`` text after an update of ``changes`` (None removes) to a stored two-way item.

    The stored base with the changed data attributes set (an item without a base: its data with
    them), so local edits of other attributes stay local edits.
    """
    raw = stored.get(BASE_ATTRIBUTE)
    base = decode_base(raw if isinstance(raw, str) else None)
    view: dict[str, Any] = base if base is not None else dict(stored)
    for name, value in changes.items():
        if is_data_attribute(name):
            view[name] = value
    return encode_base(view)


def unchanged_since_base(item: Mapping[str, Any], carried: Iterable[str], stored_base: str) -> bool:
    """Is the row Salesforce sent (``item``) identical to the stored base snapshot?"""
    return not local_changes({**item, BASE_ATTRIBUTE: stored_base}, ignore=carried)


Decision = Literal["skip", "write", "refresh"]


def decide_two_way(current: StoredItem | None, item: dict[str, Any], carried: list[str], own_base: str) -> Decision:
    """Set ``item``'s ``_base`` and decide its put: skip it, write it, or write it only to refresh the base.

    ``own_base``: :func:`~sfsync.items.snapshot.encode_base` of ``item`` (its base when nothing was carried over).

    * a newer version stored: skip;
    * Salesforce's row identical to the stored base snapshot (nothing changed in Salesforce since
      the engine's last write): skip, whatever the local edits pending;
    * same data as stored: skip when the stored item has no snapshot (written before snapshots);
      with a different snapshot (the local values are now Salesforce's) write to refresh it;
    * anything else: write Salesforce's values (pending local edits are the write-back's to
      reconcile, from the stream's old image).

    Data can only be the same when the stamps are (``SystemModstamp`` is data): only then is the
    stored item decoded in full.
    """
    stored_base = current.text(BASE_ATTRIBUTE) if current is not None else None
    base = salesforce_base(item, carried, stored_base, own=own_base)
    item[BASE_ATTRIBUTE] = base
    if current is None:
        return "write"
    stored_stamp = current.stamp()
    new_stamp = item["SystemModstamp"]
    if stored_stamp > new_stamp:
        return "skip"
    if stored_base is not None and (
        stored_base == base or (stored_stamp == new_stamp and unchanged_since_base(item, carried, stored_base))
    ):
        return "skip"
    if stored_stamp == new_stamp and _same_data(current.full(), item):
        return "skip" if stored_base is None else "refresh"
    return "write"


def decide_one_way(current: StoredItem | None, item: dict[str, Any]) -> Decision:
    """Skip a row whose stored version is newer or has the same data (only possible with equal stamps)."""
    if current is None:
        return "write"
    stored_stamp = current.stamp()
    new_stamp = item["SystemModstamp"]
    if stored_stamp > new_stamp or (stored_stamp == new_stamp and _same_data(current.full(), item)):
        return "skip"
    return "write"


def put_result(current: StoredItem | None, item: Mapping[str, Any]) -> Outcome:
    """:func:`classify` for a put already known to change the item (not the same data)."""
    if item["IsDeleted"] and (current is None or not current.deleted()):
        return "deleted"
    return "created" if current is None else "updated"


_ABSENT = object()


def _same_data(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Equal apart from the volatile bookkeeping (``_synced_at``, ``_cycle_id``, ``_expires_at``) and ``_base``."""
    compared = 0
    for name, value in new.items():
        if name in _NOT_COMPARED:
            continue
        if old.get(name, _ABSENT) != value:
            return False
        compared += 1
    return compared == sum(1 for name in old if name not in _NOT_COMPARED)


def classify(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> Outcome:
    """What a successful put did: created, updated, deleted (tombstoned) or skipped (no change)."""
    if old is None:
        return "deleted" if new["IsDeleted"] else "created"
    if _same_data(old, new):
        return "skipped"
    if new["IsDeleted"] and not old.get("IsDeleted", False):
        return "deleted"
    return "updated"


__all__ = [
    "COUNTER_FOR",
    "PENDING_SINCE",
    "WRITEBACK_ATTRIBUTES",
    "Decision",
    "Outcome",
    "PageOutcome",
    "StoredItem",
    "carry_over",
    "classify",
    "decide_one_way",
    "decide_two_way",
    "patched_base",
    "put_result",
    "salesforce_base",
    "unchanged_since_base",
]
