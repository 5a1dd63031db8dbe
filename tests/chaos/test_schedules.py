"""The chaos tier (issue #11, "Unattended, every day"): the local stack for simulated hours under seeded
schedules of faults (``sfsync_local.chaos``).  Each schedule passes only when, after its faults and a
fault-free settle phase, ``sfsync verify`` finds every object clean, every local change is in Salesforce
exactly once, nothing is stuck, and every fault that fired left a signal an operator sees.

A failure prints the seed, the schedule, the evidence table and the command that replays it
(``make chaos SEED=<n>``).  ``SFSYNC_CHAOS_SEEDS=7`` (or ``1-200``, or ``3,9,12``) runs other seeds.
"""

from __future__ import annotations

import os

import pytest
from sfsync_local.chaos import plan_schedule, run_schedule

pytestmark = pytest.mark.chaos

#: The CI seeds: four runs of every forced fault kind (the planner forces ``FAULT_KINDS[seed % 13]``).
CI_SEEDS = tuple(range(1, 53))


def parse_seeds(text: str) -> list[int]:
    """``7``, ``1-200`` or ``3,9,12-14``."""
    seeds: list[int] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        seeds.extend(range(int(low), int(high or low) + 1))
    return seeds


def chosen_seeds() -> list[int]:
    chosen = os.environ.get("SFSYNC_CHAOS_SEEDS", "").strip()
    return parse_seeds(chosen) if chosen else list(CI_SEEDS)


@pytest.mark.parametrize("seed", chosen_seeds())
def test_given_a_seeded_fault_schedule_then_nothing_is_lost_duplicated_or_stuck_and_every_fault_showed(
    seed: int,
) -> None:
    schedule = plan_schedule(seed)
    report = run_schedule(schedule)
    assert report.ok, report.explain(schedule)
    assert report.faults and all(row["fired"] for row in report.faults)
    assert report.counts["local_ops"] and report.counts["salesforce_ops"], report.counts
