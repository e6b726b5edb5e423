"""Helpers shared by the test modules (not fixtures: plain functions)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import SecretStr

from authpulse import (
    ClientCredentials,
    RefreshPolicy,
    RefreshTokenGrant,
    Session,
    TokenRetry,
    TokenSet,
)
from authpulse._http import httpx
from authpulse.testing import FakeClock, FakeIdP

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
