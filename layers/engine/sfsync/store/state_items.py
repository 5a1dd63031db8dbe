"""The state table's item layout: its keys and one PynamoDB model per kind of item.

The items themselves are described in :mod:`sfsync.store.state` (the watermark contract) and
:mod:`sfsync.store.org_state`; this module only says how they are keyed and typed, and holds the
small conversions both use.  Nothing here reads or writes outside :func:`read_item`.
"""

from __future__ import annotations

import datetime as dt
import functools
import types
from dataclasses import dataclass
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
)
from pynamodb.connection import Connection
from pynamodb.exceptions import PynamoDBException
from pynamodb.models import Model

from sfsync.core.clock import UTC, parse_instant, require_aware, to_iso_ms
from sfsync.core.exceptions import StoreError

OBJECT_PREFIX = "OBJECT#"
CYCLES_PREFIX = "CYCLES#"
WATERMARK_SK = "WATERMARK"
CHECKPOINT_SK = "CHECKPOINT"
LEASE_SK = "LEASE"
LIFECYCLE_SK = "LIFECYCLE"
COPY_REQUEST_SK = "COPYREQUEST"
FRESHNESS_SK = "FRESHNESS"
CDC_SK = "CDC"
ORG_PK = "ORG"
BACKOFF_SK = "BACKOFF"


@dataclass(frozen=True, slots=True)
class Models:
    watermark: Any
    checkpoint: Any
    lease: Any
    cycle: Any
    lifecycle: Any
    backoff: Any
    copy_request: Any
    freshness: Any
    cdc: Any
    connection: Connection


def item_model(class_name: str, table_name: str, region: str | None, host: str | None, **attributes: Any) -> Any:
    """A PynamoDB model of one kind of item in a state table: ``pk``/``sk`` keys plus ``attributes``.

    Each call builds a fresh class (PynamoDB binds a model to its table through its ``Meta``);
    callers cache the result per table.
    """
    meta = type("Meta", (), {"table_name": table_name, "region": region, "host": host})
    namespace = {
        "__module__": __name__,
        "Meta": meta,
        "pk": UnicodeAttribute(hash_key=True),
        "sk": UnicodeAttribute(range_key=True),
        **attributes,
    }
    return types.new_class(class_name, (Model,), exec_body=lambda ns: ns.update(namespace))


def read_item(model: Any, pk: str, sk: str, what: str) -> Any | None:
    """The item at ``(pk, sk)`` read consistently, or None; :class:`StoreError` ("cannot read <what>")."""
    try:
        return model.get(pk, sk, consistent_read=True)
    except model.DoesNotExist:
        return None
    except PynamoDBException as exc:
        raise StoreError(f"cannot read {what}: {exc}") from exc


@functools.lru_cache(maxsize=16)
def models_for(table_name: str, region: str | None, host: str | None) -> Models:
    table = (table_name, region, host)
    return Models(
        watermark=item_model(
            "WatermarkItem",
            *table,
            watermark=UnicodeAttribute(null=True),
            full_copy_done=BooleanAttribute(default=False),
            updated_at=UnicodeAttribute(null=True),
            updated_by=UnicodeAttribute(null=True),
        ),
        checkpoint=item_model(
            "CheckpointItem",
            *table,
            cycle_id=UnicodeAttribute(),
            lo=UnicodeAttribute(),
            hi=UnicodeAttribute(),
            last_stamp=UnicodeAttribute(null=True),
            last_id=UnicodeAttribute(null=True),
            next_url=UnicodeAttribute(null=True),
            records_done=NumberAttribute(default=0),
            updated_at=UnicodeAttribute(null=True),
            bulk_job_id=UnicodeAttribute(null=True),
            bulk_locator=UnicodeAttribute(null=True),
        ),
        lease=item_model(
            "LeaseItem",
            *table,
            holder=UnicodeAttribute(null=True),
            expires_at=NumberAttribute(null=True),
            acquired_at=UnicodeAttribute(null=True),
            claimed_by=UnicodeAttribute(null=True),
            claim_expires_at=NumberAttribute(null=True),
            last_ended_at=UnicodeAttribute(null=True),
            last_cycle_id=UnicodeAttribute(null=True),
            last_status=UnicodeAttribute(null=True),
            resume_pending=BooleanAttribute(null=True),
        ),
        cycle=item_model(
            "CycleItem",
            *table,
            cycle_id=UnicodeAttribute(),
            object_name=UnicodeAttribute(attr_name="object"),
            status=UnicodeAttribute(),
            reason=UnicodeAttribute(null=True),
            started_at=UnicodeAttribute(),
            ended_at=UnicodeAttribute(),
            window_lo=UnicodeAttribute(null=True),
            window_hi=UnicodeAttribute(null=True),
            watermark=UnicodeAttribute(null=True),
            counts=MapAttribute[str, Any](default=dict),
            error=UnicodeAttribute(null=True),
            expires_at=NumberAttribute(),
        ),
        lifecycle=item_model(
            "LifecycleItem",
            *table,
            known_fields=ListAttribute[str](null=True),
            deletes_covered_until=UnicodeAttribute(null=True),
            reconciled_at=UnicodeAttribute(null=True),
            formulas_refreshed_at=UnicodeAttribute(null=True),
            updated_at=UnicodeAttribute(null=True),
        ),
        backoff=item_model(
            "BackoffItem",
            *table,
            until=UnicodeAttribute(),
            reason=UnicodeAttribute(null=True),
            set_at=UnicodeAttribute(null=True),
        ),
        copy_request=item_model(
            "CopyRequestItem",
            *table,
            generation=NumberAttribute(default=0),
            resync_requested_at=UnicodeAttribute(null=True),
            resync_requested_by=UnicodeAttribute(null=True),
            execution_name=UnicodeAttribute(null=True),
            started_at=UnicodeAttribute(null=True),
            reason=UnicodeAttribute(null=True),
        ),
        freshness=item_model(
            "FreshnessItem",
            *table,
            clear_until=UnicodeAttribute(null=True),
            updated_at=UnicodeAttribute(null=True),
        ),
        cdc=item_model(
            "CdcItem",
            *table,
            last_event_at=UnicodeAttribute(null=True),
            last_received_at=UnicodeAttribute(null=True),
            events_applied=NumberAttribute(default=0),
            gaps_handled=NumberAttribute(default=0),
            unhealthy_since=UnicodeAttribute(null=True),
            unhealthy_reason=UnicodeAttribute(null=True),
            cycle_requested_at=UnicodeAttribute(null=True),
        ),
        connection=Connection(region=region, host=host),
    )


def epoch_ms(value: dt.datetime) -> int:
    return int(require_aware(value).timestamp() * 1000)


def optional_instant(text: str | None) -> dt.datetime | None:
    return parse_instant(text) if text else None


def optional_iso(value: dt.datetime | None) -> str | None:
    return to_iso_ms(value) if value is not None else None


def condition_failed(exc: PynamoDBException) -> bool:
    code = getattr(exc, "cause_response_code", None)
    if code in {"ConditionalCheckFailedException", "TransactionCanceledException"}:
        return True
    reasons = getattr(exc, "cancellation_reasons", None) or []
    return any(r is not None and r.code == "ConditionalCheckFailed" for r in reasons)


def from_epoch_ms(value: float | None) -> dt.datetime | None:
    if value is None:
        return None
    return dt.datetime.fromtimestamp(float(value) / 1000, tz=UTC)


__all__ = [
    "BACKOFF_SK",
    "CDC_SK",
    "CHECKPOINT_SK",
    "COPY_REQUEST_SK",
    "CYCLES_PREFIX",
    "FRESHNESS_SK",
    "LEASE_SK",
    "LIFECYCLE_SK",
    "OBJECT_PREFIX",
    "ORG_PK",
    "WATERMARK_SK",
    "Models",
    "condition_failed",
    "epoch_ms",
    "from_epoch_ms",
    "item_model",
    "models_for",
    "optional_instant",
    "optional_iso",
    "read_item",
]
