"""The store for fleets: many processes on many hosts sharing one Redis.

Layout (every key starts with ``<namespace>:``)::

    s:<id>             hash   data (record JSON), version, owner, status, kind
    idx:all            zset   session ids scored by created_at
    idx:owner:<owner>  zset   the same, per owner
    idx:status:<st>    zset   the same, per status
    idx:kind:<kind>    zset   the same, per kind
    ev:<id>            list   the timeline (event JSON), capped at timeline_limit
    tok:<id>           hash   blob (token JSON, optionally encrypted), skew,
                              version, fence, updated_at
    tokfence:<id>      string the highest fence used to write the token set
    lock:<name>        string the holder's random id, with the lock's TTL
    lockfence:<name>   string the fence counter (INCR)

The compare-and-set write, the delete, the fenced token write and the lock
operations are Lua scripts, so each is atomic on the server. Lock TTLs run
on the Redis server's clock. Not for Redis Cluster (scripts touch keys
they compute).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import re
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._clock import Clock, SystemClock
from ._crypto import EncryptionKeys, TokenCipher, decode_token_set, encode_token_set
from ._errors import ConfigurationError, UsageError
from ._events import Event
from ._model import SessionKind, SessionRecord, SessionStatus
from ._sqlite_store import decode_event, decode_record
from ._store import (
    CorruptRecordError,
    FencingError,
    StoredToken,
    StoreError,
    StoreLock,
    StoreUnavailableError,
    VersionConflictError,
    check_page,
    check_token_put,
)
from ._tokens import TokenSet

_IMPORT_ERROR: ImportError | None = None
try:
    import redis
    import redis.asyncio as aredis
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import EqualJitterBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    _IMPORT_ERROR = exc

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["RedisStore"]

_NAMESPACE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_OUR_PARAMS: Final = frozenset({"namespace", "timeline_limit"})
#: redis-py's own URL parameters (anything else would fail late, inside redis-py)
_REDIS_PARAMS: Final = frozenset(
    {
        "db",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "retry_on_timeout",
        "max_connections",
        "health_check_interval",
        "client_name",
        "protocol",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
        "ssl_min_version",
    }
)
_CHUNK = 200


class _Script:
    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()


# KEYS[1] record; ARGV: expected version ('' = must not exist), data, owner, status,
# kind, created_at, id, key prefix. Returns {1, new version} or {0, actual (-1: none)}.
_PUT = _Script(
    """
local cur = redis.call('HGET', KEYS[1], 'version')
if ARGV[1] == '' then
  if cur then return {0, tonumber(cur) or -2} end
elseif (not cur) or cur ~= ARGV[1] then
  if cur then return {0, tonumber(cur) or -2} end
  return {0, -1}
end
local p, id = ARGV[8], ARGV[7]
if cur then
  local old = redis.call('HMGET', KEYS[1], 'owner', 'status', 'kind')
  if old[1] then redis.call('ZREM', p .. 'idx:owner:' .. old[1], id) end
  if old[2] then redis.call('ZREM', p .. 'idx:status:' .. old[2], id) end
  if old[3] then redis.call('ZREM', p .. 'idx:kind:' .. old[3], id) end
end
local v = (tonumber(cur) or 0) + 1
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'version', v, 'owner', ARGV[3],
           'status', ARGV[4], 'kind', ARGV[5])
redis.call('ZADD', p .. 'idx:all', ARGV[6], id)
redis.call('ZADD', p .. 'idx:owner:' .. ARGV[3], ARGV[6], id)
redis.call('ZADD', p .. 'idx:status:' .. ARGV[4], ARGV[6], id)
redis.call('ZADD', p .. 'idx:kind:' .. ARGV[5], ARGV[6], id)
return {1, v}
"""
)

# KEYS: record, events, token; ARGV: key prefix, id. Returns 1 if the record existed.
_DELETE = _Script(
    """
local p, id = ARGV[1], ARGV[2]
local existed = redis.call('EXISTS', KEYS[1])
local old = redis.call('HMGET', KEYS[1], 'owner', 'status', 'kind')
if old[1] then redis.call('ZREM', p .. 'idx:owner:' .. old[1], id) end
if old[2] then redis.call('ZREM', p .. 'idx:status:' .. old[2], id) end
if old[3] then redis.call('ZREM', p .. 'idx:kind:' .. old[3], id) end
redis.call('ZREM', p .. 'idx:all', id)
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return existed
"""
)

# KEYS: token hash, highest-fence key; ARGV: blob, skew, fence ('' = none), updated_at.
# Returns {1, new version} or {0, highest fence}.
_PUT_TOKEN = _Script(
    """
if ARGV[3] ~= '' then
  local fence = tonumber(ARGV[3])
  local highest = tonumber(redis.call('GET', KEYS[2]) or '')
  if highest and fence < highest then return {0, highest} end
  if (not highest) or fence > highest then redis.call('SET', KEYS[2], ARGV[3]) end
end
local v = (tonumber(redis.call('HGET', KEYS[1], 'version') or '') or 0) + 1
redis.call('HSET', KEYS[1], 'blob', ARGV[1], 'skew', ARGV[2], 'version', v,
           'fence', ARGV[3], 'updated_at', ARGV[4])
return {1, v}
"""
)

# KEYS: lock, fence counter; ARGV: holder, ttl ms. Returns the new fence or 0.
_LOCK_TRY = _Script(
    """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""
)

# KEYS: lock; ARGV: holder. Returns 1 if released.
_LOCK_RELEASE = _Script(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
)

# KEYS: lock; ARGV: holder, ttl ms. Returns 1 if renewed.
_LOCK_RENEW = _Script(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
)


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _ttl_ms(ttl: float) -> int:
    return max(1, math.ceil(ttl * 1000))


def _parse_url(url: str) -> tuple[str, dict[str, str], str]:
    """(URL for redis-py, our own parameters, a credential-free location)."""
    if not isinstance(url, str):
        raise ConfigurationError(f"redis store URL must be a str, not {type(url).__name__}")
    scheme = url.partition("://")[0].lower()
    if scheme not in ("redis", "rediss"):
        raise ConfigurationError("RedisStore needs a redis:// or rediss:// URL")
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or 6379
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ConfigurationError(
            f"{scheme} store URL is malformed (check the host, port and query string)"
        ) from None
    db = parts.path.strip("/") or "0"
    if not db.isascii() or not db.isdigit():
        raise ConfigurationError(f"{scheme} store URL path must be a database number, like /0")
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for name, value in pairs:
        if name in _OUR_PARAMS:
            ours[name] = value
        elif name in _REDIS_PARAMS:
            theirs.append((name, value))
        else:
            raise ConfigurationError(
                f"{scheme} store URL has unknown parameter {name[:32]!r}; allowed: "
                f"{', '.join(sorted(_OUR_PARAMS | _REDIS_PARAMS))}"
            )
    clean = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(theirs), ""))
    return clean, ours, f"{scheme}://{host}:{port}/{db}"


class RedisStore:
    """A store in Redis for many processes and hosts (see the module docstring).

    ``url`` is ``redis://[user:password@]host:port/db`` or ``rediss://...``;
    it may carry ``namespace`` and ``timeline_limit`` parameters (they win
    over the keyword arguments) and redis-py's own connection parameters.
    ``encryption_keys`` encrypt token sets at rest. Connection failures
    raise :class:`StoreUnavailableError` after ``retries`` quick retries.
    ``clock.now()`` stamps ``updated_at`` (lock TTLs run on the server).

    The sync methods use one ``redis.Redis``; the async ones one
    ``redis.asyncio.Redis`` per event loop: call :meth:`aclose` from each
    loop that used the store.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "authpulse",
        encryption_keys: EncryptionKeys = None,
        timeline_limit: int = 200,
        clock: Clock | None = None,
        socket_timeout: float = 5.0,
        retries: int = 2,
    ) -> None:
        if _IMPORT_ERROR is not None:
            raise ConfigurationError(
                "the Redis store needs the redis package: pip install 'authpulse[redis]'"
            )
        clean, params, self.location = _parse_url(url)
        namespace = params.get("namespace", namespace)
        if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
            raise ConfigurationError(
                "namespace must be 1-64 characters among letters, digits and _ . : -"
            )
        if "timeline_limit" in params:
            try:
                timeline_limit = int(params["timeline_limit"])
            except ValueError:
                raise ConfigurationError("timeline_limit must be an int >= 1") from None
        if isinstance(timeline_limit, bool) or not isinstance(timeline_limit, int):
            raise ConfigurationError("timeline_limit must be an int >= 1")
        if timeline_limit < 1:
            raise ConfigurationError("timeline_limit must be an int >= 1")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigurationError("retries must be an int >= 0")
        self.namespace = namespace
        self.timeline_limit = timeline_limit
        self._prefix = namespace + ":"
        self._cipher = TokenCipher.coerce(encryption_keys)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._url = clean
        self._options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": min(socket_timeout, 2.0),
            "decode_responses": False,
        }
        self._retries = retries
        try:
            self._client: redis.Redis = redis.Redis.from_url(
                clean, retry=self._retry(Retry), **self._options
            )
        except ValueError:
            raise ConfigurationError(
                f"{self.location.partition(':')[0]} store URL has an invalid parameter value"
            ) from None
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aredis.Redis] = (
            weakref.WeakKeyDictionary()
        )
        self._closed = False

    def __repr__(self) -> str:
        # safe on a store whose __init__ failed part-way (a traceback's locals
        # show it): only attributes set so far, and never the URL (its password)
        location = getattr(self, "location", None)
        if not isinstance(location, str):
            return "RedisStore(<not initialised>)"
        namespace = getattr(self, "namespace", None)
        ns = f", namespace={namespace!r}" if isinstance(namespace, str) else ""
        enc = ", encrypted" if getattr(self, "_cipher", None) is not None else ""
        return f"RedisStore({location!r}{ns}{enc})"

    # ----------------------------------------------------------------- plumbing

    def _retry(self, kind: Any) -> Any:
        return kind(EqualJitterBackoff(cap=0.2, base=0.01), self._retries)

    def _aclient(self) -> aredis.Redis:
        if self._closed:
            raise UsageError("the Redis store is closed")
        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            client = aredis.Redis.from_url(
                self._url, retry=self._retry(AsyncRetry), **self._options
            )
            self._aclients[loop] = client
        return client

    def _sync(self) -> redis.Redis:
        if self._closed:
            raise UsageError("the Redis store is closed")
        return self._client

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise StoreUnavailableError(
                f"Redis store at {self.location} is unavailable ({type(exc).__name__})"
            ) from exc
        except RedisError as exc:
            raise StoreError(
                f"Redis store at {self.location} failed ({type(exc).__name__})"
            ) from exc

    def _k(self, kind: str, name: str) -> str:
        return f"{self._prefix}{kind}:{name}"

    def _script(self, script: _Script, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        client = self._sync()
        with self._translate():
            try:
                return client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                return client.eval(script.source, len(keys), *keys, *args)

    async def _ascript(
        self, script: _Script, keys: Sequence[str], args: Sequence[str | int]
    ) -> Any:
        client = self._aclient()
        with self._translate():
            try:
                return await client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                return await client.eval(script.source, len(keys), *keys, *args)

    # ------------------------------------------------------------ record coding

    def _put_args(self, record: SessionRecord, expected_version: int | None) -> list[str | int]:
        data = json.dumps(
            {**record.to_dict(), "version": (expected_version or 0) + 1},
            separators=(",", ":"),
            allow_nan=False,
        )
        return [
            "" if expected_version is None else str(expected_version),
            data,
            record.owner,
            record.status.value,
            record.kind.value,
            repr(float(record.created_at)),
            record.id,
            self._prefix,
        ]

    @staticmethod
    def _put_result(
        record: SessionRecord, expected_version: int | None, result: Any
    ) -> SessionRecord:
        ok, version = int(result[0]), int(result[1])
        if not ok:
            raise VersionConflictError(
                record.id, expected_version, version if version >= 0 else None
            )
        return replace(record, version=version)

    @staticmethod
    def _record(session_id: str, row: Sequence[Any]) -> SessionRecord | None:
        data, version = row
        if data is None:
            return None
        return decode_record(session_id, data, version)

    def _token(self, session_id: str, row: Sequence[Any]) -> StoredToken | None:
        blob, skew, version, fence, updated_at = row
        if blob is None:
            return None
        try:
            skew_f = float(_text(skew) or "")
            version_i = int(_text(version) or "")
            fence_t = _text(fence) or ""
            fence_i = int(fence_t) if fence_t else None
            updated_f = float(_text(updated_at) or "")
        except ValueError:
            raise CorruptRecordError(
                session_id, "token set", "a number field is not a number"
            ) from None
        return StoredToken(
            token=decode_token_set(blob, self._cipher, session_id=session_id),
            skew=skew_f,
            version=version_i,
            fence=fence_i,
            updated_at=updated_f,
        )

    def _token_args(
        self, token: TokenSet, skew: float, fence: int | None
    ) -> tuple[list[str | int], float]:
        now = self._clock.now()
        blob = encode_token_set(token, self._cipher)
        # the blob is bytes; redis-py sends bytes unchanged
        args: list[Any] = [blob, repr(skew), "" if fence is None else str(fence), repr(now)]
        return args, now

    # ------------------------------------------------------------------ queries

    def _groups(
        self,
        owner: str | None,
        statuses: frozenset[SessionStatus] | None,
        kind: SessionKind | None,
    ) -> list[list[str]]:
        groups: list[list[str]] = []
        if owner is not None:
            groups.append([self._k("idx:owner", owner)])
        if statuses is not None:
            groups.append([self._k("idx:status", s.value) for s in sorted(statuses)])
        if kind is not None:
            groups.append([self._k("idx:kind", SessionKind(kind).value)])
        return groups or [[self._prefix + "idx:all"]]

    @staticmethod
    def _matcher(
        owner: str | None,
        statuses: frozenset[SessionStatus] | None,
        kind: SessionKind | None,
    ) -> Callable[[SessionRecord | None], bool]:
        def match(r: SessionRecord | None) -> bool:
            return (
                r is not None
                and (owner is None or r.owner == owner)
                and (statuses is None or r.status in statuses)
                and (kind is None or r.kind is kind)
            )

        return match

    @staticmethod
    def _merge(ranges: Iterable[Sequence[tuple[bytes, float]]]) -> list[str]:
        pairs = {(float(score), _text(member) or "") for rng in ranges for member, score in rng}
        return [member for _, member in sorted(pairs)]

    @staticmethod
    def _statuses(status: Iterable[SessionStatus] | None) -> frozenset[SessionStatus] | None:
        return None if status is None else frozenset(SessionStatus(s) for s in status)

    # ================================================================ sync API

    def get(self, session_id: str) -> SessionRecord | None:
        client = self._sync()
        with self._translate():
            row = client.hmget(self._k("s", session_id), ["data", "version"])
        return self._record(session_id, row)

    def _fetch(self, ids: Sequence[str]) -> list[SessionRecord | None]:
        client = self._sync()
        with self._translate():
            pipe = client.pipeline(transaction=False)
            for sid in ids:
                pipe.hmget(self._k("s", sid), ["data", "version"])
            rows = pipe.execute()
        return [self._record(sid, row) for sid, row in zip(ids, rows, strict=True)]

    def put(self, record: SessionRecord, *, expected_version: int | None) -> SessionRecord:
        result = self._script(
            _PUT, [self._k("s", record.id)], self._put_args(record, expected_version)
        )
        return self._put_result(record, expected_version, result)

    def query(
        self,
        *,
        owner: str | None = None,
        status: Iterable[SessionStatus] | None = None,
        kind: SessionKind | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[SessionRecord]:
        check_page(limit, offset)
        statuses = self._statuses(status)
        if (statuses is not None and not statuses) or limit == 0:
            return []
        groups = self._groups(owner, statuses, kind)
        match = self._matcher(owner, statuses, kind)
        client = self._sync()
        if len(groups) == 1 and len(groups[0]) == 1:
            # one index answers the filter exactly: page on the server
            stop = -1 if limit is None else offset + limit - 1
            with self._translate():
                members = client.zrange(groups[0][0], offset, stop)
            ids = [_text(m) or "" for m in members]
            return [r for r in self._fetch(ids) if match(r) and r is not None]
        with self._translate():
            pipe = client.pipeline(transaction=False)
            for group in groups:
                for key in group:
                    pipe.zcard(key)
            sizes = iter(pipe.execute())
            smallest = min(groups, key=lambda g: sum(int(next(sizes)) for _ in g))
            pipe = client.pipeline(transaction=False)
            for key in smallest:
                pipe.zrange(key, 0, -1, withscores=True)
            ids = self._merge(pipe.execute())
        out: list[SessionRecord] = []
        skip = offset
        for start in range(0, len(ids), _CHUNK):
            for r in self._fetch(ids[start : start + _CHUNK]):
                if r is None or not match(r):
                    continue
                if skip:
                    skip -= 1
                    continue
                out.append(r)
                if limit is not None and len(out) >= limit:
                    return out
        return out

    def delete(self, session_id: str) -> bool:
        keys = [self._k("s", session_id), self._k("ev", session_id), self._k("tok", session_id)]
        return bool(self._script(_DELETE, keys, [self._prefix, session_id]))

    def append_event(self, session_id: str, event: Event) -> None:
        key = self._k("ev", session_id)
        client = self._sync()
        with self._translate():
            pipe = client.pipeline(transaction=True)
            pipe.rpush(key, event.to_json())
            pipe.ltrim(key, -self.timeline_limit, -1)
            pipe.execute()

    def events(self, session_id: str) -> list[Event]:
        client = self._sync()
        with self._translate():
            items = client.lrange(self._k("ev", session_id), 0, -1)
        return [decode_event(session_id, item) for item in items]

    def get_token(self, session_id: str) -> StoredToken | None:
        client = self._sync()
        with self._translate():
            row = client.hmget(
                self._k("tok", session_id), ["blob", "skew", "version", "fence", "updated_at"]
            )
        return self._token(session_id, row)

    def put_token(
        self, session_id: str, token: TokenSet, *, skew: float = 0.0, fence: int | None = None
    ) -> StoredToken:
        skew, fence = check_token_put(skew, fence)
        args, now = self._token_args(token, skew, fence)
        keys = [self._k("tok", session_id), self._k("tokfence", session_id)]
        ok, value = (int(x) for x in self._script(_PUT_TOKEN, keys, args))
        if not ok:
            raise FencingError(session_id, fence or 0, value)
        return StoredToken(token=token, skew=skew, version=value, fence=fence, updated_at=now)

    def lock(self, name: str, ttl: float) -> StoreLock:
        """A named lock; see :class:`~authpulse.StoreLock`."""
        return StoreLock(self, name, ttl, clock=self._clock)

    def lock_try(self, name: str, holder: str, ttl: float) -> int | None:
        keys = [self._k("lock", name), self._k("lockfence", name)]
        fence = int(self._script(_LOCK_TRY, keys, [holder, _ttl_ms(ttl)]))
        return fence or None

    def lock_release(self, name: str, holder: str) -> bool:
        return bool(self._script(_LOCK_RELEASE, [self._k("lock", name)], [holder]))

    def lock_renew(self, name: str, holder: str, ttl: float) -> bool:
        keys = [self._k("lock", name)]
        return bool(self._script(_LOCK_RENEW, keys, [holder, _ttl_ms(ttl)]))

    def ping(self) -> bool:
        """True if the server answers (raises StoreUnavailableError if not)."""
        client = self._sync()
        with self._translate():
            return bool(client.ping())

    def close(self) -> None:
        """Close the sync connections (idempotent); async clients need :meth:`aclose`."""
        if not self._closed:
            self._closed = True
            self._client.close()

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # =============================================================== async API

    async def aget(self, session_id: str) -> SessionRecord | None:
        client = self._aclient()
        with self._translate():
            row = await client.hmget(self._k("s", session_id), ["data", "version"])
        return self._record(session_id, row)

    async def _afetch(self, ids: Sequence[str]) -> list[SessionRecord | None]:
        client = self._aclient()
        with self._translate():
            async with client.pipeline(transaction=False) as pipe:
                for sid in ids:
                    pipe.hmget(self._k("s", sid), ["data", "version"])
                rows = await pipe.execute()
        return [self._record(sid, row) for sid, row in zip(ids, rows, strict=True)]

    async def aput(self, record: SessionRecord, *, expected_version: int | None) -> SessionRecord:
        result = await self._ascript(
            _PUT, [self._k("s", record.id)], self._put_args(record, expected_version)
        )
        return self._put_result(record, expected_version, result)

    async def aquery(
        self,
        *,
        owner: str | None = None,
        status: Iterable[SessionStatus] | None = None,
        kind: SessionKind | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[SessionRecord]:
        check_page(limit, offset)
        statuses = self._statuses(status)
        if (statuses is not None and not statuses) or limit == 0:
            return []
        groups = self._groups(owner, statuses, kind)
        match = self._matcher(owner, statuses, kind)
        client = self._aclient()
        if len(groups) == 1 and len(groups[0]) == 1:
            stop = -1 if limit is None else offset + limit - 1
            with self._translate():
                members = await client.zrange(groups[0][0], offset, stop)
            ids = [_text(m) or "" for m in members]
            return [r for r in await self._afetch(ids) if match(r) and r is not None]
        with self._translate():
            async with client.pipeline(transaction=False) as pipe:
                for group in groups:
                    for key in group:
                        pipe.zcard(key)
                sizes = iter(await pipe.execute())
            smallest = min(groups, key=lambda g: sum(int(next(sizes)) for _ in g))
            async with client.pipeline(transaction=False) as pipe:
                for key in smallest:
                    pipe.zrange(key, 0, -1, withscores=True)
                ids = self._merge(await pipe.execute())
        out: list[SessionRecord] = []
        skip = offset
        for start in range(0, len(ids), _CHUNK):
            for r in await self._afetch(ids[start : start + _CHUNK]):
                if r is None or not match(r):
                    continue
                if skip:
                    skip -= 1
                    continue
                out.append(r)
                if limit is not None and len(out) >= limit:
                    return out
        return out

    async def adelete(self, session_id: str) -> bool:
        keys = [self._k("s", session_id), self._k("ev", session_id), self._k("tok", session_id)]
        return bool(await self._ascript(_DELETE, keys, [self._prefix, session_id]))

    async def aappend_event(self, session_id: str, event: Event) -> None:
        key = self._k("ev", session_id)
        client = self._aclient()
        with self._translate():
            async with client.pipeline(transaction=True) as pipe:
                pipe.rpush(key, event.to_json())
                pipe.ltrim(key, -self.timeline_limit, -1)
                await pipe.execute()

    async def aevents(self, session_id: str) -> list[Event]:
        client = self._aclient()
        with self._translate():
            items = await client.lrange(self._k("ev", session_id), 0, -1)
        return [decode_event(session_id, item) for item in items]

    async def aget_token(self, session_id: str) -> StoredToken | None:
        client = self._aclient()
        with self._translate():
            row = await client.hmget(
                self._k("tok", session_id), ["blob", "skew", "version", "fence", "updated_at"]
            )
        return self._token(session_id, row)

    async def aput_token(
        self, session_id: str, token: TokenSet, *, skew: float = 0.0, fence: int | None = None
    ) -> StoredToken:
        skew, fence = check_token_put(skew, fence)
        args, now = self._token_args(token, skew, fence)
        keys = [self._k("tok", session_id), self._k("tokfence", session_id)]
        ok, value = (int(x) for x in await self._ascript(_PUT_TOKEN, keys, args))
        if not ok:
            raise FencingError(session_id, fence or 0, value)
        return StoredToken(token=token, skew=skew, version=value, fence=fence, updated_at=now)

    async def alock_try(self, name: str, holder: str, ttl: float) -> int | None:
        keys = [self._k("lock", name), self._k("lockfence", name)]
        fence = int(await self._ascript(_LOCK_TRY, keys, [holder, _ttl_ms(ttl)]))
        return fence or None

    async def alock_release(self, name: str, holder: str) -> bool:
        return bool(await self._ascript(_LOCK_RELEASE, [self._k("lock", name)], [holder]))

    async def alock_renew(self, name: str, holder: str, ttl: float) -> bool:
        keys = [self._k("lock", name)]
        return bool(await self._ascript(_LOCK_RENEW, keys, [holder, _ttl_ms(ttl)]))

    async def aping(self) -> bool:
        """Async :meth:`ping`."""
        client = self._aclient()
        with self._translate():
            return bool(await client.ping())

    async def aclose(self) -> None:
        """Close this event loop's async client and the sync connections."""
        client = None
        with contextlib.suppress(RuntimeError):
            client = self._aclients.pop(asyncio.get_running_loop(), None)
        self.close()
        if client is not None:
            await client.aclose()
