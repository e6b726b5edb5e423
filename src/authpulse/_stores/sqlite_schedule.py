"""The SQLite store's schedule (see ``schedule``): the table ``schedule``
``(session_id, due_at)`` with an index on ``due_at``, so finding what is due
costs one index seek however many sessions the file holds; and the batch
creation of sessions in one transaction.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from .base import VersionConflictError
from .codec import encode_record
from .crypto import TokenCipher, encode_token_set
from .schedule import NewSession, check_due_limit, check_due_time

if TYPE_CHECKING:
    from .._runtime.clock import Clock

__all__ = ["SQLiteSchedule"]

_DUE = "SELECT session_id, due_at FROM schedule WHERE due_at <= ? ORDER BY due_at LIMIT ?"


class SQLiteSchedule:
    """The schedule operations of :class:`SQLiteStore` (its connection helpers
    ``_conn`` and ``_write`` do the locking and the error translation)."""

    _cipher: TokenCipher | None
    _clock: Clock

    if TYPE_CHECKING:

        def _conn(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...

        def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...

    def put_due(self, session_id: str, due_at: float) -> None:
        self.put_due_many([(session_id, due_at)])

    def put_due_many(self, entries: Iterable[tuple[str, float]]) -> None:
        rows = [(sid, check_due_time(at)) for sid, at in entries]
        with self._write() as db:
            db.executemany(
                "INSERT INTO schedule (session_id, due_at) VALUES (?, ?) "
                "ON CONFLICT (session_id) DO UPDATE SET due_at = excluded.due_at",
                rows,
            )

    def peek_due(self, now: float, limit: int) -> list[tuple[str, float]]:
        check_due_limit(limit)
        with self._conn() as db:
            rows = db.execute(_DUE, (now, limit)).fetchall()
        return [(str(r[0]), float(r[1])) for r in rows]

    def pop_due(self, now: float, limit: int) -> list[tuple[str, float]]:
        check_due_limit(limit)
        with self._write() as db:
            rows = db.execute(_DUE, (now, limit)).fetchall()
            db.executemany("DELETE FROM schedule WHERE session_id = ?", [(r[0],) for r in rows])
        return [(str(r[0]), float(r[1])) for r in rows]

    def remove_due(self, session_id: str) -> bool:
        with self._conn() as db:
            cur = db.execute("DELETE FROM schedule WHERE session_id = ?", (session_id,))
            return cur.rowcount > 0

    def create_many(self, sessions: Sequence[NewSession]) -> None:
        """Every session of the batch in one transaction: all stored, or none."""
        now = self._clock.now()
        records = [
            (r.owner, r.status.value, r.kind.value, r.created_at, 1, encode_record(r, 1), r.id)
            for r in (n.record for n in sessions)
        ]
        tokens = [
            (n.record.id, encode_token_set(n.token, self._cipher), now)
            for n in sessions
            if n.token is not None
        ]
        with self._write() as db:
            try:
                db.executemany(
                    "INSERT INTO sessions (owner, status, kind, created_at, version, data, id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    records,
                )
            except sqlite3.IntegrityError:
                db.execute("ROLLBACK")  # so that only the rows stored before count
                raise self._conflict(db, sessions) from None
            db.executemany(
                "INSERT INTO tokens (session_id, blob, skew, version, fence, updated_at) "
                "VALUES (?, ?, 0.0, 1, NULL, ?) ON CONFLICT (session_id) DO UPDATE SET "
                "blob = excluded.blob, skew = 0.0, version = version + 1, fence = NULL, "
                "updated_at = excluded.updated_at",
                tokens,
            )
            db.executemany(
                "INSERT INTO events (session_id, data) VALUES (?, ?)",
                [(n.record.id, n.event.to_json()) for n in sessions if n.event is not None],
            )
            db.executemany(
                "INSERT INTO schedule (session_id, due_at) VALUES (?, ?) "
                "ON CONFLICT (session_id) DO UPDATE SET due_at = excluded.due_at",
                [(n.record.id, n.due_at) for n in sessions if n.due_at is not None],
            )

    @staticmethod
    def _conflict(db: sqlite3.Connection, sessions: Sequence[NewSession]) -> VersionConflictError:
        """The error for a batch that names a session already stored (or twice)."""
        seen: set[str] = set()
        for n in sessions:
            sid = n.record.id
            row = db.execute("SELECT version FROM sessions WHERE id = ?", (sid,)).fetchone()
            if row is not None or sid in seen:
                return VersionConflictError(sid, None, row[0] if row is not None else None)
            seen.add(sid)
        return VersionConflictError(sessions[0].record.id, None, None)  # pragma: no cover
