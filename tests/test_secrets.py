"""No secret in any repr, exception, log record, listener event, stats or health report."""

from __future__ import annotations

import base64
import logging
import random
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import pytest
from pydantic import SecretStr

from _support import assert_no_secret, make_token
from authpulse import (
    AsyncClient,
    CallableSource,
    Client,
    ClientCredentials,
    FetchContext,
    Fetched,
    JWTVerifier,
    MemoryStore,
    OAuthError,
    RefreshError,
    RefreshPolicy,
    RefreshTokenGrant,
    Session,
    TokenEndpointError,
    TokenError,
    TokenResponseError,
    TokenRetry,
    TokenSet,
    TokenVerificationError,
)
from authpulse._runtime.backend import httpx
from authpulse.testing import FakeAPI, FakeClock, FakeIdP, Fault

CLIENT_SECRET = "cs_SUPER_SECRET_client_value"
INITIAL_RT = "rt_INITIAL_SECRET_refresh_value"


def echoing_idp(request: httpx.Request) -> httpx.Response:
    """A badly behaved token endpoint that quotes back everything it was sent."""
    form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
    header = request.headers.get("authorization", "")
    basic = unquote(base64.b64decode(header[6:]).decode()) if header else ""
    quoted = f"rt={form.get('refresh_token')} cs={form.get('client_secret')} basic={basic}"
    return httpx.Response(
        400,
        json={
            "error": f"invalid_grant {form.get('refresh_token')}",
            "error_description": f"cannot accept {quoted}",
            "error_uri": "https://idp.test/e",
        },
    )


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_secrets_echoed_by_the_server_never_reach_the_caller(
    clock: FakeClock, method: Any, caplog: pytest.LogCaptureFixture
) -> None:
    grant = RefreshTokenGrant(
        "https://idp.test/token",
        "client",
        CLIENT_SECRET,
        refresh_token=INITIAL_RT,
        auth_method=method,
    )
    events: list[tuple[str, dict[str, Any]]] = []
    session = Session(grant, clock=clock, transport=httpx.MockTransport(echoing_idp))
    session.add_listener(lambda kind, fields: events.append((kind, fields)))
    with caplog.at_level(logging.DEBUG), pytest.raises(OAuthError) as info:
        session.token()
    exc = info.value
    secrets = [CLIENT_SECRET, INITIAL_RT]
    for text in (
        str(exc),
        repr(exc),
        exc.error,
        exc.description or "",
        repr(session.stats()),
        repr(session.health().to_dict()),
        repr(events),
        caplog.text,
    ):
        assert_no_secret(text, secrets)
    assert "[redacted]" in (exc.description or "")
    assert events[-1][0] == "refresh_failed"


def test_reprs_hide_secrets(clock: FakeClock, idp: FakeIdP) -> None:
    token = TokenSet(
        access_token=SecretStr("at_SECRET_access_value"),
        refresh_token=SecretStr("rt_SECRET_refresh_value"),
        id_token=SecretStr("id_SECRET_id_value"),
        issued_at=clock.now(),
        expires_at=clock.now() + 600,
    )
    cc = ClientCredentials(idp.token_url, "client", CLIENT_SECRET)
    rtg = RefreshTokenGrant(idp.token_url, "client", CLIENT_SECRET, refresh_token=INITIAL_RT)
    session = Session(rtg, token=token, clock=clock, transport=idp.transport)
    client = Client(session, base_url="https://api.test")
    aclient = AsyncClient(session, base_url="https://api.test")
    ctx = FetchContext(
        current=token,
        clock=clock,
        retry=TokenRetry(),
        rng=random.Random(0),
        default_lifetime=60,
        http=lambda: httpx.Client(),
        ahttp=lambda: httpx.AsyncClient(),
    )
    objects: list[object] = [
        token,
        cc,
        rtg,
        session,
        session.auth(),
        client,
        client.auth,
        aclient,
        session.stats(),
        session.health(),
        ctx,
        Fetched(token, 1.0),
        CallableSource(lambda cur: token, name="vault"),
    ]
    secrets = [
        "at_SECRET_access_value",
        "rt_SECRET_refresh_value",
        "id_SECRET_id_value",
        CLIENT_SECRET,
        INITIAL_RT,
    ]
    for obj in objects:
        assert_no_secret(repr(obj), secrets)
        assert_no_secret(str(obj), secrets)
    assert_no_secret(token.model_dump_json(), secrets)
    assert "client" in repr(cc)  # the client id is not a secret
    client.close()


def test_request_headers_carry_the_secret_only_where_needed(idp: FakeIdP) -> None:
    req = ClientCredentials(idp.token_url, "client", CLIENT_SECRET).build_request(None)
    assert CLIENT_SECRET not in repr(req)
    assert CLIENT_SECRET not in str(req.url)


def test_full_life_never_logs_or_emits_a_secret(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Rotation, retries, failures, a failing hook and listener, 401 replay,
    background refresh: collect every token ever issued and scan everything."""
    idp = FakeIdP(clock=clock, access_ttl=600, clients={"client": CLIENT_SECRET})
    api = FakeAPI(idp)
    first_rt = idp.issue_refresh_token()
    seen_sets: list[TokenSet] = []

    def hook(ts: TokenSet) -> None:
        seen_sets.append(ts)
        if len(seen_sets) == 2:
            raise RuntimeError("persisting failed")

    events: list[tuple[str, dict[str, Any]]] = []

    def bad_listener(kind: str, fields: dict[str, Any]) -> None:
        if kind == "retry":
            raise ValueError("listener bug")

    session = Session(
        RefreshTokenGrant(idp.token_url, "client", CLIENT_SECRET, refresh_token=first_rt),
        clock=clock,
        transport=idp.transport,
        on_token_update=hook,
        policy=RefreshPolicy(jitter=0),
        retry=TokenRetry(attempts=3),
        name="scan",
    )
    stale_done = threading.Event()
    session.add_listener(lambda kind, fields: events.append((kind, fields)))
    session.add_listener(bad_listener)
    session.add_listener(
        lambda kind, fields: (
            stale_done.set()
            if kind in ("refreshed", "refresh_failed") and fields.get("reason") == "stale"
            else None
        )
    )
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        client = Client(session, base_url=api.base_url, transport=api.transport)
        client.get("/a")  # first token
        idp.fail_next(2, Fault.timeout())
        clock.advance(601)
        client.get("/b")  # refresh after two retries; the hook raises this time
        idp.expire_all()
        client.get("/c")  # 401 → refresh → replay
        clock.advance(400)
        client.get("/d")  # STALE → background refresh
        assert stale_done.wait(10)
        idp.fail_next(1, Fault.oauth("invalid_grant", description="bad grant"))
        with pytest.raises(OAuthError) as info:
            session.force_refresh()
        texts += [str(info.value), repr(info.value)]
        idp.set_outage(Fault(status=503, body={"error": "x"}))
        with pytest.raises(TokenEndpointError) as info2:
            session.force_refresh()
        texts += [str(info2.value), repr(info2.value)]
        client.close()
        session.close()

    assert len(seen_sets) >= 4
    assert idp.reuse_detected == 0
    secrets = [CLIENT_SECRET, first_rt]
    for ts in seen_sets:
        secrets.append(ts.access_token.get_secret_value())
        if ts.refresh_token is not None:
            secrets.append(ts.refresh_token.get_secret_value())
    kinds = {k for k, _ in events}
    assert {"refreshed", "retry", "hook_failed", "refresh_failed"} <= kinds

    assert caplog.records, "expected log records"
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.append(repr(record.msg))
        texts.append(repr(record.args))
        texts.append(repr(vars(record)))
    texts.append(caplog.text)  # includes formatted tracebacks
    texts.append(repr(events))
    texts.append(repr(session.stats()))
    texts.append(repr(session.health().to_dict()))
    texts.append(repr(session))
    for text in texts:
        assert_no_secret(text, secrets)


@pytest.mark.anyio
async def test_async_errors_and_events_have_no_secret(clock: FakeClock) -> None:
    grant = RefreshTokenGrant(
        "https://idp.test/token", "client", CLIENT_SECRET, refresh_token=INITIAL_RT
    )

    async def handler(request: httpx.Request) -> httpx.Response:
        return echoing_idp(request)

    events: list[tuple[str, dict[str, Any]]] = []
    session = Session(grant, clock=clock, async_transport=httpx.MockTransport(handler))
    session.add_listener(lambda kind, fields: events.append((kind, fields)))
    with pytest.raises(OAuthError) as info:
        await session.atoken()
    for text in (str(info.value), repr(info.value), repr(events), repr(session.stats())):
        assert_no_secret(text, [CLIENT_SECRET, INITIAL_RT])
    await session.aclose()


def test_callable_source_errors_have_no_token(clock: FakeClock) -> None:
    session = Session(
        CallableSource(lambda cur: "at_SECRET_returned_raw"),  # type: ignore[arg-type]
        clock=clock,
    )
    with pytest.raises(TokenError) as info:
        session.token()
    assert_no_secret(str(info.value), ["at_SECRET_returned_raw"])
    assert_no_secret(repr(session.stats()), ["at_SECRET_returned_raw"])


def test_tokens_in_the_body_of_a_failed_response_do_not_leak(clock: FakeClock) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400,
            json={
                "error": "invalid_request",
                "error_description": "old token at_LEAKY_access_token",
                "access_token": "at_LEAKY_access_token",
            },
        )

    session = Session(
        ClientCredentials("https://idp.test/token", "client", CLIENT_SECRET),
        clock=clock,
        transport=httpx.MockTransport(handler),
        token=make_token(clock.now(), lifetime=600, age=3600),
    )
    with pytest.raises(OAuthError) as info:
        session.token()
    assert_no_secret(str(info.value) + repr(info.value), ["at_LEAKY_access_token"])


def test_structured_log_fields_and_json_lines_never_carry_a_secret(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Every layer's log records (breaker transitions, fallback levels, failing
    hooks and listeners, heartbeats), formatted by the JSON formatter with all
    their extra fields: no token, no client secret."""
    from authpulse import BreakerPolicy, FallbackChain, SessionManager
    from authpulse.logging_config import JsonFormatter

    idp = FakeIdP(clock=clock, access_ttl=600, clients={"client": CLIENT_SECRET})
    api = FakeAPI(idp)
    dead_rt = idp.issue_refresh_token()
    idp.revoke(dead_rt)
    issued: list[TokenSet] = []
    chain = FallbackChain(
        [
            RefreshTokenGrant(idp.token_url, "client", CLIENT_SECRET, refresh_token=dead_rt),
            ClientCredentials(idp.token_url, "client", CLIENT_SECRET),
        ]
    )

    def hook(ts: TokenSet) -> None:
        issued.append(ts)
        raise RuntimeError("cannot persist")

    def bad_listener(kind: str, fields: dict[str, Any]) -> None:
        raise ValueError(f"listener bug on {kind}")

    session = Session(chain, clock=clock, transport=idp.transport, on_token_update=hook)
    session.add_listener(bad_listener)
    manager = SessionManager(clock=clock, transport=idp.transport)

    def probe(ms: object) -> bool:
        raise ConnectionError("probe down")

    with caplog.at_level(logging.DEBUG):
        with Client(
            session,
            base_url=api.base_url,
            transport=api.transport,
            retry=False,
            breaker=BreakerPolicy(minimum_calls=3, failure_rate=0.5, open_for=30),
        ) as client:
            client.get("/a")  # fallback to level 1; the hook and the listener raise
            api.set_outage(Fault(status=500))
            client.get("/b")
            client.get("/c")  # the breaker opens
            api.set_outage(None)
            clock.advance(31)
            client.get("/d")  # half-open, then closed
        ms = manager.create_session(
            "owner", ClientCredentials(idp.token_url, "client", CLIENT_SECRET), probe=probe
        )
        ms.session.token()
        if ms.session.token_set is not None:
            issued.append(ms.session.token_set)
        clock.advance(manager.settings.heartbeat_interval + 1)
        manager.tick()
        manager.shutdown()
        session.close()

    events = {vars(r).get("authpulse_event") for r in caplog.records}
    assert {"fallback_level_changed", "hook_failed", "listener_failed", "breaker_state"} <= events
    assert "heartbeat_failed" in events
    secrets = [CLIENT_SECRET, dead_rt]
    for ts in issued:
        secrets.append(ts.access_token.get_secret_value())
        if ts.refresh_token is not None:
            secrets.append(ts.refresh_token.get_secret_value())
    assert len(secrets) >= 4
    formatter = JsonFormatter(all_extras=True)
    for record in caplog.records:
        assert_no_secret(formatter.format(record), secrets)
        assert_no_secret(repr(vars(record)), secrets)


# ------------------------------------ tracebacks, frame locals and exception chains

PLANTED_AT = "at_PLANTED_new_access_value"
PLANTED_RT = "rt_PLANTED_new_refresh_value"
STORED_PW = "pw_STORED_password_value"


def secret_forms(secrets: list[str], client_id: str = "client") -> list[str]:
    """Every form a secret travels or is quoted in: raw, form- and
    percent-encoded, and the Basic credentials it is part of."""
    from urllib.parse import quote, quote_plus

    forms: set[str] = set()
    for s in secrets:
        forms |= {s, quote_plus(s), quote(s, safe="")}
        basic = f"{quote(client_id, safe='')}:{quote(s, safe='')}".encode()
        forms.add(base64.b64encode(basic).decode())
    return sorted(forms)


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is seen for seen in out):
            continue
        out.append(e)
        todo += [e.__cause__, e.__context__]  # the suppressed context too
    return out


def _describe(value: object) -> list[str]:
    """What an error reporter could record of an attribute: its repr and, for
    an httpx request or response, the headers and body it carries."""
    texts = [repr(value)]
    request = value if isinstance(value, httpx.Request) else None
    if isinstance(value, httpx.Response):
        texts += [repr(value.headers.raw), value.content.decode("latin-1")]
        request = value.request if value._request is not None else None
    if request is not None:
        texts += [str(request.url), repr(request.headers.raw), request.read().decode("latin-1")]
    return texts


def scan_error(exc: BaseException, secrets: list[str]) -> int:
    """Fail if a secret occurs anywhere an error reporter looks: every exception
    of the chain, its traceback with the locals of every frame, its attributes
    (``.request`` included). Frames of the tests themselves (which hold the
    secrets to look for) are left out. Returns how many exceptions were scanned."""
    import traceback

    forms = secret_forms(secrets)
    chain = _chain(exc)
    here = str(Path(__file__).parent)
    for e in chain:
        texts = [str(e), repr(e)]
        report = traceback.TracebackException.from_exception(e, capture_locals=True)
        texts += report.format_exception_only()
        for summary in report.stack:  # what a reporter records (not the test's own frames)
            if not summary.filename.startswith(here):
                texts += [summary.line or "", *(summary.locals or {}).values()]
        tb = e.__traceback__
        while tb is not None:  # every frame's locals (not the test's own frames)
            if not tb.tb_frame.f_code.co_filename.startswith(here):
                texts += [repr(v) for v in dict(tb.tb_frame.f_locals).values()]
            tb = tb.tb_next
        for value in vars(e).values():
            texts += _describe(value)
        try:
            request = e.request  # type: ignore[attr-defined]
        except (AttributeError, RuntimeError):  # RuntimeError: httpx's "not set"
            request = None
        if request is not None:
            texts += _describe(request)
        for text in texts:
            for form in forms:
                assert form not in text, (
                    f"a secret ({form[:6]}…) leaked via {type(e).__name__}: {text[:300]!r}"
                )
    return len(chain)


def echo_everything(request: httpx.Request) -> httpx.Response:
    """An IdP that quotes the request back in an error, error_uri included."""
    form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
    header = request.headers.get("authorization", "")
    return httpx.Response(
        400,
        json={
            "error": "invalid_grant",
            "error_description": f"{form} {header}",
            "error_uri": f"https://idp.test/e?rt={form.get('refresh_token')}&h={header}",
        },
    )


def malformed_success(request: httpx.Request) -> httpx.Response:
    """New tokens in an answer that is refused (a bad expires_in)."""
    return httpx.Response(
        200,
        json={"access_token": PLANTED_AT, "refresh_token": PLANTED_RT, "expires_in": "soon"},
    )


def unknown_type(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200, json={"access_token": PLANTED_AT, "refresh_token": PLANTED_RT, "token_type": "MAC"}
    )


def oversized(request: httpx.Request) -> httpx.Response:
    body = {"access_token": PLANTED_AT, "refresh_token": PLANTED_RT, "pad": "x" * 2_000_000}
    return httpx.Response(200, json=body)


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError(f"refused while sending {request.headers}", request=request)


def outage(request: httpx.Request) -> httpx.Response:
    return httpx.Response(503, json={"error": "temporarily_unavailable"})


def foreign_failure(request: httpx.Request) -> httpx.Response:
    raise RuntimeError("a bug in a custom transport")


def jwt_tokens(request: httpx.Request) -> httpx.Response:
    import jwt

    access = jwt.encode({"sub": "x", "exp": 4_000_000_000}, "k" * 32, algorithm="HS256")
    return httpx.Response(200, json={"access_token": access, "refresh_token": PLANTED_RT})


HANDLERS = {
    "oauth-error-echo": (echo_everything, OAuthError),
    "malformed-success": (malformed_success, TokenResponseError),
    "unknown-token-type": (unknown_type, TokenResponseError),
    "oversized-body": (oversized, TokenResponseError),
    "connect-error": (refused, TokenEndpointError),
    "outage": (outage, TokenEndpointError),
    "foreign-exception": (foreign_failure, RefreshError),
    "verification-failed": (jwt_tokens, TokenVerificationError),
}


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
@pytest.mark.parametrize("case", sorted(HANDLERS))
async def test_no_secret_in_tracebacks_locals_or_chained_errors(
    clock: FakeClock, case: str, method: Any, mode: str
) -> None:
    handler, expected = HANDLERS[case]

    async def ahandler(request: httpx.Request) -> httpx.Response:
        return handler(request)

    grant = RefreshTokenGrant(
        "https://idp.test/token",
        "client",
        CLIENT_SECRET,
        refresh_token=INITIAL_RT,
        auth_method=method,
    )
    verifier = JWTVerifier(algorithms=["HS256"], key="another key entirely, of 32 bytes or more")
    session = Session(
        grant,
        clock=clock,
        transport=httpx.MockTransport(handler),
        async_transport=httpx.MockTransport(ahandler),
        retry=TokenRetry(attempts=2),
        verifier=verifier if case == "verification-failed" else None,
        # an expired token in hand: its access token is in the frames' reach too
        token=make_token(clock.now(), access="at_EXPIRED_old_access", lifetime=60, age=600),
    )
    with pytest.raises(expected) as info:
        await get_token(session, mode)
    await session.aclose()
    secrets = [CLIENT_SECRET, INITIAL_RT, PLANTED_AT, PLANTED_RT, "at_EXPIRED_old_access"]
    if case == "verification-failed":
        secrets.remove(PLANTED_AT)
        secrets.append(_issued_jwt())
    scanned = scan_error(info.value, secrets)
    if case in ("connect-error", "foreign-exception"):
        assert scanned == 2  # the error and its cause
    if case == "oauth-error-echo":
        assert "[redacted]" in (info.value.uri or "")  # type: ignore[attr-defined]


async def get_token(session: Session, mode: str) -> str:
    return session.token() if mode == "sync" else await session.atoken()


def _issued_jwt() -> str:
    import jwt

    return jwt.encode({"sub": "x", "exp": 4_000_000_000}, "k" * 32, algorithm="HS256")


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_no_secret_in_the_errors_of_a_fallback_chain(clock: FakeClock, mode: str) -> None:
    """Refresh token refused, stored credentials refused, then LoginRequired:
    every level's errors, scanned the same way."""
    from authpulse import FallbackChain, LoginRequired, LoginRequiredError, StoredCredentials

    async def ahandler(request: httpx.Request) -> httpx.Response:
        return echo_everything(request)

    chain = FallbackChain(
        [
            RefreshTokenGrant(
                "https://idp.test/token", "client", CLIENT_SECRET, refresh_token=INITIAL_RT
            ),
            StoredCredentials(
                "https://idp.test/token",
                "client",
                CLIENT_SECRET,
                load=lambda: ("alice", STORED_PW),
                auth_method="client_secret_post",
            ),
            LoginRequired("https://app.test/login"),
        ]
    )
    session = Session(
        chain,
        clock=clock,
        transport=httpx.MockTransport(echo_everything),
        async_transport=httpx.MockTransport(ahandler),
        retry=TokenRetry(attempts=1),
    )
    with pytest.raises(LoginRequiredError) as info:
        await get_token(session, mode)
    await session.aclose()
    scan_error(info.value, [CLIENT_SECRET, INITIAL_RT, STORED_PW])
    # the errors of the levels that moved the chain on are scanned too
    grant = chain.levels[0]
    assert isinstance(grant, RefreshTokenGrant)
    session_for_level = Session(grant, clock=clock, transport=httpx.MockTransport(echo_everything))
    with pytest.raises(OAuthError) as first:
        session_for_level.token()
    scan_error(first.value, [CLIENT_SECRET, INITIAL_RT])


def test_a_bad_stored_credential_never_sits_in_a_frame(clock: FakeClock) -> None:
    from authpulse import CredentialsUnavailableError, StoredCredentials

    source = StoredCredentials(
        "https://idp.test/token",
        "client",
        CLIENT_SECRET,
        load=lambda: ("alice", STORED_PW, "extra"),  # type: ignore[arg-type,return-value]
    )
    session = Session(source, clock=clock, transport=httpx.MockTransport(echo_everything))
    with pytest.raises(CredentialsUnavailableError) as info:
        session.token()
    scan_error(info.value, [CLIENT_SECRET, STORED_PW])


def test_jwt_verification_errors_do_not_keep_the_token() -> None:
    token = _issued_jwt()
    verifier = JWTVerifier(algorithms=["HS256"], key="another key entirely, of 32 bytes or more")
    with pytest.raises(TokenVerificationError) as info:
        verifier.verify(token, now=0.0)
    assert scan_error(info.value, [token]) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_refresh_after_a_401_through_a_store_keeps_the_rejected_token_wrapped(
    clock: FakeClock, mode: str
) -> None:
    """The token the API rejected travels through the store protocol (to tell a
    peer's new set from it) wrapped: no frame of the failed refresh holds it."""
    rejected = "at_REJECTED_by_the_api"

    async def aoutage(request: httpx.Request) -> httpx.Response:
        return outage(request)

    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})

    async def aapi(request: httpx.Request) -> httpx.Response:
        return api(request)

    session = Session(
        RefreshTokenGrant(
            "https://idp.test/token", "client", CLIENT_SECRET, refresh_token=INITIAL_RT
        ),
        clock=clock,
        transport=httpx.MockTransport(outage),
        async_transport=httpx.MockTransport(aoutage),
        retry=TokenRetry(attempts=2),
        store=MemoryStore(clock=clock),
        token=make_token(clock.now(), access=rejected, lifetime=3600),
    )

    async def call_api() -> None:
        if mode == "sync":
            with httpx.Client(transport=httpx.MockTransport(api), auth=session.auth()) as client:
                client.get("https://api.test/")
        else:
            async with httpx.AsyncClient(
                transport=httpx.MockTransport(aapi), auth=session.auth()
            ) as aclient:
                await aclient.get("https://api.test/")

    with pytest.raises(TokenEndpointError) as info:
        await call_api()
    await session.aclose()
    assert scan_error(info.value, [CLIENT_SECRET, INITIAL_RT, rejected]) >= 1
