"""Deterministic org generator: ``generate_org(org, seed=..., records=...)``.

Same seed + same clock start → identical org (ids, values, stamps).  Records are spread over
every object with realistic relationships; CreatedDate/SystemModstamp fall in the ~90 days before
the clock's now; some activities are archived, some leaves sit in the recycle bin (with delete-log
entries), some leads are converted.

Seeding is not a change: rows are built column-wise in chunks and bulk-inserted with
``executemany`` straight into the tables — no validation pipeline, no change log, no CDC.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterable
from typing import Any

from .catalogue import (
    ACCOUNT_TYPE,
    CAMPAIGN_STATUS,
    CAMPAIGN_TYPE,
    CLOSED_STAGES,
    CONTACT_ROLE,
    INDUSTRY,
    LEAD_SOURCE,
    LEAD_STATUS,
    OPPORTUNITY_STAGE,
    PROJECT_STATUS,
    RATING,
    SALUTATION,
    TASK_PRIORITY,
    TASK_STATUS,
    TASK_TYPE,
    WON_STAGES,
)
from .schema import ms_to_datetime
from .store import DAY_MS, Org

SPAN_DAYS = 90
DELETE_SPAN_DAYS = 10
CHUNK = 20_000

# Share of the records left after users, campaigns and member statuses.
WEIGHTS: tuple[tuple[str, float], ...] = (
    ("Account", 0.06),
    ("Contact", 0.18),
    ("Lead", 0.20),
    ("Opportunity", 0.06),
    ("OpportunityContactRole", 0.05),
    ("CampaignMember", 0.15),
    ("Task", 0.14),
    ("Event", 0.08),
    ("Project__c", 0.03),
    ("Milestone__c", 0.05),
)

FIRST = (
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Amelie",
    "Lucas",
    "Chloe",
    "Hugo",
    "Ines",
    "Yuki",
    "Hiroshi",
    "Priya",
    "Arjun",
    "Fatima",
)
LAST = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
)
WORD_A = (
    "Global",
    "United",
    "Pacific",
    "Northern",
    "Bright",
    "Blue",
    "Summit",
    "Pioneer",
    "Apex",
    "Vertex",
    "Silver",
    "Green",
    "Quantum",
    "Atlas",
    "Nova",
    "Prime",
    "Urban",
    "Coastal",
    "Iron",
    "Golden",
)
WORD_B = (
    "Dynamics",
    "Systems",
    "Labs",
    "Industries",
    "Foods",
    "Logistics",
    "Energy",
    "Health",
    "Media",
    "Partners",
    "Solutions",
    "Networks",
    "Robotics",
    "Textiles",
    "Analytics",
    "Motors",
    "Capital",
    "Works",
)
SUFFIX = ("Inc", "LLC", "Ltd", "Corp", "GmbH", "SA", "plc", "Co")
CITIES = (
    ("San Francisco", "California", "CA", "94105", "United States", "US"),
    ("New York", "New York", "NY", "10001", "United States", "US"),
    ("Austin", "Texas", "TX", "73301", "United States", "US"),
    ("Chicago", "Illinois", "IL", "60601", "United States", "US"),
    ("London", None, None, "EC1A 1BB", "United Kingdom", "GB"),
    ("Paris", None, None, "75001", "France", "FR"),
    ("Berlin", None, None, "10115", "Germany", "DE"),
    ("Tokyo", None, None, "100-0001", "Japan", "JP"),
    ("Toronto", "Ontario", "ON", "M5H 2N2", "Canada", "CA"),
    ("Sydney", "New South Wales", "NSW", "2000", "Australia", "AU"),
)
STREETS = ("Main St", "Market St", "Oak Ave", "Pine Rd", "Elm St", "Lake Dr", "Hill Rd", "Park Ave")
TITLES = ("CEO", "CTO", "VP Sales", "VP Marketing", "Director of IT", "Engineer", "Buyer", "Analyst", "Manager")
SUBJECTS = ("Call", "Send Letter", "Send Quote", "Follow up", "Email", "Demo", "Check-in", "Renewal discussion")


def _plan(records: int) -> dict[str, int]:
    users = min(200, max(3, records // 5000))
    campaigns = max(2, records // 500)
    statuses = 2 * campaigns
    rest = records - users - campaigns - statuses
    counts = {"User": users, "Campaign": campaigns, "CampaignMemberStatus": statuses}
    for name, weight in WEIGHTS:
        counts[name] = max(1, int(rest * weight))
    counts["Lead"] += records - sum(counts.values())
    return counts


class _Gen:
    def __init__(self, org: Org, seed: int) -> None:
        self.org = org
        self.rng = random.Random(seed)
        self.now = org.clock.now_ms()
        self.ids: dict[str, list[str]] = {}
        self.deleted: list[tuple[str, str, int]] = []
        self.users: list[str] = [org.admin_user_id, org.integration_user_id]

    # ------------------------------------------------------------ primitives
    def mint(self, obj: str, n: int) -> list[str]:
        prefix = self.org.schema.objects[obj].key_prefix
        mint = self.org.minter.mint
        out = [mint(prefix) for _ in range(n)]
        self.ids[obj] = out
        return out

    def pick(self, pool: list[str], n: int) -> list[str]:
        return self.rng.choices(pool, k=n) if pool else [None] * n  # type: ignore[list-item]

    def stamps(self, n: int) -> tuple[list[int], list[int], list[int]]:
        """CreatedDate, LastModifiedDate, SystemModstamp (whole seconds, ≤ now)."""
        r = self.rng.random
        now = self.now
        span = SPAN_DAYS * DAY_MS
        created, modified, stamp = [], [], []
        for _ in range(n):
            c = now - int(r() * span)
            c -= c % 1000
            m = c if r() < 0.4 else c + int(r() * (now - c))
            m -= m % 1000
            s = m if r() < 0.9 else min(now, m + int(r() * 3_600_000))
            s -= s % 1000
            created.append(c)
            modified.append(m)
            stamp.append(s)
        return created, modified, stamp

    def system(self, obj: str, ids: list[str], *, owner: bool = True) -> dict[str, Iterable[Any]]:
        n = len(ids)
        created, modified, stamp = self.stamps(n)
        creators = self.pick(self.users, n)
        cols: dict[str, Iterable[Any]] = {
            "Id": ids,
            "IsDeleted": itertools.repeat(0, n),
            "CreatedDate": created,
            "CreatedById": creators,
            "LastModifiedDate": modified,
            "LastModifiedById": creators,
            "SystemModstamp": stamp,
        }
        if owner:
            cols["OwnerId"] = self.pick(self.users, n)
        return cols

    def date_of(self, ms: int) -> str:
        return ms_to_datetime(ms).date().isoformat()

    def insert(self, obj: str, ids: list[str], build: Callable[[list[str], int], dict[str, Iterable[Any]]]) -> None:
        m = self.org.meta(obj)
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            cols = build(chunk, start)
            n = len(chunk)
            seqs = [cols.get(name) or itertools.repeat(None, n) for name in m.cols]
            self.org.conn.executemany(m.insert_sql, zip(*seqs, strict=False))

    def soft_delete(self, obj: str, ids: list[str], cols: dict[str, Iterable[Any]], mask: list[bool]) -> None:
        """Move masked rows to the recycle bin (IsDeleted, stamp = delete time, delete log)."""
        r = self.rng.random
        stamps = list(cols["SystemModstamp"])
        deleted = [0] * len(ids)
        for i, flag in enumerate(mask):
            if flag:
                when = self.now - int(r() * DELETE_SPAN_DAYS * DAY_MS)
                when = max(when - when % 1000, stamps[i])
                stamps[i] = when
                deleted[i] = 1
                self.deleted.append((obj, ids[i], when))
        cols["SystemModstamp"] = stamps
        cols["IsDeleted"] = deleted

    # ------------------------------------------------------------ people and companies
    def person(self, n: int) -> tuple[list[str], list[str], list[str]]:
        first = self.rng.choices(FIRST, k=n)
        last = self.rng.choices(LAST, k=n)
        names = [f"{a} {b}" for a, b in zip(first, last, strict=True)]
        return first, last, names

    def company(self, n: int) -> list[str]:
        ch = self.rng.choices
        return [f"{a} {b} {c}" for a, b, c in zip(ch(WORD_A, k=n), ch(WORD_B, k=n), ch(SUFFIX, k=n), strict=True)]

    def address(self, prefix: str, n: int, cols: dict[str, Iterable[Any]]) -> None:
        places = self.rng.choices(CITIES, k=n)
        nums = [self.rng.randint(1, 9999) for _ in range(n)]
        streets = self.rng.choices(STREETS, k=n)
        cols[prefix + "Street"] = [f"{a} {b}" for a, b in zip(nums, streets, strict=True)]
        for i, suffix in enumerate(("City", "State", "StateCode", "PostalCode", "Country", "CountryCode")):
            cols[prefix + suffix] = [p[i] for p in places]

    # ------------------------------------------------------------ objects
    def users_(self, n: int) -> None:
        ids = self.mint("User", n)
        self.users = self.users + ids

        def build(chunk: list[str], base: int) -> dict[str, Iterable[Any]]:
            k = len(chunk)
            cols = self.system("User", chunk, owner=False)
            first, last, names = self.person(k)
            cols.update(
                {
                    "Username": [
                        f"{a}.{b}.{base + i}@sfsync.example.com".lower()
                        for i, (a, b) in enumerate(zip(first, last, strict=True))
                    ],
                    "FirstName": first,
                    "LastName": last,
                    "Name": names,
                    "Email": [f"{a}.{b}@sfsync.example.com".lower() for a, b in zip(first, last, strict=True)],
                    "Alias": [(a[:1] + b[:4]).lower() for a, b in zip(first, last, strict=True)],
                    "IsActive": [int(self.rng.random() < 0.95) for _ in range(k)],
                    "TimeZoneSidKey": itertools.repeat("America/Los_Angeles", k),
                    "Title": self.rng.choices(TITLES, k=k),
                }
            )
            return cols

        self.insert("User", ids, build)

    def accounts(self, n: int) -> None:
        ids = self.mint("Account", n)

        def build(chunk: list[str], base: int) -> dict[str, Iterable[Any]]:
            k = len(chunk)
            cols = self.system("Account", chunk)
            names = self.company(k)
            rr = self.rng.randint
            cols.update(
                {
                    "Name": names,
                    "Type": self.rng.choices(ACCOUNT_TYPE, k=k),
                    "Industry": self.rng.choices(INDUSTRY, k=k),
                    "Rating": self.rng.choices(RATING, k=k),
                    "AnnualRevenue": [float(rr(1, 5000) * 10_000) for _ in range(k)],
                    "NumberOfEmployees": [rr(1, 50_000) for _ in range(k)],
                    "Phone": [f"+1 415 555 {rr(0, 9999):04d}" for _ in range(k)],
                    "Website": [f"https://www.{x.split()[0].lower()}{x.split()[1].lower()}.example" for x in names],
                    "AccountNumber": [f"CD{rr(100000, 999999)}" for _ in range(k)],
                }
            )
            self.address("Billing", k, cols)
            return cols

        self.insert("Account", ids, build)

    def contacts(self, n: int) -> None:
        ids = self.mint("Contact", n)
        accounts = self.ids["Account"]

        def build(chunk: list[str], base: int) -> dict[str, Iterable[Any]]:
            k = len(chunk)
            cols = self.system("Contact", chunk)
            first, last, names = self.person(k)
            r = self.rng.random
            cols.update(
                {
                    "AccountId": [a if r() < 0.95 else None for a in self.pick(accounts, k)],
                    "Salutation": self.rng.choices(SALUTATION, k=k),
                    "FirstName": first,
                    "LastName": last,
                    "Name": names,
                    "Title": self.rng.choices(TITLES, k=k),
                    "Email": [
                        f"{a}.{b}{base + i}@example.com".lower()
                        for i, (a, b) in enumerate(zip(first, last, strict=True))
                    ],
                    "Phone": [f"+1 212 555 {self.rng.randint(0, 9999):04d}" for _ in range(k)],
                    "LeadSource": self.rng.choices(LEAD_SOURCE, k=k),
                    "DoNotCall": [int(r() < 0.05) for _ in range(k)],
                    "HasOptedOutOfEmail": [int(r() < 0.1) for _ in range(k)],
                }
            )
            self.address("Mailing", k, cols)
            return cols

        self.insert("Contact", ids, build)

    def leads(self, n: int) -> None:
        ids = self.mint("Lead", n)
        # the last 2% are never referenced and go to the recycle bin
        self.lead_pool = ids[: max(1, n - n // 50)] if n >= 10 else ids
        live_from = len(self.lead_pool)
        accounts, contacts = self.ids["Account"], self.ids["Contact"]

        def build(chunk: list[str], base: int) -> dict[str, Iterable[Any]]:
            k = len(chunk)
            cols = self.system("Lead", chunk)
            first, last, names = self.person(k)
            r = self.rng.random
            converted = [r() < 0.03 for _ in range(k)]
            status = self.rng.choices(LEAD_STATUS[:2] + LEAD_STATUS[3:], k=k)
            cols.update(
                {
                    "Salutation": self.rng.choices(SALUTATION, k=k),
                    "FirstName": first,
                    "LastName": last,
                    "Name": names,
                    "Company": self.company(k),
                    "Title": self.rng.choices(TITLES, k=k),
                    "Email": [
                        f"{a}.{b}{base + i}@lead.example.com".lower()
                        for i, (a, b) in enumerate(zip(first, last, strict=True))
                    ],
                    "Phone": [f"+1 646 555 {self.rng.randint(0, 9999):04d}" for _ in range(k)],
                    "Status": ["Closed - Converted" if c else s for c, s in zip(converted, status, strict=True)],
                    "LeadSource": self.rng.choices(LEAD_SOURCE, k=k),
                    "Rating": self.rng.choices(RATING, k=k),
                    "Industry": self.rng.choices(INDUSTRY, k=k),
                    "NumberOfEmployees": [self.rng.randint(1, 5000) for _ in range(k)],
                    "DoNotCall": itertools.repeat(0, k),
                    "HasOptedOutOfEmail": itertools.repeat(0, k),
                    "IsConverted": [int(c) for c in converted],
                    "Sfsync_Key__c": [f"L-{base + i:08d}" if r() < 0.5 else None for i in range(k)],
                }
            )
            conv_acc, conv_con, conv_date = [], [], []
            modified = list(cols["LastModifiedDate"])
            for i, c in enumerate(converted):
                conv_acc.append(self.rng.choice(accounts) if c else None)
                conv_con.append(self.rng.choice(contacts) if c else None)
                conv_date.append(self.date_of(modified[i]) if c else None)
            cols.update({"ConvertedAccountId": conv_acc, "ConvertedContactId": conv_con, "ConvertedDate": conv_date})
            self.address("", k, cols)
            self.soft_delete("Lead", chunk, cols, [base + i >= live_from for i in range(k)])
            return cols

        self.insert("Lead", ids, build)

    def campaigns(self, n: int) -> None:
        ids = self.mint("Campaign", n)

        def build(chunk: list[str], base: int) -> dict[str, Iterable[Any]]:
            k = len(chunk)
            cols = self.system("Campaign", chunk)
            starts = [self.now - self.rng.randint(0, 180) * DAY_MS for _ in range(k)]
            rr = self.rng.randint
            cols.update(
                {
                    "Name": [f"{t} {base + i + 1}" for i, t in enumerate(self.rng.choices(CAMPAIGN_TYPE, k=k))],
                    "Type": self.rng.choices(CAMPAIGN_TYPE, k=k),
                    "Status": self.rng.choices(CAMPAIGN_STATUS, k=k),
                    "StartDate": [self.date_of(s) for s in starts],
                    "EndDate": [self.date_of(s + 30 * DAY_MS) for s in starts],
                    "BudgetedCost": [float(rr(1, 100) * 1000) for _ in range(k)],
                    "ExpectedRevenue": [float(rr(1, 500) * 1000) for _ in range(k)],
                    "IsActive": [int(self.rng.random() < 0.7) for _ in range(k)],
                }
            )
            return cols

        self.insert("Campaign", ids, build)

    def member_statuses(self, n: int) -> None:
        ids = self.mint("CampaignMemberStatus", n)
        campaigns = self.ids["Campaign"]

        def build(chunk: list[str], base: int) -> dict[str, Iterable[Any]]:
            idx = [base + i for i in range(len(chunk))]
            cols = self.system("CampaignMemberStatus", chunk, owner=False)
            cols.update(
                {
                    "CampaignId": [campaigns[(j // 2) % len(campaigns)] for j in idx],
                    "Label": ["Sent" if j % 2 == 0 else "Responded" for j in idx],
                    "SortOrder": [1 + j % 2 for j in idx],
                    "IsDefault": [int(j % 2 == 0) for j in idx],
                    "HasResponded": [j % 2 for j in idx],
                }
            )
            return cols

        self.insert("CampaignMemberStatus", ids, build)

    def members(self, n: int) -> None:
        ids = self.mint("CampaignMember", n)
        campaigns = self.ids["Campaign"]
        leads, contacts = self.lead_pool, self.ids["Contact"]
        ncamp = len(campaigns)
        people = len(leads) + len(contacts)
        if n > ncamp * people:
            raise ValueError("more campaign members than campaign x person pairs")
        # slot -> person is a bijection per campaign (stride coprime with the pool) that spreads a
        # campaign's members over the whole pool, so small orgs get both lead and contact members
        stride = max(1, int(people * 0.6180339887)) | 1
        while math.gcd(stride, people) != 1:
            stride += 1

        def build(chunk: list[str], base: int) -> dict[str, Iterable[Any]]:
            cols = self.system("CampaignMember", chunk, owner=False)
            camp: list[str] = []
            lead: list[str | None] = []
            contact: list[str | None] = []
            status: list[str] = []
            responded: list[int] = []
            first_resp: list[str | None] = []
            created = list(cols["CreatedDate"])
            for i in range(len(chunk)):
                j = base + i
                c = j % ncamp
                slot = j // ncamp  # unique per campaign
                camp.append(campaigns[c])
                p = (c * 7919 + slot * stride) % people  # distinct slots → distinct people
                if p < len(leads):
                    lead.append(leads[p])
                    contact.append(None)
                else:
                    lead.append(None)
                    contact.append(contacts[p - len(leads)])
                s = "Responded" if self.rng.random() < 0.3 else "Sent"
                status.append(s)
                responded.append(int(s == "Responded"))
                first_resp.append(self.date_of(created[i]) if s == "Responded" else None)
            cols.update(
                {
                    "CampaignId": camp,
                    "LeadId": lead,
                    "ContactId": contact,
                    "LeadOrContactId": [b or a for a, b in zip(lead, contact, strict=True)],
                    "Status": status,
                    "HasResponded": responded,
                    "FirstRespondedDate": first_resp,
                }
            )
            return cols

        self.insert("CampaignMember", ids, build)

    def opportunities(self, n: int) -> None:
        ids = self.mint("Opportunity", n)
        accounts, campaigns = self.ids["Account"], self.ids["Campaign"]

        def build(chunk: list[str], base: int) -> dict[str, Iterable[Any]]:
            k = len(chunk)
            cols = self.system("Opportunity", chunk)
            stages = self.rng.choices(OPPORTUNITY_STAGE, k=k)
            r = self.rng.random
            cols.update(
                {
                    "AccountId": self.pick(accounts, k),
                    "Name": [
                        f"{n_} - {self.rng.choice(('Renewal', 'Upsell', 'New Business', 'Expansion'))}"
                        for n_ in self.company(k)
                    ],
                    "StageName": stages,
                    "Amount": [float(self.rng.randint(1, 1000) * 500) for _ in range(k)],
                    "Probability": [
                        float((OPPORTUNITY_STAGE.index(s) + 1) * 10) if s != "Closed Lost" else 0.0 for s in stages
                    ],
                    "CloseDate": [self.date_of(self.now + self.rng.randint(-60, 120) * DAY_MS) for _ in range(k)],
                    "LeadSource": self.rng.choices(LEAD_SOURCE, k=k),
                    "IsClosed": [int(s in CLOSED_STAGES) for s in stages],
                    "IsWon": [int(s in WON_STAGES) for s in stages],
                    "CampaignId": [c if r() < 0.2 else None for c in self.pick(campaigns, k)],
                }
            )
            return cols

        self.insert("Opportunity", ids, build)

    def contact_roles(self, n: int) -> None:
        ids = self.mint("OpportunityContactRole", n)
        opps, contacts = self.ids["Opportunity"], self.ids["Contact"]

        def build(chunk: list[str], base: int) -> dict[str, Iterable[Any]]:
            k = len(chunk)
            cols = self.system("OpportunityContactRole", chunk, owner=False)
            cols.update(
                {
                    "OpportunityId": self.pick(opps, k),
                    "ContactId": self.pick(contacts, k),
                    "Role": self.rng.choices(CONTACT_ROLE, k=k),
                    "IsPrimary": [int(self.rng.random() < 0.3) for _ in range(k)],
                }
            )
            return cols

        self.insert("OpportunityContactRole", ids, build)

    def projects(self, n: int) -> None:
        ids = self.mint("Project__c", n)
        accounts = self.ids["Account"]

        def build(chunk: list[str], base: int) -> dict[str, Iterable[Any]]:
            k = len(chunk)
            cols = self.system("Project__c", chunk)
            starts = [self.now - self.rng.randint(0, 120) * DAY_MS for _ in range(k)]
            cols.update(
                {
                    "Name": [f"PRJ-{base + i + 1:06d}" for i in range(k)],
                    "Account__c": self.pick(accounts, k),
                    "Status__c": self.rng.choices(PROJECT_STATUS, k=k),
                    "Budget__c": [float(self.rng.randint(5, 500) * 1000) for _ in range(k)],
                    "Start_Date__c": [self.date_of(s) for s in starts],
                    "End_Date__c": [self.date_of(s + 90 * DAY_MS) for s in starts],
                }
            )
            return cols

        self.insert("Project__c", ids, build)

    def milestones(self, n: int) -> None:
        ids = self.mint("Milestone__c", n)
        projects = self.ids["Project__c"]

        def build(chunk: list[str], base: int) -> dict[str, Iterable[Any]]:
            k = len(chunk)
            cols = self.system("Milestone__c", chunk)
            cols.update(
                {
                    "Name": [f"M{base + i + 1}" for i in range(k)],
                    "Project__c": self.pick(projects, k),
                    "Due_Date__c": [self.date_of(self.now + self.rng.randint(-30, 90) * DAY_MS) for _ in range(k)],
                    "Completed__c": [int(self.rng.random() < 0.4) for _ in range(k)],
                    "Weight__c": [float(self.rng.randint(1, 100)) for _ in range(k)],
                }
            )
            self.soft_delete("Milestone__c", chunk, cols, [self.rng.random() < 0.01 for _ in range(k)])
            return cols

        self.insert("Milestone__c", ids, build)

    def _who_what(self, k: int) -> tuple[list[str | None], list[str | None]]:
        r = self.rng.random
        leads, contacts = self.lead_pool, self.ids["Contact"]
        whats = (self.ids["Account"], self.ids["Opportunity"], self.ids["Campaign"], self.ids["Project__c"])
        who: list[str | None] = []
        what: list[str | None] = []
        for _ in range(k):
            x = r()
            if x < 0.45:
                who.append(self.rng.choice(leads))
                what.append(None)  # a lead-related activity cannot have a WhatId
            elif x < 0.9:
                who.append(self.rng.choice(contacts))
                what.append(self.rng.choice(self.rng.choice(whats[:2])) if r() < 0.6 else None)
            else:
                who.append(None)
                what.append(self.rng.choice(self.rng.choice(whats)))
        return who, what

    def tasks(self, n: int) -> None:
        ids = self.mint("Task", n)

        def build(chunk: list[str], base: int) -> dict[str, Iterable[Any]]:
            k = len(chunk)
            cols = self.system("Task", chunk)
            who, what = self._who_what(k)
            created = list(cols["CreatedDate"])
            cols.update(
                {
                    "WhoId": who,
                    "WhatId": what,
                    "Subject": self.rng.choices(SUBJECTS, k=k),
                    "ActivityDate": [self.date_of(c + self.rng.randint(0, 14) * DAY_MS) for c in created],
                    "Status": self.rng.choices(TASK_STATUS, k=k),
                    "Priority": self.rng.choices(TASK_PRIORITY, k=k),
                    "Type": self.rng.choices(TASK_TYPE, k=k),
                    "IsArchived": [int(self.rng.random() < 0.05) for _ in range(k)],
                }
            )
            self.soft_delete("Task", chunk, cols, [self.rng.random() < 0.01 for _ in range(k)])
            return cols

        self.insert("Task", ids, build)

    def events(self, n: int) -> None:
        ids = self.mint("Event", n)

        def build(chunk: list[str], base: int) -> dict[str, Iterable[Any]]:
            k = len(chunk)
            cols = self.system("Event", chunk)
            who, what = self._who_what(k)
            created = list(cols["CreatedDate"])
            starts = [c + self.rng.randint(1, 30) * DAY_MS // 2 for c in created]
            starts = [s - s % 1_800_000 for s in starts]
            durations = self.rng.choices((30, 60, 90, 120), k=k)
            cols.update(
                {
                    "WhoId": who,
                    "WhatId": what,
                    "Subject": self.rng.choices(("Meeting", "Demo", "Lunch", "Call"), k=k),
                    "StartDateTime": starts,
                    "ActivityDateTime": starts,
                    "EndDateTime": [s + d * 60_000 for s, d in zip(starts, durations, strict=True)],
                    "DurationInMinutes": durations,
                    "ActivityDate": [self.date_of(s) for s in starts],
                    "IsAllDayEvent": itertools.repeat(0, k),
                    "ShowAs": itertools.repeat("Busy", k),
                    "IsArchived": [int(self.rng.random() < 0.05) for _ in range(k)],
                }
            )
            self.soft_delete("Event", chunk, cols, [self.rng.random() < 0.01 for _ in range(k)])
            return cols

        self.insert("Event", ids, build)


def generate_org(org: Org, *, seed: int, records: int) -> dict[str, int]:
    """Fill ``org`` with ``records`` records (100 .. 1,000,000); returns counts per object."""
    if not 100 <= records <= 1_000_000:
        raise ValueError(f"records must be between 100 and 1,000,000 (got {records})")
    counts = _plan(records)
    with org.lock:
        org.tick()
        gen = _Gen(org, seed)
        conn = org.conn
        conn.execute("BEGIN")
        try:
            gen.users_(counts["User"])
            gen.accounts(counts["Account"])
            gen.contacts(counts["Contact"])
            gen.leads(counts["Lead"])
            gen.campaigns(counts["Campaign"])
            gen.member_statuses(counts["CampaignMemberStatus"])
            gen.members(counts["CampaignMember"])
            gen.opportunities(counts["Opportunity"])
            gen.contact_roles(counts["OpportunityContactRole"])
            gen.projects(counts["Project__c"])
            gen.milestones(counts["Milestone__c"])
            gen.tasks(counts["Task"])
            gen.events(counts["Event"])
            conn.executemany("INSERT INTO _deletelog (obj, id, deleted_ms) VALUES (?, ?, ?)", gen.deleted)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return counts
