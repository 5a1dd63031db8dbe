"""The ``bulk_query_refused`` fault: Bulk 2.0 query job creations answer HTTP 400 (spec §5.2, §13.5)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sfsync_emulator.emulator import Emulator
from sfsync_emulator.faults import BULK_REFUSED_MESSAGE, FaultRule
from simple_salesforce import SalesforceMalformedRequest

pytestmark = pytest.mark.unit

REFUSAL = [{"message": "Selecting compound data not supported in Bulk Query", "errorCode": "API_ERROR"}]


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator.start(seed=11, records=100) as running:
        yield running


@pytest.fixture(autouse=True)
def _no_faults_left(emu: Emulator) -> Iterator[None]:
    yield
    emu.clear_faults()


class Raw:
    """The raw requests session over the emulator's HTTPS, with a bearer token."""

    def __init__(self, emu: Emulator) -> None:
        self.session = emu.session()
        self.base = f"{emu.instance_url}/services/data/v{emu.api_version}"
        self.token = emu.access_token()

    def call(self, method: str, path: str, *, accept: str = "application/json", **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": accept}
        return self.session.request(method, f"{self.base}{path}", headers=headers, timeout=30, **kwargs)

    def create_query_job(self, soql: str) -> requests.Response:
        return self.call("POST", "/jobs/query", json={"operation": "queryAll", "query": soql})

    def query_job_ids(self) -> set[str]:
        listing = self.call("GET", "/jobs/query").json()
        return {str(job["id"]) for job in listing["records"]}


@pytest.fixture
def raw(emu: Emulator) -> Iterator[Raw]:
    client = Raw(emu)
    yield client
    client.session.close()


def test_given_a_refusal_for_one_creation_when_a_query_job_is_created_then_400_and_the_next_one_succeeds(
    emu: Emulator, raw: Raw
) -> None:
    emu.add_fault("bulk_query_refused", family="bulk", method="POST", count=1)
    jobs_before = raw.query_job_ids()

    refused = raw.create_query_job("SELECT Id, Name FROM Account")

    assert refused.status_code == 400
    assert refused.headers["Content-Type"].startswith("application/json")
    assert refused.json() == REFUSAL
    assert raw.query_job_ids() == jobs_before, "a refused creation makes no job"
    accepted = raw.create_query_job("SELECT Id, Name FROM Account")
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["object"] == "Account"
    assert emu.app.faults.rules() == [], "the rule retired after its one refusal"


def test_given_a_refusal_when_simple_salesforce_bulk2_queries_then_it_raises_the_400_error_body(
    emu: Emulator,
) -> None:
    bulk2: Any = emu.salesforce().bulk2  # typed loosely by simple-salesforce
    emu.add_fault("bulk_query_refused", family="bulk", count=1)

    with pytest.raises(SalesforceMalformedRequest) as caught:
        list(bulk2.Contact.query("SELECT Id FROM Contact", wait=0))

    assert caught.value.status == 400
    assert caught.value.content == REFUSAL
    rows = [row for chunk in bulk2.Contact.query("SELECT Id FROM Contact", wait=0) for row in chunk.splitlines()]
    assert rows[0].strip('"') == "Id", "the next job is created and answers"


def test_given_a_refusal_for_one_object_then_other_objects_pass_and_do_not_use_the_count(
    emu: Emulator, raw: Raw
) -> None:
    emu.add_fault("bulk_query_refused", family="bulk", method="POST", count=1, object_name="lead")

    other = raw.create_query_job("SELECT Id FROM Account")
    refused = raw.create_query_job("SELECT Id, LastName FROM Lead")
    again = raw.create_query_job("SELECT Id, LastName FROM Lead")

    assert other.status_code == 200, other.text
    assert refused.status_code == 400
    assert refused.json() == REFUSAL
    assert again.status_code == 200, "the one refusal was used by the Lead job, not the Account job"


def test_given_a_refusal_on_every_creation_then_other_bulk_endpoints_are_unaffected(emu: Emulator, raw: Raw) -> None:
    job = raw.create_query_job("SELECT Id FROM Account").json()
    emu.add_fault("bulk_query_refused", family="bulk", message="Entity 'Account' is not supported by the Bulk API.")

    status = raw.call("GET", f"/jobs/query/{job['id']}")
    results = raw.call("GET", f"/jobs/query/{job['id']}/results", accept="text/csv")
    ingest = raw.call("POST", "/jobs/ingest", json={"object": "Account", "operation": "insert"})
    listing = raw.call("GET", "/jobs/query")
    first = raw.create_query_job("SELECT Id FROM Account")
    second = raw.create_query_job("SELECT Id FROM Contact")

    assert status.status_code == 200 and status.json()["state"] == "JobComplete"
    assert results.status_code == 200 and results.text.startswith('"Id"')
    assert ingest.status_code == 200, ingest.text
    assert listing.status_code == 200
    for refused in (first, second):
        assert refused.status_code == 400
        assert refused.json() == [
            {"message": "Entity 'Account' is not supported by the Bulk API.", "errorCode": "API_ERROR"}
        ]
    assert len(emu.app.faults.rules()) == 1, "a rule without count stays active"


def test_given_a_malformed_query_with_a_refusal_then_the_query_error_wins_and_the_refusal_is_kept(
    emu: Emulator, raw: Raw
) -> None:
    emu.add_fault("bulk_query_refused", family="bulk", count=1)

    malformed = raw.create_query_job("SELECT Nope__c FROM Account")
    refused = raw.create_query_job("SELECT Id FROM Account")

    assert malformed.status_code == 400
    assert malformed.json()[0]["errorCode"] == "INVALID_FIELD"
    assert refused.json() == REFUSAL


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"kind": "bulk_query_refused", "family": "query"}, "'bulk' family only"),
        ({"kind": "bulk_query_refused", "method": "get"}, "POST"),
        ({"kind": "bulk_query_refused", "object_name": " "}, "non-empty"),
        ({"kind": "bulk_job_failed", "object_name": "Lead"}, "bulk_query_refused rules only"),
    ],
)
def test_given_a_misconfigured_refusal_rule_then_it_is_rejected(options: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        FaultRule(**options).validate()


def test_given_a_refusal_rule_then_it_validates_and_defaults_to_the_compound_data_message() -> None:
    rule = FaultRule(kind="bulk_query_refused", family="any", method="post", object_name="Lead")
    rule.validate()
    assert rule.method == "POST"
    assert rule.refuses("LEAD") and not rule.refuses("Account")
    assert rule.refusal_error().body() == [{"message": BULK_REFUSED_MESSAGE, "errorCode": "API_ERROR"}]
    assert rule.error() is None, "applied by the Bulk handler, not before it"
