"""The worker-process side of test_multiprocess.py.

A worker is a real OS process (``forkserver`` where available, else
``spawn``: never a plain fork of a parent full of threads) holding one
:class:`authpulse.Session` on a shared store and one :class:`authpulse.Client`.
The parent keeps the fake IdP and API and serves them over loopback HTTP;
it drives the workers with commands over a pipe and reads their reports.
Every worker error comes back as a traceback in the report, and the
parent's :class:`Workers` puts tracebacks and exit codes into its
assertion messages.

All processes share one :class:`SharedClock`: real time plus an offset kept
in shared memory, which only the parent moves. Winding it forward expires
every token in every process at once, without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import multiprocessing.process
import multiprocessing.synchronize
import os
import signal
import threading
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol, TypeAlias

from pydantic import SecretStr

import authpulse
from authpulse import RefreshTokenGrant, Session, SQLiteStore, TokenSet, open_store

__all__ = [
    "REPLY_TIMEOUT",
    "STORE_KEY",
    "Context",
    "SharedClock",
    "WorkerSpec",
    "Workers",
    "context",
    "fingerprint",
    "hold_sqlite_write_lock",
    "open_sqlite_at_once",
    "process",
    "worker_main",
]

CLIENT_ID = "client"
CLIENT_SECRET = "secret"
#: the store key every worker's session uses (one grant shared by all)
STORE_KEY = "shared"
#: the longest the parent waits for any one answer of a worker
REPLY_TIMEOUT = 60.0

Context: TypeAlias = (
    multiprocessing.context.ForkServerContext | multiprocessing.context.SpawnContext
)


def context() -> Context:
    """The start method for workers: ``forkserver`` with this module preloaded
    (workers fork from a clean, single-threaded process that has imported
    authpulse already), else ``spawn``."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")


def fingerprint(secret: str) -> str:
    """A short, non-reversible name for a token (reports never carry tokens)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


class _Offset(Protocol):
    value: float


class SharedClock:
    """``time.time()`` / ``time.monotonic()`` plus an offset in shared memory.

    Made in the parent and handed to workers as a ``Process`` argument; only
    the parent calls :meth:`advance`. ``sleep`` really sleeps (the token
    retries use it, and tests here never rely on it).
    """

    def __init__(self, ctx: Context) -> None:
        # a raw double: the parent is the only writer, readers need no lock
        self._offset: _Offset = ctx.RawValue("d", 0.0)

    def __repr__(self) -> str:
        return f"SharedClock(offset={self._offset.value:.1f})"

    def now(self) -> float:
        return time.time() + self._offset.value

    def monotonic(self) -> float:
        return time.monotonic() + self._offset.value

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))

    def advance(self, seconds: float) -> None:
        """Move every process's time forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._offset.value += seconds


@dataclass
class WorkerSpec:
    """How to build one worker's session."""

    store_url: str
    token_url: str
    api_url: str
    refresh_token: str
    clock: SharedClock
    lock_ttl: float = 30.0
    #: open the store with the shared clock (SQLite lock TTLs then run on it)
    store_clock: bool = False
    #: SQLite only: after writing a token set, set this event and hang (to be killed)
    hang_after_write: multiprocessing.synchronize.Event | None = None
    sqlite_path: str | None = None


# ------------------------------------------------------------------ worker side


class _HangAfterWrite(SQLiteStore):
    """Writes the token set, tells the parent, then blocks while still holding
    the refresh lock: the worst moment for a ``kill -9``."""

    def __init__(self, path: str, *, ready: multiprocessing.synchronize.Event, **kw: Any) -> None:
        super().__init__(path, **kw)
        self._ready = ready

    def put_token(
        self, session_id: str, token: TokenSet, *, skew: float = 0.0, fence: int | None = None
    ) -> authpulse.StoredToken:
        stored = super().put_token(session_id, token, skew=skew, fence=fence)
        self._ready.set()
        threading.Event().wait()  # until SIGKILL
        return stored  # pragma: no cover - never reached


@dataclass
class _Worker:
    spec: WorkerSpec
    events: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        spec = self.spec
        if spec.hang_after_write is not None:
            assert spec.sqlite_path is not None
            self.store: authpulse.SessionStore = _HangAfterWrite(
                spec.sqlite_path, ready=spec.hang_after_write, clock=spec.clock
            )
        elif spec.store_clock:
            self.store = open_store(spec.store_url, clock=spec.clock)
        else:
            self.store = open_store(spec.store_url)
        self.session = Session(
            RefreshTokenGrant(
                spec.token_url, CLIENT_ID, CLIENT_SECRET, refresh_token=spec.refresh_token
            ),
            store=self.store,
            store_key=STORE_KEY,
            clock=spec.clock,
            lock_ttl=spec.lock_ttl,
            name=f"worker-{os.getpid()}",
        )
        self.session.add_listener(self._on_event)
        self.client = authpulse.Client(self.session, base_url=spec.api_url, timeout=30.0)

    def _on_event(self, kind: str, fields: dict[str, Any]) -> None:
        if kind in ("refreshed", "refresh_failed", "store_unavailable", "store_recovered"):
            with self.lock:
                self.events.append({"kind": kind, **fields})

    def run(self, threads: int, calls: int) -> dict[str, Any]:
        """``threads`` threads released together, each making ``calls`` API calls."""
        outcome: Counter[str] = Counter()
        start = threading.Barrier(threads)

        def work() -> None:
            try:
                start.wait(timeout=REPLY_TIMEOUT)
            except threading.BrokenBarrierError:
                with self.lock:
                    outcome["barrier broken"] += 1
                return
            for _ in range(calls):
                try:
                    response = self.client.get("/items")
                except Exception as exc:
                    kind = f"{type(exc).__name__}: {exc}"
                else:
                    kind = "ok" if response.status_code == 200 else f"HTTP {response.status_code}"
                with self.lock:
                    outcome[kind] += 1

        pool = [threading.Thread(target=work) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        self.session.join_background(REPLY_TIMEOUT)  # a STALE token refreshes in the background
        return {"outcome": dict(outcome), **self.report()}

    def token(self) -> dict[str, Any]:
        """One ``session.token()`` (no API call)."""
        self.session.token()
        return self.report()

    def report(self) -> dict[str, Any]:
        current = self.session.token_set
        with self.lock:
            events, self.events = self.events, []
        return {
            "pid": os.getpid(),
            "access": fingerprint(current.access_token.get_secret_value()) if current else None,
            "refresh": (
                fingerprint(current.refresh_token.get_secret_value())
                if current is not None and current.refresh_token is not None
                else None
            ),
            "events": events,
            "health": sorted(c.name for c in self.session.health().components),
            "token_requests": self.session.stats().token_requests,
        }

    def close(self) -> dict[str, Any]:
        self.client.close()
        self.session.close()
        self.store.close()
        return {"closed": True}


def worker_main(spec: WorkerSpec, conn: multiprocessing.connection.Connection) -> None:
    """A worker's life: build the session, then answer commands until ``stop``."""
    warnings.simplefilter("error")  # as strict as the test run itself
    try:
        worker = _Worker(spec)
    except BaseException:
        conn.send({"error": traceback.format_exc()})
        raise
    conn.send({"ready": os.getpid()})
    while True:
        command, args = conn.recv()
        try:
            if command == "run":
                reply = worker.run(**args)
            elif command == "token":
                reply = worker.token()
            elif command == "stop":
                reply = worker.close()
            else:
                reply = {"error": f"unknown command {command!r}"}
        except BaseException:
            reply = {"error": traceback.format_exc()}
        conn.send(reply)
        if command == "stop":
            return


def hold_sqlite_write_lock(
    path: str,
    locked: multiprocessing.synchronize.Event,
    release: multiprocessing.synchronize.Event,
) -> None:
    """Another process's long write transaction on the SQLite file."""
    import sqlite3

    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(REPLY_TIMEOUT)
        db.execute("ROLLBACK")
    finally:
        db.close()


def open_sqlite_at_once(
    path: str,
    index: int,
    start: multiprocessing.synchronize.Barrier,
    conn: multiprocessing.connection.Connection,
) -> None:
    """One of several workers starting together: open the same not-yet-existing
    SQLite file the moment all are ready, write a record and a token set, read
    them back; send ``{"ok": pid}`` or ``{"error": traceback}``."""
    warnings.simplefilter("error")
    try:
        start.wait(REPLY_TIMEOUT)
        store = open_store(f"sqlite:///{path}")
        try:
            sid = f"worker-{index}"
            now = time.time()
            store.put(
                authpulse.SessionRecord(
                    id=sid,
                    owner="owner",
                    kind=authpulse.SessionKind.SYSTEM,
                    status=authpulse.SessionStatus.ACTIVE,
                    created_at=now,
                    last_activity_at=now,
                ),
                expected_version=None,
            )
            store.put_token(
                sid,
                TokenSet(access_token=SecretStr(f"at-{index}"), issued_at=now, expires_at=now + 60),
            )
            record, stored = store.get(sid), store.get_token(sid)
            assert record is not None, "the record written is not there"
            assert record.owner == "owner", record
            assert stored is not None, "the token set written is not there"
            assert stored.token.access_token.get_secret_value() == f"at-{index}"
        finally:
            store.close()
        conn.send({"ok": os.getpid()})
    except BaseException:
        conn.send({"error": traceback.format_exc()})
    finally:
        conn.close()


# ------------------------------------------------------------------ parent side


@dataclass
class _Child:
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    replies: list[dict[str, Any]] = field(default_factory=list)


class Workers:
    """N worker processes with the same spec, driven together.

    Any error of a worker — a traceback in a reply, a death, a silence
    longer than :data:`REPLY_TIMEOUT` — fails the test with every worker's
    exit code and error text.
    """

    def __init__(self, ctx: Context, specs: list[WorkerSpec]) -> None:
        self.ctx = ctx
        self.children: list[_Child] = []
        for spec in specs:
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(spec, child_end), daemon=True)
            proc.start()
            child_end.close()
            self.children.append(_Child(proc, parent_end))

    def __enter__(self) -> Workers:
        try:
            self.wait_ready()
        except BaseException:
            self.shutdown(graceful=False)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(graceful=exc[0] is None)

    # -- talking to them

    def _recv(self, child: _Child, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not child.conn.poll(0.05):
            if not child.process.is_alive() and not child.conn.poll(0):
                self.fail(f"worker {child.process.pid} died")
            if time.monotonic() > deadline:
                self.fail(f"worker {child.process.pid} did not answer within {timeout:g} s")
        try:
            reply: dict[str, Any] = child.conn.recv()
        except EOFError:
            self.fail(f"worker {child.process.pid} closed its pipe")
        child.replies.append(reply)
        if "error" in reply:
            self.fail(f"worker {child.process.pid} raised")
        return reply

    def wait_ready(self, timeout: float = REPLY_TIMEOUT) -> None:
        for child in self.children:
            self._recv(child, timeout)

    def send(self, index: int, command: str, **args: Any) -> None:
        self.children[index].conn.send((command, args))

    def broadcast(
        self, command: str, timeout: float = REPLY_TIMEOUT, **args: Any
    ) -> list[dict[str, Any]]:
        """Send ``command`` to every worker (they run it at the same time); their replies."""
        for child in self.children:
            child.conn.send((command, args))
        return [self._recv(child, timeout) for child in self.children]

    # -- ending them

    def kill(self, index: int) -> int | None:
        """SIGKILL one worker; its exit code (``-9``)."""
        proc = self.children[index].process
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(REPLY_TIMEOUT)
        return proc.exitcode

    def shutdown(self, *, graceful: bool = True) -> None:
        """Stop every live worker (``stop`` first if ``graceful``), then reap them all."""
        errors: list[str] = []
        for child in self.children:
            if graceful and child.process.is_alive():
                try:
                    child.conn.send(("stop", {}))
                    self._recv(child, REPLY_TIMEOUT)
                except (AssertionError, OSError) as exc:
                    errors.append(str(exc))
        for child in self.children:
            child.process.join(REPLY_TIMEOUT if graceful else 0.5)
            if child.process.is_alive():
                child.process.kill()
                child.process.join(REPLY_TIMEOUT)
            child.conn.close()
        if graceful:
            bad = [
                (c.process.pid, c.process.exitcode)
                for c in self.children
                if c.process.exitcode not in (0, -signal.SIGKILL)
            ]
            if bad or errors:
                raise AssertionError(f"workers ended badly: exit codes {bad}; {errors}")

    def fail(self, what: str) -> NoReturn:
        """Fail the test with ``what`` and everything the workers said."""
        lines = [what]
        for child in self.children:
            lines.append(
                f"--- worker pid={child.process.pid} alive={child.process.is_alive()} "
                f"exitcode={child.process.exitcode}"
            )
            lines.extend(r["error"] for r in child.replies if "error" in r)
        raise AssertionError("\n".join(lines))


@contextlib.contextmanager
def process(ctx: Context, target: Any, *args: Any) -> Iterator[multiprocessing.process.BaseProcess]:
    """Run ``target(*args)`` in a process for the duration of a ``with`` block."""
    proc = ctx.Process(target=target, args=args, daemon=True)
    proc.start()
    try:
        yield proc
    finally:
        proc.join(REPLY_TIMEOUT)
        if proc.is_alive():
            proc.kill()
            proc.join(REPLY_TIMEOUT)
