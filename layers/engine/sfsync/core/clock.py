"""Time sources and the engine's time formats.

Two clocks matter:

* the **engine clock** (AWS side): leases, the pause between cycles, ``_synced_at``.  In Lambda it
  is the system clock; tests install another one with :func:`use_clock`.
* **Salesforce's clock**: the upper bound of a sync window must come from the org's own notion of
  "now" (``SystemModstamp`` values are stamped by it).  :func:`salesforce_now` reads it from the
  Salesforce adapter (the ``Date`` header of its latest response, exposed as
  ``server_time()``); when the adapter cannot tell, it falls back to the engine clock and says so —
  the safety lag (default 60 s) absorbs ordinary clock skew between AWS and Salesforce.

Formats: the engine stores instants as ISO-8601 UTC with milliseconds and a ``Z``
(``2026-11-24T12:41:20.000Z``), which orders lexically; SOQL datetime literals use the same form.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)

_SF_DATETIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:?\d{2})$",
)


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC)


class FixedClock:
    """A clock that stands still until moved (tests and replays)."""

    def __init__(self, when: dt.datetime) -> None:
        self._when = require_aware(when)

    def now(self) -> dt.datetime:
        return self._when

    def advance(self, seconds: float) -> None:
        self._when += dt.timedelta(seconds=seconds)


_engine_clock: Clock = SystemClock()


def engine_clock() -> Clock:
    return _engine_clock


def now() -> dt.datetime:
    """The engine clock's current instant (timezone-aware UTC)."""
    return require_aware(_engine_clock.now())


@contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    """Install ``clock`` as the engine clock for the duration of the block (test seam)."""
    global _engine_clock
    previous = _engine_clock
    _engine_clock = clock
    try:
        yield clock
    finally:
        _engine_clock = previous


class ServerTimeSource(Protocol):
    def server_time(self) -> dt.datetime | None: ...


def salesforce_now(sf: object, fallback: Clock | None = None) -> tuple[dt.datetime, str]:
    """Salesforce's current time and where it came from (``"salesforce"`` or ``"engine-clock"``)."""
    reader = getattr(sf, "server_time", None)
    if callable(reader):
        value = reader()
        if isinstance(value, dt.datetime):
            return require_aware(value).astimezone(UTC), "salesforce"
    return require_aware((fallback or _engine_clock).now()), "engine-clock"


def require_aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: the engine only handles timezone-aware instants")
    return value


def to_iso_ms(value: dt.datetime) -> str:
    """``2026-11-24T12:41:20.000Z`` (UTC, milliseconds; truncates sub-millisecond digits)."""
    utc = require_aware(value).astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def to_soql(value: dt.datetime) -> str:
    """An unquoted SOQL datetime literal (same form as :func:`to_iso_ms`)."""
    return to_iso_ms(value)


def parse_instant(text: str) -> dt.datetime:
    """Parse a Salesforce/engine datetime (``…000+0000``, ``…000Z``, ``…+00:00``) to aware UTC."""
    match = _SF_DATETIME.match(text.strip())
    if not match:
        raise ValueError(f"not a Salesforce datetime: {text!r}")
    day, hh, mm, ss, frac, offset = match.groups()
    micro = int((frac or "0").ljust(6, "0"))
    base = dt.datetime.fromisoformat(f"{day}T{hh}:{mm}:{ss}").replace(microsecond=micro)
    if offset == "Z":
        tz = UTC
    else:
        sign = 1 if offset[0] == "+" else -1
        digits = offset[1:].replace(":", "")
        tz = dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    return base.replace(tzinfo=tz).astimezone(UTC)


def normalize_stamp(text: str) -> str:
    """Any Salesforce datetime string -> the engine's ISO ms ``Z`` form."""
    return to_iso_ms(parse_instant(text))


def epoch_seconds(value: dt.datetime) -> int:
    return int(require_aware(value).timestamp())


__all__ = [
    "EPOCH",
    "UTC",
    "Clock",
    "FixedClock",
    "ServerTimeSource",
    "SystemClock",
    "engine_clock",
    "epoch_seconds",
    "normalize_stamp",
    "now",
    "parse_instant",
    "require_aware",
    "salesforce_now",
    "to_iso_ms",
    "to_soql",
    "use_clock",
]
