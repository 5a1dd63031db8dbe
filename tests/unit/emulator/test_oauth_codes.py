"""The web server flow's codes, PKCE and revocation in the emulator's token service."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from sfsync_emulator.auth import AuthConfig, OAuthError, TokenService, TokenStore, _s256
from sfsync_emulator.clock import Clock

pytestmark = pytest.mark.unit

START_MS = 1_795_000_000_000
CALLBACK = "http://localhost:1717/OauthRedirect"
INSTANCE = "https://127.0.0.1:1"


@pytest.fixture
def clock() -> Clock:
    return Clock(START_MS)


@pytest.fixture
def service(clock: Clock) -> TokenService:
    cfg = AuthConfig(
        client_id="cid", client_secret="secret", username="u@x", password="pw", user_id="005x", org_id="00Dx"
    )
    return TokenService(cfg, TokenStore(clock))


def _code(service: TokenService, **params: str) -> str:
    location = service.authorize(
        {"response_type": "code", "client_id": "cid", "redirect_uri": CALLBACK, "state": "s", **params}
    )
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["s"]
    return query["code"][0]


def _exchange(service: TokenService, code: str, **extra: str) -> dict:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, "client_id": "cid",
            "client_secret": "secret", **extra}  # fmt: skip
    return service.token(form, None, INSTANCE)


def test_given_rfc7636_example_then_s256_challenge_matches() -> None:
    assert _s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_given_a_code_then_it_lives_fifteen_minutes_of_org_time(service: TokenService, clock: Clock) -> None:
    fresh, old = _code(service), _code(service)
    clock.advance(900)
    assert _exchange(service, fresh)["refresh_token"]
    clock.advance(1)
    with pytest.raises(OAuthError) as exc:
        _exchange(service, old)
    assert (exc.value.error, exc.value.description) == ("invalid_grant", "expired authorization code")


def test_given_a_replayed_code_then_refused_and_what_it_issued_is_revoked(service: TokenService) -> None:
    code = _code(service)
    body = _exchange(service, code)
    store = service.store
    assert store.validate(body["access_token"]) is not None
    with pytest.raises(OAuthError):
        _exchange(service, code)
    assert store.validate(body["access_token"]) is None
    assert store.refresh_user(body["refresh_token"]) is None


def test_given_refresh_token_revoked_then_only_the_tokens_it_issued_die(service: TokenService) -> None:
    first = _exchange(service, _code(service))
    second = _exchange(service, _code(service))
    refreshed = service.token(
        {"grant_type": "refresh_token", "refresh_token": first["refresh_token"], "client_id": "cid"}, None, INSTANCE
    )
    service.revoke({"token": first["refresh_token"]})
    store = service.store
    assert store.validate(first["access_token"]) is None and store.validate(refreshed["access_token"]) is None
    assert store.validate(second["access_token"]) is not None
    with pytest.raises(OAuthError) as exc:
        service.revoke({"token": first["refresh_token"]})
    assert exc.value.error == "invalid_token"
    with pytest.raises(OAuthError) as hint:
        service.revoke({"token": second["access_token"], "token_type_hint": "id_token"})
    assert hint.value.error == "unsupported_token_type"
    assert store.validate(second["access_token"]) is not None


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"code_challenge": "short"}, "invalid_request"),
        ({"code_challenge_method": "S256"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ],
)
def test_given_bad_authorize_parameters_then_error_redirect_and_no_code(
    service: TokenService, params: dict, error: str
) -> None:
    location = service.authorize(
        {"response_type": "code", "client_id": "cid", "redirect_uri": CALLBACK, "state": "s", **params}
    )
    query = parse_qs(urlsplit(location).query)
    assert query["error"] == [error] and "code" not in query and query["state"] == ["s"]


def test_given_a_redirect_uri_with_a_query_then_the_code_is_appended(clock: Clock) -> None:
    cfg = AuthConfig(
        client_id="cid", client_secret="s", username="u", password="p", user_id="005x", org_id="00Dx",
        callback_urls=("https://app.example/cb?tenant=7",),
    )  # fmt: skip
    location = TokenService(cfg, TokenStore(clock)).authorize(
        {"response_type": "code", "client_id": "cid", "redirect_uri": "https://app.example/cb?tenant=7"}
    )
    assert location.startswith("https://app.example/cb?tenant=7&code=aPrx")
