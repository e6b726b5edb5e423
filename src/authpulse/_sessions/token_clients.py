"""The HTTP clients a :class:`~authpulse.Session` asks its token endpoint with."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .._runtime.backend import async_client_for, client_for, httpx

if TYPE_CHECKING:
    from .._runtime.backend import AnyAsyncTransport, AnyTransport

__all__ = ["TokenClients"]


class TokenClients:
    """One ``httpx.Client`` and one ``AsyncClient`` per event loop (an
    ``AsyncClient``'s connections belong to one loop), created on first use,
    over the session's transports (``None``: the backend's default)."""

    __slots__ = ("_ahttp", "_ahttp_loop", "_async_transport", "_http", "_transport")

    def __init__(
        self, transport: AnyTransport | None, async_transport: AnyAsyncTransport | None
    ) -> None:
        self._transport = transport
        self._async_transport = async_transport
        self._http: httpx.Client | None = None
        self._ahttp: httpx.AsyncClient | None = None
        self._ahttp_loop: asyncio.AbstractEventLoop | None = None

    def sync(self) -> httpx.Client:
        if self._http is None:
            self._http = client_for(self._transport, follow_redirects=False)
        return self._http

    def async_(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._ahttp is None or self._ahttp_loop is not loop:
            self._ahttp = async_client_for(self._async_transport, follow_redirects=False)
            self._ahttp_loop = loop
        return self._ahttp

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    async def aclose(self) -> None:
        """Close the async client (the sync one is closed by :meth:`close`)."""
        if self._ahttp is not None:
            await self._ahttp.aclose()
            self._ahttp = None
