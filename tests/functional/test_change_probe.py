"""The change probe against the real emulator over HTTPS: API cost and what it detects."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sfsync.core.registry import build_registry, standard_object_names
from sfsync.dispatch.probe import NO_WATERMARK, WINDOW_TOO_OLD, ProbeResult, ProbeTarget, probe_changes, probe_gate
from sfsync.salesforce import SalesforceClient, client_from_secret
from sfsync_emulator import emulator as emulator_module
from sfsync_emulator.catalogue import default_schema
from sfsync_emulator.clock import Clock
from sfsync_emulator.emulator import Emulator
from sfsync_emulator.schema import Schema

from tests.support.emulator import salesforce_secret

pytestmark = pytest.mark.functional

START = dt.datetime(2026, 11, 24, 12, 0, 0, tzinfo=dt.UTC)
OVERLAP = dt.timedelta(minutes=10)
STANDARD = standard_object_names()
EXTRA_CUSTOM = [f"Extra{i:02d}__c" for i in range(11)]


def frozen_clock() -> Clock:
    return Clock(int(START.timestamp() * 1000), running=False)


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    emulator = Emulator.start(seed=7, records=150, clock=frozen_clock())
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def client(emu: Emulator) -> Iterator[SalesforceClient]:
    with client_from_secret(salesforce_secret(emu)) as sf:
        sf.limits()  # authenticate now, so the token request is not part of any measured delta
        yield sf


@pytest.fixture
def now(emu: Emulator) -> dt.datetime:
    """A fresh, quiet hour for each test (the clock is frozen between steps)."""
    emu.clock.advance(3600)
    return emu.clock.now()


def targets(names: list[str], watermark: dt.datetime | None, **kw: Any) -> list[ProbeTarget]:
    return [ProbeTarget(name, watermark, OVERLAP, **kw) for name in names]


def first_id(emu: Emulator, obj: str) -> str:
    page = emu.salesforce().query(f"SELECT Id FROM {obj} LIMIT 1")
    return str(page["records"][0]["Id"])


def test_given_ten_idle_standard_objects_when_probed_then_one_api_call_and_no_work(
    emu: Emulator, client: SalesforceClient, now: dt.datetime
) -> None:
    assert len(STANDARD) >= 10
    before = emu.api_calls()
    result = probe_changes(client, targets(STANDARD, now), now=now)
    assert emu.api_calls() - before == 1
    assert result.api_calls == 1
    assert result.with_work() == []
    assert list(result.objects) == STANDARD
    assert all(p.error is None and p.earliest_date_available is not None for p in result.objects.values())


def test_given_one_update_and_one_delete_when_probed_then_exactly_those_objects_have_work(
    emu: Emulator, client: SalesforceClient, now: dt.datetime
) -> None:
    account_id, task_id = first_id(emu, "Account"), first_id(emu, "Task")
    emu.clock.advance(20)
    emu.org.update("Account", account_id, {"Description": "probe sees me"}, as_api=False)
    emu.org.delete("Task", task_id, as_api=False)
    emu.clock.advance(5)  # the probe runs seconds later, inside the same minute

    result = probe_changes(client, targets(STANDARD, now), now=emu.clock.now())

    assert result.with_work() == ["Account", "Task"]
    account, task = result.objects["Account"], result.objects["Task"]
    assert (account.has_updates, account.updated_ids_count, account.has_deletes) == (True, 1, False)
    assert (task.has_deletes, task.deleted_ids_count, task.has_updates) == (True, 1, False)
    assert result.api_calls == 1


def test_given_a_change_inside_the_overlap_when_probed_later_then_it_is_still_reported(
    emu: Emulator, client: SalesforceClient, now: dt.datetime
) -> None:
    lead_id = first_id(emu, "Lead")
    emu.org.update("Lead", lead_id, {"Title": "late commit"}, as_api=False)
    watermark = now + dt.timedelta(minutes=3)  # the cycle's watermark moved past the change
    emu.clock.advance(240)
    result = probe_changes(client, targets(["Lead"], watermark), now=emu.clock.now())
    assert result.objects["Lead"].has_updates
    quiet = probe_changes(client, targets(["Lead"], watermark + OVERLAP), now=emu.clock.now() + OVERLAP)
    assert not quiet.objects["Lead"].has_work


def test_given_a_watermark_older_than_15_days_then_flagged_without_an_api_call(
    emu: Emulator, client: SalesforceClient, now: dt.datetime
) -> None:
    before = emu.api_calls()
    old = probe_changes(client, targets(["Lead", "Contact"], now - dt.timedelta(days=16)), now=now)
    assert emu.api_calls() == before
    assert old.api_calls == 0
    assert old.with_work() == ["Lead", "Contact"]
    assert all((p.error or "").startswith(WINDOW_TOO_OLD) for p in old.objects.values())

    recent = probe_changes(client, targets(["Lead"], now - dt.timedelta(days=14)), now=now)
    assert recent.objects["Lead"].error is None  # Salesforce (the emulator) accepts a 14-day window


def test_given_no_watermark_then_the_object_has_work_without_an_api_call(
    emu: Emulator, client: SalesforceClient, now: dt.datetime
) -> None:
    before = emu.api_calls()
    result = probe_changes(client, targets(["Lead"], None), now=now)
    assert emu.api_calls() == before
    assert result.objects["Lead"].error == NO_WATERMARK
    assert result.with_work() == ["Lead"]


def test_given_a_failing_subrequest_then_only_that_object_has_work_with_the_error(
    emu: Emulator, client: SalesforceClient, now: dt.datetime
) -> None:
    result = probe_changes(client, targets(["Lead", "NoSuchThing__c", "Contact"], now), now=now)
    assert result.api_calls == 1
    assert result.with_work() == ["NoSuchThing__c"]
    error = result.objects["NoSuchThing__c"].error or ""
    assert "NOT_FOUND" in error or "INVALID_TYPE" in error


def test_given_a_purged_delete_log_then_the_object_needs_a_resync(
    emu: Emulator, client: SalesforceClient, now: dt.datetime
) -> None:
    contact_id = first_id(emu, "Contact")
    emu.clock.advance(60)
    emu.org.delete("Contact", contact_id, as_api=False)
    emu.clock.advance(120)
    emu.org.purge_delete_log()  # the delete log lost everything before now
    emu.clock.advance(60)
    result = probe_changes(client, targets(["Contact"], now), now=emu.clock.now())
    contact = result.objects["Contact"]
    assert contact.needs_resync
    assert contact.has_work
    assert contact.earliest_date_available is not None
    assert contact.window is not None
    assert contact.earliest_date_available > contact.window[0]


def test_given_objects_probed_by_query_then_they_share_the_call_and_see_changes(
    emu: Emulator, client: SalesforceClient, now: dt.datetime
) -> None:
    lead_id = first_id(emu, "Lead")
    emu.clock.advance(30)
    emu.org.update("Lead", lead_id, {"Title": "seen by query"}, as_api=False)
    emu.clock.advance(30)
    queried = targets(["Lead", "Contact"], now, replicateable=False)
    result = probe_changes(client, [*targets(STANDARD[2:], now), *queried], now=emu.clock.now())
    assert result.api_calls == 1
    assert result.with_work() == ["Lead"]
    assert result.objects["Lead"].has_updates


# -- 24 objects: two calls ---------------------------------------------------------------------


def _schema_with_extra_objects() -> Schema:
    base = default_schema()
    template = base.objects["Project__c"]
    extra = [
        dataclasses.replace(template, name=name, key_prefix=f"a{i + 10:02d}", label=name[:-3], cascade_delete=())
        for i, name in enumerate(EXTRA_CUSTOM)
    ]
    return Schema([*base.objects.values(), *extra], base.profile)


@pytest.fixture(scope="module")
def big_emu() -> Iterator[Emulator]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(emulator_module, "default_schema", _schema_with_extra_objects)
        emulator = Emulator.start(seed=7, records=0, clock=frozen_clock())
    try:
        yield emulator
    finally:
        emulator.stop()


def test_given_24_idle_objects_when_probed_then_two_api_calls(big_emu: Emulator) -> None:
    big_emu.clock.advance(3600)
    now = big_emu.clock.now()
    names = [*big_emu.org.schema.objects]
    assert len(names) == 24
    with client_from_secret(salesforce_secret(big_emu)) as sf:
        sf.limits()
        before = big_emu.api_calls()
        result = probe_changes(sf, targets(names, now), now=now)
        assert big_emu.api_calls() - before == 2
        assert result.api_calls == 2
        assert result.with_work() == []

        record_id = big_emu.org.create("Extra07__c", {"Name": "only me"}, as_api=False)
        assert record_id.startswith("a17")
        big_emu.clock.advance(10)
        changed = probe_changes(sf, targets(names, now), now=big_emu.clock.now())
        assert changed.with_work() == ["Extra07__c"]


def test_given_the_dispatcher_gate_then_only_objects_with_work_pass_and_the_rest_say_why(
    emu: Emulator, client: SalesforceClient, now: dt.datetime
) -> None:
    specs = list(build_registry())
    watermarks: dict[str, dt.datetime | None] = {spec.name: now for spec in specs}
    watermarks["User"] = None  # never synced: always passes
    emu.org.update("Opportunity", first_id(emu, "Opportunity"), {"Description": "gate"}, as_api=False)
    seen: list[ProbeResult] = []
    gate = probe_gate(client, watermarks.get, overlap=OVERLAP, now=emu.clock.now(), on_result=seen.append)

    allowed, held = gate(specs)

    assert [spec.name for spec in allowed] == ["User", "Opportunity"]
    assert set(held) == {spec.name for spec in specs} - {"User", "Opportunity"}
    assert all(reason.startswith("probe: no change since") for reason in held.values())
    assert seen[0].api_calls == 1
