from __future__ import annotations

import pytest

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
