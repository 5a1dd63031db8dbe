"""§1 token endpoint flows and §1.5 expired sessions, over real HTTPS."""

from __future__ import annotations

import re
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce import Salesforce, SalesforceExpiredSession

pytestmark = pytest.mark.contract

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def _post_token(emu, data, auth=None):
    with emu.session() as s:
        return s.post(emu.token_url, data=data, auth=auth, timeout=30)


def _assertion(emu, *, key_pem=None, exp=None, aud="https://login.salesforce.com", sub=None, iss=None):
    c = emu.credentials
    claims = {
        "iss": iss or c.client_id,
        "sub": sub or c.username,
        "aud": aud,
        "exp": exp if exp is not None else str(int(emu.clock.now_ms() / 1000) + 180),
    }
    return jwt.encode(claims, key_pem or c.private_key_pem, algorithm="RS256")


def _assert_token_body(emu, body):
    assert re.fullmatch(r"00D[0-9A-Za-z]{12}![A-Za-z0-9_\-]+", body["access_token"])
    assert body["instance_url"] == emu.instance_url
    assert body["token_type"] == "Bearer"
    assert re.fullmatch(r"\d{13}", body["issued_at"])
    assert body["id"].startswith(f"{emu.instance_url}/id/00D")
    assert body["signature"] and body["scope"]
    assert "expires_in" not in body
    assert "refresh_token" not in body


def test_given_basic_client_credentials_when_token_requested_then_bearer_token_per_spec(emu):
    c = emu.credentials
    resp = _post_token(emu, {"grant_type": "client_credentials"}, auth=(c.client_id, c.client_secret))
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "application/json;charset=UTF-8"
    _assert_token_body(emu, resp.json())


def test_given_body_client_credentials_when_token_requested_then_token_works_for_data_calls(emu):
    c = emu.credentials
    resp = _post_token(
        emu, {"grant_type": "client_credentials", "client_id": c.client_id, "client_secret": c.client_secret}
    )
    assert resp.status_code == 200
    token = resp.json()["access_token"]
    sf = Salesforce(instance_url=emu.instance_url, session_id=token, session=emu.session(), version="59.0")
    assert sf.query("SELECT Id FROM Account LIMIT 1")["done"] is True


@pytest.mark.parametrize(
    ("client_id", "secret", "error"),
    [("nope", "x", "invalid_client_id"), (None, "wrong-secret", "invalid_client")],
)
def test_given_bad_client_when_client_credentials_then_400_error_pair(emu, client_id, secret, error):
    resp = _post_token(emu, {"grant_type": "client_credentials"}, auth=(client_id or emu.credentials.client_id, secret))
    assert resp.status_code == 400
    body = resp.json()
    assert body["error"] == error
    assert body["error_description"]


def test_given_password_flow_when_credentials_right_or_wrong_then_token_or_authentication_failure(emu):
    c = emu.credentials
    good = {
        "grant_type": "password",
        "client_id": c.client_id,
        "client_secret": c.client_secret,
        "username": c.username,
        "password": c.password,
    }
    ok = _post_token(emu, good)
    assert ok.status_code == 200
    _assert_token_body(emu, ok.json())
    bad = _post_token(emu, {**good, "password": "wrong"})
    assert bad.status_code == 400
    assert bad.json() == {"error": "invalid_grant", "error_description": "authentication failure"}


@pytest.mark.parametrize("exp_as_string", [True, False])
def test_given_signed_jwt_when_exp_string_or_int_then_token_issued(emu, exp_as_string):
    exp = int(emu.clock.now_ms() / 1000) + 180
    assertion = _assertion(emu, exp=str(exp) if exp_as_string else exp, aud="https://test.salesforce.com")
    resp = _post_token(emu, {"grant_type": JWT_GRANT, "assertion": assertion})
    assert resp.status_code == 200, resp.text
    _assert_token_body(emu, resp.json())


def test_given_expired_or_foreign_jwt_when_token_requested_then_invalid_grant(emu):
    # in the past on both the org clock and the wall clock (see auth.TokenService._jwt)
    expired = _assertion(emu, exp=int(min(emu.clock.now_ms() / 1000, time.time())) - 10)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    foreign = _assertion(emu, key_pem=other_key)
    wrong_aud = _assertion(emu, aud="https://evil.example.com")
    for assertion in (expired, foreign, wrong_aud):
        resp = _post_token(emu, {"grant_type": JWT_GRANT, "assertion": assertion})
        assert resp.status_code == 400
        assert resp.json()["error"] == "invalid_grant"
    unknown_iss = _post_token(emu, {"grant_type": JWT_GRANT, "assertion": _assertion(emu, iss="someone-else")})
    assert unknown_iss.json()["error"] == "invalid_client_id"


def test_given_missing_or_unknown_grant_type_then_invalid_request_or_unsupported(emu):
    missing = _post_token(emu, {})
    assert missing.status_code == 400
    assert missing.json() == {"error": "invalid_request", "error_description": "grant type is missing"}
    unknown = _post_token(emu, {"grant_type": "urn:ietf:params:oauth:grant-type:device_code"})
    assert unknown.json()["error"] == "unsupported_grant_type"


def test_given_refresh_configured_when_refreshing_twice_then_same_refresh_token_keeps_working(emu, monkeypatch):
    cfg = emu.app.tokens.config
    monkeypatch.setattr(cfg, "refresh_token_grants", frozenset({"password"}))
    c = emu.credentials
    first = _post_token(
        emu,
        {
            "grant_type": "password",
            "client_id": c.client_id,
            "client_secret": c.client_secret,
            "username": c.username,
            "password": c.password,
        },
    ).json()
    refresh = first["refresh_token"]
    for _ in range(2):
        resp = _post_token(
            emu,
            {
                "grant_type": "refresh_token",
                "refresh_token": refresh,
                "client_id": c.client_id,
                "client_secret": c.client_secret,
            },
        )
        assert resp.status_code == 200
        assert "refresh_token" not in resp.json()  # never rotated (§13.8)
    bad = _post_token(emu, {"grant_type": "refresh_token", "refresh_token": "bogus", "client_id": c.client_id})
    assert bad.json()["error"] == "invalid_grant"


def test_given_unknown_token_when_data_call_then_401_invalid_session_array(emu, raw):
    sf = Salesforce(instance_url=emu.instance_url, session_id="00D000000000000!bogus", session=emu.session())
    with pytest.raises(SalesforceExpiredSession) as exc:
        sf.query("SELECT Id FROM Account")
    assert exc.value.content == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    no_header = emu.session().get(f"{raw.base}/limits", timeout=30)
    assert no_header.status_code == 401
    assert no_header.json()[0]["errorCode"] == "INVALID_SESSION_ID"


def test_given_oauth_prefix_when_data_call_then_accepted(emu, raw):
    resp = emu.session().get(f"{raw.base}/limits", headers={"Authorization": f"OAuth {emu.access_token()}"}, timeout=30)
    assert resp.status_code == 200


def test_given_tokens_expired_when_old_token_used_then_401_and_new_login_works(emu):
    old = emu.new_token()
    sf = Salesforce(instance_url=emu.instance_url, session_id=old, session=emu.session())
    sf.query("SELECT Id FROM Account LIMIT 1")
    emu.expire_tokens()
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Account LIMIT 1")
    fresh = Salesforce(instance_url=emu.instance_url, session_id=emu.new_token(), session=emu.session())
    assert fresh.query("SELECT Id FROM Account LIMIT 1")["done"]


def test_given_idle_timeout_when_clock_passes_it_then_token_expires(emu, raw):
    raw.admin("set_token_idle_timeout", seconds=120)
    try:
        token = emu.new_token()
        sf = Salesforce(instance_url=emu.instance_url, session_id=token, session=emu.session())
        sf.query("SELECT Id FROM Account LIMIT 1")
        emu.clock.advance(60)
        sf.query("SELECT Id FROM Account LIMIT 1")  # use resets the idle timer
        emu.clock.advance(121)
        with pytest.raises(SalesforceExpiredSession):
            sf.query("SELECT Id FROM Account LIMIT 1")
    finally:
        raw.session.post(f"{emu.instance_url}/__admin/set_token_idle_timeout", json={}, timeout=30)


def test_given_token_requests_when_counting_then_not_api_calls(emu):
    before = emu.api_calls()
    emu.new_token()
    assert emu.api_calls() == before


def test_given_token_issued_then_issued_at_is_org_clock_ms(emu):
    c = emu.credentials
    body = _post_token(emu, {"grant_type": "client_credentials"}, auth=(c.client_id, c.client_secret)).json()
    assert abs(int(body["issued_at"]) - emu.clock.now_ms()) < 5_000


def test_given_soap_login_when_credentials_right_then_session_works_and_wrong_then_invalid_login(emu):
    from simple_salesforce import SalesforceAuthenticationFailed
    from simple_salesforce.login import SalesforceLogin

    c = emu.credentials
    session_id, instance = SalesforceLogin(
        username=c.username,
        password=c.password,
        security_token="",
        session=emu.session(),
        scratch_url=emu.instance_url,
    )
    assert instance == emu.instance_url.removeprefix("https://")
    sf = Salesforce(instance_url=emu.instance_url, session_id=session_id, session=emu.session())
    assert sf.query("SELECT Id FROM Account LIMIT 1")["done"]
    with pytest.raises(SalesforceAuthenticationFailed) as exc:
        SalesforceLogin(
            username=c.username,
            password="wrong",
            security_token="",
            session=emu.session(),
            scratch_url=emu.instance_url,
        )
    assert exc.value.code == "INVALID_LOGIN"


def test_given_identity_url_when_fetched_with_token_then_user_and_org(emu):
    c = emu.credentials
    body = _post_token(emu, {"grant_type": "client_credentials"}, auth=(c.client_id, c.client_secret)).json()
    with emu.session() as s:
        ident = s.get(body["id"], headers={"Authorization": f"Bearer {body['access_token']}"}, timeout=30)
        anonymous = s.get(body["id"], timeout=30)
    assert ident.status_code == 200
    assert ident.json()["username"] == c.username
    assert ident.json()["organization_id"] == emu.org.org_id
    assert anonymous.status_code == 401


def test_given_org_clock_days_ahead_when_jwt_stamped_from_wall_clock_then_still_accepted():
    import datetime as dt

    from sfsync_emulator.clock import Clock
    from sfsync_emulator.emulator import Emulator
    from sfsync_emulator.schema import datetime_to_ms

    ahead = Clock(datetime_to_ms(dt.datetime.now(dt.UTC) + dt.timedelta(days=20)))
    with Emulator.start(clock=ahead) as other:
        assertion = _assertion(other, exp=str(int(time.time()) + 180))
        resp = _post_token(other, {"grant_type": JWT_GRANT, "assertion": assertion})
        assert resp.status_code == 200, resp.text
