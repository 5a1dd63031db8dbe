"""AWS adapters the handlers build: boto3 clients and the Lambda fan-out invoker.

Clients are created lazily and cached per process (Lambda reuses them across invocations);
the region and endpoints come from the standard AWS environment, so moto and local endpoints work
unchanged.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from sfsync.core.exceptions import DispatchFailed
from sfsync.store.records import CLIENT_CONFIG


@functools.lru_cache(maxsize=1)
def dynamodb_client() -> Any:
    return boto3.client("dynamodb", config=CLIENT_CONFIG)


@functools.lru_cache(maxsize=1)
def lambda_client() -> Any:
    return boto3.client("lambda")


@functools.lru_cache(maxsize=1)
def stepfunctions_client() -> Any:
    return boto3.client("stepfunctions")


def reset_clients() -> None:
    """Forget cached clients (tests switch AWS mocks between cases)."""
    dynamodb_client.cache_clear()
    lambda_client.cache_clear()
    stepfunctions_client.cache_clear()


class LambdaInvoker:
    """Starts ObjectSyncFunction asynchronously (``InvocationType=Event``)."""

    def __init__(self, function_name: str, client: Any | None = None) -> None:
        self._function_name = function_name
        self._client = client

    def start_object_sync(self, object_name: str, cycle_id: str, reason: str) -> None:
        client = self._client or lambda_client()
        payload = json.dumps({"object": object_name, "cycle_id": cycle_id, "reason": reason}).encode()
        try:
            response = client.invoke(FunctionName=self._function_name, InvocationType="Event", Payload=payload)
        except (ClientError, BotoCoreError) as exc:
            raise DispatchFailed(f"invoke of {self._function_name} for {object_name} failed: {exc}") from exc
        status = int(response.get("StatusCode", 0))
        if status != 202:
            raise DispatchFailed(f"invoke of {self._function_name} for {object_name} answered {status}")


__all__ = ["LambdaInvoker", "dynamodb_client", "lambda_client", "reset_clients", "stepfunctions_client"]
