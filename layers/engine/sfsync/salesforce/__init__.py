"""The engine's Salesforce adapter: the only engine code that talks to Salesforce.

``client_from_secret(secret_dict)`` builds a :class:`SalesforceClient` from the secret JSON of
docs/engine-design.md; its errors are the typed classes of :mod:`sfsync.core.exceptions`
(:class:`~sfsync.core.exceptions.SalesforceError` and subclasses, under the engine's one root).
"""

from .auth import AccessToken, TokenProvider, clear_token_cache
from .client import BulkPage, QueryPage, SalesforceClient, client_from_credentials, client_from_secret
from .credentials import SalesforceCredentials
from .transport import RetryPolicy

__all__ = [
    "AccessToken",
    "BulkPage",
    "QueryPage",
    "RetryPolicy",
    "SalesforceClient",
    "SalesforceCredentials",
    "TokenProvider",
    "clear_token_cache",
    "client_from_credentials",
    "client_from_secret",
]
