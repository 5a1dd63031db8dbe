"""§3 getUpdated / getDeleted over HTTPS against an org with a tiny replication id limit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sfsync_emulator.clock import Clock
from sfsync_emulator.emulator import Emulator
from sfsync_emulator.schema import datetime_to_ms
from sfsync_emulator.store import OrgConfig
from simple_salesforce import SalesforceMalformedRequest

pytestmark = pytest.mark.contract

START = dt.datetime(2026, 11, 24, 12, 0, 0, tzinfo=dt.UTC)
LIMIT = 5


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    """Overrides the suite-wide emulator: an empty org with ``replication_id_limit=5``."""
    config = OrgConfig(replication_id_limit=LIMIT)
    with Emulator.start(seed=5, clock=Clock(datetime_to_ms(START)), config=config) as running:
        yield running


def _campaigns(sf, prefix: str, n: int) -> list[str]:
    return [sf.Campaign.create({"Name": f"{prefix}-{i}"})["id"] for i in range(n)]


def test_given_ids_up_to_the_limit_when_get_updated_then_all_listed(emu, sf):
    start = emu.clock.now() - dt.timedelta(minutes=1)
    ids = _campaigns(sf, "AtLimit", LIMIT)
    emu.clock.advance(120)

    body = sf.Campaign.updated(start, emu.clock.now())

    assert sorted(body["ids"]) == sorted(ids)


def test_given_more_ids_than_the_limit_when_get_updated_then_exceeded_id_limit(emu, sf, raw):
    start = emu.clock.now() - dt.timedelta(minutes=1)
    _campaigns(sf, "OverLimit", LIMIT + 1)
    emu.clock.advance(120)
    end = emu.clock.now()

    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Campaign.updated(start, end)
    assert exc.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"

    fmt = "%Y-%m-%dT%H:%M:%S+00:00"
    resp = raw.get("/sobjects/Campaign/updated/", params={"start": start.strftime(fmt), "end": end.strftime(fmt)})
    assert resp.status_code == 400
    assert resp.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert str(LIMIT) in resp.json()[0]["message"]


def test_given_more_deletes_than_the_limit_when_get_deleted_then_exceeded_id_limit(emu, sf):
    start = emu.clock.now() - dt.timedelta(minutes=1)
    for rid in _campaigns(sf, "Gone", LIMIT + 1):
        sf.Campaign.delete(rid)
    emu.clock.advance(120)

    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Campaign.deleted(start, emu.clock.now())
    assert exc.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
