"""sfsync: the serverless Salesforce -> DynamoDB sync engine (shipped to Lambda as a layer).

Modules: ``config`` (settings, secret), ``registry`` (objects as data), ``state`` (the watermark
contract), ``records`` (record tables), ``cycle`` (one incremental cycle), ``dispatcher`` (fan-out),
``events`` (invocation models), ``wiring`` + ``aws`` (adapters for the handlers), ``clock``,
``observability``, ``exceptions``; ``salesforce`` is the Salesforce adapter.
"""

__version__ = "0.1.0"
