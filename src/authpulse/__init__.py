"""authpulse: keep authenticated API sessions healthy.

Tokens are refreshed before they expire, one refresh serves every waiting
thread and coroutine, a 401 is answered by one refresh and one replay, and
``health()`` explains in a 0–100 score how well a session is doing.
"""

import logging as _logging
import typing as _typing
from importlib import import_module as _import_module

from ._version import __version__ as __version__

if _typing.TYPE_CHECKING:
    from ._breaker import BreakerPolicy as BreakerPolicy
    from ._breaker import BreakerRegistry as BreakerRegistry
    from ._breaker import BreakerSnapshot as BreakerSnapshot
    from ._breaker import BreakerState as BreakerState
    from ._breaker import CircuitBreaker as CircuitBreaker
    from ._breaker import CircuitOpenError as CircuitOpenError
    from ._breaker import Permit as Permit
    from ._cache import AsyncCacheTransport as AsyncCacheTransport
    from ._cache import CachePolicy as CachePolicy
    from ._cache import CacheStats as CacheStats
    from ._cache import CacheTransport as CacheTransport
    from ._cache import ResponseCache as ResponseCache
    from ._cache import authorization_identity as authorization_identity
    from ._client import AsyncClient as AsyncClient
    from ._client import Client as Client
    from ._clock import Clock as Clock
    from ._clock import SystemClock as SystemClock
    from ._crypto import DecryptionError as DecryptionError
    from ._crypto import TokenCipher as TokenCipher
    from ._crypto import UnauthenticatedRecordError as UnauthenticatedRecordError
    from ._errors import AuthpulseError as AuthpulseError
    from ._errors import ConfigurationError as ConfigurationError
    from ._errors import CredentialsUnavailableError as CredentialsUnavailableError
    from ._errors import ErrorClass as ErrorClass
    from ._errors import LoginRequiredError as LoginRequiredError
    from ._errors import MissingExtraError as MissingExtraError
    from ._errors import NoRefreshTokenError as NoRefreshTokenError
    from ._errors import OAuthError as OAuthError
    from ._errors import RefreshError as RefreshError
    from ._errors import TokenEndpointError as TokenEndpointError
    from ._errors import TokenError as TokenError
    from ._errors import TokenResponseError as TokenResponseError
    from ._errors import TokenVerificationError as TokenVerificationError
    from ._errors import UsageError as UsageError
    from ._events import Event as Event
    from ._events import EventBus as EventBus
    from ._events import EventKind as EventKind
    from ._events import JournalError as JournalError
    from ._events import JsonlJournal as JsonlJournal
    from ._events import read_journal as read_journal
    from ._fallback import FallbackChain as FallbackChain
    from ._fallback import LoginRequired as LoginRequired
    from ._fallback import SilentReauth as SilentReauth
    from ._fallback import StoredCredentials as StoredCredentials
    from ._fallback import moves_to_next_level as moves_to_next_level
    from ._health import Band as Band
    from ._health import HealthComponent as HealthComponent
    from ._health import HealthReport as HealthReport
    from ._health import HealthSignals as HealthSignals
    from ._health import compute_health as compute_health
    from ._manager import HttpProbe as HttpProbe
    from ._manager import ManagedSession as ManagedSession
    from ._manager import ManagerSettings as ManagerSettings
    from ._manager import PermissionDenied as PermissionDenied
    from ._manager import Probe as Probe
    from ._manager import SessionClosedError as SessionClosedError
    from ._manager import SessionManager as SessionManager
    from ._manager import SessionNotFoundError as SessionNotFoundError
    from ._manager import TickReport as TickReport
    from ._model import ErrorDetails as ErrorDetails
    from ._model import InvalidStatusChangeError as InvalidStatusChangeError
    from ._model import SessionKind as SessionKind
    from ._model import SessionMetadata as SessionMetadata
    from ._model import SessionRecord as SessionRecord
    from ._model import SessionStatus as SessionStatus
    from ._open_store import open_store as open_store
    from ._policy import Freshness as Freshness
    from ._policy import RefreshPolicy as RefreshPolicy
    from ._policy import freshness as freshness
    from ._redact import is_secret_name as is_secret_name
    from ._redact import redact_mapping as redact_mapping
    from ._redis_store import RedisStore as RedisStore
    from ._resilience import AsyncRetryTransport as AsyncRetryTransport
    from ._resilience import BudgetRegistry as BudgetRegistry
    from ._resilience import RequestFailedError as RequestFailedError
    from ._resilience import RetryBudget as RetryBudget
    from ._resilience import RetryBudgetExhaustedError as RetryBudgetExhaustedError
    from ._resilience import RetryInfo as RetryInfo
    from ._resilience import RetryPolicy as RetryPolicy
    from ._resilience import RetryTransport as RetryTransport
    from ._resilience import is_testing as is_testing
    from ._resilience import set_testing as set_testing
    from ._retry import TokenRetry as TokenRetry
    from ._session import RefreshStats as RefreshStats
    from ._session import Session as Session
    from ._session import TokenUpdateHook as TokenUpdateHook
    from ._settings import AuthpulseSettings as AuthpulseSettings
    from ._signals import ApiEventKind as ApiEventKind
    from ._signals import SessionEvent as SessionEvent
    from ._signals import SessionEventKind as SessionEventKind
    from ._sources import CallableSource as CallableSource
    from ._sources import ClientCredentials as ClientCredentials
    from ._sources import FetchContext as FetchContext
    from ._sources import Fetched as Fetched
    from ._sources import RefreshTokenGrant as RefreshTokenGrant
    from ._sources import TokenSource as TokenSource
    from ._sqlite_store import SQLiteStore as SQLiteStore
    from ._state import AuthEvent as AuthEvent
    from ._state import AuthState as AuthState
    from ._state import Guards as Guards
    from ._state import IllegalTransition as IllegalTransition
    from ._state import StateMachine as StateMachine
    from ._state import Transition as Transition
    from ._stats import RequestWindow as RequestWindow
    from ._stats import SessionStats as SessionStats
    from ._store import CorruptRecordError as CorruptRecordError
    from ._store import FencingError as FencingError
    from ._store import MemoryStore as MemoryStore
    from ._store import SessionStore as SessionStore
    from ._store import StoredToken as StoredToken
    from ._store import StoreError as StoreError
    from ._store import StoreUnavailableError as StoreUnavailableError
    from ._store import VersionConflictError as VersionConflictError
    from ._store_lock import StoreLock as StoreLock
    from ._tokens import TokenSet as TokenSet
    from ._tokens import parse_token_response as parse_token_response
    from ._verify import JWTVerifier as JWTVerifier
    from ._web import Dashboard as Dashboard
    from ._web import DashboardServer as DashboardServer

# Every public name is imported on first use, from the module that defines it:
# ``import authpulse`` (and so every ``authpulse`` command) stays cheap, and an
# optional backend (Redis, the web dashboard) is imported only by whoever uses it.
_EXPORTS: dict[str, str] = {
    "BreakerPolicy": "._breaker",
    "BreakerRegistry": "._breaker",
    "BreakerSnapshot": "._breaker",
    "BreakerState": "._breaker",
    "CircuitBreaker": "._breaker",
    "CircuitOpenError": "._breaker",
    "Permit": "._breaker",
    "AsyncCacheTransport": "._cache",
    "CachePolicy": "._cache",
    "CacheStats": "._cache",
    "CacheTransport": "._cache",
    "ResponseCache": "._cache",
    "authorization_identity": "._cache",
    "AsyncClient": "._client",
    "Client": "._client",
    "Clock": "._clock",
    "SystemClock": "._clock",
    "DecryptionError": "._crypto",
    "TokenCipher": "._crypto",
    "UnauthenticatedRecordError": "._crypto",
    "AuthpulseError": "._errors",
    "ConfigurationError": "._errors",
    "CredentialsUnavailableError": "._errors",
    "ErrorClass": "._errors",
    "LoginRequiredError": "._errors",
    "MissingExtraError": "._errors",
    "NoRefreshTokenError": "._errors",
    "OAuthError": "._errors",
    "RefreshError": "._errors",
    "TokenEndpointError": "._errors",
    "TokenError": "._errors",
    "TokenResponseError": "._errors",
    "TokenVerificationError": "._errors",
    "UsageError": "._errors",
    "Event": "._events",
    "EventBus": "._events",
    "EventKind": "._events",
    "JournalError": "._events",
    "JsonlJournal": "._events",
    "read_journal": "._events",
    "FallbackChain": "._fallback",
    "LoginRequired": "._fallback",
    "SilentReauth": "._fallback",
    "StoredCredentials": "._fallback",
    "moves_to_next_level": "._fallback",
    "Band": "._health",
    "HealthComponent": "._health",
    "HealthReport": "._health",
    "HealthSignals": "._health",
    "compute_health": "._health",
    "HttpProbe": "._manager",
    "ManagedSession": "._manager",
    "ManagerSettings": "._manager",
    "PermissionDenied": "._manager",
    "Probe": "._manager",
    "SessionClosedError": "._manager",
    "SessionManager": "._manager",
    "SessionNotFoundError": "._manager",
    "TickReport": "._manager",
    "ErrorDetails": "._model",
    "InvalidStatusChangeError": "._model",
    "SessionKind": "._model",
    "SessionMetadata": "._model",
    "SessionRecord": "._model",
    "SessionStatus": "._model",
    "Freshness": "._policy",
    "RefreshPolicy": "._policy",
    "freshness": "._policy",
    "is_secret_name": "._redact",
    "redact_mapping": "._redact",
    "RedisStore": "._redis_store",
    "AsyncRetryTransport": "._resilience",
    "BudgetRegistry": "._resilience",
    "RequestFailedError": "._resilience",
    "RetryBudget": "._resilience",
    "RetryBudgetExhaustedError": "._resilience",
    "RetryInfo": "._resilience",
    "RetryPolicy": "._resilience",
    "RetryTransport": "._resilience",
    "is_testing": "._resilience",
    "set_testing": "._resilience",
    "TokenRetry": "._retry",
    "RefreshStats": "._session",
    "Session": "._session",
    "ApiEventKind": "._signals",
    "SessionEvent": "._signals",
    "SessionEventKind": "._signals",
    "TokenUpdateHook": "._session",
    "AuthpulseSettings": "._settings",
    "CallableSource": "._sources",
    "ClientCredentials": "._sources",
    "FetchContext": "._sources",
    "Fetched": "._sources",
    "RefreshTokenGrant": "._sources",
    "TokenSource": "._sources",
    "SQLiteStore": "._sqlite_store",
    "AuthEvent": "._state",
    "AuthState": "._state",
    "Guards": "._state",
    "IllegalTransition": "._state",
    "StateMachine": "._state",
    "Transition": "._state",
    "RequestWindow": "._stats",
    "SessionStats": "._stats",
    "CorruptRecordError": "._store",
    "FencingError": "._store",
    "MemoryStore": "._store",
    "SessionStore": "._store",
    "StoredToken": "._store",
    "StoreError": "._store",
    "StoreLock": "._store_lock",
    "StoreUnavailableError": "._store",
    "VersionConflictError": "._store",
    "open_store": "._open_store",
    "JWTVerifier": "._verify",
    "TokenSet": "._tokens",
    "parse_token_response": "._tokens",
    "Dashboard": "._web",
    "DashboardServer": "._web",
}

__all__ = [
    "ApiEventKind",
    "AsyncCacheTransport",
    "AsyncClient",
    "AsyncRetryTransport",
    "AuthEvent",
    "AuthState",
    "AuthpulseError",
    "AuthpulseSettings",
    "Band",
    "BreakerPolicy",
    "BreakerRegistry",
    "BreakerSnapshot",
    "BreakerState",
    "BudgetRegistry",
    "CachePolicy",
    "CacheStats",
    "CacheTransport",
    "CallableSource",
    "CircuitBreaker",
    "CircuitOpenError",
    "Client",
    "ClientCredentials",
    "Clock",
    "ConfigurationError",
    "CorruptRecordError",
    "CredentialsUnavailableError",
    "Dashboard",
    "DashboardServer",
    "DecryptionError",
    "ErrorClass",
    "ErrorDetails",
    "Event",
    "EventBus",
    "EventKind",
    "FallbackChain",
    "FencingError",
    "FetchContext",
    "Fetched",
    "Freshness",
    "Guards",
    "HealthComponent",
    "HealthReport",
    "HealthSignals",
    "HttpProbe",
    "IllegalTransition",
    "InvalidStatusChangeError",
    "JWTVerifier",
    "JournalError",
    "JsonlJournal",
    "LoginRequired",
    "LoginRequiredError",
    "ManagedSession",
    "ManagerSettings",
    "MemoryStore",
    "MissingExtraError",
    "NoRefreshTokenError",
    "OAuthError",
    "PermissionDenied",
    "Permit",
    "Probe",
    "RedisStore",
    "RefreshError",
    "RefreshPolicy",
    "RefreshStats",
    "RefreshTokenGrant",
    "RequestFailedError",
    "RequestWindow",
    "ResponseCache",
    "RetryBudget",
    "RetryBudgetExhaustedError",
    "RetryInfo",
    "RetryPolicy",
    "RetryTransport",
    "SQLiteStore",
    "Session",
    "SessionClosedError",
    "SessionEvent",
    "SessionEventKind",
    "SessionKind",
    "SessionManager",
    "SessionMetadata",
    "SessionNotFoundError",
    "SessionRecord",
    "SessionStats",
    "SessionStatus",
    "SessionStore",
    "SilentReauth",
    "StateMachine",
    "StoreError",
    "StoreLock",
    "StoreUnavailableError",
    "StoredCredentials",
    "StoredToken",
    "SystemClock",
    "TickReport",
    "TokenCipher",
    "TokenEndpointError",
    "TokenError",
    "TokenResponseError",
    "TokenRetry",
    "TokenSet",
    "TokenSource",
    "TokenUpdateHook",
    "TokenVerificationError",
    "Transition",
    "UnauthenticatedRecordError",
    "UsageError",
    "VersionConflictError",
    "__version__",
    "authorization_identity",
    "compute_health",
    "freshness",
    "is_secret_name",
    "is_testing",
    "moves_to_next_level",
    "open_store",
    "parse_token_response",
    "read_journal",
    "redact_mapping",
    "set_testing",
]


if not _typing.TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(_import_module(module, __name__), name)
        globals()[name] = value  # the next lookup is a plain attribute
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


_logging.getLogger("authpulse").addHandler(_logging.NullHandler())
