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
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from .._core.errors import ConfigurationError, UsageError
from .._core.model import SessionRecord
from .._core.tokens import TokenSet
from .._runtime.clock import Clock, SystemClock
from .._runtime.events import Event
from .base import (
    CorruptRecordError,
    FencingError,
    RecordQuery,
    StoreBase,
    StoredToken,
    StoreError,
    StoreUnavailableError,
    VersionConflictError,
    check_timeline_limit,
)
from .codec import decode_event, decode_record, encode_record
from .crypto import EncryptionKeys, TokenCipher, decode_token_set, encode_token_set
from .redis_wire import (
    DELETE,
    LOCK_RELEASE,
    LOCK_RENEW,
    LOCK_TRY,
    NAMESPACE,
    PUT,
    PUT_TOKEN,
    Call,
    Eval,
    Flow,
    Pipe,
    Step,
    parse_url,
    text,
    ttl_ms,
)

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

__all__ = ["RedisStore"]

_T = TypeVar("_T")

_CHUNK = 200


class RedisStore(StoreBase):
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
        clean, params, self.location = parse_url(url)
        namespace = params.get("namespace", namespace)
        if not isinstance(namespace, str) or not NAMESPACE.match(namespace):
            raise ConfigurationError(
                "namespace must be 1-64 characters among letters, digits and _ . : -"
            )
        if "timeline_limit" in params:
            try:
                timeline_limit = int(params["timeline_limit"])
            except ValueError:
                raise ConfigurationError("timeline_limit must be an int >= 1") from None
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigurationError("retries must be an int >= 0")
        self.namespace = namespace
        self.timeline_limit = check_timeline_limit(timeline_limit)
        self._prefix = namespace + ":"
        self._cipher = TokenCipher.coerce(encryption_keys)
        self._clock = clock if clock is not None else SystemClock()
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

    # the two drivers: the same flow on redis.Redis or on redis.asyncio.Redis

    def _run(self, flow: Flow[_T]) -> _T:
        try:
            step = next(flow)
            while True:
                step = flow.send(self._do(step))
        except StopIteration as done:
            result: _T = done.value
        return result

    async def _arun(self, flow: Flow[_T]) -> _T:
        try:
            step = next(flow)
            while True:
                step = flow.send(await self._ado(step))
        except StopIteration as done:
            result: _T = done.value
        return result

    def _do(self, step: Step) -> Any:
        client = self._sync()
        with self._translate():
            if isinstance(step, Call):
                return getattr(client, step.name)(*step.args, **step.kwargs)
            if isinstance(step, Eval):
                try:
                    return client.evalsha(step.script.sha, len(step.keys), *step.keys, *step.args)
                except NoScriptError:
                    return client.eval(step.script.source, len(step.keys), *step.keys, *step.args)
            pipe = client.pipeline(transaction=step.transaction)
            for call in step.calls:
                getattr(pipe, call.name)(*call.args, **call.kwargs)
            return pipe.execute()

    async def _ado(self, step: Step) -> Any:
        client = self._aclient()
        with self._translate():
            if isinstance(step, Call):
                return await getattr(client, step.name)(*step.args, **step.kwargs)
            if isinstance(step, Eval):
                keys, args = step.keys, step.args
                try:
                    return await client.evalsha(step.script.sha, len(keys), *keys, *args)
                except NoScriptError:
                    return await client.eval(step.script.source, len(keys), *keys, *args)
            async with client.pipeline(transaction=step.transaction) as pipe:
                for call in step.calls:
                    getattr(pipe, call.name)(*call.args, **call.kwargs)
                return await pipe.execute()

    # ------------------------------------------------------------ record coding

    def _put_args(self, record: SessionRecord, expected_version: int | None) -> list[str | int]:
        data = encode_record(record, (expected_version or 0) + 1)
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
            skew_f = float(text(skew) or "")
            version_i = int(text(version) or "")
            fence_t = text(fence) or ""
            fence_i = int(fence_t) if fence_t else None
            updated_f = float(text(updated_at) or "")
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

    def _groups(self, q: RecordQuery) -> list[list[str]]:
        """The indexes that answer ``q``: one group per filter, any member of a group."""
        groups: list[list[str]] = []
        if q.owner is not None:
            groups.append([self._k("idx:owner", q.owner)])
        if q.statuses is not None:
            groups.append([self._k("idx:status", s.value) for s in sorted(q.statuses)])
        if q.kind is not None:
            groups.append([self._k("idx:kind", q.kind.value)])
        return groups or [[self._prefix + "idx:all"]]

    @staticmethod
    def _merge(ranges: Iterable[Sequence[tuple[bytes, float]]]) -> list[str]:
        pairs = {(float(score), text(member) or "") for rng in ranges for member, score in rng}
        return [member for _, member in sorted(pairs)]

    # ===================================================== the operations, once

    def _get(self, session_id: str) -> Flow[SessionRecord | None]:
        row = yield Call("hmget", (self._k("s", session_id), ["data", "version"]))
        return self._record(session_id, row)

    def _fetch(self, ids: Sequence[str]) -> Flow[list[SessionRecord | None]]:
        calls = [Call("hmget", (self._k("s", sid), ["data", "version"])) for sid in ids]
        rows = yield Pipe(calls)
        return [self._record(sid, row) for sid, row in zip(ids, rows, strict=True)]

    def _put(self, record: SessionRecord, expected_version: int | None) -> Flow[SessionRecord]:
        keys = [self._k("s", record.id)]
        result = yield Eval(PUT, keys, self._put_args(record, expected_version))
        return self._put_result(record, expected_version, result)

    def _query(self, q: RecordQuery) -> Flow[list[SessionRecord]]:
        groups = self._groups(q)
        if len(groups) == 1 and len(groups[0]) == 1:
            # one index answers the filter exactly: page on the server
            stop = -1 if q.limit is None else q.offset + q.limit - 1
            members = yield Call("zrange", (groups[0][0], q.offset, stop))
            ids = [text(m) or "" for m in members]
            return [r for r in (yield from self._fetch(ids)) if r is not None and q.matches(r)]
        sizes = iter((yield Pipe([Call("zcard", (key,)) for g in groups for key in g])))
        smallest = min(groups, key=lambda g: sum(int(next(sizes)) for _ in g))
        ranges = [Call("zrange", (key, 0, -1), {"withscores": True}) for key in smallest]
        ids = self._merge((yield Pipe(ranges)))
        out: list[SessionRecord] = []
        skip = q.offset
        for start in range(0, len(ids), _CHUNK):
            for r in (yield from self._fetch(ids[start : start + _CHUNK])):
                if r is None or not q.matches(r):
                    continue
                if skip:
                    skip -= 1
                    continue
                out.append(r)
                if q.limit is not None and len(out) >= q.limit:
                    return out
        return out

    def _delete(self, session_id: str) -> Flow[bool]:
        keys = [self._k("s", session_id), self._k("ev", session_id), self._k("tok", session_id)]
        return bool((yield Eval(DELETE, keys, [self._prefix, session_id])))

    def _append_event(self, session_id: str, event: Event) -> Flow[None]:
        key = self._k("ev", session_id)
        calls = [
            Call("rpush", (key, event.to_json())),
            Call("ltrim", (key, -self.timeline_limit, -1)),
        ]
        yield Pipe(calls, transaction=True)

    def _events(self, session_id: str) -> Flow[list[Event]]:
        items = yield Call("lrange", (self._k("ev", session_id), 0, -1))
        return [decode_event(session_id, item) for item in items]

    def _get_token(self, session_id: str) -> Flow[StoredToken | None]:
        fields = ["blob", "skew", "version", "fence", "updated_at"]
        row = yield Call("hmget", (self._k("tok", session_id), fields))
        return self._token(session_id, row)

    def _put_token_flow(
        self, session_id: str, token: TokenSet, skew: float, fence: int | None
    ) -> Flow[StoredToken]:
        args, now = self._token_args(token, skew, fence)
        keys = [self._k("tok", session_id), self._k("tokfence", session_id)]
        ok, value = (int(x) for x in (yield Eval(PUT_TOKEN, keys, args)))
        if not ok:
            raise FencingError(session_id, fence or 0, value)
        return StoredToken(token=token, skew=skew, version=value, fence=fence, updated_at=now)

    def _lock_try(self, name: str, holder: str, ttl: float) -> Flow[int | None]:
        keys = [self._k("lock", name), self._k("lockfence", name)]
        return int((yield Eval(LOCK_TRY, keys, [holder, ttl_ms(ttl)]))) or None

    def _lock_release(self, name: str, holder: str) -> Flow[bool]:
        return bool((yield Eval(LOCK_RELEASE, [self._k("lock", name)], [holder])))

    def _lock_renew(self, name: str, holder: str, ttl: float) -> Flow[bool]:
        return bool((yield Eval(LOCK_RENEW, [self._k("lock", name)], [holder, ttl_ms(ttl)])))

    def _ping(self) -> Flow[bool]:
        return bool((yield Call("ping")))

    # ============================================= sync API: on redis.Redis

    def get(self, session_id: str) -> SessionRecord | None:
        return self._run(self._get(session_id))

    def put(self, record: SessionRecord, *, expected_version: int | None) -> SessionRecord:
        return self._run(self._put(record, expected_version))

    def _select(self, q: RecordQuery) -> list[SessionRecord]:
        return self._run(self._query(q))

    def delete(self, session_id: str) -> bool:
        return self._run(self._delete(session_id))

    def append_event(self, session_id: str, event: Event) -> None:
        self._run(self._append_event(session_id, event))

    def events(self, session_id: str) -> list[Event]:
        return self._run(self._events(session_id))

    def get_token(self, session_id: str) -> StoredToken | None:
        return self._run(self._get_token(session_id))

    def _put_token(
        self, session_id: str, token: TokenSet, skew: float, fence: int | None
    ) -> StoredToken:
        return self._run(self._put_token_flow(session_id, token, skew, fence))

    def lock_try(self, name: str, holder: str, ttl: float) -> int | None:
        return self._run(self._lock_try(name, holder, ttl))

    def lock_release(self, name: str, holder: str) -> bool:
        return self._run(self._lock_release(name, holder))

    def lock_renew(self, name: str, holder: str, ttl: float) -> bool:
        return self._run(self._lock_renew(name, holder, ttl))

    def ping(self) -> bool:
        """True if the server answers (raises StoreUnavailableError if not)."""
        return self._run(self._ping())

    def close(self) -> None:
        """Close the sync connections (idempotent); async clients need :meth:`aclose`."""
        if not self._closed:
            self._closed = True
            self._client.close()

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ============================ async API: on this loop's redis.asyncio.Redis

    async def aget(self, session_id: str) -> SessionRecord | None:
        return await self._arun(self._get(session_id))

    async def aput(self, record: SessionRecord, *, expected_version: int | None) -> SessionRecord:
        return await self._arun(self._put(record, expected_version))

    async def _aselect(self, q: RecordQuery) -> list[SessionRecord]:
        return await self._arun(self._query(q))

    async def adelete(self, session_id: str) -> bool:
        return await self._arun(self._delete(session_id))

    async def aappend_event(self, session_id: str, event: Event) -> None:
        await self._arun(self._append_event(session_id, event))

    async def aevents(self, session_id: str) -> list[Event]:
        return await self._arun(self._events(session_id))

    async def aget_token(self, session_id: str) -> StoredToken | None:
        return await self._arun(self._get_token(session_id))

    async def _aput_token(
        self, session_id: str, token: TokenSet, skew: float, fence: int | None
    ) -> StoredToken:
        return await self._arun(self._put_token_flow(session_id, token, skew, fence))

    async def alock_try(self, name: str, holder: str, ttl: float) -> int | None:
        return await self._arun(self._lock_try(name, holder, ttl))

    async def alock_release(self, name: str, holder: str) -> bool:
        return await self._arun(self._lock_release(name, holder))

    async def alock_renew(self, name: str, holder: str, ttl: float) -> bool:
        return await self._arun(self._lock_renew(name, holder, ttl))

    async def aping(self) -> bool:
        """Async :meth:`ping`."""
        return await self._arun(self._ping())

    async def aclose(self) -> None:
        """Close this event loop's async client and the sync connections."""
        client = None
        with contextlib.suppress(RuntimeError):
            client = self._aclients.pop(asyncio.get_running_loop(), None)
        self.close()
        if client is not None:
            await client.aclose()


# The public names defined here show the module they are imported from.
for _public in (RedisStore,):
    _public.__module__ = "authpulse"
del _public
