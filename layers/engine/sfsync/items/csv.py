"""Bulk API CSV rows as items: the one CSV typing rule, compiled once per CSV header.

A Bulk result set is all text (an empty value is a null).  A row's non-text fields take the JSON
types a REST row carries, then the row follows the item rule of :mod:`sfsync.items.codec` (the
same value, datetime, number, engine-attribute and size rules as a REST row):

* booleans: ``true`` / ``false`` (any case) -> bool;
* ``int`` / ``long`` fields: an integer's text -> int (exact, however long);
* ``double`` / ``currency`` / ``percent`` fields: a number's text -> float (what REST's JSON gives);
* a value that does not parse as its type is kept as its text: stored as Salesforce sent it, never
  lost and never a reason to fail the page.

Datetimes are normalised by the item rule.  The incremental cycle's Bulk reads and the full copy
use this one rule (:class:`FieldTypes` is recorded in the copy document) through :class:`CsvItems`.

**How it is fast.**  Per CSV header, :class:`CsvItems` compiles a plan once: the item's data
attributes in name order (the base snapshot's order), each column's kind and its precompiled JSON
prefixes.  A row's present values are escaped in one C pass (``map`` of the standard library's
ASCII JSON escaping over ``filter(None, values)``); each escaped value serves both the wire text
and the snapshot, and only booleans, numbers and datetimes take a Python step each.  A value not
in its plain form (``TRUE``, ``007``, an offset datetime, an empty text, a malformed line, a row near
the size limit) sends the row through the same rules one value at a time (:func:`typed_row`,
:func:`sfsync.items.codec.to_item`, :func:`sfsync.items.codec.encode`), which write the same texts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import compress
from typing import Any

from sfsync.core.clock import epoch_seconds
from sfsync.core.exceptions import UnstorableRecord
from sfsync.core.registry import ObjectSpec
from sfsync.items.codec import ENGINE_ATTRIBUTES, MAX_ITEM_BYTES, EncodedItem, encoded_item, stamp, synced_text, to_item

INT_TYPES = frozenset({"int", "long"})
FLOAT_TYPES = frozenset({"double", "currency", "percent"})
NUMBER_TYPES = INT_TYPES | FLOAT_TYPES


@dataclass(frozen=True, slots=True)
class FieldTypes:
    """Which selected fields are not text, so Bulk CSV strings become the values REST would give."""

    booleans: frozenset[str] = frozenset()
    integers: frozenset[str] = frozenset()
    floats: frozenset[str] = frozenset()
    datetimes: frozenset[str] = frozenset()

    def to_doc(self) -> dict[str, list[str]]:
        return {k: sorted(v) for k, v in asdict(self).items()}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Sequence[str]]) -> FieldTypes:
        return cls(**{k: frozenset(doc.get(k, ())) for k in ("booleans", "integers", "floats", "datetimes")})

    @classmethod
    def of(cls, types: Mapping[str, str]) -> FieldTypes:
        """From describe's type name per field (``boolean``, ``int``, ``currency``, ``datetime``, ...)."""
        return cls(
            booleans=frozenset(n for n, t in types.items() if t == "boolean"),
            integers=frozenset(n for n, t in types.items() if t in INT_TYPES),
            floats=frozenset(n for n, t in types.items() if t in FLOAT_TYPES),
            datetimes=frozenset(n for n, t in types.items() if t == "datetime"),
        )


def field_types(describe: Mapping[str, Any], fields: Iterable[str]) -> FieldTypes:
    """The :class:`FieldTypes` of ``fields`` from an object's describe."""
    by_name = {f.get("name"): f.get("type") for f in describe.get("fields") or []}
    return FieldTypes.of({name: str(by_name.get(name)) for name in fields})


_BOOLEANS = {"true": True, "false": False}


def _getter(positions: Sequence[int]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """A tuple of the values at ``positions`` (C code; ``itemgetter`` returns a bare value for one)."""
    if len(positions) > 1:
        return operator.itemgetter(*positions)
    if positions:
        at = positions[0]
        return lambda values: (values[at],)
    return lambda values: ()


def typed_row(row: Mapping[str, str | None], types: FieldTypes) -> dict[str, Any]:
    """A Bulk CSV row (empty -> None already) with booleans and numbers as REST would type them.

    A value that does not parse as its declared type is kept as text (stored, not lost).
    """
    out: dict[str, Any] = dict(row)
    for name in types.booleans:
        value = out.get(name)
        if value is not None:
            typed = _BOOLEANS.get(value)
            if typed is None:
                typed = _BOOLEANS.get(value.lower())
            if typed is not None:
                out[name] = typed
    for names, number in ((types.integers, int), (types.floats, float)):
        for name in names:
            value = out.get(name)
            if value is not None:
                with contextlib.suppress(ValueError):  # not a number: kept as Salesforce sent it
                    out[name] = number(value)
    return out


_NOT_COPIED = frozenset(ENGINE_ATTRIBUTES) | {"attributes"}
#: A JSON string literal, quoted and ASCII-escaped as the base snapshot's text has it (C code).
_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_PLAIN_INT = re.compile(r"0|-?[1-9]\d{0,17}").fullmatch
_PLAIN_DECIMAL = re.compile(r"-?(?:0|[1-9]\d{0,14})\.\d{1,15}").fullmatch
#: Datetimes already in the item's form that are real instants, told by their text alone (the day
#: fits its month); 29 February and anything else take :meth:`CsvItems._valid_stamp`.  One C call
#: checks all of a row's datetimes, joined by commas.
_DAY = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_STAMP = rf"(?!0000)[0-9]{{4}}-{_DAY}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{{3}}Z"
_STAMPS = re.compile(rf"{_STAMP}(?:,{_STAMP})*").fullmatch


#: Kinds of a data column in a plan (0: text, kept as it is).
_TEXT, _BOOLEAN, _INTEGER, _DECIMAL, _DATETIME = 0, 1, 2, 3, 4


@dataclass(frozen=True, slots=True)
class _Plan:
    """How rows with one CSV header become items, decided once per header.

    The item's data attributes in name order (the base snapshot's order; ``SystemModstamp`` from the
    cursor column, ``IsDeleted`` always): ``get`` picks their texts from a row in one C call; per
    position the column's kind, its wire prefix (the separator, ``"Name":`` and the opening of its
    ``AttributeValue``) and its snapshot prefix (``"Name":``).
    """

    width: int
    get: Callable[[Mapping[str, Any]], tuple[Any, ...]]
    names: tuple[str, ...]
    #: per position the kind the per-value loop looks at (datetimes count as text there: ``datetimes``
    #: picks them, and they are checked beforehand, all at once)
    kinds: tuple[int, ...]
    wire_prefix: tuple[str, ...]
    base_prefix: tuple[str, ...]
    positions: tuple[int, ...]
    datetimes: Callable[[Sequence[Any]], tuple[Any, ...]]
    key_at: int
    stamp_at: int
    deleted_at: int


class CsvItems:
    """Bulk CSV rows of one object as items with their wire JSON (and base snapshot), by the codec's rules.

    Each present value is JSON-escaped once (C code, over the whole row), and the escaped values
    serve both the wire text (spliced after each column's precompiled prefix) and the base snapshot
    (whose order is the plan's: names sorted); only booleans, numbers and datetimes take a Python
    step each.  A row the plan cannot take as it is (a malformed line, an empty text, a row near the
    size limit) follows the same rules one value at a time (typing, :func:`sfsync.items.codec.to_item`,
    :func:`sfsync.items.codec.encode`).
    """

    def __init__(self, spec: ObjectSpec, types: FieldTypes, *, cycle_id: str, synced_at: dt.datetime) -> None:
        self._spec = spec
        self._types = types
        self._two_way = spec.writes_back
        self._plans: dict[tuple[Any, ...], _Plan | None] = {}
        self._plan: _Plan | None = None
        self._cycle_id, self._synced_at = cycle_id, synced_at
        self._engine: dict[str, Any] = {
            "sobject": spec.name,
            "_synced_at": synced_text(synced_at),
            "_cycle_id": cycle_id,
        }
        self._engine_wire = "".join("," + _quote(n) + ':{"S":' + _quote(v) + "}" for n, v in self._engine.items())
        self._expires: int | None = None
        self._expires_wire = ""
        if spec.tombstone_retention_days is not None:
            self._expires = epoch_seconds(synced_at + dt.timedelta(days=spec.tombstone_retention_days))
            self._expires_wire = f',"_expires_at":{{"N":"{self._expires}"}}'
        self._stamps: dict[str, bool] = {}

    def _plan_for(self, row: Mapping[str, Any]) -> _Plan | None:
        columns = tuple(row)
        if columns not in self._plans:
            self._plans[columns] = self._compile(columns)
        return self._plans[columns]

    def _compile(self, columns: tuple[Any, ...]) -> _Plan | None:
        spec, types = self._spec, self._types
        if not all(isinstance(c, str) for c in columns):
            return None  # csv's key for the surplus fields of a malformed line: the plain rules decide
        if spec.key not in columns or spec.cursor not in columns or "IsDeleted" not in columns:
            return None
        kinds_of = [types.booleans, types.integers, types.floats, types.datetimes]
        if any(a & b for n, a in enumerate(kinds_of) for b in kinds_of[n + 1 :]):
            return None  # a column typed twice: the plain rules decide
        names = sorted({c for c in columns if c not in _NOT_COPIED} | {"SystemModstamp", "IsDeleted"})
        source = [spec.cursor if name == "SystemModstamp" else name for name in names]
        kinds: list[int] = []
        wire_prefix: list[str] = []
        for name in names:
            quoted = _quote(name)
            if name == "IsDeleted" or (name in types.booleans and name != "SystemModstamp"):
                kinds.append(_BOOLEAN)
                wire_prefix.append("}," + quoted + ':{"BOOL":')
            elif name in types.integers and name != "SystemModstamp":
                kinds.append(_INTEGER)
                wire_prefix.append("}," + quoted + ':{"N":')
            elif name in types.floats and name != "SystemModstamp":
                kinds.append(_DECIMAL)
                wire_prefix.append("}," + quoted + ':{"N":')
            else:
                kinds.append(_DATETIME if name in types.datetimes or name == "SystemModstamp" else _TEXT)
                wire_prefix.append("}," + quoted + ':{"S":')
        return _Plan(
            width=len(columns),
            get=operator.itemgetter(*source),
            names=tuple(names),
            kinds=tuple(_TEXT if kind == _DATETIME else kind for kind in kinds),
            wire_prefix=tuple(wire_prefix),
            base_prefix=tuple("," + _quote(name) + ":" for name in names),
            positions=tuple(range(len(names))),
            datetimes=_getter([at for at, kind in enumerate(kinds) if kind == _DATETIME]),
            key_at=names.index(spec.key),
            stamp_at=names.index("SystemModstamp"),
            deleted_at=names.index("IsDeleted"),
        )

    def encode(self, row: Mapping[str, str | None]) -> EncodedItem:
        """One row's item and wire JSON; :class:`UnstorableRecord` when the rules refuse the row."""
        (result,) = self.encode_rows([row])
        if isinstance(result, UnstorableRecord):
            raise result
        return result

    def encode_rows(self, rows: Iterable[Mapping[str, str | None]]) -> list[EncodedItem | UnstorableRecord]:
        """Each row's item and wire JSON, or the :class:`UnstorableRecord` that refuses it, in order."""
        results: list[EncodedItem | UnstorableRecord] = []
        for row in rows:
            try:
                results.append(self._fast(row) or self._plain(row))
            except UnstorableRecord as exc:
                results.append(exc)
        return results

    def _valid_stamp(self, text: str) -> bool:
        """Is the text a datetime already in the item's form (``...000Z``, a real instant)?"""
        known = self._stamps.get(text)
        if known is None:
            try:
                known = stamp(text) == text
            except ValueError:
                known = False
            if len(self._stamps) >= 4096:
                self._stamps.clear()
            self._stamps[text] = known
        return known

    def _fast(self, row: Mapping[str, str | None]) -> EncodedItem | None:
        """The row by its header's plan; None when a value is not in its plain form (the plain rules decide)."""
        plan = self._plan
        if plan is None or len(row) != plan.width:
            plan = self._plan = self._plan_for(row)
            if plan is None:
                return None
        try:
            values = plan.get(row)
        except KeyError:  # other columns with the same count
            plan = self._plan = self._plan_for(row)
            if plan is None:
                return None
            values = plan.get(row)
        if "" in values:
            return None  # an empty text is kept as it is: the plain rules
        record_id, modstamp, deleted_text = values[plan.key_at], values[plan.stamp_at], values[plan.deleted_at]
        if not record_id or modstamp is None or deleted_text is None:
            return None
        datetimes = [text for text in plan.datetimes(values) if text is not None]
        if not _STAMPS(",".join(datetimes)) and not all(map(self._valid_stamp, datetimes)):
            return None
        literals = list(map(_quote, filter(None, values)))  # each present value escaped once (C)
        kinds = list(compress(plan.kinds, values))
        base_literals = literals
        for at in compress(plan.positions, kinds):  # the present values that are not text or datetimes
            kind = kinds[at]
            text = literals[at][1:-1]
            if kind == _BOOLEAN:
                if text != "true" and text != "false":  # noqa: PLR1714 (two constants: faster than a tuple)
                    return None
                literals[at] = base_literals[at] = text
            elif kind == _INTEGER:
                if not _PLAIN_INT(text):
                    return None
                if base_literals is literals:
                    base_literals = literals.copy()
                base_literals[at] = text  # the wire keeps the quoted text (an N value), the snapshot the number
            else:  # _DECIMAL
                if not _PLAIN_DECIMAL(text) or repr(number := float(text)) != text:
                    return None
                if base_literals is literals:
                    base_literals = literals.copy()
                base_literals[at] = str(int(number)) if number.is_integer() else text
        deleted = deleted_text == "true"
        parts = [""] * (2 * len(literals))
        parts[::2] = compress(plan.wire_prefix, values)
        parts[1::2] = literals
        parts[0] = "{" + parts[0][2:]
        parts.append("}")
        parts.append(self._engine_wire)
        if deleted:
            parts.append(self._expires_wire)
            master = row.get("MasterRecordId")
            if master:
                parts.append(',"_merged_into":{"S":' + _quote(master) + "}")
        base: str | None = None
        if self._two_way:
            snapshot = [""] * (2 * len(base_literals))
            snapshot[::2] = compress(plan.base_prefix, values)
            snapshot[1::2] = base_literals
            snapshot[0] = "{" + snapshot[0][1:]
            snapshot.append("}")
            base = "".join(snapshot)
            parts.append(',"_base":{"S":' + _quote(base) + "}")
        parts.append("}")
        wire = "".join(parts)
        if len(wire) > MAX_ITEM_BYTES:
            return None  # near DynamoDB's item limit: the plain rules measure it
        return EncodedItem(record_id, modstamp, deleted, wire.encode(), None)

    def item(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The item of a row :meth:`encode_rows` took (for the record store's rules on a stored item)."""
        return to_item(
            self._spec,
            typed_row(row, self._types),
            cycle_id=self._cycle_id,
            synced_at=self._synced_at,
            datetime_fields=self._types.datetimes,
        )

    def _plain(self, row: Mapping[str, Any]) -> EncodedItem:
        """The same rules one value at a time (a malformed line, an empty text): typing, then the item rule."""
        return encoded_item(self._spec, self.item(row))


__all__ = [
    "FLOAT_TYPES",
    "INT_TYPES",
    "NUMBER_TYPES",
    "CsvItems",
    "FieldTypes",
    "field_types",
    "typed_row",
]
