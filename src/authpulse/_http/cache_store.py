"""The cache's store: :class:`ResponseCache`, shared and thread-safe.

One lock guards the cachetools LRU, the indexes, the counters and the set of
keys being revalidated, and it is never held across I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields

import cachetools

from .._core.errors import UsageError
from .._runtime.backend import as_url, httpx
from .cache_policy import (
    _check_count,
    _Entry,
    _Key,
    _key_url,
    _MiB,
    _Primary,
    _vary_values,
)

__all__ = ["CacheStats", "ResponseCache"]


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


# The public names defined here show the module they are imported from.
for _public in (
    CacheStats,
    ResponseCache,
):
    _public.__module__ = "authpulse"
del _public
