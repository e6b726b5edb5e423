"""``IntrospectionProbe``: a heartbeat that asks the IdP (RFC 7662) whether
the session's access token is still active.

A heartbeat succeeds when the IdP answered; what it said goes to the
session's health: "the IdP says the token is inactive" costs 30 points
(``introspection``) until a new token is installed or the IdP says
otherwise. A failed request (network, HTTP error, an answer without
``active``) raises :class:`~authpulse.IntrospectionError`: a failed
heartbeat. The request is one flow for both drivers.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from .._core.errors import ConfigurationError, DiscoveryError, IntrospectionError, TokenError
from .._core.introspection import Introspection, parse_introspection
from .._runtime.backend import backend_of, check_endpoint_url
from .._runtime.flow import Flow, Op, run_async, run_sync
from .._sessions.client_auth import ClientAuth
from .._sessions.client_credentials import ClientCredentials
from .._sessions.discovery_fetch import discovery_flow
from .._sessions.oauth_grant import (
    ClientAuthMethod,
    OAuthGrant,
    _apaired,
    _check_where,
    _paired,
    send_and_read,
)
from .._sessions.revocation import TokenPost, aclose_clients
from .._sessions.token_clients import TokenClients

if TYPE_CHECKING:
    from .._runtime.backend import AnyAsyncTransport, AnyTransport
    from .._runtime.clock import Clock
    from .managed import ManagedSession

__all__ = ["IntrospectionProbe"]


class IntrospectionProbe:
    """A heartbeat probe that introspects the session's access token (RFC 7662).

    >>> probe = IntrospectionProbe("https://idp.example/introspect", "rs", "rs-secret")
    >>> manager = SessionManager(probe=probe)        # or create_session(..., probe=probe)

    Give the endpoint's ``url``, or ``issuer`` to find its
    ``introspection_endpoint`` by discovery (:func:`~authpulse.discover`) at
    the first heartbeat. The request authenticates with ``client_id`` / ``client_secret`` /
    ``auth_method`` or ``client_auth`` (a resource server's credentials, as many IdPs want), or,
    without a ``client_id``, as the session's own grant. It goes through
    ``transport`` / ``async_transport`` (default: the session's). The last
    verdict per session is in :attr:`last`.

    .. versionadded:: unreleased
    """

    def __init__(
        self,
        url: str | None = None,
        client_id: str | None = None,
        client_secret: str | SecretStr | None = None,
        *,
        issuer: str | None = None,
        auth_method: ClientAuthMethod | None = None,
        client_auth: ClientAuth | None = None,
        transport: AnyTransport | None = None,
        async_transport: AnyAsyncTransport | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        if (url is None) == (issuer is None):
            raise ConfigurationError(
                "IntrospectionProbe: give exactly one of url or issuer (to discover it)"
            )
        if url is not None:
            check_endpoint_url(
                url, what="IntrospectionProbe url", allow_insecure_http=allow_insecure_http
            )
        self._auth: OAuthGrant | None = None
        if client_id is not None:
            # the client authentication of a grant, checked as the grants check it
            self._auth = ClientCredentials(
                url,
                client_id,
                client_secret,
                issuer=issuer,
                auth_method=auth_method,
                client_auth=client_auth,
                allow_insecure_http=allow_insecure_http,
            )
        elif client_secret is not None or auth_method is not None or client_auth is not None:
            raise ConfigurationError("IntrospectionProbe: a client_secret needs its client_id")
        elif issuer is not None:
            _check_where(None, issuer, "url", allow_insecure_http)
        #: the introspection endpoint; with ``issuer=``, ``None`` until discovered
        self.url = url
        self.issuer = issuer
        self.allow_insecure_http = allow_insecure_http
        self._transport = transport
        self._async_transport = async_transport
        #: the last verdict for each session id
        self.last: dict[str, Introspection] = {}

    def __repr__(self) -> str:
        who = self._auth.client_id if self._auth is not None else "the session's client"
        where = repr(self.url) if self.url is not None else f"issuer={self.issuer!r}"
        return f"IntrospectionProbe({where}, as {who!r})"

    def __call__(self, ms: ManagedSession) -> bool:
        return run_sync(self._flow(ms))

    async def acall(self, ms: ManagedSession) -> bool:
        return await run_async(self._flow(ms))

    def _grant(self, ms: ManagedSession) -> OAuthGrant:
        if self._auth is not None:
            return self._auth
        source = ms.session.source
        if not isinstance(source, OAuthGrant):
            raise ConfigurationError(
                "IntrospectionProbe without a client_id needs a session on an OAuth grant"
            )
        return source

    def _discover(self, client: Any, grant: OAuthGrant, clock: Clock) -> Flow[None]:
        """The introspection endpoint from the issuer's metadata (cached per issuer)."""
        issuer = self.issuer or ""
        meta = yield from discovery_flow(
            issuer, client, clock=clock, allow_insecure_http=self.allow_insecure_http
        )
        url = meta.endpoint("introspection_endpoint", mtls=grant.client_auth.mtls)
        if url is None:
            raise DiscoveryError(
                f"the metadata of {issuer} names no introspection_endpoint",
                issuer=issuer,
                field="introspection_endpoint",
            )
        self.url = url

    def _flow(self, ms: ManagedSession) -> Flow[bool]:
        session = ms.session
        cur = session._cur
        if cur is None:  # nothing to ask about yet
            return True
        grant = self._grant(ms)
        clients = TokenClients(
            self._transport if self._transport is not None else session._transport,
            self._async_transport
            if self._async_transport is not None
            else session._async_transport,
        )
        ctx = session._context(cur.token)
        ctx.http, ctx.ahttp = clients.sync, clients.async_
        try:
            client: Any
            client, _ = yield Op(
                partial(_paired, clients.sync, False), partial(_apaired, clients.async_)
            )
            if self.url is None:
                yield from self._discover(client, grant, session.clock)
            request = TokenPost(
                grant,
                self.url or "",
                cur.token.access_token,
                "access_token",
                allow_insecure_http=self.allow_insecure_http or grant.allow_insecure_http,
            )
            deadline = session.clock.monotonic() + session.retry.deadline
            answer = yield from send_and_read(request, client, ctx, deadline, backend_of(client))
        finally:
            yield Op(clients.close, partial(aclose_clients, clients))
        if isinstance(answer, TokenError):
            raise IntrospectionError(f"introspection failed: {answer}", endpoint=request.endpoint)
        response, body = answer
        verdict = parse_introspection(response.status_code, body, endpoint=request.endpoint)
        self.last[ms.id] = verdict
        session._signals.introspected = (cur.generation, verdict.active)
        return True


# The public names defined here show the module they are imported from.
for _public in (IntrospectionProbe,):
    _public.__module__ = "authpulse"
del _public
