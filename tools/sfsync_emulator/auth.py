"""OAuth 2.0 endpoints (spec §1) and the emulator's token store.

Token endpoint flows: ``client_credentials`` (Basic header or body fields), JWT bearer (RS256
verified with the configured public key), username-password (``grant_type=password``), the web
server flow's ``authorization_code`` (with PKCE) and ``refresh_token`` (never rotated, §13.8).

The web server flow: ``GET /services/oauth2/authorize?response_type=code&client_id=..&
redirect_uri=..&state=..[&code_challenge=..]`` has no login page: the integration user approves
at once, and the answer is a 302 to ``redirect_uri?code=..&state=..``.  The code is single-use
and lives ``auth_code_ttl_s`` (15 minutes) of org-clock time; ``redirect_uri`` must be one of the
connected app's ``callback_urls`` and match at the token endpoint; a ``code_challenge`` (S256)
requires the matching ``code_verifier``.  Its token answer carries a ``refresh_token``.  A code
presented twice is refused and the tokens issued for it are revoked (RFC 6749 §4.1.2).
``/services/oauth2/revoke`` revokes an access token, or a refresh token with every access token
issued from it.

Access tokens are opaque ``00D…!…`` strings kept in a :class:`TokenStore`; they expire when
revoked (``expire_all``, ``revoke``) or, optionally, after an idle period on the org clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt

from .clock import Clock

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_SOAP_FIELD = r"<(?:\w+:)?{name}>(.*?)</(?:\w+:)?{name}>"
_SOAP_ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
    'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" '
    'xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    "<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
)
DEFAULT_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")
#: the connected app's callback URLs (the Salesforce CLI's, and Salesforce's own success page)
DEFAULT_CALLBACK_URLS = (
    "http://localhost:1717/OauthRedirect",
    "https://login.salesforce.com/services/oauth2/success",
    "https://test.salesforce.com/services/oauth2/success",
)
AUTH_CODE_TTL_S = 900.0
_CHALLENGE_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url of a SHA-256, unpadded
_VERIFIER_RE = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")  # RFC 7636 §4.1


class OAuthError(Exception):
    """A token-endpoint failure: HTTP status + ``{"error", "error_description"}`` (§1.1)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


@dataclass
class AuthConfig:
    """The connected app and the integration user the token endpoint knows."""

    client_id: str
    client_secret: str
    username: str
    password: str
    user_id: str
    org_id: str
    public_key_pem: str | None = None
    audiences: tuple[str, ...] = DEFAULT_AUDIENCES
    security_token: str = ""  # SOAP login: password + security token
    password_flow_enabled: bool = True
    client_credentials_user_enabled: bool = True
    jwt_user_preauthorized: bool = True
    # grant types whose success response carries a refresh_token (real orgs: none of
    # password / jwt / client_credentials, §1.1); e.g. {"password"} to test refresh flows
    refresh_token_grants: frozenset[str] = frozenset()
    # expire a token after this many idle seconds of org-clock time (None: never)
    idle_timeout_s: float | None = None
    scope: str = "api"
    # web server flow: the redirect URIs the connected app accepts, and the codes' lifetime
    callback_urls: tuple[str, ...] = DEFAULT_CALLBACK_URLS
    auth_code_ttl_s: float = AUTH_CODE_TTL_S


@dataclass
class TokenInfo:
    token: str
    user_id: str
    grant: str
    issued_ms: int
    last_used_ms: int
    uses: int = 0
    refresh: str | None = None  # the refresh token it was issued from / with (revoked together)


@dataclass
class AuthCode:
    """An authorization code of the web server flow."""

    code: str
    client_id: str
    redirect_uri: str
    user_id: str
    issued_ms: int
    challenge: str | None = None  # PKCE code_challenge (S256)
    used: bool = False
    replayed: bool = False
    issued: list[str] = field(default_factory=list)  # tokens issued for it (revoked if it is replayed)


@dataclass
class TokenStore:
    """Live access tokens, refresh tokens and authorization codes (thread-safe)."""

    clock: Clock
    idle_timeout_s: float | None = None
    _tokens: dict[str, TokenInfo] = field(default_factory=dict)
    _refresh: dict[str, str] = field(default_factory=dict)  # refresh token -> user id
    _codes: dict[str, AuthCode] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, org_id: str, user_id: str, grant: str, *, refresh: str | None = None) -> TokenInfo:
        now = self.clock.now_ms()
        token = f"{org_id[:15]}!AQ{secrets.token_urlsafe(72)}"
        info = TokenInfo(token=token, user_id=user_id, grant=grant, issued_ms=now, last_used_ms=now, refresh=refresh)
        with self._lock:
            self._tokens[token] = info
        return info

    def issue_refresh(self, user_id: str) -> str:
        token = "5Aep" + secrets.token_urlsafe(60)
        with self._lock:
            self._refresh[token] = user_id
        return token

    def refresh_user(self, refresh_token: str) -> str | None:
        with self._lock:
            return self._refresh.get(refresh_token)

    def revoke(self, token: str) -> bool:
        """Revoke an access token, or a refresh token and every access token issued from it.
        False when the token is not live."""
        with self._lock:
            if self._tokens.pop(token, None) is not None:
                return True
            if self._refresh.pop(token, None) is None:
                return False
            for key in [k for k, info in self._tokens.items() if info.refresh == token]:
                del self._tokens[key]
            return True

    # -- authorization codes -----------------------------------------------------------------

    def issue_code(
        self, client_id: str, redirect_uri: str, user_id: str, challenge: str | None, ttl_ms: int
    ) -> AuthCode:
        now = self.clock.now_ms()
        entry = AuthCode(
            code="aPrx" + secrets.token_urlsafe(48),
            client_id=client_id,
            redirect_uri=redirect_uri,
            user_id=user_id,
            issued_ms=now,
            challenge=challenge,
        )
        with self._lock:
            for key in [k for k, c in self._codes.items() if now - c.issued_ms > ttl_ms]:
                del self._codes[key]  # expired codes are forgotten (a replay then is just unknown)
            self._codes[entry.code] = entry
        return entry

    def code(self, code: str) -> AuthCode | None:
        with self._lock:
            return self._codes.get(code)

    def redeem(self, entry: AuthCode) -> bool:
        """Mark the code used; False when another request redeemed it first."""
        with self._lock:
            if entry.used:
                return False
            entry.used = True
            return True

    def record_issued(self, entry: AuthCode, tokens: list[str]) -> None:
        """Remember the tokens a redeemed code issued (revoked at once if it was replayed meanwhile)."""
        with self._lock:
            entry.issued.extend(tokens)
            replayed = entry.replayed
        if replayed:
            self.revoke_issued(entry)

    def revoke_issued(self, entry: AuthCode) -> None:
        """A replayed code: revoke what was issued for it (and what it issues later)."""
        with self._lock:
            entry.replayed = True
            issued = list(entry.issued)
        for token in issued:
            self.revoke(token)

    def validate(self, token: str) -> TokenInfo | None:
        """The token's info (and mark it used), or None when unknown or expired."""
        now = self.clock.now_ms()
        with self._lock:
            info = self._tokens.get(token)
            if info is None:
                return None
            if self.idle_timeout_s is not None and now - info.last_used_ms > self.idle_timeout_s * 1000:
                del self._tokens[token]
                return None
            info.last_used_ms = max(info.last_used_ms, now)
            info.uses += 1
            return info

    def expire_all(self) -> int:
        """Revoke every access token (refresh tokens survive, as on a real org)."""
        with self._lock:
            n = len(self._tokens)
            self._tokens.clear()
            return n

    def revoke_refresh_tokens(self) -> None:
        with self._lock:
            self._refresh.clear()

    def count(self) -> int:
        with self._lock:
            return len(self._tokens)


def bearer_token(authorization: str | None) -> str | None:
    """The token of ``Authorization: Bearer X`` or ``Authorization: OAuth X`` (§0.2)."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() not in ("bearer", "oauth") or not value.strip():
        return None
    return value.strip()


class TokenService:
    """Answers ``POST /services/oauth2/token``."""

    def __init__(self, config: AuthConfig, store: TokenStore) -> None:
        self.config = config
        self.store = store

    def expire_all_tokens(self) -> int:
        """Revoke every access token now (the next data call answers 401 INVALID_SESSION_ID)."""
        return self.store.expire_all()

    # -- entry point -----------------------------------------------------------------------

    def token(self, form: Mapping[str, str], authorization: str | None, instance_url: str) -> dict[str, Any]:
        """Run the grant named in ``form``; raise :class:`OAuthError` on failure."""
        grant = form.get("grant_type")
        if not grant:
            raise OAuthError("invalid_request", "grant type is missing")
        if grant == "authorization_code":
            return self._authorization_code(form, authorization, instance_url)
        if grant == "client_credentials":
            self._client_credentials(form, authorization)
        elif grant == "password":
            self._password(form, authorization)
        elif grant == JWT_GRANT:
            self._jwt(form)
        elif grant == "refresh_token":
            return self._refresh(form, authorization, instance_url)
        else:
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        return self._success(grant, instance_url)

    # -- flows -----------------------------------------------------------------------------

    def _client(self, form: Mapping[str, str], authorization: str | None) -> tuple[str | None, str | None]:
        if authorization and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise OAuthError("invalid_client", "invalid client credentials") from exc
            cid, sep, secret = decoded.partition(":")
            if not sep:
                raise OAuthError("invalid_client", "invalid client credentials")
            return cid, secret
        return form.get("client_id"), form.get("client_secret")

    def _check_client(self, client_id: str | None, client_secret: str | None, *, secret_required: bool) -> None:
        if not client_id or not hmac.compare_digest(client_id, self.config.client_id):
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if client_secret is None and not secret_required:
            return
        if not client_secret or not hmac.compare_digest(client_secret, self.config.client_secret):
            raise OAuthError("invalid_client", "invalid client credentials")

    def _client_credentials(self, form: Mapping[str, str], authorization: str | None) -> None:
        cid, secret = self._client(form, authorization)
        self._check_client(cid, secret, secret_required=True)
        if not self.config.client_credentials_user_enabled:
            raise OAuthError("invalid_grant", "no client credentials user enabled")

    def _password(self, form: Mapping[str, str], authorization: str | None) -> None:
        cid, secret = self._client(form, authorization)
        self._check_client(cid, secret, secret_required=True)
        if not self.config.password_flow_enabled:
            raise OAuthError("invalid_grant", "authentication failure")
        username = form.get("username", "")
        password = form.get("password", "")
        if not (
            hmac.compare_digest(username.lower(), self.config.username.lower())
            and hmac.compare_digest(password, self.config.password)
        ):
            raise OAuthError("invalid_grant", "authentication failure")

    def _jwt(self, form: Mapping[str, str]) -> None:
        assertion = form.get("assertion")
        if not assertion:
            raise OAuthError("invalid_request", "assertion is missing")
        if not self.config.public_key_pem:
            raise OAuthError("invalid_grant", "invalid assertion")
        try:
            claims = jwt.decode(
                assertion,
                self.config.public_key_pem,
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_aud": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.InvalidTokenError as exc:
            raise OAuthError("invalid_grant", "invalid assertion") from exc
        iss = claims.get("iss")
        if not isinstance(iss, str) or not hmac.compare_digest(iss, self.config.client_id):
            raise OAuthError("invalid_client_id", "client identifier invalid")
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else list(aud) if isinstance(aud, list) else []
        wanted = {a.rstrip("/") for a in self.config.audiences}
        if not any(isinstance(a, str) and a.rstrip("/") in wanted for a in auds):
            raise OAuthError("invalid_grant", "audience is invalid")
        exp = claims.get("exp")
        try:
            exp_s = float(str(exp))
        except ValueError as exc:
            raise OAuthError("invalid_grant", "invalid assertion") from exc
        # Clients stamp ``exp`` from wall-clock time while the org runs on a virtual clock that
        # tests move (days ahead, or held in the past): an assertion counts as expired only when
        # it is in the past on both clocks.
        if exp_s * 1000 <= min(self.store.clock.now_ms(), time.time() * 1000):
            raise OAuthError("invalid_grant", "expired authorization code")
        sub = claims.get("sub")
        if not isinstance(sub, str) or sub.lower() != self.config.username.lower():
            raise OAuthError("invalid_grant", "invalid assertion")
        if not self.config.jwt_user_preauthorized:
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")

    def _refresh(self, form: Mapping[str, str], authorization: str | None, instance_url: str) -> dict[str, Any]:
        cid, secret = self._client(form, authorization)
        self._check_client(cid, secret, secret_required=False)
        token = form.get("refresh_token")
        if not token or self.store.refresh_user(token) is None:
            raise OAuthError("invalid_grant", "expired access/refresh token")
        # the refresh token is never rotated (§13.8): the response carries none; the access
        # token is revoked with it
        return self._success("refresh_token", instance_url, with_refresh=False, refresh_source=token)

    # -- web server flow (authorization code) -------------------------------------------------

    def authorize(self, params: Mapping[str, str]) -> str:
        """``/services/oauth2/authorize``: the URL to redirect to (``code`` and ``state``, or an
        OAuth ``error`` for a valid client and redirect URI).  Raises :class:`OAuthError` when
        the client or the redirect URI is wrong: never redirect to an unregistered URI."""
        cfg = self.config
        client_id = params.get("client_id") or ""
        if not client_id or not hmac.compare_digest(client_id, cfg.client_id):
            raise OAuthError("invalid_client_id", "client identifier invalid")
        redirect_uri = params.get("redirect_uri") or ""
        if redirect_uri not in cfg.callback_urls:
            raise OAuthError("redirect_uri_mismatch", "redirect_uri must match configuration")
        state = params.get("state")
        response_type = params.get("response_type")
        challenge = params.get("code_challenge") or None
        method = params.get("code_challenge_method") or None
        error: tuple[str, str] | None = None
        if response_type != "code":
            error = ("unsupported_response_type", "response type not supported")
        elif challenge is not None and not _CHALLENGE_RE.match(challenge):
            error = ("invalid_request", "invalid code_challenge: base64url of a SHA-256 hash")
        elif method is not None and (method != "S256" or challenge is None):
            error = ("invalid_request", "code_challenge_method must be S256, with a code_challenge")
        if error is not None:
            return _redirect(redirect_uri, error=error[0], error_description=error[1], state=state)
        entry = self.store.issue_code(client_id, redirect_uri, cfg.user_id, challenge, int(cfg.auth_code_ttl_s * 1000))
        return _redirect(redirect_uri, code=entry.code, state=state)

    def _authorization_code(
        self, form: Mapping[str, str], authorization: str | None, instance_url: str
    ) -> dict[str, Any]:
        cid, secret = self._client(form, authorization)
        self._check_client(cid, secret, secret_required=True)
        entry = self.store.code(form.get("code") or "")
        if entry is None or entry.client_id != cid:
            raise OAuthError("invalid_grant", "invalid authorization code")
        if entry.used:
            self.store.revoke_issued(entry)
            raise OAuthError("invalid_grant", "invalid authorization code")
        if self.store.clock.now_ms() - entry.issued_ms > self.config.auth_code_ttl_s * 1000:
            raise OAuthError("invalid_grant", "expired authorization code")
        if form.get("redirect_uri") != entry.redirect_uri:
            raise OAuthError("redirect_uri_mismatch", "redirect_uri must match configuration")
        if entry.challenge is not None:
            verifier = form.get("code_verifier")
            if not verifier:
                raise OAuthError("invalid_grant", "invalid code verifier")
            if not _VERIFIER_RE.match(verifier) or not hmac.compare_digest(_s256(verifier), entry.challenge):
                raise OAuthError("invalid_request", "invalid code verifier")
        if not self.store.redeem(entry):
            raise OAuthError("invalid_grant", "invalid authorization code")
        body = self._success("authorization_code", instance_url, with_refresh=True)
        self.store.record_issued(entry, [body["access_token"], body["refresh_token"]])
        return body

    def revoke(self, params: Mapping[str, str]) -> None:
        """``/services/oauth2/revoke``: revoke ``token`` (access or refresh); OAuthError when it
        is missing, of an unsupported type or not live."""
        hint = params.get("token_type_hint")
        if hint not in (None, "", "access_token", "refresh_token"):
            raise OAuthError("unsupported_token_type", "this token type is not supported")
        token = params.get("token")
        if not token:
            raise OAuthError("invalid_token", "the token parameter is missing")
        if not self.store.revoke(token):
            raise OAuthError("invalid_token", "invalid token")

    def issue_refresh_token(self) -> str:
        """A refresh token for the integration user, as an approved authorization would give."""
        return self.store.issue_refresh(self.config.user_id)

    # -- SOAP login (simple-salesforce's username + password + security_token mode) ----------

    def soap_login(self, body: bytes, instance_url: str, api_version: str) -> tuple[int, str]:
        """``POST /services/Soap/u/{ver}`` ``login``: (HTTP status, SOAP XML)."""
        text = body.decode("utf-8", "replace")
        username = _soap_value(text, "username")
        password = _soap_value(text, "password")
        cfg = self.config
        expected = cfg.password + cfg.security_token
        if (
            username is None
            or password is None
            or username.lower() != cfg.username.lower()
            or not hmac.compare_digest(password, expected)
        ):
            fault = (
                "<soapenv:Fault><faultcode>sf:INVALID_LOGIN</faultcode><faultstring>INVALID_LOGIN: Invalid "
                "username, password, security token; or user locked out.</faultstring><detail>"
                '<sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>'
                "<sf:exceptionMessage>Invalid username, password, security token; or user locked out."
                "</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault>"
            )
            return 500, _SOAP_ENVELOPE.format(body=fault)
        info = self.store.issue(cfg.org_id, cfg.user_id, "soap")
        server = f"{instance_url}/services/Soap/u/{api_version}/{cfg.org_id[:15]}"
        result = (
            "<loginResponse><result>"
            f"<metadataServerUrl>{instance_url}/services/Soap/m/{api_version}/{cfg.org_id[:15]}</metadataServerUrl>"
            "<passwordExpired>false</passwordExpired><sandbox>false</sandbox>"
            f"<serverUrl>{server}</serverUrl><sessionId>{info.token}</sessionId>"
            f"<userId>{cfg.user_id}</userId><userInfo><organizationId>{cfg.org_id}</organizationId>"
            f"<userName>{html.escape(cfg.username)}</userName></userInfo>"
            "</result></loginResponse>"
        )
        return 200, _SOAP_ENVELOPE.format(body=result)

    # -- responses -------------------------------------------------------------------------

    def _success(
        self, grant: str, instance_url: str, *, with_refresh: bool | None = None, refresh_source: str | None = None
    ) -> dict[str, Any]:
        cfg = self.config
        if with_refresh is None:
            with_refresh = grant in cfg.refresh_token_grants
        refresh = self.store.issue_refresh(cfg.user_id) if with_refresh else None
        info = self.store.issue(cfg.org_id, cfg.user_id, grant, refresh=refresh or refresh_source)
        identity = f"{instance_url}/id/{cfg.org_id}/{cfg.user_id}"
        issued_at = str(info.issued_ms)
        mac = hmac.new(cfg.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
        body: dict[str, Any] = {
            "access_token": info.token,
            "instance_url": instance_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": base64.b64encode(mac).decode(),
            "scope": f"{cfg.scope} refresh_token" if refresh else cfg.scope,
        }
        if refresh:
            body["refresh_token"] = refresh
        return body


def _s256(verifier: str) -> str:
    """PKCE S256: base64url(SHA-256(verifier)) without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).decode().rstrip("=")


def _redirect(uri: str, **params: str | None) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{uri}{'&' if '?' in uri else '?'}{query}"


def _soap_value(text: str, name: str) -> str | None:
    m = re.search(_SOAP_FIELD.format(name=name), text, re.DOTALL)
    return html.unescape(m.group(1)) if m else None
