"""One user's sessions on one machine, in the OS keychain or an encrypted file.

:class:`KeyringStore` is the store for a CLI or a desktop app. It keeps its
entries in the OS keychain through the ``keyring`` package (macOS Keychain,
Windows Credential Locker, Secret Service or KWallet on Linux) when keyring
has a usable backend; on a headless machine it falls back to an encrypted
file (``keyring_file``), never to plaintext, logs one INFO line on
``authpulse.store`` saying so, and :attr:`KeyringStore.backend` tells which
it used. Where the entries live and how they are read and written together
is ``keyring_vault``.

The entries of a store with namespace ``ns`` (in the keychain: items of
service ``authpulse:ns``): one per session, named by its id, holding the
record, its version and its token set; ``events <id>``, the last
``timeline_limit`` events of the session; `` index``, the ids (for
``query``); `` fences``, the highest fence used per session (kept after a
delete); `` locks``, the named locks, whose TTLs run on ``clock.now()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from .._core.errors import ConfigurationError, UsageError
from .._core.model import SessionRecord
from .._core.tokens import TokenSet
from .._runtime.clock import Clock, SystemClock
from .._runtime.events import Event
from .base import (
    CorruptRecordError,
    FencingError,
    OffloadedStore,
    RecordQuery,
    StoredToken,
    VersionConflictError,
    check_timeline_limit,
)
from .codec import decode_event, decode_record, encode_record, json_object
from .codec import token_number as _num
from .crypto import EncryptionKeys, TokenCipher, decode_token_set, encode_token_set
from .keyring_file import FileLock, default_directory, load_key, private_directory
from .keyring_vault import (
    FileVault,
    KeychainUnavailableError,
    KeychainVault,
    Transaction,
    Vault,
    find_keychain,
)
from .lock import LockRecord, lock_released, lock_renewed, lock_taken

__all__ = ["KeychainUnavailableError", "KeyringStore"]

_T = TypeVar("_T")
_P = ParamSpec("_P")

log = logging.getLogger("authpulse.store")

NAMESPACE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_INDEX, _FENCES, _LOCKS = " index", " fences", " locks"


def _events_entry(session_id: str) -> str:
    return f"events {session_id}"


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _list(txn: Transaction, name: str) -> list[Any]:
    text = txn.get(name)
    if text is None:
        return []
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, list):
        raise CorruptRecordError(name.strip(), "keyring entry", "not a JSON list")
    return data


class KeyringStore(OffloadedStore):
    """A store for one user's sessions on one machine (see the module docstring).

    ``namespace`` (letters, digits, ``_ . -``; default ``"default"``) keeps
    apart the stores of different apps. ``path`` is the encrypted file used
    without a keychain (default: ``<namespace>.store`` in the per-user data
    directory); ``keychain=False`` always uses the file, and
    ``require_keychain=True`` raises :class:`KeychainUnavailableError` instead
    of falling back. ``key`` (a Fernet key or a :class:`~authpulse.TokenCipher`)
    encrypts the file, else ``AUTHPULSE_KEYRING_KEY``, else a key file made
    beside it; in the keychain, a ``key`` also encrypts the token sets.
    ``timeout`` bounds, in real seconds, the wait for another process holding
    the store's lock file. Async operations run in a worker thread.

    .. versionadded:: unreleased
    """

    def __init__(
        self,
        *,
        namespace: str = "default",
        path: str | os.PathLike[str] | None = None,
        key: EncryptionKeys = None,
        keychain: bool = True,
        require_keychain: bool = False,
        timeline_limit: int = 100,
        timeout: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(namespace, str) or not NAMESPACE.match(namespace):
            raise ConfigurationError(
                "namespace must be 1-64 characters among letters, digits and _ . -"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise ConfigurationError("timeout must be a number of seconds >= 0")
        if require_keychain and not keychain:
            raise ConfigurationError("require_keychain=True contradicts keychain=False")
        self.namespace = namespace
        self.timeline_limit = check_timeline_limit(timeline_limit)
        self._clock = clock if clock is not None else SystemClock()
        self._closed = False
        file = Path(path) if path is not None else default_directory() / f"{namespace}.store"
        lock = FileLock(file.with_name(f"{file.name}.lock"), float(timeout))
        service = f"authpulse:{namespace}"
        reason = "the store was opened with keychain=False"
        if keychain:
            found, name, reason_or_none = find_keychain(service)
            if reason_or_none is None:
                private_directory(file.parent)  # the lock file's home
                self._token_cipher = TokenCipher.coerce(key)
                self._vault: Vault = KeychainVault(found, service, name, lock)
                return
            reason = reason_or_none
            if require_keychain:
                raise KeychainUnavailableError(
                    f"no usable OS keychain for the {namespace!r} store: {reason}"
                )
        private_directory(file.parent)
        cipher, key_from = load_key(key, file.with_name(f"{file.name}.key"))
        self._token_cipher = None  # the whole file is encrypted
        self._vault = FileVault(file, cipher, lock)
        if keychain:
            log.info(
                "KeyringStore %r: %s; using the encrypted file %s (key from the %s)",
                namespace,
                reason,
                file,
                key_from,
                extra={"authpulse_event": "keyring_fallback", "authpulse_store": self.backend},
            )

    @property
    def backend(self) -> str:
        """Where the entries are: ``keyring:<backend>`` or ``encrypted-file:<path>``."""
        return self._vault.backend

    def describe(self) -> str:
        """One line for people: which backend, which namespace."""
        where = self.backend
        return f"KeyringStore namespace {self.namespace!r} in {where}"

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"KeyringStore({self.namespace!r}, {self.backend!r}, {state})"

    def _txn(self) -> contextlib.AbstractContextManager[Transaction]:
        if self._closed:
            raise UsageError("the keyring store is closed")
        return self._vault.transaction()

    # ------------------------------------------------------------------ records

    def _entry(self, txn: Transaction, session_id: str) -> dict[str, Any] | None:
        text = txn.get(session_id)
        return None if text is None else json_object(session_id, "record", text)

    def get(self, session_id: str) -> SessionRecord | None:
        with self._txn() as txn:
            entry = self._entry(txn, session_id)
        # an entry may hold only a token set (a Session's store_key without a record)
        return (
            None
            if entry is None or "record" not in entry
            else decode_record(session_id, entry.get("record"), entry.get("v"))
        )

    def put(self, record: SessionRecord, *, expected_version: int | None) -> SessionRecord:
        version = (expected_version or 0) + 1
        with self._txn() as txn:
            entry = self._entry(txn, record.id)
            has_record = entry is not None and "record" in entry
            actual = entry.get("v") if entry is not None and has_record else None
            if has_record and not isinstance(actual, int):
                raise CorruptRecordError(record.id, "record", "its version is not a number")
            if actual != expected_version:
                raise VersionConflictError(record.id, expected_version, actual)
            new = {**(entry or {}), "v": version, "record": encode_record(record, version)}
            txn.set(record.id, _json(new))
            if not has_record:
                ids = _list(txn, _INDEX)
                if record.id not in ids:
                    txn.set(_INDEX, _json([*ids, record.id]))
        return replace(record, version=version)

    def _select(self, q: RecordQuery) -> list[SessionRecord]:
        rows: list[SessionRecord] = []
        with self._txn() as txn:
            for sid in _list(txn, _INDEX):
                entry = self._entry(txn, str(sid))
                if entry is not None and "record" in entry:
                    r = decode_record(str(sid), entry.get("record"), entry.get("v"))
                    if q.matches(r):
                        rows.append(r)
        rows.sort(key=lambda r: (r.created_at, r.id))
        end = None if q.limit is None else q.offset + q.limit
        return rows[q.offset : end]

    def delete(self, session_id: str) -> bool:
        with self._txn() as txn:
            txn.delete(_events_entry(session_id))
            existed = txn.get(session_id) is not None
            txn.delete(session_id)
            ids = _list(txn, _INDEX)
            if session_id in ids:
                txn.set(_INDEX, _json([i for i in ids if i != session_id]))
            return existed

    # ------------------------------------------------------------------- events

    def append_event(self, session_id: str, event: Event) -> None:
        name = _events_entry(session_id)
        with self._txn() as txn:
            kept = [*_list(txn, name), event.to_json()][-self.timeline_limit :]
            txn.set(name, _json(kept))

    def events(self, session_id: str) -> list[Event]:
        with self._txn() as txn:
            kept = _list(txn, _events_entry(session_id))
        return [decode_event(session_id, e) for e in kept]

    # --------------------------------------------------------------- token sets

    def get_token(self, session_id: str) -> StoredToken | None:
        with self._txn() as txn:
            entry = self._entry(txn, session_id)
        tok = None if entry is None else entry.get("token")
        if tok is None:
            return None
        if not isinstance(tok, dict):
            raise CorruptRecordError(session_id, "token set", "not a JSON object")
        blob = tok.get("blob")
        if not isinstance(blob, str):
            blob = b""  # refused as corrupt by decode_token_set
        return StoredToken(
            token=decode_token_set(blob, self._token_cipher, session_id=session_id),
            skew=float(_num(session_id, "skew", tok.get("skew"))),
            version=_num(session_id, "version", tok.get("version"), integer=True),
            fence=None
            if tok.get("fence") is None
            else _num(session_id, "fence", tok.get("fence"), integer=True),
            updated_at=float(_num(session_id, "updated_at", tok.get("updated_at"))),
        )

    def _put_token(
        self, session_id: str, token: TokenSet, skew: float, fence: int | None
    ) -> StoredToken:
        blob = encode_token_set(token, self._token_cipher).decode("utf-8")
        with self._txn() as txn:
            if fence is not None:
                fences = json_object(_FENCES, "fences", txn.get(_FENCES) or "{}")
                highest = fences.get(session_id)
                if isinstance(highest, int) and fence < highest:
                    raise FencingError(session_id, fence, highest)
                fences[session_id] = fence
                txn.set(_FENCES, _json(fences))
            entry = self._entry(txn, session_id) or {}
            old = entry.get("token")
            before = old.get("version") if isinstance(old, dict) else None
            version = (before if isinstance(before, int) else 0) + 1
            now = self._clock.now()
            entry["token"] = {
                "blob": blob,
                "skew": skew,
                "version": version,
                "fence": fence,
                "updated_at": now,
            }
            txn.set(session_id, _json(entry))
        return StoredToken(token=token, skew=skew, version=version, fence=fence, updated_at=now)

    # -------------------------------------------------------------------- locks

    def _lock_change(
        self, name: str, change: Callable[[LockRecord | None, float], LockRecord | None]
    ) -> LockRecord | None:
        with self._txn() as txn:
            locks = json_object(_LOCKS, "locks", txn.get(_LOCKS) or "{}")
            row = locks.get(name)
            current = None
            if isinstance(row, list) and len(row) == 3:
                current = LockRecord(row[0], int(row[1]), float(row[2]))
            changed = change(current, self._clock.now())
            if changed is not None:
                locks[name] = list(changed)
                txn.set(_LOCKS, _json(locks))
            return changed

    def lock_try(self, name: str, holder: str, ttl: float) -> int | None:
        taken = self._lock_change(name, lambda cur, now: lock_taken(cur, holder, now, ttl))
        return None if taken is None else taken.fence

    def lock_release(self, name: str, holder: str) -> bool:
        return self._lock_change(name, lambda cur, now: lock_released(cur, holder, now)) is not None

    def lock_renew(self, name: str, holder: str, ttl: float) -> bool:
        renewed = self._lock_change(name, lambda cur, now: lock_renewed(cur, holder, now, ttl))
        return renewed is not None

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Mark the store closed (idempotent); other operations then raise UsageError."""
        self._closed = True

    def __enter__(self) -> KeyringStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _offload(self, fn: Callable[_P, _T], /, *args: _P.args, **kw: _P.kwargs) -> _T:
        return await asyncio.to_thread(fn, *args, **kw)


# The public names defined here show the module they are imported from.
for _public in (KeychainUnavailableError, KeyringStore):
    _public.__module__ = "authpulse"
del _public
