"""The chaos schedules themselves: deterministic per seed, covering every fault kind and copy step over
the CI seeds, and placed so that every fault can be seen (``sfsync_local.chaos.plan``).  Pure planning,
no stack."""

from __future__ import annotations

import itertools

import pytest
from sfsync_local.chaos import BENCH, CI, COPY_STEPS, FAULT_KINDS, plan_schedule
from sfsync_local.chaos.plan import PERSISTENT

from tests.chaos.test_schedules import CI_SEEDS, parse_seeds

pytestmark = pytest.mark.chaos


def test_given_a_seed_then_its_schedule_is_always_the_same_and_other_seeds_differ() -> None:
    assert plan_schedule(17) == plan_schedule(17)
    assert plan_schedule(17, BENCH) == plan_schedule(17, BENCH)
    assert len({plan_schedule(seed).describe() for seed in range(1, 30)}) == 29


def test_given_the_ci_seeds_then_every_fault_kind_and_every_copy_step_is_planned() -> None:
    labels = [fault.label for seed in CI_SEEDS for fault in plan_schedule(seed).faults]
    for kind in FAULT_KINDS:
        if kind != "kill-copy-step":
            assert labels.count(kind) >= 4, (kind, labels.count(kind))
    for step in COPY_STEPS:
        assert labels.count(f"kill-copy-step:{step}") >= 4, (step, labels.count(f"kill-copy-step:{step}"))
    assert len(CI_SEEDS) >= 50


def test_given_any_schedule_then_persistent_faults_never_overlap_and_clean_path_faults_avoid_them() -> None:
    for seed in range(1, 200):
        schedule = plan_schedule(seed)
        windows = sorted((f.at, f.end, f.kind) for f in schedule.faults if f.kind in PERSISTENT)
        for (_, end, _), (start, _, _) in itertools.pairwise(windows):
            assert end <= start, schedule.describe()
        for fault in schedule.faults:
            if fault.kind in ("request-limit-write-back", "token-expiry-write-back"):
                assert not any(start - 60 <= fault.at <= end + 600 for start, end, _ in windows), schedule.describe()
            if fault.kind == "concurrent-ticks":
                assert fault.at % CI.tick_seconds == 0, schedule.describe()
        assert schedule.fault_phase_end >= CI.fault_minutes * 60


def test_given_seed_lists_then_they_are_parsed() -> None:
    assert parse_seeds("7") == [7]
    assert parse_seeds("1-3,9, 12-13") == [1, 2, 3, 9, 12, 13]
