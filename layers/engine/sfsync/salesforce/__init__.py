"""The engine's Salesforce adapter: the only engine code that talks to Salesforce.

``client_from_secret(secret_dict)`` builds a :class:`SalesforceClient` from the secret JSON of
docs/engine-design.md; errors are the typed classes re-exported here.
"""

from .auth import AccessToken, TokenProvider, clear_token_cache
from .client import BulkPage, QueryPage, SalesforceClient, client_from_secret
from .credentials import SalesforceCredentials
from .errors import (
    BulkJobFailed,
    InvalidQueryLocator,
    ReplicationWindowError,
    SalesforceAuthError,
    SalesforceConfigError,
    SalesforceError,
    SalesforceQueryTimeout,
    SalesforceRateLimited,
    SalesforceRequestError,
    SalesforceUnavailable,
)
from .transport import RetryPolicy

__all__ = [
    "AccessToken",
    "BulkJobFailed",
    "BulkPage",
    "InvalidQueryLocator",
    "QueryPage",
    "ReplicationWindowError",
    "RetryPolicy",
    "SalesforceAuthError",
    "SalesforceClient",
    "SalesforceConfigError",
    "SalesforceCredentials",
    "SalesforceError",
    "SalesforceQueryTimeout",
    "SalesforceRateLimited",
    "SalesforceRequestError",
    "SalesforceUnavailable",
    "TokenProvider",
    "clear_token_cache",
    "client_from_secret",
]
