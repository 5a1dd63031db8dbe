"""The two error shapes of the Salesforce API (spec §0.4 and §6.3), kept distinct.

* :class:`ApiError` is a request-level error: HTTP status + JSON array body
  ``[{"message": ..., "errorCode": ..., "fields": [...]}]``.
* :class:`DmlError` is a per-record save error: ``{"statusCode": ..., "message": ...,
  "fields": [...]}`` inside a SaveResult's ``errors``; single-record endpoints turn it into an
  ApiError (HTTP 400, ``errorCode`` = the statusCode).
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, error_code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(f"{status} {error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = fields

    def body(self) -> list[dict[str, Any]]:
        entry: dict[str, Any] = {"message": self.message, "errorCode": self.error_code}
        if self.fields is not None:
            entry["fields"] = self.fields
        return [entry]


class DmlError(Exception):
    def __init__(self, status_code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(f"{status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.fields = fields or []

    def entry(self) -> dict[str, Any]:
        return {"statusCode": self.status_code, "message": self.message, "fields": self.fields}

    def as_api_error(self, status: int = 400) -> ApiError:
        return ApiError(status, self.status_code, self.message, self.fields)


def invalid_session() -> ApiError:
    return ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")


def request_limit_exceeded() -> ApiError:
    return ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")


def not_found(what: str = "The requested resource does not exist") -> ApiError:
    return ApiError(404, "NOT_FOUND", what)


def invalid_type(name: str) -> ApiError:
    return ApiError(
        400,
        "INVALID_TYPE",
        f"sObject type '{name}' is not supported. If you are attempting to use a custom object, "
        "be sure to append the '__c' after the entity name. Please reference your WSDL or the "
        "describe call for the appropriate names.",
    )
