"""The local AWS endpoint: the local stack's AWS APIs served on a loopback port.

``sfsync demo`` and ``sfsync run`` keep the local stack in their own process (moto's in-process
``mock_aws``).  :class:`LocalEndpoint` serves the very same moto backends over HTTP, so the AWS CLI,
NoSQL Workbench or any boto3 application reads and edits the tables while the sync runs::

    AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1 \\
        aws dynamodb scan --table-name sfsync-local-LeadTable --endpoint-url http://127.0.0.1:PORT

Every service of the stack answers there (DynamoDB, DynamoDB Streams, Lambda, Step Functions, SQS,
Secrets Manager, ...): the server is moto's own WSGI application (what ``ThreadedMotoServer`` runs),
bound in the caller's thread so that a port in use is an immediate error, then served by a thread
per request.  The engine's own calls stay in-process (they never cross HTTP).

Stream records of a served write reach the write-back as they do in AWS: the write answers at once,
and its records are delivered afterwards, in order, by this endpoint's poller thread (see
:func:`sfsync_local.lambda_runtime.defer_stream_delivery`).  ``/moto-api`` (moto's reset and
configuration API) is refused: a reset would delete the running stack.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import traceback
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TextIO

from sfsync_local.lambda_runtime import (
    InProcessLambdaRuntime,
    defer_stream_delivery,
    wait_for_deferred_stream_records,
)

#: How often the serving loop checks for close() (socketserver's default is 0.5 s, paid by every close).
SHUTDOWN_POLL_S = 0.05

__all__ = [
    "ACCESS_KEY_ID",
    "LOOPBACK",
    "SECRET_ACCESS_KEY",
    "LocalEndpoint",
    "LocalEndpointError",
    "endpoint_banner",
]

LOOPBACK = "127.0.0.1"
#: Any credentials are accepted; these are the ones the banner prints.
ACCESS_KEY_ID = "local"
SECRET_ACCESS_KEY = "local"  # noqa: S105 - a dummy: the local endpoint accepts any credentials
#: How long the poller waits for queued stream records before checking whether it should stop.
POLL_SECONDS = 0.2


class LocalEndpointError(RuntimeError):
    """The endpoint cannot listen where asked (the port is in use, or not ours to take)."""


class _Refusing:
    """moto's WSGI application, minus ``/moto-api``; requests run with deferred stream delivery."""

    def __init__(self, app: Any) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO") or "")
        if path.startswith("/moto-api"):
            body = json.dumps(
                {"message": "moto's admin API is not served by sfsync's local endpoint (it could reset the stack)"}
            ).encode()
            start_response("403 Forbidden", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        with defer_stream_delivery():
            return self._app(environ, start_response)  # type: ignore[no-any-return]


def _request_handler(access_log: TextIO | None) -> type[Any]:
    """moto's request handler, writing its access log to ``log`` (the functions' log) instead of stderr."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class Handler(MotoRequestHandler):  # type: ignore[misc]
        log_stream: ClassVar[TextIO | None] = access_log

        def log(self, type: str, message: str, *args: Any) -> None:
            stream = self.log_stream
            if stream is None:
                return
            target = self.headers.get("X-Amz-Target", "") if self.headers is not None else ""
            with contextlib.suppress(ValueError):  # the log was closed while a request was still answered
                stream.write(f"endpoint {type}: {message % args} {target}\n")

    return Handler


class _StreamPoller:
    """A thread delivering served requests' stream records, as Lambda's poller does for a table stream."""

    def __init__(self, runtime: InProcessLambdaRuntime, log: TextIO | None) -> None:
        self._runtime = runtime
        self._log = log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sfsync-stream-poller", daemon=True)
        self.delivered = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not wait_for_deferred_stream_records(POLL_SECONDS):
                continue
            try:
                self.delivered += self._runtime.deliver_deferred_streams()
            except Exception:  # noqa: BLE001 - the poller outlives one bad delivery; the log tells what failed
                if self._log is not None:
                    self._log.write("stream poller: delivery failed\n" + traceback.format_exc())
                self._stop.wait(1.0)


class LocalEndpoint:
    """The local stack's moto backends on ``http://127.0.0.1:PORT`` (see the module docstring)."""

    def __init__(self, server: Any, handler: type[Any], log: TextIO | None) -> None:
        self._server = server
        self._handler = handler
        self._log = log
        self._serving: threading.Thread | None = None
        self._poller: _StreamPoller | None = None
        self._runtime: InProcessLambdaRuntime | None = None

    @classmethod
    def bind(cls, port: int = 0, *, host: str = LOOPBACK, log: TextIO | None = None) -> LocalEndpoint:
        """Take the port now (0: any free port); nothing is answered before :meth:`serve`."""
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        # The socket is bound here, not by werkzeug (which prints and calls sys.exit on a port in use).
        listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart may reuse the port at once
            listening.bind((host, port))
            listening.listen(128)
        except OSError as exc:
            listening.close()
            reason = exc.strerror or str(exc)
            raise LocalEndpointError(f"cannot listen on {host}:{port}: {reason}") from None
        app = _Refusing(DomainDispatcherApplication(create_backend_app))
        handler = _request_handler(log)
        try:
            server = make_server(host, port, app, threaded=True, request_handler=handler, fd=listening.fileno())
        finally:
            listening.close()  # the server holds its own duplicate of the socket
        return cls(server, handler, log)

    def set_log(self, log: TextIO | None) -> None:
        """Where the access log and the poller's failures go (the functions' log)."""
        self._log = log
        self._handler.log_stream = log

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def delivered(self) -> int:
        """Stream records of served requests delivered by the poller so far."""
        return 0 if self._poller is None else self._poller.delivered

    def serve(self, runtime: InProcessLambdaRuntime) -> None:
        """Answer requests (a thread per request) and deliver their stream records through ``runtime``."""
        if self._serving is not None:
            return
        runtime.accept_deferred_streams()
        self._runtime = runtime
        self._poller = _StreamPoller(runtime, self._log)
        self._poller.start()
        self._serving = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_S},
            name="sfsync-endpoint",
            daemon=True,
        )
        self._serving.start()

    def close(self) -> None:
        """Stop answering, deliver what served requests left queued, release the port."""
        if self._serving is not None:
            self._server.shutdown()
            self._serving.join(timeout=60)
            self._serving = None
        if self._poller is not None:
            self._poller.stop()
            self._poller = None
        if self._runtime is not None:
            self._runtime.stop_deferred_streams()
            self._runtime = None
        self._server.server_close()

    def __enter__(self) -> LocalEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def endpoint_banner(url: str, *, region: str, tables: Mapping[str, str], look_at: str) -> str:
    """What demo and run print at start: the endpoint, region, credentials, table names, one command."""
    width = max(len(logical) for logical in tables) if tables else 0
    lines = [
        f"local AWS endpoint: {url}  (region {region}; any credentials, e.g. "
        f"AWS_ACCESS_KEY_ID={ACCESS_KEY_ID} AWS_SECRET_ACCESS_KEY={SECRET_ACCESS_KEY})",
        "  DynamoDB tables (edits of Lead, Contact, Campaign, CampaignMember items go back to Salesforce):",
        *(f"    {logical.ljust(width)}  {name}" for logical, name in tables.items()),
        "  look at the copy:",
        f"    {look_command(url, region=region, table=look_at)}",
    ]
    return "\n".join(lines)


def aws_environment(region: str) -> str:
    return f"AWS_ACCESS_KEY_ID={ACCESS_KEY_ID} AWS_SECRET_ACCESS_KEY={SECRET_ACCESS_KEY} AWS_DEFAULT_REGION={region}"


def look_command(url: str, *, region: str, table: str) -> str:
    """A ready-to-paste AWS CLI command that shows a few items of ``table``."""
    return f"{aws_environment(region)} aws dynamodb scan --table-name {table} --max-items 3 --endpoint-url {url}"
