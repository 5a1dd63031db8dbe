"""The web server (authorization code) OAuth flow, refresh tokens and revocation, over real HTTPS:
authorize -> code -> token (+ refresh token) -> refresh grant -> a REST query through
simple-salesforce with the new token, as ETL tools that log in with refresh tokens do."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from simple_salesforce import Salesforce, SalesforceExpiredSession

pytestmark = pytest.mark.contract

CALLBACK = "http://localhost:1717/OauthRedirect"


def _authorize(emu: Any, **params: str) -> requests.Response:
    query = {"response_type": "code", "client_id": emu.credentials.client_id, "redirect_uri": CALLBACK, **params}
    with emu.session() as s:
        return s.get(emu.authorize_url, params=query, allow_redirects=False, timeout=30)


def _code(emu: Any, **params: str) -> str:
    resp = _authorize(emu, **params)
    assert resp.status_code == 302, resp.text
    location = urlsplit(resp.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
    query = parse_qs(location.query)
    if "state" in params:
        assert query["state"] == [params["state"]]
    return query["code"][0]


def _token(emu: Any, **form: str) -> requests.Response:
    c = emu.credentials
    data = {"client_id": c.client_id, "client_secret": c.client_secret, **form}
    with emu.session() as s:
        return s.post(emu.token_url, data=data, timeout=30)


def _exchange(emu: Any, code: str, **extra: str) -> requests.Response:
    return _token(emu, grant_type="authorization_code", code=code, redirect_uri=CALLBACK, **extra)


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def _sf(emu: Any, token: str) -> Salesforce:
    return Salesforce(instance_url=emu.instance_url, session_id=token, session=emu.session(), version="59.0")


def test_given_authorization_code_when_exchanged_and_refreshed_then_simple_salesforce_queries_with_the_new_token(emu):
    code = _code(emu, state="xyz-123")
    first = _exchange(emu, code)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["refresh_token"] and body["token_type"] == "Bearer" and body["instance_url"] == emu.instance_url
    assert "refresh_token" in body["scope"].split()
    refreshed = _token(emu, grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    new = refreshed.json()
    assert new["access_token"] != body["access_token"] and "refresh_token" not in new  # never rotated
    result = _sf(emu, new["access_token"]).query("SELECT Id, Name FROM Account ORDER BY Id LIMIT 3")
    assert result["totalSize"] == 3 and all(r["Id"].startswith("001") for r in result["records"])


def test_given_a_used_code_when_presented_again_then_refused_and_its_tokens_revoked(emu):
    code = _code(emu)
    body = _exchange(emu, code).json()
    replay = _exchange(emu, code)
    assert replay.status_code == 400
    assert replay.json() == {"error": "invalid_grant", "error_description": "invalid authorization code"}
    with pytest.raises(SalesforceExpiredSession):
        _sf(emu, body["access_token"]).query("SELECT Id FROM Account LIMIT 1")
    again = _token(emu, grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert again.json()["error"] == "invalid_grant"


def test_given_a_revoked_refresh_token_then_refresh_refused_and_its_access_tokens_dead(emu):
    body = _exchange(emu, _code(emu)).json()
    access = _token(emu, grant_type="refresh_token", refresh_token=body["refresh_token"]).json()["access_token"]
    other = _exchange(emu, _code(emu)).json()  # a second authorization, not revoked
    with emu.session() as s:
        revoked = s.post(emu.revoke_url, data={"token": body["refresh_token"]}, timeout=30)
        unknown = s.post(emu.revoke_url, data={"token": "5Aep-nope"}, timeout=30)
        missing = s.post(emu.revoke_url, data={}, timeout=30)
    assert revoked.status_code == 200
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_token"
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_token"
    refused = _token(emu, grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert refused.status_code == 400
    assert refused.json() == {"error": "invalid_grant", "error_description": "expired access/refresh token"}
    for token in (access, body["access_token"]):
        with pytest.raises(SalesforceExpiredSession):
            _sf(emu, token).query("SELECT Id FROM Account LIMIT 1")
    assert _sf(emu, other["access_token"]).query("SELECT Id FROM Account LIMIT 1")["totalSize"] == 1


def test_given_an_access_token_when_revoked_with_get_then_only_it_dies(emu):
    body = _exchange(emu, _code(emu)).json()
    with emu.session() as s:
        assert s.get(emu.revoke_url, params={"token": body["access_token"]}, timeout=30).status_code == 200
    with pytest.raises(SalesforceExpiredSession):
        _sf(emu, body["access_token"]).query("SELECT Id FROM Account LIMIT 1")
    assert _token(emu, grant_type="refresh_token", refresh_token=body["refresh_token"]).status_code == 200


def test_given_pkce_then_the_verifier_is_required_and_checked(emu):
    verifier, challenge = _pkce()
    code = _code(emu, code_challenge=challenge, code_challenge_method="S256")
    missing = _exchange(emu, code)
    assert missing.json() == {"error": "invalid_grant", "error_description": "invalid code verifier"}
    wrong = _exchange(emu, code, code_verifier=_pkce()[0])
    assert wrong.json() == {"error": "invalid_request", "error_description": "invalid code verifier"}
    ok = _exchange(emu, code, code_verifier=verifier)  # refused attempts did not use the code up
    assert ok.status_code == 200, ok.text


def test_given_wrong_client_or_redirect_then_authorize_refuses_without_redirecting(emu):
    bad_client = _authorize(emu, client_id="3MVG9-unknown")
    assert bad_client.status_code == 400 and "Location" not in bad_client.headers
    assert bad_client.json()["error"] == "invalid_client_id"
    bad_redirect = _authorize(emu, redirect_uri="https://evil.example.com/cb")
    assert bad_redirect.status_code == 400 and "Location" not in bad_redirect.headers
    assert bad_redirect.json() == {
        "error": "redirect_uri_mismatch",
        "error_description": "redirect_uri must match configuration",
    }
    implicit = _authorize(emu, response_type="token", state="s1")
    assert implicit.status_code == 302
    query = parse_qs(urlsplit(implicit.headers["Location"]).query)
    assert query["error"] == ["unsupported_response_type"] and query["state"] == ["s1"]
    plain = _authorize(emu, code_challenge="x" * 43, code_challenge_method="plain")
    assert parse_qs(urlsplit(plain.headers["Location"]).query)["error"] == ["invalid_request"]


def test_given_token_request_mismatches_then_refused_and_code_still_usable(emu):
    code = _code(emu)
    other_redirect = _token(
        emu,
        grant_type="authorization_code",
        code=code,
        redirect_uri="https://login.salesforce.com/services/oauth2/success",
    )
    assert other_redirect.json()["error"] == "redirect_uri_mismatch"
    wrong_secret = _exchange(emu, code, client_secret="nope")
    assert wrong_secret.json()["error"] == "invalid_client"
    unknown = _exchange(emu, "aPrx-unknown")
    assert unknown.json() == {"error": "invalid_grant", "error_description": "invalid authorization code"}
    assert _exchange(emu, code).status_code == 200


def test_given_an_old_code_then_expired(emu):
    code = _code(emu)
    emu.clock.advance(16 * 60)
    expired = _exchange(emu, code)
    assert expired.status_code == 400
    assert expired.json() == {"error": "invalid_grant", "error_description": "expired authorization code"}
