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
    from ._acquire.authorization_code import AuthorizationCodeLogin as AuthorizationCodeLogin
    from ._acquire.device import DeviceCodeLogin as DeviceCodeLogin
    from ._core.device import DeviceAuthorization as DeviceAuthorization
    from ._core.discovery import ProviderMetadata as ProviderMetadata
    from ._core.errors import AccessDeniedError as AccessDeniedError
    from ._core.errors import AuthorizationError as AuthorizationError
    from ._core.errors import AuthpulseError as AuthpulseError
    from ._core.errors import ConfigurationError as ConfigurationError
    from ._core.errors import CredentialsUnavailableError as CredentialsUnavailableError
    from ._core.errors import DeviceCodeExpiredError as DeviceCodeExpiredError
    from ._core.errors import DiscoveryError as DiscoveryError
    from ._core.errors import ErrorClass as ErrorClass
    from ._core.errors import IntrospectionError as IntrospectionError
    from ._core.errors import LoginCancelledError as LoginCancelledError
    from ._core.errors import LoginRequiredError as LoginRequiredError
    from ._core.errors import LoginTimeoutError as LoginTimeoutError
    from ._core.errors import MissingExtraError as MissingExtraError
    from ._core.errors import NoRefreshTokenError as NoRefreshTokenError
    from ._core.errors import OAuthError as OAuthError
    from ._core.errors import RefreshError as RefreshError
    from ._core.errors import RevocationError as RevocationError
    from ._core.errors import SubjectTokenError as SubjectTokenError
    from ._core.errors import TokenEndpointError as TokenEndpointError
    from ._core.errors import TokenError as TokenError
    from ._core.errors import TokenResponseError as TokenResponseError
    from ._core.errors import TokenVerificationError as TokenVerificationError
    from ._core.errors import UsageError as UsageError
    from ._core.events import Event as Event
    from ._core.events import EventKind as EventKind
    from ._core.health import Band as Band
    from ._core.health import HealthComponent as HealthComponent
    from ._core.health import HealthReport as HealthReport
    from ._core.health import HealthSignals as HealthSignals
    from ._core.health import compute_health as compute_health
    from ._core.introspection import Introspection as Introspection
    from ._core.model import ErrorDetails as ErrorDetails
    from ._core.model import InvalidStatusChangeError as InvalidStatusChangeError
    from ._core.model import SessionKind as SessionKind
    from ._core.model import SessionMetadata as SessionMetadata
    from ._core.model import SessionRecord as SessionRecord
    from ._core.model import SessionStatus as SessionStatus
    from ._core.pkce import AuthorizationRequest as AuthorizationRequest
    from ._core.policy import Freshness as Freshness
    from ._core.policy import RefreshPolicy as RefreshPolicy
    from ._core.policy import freshness as freshness
    from ._core.redact import is_secret_name as is_secret_name
    from ._core.redact import redact_mapping as redact_mapping
    from ._core.retry import TokenRetry as TokenRetry
    from ._core.signals import ApiEventKind as ApiEventKind
    from ._core.signals import SessionEvent as SessionEvent
    from ._core.signals import SessionEventKind as SessionEventKind
    from ._core.state import AuthEvent as AuthEvent
    from ._core.state import AuthState as AuthState
    from ._core.state import Guards as Guards
    from ._core.state import IllegalTransition as IllegalTransition
    from ._core.state import StateMachine as StateMachine
    from ._core.state import Transition as Transition
    from ._core.tokens import TokenSet as TokenSet
    from ._core.tokens import parse_token_response as parse_token_response
    from ._fleet.introspection import IntrospectionProbe as IntrospectionProbe
    from ._fleet.manager import HttpProbe as HttpProbe
    from ._fleet.manager import ManagedSession as ManagedSession
    from ._fleet.manager import ManagerSettings as ManagerSettings
    from ._fleet.manager import PermissionDenied as PermissionDenied
    from ._fleet.manager import Probe as Probe
    from ._fleet.manager import SessionClosedError as SessionClosedError
    from ._fleet.manager import SessionManager as SessionManager
    from ._fleet.manager import SessionNotFoundError as SessionNotFoundError
    from ._fleet.manager import TickReport as TickReport
    from ._http.cache import AsyncCacheTransport as AsyncCacheTransport
    from ._http.cache import CachePolicy as CachePolicy
    from ._http.cache import CacheStats as CacheStats
    from ._http.cache import CacheTransport as CacheTransport
    from ._http.cache import ResponseCache as ResponseCache
    from ._http.cache import authorization_identity as authorization_identity
    from ._http.client import AsyncClient as AsyncClient
    from ._http.client import Client as Client
    from ._http.retry import AsyncRetryTransport as AsyncRetryTransport
    from ._http.retry import BudgetRegistry as BudgetRegistry
    from ._http.retry import RequestFailedError as RequestFailedError
    from ._http.retry import RetryBudget as RetryBudget
    from ._http.retry import RetryBudgetExhaustedError as RetryBudgetExhaustedError
    from ._http.retry import RetryInfo as RetryInfo
    from ._http.retry import RetryPolicy as RetryPolicy
    from ._http.retry import RetryTransport as RetryTransport
    from ._http.retry import is_testing as is_testing
    from ._http.retry import set_testing as set_testing
    from ._runtime.breakers import BreakerPolicy as BreakerPolicy
    from ._runtime.breakers import BreakerRegistry as BreakerRegistry
    from ._runtime.breakers import BreakerSnapshot as BreakerSnapshot
    from ._runtime.breakers import BreakerState as BreakerState
    from ._runtime.breakers import CircuitBreaker as CircuitBreaker
    from ._runtime.breakers import CircuitOpenError as CircuitOpenError
    from ._runtime.breakers import Permit as Permit
    from ._runtime.clock import Clock as Clock
    from ._runtime.clock import SystemClock as SystemClock
    from ._runtime.events import EventBus as EventBus
    from ._runtime.events import JournalError as JournalError
    from ._runtime.events import JsonlJournal as JsonlJournal
    from ._runtime.events import read_journal as read_journal
    from ._sessions.client_auth import ClientAuth as ClientAuth
    from ._sessions.client_auth import ClientSecretJWT as ClientSecretJWT
    from ._sessions.client_auth import PrivateKeyJWT as PrivateKeyJWT
    from ._sessions.client_auth import TLSClientAuth as TLSClientAuth
    from ._sessions.discovery_fetch import adiscover as adiscover
    from ._sessions.discovery_fetch import discover as discover
    from ._sessions.fallback import FallbackChain as FallbackChain
    from ._sessions.fallback import LoginRequired as LoginRequired
    from ._sessions.fallback import SilentReauth as SilentReauth
    from ._sessions.fallback import StoredCredentials as StoredCredentials
    from ._sessions.fallback import moves_to_next_level as moves_to_next_level
    from ._sessions.session import RefreshStats as RefreshStats
    from ._sessions.session import Session as Session
    from ._sessions.session import TokenUpdateHook as TokenUpdateHook
    from ._sessions.sources import CallableSource as CallableSource
    from ._sessions.sources import ClientCredentials as ClientCredentials
    from ._sessions.sources import FetchContext as FetchContext
    from ._sessions.sources import Fetched as Fetched
    from ._sessions.sources import RefreshTokenGrant as RefreshTokenGrant
    from ._sessions.sources import TokenSource as TokenSource
    from ._sessions.stats import RequestWindow as RequestWindow
    from ._sessions.stats import SessionStats as SessionStats
    from ._sessions.token_exchange import TokenExchange as TokenExchange
    from ._sessions.verify import JWTVerifier as JWTVerifier
    from ._stores.base import CorruptRecordError as CorruptRecordError
    from ._stores.base import FencingError as FencingError
    from ._stores.base import MemoryStore as MemoryStore
    from ._stores.base import SessionStore as SessionStore
    from ._stores.base import StoredToken as StoredToken
    from ._stores.base import StoreError as StoreError
    from ._stores.base import StoreUnavailableError as StoreUnavailableError
    from ._stores.base import VersionConflictError as VersionConflictError
    from ._stores.crypto import DecryptionError as DecryptionError
    from ._stores.crypto import TokenCipher as TokenCipher
    from ._stores.crypto import UnauthenticatedRecordError as UnauthenticatedRecordError
    from ._stores.keyring_store import KeychainUnavailableError as KeychainUnavailableError
    from ._stores.keyring_store import KeyringStore as KeyringStore
    from ._stores.lock import StoreLock as StoreLock
    from ._stores.open import open_store as open_store
    from ._stores.redis import RedisStore as RedisStore
    from ._stores.sqlite import SQLiteStore as SQLiteStore
    from ._surfaces.settings import AuthpulseSettings as AuthpulseSettings
    from ._surfaces.web import Dashboard as Dashboard
    from ._surfaces.web import DashboardServer as DashboardServer

# Every public name is imported on first use, from the module that defines it:
# ``import authpulse`` (and so every ``authpulse`` command) stays cheap, and an
# optional backend (Redis, the web dashboard) is imported only by whoever uses it.
_EXPORTS: dict[str, str] = {
    "BreakerPolicy": "._runtime.breakers",
    "BreakerRegistry": "._runtime.breakers",
    "BreakerSnapshot": "._runtime.breakers",
    "BreakerState": "._runtime.breakers",
    "CircuitBreaker": "._runtime.breakers",
    "CircuitOpenError": "._runtime.breakers",
    "Permit": "._runtime.breakers",
    "AsyncCacheTransport": "._http.cache",
    "CachePolicy": "._http.cache",
    "CacheStats": "._http.cache",
    "CacheTransport": "._http.cache",
    "ResponseCache": "._http.cache",
    "authorization_identity": "._http.cache",
    "AsyncClient": "._http.client",
    "Client": "._http.client",
    "Clock": "._runtime.clock",
    "SystemClock": "._runtime.clock",
    "DecryptionError": "._stores.crypto",
    "TokenCipher": "._stores.crypto",
    "UnauthenticatedRecordError": "._stores.crypto",
    "AccessDeniedError": "._core.errors",
    "AuthpulseError": "._core.errors",
    "ConfigurationError": "._core.errors",
    "CredentialsUnavailableError": "._core.errors",
    "DeviceAuthorization": "._core.device",
    "DeviceCodeExpiredError": "._core.errors",
    "DeviceCodeLogin": "._acquire.device",
    # provider discovery and client authentication
    "ProviderMetadata": "._core.discovery",
    "DiscoveryError": "._core.errors",
    "discover": "._sessions.discovery_fetch",
    "adiscover": "._sessions.discovery_fetch",
    "ClientAuth": "._sessions.client_auth",
    "PrivateKeyJWT": "._sessions.client_auth",
    "ClientSecretJWT": "._sessions.client_auth",
    "TLSClientAuth": "._sessions.client_auth",
    "AuthorizationCodeLogin": "._acquire.authorization_code",
    "AuthorizationRequest": "._core.pkce",
    "AuthorizationError": "._core.errors",
    "LoginTimeoutError": "._core.errors",
    "ErrorClass": "._core.errors",
    "LoginCancelledError": "._core.errors",
    "LoginRequiredError": "._core.errors",
    "MissingExtraError": "._core.errors",
    "NoRefreshTokenError": "._core.errors",
    "OAuthError": "._core.errors",
    "RefreshError": "._core.errors",
    "RevocationError": "._core.errors",
    "IntrospectionError": "._core.errors",
    "Introspection": "._core.introspection",
    "IntrospectionProbe": "._fleet.introspection",
    "TokenEndpointError": "._core.errors",
    "TokenError": "._core.errors",
    "TokenResponseError": "._core.errors",
    "TokenVerificationError": "._core.errors",
    "UsageError": "._core.errors",
    "Event": "._core.events",
    "EventBus": "._runtime.events",
    "EventKind": "._core.events",
    "JournalError": "._runtime.events",
    "JsonlJournal": "._runtime.events",
    "read_journal": "._runtime.events",
    "FallbackChain": "._sessions.fallback",
    "LoginRequired": "._sessions.fallback",
    "SilentReauth": "._sessions.fallback",
    "StoredCredentials": "._sessions.fallback",
    "moves_to_next_level": "._sessions.fallback",
    "Band": "._core.health",
    "HealthComponent": "._core.health",
    "HealthReport": "._core.health",
    "HealthSignals": "._core.health",
    "compute_health": "._core.health",
    "HttpProbe": "._fleet.manager",
    "ManagedSession": "._fleet.manager",
    "ManagerSettings": "._fleet.manager",
    "PermissionDenied": "._fleet.manager",
    "Probe": "._fleet.manager",
    "SessionClosedError": "._fleet.manager",
    "SessionManager": "._fleet.manager",
    "SessionNotFoundError": "._fleet.manager",
    "TickReport": "._fleet.manager",
    "ErrorDetails": "._core.model",
    "InvalidStatusChangeError": "._core.model",
    "SessionKind": "._core.model",
    "SessionMetadata": "._core.model",
    "SessionRecord": "._core.model",
    "SessionStatus": "._core.model",
    "Freshness": "._core.policy",
    "RefreshPolicy": "._core.policy",
    "freshness": "._core.policy",
    "is_secret_name": "._core.redact",
    "redact_mapping": "._core.redact",
    "RedisStore": "._stores.redis",
    "KeychainUnavailableError": "._stores.keyring_store",
    "KeyringStore": "._stores.keyring_store",
    "AsyncRetryTransport": "._http.retry",
    "BudgetRegistry": "._http.retry",
    "RequestFailedError": "._http.retry",
    "RetryBudget": "._http.retry",
    "RetryBudgetExhaustedError": "._http.retry",
    "RetryInfo": "._http.retry",
    "RetryPolicy": "._http.retry",
    "RetryTransport": "._http.retry",
    "is_testing": "._http.retry",
    "set_testing": "._http.retry",
    "TokenRetry": "._core.retry",
    "RefreshStats": "._sessions.session",
    "Session": "._sessions.session",
    "ApiEventKind": "._core.signals",
    "SessionEvent": "._core.signals",
    "SessionEventKind": "._core.signals",
    "TokenUpdateHook": "._sessions.session",
    "AuthpulseSettings": "._surfaces.settings",
    "CallableSource": "._sessions.sources",
    "ClientCredentials": "._sessions.sources",
    "FetchContext": "._sessions.sources",
    "Fetched": "._sessions.sources",
    "RefreshTokenGrant": "._sessions.sources",
    "TokenSource": "._sessions.sources",
    "SQLiteStore": "._stores.sqlite",
    "AuthEvent": "._core.state",
    "AuthState": "._core.state",
    "Guards": "._core.state",
    "IllegalTransition": "._core.state",
    "StateMachine": "._core.state",
    "Transition": "._core.state",
    "RequestWindow": "._sessions.stats",
    "SessionStats": "._sessions.stats",
    "CorruptRecordError": "._stores.base",
    "FencingError": "._stores.base",
    "MemoryStore": "._stores.base",
    "SessionStore": "._stores.base",
    "StoredToken": "._stores.base",
    "StoreError": "._stores.base",
    "StoreLock": "._stores.lock",
    "StoreUnavailableError": "._stores.base",
    "VersionConflictError": "._stores.base",
    "open_store": "._stores.open",
    "JWTVerifier": "._sessions.verify",
    "TokenSet": "._core.tokens",
    "parse_token_response": "._core.tokens",
    "Dashboard": "._surfaces.web",
    "DashboardServer": "._surfaces.web",
    "SubjectTokenError": "._core.errors",
    "TokenExchange": "._sessions.token_exchange",
}

__all__ = [
    "AccessDeniedError",
    "ApiEventKind",
    "AsyncCacheTransport",
    "AsyncClient",
    "AsyncRetryTransport",
    "AuthEvent",
    "AuthState",
    "AuthorizationCodeLogin",
    "AuthorizationError",
    "AuthorizationRequest",
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
    "ClientAuth",
    "ClientCredentials",
    "ClientSecretJWT",
    "Clock",
    "ConfigurationError",
    "CorruptRecordError",
    "CredentialsUnavailableError",
    "Dashboard",
    "DashboardServer",
    "DecryptionError",
    "DeviceAuthorization",
    "DeviceCodeExpiredError",
    "DeviceCodeLogin",
    "DiscoveryError",
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
    "Introspection",
    "IntrospectionError",
    "IntrospectionProbe",
    "InvalidStatusChangeError",
    "JWTVerifier",
    "JournalError",
    "JsonlJournal",
    "KeychainUnavailableError",
    "KeyringStore",
    "LoginCancelledError",
    "LoginRequired",
    "LoginRequiredError",
    "LoginTimeoutError",
    "ManagedSession",
    "ManagerSettings",
    "MemoryStore",
    "MissingExtraError",
    "NoRefreshTokenError",
    "OAuthError",
    "PermissionDenied",
    "Permit",
    "PrivateKeyJWT",
    "Probe",
    "ProviderMetadata",
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
    "RevocationError",
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
    "SubjectTokenError",
    "SystemClock",
    "TLSClientAuth",
    "TickReport",
    "TokenCipher",
    "TokenEndpointError",
    "TokenError",
    "TokenExchange",
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
    "adiscover",
    "authorization_identity",
    "compute_health",
    "discover",
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
