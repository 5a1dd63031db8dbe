"""The full copy's documents in the state table: one item per object (``pk=OBJECT#<name>``,
``sk=FULLCOPY``), the copy's truth (parts, jobs, cursors, counts), written with an optimistic
``version`` check; the dispatcher and the ``sfsync`` CLI read its progress.  The workflow's steps
(:mod:`sfsync.fullcopy.steps`) are its only writers besides the dispatcher's failure notes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from sfsync.core.clock import parse_instant, to_iso_ms
from sfsync.core.exceptions import (
    CopyConflict,
    StoreError,
    StoreThrottled,
)
from sfsync.store.put_rules import COUNTER_FOR

FULLCOPY_SK = "FULLCOPY"
OBJECT_PREFIX = "OBJECT#"
SAVE_ATTEMPTS = 3
Mode = Literal["bulk", "rest"]

IdRange = tuple[str | None, str | None]
_NO_IDS: IdRange = (None, None)


def error_text(error: Mapping[str, Any] | None) -> str:
    """One line for a recorded step error (``{"Error": ..., "Cause": ...}``): what status shows."""
    if not error:
        return ""
    kind, cause = str(error.get("Error") or "Error"), str(error.get("Cause") or "")
    with contextlib.suppress(ValueError, TypeError):  # a Lambda error's Cause is JSON with errorMessage
        decoded = json.loads(cause)
        if isinstance(decoded, dict) and decoded.get("errorMessage"):
            cause = str(decoded["errorMessage"])
    return f"{kind}: {cause}"[:500] if cause else kind[:500]


def progress_figures(records_copied: int, total: int | None, elapsed_seconds: float) -> dict[str, float | None]:
    """Rate (records/s) and ETA (s) from what is copied so far."""
    rate = records_copied / elapsed_seconds if elapsed_seconds > 0 and records_copied > 0 else None
    eta = None
    if rate and total is not None:
        eta = max(0.0, (total - records_copied) / rate)
    return {"rate_per_s": round(rate, 1) if rate else None, "eta_seconds": round(eta, 1) if eta is not None else None}


# ------------------------------------------------------------------------------------------------
# The copy document (state table item OBJECT#<name> / FULLCOPY)
# ------------------------------------------------------------------------------------------------


@dataclass
class Part:
    """One slice of the copy: ``SystemModstamp`` in ``[lo, hi)`` and (after an Id split) ``Id`` in
    ``[id_lo, id_hi)``; ``split_by`` says how it was cut from its parent (None: not cut)."""

    lo: str | None = None
    hi: str | None = None
    depth: int = 0
    mode: Mode = "bulk"
    job_id: str | None = None
    job_state: str | None = None
    job_created: str | None = None
    attempts: int = 0
    polls: int = 0
    locator: str | None = None
    next_url: str | None = None
    rest_after: list[str] | None = None
    started: bool = False
    done: bool = False
    records_done: int = 0
    total: int | None = None
    id_lo: str | None = None
    id_hi: str | None = None
    split_by: Literal["stamp", "id"] | None = None

    def bounds(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        return (parse_instant(self.lo) if self.lo else None, parse_instant(self.hi) if self.hi else None)

    @property
    def ids(self) -> IdRange:
        return (self.id_lo, self.id_hi)


@dataclass
class Copy:
    object_name: str
    copy_id: str
    fields: list[str]
    types: dict[str, list[str]]
    policy: dict[str, int]
    status: Literal["running", "done", "failed"] = "running"
    parts: list[Part] = field(default_factory=lambda: [Part()])
    copy_started_at: str | None = None
    engine_started_at: str | None = None
    finished_at: str | None = None
    watermark: str | None = None
    records_copied: int = 0
    pages: int = 0
    api_calls: int = 0
    bulk_jobs: int = 0
    bulk_failures: int = 0
    splits: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTER_FOR.values(), 0))
    warnings: list[str] = field(default_factory=list)
    error: dict[str, str] | None = None
    requested_by: str | None = None
    #: The execution driving the copy (``$$.Execution.Id``): ``plan`` takes the copy over, and a step
    #: of any other execution leaves it alone (route ``superseded``).  None: any execution may.
    execution_arn: str | None = None
    #: Consecutive failed attempts (reset when the copy is done): the dispatcher's retry back-off.
    failures: int = 0
    version: int = 0

    @property
    def current(self) -> int | None:
        for index, part in enumerate(self.parts):
            if not part.done:
                return index
        return None

    @property
    def total(self) -> int | None:
        if any(p.total is None and not p.done for p in self.parts):
            return None
        return sum(p.total if p.total is not None else p.records_done for p in self.parts)

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("version")
        return doc

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], version: int) -> Copy:
        data = dict(doc)
        data["parts"] = [Part(**p) for p in data.get("parts", [])]
        return cls(**data, version=version)


@dataclass(frozen=True, slots=True)
class CopyProgress:
    """A copy's progress as of its last checkpoint (what ``sfsync status`` shows).

    ``updated_at`` is the copy's heartbeat: every step that does work saves the document.
    """

    object_name: str
    status: str
    records_copied: int
    total: int | None
    rate_per_s: float | None
    eta_seconds: float | None
    updated_at: dt.datetime | None
    failures: int = 0
    error: str | None = None
    execution_arn: str | None = None
    version: int = 0


class CopyStore:
    """Reads and writes the copy documents (optimistic concurrency on ``version``)."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def _key(self, object_name: str) -> dict[str, Any]:
        return {"pk": {"S": OBJECT_PREFIX + object_name}, "sk": {"S": FULLCOPY_SK}}

    def get(self, object_name: str) -> Copy | None:
        try:
            response = self._client.get_item(TableName=self._table, Key=self._key(object_name), ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise StoreError(f"cannot read the full copy of {object_name}: {exc}") from exc
        item = response.get("Item")
        if not item:
            return None
        return Copy.from_doc(json.loads(item["doc"]["S"]), int(item["version"]["N"]))

    def progress(self, object_name: str) -> CopyProgress | None:
        """The progress figures saved with the copy's last checkpoint (None: never copied)."""
        try:
            response = self._client.get_item(
                TableName=self._table,
                Key=self._key(object_name),
                ProjectionExpression=(
                    "#s, records_copied, #t, rate_per_s, eta_seconds, updated_at, failures, #e, execution_arn, version"
                ),
                ExpressionAttributeNames={"#s": "status", "#t": "total", "#e": "error"},
                ConsistentRead=True,  # a cycle decides from it whether it is the object's only writer
            )
        except (ClientError, BotoCoreError) as exc:
            raise StoreError(f"cannot read the full copy of {object_name}: {exc}") from exc
        item = response.get("Item")
        if not item:
            return None

        def number(name: str) -> Decimal | None:
            return Decimal(item[name]["N"]) if name in item else None

        total, rate, eta = number("total"), number("rate_per_s"), number("eta_seconds")
        return CopyProgress(
            object_name=object_name,
            status=item["status"]["S"],
            records_copied=int(number("records_copied") or 0),
            total=None if total is None else int(total),
            rate_per_s=None if rate is None else float(rate),
            eta_seconds=None if eta is None else float(eta),
            updated_at=parse_instant(item["updated_at"]["S"]) if "updated_at" in item else None,
            failures=int(number("failures") or 0),
            error=item["error"]["S"] if "error" in item else None,
            execution_arn=item["execution_arn"]["S"] if "execution_arn" in item else None,
            version=int(number("version") or 0),
        )

    def save(self, copy: Copy, *, now: dt.datetime) -> bool:
        """Write ``copy`` if nobody wrote since it was read; False on a conflict (re-read and retry)."""
        total = copy.total
        item: dict[str, Any] = {
            **self._key(copy.object_name),
            "version": {"N": str(copy.version + 1)},
            "doc": {"S": json.dumps(copy.to_doc(), separators=(",", ":"))},
            "status": {"S": copy.status},
            "copy_id": {"S": copy.copy_id},
            "records_copied": {"N": str(copy.records_copied)},
            "updated_at": {"S": to_iso_ms(now)},
        }
        if total is not None:
            item["total"] = {"N": str(total)}
        if copy.failures:
            item["failures"] = {"N": str(copy.failures)}
        if copy.error:
            item["error"] = {"S": error_text(copy.error)}
        if copy.execution_arn:
            item["execution_arn"] = {"S": copy.execution_arn}
        if copy.engine_started_at:
            elapsed = (now - parse_instant(copy.engine_started_at)).total_seconds()
            for name, value in progress_figures(copy.records_copied, total, elapsed).items():
                if value is not None:
                    item[name] = {"N": str(value)}
        if copy.version == 0:
            condition, values = "attribute_not_exists(pk)", {}
        else:
            condition, values = "version = :v", {":v": {"N": str(copy.version)}}
        try:
            self._client.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression=condition,
                **({"ExpressionAttributeValues": values} if values else {}),
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                return False
            if code in {"ProvisionedThroughputExceededException", "ThrottlingException"}:
                raise StoreThrottled(f"state table kept throttling the full copy of {copy.object_name}") from exc
            raise StoreError(f"cannot save the full copy of {copy.object_name}: {code}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"cannot save the full copy of {copy.object_name}: {exc}") from exc
        copy.version += 1
        return True

    def record_failure(
        self,
        name: str,
        error: Mapping[str, str],
        *,
        now: dt.datetime,
        requested_by: str | None,
        policy: Mapping[str, int],
        unless: Callable[[Copy], bool] | None = None,
        fresh: bool = False,
    ) -> Copy | None:
        """Mark the copy of ``name`` failed with ``error`` and count the failure (``failures`` + 1).

        A document is made when there is none; ``fresh`` replaces the stored one by a new document
        without parts (the retry plans the copy from zero: a re-sync whose plan never ran), keeping its
        failure count.  None when ``unless(stored copy)`` says the document no longer needs it.
        """
        for _attempt in range(SAVE_ATTEMPTS):
            stored = self.get(name)
            copy = stored or Copy(
                object_name=name,
                copy_id=f"{name}-failed-{now.strftime('%Y%m%dT%H%M%S')}",
                fields=[],
                types={},
                policy=dict(policy),
                parts=[],
                engine_started_at=to_iso_ms(now),
                requested_by=requested_by,
            )
            if unless is not None and unless(copy):
                return None
            if fresh and stored is not None:
                copy = Copy(
                    object_name=name,
                    copy_id=f"{name}-failed-{now.strftime('%Y%m%dT%H%M%S')}",
                    fields=[],
                    types={},
                    policy=dict(policy) or stored.policy,
                    parts=[],
                    engine_started_at=to_iso_ms(now),
                    requested_by=requested_by,
                    failures=stored.failures,
                    version=stored.version,
                )
            copy.status = "failed"
            copy.error = dict(error)
            copy.finished_at = to_iso_ms(now)
            copy.failures += 1
            if self.save(copy, now=now):
                return copy
        raise CopyConflict(f"could not record the failure of {name}")

    def replace_copy(self, copy: Copy, *, now: dt.datetime) -> None:
        """Start a new copy over whatever document exists (plan: first copy or re-sync)."""
        existing = self.get(copy.object_name)
        copy.version = existing.version if existing else 0
        if not self.save(copy, now=now):
            raise CopyConflict(f"the full copy of {copy.object_name} was changed while it was being planned")


__all__ = [
    "Copy",
    "CopyProgress",
    "CopyStore",
    "Part",
    "error_text",
    "progress_figures",
]
