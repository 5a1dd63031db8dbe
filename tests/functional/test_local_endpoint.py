"""The local copy seen from outside: ``sfsync run`` serves its AWS APIs on a loopback port, and keeps its
tables in ``--data-dir`` between runs.

Real components only: the emulator over HTTPS, ``sfsync run`` as its own process (``python -m
sfsync_local.cli``) or through ``main([...])``, the real handlers, and a separate Python process that
knows nothing but boto3 and the endpoint URL (an application, as the AWS CLI or NoSQL Workbench would be).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sfsync_local.cli import main
from sfsync_local.datadir import FORMAT, FORMAT_VERSION, LOCK_NAME, MARKER_NAME
from sfsync_local.demo import emulator_stamps

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[2]
OVERLAP_SECONDS = 600  # the template's default OverlapSeconds: a window starts this far below the watermark

# The application: boto3 and the endpoint, nothing of this project.
APPLICATION = r"""
import json, sys, time
import boto3

url, table, title = sys.argv[1], sys.argv[2], sys.argv[3]
session = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1")
dynamodb = session.client("dynamodb", endpoint_url=url)
streams = session.client("dynamodbstreams", endpoint_url=url)
report = {"tables": dynamodb.list_tables()["TableNames"]}
items = dynamodb.scan(TableName=table)["Items"]
report["scanned"] = len(items)
live = [i for i in items if not i.get("IsDeleted", {}).get("BOOL") and not i.get("IsConverted", {}).get("BOOL")]
lead = sorted(live, key=lambda item: item["Id"]["S"])[0]
report["id"] = lead["Id"]["S"]
report["had_base"] = "_base" in lead
report["stream_enabled"] = [s["TableName"] for s in streams.list_streams(TableName=table)["Streams"]] == [table]
started = time.monotonic()
dynamodb.update_item(
    TableName=table,
    Key={"Id": lead["Id"]},
    UpdateExpression="SET Title = :title",
    ExpressionAttributeValues={":title": {"S": title}},
)
report["update_seconds"] = time.monotonic() - started
deadline = time.monotonic() + 60
while time.monotonic() < deadline:  # the write-back moves _base once Salesforce accepted the change
    item = dynamodb.get_item(TableName=table, Key={"Id": lead["Id"]}, ConsistentRead=True)["Item"]
    if json.loads(item["_base"]["S"]).get("Title") == title:
        report["base_title"] = title
        break
    time.sleep(0.2)
print(json.dumps(report))
"""


class Output:
    """The lines a child process prints, collected by a thread; tests wait for a pattern."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, *, timeout: float = 180.0, count: int = 1) -> list[re.Match[str]]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [m for m in (regex.search(line) for line in self.lines) if m]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (not self._thread.is_alive() and not found):
                    raise AssertionError(f"no {pattern!r} in the output:\n" + "\n".join(self.lines))
                self._changed.wait(min(remaining, 0.5))


@pytest.fixture
def emulator() -> Iterator[Any]:
    from sfsync_emulator.emulator import Emulator

    with Emulator.start(seed=5, records=150) as emu:
        yield emu


@pytest.fixture
def credentials(emulator: Any, tmp_path: Path) -> Path:
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps(emulator.info()), encoding="utf-8")  # as `sfsync-emulator serve` prints it
    return creds


def _child_environment() -> dict[str, str]:
    """The test's environment without AWS settings (the child is a stranger to moto's fake credentials)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _start_sfsync(*argv: str) -> tuple[subprocess.Popen[str], Output]:
    process = subprocess.Popen(
        [sys.executable, "-m", "sfsync_local.cli", *argv],
        cwd=ROOT,
        env=_child_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    return process, Output(process.stdout)


def _stop(process: subprocess.Popen[str], sig: int) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def _saved_items(data_dir: Path, logical_id: str) -> list[dict[str, Any]]:
    """The items a data directory holds for a table (read the way its manifest says)."""
    manifest = json.loads((data_dir / MARKER_NAME).read_text(encoding="utf-8"))
    file = data_dir / manifest["tables"][logical_id]["file"]
    return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]


def _state_item(items: list[dict[str, Any]], pk: str, sk: str) -> dict[str, Any]:
    [item] = [item for item in items if item["pk"]["S"] == pk and item["sk"]["S"] == sk]
    return item


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


# --------------------------------------------------------------------------- the endpoint


def test_given_sfsync_run_when_an_application_edits_a_lead_over_the_endpoint_then_salesforce_gets_the_edit(
    emulator: Any, credentials: Path, tmp_path: Path
) -> None:
    title = f"Endpoint Tester {uuid.uuid4().hex[:8]}"
    process, output = _start_sfsync(
        "run", "--credentials", str(credentials), "--objects", "Lead", "--pause", "2", "--forever",
        "--state-file", str(tmp_path / "state.json"),
    )  # fmt: skip
    try:
        [url] = output.wait_for(r"local AWS endpoint: (http://127\.0\.0\.1:\d+)")
        [command] = output.wait_for(r"^\s+(AWS_ACCESS_KEY_ID=local .*aws dynamodb scan --table-name (\S+) .*)$")
        output.wait_for(r"^Lead\s+full copy done")  # the first cycle copied the Leads
        table = command.group(2)
        application = subprocess.run(
            [sys.executable, "-c", APPLICATION, url.group(1), table, title],
            env=_child_environment(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert application.returncode == 0, application.stderr
        report = json.loads(application.stdout)
        deadline = time.monotonic() + 30
        salesforce_title = None
        while time.monotonic() < deadline:
            salesforce_title = emulator.salesforce().Lead.get(report["id"])["Title"]
            if salesforce_title == title:
                break
            time.sleep(0.2)
    finally:
        code = _stop(process, signal.SIGINT)

    assert table == "sfsync-local-LeadTable"
    assert command.group(1).endswith(f"--endpoint-url {url.group(1)}")
    assert "sfsync-local-StateTable" in report["tables"] and table in report["tables"]
    live, deleted = emulator_stamps(emulator.org, "Lead")
    assert report["scanned"] == len(live) + len(deleted)
    assert report["had_base"] is True
    assert report["stream_enabled"] is True
    assert report["update_seconds"] < 5, "a served write answers at once; its stream is delivered afterwards"
    assert salesforce_title == title, "the edit went through the stream and the write-back to Salesforce"
    assert report.get("base_title") == title, "the write-back recorded Salesforce's new value in _base"
    assert code == 0, output.text
    assert output.text.rstrip().endswith("stopped (Ctrl-C)")
    assert "Traceback" not in output.text


def test_given_the_endpoint_then_moto_admin_api_is_refused_and_the_stack_survives(tmp_path: Path) -> None:
    from sfsync_local.endpoint import LocalEndpoint
    from sfsync_local.stack import LocalStack

    with LocalStack.deploy(parameters={"SyncObjects": "Account"}) as stack, LocalEndpoint.bind(0) as endpoint:
        endpoint.serve(stack.runtime)
        script = (
            "import sys, urllib.request, urllib.error\n"
            "try:\n"
            "    urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/moto-api/reset', method='POST'))\n"
            "except urllib.error.HTTPError as exc:\n"
            "    print(exc.code)\n"
        )
        answer = subprocess.run(
            [sys.executable, "-c", script, endpoint.url], capture_output=True, text=True, timeout=60, check=True
        )
        tables = stack.boto3_client("dynamodb").list_tables()["TableNames"]

    assert answer.stdout.strip() == "403"
    assert stack.table_name("AccountTable") in tables


# --------------------------------------------------------------------------- the data directory


def test_given_a_killed_run_with_a_data_dir_when_run_again_then_it_resumes_from_the_watermark_without_a_copy(
    emulator: Any, credentials: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "copy"
    process, output = _start_sfsync(
        "run", "--credentials", str(credentials), "--objects", "Lead,Account", "--pause", "1", "--forever",
        "--no-endpoint", "--data-dir", str(data_dir), "--state-file", str(tmp_path / "state1.json"),
    )  # fmt: skip
    try:
        output.wait_for(r"^local copy: .* \(new; ")
        output.wait_for(r"^cycle \d+ at ", count=2)  # the full copy, then an incremental cycle: both saved
    finally:
        code = _stop(process, signal.SIGKILL)  # no clean stop: what was saved at the checkpoints is what is left
    assert code == -signal.SIGKILL
    assert "full copy: started first-" in output.text
    manifest = json.loads((data_dir / MARKER_NAME).read_text(encoding="utf-8"))
    assert (manifest["format"], manifest["format_version"]) == (FORMAT, FORMAT_VERSION)
    saved_state = _saved_items(data_dir, "StateTable")
    watermark = _state_item(saved_state, "OBJECT#Account", "WATERMARK")["watermark"]["S"]
    copy_id = _state_item(saved_state, "OBJECT#Account", "FULLCOPY")["copy_id"]["S"]
    saved_accounts = len(_saved_items(data_dir, "AccountTable"))
    live, deleted = emulator_stamps(emulator.org, "Account")
    assert saved_accounts == len(live) + len(deleted)

    monkeypatch.chdir(ROOT)
    restarted = dt.datetime.now(dt.UTC)
    out, err = io.StringIO(), io.StringIO()
    code = main(
        [
            "run", "--credentials", str(credentials), "--objects", "Lead,Account", "--pause", "1", "--cycles", "1",
            "--no-endpoint", "--data-dir", str(data_dir), "--state-file", str(tmp_path / "state2.json"),
        ],
        stdout=out,
        stderr=err,
    )  # fmt: skip

    text = out.getvalue()
    assert code == 0, text + err.getvalue()
    assert re.search(rf"local copy: {re.escape(str(data_dir))} \(restored [\d,]+ items saved at ", text)
    assert "full copy: started" not in text and "full-copy executions" not in text, "no second full copy"
    assert re.search(r"^Account\s+complete\s+\d+\s+0\s", text, re.MULTILINE), "an incremental cycle, nothing created"
    state = _saved_items(data_dir, "StateTable")
    assert _state_item(state, "OBJECT#Account", "FULLCOPY")["copy_id"]["S"] == copy_id
    resumed = [
        item for item in state if item["pk"]["S"] == "CYCLES#Account" and _parse(item["started_at"]["S"]) >= restarted
    ]
    assert resumed, "the restarted run ran an Account cycle"
    first = min(resumed, key=lambda item: item["started_at"]["S"])
    window_lo = _parse(first["window_lo"]["S"])
    assert window_lo == _parse(watermark) - dt.timedelta(seconds=OVERLAP_SECONDS), "it resumed at the saved watermark"
    assert len(_saved_items(data_dir, "AccountTable")) == saved_accounts
    assert not (data_dir / "tables" / ".AccountTable.partial").exists()


FAKE_SECRET = {
    "auth_flow": "client_credentials",
    "token_url": "https://127.0.0.1:9/services/oauth2/token",
    "client_id": "local-test",
    "client_secret": "local-test",
}


def _listing(path: Path) -> dict[str, bytes] | None:
    """Every file under ``path`` with its bytes (None: ``path`` does not exist)."""
    if not path.exists():
        return None
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(path.rglob("*"))}


def _not_ours(path: Path) -> str:
    path.mkdir()
    (path / "notes.txt").write_text("my own files", encoding="utf-8")
    return "is not an sfsync data directory: it is not empty and has no sfsync-local-data.json"


def _other_version(path: Path) -> str:
    path.mkdir()
    marker = {"format": FORMAT, "format_version": FORMAT_VERSION + 1, "tables": {}}
    (path / MARKER_NAME).write_text(json.dumps(marker), encoding="utf-8")
    return f"holds format version {FORMAT_VERSION + 1}; this sfsync reads format version {FORMAT_VERSION}"


def _damaged_marker(path: Path) -> str:
    path.mkdir()
    (path / MARKER_NAME).write_text('{"format": ', encoding="utf-8")
    return f"cannot read {MARKER_NAME}"


def _a_file(path: Path) -> str:
    path.write_text("not a directory", encoding="utf-8")
    return "exists and is not a directory"


@pytest.mark.parametrize("make", [_not_ours, _other_version, _damaged_marker, _a_file], ids=lambda f: f.__name__[1:])
def test_given_a_data_dir_that_is_not_ours_when_run_then_one_clear_error_exit_2_and_nothing_written(
    make: Any, tmp_path: Path
) -> None:
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps(FAKE_SECRET), encoding="utf-8")
    data_dir = tmp_path / "data"
    message = make(data_dir)
    before = _listing(data_dir)

    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["run", "--credentials", str(creds), "--cycles", "1", "--data-dir", str(data_dir)], stdout=out, stderr=err
    )

    assert code == 2
    assert out.getvalue() == ""
    assert err.getvalue().startswith(f"error: --data-dir {data_dir}")
    assert message in err.getvalue()
    assert len(err.getvalue().strip().splitlines()) == 1
    assert _listing(data_dir) == before


def test_given_a_data_dir_in_use_by_another_process_when_run_then_exit_2_and_nothing_written(tmp_path: Path) -> None:
    import fcntl

    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps(FAKE_SECRET), encoding="utf-8")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    marker = {"format": FORMAT, "format_version": FORMAT_VERSION, "tables": {}}
    (data_dir / MARKER_NAME).write_text(json.dumps(marker), encoding="utf-8")
    (data_dir / LOCK_NAME).write_text("pid 4242, sfsync run\n", encoding="utf-8")
    before = _listing(data_dir)
    with open(data_dir / LOCK_NAME, encoding="utf-8") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        out, err = io.StringIO(), io.StringIO()
        code = main(["run", "--credentials", str(creds), "--data-dir", str(data_dir)], stdout=out, stderr=err)

    assert code == 2
    assert out.getvalue() == ""
    assert (
        err.getvalue().strip()
        == f"error: --data-dir {data_dir} is in use by another sfsync process (pid 4242, sfsync run)"
    )
    assert _listing(data_dir) == before


@pytest.mark.parametrize("command", ["run", "demo"])
def test_given_a_port_in_use_when_started_then_one_clear_error_exit_2_and_nothing_written(
    command: str, tmp_path: Path
) -> None:
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps(FAKE_SECRET), encoding="utf-8")
    data_dir = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["--endpoint-port", str(port), "--state-file", str(tmp_path / "state.json")]
        if command == "run":
            argv += ["--credentials", str(creds), "--cycles", "1", "--data-dir", str(data_dir)]
        out, err = io.StringIO(), io.StringIO()
        code = main([command, *argv], stdout=out, stderr=err)

    assert code == 2
    assert out.getvalue() == ""
    assert err.getvalue().strip() == (
        f"error: --endpoint-port: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert not data_dir.exists()
    assert not (tmp_path / "state.json").exists()


def test_given_a_data_dir_with_a_table_the_template_lacks_when_run_then_exit_2_and_the_copy_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps(FAKE_SECRET), encoding="utf-8")
    data_dir = tmp_path / "data"
    (data_dir / "tables").mkdir(parents=True)
    (data_dir / "tables" / "RetiredTable-1.jsonl").write_text('{"Id": {"S": "x"}}\n', encoding="utf-8")
    entry = {"table_name": "sfsync-local-RetiredTable", "file": "tables/RetiredTable-1.jsonl", "items": 1}
    marker = {"format": FORMAT, "format_version": FORMAT_VERSION, "saved_at": "2026-12-01T00:00:00.000Z"}
    (data_dir / MARKER_NAME).write_text(json.dumps({**marker, "tables": {"RetiredTable": entry}}), encoding="utf-8")
    before = {name: data for name, data in (_listing(data_dir) or {}).items() if name != LOCK_NAME}

    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["run", "--credentials", str(creds), "--cycles", "1", "--no-endpoint", "--data-dir", str(data_dir)],
        stdout=out,
        stderr=err,
    )

    assert code == 2, out.getvalue() + err.getvalue()
    assert err.getvalue().strip() == (
        f"error: --data-dir {data_dir} holds tables the template does not define: RetiredTable"
    )
    after = {name: data for name, data in (_listing(data_dir) or {}).items() if name != LOCK_NAME}
    assert after == before, "the saved copy is untouched"
