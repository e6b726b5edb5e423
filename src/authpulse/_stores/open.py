"""Open a store from a URL: the one module that names every store backend.

The backends import ``_store`` (the protocol and shared rules); this module
imports them, lazily, so Redis loads only for a ``redis://`` URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from .._core.errors import ConfigurationError
from .base import MemoryStore, SessionStore

if TYPE_CHECKING:
    from .._runtime.clock import Clock
    from .crypto import EncryptionKeys, TokenCipher

__all__ = ["open_store"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]{0,31}$")
_URL_HELP = "use memory://, sqlite:///path/to/file.db, redis://host:port/db or keyring://"


def _url_params(query: str, scheme: str, allowed: frozenset[str]) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ConfigurationError(f"{scheme} store URL has a malformed query string") from None
    params = dict(pairs)
    unknown = sorted(set(params) - allowed)
    if unknown:
        names = ", ".join(repr(u[:32]) for u in unknown)
        raise ConfigurationError(
            f"{scheme} store URL has unknown parameter(s) {names}; "
            f"allowed: {', '.join(sorted(allowed)) or 'none'}"
        )
    return params


def _number(
    params: Mapping[str, str], name: str, scheme: str, kind: type[int] | type[float]
) -> Any:
    try:
        value = kind(params[name])
    except ValueError:
        raise ConfigurationError(
            f"{scheme} store URL parameter {name!r} must be a number"
        ) from None
    return value


def open_store(
    url: str,
    *,
    encryption_keys: EncryptionKeys = None,
    clock: Clock | None = None,
) -> SessionStore:
    """Open the store a URL names.

    - ``memory://`` — :class:`MemoryStore` (token sets are kept as objects in
      the process: ``encryption_keys`` are checked but have nothing to encrypt);
    - ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` —
      :class:`~authpulse.SQLiteStore` (query parameters ``timeout`` and
      ``timeline_limit``);
    - ``redis://[user:password@]host:port/db``, ``rediss://...`` —
      :class:`~authpulse.RedisStore` (needs ``authpulse[redis]``; query
      parameters ``namespace``, ``timeline_limit`` and redis-py's own);
    - ``keyring://`` — :class:`~authpulse.KeyringStore`: the OS keychain, or the
      encrypted file in the per-user data directory without one;
      ``keyring:///relative/file``, ``keyring:////absolute/file`` always use the
      encrypted file at that path
      (needs ``authpulse[keyring]``; query parameters ``namespace`` and
      ``timeline_limit``; ``encryption_keys`` become its ``key``).

    A URL that cannot be used raises :class:`ConfigurationError` naming the
    scheme, never the rest of the URL (it may hold a password).
    """
    from .crypto import TokenCipher

    if not isinstance(url, str):
        raise ConfigurationError(f"store URL must be a str, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.match(scheme):
        raise ConfigurationError(f"store URL has no recognisable scheme; {_URL_HELP}")
    scheme = scheme.lower()
    cipher = TokenCipher.coerce(encryption_keys)
    if scheme == "memory":
        if rest:
            raise ConfigurationError("memory store URL takes nothing after 'memory://'")
        return MemoryStore(clock=clock)
    if scheme == "sqlite":
        from .sqlite import SQLiteStore

        path, _, query = rest.partition("?")
        params = _url_params(query, scheme, frozenset({"timeout", "timeline_limit"}))
        if not path.startswith("/"):
            raise ConfigurationError(
                "sqlite store URL must have no host: sqlite:///relative.db or sqlite:////abs.db"
            )
        path = unquote(path[1:])
        if not path or path == ":memory:":
            raise ConfigurationError(
                "sqlite store URL needs a file path (use memory:// for an in-process store)"
            )
        kwargs: dict[str, Any] = {}
        if "timeout" in params:
            kwargs["timeout"] = _number(params, "timeout", scheme, float)
        if "timeline_limit" in params:
            kwargs["timeline_limit"] = _number(params, "timeline_limit", scheme, int)
        return SQLiteStore(path, encryption_keys=cipher, clock=clock, **kwargs)
    if scheme in ("redis", "rediss"):
        from .redis import RedisStore

        return RedisStore(url, encryption_keys=cipher, clock=clock)
    if scheme == "keyring":
        return _open_keyring(rest, cipher, clock)
    raise ConfigurationError(f"unsupported store URL scheme {scheme!r}; {_URL_HELP}")


def _open_keyring(rest: str, cipher: TokenCipher | None, clock: Clock | None) -> SessionStore:
    from .keyring_store import KeyringStore

    path, _, query = rest.partition("?")
    params = _url_params(query, "keyring", frozenset({"namespace", "timeline_limit"}))
    if path and not path.startswith("/"):
        raise ConfigurationError(
            "keyring store URL must have no host: keyring://, keyring:///relative/file or "
            "keyring:////absolute/file"
        )
    kwargs: dict[str, Any] = {}
    if "namespace" in params:
        kwargs["namespace"] = params["namespace"]
    if "timeline_limit" in params:
        kwargs["timeline_limit"] = _number(params, "timeline_limit", "keyring", int)
    file = unquote(path[1:]) if path else ""
    if file:
        kwargs.update(path=file, keychain=False)
    elif path:
        raise ConfigurationError("keyring store URL has an empty file path after 'keyring:///'")
    return KeyringStore(key=cipher, clock=clock, **kwargs)


# The public names defined here show the module they are imported from.
for _public in (open_store,):
    _public.__module__ = "authpulse"
del _public
