"""Items created locally become Salesforce records exactly once (retries, lost responses), with and
without an external-id field; campaign membership added and changed from the DynamoDB side; local
deletes are pushed only when allowed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.functional import test_writeback_support as wb

pytestmark = pytest.mark.functional


@pytest.fixture
def emulator_records() -> int:
    return 100


def leads_named(emulator: Any, last_name: str) -> list[dict[str, Any]]:
    sf = emulator.salesforce()
    rows = sf.query_all(f"SELECT Id, LastName, Company, Sfsync_Key__c FROM Lead WHERE LastName = '{last_name}'")
    return list(rows["records"])


def local_lead(key: str, last_name: str) -> dict[str, Any]:
    return {"Id": key, "sobject": "Lead", "LastName": last_name, "Company": "Local Start-up", "Title": "Founder"}


def assert_created_once(stack: Any, emulator: Any, key: str, last_name: str) -> str:
    rows = leads_named(emulator, last_name)
    assert len(rows) == 1, rows
    sf_id = str(rows[0]["Id"])
    local = wb.get_item(stack, "Lead", key)
    assert local is not None
    assert (local["_created_id"], local["_local_status"]) == (sf_id, "created")
    real = wb.get_item(stack, "Lead", sf_id)
    assert real is not None
    assert real["LastName"] == last_name and real["Title"] == "Founder"
    assert json.loads(real["_base"])["LastName"] == last_name
    return sf_id


def test_given_a_new_local_item_then_it_is_created_once_and_the_item_redirects_to_it(
    deploy_stack: Any, emulator: Any
) -> None:
    stack = wb.deploy(deploy_stack)
    wb.put_item(stack, "Lead", local_lead("app-lead-1", "Newcomer"))
    assert_created_once(stack, emulator, "app-lead-1", "Newcomer")
    # the redirect and the real item raise stream records of their own: nothing is created again
    assert len(leads_named(emulator, "Newcomer")) == 1


def test_given_a_create_whose_response_is_lost_when_lambda_retries_then_no_second_record_is_made(
    deploy_stack: Any, emulator: Any
) -> None:
    stack = wb.deploy(deploy_stack)
    emulator.add_fault("lost_response", family="composite", method="POST", count=1)
    wb.put_item(stack, "Lead", local_lead("app-lead-2", "Ambiguous"))

    runs = [inv for inv in wb.writeback_invocations(stack) if inv.is_error or inv.result.get("batchItemFailures")]
    assert runs, "the lost response made the first attempt fail"
    assert_created_once(stack, emulator, "app-lead-2", "Ambiguous")


def test_given_an_external_id_field_when_the_create_is_retried_then_the_upsert_keeps_one_record(
    deploy_stack: Any, emulator: Any
) -> None:
    stack = wb.deploy(deploy_stack, json.dumps({"Lead": {"external_id_field": "Sfsync_Key__c"}}))
    emulator.add_fault("lost_response", family="composite", method="PATCH", count=1)
    wb.put_item(stack, "Lead", local_lead("app-lead-3", "Upserted"))

    sf_id = assert_created_once(stack, emulator, "app-lead-3", "Upserted")
    assert leads_named(emulator, "Upserted")[0]["Sfsync_Key__c"] == "app-lead-3"
    assert wb.get_item(stack, "Lead", sf_id) is not None


def test_given_a_local_create_with_a_bad_value_then_it_is_refused_with_the_field_named(
    deploy_stack: Any, emulator: Any
) -> None:
    stack = wb.deploy(deploy_stack)
    wb.put_item(stack, "Lead", {**local_lead("app-lead-4", "BadRating"), "Rating": "Scorching"})

    assert leads_named(emulator, "BadRating") == []
    refused = [r for r in wb.errors(stack, "Lead", "refused") if r["record_id"] == "app-lead-4"]
    assert [json.loads(r["fields"]) for r in refused] == [["Rating"]]
    item = wb.get_item(stack, "Lead", "app-lead-4")
    assert item is not None and json.loads(item["_writeback_error"])["fields"] == ["Rating"]


def test_given_a_new_campaign_member_item_then_it_is_created_and_its_status_change_is_pushed(
    deploy_stack: Any, emulator: Any
) -> None:
    stack = wb.deploy(deploy_stack)
    sf = emulator.salesforce()
    campaign = sf.query("SELECT Id FROM Campaign LIMIT 1")["records"][0]["Id"]
    members = {r["LeadId"] for r in sf.query_all("SELECT LeadId FROM CampaignMember")["records"]}
    lead = next(
        r["Id"]
        for r in sf.query_all("SELECT Id FROM Lead WHERE IsConverted = false")["records"]
        if r["Id"] not in members
    )
    wb.put_item(
        stack,
        "CampaignMember",
        {"Id": "app-member-1", "sobject": "CampaignMember", "CampaignId": campaign, "LeadId": lead, "Status": "Sent"},
    )
    rows = sf.query_all(f"SELECT Id, Status FROM CampaignMember WHERE LeadId = '{lead}'")["records"]
    assert [r["Status"] for r in rows] == ["Sent"]
    member_id = rows[0]["Id"]
    assert wb.get_item(stack, "CampaignMember", "app-member-1")["_created_id"] == member_id  # type: ignore[index]

    wb.edit(stack, "CampaignMember", member_id, Status="Responded")
    assert wb.salesforce_row(emulator, "CampaignMember", member_id)["Status"] == "Responded"


def test_given_deletes_are_not_allowed_when_an_item_is_deleted_locally_then_the_refusal_is_recorded(
    deploy_stack: Any, emulator: Any
) -> None:
    stack = wb.deploy(deploy_stack)
    lead = wb.sync_items(stack, emulator, "Lead")[0]
    stack.boto3_client("dynamodb").delete_item(TableName=stack.table_name("LeadTable"), Key={"Id": {"S": lead}})
    wb.drain(stack)

    assert wb.salesforce_row(emulator, "Lead", lead)["IsDeleted"] is False
    refused = [r for r in wb.errors(stack, "Lead", "refused") if r["record_id"] == lead]
    assert [r["code"] for r in refused] == ["DELETE_NOT_ALLOWED"]


def test_given_deletes_are_allowed_when_an_item_is_deleted_locally_then_salesforce_deletes_it(
    deploy_stack: Any, emulator: Any
) -> None:
    stack = wb.deploy(deploy_stack, json.dumps({"Lead": {"allow_deletes": True}}))
    first, second = wb.sync_items(stack, emulator, "Lead")[:2]
    stack.boto3_client("dynamodb").delete_item(TableName=stack.table_name("LeadTable"), Key={"Id": {"S": first}})
    wb.edit(stack, "Lead", second, IsDeleted=True)

    assert wb.salesforce_row(emulator, "Lead", first)["IsDeleted"] is True
    assert wb.salesforce_row(emulator, "Lead", second)["IsDeleted"] is True


def test_given_the_state_table_refuses_a_create_intent_then_only_that_record_is_retried_and_created_once(
    deploy_stack: Any, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.awsrequest import AWSResponse, HTTPHeaders
    from sfsync.store.aws import dynamodb_client

    stack = wb.deploy(deploy_stack)
    state_table = stack.table_name("StateTable")
    refused = {"count": 0}

    class _Body:
        def __init__(self, data: bytes) -> None:
            self._data = data

        def stream(self, **_kw: Any) -> Any:
            yield self._data

    def deny_intent_once(request: Any, **_kw: Any) -> AWSResponse | None:
        body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
        if refused["count"] or state_table.encode() not in body or b"CREATE#" not in body:
            return None
        refused["count"] += 1
        headers = HTTPHeaders()
        headers["x-amzn-ErrorType"] = "AccessDeniedException"
        error = {"__type": "com.amazon.coral.service#AccessDeniedException", "message": "not authorized"}
        return AWSResponse(request.url, 400, headers, _Body(json.dumps(error).encode()))

    # the function's own (cached, per process) client: a DynamoDB error botocore does not retry
    monkeypatch.setenv("AWS_DEFAULT_REGION", stack.region)
    one_lead = str(emulator.salesforce().query("SELECT Id FROM Lead LIMIT 1")["records"][0]["Id"])
    wb.sync_items(stack, emulator, "Lead", [one_lead])
    edited = wb.get_item(stack, "Lead", one_lead)
    assert edited is not None
    edited["Title"] = "Edited beside a refused create"
    dynamodb_client().meta.events.register_first("before-send.dynamodb.PutItem", deny_intent_once)
    try:
        # one request, so one stream batch: a local create (its intent refused) and a local edit
        stack.boto3_client("dynamodb").batch_write_item(
            RequestItems={
                stack.table_name(wb.TABLES["Lead"]): [
                    {"PutRequest": {"Item": {k: wb._ser.serialize(v) for k, v in item.items()}}}
                    for item in (local_lead("app-lead-9", "Denied Once"), edited)
                ]
            }
        )
        wb.drain(stack)
    finally:
        dynamodb_client().meta.events.unregister("before-send.dynamodb.PutItem", deny_intent_once)

    assert refused["count"] == 1
    runs = wb.writeback_invocations(stack)
    assert not [inv for inv in runs if inv.is_error], "a store error fails its records, not the invocation"
    assert [inv for inv in runs if inv.result.get("batchItemFailures")], "the refused record was reported for retry"
    assert wb.salesforce_row(emulator, "Lead", one_lead)["Title"] == "Edited beside a refused create"
    assert_created_once(stack, emulator, "app-lead-9", "Denied Once")
