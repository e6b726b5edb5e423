"""The web health dashboard: one page, a few JSON endpoints and ``/metrics``.

Standard library only (``http.server``); the page (``authpulse/web/``) is
plain HTML, CSS and JavaScript served from the package — no framework, no
build step, nothing fetched from elsewhere.

- :class:`Dashboard` turns a :class:`SessionManager` (sessions live in this
  process: real health, refresh and cancel) and/or a store (sessions of
  other processes: records, timelines and a health estimate from the stored
  record and token) into JSON-ready dicts and Prometheus text. It keeps a
  small ring of health samples per session for the history chart.
- :class:`DashboardServer` serves a dashboard on a ``ThreadingHTTPServer``
  in a background thread (tests, or embedding in an application).
- :func:`serve` is what ``authpulse serve`` runs: a store URL, a blocking
  server, Ctrl-C to stop.

Modules: :mod:`.dashboard` (the facade), :mod:`.views` (what is known about a
session, and the history ring), :mod:`.rows` (the JSON), :mod:`.exposition`
(``/metrics``), :mod:`.http` (the request handler) and :mod:`.server`.

Reads are open to whoever can reach the port (bound to 127.0.0.1 by
default, with a ``Host`` check against DNS rebinding); the two actions,
``POST /api/sessions/{id}/refresh`` and ``/cancel``, need
``Authorization: Bearer <admin_token>`` and are off (403) without one. No
response ever carries a token or a secret.
"""

from __future__ import annotations

from .dashboard import BAND_COLOURS, Dashboard
from .server import DashboardServer, serve

__all__ = ["BAND_COLOURS", "Dashboard", "DashboardServer", "serve"]
