"""Optional structured logging for authpulse: one JSON object per log record.

authpulse logs through one logger per layer (:data:`LOGGERS`, all under
``authpulse``, which has only a ``NullHandler`` until you configure
logging). Every record authpulse emits carries its facts as ``extra``
attributes named ``authpulse_*`` (``authpulse_event``,
``authpulse_session``, ``authpulse_reason``, ...; see docs/metrics.md).
Nothing authpulse logs contains a token or a secret.

:class:`JsonFormatter` writes those fields as JSON:

>>> import logging
>>> from authpulse.logging_config import JsonFormatter
>>> handler = logging.StreamHandler()
>>> handler.setFormatter(JsonFormatter())
>>> logging.getLogger("authpulse").addHandler(handler)
>>> logging.getLogger("authpulse").setLevel(logging.INFO)

or, with :func:`logging.config.dictConfig`::

    "formatters": {"json": {"()": "authpulse.logging_config.json_formatter"}}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from ._core.redact import redact_mapping

__all__ = [
    "FIELD_PREFIX",
    "LOGGERS",
    "JsonFormatter",
    "authpulse_fields",
    "json_formatter",
]

#: the prefix of every structured field authpulse attaches to its log records
FIELD_PREFIX: Final = "authpulse_"

#: authpulse's loggers, one per layer (all children of ``authpulse``)
LOGGERS: Final = (
    "authpulse.session",  # token refreshes and their hooks and listeners
    "authpulse.manager",  # lifecycle, the worker's ticks, heartbeats
    "authpulse.coordination",  # the shared store: unavailable / available again
    "authpulse.fallback",  # fallback chain levels, the login-required hook
    "authpulse.resilience",  # API retries (retry event hooks)
    "authpulse.breaker",  # circuit breaker transitions
    "authpulse.cache",  # the response cache: revalidation failures, hooks
    "authpulse.events",  # event bus subscribers
    "authpulse.web",  # the dashboard's HTTP server
    "authpulse.testing",  # the loopback server of authpulse.testing
)

# the attributes every LogRecord has: anything else came in through ``extra``
_STANDARD: Final = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def authpulse_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``authpulse_*`` fields of ``record``."""
    return {k: v for k, v in vars(record).items() if k.startswith(FIELD_PREFIX)}


def _jsonable(value: object) -> object:
    """JSON's fallback for a value it cannot encode: its ``str`` (a pydantic
    ``SecretStr`` prints as ``**********``)."""
    return str(value)


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON.

    Keys: ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``,
    ``message``, then the record's ``authpulse_*`` fields (every field from
    ``extra`` with ``all_extras=True``), then ``exc_info`` / ``stack_info``
    (formatted) when present. ``static`` fields (``{"service": "billing"}``)
    are added to every line. Values JSON cannot encode are written as their
    ``str``. The value of a field whose name looks like a secret
    (:func:`authpulse.is_secret_name`: ``password``, ``clientSecret``,
    ``x-api-key``, ...) is written as ``[redacted]``.
    """

    def __init__(
        self,
        *,
        all_extras: bool = False,
        static: Mapping[str, object] | None = None,
        ensure_ascii: bool = False,
    ) -> None:
        super().__init__()
        self.all_extras = all_extras
        self.static = dict(static or {})
        self.ensure_ascii = ensure_ascii

    def _fields(self, record: logging.LogRecord) -> dict[str, Any]:
        if not self.all_extras:
            fields = authpulse_fields(record)
        else:
            fields = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        # an extra named like a secret (``password``, ``clientSecret``) is never written
        return redact_mapping(fields)

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(self.static)
        for key, value in self._fields(record).items():
            out.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc_info"] = record.exc_text
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(
            out, default=_jsonable, ensure_ascii=self.ensure_ascii, separators=(",", ":")
        )


def json_formatter(
    *,
    all_extras: bool = False,
    static: Mapping[str, object] | None = None,
    ensure_ascii: bool = False,
) -> JsonFormatter:
    """A :class:`JsonFormatter` (a factory for ``dictConfig``'s ``"()"`` key)."""
    return JsonFormatter(all_extras=all_extras, static=static, ensure_ascii=ensure_ascii)
