"""Unit tests of the write-back's pure parts: per-field decisions and policies, value checks,
stream record decoding, and the ``SFSYNC_WRITEBACK`` configuration."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer
from sfsync.core.config import load_settings, parse_writeback
from sfsync.core.exceptions import ConfigurationError
from sfsync.items import snapshot
from sfsync.items.snapshot import same
from sfsync.writeback import check_value, decide_field, decode_records, is_salesforce_id, resolve, writable

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
STAMP_1, STAMP_2 = "2026-11-24T12:00:00.000Z", "2026-11-24T12:05:00.000Z"


def synced(**values: Any) -> dict[str, Any]:
    """An item as the sync writes it (values and base together)."""
    item = {"Id": "00Q000000000001AAA", "sobject": "Lead", "SystemModstamp": STAMP_1, **values}
    return snapshot.with_base(item)


def decide(
    name: str,
    record: dict[str, Any],
    current: dict[str, Any],
    salesforce: Any,
    policy: str = "local",
    obj: str = "Lead",
    local_time: dt.datetime | None = None,
    sf_time: dt.datetime | None = None,
) -> Any:
    return decide_field(
        name,
        local=record.get(name),
        record_base=snapshot.base_of(record) or {},
        current_item=current,
        current_base=snapshot.base_of(current) or {},
        salesforce=salesforce,
        policy=policy,
        object_name=obj,
        local_time=local_time,
        salesforce_time=sf_time,
    )


# -- decisions --------------------------------------------------------------------------------


def test_given_a_local_edit_and_salesforce_unchanged_then_the_local_value_is_pushed() -> None:
    item = {**synced(Title="Old"), "Title": "New"}
    decision = decide("Title", item, item, "Old")
    assert (decision.action, decision.value, decision.conflict) == ("push", "New", None)
    assert decision.write_item is False


def test_given_salesforce_changed_the_same_field_then_it_is_a_conflict_decided_by_the_policy() -> None:
    item = {**synced(Title="Old"), "Title": "Local"}
    local_wins = decide("Title", item, item, "Remote", policy="local")
    assert (local_wins.action, local_wins.value) == ("push", "Local")
    assert local_wins.conflict is not None and local_wins.conflict.winner == "local"

    sf_wins = decide("Title", item, item, "Remote", policy="salesforce")
    assert (sf_wins.action, sf_wins.value, sf_wins.write_item) == ("salesforce", "Remote", True)
    assert sf_wins.expected_item_value == "Local"


def test_given_both_sides_made_the_same_change_then_nothing_is_pushed_and_no_conflict_is_recorded() -> None:
    item = {**synced(Title="Old"), "Title": "Same"}
    decision = decide("Title", item, item, "Same")
    assert (decision.action, decision.conflict) == ("none", None)


def test_given_the_sync_overwrote_the_local_edit_then_the_record_base_decides_and_the_item_is_repaired() -> None:
    record = {**synced(Title="Old", City="Gent"), "Title": "Local"}
    # Salesforce changed City only; the sync rewrote the whole item (Title back to Old) with a newer stamp
    current = synced(Title="Old", City="Brugge", SystemModstamp=STAMP_2)
    decision = decide("Title", record, current, "Old")
    assert (decision.action, decision.value, decision.write_item) == ("push", "Local", True)
    assert decision.expected_item_value == "Old"

    both = {**synced(Title="Old"), "Title": "Local"}
    current_both = synced(Title="Remote", SystemModstamp=STAMP_2)
    conflict = decide("Title", both, current_both, "Remote", policy="local")
    assert conflict.conflict is not None and conflict.conflict.base == "Old"
    assert (conflict.action, conflict.write_item) == ("push", True)


def test_given_a_later_local_edit_then_an_older_stream_record_is_skipped() -> None:
    record = {**synced(Title="Old"), "Title": "First"}
    current = {**synced(Title="Old"), "Title": "Second"}
    assert decide("Title", record, current, "Old").action == "skip"


def test_given_an_edit_already_pushed_when_its_record_is_delivered_again_then_it_is_skipped() -> None:
    record = {**synced(Title="Old"), "Title": "New"}
    current = synced(Title="New")  # the push moved the base
    assert decide("Title", record, current, "New").action == "skip"


def test_given_our_own_push_moved_the_base_then_a_following_edit_is_no_conflict() -> None:
    # edit 1 (X) was pushed and the base became X; edit 2 (Y) was made against the old base
    record = {**synced(Title="Old"), "Title": "Y"}
    current = {**synced(Title="X"), "Title": "Y"}
    decision = decide("Title", record, current, "X", policy="salesforce")
    assert (decision.action, decision.value, decision.conflict) == ("push", "Y", None)


def test_given_numbers_then_decimal_and_json_forms_compare_equal() -> None:
    item = {**synced(NumberOfEmployees=Decimal(10)), "NumberOfEmployees": Decimal(12)}
    assert decide("NumberOfEmployees", item, item, Decimal("10.0")).action == "push"
    assert same(Decimal("1.50"), 1.5) and not same(True, 1) and not same(None, "")


@pytest.mark.parametrize(
    ("policy", "local", "remote", "local_time", "sf_time", "winner"),
    [
        ("local", "a", "b", None, None, "local"),
        ("salesforce", "a", "b", None, None, "salesforce"),
        ("recent", "a", "b", T0 + dt.timedelta(seconds=1), T0, "local"),
        ("recent", "a", "b", T0, T0 + dt.timedelta(seconds=1), "salesforce"),
        ("recent", "a", "b", T0, T0, "local"),  # tie: Lead's default
        ("nonempty", None, "b", None, None, "salesforce"),
        ("nonempty", "a", "  ", None, None, "local"),
        ("nonempty", "a", "b", None, None, "local"),  # both set: Lead's default
    ],
)
def test_given_a_policy_then_the_winner_follows_it(
    policy: str, local: Any, remote: Any, local_time: Any, sf_time: Any, winner: str
) -> None:
    assert (
        resolve(
            policy, object_name="Lead", local=local, salesforce=remote, local_time=local_time, salesforce_time=sf_time
        )
        == winner
    )


def test_given_a_tie_on_a_contact_then_salesforce_wins_by_default() -> None:
    assert resolve(
        "nonempty", object_name="Contact", local="a", salesforce="b", local_time=None, salesforce_time=None
    ) == ("salesforce")


def test_given_an_unknown_policy_then_resolve_raises() -> None:
    with pytest.raises(ValueError, match="unknown conflict policy"):
        resolve("coin", object_name="Lead", local="a", salesforce="b", local_time=None, salesforce_time=None)


# -- values -----------------------------------------------------------------------------------

TITLE = {"name": "Title", "type": "string", "length": 10, "updateable": True, "createable": True}
RATING = {
    "name": "Rating",
    "type": "picklist",
    "length": 255,
    "restrictedPicklist": True,
    "picklistValues": [{"value": "Hot", "active": True}, {"value": "Cold", "active": True}],
}


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        (TITLE, "short", None),
        (TITLE, "x" * 11, "STRING_TOO_LONG"),
        (TITLE, 5, "INVALID_TYPE"),
        (RATING, "Hot", None),
        (RATING, "Warm", "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
        ({"type": "int"}, Decimal("2.5"), "INVALID_TYPE"),
        ({"type": "int"}, Decimal(3), None),
        ({"type": "double"}, "3", "INVALID_TYPE"),
        ({"type": "boolean"}, "true", "INVALID_TYPE"),
        ({"type": "date"}, "2026-11-24", None),
        ({"type": "date"}, "24/11/2026", "INVALID_TYPE"),
        ({"type": "datetime"}, "2026-11-24T12:00:00.000Z", None),
        ({"type": "datetime"}, "yesterday", "INVALID_TYPE"),
        (TITLE, None, None),
    ],
)
def test_given_a_value_then_the_engine_check_names_the_problem(field: dict[str, Any], value: Any, code: Any) -> None:
    problem = check_value("F", value, field)
    assert (problem[0] if problem else None) == code
    if problem:
        assert "F" in problem[1]


def test_given_describe_then_only_updateable_plain_fields_are_writable() -> None:
    describe = {
        "Title": TITLE,
        "Name": {"type": "string", "updateable": False},
        "Score__c": {"type": "double", "calculated": True, "updateable": False},
        "Address": {"type": "address", "updateable": False},
        "CampaignId": {"type": "reference", "updateable": False, "createable": True},
    }
    assert writable(describe, "Title", create=False) is None
    assert "not updateable" in str(writable(describe, "Name", create=False))
    assert "formula" in str(writable(describe, "Score__c", create=False))
    assert "compound" in str(writable(describe, "Address", create=False))
    assert "not visible" in str(writable(describe, "Secret__c", create=False))
    assert writable(describe, "CampaignId", create=True) is None
    assert writable(describe, "CampaignId", create=False) is not None


def test_given_ids_then_only_salesforce_ids_of_the_object_count() -> None:
    assert is_salesforce_id("Lead", "00Q5g0000000001EAA")
    assert is_salesforce_id("Lead", "00Q5g0000000001")
    assert not is_salesforce_id("Lead", "0035g0000000001EAA")
    assert not is_salesforce_id("Lead", "app-lead-1")
    assert not is_salesforce_id("Lead", None)


# -- stream records ---------------------------------------------------------------------------


def test_given_a_stream_event_then_records_are_decoded_with_images_table_and_time() -> None:
    ser = TypeSerializer()
    new = {"Id": "00Q5g0000000001EAA", "Title": "New", "NumberOfEmployees": Decimal(3)}
    event = {
        "Records": [
            {
                "eventName": "MODIFY",
                "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/sfsync-Lead/stream/2026-11-24",
                "dynamodb": {
                    "ApproximateCreationDateTime": T0.timestamp(),
                    "Keys": {"Id": {"S": new["Id"]}},
                    "NewImage": {k: ser.serialize(v) for k, v in new.items()},
                    "SequenceNumber": "111",
                },
            },
            {
                "eventName": "REMOVE",
                "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/sfsync-Lead/stream/x",
                "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"},
                "dynamodb": {"Keys": {"Id": {"S": "x"}}, "OldImage": {"Id": {"S": "x"}}, "SequenceNumber": "112"},
            },
        ]
    }
    first, second = decode_records(event["Records"])
    assert (first.table, first.key, first.sequence, first.event) == ("sfsync-Lead", new["Id"], "111", "MODIFY")
    assert first.new == new and first.old is None and first.at == T0
    assert second.by_service and second.image == {"Id": "x"} and second.at is None


# -- configuration ----------------------------------------------------------------------------

TWO_WAY = {"Lead", "Contact", "Campaign", "CampaignMember"}


def test_given_no_configuration_then_the_defaults_are_marketo_like() -> None:
    options, problems = parse_writeback({}, TWO_WAY)
    assert problems == []
    assert {name: o.conflict for name, o in options.items()} == {
        "Campaign": "salesforce",
        "CampaignMember": "local",
        "Contact": "salesforce",
        "Lead": "local",
    }
    assert not options["Lead"].allow_deletes and options["Lead"].external_id_field is None


def test_given_field_policies_then_they_override_the_object_policy() -> None:
    options, problems = parse_writeback(
        {"Contact": {"conflict": "recent", "fields": {"Email": "nonempty"}, "allow_deletes": True}}, TWO_WAY
    )
    assert problems == []
    contact = options["Contact"]
    assert (contact.policy_for("Email"), contact.policy_for("Title"), contact.allow_deletes) == (
        "nonempty",
        "recent",
        True,
    )


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"Account": {}}, "SFSYNC_WRITEBACK.Account: Account is not a configured two-way object"),
        ({"Lead": {"conflict": "loudest"}}, "SFSYNC_WRITEBACK.Lead.conflict: unknown policy 'loudest'"),
        ({"Lead": {"fields": {"Email": "newest"}}}, "SFSYNC_WRITEBACK.Lead.fields.Email: unknown policy 'newest'"),
        ({"Lead": {"fields": {"bad name": "local"}}}, "'bad name' is not a field API name"),
        ({"Lead": {"colour": "red"}}, "SFSYNC_WRITEBACK.Lead: unknown option(s) colour"),
        ({"Lead": {"allow_deletes": "yes"}}, "SFSYNC_WRITEBACK.Lead.allow_deletes must be true or false"),
        ({"Lead": []}, "SFSYNC_WRITEBACK.Lead must be a JSON object"),
    ],
)
def test_given_bad_configuration_then_the_problem_names_object_field_and_policy(raw: Any, fragment: str) -> None:
    _, problems = parse_writeback(raw, TWO_WAY)
    assert any(fragment in p for p in problems), problems


def test_given_bad_writeback_json_in_the_environment_then_load_settings_fails_clearly() -> None:
    env = {"SFSYNC_STATE_TABLE": "state", "SFSYNC_WRITEBACK": '{"Lead": {"conflict": "loudest"}}'}
    with pytest.raises(ConfigurationError, match=r"SFSYNC_WRITEBACK\.Lead\.conflict"):
        load_settings(env)
    good = load_settings({"SFSYNC_STATE_TABLE": "state", "SFSYNC_WRITEBACK": '{"Lead": {"conflict": "recent"}}'})
    assert good.writeback["Lead"].conflict == "recent"
    assert good.writeback["Contact"].conflict == "salesforce"


def test_given_a_new_salesforce_client_then_the_write_back_never_reuses_another_clients_describe() -> None:
    from sfsync.writeback import clear_describe_cache, field_map

    class Org:
        def __init__(self, field: str) -> None:
            self.field = field
            self.calls = 0

        def describe(self, obj: str) -> dict[str, Any]:
            self.calls += 1
            return {"fields": [{"name": self.field, "type": "string"}]}

    clear_describe_cache()
    first = Org("OnlyInTheFirstOrg__c")
    assert set(field_map(first, "Lead")) == {"OnlyInTheFirstOrg__c"}
    assert set(field_map(first, "Lead")) == {"OnlyInTheFirstOrg__c"} and first.calls == 1  # cached
    for _ in range(20):  # new clients, some of them at the address a freed one had
        del first
        first = Org("OnlyInTheFirstOrg__c")
        field_map(first, "Lead")
        second = Org("OnlyInTheSecondOrg__c")
        assert set(field_map(second, "Lead")) == {"OnlyInTheSecondOrg__c"}
        assert second.calls == 1
        del second


def test_the_record_the_handler_reports_for_retry_raises_an_engine_error() -> None:
    from sfsync.core.exceptions import ChangeEventNotApplied, RecordNotWrittenBack, SfsyncError
    from sfsync.wiring import change_event_retried, stream_record_retried

    assert isinstance(stream_record_retried("7"), RecordNotWrittenBack)
    assert isinstance(change_event_retried("m-1"), ChangeEventNotApplied)
    assert issubclass(RecordNotWrittenBack, SfsyncError) and issubclass(ChangeEventNotApplied, SfsyncError)


def test_given_a_batch_with_failed_records_then_only_those_are_reported_as_batch_item_failures() -> None:
    from aws_lambda_powertools.utilities.batch import EventType
    from sfsync.wiring import partial_batch_response, stream_record_retried

    def record(sequence: str) -> dict[str, object]:
        return {
            "eventID": sequence,
            "eventName": "MODIFY",
            "eventSource": "aws:dynamodb",
            "dynamodb": {
                "Keys": {"Id": {"S": f"00Q{sequence}"}},
                "SequenceNumber": sequence,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
        }

    event = {"Records": [record("1"), record("2"), record("3")]}
    key = lambda r: r.dynamodb.sequence_number if r.dynamodb else None  # noqa: E731
    response = partial_batch_response(
        event, None, EventType.DynamoDBStreams, {"2"}, key=key, error=stream_record_retried
    )
    assert response == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    assert partial_batch_response(
        event, None, EventType.DynamoDBStreams, set(), key=key, error=stream_record_retried
    ) == {"batchItemFailures": []}
