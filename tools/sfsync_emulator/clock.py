"""The emulator's virtual clock: held, stepped, or running with real time.

Every timestamp the emulated org writes (``SystemModstamp``, ``CreatedDate``, job times, token
expiry, recycle-bin purge) comes from one ``Clock``, so tests are deterministic.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

from .schema import datetime_to_ms, ms_to_datetime


class Clock:
    """Epoch-millisecond clock.

    * ``Clock(start_ms, running=False)`` holds still until stepped (tests).
    * ``running=True`` advances with real time from ``start_ms`` (the demo), optionally faster
      (``rate``).  ``freeze()`` / ``run()`` switch modes without a jump.
    """

    def __init__(self, start_ms: int | None = None, *, running: bool = False, rate: float = 1.0) -> None:
        self._lock = threading.Lock()
        self._base_ms = start_ms if start_ms is not None else int(time.time() * 1000)
        self._running = running
        self._rate = rate
        self._real_base = time.monotonic()

    def now_ms(self) -> int:
        with self._lock:
            return self._now_locked()

    def _now_locked(self) -> int:
        if not self._running:
            return self._base_ms
        return self._base_ms + int((time.monotonic() - self._real_base) * 1000 * self._rate)

    def now(self) -> dt.datetime:
        return ms_to_datetime(self.now_ms())

    @property
    def running(self) -> bool:
        return self._running

    def freeze(self) -> None:
        with self._lock:
            self._base_ms = self._now_locked()
            self._running = False

    def run(self, rate: float | None = None) -> None:
        with self._lock:
            self._base_ms = self._now_locked()
            self._real_base = time.monotonic()
            self._running = True
            if rate is not None:
                self._rate = rate

    def advance(self, seconds: float) -> int:
        """Step the clock forward (never backward); returns the new time in ms."""
        if seconds < 0:
            raise ValueError("the clock never goes backward")
        with self._lock:
            self._base_ms += int(seconds * 1000)
            return self._now_locked()

    def set(self, when: dt.datetime | int) -> int:
        """Jump to an instant at or after now (tests use it to time-travel forward)."""
        target = when if isinstance(when, int) else datetime_to_ms(when)
        with self._lock:
            now = self._now_locked()
            if target < now:
                raise ValueError("the clock never goes backward")
            self._base_ms += target - now
            return self._now_locked()
