"""Token revocation (RFC 7009): :meth:`Session.revoke <authpulse.Session.revoke>`.

The refresh token is revoked first (``token_type_hint=refresh_token``): that
ends the grant. Then the access token, when it is not a JWT (a JWT access
token stays valid at resource servers until it expires whatever the IdP
says; an opaque one is checked at the IdP, so revoking it takes effect).
The client authenticates as the session's grant does, through the grant's
own request flow (:func:`~.oauth_grant.send_and_read`). Once the grant is
revoked the session forgets its token set, in memory and in its store.

Written once, as a flow, for the sync and the async driver.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from .._core.errors import ConfigurationError, RevocationError, TokenError
from .._core.tokens import TokenSet, token_response_outcome, unverified_claims
from .._runtime.backend import backend_of, check_endpoint_url, endpoint_label
from .._runtime.flow import Flow, Op
from .fetch import FetchContext
from .oauth_grant import OAuthGrant, _apaired, _paired, send_and_read
from .refresh_grant import RefreshTokenGrant
from .stored_records import revoked_token_set
from .token_clients import TokenClients

if TYPE_CHECKING:
    from .session import Session

__all__ = [
    "TokenPost",
    "aclose_clients",
    "revocation_targets",
    "revoke_flow",
]


class TokenPost(OAuthGrant):
    """A request about one token (revocation, RFC 7009; introspection, RFC 7662):
    ``token`` with its ``token_type_hint``, sent to ``url`` with ``grant``'s
    client authentication, without a ``grant_type``."""

    grant_type = ""

    def __init__(
        self,
        grant: OAuthGrant,
        url: str,
        token: SecretStr,
        hint: str,
        *,
        allow_insecure_http: bool | None = None,
    ) -> None:
        insecure = grant.allow_insecure_http if allow_insecure_http is None else allow_insecure_http
        # the grant's own client authentication (a signed assertion too, whose
        # audience may be the grant's issuer)
        super().__init__(
            url if grant.issuer is None else None,
            grant.client_id,
            issuer=grant.issuer,
            client_auth=grant.client_auth,
            allow_insecure_http=insecure,
        )
        if grant.issuer is not None:
            self.token_url = check_endpoint_url(
                url, what="the endpoint", allow_insecure_http=insecure
            )
            self.endpoint = endpoint_label(url)
        self._token = token
        self._hint = hint

    def _grant_params(self, current: TokenSet | None) -> dict[str, str]:
        return {"token": self._token.get_secret_value(), "token_type_hint": self._hint}

    def _secrets(self, current: TokenSet | None) -> list[SecretStr]:
        return [*super()._secrets(current), self._token]


def revocation_targets(grant: OAuthGrant, token: TokenSet | None) -> list[tuple[SecretStr, str]]:
    """What to revoke, in order, with each one's hint: the refresh token, then
    the access token unless it is a JWT (or there is no refresh token)."""
    refresh = (
        grant.refresh_token_for(token)
        if isinstance(grant, RefreshTokenGrant)
        else (token.refresh_token if token is not None else None)
    )
    out: list[tuple[SecretStr, str]] = []
    if refresh is not None:
        out.append((refresh, "refresh_token"))
    if token is not None and (
        refresh is None or unverified_claims(token.access_token.get_secret_value()) is None
    ):
        out.append((token.access_token, "access_token"))
    return out


def _refused(request: TokenPost, status: int, body: bytes, ctx: FetchContext) -> str:
    """The OAuth error code of a refused revocation ("" without one)."""
    outcome = token_response_outcome(
        status,
        body,
        now=ctx.clock.now(),
        content_type="application/json",
        secrets=request._secrets(None),
    )
    return getattr(outcome, "error", "") if isinstance(outcome, TokenError) else ""


def _revoke_one(request: TokenPost, client: Any, ctx: FetchContext) -> Flow[RevocationError | None]:
    deadline = ctx.clock.monotonic() + ctx.retry.deadline
    answer = yield from send_and_read(request, client, ctx, deadline, backend_of(client))
    endpoint = request.endpoint
    what = f"revoking the {request._hint.replace('_', ' ')} at {endpoint}"
    if isinstance(answer, TokenError):
        return RevocationError(f"{what} failed: {answer}", endpoint=endpoint)
    response, body = answer
    status = response.status_code
    if status == 200:
        return None
    code = _refused(request, status, body, ctx) or None
    said = f" ({code})" if code else ""
    return RevocationError(
        f"{what} failed: HTTP {status}{said}", error=code, status_code=status, endpoint=endpoint
    )


async def aclose_clients(clients: TokenClients) -> None:
    clients.close()
    await clients.aclose()


def revoke_flow(session: Session) -> Flow[int]:
    """Revoke the session's grant, then forget its token set (in memory and in
    its store); how many tokens were revoked. A failure raises
    :class:`RevocationError`: before the grant is revoked nothing is forgotten."""
    grant = session.source
    url = getattr(grant, "revocation_url", None)
    if not isinstance(grant, OAuthGrant) or url is None:
        raise ConfigurationError(
            f"session {session.name!r} cannot revoke: its source has no revocation_url"
        )
    current = session.token_set
    coord = session._coord
    if current is None and coord is not None:
        # a session that has not read its store yet (a new process): revoke what is
        # stored, rather than nothing and then forget the stored grant
        stored = yield Op(
            partial(coord.store.get_token, coord.key),
            partial(coord.store.aget_token, coord.key),
        )
        current = stored.token if stored is not None else None
    targets = revocation_targets(grant, current)
    # a closed session has closed its token clients: a revocation after the end
    # (a manager's purge) uses its own, closed again at once
    own = TokenClients(session._transport, session._async_transport) if session.closed else None
    clients = own if own is not None else session._token_clients()
    ctx = session._context(current)
    ctx.http, ctx.ahttp = clients.sync, clients.async_
    revoked = 0
    late: RevocationError | None = None
    try:
        client, _ = yield Op(
            partial(_paired, clients.sync, False), partial(_apaired, clients.async_)
        )
        for token, hint in targets:
            request = TokenPost(grant, url, token, hint)
            failure = yield from _revoke_one(request, client, ctx)
            if failure is not None and revoked == 0:
                raise failure  # the grant is intact: keep everything
            if failure is not None:
                late = failure
            else:
                revoked += 1
    finally:
        if own is not None:
            yield Op(own.close, partial(aclose_clients, own))
    del targets, current
    if isinstance(grant, RefreshTokenGrant):
        grant.forget()
    session._forget()
    if coord is not None:
        # the store keeps a manager's record under the same key: the token set is
        # replaced by an expired one without a refresh token, not deleted
        tomb = revoked_token_set(session.clock.now() + session._skew)
        yield Op(
            partial(coord.store.put_token, coord.key, tomb),
            partial(coord.store.aput_token, coord.key, tomb),
        )
    if late is not None:
        raise late
    return revoked
