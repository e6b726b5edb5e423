"""Where :class:`~authpulse.KeyringStore` keeps its entries: the OS keychain
through the ``keyring`` package, or the encrypted file of ``keyring_file``.

Both are read and written in transactions (:class:`Vault.transaction`) under
the store's lock file, so one read-modify-write of an entry never interleaves
with another process's. An entry is a named string. In the keychain every
entry is one item of service ``authpulse:<namespace>`` whose username is the
entry's name; values longer than :data:`CHUNK` characters are split over
several items (``name``, ``name #1``, ``name #2``...), since some keychains
limit an item's size (Windows' Credential Locker to about 2.5 KB). No entry
name is a session id with a space in it, because session ids have none.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from .._core.errors import missing_extra
from .base import CorruptRecordError, StoreError, StoreUnavailableError
from .crypto import TokenCipher
from .keyring_file import FileLock, read_entries, write_entries

__all__ = [
    "CHUNK",
    "FileVault",
    "KeychainUnavailableError",
    "KeychainVault",
    "Transaction",
    "Vault",
    "find_keychain",
]

log = logging.getLogger("authpulse.store")

#: the most characters one keychain item holds; longer values are chunked
CHUNK = 1000


class KeychainUnavailableError(StoreError):
    """``KeyringStore(require_keychain=True)`` found no usable OS keychain (no
    backend, the null or fail backend, or one that failed when tried). The
    message says why; it never holds a stored value.

    .. versionadded:: unreleased
    """


class Transaction(Protocol):
    """Reads and writes of named entries, applied when the transaction ends."""

    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str) -> None: ...

    def delete(self, name: str) -> None: ...


class Vault(Protocol):
    """The keychain or the encrypted file."""

    #: ``keyring:<backend>`` or ``encrypted-file:<path>``
    backend: str

    def transaction(self) -> contextlib.AbstractContextManager[Transaction]: ...


class _Buffered:
    """A transaction over a loaded dict of entries; ``dirty`` once written."""

    def __init__(self, entries: dict[str, str]) -> None:
        self.entries = entries
        self.dirty = False

    def get(self, name: str) -> str | None:
        return self.entries.get(name)

    def set(self, name: str, value: str) -> None:
        self.entries[name] = value
        self.dirty = True

    def delete(self, name: str) -> None:
        if self.entries.pop(name, None) is not None:
            self.dirty = True


class FileVault:
    """Every entry in one encrypted file, rewritten whole by a transaction that wrote."""

    def __init__(self, path: Path, cipher: TokenCipher, lock: FileLock) -> None:
        self.path = path
        self.backend = f"encrypted-file:{path}"
        self._cipher = cipher
        self._lock = lock

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._lock.held():
            txn = _Buffered(read_entries(self.path, self._cipher))
            yield txn
            if txn.dirty:
                write_entries(self.path, self._cipher, txn.entries)


class _KeychainTransaction:
    """Reads go to the keychain once per entry; writes are applied at the end."""

    def __init__(self, keychain: Any, service: str, backend: str) -> None:
        self._keychain = keychain
        self._service = service
        self._backend = backend
        self._read: dict[str, str | None] = {}
        self._heads: dict[str, int] = {}  # items each entry had when read
        self._changed: dict[str, str | None] = {}

    def _call(self, what: str, fn: Any, *args: str) -> Any:
        try:
            return fn(self._service, *args)
        except Exception as exc:  # a keychain backend may raise anything
            raise StoreUnavailableError(
                f"the keychain ({self._backend}) could not {what}: {type(exc).__name__}"
            ) from None

    def _load(self, name: str) -> str | None:
        head = self._call("read an entry", self._keychain.get_password, name)
        if head is None:
            self._heads[name] = 0
            return None
        count, sep, first = str(head).partition(":")
        if not sep or not count.isdigit() or int(count) < 1:
            raise CorruptRecordError(name, "keychain entry", "it was not written by authpulse")
        parts = [first]
        for i in range(1, int(count)):
            part = self._call("read an entry", self._keychain.get_password, f"{name} #{i}")
            if part is None:
                raise CorruptRecordError(name, "keychain entry", f"part {i} is missing")
            parts.append(str(part))
        self._heads[name] = int(count)
        return "".join(parts)

    def get(self, name: str) -> str | None:
        if name in self._changed:
            return self._changed[name]
        if name not in self._read:
            self._read[name] = self._load(name)
        return self._read[name]

    def set(self, name: str, value: str) -> None:
        self.get(name)  # learn how many items it had, to drop the extra ones
        self._changed[name] = value

    def delete(self, name: str) -> None:
        if self.get(name) is not None:
            self._changed[name] = None

    def commit(self) -> None:
        for name, value in self._changed.items():
            had = self._heads.get(name, 0)
            parts = [] if value is None else _chunks(value)
            for i, part in enumerate(parts):
                item = name if i == 0 else f"{name} #{i}"
                text = f"{len(parts)}:{part}" if i == 0 else part
                self._call("write an entry", self._keychain.set_password, item, text)
            for i in range(len(parts), had):
                item = name if i == 0 else f"{name} #{i}"
                self._call("delete an entry", self._keychain.delete_password, item)


def _chunks(value: str) -> list[str]:
    return [value[i : i + CHUNK] for i in range(0, len(value), CHUNK)] or [""]


class KeychainVault:
    """Entries as items of the OS keychain, service ``authpulse:<namespace>``."""

    def __init__(self, keychain: Any, service: str, backend: str, lock: FileLock) -> None:
        self.backend = f"keyring:{backend}"
        self.service = service
        self._keychain = keychain
        self._name = backend
        self._lock = lock

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._lock.held():
            txn = _KeychainTransaction(self._keychain, self.service, self._name)
            yield txn
            txn.commit()


def find_keychain(service: str) -> tuple[Any, str, str | None]:
    """The keyring backend, its name, and why it cannot be used (``None``: it can).

    Unusable: keyring's ``fail`` or ``null`` backend, a chainer with no
    backends, or one whose first read fails (a Secret Service without D-Bus,
    a locked collection that cannot be unlocked)."""
    try:
        import keyring
    except ImportError as exc:
        raise missing_extra("KeyringStore", "keyring") from exc
    keychain = keyring.get_keyring()
    cls = type(keychain)
    name = f"{cls.__module__}.{cls.__qualname__}"
    if cls.__module__ in ("keyring.backends.fail", "keyring.backends.null"):
        return keychain, name, f"keyring has no usable backend ({name})"
    from keyring.backends.chainer import ChainerBackend

    if isinstance(keychain, ChainerBackend) and not list(keychain.backends):
        return keychain, name, "keyring's chainer backend has no usable backend in it"
    try:
        keychain.get_password(service, " index")
    except Exception as exc:  # a keychain backend may raise anything
        return keychain, name, f"the {name} backend failed when tried ({type(exc).__name__})"
    return keychain, name, None
