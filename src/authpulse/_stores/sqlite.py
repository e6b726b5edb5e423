"""The embedded persistent store, on the standard library's ``sqlite3``.

One database file holds the sessions, their bounded timelines, their token
sets (optionally encrypted), the schedule (``sqlite_schedule``) and the
named locks. The file is created with
mode 0600 and runs in WAL mode, so readers do not wait for the writer.
Every write is one statement or one ``BEGIN IMMEDIATE`` transaction, which
makes the store safe for many threads (one connection behind a lock) and
for many processes on one host (SQLite's file locking). Optimistic
concurrency is ``UPDATE ... WHERE version = ?``; a lock is a row
``(name, holder, fence, expires_at)`` whose TTL runs on the wall clock.

The file itself (the schema, creating it private, opening it while other
connections hold it, and what a ``sqlite3`` error means) is ``sqlite_file``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import ParamSpec, TypeVar

from .._core.errors import ConfigurationError, UsageError
from .._core.model import SessionRecord
from .._core.tokens import TokenSet
from .._runtime.clock import Clock, SystemClock
from .._runtime.events import Event
from .base import (
    FencingError,
    OffloadedStore,
    RecordQuery,
    StoredToken,
    StoreError,
    VersionConflictError,
    check_timeline_limit,
)
from .codec import decode_event, decode_record, encode_record
from .codec import token_number as _num
from .crypto import EncryptionKeys, TokenCipher, decode_token_set, encode_token_set
from .lock import LockRecord, lock_taken
from .schedule import OffloadedSchedule
from .sqlite_file import create_private_file, setup_when_free, translate
from .sqlite_schedule import SQLiteSchedule

__all__ = ["SQLiteStore"]

_T = TypeVar("_T")
_P = ParamSpec("_P")


class SQLiteStore(SQLiteSchedule, OffloadedSchedule, OffloadedStore):
    """A persistent store in one SQLite file (see the module docstring).

    ``encryption_keys`` (Fernet keys, or a :class:`~authpulse.TokenCipher`)
    encrypt token sets at rest. ``timeout`` is how long opening the file or
    an operation waits for another connection's lock before raising
    :class:`StoreUnavailableError` (its message says how long it waited):
    processes that open the same new file at once take turns. ``timeline_limit`` bounds the events
    kept per session. Lock TTLs and ``updated_at`` use ``clock.now()``
    (default: the real clock).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        encryption_keys: EncryptionKeys = None,
        timeout: float = 5.0,
        timeline_limit: int = 200,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise ConfigurationError("timeout must be a number of seconds >= 0")
        self.path = Path(path)
        self.timeout = float(timeout)
        self.timeline_limit = check_timeline_limit(timeline_limit)
        self._cipher = TokenCipher.coerce(encryption_keys)
        self._clock = clock if clock is not None else SystemClock()
        self._lock = threading.RLock()
        create_private_file(self.path)
        # real seconds, not the injected clock: ``timeout`` is SQLite's busy
        # timeout, which SQLite itself counts in real time
        started = time.monotonic()
        try:
            db = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise self._translate(exc, time.monotonic() - started) from exc
        self._db: sqlite3.Connection | None = db
        try:
            setup_when_free(db, self.path, self.timeout, started, self._lock)
        except BaseException:
            db.close()
            self._db = None
            raise

    def __repr__(self) -> str:
        state = "closed" if self._db is None else "open"
        enc = ", encrypted" if self._cipher is not None else ""
        return f"SQLiteStore({str(self.path)!r}, {state}{enc})"

    # ----------------------------------------------------------------- plumbing

    def _translate(self, exc: sqlite3.Error, waited: float) -> StoreError:
        """The store's error for ``exc``, raised after ``waited`` seconds."""
        return translate(exc, waited, self.path, self.timeout)

    @contextlib.contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._db
            if db is None:
                raise UsageError("the SQLite store is closed")
            started = time.monotonic()  # real seconds, as SQLite's busy timeout
            try:
                yield db
            except sqlite3.Error as exc:
                waited = time.monotonic() - started
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise self._translate(exc, waited) from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed if the block succeeds."""
        with self._conn() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # ------------------------------------------------------------------ records

    def get(self, session_id: str) -> SessionRecord | None:
        with self._conn() as db:
            row = db.execute(
                "SELECT data, version FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
        return None if row is None else decode_record(session_id, row[0], row[1])

    def put(self, record: SessionRecord, *, expected_version: int | None) -> SessionRecord:
        version = (expected_version or 0) + 1
        data = encode_record(record, version)
        values = (record.owner, record.status.value, record.kind.value, record.created_at)
        with self._conn() as db:
            if expected_version is None:
                cur = db.execute(
                    "INSERT OR IGNORE INTO sessions (owner, status, kind, created_at, version, "
                    "data, id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (*values, version, data, record.id),
                )
            else:
                cur = db.execute(
                    "UPDATE sessions SET owner = ?, status = ?, kind = ?, created_at = ?, "
                    "version = ?, data = ? WHERE id = ? AND version = ?",
                    (*values, version, data, record.id, expected_version),
                )
            if cur.rowcount != 1:
                row = db.execute(
                    "SELECT version FROM sessions WHERE id = ?", (record.id,)
                ).fetchone()
                actual = row[0] if row is not None and isinstance(row[0], int) else None
                raise VersionConflictError(record.id, expected_version, actual)
        return replace(record, version=version)

    def _select(self, q: RecordQuery) -> list[SessionRecord]:
        where: list[str] = []
        args: list[object] = []
        if q.owner is not None:
            where.append("owner = ?")
            args.append(q.owner)
        if q.statuses is not None:
            where.append(f"status IN ({', '.join('?' * len(q.statuses))})")
            args.extend(sorted(s.value for s in q.statuses))
        if q.kind is not None:
            where.append("kind = ?")
            args.append(q.kind.value)
        sql = "SELECT id, data, version FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at, id LIMIT ? OFFSET ?"
        args += [-1 if q.limit is None else q.limit, q.offset]
        with self._conn() as db:
            rows = db.execute(sql, args).fetchall()
        return [decode_record(str(r[0]), r[1], r[2]) for r in rows]

    def delete(self, session_id: str) -> bool:
        with self._write() as db:
            db.execute("DELETE FROM events WHERE session_id = ?", (session_id,))
            db.execute("DELETE FROM tokens WHERE session_id = ?", (session_id,))
            db.execute("DELETE FROM schedule WHERE session_id = ?", (session_id,))
            cur = db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
            return cur.rowcount > 0

    # ------------------------------------------------------------------- events

    def append_event(self, session_id: str, event: Event) -> None:
        data = event.to_json()
        with self._write() as db:
            db.execute("INSERT INTO events (session_id, data) VALUES (?, ?)", (session_id, data))
            db.execute(
                "DELETE FROM events WHERE session_id = ? AND seq <= (SELECT seq FROM events "
                "WHERE session_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (session_id, session_id, self.timeline_limit),
            )

    def events(self, session_id: str) -> list[Event]:
        with self._conn() as db:
            rows = db.execute(
                "SELECT data FROM events WHERE session_id = ? ORDER BY seq", (session_id,)
            ).fetchall()
        return [decode_event(session_id, r[0]) for r in rows]

    # --------------------------------------------------------------- token sets

    def get_token(self, session_id: str) -> StoredToken | None:
        with self._conn() as db:
            row = db.execute(
                "SELECT blob, skew, version, fence, updated_at FROM tokens WHERE session_id = ?",
                (session_id,),
            ).fetchone()
        if row is None:
            return None
        blob, skew, version, fence, updated_at = row
        return StoredToken(
            token=decode_token_set(blob, self._cipher, session_id=session_id),
            skew=float(_num(session_id, "skew", skew)),
            version=_num(session_id, "version", version, integer=True),
            fence=None if fence is None else _num(session_id, "fence", fence, integer=True),
            updated_at=float(_num(session_id, "updated_at", updated_at)),
        )

    def _put_token(
        self, session_id: str, token: TokenSet, skew: float, fence: int | None
    ) -> StoredToken:
        blob = encode_token_set(token, self._cipher)
        with self._write() as db:
            if fence is not None:
                row = db.execute(
                    "SELECT highest FROM token_fences WHERE session_id = ?", (session_id,)
                ).fetchone()
                highest = row[0] if row is not None and isinstance(row[0], int) else None
                if highest is not None and fence < highest:
                    raise FencingError(session_id, fence, highest)
                db.execute(
                    "INSERT INTO token_fences (session_id, highest) VALUES (?, ?) "
                    "ON CONFLICT (session_id) DO UPDATE SET highest = excluded.highest",
                    (session_id, fence),
                )
            row = db.execute(
                "SELECT version FROM tokens WHERE session_id = ?", (session_id,)
            ).fetchone()
            version = (row[0] if row is not None and isinstance(row[0], int) else 0) + 1
            now = self._clock.now()
            db.execute(
                "INSERT OR REPLACE INTO tokens (session_id, blob, skew, version, fence, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, blob, skew, version, fence, now),
            )
        return StoredToken(token=token, skew=skew, version=version, fence=fence, updated_at=now)

    # -------------------------------------------------------------------- locks

    def _lock_change(
        self, name: str, change: Callable[[LockRecord | None, float], LockRecord | None]
    ) -> LockRecord | None:
        """Read the lock record, let ``change`` decide (given the clock's now), and
        write what it returns, in one transaction."""
        with self._write() as db:
            now = self._clock.now()
            row = db.execute(
                "SELECT holder, fence, expires_at FROM locks WHERE name = ?", (name,)
            ).fetchone()
            current = None
            if row is not None:
                fence = row[1] if isinstance(row[1], int) else 0
                expires_at = row[2] if isinstance(row[2], int | float) else 0.0
                current = LockRecord(row[0], fence, float(expires_at))
            changed = change(current, now)
            if changed is not None:
                db.execute(
                    "INSERT INTO locks (name, holder, fence, expires_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                    "fence = excluded.fence, expires_at = excluded.expires_at",
                    (name, changed.holder, changed.fence, changed.expires_at),
                )
            return changed

    def lock_try(self, name: str, holder: str, ttl: float) -> int | None:
        taken = self._lock_change(name, lambda cur, now: lock_taken(cur, holder, now, ttl))
        return None if taken is None else taken.fence

    # release and renew are lock_released / lock_renewed as one statement each
    # (no read first): the same rule, a holder whose TTL ran out holds nothing

    def lock_release(self, name: str, holder: str) -> bool:
        with self._conn() as db:
            cur = db.execute(
                "UPDATE locks SET holder = NULL, expires_at = 0 "
                "WHERE name = ? AND holder = ? AND expires_at > ?",
                (name, holder, self._clock.now()),
            )
            return cur.rowcount > 0

    def lock_renew(self, name: str, holder: str, ttl: float) -> bool:
        with self._conn() as db:
            now = self._clock.now()
            cur = db.execute(
                "UPDATE locks SET expires_at = ? WHERE name = ? AND holder = ? AND expires_at > ?",
                (now + ttl, name, holder, now),
            )
            return cur.rowcount > 0

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Close the connection (idempotent). Other operations then raise UsageError."""
        with self._lock:
            db, self._db = self._db, None
        if db is not None:
            db.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --------------------------------------------------------- async: off the loop

    async def _offload(self, fn: Callable[_P, _T], /, *args: _P.args, **kw: _P.kwargs) -> _T:
        return await asyncio.to_thread(fn, *args, **kw)


# The public names defined here show the module they are imported from.
for _public in (SQLiteStore,):
    _public.__module__ = "authpulse"
del _public
