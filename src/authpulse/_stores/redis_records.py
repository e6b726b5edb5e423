"""The Redis store's records and token sets: how each is kept in a hash, and the
operations on them.

Every operation is one flow of wire steps (``redis_wire``) that the store runs
on ``redis.Redis`` or on ``redis.asyncio.Redis``; nothing here talks to a server.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from .._core.model import SessionRecord
from .._core.tokens import TokenSet
from .base import (
    CorruptRecordError,
    FencingError,
    RecordQuery,
    StoredToken,
    VersionConflictError,
)
from .codec import decode_record, encode_record
from .crypto import TokenCipher, decode_token_set, encode_token_set
from .redis_wire import DELETE, PUT, PUT_TOKEN, Call, Eval, Flow, Keys, Pipe, text

__all__ = [
    "delete_session",
    "get_record",
    "put_args",
    "put_record",
    "put_result",
    "query_records",
    "read_token",
    "write_token",
]

#: records fetched per pipeline while a query filters on the client
_CHUNK = 200

_TOKEN_FIELDS = ["blob", "skew", "version", "fence", "updated_at"]

# ------------------------------------------------------------------ coding


def put_args(keys: Keys, record: SessionRecord, expected_version: int | None) -> list[str | int]:
    data = encode_record(record, (expected_version or 0) + 1)
    return [
        "" if expected_version is None else str(expected_version),
        data,
        record.owner,
        record.status.value,
        record.kind.value,
        repr(float(record.created_at)),
        record.id,
        keys.prefix,
    ]


def put_result(record: SessionRecord, expected_version: int | None, result: Any) -> SessionRecord:
    ok, version = int(result[0]), int(result[1])
    if not ok:
        raise VersionConflictError(record.id, expected_version, version if version >= 0 else None)
    return replace(record, version=version)


def _record(session_id: str, row: Sequence[Any]) -> SessionRecord | None:
    data, version = row
    if data is None:
        return None
    return decode_record(session_id, data, version)


def _token(cipher: TokenCipher | None, session_id: str, row: Sequence[Any]) -> StoredToken | None:
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
        token=decode_token_set(blob, cipher, session_id=session_id),
        skew=skew_f,
        version=version_i,
        fence=fence_i,
        updated_at=updated_f,
    )


def _groups(keys: Keys, q: RecordQuery) -> list[list[str]]:
    """The indexes that answer ``q``: one group per filter, any member of a group."""
    groups: list[list[str]] = []
    if q.owner is not None:
        groups.append([keys.of("idx:owner", q.owner)])
    if q.statuses is not None:
        groups.append([keys.of("idx:status", s.value) for s in sorted(q.statuses)])
    if q.kind is not None:
        groups.append([keys.of("idx:kind", q.kind.value)])
    return groups or [[keys.prefix + "idx:all"]]


def _merge(ranges: Iterable[Sequence[tuple[bytes, float]]]) -> list[str]:
    pairs = {(float(score), text(member) or "") for rng in ranges for member, score in rng}
    return [member for _, member in sorted(pairs)]


# -------------------------------------------------------------- the operations


def get_record(keys: Keys, session_id: str) -> Flow[SessionRecord | None]:
    row = yield Call("hmget", (keys.of("s", session_id), ["data", "version"]))
    return _record(session_id, row)


def _fetch(keys: Keys, ids: Sequence[str]) -> Flow[list[SessionRecord | None]]:
    calls = [Call("hmget", (keys.of("s", sid), ["data", "version"])) for sid in ids]
    rows = yield Pipe(calls)
    return [_record(sid, row) for sid, row in zip(ids, rows, strict=True)]


def put_record(
    keys: Keys, record: SessionRecord, expected_version: int | None
) -> Flow[SessionRecord]:
    result = yield Eval(PUT, [keys.of("s", record.id)], put_args(keys, record, expected_version))
    return put_result(record, expected_version, result)


def query_records(keys: Keys, q: RecordQuery) -> Flow[list[SessionRecord]]:
    groups = _groups(keys, q)
    if len(groups) == 1 and len(groups[0]) == 1:
        # one index answers the filter exactly: page on the server
        stop = -1 if q.limit is None else q.offset + q.limit - 1
        members = yield Call("zrange", (groups[0][0], q.offset, stop))
        ids = [text(m) or "" for m in members]
        return [r for r in (yield from _fetch(keys, ids)) if r is not None and q.matches(r)]
    sizes = iter((yield Pipe([Call("zcard", (key,)) for g in groups for key in g])))
    smallest = min(groups, key=lambda g: sum(int(next(sizes)) for _ in g))
    ranges = [Call("zrange", (key, 0, -1), {"withscores": True}) for key in smallest]
    ids = _merge((yield Pipe(ranges)))
    out: list[SessionRecord] = []
    skip = q.offset
    for start in range(0, len(ids), _CHUNK):
        for r in (yield from _fetch(keys, ids[start : start + _CHUNK])):
            if r is None or not q.matches(r):
                continue
            if skip:
                skip -= 1
                continue
            out.append(r)
            if q.limit is not None and len(out) >= q.limit:
                return out
    return out


def delete_session(keys: Keys, session_id: str) -> Flow[bool]:
    """Delete the record, its timeline and its token set (one script), then its
    entry in the schedule."""
    names = [keys.of("s", session_id), keys.of("ev", session_id), keys.of("tok", session_id)]
    deleted = bool((yield Eval(DELETE, names, [keys.prefix, session_id])))
    yield Call("zrem", (keys.prefix + "sched", session_id))
    return deleted


def read_token(keys: Keys, cipher: TokenCipher | None, session_id: str) -> Flow[StoredToken | None]:
    row = yield Call("hmget", (keys.of("tok", session_id), _TOKEN_FIELDS))
    return _token(cipher, session_id, row)


def write_token(
    keys: Keys,
    cipher: TokenCipher | None,
    session_id: str,
    token: TokenSet,
    skew: float,
    fence: int | None,
    now: float,
) -> Flow[StoredToken]:
    """Write the token set, fenced (``now`` stamps ``updated_at``)."""
    blob = encode_token_set(token, cipher)
    # the blob is bytes; redis-py sends bytes unchanged
    args: list[Any] = [blob, repr(skew), "" if fence is None else str(fence), repr(now)]
    names = [keys.of("tok", session_id), keys.of("tokfence", session_id)]
    ok, value = (int(x) for x in (yield Eval(PUT_TOKEN, names, args)))
    if not ok:
        raise FencingError(session_id, fence or 0, value)
    return StoredToken(token=token, skew=skew, version=value, fence=fence, updated_at=now)
