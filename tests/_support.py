"""Helpers shared by the test modules (not fixtures: plain functions)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from authpulse import (
    ClientCredentials,
    RefreshPolicy,
    RefreshTokenGrant,
    Session,
    TokenRetry,
    TokenSet,
)
from authpulse._runtime.backend import httpx
from authpulse.testing import FakeClock, FakeIdP

#: one RSA key for the client-assertion tests, with its PEM forms
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PEM = RSA_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
RSA_PUBLIC_PEM = (
    RSA_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)

#: a policy without jitter, so schedules are exact
NO_JITTER = RefreshPolicy(jitter=0.0)


def make_token(
    now: float,
    *,
    access: str = "at_test_access_token",
    refresh: str | None = None,
    lifetime: float = 600.0,
    age: float = 0.0,
) -> TokenSet:
    """A token set issued ``age`` seconds before ``now`` that lives ``lifetime`` seconds."""
    issued = now - age
    return TokenSet(
        access_token=SecretStr(access),
        refresh_token=SecretStr(refresh) if refresh else None,
        issued_at=issued,
        expires_at=issued + lifetime,
    )


def expired_token(clock: FakeClock, *, refresh: str | None = None) -> TokenSet:
    """A token set the IdP never issued and that expired an hour ago."""
    return make_token(
        clock.now(), access="at_long_gone", refresh=refresh, lifetime=600.0, age=3600.0
    )


def cc_session(
    idp: FakeIdP,
    clock: FakeClock,
    *,
    retry: TokenRetry | None = None,
    policy: RefreshPolicy | None = None,
    token: TokenSet | None = None,
    seed: int | None = 1,
    **kwargs: Any,
) -> Session:
    """A client-credentials session against ``idp`` (both transports)."""
    return Session(
        ClientCredentials(idp.token_url, "client", "secret"),
        clock=clock,
        transport=idp.transport,
        async_transport=idp.async_transport,
        retry=retry,
        policy=policy,
        token=token,
        seed=seed,
        **kwargs,
    )


def rt_session(
    idp: FakeIdP,
    clock: FakeClock,
    *,
    refresh_token: str | None = None,
    retry: TokenRetry | None = None,
    policy: RefreshPolicy | None = None,
    token: TokenSet | None = None,
    seed: int | None = 1,
    **kwargs: Any,
) -> Session:
    """A refresh-token session against ``idp`` (both transports)."""
    grant = RefreshTokenGrant(
        idp.token_url,
        "client",
        "secret",
        refresh_token=refresh_token if refresh_token is not None else idp.issue_refresh_token(),
    )
    return Session(
        grant,
        clock=clock,
        transport=idp.transport,
        async_transport=idp.async_transport,
        retry=retry,
        policy=policy,
        token=token,
        seed=seed,
        **kwargs,
    )


def assert_no_secret(text: str, secrets: Iterable[str]) -> None:
    """Fail if any secret (of at least 4 characters) occurs in ``text``."""
    for s in secrets:
        if s and len(s) >= 4:
            assert s not in text, f"a secret leaked into {text[:200]!r}"


class Gate:
    """A transport wrapper that holds every request until ``open()`` is called.

    ``entered`` is set when the first request arrives, so a test knows the
    refresh is in flight. Waiting is on events (real threads), never on time.
    """

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self._handler = handler
        self._open = threading.Event()
        self.entered = threading.Event()
        self.count = 0

    def open(self) -> None:
        self._open.set()

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        self.entered.set()
        assert self._open.wait(timeout=10), "gate never opened"
        return self._handler(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


class StreamingServer:
    """A raw HTTP/1.1 server on 127.0.0.1 whose answers are streamed from
    ``chunks()``, ``interval`` seconds apart (a trickle), for tests of body
    limits and deadlines. :attr:`sent` counts the body bytes the server
    managed to write; :attr:`completed` is set when a whole body went out.
    Every connection gets the same answer; the connection closes after it.
    """

    def __init__(
        self,
        chunks: Callable[[], Iterable[bytes]],
        *,
        status: int = 200,
        headers: Iterable[tuple[str, str]] = (("Content-Type", "application/json"),),
        interval: float = 0.0,
    ) -> None:
        import socket

        self._chunks = chunks
        self._head = f"HTTP/1.1 {status} OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
        self._head += "Connection: close\r\n\r\n"
        self._interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.sent = 0
        self.requests = 0
        self.completed = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._loop, daemon=True)
        self._accept.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: Any) -> None:
        with conn:
            conn.settimeout(5.0)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    part = conn.recv(65536)
                    if not part:
                        return
                    data += part
                head, _, rest = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(rest) < length:
                    part = conn.recv(65536)
                    if not part:
                        return
                    rest += part
                with self._lock:
                    self.requests += 1
                conn.sendall(self._head.encode())
                for chunk in self._chunks():
                    if self._stop.is_set():
                        return
                    conn.sendall(chunk)
                    with self._lock:
                        self.sent += len(chunk)
                    if self._interval:
                        self._stop.wait(self._interval)
                self.completed.set()
            except OSError:
                return  # the client went away (as it should, after refusing the answer)

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._accept.join(5)
        for t in self._threads:
            t.join(5)

    def __enter__(self) -> StreamingServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def gzip_bomb_chunks(blocks: int) -> Callable[[], Iterable[bytes]]:
    """A gzip body streamed in ``blocks`` pieces of about 1 KiB, each inflating to
    1 MiB of zeros (no trailer: nobody should read that far)."""
    import zlib

    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    mib = b"\0" * (1024 * 1024)
    first = comp.compress(mib) + comp.flush(zlib.Z_FULL_FLUSH)
    block = comp.compress(mib) + comp.flush(zlib.Z_FULL_FLUSH)

    def chunks() -> Iterable[bytes]:
        yield first
        for _ in range(blocks - 1):
            yield block

    return chunks


class CountingLock:
    """A lock that counts how often it is taken (put in place of a ``_lock``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.taken = 0

    def __enter__(self) -> bool:
        self._lock.acquire()
        self.taken += 1
        return True

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()
