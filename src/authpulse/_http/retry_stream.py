"""The body of the answer a retry transport returns, read within the call's deadline."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from .._runtime.backend import bases

if TYPE_CHECKING:
    from .retry_call import _Call

_SyncStreamBase, _Sync2StreamBase = bases("SyncByteStream")
_AsyncStreamBase, _Async2StreamBase = bases("AsyncByteStream")


class _DeadlineStream:
    """The returned answer's body, read within the call's deadline.

    A server that trickles a body a few bytes at a time never trips a read
    timeout; the deadline is checked between chunks, and each read is bounded
    by its timeout (cut to what the deadline left when the attempt began).
    """

    __slots__ = ("_call", "_inner")

    def __init__(self, inner: Any, call: _Call) -> None:
        self._inner = inner
        self._call = call


class _SyncDeadlineStream(_DeadlineStream, _SyncStreamBase, _Sync2StreamBase):  # type: ignore[misc,valid-type]
    __slots__ = ()

    def __iter__(self) -> Iterator[bytes]:
        clock, deadline = self._call.clock, self._call.deadline
        for chunk in self._inner:
            if clock.monotonic() >= deadline:
                raise self._call.late()
            yield chunk

    def close(self) -> None:
        self._inner.close()


class _AsyncDeadlineStream(_DeadlineStream, _AsyncStreamBase, _Async2StreamBase):  # type: ignore[misc,valid-type]
    __slots__ = ()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        clock, deadline = self._call.clock, self._call.deadline
        async for chunk in self._inner:
            if clock.monotonic() >= deadline:
                raise self._call.late()
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()
