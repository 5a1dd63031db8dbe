"""Store: every DynamoDB / AWS access (record tables, state items of every kind, copy documents,
Step Functions, Lambda, the boto clients).  Logic reaches tables only through these adapters."""
