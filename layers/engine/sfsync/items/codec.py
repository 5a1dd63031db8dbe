"""The one item codec: Salesforce value -> item value -> DynamoDB wire JSON and the ``_base`` text.

Every engine path that turns Salesforce data into items uses this module: the incremental cycle and
``sfsync verify`` (:class:`sfsync.store.records.RecordStore`), the full copy (:mod:`sfsync.fullcopy.steps`, Bulk
CSV rows typed by :mod:`sfsync.items.csv` first), and the write-back (Salesforce's current values,
the items it writes).  The rules, one place each:

* **values** (:func:`item_value`): text as it is; booleans as BOOL; numbers as ``Decimal`` checked
  against DynamoDB's number rule (at most 38 significant digits, magnitude 1E-130 up to below
  1E+126; a float is taken as the shortest text that reads back as it, so ``0.1`` stays ``0.1``);
  datetime fields normalised to the fixed-width ISO ms ``Z`` form; JSON objects (compound fields,
  relationships) left out (their components are fields of their own); nulls are absent attributes.
  A value DynamoDB cannot hold raises :class:`UnstorableRecord` naming the field;
* **items** (:func:`to_item`): a row's values plus the engine's attributes (``sobject``,
  ``SystemModstamp``, ``IsDeleted``, ``_synced_at``, ``_cycle_id``, ``_expires_at`` on tombstones of an
  object with a retention, ``_merged_into`` on a merge loser);
* **size** (:func:`check_size`): DynamoDB's 400 KB item limit (names + values), base snapshot included;
* **wire JSON and base snapshot** (:func:`encode`): one pass over the item yields both texts.

**How the encoder is fast.**  The item's text values (most of them) go through one ``orjson`` call as
a plain ``{"name":"value",...}`` object; two byte replacements turn its ``":"`` and ``","`` into
``":{"S":"`` and ``"},"`` (in JSON text made only of string members those sequences occur only
between a name and its value, and between a value and the next name: a quote inside a string is
always escaped; a text that is exactly ``,`` or ``:`` would make one with its own quotes, so an item
holding one takes the member-by-member path).  The few other values (booleans, numbers, anything
else) are appended one by one.
The base snapshot is the same dictionary without the engine's attributes, with numbers as their
exact JSON text (``orjson.Fragment``), dumped with sorted keys; its text stays ASCII (non-ASCII
characters escaped as ``\\uXXXX``), byte for byte what the standard library writes with
``sort_keys=True``.  An item the fast pass cannot take (a lone surrogate in a text, a set in the
snapshot) is encoded by the standard library, with the same result.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, NamedTuple

import orjson
from boto3.dynamodb.types import TypeSerializer

from sfsync.core.clock import epoch_seconds, normalize_stamp, to_iso_ms
from sfsync.core.exceptions import UnstorableRecord
from sfsync.core.registry import ObjectSpec

#: DynamoDB's item size limit (attribute names + values, UTF-8).
MAX_ITEM_BYTES = 400 * 1024
#: The base snapshot's attribute on two-way items (see :mod:`sfsync.items.snapshot`).
BASE_ATTRIBUTE = "_base"
#: The engine's own attributes on every item (never copied from a row).
ENGINE_ATTRIBUTES = (
    "sobject",
    "SystemModstamp",
    "IsDeleted",
    "_synced_at",
    "_cycle_id",
    "_expires_at",
    "_merged_into",
    "_deleted_by",
    "_formulas_as_of",
)
_ENGINE_PREFIX = "_"
_NOT_DATA = frozenset({"sobject"})
#: Names a row's loop never copies: the engine's own attributes and the REST ``attributes`` object.
_NOT_COPIED = frozenset(ENGINE_ATTRIBUTES) | {"attributes"}


def is_data_attribute(name: str) -> bool:
    """A Salesforce field stored in the item (not the engine's bookkeeping: ``sobject``, ``_`` names)."""
    return not name.startswith(_ENGINE_PREFIX) and name not in _NOT_DATA


# -- values ----------------------------------------------------------------------------------------

#: Integers below this magnitude have at most 38 digits and are inside DynamoDB's range.
_SMALL_INT = 10**38
_MIN_ADJUSTED, _MAX_ADJUSTED, _MAX_DIGITS = -130, 125, 38


def ddb_number(value: int | float | Decimal) -> Decimal:
    """A number as the item holds it (``Decimal``), checked against DynamoDB's number rule.

    At most 38 significant digits (leading and trailing zeros do not count) and a magnitude from
    1E-130 up to below 1E+126 (or zero).  A float is taken as its shortest round-trip text.
    """
    kind = type(value)
    if kind is int:
        if -_SMALL_INT < value < _SMALL_INT:  # type: ignore[operator]
            return Decimal(value)
        number = Decimal(value)
    elif kind is float:
        if not math.isfinite(value):
            raise UnstorableRecord(f"non-finite number {value!r}")
        number = Decimal(repr(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise UnstorableRecord(f"non-finite number {value!r}")
        number = value
    else:
        raise UnstorableRecord(f"unsupported number {value!r}")
    if number:
        digits = number.as_tuple().digits
        significant = len(digits)
        while significant > _MAX_DIGITS and digits[significant - 1] == 0:
            significant -= 1
        if significant > _MAX_DIGITS or not _MIN_ADJUSTED <= number.adjusted() <= _MAX_ADJUSTED:
            raise UnstorableRecord(f"number {value!r} is outside DynamoDB's range/precision")
    return number


_STAMP_CACHE_SIZE = 4096
_stamps: dict[str, str] = {}
_synced_texts: dict[dt.datetime, str] = {}


#: The item's datetime form, and Salesforce's REST form of a UTC instant (``+0000``).
_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z").fullmatch
_UTC_OFFSET = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000").fullmatch
_from_iso = dt.datetime.fromisoformat


def stamp(text: str) -> str:
    """A Salesforce datetime in the item's fixed-width ISO ms ``Z`` form (ValueError if not one).

    Text already in that form, or in REST's ``+0000`` form of it, is only checked to be a real
    instant (C code); any other offset or precision goes through :func:`sfsync.core.clock.normalize_stamp`
    (memoised: a page repeats the same few instants).
    """
    if _CANONICAL(text) or _UTC_OFFSET(text):
        try:
            _from_iso(text[:23])
        except ValueError:
            return normalize_stamp(text)  # not a real instant: its own error
        return text if len(text) == 24 else text[:23] + "Z"
    known = _stamps.get(text)
    if known is None:
        known = normalize_stamp(text)
        if len(_stamps) >= _STAMP_CACHE_SIZE:
            _stamps.clear()
        _stamps[text] = known
    return known


def synced_text(synced_at: dt.datetime) -> str:
    """``_synced_at``'s text (memoised: a page shares one instant)."""
    known = _synced_texts.get(synced_at)
    if known is None:
        known = to_iso_ms(synced_at)
        if len(_synced_texts) >= 64:
            _synced_texts.clear()
        _synced_texts[synced_at] = known
    return known


def item_value(name: str, value: Any, *, is_datetime: bool = False) -> Any:
    """One Salesforce (REST JSON) value as the item holds it; None stays None.

    Raises :class:`UnstorableRecord` naming the field for a value DynamoDB cannot hold.
    """
    if value is None:
        return None
    kind = type(value)
    if kind is str:
        if is_datetime and value:
            try:
                return stamp(value)
            except ValueError as exc:
                raise UnstorableRecord(f"field {name}: {exc}", field=name) from exc
        return value
    if kind is bool:
        return value
    if kind is int or kind is float or kind is Decimal:
        try:
            return ddb_number(value)
        except UnstorableRecord as exc:
            raise UnstorableRecord(f"field {name}: {exc}", field=name) from exc
    raise UnstorableRecord(f"field {name}: unsupported value of type {kind.__name__}", field=name)


def salesforce_value(value: Any) -> Any:
    """An item value as Salesforce's JSON takes it (the other direction): numbers as int / float,
    a set (multi-select picklist read back from DynamoDB) as its ``;``-joined text."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, set):
        return ";".join(sorted(str(v) for v in value))
    return value


# -- items -----------------------------------------------------------------------------------------


def to_item(
    spec: ObjectSpec,
    record: Mapping[str, Any],
    *,
    cycle_id: str,
    synced_at: dt.datetime,
    datetime_fields: Iterable[str] = (),
) -> dict[str, Any]:
    """The item (Python values) for one Salesforce row (REST JSON types); raises :class:`UnstorableRecord`."""
    record_id = record.get(spec.key)
    if not isinstance(record_id, str) or not record_id:
        raise UnstorableRecord(f"row without {spec.key}")
    cursor = record.get(spec.cursor)
    if not isinstance(cursor, str):
        raise UnstorableRecord(f"row {record_id} without {spec.cursor}")
    dt_fields = datetime_fields if isinstance(datetime_fields, frozenset | set) else frozenset(datetime_fields)
    skip = _NOT_COPIED
    item: dict[str, Any] = {}
    for name, value in record.items():
        if value is None or name in skip:
            continue
        kind = type(value)
        if kind is str:
            if value and name in dt_fields:
                try:
                    item[name] = stamp(value)
                except ValueError as exc:
                    raise UnstorableRecord(f"field {name}: {exc}", field=name) from exc
            else:
                item[name] = value
        elif kind is bool:
            item[name] = value
        elif kind is not dict and not isinstance(value, dict):
            item[name] = item_value(name, value, is_datetime=name in dt_fields)
    try:
        item["SystemModstamp"] = stamp(cursor)
    except ValueError as exc:
        raise UnstorableRecord(f"field {spec.cursor}: {exc}") from exc
    deleted = bool(record.get("IsDeleted", False))
    item["sobject"] = spec.name
    item["IsDeleted"] = deleted
    item["_synced_at"] = synced_text(synced_at)
    item["_cycle_id"] = cycle_id
    if deleted and spec.tombstone_retention_days is not None:
        item["_expires_at"] = epoch_seconds(synced_at + dt.timedelta(days=spec.tombstone_retention_days))
    master = record.get("MasterRecordId")
    if deleted and isinstance(master, str) and master:
        item["_merged_into"] = master
    return item


def item_size(item: Mapping[str, Any]) -> int:
    """DynamoDB's item size rule (names + values), close enough to enforce the 400 KB limit."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        if isinstance(value, str):
            size += len(value.encode())
        elif isinstance(value, bool):
            size += 1
        elif isinstance(value, Decimal):
            size += 1 + (len(value.as_tuple().digits) + 1) // 2
        else:
            size += len(json.dumps(value, default=str).encode())
    return size


def check_size(item: Mapping[str, Any], wire: bytes, *, two_way: bool, base: str | None = None) -> None:
    """:class:`UnstorableRecord` when the item exceeds DynamoDB's 400 KB limit.

    ``wire``: the item's wire JSON (UTF-8, base snapshot included), never shorter than DynamoDB's
    measure of the item, so the exact measure runs only above the limit.  ``base``: the snapshot
    text when the item dict does not hold it.
    """
    if len(wire) > MAX_ITEM_BYTES:
        size = item_size(item)
        if base is not None and BASE_ATTRIBUTE not in item:
            size += len(BASE_ATTRIBUTE) + len(base.encode())
        if size > MAX_ITEM_BYTES:
            included = " (base snapshot included)" if two_way else ""
            raise UnstorableRecord(f"item of about {size} bytes{included} exceeds DynamoDB's 400 KB limit")


# -- the base snapshot's rules ---------------------------------------------------------------------


def _plain(value: Decimal) -> Any:
    """A Decimal as an exact JSON number (int, or a float that round-trips); else its text."""
    if value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    return as_float if Decimal(repr(as_float)) == value else str(value)


#: The snapshot's reference JSON rules (the standard library; the fast pass writes the same text).
_BASE_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=sorted)
_NUMBER_TEXTS: dict[Decimal, str] = {}


def number_text(value: Decimal) -> str:
    """A number's text inside the snapshot: an exact JSON number, or a JSON string of its digits."""
    text = _NUMBER_TEXTS.get(value)
    if text is None:
        text = _BASE_JSON.encode(_plain(value))
        if len(_NUMBER_TEXTS) >= 4096:
            _NUMBER_TEXTS.clear()
        _NUMBER_TEXTS[value] = text
    return text


def _reference_base(item: Mapping[str, Any]) -> str:
    data = {name: value for name, value in item.items() if value is not None and is_data_attribute(name)}
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


# -- the encoder -----------------------------------------------------------------------------------

_SERIALIZER = TypeSerializer()
_NAMES: dict[str, bytes] = {}
_LAYOUTS: dict[tuple[str, ...], tuple[str, ...]] = {}
_CACHE_SIZE = 4096
_BOOL_WIRE = (b'{"BOOL":false}', b'{"BOOL":true}')
_FRAGMENT = orjson.Fragment
_SORTED = orjson.OPT_SORT_KEYS
_dumps = orjson.dumps
#: Characters the standard library escapes in ASCII mode and orjson writes as they are.
_NOT_ASCII = re.compile("[\x7f-\U0010ffff]")


def _quoted_name(name: str) -> bytes:
    quoted = _NAMES.get(name)
    if quoted is None:
        if len(_NAMES) >= _CACHE_SIZE:
            _NAMES.clear()
        quoted = _NAMES[name] = _dumps(name) + b":"
    return quoted


def _engine_names(item: Mapping[str, Any]) -> tuple[str, ...]:
    """The item's attributes that are not data (cached per item layout: a page's rows share one)."""
    layout = tuple(item)
    names = _LAYOUTS.get(layout)
    if names is None:
        names = tuple(name for name in layout if not is_data_attribute(name))
        if len(_LAYOUTS) >= _CACHE_SIZE:
            _LAYOUTS.clear()
        _LAYOUTS[layout] = names
    return names


def wire_attribute(value: Any) -> dict[str, Any]:
    """One item value as a DynamoDB JSON ``AttributeValue`` (a dict; the JSON protocol's form)."""
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is bool:
        return {"BOOL": value}
    if kind is Decimal or kind is int:
        return {"N": str(value)}
    return _json_ready(_SERIALIZER.serialize(value))


def _json_ready(attribute: Mapping[str, Any]) -> dict[str, Any]:
    """boto3's serialised form -> the JSON protocol's (binary values base64, nested maps/lists)."""
    ((tag, inner),) = attribute.items()
    if tag == "B":
        return {"B": base64.b64encode(bytes(inner)).decode()}
    if tag == "BS":
        return {"BS": [base64.b64encode(bytes(b)).decode() for b in inner]}
    if tag == "M":
        return {"M": {k: _json_ready(v) for k, v in inner.items()}}
    if tag == "L":
        return {"L": [_json_ready(v) for v in inner]}
    return {tag: inner}


def boto_attribute(value: Any) -> dict[str, Any]:
    """One item value in boto3's ``AttributeValue`` form, for calls botocore serialises itself."""
    return _SERIALIZER.serialize(value)  # type: ignore[return-value]


def _wire_value(value: Any) -> bytes:
    kind = type(value)
    if kind is bool:
        return _BOOL_WIRE[value]
    if (kind is Decimal and value.is_finite()) or kind is int:
        return b'{"N":"' + str(value).encode() + b'"}'
    return _dumps(wire_attribute(value))


def _strings_wire(strings: Mapping[str, str]) -> bytes:
    """``"name":{"S":"value"},...`` for a dict of text values (see the module docstring)."""
    values = strings.values()
    if "," in values or ":" in values or "," in strings or ":" in strings:
        # a text that is exactly "," or ":" is written as '","' or '":"' by itself: one member at a time
        return b",".join(_quoted_name(name) + _dumps({"S": value}) for name, value in strings.items())
    raw = _dumps(strings)
    return raw[1:-1].replace(b'":"', b'":{"S":"').replace(b'","', b'"},"') + b"}"


def _ascii(text: bytes) -> str:
    """JSON text with every character above U+007E escaped, as the standard library's ASCII mode."""
    decoded = text.decode()
    if text.isascii() and "\x7f" not in decoded:
        return decoded
    return _NOT_ASCII.sub(_escape, decoded)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"


def _split(item: Mapping[str, Any], others: Iterable[str] | None) -> tuple[Mapping[str, Any], list[str]]:
    """The item's text values (a dict) and the names of its other values."""
    other_names = list(others) if others is not None else [n for n, v in item.items() if type(v) is not str]
    if not other_names:
        return item, other_names
    strings = dict(item)
    for name in other_names:
        del strings[name]
    return strings, other_names


def _base_text(item: Mapping[str, Any], strings: Mapping[str, Any], other_names: list[str]) -> str:
    data = dict(strings)
    for name in _engine_names(item):
        data.pop(name, None)
    for name in other_names:
        value = item[name]
        if value is None or not is_data_attribute(name):
            continue
        kind = type(value)
        if kind is bool:
            data[name] = value
        elif kind is Decimal and value.is_finite():
            data[name] = _FRAGMENT(number_text(value))
        elif kind is int:
            data[name] = _FRAGMENT(str(value))
        else:  # sets, lists, maps: the reference rules
            return _reference_base(item)
    return _ascii(_dumps(data, option=_SORTED))


def encode(
    item: Mapping[str, Any], *, with_base: bool, others: Iterable[str] | None = None
) -> tuple[bytes, str | None]:
    """The item's DynamoDB wire JSON (an ``AttributeValue`` map, UTF-8) and, ``with_base``, its
    base snapshot text (:func:`encode_base`), in one pass.

    ``others``: the names of the item's values that are not text, when the caller knows them
    (otherwise found here).  A ``_base`` already in the item is encoded as any attribute.
    """
    strings, other_names = _split(item, others)
    try:
        parts = [_strings_wire(strings)] if strings else []
        parts.extend([_quoted_name(name) + _wire_value(item[name]) for name in other_names])
        wire = b"{" + b",".join(parts) + b"}"
        return wire, (_base_text(item, strings, other_names) if with_base else None)
    except TypeError:  # a lone surrogate (orjson takes UTF-8 only), an int beyond 64 bits in a map
        return _reference_encode(item, with_base)


_WIRE_JSON = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def _reference_encode(item: Mapping[str, Any], with_base: bool) -> tuple[bytes, str | None]:
    """The same texts by the standard library (ASCII-escaped), for what the fast pass refuses."""
    wire = _WIRE_JSON.encode({name: wire_attribute(value) for name, value in item.items()}).encode()
    return wire, (_reference_base(item) if with_base else None)


def encode_base(item: Mapping[str, Any]) -> str:
    """The ``_base`` text of an item the engine writes from Salesforce values (its data attributes).

    Compact JSON, keys sorted, ASCII; nulls absent; numbers as exact JSON numbers (a value no float
    holds exactly as its text); booleans as JSON booleans; datetimes as the item's strings.
    """
    strings, other_names = _split(item, None)
    try:
        return _base_text(item, strings, other_names)
    except TypeError:
        return _reference_base(item)


def wire_with_base(wire: bytes, base: str) -> bytes:
    """An item's wire JSON with ``_base`` (the snapshot text) added as its last attribute."""
    return wire[:-1] + (b',"_base":{"S":' if len(wire) > 2 else b'"_base":{"S":') + _dumps(base) + b"}}"


class EncodedItem(NamedTuple):
    """One row as its item and the item's DynamoDB wire JSON (``text``, base snapshot included).

    A named tuple: one is built per row, and a frozen dataclass costs several times more to build.
    """

    record_id: str
    stamp: str
    deleted: bool
    text: bytes
    #: None when the encoder wrote the text without building the item (see :meth:`RestItems.item`)
    item: dict[str, Any] | None


def encoded_item(spec: ObjectSpec, item: dict[str, Any]) -> EncodedItem:
    """A new item's :class:`EncodedItem`: its wire JSON, with ``_base`` for a two-way object (a new
    item's base snapshot is its data), checked against the size limit (:class:`UnstorableRecord`)."""
    two_way = spec.writes_back
    wire, base = encode(item, with_base=two_way)
    if base is not None:
        wire = wire_with_base(wire, base)
    check_size(item, wire, two_way=two_way, base=base)
    return EncodedItem(item[spec.key], item["SystemModstamp"], item["IsDeleted"], wire, item)


class RestItems:
    """REST rows of one object as :class:`EncodedItem` (the interface :class:`sfsync.items.csv.CsvItems` shares)."""

    def __init__(
        self, spec: ObjectSpec, *, cycle_id: str, synced_at: dt.datetime, datetime_fields: Iterable[str] = ()
    ) -> None:
        self._spec, self._cycle_id, self._synced_at = spec, cycle_id, synced_at
        self._datetimes = frozenset(datetime_fields)

    def item(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return to_item(
            self._spec, row, cycle_id=self._cycle_id, synced_at=self._synced_at, datetime_fields=self._datetimes
        )

    def encode_rows(self, rows: Iterable[Mapping[str, Any]]) -> list[EncodedItem | UnstorableRecord]:
        """Each row's item and wire JSON, or the :class:`UnstorableRecord` that refuses it, in order."""
        results: list[EncodedItem | UnstorableRecord] = []
        for row in rows:
            try:
                results.append(encoded_item(self._spec, self.item(row)))
            except UnstorableRecord as exc:
                results.append(exc)
        return results


_PUT_OPEN = b'{"PutRequest":{"Item":'
_PUT_JOIN = b'}},{"PutRequest":{"Item":'


def batch_put_body(table: str, items: Iterable[bytes]) -> bytes:
    """A whole ``BatchWriteItem`` request body of unconditional puts (each item its wire JSON)."""
    return b"".join((b'{"RequestItems":{', _dumps(table), b":[", _PUT_OPEN, _PUT_JOIN.join(items), b"}}]}}"))


def wire_text(item: Mapping[str, Any]) -> bytes:
    """The item's wire JSON alone (see :func:`encode`)."""
    return encode(item, with_base=False)[0]


__all__ = [
    "BASE_ATTRIBUTE",
    "ENGINE_ATTRIBUTES",
    "MAX_ITEM_BYTES",
    "EncodedItem",
    "RestItems",
    "batch_put_body",
    "boto_attribute",
    "check_size",
    "ddb_number",
    "decode_base",
    "encode",
    "encode_base",
    "encoded_item",
    "is_data_attribute",
    "item_size",
    "item_value",
    "number_text",
    "salesforce_value",
    "stamp",
    "synced_text",
    "to_item",
    "wire_attribute",
    "wire_text",
    "wire_with_base",
]
