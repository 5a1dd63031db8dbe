"""``sfsync errors`` and ``sfsync errors retry`` on the local stack, the write-back's event validation
(issue #11, finding 8), and a sweep running at the same time as a stream invocation of the same items."""

from __future__ import annotations

import http.server
import io
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.functional import test_writeback_support as wb
from tests.functional.test_writeback_pending import last_replay, open_leads, sfsync_writes, sweep

pytestmark = pytest.mark.functional


@pytest.fixture
def emulator_records() -> int:
    return 100


def cli(*argv: str) -> tuple[int, str, str]:
    from sfsync_local.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def listed(stack: Any, *extra: str) -> list[dict[str, Any]]:
    code, out, err = cli("errors", "--table", stack.table_name("ErrorsTable"), "--json", *extra)
    assert code == 0, err
    records: list[dict[str, Any]] = json.loads(out)["records"]
    return records


def test_given_a_refused_edit_then_sfsync_errors_lists_it_and_retry_pushes_it_once_the_rule_is_relaxed(
    deploy_stack: Any, emulator: Any
) -> None:
    stack = wb.deploy(deploy_stack)
    lead, other = open_leads(stack, emulator)[:2]
    emulator.admin.add_validation_rule("Lead", "NoTestCity", "City", "Testville", "City may not be Testville")
    wb.edit(stack, "Lead", lead, City="Testville")
    wb.edit(stack, "Lead", other, City="Testville")

    rows = listed(stack)
    assert {r["id"] for r in rows} == {lead, other}
    row = next(r for r in rows if r["id"] == lead)
    assert row["object"] == "Lead" and row["kind"] == "refused"
    assert row["code"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert row["message"] == "City may not be Testville"
    assert row["fields"] == ["City"]
    assert row["since"].endswith("Z")
    assert listed(stack, "--kind", "failed") == []
    code, text, _ = cli("errors", "--table", stack.table_name("ErrorsTable"), "--object", "Lead")
    assert code == 0 and lead in text and "FIELD_CUSTOM_VALIDATION_EXCEPTION" in text

    emulator.admin.remove_validation_rule("Lead", "NoTestCity")
    since = last_replay(emulator)
    function = stack.function_name("WriteBackFunction")
    code, out, err = cli("errors", "retry", "--object", "Lead", "--id", lead, "--function", function, "--json")
    wb.drain(stack)
    assert code == 0, err
    (answer,) = json.loads(out)["retries"]
    assert (answer["records"], answer["pushed"], answer["failed"]) == (1, 1, 0)
    assert wb.salesforce_row(emulator, "Lead", lead)["City"] == "Testville"
    assert sfsync_writes(emulator, since, lead) == ["UPDATE"]
    assert sfsync_writes(emulator, since, other) == []  # only the named record
    assert [r["id"] for r in listed(stack)] == [other]
    item = wb.get_item(stack, "Lead", lead)
    assert item is not None and "_writeback_error" not in item and "_pending_since" not in item

    # the other one is fixed locally instead: the next accepted push resolves it too
    wb.edit(stack, "Lead", other, City="Gent")
    assert listed(stack) == []


def test_given_unusable_targets_when_sfsync_errors_runs_then_one_clear_error_and_exit_2(
    stack: Any, unused_port: int, not_json_lambda: str
) -> None:
    code, _, err = cli("errors", "--stack-name", "no-such-stack", "--endpoint-url", not_json_lambda)
    assert code == 2 and err == f"error: stack no-such-stack does not exist in {not_json_lambda}\n", err
    code, _, err = cli("errors", "retry", "--stack-name", "no-such-stack", "--endpoint-url", not_json_lambda)
    assert code == 2 and err == f"error: stack no-such-stack does not exist in {not_json_lambda}\n", err
    code, _, err = cli("errors", "--endpoint-url", f"http://127.0.0.1:{unused_port}", "--region", "us-east-1")
    assert code == 2 and err.startswith("error: cannot reach dynamodb"), err
    code, _, err = cli("errors", "retry", "--object", "Lead", "--endpoint-url", not_json_lambda, "--function", "wb")
    assert code == 2 and "not JSON" in err, err
    code, _, err = cli("errors", "retry", "--id", "00Q000000000001AAA", "--function", "wb")
    assert code == 2 and "--id needs --object" in err


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def not_json_lambda() -> Iterator[str]:
    """An HTTP endpoint in the way of AWS: CloudFormation says the stack does not exist, as AWS does; a
    Lambda invoke is answered with a body that is not JSON (a proxy in the way).  (A whole stand-in AWS
    with the stack deployed is tests/e2e/test_aws_mode.py.)"""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, body = 200, b"<html>gateway says hello</html>"
            if b"Action=DescribeStack" in request:
                status, body = (
                    400,
                    (
                        b"<ErrorResponse><Error><Type>Sender</Type><Code>ValidationError</Code>"
                        b"<Message>Stack with id no-such-stack does not exist</Message></Error>"
                        b"<RequestId>1</RequestId></ErrorResponse>"
                    ),
                )
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "event",
    [
        {"Records": "not a list"},
        {"Records": [{"eventName": "MODIFY", "eventSourceARN": "arn:aws:dynamodb:x:1:table/t/stream/s"}]},
        {"Records": [{"eventName": "UPSERT", "dynamodb": {"Keys": {"Id": {"S": "a"}}, "SequenceNumber": "1"}}]},
        {"sweep": {"objects": "Lead"}},
        {"sweep": {}, "extra": 1},
        {"retry": {"object": "Lead", "ids": "00Q"}},
        {"retry": {"ids": []}},
        {"something": "else"},
        ["Records"],
    ],
    ids=[
        "records-not-list",
        "no-dynamodb",
        "bad-event-name",
        "sweep-objects",
        "sweep-extra",
        "retry-ids",
        "retry-object",
        "unknown",
        "list",
    ],
)
def test_given_a_malformed_write_back_event_then_invalid_event_and_nothing_is_written(
    deploy_stack: Any, emulator: Any, event: Any
) -> None:
    from sfsync_local.lambda_runtime import LocalInvokeError

    stack = wb.deploy(deploy_stack)
    before = _everything(stack)
    with pytest.raises(LocalInvokeError) as failure:
        stack.invoke("WriteBackFunction", event)
    assert failure.value.payload["errorType"] == "InvalidEvent", failure.value.payload
    assert _everything(stack) == before


def _everything(stack: Any) -> dict[str, list[Any]]:
    client = stack.boto3_client("dynamodb")
    names = ["StateTable", "ErrorsTable", "LeadTable", "ContactTable"]
    return {n: client.scan(TableName=stack.table_name(n), ConsistentRead=True)["Items"] for n in names}


def test_given_records_of_an_unknown_table_or_a_one_way_object_then_they_are_logged_and_counted(
    deploy_stack: Any, emulator: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    stack = wb.deploy(deploy_stack)
    lead = open_leads(stack, emulator)[0]
    item = wb.get_item(stack, "Lead", lead)
    assert item is not None
    edited = {**item, "Title": "Nobody Pushes This"}
    unknown = wb.stream_event(stack, "Lead", edited, item, 1.0)
    unknown["Records"][0]["eventSourceARN"] = unknown["Records"][0]["eventSourceARN"].replace(
        stack.table_name("LeadTable"), "someone-elses-table"
    )
    one_way = wb.stream_event(stack, "Lead", {**edited, "sobject": "Account"}, {**item, "sobject": "Account"}, 1.0)
    capsys.readouterr()
    caplog.clear()

    for event in (unknown, one_way):
        assert stack.invoke("WriteBackFunction", event) == {"batchItemFailures": []}

    out = capsys.readouterr().out
    reasons = [getattr(r, "reason", None) for r in caplog.records if r.getMessage() == "write-back record ignored"]
    assert reasons == [
        "table someone-elses-table is not a record table of this stack",
        f"Account is not a two-way object of table {stack.table_name('LeadTable')}",
    ]
    counted = [
        json.loads(line)["WriteBackRecordsIgnored"]
        for line in out.splitlines()
        if line.startswith('{"_aws"') and "WriteBackRecordsIgnored" in line
    ]
    assert counted == [[1.0], [1.0]]  # one per invocation (Powertools keeps values as lists)
    assert wb.salesforce_row(emulator, "Lead", lead)["Title"] != "Nobody Pushes This"
    assert "_pending_since" not in (wb.get_item(stack, "Lead", lead) or {})


def test_given_the_sweep_and_a_stream_invocation_on_the_same_items_at_once_then_each_change_is_pushed_once(
    deploy_stack: Any, emulator: Any, salesforce_secret: dict[str, Any]
) -> None:
    import sys

    from sfsync import wiring
    from sfsync.core import clock as sfclock
    from sfsync.core.config import load_settings
    from sfsync.store.aws import dynamodb_client
    from sfsync.writeback import WriteBackDeps

    stack = wb.deploy(deploy_stack)
    leads = open_leads(stack, emulator)[:6]
    since = last_replay(emulator)
    with wb.held_stream(stack, "Lead") as held:  # the edits' records wait, as in a stream that lags
        for n, lead in enumerate(leads):
            wb.edit(stack, "Lead", lead, Title=f"Raced {n}")
    # the edits were marked by an earlier attempt that failed (Salesforce down); both runners now see them
    emulator.add_fault("http_500", family="composite")
    _, failed = stack.runtime.run(stack.function_name("WriteBackFunction"), {"Records": held})
    assert failed  # every record failed: Lambda would retry, then give up
    wb.drain(stack)
    emulator.clear_faults()
    emulator.clock.advance(11 * 60)
    emulator.add_fault("slow", family="composite", delay_s=0.5)  # keep both runners in flight together

    # the real handler module, called on two threads at once (the local runtime runs one call at a time)
    lambda_handler = stack.runtime._handler(stack.runtime.spec(stack.function_name("WriteBackFunction")))
    module = sys.modules[lambda_handler.__module__]
    settings = load_settings(stack.function_environment("WriteBackFunction"))
    sf = wiring.salesforce_client(salesforce_secret)
    results: dict[str, Any] = {}

    def run(name: str, event: dict[str, Any]) -> None:
        deps = WriteBackDeps(settings, sf, dynamodb_client(), sfclock.engine_clock())
        results[name] = module.handle(event, None, deps)

    threads = [
        threading.Thread(target=run, args=("stream", {"Records": held})),
        threading.Thread(target=run, args=("sweep", {"sweep": {}})),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    emulator.clear_faults()
    wb.drain(stack)
    sweep(stack)  # whatever one runner left to the other is done by the next sweep

    assert set(results) == {"stream", "sweep"}, results
    for n, lead in enumerate(leads):
        assert wb.salesforce_row(emulator, "Lead", lead)["Title"] == f"Raced {n}"
        assert sfsync_writes(emulator, since, lead) == ["UPDATE"], lead
        assert "_pending_since" not in (wb.get_item(stack, "Lead", lead) or {})
