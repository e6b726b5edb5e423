"""Token sources: where a new :class:`TokenSet` comes from.

An OAuth grant builds its request and parses the answer without doing I/O;
the session's shell sends the request with its own httpx client (sync or
async), retrying transient failures. Anything else plugs in through
:class:`CallableSource`.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import inspect
import random
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar, cast, runtime_checkable
from urllib.parse import quote

import tenacity
from pydantic import SecretStr

from ._breaker import CircuitBreaker, Permit
from ._clock import Clock
from ._errors import (
    ConfigurationError,
    ErrorClass,
    NoRefreshTokenError,
    TokenEndpointError,
    TokenError,
)
from ._http import TIMEOUT_ERRORS, TRANSPORT_ERRORS, HttpModule, backend, backend_of, httpx
from ._retry import TokenRetry, classify_status, parse_retry_after, retrying_kwargs
from ._tokens import (
    TokenSet,
    _num_claim,
    estimate_skew,
    parse_token_response,
    unverified_claims,
)

__all__ = [
    "CallableSource",
    "ClientAuthMethod",
    "ClientCredentials",
    "FetchContext",
    "Fetched",
    "OAuthGrant",
    "RefreshTokenGrant",
    "TokenSource",
    "run_coroutine_blocking",
]

_T = TypeVar("_T")
_A = TypeVar("_A")


def run_coroutine_blocking(fn: Callable[[_A], Awaitable[_T]], arg: _A) -> _T:
    """Run ``await fn(arg)`` to completion from sync code.

    On a thread without an event loop it uses ``asyncio.run``; on a thread
    that is running a loop (sync code called from async code) it runs the
    coroutine on a private loop in a helper thread instead of failing.
    """

    async def main() -> _T:
        return await fn(arg)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="authpulse-sync") as ex:
        return ex.submit(asyncio.run, main()).result()


ClientAuthMethod = Literal["client_secret_basic", "client_secret_post", "none"]


@dataclass(frozen=True, slots=True)
class Fetched:
    """A new token set and, when the answer allowed an estimate, the clock skew.

    ``level`` is the fallback level that produced it (0: the primary source).
    """

    token: TokenSet
    skew: float | None = None
    level: int = 0


@dataclass(slots=True)
class FetchContext:
    """What a source may use while fetching. Built by the session for each fetch."""

    current: TokenSet | None
    clock: Clock
    retry: TokenRetry
    rng: random.Random
    default_lifetime: float
    http: Callable[[], httpx.Client]
    ahttp: Callable[[], httpx.AsyncClient]
    on_retry: Callable[[int, float, BaseException | None], None] | None = None
    attempts: int = field(default=0)
    #: the token endpoint's circuit breaker, when the session has one
    breaker: CircuitBreaker | None = None


@runtime_checkable
class TokenSource(Protocol):
    """Anything that can produce a token set, synchronously and asynchronously."""

    def fetch(self, ctx: FetchContext) -> Fetched: ...

    async def afetch(self, ctx: FetchContext) -> Fetched: ...


def _basic(client_id: str, secret: str) -> str:
    # RFC 6749 §2.3.1: both parts are form-url-encoded before base64.
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class OAuthGrant:
    """Base of the OAuth 2.0 grants: client authentication, request, parsing, retries."""

    grant_type: str = ""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str | SecretStr | None = None,
        *,
        auth_method: ClientAuthMethod | None = None,
        scope: str | Iterable[str] | None = None,
        extra_params: dict[str, str] | None = None,
    ) -> None:
        if not isinstance(token_url, str) or not token_url.startswith(("https://", "http://")):
            raise ConfigurationError("token_url must be an absolute http(s) URL")
        if not isinstance(client_id, str) or not client_id:
            raise ConfigurationError("client_id must be a non-empty string")
        secret = (
            client_secret
            if isinstance(client_secret, SecretStr)
            else SecretStr(client_secret)
            if client_secret is not None
            else None
        )
        method = auth_method or ("client_secret_basic" if secret is not None else "none")
        if method not in ("client_secret_basic", "client_secret_post", "none"):
            raise ConfigurationError(f"unsupported client auth method {method!r}")
        if method != "none" and secret is None:
            raise ConfigurationError(f"{method} needs a client_secret")
        self.token_url = token_url
        self.client_id = client_id
        self._secret = secret
        self.auth_method: ClientAuthMethod = method
        self.scope = (scope if isinstance(scope, str) or scope is None else " ".join(scope)) or None
        self._extra = dict(extra_params or {})

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(token_url={self.token_url!r}, client_id={self.client_id!r},"
            f" auth_method={self.auth_method!r})"
        )

    # -- pure parts ------------------------------------------------------------------

    def _grant_params(self, current: TokenSet | None) -> dict[str, str]:
        raise NotImplementedError

    def _secrets(self, current: TokenSet | None) -> list[str]:
        if self._secret is None:
            return []
        secret = self._secret.get_secret_value()
        out = [secret]
        if self.auth_method == "client_secret_basic":
            # the Basic credentials decode to the secret: an IdP echoing the header leaks it
            out.append(_basic(self.client_id, secret)[len("Basic ") :])
        return out

    def build_request(
        self, current: TokenSet | None, *, http: HttpModule | None = None
    ) -> httpx.Request:
        """The token request for this grant (no I/O), built with ``http`` (an
        HTTP library module: ``httpx`` or ``httpx2``; default: the default backend)."""
        form = {"grant_type": self.grant_type, **self._grant_params(current), **self._extra}
        if self.scope and "scope" not in form:
            form["scope"] = self.scope
        headers = {"Accept": "application/json"}
        secret = self._secret.get_secret_value() if self._secret is not None else ""
        if self.auth_method == "client_secret_basic":
            headers["Authorization"] = _basic(self.client_id, secret)
        else:
            form["client_id"] = self.client_id
            if self.auth_method == "client_secret_post":
                form["client_secret"] = secret
        hx = http if http is not None else backend()
        return hx.Request("POST", self.token_url, data=form, headers=headers)

    def parse(self, response: httpx.Response, ctx: FetchContext) -> Fetched:
        """Turn an answer into a token set or raise a typed error (no I/O)."""
        local_now = ctx.clock.now()
        status = response.status_code
        cls = classify_status(status, response.headers)
        if cls in (ErrorClass.SERVER, ErrorClass.THROTTLED):
            raise TokenEndpointError(
                f"token endpoint answered HTTP {status}",
                error_class=cls,
                status_code=status,
                retry_after=parse_retry_after(
                    response.headers.get("retry-after"),
                    now=local_now,
                    date=response.headers.get("date"),
                ),
            )
        ctype = response.headers.get("content-type")
        if cls is not None and "json" not in (ctype or ""):
            raise TokenEndpointError(
                f"token endpoint answered HTTP {status} without an OAuth error body",
                error_class=ErrorClass.CLIENT,
                status_code=status,
            )
        iat = None
        if status < 400:
            # A JWT access token's iat is the IdP's clock to the second.
            try:
                body = response.json()
                access = body.get("access_token") if isinstance(body, dict) else None
                claims = unverified_claims(access) if isinstance(access, str) else None
                # finite floats only: a huge or infinite iat must not become the skew
                iat = _num_claim(claims, "iat")
            except (ValueError, RecursionError):  # parse_token_response reports the body
                iat = None
        skew = estimate_skew(local_now=local_now, date_header=response.headers.get("date"), iat=iat)
        token = parse_token_response(
            status,
            response.content,
            now=local_now + skew,
            content_type=ctype,
            default_lifetime=ctx.default_lifetime,
            secrets=self._secrets(ctx.current),
        )
        return Fetched(self._carry_over(token, ctx.current), skew)

    def _carry_over(self, token: TokenSet, current: TokenSet | None) -> TokenSet:
        return token

    # -- shells ------------------------------------------------------------------------

    def _request_with_timeout(
        self, ctx: FetchContext, deadline: float, http: HttpModule | None
    ) -> httpx.Request:
        request = self.build_request(ctx.current, http=http)
        remaining = max(deadline - ctx.clock.monotonic(), 0.001)
        request.extensions["timeout"] = httpx.Timeout(
            min(ctx.retry.attempt_timeout, remaining)
        ).as_dict()
        return request

    def _on_retry(self, ctx: FetchContext) -> Callable[[tenacity.RetryCallState], None]:
        def hook(state: tenacity.RetryCallState) -> None:
            if ctx.on_retry is not None:
                exc = state.outcome.exception() if state.outcome else None
                ctx.on_retry(state.attempt_number, state.upcoming_sleep or 0.0, exc)

        return hook

    def fetch(self, ctx: FetchContext) -> Fetched:
        deadline = ctx.clock.monotonic() + ctx.retry.deadline
        client = ctx.http()
        http = backend_of(client)

        def attempt() -> Fetched:
            ctx.attempts += 1
            permit = ctx.breaker.before_call() if ctx.breaker is not None else None
            with _guarded(permit):
                request = self._request_with_timeout(ctx, deadline, http)
                try:
                    response = client.send(request)
                    response.read()
                except TRANSPORT_ERRORS as exc:
                    raise _network_error(exc) from exc
                return self.parse(response, ctx)

        retrying = tenacity.Retrying(
            sleep=ctx.clock.sleep,
            **retrying_kwargs(
                ctx.retry,
                clock=ctx.clock,
                deadline=deadline,
                rng=ctx.rng,
                on_retry=self._on_retry(ctx),
            ),
        )
        return _with_attempts(lambda: retrying(attempt), ctx)

    async def afetch(self, ctx: FetchContext) -> Fetched:
        deadline = ctx.clock.monotonic() + ctx.retry.deadline
        client = ctx.ahttp()
        http = backend_of(client)

        async def attempt() -> Fetched:
            ctx.attempts += 1
            permit = ctx.breaker.before_call() if ctx.breaker is not None else None
            with _guarded(permit):
                request = self._request_with_timeout(ctx, deadline, http)
                try:
                    response = await client.send(request)
                    await response.aread()
                except TRANSPORT_ERRORS as exc:
                    raise _network_error(exc) from exc
                return self.parse(response, ctx)

        retrying = tenacity.AsyncRetrying(
            sleep=ctx.clock.asleep,
            **retrying_kwargs(
                ctx.retry,
                clock=ctx.clock,
                deadline=deadline,
                rng=ctx.rng,
                on_retry=self._on_retry(ctx),
            ),
        )
        try:
            return await retrying(attempt)
        except TokenEndpointError as exc:
            exc.attempts = ctx.attempts
            raise


def _with_attempts(call: Callable[[], Fetched], ctx: FetchContext) -> Fetched:
    try:
        return call()
    except TokenEndpointError as exc:
        exc.attempts = ctx.attempts
        raise


@contextlib.contextmanager
def _guarded(permit: Permit | None) -> Iterator[None]:
    """Report one token endpoint attempt's outcome to the breaker's permit.

    OAuth errors are the client's problem (neutral for the breaker); network,
    5xx and throttling count as failures.
    """
    if permit is None:
        yield
        return
    try:
        yield
    except TokenError as exc:
        permit.failure(exc.error_class)
        raise
    except BaseException:
        permit.failure(ErrorClass.NETWORK)
        raise
    permit.success()


def _network_error(exc: httpx.TransportError) -> TokenEndpointError:
    kind = "timed out" if isinstance(exc, TIMEOUT_ERRORS) else "failed"
    return TokenEndpointError(
        f"token endpoint request {kind}: {type(exc).__name__}", error_class=ErrorClass.NETWORK
    )


class ClientCredentials(OAuthGrant):
    """The client credentials grant (RFC 6749 §4.4): a service acting as itself."""

    grant_type = "client_credentials"

    def _grant_params(self, current: TokenSet | None) -> dict[str, str]:
        return {}


class RefreshTokenGrant(OAuthGrant):
    """The refresh token grant (RFC 6749 §6), with rotation.

    The refresh token in use is the newest one the session holds; the one
    given here seeds the first refresh. When an answer carries a new refresh
    token it replaces the old one; when it carries none, the old one is kept.
    """

    grant_type = "refresh_token"

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str | SecretStr | None = None,
        *,
        refresh_token: str | SecretStr | None,
        auth_method: ClientAuthMethod | None = None,
        scope: str | Iterable[str] | None = None,
        extra_params: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            token_url,
            client_id,
            client_secret,
            auth_method=auth_method,
            scope=scope,
            extra_params=extra_params,
        )
        if refresh_token is not None and not isinstance(refresh_token, str | SecretStr):
            raise ConfigurationError("refresh_token must be a string")
        rt = (
            refresh_token
            if isinstance(refresh_token, SecretStr) or refresh_token is None
            else SecretStr(refresh_token)
        )
        self._initial = rt if rt is None or rt.get_secret_value() else None

    def refresh_token_for(self, current: TokenSet | None) -> SecretStr | None:
        """The refresh token the next request will use."""
        if current is not None and current.refresh_token is not None:
            return current.refresh_token
        return self._initial

    def _grant_params(self, current: TokenSet | None) -> dict[str, str]:
        rt = self.refresh_token_for(current)
        if rt is None:
            raise NoRefreshTokenError("no refresh token is available for this session")
        return {"refresh_token": rt.get_secret_value()}

    def _secrets(self, current: TokenSet | None) -> list[str]:
        rt = self.refresh_token_for(current)
        return super()._secrets(current) + ([rt.get_secret_value()] if rt else [])

    def _carry_over(self, token: TokenSet, current: TokenSet | None) -> TokenSet:
        if token.refresh_token is None:
            return token.with_refresh_token(self.refresh_token_for(current))
        return token


SyncTokenFn = Callable[[TokenSet | None], TokenSet]
AsyncTokenFn = Callable[[TokenSet | None], Awaitable[TokenSet]]


class CallableSource:
    """A source backed by your own function.

    ``fn(current)`` receives the current token set (or ``None``) and returns
    a new :class:`TokenSet` whose times are on the local clock. It may be a
    plain function or a coroutine function. In async code a plain function
    runs in a worker thread so it never blocks the event loop; in sync code
    a coroutine function runs on a private event loop (in a helper thread if
    the calling thread is already running one).
    """

    def __init__(self, fn: SyncTokenFn | AsyncTokenFn, *, name: str | None = None) -> None:
        if not callable(fn):
            raise ConfigurationError("CallableSource needs a callable")
        self._fn = fn
        self._is_async = inspect.iscoroutinefunction(fn)
        self.name = name or getattr(fn, "__qualname__", type(fn).__name__)

    def __repr__(self) -> str:
        return f"CallableSource({self.name!r})"

    @staticmethod
    def _check(result: object) -> Fetched:
        if not isinstance(result, TokenSet):
            raise TokenError(f"token callable returned {type(result).__name__}, not a TokenSet")
        return Fetched(result, None)

    def fetch(self, ctx: FetchContext) -> Fetched:
        if self._is_async:
            fn = cast("AsyncTokenFn", self._fn)
            return self._check(run_coroutine_blocking(fn, ctx.current))
        return self._check(self._fn(ctx.current))

    async def afetch(self, ctx: FetchContext) -> Fetched:
        if self._is_async:
            return self._check(await self._fn(ctx.current))  # type: ignore[misc]
        return self._check(await asyncio.to_thread(self._fn, ctx.current))
