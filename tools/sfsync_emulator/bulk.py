"""Bulk API 2.0 of the emulated org: query jobs (spec §5.1-§5.4) and ingest jobs (§5.6).

``BulkService`` holds the jobs of one :class:`~sfsync_emulator.store.Org`; the HTTP layer
(:mod:`sfsync_emulator.server`) routes ``/services/data/vXX.X/jobs/...`` to it and turns the
:class:`~sfsync_emulator.errors.ApiError` it raises into Salesforce's JSON error arrays.

Job states follow the org's virtual clock (:class:`JobTiming`) and are advanced lazily, when a
job is read: a query job is ``UploadComplete`` when created, ``InProgress`` from
``in_progress_after_s`` and terminal from ``complete_after_s`` (both measured from creation);
an ingest job is ``Open`` until the client closes it, and the same two delays then run from the
close.  The query snapshot (``Org.open_cursor``) is taken when the job starts processing, and an
ingest job's rows are applied (Org DML, ``as_api=True``, CDC ``changeOrigin``
``com/salesforce/api/bulkapi/<ver>`` plus the creating request's ``Sforce-Call-Options`` client)
at the same point.  With the default timing (0 s, 0 s) a job is complete at its first poll.

Result sets are streamed: the snapshot also stores every row's CSV line, rendered once by SQLite
when the job processes (``CompiledQuery.render_sql_csv``; a row SQL cannot render exactly is
flagged and rendered in Python when read), and reading results streams those lines in chunks of
about 1 MB (optionally through a streaming gzip compressor, stored blocks by default); a result
set is never built whole in memory.  Locators are the base64 text of the next row offset, as on real orgs since v49
(``MTAwMDA`` = 10000), hence stable and re-fetchable while the job exists.  When the client sends
no ``maxRecords``, a set holds at most ``default_max_records`` rows (100,000 by default; the real
server picks a size-based default that clients cannot rely on either).

Choices where the real wire format is not documented (spec §11): error codes ``INVALIDJOB``
(bad job definition), ``INVALIDJOBSTATE`` (operation not allowed in the job's state),
``INVALID_LOCATOR`` (locator that does not belong to the job), ``JSON_PARSER_ERROR`` (unknown
request key), ``API_VERSION_MISMATCH`` (the 409 for results read with another API version); an
ingest job closed without data ends ``Failed``.  The 412 ``JOB_NOT_COMPLETE`` body is verbatim.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import re
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .cdc import CallOrigin
from .errors import ApiError, DmlError, not_found
from .faults import claim_bulk_query_refusal
from .ids import IdMinter
from .schema import ObjectDef, format_rest_datetime
from .soql import compile_query

if TYPE_CHECKING:
    from .soql import CompiledQuery
    from .store import Cursor, Org

JOB_KEY_PREFIX = "750"

DELIMITERS: dict[str, str] = {
    "BACKQUOTE": "`",
    "CARET": "^",
    "COMMA": ",",
    "PIPE": "|",
    "SEMICOLON": ";",
    "TAB": "\t",
}
LINE_ENDINGS: dict[str, str] = {"LF": "\n", "CRLF": "\r\n"}
QUERY_OPERATIONS = ("query", "queryAll")
INGEST_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
MIN_QUERY_API_VERSION = 47.0
MIN_INGEST_API_VERSION = 41.0
DEFAULT_MAX_RECORDS = 100_000
RESULTS_LIFESPAN_MS = 7 * 24 * 3600 * 1000  # terminal jobs are deleted after 7 days (§5.5)
MAX_UPLOAD_BYTES = 150_000_000  # §5.5: 150 MB per job data file
CSV_CONTENT_TYPE = "text/csv; charset=UTF-8"
NULL_MARKER = "#N/A"  # ingest: set the field to null (§5.6)
FLUSH_CHARS = 1 << 20  # flush the CSV buffer once it holds about 1 MB of text
WRITE_BATCH = 256  # rows encoded between two buffer-size checks
GZIP_LEVEL = 0  # default zlib level of gzip results: stored blocks (see BulkService)
SQL_CHUNK_ROWS = 5000  # rows rendered by SQLite per lock hold while streaming results
DEFAULT_FAILURE_MESSAGE = (
    "InvalidBatch : Failed to process query: QUERY_TIMEOUT: Your query request was running for too long."
)

QUERY_KEYS = frozenset({"operation", "query", "contentType", "columnDelimiter", "lineEnding"})
INGEST_KEYS = frozenset(
    {"object", "operation", "externalIdFieldName", "contentType", "columnDelimiter", "lineEnding", "assignmentRuleId"}
)
TERMINAL_STATES = frozenset({"JobComplete", "Failed", "Aborted"})
DELETABLE_STATES = frozenset({"UploadComplete", "JobComplete", "Failed", "Aborted"})
IngestResultKind = Literal["successfulResults", "failedResults", "unprocessedrecords"]

_VERSION_RE = re.compile(r"^\d{1,3}\.\d$")


@dataclass(frozen=True)
class JobTiming:
    """Virtual seconds from a job's start (query: creation; ingest: close) to each state."""

    in_progress_after_s: float = 0.0
    complete_after_s: float = 0.0

    def __post_init__(self) -> None:
        if self.in_progress_after_s < 0 or self.complete_after_s < self.in_progress_after_s:
            raise ValueError("JobTiming needs 0 <= in_progress_after_s <= complete_after_s")

    @property
    def in_progress_ms(self) -> int:
        return int(self.in_progress_after_s * 1000)

    @property
    def complete_ms(self) -> int:
        return int(self.complete_after_s * 1000)


@dataclass
class BulkResult:
    """A CSV response: headers plus a lazily produced body (iterate it once)."""

    headers: dict[str, str]
    body: Iterator[bytes]


@dataclass
class _Job:
    id: str
    operation: str
    object_name: str
    api_version: str
    column_delimiter: str
    line_ending: str
    created_ms: int
    modstamp_ms: int
    state: str
    error_message: str | None = None
    started_ms: int | None = None  # virtual instant processing started
    finished_ms: int | None = None  # virtual instant the job reached a terminal state

    @property
    def delimiter_char(self) -> str:
        return DELIMITERS[self.column_delimiter]

    @property
    def terminator(self) -> str:
        return LINE_ENDINGS[self.line_ending]

    def processing_ms(self) -> int:
        if self.started_ms is None:
            return 0
        return (self.finished_ms if self.finished_ms is not None else self.modstamp_ms) - self.started_ms


@dataclass
class _QueryJob(_Job):
    compiled: CompiledQuery | None = None
    cursor: Cursor | None = None
    fail_message: str | None = None
    pk_chunking: bool = False
    csv_select: list[str] | None = None  # the snapshot's pre-rendered [flag, line part, ...] columns


@dataclass
class _IngestJob(_Job):
    external_id_field: str | None = None
    origin: CallOrigin = field(default_factory=lambda: CallOrigin("bulkapi"))
    closed_ms: int | None = None
    data: bytes | None = None
    columns: list[str] = field(default_factory=list)
    successes: list[list[str]] = field(default_factory=list)
    failures: list[list[str]] = field(default_factory=list)
    unprocessed: list[list[str]] = field(default_factory=list)
    processed: bool = False


class BulkService:
    """Bulk API 2.0 jobs of one org.  Thread-safe; every method may raise :class:`ApiError`."""

    def __init__(
        self,
        org: Org,
        *,
        job_timing: JobTiming | None = None,
        default_max_records: int = DEFAULT_MAX_RECORDS,
        minter: IdMinter | None = None,
        gzip_level: int = GZIP_LEVEL,
    ) -> None:
        """``gzip_level``: zlib level of gzip-encoded results (``Accept-Encoding: gzip``).  The
        default 0 sends stored deflate blocks -- valid gzip that every client decodes, at memcpy
        speed: on loopback compression only costs CPU.  1-9 compress for real."""
        if default_max_records < 1:
            raise ValueError("default_max_records must be positive")
        if not 0 <= gzip_level <= 9:
            raise ValueError(f"gzip_level must be 0..9, got {gzip_level}")
        self.gzip_level = gzip_level
        self.org = org
        self.timing = job_timing or JobTiming()
        self.default_max_records = default_max_records
        self._minter = minter or IdMinter()
        self._lock = threading.RLock()
        self._query_jobs: dict[str, _QueryJob] = {}
        self._ingest_jobs: dict[str, _IngestJob] = {}
        self._failures: list[str] = []

    @property
    def minter(self) -> IdMinter:
        """The minter of job ids (shared with the Bulk API 1.0 service: one id space for jobs)."""
        return self._minter

    # ------------------------------------------------------------------------------ faults

    def fail_next_jobs(self, n: int, message: str = DEFAULT_FAILURE_MESSAGE) -> None:
        """The next ``n`` query jobs created (Bulk 2.0 query jobs and Bulk 1.0 query batches) end
        ``Failed`` with ``errorMessage`` / ``stateMessage`` = message."""
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            self._failures.extend([message] * n)

    def take_injected_failure(self) -> str | None:
        """Consume one armed ``bulk_job_failed`` failure: its message, or None when none is armed."""
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    # ------------------------------------------------------------------------------ query jobs

    def create_query_job(self, body: dict[str, Any], api_version: str) -> dict[str, Any]:
        version = _check_version(api_version, MIN_QUERY_API_VERSION)
        body = _check_body(body, QUERY_KEYS)
        operation = body.get("operation")
        if operation not in QUERY_OPERATIONS:
            raise _invalid_job(f"InvalidJob : Invalid operation for a query job: {operation}")
        soql = body.get("query")
        if not isinstance(soql, str) or not soql.strip():
            raise _invalid_job("InvalidJob : query is required for a query job")
        csv_format = _check_format(body)
        now = self.org.clock.now_ms()
        compiled = compile_query(soql, self.org.schema, include_deleted=operation == "queryAll", bulk=True, now_ms=now)
        obj = compiled.object
        refusal = claim_bulk_query_refusal(obj.name)  # the bulk_query_refused fault (faults.py)
        if refusal is not None:
            raise refusal
        with self._lock:
            job = _QueryJob(
                **self._new_job(operation, obj.name, version, csv_format, now=now, state="UploadComplete"),
                compiled=compiled,
                fail_message=self.take_injected_failure(),
                pk_chunking=obj.custom,
            )
            self._query_jobs[job.id] = job
            info = self._query_info(job)
            self._advance_query(job)  # a zero delay starts processing (takes the snapshot) now
            return info

    def get_query_job(self, job_id: str, api_version: str) -> dict[str, Any]:
        _check_version(api_version, MIN_QUERY_API_VERSION)
        with self._lock:
            return self._query_info(self._query_job(job_id))

    def list_query_jobs(self, api_version: str) -> dict[str, Any]:
        _check_version(api_version, MIN_QUERY_API_VERSION)
        return self._list_jobs(self._query_jobs, self._query_info)

    def abort_query_job(self, job_id: str, body: dict[str, Any], api_version: str) -> dict[str, Any]:
        _check_version(api_version, MIN_QUERY_API_VERSION)
        body = _check_body(body, frozenset({"state"}))
        if body.get("state") != "Aborted":
            raise _invalid_job(f"InvalidJob : a query job can only be set to Aborted, not {body.get('state')}")
        with self._lock:
            job = self._query_job(job_id)
            if job.state in TERMINAL_STATES:
                raise _invalid_state(job)
            self._finish(job, "Aborted", self.org.clock.now_ms())
            self._close_cursor(job)
            return self._query_info(job)

    def delete_query_job(self, job_id: str, api_version: str) -> None:
        _check_version(api_version, MIN_QUERY_API_VERSION)
        with self._lock:
            job = self._query_job(job_id)
            if job.state not in DELETABLE_STATES:
                raise _invalid_state(job)
            self._close_cursor(job)
            del self._query_jobs[job.id]

    def query_results(
        self,
        job_id: str,
        api_version: str,
        *,
        locator: str | None,
        max_records: int | None,
        gzip: bool,
    ) -> BulkResult:
        _check_version(api_version, MIN_QUERY_API_VERSION)
        if max_records is not None and max_records < 1:
            raise ApiError(400, "INVALIDJOB", f"maxRecords must be a positive integer: {max_records}")
        limit = max_records if max_records is not None else self.default_max_records
        with self._lock:
            job = self._query_job(job_id)
            _check_same_version(job, api_version)
            if job.state != "JobComplete":
                raise _not_complete(job)
            cursor, compiled = job.cursor, job.compiled
            assert cursor is not None and compiled is not None  # JobComplete implies both
            self.org.cursor(cursor.id)  # an expired snapshot fails here (400), not mid-stream
            offset = _decode_locator(locator, cursor.total)
            count = max(0, min(limit, cursor.total - offset))
            next_offset = offset + count
            header = compiled.csv_header()
            delimiter, terminator = job.delimiter_char, job.terminator
            select = job.csv_select or compiled.render_sql_csv(delimiter, nul_check=self.org.nul_text_written)
        headers = {
            "Content-Type": CSV_CONTENT_TYPE,
            "Sforce-Locator": _encode_locator(next_offset) if next_offset < cursor.total else "null",
            "Sforce-NumberOfRecords": str(count),
        }
        body = self.sql_csv_stream(
            cursor.id,
            compiled,
            select=select,
            header=header,
            offset=offset,
            count=count,
            delimiter=delimiter,
            terminator=terminator,
        )
        if gzip:
            headers["Content-Encoding"] = "gzip"
            body = gzip_stream(body, self.gzip_level)
        return BulkResult(headers=headers, body=body)

    def sql_csv_stream(
        self,
        cursor_id: str,
        compiled: CompiledQuery,
        *,
        select: list[str],
        header: list[str],
        offset: int,
        count: int,
        delimiter: str,
        terminator: str,
    ) -> Iterator[bytes]:
        """The result set's CSV from ``select`` (``[flag, line part, ...]`` over the snapshot, see
        :meth:`CompiledQuery.render_sql_csv`), about 1 MB per yielded chunk; the lock is held per
        chunk of rows only.  Flagged rows are rendered in Python."""
        buf = io.StringIO()
        csv.writer(buf, delimiter=delimiter, quoting=csv.QUOTE_ALL, lineterminator=terminator).writerow(header)
        pending = [buf.getvalue()]
        size = len(pending[0])
        pos, end = offset, offset + count
        want = 1000  # rows of the next fetch: sized so that a chunk stays about FLUSH_CHARS
        while pos < end:
            rows = self.org.fetch_cursor_select(cursor_id, select, {}, pos, min(want, end - pos))
            if not rows:
                break
            pos += len(rows)
            if any(row[1] for row in rows):
                raw = self.org.fetch_cursor(cursor_id, pos - len(rows), len(rows))
                text = "".join(
                    _csv_line(compiled, row, raw_row, delimiter, terminator)
                    for row, raw_row in zip(rows, raw, strict=True)
                )
            else:
                join = delimiter.join
                text = terminator.join([row[2] if len(row) == 3 else join(row[2:]) for row in rows]) + terminator
            pending.append(text)
            size += len(text)
            if size >= FLUSH_CHARS:
                yield _encode("".join(pending))
                pending, size = [], 0
            per_row = max(1, len(text) // len(rows))
            want = max(16, min(SQL_CHUNK_ROWS, (FLUSH_CHARS - size) // per_row + 1))
        if pending:
            yield _encode("".join(pending))

    # ------------------------------------------------------------------------------ ingest jobs

    def create_ingest_job(self, body: dict[str, Any], api_version: str, *, client: str | None = None) -> dict[str, Any]:
        """Create an ingest job.  ``client``: the ``Sforce-Call-Options`` client id of the creating
        request; every row's DML carries it (CDC ``changeOrigin`` ``com/salesforce/api/bulkapi/<ver>;client=<id>``)."""
        version = _check_version(api_version, MIN_INGEST_API_VERSION)
        body = _check_body(body, INGEST_KEYS)
        operation = body.get("operation")
        if operation not in INGEST_OPERATIONS:
            raise _invalid_job(f"InvalidJob : Invalid operation for an ingest job: {operation}")
        name = body.get("object")
        if not isinstance(name, str) or not name:
            raise _invalid_job("InvalidJob : object is required for an ingest job")
        obj = self.org.schema.visible_object(name)
        if obj is None:
            raise _invalid_job(f"InvalidJob : Unable to find object: {name}")
        ext_field = None
        if operation == "upsert":
            ext_field = self._external_id_field(obj, body.get("externalIdFieldName"))
        csv_format = _check_format(body)
        now = self.org.clock.now_ms()
        with self._lock:
            job = _IngestJob(
                **self._new_job(operation, obj.name, version, csv_format, now=now, state="Open"),
                external_id_field=ext_field,
                origin=CallOrigin("bulkapi", version, client),
            )
            self._ingest_jobs[job.id] = job
            return self._ingest_info(job)

    def upload_ingest_data(self, job_id: str, data: bytes, content_type: str) -> None:
        mime = content_type.split(";", 1)[0].strip().lower()
        if mime != "text/csv":
            raise ApiError(400, "INVALIDJOB", f"InvalidJob : Unsupported content type for job data: {content_type}")
        if len(data) > MAX_UPLOAD_BYTES:
            raise ApiError(400, "INVALIDJOB", f"InvalidJob : job data exceeds {MAX_UPLOAD_BYTES} bytes")
        with self._lock:
            job = self._ingest_job(job_id)
            if job.state != "Open":
                raise _invalid_state(job)
            if job.data is not None:
                raise ApiError(
                    400,
                    "BULK_API_ERROR",
                    f"Found multiple contents for job: <{job.id}>, please 'Close' / 'Abort' / 'Delete' the "
                    "current Job then create a new Job and make sure you only do 'PUT' once on a given Job.",
                )
            job.data = data
            job.modstamp_ms = self.org.clock.now_ms()

    def patch_ingest_job(self, job_id: str, body: dict[str, Any], api_version: str) -> dict[str, Any]:
        _check_version(api_version, MIN_INGEST_API_VERSION)
        body = _check_body(body, frozenset({"state"}))
        target = body.get("state")
        if target not in ("UploadComplete", "Aborted"):
            raise _invalid_job(f"InvalidJob : an ingest job can be set to UploadComplete or Aborted, not {target}")
        with self._lock:
            job = self._ingest_job(job_id)
            now = self.org.clock.now_ms()
            if target == "UploadComplete":
                if job.state != "Open":
                    raise _invalid_state(job)
                job.state, job.closed_ms, job.modstamp_ms = "UploadComplete", now, now
                info = self._ingest_info(job)
                self._advance_ingest(job)  # a zero delay processes the rows now
                return info
            if job.state in TERMINAL_STATES:
                raise _invalid_state(job)
            if not job.processed:
                job.unprocessed = _parse_rows_lenient(job)
            self._finish(job, "Aborted", now)
            return self._ingest_info(job)

    def get_ingest_job(self, job_id: str, api_version: str) -> dict[str, Any]:
        _check_version(api_version, MIN_INGEST_API_VERSION)
        with self._lock:
            return self._ingest_info(self._ingest_job(job_id))

    def list_ingest_jobs(self, api_version: str) -> dict[str, Any]:
        _check_version(api_version, MIN_INGEST_API_VERSION)
        return self._list_jobs(self._ingest_jobs, self._ingest_info)

    def delete_ingest_job(self, job_id: str, api_version: str) -> None:
        _check_version(api_version, MIN_INGEST_API_VERSION)
        with self._lock:
            job = self._ingest_job(job_id)
            if job.state not in DELETABLE_STATES:
                raise _invalid_state(job)
            del self._ingest_jobs[job.id]

    def ingest_results(self, job_id: str, kind: IngestResultKind | str, api_version: str) -> BulkResult:
        _check_version(api_version, MIN_INGEST_API_VERSION)
        with self._lock:
            job = self._ingest_job(job_id)
            _check_same_version(job, api_version)
            if job.state not in TERMINAL_STATES:
                raise _not_complete(job)
            kind_l = kind.lower()  # real orgs accept any case (simple-salesforce asks for unprocessedRecords)
            if kind_l == "successfulresults":
                header, rows = ["sf__Id", "sf__Created", *job.columns], list(job.successes)
            elif kind_l == "failedresults":
                header, rows = ["sf__Id", "sf__Error", *job.columns], list(job.failures)
            elif kind_l == "unprocessedrecords":
                header, rows = list(job.columns), list(job.unprocessed)
            else:
                raise not_found(f"Unknown ingest result kind: {kind}")
            delimiter, terminator = job.delimiter_char, job.terminator
        body = _csv_stream(header, [rows], _as_list, delimiter, terminator, write_header=bool(header))
        return BulkResult(headers={"Content-Type": CSV_CONTENT_TYPE}, body=body)

    # ------------------------------------------------------------------------------ internals

    def _external_id_field(self, obj: ObjectDef, name: object) -> str:
        if not isinstance(name, str) or not name:
            raise _invalid_job("InvalidJob : External ID was blank for an upsert job")
        f = self.org.schema.visible_field(obj, name)
        if f is None or not (f.name == "Id" or f.external_id or f.id_lookup):
            raise _invalid_job(
                f"InvalidJob : Field name provided, {name} does not match an External ID, Salesforce Id, "
                f"or indexed field for {obj.name}"
            )
        return f.name

    def _new_job(
        self, operation: str, object_name: str, api_version: str, csv_format: tuple[str, str], *, now: int, state: str
    ) -> dict[str, Any]:
        """The fields every new job starts with: a fresh job Id, ``csv_format`` (column delimiter and
        line ending, see :func:`_check_format`), created and modified ``now``."""
        delimiter, line_ending = csv_format
        return {
            "id": self._minter.mint(JOB_KEY_PREFIX),
            "operation": operation,
            "object_name": object_name,
            "api_version": api_version,
            "column_delimiter": delimiter,
            "line_ending": line_ending,
            "created_ms": now,
            "modstamp_ms": now,
            "state": state,
        }

    def _list_jobs(self, jobs: dict[str, Any], info: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            records = [self._list_entry(info(j)) for j in self._live(jobs)]
        return {"done": True, "records": records, "nextRecordsUrl": None}

    def _live(self, jobs: dict[str, Any]) -> list[Any]:
        out = []
        for job_id in list(jobs):
            job = self._lookup(jobs, job_id)
            if job is not None:
                out.append(job)
        return out

    def _lookup(self, jobs: dict[str, Any], job_id: str) -> Any:
        job = jobs.get(job_id)
        if job is None:
            return None
        if isinstance(job, _QueryJob):
            self._advance_query(job)
        else:
            self._advance_ingest(job)
        if job.state in TERMINAL_STATES and self.org.clock.now_ms() - job.modstamp_ms > RESULTS_LIFESPAN_MS:
            if isinstance(job, _QueryJob):
                self._close_cursor(job)
            del jobs[job_id]
            return None
        return job

    def _query_job(self, job_id: str) -> _QueryJob:
        job = self._lookup(self._query_jobs, job_id)
        if job is None:
            raise _job_not_found(job_id)
        assert isinstance(job, _QueryJob)
        return job

    def _ingest_job(self, job_id: str) -> _IngestJob:
        job = self._lookup(self._ingest_jobs, job_id)
        if job is None:
            raise _job_not_found(job_id)
        assert isinstance(job, _IngestJob)
        return job

    def _phase(self, since_ms: int) -> tuple[int | None, int | None]:
        """(start, end) virtual instants reached so far for a job whose clock began at since_ms."""
        now = self.org.clock.now_ms()
        start = since_ms + self.timing.in_progress_ms
        end = since_ms + self.timing.complete_ms
        return (start if now >= start else None, end if now >= end else None)

    def _finish(self, job: _Job, state: str, when_ms: int, message: str | None = None) -> None:
        job.state = state
        job.modstamp_ms = when_ms
        job.finished_ms = when_ms
        if job.started_ms is not None and job.started_ms > when_ms:
            job.started_ms = when_ms
        job.error_message = message

    def _advance_query(self, job: _QueryJob) -> None:
        if job.state in TERMINAL_STATES:
            return
        start, end = self._phase(job.created_ms)
        if start is None:
            return
        if job.started_ms is None:
            job.started_ms = start
            if job.fail_message is None:
                assert job.compiled is not None
                try:
                    # the snapshot also holds each row's CSV line, rendered once by SQLite here, so
                    # that reading the results only streams text (see sql_csv_stream)
                    render = job.compiled.render_sql_csv(job.delimiter_char, nul_check=self.org.nul_text_written)
                    rendered = ", ".join(f"{expr} AS _r{i}" for i, expr in enumerate(render))
                    job.cursor = self.org.open_cursor(
                        f"SELECT *, {rendered} FROM ({job.compiled.sql})",
                        job.compiled.params,
                        ttl_s=RESULTS_LIFESPAN_MS // 1000,
                    )
                    job.csv_select = [f"_r{i}" for i in range(len(render))]
                except ApiError as exc:  # e.g. an injected query timeout
                    job.fail_message = f"InvalidBatch : Failed to process query: {exc.error_code}: {exc.message}"
        if end is None:
            job.state, job.modstamp_ms = "InProgress", start
            return
        if job.fail_message is not None:
            self._finish(job, "Failed", end, job.fail_message)
            self._close_cursor(job)
        else:
            self._finish(job, "JobComplete", end)

    def _advance_ingest(self, job: _IngestJob) -> None:
        if job.state in TERMINAL_STATES or job.closed_ms is None:
            return
        start, end = self._phase(job.closed_ms)
        if start is None:
            return
        if job.started_ms is None:
            job.started_ms = start
            failure = self._process_ingest(job)
            if failure is not None:
                self._finish(job, "Failed", start, failure)
                return
        if end is None:
            job.state, job.modstamp_ms = "InProgress", start
            return
        self._finish(job, "JobComplete", end)

    def _close_cursor(self, job: _QueryJob) -> None:
        if job.cursor is not None:
            self.org.close_cursor(job.cursor.id)
            job.cursor = None

    # ------------------------------------------------------------------------------ ingest processing

    def _process_ingest(self, job: _IngestJob) -> str | None:
        """Apply the uploaded rows through the Org DML; returns a job-level failure message."""
        job.processed = True
        if job.data is None:
            return "InvalidBatch : No data was uploaded for this job"
        try:
            text = job.data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return "InvalidBatch : Unable to parse CSV: the data is not valid UTF-8"
        first_line = text.split("\n", 1)[0]
        crlf = first_line.endswith("\r")
        if "\n" in text and crlf != (job.line_ending == "CRLF"):
            return (
                "ClientInputError : LineEnding is invalid on user data. "
                f"Current LineEnding setting is {job.line_ending}"
            )
        try:
            table = list(csv.reader(io.StringIO(text, newline=""), delimiter=job.delimiter_char, strict=True))
        except csv.Error as exc:
            return f"InvalidBatch : Unable to parse CSV: {exc}"
        if not table:
            return "InvalidBatch : No data was uploaded for this job"
        header, rows = table[0], [r for r in table[1:] if r != []]
        job.columns = header
        obj = self.org.schema.visible_object(job.object_name)
        if obj is None:
            return f"InvalidJob : Unable to find object: {job.object_name}"
        names: list[str] = []
        for column in header:
            f = self.org.schema.visible_field(obj, column.strip())
            if f is None:
                return f"InvalidBatch : Field name not found : {column}"
            names.append(f.name)
        if len(set(names)) != len(names):
            return "InvalidBatch : Duplicate field names in the header row"
        for row in rows:
            self._apply_row(job, obj, names, row)
        return None

    def _apply_row(self, job: _IngestJob, obj: ObjectDef, names: Sequence[str], row: list[str]) -> None:
        if len(row) != len(names):
            job.failures.append(
                ["", f"INVALID_FIELD:Row has {len(row)} values but the header has {len(names)} columns:--", *row]
            )
            return
        values: dict[str, object] = {}
        for name, raw in zip(names, row, strict=True):
            if raw == "":
                continue  # empty = leave unchanged (update) / not set (insert)
            values[name] = None if raw == NULL_MARKER else raw
        try:
            record_id, created = apply_ingest_row(
                self.org, obj.name, job.operation, external_id_field=job.external_id_field, values=values,
                origin=job.origin,
            )  # fmt: skip
        except (DmlError, ApiError) as exc:
            job.failures.append([failed_row_id(job.operation, values), format_row_error(exc), *row])
            return
        job.successes.append([record_id, "true" if created else "false", *row])

    # ------------------------------------------------------------------------------ JobInfo

    def _base_info(self, job: _Job, job_type: str) -> dict[str, Any]:
        return {
            "id": job.id,
            "operation": job.operation,
            "object": job.object_name,
            "createdById": self.org.integration_user_id,
            "createdDate": format_rest_datetime(job.created_ms),
            "systemModstamp": format_rest_datetime(job.modstamp_ms),
            "state": job.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(job.api_version),
            "jobType": job_type,
            "lineEnding": job.line_ending,
            "columnDelimiter": job.column_delimiter,
        }

    def _query_info(self, job: _QueryJob) -> dict[str, Any]:
        info = self._base_info(job, "V2Query")
        info.update(
            {
                "numberRecordsProcessed": job.cursor.total if job.state == "JobComplete" and job.cursor else 0,
                "retries": 0,
                "totalProcessingTime": job.processing_ms(),
                "isPkChunkingSupported": job.pk_chunking,
            }
        )
        if job.state == "Failed":
            info["errorMessage"] = job.error_message
        return info

    def _ingest_info(self, job: _IngestJob) -> dict[str, Any]:
        info = self._base_info(job, "V2Ingest")
        if job.external_id_field is not None:
            info["externalIdFieldName"] = job.external_id_field
        info.update(
            {
                "contentUrl": f"services/data/v{job.api_version}/jobs/ingest/{job.id}/batches",
                "numberRecordsProcessed": len(job.successes) + len(job.failures),
                "numberRecordsFailed": len(job.failures),
                "retries": 0,
                "totalProcessingTime": job.processing_ms(),
                "apiActiveProcessingTime": job.processing_ms(),
                "apexProcessingTime": 0,
            }
        )
        if job.state == "Failed":
            info["errorMessage"] = job.error_message
        return info

    @staticmethod
    def _list_entry(info: dict[str, Any]) -> dict[str, Any]:
        keys = (
            "id", "operation", "object", "createdById", "createdDate", "systemModstamp", "state",
            "concurrencyMode", "contentType", "apiVersion", "jobType", "lineEnding", "columnDelimiter",
            "contentUrl", "externalIdFieldName",
        )  # fmt: skip
        return {k: info[k] for k in keys if k in info}


# ---------------------------------------------------------------------------------- helpers


def apply_ingest_row(
    org: Org,
    object_name: str,
    operation: str,
    *,
    external_id_field: str | None,
    values: dict[str, object],
    origin: CallOrigin,
) -> tuple[str, bool]:
    """One ingest row through the org's DML pipeline as the API user (Bulk 2.0 and Bulk 1.0):
    ``(record id, created)``.  ``values`` maps field names to values (``None`` sets a field to
    null; absent fields are left alone).  Raises :class:`DmlError` / :class:`ApiError` for a
    refused row; the org is unchanged then."""
    values = dict(values)
    record_id = str(values.get("Id") or "")
    if operation == "insert":
        return org.create(object_name, values, as_api=True, origin=origin), True
    if operation == "upsert" and external_id_field == "Id":  # upsert by record id
        values.pop("Id", None)
        if record_id:
            org.update(object_name, record_id, values, as_api=True, origin=origin)
            return record_id, False
        return org.create(object_name, values, as_api=True, origin=origin), True
    if operation == "upsert":
        if external_id_field is None:
            raise DmlError("MISSING_ARGUMENT", "External ID field not specified")
        ext_value = values.pop(external_id_field, None)
        if ext_value is None:
            raise DmlError("MISSING_ARGUMENT", f"{external_id_field} not specified", [external_id_field])
        return org.upsert(object_name, external_id_field, str(ext_value), values, as_api=True, origin=origin)
    if operation not in ("update", "delete", "hardDelete"):
        raise ValueError(f"not an ingest operation: {operation}")
    if not record_id:
        verb = "an update" if operation == "update" else "a delete"
        raise DmlError("MISSING_ARGUMENT", f"Id not specified in {verb} call")
    if operation == "update":
        values.pop("Id")
        org.update(object_name, record_id, values, as_api=True, origin=origin)
    elif operation == "delete":
        org.delete(object_name, record_id, origin=origin)
    else:
        org.hard_delete(object_name, record_id, origin=origin)
    return record_id, False


def failed_row_id(operation: str, values: dict[str, object]) -> str:
    """The id a refused row reports: the record's own for update/delete/hardDelete, else empty."""
    return str(values.get("Id") or "") if operation in ("update", "delete", "hardDelete") else ""


def format_row_error(exc: DmlError | ApiError) -> str:
    """``sf__Error`` cell: ``STATUS_CODE:message:Field1,Field2 --`` (``…:--`` without fields)."""
    code = exc.status_code if isinstance(exc, DmlError) else exc.error_code
    fields = ",".join(exc.fields or [])
    return f"{code}:{exc.message}:{fields + ' ' if fields else ''}--"


def _check_version(api_version: str, minimum: float) -> str:
    if not _VERSION_RE.match(api_version) or float(api_version) < minimum:
        raise not_found()
    return api_version


def _check_body(body: object, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
    for key in body:
        if key not in allowed:
            raise ApiError(400, "JSON_PARSER_ERROR", f'Unrecognized field "{key}"')
    return body


def _check_format(body: dict[str, Any]) -> tuple[str, str]:
    content_type = body.get("contentType", "CSV")
    if content_type != "CSV":
        raise _invalid_job(f"InvalidJob : Unsupported contentType: {content_type}")
    delimiter = body.get("columnDelimiter", "COMMA")
    if delimiter not in DELIMITERS:
        raise _invalid_job(f"InvalidJob : Invalid columnDelimiter: {delimiter}")
    line_ending = body.get("lineEnding", "LF")
    if line_ending not in LINE_ENDINGS:
        raise _invalid_job(f"InvalidJob : Invalid lineEnding: {line_ending}")
    return delimiter, line_ending


def _check_same_version(job: _Job, api_version: str) -> None:
    if job.api_version != api_version:
        raise ApiError(
            409,
            "API_VERSION_MISMATCH",
            f"Job {job.id} was created with API version {job.api_version}; "
            f"retrieve its results with the same version (requested {api_version})",
        )


def _invalid_job(message: str) -> ApiError:
    return ApiError(400, "INVALIDJOB", message)


def _invalid_state(job: _Job) -> ApiError:
    return ApiError(400, "INVALIDJOBSTATE", f"Job {job.id} is in state {job.state}; the operation is not allowed")


def _job_not_found(job_id: str) -> ApiError:
    return not_found(f"Job with id {job_id} does not exist or is not accessible")


def _state_constant(state: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", state).upper()


def _not_complete(job: _Job) -> ApiError:
    return ApiError(
        412,
        "JOB_NOT_COMPLETE",
        "can only download query results of successfully completed bulk job with status: JOB_COMPLETE. "
        f"Current status: {_state_constant(job.state)}",
    )


def _encode_locator(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def _decode_locator(locator: str | None, total: int) -> int:
    if locator is None or locator == "":
        return 0
    try:
        text = base64.b64decode(locator + "=" * (-len(locator) % 4), validate=True).decode("ascii")
        offset = int(text)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "INVALID_LOCATOR", f"Invalid locator: {locator}") from exc
    if not 0 < offset < total or _encode_locator(offset) != locator:
        raise ApiError(400, "INVALID_LOCATOR", f"Invalid locator: {locator}")
    return offset


def _as_list(row: Any) -> Any:
    return row


def _csv_stream(
    header: list[str],
    chunks: Iterable[Sequence[Any]],
    render: Callable[[Any], Iterable[object]],
    delimiter: str,
    terminator: str,
    *,
    write_header: bool = True,
) -> Iterator[bytes]:
    """Encode a header and chunks of rows as quoted CSV, yielding UTF-8 bytes about 1 MB at a time.

    Every value is double-quoted (Salesforce's example), embedded quotes are doubled, NUL
    characters are stripped.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, quoting=csv.QUOTE_ALL, lineterminator=terminator)
    if write_header:
        writer.writerow(header)
    for rows in chunks:
        for start in range(0, len(rows), WRITE_BATCH):
            writer.writerows(map(render, rows[start : start + WRITE_BATCH]))
            if buf.tell() >= FLUSH_CHARS:
                yield _drain(buf)
    tail = _drain(buf)
    if tail:
        yield tail


def _csv_line(
    compiled: CompiledQuery, row: tuple[Any, ...], raw_row: tuple[Any, ...], delimiter: str, terminator: str
) -> str:
    """One CSV line: SQL's rendering, or the Python renderer's for a flagged row."""
    _rowid, flag, *parts = row
    if not flag:
        return delimiter.join(parts) + terminator
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, quoting=csv.QUOTE_ALL, lineterminator=terminator).writerow(
        compiled.render_csv(raw_row)
    )
    return buf.getvalue()


def _drain(buf: io.StringIO) -> bytes:
    text = buf.getvalue()
    buf.seek(0)
    buf.truncate(0)
    return _encode(text)


def _encode(text: str) -> bytes:
    """UTF-8 CSV bytes; NUL characters are stripped."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text.encode("utf-8")


def gzip_stream(chunks: Iterable[bytes], level: int = GZIP_LEVEL) -> Iterator[bytes]:
    compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()


def _parse_rows_lenient(job: _IngestJob) -> list[list[str]]:
    """Rows of an aborted job's upload (for ``unprocessedrecords``); sets ``job.columns``."""
    if job.data is None:
        return []
    try:
        table = list(csv.reader(io.StringIO(job.data.decode("utf-8-sig"), newline=""), delimiter=job.delimiter_char))
    except (UnicodeDecodeError, csv.Error):
        return []
    if not table:
        return []
    job.columns = table[0]
    return [r for r in table[1:] if r != []]
