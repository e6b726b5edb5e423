"""authpulse's clients on httpx, whatever the default backend.

``authpulse.httpx.Client`` is an ``httpx.Client`` (and ``AsyncClient`` an
``httpx.AsyncClient``) that carries a :class:`~authpulse.Session`; they
take the same arguments as ``authpulse.Client`` / ``AsyncClient``, which
are these classes when httpx is the default backend. For httpx2, see
:mod:`authpulse.httpx2`.
"""

from __future__ import annotations

import httpx

from ._client import AsyncSessionClientMixin, SessionClientMixin

__all__ = ["AsyncClient", "Client"]


class Client(SessionClientMixin, httpx.Client):
    """An ``httpx.Client`` whose requests carry ``session``'s token.

    ``Client(session, *, retry=True, breaker=True, cache=None, **kwargs)``.
    ``Authorization`` goes only to the session's origins, or, if it has
    none, to the origin of ``base_url`` (with neither, to every origin).
    ``retry`` (default on): retries by the rules of
    :class:`~authpulse.RetryPolicy`; ``breaker`` (default on): a circuit
    breaker per API origin; ``cache`` (default off): a
    stale-while-revalidate cache for GET/HEAD, keyed by the session's
    identity. Every other keyword argument goes to ``httpx.Client``;
    ``transport=``, if given, must be a httpx transport.
    """


class AsyncClient(AsyncSessionClientMixin, httpx.AsyncClient):
    """An ``httpx.AsyncClient`` whose requests carry ``session``'s token
    (same options as :class:`Client`)."""
