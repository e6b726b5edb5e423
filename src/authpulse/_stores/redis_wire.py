"""What the Redis store sends: its Lua scripts, the steps its flows yield, its URL rules.

Nothing here talks to a server. Every store operation (``redis_records``,
``redis_timeline``, ``redis_locks``) is one generator (a :data:`Flow`) that
yields :class:`Call`, :class:`Pipe` and :class:`Eval` steps and is sent their
replies; the store runs it on ``redis.Redis`` or on ``redis.asyncio.Redis``.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Generator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, NamedTuple, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._core.errors import ConfigurationError

__all__ = [
    "DELETE",
    "LOCK_RELEASE",
    "LOCK_RENEW",
    "LOCK_TRY",
    "NAMESPACE",
    "PUT",
    "PUT_TOKEN",
    "Call",
    "Eval",
    "Flow",
    "Keys",
    "Pipe",
    "Script",
    "Step",
    "parse_url",
    "text",
    "ttl_ms",
]

NAMESPACE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
OUR_PARAMS: Final = frozenset({"namespace", "timeline_limit"})
#: redis-py's own URL parameters (anything else would fail late, inside redis-py)
REDIS_PARAMS: Final = frozenset(
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


class Script:
    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()


# KEYS[1] record; ARGV: expected version ('' = must not exist), data, owner, status,
# kind, created_at, id, key prefix. Returns {1, new version} or {0, actual (-1: none)}.
PUT = Script(
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
DELETE = Script(
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
PUT_TOKEN = Script(
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
LOCK_TRY = Script(
    """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""
)

# KEYS: lock; ARGV: holder. Returns 1 if released.
LOCK_RELEASE = Script(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
)

# KEYS: lock; ARGV: holder, ttl ms. Returns 1 if renewed.
LOCK_RENEW = Script(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
)


_NO_KWARGS: Mapping[str, Any] = MappingProxyType({})


class Call(NamedTuple):
    """One command (``args`` and ``kwargs`` as redis-py takes them)."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = _NO_KWARGS


class Pipe(NamedTuple):
    """Commands sent at once (``transaction``: MULTI/EXEC); the reply is their list."""

    calls: list[Call]
    transaction: bool = False


class Eval(NamedTuple):
    """A script by its SHA, loaded from its source if the server lacks it."""

    script: Script
    keys: Sequence[str]
    args: Sequence[Any]


Step = Call | Pipe | Eval
_T = TypeVar("_T")
#: an operation written once: yields steps, is sent their replies, returns its result
Flow = Generator[Step, Any, _T]


class Keys(NamedTuple):
    """The store's key names (see ``redis``'s module docstring): all start with ``prefix``."""

    prefix: str  #: ``<namespace>:``

    def of(self, kind: str, name: str) -> str:
        """The key of ``name`` among the keys of ``kind`` (``s``, ``ev``, ``lock`` ...)."""
        return f"{self.prefix}{kind}:{name}"


def text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def ttl_ms(ttl: float) -> int:
    return max(1, math.ceil(ttl * 1000))


def parse_url(url: str) -> tuple[str, dict[str, str], str]:
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
        if name in OUR_PARAMS:
            ours[name] = value
        elif name in REDIS_PARAMS:
            theirs.append((name, value))
        else:
            raise ConfigurationError(
                f"{scheme} store URL has unknown parameter {name[:32]!r}; allowed: "
                f"{', '.join(sorted(OUR_PARAMS | REDIS_PARAMS))}"
            )
    clean = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(theirs), ""))
    return clean, ours, f"{scheme}://{host}:{port}/{db}"
