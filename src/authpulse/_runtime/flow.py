"""Protocols written once, driven by a sync and an async driver.

A *flow* is a generator that does no I/O itself: it yields an :class:`Op` for
each step that does (a store call, a token request, a sleep, a hook) and is
sent back that step's result, or has its exception thrown in at the
``yield``. :func:`run_sync` runs each op's ``sync`` side in the calling
thread; :func:`run_async` awaits each op's ``async_`` side. The decisions,
and their order, are the flow's alone, so the two kinds of callers cannot
drift apart (the way httpx's ``Auth.auth_flow`` serves ``Client`` and
``AsyncClient``).

    def greet(name):
        text = yield Op(lambda: load(name), lambda: aload(name))
        return f"hello {text}"

    run_sync(greet("ada"))          # calls load("ada")
    await run_async(greet("ada"))   # awaits aload("ada")

A flow composes others with ``yield from``; a flow's ``return`` value is
what its driver returns.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = [
    "Done",
    "Flow",
    "Op",
    "Relay",
    "advance",
    "call",
    "relay_async",
    "relay_sync",
    "run_async",
    "run_sync",
]

T = TypeVar("T")
R = TypeVar("R")


class Op(Generic[T]):
    """One I/O step of a flow: how to do it in sync code and in async code.

    A plain class, not a dataclass: a refresh builds a dozen of them."""

    __slots__ = ("async_", "sync")

    def __init__(self, sync: Callable[[], T], async_: Callable[[], Awaitable[T]]) -> None:
        self.sync = sync
        self.async_ = async_

    def __repr__(self) -> str:
        return f"Op({self.sync!r}, {self.async_!r})"


#: a flow yields ops, is sent their results, and returns ``R``
Flow = Generator[Op[Any], Any, R]
#: a flow that also yields values of its own to its caller (the auth flow yields requests)
Relay = Generator[Op[Any] | T, Any, None]


def call(op: Op[T]) -> Generator[Op[Any], Any, T]:
    """``result = yield from call(op)``: one step, typed by its op."""
    result: T = yield op
    return result


@dataclass(frozen=True, slots=True)
class Done:
    """A flow's end, with its return value."""

    value: Any


def advance(flow: Generator[Any, Any, Any], value: Any, error: BaseException | None) -> Any | Done:
    """The flow's next step (sent ``value``, or thrown ``error``), or its end.

    For drivers of a :data:`Relay`, which hand its non-op steps to their caller."""
    try:
        return flow.send(value) if error is None else flow.throw(error)
    except StopIteration as stop:
        return Done(stop.value)


def run_sync(flow: Flow[R]) -> R:
    """Run ``flow`` to its end in this thread, doing each op's ``sync`` side."""
    try:
        step: Any = flow.send(None)
    except StopIteration as stop:  # a flow that needed no step (an idle tick, a lookup)
        return stop.value  # type: ignore[no-any-return]
    while isinstance(step, Op):
        try:
            value, error = step.sync(), None
        except BaseException as exc:  # thrown into the flow, which decides
            value, error = None, exc
        step = advance(flow, value, error)
    return step.value  # type: ignore[no-any-return]


async def run_async(flow: Flow[R]) -> R:
    """Run ``flow`` to its end, awaiting each op's ``async_`` side."""
    try:
        step: Any = flow.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    while isinstance(step, Op):
        try:
            value, error = await step.async_(), None
        except BaseException as exc:
            value, error = None, exc
        step = advance(flow, value, error)
    return step.value  # type: ignore[no-any-return]


def relay_sync(flow: Relay[T]) -> Generator[T, Any, None]:
    """Drive a :data:`Relay` from a generator: ops run here, every other step
    is yielded to the caller, which sends its answer back (httpx's sync auth
    flow). Whatever the caller throws in, or a ``close()``, reaches the flow."""
    send, throw = flow.send, flow.throw
    value: Any = None
    error: BaseException | None = None
    while True:  # advance() inlined: this runs for every request
        try:
            step = send(value) if error is None else throw(error)
        except StopIteration:
            return
        try:
            value, error = (step.sync() if isinstance(step, Op) else (yield step)), None
        except BaseException as exc:  # GeneratorExit too: the flow sees it
            value, error = None, exc


async def relay_async(flow: Relay[T]) -> AsyncGenerator[T, Any]:
    """:func:`relay_sync` from an async generator, awaiting each op."""
    send, throw = flow.send, flow.throw
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = send(value) if error is None else throw(error)
        except StopIteration:
            return
        try:
            value, error = (await step.async_() if isinstance(step, Op) else (yield step)), None
        except BaseException as exc:
            value, error = None, exc
