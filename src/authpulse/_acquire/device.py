"""``DeviceCodeLogin``: the device authorization grant (RFC 8628).

A CLI or a device without a browser shows the user a code and a URL, then
polls the token endpoint until the user has signed in elsewhere. The
decisions (the answer's fields, what each poll answer means) are the pure
functions of :mod:`authpulse._core.device`; this module does the requests,
the waits on the injected clock, and builds the resulting
:class:`~authpulse.Session`. Starting and waiting are each one flow, run by
the sync and the async driver.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from .._core.device import (
    DEVICE_CODE_GRANT,
    DeviceAuthorization,
    Granted,
    parse_device_authorization,
    poll_step,
)
from .._core.errors import (
    ConfigurationError,
    DeviceCodeExpiredError,
    ErrorClass,
    LoginCancelledError,
    TokenEndpointError,
    TokenError,
    UsageError,
)
from .._core.retry import TokenRetry, classify_status
from .._core.tokens import Redacted, TokenSet
from .._runtime.backend import HttpModule, backend, backend_of, httpx
from .._runtime.clock import Clock
from .._runtime.flow import Flow, Op, run_async, run_sync
from .._sessions.client_auth import ClientAuth, ClientAuthMethod
from .._sessions.fetch import FetchContext, Fetched
from .._sessions.oauth_grant import OAuthGrant, send_and_read
from .._sessions.session import Session, TokenUpdateHook
from .._sessions.token_clients import TokenClients
from .login_session import LoginBase, aclose_all, apaired, paired

if TYPE_CHECKING:
    from .._runtime.backend import AnyAsyncTransport, AnyTransport
    from .._stores.base import SessionStore

__all__ = ["DeviceCodeLogin"]

log = logging.getLogger("authpulse.login")


class _DeviceAuthorizationRequest(OAuthGrant):
    """The device authorization request (RFC 8628 §3.1): the grants' client
    authentication and scope, sent to the device authorization endpoint,
    without a ``grant_type``."""

    grant_type = ""
    endpoint_field = "device_authorization_endpoint"
    _url_argument = "device_authorization_url"

    def _grant_params(self, current: TokenSet | None) -> dict[str, str]:
        return {}

    def build_request(
        self,
        current: TokenSet | None,
        *,
        http: HttpModule | None = None,
        now: float | None = None,
    ) -> httpx.Request:
        request = super().build_request(current, http=http, now=now)
        parts = [p for p in request.content.split(b"&") if not p.startswith(b"grant_type=")]
        content = b"&".join(parts)
        headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"content-length"]
        hx = http if http is not None else backend()
        out = hx.Request(request.method, request.url, content=content, headers=headers)
        del request, parts, content, headers
        return out


class _DeviceCodeGrant(OAuthGrant):
    """The polling token request (RFC 8628 §3.4): the device code, secret."""

    grant_type = DEVICE_CODE_GRANT
    device_code: SecretStr | None = None

    def _grant_params(self, current: TokenSet | None) -> dict[str, str]:
        code = self.device_code
        return {"device_code": code.get_secret_value() if code is not None else ""}

    def _secrets(self, current: TokenSet | None) -> list[SecretStr]:
        code = self.device_code
        return super()._secrets(current) + ([code] if code is not None else [])


class DeviceCodeLogin(LoginBase):
    """Sign a user in with the device authorization grant (RFC 8628).

    >>> login = DeviceCodeLogin(device_authorization_url=..., token_url=..., client_id="cli")
    >>> started = login.start()          # or: await login.astart()
    >>> print(f"Open {started.verification_uri} and enter {started.user_code}")
    >>> session = login.wait()           # or: await login.await_session()

    :meth:`start` asks the device authorization endpoint for a code
    (authenticating the client as the grants do: ``auth_method`` with
    ``client_secret``, or ``client_auth`` such as
    :class:`~authpulse.PrivateKeyJWT`); with ``issuer=`` instead of the two
    URLs, both endpoints are discovered at the first request
    (:func:`~authpulse.discover`). :meth:`wait` polls the token
    endpoint every ``interval`` seconds on ``clock`` — 5 s longer after
    each ``slow_down`` — until the user signs in (a :class:`~authpulse.Session`
    on a :class:`~authpulse.RefreshTokenGrant`), refuses
    (:class:`~authpulse.AccessDeniedError`), the code expires
    (:class:`~authpulse.DeviceCodeExpiredError`) or :meth:`cancel` is called
    (:class:`~authpulse.LoginCancelledError`, at the next poll step). A
    network failure, 5xx or throttling during a poll is counted
    (:attr:`failed_polls`) and the poll tried again at the interval (at least
    a ``Retry-After``) until the code expires.

    The session carries the refresh token of the answer, ``store`` /
    ``store_key`` (the login's token set is written there) and
    ``on_token_update`` (called with the login's token set, then with every
    rotated one), and ``revocation_url`` for :meth:`Session.revoke
    <authpulse.Session.revoke>`. Without a refresh token in the answer the session works
    until the access token expires, then raises
    :class:`~authpulse.LoginRequiredError`.

    .. versionadded:: unreleased
    """

    def __init__(
        self,
        device_authorization_url: str | None = None,
        token_url: str | None = None,
        client_id: str | None = None,
        client_secret: str | SecretStr | None = None,
        *,
        issuer: str | None = None,
        auth_method: ClientAuthMethod | None = None,
        client_auth: ClientAuth | None = None,
        scope: str | Iterable[str] | None = None,
        clock: Clock | None = None,
        transport: AnyTransport | None = None,
        async_transport: AnyAsyncTransport | None = None,
        store: SessionStore | None = None,
        store_key: str | None = None,
        on_token_update: TokenUpdateHook | None = None,
        retry: TokenRetry | None = None,
        allow_insecure_http: bool = False,
        revocation_url: str | None = None,
    ) -> None:
        if issuer is not None and (device_authorization_url or token_url):
            raise ConfigurationError(
                "give issuer (to discover the endpoints) or device_authorization_url and "
                "token_url, not both"
            )
        self._authorize = _DeviceAuthorizationRequest(
            device_authorization_url,
            client_id,
            client_secret,
            issuer=issuer,
            auth_method=auth_method,
            client_auth=client_auth,
            scope=scope,
            allow_insecure_http=allow_insecure_http,
        )
        self._poll = _DeviceCodeGrant(
            token_url,
            client_id,
            issuer=issuer,
            client_auth=self._authorize.client_auth,
            allow_insecure_http=allow_insecure_http,
            revocation_url=revocation_url,
        )
        self._setup_session(
            self._poll,
            client_secret,
            clock=clock,
            transport=transport,
            async_transport=async_transport,
            store=store,
            store_key=store_key,
            on_token_update=on_token_update,
            retry=retry,
        )
        #: the answer of the last :meth:`start`, ``None`` before
        self.started: DeviceAuthorization | None = None
        #: token requests made by the last wait, and how many of them failed (network,
        #: 5xx, throttling) and were tried again
        self.polls = 0
        self.failed_polls = 0

    def __repr__(self) -> str:
        return (
            f"DeviceCodeLogin(device_authorization_url={self._authorize.token_url!r}, "
            f"token_url={self._poll.token_url!r}, client_id={self._poll.client_id!r})"
        )

    # -- the API -----------------------------------------------------------------------

    def start(self) -> DeviceAuthorization:
        """Ask for a device code: what to show the user (the code is secret)."""
        return run_sync(self._start_flow())

    async def astart(self) -> DeviceAuthorization:
        """:meth:`start` for async code."""
        return await run_async(self._start_flow())

    def wait(self) -> Session:
        """Poll until the user signed in; the session (see the class for the errors)."""
        return run_sync(self._wait_flow())

    # -- the flows ---------------------------------------------------------------------

    def _start_flow(self) -> Flow[DeviceAuthorization]:
        clients = TokenClients(self._transport, self._async_transport)
        try:
            ctx = self._context(clients)
            client, _ = yield Op(partial(paired, clients.sync), partial(apaired, clients.async_))
            deadline = self.clock.monotonic() + self._retry.deadline
            answer = yield from _answer(self._authorize, client, ctx, deadline)
        finally:
            yield Op(clients.close, partial(aclose_all, clients))
        if isinstance(answer, TokenError):
            raise answer
        status, body = answer
        started = parse_device_authorization(
            status, body, now=self.clock.now(), secrets=Redacted(self._authorize._secrets(None))
        )
        del body, answer
        if isinstance(started, TokenError):
            raise started
        self._cancelled.clear()
        self.started = started
        return started

    def _check(self, started: DeviceAuthorization) -> None:
        if self._cancelled.is_set():
            raise LoginCancelledError(started.verification_uri)
        if self.clock.now() >= started.expires_at:
            raise DeviceCodeExpiredError(started.verification_uri)

    def _wait_flow(self) -> Flow[Session]:
        started = self.started
        if started is None:
            raise UsageError("call start() (or astart()) before waiting for the login")
        self._poll.device_code = started.device_code
        self.polls = self.failed_polls = 0
        interval = pause = started.interval
        clients = TokenClients(self._transport, self._async_transport)
        try:
            ctx = self._context(clients)
            client, _ = yield Op(partial(paired, clients.sync), partial(apaired, clients.async_))
            http = backend_of(client)
            while True:
                self._check(started)
                pause = min(pause, max(started.expires_at - self.clock.now(), 0.0))
                yield Op(partial(self.clock.sleep, pause), partial(self.clock.asleep, pause))
                self._check(started)
                self.polls += 1
                deadline = self.clock.monotonic() + self._retry.deadline
                outcome = yield from self._poll._exchange(client, ctx, deadline, http)
                step = poll_step(
                    outcome.token if isinstance(outcome, Fetched) else outcome,
                    interval,
                    login_url=started.verification_uri,
                )
                if isinstance(step, Granted):
                    token = step.token
                    break
                if isinstance(step, TokenError):
                    raise step
                if step.failed:
                    self.failed_polls += 1
                    log.warning(
                        "device login poll failed: %s; polling again in %g s",
                        outcome,
                        step.interval,
                    )
                else:
                    interval = step.interval
                pause = step.interval
        finally:
            yield Op(clients.close, partial(aclose_all, clients))
        return (yield from self._session_flow(token, started.verification_uri))


def _answer(
    request_maker: OAuthGrant, client: Any, ctx: FetchContext, deadline: float
) -> Flow[tuple[int, bytes] | TokenError]:
    """One request to ``request_maker``'s endpoint: its status and body (bounded
    like a token answer's), or the typed error of a failure."""
    answer = yield from send_and_read(request_maker, client, ctx, deadline, backend_of(client))
    if isinstance(answer, TokenError):
        return answer
    response, body = answer
    status = response.status_code
    cls = classify_status(status, response.headers)
    if cls in (ErrorClass.SERVER, ErrorClass.THROTTLED):
        endpoint = request_maker.endpoint
        return TokenEndpointError(
            f"device authorization endpoint {endpoint} answered HTTP {status}",
            error_class=cls,
            status_code=status,
            endpoint=endpoint,
        )
    return status, body


# The public names defined here show the module they are imported from.
for _public in (DeviceCodeLogin,):
    _public.__module__ = "authpulse"
del _public
