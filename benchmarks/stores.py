"""Stores: what sharing one session through a store costs.

Per store — memory, SQLite (a file in a temporary directory), Redis (the
one at ``REDIS_URL``, else a private ``redis-server`` if one is installed,
else skipped):

- hot path: ``session.token()`` on a valid token, with every store call
  counted by a wrapper (the figure to check is 0) and the time per call
  (median of blocks), next to a session without a store;
- refresh coordination: ``force_refresh()`` against an in-process IdP with
  no latency, so what is left is the store protocol — lock, read, fenced
  write, release — on top of the token request; the overhead is the
  difference of medians with a session without a store;
- stampede: N worker processes × M threads on an EXPIRED token, the token
  endpoint (50 ms) and the API served over loopback HTTP by this process;
  the wall time from releasing every thread to the last answer, the token
  calls per expiry and the failed requests. All processes share a clock
  whose offset this process winds forward, so each repetition is a new
  expiry. (Memory cannot be shared between processes: not measured.)

    python benchmarks/stores.py
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, cast

from pydantic import SecretStr

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import authpulse
from authpulse import SessionStore, StoreLock
from authpulse.testing import FakeAPI, FakeIdP, LoopbackServer
from benchmarks._common import TOKEN_LATENCY, Section, fmt_ms, median

now_ns = time.perf_counter_ns

STORE_KEY = "shared"
LIFETIME = 3600.0


# ------------------------------------------------------------------ counting


class CountingStore:
    """Forwards everything to a store and counts every call by name, the lock's
    own operations (``lock_try``, ``lock_release``, ``lock_renew``) included."""

    def __init__(self, inner: SessionStore) -> None:
        self._inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return counted

    def lock(self, name: str, ttl: float) -> StoreLock:
        self.calls["lock"] += 1
        return StoreLock(cast(Any, self), name, ttl)  # this wrapper is the lock backend

    def total(self) -> int:
        """Calls that reach the store (making a lock handle does not)."""
        return sum(n for name, n in self.calls.items() if name != "lock")


# -------------------------------------------------------------------- stores


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.25) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_url(directory: Path) -> Iterator[str | None]:
    """``REDIS_URL``, else a private redis-server on a free port, else ``None``."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = _free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    argv += ["--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        deadline = time.monotonic() + 10
        while not _pings(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                yield None
                return
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _with_namespace(url: str) -> str:
    if not url.startswith("redis"):
        return url
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}namespace=bench-{secrets.token_hex(4)}"


# ------------------------------------------------------- single process parts


def _session(idp: FakeIdP, store: SessionStore | None) -> authpulse.Session:
    return authpulse.Session(
        authpulse.RefreshTokenGrant(
            idp.token_url, "client", "secret", refresh_token=idp.issue_refresh_token()
        ),
        transport=idp.transport,
        store=store,
        store_key=STORE_KEY + "-" + secrets.token_hex(4),
        seed=1,
    )


def hot_path(store: SessionStore | None, *, calls: int, blocks: int) -> tuple[float, int]:
    """(median ns per ``token()`` on a valid token, store calls during them)."""
    idp = FakeIdP(access_ttl=LIFETIME)
    counting = CountingStore(store) if store is not None else None
    session = _session(idp, cast(SessionStore, counting) if counting is not None else None)
    session.token()  # the first one refreshes, through the store
    if counting is not None:
        counting.calls.clear()
    token = session.token
    samples = []
    for _ in range(blocks):
        t = now_ns()
        for _ in range(calls):
            token()
        samples.append((now_ns() - t) / calls)
    touched = counting.total() if counting is not None else 0
    session.close()
    return median(samples), touched


def refresh_cost(store: SessionStore | None, *, refreshes: int) -> tuple[float, float]:
    """(median µs per ``force_refresh()``, store operations per refresh)."""
    idp = FakeIdP(access_ttl=LIFETIME)  # no latency, in-process
    counting = CountingStore(store) if store is not None else None
    session = _session(idp, cast(SessionStore, counting) if counting is not None else None)
    session.token()
    for _ in range(10):  # warm-up
        session.force_refresh()
    if counting is not None:
        counting.calls.clear()
    samples = []
    for _ in range(refreshes):
        t = now_ns()
        session.force_refresh()
        samples.append(now_ns() - t)
    ops = counting.total() / refreshes if counting is not None else 0.0
    assert idp.reuse_detected == 0
    session.close()
    return median(samples) / 1e3, ops


# ----------------------------------------------------------- the stampede


class _Offset(Protocol):
    value: float


class SharedClock:
    """Real time plus an offset in shared memory that the parent winds forward."""

    def __init__(self, offset: _Offset) -> None:
        self._offset = offset

    def now(self) -> float:
        return time.time() + self._offset.value

    def monotonic(self) -> float:
        return time.monotonic() + self._offset.value

    def sleep(self, seconds: float) -> None:
        time.sleep(max(seconds, 0.0))

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))

    def wind(self, seconds: float) -> None:
        self._offset.value += seconds


def _calls(client: authpulse.Client, n: int, start: threading.Barrier, out: Counter[str]) -> None:
    start.wait()
    for _ in range(n):
        try:
            response = client.get("/items")
        except Exception as exc:
            out[type(exc).__name__] += 1
        else:
            out["ok" if response.status_code == 200 else f"HTTP {response.status_code}"] += 1


def stampede_worker(
    store_url: str,
    token_url: str,
    api_url: str,
    refresh_token: str,
    clock: SharedClock,
    threads: int,
    calls: int,
    conn: multiprocessing.connection.Connection,
) -> None:
    """One worker process: a session on the shared store; per ``go``, ``threads``
    threads released together, each making ``calls`` API calls."""
    store = authpulse.open_store(store_url)
    session = authpulse.Session(
        authpulse.RefreshTokenGrant(token_url, "client", "secret", refresh_token=refresh_token),
        store=store,
        store_key=STORE_KEY,
        clock=clock,
    )
    with authpulse.Client(session, base_url=api_url, timeout=60) as client:
        conn.send("ready")
        while conn.recv() == "go":
            out: Counter[str] = Counter()
            start = threading.Barrier(threads)
            pool = [
                threading.Thread(target=_calls, args=(client, calls, start, out))
                for _ in range(threads)
            ]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            conn.send(dict(out))
    session.close()
    store.close()


def stampede(
    store_url: str,
    *,
    processes: int,
    threads: int,
    calls: int,
    repeats: int,
    latency: float,
) -> dict[str, Any]:
    """Wall time (ns) per expiry, token calls per expiry, requests and failures."""
    ctx = multiprocessing.get_context("spawn")
    clock = SharedClock(ctx.RawValue("d", 0.0))
    walls: list[float] = []
    token_calls: list[int] = []
    outcome: Counter[str] = Counter()
    with LoopbackServer() as idp_server, LoopbackServer() as api_server:
        idp = FakeIdP(clock=clock, issuer=idp_server.url, access_ttl=LIFETIME, latency=latency)
        idp_server.app = idp
        api_server.app = FakeAPI(idp, base_url=api_server.url)
        rt = idp.issue_refresh_token()
        seed = authpulse.open_store(store_url)  # the shared set starts out expired
        now = clock.now()
        seed.put_token(
            STORE_KEY,
            authpulse.TokenSet(
                access_token=SecretStr("at_expired"),
                refresh_token=SecretStr(rt),
                issued_at=now - 2 * LIFETIME,
                expires_at=now - LIFETIME,
            ),
        )
        seed.close()
        pipes, procs = [], []
        for _ in range(processes):
            parent_end, child_end = ctx.Pipe()
            args = (store_url, idp.token_url, api_server.url, rt, clock, threads, calls)
            proc = ctx.Process(target=stampede_worker, args=(*args, child_end), daemon=True)
            proc.start()
            pipes.append(parent_end)
            procs.append(proc)
        try:
            for p in pipes:
                _recv(p)
            for _ in range(repeats):
                before = idp.token_calls
                t = now_ns()
                for p in pipes:
                    p.send("go")
                for p in pipes:
                    outcome.update(_recv(p))
                walls.append(now_ns() - t)
                token_calls.append(idp.token_calls - before)
                clock.wind(LIFETIME + 1)  # every token everywhere expires
            for p in pipes:
                p.send("stop")
        finally:
            for proc in procs:
                proc.join(30)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
    requests = sum(outcome.values())
    return {
        "wall_ns": walls,
        "token_calls": token_calls,
        "requests": requests,
        "failures": requests - outcome["ok"],
        "kinds": dict(outcome),
        "reuse_detected": idp.reuse_detected,
    }


def _recv(conn: multiprocessing.connection.Connection) -> Any:
    if not conn.poll(120):
        raise RuntimeError("a stampede worker did not answer within 120 s")
    return conn.recv()


# ----------------------------------------------------------------------- run


def run(
    *,
    hot_calls: int = 20_000,
    hot_blocks: int = 15,
    refreshes: int = 300,
    processes: int = 8,
    threads: int = 32,
    calls: int = 1,
    repeats: int = 3,
    latency: float = TOKEN_LATENCY,
) -> Section:
    with tempfile.TemporaryDirectory() as tmp, redis_url(Path(tmp)) as redis:
        urls: dict[str, str | None] = {
            "memory": "memory://",
            "SQLite": f"sqlite:///{Path(tmp) / 'bench.db'}",
            "Redis": redis,
        }
        opened: list[SessionStore] = []

        def open_(name: str) -> SessionStore | None:
            url = urls[name]
            if url is None:
                return None
            store = authpulse.open_store(_with_namespace(url))
            opened.append(store)
            return store

        names = list(urls)
        base_ns, _ = hot_path(None, calls=hot_calls, blocks=hot_blocks)
        base_us, _ = refresh_cost(None, refreshes=refreshes)
        hot: dict[str, tuple[float, int] | None] = {}
        refresh: dict[str, tuple[float, float] | None] = {}
        storms: dict[str, dict[str, Any] | None] = {}
        for name in names:
            store = open_(name)
            # (not ``if store``: an empty MemoryStore has len() 0)
            if store is None:
                hot[name] = refresh[name] = None
            else:
                hot[name] = hot_path(store, calls=hot_calls, blocks=hot_blocks)
                refresh[name] = refresh_cost(store, refreshes=refreshes)
            url = urls[name]
            storms[name] = (
                stampede(
                    _with_namespace(url),
                    processes=processes,
                    threads=threads,
                    calls=calls,
                    repeats=repeats,
                    latency=latency,
                )
                if url is not None and name != "memory"
                else None
            )
        for store in opened:
            store.close()

    def cells(fn: Callable[[str], str]) -> list[str]:
        return [fn(name) for name in names]

    def missing(name: str) -> str:
        return "not measured (one process)" if name == "memory" else "no Redis available"

    def hot_calls_cell(n: str) -> str:
        h = hot[n]
        return str(h[1]) if h else missing(n)

    def hot_ns_cell(n: str) -> str:
        h = hot[n]
        return f"{h[0]:.0f} ns" if h else missing(n)

    def refresh_cell(n: str) -> str:
        r = refresh[n]
        return f"{r[0]:.0f} µs" if r else missing(n)

    def overhead_cell(n: str) -> str:
        r = refresh[n]
        return f"{r[0] - base_us:+.0f} µs ({r[1]:.0f} store ops)" if r else missing(n)

    def wall_cell(n: str) -> str:
        s = storms[n]
        return fmt_ms(statistics.median(s["wall_ns"]), 0) if s else missing(n)

    def calls_cell(n: str) -> str:
        s = storms[n]
        return ", ".join(str(c) for c in s["token_calls"]) if s else missing(n)

    def failed_cell(n: str) -> str:
        s = storms[n]
        return f"{s['failures']} of {s['requests']}" if s else missing(n)

    lines: list[tuple[str, Callable[[str], str]]] = [
        (f"store calls during {hot_calls * hot_blocks:,} token() (valid token)", hot_calls_cell),
        (f"token(), valid token (no store: {base_ns:.0f} ns)", hot_ns_cell),
        (f"force_refresh(), no-latency IdP (no store: {base_us:.0f} µs)", refresh_cell),
        ("coordination overhead per refresh (lock, read, write, release)", overhead_cell),
        (
            f"stampede {processes} processes × {threads} threads: wall, median of {repeats}",
            wall_cell,
        ),
        ("stampede: token calls per expiry", calls_cell),
        ("stampede: failed requests", failed_cell),
    ]
    rows = [[label, *cells(fn)] for label, fn in lines]
    return Section(
        key="stores",
        title="Stores: the hot path, refresh coordination and a multi-process stampede",
        intro=(
            "A valid token is served from memory: the store is not touched (counted by a "
            "wrapper). A refresh through a store takes the refresh lock, re-reads the token "
            "set, writes the new set fenced by the lock and releases it; the overhead is "
            "measured against an in-process IdP with no latency. The stampede: "
            f"{processes} processes × {threads} threads × {calls} call(s) on an expired token, "
            f"{latency * 1000:.0f} ms token endpoint and the API over loopback HTTP; wall time "
            "from releasing the threads to the last answer (process start-up not included)."
        ),
        headers=["measurement", *names],
        rows=rows,
        data={
            "hot_ns_no_store": base_ns,
            "refresh_us_no_store": base_us,
            "hot": {n: list(v) if v else None for n, v in hot.items()},
            "refresh": {n: list(v) if v else None for n, v in refresh.items()},
            "stampede": storms,
            "processes": processes,
            "threads": threads,
            "calls": calls,
            "latency": latency,
        },
    )


if __name__ == "__main__":
    print(run().table())
