"""Stored token sets a session cannot use: plaintext in an encrypted store,
garbage in a token row. Run against SQLite and a real Redis, sync and async.

A planted plaintext set is never sent; an undecodable one is reported as
corrupt (not as a key problem). A source that can start afresh (client
credentials, stored credentials) recovers by itself and overwrites the
record; a refresh-token grant, whose live refresh token the record held,
goes to login-required with the reason, without asking the IdP.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import pytest
import redis
from pydantic import SecretStr

import authpulse
from _redis import RedisServer, redis_server_fixture  # noqa: F401 - fixture
from authpulse import (
    ClientCredentials,
    CorruptRecordError,
    DecryptionError,
    EventKind,
    FallbackChain,
    LoginRequired,
    LoginRequiredError,
    RedisStore,
    RefreshTokenGrant,
    Session,
    SessionManager,
    SessionStore,
    SQLiteStore,
    StoredCredentials,
    TokenCipher,
    TokenSet,
    UnauthenticatedRecordError,
)
from authpulse.testing import FakeClock, FakeIdP

PLANTED = "ATTACKER-TOKEN"
GARBAGE = b"\x00\xff\xfe not a token set \x80\x81"
KEY = "svc"

Mode = Literal["sync", "async"]
T = TypeVar("T")


# --------------------------------------------------------------------------- stores


@dataclass
class Backend:
    """Handles on one store's data, and raw access to its token rows."""

    name: str
    clock: FakeClock
    path: Path | None = None
    server: RedisServer | None = None
    namespace: str = field(default_factory=lambda: "r" + uuid.uuid4().hex[:10])
    opened: list[SessionStore] = field(default_factory=list)

    def open(self, keys: list[str] | None = None) -> SessionStore:
        store: SessionStore
        if self.name == "sqlite":
            assert self.path is not None
            store = SQLiteStore(self.path, encryption_keys=keys, clock=self.clock)
        else:
            assert self.server is not None
            store = RedisStore(
                self.server.url, namespace=self.namespace, encryption_keys=keys, clock=self.clock
            )
        self.opened.append(store)
        return store

    def plant(self, sid: str, blob: bytes) -> None:
        """Write a token row as someone without the keys could."""
        if self.name == "sqlite":
            assert self.path is not None
            self.open().close()  # the schema
            with closing(sqlite3.connect(self.path)) as db:
                db.execute(
                    "INSERT OR REPLACE INTO tokens (session_id, blob, skew, version, fence, "
                    "updated_at) VALUES (?, ?, 0.0, 7, NULL, ?)",
                    (sid, blob, self.clock.now()),
                )
                db.commit()
        else:
            assert self.server is not None
            with closing(redis.Redis.from_url(self.server.url)) as client:
                client.hset(
                    f"{self.namespace}:tok:{sid}",
                    mapping={
                        "blob": blob,
                        "skew": "0.0",
                        "version": "7",
                        "fence": "",
                        "updated_at": repr(self.clock.now()),
                    },
                )

    def raw_blob(self, sid: str) -> bytes:
        if self.name == "sqlite":
            assert self.path is not None
            with closing(sqlite3.connect(self.path)) as db:
                row = db.execute("SELECT blob FROM tokens WHERE session_id = ?", (sid,)).fetchone()
            assert row is not None
            return bytes(row[0])
        assert self.server is not None
        with closing(redis.Redis.from_url(self.server.url)) as client:
            value = client.hget(f"{self.namespace}:tok:{sid}", "blob")
        assert isinstance(value, bytes)
        return value


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Backend]:
    if request.param == "sqlite":
        b = Backend("sqlite", clock, path=tmp_path / "tokens.db")
    else:
        b = Backend("redis", clock, server=request.getfixturevalue("redis_server"))
    try:
        yield b
    finally:
        for store in b.opened:
            store.close()


def planted_plaintext(clock: FakeClock) -> bytes:
    """A fresh, well-formed plaintext token set (the storage format), as an
    attacker who can write the store but has no key would write it."""
    now = clock.now()
    return json.dumps(
        {
            "format": 1,
            "access_token": PLANTED,
            "token_type": "Bearer",
            "refresh_token": None,
            "id_token": None,
            "scope": None,
            "issued_at": now,
            "expires_at": now + 3600,
            "expires_at_source": "expires_in",
        }
    ).encode()


# --------------------------------------------------------------------------- sessions


def make_session(
    source: authpulse.TokenSource, idp: FakeIdP, clock: FakeClock, store: SessionStore
) -> tuple[Session, list[tuple[str, dict[str, Any]]]]:
    session = Session(
        source,
        clock=clock,
        transport=idp.transport,
        async_transport=idp.async_transport,
        store=store,
        store_key=KEY,
    )
    events: list[tuple[str, dict[str, Any]]] = []
    session.add_listener(lambda kind, fields: events.append((kind, dict(fields))))
    return session, events


def cc(idp: FakeIdP) -> ClientCredentials:
    return ClientCredentials(idp.token_url, "client", "secret")


def rt_only(idp: FakeIdP, rt: str) -> RefreshTokenGrant:
    return RefreshTokenGrant(idp.token_url, "client", "secret", refresh_token=rt)


class Driver:
    """Calls a session the sync or the async way. The async way runs on one
    event loop for the whole test, so the stores' per-loop clients are closed
    at the end."""

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.loop = asyncio.new_event_loop() if mode == "async" else None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self.loop is not None
        return self.loop.run_until_complete(coro)

    def token(self, session: Session) -> str:
        if self.loop is None:
            return session.token()
        return self._run(session.atoken())

    def set_token(self, session: Session, token: TokenSet) -> None:
        session.set_token(token)

    def headers(self, session: Session) -> list[str]:
        """The Authorization headers an API receives from one call through the session."""
        seen: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.headers.get("authorization", ""))
            return httpx.Response(200)

        transport = httpx.MockTransport(handler)
        if self.loop is None:
            with httpx.Client(auth=session.auth(), transport=transport) as client:
                client.get("https://api.test/items")
        else:

            async def call() -> None:
                async with httpx.AsyncClient(auth=session.auth(), transport=transport) as client:
                    await client.get("https://api.test/items")

            self._run(call())
        return seen

    def close(self, session: Session) -> None:
        if self.loop is None:
            session.close()
        else:
            self._run(session.aclose())

    def finish(self, stores: list[SessionStore]) -> None:
        if self.loop is not None:
            for store in stores:
                self._run(store.aclose())
            self._run(self.loop.shutdown_asyncgens())
            self.loop.close()


@pytest.fixture(params=["sync", "async"])
def driver(request: pytest.FixtureRequest, backend: Backend) -> Iterator[Driver]:
    d = Driver(request.param)
    try:
        yield d
    finally:
        d.finish(backend.opened)


def replaced(events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [f for k, f in events if k == "token_record_replaced"]


# ============================================================ plaintext planted


def test_a_planted_plaintext_set_is_never_sent(
    backend: Backend, idp: FakeIdP, clock: FakeClock, driver: Driver
) -> None:
    key = TokenCipher.generate_key()
    backend.plant(KEY, planted_plaintext(clock))
    store = backend.open([key])
    session, events = make_session(cc(idp), idp, clock, store)

    headers = driver.headers(session)

    assert headers
    assert all(PLANTED not in h for h in headers)
    assert idp.hits == 1  # a new token, fetched afresh
    assert idp.validate(headers[0].removeprefix("Bearer "))
    assert replaced(events) == [
        {
            "error": "UnauthenticatedRecordError",
            "problem": "plaintext in a store opened with encryption keys",
            "written": True,
        }
    ]
    assert PLANTED not in repr(events)
    # the record is overwritten, encrypted: every keyed reader now gets the new set
    assert not backend.raw_blob(KEY).startswith(b"{")
    stored = backend.open([key]).get_token(KEY)
    assert stored is not None
    assert session.token_set is not None
    assert stored.token == session.token_set
    driver.close(session)


def test_a_planted_plaintext_set_is_read_by_no_encrypted_store(
    backend: Backend, clock: FakeClock
) -> None:
    backend.plant(KEY, planted_plaintext(clock))
    with pytest.raises(UnauthenticatedRecordError) as exc:
        backend.open([TokenCipher.generate_key()]).get_token(KEY)
    assert "plaintext in a store opened with encryption keys" in str(exc.value)
    assert PLANTED not in str(exc.value)
    assert PLANTED not in repr(exc.value)


# ============================================================ garbage in a token row


@pytest.mark.parametrize("keys", ["with keys", "without keys"])
def test_garbage_is_reported_corrupt_and_client_credentials_recover(
    backend: Backend, idp: FakeIdP, clock: FakeClock, driver: Driver, keys: str
) -> None:
    cipher = [TokenCipher.generate_key()] if keys == "with keys" else None
    backend.plant(KEY, GARBAGE)
    store = backend.open(cipher)
    with pytest.raises(CorruptRecordError) as exc:
        store.get_token(KEY)
    assert type(exc.value) is CorruptRecordError  # not a key problem
    assert "is corrupt" in str(exc.value)
    assert "encryption keys" not in str(exc.value)

    session, events = make_session(cc(idp), idp, clock, store)
    first = driver.token(session)
    assert idp.validate(first)
    assert idp.hits == 1  # one token call, no error to the caller
    assert replaced(events) == [
        {
            "error": "CorruptRecordError",
            "problem": "it is neither a JSON token set nor an encrypted one",
            "written": True,
        }
    ]
    stored = backend.open(cipher).get_token(KEY)  # overwritten with the new set
    assert stored is not None
    assert stored.token.access_token.get_secret_value() == first
    # and the session is not broken for good: the next cycle is an ordinary refresh
    clock.advance(601)
    second = driver.token(session)
    assert second != first
    assert idp.hits == 2
    assert len(replaced(events)) == 1
    driver.close(session)


@pytest.mark.parametrize("keys", ["with keys", "without keys"])
def test_garbage_sends_a_refresh_token_session_to_login_required(
    backend: Backend, idp: FakeIdP, clock: FakeClock, driver: Driver, keys: str
) -> None:
    """The record held the live (rotated) refresh token: the grant's own seed
    would be a reuse, so the IdP is not asked and a new login is required."""
    cipher = [TokenCipher.generate_key()] if keys == "with keys" else None
    rt = idp.issue_refresh_token()
    writer, _ = make_session(rt_only(idp, rt), idp, clock, backend.open(cipher))
    writer.token()
    writer.close()
    backend.plant(KEY, GARBAGE)
    clock.advance(601)

    session, events = make_session(rt_only(idp, rt), idp, clock, backend.open(cipher))
    with pytest.raises(LoginRequiredError) as exc:
        driver.token(session)
    assert idp.hits == 1  # only the writer's refresh
    assert idp.reuse_detected == 0
    assert "the stored token set is unusable" in exc.value.reason
    assert "neither a JSON token set nor an encrypted one" in exc.value.reason
    assert "refresh token it held is lost" in exc.value.reason
    assert exc.value.__cause__ is None
    logins = [f for k, f in events if k == "login_required"]
    assert len(logins) == 1
    assert logins[0]["reason"] == exc.value.reason
    assert session.health_signals().auth_state == "login_required"
    assert rt not in repr(events)
    with pytest.raises(LoginRequiredError):  # until a new login, without asking again
        driver.token(session)
    assert idp.hits == 1

    # the user signs in again: the new set replaces the bad record and works on
    login = _login(idp, clock)
    session.set_token(login)
    assert driver.token(session) == login.access_token.get_secret_value()
    stored = backend.open(cipher).get_token(KEY)
    assert stored is not None
    assert stored.token == login
    clock.advance(601)
    assert idp.validate(driver.token(session))
    assert idp.reuse_detected == 0
    driver.close(session)


def _login(idp: FakeIdP, clock: FakeClock) -> TokenSet:
    """A token set as a new interactive login would give (one IdP call)."""
    with Session(
        rt_only(idp, idp.issue_refresh_token()), clock=clock, transport=idp.transport
    ) as fresh:
        return fresh.force_refresh()


def test_a_wrong_key_is_still_a_configuration_error_not_corruption(
    backend: Backend, idp: FakeIdP, clock: FakeClock
) -> None:
    """An encrypted set that no key opens is not overwritten: correctly
    configured peers can read it."""
    backend.open([TokenCipher.generate_key()]).put_token(KEY, planted_token(clock))
    before = backend.raw_blob(KEY)
    session, events = make_session(cc(idp), idp, clock, backend.open([TokenCipher.generate_key()]))
    with pytest.raises(DecryptionError):
        session.token()
    assert idp.hits == 0
    assert backend.raw_blob(KEY) == before
    assert not replaced(events)
    session.close()


def planted_token(clock: FakeClock) -> TokenSet:
    return TokenSet(
        access_token=SecretStr("at-stored"),
        issued_at=clock.now(),
        expires_at=clock.now() + 600,
    )


class Watching:
    """A store that signals when a read met an unusable token set."""

    def __init__(self, inner: SessionStore) -> None:
        self.inner = inner
        self.met_corrupt = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_token(self, session_id: str) -> authpulse.StoredToken | None:
        try:
            return self.inner.get_token(session_id)
        except CorruptRecordError:
            self.met_corrupt.set()
            raise


def test_a_waiter_keeps_waiting_while_the_lock_holder_replaces_a_corrupt_set(
    backend: Backend, idp: FakeIdP, clock: FakeClock
) -> None:
    peer = backend.open()
    lock = peer.lock(f"refresh:{KEY}", ttl=30)
    assert lock.acquire(timeout=0)
    backend.plant(KEY, GARBAGE)
    watching = Watching(backend.open())
    session, _ = make_session(cc(idp), idp, clock, watching)
    got: list[str | BaseException] = []

    def call() -> None:
        try:
            got.append(session.token())
        except BaseException as exc:  # reported below
            got.append(exc)

    waiter = threading.Thread(target=call)
    waiter.start()
    assert watching.met_corrupt.wait(10)  # it read the garbage while waiting...
    peer.put_token(KEY, planted_token(clock), fence=lock.fence)  # ...the holder replaces it
    lock.release()
    waiter.join(10)
    assert got == ["at-stored"]  # adopted: no error, no IdP call
    assert idp.hits == 0
    session.close()


# ============================================================ fallback chains


def test_a_fallback_chain_starts_afresh_at_a_level_that_can(
    backend: Backend, idp: FakeIdP, clock: FakeClock
) -> None:
    rt = idp.issue_refresh_token()
    chain = FallbackChain(
        [
            rt_only(idp, rt),
            StoredCredentials(
                idp.token_url,
                "client",
                "secret",
                grant="client_credentials",
                load=lambda: ("client", "secret"),
            ),
        ]
    )
    backend.plant(KEY, GARBAGE)
    session, events = make_session(chain, idp, clock, backend.open())
    assert idp.validate(session.token())
    assert idp.hits == 1  # the refresh token level was skipped, not tried
    assert chain.level == 1
    assert replaced(events)[0]["error"] == "CorruptRecordError"
    session.close()


def test_a_fallback_chain_that_cannot_ends_at_its_login_level(
    backend: Backend, idp: FakeIdP, clock: FakeClock
) -> None:
    seen: list[LoginRequiredError] = []
    chain = FallbackChain(
        [
            rt_only(idp, idp.issue_refresh_token()),
            LoginRequired("https://app.test/login", on_login_required=seen.append),
        ]
    )
    backend.plant(KEY, GARBAGE)
    session, _ = make_session(chain, idp, clock, backend.open())
    with pytest.raises(LoginRequiredError) as exc:
        session.token()
    assert exc.value.login_url == "https://app.test/login"
    assert seen == [exc.value]
    assert "the stored token set is unusable" in exc.value.reason
    assert idp.hits == 0
    session.close()


# ============================================================ managed sessions


def test_a_managed_session_records_the_replacement_and_login_required(
    backend: Backend, idp: FakeIdP, clock: FakeClock
) -> None:
    key = TokenCipher.generate_key()
    manager = SessionManager(backend.open([key]), clock=clock, transport=idp.transport)
    try:
        svc = manager.create_session("billing", cc(idp), kind="system")
        user = manager.create_session("alice", rt_only(idp, idp.issue_refresh_token()))
        backend.plant(svc.id, planted_plaintext(clock))
        backend.plant(user.id, GARBAGE)

        # another process's view: the stored sets are unreadable, and say why
        admin = SessionManager(backend.open([key]), clock=clock)
        assert admin.export(svc.id)["token_error"] == "UnauthenticatedRecordError"
        assert admin.export(user.id)["token_error"] == "CorruptRecordError"
        admin.shutdown()

        assert PLANTED not in svc.session.token()
        events = [e for e in manager.timeline(svc.id) if e.kind is EventKind.TOKEN_RECORD_REPLACED]
        assert len(events) == 1
        assert events[0].fields["error"] == "UnauthenticatedRecordError"
        assert events[0].fields["written"] is True

        with pytest.raises(LoginRequiredError):
            user.session.token()
        out = manager.export(user.id)
        assert out["auth_state"] == "login_required"
        logins = [e for e in manager.timeline(user.id) if e.kind is EventKind.LOGIN_REQUIRED]
        assert logins
        assert "neither a JSON token set nor an encrypted one" in str(logins[-1].fields["reason"])
        assert PLANTED not in json.dumps([e.to_dict() for e in manager.timeline(svc.id)])
    finally:
        manager.shutdown()
