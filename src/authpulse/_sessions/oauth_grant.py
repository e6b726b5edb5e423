"""The OAuth 2.0 grants' shared token request flow: client authentication,
the request, parsing the answer, and the retries, written once for both
drivers (the grants themselves are in :mod:`.client_credentials` and
:mod:`.refresh_grant`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, TypeVar

import tenacity
from pydantic import SecretStr

from .._core.discovery import ProviderMetadata, check_issuer
from .._core.errors import (
    ConfigurationError,
    DiscoveryError,
    ErrorClass,
    TokenEndpointError,
    TokenError,
)
from .._core.retry import classify_status, parse_retry_after
from .._core.tokens import Redacted, TokenSet, estimate_skew, token_response_outcome
from .._runtime.backend import (
    REQUEST_ERRORS,
    HttpModule,
    backend,
    backend_of,
    check_endpoint_url,
    endpoint_label,
    httpx,
)
from .._runtime.clock import Clock, SystemClock
from .._runtime.flow import Flow, Op, run_async
from .._runtime.retrying import retrying_kwargs
from .client_auth import ClientAuth, ClientAuthMethod, apply_client_auth, client_auth_for
from .discovery_fetch import discovery_flow
from .fetch import FetchContext, Fetched, FlowSource
from .token_body import (
    BodyReader,
    abody_chunks,
    body_chunks,
    fetched_or_raise,
    guarded,
    iat_of,
    request_error,
)

__all__ = [
    "ClientAuthMethod",
    "OAuthGrant",
    "adopt_metadata",
    "as_secret",
    "resolve_flow",
    "send_and_read",
]

_T = TypeVar("_T")


def as_secret(value: object, what: str) -> SecretStr | None:
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


class OAuthGrant(FlowSource):
    """Base of the OAuth 2.0 grants: client authentication, request, parsing, retries.

    Give ``token_url``, or ``issuer`` to discover it (:func:`~authpulse.discover`)
    at the first token request. The client authenticates by ``auth_method``
    with ``client_secret``, or by ``client_auth`` (e.g. :class:`~authpulse.PrivateKeyJWT`).

    ``token_url`` must be ``https://``; plain ``http://`` is accepted only to
    a loopback host (``127.0.0.0/8``, ``::1``, ``localhost``) or with
    ``allow_insecure_http=True``, since the client secret and the refresh
    token travel in the request.

    ``revocation_url`` is the IdP's revocation endpoint (RFC 7009), used by
    :meth:`Session.revoke <authpulse.Session.revoke>` with this grant's
    client authentication.

    .. versionchanged:: unreleased
       ``allow_insecure_http``, ``revocation_url``; every argument is checked here;
       ``issuer`` and ``client_auth``.
    """

    grant_type: str = ""
    #: the metadata member naming the endpoint this request goes to (``issuer=``)
    endpoint_field: str = "token_endpoint"

    def __init__(
        self,
        token_url: str | None = None,
        client_id: str | None = None,
        client_secret: str | SecretStr | None = None,
        *,
        issuer: str | None = None,
        auth_method: ClientAuthMethod | None = None,
        client_auth: ClientAuth | None = None,
        scope: str | Iterable[str] | None = None,
        extra_params: dict[str, str] | None = None,
        allow_insecure_http: bool = False,
        revocation_url: str | None = None,
    ) -> None:
        _check_where(token_url, issuer, self._url_argument, allow_insecure_http)
        if revocation_url is not None:
            check_endpoint_url(
                revocation_url, what="revocation_url", allow_insecure_http=allow_insecure_http
            )
        #: the revocation endpoint (RFC 7009) of :meth:`Session.revoke`, if any
        self.revocation_url = revocation_url
        if not isinstance(client_id, str) or not client_id:
            raise ConfigurationError("client_id must be a non-empty string")
        secret = as_secret(client_secret, "client_secret")
        auth = client_auth_for(auth_method, secret, client_auth)
        self.issuer = issuer
        self.token_url: str = token_url or ""
        self.client_id = client_id
        self._secret = secret
        self._auth = auth
        #: how this grant authenticates the client (shared by every request it makes)
        self.client_auth: ClientAuth = auth
        self.auth_method: ClientAuthMethod = auth.method
        self.allow_insecure_http = allow_insecure_http
        self.scope = _check_scope(scope)
        self._extra = _check_params(extra_params)
        #: the endpoint as error messages name it (no query, no userinfo)
        self.endpoint = endpoint_label(token_url or issuer or "")
        if auth.assertion_audience == "issuer" and issuer is None:
            raise ConfigurationError("assertion_audience='issuer' needs issuer=")

    _url_argument = "token_url"

    def __repr__(self) -> str:
        where = f"token_url={self.token_url!r}" if self.token_url else f"issuer={self.issuer!r}"
        return (
            f"{type(self).__name__}({where}, client_id={self.client_id!r},"
            f" auth_method={self.auth_method!r})"
        )

    # -- pure parts ------------------------------------------------------------------

    def _grant_params(self, current: TokenSet | None) -> Mapping[str, str | list[str]]:
        raise NotImplementedError

    def _secrets(self, current: TokenSet | None) -> list[SecretStr]:
        """What the request carries that must never be shown (wrapped)."""
        return self._auth.secrets(self.client_id)

    def build_request(
        self,
        current: TokenSet | None,
        *,
        http: HttpModule | None = None,
        now: float | None = None,
    ) -> httpx.Request:
        """The token request for this grant (no I/O), built with ``http`` (an
        HTTP library module: ``httpx`` or ``httpx2``; default: the default backend)
        at ``now`` (what a signed client assertion is dated; default: the system
        clock's time)."""
        hx = http if http is not None else backend()
        if not self.token_url:
            raise ConfigurationError("the endpoint is not discovered yet (issuer=)")
        grant = {"grant_type": self.grant_type} if self.grant_type else {}
        form = {**grant, **self._grant_params(current), **self._extra}
        # encodings authpulse inflates itself, within the body size limit
        headers = {"Accept": "application/json", "Accept-Encoding": "gzip, deflate"}
        try:
            if self.scope and "scope" not in form:
                form["scope"] = self.scope
            apply_client_auth(
                self._auth,
                self.client_id,
                headers,
                form,
                endpoint=self.token_url,
                issuer=self.issuer,
                now=SystemClock().now() if now is None else now,
            )
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
        iat = iat_of(content) if status < 400 else None
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
        request = self.build_request(ctx.current, http=http, now=ctx.clock.now())
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
        return request_error(exc, self.endpoint, Redacted(self._secrets(ctx.current)))

    def _check_context(self, ctx: FetchContext) -> None:
        """Refuse a fetch this grant cannot make (raise a typed error); none here."""

    def _fetch_flow(self, ctx: FetchContext) -> Flow[Fetched]:
        """The token request with its retries, written once: the sync driver
        sends it with the session's ``httpx.Client`` and sleeps on the clock,
        the async one with its ``AsyncClient`` and ``asleep``."""
        self._check_context(ctx)
        deadline = ctx.clock.monotonic() + ctx.retry.deadline
        client: Any
        is_async: bool
        client, is_async = yield Op(partial(_paired, ctx.http, False), partial(_apaired, ctx.ahttp))
        yield from resolve_flow(self, client, ctx.clock)
        http = backend_of(client)
        try:
            outcome = yield from self._attempt(client, is_async, ctx, deadline, http)
            if isinstance(outcome, Fetched):
                return outcome  # the first attempt worked: no retry machinery is built
            failure: Exception | None = outcome
            fetched: Fetched | None = None
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
            for attempt in retrying:  # tenacity judges the first attempt's failure too
                if failure is None:
                    if sleeps:
                        pause = sleeps.pop()
                        yield Op(partial(ctx.clock.sleep, pause), partial(ctx.clock.asleep, pause))
                    outcome = yield from self._attempt(client, is_async, ctx, deadline, http)
                    if isinstance(outcome, Fetched):
                        fetched = outcome
                    else:
                        failure = outcome
                with attempt:
                    if failure is not None:
                        exc, failure = failure, None
                        raise exc
        except TokenEndpointError as exc:
            exc.attempts = ctx.attempts
            raise
        if fetched is None:  # pragma: no cover - tenacity returns only after a success
            raise TokenError("the token request ended without an answer")
        return fetched

    def _attempt(
        self,
        client: Any,
        is_async: bool,
        ctx: FetchContext,
        deadline: float,
        http: HttpModule | None,
    ) -> Flow[Fetched | Exception]:
        """One attempt, counted and reported to the token endpoint's breaker:
        its token set, or the failure for the retry rules to judge."""
        ctx.attempts += 1
        permit = ctx.breaker.before_call() if ctx.breaker is not None else None
        try:
            with guarded(permit):
                if is_async:  # one asyncio timeout over the whole attempt
                    answer = yield Op(
                        _no_sync_side, partial(self._exchange_async, client, ctx, deadline, http)
                    )
                else:
                    answer = yield from self._exchange(client, ctx, deadline, http)
                return fetched_or_raise(answer)
        except Exception as exc:  # judged by the retry rules
            return exc

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
            return BodyReader(self.endpoint, ctx).timed_out()

    def _exchange(
        self, client: Any, ctx: FetchContext, deadline: float, http: HttpModule | None
    ) -> Flow[Fetched | TokenError]:
        """One attempt: send, read the body (bounded in size and by the deadline),
        parse. Errors are returned, to be raised where no secret is in scope.
        ``client`` is the driver's own: an ``httpx.Client`` or ``AsyncClient``."""
        answer = yield from send_and_read(self, client, ctx, deadline, http)
        if isinstance(answer, TokenError):
            return answer
        response, body = answer
        return self._outcome(response.status_code, response.headers, body, ctx)


def resolve_flow(grant: OAuthGrant, client: Any, clock: Clock) -> Flow[None]:
    """With ``issuer=``: find ``grant``'s endpoint (and, unless given, its
    revocation endpoint) in the provider's metadata (cached per issuer),
    fetched with ``client``; nothing once it is known."""
    if grant.token_url or grant.issuer is None:
        return
    meta = yield from discovery_flow(
        grant.issuer, client, clock=clock, allow_insecure_http=grant.allow_insecure_http
    )
    adopt_metadata(grant, meta)


def adopt_metadata(grant: OAuthGrant, meta: ProviderMetadata) -> None:
    """Take ``grant``'s endpoint (and, unless given, its revocation endpoint)
    from ``meta``; :class:`DiscoveryError` when it names none."""
    url = meta.endpoint(grant.endpoint_field, mtls=grant.client_auth.mtls)
    if url is None:
        raise DiscoveryError(
            f"the metadata of {meta.issuer} names no {grant.endpoint_field}",
            issuer=meta.issuer,
            field=grant.endpoint_field,
        )
    grant.endpoint = endpoint_label(url)
    grant.token_url = url
    if grant.revocation_url is None:
        # for Session.revoke; its mTLS alias too when the client authenticates by TLS
        grant.revocation_url = meta.endpoint("revocation_endpoint", mtls=grant.client_auth.mtls)


def _check_where(
    token_url: str | None, issuer: str | None, what: str, allow_insecure_http: object
) -> None:
    """Exactly one of the endpoint URL ``what`` and ``issuer``, each acceptable."""
    if not isinstance(allow_insecure_http, bool):
        raise ConfigurationError("allow_insecure_http must be a boolean")
    if (token_url is None) == (issuer is None):
        raise ConfigurationError(
            f"give exactly one of {what} (an absolute http(s) URL) or issuer (to discover it)"
        )
    if token_url is not None:
        check_endpoint_url(token_url, what=what, allow_insecure_http=allow_insecure_http)
        return
    try:
        check_issuer(issuer, allow_insecure_http=allow_insecure_http)
    except DiscoveryError as exc:
        raise ConfigurationError(str(exc)) from None


def send_and_read(
    grant: OAuthGrant, client: Any, ctx: FetchContext, deadline: float, http: HttpModule | None
) -> Flow[tuple[httpx.Response, bytes] | TokenError]:
    """Send ``grant``'s request to its endpoint and read the answer's body
    (bounded in size and by the deadline): the response and its body, or
    the typed error of the failure (built, not raised)."""
    yield from resolve_flow(grant, client, ctx.clock)
    reader = BodyReader(grant.endpoint, ctx)
    request = grant._request_with_timeout(ctx, deadline, http)
    try:
        response: httpx.Response = yield Op(
            partial(client.send, request, stream=True),
            partial(client.send, request, stream=True),
        )
    except REQUEST_ERRORS as exc:
        return grant._failed(exc, ctx)
    finally:
        del request
    body: bytes | TokenError | None
    try:
        body = reader.start(response)
        if body is None:
            chunks = yield Op(
                partial(body_chunks, response, reader.raw),
                partial(abody_chunks, response, reader.raw),
            )
            step = Op(partial(next, chunks, None), partial(anext, chunks, None))
            while (chunk := (yield step)) is not None:
                body = reader.feed(chunk, deadline)
                if body is not None:
                    break
            else:
                body = reader.finish()
    except REQUEST_ERRORS as exc:
        return grant._failed(exc, ctx)
    finally:
        yield Op(response.close, response.aclose)
    if not isinstance(body, bytes):
        return body if body is not None else reader.timed_out()
    return response, body


def _paired(fn: Callable[[], _T], is_async: bool) -> tuple[_T, bool]:
    return fn(), is_async


async def _apaired(fn: Callable[[], _T]) -> tuple[_T, bool]:
    """``(fn(), True)`` as an async op's side: the async driver's client, and
    that it is the async driver's."""
    return fn(), True


def _no_sync_side() -> Any:  # pragma: no cover - only the async driver is given this op
    raise AssertionError("an async-only step reached the sync driver")
