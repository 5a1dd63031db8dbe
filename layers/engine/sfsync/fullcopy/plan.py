"""The full copy's plan: pure logic of the workflow (no I/O) - the copy policy, the failure
policy, how a part is cut (by ``SystemModstamp``, then by ``Id``), the SOQL of a part, which objects
Bulk reads, progress figures, and for the dispatcher which objects need a copy and the execution name
that makes a restart a no-op.  The steps that run it are :mod:`sfsync.fullcopy.steps`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sfsync.core.clock import parse_instant, to_soql
from sfsync.core.exceptions import (
    ConfigurationError,
)
from sfsync.core.registry import ObjectSpec
from sfsync.core.window import truncate_ms
from sfsync.inbound.fields import check_soql_names, keyset_after, select_fields
from sfsync.items.csv import FieldTypes, field_types
from sfsync.store.copies import _NO_IDS, IdRange, Mode

Next = Literal["wait", "load", "start", "finish", "continue", "done", "failed", "superseded"]
FailureAction = Literal["retry", "split", "rest"]


@dataclass(frozen=True, slots=True)
class CopyPolicy:
    """Tunables of one object's copy (defaults suit a real org; tests shrink them)."""

    max_job_attempts: int = 2
    split_factor: int = 4
    max_split_depth: int = 2
    max_records: int = 50_000
    poll_base_seconds: int = 5
    poll_cap_seconds: int = 60
    pages_per_execution: int = 500

    def __post_init__(self) -> None:
        if self.max_job_attempts < 1 or self.split_factor < 2 or self.max_split_depth < 0:
            raise ValueError("max_job_attempts >= 1, split_factor >= 2 and max_split_depth >= 0 required")
        if self.max_records < 1 or self.poll_base_seconds < 1 or self.poll_cap_seconds < self.poll_base_seconds:
            raise ValueError("max_records >= 1 and 1 <= poll_base_seconds <= poll_cap_seconds required")
        if self.pages_per_execution < 1:
            raise ValueError("pages_per_execution must be >= 1")


# ------------------------------------------------------------------------------------------------
# Pure logic: back-off, failure policy, splitting, SOQL, row typing, field selection, progress
# ------------------------------------------------------------------------------------------------


def poll_wait_seconds(polls: int, policy: CopyPolicy) -> int:
    """Seconds the Wait state sleeps before poll number ``polls + 1``: base * 2**polls, capped."""
    if polls < 0:
        raise ValueError("polls must be >= 0")
    return int(min(policy.poll_cap_seconds, policy.poll_base_seconds * (2 ** min(polls, 30))))


def failure_action(attempts: int, depth: int, policy: CopyPolicy) -> FailureAction:
    """After a failed job of a part: retry it, split it, or read it with REST."""
    if attempts < policy.max_job_attempts:
        return "retry"
    if depth < policy.max_split_depth:
        return "split"
    return "rest"


def split_range(
    lo: dt.datetime | None,
    hi: dt.datetime | None,
    *,
    first: dt.datetime,
    last: dt.datetime,
    factor: int,
) -> list[tuple[dt.datetime | None, dt.datetime | None]]:
    """``[lo, hi)`` cut into ``factor`` adjacent ranges with cuts spread evenly over ``[first, last)``.

    ``first``/``last`` are where the data lies (the part's own bounds when set); open ends stay open,
    so the pieces cover exactly what the part covered.  Returns ``[(lo, hi)]`` when the span is too
    small to cut (fewer than ``factor`` milliseconds).
    """
    if factor < 2:
        raise ValueError("factor must be >= 2")
    start = lo if lo is not None else first
    end = hi if hi is not None else last
    span_ms = int((end - start).total_seconds() * 1000)
    if span_ms < factor:
        return [(lo, hi)]
    cuts = [truncate_ms(start + dt.timedelta(milliseconds=span_ms * i // factor)) for i in range(1, factor)]
    bounds: list[dt.datetime | None] = [lo, *cuts, hi]
    return [(bounds[i], bounds[i + 1]) for i in range(factor)]


_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # in ASCII (= SOQL) order
_ID_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")


def _range_where(
    cursor: str, lo: dt.datetime | None, hi: dt.datetime | None, *, key: str = "Id", ids: IdRange = _NO_IDS
) -> list[str]:
    where = []
    if lo is not None:
        where.append(f"{cursor} >= {to_soql(lo)}")
    if hi is not None:
        where.append(f"{cursor} < {to_soql(hi)}")
    for op, value in ((">=", ids[0]), ("<", ids[1])):
        if value is not None:
            if not _RECORD_ID.fullmatch(value):
                raise ValueError(f"malformed record id bound {value!r}")
            where.append(f"{key} {op} '{value}'")
    return where


def id_with_checksum(id15: str) -> str:
    """The 18-character form of a 15-character record id (Salesforce's case-safety suffix)."""
    if not re.fullmatch(r"[A-Za-z0-9]{15}", id15):
        raise ValueError(f"not a 15-character record id: {id15!r}")
    suffix = ""
    for chunk in range(3):
        bits = sum(1 << i for i, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]) if "A" <= ch <= "Z")
        suffix += _ID_SUFFIX[bits]
    return id15 + suffix


def _id_number(record_id: str) -> int:
    number = 0
    for ch in record_id[:15]:
        number = number * 62 + _B62.index(ch)
    return number


def _id_text(number: int) -> str:
    digits = []
    for _ in range(15):
        number, digit = divmod(number, 62)
        digits.append(_B62[digit])
    return id_with_checksum("".join(reversed(digits)))


def split_id_range(first: str, last: str, *, factor: int) -> list[str]:
    """``factor - 1`` increasing cut ids spread evenly over the id space ``[first, last]``.

    Record ids order as their 15-character base-62 form (digits, upper, lower case: ASCII order,
    which is how SOQL compares them), so cutting that number range evenly gives pieces of about
    equal row counts where ids were minted in sequence - whatever their ``SystemModstamp``.
    Each cut ``c`` has ``first < c <= last``; ``[]`` when there are fewer than ``factor`` ids to cut.
    """
    if factor < 2:
        raise ValueError("factor must be >= 2")
    for value in (first, last):
        if not _RECORD_ID.fullmatch(value):
            raise ValueError(f"malformed record id {value!r}")
    low, span = _id_number(first), _id_number(last) - _id_number(first) + 1
    if span < factor:
        return []
    return [_id_text(low + span * i // factor) for i in range(1, factor)]


def bulk_soql(
    spec: ObjectSpec,
    fields: Sequence[str],
    lo: dt.datetime | None,
    hi: dt.datetime | None,
    *,
    ids: IdRange = _NO_IDS,
) -> str:
    """A Bulk 2.0 query over one part: no ORDER BY (it would disable PK chunking)."""
    check_soql_names(spec.name, spec.cursor, spec.key, *fields)
    where = _range_where(spec.cursor, lo, hi, key=spec.key, ids=ids)
    soql = f"SELECT {', '.join(fields)} FROM {spec.name}"
    return soql + (f" WHERE {' AND '.join(where)}" if where else "")


def rest_soql(
    spec: ObjectSpec,
    fields: Sequence[str],
    lo: dt.datetime | None,
    hi: dt.datetime | None,
    after: tuple[str, str] | None = None,
    *,
    ids: IdRange = _NO_IDS,
) -> str:
    """A REST queryAll over one part in ``(cursor, key)`` order, after ``after`` (keyset resume)."""
    check_soql_names(spec.name, spec.cursor, spec.key, *fields)
    where = _range_where(spec.cursor, lo, hi, key=spec.key, ids=ids)
    if after is not None:
        where.append(keyset_after(spec, parse_instant(after[0]), after[1]))
    soql = f"SELECT {', '.join(fields)} FROM {spec.name}"
    if where:
        soql += f" WHERE {' AND '.join(where)}"
    return soql + f" ORDER BY {spec.cursor}, {spec.key}"


@dataclass(frozen=True, slots=True)
class ObjectPlan:
    object_name: str
    mode: Mode
    fields: tuple[str, ...]
    types: FieldTypes
    warnings: tuple[str, ...] = ()


def plan_object(spec: ObjectSpec, describe: Mapping[str, Any], *, bulk_unsupported: frozenset[str]) -> ObjectPlan:
    """Fields (describe-derived, components of compound fields only) and Bulk vs REST for one object.

    A configured ``include_fields`` entry the integration user cannot read is left out with a
    warning; an object whose key, cursor or ``IsDeleted`` is unreadable raises
    :class:`ConfigurationError` (it cannot be copied).
    """
    warnings: list[str] = []
    selection = select_fields(spec, describe)
    if selection.unreadable:
        warnings.append(
            f"{spec.name}: field(s) {', '.join(selection.unreadable)} not readable by the integration user; left out"
        )
    if describe.get("queryable") is False:
        raise ConfigurationError(f"{spec.name} is not queryable for the integration user")
    mode: Mode = "rest" if spec.name in bulk_unsupported else "bulk"
    if mode == "rest":
        warnings.append(f"{spec.name}: Bulk API 2.0 cannot query this object; copied with REST queryAll")
    return ObjectPlan(spec.name, mode, selection.fields, field_types(describe, selection.fields), tuple(warnings))


# ------------------------------------------------------------------------------------------------
# For the dispatcher: which objects need a copy, and an execution name that makes a restart a no-op
# ------------------------------------------------------------------------------------------------

CopyGate = Literal["copy", "copying", "done", "failed"]


def copy_gate(watermark_done: bool, copy_status: str | None) -> CopyGate:
    """What the dispatcher does with an object, from its watermark flag and its copy document.

    ``copy``: never copied - start the workflow; ``copying``: a copy runs - no incremental cycle;
    ``failed``: the copy stopped - start the workflow again (``plan`` resumes the checkpoint), no
    incremental cycle; ``done``: incremental cycles as usual.
    """
    if copy_status == "running":
        return "copying"
    if copy_status == "failed":
        return "failed"
    if watermark_done:
        return "done"
    return "copy"


def execution_name(objects: Sequence[str], *, reason: Literal["first", "resync"], token: str = "") -> str:
    """A Step Functions execution name that is the same for the same request (a second start fails
    with ``ExecutionAlreadyExists`` instead of running a second copy).

    ``first``: the set of never-copied objects (order-free); ``resync``: plus the operator's request
    ``token`` (e.g. the request time), so a later re-sync of the same objects is a new execution.
    """
    if not objects:
        raise ValueError("execution_name needs at least one object")
    digest = hashlib.sha256(",".join(sorted(set(objects))).encode()).hexdigest()[:16]
    clean = re.sub(r"[^A-Za-z0-9_-]", "-", token)[:40]
    return f"{reason}-{digest}" + (f"-{clean}" if clean else "")


__all__ = [
    "CopyGate",
    "CopyPolicy",
    "ObjectPlan",
    "bulk_soql",
    "copy_gate",
    "execution_name",
    "failure_action",
    "id_with_checksum",
    "plan_object",
    "poll_wait_seconds",
    "rest_soql",
    "split_id_range",
    "split_range",
]
