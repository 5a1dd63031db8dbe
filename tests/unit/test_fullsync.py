"""Pure logic of the full copy: back-off, failure policy, splitting, SOQL, row typing, planning."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sfsync.core.exceptions import ConfigurationError, InvalidExecutionInput
from sfsync.core.registry import ObjectSpec
from sfsync.fullcopy.plan import (
    CopyPolicy,
    bulk_soql,
    failure_action,
    id_with_checksum,
    plan_object,
    poll_wait_seconds,
    rest_soql,
    split_id_range,
    split_range,
)
from sfsync.fullcopy.steps import run_step, split_kind
from sfsync.items.csv import FieldTypes, field_types, typed_row
from sfsync.store.copies import Copy, Part, progress_figures

pytestmark = pytest.mark.unit

UTC = dt.UTC
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)


def describe(*fields: tuple[str, str], **flags: Any) -> dict[str, Any]:
    base = [("Id", "id"), ("SystemModstamp", "datetime"), ("IsDeleted", "boolean")]
    return {
        "name": "Account",
        **flags,
        "fields": [{"name": n, "type": t, "calculated": False} for n, t in [*base, *fields]],
    }


# -- back-off and failure policy -----------------------------------------------------------------


def test_given_successive_polls_when_waiting_then_the_wait_doubles_up_to_the_cap() -> None:
    policy = CopyPolicy(poll_base_seconds=5, poll_cap_seconds=60)
    assert [poll_wait_seconds(n, policy) for n in range(6)] == [5, 10, 20, 40, 60, 60]
    assert poll_wait_seconds(10_000, policy) == 60


def test_given_a_negative_poll_count_when_waiting_then_it_is_refused() -> None:
    with pytest.raises(ValueError, match="polls"):
        poll_wait_seconds(-1, CopyPolicy())


def test_given_failed_jobs_when_deciding_then_retry_comes_before_split_and_split_before_rest() -> None:
    policy = CopyPolicy(max_job_attempts=2, max_split_depth=2)
    assert failure_action(1, 0, policy) == "retry"
    assert failure_action(2, 0, policy) == "split"
    assert failure_action(2, 1, policy) == "split"
    assert failure_action(2, 2, policy) == "rest"


@pytest.mark.parametrize(
    "kwargs",
    [{"max_job_attempts": 0}, {"split_factor": 1}, {"max_records": 0}, {"poll_base_seconds": 9, "poll_cap_seconds": 5}],
)
def test_given_an_impossible_policy_when_built_then_it_is_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        CopyPolicy(**kwargs)


# -- splitting ----------------------------------------------------------------------------------


def test_given_an_open_range_when_split_then_the_pieces_are_adjacent_and_keep_the_open_ends() -> None:
    first, last = T0, T0 + dt.timedelta(days=8)
    pieces = split_range(None, None, first=first, last=last, factor=4)
    assert len(pieces) == 4
    assert pieces[0][0] is None and pieces[-1][1] is None
    for (_, hi), (lo, _) in itertools.pairwise(pieces):
        assert hi == lo
    cuts = [lo for lo, _ in pieces[1:]]
    assert cuts == [T0 + dt.timedelta(days=2), T0 + dt.timedelta(days=4), T0 + dt.timedelta(days=6)]


def test_given_a_bounded_range_when_split_then_the_pieces_cover_exactly_it() -> None:
    lo, hi = T0, T0 + dt.timedelta(seconds=3)
    pieces = split_range(lo, hi, first=lo, last=hi, factor=3)
    assert pieces[0][0] == lo and pieces[-1][1] == hi
    assert [p[1] for p in pieces[:-1]] == [T0 + dt.timedelta(seconds=1), T0 + dt.timedelta(seconds=2)]


def test_given_a_span_too_small_when_split_then_the_range_stays_whole() -> None:
    assert split_range(T0, T0 + dt.timedelta(milliseconds=2), first=T0, last=T0, factor=4) == [
        (T0, T0 + dt.timedelta(milliseconds=2))
    ]


def test_given_cuts_off_the_millisecond_grid_when_split_then_they_are_truncated_to_ms() -> None:
    pieces = split_range(T0, T0 + dt.timedelta(milliseconds=10), first=T0, last=T0, factor=3)
    assert all(b.microsecond % 1000 == 0 for _, b in pieces[:-1] if b is not None)


# -- Id ranges ----------------------------------------------------------------------------------


def test_given_15_character_ids_when_given_a_checksum_then_it_is_salesforces_case_safety_suffix() -> None:
    # the suffix encodes which of each 5 characters are upper case (Salesforce's documented example first)
    assert id_with_checksum("0015000000Gv7qJ") == "0015000000Gv7qJAAR"
    assert id_with_checksum("001000000000000") == "001000000000000AAA"
    assert id_with_checksum("ZZZZZzzzzzABCDE") == "ZZZZZzzzzzABCDE5A5"
    with pytest.raises(ValueError, match="15-character"):
        id_with_checksum("001' OR Id != '")


def test_given_an_id_range_when_split_then_the_cuts_increase_inside_it_and_are_valid_ids() -> None:
    first, last = "00Q5g00000A0000AAA", "00Q5g00000Z0000AAA"
    cuts = split_id_range(first, last, factor=4)
    assert len(cuts) == 3
    assert first < cuts[0] < cuts[1] < cuts[2] <= last
    assert all(cut == id_with_checksum(cut[:15]) for cut in cuts)
    assert all(cut.startswith("00Q5g00000") for cut in cuts)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=62**12 - 1), min_size=2, max_size=40, unique=True),
    st.integers(min_value=2, max_value=6),
)
def test_given_ids_when_their_range_is_split_then_every_id_falls_in_exactly_one_piece(
    numbers: list[int], factor: int
) -> None:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

    def minted(n: int) -> str:
        digits = []
        for _ in range(12):
            n, d = divmod(n, 62)
            digits.append(alphabet[d])
        return id_with_checksum("00Q" + "".join(reversed(digits)))

    ids = sorted(minted(n) for n in numbers)
    cuts = split_id_range(ids[0], ids[-1], factor=factor)
    if not cuts:
        assert max(numbers) - min(numbers) + 1 < factor
        return
    bounds: list[str | None] = [None, *cuts, None]
    for record_id in ids:  # the pieces [None, c1), [c1, c2) ... [cn, None) hold each id once
        owners = [
            i
            for i in range(len(bounds) - 1)
            if (bounds[i] is None or record_id >= str(bounds[i]))
            and (bounds[i + 1] is None or record_id < str(bounds[i + 1]))
        ]
        assert len(owners) == 1


def test_given_fewer_ids_than_pieces_when_split_then_there_is_no_cut() -> None:
    assert split_id_range("001000000000001AAA", "001000000000002AAA", factor=4) == []


def test_given_a_part_when_it_fails_then_it_is_cut_by_stamp_first_and_by_id_once_a_piece_fails_again() -> None:
    assert split_kind(Part()) == "stamp"
    assert split_kind(Part(split_by="stamp", depth=1)) == "id"
    assert split_kind(Part(split_by="id", depth=1)) == "id"


def test_given_an_id_range_part_when_building_soql_then_both_queries_are_bounded_by_id() -> None:
    ids = ("001000000000001AAA", "001000000000009AAA")
    bulk = bulk_soql(SPEC, ["Id"], T0, None, ids=ids)
    assert bulk == (
        "SELECT Id FROM Account WHERE SystemModstamp >= 2026-01-01T00:00:00.000Z"
        " AND Id >= '001000000000001AAA' AND Id < '001000000000009AAA'"
    )
    rest = rest_soql(SPEC, ["Id"], None, None, ids=(None, ids[1]))
    assert rest == "SELECT Id FROM Account WHERE Id < '001000000000009AAA' ORDER BY SystemModstamp, Id"
    with pytest.raises(ValueError, match="malformed record id"):
        bulk_soql(SPEC, ["Id"], None, None, ids=("x' OR Name != '", None))


# -- SOQL ---------------------------------------------------------------------------------------

SPEC = ObjectSpec("Account", "Account")


def test_given_an_unbounded_part_when_building_bulk_soql_then_there_is_no_where_and_no_order() -> None:
    assert bulk_soql(SPEC, ["Id", "Name"], None, None) == "SELECT Id, Name FROM Account"


def test_given_a_bounded_part_when_building_bulk_soql_then_it_is_half_open() -> None:
    soql = bulk_soql(SPEC, ["Id"], T0, T0 + dt.timedelta(days=1))
    assert soql == (
        "SELECT Id FROM Account WHERE SystemModstamp >= 2026-01-01T00:00:00.000Z"
        " AND SystemModstamp < 2026-01-02T00:00:00.000Z"
    )
    assert "ORDER BY" not in soql


def test_given_a_resume_position_when_building_rest_soql_then_it_continues_after_it_in_order() -> None:
    soql = rest_soql(SPEC, ["Id"], None, T0, ("2025-12-31T10:00:00.000Z", "001000000000001AAA"))
    assert soql.endswith("ORDER BY SystemModstamp, Id")
    assert "SystemModstamp < 2026-01-01T00:00:00.000Z" in soql
    assert (
        "(SystemModstamp > 2025-12-31T10:00:00.000Z OR (SystemModstamp = 2025-12-31T10:00:00.000Z"
        " AND Id > '001000000000001AAA'))"
    ) in soql


def test_given_a_hostile_name_or_id_when_building_soql_then_it_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        bulk_soql(SPEC, ["Id", "Name FROM User --"], None, None)
    with pytest.raises(ValueError, match="malformed record id"):
        rest_soql(SPEC, ["Id"], None, None, ("2026-01-01T00:00:00.000Z", "x' OR Id != '"))


# -- row typing ---------------------------------------------------------------------------------


def test_given_a_bulk_csv_row_when_typed_then_booleans_and_numbers_match_rest() -> None:
    types = field_types(
        describe(("Active__c", "boolean"), ("Employees", "int"), ("Revenue", "currency"), ("Name", "string")),
        ["Id", "IsDeleted", "Active__c", "Employees", "Revenue", "Name", "SystemModstamp"],
    )
    row = {
        "Id": "001",
        "IsDeleted": "false",
        "Active__c": "true",
        "Employees": "42",
        "Revenue": "1250.5",
        "Name": "true",
        "SystemModstamp": "2026-01-01T00:00:00.000Z",
    }
    typed = typed_row(row, types)
    assert typed == {**row, "IsDeleted": False, "Active__c": True, "Employees": 42, "Revenue": 1250.5}
    assert types.datetimes == {"SystemModstamp"}


def test_given_nulls_and_unparseable_values_when_typed_then_nulls_stay_and_text_is_kept() -> None:
    types = FieldTypes(integers=frozenset({"N"}), booleans=frozenset({"B"}))
    assert typed_row({"N": None, "B": None}, types) == {"N": None, "B": None}
    assert typed_row({"N": "abc", "B": "maybe"}, types) == {"N": "abc", "B": "maybe"}


# -- planning -----------------------------------------------------------------------------------


def test_given_compound_and_formula_fields_when_planned_then_only_components_are_selected() -> None:
    d = describe(("BillingAddress", "address"), ("BillingCity", "string"), ("Location__c", "location"))
    d["fields"].append({"name": "Score__c", "type": "double", "calculated": True})
    result = plan_object(SPEC, d, bulk_unsupported=frozenset())
    assert result.mode == "bulk"
    assert "BillingCity" in result.fields
    assert not {"BillingAddress", "Location__c", "Score__c"} & set(result.fields)


def test_given_an_object_bulk_cannot_query_when_planned_then_it_goes_to_rest_with_a_warning() -> None:
    result = plan_object(SPEC, describe(), bulk_unsupported=frozenset({"Account"}))
    assert result.mode == "rest"
    assert any("REST" in w for w in result.warnings)


def test_given_an_unreadable_included_field_when_planned_then_it_is_left_out_with_a_warning() -> None:
    spec = ObjectSpec("Account", "Account", include_fields=("Name", "Secret__c"))
    result = plan_object(spec, describe(("Name", "string"), ("Other", "string")), bulk_unsupported=frozenset())
    assert "Name" in result.fields and "Secret__c" not in result.fields and "Other" not in result.fields
    assert any("Secret__c" in w for w in result.warnings)


def test_given_every_included_field_unreadable_when_planned_then_only_engine_fields_are_read() -> None:
    spec = ObjectSpec("Account", "Account", include_fields=("Secret__c",))
    result = plan_object(spec, describe(("Other", "string")), bulk_unsupported=frozenset())
    assert set(result.fields) == {"Id", "SystemModstamp", "IsDeleted"}


def test_given_an_unreadable_key_field_when_planned_then_the_object_cannot_be_copied() -> None:
    d = {"name": "Account", "fields": [{"name": "Id", "type": "id"}]}
    with pytest.raises(ConfigurationError, match="SystemModstamp"):
        plan_object(SPEC, d, bulk_unsupported=frozenset())


# -- progress and the copy document --------------------------------------------------------------


def test_given_progress_when_figures_are_asked_then_rate_and_eta_follow() -> None:
    assert progress_figures(5000, 20000, 10.0) == {"rate_per_s": 500.0, "eta_seconds": 30.0}
    assert progress_figures(0, 100, 10.0) == {"rate_per_s": None, "eta_seconds": None}
    assert progress_figures(10, None, 2.0) == {"rate_per_s": 5.0, "eta_seconds": None}


def test_given_parts_when_the_total_is_asked_then_it_is_known_only_when_every_open_part_knows_it() -> None:
    copy = Copy("Account", "c1", ["Id"], {}, {}, parts=[Part(done=True, records_done=7, total=7), Part(total=None)])
    assert copy.total is None
    copy.parts[1].total = 5
    assert copy.total == 12
    assert copy.current == 1


def test_given_a_copy_document_when_round_tripped_then_it_is_unchanged() -> None:
    copy = Copy("Account", "c1", ["Id"], FieldTypes().to_doc(), {"max_records": 10}, parts=[Part(lo="x", depth=1)])
    again = Copy.from_doc(copy.to_doc(), version=3)
    assert again.to_doc() == copy.to_doc() and again.version == 3


# -- input validation happens before anything is touched -----------------------------------------


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"step": "explode", "object": "Account"}, "unknown full-sync step"),
        ("not a dict", "unknown full-sync step"),
        ({"step": "load_page"}, "object"),
        ({"step": "load_page", "object": "Bad Name"}, "object"),
        ({"step": "poll_job", "object": "Account", "surprise": 1}, "surprise"),
        ({"step": "load_page", "object": "Account", "pages_this_execution": -1}, "pages_this_execution"),
    ],
)
def test_given_a_malformed_step_event_when_run_then_invalid_execution_input_names_the_problem(
    event: Any, message: str
) -> None:
    with pytest.raises(InvalidExecutionInput, match=message):
        run_step(event, None)  # type: ignore[arg-type]  # nothing may be touched before validation


# -- the end of an execution: summary and continuation --------------------------------------------


class _Settings:
    def __init__(self) -> None:
        from sfsync.core.registry import build_registry

        self.registry = build_registry()


class _Deps:
    def __init__(self, stepfunctions: Any = None) -> None:
        self.settings = _Settings()
        self.stepfunctions = stepfunctions


def test_given_results_when_summarized_then_objects_with_pages_left_continue_under_the_next_name() -> None:
    results = [
        {"object": "Account", "next": "done", "status": "done", "records_copied": 5, "total": 5},
        {"object": "Lead", "next": "continue", "status": "running", "records_copied": 7, "total": 90},
        {"object": "Contact", "next": "failed", "status": "failed", "error": {"Error": "X"}},
    ]
    out = run_step({"step": "summarize", "results": results, "base_name": "copy-1", "generation": 2}, _Deps())  # type: ignore[arg-type]
    assert out["continue"] is True and out["objects"] == ["Lead"]
    assert out["generation"] == 3 and out["name"] == "copy-1-3"
    assert out["summary"]["Contact"]["status"] == "failed"
    assert (out["records_copied"], out["total"]) == (12, None)  # Contact's total is not known


def test_given_progress_in_the_results_when_summarized_then_rate_eta_and_totals_are_in_the_output() -> None:
    results = [
        {"object": "Account", "next": "done", "records_copied": 5, "total": 5, "rate_per_s": 2.5, "eta_seconds": 0},
        {"object": "Lead", "next": "continue", "records_copied": 30, "total": 90, "rate_per_s": 3.0, "eta_seconds": 20},
    ]
    out = run_step({"step": "summarize", "results": results, "base_name": "b"}, _Deps())  # type: ignore[arg-type]
    assert out["summary"]["Lead"]["rate_per_s"] == 3.0 and out["summary"]["Lead"]["eta_seconds"] == 20
    assert (out["records_copied"], out["total"]) == (35, 95)


def test_given_nothing_left_when_summarized_then_there_is_no_continuation() -> None:
    results = [{"object": "Account", "next": "done", "status": "done"}]
    out = run_step({"step": "summarize", "results": results, "base_name": "b"}, _Deps())  # type: ignore[arg-type]
    assert out["continue"] is False and out["objects"] == []


def test_given_a_result_for_an_unconfigured_object_when_summarized_then_it_is_refused() -> None:
    with pytest.raises(InvalidExecutionInput, match="configured object"):
        run_step({"step": "summarize", "results": [{"object": "Nope"}], "base_name": "b"}, _Deps())  # type: ignore[arg-type]


class _StepFunctions:
    def __init__(self, existing: set[str]) -> None:
        self.existing = existing
        self.started: list[dict[str, Any]] = []

    def start_execution(self, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        if kwargs["name"] in self.existing:
            raise ClientError({"Error": {"Code": "ExecutionAlreadyExists", "Message": "exists"}}, "StartExecution")
        self.existing.add(kwargs["name"])
        self.started.append(kwargs)
        return {"executionArn": f"arn:aws:states:us-east-1:123456789012:execution:sm:{kwargs['name']}"}


CONTINUE = {
    "step": "continue_as_new",
    "state_machine_arn": "arn:aws:states:us-east-1:123456789012:stateMachine:sm",
    "name": "copy-1",
    "objects": ["Lead"],
    "base_name": "copy",
    "generation": 1,
}


def test_given_a_continuation_when_started_twice_then_the_second_start_is_a_no_op() -> None:
    sfn = _StepFunctions(set())
    first = run_step(CONTINUE, _Deps(sfn))  # type: ignore[arg-type]
    second = run_step(CONTINUE, _Deps(sfn))  # type: ignore[arg-type]
    assert first["started"] is True and second["started"] is False
    assert len(sfn.started) == 1
    assert json.loads(sfn.started[0]["input"]) == {
        "objects": ["Lead"],
        "requested_by": "unknown",
        "base_name": "copy",
        "generation": 1,
    }


# -- the dispatcher's view ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("watermark_done", "status", "gate"),
    [
        (False, None, "copy"),
        (False, "running", "copying"),
        (True, "running", "copying"),  # an operator's re-sync holds the incremental cycles back
        (False, "failed", "failed"),
        (True, "done", "done"),
        (True, None, "done"),
    ],
)
def test_given_the_state_of_an_object_when_gated_then_the_dispatcher_knows_what_to_do(
    watermark_done: bool, status: str | None, gate: str
) -> None:
    from sfsync.fullcopy.plan import copy_gate

    assert copy_gate(watermark_done, status) == gate


def test_given_the_same_request_when_named_then_the_execution_name_is_the_same() -> None:
    from sfsync.fullcopy.plan import execution_name

    first = execution_name(["Lead", "Account"], reason="first")
    assert first == execution_name(["Account", "Lead"], reason="first")
    assert first != execution_name(["Account"], reason="first")
    resync = execution_name(["Lead"], reason="resync", token="2026-11-25T10:00:00Z")
    assert resync != execution_name(["Lead"], reason="resync", token="2026-11-26T10:00:00Z")
    assert all(len(n) <= 64 and n.replace("-", "").replace("_", "").isalnum() for n in (first, resync))
    with pytest.raises(ValueError):
        execution_name([], reason="first")
