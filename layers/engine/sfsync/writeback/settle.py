"""Stage 5, settle: what became of each change is written down.

* **Pending markers** (:meth:`Settle.mark_pending`, the first act of every stream run): every local
  change is marked on its item (or its delete intent) and claimed before anything else; the marker
  is cleared when the change is settled, and kept - with a back-off on a re-drive - when it failed
  (:meth:`Settle.finish`).
* **The base snapshot**: after Salesforce accepted a push (or needed nothing), the item's ``_base``
  catches up, conditioned on the base read (:meth:`Settle.accepted`); a created record's real item
  is put and the local item becomes a redirect (:meth:`Settle.created`).
* **The errors table**: rejected fields, refusals, conflicts, redirects (history rows) and the
  record's open row that ``sfsync errors`` lists until a push of it is accepted.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any

from sfsync.core import clock as sfclock
from sfsync.core.exceptions import UnstorableRecord
from sfsync.core.observability import logger
from sfsync.core.registry import ObjectSpec
from sfsync.items import snapshot
from sfsync.items.codec import salesforce_value, to_item
from sfsync.store.writeback import DELETE_SK, PENDING_ATTEMPTS, PENDING_ATTRIBUTES, PENDING_SEQ, STREAM_OWNER
from sfsync.writeback.classify import Classified
from sfsync.writeback.context import MarkKey, RunContext
from sfsync.writeback.decide import Conflict, ItemPlan
from sfsync.writeback.model import (
    CREATED_ID_ATTRIBUTE,
    ERROR_ATTRIBUTE,
    FAILED_AFTER_ATTEMPTS,
    LAG_SAMPLES,
    LOCAL_STATUS_ATTRIBUTE,
    WRITEBACK_CYCLE_ID,
    StreamChange,
    next_attempt,
)


def had_problem(item: Mapping[str, Any]) -> bool:
    """Might the item have a row in ``sfsync errors`` (refused, or failed after many attempts)?"""
    attempts = item.get(PENDING_ATTEMPTS)
    return ERROR_ATTRIBUTE in item or (attempts is not None and int(attempts) >= FAILED_AFTER_ATTEMPTS)


class Settle:
    """The settle stage of one run (see the module docstring)."""

    def __init__(self, run: RunContext) -> None:
        self.run = run
        self.tables = run.tables

    # pending markers ---------------------------------------------------------------------------

    def mark_pending(self, classified: Iterable[Classified]) -> set[MarkKey]:
        """Mark every changed item (or delete intent) pending and claim it; returns the items another
        runner holds (their changes are left to it and to the sweep)."""
        run = self.run
        latest: dict[tuple[str, str, bool], StreamChange] = {}
        for record in classified:
            if record.kind in ("update", "create", "delete"):
                latest[(record.obj, record.change.key, record.change.event == "REMOVE")] = record.change
        now = run.deps.clock.now()
        deferred: set[MarkKey] = set()
        for (obj, key, removed), change in latest.items():
            if removed:
                table = str(run.settings.state_table)
                outcome = self.tables.mark(table, self.tables.delete_key(obj, key), change.sequence, run.owner, now)
                if outcome == "claimed":
                    run.delete_marks[(obj, key)] = change.sequence
            else:
                outcome = self.tables.mark(run.table(obj), {"Id": {"S": key}}, change.sequence, run.owner, now)
                if outcome == "claimed":
                    run.marks[(obj, key)] = change.sequence
            if outcome == "held":
                deferred.add((obj, key))
                logger.info("item held by another write-back run; left to it", extra={"object": obj, "id": key})
        return deferred

    def finish(self) -> None:
        """Settle the markers this run holds: released when the change needed nothing more (pushed,
        refused, superseded), kept (with a back-off, for re-drives) when it failed."""
        run = self.run
        now = run.deps.clock.now()
        for (obj, key), seq in run.marks.items():
            if (obj, key) in run.settled:
                continue
            failed = [s for s in run.sequences.get((obj, key), []) if s in run.result.failed]
            table = run.table(obj)
            if failed:
                self._failed_attempt(obj, key, table, {"Id": {"S": key}}, seq, failed, now)
            elif self._clear_mark(key, table, seq):
                run.settled.add((obj, key))
        for (obj, record_id), seq in run.delete_marks.items():
            mark = (obj, DELETE_SK.format(record_id=record_id))
            if mark in run.settled:
                continue
            failed = [s for s in run.sequences.get(mark, []) if s in run.result.failed]
            if failed:
                state = str(run.settings.state_table)
                self._failed_attempt(obj, record_id, state, self.tables.delete_key(obj, record_id), seq, failed, now)

    def _clear_mark(self, key: str, table: str, seq: str | None) -> bool:
        """Remove the marker unless a newer change was seen since this run claimed the item."""
        return self.tables.update(table, key, sets={}, removes=PENDING_ATTRIBUTES, expect={PENDING_SEQ: seq})

    def _failed_attempt(  # noqa: PLR0917 - one call site, each argument named there
        self,
        obj: str,
        record_id: str,
        table: str,
        key: dict[str, Any],
        seq: str | None,
        failed: list[str],
        now: dt.datetime,
    ) -> None:
        """A re-drive that failed: back off (doubling, capped); after a day's attempts, record it as failed."""
        run = self.run
        if run.owner == STREAM_OWNER:
            return  # Lambda retries the records; the marker stays for the sweep
        mark = (obj, key["sk"]["S"]) if "sk" in key else (obj, record_id)
        attempts = run.attempts.get(mark, 0) + 1
        self.tables.back_off(table, key, seq, attempts, next_attempt(attempts, now))
        code, message = run.why.get(failed[0], ("UNKNOWN", "the push failed"))
        logger.warning(
            "pending local change still not in Salesforce",
            extra={"object": obj, "id": record_id, "attempts": attempts, "code": code},
        )
        if attempts >= FAILED_AFTER_ATTEMPTS:
            since = run.since.get(mark, now)
            self.tables.record(
                obj, record_id, "failed", since, "pending", code=code, message=message, attempts=attempts
            )
            self.tables.open_problem(
                obj, record_id, "failed", code=code, message=message, fields=[], since=since, now=now, attempts=attempts
            )

    def _update_settling(
        self, obj: str, key: str, table: str, sets: Mapping[str, Any], expect: Mapping[str, Any]
    ) -> bool:
        """An update that settles the item's change: it also clears the pending marker this run holds,
        unless a newer change was seen meanwhile (then the marker stays for it)."""
        run = self.run
        mark = (obj, key)
        if mark in run.marks and mark not in run.settled:
            done = self.tables.update(
                table, key, sets=sets, removes=PENDING_ATTRIBUTES, expect={**expect, PENDING_SEQ: run.marks[mark]}
            )
            if done:
                run.settled.add(mark)
                return True
        return self.tables.update(table, key, sets=sets, expect=expect)

    # accepted updates, creates and deletes ----------------------------------------------------

    def accepted(self, plan: ItemPlan, *, pushed: bool = False) -> None:
        """After Salesforce accepted (or needed nothing): base := pushed values, conditional on the base read."""
        run = self.run
        current = plan.current or {}
        base = dict(snapshot.base_of(current) or {})
        sets: dict[str, Any] = {}
        expect: dict[str, Any] = {snapshot.BASE_ATTRIBUTE: current.get(snapshot.BASE_ATTRIBUTE)}
        redirected = plan.target_id != plan.key or plan.target_obj != plan.obj
        for name, decision in plan.decisions.items():
            if decision.value is None:
                base.pop(name, None)
            else:
                base[name] = decision.value
            if decision.write_item:
                sets[name] = decision.value
                expect[name] = decision.expected_item_value
        sets[snapshot.BASE_ATTRIBUTE] = snapshot.encode_base(base)
        sets[ERROR_ATTRIBUTE] = plan.mark  # cleared by an accepted push, unless part of it was refused
        if not self._update_settling(plan.obj, plan.key, run.table(plan.obj), sets, expect):
            logger.info(
                "item changed while its push was in flight; the next sync brings Salesforce's state",
                extra={"object": plan.obj, "id": plan.key},
            )
        if plan.mark is None and had_problem(current):
            self.tables.resolve_problem(plan.obj, plan.key)
        counters = run.result.count(plan.obj)
        if pushed:
            counters.pushed += 1
            started = plan.first_at
            if started is not None and len(counters.lag_seconds) < LAG_SAMPLES:
                counters.lag_seconds.append(max(0.0, (run.deps.wall_clock() - started).total_seconds()))
        if redirected and pushed:
            counters.redirected += 1
            for change in plan.changes:
                self.tables.record(
                    plan.obj,
                    plan.key,
                    "redirected",
                    change.at or run.deps.clock.now(),
                    change.sequence,
                    target_object=plan.target_obj,
                    target_id=plan.target_id,
                    reason=plan.redirect_note,
                    fields=sorted(plan.pushes()),
                )

    def created(
        self,
        spec: ObjectSpec,
        done: list[tuple[StreamChange, dict[str, Any], str]],
        rows: Mapping[str, dict[str, Any]],
        datetimes: frozenset[str],
    ) -> None:
        """Put the real items (as the sync would, from Salesforce's ``rows``) and turn the local items
        into redirects."""
        run = self.run
        obj = spec.name
        table = self.tables.table(spec)
        now = run.deps.clock.now()
        counters = run.result.count(obj)
        for change, _, sf_id in done:
            row = rows.get(sf_id)
            if row is not None:
                try:
                    item = snapshot.with_base(
                        to_item(spec, row, cycle_id=WRITEBACK_CYCLE_ID, synced_at=now, datetime_fields=datetimes)
                    )
                    self.tables.put_synced(table, item)
                except UnstorableRecord as exc:
                    # The record exists in Salesforce: the redirect still goes on (a retry would
                    # meet the same row); the inbound sync records the same reason when it reads it.
                    self.tables.record(
                        obj, sf_id, "unstorable", now, change.sequence, code="UNSTORABLE", message=str(exc)
                    )
            self._update_settling(
                obj,
                change.key,
                table,
                {CREATED_ID_ATTRIBUTE: sf_id, LOCAL_STATUS_ATTRIBUTE: "created", ERROR_ATTRIBUTE: None},
                {},
            )
            if had_problem(change.new or {}):
                self.tables.resolve_problem(obj, change.key)
            counters.created += 1
            if change.at is not None and len(counters.lag_seconds) < LAG_SAMPLES:
                counters.lag_seconds.append(max(0.0, (run.deps.wall_clock() - change.at).total_seconds()))

    def delete_settled(self, obj: str, change: StreamChange, *, refused: bool) -> None:
        """A local delete reached Salesforce (its intent goes) or was refused (its intent stays, for a retry)."""
        run = self.run
        if change.event != "REMOVE":
            if not refused:
                self.tables.resolve_problem(obj, change.key)
            return  # IsDeleted set on the item: its marker is released at the end of the run
        mark = (obj, change.key)
        if mark in run.delete_marks:
            self.tables.settle_delete_intent(obj, change.key, run.delete_marks[mark], refused=refused)
            run.settled.add((obj, DELETE_SK.format(record_id=change.key)))
        if not refused:
            self.tables.resolve_problem(obj, change.key)

    # the errors table ----------------------------------------------------------------------------

    def conflicts(self, plan: ItemPlan) -> None:
        """One errors-table row per conflict the decisions resolved."""
        run = self.run
        for decision in plan.decisions.values():
            conflict: Conflict | None = decision.conflict
            if conflict is None:
                continue
            run.result.count(plan.obj).conflicts += 1
            change = plan.changes[-1]
            self.tables.record(
                plan.obj,
                plan.key,
                "conflict",
                change.at or run.deps.clock.now(),
                f"{change.sequence}#{conflict.field}",
                field=conflict.field,
                local_value=json.dumps(salesforce_value(conflict.local)),
                salesforce_value=json.dumps(salesforce_value(conflict.salesforce)),
                base_value=json.dumps(salesforce_value(conflict.base)),
                policy=conflict.policy,
                winner=conflict.winner,
            )
            logger.info(
                "write-back conflict",
                extra={"object": plan.obj, "id": plan.key, "field": conflict.field, "winner": conflict.winner},
            )

    def reject(self, obj: str, change: StreamChange, name: str, why: str) -> None:
        """A field the integration user cannot set (once per record that changed it)."""
        run = self.run
        run.result.count(obj).rejected += 1
        self.tables.record(
            obj,
            change.key,
            "rejected",
            change.at or run.deps.clock.now(),
            f"{change.sequence}#{name}",
            code="FIELD_NOT_WRITABLE",
            message=why,
            fields=[name],
        )

    def refuse_plan(self, plan: ItemPlan, code: str, message: str, fields: list[str]) -> None:
        self.run.result.count(plan.obj).refused += 1
        for change in plan.changes:
            self.refuse(plan.obj, change, code, message, fields, values=plan.pushes() or None)

    def refuse(
        self,
        obj: str,
        change: StreamChange,
        code: str,
        message: str,
        fields: list[str],
        *,
        values: Mapping[str, Any] | None = None,
        mark: bool = True,
    ) -> str:
        """A refused change: its history row, its open row, and the item's ``_writeback_error``."""
        run = self.run
        when = change.at or run.deps.clock.now()
        self.tables.record(
            obj,
            change.key,
            "refused",
            when,
            change.sequence,
            code=code,
            message=message,
            fields=fields,
            values=dict(values) if values else None,
        )
        logger.info("write-back refused", extra={"object": obj, "id": change.key, "code": code, "fields": fields})
        since = run.since.get(run.mark_key(obj, change), when)
        self.tables.open_problem(
            obj,
            change.key,
            "refused",
            code=code,
            message=message,
            fields=fields,
            since=since,
            now=run.deps.clock.now(),
        )
        mark_value = json.dumps(
            {"code": code, "message": message, "fields": fields, "at": sfclock.to_iso_ms(when)}, sort_keys=True
        )
        if mark and change.event != "REMOVE":
            self.tables.update(run.table(obj), change.key, sets={ERROR_ATTRIBUTE: mark_value})
        return mark_value


__all__ = ["Settle", "had_problem"]
