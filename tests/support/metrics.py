"""Reading the EMF metrics the engine printed (Powertools writes one JSON blob per flush to stdout)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Emitted:
    namespace: str
    name: str
    value: Any
    dimensions: dict[str, str]


def emf_metrics(text: str) -> list[Emitted]:
    """Every metric value in the EMF blobs of ``text`` (captured stdout), with its namespace and dimensions."""
    found: list[Emitted] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            dims = {name: str(blob[name]) for group in directive["Dimensions"] for name in group}
            for metric in directive["Metrics"]:
                values = blob[metric["Name"]]
                for value in values if isinstance(values, list) else [values]:
                    found.append(Emitted(directive["Namespace"], metric["Name"], value, dims))
    return found


def values_of(text: str, name: str, **dimensions: str) -> list[Any]:
    """The values of metric ``name`` whose dimensions include ``dimensions``."""
    return [
        m.value
        for m in emf_metrics(text)
        if m.name == name and all(m.dimensions.get(k) == v for k, v in dimensions.items())
    ]
