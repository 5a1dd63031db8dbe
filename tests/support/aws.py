"""moto-backed AWS for tests that need the real DynamoDB API but no local stack."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from moto import mock_aws
from sfsync.store.state import StateStore

REGION = "eu-west-1"


@contextmanager
def mocked_aws(monkeypatch: pytest.MonkeyPatch, region: str = REGION) -> Iterator[Any]:
    """moto for every AWS call made inside (fake credentials, ``region`` by default); yields a DynamoDB client."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("dynamodb", region_name=region)


def create_table(client: Any, name: str, *keys: str) -> None:
    """An on-demand table keyed by ``keys`` (the hash key, then an optional range key), all strings."""
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in zip(keys, ("HASH", "RANGE"), strict=False)],
        AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in keys],
        BillingMode="PAY_PER_REQUEST",
    )


@contextmanager
def mocked_state_store(monkeypatch: pytest.MonkeyPatch, table_name: str = "state") -> Iterator[StateStore]:
    """A :class:`StateStore` over an empty moto state table (``pk`` / ``sk``)."""
    with mocked_aws(monkeypatch) as client:
        create_table(client, table_name, "pk", "sk")
        yield StateStore(table_name, region=REGION)
