"""HTTP plumbing shared by the token provider and the client: the session and the back-off.

* The session ignores the environment (``trust_env=False``): ``REQUESTS_CA_BUNDLE`` would
  otherwise override ``Session.verify`` for every call simple-salesforce makes
  (local-aws.md, "TLS to a local endpoint"), and proxies from the environment are not ours.
* ``verify`` is a file written from the secret's ``ca_bundle`` PEM when present, else the
  ``requests`` default (certifi).
* Every request gets a timeout, including the ones simple-salesforce issues without one: the
  mounted adapter supplies a default when the caller passed none.
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import override

import requests
from requests.adapters import HTTPAdapter

# (connect, read) seconds
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 120.0)

Timeout = float | tuple[float, float] | tuple[float, None] | None


class _TimeoutAdapter(HTTPAdapter):
    """An HTTPAdapter that applies a default timeout to requests that carry none."""

    def __init__(self, timeout: tuple[float, float]) -> None:
        super().__init__()
        self._default_timeout = timeout

    @override
    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Timeout = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        return super().send(
            request,
            stream=stream,
            timeout=self._default_timeout if timeout is None else timeout,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )


def ca_bundle_path(pem: str) -> str:
    """Write ``pem`` to a content-addressed file under the temp dir (reused while warm)."""
    digest = hashlib.sha256(pem.encode()).hexdigest()[:24]
    directory = Path(tempfile.gettempdir()) / "sfsync-ca"
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / f"{digest}.pem"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(pem if pem.endswith("\n") else pem + "\n")
        os.replace(tmp, path)
    return str(path)


def build_session(ca_bundle: str | None = None, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> requests.Session:
    """A session for Salesforce: no environment, pinned CA when given, default timeouts."""
    session = requests.Session()
    session.trust_env = False
    session.verify = ca_bundle_path(ca_bundle) if ca_bundle else True
    adapter = _TimeoutAdapter(timeout)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential back-off with full jitter: sleep U(0, min(cap, base * 2**(n-1)))."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must be >= 0")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return self.rng.uniform(0.0, ceiling)
