"""The item codec: how Salesforce data becomes DynamoDB items, and back.

* :mod:`sfsync.items.codec`: Salesforce value -> item value -> DynamoDB wire JSON and the ``_base``
  snapshot text, in one pass; DynamoDB's number range and item size rules; item values -> Salesforce.
* :mod:`sfsync.items.csv`: Bulk API CSV text typed as REST would type it, and the CSV rows' encoder.
* :mod:`sfsync.items.images`: wire JSON (stored items, stream images) back to item values.
"""
