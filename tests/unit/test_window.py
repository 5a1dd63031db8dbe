"""Window maths (sfsync.core.window): planning ``[lo, hi)``, positions, the watermark, the QUERY_TIMEOUT split."""

from __future__ import annotations

import datetime as dt

import pytest
from sfsync.core.clock import EPOCH, UTC
from sfsync.core.window import (
    MIN_SPLIT,
    Checkpoint,
    Position,
    WindowPlan,
    advance_watermark,
    plan_window,
    position_after,
    split_point,
    truncate_ms,
)

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


# -- planning --------------------------------------------------------------------------------------


def test_given_a_watermark_when_planning_then_window_is_watermark_minus_overlap_to_now_minus_lag() -> None:
    plan = plan_window(watermark=at(0), checkpoint=None, salesforce_now=at(3600), overlap_seconds=600, lag_seconds=60)
    assert (plan.lo, plan.hi) == (at(-600), at(3540))
    assert plan.resume_after is None
    assert not plan.empty


def test_given_no_watermark_when_planning_then_window_starts_at_the_epoch() -> None:
    plan = plan_window(watermark=None, checkpoint=None, salesforce_now=at(0), overlap_seconds=600, lag_seconds=60)
    assert plan.lo == EPOCH
    assert plan.hi == at(-60)


def test_given_an_overlap_reaching_before_the_epoch_when_planning_then_lo_is_the_epoch() -> None:
    plan = plan_window(
        watermark=EPOCH + dt.timedelta(seconds=5),
        checkpoint=None,
        salesforce_now=at(0),
        overlap_seconds=600,
        lag_seconds=0,
    )
    assert plan.lo == EPOCH


def test_given_now_within_the_lag_of_the_watermark_when_planning_then_window_is_empty() -> None:
    plan = plan_window(watermark=at(0), checkpoint=None, salesforce_now=at(30), overlap_seconds=0, lag_seconds=60)
    assert plan.empty


def test_given_salesforce_now_behind_the_watermark_when_planning_then_the_window_is_empty_at_lo() -> None:
    plan = plan_window(watermark=at(0), checkpoint=None, salesforce_now=at(-300), overlap_seconds=600, lag_seconds=0)
    assert (plan.lo, plan.hi) == (at(-600), at(-600))
    assert plan.empty


def test_given_sub_millisecond_now_when_planning_then_hi_is_truncated_to_ms() -> None:
    now = at(100) + dt.timedelta(microseconds=123_456)
    plan = plan_window(watermark=at(0), checkpoint=None, salesforce_now=now, overlap_seconds=0, lag_seconds=0)
    assert plan.hi.microsecond == 123_000


def test_given_a_naive_now_when_planning_then_it_is_refused() -> None:
    with pytest.raises(ValueError):
        plan_window(
            watermark=None, checkpoint=None, salesforce_now=dt.datetime(2026, 1, 1), overlap_seconds=0, lag_seconds=0
        )


def test_given_a_checkpoint_when_planning_then_its_window_resumes_after_the_last_persisted_row() -> None:
    cp = Checkpoint("c1", at(-600), at(500), Position(at(100), "001B"))
    plan = plan_window(watermark=at(0), checkpoint=cp, salesforce_now=at(9999), overlap_seconds=600, lag_seconds=60)
    assert (plan.lo, plan.hi, plan.resume_after, plan.resumed) == (at(-600), at(500), Position(at(100), "001B"), True)


def test_a_window_is_half_open() -> None:
    assert WindowPlan(at(0), at(0)).empty
    assert not WindowPlan(at(0), at(0.001)).empty


# -- watermark and position ----------------------------------------------------------------------------


def test_watermark_never_moves_backwards() -> None:
    assert advance_watermark(None, at(5)) == at(5)
    assert advance_watermark(at(10), at(5)) == at(10)
    assert advance_watermark(at(10), at(20)) == at(20)


def test_given_equal_stamps_when_advancing_position_then_id_orders_and_it_never_goes_back() -> None:
    pos = position_after(None, at(1), "001B")
    pos = position_after(pos, at(1), "001C")
    assert pos == Position(at(1), "001C")
    assert position_after(pos, at(1), "001A") == pos
    assert position_after(pos, at(0), "001Z") == pos


# -- the QUERY_TIMEOUT split -----------------------------------------------------------------------------


def test_given_a_window_when_splitting_then_the_cut_is_its_middle() -> None:
    assert split_point(at(0), at(100)) == at(50)


def test_given_an_odd_span_when_splitting_then_the_cut_is_truncated_to_ms() -> None:
    mid = split_point(at(0), at(0) + dt.timedelta(milliseconds=1001, microseconds=1))
    assert mid == at(0) + dt.timedelta(milliseconds=500)


def test_given_a_span_of_min_split_or_less_when_splitting_then_it_is_not_split() -> None:
    assert split_point(at(0), at(0) + MIN_SPLIT) is None
    assert split_point(at(0), at(0.5)) is None
    assert split_point(at(0), at(0) + MIN_SPLIT + dt.timedelta(milliseconds=2)) is not None


def test_repeated_splits_stay_inside_the_window_and_end_above_min_split() -> None:
    lo, end = at(0), at(3600)
    spans = []
    while (mid := split_point(lo, end)) is not None:
        assert lo < mid < end
        spans.append(mid - lo)
        end = mid
    assert spans and all(span > dt.timedelta(0) for span in spans)
    assert end - lo <= MIN_SPLIT


def test_truncating_keeps_milliseconds_only() -> None:
    assert truncate_ms(at(0) + dt.timedelta(microseconds=1_999)).microsecond == 1_000
