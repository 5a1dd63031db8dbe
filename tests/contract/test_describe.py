"""§4 describe (global and per object) with the §13.4 properties, FLS and If-Modified-Since."""

from __future__ import annotations

import pytest
from simple_salesforce import SalesforceResourceNotFound

pytestmark = pytest.mark.contract

GLOBAL_FLAGS = {
    "name",
    "label",
    "labelPlural",
    "keyPrefix",
    "custom",
    "customSetting",
    "createable",
    "updateable",
    "deletable",
    "queryable",
    "replicateable",
    "retrieveable",
    "searchable",
    "triggerable",
    "undeletable",
    "mergeable",
    "layoutable",
    "deprecatedAndHidden",
    "feedEnabled",
    "urls",
}
FIELD_PROPS = {
    "name",
    "label",
    "type",
    "soapType",
    "length",
    "precision",
    "scale",
    "nillable",
    "createable",
    "updateable",
    "calculated",
    "calculatedFormula",
    "compoundFieldName",
    "referenceTo",
    "relationshipName",
    "polymorphicForeignKey",
    "externalId",
    "idLookup",
    "unique",
    "picklistValues",
    "defaultedOnCreate",
    "filterable",
    "sortable",
    "groupable",
    "autoNumber",
    "deprecatedAndHidden",
    "custom",
}


def test_given_org_when_describe_global_then_every_visible_object_with_all_flags(sf):
    body = sf.describe()
    assert body["encoding"] == "UTF-8"
    assert body["maxBatchSize"] == 200
    by_name = {o["name"]: o for o in body["sobjects"]}
    assert {"Account", "Contact", "Lead", "Campaign", "CampaignMember", "Task", "Event", "User"} <= set(by_name)
    for entry in by_name.values():
        assert set(entry) >= GLOBAL_FLAGS, entry["name"]
    assert by_name["Account"]["keyPrefix"] == "001"
    assert by_name["Account"]["urls"]["describe"] == "/services/data/v59.0/sobjects/Account/describe"


def test_given_hidden_object_when_describe_global_then_absent_and_describe_404(sf, raw):
    raw.admin("hide_object", obj="Milestone__c")
    try:
        names = {o["name"] for o in sf.describe()["sobjects"]}
        assert "Milestone__c" not in names
        with pytest.raises(SalesforceResourceNotFound) as exc:
            sf.Milestone__c.describe()
        assert exc.value.content[0]["errorCode"] == "NOT_FOUND"
    finally:
        raw.admin("show_object", obj="Milestone__c")
    assert "Milestone__c" in {o["name"] for o in sf.describe()["sobjects"]}


def test_given_account_when_describe_then_every_field_has_all_properties(sf):
    body = sf.Account.describe()
    assert body["name"] == "Account"
    fields = {f["name"]: f for f in body["fields"]}
    for f in fields.values():
        assert set(f) >= FIELD_PROPS, f["name"]
    assert fields["BillingStreet"]["compoundFieldName"] == "BillingAddress"
    assert fields["Name"]["compoundFieldName"] is None
    assert fields["BillingAddress"]["type"] == "address"
    assert fields["Id"]["soapType"] == "tns:ID"
    assert fields["Legacy_Id__c"]["externalId"] is True
    assert fields["OwnerId"]["referenceTo"] == ["User"]
    industry = fields["Industry"]["picklistValues"]
    assert industry and set(industry[0]) >= {"value", "label", "active", "defaultValue"}
    assert fields["SystemModstamp"]["updateable"] is False


def test_given_formula_field_when_describe_then_calculated_with_formula(sf):
    fields = {f["name"]: f for f in sf.Contact.describe()["fields"]}
    rating = fields["Account_Rating__c"]
    assert rating["calculated"] is True
    assert rating["calculatedFormula"]
    assert rating["createable"] is False and rating["updateable"] is False


def test_given_fls_hidden_or_readonly_field_when_describe_then_absent_or_not_writable(sf, raw):
    raw.admin("hide_field", obj="Account", field="Phone")
    raw.admin("set_field_readonly", obj="Account", field="Website", readonly=True)
    try:
        fields = {f["name"]: f for f in sf.Account.describe()["fields"]}
        assert "Phone" not in fields
        assert fields["Website"]["createable"] is False
        assert fields["Website"]["updateable"] is False
    finally:
        raw.admin("show_field", obj="Account", field="Phone")
        raw.admin("set_field_readonly", obj="Account", field="Website", readonly=False)
    fields = {f["name"]: f for f in sf.Account.describe()["fields"]}
    assert "Phone" in fields and fields["Website"]["updateable"] is True


def test_given_if_modified_since_when_unchanged_then_304_and_after_profile_change_200(emu, raw):
    first = raw.get("/sobjects/Lead/describe")
    assert first.status_code == 200
    last_modified = first.headers["Last-Modified"]
    assert last_modified.endswith("GMT")
    same = raw.get("/sobjects/Lead/describe", headers={"If-Modified-Since": last_modified})
    assert same.status_code == 304
    assert same.content == b""
    emu.clock.advance(2)
    raw.admin("hide_field", obj="Lead", field="Title")
    try:
        changed = raw.get("/sobjects/Lead/describe", headers={"If-Modified-Since": last_modified})
        assert changed.status_code == 200
        assert "Title" not in {f["name"] for f in changed.json()["fields"]}
    finally:
        raw.admin("show_field", obj="Lead", field="Title")


def test_given_sobject_root_when_get_then_basic_info(raw):
    resp = raw.get("/sobjects/Lead/")
    assert resp.status_code == 200
    body = resp.json()
    assert body["objectDescribe"]["name"] == "Lead"
    assert isinstance(body["recentItems"], list)


def test_given_versions_and_resources_when_get_then_listed_with_requested_version(emu, raw):
    versions = emu.session().get(f"{emu.instance_url}/services/data/", timeout=30).json()
    assert {"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"} in versions
    resources = raw.get(f"{emu.instance_url}/services/data/v61.0/").json()
    assert resources["query"] == "/services/data/v61.0/query"
    assert resources["sobjects"] == "/services/data/v61.0/sobjects"


def test_given_if_modified_since_when_describe_global_or_composite_subrequest_then_304(sf, raw):
    first = raw.get("/sobjects/")
    stamp = first.headers["Last-Modified"]
    assert raw.get("/sobjects", headers={"If-Modified-Since": stamp}).status_code == 304
    sub = {
        "method": "GET",
        "url": "/services/data/v59.0/sobjects/Account/describe",
        "referenceId": "d",
        "httpHeaders": {"If-Modified-Since": stamp},
    }
    res = sf.restful("composite", method="POST", json={"compositeRequest": [sub]})["compositeResponse"]
    assert res[0]["httpStatusCode"] == 304
    assert res[0]["body"] is None
