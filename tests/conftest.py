from __future__ import annotations

from collections.abc import Iterator

import pytest

from authpulse import SessionManager
from authpulse._sessions.discovery_fetch import metadata_cache
from authpulse.testing import FakeAPI, FakeClock, FakeIdP


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def idp(clock: FakeClock) -> FakeIdP:
    return FakeIdP(clock=clock, access_ttl=600)


@pytest.fixture
def api(idp: FakeIdP) -> FakeAPI:
    return FakeAPI(idp)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def manager(clock: FakeClock, idp: FakeIdP) -> Iterator[SessionManager]:
    """A manager on the fake IdP and clock, shut down after the test."""
    m = SessionManager(
        clock=clock, transport=idp.transport, async_transport=idp.async_transport, seed=1
    )
    yield m
    m.shutdown()


@pytest.fixture
def fresh_metadata_cache() -> Iterator[None]:
    """An empty discovery cache for the test, emptied again after it."""
    metadata_cache.clear()
    yield
    metadata_cache.clear()
