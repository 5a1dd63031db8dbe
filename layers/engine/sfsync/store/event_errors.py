"""The errors-table adapter of the change-event path (:mod:`sfsync.changes`, through its port
:class:`sfsync.changes.apply.EventErrorSink`): one row per change event that cannot be used.

Row: ``pk`` = ``ERRORS#<object>`` (``ERRORS#-`` when the event names no usable object), ``sk`` =
``<when>#cdc#<event id>``, ``kind`` = ``cdc-event``, ``reason``, ``event`` (the message body, cut at
32 KB), TTL ``expires_at`` - beside the rows the cycles write (``kind`` ``inbound``), so ``sfsync
errors`` and an operator's query of ``ERRORS#Lead`` see them together.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sfsync.core.clock import epoch_seconds, to_iso_ms
from sfsync.core.exceptions import StoreError
from sfsync.store.records import client_failure

#: At most this much of a rejected message's body is kept in its row.
MAX_BODY_CHARS = 32_000


class EventErrors:
    """Writes the errors-table rows of rejected change events."""

    def __init__(self, client: Any, table: str | None, *, retention_days: int) -> None:
        self._client = client
        self._table = table
        self._retention_days = retention_days

    def record(self, object_name: str | None, event_id: str, reason: str, body: Any, *, when: dt.datetime) -> None:
        if not self._table:
            raise StoreError(f"change event {event_id} was rejected ({reason}) and no errors table is configured")
        text = body if isinstance(body, str) else json.dumps(body, default=str)
        item = {
            "pk": {"S": f"ERRORS#{object_name or '-'}"},
            "sk": {"S": f"{to_iso_ms(when)}#cdc#{event_id}"},
            "object": {"S": object_name or "-"},
            "record_id": {"S": event_id},
            "kind": {"S": "cdc-event"},
            "reason": {"S": reason[:2000]},
            "event": {"S": text[:MAX_BODY_CHARS] or "-"},
            "created_at": {"S": to_iso_ms(when)},
            "expires_at": {"N": str(epoch_seconds(when + dt.timedelta(days=self._retention_days)))},
        }
        try:
            self._client.put_item(TableName=self._table, Item=item)
        except ClientError as exc:
            raise client_failure(exc, self._table, "write") from exc
        except BotoCoreError as exc:
            raise StoreError(f"cannot write to {self._table}: {exc}") from exc


__all__ = ["MAX_BODY_CHARS", "EventErrors"]
