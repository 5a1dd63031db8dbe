"""§6.4 single-record REST: create, read, update, delete, upsert and read by external id."""

from __future__ import annotations

import pytest
from simple_salesforce import (
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceResourceNotFound,
)

pytestmark = pytest.mark.contract


def test_given_new_account_when_create_get_update_delete_then_rest_shapes(sf):
    created = sf.Account.create({"Name": "Rec Co", "Industry": "Energy"})
    assert created["success"] is True and created["errors"] == []
    rid = created["id"]
    assert rid.startswith("001") and len(rid) == 18
    rec = sf.Account.get(rid)
    assert rec["attributes"]["type"] == "Account"
    assert rec["Name"] == "Rec Co"
    assert rec["CreatedDate"].endswith("+0000")
    assert "BillingAddress" in rec
    assert sf.Account.update(rid, {"Industry": "Banking"}) == 204
    assert sf.Account.get(rid)["Industry"] == "Banking"
    assert sf.Account.delete(rid) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.get(rid)


def test_given_fields_param_when_get_then_only_those_fields(sf, raw):
    rid = sf.Account.create({"Name": "Fields Co"})["id"]
    body = raw.get(f"/sobjects/Account/{rid}", params={"fields": "Name,Industry"}).json()
    assert set(body) == {"attributes", "Name", "Industry"}
    assert raw.get(f"/sobjects/Account/{rid}", params={"fields": "Nope__c"}).json()[0]["errorCode"] == "INVALID_FIELD"


def test_given_external_id_when_upsert_then_201_created_then_200_updated(sf):
    assert sf.Account.upsert("Legacy_Id__c/UP-1", {"Name": "Upsert Co"}) == 201
    assert sf.Account.upsert("Legacy_Id__c/UP-1", {"Name": "Upsert Co 2"}) == 200
    rec = sf.Account.get_by_custom_id("Legacy_Id__c", "UP-1")
    assert rec["Name"] == "Upsert Co 2"


def test_given_duplicate_external_ids_when_upsert_or_get_then_300_with_record_urls(sf):
    a = sf.Account.create({"Name": "Dup A", "Legacy_Id__c": "DUP-1"})["id"]
    b = sf.Account.create({"Name": "Dup B", "Legacy_Id__c": "DUP-1"})["id"]
    with pytest.raises(SalesforceMoreThanOneRecord) as exc:
        sf.Account.upsert("Legacy_Id__c/DUP-1", {"Name": "X"})
    assert exc.value.status == 300
    assert sorted(exc.value.content) == sorted(f"/services/data/v59.0/sobjects/Account/{i}" for i in (a, b))
    with pytest.raises(SalesforceMoreThanOneRecord):
        sf.Account.get_by_custom_id("Legacy_Id__c", "DUP-1")


def test_given_readonly_field_when_update_then_400_invalid_field_for_insert_update(sf):
    rid = sf.Account.create({"Name": "RO Co"})["id"]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Account.update(rid, {"SystemModstamp": "2020-01-01T00:00:00.000+0000"})
    err = exc.value.content[0]
    assert err["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert "statusCode" not in err


def test_given_missing_required_field_when_create_then_request_level_error(sf):
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Lead.create({"LastName": "NoCompany"})
    assert exc.value.content[0]["errorCode"] == "REQUIRED_FIELD_MISSING"


def test_given_unknown_object_or_bad_id_when_get_then_404_array(sf, raw):
    with pytest.raises(SalesforceResourceNotFound) as exc:
        sf.Nope__c.get("001000000000000AAA")
    assert exc.value.content[0]["errorCode"] == "NOT_FOUND"
    assert raw.get("/sobjects/Account/003000000000000AAA").status_code == 404


def test_given_call_options_client_when_update_then_cdc_change_origin_carries_it(emu, sf, raw):
    rid = sf.Account.create({"Name": "Origin Co"})["id"]
    seen = len(emu.org.cdc.since(0))
    resp = raw.request(
        "PATCH",
        f"/sobjects/Account/{rid}",
        json={"Industry": "Energy"},
        headers={"Sforce-Call-Options": "client=my-sync"},
    )
    assert resp.status_code == 204
    events = [e.cometd() for e in emu.org.cdc.since(0)[seen:]]
    origins = [ev["data"]["payload"]["ChangeEventHeader"]["changeOrigin"] for ev in events]
    assert any(o.endswith(";client=my-sync") for o in origins), origins


def test_given_deleted_record_when_patched_then_entity_is_deleted(sf):
    rid = sf.Account.create({"Name": "Gone Co"})["id"]
    sf.Account.delete(rid)
    with pytest.raises((SalesforceMalformedRequest, SalesforceResourceNotFound)) as exc:
        sf.Account.update(rid, {"Name": "Back"})
    assert exc.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"


def test_given_fields_param_with_soql_fragment_when_get_then_rejected(sf, raw):
    rid = sf.Account.create({"Name": "Inject Co"})["id"]
    resp = raw.get(f"/sobjects/Account/{rid}", params={"fields": "Name FROM Lead WHERE Name != null"})
    assert resp.status_code == 400
    assert resp.json()[0]["errorCode"] == "INVALID_FIELD"
