"""The Salesforce secret (docs/engine-design.md, "Salesforce secret") as a validated model.

``SalesforceCredentials.from_secret(secret_dict)`` is the one entry point: every problem comes
back as a :class:`SalesforceConfigError` whose message names the offending key, and secret
values (``client_secret``, ``password``, ``private_key``) never appear in a repr, a log line or
an error message.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from sfsync.core.exceptions import SalesforceConfigError

AuthFlow = Literal["client_credentials", "jwt_bearer", "password"]

PLAIN_HTTP_REFUSED = "plain HTTP is refused except on loopback"
DEFAULT_AUDIENCE = "https://login.salesforce.com"
DEFAULT_API_VERSION = "59.0"

# keys each flow needs (beyond auth_flow and token_url)
_REQUIRED: dict[str, tuple[str, ...]] = {
    "client_credentials": ("client_id", "client_secret"),
    "jwt_bearer": ("client_id", "username", "private_key"),
    "password": ("client_id", "client_secret", "username", "password"),
}
# keys whose input value may be echoed in an error message
_ECHOABLE = frozenset({"auth_flow", "token_url", "api_version", "audience"})
_API_VERSION = re.compile(r"^\d{2,3}\.\d$")


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> str:
    """Return ``url`` if it is https, or http to a loopback host; raise ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("must be an absolute https:// URL")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(f"{PLAIN_HTTP_REFUSED} (host {parts.hostname})")
    return url


class SalesforceCredentials(BaseModel):
    """The credentials of one connected app / integration user."""

    model_config = ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    auth_flow: AuthFlow
    token_url: str
    client_id: str | None = None
    client_secret: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    private_key: SecretStr | None = None
    audience: str = DEFAULT_AUDIENCE
    api_version: str = DEFAULT_API_VERSION
    ca_bundle: str | None = Field(default=None, repr=False)

    @classmethod
    def from_secret(cls, secret: Mapping[str, Any]) -> SalesforceCredentials:
        """Parse the secret JSON (already decoded); raise SalesforceConfigError naming bad keys."""
        if not isinstance(secret, Mapping):
            raise SalesforceConfigError(f"Salesforce secret must be a JSON object, got {type(secret).__name__}")
        try:
            return cls.model_validate(dict(secret))
        except ValidationError as exc:
            raise SalesforceConfigError(_describe(exc, secret)) from None

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, value: str) -> str:
        return check_url(value.strip())

    @field_validator("api_version")
    @classmethod
    def _api_version(cls, value: str) -> str:
        if not _API_VERSION.match(value):
            raise ValueError("must look like '59.0' (digits, a dot, one digit; no leading 'v')")
        return value

    @field_validator("private_key", mode="before")
    @classmethod
    def _unescape_newlines(cls, value: Any) -> Any:
        # secrets pasted as one line often carry literal "\n" sequences instead of newlines
        if isinstance(value, str) and "\n" not in value and "\\n" in value:
            return value.replace("\\n", "\n")
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _ca_bundle(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if "-----BEGIN CERTIFICATE-----" not in value:
            raise ValueError("must be PEM text containing '-----BEGIN CERTIFICATE-----'")
        return value

    @model_validator(mode="after")
    def _flow_requirements(self) -> SalesforceCredentials:
        missing = [key for key in _REQUIRED[self.auth_flow] if not _present(getattr(self, key))]
        if missing:
            keys = ", ".join(repr(k) for k in missing)
            raise ValueError(
                f"{keys} {'is' if len(missing) == 1 else 'are'} required when auth_flow is '{self.auth_flow}'"
            )
        if self.auth_flow == "jwt_bearer" and self.private_key is not None:
            _check_rsa_key(self.private_key.get_secret_value())
        return self

    def cache_key(self) -> str:
        """A digest identifying these credentials (for the token cache; reveals no secret)."""
        material = {
            "auth_flow": self.auth_flow,
            "token_url": self.token_url,
            "client_id": self.client_id,
            "username": self.username,
            "audience": self.audience,
            "client_secret": _reveal(self.client_secret),
            "password": _reveal(self.password),
            "private_key": _reveal(self.private_key),
        }
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _present(value: str | SecretStr | None) -> bool:
    if isinstance(value, SecretStr):
        return bool(value.get_secret_value())
    return bool(value)


def _reveal(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _check_rsa_key(pem: str) -> None:
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("'private_key' is not an unencrypted PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("'private_key' must be an RSA key (the JWT bearer flow signs with RS256)")


def _describe(exc: ValidationError, secret: Mapping[str, Any]) -> str:
    """Every problem of the secret at once: pydantic skips the flow's required-key check when a field
    failed, so the missing keys are added here from the raw secret."""
    problems = []
    for err in exc.errors(include_input=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if loc:
            given = secret.get(loc) if loc in _ECHOABLE else None
            shown = f" (got {given!r})" if isinstance(given, str) else ""
            problems.append(f"'{loc}': {msg}{shown}")
        else:
            problems.append(msg)
    flow = secret.get("auth_flow")
    if isinstance(flow, str) and flow in _REQUIRED and not any("required when auth_flow" in p for p in problems):
        missing = [key for key in _REQUIRED[flow] if not secret.get(key)]
        if missing:
            keys = ", ".join(repr(k) for k in missing)
            problems.append(f"{keys} {'is' if len(missing) == 1 else 'are'} required when auth_flow is '{flow}'")
    return "Salesforce secret is invalid: " + "; ".join(problems)
