"""``sfsync-emulator serve`` (the console script in the venv) as a client meets it: one JSON line,
then simple-salesforce connects with what that line says, via the client-credentials flow.

simple-salesforce sends its token requests to ``https://{domain}.salesforce.com`` (spec §1.6), so
the client-credentials login test mounts a transport adapter that routes ``*.salesforce.com`` to
the printed instance (spec §1.7, option 2): simple-salesforce's own login code then runs unmodified.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce, SFType

pytestmark = pytest.mark.contract

CONSOLE_SCRIPT = Path(sys.executable).parent / "sfsync-emulator"
INFO_KEYS = {
    "instance_url",
    "token_url",
    "ca_bundle",
    "client_id",
    "client_secret",
    "username",
    "password",
    "api_version",
}


class _RouteSalesforceHosts(HTTPAdapter):
    """Send requests for ``https://*.salesforce.com/...`` to the emulator instead."""

    def __init__(self, instance_url: str) -> None:
        super().__init__()
        self._instance = instance_url.rstrip("/")

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        parts = urlsplit(request.url or "")
        if (parts.hostname or "").endswith(".salesforce.com"):
            request.url = self._instance + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().send(request, *args, **kwargs)


@contextlib.contextmanager
def _serve(state: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    assert CONSOLE_SCRIPT.exists(), f"console script missing: {CONSOLE_SCRIPT} (pip install -e . ?)"
    command = [str(CONSOLE_SCRIPT), "serve", "--port", "0", "--seed", "7", "--records", "200"]
    proc = subprocess.Popen(
        [*command, "--state-dir", str(state), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"no JSON line; stderr: {proc.stderr.read() if proc.stderr else ''}"
        yield proc, json.loads(line)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    with _serve(tmp_path_factory.mktemp("emulator-state")) as running:
        yield running


def _session(info: dict[str, Any]) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.verify = info["ca_bundle"]
    return s


def test_given_serve_on_port_zero_then_one_json_line_with_a_real_https_port_and_ca_bundle(served):
    _, info = served
    assert set(info) == INFO_KEYS
    parts = urlsplit(info["instance_url"])
    assert parts.scheme == "https" and parts.hostname == "127.0.0.1"
    assert parts.port is not None and parts.port > 0
    assert info["token_url"] == f"{info['instance_url']}/services/oauth2/token"
    assert Path(info["ca_bundle"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    with requests.Session() as plain:
        plain.trust_env = False
        with pytest.raises(requests.exceptions.SSLError):  # the CA is the emulator's own, not a public one
            plain.get(info["instance_url"] + "/services/data", timeout=10)


def test_given_printed_credentials_when_simple_salesforce_logs_in_with_client_credentials_then_query_works(served):
    _, info = served
    session = _session(info)
    session.mount("https://", _RouteSalesforceHosts(info["instance_url"]))
    sf = Salesforce(
        consumer_key=info["client_id"],
        consumer_secret=info["client_secret"],
        domain="sfsync-emulator",
        session=session,
        version=info["api_version"],
    )
    assert sf.auth_type == "client-credentials"
    assert sf.sf_instance == urlsplit(info["instance_url"]).netloc
    result = sf.query("SELECT Id, Name FROM Account ORDER BY Id LIMIT 5")
    assert result["done"] is True and len(result["records"]) == 5
    assert all(r["Id"].startswith("001") and len(r["Id"]) == 18 for r in result["records"])
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] > 0

    # tokens expired on demand: simple-salesforce's own 401 path logs in again
    admin = session.post(f"{info['instance_url']}/__admin/expire_tokens", timeout=10)
    assert admin.status_code == 200 and admin.json()["result"] >= 1
    assert sf.query("SELECT Id FROM Account LIMIT 1")["totalSize"] == 1


def test_given_printed_credentials_when_token_fetched_as_readme_says_then_direct_mode_client_works(served):
    _, info = served
    with _session(info) as s:
        token = s.post(
            info["token_url"],
            data={"grant_type": "client_credentials"},
            auth=(info["client_id"], info["client_secret"]),
            timeout=10,
        )
        assert token.status_code == 200, token.text
        body = token.json()
        assert body["instance_url"] == info["instance_url"] and body["token_type"] == "Bearer"
        sf = Salesforce(
            instance_url=info["instance_url"], session_id=body["access_token"], session=s, version=info["api_version"]
        )
        described = sf.describe()
        assert described is not None
        names = {o["name"] for o in described["sobjects"]}
        assert {"Lead", "Contact", "Account", "CampaignMember", "Project__c", "Milestone__c"} <= names
        lead = sf.Lead
        assert isinstance(lead, SFType)
        assert lead.describe()["name"] == "Lead"
        # and the password flow with the printed user
        pw = s.post(
            info["token_url"],
            data={
                "grant_type": "password",
                "client_id": info["client_id"],
                "client_secret": info["client_secret"],
                "username": info["username"],
                "password": info["password"],
            },
            timeout=10,
        )
        assert pw.status_code == 200, pw.text


def test_given_running_server_when_terminated_then_exits_cleanly(tmp_path):
    with _serve(tmp_path) as (proc, info):
        with _session(info) as s:
            assert s.get(info["instance_url"] + "/services/data", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        with _session(info) as s, pytest.raises(requests.exceptions.ConnectionError):
            s.get(info["instance_url"] + "/services/data", timeout=5)


def test_given_print_refresh_token_when_an_etl_client_logs_in_with_it_then_rest_and_bulk_work(tmp_path):
    with _serve(tmp_path, "--print-refresh-token", "--records", "100") as (_proc, info):
        assert set(info) == INFO_KEYS | {"refresh_token", "authorize_url", "revoke_url"}
        assert info["authorize_url"] == f"{info['instance_url']}/services/oauth2/authorize"
        with _session(info) as s:
            # what refresh-token ETL clients send: the grant, the refresh token, the client id and secret
            resp = s.post(
                info["token_url"],
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": info["refresh_token"],
                    "client_id": info["client_id"],
                    "client_secret": info["client_secret"],
                },
                timeout=10,
            )
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["instance_url"] == info["instance_url"] and "refresh_token" not in body
            sf = Salesforce(
                instance_url=body["instance_url"],
                session_id=body["access_token"],
                session=s,
                version=info["api_version"],
            )
            assert sf.query("SELECT Id FROM Account LIMIT 2")["totalSize"] == 2
            assert len(sf.bulk.Account.query("SELECT Id FROM Account LIMIT 2", wait=0)) == 2
            # revoked: the printed token stops working
            assert s.post(info["revoke_url"], data={"token": info["refresh_token"]}, timeout=10).status_code == 200
            again = s.post(
                info["token_url"],
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": info["refresh_token"],
                    "client_id": info["client_id"],
                },
                timeout=10,
            )
            assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_given_callback_urls_when_served_then_the_authorization_code_flow_redirects_only_to_them(tmp_path):
    callback = "http://127.0.0.1:8765/callback"
    with _serve(tmp_path, "--callback-url", callback, "--records", "0") as (_proc, info), _session(info) as s:
        params = {"response_type": "code", "client_id": info["client_id"], "state": "st"}
        ok = s.get(info["instance_url"] + "/services/oauth2/authorize", params={**params, "redirect_uri": callback},
                   allow_redirects=False, timeout=10)  # fmt: skip
        assert ok.status_code == 302 and ok.headers["Location"].startswith(f"{callback}?code=")
        default = s.get(
            info["instance_url"] + "/services/oauth2/authorize",
            params={**params, "redirect_uri": "http://localhost:1717/OauthRedirect"},
            allow_redirects=False,
            timeout=10,
        )
        assert default.status_code == 400 and default.json()["error"] == "redirect_uri_mismatch"
