"""The write-back: local edits of two-way tables (Lead, Contact, Campaign, CampaignMember) reach Salesforce.

Input: one batch of DynamoDB stream records (``NEW_AND_OLD_IMAGES``) of the two-way tables, or a
re-drive of pending changes (the sweep ``{"sweep": {}}``, the retry ``{"retry": {...}}``).
Output: the sequence numbers of the records to report as batch item failures (Lambda retries from
the first of them); everything else was pushed, recorded as refused, or needed nothing.

Each change goes through five stages, one module each:

1. **decode** (:mod:`.decode`): stream records, and the pending items and delete intents a re-drive
   reads, become typed :class:`~.model.StreamChange` values with their two-way object.
2. **classify** (:mod:`.classify`): what a change asks - ``update``, ``create``, ``delete`` or
   ``ignore`` - with an update's local changes computed once (:class:`~.classify.Classified`).
   Images the sync wrote (data == base) and modifications that touched only the engine's own
   attributes (``_base`` after a push, ``_writeback_error``, redirects) are ignored without any call.
   Then every local change is marked pending on its item and claimed (:mod:`.settle`), before any
   Salesforce call; once describe is read, an update's fields are split once into writable and
   rejected (:func:`~.classify.split_update`).
3. **decide** (:mod:`.decide`): per field, against the current item (consistent BatchGetItem) and
   Salesforce's current values: push, nothing to do, or a conflict resolved by the field's policy.
4. **push** (:mod:`.push`): every Salesforce call - the retrieve before the decisions, sObject
   Collections PATCH calls of up to 200 records (``allOrNone: false``,
   ``Sforce-Call-Options: client=sfsync``), creates (upsert on the external-id field, or a create
   intent written before the create and looked for before a retry creates again), deletes
   (composite DELETE, only with the object's ``allow_deletes``), ``UNABLE_TO_LOCK_ROW`` retried with
   back-off, a converted Lead's change sent to its Contact, a merged record's to its master.
5. **settle** (:mod:`.settle`): the outcome written down - the item's ``_base`` after an accepted
   push (conditioned on the base read: an edit made meanwhile stays pending, a sync write meanwhile
   wins), the errors table (rejected fields, refusals with Salesforce's code, message and fields,
   conflicts, redirects; the record's open row for ``sfsync errors``), ``_writeback_error`` on the
   item, and the pending marker cleared - or kept, with a back-off, when the change failed.

:mod:`.sweep` re-drives overdue pending changes and named records through the same stages;
:mod:`.run` holds the runs (:class:`WriteBack`), :mod:`.context` the state of one run,
:mod:`.model` the shared constants, ports and values; the DynamoDB side is
:mod:`sfsync.store.writeback` (behind :class:`~sfsync.writeback.model.WriteBackStore`).
"""

from __future__ import annotations

# (``classify`` is not exported: ``sfsync.writeback.classify`` stays the stage module, not its function)
from sfsync.writeback.classify import (
    KEY_PREFIXES,
    Classified,
    check_value,
    clear_describe_cache,
    field_map,
    is_salesforce_id,
    split_update,
    writable,
)
from sfsync.writeback.decide import Conflict, FieldDecision, decide_field, resolve
from sfsync.writeback.decode import decode_records
from sfsync.writeback.model import (
    ERROR_ATTRIBUTE,
    LOCK_BACKOFF_SECONDS,
    LOCK_RETRIES,
    WRITEBACK_SETTINGS,
    BatchResult,
    Counters,
    StreamChange,
    WriteBackDeps,
)
from sfsync.writeback.run import WriteBack, emit_metrics, process_batch, raise_configuration_problem
from sfsync.writeback.sweep import SweepOutcome, run_retry, run_sweep

__all__ = [
    "ERROR_ATTRIBUTE",
    "KEY_PREFIXES",
    "LOCK_BACKOFF_SECONDS",
    "LOCK_RETRIES",
    "WRITEBACK_SETTINGS",
    "BatchResult",
    "Classified",
    "Conflict",
    "Counters",
    "FieldDecision",
    "StreamChange",
    "SweepOutcome",
    "WriteBack",
    "WriteBackDeps",
    "check_value",
    "clear_describe_cache",
    "decide_field",
    "decode_records",
    "emit_metrics",
    "field_map",
    "is_salesforce_id",
    "process_batch",
    "raise_configuration_problem",
    "resolve",
    "run_retry",
    "run_sweep",
    "split_update",
    "writable",
]
