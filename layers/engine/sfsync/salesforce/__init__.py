"""The engine's Salesforce adapter: the only engine code that talks to Salesforce.

``client_from_secret(secret_dict)`` builds a :class:`SalesforceClient` from the secret JSON of
docs/engine-design.md; errors are the typed classes re-exported here.
"""

from . import errors
from .auth import AccessToken, TokenProvider, clear_token_cache
from .client import BulkPage, QueryPage, SalesforceClient, client_from_secret
from .credentials import SalesforceCredentials
from .errors import *  # noqa: F403 - re-exported, see the module docstring
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
    "client_from_secret",
]
__all__ += errors.__all__
