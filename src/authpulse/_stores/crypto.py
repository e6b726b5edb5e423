"""Encryption at rest for token sets, and their storage format.

A token set is stored as one JSON object whose secret values (access,
refresh and id token) are revealed *only* inside that blob. With
encryption keys the blob is a Fernet token (AES-128-CBC + HMAC-SHA256);
:class:`TokenCipher` wraps :class:`cryptography.fernet.MultiFernet`, so the
first key encrypts and every key decrypts: to rotate, put the new key
first and keep the old ones until every stored token set was rewritten.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import ValidationError

from .._core.errors import ConfigurationError
from .._core.tokens import TokenSet
from .base import CorruptRecordError, StoreError

__all__ = ["DecryptionError", "EncryptionKeys", "TokenCipher", "UnauthenticatedRecordError"]

# encode_token_set / decode_token_set below are the stores' storage format (not public)


class DecryptionError(StoreError):
    """A stored token set could not be decrypted: wrong key(s), no key, or
    tampered data. The message names the session, never the ciphertext."""

    def __init__(self, session_id: str | None, reason: str) -> None:
        self.session_id = session_id
        where = f" of session {session_id!r}" if session_id is not None else ""
        super().__init__(f"could not decrypt the stored token set{where}: {reason}")


class UnauthenticatedRecordError(CorruptRecordError):
    """A store opened with encryption keys found a *plaintext* token set.

    Nothing the keys authenticate vouches for it: anyone who can write to the
    database file or the shared Redis could have planted it, so it is refused
    rather than used. A :class:`~authpulse.CorruptRecordError`, handled the
    same way (a session fetches a new token set where its source can, and
    overwrites the record). The message names the session, never the record.

    .. versionadded:: unreleased
    """

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.what = "token set"
        self.reason = "plaintext in a store opened with encryption keys"
        StoreError.__init__(
            self,
            f"stored token set of session {session_id!r} is plaintext in a store opened "
            "with encryption keys: refused, since nothing authenticates it (anyone who can "
            "write to the store could have planted it)",
        )


class TokenCipher:
    """Symmetric encryption of token blobs with key rotation.

    ``keys`` are Fernet keys (32 url-safe base64-encoded bytes, as made by
    :meth:`generate_key`). The first encrypts; all of them decrypt. A single
    key may be passed on its own. The keys never appear in ``repr``.

    A store with a cipher refuses plaintext token sets
    (:class:`UnauthenticatedRecordError`). ``accept_plaintext=True`` reads
    them anyway, for the migration window of a store that starts to encrypt
    (every set is rewritten encrypted at its next refresh): while it is on,
    whoever can write to the store can plant a token set.

    .. versionchanged:: unreleased
       Plaintext token sets are refused unless ``accept_plaintext=True``.
    """

    __slots__ = ("_count", "_fernet", "accept_plaintext")

    def __init__(
        self, keys: Sequence[str | bytes] | str | bytes, *, accept_plaintext: bool = False
    ) -> None:
        if not isinstance(accept_plaintext, bool):
            raise ConfigurationError("accept_plaintext must be a boolean")
        self.accept_plaintext = accept_plaintext
        if isinstance(keys, str | bytes):
            keys = [keys]
        if not isinstance(keys, Sequence):
            raise ConfigurationError("encryption keys must be a sequence of Fernet keys")
        fernets: list[Fernet] = []
        for number, key in enumerate(keys, 1):
            if not isinstance(key, str | bytes):
                raise ConfigurationError(
                    f"encryption key #{number} must be str or bytes, not {type(key).__name__}"
                )
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                raise ConfigurationError(
                    f"encryption key #{number} is not a Fernet key (32 url-safe "
                    "base64-encoded bytes); make one with TokenCipher.generate_key()"
                ) from None
        if not fernets:
            raise ConfigurationError("encryption keys: give at least one Fernet key")
        self._fernet = MultiFernet(fernets)
        self._count = len(fernets)

    @staticmethod
    def generate_key() -> str:
        """A new random Fernet key (url-safe base64 text)."""
        return Fernet.generate_key().decode("ascii")

    @classmethod
    def coerce(cls, keys: EncryptionKeys) -> TokenCipher | None:
        """``None`` stays ``None``; a cipher is returned as is; keys make a cipher."""
        if keys is None or isinstance(keys, TokenCipher):
            return keys
        return cls(keys)

    def __repr__(self) -> str:
        plain = ", accept_plaintext=True" if self.accept_plaintext else ""
        return f"TokenCipher({self._count} key{'s' if self._count != 1 else ''}{plain})"

    def encrypt(self, data: bytes) -> bytes:
        """Encrypt with the first key."""
        return self._fernet.encrypt(data)

    def decrypt(self, blob: bytes, *, session_id: str | None = None) -> bytes:
        """Decrypt with any key; :class:`DecryptionError` if none fits."""
        try:
            return self._fernet.decrypt(blob)
        except (InvalidToken, TypeError, ValueError):
            raise DecryptionError(session_id, "wrong encryption key(s) or tampered data") from None

    def rotate(self, blob: bytes, *, session_id: str | None = None) -> bytes:
        """Re-encrypt ``blob`` with the first key (it may have been made with any key)."""
        try:
            return self._fernet.rotate(blob)
        except (InvalidToken, TypeError, ValueError):
            raise DecryptionError(session_id, "wrong encryption key(s) or tampered data") from None


#: What a store accepts as ``encryption_keys``.
EncryptionKeys = Sequence[str | bytes] | str | bytes | TokenCipher | None

_FORMAT = 1


def encode_token_set(token: TokenSet, cipher: TokenCipher | None) -> bytes:
    """The stored form of ``token``: JSON with the secrets revealed, encrypted
    when a cipher is given. Nothing else a store writes holds a secret."""
    data: dict[str, Any] = {
        "format": _FORMAT,
        "access_token": token.access_token.get_secret_value(),
        "token_type": token.token_type,
        "refresh_token": (
            token.refresh_token.get_secret_value() if token.refresh_token is not None else None
        ),
        "id_token": token.id_token.get_secret_value() if token.id_token is not None else None,
        "scope": token.scope,
        "issued_at": token.issued_at,
        "expires_at": token.expires_at,
        "expires_at_source": token.expires_at_source,
    }
    if token.refresh_expires_at is not None:  # absent otherwise: older readers read the record
        data["refresh_expires_at"] = token.refresh_expires_at
    if token.issued_token_type is not None:  # absent from older records: stays absent
        data["issued_token_type"] = token.issued_token_type
    blob = json.dumps(data, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return cipher.encrypt(blob) if cipher is not None else blob


#: a Fernet token: version byte, 8-byte time, 16-byte IV, ciphertext, 32-byte HMAC
_FERNET_VERSION = 0x80
_FERNET_OVERHEAD = 1 + 8 + 16 + 32
_FERNET_BLOCK = 16


def looks_encrypted(blob: bytes) -> bool:
    """Whether ``blob`` has the shape of a Fernet token (url-safe base64 of a
    version byte 0x80, a timestamp, an IV, whole AES blocks and an HMAC).

    Only the keys tell a token made with them from a forged one; the shape
    tells an encrypted record from garbage."""
    try:
        raw = base64.b64decode(blob, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return False
    body = len(raw) - _FERNET_OVERHEAD
    return (
        bool(raw)
        and raw[0] == _FERNET_VERSION
        and body >= _FERNET_BLOCK
        and body % _FERNET_BLOCK == 0
    )


def decode_token_set(blob: bytes | str, cipher: TokenCipher | None, *, session_id: str) -> TokenSet:
    """The inverse of :func:`encode_token_set`.

    With a cipher, a plaintext blob (a JSON object) raises
    :class:`UnauthenticatedRecordError` unless the cipher accepts plaintext
    (a migration window). A Fernet token without a cipher, or that none of
    the keys opens, raises :class:`DecryptionError` (a configuration
    problem: the keys). Anything else unreadable — garbage that is neither
    JSON nor a Fernet token, JSON that is not a token set, a token type other
    than Bearer — raises :class:`CorruptRecordError`. No message quotes the
    blob.
    """
    if isinstance(blob, str):
        blob = blob.encode("utf-8", "surrogateescape")
    if not isinstance(blob, bytes) or not blob:
        raise CorruptRecordError(session_id, "token set", "empty or not a byte string")
    if blob.startswith(b"{"):
        if cipher is not None and not cipher.accept_plaintext:
            raise UnauthenticatedRecordError(session_id)
    elif not looks_encrypted(blob):
        raise CorruptRecordError(
            session_id, "token set", "it is neither a JSON token set nor an encrypted one"
        )
    elif cipher is None:
        raise DecryptionError(
            session_id, "it is encrypted and this store was opened without encryption keys"
        )
    else:
        blob = cipher.decrypt(blob, session_id=session_id)
    try:
        data = json.loads(blob)
    except (ValueError, RecursionError):
        raise CorruptRecordError(session_id, "token set", "not valid JSON") from None
    if not isinstance(data, dict):
        raise CorruptRecordError(session_id, "token set", "not a JSON object")
    if data.pop("format", None) != _FORMAT:
        raise CorruptRecordError(session_id, "token set", "unknown storage format")
    try:
        return TokenSet.model_validate(data)
    except ValidationError as exc:
        # only the field names: pydantic's own message quotes the input values
        fields = sorted({".".join(str(p) for p in err["loc"]) or "?" for err in exc.errors()})
        raise CorruptRecordError(
            session_id, "token set", f"invalid field(s): {', '.join(fields)}"
        ) from None


# The public names defined here show the module they are imported from.
for _public in (
    DecryptionError,
    TokenCipher,
    UnauthenticatedRecordError,
):
    _public.__module__ = "authpulse"
del _public
