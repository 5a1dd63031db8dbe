"""Fault injection: rules matched per request, applied before the handler runs.

A rule names an endpoint *family* (``query``, ``describe``, ``sobjects``, ``composite``,
``bulk``, ``replication``, ``limits`` or ``any``), optionally an HTTP method, and fires either
with a probability (drawn from the org's seeded RNG, so runs are reproducible) or for the next
``count`` matching calls (or, with neither, on every matching call).

Kinds and their effect:

* ``http_500`` / ``http_503``: the request fails with that status (§0.4 array body);
* ``slow``: the request sleeps ``delay_s`` real seconds, then proceeds;
* ``invalid_session``: 401 ``INVALID_SESSION_ID``;
* ``request_limit``: 403 ``REQUEST_LIMIT_EXCEEDED``;
* ``query_timeout``: 400 ``QUERY_TIMEOUT``;
* ``lock_row``: the next ``records`` DML records fail with ``UNABLE_TO_LOCK_ROW``;
* ``bulk_job_failed``: the next ``records`` Bulk jobs end ``Failed`` with ``message``;
* ``lost_response``: the request is *carried out* (writes commit), then answered with HTTP 500
  ``UNKNOWN_EXCEPTION`` as if the response had been lost - an ambiguous outcome for the client,
  like a read timeout after the server committed.
"""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import asdict, dataclass
from typing import Any

from .errors import ApiError, invalid_session, request_limit_exceeded

FAMILIES = frozenset({"query", "describe", "sobjects", "composite", "bulk", "replication", "limits", "any"})
KINDS = frozenset(
    {
        "http_500",
        "http_503",
        "slow",
        "invalid_session",
        "request_limit",
        "query_timeout",
        "lock_row",
        "bulk_job_failed",
        "lost_response",
    }
)


@dataclass
class FaultRule:
    kind: str
    family: str = "any"
    method: str | None = None
    probability: float | None = None
    count: int | None = None  # fire for the next N matching calls, then retire
    delay_s: float = 0.0  # slow
    records: int = 1  # lock_row: records to fail; bulk_job_failed: jobs to fail
    message: str | None = None
    id: int = 0

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(KINDS)}")
        if self.family not in FAMILIES:
            raise ValueError(f"unknown endpoint family {self.family!r}; expected one of {sorted(FAMILIES)}")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be >= 1")
        if self.delay_s < 0 or self.records < 1:
            raise ValueError("delay_s must be >= 0 and records >= 1")
        if self.method is not None:
            self.method = self.method.upper()

    def matches(self, family: str, method: str) -> bool:
        return (self.family in ("any", family)) and (self.method is None or self.method == method.upper())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lost_response_error(self) -> ApiError:
        """What a ``lost_response`` rule answers with after the request was carried out."""
        return ApiError(
            500, "UNKNOWN_EXCEPTION", self.message or "The response was lost after the request was carried out."
        )

    def error(self) -> ApiError | None:
        """The request-level error this rule answers with (None for side-effect kinds)."""
        if self.kind == "http_500":
            return ApiError(
                500,
                "UNKNOWN_EXCEPTION",
                self.message or "An unexpected error occurred. Please include this ErrorId if you contact support.",
            )
        if self.kind == "http_503":
            return ApiError(503, "SERVER_UNAVAILABLE", self.message or "Server temporarily unavailable.")
        if self.kind == "invalid_session":
            return invalid_session()
        if self.kind == "request_limit":
            return request_limit_exceeded()
        if self.kind == "query_timeout":
            return ApiError(400, "QUERY_TIMEOUT", "Your query request was running for too long.")
        return None


class FaultInjector:
    """The active rules; :meth:`fire` picks those that trigger for one request."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> FaultRule:
        rule.validate()
        with self._lock:
            rule.id = next(self._ids)
            self._rules.append(rule)
        return rule

    def clear(self, rule_id: int | None = None) -> None:
        with self._lock:
            self._rules = [r for r in self._rules if rule_id is not None and r.id != rule_id]

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def fire(self, family: str, method: str, rng: random.Random) -> list[FaultRule]:
        """Rules that trigger for this request, in the order they were added."""
        fired: list[FaultRule] = []
        with self._lock:
            keep: list[FaultRule] = []
            for rule in self._rules:
                if rule.matches(family, method) and (rule.probability is None or rng.random() < rule.probability):
                    fired.append(rule)
                    if rule.count is not None:
                        rule.count -= 1
                        if rule.count <= 0:
                            continue
                keep.append(rule)
            self._rules = keep
        return fired
