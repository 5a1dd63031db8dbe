"""Loading the Salesforce secret from Secrets Manager (moto): its JSON object, or one ConfigurationError naming it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from sfsync.core.config import load_secret
from sfsync.core.exceptions import ConfigurationError

pytestmark = pytest.mark.functional


# -- the Salesforce secret -------------------------------------------------------------------------


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from aws_lambda_powertools.utilities import parameters

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    parameters.clear_caches()
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="eu-west-1")
    parameters.clear_caches()


def test_given_a_json_secret_when_loading_then_its_object_is_returned(secrets: Any) -> None:
    arn = secrets.create_secret(Name="sf", SecretString='{"auth_flow": "password"}')["ARN"]
    assert load_secret(arn) == {"auth_flow": "password"}


@pytest.mark.parametrize("payload", ["{not json", '["a list"]'])
def test_given_a_malformed_secret_when_loading_then_configuration_error(secrets: Any, payload: str) -> None:
    arn = secrets.create_secret(Name="sf-bad", SecretString=payload)["ARN"]
    with pytest.raises(ConfigurationError, match="sf-bad"):
        load_secret(arn)


def test_given_a_missing_secret_when_loading_then_configuration_error(secrets: Any) -> None:
    with pytest.raises(ConfigurationError, match="could not be read"):
        load_secret("arn:aws:secretsmanager:eu-west-1:123456789012:secret:nope-AbCdEf")
