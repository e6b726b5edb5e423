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
import json
import random
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote

import tenacity
from pydantic import SecretStr

from .._core.errors import (
    ConfigurationError,
    ErrorClass,
    NoRefreshTokenError,
    TokenEndpointError,
    TokenError,
    TokenResponseError,
)
from .._core.retry import TokenRetry, classify_status, parse_retry_after
from .._core.tokens import (
    Redacted,
    TokenSet,
    _num_claim,
    estimate_skew,
    token_response_outcome,
    unverified_claims,
)
from .._runtime.backend import (
    REQUEST_ERRORS,
    TIMEOUT_ERRORS,
    TRANSPORT_ERRORS,
    HttpModule,
    backend,
    backend_of,
    check_endpoint_url,
    endpoint_label,
    httpx,
)
from .._runtime.breakers import CircuitBreaker, Permit
from .._runtime.clock import Clock
from .._runtime.flow import Flow, Op, run_async, run_sync
from .._runtime.retrying import retrying_kwargs

__all__ = [
    "CallableSource",
    "ClientAuthMethod",
    "ClientCredentials",
    "FetchContext",
    "Fetched",
    "FunctionSource",
    "OAuthGrant",
    "RefreshTokenGrant",
    "TokenSource",
    "either_op",
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


def either_op(fn: Callable[[_A], Any], arg: _A, *, offload: bool) -> Op[Any]:
    """The op of calling ``fn(arg)``, a plain or a coroutine function, from either
    driver: sync code runs a coroutine function on a private loop
    (:func:`run_coroutine_blocking`); async code awaits it, and runs a plain
    function in a worker thread if ``offload`` (it may block), else in place.
    A plain function's awaitable result is awaited in async code."""
    if inspect.iscoroutinefunction(fn):
        return Op(partial(run_coroutine_blocking, fn, arg), partial(_awaited, fn, arg))
    if offload:
        return Op(partial(fn, arg), partial(asyncio.to_thread, fn, arg))
    return Op(partial(fn, arg), partial(_awaited, fn, arg))


async def _awaited(fn: Callable[[_A], Any], arg: _A) -> Any:
    result = fn(arg)
    return await result if inspect.isawaitable(result) else result


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
    """What a source may use while fetching. Built by the session for each fetch.

    ``afresh`` is set (to the reason, never the record's contents) when the
    token set stored for the session could not be used — corrupt, or
    plaintext in an encrypted store: ``current`` is then ``None`` and the
    source must get a token without it. A source that cannot (it needs the
    refresh token the record held) raises :class:`NoRefreshTokenError`, and
    the session requires a new login.

    .. versionchanged:: unreleased
       ``afresh``.
    """

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
    #: why the stored token set is unusable, when the source is asked afresh
    afresh: str | None = None


@runtime_checkable
class TokenSource(Protocol):
    """Anything that can produce a token set, synchronously and asynchronously."""

    def fetch(self, ctx: FetchContext) -> Fetched: ...

    async def afetch(self, ctx: FetchContext) -> Fetched: ...


def _basic(client_id: str, secret: str) -> str:
    # RFC 6749 §2.3.1: both parts are form-url-encoded before base64.
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _as_secret(value: object, what: str) -> SecretStr | None:
    if value is None or isinstance(value, SecretStr):
        secret = value
    elif isinstance(value, str):
        secret = SecretStr(value)
    else:
        raise ConfigurationError(f"{what} must be a string or a SecretStr")
    if secret is not None and not isinstance(secret.get_secret_value(), str):
        raise ConfigurationError(f"{what} must be a string or a SecretStr")
    return secret


def _check_params(extra_params: object) -> dict[str, str]:
    if extra_params is None:
        return {}
    if not isinstance(extra_params, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in extra_params.items()
    ):
        raise ConfigurationError("extra_params must be a dict of strings to strings")
    return dict(extra_params)


def _check_scope(scope: object) -> str | None:
    if scope is None or isinstance(scope, str):
        return scope or None
    if isinstance(scope, Iterable):
        parts = list(scope)
        if all(isinstance(p, str) for p in parts):
            return " ".join(parts) or None
    raise ConfigurationError("scope must be a string or a list of strings")


class OAuthGrant:
    """Base of the OAuth 2.0 grants: client authentication, request, parsing, retries.

    ``token_url`` must be ``https://``; plain ``http://`` is accepted only to
    a loopback host (``127.0.0.0/8``, ``::1``, ``localhost``) or with
    ``allow_insecure_http=True``, since the client secret and the refresh
    token travel in the request.

    .. versionchanged:: unreleased
       ``allow_insecure_http``; every argument is checked here.
    """

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
        allow_insecure_http: bool = False,
    ) -> None:
        if not isinstance(allow_insecure_http, bool):
            raise ConfigurationError("allow_insecure_http must be a boolean")
        check_endpoint_url(token_url, what="token_url", allow_insecure_http=allow_insecure_http)
        if not isinstance(client_id, str) or not client_id:
            raise ConfigurationError("client_id must be a non-empty string")
        secret = _as_secret(client_secret, "client_secret")
        method = auth_method or ("client_secret_basic" if secret is not None else "none")
        if method not in ("client_secret_basic", "client_secret_post", "none"):
            raise ConfigurationError(f"unsupported client auth method {method!r}")
        if method != "none" and secret is None:
            raise ConfigurationError(f"{method} needs a client_secret")
        self.token_url = token_url
        self.client_id = client_id
        self._secret = secret
        self.auth_method: ClientAuthMethod = method
        self.allow_insecure_http = allow_insecure_http
        self.scope = _check_scope(scope)
        self._extra = _check_params(extra_params)
        #: the endpoint as error messages name it (no query, no userinfo)
        self.endpoint = endpoint_label(token_url)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(token_url={self.token_url!r}, client_id={self.client_id!r},"
            f" auth_method={self.auth_method!r})"
        )

    # -- pure parts ------------------------------------------------------------------

    def _grant_params(self, current: TokenSet | None) -> dict[str, str]:
        raise NotImplementedError

    def _secrets(self, current: TokenSet | None) -> list[SecretStr]:
        """What the request carries that must never be shown (wrapped)."""
        if self._secret is None:
            return []
        out = [self._secret]
        if self.auth_method == "client_secret_basic":
            # the Basic credentials decode to the secret: an IdP echoing the header leaks it
            basic = _basic(self.client_id, self._secret.get_secret_value())
            out.append(SecretStr(basic[len("Basic ") :]))
        return out

    def build_request(
        self, current: TokenSet | None, *, http: HttpModule | None = None
    ) -> httpx.Request:
        """The token request for this grant (no I/O), built with ``http`` (an
        HTTP library module: ``httpx`` or ``httpx2``; default: the default backend)."""
        hx = http if http is not None else backend()
        form = {"grant_type": self.grant_type, **self._grant_params(current), **self._extra}
        # encodings authpulse inflates itself, within the body size limit
        headers = {"Accept": "application/json", "Accept-Encoding": "gzip, deflate"}
        try:
            if self.scope and "scope" not in form:
                form["scope"] = self.scope
            secret = self._secret
            if self.auth_method == "client_secret_basic" and secret is not None:
                headers["Authorization"] = _basic(self.client_id, secret.get_secret_value())
            else:
                form["client_id"] = self.client_id
                if self.auth_method == "client_secret_post" and secret is not None:
                    form["client_secret"] = secret.get_secret_value()
            return hx.Request("POST", self.token_url, data=form, headers=headers)
        finally:
            # encoded into the request: no frame of an error keeps the values
            form.clear()
            headers.clear()

    def parse(self, response: httpx.Response, ctx: FetchContext) -> Fetched:
        """Turn an answer into a token set or raise a typed error (no I/O)."""
        outcome = self._outcome(response.status_code, response.headers, response.content, ctx)
        del response
        if isinstance(outcome, TokenError):
            raise outcome
        return outcome

    def _outcome(
        self, status: int, headers: httpx.Headers, content: bytes, ctx: FetchContext
    ) -> Fetched | TokenError:
        """:meth:`parse` with the error returned, not raised: the caller raises
        it from a frame that holds neither the body nor a secret."""
        local_now = ctx.clock.now()
        cls = classify_status(status, headers)
        if cls in (ErrorClass.SERVER, ErrorClass.THROTTLED):
            return TokenEndpointError(
                f"token endpoint {self.endpoint} answered HTTP {status}",
                error_class=cls,
                status_code=status,
                retry_after=parse_retry_after(
                    headers.get("retry-after"), now=local_now, date=headers.get("date")
                ),
                endpoint=self.endpoint,
            )
        ctype = headers.get("content-type")
        if cls is not None and "json" not in (ctype or ""):
            return TokenEndpointError(
                f"token endpoint {self.endpoint} answered HTTP {status} without an OAuth "
                "error body",
                error_class=ErrorClass.CLIENT,
                status_code=status,
                endpoint=self.endpoint,
            )
        # A JWT access token's iat is the IdP's clock to the second.
        iat = _iat_of(content) if status < 400 else None
        skew = estimate_skew(local_now=local_now, date_header=headers.get("date"), iat=iat)
        token = token_response_outcome(
            status,
            content,
            now=local_now + skew,
            content_type=ctype,
            default_lifetime=ctx.default_lifetime,
            secrets=self._secrets(ctx.current),
        )
        if isinstance(token, TokenError):
            return token
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

    def _failed(self, exc: BaseException, ctx: FetchContext) -> TokenError:
        """The typed error for an httpx error of one attempt (built, not raised:
        its cause is a copy of ``exc`` without the request)."""
        return _request_error(exc, self.endpoint, Redacted(self._secrets(ctx.current)))

    def fetch(self, ctx: FetchContext) -> Fetched:
        return run_sync(self._fetch(ctx))

    async def afetch(self, ctx: FetchContext) -> Fetched:
        return await run_async(self._fetch(ctx))

    def _fetch(self, ctx: FetchContext) -> Flow[Fetched]:
        """The token request with its retries, written once: the sync driver
        sends it with the session's ``httpx.Client`` and sleeps on the clock,
        the async one with its ``AsyncClient`` and ``asleep``."""
        deadline = ctx.clock.monotonic() + ctx.retry.deadline
        client: Any = yield Op(ctx.http, partial(_async_value, ctx.ahttp))
        http = backend_of(client)
        sleeps: list[float] = []  # tenacity asks; the driver sleeps
        retrying = tenacity.Retrying(
            sleep=sleeps.append,
            **retrying_kwargs(
                ctx.retry,
                clock=ctx.clock,
                deadline=deadline,
                rng=ctx.rng,
                on_retry=self._on_retry(ctx),
            ),
        )
        fetched: Fetched | None = None
        try:
            for attempt in retrying:
                if sleeps:
                    pause = sleeps.pop()
                    yield Op(partial(ctx.clock.sleep, pause), partial(ctx.clock.asleep, pause))
                ctx.attempts += 1
                permit = ctx.breaker.before_call() if ctx.breaker is not None else None
                exchange = Op(
                    partial(self._exchange_sync, client, ctx, deadline, http),
                    partial(self._exchange_async, client, ctx, deadline, http),
                )
                failure: Exception | None = None
                try:
                    with _guarded(permit):
                        fetched = _fetched((yield exchange))
                except Exception as exc:  # judged by tenacity, below
                    failure = exc
                with attempt:
                    if failure is not None:
                        raise failure
        except TokenEndpointError as exc:
            exc.attempts = ctx.attempts
            raise
        if fetched is None:  # pragma: no cover - tenacity returns only after a success
            raise TokenError("the token request ended without an answer")
        return fetched

    def _exchange_sync(
        self, client: httpx.Client, ctx: FetchContext, deadline: float, http: HttpModule | None
    ) -> Fetched | TokenError:
        return run_sync(self._exchange(client, ctx, deadline, http))

    async def _exchange_async(
        self,
        client: httpx.AsyncClient,
        ctx: FetchContext,
        deadline: float,
        http: HttpModule | None,
    ) -> Fetched | TokenError:
        """The whole async attempt also runs under an ``asyncio`` timeout of what
        the deadline leaves."""
        try:
            async with asyncio.timeout(max(deadline - ctx.clock.monotonic(), 0.001)):
                return await run_async(self._exchange(client, ctx, deadline, http))
        except TimeoutError:
            return _BodyReader(self.endpoint, ctx).timed_out()

    def _exchange(
        self, client: Any, ctx: FetchContext, deadline: float, http: HttpModule | None
    ) -> Flow[Fetched | TokenError]:
        """One attempt: send, read the body (bounded in size and by the deadline),
        parse. Errors are returned, to be raised where no secret is in scope.
        ``client`` is the driver's own: an ``httpx.Client`` or ``AsyncClient``."""
        reader = _BodyReader(self.endpoint, ctx)
        request = self._request_with_timeout(ctx, deadline, http)
        try:
            response: httpx.Response = yield Op(
                partial(client.send, request, stream=True),
                partial(client.send, request, stream=True),
            )
        except REQUEST_ERRORS as exc:
            return self._failed(exc, ctx)
        finally:
            del request
        body: bytes | TokenError | None
        try:
            body = reader.start(response)
            if body is None:
                chunks = yield Op(
                    partial(_chunks, response, reader.raw), partial(_achunks, response, reader.raw)
                )
                while (
                    chunk := (yield Op(partial(next, chunks, None), partial(anext, chunks, None)))
                ) is not None:
                    body = reader.feed(chunk, deadline)
                    if body is not None:
                        break
                else:
                    body = reader.finish()
        except REQUEST_ERRORS as exc:
            return self._failed(exc, ctx)
        finally:
            yield Op(response.close, response.aclose)
        if not isinstance(body, bytes):
            return body if body is not None else reader.timed_out()
        return self._outcome(response.status_code, response.headers, body, ctx)


def _fetched(outcome: Fetched | TokenError) -> Fetched:
    if isinstance(outcome, TokenError):
        raise outcome
    return outcome


def _chunks(response: httpx.Response, raw: bool) -> Iterator[bytes]:
    return iter(response.iter_raw() if raw else response.iter_bytes())


async def _achunks(response: httpx.Response, raw: bool) -> AsyncIterator[bytes]:
    return aiter(response.aiter_raw() if raw else response.aiter_bytes())


async def _async_value(fn: Callable[[], _T]) -> _T:
    """``fn()`` as an async op's side (for the few steps that do no I/O)."""
    return fn()


def _iat_of(content: bytes) -> float | None:
    """The ``iat`` claim of a JWT access token in a token response body, if any
    (finite floats only: a huge or infinite iat must not become the skew)."""
    try:
        body = json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError, RecursionError):  # reported by the parser
        return None
    access = body.get("access_token") if isinstance(body, dict) else None
    claims = unverified_claims(access) if isinstance(access, str) else None
    return _num_claim(claims, "iat")


#: the encodings a token answer's body is inflated from by authpulse itself,
#: bounded by the size limit (zlib ``wbits``); others go through httpx's decoders
_INFLATE = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class _BodyReader:
    """Collects a token endpoint answer's body, decoded, up to the size limit
    (``TokenRetry.max_response_bytes``) and while the deadline lasts.

    gzip and deflate bodies (the encodings the token request accepts) are
    inflated here, never producing more than the limit plus one byte, so a
    small compressed body that inflates to gigabytes is refused after at
    most one network read of it. :meth:`start` and :meth:`feed` return
    ``None`` to go on, or what ends the attempt (a typed error, or for
    :meth:`start` an answer already in memory); :meth:`finish` returns the
    body.
    """

    __slots__ = (
        "_chunks",
        "_clock",
        "_deadline",
        "_encoding",
        "_endpoint",
        "_inflater",
        "_limit",
        "_size",
        "_status",
        "raw",
    )

    def __init__(self, endpoint: str, ctx: FetchContext) -> None:
        self._endpoint = endpoint
        self._limit = ctx.retry.max_response_bytes
        self._deadline = ctx.retry.deadline
        self._clock = ctx.clock
        self._chunks: list[bytes] = []
        self._size = 0
        self._status: int | None = None
        self._encoding = ""
        self._inflater: Any = None
        #: read ``iter_raw()`` (identity, gzip, deflate) rather than ``iter_bytes()``
        self.raw = True

    def __repr__(self) -> str:
        return f"<_BodyReader {self._size} bytes>"

    def too_large(self) -> TokenResponseError:
        return TokenResponseError(
            f"token endpoint {self._endpoint} answered with a body larger than the "
            f"{self._limit}-byte limit (TokenRetry.max_response_bytes)",
            status_code=self._status,
        )

    def timed_out(self) -> TokenEndpointError:
        return TokenEndpointError(
            f"token endpoint {self._endpoint} request timed out: the {self._deadline:g} s "
            "deadline (TokenRetry.deadline) passed before the answer was complete",
            error_class=ErrorClass.NETWORK,
            endpoint=self._endpoint,
        )

    def _undecodable(self) -> TokenResponseError:
        return TokenResponseError(
            f"token endpoint {self._endpoint} answered with a {self._encoding} body that "
            "could not be decoded",
            status_code=self._status,
        )

    def start(self, response: httpx.Response) -> bytes | TokenError | None:
        """``None`` to read the body, else the whole outcome: the body of an answer
        already in memory (``MockTransport``: decoded by httpx) or an error."""
        self._status = response.status_code
        if response.is_stream_consumed:
            body = response.content
            if len(body) > self._limit:
                return self.too_large()
            return body
        encoding = response.headers.get("content-encoding", "").strip().lower()
        self._encoding = encoding
        if encoding in _INFLATE:
            self._inflater = zlib.decompressobj(_INFLATE[encoding])
        self.raw = encoding in ("", "identity") or encoding in _INFLATE
        length = response.headers.get("content-length", "")
        # a declared size says enough, unless encoded (the decoded size is what counts)
        if length.isascii() and length.isdigit() and int(length) > self._limit and not encoding:
            return self.too_large()
        return None

    def _inflate(self, data: bytes) -> bytes | None:
        budget = self._limit - self._size + 1  # one byte more tells "too large"
        try:
            return bytes(self._inflater.decompress(data, budget))
        except zlib.error:
            if self._encoding == "deflate" and self._size == 0:
                # some servers send raw deflate without the zlib wrapper (as httpx allows)
                self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                try:
                    return bytes(self._inflater.decompress(data, budget))
                except zlib.error:
                    return None
            return None

    def feed(self, chunk: bytes, deadline: float) -> TokenError | None:
        if self._inflater is not None:
            inflated = self._inflate(chunk)
            if inflated is None:
                self._chunks.clear()
                return self._undecodable()
            chunk = inflated
        self._size += len(chunk)
        if self._size > self._limit:
            self._chunks.clear()
            return self.too_large()
        self._chunks.append(chunk)
        if self._clock.monotonic() >= deadline:
            self._chunks.clear()
            return self.timed_out()
        return None

    def finish(self) -> bytes | TokenError:
        if self._inflater is not None:
            try:
                rest = self._inflater.flush(self._limit - self._size + 1)
            except zlib.error:
                rest = None
            if rest is None:
                self._chunks.clear()
                return self._undecodable()
            self._size += len(rest)
            if self._size > self._limit:
                self._chunks.clear()
                return self.too_large()
            self._chunks.append(rest)
        body = b"".join(self._chunks)
        self._chunks.clear()
        return body


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


#: longest root-cause text quoted in a token endpoint error
_CAUSE_LIMIT = 160


def _request_error(exc: BaseException, endpoint: str, secrets: Redacted) -> TokenError:
    """The typed error of an httpx error, naming the endpoint and the root cause
    (scrubbed, printable, bounded). Its ``__cause__`` is a copy of ``exc``
    without the request (which carries the credentials) or a traceback."""
    text = secrets.scrub(str(exc), _CAUSE_LIMIT).strip()
    why = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    err: TokenError
    if isinstance(exc, TRANSPORT_ERRORS):
        kind = "timed out" if isinstance(exc, TIMEOUT_ERRORS) else "failed"
        err = TokenEndpointError(
            f"token endpoint {endpoint} request {kind}: {why}",
            error_class=ErrorClass.NETWORK,
            endpoint=endpoint,
        )
    elif type(exc).__name__ == "DecodingError":
        err = TokenResponseError(f"token endpoint {endpoint} answer could not be decoded: {why}")
    else:  # too many redirects, an invalid URL: the request cannot work as configured
        err = TokenEndpointError(
            f"token endpoint {endpoint} request failed: {why}",
            error_class=ErrorClass.CLIENT,
            endpoint=endpoint,
        )
    try:
        err.__cause__ = type(exc)(text)
    except Exception:  # an exception class with another signature: no cause then
        err.__cause__ = None
    err.__suppress_context__ = True
    return err


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

    It cannot start afresh: asked to after the stored set proved unusable
    (``FetchContext.afresh``), it raises :class:`NoRefreshTokenError` rather
    than present a refresh token that may have been rotated since (the IdP
    would see a reuse and revoke the grant).
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
        allow_insecure_http: bool = False,
    ) -> None:
        super().__init__(
            token_url,
            client_id,
            client_secret,
            auth_method=auth_method,
            scope=scope,
            extra_params=extra_params,
            allow_insecure_http=allow_insecure_http,
        )
        rt = _as_secret(refresh_token, "refresh_token")
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

    def _secrets(self, current: TokenSet | None) -> list[SecretStr]:
        rt = self.refresh_token_for(current)
        return super()._secrets(current) + ([rt] if rt else [])

    def _carry_over(self, token: TokenSet, current: TokenSet | None) -> TokenSet:
        if token.refresh_token is None:
            return token.with_refresh_token(self.refresh_token_for(current))
        return token

    @staticmethod
    def _refuse_afresh(ctx: FetchContext) -> None:
        if ctx.afresh is not None:
            raise NoRefreshTokenError(
                f"no usable refresh token: {ctx.afresh}, and the refresh token it held is lost"
            )

    def fetch(self, ctx: FetchContext) -> Fetched:
        self._refuse_afresh(ctx)
        return super().fetch(ctx)

    async def afetch(self, ctx: FetchContext) -> Fetched:
        self._refuse_afresh(ctx)
        return await super().afetch(ctx)


SyncTokenFn = Callable[[TokenSet | None], TokenSet]
AsyncTokenFn = Callable[[TokenSet | None], Awaitable[TokenSet]]


class FunctionSource:
    """Base of the sources backed by a function of the current token set, plain
    or coroutine (called through :func:`either_op`: a plain one runs in a worker
    thread in async code); ``_check`` turns its result into a :class:`Fetched`."""

    _fn: Callable[[TokenSet | None], Any]

    @staticmethod
    def _check(result: object) -> Fetched:
        raise NotImplementedError

    def fetch(self, ctx: FetchContext) -> Fetched:
        return self._check(either_op(self._fn, ctx.current, offload=True).sync())

    async def afetch(self, ctx: FetchContext) -> Fetched:
        return self._check(await either_op(self._fn, ctx.current, offload=True).async_())


class CallableSource(FunctionSource):
    """A source backed by your own function.

    ``fn(current)`` receives the current token set (or ``None``) and returns
    a new :class:`TokenSet` whose times are on the local clock. It may be a
    plain function or a coroutine function. In async code a plain function
    runs in a worker thread so it never blocks the event loop; in sync code
    a coroutine function runs on a private event loop (in a helper thread if
    the calling thread is already running one).

    When the token set stored for the session proved unusable (corrupt, or
    plaintext in an encrypted store), ``fn`` is called with ``None``: get a
    token from scratch, or raise :class:`NoRefreshTokenError` if that is not
    possible (the session then requires a new login).
    """

    def __init__(self, fn: SyncTokenFn | AsyncTokenFn, *, name: str | None = None) -> None:
        if not callable(fn):
            raise ConfigurationError("CallableSource needs a callable")
        self._fn = fn
        self.name = name or getattr(fn, "__qualname__", type(fn).__name__)

    def __repr__(self) -> str:
        return f"CallableSource({self.name!r})"

    @staticmethod
    def _check(result: object) -> Fetched:
        if not isinstance(result, TokenSet):
            raise TokenError(f"token callable returned {type(result).__name__}, not a TokenSet")
        return Fetched(result, None)


# The public names defined here show the module they are imported from.
for _public in (
    CallableSource,
    ClientCredentials,
    FetchContext,
    Fetched,
    RefreshTokenGrant,
    TokenSource,
):
    _public.__module__ = "authpulse"
del _public
