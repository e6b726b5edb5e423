"""authpulse's clients on httpx, whatever the default backend.

``Client`` is a ``httpx.Client`` and ``AsyncClient`` a ``httpx.AsyncClient`` that carry
a :class:`~authpulse.Session`, with the options of ``authpulse.Client``.
For httpx2, see :mod:`authpulse.httpx2`.
"""

from ._http.client import HttpxAsyncClient as AsyncClient
from ._http.client import HttpxClient as Client

__all__ = ["AsyncClient", "Client"]
