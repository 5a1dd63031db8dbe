"""§3 getUpdated / getDeleted through ``SFType.updated`` / ``deleted`` and raw URLs."""

from __future__ import annotations

import datetime as dt

import pytest
from simple_salesforce import SalesforceMalformedRequest

pytestmark = pytest.mark.contract


def _now(emu):
    return emu.clock.now()


def test_given_updated_record_when_get_updated_then_id_listed_with_latest_date_covered(emu, sf):
    start = _now(emu) - dt.timedelta(minutes=5)
    rid = sf.Campaign.create({"Name": "Repl Campaign"})["id"]
    emu.clock.advance(120)
    end = _now(emu)
    body = sf.Campaign.updated(start, end)
    assert rid in body["ids"]
    assert body["latestDateCovered"].endswith(":00.000+0000")


def test_given_deleted_record_when_get_deleted_then_listed_with_deleted_date(emu, sf):
    start = _now(emu) - dt.timedelta(minutes=5)
    rid = sf.Campaign.create({"Name": "Repl Gone"})["id"]
    sf.Campaign.delete(rid)
    emu.clock.advance(120)
    body = sf.Campaign.deleted(start, _now(emu))
    entry = next(d for d in body["deletedRecords"] if d["id"] == rid)
    assert entry["deletedDate"].endswith("+0000")
    assert {"earliestDateAvailable", "latestDateCovered"} <= set(body)
    assert rid not in sf.Campaign.updated(start, _now(emu))["ids"]


def test_given_other_offsets_and_no_trailing_slash_when_raw_then_parsed_as_instants(emu, raw):
    end = _now(emu).astimezone(dt.timezone(dt.timedelta(hours=2)))
    start = end - dt.timedelta(hours=1)
    params = {"start": start.isoformat(timespec="seconds"), "end": end.isoformat(timespec="seconds")}
    for path in ("/sobjects/Campaign/updated", "/sobjects/Campaign/updated/"):
        resp = raw.get(path, params=params)
        assert resp.status_code == 200, resp.text
        assert "ids" in resp.json()


def test_given_reversed_window_when_get_updated_then_invalid_replication_date(emu, sf):
    now = _now(emu)
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Campaign.updated(now, now - dt.timedelta(hours=1))
    assert exc.value.content[0]["errorCode"] == "INVALID_REPLICATION_DATE"


def test_given_missing_or_garbled_dates_when_raw_then_400_array(raw):
    missing = raw.get("/sobjects/Campaign/updated/")
    assert missing.status_code == 400 and missing.json()[0]["errorCode"] == "MISSING_ARGUMENT"
    garbled = raw.get("/sobjects/Campaign/deleted/", params={"start": "yesterday", "end": "today"})
    assert garbled.status_code == 400 and garbled.json()[0]["errorCode"] == "INVALID_REPLICATION_DATE"
