"""The DynamoDB side of ``sfsync verify`` (:mod:`sfsync.ops.verify`): the ``Id``,
``SystemModstamp`` and ``IsDeleted`` of one object's items in its family table, all of them (a
scan filtered on ``sobject``), a random share of them (random scan segments), or by id
(BatchGetItem).  Read-only.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from sfsync.core.exceptions import StoreError
from sfsync.items.images import item_from_boto
from sfsync.store.records import batch_get

#: scan segments a sampled read chooses from.
SAMPLE_SEGMENTS = 100


class StoredState(NamedTuple):
    """One record as compared: id, ``SystemModstamp`` (engine ISO ms Z), ``IsDeleted``."""

    id: str
    system_modstamp: str | None
    is_deleted: bool


# -- the reader -----------------------------------------------------------------------------


class DynamoTableReader:
    """:class:`sfsync.ops.verify.TableReader` over one family table (boto3 low-level client)."""

    def __init__(
        self, table_name: str, client: Any, *, page_size: int | None = None, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._table = table_name
        self._client = client
        self._page_size = page_size
        self._sleep = sleep

    _NAMES = {"#id": "Id", "#s": "SystemModstamp", "#d": "IsDeleted", "#o": "sobject"}

    def items(
        self, obj: str, *, fraction: float | None = None, rng: random.Random | None = None
    ) -> Iterator[StoredState]:
        if fraction is None or fraction >= 1:
            yield from self._scan(obj, None)
            return
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        rng = rng or random.Random()
        total = SAMPLE_SEGMENTS if fraction >= 1 / SAMPLE_SEGMENTS else int(1 / fraction)
        chosen = rng.sample(range(total), max(1, round(fraction * total)))
        for segment in sorted(chosen):
            yield from self._scan(obj, (segment, total))

    def _scan(self, obj: str, segment: tuple[int, int] | None) -> Iterator[StoredState]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "ProjectionExpression": "#id, #s, #d, #o",
            "FilterExpression": "#o = :obj",
            "ExpressionAttributeNames": self._NAMES,
            "ExpressionAttributeValues": {":obj": {"S": obj}},
        }
        if segment is not None:
            kwargs["Segment"], kwargs["TotalSegments"] = segment
        if self._page_size:
            kwargs["Limit"] = self._page_size
        while True:
            try:
                page = self._client.scan(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise StoreError(f"cannot scan {self._table}: {exc}") from exc
            for raw in page.get("Items", []):
                yield _state(raw)
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def get_many(self, obj: str, ids: Sequence[str]) -> dict[str, StoredState]:
        """The stored states of ``ids`` that are ``obj``'s items (the record tables' one batch read)."""
        raws = batch_get(
            self._table,
            ids,
            lambda request: self._client.batch_get_item(RequestItems=request),
            sleep=self._sleep,
            attributes=tuple(self._NAMES.values()),  # what the scan projects
        )
        states = (_state(raw) for raw in raws.values() if item_from_boto(raw).get("sobject") == obj)
        return {state.id: state for state in states}


def _state(raw: Mapping[str, Any]) -> StoredState:
    """A stored item's (projected) attributes, decoded by the codec, as the comparison's state."""
    item = item_from_boto(raw)
    stamp = item.get("SystemModstamp")
    return StoredState(str(item["Id"]), stamp if isinstance(stamp, str) else None, item.get("IsDeleted") is True)


__all__ = ["SAMPLE_SEGMENTS", "DynamoTableReader", "StoredState"]
