"""The flow drivers: one generator, run by a sync and an async driver."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from authpulse import UsageError
from authpulse._runtime.flow import Op, call, run_async, run_sync


def _value(sync_value: Any, async_value: Any) -> Op[Any]:
    async def later() -> Any:
        return async_value

    return Op(lambda: sync_value, later)


def _failing(exc: BaseException) -> Op[Any]:
    def now() -> Any:
        raise exc

    async def later() -> Any:
        raise exc

    return Op(now, later)


def adder(log: list[str]) -> Generator[Op[Any], Any, int]:
    a = yield _value(1, 10)
    log.append(f"a={a}")
    b = yield from call(_value(2, 20))
    log.append(f"b={b}")
    return int(a + b)


def test_run_sync_does_the_sync_side_and_returns_the_flows_value() -> None:
    log: list[str] = []
    assert run_sync(adder(log)) == 3
    assert log == ["a=1", "b=2"]


@pytest.mark.anyio
async def test_run_async_awaits_the_async_side() -> None:
    log: list[str] = []
    assert await run_async(adder(log)) == 30
    assert log == ["a=10", "b=20"]


def recovering(seen: list[BaseException]) -> Generator[Op[Any], Any, str]:
    try:
        yield _failing(UsageError("step failed"))
    except UsageError as exc:
        seen.append(exc)
    again = yield _value("sync", "async")
    return str(again)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_an_ops_error_is_thrown_into_the_flow_at_its_yield(mode: str) -> None:
    seen: list[BaseException] = []
    result = await drive(recovering(seen), mode)
    assert result == mode
    assert [str(e) for e in seen] == ["step failed"]


def unhandled(cleanups: list[str]) -> Generator[Op[Any], Any, None]:
    try:
        yield _failing(UsageError("nobody handles this"))
    finally:
        cleanups.append("cleanup")
        yield _value(None, None)  # a cleanup step still runs through the driver


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_an_unhandled_error_leaves_the_flow_after_its_cleanup_steps(mode: str) -> None:
    cleanups: list[str] = []
    with pytest.raises(UsageError, match="nobody handles this"):
        await drive(unhandled(cleanups), mode)
    assert cleanups == ["cleanup"]


async def drive(flow: Generator[Op[Any], Any, Any], mode: str) -> Any:
    return run_sync(flow) if mode == "sync" else await run_async(flow)
