"""The ``sfsync`` command line, called in-process through ``main([...])``.

Real components throughout: the emulator over HTTPS, the local stack from template.yaml in moto,
the real handlers.  Each test checks what a user sees: the exit code, stdout, and stderr.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sfsync_local.cli import main
from sfsync_local.demo import emulator_stamps
from sfsync_local.runner import FUNCTIONS, LocalEnvironment

from tests.support.fullcopy import copy_executions

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[2]
IMPLEMENTED = {"dispatcher", "object_sync", "change_events"}  # functions whose sample events must succeed end to end
REJECTED = {"InvalidEvent", "Runtime.ImportModuleError"}


def sample_events() -> list[Path]:
    """events/<function>/*.json of the functions whose handler exists (events/statemachine is not a function)."""
    return sorted(
        path
        for path in (ROOT / "events").glob("*/*.json")
        if path.parent.name in FUNCTIONS and (ROOT / "functions" / path.parent.name / "app.py").is_file()
    )


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def local_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalEnvironment]:
    monkeypatch.chdir(ROOT)
    env = LocalEnvironment.start(
        io.StringIO(), parameters={"SyncObjects": "Account,Contact", "PauseSeconds": "0"}, records=200, seed=11
    )
    with env:
        yield env


# --------------------------------------------------------------------------- invoke


def test_the_sample_events_exist() -> None:
    assert {path.parent.name for path in sample_events()} >= IMPLEMENTED


@pytest.mark.parametrize("event_path", sample_events(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_given_a_sample_event_when_invoked_then_stdout_is_the_function_result(
    event_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    code, out, err = run_cli("invoke", event_path.parent.name, str(event_path))
    payload = json.loads(out)  # stdout is exactly the function's JSON result; logs went elsewhere
    is_error = isinstance(payload, dict) and "errorType" in payload
    assert code == (1 if is_error else 0), err
    if is_error:
        assert payload["errorType"] not in REJECTED, payload
        assert f"error: {FUNCTIONS[event_path.parent.name]} failed: {payload['errorType']}" in err
    if event_path.parent.name in IMPLEMENTED:
        assert not is_error, payload
    if event_path.parent.name == "dispatcher":  # a fresh stack: every object gets its first copy
        copies = copy_executions(payload)
        assert "Account" in {obj for entry in copies for obj in entry["objects"]}
        assert payload["started"] == []
        for entry in copies:
            assert f"(full-copy execution {entry['execution_name']} the function started: SUCCEEDED)" in err
    if event_path.name == "resync.json":
        assert payload["resync"] == {"requested": {"Lead": 1}, "rejected": {}}
        assert {"Lead"} in [set(entry["objects"]) for entry in copy_executions(payload) if entry["reason"] == "resync"]
    if event_path.parent.name == "object_sync":
        assert payload["status"] == "complete"
        assert payload["counts"]["RecordsCreated"] > 0
    assert "Traceback" not in capsys.readouterr().err


def test_given_a_logical_id_when_invoked_without_the_emulator_then_the_dispatcher_still_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    code, out, err = run_cli("invoke", "DispatcherFunction", "events/dispatcher/schedule.json", "--no-emulator")
    assert code == 0, err
    result = json.loads(out)
    [execution] = copy_executions(result)  # one first copy for every object; no org: its plan fails
    assert execution["reason"] == "first" and len(execution["objects"]) >= 10
    assert result["started"] == []
    assert "starting the Salesforce emulator" not in err
    assert f"(full-copy execution {execution['execution_name']} the function started: FAILED)" in err


def test_given_an_unknown_function_when_invoked_then_a_clear_error_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, err = run_cli("invoke", "reporting", "events/dispatcher/schedule.json")
    assert code == 2
    assert out == ""
    assert err.startswith("error: unknown function 'reporting'")
    assert "dispatcher" in err
    assert "Traceback" not in err


def test_given_a_malformed_event_file_when_invoked_then_a_clear_error_and_exit_2(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text('{"object": "Account",', encoding="utf-8")
    code, out, err = run_cli("invoke", "object_sync", str(event))
    assert code == 2
    assert out == ""
    assert f"error: event file {event} is not valid JSON" in err
    assert "line 1" in err


def test_given_a_missing_event_file_when_invoked_then_a_clear_error_and_exit_2(tmp_path: Path) -> None:
    code, _, err = run_cli("invoke", "dispatcher", str(tmp_path / "nope.json"))
    assert code == 2
    assert err.strip() == f"error: event file not found: {tmp_path / 'nope.json'}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("demo", "--cycles", "0"), "argument --cycles: must be at least 1"),
        (("demo", "--cycles", "2", "--forever"), "not allowed with argument --cycles"),
        (("demo", "--objects", "Contact"), "--objects must include Account"),
        (("demo", "--objects", "Account,Widget"), "--objects: unknown object(s) in SFSYNC_OBJECTS: Widget"),
        (("run", "--cycles", "1"), "--credentials is required"),
        (("status", "--local", "--stack-name", "x"), "not allowed with argument --local"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
        (("demo", "--state-file", "/dev/null"), "state file /dev/null exists and is not a regular file"),
        (("demo", "--data-dir", "/tmp/x"), "--data-dir is not for the demo: its org is generated anew each run"),
        (("demo", "--endpoint-port", "70000"), "argument --endpoint-port: must be 0-65535"),
        (("run", "--endpoint-port", "1", "--no-endpoint"), "not allowed with argument --endpoint-port"),
    ],
)
def test_given_bad_usage_when_run_then_a_clear_error_and_exit_2(argv: tuple[str, ...], message: str) -> None:
    code, out, err = run_cli(*argv)
    assert code == 2
    assert out == ""
    assert err.startswith("error: ")
    assert message in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- status


def test_given_one_cycle_when_status_json_then_it_reports_the_watermark_and_the_counts(
    local_env: LocalEnvironment,
) -> None:
    copy = local_env.run_cycle()
    assert {c.object_name for c in copy.copies} == {"Account", "Contact"} and copy.started_objects == []
    outcome = local_env.run_cycle()
    assert set(outcome.started_objects) == {"Account", "Contact"}
    assert local_env.emulator is not None
    live, deleted = emulator_stamps(local_env.emulator.org, "Account")

    # no --table: the one table named like the template's StateTable is found by listing tables
    code, out, err = run_cli("status", "--json", "--region", local_env.region)

    assert code == 0, err
    report = json.loads(out)
    assert report["state_table"] == local_env.state_table
    by_object = {item["object"]: item for item in report["objects"]}
    account = by_object["Account"]
    assert account["watermark"] is not None
    assert account["last_cycle_status"] == "complete"
    assert account["last_cycle_counts"]["RecordsCreated"] == 0, "the full copy brought every record"
    assert account["full_copy_status"] == "done" and account["full_copy_done"] is True
    assert account["full_copy_records"] == len(live) + len(deleted)
    assert account["lease_holder"] is None
    assert 0 <= account["lag_seconds"] < 1200
    assert by_object["Lead"]["watermark"] is None  # not synced by this stack

    code, text, _ = run_cli("status", "--table", local_env.state_table, "--object", "Account", "--object", "Lead")
    assert code == 0
    lines = text.splitlines()
    assert any(line.startswith("Account ") and "complete" in line for line in lines)
    assert any(line.startswith("Lead ") and "not started" in line for line in lines)


# --------------------------------------------------------------------------- run and demo


def test_given_a_credentials_file_when_run_for_one_cycle_then_the_objects_sync_and_status_local_shows_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sfsync_emulator.emulator import Emulator

    monkeypatch.chdir(ROOT)
    state_file = tmp_path / "state.json"
    with Emulator.start(seed=5, records=150) as emulator:
        creds = tmp_path / "creds.json"
        creds.write_text(json.dumps(emulator.info()), encoding="utf-8")  # as `sfsync-emulator serve` prints it
        code, out, err = run_cli(
            "run", "--credentials", str(creds), "--objects", "Account,Contact", "--cycles", "1",
            "--state-file", str(state_file),
        )  # fmt: skip
        live, deleted = emulator_stamps(emulator.org, "Account")

    assert code == 0, err
    assert "cycle 1 at" in out
    assert "  full copy: started first-" in out
    account_rows = [line.split() for line in out.splitlines() if line.startswith("Account ")]
    assert len(account_rows) == 1
    assert account_rows[0][1:4] == ["full", "copy", "done"]
    assert int(account_rows[0][5]) == len(live) + len(deleted)  # created by the copy

    # the stack is gone with the command; `status --local` reads the state it left behind
    code, out, err = run_cli("status", "--local", "--state-file", str(state_file), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["source"].startswith("local stack of `sfsync run`, snapshot ")
    by_object = {item["object"]: item for item in report["objects"]}
    assert set(by_object) == {"Account", "Contact"}
    account = by_object["Account"]
    assert account["watermark"] is not None
    assert account["full_copy_status"] == "done"
    assert account["full_copy_records"] == len(live) + len(deleted)
    assert account["lease_holder"] is None

    code, text, _ = run_cli("status", "--local", "--state-file", str(state_file), "--object", "Account")
    assert code == 0
    assert [line.split()[0] for line in text.splitlines()[3:]] == ["Account"]


def test_given_no_local_run_when_status_local_then_a_clear_error(tmp_path: Path) -> None:
    code, out, err = run_cli("status", "--local", "--state-file", str(tmp_path / "none.json"))
    assert code == 1
    assert out == ""
    assert "no local sync state" in err
    assert "sfsync demo" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "expected a JSON object"),
        ('{"auth_flow": "magic"}', "'auth_flow': Input should be 'client_credentials', 'jwt_bearer' or 'password'"),
        ('{"token_url": "https://x/services/oauth2/token"}', "'auth_flow': Field required"),
        (
            '{"auth_flow": "client_credentials", "token_url": "https://x/services/oauth2/token"}',
            "'client_id', 'client_secret' are required when auth_flow is 'client_credentials'",
        ),
        ('{"client_id": "a", "client_secret": "b", "ca_bundle": "missing.pem"}', "ca_bundle is neither PEM text"),
        ("{", "is not valid JSON"),
    ],
)
def test_given_bad_credentials_when_run_then_a_clear_error_and_exit_2(
    tmp_path: Path, content: str, message: str
) -> None:
    creds = tmp_path / "creds.json"
    creds.write_text(content, encoding="utf-8")
    code, out, err = run_cli("run", "--credentials", str(creds), "--cycles", "1")
    assert code == 2
    assert out == ""
    assert message in err


def test_given_a_live_org_when_demo_runs_three_cycles_then_the_account_table_converges(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(ROOT)
    state_file = tmp_path / "state.json"
    code, out, err = run_cli(
        "demo", "--cycles", "3", "--records", "300", "--pause", "1", "--changes-per-cycle", "8",
        "--state-file", str(state_file),
    )  # fmt: skip

    assert code == 0, out + err
    assert "production default 300 s" in out
    assert "deploying the local stack from template.yaml" in out
    endpoint = re.search(r"^local AWS endpoint: (http://127\.0\.0\.1:\d+)  \(region us-east-1;", out, re.MULTILINE)
    assert endpoint, out
    assert re.search(r"^    LeadTable +sfsync-local-LeadTable$", out, re.MULTILINE)
    assert (
        "AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1 aws dynamodb scan "
        f"--table-name sfsync-local-LeadTable --max-items 3 --endpoint-url {endpoint.group(1)}"
    ) in out
    cycles = [line for line in out.splitlines() if line.startswith("cycle ")]
    assert len(cycles) == 3
    assert "simulated user: Account" in out  # the user really changed Accounts meanwhile
    checks = [line for line in out.splitlines() if line.startswith("Account check:")]
    assert len(checks) == 3
    assert checks[-1].endswith("in sync (same ids, same SystemModstamp)")
    assert out.rstrip().endswith("the Account table equals the emulator's Accounts")
    assert json.loads(state_file.read_text(encoding="utf-8"))["source"] == "sfsync demo"


def test_given_a_forever_demo_when_ctrl_c_then_it_stops_cleanly_with_exit_0(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(ROOT)
    out, err = io.StringIO(), io.StringIO()

    def press_ctrl_c_after_the_first_cycle() -> None:
        deadline = time.monotonic() + 60
        while "Account check:" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c_after_the_first_cycle, daemon=True)
    presser.start()
    code = main(
        [
            "demo",
            "--forever",
            "--records",
            "100",
            "--pause",
            "30",
            "--objects",
            "Account",
            "--state-file",
            str(tmp_path / "s.json"),
        ],
        stdout=out,
        stderr=err,
    )
    presser.join(timeout=5)

    assert code == 0, err.getvalue()
    text = out.getvalue()
    assert "until Ctrl-C" in text
    assert text.rstrip().endswith("stopped (Ctrl-C) after 1 cycle(s)")
    assert err.getvalue() == ""


# --------------------------------------------------------------------------- verify


def _account_table(env: LocalEnvironment) -> tuple[Any, str]:
    return env.stack.boto3_client("dynamodb"), env.stack.table_name("AccountTable")


def test_given_planted_differences_when_verify_then_reported_and_repair_fixes_them(
    local_env: LocalEnvironment,
) -> None:
    local_env.run_cycle()
    assert local_env.emulator is not None
    live, deleted = emulator_stamps(local_env.emulator.org, "Account")
    client, table = _account_table(local_env)
    missing, stale = sorted(live)[:2]
    extra = "001000000000PLNTAA"
    client.delete_item(TableName=table, Key={"Id": {"S": missing}})
    client.update_item(
        TableName=table,
        Key={"Id": {"S": stale}},
        UpdateExpression="SET SystemModstamp = :old",
        ExpressionAttributeValues={":old": {"S": "2001-01-01T00:00:00.000Z"}},
    )
    client.put_item(
        TableName=table,
        Item={
            "Id": {"S": extra},
            "sobject": {"S": "Account"},
            "SystemModstamp": {"S": "2026-01-01T00:00:00.000Z"},
            "IsDeleted": {"BOOL": False},
        },
    )

    code, out, err = run_cli("verify", "--object", "Account", "--local")

    assert code == 1, err
    report = json.loads(out)
    assert report["clean"] is False
    assert report["table"] == table
    assert (report["missing"]["examples"], report["stale"]["examples"], report["extra"]["examples"]) == (
        [missing],
        [stale],
        [extra],
    )
    assert report["salesforce_rows"] == len(live) + len(deleted)
    assert report["repaired"] is None

    code, out, err = run_cli("verify", "--object", "Account", "--local", "--repair")

    assert code == 0, out + err
    report = json.loads(out)
    assert (report["missing"]["count"], report["stale"]["count"], report["extra"]["count"]) == (1, 1, 1)
    assert report["after_repair"]["clean"] is True
    item = client.get_item(TableName=table, Key={"Id": {"S": missing}})["Item"]
    assert item["SystemModstamp"]["S"] == live[missing]
    assert client.get_item(TableName=table, Key={"Id": {"S": stale}})["Item"]["SystemModstamp"]["S"] == live[stale]
    assert client.get_item(TableName=table, Key={"Id": {"S": extra}})["Item"]["IsDeleted"]["BOOL"] is True

    code, out, _ = run_cli("verify", "--object", "Account", "--local", "--sample", "50%", "--seed", "3")
    assert code == 0
    assert json.loads(out)["sample"] == 0.5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("verify", "--object", "Account"), "one of the arguments --local --stack-name is required"),
        (("verify", "--local"), "the following arguments are required: --object"),
        (("verify", "--object", "Account", "--local", "--sample", "0"), "--sample: must be in (0, 1]"),
        (("verify", "--object", "Account", "--local", "--sample", "lots"), "not a share or a percentage"),
    ],
)
def test_given_bad_verify_usage_then_a_clear_error_and_exit_2(argv: tuple[str, ...], message: str) -> None:
    code, out, err = run_cli(*argv)
    assert code == 2
    assert out == ""
    assert message in err


def test_given_an_object_the_stack_does_not_sync_when_verify_then_a_clear_error(local_env: LocalEnvironment) -> None:
    code, out, err = run_cli("verify", "--object", "Lead", "--local")
    assert code == 2
    assert out == ""
    assert "--object: 'Lead' is not synced by this stack (synced: " in err
