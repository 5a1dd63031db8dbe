"""sfsync: the serverless Salesforce -> DynamoDB sync engine (shipped to Lambda as a layer).

Layered packages; a module imports only its own layer and the layers below it
(``tests/static/test_import_graph.py`` holds the rule), lowest first:

* ``core``: ``clock``, ``registry`` (objects as data: every per-object fact), ``exceptions`` (one root,
  :class:`~sfsync.core.exceptions.SfsyncError`), ``events`` (every event model), ``config``,
  ``observability`` (logger, metrics and their catalogue);
* ``items``: the one item codec (``codec``, ``snapshot``, ``csv``, ``images``);
* ``salesforce`` (the Salesforce adapter and its ``ports``) and ``store`` (every table and AWS access:
  ``records``, ``state``, ``org_state``, ``copies``, ``batch_loader``, ``ddb_wire``, ``stepfunctions``, ``aws``);
* the use cases: ``inbound`` (the incremental cycle), ``fullcopy`` (``plan``, ``steps``), ``changes``
  (Change Data Capture), the write-back (``writeback``, ``sweep``, ``conflicts``);
* ``dispatch`` (the fan-out: ``dispatcher``, ``probe``, ``budget``);
* ``ops`` (``verify``);
* ``wiring``: every function's dependencies and its one entry point for the handler.
"""

__version__ = "0.1.0"
