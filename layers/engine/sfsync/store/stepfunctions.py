"""Step Functions adapter of the dispatcher: start the full-copy workflow under a deterministic name,
and read an execution's real status (the dispatcher reconciles copy documents with it).

A Step Functions execution name is unique per state machine (for 90 days after it closes), so a
start under a name that already exists never runs a second copy: Step Functions answers
``ExecutionAlreadyExists`` (closed execution, or other input), or - for a running execution with the
same input - returns that execution again.  :meth:`FullCopyStarter.start_full_copy` reports the
first case as ``started=False``; the dispatcher itself remembers what it started
(:meth:`sfsync.store.state.StateStore.record_copy_start`) so later ticks do not call again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sfsync.core.exceptions import DispatchFailed, ExecutionStatusUnknown
from sfsync.store.aws import stepfunctions_client

#: ``DescribeExecution`` status of an execution still running (the others: SUCCEEDED, FAILED,
#: TIMED_OUT, ABORTED, PENDING_REDRIVE).
RUNNING = "RUNNING"


@dataclass(frozen=True, slots=True)
class ExecutionStart:
    """The answer to one start: the execution's ARN, and whether this call created it."""

    name: str
    execution_arn: str
    started: bool


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN of the execution ``name`` of ``state_machine_arn`` (Step Functions' naming rule)."""
    return f"{state_machine_arn.replace(':stateMachine:', ':execution:', 1)}:{name}"


class FullCopyStarter:
    """Starts executions of the full-sync state machine (``StartExecution``)."""

    def __init__(self, state_machine_arn: str, client: Any | None = None) -> None:
        self.state_machine_arn = state_machine_arn
        self._client = client

    def start_full_copy(self, name: str, execution_input: Mapping[str, Any]) -> ExecutionStart:
        """Start execution ``name``; an existing one is not an error (``started=False``).

        Any other failure raises :class:`DispatchFailed` naming the execution.
        """
        client = self._client or stepfunctions_client()
        try:
            response = client.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=name,
                input=json.dumps(dict(execution_input), sort_keys=True, separators=(",", ":")),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ExecutionAlreadyExists":
                return ExecutionStart(name, execution_arn(self.state_machine_arn, name), started=False)
            raise DispatchFailed(f"cannot start the full-copy execution {name}: {exc}") from exc
        except BotoCoreError as exc:
            raise DispatchFailed(f"cannot start the full-copy execution {name}: {exc}") from exc
        return ExecutionStart(name, str(response["executionArn"]), started=True)

    def execution_arn(self, name: str) -> str:
        return execution_arn(self.state_machine_arn, name)

    def execution_status(self, arn: str) -> str | None:
        """The execution's status (``RUNNING``, ``SUCCEEDED``, ``FAILED``, ``TIMED_OUT``, ``ABORTED`` ...);
        None when no such execution exists.  Any other failure raises :class:`ExecutionStatusUnknown`."""
        client = self._client or stepfunctions_client()
        try:
            response = client.describe_execution(executionArn=arn)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
                return None
            raise ExecutionStatusUnknown(f"cannot read the status of execution {arn}: {exc}") from exc
        except BotoCoreError as exc:
            raise ExecutionStatusUnknown(f"cannot read the status of execution {arn}: {exc}") from exc
        return str(response["status"])


__all__ = ["RUNNING", "ExecutionStart", "FullCopyStarter", "execution_arn", "stepfunctions_client"]
