"""Play a chaos schedule on the local stack and check what it left behind.

:func:`run_schedule` starts the Salesforce emulator (virtual clock held at :data:`plan.EPOCH`),
deploys ``template.yaml`` on the local stack (moto, the real handlers and state machine), then walks
virtual time forward event by event:

* the dispatcher's schedule every ``profile.tick_seconds`` and the write-back's sweep every
  ``profile.sweep_seconds`` (fired as EventBridge would; the full-copy executions they start run to
  their end before time moves on, their Wait states and Retry back-offs moving the virtual clock);
* the workload (:mod:`sfsync_local.chaos.workload`) during the fault phase;
* the faults: armed at their time, disarmed at their end (persistent kinds);
* operator re-syncs (``{"resync": [...]}`` to the dispatcher, as ``sfsync resync`` sends it).

Copy faults still armed as the fault phase ends get one more copy (an operator re-sync).  Then the
settle phase: no workload, no faults, the schedules keep firing until everything has healed (checked
after every tick; at most ``profile.max_settle_minutes``) and a tick finds nothing left to do, and
the checks of :mod:`sfsync_local.chaos.checks` run.
"""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runner import emulator_secret
from . import seams
from .checks import ScheduleReport, check_run
from .plan import COPY_FAULTS, EPOCH_MS, OBJECTS, PERSISTENT, FaultSpec, Schedule
from .workload import Workload

REPO = Path(__file__).resolve().parents[3]
#: WriteBackOptions of the chaos stack: local deletes are pushed (the workload deletes items).
WRITEBACK_OPTIONS = {"Lead": {"allow_deletes": True}, "Contact": {"allow_deletes": True}}
#: WriteBackOptions of the ``config-error`` fault: a redeploy that broke one object's options (an unknown
#: conflict policy for Lead) and kept the rest.
BAD_WRITEBACK_OPTIONS = {**WRITEBACK_OPTIONS, "Lead": {**WRITEBACK_OPTIONS["Lead"], "conflict": "whoever-shouts"}}
#: Bulk jobs take this long (virtual seconds): every copy polls its job at least once.
BULK_JOB_SECONDS = 20.0
OVERLAP = 600  # OverlapSeconds (template default): a change keeps its object busy this long
EXECUTION_TIMEOUT_S = 120.0  # real seconds an execution may run (its waits take no time)


@dataclass
class FaultOutcome:
    """What became of one planned fault: when it fired (virtual ms), against what, with what evidence."""

    spec: FaultSpec
    fired_ms: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: execution ARNs it stopped or timed out
    targets: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)

    @property
    def fired(self) -> bool:
        return bool(self.fired_ms)


@dataclass
class Execution:
    arn: str
    name: str
    status: str
    ended_ms: int


class ChaosRun:
    """One schedule on one freshly deployed local stack (see the module docstring)."""

    def __init__(
        self,
        schedule: Schedule,
        *,
        log: Callable[[str], None] | None = None,
        before_checks: Callable[[ChaosRun], None] | None = None,
    ) -> None:
        self.schedule = schedule
        self.profile = schedule.profile
        self.timeline: deque[str] = deque(maxlen=150)  # the latest timeline lines, for a failure's report

        def log_line(line: str) -> None:
            self.timeline.append(line)
            if log is not None:
                log(line)

        self.log = log_line
        self.before_checks = before_checks  # tests of the checks plant a defect here
        self.outcomes = {f.id: FaultOutcome(f) for f in schedule.faults}
        self.executions: dict[str, Execution] = {}
        self.problems: list[str] = []  # harness-level trouble (an execution that never ended ...)
        self.last_dispatch: dict[str, Any] | None = None
        self.ticks = 0
        self.sweeps = 0
        self._rule_faults: dict[int, int] = {}  # emulator fault rule id -> fault id
        self._rng = random.Random(f"sfsync-chaos-run-{schedule.seed}")
        self._handlers: dict[str, Any] = {}
        self._env_backup: dict[str, Any] = {}
        self._dup = 0
        self._storm_rules: dict[int, int] = {}  # fault id -> emulator fault rule id
        #: (virtual ms, function, how many at once): AWS/Lambda ConcurrentExecutions, as Lambda reports it
        self.concurrent: list[tuple[int, str, int]] = []

    # ------------------------------------------------------------------ the run

    def run(self) -> ScheduleReport:
        started, cpu = time.monotonic(), time.process_time()
        with ExitStack() as stack:
            self._start(stack)
            self._play()
            settled_after = self._settle()
            if self.before_checks is not None:
                self.before_checks(self)
            report = check_run(self, settled_after=settled_after)
        report.wall_seconds = time.monotonic() - started
        report.cpu_seconds = time.process_time() - cpu  # this process: the run, moto and the emulator
        return report

    def _start(self, stack: ExitStack) -> None:
        from sfsync_emulator.bulk import JobTiming
        from sfsync_emulator.clock import Clock
        from sfsync_emulator.emulator import Emulator

        from sfsync_local.stack import LocalStack

        self.emulator = Emulator.start(
            seed=self.schedule.seed, records=self.profile.records, clock=Clock(EPOCH_MS, running=False)
        )
        stack.callback(self.emulator.stop)
        self.emulator.bulk.timing = JobTiming(in_progress_after_s=0, complete_after_s=BULK_JOB_SECONDS)
        now_ms = self.emulator.clock.now_ms
        self.clock = seams.EngineClock(now_ms)
        self.sink = seams.MetricSink(now_ms)
        self.interceptor = seams.Interceptor(now_ms)
        self.dynamo = seams.DynamoFaults(self.interceptor)
        self.slept = stack.enter_context(seams.quiet_retries())
        stack.enter_context(seams.fast_transactions())
        stack.enter_context(seams.quiet_moto_logs())
        stack.enter_context(seams.quiet_engine_logs())
        stack.enter_context(seams.engine_clock(self.clock))
        stack.enter_context(seams.captured_metrics(self.sink))
        stack.enter_context(self.dynamo.installed())
        seams.reset_engine_caches()
        stack.callback(seams.reset_engine_caches)
        self.secret = emulator_secret(self.emulator)
        self.stack = LocalStack.deploy(
            parameters={
                "SyncObjects": ",".join(OBJECTS),
                "PauseSeconds": str(self.profile.pause_seconds),
                "LogLevel": "WARNING",
                "WriteBackOptions": json.dumps(WRITEBACK_OPTIONS),
            },
            salesforce_secret=self.secret,
            record_invocations=False,
        )
        stack.callback(self.stack.close)
        stack.callback(self.interceptor.install(self.stack.runtime))
        stack.enter_context(seams.virtual_waits(self.emulator.clock.advance))
        self._watch_emulator_faults()
        self.dynamodb = self.stack.boto3_client("dynamodb")
        self.tables = {obj: self.stack.table_name(f"{obj}Table") for obj in OBJECTS}
        self.workload = Workload(self.schedule.seed, self.emulator, self.dynamodb, self.tables)
        self.workload.prime()

    def _watch_emulator_faults(self) -> None:
        injector = self.emulator.app.faults
        original = injector.fire

        def fire(family: str, method: str, rng: Any) -> list[Any]:
            fired = original(family, method, rng)
            for rule in fired:
                fault_id = self._rule_faults.get(rule.id)
                if fault_id is not None:
                    self._fired(fault_id, f"{rule.kind} on {method} {family}", quiet=True)
            return fired

        injector.fire = fire  # type: ignore[method-assign]

    # ------------------------------------------------------------------ time

    def now_s(self) -> int:
        return (self.emulator.clock.now_ms() - EPOCH_MS) // 1000

    def _advance_to(self, second: int) -> None:
        now = self.emulator.clock.now_ms()
        target = EPOCH_MS + second * 1000
        if target > now:
            self.emulator.clock.advance((target - now) / 1000)

    def _play(self) -> None:
        """The fault phase: faults, workload, re-syncs, ticks and sweeps in time order."""
        profile, end = self.profile, self.schedule.fault_phase_end
        events: list[tuple[int, int, str, Any]] = []  # (second, order, kind, payload)
        for spec in self.schedule.faults:
            events.append((spec.at, 1, "arm", spec))
            if spec.kind in PERSISTENT:
                events.append((spec.end, 0, "disarm", spec))
        for at, objects in self.schedule.resyncs:
            events.append((at, 3, "resync", objects))
        rng = random.Random(f"sfsync-chaos-ops-{self.schedule.seed}")
        for minute in range(1, profile.fault_minutes):
            if rng.random() < profile.sf_changes_per_hour / 60:
                events.append((minute * 60, 2, "sf", None))
            if rng.random() < profile.local_changes_per_hour / 60:
                events.append((minute * 60, 2, "local", None))
        events.sort(key=lambda e: (e[0], e[1]))
        queue = iter(events)
        pending = next(queue, None)
        self._next_tick, self._next_sweep = 0, profile.sweep_seconds
        while True:
            upcoming = [self._next_tick, self._next_sweep] + ([pending[0]] if pending else [])
            at = min(upcoming)
            if at > end and pending is None:
                break
            self._advance_to(at)
            now = self.now_s()
            while pending is not None and pending[0] <= now:
                self._event(pending[2], pending[3])
                pending = next(queue, None)
            self._schedules(now)
        self._leftover_copy_faults()

    def _leftover_copy_faults(self) -> None:
        """Copy faults still armed as the fault phase ends (the copies of their episode never reached their
        step: an earlier fault ended the execution first, or a resumed copy found its job already done) get
        one more copy: an operator re-sync of Lead."""
        waiting = [o.spec for o in self.outcomes.values() if o.spec.kind in COPY_FAULTS and not o.fired]
        if waiting:
            armed = ", ".join(f"#{spec.id}" for spec in waiting)
            self.log(f"{self._t()} operator: re-sync Lead (copy faults {armed} still armed)")
            self._invoke_dispatcher({"resync": ["Lead"], "requested_by": "chaos operator"})

    def _schedules(self, now: int) -> bool:
        """Fire the tick and the sweep if due (once, however many were missed while an execution ran);
        True when the dispatcher ticked."""
        ticked = False
        if self._next_tick <= now:
            self.tick()
            ticked = True
            self._skip_ticks()
        if self._next_sweep <= now:
            self.sweep()
            while self._next_sweep <= self.now_s():
                self._next_sweep += self.profile.sweep_seconds
        return ticked

    def _skip_ticks(self) -> None:
        while self._next_tick <= self.now_s():
            self._next_tick += self.profile.tick_seconds

    def _settle(self) -> int | None:
        """Fault-free ticks and sweeps until healed; returns the seconds that took (None: never healed).

        Healed (:func:`checks.stuck_findings`) is checked after every tick; once healed, the schedules keep
        firing until a tick finds nothing to do (the last pushes came back through the cycles, the overlap
        behind the last change is over), at least one pause and at most overlap + two pauses later."""
        start = self.now_s()
        deadline = start + self.profile.max_settle_minutes * 60
        healed_at: int | None = None
        while self.now_s() < deadline:
            self._advance_to(min(self._next_tick, self._next_sweep))
            if not self._schedules(self.now_s()):
                continue
            now = self.now_s()
            if healed_at is None:
                if self.healed():
                    healed_at = now
                continue
            pause = self.profile.pause_seconds
            if now - healed_at >= pause and (_quiet(self.last_dispatch) or now - healed_at >= OVERLAP + 2 * pause):
                break
        return None if healed_at is None else healed_at - start

    def healed(self) -> bool:
        from .checks import stuck_findings

        return not stuck_findings(self, final=False)

    # ------------------------------------------------------------------ events

    def _event(self, kind: str, payload: Any) -> None:
        if kind == "arm":
            self._arm(payload)
        elif kind == "disarm":
            self._disarm(payload)
        elif kind == "sf":
            self.log(f"{self._t()} user: {self.workload.salesforce_change()}")
        elif kind == "local":
            self.log(f"{self._t()} app: {self.workload.local_change()}")
        elif kind == "resync":
            self.log(f"{self._t()} operator: re-sync {', '.join(payload)}")
            self._invoke_dispatcher({"resync": list(payload), "requested_by": "chaos operator"})

    def _t(self) -> str:
        s = self.now_s()
        return f"[{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}]"

    def tick(self) -> None:
        self.ticks += 1
        self._invoke_dispatcher(self.stack.scheduled_event())

    def _invoke_dispatcher(self, event: Any) -> None:
        from sfsync_local.lambda_runtime import LocalInvokeError

        try:
            result = self.stack.invoke("DispatcherFunction", event)
            if isinstance(result, dict):
                self.last_dispatch = result
                self._log_dispatch(result)
        except LocalInvokeError as exc:
            self.last_dispatch = None  # recorded by the interceptor as the function's error
            self.log(f"{self._t()} dispatcher failed: {str(exc).splitlines()[0][:200]}")
        finally:
            self.stack.drain()
        self.wait_for_executions()
        self.stack.drain()

    def _log_dispatch(self, result: dict[str, Any]) -> None:
        copies = result.get("copies") or {}
        parts = []
        if result.get("started"):
            parts.append("cycles " + ",".join(str(e["object"]) for e in result["started"]))
        for key in ("started", "already_started"):
            for entry in copies.get(key) or []:
                parts.append(f"copy {key.replace('_', ' ')} {entry['execution_name']} {entry['objects']}")
        for key in ("reconciled", "attention"):
            for obj, why in (copies.get(key) or {}).items():
                parts.append(f"{key} {obj}: {why[:120]}")
        if parts:
            self.log(f"{self._t()} tick: " + "; ".join(parts))

    def sweep(self) -> None:
        from sfsync_local.lambda_runtime import LocalInvokeError

        self.sweeps += 1
        try:
            self.stack.fire_schedule("WriteBackFunction", event_name="Sweep", drain=False)
        except LocalInvokeError:
            pass  # recorded by the interceptor
        finally:
            self.stack.drain()

    def wait_for_executions(self) -> None:
        """Every running full-copy execution to its end (its waits take no real time), then what it ended as."""
        sfn = self.stack.boto3_client("stepfunctions")
        arn = self.stack.state_machine_arn()
        running = sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]
        for execution in running:
            name = execution["executionArn"]
            status = seams.wait_for_execution_end(
                name, self.stack.account_id, self.stack.region, timeout=EXECUTION_TIMEOUT_S
            )
            if status == "RUNNING":
                self.problems.append(f"harness: execution {name} still RUNNING after {EXECUTION_TIMEOUT_S} s")
        if not self.interceptor.wait_idle():
            self.problems.append("harness: a handler kept running after its execution ended")
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn):
            for execution in page["executions"]:
                if execution["status"] != "RUNNING" and execution["executionArn"] not in self.executions:
                    self.executions[execution["executionArn"]] = Execution(
                        execution["executionArn"], execution["name"], execution["status"], self.emulator.clock.now_ms()
                    )
                    self.log(f"{self._t()} execution {execution['name']} ended {execution['status']}")

    # ------------------------------------------------------------------ faults

    def _fired(self, fault_id: int, note: str, *, quiet: bool = False) -> None:
        outcome = self.outcomes[fault_id]
        outcome.fired_ms.append(self.emulator.clock.now_ms())
        if not quiet or len(outcome.fired_ms) == 1:
            outcome.notes.append(f"{self._t()} {note}")
            self.log(f"{self._t()} FAULT #{fault_id} {outcome.spec.kind}: {note}")

    def _hook(self, spec: FaultSpec, match: Callable[[str, Any], bool], action: seams.Action) -> None:
        def hook(function: str, event: Any) -> seams.Action | None:
            return action if match(function, event) else None

        self.interceptor.hooks.append(hook)

    def _arm(self, spec: FaultSpec) -> None:
        kind, params = spec.kind, spec.params
        fire = self._fired
        if kind == "kill-copy-step":
            step = params["step"]
            self._hook(
                spec,
                lambda fn, ev: fn == "FullSyncFunction" and isinstance(ev, dict) and ev.get("step") == step,
                seams.Action(
                    kill=params["mode"], at_write=2, on_fire=lambda: fire(spec.id, f"{step} killed ({params['mode']})")
                ),
            )
        elif kind in ("stop-execution", "time-out-execution"):
            step = params["step"]

            def end_execution(event: Any) -> None:
                arn = str(event.get("execution_id"))
                self.outcomes[spec.id].targets.append(arn)
                if kind == "stop-execution":
                    self.stack.boto3_client("stepfunctions").stop_execution(
                        executionArn=arn, error="Chaos", cause="stopped by the chaos schedule"
                    )
                else:
                    seams.time_out_execution(arn, self.stack.account_id, self.stack.region)
                fire(spec.id, f"{kind} after {step} of {arn.rsplit(':', 1)[-1]}")

            self._hook(
                spec,
                lambda fn, ev: fn == "FullSyncFunction" and isinstance(ev, dict) and ev.get("step") == step,
                seams.Action(after=end_execution),
            )
        elif kind == "ddb-throttle-copy":
            self.dynamo.throttles.append(
                seams.Throttle(
                    "FullSyncFunction",
                    frozenset(self.tables.values()),
                    int(params["requests"]),
                    on_first=lambda: fire(
                        spec.id, f"record-table requests of the copy throttled x{params['requests']}"
                    ),
                )
            )
        elif kind in ("kill-cycle", "kill-write-back"):
            function = "ObjectSyncFunction" if kind == "kill-cycle" else "WriteBackFunction"
            self._hook(
                spec,
                lambda fn, ev: fn == function and (function != "WriteBackFunction" or "Records" in ev),
                seams.Action(
                    kill=params["mode"],
                    # a cycle writes its lease, pages, checkpoint...; a write-back its marker, then the base
                    at_write=self._rng.randint(1, 3 if kind == "kill-cycle" else 2),
                    on_fire=lambda: fire(spec.id, f"{function} killed ({params['mode']})"),
                ),
            )
            if kind == "kill-write-back":  # a local change right away: the stream invocation to kill
                self.log(f"{self._t()} app: {self.workload.local_change_or_create()}")
        elif kind == "5xx-storm":
            rule = self.emulator.add_fault(f"http_{params['status']}", probability=float(params["probability"]))
            self._rule_faults[rule.id] = spec.id
            self._storm_rules[spec.id] = rule.id
            self.log(f"{self._t()} FAULT #{spec.id} 5xx storm starts ({params})")
        elif kind == "request-limit-write-back":
            rule = self.emulator.add_fault("request_limit", count=int(params["calls"]))
            self._rule_faults[rule.id] = spec.id
            self.log(f"{self._t()} app: {self.workload.local_change_or_create()} (REQUEST_LIMIT_EXCEEDED armed)")
        elif kind == "token-expiry-write-back":
            self.emulator.expire_tokens()
            fire(spec.id, "every access token expired")
            self.log(f"{self._t()} app: {self.workload.local_change_or_create()} (after the tokens expired)")
        elif kind == "clock-skew":
            self.clock.skew = float(params["offset"])
            fire(spec.id, f"engine clock {params['offset']:+d} s off Salesforce's")
        elif kind == "config-error":
            self._break_configuration(spec)
        elif kind == "concurrent-ticks":
            fire(spec.id, "two dispatcher ticks at once (instead of one)")
            self.ticks += 1
            self._at_once("DispatcherFunction", [self.stack.scheduled_event(), self.stack.scheduled_event()])
            self._skip_ticks()
        elif kind == "duplicate-delivery":
            self._dup += 1
            obj = str(params["object"])
            event = {"object": obj, "cycle_id": f"{obj}-chaos-duplicate-{self._dup}", "reason": "due"}
            self.emulator.add_fault("slow", count=1, delay_s=0.3)  # the first is still at Salesforce
            fire(spec.id, f"object-sync event of {obj} delivered twice at once")
            self._at_once("ObjectSyncFunction", [event, event])
        else:
            raise ValueError(f"unknown fault kind {kind}")

    def _disarm(self, spec: FaultSpec) -> None:
        kind = spec.kind
        if kind == "5xx-storm":
            self.emulator.app.faults.clear(self._storm_rules.pop(spec.id))
            self.log(f"{self._t()} FAULT #{spec.id} 5xx storm over")
        elif kind == "clock-skew":
            self.clock.skew = 0.0
            self.log(f"{self._t()} FAULT #{spec.id} clock skew over")
        elif kind == "config-error":
            self._repair_configuration(spec)

    def _break_configuration(self, spec: FaultSpec) -> None:
        flavor = spec.params["flavor"]
        if flavor == "wrong-secret":
            self.stack.put_salesforce_secret({**self.secret, "client_secret": "not-the-secret"})
        else:
            runtime = self.stack.runtime
            for logical_id in ("DispatcherFunction", "ObjectSyncFunction", "FullSyncFunction", "WriteBackFunction"):
                function_spec = runtime.spec(self.stack.function_name(logical_id))
                self._env_backup[logical_id] = function_spec
                broken = {**function_spec.environment, "SFSYNC_WRITEBACK": json.dumps(BAD_WRITEBACK_OPTIONS)}
                runtime.register(dataclasses.replace(function_spec, environment=broken))
        seams.reset_engine_caches()  # the cached secret expires while the fault lasts
        self._fired(spec.id, f"configuration broken: {flavor}")

    def _repair_configuration(self, spec: FaultSpec) -> None:
        if spec.params["flavor"] == "wrong-secret":
            self.stack.put_salesforce_secret(self.secret)
        else:
            for function_spec in self._env_backup.values():
                self.stack.runtime.register(function_spec)
            self._env_backup.clear()
        seams.reset_engine_caches()
        self.log(f"{self._t()} FAULT #{spec.id} configuration repaired")

    # ------------------------------------------------------------------ concurrency

    def _at_once(self, logical_id: str, events: list[Any]) -> None:
        """Deliver ``events`` to the function's plain ``handle`` on real threads released together (what
        two concurrent Lambda invocations do), then run what they queued."""
        results: list[Any] = [None] * len(events)
        with self._function_environment(logical_id):
            app = self._handler(logical_id)
            deps = self._deps(logical_id)
            barrier = threading.Barrier(len(events))

            def run(index: int) -> None:
                barrier.wait()
                try:
                    results[index] = app.handle(events[index], None, deps)
                except Exception as exc:  # noqa: BLE001 - one concurrent invocation's failure, recorded
                    results[index] = exc

            threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(events))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=EXECUTION_TIMEOUT_S)
                if thread.is_alive():
                    self.problems.append(f"harness: a concurrent {logical_id} invocation never returned")
        for event, result in zip(events, results, strict=True):
            self.interceptor.records.append(
                seams.InvocationRecord(
                    self.emulator.clock.now_ms(),
                    logical_id,
                    seams.detail_of(logical_id, event),
                    type(result).__name__ if isinstance(result, Exception) else None,
                    str(result)[:300] if isinstance(result, Exception) else "",
                )
            )
        self.concurrent.append((self.emulator.clock.now_ms(), logical_id, len(events)))
        self.log(f"{self._t()} {logical_id} x{len(events)} at once: {[_summary(r) for r in results]}")
        self.stack.drain()
        self.wait_for_executions()
        self.stack.drain()

    def _handler(self, logical_id: str) -> Any:
        from sfsync_local.lambda_runtime import load_handler_module

        if logical_id not in self._handlers:
            directory = {"DispatcherFunction": "dispatcher", "ObjectSyncFunction": "object_sync"}[logical_id]
            self._handlers[logical_id] = load_handler_module(
                REPO / "functions" / directory / "app.py", f"sfsync_chaos_{directory}_app"
            )
        return self._handlers[logical_id]

    def _deps(self, logical_id: str) -> Any:
        from sfsync import wiring

        return wiring.dispatcher_deps() if logical_id == "DispatcherFunction" else wiring.object_sync_deps()

    def _function_environment(self, logical_id: str) -> Any:
        """The function's environment as the local runtime has it registered now (faults included)."""
        runtime = self.stack.runtime
        return runtime.environment(runtime.spec(self.stack.function_name(logical_id)))


def _quiet(dispatch: dict[str, Any] | None) -> bool:
    """A tick that started nothing: no cycle, no copy, nothing held for one."""
    if not dispatch:
        return False
    copies = dispatch.get("copies") or {}
    return not (dispatch.get("started") or copies.get("started") or copies.get("already_started") or copies.get("held"))


def _summary(result: Any) -> str:
    if isinstance(result, Exception):
        return f"{type(result).__name__}"
    if isinstance(result, dict):
        return str(result.get("status") or sorted(result)[:4])
    return repr(result)[:40]


def run_schedule(
    schedule: Schedule,
    *,
    log: Callable[[str], None] | None = None,
    before_checks: Callable[[ChaosRun], None] | None = None,
) -> ScheduleReport:
    """Play ``schedule`` on a fresh emulator and local stack; the report of what it found.

    ``log`` receives the timeline (workload, faults, executions) as it happens; ``before_checks`` runs
    after the settle phase, before the checks (the harness's own tests plant defects there)."""
    return ChaosRun(schedule, log=log, before_checks=before_checks).run()


__all__ = ["ChaosRun", "Execution", "FaultOutcome", "run_schedule"]
