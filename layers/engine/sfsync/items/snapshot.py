"""The base snapshot of two-way items: the values Salesforce last had, kept inside the item.

Items of two-way objects (``ObjectSpec.two_way``: Lead, Contact, Campaign, CampaignMember) carry
``_base``: a compact JSON object holding, for every Salesforce data attribute of the item, the
value the sync engine last wrote from Salesforce (or pushed to it).  Applications edit the data
attributes and never touch ``_base``; so for any item

    local value != base value  <=>  a change made on the local side that Salesforce has not seen.

Every engine write of a two-way item (incremental cycle, full copy, lifecycle patches, verify's
repairs, the write-back after a successful push) sets the data attributes and ``_base`` together,
so its own writes never look like local changes (no echo, no loop).

Layout rules (the same as the item's, see :mod:`sfsync.items.codec`, which writes and reads the text):

* the snapshot holds the item's *data* attributes: every attribute except the engine's own
  (``sobject`` and names starting with ``_``); ``Id`` and ``SystemModstamp`` are included;
* a null / absent value is absent from the snapshot (as it is absent from the item);
* numbers are exact JSON numbers read back as ``Decimal`` (a value no float holds exactly is kept as
  its text; comparisons are numeric either way);
  booleans as JSON booleans; datetimes as the item's ISO ms ``Z`` strings.

An item without ``_base`` was never written by the engine from Salesforce: a local create when it
has no Salesforce ``Id`` pattern, otherwise an item of a version of the engine before snapshots
(treated as "no pending change").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# The snapshot's text is written and read by the one item codec (sfsync.items.codec), in the same
# pass as the item's wire JSON; these names stay importable from here.
from sfsync.items.codec import BASE_ATTRIBUTE, decode_base, encode_base, is_data_attribute


def data_of(item: Mapping[str, Any]) -> dict[str, Any]:
    """The item's data attributes (``None`` values left out)."""
    return {name: value for name, value in item.items() if value is not None and is_data_attribute(name)}


def base_of(item: Mapping[str, Any]) -> dict[str, Any] | None:
    """The item's snapshot, or ``None`` when it has none."""
    raw = item.get(BASE_ATTRIBUTE)
    return decode_base(raw if isinstance(raw, str) else None)


def with_base(item: dict[str, Any]) -> dict[str, Any]:
    """Set ``_base`` on an item the engine writes from Salesforce values; returns the item."""
    item[BASE_ATTRIBUTE] = encode_base(item)
    return item


def same(a: Any, b: Any) -> bool:
    """Equal as stored values: the one equality of local changes and write-back conflicts.

    ``None`` only to ``None``; booleans only to booleans; a number to anything numerically (a
    number the snapshot kept as its text equals the item's ``Decimal``; text that is not a number
    never equals one); anything else with ``==``.
    """
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float | Decimal) or isinstance(b, int | float | Decimal):
        try:
            return Decimal(str(a)) == Decimal(str(b))
        except ArithmeticError:
            return False
    return bool(a == b)


@dataclass(frozen=True, slots=True)
class LocalChange:
    """One field changed on the local side: Salesforce's last value and the local one (None = cleared)."""

    field: str
    base: Any
    local: Any


def _is_own_snapshot(item: Mapping[str, Any], raw: str) -> bool:
    """Is ``raw`` the snapshot text of the item's own data (the engine's writes, most stream records)?

    Text for text, so a match settles it without decoding the snapshot; anything else (an edit, a
    snapshot another version of the engine wrote) is compared value by value.
    """
    try:
        return raw == encode_base(item)
    except (TypeError, ValueError):
        return False


def local_changes(item: Mapping[str, Any], *, ignore: Iterable[str] = ()) -> dict[str, LocalChange]:
    """Fields whose local value differs from the snapshot; empty when the item has no snapshot."""
    raw = item.get(BASE_ATTRIBUTE)
    if isinstance(raw, str) and _is_own_snapshot(item, raw):
        return {}
    base = base_of(item)
    if base is None:
        return {}
    skip = frozenset(ignore)
    data = data_of(item)
    changes: dict[str, LocalChange] = {}
    for name in data.keys() | base.keys():
        if name in skip:
            continue
        local, old = data.get(name), base.get(name)
        if local is None and old is None:
            continue
        if local is None or old is None or not same(local, old):
            changes[name] = LocalChange(name, old, local)
    return changes


__all__ = [
    "BASE_ATTRIBUTE",
    "LocalChange",
    "base_of",
    "data_of",
    "decode_base",
    "encode_base",
    "is_data_attribute",
    "local_changes",
    "same",
    "with_base",
]
