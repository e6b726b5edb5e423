"""Serve a fake over real HTTP on the loopback interface.

The fakes answer ``httpx.Request`` objects in-process (``MockTransport``).
:class:`LoopbackServer` puts one of them behind a real socket, so that
other *processes* can reach it: a test that forks workers keeps the IdP's
state (issued and used refresh tokens, counters) in the parent, and the
workers talk to it over HTTP exactly as they would to a real IdP.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from .._runtime.backend import httpx
from .._runtime.http_server import TrackedHTTPServer

__all__ = ["LoopbackServer"]

log = logging.getLogger("authpulse.testing")

#: headers that describe one hop or the body's encoding on the wire: the
#: server sets its own (the body is sent decoded, with its own length)
_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "proxy-connection",
        "upgrade",
        "te",
        "trailer",
    }
)
#: the largest request body read (the fakes never need more)
_MAX_BODY = 16 * 1024 * 1024


class App(Protocol):
    """What a :class:`LoopbackServer` serves: ``FakeIdP``, ``FakeAPI`` or your own."""

    def handle(self, request: httpx.Request) -> httpx.Response: ...


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connections
    disable_nagle_algorithm = True  # headers and body are separate writes
    timeout = 120.0  # an idle keep-alive connection is dropped after this long
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("loopback %s: " + format, self.server.url, *args)

    def _body(self) -> bytes | None:
        """The request body, or ``None`` if it cannot be read (connection dropped)."""
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            size = 0
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    return None
                length = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                size += length
                if size > _MAX_BODY:
                    return None
                parts.append(self.rfile.read(length))
                self.rfile.readline(1024)
        length = int(self.headers.get("content-length") or 0)
        if length > _MAX_BODY:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        try:
            body = self._body()
        except ValueError:
            body = None
        if body is None:
            self.send_error(400, "unreadable request body")
            return
        host = self.headers.get("host") or f"127.0.0.1:{self.server.port}"
        request = httpx.Request(
            self.command,
            f"http://{host}{self.path}",
            headers=[(k, v) for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS],
            content=body,
        )
        app = self.server.app
        try:
            if app is None:
                response = httpx.Response(503, text="no app is mounted on this server")
            else:
                response = app.handle(request)
            content = response.read()
        except httpx.TransportError:
            # a scripted network fault (Fault.refused(), Fault.timeout()): the
            # client sees the connection closed without an answer
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        except Exception as exc:
            log.exception("loopback %s: the app raised", self.server.url)
            response = httpx.Response(500, text=f"the app raised {type(exc).__name__}")
            content = response.read()
        # send_response_only: no Server or Date header of our own (a fake IdP
        # sends its Date from its own clock, and clients estimate skew from it)
        self.send_response_only(response.status_code, response.reason_phrase or None)
        for name, value in response.headers.multi_items():
            if name.lower() not in _HOP_HEADERS:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and content:
            self.wfile.write(content)

    # http.server dispatches on these names
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve  # noqa: N815


class _Server(TrackedHTTPServer):
    request_queue_size = 1024  # a burst of new connections must not overflow the backlog

    def __init__(self, address: tuple[str, int], app: App | None) -> None:
        self.app = app
        super().__init__(address, _Handler)
        self.port: int = self.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that went away (a killed worker, a closed pool) is not an error here
        log.debug("loopback %s: connection from %s ended badly", self.url, client_address)


class LoopbackServer:
    """Serve ``app`` (anything with ``handle(httpx.Request) -> httpx.Response``,
    such as :class:`FakeIdP` or :class:`FakeAPI`) over HTTP on 127.0.0.1.

    The port is picked (a free one, unless ``port`` is given) and the server
    started in a background thread when the object is made; :attr:`url` is
    ``http://127.0.0.1:<port>``. Each connection gets its own thread, so a
    slow answer (``FakeIdP(latency=...)``) does not hold up the others.
    A fault that raises (``Fault.refused()``, ``Fault.timeout()``) closes
    the connection without an answer.

    ``app`` may be given later (``server.app = ...``): the port is known
    first, so an IdP can be made with ``issuer=server.url``::

        with LoopbackServer() as server:
            idp = FakeIdP(issuer=server.url)
            server.app = idp
            ...  # other processes use idp.token_url

    (Setting ``idp.issuer = server.url`` on an existing IdP does the same.)
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, app: App | None = None, *, port: int = 0) -> None:
        if app is not None and not callable(getattr(app, "handle", None)):
            raise TypeError("app must have a handle(httpx.Request) -> httpx.Response method")
        self._server = _Server(("127.0.0.1", port), app)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"authpulse-loopback-{self._server.port}",
            daemon=True,
        )
        self._closed = False
        self._thread.start()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "serving"
        return f"LoopbackServer({self.url!r}, {state}, app={type(self.app).__name__})"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, without a trailing slash."""
        return self._server.url

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def app(self) -> App | None:
        """What the server answers with (``None``: every request gets a 503)."""
        return self._server.app

    @app.setter
    def app(self, app: App | None) -> None:
        if app is not None and not callable(getattr(app, "handle", None)):
            raise TypeError("app must have a handle(httpx.Request) -> httpx.Response method")
        self._server.app = app

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, drop open connections, wait up to ``timeout`` seconds for
        requests in progress. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._thread.join(timeout)
        self._server.drop_connections(timeout)
        self._server.server_close()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# The public names defined here show the module they are imported from.
for _public in (LoopbackServer,):
    _public.__module__ = "authpulse.testing"
del _public
