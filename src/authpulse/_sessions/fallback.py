"""The fallback-auth chain: refresh token → stored credentials → silent
re-authentication → login required.

A :class:`FallbackChain` is itself a token source. It asks its levels in
order, starting from the one that worked last; only errors that mean "this
level cannot produce a token" move it to the next level. Transient failures
(network, 5xx, throttling) are retried on the same level by the level
itself and then reported, so a session with a still-valid token stays
*degraded* instead of falling back needlessly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from typing import Literal

from pydantic import SecretStr

from .._core.errors import (
    ConfigurationError,
    CredentialsUnavailableError,
    LoginRequiredError,
    NoRefreshTokenError,
    OAuthError,
    TokenError,
)
from .._core.tokens import TokenSet
from .._runtime.flow import Flow
from .sources import (
    ClientAuthMethod,
    FetchContext,
    Fetched,
    FlowSource,
    FunctionSource,
    OAuthGrant,
    TokenSource,
    either_op,
    fetch_flow,
)

__all__ = [
    "MOVE_ON_OAUTH_ERRORS",
    "FallbackChain",
    "LoginRequired",
    "SilentReauth",
    "StoredCredentials",
    "moves_to_next_level",
]

log = logging.getLogger("authpulse.fallback")
_LOGIN_HOOK_FAILED = {"authpulse_event": "hook_failed", "authpulse_hook": "on_login_required"}

#: OAuth error codes that mean "this grant is dead": the chain moves on.
#: ``invalid_client`` and ``invalid_scope`` are configuration errors that
#: every level would hit alike, so they do not move the chain.
MOVE_ON_OAUTH_ERRORS = frozenset(
    {
        "invalid_grant",
        "unauthorized_client",
        "access_denied",
        "invalid_token",
        "login_required",
        "interaction_required",
        "consent_required",
    }
)


def moves_to_next_level(exc: BaseException) -> bool:
    """True if ``exc`` means the level cannot produce a token (revoked or
    invalid grant, no refresh token, credentials unavailable); False for
    everything else — in particular network errors, 5xx and throttling,
    which are retried on the same level."""
    if isinstance(exc, NoRefreshTokenError | CredentialsUnavailableError):
        return True
    return isinstance(exc, OAuthError) and exc.error in MOVE_ON_OAUTH_ERRORS


Credentials = tuple[str, str | SecretStr]


class StoredCredentials(OAuthGrant):
    """Sign in again with credentials kept in a credential store.

    ``load()`` returns ``(username, password)`` from wherever the application
    keeps them (a keychain, a vault), or ``None`` when there are none — which
    moves the chain to the next level. Uses the resource owner password
    grant (RFC 6749 §4.3), or, with ``grant="client_credentials"``, a client
    id and secret loaded the same way.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str | SecretStr | None = None,
        *,
        load: Callable[[], Credentials | None],
        grant: Literal["password", "client_credentials"] = "password",
        auth_method: ClientAuthMethod | None = None,
        scope: str | Iterable[str] | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        super().__init__(
            token_url,
            client_id,
            client_secret,
            auth_method=auth_method,
            scope=scope,
            allow_insecure_http=allow_insecure_http,
        )
        if not callable(load):
            raise ConfigurationError("StoredCredentials needs a load() callable")
        if grant not in ("password", "client_credentials"):
            raise ConfigurationError("grant must be 'password' or 'client_credentials'")
        self._load = load
        self.grant_type = grant
        self._loaded: tuple[str, SecretStr] | None = None

    def _credentials(self) -> tuple[str, SecretStr]:
        try:
            creds = self._load()
        except Exception as exc:
            raise CredentialsUnavailableError(
                f"loading stored credentials failed: {type(exc).__name__}"
            ) from exc
        if creds is None:
            raise CredentialsUnavailableError("no stored credentials")
        valid = (
            isinstance(creds, tuple)
            and len(creds) == 2
            and isinstance(creds[0], str)
            and isinstance(creds[1], str | SecretStr)
        )
        if not valid:
            del creds  # may hold the password: not in the error's frames
            raise CredentialsUnavailableError("stored credentials must be (username, password)")
        user, secret = creds
        loaded = (user, secret if isinstance(secret, SecretStr) else SecretStr(secret))
        self._loaded = loaded
        return loaded

    def _grant_params(self, current: TokenSet | None) -> dict[str, str]:
        user, secret = self._credentials()
        if self.grant_type == "password":
            return {"username": user, "password": secret.get_secret_value()}
        return {"client_id": user, "client_secret": secret.get_secret_value()}

    def _secrets(self, current: TokenSet | None) -> list[SecretStr]:
        out = super()._secrets(current)
        if self._loaded is not None:
            out.append(self._loaded[1])
        return out


SilentFn = (
    Callable[[TokenSet | None], TokenSet | None]
    | Callable[[TokenSet | None], Awaitable[TokenSet | None]]
)


class SilentReauth(FunctionSource):
    """Re-authenticate without the user: an SSO session cookie, a
    ``prompt=none`` request, a device-bound key — whatever your platform has.

    ``fn(current)`` (sync or async) returns a new :class:`TokenSet`, or
    ``None`` when silent re-authentication is not possible (which moves the
    chain on). A token set with a refresh token revives the primary level.
    """

    def __init__(self, fn: SilentFn, *, name: str = "silent re-authentication") -> None:
        if not callable(fn):
            raise ConfigurationError("SilentReauth needs a callable")
        self._fn = fn
        self.name = name

    def __repr__(self) -> str:
        return f"SilentReauth({self.name!r})"

    @staticmethod
    def _check(result: object) -> Fetched:
        if result is None:
            raise CredentialsUnavailableError("silent re-authentication is not possible")
        if not isinstance(result, TokenSet):
            raise TokenError(f"silent re-authentication returned {type(result).__name__}")
        return Fetched(result, None)


LoginHook = Callable[[LoginRequiredError], None] | Callable[[LoginRequiredError], Awaitable[None]]


class LoginRequired(FlowSource):
    """The last resort: nothing can produce a token without the user.

    Calls ``on_login_required(error)`` (sync or async) and raises
    :class:`LoginRequiredError` carrying ``login_url``: redirect the user
    there. Nothing is retried automatically after this.
    """

    def __init__(
        self, login_url: str | None = None, *, on_login_required: LoginHook | None = None
    ) -> None:
        if login_url is not None and not (
            isinstance(login_url, str) and login_url.startswith(("https://", "http://", "/"))
        ):
            raise ConfigurationError("login_url must be an http(s) URL or an absolute path")
        if on_login_required is not None and not callable(on_login_required):
            raise ConfigurationError("on_login_required must be callable")
        self.login_url = login_url
        self._hook = on_login_required

    def __repr__(self) -> str:
        return f"LoginRequired({self.login_url!r})"

    def _error(self, ctx: FetchContext) -> LoginRequiredError:
        if ctx.afresh is not None:
            reason = f"{ctx.afresh}, and every fallback level failed"
        else:
            reason = "every fallback level failed"
        return LoginRequiredError(self.login_url, reason=reason)

    def _fetch_flow(self, ctx: FetchContext) -> Flow[Fetched]:
        err = self._error(ctx)
        if self._hook is not None:
            try:
                yield either_op(self._hook, err, offload=False)
            except Exception:
                log.exception("on_login_required hook failed", extra=_LOGIN_HOOK_FAILED)
        raise err


class FallbackChain(FlowSource):
    """Token sources tried in order until one produces a token.

    >>> FallbackChain([
    ...     RefreshTokenGrant(url, cid, secret, refresh_token=rt),
    ...     StoredCredentials(url, cid, secret, load=keychain.load),
    ...     SilentReauth(sso.try_silent),
    ...     LoginRequired("https://app.example.com/login", on_login_required=notify),
    ... ])

    The level that worked last is tried first next time ("sticky"). While a
    fallback level is in use, the primary is tried again first once
    ``retry_primary_after`` seconds have passed (a refresh token obtained by
    a later level often revives it); failure there is quiet.
    """

    def __init__(self, levels: Sequence[TokenSource], *, retry_primary_after: float = 60.0) -> None:
        levels = list(levels)
        if not levels:
            raise ConfigurationError("a FallbackChain needs at least one level")
        for lv in levels:
            if not isinstance(lv, TokenSource):
                raise ConfigurationError(f"{lv!r} is not a token source")
        for lv in levels[:-1]:
            if isinstance(lv, LoginRequired):
                raise ConfigurationError("LoginRequired can only be the last level")
        if not retry_primary_after > 0:
            raise ConfigurationError("retry_primary_after must be positive")
        self.levels: tuple[TokenSource, ...] = tuple(levels)
        self.retry_primary_after = retry_primary_after
        self._level = 0
        self._since: float | None = None  # monotonic time the current fallback level began
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FallbackChain({len(self.levels)} levels, level={self._level})"

    @property
    def level(self) -> int:
        """The level that worked last (0 = primary)."""
        return self._level

    def level_name(self, level: int | None = None) -> str:
        lv = self.levels[self._level if level is None else level]
        return type(lv).__name__

    def _order(self, ctx: FetchContext) -> list[int]:
        start = self._level
        order = list(range(start, len(self.levels)))
        if (
            start > 0
            and self._since is not None
            and (ctx.clock.monotonic() - self._since >= self.retry_primary_after)
        ):
            order = [0, *order]
        return order

    def _settle(self, level: int, ctx: FetchContext) -> None:
        with self._lock:
            if level != self._level:
                log.info(
                    "fallback level %d -> %d (%s)",
                    self._level,
                    level,
                    self.level_name(level),
                    extra={
                        "authpulse_event": "fallback_level_changed",
                        "authpulse_level": level,
                        "authpulse_previous_level": self._level,
                        "authpulse_source": self.level_name(level),
                    },
                )
                self._level = level
                self._since = ctx.clock.monotonic() if level > 0 else None
            elif level > 0 and self._since is None:
                self._since = ctx.clock.monotonic()

    def _failed_primary_retry(self, ctx: FetchContext) -> None:
        with self._lock:
            self._since = ctx.clock.monotonic()  # wait another period before retrying

    def _fetch_flow(self, ctx: FetchContext) -> Flow[Fetched]:
        """The chain, written once: each level is asked through its ``fetch``
        (sync driver) or ``afetch`` (async driver)."""
        order = self._order(ctx)
        last: BaseException | None = None
        for i, level in enumerate(order):
            source = self.levels[level]
            try:
                fetched = yield from fetch_flow(source, ctx)
            except Exception as exc:
                if i == 0 and level == 0 and self._level > 0:
                    self._failed_primary_retry(ctx)  # a quiet retry of the primary
                    continue
                if not moves_to_next_level(exc) or level == len(self.levels) - 1:
                    raise
                last = exc
                continue
            self._settle(level, ctx)
            return replace(fetched, level=level)
        raise last if last is not None else CredentialsUnavailableError("no level left")


# The public names defined here show the module they are imported from.
for _public in (
    FallbackChain,
    LoginRequired,
    SilentReauth,
    StoredCredentials,
    moves_to_next_level,
):
    _public.__module__ = "authpulse"
del _public
