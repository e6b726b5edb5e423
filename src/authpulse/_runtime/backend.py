"""The one place where authpulse imports its HTTP library: httpx or httpx2.

authpulse runs on httpx (0.27, 0.28) and on httpx2 (the maintained fork,
which keeps httpx's API under the name ``httpx2``) — and on both at once,
in one process. Every other module writes ``from ._http import httpx`` and
gets the *default backend*:

- the one named by ``AUTHPULSE_HTTP_BACKEND`` (``httpx`` or ``httpx2``) when set;
- otherwise httpx if it is installed, else httpx2.

The default backend is what authpulse builds when nothing says otherwise:
``authpulse.Client`` / ``AsyncClient``, a session's own token client, the
fakes' transports. ``authpulse.httpx.Client`` / ``authpulse.httpx2.Client``
choose one explicitly.

Objects that may come from either library (requests, responses, URLs,
exceptions) are never checked against one library's classes: the tuples
below (``URL_TYPES``, ``TRANSPORT_ERRORS``, ...) hold the class of every
installed backend, and :func:`backend_of` finds the library an object
belongs to, so that an answer is built with the same one. authpulse's own
auth and transports derive from the class of every installed backend
(:func:`bases`), so both libraries' clients accept them.

Typing: httpx2 keeps httpx's API, so the rest of authpulse is type-checked
against httpx's classes — statically ``httpx`` below *is* the httpx module,
and at run time it is the default backend's. That equivalence is stated
once, here (:class:`HttpModule`, the tuples); the public classes that a
user hands to either library's client (``SessionAuth``, the transports)
are typed as both.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
from collections.abc import Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, cast

if TYPE_CHECKING:
    import httpx
    import httpx2
    from httpx import AsyncBaseTransport as HttpxAsyncBaseTransport
    from httpx import Auth as HttpxAuth
    from httpx import BaseTransport as HttpxBaseTransport
    from httpx2 import AsyncBaseTransport as Httpx2AsyncBaseTransport
    from httpx2 import Auth as Httpx2Auth
    from httpx2 import BaseTransport as Httpx2BaseTransport

__all__ = [
    "BACKENDS",
    "BACKEND_ENV",
    "BACKEND_NAMES",
    "BYTE_STREAM_TYPES",
    "DEFAULT_BACKEND",
    "INVALID_URL_ERRORS",
    "REQUEST_ERRORS",
    "REQUEST_NOT_READ_ERRORS",
    "RESPONSE_TYPES",
    "TIMEOUT_ERRORS",
    "TRANSPORT_ERRORS",
    "URL_TYPES",
    "AnyAsyncTransport",
    "AnyTransport",
    "BackendName",
    "HttpModule",
    "Httpx2AsyncBaseTransport",
    "Httpx2Auth",
    "Httpx2BaseTransport",
    "HttpxAsyncBaseTransport",
    "HttpxAuth",
    "HttpxBaseTransport",
    "TransportErrorBase",
    "as_url",
    "async_client_for",
    "backend",
    "backend_for",
    "backend_of",
    "bases",
    "check_endpoint_url",
    "client_for",
    "endpoint_label",
    "every",
    "httpx",
    "origin_of",
    "parse_origins",
]

BackendName = Literal["httpx", "httpx2"]
#: the HTTP libraries authpulse runs on, in the order the default is picked
BACKEND_NAMES: Final[tuple[BackendName, ...]] = ("httpx", "httpx2")
#: the environment variable that picks the default backend
BACKEND_ENV: Final = "AUTHPULSE_HTTP_BACKEND"

Origin = tuple[str, str, int | None]

if TYPE_CHECKING:
    #: a transport of either backend, where authpulse takes one from the user
    AnyTransport = httpx.BaseTransport | httpx2.BaseTransport
    AnyAsyncTransport = httpx.AsyncBaseTransport | httpx2.AsyncBaseTransport


class HttpModule(Protocol):
    """What authpulse builds with from an HTTP library's namespace.

    The ``httpx`` and ``httpx2`` modules both fit (typed with httpx's
    classes: httpx2 keeps the same API).
    """

    __name__: str
    Request: type[httpx.Request]
    Response: type[httpx.Response]
    Headers: type[httpx.Headers]
    URL: type[httpx.URL]
    Client: type[httpx.Client]
    AsyncClient: type[httpx.AsyncClient]
    HTTPTransport: type[httpx.HTTPTransport]
    AsyncHTTPTransport: type[httpx.AsyncHTTPTransport]
    MockTransport: type[httpx.MockTransport]


def _load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


#: the installed backends by name (after ``httpx2.alias_httpx()`` both names hold httpx2)
_INSTALLED: Final[dict[str, ModuleType]] = {
    name: module for name in BACKEND_NAMES if (module := _load(name)) is not None
}


def _default_name() -> BackendName:
    from .._core.errors import ConfigurationError

    wanted = os.environ.get(BACKEND_ENV, "").strip().lower()
    if wanted:
        for name in BACKEND_NAMES:
            if name == wanted:
                if name not in _INSTALLED:
                    raise ConfigurationError(
                        f"{BACKEND_ENV}={name}, but {name} is not installed"
                        f" (pip install 'authpulse[{name}]')"
                    )
                return name
        raise ConfigurationError(
            f"{BACKEND_ENV} must be one of {', '.join(BACKEND_NAMES)}, not {wanted!r}"
        )
    for name in BACKEND_NAMES:
        if name in _INSTALLED:
            return name
    raise ImportError("authpulse needs httpx or httpx2: pip install httpx (or httpx2)")


#: the name of the default backend (see the module documentation)
DEFAULT_BACKEND: Final[BackendName] = _default_name()

if not TYPE_CHECKING:
    httpx = _INSTALLED[DEFAULT_BACKEND]


def _unique(modules: Iterable[ModuleType]) -> tuple[ModuleType, ...]:
    out: list[ModuleType] = []
    for m in modules:
        if all(m is not seen for seen in out):
            out.append(m)
    return tuple(out)


#: every installed backend, the default first
BACKENDS: Final[tuple[HttpModule, ...]] = cast(
    "tuple[HttpModule, ...]",
    _unique([_INSTALLED[DEFAULT_BACKEND], *_INSTALLED.values()]),
)


def backend(name: str | None = None) -> HttpModule:
    """The backend called ``name`` (``"httpx"`` or ``"httpx2"``); ``None``: the default.

    Raises :class:`~authpulse.ConfigurationError` for another name or one
    that is not installed.
    """
    from .._core.errors import ConfigurationError

    if name is None:
        return BACKENDS[0]
    if name not in BACKEND_NAMES:
        raise ConfigurationError(f"backend must be one of {', '.join(BACKEND_NAMES)}, not {name!r}")
    module = _INSTALLED.get(name)
    if module is None:
        raise ConfigurationError(f"{name} is not installed (pip install 'authpulse[{name}]')")
    return cast("HttpModule", module)


def every(*names: str) -> tuple[type[Any], ...]:
    """The classes called ``names`` in every installed backend, for ``isinstance``/``except``."""
    return tuple(getattr(m, n) for n in names for m in BACKENDS)


URL_TYPES: Final[tuple[type[httpx.URL], ...]] = every("URL")
RESPONSE_TYPES: Final[tuple[type[httpx.Response], ...]] = every("Response")
BYTE_STREAM_TYPES: Final[tuple[type[httpx.ByteStream], ...]] = every("ByteStream")
TRANSPORT_ERRORS: Final[tuple[type[httpx.TransportError], ...]] = every("TransportError")
TIMEOUT_ERRORS: Final[tuple[type[httpx.TimeoutException], ...]] = every("TimeoutException")
#: every error of a request that got no usable answer (transport errors, decoding
#: errors, too many redirects)
REQUEST_ERRORS: Final[tuple[type[httpx.RequestError], ...]] = every("RequestError")
INVALID_URL_ERRORS: Final[tuple[type[httpx.InvalidURL], ...]] = every("InvalidURL")
REQUEST_NOT_READ_ERRORS: Final[tuple[type[httpx.RequestNotRead], ...]] = every("RequestNotRead")

# the classes whose instances tell which backend an object belongs to
_MARKERS = (
    "Request",
    "Response",
    "URL",
    "Headers",
    "BaseTransport",
    "AsyncBaseTransport",
    "Client",
    "AsyncClient",
    "HTTPError",
)
_CLASSES: Final = tuple((m, tuple(getattr(m, n) for n in _MARKERS)) for m in BACKENDS)
_BY_TYPE: dict[type, HttpModule] = {}


def backend_of(obj: object) -> HttpModule | None:
    """The backend ``obj`` (a request, response, URL, transport, client...) belongs to.

    One of authpulse's own transports belongs to every backend: its answer
    is the backend of the transport it wraps (its ``inner``). ``None`` when
    nothing tells.
    """
    kind = type(obj)
    found = _BY_TYPE.get(kind)
    if found is not None:
        return found
    matches = [m for m, classes in _CLASSES if isinstance(obj, classes)]
    if len(matches) == 1:
        if len(_BY_TYPE) < 1024:
            _BY_TYPE[kind] = matches[0]
        return matches[0]
    if matches:
        inner = getattr(obj, "inner", None)
        return backend_of(inner) if inner is not None and inner is not obj else None
    return None


def backend_for(obj: object) -> HttpModule:
    """:func:`backend_of` ``obj``, or the default backend when nothing tells."""
    return backend_of(obj) or BACKENDS[0]


def bases(name: str) -> tuple[type, type]:
    """httpx's and httpx2's class ``name``, for a class that must be both.

    A backend that is not installed (or is the same module as the other,
    after ``httpx2.alias_httpx()``) is replaced by an empty class.
    """
    out: list[type] = []
    seen: list[ModuleType] = []
    for backend_name in BACKEND_NAMES:
        module = _INSTALLED.get(backend_name)
        if module is None or any(module is s for s in seen):
            out.append(type(f"_No{backend_name.capitalize()}{name}", (), {"__slots__": ()}))
        else:
            seen.append(module)
            out.append(getattr(module, name))
    return out[0], out[1]


def _merged(name: str) -> type:
    """A class deriving from the class ``name`` of every installed backend."""
    classes = every(name)
    return classes[0] if len(classes) == 1 else type(name, classes, {})


if TYPE_CHECKING:
    TransportErrorBase = httpx.TransportError
else:
    HttpxAuth, Httpx2Auth = bases("Auth")
    HttpxBaseTransport, Httpx2BaseTransport = bases("BaseTransport")
    HttpxAsyncBaseTransport, Httpx2AsyncBaseTransport = bases("AsyncBaseTransport")
    #: every installed backend's ``TransportError`` in one class, for authpulse's own errors
    TransportErrorBase = _merged("TransportError")


def client_for(transport: AnyTransport | None, **kwargs: Any) -> httpx.Client:
    """A client of ``transport``'s backend (the default backend's without one)."""
    hx = backend_for(transport)
    return hx.Client(transport=cast("httpx.BaseTransport | None", transport), **kwargs)


def async_client_for(transport: AnyAsyncTransport | None, **kwargs: Any) -> httpx.AsyncClient:
    """An async client of ``transport``'s backend (the default backend's without one)."""
    hx = backend_for(transport)
    return hx.AsyncClient(transport=cast("httpx.AsyncBaseTransport | None", transport), **kwargs)


def as_url(url: httpx.URL | str) -> httpx.URL:
    """``url`` if it is already a URL (of any backend), else parsed by the default backend."""
    return url if isinstance(url, URL_TYPES) else httpx.URL(url)


def origin_of(url: httpx.URL | str) -> tuple[str, str, int | None]:
    """Return ``(scheme, host, port)`` with the default port made explicit."""
    u = as_url(url)
    port = u.port
    if port is None:
        port = {"http": 80, "https": 443}.get(u.scheme)
    return (u.scheme, u.host, port)


def parse_origins(origins: Iterable[str] | None) -> frozenset[Origin] | None:
    """Validate and normalise a list of origins (or URLs); ``None`` stays ``None``."""
    from .._core.errors import ConfigurationError

    if origins is None:
        return None
    if isinstance(origins, str):
        origins = [origins]
    out = set()
    for o in origins:
        try:
            origin = origin_of(o) if isinstance(o, (str, *URL_TYPES)) else None
        except INVALID_URL_ERRORS:
            origin = None
        if origin is None or origin[0] not in ("http", "https") or not origin[1]:
            raise ConfigurationError(
                "origins must be absolute http(s) URLs such as 'https://api.example.com'"
            )
        out.add(origin)
    return frozenset(out)


#: endpoint URLs parsed so far (bounded): a manager's sessions share their IdP's few URLs
_PARSED: dict[str, httpx.URL] = {}
_PARSED_KEPT = 1024


def _endpoint(url: httpx.URL | str) -> httpx.URL:
    """:func:`as_url`, remembering what it parsed from a string."""
    if not isinstance(url, str):
        return as_url(url)
    parsed = _PARSED.get(url)
    if parsed is None:
        parsed = as_url(url)
        if len(_PARSED) < _PARSED_KEPT:
            _PARSED[url] = parsed
    return parsed


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint_url(url: object, *, what: str, allow_insecure_http: bool = False) -> str:
    """``url`` if credentials may be sent to it, else raise
    :class:`~authpulse.ConfigurationError` naming ``what`` and the reason.

    The URL must be absolute ``https://`` — or ``http://`` to a loopback host
    (``127.0.0.0/8``, ``::1``, ``localhost``), where nothing travels over a
    network, or to any host with ``allow_insecure_http=True``. Every URL a
    token source sends a secret to (token endpoints, the JWKS) goes through
    this one check.
    """
    from .._core.errors import ConfigurationError

    if not isinstance(url, str):
        raise ConfigurationError(f"{what} must be an absolute http(s) URL")
    try:
        parsed = _endpoint(url)
    except INVALID_URL_ERRORS:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigurationError(f"{what} must be an absolute http(s) URL")
    if parsed.scheme == "http" and not allow_insecure_http and not _is_loopback(parsed.host):
        raise ConfigurationError(
            f"{what} {endpoint_label(parsed)} uses plain http:// to a host that is not "
            "loopback: the credentials sent to it would travel unencrypted; use https://, "
            "or pass allow_insecure_http=True if the network path is trusted"
        )
    return url


def endpoint_label(url: httpx.URL | str) -> str:
    """``scheme://host[:port]/path`` of ``url``, for messages: no userinfo, no query,
    no fragment (they may carry credentials)."""
    try:
        u = _endpoint(url)
    except INVALID_URL_ERRORS:
        return "<invalid URL>"
    host = f"[{u.host}]" if ":" in u.host else u.host
    port = f":{u.port}" if u.port is not None else ""
    return f"{u.scheme}://{host}{port}{u.path}"
