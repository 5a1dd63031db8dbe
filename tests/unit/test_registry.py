"""The object registry and the configuration that builds it."""

from __future__ import annotations

import json

import pytest
from sfsync.core.config import load_settings
from sfsync.core.exceptions import ConfigurationError
from sfsync.core.registry import FAMILIES, STANDARD_OBJECTS, build_registry, standard_object_names

pytestmark = pytest.mark.unit

TABLES = {family: f"sfsync-{family}" for family in FAMILIES}


def env(**overrides: str) -> dict[str, str]:
    base = {
        "SFSYNC_STATE_TABLE": "state",
        "SFSYNC_ERRORS_TABLE": "errors",
        "SFSYNC_RECORD_TABLES": json.dumps(TABLES),
        "SFSYNC_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:sf",
    }
    base.update(overrides)
    return base


def test_every_standard_object_has_a_known_family_and_one_entry() -> None:
    names = standard_object_names()
    assert len(names) == len(set(names)) == 10
    assert {spec.family for spec in STANDARD_OBJECTS} <= set(FAMILIES)


def test_two_way_objects_are_exactly_lead_contact_campaign_and_member() -> None:
    both = {spec.name for spec in STANDARD_OBJECTS if spec.writes_back}
    assert both == {"Lead", "Contact", "Campaign", "CampaignMember"}


def test_activities_share_a_family_and_are_archivable() -> None:
    registry = build_registry()
    assert registry.get("Task").family == registry.get("Event").family == "Activity"
    assert registry.get("Task").archivable and registry.get("Event").archivable
    assert not registry.get("Account").archivable


def test_objects_deleted_without_recycle_bin_are_flagged() -> None:
    registry = build_registry()
    flagged = {spec.name for spec in registry if spec.hard_delete_without_recycle_bin}
    assert flagged == {"CampaignMember", "OpportunityContactRole"}


def test_given_no_object_list_when_building_then_all_standard_objects_in_order() -> None:
    assert build_registry().names() == standard_object_names()


def test_given_a_subset_and_custom_objects_when_building_then_customs_go_to_the_custom_family() -> None:
    registry = build_registry(["Account", "Lead"], ["Project__c"])
    assert registry.names() == ["Account", "Lead", "Project__c"]
    custom = registry.get("Project__c")
    assert (custom.family, custom.direction, custom.custom) == ("Custom", "inbound", True)


def test_given_unknown_names_when_building_then_one_error_names_them_all() -> None:
    with pytest.raises(ConfigurationError) as err:
        build_registry(["Account", "Acount", "Widget"], ["bad name", "Ok__c"])
    message = str(err.value)
    assert "Acount" in message and "Widget" in message and "bad name" in message
    assert "Ok__c" not in message


def test_given_options_when_building_then_they_override_the_spec() -> None:
    registry = build_registry(
        ["Account"], options={"Account": {"pause_seconds": 60, "exclude_fields": ["Description"]}}
    )
    spec = registry.get("Account")
    assert spec.pause(300) == 60
    assert spec.exclude_fields == ("Description",)
    assert build_registry(["Lead"]).get("Lead").pause(300) == 300


@pytest.mark.parametrize(
    "options",
    [
        {"Lead": {"pause_seconds": 1}},  # not configured
        {"Account": {"colour": "blue"}},  # unknown option
        {"Account": {"pause_seconds": -1}},
        {"Account": {"include_fields": ["Name; DROP"]}},
    ],
)
def test_given_bad_options_when_building_then_configuration_error(options: dict) -> None:
    with pytest.raises(ConfigurationError):
        build_registry(["Account"], options=options)


def test_unknown_object_lookup_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="Opportunity"):
        build_registry(["Account"]).get("Opportunity")


# -- settings ------------------------------------------------------------------------------------


def test_given_a_full_environment_when_loading_then_defaults_apply() -> None:
    settings = load_settings(env(SFSYNC_OBJECTS="Account, Contact"))
    assert settings.registry.names() == ["Account", "Contact"]
    assert (settings.pause_seconds, settings.overlap_seconds, settings.safety_lag_seconds) == (300, 600, 60)
    assert settings.api_budget_percent == 80
    assert settings.table_for("Account") == "sfsync-Account"


def test_given_unknown_objects_and_a_bad_number_when_loading_then_one_error_names_everything() -> None:
    with pytest.raises(ConfigurationError) as err:
        load_settings(env(SFSYNC_OBJECTS="Account,Acount", SFSYNC_PAUSE_SECONDS="soon"))
    assert "Acount" in str(err.value)
    assert "SFSYNC_PAUSE_SECONDS" in str(err.value)


def test_given_unknown_option_keys_and_bad_values_then_every_problem_is_named_not_only_the_first() -> None:
    # Issue #11 finding 6: validation stopped at the first unknown key and hid the rest.
    options = {"Account": {"colour": "red", "pause_seconds": -1, "include_formulas": "yes"}}
    writeback = {
        "Lead": {"colour": "red", "conflict": "newest", "fields": {"Status": "sometimes"}},
        "Contact": {"external_id_field": "not a name", "allow_deletes": "yes"},
    }
    with pytest.raises(ConfigurationError) as err:
        load_settings(
            env(
                SFSYNC_OBJECTS="Account,Contact,Lead",
                SFSYNC_OBJECT_OPTIONS=json.dumps(options),
                SFSYNC_WRITEBACK=json.dumps(writeback),
            )
        )
    text = str(err.value)
    for problem in (
        "unknown option(s) for Account: colour",
        "Account.pause_seconds",
        "Account.include_formulas",
        "SFSYNC_WRITEBACK.Lead: unknown option(s) colour",
        "'newest'",
        "Status: unknown policy 'sometimes'",
        "external_id_field",
        "allow_deletes must be true or false",
    ):
        assert problem in text, (problem, text)


def test_given_a_missing_family_table_when_loading_then_configuration_error() -> None:
    tables = {k: v for k, v in TABLES.items() if k != "Activity"}
    with pytest.raises(ConfigurationError, match="Activity"):
        load_settings(env(SFSYNC_RECORD_TABLES=json.dumps(tables)))


def test_given_malformed_json_when_loading_then_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="SFSYNC_RECORD_TABLES"):
        load_settings(env(SFSYNC_RECORD_TABLES="{not json"))


def test_given_no_state_table_when_loading_then_configuration_error() -> None:
    bad = env()
    del bad["SFSYNC_STATE_TABLE"]
    with pytest.raises(ConfigurationError, match="SFSYNC_STATE_TABLE"):
        load_settings(bad)


def test_require_names_the_missing_variables() -> None:
    settings = load_settings(env())
    with pytest.raises(ConfigurationError, match="SFSYNC_OBJECT_SYNC_FUNCTION"):
        settings.require("object_sync_function")


def test_given_lifecycle_options_when_building_then_they_are_applied_and_validated() -> None:
    registry = build_registry(
        ["Contact", "CampaignMember"],
        options={
            "Contact": {"formula_refresh_seconds": 900, "bulk_threshold": 500},
            "CampaignMember": {"reconcile_seconds": 3600},
        },
    )
    contact, member = registry.get("Contact"), registry.get("CampaignMember")
    assert (contact.formula_refresh_seconds, contact.bulk_threshold) == (900, 500)
    assert member.reconcile_seconds == 3600 and member.hard_delete_without_recycle_bin
    with pytest.raises(ConfigurationError, match="bulk_threshold"):
        build_registry(["Lead"], options={"Lead": {"bulk_threshold": 0}})
    with pytest.raises(ConfigurationError, match="reconcile_seconds"):
        build_registry(["Lead"], options={"Lead": {"reconcile_seconds": "daily"}})


def test_given_lifecycle_settings_in_the_environment_when_loading_then_they_are_read() -> None:
    settings = load_settings(
        {
            "SFSYNC_STATE_TABLE": "state",
            "SFSYNC_BULK_THRESHOLD": "250",
            "SFSYNC_FORMULA_REFRESH_SECONDS": "60",
            "SFSYNC_RECONCILE_SECONDS": "120",
            "SFSYNC_ORG_BACKOFF_SECONDS": "30",
        }
    )
    assert (settings.bulk_threshold, settings.formula_refresh_seconds) == (250, 60)
    assert (settings.reconcile_seconds, settings.org_backoff_seconds) == (120, 30)
    with pytest.raises(ConfigurationError, match="SFSYNC_BULK_THRESHOLD"):
        load_settings({"SFSYNC_STATE_TABLE": "state", "SFSYNC_BULK_THRESHOLD": "0"})
