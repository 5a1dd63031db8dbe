"""The Salesforce adapter against the local Salesforce emulator over real HTTPS.

Every test builds its client with ``client_from_secret`` from a secret shaped exactly like the
production one (docs/engine-design.md), with the emulator's CA as ``ca_bundle``, so the TLS,
token, re-auth, retry and error-mapping paths are the ones Lambda runs.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import certifi
import pytest
from sfsync.core.exceptions import (
    BulkJobFailed,
    InvalidQueryLocator,
    ReplicationWindowError,
    SalesforceAuthError,
    SalesforceConfigError,
    SalesforceQueryTimeout,
    SalesforceRateLimited,
    SalesforceRequestError,
    SalesforceUnavailable,
)
from sfsync.salesforce import RetryPolicy, SalesforceClient, clear_token_cache, client_from_secret
from sfsync_emulator.emulator import Emulator

pytestmark = pytest.mark.functional

PAGING_COMPANY = "Adapter Paging Co"
PAGING_LEADS = 450
API = "/services/data/v59.0"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    emulator = Emulator.start(seed=7, records=200)
    try:
        for i in range(PAGING_LEADS):
            values: dict[str, Any] = {
                "LastName": f"Pager {i:04d}",
                "Company": PAGING_COMPANY,
                "Sfsync_Key__c": f"adapter-page-{i:04d}",
            }
            if i % 3 == 0:
                values["Email"] = f"pager{i}@example.com"
            emulator.admin.create("Lead", values)
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(autouse=True)
def _isolated(emu: Emulator) -> Iterator[None]:
    clear_token_cache()
    emu.clear_faults()
    yield
    emu.clear_faults()
    clear_token_cache()


class Sleeps:
    """Injected sleep: records the back-off delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_secret(emu: Emulator, flow: str = "client_credentials") -> dict[str, Any]:
    c = emu.credentials
    assert emu.ca_path is not None
    secret: dict[str, Any] = {
        "auth_flow": flow,
        "token_url": emu.token_url,
        "client_id": c.client_id,
        "api_version": "59.0",
        "ca_bundle": Path(emu.ca_path).read_text(encoding="ascii"),
    }
    if flow in ("client_credentials", "password"):
        secret["client_secret"] = c.client_secret
    if flow in ("password", "jwt_bearer"):
        secret["username"] = c.username
    if flow == "password":
        secret["password"] = c.password
    if flow == "jwt_bearer":
        secret["private_key"] = c.private_key_pem
        secret["audience"] = "https://login.salesforce.com"
    return secret


def make_client(emu: Emulator, sleeps: Sleeps | None = None, attempts: int = 3, **secret: Any) -> SalesforceClient:
    return client_from_secret(
        {**make_secret(emu), **secret},
        retry=RetryPolicy(max_attempts=attempts, base_delay=0.2, max_delay=1.0, rng=random.Random(3)),
        sleep=sleeps or Sleeps(),
    )


def token_requests(emu: Emulator) -> int:
    return sum(1 for e in emu.request_log() if e["path"].rstrip("/").endswith("/services/oauth2/token"))


def paging_soql() -> str:
    return f"SELECT Id, LastName, Email FROM Lead WHERE Company = '{PAGING_COMPANY}' ORDER BY Id"


def lead_ids(emu: Emulator, n: int) -> list[str]:
    with make_client(emu) as client:
        page = next(client.query_pages(f"{paging_soql()} LIMIT {n}", include_deleted=False))
    return [r["Id"] for r in page.records]


# -- auth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("flow", ["client_credentials", "jwt_bearer", "password"])
def test_given_each_auth_flow_when_querying_then_the_org_answers(emu: Emulator, flow: str) -> None:
    before = token_requests(emu)

    with client_from_secret(make_secret(emu, flow)) as client:
        page = next(client.query_pages(f"SELECT Id FROM Lead WHERE Company = '{PAGING_COMPANY}' LIMIT 3"))

    assert len(page.records) == 3
    assert all(r["Id"].startswith("00Q") for r in page.records)
    assert token_requests(emu) == before + 1


def test_given_wrong_client_secret_when_calling_then_auth_error_with_the_token_description(emu: Emulator) -> None:
    with make_client(emu, client_secret="not-the-secret") as client, pytest.raises(SalesforceAuthError) as err:
        client.describe_global()

    assert err.value.error_code == "invalid_client"
    assert "invalid client credentials" in str(err.value)


def test_given_requests_ca_bundle_in_the_environment_when_calling_then_the_secret_ca_still_wins(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    monkeypatch.setenv("CURL_CA_BUNDLE", certifi.where())

    with make_client(emu) as client:
        assert "DailyApiRequests" in client.limits()


def test_given_no_ca_bundle_for_a_private_endpoint_when_calling_then_config_error_names_ca_bundle(
    emu: Emulator,
) -> None:
    secret = make_secret(emu)
    del secret["ca_bundle"]

    with client_from_secret(secret) as client, pytest.raises(SalesforceConfigError, match="ca_bundle"):
        client.limits()


def test_given_a_cached_token_when_a_second_client_is_built_then_no_new_login(emu: Emulator) -> None:
    before = token_requests(emu)

    with make_client(emu) as first:
        first.limits()
    with make_client(emu) as second:
        second.limits()

    assert token_requests(emu) == before + 1


def test_given_tokens_expire_mid_query_when_paging_then_reauth_once_and_every_row_once(emu: Emulator) -> None:
    with make_client(emu) as client:
        pages = client.query_pages(paging_soql(), batch_size=200)
        first = next(pages)
        before = token_requests(emu)
        emu.expire_tokens()
        rest = list(pages)

    ids = [r["Id"] for p in [first, *rest] for r in p.records]
    assert first.total_size == PAGING_LEADS
    assert len(ids) == PAGING_LEADS
    assert len(set(ids)) == PAGING_LEADS
    assert [len(p.records) for p in [first, *rest]] == [200, 200, 50]
    assert client.reauth_count == 1
    assert token_requests(emu) == before + 1
    assert rest[-1].done and rest[-1].next_url is None


def test_given_session_rejected_twice_when_calling_then_auth_error_after_one_reauth(emu: Emulator) -> None:
    emu.add_fault("invalid_session", family="describe", count=2)

    with make_client(emu) as client, pytest.raises(SalesforceAuthError, match="again right after") as err:
        client.describe("Lead")

    assert client.reauth_count == 1
    assert err.value.error_code == "INVALID_SESSION_ID"


def test_given_session_rejected_once_when_calling_then_reauth_and_success(emu: Emulator) -> None:
    emu.add_fault("invalid_session", family="describe", count=1)

    with make_client(emu) as client:
        described = client.describe("Lead")

    assert described["name"] == "Lead"
    assert client.reauth_count == 1


# -- retries and error mapping --------------------------------------------------------------------


def test_given_two_503s_when_querying_then_retried_with_jittered_backoff_and_succeeds(emu: Emulator) -> None:
    emu.add_fault("http_503", family="query", count=2)
    sleeps = Sleeps()

    with make_client(emu, sleeps, attempts=3) as client:
        page = next(client.query_pages(f"{paging_soql()} LIMIT 5"))

    assert len(page.records) == 5
    assert len(sleeps.delays) == 2
    assert 0 <= sleeps.delays[0] <= 0.2
    assert 0 <= sleeps.delays[1] <= 0.4


def test_given_persistent_503_when_calling_then_unavailable_after_bounded_attempts(emu: Emulator) -> None:
    emu.add_fault("http_503", family="describe")
    sleeps = Sleeps()
    before = emu.api_calls("describe")

    with make_client(emu, sleeps, attempts=4) as client, pytest.raises(SalesforceUnavailable) as err:
        client.describe_global()

    assert err.value.status == 503
    assert emu.api_calls("describe") - before == 4
    assert len(sleeps.delays) == 3


def test_given_a_read_timeout_on_a_read_when_calling_then_retried_and_succeeds(emu: Emulator) -> None:
    emu.add_fault("slow", family="describe", count=1, delay_s=0.8)
    sleeps = Sleeps()
    secret = make_secret(emu)
    retry = RetryPolicy(max_attempts=3, base_delay=0.2, rng=random.Random(5))

    with client_from_secret(secret, retry=retry, sleep=sleeps, timeout=(5.0, 0.3)) as client:
        described = client.describe("Lead")

    assert described["name"] == "Lead"
    assert len(sleeps.delays) == 1


def test_given_a_read_timeout_on_a_create_when_calling_then_unavailable_without_retry(emu: Emulator) -> None:
    emu.add_fault("slow", family="composite", method="POST", count=1, delay_s=0.8)
    sleeps = Sleeps()
    before = emu.api_calls("composite")
    record = {"attributes": {"type": "Lead"}, "LastName": "Maybe created", "Company": "Timeout Co"}

    client = client_from_secret(make_secret(emu), sleep=sleeps, timeout=(5.0, 0.3))
    with client, pytest.raises(SalesforceUnavailable, match="outcome unknown"):
        client.collections("POST", [record])

    assert emu.api_calls("composite") - before == 1
    assert sleeps.delays == []


def test_given_a_500_on_a_create_when_calling_then_unavailable_without_retry(emu: Emulator) -> None:
    emu.add_fault("http_500", family="composite", method="POST", count=1)
    sleeps = Sleeps()
    before = emu.api_calls("composite")
    record = {"attributes": {"type": "Lead"}, "LastName": "Five hundred", "Company": "Error Co"}

    with make_client(emu, sleeps) as client, pytest.raises(SalesforceUnavailable) as err:
        client.collections("POST", [record])

    assert err.value.status == 500
    assert err.value.error_code == "UNKNOWN_EXCEPTION"
    assert emu.api_calls("composite") - before == 1
    assert sleeps.delays == []


def test_given_a_503_on_a_create_when_calling_then_retried_and_created_once(emu: Emulator) -> None:
    emu.add_fault("http_503", family="composite", method="POST", count=1)
    sleeps = Sleeps()
    record = {"attributes": {"type": "Lead"}, "LastName": "Retried create", "Company": "Retry Create Co"}

    with make_client(emu, sleeps) as client:
        results = client.collections("POST", [record])
        page = next(client.query_pages("SELECT Id FROM Lead WHERE Company = 'Retry Create Co'"))

    assert [r["success"] for r in results] == [True]
    assert [r["Id"] for r in page.records] == [results[0]["id"]]
    assert len(sleeps.delays) == 1


def test_given_request_limit_exceeded_when_calling_then_rate_limited_without_retry(emu: Emulator) -> None:
    emu.add_fault("request_limit", family="query", count=1)
    before = emu.api_calls("query")

    with make_client(emu) as client, pytest.raises(SalesforceRateLimited) as err:
        next(client.query_pages(f"{paging_soql()} LIMIT 1"))

    assert err.value.error_code == "REQUEST_LIMIT_EXCEEDED"
    assert err.value.status == 403
    assert emu.api_calls("query") - before == 1


def test_given_query_timeout_when_querying_then_query_timeout_error(emu: Emulator) -> None:
    emu.add_fault("query_timeout", family="query", count=1)

    with make_client(emu) as client, pytest.raises(SalesforceQueryTimeout) as err:
        next(client.query_pages(paging_soql()))

    assert err.value.error_code == "QUERY_TIMEOUT"


def test_given_unknown_locator_when_querying_more_then_invalid_query_locator(emu: Emulator) -> None:
    with make_client(emu) as client, pytest.raises(InvalidQueryLocator) as err:
        client.query_more(f"{API}/query/01gXXXXXXXXXXXXXXX-2000")

    assert err.value.error_code == "INVALID_QUERY_LOCATOR"


def test_given_bad_field_when_querying_then_request_error_with_code_and_message(emu: Emulator) -> None:
    with make_client(emu) as client, pytest.raises(SalesforceRequestError) as err:
        next(client.query_pages("SELECT Bacon__c FROM Lead"))

    assert err.value.error_code == "INVALID_FIELD"
    assert "Bacon__c" in err.value.message
    assert err.value.status == 400


# -- queries --------------------------------------------------------------------------------------


def test_given_batch_size_when_paging_then_every_row_once_and_matches_one_big_page(emu: Emulator) -> None:
    with make_client(emu) as client:
        small = list(client.query_pages(paging_soql(), batch_size=200))
        big = list(client.query_pages(paging_soql(), batch_size=2000))

    small_ids = [r["Id"] for p in small for r in p.records]
    assert len(small) == 3
    assert len(big) == 1
    assert small_ids == [r["Id"] for r in big[0].records]
    assert len(set(small_ids)) == PAGING_LEADS
    assert all(not p.done for p in small[:-1])


def test_given_page_url_when_query_more_is_called_directly_then_the_next_page_comes(emu: Emulator) -> None:
    with make_client(emu) as client:
        first = next(client.query_pages(paging_soql(), batch_size=200))
        assert first.next_url is not None
        second = client.query_more(first.next_url)

    assert {r["Id"] for r in first.records}.isdisjoint(r["Id"] for r in second.records)
    assert len(second.records) == 200


def test_given_batch_size_out_of_range_when_paging_then_value_error_before_any_call(emu: Emulator) -> None:
    with make_client(emu) as client, pytest.raises(ValueError, match="batch_size"):
        client.query_pages(paging_soql(), batch_size=100)

    assert client.calls_made == 0


def test_given_a_deleted_lead_when_query_all_then_it_is_returned_with_is_deleted(emu: Emulator) -> None:
    lead = emu.admin.create("Lead", {"LastName": "Gone", "Company": "Deleted Co"})
    emu.admin.delete("Lead", lead)
    soql = f"SELECT Id, IsDeleted FROM Lead WHERE Id = '{lead}'"

    with make_client(emu) as client:
        with_deleted = next(client.query_pages(soql)).records
        without = next(client.query_pages(soql, include_deleted=False)).records

    assert [r["IsDeleted"] for r in with_deleted] == [True]
    assert without == []


# -- replication ---------------------------------------------------------------------------------


def test_given_changes_when_get_updated_and_get_deleted_then_ids_are_reported(emu: Emulator) -> None:
    start = emu.clock.now() - dt.timedelta(minutes=5)
    updated_id = emu.admin.create("Lead", {"LastName": "Replicated", "Company": "Repl Co"})
    deleted_id = emu.admin.create("Lead", {"LastName": "Replicated gone", "Company": "Repl Co"})
    emu.admin.delete("Lead", deleted_id)
    emu.clock.advance(180)
    end = emu.clock.now()

    with make_client(emu) as client:
        updated = client.get_updated("Lead", start, end)
        deleted = client.get_deleted("Lead", start, end)

    assert updated_id in updated["ids"]
    assert "latestDateCovered" in updated
    assert deleted_id in [d["id"] for d in deleted["deletedRecords"]]
    assert "earliestDateAvailable" in deleted


def test_given_reversed_window_when_get_updated_then_replication_window_error(emu: Emulator) -> None:
    end = emu.clock.now() - dt.timedelta(hours=2)

    with make_client(emu) as client, pytest.raises(ReplicationWindowError) as err:
        client.get_updated("Lead", end, end - dt.timedelta(hours=1))

    assert err.value.error_code == "INVALID_REPLICATION_DATE"


def test_given_naive_datetimes_when_get_updated_then_value_error_before_any_call(emu: Emulator) -> None:
    naive = dt.datetime(2026, 11, 24, 12, 0)

    with make_client(emu) as client:
        with pytest.raises(ValueError, match="timezone-aware"):
            client.get_updated("Lead", naive, naive + dt.timedelta(hours=1))
        with pytest.raises(ValueError, match="timezone-aware"):
            client.get_deleted("Lead", dt.datetime.now(dt.UTC), naive)

    assert client.calls_made == 0


# -- composite and collections -------------------------------------------------------------------


def test_given_25_subrequests_when_composite_then_one_api_call(emu: Emulator) -> None:
    ids = lead_ids(emu, 25)
    subrequests = [
        {"method": "GET", "url": f"{API}/sobjects/Lead/{lead_id}?fields=Id,LastName", "referenceId": f"r{i}"}
        for i, lead_id in enumerate(ids)
    ]
    with make_client(emu) as client:
        client.limits()  # authenticate first: the token endpoint is not an API call anyway
        calls_before, emu_before = client.calls_made, emu.api_calls()
        responses = client.composite(subrequests)

        assert emu.api_calls() - emu_before == 1
        assert client.calls_made - calls_before == 1
    assert [r["referenceId"] for r in responses] == [f"r{i}" for i in range(25)]
    assert all(r["httpStatusCode"] == 200 for r in responses)
    assert [r["body"]["Id"] for r in responses] == ids


@pytest.mark.parametrize(
    ("subrequests", "message"),
    [
        ([{"method": "GET", "url": f"{API}/limits", "referenceId": f"r{i}"} for i in range(26)], "at most 25"),
        (
            [{"method": "GET", "url": f"{API}/query?q=SELECT+Id+FROM+Lead", "referenceId": f"q{i}"} for i in range(6)],
            "at most 5",
        ),
        ([{"method": "GET", "url": f"{API}/limits"}], "referenceId"),
        ([], "at least one"),
    ],
)
def test_given_invalid_composite_when_called_then_value_error_and_no_call(
    emu: Emulator, subrequests: list[dict[str, Any]], message: str
) -> None:
    with make_client(emu) as client, pytest.raises(ValueError, match=message):
        client.composite(subrequests)

    assert client.calls_made == 0


def test_given_two_leads_when_collections_update_then_saved_in_order_and_visible(emu: Emulator) -> None:
    ids = lead_ids(emu, 2)
    records = [
        {"attributes": {"type": "Lead"}, "id": lead_id, "Title": f"Adapter title {i}"} for i, lead_id in enumerate(ids)
    ]

    with make_client(emu) as client:
        results = client.collections("PATCH", records)
        fetched = client.retrieve("Lead", [*ids, "00Q000000000000AAA"], ["Id", "Title"])

    assert [r["success"] for r in results] == [True, True]
    assert [r["id"] for r in results] == ids
    assert [f["Title"] if f else None for f in fetched[:2]] == ["Adapter title 0", "Adapter title 1"]
    assert fetched[2] is None
    assert emu.admin.get("Lead", ids[1])["Title"] == "Adapter title 1"


def test_given_external_ids_when_upsert_collection_then_created_then_updated(emu: Emulator) -> None:
    records = [{"Sfsync_Key__c": "adapter-upsert-1", "LastName": "Upserted", "Company": "Upsert Co"}]

    with make_client(emu) as client:
        created = client.upsert_collection("Lead", "Sfsync_Key__c", records)
        updated = client.upsert_collection("Lead", "Sfsync_Key__c", [{**records[0], "LastName": "Upserted again"}])

    assert created[0]["success"] and created[0]["created"] is True
    assert updated[0]["success"] and updated[0]["created"] is False
    assert updated[0]["id"] == created[0]["id"]
    assert emu.admin.get("Lead", created[0]["id"])["LastName"] == "Upserted again"


def test_given_records_without_type_when_collections_then_value_error(emu: Emulator) -> None:
    with make_client(emu) as client, pytest.raises(ValueError, match=r"attributes\.type"):
        client.collections("POST", [{"LastName": "x"}])
    with make_client(emu) as client, pytest.raises(ValueError, match="at most 200"):
        client.collections("POST", [{"attributes": {"type": "Lead"}}] * 201)


# -- limits and usage ----------------------------------------------------------------------------


def test_given_calls_when_usage_read_then_it_follows_the_limit_header(emu: Emulator) -> None:
    with make_client(emu) as client:
        assert client.api_usage() is None
        limits = client.limits()
        used, allowed = client.api_usage() or (-1, -1)

    assert allowed == limits["DailyApiRequests"]["Max"]
    assert used == emu.app.counter.used()
    assert client.calls_made == 1


def test_given_a_response_when_server_time_read_then_it_is_the_aware_date_of_the_org(emu: Emulator) -> None:
    with make_client(emu) as client:
        assert client.server_time() is None
        client.limits()
        server_time = client.server_time()

    assert server_time is not None
    assert server_time.utcoffset() == dt.timedelta(0)
    real_now, org_now = dt.datetime.now(dt.UTC), emu.clock.now()
    slack = dt.timedelta(seconds=5)
    assert min(real_now, org_now) - slack <= server_time <= max(real_now, org_now) + slack


# -- describe with If-Modified-Since --------------------------------------------------------------


def describe_statuses(emu: Emulator, obj: str, since_entry: int) -> list[int]:
    """HTTP statuses of the describe requests for ``obj`` logged after entry ``since_entry``."""
    path = f"{API}/sobjects/{obj}/describe"
    return [e["status"] for e in emu.request_log()[since_entry:] if e["path"].rstrip("/") == path]


@contextmanager
def frozen_clock(emu: Emulator) -> Iterator[None]:
    """Hold the (module-shared, running) emulator clock still, then let it run on."""
    emu.clock.freeze()
    try:
        yield
    finally:
        emu.clock.run()


@contextmanager
def hidden_field(emu: Emulator, obj: str, name: str) -> Iterator[None]:
    emu.org.hide_field(obj, name)
    try:
        yield
    finally:
        emu.org.show_field(obj, name)


def field_names(describe: dict[str, Any] | None) -> set[str]:
    assert describe is not None, "expected a describe body, got 304 Not Modified"
    return {f["name"] for f in describe["fields"]}


def test_given_no_metadata_change_when_describe_if_modified_then_none_and_the_304_is_a_counted_call(
    emu: Emulator,
) -> None:
    emu.clock.advance(2)  # after any metadata change an earlier test made
    since = emu.clock.now()
    emu.clock.advance(2)
    entry, api_before = len(emu.request_log()), emu.api_calls("describe")

    with make_client(emu) as client:
        answer = client.describe_if_modified("Lead", since)

    assert answer is None
    assert describe_statuses(emu, "Lead", entry) == [304]
    assert client.calls_made == 1
    assert emu.api_calls("describe") == api_before + 1
    [request] = [e for e in emu.request_log()[entry:] if e["path"].endswith("/describe")]
    assert request["method"] == "GET"


def test_given_a_field_hidden_then_shown_when_describe_if_modified_then_each_change_returns_the_new_describe(
    emu: Emulator,
) -> None:
    with make_client(emu) as client:
        emu.clock.advance(2)
        before_hide = emu.clock.now()
        emu.clock.advance(2)
        with hidden_field(emu, "Lead", "Title"):
            hidden = client.describe_if_modified("Lead", before_hide)
            emu.clock.advance(2)
            before_show = emu.clock.now()
            emu.clock.advance(2)
        shown = client.describe_if_modified("Lead", before_show)
        emu.clock.advance(2)
        unchanged = client.describe_if_modified("Lead", emu.clock.now())

    assert "Title" not in field_names(hidden)
    assert {"Id", "LastName", "SystemModstamp"} <= field_names(hidden)
    assert "Title" in field_names(shown)
    assert hidden is not None and hidden["name"] == "Lead"
    assert unchanged is None


def test_given_a_change_later_in_the_same_second_as_since_when_describe_if_modified_then_it_is_not_missed(
    emu: Emulator,
) -> None:
    with make_client(emu) as client, frozen_clock(emu):
        second = emu.clock.now_ms() // 1000 + 2
        emu.clock.set(second * 1000 + 100)
        since = emu.clock.now()  # S.100: the header can only say S
        emu.clock.advance(0.5)
        with hidden_field(emu, "Lead", "Title"):  # changed at S.600
            answer = client.describe_if_modified("Lead", since)

    assert "Title" not in field_names(answer)


def test_given_session_rejected_once_when_describe_if_modified_then_reauth_and_the_answer_comes(
    emu: Emulator,
) -> None:
    emu.clock.advance(2)
    since = emu.clock.now()
    emu.add_fault("invalid_session", family="describe", count=1)

    with make_client(emu) as client:
        answer = client.describe_if_modified("Lead", since)

    assert answer is None
    assert client.reauth_count == 1


def test_given_persistent_503_when_describe_if_modified_then_unavailable_after_bounded_attempts(
    emu: Emulator,
) -> None:
    emu.add_fault("http_503", family="describe")
    sleeps = Sleeps()

    with make_client(emu, sleeps, attempts=3) as client, pytest.raises(SalesforceUnavailable):
        client.describe_if_modified("Lead", emu.clock.now())

    assert len(sleeps.delays) == 2


def test_given_an_unknown_object_when_describe_if_modified_then_request_error_not_none(emu: Emulator) -> None:
    with make_client(emu) as client, pytest.raises(SalesforceRequestError) as err:
        client.describe_if_modified("NoSuchThing__c", emu.clock.now())

    assert err.value.status == 404


def test_given_a_naive_since_or_a_bad_name_when_describe_if_modified_then_value_error_before_any_call(
    emu: Emulator,
) -> None:
    with make_client(emu) as client:
        with pytest.raises(ValueError, match="timezone-aware"):
            client.describe_if_modified("Lead", dt.datetime(2026, 11, 24, 12, 0))
        with pytest.raises(ValueError, match="invalid object name"):
            client.describe_if_modified("Lead/../limits", emu.clock.now())

    assert client.calls_made == 0


def test_given_the_engine_describe_cache_over_the_adapter_then_one_full_describe_and_304s_until_a_change(
    emu: Emulator,
) -> None:
    from sfsync.inbound.fields import DescribeCache

    cache = DescribeCache()
    emu.clock.advance(600)  # earlier tests changed Lead's fields: let that fall outside the cache's clock margin
    entry = len(emu.request_log())
    with make_client(emu) as client:
        first = cache.describe(client, "Lead", now=emu.clock.now())
        for _ in range(2):
            emu.clock.advance(300)
            again = cache.describe(client, "Lead", now=emu.clock.now())
            assert again == first
        emu.clock.advance(300)
        with hidden_field(emu, "Lead", "Title"):
            changed = cache.describe(client, "Lead", now=emu.clock.now())

    assert "Title" in field_names(first)
    assert "Title" not in field_names(changed)
    assert describe_statuses(emu, "Lead", entry) == [200, 304, 304, 200]


# -- Bulk API 2.0 --------------------------------------------------------------------------------


def test_given_bulk_query_when_results_paged_then_rows_stream_with_locators(emu: Emulator) -> None:
    soql = f"SELECT Id, LastName, Email FROM Lead WHERE Company = '{PAGING_COMPANY}'"
    with make_client(emu) as client:
        job = client.bulk_query_create(soql)
        status = client.bulk_job_status(job["id"])
        pages = []
        rows: list[dict[str, str | None]] = []
        for page in client.bulk_results_pages(job["id"], max_records=200):
            page_rows = list(page.rows)
            assert len(page_rows) == page.number_of_records
            rows.extend(page_rows)
            pages.append(page)
            if len(pages) == 1:
                emu.expire_tokens()  # the next result set is fetched with a fresh token

    assert status["state"] == "JobComplete"
    assert [p.number_of_records for p in pages] == [200, 200, 50]
    assert pages[-1].locator is None and all(p.locator for p in pages[:-1])
    assert len({r["Id"] for r in rows}) == PAGING_LEADS
    assert client.reauth_count == 1
    emails = [r["Email"] for r in rows]
    assert None in emails and any(e and e.endswith("@example.com") for e in emails)
    assert "" not in emails


def test_given_a_locator_when_resuming_bulk_results_then_only_the_rest_comes(emu: Emulator) -> None:
    soql = f"SELECT Id FROM Lead WHERE Company = '{PAGING_COMPANY}'"
    with make_client(emu) as client:
        job = client.bulk_query_create(soql, operation="query")
        client.bulk_job_status(job["id"])
        first = next(client.bulk_results_pages(job["id"], max_records=300))
        first_ids = [r["Id"] for r in first.rows]
        rest = [
            r["Id"]
            for p in client.bulk_results_pages(job["id"], max_records=300, locator=first.locator)
            for r in p.rows
        ]

    assert len(first_ids) == 300
    assert len(rest) == PAGING_LEADS - 300
    assert set(first_ids).isdisjoint(rest)


def test_given_a_failing_bulk_job_when_polled_then_bulk_job_failed(emu: Emulator) -> None:
    emu.add_fault("bulk_job_failed", family="bulk", method="POST", count=1, message="emulated failure")

    with make_client(emu) as client, pytest.raises(BulkJobFailed, match="emulated failure") as err:
        job = client.bulk_query_create("SELECT Id FROM Lead")
        client.bulk_job_status(job["id"])

    assert err.value.job["state"] == "Failed"


def test_given_unread_rows_when_advancing_to_the_next_result_set_then_reading_them_fails_loudly(
    emu: Emulator,
) -> None:
    soql = f"SELECT Id FROM Lead WHERE Company = '{PAGING_COMPANY}'"
    with make_client(emu) as client:
        job = client.bulk_query_create(soql)
        pages = client.bulk_results_pages(job["id"], max_records=200)
        first = next(pages)
        second = next(pages)
        second_ids = [r["Id"] for r in second.rows]

        with pytest.raises(RuntimeError, match=r"consume page\.rows before advancing"):
            next(first.rows)
    assert len(second_ids) == 200


def test_given_multiline_quoted_unicode_values_when_bulk_results_streamed_then_they_round_trip(
    emu: Emulator,
) -> None:
    description = 'line one\nline two, with "quotes" and a comma\r\nünïcødé € 🚀'
    lead = emu.admin.create("Lead", {"LastName": 'Tricky, "CSV"', "Company": "CSV Co", "Description": description})
    soql = f"SELECT Id, LastName, Description, Title FROM Lead WHERE Id = '{lead}'"

    with make_client(emu) as client:
        job = client.bulk_query_create(soql)
        page = next(client.bulk_results_pages(job["id"]))
        (row,) = list(page.rows)

    assert page.locator is None
    assert row == {"Id": lead, "LastName": 'Tricky, "CSV"', "Description": description, "Title": None}


def test_given_a_result_set_when_read_as_columns_then_each_line_holds_the_rows_texts_in_header_order(
    emu: Emulator,
) -> None:
    description = 'line one\nline two, with "quotes"\r\nünïcødé € 🚀'
    lead = emu.admin.create("Lead", {"LastName": 'Cols, "CSV"', "Company": "Columns Co", "Description": description})
    soql = "SELECT Id, LastName, Description, Title, Email FROM Lead WHERE Company IN ('Columns Co', '{}')"
    with make_client(emu) as client:
        job = client.bulk_query_create(soql.format(PAGING_COMPANY))
        client.bulk_job_status(job["id"])
        rows = [r for p in client.bulk_results_pages(job["id"], max_records=200) for r in p.rows]
        lines: list[dict[str, str | None]] = []
        for page in client.bulk_results_pages(job["id"], max_records=200):
            header, page_lines = page.columns()
            lines.extend({n: (t or None) for n, t in zip(header, line, strict=True)} for line in page_lines)

    assert header == ("Id", "LastName", "Description", "Title", "Email")
    assert lines == rows and len(rows) == PAGING_LEADS + 1
    assert next(r for r in lines if r["Id"] == lead)["Description"] == description


def test_given_a_result_set_read_one_way_when_read_the_other_way_or_after_moving_on_then_it_fails_loudly(
    emu: Emulator,
) -> None:
    soql = f"SELECT Id FROM Lead WHERE Company = '{PAGING_COMPANY}'"
    with make_client(emu) as client:
        job = client.bulk_query_create(soql)
        pages = client.bulk_results_pages(job["id"], max_records=200)
        first = next(pages)
        _header, first_lines = first.columns()
        next(first_lines)
        with pytest.raises(RuntimeError, match="already being read"):
            next(first.rows)
        second = next(pages)
        with pytest.raises(RuntimeError, match=r"consume page\.rows before advancing"):
            next(first_lines)
        second_rows = list(second.rows)
        with pytest.raises(RuntimeError, match="already being read"):
            second.columns()
    assert len(second_rows) == 200
