"""The fault matrix: every fault we know of, one row each, sync and async.

Each :class:`Row` names a fault, injects it into the fakes (``setup``), runs
an ``action`` against a session (or a client built on one) and checks the
``expect``-ed outcome. The same harness then checks, for every row:

1. the outcome itself (status, exception type, ``idp.hits``, ``api.hits``,
   the exact sleeps recorded on the ``FakeClock``);
2. that no refresh token was lost: where the grant should survive, the
   session refreshes once more after the fault (the clock is moved past
   expiry and the new token must validate at the IdP), and the IdP never
   saw a refresh token reused unless the row is about reuse;
3. that no secret leaked: every log record (captured at DEBUG for the whole
   row), every exception raised (with its causes and traceback), every
   listener event, ``stats()``, ``health()`` and ``repr`` is scanned for
   every client secret, password, access and refresh token the fakes were
   given or issued (harvested from the IdP's traffic and from
   ``on_token_update``).

Time is a ``FakeClock``: nothing waits for a timer. Sync variants run the
sync API in a worker thread (as a sync application would: no event loop);
async variants use the async API on the test's loop.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import logging
import re
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from email.utils import formatdate
from secrets import token_urlsafe
from typing import Any, Literal
from urllib.parse import parse_qs, quote_plus, urlencode

import anyio.to_thread
import pytest

import authpulse
from authpulse import (
    AsyncRetryTransport,
    BreakerPolicy,
    BudgetRegistry,
    CachePolicy,
    CircuitOpenError,
    ErrorClass,
    FallbackChain,
    Freshness,
    LoginRequired,
    LoginRequiredError,
    OAuthError,
    RefreshPolicy,
    RefreshTokenGrant,
    RequestFailedError,
    ResponseCache,
    RetryBudgetExhaustedError,
    RetryInfo,
    RetryPolicy,
    RetryTransport,
    Session,
    SilentReauth,
    StoredCredentials,
    TokenEndpointError,
    TokenResponseError,
    TokenRetry,
    TokenSet,
)
from authpulse._runtime.backend import httpx
from authpulse.testing import FakeAPI, FakeClock, FakeIdP, Fault

Mode = Literal["sync", "async"]
MODES: tuple[Mode, ...] = ("sync", "async")

CLIENT_ID = "client"
#: distinctive values, so that a leak cannot hide behind a common word
CLIENT_SECRET = "cs_" + token_urlsafe(24)
PASSWORD = "pw_" + token_urlsafe(24)
WRONG_PASSWORD = "pw_" + token_urlsafe(24)
#: a second client whose secret has characters that form encoding changes
LEGACY_CLIENT = "legacy"
LEGACY_SECRET = f"ls+{token_urlsafe(12)}/{token_urlsafe(12)}=="
#: tokens planted in malformed token responses (never valid at the IdP)
PLANTED_AT = "at_planted_" + token_urlsafe(18)
PLANTED_RT = "rt_planted_" + token_urlsafe(18)
LOGIN_URL = "https://app.test/login"

TTL = 600.0  #: access token lifetime at the fake IdP
EXPIRE = TTL + 1  #: advancing this far makes the current token EXPIRED
NO_JITTER = RefreshPolicy(jitter=0.0)
RETRY = TokenRetry(attempts=3)
TEN_YEARS = 10 * 365 * 24 * 3600

#: tokens in any body the IdP sends (its own tokens and planted ones)
_TOKEN_RE = re.compile(r"(?<![A-Za-z0-9_])(?:at|rt)_[A-Za-z0-9_-]{8,}")
#: form fields of a token request that carry a secret
_SECRET_FIELDS = ("refresh_token", "password", "client_secret")


# ================================================================= the world


@dataclass
class Outcome:
    """What an action did: a value or an exception."""

    value: Any = None
    error: BaseException | None = None


@dataclass
class Marks:
    """Counters taken after warm-up: rows assert on deltas from here."""

    idp_hits: int = 0
    api_hits: int = 0
    sleeps: int = 0
    requests: int = 0
    events: int = 0
    generation: int = 0
    refresh_token: str | None = None


class Api:
    """An httpx client driven from async code whatever its kind.

    A sync ``httpx.Client`` runs in a worker thread, as in a sync app.
    """

    def __init__(self, client: httpx.Client | httpx.AsyncClient) -> None:
        self.client = client

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        c = self.client
        if isinstance(c, httpx.AsyncClient):
            return await c.request(method, path, **kwargs)
        return await anyio.to_thread.run_sync(functools.partial(c.request, method, path, **kwargs))

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, **kwargs)


class World:
    """The fakes, the sessions and clients of one row, and what was seen."""

    def __init__(
        self,
        clock: FakeClock,
        mode: Mode,
        caplog: pytest.LogCaptureFixture,
        *,
        idp_clock_offset: float = 0.0,
    ) -> None:
        self.clock = clock
        self.mode = mode
        self.caplog = caplog
        self.idp = FakeIdP(
            clock=clock,
            access_ttl=TTL,
            clients={CLIENT_ID: CLIENT_SECRET, LEGACY_CLIENT: LEGACY_SECRET},
            users={"alice": PASSWORD},
            clock_offset=idp_clock_offset,  # the IdP says so in its Date header
        )
        self.api = FakeAPI(self.idp)
        self.secrets: set[str] = {
            CLIENT_SECRET,
            LEGACY_SECRET,
            PASSWORD,
            WRONG_PASSWORD,
            PLANTED_AT,
            PLANTED_RT,
        }
        self.issued: list[TokenSet] = []  # every set seen by on_token_update
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[BaseException] = []
        self.logins: list[LoginRequiredError] = []
        self.notes: dict[str, Any] = {}
        self.hook_failures = 0  # on_token_update raises this many more times
        #: called with every token request before the IdP sees it
        self.before_idp: Callable[[httpx.Request], None] | None = None
        #: called with every API request before the API sees it
        self.before_api: Callable[[httpx.Request], None] | None = None
        #: called after the IdP answered (and acted), before the answer is returned
        self.after_idp: Callable[[httpx.Request], None] | None = None
        self.sessions: list[Session] = []
        self.clients: list[httpx.Client | httpx.AsyncClient] = []
        self.chain: FallbackChain | None = None
        self.marks = Marks()
        self.warm_token = ""
        self._primary: Session | None = None
        self.first_rt = self.issue_rt()

    # -- the IdP, tapped: every secret given to it or issued by it is remembered

    def issue_rt(self, client_id: str = CLIENT_ID) -> str:
        rt = self.idp.issue_refresh_token(client_id)
        self.secrets.add(rt)
        return rt

    def _harvest(self, request: httpx.Request, response: httpx.Response | None) -> None:
        form = parse_qs(request.content.decode("utf-8", "replace"))
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic" and credentials:
            self.secrets.add(credentials)  # base64 of "client_id:client_secret"
        for name in _SECRET_FIELDS:
            self.secrets.update(form.get(name, []))
        if response is not None:
            self.secrets.update(_TOKEN_RE.findall(response.content.decode("utf-8", "replace")))

    def _idp_sync(self, request: httpx.Request) -> httpx.Response:
        if self.before_idp is not None:
            self.before_idp(request)
        response: httpx.Response | None = None
        try:
            response = self.idp.handle(request)
        finally:
            self._harvest(request, response)
        if self.after_idp is not None:
            self.after_idp(request)
        return response

    async def _idp_async(self, request: httpx.Request) -> httpx.Response:
        if self.before_idp is not None:
            self.before_idp(request)
        response: httpx.Response | None = None
        try:
            response = await self.idp.ahandle(request)
        finally:
            self._harvest(request, response)
        if self.after_idp is not None:
            self.after_idp(request)
        return response

    def _on_token(self, token_set: TokenSet) -> None:
        self.issued.append(token_set)
        if self.hook_failures > 0:
            self.hook_failures -= 1
            raise RuntimeError("persisting the rotated refresh token failed")

    # -- sessions and clients

    def session(self, source: authpulse.TokenSource, **kwargs: Any) -> Session:
        s = Session(
            source,
            clock=self.clock,
            transport=httpx.MockTransport(self._idp_sync),
            async_transport=httpx.MockTransport(self._idp_async),
            policy=NO_JITTER,
            seed=1,
            on_token_update=self._on_token,
            **kwargs,
        )
        s.add_listener(lambda kind, fields: self.events.append((kind, dict(fields))))
        self.sessions.append(s)
        return s

    def rt_grant(self, refresh_token: str | None = None) -> RefreshTokenGrant:
        return RefreshTokenGrant(
            self.idp.token_url,
            CLIENT_ID,
            CLIENT_SECRET,
            refresh_token=refresh_token if refresh_token is not None else self.first_rt,
        )

    @property
    def primary(self) -> Session:
        assert self._primary is not None
        return self._primary

    def _api_transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            if self.before_api is not None:
                self.before_api(request)
            return self.api.handle(request)

        return httpx.MockTransport(handle)

    def _api_async_transport(self) -> httpx.MockTransport:
        async def handle(request: httpx.Request) -> httpx.Response:
            if self.before_api is not None:
                self.before_api(request)
            return await self.api.ahandle(request)

        return httpx.MockTransport(handle)

    def client(self, session: Session, **kwargs: Any) -> Api:
        """An ``authpulse.Client`` (sync mode) or ``AsyncClient`` on the fake API."""
        c: httpx.Client | httpx.AsyncClient
        if self.mode == "sync":
            c = authpulse.Client(
                session, base_url=self.api.base_url, transport=self._api_transport(), **kwargs
            )
        else:
            c = authpulse.AsyncClient(
                session, base_url=self.api.base_url, transport=self._api_async_transport(), **kwargs
            )
        self.clients.append(c)
        return Api(c)

    def raw_client(self, session: Session, *, policy: RetryPolicy, budgets: BudgetRegistry) -> Api:
        """A plain httpx client: ``session.auth()`` over a retry transport with ``budgets``."""
        c: httpx.Client | httpx.AsyncClient
        if self.mode == "sync":
            transport = RetryTransport(
                self._api_transport(), policy=policy, clock=self.clock, budgets=budgets
            )
            c = httpx.Client(base_url=self.api.base_url, auth=session.auth(), transport=transport)
        else:
            atransport = AsyncRetryTransport(
                self._api_async_transport(), policy=policy, clock=self.clock, budgets=budgets
            )
            c = httpx.AsyncClient(
                base_url=self.api.base_url, auth=session.auth(), transport=atransport
            )
        self.clients.append(c)
        return Api(c)

    # -- the session API, sync (in a worker thread) or async

    async def token(self, s: Session) -> str:
        if self.mode == "sync":
            return await anyio.to_thread.run_sync(s.token)
        return await s.atoken()

    async def force_refresh(self, s: Session) -> TokenSet:
        if self.mode == "sync":
            return await anyio.to_thread.run_sync(s.force_refresh)
        return await s.aforce_refresh()

    async def refresh_if_due(self, s: Session) -> TokenSet:
        if self.mode == "sync":
            return await anyio.to_thread.run_sync(s.refresh_if_due)
        return await s.arefresh_if_due()

    async def settle(self, s: Session) -> None:
        """Wait for the background refresh a STALE token started (thread or task)."""
        if self.mode == "sync":
            await anyio.to_thread.run_sync(s.join_background)
            return
        tasks = list(s._tasks or ())
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def attempt(self, aw: Awaitable[Any]) -> Outcome:
        """Run ``aw``; an exception becomes the outcome (and is scanned for secrets)."""
        try:
            value = await aw
        except Exception as exc:
            self.errors.append(exc)
            return Outcome(error=exc)
        return Outcome(value=value)

    # -- time and counters

    def expire(self) -> None:
        self.clock.advance(EXPIRE)

    def mark(self) -> None:
        self.marks = Marks(
            idp_hits=self.idp.hits,
            api_hits=self.api.hits,
            sleeps=len(self.clock.sleeps),
            requests=len(self.idp.requests),
            events=len(self.events),
            generation=self.primary.generation,
            refresh_token=self.current_rt(),
        )

    @property
    def idp_delta(self) -> int:
        return self.idp.hits - self.marks.idp_hits

    @property
    def api_delta(self) -> int:
        return self.api.hits - self.marks.api_hits

    @property
    def new_sleeps(self) -> list[float]:
        return self.clock.sleeps[self.marks.sleeps :]

    @property
    def new_grant_types(self) -> list[str]:
        return [r.get("grant_type", "") for r in self.idp.requests[self.marks.requests :]]

    @property
    def new_events(self) -> list[str]:
        return [kind for kind, _ in self.events[self.marks.events :]]

    def current_rt(self) -> str:
        ts = self.primary.token_set
        assert ts is not None
        assert ts.refresh_token is not None
        return ts.refresh_token.get_secret_value()

    # -- the checks every row gets

    async def assert_grant_survives(self) -> None:
        """After the fault: the session still refreshes, with its own refresh token."""
        self.idp.set_outage(None)
        self.api.set_outage(None)
        self.before_idp = None
        self.after_idp = None
        self.before_api = None
        s = self.primary
        generation = s.generation
        self.clock.advance(EXPIRE)  # whatever the row left, this token is EXPIRED now
        outcome = await self.attempt(self.token(s))
        assert outcome.error is None, f"the grant was lost: {outcome.error!r}"
        assert self.idp.validate(outcome.value), "the token after the fault is not valid"
        assert s.generation > generation, "no refresh happened after the fault"
        ts = s.token_set
        assert ts is not None
        assert ts.refresh_token is not None

    def assert_no_secret_leaked(self, records: list[logging.LogRecord]) -> None:
        known = {x for x in self.secrets if len(x) >= 8}
        for ts in self.issued:
            for value in (ts.access_token, ts.refresh_token, ts.id_token):
                if value is not None:
                    known.add(value.get_secret_value())
        # the scan is not vacuous: the fakes' tokens were harvested
        assert CLIENT_SECRET in known
        assert self.first_rt in known
        assert self.warm_token in known
        known |= {quote_plus(x) for x in known}  # as sent in a form body

        texts: list[tuple[str, str]] = []
        formatter = logging.Formatter()
        for r in records:
            where = f"log record {r.name}/{r.levelname}"
            texts.append((where, r.getMessage()))
            texts.append((where, repr(r.args)))
            texts.append((where, repr(vars(r))))
            if r.exc_text:
                texts.append((where, r.exc_text))
            if r.exc_info is not None and r.exc_info[0] is not None:
                texts.append((where, formatter.formatException(r.exc_info)))
            if r.stack_info:
                texts.append((where, r.stack_info))
        for exc in self.errors:
            for e in _exception_chain(exc):
                name = f"exception {type(e).__name__}"
                texts.append((name, str(e)))
                texts.append((name, repr(e)))
                texts.append((name, "".join(traceback.format_exception(e))))
        texts.append(("listener events", repr(self.events)))
        texts += [
            ("session", f"{s!r} {s.stats()!r} {s.health().to_dict()!r}") for s in self.sessions
        ]
        for where, text in texts:
            for secret in known:
                if secret in text:  # not an assert: its message would quote the secret
                    pytest.fail(f"a secret ({secret[:3]}…, {len(secret)} chars) leaked: {where}")

    async def close(self) -> None:
        for c in self.clients:
            if isinstance(c, httpx.AsyncClient):
                await c.aclose()
            else:
                c.close()
        for s in self.sessions:
            await s.aclose()


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__]


# ================================================================= the table

Setup = Callable[[World], None]
Action = Callable[[World], Awaitable[Any]]
Expect = Callable[[World, Outcome], Awaitable[None]]
Build = Callable[[World, TokenRetry], Session]
Then = Callable[[World, Any], None]


def build_rt(w: World, retry: TokenRetry) -> Session:
    """The default: a refresh-token session (rotation, single-use refresh tokens)."""
    return w.session(w.rt_grant(), retry=retry)


@dataclass(frozen=True)
class Row:
    """One fault: how to inject it, what to do, what must happen."""

    name: str
    setup: Setup
    action: Action
    expect: Expect
    build: Build = build_rt
    retry: TokenRetry = RETRY
    #: runs after warm-up and before the counters are marked (e.g. fill a cache)
    prime: Action | None = None
    #: after the fault the session must still refresh with its own grant
    grant_survives: bool = True
    reuse_detected: int = 0
    modes: tuple[Mode, ...] = MODES
    #: the fake IdP's clock minus ours, from the start
    idp_clock_offset: float = 0.0


# -- setups


def nothing(w: World) -> None:
    """The fault is in the action (or the row's session) itself."""


def idp_fails(n: int, fault: Fault) -> Setup:
    return lambda w: w.idp.fail_next(n, fault)


def idp_outage(fault: Fault) -> Setup:
    return lambda w: w.idp.set_outage(fault)


def idp_answers(
    body: bytes | str | dict[str, Any], content_type: str = "application/json"
) -> Setup:
    """The next token request gets this 200 answer instead of the IdP's."""
    return idp_fails(1, Fault(status=200, body=body, content_type=content_type))


def api_fails(n: int, fault: Fault) -> Setup:
    return lambda w: w.api.fail_next(n, fault)


def api_outage(fault: Fault) -> Setup:
    return lambda w: w.api.set_outage(fault)


def http_date(w: World, seconds_from_now: float) -> str:
    return formatdate(w.clock.now() + seconds_from_now, usegmt=True)


def idp_503_until_date(w: World) -> None:
    # the refresh happens after the action moved the clock by EXPIRE
    date = http_date(w, EXPIRE + 12)
    w.idp.fail_next(1, Fault(status=503, headers={"retry-after": date}))


def idp_503_until_its_own_date(w: World) -> None:
    """A skewed IdP throttles until a date on *its* clock (and says what time it is)."""
    idp_now = w.clock.now() + EXPIRE + w.idp.clock_offset
    headers = {"date": formatdate(idp_now, usegmt=True)}
    headers["retry-after"] = formatdate(idp_now + 12, usegmt=True)
    w.idp.fail_next(1, Fault(status=503, headers=headers))


def api_429_until_its_own_date(w: World) -> None:
    """An API server 10 minutes behind throttles until a date on its own clock."""
    server_now = w.clock.now() - 600
    headers = {"date": formatdate(server_now, usegmt=True)}
    headers["retry-after"] = formatdate(server_now + 9, usegmt=True)
    w.api.fail_next(1, Fault(status=429, headers=headers))


def api_429_until_date(w: World) -> None:
    w.api.fail_next(1, Fault(status=429, headers={"retry-after": http_date(w, 9)}))


def idp_echoes_secrets(w: World) -> None:
    text = f"refresh token {w.current_rt()} was revoked; client secret {CLIENT_SECRET} is fine"
    w.idp.fail_next(1, Fault.oauth("invalid_grant", description=text))


def idp_echoes_authorization_header(w: World) -> None:
    """A debugging IdP quotes the client's ``Authorization: Basic`` header back."""
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    text = f"rejected Authorization: Basic {basic}"
    w.idp.fail_next(1, Fault.oauth("invalid_client", status=401, description=text))


def build_legacy_post(w: World, retry: TokenRetry) -> Session:
    """A client authenticating with ``client_secret_post`` and a secret full of ``+/=``."""
    grant = RefreshTokenGrant(
        w.idp.token_url,
        LEGACY_CLIENT,
        LEGACY_SECRET,
        refresh_token=w.issue_rt(LEGACY_CLIENT),
        auth_method="client_secret_post",
    )
    return w.session(grant, retry=retry)


def idp_echoes_form_body(w: World) -> None:
    """A debugging IdP quotes the (form-encoded) request body back."""
    body = urlencode(
        {
            "grant_type": "refresh_token",
            "refresh_token": w.current_rt(),
            "client_id": LEGACY_CLIENT,
            "client_secret": LEGACY_SECRET,
        }
    )
    w.idp.fail_next(1, Fault.oauth("invalid_request", description=f"cannot parse {body}"))


def revoke_grant(w: World) -> None:
    w.idp.revoke(w.current_rt())


def restore_stale_backup(w: World) -> None:
    """A second process starts from a backup holding the already-used refresh token."""
    w.notes["stale"] = w.session(w.rt_grant(w.first_rt), retry=RETRY)


def clock_jump(offset: float) -> Setup:
    """The IdP's clock jumps ``offset`` seconds off ours mid-life (it says so in ``Date``)."""

    def setup(w: World) -> None:
        w.idp.clock_offset = offset

    return setup


def hook_fails_once(w: World) -> None:
    w.hook_failures = 1


def _hang(w: World) -> Callable[[httpx.Request], None]:
    """A server that never answers: each attempt waits out its whole read timeout
    (on the fake clock) and records ``(when, timeout)`` in ``notes["timeouts"]``."""
    seen: list[tuple[float, float]] = []
    w.notes["timeouts"] = seen

    def hang(request: httpx.Request) -> None:
        timeout = request.extensions["timeout"]["read"]
        seen.append((w.clock.monotonic(), timeout))
        w.clock.advance(timeout)

    return hang


def idp_hangs_until_timeout(w: World) -> None:
    w.idp.set_outage(Fault.timeout())
    w.before_idp = _hang(w)


def api_hangs_until_timeout(w: World) -> None:
    w.api.set_outage(Fault.timeout())
    w.before_api = _hang(w)


def whoami(request: httpx.Request) -> httpx.Response:
    """An API answer that depends on who asks (a digest of the credentials)."""
    who = hashlib.sha256(request.headers["authorization"].encode()).hexdigest()[:16]
    return httpx.Response(200, json={"who": who})


def idp_answer_lost_after_rotation(w: World) -> None:
    """The IdP rotates the refresh token, then the connection drops before the answer
    arrives: the client can only retry with the refresh token the IdP just retired."""

    def lose(request: httpx.Request) -> None:
        w.after_idp = None
        raise httpx.ReadTimeout("the answer was lost", request=request)

    w.after_idp = lose


def api_401_while_idp_down(w: World) -> None:
    """The API rejects the token just when the IdP cannot issue a new one."""
    w.api.fail_next(1, Fault(status=401, body={"error": "invalid_token"}))
    w.idp.set_outage(Fault(status=503))


def api_answers_per_caller(w: World) -> None:
    w.api.handler = whoami


# -- actions


async def expire_then_token(w: World) -> str:
    w.expire()
    return await w.token(w.primary)


async def stale_copy_token(w: World) -> str:
    stale: Session = w.notes["stale"]
    return await w.token(stale)


async def act_slow_idp(w: World) -> str:
    w.expire()
    start = w.clock.monotonic()
    w.notes["start"] = start
    try:
        return await w.token(w.primary)
    finally:
        w.notes["elapsed"] = w.clock.monotonic() - start


async def act_skew(w: World) -> str:
    s = w.primary
    w.expire()
    token = await w.token(s)
    now = w.clock.now()
    w.notes.update(
        valid=w.idp.validate(token),
        skew=s.stats().skew,
        freshness=s.freshness(),
        refresh_in=(s.refresh_at or 0.0) - now,
        before_expiry=s.freshness(now + 594),
        after_expiry=s.freshness(now + 596),
        hits_after_fetch=w.idp_delta,
    )
    w.clock.advance(299)  # not due yet: no refresh, and the token is still good
    early = await w.refresh_if_due(s)
    w.notes.update(
        early_same=early.access_token.get_secret_value() == token,
        early_valid=w.idp.validate(token),
        hits_early=w.idp_delta,
    )
    w.clock.advance(2)  # due now: refreshed on time
    late = await w.refresh_if_due(s)
    w.notes.update(
        late_new=late.access_token.get_secret_value() != token,
        late_valid=w.idp.validate(late.access_token.get_secret_value()),
        hits_late=w.idp_delta,
    )
    return token


async def act_idp_breaker(w: World) -> str:
    s = w.primary
    w.expire()
    w.notes["burst"] = await w.attempt(w.token(s))
    w.notes["burst_hits"] = w.idp_delta
    w.notes["fast"] = await w.attempt(w.token(s))
    w.notes["fast_hits"] = w.idp_delta
    w.notes["open_health"] = s.health()
    w.idp.set_outage(None)
    w.clock.advance(30)  # open_for
    w.notes["half_open"] = s.breaker_state()
    token = await w.token(s)
    w.notes["closed"] = s.breaker_state()
    return token


async def act_degraded(w: World) -> list[int]:
    """The IdP is down while the token is still valid: calls go on, health drops."""
    s = w.primary
    api = w.client(s)
    statuses = []
    w.clock.advance(350)  # STALE: a refresh is due, the token is still valid
    statuses.append((await api.get("/v1/a")).status_code)  # background refresh fails
    await w.settle(s)
    w.notes["h1"] = s.health()
    w.notes["hits1"] = w.idp_delta
    statuses.append((await api.get("/v1/b")).status_code)  # inside the back-off: no new try
    await w.settle(s)
    w.notes["hits2"] = w.idp_delta
    w.clock.advance(3)
    statuses.append((await api.get("/v1/c")).status_code)  # fails again
    await w.settle(s)
    w.notes["h3"] = s.health()
    w.idp.set_outage(None)  # the IdP is back
    w.clock.advance(5)
    statuses.append((await api.get("/v1/d")).status_code)  # background refresh succeeds
    await w.settle(s)
    w.notes["h4"] = s.health()
    return statuses


async def act_concurrent_callers(w: World) -> list[Outcome]:
    """Five callers wait for the same expired token while the IdP fails."""
    w.expire()
    return list(await asyncio.gather(*(w.attempt(w.token(w.primary)) for _ in range(5))))


def api_get(path: str, **client_kwargs: Any) -> Action:
    async def act(w: World) -> httpx.Response:
        return await w.client(w.primary, **client_kwargs).get(path)

    return act


def api_post(path: str, **request_kwargs: Any) -> Action:
    async def act(w: World) -> httpx.Response:
        return await w.client(w.primary).post(path, **request_kwargs)

    return act


API_DEADLINE = RetryPolicy(attempts=10, deadline=12.0)


async def act_slow_api(w: World) -> httpx.Response:
    api = w.client(w.primary, retry=API_DEADLINE)
    start = w.clock.monotonic()
    w.notes["start"] = start
    try:
        return await api.get("/v1/report")
    finally:
        w.notes["elapsed"] = w.clock.monotonic() - start


async def act_foreign_redirect(w: World) -> httpx.Response:
    api = w.client(w.primary, follow_redirects=True)
    return await api.get("/redirect", params={"to": "https://evil.test/collect"})


async def act_concurrent_401s(w: World) -> list[httpx.Response]:
    api = w.client(w.primary)
    w.idp.expire_all()  # every request in flight carries a token the API now refuses
    return list(await asyncio.gather(*(api.get(f"/v1/items/{i}") for i in range(5))))


async def act_api_breaker(w: World) -> httpx.Response:
    policy = BreakerPolicy(minimum_calls=4, failure_rate=0.5, window=60, open_for=30)
    api = w.client(w.primary, retry=False, breaker=policy)
    w.notes["burst"] = [(await api.get("/v1/x")).status_code for _ in range(4)]
    w.notes["open"] = await w.attempt(api.get("/v1/x"))
    w.notes["open_hits"] = w.api_delta
    w.notes["open_health"] = w.primary.health()
    w.api.set_outage(None)
    w.clock.advance(30)  # open_for
    w.notes["half_open"] = w.primary.breaker_state()
    response = await api.get("/v1/x")  # the probe
    w.notes["closed"] = w.primary.breaker_state()
    w.notes["closed_health"] = w.primary.health()
    return response


async def act_api_breaker_probe_fails(w: World) -> httpx.Response:
    policy = BreakerPolicy(minimum_calls=4, failure_rate=0.5, window=60, open_for=30)
    api = w.client(w.primary, retry=False, breaker=policy)
    w.notes["burst"] = [(await api.get("/v1/x")).status_code for _ in range(4)]
    w.clock.advance(30)  # half-open: one probe goes through, and fails
    w.notes["probe"] = (await api.get("/v1/x")).status_code
    w.notes["reopened"] = await w.attempt(api.get("/v1/x"))
    w.notes["reopened_hits"] = w.api_delta
    w.api.set_outage(None)
    w.clock.advance(30)  # another open_for: the next probe succeeds
    response = await api.get("/v1/x")
    w.notes["closed"] = w.primary.breaker_state()
    return response


async def act_budget(w: World) -> httpx.Response:
    budgets = BudgetRegistry(capacity=10, retry_cost=5, timeout_retry_cost=10, success_refund=1)
    api = w.raw_client(w.primary, policy=RetryPolicy(attempts=4), budgets=budgets)
    w.notes["first"] = await w.attempt(api.get("/v1/x"))  # two retries paid, the third is not
    w.notes["first_hits"] = w.api_delta
    w.notes["second"] = await w.attempt(api.get("/v1/x"))  # fails fast: nothing left
    w.notes["second_hits"] = w.api_delta - w.notes["first_hits"]
    w.notes["spent"] = budgets.levels()
    w.api.set_outage(None)
    response = await api.get("/v1/x")
    w.notes["refunded"] = budgets.levels()
    return response


CACHE_POLICY = CachePolicy(ttl=30, stale_while_revalidate=0, stale_if_error=3600)


async def prime_cache(w: World) -> None:
    api = w.client(w.primary, cache=CACHE_POLICY, retry=RetryPolicy(attempts=2))
    w.notes["cached_api"] = api
    first = await api.get("/v1/catalog")
    assert first.status_code == 200
    assert first.extensions["authpulse_cache"] == "miss"
    w.notes["cached_body"] = first.json()


async def act_cache_down(w: World) -> httpx.Response:
    api: Api = w.notes["cached_api"]
    w.clock.advance(60)  # past ttl + stale_while_revalidate: the entry is EXPIRED
    return await api.get("/v1/catalog")


async def act_two_identities(w: World) -> list[httpx.Response]:
    shared = ResponseCache()
    w.notes["cache"] = shared
    other = w.session(w.rt_grant(w.issue_rt()), retry=RETRY)
    a = w.client(w.primary, cache=shared)
    b = w.client(other, cache=shared)
    return [
        await a.get("/v1/me"),
        await b.get("/v1/me"),
        await a.get("/v1/me"),
        await b.get("/v1/me"),
    ]


# -- expectations


def check_counts(
    w: World,
    *,
    idp: int | None = None,
    api: int | None = None,
    sleeps: list[float] | int | None = None,
) -> None:
    if idp is not None:
        assert w.idp_delta == idp, f"IdP hits: {w.idp_delta}, expected {idp}"
    if api is not None:
        assert w.api_delta == api, f"API hits: {w.api_delta}, expected {api}"
    if isinstance(sleeps, int):
        assert len(w.new_sleeps) == sleeps, f"sleeps: {w.new_sleeps}"
    elif sleeps is not None:
        assert w.new_sleeps == pytest.approx(sleeps)


def raises(
    exc_type: type[BaseException],
    *,
    idp: int | None = None,
    api: int | None = None,
    sleeps: list[float] | int | None = None,
    text: str | None = None,
    then: Then | None = None,
    **attrs: object,
) -> Expect:
    """The action raised ``exc_type`` (with ``attrs``) and installed no token."""

    async def expect(w: World, o: Outcome) -> None:
        assert isinstance(o.error, exc_type), f"expected {exc_type.__name__}, got {o!r}"
        for name, value in attrs.items():
            assert getattr(o.error, name) == value, f"{name}: {getattr(o.error, name)!r}"
        if text is not None:
            assert text in str(o.error)
        assert w.primary.generation == w.marks.generation, "a token was installed"
        check_counts(w, idp=idp, api=api, sleeps=sleeps)
        if then is not None:
            then(w, o.error)

    return expect


def returns_token(
    *,
    idp: int,
    sleeps: list[float] | int | None = None,
    valid: bool = True,
    then: Then | None = None,
) -> Expect:
    """The action returned a new token (valid at the IdP unless ``valid=False``)."""

    async def expect(w: World, o: Outcome) -> None:
        assert o.error is None, f"unexpected {o.error!r}"
        assert isinstance(o.value, str)
        assert o.value != w.warm_token
        assert w.idp.validate(o.value) is valid
        assert w.primary.generation == w.marks.generation + 1
        check_counts(w, idp=idp, sleeps=sleeps)
        if then is not None:
            then(w, o.value)

    return expect


def responds(
    status: int,
    *,
    idp: int | None = None,
    api: int | None = None,
    sleeps: list[float] | int | None = None,
    attempts: int | None = None,
    then: Then | None = None,
) -> Expect:
    """The action returned an HTTP response with ``status``."""

    async def expect(w: World, o: Outcome) -> None:
        assert o.error is None, f"unexpected {o.error!r}"
        response = o.value
        assert isinstance(response, httpx.Response)
        assert response.status_code == status
        if attempts is not None:
            info = response.extensions["authpulse_retry"]
            assert isinstance(info, RetryInfo)
            assert info.attempts == attempts
            assert info.retried is (attempts > 1)
        check_counts(w, idp=idp, api=api, sleeps=sleeps)
        if then is not None:
            then(w, response)

    return expect


def health_has(w: World, component: str) -> bool:
    return any(c.name == component for c in w.primary.health().components)


# -- row-specific checks (sync; ``then=``)


def refresh_failure_in_health(w: World, exc: BaseException) -> None:
    assert health_has(w, "refresh")
    assert w.primary.stats().consecutive_failures == 1


def retried_once_quietly(w: World, token: str) -> None:
    assert w.new_events.count("retry") == 1
    assert w.primary.stats().failures == 0


def description_scrubbed(w: World, exc: OAuthError) -> None:
    assert exc.description is not None
    assert "[redacted]" in exc.description


def fell_back_to_stored_credentials(w: World, token: str) -> None:
    assert w.chain is not None
    assert w.chain.level == 1
    assert w.new_grant_types == ["refresh_token", "password"]
    assert "fallback_used" in w.new_events
    assert health_has(w, "fallback")
    assert w.logins == []


def token_from_numeric_string(w: World, token: str) -> None:
    ts = w.primary.token_set
    assert token == PLANTED_AT
    assert ts is not None
    assert ts.expires_at - ts.issued_at == pytest.approx(600)
    # the answer carried no refresh token: the one held before is kept
    assert ts.refresh_token is not None
    assert ts.refresh_token.get_secret_value() == w.marks.refresh_token


def hook_failure_logged(w: World, token: str) -> None:
    assert "hook_failed" in w.new_events
    logged = [r for r in w.caplog.records if "on_token_update hook raised" in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].levelno == logging.ERROR
    ts = w.primary.token_set
    assert ts is not None
    assert ts.refresh_token is not None
    assert ts.refresh_token.get_secret_value() != w.first_rt  # the rotated one was installed


def is_transport_error_without_path(w: World, exc: BaseException) -> None:
    assert isinstance(exc, httpx.TransportError)
    assert isinstance(exc, RequestFailedError)
    assert exc.upstream == "https://api.test:443"
    assert isinstance(exc.__cause__, httpx.TransportError)  # the last httpx exception
    assert "/v1/orders" not in str(exc)


def no_control_characters(w: World, exc: OAuthError) -> None:
    """Server text cannot forge log lines or colour a terminal."""
    assert exc.description is not None
    assert "fake line" in exc.description
    for text in (exc.description, str(exc)):
        assert not any(ch in text for ch in "\r\n\x1b")
    for r in w.caplog.records:
        if r.name.startswith("authpulse"):
            assert "\x1b" not in r.getMessage()
            assert "\nfake line" not in r.getMessage()


# -- row-specific expectations (async)


async def expect_slow_idp(w: World, o: Outcome) -> None:
    assert isinstance(o.error, TokenEndpointError)
    assert o.error.error_class is ErrorClass.NETWORK
    assert "timed out" in str(o.error)
    retry = w.primary.retry
    elapsed: float = w.notes["elapsed"]
    assert elapsed <= retry.deadline + 1e-9, "the deadline was overrun"
    timeouts: list[tuple[float, float]] = w.notes["timeouts"]
    deadline = w.notes["start"] + retry.deadline
    for at, timeout in timeouts:  # each attempt's timeout is cut to what the deadline leaves
        assert timeout <= min(retry.attempt_timeout, deadline - at) + 1e-9
    assert 2 <= w.idp_delta == len(timeouts) < retry.attempts
    assert w.primary.generation == w.marks.generation


async def expect_reuse(w: World, o: Outcome) -> None:
    assert isinstance(o.error, OAuthError)
    assert o.error.error == "invalid_grant"
    assert w.idp.reuse_detected == 1
    assert w.idp_delta == 1
    # the whole grant is revoked: the other session's token and refresh token die too
    ts = w.primary.token_set
    assert ts is not None
    assert not w.idp.validate(ts.access_token.get_secret_value())
    again = await w.attempt(w.force_refresh(w.primary))
    assert isinstance(again.error, OAuthError)
    assert again.error.error == "invalid_grant"
    assert w.idp.reuse_detected == 1  # a revoked grant is refused, not "reused" again


async def expect_login_required(w: World, o: Outcome) -> None:
    assert isinstance(o.error, LoginRequiredError)
    assert o.error.login_url == LOGIN_URL
    assert len(w.logins) == 1
    assert w.new_grant_types == ["refresh_token", "password"]
    hits = w.idp_delta
    again = await w.attempt(w.token(w.primary))  # nothing is retried automatically
    assert isinstance(again.error, LoginRequiredError)
    assert w.idp_delta == hits
    assert len(w.logins) == 1, "the login hook must be called once"
    assert health_has(w, "state")
    assert "login_required" in w.new_events


async def expect_skew(w: World, o: Outcome) -> None:
    offset = w.idp.clock_offset
    assert o.error is None
    assert w.notes["valid"]
    assert w.notes["skew"] == pytest.approx(offset)
    assert w.notes["freshness"] is Freshness.FRESH  # not EXPIRED on arrival
    assert w.notes["refresh_in"] == pytest.approx(300)  # max(300 s, 10 %), no jitter
    assert w.notes["before_expiry"] is Freshness.STALE
    assert w.notes["after_expiry"] is Freshness.EXPIRED
    assert w.notes["hits_after_fetch"] == 1
    assert w.notes["early_same"]
    assert w.notes["early_valid"]
    assert w.notes["hits_early"] == 1
    assert w.notes["late_new"]
    assert w.notes["late_valid"]
    assert w.notes["hits_late"] == 2


async def expect_idp_breaker(w: World, o: Outcome) -> None:
    burst: Outcome = w.notes["burst"]
    assert isinstance(burst.error, TokenEndpointError)
    assert burst.error.error_class is ErrorClass.SERVER
    assert burst.error.attempts == 3
    assert w.notes["burst_hits"] == 3
    fast: Outcome = w.notes["fast"]
    assert isinstance(fast.error, CircuitOpenError)
    assert w.notes["fast_hits"] == 3, "an open breaker must not call the IdP"
    assert any(c.name == "breaker" for c in w.notes["open_health"].components)
    assert w.notes["half_open"] == "half_open"
    assert o.error is None
    assert w.idp.validate(o.value)
    assert w.notes["closed"] == "closed"
    assert w.idp_delta == 4


async def expect_degraded(w: World, o: Outcome) -> None:
    assert o.value == [200, 200, 200, 200], "calls must keep succeeding on the valid token"
    assert w.api.unauthorized == 0
    assert w.notes["hits1"] == 2  # one background refresh, two attempts
    assert w.notes["hits2"] == 2  # back-off: no new attempt right away
    h1, h3, h4 = w.notes["h1"], w.notes["h3"], w.notes["h4"]
    assert h1.score < 100
    assert any(c.name == "refresh" for c in h1.components)
    assert h3.score < h1.score
    assert h4.score == 100, h4.components
    assert w.idp_delta == 5
    assert w.primary.generation == w.marks.generation + 1
    assert w.primary.stats().consecutive_failures == 0


async def expect_api_breaker(w: World, o: Outcome) -> None:
    assert w.notes["burst"] == [500, 500, 500, 500]
    opened: Outcome = w.notes["open"]
    assert isinstance(opened.error, CircuitOpenError)
    assert w.notes["open_hits"] == 4, "an open breaker must not call the API"
    assert any(c.name == "breaker" for c in w.notes["open_health"].components)
    assert w.notes["half_open"] == "half_open"
    assert isinstance(o.value, httpx.Response)
    assert o.value.status_code == 200
    assert w.notes["closed"] == "closed"
    assert not any(c.name == "breaker" for c in w.notes["closed_health"].components)
    check_counts(w, api=5, idp=0)


async def expect_shared_failure(w: World, o: Outcome) -> None:
    outcomes: list[Outcome] = o.value
    errors = [x.error for x in outcomes]
    assert all(isinstance(e, TokenEndpointError) for e in errors)
    assert len({id(e) for e in errors}) == 1, "every waiter gets the same typed error"
    assert w.idp_delta == 3, "one refresh (three attempts) for five callers"
    assert w.primary.stats().token_requests == 2  # warm-up + the one shared flight


async def expect_answer_lost(w: World, o: Outcome) -> None:
    # inherent to single-use refresh tokens without a reuse grace period at the IdP:
    # the retry presents the retired token, the IdP sees reuse and revokes the grant.
    # What matters here: a typed error, no loop, and nothing secret in the logs.
    assert isinstance(o.error, OAuthError)
    assert o.error.error == "invalid_grant"
    assert w.idp.reuse_detected == 1
    assert w.idp_delta == 2
    assert w.new_grant_types == ["refresh_token", "refresh_token"]
    assert w.primary.generation == w.marks.generation


async def expect_api_breaker_probe_fails(w: World, o: Outcome) -> None:
    assert w.notes["burst"] == [500, 500, 500, 500]
    assert w.notes["probe"] == 500
    reopened: Outcome = w.notes["reopened"]
    assert isinstance(reopened.error, CircuitOpenError)
    assert w.notes["reopened_hits"] == 5
    assert isinstance(o.value, httpx.Response)
    assert o.value.status_code == 200
    assert w.notes["closed"] == "closed"
    check_counts(w, api=6, idp=0)


async def expect_slow_api(w: World, o: Outcome) -> None:
    assert isinstance(o.error, RequestFailedError)
    assert isinstance(o.error, httpx.TransportError)
    assert o.error.error_class is ErrorClass.NETWORK
    elapsed: float = w.notes["elapsed"]
    assert elapsed <= API_DEADLINE.deadline + 1e-9, "the deadline was overrun"
    deadline = w.notes["start"] + API_DEADLINE.deadline
    timeouts: list[tuple[float, float]] = w.notes["timeouts"]
    for at, timeout in timeouts:  # each attempt's timeout is cut to what the deadline leaves
        assert timeout <= deadline - at + 1e-9
    assert 2 <= o.error.attempts == len(timeouts) == w.api_delta < API_DEADLINE.attempts
    gave_up = [f for kind, f in w.events if kind == "api_gave_up"]
    assert [f["reason"] for f in gave_up] == ["deadline"]
    assert w.idp_delta == 0


async def expect_foreign_redirect(w: World, o: Outcome) -> None:
    response = o.value
    assert isinstance(response, httpx.Response)
    assert response.url.host == "evil.test"
    assert response.status_code == 401  # the fake API wants a token; none was sent
    assert w.api.authorization_seen[-2:] == [True, False], "the token followed the redirect"
    check_counts(w, api=2, idp=0)  # and that 401 does not trigger a refresh


async def expect_concurrent_401s(w: World, o: Outcome) -> None:
    responses: list[httpx.Response] = o.value
    assert [r.status_code for r in responses] == [200] * 5
    assert w.idp_delta == 1, "one refresh for every request the API refused"
    assert 5 < w.api_delta <= 10  # each request was replayed at most once
    assert w.primary.generation == w.marks.generation + 1


async def expect_budget(w: World, o: Outcome) -> None:
    first: Outcome = w.notes["first"]
    assert isinstance(first.error, RetryBudgetExhaustedError)
    assert first.error.attempts == 3
    assert first.error.status_code == 503
    assert w.notes["first_hits"] == 3
    second: Outcome = w.notes["second"]
    assert isinstance(second.error, RetryBudgetExhaustedError)
    assert second.error.attempts == 1
    assert w.notes["second_hits"] == 1
    assert list(w.notes["spent"].values()) == [0]
    assert isinstance(o.value, httpx.Response)
    assert o.value.status_code == 200
    assert list(w.notes["refunded"].values()) == [1]
    check_counts(w, api=5, idp=0)


async def expect_stale_if_error(w: World, o: Outcome) -> None:
    assert o.error is None, f"unexpected {o.error!r}"
    response = o.value
    assert isinstance(response, httpx.Response)
    assert response.status_code == 200
    assert response.extensions["authpulse_cache"] == "stale-if-error"
    assert response.json() == w.notes["cached_body"]
    api: Api = w.notes["cached_api"]
    assert isinstance(api.client, authpulse.Client | authpulse.AsyncClient)
    assert api.client.cache is not None
    assert api.client.cache.stats().stale_if_error_served == 1
    check_counts(w, api=2, idp=0)  # the retry transport tried twice, then gave up
    assert health_has(w, "cache")


async def expect_two_identities(w: World, o: Outcome) -> None:
    a1, b1, a2, b2 = o.value
    assert [r.status_code for r in o.value] == [200] * 4
    assert a1.json() != b1.json(), "the second identity was served the first one's answer"
    assert [r.extensions["authpulse_cache"] for r in o.value] == ["miss", "miss", "hit", "hit"]
    assert a2.json() == a1.json()
    assert b2.json() == b1.json()
    stats = w.notes["cache"].stats()
    assert (stats.hits, stats.misses, stats.entries) == (2, 2, 2)
    check_counts(w, api=2, idp=1)  # the second session's first token


BAD_JSON_ERROR = "body that is not JSON"

ROWS: list[Row] = [
    # ---------------------------------------------------------- token endpoint
    Row(
        "idp-connection-refused",
        idp_outage(Fault.refused()),
        expire_then_token,
        raises(
            TokenEndpointError,
            idp=3,
            sleeps=2,
            text="ConnectError",
            error_class=ErrorClass.NETWORK,
            attempts=3,
            then=refresh_failure_in_health,
        ),
    ),
    Row(
        "idp-connection-refused-then-recovers",
        idp_fails(2, Fault.refused()),
        expire_then_token,
        returns_token(idp=3, sleeps=2),
    ),
    Row(
        "idp-slow-beyond-deadline",
        idp_hangs_until_timeout,
        act_slow_idp,
        expect_slow_idp,
        retry=TokenRetry(
            attempts=10, deadline=5.0, attempt_timeout=2.0, backoff_base=0.5, backoff_max=0.5
        ),
    ),
    Row(
        "idp-500-then-200",
        idp_fails(1, Fault(status=500)),
        expire_then_token,
        returns_token(idp=2, sleeps=1, then=retried_once_quietly),
    ),
    Row(
        "idp-502-html-proxy-page-then-200",
        idp_fails(1, Fault(status=502, body="<html>Bad Gateway</html>", content_type="text/html")),
        expire_then_token,
        returns_token(idp=2, sleeps=1),
    ),
    Row(
        "idp-503-retry-after-seconds",
        idp_fails(1, Fault(status=503, headers={"retry-after": "7"})),
        expire_then_token,
        returns_token(idp=2, sleeps=[7.0]),
    ),
    Row(
        "idp-503-retry-after-http-date",
        idp_503_until_date,
        expire_then_token,
        returns_token(idp=2, sleeps=[12.0]),
    ),
    Row(
        "idp-503-retry-after-date-from-idp-10-min-behind",
        idp_503_until_its_own_date,
        expire_then_token,
        returns_token(idp=2, sleeps=[12.0]),
        idp_clock_offset=-600.0,
    ),
    Row(
        "idp-503-retry-after-date-from-idp-10-min-ahead",
        idp_503_until_its_own_date,
        expire_then_token,
        returns_token(idp=2, sleeps=[12.0]),
        idp_clock_offset=600.0,
    ),
    Row(
        "idp-429-storm",
        idp_outage(Fault(status=429, headers={"retry-after": "1"})),
        expire_then_token,
        raises(
            TokenEndpointError,
            idp=3,
            sleeps=[1.0, 1.0],
            error_class=ErrorClass.THROTTLED,
            status_code=429,
            attempts=3,
            then=refresh_failure_in_health,
        ),
    ),
    Row(
        "idp-429-retry-after-beyond-deadline",
        idp_fails(1, Fault(status=429, headers={"retry-after": "120"})),
        expire_then_token,
        raises(
            TokenEndpointError,
            idp=1,
            sleeps=0,  # a sleep past the deadline is not taken at all
            error_class=ErrorClass.THROTTLED,
            retry_after=120.0,
        ),
    ),
    Row(
        "idp-404-html-not-retried",
        idp_fails(1, Fault(status=404, body="<html>nope</html>", content_type="text/html")),
        expire_then_token,
        raises(TokenEndpointError, idp=1, sleeps=0, error_class=ErrorClass.CLIENT, status_code=404),
    ),
    Row(
        "idp-invalid-grant-not-retried",
        idp_fails(1, Fault.oauth("invalid_grant")),
        expire_then_token,
        raises(OAuthError, idp=1, sleeps=0, error="invalid_grant", permanent=True),
    ),
    Row(
        "idp-invalid-client-not-retried",
        idp_fails(1, Fault.oauth("invalid_client", status=401)),
        expire_then_token,
        raises(OAuthError, idp=1, sleeps=0, error="invalid_client", status_code=401),
    ),
    Row(
        "idp-error-description-echoes-secrets",
        idp_echoes_secrets,
        expire_then_token,
        raises(OAuthError, idp=1, error="invalid_grant", then=description_scrubbed),
    ),
    Row(
        "idp-error-description-echoes-basic-credentials",
        idp_echoes_authorization_header,
        expire_then_token,
        raises(OAuthError, idp=1, error="invalid_client", then=description_scrubbed),
    ),
    Row(
        "idp-error-description-echoes-form-encoded-secret",
        idp_echoes_form_body,
        expire_then_token,
        raises(OAuthError, idp=1, error="invalid_request", then=description_scrubbed),
        build=build_legacy_post,
    ),
    Row(
        "idp-error-description-log-injection",
        idp_fails(
            1,
            Fault.oauth(
                "invalid_request",
                description="bad\r\n2030-01-01 CRITICAL authpulse: fake line\x1b[31m",
            ),
        ),
        expire_then_token,
        raises(OAuthError, idp=1, error="invalid_request", then=no_control_characters),
    ),
    Row(
        "idp-500-storm-shared-by-concurrent-callers",
        idp_outage(Fault(status=500)),
        act_concurrent_callers,
        expect_shared_failure,
        modes=("async",),  # threads could each find the flight finished: counts would race
    ),
    Row(
        "idp-answer-lost-after-rotation",
        idp_answer_lost_after_rotation,
        expire_then_token,
        expect_answer_lost,
        grant_survives=False,
        reuse_detected=1,
    ),
    Row(
        "refresh-token-reused-by-stale-copy",
        restore_stale_backup,
        stale_copy_token,
        expect_reuse,
        grant_survives=False,
        reuse_detected=1,
    ),
    Row(
        "revoked-grant-falls-back-to-stored-credentials",
        revoke_grant,
        expire_then_token,
        returns_token(idp=2, then=fell_back_to_stored_credentials),
        build=lambda w, retry: build_chain(w, retry, ("alice", PASSWORD)),
    ),
    Row(
        "all-fallback-levels-fail-login-required",
        revoke_grant,
        expire_then_token,
        expect_login_required,
        build=lambda w, retry: build_chain(w, retry, ("alice", WRONG_PASSWORD)),
        grant_survives=False,
    ),
    # ---------------------------------------------------------- malformed answers
    Row(
        "token-response-not-json",
        idp_answers(f"access_token={PLANTED_AT}&expires_in=600", "text/plain"),
        expire_then_token,
        raises(TokenResponseError, idp=1, sleeps=0, text=BAD_JSON_ERROR),
    ),
    Row(
        "token-response-html",
        idp_answers(f"<html><body>token {PLANTED_AT}</body></html>", "text/html"),
        expire_then_token,
        raises(TokenResponseError, idp=1, sleeps=0, text="text/html"),
    ),
    Row(
        "token-response-empty",
        idp_answers(b""),
        expire_then_token,
        raises(TokenResponseError, idp=1, sleeps=0, text="empty body"),
    ),
    Row(
        "token-response-truncated-json",
        idp_answers(f'{{"access_token": "{PLANTED_AT}", "token_type": "Bearer", "expi'),
        expire_then_token,
        raises(TokenResponseError, idp=1, sleeps=0, text=BAD_JSON_ERROR),
    ),
    Row(
        "token-response-missing-access-token",
        idp_answers({"token_type": "Bearer", "expires_in": 600, "refresh_token": PLANTED_RT}),
        expire_then_token,
        raises(TokenResponseError, idp=1, sleeps=0, text="access_token"),
    ),
    Row(
        "expires-in-negative",
        idp_answers({"access_token": PLANTED_AT, "expires_in": -5, "refresh_token": PLANTED_RT}),
        expire_then_token,
        raises(TokenResponseError, idp=1, sleeps=0, text="expires_in"),
    ),
    Row(
        "expires-in-zero",
        idp_answers({"access_token": PLANTED_AT, "expires_in": 0, "refresh_token": PLANTED_RT}),
        expire_then_token,
        raises(TokenResponseError, idp=1, sleeps=0, text="expires_in"),
    ),
    Row(
        "expires-in-ten-years",
        idp_answers(
            {"access_token": PLANTED_AT, "expires_in": TEN_YEARS, "refresh_token": PLANTED_RT}
        ),
        expire_then_token,
        raises(TokenResponseError, idp=1, sleeps=0, text="absurdly large"),
    ),
    Row(
        "expires-in-non-numeric-string",
        idp_answers(
            {"access_token": PLANTED_AT, "expires_in": "soon", "refresh_token": PLANTED_RT}
        ),
        expire_then_token,
        raises(TokenResponseError, idp=1, sleeps=0, text="non-numeric string"),
    ),
    Row(
        "expires-in-nan",
        idp_answers(f'{{"access_token": "{PLANTED_AT}", "expires_in": NaN}}'),
        expire_then_token,
        raises(TokenResponseError, idp=1, sleeps=0, text="positive number"),
    ),
    Row(
        "expires-in-boolean",
        idp_answers({"access_token": PLANTED_AT, "expires_in": True}),
        expire_then_token,
        raises(TokenResponseError, idp=1, sleeps=0, text="expires_in"),
    ),
    Row(
        "token-response-json-array",
        idp_answers(f'["{PLANTED_AT}", "{PLANTED_RT}"]'),
        expire_then_token,
        raises(TokenResponseError, idp=1, sleeps=0, text="JSON list"),
    ),
    Row(
        "access-token-with-crlf-header-injection",
        idp_answers({"access_token": f"{PLANTED_AT}\r\nX-Injected: 1", "expires_in": 600}),
        expire_then_token,
        raises(TokenResponseError, idp=1, sleeps=0, text="not a valid Bearer token"),
    ),
    Row(
        "idp-200-with-oauth-error-body",
        idp_answers({"error": "invalid_grant", "error_description": "grant expired"}),
        expire_then_token,
        raises(OAuthError, idp=1, sleeps=0, error="invalid_grant", status_code=200),
    ),
    Row(
        "expires-in-numeric-string-accepted",
        idp_answers({"access_token": PLANTED_AT, "token_type": "Bearer", "expires_in": "600"}),
        expire_then_token,
        returns_token(idp=1, sleeps=0, valid=False, then=token_from_numeric_string),
    ),
    # ---------------------------------------------------------- clocks, hooks, breaker
    Row("idp-clock-skew-plus-10-min", nothing, act_skew, expect_skew, idp_clock_offset=600.0),
    Row("idp-clock-skew-minus-10-min", nothing, act_skew, expect_skew, idp_clock_offset=-600.0),
    Row("idp-clock-jumps-plus-10-min", clock_jump(600.0), act_skew, expect_skew),
    Row("idp-clock-jumps-minus-10-min", clock_jump(-600.0), act_skew, expect_skew),
    Row(
        "token-update-hook-raises",
        hook_fails_once,
        expire_then_token,
        returns_token(idp=1, then=hook_failure_logged),
    ),
    Row(
        "idp-breaker-opens-then-half-open-recovers",
        idp_outage(Fault(status=503)),
        act_idp_breaker,
        expect_idp_breaker,
        build=lambda w, retry: w.session(
            w.rt_grant(),
            retry=retry,
            breaker=BreakerPolicy(minimum_calls=3, failure_rate=0.5, window=60, open_for=30),
        ),
    ),
    Row(
        "idp-outage-while-token-valid-degraded",
        idp_outage(Fault(status=503)),
        act_degraded,
        expect_degraded,
        retry=TokenRetry(attempts=2),
    ),
    # ---------------------------------------------------------- the API
    Row(
        "api-401-every-time-no-loop",
        api_outage(Fault(status=401, body={"error": "invalid_token"})),
        api_get("/v1/items"),
        responds(401, api=2, idp=1),
    ),
    Row(
        "api-401-once-then-200",
        api_fails(1, Fault(status=401, body={"error": "invalid_token"})),
        api_get("/v1/items"),
        responds(200, api=2, idp=1),
    ),
    Row(
        "api-401-after-idp-key-rotation",
        lambda w: w.idp.expire_all(),
        api_get("/v1/items"),
        responds(200, api=2, idp=1),
    ),
    Row(
        "api-401-while-idp-down",
        api_401_while_idp_down,
        api_get("/v1/items"),
        raises(TokenEndpointError, api=1, idp=3, error_class=ErrorClass.SERVER, attempts=3),
    ),
    Row(
        "api-429-retry-after-http-date",
        api_429_until_date,
        api_get("/v1/items"),
        responds(200, api=2, idp=0, sleeps=[9.0], attempts=2),
    ),
    Row(
        "api-429-retry-after-date-from-server-10-min-behind",
        api_429_until_its_own_date,
        api_get("/v1/items"),
        responds(200, api=2, idp=0, sleeps=[9.0], attempts=2),
    ),
    Row(
        "api-429-retry-after-beyond-deadline",
        api_fails(1, Fault(status=429, headers={"retry-after": "120"})),
        api_get("/v1/items"),
        responds(429, api=1, idp=0, sleeps=0, attempts=1),
    ),
    Row(
        "api-429-post-retried",
        api_fails(1, Fault(status=429, headers={"retry-after": "2"})),
        api_post("/v1/orders", json={"n": 1}),
        responds(200, api=2, idp=0, sleeps=[2.0], attempts=2),
    ),
    Row(
        "api-5xx-post-not-retried",
        api_fails(1, Fault(status=503)),
        api_post("/v1/orders", json={"n": 1}),
        responds(503, api=1, idp=0, sleeps=0, attempts=1),
    ),
    Row(
        "api-5xx-post-with-idempotency-key-retried",
        api_fails(1, Fault(status=503)),
        api_post("/v1/orders", json={"n": 1}, headers={"Idempotency-Key": "order-1"}),
        responds(200, api=2, idp=0, sleeps=1, attempts=2),
    ),
    Row(
        "api-503-retry-after-post-not-retried",
        api_fails(1, Fault(status=503, headers={"retry-after": "1"})),
        api_post("/v1/orders", json={"n": 1}),
        responds(503, api=1, idp=0, sleeps=0, attempts=1),
    ),
    Row(
        "api-5xx-get-retried-then-200",
        api_fails(2, Fault(status=500)),
        api_get("/v1/items"),
        responds(200, api=3, idp=0, sleeps=2, attempts=3),
    ),
    Row(
        "api-slow-beyond-deadline",
        api_hangs_until_timeout,
        act_slow_api,
        expect_slow_api,
    ),
    Row(
        "api-redirect-to-foreign-origin-drops-token",
        nothing,
        act_foreign_redirect,
        expect_foreign_redirect,
    ),
    Row(
        "api-concurrent-401s-one-refresh",
        nothing,  # the IdP's key rotation happens while the requests are in flight
        act_concurrent_401s,
        expect_concurrent_401s,
    ),
    Row(
        "api-breaker-opens-then-half-open-recovers",
        api_outage(Fault(status=500)),
        act_api_breaker,
        expect_api_breaker,
    ),
    Row(
        "api-breaker-half-open-probe-fails-reopens",
        api_outage(Fault(status=500)),
        act_api_breaker_probe_fails,
        expect_api_breaker_probe_fails,
    ),
    Row(
        "api-retry-budget-exhausted",
        api_outage(Fault(status=503)),
        act_budget,
        expect_budget,
    ),
    Row(
        "api-down-cache-stale-if-error",
        api_outage(Fault.refused()),
        act_cache_down,
        expect_stale_if_error,
        prime=prime_cache,
    ),
    Row(
        "api-5xx-cache-stale-if-error",
        api_outage(Fault(status=503)),
        act_cache_down,
        expect_stale_if_error,
        prime=prime_cache,
    ),
    Row(
        "api-two-identities-never-share-cache",
        api_answers_per_caller,
        act_two_identities,
        expect_two_identities,
    ),
    Row(
        "api-network-error",
        api_outage(Fault.refused()),
        api_get("/v1/orders"),
        raises(
            RequestFailedError,
            api=4,
            idp=0,
            sleeps=3,
            error_class=ErrorClass.NETWORK,
            attempts=4,
            then=is_transport_error_without_path,
        ),
    ),
    Row(
        "api-read-timeout-post-not-retried",
        api_fails(1, Fault.timeout()),
        api_post("/v1/orders", json={"n": 1}),
        raises(
            RequestFailedError,
            api=1,
            idp=0,
            sleeps=0,
            attempts=1,
            then=is_transport_error_without_path,
        ),
    ),
]


def build_chain(w: World, retry: TokenRetry, stored: tuple[str, str]) -> Session:
    """refresh token -> stored credentials -> silent re-auth (never possible) -> login."""

    def no_silent_reauth(current: TokenSet | None) -> TokenSet | None:
        return None

    w.chain = FallbackChain(
        [
            w.rt_grant(),
            StoredCredentials(w.idp.token_url, CLIENT_ID, CLIENT_SECRET, load=lambda: stored),
            SilentReauth(no_silent_reauth),
            LoginRequired(LOGIN_URL, on_login_required=w.logins.append),
        ],
        retry_primary_after=60,
    )
    return w.session(w.chain, retry=retry)


def test_the_matrix_is_big_and_named() -> None:
    names = [row.name for row in ROWS]
    assert len(names) == len(set(names)), "row names must be unique"
    assert len(ROWS) >= 30


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("row", "mode"),
    [pytest.param(row, mode, id=f"{row.name}-{mode}") for row in ROWS for mode in row.modes],
)
async def test_fault(
    row: Row, mode: Mode, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    w = World(clock, mode, caplog, idp_clock_offset=row.idp_clock_offset)
    try:
        w._primary = row.build(w, row.retry)
        w.warm_token = await w.token(w.primary)
        assert w.idp.validate(w.warm_token)
        if row.prime is not None:
            await row.prime(w)
        w.mark()
        row.setup(w)
        outcome = await w.attempt(row.action(w))
        await row.expect(w, outcome)  # (1) the outcome
        assert w.idp.reuse_detected == row.reuse_detected
        if row.grant_survives:  # (2) no refresh token lost
            await w.assert_grant_survives()
        assert w.idp.reuse_detected == row.reuse_detected
    finally:
        await w.close()
    w.assert_no_secret_leaked(caplog.records)  # (3) no secret anywhere
