"""Heartbeat probes: a callable that says whether a managed session is healthy,
:class:`HttpProbe`, a cheap authenticated request, or
:class:`~.introspection.IntrospectionProbe`, the IdP's word on the token. Sync or async.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from .._runtime.backend import async_client_for, check_endpoint_url, client_for
from .._sessions.sources import run_coroutine_blocking
from .introspection import IntrospectionProbe

if TYPE_CHECKING:
    from .._runtime.backend import AnyAsyncTransport, AnyTransport
    from .manager import ManagedSession

__all__ = ["HttpProbe", "Probe", "probe_async", "probe_sync"]

#: A heartbeat probe: called with the managed session, returns True if healthy.
#: Sync or async. Raising counts as a failed heartbeat.
Probe = Callable[["ManagedSession"], bool] | Callable[["ManagedSession"], Awaitable[bool]]


class HttpProbe:
    """A heartbeat that makes a cheap authenticated request.

    Healthy when the answer's status is below 400 (``ok_statuses`` to change
    that). The request goes through the session's own auth, so a 401 is
    refreshed and replayed like any other call. It carries the access token,
    so ``url`` must be ``https://`` (or ``http://`` to a loopback host, or
    any host with ``allow_insecure_http=True``).
    """

    def __init__(
        self,
        url: str,
        *,
        method: str = "GET",
        timeout: float = 10.0,
        transport: AnyTransport | None = None,
        async_transport: AnyAsyncTransport | None = None,
        ok_statuses: Iterable[int] | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        # the probe carries the session's access token: https, or http to loopback
        self.url = check_endpoint_url(
            url, what="HttpProbe url", allow_insecure_http=allow_insecure_http is True
        )
        self.method = method
        self.timeout = timeout
        self._transport = transport
        self._async_transport = async_transport
        self._ok = frozenset(ok_statuses) if ok_statuses is not None else None

    def __repr__(self) -> str:
        return f"HttpProbe({self.method} {self.url})"

    def _good(self, status: int) -> bool:
        return status in self._ok if self._ok is not None else status < 400

    def __call__(self, ms: ManagedSession) -> bool:
        with client_for(
            self._transport,
            timeout=self.timeout,
            auth=ms.session.auth(origins=[self.url]),
        ) as c:
            return self._good(c.request(self.method, self.url).status_code)

    async def acall(self, ms: ManagedSession) -> bool:
        async with async_client_for(
            self._async_transport,
            timeout=self.timeout,
            auth=ms.session.auth(origins=[self.url]),
        ) as c:
            return self._good((await c.request(self.method, self.url)).status_code)


def probe_sync(probe: Probe, ms: ManagedSession) -> bool:
    if isinstance(probe, HttpProbe | IntrospectionProbe):
        return probe(ms)
    if inspect.iscoroutinefunction(probe):
        return bool(run_coroutine_blocking(probe, ms))
    return bool(probe(ms))


async def probe_async(probe: Probe, ms: ManagedSession) -> bool:
    if isinstance(probe, HttpProbe | IntrospectionProbe):
        return await probe.acall(ms)
    r = probe(ms)
    return bool(await r) if inspect.isawaitable(r) else bool(r)


# The public names defined here show the module they are imported from.
for _public in (HttpProbe,):
    _public.__module__ = "authpulse"
del _public
