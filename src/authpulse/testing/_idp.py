from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, overload
from urllib.parse import parse_qs

import jwt

from .._core.exchange import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT
from .._runtime.backend import BACKEND_NAMES, backend_for, backend_of, httpx
from .._runtime.clock import Clock, SystemClock
from . import _idp_revocation
from ._client_auth import authenticated_client

if TYPE_CHECKING:
    import httpx2

__all__ = ["FakeIdP", "Fault"]


@dataclass(frozen=True)
class Fault:
    """One scripted failure of a fake server.

    ``status``/``body``/``content_type``/``headers`` shape the answer;
    ``exception`` (an ``httpx.TransportError`` subclass) is raised instead
    of answering, as a refused connection or a timeout would be. Both are
    made with the request's library: an httpx2 request gets an
    ``httpx2.Response``, or the httpx2 exception of the same name.
    """

    status: int = 503
    body: bytes | str | dict[str, Any] | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    exception: type[httpx.TransportError] | None = None
    delay: float = 0.0  #: extra real latency, seconds

    @classmethod
    def refused(cls) -> Fault:
        return cls(exception=httpx.ConnectError)

    @classmethod
    def timeout(cls) -> Fault:
        return cls(exception=httpx.ReadTimeout)

    @classmethod
    def oauth(cls, error: str, status: int = 400, description: str | None = None) -> Fault:
        body: dict[str, Any] = {"error": error}
        if description:
            body["error_description"] = description
        return cls(status=status, body=body)

    def response(self, request: httpx.Request) -> httpx.Response:
        hx = backend_for(request)
        if self.exception is not None:
            exc = self.exception
            if exc.__module__ in BACKEND_NAMES:  # one of the library's own: use the request's
                exc = getattr(hx, exc.__name__, exc)
            raise exc("simulated failure", request=request)
        if isinstance(self.body, dict):
            content = json.dumps(self.body).encode()
        elif isinstance(self.body, str):
            content = self.body.encode()
        else:
            content = self.body or b""
        headers = {"content-type": self.content_type, **self.headers}
        return hx.Response(self.status, content=content, headers=headers)


def _same_library(request: httpx.Request, response: httpx.Response) -> httpx.Response:
    """``response``, rebuilt with ``request``'s library if it is another's (a
    ``FakeAPI(handler=...)`` written for one library, serving the other)."""
    hx = backend_for(request)
    if backend_of(response) in (hx, None):
        return response
    return hx.Response(
        response.status_code,
        headers=response.headers.raw,
        content=response.read(),
        extensions=dict(response.extensions),
    )


class _Faults:
    """A queue of one-shot faults plus an optional standing outage."""

    def __init__(self) -> None:
        self._queue: deque[Fault] = deque()
        self.outage: Fault | None = None
        self._lock = threading.Lock()

    def fail_next(self, count: int = 1, fault: Fault | None = None) -> None:
        with self._lock:
            self._queue.extend([fault or Fault()] * count)

    def take(self) -> Fault | None:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            return self.outage


@dataclass
class _Grant:
    client_id: str
    scope: str | None
    revoked: bool = False


class _FakeServer:
    """Latency, faults and the two MockTransports shared by the fakes."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.faults = _Faults()
        self._hits_lock = threading.Lock()
        #: every request received, faults included
        self.hits = 0

    def fail_next(self, count: int = 1, fault: Fault | None = None) -> None:
        """The next ``count`` requests get ``fault`` (default: HTTP 503)."""
        self.faults.fail_next(count, fault)

    def set_outage(self, fault: Fault | None) -> None:
        """Every request gets ``fault`` until ``set_outage(None)``."""
        self.faults.outage = fault

    def _answer(self, request: httpx.Request) -> httpx.Response:
        raise NotImplementedError

    def _respond(self, request: httpx.Request, fault: Fault | None) -> httpx.Response:
        response = fault.response(request) if fault else self._answer(request)
        return _same_library(request, response)

    @overload
    def handle(self, request: httpx.Request) -> httpx.Response: ...
    @overload
    def handle(self, request: httpx2.Request) -> httpx2.Response: ...
    def handle(self, request: Any) -> Any:
        """The sync handler (real latency with ``time.sleep``).

        Answers with the request's library (httpx or httpx2), so it can
        serve either's ``MockTransport``: ``httpx2.MockTransport(fake.handle)``.
        """
        with self._hits_lock:
            self.hits += 1
        fault = self.faults.take()
        delay = self.latency + (fault.delay if fault else 0.0)
        if delay:
            time.sleep(delay)
        return self._respond(request, fault)

    @overload
    async def ahandle(self, request: httpx.Request) -> httpx.Response: ...
    @overload
    async def ahandle(self, request: httpx2.Request) -> httpx2.Response: ...
    async def ahandle(self, request: Any) -> Any:
        """The async handler (real latency with ``asyncio.sleep``), as :meth:`handle`."""
        with self._hits_lock:
            self.hits += 1
        fault = self.faults.take()
        delay = self.latency + (fault.delay if fault else 0.0)
        if delay:
            await asyncio.sleep(delay)
        return self._respond(request, fault)

    @property
    def transport(self) -> httpx.MockTransport:
        """For ``httpx.Client`` (and ``Session(transport=...)``): a ``MockTransport``
        of the default backend (for the other, wrap :meth:`handle` in its own)."""
        return httpx.MockTransport(self.handle)

    @property
    def async_transport(self) -> httpx.MockTransport:
        """For ``httpx.AsyncClient`` (and ``Session(async_transport=...)``), as
        :attr:`transport`."""
        return httpx.MockTransport(self.ahandle)


class FakeIdP(_FakeServer):
    """An OAuth 2.0 authorization server for tests, on ``httpx.MockTransport``.

    Grants: ``client_credentials``, ``refresh_token``, ``password`` (``users``) and token
    exchange (RFC 8693: an access token issued here for another, of the ``audience`` or
    ``resource`` asked for; ``exchanges`` counts them); client auth:
    ``client_secret_basic``, ``client_secret_post``, ``client_secret_jwt`` and, for the
    clients of ``client_keys`` (client id -> public key, PEM or JWK), ``private_key_jwt``
    (a replayed ``jti`` is refused). It serves its metadata at
    ``/.well-known/openid-configuration`` (``discovery_calls`` counts them). Refresh tokens are
    rotated and single-use by default; presenting a used one answers
    ``invalid_grant`` and revokes the whole grant, new tokens included (as
    oidc-provider does). Time comes from ``clock``.

    ``POST /revoke`` (RFC 7009) revokes a refresh token's grant or one access
    token; ``POST /introspect`` (RFC 7662) answers whether a token is active.
    With ``refresh_ttl`` refresh tokens expire after that many seconds and the
    answers carry ``refresh_expires_in``.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        issuer: str = "https://idp.test",
        clients: dict[str, str] | None = None,
        access_ttl: float = 3600.0,
        rotate: bool = True,
        single_use: bool = True,
        latency: float = 0.0,
        jwt_access_tokens: bool = False,
        send_expires_in: bool = True,
        send_date: bool = True,
        clock_offset: float = 0.0,
        users: dict[str, str] | None = None,
        client_keys: dict[str, Any] | None = None,
        refresh_ttl: float | None = None,
    ) -> None:
        super().__init__(latency)
        self.refresh_ttl = refresh_ttl
        self._refresh_exp: dict[str, float] = {}  # refresh token -> expiry, with refresh_ttl
        self.revocations = 0
        self.introspections = 0
        self.client_keys = dict(client_keys or {})
        self.discovery_calls = 0
        self._jtis: set[str] = set()
        #: resource owners for the password grant (username -> password)
        self.users = dict(users or {"alice": "wonderland"})
        self.clock: Clock = clock or SystemClock()
        self.issuer = issuer.rstrip("/")
        self.clients = dict(clients or {"client": "secret"})
        self.access_ttl = access_ttl
        self.rotate = rotate
        self.single_use = single_use
        self.jwt_access_tokens = jwt_access_tokens
        self.send_expires_in = send_expires_in
        self.send_date = send_date
        self.clock_offset = clock_offset  #: IdP clock - test clock, seconds
        self.jwt_key = secrets.token_urlsafe(32)
        self._lock = threading.Lock()
        self._access: dict[str, tuple[float, _Grant | None]] = {}
        self._refresh: dict[str, tuple[_Grant, bool]] = {}  # token -> (grant, used)
        # counters (``hits`` counts faults too; ``token_calls`` only answered requests)
        self.token_calls = 0
        self.grants_issued = 0
        self.reuse_detected = 0
        self.requests: list[dict[str, str]] = []  # form fields of each call, secrets removed
        self.exchanges = 0  # token exchanges answered with a token

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/token"

    @property
    def revocation_url(self) -> str:
        return f"{self.issuer}/revoke"

    @property
    def introspection_url(self) -> str:
        return f"{self.issuer}/introspect"

    def _now(self) -> float:
        return self.clock.now() + self.clock_offset

    # -- helpers for tests ------------------------------------------------------------

    def issue_refresh_token(self, client_id: str = "client", scope: str | None = None) -> str:
        """Start a new grant (as a user login would) and return its refresh token."""
        grant = _Grant(client_id, scope)
        rt = "rt_" + secrets.token_urlsafe(24)
        with self._lock:
            self._refresh[rt] = (grant, False)
            if self.refresh_ttl is not None:
                self._refresh_exp[rt] = self._now() + self.refresh_ttl
        return rt

    def revoke(self, token: str) -> None:
        """Revoke the grant a refresh or access token belongs to."""
        with self._lock:
            if token in self._refresh:
                self._refresh[token][0].revoked = True
            elif token in self._access:
                g = self._access[token][1]
                if g is not None:
                    g.revoked = True

    def revoke_all(self) -> None:
        """Revoke every grant issued so far (as an admin "sign out everywhere" would)."""
        with self._lock:
            for grant, _ in self._refresh.values():
                grant.revoked = True
            for _, maybe in self._access.values():
                if maybe is not None:
                    maybe.revoked = True

    def validate(self, access_token: str) -> bool:
        """True if ``access_token`` was issued here, is unexpired and not revoked."""
        with self._lock:
            entry = self._access.get(access_token)
        if entry is None:
            return False
        exp, grant = entry
        return self._now() < exp and not (grant is not None and grant.revoked)

    def expire_all(self) -> None:
        """Make every access token issued so far invalid (as after a key rotation)."""
        with self._lock:
            self._access = {k: (0.0, g) for k, (_, g) in self._access.items()}

    # -- the endpoint -----------------------------------------------------------------

    def _error(self, error: str, status: int = 400) -> httpx.Response:
        return httpx.Response(status, json={"error": error}, headers=self._headers())

    def _headers(self) -> dict[str, str]:
        h = {"cache-control": "no-store"}
        if self.send_date:
            h["date"] = formatdate(self._now(), usegmt=True)
        return h

    def metadata(self) -> dict[str, Any]:
        """The discovery document this IdP serves."""
        return {
            "issuer": self.issuer,
            "token_endpoint": self.token_url,
            "revocation_endpoint": self.revocation_url,
            "introspection_endpoint": self.introspection_url,
            "grant_types_supported": ["client_credentials", "refresh_token", "password"],
            "token_endpoint_auth_methods_supported": [
                *(f"client_secret_{m}" for m in ("basic", "post", "jwt")),
                "private_key_jwt",
            ],
        }

    def _client_auth(self, request: httpx.Request, form: dict[str, str]) -> str | None:
        return authenticated_client(
            request.headers.get("authorization", ""),
            form,
            clients=self.clients,
            client_keys=self.client_keys,
            # as oidc-provider: the token endpoint, the issuer or the endpoint called
            audiences=[self.token_url, self.issuer, str(request.url.copy_with(query=None))],
            now=self._now(),
            seen=self._jtis,
        )

    def _answer(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/.well-known/openid-configuration":
            self.discovery_calls += 1
            return httpx.Response(200, json=self.metadata())
        endpoint = _ENDPOINTS.get(request.url.path)
        if request.method != "POST" or (endpoint is None and request.url.path != "/token"):
            return httpx.Response(404, text="not found")
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if endpoint is not None:
            return endpoint(self, request, form)
        with self._lock:
            self.token_calls += 1
            self.requests.append(
                {
                    k: v
                    for k, v in form.items()
                    if k
                    not in (
                        "client_secret",
                        "refresh_token",
                        "password",
                        "subject_token",
                        "actor_token",
                        "client_assertion",
                    )
                }
            )
        client_id = self._client_auth(request, form)
        if client_id is None:
            return self._error("invalid_client", 401)
        grant_type = form.get("grant_type")
        if grant_type == "client_credentials":
            return self._issue(_Grant(client_id, form.get("scope")), refresh=False)
        if grant_type == "password":
            user, password = form.get("username", ""), form.get("password", "")
            if user not in self.users or not secrets.compare_digest(
                self.users[user].encode(), password.encode()
            ):
                return self._error("invalid_grant")
            return self._issue(_Grant(client_id, form.get("scope")), refresh=True, new_grant=True)
        if grant_type == "refresh_token":
            rt = form.get("refresh_token", "")
            with self._lock:
                entry = self._refresh.get(rt)
                if entry is None:
                    return self._error("invalid_grant")
                grant, used = entry
                if grant.client_id != client_id or grant.revoked:
                    return self._error("invalid_grant")
                if self._refresh_exp.get(rt, float("inf")) <= self._now():
                    return self._error("invalid_grant")
                if used and self.single_use:
                    grant.revoked = True  # reuse detected: the whole grant dies
                    self.reuse_detected += 1
                    return self._error("invalid_grant")
                if self.rotate:
                    self._refresh[rt] = (grant, True)
            return self._issue(grant, refresh=True, keep=None if self.rotate else rt)
        if grant_type == TOKEN_EXCHANGE_GRANT:
            return self._exchange(client_id, form)
        return self._error("unsupported_grant_type")

    def _exchange(self, client_id: str, form: dict[str, str]) -> httpx.Response:
        for role in ("subject", "actor"):
            if role == "subject" or f"{role}_token" in form:
                if form.get(f"{role}_token_type") != ACCESS_TOKEN_TYPE:
                    return self._error("invalid_request")
                if not self.validate(form.get(f"{role}_token", "")):
                    return self._error("invalid_grant")
        requested = form.get("requested_token_type", ACCESS_TOKEN_TYPE)
        if requested != ACCESS_TOKEN_TYPE:
            return self._error("invalid_request")
        with self._lock:
            self.exchanges += 1
        grant = _Grant(client_id, form.get("scope"))
        return self._issue(grant, refresh=False, extra={"issued_token_type": ACCESS_TOKEN_TYPE})

    def _issue(
        self,
        grant: _Grant,
        *,
        refresh: bool,
        keep: str | None = None,
        new_grant: bool = False,
        extra: dict[str, str] | None = None,
    ) -> httpx.Response:
        now = self._now()
        if self.jwt_access_tokens:
            at = jwt.encode(
                {
                    "iss": self.issuer,
                    "sub": grant.client_id,
                    "iat": int(now),
                    "exp": int(now + self.access_ttl),
                    "jti": secrets.token_hex(8),
                },
                self.jwt_key,
                algorithm="HS256",
            )
        else:
            at = "at_" + secrets.token_urlsafe(24)
        body: dict[str, Any] = {"access_token": at, "token_type": "Bearer"}
        if self.send_expires_in:
            body["expires_in"] = int(self.access_ttl)
        if grant.scope:
            body["scope"] = grant.scope
        body.update(extra or {})
        with self._lock:
            self._access[at] = (now + self.access_ttl, grant)
            self.grants_issued += 1
            if refresh and (self.rotate or new_grant):
                new_rt = "rt_" + secrets.token_urlsafe(24)
                self._refresh[new_rt] = (grant, False)
                body["refresh_token"] = new_rt
                if self.refresh_ttl is not None:
                    self._refresh_exp[new_rt] = now + self.refresh_ttl
                    body["refresh_expires_in"] = int(self.refresh_ttl)
        return httpx.Response(200, json=body, headers=self._headers())


_ENDPOINTS: dict[str, Callable[[FakeIdP, httpx.Request, dict[str, str]], httpx.Response]] = {
    "/revoke": _idp_revocation.revoke,
    "/introspect": _idp_revocation.introspect,
}


# The public names defined here show the module they are imported from.
for _public in (
    FakeIdP,
    Fault,
):
    _public.__module__ = "authpulse.testing"
del _public
