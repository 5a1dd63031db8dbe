"""Fault injection (design doc "Faults"): every kind, next-N and probability triggers, matching."""

from __future__ import annotations

import time

import pytest
from simple_salesforce import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)

pytestmark = pytest.mark.contract

Q = "SELECT Id FROM Account LIMIT 1"


def test_given_next_one_http_500_on_query_when_two_queries_then_only_first_fails(emu, sf):
    emu.add_fault("http_500", family="query", count=1)
    with pytest.raises(SalesforceGeneralError) as exc:
        sf.query(Q)
    assert exc.value.status == 500
    assert exc.value.content[0]["errorCode"] == "UNKNOWN_EXCEPTION"
    assert sf.query(Q)["done"] is True


def test_given_http_503_on_patch_only_when_get_and_patch_then_only_patch_fails(emu, sf):
    rid = sf.Account.create({"Name": "Fault 503"})["id"]
    emu.add_fault("http_503", family="sobjects", method="PATCH", count=1)
    assert sf.Account.get(rid)["Name"] == "Fault 503"
    with pytest.raises(SalesforceGeneralError) as exc:
        sf.Account.update(rid, {"Name": "X"})
    assert exc.value.status == 503


@pytest.mark.parametrize(
    ("kind", "exc_type", "code"),
    [
        ("invalid_session", SalesforceExpiredSession, "INVALID_SESSION_ID"),
        ("request_limit", SalesforceRefusedRequest, "REQUEST_LIMIT_EXCEEDED"),
        ("query_timeout", SalesforceMalformedRequest, "QUERY_TIMEOUT"),
    ],
)
def test_given_error_fault_when_query_then_client_sees_salesforce_error(emu, sf, kind, exc_type, code):
    emu.add_fault(kind, family="query", count=1)
    with pytest.raises(exc_type) as exc:
        sf.query(Q)
    assert exc.value.content[0]["errorCode"] == code


def test_given_query_timeout_then_message_is_salesforce_text(emu, sf):
    emu.add_fault("query_timeout", family="query", count=1)
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query(Q)
    assert exc.value.content[0]["message"] == "Your query request was running for too long."


def test_given_slow_fault_when_describe_then_delayed(emu, sf):
    emu.add_fault("slow", family="describe", count=1, delay_s=0.4)
    started = time.monotonic()
    sf.Account.describe()
    assert time.monotonic() - started >= 0.4


def test_given_lock_row_fault_when_collection_create_then_first_record_unable_to_lock_row(emu, sf):
    emu.add_fault("lock_row", family="composite", count=1, records=1)
    recs = [{"attributes": {"type": "Account"}, "Name": f"Lock {i}"} for i in range(2)]
    res = sf.restful("composite/sobjects", method="POST", json={"records": recs})
    assert res[0]["success"] is False
    err = res[0]["errors"][0]
    assert err["statusCode"] == "UNABLE_TO_LOCK_ROW"
    assert err["message"].startswith("unable to obtain exclusive access to this record or 1 records:")
    assert res[1]["success"] is True


def test_given_probability_zero_or_other_family_when_query_then_never_fires(emu, sf):
    emu.add_fault("http_500", family="query", probability=0.0)
    emu.add_fault("http_500", family="bulk")
    for _ in range(3):
        assert sf.query(Q)["done"]


def test_given_probability_one_any_family_when_calls_then_always_fires_until_cleared(emu, sf):
    emu.add_fault("http_503", probability=1.0)
    for call in (lambda: sf.query(Q), sf.Account.describe, sf.limits):
        with pytest.raises(SalesforceGeneralError):
            call()
    emu.clear_faults()
    assert sf.query(Q)["done"]


def test_given_bad_fault_spec_then_value_error(emu):
    with pytest.raises(ValueError, match="unknown fault kind"):
        emu.add_fault("meteor")
    with pytest.raises(ValueError, match="unknown endpoint family"):
        emu.add_fault("http_500", family="nope")


def test_given_requests_then_request_log_records_method_path_status_family(emu, sf):
    emu.add_fault("http_500", family="query", count=1)
    with pytest.raises(SalesforceGeneralError):
        sf.query(Q)
    last = emu.request_log()[-1]
    assert last["method"] == "GET"
    assert last["path"] == "/services/data/v59.0/query/"
    assert last["status"] == 500
    assert last["family"] == "query"
    assert isinstance(last["timestamp"], int)
