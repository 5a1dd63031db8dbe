"""The local runtime runs a handler as a Lambda process would: no AWS SDK call of the caller in progress."""

from __future__ import annotations

from pathlib import Path

from botocore import context as botocore_context
from sfsync_local.lambda_runtime import FunctionSpec, InProcessLambdaRuntime

HANDLER = """
from botocore import context


def handler(event, _context):
    return {"sdk_context": None if context.get_context() is None else sorted(context.get_context().features)}
"""


def _runtime(code_dir: Path) -> InProcessLambdaRuntime:
    (code_dir / "app.py").write_text(HANDLER)
    runtime = InProcessLambdaRuntime(sqs_client_factory=lambda: None)
    runtime.register(
        FunctionSpec(
            logical_id="Probe",
            function_name="probe",
            function_arn="arn:aws:lambda:us-east-1:123456789012:function:probe",
            code_dir=code_dir,
            handler="app.handler",
            timeout_seconds=30,
            memory_mb=128,
            environment={},
            region="us-east-1",
        )
    )
    return runtime


def test_given_a_caller_inside_an_sdk_call_when_a_handler_runs_then_it_sees_no_sdk_call_and_the_callers_is_kept(
    tmp_path: Path,
) -> None:
    runtime = _runtime(tmp_path)
    with botocore_context.start_as_current_context():
        caller = botocore_context.get_context()
        caller.features.add("CALLER_FEATURE")
        result, is_error = runtime.run("probe", {})
        assert botocore_context.get_context() is caller
    assert not is_error
    assert result == {"sdk_context": None}


def test_given_a_handler_that_raises_when_run_inside_an_sdk_call_then_the_callers_context_is_restored(
    tmp_path: Path,
) -> None:
    runtime = _runtime(tmp_path)
    (tmp_path / "app.py").write_text("def handler(event, _context):\n    raise ValueError('boom')\n")
    with botocore_context.start_as_current_context():
        caller = botocore_context.get_context()
        result, is_error = runtime.run("probe", {})
        assert botocore_context.get_context() is caller
    assert is_error
    assert result["errorType"] == "ValueError"
