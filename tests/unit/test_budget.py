"""API budget: thresholds, hysteresis, readings from the header or /limits, state round trip."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sfsync.dispatch.budget import ApiBudget, emit_budget
from sfsync.store.org_state import BudgetState

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 11, 25, 13, 0, tzinfo=dt.UTC)


def run(budget: ApiBudget, readings: list[int], maximum: int = 1000) -> list[bool]:
    """Feed successive usage readings, persisting the state between them; allow_new_work per step."""
    state = BudgetState()
    allowed = []
    for i, used in enumerate(readings):
        decision = budget.evaluate((used, maximum), None, state=state, now=T0 + dt.timedelta(minutes=i))
        state = BudgetState.from_dict(json.loads(json.dumps(decision.state.to_dict())))
        allowed.append(decision.allow_new_work)
    return allowed


def test_given_usage_below_the_limit_then_work_is_allowed() -> None:
    decision = ApiBudget().evaluate((799, 1000), None)
    assert decision.allow_new_work
    assert (decision.used, decision.max) == (799, 1000)
    assert decision.percent == pytest.approx(79.9)
    assert decision.metrics() == {"ApiBudgetPaused": 0.0, "ApiUsagePercent": 79.9}


def test_given_usage_at_the_limit_then_new_work_stops_and_the_state_says_paused_since_now() -> None:
    decision = ApiBudget(limit_percent=80).evaluate((800, 1000), None, now=T0)
    assert not decision.allow_new_work
    assert decision.changed
    assert decision.state == BudgetState(paused=True, changed_at=T0)
    assert decision.metrics()["ApiBudgetPaused"] == 1.0
    assert "80" in decision.reason


def test_given_paused_when_usage_falls_but_stays_within_5_points_then_still_paused() -> None:
    assert run(ApiBudget(80), [810, 790, 760, 751]) == [False, False, False, False]


def test_given_paused_when_usage_falls_below_limit_minus_5_then_work_resumes() -> None:
    assert run(ApiBudget(80), [810, 760, 749, 780, 799, 800]) == [False, False, True, True, True, False]


def test_given_a_custom_margin_then_resume_threshold_follows_it() -> None:
    budget = ApiBudget(limit_percent=50, resume_margin=10)
    assert budget.resume_below == 40
    assert run(budget, [500, 450, 400, 399]) == [False, False, False, True]


def test_given_no_header_then_limits_json_is_used_numbers_or_strings() -> None:
    budget = ApiBudget()
    numbers = budget.evaluate(None, {"DailyApiRequests": {"Max": 5000, "Remaining": 500}})
    strings = budget.evaluate(None, {"DailyApiRequests": {"Max": "5000", "Remaining": "4000"}})
    assert (numbers.used, numbers.max, numbers.allow_new_work, numbers.source) == (4500, 5000, False, "/limits")
    assert (strings.used, strings.allow_new_work) == (1000, True)


def test_given_both_readings_then_the_header_wins() -> None:
    decision = ApiBudget().evaluate((100, 1000), {"DailyApiRequests": {"Max": 1000, "Remaining": 0}})
    assert decision.allow_new_work
    assert decision.source == "Sforce-Limit-Info"


@pytest.mark.parametrize("paused", [True, False])
def test_given_no_reading_then_the_previous_state_holds(paused: bool) -> None:
    state = BudgetState(paused=paused, changed_at=T0)
    decision = ApiBudget().evaluate(None, {"Other": {}}, state=state)
    assert decision.allow_new_work is not paused
    assert decision.state == state
    assert decision.percent is None
    assert "ApiUsagePercent" not in decision.metrics()
    assert "unknown" in decision.reason


def test_given_a_zero_allocation_then_it_is_no_reading() -> None:
    assert ApiBudget().evaluate((5, 0), None).percent is None


@pytest.mark.parametrize(("limit", "margin"), [(0, 5), (101, 5), (80, -1), (80, 80), (True, 5)])
def test_given_bad_settings_then_they_are_rejected(limit: float, margin: float) -> None:
    with pytest.raises(ValueError, match=r"limit_percent|resume_margin"):
        ApiBudget(limit, margin)


def test_given_a_malformed_persisted_state_then_it_is_rejected() -> None:
    with pytest.raises(ValueError, match="paused"):
        BudgetState.from_dict({"paused": "yes"})
    assert BudgetState.from_dict(None) == BudgetState()


def test_given_a_decision_when_emitted_then_it_is_logged_with_its_fields(caplog: pytest.LogCaptureFixture) -> None:
    decision = ApiBudget().evaluate((900, 1000), None, now=T0)
    with caplog.at_level("INFO", logger="sfsync"):
        emit_budget(decision)
    record = caplog.records[-1]
    assert record.levelname == "WARNING"
    fields = record.__dict__["api_budget"]
    assert fields["percent"] == 90.0
    assert fields["allow_new_work"] is False
