"""The HTTP flows' two drivers: one generator, the same outcome sync and async."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from authpulse import AsyncRetryTransport, RetryPolicy, RetryTransport
from authpulse._runtime.backend import httpx
from authpulse._runtime.flow_http import Close, Flow, Read, Sleep, adrive, drive
from authpulse.testing import FakeClock

URL = "https://api.test/items"


def run(mode: str, flow: Flow[Any], inner: Any, clock: FakeClock) -> Any:
    if mode == "sync":
        return drive(flow, inner, clock)
    return asyncio.run(adrive(flow, inner, clock))


def every_step(request: httpx.Request) -> Flow[tuple[int, bytes, bool]]:
    response = yield request
    body = yield Read(response)
    yield Sleep(2.5)
    yield Close(response)
    return response.status_code, body, response.is_closed


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_each_step_is_performed_and_its_value_sent_back(mode: str) -> None:
    clock = FakeClock()
    inner = httpx.MockTransport(lambda request: httpx.Response(201, content=b"made"))
    outcome = run(mode, every_step(httpx.Request("GET", URL)), inner, clock)
    assert outcome == (201, b"made", True)
    assert clock.sleeps == [2.5]


def recovers(request: httpx.Request) -> Flow[str]:
    try:
        yield request
    except httpx.ConnectError as exc:
        return f"caught {type(exc).__name__}"
    return "not reached"


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused", request=request)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_error_of_a_step_is_thrown_into_the_flow_at_its_yield(mode: str) -> None:
    outcome = run(
        mode, recovers(httpx.Request("GET", URL)), httpx.MockTransport(refuse), FakeClock()
    )
    assert outcome == "caught ConnectError"


class BoomError(Exception):
    pass


def fails(request: httpx.Request) -> Flow[None]:
    yield Sleep(1)
    raise BoomError


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_flows_own_error_ends_the_drive(mode: str) -> None:
    with pytest.raises(BoomError):
        run(mode, fails(httpx.Request("GET", URL)), None, FakeClock())


class Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    def __init__(self) -> None:
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield b"{}"

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"{}"

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


class Stop(BaseException):
    """Stands for an interrupt arriving while the call waits to retry."""


class StoppingClock(FakeClock):
    def __init__(self) -> None:
        super().__init__()
        self.waiting: asyncio.Event | None = None

    def sleep(self, seconds: float) -> None:
        raise Stop

    async def asleep(self, seconds: float) -> None:
        assert self.waiting is not None
        self.waiting.set()
        await asyncio.Event().wait()  # until cancelled


def test_an_interrupted_retry_wait_still_closes_the_answer_being_retried() -> None:
    bodies: list[Body] = []

    def unavailable(request: httpx.Request) -> httpx.Response:
        bodies.append(Body())
        return httpx.Response(503, stream=bodies[-1])

    retry = RetryTransport(
        httpx.MockTransport(unavailable), policy=RetryPolicy(), clock=StoppingClock()
    )
    with pytest.raises(Stop):
        retry.handle_request(httpx.Request("GET", URL))
    assert len(bodies) == 1
    assert bodies[0].closed


@pytest.mark.anyio
async def test_a_cancelled_retry_wait_still_closes_the_answer_being_retried() -> None:
    bodies: list[Body] = []

    def unavailable(request: httpx.Request) -> httpx.Response:
        bodies.append(Body())
        return httpx.Response(503, stream=bodies[-1])

    clock = StoppingClock()
    clock.waiting = asyncio.Event()
    retry = AsyncRetryTransport(httpx.MockTransport(unavailable), policy=RetryPolicy(), clock=clock)
    task = asyncio.ensure_future(retry.handle_async_request(httpx.Request("GET", URL)))
    await clock.waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(bodies) == 1
    assert bodies[0].closed
