"""§6 sObject Collections and §6.9 Composite, through ``sf.restful``."""

from __future__ import annotations

import pytest
from simple_salesforce import SalesforceMalformedRequest

pytestmark = pytest.mark.contract


def _lead(name, **extra):
    return {"attributes": {"type": "Lead"}, "LastName": name, "Company": "Coll Inc", **extra}


def test_given_three_records_when_collection_create_then_save_results_in_order(sf):
    records = [_lead("C1"), {"attributes": {"type": "Lead"}, "LastName": "NoCompany"}, _lead("C3")]
    res = sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": records})
    assert [r["success"] for r in res] == [True, False, True]
    assert res[0]["id"].startswith("00Q") and res[0]["errors"] == []
    assert res[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert set(res[1]["errors"][0]) == {"statusCode", "message", "fields"}


def test_given_all_or_none_and_one_bad_record_when_create_then_nothing_saved_and_rolled_back(sf):
    records = [_lead("AON-1"), {"attributes": {"type": "Lead"}, "LastName": "AON-2"}, _lead("AON-3")]
    res = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": records})
    assert [r["success"] for r in res] == [False, False, False]
    assert res[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert res[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert res[2]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert sf.query("SELECT Id FROM Lead WHERE LastName LIKE 'AON-%'")["totalSize"] == 0


def test_given_records_when_collection_update_and_delete_then_results_per_record(sf):
    ids = [
        r["id"] for r in sf.restful("composite/sobjects", method="POST", json={"records": [_lead("U1"), _lead("U2")]})
    ]
    upd = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={
            "records": [
                {"attributes": {"type": "Lead"}, "id": ids[0], "Title": "CEO"},
                {"attributes": {"type": "Lead"}, "id": "00Q000000000000AAA", "Title": "CTO"},
            ]
        },
    )
    assert upd[0] == {"id": ids[0], "success": True, "errors": []}
    assert upd[1]["success"] is False
    assert sf.Lead.get(ids[0])["Title"] == "CEO"
    dele = sf.restful("composite/sobjects", method="DELETE", params={"ids": ",".join(ids), "allOrNone": "false"})
    assert [d["success"] for d in dele] == [True, True]


def test_given_external_ids_when_collection_upsert_then_created_flags(sf):
    body = {
        "allOrNone": False,
        "records": [
            {"attributes": {"type": "Lead"}, "Sfsync_Key__c": "K-1", "LastName": "Up1", "Company": "X"},
            {"attributes": {"type": "Lead"}, "Sfsync_Key__c": "K-2", "LastName": "Up2", "Company": "X"},
        ],
    }
    first = sf.restful("composite/sobjects/Lead/Sfsync_Key__c", method="PATCH", json=body)
    assert [r["created"] for r in first] == [True, True]
    again = sf.restful("composite/sobjects/Lead/Sfsync_Key__c", method="PATCH", json=body)
    assert [r["created"] for r in again] == [False, False]
    assert [r["id"] for r in again] == [r["id"] for r in first]


def test_given_ids_when_collection_retrieve_get_and_post_then_nulls_for_unknown(sf):
    rid = sf.restful("composite/sobjects", method="POST", json={"records": [_lead("R1")]})[0]["id"]
    missing = "00Q000000000000AAA"
    got = sf.restful("composite/sobjects/Lead", method="GET", params={"ids": f"{rid},{missing}", "fields": "LastName"})
    assert got[0]["LastName"] == "R1" and got[0]["attributes"]["type"] == "Lead"
    assert got[1] is None
    posted = sf.restful(
        "composite/sobjects/Lead", method="POST", json={"ids": [missing, rid], "fields": ["Id", "Company"]}
    )
    assert posted[0] is None and posted[1]["Id"] == rid and posted[1]["Company"] == "Coll Inc"


def test_given_201_records_when_collection_create_then_exceeded_id_limit(sf):
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.restful("composite/sobjects", method="POST", json={"records": [_lead(f"X{i}") for i in range(201)]})
    assert exc.value.content == [
        {
            "message": "record limit reached. cannot submit more than 200 records into this call",
            "errorCode": "EXCEEDED_ID_LIMIT",
        }
    ]


def test_given_collection_call_when_counting_then_one_api_call(emu, sf):
    before = emu.api_calls()
    sf.restful("composite/sobjects", method="POST", json={"records": [_lead(f"N{i}") for i in range(5)]})
    assert emu.api_calls() - before == 1


def test_given_composite_with_references_when_posted_then_one_call_and_chained_results(emu, sf):
    before = emu.api_calls()
    body = {
        "allOrNone": False,
        "compositeRequest": [
            {
                "method": "POST",
                "url": "/services/data/v59.0/sobjects/Account",
                "referenceId": "acct",
                "body": {"Name": "Composite Co"},
            },
            {
                "method": "POST",
                "url": "/services/data/v59.0/sobjects/Contact",
                "referenceId": "ct",
                "body": {"LastName": "Ref", "AccountId": "@{acct.id}"},
            },
            {
                "method": "GET",
                "url": "/services/data/v59.0/sobjects/Account/@{acct.id}?fields=Name",
                "referenceId": "get",
            },
            {
                "method": "GET",
                "url": "/services/data/v59.0/query/?q=SELECT+Id,AccountId+FROM+Contact+WHERE+Id='@{ct.id}'",
                "referenceId": "q",
            },
        ],
    }
    res = sf.restful("composite", method="POST", json=body)["compositeResponse"]
    assert emu.api_calls() - before == 1
    assert [r["referenceId"] for r in res] == ["acct", "ct", "get", "q"]
    assert [r["httpStatusCode"] for r in res] == [201, 201, 200, 200]
    acct = res[0]["body"]["id"]
    assert res[0]["httpHeaders"]["Location"].endswith(acct)
    assert res[2]["body"]["Name"] == "Composite Co"
    assert res[3]["body"]["records"][0]["AccountId"] == acct


def test_given_all_or_none_composite_with_failure_then_everything_rolled_back(sf):
    body = {
        "allOrNone": True,
        "compositeRequest": [
            {
                "method": "POST",
                "url": "/services/data/v59.0/sobjects/Account",
                "referenceId": "ok",
                "body": {"Name": "Rollback Composite"},
            },
            {
                "method": "POST",
                "url": "/services/data/v59.0/sobjects/Lead",
                "referenceId": "bad",
                "body": {"LastName": "NoCompany"},
            },
            {"method": "GET", "url": "/services/data/v59.0/sobjects/Account/@{ok.id}", "referenceId": "after"},
        ],
    }
    res = sf.restful("composite", method="POST", json=body)["compositeResponse"]
    assert [r["httpStatusCode"] for r in res] == [400, 400, 400]
    assert res[0]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert res[1]["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert sf.query("SELECT Id FROM Account WHERE Name = 'Rollback Composite'")["totalSize"] == 0


@pytest.mark.parametrize(
    ("n", "url"), [(26, "/services/data/v59.0/limits"), (6, "/services/data/v59.0/query?q=SELECT+Id+FROM+Lead")]
)
def test_given_too_many_subrequests_or_queries_when_composite_then_400(sf, n, url):
    subs = [{"method": "GET", "url": url, "referenceId": f"r{i}"} for i in range(n)]
    with pytest.raises(SalesforceMalformedRequest):
        sf.restful("composite", method="POST", json={"compositeRequest": subs})


def test_given_more_than_800_ids_on_get_when_retrieve_then_414(raw):
    ids = ",".join(f"00Q{i:012d}AAA" for i in range(801))
    resp = raw.get("/composite/sobjects/Lead", params={"ids": ids, "fields": "Id"})
    assert resp.status_code == 414
    assert resp.json()[0]["errorCode"] == "URI_TOO_LONG"


def test_given_broken_json_when_posted_then_400_json_parser_error(raw):
    resp = raw.request("POST", "/composite/sobjects", data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()[0]["errorCode"] == "JSON_PARSER_ERROR"


def test_given_nested_composite_when_posted_then_400(sf):
    inner = {"method": "POST", "url": "/services/data/v59.0/composite/", "referenceId": "nested", "body": {}}
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.restful("composite", method="POST", json={"compositeRequest": [inner]})
    assert exc.value.content[0]["errorCode"] == "INVALID_API_INPUT"
