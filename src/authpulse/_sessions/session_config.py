"""The arguments of :class:`~authpulse.Session`: checked where they are given,
and the defaults and collaborators built from them."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .._core.errors import ConfigurationError
from .._core.model import check_id
from .._core.policy import RefreshPolicy
from .._core.retry import TokenRetry
from .._core.signals import SessionEventKind
from .._core.tokens import TokenSet
from .._runtime.backend import every
from .._runtime.breakers import BreakerPolicy, BreakerRegistry
from .coordination import MAX_KEY_LENGTH, Coordinator

if TYPE_CHECKING:
    from .._runtime.clock import Clock
    from .._stores.base import SessionStore

__all__ = [
    "DEFAULT_POLICY",
    "DEFAULT_RETRY",
    "STORE_KINDS",
    "check_arguments",
    "make_breakers",
    "make_coordinator",
]

DEFAULT_POLICY = RefreshPolicy()
DEFAULT_RETRY = TokenRetry()
#: the event a store-state change reports, by "the store is available"
STORE_KINDS = {True: SessionEventKind.STORE_RECOVERED, False: SessionEventKind.STORE_UNAVAILABLE}

_SYNC_TRANSPORTS = every("BaseTransport")
_ASYNC_TRANSPORTS = every("AsyncBaseTransport")


_CLOCK_METHODS = ("now", "monotonic", "sleep", "asleep")
#: the classes found to have the methods a clock, a source or a store needs (a
#: manager's sessions share one clock and store and often one kind of source):
#: each class is looked at once
_CLOCK_TYPES: set[type] = set()
_SOURCE_TYPES: set[type] = set()
_STORE_TYPES: set[type] = set()


def _has_methods(value: object, names: tuple[str, ...], known: set[type]) -> bool:
    """Whether ``value`` has callable ``names`` (duck-typed: ``isinstance`` against a
    runtime Protocol is slow here). A class whose own attributes have them is
    remembered in ``known``, so it is looked at once."""
    cls = type(value)
    if cls in known:
        return True
    if not all(callable(getattr(value, n, None)) for n in names):
        return False
    if all(callable(getattr(cls, n, None)) for n in names):
        known.add(cls)
    return True


def check_arguments(arguments: Mapping[str, object]) -> None:
    """Refuse, where they are given, the arguments that would fail later, inside
    a refresh (as ``token refresh failed: AttributeError``). ``arguments`` are
    :class:`~authpulse.Session`'s, by name (its ``locals()``)."""
    source = arguments["source"]
    token = arguments["token"]
    on_token_update = arguments["on_token_update"]
    policy = arguments["policy"]
    retry = arguments["retry"]
    clock = arguments["clock"]
    verifier = arguments["verifier"]
    transport = arguments["transport"]
    async_transport = arguments["async_transport"]
    seed = arguments["seed"]
    rng = arguments["rng"]
    name = arguments["name"]
    identity = arguments["identity"]
    store_key = arguments["store_key"]
    lock_ttl = arguments["lock_ttl"]
    breaker = arguments["breaker"]
    store = arguments["store"]
    request_window = arguments["request_window"]
    if not _has_methods(source, ("fetch", "afetch"), _SOURCE_TYPES):
        raise ConfigurationError("source must be a token source (fetch/afetch)")
    if token is not None and not isinstance(token, TokenSet):
        raise ConfigurationError("token must be a TokenSet")
    if on_token_update is not None and not callable(on_token_update):
        raise ConfigurationError("on_token_update must be callable")
    if policy is not None and not isinstance(policy, RefreshPolicy):
        raise ConfigurationError("policy must be a RefreshPolicy")
    if retry is not None and not isinstance(retry, TokenRetry):
        raise ConfigurationError("retry must be a TokenRetry")
    if clock is not None and not _has_methods(clock, _CLOCK_METHODS, _CLOCK_TYPES):
        raise ConfigurationError("clock must be a Clock (now, monotonic, sleep, asleep)")
    if verifier is not None and not callable(getattr(verifier, "verify", None)):
        raise ConfigurationError("verifier must be a JWTVerifier")
    if transport is not None and not isinstance(transport, _SYNC_TRANSPORTS):
        raise ConfigurationError(
            "transport must be an httpx (or httpx2) BaseTransport, such as httpx.HTTPTransport,"
            f" not {type(transport).__name__}"
        )
    if async_transport is not None and not isinstance(async_transport, _ASYNC_TRANSPORTS):
        raise ConfigurationError(
            "async_transport must be an httpx (or httpx2) AsyncBaseTransport, such as "
            f"httpx.AsyncHTTPTransport, not {type(async_transport).__name__}"
        )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigurationError("seed must be an integer")
    if rng is not None and not isinstance(rng, random.Random):
        raise ConfigurationError("rng must be a random.Random")
    for what, value in (("name", name), ("identity", identity)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigurationError(f"{what} must be a non-empty string")
    if store_key is not None:  # it names the store's records and refresh lock
        check_id(store_key, "store_key", MAX_KEY_LENGTH)
    if isinstance(lock_ttl, bool) or not (
        isinstance(lock_ttl, int | float) and math.isfinite(lock_ttl) and lock_ttl > 0
    ):
        raise ConfigurationError("lock_ttl must be a positive number of seconds")
    if breaker is not None and not isinstance(breaker, BreakerPolicy | BreakerRegistry):
        raise ConfigurationError("breaker must be a BreakerPolicy or a BreakerRegistry")
    if store is not None and not _has_methods(store, ("lock", "get_token"), _STORE_TYPES):
        raise ConfigurationError("store must be a SessionStore (see authpulse.open_store)")
    if (
        isinstance(request_window, bool)
        or not isinstance(request_window, int)
        or (request_window < 1)
    ):
        raise ConfigurationError("request_window must be a positive integer")


def make_breakers(
    breaker: BreakerPolicy | BreakerRegistry | None, clock: Clock
) -> BreakerRegistry | None:
    """The token endpoint's breaker registry (``breaker`` is checked)."""
    if isinstance(breaker, BreakerPolicy):
        return BreakerRegistry(breaker, clock=clock)
    return breaker


def make_coordinator(
    store: SessionStore | None,
    store_key: str | None,
    name: str,
    *,
    clock: Clock,
    policy: RefreshPolicy,
    retry: TokenRetry,
    lock_ttl: float,
    on_store_state: Callable[[bool, str | None], None],
) -> Coordinator | None:
    """The coordinator of a session sharing ``store`` (``None`` without a store)."""
    if store is None:
        return None
    return Coordinator(
        store,
        store_key or name,
        what="store_key" if store_key else "name (the store key: no store_key is given)",
        clock=clock,
        policy=policy,
        lock_ttl=float(lock_ttl),
        wait=retry.deadline + float(lock_ttl),
        deadline=retry.deadline,
        on_store_state=on_store_state,
    )
