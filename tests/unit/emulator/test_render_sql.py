"""Query rows rendered by SQLite (REST JSON text, Bulk CSV lines) equal the Python renderers' output.

The REST and Bulk paths render pages in SQL for speed (``CompiledQuery.render_sql_json`` /
``render_sql_csv``); a row whose values SQL cannot render exactly is flagged and rendered by
``render_json`` / ``render_csv`` instead.  These tests store arbitrary values straight into the
columns and check, for every unflagged row, that both renderings agree.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sfsync_emulator import soql
from sfsync_emulator.soql import CompiledQuery, compile_query, join_json_parts, json_params
from sfsync_emulator.store import Org

pytestmark = pytest.mark.unit

V = "59.0"
LEAD_SOQL = (
    "SELECT Id, LastName, Company, Description, CreatedDate, IsConverted, AnnualRevenue, Latitude, "
    "NumberOfEmployees, ConvertedDate, Address FROM Lead"
)
BULK_LEAD_SOQL = LEAD_SOQL.replace(", Address", "")
OPP_SOQL = "SELECT Id, Name, Amount, Probability, ExpectedRevenue, Account.Name, Account.Owner.Name FROM Opportunity"
TASK_SOQL = "SELECT Id, Subject, Who.Name, What.Name, What.Type FROM Task"

texts = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(['a "q" b', "x\x00y", "l1\nl2\r\n", "é€😀", ""]))
floats = st.one_of(
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.1 + 0.2, 1e20, 1e-7, -0.0, 1234.5, 100.0, 2.5e15, 0.0001]),
)
millis = st.one_of(st.none(), st.integers(min_value=-(10**12), max_value=253_402_300_799_000))


def _rendered(org: Org, soql: str, *, bulk: bool) -> tuple[CompiledQuery, list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    compiled = compile_query(soql, org.schema, include_deleted=True, bulk=bulk, now_ms=org.clock.now_ms())
    cursor = org.open_cursor(compiled.sql, compiled.params)
    raw = org.fetch_cursor(cursor.id, 0, 1000)
    if bulk:
        select = compiled.render_sql_csv(",")
        sql_rows = org.fetch_cursor_select(cursor.id, select, {}, 0, 1000)
    else:
        json_select = compiled.render_sql_json()
        assert json_select is not None
        sql_rows = org.fetch_cursor_select(cursor.id, json_select, json_params(V), 0, 1000)
    org.close_cursor(cursor.id)
    return compiled, raw, sql_rows


def _csv_line(cells: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="").writerow(cells)
    return buf.getvalue().replace("\x00", "")


def _assert_same(org: Org, soql: str, *, bulk: bool) -> int:
    """Compare every unflagged row; returns how many rows were flagged."""
    compiled, raw, sql_rows = _rendered(org, soql, bulk=bulk)
    assert len(raw) == len(sql_rows) > 0
    flagged = 0
    for row, (rowid, flag, *parts) in zip(raw, sql_rows, strict=True):
        assert rowid >= 1
        if flag:
            flagged += 1
            continue
        if bulk:
            assert ",".join(parts).replace("\x00", "") == _csv_line(compiled.render_csv(row))
        else:
            expected = compiled.render_json(row, V)
            got = json.loads(join_json_parts(tuple(parts)))
            assert got == expected
            assert list(got) == list(expected)  # field order too
    return flagged


@pytest.fixture
def lead(org: Org) -> str:
    return org.create("Lead", {"LastName": "Base", "Company": "Acme"}, as_api=False)


def _store(org: Org, obj: str, rid: str, values: dict[str, Any]) -> None:
    sets = ", ".join(f'"{k}" = ?' for k in values)
    with org.lock:
        org.conn.execute(f'UPDATE "{obj}" SET {sets} WHERE "Id" = ?', [*values.values(), rid])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=texts,
    company=texts,
    description=texts,
    created=millis,
    converted=st.one_of(st.none(), st.integers(0, 1)),
    revenue=floats,
    latitude=floats,
    employees=st.one_of(st.none(), st.integers(-(2**53), 2**53)),
)
def test_given_any_stored_values_when_rendered_in_sql_then_unflagged_rows_match_python(
    org: Org,
    lead: str,
    name: str | None,
    company: str | None,
    description: str | None,
    created: int | None,
    converted: int | None,
    revenue: float | None,
    latitude: float | None,
    employees: int | None,
) -> None:
    _store(
        org,
        "Lead",
        lead,
        {
            "LastName": name,
            "Company": company,
            "Description": description,
            "CreatedDate": created,
            "IsConverted": converted,
            "AnnualRevenue": revenue,
            "Latitude": latitude,
            "NumberOfEmployees": employees,
        },
    )
    org.nul_text_written = True  # the values above bypass the DML pipeline that tracks NULs

    _assert_same(org, LEAD_SOQL, bulk=False)
    _assert_same(org, BULK_LEAD_SOQL, bulk=True)


def test_given_ordinary_values_when_rendered_in_sql_then_no_row_needs_python(org: Org) -> None:
    for i in range(20):
        org.create(
            "Lead",
            {
                "LastName": f'O"Neil {i}',
                "Company": "Acme, Inc.",
                "AnnualRevenue": 1234.5 + i,
                "NumberOfEmployees": i,
                "Latitude": 48.8566,
                "Description": "line1\nline2",
            },
            as_api=False,
        )

    assert _assert_same(org, LEAD_SOQL, bulk=False) == 0
    assert _assert_same(org, BULK_LEAD_SOQL, bulk=True) == 0


def test_given_float_beyond_15_digits_when_rendered_in_sql_then_row_is_flagged_for_python(org: Org, lead: str) -> None:
    _store(org, "Lead", lead, {"AnnualRevenue": 0.1 + 0.2})

    assert _assert_same(org, LEAD_SOQL, bulk=False) == 1
    assert _assert_same(org, BULK_LEAD_SOQL, bulk=True) == 1


def test_given_nul_written_by_dml_when_rendered_in_sql_then_row_is_flagged(org: Org) -> None:
    org.create("Lead", {"LastName": "N\x00L", "Company": "Acme"}, as_api=False)

    assert org.nul_text_written
    assert _assert_same(org, BULK_LEAD_SOQL, bulk=True) == 1


def test_given_parents_formulas_and_polymorphic_lookups_when_rendered_in_sql_then_they_match(org: Org) -> None:
    account = org.create("Account", {"Name": "Parent Co"}, as_api=False)
    org.create(
        "Opportunity",
        {"Name": "With parent", "StageName": "Prospecting", "CloseDate": "2026-12-01", "AccountId": account},
        as_api=False,
    )
    org.create(
        "Opportunity",
        {"Name": "Orphan", "StageName": "Prospecting", "CloseDate": "2026-12-01", "Amount": 1000, "Probability": 35},
        as_api=False,
    )
    contact = org.create("Contact", {"LastName": "Who"}, as_api=False)
    org.create("Task", {"Subject": "Call", "WhoId": contact, "WhatId": account}, as_api=False)
    org.create("Task", {"Subject": "Alone"}, as_api=False)

    assert _assert_same(org, OPP_SOQL, bulk=False) == 0
    assert _assert_same(org, TASK_SOQL, bulk=False) == 0
    assert _assert_same(org, OPP_SOQL, bulk=True) == 0
    assert _assert_same(org, TASK_SOQL.replace(", What.Type", ""), bulk=True) == 0


def test_given_more_fields_than_one_sql_call_takes_when_rendered_then_parts_are_joined(
    org: Org, lead: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(soql, "_JSON_MAX_PAIRS", 4)
    monkeypatch.setattr(soql, "_PRINTF_MAX_ARGS", 3)
    _store(org, "Lead", lead, {"Description": 'say "x"', "AnnualRevenue": 12.5})

    compiled, _raw, json_rows = _rendered(org, LEAD_SOQL, bulk=False)
    _compiled, _raw, csv_rows = _rendered(org, BULK_LEAD_SOQL, bulk=True)

    assert len(json_rows[0]) - 2 == 3 and len(csv_rows[0]) - 2 == 4  # rowid, flag, then the parts
    assert _assert_same(org, LEAD_SOQL, bulk=False) == 0
    assert _assert_same(org, BULK_LEAD_SOQL, bulk=True) == 0
    assert compiled.render_sql_json() is not None


def test_given_relationship_wider_than_one_sql_call_when_compiled_then_json_falls_back_to_python(
    org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(soql, "_JSON_MAX_PAIRS", 2)

    compiled = compile_query(OPP_SOQL, org.schema, include_deleted=False)

    assert compiled.render_sql_json() is None
