"""The API budget: stop starting new work when the org's daily API usage passes a share.

Salesforce reports the org's rolling-24-hour usage on every response (``Sforce-Limit-Info:
api-usage=N/M``, read by ``SalesforceClient.api_usage()``) and in ``/limits``
(``DailyApiRequests: {Max, Remaining}``).  :class:`ApiBudget` turns a reading into a decision:

* usage ≥ ``limit_percent`` → paused (no new cycles are started; running ones finish);
* paused, and usage < ``limit_percent - resume_margin`` → resumed;
* in between, the previous state holds (hysteresis, so the dispatcher does not flap at the edge);
* no reading at all → the previous state holds (a paused org is not resumed on no information,
  an unpaused one is not stopped on none).

The budget keeps no state of its own: the caller passes the persisted :class:`BudgetState` in and
persists ``decision.state`` (in the state table).  It also logs and meters the decision —
:meth:`BudgetDecision.metrics` gives ``ApiBudgetPaused`` (0/1) and ``ApiUsagePercent`` and
:meth:`BudgetDecision.log_fields` the structured log keys; :func:`emit_budget` does both with the
engine's logger and metrics.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sfsync.core.observability import count, logger
from sfsync.store.org_state import BudgetState

DEFAULT_LIMIT_PERCENT = 80.0
DEFAULT_RESUME_MARGIN = 5.0


@dataclass(frozen=True, slots=True)
class BudgetDecision:
    allow_new_work: bool
    used: int | None
    max: int | None
    percent: float | None
    reason: str
    state: BudgetState
    changed: bool = False
    source: str | None = None

    def metrics(self) -> dict[str, float]:
        """``ApiBudgetPaused`` (0/1) and, when known, ``ApiUsagePercent``."""
        out = {"ApiBudgetPaused": 0.0 if self.allow_new_work else 1.0}
        if self.percent is not None:
            out["ApiUsagePercent"] = round(self.percent, 2)
        return out

    def log_fields(self) -> dict[str, Any]:
        return {
            "api_budget": {
                "allow_new_work": self.allow_new_work,
                "used": self.used,
                "max": self.max,
                "percent": round(self.percent, 2) if self.percent is not None else None,
                "source": self.source,
                "changed": self.changed,
                "reason": self.reason,
            }
        }


class ApiBudget:
    """Pause at ``limit_percent`` of the daily allocation, resume below ``limit_percent - resume_margin``."""

    def __init__(self, limit_percent: float = DEFAULT_LIMIT_PERCENT, resume_margin: float = DEFAULT_RESUME_MARGIN):
        if isinstance(limit_percent, bool) or not 0 < limit_percent <= 100:
            raise ValueError(f"limit_percent must be in (0, 100], got {limit_percent!r}")
        if isinstance(resume_margin, bool) or not 0 <= resume_margin < limit_percent:
            raise ValueError(f"resume_margin must be in [0, limit_percent), got {resume_margin!r}")
        self.limit_percent = float(limit_percent)
        self.resume_margin = float(resume_margin)

    @property
    def resume_below(self) -> float:
        return self.limit_percent - self.resume_margin

    def evaluate(
        self,
        usage: tuple[int, int] | None,
        limits_json: Mapping[str, Any] | None,
        *,
        state: BudgetState | None = None,
        now: dt.datetime | None = None,
    ) -> BudgetDecision:
        """Decide from the ``Sforce-Limit-Info`` reading (preferred: the latest) or ``/limits``."""
        previous = state or BudgetState()
        reading = _reading(usage, limits_json)
        if reading is None:
            verdict = "paused" if previous.paused else "running"
            return BudgetDecision(
                allow_new_work=not previous.paused,
                used=None,
                max=None,
                percent=None,
                reason=f"API usage unknown; {verdict} as before",
                state=previous,
            )
        used, maximum, source = reading
        percent = 100.0 * used / maximum
        if percent >= self.limit_percent:
            paused, reason = True, f"API usage {percent:.1f}% ≥ limit {self.limit_percent:g}%"
        elif percent < self.resume_below:
            paused, reason = False, f"API usage {percent:.1f}% < resume threshold {self.resume_below:g}%"
        else:
            paused = previous.paused
            verdict = "stay paused" if paused else "keep running"
            reason = f"API usage {percent:.1f}% between {self.resume_below:g}% and {self.limit_percent:g}%: {verdict}"
        changed = paused != previous.paused
        new_state = BudgetState(paused, now) if changed else previous
        return BudgetDecision(
            allow_new_work=not paused,
            used=used,
            max=maximum,
            percent=percent,
            reason=reason,
            state=new_state,
            changed=changed,
            source=source,
        )


def _reading(usage: tuple[int, int] | None, limits_json: Mapping[str, Any] | None) -> tuple[int, int, str] | None:
    if usage is not None:
        used, maximum = usage
        if _valid(used, maximum):
            return int(used), int(maximum), "Sforce-Limit-Info"
    if limits_json:
        daily = limits_json.get("DailyApiRequests")
        if isinstance(daily, Mapping):
            try:
                maximum = int(daily["Max"])
                remaining = int(daily["Remaining"])
            except (KeyError, TypeError, ValueError):
                return None
            if _valid(maximum - remaining, maximum):
                return max(0, maximum - remaining), maximum, "/limits"
    return None


def _valid(used: Any, maximum: Any) -> bool:
    return (
        isinstance(used, int)
        and isinstance(maximum, int)
        and not isinstance(used, bool)
        and not isinstance(maximum, bool)
        and maximum > 0
        and used >= 0
    )


def emit_budget(decision: BudgetDecision) -> None:
    """Log the decision (warning when it pauses, info otherwise) and add its metrics."""
    values = decision.metrics()
    count("ApiBudgetPaused", values["ApiBudgetPaused"])
    if "ApiUsagePercent" in values:
        count("ApiUsagePercent", values["ApiUsagePercent"])
    if decision.changed and not decision.allow_new_work:
        logger.warning("API budget reached: no new cycles start", extra=decision.log_fields())
    elif decision.changed:
        logger.info("API budget back under the resume threshold: cycles start again", extra=decision.log_fields())
    else:
        logger.info("API budget checked", extra=decision.log_fields())


__all__ = [
    "DEFAULT_LIMIT_PERCENT",
    "DEFAULT_RESUME_MARGIN",
    "ApiBudget",
    "BudgetDecision",
    "emit_budget",
]
