"""How the persistent stores write records and events, and read them back.

One codec for SQLite and Redis: a record is compact JSON carrying its
version, an event its own JSON. Reading refuses anything authpulse did not
write with :class:`~authpulse.CorruptRecordError`, which names the session
and never quotes the stored values. (Token sets: ``_crypto``.)
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from .._core.errors import ConfigurationError
from .._core.model import SessionKind, SessionRecord, SessionStatus
from .._runtime.events import Event
from .base import CorruptRecordError
from .rules import short_repr

__all__ = ["decode_event", "decode_record", "encode_record", "json_object", "token_number"]

_STATUSES = frozenset(s.value for s in SessionStatus)
_KINDS = frozenset(k.value for k in SessionKind)


def encode_record(record: SessionRecord, version: int) -> str:
    """The stored JSON of ``record`` at ``version``."""
    return json.dumps(
        {**record.to_dict(), "version": version}, separators=(",", ":"), allow_nan=False
    )


def json_object(session_id: str, what: str, data: object) -> dict[str, Any]:
    """``data`` (JSON text or UTF-8 bytes) as a JSON object, or :class:`CorruptRecordError`."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    if not isinstance(data, str):
        raise CorruptRecordError(session_id, what, "data is not text")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        raise CorruptRecordError(session_id, what, "not valid JSON") from None
    if not isinstance(obj, dict):
        raise CorruptRecordError(session_id, what, "not a JSON object")
    return obj


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, ConfigurationError) else type(exc).__name__


def decode_record(session_id: str, data: object, version: object) -> SessionRecord:
    """A stored record from its JSON text and version, or :class:`CorruptRecordError`."""
    obj = json_object(session_id, "record", data)
    if isinstance(version, bytes):
        version = version.decode("ascii", "replace")
    if isinstance(version, str) and version.isascii() and version.isdigit():
        version = int(version)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CorruptRecordError(session_id, "record", "version is not a positive integer")
    status, kind = obj.get("status"), obj.get("kind")
    if status not in _STATUSES:
        raise CorruptRecordError(session_id, "record", f"unknown status {short_repr(status)}")
    if kind not in _KINDS:
        raise CorruptRecordError(session_id, "record", f"unknown kind {short_repr(kind)}")
    try:
        record = SessionRecord.from_dict(obj)
    except (ConfigurationError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise CorruptRecordError(session_id, "record", _reason(exc)) from None
    if record.id != session_id:
        raise CorruptRecordError(session_id, "record", "it holds another session's id")
    return replace(record, version=version)


def decode_event(session_id: str, data: object) -> Event:
    """A stored event from its JSON text, or :class:`CorruptRecordError`."""
    obj = json_object(session_id, "event", data)
    try:
        return Event.from_dict(obj)
    except (ConfigurationError, TypeError, ValueError) as exc:
        raise CorruptRecordError(session_id, "event", _reason(exc)) from None


def token_number(session_id: str, what: str, value: object, *, integer: bool = False) -> Any:
    """A stored token set's number ``what`` (an int if ``integer``), or
    :class:`CorruptRecordError`."""
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok:
        raise CorruptRecordError(session_id, "token set", f"{what} is not a number")
    return value
