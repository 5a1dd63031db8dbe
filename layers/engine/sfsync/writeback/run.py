"""The write-back's runs: one stream batch (:meth:`WriteBack.run`) or one object's re-drive of its
pending changes (:meth:`WriteBack.redrive`, for the sweep and the retry), through the stages
decode -> classify -> (mark pending) -> decide -> push -> settle; and the batch's metrics."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sfsync.core.config import WriteBackOptions
from sfsync.core.exceptions import SalesforceError, StoreError, StoreThrottled
from sfsync.core.observability import count, logger, metrics_for_object
from sfsync.items import snapshot
from sfsync.items.snapshot import same
from sfsync.salesforce.ports import WriteBackPort
from sfsync.store.writeback import DELETE_SK, PENDING_ATTEMPTS, PENDING_SEQ, PENDING_SINCE, STREAM_OWNER
from sfsync.writeback.classify import Classified, check_value, classify, create_values, field_map, split_update
from sfsync.writeback.context import RunContext
from sfsync.writeback.decide import ItemPlan, decide_plan
from sfsync.writeback.decode import decode_records, delete_intent_change, object_of, pending_item_change
from sfsync.writeback.model import (
    BatchResult,
    Counters,
    StreamChange,
    WriteBackDeps,
    WriteBackStore,
    instant,
)
from sfsync.writeback.push import PendingCreate, Push
from sfsync.writeback.settle import Settle


class WriteBack:
    """Processes one stream batch, or re-drives pending items (sweep, retry); see :mod:`sfsync.writeback`."""

    def __init__(self, deps: WriteBackDeps, *, owner: str = STREAM_OWNER) -> None:
        self.deps = deps
        self.settings = deps.settings
        self.owner = owner
        self.context = RunContext.start(deps, owner)
        self.settle = Settle(self.context)
        self.push = Push(self.context, self.settle)
        self._tables_to_objects = {table: family for family, table in deps.settings.record_tables.items()}

    @property
    def tables(self) -> WriteBackStore:
        return self.context.tables

    @property
    def result(self) -> BatchResult:
        return self.context.result

    @property
    def sf(self) -> WriteBackPort:
        """The Salesforce client, made on first use (after the markers are down)."""
        return self.context.sf

    def redriven(self) -> int:
        """How many changes this run took up."""
        return sum(len(v) for v in self.context.sequences.values())

    # entry ---------------------------------------------------------------------------------

    def run(self, raw_records: Sequence[Mapping[str, Any]]) -> BatchResult:
        """One stream batch: mark every local change pending (first act), then push, then settle."""
        classified = self._classify_all(decode_records(raw_records))
        deferred = self.settle.mark_pending(classified)
        # the markers are down: the sweep pushes once the configuration is fixed
        raise_configuration_problem(self.deps)
        self._process([c for c in classified if (c.obj, c.change.key) not in deferred])
        self.settle.finish()
        return self.result

    def redrive(self, obj: str, keys: Sequence[str], delete_ids: Sequence[str], *, mark_first: bool) -> BatchResult:
        """Push pending items and delete intents of ``obj`` through the stream path (sweep, retry).

        Each is claimed first (conditional write; one held by another runner, or whose back-off has not
        passed, is left alone), then read consistently: the change is the item as it is now.
        ``mark_first`` (retry): the items are marked pending first, as a stream record would.
        """
        run, tables = self.context, self.tables
        table = run.table(obj)
        now = self.deps.clock.now()
        claimed: list[str] = []
        for key in dict.fromkeys(keys):
            item_key = {"Id": {"S": key}}
            if mark_first:
                ok = tables.mark(table, item_key, f"{self.owner}", self.owner, now) == "claimed"
            else:
                ok = tables.claim(table, item_key, self.owner, now, due_only=True)
            if ok:
                claimed.append(key)
        records: list[Classified] = []
        for key, item in tables.get_items(table, claimed).items():
            mark = (obj, key)
            seq = item.get(PENDING_SEQ)
            run.marks[mark] = seq if isinstance(seq, str) else None
            run.attempts[mark] = int(item.get(PENDING_ATTEMPTS) or 0)
            since = instant(item.get(PENDING_SINCE)) or now
            run.since[mark] = since
            record = self._classify_one(obj, pending_item_change(self.owner, table, key, item, since))
            if record is not None:
                records.append(record)
        state = str(self.settings.state_table)
        for record_id in dict.fromkeys(delete_ids):
            intent_key = tables.delete_key(obj, record_id)
            if not tables.claim(state, intent_key, self.owner, now, due_only=not mark_first):
                continue
            intent = tables.get_delete_intent(obj, record_id) or {}
            seq = intent.get(PENDING_SEQ)
            run.delete_marks[(obj, record_id)] = seq if isinstance(seq, str) else None
            mark = (obj, DELETE_SK.format(record_id=record_id))
            run.attempts[mark] = int(intent.get(PENDING_ATTEMPTS) or 0)
            since = instant(intent.get(PENDING_SINCE)) or now
            run.since[mark] = since
            records.append(Classified(obj, "delete", delete_intent_change(self.owner, obj, table, record_id, since)))
        self._process(records)
        self.settle.finish()
        return self.result

    # decode -> classify ----------------------------------------------------------------------

    def _classify_all(self, changes: list[StreamChange]) -> list[Classified]:
        """Every record the write-back handles, classified; the others are logged and counted."""
        classified: list[Classified] = []
        for change in changes:
            obj, why = object_of(self.settings, self._tables_to_objects, change)
            if obj is None:
                logger.info(
                    "write-back record ignored",
                    extra={"reason": why, "table": change.table, "id": change.key, "event_name": change.event},
                )
                count("WriteBackRecordsIgnored")
                continue
            record = self._classify_one(obj, change)
            if record is None:
                continue
            if record.kind == "ignore":
                self.result.count(obj).ignored += 1
            classified.append(record)
        return classified

    def _classify_one(self, obj: str, change: StreamChange) -> Classified | None:
        """The change classified; None when its ``_base`` is unreadable (the change is refused)."""
        try:
            return classify(obj, change)
        except ValueError as exc:  # a _base an application overwrote with something unreadable
            self.result.count(obj).refused += 1
            message = f"the item's {snapshot.BASE_ATTRIBUTE} is unreadable: {exc}"
            self.settle.refuse(obj, change, "INVALID_BASE", message, [])
            return None

    def _process(self, classified: list[Classified]) -> None:
        run = self.context
        updates: dict[str, list[Classified]] = {}
        creates: dict[str, list[Classified]] = {}
        deletes: dict[str, list[Classified]] = {}
        for record in classified:
            groups = {"update": updates, "create": creates, "delete": deletes}.get(record.kind)
            if groups is None:
                continue
            groups.setdefault(record.obj, []).append(record)
            run.sequences.setdefault(run.mark_key(record.obj, record.change), []).append(record.change.sequence)
        for obj, group in creates.items():
            self._guard(obj, group, self._creates)
        for obj, group in updates.items():
            self._guard(obj, group, self._updates)
        for obj, group in deletes.items():
            self._guard(obj, group, self._deletes)

    def _guard(self, obj: str, group: list[Classified], step: Callable[[str, list[Classified]], None]) -> None:
        """Run one object's step; a Salesforce or store outage fails only its records (Lambda retries them)."""
        try:
            step(obj, group)
        except (SalesforceError, StoreError, StoreThrottled) as exc:
            logger.warning(
                "write-back step failed; its records are reported for retry",
                extra={"object": obj, "records": len(group), "error": f"{exc.__class__.__name__}: {exc}"},
            )
            self.context.fail((r.change.sequence for r in group), exc.__class__.__name__, str(exc))

    # updates: split (once per record) -> read -> decide -> push -> settle ---------------------

    def _updates(self, obj: str, group: list[Classified]) -> None:
        options = self.settings.writeback.get(obj, WriteBackOptions())
        describe = field_map(self.sf, obj)
        plans: dict[str, ItemPlan] = {}
        for record in group:
            fields = split_update(record, describe)
            change = record.change
            new, old = change.new or {}, change.old or {}
            for name, why in fields.refused.items():
                if change.event == "INSERT" or not same(new.get(name), old.get(name)):
                    self.settle.reject(obj, change, name, why)  # once: when this record changed the field
            if fields.writable:
                plans.setdefault(change.key, ItemPlan(obj, change.key)).records.append(fields)
        if not plans:
            return
        current = self.tables.get_items(self.context.table(obj), list(plans))
        wanted: set[str] = set()
        for plan in plans.values():
            plan.current = current.get(plan.key)
            for fields in plan.records:
                wanted.update(fields.writable)
        live = {k: p for k, p in plans.items() if p.current is not None}
        salesforce, unstorable = self.push.retrieve(obj, list(live), sorted(wanted), describe)
        gone: list[ItemPlan] = []
        converted: list[ItemPlan] = []
        conversion = self.settings.registry.get(obj).converts_to
        for key, problem in unstorable.items():
            fields_named = [problem.field] if problem.field else []
            self.settle.refuse_plan(live.pop(key), "UNSTORABLE", str(problem), fields_named)
        for plan in live.values():
            row = salesforce.get(plan.key)
            if row is None:
                gone.append(plan)
                continue
            decide_plan(plan, row, options)
            if conversion is not None and row.get(conversion.flag) is True and plan.pushes():
                plan.target_obj, plan.target_id = conversion.target, str(row.get(conversion.target_id) or "")
                converted.append(plan)
            else:
                plan.target_obj, plan.target_id = obj, plan.key
        set_aside = {id(p) for p in gone} | {id(p) for p in converted}
        ready = [p for p in live.values() if id(p) not in set_aside]
        self.push.redirect_merged(obj, gone)
        ready += [p for p in gone if p.target_id]
        ready += self.push.redirect_converted(converted)
        for plan in plans.values():
            if plan.current is None:
                logger.info("item deleted locally before its change was pushed", extra={"object": obj, "id": plan.key})
        self.push.updates(ready, describe, options)

    # creates ---------------------------------------------------------------------------------

    def _creates(self, obj: str, group: list[Classified]) -> None:
        options = self.settings.writeback.get(obj, WriteBackOptions())
        describe = field_map(self.sf, obj)
        latest: dict[str, StreamChange] = {}
        for record in group:
            latest[record.change.key] = record.change  # the last image of a local item holds everything to create
        pending: list[PendingCreate] = []
        for change in latest.values():
            values, refused = create_values(change.new or {}, describe)
            for name, why in refused.items():
                self.settle.reject(obj, change, name, why)
            problems = [(n, p) for n, v in values.items() if (p := check_value(n, v, describe[n])) is not None]
            if problems:
                self.result.count(obj).refused += 1
                self.settle.refuse(
                    obj, change, problems[0][1][0], "; ".join(p for _, (_, p) in problems), [n for n, _ in problems]
                )
                continue
            pending.append((change, values))
        if pending:
            self.push.creates(obj, pending, options, describe)

    # deletes ---------------------------------------------------------------------------------

    def _deletes(self, obj: str, group: list[Classified]) -> None:
        options = self.settings.writeback.get(obj, WriteBackOptions())
        changes = [r.change for r in group]
        if options.allow_deletes:
            self.push.deletes(obj, changes)
            return
        for change in changes:
            self.result.count(obj).refused += 1
            self.settle.refuse(
                obj, change, "DELETE_NOT_ALLOWED", f"local deletes of {obj} are not pushed (allow_deletes is off)", []
            )
            self.settle.delete_settled(obj, change, refused=True)


def raise_configuration_problem(deps: WriteBackDeps) -> None:
    """Raise the write-back options' problem if the settings were read without them.

    Nothing may be pushed, refused or settled then: the defaults would decide instead of the
    operator's options (a broken Lead option would refuse Contact's deletes).  Reported as every
    other configuration problem (with the secret's, all at once, counted: ``deps.config_check``).
    """
    if deps.config_problem is None:
        return
    if deps.config_check is not None:
        deps.config_check()
    raise deps.config_problem


def process_batch(records: Sequence[Mapping[str, Any]], deps: WriteBackDeps) -> BatchResult:
    """Process one stream batch; emits the metrics and returns the failed sequence numbers."""
    result = WriteBack(deps).run(records)
    emit_metrics(result)
    return result


def emit_metrics(result: BatchResult) -> None:
    """One EMF blob per object: pushed, created, conflicts, refused, rejected, retried, lag."""

    for obj, c in result.counters.items():
        if c == Counters(ignored=c.ignored):
            continue  # only the sync's own writes and our bookkeeping: nothing to report
        with metrics_for_object(obj) as single:
            for name, value in (
                ("WriteBackPushed", c.pushed),
                ("WriteBackCreated", c.created),
                ("WriteBackConflicts", c.conflicts),
                ("WriteBackRefused", c.refused),
                ("WriteBackRejected", c.rejected),
                ("WriteBackRetried", c.retried),
                ("WriteBackRedirected", c.redirected),
                ("WriteBackDeleted", c.deleted),
            ):
                single.add(name, value)
            for lag in c.lag_seconds:
                single.add("WriteBackLagSeconds", lag)
        logger.info(
            "write-back batch",
            extra={
                "object": obj,
                "pushed_count": c.pushed,
                "created_count": c.created,
                "conflict_count": c.conflicts,
                "refused_count": c.refused,
                "rejected_count": c.rejected,
                "retried_count": c.retried,
                "ignored_count": c.ignored,
            },
        )


__all__ = ["WriteBack", "emit_metrics", "process_batch", "raise_configuration_problem"]
