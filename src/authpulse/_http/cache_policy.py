"""The cache's pure decisions: the policy, freshness, and what may be stored or served.

No I/O, no clock, no lock: every function is given what it decides on (a
request, an answer's status and headers, ``now``). Read by the store
(``_cache_store``) and the transports (``_cache``).
"""

from __future__ import annotations

import enum
import hashlib
import math
import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from .._core.errors import AuthpulseError, ConfigurationError, ErrorClass
from .._runtime.backend import TRANSPORT_ERRORS, as_url, httpx

__all__ = [
    "CacheFreshness",
    "CachePolicy",
    "authorization_identity",
    "cache_freshness",
    "parse_cache_control",
]

_MiB = 1024 * 1024
#: RFC 9111 §1.2.2: a delta-seconds too large to represent counts as 2^31
_DELTA_MAX = 2**31
_CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: requests carrying these are the caller's own conditional or partial requests
_CONDITIONAL = ("if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range")
#: request headers whose values are hashed, never kept, when a response varies on them
_SENSITIVE = frozenset({"authorization", "proxy-authorization", "cookie"})
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"age",
    }
)
#: the body is stored decoded, so these no longer describe it
_BODY_FRAMING = frozenset({b"content-encoding", b"content-length"})
#: a 304 never updates these (RFC 9111 §3.2)
_NOT_UPDATED = frozenset({b"content-length", b"content-encoding", b"content-range"})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")  # a header name, lower-cased (RFC 9110 §5.1)
_ENTRY_OVERHEAD = 128  # bytes counted per entry on top of body, headers and URL

# ------------------------------------------------------------------------ policy


def _check_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number of seconds: {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigurationError(f"{name} must be finite and not negative: {value!r}")
    return float(value)


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an integer of at least 1: {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How long responses stay usable, and how much the cache may hold.

    An entry is FRESH for ``ttl`` seconds, then STALE for
    ``stale_while_revalidate`` more (served at once while one background
    request revalidates it), then EXPIRED (callers wait for the upstream).
    For ``stale_if_error`` seconds after it turned stale an entry is still
    served when the upstream fails.

    ``routes`` maps path prefixes to ``(ttl, stale_while_revalidate)``; the
    longest matching prefix wins (plain string prefix: ``"/users"`` also
    matches ``"/users-admin"``; write ``"/users/"`` to mean a folder).
    With ``honour_cache_control`` the response's ``Cache-Control`` counts:
    ``max-age`` replaces ``ttl``, ``stale-while-revalidate=`` /
    ``stale-if-error=`` can shorten (never lengthen) the policy windows,
    ``must-revalidate`` / ``proxy-revalidate`` remove them, ``no-cache``
    means "not stored" and the ``Age`` header is taken into account.
    ``no-store`` is always honoured. ``max_entries`` and ``max_bytes``
    size the store a transport creates when it is not given one.
    """

    ttl: float = 30.0
    stale_while_revalidate: float = 300.0
    stale_if_error: float = 3600.0
    max_entries: int = 1024
    max_bytes: int = 16 * _MiB
    routes: Mapping[str, tuple[float, float]] | None = field(default=None, hash=False)
    honour_cache_control: bool = True

    def __post_init__(self) -> None:
        for name in ("ttl", "stale_while_revalidate", "stale_if_error"):
            _check_seconds(f"CachePolicy.{name}", getattr(self, name))
        for name in ("max_entries", "max_bytes"):
            _check_count(f"CachePolicy.{name}", getattr(self, name))
        if not isinstance(self.honour_cache_control, bool):
            raise ConfigurationError("CachePolicy.honour_cache_control must be a bool")
        if self.routes is None:
            return
        if not isinstance(self.routes, Mapping):
            raise ConfigurationError("CachePolicy.routes must map path prefixes to (ttl, swr)")
        clean: dict[str, tuple[float, float]] = {}
        for prefix, value in self.routes.items():
            if not isinstance(prefix, str) or not prefix.startswith("/"):
                raise ConfigurationError(
                    f"CachePolicy.routes keys must be path prefixes starting with '/': {prefix!r}"
                )
            if not isinstance(value, tuple | list) or len(value) != 2:
                raise ConfigurationError(
                    f"CachePolicy.routes[{prefix!r}] must be a (ttl, stale_while_revalidate) pair"
                )
            clean[prefix] = (
                _check_seconds(f"CachePolicy.routes[{prefix!r}] ttl", value[0]),
                _check_seconds(f"CachePolicy.routes[{prefix!r}] stale_while_revalidate", value[1]),
            )
        object.__setattr__(self, "routes", types.MappingProxyType(clean))

    def windows_for(self, path: str) -> tuple[float, float]:
        """``(ttl, stale_while_revalidate)`` for a request path."""
        best: tuple[str, tuple[float, float]] | None = None
        for prefix, value in (self.routes or {}).items():
            if path.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
                best = (prefix, value)
        return best[1] if best is not None else (self.ttl, self.stale_while_revalidate)


# -------------------------------------------------------------------- pure core


class CacheFreshness(enum.StrEnum):
    """How usable a cached entry is at a given moment."""

    FRESH = "fresh"  #: served as it is
    STALE = "stale"  #: served at once while one background request revalidates it
    EXPIRED = "expired"  #: not served (except as stale-if-error): callers wait for upstream


def cache_freshness(*, age: float, ttl: float, stale_while_revalidate: float) -> CacheFreshness:
    """FRESH below ``ttl``, STALE below ``ttl + stale_while_revalidate``, else EXPIRED."""
    if age < ttl:
        return CacheFreshness.FRESH
    if age < ttl + stale_while_revalidate:
        return CacheFreshness.STALE
    return CacheFreshness.EXPIRED


def _split_directives(value: str) -> Iterable[str]:
    """Split at commas that are not inside a quoted string."""
    part: list[str] = []
    quoted = escaped = False
    for ch in value:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            yield "".join(part)
            part = []
            continue
        part.append(ch)
    yield "".join(part)


def parse_cache_control(value: str | Iterable[str] | None) -> dict[str, str | None]:
    """Directives of a ``Cache-Control`` value (or of several header lines).

    Names are lower-cased; a directive without ``=`` maps to ``None``;
    quoted arguments are unquoted. The first occurrence of a directive wins
    (RFC 9111 §4.2.1). Never raises, whatever the input.
    """
    if value is None:
        return {}
    text = value if isinstance(value, str) else ",".join(value)
    out: dict[str, str | None] = {}
    for part in _split_directives(text):
        name, sep, arg = part.partition("=")
        name = name.strip().lower()
        if not name:
            continue
        argument: str | None = None
        if sep:
            argument = arg.strip()
            if len(argument) >= 2 and argument[0] == argument[-1] == '"':
                argument = argument[1:-1].replace('\\"', '"')
        out.setdefault(name, argument)
    return out


def _delta_seconds(value: str | None) -> int | None:
    """A delta-seconds value, ``None`` when absent or malformed."""
    if value is None:
        return None
    value = value.strip()
    if not value or not (value.isascii() and value.isdigit()):
        return None
    if len(value) > 10:  # also keeps int() away from its digit limit
        return _DELTA_MAX
    return min(int(value), _DELTA_MAX)


class _Windows(NamedTuple):
    ttl: float
    swr: float
    sie: float
    age: float  #: the response's age when it was received


def _response_verdict(
    policy: CachePolicy, path: str, status: int, headers: httpx.Headers
) -> _Windows | str:
    """The windows a response may be stored for, or why it may not be stored."""
    if not 200 <= status < 300 or status == 206:
        return "status"
    cc = parse_cache_control(headers.get_list("cache-control"))
    if "no-store" in cc:
        return "no-store"
    if "set-cookie" in headers:
        return "set-cookie"
    if _vary_names(headers) is None:
        return "vary"
    ttl, swr = policy.windows_for(path)
    sie = policy.stale_if_error
    age = 0.0
    if policy.honour_cache_control:
        if "no-cache" in cc:
            return "no-cache"
        if "max-age" in cc:
            max_age = _delta_seconds(cc["max-age"])
            ttl = float(max_age) if max_age is not None else 0.0  # malformed: stale at once
        for name, current in (("stale-while-revalidate", swr), ("stale-if-error", sie)):
            limit = _delta_seconds(cc.get(name))
            if limit is not None and limit < current:
                if name == "stale-if-error":
                    sie = float(limit)
                else:
                    swr = float(limit)
        if "must-revalidate" in cc or "proxy-revalidate" in cc:
            swr = sie = 0.0
        age = float(_delta_seconds(headers.get("age")) or 0)
    if age >= ttl + max(swr, sie):
        return "expired"
    return _Windows(ttl, swr, sie, age)


def _request_bypass(request: httpx.Request) -> str | None:
    """Why a request must go straight upstream, or ``None`` if it may use the cache."""
    if request.method not in _CACHEABLE_METHODS:
        return "method"
    headers = request.headers
    length = headers.get("content-length")
    if "transfer-encoding" in headers or (length is not None and length.strip() != "0"):
        return "body"
    if "no-store" in parse_cache_control(headers.get_list("cache-control")):
        return "no-store"
    if "range" in headers or any(h in headers for h in _CONDITIONAL):
        return "conditional"
    return None


def _request_wants_upstream(request: httpx.Request, age: float) -> bool:
    """True when the request's own directives refuse an entry of this age."""
    cc = parse_cache_control(request.headers.get_list("cache-control"))
    if not cc and "no-cache" in request.headers.get("pragma", "").lower():
        return True
    if "no-cache" in cc:
        return True
    if "max-age" in cc:
        limit = _delta_seconds(cc["max-age"])
        return limit is not None and age > limit
    return False


def _vary_names(headers: httpx.Headers) -> tuple[str, ...] | None:
    """The request headers a response varies on (sorted).

    ``None`` (not cacheable) for ``Vary: *`` or a name that is not an HTTP token.
    """
    names: set[str] = set()
    for line in headers.get_list("vary"):
        for name in line.split(","):
            name = name.strip().lower()
            if name == "*" or (name and not _TOKEN.fullmatch(name)):
                return None  # varies on everything, or on a header we cannot name
            if name:
                names.add(name)
    return tuple(sorted(names))


def _digest(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()


def _vary_values(
    request: httpx.Request, names: tuple[str, ...]
) -> tuple[tuple[str, str | None], ...]:
    out: list[tuple[str, str | None]] = []
    for name in names:
        values = request.headers.get_list(name)
        value = ", ".join(values) if values else None
        if value is not None and name in _SENSITIVE:
            value = _digest(value)
        out.append((name, value))
    return tuple(out)


def authorization_identity(request: httpx.Request) -> str:
    """The default identity: a SHA-256 of the request's credentials.

    Hashes the ``Authorization`` header (and ``Cookie`` and URL user-info
    when present); ``"anonymous"`` when the request carries none of them.
    The credentials themselves are never kept.
    """
    parts = [
        request.headers.get("authorization"),
        request.headers.get("cookie"),
        request.url.userinfo.decode("ascii", "replace") or None,
    ]
    if all(p is None for p in parts):
        return "anonymous"
    return _digest("\0".join(p if p is not None else "" for p in parts))


def _key_url(url: httpx.URL) -> str:
    """The URL as it appears in keys: no user-info, no fragment."""
    if not url.userinfo and not url.fragment:  # the common case: no re-parse
        return str(url)
    return str(url.copy_with(userinfo=b"", fragment=None))


def _event_url(url: str | httpx.URL) -> str:
    """The URL as it appears in events: scheme, host, port and path (no query)."""
    u = as_url(url)
    return str(u.copy_with(userinfo=b"", query=None, fragment=None))


def _failure_class(exc: BaseException) -> ErrorClass | None:
    """The error class of a failure that may be answered from a stale entry.

    An :class:`AuthpulseError` that carries an ``error_class`` counts when
    that class is transient (NETWORK, THROTTLED or SERVER) — an open
    circuit breaker, a retry transport that gave up on a network error —
    and not otherwise, even if it is also an ``httpx.TransportError``.
    Any other ``httpx.TransportError`` counts as NETWORK. Anything else is
    never masked.
    """
    if isinstance(exc, AuthpulseError) and isinstance(exc.error_class, ErrorClass):
        return exc.error_class if exc.error_class.transient else None
    if isinstance(exc, TRANSPORT_ERRORS):
        return ErrorClass.NETWORK
    return None


_Primary = tuple[str, str, str]  # identity, method, URL
_Key = tuple[str, str, str, tuple[tuple[str, str | None], ...]]  # ... + varied values


@dataclass(frozen=True, slots=True)
class _Entry:
    key: _Key
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    content: bytes
    stored_at: float  #: clock.monotonic() when stored
    windows: _Windows
    size: int

    def age(self, now: float) -> float:
        return self.windows.age + max(now - self.stored_at, 0.0)

    def freshness(self, now: float) -> CacheFreshness:
        return cache_freshness(
            age=self.age(now), ttl=self.windows.ttl, stale_while_revalidate=self.windows.swr
        )

    def usable_on_error(self, now: float) -> bool:
        return self.age(now) < self.windows.ttl + self.windows.sie

    def dead(self, now: float) -> bool:
        w = self.windows
        return self.age(now) >= w.ttl + max(w.swr, w.sie)

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


def _make_entry(
    key: _Key,
    status: int,
    raw_headers: Iterable[tuple[bytes, bytes]],
    content: bytes,
    *,
    now: float,
    windows: _Windows,
) -> _Entry:
    head = key[1] == "HEAD"
    if head:
        content = b""  # an answer to HEAD has no body, whatever a mock may send
    headers = tuple(
        (k, v)
        for k, v in raw_headers
        if k.lower() not in _HOP_BY_HOP and (head or k.lower() not in _BODY_FRAMING)
    )
    size = (
        len(content)
        + sum(len(k) + len(v) for k, v in headers)
        + len(key[2])
        + sum(len(n) + len(v or "") for n, v in key[3])
        + _ENTRY_OVERHEAD
    )
    return _Entry(key, status, headers, content, now, windows, size)


def _merge_not_modified(
    stored: tuple[tuple[bytes, bytes], ...], fresh: Iterable[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """Stored headers updated by those of a 304 answer (RFC 9111 §3.2)."""
    update = [(k, v) for k, v in fresh if k.lower() not in _NOT_UPDATED]
    replaced = {k.lower() for k, _ in update}
    return [(k, v) for k, v in stored if k.lower() not in replaced] + update


# The public names defined here show the module they are imported from.
for _public in (
    CachePolicy,
    authorization_identity,
):
    _public.__module__ = "authpulse"
del _public
