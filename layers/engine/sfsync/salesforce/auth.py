"""OAuth 2.0 token acquisition against the configured token URL (spec §1.1-§1.5).

simple-salesforce can only log in to ``https://{domain}.salesforce.com`` (§1.6), so the engine
obtains tokens itself and runs simple-salesforce in direct mode (§1.7, option 1).  Tokens are
cached in a module-level dict keyed by the credentials' digest, so warm Lambda invocations and
several clients built from the same secret share one session; a token is replaced when a
client reports it rejected (``refresh(stale)``) or when it is older than ``max_age_s``
(clients re-login every 15-30 minutes, §13.8).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import requests

from sfsync.core.exceptions import SalesforceAuthError, SalesforceConfigError, SalesforceUnavailable

from .credentials import SalesforceCredentials, check_url
from .transport import RetryPolicy

logger = logging.getLogger(__name__)

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_LIFETIME_S = 180
DEFAULT_MAX_TOKEN_AGE_S = 1800.0


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and the instance it is valid for."""

    access_token: str = field(repr=False)
    instance_url: str
    obtained_at: float  # epoch seconds (the provider's clock)

    def __str__(self) -> str:
        return f"AccessToken(instance_url={self.instance_url!r})"


_CACHE: dict[str, AccessToken] = {}
_CACHE_LOCK = threading.Lock()


def clear_token_cache() -> None:
    """Forget every cached token (tests; a rotated secret)."""
    with _CACHE_LOCK:
        _CACHE.clear()


class TokenProvider:
    """Fetches, caches and renews the access token of one set of credentials."""

    def __init__(
        self,
        credentials: SalesforceCredentials,
        session: requests.Session,
        *,
        clock: Callable[[], float] = time.time,
        max_age_s: float = DEFAULT_MAX_TOKEN_AGE_S,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._creds = credentials
        self._session = session
        self._clock = clock
        self._max_age_s = max_age_s
        self._retry = retry or RetryPolicy(max_attempts=3)
        self._sleep = sleep
        self._key = credentials.cache_key()
        self.fetch_count = 0  # token endpoint round trips made by this provider

    @property
    def credentials(self) -> SalesforceCredentials:
        return self._creds

    def token(self) -> AccessToken:
        """The cached token, or a new one when none is cached or it is too old."""
        with _CACHE_LOCK:
            cached = _CACHE.get(self._key)
            if cached is not None and self._clock() - cached.obtained_at < self._max_age_s:
                return cached
            return self._fetch_and_store()

    def refresh(self, stale: AccessToken | None) -> AccessToken:
        """A token other than ``stale`` (which the server rejected).

        When another client already replaced ``stale`` in the cache, that newer token is
        returned without a second round trip to the token endpoint.
        """
        with _CACHE_LOCK:
            cached = _CACHE.get(self._key)
            if cached is not None and stale is not None and cached.access_token != stale.access_token:
                return cached
            return self._fetch_and_store()

    # -- internals ---------------------------------------------------------------------------

    def _fetch_and_store(self) -> AccessToken:
        token = self._fetch()
        _CACHE[self._key] = token
        return token

    def _fetch(self) -> AccessToken:
        data, auth = self._grant()
        attempt = 0
        while True:
            attempt += 1
            self.fetch_count += 1
            try:
                response = self._session.post(self._creds.token_url, data=data, auth=auth)
            except requests.exceptions.SSLError as exc:
                raise SalesforceConfigError(
                    f"TLS verification of the token endpoint failed ({exc.__class__.__name__}); "
                    "check the secret's ca_bundle"
                ) from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt < self._retry.max_attempts:
                    self._sleep(self._retry.delay(attempt))
                    continue
                raise SalesforceUnavailable(
                    f"token endpoint unreachable after {attempt} attempts: {exc.__class__.__name__}"
                ) from exc
            if response.status_code >= 500 and attempt < self._retry.max_attempts:
                self._sleep(self._retry.delay(attempt))
                continue
            return self._parse(response)

    def _grant(self) -> tuple[dict[str, str], tuple[str, str] | None]:
        creds = self._creds
        client_id = creds.client_id or ""
        if creds.auth_flow == "client_credentials":
            secret = creds.client_secret.get_secret_value() if creds.client_secret else ""
            return {"grant_type": "client_credentials"}, (client_id, secret)
        if creds.auth_flow == "password":
            return {
                "grant_type": "password",
                "client_id": client_id,
                "client_secret": creds.client_secret.get_secret_value() if creds.client_secret else "",
                "username": creds.username or "",
                "password": creds.password.get_secret_value() if creds.password else "",
            }, None
        # jwt_bearer
        now = int(self._clock())
        claims = {"iss": client_id, "sub": creds.username, "aud": creds.audience, "exp": now + JWT_LIFETIME_S}
        key = creds.private_key.get_secret_value() if creds.private_key else ""
        assertion = jwt.encode(claims, key, algorithm="RS256")
        return {"grant_type": JWT_BEARER_GRANT, "assertion": assertion}, None

    def _parse(self, response: requests.Response) -> AccessToken:
        status = response.status_code
        body = _json_or_none(response)
        if status != 200:
            if isinstance(body, dict) and "error" in body:
                error = str(body.get("error"))
                description = str(body.get("error_description") or error)
                raise SalesforceAuthError(
                    f"token request ({self._creds.auth_flow}) refused: {description}",
                    error_code=error,
                    status=status,
                )
            if status >= 500:
                raise SalesforceUnavailable(f"token endpoint answered HTTP {status}", status=status)
            raise SalesforceAuthError(f"token endpoint answered HTTP {status}: {response.text[:200]}", status=status)
        if not isinstance(body, dict):
            raise SalesforceAuthError("token endpoint answered 200 without a JSON object", status=status)
        access_token = body.get("access_token")
        instance_url = body.get("instance_url")
        if not isinstance(access_token, str) or not access_token or not isinstance(instance_url, str):
            raise SalesforceAuthError("token response lacks access_token or instance_url", status=status)
        try:
            check_url(instance_url)
        except ValueError as exc:
            raise SalesforceConfigError(f"instance_url returned by the token endpoint: {exc}") from None
        logger.info("salesforce token obtained", extra={"auth_flow": self._creds.auth_flow})
        return AccessToken(access_token=access_token, instance_url=instance_url.rstrip("/"), obtained_at=self._clock())


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
