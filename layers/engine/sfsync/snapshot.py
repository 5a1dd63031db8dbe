"""The base snapshot of two-way items: the values Salesforce last had, kept inside the item.

Items of two-way objects (``ObjectSpec.two_way``: Lead, Contact, Campaign, CampaignMember) carry
``_base``: a compact JSON object holding, for every Salesforce data attribute of the item, the
value the sync engine last wrote from Salesforce (or pushed to it).  Applications edit the data
attributes and never touch ``_base``; so for any item

    local value != base value  <=>  a change made on the local side that Salesforce has not seen.

Every engine write of a two-way item (incremental cycle, full copy, lifecycle patches, verify's
repairs, the write-back after a successful push) sets the data attributes and ``_base`` together,
so its own writes never look like local changes (no echo, no loop).

Layout rules (the same as the item's, see :mod:`sfsync.records`):

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

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

BASE_ATTRIBUTE = "_base"
#: Attributes that are never data: the engine's (``_`` prefix) and ``sobject``.
_ENGINE_PREFIX = "_"
_NOT_DATA = frozenset({"sobject"})


def is_data_attribute(name: str) -> bool:
    """A Salesforce field stored in the item (not the engine's bookkeeping)."""
    return not name.startswith(_ENGINE_PREFIX) and name not in _NOT_DATA


def data_of(item: Mapping[str, Any]) -> dict[str, Any]:
    """The item's data attributes (``None`` values left out)."""
    return {name: value for name, value in item.items() if value is not None and is_data_attribute(name)}


def _plain(value: Any) -> Any:
    """A Decimal as an exact JSON number (int, or a float that round-trips); else its text."""
    if value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    return as_float if Decimal(repr(as_float)) == value else str(value)


#: The snapshot's JSON rules, built once (``json.dumps`` builds an encoder a call).
_BASE_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=sorted)
#: An item's attribute names (in its order) -> its data attribute names, sorted.  The rows of a
#: page share one layout, so sorting and filtering the names is paid once per layout, not per item.
_DATA_ORDER: dict[tuple[str, ...], tuple[str, ...]] = {}
_DATA_ORDER_SIZE = 512


def data_order(names: tuple[str, ...]) -> tuple[str, ...]:
    """The data attributes among an item's attribute ``names``, in the snapshot's (sorted) order."""
    order = _DATA_ORDER.get(names)
    if order is None:
        order = tuple(sorted(name for name in names if is_data_attribute(name)))
        if len(_DATA_ORDER) >= _DATA_ORDER_SIZE:
            _DATA_ORDER.clear()
        _DATA_ORDER[names] = order
    return order


def number_text(value: Decimal) -> str:
    """A number's text inside the snapshot (see the module docstring: exact JSON numbers)."""
    return _BASE_JSON.encode(_plain(value))


def encode_base(item: Mapping[str, Any]) -> str:
    """The ``_base`` text for an item about to be written by the engine (its data attributes).

    Compact JSON, keys sorted; on the hot path of every write of a two-way item, so the data
    attributes are picked in an order computed once per item layout (the encoder's own sort then
    finds them sorted).
    """
    data = {name: value for name in data_order(tuple(item)) if (value := item[name]) is not None}
    try:
        return _BASE_JSON.encode(data)
    except TypeError:  # numbers (Decimal) are not JSON values as they are
        if not any(type(value) is Decimal for value in data.values()):
            raise
    return _BASE_JSON.encode({name: (_plain(v) if type(v) is Decimal else v) for name, v in data.items()})


def decode_base(text: str | None) -> dict[str, Any] | None:
    """The snapshot as a dict (numbers as ``Decimal``); ``None`` when the item has none."""
    if text is None:
        return None
    value = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    if not isinstance(value, dict):
        raise ValueError(f"{BASE_ATTRIBUTE} is not a JSON object")
    return value


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


def local_changes(item: Mapping[str, Any], *, ignore: Iterable[str] = ()) -> dict[str, LocalChange]:
    """Fields whose local value differs from the snapshot; empty when the item has no snapshot."""
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
