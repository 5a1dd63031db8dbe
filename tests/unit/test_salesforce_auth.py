"""Unit tests of the Salesforce secret model and the token provider's request building.

No network: the token provider is driven with a recording stand-in for ``requests.Session``
that answers with real ``requests.Response`` objects.
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sfsync.core.exceptions import SalesforceAuthError, SalesforceConfigError, SalesforceError, SalesforceUnavailable
from sfsync.salesforce import (
    SalesforceCredentials,
    TokenProvider,
    clear_token_cache,
    client_from_credentials,
    client_from_secret,
)
from sfsync.salesforce.transport import RetryPolicy, build_session

pytestmark = pytest.mark.unit

TOKEN_URL = "https://example.my.salesforce.com/services/oauth2/token"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def private_pem(rsa_key: rsa.RSAPrivateKey) -> str:
    return rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    clear_token_cache()


def secret(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "auth_flow": "client_credentials",
        "token_url": TOKEN_URL,
        "client_id": "3MVG9-consumer-key",
        "client_secret": "s3cr3t-consumer",
        "api_version": "59.0",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


# -- credentials ------------------------------------------------------------------------------


def test_given_client_credentials_secret_when_parsed_then_fields_are_typed() -> None:
    creds = SalesforceCredentials.from_secret(secret(extra_key="ignored"))

    assert creds.auth_flow == "client_credentials"
    assert creds.client_secret is not None
    assert creds.client_secret.get_secret_value() == "s3cr3t-consumer"
    assert creds.api_version == "59.0"
    assert creds.audience == "https://login.salesforce.com"


def test_given_checked_credentials_when_a_client_is_built_then_it_is_the_client_of_the_secret() -> None:
    creds = SalesforceCredentials.from_secret(secret(api_version="61.0"))

    with client_from_credentials(creds) as built, client_from_secret(secret(api_version="61.0")) as parsed:
        assert built.api_version == parsed.api_version == "61.0"
        assert built.calls_made == 0


@pytest.mark.parametrize(
    ("flow", "drop", "named"),
    [
        ("client_credentials", "client_id", "'client_id'"),
        ("client_credentials", "client_secret", "'client_secret'"),
        ("password", "username", "'username'"),
        ("password", "password", "'password'"),
        ("jwt_bearer", "private_key", "'private_key'"),
        ("jwt_bearer", "client_id", "'client_id'"),
    ],
)
def test_given_flow_without_required_key_when_parsed_then_error_names_the_key(
    flow: str, drop: str, named: str, private_pem: str
) -> None:
    raw = secret(auth_flow=flow, username="integration@example.com", password="pw", private_key=private_pem)
    raw.pop(drop)

    with pytest.raises(SalesforceConfigError) as err:
        SalesforceCredentials.from_secret(raw)

    assert named in str(err.value)
    assert f"auth_flow is '{flow}'" in str(err.value)


def test_given_empty_string_for_required_key_when_parsed_then_it_counts_as_missing() -> None:
    with pytest.raises(SalesforceConfigError, match="'client_secret' is required"):
        SalesforceCredentials.from_secret(secret(client_secret=""))


def test_given_unknown_auth_flow_when_parsed_then_error_names_auth_flow_and_the_value() -> None:
    with pytest.raises(SalesforceConfigError) as err:
        SalesforceCredentials.from_secret(secret(auth_flow="refresh_token"))

    assert "'auth_flow'" in str(err.value)
    assert "'refresh_token'" in str(err.value)


def test_given_no_token_url_when_parsed_then_error_names_token_url() -> None:
    raw = secret()
    raw.pop("token_url")

    with pytest.raises(SalesforceConfigError, match="'token_url'"):
        SalesforceCredentials.from_secret(raw)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.my.salesforce.com/services/oauth2/token",
        "http://10.0.0.5:8443/services/oauth2/token",
        "http://127.example.com/services/oauth2/token",
    ],
)
def test_given_plain_http_to_non_loopback_when_parsed_then_refused(url: str) -> None:
    with pytest.raises(SalesforceConfigError, match="plain HTTP is refused except on loopback") as err:
        SalesforceCredentials.from_secret(secret(token_url=url))

    assert isinstance(err.value, SalesforceError)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8443/services/oauth2/token",
        "http://127.3.2.1/services/oauth2/token",
        "http://localhost:9000/services/oauth2/token",
        "http://[::1]:9000/services/oauth2/token",
        "https://login.salesforce.com/services/oauth2/token",
    ],
)
def test_given_https_or_loopback_http_when_parsed_then_accepted(url: str) -> None:
    assert SalesforceCredentials.from_secret(secret(token_url=url)).token_url == url


def test_given_relative_token_url_when_parsed_then_refused() -> None:
    with pytest.raises(SalesforceConfigError, match=r"'token_url'.*absolute https"):
        SalesforceCredentials.from_secret(secret(token_url="/services/oauth2/token"))


@pytest.mark.parametrize("version", ["v59.0", "59", "fifty"])
def test_given_malformed_api_version_when_parsed_then_error_names_api_version(version: str) -> None:
    with pytest.raises(SalesforceConfigError, match="'api_version'"):
        SalesforceCredentials.from_secret(secret(api_version=version))


def test_given_jwt_secret_with_garbage_key_when_parsed_then_private_key_is_named_but_not_echoed() -> None:
    raw = secret(auth_flow="jwt_bearer", username="u@example.com", private_key="not-a-key-TOPSECRET")

    with pytest.raises(SalesforceConfigError, match="'private_key' is not") as err:
        SalesforceCredentials.from_secret(raw)

    assert "TOPSECRET" not in str(err.value)


def test_given_jwt_secret_with_ec_key_when_parsed_then_rsa_is_required() -> None:
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    raw = secret(auth_flow="jwt_bearer", username="u@example.com", private_key=ec_pem)

    with pytest.raises(SalesforceConfigError, match="RSA"):
        SalesforceCredentials.from_secret(raw)


def test_given_private_key_with_escaped_newlines_when_parsed_then_it_is_unescaped(private_pem: str) -> None:
    one_line = private_pem.replace("\n", "\\n")
    raw = secret(auth_flow="jwt_bearer", username="u@example.com", private_key=one_line)

    creds = SalesforceCredentials.from_secret(raw)

    assert creds.private_key is not None
    assert creds.private_key.get_secret_value() == private_pem


def test_given_ca_bundle_that_is_not_pem_when_parsed_then_error_names_ca_bundle() -> None:
    with pytest.raises(SalesforceConfigError, match="'ca_bundle'"):
        SalesforceCredentials.from_secret(secret(ca_bundle="just some text"))


def test_given_non_object_secret_when_parsed_then_config_error() -> None:
    with pytest.raises(SalesforceConfigError, match="JSON object"):
        SalesforceCredentials.from_secret(["not", "a", "dict"])  # type: ignore[arg-type]


def test_given_secret_values_when_repr_and_str_then_they_are_hidden(private_pem: str) -> None:
    creds = SalesforceCredentials.from_secret(
        secret(auth_flow="password", username="u@example.com", password="hunter2-PW", private_key=private_pem)
    )

    for text in (repr(creds), str(creds), json.dumps(creds.model_dump(mode="json"))):
        assert "s3cr3t-consumer" not in text
        assert "hunter2-PW" not in text
        assert "BEGIN PRIVATE KEY" not in text
    assert "3MVG9-consumer-key" in repr(creds)


def test_given_invalid_secret_when_rejected_then_secret_values_do_not_appear_in_the_error() -> None:
    raw = secret(auth_flow="bogus", client_secret="s3cr3t-consumer", password="hunter2-PW")

    with pytest.raises(SalesforceConfigError) as err:
        SalesforceCredentials.from_secret(raw)

    assert "s3cr3t-consumer" not in str(err.value)
    assert "hunter2-PW" not in str(err.value)


def test_given_two_secrets_differing_only_in_password_when_keyed_then_cache_keys_differ() -> None:
    a = SalesforceCredentials.from_secret(secret(auth_flow="password", username="u", password="one"))
    b = SalesforceCredentials.from_secret(secret(auth_flow="password", username="u", password="two"))
    a2 = SalesforceCredentials.from_secret(secret(auth_flow="password", username="u", password="one"))

    assert a.cache_key() != b.cache_key()
    assert a.cache_key() == a2.cache_key()
    assert "one" not in a.cache_key()


# -- token provider (recording session, no network) ------------------------------------------


def _response(status: int, body: Any) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode() if not isinstance(body, bytes) else body
    response.headers["Content-Type"] = "application/json"
    return response


class RecordingSession:
    """Stands in for requests.Session.post: records the calls, answers from a script."""

    def __init__(self, *answers: requests.Response | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    def post(self, url: str, data: dict[str, str], auth: tuple[str, str] | None) -> requests.Response:
        self.calls.append({"url": url, "data": data, "auth": auth})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def ok(token: str = "00Dxx!token-1") -> requests.Response:
    return _response(200, {"access_token": token, "instance_url": "https://example.my.salesforce.com", "id": "x"})


def provider(creds: SalesforceCredentials, session: RecordingSession, now: float = 1_800_000_000.0) -> TokenProvider:
    return TokenProvider(
        creds,
        session,  # type: ignore[arg-type]
        clock=lambda: now,
        retry=RetryPolicy(max_attempts=3, rng=random.Random(1)),
        sleep=lambda _s: None,
    )


def test_given_client_credentials_when_token_fetched_then_basic_auth_and_grant_are_sent() -> None:
    session = RecordingSession(ok())
    creds = SalesforceCredentials.from_secret(secret())

    token = provider(creds, session).token()

    assert token.access_token == "00Dxx!token-1"
    assert token.instance_url == "https://example.my.salesforce.com"
    (call,) = session.calls
    assert call["url"] == TOKEN_URL
    assert call["data"] == {"grant_type": "client_credentials"}
    assert call["auth"] == ("3MVG9-consumer-key", "s3cr3t-consumer")


def test_given_password_flow_when_token_fetched_then_form_carries_all_four_values() -> None:
    session = RecordingSession(ok())
    creds = SalesforceCredentials.from_secret(secret(auth_flow="password", username="u@example.com", password="pw1"))

    provider(creds, session).token()

    assert session.calls[0]["data"] == {
        "grant_type": "password",
        "client_id": "3MVG9-consumer-key",
        "client_secret": "s3cr3t-consumer",
        "username": "u@example.com",
        "password": "pw1",
    }
    assert session.calls[0]["auth"] is None


def test_given_jwt_flow_when_token_fetched_then_assertion_is_rs256_with_the_salesforce_claims(
    rsa_key: rsa.RSAPrivateKey, private_pem: str
) -> None:
    session = RecordingSession(ok())
    creds = SalesforceCredentials.from_secret(
        secret(
            auth_flow="jwt_bearer",
            client_secret=None,
            username="u@example.com",
            private_key=private_pem,
            audience="https://test.salesforce.com",
        )
    )
    now = 1_800_000_000.0

    provider(creds, session, now=now).token()

    data = session.calls[0]["data"]
    assert data["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    header = json.loads(base64.urlsafe_b64decode(data["assertion"].split(".")[0] + "=="))
    assert header["alg"] == "RS256"
    claims = jwt.decode(
        data["assertion"],
        rsa_key.public_key(),
        algorithms=["RS256"],
        audience="https://test.salesforce.com",
        options={"verify_exp": False},
    )
    assert claims == {
        "iss": "3MVG9-consumer-key",
        "sub": "u@example.com",
        "aud": "https://test.salesforce.com",
        "exp": int(now) + 180,
    }


def test_given_token_endpoint_refusal_when_fetched_then_auth_error_carries_the_description() -> None:
    body = {"error": "invalid_grant", "error_description": "authentication failure"}
    session = RecordingSession(_response(400, body))
    creds = SalesforceCredentials.from_secret(secret())

    with pytest.raises(SalesforceAuthError, match="authentication failure") as err:
        provider(creds, session).token()

    assert err.value.error_code == "invalid_grant"
    assert err.value.status == 400


def test_given_token_endpoint_5xx_then_200_when_fetched_then_retried() -> None:
    session = RecordingSession(_response(503, b"down"), ok("00Dxx!after-retry"))
    creds = SalesforceCredentials.from_secret(secret())

    assert provider(creds, session).token().access_token == "00Dxx!after-retry"
    assert len(session.calls) == 2


def test_given_token_endpoint_unreachable_when_fetched_then_unavailable_after_bounded_attempts() -> None:
    session = RecordingSession(*(requests.ConnectionError("refused") for _ in range(3)))
    creds = SalesforceCredentials.from_secret(secret())

    with pytest.raises(SalesforceUnavailable, match="3 attempts"):
        provider(creds, session).token()
    assert len(session.calls) == 3


def test_given_token_response_with_plain_http_instance_when_fetched_then_config_error() -> None:
    bad = _response(200, {"access_token": "t", "instance_url": "http://evil.example.com"})
    creds = SalesforceCredentials.from_secret(secret())

    with pytest.raises(SalesforceConfigError, match="plain HTTP is refused"):
        provider(creds, RecordingSession(bad)).token()


def test_given_cached_token_when_second_provider_asks_then_no_new_request() -> None:
    creds = SalesforceCredentials.from_secret(secret())
    first, second = RecordingSession(ok("00Dxx!shared")), RecordingSession()

    provider(creds, first).token()
    token = provider(creds, second).token()

    assert token.access_token == "00Dxx!shared"
    assert second.calls == []


def test_given_stale_token_when_refreshed_then_new_token_is_fetched_once_and_shared() -> None:
    creds = SalesforceCredentials.from_secret(secret())
    session = RecordingSession(ok("00Dxx!old"), ok("00Dxx!new"))
    tokens = provider(creds, session)
    old = tokens.token()

    new = tokens.refresh(old)
    again = provider(creds, RecordingSession()).refresh(old)  # another client still holding "old"

    assert new.access_token == "00Dxx!new"
    assert again.access_token == "00Dxx!new"
    assert len(session.calls) == 2


def test_given_token_older_than_max_age_when_asked_then_refetched() -> None:
    creds = SalesforceCredentials.from_secret(secret())
    session = RecordingSession(ok("00Dxx!a"), ok("00Dxx!b"))
    clock = {"now": 1000.0}
    tokens = TokenProvider(creds, session, clock=lambda: clock["now"], max_age_s=60)  # type: ignore[arg-type]

    assert tokens.token().access_token == "00Dxx!a"
    clock["now"] += 59
    assert tokens.token().access_token == "00Dxx!a"
    clock["now"] += 2
    assert tokens.token().access_token == "00Dxx!b"


def test_given_access_token_when_repr_then_token_is_hidden() -> None:
    creds = SalesforceCredentials.from_secret(secret())
    token = provider(creds, RecordingSession(ok("00Dxx!very-secret-token"))).token()

    assert "very-secret-token" not in repr(token)
    assert "very-secret-token" not in str(token)


# -- transport ---------------------------------------------------------------------------------


def test_given_ca_bundle_when_session_built_then_environment_is_ignored_and_ca_file_pinned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")

    session = build_session(pem)

    assert session.trust_env is False
    assert isinstance(session.verify, str)
    with open(session.verify, encoding="ascii") as fh:
        assert fh.read() == pem
    assert build_session(pem).verify == session.verify  # content-addressed: reused while warm
    settings = session.merge_environment_settings("https://127.0.0.1:1/", {}, None, session.verify, None)
    assert settings["verify"] == session.verify


def test_given_retry_policy_when_delays_drawn_then_full_jitter_within_capped_exponential() -> None:
    policy = RetryPolicy(max_attempts=6, base_delay=0.5, max_delay=3.0, rng=random.Random(42))

    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (5, 3.0)]:
        draws = [policy.delay(attempt) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8  # the whole range is used, not a fixed value
