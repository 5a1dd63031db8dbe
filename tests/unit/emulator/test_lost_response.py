"""The ``lost_response`` fault: the request is carried out, then answered like a lost response."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sfsync_emulator.emulator import Emulator
from sfsync_emulator.faults import FaultRule
from simple_salesforce import SalesforceGeneralError

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator.start(seed=7, records=100) as running:
        yield running


def test_given_a_lost_response_on_a_create_then_the_record_exists_although_the_client_saw_a_500(
    emu: Emulator,
) -> None:
    sf = emu.salesforce()
    emu.add_fault("lost_response", family="composite", method="POST", count=1)
    body = {"allOrNone": False, "records": [{"attributes": {"type": "Lead"}, "LastName": "Lost", "Company": "R"}]}
    with pytest.raises(SalesforceGeneralError) as caught:
        sf.restful("composite/sobjects", method="POST", json=body)
    assert caught.value.status == 500
    content: Any = caught.value.content
    assert content[0]["errorCode"] == "UNKNOWN_EXCEPTION"
    rows = sf.query("SELECT Id FROM Lead WHERE LastName = 'Lost'")["records"]
    assert len(rows) == 1, "the create was carried out"

    again: Any = sf.restful("composite/sobjects", method="POST", json=body)  # the rule fired once
    assert again[0]["success"] is True
    assert len(sf.query("SELECT Id FROM Lead WHERE LastName = 'Lost'")["records"]) == 2


def test_given_an_unknown_kind_then_the_rule_is_rejected_and_lost_response_is_known() -> None:
    FaultRule(kind="lost_response").validate()
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultRule(kind="lost_reply").validate()
