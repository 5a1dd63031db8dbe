"""The engine's one set of Salesforce ports: what the use cases need from :class:`SalesforceClient`.

Each capability is one small Protocol restating the client's own signatures (``Describe``,
``Query``, ``Bulk``, ...); each use case names the combination it needs (``CyclePort``,
``CopyPort``, ...), so a test double implements only what its use case calls and the client
satisfies them all (checked by mypy at the end of this module).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

from sfsync.salesforce.client import QueryPage

if TYPE_CHECKING:
    from sfsync.salesforce.client import SalesforceClient


class Counted(Protocol):
    #: API calls made so far (the cycles' ``ApiCalls`` metric reads it).
    calls_made: int


class Describe(Counted, Protocol):
    def describe(self, obj: str) -> dict[str, Any]: ...


class Query(Protocol):
    def query_pages(self, soql: str, *, include_deleted: bool = True, batch_size: int = 2000) -> Iterator[Any]: ...


class QueryMore(Protocol):
    def query_more(self, next_url: str, include_deleted: bool = True) -> Any: ...


class Replication(Protocol):
    def get_deleted(self, obj: str, start: dt.datetime, end: dt.datetime) -> dict[str, Any]: ...


class Bulk(Protocol):
    def bulk_query_create(
        self, soql: str, *, operation: Literal["query", "queryAll"] = "queryAll"
    ) -> dict[str, Any]: ...

    def bulk_job_status(self, job_id: str) -> dict[str, Any]: ...

    def bulk_results_pages(
        self, job_id: str, *, max_records: int = 50000, locator: str | None = None
    ) -> Iterator[Any]: ...


class Composite(Counted, Protocol):
    @property
    def api_version(self) -> str: ...

    def composite(self, subrequests: list[dict[str, Any]], all_or_none: bool = False) -> list[dict[str, Any]]: ...


class Usage(Protocol):
    def api_usage(self) -> tuple[int, int] | None: ...

    def limits(self) -> dict[str, Any]: ...


class Retrieve(Protocol):
    def retrieve(self, obj: str, ids: list[str], fields: list[str]) -> list[dict[str, Any] | None]: ...


class Collections(Protocol):
    def collections(
        self,
        method: Any,
        records: list[dict[str, Any]],
        all_or_none: bool = False,
        *,
        call_options_client: str = "sfsync",
        auto_assign: bool = False,
    ) -> list[dict[str, Any]]: ...

    def upsert_collection(
        self,
        obj: str,
        ext_field: str,
        records: list[dict[str, Any]],
        all_or_none: bool = False,
        *,
        call_options_client: str = "sfsync",
        auto_assign: bool = False,
    ) -> list[dict[str, Any]]: ...


class ServerTime(Protocol):
    def server_time(self) -> dt.datetime | None: ...


# -- what each use case needs ----------------------------------------------------------------------


class QueryPort(Query, Protocol):
    """Field selection and the formula refresh (:mod:`sfsync.inbound.fields`, ``formulas``)."""


class CyclePort(Describe, Query, Replication, Bulk, Protocol):
    """An incremental cycle (:mod:`sfsync.inbound.cycle`, lifecycle)."""


class CopyPort(Describe, Bulk, Query, QueryMore, Protocol):
    """The full copy's steps (:mod:`sfsync.fullcopy.steps`)."""


class ProbePort(Composite, Protocol):
    """The dispatcher's change probe (:mod:`sfsync.dispatch.probe`)."""


class EconomyPort(Composite, Usage, Protocol):
    """The dispatcher's API economy: probe, budget (:mod:`sfsync.dispatch.economy`)."""


class ChangePort(Describe, Composite, QueryMore, Protocol):
    """The change-event path (:mod:`sfsync.changes.apply`)."""


class LifecyclePort(Replication, Query, Protocol):
    """Deletes and the Id reconciliation (:mod:`sfsync.inbound.lifecycle`)."""


class WriteBackPort(Retrieve, Collections, ServerTime, Protocol):
    """The write-back (:mod:`sfsync.writeback`): its composite calls carry the request's own headers."""

    @property
    def api_version(self) -> str: ...

    def describe(self, obj: str) -> dict[str, Any]: ...

    def composite(
        self,
        subrequests: list[dict[str, Any]],
        all_or_none: bool = False,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]: ...

    def query_pages(self, soql: str, *, include_deleted: bool = True, batch_size: int = 2000) -> Any: ...


class VerifyPort(Describe, Retrieve, Protocol):
    """Verify (:mod:`sfsync.ops.verify`)."""

    def query_pages(
        self, soql: str, *, include_deleted: bool = True, batch_size: int = 2000
    ) -> Iterator[QueryPage]: ...


if TYPE_CHECKING:

    def _client_has_every_port(client: SalesforceClient) -> list[object]:
        """mypy's check that the client satisfies every port above (never called)."""
        query: QueryPort = client
        cycle: CyclePort = client
        copy: CopyPort = client
        probe: ProbePort = client
        economy: EconomyPort = client
        change: ChangePort = client
        lifecycle: LifecyclePort = client
        writeback: WriteBackPort = client
        verify: VerifyPort = client
        return [query, cycle, copy, probe, economy, change, lifecycle, writeback, verify]


__all__ = [
    "Bulk",
    "ChangePort",
    "Collections",
    "Composite",
    "CopyPort",
    "Counted",
    "CyclePort",
    "Describe",
    "EconomyPort",
    "LifecyclePort",
    "ProbePort",
    "Query",
    "QueryMore",
    "QueryPort",
    "Replication",
    "Retrieve",
    "ServerTime",
    "Usage",
    "VerifyPort",
    "WriteBackPort",
]
