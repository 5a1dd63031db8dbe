"""Whatever happens in Salesforce, the DynamoDB copy converges on what the integration user sees.

Hypothesis generates random histories of Salesforce activity — creates, updates, mass updates, late
commits, soft and hard deletes, purged recycle bins, undeletes, merges, lead conversions, archived
Tasks, field permission changes — interleaved with dispatcher ticks (the real local stack from
template.yaml: schedule -> dispatcher -> ObjectSyncFunction -> the emulator over HTTPS -> moto) and
injected faults (5xx, expired sessions, ``REQUEST_LIMIT_EXCEEDED``, ``QUERY_TIMEOUT``).

After a quiet period (the clock moves past overlap + lag + pause and cycles run until one writes
nothing) every synced object must match, item for item, what the integration user reads through
``queryAll``: no missing item, no extra live item (a row gone from Salesforce may only remain as a
tombstone), no stale ``SystemModstamp``, ``IsDeleted`` or field value (fields compared are the ones
describe shows the integration user, formulas and compound/blob fields excepted, as the engine
selects them).

Change events (Event Relay) join a third property: the stack receives the emulator's change events,
and Event Relay's delivery is as bad as EventBridge allows - events dropped, delivered twice, out of
order, in batches cut anywhere, gap and overflow events among them.  The copy still ends equal to
Salesforce (the cycles are the safety net for what the events lose).

The write-back runs too (the stack's WriteBackFunction on the Lead and Contact streams): a second
property mixes local edits and creates of Lead/Contact items (some with values Salesforce or the
engine must refuse) into the histories.  After the quiet period both sides agree (items marked
``_writeback_error`` keep their refused local values), every accepted local change is in
Salesforce (unless Salesforce-side activity on the record or a recorded conflict explains
otherwise), every refused one is in the errors table, and no local create exists twice.

Each example runs against a fresh emulated org; the module's stack has its tables emptied and its
secret pointed at the new org.  The engine clock and Salesforce's clock are the emulator's virtual
clock, so minutes pass instantly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer
from hypothesis import HealthCheck, Phase, example, given, note, settings
from hypothesis import strategies as st
from sfsync.core import clock as sfsync_clock
from sfsync.core.config import Settings, load_settings
from sfsync_emulator import catalogue
from sfsync_emulator.clock import Clock as EmulatorClock
from sfsync_emulator.emulator import Emulator
from sfsync_emulator.errors import DmlError
from sfsync_local.lambda_runtime import LocalInvokeError
from sfsync_local.stack import LocalStack

from tests.support.compare import UNSELECTED_TYPES, expected_value
from tests.support.emulator import EmulatorTime, reset_engine_caches, salesforce_secret
from tests.support.fullcopy import copy_executions, wait_for_copies

pytestmark = pytest.mark.property

SYNCED = ("Account", "Contact", "Lead", "Opportunity", "Task")
PAUSE_SECONDS = 300
START = dt.datetime(2026, 11, 24, 12, 0, 0, tzinfo=dt.UTC)
#: Cycles the quiet period may take before the copy must have settled.
MAX_QUIET_ROUNDS = 6
#: Late commits: stamped up to this long ago, visible up to this long later (a long transaction).
MAX_STAMP_AGO_S = 120
MAX_VISIBLE_AFTER_S = 300
#: Field permissions the histories toggle (none of them required by the engine).
#: How the dispatcher explains an object its change probe found nothing for.
NO_CHANGE = "probe: no change"
TOGGLED_FIELDS = (("Account", "Industry"), ("Contact", "Title"), ("Lead", "Title"), ("Task", "Priority"))

_ENGINE_ONLY = frozenset({"sobject", "_synced_at", "_cycle_id", "_expires_at"})
_DESERIALIZE = TypeDeserializer().deserialize


# ------------------------------------------------------------------------------------------------
# The world one example runs in
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class World:
    emu: Emulator
    stack: LocalStack
    settings: Settings
    log: list[str] = dataclasses.field(default_factory=list)
    last_dispatch: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: local edits (log position, object, item Id, values) and local creates (log position, key)
    local_edits: list[tuple[int, str, str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    local_creates: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    #: the emulator's change events onto the stack's partner bus (the change-event property)
    relay: Any = None

    @property
    def org(self) -> Any:
        return self.emu.org

    def say(self, line: str) -> None:
        self.log.append(f"[{self.emu.clock.now():%H:%M:%S}] {line}")

    def rows(self, obj: str, columns: str = "") -> list[tuple[Any, ...]]:
        """``(Id, IsDeleted, SystemModstamp[, columns])`` of every stored row, in Id order (target picking)."""
        extra = f", {columns}" if columns else ""
        with self.org.lock:
            return list(
                self.org.conn.execute(f'SELECT "Id", "IsDeleted", "SystemModstamp"{extra} FROM "{obj}" ORDER BY "Id"')
            )

    def pending_ids(self) -> set[str]:
        return {str(p["id"]) for p in self.org.pending_late_commits()}

    def live(self, obj: str, columns: str = "", keep: Callable[[tuple[Any, ...]], bool] | None = None) -> list[str]:
        pending = self.pending_ids()
        return [
            str(r[0])
            for r in self.rows(obj, columns)
            if not r[1] and str(r[0]) not in pending and (keep is None or keep(r))
        ]

    def deleted(self, obj: str) -> list[str]:
        return [str(r[0]) for r in self.rows(obj) if r[1]]

    def sync_results(self, since: int) -> list[dict[str, Any]]:
        name = self.stack.function_name("ObjectSyncFunction")
        out: list[dict[str, Any]] = []
        for inv in self.stack.invocations[since:]:
            if inv.function_name != name:
                continue
            if inv.is_error:
                out.append({"object": inv.event.get("object"), "status": "error", "error": inv.result})
            else:
                out.append(inv.result)
        return out

    def tick(self, advance_s: int) -> list[dict[str, Any]]:
        """Move both clocks, fire the schedule once (dispatcher + the syncs it fans out)."""
        self.emu.clock.advance(advance_s)
        before = len(self.stack.invocations)
        try:
            self.last_dispatch = self.stack.fire_schedule()
        except LocalInvokeError as exc:
            # Salesforce refused the session again right after a new login (an armed ``invalid_session``
            # fault, or one after expired tokens): the tick fails as a whole, on Lambda's Errors metric,
            # and the next tick starts over.  Any other failure of the dispatcher is a defect.
            if not isinstance(exc.payload, dict) or exc.payload.get("errorType") != "SalesforceAuthError":
                raise
            self.last_dispatch = {}
            self.say(f"tick +{advance_s}s -> the dispatcher failed: {exc.payload.get('errorMessage')}")
            return self.sync_results(before)
        results = self.sync_results(before)
        summary = ", ".join(
            f"{r.get('object')}:{r.get('status')}"
            + (f"({_writes(r)} writes)" if r.get("status") not in ("error", "lease-held") else "")
            for r in results
        )
        held = sorted({str(why).split(" since ")[0] for why in (self.last_dispatch.get("skipped") or {}).values()})
        self.say(f"tick +{advance_s}s -> {summary or 'nothing started'}" + (f"; held: {held}" if held else ""))
        return results

    def idle(self, results: list[dict[str, Any]]) -> bool:
        """Every object either ran a cycle that wrote nothing or was held because the probe saw no change."""
        skipped = self.last_dispatch.get("skipped") or {}
        for obj in SYNCED:
            ran = [r for r in results if r.get("object") == obj]
            if ran:
                if any(r.get("status") not in ("complete", "empty") or _writes(r) for r in ran):
                    return False
            elif not str(skipped.get(obj, "")).startswith(NO_CHANGE):
                return False
        return True


def _writes(result: dict[str, Any]) -> int:
    counts = result.get("counts") or {}
    return sum(int(counts.get(k, 0)) for k in ("RecordsCreated", "RecordsUpdated", "RecordsDeleted", "RecordsFailed"))


def _pick(candidates: list[str], index: int) -> str | None:
    return candidates[index % len(candidates)] if candidates else None


# ------------------------------------------------------------------------------------------------
# Salesforce activity
# ------------------------------------------------------------------------------------------------


def create_values(world: World, obj: str, variant: int) -> dict[str, Any]:
    accounts = world.live("Account")
    account = _pick(accounts, variant)
    if obj == "Account":
        return {"Name": f"Account {variant}", "Industry": catalogue.INDUSTRY[variant % len(catalogue.INDUSTRY)]}
    if obj == "Contact":
        return {"LastName": f"Contact {variant}", "Title": "Buyer", "AccountId": account}
    if obj == "Lead":
        return {"LastName": f"Lead {variant}", "Company": f"Company {variant}", "Title": "CTO"}
    if obj == "Opportunity":
        stage = catalogue.OPPORTUNITY_STAGE[variant % len(catalogue.OPPORTUNITY_STAGE)]
        return {"Name": f"Deal {variant}", "StageName": stage, "CloseDate": "2026-12-31", "AccountId": account}
    if obj == "Task":
        return {"Subject": f"Call {variant}", "WhatId": account, "Priority": "High"}
    raise ValueError(f"no create values for {obj}")


def update_values(obj: str, variant: int) -> dict[str, Any]:
    choices: dict[str, list[dict[str, Any]]] = {
        "Account": [
            {"Name": f"Renamed {variant}"},
            {"Industry": catalogue.INDUSTRY[variant % len(catalogue.INDUSTRY)], "NumberOfEmployees": variant},
            {"Industry": None, "Description": f"note {variant}"},
            {"Rating": catalogue.RATING[variant % 3], "AnnualRevenue": variant * 1000},
        ],
        "Contact": [
            {"LastName": f"Renamed {variant}"},
            {"Title": f"Title {variant}", "Email": f"c{variant}@example.com"},
            {"Title": None},
        ],
        "Lead": [
            {"Company": f"Company {variant}"},
            {"Title": f"Title {variant}", "Status": catalogue.LEAD_STATUS[variant % 2]},
            {"Title": None, "NumberOfEmployees": variant},
        ],
        "Opportunity": [
            {"Amount": variant * 10.5},
            {"StageName": catalogue.OPPORTUNITY_STAGE[variant % len(catalogue.OPPORTUNITY_STAGE)]},
            {"Name": f"Deal renamed {variant}", "NextStep": None},
        ],
        "Task": [
            {"Subject": f"Subject {variant}"},
            {"Priority": catalogue.TASK_PRIORITY[variant % 3], "Status": catalogue.TASK_STATUS[variant % 5]},
            {"Description": f"notes {variant}"},
        ],
    }
    options = choices[obj]
    return options[variant % len(options)]


@dataclasses.dataclass(frozen=True)
class Create:
    obj: str
    variant: int

    def apply(self, world: World) -> str:
        rid = world.org.create(self.obj, create_values(world, self.obj, self.variant), as_api=False)
        return f"created {self.obj} {rid}"


@dataclasses.dataclass(frozen=True)
class Update:
    obj: str
    pick: int
    variant: int

    def apply(self, world: World) -> str:
        rid = _pick(_updatable(world, self.obj), self.pick)
        if rid is None:
            return f"no {self.obj} to update"
        values = update_values(self.obj, self.variant)
        world.org.update(self.obj, rid, values, as_api=False)
        return f"updated {self.obj} {rid} {values}"


@dataclasses.dataclass(frozen=True)
class MassUpdate:
    obj: str
    picks: tuple[int, ...]
    variant: int

    def apply(self, world: World) -> str:
        candidates = _updatable(world, self.obj)
        ids = sorted({c for c in (_pick(candidates, p) for p in self.picks) if c})
        if not ids:
            return f"no {self.obj} to mass-update"
        values = update_values(self.obj, self.variant)
        world.org.mass_update(self.obj, ids, values)
        return f"mass-updated {len(ids)} {self.obj} {ids} {values}"


@dataclasses.dataclass(frozen=True)
class LateCommit:
    """A transaction stamped ``stamp_ago_s`` ago that becomes visible ``visible_after_s`` from now.

    ``pick`` None: a create; otherwise an update of a Lead nothing else touches while it is pending
    (a real row lock).  The stamp never goes below the row's current one (the lock again).
    """

    obj: str
    pick: int | None
    stamp_ago_s: int
    visible_after_s: int
    variant: int

    def apply(self, world: World) -> str:
        if self.pick is None:
            values = create_values(world, self.obj, self.variant)
            rid = world.org.late_commit(
                self.obj, values, stamp_ago_s=self.stamp_ago_s, visible_after_s=self.visible_after_s
            )
            return f"late create {self.obj} {rid} stamped -{self.stamp_ago_s}s visible +{self.visible_after_s}s"
        rows = {str(r[0]): r for r in world.rows("Lead")}
        rid = _pick(_updatable(world, "Lead"), self.pick)
        if rid is None:
            return "no Lead for a late update"
        current_ms = int(rows[rid][2])
        ago = min(self.stamp_ago_s, max(0, (world.emu.clock.now_ms() - current_ms) // 1000))
        values = update_values("Lead", self.variant)
        world.org.late_commit("Lead", values, record_id=rid, stamp_ago_s=ago, visible_after_s=self.visible_after_s)
        return f"late update Lead {rid} {values} stamped -{ago}s visible +{self.visible_after_s}s"


@dataclasses.dataclass(frozen=True)
class Delete:
    obj: str
    pick: int
    hard: bool = False

    def apply(self, world: World) -> str:
        rid = _pick(world.live(self.obj), self.pick)
        if rid is None:
            return f"no {self.obj} to delete"
        if self.hard:
            world.org.hard_delete(self.obj, rid)
            return f"hard-deleted {self.obj} {rid} (and its cascade)"
        world.org.delete(self.obj, rid, as_api=False)
        return f"deleted {self.obj} {rid} (and its cascade)"


@dataclasses.dataclass(frozen=True)
class EmptyRecycleBin:
    obj: str

    def apply(self, world: World) -> str:
        removed = world.org.empty_recycle_bin(self.obj)
        return f"emptied the {self.obj} recycle bin ({removed} rows)"


@dataclasses.dataclass(frozen=True)
class Undelete:
    obj: str
    pick: int

    def apply(self, world: World) -> str:
        rid = _pick(world.deleted(self.obj), self.pick)
        if rid is None:
            return f"no {self.obj} in the recycle bin"
        world.org.undelete(self.obj, rid, as_api=False)
        return f"undeleted {self.obj} {rid}"


@dataclasses.dataclass(frozen=True)
class Merge:
    obj: str
    master: int
    loser: int

    def apply(self, world: World) -> str:
        candidates = world.live(self.obj)
        master = _pick(candidates, self.master)
        losers = [c for c in candidates if c != master]
        loser = _pick(losers, self.loser)
        if master is None or loser is None:
            return f"not enough {self.obj} to merge"
        world.org.merge(self.obj, master, [loser])
        return f"merged {self.obj} {loser} into {master}"


@dataclasses.dataclass(frozen=True)
class Convert:
    pick: int
    account: int | None
    opportunity: bool

    def apply(self, world: World) -> str:
        lead = _pick(_updatable(world, "Lead"), self.pick)
        if lead is None:
            return "no Lead to convert"
        account = None if self.account is None else _pick(world.live("Account"), self.account)
        ids = world.org.convert_lead(lead, account_id=account, create_opportunity=self.opportunity)
        return f"converted Lead {lead} -> {ids}"


@dataclasses.dataclass(frozen=True)
class Archive:
    pick: int

    def apply(self, world: World) -> str:
        task = _pick(world.live("Task", '"IsArchived"', keep=lambda r: not r[3]), self.pick)
        if task is None:
            return "no Task to archive"
        world.org.archive("Task", task)
        return f"archived Task {task}"


@dataclasses.dataclass(frozen=True)
class FieldPermission:
    obj: str
    field: str
    visible: bool

    def apply(self, world: World) -> str:
        if self.visible:
            world.org.show_field(self.obj, self.field)
        else:
            world.org.hide_field(self.obj, self.field)
        return f"{'showed' if self.visible else 'hid'} {self.obj}.{self.field} to the integration user"


@dataclasses.dataclass(frozen=True)
class Fault:
    kind: str
    family: str
    count: int

    def apply(self, world: World) -> str:
        world.emu.add_fault(self.kind, family=self.family, count=self.count)
        return f"armed fault {self.kind} on {self.family} x{self.count}"


@dataclasses.dataclass(frozen=True)
class ExpireTokens:
    def apply(self, world: World) -> str:
        world.emu.expire_tokens()
        return "expired every access token"


@dataclasses.dataclass(frozen=True)
class DuplicateDelivery:
    """The same object-sync event delivered twice outside the dispatcher (async retry, manual run)."""

    obj: str
    n: int

    def apply(self, world: World) -> str:
        event = {"object": self.obj, "cycle_id": f"{self.obj}-duplicate-{self.n}", "reason": "manual"}
        before = len(world.stack.invocations)
        world.stack.invoke_async("ObjectSyncFunction", event)
        world.stack.invoke_async("ObjectSyncFunction", event)
        world.stack.drain()
        outcomes = [f"{r.get('status')}({_writes(r)} writes)" for r in world.sync_results(before)]
        return f"delivered the {self.obj} sync event twice -> {', '.join(outcomes)}"


@dataclasses.dataclass(frozen=True)
class RelayEvents:
    """Event Relay delivers what is pending as EventBridge may: some dropped, some twice, shuffled, cut
    into ``batches`` queue batches."""

    seed: int
    drop_percent: int
    duplicate_percent: int
    batches: int

    def apply(self, world: World) -> str:
        if world.relay is None:
            return "no relay (change events off)"
        rng = random.Random(self.seed)
        pending = world.relay.take_pending()
        kept = [e for e in pending if rng.randrange(100) >= self.drop_percent]
        out = kept + [e for e in kept if rng.randrange(100) < self.duplicate_percent]
        rng.shuffle(out)
        size = max(1, -(-len(out) // self.batches))
        for start in range(0, len(out), size):
            world.stack.put_change_events(out[start : start + size], bus=world.relay.bus)
            world.stack.drain()
        kinds = sorted({e["detail"]["payload"]["ChangeEventHeader"]["changeType"] for e in out})
        return f"relayed {len(out)} event(s) of {len(pending)} ({len(pending) - len(kept)} dropped) {kinds}"


@dataclasses.dataclass(frozen=True)
class GapEvent:
    """Salesforce sends a gap event for a record (a change it could not describe), or an overflow."""

    obj: str
    index: int
    overflow: bool = False

    def apply(self, world: World) -> str:
        if self.overflow:
            world.org.cdc.inject_overflow(self.obj)
            return f"GAP_OVERFLOW for {self.obj}"
        target = _pick(world.live(self.obj) + world.deleted(self.obj), self.index)
        if target is None:
            return f"no {self.obj} for a gap event"
        world.org.cdc.inject_gap(self.obj, [target], "GAP_UPDATE")
        return f"GAP_UPDATE for {self.obj} {target}"


@dataclasses.dataclass(frozen=True)
class Wait:
    seconds: int

    def apply(self, world: World) -> str:
        world.emu.clock.advance(self.seconds)
        return f"waited {self.seconds}s"


#: Local edits: valid changes, and values the engine (too long, not a picklist value) must refuse.
LOCAL_EDITS: dict[str, list[dict[str, Any]]] = {
    "Lead": [
        {"Title": "Local title {v}"},
        {"City": "Local city {v}", "Company": "Local Co {v}"},
        {"Rating": "Lukewarm"},
        {"Title": "{v}" + "x" * 200},
    ],
    "Contact": [
        {"Title": "Local title {v}"},
        {"Department": "Local dept {v}"},
        {"Title": "{v}" + "y" * 200},
    ],
}


def local_values(obj: str, variant: int) -> dict[str, Any]:
    template = LOCAL_EDITS[obj][variant % len(LOCAL_EDITS[obj])]
    return {name: value.replace("{v}", str(variant)) for name, value in template.items()}


def valid_local_value(name: str, value: Any) -> bool:
    return not (name == "Rating" and value == "Lukewarm") and not (isinstance(value, str) and len(value) > 120)


@dataclasses.dataclass(frozen=True)
class LocalEdit:
    """An application edits a synced Lead or Contact item (UpdateItem of data attributes only)."""

    obj: str
    pick: int
    variant: int

    def apply(self, world: World) -> str:
        items = table_items(world, self.obj)
        candidates = sorted(
            rid for rid, item in items.items() if "_base" in item and not item.get("IsDeleted") and rid[:3] != "loc"
        )
        rid = _pick(candidates, self.pick)
        if rid is None:
            return f"no {self.obj} item to edit locally"
        values = local_values(self.obj, self.variant)
        table = world.settings.table_for(world.settings.registry.get(self.obj).family)
        names = {f"#f{i}": name for i, name in enumerate(values)}
        world.stack.boto3_client("dynamodb").update_item(
            TableName=table,
            Key={"Id": {"S": rid}},
            UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(values))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={f":v{i}": {"S": str(v)} for i, v in enumerate(values.values())},
        )
        world.stack.drain()
        world.local_edits.append((len(world.log), self.obj, rid, values))
        return f"local edit {self.obj} {rid} {values}"


@dataclasses.dataclass(frozen=True)
class LocalCreate:
    """An application puts a new Lead item with its own key (no Salesforce Id, no base)."""

    variant: int

    def apply(self, world: World) -> str:
        key = f"local-lead-{len(world.local_creates)}-{self.variant}"
        table = world.settings.table_for(world.settings.registry.get("Lead").family)
        item = {"Id": key, "sobject": "Lead", "LastName": f"Local {key}", "Company": f"Local Co {self.variant}"}
        world.stack.boto3_client("dynamodb").put_item(TableName=table, Item={k: {"S": v} for k, v in item.items()})
        world.stack.drain()
        world.local_creates.append((len(world.log), key))
        return f"local create Lead {key}"


@dataclasses.dataclass(frozen=True)
class Cycle:
    advance_s: int

    def apply(self, world: World) -> str:
        world.tick(self.advance_s)
        return f"schedule fired after {self.advance_s}s"


Op = (
    Create
    | Update
    | MassUpdate
    | LateCommit
    | Delete
    | EmptyRecycleBin
    | Undelete
    | Merge
    | Convert
    | Archive
    | FieldPermission
    | Fault
    | ExpireTokens
    | DuplicateDelivery
    | Wait
    | Cycle
    | LocalEdit
    | LocalCreate
    | RelayEvents
    | GapEvent
)


def _updatable(world: World, obj: str) -> list[str]:
    if obj == "Lead":
        return world.live("Lead", '"IsConverted"', keep=lambda r: not r[3])
    return world.live(obj)


# ------------------------------------------------------------------------------------------------
# Strategies
# ------------------------------------------------------------------------------------------------

_index = st.integers(0, 40)
_variant = st.integers(0, 20)
_objects = st.sampled_from(SYNCED)
_recycle_bin_objects = st.sampled_from(("Account", "Contact", "Lead", "Opportunity", "Task"))

STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "create": st.builds(Create, _objects, _variant),
    "update": st.builds(Update, _objects, _index, _variant),
    "mass_update": st.builds(MassUpdate, _objects, st.tuples(_index, _index, _index), _variant),
    "late_commit": st.builds(
        LateCommit,
        _objects,
        st.none() | _index,
        st.integers(0, MAX_STAMP_AGO_S),
        st.integers(1, MAX_VISIBLE_AFTER_S),
        _variant,
    ),
    "delete": st.builds(Delete, _objects, _index),
    "hard_delete": st.builds(Delete, _objects, _index, st.just(True)),
    "empty_recycle_bin": st.builds(EmptyRecycleBin, _recycle_bin_objects),
    "undelete": st.builds(Undelete, _objects, _index),
    "merge": st.builds(Merge, st.sampled_from(("Account", "Contact", "Lead")), _index, _index),
    "convert": st.builds(Convert, _index, st.none() | _index, st.booleans()),
    "archive": st.builds(Archive, _index),
    "permission": st.builds(
        lambda pair, visible: FieldPermission(pair[0], pair[1], visible), st.sampled_from(TOGGLED_FIELDS), st.booleans()
    ),
    "fault": st.builds(
        Fault,
        st.sampled_from(("http_500", "http_503", "invalid_session", "request_limit", "query_timeout")),
        st.sampled_from(("query", "describe", "any")),
        st.integers(1, 2),
    ),
    "expire_tokens": st.just(ExpireTokens()),
    "duplicate_delivery": st.builds(DuplicateDelivery, _objects, st.integers(0, 3)),
    "wait": st.builds(Wait, st.integers(1, 120)),
    "cycle": st.builds(Cycle, st.sampled_from((30, 200, PAUSE_SECONDS + 1, PAUSE_SECONDS + 61, 900))),
    "local_edit": st.builds(LocalEdit, st.sampled_from(("Lead", "Contact")), _index, _variant),
    "local_create": st.builds(LocalCreate, _variant),
    "relay": st.builds(
        RelayEvents, st.integers(0, 2**16), st.sampled_from((0, 0, 20, 50)), st.sampled_from((0, 30)), st.integers(1, 3)
    ),
    "gap": st.builds(GapEvent, _objects, _index, st.booleans()),
}
#: The kinds of the Salesforce-only property (the write-back property adds the local ones).
SALESFORCE_KINDS = tuple(k for k in STRATEGIES if not k.startswith("local_") and k not in ("relay", "gap"))
#: The change-event property: Salesforce activity, event deliveries, gap and overflow events.
CDC_KINDS = (
    "create",
    "update",
    "mass_update",
    "late_commit",
    "delete",
    "undelete",
    "merge",
    "convert",
    "permission",
    "wait",
    "cycle",
    "relay",
    "relay",
    "relay",
    "gap",
)
WRITEBACK_KINDS = ("create", "update", "delete", "merge", "convert", "wait", "cycle", "local_edit", "local_create")


def histories(kinds: tuple[str, ...] = SALESFORCE_KINDS, max_size: int = 10) -> st.SearchStrategy[list[Op]]:
    """Random activity histories made of the listed operation kinds."""
    unknown = sorted(set(kinds) - set(STRATEGIES))
    if unknown:
        raise ValueError(f"unknown operation kind(s): {', '.join(unknown)}")
    return st.lists(st.one_of([STRATEGIES[k] for k in kinds]), min_size=1, max_size=max_size)


# ------------------------------------------------------------------------------------------------
# Running a history and checking convergence
# ------------------------------------------------------------------------------------------------


def seed_org(world: World) -> None:
    org = world.org
    accounts = [org.create("Account", {"Name": f"Seed Account {i}"}, as_api=False) for i in range(3)]
    for i in range(4):
        org.create("Contact", {"LastName": f"Seed {i}", "AccountId": accounts[i % 3]}, as_api=False)
    for i in range(4):
        org.create("Lead", {"LastName": f"Seed {i}", "Company": f"Seed Co {i}"}, as_api=False)
    for i in range(2):
        org.create(
            "Opportunity",
            {"Name": f"Seed Deal {i}", "StageName": "Prospecting", "CloseDate": "2026-12-31", "AccountId": accounts[i]},
            as_api=False,
        )
    for i in range(3):
        org.create("Task", {"Subject": f"Seed Task {i}", "WhatId": accounts[i]}, as_api=False)


@contextmanager
def fresh_world(*, cdc: bool = False, **parameters: str) -> Iterator[World]:
    """A new emulated org (seeded, first copy done) and a new local stack pointed at it.

    Every example gets its own stack: the first copy is a Step Functions execution with a
    deterministic name, so a stack reused across orgs would find it "already started".
    ``parameters`` are extra template parameters (``OverlapSeconds`` ...).
    """
    emu = Emulator.start(seed=7, records=0, clock=EmulatorClock(int(START.timestamp() * 1000), running=False))
    try:
        reset_engine_caches()
        template_parameters = {"SyncObjects": ",".join(SYNCED), "PauseSeconds": str(PAUSE_SECONDS), **parameters}
        if cdc:
            from sfsync_local.relay import bus_name

            template_parameters["EventRelayBusName"] = bus_name(emu.org.org_id)
        with LocalStack.deploy(parameters=template_parameters, salesforce_secret=salesforce_secret(emu)) as stack:
            settings = load_settings(stack.function_environment("ObjectSyncFunction"))
            world = World(emu, stack, settings)
            with sfsync_clock.use_clock(EmulatorTime(emu.clock)):
                seed_org(world)
                first = world.tick(settings.safety_lag_seconds + 1)
                if copy_executions(world.last_dispatch):  # the first tick starts the full-copy workflow
                    for description in wait_for_copies(stack, world.last_dispatch):
                        assert description["status"] == "SUCCEEDED", description
                    stack.drain()
                    world.say("first full copy done")
                else:
                    assert sorted(r["object"] for r in first) == sorted(SYNCED), first
                if cdc:
                    from sfsync.changes.apply import SELECTIONS
                    from sfsync_local.relay import LocalEventRelay

                    SELECTIONS.clear()
                    world.relay = LocalEventRelay(stack, emu.org).attach()
                try:
                    yield world
                finally:
                    if world.relay is not None:
                        world.relay.detach()
    finally:
        reset_engine_caches()
        emu.clear_faults()
        # stopping the server waits for its poll interval; nothing depends on it having stopped
        threading.Thread(target=emu.stop, daemon=True).start()


def quiet(world: World) -> None:
    """No more activity: let late commits land and windows pass them, then cycle until idle."""
    s = world.settings
    world.say("quiet period starts")
    world.tick(s.overlap_seconds + s.safety_lag_seconds + PAUSE_SECONDS + MAX_VISIBLE_AFTER_S + 1)
    world.emu.clear_faults()
    for _ in range(MAX_QUIET_ROUNDS):
        if world.relay is not None:  # late commits and stale events still arrive: they must change nothing
            world.say(RelayEvents(0, 0, 0, 1).apply(world))
        if world.idle(world.tick(PAUSE_SECONDS + 1)):
            return
    raise AssertionError(f"the copy did not settle within {MAX_QUIET_ROUNDS} quiet cycles:\n" + "\n".join(world.log))


def salesforce_view(world: World, obj: str) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """What the integration user sees: describe's fields and ``queryAll`` rows (deleted included)."""
    sf = world.emu.salesforce()
    describe = getattr(sf, obj).describe()
    names = [f["name"] for f in describe["fields"] if f["type"] not in UNSELECTED_TYPES and not f["calculated"]]
    rows = sf.query_all(f"SELECT {', '.join(names)} FROM {obj}", include_deleted=True)["records"]
    return names, {row["Id"]: row for row in rows}


def table_items(world: World, obj: str) -> dict[str, dict[str, Any]]:
    spec = world.settings.registry.get(obj)
    table = world.settings.table_for(spec.family)
    client = world.stack.boto3_client("dynamodb")
    items: dict[str, dict[str, Any]] = {}
    for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for raw in page["Items"]:
            item = {k: _DESERIALIZE(v) for k, v in raw.items()}
            if item.get("sobject") == obj:
                items[str(item["Id"])] = item
    return items


def discrepancies(world: World) -> list[str]:
    """Every difference between the DynamoDB copy and the integration user's view, per object."""
    found: list[str] = []
    for obj in SYNCED:
        names, view = salesforce_view(world, obj)
        items = table_items(world, obj)
        for rid, row in sorted(view.items()):
            item = items.get(rid)
            if item is None:
                found.append(f"missing {obj} {rid} (IsDeleted={row['IsDeleted']}, stamp {row['SystemModstamp']})")
                continue
            if "_writeback_error" in item:
                continue  # a refused local change stays visible on the item (the errors table has it)
            stale = [
                f"{name}: table {item.get(name)!r} != salesforce {expected_value(row[name])!r}"
                for name in names
                if (row.get(name) is None and name in item)
                or (row.get(name) is not None and item.get(name) != expected_value(row[name]))
            ]
            if stale:
                found.append(f"stale {obj} {rid}: " + "; ".join(stale))
        for rid, item in sorted(items.items()):
            if item.get("_local_status") == "created":
                continue  # a local create's redirect to the record it became
            if rid not in view and item.get("IsDeleted") is not True:
                found.append(f"extra {obj} {rid}: live in the table, gone from Salesforce")
    return found


def run_history(world: World, history: list[Op]) -> None:
    for op in history:
        try:
            world.say(op.apply(world))
        except DmlError as exc:  # the org refused this step (a rule, a converted lead...): it did not happen
            world.say(f"{op} refused by the org: {exc}")


def check_convergence(world: World, history: list[Op]) -> list[str]:
    run_history(world, history)
    quiet(world)
    return discrepancies(world)


LATE_BELOW_THE_WATERMARK: list[Op] = [
    LateCommit("Lead", None, stamp_ago_s=90, visible_after_s=30, variant=1),
    Cycle(PAUSE_SECONDS + 61),
]


@settings(
    max_examples=18,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@example(history=LATE_BELOW_THE_WATERMARK)
@example(history=[Merge("Account", 0, 1), Convert(0, 0, True), Cycle(PAUSE_SECONDS + 1), Delete("Account", 0)])
# Salesforce refuses the dispatcher's probe twice, the second time right after a new login: that tick fails
# (found by this property: the harness took the failed tick for a defect and stopped)
@example(history=[Cycle(30), Fault("invalid_session", "any", 2)])
@given(history=histories())
def test_given_any_salesforce_history_when_quiet_then_the_table_equals_what_the_integration_user_sees(
    history: list[Op],
) -> None:
    with fresh_world() as world:
        problems = check_convergence(world, history)
        note("\n".join(world.log))
    assert not problems, "the copy diverged:\n" + "\n".join(problems) + "\nhistory:\n" + "\n".join(world.log)


def test_given_no_overlap_when_a_commit_lands_below_the_watermark_then_the_check_reports_it_missing() -> None:
    """The oracle can fail: without the overlap window the late commit is never read."""
    with fresh_world(OverlapSeconds="0") as world:
        assert world.settings.overlap_seconds == 0
        problems = check_convergence(world, LATE_BELOW_THE_WATERMARK)
        late = [p for p in world.log if "late create" in p]
    assert late, world.log
    late_id = late[0].split()[4]
    assert any(p.startswith("missing Lead " + late_id) for p in problems), problems


def test_given_a_settled_copy_when_items_are_tampered_with_then_the_check_names_each_difference() -> None:
    """The oracle sees every kind of divergence: a missing, an extra and a stale item."""
    with fresh_world() as world:
        assert check_convergence(world, [Wait(1)]) == []
        client = world.stack.boto3_client("dynamodb")
        table = world.settings.table_for(world.settings.registry.get("Account").family)
        accounts = sorted(table_items(world, "Account"))
        client.delete_item(TableName=table, Key={"Id": {"S": accounts[0]}})
        client.update_item(
            TableName=table,
            Key={"Id": {"S": accounts[1]}},
            UpdateExpression="SET #n = :v",
            ExpressionAttributeNames={"#n": "Name"},
            ExpressionAttributeValues={":v": {"S": "Not what Salesforce says"}},
        )
        ghost = "001" + "Z" * 15
        client.put_item(
            TableName=table,
            Item={"Id": {"S": ghost}, "sobject": {"S": "Account"}, "IsDeleted": {"BOOL": False}},
        )
        problems = discrepancies(world)
    assert any(p.startswith(f"missing Account {accounts[0]}") for p in problems), problems
    assert any(p.startswith(f"stale Account {accounts[1]}: Name") for p in problems), problems
    assert any(p.startswith(f"extra Account {ghost}") for p in problems), problems
    assert len(problems) == 3, problems


def errors_rows(world: World, obj: str) -> list[dict[str, Any]]:
    client = world.stack.boto3_client("dynamodb")
    table = world.stack.table_name("ErrorsTable")
    rows: list[dict[str, Any]] = []
    for page in client.get_paginator("query").paginate(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"ERRORS#{obj}"}},
        ConsistentRead=True,
    ):
        rows += [{k: _DESERIALIZE(v) for k, v in raw.items()} for raw in page["Items"]]
    return rows


def writeback_problems(world: World) -> list[str]:
    """Local edits and creates against Salesforce's final state and the errors table."""
    found: list[str] = []
    sf = world.emu.salesforce()
    recorded = {obj: {str(r["record_id"]) for r in errors_rows(world, obj)} for obj in ("Lead", "Contact")}
    last: dict[tuple[str, str, str], tuple[int, Any]] = {}
    for position, obj, rid, values in world.local_edits:
        for name, value in values.items():
            last[(obj, rid, name)] = (position, value)
    for (obj, rid, name), (position, value) in sorted(last.items()):
        touched_later = any(rid in line and "local edit" not in line for line in world.log[position + 1 :])
        if not valid_local_value(name, value):
            if rid not in recorded[obj]:
                found.append(f"refused local {obj}.{name} of {rid} is not in the errors table")
            continue
        row = world.org.get(obj, rid, include_deleted=True, as_api=False)
        if row is None or row.get(name) == value or touched_later or rid in recorded[obj]:
            continue
        found.append(f"accepted local {obj}.{name}={value!r} of {rid} is not in Salesforce ({row.get(name)!r})")
    for _, key in world.local_creates:
        rows = sf.query_all(f"SELECT Id FROM Lead WHERE LastName = 'Local {key}'", include_deleted=True)["records"]
        if len(rows) != 1:
            found.append(f"local create {key} exists {len(rows)} times in Salesforce")
            continue
        items = table_items(world, "Lead")
        redirect = items.get(key) or {}
        if redirect.get("_created_id") != rows[0]["Id"]:
            found.append(f"local create {key}: item redirects to {redirect.get('_created_id')!r}, not {rows[0]['Id']}")
    return found


@settings(
    max_examples=10,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # a failing history is printed whole; shrinking one takes minutes
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@example(
    history=[
        Update("Account", 0, 1),
        Update("Account", 0, 2),
        RelayEvents(1, 0, 50, 2),
        Delete("Account", 1),
        Undelete("Account", 1),
        Merge("Contact", 0, 1),
        RelayEvents(2, 50, 30, 3),
        GapEvent("Lead", 0),
        GapEvent("Account", 0, overflow=True),
        RelayEvents(3, 0, 0, 1),
    ]
)
@example(  # events delivered after a cycle read their record at the same stamp (found by this property)
    history=[
        LateCommit("Account", 20, 87, 248, 8),
        Convert(28, 39, True),
        Update("Opportunity", 8, 11),
        MassUpdate("Opportunity", (38, 18, 37), 0),
        Convert(27, 31, True),
    ]
)
@given(history=histories(CDC_KINDS, max_size=12))
def test_given_change_events_dropped_duplicated_and_reordered_when_quiet_then_the_table_equals_salesforce(
    history: list[Op],
) -> None:
    with fresh_world(cdc=True) as world:
        problems = check_convergence(world, history)
        note("\n".join(world.log))
    assert not problems, "the copy diverged:\n" + "\n".join(problems) + "\nhistory:\n" + "\n".join(world.log)


#: The fields an update that changes no value still moves (Salesforce then publishes no change event).
_STAMPS = frozenset({"LastModifiedDate", "SystemModstamp", "LastModifiedById"})


def _stamp_without_event(world: World, problem: str) -> bool:
    """A stale item whose only difference is the stamps of an update that changed no value: Salesforce
    (and the emulator) publish no change event for it, so only a cycle can bring those stamps over."""
    if not problem.startswith("stale "):
        return False
    head, _, detail = problem.partition(": ")
    _, obj, rid = head.split(" ")
    names = {part.split(":", 1)[0].strip() for part in detail.split("; ")}
    if not names <= _STAMPS:
        return False
    row = world.org.get(obj, rid, include_deleted=True, as_api=False)
    stamp_ms = int(dt.datetime.fromisoformat(str(row["SystemModstamp"]).replace("+0000", "+00:00")).timestamp() * 1000)
    return not any(rid in e.record_ids and e.commit_timestamp >= stamp_ms for e in world.org.cdc.since(0))


#: Salesforce activity whose change events alone must bring the copy up to date (no cycle runs).
EVENTS_ONLY_KINDS = ("create", "update", "mass_update", "delete", "undelete", "merge", "convert", "wait", "gap")


@settings(
    max_examples=10,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(history=histories(EVENTS_ONLY_KINDS, max_size=12), seed=st.integers(0, 2**16), batches=st.integers(1, 4))
def test_given_every_change_event_delivered_duplicated_and_shuffled_then_the_table_equals_salesforce_without_a_cycle(
    history: list[Op], seed: int, batches: int
) -> None:
    """No event lost: the events alone (applied or re-read, in any order, some twice) make the copy exact."""
    with fresh_world(cdc=True) as world:
        run_history(world, history)
        world.say(RelayEvents(seed, 0, 40, batches).apply(world))
        started = [i for i in world.stack.invocations if i.function_name.endswith("ObjectSyncFunction")]
        problems = [p for p in discrepancies(world) if not _stamp_without_event(world, p)]
        note("\n".join(world.log))
    assert not problems, "the events missed:\n" + "\n".join(problems) + "\nhistory:\n" + "\n".join(world.log)
    assert all(i.event.get("reason") == "cdc" for i in started), "only an overflow starts a cycle"


@settings(
    max_examples=8,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # a failing history is printed whole; shrinking one takes minutes
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@example(
    history=[
        Update("Lead", 0, 1),
        LocalEdit("Lead", 0, 0),
        LocalEdit("Lead", 1, 2),
        LocalCreate(3),
        Cycle(PAUSE_SECONDS + 1),
        LocalEdit("Contact", 0, 2),
        LocalEdit("Contact", 1, 0),
    ]
)
@given(history=histories(WRITEBACK_KINDS, max_size=10))
def test_given_local_edits_and_creates_interleaved_when_quiet_then_both_sides_agree_and_nothing_is_lost(
    history: list[Op],
) -> None:
    with fresh_world() as world:
        problems = check_convergence(world, history) + writeback_problems(world)
        note("\n".join(world.log))
    assert not problems, "write-back diverged:\n" + "\n".join(problems) + "\nhistory:\n" + "\n".join(world.log)
