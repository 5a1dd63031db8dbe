"""The workload of a chaos run, and the ledger of what it expects at the end.

Two actors change the data while the faults happen:

* a **Salesforce user** (the emulator's org, as the UI would: no API faults apply) updates
  ``Description`` of Accounts, Leads and Contacts, creates records and deletes Leads and Contacts;
* an **application** edits the DynamoDB copy as any DynamoDB client would: ``UpdateItem`` of
  ``Title`` on Lead and Contact items, ``PutItem`` of new Leads and Contacts under its own keys,
  ``DeleteItem`` of synced items (the stack runs with ``allow_deletes``).

The two sides change disjoint fields, and deletes are kept apart from the other side's edits: every
record belongs to a pool by a hash of its Id - ``shared`` (both sides update, nobody deletes),
``salesforce`` (only Salesforce updates and deletes it) or ``local`` (only the application updates and
deletes it).  So the expected end state is exact: Salesforce holds every local change (the ledger),
and the DynamoDB copy equals Salesforce field by field.  Conflicts are the write-back's own tests'.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from .plan import TWO_WAY

SF_FIELD = "Description"  # what the Salesforce user changes
LOCAL_FIELD = "Title"  # what the application changes
POOLS = ("shared", "salesforce", "local")

_ser, _de = TypeSerializer(), TypeDeserializer()


def pool_of(record_id: str) -> str:
    return POOLS[int(hashlib.sha256(record_id.encode()).hexdigest(), 16) % len(POOLS)]


@dataclass
class Ledger:
    """What the application did, to be found in Salesforce at the end."""

    #: (object, Id) -> field -> the last value the application wrote
    edits: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    #: application key -> (object, the unique LastName it created the record with)
    creates: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: (object, Id) deleted by the application
    deletes: set[tuple[str, str]] = field(default_factory=set)
    #: Salesforce-side operations done, by kind
    salesforce_ops: dict[str, int] = field(default_factory=dict)
    #: application operations done, by kind
    local_ops: dict[str, int] = field(default_factory=dict)

    def count(self, side: dict[str, int], kind: str) -> None:
        side[kind] = side.get(kind, 0) + 1


class Workload:
    """Draws and applies the operations of both actors (see the module docstring)."""

    def __init__(self, seed: int, emulator: Any, dynamodb: Any, tables: Mapping[str, str]) -> None:
        self.rng = random.Random(f"sfsync-chaos-workload-{seed}")
        self.seed = seed
        self.emulator = emulator
        self.dynamodb = dynamodb
        self.tables = dict(tables)  # object -> table name (Account, Lead, Contact)
        self.ledger = Ledger()
        self._n = 0
        self._sf_ids: dict[str, list[str]] = {}

    def _next(self) -> int:
        self._n += 1
        return self._n

    # ------------------------------------------------------------------ Salesforce side

    def salesforce_change(self) -> str:
        """One change by the Salesforce user; returns what it did."""
        org = self.emulator.org
        roll = self.rng.random()
        obj = self.rng.choice(("Account", "Lead", "Contact"))
        if roll < 0.2:
            values: dict[str, Any] = {SF_FIELD: f"created by the user {self.seed}-{self._next()}"}
            if obj == "Account":
                values["Name"] = f"Chaos Account {self.seed}-{self._n}"
            else:
                values["LastName"] = f"SfUser{self.seed}x{self._n}"
                if obj == "Lead":
                    values["Company"] = "Chaos Salesforce Co"
            self._sf_ids.setdefault(obj, []).append(org.create(obj, values, as_api=False))
            self.ledger.count(self.ledger.salesforce_ops, "create")
            return f"created a {obj}"
        pools: tuple[str, ...] = ("shared", "salesforce")
        deleting = roll < 0.3 and obj != "Account"  # an Account delete would cascade to Contacts
        if deleting:
            pools = ("salesforce",)
        candidates = self._salesforce_ids(obj, pools)
        if not candidates:
            return "nothing to change"
        record_id = self.rng.choice(candidates)
        if deleting:
            org.delete(obj, record_id, as_api=False)
            self._sf_ids[obj].remove(record_id)
            self.ledger.count(self.ledger.salesforce_ops, "delete")
            return f"deleted {obj} {record_id}"
        org.update(obj, record_id, {SF_FIELD: f"changed by the user {self.seed}-{self._next()}"}, as_api=False)
        self.ledger.count(self.ledger.salesforce_ops, "update")
        return f"updated {obj} {record_id}"

    def prime(self) -> None:
        """Read the org's records once, before any fault (then the user's own creates and deletes are tracked)."""
        sf = self.emulator.salesforce()
        for obj in ("Account", "Lead", "Contact"):
            extra = " AND IsConverted = false" if obj == "Lead" else ""
            soql = f"SELECT Id FROM {obj} WHERE IsDeleted = false{extra} ORDER BY Id"
            self._sf_ids[obj] = [str(r["Id"]) for r in sf.query_all(soql)["records"]]

    def _salesforce_ids(self, obj: str, pools: tuple[str, ...]) -> list[str]:
        return [i for i in self._sf_ids.get(obj, []) if pool_of(i) in pools]

    # ------------------------------------------------------------------ application side

    def local_change(self) -> str:
        """One change by the application on the two-way tables; returns what it did."""
        obj = self.rng.choice(TWO_WAY)
        roll = self.rng.random()
        if roll < 0.15:
            return self.local_create(obj)
        deleting = roll < 0.25
        candidates = self._synced_items(obj, ("local",) if deleting else ("shared", "local"))
        if not candidates:
            return "nothing to change"
        record_id = self.rng.choice(candidates)
        if deleting:
            return self.local_delete(obj, record_id)
        return self.local_edit(obj, record_id)

    def local_change_or_create(self) -> str:
        """An edit of a synced item if there is one, else a create (either makes the write-back call Salesforce)."""
        obj = self.rng.choice(TWO_WAY)
        candidates = self._synced_items(obj, ("shared", "local"))
        if candidates:
            return self.local_edit(obj, self.rng.choice(candidates))
        return self.local_create(obj)

    def local_edit(self, obj: str, record_id: str) -> str:
        value = f"set by the app {self.seed}-{self._next()}"
        try:
            self.dynamodb.update_item(
                TableName=self.tables[obj],
                Key={"Id": {"S": record_id}},
                UpdateExpression="SET #f = :v",
                ConditionExpression="attribute_exists(#id) AND (attribute_not_exists(#del) OR #del = :false)",
                ExpressionAttributeNames={"#f": LOCAL_FIELD, "#id": "Id", "#del": "IsDeleted"},
                ExpressionAttributeValues={":v": {"S": value}, ":false": {"BOOL": False}},
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return f"{obj} {record_id} is gone"
        self.ledger.edits.setdefault((obj, record_id), {})[LOCAL_FIELD] = value
        self.ledger.count(self.ledger.local_ops, "edit")
        return f"edited {obj} {record_id}"

    def local_create(self, obj: str) -> str:
        n = self._next()
        key = f"app-{self.seed}-{n}"
        last_name = f"Chaos{self.seed}x{n}"
        item: dict[str, Any] = {"Id": key, "sobject": obj, "LastName": last_name, LOCAL_FIELD: "created by the app"}
        if obj == "Lead":
            item["Company"] = "Chaos App Co"
        self.dynamodb.put_item(
            TableName=self.tables[obj],
            Item={k: _ser.serialize(v) for k, v in item.items()},
            ConditionExpression="attribute_not_exists(Id)",
        )
        self.ledger.creates[key] = (obj, last_name)
        self.ledger.count(self.ledger.local_ops, "create")
        return f"created {obj} {key}"

    def local_delete(self, obj: str, record_id: str) -> str:
        self.dynamodb.delete_item(TableName=self.tables[obj], Key={"Id": {"S": record_id}})
        self.ledger.deletes.add((obj, record_id))
        self.ledger.edits.pop((obj, record_id), None)
        self.ledger.count(self.ledger.local_ops, "delete")
        return f"deleted {obj} {record_id}"

    def _synced_items(self, obj: str, pools: tuple[str, ...]) -> list[str]:
        """Items the inbound sync wrote (``_base``), alive, not converted, of the given pools."""
        return sorted(
            item["Id"]
            for item in scan(self.dynamodb, self.tables[obj])
            if item.get("sobject") == obj
            and "_base" in item
            and not item.get("IsDeleted")
            and not item.get("IsConverted")
            and pool_of(item["Id"]) in pools
            and (obj, item["Id"]) not in self.ledger.deletes
        )


def scan(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    """Every item of a table, as Python values (consistent read)."""
    items: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        items.extend({k: _de.deserialize(v) for k, v in raw.items()} for raw in page["Items"])
    return items


def plain(value: Any) -> Any:
    """A DynamoDB value as JSON would carry it (``Decimal`` -> int/float)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


__all__ = ["LOCAL_FIELD", "POOLS", "SF_FIELD", "Ledger", "Workload", "plain", "pool_of", "scan"]
