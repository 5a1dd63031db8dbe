"""DynamoDB batch calls in wire format, without botocore's per-attribute shape walking.

botocore validates, serialises and parses every ``AttributeValue`` by walking the service model:
for a page of items that is most of the engine's CPU (tens of µs per item per call), although the
JSON protocol's wire format *is* ``{"S": ...}``/``{"N": ...}`` maps.  :class:`WireCalls` sends
``BatchGetItem`` and ``BatchWriteItem`` bodies the engine has already built in wire format and hands
back the decoded JSON response, still through the client (its endpoint, credentials, signing,
retries, error handling and any stub such as moto's are untouched):

* a ``before-call`` handler swaps the serialised body of a tiny placeholder request for the real
  body (the request is signed after this event, so the signature covers the real body);
* a ``before-parse`` handler decodes a successful (2xx) response with ``orjson.loads`` into the
  parsed response (key :data:`RAW_KEY`) and leaves botocore an empty document to parse.  Error
  responses are parsed by botocore as usual, so :class:`~botocore.exceptions.ClientError` codes and
  the retry policy (throttling) behave exactly as for an ordinary call.

Item values and their wire JSON are the item codec's (:mod:`sfsync.items`); this module only carries
finished bodies.  A response another ``before-call`` handler supplies instead of sending the request (botocore's
``Stubber``) is returned as that handler gave it.  The handlers act only on requests
:class:`WireCalls` made (a per-call token in the placeholder), also when another call on the same
client runs inside it (moto runs stream-triggered Lambdas synchronously inside a write).
"""

from __future__ import annotations

import contextvars
import itertools
import json
from collections.abc import Mapping
from typing import Any

import orjson

#: Key of the decoded response body in the dict a wire call returns.
RAW_KEY = "SfsyncWireResponse"
_OPERATIONS = ("BatchGetItem", "BatchWriteItem")
_TOKEN_PREFIX = "sfsync-wire-"  # noqa: S105 (a request marker, not a secret)

#: The real body of the call in progress, by token.
_pending: contextvars.ContextVar[dict[str, bytes] | None] = contextvars.ContextVar("sfsync_wire_pending", default=None)
#: One flag per call of these operations in progress on this thread (True: a wire call).
_active: contextvars.ContextVar[tuple[bool, ...]] = contextvars.ContextVar("sfsync_wire_active", default=())
_counter = itertools.count()


def _encode_body(body: Mapping[str, Any]) -> bytes:
    """A request body (wire format: strings, booleans, lists and maps) as compact UTF-8 JSON."""
    try:
        return orjson.dumps(body)
    except TypeError:  # a lone surrogate: escaped, as json.dumps does by default
        return json.dumps(body, separators=(",", ":")).encode()


class WireCalls:
    """Wire-format ``BatchGetItem`` / ``BatchWriteItem`` through one boto3 DynamoDB client."""

    def __init__(self, client: Any) -> None:
        self._client = client
        events = client.meta.events
        for operation in _OPERATIONS:
            events.register(f"before-call.dynamodb.{operation}", _swap_body, unique_id=f"sfsync-wire-call-{operation}")
            events.register(
                f"before-parse.dynamodb.{operation}", _decode_body, unique_id=f"sfsync-wire-parse-{operation}"
            )
            events.register(f"after-call.dynamodb.{operation}", _pop, unique_id=f"sfsync-wire-done-{operation}")
            events.register(f"after-call-error.dynamodb.{operation}", _pop, unique_id=f"sfsync-wire-error-{operation}")

    def batch_get_item(self, request_items: Mapping[str, Any]) -> dict[str, Any]:
        """``RequestItems`` in wire format -> the decoded response (``Responses``, ``UnprocessedKeys``)."""
        token = self._token()
        table = next(iter(request_items))
        placeholder = {table: {"Keys": [{"Id": {"S": token}}]}}
        return self._call(token, {"RequestItems": request_items}, self._client.batch_get_item, placeholder)

    def batch_write_item(self, request_items: Mapping[str, Any]) -> dict[str, Any]:
        """``RequestItems`` in wire format -> the decoded response (``UnprocessedItems``)."""
        token = self._token()
        table = next(iter(request_items))
        placeholder = {table: [{"PutRequest": {"Item": {"Id": {"S": token}}}}]}
        return self._call(token, {"RequestItems": request_items}, self._client.batch_write_item, placeholder)

    def batch_write_item_encoded(self, table: str, body: bytes) -> dict[str, Any]:
        """A ``BatchWriteItem`` whose whole request body (wire JSON, one ``table``) is already encoded."""
        token = self._token()
        placeholder = {table: [{"PutRequest": {"Item": {"Id": {"S": token}}}}]}
        return self._call_encoded(token, body, self._client.batch_write_item, placeholder)

    @staticmethod
    def _token() -> str:
        return f"{_TOKEN_PREFIX}{next(_counter)}"

    @staticmethod
    def _call(token: str, body: Mapping[str, Any], method: Any, placeholder: Mapping[str, Any]) -> dict[str, Any]:
        return WireCalls._call_encoded(token, _encode_body(body), method, placeholder)

    @staticmethod
    def _call_encoded(token: str, encoded: bytes, method: Any, placeholder: Mapping[str, Any]) -> dict[str, Any]:
        pending = dict(_pending.get() or {})
        pending[token] = encoded
        reset = _pending.set(pending)
        try:
            response: dict[str, Any] = method(RequestItems=placeholder)
        finally:
            _pending.reset(reset)
        raw = response.get(RAW_KEY)
        if isinstance(raw, dict):
            return raw
        # Another handler answered in place of the call (botocore's Stubber): its parsed response.
        return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def _swap_body(params: dict[str, Any], **_: Any) -> None:
    pending = _pending.get()
    body = params.get("body")
    swapped = False
    if pending and isinstance(body, bytes) and _TOKEN_PREFIX.encode() in body:
        for token, real in pending.items():
            if f'"{token}"'.encode() in body:
                params["body"] = real
                swapped = True
                break
    _active.set((*_active.get(), swapped))


def _decode_body(response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any) -> None:
    active = _active.get()
    if not active or not active[-1] or response_dict.get("status_code", 500) >= 300:
        return
    customized_response_dict[RAW_KEY] = orjson.loads(response_dict["body"] or b"{}")
    response_dict["body"] = b"{}"


def _pop(**_: Any) -> None:
    active = _active.get()
    if active:
        _active.set(active[:-1])


__all__ = ["RAW_KEY", "WireCalls"]
