"""Change probe: window arithmetic and composite batching (pure logic)."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sfsync.dispatch.probe import (
    MAX_QUERY_SUBREQUESTS,
    MAX_SUBREQUESTS,
    calls_needed,
    ceil_minute,
    floor_minute,
    plan_batches,
    probe_window,
    window_too_old,
)

pytestmark = pytest.mark.unit

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 25, 13, 7, 42, 250000, tzinfo=UTC)
MIN = dt.timedelta(minutes=1)


def names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


# -- window arithmetic ---------------------------------------------------------------------------


def test_given_seconds_when_rounding_then_floor_and_ceil_land_on_minutes() -> None:
    assert floor_minute(NOW) == dt.datetime(2026, 11, 25, 13, 7, tzinfo=UTC)
    assert ceil_minute(NOW) == dt.datetime(2026, 11, 25, 13, 8, tzinfo=UTC)
    on_the_minute = dt.datetime(2026, 11, 25, 13, 7, tzinfo=UTC)
    assert ceil_minute(on_the_minute) == on_the_minute


def test_given_another_offset_when_rounding_then_result_is_utc() -> None:
    cet = dt.timezone(dt.timedelta(hours=1))
    assert floor_minute(NOW.astimezone(cet)) == floor_minute(NOW)
    assert floor_minute(NOW.astimezone(cet)).utcoffset() == dt.timedelta(0)


def test_given_watermark_and_overlap_when_planning_then_start_is_floored_and_end_covers_the_partial_minute() -> None:
    watermark = dt.datetime(2026, 11, 25, 12, 58, 31, tzinfo=UTC)
    start, end = probe_window(watermark, dt.timedelta(minutes=10), NOW)
    assert start == dt.datetime(2026, 11, 25, 12, 48, tzinfo=UTC)
    assert end == dt.datetime(2026, 11, 25, 13, 8, tzinfo=UTC)
    assert end > NOW  # a change stamped in the last seconds before now is inside the window


def test_given_a_watermark_in_the_current_minute_and_no_overlap_then_window_is_still_one_minute() -> None:
    start, end = probe_window(NOW, dt.timedelta(0), NOW)
    assert end - start >= MIN
    assert start <= NOW < end


def test_given_a_watermark_ahead_of_now_then_window_keeps_start_before_end() -> None:
    start, end = probe_window(NOW + dt.timedelta(minutes=5), dt.timedelta(0), NOW)
    assert end == start + MIN


def test_given_naive_or_negative_input_then_it_is_rejected() -> None:
    with pytest.raises(ValueError, match="naive"):
        probe_window(dt.datetime(2026, 1, 1), dt.timedelta(0), NOW)
    with pytest.raises(ValueError, match="overlap"):
        probe_window(NOW, dt.timedelta(seconds=-1), NOW)


@given(
    wm_offset=st.integers(min_value=-86400 * 20, max_value=3600),
    overlap=st.integers(min_value=0, max_value=7200),
    now_ms=st.integers(min_value=0, max_value=86400 * 1000),
)
def test_property_window_is_whole_minutes_ordered_and_covers_watermark_minus_overlap_to_now(
    wm_offset: int, overlap: int, now_ms: int
) -> None:
    now = dt.datetime(2026, 11, 25, tzinfo=UTC) + dt.timedelta(milliseconds=now_ms)
    watermark = now + dt.timedelta(seconds=wm_offset)
    start, end = probe_window(watermark, dt.timedelta(seconds=overlap), now)
    assert start.second == start.microsecond == end.second == end.microsecond == 0
    assert end - start >= MIN
    assert start <= watermark - dt.timedelta(seconds=overlap)
    assert end >= now
    assert end - now < MIN or end == start + MIN


def test_given_a_start_within_15_days_then_it_is_probed_and_older_is_flagged() -> None:
    assert window_too_old(NOW - dt.timedelta(days=14), NOW) is None
    reason = window_too_old(NOW - dt.timedelta(days=15, minutes=1), NOW)
    assert reason is not None
    assert "15-day" in reason


# -- batching ------------------------------------------------------------------------------------


def assert_valid(batches: list, pairs: list[str], queries: list[str]) -> None:
    for b in batches:
        assert 0 < b.subrequests <= MAX_SUBREQUESTS
        assert len(b.queries) <= MAX_QUERY_SUBREQUESTS
    assert [n for b in batches for n in b.pairs] == pairs
    assert [n for b in batches for n in b.queries] == queries


@pytest.mark.parametrize(("n", "calls"), [(1, 1), (10, 1), (12, 1), (13, 2), (24, 2), (25, 3), (120, 10)])
def test_given_n_replicateable_objects_then_calls_are_ceil_n_over_12(n: int, calls: int) -> None:
    pairs = names("O", n)
    batches = plan_batches(pairs, [])
    assert len(batches) == calls == math.ceil(n / 12)
    assert_valid(batches, pairs, [])
    assert max(len(b.pairs) for b in batches) == min(n, 12)


def test_given_nothing_to_probe_then_no_call() -> None:
    assert plan_batches([], []) == []
    assert calls_needed(0, 0) == 0


@pytest.mark.parametrize(
    ("p", "q", "calls"),
    [(12, 1, 1), (24, 2, 2), (11, 10, 2), (12, 5, 2), (0, 5, 1), (0, 6, 2), (10, 5, 1), (0, 11, 3)],
)
def test_given_queries_and_pairs_then_the_fewest_calls_respect_both_limits(p: int, q: int, calls: int) -> None:
    pairs, queries = names("P", p), names("Q", q)
    batches = plan_batches(pairs, queries)
    assert len(batches) == calls
    assert_valid(batches, pairs, queries)


@given(p=st.integers(min_value=0, max_value=40), q=st.integers(min_value=0, max_value=14))
def test_property_batches_are_valid_and_no_fewer_calls_are_possible(p: int, q: int) -> None:
    pairs, queries = names("P", p), names("Q", q)
    batches = plan_batches(pairs, queries)
    assert_valid(batches, pairs, queries)
    if p or q:
        lower_bound = max(math.ceil((2 * p + q) / MAX_SUBREQUESTS), math.ceil(q / MAX_QUERY_SUBREQUESTS))
        assert len(batches) >= lower_bound
        # brute force: no split of the queries over one call less leaves room for all pairs
        fewer = len(batches) - 1
        if fewer >= 1:
            capacities = [sum((MAX_SUBREQUESTS - qi) // 2 for qi in split) for split in _splits(q, fewer)]
            assert max(capacities, default=-1) < p


def _splits(total: int, parts: int) -> list[tuple[int, ...]]:
    """Every way to put ``total`` queries into ``parts`` calls, at most 5 per call."""
    if parts == 1:
        return [(total,)] if total <= MAX_QUERY_SUBREQUESTS else []
    return [
        (first, *rest)
        for first in range(min(total, MAX_QUERY_SUBREQUESTS) + 1)
        for rest in _splits(total - first, parts - 1)
    ]
