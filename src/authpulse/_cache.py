"""A stale-while-revalidate response cache for httpx, on cachetools.

:class:`CacheTransport` and :class:`AsyncCacheTransport` wrap another
transport. The decisions — may this request use the cache, may this
response be stored and for how long, how fresh is an entry at ``now``, what
is the key — are pure functions shared by both twins; the twins differ only
in how they call the inner transport and where a background revalidation
runs (a thread, or a task on the caller's loop).

The store, :class:`ResponseCache`, is shared and thread-safe: one lock
guards the cachetools LRU, the indexes, the counters and the set of keys
being revalidated, and it is never held across I/O.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import hashlib
import logging
import math
import re
import threading
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar, overload

import cachetools

from ._clock import Clock, SystemClock
from ._errors import AuthpulseError, ConfigurationError, ErrorClass, UsageError
from ._flow_http import Close, Flow, Read, Send, adrive, drive, inner_is
from ._http import (
    TRANSPORT_ERRORS,
    Httpx2AsyncBaseTransport,
    Httpx2BaseTransport,
    HttpxAsyncBaseTransport,
    HttpxBaseTransport,
    as_url,
    backend_for,
    every,
    httpx,
)
from ._retry import classify_status

if TYPE_CHECKING:
    import httpx2

    from ._http import AnyAsyncTransport, AnyTransport  # noqa: F401 - the twins' quoted bases

__all__ = [
    "AsyncCacheTransport",
    "CacheFreshness",
    "CachePolicy",
    "CacheStats",
    "CacheTransport",
    "ResponseCache",
    "authorization_identity",
    "cache_freshness",
    "parse_cache_control",
]

_log = logging.getLogger("authpulse.cache")
_REVALIDATION_FAILED = {"authpulse_event": "revalidation_failed"}

#: the response extension that says where an answer came from
EXTENSION = "authpulse_cache"

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


# ------------------------------------------------------------------------ store


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters of a :class:`ResponseCache` (all transports sharing it).

    ``hits`` are fresh answers from the cache; ``stale_served`` stale ones
    served while revalidating; ``stale_if_error_served`` stale ones served
    because the upstream failed; ``misses`` cacheable requests that went
    upstream; ``not_cached`` upstream answers that were not stored
    (including requests that bypass the cache); ``revalidations`` background
    revalidations started; ``coalesced`` stale requests that joined one
    already running; ``evictions`` entries dropped to respect the bounds.
    """

    hits: int = 0
    misses: int = 0
    stale_served: int = 0
    stale_if_error_served: int = 0
    revalidations: int = 0
    coalesced: int = 0
    evictions: int = 0
    entries: int = 0
    bytes: int = 0
    not_cached: int = 0
    revalidation_errors: int = 0


_COUNTERS = tuple(
    f.name for f in fields(CacheStats) if f.name not in ("entries", "bytes", "evictions")
)


def _entry_size(entry: _Entry) -> int:
    return entry.size


class _LRU(cachetools.LRUCache[_Key, _Entry]):
    """An LRU bounded in bytes (by cachetools) and in entries (here).

    Every removal goes through ``__delitem__`` (so the owner can keep its
    indexes), every eviction through ``popitem`` (so it can be counted).
    Callers hold the owner's lock.
    """

    def __init__(self, max_entries: int, max_bytes: int, on_remove: Callable[[_Key], None]) -> None:
        super().__init__(maxsize=max_bytes, getsizeof=_entry_size)
        self.max_entries = max_entries
        self.evictions = 0
        self._on_remove = on_remove

    def popitem(self) -> tuple[_Key, _Entry]:
        item = super().popitem()
        self.evictions += 1
        return item

    def __setitem__(self, key: _Key, value: _Entry) -> None:
        super().__setitem__(key, value)
        while len(self) > self.max_entries:
            self.popitem()

    def __delitem__(self, key: _Key) -> None:
        super().__delitem__(key)
        self._on_remove(key)


@dataclass(slots=True)
class _Variants:
    names: tuple[str, ...]  #: the request headers the stored responses vary on
    keys: set[_Key] = field(default_factory=set)


class ResponseCache:
    """The shared, thread-safe store of cached responses.

    Bounded in entries and in bytes (body, headers and key, plus a small
    per-entry overhead); the least recently used entries are evicted first.
    Several transports (sync and async) may share one store; their
    revalidations of the same key are coalesced. Use one clock for all of
    them: ages are measured on the clock of the transport that stores an
    entry.
    """

    def __init__(self, *, max_entries: int = 1024, max_bytes: int = 16 * _MiB) -> None:
        self._max_entries = _check_count("ResponseCache.max_entries", max_entries)
        self._max_bytes = _check_count("ResponseCache.max_bytes", max_bytes)
        self._lock = threading.Lock()
        self._lru = _LRU(max_entries, max_bytes, self._forget)
        self._variants: dict[_Primary, _Variants] = {}
        self._by_url: dict[str, set[_Primary]] = {}
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._revalidating: set[_Key] = set()

    @property
    def max_entries(self) -> int:
        return self._max_entries

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._lru)

    def __repr__(self) -> str:
        with self._lock:
            entries, size = len(self._lru), int(self._lru.currsize)
        return (
            f"ResponseCache(entries={entries}, bytes={size}, "
            f"max_entries={self._max_entries}, max_bytes={self._max_bytes})"
        )

    def stats(self) -> CacheStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return CacheStats(
                **self._counts,
                evictions=self._lru.evictions,
                entries=len(self._lru),
                bytes=int(self._lru.currsize),
            )

    def invalidate(
        self,
        *,
        url: str | httpx.URL | None = None,
        prefix: str | None = None,
        identity: str | None = None,
    ) -> int:
        """Remove the entries matching every criterion given; return how many.

        ``url``: that exact URL (query included, any method and variant).
        ``prefix``: a path prefix when it starts with ``/`` (``"/users/"``),
        else a prefix of the whole URL (``"https://api.example.com/users"``).
        ``identity``: every entry of that identity (see
        :func:`authorization_identity` for the default one).
        """
        if url is None and prefix is None and identity is None:
            raise UsageError("invalidate() needs url=, prefix= or identity= (or use clear())")
        exact = _key_url(as_url(url)) if url is not None else None

        def matches(primary: _Primary) -> bool:
            ident, _, key_url = primary
            if identity is not None and ident != identity:
                return False
            if exact is not None and key_url != exact:
                return False
            if prefix is not None:
                target = httpx.URL(key_url).path if prefix.startswith("/") else key_url
                if not target.startswith(prefix):
                    return False
            return True

        with self._lock:
            if exact is not None:
                candidates: Iterable[_Primary] = list(self._by_url.get(exact, ()))
            else:
                candidates = list(self._variants)
            doomed = [k for p in candidates if matches(p) for k in self._variants[p].keys]
            for key in doomed:
                del self._lru[key]
            return len(doomed)

    def clear(self) -> None:
        """Remove every entry (the counters are kept)."""
        with self._lock:
            self._lru.clear()
            self._variants.clear()
            self._by_url.clear()

    # -- used by the transports; the lock is never held across I/O -------------------

    def _forget(self, key: _Key) -> None:
        """Index upkeep after a removal (called with the lock held)."""
        primary: _Primary = key[:3]
        variants = self._variants.get(primary)
        if variants is None:
            return
        variants.keys.discard(key)
        if not variants.keys:
            del self._variants[primary]
            urls = self._by_url.get(primary[2])
            if urls is not None:
                urls.discard(primary)
                if not urls:
                    del self._by_url[primary[2]]

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def _lookup(self, primary: _Primary, request: httpx.Request, now: float) -> _Entry | None:
        with self._lock:
            variants = self._variants.get(primary)
            if variants is None:
                return None
            key: _Key = (*primary, _vary_values(request, variants.names))
            entry = self._lru.get(key)
            if entry is not None and entry.dead(now):
                del self._lru[key]
                return None
            return entry

    def _key_for(self, primary: _Primary, request: httpx.Request, names: tuple[str, ...]) -> _Key:
        return (*primary, _vary_values(request, names))

    def _put(self, entry: _Entry, names: tuple[str, ...]) -> bool:
        primary: _Primary = entry.key[:3]
        with self._lock:
            if entry.size > self._max_bytes:
                self._counts["not_cached"] += 1
                return False
            old = self._variants.get(primary)
            if old is not None and old.names != names:  # the old variants are unreachable
                for key in list(old.keys):
                    del self._lru[key]
            self._lru[entry.key] = entry
            variants = self._variants.get(primary)
            if variants is None:
                variants = self._variants[primary] = _Variants(names)
                self._by_url.setdefault(primary[2], set()).add(primary)
            variants.keys.add(entry.key)
            return True

    def _remove(self, key: _Key, only: _Entry | None = None) -> None:
        """Remove ``key`` (if ``only`` is given: only while it still holds that entry)."""
        with self._lock:
            current = self._lru.get(key)
            if current is not None and (only is None or current is only):
                del self._lru[key]

    def _claim(self, entry: _Entry) -> bool:
        """True if the caller should revalidate ``entry``; False if coalesced."""
        with self._lock:
            if entry.key in self._revalidating or self._lru.get(entry.key) is not entry:
                self._counts["coalesced"] += 1
                return False
            self._revalidating.add(entry.key)
            self._counts["revalidations"] += 1
            return True

    def _release(self, key: _Key) -> None:
        with self._lock:
            self._revalidating.discard(key)


# ---------------------------------------------------------------------- shells


class _Action(enum.Enum):
    BYPASS = "bypass"
    HIT = "hit"
    STALE = "stale"
    FETCH = "fetch"


@dataclass(frozen=True, slots=True)
class _Decision:
    action: _Action
    primary: _Primary | None = None
    entry: _Entry | None = None  #: HIT/STALE: the entry served; FETCH: a stale-if-error candidate


IdentityArg = str | Callable[[httpx.Request], str | None] | None
EventHook = Callable[[str, dict[str, object]], None]


#: what an inner transport may be: one of any installed library (httpx, httpx2)
_SYNC_TRANSPORTS = every("BaseTransport")
_ASYNC_TRANSPORTS = every("AsyncBaseTransport")
#: what a fetch may fail with and still be answered from a stale entry (see ``_failure_class``)
_FETCH_FAILURES: tuple[type[Exception], ...] = (*TRANSPORT_ERRORS, AuthpulseError)


def _label(response: httpx.Response, label: str) -> httpx.Response:
    response.extensions = {**response.extensions, EXTENSION: label}
    return response


_Inner = TypeVar("_Inner")


class _CacheCore(Generic[_Inner]):
    """What both transports share: every decision and the two flows (an answer,
    a revalidation). The twins differ only in the driver and in where a
    background revalidation runs."""

    #: what ``inner`` must be, and how the error names it
    _inner_types: tuple[type[Any], ...]
    _inner_kind: str

    def __init__(
        self,
        inner: _Inner,
        *,
        cache: ResponseCache | None = None,
        policy: CachePolicy | None = None,
        clock: Clock | None = None,
        identity: IdentityArg = None,
        on_event: EventHook | None = None,
    ) -> None:
        if not isinstance(inner, self._inner_types):
            raise ConfigurationError(f"inner must be an {self._inner_kind} (or httpx2's)")
        if policy is not None and not isinstance(policy, CachePolicy):
            raise ConfigurationError("policy must be a CachePolicy")
        if cache is not None and not isinstance(cache, ResponseCache):
            raise ConfigurationError("cache must be a ResponseCache")
        if isinstance(identity, str):
            if not identity:
                raise ConfigurationError("identity must not be empty")
        elif identity is not None and not callable(identity):
            raise ConfigurationError("identity must be a string, a callable or None")
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigurationError("clock must implement authpulse.Clock")
        if on_event is not None and not callable(on_event):
            raise ConfigurationError("on_event must be callable")
        # an httpx2 transport takes and gives httpx2's requests and answers (same API)
        self._inner = inner
        self.policy = policy if policy is not None else CachePolicy()
        self.cache = (
            cache
            if cache is not None
            else ResponseCache(max_entries=self.policy.max_entries, max_bytes=self.policy.max_bytes)
        )
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._identity = identity
        self._on_event = on_event
        self._closed = False
        self._init_background()

    def _init_background(self) -> None:  # pragma: no cover - every twin overrides
        raise NotImplementedError

    def _start_revalidation(self, request: httpx.Request, entry: _Entry) -> None:
        raise NotImplementedError  # pragma: no cover - every twin overrides

    @property
    def inner(self) -> _Inner:
        """The transport this cache is in front of."""
        return self._inner

    def __repr__(self) -> str:
        if isinstance(self._identity, str):
            ident = "fixed"
        elif self._identity is None:
            ident = "authorization-hash"
        else:
            ident = "callable"
        return (
            f"{type(self).__name__}(policy={self.policy!r}, identity={ident}, cache={self.cache!r})"
        )

    def stats(self) -> CacheStats:
        """The counters of the (possibly shared) store."""
        return self.cache.stats()

    # -- decisions -------------------------------------------------------------------

    def _identity_of(self, request: httpx.Request) -> str | None:
        if isinstance(self._identity, str):
            return self._identity
        if self._identity is None:
            return authorization_identity(request)
        ident = self._identity(request)
        return ident if isinstance(ident, str) and ident else None

    def _decide(self, request: httpx.Request) -> _Decision:
        if _request_bypass(request) is not None:
            self.cache._count("not_cached")
            return _Decision(_Action.BYPASS)
        identity = self._identity_of(request)
        if identity is None:  # the identity callable declined: never cache
            self.cache._count("not_cached")
            return _Decision(_Action.BYPASS)
        primary: _Primary = (identity, request.method, _key_url(request.url))
        now = self.clock.monotonic()
        entry = self.cache._lookup(primary, request, now)
        if entry is None:
            self.cache._count("misses")
            return _Decision(_Action.FETCH, primary)
        state = entry.freshness(now)
        if state is not CacheFreshness.EXPIRED and _request_wants_upstream(request, entry.age(now)):
            state = CacheFreshness.EXPIRED
        if state is CacheFreshness.FRESH:
            self.cache._count("hits")
            return _Decision(_Action.HIT, primary, entry)
        if state is CacheFreshness.STALE:
            self.cache._count("stale_served")
            return _Decision(_Action.STALE, primary, entry)
        self.cache._count("misses")
        return _Decision(_Action.FETCH, primary, entry)

    def _serve(self, request: httpx.Request, entry: _Entry, label: str) -> httpx.Response:
        age = int(entry.age(self.clock.monotonic()))
        return backend_for(request).Response(
            entry.status,
            headers=[*entry.headers, (b"Age", str(age).encode())],
            content=entry.content,
            request=request,
            extensions={EXTENSION: label},
        )

    def _emit(self, kind: str, payload: dict[str, object]) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(kind, payload)
        except Exception:
            _log.exception(
                "cache on_event hook failed for %r",
                kind,
                extra={
                    "authpulse_event": "hook_failed",
                    "authpulse_hook": "on_event",
                    "authpulse_kind": kind,
                },
            )

    def _payload(self, entry: _Entry, **extra: object) -> dict[str, object]:
        identity, method, url, _ = entry.key
        return {"url": _event_url(url), "method": method, "identity": identity, **extra}

    def _stale_on_error(
        self,
        d: _Decision,
        request: httpx.Request,
        failure: BaseException | httpx.Response,
    ) -> httpx.Response | None:
        """The stale answer to a failed fetch, or ``None`` to let the failure through."""
        entry = d.entry
        if entry is None:
            return None
        exc: BaseException | None = None
        status: int | None = None
        if not isinstance(failure, BaseException):
            status = failure.status_code
            cls = classify_status(status, failure.headers) if status >= 500 else None
        else:
            exc = failure
            cls = _failure_class(exc)
        now = self.clock.monotonic()
        if cls is None or not entry.usable_on_error(now):
            return None
        self.cache._count("stale_if_error_served")
        self._emit(
            "stale_served",
            self._payload(
                entry,
                mode="stale-if-error",
                age=entry.age(now),
                error_class=cls.value,
                status=status,
                error=type(exc).__name__ if exc is not None else None,
            ),
        )
        return self._serve(request, entry, "stale-if-error")

    def _judge(
        self, d: _Decision, request: httpx.Request, response: httpx.Response
    ) -> httpx.Response | _Windows | None:
        """After a fetch: a stale answer to use instead, windows to store for, or ``None``."""
        if response.status_code >= 500:
            stale = self._stale_on_error(d, request, response)
            if stale is not None:
                return stale
        verdict = _response_verdict(
            self.policy, request.url.path, response.status_code, response.headers
        )
        if not isinstance(verdict, str):
            length = _delta_seconds(response.headers.get("content-length"))
            if length is not None and length > self.cache.max_bytes:
                verdict = "too-large"
        if isinstance(verdict, str):
            self.cache._count("not_cached")
            cls = classify_status(response.status_code, response.headers)
            if d.entry is not None and (cls is None or not cls.transient):
                self.cache._remove(d.entry.key, only=d.entry)  # superseded
            return None
        return verdict

    def _store(
        self,
        primary: _Primary,
        request: httpx.Request,
        response: httpx.Response,
        content: bytes,
        windows: _Windows,
    ) -> None:
        names = _vary_names(response.headers) or ()
        key = self.cache._key_for(primary, request, names)
        entry = _make_entry(
            key,
            response.status_code,
            response.headers.raw,
            content,
            now=self.clock.monotonic(),
            windows=windows,
        )
        self.cache._put(entry, names)

    def _after_unsafe(self, request: httpx.Request, response: httpx.Response) -> None:
        """A successful unsafe request (POST, PUT, ...) invalidates its URL (RFC 9111 §4.4)."""
        if request.method not in _SAFE_METHODS and response.status_code < 400:
            self.cache.invalidate(url=request.url)

    # -- revalidation ----------------------------------------------------------------

    def _revalidation_request(self, request: httpx.Request, entry: _Entry) -> httpx.Request:
        hx = backend_for(request)
        headers = hx.Headers(request.headers)
        etag = entry.header(b"etag")
        modified = entry.header(b"last-modified")
        if etag is not None:
            headers["If-None-Match"] = etag.decode("latin-1")
        if modified is not None:
            headers["If-Modified-Since"] = modified.decode("latin-1")
        return hx.Request(
            request.method, request.url, headers=headers, extensions=dict(request.extensions)
        )

    def _revalidation_plan(
        self, entry: _Entry, request: httpx.Request, response: httpx.Response
    ) -> _Windows | str:
        """Windows to store the new answer for, or one of
        ``"not_modified"``, ``"failed"``, ``"removed"``."""
        status = response.status_code
        if status == 304 and (
            "if-none-match" in request.headers or "if-modified-since" in request.headers
        ):
            return "not_modified"
        if status >= 500 or status in (304, 429):
            return "failed"
        verdict = _response_verdict(self.policy, request.url.path, status, response.headers)
        if isinstance(verdict, str):
            return "removed"
        length = _delta_seconds(response.headers.get("content-length"))
        if length is not None and length > self.cache.max_bytes:
            return "removed"
        return verdict

    def _revalidation_done(
        self,
        entry: _Entry,
        request: httpx.Request,
        response: httpx.Response,
        plan: _Windows | str,
        content: bytes,
    ) -> None:
        status = response.status_code
        if plan == "failed":
            self._revalidation_failed(entry, status=status)
            return
        outcome = "updated"
        names = entry.key[3]
        if isinstance(plan, _Windows):
            self._store(entry.key[:3], request, response, content, plan)
        elif plan == "not_modified":
            merged = _merge_not_modified(entry.headers, response.headers.raw)
            verdict = _response_verdict(
                self.policy, request.url.path, entry.status, httpx.Headers(merged)
            )
            if isinstance(verdict, _Windows):
                fresh = _make_entry(
                    entry.key,
                    entry.status,
                    merged,
                    entry.content,
                    now=self.clock.monotonic(),
                    windows=verdict,
                )
                self.cache._put(fresh, tuple(n for n, _ in names))
                outcome = "not_modified"
            else:
                self.cache._remove(entry.key, only=entry)
                outcome = "removed"
        else:
            self.cache._count("not_cached")
            self.cache._remove(entry.key, only=entry)
            outcome = "removed"
        self._emit("revalidated", self._payload(entry, outcome=outcome, status=status))

    def _revalidation_failed(
        self, entry: _Entry, *, status: int | None = None, exc: BaseException | None = None
    ) -> None:
        self.cache._count("revalidation_errors")
        if exc is not None:
            cls = _failure_class(exc)
            if cls is None:
                _log.warning(
                    "cache revalidation failed unexpectedly",
                    exc_info=exc,
                    extra=_REVALIDATION_FAILED,
                )
        else:
            cls = classify_status(status) if status is not None else None
        self._emit(
            "revalidation_failed",
            self._payload(
                entry,
                status=status,
                error_class=cls.value if cls is not None else None,
                error=type(exc).__name__ if exc is not None else None,
            ),
        )

    # -- the flows (written once; see ``_flow_http``) ---------------------------------

    def _answer_flow(self, request: httpx.Request) -> Flow[httpx.Response]:
        """Answer ``request`` from the cache or the inner transport."""
        d = self._decide(request)
        if d.action is _Action.BYPASS:
            response = yield Send(request)
            self._after_unsafe(request, response)
            return _label(response, "bypass")
        entry = d.entry
        if d.action is _Action.HIT and entry is not None:
            return self._serve(request, entry, "hit")
        if d.action is _Action.STALE and entry is not None:
            if not self._closed and self.cache._claim(entry):
                self._start_revalidation(request, entry)
            return self._serve(request, entry, "stale")
        try:
            response = yield Send(request)
        except _FETCH_FAILURES as exc:
            stale = self._stale_on_error(d, request, exc)
            if stale is None:
                raise
            return stale
        verdict = self._judge(d, request, response)
        if verdict is not None and not isinstance(verdict, _Windows):  # a stale answer
            yield Close(response)
            return verdict
        if verdict is not None and d.primary is not None:
            try:
                content = yield Read(response)
            except TRANSPORT_ERRORS as exc:
                yield Close(response)
                stale = self._stale_on_error(d, request, exc)
                if stale is None:
                    raise
                return stale
            self._store(d.primary, request, response, content, verdict)
        return _label(response, "miss")

    def _revalidation_flow(self, request: httpx.Request, entry: _Entry) -> Flow[None]:
        """Revalidate ``entry`` (claimed by the caller; released here, whatever happens)."""
        try:
            req = self._revalidation_request(request, entry)
            try:
                response = yield Send(req)
            except Exception as exc:
                self._revalidation_failed(entry, exc=exc)
                return
            try:
                plan = self._revalidation_plan(entry, req, response)
                content = (yield Read(response)) if isinstance(plan, _Windows) else b""
            except Exception as exc:
                self._revalidation_failed(entry, exc=exc)
                return
            finally:
                yield Close(response)
            self._revalidation_done(entry, req, response, plan, content)
        except Exception:
            _log.exception("cache revalidation failed", extra=_REVALIDATION_FAILED)
        finally:
            self.cache._release(entry.key)


@inner_is("AnyTransport")
class CacheTransport(_CacheCore["AnyTransport"], HttpxBaseTransport, Httpx2BaseTransport):
    """A stale-while-revalidate cache in front of a sync httpx transport.

    ``httpx.Client(transport=CacheTransport(httpx.HTTPTransport()))``; the
    same with httpx2 (answers are built with the request's library).
    Answers carry ``response.extensions["authpulse_cache"]``: ``"hit"``,
    ``"stale"``, ``"stale-if-error"``, ``"miss"`` or ``"bypass"``.

    A STALE entry is served at once and revalidated by one background
    request per key (a short-lived daemon thread here); stale requests that
    arrive meanwhile, from threads or coroutines sharing the store, are
    coalesced. Concurrent *misses* are not coalesced: each goes upstream,
    so no caller's latency, timeout or failure depends on another's request
    (the last answer stored wins). ``on_event`` may be called from a
    background thread.
    """

    _inner_types = _SYNC_TRANSPORTS
    _inner_kind = "httpx.BaseTransport"

    def _init_background(self) -> None:
        # revalidations run on a small pool: starting a thread per revalidation would put
        # thread start-up (and a GIL hand-off) on the stale answer's path
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: set[concurrent.futures.Future[None]] = set()
        self._threads_lock = threading.Lock()

    @overload
    def handle_request(self, request: httpx.Request) -> httpx.Response: ...
    @overload
    def handle_request(self, request: httpx2.Request) -> httpx2.Response: ...
    def handle_request(self, request: Any) -> Any:
        """Answer ``request`` (of ``inner``'s library) from the cache or ``inner``."""
        return drive(self._answer_flow(request), self._inner, self.clock)

    def _start_revalidation(self, request: httpx.Request, entry: _Entry) -> None:
        with self._threads_lock:
            pool = self._pool
            if pool is None:
                pool = self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=2, thread_name_prefix="authpulse-cache-revalidate"
                )
            try:
                future = pool.submit(self._revalidate, request, entry)
            except BaseException:
                self.cache._release(entry.key)
                raise
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: concurrent.futures.Future[None]) -> None:
        with self._threads_lock:
            self._pending.discard(future)

    def _revalidate(self, request: httpx.Request, entry: _Entry) -> None:
        drive(self._revalidation_flow(request, entry), self._inner, self.clock)

    def join_background(self, timeout: float | None = None) -> None:
        """Wait for the background revalidations started so far (and any they race with)."""
        while True:
            with self._threads_lock:
                pending = list(self._pending)
            if not pending:
                return
            concurrent.futures.wait(pending, timeout)
            if timeout is not None:
                return

    def close(self) -> None:
        """Start no more revalidations, wait for those running, close the inner transport."""
        self._closed = True
        self.join_background()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._inner.close()


@inner_is("AnyAsyncTransport")
class AsyncCacheTransport(
    _CacheCore["AnyAsyncTransport"], HttpxAsyncBaseTransport, Httpx2AsyncBaseTransport
):
    """The async twin of :class:`CacheTransport`.

    ``httpx.AsyncClient(transport=AsyncCacheTransport(httpx.AsyncHTTPTransport()))``.
    Background revalidations run as tasks on the caller's event loop; a
    cancelled caller never cancels them.
    """

    _inner_types = _ASYNC_TRANSPORTS
    _inner_kind = "httpx.AsyncBaseTransport"

    def _init_background(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    @overload
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response: ...
    @overload
    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response: ...
    async def handle_async_request(self, request: Any) -> Any:
        """Answer ``request`` (of ``inner``'s library) from the cache or ``inner``."""
        return await adrive(self._answer_flow(request), self._inner, self.clock)

    def _start_revalidation(self, request: httpx.Request, entry: _Entry) -> None:
        flow = adrive(self._revalidation_flow(request, entry), self._inner, self.clock)
        try:
            task = asyncio.get_running_loop().create_task(flow, name="authpulse-cache-revalidate")
        except BaseException:
            flow.close()
            self.cache._release(entry.key)
            raise
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def ajoin_background(self) -> None:
        """Wait for the revalidation tasks started on this event loop."""
        loop = asyncio.get_running_loop()
        current = asyncio.current_task()
        while True:
            pending = [
                t
                for t in list(self._tasks)
                if t.get_loop() is loop and t is not current and not t.done()
            ]
            if not pending:
                return
            await asyncio.wait(pending)  # unlike gather, being cancelled cancels none of them

    async def aclose(self) -> None:
        """Start no more revalidations, await those running, close the inner transport."""
        self._closed = True
        await self.ajoin_background()
        await self._inner.aclose()
