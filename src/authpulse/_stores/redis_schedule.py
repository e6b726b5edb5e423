"""The Redis store's schedule (see ``schedule``): the sorted set ``sched`` of
session ids scored by due time, and the batch creation of sessions.

Each operation is one flow of wire steps (``redis_wire``) that the store runs
on ``redis.Redis`` or on ``redis.asyncio.Redis``; :class:`RedisSchedule` binds
them as the store's sync and async methods.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .base import VersionConflictError
from .crypto import TokenCipher, encode_token_set
from .redis_records import put_args, put_result
from .redis_wire import PUT, PUT_TOKEN, Call, Eval, Flow, Keys, Pipe, Script, text
from .schedule import NewSession, check_due_limit, check_due_time

if TYPE_CHECKING:
    from .._runtime.clock import Clock

__all__ = ["RedisSchedule", "create_many", "peek_due", "pop_due", "put_due", "remove_due"]

_T = TypeVar("_T")

#: entries sent per command or pipeline
_CHUNK = 1000

# KEYS[1] the schedule; ARGV: now, limit. Removes and returns the entries due,
# earliest first, as {id, due, id, due, ...}.
POP_DUE = Script(
    """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[2])
for i = 1, #due, 2 do redis.call('ZREM', KEYS[1], due[i]) end
return due
"""
)


def _pairs(flat: Sequence[Any]) -> list[tuple[str, float]]:
    return [(text(flat[i]) or "", float(text(flat[i + 1]) or "0")) for i in range(0, len(flat), 2)]


def put_due(keys: Keys, entries: Iterable[tuple[str, float]]) -> Flow[None]:
    items = [(sid, check_due_time(at)) for sid, at in entries]
    sched = keys.prefix + "sched"
    for start in range(0, len(items), _CHUNK):
        yield Call("zadd", (sched, dict(items[start : start + _CHUNK])))


def peek_due(keys: Keys, now: float, limit: int) -> Flow[list[tuple[str, float]]]:
    check_due_limit(limit)
    rows = yield Call(
        "zrangebyscore",
        (keys.prefix + "sched", "-inf", repr(float(now))),
        {"start": 0, "num": limit, "withscores": True},
    )
    return [(text(m) or "", float(score)) for m, score in rows]


def pop_due(keys: Keys, now: float, limit: int) -> Flow[list[tuple[str, float]]]:
    check_due_limit(limit)
    flat = yield Eval(POP_DUE, [keys.prefix + "sched"], [repr(float(now)), limit])
    return _pairs(flat)


def remove_due(keys: Keys, session_id: str) -> Flow[bool]:
    return bool((yield Call("zrem", (keys.prefix + "sched", session_id))))


def create_many(
    keys: Keys,
    cipher: TokenCipher | None,
    sessions: Sequence[NewSession],
    now: float,
) -> Flow[None]:
    """Check that no session of the batch exists, then write each one as
    ``put`` and ``put_token`` would, pipelined ``_CHUNK`` sessions at a time."""
    for start in range(0, len(sessions), _CHUNK):
        chunk = sessions[start : start + _CHUNK]
        found = yield Pipe([Call("exists", (keys.of("s", n.record.id),)) for n in chunk])
        for n, exists in zip(chunk, found, strict=True):
            if int(exists):
                raise VersionConflictError(n.record.id, None, None)
    yield Pipe([Call("script_load", (PUT.source,)), Call("script_load", (PUT_TOKEN.source,))])
    sched = keys.prefix + "sched"
    for start in range(0, len(sessions), _CHUNK):
        chunk = sessions[start : start + _CHUNK]
        calls: list[Call] = []
        for n in chunk:
            r = n.record
            calls.append(
                Call("evalsha", (PUT.sha, 1, keys.of("s", r.id), *put_args(keys, r, None)))
            )
            if n.token is not None:
                blob = encode_token_set(n.token, cipher)
                names = (keys.of("tok", r.id), keys.of("tokfence", r.id))
                calls.append(
                    Call("evalsha", (PUT_TOKEN.sha, 2, *names, blob, "0.0", "", repr(now)))
                )
            if n.event is not None:  # one event: within any timeline limit
                calls.append(Call("rpush", (keys.of("ev", r.id), n.event.to_json())))
        due = {n.record.id: check_due_time(n.due_at) for n in chunk if n.due_at is not None}
        if due:
            calls.append(Call("zadd", (sched, due)))
        replies = iter((yield Pipe(calls)))
        for n in chunk:
            put_result(n.record, None, next(replies))
            for _ in range((n.token is not None) + (n.event is not None)):
                next(replies)


class RedisSchedule:
    """The schedule operations of :class:`RedisStore`, on its two drivers."""

    _keys: Keys
    _cipher: TokenCipher | None
    _clock: Clock

    if TYPE_CHECKING:

        def _run(self, flow: Flow[_T]) -> _T: ...

        async def _arun(self, flow: Flow[_T]) -> _T: ...

    def put_due(self, session_id: str, due_at: float) -> None:
        self._run(put_due(self._keys, [(session_id, due_at)]))

    def put_due_many(self, entries: Iterable[tuple[str, float]]) -> None:
        self._run(put_due(self._keys, entries))

    def peek_due(self, now: float, limit: int) -> list[tuple[str, float]]:
        return self._run(peek_due(self._keys, now, limit))

    def pop_due(self, now: float, limit: int) -> list[tuple[str, float]]:
        return self._run(pop_due(self._keys, now, limit))

    def remove_due(self, session_id: str) -> bool:
        return self._run(remove_due(self._keys, session_id))

    def create_many(self, sessions: Sequence[NewSession]) -> None:
        """Refuses the whole batch if a session of it is stored already; a writer
        that stores one of its ids at the same time makes just that one fail."""
        now = self._clock.now()
        flow = create_many(self._keys, self._cipher, sessions, now)
        self._run(flow)

    async def aput_due(self, session_id: str, due_at: float) -> None:
        await self._arun(put_due(self._keys, [(session_id, due_at)]))

    async def aput_due_many(self, entries: Iterable[tuple[str, float]]) -> None:
        await self._arun(put_due(self._keys, entries))

    async def apeek_due(self, now: float, limit: int) -> list[tuple[str, float]]:
        return await self._arun(peek_due(self._keys, now, limit))

    async def apop_due(self, now: float, limit: int) -> list[tuple[str, float]]:
        return await self._arun(pop_due(self._keys, now, limit))

    async def aremove_due(self, session_id: str) -> bool:
        return await self._arun(remove_due(self._keys, session_id))

    async def acreate_many(self, sessions: Sequence[NewSession]) -> None:
        now = self._clock.now()
        flow = create_many(self._keys, self._cipher, sessions, now)
        await self._arun(flow)
