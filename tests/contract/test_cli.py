"""``sfsync-emulator serve``: one JSON line on stdout, a working HTTPS org, clean exit on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import requests

pytestmark = pytest.mark.contract


def test_given_serve_when_started_then_prints_info_line_serves_https_and_stops_on_sigterm(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sfsync_emulator.cli",
            "serve",
            "--port",
            "0",
            "--records",
            "100",
            "--state-dir",
            str(tmp_path),
            "--frozen",
            "--clock-start",
            "2026-01-01T00:00:00Z",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert set(info) == {
            "instance_url",
            "token_url",
            "ca_bundle",
            "client_id",
            "client_secret",
            "username",
            "password",
            "api_version",
        }
        assert info["instance_url"].startswith("https://127.0.0.1:")
        assert info["ca_bundle"] == str(tmp_path / "ca.pem")
        with requests.Session() as s:
            s.trust_env = False
            s.verify = info["ca_bundle"]
            token = s.post(
                info["token_url"],
                data={"grant_type": "client_credentials"},
                auth=(info["client_id"], info["client_secret"]),
                timeout=30,
            )
            assert token.status_code == 200
            assert int(token.json()["issued_at"]) == 1767225600000  # the frozen --clock-start
            q = s.get(
                f"{info['instance_url']}/services/data/v59.0/query",
                params={"q": "SELECT COUNT() FROM Lead"},
                headers={"Authorization": f"Bearer {token.json()['access_token']}"},
                timeout=30,
            )
            assert q.status_code == 200 and q.json()["totalSize"] > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_given_help_then_usage_and_zero_exit():
    out = subprocess.run(
        [sys.executable, "-m", "sfsync_emulator.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0
    assert "--records" in out.stdout and "--http" in out.stdout


def test_given_plain_http_option_when_started_then_http_instance_url_serves():
    from sfsync_emulator.emulator import Emulator

    with Emulator.start(tls=False) as emu:
        assert emu.instance_url.startswith("http://127.0.0.1:")
        assert emu.ca_path is None
        with emu.session() as s:
            resp = s.get(
                f"{emu.instance_url}/services/data/v59.0/limits",
                headers={"Authorization": f"Bearer {emu.access_token()}"},
                timeout=30,
            )
        assert resp.status_code == 200


def test_given_bad_serve_arguments_then_one_clear_error_and_exit_2(tmp_path):
    for extra in (["--records", "50"], ["--callback-url", "x", "--clock-start", "yesterday"]):
        out = subprocess.run(
            [sys.executable, "-m", "sfsync_emulator.cli", "serve", "--port", "0", "--state-dir", str(tmp_path), *extra],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 2, out.stderr
        assert out.stderr.startswith("sfsync-emulator: ") and "Traceback" not in out.stderr
        assert out.stdout == ""
