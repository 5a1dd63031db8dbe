"""Org-wide items of the state table that are not part of the watermark contract.

One item so far, the API budget the dispatcher keeps between invocations
(:class:`BudgetState`, which :mod:`sfsync.dispatch.budget` decides on, plus the last usage reading)::

    pk = "ORG", sk = "API_BUDGET":  paused (BOOL), changed_at, used, max, source, checked_at

The org-wide back-off after ``REQUEST_LIMIT_EXCEEDED`` lives in :mod:`sfsync.store.state`
(``set_org_backoff`` / ``get_org_backoff``), next to the cycles that set it.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import PynamoDBException

from sfsync.core.clock import parse_instant, to_iso_ms
from sfsync.core.exceptions import StoreError
from sfsync.store.state_items import ORG_PK, item_model, optional_instant, optional_iso, read_item

API_BUDGET_SK = "API_BUDGET"


@dataclass(frozen=True, slots=True)
class BudgetState:
    """What the caller persists between invocations."""

    paused: bool = False
    changed_at: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"paused": self.paused, "changed_at": to_iso_ms(self.changed_at) if self.changed_at else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> BudgetState:
        if not data:
            return cls()
        paused = data.get("paused", False)
        if not isinstance(paused, bool):
            raise ValueError(f"budget state 'paused' must be a boolean, got {paused!r}")
        changed = data.get("changed_at")
        return cls(paused, parse_instant(changed) if isinstance(changed, str) and changed else None)


@dataclass(frozen=True, slots=True)
class BudgetRecord:
    """The persisted budget: its state and the reading it was last decided on."""

    state: BudgetState = field(default_factory=BudgetState)
    used: int | None = None
    max: int | None = None
    source: str | None = None
    checked_at: dt.datetime | None = None

    @property
    def percent(self) -> float | None:
        if self.used is None or not self.max:
            return None
        return 100.0 * self.used / self.max


@functools.lru_cache(maxsize=16)
def _budget_model(table_name: str, region: str | None, host: str | None) -> Any:
    return item_model(
        "BudgetItem",
        table_name,
        region,
        host,
        paused=BooleanAttribute(default=False),
        changed_at=UnicodeAttribute(null=True),
        used=NumberAttribute(null=True),
        max=NumberAttribute(null=True),
        source=UnicodeAttribute(null=True),
        checked_at=UnicodeAttribute(null=True),
    )


class OrgStateStore:
    """Org-wide items in the state table (PynamoDB)."""

    def __init__(self, table_name: str, *, region: str | None = None, host: str | None = None) -> None:
        self.table_name = table_name
        self._budget = _budget_model(table_name, region, host)

    def get_budget(self) -> BudgetRecord:
        item = read_item(self._budget, ORG_PK, API_BUDGET_SK, "the API budget")
        if item is None:
            return BudgetRecord()
        return BudgetRecord(
            state=BudgetState(bool(item.paused), optional_instant(item.changed_at)),
            used=int(item.used) if item.used is not None else None,
            max=int(item.max) if item.max is not None else None,
            source=item.source,
            checked_at=optional_instant(item.checked_at),
        )

    def save_budget(self, record: BudgetRecord) -> None:
        item = self._budget(
            ORG_PK,
            API_BUDGET_SK,
            paused=record.state.paused,
            changed_at=optional_iso(record.state.changed_at),
            used=record.used,
            max=record.max,
            source=record.source,
            checked_at=optional_iso(record.checked_at),
        )
        try:
            item.save()
        except PynamoDBException as exc:
            raise StoreError(f"cannot store the API budget: {exc}") from exc


__all__ = ["API_BUDGET_SK", "ORG_PK", "BudgetRecord", "OrgStateStore"]
