"""The settings, the store and the manager a command works on; a store that cannot
be used is a :class:`~authpulse._surfaces.commands.exits.CliError` with exit code 4."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from ..._core.errors import AuthpulseError, ConfigurationError
from .exits import EXIT_STORE, EXIT_USAGE, CliError

if TYPE_CHECKING:
    from ..._fleet.manager import SessionManager
    from ..._stores.base import SessionStore
    from ..settings import AuthpulseSettings

__all__ = ["load_settings", "open_checked_store", "open_manager", "store_url"]


def load_settings() -> AuthpulseSettings:
    from ..settings import AuthpulseSettings

    try:
        return AuthpulseSettings()
    except ConfigurationError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def store_url(args: argparse.Namespace, settings: AuthpulseSettings) -> str:
    url = args.store if args.store is not None else settings.store_url.get_secret_value()
    return str(url)


def open_checked_store(url: str, settings: AuthpulseSettings, *, must_exist: bool) -> SessionStore:
    """Open and check the store; :class:`CliError` with exit code 4 if it cannot be used.
    Messages name the scheme or the SQLite path, never the rest of a URL."""
    from ..._stores.base import StoreError
    from ..._stores.open import open_store

    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if sep and scheme == "memory":
        raise CliError(
            "a memory:// store is empty in a new process: give --store sqlite:///path.db or "
            "redis://host:port/db (or set AUTHPULSE_STORE_URL)",
            EXIT_STORE,
        )
    if sep and scheme == "sqlite" and must_exist:
        path = rest.partition("?")[0]
        if path.startswith("/") and len(path) > 1:
            file = Path(unquote(path[1:]))
            if not file.is_file():
                raise CliError(f"no SQLite database at {str(file)!r}", EXIT_STORE)
    keys = [k.get_secret_value() for k in settings.encryption_keys]
    try:
        store = open_store(url, encryption_keys=keys or None)
    except ConfigurationError as exc:
        raise CliError(f"bad store URL: {exc}", EXIT_STORE) from None
    except StoreError as exc:
        raise CliError(str(exc), EXIT_STORE) from None
    ping = getattr(store, "ping", None)
    if callable(ping):
        try:
            ping()
        except StoreError as exc:
            store.close()
            raise CliError(str(exc), EXIT_STORE) from None
    return store


@contextlib.contextmanager
def open_manager(args: argparse.Namespace, settings: AuthpulseSettings) -> Iterator[SessionManager]:
    store = open_checked_store(store_url(args, settings), settings, must_exist=True)
    try:
        manager = settings.session_manager(store=store)
    except BaseException:
        store.close()
        raise
    try:
        yield manager
    finally:
        with contextlib.suppress(AuthpulseError):
            manager.shutdown()
