"""The encrypted file that :class:`~authpulse.KeyringStore` falls back to, and
the lock file that serialises every writer of one store, keychain or file.

The file holds every entry of the store (records, token sets, timelines,
locks) as one JSON object, encrypted whole with Fernet (``TokenCipher``):
not a session id, not a token is readable without the key. It lives in a
per-user directory created 0700, is itself 0600, and is replaced atomically
(a temporary file beside it, then ``os.replace``), so a reader sees the old
contents or the new ones, never half of either.

The key comes from the ``key`` argument, else ``AUTHPULSE_KEYRING_KEY``,
else a key file beside the data, created 0600 on first use.

Real seconds, not the injected clock: the lock file's ``timeout`` bounds a
wait for another process, which a fake clock standing still would never end.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from .._core.errors import ConfigurationError
from .base import CorruptRecordError, StoreUnavailableError
from .crypto import EncryptionKeys, TokenCipher

__all__ = ["KEY_ENV", "FileLock", "default_directory", "load_key", "read_entries", "write_entries"]

#: the environment variable that holds the encrypted file's Fernet key
KEY_ENV = "AUTHPULSE_KEYRING_KEY"

_POLL_MIN = 0.002
_POLL_MAX = 0.05


def default_directory() -> Path:
    """The per-user data directory: ``$XDG_DATA_HOME/authpulse`` or
    ``~/.local/share/authpulse`` on Linux and other Unixes,
    ``~/Library/Application Support/authpulse`` on macOS,
    ``%LOCALAPPDATA%\\authpulse`` on Windows."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "authpulse"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "authpulse"
    xdg = os.environ.get("XDG_DATA_HOME")
    base_dir = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base_dir / "authpulse"


def private_directory(path: Path) -> None:
    """Create ``path`` (and its parents) for its owner only (0700)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreUnavailableError(
            f"cannot create the store directory {str(path)!r}: {exc.strerror}"
        ) from None


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new 0600 temporary file beside ``path`` and move it
    into place in one step."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StoreUnavailableError(f"cannot write {str(path)!r}: {exc.strerror}") from None


def load_key(key: EncryptionKeys, key_file: Path) -> tuple[TokenCipher, str]:
    """The cipher of the encrypted file and where its key came from (``"argument"``,
    ``"environment"`` or ``"key file <path>"``). Without a key, the key file is
    read, or created 0600 with a new key (two processes creating it at once
    agree on one: the first link wins)."""
    if key is not None:
        return TokenCipher(key) if not isinstance(key, TokenCipher) else key, "argument"
    env = os.environ.get(KEY_ENV)
    if env:
        try:
            return TokenCipher(env), "environment"
        except ConfigurationError:
            raise ConfigurationError(
                f"{KEY_ENV} is not a Fernet key (32 url-safe base64-encoded bytes); "
                "make one with TokenCipher.generate_key()"
            ) from None
    where = f"key file {str(key_file)!r}"
    if not key_file.exists():
        private_directory(key_file.parent)
        tmp = key_file.with_name(f".{key_file.name}.{os.getpid()}.new")
        _write_private(tmp, TokenCipher.generate_key().encode("ascii"))
        try:
            os.link(tmp, key_file)
        except FileExistsError:
            pass  # another process made it first: use theirs
        except OSError as exc:
            raise StoreUnavailableError(f"cannot create the {where}: {exc.strerror}") from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
    try:
        text = key_file.read_bytes().strip()
    except OSError as exc:
        raise StoreUnavailableError(f"cannot read the {where}: {exc.strerror}") from None
    try:
        return TokenCipher(text), where
    except ConfigurationError:
        raise ConfigurationError(f"the {where} does not hold a Fernet key") from None


def read_entries(path: Path, cipher: TokenCipher) -> dict[str, str]:
    """Every entry of the encrypted file (none if it does not exist yet).

    A wrong key raises :class:`DecryptionError`; contents that decrypt but are
    not a store's raise :class:`CorruptRecordError`."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise StoreUnavailableError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    plain = cipher.decrypt(blob)
    try:
        data = json.loads(plain)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise CorruptRecordError("*", "keyring file", f"{str(path)!r} is not an authpulse store")
    return data


def write_entries(path: Path, cipher: TokenCipher, entries: dict[str, str]) -> None:
    """Encrypt ``entries`` and replace the file with them, atomically."""
    plain = json.dumps(entries, separators=(",", ":"), sort_keys=True).encode("utf-8")
    _write_private(path, cipher.encrypt(plain))


class FileLock:
    """One writer at a time across threads (a lock) and processes (an exclusive
    ``flock``/``msvcrt.locking`` on a lock file). Waits at most ``timeout`` real
    seconds for another process, then raises :class:`StoreUnavailableError`."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._thread_lock = threading.RLock()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._thread_lock:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise StoreUnavailableError(
                    f"cannot open the lock file {str(self.path)!r}: {exc.strerror}"
                ) from None
            try:
                self._acquire(fd)
                try:
                    yield
                finally:
                    _unlock(fd)
            finally:
                os.close(fd)

    def _acquire(self, fd: int) -> None:
        started = time.monotonic()
        delay = _POLL_MIN
        while not _try_lock(fd):
            waited = time.monotonic() - started
            if waited >= self.timeout:
                raise StoreUnavailableError(
                    f"the store's lock file {str(self.path)!r} stayed locked by another "
                    f"process: waited {waited:.2f} s (timeout {self.timeout:g} s)"
                )
            time.sleep(min(delay, self.timeout - waited))
            delay = min(delay * 2, _POLL_MAX)


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
