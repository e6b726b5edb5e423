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
    sched              zset   session ids scored by due time (``redis_schedule``)
    lock:<name>        string the holder's random id, with the lock's TTL
    lockfence:<name>   string the fence counter (INCR)

The compare-and-set write, the delete, the fenced token write and the lock
operations are Lua scripts, so each is atomic on the server. Each operation
is one flow of wire steps (``redis_wire``), written once: the records and
token sets in ``redis_records``, the timelines in ``redis_timeline``, the
locks in ``redis_locks``; :class:`RedisStore` runs them on ``redis.Redis``
or on ``redis.asyncio.Redis``. Lock TTLs run
on the Redis server's clock. Not for Redis Cluster (scripts touch keys
they compute).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Iterator
from typing import Any, TypeVar

from .._core.errors import ConfigurationError, UsageError
from .._core.model import SessionRecord
from .._core.tokens import TokenSet
from .._runtime.clock import Clock, SystemClock
from .._runtime.events import Event
from .base import (
    RecordQuery,
    StoreBase,
    StoredToken,
    StoreError,
    StoreUnavailableError,
    check_timeline_limit,
)
from .crypto import EncryptionKeys, TokenCipher
from .redis_locks import lock_release, lock_renew, lock_try
from .redis_records import (
    delete_session,
    get_record,
    put_record,
    query_records,
    read_token,
    write_token,
)
from .redis_schedule import RedisSchedule
from .redis_timeline import append_event, read_events
from .redis_wire import (
    NAMESPACE,
    Call,
    Eval,
    Flow,
    Keys,
    Step,
    parse_url,
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


def _ping() -> Flow[bool]:
    return bool((yield Call("ping")))


class RedisStore(RedisSchedule, StoreBase):
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
        self._keys = Keys(namespace + ":")
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

    def _put_token_flow(
        self, session_id: str, token: TokenSet, skew: float, fence: int | None
    ) -> Flow[StoredToken]:
        now = self._clock.now()
        return write_token(self._keys, self._cipher, session_id, token, skew, fence, now)

    # ============================================= sync API: on redis.Redis

    def get(self, session_id: str) -> SessionRecord | None:
        return self._run(get_record(self._keys, session_id))

    def put(self, record: SessionRecord, *, expected_version: int | None) -> SessionRecord:
        return self._run(put_record(self._keys, record, expected_version))

    def _select(self, q: RecordQuery) -> list[SessionRecord]:
        return self._run(query_records(self._keys, q))

    def delete(self, session_id: str) -> bool:
        return self._run(delete_session(self._keys, session_id))

    def append_event(self, session_id: str, event: Event) -> None:
        self._run(append_event(self._keys, self.timeline_limit, session_id, event))

    def events(self, session_id: str) -> list[Event]:
        return self._run(read_events(self._keys, session_id))

    def get_token(self, session_id: str) -> StoredToken | None:
        return self._run(read_token(self._keys, self._cipher, session_id))

    def _put_token(
        self, session_id: str, token: TokenSet, skew: float, fence: int | None
    ) -> StoredToken:
        return self._run(self._put_token_flow(session_id, token, skew, fence))

    def lock_try(self, name: str, holder: str, ttl: float) -> int | None:
        return self._run(lock_try(self._keys, name, holder, ttl))

    def lock_release(self, name: str, holder: str) -> bool:
        return self._run(lock_release(self._keys, name, holder))

    def lock_renew(self, name: str, holder: str, ttl: float) -> bool:
        return self._run(lock_renew(self._keys, name, holder, ttl))

    def ping(self) -> bool:
        """True if the server answers (raises StoreUnavailableError if not)."""
        return self._run(_ping())

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
        return await self._arun(get_record(self._keys, session_id))

    async def aput(self, record: SessionRecord, *, expected_version: int | None) -> SessionRecord:
        return await self._arun(put_record(self._keys, record, expected_version))

    async def _aselect(self, q: RecordQuery) -> list[SessionRecord]:
        return await self._arun(query_records(self._keys, q))

    async def adelete(self, session_id: str) -> bool:
        return await self._arun(delete_session(self._keys, session_id))

    async def aappend_event(self, session_id: str, event: Event) -> None:
        await self._arun(append_event(self._keys, self.timeline_limit, session_id, event))

    async def aevents(self, session_id: str) -> list[Event]:
        return await self._arun(read_events(self._keys, session_id))

    async def aget_token(self, session_id: str) -> StoredToken | None:
        return await self._arun(read_token(self._keys, self._cipher, session_id))

    async def _aput_token(
        self, session_id: str, token: TokenSet, skew: float, fence: int | None
    ) -> StoredToken:
        return await self._arun(self._put_token_flow(session_id, token, skew, fence))

    async def alock_try(self, name: str, holder: str, ttl: float) -> int | None:
        return await self._arun(lock_try(self._keys, name, holder, ttl))

    async def alock_release(self, name: str, holder: str) -> bool:
        return await self._arun(lock_release(self._keys, name, holder))

    async def alock_renew(self, name: str, holder: str, ttl: float) -> bool:
        return await self._arun(lock_renew(self._keys, name, holder, ttl))

    async def aping(self) -> bool:
        """Async :meth:`ping`."""
        return await self._arun(_ping())

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
