"""``Emulator``: start/stop an emulated org served over HTTPS on loopback (the Python API
tests and the CLI use).

>>> with Emulator.start(seed=7, records=200) as emu:          # doctest: +SKIP
...     sf = emu.salesforce()
...     sf.query("SELECT Id FROM Lead LIMIT 5")
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from . import tls as tls_module
from .admin import DEFAULT_RELAY_CHANNEL
from .auth import AuthConfig, TokenService, TokenStore
from .bulk import BulkService
from .bulk1 import BulkV1Service
from .catalogue import default_schema
from .cdc import ChangeEvent
from .clock import Clock
from .faults import FaultRule
from .server import EmulatorApp, ServerThread
from .store import Org, OrgConfig

if TYPE_CHECKING:
    from types import TracebackType

    import simple_salesforce

DEFAULT_API_VERSION = "59.0"
DEFAULT_USERNAME = "integration@sfsync-emulator.example"
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Credentials:
    client_id: str
    client_secret: str
    username: str
    password: str
    private_key_pem: str
    public_key_pem: str


def _credentials(seed: int, username: str) -> Credentials:
    rng = random.Random(f"sfsync-emulator-credentials-{seed}")
    client_id = "3MVG9" + "".join(rng.choice(_ALNUM) for _ in range(80))
    client_secret = "".join(rng.choice("0123456789ABCDEF") for _ in range(64))
    password = "pw-" + "".join(rng.choice(_ALNUM) for _ in range(20))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return Credentials(client_id, client_secret, username, password, private_pem, public_pem)


class Emulator:
    """A running emulated org.  Build it with :meth:`start`; stop it with :meth:`stop`."""

    org: Org
    clock: Clock
    bulk: BulkService
    bulk1: BulkV1Service
    app: EmulatorApp
    instance_url: str
    token_url: str
    ca_path: str | None
    credentials: Credentials
    api_version: str

    def __init__(
        self,
        *,
        seed: int = 7,
        records: int = 0,
        port: int = 0,
        tls: bool = True,
        clock: Clock | None = None,
        state_dir: str | None = None,
        config: OrgConfig | None = None,
        host: str = "127.0.0.1",
        auth_options: dict[str, Any] | None = None,
        background: bool = True,
    ) -> None:
        """See :meth:`start` (the documented entry point)."""
        self.clock = clock or Clock(running=True)
        self.org = Org(default_schema(), self.clock, config or OrgConfig(seed=seed))
        if records:
            from .generator import generate_org

            generate_org(self.org, seed=seed, records=records)
        self.bulk = BulkService(self.org)
        user_id = self.org.integration_user_id
        user = self.org.get("User", user_id, as_api=False)
        username = str(user["Username"]) if user and user.get("Username") else DEFAULT_USERNAME
        self.credentials = _credentials(seed, username)
        org_id = self.org.org_id
        cfg = AuthConfig(
            client_id=self.credentials.client_id,
            client_secret=self.credentials.client_secret,
            username=self.credentials.username,
            password=self.credentials.password,
            user_id=user_id,
            org_id=org_id,
            public_key_pem=self.credentials.public_key_pem,
            **(auth_options or {}),
        )
        store = TokenStore(self.clock, idle_timeout_s=cfg.idle_timeout_s)
        self.bulk1 = BulkV1Service(self.org, self.bulk)
        self.app = EmulatorApp(self.org, self.bulk, TokenService(cfg, store), bulk1=self.bulk1)
        material = tls_module.generate(state_dir) if tls else None
        self.ca_path = material.ca_path if material else None
        self._server = ServerThread(self.app, host, port, material.server_context() if material else None)
        scheme = "https" if tls else "http"
        self.instance_url = f"{scheme}://{host}:{self._server.port}"
        self.app.instance_url = self.instance_url
        self.token_url = f"{self.instance_url}/services/oauth2/token"
        self.authorize_url = f"{self.instance_url}/services/oauth2/authorize"
        self.revoke_url = f"{self.instance_url}/services/oauth2/revoke"
        self.api_version = DEFAULT_API_VERSION
        self._token: str | None = None
        if background:
            self._server.start()

    @classmethod
    def start(
        cls,
        *,
        seed: int = 7,
        records: int = 0,
        port: int = 0,
        tls: bool = True,
        clock: Clock | None = None,
        state_dir: str | None = None,
        config: OrgConfig | None = None,
        host: str = "127.0.0.1",
        auth_options: dict[str, Any] | None = None,
        background: bool = True,
    ) -> Emulator:
        """Create an org (seeded with ``records`` generated records, 0 = empty org) and serve it
        on ``host`` (HTTPS unless ``tls=False``) from a background thread.

        ``auth_options``: extra :class:`AuthConfig` fields (e.g. ``idle_timeout_s``,
        ``refresh_token_grants``).  ``background=False`` leaves serving to :meth:`serve_forever`.
        """
        return cls(
            seed=seed,
            records=records,
            port=port,
            tls=tls,
            clock=clock,
            state_dir=state_dir,
            config=config,
            host=host,
            auth_options=auth_options,
            background=background,
        )

    # -- serving ----------------------------------------------------------------------------

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._server.port

    def info(self) -> dict[str, Any]:
        c = self.credentials
        return {
            "instance_url": self.instance_url,
            "token_url": self.token_url,
            "ca_bundle": self.ca_path,
            "client_id": c.client_id,
            "client_secret": c.client_secret,
            "username": c.username,
            "password": c.password,
            "api_version": self.api_version,
        }

    # -- clients ------------------------------------------------------------------------------

    def session(self) -> requests.Session:
        """A session that trusts the emulator CA and ignores REQUESTS_CA_BUNDLE & proxies."""
        s = requests.Session()
        s.trust_env = False
        if self.ca_path:
            s.verify = self.ca_path
        return s

    def new_token(self) -> str:
        """A fresh access token (client-credentials flow)."""
        c = self.credentials
        with self.session() as s:
            resp = s.post(
                self.token_url,
                data={"grant_type": "client_credentials"},
                auth=(c.client_id, c.client_secret),
                timeout=30,
            )
        resp.raise_for_status()
        return str(resp.json()["access_token"])

    def issue_refresh_token(self) -> str:
        """A refresh token for the integration user (as the web server flow issues one), for
        clients that log in with ``grant_type=refresh_token`` and the printed client id/secret."""
        return self.app.tokens.issue_refresh_token()

    def access_token(self) -> str:
        """A valid access token (cached; re-issued after tokens were expired)."""
        if self._token is None or self.app.tokens.store.validate(self._token) is None:
            self._token = self.new_token()
        return self._token

    def salesforce(self, version: str = DEFAULT_API_VERSION) -> simple_salesforce.Salesforce:
        from simple_salesforce import Salesforce

        return Salesforce(
            instance_url=self.instance_url, session_id=self.access_token(), session=self.session(), version=version
        )

    # -- admin shortcuts ---------------------------------------------------------------------

    @property
    def admin(self) -> Any:
        return self.app.admin

    def expire_tokens(self) -> None:
        self.app.tokens.expire_all_tokens()

    def add_fault(self, kind: str, **options: Any) -> FaultRule:
        return self.app.faults.add(FaultRule(kind=kind, **options))

    def clear_faults(self) -> None:
        self.app.admin.clear_faults()

    def api_calls(self, family: str | None = None) -> int:
        return self.app.counter.total(family)

    def reset_counters(self) -> None:
        self.app.counter.reset()

    def request_log(self) -> list[dict[str, Any]]:
        return self.app.log.entries()

    # -- change events ------------------------------------------------------------------------

    def relay_events(self, *, since: int = 0, channel_id: str = DEFAULT_RELAY_CHANNEL) -> list[dict[str, Any]]:
        """The Event Relay → EventBridge envelopes (§9.6) of every retained change event after
        replay id ``since``, in commit order (what a Relay sink on the partner bus receives)."""
        return self.org.cdc.relay_envelopes(self.org.org_id, channel_id, since=since)

    def inject_duplicate(self, replay_id: int | None = None) -> ChangeEvent:
        """Deliver a retained change event again, with a new replay id (at-least-once delivery);
        default: the latest event.  ValueError when there is none."""
        result = self.app.admin.inject_duplicate(replay_id)
        return self.org.cdc.event(int(result["data"]["event"]["replayId"]))

    def inject_out_of_order(self, n: int = 2) -> None:
        """The next ``n`` change events reach the sinks in reverse order (out-of-order delivery)."""
        self.org.cdc.reorder_next(n)
