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
* ``bulk_job_failed``: the next ``records`` Bulk query jobs (Bulk 2.0) or query batches (Bulk
  1.0) end ``Failed`` with ``message``;
* ``bulk_query_refused``: Bulk 2.0 query job *creations* (``POST /jobs/query``) are refused with
  HTTP 400 ``[{"errorCode":"API_ERROR","message":"Selecting compound data not supported in Bulk
  Query"}]`` (``message`` replaces the text), as real orgs refuse objects or fields Bulk cannot
  query (spec §5.2, §13.5); the optional ``object_name`` limits the refusal to jobs whose query
  reads that object (case-insensitive).  No job is created.  Only query job creation is affected:
  polls, results, aborts and ingest jobs pass, and ``count`` counts refused creations only.  A
  Bulk 1.0 query batch (``POST /services/async/<v>/job/<id>/batch`` on a query job over that
  object) is added and ends ``Failed`` with ``InvalidBatch : Failed to process query: API_ERROR:
  <message>``, as Bulk 1.0 reports a query it cannot run;
* ``lost_response``: the request is *carried out* (writes commit), then answered with HTTP 500
  ``UNKNOWN_EXCEPTION`` as if the response had been lost - an ambiguous outcome for the client,
  like a read timeout after the server committed.

Most kinds act before the handler runs.  ``bulk_query_refused`` needs what only the handler knows
(that the request creates a query job, and for which object): :meth:`FaultInjector.fire` offers
such *handler-level* rules to the request being served (a context variable, set per request and
per thread) without consuming them, and the Bulk handler claims one with
:func:`claim_bulk_query_refusal`, which consumes ``count``.  The errorCode ``API_ERROR`` is not in
the spec (its §13.5 gives only the message); it is what public client code reports for this
refusal, and clients recognise the refusal by the message.
"""

from __future__ import annotations

import contextvars
import itertools
import random
import threading
from dataclasses import asdict, dataclass
from typing import Any

from .errors import ApiError, invalid_session, request_limit_exceeded
from .soql import COMPOUND_IN_BULK

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
        "bulk_query_refused",
    }
)
#: Kinds applied by the request's handler (which claims them), not before it runs.
HANDLER_KINDS = frozenset({"bulk_query_refused"})
BULK_REFUSED_CODE = "API_ERROR"  # as the emulator's own compound-field refusal (soql.py)
BULK_REFUSED_MESSAGE = COMPOUND_IN_BULK


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
    object_name: str | None = None  # bulk_query_refused: refuse only jobs querying this object
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
        if self.object_name is not None:
            if self.kind != "bulk_query_refused":
                raise ValueError("object_name applies to bulk_query_refused rules only")
            if not isinstance(self.object_name, str) or not self.object_name.strip():
                raise ValueError("object_name must be a non-empty sObject name")
        if self.kind == "bulk_query_refused":
            if self.family not in ("bulk", "any"):
                raise ValueError(f"bulk_query_refused acts on the 'bulk' family only, not {self.family!r}")
            if self.method not in (None, "POST"):
                raise ValueError(f"bulk_query_refused acts on job creation (POST) only, not {self.method}")

    def matches(self, family: str, method: str) -> bool:
        return (self.family in ("any", family)) and (self.method is None or self.method == method.upper())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def refuses(self, object_name: str) -> bool:
        """Whether this ``bulk_query_refused`` rule refuses a query job over ``object_name``."""
        return self.object_name is None or self.object_name.lower() == object_name.lower()

    def refusal_error(self) -> ApiError:
        """What a ``bulk_query_refused`` rule answers a query job creation with."""
        return ApiError(400, BULK_REFUSED_CODE, self.message or BULK_REFUSED_MESSAGE)

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
        """Rules that trigger for this request, in the order they were added.

        Handler-level rules (:data:`HANDLER_KINDS`) that trigger are not returned nor consumed:
        they are offered to this request's handler (see :func:`claim_bulk_query_refusal`).
        """
        fired: list[FaultRule] = []
        offered: list[FaultRule] = []
        with self._lock:
            keep: list[FaultRule] = []
            for rule in self._rules:
                if rule.matches(family, method) and (rule.probability is None or rng.random() < rule.probability):
                    if rule.kind in HANDLER_KINDS:
                        offered.append(rule)
                        keep.append(rule)
                        continue
                    fired.append(rule)
                    if rule.count is not None:
                        rule.count -= 1
                        if rule.count <= 0:
                            continue
                keep.append(rule)
            self._rules = keep
        _OFFERED.set(_Offer(self, tuple(offered)))
        return fired

    def claim(self, rule: FaultRule) -> bool:
        """Consume one use of an offered rule; False when another request used it up meanwhile."""
        with self._lock:
            if not any(r is rule for r in self._rules):
                return False
            if rule.count is not None:
                rule.count -= 1
                if rule.count <= 0:
                    self._rules = [r for r in self._rules if r is not rule]
            return True


@dataclass(frozen=True)
class _Offer:
    """The handler-level rules that triggered for the request being served."""

    injector: FaultInjector
    rules: tuple[FaultRule, ...]


_OFFERED: contextvars.ContextVar[_Offer | None] = contextvars.ContextVar("sfsync_emulator_offered_faults", default=None)


def claim_bulk_query_refusal(object_name: str) -> ApiError | None:
    """For the Bulk query job creation being served: the 400 to refuse it with, or None.

    Consumes one use of the first offered ``bulk_query_refused`` rule that applies to
    ``object_name``; the offer is then withdrawn, so one request claims at most once.
    """
    offer = _OFFERED.get()
    _OFFERED.set(None)
    if offer is None:
        return None
    for rule in offer.rules:
        if rule.kind == "bulk_query_refused" and rule.refuses(object_name) and offer.injector.claim(rule):
            return rule.refusal_error()
    return None
