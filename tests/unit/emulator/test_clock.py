"""The emulator's virtual clock (``clock.py``) and the time codecs it relies on (``schema.py``)."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sfsync_emulator.clock import Clock
from sfsync_emulator.schema import (
    datetime_to_ms,
    format_csv_datetime,
    format_rest_datetime,
    ms_to_datetime,
    parse_date,
    parse_datetime_ms,
)

pytestmark = pytest.mark.unit

START = dt.datetime(2026, 11, 24, 12, 0, 0, tzinfo=dt.UTC)
START_MS = datetime_to_ms(START)


# ------------------------------------------------------------------------------- Clock


def test_given_held_clock_when_real_time_passes_then_now_does_not_move() -> None:
    clock = Clock(START_MS)
    time.sleep(0.02)
    assert clock.now_ms() == START_MS
    assert clock.now() == START
    assert clock.running is False


def test_given_held_clock_when_advanced_then_moves_by_exactly_that_much() -> None:
    clock = Clock(START_MS)
    assert clock.advance(1.5) == START_MS + 1500
    assert clock.advance(15 * 86400) == START_MS + 1500 + 15 * 86_400_000
    assert clock.now().tzinfo is not None


def test_given_clock_when_advanced_backward_or_set_to_the_past_then_value_error_and_unchanged() -> None:
    clock = Clock(START_MS)
    with pytest.raises(ValueError, match="backward"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="backward"):
        clock.set(START - dt.timedelta(seconds=1))
    assert clock.now_ms() == START_MS


def test_given_clock_when_set_to_a_later_instant_then_jumps_there() -> None:
    clock = Clock(START_MS)
    later = START + dt.timedelta(days=3, milliseconds=7)
    assert clock.set(later) == datetime_to_ms(later)
    assert clock.set(datetime_to_ms(later) + 5) == datetime_to_ms(later) + 5


def test_given_running_clock_then_follows_real_time_at_its_rate() -> None:
    clock = Clock(START_MS, running=True, rate=100.0)
    time.sleep(0.05)
    moved = clock.now_ms() - START_MS
    assert moved >= 4000  # 50 ms real x 100 (lower bound only: scheduling can only add time)
    assert clock.running is True


def test_given_running_clock_when_frozen_then_holds_without_a_jump_and_run_resumes() -> None:
    clock = Clock(START_MS, running=True, rate=50.0)
    time.sleep(0.02)
    clock.freeze()
    held = clock.now_ms()
    assert held > START_MS
    time.sleep(0.02)
    assert clock.now_ms() == held
    clock.run()
    time.sleep(0.02)
    assert clock.now_ms() > held
    clock.freeze()
    assert clock.advance(10) == clock.now_ms()


def test_given_running_clock_when_advanced_then_step_adds_to_real_time() -> None:
    clock = Clock(START_MS, running=True)
    assert clock.advance(3600) >= START_MS + 3_600_000


def test_given_no_start_then_clock_starts_at_wall_time() -> None:
    before = int(time.time() * 1000)
    clock = Clock()
    after = int(time.time() * 1000)
    assert before <= clock.now_ms() <= after


# ------------------------------------------------------------------------------- time codecs


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-24T12:00:00Z",
        "2026-11-24T12:00:00.000Z",
        "2026-11-24T12:00:00.000+0000",
        "2026-11-24T12:00:00+00:00",
        "2026-11-24T13:00:00+01:00",
        "2026-11-24T07:00:00.000-0500",
        "2026-11-24T12:00:00.000000000Z",
    ],
)
def test_given_every_datetime_form_of_one_instant_when_parsed_then_same_epoch_ms(text: str) -> None:
    assert parse_datetime_ms(text) == START_MS


def test_given_fraction_digits_when_parsed_then_milliseconds_kept_and_rest_truncated() -> None:
    assert parse_datetime_ms("2026-11-24T12:00:00.5Z") == START_MS + 500
    assert parse_datetime_ms("2026-11-24T12:00:00.123456Z") == START_MS + 123


@pytest.mark.parametrize(
    "text", ["2026-11-24", "2026-11-24T12:00:00", "2026-11-24 12:00:00Z", "yesterday", "", "2026-13-01T00:00:00Z"]
)
def test_given_not_a_datetime_when_parsed_then_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_datetime_ms(text)


def test_given_epoch_ms_when_formatted_then_rest_and_csv_forms() -> None:
    assert format_rest_datetime(START_MS + 42) == "2026-11-24T12:00:00.042+0000"
    assert format_csv_datetime(START_MS + 42) == "2026-11-24T12:00:00.042Z"


def test_given_naive_datetime_when_converted_then_value_error() -> None:
    with pytest.raises(ValueError, match="naive"):
        datetime_to_ms(dt.datetime(2026, 11, 24))  # naive on purpose


def test_given_dates_when_validated_then_kept_or_refused() -> None:
    assert parse_date(" 2024-02-29 ") == "2024-02-29"
    with pytest.raises(ValueError):
        parse_date("2023-02-29")
    with pytest.raises(ValueError):
        parse_date("2023-2-1")


@given(st.integers(min_value=0, max_value=253_402_300_799_999))
def test_property_rest_and_csv_forms_round_trip_to_the_same_ms(ms: int) -> None:
    assert parse_datetime_ms(format_rest_datetime(ms)) == ms
    assert parse_datetime_ms(format_csv_datetime(ms)) == ms
    assert datetime_to_ms(ms_to_datetime(ms)) == ms
