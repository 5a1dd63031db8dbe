"""``sfsync demo``: the emulated org, the local stack, a live user, and the sync watched cycle by cycle.

The demo starts the Salesforce emulator with a seeded org and the local AWS stack from
``template.yaml`` (the emulator's credentials as the Salesforce secret), then loops:

* a scheduler fires the EventBridge payload at the dispatcher every few seconds (moto never fires
  schedules); the first tick starts the full copy of every object (the real full-sync workflow in
  moto's Step Functions; its progress is printed while it runs), later ticks start the objects
  whose pause has passed;
* a simulated Salesforce user (a thread) creates, updates and deletes Accounts, Contacts, Leads
  and Opportunities in the emulator meanwhile;
* after each cycle: a table per object (created / updated / deleted / failed / skipped, API
  calls, watermark lag) from the cycle summary rows, and a check that the Account table equals
  the emulator's Accounts (ids and ``SystemModstamp``).

With ``--cycles N`` the user stops before the last cycle, and the command exits 0 only if the
Account table converged.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .runner import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    PRODUCTION_PAUSE_SECONDS,
    CliError,
    LocalEnvironment,
    StopFlag,
    function_output,
    iso_ms,
    local_parameters,
    open_function_log,
    save_state_snapshot,
    state_file_path,
    tick_seconds,
)
from .status import format_cycle

DEFAULT_CYCLES = 6
#: The engine keeps this far from Salesforce's "now" (SFSYNC_SAFETY_LAG_SECONDS); the demo
#: shortens it so that a change shows up in DynamoDB within seconds.
PRODUCTION_SAFETY_LAG_SECONDS = 60
DEMO_SAFETY_LAG_SECONDS = 2
#: Salesforce stamps whole seconds and the engine reads Salesforce's clock from the ``Date``
#: header (whole seconds): a change is inside the window once lag + this much has passed.
WINDOW_MARGIN_SECONDS = 1.5


# --------------------------------------------------------------------------- the emulator side


def _iso_from_ms(ms: int) -> str:
    return iso_ms(dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC))


def emulator_stamps(org: Any, obj: str) -> tuple[dict[str, str], dict[str, str]]:
    """(live, deleted): Id → ``SystemModstamp`` (engine format) of the rows the integration user sees.

    Reads the org's storage directly (one table per object, ``SystemModstamp`` in epoch ms,
    ``_hidden`` for sharing; docs/emulator-design.md), so the check costs no API calls.
    """
    table = org.meta(obj).table
    with org.lock:
        rows = org.conn.execute(f'SELECT "Id", "SystemModstamp", "IsDeleted" FROM {table} WHERE _hidden = 0').fetchall()
    live: dict[str, str] = {}
    deleted: dict[str, str] = {}
    for record_id, stamp, is_deleted in rows:
        (deleted if is_deleted else live)[str(record_id)] = _iso_from_ms(int(stamp))
    return live, deleted


@dataclass
class UserActivity:
    """What the simulated user did since the last report."""

    done: Counter[tuple[str, str]] = field(default_factory=Counter)
    rejected: int = 0

    def line(self) -> str:
        if not self.done and not self.rejected:
            return "simulated user: no changes"
        by_object: dict[str, list[str]] = {}
        for (obj, action), n in sorted(self.done.items()):
            by_object.setdefault(obj, []).append(f"{n} {action}")
        parts = [f"{obj} {', '.join(actions)}" for obj, actions in by_object.items()]
        if self.rejected:
            parts.append(f"{self.rejected} rejected by Salesforce")
        return "simulated user: " + "; ".join(parts)


class SalesforceUser:
    """A thread making live changes in the emulated org, as a person in Salesforce would."""

    def __init__(self, org: Any, *, seed: int, changes_per_cycle: int, cycle_seconds: float) -> None:
        self.org = org
        self.rng = random.Random(f"sfsync-demo-user-{seed}")
        self.changes_per_cycle = changes_per_cycle
        # spread a cycle's changes over the time between two cycles
        self.interval = max(0.05, cycle_seconds / changes_per_cycle) if changes_per_cycle else 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._budget = changes_per_cycle
        self._activity = UserActivity()
        self._thread: threading.Thread | None = None
        self._serial = 0
        self.last_change = time.monotonic()  # of the last change (or of the start)

    def start(self) -> None:
        if self.changes_per_cycle <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="sfsync-demo-user", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def next_cycle(self) -> UserActivity:
        """What was done since the last call; the user may make its next batch of changes."""
        with self._lock:
            activity, self._activity = self._activity, UserActivity()
            self._budget = self.changes_per_cycle
        return activity

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                if self._budget <= 0:
                    continue
                self._budget -= 1
            self.change_once()

    # -- one change ----------------------------------------------------------------------

    def change_once(self) -> None:
        from sfsync_emulator.errors import ApiError, DmlError

        actions: list[tuple[float, Callable[[], tuple[str, str] | None]]] = [
            (0.25, self._create_account),
            (0.30, self._update_account),
            (0.08, self._delete_account),
            (0.12, self._update_contact),
            (0.07, self._create_contact),
            (0.10, self._update_lead),
            (0.08, self._update_opportunity),
        ]
        weights = [weight for weight, _ in actions]
        action = self.rng.choices([act for _, act in actions], weights=weights)[0]
        try:
            done = action()
        except (DmlError, ApiError):
            with self._lock:
                self._activity.rejected += 1
            return
        if done is not None:
            with self._lock:
                self._activity.done[done] += 1
            self.last_change = time.monotonic()

    def _pick(self, obj: str) -> str | None:
        table = self.org.meta(obj).table
        with self.org.lock:
            row = self.org.conn.execute(
                f'SELECT "Id" FROM {table} WHERE "IsDeleted" = 0 AND _hidden = 0 ORDER BY random() LIMIT 1'
            ).fetchone()
        return None if row is None else str(row[0])

    def _serial_no(self) -> int:
        self._serial += 1
        return self._serial

    def _create_account(self) -> tuple[str, str]:
        n = self._serial_no()
        self.org.create(
            "Account",
            {"Name": f"Demo Account {n:04d}", "Phone": f"+1 555 01{n % 100:02d}", "NumberOfEmployees": 10 + n},
            as_api=False,
        )
        return "Account", "created"

    def _update_account(self) -> tuple[str, str] | None:
        record_id = self._pick("Account")
        if record_id is None:
            return None
        values: dict[str, Any] = {"Description": f"edited in the demo at {iso_ms(dt.datetime.now(dt.UTC))}"}
        if self.rng.random() < 0.5:
            values["NumberOfEmployees"] = self.rng.randint(1, 50_000)
        self.org.update("Account", record_id, values, as_api=False)
        return "Account", "updated"

    def _delete_account(self) -> tuple[str, str] | None:
        record_id = self._pick("Account")
        if record_id is None:
            return None
        self.org.delete("Account", record_id, as_api=False)
        return "Account", "deleted"

    def _update_contact(self) -> tuple[str, str] | None:
        record_id = self._pick("Contact")
        if record_id is None:
            return None
        self.org.update("Contact", record_id, {"Title": self.rng.choice(_TITLES)}, as_api=False)
        return "Contact", "updated"

    def _create_contact(self) -> tuple[str, str]:
        n = self._serial_no()
        values: dict[str, Any] = {"FirstName": "Demo", "LastName": f"Contact {n:04d}"}
        account_id = self._pick("Account")
        if account_id is not None:
            values["AccountId"] = account_id
        self.org.create("Contact", values, as_api=False)
        return "Contact", "created"

    def _update_lead(self) -> tuple[str, str] | None:
        record_id = self._pick("Lead")
        if record_id is None:
            return None
        self.org.update("Lead", record_id, {"Description": "follow-up call scheduled"}, as_api=False)
        return "Lead", "updated"

    def _update_opportunity(self) -> tuple[str, str] | None:
        record_id = self._pick("Opportunity")
        if record_id is None:
            return None
        self.org.update("Opportunity", record_id, {"NextStep": self.rng.choice(_NEXT_STEPS)}, as_api=False)
        return "Opportunity", "updated"


_TITLES = ("VP Sales", "CTO", "Buyer", "Head of Operations", "Procurement Lead", "Engineer")
_NEXT_STEPS = ("send proposal", "demo call", "negotiate terms", "legal review", "follow up")


# --------------------------------------------------------------------------- the Account check


@dataclass(frozen=True)
class AccountCheck:
    """The Account table against the emulator's Accounts (live ids and SystemModstamp)."""

    salesforce_live: int
    dynamodb_live: int
    dynamodb_tombstones: int
    missing: tuple[str, ...]  # live in Salesforce, absent or deleted in DynamoDB
    stale: tuple[str, ...]  # present in both, older SystemModstamp in DynamoDB
    extra: tuple[str, ...]  # live in DynamoDB, deleted (or gone) in Salesforce
    in_flight: int  # of the differences: changes newer than the last Account window (expected)

    @property
    def converged(self) -> bool:
        return not (self.missing or self.stale or self.extra)

    @property
    def differences(self) -> int:
        return len(self.missing) + len(self.stale) + len(self.extra)

    def line(self) -> str:
        head = (
            f"Account check: Salesforce {self.salesforce_live} live, DynamoDB {self.dynamodb_live} live"
            f" + {self.dynamodb_tombstones} tombstones"
        )
        if self.converged:
            return head + " -> in sync (same ids, same SystemModstamp)"
        detail = f"{len(self.missing)} missing, {len(self.stale)} stale, {len(self.extra)} not yet deleted"
        divergent = self.differences - self.in_flight
        return (
            f"{head} -> {self.differences} behind ({detail}); {self.in_flight} newer than the last sync window"
            f" (expected), {divergent} older"
        )


def check_accounts(env: LocalEnvironment, *, window_hi: str | None) -> AccountCheck:
    """Compare the Account table with the emulator's Accounts."""
    if env.emulator is None:
        raise RuntimeError("the Account check needs the emulator")
    live, deleted = emulator_stamps(env.emulator.org, "Account")
    dynamo_live, tombstones = account_table_stamps(env)
    missing = tuple(sorted(i for i in live if i not in dynamo_live))
    stale = tuple(sorted(i for i in live if i in dynamo_live and dynamo_live[i] < live[i]))
    extra = tuple(sorted(i for i in dynamo_live if i not in live))

    def newer(record_id: str) -> bool:
        stamp = live.get(record_id) or deleted.get(record_id)
        return window_hi is not None and stamp is not None and stamp >= window_hi

    in_flight = sum(1 for i in (*missing, *stale, *extra) if newer(i))
    return AccountCheck(len(live), len(dynamo_live), tombstones, missing, stale, extra, in_flight)


def account_table_stamps(env: LocalEnvironment) -> tuple[dict[str, str], int]:
    """(live Id → SystemModstamp, number of tombstones) of the Account table."""
    client = env.stack.boto3_client("dynamodb")
    table = env.stack.table_name("AccountTable")
    live: dict[str, str] = {}
    tombstones = 0
    paginator = client.get_paginator("scan")
    pages = paginator.paginate(
        TableName=table,
        ProjectionExpression="#id, SystemModstamp, IsDeleted",
        ExpressionAttributeNames={"#id": "Id"},
    )
    for page in pages:
        for item in page["Items"]:
            if item.get("IsDeleted", {}).get("BOOL"):
                tombstones += 1
            else:
                live[item["Id"]["S"]] = item.get("SystemModstamp", {}).get("S", "")
    return live, tombstones


def _last_window_hi(outcome: Any, current: str | None) -> str | None:
    """Where the Account table's knowledge ends: the last cycle's window end, or a full copy's watermark."""
    for summary in outcome.summaries:
        if summary.object_name == "Account" and summary.window_hi is not None:
            return iso_ms(summary.window_hi)
    for copy in outcome.copies:
        if copy.object_name == "Account" and copy.watermark:
            return str(copy.watermark)
    return current


# --------------------------------------------------------------------------- the command


def run_demo(args: argparse.Namespace, out: TextIO) -> int:
    from .serving import prepare

    if args.objects is not None and "Account" not in args.objects:
        raise CliError("the demo checks the Account table against the org: --objects must include Account")
    if args.data_dir is not None:
        raise CliError(
            "--data-dir is not for the demo: its org is generated anew each run, so a saved copy would not "
            "match it. To keep a copy between runs, serve an org with `sfsync-emulator serve` and sync it with "
            "`sfsync run --credentials FILE --data-dir DIR`"
        )
    parameters = local_parameters(pause_seconds=args.pause, objects=args.objects)
    parameters["SafetyLagSeconds"] = str(args.safety_lag)
    cdc = not getattr(args, "no_cdc", False)
    if cdc:  # while change events flow the cycles back off to twice the pause: still visible in the demo
        parameters["CdcPauseSeconds"] = str(max(1, round(2 * args.pause)))
    state_file = state_file_path(args.state_file)
    cycles: int | None = None if args.forever else (args.cycles or DEFAULT_CYCLES)
    lag = args.safety_lag
    tick = max(0.1, args.tick) if args.tick is not None else tick_seconds(args.pause)
    serving = prepare(args, source="sfsync demo")
    try:
        print(
            f"sfsync demo: {args.records:,} records (seed {args.seed}); pause {args.pause:g} s between cycles of "
            f"an object (production default {PRODUCTION_PAUSE_SECONDS} s); safety lag {lag} s (production "
            f"default {PRODUCTION_SAFETY_LAG_SECONDS} s); scheduler tick every {tick:g} s; "
            + ("until Ctrl-C" if cycles is None else f"{cycles} cycle(s)")
            + (
                "; change events on (Event Relay -> EventBridge -> SQS -> ChangeEventFunction), the cycles are "
                "the safety net"
                if cdc
                else "; polling only (--no-cdc)"
            ),
            file=out,
            flush=True,
        )
        log_file, log_path = open_function_log("demo")
        stop = StopFlag()
        # the whole demo inside function_output: served requests and the stream poller run functions too
        with log_file, function_output(log_file):
            env = LocalEnvironment.start(
                out,
                template=args.template,
                parameters=parameters,
                records=args.records,
                seed=args.seed,
                function_log=log_file,
                event_relay=cdc,
            )
            with env, stop.on_sigint():
                print(f"function logs -> {log_path}; state for `sfsync status --local` -> {state_file}", file=out)
                if env.emulator is None:  # pragma: no cover - start() always starts it here
                    raise RuntimeError("the demo needs the emulator")
                user = SalesforceUser(
                    env.emulator.org,
                    seed=args.seed,
                    changes_per_cycle=args.changes_per_cycle,
                    cycle_seconds=max(args.pause, tick),
                )
                try:
                    serving.start(env, out, log=log_file)
                    if env.relay is not None:
                        env.relay.on_delivered = lambda batch: print(batch.line(), file=out, flush=True)
                        env.relay.start()
                    return _loop(
                        env, user, stop, out, cycles=cycles, tick=tick, lag=lag, pause=args.pause, state_file=state_file
                    )
                finally:
                    user.stop()
                    serving.stop(env, out)
    finally:
        serving.stop(None, out)


def _loop(
    env: LocalEnvironment,
    user: SalesforceUser,
    stop: StopFlag,
    out: TextIO,
    *,
    cycles: int | None,
    tick: float,
    lag: int,
    pause: float,
    state_file: Path,
) -> int:
    user.start()
    done = 0
    # after the user stops, the run ends only with a cycle of Account that started after its last
    # change settled (Account may still be inside its pause); bounded by one pause plus a minute
    final_deadline: float | None = None
    window_hi: str | None = None
    check: AccountCheck | None = None
    while not stop.is_set:
        final = cycles is not None and done == cycles - 1
        if final and user.running:
            user.stop()
            settle = lag + WINDOW_MARGIN_SECONDS
            print(
                f"last cycle: the simulated user stops; waiting {settle:g} s so that its last change is older "
                "than the safety lag",
                file=out,
                flush=True,
            )
            if stop.sleep(user.last_change + settle - time.monotonic()):
                break
            final_deadline = time.monotonic() + pause + 60
        outcome = env.run_cycle(on_progress=lambda line: print(line, file=out, flush=True))
        if outcome.did_work:
            done += 1
            save_state_snapshot(env, state_file, source="sfsync demo")
            print("", file=out)
            print(format_cycle(outcome, number=done), file=out)
            print(user.next_cycle().line(), file=out)
            window_hi = _last_window_hi(outcome, window_hi)
            check = check_accounts(env, window_hi=window_hi)
            print(check.line(), file=out, flush=True)
        if cycles is not None and done >= cycles:
            account_synced = "Account" in outcome.started_objects or any(
                copy.object_name == "Account" for copy in outcome.copies
            )
            if final_deadline is None or account_synced or time.monotonic() > final_deadline:
                break
            if outcome.did_work:
                print("(Account is still inside its pause: one more tick before the final check)", file=out)
        stop.sleep(tick)
    if stop.is_set:
        print(f"\nstopped (Ctrl-C) after {done} cycle(s)", file=out)
        return EXIT_OK if cycles is None else EXIT_INTERRUPTED
    if check is not None and check.converged:
        print(f"\nconverged after {done} cycle(s): the Account table equals the emulator's Accounts", file=out)
        return EXIT_OK
    print(f"\nNOT converged after {done} cycle(s)", file=out)
    if check is not None:
        for label, ids in (("missing", check.missing), ("stale", check.stale), ("not deleted", check.extra)):
            if ids:
                print(f"  {label}: {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}", file=out)
    return EXIT_FAILED


__all__ = ["AccountCheck", "SalesforceUser", "check_accounts", "emulator_stamps", "run_demo"]
