"""§7 limits: /limits, Sforce-Limit-Info on every response, counting, REQUEST_LIMIT_EXCEEDED."""

from __future__ import annotations

import re

import pytest
from simple_salesforce import SalesforceRefusedRequest

pytestmark = pytest.mark.contract

LIMIT_RE = re.compile(r"^api-usage=(\d+)/(\d+)$")


def test_given_calls_when_limits_then_daily_api_requests_reflect_usage(emu, sf):
    first = sf.limits()["DailyApiRequests"]
    second = sf.limits()["DailyApiRequests"]
    assert first["Max"] == emu.org.config.daily_api_limit
    assert second["Remaining"] == first["Remaining"] - 1
    for name in ("DailyBulkApiBatches", "DailyBulkV2QueryJobs", "DailyBulkV2QueryFileStorageMB"):
        assert set(sf.limits()[name]) == {"Max", "Remaining"}


def test_given_any_response_then_limit_info_header_matches_strict_regex(emu, raw):
    responses = [
        raw.get("/limits/"),
        raw.get("/sobjects/Nope__c/describe"),
        raw.request("PUT", "/limits"),
        emu.session().get(f"{raw.base}/limits", timeout=30),
        emu.session().post(emu.token_url, data={}, timeout=30),
    ]
    assert [r.status_code for r in responses] == [200, 404, 405, 401, 400]
    for r in responses:
        assert LIMIT_RE.match(r.headers["Sforce-Limit-Info"]), r.headers
    assert responses[2].json()[0]["errorCode"] == "METHOD_NOT_ALLOWED"
    assert raw.get("/no/such/thing").json() == [
        {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}
    ]


def test_given_rest_call_then_simple_salesforce_parses_api_usage(emu, sf):
    sf.query("SELECT Id FROM Account LIMIT 1")
    usage = sf.api_usage["api-usage"]
    assert usage.total == emu.org.config.daily_api_limit
    assert usage.used == emu.app.counter.used()


def test_given_families_when_called_then_counted_per_family_and_admin_not_counted(emu, sf, raw):
    q0, d0, total0 = emu.api_calls("query"), emu.api_calls("describe"), emu.api_calls()
    sf.query("SELECT Id FROM Account LIMIT 1")
    sf.Account.describe()
    raw.admin("clock_get")
    assert emu.api_calls("query") == q0 + 1
    assert emu.api_calls("describe") == d0 + 1
    assert emu.api_calls() == total0 + 2


def test_given_allocation_spent_when_calling_then_403_request_limit_exceeded(emu, sf, monkeypatch):
    monkeypatch.setattr(emu.org.config, "daily_api_limit", emu.app.counter.used() + 1)
    sf.query("SELECT Id FROM Account LIMIT 1")  # the last allowed call
    with pytest.raises(SalesforceRefusedRequest) as exc:
        sf.query("SELECT Id FROM Account LIMIT 1")
    assert exc.value.content == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]


def test_given_24h_pass_when_counting_then_rolling_window_forgets_old_calls(emu, sf):
    sf.query("SELECT Id FROM Account LIMIT 1")
    assert emu.app.counter.used() >= 1
    emu.clock.advance(86_401)
    assert emu.app.counter.used() == 0
    sf.query("SELECT Id FROM Account LIMIT 1")
    assert emu.app.counter.used() == 1
