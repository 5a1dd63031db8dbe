"""SOQL parser and compiler to SQLite, and rendering of result rows (spec §2.4-§2.6, §5.2, §13).

``compile_query(soql, schema, include_deleted=..., bulk=...)`` parses a query, validates every
name against the schema *as the integration user sees it* and returns a :class:`CompiledQuery`:
the SQL to run on the org's connection (values always bound as ``?`` parameters, identifiers
only from the schema) plus per-column render closures that turn a result tuple into a REST
record (``render_json``) or Bulk 2.0 CSV cells (``render_csv``).  The same rendering is also
compiled to SQL over a cursor snapshot's columns (``render_sql_json`` / ``render_sql_csv``), so
that REST pages and Bulk result sets are rendered by SQLite in C; rows holding a value SQL cannot
render byte-for-byte like the Python renderers are flagged and rendered in Python.

Layout of a result row: first the *output columns* (one per selected scalar field, compound
fields expanded to their components, in SELECT order -- these are exactly the Bulk CSV columns),
then the *auxiliary columns* the JSON renderer needs (the root ``Id`` for ``attributes.url`` and
the ``Id`` of every joined parent, which tells whether the relationship is null).

``sql`` already applies ``LIMIT`` and ``OFFSET`` (bound as parameters); ``limit``/``offset`` on the
compiled query are informational.  ``SELECT COUNT() ...`` compiles to a one-row, one-column SQL
(``count_only=True``); a REST answer for it is ``{"totalSize": n, "done": true, "records": []}``.

Supported: ``SELECT f, Parent.f, Parent.Parent.f, Poly.f, COUNT(), FIELDS(ALL|STANDARD|CUSTOM)
FROM Obj [alias] [WHERE ...] [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...] [LIMIT n] [OFFSET n]``
with ``= != <> < <= > >= IN NOT IN LIKE INCLUDES EXCLUDES``, ``AND/OR/NOT`` and parentheses, all
literal kinds of §2.4/§13.2 and the relative date literals ``TODAY YESTERDAY TOMORROW
LAST_N_DAYS:n NEXT_N_DAYS:n N_DAYS_AGO:n`` (these need ``now_ms``).  Comparisons follow SOQL's
two-valued logic: ``Field != 'x'`` and ``NOT Field = 'x'`` include rows where Field is null.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from . import ids
from .errors import ApiError, invalid_type
from .schema import (
    FLOAT_TYPES,
    INT_TYPES,
    FieldDef,
    ObjectDef,
    Schema,
    format_csv_datetime,
    format_rest_datetime,
    parse_date,
    parse_datetime_ms,
    quote_ident,
    to_csv,
    to_json,
)

__all__ = ["CompiledQuery", "compile_query", "join_json_parts", "json_params", "visible_field_names"]

MAX_OFFSET = 2000
MAX_FIELDS_LIMIT = 200
_DAY_MS = 86_400_000
_ID_TYPES = frozenset({"id", "reference"})
_NUMBER_TYPES = INT_TYPES | FLOAT_TYPES
# String types compared case-insensitively (ids are compared exactly, after 15->18 normalization).
_TEXT_TYPES = frozenset(
    {"string", "textarea", "email", "phone", "url", "picklist", "multipicklist", "combobox", "encryptedstring"}
)

_NO_SUCH_COLUMN = (
    "No such column '{name}' on entity '{entity}'. If you are attempting to use a custom field, be sure "
    "to append the '__c' after the custom field name. Please reference your WSDL or the describe call "
    "for the appropriate names."
)
_BAD_RELATIONSHIP = (
    "Didn't understand relationship '{name}' in field path. If you are attempting to use a custom "
    "relationship, be sure to append the '__r' after the custom relationship name. Please reference "
    "your WSDL or the describe call for the appropriate names."
)
COMPOUND_IN_BULK = "Selecting compound data not supported in Bulk Query"

# --------------------------------------------------------------------------------------------
# Lexer
# --------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
   |(?P<string>'(?:[^'\\]|\\.)*')
   |(?P<datetime>\d{4}-\d{2}-\d{2}T[0-9:.]*(?:Z|[+-]\d{2}:?\d{2})?)
   |(?P<date>\d{4}-\d{2}-\d{2})
   |(?P<number>\d+(?:\.\d+)?|\.\d+)
   |(?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
   |(?P<op><=|>=|!=|<>|=|<|>|\(|\)|,|:|-|\+)
    """,
    re.VERBOSE | re.DOTALL,
)

# fmt: off
_RESERVED = frozenset({
    "and", "asc", "by", "desc", "excludes", "false", "first", "from", "group", "having", "in", "includes",
    "last", "like", "limit", "not", "null", "nulls", "offset", "or", "order", "select", "true", "where", "with",
})
# fmt: on
_CLAUSE_WORDS = frozenset({"where", "group", "having", "order", "limit", "offset", "with", "for", "using"})
_AGGREGATES = frozenset({"count", "count_distinct", "sum", "avg", "min", "max"})
_RELATIVE_DATES = frozenset({"today", "yesterday", "tomorrow"})
_RELATIVE_N_DATES = frozenset({"last_n_days", "next_n_days", "n_days_ago"})


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # ident string datetime date number op eof
    text: str
    pos: int

    @property
    def word(self) -> str:
        return self.text.lower() if self.kind == "ident" else ""


def _tokenize(soql: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    n = len(soql)
    while pos < n:
        m = _TOKEN_RE.match(soql, pos)
        if m is None:
            raise _syntax_error(soql, pos, soql[pos])
        kind = m.lastgroup or ""
        if kind != "ws":
            toks.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    toks.append(_Tok("eof", "<EOF>", n))
    return toks


# --------------------------------------------------------------------------------------------
# Errors in Salesforce's shape
# --------------------------------------------------------------------------------------------


def _located(soql: str, pos: int, message: str) -> str:
    """``\\n<query row>\\n<caret>\\nERROR at Row:r:Column:c\\n<message>`` as Salesforce formats it."""
    before = soql[:pos]
    row = before.count("\n") + 1
    line_start = before.rfind("\n") + 1
    col = pos - line_start + 1
    line_end = soql.find("\n", pos)
    line = soql[line_start : line_end if line_end >= 0 else len(soql)]
    return f"\n{line}\n{' ' * (col - 1)}^\nERROR at Row:{row}:Column:{col}\n{message}"


def _syntax_error(soql: str, pos: int, token: str) -> ApiError:
    return ApiError(400, "MALFORMED_QUERY", _located(soql, pos, f"unexpected token: {token}"))


# --------------------------------------------------------------------------------------------
# AST
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Path:
    parts: tuple[str, ...]
    pos: int

    @property
    def text(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True, slots=True)
class _Lit:
    kind: str  # string number datetime date bool null relative
    value: Any
    pos: int
    text: str


@dataclass(frozen=True, slots=True)
class _Cmp:
    path: _Path
    op: str  # = != < <= > >= in notin like includes excludes
    values: tuple[_Lit, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class _BoolOp:
    op: str  # AND / OR
    items: tuple[_Cond, ...]


@dataclass(frozen=True, slots=True)
class _Not:
    item: _Cond


_Cond = _Cmp | _BoolOp | _Not


@dataclass(frozen=True, slots=True)
class _Item:
    kind: str  # field count fields aggregate subquery
    pos: int
    path: _Path | None = None
    arg: str = ""


@dataclass(frozen=True, slots=True)
class _Order:
    path: _Path
    desc: bool
    nulls_first: bool


@dataclass
class _Ast:
    items: list[_Item]
    obj: str
    obj_pos: int
    alias: str | None = None
    where: _Cond | None = None
    group_pos: int | None = None
    order: list[_Order] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None
    offset_pos: int = 0
    limit_pos: int = 0
    from_end: int = 0  # text offset just after the FROM object (and its alias)
    where_span: tuple[int, int] | None = None  # text offsets of the WHERE condition


# --------------------------------------------------------------------------------------------
# Parser (recursive descent)
# --------------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, soql: str) -> None:
        self.soql = soql
        self.toks = _tokenize(soql)
        self.i = 0

    # -- token helpers
    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> _Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def advance(self) -> _Tok:
        t = self.toks[self.i]
        if t.kind != "eof":
            self.i += 1
        return t

    def error(self, tok: _Tok | None = None) -> ApiError:
        t = tok or self.tok
        return _syntax_error(self.soql, t.pos, t.text)

    def is_word(self, *words: str) -> bool:
        return self.tok.word in words

    def expect_word(self, word: str) -> _Tok:
        if self.tok.word != word:
            raise self.error()
        return self.advance()

    def expect_op(self, op: str) -> _Tok:
        if self.tok.kind != "op" or self.tok.text != op:
            raise self.error()
        return self.advance()

    def is_op(self, op: str) -> bool:
        return self.tok.kind == "op" and self.tok.text == op

    # -- grammar
    def parse(self) -> _Ast:
        self.expect_word("select")
        items = [self.select_item()]
        while self.is_op(","):
            self.advance()
            items.append(self.select_item())
        self.expect_word("from")
        obj_tok = self.tok
        if obj_tok.kind != "ident" or "." in obj_tok.text or obj_tok.word in _RESERVED:
            raise self.error()
        self.advance()
        ast = _Ast(items=items, obj=obj_tok.text, obj_pos=obj_tok.pos)
        if self.tok.kind == "ident" and "." not in self.tok.text and self.tok.word not in _RESERVED | _CLAUSE_WORDS:
            ast.alias = self.advance().text
        ast.from_end = self._prev_end()
        if self.is_word("where"):
            self.advance()
            start = self.tok.pos
            ast.where = self.condition()
            ast.where_span = (start, self._prev_end())
        if self.is_word("group"):
            ast.group_pos = self.tok.pos
            self.advance()
            self.expect_word("by")
            self.skip_clause()
        if self.is_word("having"):
            ast.group_pos = ast.group_pos if ast.group_pos is not None else self.tok.pos
            self.advance()
            self.skip_clause()
        if self.is_word("order"):
            self.advance()
            self.expect_word("by")
            ast.order.append(self.order_item())
            while self.is_op(","):
                self.advance()
                ast.order.append(self.order_item())
        if self.is_word("limit"):
            ast.limit_pos = self.advance().pos
            ast.limit = self.integer()
        if self.is_word("offset"):
            ast.offset_pos = self.advance().pos
            ast.offset = self.integer()
        if self.tok.kind != "eof":
            raise self.error()
        return ast

    def _prev_end(self) -> int:
        """Text offset just after the last token consumed."""
        prev = self.toks[self.i - 1]
        return prev.pos + len(prev.text)

    def skip_clause(self) -> None:
        """Skip an unsupported clause's body (GROUP BY / HAVING): rejected after parsing."""
        depth = 0
        while self.tok.kind != "eof":
            if depth == 0 and self.tok.word in ("order", "limit", "offset", "having"):
                return
            if self.is_op("("):
                depth += 1
            elif self.is_op(")"):
                depth -= 1
            self.advance()

    def integer(self) -> int:
        t = self.tok
        if t.kind != "number" or not t.text.isdigit():
            raise self.error()
        self.advance()
        value = int(t.text)
        if value > 2_147_483_647:
            raise ApiError(400, "MALFORMED_QUERY", _located(self.soql, t.pos, f"numeric value out of range: {t.text}"))
        return value

    def select_item(self) -> _Item:
        t = self.tok
        if self.is_op("("):
            # parent-to-child subquery: parsed only to be rejected with a clear message
            depth = 0
            while True:
                if self.is_op("("):
                    depth += 1
                elif self.is_op(")"):
                    depth -= 1
                elif self.tok.kind == "eof":
                    raise self.error()
                self.advance()
                if depth == 0:
                    return _Item("subquery", t.pos)
        if t.kind != "ident" or t.word in _RESERVED:
            raise self.error()
        if self.peek().kind == "op" and self.peek().text == "(":
            name = t.word
            self.advance()
            self.advance()
            if name == "count" and self.is_op(")"):
                self.advance()
                return _Item("count", t.pos)
            if name == "fields":
                arg = self.tok
                if arg.word not in ("all", "standard", "custom"):
                    raise self.error()
                self.advance()
                self.expect_op(")")
                return _Item("fields", t.pos, arg=arg.word)
            if name in _AGGREGATES:
                if self.tok.kind != "ident":
                    raise self.error()
                self.advance()
                self.expect_op(")")
                if self.tok.kind == "ident" and self.tok.word not in _RESERVED:
                    self.advance()  # aggregate alias
                return _Item("aggregate", t.pos, arg=name)
            raise self.error(t)
        self.advance()
        return _Item("field", t.pos, path=_Path(tuple(t.text.split(".")), t.pos))

    def path(self) -> _Path:
        t = self.tok
        if t.kind != "ident" or t.word in _RESERVED:
            raise self.error()
        self.advance()
        return _Path(tuple(t.text.split(".")), t.pos)

    def order_item(self) -> _Order:
        p = self.path()
        desc = False
        if self.is_word("asc", "desc"):
            desc = self.advance().word == "desc"
        nulls_first = True  # Salesforce: "By default, null values are sorted first."
        if self.is_word("nulls"):
            self.advance()
            if not self.is_word("first", "last"):
                raise self.error()
            nulls_first = self.advance().word == "first"
        return _Order(p, desc, nulls_first)

    # condition := or ; or := and (OR and)* ; and := unary (AND unary)* ; unary := NOT unary | primary
    def condition(self) -> _Cond:
        items = [self.conjunction()]
        while self.is_word("or"):
            self.advance()
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else _BoolOp("OR", tuple(items))

    def conjunction(self) -> _Cond:
        items = [self.unary()]
        while self.is_word("and"):
            self.advance()
            items.append(self.unary())
        return items[0] if len(items) == 1 else _BoolOp("AND", tuple(items))

    def unary(self) -> _Cond:
        if self.is_word("not"):
            self.advance()
            return _Not(self.unary())
        if self.is_op("("):
            self.advance()
            inner = self.condition()
            self.expect_op(")")
            return inner
        return self.comparison()

    def comparison(self) -> _Cmp:
        p = self.path()
        t = self.tok
        if t.kind == "op" and t.text in ("=", "!=", "<>", "<", "<=", ">", ">="):
            self.advance()
            op = "!=" if t.text == "<>" else t.text
            return _Cmp(p, op, (self.literal(),), t.pos)
        if t.word == "like":
            self.advance()
            return _Cmp(p, "like", (self.literal(),), t.pos)
        if t.word in ("in", "includes", "excludes") or (t.word == "not" and self.peek().word == "in"):
            op = t.word
            if op == "not":
                self.advance()
                op = "notin"
            self.advance()
            return _Cmp(p, op, self.literal_list(), t.pos)
        raise self.error()

    def literal_list(self) -> tuple[_Lit, ...]:
        self.expect_op("(")
        if self.is_word("select"):
            msg = "semi-join subqueries are not supported by the emulator"
            raise ApiError(400, "MALFORMED_QUERY", _located(self.soql, self.tok.pos, msg))
        values = [self.literal()]
        while self.is_op(","):
            self.advance()
            values.append(self.literal())
        self.expect_op(")")
        return tuple(values)

    def literal(self) -> _Lit:
        t = self.tok
        if t.kind == "string":
            self.advance()
            return _Lit("string", t.text[1:-1], t.pos, t.text)
        if t.kind == "op" and t.text in ("-", "+") and self.peek().kind == "number":
            self.advance()
            num = self.advance()
            text = t.text + num.text
            return _Lit("number", _number(text), t.pos, text)
        if t.kind == "number":
            self.advance()
            return _Lit("number", _number(t.text), t.pos, t.text)
        if t.kind == "datetime":
            self.advance()
            try:
                ms = parse_datetime_ms(t.text)
            except ValueError as exc:
                raise self.error(t) from exc
            return _Lit("datetime", ms, t.pos, t.text)
        if t.kind == "date":
            self.advance()
            try:
                day = parse_date(t.text)
            except ValueError as exc:
                raise self.error(t) from exc
            return _Lit("date", day, t.pos, t.text)
        w = t.word
        if w in ("true", "false"):
            self.advance()
            return _Lit("bool", w == "true", t.pos, t.text)
        if w == "null":
            self.advance()
            return _Lit("null", None, t.pos, t.text)
        if w in _RELATIVE_DATES:
            self.advance()
            return _Lit("relative", (w, 0), t.pos, t.text)
        if w in _RELATIVE_N_DATES:
            self.advance()
            self.expect_op(":")
            n = self.tok
            if n.kind != "number" or not n.text.isdigit():
                raise self.error()
            self.advance()
            return _Lit("relative", (w, int(n.text)), t.pos, f"{t.text}:{n.text}")
        raise self.error()


def _number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\"}


def _unescape(raw: str, *, like: bool) -> str:
    """Decode a SOQL string literal body.  In LIKE patterns ``\\%``/``\\_`` stay escaped (for ``ESCAPE '\\'``)."""
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            i += 2
            if nxt in ("%", "_"):
                out.append("\\" + nxt if like else nxt)
            elif like and nxt == "\\":
                out.append("\\\\")
            else:
                out.append(_ESCAPES.get(nxt, nxt))
            continue
        out.append(ch)
        i += 1
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Compiled query and rendering
# --------------------------------------------------------------------------------------------

SqlParam = object  # a value bound to a ``?`` of CompiledQuery.sql


def _datetime_renderer(fmt: Callable[[int], str], null: str | None) -> Callable[[Any], Any]:
    """``fmt`` (a schema datetime formatter) memoized per whole second.

    ``fmt`` renders ``<date>T<hh:mm:ss>.<mmm><zone>``; the part before the milliseconds is
    computed once per distinct second, so a page of 2,000 rows costs a few strftime calls.
    """
    probe = fmt(0)
    head_len = probe.index(".") + 1
    tail = probe[head_len + 3 :]
    cache: dict[int, str] = {}

    def render(v: Any) -> Any:
        if v is None:
            return null
        sec, ms = divmod(int(v), 1000)
        head = cache.get(sec)
        if head is None:
            if len(cache) > 100_000:
                cache.clear()
            head = fmt(sec * 1000)[:head_len]
            cache[sec] = head
        return f"{head}{ms:03d}{tail}"

    return render


def _converter_json(f: FieldDef) -> Callable[[Any], Any] | None:
    """Per-field JSON converter (same output as schema.to_json); None when that is the identity."""
    t = f.type
    if t == "datetime":
        return _datetime_renderer(format_rest_datetime, None)
    if t == "boolean" or t in _NUMBER_TYPES or f.calculated:
        return lambda v: to_json(f, v)
    return None


def _converter_csv(f: FieldDef) -> Callable[[Any], str] | None:
    """Per-field CSV converter (same output as schema.to_csv); None when the stored text is the cell."""
    t = f.type
    if t == "datetime":
        return _datetime_renderer(format_csv_datetime, "")
    if t in _TEXT_TYPES or t in _ID_TYPES or t == "date":
        return (lambda v: to_csv(f, v)) if f.calculated else None
    return lambda v: to_csv(f, v)


def _getter(indices: list[int]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """``row -> tuple(row[i] for i in indices)`` at C speed."""
    if not indices:
        return lambda _row: ()
    if len(indices) == 1:
        only = indices[0]
        return lambda row: (row[only],)
    return itemgetter(*indices)


def _build_csv(columns: list[tuple[int, Callable[[Any], str] | None]]) -> Callable[[tuple[Any, ...]], list[str]]:
    get = _getter([i for i, _c in columns])
    convs = [(pos, conv) for pos, (_i, conv) in enumerate(columns) if conv is not None]

    def render(row: tuple[Any, ...]) -> list[str]:
        raw = get(row)
        cells = ["" if v is None else v for v in raw]
        for pos, conv in convs:
            cells[pos] = conv(raw[pos])
        return cells

    return render


@dataclass
class CompiledQuery:
    """A validated SOQL query: SQL over the org's tables plus precomputed row renderers."""

    object: ObjectDef
    sql: str
    params: list[SqlParam]
    limit: int | None
    offset: int | None
    count_only: bool = False
    columns: list[str] = field(default_factory=list)  # Bulk CSV header (dotted relationship names)
    _json: Callable[[tuple[Any, ...], str], dict[str, Any]] | None = field(default=None, repr=False)
    _csv: Callable[[tuple[Any, ...]], list[str]] | None = field(default=None, repr=False)
    # SQL-side rendering over a cursor snapshot's columns c0, c1, ... (see render_sql_json)
    json_select: list[str] | None = field(default=None, repr=False)
    csv_cells: list[tuple[str, str]] = field(default_factory=list, repr=False)
    csv_flag: str = field(default="0", repr=False)
    csv_nul_flag: str = field(default="", repr=False)
    # the query text's shape, for rewriting it (Bulk 1.0 PK chunking adds an Id range)
    soql: str = field(default="", repr=False)
    from_end: int = field(default=0, repr=False)
    where_span: tuple[int, int] | None = field(default=None, repr=False)
    ordered: bool = False  # has ORDER BY

    def with_id_range(self, low: str | None, high: str | None) -> str:
        """This query's SOQL text restricted to ``low <= Id < high`` (None: unbounded), the
        original condition kept in parentheses: how Bulk 1.0 PK chunking splits a query."""
        if any(b is not None and not b.isalnum() for b in (low, high)):
            raise ValueError("Id range bounds must be record ids")
        bounds = ([f"Id >= '{low}'"] if low else []) + ([f"Id < '{high}'"] if high else [])
        if not bounds:
            return self.soql
        text, extra = self.soql, " AND ".join(bounds)
        if self.where_span is None:
            return f"{text[: self.from_end]} WHERE {extra}{text[self.from_end :]}"
        start, end = self.where_span
        return f"{text[:start]}({text[start:end]}) AND {extra}{text[end:]}"

    def render_json(self, row: tuple[Any, ...], api_version: str) -> dict[str, Any]:
        """One REST record: ``attributes``, fields in SELECT order, nested parents, compound objects."""
        if self._json is None:
            raise ValueError("COUNT() queries have no records to render")
        return self._json(row, _url_prefix(api_version))

    def render_json_rows(self, rows: list[tuple[Any, ...]], api_version: str) -> list[dict[str, Any]]:
        """``render_json`` over a page of rows (computes the URL prefix once)."""
        if self._json is None:
            raise ValueError("COUNT() queries have no records to render")
        prefix = _url_prefix(api_version)
        fn = self._json
        return [fn(r, prefix) for r in rows]

    def csv_header(self) -> list[str]:
        """Bulk 2.0 column names in SELECT order (``Account.Name`` for relationship fields)."""
        return list(self.columns)

    def render_csv(self, row: tuple[Any, ...]) -> list[str]:
        """Bulk 2.0 cells of one row (null -> empty string)."""
        if self._csv is None:
            raise ValueError("COUNT() queries have no records to render")
        return self._csv(row)

    # ------------------------------------------------------------------ SQL-side rendering
    #
    # Rendering a page in Python costs a tuple of cells, a dict and a json/csv encoding per row;
    # SQLite does the same work in C straight off the cursor snapshot.  The SELECT expressions
    # below run over the snapshot's columns (``c0, c1, ...``); each returns, per row, a *flag*
    # (non-zero when a value cannot be rendered in SQL byte-for-byte like the Python renderers,
    # e.g. a double with more than 15 significant digits: that row is rendered by
    # ``render_json``/``render_csv`` instead) and then the rendered text.

    def render_sql_json(self) -> list[str] | None:
        """``[flag, part, ...]`` expressions rendering each row as REST JSON text; their named
        parameter ``:prefix`` comes from :func:`json_params`.  Several parts are JSON objects
        to splice into one (:func:`join_json_parts`).  None when the query cannot be rendered
        in SQL (a relationship with more than 60 fields): use :meth:`render_json_rows`."""
        return self.json_select

    def render_sql_csv(self, delimiter: str, *, nul_check: bool = True) -> list[str]:
        """``[flag, part, ...]`` expressions rendering each row as one Bulk CSV line (without
        the terminator): every cell double-quoted, quotes doubled, null as ``""``; the parts
        are joined with ``delimiter``.  ``nul_check=False`` skips flagging text holding NUL
        characters (``printf`` would cut it there): only when no such text can exist."""
        parts: list[str] = []
        for start in range(0, len(self.csv_cells), _PRINTF_MAX_ARGS):
            cells = self.csv_cells[start : start + _PRINTF_MAX_ARGS]
            fmt = delimiter.replace("%", "%%").join(conv for conv, _arg in cells)
            parts.append(f"printf({_sql_string(fmt)}, {', '.join(arg for _conv, arg in cells)})")
        flag = f"({self.csv_flag}) OR {self.csv_nul_flag}" if nul_check and self.csv_nul_flag else self.csv_flag
        return [flag, *(parts or ["''"])]


_PRINTF_MAX_ARGS = 100  # SQLite functions take at most 127 arguments
_JSON_MAX_PAIRS = 60


def json_params(api_version: str) -> dict[str, object]:
    """The named parameters of :meth:`CompiledQuery.render_sql_json` expressions."""
    return {"prefix": _url_prefix(api_version)}


def join_json_parts(parts: tuple[Any, ...]) -> str:
    """One JSON object from the object texts SQL rendered for one row (in order)."""
    if len(parts) == 1:
        return str(parts[0])
    return "{" + ",".join(p[1:-1] for p in parts if len(p) > 2) + "}"


def _float_roundtrips(col: str) -> str:
    """SQL: the REAL ``col`` survives SQLite's 15-digit text form (so SQL renders it exactly)."""
    return f"CAST(CAST({col} AS TEXT) AS REAL) = {col}"


def _flag_sql(cols: list[tuple[str, FieldDef]], *, csv: bool) -> str:
    """SQL: non-zero when a row holds a value SQL cannot render like the Python renderers."""
    terms: list[str] = []
    for col, f in cols:
        if f.type not in FLOAT_TYPES:
            continue
        if csv:
            ok = (
                f"(abs({col}) < 1e15 AND ({col} = CAST({col} AS INTEGER) OR abs({col}) >= 1e-4) "
                f"AND {_float_roundtrips(col)})"
            )
        else:
            ok = f"({_float_roundtrips(col)})"
        terms.append(f"({col} IS NOT NULL AND NOT {ok})")
    return " OR ".join(terms) if terms else "0"


def _csv_cell_sql(col: str, f: FieldDef) -> tuple[str, str]:
    """SQL: ``(printf conversion, argument)`` of one Bulk CSV cell, quotes included.

    ``%w`` doubles the double quotes of text; a null argument of ``%s`` prints nothing (the
    ``""`` of a null cell), text goes through ``ifnull`` because ``%w`` prints null as ``(NULL)``.
    """
    t = f.type
    if t == "datetime":
        return '"%s"', f"strftime('%Y-%m-%dT%H:%M:%fZ', {col} / 1000.0, 'unixepoch')"
    if t == "boolean":
        return '"%s"', f"CASE WHEN {col} IS NULL THEN NULL WHEN {col} THEN 'true' ELSE 'false' END"
    if t in FLOAT_TYPES:
        return '"%s"', (
            f"CASE WHEN {col} IS NULL THEN NULL WHEN {col} = CAST({col} AS INTEGER) "
            f"THEN printf('%.1f', {col}) ELSE CAST({col} AS TEXT) END"
        )
    if t in INT_TYPES and not f.calculated:
        return '"%s"', col
    return '"%w"', f"ifnull({col}, '')"


def _nul_flag_sql(cols: list[tuple[str, FieldDef]]) -> str:
    """SQL: non-zero when a free-text cell holds a NUL character (``printf`` would cut the text
    there; the Python renderer strips NULs instead)."""
    terms = [f"instr({col}, char(0))" for col, f in cols if f.type in _TEXT_TYPES or f.calculated]
    return " OR ".join(terms)


def _json_value_sql(col: str, f: FieldDef | None) -> str:
    """SQL: the REST JSON value of one cell (same value as schema.to_json)."""
    t = f.type if f is not None else "string"
    if t == "datetime":
        return f"strftime('%Y-%m-%dT%H:%M:%f+0000', {col} / 1000.0, 'unixepoch')"
    if t == "boolean":
        return f"CASE WHEN {col} IS NULL THEN NULL WHEN {col} THEN json('true') ELSE json('false') END"
    if t in INT_TYPES:
        return f"CAST({col} AS INTEGER)"
    if t in FLOAT_TYPES:
        return f"CAST({col} AS REAL)"
    return col


def _json_pairs(
    children: dict[str, _Leaf | _CompoundOut | _RelOut], flags: list[tuple[str, FieldDef]]
) -> list[str] | None:
    pairs: list[str] = []
    for child in children.values():
        key = _sql_string(child.key)
        if isinstance(child, _Leaf):
            col = f"c{child.index}"
            if child.field is not None:
                flags.append((col, child.field))
            pairs.append(f"{key}, {_json_value_sql(col, child.field)}")
        elif isinstance(child, _CompoundOut):
            inner: list[str] = []
            nulls: list[str] = []
            for (k, idx, _conv), comp in zip(child.parts, child.fields, strict=True):
                col = f"c{idx}"
                flags.append((col, comp))
                inner.append(f"{_sql_string(k)}, {_json_value_sql(col, comp)}")
                nulls.append(f"{col} IS NULL")
            if not inner:
                pairs.append(f"{key}, NULL")
                continue
            pairs.append(f"{key}, CASE WHEN {' AND '.join(nulls)} THEN NULL ELSE json_object({', '.join(inner)}) END")
        else:
            sub = _json_pairs(child.children, flags)
            if sub is None or len(sub) + 1 > _JSON_MAX_PAIRS:
                return None
            rid = f"c{child.id_index}"
            if child.type_name is not None:
                type_sql = _sql_string(child.type_name)
            else:
                whens = " ".join(
                    f"WHEN {_sql_string(p)} THEN {_sql_string(n)}" for p, n in sorted(child.prefixes.items())
                )
                type_sql = f"(CASE substr({rid}, 1, 3) {whens} ELSE 'Name' END)"
            attrs = f"json_object('type', {type_sql}, 'url', :prefix || {type_sql} || '/' || {rid})"
            body = ", ".join([f"'attributes', {attrs}", *sub])
            pairs.append(f"{key}, CASE WHEN {rid} IS NULL THEN NULL ELSE json_object({body}) END")
    return pairs


def _json_select(
    type_name: str, id_index: int, children: dict[str, _Leaf | _CompoundOut | _RelOut]
) -> list[str] | None:
    """``[flag, object part, ...]``: see :meth:`CompiledQuery.render_sql_json`."""
    flags: list[tuple[str, FieldDef]] = []
    pairs = _json_pairs(children, flags)
    if pairs is None:
        return None
    t = _sql_string(type_name)
    attrs = f"'attributes', json_object('type', {t}, 'url', :prefix || {t} || '/' || c{id_index})"
    pairs.insert(0, attrs)
    parts = [
        f"json_object({', '.join(pairs[start : start + _JSON_MAX_PAIRS])})"
        for start in range(0, len(pairs), _JSON_MAX_PAIRS)
    ]
    return [_flag_sql(flags, csv=False), *parts]


def _url_prefix(api_version: str) -> str:
    ver = api_version[1:] if api_version[:1] in ("v", "V") else api_version
    return f"/services/data/v{ver}/sobjects/"


def visible_field_names(obj: ObjectDef, schema: Schema) -> list[str]:
    """Names of the fields the integration user can see on ``obj`` (describe order)."""
    return [f.name for f in schema.visible_fields(obj)]


# --------------------------------------------------------------------------------------------
# Compiler
# --------------------------------------------------------------------------------------------


@dataclass
class _Join:
    """One joined parent table for one relationship path (several for a polymorphic path)."""

    objects: list[tuple[ObjectDef, str]]  # (object, SQL alias)
    rel_name: str  # canonical relationship name
    polymorphic: bool


@dataclass
class _Resolved:
    sql: str
    field: FieldDef
    out_name: str  # canonical field name (or "Type" pseudo-field)
    rels: tuple[tuple[str, str], ...]  # (lower key, canonical relationship name) per hop
    compound: list[tuple[str, str, FieldDef]] | None = None  # (json key, sql, component)


@dataclass
class _Leaf:
    key: str
    index: int
    conv: Callable[[Any], Any] | None
    field: FieldDef | None = None


@dataclass
class _CompoundOut:
    key: str
    parts: list[tuple[str, int, Callable[[Any], Any] | None]]
    fields: list[FieldDef] = field(default_factory=list)


@dataclass
class _RelOut:
    key: str
    id_index: int
    type_name: str | None  # None: polymorphic, resolved from the id's key prefix
    prefixes: dict[str, str]
    id_sql: str  # the parent's Id (COALESCE over the candidates of a polymorphic path)
    children: dict[str, _Leaf | _CompoundOut | _RelOut] = field(default_factory=dict)


class _Compiler:
    def __init__(
        self,
        soql: str,
        schema: Schema,
        *,
        include_deleted: bool,
        bulk: bool,
        now_ms: int | None,
        bulk_label: str = "Bulk API 2.0",
    ) -> None:
        self.soql = soql
        self.schema = schema
        self.include_deleted = include_deleted
        self.bulk = bulk
        self.bulk_label = bulk_label
        self.now_ms = now_ms
        self.joins: dict[tuple[str, ...], _Join] = {}
        self.join_sql: list[str] = []
        self.alias: str | None = None
        self.root: ObjectDef

    # ---------------------------------------------------------------- errors
    def invalid_field(self, pos: int, message: str) -> ApiError:
        return ApiError(400, "INVALID_FIELD", _located(self.soql, pos, message))

    def malformed(self, pos: int, message: str) -> ApiError:
        return ApiError(400, "MALFORMED_QUERY", _located(self.soql, pos, message))

    def unsupported(self, pos: int, what: str) -> ApiError:
        if self.bulk:
            return ApiError(400, "API_ERROR", f"{what} is not supported in {self.bulk_label} query")
        return self.malformed(pos, f"{what} is not supported by the emulator")

    # ---------------------------------------------------------------- entry
    def compile(self) -> CompiledQuery:
        ast = _Parser(self.soql).parse()
        obj = self.schema.visible_object(ast.obj)
        if obj is None or not obj.queryable:
            err = invalid_type(ast.obj)
            raise ApiError(400, err.error_code, _located(self.soql, ast.obj_pos, err.message))
        self.root = obj
        self.alias = ast.alias
        self.check_features(ast)

        count_only = any(i.kind == "count" for i in ast.items)
        if count_only and len(ast.items) > 1:
            raise self.malformed(ast.items[1].pos, "COUNT() cannot be combined with other fields")

        out_cols: list[str] = []
        header: list[str] = []
        csv_plan: list[tuple[int, Callable[[Any], str] | None]] = []
        csv_fields: list[tuple[int, FieldDef]] = []
        root_children: dict[str, _Leaf | _CompoundOut | _RelOut] = {}
        seen: set[str] = set()

        def add_col(sql: str) -> int:
            out_cols.append(sql)
            return len(out_cols) - 1

        select_items = [] if count_only else self.expand_items(ast)
        for path, pos in select_items:
            res = self.resolve(path, pos)
            dotted = ".".join([c for _k, c in res.rels] + [res.out_name])
            if dotted.lower() in seen:
                raise self.invalid_field(pos, f"duplicate field selected: {dotted}")
            seen.add(dotted.lower())
            if res.compound is not None:
                if self.bulk:
                    raise ApiError(400, "API_ERROR", COMPOUND_IN_BULK)
                parts = [(key, add_col(sql), _converter_json(comp)) for key, sql, comp in res.compound]
                leaf: _Leaf | _CompoundOut = _CompoundOut(res.out_name, parts, [c for _k, _s, c in res.compound])
            else:
                idx = add_col(res.sql)
                header.append(dotted)
                csv_plan.append((idx, _converter_csv(res.field)))
                csv_fields.append((idx, res.field))
                leaf = _Leaf(res.out_name, idx, _converter_json(res.field), res.field)
            node_children = root_children
            prefix: tuple[str, ...] = ()
            for key, canon in res.rels:
                prefix = (*prefix, key)
                rel = node_children.get(key)
                if not isinstance(rel, _RelOut):
                    join = self.joins[prefix]
                    rel = self.rel_out(join, canon)
                    node_children[key] = rel
                node_children = rel.children
            node_children[res.out_name.lower()] = leaf

        # auxiliary columns: root Id for attributes.url, then one Id per joined relationship
        id_index = len(out_cols)
        aux_cols = ['t."Id"']
        for node in _walk_rels(root_children):
            node.id_index = id_index + len(aux_cols)
            aux_cols.append(node.id_sql)

        where_sql, where_params = self.base_conditions()
        if ast.where is not None:
            cond_sql, cond_params = self.condition(ast.where)
            where_sql.append(f"({cond_sql})")
            where_params.extend(cond_params)

        order_sql: list[str] = []
        for o in ast.order:
            res = self.resolve(o.path, o.path.pos)
            if res.compound is not None:
                raise self.invalid_field(o.path.pos, f"field '{res.out_name}' can not be sorted in a query call")
            coll = " COLLATE NOCASE" if res.field.type in _TEXT_TYPES else ""
            direction = "DESC" if o.desc else "ASC"
            nulls = "NULLS FIRST" if o.nulls_first else "NULLS LAST"
            order_sql.append(f"{res.sql}{coll} {direction} {nulls}")

        if ast.offset is not None and ast.offset > MAX_OFFSET:
            raise ApiError(400, "NUMBER_OUTSIDE_VALID_RANGE", f"Maximum SOQL offset allowed is {MAX_OFFSET}")

        from_sql = f"FROM {quote_ident(obj.name)} t" + "".join(self.join_sql)
        tail = f" WHERE {' AND '.join(where_sql)}"
        if order_sql:
            tail += " ORDER BY " + ", ".join(order_sql)
        tail_params: list[object] = []
        if ast.limit is not None or ast.offset is not None:
            tail += " LIMIT ? OFFSET ?"
            tail_params = [ast.limit if ast.limit is not None else -1, ast.offset or 0]

        if count_only:
            sql = f"SELECT COUNT(*) FROM (SELECT 1 {from_sql}{tail})"
            return CompiledQuery(obj, sql, where_params + tail_params, ast.limit, ast.offset, count_only=True)

        cols = out_cols + aux_cols
        select_list = ", ".join(f"{c} AS c{i}" for i, c in enumerate(cols))
        sql = f"SELECT {select_list} {from_sql}{tail}"
        params = where_params + tail_params
        render = _build_record(obj.name, id_index, root_children)
        return CompiledQuery(
            obj,
            sql,
            params,
            ast.limit,
            ast.offset,
            columns=header,
            _json=render,
            _csv=_build_csv(csv_plan),
            json_select=_json_select(obj.name, id_index, root_children),
            csv_cells=[_csv_cell_sql(f"c{i}", f) for i, f in csv_fields],
            csv_flag=_flag_sql([(f"c{i}", f) for i, f in csv_fields], csv=True),
            csv_nul_flag=_nul_flag_sql([(f"c{i}", f) for i, f in csv_fields]),
            soql=self.soql,
            from_end=ast.from_end,
            where_span=ast.where_span,
            ordered=bool(ast.order),
        )

    def check_features(self, ast: _Ast) -> None:
        for item in ast.items:
            if item.kind == "subquery":
                raise self.unsupported(item.pos, "Parent-to-child subquery")
            if item.kind == "aggregate":
                raise self.unsupported(item.pos, "Aggregate function")
            if item.kind == "count" and self.bulk:
                raise self.unsupported(item.pos, "Aggregate function COUNT()")
            if item.kind == "fields" and self.bulk:
                raise self.unsupported(item.pos, "FIELDS()")
        if ast.group_pos is not None:
            raise self.unsupported(ast.group_pos, "GROUP BY")
        if ast.offset is not None and self.bulk:
            raise self.unsupported(ast.offset_pos, "OFFSET")
        if any(i.kind == "fields" and i.arg != "standard" for i in ast.items) and (
            ast.limit is None or ast.limit > MAX_FIELDS_LIMIT
        ):
            pos = ast.limit_pos or len(self.soql)
            raise self.malformed(pos, f"The SOQL FIELDS function must have a LIMIT of at most {MAX_FIELDS_LIMIT}")

    def expand_items(self, ast: _Ast) -> list[tuple[_Path, int]]:
        out: list[tuple[_Path, int]] = []
        for item in ast.items:
            if item.kind == "fields":
                for f in self.schema.visible_fields(self.root):
                    if (item.arg == "custom" and not f.custom) or (item.arg == "standard" and f.custom):
                        continue
                    out.append((_Path((f.name,), item.pos), item.pos))
            elif item.path is not None:
                out.append((item.path, item.pos))
        return out

    # ---------------------------------------------------------------- base conditions
    def base_conditions(self) -> tuple[list[str], list[object]]:
        obj = self.root
        conds = ['t."_hidden" = 0']
        if not self.include_deleted:
            if obj.field("IsDeleted") is not None:
                conds.append('t."IsDeleted" = 0')
            if obj.archivable and obj.field("IsArchived") is not None:
                conds.append('t."IsArchived" = 0')
        return conds, []

    # ---------------------------------------------------------------- names
    def resolve(self, path: _Path, pos: int) -> _Resolved:
        parts = path.parts
        if self.alias is not None and len(parts) > 1 and parts[0].lower() == self.alias.lower():
            parts = parts[1:]
        obj = self.root
        alias = "t"
        rels: list[tuple[str, str]] = []
        key: tuple[str, ...] = ()
        for depth, part in enumerate(parts[:-1]):
            ref = obj.relationship(part)
            if ref is None or not self.schema.field_visible(obj, ref):
                raise self.invalid_field(pos, _BAD_RELATIONSHIP.format(name=part))
            assert ref.relationship_name is not None
            key = (*key, part.lower())
            join = self.joins.get(key)
            if join is None:
                join = self.add_join(key, alias, ref, pos, part)
            rels.append((part.lower(), join.rel_name))
            if join.polymorphic:
                if depth != len(parts) - 2:
                    raise self.invalid_field(pos, _BAD_RELATIONSHIP.format(name=parts[depth + 1]))
                return self.resolve_polymorphic(join, parts[-1], tuple(rels), pos)
            obj, alias = join.objects[0]
        name = parts[-1]
        f = self.schema.visible_field(obj, name)
        if f is None:
            raise self.invalid_field(pos, _NO_SUCH_COLUMN.format(name=name, entity=obj.name))
        if f.is_compound:
            comps = [
                (k, self.field_sql(obj, alias, c), c) for k, c in obj.components(f) if self.schema.field_visible(obj, c)
            ]
            return _Resolved("", f, f.name, tuple(rels), compound=comps)
        return _Resolved(self.field_sql(obj, alias, f), f, f.name, tuple(rels))

    def resolve_polymorphic(self, join: _Join, name: str, rels: tuple[tuple[str, str], ...], pos: int) -> _Resolved:
        if name.lower() == "type":
            whens = " ".join(f'WHEN {a}."Id" IS NOT NULL THEN {_sql_string(o.name)}' for o, a in join.objects)
            sql = f"(CASE {whens} END)"
            return _Resolved(sql, FieldDef("Type", "string"), "Type", rels)
        exprs: list[str] = []
        found: FieldDef | None = None
        for o, a in join.objects:
            f = self.schema.visible_field(o, name)
            if f is None or f.is_compound:
                continue
            exprs.append(self.field_sql(o, a, f))
            if found is None:
                found = f
        if found is None:
            raise self.invalid_field(pos, _NO_SUCH_COLUMN.format(name=name, entity="Name"))
        sql = exprs[0] if len(exprs) == 1 else f"COALESCE({', '.join(exprs)})"
        return _Resolved(sql, found, found.name, rels)

    def add_join(self, key: tuple[str, ...], alias: str, ref: FieldDef, pos: int, part: str) -> _Join:
        fk = f"{alias}.{quote_ident(ref.name)}"
        targets = [o for o in (self.schema.visible_object(n) for n in ref.reference_to) if o is not None]
        if not targets:
            raise self.invalid_field(pos, _BAD_RELATIONSHIP.format(name=part))
        objects: list[tuple[ObjectDef, str]] = []
        for target in targets:
            a = f"_p{len(self.join_sql) + 1}"
            cond = [f'{a}."Id" = {fk}', f'{a}."_hidden" = 0']
            if not self.include_deleted and target.field("IsDeleted") is not None:
                cond.append(f'{a}."IsDeleted" = 0')
            self.join_sql.append(f" LEFT JOIN {quote_ident(target.name)} {a} ON {' AND '.join(cond)}")
            objects.append((target, a))
        assert ref.relationship_name is not None
        join = _Join(objects, ref.relationship_name, polymorphic=len(ref.reference_to) > 1)
        self.joins[key] = join
        return join

    def field_sql(self, obj: ObjectDef, alias: str, f: FieldDef) -> str:
        if f.calculated:
            if not f.formula_sql:
                return "NULL"
            if alias == "t":
                return f"({f.formula_sql})"
            return f'(SELECT ({f.formula_sql}) FROM {quote_ident(obj.name)} t WHERE t."Id" = {alias}."Id")'
        return f"{alias}.{quote_ident(f.name)}"

    def rel_out(self, join: _Join, canon: str) -> _RelOut:
        id_cols = [f'{a}."Id"' for _o, a in join.objects]
        id_sql = id_cols[0] if len(id_cols) == 1 else f"COALESCE({', '.join(id_cols)})"
        if join.polymorphic:
            prefixes = {o.key_prefix: o.name for o, _a in join.objects}
            return _RelOut(canon, -1, None, prefixes, id_sql)
        return _RelOut(canon, -1, join.objects[0][0].name, {}, id_sql)

    # ---------------------------------------------------------------- WHERE
    def condition(self, cond: _Cond) -> tuple[str, list[object]]:
        if isinstance(cond, _BoolOp):
            parts: list[str] = []
            params: list[object] = []
            for item in cond.items:
                s, p = self.condition(item)
                parts.append(f"({s})")
                params.extend(p)
            return f" {cond.op} ".join(parts), params
        if isinstance(cond, _Not):
            s, p = self.condition(cond.item)
            return f"NOT ({s})", p
        return self.comparison(cond)

    def comparison(self, c: _Cmp) -> tuple[str, list[object]]:
        res = self.resolve(c.path, c.path.pos)
        f = res.field
        if res.compound is not None:
            raise self.invalid_field(c.path.pos, f"field '{res.out_name}' can not be filtered in a query call")
        col = res.sql
        coll = " COLLATE NOCASE" if f.type in _TEXT_TYPES else ""
        op = c.op
        if op == "like":
            lit = c.values[0]
            if f.type not in _TEXT_TYPES and f.type not in _ID_TYPES:
                raise self.invalid_field(c.pos, f"invalid operator on field: {res.out_name}")
            if lit.kind != "string":
                raise self.type_error(lit, res)
            return f"({col} IS NOT NULL AND {col} LIKE ? ESCAPE '\\')", [_unescape(lit.value, like=True)]
        if op in ("includes", "excludes"):
            return self.includes(c, res)
        if op in ("in", "notin"):
            values: list[object] = []
            has_null = False
            for lit in c.values:
                if lit.kind == "null":
                    has_null = True
                    continue
                if lit.kind == "relative":
                    raise self.type_error(lit, res)
                values.append(self.value(lit, res))
            marks = ", ".join("?" for _ in values)
            if values:
                positive = f"({col} IS NOT NULL AND {col}{coll} IN ({marks}))"
                if has_null:
                    positive = f"({col} IS NULL OR {col}{coll} IN ({marks}))"
            else:
                positive = f"({col} IS NULL)"
            sql = positive if op == "in" else f"NOT {positive}"
            return sql, values
        lit = c.values[0]
        if lit.kind == "null":
            if op == "=":
                return f"({col} IS NULL)", []
            if op == "!=":
                return f"({col} IS NOT NULL)", []
            raise self.malformed(lit.pos, "null can only be compared with = or !=")
        if lit.kind == "relative":
            return self.relative(col, op, lit, res)
        value = self.value(lit, res)
        if f.type in _TEXT_TYPES and value == "":
            # Salesforce stores no empty strings: '' compares like null
            return (f"({col} IS NULL OR {col} = '')" if op == "=" else f"({col} IS NOT NULL AND {col} <> '')"), []
        if op == "!=":
            return f"({col} IS NULL OR {col}{coll} <> ?)", [value]
        return f"({col} IS NOT NULL AND {col}{coll} {op} ?)", [value]

    def includes(self, c: _Cmp, res: _Resolved) -> tuple[str, list[object]]:
        if res.field.type != "multipicklist":
            raise self.invalid_field(c.pos, f"invalid operator on field: {res.out_name}")
        col = res.sql
        parts: list[str] = []
        params: list[object] = []
        for lit in c.values:
            if lit.kind != "string":
                raise self.type_error(lit, res)
            # each value may be 'a;b' meaning both; values are ';'-joined in storage
            terms = [v.strip() for v in _unescape(lit.value, like=False).split(";") if v.strip()]
            sub = []
            for term in terms:
                sub.append(f"(';' || {col} || ';') LIKE ? ESCAPE '\\'")
                params.append("%;" + _like_escape(term) + ";%")
            parts.append("(" + " AND ".join(sub or ["0"]) + ")")
        any_sql = f"({col} IS NOT NULL AND ({' OR '.join(parts)}))"
        return (any_sql if c.op == "includes" else f"NOT {any_sql}"), params

    def type_error(self, lit: _Lit, res: _Resolved) -> ApiError:
        t = res.field.type
        if t == "datetime":
            msg = "must be of type dateTime and should not be enclosed in quotes"
        elif t == "date":
            msg = "must be of type date and should not be enclosed in quotes"
        elif t == "boolean":
            msg = "must be of type boolean and should not be enclosed in quotes"
        elif t in INT_TYPES:
            msg = "must be of type integer and should not be enclosed in quotes"
        elif t in FLOAT_TYPES:
            msg = "must be of type double and should not be enclosed in quotes"
        elif t in _ID_TYPES:
            msg = "must be of type id and should be enclosed in quotes"
        else:
            msg = "must be of type string and should be enclosed in quotes"
        return self.invalid_field(lit.pos, f"value of filter criterion for field '{res.out_name}' {msg}")

    def value(self, lit: _Lit, res: _Resolved) -> object:
        """The SQL parameter for a literal compared with ``res`` (type-checked like Salesforce)."""
        t = res.field.type
        k = lit.kind
        if t == "datetime":
            if k == "datetime":
                return lit.value
        elif t == "date":
            if k == "date":
                return lit.value
        elif t == "boolean":
            if k == "bool":
                return int(lit.value)
        elif t in _NUMBER_TYPES:
            if k == "number":
                return lit.value
        elif t in _ID_TYPES:
            if k == "string":
                raw = _unescape(lit.value, like=False)
                norm = ids.normalize(raw)
                if norm is None:
                    raise ApiError(400, "INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {raw}")
                return norm
        elif k == "string":
            return _unescape(lit.value, like=False)
        raise self.type_error(lit, res)

    def relative(self, col: str, op: str, lit: _Lit, res: _Resolved) -> tuple[str, list[object]]:
        t = res.field.type
        if t not in ("date", "datetime"):
            raise self.type_error(lit, res)
        if self.now_ms is None:
            raise self.malformed(lit.pos, f"date literal {lit.text} needs the org clock (now_ms)")
        word, n = lit.value
        today = self.now_ms - self.now_ms % _DAY_MS
        if word == "today":
            lo, hi = today, today + _DAY_MS
        elif word == "yesterday":
            lo, hi = today - _DAY_MS, today
        elif word == "tomorrow":
            lo, hi = today + _DAY_MS, today + 2 * _DAY_MS
        elif word == "last_n_days":
            lo, hi = today - n * _DAY_MS, today + _DAY_MS
        elif word == "next_n_days":
            lo, hi = today + _DAY_MS, today + (n + 1) * _DAY_MS
        else:  # n_days_ago
            lo, hi = today - n * _DAY_MS, today - (n - 1) * _DAY_MS
        lo_v: object = lo
        hi_v: object = hi
        if t == "date":
            lo_v, hi_v = _ms_to_date(lo), _ms_to_date(hi)
        if op == "=":
            return f"({col} IS NOT NULL AND {col} >= ? AND {col} < ?)", [lo_v, hi_v]
        if op == "!=":
            return f"({col} IS NULL OR {col} < ? OR {col} >= ?)", [lo_v, hi_v]
        bound = {"<": (" < ", lo_v), "<=": (" < ", hi_v), ">": (" >= ", hi_v), ">=": (" >= ", lo_v)}[op]
        return f"({col} IS NOT NULL AND {col}{bound[0]}?)", [bound[1]]


def _sql_string(name: str) -> str:
    """A schema object name as an SQL string literal (schema names only, never request values)."""
    return "'" + name.replace("'", "''") + "'"


def _ms_to_date(ms: int) -> str:
    return format_rest_datetime(ms)[:10]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _walk_rels(children: dict[str, _Leaf | _CompoundOut | _RelOut]) -> list[_RelOut]:
    out: list[_RelOut] = []
    for child in children.values():
        if isinstance(child, _RelOut):
            out.append(child)
            out.extend(_walk_rels(child.children))
    return out


def _build_record(
    type_name: str, id_index: int, children: dict[str, _Leaf | _CompoundOut | _RelOut]
) -> Callable[[tuple[Any, ...], str], dict[str, Any]]:
    fill = _build_fill(children)

    def record(row: tuple[Any, ...], prefix: str) -> dict[str, Any]:
        rid = row[id_index]
        out: dict[str, Any] = {"attributes": {"type": type_name, "url": f"{prefix}{type_name}/{rid}"}}
        fill(row, prefix, out)
        return out

    return record


_Fill = Callable[[tuple[Any, ...], str, dict[str, Any]], None]
_Value = Callable[[tuple[Any, ...], str], Any]


def _build_fill(children: dict[str, _Leaf | _CompoundOut | _RelOut]) -> _Fill:
    """Adds a node's children to its dict in SELECT order: one itemgetter call for the scalars."""
    keys: list[str] = []
    indices: list[int] = []
    convs: list[tuple[int, Callable[[Any], Any]]] = []
    nested: list[tuple[int, _Value]] = []
    for pos, child in enumerate(children.values()):
        keys.append(child.key)
        if isinstance(child, _Leaf):
            indices.append(child.index)
            if child.conv is not None:
                convs.append((pos, child.conv))
        else:
            indices.append(0)  # placeholder, replaced by the nested value
            nested.append((pos, _compound_value(child) if isinstance(child, _CompoundOut) else _rel_value(child)))
    get = _getter(indices)

    if not convs and not nested:

        def fill_plain(row: tuple[Any, ...], _prefix: str, out: dict[str, Any]) -> None:
            out.update(zip(keys, get(row), strict=True))

        return fill_plain

    def fill(row: tuple[Any, ...], prefix: str, out: dict[str, Any]) -> None:
        values = list(get(row))
        for pos, conv in convs:
            values[pos] = conv(values[pos])
        for pos, value in nested:
            values[pos] = value(row, prefix)
        out.update(zip(keys, values, strict=True))

    return fill


def _compound_value(comp: _CompoundOut) -> _Value:
    parts = comp.parts

    def value(row: tuple[Any, ...], _prefix: str) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        empty = True
        for k, idx, conv in parts:
            v = row[idx]
            if v is not None:
                empty = False
                if conv is not None:
                    v = conv(v)
            out[k] = v
        return None if empty else out

    return value


def _rel_value(rel: _RelOut) -> _Value:
    id_index, type_name, prefixes = rel.id_index, rel.type_name, rel.prefixes
    fill = _build_fill(rel.children)

    def value(row: tuple[Any, ...], prefix: str) -> dict[str, Any] | None:
        rid = row[id_index]
        if rid is None:
            return None
        t = type_name or prefixes.get(rid[:3], "Name")
        out: dict[str, Any] = {"attributes": {"type": t, "url": f"{prefix}{t}/{rid}"}}
        fill(row, prefix, out)
        return out

    return value


def compile_query(
    soql: str,
    schema: Schema,
    *,
    include_deleted: bool,
    bulk: bool = False,
    now_ms: int | None = None,
    bulk_label: str = "Bulk API 2.0",
) -> CompiledQuery:
    """Parse, validate and compile ``soql`` for the integration user (see module docstring).

    Raises :class:`ApiError` (400) with Salesforce's error code and message shape:
    ``MALFORMED_QUERY``, ``INVALID_TYPE``, ``INVALID_FIELD``, ``INVALID_QUERY_FILTER_OPERATOR``,
    ``NUMBER_OUTSIDE_VALID_RANGE``; with ``bulk=True`` also ``API_ERROR`` for what Bulk
    cannot query (compound fields, OFFSET, aggregates, FIELDS(), subqueries); ``bulk_label``
    names the API in those messages (``Bulk API 2.0`` or ``Bulk API`` for 1.0).
    """
    if not soql or not soql.strip():
        raise ApiError(400, "MALFORMED_QUERY", "unexpected token: <EOF>")
    return _Compiler(
        soql, schema, include_deleted=include_deleted, bulk=bulk, now_ms=now_ms, bulk_label=bulk_label
    ).compile()
