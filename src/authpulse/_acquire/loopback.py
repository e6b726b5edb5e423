"""The one-shot loopback redirect listener of a browser login (RFC 8252 §7.3).

:class:`RedirectListener` listens on ``127.0.0.1`` on a port the system
picks, and takes the first ``GET`` of its path whose ``state`` is the
login's: it answers the browser with a short page and keeps the query.
Anything else (another path, another method, a missing or different
``state``) is answered ``404`` or ``400`` and changes nothing, so a stray
or forged request cannot end the login.
"""

from __future__ import annotations

import hmac
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from pydantic import SecretStr

from .._runtime.http_server import TrackedHTTPServer

__all__ = ["CALLBACK_PATH", "RedirectListener"]

#: the path of the redirect URI
CALLBACK_PATH = "/callback"
_DONE_PAGE = (
    b"<!doctype html><html><head><meta charset='utf-8'><title>Signed in</title></head>"
    b"<body><p>Signed in. You can close this window and go back to the application.</p>"
    b"</body></html>"
)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "authpulse"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing is logged: the request line carries the code and state."""

    def _send(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != self.server.listener.path:
            self._send(404, b"not found\n")
            return
        if not self.server.listener._offer(parts.query):
            self._send(400, b"this is not the answer to the login in progress\n")
            return
        self._send(200, _DONE_PAGE, "text/html; charset=utf-8")

    def do_POST(self) -> None:
        self._send(405, b"method not allowed\n")


class _Server(TrackedHTTPServer):
    listener: RedirectListener


class RedirectListener:
    """Listens for one redirect to ``http://127.0.0.1:{port}{path}``.

    :meth:`open` binds and serves in a thread; :attr:`received` is set once
    the redirect with the right ``state`` came; :meth:`close` stops it (and
    is safe to call more than once).
    """

    host: ClassVar[str] = "127.0.0.1"

    def __init__(self, state: SecretStr, *, path: str = CALLBACK_PATH) -> None:
        #: the redirect URI's path
        self.path = path
        self._state = state.get_secret_value().encode()
        self._lock = threading.Lock()
        self._query: str | None = None
        #: set when the redirect with the login's state came
        self.received = threading.Event()
        self._server: _Server | None = None
        self._port = 0
        self._thread: threading.Thread | None = None
        #: requests refused (wrong path, method or state)
        self.refused = 0

    def __repr__(self) -> str:
        return f"RedirectListener(redirect_uri={self.redirect_uri!r})"

    @property
    def redirect_uri(self) -> str:
        return f"http://{self.host}:{self._port}{self.path}"

    def open(self) -> RedirectListener:
        server = _Server((self.host, 0), _Handler)
        server.listener = self
        self._server = server
        self._port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="authpulse-login-redirect",
            daemon=True,
        )
        self._thread.start()
        return self

    def _offer(self, query: str) -> bool:
        state = dict(parse_qsl(query, keep_blank_values=True)).get("state")
        ok = state is not None and hmac.compare_digest(
            state.encode("utf-8", "replace"), self._state
        )
        with self._lock:
            if not ok or self._query is not None:
                self.refused += 1
                return False
            self._query = query
        self.received.set()
        return True

    def take(self) -> str | None:
        """The redirect's query once it came (``None`` before)."""
        with self._lock:
            return self._query

    def close(self) -> None:
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.drop_connections(1.0)
        if thread is not None:
            thread.join(5.0)
