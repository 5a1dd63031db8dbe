"""A chaos schedule: one seed -> a deterministic plan of simulated hours, workload and faults.

Pure data and arithmetic (no AWS, no Salesforce): :func:`plan_schedule` draws everything from
``random.Random(seed)``, so a seed names the same schedule on every machine and every run.  The
runner (:mod:`sfsync_local.chaos.run`) plays it on the local stack.

Times are virtual seconds from the start of the run (the emulator's clock starts at :data:`EPOCH`).
The run has two phases: the **fault phase** (``profile.fault_minutes``: workload and faults) and the
**settle phase** (fault-free, no workload: ticks and sweeps only, until everything has healed or
``profile.max_settle_minutes`` passed).

Fault kinds (:data:`FAULT_KINDS`), each with how it is armed and when it fires:

* copy faults, armed at the start of a copy episode (the first copy at 0, or an operator re-sync),
  fire at the first matching step of any full-copy execution after that: ``kill-copy-step`` (the
  FullSyncFunction invocation of one step dies before, after or in the middle of its work),
  ``stop-execution``, ``time-out-execution``, ``ddb-throttle-copy`` (record-table reads and writes of the copy
  throttled for longer than the client's retries);
* ``kill-cycle`` / ``kill-write-back``: the next ObjectSyncFunction / WriteBackFunction (stream)
  invocation after the arming time dies before, after or in the middle of its work;
* ``5xx-storm`` (a share of every Salesforce request answers 500 or 503 for some minutes),
  ``config-error`` (``WriteBackOptions`` made invalid, or a wrong client secret, for some minutes,
  then repaired), ``clock-skew`` (the engine clock off Salesforce's by minutes, for some minutes):
  persistent, with a start and an end;
* ``request-limit-write-back`` / ``token-expiry-write-back``: at the arming time Salesforce answers
  the next write-back calls ``REQUEST_LIMIT_EXCEEDED`` / every access token expires, and a local edit
  follows at once;
* ``concurrent-ticks`` (two dispatcher ticks at once) and ``duplicate-delivery`` (one object-sync
  event delivered twice at once), on real threads.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field, replace
from typing import Any

EPOCH = dt.datetime(2026, 11, 24, 12, 0, 0, tzinfo=dt.UTC)
EPOCH_MS = int(EPOCH.timestamp() * 1000)

#: Steps of the full-copy workflow a ``kill-copy-step`` fault can hit (statemachine/full_sync.asl.json).
#: ``mark_failed`` and ``plan_failed`` run only after a failure: they are armed together with one.
COPY_STEPS = ("plan", "start_job", "poll_job", "load_page", "finish", "summarize", "mark_failed", "plan_failed")
#: Steps whose failure is caught by ``MarkFailed`` (a ``mark_failed`` kill is armed after one of them).
MARKED_STEPS = ("start_job", "poll_job", "load_page", "finish")
KILL_MODES = ("before", "after", "mid")

COPY_FAULTS = ("kill-copy-step", "stop-execution", "time-out-execution", "ddb-throttle-copy")
FAULT_KINDS = (
    *COPY_FAULTS,
    "kill-cycle",
    "kill-write-back",
    "5xx-storm",
    "request-limit-write-back",
    "token-expiry-write-back",
    "clock-skew",
    "concurrent-ticks",
    "duplicate-delivery",
    "config-error",
)
#: Faults with a duration (the others are one-shot).
PERSISTENT = frozenset({"5xx-storm", "clock-skew", "config-error"})


@dataclass(frozen=True)
class Profile:
    """How big a schedule is: CI runs many small ones, ``bench/chaos.py`` fewer long ones."""

    name: str
    fault_minutes: int  # workload and faults
    max_settle_minutes: int  # fault-free healing, at most
    tick_seconds: int  # the dispatcher's schedule (production: 60)
    pause_seconds: int  # PauseSeconds of the stack
    sweep_seconds: int = 300  # the write-back's Sweep schedule (template: rate(5 minutes))
    records: int = 120  # the seeded org's size
    sf_changes_per_hour: int = 24  # Salesforce-side creates, updates, deletes
    local_changes_per_hour: int = 24  # DynamoDB-side edits, creates, deletes of two-way items
    resync_chance: float = 0.5  # an operator re-sync (a second copy episode) during the fault phase
    extra_faults: tuple[int, int] = (3, 6)  # timeline faults drawn at random, besides the forced ones


CI = Profile(
    "ci",
    fault_minutes=60,
    max_settle_minutes=8 * 60,
    tick_seconds=600,
    pause_seconds=540,
    records=100,
    sf_changes_per_hour=15,
    local_changes_per_hour=15,
    extra_faults=(3, 5),
)
BENCH = Profile(
    "bench",
    fault_minutes=20 * 60,
    max_settle_minutes=8 * 60,
    tick_seconds=60,
    pause_seconds=300,
    sf_changes_per_hour=30,
    local_changes_per_hour=30,
    resync_chance=1.0,
    extra_faults=(30, 45),
)
PROFILES = {p.name: p for p in (CI, BENCH)}


@dataclass(frozen=True)
class FaultSpec:
    """One fault of a schedule: its kind, when it is armed (virtual seconds), how long it lasts
    (persistent kinds) and its parameters."""

    id: int
    kind: str
    at: int
    duration: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.at + self.duration

    @property
    def label(self) -> str:
        """The kind as counted in reports: ``kill-copy-step`` is counted per step."""
        if self.kind == "kill-copy-step":
            return f"kill-copy-step:{self.params['step']}"
        return self.kind

    def describe(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        span = f"{_clock(self.at)}-{_clock(self.end)}" if self.duration else _clock(self.at)
        return f"#{self.id} {self.kind} at {span}" + (f" ({extra})" if extra else "")


@dataclass(frozen=True)
class Schedule:
    """What :func:`plan_schedule` returns: the seed's faults and copy episodes, and its profile."""

    seed: int
    profile: Profile
    faults: tuple[FaultSpec, ...]
    #: virtual seconds of operator re-syncs (``{"resync": [...]}``) and the objects re-copied
    resyncs: tuple[tuple[int, tuple[str, ...]], ...]

    @property
    def fault_phase_end(self) -> int:
        return max([self.profile.fault_minutes * 60, *(f.end for f in self.faults)])

    def describe(self) -> str:
        lines = [f"seed {self.seed} ({self.profile.name}): {len(self.faults)} faults, fault phase {_clock(0)}-"]
        lines[0] += _clock(self.fault_phase_end)
        for at, objects in self.resyncs:
            lines.append(f"   re-sync of {', '.join(objects)} at {_clock(at)}")
        lines.extend(f"   {f.describe()}" for f in self.faults)
        return "\n".join(lines)


def _clock(seconds: int) -> str:
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}"


#: The objects a chaos run syncs: one one-way object and two two-way ones.
OBJECTS = ("Account", "Lead", "Contact")
TWO_WAY = ("Lead", "Contact")


def plan_schedule(seed: int, profile: Profile = CI) -> Schedule:
    """The schedule of ``seed`` (deterministic).

    Every schedule gets, besides its random draw, one forced fault chosen by the seed
    (``FAULT_KINDS[seed % len]``) and one forced copy-step kill (``COPY_STEPS[seed % len]``), so any
    run of ``len(FAULT_KINDS)`` consecutive seeds injects every kind and every copy step at least once.

    Placement rules keep every fault observable: persistent faults never overlap one another (a skew
    must be seen by a probe, a storm must meet traffic), and the one-shot timeline faults stay out of
    configuration outages (nothing runs far enough there to be killed, throttled or re-authenticated);
    ``request-limit-write-back`` and ``token-expiry-write-back`` also stay out of 5xx storms (the call
    they wait for must reach Salesforce's checks).  Copy faults and kills may meet storms and skews.
    """
    rng = random.Random(f"sfsync-chaos-{seed}")
    horizon = profile.fault_minutes * 60
    plan = _Planner(rng, horizon, profile)

    # copy episodes: the first copy, maybe an operator re-sync in the first two thirds of the phase
    episodes = [0]
    resyncs: list[tuple[int, tuple[str, ...]]] = []
    if rng.random() < profile.resync_chance:
        at = _minute(rng.uniform(0.25, 0.65) * horizon)
        objects = tuple(sorted(rng.sample(OBJECTS, rng.randint(1, 2))))
        resyncs.append((at, objects))
        episodes.append(at)

    plan.resync_times = [at for at, _ in resyncs]
    forced_step = COPY_STEPS[seed % len(COPY_STEPS)]
    plan.copy_step_kill(rng.choice(episodes), forced_step)
    forced = FAULT_KINDS[seed % len(FAULT_KINDS)]
    kinds = [forced] if forced != "kill-copy-step" else []
    kinds += [rng.choice(FAULT_KINDS) for _ in range(rng.randint(*profile.extra_faults))]
    # persistent faults first (they claim their windows), then the one-shot ones
    for kind in sorted(kinds, key=lambda k: k not in PERSISTENT):
        if kind == "kill-copy-step":
            plan.copy_step_kill(rng.choice(episodes), rng.choice(COPY_STEPS))
        elif kind in COPY_FAULTS:
            episode = rng.choice(episodes)
            params: dict[str, Any] = {}
            if kind in ("stop-execution", "time-out-execution"):
                params["step"] = rng.choice(("start_job", "load_page", "finish"))
            if kind == "ddb-throttle-copy":
                params["requests"] = rng.randint(11, 14)  # more than the client's 10 attempts
            plan.add(kind, episode, **params)
        elif kind in PERSISTENT:
            plan.persistent(kind)
        else:
            plan.one_shot(kind)
    faults = sorted(plan.faults, key=lambda f: (f.at, f.id))
    renumbered = tuple(replace(f, id=i) for i, f in enumerate(faults, start=1))
    return Schedule(seed, profile, renumbered, tuple(resyncs))


def _minute(seconds: float) -> int:
    return int(seconds // 60) * 60


#: One-shot faults that need Salesforce's checks to be reached by the call they wait for.
_CLEAN_PATH = frozenset({"request-limit-write-back", "token-expiry-write-back"})
#: After a persistent fault, one-shot faults keep away this long (its effects are still draining).
_AFTERMATH = 600


class _Planner:
    def __init__(self, rng: random.Random, horizon: int, profile: Profile) -> None:
        self.rng = rng
        self.horizon = horizon
        self.profile = profile
        self.faults: list[FaultSpec] = []
        self.windows: list[tuple[int, int, str]] = []  # persistent faults: (start, end, kind)
        self.resync_times: list[int] = []

    def add(self, kind: str, at: int, duration: int = 0, **params: Any) -> None:
        self.faults.append(FaultSpec(len(self.faults) + 1, kind, at, duration, dict(params)))

    def copy_step_kill(self, episode: int, step: str) -> None:
        """A kill of ``step``; ``mark_failed``/``plan_failed`` only run after a failure, so they come with one."""
        rng = self.rng
        if step == "mark_failed":
            self.add("kill-copy-step", episode, step=rng.choice(MARKED_STEPS), mode=rng.choice(("before", "after")))
        elif step == "plan_failed":
            self.add("kill-copy-step", episode, step="plan", mode=rng.choice(("before", "after")))
        mode = "mid" if step == "load_page" and rng.random() < 0.5 else rng.choice(("before", "after"))
        self.add("kill-copy-step", episode, step=step, mode=mode)

    def _start(self) -> int:
        # after the first copy has had a chance (10 min), before the end of the fault phase
        return _minute(self.rng.uniform(600, self.horizon - 600))

    def persistent(self, kind: str) -> None:
        rng = self.rng
        for _attempt in range(20):
            at = self._start()
            params: dict[str, Any]
            if kind == "5xx-storm":
                duration = 60 * rng.randint(10, 25)
                params = {"status": rng.choice((500, 503)), "probability": rng.choice((0.6, 0.8, 1.0))}
            elif kind == "config-error":
                duration = 60 * rng.randint(30, 60)
                params = {"flavor": rng.choice(("write-back-options", "wrong-secret"))}
            else:  # clock-skew: long enough for a probing tick whichever way the clock went
                duration = max(3 * self.profile.tick_seconds, 60 * rng.randint(30, 50))
                params = {"offset": rng.choice((-1, 1)) * 60 * rng.randint(2, 6)}
            if kind == "config-error" and any(at - 600 <= r <= at + duration + 600 for r in self.resync_times):
                continue  # the operator's re-sync must not be refused by the outage (its copy faults wait for it)
            if all(at + duration <= start or at >= end for start, end, _ in self.windows):
                self.windows.append((at, at + duration, kind))
                self.add(kind, at, duration, **params)
                return

    def one_shot(self, kind: str) -> None:
        rng = self.rng
        for _attempt in range(20):
            at = self._start()
            if kind == "concurrent-ticks":  # two deliveries of a regular tick
                tick = self.profile.tick_seconds
                at = max(tick, at // tick * tick)
            avoid = [(s, e) for s, e, k in self.windows if k == "config-error" or kind in _CLEAN_PATH]
            if any(s - 60 <= at <= e + _AFTERMATH for s, e in avoid):
                continue
            if kind in ("kill-cycle", "kill-write-back"):
                self.add(kind, at, mode=rng.choice(KILL_MODES))
            elif kind == "request-limit-write-back":
                self.add(kind, at, calls=rng.randint(1, 3))
            elif kind == "duplicate-delivery":
                self.add(kind, at, object=rng.choice(OBJECTS))
            else:  # token-expiry-write-back, concurrent-ticks
                self.add(kind, at)
            return


__all__ = [
    "BENCH",
    "CI",
    "COPY_FAULTS",
    "COPY_STEPS",
    "EPOCH",
    "EPOCH_MS",
    "FAULT_KINDS",
    "OBJECTS",
    "PERSISTENT",
    "PROFILES",
    "TWO_WAY",
    "FaultSpec",
    "Profile",
    "Schedule",
    "plan_schedule",
]
