"""The emulated org's data: SQLite storage, DML with the validation pipeline, record lifecycle,
replication resources (getUpdated/getDeleted) and query cursors.

Storage follows :func:`sfsync_emulator.schema.table_ddl` (one table per object, one column per
stored field, engine-only ``_hidden``).  Three engine-only tables sit next to them:

* ``_deletelog(obj, id, deleted_ms)`` — the delete log behind getDeleted (soft and hard deletes);
* ``_cascade(root_id, child_obj, child_id)`` — which children a cascade delete took with a
  parent, so undelete brings exactly those back;
* ``cur_N`` TEMP tables — materialized query snapshots (cursors).

Every public method takes ``Org.lock`` and first calls :meth:`Org.tick`, which applies due late
commits and, at most once per virtual minute, purges the recycle bin, the delete log and
expired cursors.

Error conventions: per-record problems raise :class:`~sfsync_emulator.errors.DmlError` (§6.3);
request-level problems (unknown object, bad replication window, bad cursor) raise
:class:`~sfsync_emulator.errors.ApiError`.  An upsert whose external id matches several records
raises :class:`MultipleMatches` (a ``DmlError`` with statusCode ``DUPLICATE_EXTERNAL_ID`` and the
matching ``ids``; single-record REST turns it into HTTP 300).
"""

from __future__ import annotations

import bisect
import datetime as dt
import random
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import errors, ids
from .catalogue import CLOSED_STAGES, RESPONDED_STATUSES, SYSTEM_FIELD_NAMES, WON_STAGES
from .cdc import CdcBus, Origin, PendingChange, change_origin
from .clock import Clock
from .errors import ApiError, DmlError
from .schema import (
    STRING_TYPES,
    FieldDef,
    ObjectDef,
    Schema,
    ValueError_,
    format_rest_datetime,
    ms_to_datetime,
    quote_ident,
    table_ddl,
    to_db,
    to_json,
)

MINUTE_MS = 60_000
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DAY_MS = 86_400_000
_CHUNK = 500
_PERSON_NAME_OBJECTS = frozenset({"Lead", "Contact", "User"})
# Store-maintained fields nobody may write (not even "act as a Salesforce user" calls).
_DERIVED: Mapping[str, frozenset[str]] = {
    "Lead": frozenset({"Name"}),
    "Contact": frozenset({"Name"}),
    "User": frozenset({"Name"}),
    "CampaignMember": frozenset({"LeadOrContactId", "HasResponded"}),
    "Opportunity": frozenset({"IsClosed", "IsWon"}),
}
# Reference fields a merge never reparents.
_NO_REPARENT = frozenset({"CreatedById", "LastModifiedById", "MasterRecordId"})


@dataclass
class OrgConfig:
    stamp_precision_ms: int = 1000
    recycle_bin_days: int = 15
    cursor_ttl_s: int = 2 * 86400
    get_updated_max_days: int = 30
    get_deleted_max_days: int = 15
    replication_id_limit: int = 600_000
    replication_inflight_lag_s: int = 0
    delete_moves_last_modified: bool = False
    daily_api_limit: int = 100_000
    seed: int = 0


@dataclass
class Cursor:
    id: str
    total: int
    created_ms: int
    table: str = ""
    columns: tuple[str, ...] = ()
    ttl_ms: int = 0  # 0: the org's cursor_ttl_s

    def expired(self, now_ms: int, default_ttl_ms: int) -> bool:
        return now_ms >= self.created_ms + (self.ttl_ms or default_ttl_ms)


class MultipleMatches(DmlError):
    """An upsert external id matched several records (REST: HTTP 300)."""

    def __init__(self, field_name: str, value: str, matches: list[str]) -> None:
        super().__init__(
            "DUPLICATE_EXTERNAL_ID",
            f"{field_name}: more than one record found for external id field: {matches}",
            [field_name],
        )
        self.ids = matches
        self.value = value


@dataclass
class _Meta:
    obj: ObjectDef
    table: str
    cols: tuple[str, ...]
    stored: dict[str, FieldDef]
    insert_sql: str
    select_sql: str
    formulas: tuple[FieldDef, ...]
    compounds: tuple[FieldDef, ...]
    has_owner: bool


@dataclass
class _Frame:
    changes: list[PendingChange] = field(default_factory=list)
    log: list[tuple[str, str, int]] = field(default_factory=list)


@dataclass(order=True)
class _LateCommit:
    due_ms: int
    seq: int
    stamp_ms: int = field(compare=False)
    obj: str = field(compare=False)
    record_id: str = field(compare=False)
    create: bool = field(compare=False)
    values: dict[str, Any] = field(compare=False)
    as_api: bool = field(compare=False)
    origin: Origin = field(compare=False)
    user_id: str | None = field(compare=False)


@dataclass
class _Rule:
    name: str
    predicate: Callable[[dict[str, Any]], bool]
    message: str
    field: str | None


def _floor_minute(ms: int) -> int:
    return ms - ms % MINUTE_MS


def _chunks(items: list[str], size: int = _CHUNK) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _marks(n: int) -> str:
    return ",".join("?" * n)


class Org:
    """One emulated org: schema + SQLite data + lifecycle + CDC bus."""

    def __init__(self, schema: Schema, clock: Clock, config: OrgConfig | None = None) -> None:
        self.schema = schema
        self.clock = clock
        self.config = config or OrgConfig()
        self.lock = threading.RLock()
        self.rng = random.Random(self.config.seed)
        # True once a DML wrote text holding a NUL character: Bulk CSV rendering in SQL then checks
        # every text cell for NULs (printf stops at one), which it otherwise can skip.
        self.nul_text_written = False
        self.conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA temp_store=MEMORY")
        self.minter = ids.IdMinter()
        self.org_id = self.minter.mint("00D")
        self.created_ms = clock.now_ms()
        self.cdc = CdcBus(clock, random.Random(self.rng.getrandbits(64)))
        self.change_log: list[tuple[str, str, int]] = []
        self.late_commit_errors: list[tuple[str, str, DmlError]] = []
        self.dml_fault: Callable[[str, str | None], DmlError | None] | None = None
        self._meta: dict[str, _Meta] = {}
        self._incoming: dict[str, list[tuple[str, str]]] = {}
        self._frames: list[_Frame] = []
        self._sp = 0
        self._late: list[_LateCommit] = []
        self._late_seq = 0
        self._rules: dict[str, list[_Rule]] = {}
        self._dup_rules: dict[str, list[tuple[str, ...]]] = {}
        self._cursors: dict[str, Cursor] = {}
        self._cursor_n = 0
        self._next_maintenance_ms = 0
        self._delete_floor_ms = _floor_minute(self.created_ms)
        self._build_storage()
        self.admin_user_id = self._seed_user("Admin", "User", "admin@sfsync.example.com", None)
        self.integration_user_id = self._seed_user(
            "Integration", "User", "integration@sfsync.example.com", self.admin_user_id
        )
        self.cdc.default_user = self.admin_user_id

    # ================================================================ storage setup
    def _build_storage(self) -> None:
        c = self.conn
        for obj in self.schema.objects.values():
            for stmt in table_ddl(obj):
                c.execute(stmt)
            cols = tuple(f.name for f in obj.stored_fields)
            table = quote_ident(obj.name)
            formulas = tuple(f for f in obj.fields if f.calculated and f.formula_sql)
            select_cols = [f"t.{quote_ident(n)}" for n in cols] + [f"({f.formula_sql})" for f in formulas]
            self._meta[obj.name] = _Meta(
                obj=obj,
                table=table,
                cols=cols,
                stored={f.name: f for f in obj.stored_fields},
                insert_sql=f"INSERT INTO {table} ({', '.join(quote_ident(n) for n in cols)}) "
                f"VALUES ({_marks(len(cols))})",
                select_sql=f'SELECT {", ".join(select_cols)}, t._hidden FROM {table} t WHERE t."Id" = ?',
                formulas=formulas,
                compounds=tuple(f for f in obj.fields if f.is_compound),
                has_owner=obj.field("OwnerId") is not None,
            )
        for obj in self.schema.objects.values():
            for f in obj.stored_fields:
                if f.type != "reference" or f.name in _NO_REPARENT:
                    continue
                for target in f.reference_to:
                    self._incoming.setdefault(target, []).append((obj.name, f.name))
        c.execute("CREATE TABLE _deletelog (obj TEXT NOT NULL, id TEXT NOT NULL, deleted_ms INTEGER NOT NULL)")
        c.execute("CREATE INDEX ix__deletelog ON _deletelog (obj, deleted_ms)")
        c.execute("CREATE INDEX ix__deletelog_id ON _deletelog (id)")
        c.execute("CREATE INDEX ix__deletelog_when ON _deletelog (deleted_ms)")
        c.execute("CREATE TABLE _cascade (root_id TEXT NOT NULL, child_obj TEXT NOT NULL, child_id TEXT NOT NULL)")
        c.execute("CREATE INDEX ix__cascade ON _cascade (root_id)")

    def _seed_user(self, first: str, last: str, username: str, creator: str | None) -> str:
        uid = self.minter.mint("005")
        stamp = self._stamp()
        row: dict[str, Any] = {
            "Id": uid,
            "IsDeleted": 0,
            "CreatedDate": stamp,
            "CreatedById": creator or uid,
            "LastModifiedDate": stamp,
            "LastModifiedById": creator or uid,
            "SystemModstamp": stamp,
            "Username": username,
            "FirstName": first,
            "LastName": last,
            "Name": f"{first} {last}",
            "Email": username,
            "Alias": (first[:1] + last[:4]).lower(),
            "IsActive": 1,
            "TimeZoneSidKey": "America/Los_Angeles",
        }
        meta = self._meta["User"]
        self.conn.execute(meta.insert_sql, [row.get(n) for n in meta.cols])
        return uid

    # ================================================================ small helpers
    def meta(self, obj: str) -> _Meta:
        o = self.schema.get(obj)
        if o is None:
            raise errors.invalid_type(obj)
        return self._meta[o.name]

    def _api_meta(self, obj: str, as_api: bool) -> _Meta:
        m = self.meta(obj)
        if as_api and m.obj.name in self.schema.profile.hidden_objects:
            raise errors.invalid_type(obj)
        return m

    def _stamp(self, ms: int | None = None) -> int:
        now = self.clock.now_ms() if ms is None else ms
        p = self.config.stamp_precision_ms
        return now - now % p if p > 1 else now

    def _today(self) -> str:
        return ms_to_datetime(self.clock.now_ms()).date().isoformat()

    @staticmethod
    def _norm_id(record_id: str, label: str = "Id") -> str:
        norm = ids.normalize(record_id) if isinstance(record_id, str) else None
        if norm is None:
            raise DmlError("MALFORMED_ID", f"{label}: id value of incorrect type: {record_id}", [label])
        return norm

    def _user(self, user_id: str | None, as_api: bool) -> str:
        if user_id:
            return self._norm_id(user_id, "UserId")
        return self.integration_user_id if as_api else self.admin_user_id

    def _origin(self, origin: Origin, as_api: bool) -> str:
        return change_origin(origin, api=as_api or origin is not None, api_version=self.cdc.api_version)

    def _row(self, m: _Meta, record_id: str) -> dict[str, Any] | None:
        """Stored columns (DB encoding) + ``_hidden`` of one row, or None."""
        cur = self.conn.execute(
            f'SELECT {", ".join(quote_ident(n) for n in m.cols)}, _hidden FROM {m.table} WHERE "Id" = ?',
            (record_id,),
        )
        r = cur.fetchone()
        if r is None:
            return None
        out = dict(zip(m.cols, r, strict=False))
        out["_hidden"] = r[-1]
        return out

    def _fault(self, obj: str, record_id: str | None) -> None:
        hook = self.dml_fault
        if hook is not None:
            err = hook(obj, record_id)
            if err is not None:
                raise err

    # ================================================================ transactions
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """SAVEPOINT transaction (nestable).  Change log + CDC publish on outermost commit."""
        with self.lock:
            self._sp += 1
            name = f"sp_{self._sp}"
            self.conn.execute(f"SAVEPOINT {name}")
            frame = _Frame()
            self._frames.append(frame)
            try:
                yield
            except BaseException:
                self._frames.pop()
                self.conn.execute(f"ROLLBACK TO {name}")
                self.conn.execute(f"RELEASE {name}")
                raise
            self._frames.pop()
            self.conn.execute(f"RELEASE {name}")
            if self._frames:
                parent = self._frames[-1]
                parent.changes.extend(frame.changes)
                parent.log.extend(frame.log)
            else:
                self.change_log.extend(frame.log)
                self.cdc.publish_transaction(frame.changes)

    @contextmanager
    def _dry_run(self) -> Iterator[None]:
        """Run writes for validation only: always rolled back, nothing published."""
        self._sp += 1
        name = f"sp_{self._sp}"
        self.conn.execute(f"SAVEPOINT {name}")
        self._frames.append(_Frame())
        try:
            yield
        finally:
            self._frames.pop()
            self.conn.execute(f"ROLLBACK TO {name}")
            self.conn.execute(f"RELEASE {name}")

    def _record_change(
        self,
        m: _Meta,
        record_id: str,
        stamp: int,
        change_type: str,
        *,
        changed: list[str],
        values: dict[str, Any],
        origin: str,
        user: str,
    ) -> None:
        frame = self._frames[-1]
        frame.log.append((m.obj.name, record_id, stamp))
        epoch = frozenset(n for n in values if m.stored[n].type == "datetime")
        frame.changes.append(PendingChange(m.obj.name, record_id, change_type, changed, values, epoch, origin, user))

    def _json_values(self, m: _Meta, row: Mapping[str, Any], names: list[str] | None = None) -> dict[str, Any]:
        if names is None:
            names = [n for n in m.cols if n not in ("IsDeleted", "SystemModstamp") and row.get(n) is not None]
        return {n: to_json(m.stored[n], row.get(n)) for n in names}

    # ================================================================ maintenance
    def tick(self) -> None:
        """Apply due late commits; purge recycle bin / delete log / cursors (once a minute)."""
        with self.lock:
            if self._frames:
                return
            now = self.clock.now_ms()
            while self._late and self._late[0].due_ms <= now:
                self._apply_late(self._late.pop(0))
            if now >= self._next_maintenance_ms:
                self._next_maintenance_ms = now + MINUTE_MS
                self._purge(now)
                self._expire_cursors(now)

    def purge_expired(self) -> int:
        """Physically remove recycle-bin rows older than ``recycle_bin_days``; returns the count."""
        with self.lock:
            return self._purge(self.clock.now_ms())

    def _purge(self, now: int) -> int:
        c = self.conn
        horizon = now - self.config.recycle_bin_days * DAY_MS
        removed = 0
        for obj, rid in c.execute("SELECT obj, id FROM _deletelog WHERE deleted_ms < ?", (horizon,)).fetchall():
            m = self._meta.get(obj)
            if m is not None:
                removed += c.execute(f'DELETE FROM {m.table} WHERE "Id" = ? AND "IsDeleted" = 1', (rid,)).rowcount
        log_horizon = now - self.config.get_deleted_max_days * DAY_MS
        newest = c.execute("SELECT MAX(deleted_ms) FROM _deletelog WHERE deleted_ms < ?", (log_horizon,)).fetchone()[0]
        if newest is not None:
            c.execute("DELETE FROM _deletelog WHERE deleted_ms < ?", (log_horizon,))
            self._delete_floor_ms = max(self._delete_floor_ms, int(newest))
        return removed

    def purge_delete_log(self, before_ms: int | None = None) -> None:
        """Simulate the delete-log purge: drop entries older than ``before_ms`` (default now)."""
        with self.lock:
            cutoff = self.clock.now_ms() if before_ms is None else before_ms
            newest = self.conn.execute(
                "SELECT MAX(deleted_ms) FROM _deletelog WHERE deleted_ms < ?", (cutoff,)
            ).fetchone()[0]
            self.conn.execute("DELETE FROM _deletelog WHERE deleted_ms < ?", (cutoff,))
            self._delete_floor_ms = max(self._delete_floor_ms, int(newest if newest is not None else cutoff))

    # ================================================================ validation pipeline
    def _writable(self, m: _Meta, f: FieldDef, *, create: bool, as_api: bool) -> bool:
        if as_api:
            return self.schema.field_writable(m.obj, f, create=create)
        if not f.is_stored or f.name in SYSTEM_FIELD_NAMES:
            return False
        return f.name not in _DERIVED.get(m.obj.name, frozenset())

    def _convert(self, m: _Meta, values: Mapping[str, Any], *, create: bool, as_api: bool) -> dict[str, Any]:
        """Field resolution, writability, type, length, restricted picklist → DB-encoded values."""
        resolved: list[tuple[FieldDef, Any]] = []
        readonly: list[str] = []
        for key, value in values.items():
            if key == "attributes":
                continue
            f = m.obj.field(key)
            if f is None or (as_api and not self.schema.field_visible(m.obj, f)):
                raise DmlError("INVALID_FIELD", f"No such column '{key}' on sobject of type {m.obj.name}", [key])
            if not self._writable(m, f, create=create, as_api=as_api):
                readonly.append(f.name)
                continue
            resolved.append((f, value))
        if readonly:
            raise DmlError(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(readonly)}. Please check the security settings of "
                "this field and verify that it is read/write for your profile or permission set.",
                readonly,
            )
        out: dict[str, Any] = {}
        for f, value in resolved:
            out[f.name] = self._encode(f, value)
        return out

    def _encode(self, f: FieldDef, value: Any) -> Any:
        if isinstance(value, str) and value == "" and f.type in STRING_TYPES:
            return None
        if value is None:
            return 0 if f.type == "boolean" else None
        if f.type in ("reference", "id"):
            if not isinstance(value, str) or ids.normalize(value) is None:
                raise DmlError("MALFORMED_ID", f"{f.label or f.name}: id value of incorrect type: {value}", [f.name])
            return ids.normalize(value)
        try:
            db = to_db(f, value)
        except ValueError_ as exc:
            raise DmlError(
                "INVALID_TYPE_ON_FIELD_IN_RECORD",
                f"{f.label or f.name}: value not of required type: {value}",
                [f.name],
            ) from exc
        if isinstance(db, str):
            if "\x00" in db:
                self.nul_text_written = True
            if f.type == "email" and not _EMAIL_RE.match(db):
                raise DmlError("INVALID_EMAIL_ADDRESS", f"{f.label or f.name}: invalid email address: {db}", [f.name])
            if f.length and len(db) > f.length:
                raise DmlError(
                    "STRING_TOO_LONG",
                    f"{f.label or f.name}: data value too large: {db[:80]} (max length={f.length})",
                    [f.name],
                )
            if f.restricted_picklist and db not in f.picklist_values:
                raise DmlError(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{f.label or f.name}: bad value for restricted picklist field: {db}",
                    [f.name],
                )
        return db

    def _derive(self, m: _Meta, row: dict[str, Any], old: Mapping[str, Any] | None) -> None:
        name = m.obj.name
        if name in _PERSON_NAME_OBJECTS:
            row["Name"] = " ".join(p for p in (row.get("FirstName"), row.get("LastName")) if p) or None
        elif name == "CampaignMember":
            row["LeadOrContactId"] = row.get("ContactId") or row.get("LeadId")
            responded = self._responded(row.get("CampaignId"), row.get("Status"))
            row["HasResponded"] = int(responded)
            if responded and not (old and old.get("FirstRespondedDate")) and not row.get("FirstRespondedDate"):
                row["FirstRespondedDate"] = self._today()
        elif name == "Opportunity":
            stage = row.get("StageName")
            row["IsClosed"] = int(stage in CLOSED_STAGES)
            row["IsWon"] = int(stage in WON_STAGES)

    def _responded(self, campaign_id: Any, status: Any) -> bool:
        if status is None:
            return False
        r = self.conn.execute(
            'SELECT "HasResponded" FROM "CampaignMemberStatus" WHERE "CampaignId" = ? AND "Label" = ? '
            'AND "IsDeleted" = 0 LIMIT 1',
            (campaign_id, status),
        ).fetchone()
        if r is not None:
            return bool(r[0])
        return status in RESPONDED_STATUSES

    def _check_row(self, m: _Meta, row: dict[str, Any], touched: set[str], *, create: bool) -> None:
        """Required, references, uniqueness, validation and duplicate rules on the merged row."""
        obj = m.obj
        required = [
            f.name
            for f in obj.stored_fields
            if f.required and row.get(f.name) is None and (create or f.name in touched)
        ]
        if required:
            raise DmlError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(required)}]", required)
        rid = row.get("Id")
        for name in touched:
            f = m.stored[name]
            value = row.get(name)
            if f.type != "reference" or value is None:
                continue
            target = self.schema.object_for_id(value)
            if target is None or target.name not in f.reference_to:
                raise DmlError("INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {f.label or name}", [name])
            r = self.conn.execute(
                f'SELECT "IsDeleted" FROM {self._meta[target.name].table} WHERE "Id" = ?', (value,)
            ).fetchone()
            if r is None:
                raise DmlError("INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {f.label or name}", [name])
            if r[0]:
                raise DmlError("ENTITY_IS_DELETED", "entity is deleted", [name])
        for name in touched:
            f = m.stored[name]
            value = row.get(name)
            if value is None or not f.unique:
                continue
            hit = self.conn.execute(
                f'SELECT "Id" FROM {m.table} WHERE {quote_ident(name)} = ? AND "IsDeleted" = 0 AND "Id" != ? LIMIT 1',
                (value, rid),
            ).fetchone()
            if hit is not None:
                raise DmlError(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {name} duplicates value on record with id: {hit[0]}",
                    [name],
                )
        for combo in obj.unique_together:
            if not touched.intersection(combo) or any(row.get(n) is None for n in combo):
                continue
            where = " AND ".join(f"{quote_ident(n)} = ?" for n in combo)
            hit = self.conn.execute(
                f'SELECT "Id" FROM {m.table} WHERE {where} AND "IsDeleted" = 0 AND "Id" != ? LIMIT 1',
                [*(row[n] for n in combo), rid],
            ).fetchone()
            if hit is not None:
                message = (
                    "Already a campaign member."
                    if obj.name == "CampaignMember"
                    else f"duplicate value found: {', '.join(combo)} duplicates value on record with id: {hit[0]}"
                )
                raise DmlError("DUPLICATE_VALUE", message, [])
        rules = self._rules.get(obj.name)
        if rules:
            record = self._json_values(m, row, [n for n in m.cols])
            for rule in rules:
                if rule.predicate(record):
                    raise DmlError(
                        "FIELD_CUSTOM_VALIDATION_EXCEPTION", rule.message, [rule.field] if rule.field else []
                    )
        for fields in self._dup_rules.get(obj.name, ()):
            vals = [row.get(n) for n in fields]
            if any(v is None for v in vals) or not touched.intersection(fields):
                continue
            where = " AND ".join(f"lower({quote_ident(n)}) = lower(?)" for n in fields)
            hit = self.conn.execute(
                f'SELECT "Id" FROM {m.table} WHERE {where} AND "IsDeleted" = 0 AND "Id" != ? LIMIT 1',
                [*vals, rid],
            ).fetchone()
            if hit is not None:
                raise DmlError("DUPLICATES_DETECTED", "Use one of these records?", [])

    # ================================================================ create / update
    def create(
        self,
        obj: str,
        values: Mapping[str, Any],
        *,
        as_api: bool = True,
        origin: Origin = None,
        user_id: str | None = None,
    ) -> str:
        """Insert one record; returns its Id.  Raises DmlError (§6.3) / ApiError (unknown object)."""
        with self.lock:
            self.tick()
            m = self._api_meta(obj, as_api)
            if as_api:
                self._fault(m.obj.name, None)
            with self.transaction():
                return self._create(m, values, as_api=as_api, origin=origin, user_id=user_id, stamp=self._stamp())

    def _create(
        self,
        m: _Meta,
        values: Mapping[str, Any],
        *,
        as_api: bool,
        origin: Origin,
        user_id: str | None,
        stamp: int,
        record_id: str | None = None,
    ) -> str:
        obj = m.obj
        if as_api and not obj.createable:
            raise DmlError("INSUFFICIENT_ACCESS_OR_READONLY", f"insufficient access rights on object {obj.name}")
        encoded = self._convert(m, values, create=True, as_api=as_api)
        user = self._user(user_id, as_api)
        rid = record_id or self.minter.mint(obj.key_prefix)
        row: dict[str, Any] = {}
        for f in obj.stored_fields:
            if f.defaulted_on_create and f.default_value is not None:
                row[f.name] = to_db(f, f.default_value)
        row.update(encoded)
        row.update(
            {
                "Id": rid,
                "IsDeleted": 0,
                "CreatedDate": stamp,
                "CreatedById": user,
                "LastModifiedDate": stamp,
                "LastModifiedById": user,
                "SystemModstamp": stamp,
            }
        )
        if m.has_owner and row.get("OwnerId") is None:
            row["OwnerId"] = user
        touched = set(encoded)
        if m.has_owner:
            touched.add("OwnerId")
        self._derive(m, row, None)
        self._check_row(m, row, touched, create=True)
        self.conn.execute(m.insert_sql, [row.get(n) for n in m.cols])
        self._record_change(
            m,
            rid,
            stamp,
            "CREATE",
            changed=[],
            values=self._json_values(m, row),
            origin=self._origin(origin, as_api),
            user=user,
        )
        return rid

    def update(
        self,
        obj: str,
        record_id: str,
        values: Mapping[str, Any],
        *,
        as_api: bool = True,
        origin: Origin = None,
        user_id: str | None = None,
    ) -> None:
        """Update one record (user change: LastModifiedDate and SystemModstamp move)."""
        self._on_record(
            obj,
            record_id,
            as_api,
            lambda m, rid, stamp: self._update(
                m, rid, values, as_api=as_api, origin=origin, user_id=user_id, stamp=stamp
            ),
        )

    def _on_record(self, obj: str, record_id: str, as_api: bool, apply: Callable[[_Meta, str, int], object]) -> None:
        """One DML call on one existing record: resolve the object and Id, raise an injected fault
        (API calls only), then ``apply(meta, id, stamp)`` in one transaction."""
        with self.lock:
            self.tick()
            m = self._api_meta(obj, as_api)
            rid = self._norm_id(record_id)
            if as_api:
                self._fault(m.obj.name, rid)
            with self.transaction():
                apply(m, rid, self._stamp())

    def _live_row(self, m: _Meta, rid: str, *, as_api: bool) -> dict[str, Any]:
        row = self._row(m, rid)
        if row is None or self.schema.object_for_id(rid) is not m.obj:
            raise DmlError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
        if as_api and row["_hidden"]:
            raise DmlError("INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id", [])
        if row["IsDeleted"]:
            raise DmlError("ENTITY_IS_DELETED", "entity is deleted", [])
        return row

    def _update(
        self,
        m: _Meta,
        rid: str,
        values: Mapping[str, Any],
        *,
        as_api: bool,
        origin: Origin,
        user_id: str | None,
        stamp: int,
        user_change: bool = True,
        change_type: str = "UPDATE",
        hide_lmd: bool = False,
        allow_converted: bool = False,
        force_event: bool = False,
    ) -> list[str]:
        obj = m.obj
        old = self._live_row(m, rid, as_api=as_api)
        if obj.name == "Lead" and old.get("IsConverted") and not allow_converted:
            raise DmlError("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
        if as_api and not obj.updateable:
            raise DmlError("INSUFFICIENT_ACCESS_OR_READONLY", f"insufficient access rights on object {obj.name}")
        clean = {
            k: v
            for k, v in values.items()
            if not (k.lower() == "id" and isinstance(v, str) and ids.normalize(v) == rid)
        }
        encoded = self._convert(m, clean, create=False, as_api=as_api)
        user = self._user(user_id, as_api)
        row = dict(old)
        row.update(encoded)
        self._derive(m, row, old)
        self._check_row(m, row, set(encoded), create=False)
        changed = [n for n in m.cols if n not in SYSTEM_FIELD_NAMES and row.get(n) != old.get(n)]
        row["SystemModstamp"] = stamp
        if user_change:
            row["LastModifiedDate"] = stamp
            row["LastModifiedById"] = user
        sets = changed + [
            n
            for n in ("LastModifiedDate", "LastModifiedById", "SystemModstamp")
            if row.get(n) != old.get(n) or n == "SystemModstamp"
        ]
        self.conn.execute(
            f'UPDATE {m.table} SET {", ".join(f"{quote_ident(n)} = ?" for n in sets)} WHERE "Id" = ?',
            [*(row[n] for n in sets), rid],
        )
        cdc_changed = list(changed)
        if user_change and not hide_lmd:
            if old.get("LastModifiedById") != user:
                cdc_changed.append("LastModifiedById")
            cdc_changed.append("LastModifiedDate")
        if changed or change_type != "UPDATE" or force_event:
            self._record_change(
                m,
                rid,
                stamp,
                change_type,
                changed=cdc_changed,
                values=self._json_values(m, row, cdc_changed),
                origin=self._origin(origin, as_api),
                user=user,
            )
        else:
            self._frames[-1].log.append((obj.name, rid, stamp))
        return changed

    def upsert(
        self,
        obj: str,
        ext_field: str,
        ext_value: str,
        values: Mapping[str, Any],
        *,
        as_api: bool = True,
        origin: Origin = None,
        user_id: str | None = None,
    ) -> tuple[str, bool]:
        """Upsert by external id: (id, created).  Several matches → :class:`MultipleMatches`."""
        with self.lock:
            self.tick()
            m = self._api_meta(obj, as_api)
            f = m.obj.field(ext_field)
            if (
                f is None
                or not (f.external_id or f.id_lookup)
                or f.name == "Id"
                or (as_api and not self.schema.field_visible(m.obj, f))
            ):
                raise ApiError(
                    404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {ext_field}"
                )
            key = self._encode(f, ext_value)
            matches = [
                r[0]
                for r in self.conn.execute(
                    f'SELECT "Id" FROM {m.table} WHERE {quote_ident(f.name)} = ? AND "IsDeleted" = 0 '
                    + ("AND _hidden = 0 " if as_api else "")
                    + 'ORDER BY "Id" LIMIT 11',
                    (key,),
                )
            ]
            if len(matches) > 1:
                raise MultipleMatches(f.name, str(ext_value), matches)
            body = {k: v for k, v in values.items() if k.lower() != f.name.lower()}
            if as_api:
                self._fault(m.obj.name, matches[0] if matches else None)
            with self.transaction():
                if matches:
                    self._update(
                        m, matches[0], body, as_api=as_api, origin=origin, user_id=user_id, stamp=self._stamp()
                    )
                    return matches[0], False
                body[f.name] = ext_value
                rid = self._create(m, body, as_api=as_api, origin=origin, user_id=user_id, stamp=self._stamp())
                return rid, True

    def mass_update(
        self,
        obj: str,
        record_ids: list[str],
        values: Mapping[str, Any],
        *,
        origin: Origin = None,
        as_api: bool = False,
        user_id: str | None = None,
    ) -> None:
        """Update many records with the same values in one transaction (merged CDC events)."""
        with self.lock:
            self.tick()
            m = self._api_meta(obj, as_api)
            stamp = self._stamp()
            with self.transaction():
                for record_id in record_ids:
                    self._update(
                        m, self._norm_id(record_id), values, as_api=as_api, origin=origin, user_id=user_id, stamp=stamp
                    )

    def system_update(self, obj: str, record_id: str, values: Mapping[str, Any]) -> None:
        """A system process (trigger, workflow): SystemModstamp moves, LastModifiedDate does not."""
        with self.lock:
            self.tick()
            m = self.meta(obj)
            rid = self._norm_id(record_id)
            with self.transaction():
                self._update(
                    m,
                    rid,
                    values,
                    as_api=False,
                    origin=None,
                    user_id=None,
                    stamp=self._stamp(),
                    user_change=False,
                    allow_converted=True,
                )

    def touch_system_modstamp(self, obj: str, record_id: str) -> None:
        """A system process that changes no visible field but bumps SystemModstamp."""
        with self.lock:
            self.tick()
            m = self.meta(obj)
            rid = self._norm_id(record_id)
            stamp = self._stamp()
            with self.transaction():
                self._live_row(m, rid, as_api=False)
                self.conn.execute(f'UPDATE {m.table} SET "SystemModstamp" = ? WHERE "Id" = ?', (stamp, rid))
                self._frames[-1].log.append((m.obj.name, rid, stamp))

    # ================================================================ delete / undelete
    def delete(
        self,
        obj: str,
        record_id: str,
        *,
        origin: Origin = None,
        as_api: bool = True,
        user_id: str | None = None,
    ) -> None:
        """Delete (to the recycle bin when the object is undeletable; hard otherwise), with cascades."""
        self._on_record(
            obj,
            record_id,
            as_api,
            lambda m, rid, stamp: self._delete(m, rid, as_api=as_api, origin=origin, user_id=user_id, stamp=stamp),
        )

    def _delete(
        self,
        m: _Meta,
        rid: str,
        *,
        as_api: bool,
        origin: Origin,
        user_id: str | None,
        stamp: int,
        master_id: str | None = None,
    ) -> list[tuple[str, str]]:
        if as_api and not m.obj.deletable:
            raise DmlError("INSUFFICIENT_ACCESS_OR_READONLY", f"insufficient access rights on object {m.obj.name}")
        self._live_row(m, rid, as_api=as_api)
        user = self._user(user_id, as_api)
        origin_text = self._origin(origin, as_api)
        tree = [(m.obj.name, rid), *self._cascade_children(m, [rid])]
        c = self.conn
        for obj_name, cid in tree:
            cm = self._meta[obj_name]
            if cm.obj.undeletable:
                sets = ['"IsDeleted" = 1', '"SystemModstamp" = ?']
                args: list[Any] = [stamp]
                if self.config.delete_moves_last_modified:
                    sets += ['"LastModifiedDate" = ?', '"LastModifiedById" = ?']
                    args += [stamp, user]
                if master_id is not None and cid == rid:
                    sets.append('"MasterRecordId" = ?')
                    args.append(master_id)
                c.execute(f'UPDATE {cm.table} SET {", ".join(sets)} WHERE "Id" = ?', [*args, cid])
                if cid != rid:
                    c.execute(
                        "INSERT INTO _cascade (root_id, child_obj, child_id) VALUES (?, ?, ?)", (rid, obj_name, cid)
                    )
            else:
                c.execute(f'DELETE FROM {cm.table} WHERE "Id" = ?', (cid,))
            c.execute("INSERT INTO _deletelog (obj, id, deleted_ms) VALUES (?, ?, ?)", (obj_name, cid, stamp))
            self._record_change(cm, cid, stamp, "DELETE", changed=[], values={}, origin=origin_text, user=user)
        return tree

    def _cascade_children(self, m: _Meta, parent_ids: list[str]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        seen: set[str] = set(parent_ids)
        for child_obj, ref_field in m.obj.cascade_delete:
            cm = self._meta[child_obj]
            found: list[str] = []
            for chunk in _chunks(parent_ids):
                found += [
                    r[0]
                    for r in self.conn.execute(
                        f'SELECT "Id" FROM {cm.table} WHERE {quote_ident(ref_field)} IN ({_marks(len(chunk))}) '
                        'AND "IsDeleted" = 0 ORDER BY "Id"',
                        chunk,
                    )
                ]
            found = [f for f in found if f not in seen]
            seen.update(found)
            if found:
                out += [(child_obj, f) for f in found]
                for obj_name, cid in self._cascade_children(cm, found):
                    if cid not in seen:
                        seen.add(cid)
                        out.append((obj_name, cid))
        return out

    def undelete(
        self,
        obj: str,
        record_id: str,
        *,
        origin: Origin = None,
        as_api: bool = True,
        user_id: str | None = None,
    ) -> None:
        """Restore a recycle-bin record and the children its delete cascaded to."""
        self._on_record(
            obj,
            record_id,
            as_api,
            lambda m, rid, stamp: self._undelete(m, rid, as_api=as_api, origin=origin, user_id=user_id, stamp=stamp),
        )

    def _undelete(
        self,
        m: _Meta,
        rid: str,
        *,
        as_api: bool,
        origin: Origin,
        user_id: str | None,
        stamp: int,
    ) -> None:
        row = self._row(m, rid)
        if row is None or not row["IsDeleted"] or not m.obj.undeletable:
            raise DmlError("UNDELETE_FAILED", "Entity is not in the recycle bin", [])
        if as_api and row["_hidden"]:
            raise DmlError("INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id", [])
        user = self._user(user_id, as_api)
        origin_text = self._origin(origin, as_api)
        c = self.conn
        children = c.execute(
            "SELECT child_obj, child_id FROM _cascade WHERE root_id = ? ORDER BY rowid", (rid,)
        ).fetchall()
        for obj_name, cid in [(m.obj.name, rid), *children]:
            cm = self._meta[obj_name]
            n = c.execute(
                f'UPDATE {cm.table} SET "IsDeleted" = 0, "SystemModstamp" = ?, "LastModifiedDate" = ?, '
                '"LastModifiedById" = ? WHERE "Id" = ? AND "IsDeleted" = 1',
                (stamp, stamp, user, cid),
            ).rowcount
            if not n:
                continue
            c.execute("DELETE FROM _deletelog WHERE id = ?", (cid,))
            restored = self._row(cm, cid)
            assert restored is not None
            self._record_change(
                cm,
                cid,
                stamp,
                "UNDELETE",
                changed=[],
                values=self._json_values(cm, restored),
                origin=origin_text,
                user=user,
            )
        c.execute("DELETE FROM _cascade WHERE root_id = ?", (rid,))

    def hard_delete(self, obj: str, record_id: str, *, origin: Origin = None) -> None:
        """Delete bypassing the recycle bin (the row and its cascade are physically removed)."""
        with self.lock:
            self.tick()
            m = self.meta(obj)
            rid = self._norm_id(record_id)
            with self.transaction():
                row = self._row(m, rid)
                if row is None:
                    raise DmlError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
                if row["IsDeleted"]:
                    tree = [(m.obj.name, rid)] + [
                        (o, i)
                        for o, i in self.conn.execute(
                            "SELECT child_obj, child_id FROM _cascade WHERE root_id = ?", (rid,)
                        )
                    ]
                else:
                    tree = self._delete(m, rid, as_api=False, origin=origin, user_id=None, stamp=self._stamp())
                for obj_name, cid in tree:
                    self.conn.execute(f'DELETE FROM {self._meta[obj_name].table} WHERE "Id" = ?', (cid,))
                self.conn.execute("DELETE FROM _cascade WHERE root_id = ?", (rid,))

    def empty_recycle_bin(self, obj: str | None = None) -> int:
        """Physically remove recycle-bin rows (of one object or all); returns the count."""
        with self.lock:
            self.tick()
            metas = [self.meta(obj)] if obj else list(self._meta.values())
            removed = 0
            with self.transaction():
                for m in metas:
                    if m.obj.undeletable:
                        removed += self.conn.execute(f'DELETE FROM {m.table} WHERE "IsDeleted" = 1').rowcount
                self.conn.execute(
                    f"DELETE FROM _cascade WHERE child_obj IN ({_marks(len(metas))})", [m.obj.name for m in metas]
                )
            return removed

    # ================================================================ merge / convert / archive
    def merge(
        self,
        obj: str,
        master_id: str,
        loser_ids: list[str],
        *,
        master_values: Mapping[str, Any] | None = None,
        origin: Origin = None,
        user_id: str | None = None,
    ) -> dict[str, Any]:
        """Merge ≤2 losers into master: reparent children, update master, delete losers (§8.4)."""
        with self.lock:
            self.tick()
            m = self.meta(obj)
            if not m.obj.mergeable:
                raise DmlError("INVALID_TYPE_FOR_OPERATION", f"entity type {m.obj.name} does not support merge", [])
            master = self._norm_id(master_id)
            losers = [self._norm_id(x) for x in loser_ids]
            if not 1 <= len(losers) <= 2:
                raise DmlError(
                    "LIMIT_EXCEEDED",
                    "A single merge request must contain at least one record to merge, and not more than 2",
                    [],
                )
            if master in losers or len(set(losers)) != len(losers):
                raise DmlError("INVALID_ID_FIELD", "Cannot merge a record with itself", [])
            stamp = self._stamp()
            related: list[str] = []
            with self.transaction():
                self._live_row(m, master, as_api=False)
                for loser in losers:
                    self._live_row(m, loser, as_api=False)
                for child_obj, ref_field in self._incoming.get(m.obj.name, []):
                    related += self._reparent(
                        self._meta[child_obj], ref_field, losers, master, stamp=stamp, origin=origin, user_id=user_id
                    )
                self._update(
                    m,
                    master,
                    master_values or {},
                    as_api=False,
                    origin=origin,
                    user_id=user_id,
                    stamp=stamp,
                    allow_converted=True,
                    force_event=True,
                )
                for loser in losers:
                    self._delete(m, loser, as_api=False, origin=origin, user_id=user_id, stamp=stamp, master_id=master)
            return {"id": master, "mergedRecordIds": losers, "updatedRelatedIds": related}

    def _reparent(
        self,
        cm: _Meta,
        ref_field: str,
        losers: list[str],
        master: str,
        *,
        stamp: int,
        origin: Origin,
        user_id: str | None,
    ) -> list[str]:
        c = self.conn
        rows = c.execute(
            f'SELECT "Id", "IsDeleted" FROM {cm.table} WHERE {quote_ident(ref_field)} IN ({_marks(len(losers))}) '
            'ORDER BY "Id"',
            losers,
        ).fetchall()
        if not rows:
            return []
        user = self._user(user_id, False)
        origin_text = self._origin(origin, False)
        moved: list[str] = []
        for cid, deleted in rows:
            conflict = False
            for combo in cm.obj.unique_together:
                if ref_field not in combo:
                    continue
                row = self._row(cm, cid)
                assert row is not None
                others = [n for n in combo if n != ref_field]
                if any(row.get(n) is None for n in others):
                    continue
                where = " AND ".join(f"{quote_ident(n)} = ?" for n in others)
                hit = c.execute(
                    f"SELECT 1 FROM {cm.table} WHERE {where} AND {quote_ident(ref_field)} = ? LIMIT 1",
                    [*(row[n] for n in others), master],
                ).fetchone()
                conflict = conflict or hit is not None
            if conflict:
                c.execute(f'DELETE FROM {cm.table} WHERE "Id" = ?', (cid,))
                c.execute("INSERT INTO _deletelog (obj, id, deleted_ms) VALUES (?, ?, ?)", (cm.obj.name, cid, stamp))
                if not deleted:
                    self._record_change(cm, cid, stamp, "DELETE", changed=[], values={}, origin=origin_text, user=user)
                continue
            extra = ', "LeadOrContactId" = ?' if cm.obj.name == "CampaignMember" else ""
            args: list[Any] = [master, stamp]
            if extra:
                args.append(master)
            c.execute(
                f'UPDATE {cm.table} SET {quote_ident(ref_field)} = ?, "SystemModstamp" = ?{extra} WHERE "Id" = ?',
                [*args, cid],
            )
            moved.append(cid)
            if not deleted:
                self._record_change(
                    cm,
                    cid,
                    stamp,
                    "UPDATE",
                    changed=[ref_field],
                    values={ref_field: master},
                    origin=origin_text,
                    user=user,
                )
        return moved

    def convert_lead(
        self,
        lead_id: str,
        *,
        account_id: str | None = None,
        contact_id: str | None = None,
        create_opportunity: bool = True,
        converted_status: str = "Closed - Converted",
        origin: Origin = None,
        user_id: str | None = None,
    ) -> dict[str, str | None]:
        """Lead conversion in one transaction (§8.5).  Returns the ids involved."""
        with self.lock:
            self.tick()
            lm, am, cm, om = (self._meta[n] for n in ("Lead", "Account", "Contact", "Opportunity"))
            lid = self._norm_id(lead_id)
            stamp = self._stamp()
            kw: dict[str, Any] = {"as_api": False, "origin": origin, "user_id": user_id, "stamp": stamp}
            with self.transaction():
                lead = self._live_row(lm, lid, as_api=False)
                if lead.get("IsConverted"):
                    raise DmlError("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
                status_field = lm.stored["Status"]
                if converted_status not in status_field.picklist_values:
                    raise DmlError("INVALID_STATUS", f"invalid convertedStatus: {converted_status}", [])
                if account_id is not None:
                    acc = self._norm_id(account_id, "AccountId")
                    self._live_row(am, acc, as_api=False)
                else:
                    acc = self._create(
                        am,
                        {
                            "Name": lead.get("Company") or lead.get("Name"),
                            "Industry": lead.get("Industry"),
                            "Rating": lead.get("Rating"),
                            "Phone": lead.get("Phone"),
                            "Website": lead.get("Website"),
                            "BillingStreet": lead.get("Street"),
                            "BillingCity": lead.get("City"),
                            "BillingState": lead.get("State"),
                            "BillingPostalCode": lead.get("PostalCode"),
                            "BillingCountry": lead.get("Country"),
                            "OwnerId": lead.get("OwnerId"),
                        },
                        **kw,
                    )
                if contact_id is not None:
                    con = self._norm_id(contact_id, "ContactId")
                    self._live_row(cm, con, as_api=False)
                else:
                    con = self._create(
                        cm,
                        {
                            "AccountId": acc,
                            "Salutation": lead.get("Salutation"),
                            "FirstName": lead.get("FirstName"),
                            "LastName": lead.get("LastName"),
                            "Title": lead.get("Title"),
                            "Email": lead.get("Email"),
                            "Phone": lead.get("Phone"),
                            "MobilePhone": lead.get("MobilePhone"),
                            "LeadSource": lead.get("LeadSource"),
                            "MailingStreet": lead.get("Street"),
                            "MailingCity": lead.get("City"),
                            "MailingState": lead.get("State"),
                            "MailingPostalCode": lead.get("PostalCode"),
                            "MailingCountry": lead.get("Country"),
                            "OwnerId": lead.get("OwnerId"),
                        },
                        **kw,
                    )
                opp: str | None = None
                if create_opportunity:
                    close = (ms_to_datetime(self.clock.now_ms()) + dt.timedelta(days=30)).date().isoformat()
                    opp = self._create(
                        om,
                        {
                            "AccountId": acc,
                            "Name": f"{lead.get('Company') or lead.get('Name')}-",
                            "StageName": "Prospecting",
                            "CloseDate": close,
                            "LeadSource": lead.get("LeadSource"),
                            "OwnerId": lead.get("OwnerId"),
                        },
                        **kw,
                    )
                    self._create(
                        self._meta["OpportunityContactRole"],
                        {"OpportunityId": opp, "ContactId": con, "IsPrimary": True},
                        **kw,
                    )
                self._update(
                    lm,
                    lid,
                    {
                        "IsConverted": True,
                        "ConvertedDate": self._today(),
                        "ConvertedAccountId": acc,
                        "ConvertedContactId": con,
                        "ConvertedOpportunityId": opp,
                        "Status": converted_status,
                    },
                    hide_lmd=True,
                    **kw,
                )
            return {"leadId": lid, "accountId": acc, "contactId": con, "opportunityId": opp}

    def archive(self, obj: str, record_id: str) -> None:
        """Archive an activity (outside app-server transactions: GAP_UPDATE, SystemModstamp only)."""
        with self.lock:
            self.tick()
            m = self.meta(obj)
            if not m.obj.archivable:
                raise DmlError("INVALID_TYPE_FOR_OPERATION", f"entity type {m.obj.name} cannot be archived", [])
            rid = self._norm_id(record_id)
            stamp = self._stamp()
            with self.transaction():
                row = self._live_row(m, rid, as_api=False)
                if row.get("IsArchived"):
                    return
                self.conn.execute(
                    f'UPDATE {m.table} SET "IsArchived" = 1, "SystemModstamp" = ? WHERE "Id" = ?', (stamp, rid)
                )
                self._record_change(
                    m, rid, stamp, "GAP_UPDATE", changed=[], values={}, origin="", user=self.admin_user_id
                )

    # ================================================================ late commits
    def late_commit(
        self,
        obj: str,
        values_or_changes: Mapping[str, Any],
        *,
        record_id: str | None = None,
        stamp_ago_s: float,
        visible_after_s: float,
        as_api: bool = False,
        origin: Origin = None,
        user_id: str | None = None,
    ) -> str:
        """Stage a create (record_id None) or update stamped ``now - stamp_ago_s`` that commits
        (becomes visible) only when the clock reaches ``now + visible_after_s``.  Validated now
        (raises DmlError); returns the record id (minted now for a create)."""
        with self.lock:
            self.tick()
            m = self.meta(obj)
            now = self.clock.now_ms()
            stamp = self._stamp(now - int(stamp_ago_s * 1000))
            values = dict(values_or_changes)
            create = record_id is None
            rid = self.minter.mint(m.obj.key_prefix) if create else self._norm_id(record_id or "")
            with self._dry_run():
                if create:
                    self._create(m, values, as_api=as_api, origin=origin, user_id=user_id, stamp=stamp, record_id=rid)
                else:
                    self._update(m, rid, values, as_api=as_api, origin=origin, user_id=user_id, stamp=stamp)
            self._late_seq += 1
            bisect.insort(
                self._late,
                _LateCommit(
                    due_ms=now + int(visible_after_s * 1000),
                    seq=self._late_seq,
                    stamp_ms=stamp,
                    obj=m.obj.name,
                    record_id=rid,
                    create=create,
                    values=values,
                    as_api=as_api,
                    origin=origin,
                    user_id=user_id,
                ),
            )
            if visible_after_s <= 0:
                self.tick()
            return rid

    def pending_late_commits(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {"obj": p.obj, "id": p.record_id, "stampMs": p.stamp_ms, "dueMs": p.due_ms, "create": p.create}
                for p in self._late
            ]

    def _apply_late(self, p: _LateCommit) -> None:
        m = self._meta[p.obj]
        try:
            with self.transaction():
                if p.create:
                    self._create(
                        m,
                        p.values,
                        as_api=p.as_api,
                        origin=p.origin,
                        user_id=p.user_id,
                        stamp=p.stamp_ms,
                        record_id=p.record_id,
                    )
                else:
                    self._update(
                        m, p.record_id, p.values, as_api=p.as_api, origin=p.origin, user_id=p.user_id, stamp=p.stamp_ms
                    )
        except DmlError as exc:
            self.late_commit_errors.append((p.obj, p.record_id, exc))

    # ================================================================ sharing and profile
    def set_hidden(self, obj: str, record_id: str, hidden: bool) -> None:
        """Sharing: hide a row from the integration user (no SystemModstamp change)."""
        with self.lock:
            self.tick()
            m = self.meta(obj)
            rid = self._norm_id(record_id)
            n = self.conn.execute(f'UPDATE {m.table} SET _hidden = ? WHERE "Id" = ?', (int(hidden), rid)).rowcount
            if not n:
                raise DmlError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])

    def _profile_change(self, change: Callable[[], None]) -> None:
        with self.lock:
            change()
            self.schema.bump(self.clock.now_ms())

    def _field_key(self, obj: str, field_name: str) -> tuple[str, str]:
        m = self.meta(obj)
        f = m.obj.field(field_name)
        if f is None:
            raise ApiError(400, "INVALID_FIELD", f"No such column '{field_name}' on entity '{m.obj.name}'")
        return m.obj.name, f.name

    def hide_field(self, obj: str, field_name: str) -> None:
        key = self._field_key(obj, field_name)
        self._profile_change(lambda: self.schema.profile.hidden_fields.add(key))

    def show_field(self, obj: str, field_name: str) -> None:
        key = self._field_key(obj, field_name)
        self._profile_change(lambda: self.schema.profile.hidden_fields.discard(key))

    def set_field_readonly(self, obj: str, field_name: str, readonly: bool) -> None:
        key = self._field_key(obj, field_name)
        ro = self.schema.profile.readonly_fields
        self._profile_change(lambda: ro.add(key) if readonly else ro.discard(key))

    def hide_object(self, obj: str) -> None:
        name = self.meta(obj).obj.name
        self._profile_change(lambda: self.schema.profile.hidden_objects.add(name))

    def show_object(self, obj: str) -> None:
        name = self.meta(obj).obj.name
        self._profile_change(lambda: self.schema.profile.hidden_objects.discard(name))

    # ================================================================ rules
    def add_validation_rule(
        self,
        obj: str,
        name: str,
        predicate: Callable[[dict[str, Any]], bool],
        message: str,
        field: str | None = None,
    ) -> None:
        """A custom validation rule: ``predicate(record)`` returning True means the record is
        invalid (like a Salesforce error-condition formula).  ``record`` is the merged record in
        REST JSON form (stored fields)."""
        with self.lock:
            self._rules.setdefault(self.meta(obj).obj.name, []).append(_Rule(name, predicate, message, field))

    def remove_validation_rule(self, obj: str, name: str) -> None:
        with self.lock:
            key = self.meta(obj).obj.name
            self._rules[key] = [r for r in self._rules.get(key, []) if r.name != name]

    def add_duplicate_rule(self, obj: str, fields: tuple[str, ...]) -> None:
        """Block saves of a record matching a live one on all ``fields`` (case-insensitive)."""
        with self.lock:
            m = self.meta(obj)
            names = tuple(self._field_key(obj, f)[1] for f in fields)
            self._dup_rules.setdefault(m.obj.name, []).append(names)

    def clear_duplicate_rules(self, obj: str | None = None) -> None:
        with self.lock:
            if obj is None:
                self._dup_rules.clear()
            else:
                self._dup_rules.pop(self.meta(obj).obj.name, None)

    # ================================================================ reads
    def get(
        self,
        obj: str,
        record_id: str,
        *,
        include_deleted: bool = False,
        as_api: bool = True,
    ) -> dict[str, Any] | None:
        """A record in REST JSON form (visible fields incl. compound and formula values), or None."""
        with self.lock:
            self.tick()
            m = self._api_meta(obj, as_api)
            rid = ids.normalize(record_id) if isinstance(record_id, str) else None
            if rid is None:
                return None
            r = self.conn.execute(m.select_sql, (rid,)).fetchone()
            if r is None:
                return None
            stored = dict(zip(m.cols, r, strict=False))
            if (as_api and r[-1]) or (stored["IsDeleted"] and not include_deleted):
                return None
            formula_values = dict(zip((f.name for f in m.formulas), r[len(m.cols) : -1], strict=True))
            out: dict[str, Any] = {}
            for f in m.obj.fields:
                if as_api and not self.schema.field_visible(m.obj, f):
                    continue
                if f.is_stored:
                    out[f.name] = to_json(f, stored[f.name])
                elif f.is_compound:
                    parts = {k: to_json(c, stored.get(c.name)) for k, c in m.obj.components(f)}
                    out[f.name] = parts if any(v is not None for v in parts.values()) else None
                elif f.name in formula_values:
                    out[f.name] = to_json(f, formula_values[f.name])
            return out

    def count(self, obj: str, *, include_deleted: bool = False) -> int:
        with self.lock:
            self.tick()
            m = self.meta(obj)
            where = "" if include_deleted else ' WHERE "IsDeleted" = 0'
            return int(self.conn.execute(f"SELECT COUNT(*) FROM {m.table}{where}").fetchone()[0])

    def _replicable(self, obj: str) -> _Meta:
        m = self._api_meta(obj, True)
        if not m.obj.replicateable:
            raise ApiError(400, "INVALID_TYPE_FOR_OPERATION", f"entity type {m.obj.name} does not support replication")
        return m

    def _window(self, start_ms: int, end_ms: int, max_days: int) -> tuple[int, int, int]:
        now = self.clock.now_ms()
        start, end = _floor_minute(start_ms), _floor_minute(end_ms)
        if end <= start:
            raise ApiError(
                400,
                "INVALID_REPLICATION_DATE",
                "startDate must chronologically precede endDate by more than one minute",
            )
        if start < _floor_minute(now - max_days * DAY_MS):
            raise ApiError(400, "INVALID_REPLICATION_DATE", f"startDate cannot be more than {max_days} days ago")
        latest = min(end, now - self.config.replication_inflight_lag_s * 1000)
        return start, end, latest

    def _too_many(self) -> ApiError:
        return ApiError(
            400,
            "EXCEEDED_ID_LIMIT",
            f"The number of ids exceeds the limit of {self.config.replication_id_limit}; narrow the date range",
        )

    def get_updated(self, obj: str, start_ms: int, end_ms: int) -> dict[str, Any]:
        """getUpdated (§3.1): ids of visible live records whose SystemModstamp is in [start, end)."""
        with self.lock:
            self.tick()
            m = self._replicable(obj)
            start, end, latest = self._window(start_ms, end_ms, self.config.get_updated_max_days)
            pending = [p.stamp_ms for p in self._late if p.obj == m.obj.name and p.stamp_ms < end]
            if pending:
                latest = min(latest, *pending)
            latest = max(start, _floor_minute(latest))
            limit = self.config.replication_id_limit
            found = [
                r[0]
                for r in self.conn.execute(
                    f'SELECT "Id" FROM {m.table} WHERE "SystemModstamp" >= ? AND "SystemModstamp" < ? '
                    'AND "IsDeleted" = 0 AND _hidden = 0 ORDER BY "SystemModstamp", "Id" LIMIT ?',
                    (start, end, limit + 1),
                )
            ]
            if len(found) > limit:
                raise self._too_many()
            return {"ids": found, "latestDateCovered": format_rest_datetime(latest)}

    def get_deleted(self, obj: str, start_ms: int, end_ms: int) -> dict[str, Any]:
        """getDeleted (§3.2) from the delete log."""
        with self.lock:
            self.tick()
            m = self._replicable(obj)
            start, end, latest = self._window(start_ms, end_ms, self.config.get_deleted_max_days)
            latest = max(start, _floor_minute(latest))
            limit = self.config.replication_id_limit
            rows = self.conn.execute(
                f'SELECT d.id, d.deleted_ms FROM _deletelog d LEFT JOIN {m.table} t ON t."Id" = d.id '
                "WHERE d.obj = ? AND d.deleted_ms >= ? AND d.deleted_ms < ? AND COALESCE(t._hidden, 0) = 0 "
                "ORDER BY d.deleted_ms, d.id LIMIT ?",
                (m.obj.name, start, end, limit + 1),
            ).fetchall()
            if len(rows) > limit:
                raise self._too_many()
            return {
                "deletedRecords": [{"id": rid, "deletedDate": format_rest_datetime(ms)} for rid, ms in rows],
                "earliestDateAvailable": format_rest_datetime(_floor_minute(self._delete_floor_ms)),
                "latestDateCovered": format_rest_datetime(latest),
            }

    # ================================================================ cursors
    def id_boundaries(self, obj: str, every: int, start_id: str | None = None) -> list[str]:
        """Every ``every``-th record Id of ``obj`` in Id order from ``start_id`` (the first one
        included): the chunk boundaries of Bulk 1.0 PK chunking.  Every stored row counts,
        deleted and hidden ones too, as Salesforce counts soft-deleted Ids when it chunks."""
        if every < 1:
            raise ValueError("every must be >= 1")
        with self.lock:
            self.tick()
            m = self.meta(obj)
            sql = (
                f'SELECT Id FROM (SELECT "Id" AS Id, ROW_NUMBER() OVER (ORDER BY "Id") - 1 AS rn '
                f'FROM {m.table} WHERE "Id" >= ?) WHERE rn % ? = 0 ORDER BY Id'
            )
            return [str(r[0]) for r in self.conn.execute(sql, (start_id or "", every)).fetchall()]

    def open_cursor(self, sql: str, params: list[Any] | tuple[Any, ...] = (), *, ttl_s: int | None = None) -> Cursor:
        """Run ``sql`` once and snapshot the rows into a TEMP table; returns the cursor.

        ``ttl_s`` overrides the org's cursor lifetime (Bulk results live 7 days, REST cursors 2).
        """
        with self.lock:
            self.tick()
            self._cursor_n += 1
            table = f"cur_{self._cursor_n}"
            self.conn.execute(f"CREATE TEMP TABLE {table} AS {sql}", list(params))
            total = int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
            cols = tuple(d[0] for d in self.conn.execute(f"SELECT * FROM {table} LIMIT 0").description)
            cursor = Cursor(
                id=self.minter.mint("01g"),
                total=total,
                created_ms=self.clock.now_ms(),
                table=table,
                columns=cols,
                ttl_ms=(ttl_s or 0) * 1000,
            )
            self._cursors[cursor.id] = cursor
            return cursor

    def cursor(self, cursor_id: str) -> Cursor:
        """The live cursor (raises INVALID_QUERY_LOCATOR when unknown or expired)."""
        with self.lock:
            self.tick()
            return self._live_cursor(cursor_id)

    def _live_cursor(self, cursor_id: str) -> Cursor:
        cur = self._cursors.get(cursor_id)
        if cur is not None and cur.expired(self.clock.now_ms(), self.config.cursor_ttl_s * 1000):
            self._drop_cursor(cur)
            cur = None
        if cur is None:
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return cur

    def fetch_cursor(self, cursor_id: str, offset: int, limit: int) -> list[tuple[Any, ...]]:
        """Rows ``offset .. offset+limit-1`` of the snapshot (0-based)."""
        with self.lock:
            self.tick()
            cur = self._live_cursor(cursor_id)
            return self.conn.execute(
                f"SELECT * FROM {cur.table} WHERE rowid > ? ORDER BY rowid LIMIT ?", (offset, limit)
            ).fetchall()

    def fetch_cursor_select(
        self, cursor_id: str, exprs: list[str], params: Mapping[str, object], offset: int, limit: int
    ) -> list[tuple[Any, ...]]:
        """``(rowid, *exprs)`` over rows ``offset .. offset+limit-1`` of the snapshot.

        ``exprs`` are SQL expressions over the snapshot's columns (compiled by :mod:`.soql`
        from the schema, never from request text); ``params`` binds their named parameters.
        """
        with self.lock:
            self.tick()
            cur = self._live_cursor(cursor_id)
            sql = (
                f"SELECT rowid, {', '.join(exprs)} FROM {cur.table} WHERE rowid > :_offset ORDER BY rowid LIMIT :_limit"
            )
            return self.conn.execute(sql, {**params, "_offset": offset, "_limit": limit}).fetchall()

    def iter_cursor(
        self,
        cursor_id: str,
        offset: int = 0,
        limit: int | None = None,
        chunk: int = 5000,
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Stream ``limit`` rows (all when None) from ``offset`` in chunks; the lock is held per chunk."""
        pos = offset
        remaining = limit
        while remaining is None or remaining > 0:
            size = chunk if remaining is None else min(chunk, remaining)
            rows = self.fetch_cursor(cursor_id, pos, size)
            if not rows:
                return
            yield rows
            pos += len(rows)
            if remaining is not None:
                remaining -= len(rows)
            if len(rows) < size:
                return

    def close_cursor(self, cursor_id: str) -> None:
        with self.lock:
            cur = self._cursors.get(cursor_id)
            if cur is not None:
                self._drop_cursor(cur)

    def _drop_cursor(self, cur: Cursor) -> None:
        self._cursors.pop(cur.id, None)
        self.conn.execute(f"DROP TABLE IF EXISTS temp.{cur.table}")

    def _expire_cursors(self, now: int) -> None:
        ttl = self.config.cursor_ttl_s * 1000
        for cur in [c for c in self._cursors.values() if c.expired(now, ttl)]:
            self._drop_cursor(cur)
