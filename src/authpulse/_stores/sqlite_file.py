"""The SQLite store's file: its schema, creating it private, opening it while other
connections hold it, and what a ``sqlite3`` error means for the store.

Real seconds, not the injected clock: the ``timeout`` here is SQLite's busy
timeout, which SQLite itself counts in real time.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from pathlib import Path

from .base import StoreError, StoreUnavailableError

__all__ = ["SCHEMA_VERSION", "create_private_file", "setup_when_free", "translate"]

SCHEMA_VERSION = 2  #: 2 added the schedule (an index of sessions by due time)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at REAL NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_created ON sessions (created_at, id);
CREATE INDEX IF NOT EXISTS sessions_owner ON sessions (owner, created_at, id);
CREATE INDEX IF NOT EXISTS sessions_status ON sessions (status, created_at, id);
CREATE INDEX IF NOT EXISTS sessions_kind ON sessions (kind, created_at, id);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_session ON events (session_id, seq);
CREATE TABLE IF NOT EXISTS tokens (
    session_id TEXT PRIMARY KEY,
    blob BLOB NOT NULL,
    skew REAL NOT NULL,
    version INTEGER NOT NULL,
    fence INTEGER,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS token_fences (
    session_id TEXT PRIMARY KEY,
    highest INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS schedule (
    session_id TEXT PRIMARY KEY,
    due_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS schedule_due ON schedule (due_at, session_id);
CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY,
    holder TEXT,
    fence INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
"""

#: backoff between tries of the setup while another connection holds the file
#: (real seconds, doubling), as StoreLock.acquire polls
_RETRY_MIN = 0.005
_RETRY_MAX = 0.1


def _is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says another connection holds the database (busy or locked)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return True
    return "locked" in str(exc)


def _busy_ms(seconds: float) -> int:
    """``seconds`` as SQLite's busy timeout: whole milliseconds that fit its int."""
    return int(max(0.0, min(seconds, 2_000_000.0)) * 1000)


def create_private_file(path: Path) -> None:
    """Create the database file readable by its owner only (0600). An existing
    file keeps its mode; SQLite gives the -wal and -shm files the same."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise StoreUnavailableError(
            f"cannot create the SQLite database {str(path)!r}: {exc.strerror}"
        ) from None
    os.close(fd)


def translate(exc: sqlite3.Error, waited: float, path: Path, timeout: float) -> StoreError:
    """The store's error for ``exc``, raised after ``waited`` seconds."""
    where = repr(str(path))
    if _is_busy(exc):
        return StoreUnavailableError(
            f"SQLite database {where} stayed locked by another connection: "
            f"waited {waited:.2f} s (timeout {timeout:g} s)"
        )
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailableError(f"SQLite database {where} is unavailable: {exc}")
    return StoreError(f"SQLite database {where} failed: {type(exc).__name__}: {exc}")


def setup_when_free(
    db: sqlite3.Connection, path: Path, timeout: float, started: float, lock: threading.RLock
) -> None:
    """Run :func:`_setup`, trying again while another connection holds the file,
    until ``timeout`` seconds have passed since ``started``.

    SQLite's busy timeout does not cover all of the setup: switching a file
    to WAL mode while another connection writes to it (another process
    creating the same new file) fails at once, without waiting. Every try
    gets the time that is left as its busy timeout, so the whole open waits
    at most ``timeout`` seconds.
    """
    delay = _RETRY_MIN
    while True:
        waited = time.monotonic() - started
        remaining = timeout - waited
        try:
            db.execute(f"PRAGMA busy_timeout = {_busy_ms(remaining)}")
            _setup(db, path, lock)
        except sqlite3.Error as exc:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            waited = time.monotonic() - started
            remaining = timeout - waited
            if not _is_busy(exc) or remaining <= 0:
                raise translate(exc, waited, path, timeout) from exc
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, _RETRY_MAX)
        else:
            break
    try:
        db.execute(f"PRAGMA busy_timeout = {_busy_ms(timeout)}")
    except sqlite3.Error as exc:
        raise translate(exc, time.monotonic() - started, path, timeout) from exc


def _setup(db: sqlite3.Connection, path: Path, lock: threading.RLock) -> None:
    """WAL mode, then the schema: idempotent, so a try that found the file
    busy can run again. Raises the ``sqlite3`` errors as they are."""
    with lock:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()
        if not mode or str(mode[0]).lower() != "wal":
            raise StoreError(f"SQLite database {str(path)!r} cannot use WAL mode")
        db.execute("PRAGMA synchronous=NORMAL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"SQLite database {str(path)!r} has schema version {version}; "
                f"this authpulse knows version {SCHEMA_VERSION} at most"
            )
        db.execute("BEGIN IMMEDIATE")
        # every statement of the schema is idempotent: an older file gains what it lacks
        if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")
