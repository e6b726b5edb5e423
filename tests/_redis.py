"""A throwaway ``redis-server`` for the store tests.

:class:`RedisServer` runs one server on a free loopback port with its own
temporary directory and no persistence (``--save ''``); :meth:`stop` and
:meth:`start` let a test take it away and bring it back on the same port.
The session-scoped ``redis_server`` fixture starts one for the whole run.

Without a ``redis-server`` binary the Redis tests are skipped, unless the
environment says ``CI=true``: then they fail, so CI cannot go green by
silently not testing Redis.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

__all__ = [
    "RedisServer",
    "SlowProxy",
    "free_port",
    "ping",
    "redis_server_fixture",
    "require_redis_server",
]

INSTALL_HINT = "install it with: apt-get install -y redis-server"


def _missing(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} and CI=true requires the Redis tests to run; {INSTALL_HINT}")
    pytest.skip(f"{reason}: the Redis store tests need it ({INSTALL_HINT})")


def require_redis_server(binary: str | None = None) -> str:
    """The ``redis-server`` path; skips the test without one (fails it with ``CI=true``)."""
    found = binary if binary is not None else shutil.which("redis-server")
    if not found:
        _missing("redis-server is not on PATH")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ping(port: int, timeout: float = 0.25) -> bool:
    """True if a Redis server on 127.0.0.1:``port`` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1, data only in memory."""

    def __init__(self, binary: str, directory: Path, port: int | None = None) -> None:
        self.binary = binary
        self.directory = directory
        self.port = port if port is not None else free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, wait: float = 10.0) -> None:
        """Start the server and return once it answers PING."""
        if self.running:
            return
        log = self.directory / "redis.log"
        with log.open("ab") as out:
            self._proc = subprocess.Popen(  # noqa: S603 - a fixed argument list
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.directory),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--protected-mode",
                    "yes",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + wait
        while not ping(self.port):
            if self._proc.poll() is not None:
                self._proc = None
                raise RuntimeError(
                    f"redis-server exited at start: {log.read_text(errors='replace')[-2000:]}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING within {wait} s")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server (its data is gone: nothing is saved)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session", name="redis_server")
def redis_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server shared by the whole test session."""
    binary = require_redis_server()
    with RedisServer(binary, tmp_path_factory.mktemp("redis")) as server:
        yield server


class SlowProxy:
    """A TCP proxy in front of a Redis server whose answers come ``delay`` seconds
    late, or never (``delay=None``: requests reach the server, answers are dropped).

    Use as a context manager; :attr:`url` is the proxy's ``redis://`` URL.
    """

    def __init__(self, upstream_port: int, delay: float | None) -> None:
        self.upstream_port = upstream_port
        self.delay = delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._guard = threading.Lock()
        threading.Thread(target=self._accept, name="slow-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._guard:
                self._sockets += [client, upstream]
                if self._closed.is_set():  # accepted while closing
                    client.close()
                    upstream.close()
                    return
            for src, dst, late in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(
                    target=self._pipe, args=(src, dst, late), name="slow-proxy-pipe", daemon=True
                ).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, late: bool) -> None:
        try:
            while chunk := src.recv(65536):
                if late:
                    if self.delay is None:
                        continue  # the answer never comes
                    if self._closed.wait(self.delay):
                        return
                dst.sendall(chunk)
        except OSError:
            return

    def close(self) -> None:
        with self._guard:
            self._closed.set()
            self._listener.close()
            for sock in self._sockets:
                sock.close()

    def __enter__(self) -> SlowProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
