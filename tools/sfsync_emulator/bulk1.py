"""Bulk API 1.0 (the "async" API under ``/services/async/<ver>/``) of the emulated org.

``BulkV1Service`` holds the Bulk 1.0 jobs of one :class:`~sfsync_emulator.store.Org`; the HTTP
layer (:mod:`sfsync_emulator.asyncapi`) parses job bodies (XML or JSON), renders JobInfo /
BatchInfo and turns the :class:`~sfsync_emulator.errors.ApiError` raised here (``error_code`` =
Bulk 1.0's ``exceptionCode``: ``InvalidJob``, ``InvalidBatch``, ...) into Bulk 1.0's own error
body.  It shares with Bulk 2.0 (:class:`~sfsync_emulator.bulk.BulkService`): the job id space,
the job timing (admin ``bulk_timing``), the armed ``bulk_job_failed`` failures, result
streaming and the ingest DML path (:func:`~sfsync_emulator.bulk.apply_ingest_row`).

The contract (docs/emulator-design.md, "Bulk API 1.0"):

* A job (``operation`` ``query``/``queryAll``/``insert``/``update``/``upsert``/``delete``/
  ``hardDelete``, ``contentType`` ``CSV`` or ``JSON``) is ``Open`` until the client sets it
  ``Closed`` or ``Aborted``.  Batches can be added while it is open.
* A batch is ``Queued`` when added; it starts processing ``in_progress_after_s`` virtual seconds
  after it was added (``InProgress``) and ends ``Completed``/``Failed`` at ``complete_after_s``
  (both 0 by default: a batch is done when the add-batch call returns).  States advance when the
  job or one of its batches is read.  Processing a query batch takes its snapshot
  (:meth:`Org.open_cursor`); an ingest batch applies its rows through the org's DML pipeline.
  Aborting a job makes its batches that have not started ``NotProcessed``.
* Query results are split in result sets of at most ``result_rows`` rows (one result id each,
  ``752`` ids); CSV results are Bulk CSV (as Bulk 2.0: every value quoted, null = empty), JSON
  results are records with ``attributes`` whose date and datetime values are epoch milliseconds
  (what real orgs answer); an empty CSV result is the text ``Records not found for this query``.
* PK chunking (``Sforce-Enable-PKChunking``): the query batch becomes ``NotProcessed`` and one
  batch per chunk of ``chunkSize`` record Ids (counted over every stored row, deleted ones too)
  is added, each a query over ``Id >= low AND Id < high``; every chunk's snapshot is taken at the
  same instant, so the chunks' union is the query's rows, each exactly once.
"""

from __future__ import annotations

import csv
import io
import json
import math
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import ids
from .bulk import (
    CSV_CONTENT_TYPE,
    INGEST_OPERATIONS,
    NULL_MARKER,
    QUERY_OPERATIONS,
    RESULTS_LIFESPAN_MS,
    apply_ingest_row,
    failed_row_id,
    format_row_error,
    gzip_stream,
)
from .cdc import CallOrigin
from .errors import ApiError, DmlError
from .faults import claim_bulk_query_refusal
from .schema import ObjectDef, parse_datetime_ms
from .soql import CompiledQuery, compile_query

if TYPE_CHECKING:
    from .bulk import BulkService
    from .store import Cursor, Org

BATCH_KEY_PREFIX = "751"
RESULT_KEY_PREFIX = "752"
OPERATIONS = (*QUERY_OPERATIONS, *INGEST_OPERATIONS)
#: job ``contentType`` -> the MIME type of its batches and results
CONTENT_TYPES: dict[str, str] = {"CSV": "text/csv", "JSON": "application/json"}
KNOWN_CONTENT_TYPES = frozenset({"CSV", "JSON", "XML", "ZIP_CSV", "ZIP_JSON", "ZIP_XML"})
CONCURRENCY_MODES = ("Parallel", "Serial")  # JSON clients may send the ordinal (simple-salesforce: 0 / 1)
MIN_API_VERSION = 16.0
MAX_BATCH_RECORDS = 10_000
MAX_BATCH_BYTES = 10_000_000
MAX_QUERY_CHARS = 100_000
DEFAULT_RESULT_ROWS = 100_000
DAILY_BATCH_LIMIT = 15_000  # §5.5: batches per rolling 24 h (shared with Bulk 2.0 ingest on real orgs)
DAY_MS = 86_400_000
PK_CHUNK_DEFAULT = 100_000
PK_CHUNK_MAX = 250_000
#: standard objects PK chunking supports (Salesforce's list, as far as the catalogue has them); custom objects too
PK_CHUNKING_OBJECTS = frozenset(
    {"Account", "Campaign", "CampaignMember", "Contact", "Event", "Lead", "Opportunity", "Task", "User"}
)
NO_RECORDS = "Records not found for this query"
QUERY_FAILED = "InvalidBatch : Failed to process query: "  # the stateMessage of a query batch that failed
JOB_STATES = ("Open", "Closed", "Aborted", "Failed")
TERMINAL_BATCH_STATES = frozenset({"Completed", "Failed", "NotProcessed"})
#: the JobInfo keys a client may send when it creates a job
CREATE_KEYS = frozenset(
    {"operation", "object", "contentType", "concurrencyMode", "externalIdFieldName", "assignmentRuleId", "state"}
)
#: the keys of a job update (close / abort)
UPDATE_KEYS = frozenset({"state"})


def async_error(code: str, message: str, status: int = 400) -> ApiError:
    """A Bulk 1.0 error: ``code`` is its ``exceptionCode`` (rendered by :mod:`.asyncapi`)."""
    return ApiError(status, code, message)


class Instant(int):
    """Epoch milliseconds in a JobInfo/BatchInfo: JSON renders ``...+0000``, XML ``...Z``."""


@dataclass(frozen=True)
class PkChunking:
    """The ``Sforce-Enable-PKChunking`` options of a job."""

    chunk_size: int = PK_CHUNK_DEFAULT
    start_row: str | None = None


def parse_pk_chunking(header: str | None) -> PkChunking | None:
    """``TRUE`` / ``FALSE`` / ``chunkSize=N; startRow=<id>`` -> options (None: no chunking).
    Raises ``InvalidJob`` for anything else."""
    if header is None or not header.strip():
        return None
    chunk_size, start_row, enabled = PK_CHUNK_DEFAULT, None, True
    for part in (p.strip() for p in header.replace(",", ";").split(";")):
        if not part:
            continue
        key, sep, value = (x.strip() for x in part.partition("="))
        if not sep and key.lower() in ("true", "false"):
            enabled = key.lower() == "true"
        elif sep and key.lower() == "chunksize":
            if not value.isdigit() or not 1 <= int(value) <= PK_CHUNK_MAX:
                raise async_error("InvalidJob", f"Invalid PK chunking chunkSize: {value} (1 to {PK_CHUNK_MAX})")
            chunk_size = int(value)
        elif sep and key.lower() == "startrow":
            start_row = ids.normalize(value)
            if start_row is None:
                raise async_error("InvalidJob", f"Invalid PK chunking startRow: {value} (a 15 or 18 character id)")
        elif sep and key.lower() == "parent":
            raise async_error(
                "InvalidJob", "PK chunking option parent is not supported (the emulator has no share tables)"
            )
        else:
            raise async_error("InvalidJob", f"Invalid Sforce-Enable-PKChunking header value: {part}")
    return PkChunking(chunk_size, start_row) if enabled else None


@dataclass
class RowOutcome:
    """The result of one ingest row: Salesforce's ``id`` / ``success`` / ``created`` / ``errors``."""

    id: str | None
    success: bool
    created: bool
    error: DmlError | ApiError | None = None


@dataclass
class _Batch:
    id: str
    job_id: str
    created_ms: int
    modstamp_ms: int
    request: bytes
    state: str = "Queued"
    state_message: str | None = None
    started_ms: int | None = None
    finished_ms: int | None = None
    fail_message: str | None = None  # decided before processing (an injected fault, a refused query)
    # query batches
    soql: str | None = None
    compiled: CompiledQuery | None = None
    cursor: Cursor | None = None
    csv_select: list[str] | None = None
    result_ids: list[str] = field(default_factory=list)
    result_rows: int = DEFAULT_RESULT_ROWS
    chunk_of: str | None = None  # a PK chunk: the id of the batch it was split from
    # ingest batches
    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, object]] = field(default_factory=list)
    outcomes: list[RowOutcome] = field(default_factory=list)

    def processing_ms(self) -> int:
        if self.started_ms is None:
            return 0
        return (self.finished_ms if self.finished_ms is not None else self.modstamp_ms) - self.started_ms

    @property
    def records_processed(self) -> int:
        if self.soql is not None:
            return self.cursor.total if self.state == "Completed" and self.cursor is not None else 0
        return len(self.outcomes)

    @property
    def records_failed(self) -> int:
        return sum(1 for o in self.outcomes if not o.success)


@dataclass
class _Job:
    id: str
    operation: str
    object_name: str
    api_version: str
    content_type: str
    concurrency_mode: str
    created_ms: int
    modstamp_ms: int
    origin: CallOrigin
    external_id_field: str | None = None
    assignment_rule_id: str | None = None
    pk_chunking: PkChunking | None = None
    state: str = "Open"
    batches: dict[str, _Batch] = field(default_factory=dict)

    @property
    def is_query(self) -> bool:
        return self.operation in QUERY_OPERATIONS


@dataclass
class ResultList:
    """``GET .../batch/<id>/result`` of a query batch: the ids of its result sets."""

    ids: list[str]


@dataclass
class ResultData:
    """A result body (ingest batch results, a query result set): MIME type, headers, body."""

    content_type: str
    body: Iterator[bytes]
    headers: dict[str, str] = field(default_factory=dict)


class BulkV1Service:
    """Bulk API 1.0 jobs of one org.  Thread-safe; every method may raise :class:`ApiError` whose
    ``error_code`` is a Bulk 1.0 ``exceptionCode``."""

    def __init__(
        self,
        org: Org,
        v2: BulkService,
        *,
        result_rows: int = DEFAULT_RESULT_ROWS,
        daily_batch_limit: int = DAILY_BATCH_LIMIT,
    ) -> None:
        if result_rows < 1 or daily_batch_limit < 1:
            raise ValueError("result_rows and daily_batch_limit must be positive")
        self.org = org
        self.v2 = v2
        self.result_rows = result_rows
        self.daily_batch_limit = daily_batch_limit
        self._lock = threading.RLock()
        self._jobs: dict[str, _Job] = {}
        self._batch_times: deque[int] = deque()

    # ------------------------------------------------------------------------------ limits

    def batches_used(self) -> int:
        """Batches added in the rolling 24 h of the org clock (``DailyBulkApiBatches``)."""
        with self._lock:
            self._prune_batch_times(self.org.clock.now_ms())
            return len(self._batch_times)

    def _prune_batch_times(self, now: int) -> None:
        while self._batch_times and self._batch_times[0] <= now - DAY_MS:
            self._batch_times.popleft()

    # ------------------------------------------------------------------------------ jobs

    def create_job(
        self,
        body: Mapping[str, Any],
        api_version: str,
        *,
        pk_chunking_header: str | None = None,
        client: str | None = None,
    ) -> dict[str, Any]:
        """Create a job from a JobInfo body (already parsed from XML or JSON)."""
        version = _check_version(api_version)
        unknown = sorted(k for k in body if k not in CREATE_KEYS)
        if unknown:
            raise async_error("InvalidJob", f"Unrecognized field in the job definition: {unknown[0]}")
        if body.get("state") not in (None, "Open"):
            raise async_error("InvalidJob", f"A new job's state can only be Open, not {body.get('state')}")
        operation = body.get("operation")
        if operation not in OPERATIONS:
            raise async_error(
                "InvalidJob", f"Invalid operation: {operation} (one of {', '.join(OPERATIONS)}; case-sensitive)"
            )
        name = body.get("object")
        if not isinstance(name, str) or not name.strip():
            raise async_error("InvalidJob", "The job definition needs an object")
        obj = self.org.schema.visible_object(name.strip())
        if obj is None:
            raise async_error("InvalidJob", f"Unable to find object: {name}")
        content_type = _content_type(body.get("contentType"))
        mode = _concurrency_mode(body.get("concurrencyMode"))
        ext_field = None
        if operation == "upsert":
            ext_field = self._external_id_field(obj, body.get("externalIdFieldName"))
        elif body.get("externalIdFieldName") not in (None, ""):
            raise async_error("InvalidJob", "externalIdFieldName is only allowed for an upsert job")
        chunking = parse_pk_chunking(pk_chunking_header)
        if chunking is not None and operation not in QUERY_OPERATIONS:
            raise async_error("InvalidJob", "PK chunking is only supported for query and queryAll jobs")
        rule = body.get("assignmentRuleId")
        now = self.org.clock.now_ms()
        with self._lock:
            job = _Job(
                id=self.v2.minter.mint("750"),
                operation=str(operation),
                object_name=obj.name,
                api_version=version,
                content_type=content_type,
                concurrency_mode=mode,
                created_ms=now,
                modstamp_ms=now,
                origin=CallOrigin("bulkapi", version, client),
                external_id_field=ext_field,
                assignment_rule_id=str(rule) if rule else None,
                pk_chunking=chunking,
            )
            self._jobs[job.id] = job
            return self._job_info(job)

    def get_job(self, job_id: str, api_version: str) -> dict[str, Any]:
        with self._lock:
            return self._job_info(self._job(job_id, api_version))

    def job_content_type(self, job_id: str) -> str | None:
        """The job's ``contentType`` (None for an unknown job): how its answers are rendered."""
        with self._lock:
            job = self._jobs.get(job_id)
            return job.content_type if job is not None else None

    def update_job(self, job_id: str, body: Mapping[str, Any], api_version: str) -> dict[str, Any]:
        """Close (``state=Closed``) or abort (``state=Aborted``) a job."""
        unknown = sorted(k for k in body if k not in UPDATE_KEYS)
        if unknown:
            raise async_error("InvalidJob", f"Only the state of a job can be updated, not {unknown[0]}")
        target = body.get("state")
        if target not in ("Closed", "Aborted"):
            raise async_error("InvalidJob", f"Invalid state: {target}; a job can be set to Closed or Aborted")
        with self._lock:
            job = self._job(job_id, api_version)
            now = self.org.clock.now_ms()
            if target == "Closed":
                if job.state == "Closed":
                    return self._job_info(job)  # closing twice (a retried call) changes nothing
                if job.state != "Open":
                    raise async_error("InvalidJobState", f"Job {job.id} is {job.state}; only an open job can be closed")
            else:
                if job.state not in ("Open", "Closed"):
                    raise async_error("InvalidJobState", f"Job {job.id} is {job.state}; it cannot be aborted")
                for batch in job.batches.values():
                    if batch.state == "Queued" and batch.started_ms is None:
                        self._end_batch(batch, "NotProcessed", now)
            job.state, job.modstamp_ms = str(target), now
            return self._job_info(job)

    # ------------------------------------------------------------------------------ batches

    def add_batch(self, job_id: str, api_version: str, data: bytes, content_type: str) -> dict[str, Any]:
        """Add a batch (a SOQL text for a query job, CSV or JSON records for an ingest job)."""
        with self._lock:
            job = self._job(job_id, api_version)
            if job.state != "Open":
                raise async_error("InvalidJobState", f"Job {job.id} is {job.state}; add batches to an open job")
            mime = content_type.split(";", 1)[0].strip().lower()
            expected = CONTENT_TYPES[job.content_type]
            if mime != expected:
                raise async_error(
                    "InvalidBatch",
                    f"Content-Type {content_type or '(none)'} does not match the job's contentType "
                    f"{job.content_type}: send {expected}",
                )
            if len(data) > MAX_BATCH_BYTES:
                raise async_error("InvalidBatch", f"The batch exceeds the maximum size of {MAX_BATCH_BYTES} bytes")
            now = self.org.clock.now_ms()
            self._prune_batch_times(now)
            if len(self._batch_times) >= self.daily_batch_limit:
                raise async_error("ExceededQuota", f"Batch limit exceeded: {self.daily_batch_limit} in 24 hours")
            batch = _Batch(
                id=self.v2.minter.mint(BATCH_KEY_PREFIX), job_id=job.id, created_ms=now, modstamp_ms=now, request=data
            )
            if job.is_query:
                batch.soql = self._query_text(data)
                batch.result_rows = self.result_rows
                # the faults that act on query job creation act on a Bulk 1.0 query batch (faults.py)
                refusal = claim_bulk_query_refusal(job.object_name)
                if refusal is not None:
                    batch.fail_message = f"{QUERY_FAILED}{refusal.error_code}: {refusal.message}"
                else:
                    batch.fail_message = self.v2.take_injected_failure()
            else:
                batch.columns, batch.rows = _parse_records(job.content_type, data)
            self._batch_times.append(now)
            job.batches[batch.id] = batch
            job.modstamp_ms = now
            info = self._batch_info(batch)
            self._advance(job)  # a zero delay processes the batch now
            return info

    def list_batches(self, job_id: str, api_version: str) -> list[dict[str, Any]]:
        with self._lock:
            job = self._job(job_id, api_version)
            return [self._batch_info(b) for b in job.batches.values()]

    def get_batch(self, job_id: str, batch_id: str, api_version: str) -> dict[str, Any]:
        with self._lock:
            job = self._job(job_id, api_version)
            return self._batch_info(self._batch(job, batch_id))

    def batch_request(self, job_id: str, batch_id: str, api_version: str) -> tuple[bytes, str]:
        """The batch as it was sent (a PK chunk: its query over its Id range) and its MIME type."""
        with self._lock:
            job = self._job(job_id, api_version)
            batch = self._batch(job, batch_id)
            return batch.request, CONTENT_TYPES[job.content_type]

    def batch_result(self, job_id: str, batch_id: str, api_version: str) -> ResultList | ResultData:
        """A query batch: its result ids; an ingest batch: one result per row, in request order."""
        with self._lock:
            job = self._job(job_id, api_version)
            batch = self._batch(job, batch_id)
            _check_completed(batch)
            if job.is_query:
                return ResultList(list(batch.result_ids))
            outcomes = list(batch.outcomes)
            content_type = job.content_type
        if content_type == "JSON":
            return ResultData("application/json;charset=UTF-8", iter([_json_results(outcomes)]))
        return ResultData(CSV_CONTENT_TYPE, iter([_csv_results(outcomes)]))

    def query_result(self, job_id: str, batch_id: str, result_id: str, api_version: str, *, gzip: bool) -> ResultData:
        """One result set of a completed query batch (streamed; gzip when asked)."""
        with self._lock:
            job = self._job(job_id, api_version)
            batch = self._batch(job, batch_id)
            if not job.is_query:
                raise async_error("InvalidBatch", f"Batch {batch.id} is not a query batch; read its results at /result")
            _check_completed(batch)
            if result_id not in batch.result_ids:
                raise async_error("InvalidBatch", f"Invalid result id: {result_id}")
            cursor, compiled = batch.cursor, batch.compiled
            assert cursor is not None and compiled is not None  # Completed implies both
            self.org.cursor(cursor.id)  # an expired snapshot fails here, not mid-stream
            offset = batch.result_ids.index(result_id) * batch.result_rows
            count = max(0, min(batch.result_rows, cursor.total - offset))
            content_type, version, select = job.content_type, job.api_version, batch.csv_select
        if content_type == "JSON":
            body = self._json_stream(cursor.id, compiled, offset, count, version)
            mime = "application/json;charset=UTF-8"
        elif count == 0:
            body, mime = iter([NO_RECORDS.encode()]), CSV_CONTENT_TYPE
        else:
            assert select is not None
            body = self.v2.sql_csv_stream(
                cursor.id, compiled, select=select, header=compiled.csv_header(), offset=offset, count=count,
                delimiter=",", terminator="\n",
            )  # fmt: skip
            mime = CSV_CONTENT_TYPE
        headers: dict[str, str] = {}
        if gzip:
            headers["Content-Encoding"] = "gzip"
            body = gzip_stream(body, self.v2.gzip_level)
        return ResultData(mime, body, headers)

    # ------------------------------------------------------------------------------ lookups

    def _job(self, job_id: str, api_version: str) -> _Job:
        self._prune_jobs()
        job = self._jobs.get(job_id)
        if job is None:
            raise async_error("InvalidJob", f"Invalid job id: {job_id}")
        if job.api_version != api_version:
            raise async_error(
                "InvalidJob",
                f"Job {job.id} was created with API version {job.api_version}; use the same version in the URL "
                f"(not {api_version})",
            )
        self._advance(job)
        return job

    def _batch(self, job: _Job, batch_id: str) -> _Batch:
        batch = job.batches.get(batch_id)
        if batch is None:
            raise async_error("InvalidBatch", f"Invalid batch id: {batch_id}")
        return batch

    def _prune_jobs(self) -> None:
        """Jobs closed or aborted 7 days ago are deleted with their results (as real orgs do)."""
        now = self.org.clock.now_ms()
        for job in [j for j in self._jobs.values() if j.state != "Open" and now - j.modstamp_ms > RESULTS_LIFESPAN_MS]:
            for batch in job.batches.values():
                self._close_cursor(batch)
            del self._jobs[job.id]

    # ------------------------------------------------------------------------------ processing

    def _advance(self, job: _Job) -> None:
        """Move every batch of the job as far as the org clock says (PK chunks added meanwhile too)."""
        pending = list(job.batches.values())
        while pending:
            for batch in pending:
                self._advance_batch(job, batch)
            pending = [b for b in job.batches.values() if b.started_ms is None and b.state == "Queued"]
            pending = [b for b in pending if self._phase(b.created_ms)[0] is not None]

    def _phase(self, since_ms: int) -> tuple[int | None, int | None]:
        timing = self.v2.timing
        now = self.org.clock.now_ms()
        start, end = since_ms + timing.in_progress_ms, since_ms + timing.complete_ms
        return (start if now >= start else None, end if now >= end else None)

    def _advance_batch(self, job: _Job, batch: _Batch) -> None:
        if batch.state in TERMINAL_BATCH_STATES:
            return
        start, end = self._phase(batch.created_ms)
        if start is None:
            return
        if batch.started_ms is None:
            batch.started_ms = start
            failure = self._process(job, batch, start)
            if failure is not None:
                self._end_batch(batch, "Failed", start, failure)
                return
            if batch.state in TERMINAL_BATCH_STATES:
                return
        if end is None:
            batch.state, batch.modstamp_ms = "InProgress", start
            return
        self._end_batch(batch, "Completed", end)

    def _end_batch(self, batch: _Batch, state: str, when_ms: int, message: str | None = None) -> None:
        batch.state, batch.modstamp_ms, batch.finished_ms = state, when_ms, when_ms
        if batch.started_ms is not None and batch.started_ms > when_ms:
            batch.started_ms = when_ms
        batch.state_message = message
        if state != "Completed":
            self._close_cursor(batch)

    def _close_cursor(self, batch: _Batch) -> None:
        if batch.cursor is not None:
            self.org.close_cursor(batch.cursor.id)
            batch.cursor = None

    def _process(self, job: _Job, batch: _Batch, now: int) -> str | None:
        """Start processing a batch; returns a batch failure message (the org is unchanged then)."""
        if batch.fail_message is not None:
            return batch.fail_message
        if not job.is_query:
            return self._process_ingest(job, batch)
        if batch.cursor is not None:  # a PK chunk: its snapshot was taken when the query was split
            return None
        assert batch.soql is not None
        try:
            compiled = self._compile(job, batch.soql, now)
        except ApiError as exc:
            return f"{QUERY_FAILED}{exc.error_code}: {exc.message}"
        if compiled.object.name != job.object_name:
            return f"{QUERY_FAILED}the query reads {compiled.object.name} but the job's object is {job.object_name}"
        if job.pk_chunking is not None:
            return self._split(job, batch, compiled, job.pk_chunking, now)
        self._snapshot(job, batch, compiled)
        return None

    def _compile(self, job: _Job, soql: str, now: int) -> CompiledQuery:
        return compile_query(
            soql,
            self.org.schema,
            include_deleted=job.operation == "queryAll",
            bulk=True,
            now_ms=now,
            bulk_label="Bulk API",
        )

    def _snapshot(self, job: _Job, batch: _Batch, compiled: CompiledQuery) -> None:
        """Take the batch's result snapshot (CSV jobs: each row's CSV line rendered once, in SQL)."""
        batch.compiled = compiled
        if job.content_type == "CSV":
            render = compiled.render_sql_csv(",", nul_check=self.org.nul_text_written)
            rendered = ", ".join(f"{expr} AS _r{i}" for i, expr in enumerate(render))
            batch.cursor = self.org.open_cursor(
                f"SELECT *, {rendered} FROM ({compiled.sql})", compiled.params, ttl_s=RESULTS_LIFESPAN_MS // 1000
            )
            batch.csv_select = [f"_r{i}" for i in range(len(render))]
        else:
            batch.cursor = self.org.open_cursor(compiled.sql, compiled.params, ttl_s=RESULTS_LIFESPAN_MS // 1000)
        sets = max(1, math.ceil(batch.cursor.total / batch.result_rows))
        batch.result_ids = [self.v2.minter.mint(RESULT_KEY_PREFIX) for _ in range(sets)]

    def _split(self, job: _Job, batch: _Batch, compiled: CompiledQuery, chunking: PkChunking, now: int) -> str | None:
        """PK chunking: one query batch per Id range; the original batch becomes NotProcessed."""
        obj = compiled.object
        if not (obj.custom or obj.name in PK_CHUNKING_OBJECTS):
            return f"{QUERY_FAILED}PK chunking is not supported for {obj.name}"
        if compiled.ordered or compiled.limit is not None:
            return f"{QUERY_FAILED}PK chunking works only with queries without ORDER BY or LIMIT"
        with self.org.lock:  # every chunk's snapshot at one instant: their union is the query's rows
            bounds = self.org.id_boundaries(obj.name, chunking.chunk_size, chunking.start_row)
            lows: list[str | None] = [chunking.start_row, *bounds[1:]]
            highs: list[str | None] = [*bounds[1:], None]
            chunks: list[_Batch] = []
            try:
                for low, high in zip(lows, highs, strict=True):
                    text = compiled.with_id_range(low, high)
                    chunk = _Batch(
                        id=self.v2.minter.mint(BATCH_KEY_PREFIX),
                        job_id=job.id,
                        created_ms=now,
                        modstamp_ms=now,
                        request=text.encode("utf-8"),
                        soql=text,
                        result_rows=batch.result_rows,
                        chunk_of=batch.id,
                    )
                    chunks.append(chunk)
                    self._snapshot(job, chunk, self._compile(job, text, now))
            except ApiError as exc:  # the rewritten text failed to compile: nothing is added
                for chunk in chunks:
                    self._close_cursor(chunk)
                return f"{QUERY_FAILED}{exc.error_code}: {exc.message}"
        for chunk in chunks:
            job.batches[chunk.id] = chunk
            self._batch_times.append(now)
        self._end_batch(batch, "NotProcessed", now)
        return None

    def _process_ingest(self, job: _Job, batch: _Batch) -> str | None:
        obj = self.org.schema.visible_object(job.object_name)
        if obj is None:
            return f"InvalidBatch : Unable to find object: {job.object_name}"
        names: dict[str, str] = {}
        for column in batch.columns:
            f = self.org.schema.visible_field(obj, column.strip())
            if f is None:
                return f"InvalidBatch : Field name not found : {column}"
            names[column] = f.name
        if len(set(names.values())) != len(names):
            return "InvalidBatch : Duplicate field names in the batch"
        for row in batch.rows:
            batch.outcomes.append(self._apply(job, obj, {names[k]: v for k, v in row.items()}))
        return None

    def _apply(self, job: _Job, obj: ObjectDef, values: dict[str, object]) -> RowOutcome:
        nested = next((k for k, v in values.items() if isinstance(v, (dict, list))), None)
        try:
            if nested is not None:
                raise DmlError(
                    "INVALID_FIELD",
                    f"{nested}: relationship (external id) references are not supported by the emulator",
                    [nested],
                )
            record_id, created = apply_ingest_row(
                self.org, obj.name, job.operation, external_id_field=job.external_id_field, values=values,
                origin=job.origin,
            )  # fmt: skip
        except (DmlError, ApiError) as exc:
            return RowOutcome(failed_row_id(job.operation, values) or None, False, False, exc)
        return RowOutcome(record_id, True, created)

    # ------------------------------------------------------------------------------ rendering

    def _json_stream(
        self, cursor_id: str, compiled: CompiledQuery, offset: int, count: int, version: str
    ) -> Iterator[bytes]:
        """A JSON result set: records as REST renders them, dates and datetimes in epoch ms."""
        yield b"["
        pos, end, first = offset, offset + count, True
        types: dict[tuple[str, str], str | None] = {}
        while pos < end:
            rows = self.org.fetch_cursor(cursor_id, pos, min(2000, end - pos))
            if not rows:
                break
            pos += len(rows)
            records = compiled.render_json_rows(rows, version)
            text = ",".join(json.dumps(self._epoch_values(r, types), separators=(",", ":")) for r in records)
            yield (text if first else "," + text).encode("utf-8")
            first = False
        yield b"]"

    def _epoch_values(self, record: dict[str, Any], types: dict[tuple[str, str], str | None]) -> dict[str, Any]:
        """Bulk 1.0 JSON renders date and datetime values as epoch milliseconds (in place)."""
        obj_name = str(record.get("attributes", {}).get("type", ""))
        for key, value in record.items():
            if key == "attributes" or value is None:
                continue
            if isinstance(value, dict):
                self._epoch_values(value, types)
                continue
            kind = types.get((obj_name, key), "")
            if kind == "":
                obj = self.org.schema.get(obj_name)
                f = obj.field(key) if obj is not None else None
                kind = f.type if f is not None and f.type in ("date", "datetime") else None
                types[(obj_name, key)] = kind
            if kind == "datetime":
                record[key] = parse_datetime_ms(str(value))
            elif kind == "date":
                record[key] = parse_datetime_ms(f"{value}T00:00:00Z")
        return record

    def _external_id_field(self, obj: ObjectDef, name: object) -> str:
        if not isinstance(name, str) or not name:
            raise async_error("InvalidJob", "External ID was blank for an upsert job (externalIdFieldName)")
        f = self.org.schema.visible_field(obj, name)
        if f is None or not (f.name == "Id" or f.external_id or f.id_lookup):
            raise async_error(
                "InvalidJob",
                f"Field name provided, {name} does not match an External ID, Salesforce Id, or indexed field "
                f"for {obj.name}",
            )
        return f.name

    def _job_info(self, job: _Job) -> dict[str, Any]:
        batches = list(job.batches.values())

        def count(state: str) -> int:
            return sum(1 for b in batches if b.state == state)

        info: dict[str, Any] = {
            "id": job.id,
            "operation": job.operation,
            "object": job.object_name,
            "createdById": self.org.integration_user_id,
            "createdDate": Instant(job.created_ms),
            "systemModstamp": Instant(max([job.modstamp_ms, *(b.modstamp_ms for b in batches)])),
            "state": job.state,
        }
        if job.external_id_field is not None:
            info["externalIdFieldName"] = job.external_id_field
        info.update(
            {
                "concurrencyMode": job.concurrency_mode,
                "contentType": job.content_type,
                "numberBatchesQueued": count("Queued"),
                "numberBatchesInProgress": count("InProgress"),
                "numberBatchesCompleted": count("Completed"),
                "numberBatchesFailed": count("Failed"),
                "numberBatchesTotal": len(batches),
                "numberRecordsProcessed": sum(b.records_processed for b in batches),
                "numberRetries": 0,
                "apiVersion": float(job.api_version),
            }
        )
        if job.assignment_rule_id is not None:
            info["assignmentRuleId"] = job.assignment_rule_id
        total_ms = sum(b.processing_ms() for b in batches)
        info.update(
            {
                "numberRecordsFailed": sum(b.records_failed for b in batches),
                "totalProcessingTime": total_ms,
                "apiActiveProcessingTime": total_ms,
                "apexProcessingTime": 0,
            }
        )
        return info

    def _batch_info(self, batch: _Batch) -> dict[str, Any]:
        info: dict[str, Any] = {"id": batch.id, "jobId": batch.job_id, "state": batch.state}
        if batch.state_message is not None:
            info["stateMessage"] = batch.state_message
        info.update(
            {
                "createdDate": Instant(batch.created_ms),
                "systemModstamp": Instant(batch.modstamp_ms),
                "numberRecordsProcessed": batch.records_processed,
                "numberRecordsFailed": batch.records_failed,
                "totalProcessingTime": batch.processing_ms(),
                "apiActiveProcessingTime": batch.processing_ms(),
                "apexProcessingTime": 0,
            }
        )
        return info

    def _query_text(self, data: bytes) -> str:
        try:
            soql = data.decode("utf-8-sig").strip()
        except UnicodeDecodeError as exc:
            raise async_error("InvalidBatch", "The query is not valid UTF-8") from exc
        if not soql:
            raise async_error("InvalidBatch", "The batch is empty: a query batch holds one SOQL query")
        if len(soql) > MAX_QUERY_CHARS:
            raise async_error("InvalidBatch", f"The query exceeds {MAX_QUERY_CHARS} characters")
        return soql


# ---------------------------------------------------------------------------------- helpers


def _check_version(api_version: str) -> str:
    try:
        ok = float(api_version) >= MIN_API_VERSION
    except ValueError:
        ok = False
    if not ok:
        raise async_error("InvalidUrl", f"Bulk API is not available in API version {api_version}", 404)
    return api_version


def _content_type(value: object) -> str:
    """The job's contentType (XML when absent, as on real orgs; the emulator serves CSV and JSON)."""
    name = "XML" if value in (None, "") else str(value)
    if name not in KNOWN_CONTENT_TYPES:
        raise async_error("InvalidJob", f"Invalid contentType: {name}")
    if name not in CONTENT_TYPES:
        raise async_error(
            "InvalidJob", f"contentType {name} is not supported by the emulator (use CSV or JSON; XML is the default)"
        )
    return name


def _concurrency_mode(value: object) -> str:
    if value is None or value == "":
        return "Parallel"
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(CONCURRENCY_MODES):
        return CONCURRENCY_MODES[value]
    if isinstance(value, str) and value in CONCURRENCY_MODES:
        return value
    raise async_error("InvalidJob", f"Invalid concurrencyMode: {value} (Parallel or Serial)")


def _check_completed(batch: _Batch) -> None:
    if batch.state != "Completed":
        detail = f": {batch.state_message}" if batch.state_message else ""
        raise async_error("InvalidBatch", f"Batch not completed (state {batch.state}{detail})")


def _parse_records(content_type: str, data: bytes) -> tuple[list[str], list[dict[str, object]]]:
    """The records of an ingest batch: (column names in first-seen order, one dict per record).
    CSV: an empty cell leaves the field alone and ``#N/A`` sets it to null; JSON: ``null`` sets
    null.  Raises ``InvalidBatch`` for data that cannot be read (nothing is created then)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise async_error("InvalidBatch", "The batch data is not valid UTF-8") from exc
    if content_type == "JSON":
        columns, rows = _parse_json_records(text)
    else:
        columns, rows = _parse_csv_records(text)
    if not rows:
        raise async_error("InvalidBatch", "The batch holds no records")
    if len(rows) > MAX_BATCH_RECORDS:
        raise async_error("InvalidBatch", f"The batch holds {len(rows)} records; the maximum is {MAX_BATCH_RECORDS}")
    return columns, rows


def _parse_json_records(text: str) -> tuple[list[str], list[dict[str, object]]]:
    try:
        records = json.loads(text)
    except ValueError as exc:
        raise async_error("InvalidBatch", f"Failed to parse the batch as JSON: {exc}") from exc
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise async_error("InvalidBatch", "A JSON batch must be an array of record objects")
    columns: dict[str, None] = {}
    rows: list[dict[str, object]] = []
    for record in records:
        row = {str(k): v for k, v in record.items() if k != "attributes"}
        columns.update(dict.fromkeys(row))
        rows.append(row)
    return list(columns), rows


def _parse_csv_records(text: str) -> tuple[list[str], list[dict[str, object]]]:
    try:
        table = [r for r in csv.reader(io.StringIO(text, newline=""), strict=True) if r != []]
    except csv.Error as exc:
        raise async_error("InvalidBatch", f"Failed to parse the batch as CSV: {exc}") from exc
    if not table:
        raise async_error("InvalidBatch", "The batch holds no header row")
    header, rows = table[0], []
    if len({h.strip().lower() for h in header}) != len(header):
        raise async_error("InvalidBatch", "Duplicate field names in the header row")
    for line, cells in enumerate(table[1:], start=2):
        if len(cells) != len(header):
            raise async_error("InvalidBatch", f"Row {line} has {len(cells)} values but the header has {len(header)}")
        row: dict[str, object] = {}
        for name, value in zip(header, cells, strict=True):
            if value != "":  # an empty cell leaves the field alone
                row[name] = None if value == NULL_MARKER else value
        rows.append(row)
    return header, rows


def _json_results(outcomes: list[RowOutcome]) -> bytes:
    out = []
    for o in outcomes:
        errors = []
        if o.error is not None:
            exc = o.error
            code = exc.status_code if isinstance(exc, DmlError) else exc.error_code
            errors.append({"message": exc.message, "fields": list(exc.fields or []), "statusCode": code})
        out.append({"id": o.id, "success": o.success, "created": o.created, "errors": errors})
    return json.dumps(out, separators=(",", ":")).encode("utf-8")


def _csv_results(outcomes: list[RowOutcome]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(["Id", "Success", "Created", "Error"])
    for o in outcomes:
        error = format_row_error(o.error) if o.error is not None else ""
        writer.writerow([o.id or "", str(o.success).lower(), str(o.created).lower(), error])
    return buf.getvalue().encode("utf-8")
