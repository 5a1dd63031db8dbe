"""Typed errors of the Salesforce adapter.

Step Functions ``Retry``/``Catch`` match these class names, so the names are part of the
contract: rename nothing.  Every error carries the Salesforce ``error_code`` (``errorCode`` of
the §0.4 body, or the OAuth ``error``), the HTTP ``status`` (None when no response arrived)
and a human ``message``.
"""

from __future__ import annotations

from typing import Any


class SalesforceError(Exception):
    """Base class of every error raised by :mod:`sfsync.salesforce`."""

    def __init__(self, message: str, *, error_code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.status = status

    def __str__(self) -> str:
        parts = [p for p in (str(self.status) if self.status is not None else None, self.error_code) if p]
        prefix = " ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message


class SalesforceConfigError(SalesforceError):
    """The Salesforce secret is unusable (missing/invalid key, plain HTTP to a non-loopback host)."""


class SalesforceAuthError(SalesforceError):
    """The token endpoint refused us, or a fresh token was rejected as well."""


class SalesforceUnavailable(SalesforceError):
    """5xx, connection errors or timeouts that outlived the retries."""


class SalesforceRateLimited(SalesforceError):
    """``REQUEST_LIMIT_EXCEEDED``: the org's API allocation (or concurrency limit) is spent."""


class SalesforceQueryTimeout(SalesforceError):
    """``QUERY_TIMEOUT``: the SOQL query ran too long; narrow the window or use Bulk."""


class SalesforceRequestError(SalesforceError):
    """Any other request-level error (4xx with ``errorCode`` + ``message``)."""


class InvalidQueryLocator(SalesforceError):
    """``INVALID_QUERY_LOCATOR``: the query cursor expired; restart the query."""


class ReplicationWindowError(SalesforceError):
    """``INVALID_REPLICATION_DATE`` / ``EXCEEDED_ID_LIMIT`` from getUpdated/getDeleted."""


class BulkJobFailed(SalesforceError):
    """A Bulk API 2.0 job ended ``Failed`` or ``Aborted``; ``job`` is its JobInfo."""

    def __init__(
        self,
        message: str,
        *,
        error_code: str | None = None,
        status: int | None = None,
        job: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, error_code=error_code, status=status)
        self.job = job or {}


__all__ = [
    "BulkJobFailed",
    "InvalidQueryLocator",
    "ReplicationWindowError",
    "SalesforceAuthError",
    "SalesforceConfigError",
    "SalesforceError",
    "SalesforceQueryTimeout",
    "SalesforceRateLimited",
    "SalesforceRequestError",
    "SalesforceUnavailable",
]
