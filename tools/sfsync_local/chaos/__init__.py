"""Chaos runs: the local stack for many simulated hours under a seeded schedule of faults.

``plan_schedule(seed)`` -> a :class:`Schedule` (deterministic); ``run_schedule(schedule)`` plays it
on a fresh emulator and local stack and returns a :class:`ScheduleReport` (``report.ok``, what was
lost, duplicated or stuck, and the evidence of every fault).  See ``docs/decisions.md`` (chaos runs),
``tests/chaos`` (the CI tier) and ``bench/chaos.py`` (the larger run).
"""

from .checks import ScheduleReport
from .plan import BENCH, CI, COPY_STEPS, FAULT_KINDS, PROFILES, FaultSpec, Profile, Schedule, plan_schedule
from .run import run_schedule

__all__ = [
    "BENCH",
    "CI",
    "COPY_STEPS",
    "FAULT_KINDS",
    "PROFILES",
    "FaultSpec",
    "Profile",
    "Schedule",
    "ScheduleReport",
    "plan_schedule",
    "run_schedule",
]
