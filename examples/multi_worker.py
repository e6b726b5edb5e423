"""Several worker processes sharing one session through Redis.

    python examples/multi_worker.py

Four worker processes each run eight threads that call an API with the
same OAuth grant. The grant's refresh tokens are single-use and rotate, so
the workers must never refresh on their own: they share the token set
through a store, and at every expiry exactly one of them asks the IdP while
the others adopt what it stored.

The store is the Redis at ``REDIS_URL`` if that is set; otherwise a private
``redis-server`` started on a free port, if one is installed; otherwise a
SQLite file (the example says which). The IdP and the API are authpulse's
fakes, served over real HTTP on 127.0.0.1 (``LoopbackServer``), so the
workers reach them as they would reach real servers. So that three token
lifetimes pass in a second, every process reads a clock whose offset the
parent winds forward.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import authpulse
from authpulse.testing import FakeAPI, FakeIdP, LoopbackServer

WORKERS = 4
THREADS = 8
CALLS = 2  # per thread and expiry
EXPIRIES = 3
LIFETIME = 3600  # seconds, on the shared clock


class _Offset(Protocol):
    value: float


class WoundClock:
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


# ---------------------------------------------------------------- the store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.25) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def private_redis(binary: str, directory: Path) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port (nothing saved to disk)."""
    port = _free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    argv += ["--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        deadline = time.monotonic() + 10
        while not _answers_ping(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def choose_store(directory: Path) -> Iterator[tuple[str, str]]:
    """(store URL, what it is)."""
    namespace = "example-" + secrets.token_hex(4)
    url = os.environ.get("REDIS_URL")
    if url:
        sep = "&" if "?" in url else "?"
        yield f"{url}{sep}namespace={namespace}", "Redis at REDIS_URL"
        return
    binary = shutil.which("redis-server")
    if binary:
        with private_redis(binary, directory) as url:
            yield f"{url}?namespace={namespace}", f"a private redis-server ({url})"
        return
    path = directory / "tokens.db"
    yield f"sqlite:///{path}", "a SQLite file (no REDIS_URL and no redis-server installed)"


# ------------------------------------------------------------------- worker


def _calls(client: authpulse.Client, outcome: Counter[str], lock: threading.Lock) -> None:
    for _ in range(CALLS):
        try:
            ok = client.get("/orders").status_code == 200
        except authpulse.AuthpulseError:
            ok = False
        with lock:
            outcome["ok" if ok else "failed"] += 1


def worker(
    number: int,
    store_url: str,
    token_url: str,
    api_url: str,
    refresh_token: str,
    clock: WoundClock,
    conn: multiprocessing.connection.Connection,
) -> None:
    """One worker process: a session on the shared store, threads calling the API."""
    store = authpulse.open_store(store_url)
    session = authpulse.Session(
        authpulse.RefreshTokenGrant(token_url, "client", "secret", refresh_token=refresh_token),
        store=store,
        store_key="shared-grant",  # the same key in every worker: one shared token set
        clock=clock,
        name=f"worker-{number}",
    )
    refreshes: Counter[str] = Counter()

    def on_event(kind: str, fields: dict[str, Any]) -> None:
        if kind == "refreshed":
            refreshes["adopted" if fields["adopted"] else "fetched"] += 1

    session.add_listener(on_event)
    with authpulse.Client(session, base_url=api_url, timeout=30) as client:
        while conn.recv() == "go":
            outcome: Counter[str] = Counter()
            lock = threading.Lock()
            threads = [
                threading.Thread(target=_calls, args=(client, outcome, lock))
                for _ in range(THREADS)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            conn.send({"pid": os.getpid(), **outcome, **refreshes})
            refreshes.clear()
    session.close()
    store.close()


# ------------------------------------------------------------------- parent


def main() -> int:
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp, choose_store(Path(tmp)) as (store_url, what):
        print(f"store: {what}")
        clock = WoundClock(ctx.RawValue("d", 0.0))
        with LoopbackServer() as idp_server, LoopbackServer() as api_server:
            idp = FakeIdP(clock=clock, issuer=idp_server.url, access_ttl=LIFETIME, latency=0.05)
            idp_server.app = idp
            api = FakeAPI(idp, base_url=api_server.url)
            api_server.app = api
            refresh_token = idp.issue_refresh_token()  # what a user's login gave us

            pipes = []
            procs = []
            for number in range(1, WORKERS + 1):
                parent_end, child_end = ctx.Pipe()
                args = (number, store_url, idp.token_url, api_server.url, refresh_token, clock)
                proc = ctx.Process(target=worker, args=(*args, child_end))
                proc.start()
                pipes.append(parent_end)
                procs.append(proc)

            totals: list[Counter[str]] = [Counter() for _ in procs]
            calls_per_expiry = []
            for _ in range(EXPIRIES):
                before = idp.token_calls
                for p in pipes:
                    p.send("go")
                for total, p in zip(totals, pipes, strict=True):
                    if not p.poll(60):
                        raise RuntimeError("a worker did not answer within 60 s")
                    reply = p.recv()
                    total["pid"] = reply.pop("pid")
                    total.update(reply)
                calls_per_expiry.append(idp.token_calls - before)
                clock.wind(LIFETIME + 1)  # every worker's token has now expired
            for p in pipes:
                p.send("stop")
            for proc in procs:
                proc.join(30)

    for number, (total, proc) in enumerate(zip(totals, procs, strict=True), 1):
        print(
            f"worker {number} (pid {total['pid']}): {total['ok']} calls ok, "
            f"{total['failed']} failed; refreshed at the IdP {total['fetched']} time(s), "
            f"adopted from the store {total['adopted']} time(s); exit code {proc.exitcode}"
        )
    print(
        f"IdP token calls: {idp.token_calls} for {EXPIRIES} expiries "
        f"(per expiry: {calls_per_expiry}); refresh-token reuse detected: {idp.reuse_detected}"
    )
    everything_ok = (
        all(t["failed"] == 0 and t["ok"] == EXPIRIES * THREADS * CALLS for t in totals)
        and all(proc.exitcode == 0 for proc in procs)
        and calls_per_expiry == [1] * EXPIRIES
        and idp.reuse_detected == 0
    )
    print("OK: one token call per expiry, every call succeeded" if everything_ok else "FAILED")
    return 0 if everything_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
