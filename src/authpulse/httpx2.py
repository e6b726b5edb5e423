"""authpulse's clients on httpx2, whatever the default backend.

``authpulse.httpx2.Client`` is an ``httpx2.Client`` (and ``AsyncClient`` an
``httpx2.AsyncClient``) that carries a :class:`~authpulse.Session`; they
take the same arguments as ``authpulse.Client`` / ``AsyncClient``, which
are these classes when httpx2 is the default backend. For httpx, see
:mod:`authpulse.httpx`.
"""

from __future__ import annotations

import httpx2

from ._client import AsyncSessionClientMixin, SessionClientMixin

__all__ = ["AsyncClient", "Client"]


class Client(SessionClientMixin, httpx2.Client):
    """An ``httpx2.Client`` whose requests carry ``session``'s token.

    ``Client(session, *, retry=True, breaker=True, cache=None, **kwargs)``.
    ``Authorization`` goes only to the session's origins, or, if it has
    none, to the origin of ``base_url`` (with neither, to every origin).
    ``retry`` (default on): retries by the rules of
    :class:`~authpulse.RetryPolicy`; ``breaker`` (default on): a circuit
    breaker per API origin; ``cache`` (default off): a
    stale-while-revalidate cache for GET/HEAD, keyed by the session's
    identity. Every other keyword argument goes to ``httpx2.Client``;
    ``transport=``, if given, must be a httpx2 transport.
    """


class AsyncClient(AsyncSessionClientMixin, httpx2.AsyncClient):
    """An ``httpx2.AsyncClient`` whose requests carry ``session``'s token
    (same options as :class:`Client`)."""
