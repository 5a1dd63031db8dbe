"""Run the project's real Lambda handlers in-process behind moto's Lambda service.

moto runs functions in Docker, which these machines lack. Every moto path that runs a function
(``lambda.invoke``, Step Functions Task states, DynamoDB stream event-source mappings) ends in
``moto.awslambda.models.LambdaFunction._invoke_lambda(self, event)``. :class:`InProcessLambdaRuntime`
replaces that method with one that imports ``<CodeUri>/app.py`` (under a unique module name: every
handler file is called ``app.py``), applies the function's environment for the duration of the call,
builds a Lambda context, calls the handler and returns moto's ``(json_result, is_error, logs)``.
An unhandled exception becomes Lambda's error payload ``{"errorMessage", "errorType", "stackTrace"}``,
so Step Functions ``Retry``/``Catch`` match on the exception class name.

Asynchronous invokes (``InvocationType="Event"``) are *queued*, as Lambda's own async queue is: the
caller gets 202 at once and :meth:`InProcessLambdaRuntime.drain` runs the queued events (and whatever they
enqueue) in order, honouring each function's ``EventInvokeConfig`` (``MaximumRetryAttempts`` and the
``OnFailure`` SQS destination). Stream triggers run synchronously before the write that caused them
returns, with ``ReportBatchItemFailures`` retries, ``BisectBatchOnFunctionError`` and the ``OnFailure``
destination applied here, and unique increasing ``SequenceNumber`` values (moto reuses them after each
delivery).

Stream records are delivered in batches, as Lambda's stream poller does: moto would invoke the
function once per changed item, inside the put; here the records a DynamoDB request produces
(a ``BatchWriteItem`` of 25 items: 25 records) are collected while the request runs and delivered
when it ends, in order, up to ``BatchSize`` records per invocation.  Every record is still delivered
before the write call returns, so after any write (and after :meth:`InProcessLambdaRuntime.drain`)
nothing is pending - except inside :func:`coalesce_stream_delivery` (benchmarks of bulk writes), where
the records of all threads' requests are pooled and delivered, in order, once a trigger's ``BatchSize``
worth is waiting (and the rest when the block ends or on ``drain``), as Lambda's poller fills a batch
from a busy stream instead of invoking the function per request.

The handlers share this process: invocations are serialised by one lock, and ``os.environ`` holds the
function's variables only while its handler runs (nested invocations restore the outer ones).

Requests from other threads (the local endpoint, :mod:`sfsync_local.endpoint`, serves the same moto
backends to other processes): moto's DynamoDB is not thread-safe, so every DynamoDB request runs under
one lock (:data:`_StreamBatches`' request lock, held only while moto executes the request, never while a
function runs).  A request made inside :func:`defer_stream_delivery` (a served request) does not wait for
its stream records to be delivered, as a DynamoDB write in AWS does not: its records join a queue that
:meth:`InProcessLambdaRuntime.deliver_deferred_streams` delivers (the endpoint's poller thread, and
:meth:`InProcessLambdaRuntime.drain`).  Order is kept across both paths: every record gets a sequence
number while the request lock is held, and a request's own records are delivered only after the queued
records older than them (see :meth:`_StreamBatches.flush`).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import sys
import threading
import time
import traceback
import types
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

from botocore import context as botocore_context
from moto.awslambda.models import LambdaFunction

from .event_filter import accepts, parse_filters

__all__ = [
    "AsyncInvocation",
    "FunctionSpec",
    "InProcessLambdaRuntime",
    "Invocation",
    "LambdaContext",
    "LocalInvokeError",
    "QueueTrigger",
    "StreamTrigger",
    "coalesce_stream_delivery",
    "defer_stream_delivery",
    "dynamodb_requests_paused",
    "dynamodb_write_count",
    "suppress_stream_records",
    "wait_for_deferred_stream_records",
]

# Set for every in-process invocation on top of the template's variables: X-Ray has no daemon here.
LOCAL_ONLY_ENVIRONMENT = {"POWERTOOLS_TRACE_DISABLED": "true", "AWS_SAM_LOCAL": "true"}


# DynamoDB stream sequence numbers are 21+ digit decimal strings that only grow.
_FIRST_SEQUENCE_NUMBER = 100_000_000_000_000_000_000


class LocalInvokeError(RuntimeError):
    """A function invoked through the local stack failed; ``payload`` is Lambda's error payload."""

    def __init__(self, function_name: str, payload: Any):
        self.function_name = function_name
        self.payload = payload
        if isinstance(payload, dict):
            detail = f"{payload.get('errorType')}: {payload.get('errorMessage')}"
            trace = "".join(payload.get("stackTrace") or [])
            if trace:
                detail += "\n" + trace
        else:
            detail = repr(payload)
        super().__init__(f"function {function_name} failed: {detail}")


@dataclass(frozen=True)
class FunctionSpec:
    """What the runtime needs to know about one deployed function (all resolved from template.yaml)."""

    logical_id: str
    function_name: str
    function_arn: str
    code_dir: Path
    handler: str
    timeout_seconds: int
    memory_mb: int
    environment: Mapping[str, str]
    region: str
    max_async_retries: int = 2
    on_failure_queue_url: str | None = None
    dead_letter_queue_url: str | None = None


@dataclass(frozen=True)
class StreamTrigger:
    """A DynamoDB stream event-source mapping's delivery settings (resolved from template.yaml)."""

    function_name: str
    stream_arn: str
    batch_size: int
    max_retry_attempts: int
    report_batch_item_failures: bool
    on_failure_queue_url: str | None
    bisect_on_function_error: bool = False
    #: the mapping's ``FilterCriteria`` patterns (:mod:`sfsync_local.event_filter`); none: every record
    filters: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class QueueTrigger:
    """An SQS event source of a function (SAM ``Type: SQS`` event, resolved from template.yaml).

    Delivered by :meth:`InProcessLambdaRuntime.poll_queues`, as Lambda's SQS poller does: up to
    ``batch_size`` messages per invocation; with ``ReportBatchItemFailures`` only the messages the
    function names are left in the queue (visible again at once here), without it the whole batch on
    an error; the queue's own ``RedrivePolicy`` moves a message that keeps failing to its dead-letter
    queue after ``maxReceiveCount`` receives (moto applies it on receive)."""

    function_name: str
    queue_url: str
    queue_arn: str
    batch_size: int
    report_batch_item_failures: bool


@dataclass
class Invocation:
    """One in-process handler call, kept for inspection by tests and the CLI."""

    function_name: str
    event: Any
    result: Any
    is_error: bool
    started_at: datetime
    duration_ms: float


@dataclass
class AsyncInvocation:
    function_name: str
    event: Any
    attempts: int = 0
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))


class LambdaContext:
    """The Lambda context object handed to the handler (the attributes Powertools reads)."""

    def __init__(self, spec: FunctionSpec, *, clock: Callable[[], float] = time.monotonic):
        self.function_name = spec.function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.function_arn
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.function_name}"
        self.log_stream_name = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._clock = clock
        self._deadline = clock() + spec.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self._clock()) * 1000))


def _error_payload(exc: BaseException) -> dict[str, Any]:
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": "",
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


def _to_json(value: Any) -> str:
    return json.dumps(value, default=str)


class InProcessLambdaRuntime:
    """Patches moto's Lambda so that the functions registered here run in this process."""

    def __init__(self, *, sqs_client_factory: Callable[[], Any], record_invocations: bool = True):
        self._specs: dict[str, FunctionSpec] = {}
        self._stream_triggers: dict[tuple[str, str], StreamTrigger] = {}
        self._queue_triggers: list[QueueTrigger] = []
        self._modules: dict[str, types.ModuleType] = {}
        self._lock = threading.RLock()
        self._queue: deque[AsyncInvocation] = deque()
        self._sqs_client_factory = sqs_client_factory
        self._sequence: dict[str, int] = {}
        # Every call, for tests and the CLI; a long run (the benchmark's million stream records, each
        # invocation holding its event) turns this off to keep memory flat.
        self.record_invocations = record_invocations
        self.invocations: list[Invocation] = []

    # ------------------------------------------------------------------ registration
    def register(self, spec: FunctionSpec) -> None:
        self._specs[spec.function_name] = spec

    def register_stream_trigger(self, trigger: StreamTrigger) -> None:
        self._stream_triggers[(trigger.function_name, trigger.stream_arn)] = trigger

    def stream_batch_size(self) -> int:
        """The largest ``BatchSize`` of the registered stream triggers (0: none)."""
        return max((t.batch_size for t in self._stream_triggers.values()), default=0)

    @property
    def lock(self) -> threading.RLock:
        """Held while a handler runs: another thread holding it runs nothing concurrently with a handler."""
        return self._lock

    def register_queue_trigger(self, trigger: QueueTrigger) -> None:
        self._queue_triggers.append(trigger)

    @property
    def queue_triggers(self) -> list[QueueTrigger]:
        return list(self._queue_triggers)

    def spec(self, name_or_arn: str) -> FunctionSpec:
        name = name_or_arn
        if ":function:" in name_or_arn:
            name = name_or_arn.split(":function:", 1)[1].split(":", 1)[0]
        try:
            return self._specs[name]
        except KeyError:
            raise LocalInvokeError(name, f"no function {name} is deployed on the local stack") from None

    # ------------------------------------------------------------------ patching moto
    def install(self) -> None:
        """Route moto's Lambda executions of this runtime's functions here (several runtimes may be active)."""
        _MotoLambdaPatch.attach(self)

    def uninstall(self) -> None:
        _MotoLambdaPatch.detach(self)

    def owns(self, function_name: str) -> bool:
        return function_name in self._specs

    def _moto_invoke(self, function_name: str, event: Any) -> tuple[str, bool, str]:
        if isinstance(event, str):
            event = json.loads(event) if event else {}
        records = event.get("Records") if isinstance(event, dict) else None
        if records and isinstance(records, list) and records[0].get("eventSource") == "aws:dynamodb":
            trigger = self._stream_triggers.get((function_name, records[0].get("eventSourceARN", "")))
            if trigger is not None:
                result, is_error = self._deliver_stream_batch(trigger, self._renumber(trigger, event))
                return _to_json(result), is_error, ""
        result, is_error = self.run(function_name, event)
        return _to_json(result), is_error, ""

    # ------------------------------------------------------------------ running a handler
    @contextmanager
    def environment(self, spec: FunctionSpec) -> Iterator[None]:
        """The function's environment in ``os.environ`` while the block runs (what Lambda gives its handler)."""
        overlay = {
            **{key: str(value) for key, value in spec.environment.items()},
            **LOCAL_ONLY_ENVIRONMENT,
            "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout_seconds),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.function_name}",
            "AWS_REGION": spec.region,
            "AWS_DEFAULT_REGION": spec.region,
            "_HANDLER": spec.handler,
        }
        saved = {key: os.environ.get(key) for key in overlay}
        os.environ.update(overlay)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def _handler(self, spec: FunctionSpec) -> Callable[[Any, Any], Any]:
        module_name, _, attribute = spec.handler.rpartition(".")
        if not module_name:
            raise LocalInvokeError(spec.function_name, f"Handler {spec.handler!r} is not <module>.<function>")
        module = self._modules.get(spec.function_name)
        if module is None:
            path = spec.code_dir / (module_name.replace(".", "/") + ".py")
            if not path.is_file():
                raise LocalInvokeError(
                    spec.function_name, f"handler file {path} does not exist (CodeUri of {spec.logical_id})"
                )
            module = load_handler_module(path, f"sfsync_local_fn_{spec.logical_id}_{module_name.replace('.', '_')}")
            self._modules[spec.function_name] = module
        handler = getattr(module, attribute, None)
        if not callable(handler):
            raise LocalInvokeError(spec.function_name, f"{spec.handler}: {attribute} is not a callable in the module")
        return handler  # type: ignore[no-any-return]

    def run(self, function_name: str, event: Any) -> tuple[Any, bool]:
        """Call the function's handler now, in this thread; returns ``(result or error payload, is_error)``."""
        invocation = self._run(function_name, event)
        return invocation.result, invocation.is_error

    def _run(self, function_name: str, event: Any) -> Invocation:
        spec = self.spec(function_name)
        started_at = datetime.now(UTC)
        started = time.monotonic()
        with self._lock, self.environment(spec):
            try:
                handler = self._handler(spec)
                # As in a Lambda process of its own: no AWS SDK call in progress.  Run inside the caller's
                # boto3 call (a state machine Task's Invoke, the write that fires a stream), the handler
                # would inherit botocore's per-call client context and deep-copy it on each of its own SDK
                # calls, which no function pays in AWS.  Set and reset here, not in a helper: each
                # frame more on this path moves where CPython's data-stack chunks (16 KiB) are mapped and
                # unmapped as the deep moto calls below go up and down (see docs/decisions.md).
                no_sdk_call = botocore_context.set_context(None)  # type: ignore[arg-type]
                try:
                    result: Any = handler(event, LambdaContext(spec))
                finally:
                    botocore_context.reset_context(no_sdk_call)
                is_error = False
            except LocalInvokeError as exc:
                result, is_error = {"errorMessage": str(exc), "errorType": "Runtime.ImportModuleError"}, True
            except Exception as exc:  # noqa: BLE001 - this IS the Lambda runtime: any handler error is an error payload
                result, is_error = _error_payload(exc), True
        if not is_error and time.monotonic() - started > spec.timeout_seconds:
            result = {
                "errorMessage": f"Task timed out after {spec.timeout_seconds:.2f} seconds",
                "errorType": "Sandbox.Timedout",
            }
            is_error = True
        if not is_error:
            try:
                result = json.loads(json.dumps(result))  # the caller gets what Lambda would send: JSON
            except (TypeError, ValueError) as exc:
                result = {"errorMessage": f"Unable to marshal response: {exc}", "errorType": "Runtime.MarshalError"}
                is_error = True
        invocation = Invocation(
            spec.function_name, event, result, is_error, started_at, (time.monotonic() - started) * 1000
        )
        if self.record_invocations:
            self.invocations.append(invocation)
        return invocation

    # ------------------------------------------------------------------ asynchronous invokes
    def enqueue(self, function_name: str, event: Any) -> None:
        self.spec(function_name)
        with self._lock:
            self._queue.append(AsyncInvocation(function_name, event))

    @property
    def pending(self) -> int:
        return len(self._queue)

    def drain(self, *, max_invocations: int = 10_000) -> list[Invocation]:
        """Run queued async invocations (and what they enqueue) until the queue is empty.

        Stream records of a change made outside a DynamoDB request on this thread (none of the
        project's paths do that) and the records of served requests still queued are delivered first."""
        _StreamBatches.flush()
        _StreamBatches.flush_pool(until_empty=True)
        self.deliver_deferred_streams()
        done: list[Invocation] = []
        while self._queue:
            if len(done) >= max_invocations:
                raise RuntimeError(f"drain(): more than {max_invocations} async invocations, is something looping?")
            with self._lock:
                item = self._queue.popleft()
            spec = self.spec(item.function_name)
            item.attempts += 1
            invocation = self._run(item.function_name, item.event)
            result, is_error = invocation.result, invocation.is_error
            done.append(invocation)
            if not is_error:
                continue
            if item.attempts <= spec.max_async_retries:
                with self._lock:
                    self._queue.append(item)
            elif spec.on_failure_queue_url:
                self._send_async_failure(spec, item, result)
            elif spec.dead_letter_queue_url:
                self._send_to_dead_letter_queue(spec, item, result)
        return done

    # ------------------------------------------------------------------ SQS event sources
    def poll_queues(self, *, max_batches: int = 10_000) -> int:
        """Deliver the messages of every SQS event source until their queues are empty (see
        :class:`QueueTrigger`); returns how many messages were handed to a function."""
        delivered = 0
        batches = 0
        progress = True
        while progress:
            progress = False
            for trigger in self._queue_triggers:
                count = self.poll_queue(trigger)
                if count:
                    delivered += count
                    batches += 1
                    progress = True
            if batches > max_batches:
                raise RuntimeError(f"poll_queues(): more than {max_batches} batches, is something looping?")
        return delivered

    def poll_queue(self, trigger: QueueTrigger) -> int:
        """One receive (up to ``batch_size`` messages, 10 a request) and one invocation; returns the messages."""
        sqs = self._sqs_client_factory()
        messages: list[dict[str, Any]] = []
        while len(messages) < trigger.batch_size:
            wanted = min(10, trigger.batch_size - len(messages))
            got = sqs.receive_message(
                QueueUrl=trigger.queue_url, MaxNumberOfMessages=wanted, AttributeNames=["All"]
            ).get("Messages", [])
            messages.extend(got)
            if len(got) < wanted:
                break
        if not messages:
            return 0
        region = trigger.queue_arn.split(":")[3]
        event = {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m.get("Attributes", {}),
                    "messageAttributes": m.get("MessageAttributes", {}),
                    "md5OfBody": m.get("MD5OfBody", ""),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": trigger.queue_arn,
                    "awsRegion": region,
                }
                for m in messages
            ]
        }
        result, is_error = self.run(trigger.function_name, event)
        failed: set[str] = set()
        if is_error:
            failed = {m["MessageId"] for m in messages}
        elif trigger.report_batch_item_failures and isinstance(result, dict):
            failed = {str(f.get("itemIdentifier")) for f in result.get("batchItemFailures") or []}
        for m in messages:
            if m["MessageId"] in failed:
                sqs.change_message_visibility(
                    QueueUrl=trigger.queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                sqs.delete_message(QueueUrl=trigger.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return len(messages)

    # ------------------------------------------------------------------ served requests' stream records
    def accept_deferred_streams(self) -> None:
        """From now on requests made inside :func:`defer_stream_delivery` may leave their stream records
        queued; every delivery happens under this runtime's lock, which keeps them in order."""
        _StreamBatches.set_delivery_lock(self._lock)

    def stop_deferred_streams(self) -> int:
        """Deliver what is still queued and go back to delivering every record when its request ends."""
        delivered = self.deliver_deferred_streams()
        _StreamBatches.set_delivery_lock(None)
        return delivered

    def deliver_deferred_streams(self) -> int:
        """Deliver the queued stream records of served requests, in order; returns how many."""
        if not _StreamBatches.has_deferred():
            return 0
        with self._lock:
            return _StreamBatches.deliver_deferred()

    def _send_async_failure(self, spec: FunctionSpec, item: AsyncInvocation, error: Any) -> None:
        record = {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "requestContext": {
                "requestId": item.request_id,
                "functionArn": f"{spec.function_arn}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": item.attempts,
            },
            "requestPayload": item.event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": error,
        }
        self._sqs_client_factory().send_message(QueueUrl=spec.on_failure_queue_url, MessageBody=_to_json(record))

    def _send_to_dead_letter_queue(self, spec: FunctionSpec, item: AsyncInvocation, error: Any) -> None:
        """Lambda's dead-letter queue gets the event itself, the error in message attributes."""
        error_type = str(error.get("errorType", "Unhandled")) if isinstance(error, dict) else "Unhandled"
        message = str(error.get("errorMessage", "")) if isinstance(error, dict) else str(error)
        self._sqs_client_factory().send_message(
            QueueUrl=spec.dead_letter_queue_url,
            MessageBody=_to_json(item.event),
            MessageAttributes={
                "RequestID": {"DataType": "String", "StringValue": item.request_id},
                "ErrorCode": {"DataType": "Number", "StringValue": "200"},
                "ErrorMessage": {"DataType": "String", "StringValue": f"{error_type}: {message}"[:256]},
            },
        )

    # ------------------------------------------------------------------ stream triggers
    def _deliver_stream_batch(self, trigger: StreamTrigger, event: dict[str, Any]) -> tuple[Any, bool]:
        records: list[dict[str, Any]] = [r for r in event["Records"] if accepts(trigger.filters, r)]
        result: Any = None
        is_error = False
        while records:
            batch, records = records[: trigger.batch_size], records[trigger.batch_size :]
            result, is_error = self._deliver_batch(trigger, batch, attempts=0)
        return result, is_error

    def _deliver_batch(self, trigger: StreamTrigger, batch: list[dict[str, Any]], *, attempts: int) -> tuple[Any, bool]:
        """One batch until it succeeds or its retries run out: a reported item failure retries from that
        record on; a function error with ``BisectBatchOnFunctionError`` retries each half on its own, in
        order (splitting does not use up a retry); what still fails goes to the OnFailure destination."""
        result: Any = None
        is_error = False
        while batch:
            attempts += 1
            result, is_error = self.run(trigger.function_name, {"Records": batch})
            failed_from = self._first_failed_index(trigger, batch, result, is_error)
            if failed_from is None:
                break
            if is_error and trigger.bisect_on_function_error and len(batch) > 1:
                half = len(batch) // 2
                self._deliver_batch(trigger, batch[:half], attempts=attempts - 1)
                return self._deliver_batch(trigger, batch[half:], attempts=attempts - 1)
            if attempts > trigger.max_retry_attempts:
                self._send_stream_failure(trigger, batch[failed_from:], attempts)
                break
            batch = batch[failed_from:]
        return result, is_error

    def _renumber(self, trigger: StreamTrigger, event: dict[str, Any]) -> dict[str, Any]:
        """Give each stream record a unique, increasing SequenceNumber (moto restarts its numbering after
        every delivery, so two writes would otherwise share one)."""
        renumbered = []
        for record in event["Records"]:
            self._sequence[trigger.stream_arn] = self._sequence.get(trigger.stream_arn, _FIRST_SEQUENCE_NUMBER) + 1
            body = dict(record["dynamodb"], SequenceNumber=str(self._sequence[trigger.stream_arn]))
            renumbered.append(dict(record, dynamodb=body))
        return {**event, "Records": renumbered}

    @staticmethod
    def _first_failed_index(
        trigger: StreamTrigger, batch: list[dict[str, Any]], result: Any, is_error: bool
    ) -> int | None:
        if is_error:
            return 0
        if not trigger.report_batch_item_failures or not isinstance(result, dict):
            return None
        failures = result.get("batchItemFailures") or []
        sequence_numbers = [record["dynamodb"]["SequenceNumber"] for record in batch]
        failed = [item.get("itemIdentifier") for item in failures]
        if not failed:
            return None
        positions = [sequence_numbers.index(identifier) for identifier in failed if identifier in sequence_numbers]
        # Lambda treats an unknown identifier (or an empty one) as a failure of the whole batch.
        return min(positions) if len(positions) == len(failed) else 0

    def _send_stream_failure(self, trigger: StreamTrigger, records: list[dict[str, Any]], attempts: int) -> None:
        if not trigger.on_failure_queue_url:
            return
        first, last = records[0]["dynamodb"], records[-1]["dynamodb"]
        spec = self.spec(trigger.function_name)
        record = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": spec.function_arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": attempts,
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "DDBStreamBatchInfo": {
                "shardId": "shardId-00000001541626099285-f35f62ef",
                "startSequenceNumber": first["SequenceNumber"],
                "endSequenceNumber": last["SequenceNumber"],
                "approximateArrivalOfFirstRecord": str(first.get("ApproximateCreationDateTime")),
                "approximateArrivalOfLastRecord": str(last.get("ApproximateCreationDateTime")),
                "batchSize": len(records),
                "streamArn": trigger.stream_arn,
            },
        }
        self._sqs_client_factory().send_message(QueueUrl=trigger.on_failure_queue_url, MessageBody=_to_json(record))


class _MotoLambdaPatch:
    """One patch of moto's ``LambdaFunction`` for every active runtime (stacks may nest and close in any
    order): each call goes to the runtime that registered the function, else to moto itself."""

    _runtimes: ClassVar[list[InProcessLambdaRuntime]] = []
    _patches: ClassVar[list[Any]] = []
    _guard = threading.Lock()

    @classmethod
    def attach(cls, runtime: InProcessLambdaRuntime) -> None:
        with cls._guard:
            if runtime in cls._runtimes:
                return
            cls._runtimes.append(runtime)
            if len(cls._runtimes) == 1:
                cls._start()

    @classmethod
    def detach(cls, runtime: InProcessLambdaRuntime) -> None:
        with cls._guard:
            if runtime not in cls._runtimes:
                return
            cls._runtimes.remove(runtime)
            if not cls._runtimes:
                while cls._patches:
                    cls._patches.pop().stop()

    @classmethod
    def _owner(cls, function_name: str) -> InProcessLambdaRuntime | None:
        return next((r for r in reversed(cls._runtimes) if r.owns(function_name)), None)

    @classmethod
    def _start(cls) -> None:
        original_invoke_lambda = LambdaFunction._invoke_lambda
        original_invoke = LambdaFunction.invoke
        _StreamBatches.start(cls._patches)

        def invoke_lambda(function: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
            owner = cls._owner(function.function_name)
            if owner is None:
                return original_invoke_lambda(function, event)
            return owner._moto_invoke(function.function_name, event)

        def invoke(function: LambdaFunction, body: str, request_headers: Any, response_headers: Any) -> Any:
            headers = {str(k).lower(): v for k, v in dict(request_headers or {}).items()}
            owner = cls._owner(function.function_name)
            if owner is not None and headers.get("x-amz-invocation-type") == "Event":
                owner.enqueue(function.function_name, json.loads(body) if body else {})
                return b""
            return original_invoke(function, body, request_headers, response_headers)

        for attribute, replacement in (("_invoke_lambda", invoke_lambda), ("invoke", invoke)):
            patcher = mock.patch.object(LambdaFunction, attribute, replacement)
            patcher.start()
            cls._patches.append(patcher)


class _StreamBatches:
    """Collect the stream records of one DynamoDB request and deliver them when it ends (see the module
    docstring).  Records are kept per thread: a Step Functions Map runs iterations on several threads,
    and a write made by a stream-triggered handler is a request of its own (delivered when it ends).

    Every DynamoDB request runs under :attr:`_request_lock` (moto's DynamoDB is not thread-safe); the
    lock is a leaf: nothing else is acquired while it is held, and it is released before the records
    are delivered.  Records get a sequence number under it; those of a request made inside
    :func:`defer_stream_delivery` go to :attr:`_deferred` instead of the thread's own list.
    """

    _local = threading.local()
    _request_lock = threading.RLock()
    _sequence = itertools.count()
    _deferred: ClassVar[list[tuple[int, Any, Any]]] = []  # (sequence, shard, record), oldest first
    _deferred_ready = threading.Condition(threading.Lock())
    _delivery_lock: ClassVar[list[Any]] = []  # the lock deliveries take while records may be deferred
    _write_count = 0  # DynamoDB write requests executed (counted under the request lock)
    #: Inside coalesce_stream_delivery: records are pooled (all threads) until this many are waiting.
    _coalesce = 0
    _pool: ClassVar[list[tuple[int, Any, Any]]] = []
    _pool_guard = threading.Lock()  # leaf lock: appends and swaps of the pool
    _pool_delivery = threading.RLock()  # one pooled delivery at a time (re-entered by its handlers' writes)
    _WRITE_ACTIONS = frozenset(
        {
            "PutItem",
            "UpdateItem",
            "DeleteItem",
            "BatchWriteItem",
            "TransactWriteItems",
            "ExecuteStatement",
            "BatchExecuteStatement",
            "ExecuteTransaction",
        }
    )

    @classmethod
    def _pending(cls) -> list[tuple[int, Any, Any]]:
        pending: list[tuple[int, Any, Any]] | None = getattr(cls._local, "pending", None)
        if pending is None:
            pending = cls._local.pending = []
        return pending

    @classmethod
    def start(cls, patches: list[Any]) -> None:
        from moto.dynamodb.models.table import StreamRecord, StreamShard
        from moto.dynamodb.responses import DynamoHandler

        original_add = StreamShard.add
        original_call_action = DynamoHandler.call_action

        def add(shard: Any, old: Any, new: Any) -> None:
            if getattr(cls._local, "suppressed", False):
                return
            if not shard.table.lambda_event_source_mappings:
                original_add(shard, old, new)
                return
            view = shard.table.stream_specification["StreamViewType"]
            event_name = "INSERT" if old is None else "REMOVE" if new is None else "MODIFY"
            if _filtered_out(shard.table, view, event_name, old, new):
                return  # Lambda's event filtering drops it for every mapping: no record to build
            record = StreamRecord(shard.table, view, event_name, old, new, shard.starting_sequence_number)
            entry = (next(cls._sequence), shard, record)  # under the request lock: sequence = write order
            if getattr(cls._local, "deferred", False):
                with cls._deferred_ready:
                    cls._deferred.append(entry)
                    cls._deferred_ready.notify_all()
            elif cls._coalesce:
                with cls._pool_guard:
                    cls._pool.append(entry)
            else:
                cls._pending().append(entry)

        def call_action(handler: Any) -> Any:
            try:
                with cls._request_lock:
                    result = original_call_action(handler)
                    if handler._get_action() in cls._WRITE_ACTIONS:
                        cls._write_count += 1
                    return result
            finally:
                cls.flush()

        for owner, attribute, replacement in (
            (StreamShard, "add", add),
            (DynamoHandler, "call_action", call_action),
        ):
            patcher = mock.patch.object(owner, attribute, replacement)
            patcher.start()
            patches.append(patcher)

    @classmethod
    def set_delivery_lock(cls, lock: Any | None) -> None:
        if lock is not None and cls._delivery_lock and cls._delivery_lock[0] is not lock:
            raise RuntimeError("another local stack already accepts deferred stream records in this process")
        cls._delivery_lock[:] = [] if lock is None else [lock]

    @classmethod
    def has_deferred(cls) -> bool:
        return bool(cls._deferred)

    @classmethod
    def wait_deferred(cls, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for queued records; True when there are some."""
        with cls._deferred_ready:
            return cls._deferred_ready.wait_for(lambda: bool(cls._deferred), timeout=timeout)

    @classmethod
    def _take_deferred(cls, before: int | None = None) -> list[tuple[int, Any, Any]]:
        """Remove and return the queued records (only those older than ``before``), oldest first."""
        with cls._deferred_ready:
            if before is None:
                taken, cls._deferred[:] = list(cls._deferred), []
                return taken
            cut = 0
            while cut < len(cls._deferred) and cls._deferred[cut][0] < before:
                cut += 1
            taken, cls._deferred[:] = cls._deferred[:cut], cls._deferred[cut:]
            return taken

    @classmethod
    def _lock_for_delivery(cls) -> AbstractContextManager[Any]:
        return cls._delivery_lock[0] if cls._delivery_lock else nullcontext()  # type: ignore[no-any-return]

    @classmethod
    def flush(cls) -> None:
        """Deliver this thread's collected records: per shard, in order, to every mapping of its table.

        While requests may be deferred, the queued records older than this thread's are delivered
        first, all under the delivery lock (the owning runtime's lock: a handler running on this thread
        holds it already), so no shard's records overtake each other."""
        if cls._pool and len(cls._pool) >= cls._coalesce:
            cls.flush_pool()
        pending = cls._pending()
        if not pending:
            return
        with cls._lock_for_delivery():
            records, pending[:] = list(pending), []
            older = cls._take_deferred(before=records[0][0]) if cls._deferred else []
            cls._deliver(older + records)

    @classmethod
    def flush_pool(cls, *, until_empty: bool = False) -> None:
        """Deliver the pooled records (see :func:`coalesce_stream_delivery`), in order, after the queued
        records of served requests older than them; ``until_empty``: also what the functions' own
        writes pool meanwhile."""
        with cls._lock_for_delivery(), cls._pool_delivery:
            while True:
                with cls._pool_guard:
                    records, cls._pool[:] = list(cls._pool), []
                if not records:
                    return
                older = cls._take_deferred(before=records[0][0]) if cls._deferred else []
                cls._deliver(older + records)
                if not until_empty:
                    return

    @classmethod
    def deliver_deferred(cls) -> int:
        """Deliver every queued record (the caller holds the delivery lock); returns how many."""
        with cls._lock_for_delivery():
            entries = cls._take_deferred()
            cls._deliver(entries)
        return len(entries)

    @staticmethod
    def _deliver(entries: list[tuple[int, Any, Any]]) -> None:
        if not entries:
            return
        from moto.awslambda.utils import get_backend

        by_shard: dict[int, tuple[Any, list[Any]]] = {}
        for _, shard, record in entries:
            by_shard.setdefault(id(shard), (shard, []))[1].append(record)
        for shard, shard_records in by_shard.values():
            for arn, mapping in list(shard.table.lambda_event_source_mappings.items()):
                region = arn.split(":")[3]
                get_backend(shard.account_id, region).send_dynamodb_items(arn, shard_records, mapping.event_source_arn)


class _ImageView(Mapping[str, Any]):
    """A moto item as a stream record's image (DynamoDB JSON per attribute), converted when read."""

    def __init__(self, item: Any, names: Iterable[str] | None = None) -> None:
        self._attrs = item.attrs if names is None else {n: item.attrs[n] for n in names if n in item.attrs}

    def __getitem__(self, name: str) -> Any:
        return self._attrs[name].to_json()

    def __iter__(self) -> Iterator[str]:
        return iter(self._attrs)

    def __len__(self) -> int:
        return len(self._attrs)


def _mapping_patterns(mapping: Any) -> tuple[dict[str, Any], ...]:
    """A moto event-source mapping's ``FilterCriteria`` patterns, parsed once and kept on the mapping."""
    patterns: tuple[dict[str, Any], ...] | None = getattr(mapping, "_sfsync_filter_patterns", None)
    if patterns is None:
        patterns = parse_filters(getattr(mapping, "filter_criteria", None))
        mapping._sfsync_filter_patterns = patterns
    return patterns


def _filtered_out(table: Any, view: str, event_name: str, old: Any, new: Any) -> bool:
    """Would every stream mapping of ``table`` drop this change by its ``FilterCriteria``?

    Decided on a record that converts an image's attribute only when a pattern reads it, before moto
    builds the record (both images in DynamoDB JSON, twice serialised) for nothing.
    """
    patterns = []
    for mapping in table.lambda_event_source_mappings.values():
        mapping_patterns = _mapping_patterns(mapping)
        if not mapping_patterns:
            return False  # a mapping without filters takes every record
        patterns.append(mapping_patterns)
    if not patterns:
        return False
    body: dict[str, Any] = {"Keys": _ImageView(old if old is not None else new, table.attribute_keys)}
    if new is not None and view in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
        body["NewImage"] = _ImageView(new)
    if old is not None and view in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES"):
        body["OldImage"] = _ImageView(old)
    record = {"eventName": event_name, "eventSource": "aws:dynamodb", "dynamodb": body}
    return not any(accepts(each, record) for each in patterns)


@contextmanager
def defer_stream_delivery() -> Iterator[None]:
    """DynamoDB requests made on this thread inside the block return without waiting for their stream
    records to be delivered (as in AWS): the records are queued for
    :meth:`InProcessLambdaRuntime.deliver_deferred_streams`.  For requests served to other processes."""
    previous = getattr(_StreamBatches._local, "deferred", False)
    _StreamBatches._local.deferred = True
    try:
        yield
    finally:
        _StreamBatches._local.deferred = previous


@contextmanager
def coalesce_stream_delivery(records: int) -> Iterator[None]:
    """Inside the block, the stream records of DynamoDB requests (any thread, except those inside
    :func:`defer_stream_delivery`) are pooled and delivered once ``records`` are waiting, in batches of
    each trigger's ``BatchSize``, instead of when each request ends; the rest when the block ends.
    For benchmarks of bulk writes (a full copy's ``BatchWriteItem`` of 25 items would otherwise invoke
    the stream's functions once per request, where Lambda's poller fills batches of ``BatchSize``)."""
    if records < 1:
        raise ValueError("records must be >= 1")
    if _StreamBatches._coalesce:
        raise RuntimeError("stream deliveries are already coalesced")
    _StreamBatches._coalesce = records
    try:
        yield
    finally:
        _StreamBatches._coalesce = 0
        _StreamBatches.flush_pool(until_empty=True)


@contextmanager
def suppress_stream_records() -> Iterator[None]:
    """Writes made on this thread inside the block produce no stream records (a table restored from a
    copy, as a restore from a backup in AWS emits none)."""
    previous = getattr(_StreamBatches._local, "suppressed", False)
    _StreamBatches._local.suppressed = True
    try:
        yield
    finally:
        _StreamBatches._local.suppressed = previous


def dynamodb_write_count() -> int:
    """How many DynamoDB write requests (any table, any thread) moto executed while a local stack's
    patches were active: a cheap "changed since" check for whoever copies the tables."""
    return _StreamBatches._write_count


def dynamodb_requests_paused() -> AbstractContextManager[Any]:
    """Inside the block no DynamoDB request of another thread runs (a consistent copy of every table).
    Hold it briefly, and call nothing that waits for another thread inside it."""
    return _StreamBatches._request_lock


def wait_for_deferred_stream_records(timeout: float) -> bool:
    """Wait up to ``timeout`` seconds until served requests have queued stream records."""
    return _StreamBatches.wait_deferred(timeout)


def load_handler_module(path: Path, module_name: str) -> types.ModuleType:
    """Import a handler file under a unique module name, its directory importable while it loads."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    directory = str(path.parent)
    sys.path.insert(0, directory)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    finally:
        if directory in sys.path:
            sys.path.remove(directory)
    return module
