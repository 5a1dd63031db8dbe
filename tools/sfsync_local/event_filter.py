"""Lambda event filtering (``FilterCriteria``) for the local stack's DynamoDB stream mappings.

Lambda drops a stream record that matches none of a mapping's filter patterns before it invokes
the function (the filters are ORed; in a pattern every key must match).  The local stack applies
the same rule with the part of the pattern language the template uses, and refuses any other
rule with a clear error instead of guessing:

* a nested object matches a nested object of the record, key by key;
* a list of values matches when the record's value (a leaf: text, number, boolean, null) is one
  of them;
* ``{"exists": true}`` matches a present leaf, ``{"exists": false}`` an absent one (also when a
  parent object is absent: an ``INSERT`` has no ``OldImage``).

The records are matched in the shape Lambda sends (``eventName``, ``dynamodb.Keys``,
``dynamodb.NewImage``, ``dynamodb.OldImage`` in DynamoDB JSON).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

_MISSING = object()
_LEAF_TYPES = (str, int, float, bool, type(None))


class UnsupportedFilter(ValueError):
    """A ``FilterCriteria`` pattern the local stack cannot evaluate (or that is not valid JSON)."""


def parse_filters(criteria: Mapping[str, Any] | None) -> tuple[dict[str, Any], ...]:
    """The patterns of a mapping's ``FilterCriteria`` (none: every record is delivered)."""
    if not criteria:
        return ()
    filters = criteria.get("Filters")
    if not isinstance(filters, Sequence) or isinstance(filters, str):
        raise UnsupportedFilter(f"FilterCriteria.Filters must be a list, not {filters!r}")
    patterns: list[dict[str, Any]] = []
    for position, entry in enumerate(filters):
        text = entry.get("Pattern") if isinstance(entry, Mapping) else None
        if not isinstance(text, str):
            raise UnsupportedFilter(f"FilterCriteria.Filters[{position}] has no Pattern text")
        try:
            pattern = json.loads(text)
        except ValueError as exc:
            raise UnsupportedFilter(f"FilterCriteria.Filters[{position}].Pattern is not JSON: {exc}") from exc
        if not isinstance(pattern, dict) or not pattern:
            raise UnsupportedFilter(f"FilterCriteria.Filters[{position}].Pattern must be a non-empty JSON object")
        _check(pattern, f"Filters[{position}]")
        patterns.append(pattern)
    return tuple(patterns)


def accepts(patterns: Sequence[Mapping[str, Any]], record: Mapping[str, Any]) -> bool:
    """Does Lambda deliver ``record`` through a mapping with these patterns?"""
    return not patterns or any(_matches(pattern, record) for pattern in patterns)


def _check(rule: Any, where: str) -> None:
    if isinstance(rule, dict):
        for key, value in rule.items():
            _check(value, f"{where}.{key}")
        return
    if not isinstance(rule, list) or not rule:
        raise UnsupportedFilter(f"{where}: a filter value must be an object or a non-empty list, not {rule!r}")
    for value in rule:
        if isinstance(value, dict):
            if set(value) != {"exists"} or not isinstance(value["exists"], bool):
                raise UnsupportedFilter(f"{where}: only the exists operator is supported locally, not {value!r}")
        elif not isinstance(value, _LEAF_TYPES):
            raise UnsupportedFilter(f"{where}: {value!r} is not a value a filter can match")


def _matches(pattern: Mapping[str, Any], value: Any) -> bool:
    for key, rule in pattern.items():
        child = value.get(key, _MISSING) if isinstance(value, Mapping) else _MISSING
        if isinstance(rule, dict):
            if not _matches(rule, child):
                return False
        elif not any(_leaf_matches(option, child) for option in rule):
            return False
    return True


def _leaf_matches(option: Any, value: Any) -> bool:
    present = value is not _MISSING and isinstance(value, _LEAF_TYPES)
    if isinstance(option, dict):
        return present if option["exists"] else value is _MISSING
    same_kind = type(value) is type(option) or (_is_number(value) and _is_number(option))
    return present and same_kind and value == option


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


__all__ = ["UnsupportedFilter", "accepts", "parse_filters"]
