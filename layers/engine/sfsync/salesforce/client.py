"""``SalesforceClient``: every call the engine makes to Salesforce.

It wraps the unmodified simple-salesforce ``Salesforce`` in direct mode (spec §1.7, option 1)
and routes every operation through :meth:`SalesforceClient._call`, which

* re-authenticates once on ``INVALID_SESSION_ID`` (401) and repeats the operation - also for a
  ``nextRecordsUrl`` page or a Bulk result set, whose locators survive a new token;
* retries 5xx, connection errors and timeouts with bounded exponential back-off and full
  jitter, then raises :class:`SalesforceUnavailable` (a non-idempotent request - a create, a
  composite with writes - is repeated only after a 503 or a failed connect, never after a read
  timeout, a broken response or another 5xx, whose outcome is unknown);
* maps every other failure onto the typed errors of :mod:`sfsync.core.exceptions`.

API usage (``Sforce-Limit-Info``) and the number of data-API calls are recorded by a response
hook on the session, so they cover simple-salesforce's calls and our raw ones alike (a describe
answered ``304 Not Modified`` by :meth:`SalesforceClient.describe_if_modified` is a call too).
"""

from __future__ import annotations

import codecs
import csv
import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import requests
from simple_salesforce import Salesforce
from simple_salesforce import exceptions as sf_exc
from simple_salesforce.util import exception_handler

from sfsync.core.exceptions import (
    BulkJobFailed,
    InvalidQueryLocator,
    ReplicationWindowError,
    SalesforceAuthError,
    SalesforceConfigError,
    SalesforceError,
    SalesforceQueryTimeout,
    SalesforceRateLimited,
    SalesforceRequestError,
    SalesforceUnavailable,
)
from sfsync.core.observability import count
from sfsync.items.csv import null_if_empty

from .auth import AccessToken, TokenProvider
from .credentials import SalesforceCredentials
from .transport import DEFAULT_TIMEOUT, RetryPolicy, build_session

T = TypeVar("T")

MAX_COMPOSITE_SUBREQUESTS = 25
MAX_COMPOSITE_QUERIES = 5
MAX_COLLECTION_RECORDS = 200
MAX_RETRIEVE_IDS = 2000
MIN_BATCH_SIZE, MAX_BATCH_SIZE = 200, 2000

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_JOB_ID = re.compile(r"^[A-Za-z0-9]{15,18}$")
_LIMIT_INFO = re.compile(r"(?:^|[;,\s])api-usage=(\d+)/(\d+)")
_COMPOSITE_QUERYISH = re.compile(r"^/services/data/v\d+\.\d+/(?:query|queryAll|composite/sobjects)(?:[/?]|$)")
_REPLICATION_CODES = frozenset({"INVALID_REPLICATION_DATE", "EXCEEDED_ID_LIMIT"})
_FAILED_JOB_STATES = frozenset({"Failed", "Aborted"})


@dataclass(frozen=True)
class QueryPage:
    """One page of a REST query (§2.2)."""

    records: list[dict[str, Any]]
    total_size: int
    next_url: str | None
    done: bool


@dataclass(frozen=True)
class BulkPage:
    """One result set of a Bulk 2.0 query job (§5.1).

    ``rows`` streams from the open HTTP response: consume it before advancing the page
    iterator (the response is closed when the iterator moves on).  Empty CSV cells are None.
    """

    rows: Iterator[dict[str, str | None]]
    locator: str | None
    number_of_records: int

    def columns(self) -> tuple[tuple[str, ...], Iterator[list[str]]]:
        """The same rows as the CSV has them: the header, then each line's texts ('' for null).

        Cheaper than :attr:`rows` (no dict per row); read one or the other, not both.
        """
        rows = self.rows
        if not isinstance(rows, _StreamedRows):
            raise TypeError("columns() needs a page streamed by SalesforceClient.bulk_results_pages")
        return rows.columns()


class SalesforceClient:
    """The engine's Salesforce adapter (one org, one set of credentials)."""

    def __init__(
        self,
        tokens: TokenProvider,
        session: requests.Session,
        *,
        api_version: str,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._tokens = tokens
        self._session = session
        self._api_version = api_version
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._token: AccessToken | None = None
        self._sf: Salesforce | None = None
        self._usage: tuple[int, int] | None = None
        self._server_time: datetime | None = None
        self.calls_made = 0
        self.reauth_count = 0
        session.hooks["response"].append(self._observe)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def api_version(self) -> str:
        return self._api_version

    def api_usage(self) -> tuple[int, int] | None:
        """(used, max) of the org's daily API allocation from the last ``Sforce-Limit-Info``."""
        return self._usage

    def server_time(self) -> datetime | None:
        """Salesforce's clock: the ``Date`` header of the latest response (UTC, whole seconds)."""
        return self._server_time

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> SalesforceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- REST --------------------------------------------------------------------------------

    def describe_global(self) -> dict[str, Any]:
        return _as_dict(self._call("describe global", lambda sf: sf.describe()))

    def describe(self, obj: str) -> dict[str, Any]:
        _check_name(obj, "object")
        return _as_dict(self._call(f"describe {obj}", lambda sf: _sobject(sf, obj).describe()))

    def describe_if_modified(self, obj: str, since: datetime) -> dict[str, Any] | None:
        """``sobjects/{obj}/describe`` with ``If-Modified-Since`` (§4.2): None when not modified (304).

        HTTP dates have whole seconds and the server compares whole seconds, so a change in the
        same second as ``since`` could answer 304; the header is therefore the second *before*
        ``since``'s: None means certainly nothing changed after ``since`` (a change just before it
        may return a describe once more - harmless).  A 304 is still a data-API call: it counts in
        ``calls_made`` and, on a real org, against the daily allocation.
        """
        _check_name(obj, "object")
        _check_aware(since, "since")
        header = format_datetime(since.astimezone(UTC).replace(microsecond=0) - timedelta(seconds=1), usegmt=True)

        def op(sf: Salesforce) -> dict[str, Any] | None:
            try:
                return _as_dict(_sobject(sf, obj).describe(headers={"If-Modified-Since": header}))
            except sf_exc.SalesforceGeneralError as exc:
                if exc.status == 304:
                    return None
                raise

        return self._call(f"describe {obj} if modified since {header}", op)

    def limits(self) -> dict[str, Any]:
        return _as_dict(self._call("limits", lambda sf: sf.limits()))

    def query_pages(self, soql: str, *, include_deleted: bool = True, batch_size: int = 2000) -> Iterator[QueryPage]:
        """Run ``soql`` (``queryAll`` by default) and yield its pages lazily, first to last.

        Arguments are checked at once; the first request is sent when the first page is asked for.
        """
        return self._query_pages(soql, include_deleted, _batch_headers(batch_size))

    def _query_pages(self, soql: str, include_deleted: bool, headers: dict[str, str]) -> Iterator[QueryPage]:
        raw = self._call("query", lambda sf: sf.query(soql, include_deleted=include_deleted, headers=headers))
        page = _query_page(raw)
        yield page
        while not page.done and page.next_url:
            page = self._query_more(page.next_url, include_deleted, headers)
            yield page

    def query_more(self, next_url: str, include_deleted: bool = True) -> QueryPage:
        """The page at ``next_url`` (a ``nextRecordsUrl`` path, or a bare locator)."""
        return self._query_more(next_url, include_deleted, {})

    def get_updated(self, obj: str, start: datetime, end: datetime) -> dict[str, Any]:
        """``sobjects/{obj}/updated`` (§3.1): ``{"ids": [...], "latestDateCovered": ...}``."""
        _check_name(obj, "object")
        _check_aware(start, "start")
        _check_aware(end, "end")
        return _as_dict(self._call(f"getUpdated {obj}", lambda sf: _sobject(sf, obj).updated(start, end)))

    def get_deleted(self, obj: str, start: datetime, end: datetime) -> dict[str, Any]:
        """``sobjects/{obj}/deleted`` (§3.2): ``deletedRecords``, ``earliestDateAvailable``, ..."""
        _check_name(obj, "object")
        _check_aware(start, "start")
        _check_aware(end, "end")
        return _as_dict(self._call(f"getDeleted {obj}", lambda sf: _sobject(sf, obj).deleted(start, end)))

    def composite(
        self,
        subrequests: list[dict[str, Any]],
        all_or_none: bool = False,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """POST ``/composite`` (§6.9): up to 25 subrequests in one API call.

        ``headers``: request headers of the composite request itself (``Sforce-Call-Options``,
        ``Sforce-Auto-Assign``), which its subrequests inherit.
        """
        _check_composite(subrequests)
        body = {"allOrNone": all_or_none, "compositeRequest": subrequests}
        idempotent = all(str(s.get("method", "")).upper() == "GET" for s in subrequests)
        extra = dict(headers or {})
        result = self._call(
            "composite",
            lambda sf: sf.restful("composite", method="POST", json=body, headers=extra),
            idempotent=idempotent,
        )
        responses = _as_dict(result).get("compositeResponse")
        if not isinstance(responses, list):
            raise SalesforceRequestError("composite answered without compositeResponse")
        return responses

    def collections(
        self,
        method: Literal["POST", "PATCH"],
        records: list[dict[str, Any]],
        all_or_none: bool = False,
        *,
        call_options_client: str = "sfsync",
        auto_assign: bool = False,
    ) -> list[dict[str, Any]]:
        """Create (POST) or update (PATCH) up to 200 records (§6.1); SaveResults in order."""
        if method not in ("POST", "PATCH"):
            raise ValueError("collections method must be 'POST' (create) or 'PATCH' (update)")
        _check_records(records, need_type=True, need_id=method == "PATCH")
        return self._write_collection(
            "composite/sobjects",
            method,
            records,
            all_or_none=all_or_none,
            call_options_client=call_options_client,
            auto_assign=auto_assign,
        )

    def upsert_collection(
        self,
        obj: str,
        ext_field: str,
        records: list[dict[str, Any]],
        all_or_none: bool = False,
        *,
        call_options_client: str = "sfsync",
        auto_assign: bool = False,
    ) -> list[dict[str, Any]]:
        """Upsert up to 200 ``obj`` records by external id ``ext_field`` (§6.1); UpsertResults."""
        _check_name(obj, "object")
        _check_name(ext_field, "external id field")
        typed = [{**r, "attributes": {**r.get("attributes", {}), "type": obj}} for r in records]
        _check_records(typed, need_type=True, need_id=False)
        missing = [i for i, r in enumerate(typed) if r.get(ext_field) in (None, "")]
        if missing:
            raise ValueError(f"records {missing[:10]} lack the external id {ext_field!r}")
        return self._write_collection(
            f"composite/sobjects/{obj}/{ext_field}",
            "PATCH",
            typed,
            all_or_none=all_or_none,
            call_options_client=call_options_client,
            auto_assign=auto_assign,
        )

    def retrieve(self, obj: str, ids: list[str], fields: list[str]) -> list[dict[str, Any] | None]:
        """Records by id (POST form of the collections retrieve, ≤ 2000 ids); None where unreadable."""
        _check_name(obj, "object")
        if not ids:
            return []
        if len(ids) > MAX_RETRIEVE_IDS:
            raise ValueError(f"retrieve takes at most {MAX_RETRIEVE_IDS} ids, got {len(ids)}")
        if not fields:
            raise ValueError("retrieve needs at least one field")
        body = {"ids": ids, "fields": fields}
        result = self._call(
            f"retrieve {obj}", lambda sf: sf.restful(f"composite/sobjects/{obj}", method="POST", json=body)
        )
        if not isinstance(result, list):
            raise SalesforceRequestError(f"retrieve {obj} answered with {type(result).__name__}, not a list")
        return result

    # -- Bulk API 2.0 query ------------------------------------------------------------------

    def bulk_query_create(self, soql: str, *, operation: Literal["query", "queryAll"] = "queryAll") -> dict[str, Any]:
        """Create a Bulk 2.0 query job (§5.1) and return its JobInfo."""
        if operation not in ("query", "queryAll"):
            raise ValueError("operation must be 'query' or 'queryAll'")
        body = {
            "operation": operation,
            "query": soql,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        }
        job = _as_dict(self._call("bulk query create", lambda sf: sf.restful("jobs/query", method="POST", json=body)))
        _raise_if_failed(job)
        return job

    def bulk_job_status(self, job_id: str) -> dict[str, Any]:
        """JobInfo of a query job; raises BulkJobFailed when it ended Failed or Aborted."""
        _check_job_id(job_id)
        job = _as_dict(self._call("bulk job status", lambda sf: sf.restful(f"jobs/query/{job_id}")))
        _raise_if_failed(job)
        return job

    def bulk_results_pages(
        self, job_id: str, *, max_records: int = 50000, locator: str | None = None
    ) -> Iterator[BulkPage]:
        """Stream the result sets of a completed job, starting at ``locator`` (None: the first).

        Arguments are checked at once; each result set is requested when its page is asked for.
        """
        _check_job_id(job_id)
        if max_records < 1:
            raise ValueError("max_records must be >= 1")
        return self._bulk_results_pages(job_id, max_records, locator)

    def _bulk_results_pages(self, job_id: str, max_records: int, locator: str | None) -> Iterator[BulkPage]:
        current = locator
        while True:
            response = self._call(
                "bulk results",
                functools.partial(_open_results, job_id=job_id, locator=current, max_records=max_records),
            )
            next_locator = _header_locator(response.headers.get("Sforce-Locator"))
            try:
                count = _header_int(response.headers.get("Sforce-NumberOfRecords"), "Sforce-NumberOfRecords")
            except SalesforceRequestError:
                response.close()
                raise
            rows = _StreamedRows(response, job_id, current)
            yield BulkPage(rows=rows, locator=next_locator, number_of_records=count)
            rows.abandon()  # the caller moved on: release the connection of an unread set
            if next_locator is None:
                return
            current = next_locator

    # -- the one request path ----------------------------------------------------------------

    def _call(self, what: str, op: Callable[[Salesforce], T], *, idempotent: bool = True) -> T:
        """Run ``op`` against the current simple-salesforce instance with re-auth, retry and mapping."""
        reauthenticated = False
        attempt = 0
        while True:
            attempt += 1
            sf = self._salesforce()
            try:
                return op(sf)
            except sf_exc.SalesforceExpiredSession as exc:
                if reauthenticated:
                    raise SalesforceAuthError(
                        f"{what}: session rejected again right after re-authentication",
                        error_code=_error_code(exc.content) or "INVALID_SESSION_ID",
                        status=exc.status,
                    ) from exc
                reauthenticated = True
                attempt -= 1  # a re-login is not a failed attempt
                self._reauthenticate()
            except sf_exc.SalesforceError as exc:
                # a non-idempotent request is repeated only when the server says it did nothing (503)
                retryable = exc.status == 503 or (exc.status >= 500 and idempotent)
                if retryable and attempt < self._retry.max_attempts:
                    self._sleep(self._retry.delay(attempt))
                    continue
                raise _map_error(what, exc.status, exc.content, attempt) from exc
            except requests.exceptions.SSLError as exc:
                raise SalesforceConfigError(
                    f"{what}: TLS verification failed ({exc.__class__.__name__}); check the secret's ca_bundle"
                ) from exc
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                sent = isinstance(exc, (requests.exceptions.ReadTimeout, requests.exceptions.ChunkedEncodingError))
                if sent and not idempotent:
                    raise SalesforceUnavailable(
                        f"{what}: {exc.__class__.__name__} on a non-idempotent request (outcome unknown, not retried)"
                    ) from exc
                if attempt < self._retry.max_attempts:
                    self._sleep(self._retry.delay(attempt))
                    continue
                raise SalesforceUnavailable(f"{what}: {exc.__class__.__name__} after {attempt} attempts") from exc

    def _salesforce(self) -> Salesforce:
        if self._sf is None:
            self._token = self._tokens.token()
            self._sf = self._build(self._token)
        return self._sf

    def _reauthenticate(self) -> None:
        self.reauth_count += 1
        count("SalesforceReauthenticated")
        self._token = self._tokens.refresh(self._token)
        self._sf = self._build(self._token)

    def _build(self, token: AccessToken) -> Salesforce:
        # object_pairs_hook=None: JSON objects decode as plain dicts in C (simple-salesforce's default,
        # OrderedDict, is a Python call per object: most of the CPU of reading a query page).
        return Salesforce(
            instance_url=token.instance_url,
            session_id=token.access_token,
            session=self._session,
            version=self._api_version,
            object_pairs_hook=None,
        )

    def _observe(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Response hook: server time, data-API call count and the last API usage header."""
        server_time = _http_date(response.headers.get("Date"))
        if server_time is not None:
            self._server_time = server_time
        if "/services/data/" not in urlsplit(response.url).path:
            return
        self.calls_made += 1
        match = _LIMIT_INFO.search(response.headers.get("Sforce-Limit-Info", ""))
        if match:
            self._usage = (int(match.group(1)), int(match.group(2)))

    def _query_more(self, next_url: str, include_deleted: bool, headers: Mapping[str, str]) -> QueryPage:
        is_url = next_url.startswith("/")
        raw = self._call(
            "query_more",
            lambda sf: sf.query_more(
                next_url, identifier_is_url=is_url, include_deleted=include_deleted, headers=dict(headers)
            ),
        )
        return _query_page(raw)

    def _write_collection(
        self,
        path: str,
        method: str,
        records: list[dict[str, Any]],
        *,
        all_or_none: bool,
        call_options_client: str,
        auto_assign: bool,
    ) -> list[dict[str, Any]]:
        if not records:
            return []
        headers = {
            "Sforce-Call-Options": f"client={call_options_client}",
            "Sforce-Auto-Assign": "TRUE" if auto_assign else "FALSE",
        }
        body = {"allOrNone": all_or_none, "records": records}
        result = self._call(
            f"{method} {path}",
            lambda sf: sf.restful(path, method=method, json=body, headers=headers),
            idempotent=method == "PATCH",
        )
        if not isinstance(result, list):
            raise SalesforceRequestError(f"{method} {path} answered with {type(result).__name__}, not a list")
        return result


def client_from_secret(
    secret: Mapping[str, Any],
    *,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
) -> SalesforceClient:
    """Build a client from the decoded secret JSON (docs/engine-design.md)."""
    credentials = SalesforceCredentials.from_secret(secret)
    return client_from_credentials(credentials, retry=retry, sleep=sleep, timeout=timeout)


def client_from_credentials(
    credentials: SalesforceCredentials,
    *,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
) -> SalesforceClient:
    """Build a client from credentials already checked (the secret is validated once, by the caller)."""
    session = build_session(credentials.ca_bundle, timeout=timeout)
    tokens = TokenProvider(credentials, session, sleep=sleep)
    return SalesforceClient(tokens, session, api_version=credentials.api_version, retry=retry, sleep=sleep)


# -- helpers ---------------------------------------------------------------------------------


def _sobject(sf: Salesforce, obj: str) -> Any:
    return getattr(sf, obj)


def _open_results(sf: Salesforce, *, job_id: str, locator: str | None, max_records: int) -> requests.Response:
    params: dict[str, str | int] = {"maxRecords": max_records}
    if locator:
        params["locator"] = locator
    response = sf.session.get(
        f"{sf.base_url}jobs/query/{job_id}/results",
        params=params,
        headers={"Authorization": f"Bearer {sf.session_id}", "Accept": "text/csv", "Accept-Encoding": "gzip"},
        stream=True,
    )
    if response.status_code >= 300:
        try:
            exception_handler(response, name="bulk results")
        finally:
            response.close()
    return response


_BROKEN_STREAM = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class _StreamedRows(Iterator[dict[str, str | None]]):
    """The rows of one Bulk result set, read from the open response as they are iterated.

    Iterated, it gives dict rows (empty -> None); :meth:`columns` gives the same lines as lists
    instead (one or the other).  Either way, reading after the page iterator moved on raises
    instead of ending early.
    """

    def __init__(self, response: requests.Response, job_id: str, locator: str | None) -> None:
        self._response = response
        self._job_id = job_id
        self._locator = locator
        self._rows: Iterator[dict[str, str | None]] | None = None
        self._read = False
        self._finished = False
        self._abandoned = False

    def __iter__(self) -> _StreamedRows:
        return self

    def __next__(self) -> dict[str, str | None]:
        if self._rows is None:
            self._rows = self._dicts()
        self._check()
        try:
            return next(self._rows)
        except StopIteration:
            self._finish()
            raise

    def columns(self) -> tuple[tuple[str, ...], Iterator[list[str]]]:
        """The header (empty for an empty set) and an iterator of each line's texts."""
        self._check()
        lines = csv.reader(self._text())
        try:
            header = tuple(next(lines, ()))
        except _BROKEN_STREAM as exc:
            raise self._broken(exc) from exc
        return header, self._lists(lines)

    def abandon(self) -> None:
        if not self._finished:
            self._abandoned = True
            self._response.close()

    def _text(self) -> Iterator[str]:
        if self._read:
            raise RuntimeError(f"bulk result set of {self._job_id} is already being read (rows or columns, not both)")
        self._read = True
        return _text_lines(self._response.iter_content(chunk_size=65536))

    def _dicts(self) -> Iterator[dict[str, str | None]]:
        try:
            for row in csv.DictReader(self._text()):
                yield null_if_empty(row)
        except _BROKEN_STREAM as exc:
            raise self._broken(exc) from exc

    def _lists(self, lines: Iterator[list[str]]) -> Iterator[list[str]]:
        try:
            for line in lines:
                if line:  # csv.reader's [] for a blank line (csv.DictReader skips them too)
                    yield line
                    self._check()  # before the next line is read from the response
        except _BROKEN_STREAM as exc:
            raise self._broken(exc) from exc
        self._finish()

    def _check(self) -> None:
        if self._abandoned:
            raise RuntimeError(
                f"bulk result set of {self._job_id} (locator {self._locator!r}) was abandoned: "
                "consume page.rows before advancing to the next page"
            )

    def _finish(self) -> None:
        self._finished = True
        self._response.close()

    def _broken(self, exc: Exception) -> SalesforceUnavailable:
        return SalesforceUnavailable(
            f"bulk results of {self._job_id} broke mid-stream ({exc.__class__.__name__}); "
            f"re-read from locator {self._locator!r}"
        )


def _text_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Decode UTF-8 chunks into lines that keep their ``\\n`` (csv needs them for quoted newlines)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    pending = ""
    for chunk in chunks:
        pending += decoder.decode(chunk).replace("\x00", "")
        *complete, pending = pending.split("\n")
        for line in complete:
            yield line + "\n"
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:  # "-0000" means UTC with no zone information (RFC 5322)
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _header_locator(value: str | None) -> str | None:
    if value is None or value.strip() in ("", "null"):
        return None
    return value.strip()


def _header_int(value: str | None, name: str) -> int:
    try:
        return int(value) if value is not None else -1
    except ValueError:
        raise SalesforceRequestError(f"bulk results carried a non-integer {name}: {value!r}") from None


def _query_page(raw: Any) -> QueryPage:
    body = _as_dict(raw)
    records = body.get("records")
    if not isinstance(records, list):
        raise SalesforceRequestError("query answered without a records list")
    done = bool(body.get("done", True))
    next_url = body.get("nextRecordsUrl")
    return QueryPage(
        records=records,
        total_size=int(body.get("totalSize", len(records))),
        next_url=next_url if isinstance(next_url, str) and not done else None,
        done=done,
    )


def _as_dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SalesforceRequestError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _batch_headers(batch_size: int) -> dict[str, str]:
    if not MIN_BATCH_SIZE <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be between {MIN_BATCH_SIZE} and {MAX_BATCH_SIZE}, got {batch_size}")
    return {"Sforce-Query-Options": f"batchSize={batch_size}"}


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"invalid {what} name {name!r}")


def _check_job_id(job_id: str) -> None:
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise ValueError(f"invalid Bulk job id {job_id!r}")


def _check_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (got naive {value.isoformat()})")


def _check_composite(subrequests: list[dict[str, Any]]) -> None:
    if not subrequests:
        raise ValueError("composite needs at least one subrequest")
    if len(subrequests) > MAX_COMPOSITE_SUBREQUESTS:
        raise ValueError(f"composite takes at most {MAX_COMPOSITE_SUBREQUESTS} subrequests, got {len(subrequests)}")
    queries = 0
    refs: set[str] = set()
    for i, sub in enumerate(subrequests):
        for key in ("method", "url", "referenceId"):
            if not isinstance(sub.get(key), str) or not sub[key]:
                raise ValueError(f"composite subrequest {i} lacks {key!r}")
        if sub["referenceId"] in refs:
            raise ValueError(f"composite subrequest {i} repeats referenceId {sub['referenceId']!r}")
        refs.add(sub["referenceId"])
        if not sub["url"].startswith("/services/data/"):
            raise ValueError(f"composite subrequest {i} url must start with /services/data/")
        if _COMPOSITE_QUERYISH.match(sub["url"]):
            queries += 1
    if queries > MAX_COMPOSITE_QUERIES:
        raise ValueError(
            f"composite allows at most {MAX_COMPOSITE_QUERIES} query/collections subrequests, got {queries}"
        )


def _check_records(records: list[dict[str, Any]], *, need_type: bool, need_id: bool) -> None:
    if len(records) > MAX_COLLECTION_RECORDS:
        raise ValueError(f"collections take at most {MAX_COLLECTION_RECORDS} records, got {len(records)}")
    for i, record in enumerate(records):
        if need_type and not (isinstance(record.get("attributes"), dict) and record["attributes"].get("type")):
            raise ValueError(f"record {i} lacks attributes.type")
        if need_id and not (record.get("id") or record.get("Id")):
            raise ValueError(f"record {i} lacks an id (update needs one)")


def _raise_if_failed(job: dict[str, Any]) -> None:
    state = job.get("state")
    if state in _FAILED_JOB_STATES:
        raise BulkJobFailed(
            f"bulk job {job.get('id')} {state}: {job.get('errorMessage') or 'no error message'}",
            error_code=str(state),
            job=job,
        )


def _first_error(content: Any) -> tuple[str | None, str]:
    """(errorCode, message) from a §0.4 error body (or whatever text came back)."""
    if isinstance(content, list) and content and isinstance(content[0], dict):
        first = content[0]
        code = first.get("errorCode") or first.get("statusCode")
        return (str(code) if code else None), str(first.get("message", ""))
    if isinstance(content, dict):
        code = content.get("errorCode") or content.get("error")
        return (str(code) if code else None), str(content.get("message") or content.get("error_description") or "")
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content or "")
    return None, text[:500]


def _error_code(content: Any) -> str | None:
    return _first_error(content)[0]


def _map_error(what: str, status: int, content: Any, attempts: int) -> SalesforceError:
    code, message = _first_error(content)
    text = f"{what}: {message}" if message else what
    if code == "REQUEST_LIMIT_EXCEEDED":
        return SalesforceRateLimited(text, error_code=code, status=status)
    if code == "QUERY_TIMEOUT":
        return SalesforceQueryTimeout(text, error_code=code, status=status)
    if code == "INVALID_QUERY_LOCATOR":
        return InvalidQueryLocator(text, error_code=code, status=status)
    if code in _REPLICATION_CODES:
        return ReplicationWindowError(text, error_code=code, status=status)
    if code == "INVALID_SESSION_ID" or status == 401:
        return SalesforceAuthError(text, error_code=code, status=status)
    if status >= 500:
        return SalesforceUnavailable(
            f"{text} (HTTP {status} after {attempts} attempts)", error_code=code, status=status
        )
    return SalesforceRequestError(text, error_code=code, status=status)
