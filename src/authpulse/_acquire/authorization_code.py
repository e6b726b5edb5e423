"""``AuthorizationCodeLogin``: a native app's browser login with PKCE
(RFC 6749 §4.1, RFC 7636, RFC 8252, RFC 9207).

The user signs in in their browser; the authorization server redirects it
to a one-shot listener on ``127.0.0.1`` (:mod:`.loopback`), and the code is
exchanged, with the PKCE verifier, for tokens. The decisions (verifier,
challenge, the authorization URL, what the redirect means) are the pure
functions of :mod:`authpulse._core.pkce`; this module does the listening,
the waiting on the injected clock and the token request. Starting and
waiting are each one flow, run by the sync and the async driver.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from pydantic import SecretStr

from .._core.errors import (
    ConfigurationError,
    LoginCancelledError,
    LoginTimeoutError,
    TokenError,
    UsageError,
)
from .._core.pkce import (
    RESERVED_PARAMS,
    AuthorizationRequest,
    build_authorization_url,
    check_challenge_method,
    check_nonce,
    code_verifier,
    id_token_claims,
    parse_redirect,
    random_value,
    s256_challenge,
)
from .._core.retry import TokenRetry
from .._core.tokens import TokenSet
from .._runtime.backend import backend_of, check_endpoint_url
from .._runtime.clock import Clock
from .._runtime.flow import Flow, Op, run_async, run_sync
from .._sessions.client_auth import ClientAuth
from .._sessions.oauth_grant import ClientAuthMethod, OAuthGrant, adopt_metadata
from .._sessions.session import Session, TokenUpdateHook
from .._sessions.token_clients import TokenClients
from .browser import BrowserOpener, UrlShower, check_opener, open_url
from .login_session import LoginBase, aclose_all, apaired, login_metadata, paired
from .loopback import RedirectListener

if TYPE_CHECKING:
    from .._runtime.backend import AnyAsyncTransport, AnyTransport
    from .._sessions.verify import JWTVerifier
    from .._stores.base import SessionStore

__all__ = ["AuthorizationCodeLogin"]

#: seconds between two looks at the listener while waiting
_TICK = 0.05


class _AuthorizationCodeGrant(OAuthGrant):
    """The code exchange (RFC 6749 §4.1.3 with RFC 7636 §4.5): the code, the
    redirect URI and the verifier, secret but the URI."""

    grant_type = "authorization_code"
    code: SecretStr | None = None
    verifier: SecretStr | None = None
    redirect_uri = ""

    def _grant_params(self, current: TokenSet | None) -> dict[str, str]:
        code, verifier = self.code, self.verifier
        return {
            "code": code.get_secret_value() if code is not None else "",
            "redirect_uri": self.redirect_uri,
            "code_verifier": verifier.get_secret_value() if verifier is not None else "",
        }

    def _secrets(self, current: TokenSet | None) -> list[SecretStr]:
        return super()._secrets(current) + [s for s in (self.code, self.verifier) if s is not None]


@dataclass(slots=True)
class _Pending:
    """A started login: its listener and what the redirect is checked against."""

    request: AuthorizationRequest
    listener: RedirectListener
    verifier: SecretStr
    nonce: SecretStr | None
    deadline: float

    def __repr__(self) -> str:
        return f"_Pending({self.request!r})"


def _check_text(name: str, value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigurationError(f"{name} must be a non-empty string")
    return value


def _extra_params(
    prompt: str | None,
    login_hint: str | None,
    acr_values: str | None,
    max_age: int | None,
    resource: str | None,
    extra_params: dict[str, str] | None,
) -> dict[str, str]:
    if extra_params is not None and (
        not isinstance(extra_params, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in extra_params.items())
    ):
        raise ConfigurationError("extra_params must be a dict of strings to strings")
    params = dict(extra_params or {})
    clash = sorted(RESERVED_PARAMS & params.keys())
    if clash:
        raise ConfigurationError(f"extra_params may not set {', '.join(clash)}")
    for name, value in (
        ("prompt", prompt),
        ("login_hint", login_hint),
        ("acr_values", acr_values),
        ("resource", resource),
    ):
        if _check_text(name, value) is not None:
            params[name] = str(value)
    if max_age is not None:
        if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0:
            raise ConfigurationError("max_age must be a whole number of seconds, 0 or more")
        params["max_age"] = str(max_age)
    return params


def _checked(redirect_path: object, timeout: object) -> tuple[str, float]:
    if not isinstance(redirect_path, str) or not redirect_path.startswith("/"):
        raise ConfigurationError("redirect_path must be a path starting with '/'")
    if "?" in redirect_path or "#" in redirect_path:
        raise ConfigurationError("redirect_path must be a path without query or fragment")
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ConfigurationError("timeout must be a positive number of seconds")
    return redirect_path, float(timeout)


class AuthorizationCodeLogin(LoginBase):
    """Sign a user in in their browser: the authorization code grant with PKCE,
    for native apps (RFC 6749 §4.1, RFC 7636, RFC 8252).

    >>> login = AuthorizationCodeLogin(authorization_url=..., token_url=..., client_id="app")
    >>> started = login.start()          # or: await login.astart()
    >>> session = login.wait()           # or: await login.await_session()

    :meth:`start` listens on ``http://127.0.0.1:{port}{redirect_path}`` (a
    port the system picks), opens the authorization URL in the browser
    (``open_browser``: ``True`` for :mod:`webbrowser`, ``False`` for none, or
    a callable taking the URL) and shows it (``show_url``, default: printed
    to stderr). :meth:`wait` waits, on ``clock``, for the redirect: the code
    is exchanged with the ``S256`` verifier and the result is a
    :class:`~authpulse.Session` on a :class:`~authpulse.RefreshTokenGrant`,
    as :class:`~authpulse.DeviceCodeLogin` gives. It raises
    :class:`~authpulse.AccessDeniedError` when the user refuses,
    :class:`~authpulse.AuthorizationError` for any other error answer or a
    redirect whose ``state``, ``iss`` (RFC 9207: checked against ``issuer``
    when the server sends it, required with ``require_iss=True``, as
    metadata with ``authorization_response_iss_parameter_supported`` says)
    or ID token ``nonce`` is not the login's,
    :class:`~authpulse.LoginTimeoutError` after ``timeout`` seconds and
    :class:`~authpulse.LoginCancelledError` after :meth:`cancel`.

    The ID token's ``nonce`` is compared after checking its signature with
    ``id_token_verifier`` (a :class:`~authpulse.JWTVerifier`) when one is
    given; without one the token is only decoded, which is not a signature
    check: it is read straight from the token endpoint (OpenID Connect Core
    §3.1.3.7), so nothing but the nonce is taken from it.

    With ``issuer`` and no ``authorization_url`` / ``token_url``, :meth:`start`
    finds the authorization, token and revocation endpoints in the issuer's
    metadata (:func:`~authpulse.discover`), and ``require_iss``, unless
    given, follows its ``authorization_response_iss_parameter_supported``.
    The client authenticates by ``auth_method`` with ``client_secret``, or by
    ``client_auth`` (e.g. :class:`~authpulse.PrivateKeyJWT`), at the code
    exchange and at the session's refreshes.

    ``revocation_url`` goes to the session's grant, for :meth:`Session.revoke
    <authpulse.Session.revoke>`.

    .. versionadded:: unreleased
    """

    def __init__(
        self,
        authorization_url: str | None = None,
        token_url: str | None = None,
        client_id: str | None = None,
        client_secret: str | SecretStr | None = None,
        *,
        auth_method: ClientAuthMethod | None = None,
        client_auth: ClientAuth | None = None,
        scope: str | Iterable[str] | None = None,
        issuer: str | None = None,
        require_iss: bool | None = None,
        id_token_verifier: JWTVerifier | None = None,
        redirect_path: str = "/callback",
        code_challenge_method: str = "S256",
        prompt: str | None = None,
        login_hint: str | None = None,
        acr_values: str | None = None,
        max_age: int | None = None,
        resource: str | None = None,
        extra_params: dict[str, str] | None = None,
        open_browser: bool | BrowserOpener = True,
        show_url: UrlShower | None = None,
        timeout: float = 300.0,
        clock: Clock | None = None,
        transport: AnyTransport | None = None,
        async_transport: AnyAsyncTransport | None = None,
        store: SessionStore | None = None,
        store_key: str | None = None,
        on_token_update: TokenUpdateHook | None = None,
        retry: TokenRetry | None = None,
        allow_insecure_http: bool = False,
        random_bytes: Callable[[int], bytes] | None = None,
        revocation_url: str | None = None,
    ) -> None:
        if (authorization_url is None) != (token_url is None):
            raise ConfigurationError(
                "give both authorization_url and token_url, or neither and issuer to discover them"
            )
        #: the endpoints are found in the issuer's metadata at start()
        self._discover = authorization_url is None
        self._grant = _AuthorizationCodeGrant(
            token_url,
            client_id,
            client_secret,
            issuer=issuer if self._discover else None,
            auth_method=auth_method,
            client_auth=client_auth,
            scope=scope,
            allow_insecure_http=allow_insecure_http,
            revocation_url=revocation_url,
        )
        # the scope goes in the authorization request; the code exchange names none
        self._scope, self._grant.scope = self._grant.scope, None
        self.authorization_url: str | None = (
            None
            if authorization_url is None
            else check_endpoint_url(
                authorization_url, what="authorization_url", allow_insecure_http=allow_insecure_http
            )
        )
        check_challenge_method(code_challenge_method)
        self._issuer = _check_text("issuer", issuer)
        if require_iss is not None and not isinstance(require_iss, bool):
            raise ConfigurationError("require_iss must be a boolean")
        if require_iss and issuer is None:
            raise ConfigurationError("require_iss needs the issuer to compare iss with")
        #: as given; None: as the discovered metadata says (else not required)
        self._require_iss_arg = require_iss
        self._require_iss = bool(require_iss)
        if id_token_verifier is not None and not callable(getattr(id_token_verifier, "verify", 0)):
            raise ConfigurationError("id_token_verifier must be a JWTVerifier")
        self._id_verifier = id_token_verifier
        self._redirect_path, self.timeout = _checked(redirect_path, timeout)
        self._params = _extra_params(
            prompt, login_hint, acr_values, max_age, resource, extra_params
        )
        self._opener, self._show = check_opener(open_browser, show_url)
        if random_bytes is not None and not callable(random_bytes):
            raise ConfigurationError("random_bytes must be a callable taking a byte count")
        self._random = random_bytes or secrets.token_bytes
        self._setup_session(
            self._grant,
            client_secret,
            clock=clock,
            transport=transport,
            async_transport=async_transport,
            store=store,
            store_key=store_key,
            on_token_update=on_token_update,
            retry=retry,
        )
        self._pending: _Pending | None = None
        #: the last :meth:`start`'s request, ``None`` before
        self.started: AuthorizationRequest | None = None

    def __repr__(self) -> str:
        if self.authorization_url is None:
            where = f"issuer={self._issuer!r}"
        else:
            where = (
                f"authorization_url={self.authorization_url!r}, token_url={self._grant.token_url!r}"
            )
        return f"AuthorizationCodeLogin({where}, client_id={self._grant.client_id!r})"

    @property
    def _login_url(self) -> str | None:
        return self.authorization_url or self._issuer

    # -- the API -----------------------------------------------------------------------

    def start(self) -> AuthorizationRequest:
        """Listen for the redirect, open the browser and show the URL."""
        return run_sync(self._start_flow())

    async def astart(self) -> AuthorizationRequest:
        """:meth:`start` for async code (the browser is opened in a worker thread)."""
        return await run_async(self._start_flow())

    def wait(self) -> Session:
        """Wait for the redirect and exchange its code; the session (see the
        class for the errors). The listener is closed whatever happens."""
        return run_sync(self._wait_flow())

    def close(self) -> None:
        """Stop listening without waiting (a started login that will not be waited for)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.listener.close()

    # -- the flows ---------------------------------------------------------------------

    def _discovery_flow(self) -> Flow[None]:
        meta = yield from login_metadata(
            self._issuer or "",
            TokenClients(self._transport, self._async_transport),
            clock=self.clock,
            allow_insecure_http=self._grant.allow_insecure_http,
            need="authorization_endpoint",
        )
        adopt_metadata(self._grant, meta)
        self.authorization_url = meta.authorization_endpoint
        if self._require_iss_arg is None:
            self._require_iss = meta.authorization_response_iss_parameter_supported

    def _prepare(self, authorization_url: str) -> _Pending:
        self.close()
        verifier = code_verifier(self._random(32))
        state = random_value(self._random(16))
        scope = self._scope
        wants_id = scope is not None and "openid" in scope.split()
        nonce = random_value(self._random(16)) if wants_id else None
        listener = RedirectListener(state, path=self._redirect_path).open()
        try:
            url = build_authorization_url(
                authorization_url,
                client_id=self._grant.client_id,
                redirect_uri=listener.redirect_uri,
                state=state,
                challenge=s256_challenge(verifier),
                scope=scope,
                nonce=nonce,
                extra_params=self._params,
            )
        except BaseException:
            listener.close()
            raise
        request = AuthorizationRequest(url, listener.redirect_uri, state)
        deadline = self.clock.monotonic() + self.timeout
        return _Pending(request, listener, verifier, nonce, deadline)

    def _start_flow(self) -> Flow[AuthorizationRequest]:
        if self.authorization_url is None:
            yield from self._discovery_flow()
        pending = self._prepare(self.authorization_url or "")
        self._cancelled.clear()
        self._pending = pending
        self.started = pending.request
        url = pending.request.authorization_url
        try:
            yield Op(
                partial(open_url, url, self._opener, self._show),
                partial(asyncio.to_thread, open_url, url, self._opener, self._show),
            )
        except BaseException:
            self.close()
            raise
        return pending.request

    def _wait_for_redirect(self, pending: _Pending) -> Flow[str]:
        listener = pending.listener
        try:
            while (query := listener.take()) is None:
                if self._cancelled.is_set():
                    raise LoginCancelledError(self._login_url)
                left = pending.deadline - self.clock.monotonic()
                if left <= 0:
                    raise LoginTimeoutError(self._login_url, timeout=self.timeout)
                pause = min(_TICK, left)
                yield Op(partial(self.clock.sleep, pause), partial(self.clock.asleep, pause))
        finally:
            if self._pending is pending:
                self._pending = None
            yield Op(listener.close, partial(asyncio.to_thread, listener.close))
        return query

    def _wait_flow(self) -> Flow[Session]:
        pending = self._pending
        if pending is None:
            raise UsageError("call start() (or astart()) before waiting for the login")
        query = yield from self._wait_for_redirect(pending)
        code = parse_redirect(
            query,
            state=pending.request.state,
            issuer=self._issuer,
            require_iss=self._require_iss,
            login_url=self._login_url,
        )
        del query
        token = yield from self._exchange_flow(code, pending)
        del code
        if pending.nonce is not None and token.id_token is not None:
            yield Op(
                partial(self._check_id_token, token.id_token, pending.nonce),
                partial(asyncio.to_thread, self._check_id_token, token.id_token, pending.nonce),
            )
        return (yield from self._session_flow(token, self._login_url or ""))

    def _exchange_flow(self, code: SecretStr, pending: _Pending) -> Flow[TokenSet]:
        grant = self._grant
        grant.code, grant.verifier = code, pending.verifier
        grant.redirect_uri = pending.request.redirect_uri
        clients = TokenClients(self._transport, self._async_transport)
        try:
            ctx = self._context(clients)
            client, _ = yield Op(partial(paired, clients.sync), partial(apaired, clients.async_))
            deadline = self.clock.monotonic() + self._retry.deadline
            # one attempt: a code is good for one exchange
            outcome = yield from grant._exchange(client, ctx, deadline, backend_of(client))
        finally:
            grant.code = grant.verifier = None
            yield Op(clients.close, partial(aclose_all, clients))
        if isinstance(outcome, TokenError):
            raise outcome
        return outcome.token

    def _check_id_token(self, id_token: SecretStr, nonce: SecretStr) -> None:
        if self._id_verifier is not None:
            claims = self._id_verifier.verify(id_token.get_secret_value(), now=self.clock.now())
        else:
            claims = id_token_claims(id_token)
        check_nonce(claims, nonce)


# The public names defined here show the module they are imported from.
for _public in (AuthorizationCodeLogin,):
    _public.__module__ = "authpulse"
del _public
