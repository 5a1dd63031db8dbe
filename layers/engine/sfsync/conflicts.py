"""Per-field decisions of the write-back: push, leave alone, or resolve a conflict by policy.

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
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sfsync.core.registry import DEFAULT_CONFLICT_POLICY
from sfsync.items.snapshot import same

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


__all__ = ["Action", "Conflict", "FieldDecision", "Winner", "decide_field", "is_empty", "resolve", "same"]
