"""TokenExchange (RFC 8693): the request, its token sources, the answer's
checks, refresh by exchanging again, and no secret in what it shows."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from _support import assert_no_secret
from authpulse import (
    AsyncClient,
    Client,
    ClientCredentials,
    ConfigurationError,
    OAuthError,
    Session,
    SubjectTokenError,
    TokenError,
    TokenExchange,
    TokenResponseError,
    TokenSet,
    UsageError,
)
from authpulse._runtime.backend import httpx
from authpulse._stores.crypto import decode_token_set, encode_token_set
from authpulse.testing import FakeClock, FakeIdP
from test_secrets import get_token, scan_error

URL = "https://idp.test/token"
GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
REFRESH = "urn:ietf:params:oauth:token-type:refresh_token"
SAML2 = "urn:ietf:params:oauth:token-type:saml2"
SUBJECT = "subject-token-value-1234"
ACTOR = "actor-token-value-5678"
CLIENT_SECRET = "exchange-secret-9876"


def fields(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode())


def exchange(**kwargs: Any) -> TokenExchange:
    kwargs.setdefault("subject_token", SecretStr(SUBJECT))
    return TokenExchange(URL, "ex", CLIENT_SECRET, **kwargs)


class Recorder:
    """A token endpoint answering ``body`` (JSON) and keeping every request's form."""

    def __init__(self, body: dict[str, Any] | None = None, status: int = 200) -> None:
        self.body = body or {
            "access_token": "exchanged-1",
            "token_type": "Bearer",
            "expires_in": 300,
            "issued_token_type": ACCESS,
        }
        self.status = status
        self.forms: list[dict[str, list[str]]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.forms.append(fields(request))
        return httpx.Response(self.status, json=self.body)

    async def ahandle(self, request: httpx.Request) -> httpx.Response:
        return self.handle(request)

    def session(self, grant: TokenExchange, clock: FakeClock) -> Session:
        return Session(
            grant,
            clock=clock,
            transport=httpx.MockTransport(self.handle),
            async_transport=httpx.MockTransport(self.ahandle),
        )


# ------------------------------------------------------------------- the request


def test_form_carries_every_field() -> None:
    grant = exchange(
        actor_token=SecretStr(ACTOR),
        resource=["https://a.test/api", "https://b.test/api"],
        audience="orders",
        scope=["read", "write"],
        requested_token_type=ACCESS,
    )
    request = grant.build_request(None)
    form = fields(request)
    assert form == {
        "grant_type": [GRANT],
        "subject_token": [SUBJECT],
        "subject_token_type": [ACCESS],
        "actor_token": [ACTOR],
        "actor_token_type": [ACCESS],
        "resource": ["https://a.test/api", "https://b.test/api"],
        "audience": ["orders"],
        "requested_token_type": [ACCESS],
        "scope": ["read write"],
    }
    assert request.headers["authorization"].startswith("Basic ")


def test_minimal_form_and_client_secret_post() -> None:
    form = fields(exchange(auth_method="client_secret_post").build_request(None))
    assert form == {
        "grant_type": [GRANT],
        "subject_token": [SUBJECT],
        "subject_token_type": [ACCESS],
        "client_id": ["ex"],
        "client_secret": [CLIENT_SECRET],
    }


def test_public_client_and_custom_token_types() -> None:
    grant = TokenExchange(
        URL,
        "public",
        subject_token=SUBJECT,
        subject_token_type="urn:ietf:params:oauth:token-type:jwt",
        actor_token=SecretStr(ACTOR),
        actor_token_type="urn:ietf:params:oauth:token-type:id_token",
    )
    request = grant.build_request(None)
    form = fields(request)
    assert form["client_id"] == ["public"]
    assert form["subject_token_type"] == ["urn:ietf:params:oauth:token-type:jwt"]
    assert form["actor_token_type"] == ["urn:ietf:params:oauth:token-type:id_token"]
    assert "authorization" not in request.headers


def test_request_of_a_live_source_is_built_only_when_fetching() -> None:
    grant = exchange(subject_token=lambda: SUBJECT)
    with pytest.raises(SubjectTokenError, match="when the token is fetched"):
        grant.build_request(None)


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"subject_token_type": "access_token"}, "subject_token_type"),
        ({"subject_token_type": ""}, "subject_token_type"),
        ({"requested_token_type": "jwt"}, "requested_token_type"),
        ({"actor_token_type": ACCESS}, "actor_token_type needs an actor_token"),
        ({"actor_token": SecretStr(ACTOR), "actor_token_type": "x"}, "actor_token_type"),
        ({"resource": "/relative"}, "resource"),
        ({"resource": "https://a.test/#frag"}, "resource"),
        ({"resource": ["https://a.test/", 3]}, "resource"),
        ({"resource": 3}, "resource"),
        ({"audience": [""]}, "audience"),
        ({"subject_token": 42}, "subject_token must be"),
        ({"actor_token": 42}, "actor_token must be"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        exchange(**kwargs)


@pytest.mark.parametrize("token", ["", SecretStr("")])
def test_empty_fixed_subject_token_is_refused(token: str | SecretStr) -> None:
    with pytest.raises(SubjectTokenError, match="empty string") as info:
        exchange(subject_token=token)
    assert info.value.role == "subject"


@given(st.text(alphabet=st.characters(blacklist_characters=":"), max_size=40))
def test_a_token_type_without_a_scheme_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError):
        exchange(subject_token_type=value)


@given(
    st.from_regex(r"[a-z][a-z0-9+.-]{0,8}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9:._/-]{1,30}", fullmatch=True),
)
def test_any_absolute_uri_is_a_token_type(scheme: str, rest: str) -> None:
    value = f"{scheme}:{rest}"
    assert exchange(requested_token_type=value).requested_token_type == value


# ------------------------------------------------------------- the token sources


def cc_session(idp: FakeIdP, clock: FakeClock) -> Session:
    return Session(
        ClientCredentials(idp.token_url, "svc", "svc-secret"),
        clock=clock,
        transport=idp.transport,
        async_transport=idp.async_transport,
    )


def exchanged_session(idp: FakeIdP, clock: FakeClock, subject: Any, **kw: Any) -> Session:
    grant = TokenExchange(idp.token_url, "ex", "ex-secret", subject_token=subject, **kw)
    return Session(grant, clock=clock, transport=idp.transport, async_transport=idp.async_transport)


@pytest.fixture
def fake(clock: FakeClock) -> FakeIdP:
    return FakeIdP(clock=clock, clients={"svc": "svc-secret", "ex": "ex-secret"}, access_ttl=600)


def test_subject_from_a_session_sync(fake: FakeIdP, clock: FakeClock) -> None:
    subject = cc_session(fake, clock)
    session = exchanged_session(fake, clock, subject, audience="https://api.test")
    token = session.token()
    assert fake.validate(token)
    assert token != subject.token()
    assert fake.exchanges == 1
    assert session.token_set is not None
    assert session.token_set.issued_token_type == ACCESS
    assert fake.requests[-1]["audience"] == "https://api.test"
    assert "subject_token" not in fake.requests[-1]


@pytest.mark.anyio
async def test_subject_from_a_session_async(fake: FakeIdP, clock: FakeClock) -> None:
    subject = cc_session(fake, clock)
    actor = cc_session(fake, clock)
    session = exchanged_session(fake, clock, subject, actor_token=actor)
    token = await session.atoken()
    assert fake.validate(token)
    assert fake.exchanges == 1
    # both the subject and the actor signed in (asynchronously) to be exchanged
    assert [r["grant_type"] for r in fake.requests].count("client_credentials") == 2


async def _async_subject() -> str:
    return SUBJECT


def _sources() -> list[Callable[[], Any]]:
    return [
        lambda: SUBJECT,
        lambda: SecretStr(SUBJECT),
        _async_subject,
        lambda: _async_subject(),  # a plain function returning an awaitable
    ]


@pytest.mark.parametrize("source", _sources())
def test_subject_from_a_callable_sync(source: Callable[[], Any], clock: FakeClock) -> None:
    server = Recorder()
    session = server.session(exchange(subject_token=source), clock)
    assert session.token() == "exchanged-1"
    assert server.forms[0]["subject_token"] == [SUBJECT]


@pytest.mark.anyio
@pytest.mark.parametrize("source", _sources())
async def test_subject_from_a_callable_async(source: Callable[[], Any], clock: FakeClock) -> None:
    server = Recorder()
    session = server.session(exchange(subject_token=source), clock)
    assert await session.atoken() == "exchanged-1"
    assert server.forms[0]["subject_token"] == [SUBJECT]


@pytest.mark.parametrize(
    ("value", "reason"),
    [(None, "gave None"), ("", "empty string"), (SecretStr(""), "empty string"), (7, "int")],
)
def test_a_source_giving_no_token_is_a_typed_error(
    value: object, reason: str, clock: FakeClock
) -> None:
    server = Recorder()
    session = server.session(exchange(subject_token=lambda: value), clock)
    with pytest.raises(SubjectTokenError, match=reason) as info:
        session.token()
    assert isinstance(info.value, TokenError)
    assert server.forms == []  # nothing was sent


@pytest.mark.anyio
async def test_an_actor_giving_no_token_is_a_typed_error_async(clock: FakeClock) -> None:
    async def nothing() -> str:
        return ""

    server = Recorder()
    session = server.session(exchange(actor_token=nothing), clock)
    with pytest.raises(SubjectTokenError, match="actor token") as info:
        await session.atoken()
    assert info.value.role == "actor"


# ---------------------------------------------------------------- the answer


def test_an_answer_without_issued_token_type_is_refused(clock: FakeClock) -> None:
    server = Recorder({"access_token": "x-token", "token_type": "Bearer", "expires_in": 60})
    with pytest.raises(TokenResponseError, match="issued_token_type"):
        server.session(exchange(), clock).token()


def test_a_non_access_token_is_accepted_when_asked_for(clock: FakeClock) -> None:
    server = Recorder(
        {"access_token": "saml-assertion-b64", "token_type": "N_A", "issued_token_type": SAML2}
    )
    session = server.session(exchange(requested_token_type=SAML2), clock)
    assert session.token() == "saml-assertion-b64"
    assert session.token_set is not None
    assert (session.token_set.token_type, session.token_set.issued_token_type) == ("N_A", SAML2)
    assert server.forms[0]["requested_token_type"] == [SAML2]


@pytest.mark.anyio
async def test_a_non_access_token_never_goes_in_an_authorization_header(clock: FakeClock) -> None:
    answer = {"access_token": "saml-assertion-b64", "token_type": "N_A", "issued_token_type": SAML2}
    session = Recorder(answer).session(exchange(requested_token_type=SAML2), clock)
    sent: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    async def aapi(request: httpx.Request) -> httpx.Response:
        return api(request)

    with (
        Client(session, transport=httpx.MockTransport(api)) as client,
        pytest.raises(UsageError, match="not an access token"),
    ):
        client.get("https://api.test/")
    async with AsyncClient(session, transport=httpx.MockTransport(aapi)) as aclient:
        with pytest.raises(UsageError, match="not an access token"):
            await aclient.get("https://api.test/")
    assert sent == []


@pytest.mark.parametrize("requested", [None, ACCESS])
def test_a_non_access_token_is_refused_unless_asked_for(
    requested: str | None, clock: FakeClock
) -> None:
    server = Recorder(
        {"access_token": "rt-value", "token_type": "N_A", "issued_token_type": REFRESH}
    )
    with pytest.raises(TokenResponseError, match="N_A"):
        server.session(exchange(requested_token_type=requested), clock).token()


def test_n_a_claiming_an_access_token_is_refused(clock: FakeClock) -> None:
    server = Recorder(
        {"access_token": "at-value", "token_type": "N_A", "issued_token_type": ACCESS}
    )
    with pytest.raises(TokenResponseError, match="token_type"):
        server.session(exchange(requested_token_type=REFRESH), clock).token()


def test_token_set_refuses_n_a_outside_an_exchange() -> None:
    with pytest.raises(ValueError, match="N_A"):
        TokenSet(access_token=SecretStr("x"), token_type="N_A", issued_at=0, expires_at=1)
    ok = TokenSet(
        access_token=SecretStr("x"),
        token_type="N_A",
        issued_token_type=SAML2,
        issued_at=0,
        expires_at=1,
    )
    assert ok.issued_token_type == SAML2


def test_a_bad_subject_token_is_refused_by_the_server(fake: FakeIdP, clock: FakeClock) -> None:
    session = exchanged_session(fake, clock, SecretStr("at_not-issued-here"))
    with pytest.raises(OAuthError) as info:
        session.token()
    assert info.value.error == "invalid_grant"
    assert fake.exchanges == 0


# ---------------------------------------------------------- refresh by exchanging


def test_refresh_exchanges_again_with_the_subjects_new_token(
    fake: FakeIdP, clock: FakeClock
) -> None:
    seen: list[str] = []
    subject = cc_session(fake, clock)

    def subject_token() -> str:
        seen.append(subject.token())
        return seen[-1]

    session = exchanged_session(fake, clock, subject_token)
    first = session.token()
    clock.advance(601)  # both tokens expired
    second = session.token()
    assert first != second
    assert fake.validate(second)
    assert fake.exchanges == 2
    assert len(set(seen)) == 2  # the subject refreshed, and its new token was exchanged
    assert [r["grant_type"] for r in fake.requests].count(GRANT) == 2


def test_a_refresh_token_in_the_answer_is_kept_but_not_used(clock: FakeClock) -> None:
    server = Recorder(
        {
            "access_token": "exchanged-1",
            "token_type": "Bearer",
            "expires_in": 60,
            "refresh_token": "issued-refresh-token",
            "issued_token_type": ACCESS,
        }
    )
    session = server.session(exchange(), clock)
    session.token()
    assert session.token_set is not None
    assert session.token_set.refresh_token is not None
    clock.advance(61)
    session.token()
    assert [f["grant_type"] for f in server.forms] == [[GRANT], [GRANT]]
    assert "refresh_token" not in server.forms[1]


def test_issued_token_type_survives_the_store_and_old_records_read() -> None:
    token = TokenSet(
        access_token=SecretStr("x-token"), issued_token_type=ACCESS, issued_at=0, expires_at=60
    )
    assert decode_token_set(encode_token_set(token, None), None, session_id="s") == token
    plain = TokenSet(access_token=SecretStr("x-token"), issued_at=0, expires_at=60)
    blob = encode_token_set(plain, None)
    assert b"issued_token_type" not in blob  # records of the other grants stay as they were
    assert decode_token_set(blob, None, session_id="s").issued_token_type is None


# ------------------------------------------------------------------ no secrets


def test_no_token_in_reprs_or_errors(clock: FakeClock) -> None:
    grant = exchange(actor_token=SecretStr(ACTOR))
    assert SUBJECT not in repr(grant)
    assert ACTOR not in repr(grant)
    assert "subject=fixed" in repr(grant)
    assert "actor=fixed" in repr(grant)
    assert "callable" in repr(exchange(subject_token=lambda: SUBJECT))
    echo = Recorder(
        {
            "error": "invalid_grant",
            "error_description": f"bad subject {SUBJECT} with actor {ACTOR} ({CLIENT_SECRET})",
        },
        status=400,
    )
    session = echo.session(grant, clock)
    with pytest.raises(OAuthError) as info:
        session.token()
    shown = f"{info.value} {info.value!r} {info.value.description}"
    for secret in (SUBJECT, ACTOR, CLIENT_SECRET):
        assert secret not in shown
    assert "[redacted]" in shown
    stored = json.dumps(echo.forms)  # the request did carry them
    assert SUBJECT in stored
    assert ACTOR in stored


def test_no_token_in_the_errors_of_a_subject_source(clock: FakeClock) -> None:
    server = Recorder()
    with pytest.raises(SubjectTokenError) as info:
        server.session(exchange(subject_token=lambda: 12345), clock).token()
    assert "12345" not in str(info.value)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_no_token_in_logs_events_frames_or_chained_errors(
    mode: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    echo = Recorder(
        {"error": "invalid_grant", "error_description": f"{SUBJECT} {ACTOR} {CLIENT_SECRET}"},
        status=400,
    )

    async def actor() -> SecretStr:
        return SecretStr(ACTOR)

    session = echo.session(exchange(subject_token=lambda: SUBJECT, actor_token=actor), clock)
    events: list[tuple[str, dict[str, Any]]] = []
    session.add_listener(lambda kind, fields: events.append((kind, fields)))
    with caplog.at_level(logging.DEBUG), pytest.raises(OAuthError) as info:
        await get_token(session, mode)
    secrets = [SUBJECT, ACTOR, CLIENT_SECRET]
    assert scan_error(info.value, secrets) >= 1
    assert events
    texts = [caplog.text, repr(events), repr(session), repr(session.stats())]
    texts += [repr(vars(record)) for record in caplog.records]
    for text in texts:
        assert_no_secret(text, secrets)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"subject_token_type": "urn:ietf:params:oauth:token-type:jwt"},
        {"requested_token_type": SAML2},
    ],
)
def test_the_fake_idp_refuses_what_it_cannot_exchange(
    fake: FakeIdP, clock: FakeClock, kwargs: dict[str, Any]
) -> None:
    subject = cc_session(fake, clock)
    with pytest.raises(OAuthError) as info:
        exchanged_session(fake, clock, subject, **kwargs).token()
    assert info.value.error == "invalid_request"
    assert fake.exchanges == 0


def test_one_grant_shared_by_sessions_exchanges_each_subjects_token(
    fake: FakeIdP, clock: FakeClock
) -> None:
    subjects = [cc_session(fake, clock), cc_session(fake, clock)]
    current = iter(subjects)
    grant = TokenExchange(
        fake.token_url, "ex", "ex-secret", subject_token=lambda: next(current).token()
    )
    tokens = [Session(grant, clock=clock, transport=fake.transport).token() for _ in subjects]
    assert len(set(tokens)) == 2
    assert fake.exchanges == 2
    assert grant._tokens is None  # the source itself never holds a subject token
