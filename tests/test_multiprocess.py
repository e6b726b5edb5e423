"""One refresh across real processes, and what crashes and outages do to it.

The parent serves the fake IdP and API over loopback HTTP (LoopbackServer)
and keeps their state; workers are separate processes (tests/_multiprocess.py)
that reach them over HTTP and share a SQLite file or a Redis server. All
processes share a clock the parent winds forward, so twenty token lifetimes
pass without waiting. The in-process version of these tests is
test_coordination.py.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import SecretStr

import authpulse
from _multiprocess import (
    REPLY_TIMEOUT,
    STORE_KEY,
    Context,
    SharedClock,
    Workers,
    WorkerSpec,
    context,
    fingerprint,
    hold_sqlite_write_lock,
    open_sqlite_at_once,
    process,
)
from _redis import RedisServer, redis_server_fixture, require_redis_server  # noqa: F401 - fixture
from authpulse import RefreshTokenGrant, Session, SQLiteStore, TokenSet, open_store
from authpulse._runtime.backend import httpx
from authpulse.testing import FakeAPI, FakeClock, FakeIdP, LoopbackServer

#: access token lifetime at the fake IdP (seconds of the shared clock)
LIFETIME = 3600
#: a short refresh-lock TTL, for the crash tests
LOCK_TTL = 2.0


@pytest.fixture(scope="module")
def ctx() -> Context:
    return context()


@pytest.fixture
def shared_clock(ctx: Context) -> SharedClock:
    return SharedClock(ctx)


# ---------------------------------------------------------------------- the fakes, served


class Doorman:
    """Holds the first token request at the IdP's door, so that the test can kill
    the process that sent it at a chosen moment.

    ``hold="before"``: the request waits before the IdP sees it, and is dropped
    once released (its client is dead by then), as a proxy drops the request of
    a client that hung up. ``hold="after"``: the IdP answers (rotating the
    refresh token), and the answer waits, then goes to a dead client.
    """

    def __init__(self, idp: FakeIdP, hold: Literal["before", "after"]) -> None:
        self.idp = idp
        self.hold = hold
        self.arrived = threading.Event()
        self.release = threading.Event()
        self._armed = True
        self._lock = threading.Lock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            armed, self._armed = self._armed, False
        if not armed:
            return self.idp.handle(request)
        if self.hold == "before":
            self.arrived.set()
            self.release.wait(REPLY_TIMEOUT)
            raise httpx.ConnectError("the client hung up before the IdP saw its request")
        response = self.idp.handle(request)
        self.arrived.set()
        self.release.wait(REPLY_TIMEOUT)
        return response


@dataclass
class Fakes:
    idp: FakeIdP
    api: FakeAPI
    api_url: str
    doorman: Doorman | None

    @property
    def token_url(self) -> str:
        return self.idp.token_url


@contextlib.contextmanager
def serve(
    clock: SharedClock,
    *,
    latency: float = 0.0,
    hold: Literal["before", "after"] | None = None,
) -> Iterator[Fakes]:
    """A FakeIdP and a FakeAPI, each on its own loopback port."""
    with LoopbackServer() as idp_server, LoopbackServer() as api_server:
        idp = FakeIdP(clock=clock, issuer=idp_server.url, access_ttl=LIFETIME, latency=latency)
        doorman = Doorman(idp, hold) if hold is not None else None
        idp_server.app = doorman if doorman is not None else idp
        api = FakeAPI(idp, base_url=api_server.url)
        api_server.app = api
        try:
            yield Fakes(idp, api, api_server.url, doorman)
        finally:
            if doorman is not None:
                doorman.release.set()


def expired_token_set(refresh_token: str, now: float) -> TokenSet:
    """What a crashed fleet leaves behind: a token set that expired an hour ago."""
    return TokenSet(
        access_token=SecretStr("at_long_expired"),
        refresh_token=SecretStr(refresh_token),
        issued_at=now - LIFETIME - 3600,
        expires_at=now - 3600,
    )


def store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'tokens.db'}"
    server: RedisServer = request.getfixturevalue("redis_server")
    return f"{server.url}?namespace=mp{uuid.uuid4().hex[:10]}"


def outcome_of(replies: list[dict[str, Any]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for r in replies:
        total.update(r["outcome"])
    return total


def refreshes(reply: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in reply["events"] if e["kind"] == "refreshed"]


def kinds(reply: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in reply["events"]]


# ------------------------------------------------------------------------- the stampede

PROCESSES = 8
THREADS = 32
CYCLES = 20
#: API calls per thread in each cycle: a few on the first expiry, then one per
#: expiry (every thread still meets every expired token; the file stays fast)
CALLS = [3] + [1] * (CYCLES - 1)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_8_processes_x_32_threads_make_one_token_call_per_expiry(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    ctx: Context,
    shared_clock: SharedClock,
) -> None:
    url = store_url(backend, request, tmp_path)
    with serve(shared_clock, latency=0.050) as fakes:
        rt = fakes.idp.issue_refresh_token()
        seed = open_store(url)
        seed.put_token(STORE_KEY, expired_token_set(rt, shared_clock.now()))
        seed.close()
        spec = WorkerSpec(url, fakes.token_url, fakes.api_url, rt, shared_clock)
        token_calls: list[int] = []
        with Workers(ctx, [spec] * PROCESSES) as workers:
            for cycle, calls in enumerate(CALLS):
                before = fakes.idp.token_calls
                replies = workers.broadcast("run", threads=THREADS, calls=calls)
                token_calls.append(fakes.idp.token_calls - before)
                assert outcome_of(replies) == {"ok": PROCESSES * THREADS * calls}, cycle
                # every process ends the cycle on the one new token ...
                assert len({r["access"] for r in replies}) == 1, cycle
                # ... which one of them fetched and the others adopted from the store
                done = [e for r in replies for e in refreshes(r)]
                assert [e["adopted"] for e in done].count(False) == 1, (cycle, done)
                assert len(done) == PROCESSES, (cycle, done)
                shared_clock.advance(LIFETIME + 1)  # every token everywhere expires
    assert token_calls == [1] * CYCLES
    assert fakes.idp.reuse_detected == 0
    assert fakes.api.unauthorized == 0
    # every call reached the API; under heavy load the client may retry a loopback
    # connection the server dropped (a transient network error), never more than a few
    expected = PROCESSES * THREADS * sum(CALLS)
    assert expected <= fakes.api.calls <= expected + expected // 100


# ----------------------------------------------------------------------------- kill -9


def _wait(event: Any, workers: Workers, index: int = 0) -> None:
    """Wait for ``event`` (set by the worker or by the doorman), failing if the worker dies."""
    proc = workers.children[index].process
    deadline = time.monotonic() + REPLY_TIMEOUT
    while not event.wait(0.05):
        if not proc.is_alive():
            workers.fail("the worker died before reaching the kill point")
        if time.monotonic() > deadline:
            workers.fail("the worker never reached the kill point")


def _heir(fakes: Fakes, url: str, rt: str, clock: SharedClock) -> WorkerSpec:
    # configured like the dead one: the same initial (long rotated) refresh token
    return WorkerSpec(
        url, fakes.token_url, fakes.api_url, rt, clock, lock_ttl=LOCK_TTL, store_clock=True
    )


@pytest.mark.slow
@pytest.mark.parametrize("then", ["adopt", "refresh"])
def test_kill_9_after_the_store_write_before_the_lock_release(
    then: str, tmp_path: Path, ctx: Context, shared_clock: SharedClock
) -> None:
    path = tmp_path / "tokens.db"
    url = f"sqlite:///{path}"
    with serve(shared_clock) as fakes:
        rt = fakes.idp.issue_refresh_token()
        written = ctx.Event()
        victim = WorkerSpec(
            url,
            fakes.token_url,
            fakes.api_url,
            rt,
            shared_clock,
            lock_ttl=LOCK_TTL,
            store_clock=True,
            hang_after_write=written,
            sqlite_path=str(path),
        )
        with Workers(ctx, [victim]) as workers:
            workers.send(0, "token")
            _wait(written, workers)  # the new set is in the store; the lock is still held
            assert workers.kill(0) == -9

        store = SQLiteStore(path, clock=shared_clock)
        stored = store.get_token(STORE_KEY)
        assert stored is not None
        assert fakes.idp.validate(stored.token.access_token.get_secret_value())
        assert stored.token.refresh_token is not None
        refresh_lock = store.lock(f"refresh:{STORE_KEY}", ttl=LOCK_TTL)
        assert not refresh_lock.acquire(timeout=0)  # a dead process holds it
        assert fakes.idp.token_calls == 1

        if then == "adopt":
            shared_clock.advance(LOCK_TTL + 1)  # the lock's TTL runs out; the set is fresh
        else:
            shared_clock.advance(LIFETIME + 1)  # ... and the set has expired as well
        with Workers(ctx, [_heir(fakes, url, rt, shared_clock)]) as workers:
            (reply,) = workers.broadcast("run", threads=4, calls=2)
        assert reply["outcome"] == {"ok": 8}
        (event,) = refreshes(reply)
        after = store.get_token(STORE_KEY)
        assert after is not None
        if then == "adopt":
            assert event["adopted"] is True
            assert reply["access"] == fingerprint(stored.token.access_token.get_secret_value())
            assert fakes.idp.token_calls == 1
            assert after.version == stored.version
        else:
            # refreshed with the refresh token the dead process stored, not its own rt
            assert event["adopted"] is False
            assert fakes.idp.token_calls == 2
            assert after.version == stored.version + 1
            assert after.fence is not None
            assert stored.fence is not None
            assert after.fence > stored.fence  # the heir took the lock over
        assert after.token.refresh_token is not None
        assert reply["refresh"] == fingerprint(after.token.refresh_token.get_secret_value())

        # the grant survives: one more lifetime later, a fresh process refreshes fine
        shared_clock.advance(LIFETIME + 1)
        later = Session(
            RefreshTokenGrant(fakes.token_url, "client", "secret", refresh_token=rt),
            store=store,
            store_key=STORE_KEY,
            clock=shared_clock,
            lock_ttl=LOCK_TTL,
        )
        assert fakes.idp.validate(later.token())
        later.close()
        store.close()
        assert fakes.idp.reuse_detected == 0


@pytest.mark.slow
def test_kill_9_while_the_token_request_is_in_flight_loses_nothing(
    tmp_path: Path, ctx: Context, shared_clock: SharedClock
) -> None:
    """Killed before the IdP acted on its request: nothing was rotated, so the
    next process refreshes with the same refresh token and no reuse is seen."""
    path = tmp_path / "tokens.db"
    url = f"sqlite:///{path}"
    with serve(shared_clock, hold="before") as fakes:
        assert fakes.doorman is not None
        rt = fakes.idp.issue_refresh_token()
        victim = _heir(fakes, url, rt, shared_clock)
        with Workers(ctx, [victim]) as workers:
            workers.send(0, "token")
            _wait(fakes.doorman.arrived, workers)  # it holds the lock, its request is out
            assert workers.kill(0) == -9
        fakes.doorman.release.set()

        store = SQLiteStore(path, clock=shared_clock)
        assert store.get_token(STORE_KEY) is None  # nothing was written
        assert not store.lock(f"refresh:{STORE_KEY}", ttl=LOCK_TTL).acquire(timeout=0)
        shared_clock.advance(LOCK_TTL + 1)
        with Workers(ctx, [_heir(fakes, url, rt, shared_clock)]) as workers:
            (reply,) = workers.broadcast("run", threads=4, calls=2)
        assert reply["outcome"] == {"ok": 8}
        assert fakes.idp.token_calls == 1  # the heir's; the victim's never reached the IdP
        assert fakes.idp.reuse_detected == 0
        stored = store.get_token(STORE_KEY)
        assert stored is not None
        assert reply["access"] == fingerprint(stored.token.access_token.get_secret_value())
        store.close()


@pytest.mark.slow
def test_kill_9_after_the_idp_rotated_before_the_answer_arrived_loses_the_grant(
    tmp_path: Path, ctx: Context, shared_clock: SharedClock
) -> None:
    """The one lossy window, documented in docs/stores.md: the new refresh token
    existed only in the answer to a dead process. The next process presents the
    old one, a strict single-use IdP sees a reuse and revokes the grant, and the
    callers get invalid_grant: a new login is needed. (An IdP with a reuse grace
    period, or a FallbackChain, is the remedy; no store can help.)"""
    path = tmp_path / "tokens.db"
    url = f"sqlite:///{path}"
    with serve(shared_clock, hold="after") as fakes:
        assert fakes.doorman is not None
        rt = fakes.idp.issue_refresh_token()
        with Workers(ctx, [_heir(fakes, url, rt, shared_clock)]) as workers:
            workers.send(0, "token")
            _wait(fakes.doorman.arrived, workers)  # the IdP has rotated rt already
            assert workers.kill(0) == -9
        fakes.doorman.release.set()
        shared_clock.advance(LOCK_TTL + 1)
        with Workers(ctx, [_heir(fakes, url, rt, shared_clock)]) as workers:
            (reply,) = workers.broadcast("run", threads=4, calls=2)
    assert "ok" not in reply["outcome"]
    assert all("invalid_grant" in kind for kind in reply["outcome"]), reply["outcome"]
    assert fakes.idp.reuse_detected == 1
    # the victim's call, then at most one refused call per round of callers
    assert 2 <= fakes.idp.token_calls <= 1 + 8


# ------------------------------------------------------------------------ Redis outage


@pytest.mark.slow
def test_redis_stopped_and_restarted_mid_run(
    tmp_path: Path, ctx: Context, shared_clock: SharedClock
) -> None:
    server = RedisServer(require_redis_server(), tmp_path)  # our own: we stop it
    server.start()
    try:
        with serve(shared_clock, latency=0.050) as fakes:
            rt = fakes.idp.issue_refresh_token()
            spec = WorkerSpec(server.url, fakes.token_url, fakes.api_url, rt, shared_clock)
            with Workers(ctx, [spec] * 3) as workers:
                first = workers.broadcast("run", threads=8, calls=2)
                assert outcome_of(first) == {"ok": 48}
                assert fakes.idp.token_calls == 1

                server.stop()
                # into the refresh window: every token is due, none has expired
                shared_clock.advance(LIFETIME - 200)
                down = workers.broadcast("run", threads=8, calls=2)
                # callers keep getting the still-valid token: no exception, no 401
                assert outcome_of(down) == {"ok": 48}
                assert {r["access"] for r in down} == {first[0]["access"]}
                for r in down:
                    assert "store_unavailable" in kinds(r), r["events"]
                    assert "store" in r["health"]
                # nobody refreshed alone: three processes presenting the same
                # single-use refresh token would have had the grant revoked
                assert fakes.idp.token_calls == 1

                server.start()  # same port, empty: Redis kept nothing
                shared_clock.advance(10)  # past the retry delay of the deferred refresh
                up = workers.broadcast("run", threads=8, calls=2)
                assert outcome_of(up) == {"ok": 48}
                for r in up:
                    assert "store_recovered" in kinds(r), r["events"]
                    assert "store" not in r["health"]
                assert fakes.idp.token_calls == 2  # one refresh, through the store again
                assert len({r["access"] for r in up}) == 1
                assert {r["access"] for r in up} != {first[0]["access"]}
                assert [e["adopted"] for r in up for e in refreshes(r)].count(False) == 1
            assert fakes.idp.reuse_detected == 0
            assert fakes.api.unauthorized == 0
    finally:
        server.stop()


# ------------------------------------------------------------------- SQLite held locked


@pytest.mark.slow
def test_sqlite_locked_by_another_process_falls_back_to_a_local_refresh(
    tmp_path: Path, ctx: Context
) -> None:
    clock = FakeClock()
    idp = FakeIdP(clock=clock, access_ttl=LIFETIME)
    path = tmp_path / "tokens.db"
    store = open_store(f"sqlite:///{path}?timeout=0.2", clock=clock)  # a short busy timeout
    session = Session(
        RefreshTokenGrant(
            idp.token_url, "client", "secret", refresh_token=idp.issue_refresh_token()
        ),
        store=store,
        store_key=STORE_KEY,
        clock=clock,
        transport=idp.transport,
        retry=authpulse.TokenRetry(attempts=1),
    )
    events: list[tuple[str, dict[str, Any]]] = []
    session.add_listener(lambda kind, fields: events.append((kind, fields)))
    first = session.token()
    locked, release = ctx.Event(), ctx.Event()
    with process(ctx, hold_sqlite_write_lock, str(path), locked, release) as locker:
        assert locked.wait(REPLY_TIMEOUT)
        assert locker.is_alive()
        # due but still valid: the token is kept, the refresh waits for the store
        clock.advance(LIFETIME - 200)
        assert session.token() == first
        session.join_background()
        assert idp.token_calls == 1
        assert ("store_unavailable", {"error": "StoreUnavailableError"}) in events
        assert "store" in {c.name for c in session.health().components}
        # expired: refreshed locally, reported, and the caller never sees the store's error
        clock.advance(200)
        token = session.token()
        assert token != first
        assert idp.validate(token)
        assert idp.token_calls == 2
        assert "store" in {c.name for c in session.health().components}
        release.set()
    assert locker.exitcode == 0
    clock.advance(LIFETIME + 1)  # the store is back for the next refresh
    assert idp.validate(session.token())
    assert ("store_recovered", {"error": None}) in events
    assert "store" not in {c.name for c in session.health().components}
    stored = store.get_token(STORE_KEY)
    assert stored is not None
    assert stored.token.access_token.get_secret_value() == session.token()
    assert idp.token_calls == 3
    assert idp.reuse_detected == 0
    session.close()
    store.close()


# ------------------------------------------------------------ a new SQLite file, opened at once

OPENERS = 5
ROUNDS = 8


@pytest.mark.slow
def test_workers_started_together_all_open_a_new_sqlite_store(tmp_path: Path, ctx: Context) -> None:
    # gunicorn starting its workers: each opens the same file, which none has created yet
    failed: list[str] = []
    for round_ in range(ROUNDS):
        path = tmp_path / f"round-{round_}.db"
        start = ctx.Barrier(OPENERS)
        pipes = [ctx.Pipe(duplex=False) for _ in range(OPENERS)]
        procs = [
            ctx.Process(target=open_sqlite_at_once, args=(str(path), i, start, send), daemon=True)
            for i, (_, send) in enumerate(pipes)
        ]
        for proc in procs:
            proc.start()
        for _, send in pipes:
            send.close()
        for (receive, _), proc in zip(pipes, procs, strict=True):
            reply = receive.recv() if receive.poll(REPLY_TIMEOUT) else {"error": "no answer"}
            proc.join(REPLY_TIMEOUT)
            if "error" in reply:
                failed.append(f"round {round_}, pid {proc.pid}:\n{reply['error']}")
            assert proc.exitcode == 0, (round_, proc.pid, proc.exitcode)
            receive.close()
        assert path.exists()
    assert not failed, f"{len(failed)} of {OPENERS * ROUNDS} opens failed:\n" + "\n".join(failed)
