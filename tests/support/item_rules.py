"""The item rules written out plainly, for tests that hold the codec (``sfsync.items``) to them."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any


def rest_lead_row(n: int, stamp: str, **fields: Any) -> dict[str, Any]:
    """A Lead row as Salesforce's REST API answers it (``attributes``, nulls, an offset datetime)."""
    base: dict[str, Any] = {
        "attributes": {"type": "Lead", "url": f"/x/{n}"},
        "Id": f"00Q{n:015d}",
        "IsDeleted": False,
        "SystemModstamp": stamp,
        "CreatedDate": "2026-11-24T12:00:00.000+0000",
        "LastName": f"Name {n}",
        "Title": None,
        "Email": None,
        "Score__c": 7,
    }
    base.update(fields)
    return base


def plain_number(value: Decimal) -> Any:
    """The snapshot's number rule: an exact JSON number (an int, or a float that reads back as the
    value); anything else as the number's text."""
    if value == value.to_integral_value():
        return int(value)
    return float(value) if Decimal(repr(float(value))) == value else str(value)


def reference_base(item: dict[str, Any]) -> str:
    """The snapshot's layout rules: data attributes, no nulls, sorted compact ASCII JSON."""
    data = {
        name: (plain_number(value) if isinstance(value, Decimal) else value)
        for name, value in item.items()
        if value is not None and not name.startswith("_") and name != "sobject"
    }
    return json.dumps(data, separators=(",", ":"), sort_keys=True, default=sorted)
