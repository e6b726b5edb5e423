"""The dashboard's HTTP side: the request handler, its routes and its checks.

``Handler`` answers the page, the JSON API and ``/metrics`` of the
:class:`~authpulse._surfaces.web.dashboard.Dashboard` its server holds; every
answer carries the security headers, errors are JSON, and the two actions
need the admin token.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..._core.errors import AuthpulseError, ConfigurationError, UsageError
from ..._fleet.manager import SessionNotFoundError
from ..._stores.base import StoreError

if TYPE_CHECKING:
    from .dashboard import Dashboard
    from .server import _Server

__all__ = ["Handler", "is_loopback", "load_assets"]

log = logging.getLogger("authpulse.web")

_STATIC: Mapping[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
    "/static/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = (
    ("Content-Security-Policy", _CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
)
_SESSION_PATH = re.compile(r"^/api/sessions/([^/]{1,400})(?:/(refresh|cancel))?$")
_MAX_BODY = 64 * 1024
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def load_assets() -> dict[str, bytes]:
    root = resources.files("authpulse") / "web"
    return {name: (root / name).read_bytes() for name, _ in set(_STATIC.values())}


def is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8080`` -> ``::1``)."""
    header = header.strip()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class _HttpError(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = tuple(headers)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "authpulse-dashboard"
    sys_version = ""
    timeout = 30.0  # an idle keep-alive connection is dropped after this long
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("dashboard %s: " + format, self.address_string(), *args)

    def version_string(self) -> str:
        return self.server_version

    # -- answers -----------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        cache: str = "no-store",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        for name, value in _SECURITY_HEADERS:
            self.send_header(name, value)
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, data: Any, *, headers: Iterable[tuple[str, str]] = ()) -> None:
        body = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
        self._send(status, body, "application/json", headers=headers)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors found by http.server itself (malformed request line, ...), as JSON."""
        self.close_connection = True
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # answer with a status line and headers anyway
        with contextlib.suppress(OSError):
            self._json(code, {"error": "bad_request", "message": message or "bad request"})

    # -- dispatch ----------------------------------------------------------------------

    def _handle(self) -> None:
        try:
            self._drain()
            self._check_host()
            self._route()
        except _HttpError as exc:
            self._json(
                exc.status, {"error": exc.error, "message": exc.message}, headers=exc.headers
            )
        except StoreError as exc:  # the store is down or locked: try again later
            log.warning("dashboard: the store failed (%s)", type(exc).__name__)
            self._json(
                503,
                {"error": "store_unavailable", "message": type(exc).__name__},
                headers=[("Retry-After", "5")],
            )
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:
            log.exception("dashboard: %s %s failed", self.command, self.path.split("?")[0])
            self.close_connection = True
            self._json(500, {"error": "internal", "message": type(exc).__name__})

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle  # noqa: N815

    def _check_host(self) -> None:
        if not self.server.loopback_only:
            return
        host = self.headers.get("Host")
        if host is not None and not is_loopback(_host_name(host)):
            # a page on another site whose name resolves to 127.0.0.1 (DNS rebinding)
            raise _HttpError(403, "forbidden_host", "this dashboard answers only to localhost")

    def _route(self) -> None:
        target = urlsplit(self.path)
        path, query = target.path, target.query
        if not path.startswith("/"):
            raise _HttpError(400, "bad_request", "the request target must be a path")
        if path in _STATIC:
            self._only("GET", "HEAD", query=query)
            name, content_type = _STATIC[path]
            self._send(200, self.server.assets[name], content_type, cache="no-cache")
            return
        dashboard = self.server.dashboard
        if path == "/api/sessions":
            self._only("GET", "HEAD")
            self._json(200, self._list(dashboard, query))
            return
        if path == "/api/health":
            self._only("GET", "HEAD", query=query)
            data = dashboard.summary()
            data["admin_enabled"] = self.server.admin_token is not None
            self._json(200, data)
            return
        if path == "/metrics":
            self._only("GET", "HEAD", query=query)
            self._send(200, dashboard.metrics().encode(), _METRICS_TYPE)
            return
        m = _SESSION_PATH.match(path)
        if m is None:
            raise _HttpError(404, "not_found", "no such page or endpoint")
        try:
            session_id, action = unquote(m.group(1), errors="strict"), m.group(2)
        except UnicodeDecodeError:
            raise _HttpError(404, "not_found", "no such session") from None
        if action is None:
            self._only("GET", "HEAD", query=query)
            self._json(200, self._call(lambda: dashboard.session(session_id), session_id))
            return
        self._only("POST", query=query)
        self._authorize()
        run = dashboard.refresh if action == "refresh" else dashboard.cancel
        self._json(200, self._call(lambda: run(session_id), session_id))

    def _only(self, *methods: str, query: str | None = None) -> None:
        if self.command not in methods:
            raise _HttpError(
                405,
                "method_not_allowed",
                f"{self.command} is not allowed here; use {' or '.join(methods)}",
                headers=[("Allow", ", ".join(methods))],
            )
        if query:
            raise _HttpError(400, "bad_request", "this endpoint takes no query parameters")

    def _list(self, dashboard: Dashboard, query: str) -> dict[str, Any]:
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
        except ValueError:
            raise _HttpError(400, "bad_request", "malformed query string") from None
        params: dict[str, list[str]] = {}
        for k, v in pairs:
            params.setdefault(k, []).append(v)
        unknown = sorted(set(params) - {"status", "limit", "offset"})
        if unknown:
            raise _HttpError(
                400, "bad_request", "unknown query parameter; allowed: status, limit, offset"
            )
        if len(params.get("limit", ())) > 1 or len(params.get("offset", ())) > 1:
            raise _HttpError(400, "bad_request", "limit and offset may be given once")
        try:
            limit = int(params["limit"][0]) if "limit" in params else 200
            offset = int(params["offset"][0]) if "offset" in params else 0
        except ValueError:
            raise _HttpError(400, "bad_request", "limit and offset must be integers") from None
        statuses = [s for v in params.get("status", ()) for s in v.split(",") if s] or None
        try:
            return dashboard.sessions(status=statuses, limit=limit, offset=offset)
        except ConfigurationError as exc:
            raise _HttpError(400, "bad_request", str(exc)) from None

    def _call(self, fn: Callable[[], dict[str, Any]], session_id: str) -> dict[str, Any]:
        try:
            return fn()
        except SessionNotFoundError:
            shown = session_id if len(session_id) <= 128 else session_id[:128] + "…"
            raise _HttpError(404, "not_found", f"no session with id {shown!r}") from None
        except UsageError as exc:
            raise _HttpError(409, "conflict", str(exc)) from None
        except StoreError:
            raise
        except AuthpulseError as exc:
            cls = getattr(exc, "error_class", None)
            raise _HttpError(
                502,
                "refresh_failed",
                f"{type(exc).__name__}"
                + (f" ({getattr(cls, 'value', cls)})" if cls is not None else ""),
            ) from None

    def _drain(self) -> None:
        """Read (and ignore) a request body, so the connection can serve the next
        request; nothing here takes a body."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise _HttpError(411, "length_required", "send a Content-Length, not chunks")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise _HttpError(400, "bad_request", "bad Content-Length") from None
        if length < 0 or length > _MAX_BODY:
            self.close_connection = True
            raise _HttpError(413, "too_large", "request body too large")
        if length:
            self.rfile.read(length)

    def _authorize(self) -> None:
        expected = self.server.admin_token
        if expected is None:
            raise _HttpError(
                403,
                "admin_disabled",
                "admin actions are off: start the dashboard with an admin token",
            )
        origin = self.headers.get("Origin")
        host = self.headers.get("Host")
        if origin is not None and host is not None and urlsplit(origin).netloc != host:
            raise _HttpError(403, "forbidden_origin", "cross-origin actions are refused")
        scheme, _, given = (self.headers.get("Authorization") or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            given.strip().encode(), expected.encode()
        ):
            raise _HttpError(
                401,
                "unauthorized",
                "a valid admin token is needed: Authorization: Bearer <token>",
                headers=[("WWW-Authenticate", 'Bearer realm="authpulse"')],
            )
