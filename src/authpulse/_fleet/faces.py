"""The two faces of a manager flow: :func:`sync_method` drives it with the sync
store API, :func:`async_method` awaits every step. ``SessionManager`` binds each
of its protocols (``lifecycle``, ``worker``) with one or both.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from .flow import Flow, adrive, drive

if TYPE_CHECKING:
    from .manager import SessionManager

__all__ = ["async_method", "sync_method"]

_T = TypeVar("_T")
_P = ParamSpec("_P")


def sync_method(
    flow: Callable[Concatenate[SessionManager, _P], Flow[_T]], name: str | None = None
) -> Callable[Concatenate[SessionManager, _P], _T]:
    """The sync method ``name`` of a manager flow: every step made with the sync
    store API."""

    @functools.wraps(flow)
    def method(self: SessionManager, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return drive(flow(self, *args, **kwargs))

    method.__name__ = name or flow.__name__.lstrip("_")
    method.__qualname__ = f"SessionManager.{method.__name__}"
    return method


def async_method(
    flow: Callable[Concatenate[SessionManager, _P], Flow[_T]], name: str | None = None
) -> Callable[Concatenate[SessionManager, _P], Awaitable[_T]]:
    """The awaited method of a manager flow: every step awaited, so the event loop
    never waits on the store. Session events queued before it (by awaited
    refreshes) are handled first, and those it causes before it returns."""

    @functools.wraps(flow)
    async def method(self: SessionManager, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        await self._lanes.settle()
        try:
            return await adrive(flow(self, *args, **kwargs))
        finally:
            await self._lanes.settle()

    name = name or flow.__name__.lstrip("_")
    method.__name__ = "a" + name
    method.__qualname__ = f"SessionManager.a{name}"
    method.__doc__ = f"Awaited :meth:`{name}`: the same steps, the store I/O awaited."
    return method
