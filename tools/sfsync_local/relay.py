"""Event Relay for the local stack: the emulator's change events onto the stack's partner event bus.

In AWS, Salesforce Event Relay puts every change event of its channel on an EventBridge partner
event bus (spec §9.6).  :class:`LocalEventRelay` does the same with an in-process emulator: it
subscribes to the org's change event bus (:class:`sfsync_emulator.cdc.CdcBus`, which applies the
emulator's duplicate and out-of-order injections before its subscribers see an event), turns each
event into the envelope Event Relay sends (:func:`sfsync_emulator.cdc.relay_envelope`, epoch-ms
dates) and, on :meth:`pump`, puts them on the bus with ``PutEvents``.  The stack's rule sends them to
its queue; :meth:`LocalStack.drain` (or :meth:`start`'s thread) runs the change-event function.

``outage``: while set, events are dropped, as a stopped relay with ``ReplayRecovery: LATEST`` loses
them; the polling cycles catch up.  The bus name is ``aws.partner/salesforce.com/<org id>/<channel id>``
(:func:`bus_name`), the template parameter ``EventRelayBusName``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sfsync_emulator.admin import DEFAULT_RELAY_CHANNEL
from sfsync_emulator.cdc import ChangeEvent, relay_envelope

__all__ = ["LocalEventRelay", "RelayedBatch", "bus_name"]


@dataclass(frozen=True)
class RelayedBatch:
    """What one delivery carried: the events (object and change type) and how long after its Salesforce
    commit the last one was applied (seconds, on the emulator's clock)."""

    kinds: tuple[tuple[str, str], ...]
    latency_seconds: float

    def line(self) -> str:
        counts = Counter(f"{entity} {change}" for entity, change in self.kinds)
        what = ", ".join(f"{kind}" + (f" x{n}" if n > 1 else "") for kind, n in sorted(counts.items()))
        events = f"{len(self.kinds)} change event{'s' if len(self.kinds) != 1 else ''}"
        return f"  -> {events} in DynamoDB {self.latency_seconds:.1f} s after the Salesforce commit ({what})"


def bus_name(org_id: str, channel_id: str = DEFAULT_RELAY_CHANNEL) -> str:
    """The partner event bus (and source) name Event Relay uses for an org's channel."""
    return f"aws.partner/salesforce.com/{org_id}/{channel_id}"


class LocalEventRelay:
    """The emulator's change events -> the local stack's partner bus (see the module docstring)."""

    def __init__(self, stack: Any, org: Any, *, channel_id: str = DEFAULT_RELAY_CHANNEL, epoch_dates: bool = True):
        self.stack = stack
        self.org = org
        self.channel_id = channel_id
        self.epoch_dates = epoch_dates
        self.bus = bus_name(org.org_id, channel_id)
        self.outage = False
        self.relayed = 0
        self.dropped = 0
        self._pending: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._unsubscribe: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: called with each delivery of the background thread (the demo prints it)
        self.on_delivered: Callable[[RelayedBatch], None] | None = None
        self._last: list[tuple[str, str, int]] = []

    # -- subscription -------------------------------------------------------------------------------
    def attach(self) -> LocalEventRelay:
        if self._unsubscribe is None:
            self._unsubscribe = self.org.cdc.subscribe(self._receive)
        return self

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _receive(self, event: ChangeEvent) -> None:
        if self.outage:
            self.dropped += 1
            return
        envelope = relay_envelope(event, self.org.org_id, self.channel_id, epoch_dates=self.epoch_dates)
        with self._lock:
            self._pending.append(envelope)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def take_pending(self) -> list[dict[str, Any]]:
        """Remove and return the envelopes not put on the bus yet (a test delivers them its own way)."""
        with self._lock:
            envelopes = list(self._pending)
            self._pending.clear()
        return envelopes

    # -- delivery -------------------------------------------------------------------------------------
    def pump(self) -> int:
        """Put the pending envelopes on the partner bus (``PutEvents``, 10 a request); returns how many."""
        with self._lock:
            envelopes = list(self._pending)
            self._pending.clear()
        if not envelopes:
            return 0
        headers = [e["detail"]["payload"]["ChangeEventHeader"] for e in envelopes]
        self._last = [(h["entityName"], h["changeType"], int(h["commitTimestamp"])) for h in headers]
        try:
            accepted = int(self.stack.put_change_events(envelopes, bus=self.bus))
        except Exception:
            with self._lock:  # nothing is lost: the next pump puts them again
                self._pending.extendleft(reversed(envelopes))
            raise
        self.relayed += accepted
        return accepted

    def deliver(self) -> int:
        """:meth:`pump`, then run the change-event function on what reached its queue; returns the events put."""
        with self.stack.runtime.lock:
            put = self.pump()
            self.stack.runtime.poll_queues()
        return put

    # -- a background thread (sfsync demo / run, the benchmark) ---------------------------------------
    def start(self, *, interval: float = 0.05) -> None:
        """Deliver in a thread every ``interval`` seconds (what Event Relay + Lambda's poller do in AWS)."""
        self.attach()
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    delivered = self.deliver()
                except Exception:  # noqa: BLE001 - a failed delivery is retried next time; the thread keeps going
                    delivered = 0
                if delivered and self.on_delivered is not None and self._last:
                    now_ms = self.org.clock.now_ms()
                    latency = max(0.0, (now_ms - min(c for _, _, c in self._last)) / 1000)
                    self.on_delivered(RelayedBatch(tuple((e, t) for e, t, _ in self._last), latency))
                self._stop.wait(interval)

        self._thread = threading.Thread(target=loop, name="sfsync-local-event-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.detach()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is pending (background thread); True when idle in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._pending:
                return True
            time.sleep(0.01)
        return not self._pending
