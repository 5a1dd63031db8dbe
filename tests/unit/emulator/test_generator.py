"""Unit tests of the deterministic org generator (small sizes)."""

from __future__ import annotations

import pytest
from sfsync_emulator.catalogue import default_schema
from sfsync_emulator.clock import Clock
from sfsync_emulator.generator import generate_org
from sfsync_emulator.schema import quote_ident
from sfsync_emulator.store import DAY_MS, Org

from .conftest import START_MS

pytestmark = pytest.mark.unit


def build(seed: int, records: int) -> tuple[Org, dict[str, int]]:
    org = Org(default_schema(), Clock(START_MS))
    return org, generate_org(org, seed=seed, records=records)


def dump(org: Org) -> dict[str, list[tuple[object, ...]]]:
    out = {}
    for name in org.schema.objects:
        out[name] = org.conn.execute(f'SELECT * FROM {quote_ident(name)} ORDER BY "Id"').fetchall()
    out["_deletelog"] = org.conn.execute("SELECT * FROM _deletelog ORDER BY id").fetchall()
    return out


def test_given_same_seed_and_clock_when_generated_twice_then_orgs_are_identical() -> None:
    a, counts_a = build(7, 3000)
    b, counts_b = build(7, 3000)
    assert counts_a == counts_b
    assert dump(a) == dump(b)


def test_given_other_seed_when_generated_then_values_differ() -> None:
    a, _ = build(7, 500)
    b, _ = build(8, 500)
    assert dump(a)["Lead"] != dump(b)["Lead"]


@pytest.mark.parametrize("records", [100, 2500])
def test_given_record_count_when_generated_then_counts_sum_to_it_and_every_object_is_populated(records: int) -> None:
    org, counts = build(1, records)
    assert sum(counts.values()) == records
    assert set(counts) == set(org.schema.objects)
    for name, n in counts.items():
        extra = 2 if name == "User" else 0  # the org's admin and integration users
        assert org.count(name, include_deleted=True) == n + extra
        assert n >= 1


def test_given_generated_org_then_every_reference_points_to_an_existing_record_of_an_allowed_type() -> None:
    org, _ = build(3, 4000)
    for obj in org.schema.objects.values():
        for f in obj.stored_fields:
            if f.type != "reference":
                continue
            rows = org.conn.execute(
                f'SELECT t.{quote_ident(f.name)}, t."IsDeleted" FROM {quote_ident(obj.name)} t '
                f"WHERE t.{quote_ident(f.name)} IS NOT NULL"
            ).fetchall()
            for value, _deleted in rows:
                target = org.schema.object_for_id(value)
                assert target is not None and target.name in f.reference_to, (obj.name, f.name, value)
                hit = org.conn.execute(
                    f'SELECT "IsDeleted" FROM {quote_ident(target.name)} WHERE "Id" = ?', (value,)
                ).fetchone()
                assert hit is not None, (obj.name, f.name, value)
                if not _deleted and (obj.name, f.name) in _cascade_links(org):
                    assert hit[0] == 0, f"live {obj.name} points to deleted parent via {f.name}"


def _cascade_links(org: Org) -> set[tuple[str, str]]:
    return {(child, field) for o in org.schema.objects.values() for child, field in o.cascade_delete}


def test_given_generated_org_then_campaign_members_are_unique_and_derived_fields_consistent() -> None:
    org, _ = build(5, 5000)
    c = org.conn
    dups = c.execute(
        'SELECT COUNT(*) FROM (SELECT "CampaignId", "LeadOrContactId" FROM "CampaignMember" '
        "GROUP BY 1, 2 HAVING COUNT(*) > 1)"
    ).fetchone()[0]
    assert dups == 0
    bad = c.execute(
        'SELECT COUNT(*) FROM "CampaignMember" WHERE "LeadOrContactId" != COALESCE("ContactId", "LeadId") '
        'OR "HasResponded" != ("Status" = \'Responded\')'
    ).fetchone()[0]
    assert bad == 0
    names = c.execute('SELECT COUNT(*) FROM "Contact" WHERE "Name" != "FirstName" || \' \' || "LastName"').fetchone()
    assert names[0] == 0


def test_given_generated_org_then_stamps_span_ninety_days_and_lifecycle_states_exist_without_cdc() -> None:
    org, _ = build(9, 20_000)
    c = org.conn
    lo, hi = c.execute('SELECT MIN("CreatedDate"), MAX("SystemModstamp") FROM "Lead"').fetchone()
    assert START_MS - 90 * DAY_MS <= lo < START_MS - 60 * DAY_MS and hi <= START_MS
    bad = c.execute(
        'SELECT COUNT(*) FROM "Task" WHERE NOT ("CreatedDate" <= "LastModifiedDate" '
        'AND "LastModifiedDate" <= "SystemModstamp")'
    ).fetchone()[0]
    assert bad == 0
    assert c.execute('SELECT COUNT(*) FROM "Task" WHERE "IsArchived" = 1').fetchone()[0] > 0
    assert c.execute('SELECT COUNT(*) FROM "Lead" WHERE "IsConverted" = 1').fetchone()[0] > 0
    deleted = c.execute('SELECT COUNT(*) FROM "Lead" WHERE "IsDeleted" = 1').fetchone()[0]
    assert deleted > 0
    in_log = c.execute("SELECT COUNT(*) FROM _deletelog WHERE obj = 'Lead'").fetchone()[0]
    assert in_log == deleted
    out = org.get_deleted("Lead", START_MS - 14 * DAY_MS, START_MS)
    assert len(out["deletedRecords"]) == deleted
    assert org.cdc.events == [] and org.change_log == []
    # the org stays usable: new ids do not collide with seeded ones
    rid = org.create("Lead", {"LastName": "After", "Company": "Seed"})
    assert org.get("Lead", rid) is not None


def test_given_out_of_range_record_count_then_value_error() -> None:
    org = Org(default_schema(), Clock(START_MS))
    with pytest.raises(ValueError, match="between 100 and 1,000,000"):
        generate_org(org, seed=1, records=99)
