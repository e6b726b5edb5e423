"""The HTTP layer's protocols, written once as generators, and their two drivers.

A flow is a generator that makes every decision itself and yields whenever
it needs I/O: a request to send it through the inner transport (as httpx's
``Auth.auth_flow`` yields requests), or a :class:`Step` for the rest: read
or close an answer's body, sleep on the injected clock. The value (the
answer, the body, ``None``) is sent back into the flow; an exception the I/O
raised is thrown into it at the ``yield``. The flow's return value is the
driver's.

:func:`drive` runs a flow with blocking I/O (``handle_request``, ``read``,
``clock.sleep``) and :func:`adrive` with async I/O (``handle_async_request``,
``aread``, ``clock.asleep``), as httpx's ``sync_auth_flow`` /
``async_auth_flow`` drive ``auth_flow``. Each step type carries its own two
one-line performers, so what differs between the sync and async transports
is exactly those lines. A request is yielded bare, not wrapped in a step:
it is the one I/O of every call, and costs no allocation.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .backend import httpx
    from .clock import Clock

__all__ = ["Close", "Flow", "Read", "Sleep", "Step", "adrive", "drive", "inner_is"]

_T = TypeVar("_T")
_C = TypeVar("_C", bound=type)


class Step:
    """One piece of I/O a flow asks its driver for."""

    __slots__ = ()

    def run(self, inner: Any, clock: Clock) -> Any:  # pragma: no cover - every step overrides
        raise NotImplementedError

    async def arun(self, inner: Any, clock: Clock) -> Any:  # pragma: no cover - as above
        raise NotImplementedError


class Read(Step):
    """Read the whole body of ``response``; the value is the bytes."""

    __slots__ = ("response",)

    def __init__(self, response: httpx.Response) -> None:
        self.response = response

    def run(self, inner: Any, clock: Clock) -> bytes:
        return self.response.read()

    async def arun(self, inner: Any, clock: Clock) -> bytes:
        return await self.response.aread()


class Close(Step):
    """Close ``response`` (release its connection)."""

    __slots__ = ("response",)

    def __init__(self, response: httpx.Response) -> None:
        self.response = response

    def run(self, inner: Any, clock: Clock) -> None:
        self.response.close()

    async def arun(self, inner: Any, clock: Clock) -> None:
        await self.response.aclose()


class Sleep(Step):
    """Sleep ``seconds`` on the injected clock."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def run(self, inner: Any, clock: Clock) -> None:
        clock.sleep(self.seconds)

    async def arun(self, inner: Any, clock: Clock) -> None:
        await clock.asleep(self.seconds)


#: a flow: yields requests to send and other steps, is sent their values, returns its answer
Flow = Generator["httpx.Request | Step", Any, _T]


def drive(flow: Flow[_T], inner: Any, clock: Clock) -> _T:
    """Run ``flow`` to its end with blocking I/O on ``inner`` and ``clock``."""
    try:
        step = flow.send(None)
        while True:
            try:
                if isinstance(step, Step):
                    value = step.run(inner, clock)
                else:  # a request
                    value = inner.handle_request(step)
            except BaseException as exc:  # the flow decides what an error means
                step = flow.throw(exc)
            else:
                step = flow.send(value)
    except StopIteration as stop:  # the flow's return (never one raised by a step)
        return stop.value  # type: ignore[no-any-return]


async def adrive(flow: Flow[_T], inner: Any, clock: Clock) -> _T:
    """Run ``flow`` to its end with async I/O on ``inner`` and ``clock``."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            if isinstance(step, Step):
                value, error = await step.arun(inner, clock), None
            else:  # a request
                value, error = await inner.handle_async_request(step), None
        except BaseException as exc:  # the flow decides what an error means
            value, error = None, exc


def inner_is(annotation: str) -> Callable[[_C], _C]:
    """Class decorator: a twin's signature names its ``inner`` as ``annotation``.

    The twins inherit one ``__init__`` from a base generic in the inner
    transport's type; type checkers see the right type, and this shows it
    to ``inspect.signature`` (and so in the API documentation) too.
    """

    def name(cls: _C) -> _C:
        sig = inspect.signature(cls)
        params = [
            p.replace(annotation=annotation) if p.name == "inner" else p
            for p in sig.parameters.values()
        ]
        cls.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return cls

    return name
