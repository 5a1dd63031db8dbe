"""Paging returns each matching row exactly once, for any page size and any concurrent mutation.

REST pagination (``nextRecordsUrl`` with ``Sforce-Query-Options: batchSize``) and Bulk API 2.0
locator paging (``maxRecords``) are both driven through the unmodified simple-salesforce client over
HTTPS, while the org is mutated between every two page fetches.  The result must be exactly the rows
that matched when the query (or the job) started: no row missing, none twice.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sfsync_emulator.emulator import Emulator

pytestmark = pytest.mark.property

SOQL = "SELECT Id, Name, SystemModstamp FROM Account ORDER BY SystemModstamp, Id"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    emulator = Emulator.start(seed=11, records=0)
    for i in range(900):
        emulator.org.create("Account", {"Name": f"Paging {i:04d}"}, as_api=False)
    yield emulator
    emulator.stop()


# One mutation: (kind, which record — an index into the current live ids, modulo their count)
mutation = st.tuples(st.sampled_from(["update", "delete", "create", "undelete"]), st.integers(0, 10_000))


def _live_ids(emu: Emulator) -> list[str]:
    sf = emu.salesforce()
    return [r["Id"] for r in sf.query_all("SELECT Id FROM Account ORDER BY Id")["records"]]


def _deleted_ids(emu: Emulator) -> list[str]:
    sf = emu.salesforce()
    rows = sf.query_all("SELECT Id FROM Account WHERE IsDeleted = TRUE ORDER BY Id", include_deleted=True)
    return [r["Id"] for r in rows["records"]]


def _mutate(emu: Emulator, kind: str, pick: int, counter: list[int]) -> None:
    counter[0] += 1
    if kind == "create":
        emu.org.create("Account", {"Name": f"Concurrent {counter[0]}"}, as_api=False)
        return
    if kind == "undelete":
        deleted = _deleted_ids(emu)
        if deleted:
            emu.org.undelete("Account", deleted[pick % len(deleted)])
        return
    live = _live_ids(emu)
    target = live[pick % len(live)]
    if kind == "update":
        emu.org.update("Account", target, {"Name": f"Changed {counter[0]}"}, as_api=False)
    else:
        emu.org.delete("Account", target)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.integers(200, 2000), include_deleted=st.booleans(), mutations=st.lists(mutation, max_size=6))
def test_rest_paging_returns_each_row_once_under_mutation(
    emu: Emulator, batch: int, include_deleted: bool, mutations: list[tuple[str, int]]
) -> None:
    sf = emu.salesforce()
    expected = sf.query_all(SOQL, include_deleted=include_deleted)["records"]
    expected_ids = [r["Id"] for r in expected]

    headers = {"Sforce-Query-Options": f"batchSize={batch}"}
    page = sf.query(SOQL, include_deleted=include_deleted, headers=headers)
    seen = [r["Id"] for r in page["records"]]
    assert page["totalSize"] == len(expected_ids)
    counter = [0]
    pending = list(mutations)
    while not page["done"]:
        assert len(page["records"]) <= batch
        if pending:
            _mutate(emu, *pending.pop(0), counter)
        page = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True, headers=headers)
        seen.extend(r["Id"] for r in page["records"])

    assert seen == expected_ids  # same rows, same order, each exactly once


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    max_records=st.integers(50, 700),
    operation=st.sampled_from(["query", "queryAll"]),
    mutations=st.lists(mutation, max_size=5),
)
def test_bulk_locator_paging_returns_each_row_once_under_mutation(
    emu: Emulator, max_records: int, operation: str, mutations: list[tuple[str, int]]
) -> None:
    sf = emu.salesforce()
    include_deleted = operation == "queryAll"
    expected_ids = {r["Id"] for r in sf.query_all("SELECT Id FROM Account", include_deleted=include_deleted)["records"]}

    handler = sf.bulk2.Account
    run = handler.query_all if include_deleted else handler.query
    pages = run("SELECT Id, Name FROM Account", max_records=max_records, wait=0)
    seen: list[str] = []
    counter = [0]
    pending = list(mutations)
    for chunk in pages:
        rows = list(csv.DictReader(io.StringIO(chunk)))
        assert len(rows) <= max_records
        seen.extend(row["Id"] for row in rows)
        if pending:
            _mutate(emu, *pending.pop(0), counter)

    assert len(seen) == len(set(seen))  # never twice
    assert set(seen) == expected_ids  # nothing missing, nothing extra: the snapshot at job start
