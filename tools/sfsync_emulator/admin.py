"""The emulator-only admin API: the same operations in Python (:class:`Admin`) and over HTTP.

HTTP: ``POST /__admin/<operation>`` with a JSON object of keyword arguments (``GET`` for the
read-only operations), no auth, not counted as API calls.  Only from loopback, to a loopback
host, with no foreign ``Origin`` and JSON bodies only (``EmulatorApp.check_admin``): a web
page cannot drive it.  The answer is
``{"result": <value>}``; bad input → 400 ``[{"errorCode": "INVALID_ADMIN_REQUEST", ...}]``.

Operations: seeding, DML as a Salesforce user (not the API user: no changeOrigin), the record
lifecycle (delete, undelete, hard delete, merge, convert, archive, system-process update, late
commit, sharing, recycle bin), profile/FLS changes, the clock, token expiry, faults, the request
log, API-call counters, CDC events and injection, Bulk job timing.
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Response

from .errors import ApiError, DmlError
from .faults import FaultRule
from .ids import to18
from .schema import parse_datetime_ms
from .server import Call, Route, json_response

if TYPE_CHECKING:
    from .server import EmulatorApp
    from .store import Org

READ_ONLY = frozenset(
    {"clock_get", "faults", "request_log", "api_calls", "cdc_events", "relay_events", "tokens", "limits"}
)
DEFAULT_RELAY_CHANNEL = to18("0YL5g0000000001")  # the Event Relay config id in envelope ``source``


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if hasattr(value, "as_dict"):
        return _jsonable(value.as_dict())
    if hasattr(value, "cometd"):
        return _jsonable(value.cometd())
    if hasattr(value, "__dict__"):
        return _jsonable({k: v for k, v in vars(value).items() if not k.startswith("_")})
    return str(value)


class Admin:
    """Admin operations over one running app (org, tokens, faults, counters, log, bulk)."""

    def __init__(self, app: EmulatorApp) -> None:
        self.app = app

    @property
    def org(self) -> Org:
        return self.app.org

    # -- HTTP -------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [Route("/__admin/<op>", ("GET", "POST"), "admin", self._http, auth=False)]

    def operations(self) -> list[str]:
        skip = {"routes", "operations", "org"}
        return sorted(
            n for n, v in vars(Admin).items() if inspect.isfunction(v) and not n.startswith("_") and n not in skip
        )

    def _http(self, call: Call) -> Response:
        op = call.args["op"]
        if op.startswith("_") or op not in self.operations():
            raise ApiError(404, "NOT_FOUND", f"unknown admin operation {op!r}; known: {', '.join(self.operations())}")
        if call.request.method == "GET" and op not in READ_ONLY:
            raise ApiError(405, "METHOD_NOT_ALLOWED", f"admin operation {op!r} needs POST")
        kwargs: dict[str, Any] = dict(call.request.args.items()) if call.request.method == "GET" else {}
        if call.request.method == "POST" and call.request.get_data().strip():
            body = call.json()
            if not isinstance(body, dict):
                raise ApiError(400, "INVALID_ADMIN_REQUEST", "the body must be a JSON object of keyword arguments")
            kwargs = body
        fn: Callable[..., Any] = getattr(self, op)
        try:
            result = fn(**kwargs)
        except TypeError as exc:
            raise ApiError(400, "INVALID_ADMIN_REQUEST", f"{op}: {exc}") from exc
        except ValueError as exc:
            raise ApiError(400, "INVALID_ADMIN_REQUEST", f"{op}: {exc}") from exc
        except DmlError as exc:
            raise exc.as_api_error() from exc
        return json_response({"result": _jsonable(result)})

    # -- data ---------------------------------------------------------------------------------

    def seed(self, seed: int = 7, records: int = 100) -> dict[str, int]:
        from .generator import generate_org

        return generate_org(self.org, seed=int(seed), records=int(records))

    def create(self, obj: str, values: dict[str, Any], user_id: str | None = None) -> str:
        return self.org.create(obj, values, as_api=False, user_id=user_id)

    def update(self, obj: str, id: str, values: dict[str, Any], user_id: str | None = None) -> None:
        self.org.update(obj, id, values, as_api=False, user_id=user_id)

    def mass_update(self, obj: str, ids: list[str], values: dict[str, Any]) -> None:
        self.org.mass_update(obj, ids, values)

    def delete(self, obj: str, id: str) -> None:
        self.org.delete(obj, id, as_api=False)

    def undelete(self, obj: str, id: str) -> None:
        self.org.undelete(obj, id, as_api=False)

    def hard_delete(self, obj: str, id: str) -> None:
        self.org.hard_delete(obj, id)

    def empty_recycle_bin(self, obj: str | None = None) -> Any:
        return self.org.empty_recycle_bin(obj)

    def merge(self, obj: str, master_id: str, loser_ids: list[str], master_values: dict[str, Any] | None = None) -> Any:
        return self.org.merge(obj, master_id, list(loser_ids), master_values=master_values)

    def convert_lead(self, lead_id: str, **options: Any) -> Any:
        return self.org.convert_lead(lead_id, **options)

    def archive(self, obj: str, id: str) -> None:
        self.org.archive(obj, id)

    def system_update(self, obj: str, id: str, values: dict[str, Any]) -> None:
        self.org.system_update(obj, id, values)

    def late_commit(
        self,
        obj: str,
        values: dict[str, Any],
        record_id: str | None = None,
        stamp_ago_s: float = 60.0,
        visible_after_s: float = 0.0,
    ) -> Any:
        return self.org.late_commit(
            obj, values, record_id=record_id, stamp_ago_s=float(stamp_ago_s), visible_after_s=float(visible_after_s)
        )

    def set_hidden(self, obj: str, id: str, hidden: bool = True) -> None:
        self.org.set_hidden(obj, id, bool(hidden))

    def get(self, obj: str, id: str, include_deleted: bool = True) -> Any:
        return self.org.get(obj, id, include_deleted=bool(include_deleted), as_api=False)

    def add_duplicate_rule(self, obj: str, fields: list[str]) -> None:
        self.org.add_duplicate_rule(obj, tuple(fields))

    def clear_duplicate_rules(self, obj: str | None = None) -> None:
        self.org.clear_duplicate_rules(obj)

    def add_validation_rule(self, obj: str, name: str, field: str, equals: Any, message: str) -> None:
        """A validation rule failing records whose ``field`` equals ``equals`` (HTTP-friendly form
        of :meth:`Org.add_validation_rule`, which takes any predicate)."""

        def predicate(record: dict[str, Any]) -> bool:
            return bool(record.get(field) == equals)

        self.org.add_validation_rule(obj, name, predicate, message, field)

    def remove_validation_rule(self, obj: str, name: str) -> None:
        self.org.remove_validation_rule(obj, name)

    # -- profile / FLS ----------------------------------------------------------------------

    def hide_field(self, obj: str, field: str) -> None:
        self.org.hide_field(obj, field)

    def show_field(self, obj: str, field: str) -> None:
        self.org.show_field(obj, field)

    def set_field_readonly(self, obj: str, field: str, readonly: bool = True) -> None:
        self.org.set_field_readonly(obj, field, bool(readonly))

    def hide_object(self, obj: str) -> None:
        self.org.hide_object(obj)

    def show_object(self, obj: str) -> None:
        self.org.show_object(obj)

    # -- clock ------------------------------------------------------------------------------

    def clock_get(self) -> dict[str, Any]:
        clock = self.org.clock
        now = clock.now_ms()
        return {"now_ms": now, "now": clock.now().isoformat(), "running": clock.running}

    def clock_freeze(self) -> dict[str, Any]:
        self.org.clock.freeze()
        return self.clock_get()

    def clock_run(self, rate: float | None = None) -> dict[str, Any]:
        self.org.clock.run(float(rate) if rate is not None else None)
        return self.clock_get()

    def clock_advance(self, seconds: float) -> dict[str, Any]:
        self.org.clock.advance(float(seconds))
        return self.clock_get()

    def clock_set(self, when: str | int) -> dict[str, Any]:
        target = when if isinstance(when, int) else parse_datetime_ms(str(when))
        self.org.clock.set(target)
        return self.clock_get()

    # -- auth, faults, accounting -------------------------------------------------------------

    def expire_tokens(self) -> int:
        return self.app.tokens.expire_all_tokens()

    def set_token_idle_timeout(self, seconds: float | None = None) -> None:
        """Expire access tokens after ``seconds`` of org-clock idleness (None: never)."""
        self.app.tokens.store.idle_timeout_s = float(seconds) if seconds is not None else None

    def tokens(self) -> int:
        return self.app.tokens.store.count()

    def add_fault(self, kind: str, **options: Any) -> dict[str, Any]:
        rule = self.app.faults.add(FaultRule(kind=kind, **options))
        return rule.as_dict()

    def clear_faults(self, rule_id: int | None = None) -> None:
        self.app.faults.clear(int(rule_id) if rule_id is not None else None)
        if rule_id is None:
            self.org.dml_fault = None

    def faults(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.app.faults.rules()]

    def request_log(self, limit: int | None = None) -> list[dict[str, Any]]:
        entries = self.app.log.entries()
        return entries[-int(limit) :] if limit else entries

    def clear_request_log(self) -> None:
        self.app.log.clear()

    def api_calls(self, family: str | None = None) -> dict[str, Any]:
        counter = self.app.counter
        return {
            "used": counter.used(),
            "limit": self.app.daily_limit,
            "total": counter.total(family),
            "by_family": counter.by_family(),
        }

    def reset_counters(self) -> None:
        self.app.counter.reset()

    def limits(self) -> dict[str, int]:
        return {"used": self.app.counter.used(), "max": self.app.daily_limit}

    # -- CDC and Bulk ---------------------------------------------------------------------

    def cdc_events(self, since: int = 0) -> list[dict[str, Any]]:
        return [e.cometd() for e in self.org.cdc.since(int(since))]

    def inject_gap(self, obj: str, ids: list[str], change_type: str = "GAP_UPDATE") -> dict[str, Any]:
        return self.org.cdc.inject_gap(obj, list(ids), change_type).cometd()

    def inject_overflow(self, obj: str) -> dict[str, Any]:
        return self.org.cdc.inject_overflow(obj).cometd()

    def relay_events(self, since: int = 0, channel_id: str = DEFAULT_RELAY_CHANNEL) -> list[dict[str, Any]]:
        """The Event Relay → EventBridge envelopes (§9.6) of the retained events after ``since``."""
        return self.org.cdc.relay_envelopes(self.org.org_id, str(channel_id), since=int(since))

    def inject_duplicate(self, replay_id: int | None = None) -> dict[str, Any]:
        """Deliver a retained event again (at-least-once delivery); default: the latest event."""
        cdc = self.org.cdc
        if replay_id is None:
            retained = cdc.since(0)
            if not retained:
                raise ValueError("no change event to duplicate")
            event = retained[-1]
        else:
            event = cdc.event(int(replay_id))
        return cdc.inject_duplicate(event).cometd()

    def reorder_next(self, n: int = 2) -> None:
        """Deliver the next ``n`` change events to the sinks in reverse order (out-of-order delivery)."""
        self.org.cdc.reorder_next(int(n))

    def bulk_timing(self, in_progress_after_s: float = 0.0, complete_after_s: float = 0.0) -> dict[str, float]:
        from .bulk import JobTiming

        self.app.bulk.timing = JobTiming(float(in_progress_after_s), float(complete_after_s))
        return {"in_progress_after_s": float(in_progress_after_s), "complete_after_s": float(complete_after_s)}

    def bulk_result_rows(self, rows: int) -> dict[str, int]:
        """Rows per Bulk API 1.0 query result set (``/result/<id>``) of batches processed from now on."""
        rows = int(rows)
        if rows < 1:
            raise ValueError("rows must be >= 1")
        self.app.bulk1.result_rows = rows
        return {"rows": rows}

    def issue_refresh_token(self) -> str:
        """A refresh token for the integration user (``sfsync-emulator serve --print-refresh-token``)."""
        return self.app.tokens.issue_refresh_token()

    def fail_bulk_jobs(self, n: int = 1, message: str | None = None) -> None:
        if message:
            self.app.bulk.fail_next_jobs(int(n), message)
        else:
            self.app.bulk.fail_next_jobs(int(n))
