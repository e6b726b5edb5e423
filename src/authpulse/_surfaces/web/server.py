"""The dashboard's server: :class:`DashboardServer` (a ``ThreadingHTTPServer`` in a
background thread, with an optional health sampler) and :func:`serve`, what
``authpulse serve`` runs."""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
from typing import Any

from ..._core.errors import ConfigurationError
from ..._fleet.manager import SessionManager
from ..._runtime.clock import Clock
from ..._runtime.http_server import TrackedHTTPServer
from ..._stores.base import SessionStore
from ..._stores.open import open_store
from .dashboard import Dashboard
from .http import Handler, is_loopback, load_assets

__all__ = ["DashboardServer", "serve"]

log = logging.getLogger("authpulse.web")

_MIN_ADMIN_TOKEN = 16


class _Server(TrackedHTTPServer):
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        dashboard: Dashboard,
        admin_token: str | None,
        assets: dict[str, bytes],
    ) -> None:
        self.dashboard = dashboard
        self.admin_token = admin_token
        self.assets = assets
        self.loopback_only = is_loopback(address[0])
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("dashboard: connection from %s ended badly", client_address, exc_info=True)


def _check_admin_token(token: str | None) -> str | None:
    if token is None:
        return None
    if not isinstance(token, str):
        raise ConfigurationError("admin_token must be a string")
    if len(token) < _MIN_ADMIN_TOKEN or any(c.isspace() or not c.isprintable() for c in token):
        raise ConfigurationError(
            f"admin_token must be at least {_MIN_ADMIN_TOKEN} printable characters without "
            "spaces (for example: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token


class DashboardServer:
    """Serve a dashboard over HTTP from a background thread.

    ``manager`` is a :class:`SessionManager` (or a ready :class:`Dashboard`);
    ``store`` adds a store's sessions (alone: a store-only dashboard).
    ``port=0`` picks a free port; :attr:`url` says which. ``admin_token``
    turns on the refresh and cancel actions. ``sample_interval`` (real
    seconds, ``None``: off) takes a health sample of every open session on
    a timer, so the history chart fills in while no page is open.

    >>> with DashboardServer(manager, admin_token=token) as server:
    ...     print(server.url)
    """

    def __init__(
        self,
        manager: SessionManager | Dashboard | None = None,
        *,
        store: SessionStore | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        admin_token: str | None = None,
        clock: Clock | None = None,
        sample_interval: float | None = 5.0,
    ) -> None:
        if isinstance(manager, Dashboard):
            if store is not None or clock is not None:
                raise ConfigurationError("pass store= and clock= to the Dashboard, not here")
            dashboard = manager
        else:
            dashboard = Dashboard(manager, store=store, clock=clock)
        if not isinstance(host, str) or not host:
            raise ConfigurationError("host must be a host name or an IP address")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigurationError("port must be an integer from 0 to 65535")
        if sample_interval is not None and not (
            isinstance(sample_interval, int | float) and sample_interval > 0
        ):
            raise ConfigurationError("sample_interval must be a positive number or None")
        self.dashboard = dashboard
        self.admin_token = _check_admin_token(admin_token)
        try:
            self._server = _Server((host, port), dashboard, self.admin_token, load_assets())
        except OSError as exc:
            raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        bound_host, bound_port = self._server.server_address[:2]
        self.host = str(bound_host)
        self.port: int = int(bound_port)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}"
        self._closed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"authpulse-dashboard-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._sampler: threading.Thread | None = None
        if sample_interval is not None:
            self._sampler = threading.Thread(
                target=self._sample_loop,
                args=(float(sample_interval),),
                name=f"authpulse-dashboard-sampler-{self.port}",
                daemon=True,
            )
            self._sampler.start()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "serving"
        admin = "admin on" if self.admin_token else "admin off"
        return f"<DashboardServer {self.url} {state}, {admin}>"

    def _sample_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.dashboard.sample()
            except Exception:  # a sample must never stop the server
                log.exception("dashboard: health sampling failed")

    @property
    def closed(self) -> bool:
        return self._closed

    def wait(self, timeout: float | None = None) -> None:
        """Block until the server stops (or ``timeout`` seconds pass)."""
        self._thread.join(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving, drop open connections, stop the sampler. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._server.shutdown()
        self._thread.join(timeout)
        self._server.drop_connections(timeout)
        self._server.server_close()
        if self._sampler is not None:
            self._sampler.join(timeout)

    def __enter__(self) -> DashboardServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    store_url: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    admin_token: str | None = None,
) -> None:
    """Serve the dashboard of the sessions in the store at ``store_url`` until
    interrupted (Ctrl-C). What ``authpulse serve`` runs.

    Sessions found only in the store get a health estimate from their record
    and stored token; refresh and cancel need the session's own process.
    """
    admin_token = _check_admin_token(admin_token)
    store = open_store(store_url)
    try:
        with DashboardServer(
            Dashboard(store=store), host=host, port=port, admin_token=admin_token
        ) as server:
            admin = "on" if admin_token else "off: no admin token"
            print(f"authpulse dashboard: {server.url}/  (admin actions {admin})", flush=True)
            if not is_loopback(server.host):
                print(
                    f"warning: listening on {server.host}: anyone who can reach this port "
                    "can read the sessions' health",
                    file=sys.stderr,
                    flush=True,
                )
            with contextlib.suppress(KeyboardInterrupt):
                while not server.closed:
                    server.wait(0.5)
    finally:
        store.close()


# The public names defined here show the module they are imported from.
for _public in (DashboardServer,):
    _public.__module__ = "authpulse"
del _public
