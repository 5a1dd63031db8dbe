"""The first full copy in tests: a recording starter for unit tests, and helpers that run the real
workflow on the local stack (schedule -> dispatcher -> StartExecution -> moto's Step Functions running
statemachine/full_sync.asl.json -> FullSyncFunction).

Stable helper API (other test modules rely on it):

* :func:`first_copy(stack) <first_copy>` - fire the schedule; wait for every full-copy execution the
  dispatcher started (or found started); assert they SUCCEEDED; return a :class:`CopyRun`;
* :func:`copy_executions(result) <copy_executions>` - the execution entries of a dispatcher result;
* :func:`wait_for_copies(stack, result) <wait_for_copies>` - wait for those executions;
* :func:`synced_after_copy(stack, emulator) <synced_after_copy>` - first copy, then move the virtual
  clock past the pause and fire again: the first incremental cycles run (returns both results);
* :func:`held_waits(emulator) <held_waits>` - Wait states move the emulator's virtual clock, and can be
  held (a copy parked in its Wait state while the test ticks);
* :class:`RecordingCopyStarter` - a :class:`sfsync.dispatch.copies.CopyStarter` that records its calls.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sfsync.core.exceptions import DispatchFailed
from sfsync.store.stepfunctions import ExecutionStart, execution_arn

FAKE_STATE_MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:test-full-sync"


class RecordingCopyStarter:
    """Records ``(name, input)`` per start; names in ``existing`` answer "already started";
    ``fail`` makes every start raise :class:`DispatchFailed`.  An execution it started is ``RUNNING``
    until the test sets another status in ``statuses`` (by execution name); others do not exist."""

    state_machine_arn = FAKE_STATE_MACHINE

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.existing: set[str] = set()
        self.fail = False
        self.statuses: dict[str, str] = {}
        self.described: list[str] = []

    def execution_arn(self, name: str) -> str:
        return execution_arn(FAKE_STATE_MACHINE, name)

    def execution_status(self, arn: str) -> str | None:
        self.described.append(arn)
        name = arn.rsplit(":", 1)[-1]
        if name in self.statuses:
            return self.statuses[name]
        return "RUNNING" if name in self.existing else None

    def start_full_copy(self, name: str, execution_input: Mapping[str, Any]) -> ExecutionStart:
        if self.fail:
            raise DispatchFailed(f"cannot start the full-copy execution {name}: scripted failure")
        self.calls.append((name, dict(execution_input)))
        started = name not in self.existing
        self.existing.add(name)
        return ExecutionStart(name, execution_arn(FAKE_STATE_MACHINE, name), started=started)


@dataclass
class CopyRun:
    """One schedule tick that started full copies, and how their executions ended."""

    dispatch: dict[str, Any]
    executions: list[dict[str, Any]] = field(default_factory=list)  # describe_execution, one per execution

    @property
    def objects(self) -> list[str]:
        return sorted(obj for entry in copy_executions(self.dispatch) for obj in entry["objects"])

    def outputs(self) -> list[dict[str, Any]]:
        return [json.loads(description["output"]) for description in self.executions]


def copy_executions(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The executions a dispatcher result started or found already started."""
    copies = result.get("copies") or {}
    return [*copies.get("started", []), *copies.get("already_started", [])]


def wait_for_copies(stack: Any, result: Mapping[str, Any], *, timeout_seconds: float = 60.0) -> list[dict[str, Any]]:
    """Wait until each execution of ``result`` is no longer RUNNING; their ``describe_execution``."""
    return [
        stack.wait_for_execution(entry["execution_arn"], timeout_seconds=timeout_seconds)
        for entry in copy_executions(result)
    ]


def first_copy(stack: Any, *, timeout_seconds: float = 60.0, expect: bool = True) -> CopyRun:
    """Fire the schedule; wait for the full copies it started and check they SUCCEEDED.

    With ``expect`` (default) the tick must have started or found at least one execution.
    """
    result = stack.fire_schedule()
    run = CopyRun(result, wait_for_copies(stack, result, timeout_seconds=timeout_seconds))
    if expect:
        assert run.executions, f"the dispatcher started no full copy: {json.dumps(result)[:2000]}"
    for description in run.executions:
        assert description["status"] == "SUCCEEDED", description
    stack.drain()  # anything the workflow's records queued (stream triggers run at once; async invokes)
    return run


def synced_after_copy(stack: Any, emulator: Any, *, pause_seconds: float) -> tuple[CopyRun, dict[str, Any]]:
    """The first copy, then a tick after the pause: the copied objects' first incremental cycles."""
    run = first_copy(stack)
    emulator.clock.advance(pause_seconds + 1)
    return run, stack.fire_schedule()


def wait_until_quiet(stack: Any, quiet_seconds: float = 0.3) -> None:
    """Until a stopped execution's worker has finished its last Task (no new invocation for a while)."""
    import time

    seen, since = len(stack.invocations), time.monotonic()
    deadline = since + 10
    while time.monotonic() - since < quiet_seconds:
        assert time.monotonic() < deadline, "the stopped execution kept running"
        time.sleep(0.05)
        if len(stack.invocations) != seen:
            seen, since = len(stack.invocations), time.monotonic()


__all__ = [
    "FAKE_STATE_MACHINE",
    "CopyRun",
    "HeldWaits",
    "RecordingCopyStarter",
    "copy_executions",
    "first_copy",
    "held_waits",
    "synced_after_copy",
    "wait_for_copies",
    "wait_until_quiet",
]


class HeldWaits(list[float]):
    """Attached to the local stack's fast waits (``sfsync_local.stack._FastWaits``): every Wait state
    and Retry back-off of any execution moves the emulator's virtual clock by its seconds (so a Bulk
    job with a processing time completes while the workflow polls it) - and, while :meth:`hold` is in
    force, blocks first: a copy is parked in its Wait state until :meth:`release`."""

    def __init__(self, emulator: Any, *, max_hold_seconds: float = 60.0) -> None:
        super().__init__()
        self._emulator = emulator
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._max_hold = max_hold_seconds
        #: set when a wait was reached while held (the copy's Bulk job exists by then)
        self.entered = threading.Event()

    def hold(self) -> None:
        self.entered.clear()
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def append(self, seconds: float) -> None:
        if not self._open.is_set():
            self.entered.set()
            if not self._open.wait(self._max_hold):
                raise RuntimeError(f"a held Wait was not released within {self._max_hold} s")
        with self._lock:
            super().append(seconds)
            self._emulator.clock.advance(seconds)


@contextmanager
def held_waits(emulator: Any, *, job_seconds: float = 1.0) -> Iterator[HeldWaits]:
    """:class:`HeldWaits` attached for the block; Bulk jobs take ``job_seconds`` of virtual time meanwhile
    (so every copy polls, and waits, at least once)."""
    from sfsync_emulator.bulk import JobTiming
    from sfsync_local.stack import _FastWaits

    waits = HeldWaits(emulator)
    timing = emulator.bulk.timing
    emulator.bulk.timing = JobTiming(in_progress_after_s=0, complete_after_s=job_seconds)
    _FastWaits.attach(waits)
    try:
        yield waits
    finally:
        waits.release()
        _FastWaits.detach(waits)
        emulator.bulk.timing = timing
