"""authpulse: keep authenticated API sessions healthy.

Tokens are refreshed before they expire, one refresh serves every waiting
thread and coroutine, a 401 is answered by one refresh and one replay, and
``health()`` explains in a 0–100 score how well a session is doing.
"""

import logging as _logging

from ._client import AsyncClient as AsyncClient
from ._client import Client as Client
from ._clock import Clock as Clock
from ._clock import SystemClock as SystemClock
from ._errors import AuthpulseError as AuthpulseError
from ._errors import ConfigurationError as ConfigurationError
from ._errors import ErrorClass as ErrorClass
from ._errors import NoRefreshTokenError as NoRefreshTokenError
from ._errors import OAuthError as OAuthError
from ._errors import RefreshError as RefreshError
from ._errors import TokenEndpointError as TokenEndpointError
from ._errors import TokenError as TokenError
from ._errors import TokenResponseError as TokenResponseError
from ._errors import TokenVerificationError as TokenVerificationError
from ._errors import UsageError as UsageError
from ._health import Band as Band
from ._health import HealthComponent as HealthComponent
from ._health import HealthReport as HealthReport
from ._health import HealthSignals as HealthSignals
from ._health import compute_health as compute_health
from ._policy import Freshness as Freshness
from ._policy import RefreshPolicy as RefreshPolicy
from ._policy import freshness as freshness
from ._retry import TokenRetry as TokenRetry
from ._session import RefreshStats as RefreshStats
from ._session import Session as Session
from ._sources import CallableSource as CallableSource
from ._sources import ClientCredentials as ClientCredentials
from ._sources import FetchContext as FetchContext
from ._sources import Fetched as Fetched
from ._sources import RefreshTokenGrant as RefreshTokenGrant
from ._sources import TokenSource as TokenSource
from ._tokens import JWTVerifier as JWTVerifier
from ._tokens import TokenSet as TokenSet
from ._tokens import parse_token_response as parse_token_response
from ._version import __version__ as __version__

__all__ = [
    "AsyncClient",
    "AuthpulseError",
    "Band",
    "CallableSource",
    "Client",
    "ClientCredentials",
    "Clock",
    "ConfigurationError",
    "ErrorClass",
    "FetchContext",
    "Fetched",
    "Freshness",
    "HealthComponent",
    "HealthReport",
    "HealthSignals",
    "JWTVerifier",
    "NoRefreshTokenError",
    "OAuthError",
    "RefreshError",
    "RefreshPolicy",
    "RefreshStats",
    "RefreshTokenGrant",
    "Session",
    "SystemClock",
    "TokenEndpointError",
    "TokenError",
    "TokenResponseError",
    "TokenRetry",
    "TokenSet",
    "TokenSource",
    "TokenVerificationError",
    "UsageError",
    "__version__",
    "compute_health",
    "freshness",
    "parse_token_response",
]

_logging.getLogger("authpulse").addHandler(_logging.NullHandler())
