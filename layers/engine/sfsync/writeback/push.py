"""Stage 4, push: every Salesforce call of the write-back.

* Salesforce's current values before the decisions (:meth:`Push.retrieve`: one sObject Collections
  retrieve per 2000 records) and the masters of merged records (:meth:`Push.masters`);
* updates (:meth:`Push.updates`): values checked against describe, then sObject Collections PATCH
  calls of up to 200 records (several packed five at a time into one ``/composite`` call),
  ``UNABLE_TO_LOCK_ROW`` retried with back-off, a converted Lead's change sent to its Contact, a
  merged record's to its master;
* creates (:meth:`Push.creates`): by upsert on the external-id field, or through a create intent
  written before the call and looked for (SOQL) before a retry creates again;
* deletes (:meth:`Push.deletes`): composite DELETE subrequests.

Each SaveResult goes to :mod:`sfsync.writeback.settle`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sfsync.core import clock as sfclock
from sfsync.core.config import WriteBackOptions
from sfsync.core.exceptions import SalesforceUnavailable, UnstorableRecord
from sfsync.core.observability import logger
from sfsync.items.codec import item_value, salesforce_value
from sfsync.writeback.classify import (
    NOT_WRITTEN_TYPES,
    TEXT_TYPES,
    check_value,
    field_map,
    looks_like_salesforce_id,
    writable,
)
from sfsync.writeback.context import RunContext
from sfsync.writeback.decide import FieldDecision, ItemPlan, decide_merged
from sfsync.writeback.model import (
    CALL_OPTIONS_CLIENT,
    INTENT_LOOKBACK,
    LOCK_BACKOFF_SECONDS,
    LOCK_RETRIES,
    MAX_COLLECTION,
    MAX_COMPOSITE,
    MAX_COMPOSITE_COLLECTIONS,
    MAX_QUERY_IDS,
    MAX_RETRIEVE,
    RETRYABLE_CODES,
    StreamChange,
)
from sfsync.writeback.settle import Settle

#: A create's values by the change that asked for it.
PendingCreate = tuple[StreamChange, dict[str, Any]]


def _error_code(response: Mapping[str, Any]) -> str | None:
    body = response.get("body")
    if isinstance(body, list) and body and isinstance(body[0], dict):
        code = body[0].get("errorCode") or body[0].get("statusCode")
        return str(code) if code else None
    return None


class Push:
    """The push stage of one run (see the module docstring)."""

    def __init__(self, run: RunContext, settle: Settle) -> None:
        self.run = run
        self.settle = settle

    # reads before the decisions ---------------------------------------------------------------

    def retrieve(
        self, obj: str, ids: list[str], fields: list[str], describe: Mapping[str, Mapping[str, Any]]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, UnstorableRecord]]:
        """Salesforce's current values of ``fields`` (+ the stamp, a Lead's conversion) as item values.

        A record holding a value DynamoDB cannot hold (the codec's rules, :func:`item_value`) is
        returned apart with the reason: its change is refused, not judged against a value the item
        could never hold.
        """
        if not ids:
            return {}, {}
        names = list(dict.fromkeys(["Id", "SystemModstamp", *fields]))
        conversion = self.run.settings.registry.get(obj).converts_to
        if conversion is not None:
            names += [n for n in (conversion.flag, conversion.target_id) if n in describe and n not in names]
        rows: dict[str, dict[str, Any]] = {}
        unstorable: dict[str, UnstorableRecord] = {}
        for start in range(0, len(ids), MAX_RETRIEVE):
            chunk = ids[start : start + MAX_RETRIEVE]
            for record_id, row in zip(chunk, self.run.sf.retrieve(obj, chunk, names), strict=False):
                if row is None:
                    continue
                try:
                    rows[record_id] = {
                        n: item_value(n, v, is_datetime=describe.get(n, {}).get("type") == "datetime")
                        for n, v in row.items()
                        if n != "attributes"
                    }
                except UnstorableRecord as exc:
                    unstorable[record_id] = exc
        return rows, unstorable

    def masters(self, obj: str, ids: list[str]) -> dict[str, str]:
        """Deleted records' masters (``MasterRecordId``: the record they were merged into)."""
        found: dict[str, str] = {}
        for start in range(0, len(ids), MAX_QUERY_IDS):
            chunk = [i for i in ids[start : start + MAX_QUERY_IDS] if looks_like_salesforce_id(i)]
            if not chunk:
                continue
            quoted = ", ".join(f"'{i}'" for i in chunk)
            soql = f"SELECT Id, IsDeleted, MasterRecordId FROM {obj} WHERE Id IN ({quoted})"
            for page in self.run.sf.query_pages(soql, include_deleted=True):
                for row in page.records:
                    if row.get("MasterRecordId"):
                        found[str(row["Id"])] = str(row["MasterRecordId"])
        return found

    # redirects --------------------------------------------------------------------------------

    def redirect_merged(self, obj: str, gone: list[ItemPlan]) -> None:
        """Deleted in Salesforce: a merge loser's change goes to the master; anything else is refused."""
        if not gone:
            return
        masters: dict[str, str] = {}
        unknown = []
        for plan in gone:
            merged = (plan.current or {}).get("_merged_into")
            if isinstance(merged, str) and merged:
                masters[plan.key] = merged
            else:
                unknown.append(plan.key)
        masters.update(self.masters(obj, unknown))
        for plan in gone:
            master = masters.get(plan.key)
            if not master:
                self.settle.refuse_plan(plan, "ENTITY_IS_DELETED", "entity is deleted", [])
                continue
            decide_merged(plan, master)

    def redirect_converted(self, plans: list[ItemPlan]) -> list[ItemPlan]:
        """A converted record's pushes (a Lead's) go to the record it became (its Contact: the registry's
        :class:`~sfsync.core.registry.Conversion`): fields of the same name that record can update."""
        if not plans:
            return []
        source, target = plans[0].obj.lower(), str(plans[0].target_obj)
        target_fields = field_map(self.run.sf, target)
        ready = []
        for plan in plans:
            if not plan.target_id:
                reason = f"converted {source} without a {target.lower()}"
                self.settle.refuse_plan(plan, "CANNOT_UPDATE_CONVERTED_LEAD", reason, [])
                continue
            kept: dict[str, FieldDecision] = {}
            for name, decision in plan.decisions.items():
                if decision.action != "push":
                    continue
                why = writable(target_fields, name, create=False)
                if why is None:
                    kept[name] = decision
                else:
                    for change in plan.changes:
                        self.settle.reject(plan.obj, change, name, f"{source} is converted and {target} {why}")
            plan.decisions = kept
            plan.redirect_note = f"{source} converted to {target} {plan.target_id}"
            if kept:
                ready.append(plan)
        return ready

    # updates ----------------------------------------------------------------------------------

    def updates(
        self,
        plans: list[ItemPlan],
        describe: Mapping[str, Mapping[str, Any]],
        options: WriteBackOptions,
    ) -> None:
        """Check, send and settle the decided updates (retrying locked rows inside the invocation)."""
        run = self.run
        to_send: list[ItemPlan] = []
        for plan in plans:
            if not plan.decisions:
                continue  # every change of this item was stale or already in Salesforce
            self.settle.conflicts(plan)
            target_describe = describe if plan.target_obj == plan.obj else field_map(run.sf, plan.target_obj)
            problems = [
                (name, problem)
                for name, value in plan.pushes().items()
                if (problem := check_value(name, value, target_describe.get(name, {}))) is not None
            ]
            if problems:
                # the malformed fields are refused (named); the record's other changes still go
                code = problems[0][1][0]
                message = "; ".join(p[1] for _, p in problems)
                bad = [name for name, _ in problems]
                values = {name: plan.decisions[name].value for name in bad}
                run.result.count(plan.obj).refused += 1
                for change in plan.changes:
                    plan.mark = self.settle.refuse(plan.obj, change, code, message, bad, values=values)
                for name in bad:
                    del plan.decisions[name]
            if plan.pushes():
                to_send.append(plan)
            elif plan.decisions:
                self.settle.accepted(plan)  # nothing to send: the base catches up (Salesforce wins / same values)
        attempt = 0
        while to_send:
            retry: list[ItemPlan] = []
            chunks = [to_send[start : start + MAX_COLLECTION] for start in range(0, len(to_send), MAX_COLLECTION)]
            for chunk, results in zip(chunks, self._send_updates(chunks, options), strict=True):
                for plan, outcome in zip(chunk, results, strict=False):
                    retry += self._outcome(plan, outcome, options)
            if not retry:
                return
            attempt += 1
            if attempt > LOCK_RETRIES:
                for plan in retry:
                    run.fail(plan.sequences, "UNABLE_TO_LOCK_ROW", "the record stayed locked")
                    logger.warning(
                        "write-back gave up retrying in this invocation",
                        extra={"object": plan.obj, "id": plan.key, "code": "UNABLE_TO_LOCK_ROW"},
                    )
                return
            run.result.count(retry[0].obj).retried += len(retry)
            run.deps.sleep(LOCK_BACKOFF_SECONDS * 2 ** (attempt - 1))
            to_send = retry

    def _send_updates(self, chunks: list[list[ItemPlan]], options: WriteBackOptions) -> list[list[dict[str, Any]]]:
        """SaveResults per chunk of <= 200 updates.

        One chunk: one sObject Collections PATCH.  Several: packed five at a time into one
        ``/composite`` request (five collections subrequests count as one API call, spec §6.9).
        """
        run = self.run
        bodies = [
            [
                {
                    "attributes": {"type": plan.target_obj},
                    "id": plan.target_id,
                    **{name: salesforce_value(value) for name, value in plan.pushes().items()},
                }
                for plan in chunk
            ]
            for chunk in chunks
        ]
        if len(bodies) == 1:
            run.result.api_calls += 1
            return [
                run.sf.collections(
                    "PATCH", bodies[0], False, call_options_client=CALL_OPTIONS_CLIENT, auto_assign=options.auto_assign
                )
            ]
        headers = {
            "Sforce-Call-Options": f"client={CALL_OPTIONS_CLIENT}",
            "Sforce-Auto-Assign": "TRUE" if options.auto_assign else "FALSE",
        }
        url = f"/services/data/v{run.sf.api_version}/composite/sobjects"
        results: list[list[dict[str, Any]]] = []
        for start in range(0, len(bodies), MAX_COMPOSITE_COLLECTIONS):
            group = bodies[start : start + MAX_COMPOSITE_COLLECTIONS]
            subrequests = [
                {
                    "method": "PATCH",
                    "url": url,
                    "referenceId": f"u{i}",
                    "body": {"allOrNone": False, "records": records},
                    "httpHeaders": headers,
                }
                for i, records in enumerate(group)
            ]
            responses = run.sf.composite(subrequests, all_or_none=False, headers=headers)
            run.result.api_calls += 1
            for records, response in zip(group, responses, strict=True):
                status = int(response.get("httpStatusCode", 500))
                body = response.get("body")
                if status < 300 and isinstance(body, list):
                    results.append(body)
                    continue
                if status >= 500:
                    raise SalesforceUnavailable(f"composite update subrequest answered HTTP {status}")
                first = body[0] if isinstance(body, list) and body and isinstance(body[0], dict) else {}
                error = {
                    "statusCode": str(first.get("errorCode") or first.get("statusCode") or f"HTTP_{status}"),
                    "message": str(first.get("message", "")),
                    "fields": first.get("fields") or [],
                }
                results.append([{"success": False, "errors": [error]} for _ in records])
        return results

    def _outcome(self, plan: ItemPlan, outcome: Mapping[str, Any], options: WriteBackOptions) -> list[ItemPlan]:
        """Handle one SaveResult; returns the plan when it is to be retried."""
        if outcome.get("success"):
            self.settle.accepted(plan, pushed=True)
            return []
        errors = outcome.get("errors") or [{}]
        first = errors[0] if isinstance(errors[0], dict) else {}
        code = str(first.get("statusCode") or "UNKNOWN")
        message = str(first.get("message") or "")
        fields = [str(f) for f in first.get("fields") or []]
        if code in RETRYABLE_CODES:
            return [plan]
        sf = self.run.sf
        registry = self.run.settings.registry
        conversion = registry.get(plan.target_obj).converts_to if plan.target_obj in registry else None
        if code == "CANNOT_UPDATE_CONVERTED_LEAD" and conversion is not None:
            rows = sf.retrieve(plan.target_obj, [plan.target_id], ["Id", conversion.target_id])
            became = (rows[0] or {}).get(conversion.target_id) if rows else None
            plan.target_obj, plan.target_id = conversion.target, str(became or "")
            redirected = self.redirect_converted([plan])
            if redirected:
                self.updates(redirected, field_map(sf, conversion.target), options)
            return []
        if code == "ENTITY_IS_DELETED" and plan.target_id == plan.key and plan.redirect_note is None:
            masters = self.masters(plan.obj, [plan.key])
            if plan.key in masters:
                plan.target_id = masters[plan.key]
                plan.redirect_note = f"merged into {plan.target_id}"
                self.updates([plan], field_map(sf, plan.obj), options)
                return []
        self.settle.refuse_plan(plan, code, message, fields)
        return []

    # creates ----------------------------------------------------------------------------------

    def creates(
        self,
        obj: str,
        pending: list[PendingCreate],
        options: WriteBackOptions,
        describe: Mapping[str, Mapping[str, Any]],
    ) -> None:
        """Create the records of ``pending`` exactly once (upsert, or through create intents)."""
        if options.external_id_field:
            self._upsert_creates(obj, pending, options, describe)
        else:
            self._intent_creates(obj, pending, options, describe)

    def _upsert_creates(
        self,
        obj: str,
        pending: list[PendingCreate],
        options: WriteBackOptions,
        describe: Mapping[str, Mapping[str, Any]],
    ) -> None:
        run = self.run
        ext = str(options.external_id_field)
        for start in range(0, len(pending), MAX_COLLECTION):
            chunk = pending[start : start + MAX_COLLECTION]
            records = [
                {**{n: salesforce_value(v) for n, v in values.items()}, ext: values.get(ext) or change.key}
                for change, values in chunk
            ]
            results = run.sf.upsert_collection(
                obj, ext, records, False, call_options_client=CALL_OPTIONS_CLIENT, auto_assign=options.auto_assign
            )
            run.result.api_calls += 1
            self._created(obj, chunk, results, describe)

    def _intent_creates(
        self,
        obj: str,
        pending: list[PendingCreate],
        options: WriteBackOptions,
        describe: Mapping[str, Mapping[str, Any]],
    ) -> None:
        run = self.run
        tables = run.tables
        fresh: list[PendingCreate] = []
        done: list[tuple[StreamChange, dict[str, Any], str]] = []
        for change, values in pending:
            intent = tables.get_intent(obj, change.key)
            if intent is not None and intent.get("status") == "created" and intent.get("salesforce_id"):
                done.append((change, values, str(intent["salesforce_id"])))
                continue
            if intent is not None:  # sent before, outcome unknown: look before creating again
                found = self._find_created(obj, values, str(intent.get("intent_at", "")), describe)
                if found is not None:
                    tables.intent_created(obj, change.key, found)
                    done.append((change, values, found))
                    continue
            fresh.append((change, values))
        if done:
            self._finish_creates(obj, done, describe)
        for start in range(0, len(fresh), MAX_COLLECTION):
            chunk = fresh[start : start + MAX_COLLECTION]
            intent_at = self._salesforce_now() - INTENT_LOOKBACK
            for change, _ in chunk:
                tables.put_intent(obj, change.key, intent_at)
            records = [
                {"attributes": {"type": obj}, **{n: salesforce_value(v) for n, v in values.items()}}
                for _, values in chunk
            ]
            try:
                results = run.sf.collections(
                    "POST", records, False, call_options_client=CALL_OPTIONS_CLIENT, auto_assign=options.auto_assign
                )
            except SalesforceUnavailable as exc:
                run.fail((change.sequence for change, _ in chunk), "CREATE_OUTCOME_UNKNOWN", str(exc))
                run.result.count(obj).retried += len(chunk)
                logger.warning("create outcome unknown; the retry looks before creating", extra={"object": obj})
                continue
            run.result.api_calls += 1
            self._created(obj, chunk, results, describe)

    def _salesforce_now(self) -> dt.datetime:
        server = self.run.sf.server_time()
        return server if server is not None else self.run.deps.clock.now()

    def _find_created(
        self, obj: str, values: Mapping[str, Any], intent_at: str, describe: Mapping[str, Mapping[str, Any]]
    ) -> str | None:
        """The record a lost create made, if any: same values, created at or after the intent."""
        terms = []
        for name, value in sorted(values.items()):
            f = describe.get(name, {})
            if not f.get("filterable") or value is None:
                continue
            if f.get("type") in TEXT_TYPES and isinstance(value, str):
                escaped = value.replace("\\", "\\\\").replace("'", "\\'")
                terms.append(f"{name} = '{escaped}'")
            elif f.get("type") == "boolean" and isinstance(value, bool):
                terms.append(f"{name} = {'true' if value else 'false'}")
        if not terms:
            raise SalesforceUnavailable(
                f"cannot tell whether an earlier create of {obj} succeeded (no filterable values)"
            )
        when = sfclock.to_soql(sfclock.parse_instant(intent_at)) if intent_at else "1970-01-01T00:00:00.000Z"
        soql = f"SELECT Id FROM {obj} WHERE CreatedDate >= {when} AND " + " AND ".join(terms[:8])
        soql += " ORDER BY CreatedDate LIMIT 1"
        for page in self.run.sf.query_pages(soql, include_deleted=False):
            for row in page.records:
                return str(row["Id"])
        return None

    def _created(
        self,
        obj: str,
        chunk: list[PendingCreate],
        results: list[dict[str, Any]],
        describe: Mapping[str, Mapping[str, Any]],
    ) -> None:
        run = self.run
        done: list[tuple[StreamChange, dict[str, Any], str]] = []
        for (change, values), outcome in zip(chunk, results, strict=False):
            if outcome.get("success") and outcome.get("id"):
                sf_id = str(outcome["id"])
                if run.settings.writeback.get(obj, WriteBackOptions()).external_id_field is None:
                    run.tables.intent_created(obj, change.key, sf_id)
                done.append((change, values, sf_id))
                continue
            errors = outcome.get("errors") or [{}]
            first = errors[0] if isinstance(errors[0], dict) else {}
            code = str(first.get("statusCode") or "UNKNOWN")
            if code in RETRYABLE_CODES:
                run.fail([change.sequence], code, str(first.get("message") or ""))
                run.result.count(obj).retried += 1
                continue
            run.result.count(obj).refused += 1
            self.settle.refuse(
                obj,
                change,
                code,
                str(first.get("message") or ""),
                [str(f) for f in first.get("fields") or []],
                values=values,
            )
        if done:
            self._finish_creates(obj, done, describe)

    def _finish_creates(
        self,
        obj: str,
        done: list[tuple[StreamChange, dict[str, Any], str]],
        describe: Mapping[str, Mapping[str, Any]],
    ) -> None:
        """Read the created records back (every field the sync keeps) and let settle put them."""
        names = [n for n, f in describe.items() if f.get("type") not in NOT_WRITTEN_TYPES and not f.get("calculated")]
        datetimes = frozenset(n for n in names if describe[n].get("type") == "datetime")
        rows: dict[str, dict[str, Any]] = {}
        ids = [sf_id for _, _, sf_id in done]
        for start in range(0, len(ids), MAX_RETRIEVE):
            chunk = ids[start : start + MAX_RETRIEVE]
            for sf_id, row in zip(chunk, self.run.sf.retrieve(obj, chunk, names), strict=False):
                if row is not None:
                    rows[sf_id] = row
        self.settle.created(self.run.settings.registry.get(obj), done, rows, datetimes)

    # deletes ----------------------------------------------------------------------------------

    def deletes(self, obj: str, group: list[StreamChange]) -> None:
        """Delete the records of ``group`` in Salesforce (composite DELETE subrequests)."""
        run = self.run
        version = run.sf.api_version
        for start in range(0, len(group), MAX_COMPOSITE):
            chunk = group[start : start + MAX_COMPOSITE]
            subrequests = [
                {
                    "method": "DELETE",
                    "url": f"/services/data/v{version}/sobjects/{obj}/{change.key}",
                    "referenceId": f"d{i}",
                    "httpHeaders": {"Sforce-Call-Options": f"client={CALL_OPTIONS_CLIENT}"},
                }
                for i, change in enumerate(chunk)
            ]
            responses = run.sf.composite(
                subrequests, all_or_none=False, headers={"Sforce-Call-Options": f"client={CALL_OPTIONS_CLIENT}"}
            )
            run.result.api_calls += 1
            for change, response in zip(chunk, responses, strict=False):
                status = int(response.get("httpStatusCode", 500))
                if status < 300 or _error_code(response) == "ENTITY_IS_DELETED":
                    run.result.count(obj).deleted += 1
                    self.settle.delete_settled(obj, change, refused=False)
                    continue
                if _error_code(response) in RETRYABLE_CODES:
                    run.fail([change.sequence], str(_error_code(response)), "the record stayed locked")
                    continue
                body = response.get("body")
                first = body[0] if isinstance(body, list) and body and isinstance(body[0], dict) else {}
                run.result.count(obj).refused += 1
                self.settle.refuse(
                    obj,
                    change,
                    _error_code(response) or f"HTTP_{status}",
                    str(first.get("message", "")),
                    [str(f) for f in first.get("fields") or []],
                )
                self.settle.delete_settled(obj, change, refused=True)


__all__ = ["PendingCreate", "Push"]
