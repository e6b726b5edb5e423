"""The token exchange grant (RFC 8693): trade a subject token, and optionally
an actor token, for a new token at the token endpoint."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any, Protocol, TypeAlias, cast, runtime_checkable

from pydantic import SecretStr

from .._core.errors import ConfigurationError, SubjectTokenError, TokenError
from .._core.exchange import (
    ACCESS_TOKEN_TYPE,
    TOKEN_EXCHANGE_GRANT,
    check_exchange_answer,
    check_targets,
    check_token_type_uri,
    exchange_form,
)
from .._core.tokens import TokenSet
from .._runtime.backend import httpx
from .._runtime.flow import Flow, Op
from .client_auth import ClientAuth
from .fetch import FetchContext, Fetched, run_coroutine_blocking
from .oauth_grant import ClientAuthMethod, OAuthGrant

__all__ = ["SubjectToken", "TokenExchange", "TokenHolder"]


@runtime_checkable
class TokenHolder(Protocol):
    """What gives a fresh access token in sync and in async code: a :class:`Session`."""

    def token(self) -> str: ...

    async def atoken(self) -> str: ...


#: where a subject or actor token comes from: a session (its current fresh
#: access token), a function returning a token (or an awaitable of one), or
#: a fixed token
SubjectToken: TypeAlias = (
    TokenHolder | Callable[[], str | SecretStr | Awaitable[str | SecretStr]] | SecretStr | str
)


def _checked(value: object, role: str) -> SecretStr:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        raise SubjectTokenError(role, "its source gave None")
    if not isinstance(value, str):
        raise SubjectTokenError(role, f"its source gave a {type(value).__name__}, not a string")
    if not value:
        raise SubjectTokenError(role, "its source gave an empty string")
    return SecretStr(value)


async def _awaited(value: Awaitable[Any]) -> Any:
    return await value


def _take(source: object, role: str) -> SecretStr:
    """The token from ``source`` in sync code (a coroutine function, or an
    awaitable result, runs on a private loop)."""
    if isinstance(source, TokenHolder):
        return _checked(source.token(), role)
    if isinstance(source, SecretStr):
        return _checked(source, role)
    value = cast("Callable[[], object]", source)()
    if inspect.isawaitable(value):
        value = run_coroutine_blocking(_awaited, value)
    return _checked(value, role)


async def _atake(source: object, role: str) -> SecretStr:
    """The token from ``source`` in async code, without blocking the loop on
    a session's refresh."""
    if isinstance(source, TokenHolder):
        return _checked(await source.atoken(), role)
    if isinstance(source, SecretStr):
        return _checked(source, role)
    value = cast("Callable[[], object]", source)()
    if inspect.isawaitable(value):
        value = await value
    return _checked(value, role)


def _source(value: object, role: str) -> object:
    if isinstance(value, str):
        return _checked(value, role)  # an empty fixed token is refused at once
    if isinstance(value, SecretStr):
        return _checked(value, role)
    if isinstance(value, TokenHolder) or callable(value):
        return value
    raise ConfigurationError(
        f"{role}_token must be a Session, a function returning a token, or a SecretStr"
    )


def _kind(source: object) -> str:
    if isinstance(source, SecretStr):
        return "fixed"
    if isinstance(source, TokenHolder):
        return type(source).__name__
    return "callable"


class TokenExchange(OAuthGrant):
    """The token exchange grant (RFC 8693): a new token for a subject token.

    ``subject_token`` (and ``actor_token``) is a :class:`Session`, whose
    current fresh access token is taken at each exchange (``token()`` in sync
    code, ``await atoken()`` in async code), a function returning a token
    (``str`` or ``SecretStr``, or an awaitable of one), or a fixed token.
    Its type (``subject_token_type``, ``actor_token_type``) is an absolute
    URI, an access token by default. ``resource`` (absolute URIs) and
    ``audience`` take one value or several; ``requested_token_type`` asks
    for a kind of token. The answer must carry ``issued_token_type``, kept
    on the token set; a ``token_type`` of ``N_A`` (not an access token) is
    accepted only when ``requested_token_type`` asked for another kind.

    Give ``token_url``, or ``issuer`` to discover it at the first exchange
    (:func:`~authpulse.discover`, with its revocation endpoint); the client
    authenticates by ``auth_method`` with ``client_secret``, or by
    ``client_auth`` (e.g. :class:`~authpulse.PrivateKeyJWT`).

    The session refreshes by exchanging again, with the subject's token of
    that moment; a refresh token in the answer is kept on the token set but
    not used.

    .. versionadded:: unreleased
    """

    grant_type = TOKEN_EXCHANGE_GRANT

    def __init__(
        self,
        token_url: str | None = None,
        client_id: str | None = None,
        client_secret: str | SecretStr | None = None,
        *,
        subject_token: SubjectToken,
        issuer: str | None = None,
        client_auth: ClientAuth | None = None,
        revocation_url: str | None = None,
        subject_token_type: str = ACCESS_TOKEN_TYPE,
        actor_token: SubjectToken | None = None,
        actor_token_type: str | None = None,
        resource: str | Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        requested_token_type: str | None = None,
        auth_method: ClientAuthMethod | None = None,
        scope: str | Iterable[str] | None = None,
        extra_params: dict[str, str] | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        super().__init__(
            token_url,
            client_id,
            client_secret,
            issuer=issuer,
            auth_method=auth_method,
            client_auth=client_auth,
            scope=scope,
            extra_params=extra_params,
            allow_insecure_http=allow_insecure_http,
            revocation_url=revocation_url,
        )
        self._subject = _source(subject_token, "subject")
        self.subject_token_type = check_token_type_uri(subject_token_type, "subject_token_type")
        self._actor = None if actor_token is None else _source(actor_token, "actor")
        if actor_token is None and actor_token_type is not None:
            raise ConfigurationError("actor_token_type needs an actor_token")
        self.actor_token_type = (
            None
            if actor_token is None
            else check_token_type_uri(actor_token_type or ACCESS_TOKEN_TYPE, "actor_token_type")
        )
        self.resource = check_targets(resource, "resource", uri=True)
        self.audience = check_targets(audience, "audience", uri=False)
        self.requested_token_type = (
            None
            if requested_token_type is None
            else check_token_type_uri(requested_token_type, "requested_token_type")
        )
        #: the tokens of one exchange, set on the copy that makes it
        self._tokens: tuple[SecretStr, SecretStr | None] | None = None

    def __repr__(self) -> str:
        actor = "" if self._actor is None else f", actor={_kind(self._actor)}"
        where = f"token_url={self.token_url!r}" if self.token_url else f"issuer={self.issuer!r}"
        return (
            f"{type(self).__name__}({where}, client_id={self.client_id!r},"
            f" auth_method={self.auth_method!r}, subject={_kind(self._subject)}{actor})"
        )

    # -- pure parts ------------------------------------------------------------------

    def _present(self) -> tuple[SecretStr, SecretStr | None]:
        if self._tokens is not None:
            return self._tokens
        subject, actor = self._subject, self._actor
        if isinstance(subject, SecretStr) and (actor is None or isinstance(actor, SecretStr)):
            return subject, actor  # fixed tokens: the request can be built at any time
        raise SubjectTokenError("subject", "it is taken from its source when the token is fetched")

    def _grant_params(self, current: TokenSet | None) -> dict[str, str | list[str]]:
        subject, actor = self._present()
        return exchange_form(
            subject_token=subject.get_secret_value(),
            subject_token_type=self.subject_token_type,
            actor_token=actor.get_secret_value() if actor is not None else None,
            actor_token_type=self.actor_token_type,
            resources=self.resource,
            audiences=self.audience,
            requested_token_type=self.requested_token_type,
        )

    def _secrets(self, current: TokenSet | None) -> list[SecretStr]:
        tokens = [t for t in self._tokens or () if t is not None]
        return super()._secrets(current) + tokens

    def _outcome(
        self, status: int, headers: httpx.Headers, content: bytes, ctx: FetchContext
    ) -> Fetched | TokenError:
        outcome = super()._outcome(status, headers, content, ctx)
        if isinstance(outcome, TokenError):
            return outcome
        bad = check_exchange_answer(
            outcome.token, requested_token_type=self.requested_token_type, status=status
        )
        return outcome if bad is None else bad

    # -- the shell -----------------------------------------------------------------------

    def _fetch_flow(self, ctx: FetchContext) -> Flow[Fetched]:
        """Take the subject (and actor) token in the driver's own way, then make
        the request with them on a copy of this grant (a grant shared by
        sessions exchanges for each with its own tokens)."""
        subject: SecretStr = yield _take_op(self._subject, "subject")
        actor: SecretStr | None = None
        if self._actor is not None:
            actor = yield _take_op(self._actor, "actor")
        bound = copy.copy(self)
        bound._tokens = (subject, actor)
        try:
            return (yield from OAuthGrant._fetch_flow(bound, ctx))
        finally:  # what the copy discovered (issuer=) is this grant's
            if not self.token_url and bound.token_url:
                self.token_url, self.endpoint = bound.token_url, bound.endpoint
                if self.revocation_url is None:
                    self.revocation_url = bound.revocation_url


def _take_op(source: object, role: str) -> Op[SecretStr]:
    return Op(partial(_take, source, role), partial(_atake, source, role))


# The public names defined here show the module they are imported from.
for _public in (TokenExchange,):
    _public.__module__ = "authpulse"
del _public
