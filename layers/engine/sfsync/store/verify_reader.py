"""The DynamoDB side of ``sfsync verify`` (:mod:`sfsync.ops.verify`): the ``Id``,
``SystemModstamp`` and ``IsDeleted`` of one object's items in its family table, all of them (a
scan filtered on ``sobject``), a random share of them (random scan segments), or by id
(BatchGetItem).  Read-only.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from sfsync.core.exceptions import StoreError
from sfsync.items.images import item_from_boto

#: keys per BatchGetItem (DynamoDB's limit).
KEYS_PER_BATCH_GET = 100
#: scan segments a sampled read chooses from.
SAMPLE_SEGMENTS = 100


class StoredState(NamedTuple):
    """One record as compared: id, ``SystemModstamp`` (engine ISO ms Z), ``IsDeleted``."""

    id: str
    system_modstamp: str | None
    is_deleted: bool


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


# -- the reader -----------------------------------------------------------------------------


class DynamoTableReader:
    """:class:`sfsync.ops.verify.TableReader` over one family table (boto3 low-level client)."""

    def __init__(self, table_name: str, client: Any, *, page_size: int | None = None) -> None:
        self._table = table_name
        self._client = client
        self._page_size = page_size

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
        out: dict[str, StoredState] = {}
        names = {"#id": "Id", "#s": "SystemModstamp", "#d": "IsDeleted", "#o": "sobject"}
        for chunk in _chunks(list(dict.fromkeys(ids)), KEYS_PER_BATCH_GET):
            request: dict[str, Any] = {
                self._table: {
                    "Keys": [{"Id": {"S": i}} for i in chunk],
                    "ProjectionExpression": "#id, #s, #d, #o",
                    "ExpressionAttributeNames": names,
                }
            }
            for _attempt in range(10):
                try:
                    response = self._client.batch_get_item(RequestItems=request)
                except (ClientError, BotoCoreError) as exc:
                    raise StoreError(f"cannot read {self._table}: {exc}") from exc
                for raw in response.get("Responses", {}).get(self._table, []):
                    if item_from_boto(raw).get("sobject") == obj:
                        state = _state(raw)
                        out[state.id] = state
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise StoreError(f"{self._table} kept leaving keys unprocessed")
        return out


def _state(raw: Mapping[str, Any]) -> StoredState:
    """A stored item's (projected) attributes, decoded by the codec, as the comparison's state."""
    item = item_from_boto(raw)
    stamp = item.get("SystemModstamp")
    return StoredState(str(item["Id"]), stamp if isinstance(stamp, str) else None, item.get("IsDeleted") is True)


__all__ = ["KEYS_PER_BATCH_GET", "SAMPLE_SEGMENTS", "DynamoTableReader", "StoredState"]
