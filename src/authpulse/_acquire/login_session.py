"""What the logins share: their session arguments, checked up front, and the
:class:`~authpulse.Session` on a :class:`~authpulse.RefreshTokenGrant` each
builds from the token set the user's sign-in gave."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from pydantic import SecretStr

from .._core.discovery import ProviderMetadata
from .._core.errors import DiscoveryError, LoginRequiredError
from .._core.retry import TokenRetry
from .._core.tokens import TokenSet
from .._runtime.clock import Clock, SystemClock
from .._runtime.flow import Flow, Op, run_async
from .._sessions.discovery_fetch import discovery_flow
from .._sessions.fetch import FetchContext, either_op
from .._sessions.oauth_grant import OAuthGrant, as_secret
from .._sessions.refresh_grant import RefreshTokenGrant
from .._sessions.session import Session, TokenUpdateHook
from .._sessions.session_config import check_arguments
from .._sessions.token_clients import TokenClients

if TYPE_CHECKING:
    from .._runtime.backend import AnyAsyncTransport, AnyTransport
    from .._stores.base import SessionStore

__all__ = ["LoginBase", "aclose_all", "apaired", "login_metadata", "paired"]

log = logging.getLogger("authpulse.login")

_T = TypeVar("_T")

#: the session's other arguments, as :class:`Session` defaults them
_SESSION_DEFAULTS: dict[str, object] = {
    "token": None,
    "policy": None,
    "verifier": None,
    "seed": None,
    "rng": None,
    "name": None,
    "identity": None,
    "lock_ttl": 30.0,
    "breaker": None,
    "request_window": 100,
}


class _WithoutRefreshToken(RefreshTokenGrant):
    """The grant of a login whose answer had no refresh token: once the access
    token expires, a new login is needed (:class:`LoginRequiredError`)."""

    login_url: str | None = None

    def _check_context(self, ctx: FetchContext) -> None:
        super()._check_context(ctx)
        if self.refresh_token_for(ctx.current) is None:
            raise LoginRequiredError(
                self.login_url,
                reason="the login gave no refresh token and its access token has expired",
            )


def paired(fn: Callable[[], _T]) -> tuple[_T, bool]:
    return fn(), False


async def apaired(fn: Callable[[], _T]) -> tuple[_T, bool]:
    return fn(), True


async def aclose_all(clients: TokenClients) -> None:
    clients.close()
    await clients.aclose()


def login_metadata(
    issuer: str,
    clients: TokenClients,
    *,
    clock: Clock,
    allow_insecure_http: bool,
    need: str,
) -> Flow[ProviderMetadata]:
    """The metadata of ``issuer`` (cached per issuer, as :func:`~authpulse.discover`
    keeps it), fetched with ``clients``, which are closed after; it must name
    the endpoint ``need`` and, if it lists PKCE methods, ``S256``."""
    try:
        client, _ = yield Op(partial(paired, clients.sync), partial(apaired, clients.async_))
        meta = yield from discovery_flow(
            issuer, client, clock=clock, allow_insecure_http=allow_insecure_http
        )
    finally:
        yield Op(clients.close, partial(aclose_all, clients))
    if meta.endpoint(need) is None:
        raise DiscoveryError(f"the metadata of {issuer} names no {need}", issuer=issuer, field=need)
    methods = meta.code_challenge_methods_supported
    if methods and "S256" not in methods:
        raise DiscoveryError(
            f"the metadata of {issuer} does not list S256 in code_challenge_methods_supported",
            issuer=issuer,
            field="code_challenge_methods_supported",
        )
    return meta


class LoginBase:
    """The session side of a login: the arguments of the session it gives,
    the token request context, and :meth:`_session_flow`."""

    def _setup_session(
        self,
        token_grant: OAuthGrant,
        client_secret: str | SecretStr | None,
        *,
        clock: Clock | None,
        transport: AnyTransport | None,
        async_transport: AnyAsyncTransport | None,
        store: SessionStore | None,
        store_key: str | None,
        on_token_update: TokenUpdateHook | None,
        retry: TokenRetry | None,
    ) -> None:
        """Check what the session will be given (refused now rather than after
        the user signed in) and keep it. ``token_grant`` is the login's token
        request: the session refreshes at its endpoint, as its client."""
        check_arguments(
            {
                **_SESSION_DEFAULTS,
                "source": token_grant,
                "on_token_update": on_token_update,
                "retry": retry,
                "clock": clock,
                "transport": transport,
                "async_transport": async_transport,
                "store": store,
                "store_key": store_key,
            }
        )
        self._token_grant = token_grant
        self._secret = as_secret(client_secret, "client_secret")
        self._clock_arg = clock
        self.clock: Clock = clock or SystemClock()
        self._transport = transport
        self._async_transport = async_transport
        self._store = store
        self._store_key = store_key
        self._hook = on_token_update
        self._retry = retry or TokenRetry()
        self._cancelled = threading.Event()

    async def await_session(self) -> Session:
        """:meth:`wait` for async code."""
        return await run_async(self._wait_flow())

    def cancel(self) -> None:
        """Stop a :meth:`wait` (from another thread or task): it raises
        :class:`~authpulse.LoginCancelledError` at its next step. A new
        :meth:`start` clears it."""
        self._cancelled.set()

    def _wait_flow(self) -> Flow[Session]:
        raise NotImplementedError

    def _context(self, clients: TokenClients) -> FetchContext:
        return FetchContext(
            current=None,
            clock=self.clock,
            retry=self._retry,
            rng=random.Random(),  # noqa: S311 - no retries here, nothing random is drawn
            default_lifetime=3600.0,
            http=clients.sync,
            ahttp=clients.async_,
        )

    def _session_flow(self, token: TokenSet, login_url: str) -> Flow[Session]:
        grant_of = self._token_grant
        kind = RefreshTokenGrant if token.refresh_token is not None else _WithoutRefreshToken
        grant = kind(
            None if grant_of.issuer else grant_of.token_url,
            grant_of.client_id,
            refresh_token=token.refresh_token,
            issuer=grant_of.issuer,
            client_auth=grant_of.client_auth,  # the login's own client authentication
            allow_insecure_http=grant_of.allow_insecure_http,
            revocation_url=grant_of.revocation_url,
        )
        grant.token_url, grant.endpoint = grant_of.token_url, grant_of.endpoint  # discovered
        if isinstance(grant, _WithoutRefreshToken):
            grant.login_url = login_url
        session = Session(
            grant,
            name="RefreshTokenGrant",
            token=token if self._store is None else None,
            clock=self._clock_arg,
            transport=self._transport,
            async_transport=self._async_transport,
            store=self._store,
            store_key=self._store_key,
            on_token_update=self._hook,
            retry=self._retry,
        )
        if self._store is not None:  # installed and written for the peers sharing the store
            yield Op(
                partial(session.set_token, token),
                partial(asyncio.to_thread, session.set_token, token),
            )
        if self._hook is not None:
            try:
                yield either_op(self._hook, token, offload=False)
            except Exception:
                log.exception("on_token_update hook failed for the login's token set")
        return session
