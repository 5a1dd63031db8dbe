"""Stage 3, decide: per field of an update, push, leave alone, or resolve a conflict by policy.

One local change of one field (from a stream record: the local value and the base it was made
against) is judged against three states:

* the **current item** (read consistently when the batch is processed): does it still hold the
  local value?  If not, either a later local edit superseded it (that edit has a stream record of
  its own and is judged then) or the inbound sync overwrote it (the item then equals its new base
  and the base's ``SystemModstamp`` moved);
* the **effective base**: what the local side last knew of Salesforce for the field - the current
  item's base while the item still holds the local value (so a base our own earlier push moved is
  taken into account), else the base of the stream record;
* **Salesforce's current value** (read with one sObject Collections retrieve per 2000 records
  before pushing), so a change made in Salesforce and not yet synced is a conflict too, not a
  silent overwrite.

Salesforce unchanged since the effective base -> the local value is pushed; Salesforce already
holds the local value -> nothing to push; otherwise both sides changed the field: a **conflict**,
decided by the field's policy (``local``, ``salesforce``, ``recent``, ``nonempty``).

An item's update is an :class:`ItemPlan`: its records (each with the writable local changes
:mod:`sfsync.writeback.classify` computed once) and, after :func:`decide_plan`, one
:class:`FieldDecision` per field.  Only the decisions are made here; the calls are
:mod:`sfsync.writeback.push`'s, the writes :mod:`sfsync.writeback.settle`'s.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sfsync.core.config import WriteBackOptions
from sfsync.core.registry import DEFAULT_CONFLICT_POLICY
from sfsync.items import snapshot
from sfsync.items.snapshot import same
from sfsync.writeback.classify import UpdateFields
from sfsync.writeback.model import StreamChange, instant

Winner = Literal["local", "salesforce"]
Action = Literal["push", "none", "salesforce", "skip"]


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


@dataclass(frozen=True, slots=True)
class Conflict:
    """Both sides changed ``field`` since the base; ``winner`` is what the policy chose."""

    field: str
    local: Any
    salesforce: Any
    base: Any
    policy: str
    winner: Winner


@dataclass(frozen=True, slots=True)
class FieldDecision:
    """What to do with one field of one item.

    ``push``: send ``value`` to Salesforce; ``none``: Salesforce already holds ``value`` (only the
    base catches up); ``salesforce``: Salesforce's ``value`` stays and wins locally too; ``skip``:
    the stream record is stale for this field (a later record decides it).  ``write_item``: the
    item's attribute is set to ``value`` (the local edit was overwritten by the sync and the local
    side won, or the local edit lost to Salesforce).
    """

    field: str
    action: Action
    value: Any = None
    write_item: bool = False
    expected_item_value: Any = None
    conflict: Conflict | None = None


def resolve(
    policy: str,
    *,
    object_name: str,
    local: Any,
    salesforce: Any,
    local_time: dt.datetime | None,
    salesforce_time: dt.datetime | None,
) -> Winner:
    """The winner of a conflict under ``policy`` (ties of ``recent`` / ``nonempty`` -> the object's default)."""
    default: Winner = "local" if DEFAULT_CONFLICT_POLICY.get(object_name, "salesforce") == "local" else "salesforce"
    if policy == "local":
        return "local"
    if policy == "salesforce":
        return "salesforce"
    if policy == "recent":
        if local_time is None or salesforce_time is None or local_time == salesforce_time:
            return default
        return "local" if local_time > salesforce_time else "salesforce"
    if policy == "nonempty":
        local_empty, sf_empty = is_empty(local), is_empty(salesforce)
        if local_empty != sf_empty:
            return "salesforce" if local_empty else "local"
        return default
    raise ValueError(f"unknown conflict policy {policy!r}")


def decide_field(
    field: str,
    *,
    local: Any,
    record_base: Mapping[str, Any],
    current_item: Mapping[str, Any],
    current_base: Mapping[str, Any],
    salesforce: Any,
    policy: str,
    object_name: str,
    local_time: dt.datetime | None,
    salesforce_time: dt.datetime | None,
) -> FieldDecision:
    """Decide one field of one stream record (see the module docstring)."""
    current = current_item.get(field)
    if same(current, local):
        in_item = True
        effective_base = current_base.get(field)
    else:
        sync_since = not same(record_base.get("SystemModstamp"), current_base.get("SystemModstamp"))
        if not (sync_since and same(current, current_base.get(field))):
            return FieldDecision(field, "skip")  # superseded by a later local edit
        in_item = False  # the inbound sync overwrote the local edit
        effective_base = record_base.get(field)
    if in_item and same(local, effective_base):
        return FieldDecision(field, "skip")  # nothing pending any more (an earlier push took it)
    if same(local, salesforce):
        return FieldDecision(field, "none", local, write_item=not in_item, expected_item_value=current)
    if same(salesforce, effective_base):
        return FieldDecision(field, "push", local, write_item=not in_item, expected_item_value=current)
    winner = resolve(
        policy,
        object_name=object_name,
        local=local,
        salesforce=salesforce,
        local_time=local_time,
        salesforce_time=salesforce_time,
    )
    conflict = Conflict(field, local, salesforce, effective_base, policy, winner)
    if winner == "local":
        return FieldDecision(
            field, "push", local, write_item=not in_item, expected_item_value=current, conflict=conflict
        )
    return FieldDecision(
        field,
        "salesforce",
        salesforce,
        write_item=not same(current, salesforce),
        expected_item_value=current,
        conflict=conflict,
    )


# -- one item's plan -----------------------------------------------------------------------------


@dataclass
class ItemPlan:
    """One item's update: its records (with their writable local changes), decisions per field,
    and what to send."""

    obj: str
    key: str
    records: list[UpdateFields] = dataclasses.field(default_factory=list)
    decisions: dict[str, FieldDecision] = dataclasses.field(default_factory=dict)
    current: dict[str, Any] | None = None
    target_obj: str = ""
    target_id: str = ""
    redirect_note: str | None = None
    #: the ``_writeback_error`` mark of fields refused before sending (kept when the rest is accepted)
    mark: str | None = None

    @property
    def changes(self) -> list[StreamChange]:
        return [r.change for r in self.records]

    @property
    def sequences(self) -> list[str]:
        return [r.change.sequence for r in self.records]

    @property
    def first_at(self) -> dt.datetime | None:
        times = [r.change.at for r in self.records if r.change.at is not None]
        return min(times) if times else None

    def pushes(self) -> dict[str, Any]:
        return {name: d.value for name, d in self.decisions.items() if d.action == "push"}


def decide_plan(plan: ItemPlan, row: Mapping[str, Any], options: WriteBackOptions) -> None:
    """Decide every writable field of every record of ``plan`` against Salesforce's ``row``."""
    current = plan.current or {}
    current_base = snapshot.base_of(current) or {}
    sf_time = instant(row.get("SystemModstamp"))
    for record in plan.records:
        change = record.change
        new = change.new or {}
        record_base = snapshot.base_of(new) or {}
        for name, local_change in record.writable.items():
            decision = decide_field(
                name,
                local=local_change.local,
                record_base=record_base,
                current_item=current,
                current_base=current_base,
                salesforce=row.get(name),
                policy=options.policy_for(name),
                object_name=plan.obj,
                local_time=change.at,
                salesforce_time=sf_time,
            )
            if decision.action != "skip":
                plan.decisions[name] = decision


def decide_merged(plan: ItemPlan, master: str) -> None:
    """A merge loser's change goes to its master: no conflict check against another record, the
    local values go."""
    for record in plan.records:
        for name, local_change in record.writable.items():
            plan.decisions[name] = FieldDecision(name, "push", local_change.local)
    plan.target_obj, plan.target_id = plan.obj, master
    plan.redirect_note = f"merged into {master}"


__all__ = [
    "Action",
    "Conflict",
    "FieldDecision",
    "ItemPlan",
    "Winner",
    "decide_field",
    "decide_merged",
    "decide_plan",
    "is_empty",
    "resolve",
    "same",
]
