"""authpulse's clients on httpx2, whatever the default backend.

``Client`` is a ``httpx2.Client`` and ``AsyncClient`` a ``httpx2.AsyncClient`` that carry
a :class:`~authpulse.Session`, with the options of ``authpulse.Client``.
For httpx, see :mod:`authpulse.httpx`.
"""

from ._http.client import Httpx2AsyncClient as AsyncClient
from ._http.client import Httpx2Client as Client

__all__ = ["AsyncClient", "Client"]
