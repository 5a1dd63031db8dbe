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
attributes in name order (the base snapshot's order), each column's kind, and one regular expression
for the plain forms of the non-text values.  Per set of present values it caches the item's text with
a ``%s`` for each value (``%.0s`` for a null).  A row's non-text values are checked in one match; a row
none of whose texts needs a JSON escape (most rows) then fills its whole item, snapshot included, in
one ``%`` format; other rows are escaped in one call (values joined by NUL, split again).  A value not
in its plain form (``TRUE``, ``007``, an offset datetime, an empty text, a malformed line, a row near
the size limit) sends the row through the same rules one value at a time (:func:`typed_row`,
:func:`sfsync.items.codec.to_item`, :func:`sfsync.items.codec.encode`), which write the same item.
Rows come as dicts (:meth:`CsvItems.encode_rows`) or as ``csv.reader`` lines (:meth:`CsvItems.encode_lines`:
no dict per row, the full copy's path).
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
#: The plain forms a plan takes as they are, one regular expression per kind (anything else: the
#: plain rules).  An integer's text; a decimal whose text is what the item rule writes
#: (``repr(float(text))``: at most 15 significant digits, no trailing zero but an integer's ``.0``,
#: fixed-point from 1e-4 up; an integer-valued one's snapshot drops the ``.0``); a boolean.
_INT = r"(?:0|-?[1-9][0-9]{0,17})"
_DECIMAL = (
    r"(?:(?=-?[0-9.]{3,16}(?:\x00|$))(?:0|-?[1-9][0-9]*)\.0"
    r"|-?(?=[0-9.]{3,16}(?:\x00|$))[1-9][0-9]*\.[0-9]*[1-9]"
    r"|-?0\.0{0,3}[1-9](?:[0-9]{0,10}[1-9])?)"
)
_BOOL = r"(?:true|false)"
#: A datetime already in the item's form (``...000Z``) whose day fits its month; 29 February is let
#: through here and each leap day checked by :meth:`CsvItems._valid_stamp`.
_DAY = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-9]))"
)
_STAMP = rf"(?!0000)[0-9]{{4}}-{_DAY}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{{3}}Z"
_LEAP_DAY = "-02-29T"
#: Bound of the cached forms per plan (one per set of present values seen)
_MAX_FORMS = 4096
#: The separator of a row's values joined into one text (a Bulk CSV value never holds NUL: the
#: client drops it) and its JSON escape, by which the escaped row is split again.
_SEP, _SEP_ESCAPED = "\x00", "\\u0000"


#: Kinds of a data column in a plan.
_TEXT, _BOOLEAN, _INTEGER, _DECIMAL_KIND, _DATETIME = 0, 1, 2, 3, 4
_KIND_PATTERN = {_BOOLEAN: _BOOL, _INTEGER: _INT, _DECIMAL_KIND: _DECIMAL, _DATETIME: _STAMP}
#: Per kind: the wire's ``AttributeValue`` and the snapshot's value around a value's JSON-escaped text.
_WIRE_FORM = {
    _TEXT: '{"S":"%s"}',
    _DATETIME: '{"S":"%s"}',
    _BOOLEAN: '{"BOOL":%s}',
    _INTEGER: '{"N":"%s"}',
    _DECIMAL_KIND: '{"N":"%s"}',
}
_BASE_FORM = {_TEXT: '"%s"', _DATETIME: '"%s"', _BOOLEAN: "%s", _INTEGER: "%s", _DECIMAL_KIND: "%s"}


@dataclass(frozen=True, slots=True)
class _Forms:
    """The texts of rows with one set of present values, each value a ``%s`` (a null one ``%.0s``: nothing).

    ``data`` is filled with a row's JSON-escaped texts in the plan's order: the item's attributes,
    the engine's included, without the closing brace; ``base`` likewise is the snapshot.  ``item``
    is the whole item, its snapshot attribute included (two-way objects: filled with the texts
    twice), for rows none of whose texts needed an escape (the snapshot escaped once more is then
    the same text).
    """

    data: str
    base: str
    item: str
    #: the positions of the present decimals (an integer-valued one's snapshot drops ``.0``)
    decimals: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _Plan:
    """How rows with one CSV header become items, decided once per header.

    The item's data attributes in name order (the base snapshot's order; ``SystemModstamp`` from the
    cursor column, ``IsDeleted`` always): ``get`` picks their texts from a row in one C call, and
    ``check`` tells whether the joined texts are all in their plain form (one C call for the row).
    The wire and snapshot texts are made per set of present values (:class:`_Forms`, cached).
    """

    width: int
    #: one less than the data attributes: the NUL separators of a joined row
    separators: int
    get: Callable[[Any], tuple[Any, ...]]
    names: tuple[str, ...]
    kinds: tuple[int, ...]
    positions: tuple[int, ...]
    #: the values that are not text (booleans, numbers, datetimes), in the plan's order
    typed: Callable[[Sequence[Any]], tuple[Any, ...]]
    #: those values joined by ``_SEP`` all in their plain form (the stamp and IsDeleted present)
    check: Callable[[str], Any]
    datetimes: Callable[[Sequence[Any]], tuple[Any, ...]]
    key_at: int
    stamp_at: int
    deleted_at: int
    #: where ``MasterRecordId`` is (a deleted row's merge target), -1 when it is not selected
    master_at: int
    forms: dict[tuple[int, ...], _Forms]


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
        engine = {"sobject": spec.name, "_synced_at": synced_text(synced_at), "_cycle_id": cycle_id}
        self._engine_wire = "".join("," + _quote(n) + ':{"S":' + _quote(v) + "}" for n, v in engine.items())
        self._expires_wire = ""
        if spec.tombstone_retention_days is not None:
            expires = epoch_seconds(synced_at + dt.timedelta(days=spec.tombstone_retention_days))
            self._expires_wire = f',"_expires_at":{{"N":"{expires}"}}'
        self._stamps: dict[str, bool] = {}

    def _plan_for(self, columns: tuple[Any, ...], *, positional: bool = False) -> _Plan | None:
        key = (positional, columns)
        if key not in self._plans:
            self._plans[key] = self._compile(columns, positional=positional)
        return self._plans[key]

    def _compile(self, columns: tuple[Any, ...], *, positional: bool) -> _Plan | None:
        """The plan for rows with these columns: dict rows by name, or (``positional``) lines by position."""
        spec, types = self._spec, self._types
        if not all(isinstance(c, str) for c in columns):
            return None  # csv's key for the surplus fields of a malformed line: the plain rules decide
        if positional and len(set(columns)) != len(columns):
            return None  # a repeated column name: the plain rules take the line as csv.DictReader does
        if spec.key not in columns or spec.cursor not in columns or "IsDeleted" not in columns:
            return None
        kinds_of = [types.booleans, types.integers, types.floats, types.datetimes]
        if any(a & b for n, a in enumerate(kinds_of) for b in kinds_of[n + 1 :]):
            return None  # a column typed twice: the plain rules decide
        names = sorted({c for c in columns if c not in _NOT_COPIED} | {"SystemModstamp", "IsDeleted"})
        source = [spec.cursor if name == "SystemModstamp" else name for name in names]
        kinds: list[int] = []
        for name in names:
            if name == "IsDeleted" or (name in types.booleans and name != "SystemModstamp"):
                kinds.append(_BOOLEAN)
            elif name in types.integers and name != "SystemModstamp":
                kinds.append(_INTEGER)
            elif name in types.floats and name != "SystemModstamp":
                kinds.append(_DECIMAL_KIND)
            elif name in types.datetimes or name == "SystemModstamp":
                kinds.append(_DATETIME)
            else:
                kinds.append(_TEXT)
        patterns = [
            _KIND_PATTERN[kind] if name in ("SystemModstamp", "IsDeleted") else f"(?:{_KIND_PATTERN[kind]})?"
            for name, kind in zip(names, kinds, strict=True)
            if kind != _TEXT
        ]
        return _Plan(
            width=len(columns),
            separators=len(names) - 1,
            get=_getter([columns.index(name) for name in source]) if positional else operator.itemgetter(*source),
            names=tuple(names),
            kinds=tuple(kinds),
            positions=tuple(range(len(names))),
            typed=_getter([at for at, kind in enumerate(kinds) if kind != _TEXT]),
            check=re.compile(_SEP.join(patterns)).fullmatch,
            datetimes=_getter([at for at, kind in enumerate(kinds) if kind == _DATETIME]),
            key_at=names.index(spec.key),
            stamp_at=names.index("SystemModstamp"),
            deleted_at=names.index("IsDeleted"),
            master_at=names.index("MasterRecordId") if "MasterRecordId" in names else -1,
            forms={},
        )

    def _forms(self, plan: _Plan, present: tuple[int, ...]) -> _Forms:
        """The texts for rows whose present values are at ``present`` (cached on the plan)."""
        forms = plan.forms.get(present)
        if forms is None:
            wire, base = ["{"], ["{"]
            separator = ""
            for at, (name, kind) in enumerate(zip(plan.names, plan.kinds, strict=True)):
                if at in present:
                    key = separator + _quote(name).replace("%", "%%") + ":"
                    separator = ","
                    wire.append(key + _WIRE_FORM[kind])
                    base.append(key + _BASE_FORM[kind])
                else:
                    wire.append("%.0s")
                    base.append("%.0s")
            base.append("}")
            data = "".join(wire) + self._engine_wire.replace("%", "%%")
            base_text = "".join(base)
            item = data + (',"_base":{"S":' + _quote(base_text) + "}" if self._two_way else "") + "}"
            decimals = tuple(at for at in present if plan.kinds[at] == _DECIMAL_KIND)
            forms = _Forms(data, base_text, item, decimals)
            if len(plan.forms) >= _MAX_FORMS:
                plan.forms.clear()
            plan.forms[present] = forms
        return forms

    def encode(self, row: Mapping[str, str | None]) -> EncodedItem:
        """One row's item and wire JSON; :class:`UnstorableRecord` when the rules refuse the row."""
        (result,) = self.encode_rows([row])
        if isinstance(result, UnstorableRecord):
            raise result
        return result

    def encode_rows(self, rows: Iterable[Mapping[str, str | None]]) -> list[EncodedItem | UnstorableRecord]:
        """Each dict row's item and wire JSON, or the :class:`UnstorableRecord` that refuses it, in order."""
        results: list[EncodedItem | UnstorableRecord] = []
        for row in rows:
            try:
                results.append(self._fast(row) or self._plain(row))
            except UnstorableRecord as exc:
                results.append(exc)
        return results

    def encode_lines(
        self, header: Sequence[str], lines: Iterable[Sequence[str]]
    ) -> list[EncodedItem | UnstorableRecord]:
        """The same for CSV lines as ``csv.reader`` gives them (``''`` is a null), without a dict per line.

        A line whose width is not the header's is taken as :func:`line_row` maps it (as
        ``csv.DictReader`` would), by the plain rules.
        """
        columns = tuple(header)
        plan = self._plan_for(columns, positional=True)
        width = len(columns)
        results: list[EncodedItem | UnstorableRecord] = []
        for line in lines:
            try:
                encoded = None
                if plan is not None and len(line) == width:
                    encoded = self._encode(plan, plan.get(line))
                results.append(encoded or self._plain(line_row(columns, line)))
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
        """A dict row by its header's plan; None when a value is not in its plain form (the plain rules decide)."""
        plan = self._plan
        if plan is None or len(row) != plan.width:
            plan = self._plan = self._plan_for(tuple(row))
            if plan is None:
                return None
        try:
            values = plan.get(row)
        except KeyError:  # other columns with the same count
            plan = self._plan = self._plan_for(tuple(row))
            if plan is None:
                return None
            values = plan.get(row)
        if "" in values:
            return None  # an empty text is kept as it is: the plain rules
        return self._encode(plan, tuple([value if value is not None else "" for value in values]))

    def _encode(self, plan: _Plan, values: tuple[str, ...]) -> EncodedItem | None:
        """A row's data texts in the plan's order (``''``: null) as an item; None: the plain rules decide.

        The non-text values are checked with one match.  A row none of whose texts needs a JSON
        escape (printable ASCII without ``"`` or ``\\``: most rows) fills its item's text, snapshot
        included, with one ``%`` format.  Otherwise the texts are joined by NUL, escaped in one C
        call and split again (each value escaped once), and the snapshot is escaped as a whole.
        """
        typed = _SEP.join(plan.typed(values))
        if not values[plan.key_at] or not plan.check(typed):
            return None  # a value not in its plain form (or no key): the plain rules
        if _LEAP_DAY in typed and not all(map(self._valid_stamp, filter(None, plan.datetimes(values)))):
            return None
        flat = "".join(values)
        if flat.isascii() and flat.isprintable() and '"' not in flat and "\\" not in flat:
            texts = values  # no value needs an escape: each text is its own JSON body
            plain_texts = True
        else:
            escaped = _quote(_SEP.join(values))
            if escaped.count(_SEP_ESCAPED) != plan.separators:
                return None  # a value holding NUL or its escape's text: the plain rules
            texts = tuple(escaped[1:-1].split(_SEP_ESCAPED))
            plain_texts = False
        forms = plan.forms.get(present := tuple(compress(plan.positions, values))) or self._forms(plan, present)
        base_texts = texts
        for at in forms.decimals:
            if texts[at].endswith(".0"):  # an integer-valued decimal: the snapshot has the integer
                base_texts = (*base_texts[:at], texts[at][:-2], *base_texts[at + 1 :])
        if plain_texts:
            wire = forms.item % (texts + base_texts) if self._two_way else forms.item % texts
        else:
            wire = forms.data % texts
            if self._two_way:
                wire += ',"_base":{"S":' + _quote(forms.base % base_texts) + "}"
            wire += "}"
        deleted = values[plan.deleted_at] == "true"
        if deleted:
            wire = wire[:-1] + self._expires_wire
            if plan.master_at >= 0 and values[plan.master_at]:
                wire += ',"_merged_into":{"S":"' + texts[plan.master_at] + '"}'
            wire += "}"
        if len(wire) > MAX_ITEM_BYTES:
            return None  # near DynamoDB's item limit: the plain rules measure it
        return EncodedItem(values[plan.key_at], values[plan.stamp_at], deleted, wire.encode(), None)

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


def null_if_empty(row: Mapping[Any, Any]) -> dict[Any, Any]:
    """A Bulk CSV row's cells as values: an empty cell is null (Bulk API 2.0 writes a null as nothing)."""
    return {name: (text if text != "" else None) for name, text in row.items()}


def line_row(header: Sequence[str], line: Sequence[str]) -> dict[Any, Any]:
    """A CSV line as ``csv.DictReader`` maps it, empty texts as None (the client's dict rows).

    A line longer than the header keeps its surplus texts as a list under the key None, a shorter
    one has None for the missing columns (``csv.DictReader``'s ``restkey`` and ``restval``).
    """
    row = null_if_empty(dict(zip(header, line, strict=False)))
    if len(line) > len(header):
        row[None] = list(line[len(header) :])
    else:
        for name in header[len(line) :]:
            row[name] = None
    return row


__all__ = [
    "FLOAT_TYPES",
    "INT_TYPES",
    "NUMBER_TYPES",
    "CsvItems",
    "FieldTypes",
    "field_types",
    "line_row",
    "null_if_empty",
    "typed_row",
]
