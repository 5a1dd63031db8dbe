"""The watermark contract: window math, checkpoints, leases, cycle history (moto DynamoDB via PynamoDB)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

import pytest
from sfsync.core.clock import UTC
from sfsync.core.config import Settings, load_settings
from sfsync.core.exceptions import DispatchFailed, LeaseHeld, LeaseLost
from sfsync.core.registry import ObjectSpec
from sfsync.core.window import Checkpoint, Position
from sfsync.dispatch.copies import FullCopies
from sfsync.dispatch.dispatcher import DispatchResult, Gate, dispatch
from sfsync.inbound.starts import CycleStarter
from sfsync.store.copies import CopyStore
from sfsync.store.state import CycleSummary, Lifecycle, StateStore, lease_cycle_id, lease_token

from tests.support.aws import REGION, mocked_state_store
from tests.support.fullcopy import RecordingCopyStarter

pytestmark = pytest.mark.functional

T0 = dt.datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[StateStore]:
    with mocked_state_store(monkeypatch) as state:
        yield state


# -- leases --------------------------------------------------------------------------------------


def test_given_a_free_object_when_acquiring_then_the_lease_is_held(store: StateStore) -> None:
    store.acquire_lease("Account", "c1", now=at(0), ttl_seconds=60)
    status = store.lease_status("Account")
    assert status.holder == "c1"
    assert status.running(at(30))


def test_given_a_held_lease_when_another_cycle_acquires_then_lease_held(store: StateStore) -> None:
    store.acquire_lease("Account", "c1", now=at(0), ttl_seconds=60)
    with pytest.raises(LeaseHeld) as err:
        store.acquire_lease("Account", "c2", now=at(30), ttl_seconds=60)
    assert err.value.holder == "c1"


def test_given_an_expired_lease_when_another_cycle_acquires_then_it_takes_over(store: StateStore) -> None:
    store.acquire_lease("Account", "c1", now=at(0), ttl_seconds=60)
    store.acquire_lease("Account", "c2", now=at(61), ttl_seconds=60)
    assert store.lease_status("Account").holder == "c2"
    # the dead holder can no longer release or checkpoint
    assert not store.release_lease(
        "Account", "c1", cycle_id="c1", ended_at=at(62), status="complete", resume_pending=False
    )
    with pytest.raises(LeaseLost):
        store.save_checkpoint("Account", Checkpoint("c1", at(0), at(1)), holder="c1", now=at(62))


def test_given_a_holder_when_releasing_then_end_time_is_recorded_and_lease_is_free(store: StateStore) -> None:
    store.acquire_lease("Account", "c1", now=at(0), ttl_seconds=60)
    assert store.release_lease("Account", "c1", cycle_id="c1", ended_at=at(10), status="complete", resume_pending=False)
    status = store.lease_status("Account")
    assert status.holder is None
    assert status.last_ended_at == at(10)
    assert status.last_cycle_id == "c1"
    store.acquire_lease("Account", "c2", now=at(11), ttl_seconds=60)


def test_given_a_lease_held_by_one_delivery_when_a_second_delivery_of_the_same_cycle_acquires_then_lease_held(
    store: StateStore,
) -> None:
    # Lambda delivers an async event at least once: both deliveries carry the same cycle id.
    first, second = lease_token("Account-c1"), lease_token("Account-c1")
    assert first != second and lease_cycle_id(first) == lease_cycle_id(second) == "Account-c1"
    store.acquire_lease("Account", first, now=at(0), ttl_seconds=60)
    with pytest.raises(LeaseHeld):
        store.acquire_lease("Account", second, now=at(1), ttl_seconds=60)
    # and the second delivery cannot write state as the holder either
    with pytest.raises(LeaseLost):
        store.save_checkpoint("Account", Checkpoint("Account-c1", at(0), at(1)), holder=second, now=at(2))
    assert store.holds_lease("Account", first, now=at(2))
    assert not store.holds_lease("Account", second, now=at(2))


def test_given_a_holder_when_little_lease_time_is_left_then_it_does_not_hold_it_with_a_margin(
    store: StateStore,
) -> None:
    store.acquire_lease("Account", "c1~a", now=at(0), ttl_seconds=100)
    assert store.holds_lease("Account", "c1~a", now=at(30), margin_seconds=60)
    assert not store.holds_lease("Account", "c1~a", now=at(50), margin_seconds=60)


def test_leases_are_per_object(store: StateStore) -> None:
    store.acquire_lease("Account", "c1", now=at(0), ttl_seconds=60)
    store.acquire_lease("Contact", "c2", now=at(0), ttl_seconds=60)
    statuses = store.lease_statuses(["Account", "Contact", "Lead"])
    assert statuses["Account"].holder == "c1"
    assert statuses["Contact"].holder == "c2"
    assert statuses["Lead"].holder is None


def test_given_a_recent_end_when_claiming_inside_the_pause_then_the_claim_is_refused(store: StateStore) -> None:
    store.acquire_lease("Account", "c1", now=at(0), ttl_seconds=60)
    store.release_lease("Account", "c1", cycle_id="c1", ended_at=at(10), status="complete", resume_pending=False)
    assert not store.claim_dispatch("Account", "c2", now=at(100), claim_seconds=900, not_ended_after=at(100 - 300))
    assert store.claim_dispatch("Account", "c2", now=at(310), claim_seconds=900, not_ended_after=at(310 - 300))
    # a live claim blocks a second dispatcher
    assert not store.claim_dispatch("Account", "c3", now=at(320), claim_seconds=900, not_ended_after=at(20))
    # the cycle's acquisition clears the claim
    store.acquire_lease("Account", "c2", now=at(330), ttl_seconds=60)
    assert store.lease_status("Account").claimed_by is None


def test_given_a_pending_resume_when_claiming_inside_the_pause_then_the_claim_succeeds(store: StateStore) -> None:
    store.acquire_lease("Account", "c1", now=at(0), ttl_seconds=60)
    store.release_lease("Account", "c1", cycle_id="c1", ended_at=at(10), status="partial", resume_pending=True)
    assert store.claim_dispatch("Account", "c2", now=at(20), claim_seconds=900, not_ended_after=at(20 - 300))


def test_given_a_running_lease_when_claiming_then_refused(store: StateStore) -> None:
    store.acquire_lease("Account", "c1", now=at(0), ttl_seconds=600)
    assert not store.claim_dispatch("Account", "c2", now=at(400), claim_seconds=900, not_ended_after=None)


# -- checkpoint and watermark ----------------------------------------------------------------------


def test_given_a_lease_when_checkpointing_then_the_checkpoint_round_trips(store: StateStore) -> None:
    store.acquire_lease("Account", "c1", now=at(0), ttl_seconds=600)
    cp = Checkpoint("c1", at(-600), at(500), Position(at(100), "001B"), next_url="/q/01g-2000", records_done=2000)
    store.save_checkpoint("Account", cp, holder="c1", now=at(1))
    assert store.get_checkpoint("Account") == cp


def test_given_a_complete_window_when_completing_then_watermark_advances_and_checkpoint_goes(
    store: StateStore,
) -> None:
    store.acquire_lease("Account", "c1", now=at(0), ttl_seconds=600)
    store.save_checkpoint("Account", Checkpoint("c1", at(-600), at(500)), holder="c1", now=at(1))
    assert store.complete_window("Account", at(500), holder="c1", now=at(2)) == at(500)
    assert store.get_watermark("Account").value == at(500)
    assert store.get_checkpoint("Account") is None


def test_given_a_later_full_copy_watermark_when_completing_then_it_is_kept(store: StateStore) -> None:
    store.acquire_lease("Account", "c1", now=at(0), ttl_seconds=600)
    store.set_full_copy_watermark("Account", at(900), by="full-sync")
    assert store.complete_window("Account", at(500), holder="c1", now=at(2)) == at(900)
    wm = store.get_watermark("Account")
    assert wm.value == at(900)
    assert wm.full_copy_done


def test_given_a_lost_lease_when_completing_then_watermark_stays(store: StateStore) -> None:
    store.acquire_lease("Account", "c1", now=at(0), ttl_seconds=60)
    with pytest.raises(LeaseLost):
        store.complete_window("Account", at(500), holder="c1", now=at(61))
    assert store.get_watermark("Account").value is None


def test_cycle_summaries_are_listed_newest_first(store: StateStore) -> None:
    for i in range(3):
        store.record_cycle(
            CycleSummary("Account", f"c{i}", "complete", at(i * 100), at(i * 100 + 5), {"RecordsRead": i})
        )
    cycles = store.recent_cycles("Account", limit=2)
    assert [c.cycle_id for c in cycles] == ["c2", "c1"]
    assert cycles[0].counts == {"RecordsRead": 2}


# -- the dispatcher's due decision (state-driven) ----------------------------------------------------


class RecordingInvoker:
    def __init__(self, failing: set[str] | None = None) -> None:
        self.started: list[tuple[str, str, str]] = []
        self.failing = failing or set()

    def start_object_sync(self, object_name: str, cycle_id: str, reason: str) -> None:
        if object_name in self.failing:
            raise DispatchFailed(f"invoke failed for {object_name}")
        self.started.append((object_name, cycle_id, reason))


def dispatch_settings(objects: str = "Account,Contact", **extra: str) -> Settings:
    return load_settings({"SFSYNC_STATE_TABLE": "state", "SFSYNC_OBJECTS": objects, **extra})


def run_dispatch(
    when: dt.datetime, settings: Settings, store: StateStore, invoker: CycleStarter, *, gate: Gate | None = None
) -> DispatchResult:
    """One dispatch over objects whose full copy is done (the first copy's decisions: test_dispatcher)."""
    import boto3

    for name in settings.registry.names():
        store.set_full_copy_watermark(name, T0 - dt.timedelta(minutes=1), by="test")
    copies = FullCopies(CopyStore(boto3.client("dynamodb", region_name=REGION), "state"), RecordingCopyStarter())
    result = dispatch(when, settings, store, invoker, copies=copies, gate=gate)
    assert result.copies.started == [] and result.copies.held == {}
    return result


def test_given_copied_never_run_objects_when_dispatching_then_each_starts_once_as_first(store: StateStore) -> None:
    invoker = RecordingInvoker()
    result = run_dispatch(at(0), dispatch_settings(), store, invoker)
    assert [(o, r) for o, _, r in invoker.started] == [("Account", "first"), ("Contact", "first")]
    assert [s["cycle_id"] for s in result.started] == [c for _, c, _ in invoker.started]
    # a second dispatcher a minute later finds live claims and starts nothing
    again = run_dispatch(at(60), dispatch_settings(), store, RecordingInvoker())
    assert again.started == []
    assert set(again.skipped) == {"Account", "Contact"}


def test_given_the_pause_when_dispatching_then_objects_start_only_after_it(store: StateStore) -> None:
    for name in ("Account", "Contact"):
        store.acquire_lease(name, f"{name}-c1", now=at(0), ttl_seconds=60)
        store.release_lease(
            name, f"{name}-c1", cycle_id=f"{name}-c1", ended_at=at(10), status="complete", resume_pending=False
        )
    settings = dispatch_settings(SFSYNC_OBJECT_OPTIONS='{"Contact": {"pause_seconds": 60}}')
    early = run_dispatch(at(100), settings, store, RecordingInvoker())
    assert [s["object"] for s in early.started] == ["Contact"]  # its own, shorter pause
    assert early.skipped["Account"].startswith("pausing until")
    later = RecordingInvoker()
    run_dispatch(at(310), settings, store, later)
    assert [(o, r) for o, _, r in later.started] == [("Account", "due")]


def test_given_a_running_cycle_when_dispatching_then_the_object_is_skipped(store: StateStore) -> None:
    store.acquire_lease("Account", "c1", now=at(0), ttl_seconds=600)
    result = run_dispatch(at(30), dispatch_settings("Account"), store, RecordingInvoker())
    assert result.started == []
    assert result.skipped == {"Account": "running (c1)"}


def test_given_a_pending_resume_when_dispatching_then_it_starts_without_waiting(store: StateStore) -> None:
    store.acquire_lease("Account", "c1", now=at(0), ttl_seconds=600)
    store.release_lease("Account", "c1", cycle_id="c1", ended_at=at(10), status="partial", resume_pending=True)
    invoker = RecordingInvoker()
    run_dispatch(at(11), dispatch_settings("Account"), store, invoker)
    assert [(o, r) for o, _, r in invoker.started] == [("Account", "resume")]


def test_given_a_failing_invoke_when_dispatching_then_others_start_and_the_failure_is_raised(
    store: StateStore,
) -> None:
    invoker = RecordingInvoker(failing={"Account"})
    with pytest.raises(DispatchFailed, match="Account"):
        run_dispatch(at(0), dispatch_settings(), store, invoker)
    assert [o for o, _, _ in invoker.started] == ["Contact"]


def test_the_gate_seam_holds_objects_back(store: StateStore) -> None:
    def gate(specs: Sequence[ObjectSpec]) -> tuple[list[ObjectSpec], dict[str, str]]:
        return [s for s in specs if s.name == "Contact"], {"Account": "no changes"}

    invoker = RecordingInvoker()
    result = run_dispatch(at(0), dispatch_settings(), store, invoker, gate=gate)
    assert [o for o, _, _ in invoker.started] == ["Contact"]
    assert result.skipped == {"Account": "no changes"}


def test_given_several_objects_when_reading_watermarks_then_one_batch_gives_each_or_none(store: StateStore) -> None:
    store.set_full_copy_watermark("Account", at(5), by="copy")
    marks = store.watermarks(["Account", "Contact"])
    assert marks["Account"].value == at(5) and marks["Account"].full_copy_done is True
    assert marks["Contact"].value is None and marks["Contact"].full_copy_done is False


def test_given_resync_requests_then_the_generation_counts_up_and_the_start_is_remembered(store: StateStore) -> None:
    assert store.copy_requests(["Lead"])["Lead"].generation == 0
    assert store.request_resync("Lead", requested_by="alice", now=at(1)) == 1
    assert store.request_resync("Lead", requested_by="bob", now=at(2)) == 2
    store.record_copy_start("Lead", "resync-abc-g2", reason="resync", now=at(3))
    request = store.copy_requests(["Lead", "Account"])["Lead"]
    assert (request.generation, request.resync_requested_by, request.resync_requested_at) == (2, "bob", at(2))
    assert (request.execution_name, request.reason, request.started_at) == ("resync-abc-g2", "resync", at(3))
    assert store.copy_requests(["Account"])["Account"].execution_name is None


# -- lifecycle bookkeeping and the org back-off ---------------------------------------------------


def test_given_no_backoff_when_set_then_it_is_read_back_and_never_shortened(store: StateStore) -> None:
    assert store.get_org_backoff() is None
    assert store.set_org_backoff(at(300), reason="REQUEST_LIMIT_EXCEEDED", now=at(0)) == at(300)
    assert store.get_org_backoff() == at(300)
    assert store.set_org_backoff(at(100), now=at(1)) == at(300), "a shorter back-off does not replace a longer one"
    assert store.get_org_backoff() == at(300)
    assert store.set_org_backoff(at(900), now=at(2)) == at(900)
    assert store.get_org_backoff() == at(900)


def test_given_the_lease_when_saving_lifecycle_then_it_round_trips_and_without_it_is_refused(
    store: StateStore,
) -> None:
    assert store.get_lifecycle("Lead") == Lifecycle()
    store.acquire_lease("Lead", "c1", now=at(0), ttl_seconds=60)
    saved = Lifecycle(("Id", "Name"), at(-60), at(-30), at(-10))
    store.save_lifecycle("Lead", saved, holder="c1", now=at(1))
    assert store.get_lifecycle("Lead") == saved
    with pytest.raises(LeaseLost):
        store.save_lifecycle("Lead", Lifecycle(), holder="c2", now=at(2))
    assert store.get_lifecycle("Lead") == saved


def test_given_a_bulk_checkpoint_when_saved_then_job_and_locator_round_trip(store: StateStore) -> None:
    store.acquire_lease("Lead", "c1", now=at(0), ttl_seconds=60)
    checkpoint = Checkpoint(
        "c1", at(-600), at(0), Position(at(-5), "00Q000000000001AAA"), None, 200, "750x0000000001", "MzA"
    )
    store.save_checkpoint("Lead", checkpoint, holder="c1", now=at(1))
    assert store.get_checkpoint("Lead") == checkpoint
