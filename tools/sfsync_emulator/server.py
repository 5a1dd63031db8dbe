"""The emulator's WSGI application: transport, auth, limits, faults, routing, request log.

Every request goes through one pipeline (:meth:`EmulatorApp.handle`):

1. path normalised (trailing slash dropped, §13.3) and matched against the route map;
   unknown path → 404, wrong method → 405, both in the §0.4 array form;
2. ``/__admin/...`` (loopback only, no auth, not counted; see :meth:`EmulatorApp.check_admin`)
   and the OAuth endpoints (not counted) short-circuit; every other data route needs
   ``Authorization: Bearer|OAuth <token>`` (Bulk 1.0: ``X-SFDC-Session: <token>``), else 401
   ``INVALID_SESSION_ID``;
3. the daily API allocation is checked (403 ``REQUEST_LIMIT_EXCEEDED``) and the call counted;
4. fault rules fire (:mod:`.faults`);
5. the resource handler runs (:mod:`.rest`, :mod:`.asyncapi`); ``ApiError`` / ``DmlError``
   become array bodies (Bulk 1.0 routes: Bulk 1.0's ``exceptionCode`` body, :mod:`.asyncapi`).

Every response carries ``Sforce-Limit-Info: api-usage=N/M`` (§7.2, §13.10).
"""

from __future__ import annotations

import collections
import ipaddress
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import BaseConverter, Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from .auth import OAuthError, TokenService, bearer_token
from .cdc import CallOrigin
from .errors import ApiError, DmlError, invalid_session, request_limit_exceeded
from .faults import FaultInjector, FaultRule

if TYPE_CHECKING:
    import ssl
    from wsgiref.types import StartResponse, WSGIEnvironment

    from .bulk import BulkService
    from .bulk1 import BulkV1Service
    from .store import Org

JSON_CT = "application/json;charset=UTF-8"
DAY_MS = 86_400_000
UNCOUNTED_FAMILIES = frozenset({"auth", "admin", "versions"})


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    resp = Response(json.dumps(body, separators=(",", ":")), status=status, content_type=JSON_CT)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def raw_json_response(text: str, status: int = 200) -> Response:
    """A JSON response from text that is JSON already (a query page rendered by SQLite)."""
    return Response(text, status=status, content_type=JSON_CT)


def error_response(err: ApiError) -> Response:
    return json_response(err.body(), err.status)


def no_content() -> Response:
    return Response(status=204)


# --------------------------------------------------------------------------------------------
# API-call accounting and the request log
# --------------------------------------------------------------------------------------------


class ApiCounter:
    """API calls per rolling 24 h of the org clock, plus cumulative counts per family."""

    def __init__(self, now_ms: Callable[[], int]) -> None:
        self._now_ms = now_ms
        self._window: collections.deque[int] = collections.deque()
        self._by_family: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def _prune(self, now: int) -> None:
        while self._window and self._window[0] <= now - DAY_MS:
            self._window.popleft()

    def record(self, family: str) -> int:
        now = self._now_ms()
        with self._lock:
            self._prune(now)
            self._window.append(now)
            self._by_family[family] += 1
            return len(self._window)

    def used(self) -> int:
        now = self._now_ms()
        with self._lock:
            self._prune(now)
            return len(self._window)

    def by_family(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_family)

    def total(self, family: str | None = None) -> int:
        with self._lock:
            if family is None:
                return sum(self._by_family.values())
            return self._by_family.get(family, 0)

    def reset(self) -> None:
        with self._lock:
            self._window.clear()
            self._by_family.clear()


class RequestLog:
    def __init__(self, maxlen: int = 20_000) -> None:
        self._entries: collections.deque[dict[str, Any]] = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# --------------------------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------------------------


class ApiVersionConverter(BaseConverter):
    """``v59.0`` in the path → ``"59.0"``."""

    regex = r"v\d{1,3}\.\d"

    def to_python(self, value: str) -> str:
        return value[1:]

    def to_url(self, value: Any) -> str:
        return f"v{value}"


@dataclass
class Call:
    """One request as a resource handler sees it."""

    request: Request
    args: dict[str, Any]
    internal: bool = False  # a /composite subrequest
    _json: Any = field(default=None, repr=False)
    _json_loaded: bool = field(default=False, repr=False)

    @property
    def version(self) -> str:
        return str(self.args.get("version", "59.0"))

    @property
    def base(self) -> str:
        """``/services/data/vNN.N`` of this request."""
        return f"/services/data/v{self.version}"

    def json(self) -> Any:
        if not self._json_loaded:
            raw = self.request.get_data(cache=True)
            if not raw.strip():
                raise ApiError(400, "JSON_PARSER_ERROR", "The request body is empty.")
            try:
                self._json = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise ApiError(400, "JSON_PARSER_ERROR", f"Unexpected character in request body: {exc}") from exc
            self._json_loaded = True
        return self._json

    @property
    def call_origin(self) -> CallOrigin:
        """The origin of this call's writes: REST at the request's API version, plus the client id."""
        return CallOrigin("rest", self.version, self.origin)

    @property
    def origin(self) -> str | None:
        """The client id of ``Sforce-Call-Options: client=X`` (CDC ``changeOrigin``, §6.7, §9.3)."""
        options = self.request.headers.get("Sforce-Call-Options", "")
        for part in options.split(","):
            key, _, value = part.strip().partition("=")
            if key.strip().lower() == "client" and value.strip():
                return value.strip()
        return None


Handler = Callable[[Call], Response]


@dataclass(frozen=True)
class Route:
    rule: str
    methods: tuple[str, ...]
    family: str
    handler: Handler
    auth: bool = True
    api: str = "rest"  # "async": Bulk API 1.0 (X-SFDC-Session auth, Bulk 1.0 error bodies)


# --------------------------------------------------------------------------------------------
# The application
# --------------------------------------------------------------------------------------------


class EmulatorApp:
    """WSGI app serving one org."""

    def __init__(
        self,
        org: Org,
        bulk: BulkService,
        tokens: TokenService,
        *,
        faults: FaultInjector | None = None,
        instance_url: str | None = None,
        bulk1: BulkV1Service | None = None,
    ) -> None:
        from .admin import Admin
        from .asyncapi import AsyncApi, AsyncVersionConverter
        from .bulk1 import BulkV1Service
        from .rest import RestApi

        self.org = org
        self.bulk = bulk
        self.bulk1 = bulk1 or BulkV1Service(org, bulk)
        self.tokens = tokens
        self.faults = faults or FaultInjector()
        self.counter = ApiCounter(org.clock.now_ms)
        self.log = RequestLog()
        self.instance_url = instance_url
        self.rest = RestApi(self)
        self.asyncapi = AsyncApi(self)
        self.admin = Admin(self)
        routes = [*self._auth_routes(), *self.rest.routes(), *self.asyncapi.routes(), *self.admin.routes()]
        self._routes: dict[str, Route] = {}
        rules = []
        for i, route in enumerate(routes):
            endpoint = f"r{i}"
            self._routes[endpoint] = route
            rules.append(Rule(route.rule, endpoint=endpoint, methods=list(route.methods)))
        self._map = Map(
            rules, converters={"ver": ApiVersionConverter, "asyncver": AsyncVersionConverter}, strict_slashes=False
        )

    # -- token endpoint --------------------------------------------------------------------

    def _auth_routes(self) -> list[Route]:
        return [
            Route("/services/oauth2/token", ("POST",), "auth", self._token, auth=False),
            Route("/services/oauth2/authorize", ("GET", "POST"), "auth", self._authorize, auth=False),
            Route("/services/oauth2/revoke", ("GET", "POST"), "auth", self._revoke, auth=False),
            Route("/services/Soap/u/<soap_version>", ("POST",), "auth", self._soap_login, auth=False),
            Route("/id/<org_id>/<user_id>", ("GET",), "auth", self._identity),
        ]

    def _soap_login(self, call: Call) -> Response:
        status, xml = self.tokens.soap_login(
            call.request.get_data(), self.base_url(call.request), str(call.args["soap_version"])
        )
        return Response(xml, status=status, content_type="text/xml;charset=UTF-8")

    def _identity(self, call: Call) -> Response:
        cfg = self.tokens.config
        if call.args["org_id"] != cfg.org_id or call.args["user_id"] != cfg.user_id:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        base = self.base_url(call.request)
        return json_response(
            {
                "id": f"{base}/id/{cfg.org_id}/{cfg.user_id}",
                "organization_id": cfg.org_id,
                "user_id": cfg.user_id,
                "username": cfg.username,
                "active": True,
                "user_type": "STANDARD",
                "urls": {
                    "rest": f"{base}/services/data/v{{version}}/",
                    "sobjects": f"{base}/services/data/v{{version}}/sobjects/",
                    "query": f"{base}/services/data/v{{version}}/query/",
                },
            }
        )

    def _token(self, call: Call) -> Response:
        req = call.request
        try:
            body = self.tokens.token(req.form, req.headers.get("Authorization"), self.base_url(req))
        except OAuthError as exc:
            return json_response(exc.body(), exc.status)
        return json_response(body)

    def _authorize(self, call: Call) -> Response:
        """The web server flow's authorization: no login page, the integration user approves."""
        try:
            location = self.tokens.authorize(call.request.values)
        except OAuthError as exc:
            return json_response(exc.body(), exc.status)
        resp = Response(status=302)
        resp.headers["Location"] = location
        resp.headers["Cache-Control"] = "no-store"
        return resp

    def _revoke(self, call: Call) -> Response:
        try:
            self.tokens.revoke(call.request.values)
        except OAuthError as exc:
            return json_response(exc.body(), exc.status)
        return Response(status=200)

    def base_url(self, request: Request) -> str:
        return self.instance_url or request.host_url.rstrip("/")

    # -- limits ------------------------------------------------------------------------------

    @property
    def daily_limit(self) -> int:
        return int(self.org.config.daily_api_limit)

    def limit_info(self) -> str:
        return f"api-usage={self.counter.used()}/{self.daily_limit}"

    # -- WSGI ------------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        response = self.handle(request)
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        started = time.monotonic()
        family = "unknown"
        failure: str | None = None
        try:
            route, call = self._match(request)
            family = route.family
            response = self._run(route, call)
        except ApiError as err:
            response = self.error(err, request)
        except (ValueError, LookupError, TypeError, sqlite3.Error) as exc:
            # an emulator bug or an input no validation caught: answer like Salesforce does
            # (500 UNKNOWN_EXCEPTION, array form) and keep the cause in the request log
            failure = f"{type(exc).__name__}: {exc}"
            response = self.error(
                ApiError(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this ErrorId."),
                request,
            )
        response.headers["Sforce-Limit-Info"] = self.limit_info()
        self.log.add(
            {
                "method": request.method,
                "path": request.path,
                "query": request.query_string.decode("latin-1"),
                "status": response.status_code,
                "family": family,
                "timestamp": self.org.clock.now_ms(),
                "duration_ms": int((time.monotonic() - started) * 1000),
                "error": failure,
            }
        )
        return response

    def error(self, err: ApiError, request: Request) -> Response:
        """``err`` in the shape of the API the request addressed (REST array; Bulk 1.0 error)."""
        from .asyncapi import is_async_path

        if is_async_path(request.path):
            return self.asyncapi.error_response(err, request)
        return error_response(err)

    def _match(self, request: Request) -> tuple[Route, Call]:
        path = request.path.rstrip("/") or "/"
        adapter = self._map.bind("emulator", path_info="/")
        try:
            endpoint, args = adapter.match(path, method=request.method)
        except MethodNotAllowed as exc:
            allowed = ",".join(sorted(exc.valid_methods or ()))
            raise ApiError(
                405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed. Allowed are {allowed}"
            ) from exc
        except NotFound as exc:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist") from exc
        return self._routes[str(endpoint)], Call(request=request, args=dict(args))

    def _run(self, route: Route, call: Call) -> Response:
        if route.family == "admin":
            self.check_admin(call.request)
            return self._invoke(route, call)
        if route.auth:
            token = self._session_token(route, call.request)
            if token is None or self.tokens.store.validate(token) is None:
                raise invalid_session()
        if route.family not in UNCOUNTED_FAMILIES:
            if self.counter.used() >= self.daily_limit:
                raise request_limit_exceeded()
            self.counter.record(route.family)
            fired = self._apply_faults(route.family, call.request.method)
            response = self._invoke(route, call)
            lost = next((rule for rule in fired if rule.kind == "lost_response"), None)
            return response if lost is None else self.error(lost.lost_response_error(), call.request)
        return self._invoke(route, call)

    @staticmethod
    def _session_token(route: Route, request: Request) -> str | None:
        """The access token of a request: ``Authorization: Bearer|OAuth``; Bulk 1.0 also (first)
        ``X-SFDC-Session``."""
        if route.api == "async":
            session = request.headers.get("X-SFDC-Session", "").strip()
            if session:
                return bearer_token(session) or session
        return bearer_token(request.headers.get("Authorization"))

    def check_admin(self, request: Request) -> None:
        """Refuse (403) an admin request a web page could have sent: the admin API answers only
        requests from a loopback address, addressed to a loopback host (no DNS rebinding), with
        no ``Origin`` other than the emulator's own, and with a body only as
        ``Content-Type: application/json`` (a cross-origin page can send text/plain or form
        bodies without a CORS preflight, never JSON)."""
        if not _is_loopback(request.remote_addr):
            raise ApiError(403, "FORBIDDEN", "the admin API is served on loopback only")
        host = urlsplit(f"//{request.host}").hostname if request.host else None
        if host is not None and not (host == "localhost" or _is_loopback(host)):
            raise ApiError(
                403, "FORBIDDEN", f"the admin API answers only requests addressed to a loopback host, not {host}"
            )
        origin = request.headers.get("Origin")
        if origin is not None and origin.rstrip("/") != self.own_origin():
            raise ApiError(403, "FORBIDDEN", f"the admin API refuses cross-origin requests (Origin: {origin[:200]})")
        has_body = bool(request.get_data(cache=True)) or request.headers.get("Transfer-Encoding") is not None
        if (has_body or request.headers.get("Content-Type")) and request.mimetype != "application/json":
            raise ApiError(
                403,
                "FORBIDDEN",
                "the admin API takes JSON bodies only: send Content-Type: application/json "
                f"(got {request.content_type or 'none'})",
            )

    def own_origin(self) -> str | None:
        """``scheme://host:port`` of the emulator's instance URL (None when not serving)."""
        if not self.instance_url:
            return None
        parts = urlsplit(self.instance_url)
        return f"{parts.scheme}://{parts.netloc}"

    def _apply_faults(self, family: str, method: str) -> list[FaultRule]:
        fired = self.faults.fire(family, method, self.org.rng)
        for rule in fired:
            self.apply_fault(rule)
        return fired

    def apply_fault(self, rule: FaultRule) -> None:
        err = rule.error()
        if err is not None:
            raise err
        if rule.kind == "slow":
            time.sleep(rule.delay_s)
        elif rule.kind == "lock_row":
            from .rest import arm_lock_row

            arm_lock_row(self.org, rule.records)
        elif rule.kind == "bulk_job_failed":
            self.bulk.fail_next_jobs(rule.records, rule.message or "emulated job failure")

    def _invoke(self, route: Route, call: Call) -> Response:
        try:
            return route.handler(call)
        except DmlError as exc:
            return error_response(exc.as_api_error())

    # -- internal dispatch (composite subrequests) --------------------------------------------

    def dispatch_internal(
        self, parent: Request, method: str, url: str, body: Any, headers: Mapping[str, Any] | None = None
    ) -> Response:
        """Run one subrequest through the router without auth, counting or faults.

        The subrequest inherits the parent's ``Sforce-*`` headers plus its own ``httpHeaders``.
        """
        parts = urlsplit(url)
        merged = {k: v for k, v in parent.headers.items() if k.lower().startswith("sforce-")}
        merged.update({str(k): str(v) for k, v in (headers or {}).items()})
        builder = EnvironBuilder(
            path=parts.path,
            query_string=parts.query,
            method=method.upper(),
            headers=list(merged.items()),
            data=json.dumps(body) if body is not None else None,
            content_type="application/json" if body is not None else None,
            base_url=parent.host_url,
        )
        request = Request(builder.get_environ())
        try:
            route, call = self._match(request)
            if route.family in ("admin", "auth", "bulk") or not route.auth or route.api != "rest":
                raise ApiError(
                    400, "INVALID_API_INPUT", f"The URL {parts.path} is not supported in a composite request"
                )
            call.internal = True
            return self._invoke(route, call)
        except ApiError as err:
            return error_response(err)
        except (ValueError, LookupError, TypeError, sqlite3.Error) as exc:
            return error_response(ApiError(500, "UNKNOWN_EXCEPTION", f"An unexpected error occurred: {exc}"))


def _is_loopback(addr: str | None) -> bool:
    if not addr:
        return True  # in-process (werkzeug test client)
    try:
        return ipaddress.ip_address(addr.strip("[]")).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------
# Serving
# --------------------------------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    """No per-request access log on stderr (the app keeps its own request log).

    The ``Date`` response header comes from the org's virtual clock, as a real org's comes from
    its own clock: clients that read Salesforce's "now" from it see the time the org stamps with.
    """

    # HTTP/1.1: persistent connections (no TCP + TLS handshake per call, as with a real org);
    # responses without a length (Bulk result streams) go out chunked.
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # no Nagle: a response's last segment must not wait for the client's delayed ACK
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None

    def date_time_string(self, timestamp: float | None = None) -> str:
        app = self.server.app  # type: ignore[attr-defined]
        if timestamp is None and isinstance(app, EmulatorApp):
            timestamp = app.org.clock.now_ms() / 1000
        return super().date_time_string(timestamp)


#: How often a background server's loop checks for stop() (socketserver's default is 0.5 s).
SHUTDOWN_POLL_S = 0.05


class ServerThread:
    """A threaded werkzeug server on a background thread."""

    def __init__(self, app: EmulatorApp, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        self.server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, ssl_context=ssl_context, request_handler=_QuietHandler
        )
        self.host = host
        self.port = int(self.server.server_port)
        # a short poll: stop() waits for the serving loop to see the request (0.5 s by default, per emulator the
        # test suite starts and stops)
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_S},
            name="sfsync-emulator",
            daemon=True,
        )
        self._serving = False

    def start(self) -> None:
        self._serving = True
        self._thread.start()

    def serve_forever(self) -> None:
        self._serving = True
        self.server.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the socket (also for a server that never served: no wait)."""
        if self._serving:
            self.server.shutdown()
            self._serving = False
        self.server.server_close()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
