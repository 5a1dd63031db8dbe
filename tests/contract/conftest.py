"""Contract-test fixtures: one emulator (small org, real HTTPS) for the whole contract suite."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sfsync_emulator.emulator import Emulator
from simple_salesforce import Salesforce

API_VERSION = "59.0"


@pytest.fixture(scope="session")
def emu() -> Iterator[Emulator]:
    with Emulator.start(seed=7, records=200) as running:
        yield running


@pytest.fixture(autouse=True)
def _no_leftover_faults(emu: Emulator) -> Iterator[None]:
    yield
    emu.clear_faults()


@pytest.fixture
def sf(emu: Emulator) -> Salesforce:
    return Salesforce(
        instance_url=emu.instance_url, session_id=emu.access_token(), session=emu.session(), version=API_VERSION
    )


class Raw:
    """A thin authenticated ``requests`` client for what simple-salesforce has no helper for."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.session = emu.session()
        self.base = f"{emu.instance_url}/services/data/v{API_VERSION}"

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.emu.access_token()}", **(extra or {})}

    def request(self, method: str, path: str, *, headers: dict[str, str] | None = None, **kw: Any) -> requests.Response:
        url = (
            path
            if path.startswith("http")
            else (self.base + path if not path.startswith("/services") else self.emu.instance_url + path)
        )
        return self.session.request(method, url, headers=self.headers(headers), timeout=30, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def admin(self, op: str, **kwargs: Any) -> Any:
        resp = self.session.post(f"{self.emu.instance_url}/__admin/{op}", json=kwargs, timeout=30)
        assert resp.status_code == 200, resp.text
        return resp.json()["result"]


@pytest.fixture
def raw(emu: Emulator) -> Raw:
    return Raw(emu)
