"""One rule for names that look like they hold a secret.

Used everywhere authpulse shows or writes data it did not make itself: the
web dashboard and the CLI (custom metadata), session exports and archives,
the JSON log formatter's extras, and the event model (which refuses such
field names outright).

A name is split into lower-case words at separators (``_ - . / : space``)
and at camelCase boundaries (``clientSecret`` → ``client secret``,
``XApiKey`` → ``x api key``, ``AWS_SECRET_ACCESS_KEY`` → ``aws secret access
key``). It looks like a secret when one of its words is a secret word
(``secret``, ``password``, ``token``, ``cookie``, ...) or two neighbouring
words make a secret pair (``api key``, ``private key``, ``access key``, ...)
— unless it only *describes* a secret: its last word is a descriptor
(``token_type``, ``token_expires_at``, ``secret_name``, ``api_key_id``) or
its first word is ``has``/``is``/``num`` (``has_refresh_token``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Final, TypeVar

__all__ = [
    "DESCRIPTOR_WORDS",
    "REDACTED",
    "SECRET_PAIRS",
    "SECRET_WORDS",
    "is_secret_name",
    "name_words",
    "redact_mapping",
]

#: What a redacted value is shown as.
REDACTED: Final = "[redacted]"

#: A name holding one of these words looks like a secret.
SECRET_WORDS: Final = frozenset(
    {
        "secret",
        "secrets",
        "password",
        "passwd",
        "passphrase",
        "passcode",
        "pwd",
        "token",
        "tokens",
        "apikey",
        "privatekey",
        "cookie",
        "cookies",
        "credential",
        "credentials",
        "authorization",
        "bearer",
        "assertion",
        "signature",
        "otp",
        "jwt",
        "dsn",
    }
)

#: Two neighbouring words that together look like a secret.
SECRET_PAIRS: Final = frozenset(
    {
        ("api", "key"),
        ("private", "key"),
        ("access", "key"),
        ("secret", "key"),
        ("session", "key"),
        ("signing", "key"),
        ("encryption", "key"),
        ("master", "key"),
        ("client", "key"),
        ("auth", "key"),
        ("auth", "header"),
        ("code", "verifier"),
        ("session", "cookie"),
    }
)

#: A name whose last word is one of these describes a secret without holding it.
DESCRIPTOR_WORDS: Final = frozenset(
    {
        "type",
        "types",
        "kind",
        "age",
        "count",
        "counts",
        "expires",
        "expiry",
        "at",
        "in",
        "lifetime",
        "ttl",
        "endpoint",
        "url",
        "uri",
        "source",
        "generation",
        "version",
        "id",
        "ids",
        "name",
        "names",
        "length",
        "len",
        "size",
        "present",
        "set",
        "method",
        "scope",
        "issued",
        "rotated",
        "refreshed",
    }
)

_BOOLEAN_PREFIXES: Final = frozenset({"has", "is", "num"})

# an acronym before a capitalised word (``APIKey`` → ``API`` ``Key``), a lower-case
# letter or digit before a capital (``clientSecret``), runs of letters and digits
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def name_words(name: str) -> tuple[str, ...]:
    """The lower-case words of ``name`` (separators and camelCase split)."""
    return tuple(w.lower() for w in _WORD.findall(name))


def is_secret_name(name: str) -> bool:
    """Whether ``name`` (a field, key or header name) looks like it holds a secret."""
    known = _SECRET_NAMES.get(name)
    if known is None:
        known = _is_secret_name(name)
        if len(_SECRET_NAMES) < _SECRET_NAMES_KEPT:  # names are few: events reuse them
            _SECRET_NAMES[name] = known
    return known


#: the answers of :func:`is_secret_name` so far, by name (bounded)
_SECRET_NAMES: dict[str, bool] = {}
_SECRET_NAMES_KEPT: Final = 4096


def _is_secret_name(name: str) -> bool:
    words = name_words(name)
    if not words:
        return False
    if words[-1] in DESCRIPTOR_WORDS and len(words) > 1:
        return False
    if words[0] in _BOOLEAN_PREFIXES and len(words) > 1:
        return False
    if any(w in SECRET_WORDS for w in words):
        return True
    return any(pair in SECRET_PAIRS for pair in itertools.pairwise(words))


_V = TypeVar("_V")


def redact_mapping(values: Mapping[str, _V]) -> dict[str, _V | str]:
    """A copy of ``values`` with the value of every secret-looking key replaced
    by :data:`REDACTED`."""
    return {k: (REDACTED if is_secret_name(k) else v) for k, v in values.items()}


# The public names defined here show the module they are imported from.
for _public in (
    is_secret_name,
    redact_mapping,
):
    _public.__module__ = "authpulse"
del _public
