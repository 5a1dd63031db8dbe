"""REST resources of the emulated org (spec §2-§7, §13): describe, query, replication,
records, sObject Collections, Composite, limits, and the Bulk 2.0 routes (delegated to
:class:`~sfsync_emulator.bulk.BulkService`)."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from werkzeug.http import http_date, parse_date
from werkzeug.wrappers import Response

from . import ids
from .cdc import CallOrigin
from .errors import ApiError, DmlError, invalid_type, not_found
from .schema import FLOAT_TYPES, INT_TYPES, FieldDef, ObjectDef, datetime_to_ms, parse_datetime_ms
from .server import Call, Route, json_response, no_content, raw_json_response
from .soql import CompiledQuery, compile_query, join_json_parts, json_params
from .store import MultipleMatches

if TYPE_CHECKING:
    from .server import EmulatorApp
    from .store import Org

MAX_COLLECTION = 200
MAX_RETRIEVE_GET = 800
MAX_RETRIEVE_POST = 2000
MAX_COMPOSITE = 25
MAX_COMPOSITE_QUERIES = 5
ROLLED_BACK = DmlError(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using AllOrNone header",
)
HALTED_MESSAGE = "The transaction was rolled back since another operation in the same transaction failed."
_FIELD_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*")
_BATCH_RE = re.compile(r"batchsize\s*=\s*(\d+)", re.IGNORECASE)
_REF_RE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])+)\}")
_PATH_PART_RE = re.compile(r"\.([A-Za-z0-9_]+)|\[(\d+)\]")
_SEASONS = ("Winter", "Spring", "Summer")


class LockRowFault:
    """``org.dml_fault`` hook: the next ``remaining`` records fail with UNABLE_TO_LOCK_ROW."""

    def __init__(self, remaining: int) -> None:
        self.remaining = remaining
        self._lock = threading.Lock()

    def __call__(self, obj: str, record_id: str | None) -> DmlError | None:
        with self._lock:
            if self.remaining <= 0:
                return None
            self.remaining -= 1
        return DmlError(
            "UNABLE_TO_LOCK_ROW",
            f"unable to obtain exclusive access to this record or 1 records: {record_id or ''}",
        )


def arm_lock_row(org: Org, records: int) -> None:
    org.dml_fault = LockRowFault(records)


class _Rollback(Exception):
    """Raised inside ``org.transaction()`` to undo an allOrNone batch."""


@dataclass
class _QueryState:
    compiled: CompiledQuery
    total: int
    batch_size: int


def version_label(version: str) -> str:
    major = int(float(version))
    n = major - 59
    return f"{_SEASONS[n % 3]} '{24 + n // 3:02d}"


def soql_literal(f: FieldDef, value: str) -> str:
    """A SOQL literal for ``value`` compared with field ``f`` (quoted and escaped)."""
    if f.type in INT_TYPES or f.type in FLOAT_TYPES:
        try:
            float(value)
        except ValueError as exc:
            raise ApiError(400, "MALFORMED_QUERY", f"invalid number for {f.name}: {value}") from exc
        return value
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


class RestApi:
    def __init__(self, app: EmulatorApp) -> None:
        self.app = app
        self._queries: dict[str, _QueryState] = {}
        self._opened = 0
        self._qlock = threading.Lock()

    @property
    def org(self) -> Org:
        return self.app.org

    def routes(self) -> list[Route]:
        d = "/services/data/<ver:version>"
        g, p = ("GET",), ("POST",)
        return [
            Route("/services/data", g, "versions", self.versions, auth=False),
            Route(d, g, "describe", self.resources),
            Route(f"{d}/limits", g, "limits", self.limits),
            Route(f"{d}/sobjects", g, "describe", self.describe_global),
            Route(f"{d}/sobjects/<sobject>", ("GET", "POST"), "sobjects", self.sobject_root),
            Route(f"{d}/sobjects/<sobject>/describe", g, "describe", self.describe),
            Route(f"{d}/sobjects/<sobject>/updated", g, "replication", self.updated),
            Route(f"{d}/sobjects/<sobject>/deleted", g, "replication", self.deleted),
            Route(f"{d}/sobjects/<sobject>/<record_id>", ("GET", "PATCH", "DELETE"), "sobjects", self.record),
            Route(f"{d}/sobjects/<sobject>/<field>/<path:value>", ("GET", "PATCH"), "sobjects", self.by_external_id),
            Route(f"{d}/query", g, "query", self.query),
            Route(f"{d}/queryAll", g, "query", self.query_all),
            Route(f"{d}/query/<locator>", g, "query", self.query_more),
            Route(f"{d}/queryAll/<locator>", g, "query", self.query_more),
            Route(f"{d}/composite", p, "composite", self.composite),
            Route(f"{d}/composite/sobjects", ("POST", "PATCH", "DELETE"), "composite", self.collection),
            Route(f"{d}/composite/sobjects/<sobject>", ("GET", "POST"), "composite", self.collection_retrieve),
            Route(f"{d}/composite/sobjects/<sobject>/<field>", ("PATCH",), "composite", self.collection_upsert),
            Route(f"{d}/jobs/query", ("GET", "POST"), "bulk", self.bulk_query_root),
            Route(f"{d}/jobs/query/<job_id>", ("GET", "PATCH", "DELETE"), "bulk", self.bulk_query_job),
            Route(f"{d}/jobs/query/<job_id>/results", g, "bulk", self.bulk_query_results),
            Route(f"{d}/jobs/ingest", ("GET", "POST"), "bulk", self.bulk_ingest_root),
            Route(f"{d}/jobs/ingest/<job_id>", ("GET", "PATCH", "DELETE"), "bulk", self.bulk_ingest_job),
            Route(f"{d}/jobs/ingest/<job_id>/batches", ("PUT",), "bulk", self.bulk_ingest_upload),
            Route(f"{d}/jobs/ingest/<job_id>/<kind>", g, "bulk", self.bulk_ingest_results),
        ]

    # -- helpers ---------------------------------------------------------------------------

    def _object(self, name: str, *, in_path: bool = True) -> ObjectDef:
        """The visible object ``name``: 404 when named in the URL, INVALID_TYPE in a body."""
        obj = self.org.schema.visible_object(name)
        if obj is None:
            raise not_found() if in_path else invalid_type(name)
        return obj

    def _tx(self) -> AbstractContextManager[Any]:
        return self.org.transaction()

    def _run_soql(self, soql: str, version: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        compiled = self._compile(soql, include_deleted=include_deleted)
        cursor = self.org.open_cursor(compiled.sql, compiled.params)
        try:
            rows = self.org.fetch_cursor(cursor.id, 0, max(cursor.total, 1))
        finally:
            self.org.close_cursor(cursor.id)
        return compiled.render_json_rows(rows, version)

    def _compile(self, soql: str, *, include_deleted: bool) -> CompiledQuery:
        return compile_query(soql, self.org.schema, include_deleted=include_deleted, now_ms=self.org.clock.now_ms())

    def _select_list(self, obj: ObjectDef, fields_param: str | None) -> str:
        if fields_param:
            names = [n.strip() for n in fields_param.split(",") if n.strip()]
            if not names:
                raise ApiError(400, "MALFORMED_QUERY", "fields must not be empty")
            for name in names:
                if not _FIELD_NAME_RE.fullmatch(name):
                    raise ApiError(400, "INVALID_FIELD", f"No such column '{name}' on entity '{obj.name}'")
            return ", ".join(names)
        return ", ".join(f.name for f in self.org.schema.visible_fields(obj))

    def _normalize_id(self, obj: ObjectDef, record_id: str) -> str | None:
        rid = ids.normalize(record_id)
        if rid is None or rid[:3] != obj.key_prefix:
            return None
        return rid

    def _record_url(self, version: str, obj: str, record_id: str) -> str:
        return f"/services/data/v{version}/sobjects/{obj}/{record_id}"

    # -- versions, resources, limits ----------------------------------------------------------

    def versions(self, call: Call) -> Response:
        out = [
            {"label": version_label(f"{v}.0"), "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
            for v in range(31, 63)
        ]
        return json_response(out)

    def resources(self, call: Call) -> Response:
        b = call.base
        names = ("sobjects", "query", "queryAll", "limits", "composite", "jobs/query", "jobs/ingest")
        return json_response({n: f"{b}/{n}" for n in names})

    def limits(self, call: Call) -> Response:
        maximum = self.app.daily_limit
        used = self.app.counter.used()
        body = {
            "DailyApiRequests": {"Max": maximum, "Remaining": max(0, maximum - used)},
            "DailyBulkApiBatches": {
                "Max": self.app.bulk1.daily_batch_limit,
                "Remaining": max(0, self.app.bulk1.daily_batch_limit - self.app.bulk1.batches_used()),
            },
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
            "DailyDurableStreamingApiEvents": {"Max": 10000, "Remaining": 10000},
            "DataStorageMB": {"Max": 1024, "Remaining": 1024},
        }
        return json_response(body)

    # -- describe ---------------------------------------------------------------------------

    def _object_flags(self, obj: ObjectDef, version: str) -> dict[str, Any]:
        b = f"/services/data/v{version}/sobjects/{obj.name}"
        return {
            "activateable": False,
            "associateEntityType": None,
            "associateParentEntity": None,
            "createable": obj.createable,
            "custom": obj.custom,
            "customSetting": False,
            "deepCloneable": False,
            "deletable": obj.deletable,
            "deprecatedAndHidden": False,
            "feedEnabled": obj.feed_enabled,
            "hasSubtypes": False,
            "isInterface": False,
            "isSubtype": False,
            "keyPrefix": obj.key_prefix,
            "label": obj.label or obj.name,
            "labelPlural": obj.label_plural or (obj.label or obj.name) + "s",
            "layoutable": obj.layoutable,
            "mergeable": obj.mergeable,
            "mruEnabled": True,
            "name": obj.name,
            "queryable": obj.queryable,
            "replicateable": obj.replicateable,
            "retrieveable": obj.retrieveable,
            "searchable": obj.searchable,
            "triggerable": obj.triggerable,
            "undeletable": obj.undeletable,
            "updateable": obj.updateable,
            "urls": {
                "sobject": b,
                "describe": f"{b}/describe",
                "rowTemplate": f"{b}/{{ID}}",
            },
        }

    def describe_global(self, call: Call) -> Response:
        schema = self.org.schema
        modified_s = self._metadata_modified_s()
        if self._not_modified(call, modified_s):
            return Response(status=304)
        objs = [o for o in schema.objects.values() if schema.visible_object(o.name) is not None]
        body = {
            "encoding": "UTF-8",
            "maxBatchSize": 200,
            "sobjects": [self._object_flags(o, call.version) for o in sorted(objs, key=lambda o: o.name)],
        }
        return json_response(body, headers={"Last-Modified": _http_date(modified_s)})

    def _field(self, obj: ObjectDef, f: FieldDef) -> dict[str, Any]:
        schema = self.org.schema
        t = f.type
        textual = t in ("string", "textarea", "email", "phone", "url", "picklist", "multipicklist", "combobox")
        filterable = not f.is_compound and t not in ("textarea",)
        sortable = filterable and t != "multipicklist"
        groupable = sortable and t not in ("double", "currency", "percent", "datetime")
        return {
            "aggregatable": sortable,
            "autoNumber": False,
            "byteLength": f.length * 3 if textual or t in ("id", "reference") else 0,
            "calculated": f.calculated,
            "calculatedFormula": f.calculated_formula,
            "cascadeDelete": False,
            "caseSensitive": False,
            "compoundFieldName": f.compound_field_name,
            "createable": schema.field_writable(obj, f, create=True),
            "custom": f.custom,
            "defaultValue": f.default_value if not isinstance(f.default_value, (dict, list)) else None,
            "defaultedOnCreate": f.defaulted_on_create,
            "dependentPicklist": False,
            "deprecatedAndHidden": False,
            "digits": f.precision if t in INT_TYPES else 0,
            "encrypted": t == "encryptedstring",
            "externalId": f.external_id,
            "filterable": filterable,
            "groupable": groupable,
            "htmlFormatted": False,
            "idLookup": f.id_lookup,
            "label": f.label or f.name,
            "length": f.length,
            "name": f.name,
            "nameField": f.name == "Name",
            "namePointing": f.polymorphic,
            "nillable": f.nillable,
            "permissionable": f.nillable and not f.calculated and f.custom,
            "picklistValues": [
                {"active": True, "defaultValue": v == f.default_value, "label": v, "validFor": None, "value": v}
                for v in f.picklist_values
            ],
            "polymorphicForeignKey": f.polymorphic,
            "precision": f.precision,
            "referenceTo": list(f.reference_to),
            "relationshipName": f.relationship_name,
            "restrictedPicklist": f.restricted_picklist,
            "scale": f.scale,
            "soapType": f.soap_type,
            "sortable": sortable,
            "type": t,
            "unique": f.unique,
            "updateable": schema.field_writable(obj, f, create=False),
        }

    def describe(self, call: Call) -> Response:
        obj = self._object(call.args["sobject"])
        schema = self.org.schema
        modified_s = self._metadata_modified_s()
        if self._not_modified(call, modified_s):
            return Response(status=304)
        children = []
        for other in schema.objects.values():
            if schema.visible_object(other.name) is None:
                continue
            for f in schema.visible_fields(other):
                if f.type == "reference" and obj.name in f.reference_to:
                    children.append(
                        {
                            "cascadeDelete": (other.name, f.name) in obj.cascade_delete,
                            "childSObject": other.name,
                            "deprecatedAndHidden": False,
                            "field": f.name,
                            "relationshipName": None,
                        }
                    )
        body = self._object_flags(obj, call.version)
        body.update(
            {
                "childRelationships": children,
                "fields": [self._field(obj, f) for f in schema.visible_fields(obj)],
                "recordTypeInfos": [],
                "supportedScopes": [{"label": "All " + (obj.label_plural or obj.name), "name": "everything"}],
            }
        )
        return json_response(body, headers={"Last-Modified": _http_date(modified_s)})

    def _metadata_modified_s(self) -> int:
        """Whole seconds of the last schema/profile change (org creation when none)."""
        return (self.org.schema.modified_ms or self.org.created_ms) // 1000

    @staticmethod
    def _not_modified(call: Call, modified_s: int) -> bool:
        """``If-Modified-Since`` (RFC 1123) is at or after the last metadata change."""
        since = call.request.headers.get("If-Modified-Since")
        when = parse_date(since) if since else None
        return when is not None and modified_s * 1000 <= datetime_to_ms(when.astimezone(dt.UTC))

    def sobject_root(self, call: Call) -> Response:
        obj = self._object(call.args["sobject"])
        if call.request.method == "POST":
            return self._create(call, obj)
        recent = (
            self._run_soql(f"SELECT Id FROM {obj.name} ORDER BY SystemModstamp DESC LIMIT 10", call.version)
            if obj.field("SystemModstamp") is not None
            else []
        )
        return json_response({"objectDescribe": self._object_flags(obj, call.version), "recentItems": recent})

    # -- query ------------------------------------------------------------------------------

    def _batch_size(self, call: Call) -> int | None:
        m = _BATCH_RE.search(call.request.headers.get("Sforce-Query-Options", ""))
        if not m:
            return None
        return min(2000, max(200, int(m.group(1))))

    def query(self, call: Call) -> Response:
        return self._query(call, include_deleted=False)

    def query_all(self, call: Call) -> Response:
        return self._query(call, include_deleted=True)

    def _query(self, call: Call, *, include_deleted: bool) -> Response:
        soql = call.request.args.get("q")
        if soql is None or not soql.strip():
            raise ApiError(400, "MALFORMED_QUERY", "A query string must be provided with the q parameter.")
        compiled = self._compile(soql, include_deleted=include_deleted)
        cursor = self.org.open_cursor(compiled.sql, compiled.params)
        if compiled.count_only:
            try:
                rows = self.org.fetch_cursor(cursor.id, 0, 1)
            finally:
                self.org.close_cursor(cursor.id)
            total = int(rows[0][0]) if rows else 0
            return json_response({"totalSize": total, "done": True, "records": []})
        state = _QueryState(compiled, cursor.total, self._batch_size(call) or 2000)
        with self._qlock:
            self._queries[str(cursor.id)] = state
            self._opened += 1
            sweep = self._opened % 100 == 0
        if sweep:
            self._forget_expired_cursors()
        return self._page(call, str(cursor.id), 0, state)

    def _forget_expired_cursors(self) -> None:
        with self._qlock:
            known = list(self._queries)
        for cursor_id in known:
            try:
                self.org.cursor(cursor_id)
            except ApiError:
                with self._qlock:
                    self._queries.pop(cursor_id, None)

    def query_more(self, call: Call) -> Response:
        locator = call.args["locator"]
        cursor_id, sep, offset_s = locator.rpartition("-")
        with self._qlock:
            state = self._queries.get(cursor_id) if sep and offset_s.isdigit() else None
        if state is None:
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(call, cursor_id, int(offset_s), state)

    def _page(self, call: Call, cursor_id: str, offset: int, state: _QueryState) -> Response:
        batch = self._batch_size(call) or state.batch_size
        records, count = self._page_records(cursor_id, offset, batch, state, call.version)
        nxt = offset + count
        done = nxt >= state.total or not count
        head: dict[str, Any] = {"totalSize": state.total, "done": done}
        if not done:
            head["nextRecordsUrl"] = f"{call.base}/query/{cursor_id}-{nxt}"
        if done and offset == 0:
            # the whole result fit in one page: no locator was ever handed out
            self.org.close_cursor(cursor_id)
            with self._qlock:
                self._queries.pop(cursor_id, None)
        # the records are JSON text already (rendered by SQLite): splice them into the body
        text = json.dumps(head, separators=(",", ":"))[:-1] + ',"records":[' + ",".join(records) + "]}"
        return raw_json_response(text)

    def _page_records(
        self, cursor_id: str, offset: int, batch: int, state: _QueryState, version: str
    ) -> tuple[list[str], int]:
        """JSON texts of the page's records (rendered in SQL; per-row Python fallback)."""
        if offset >= state.total:
            return [], 0
        compiled = state.compiled
        select = compiled.render_sql_json()
        if select is None:
            rows = self.org.fetch_cursor(cursor_id, offset, batch)
            dumps = json.dumps
            return [dumps(r, separators=(",", ":")) for r in compiled.render_json_rows(rows, version)], len(rows)
        rows = self.org.fetch_cursor_select(cursor_id, select, json_params(version), offset, batch)
        if not any(row[1] for row in rows):
            if len(select) == 2:
                return [row[2] for row in rows], len(rows)
            return [join_json_parts(row[2:]) for row in rows], len(rows)
        raw = self.org.fetch_cursor(cursor_id, offset, len(rows))  # flagged rows: Python renders them
        out: list[str] = []
        for (_rowid, flag, *parts), raw_row in zip(rows, raw, strict=True):
            if flag:
                out.append(json.dumps(compiled.render_json(raw_row, version), separators=(",", ":")))
            else:
                out.append(join_json_parts(tuple(parts)))
        return out, len(out)

    # -- replication ------------------------------------------------------------------------

    def _window(self, call: Call) -> tuple[ObjectDef, int, int]:
        obj = self._object(call.args["sobject"])
        out = []
        for name in ("start", "end"):
            raw = call.request.args.get(name)
            if not raw:
                raise ApiError(400, "MISSING_ARGUMENT", f"Missing required parameter: {name}")
            try:
                out.append(parse_datetime_ms(raw.replace(" ", "+")))
            except ValueError as exc:
                raise ApiError(
                    400, "INVALID_REPLICATION_DATE", f"Invalid date format for parameter {name}: {raw}"
                ) from exc
        return obj, out[0], out[1]

    def updated(self, call: Call) -> Response:
        obj, start, end = self._window(call)
        return json_response(self.org.get_updated(obj.name, start, end))

    def deleted(self, call: Call) -> Response:
        obj, start, end = self._window(call)
        return json_response(self.org.get_deleted(obj.name, start, end))

    # -- single records ---------------------------------------------------------------------

    @staticmethod
    def _values(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object of field values.")
        return {k: v for k, v in body.items() if k != "attributes"}

    def _create(self, call: Call, obj: ObjectDef) -> Response:
        values = self._values(call.json())
        rid = self.org.create(obj.name, values, origin=call.call_origin)
        headers = {"Location": self._record_url(call.version, obj.name, rid)}
        return json_response({"id": rid, "success": True, "errors": []}, 201, headers)

    def _get_one(self, call: Call, obj: ObjectDef, rid: str) -> Response:
        select = self._select_list(obj, call.request.args.get("fields"))
        recs = self._run_soql(f"SELECT {select} FROM {obj.name} WHERE Id = '{rid}'", call.version)
        if not recs:
            if self.org.get(obj.name, rid, include_deleted=True) is not None:
                raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
            raise not_found()
        return json_response(recs[0])

    def record(self, call: Call) -> Response:
        obj = self._object(call.args["sobject"])
        raw_id = call.args["record_id"]
        rid = self._normalize_id(obj, raw_id)
        if rid is None:
            if call.request.method == "GET" and obj.field(raw_id) is None:
                raise not_found(f"Provided external ID field does not exist or is not accessible: {raw_id}")
            raise not_found()
        method = call.request.method
        if method == "GET":
            return self._get_one(call, obj, rid)
        if method == "PATCH":
            values = self._values(call.json())
            self.org.update(obj.name, rid, values, origin=call.call_origin)
            return no_content()
        self.org.delete(obj.name, rid, origin=call.call_origin)
        return no_content()

    def _ext_field(self, obj: ObjectDef, name: str) -> FieldDef:
        f = self.org.schema.visible_field(obj, name)
        if f is None or not (f.external_id or f.id_lookup or f.name == "Id"):
            raise not_found(f"Provided external ID field does not exist or is not accessible: {name}")
        return f

    def by_external_id(self, call: Call) -> Response:
        obj = self._object(call.args["sobject"])
        f = self._ext_field(obj, call.args["field"])
        value = call.args["value"]
        if call.request.method == "GET":
            select = self._select_list(obj, call.request.args.get("fields"))
            where = f"{f.name} = {soql_literal(f, value)}"
            recs = self._run_soql(f"SELECT {select} FROM {obj.name} WHERE {where}", call.version)
            if not recs:
                raise not_found()
            if len(recs) > 1:
                urls = [self._record_url(call.version, obj.name, r["Id"]) for r in recs if "Id" in r]
                return json_response(urls, 300)
            return json_response(recs[0])
        values = self._values(call.json())
        try:
            rid, created = self.org.upsert(obj.name, f.name, value, values, origin=call.call_origin)
        except MultipleMatches as err:
            return json_response([self._record_url(call.version, obj.name, i) for i in err.ids], 300)
        body = {"id": rid, "success": True, "errors": [], "created": created}
        if created:
            headers = {"Location": self._record_url(call.version, obj.name, rid)}
            return json_response(body, 201, headers)
        if float(call.version) < 46.0:
            return no_content()
        return json_response(body, 200)

    # -- sObject Collections ---------------------------------------------------------------

    def _collection_body(self, call: Call) -> tuple[list[Any], bool]:
        body = call.json()
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be an object with a records array.")
        records = body["records"]
        if len(records) > MAX_COLLECTION:
            raise ApiError(
                400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call"
            )
        return records, bool(body.get("allOrNone", False))

    def _run_batch(self, ops: list[Any], all_or_none: bool) -> list[dict[str, Any]]:
        """Run per-record operations (callables returning a result dict) in request order."""
        results: list[dict[str, Any] | DmlError] = []

        def one(op: Any) -> dict[str, Any] | DmlError:
            try:
                with self._tx():
                    return dict(op())
            except DmlError as err:
                return err
            except ApiError as err:
                return DmlError(err.error_code, err.message, err.fields)

        if not all_or_none:
            results = [one(op) for op in ops]
        else:
            try:
                with self.org.lock, self._tx():
                    results = [one(op) for op in ops]
                    if any(isinstance(r, DmlError) for r in results):
                        raise _Rollback
            except _Rollback:
                results = [r if isinstance(r, DmlError) else ROLLED_BACK for r in results]
        out = []
        for r in results:
            if isinstance(r, DmlError):
                out.append({"success": False, "errors": [r.entry()]})
            else:
                out.append(r)
        return out

    def _record_type(self, rec: Any) -> str:
        if not isinstance(rec, dict):
            raise DmlError("INVALID_INPUT", "each record must be a JSON object")
        attrs = rec.get("attributes")
        name = attrs.get("type") if isinstance(attrs, dict) else None
        if not name:
            raise DmlError("INVALID_TYPE", "Must send a concrete entity type.")
        return self._object(str(name), in_path=False).name

    def collection(self, call: Call) -> Response:
        method = call.request.method
        origin = call.call_origin
        if method == "DELETE":
            raw = call.request.args.get("ids", "")
            id_list = [i.strip() for i in raw.split(",") if i.strip()]
            if not id_list:
                raise ApiError(400, "MISSING_ARGUMENT", "ids parameter is required")
            if len(id_list) > MAX_COLLECTION:
                raise ApiError(
                    400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call"
                )
            all_or_none = call.request.args.get("allOrNone", "false").lower() == "true"
            return json_response(self._run_batch([self._delete_op(i, origin) for i in id_list], all_or_none))
        records, all_or_none = self._collection_body(call)
        make = self._create_op if method == "POST" else self._update_op
        return json_response(self._run_batch([make(rec, origin) for rec in records], all_or_none))

    def _create_op(self, rec: Any, origin: CallOrigin) -> Any:
        def op() -> dict[str, Any]:
            name = self._record_type(rec)
            if any(k.lower() == "id" for k in rec):
                raise DmlError("INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
            rid = self.org.create(name, self._values(rec), origin=origin)
            return {"id": rid, "success": True, "errors": []}

        return op

    def _update_op(self, rec: Any, origin: CallOrigin) -> Any:
        def op() -> dict[str, Any]:
            name = self._record_type(rec)
            raw = next((v for k, v in rec.items() if k.lower() == "id"), None)
            if not raw:
                raise DmlError("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
            rid = ids.normalize(str(raw))
            if rid is None:
                raise DmlError("MALFORMED_ID", f"Id in update: {raw}", ["Id"])
            values = {k: v for k, v in self._values(rec).items() if k.lower() != "id"}
            self.org.update(name, rid, values, origin=origin)
            return {"id": rid, "success": True, "errors": []}

        return op

    def _delete_op(self, raw: str, origin: CallOrigin) -> Any:
        def op() -> dict[str, Any]:
            rid = ids.normalize(raw)
            obj = self.org.schema.object_for_id(rid) if rid else None
            if rid is None or obj is None or self.org.schema.visible_object(obj.name) is None:
                raise DmlError("MALFORMED_ID", f"malformed id {raw}")
            self.org.delete(obj.name, rid, origin=origin)
            return {"id": rid, "success": True, "errors": []}

        return op

    def collection_upsert(self, call: Call) -> Response:
        obj = self._object(call.args["sobject"])
        f = self._ext_field(obj, call.args["field"])
        records, all_or_none = self._collection_body(call)
        origin = call.call_origin

        def make(rec: Any) -> Any:
            def op() -> dict[str, Any]:
                name = self._record_type(rec)
                if name != obj.name:
                    raise DmlError("INVALID_TYPE", f"all records must be of type {obj.name}")
                value = next((v for k, v in rec.items() if k.lower() == f.name.lower()), None)
                if value is None or value == "":
                    raise DmlError("MISSING_ARGUMENT", f"{f.name} not specified", [f.name])
                values = {k: v for k, v in self._values(rec).items() if k.lower() != f.name.lower()}
                rid, created = self.org.upsert(obj.name, f.name, str(value), values, origin=origin)
                return {"id": rid, "success": True, "errors": [], "created": created}

            return op

        return json_response(self._run_batch([make(rec) for rec in records], all_or_none))

    def collection_retrieve(self, call: Call) -> Response:
        obj = self._object(call.args["sobject"])
        if call.request.method == "GET":
            raw_ids = [i for i in call.request.args.get("ids", "").split(",") if i.strip()]
            fields = call.request.args.get("fields")
            if len(raw_ids) > MAX_RETRIEVE_GET:
                raise ApiError(414, "URI_TOO_LONG", "The request URI is too long; use POST to retrieve many records.")
        else:
            body = call.json()
            if not isinstance(body, dict) or not isinstance(body.get("ids"), list):
                raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be an object with an ids array.")
            raw_ids = [str(i) for i in body["ids"]]
            fl = body.get("fields")
            fields = ",".join(str(x) for x in fl) if isinstance(fl, list) else None
            if len(raw_ids) > MAX_RETRIEVE_POST:
                raise ApiError(400, "EXCEEDED_ID_LIMIT", "cannot retrieve more than 2000 records in one call")
        if not raw_ids:
            raise ApiError(400, "MISSING_ARGUMENT", "ids parameter is required")
        if not fields:
            raise ApiError(400, "MISSING_ARGUMENT", "fields parameter is required")
        select = self._select_list(obj, fields)
        norm = [self._normalize_id(obj, r.strip()) for r in raw_ids]
        valid = sorted({n for n in norm if n})
        found: dict[str, dict[str, Any]] = {}
        if valid:
            id_list = ", ".join(f"'{i}'" for i in valid)
            # the Id column is needed to map rows back; add it when not selected
            extra = "" if any(s.strip().lower() == "id" for s in select.split(",")) else "Id, "
            for rec in self._run_soql(f"SELECT {extra}{select} FROM {obj.name} WHERE Id IN ({id_list})", call.version):
                rid = str(rec.get("Id"))
                if extra:
                    rec.pop("Id", None)
                found[rid] = rec
        return json_response([found.get(n) if n else None for n in norm])

    # -- Composite ---------------------------------------------------------------------------

    def composite(self, call: Call) -> Response:
        body = call.json()
        subs = body.get("compositeRequest") if isinstance(body, dict) else None
        if not isinstance(subs, list) or not subs:
            raise ApiError(400, "JSON_PARSER_ERROR", "compositeRequest must be a non-empty array")
        if len(subs) > MAX_COMPOSITE:
            raise ApiError(
                400, "INVALID_API_INPUT", f"Composite requests can contain up to {MAX_COMPOSITE} subrequests"
            )
        queries = 0
        refs: set[str] = set()
        for sub in subs:
            if not isinstance(sub, dict) or not sub.get("method") or not sub.get("url") or not sub.get("referenceId"):
                raise ApiError(400, "INVALID_API_INPUT", "each subrequest needs method, url and referenceId")
            ref = str(sub["referenceId"])
            if ref in refs:
                raise ApiError(400, "INVALID_API_INPUT", f"Duplicate referenceId provided in the request: {ref}")
            refs.add(ref)
            path = str(sub["url"]).split("?")[0].rstrip("/")
            if path.endswith("/composite"):
                raise ApiError(400, "INVALID_API_INPUT", "A composite request cannot contain another composite request")
            if re.search(r"/(query|queryAll)(/|$)|/composite/sobjects", path):
                queries += 1
        if queries > MAX_COMPOSITE_QUERIES:
            raise ApiError(
                400,
                "INVALID_API_INPUT",
                f"Composite requests can contain up to {MAX_COMPOSITE_QUERIES} query or sObject Collections operations",
            )
        all_or_none = bool(body.get("allOrNone", False))
        results: list[dict[str, Any]] = []
        if not all_or_none:
            self._composite_run(call, subs, results, halt_on_error=False)
        else:
            try:
                with self.org.lock, self._tx():
                    if self._composite_run(call, subs, results, halt_on_error=True):
                        raise _Rollback
            except _Rollback:
                halted = {"errorCode": "PROCESSING_HALTED", "message": HALTED_MESSAGE}
                for r in results:
                    if r["httpStatusCode"] < 400:
                        r.update({"body": [halted], "httpHeaders": {}, "httpStatusCode": 400})
                done = {r["referenceId"] for r in results}
                for sub in subs:
                    if str(sub["referenceId"]) not in done:
                        results.append(
                            {
                                "body": [halted],
                                "httpHeaders": {},
                                "httpStatusCode": 400,
                                "referenceId": str(sub["referenceId"]),
                            }
                        )
        return json_response({"compositeResponse": results})

    def _composite_run(
        self, call: Call, subs: list[dict[str, Any]], results: list[dict[str, Any]], *, halt_on_error: bool
    ) -> bool:
        """Run subrequests in order; True when one failed (and halting was asked)."""
        bodies: dict[str, Any] = {}
        for sub in subs:
            ref = str(sub["referenceId"])
            try:
                url = self._resolve(str(sub["url"]), bodies, in_url=True)
                payload = self._resolve(sub.get("body"), bodies, in_url=False)
            except ApiError as err:
                results.append({"body": err.body(), "httpHeaders": {}, "httpStatusCode": 400, "referenceId": ref})
                if halt_on_error:
                    return True
                continue
            sub_headers = sub.get("httpHeaders")
            resp = self.app.dispatch_internal(
                call.request, str(sub["method"]), url, payload, sub_headers if isinstance(sub_headers, dict) else None
            )
            data = resp.get_data()
            parsed = json_loads_or_none(data)
            headers = {k: v for k, v in resp.headers.items() if k.lower() in ("location", "last-modified", "etag")}
            results.append(
                {"body": parsed, "httpHeaders": headers, "httpStatusCode": resp.status_code, "referenceId": ref}
            )
            if resp.status_code < 400:
                bodies[ref] = parsed
            elif halt_on_error:
                return True
        return False

    def _resolve(self, value: Any, bodies: dict[str, Any], *, in_url: bool) -> Any:
        if isinstance(value, dict):
            return {k: self._resolve(v, bodies, in_url=in_url) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve(v, bodies, in_url=in_url) for v in value]
        if not isinstance(value, str) or "@{" not in value:
            return value
        whole = _REF_RE.fullmatch(value)
        if whole and not in_url:
            return self._lookup(whole.group(1), whole.group(2), bodies)
        return _REF_RE.sub(lambda m: str(self._lookup(m.group(1), m.group(2), bodies)), value)

    @staticmethod
    def _lookup(ref: str, path: str, bodies: dict[str, Any]) -> Any:
        if ref not in bodies:
            raise ApiError(
                400,
                "PROCESSING_HALTED",
                f"Invalid reference specified. No value for {ref}{path} found in {ref}. "
                f"Provided referenceId ('{ref}') must be of a prior, successful subrequest.",
            )
        cur: Any = bodies[ref]
        for m in _PATH_PART_RE.finditer(path):
            key, index = m.group(1), m.group(2)
            if key is not None and isinstance(cur, dict) and key in cur:
                cur = cur[key]
            elif index is not None and isinstance(cur, list) and int(index) < len(cur):
                cur = cur[int(index)]
            else:
                raise ApiError(
                    400, "PROCESSING_HALTED", f"Invalid reference specified. No value for {ref}{path} found in {ref}."
                )
        return cur

    # -- Bulk API 2.0 -----------------------------------------------------------------------

    def bulk_query_root(self, call: Call) -> Response:
        if call.request.method == "POST":
            return json_response(self.app.bulk.create_query_job(call.json(), call.version))
        return json_response(self.app.bulk.list_query_jobs(call.version))

    def bulk_query_job(self, call: Call) -> Response:
        bulk = self.app.bulk
        return _bulk_job_resource(call, bulk.get_query_job, bulk.abort_query_job, bulk.delete_query_job)

    def bulk_query_results(self, call: Call) -> Response:
        args = call.request.args
        max_records = args.get("maxRecords")
        if max_records is not None and not max_records.isdigit():
            raise ApiError(400, "INVALIDPARAMETERVALUE", f"Invalid maxRecords value: {max_records}")
        gzip = "gzip" in call.request.headers.get("Accept-Encoding", "").lower()
        result = self.app.bulk.query_results(
            call.args["job_id"],
            call.version,
            locator=args.get("locator") or None,
            max_records=int(max_records) if max_records else None,
            gzip=gzip,
        )
        return _stream(result.body, result.headers)

    def bulk_ingest_root(self, call: Call) -> Response:
        if call.request.method == "GET":
            return json_response(self.app.bulk.list_ingest_jobs(call.version))
        return json_response(self.app.bulk.create_ingest_job(call.json(), call.version, client=call.origin))

    def bulk_ingest_job(self, call: Call) -> Response:
        bulk = self.app.bulk
        return _bulk_job_resource(call, bulk.get_ingest_job, bulk.patch_ingest_job, bulk.delete_ingest_job)

    def bulk_ingest_upload(self, call: Call) -> Response:
        self.app.bulk.upload_ingest_data(
            call.args["job_id"], call.request.get_data(), call.request.headers.get("Content-Type", "")
        )
        return Response(status=201)

    def bulk_ingest_results(self, call: Call) -> Response:
        kind = call.args["kind"]  # simple-salesforce asks for unprocessedRecords; BulkService matches any case
        result = self.app.bulk.ingest_results(call.args["job_id"], kind, call.version)
        return _stream(result.body, result.headers)


def _http_date(epoch_s: int) -> str:
    return http_date(dt.datetime.fromtimestamp(epoch_s, dt.UTC))


def _bulk_job_resource(
    call: Call,
    get: Callable[[str, str], dict[str, Any]],
    patch: Callable[[str, dict[str, Any], str], dict[str, Any]],
    delete: Callable[[str, str], None],
) -> Response:
    """``/jobs/query|ingest/<id>``: GET the job, PATCH its state, DELETE it."""
    job_id = call.args["job_id"]
    method = call.request.method
    if method == "GET":
        return json_response(get(job_id, call.version))
    if method == "PATCH":
        return json_response(patch(job_id, call.json(), call.version))
    delete(job_id, call.version)
    return no_content()


def _stream(body: Iterator[bytes], headers: dict[str, str]) -> Response:
    resp = Response(body, status=200, direct_passthrough=True, content_type="text/csv; charset=UTF-8")
    for k, v in headers.items():
        resp.headers[k] = v
    return resp


def json_loads_or_none(data: bytes) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")
