"""Change Data Capture through Salesforce Event Relay into EventBridge: the seconds path beside the cycles.

Salesforce publishes every change of a CDC-enabled object as a change event; Event Relay puts it on
an EventBridge partner event bus; a rule on that bus sends it to an SQS queue, whose messages
``ChangeEventFunction`` (``functions/change_events``) applies in batches with partial-batch failures
(retried by SQS, parked in a dead-letter queue after five receives).

* :mod:`sfsync.changes.envelope`: the envelope, checked (every form of the unverified encodings);
* :mod:`sfsync.changes.apply`: a batch -> the record tables, with the cycles' write rule;
* :mod:`sfsync.changes.health`: the dispatcher's side - an object whose events flow healthily
  pauses longer, a detected loss asks for its cycle at once, ``CdcUnhealthy`` every tick;
* :mod:`sfsync.store.event_errors` (behind :class:`sfsync.changes.apply.EventErrorSink`): the
  errors-table rows of events that cannot be used.

The cycles stay the safety net: they keep the watermark contract, so a lost event costs at most one
cycle of delay, never data.  The health item (``OBJECT#<name>`` / ``CDC``) is owned by
:mod:`sfsync.store.state` (:class:`sfsync.store.state.CdcHealth`).
"""
