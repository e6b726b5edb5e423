"""The event hooks of one :class:`~authpulse.Session` and the events it sends them."""

from __future__ import annotations

import logging
from typing import Any

from .._core.signals import SessionEvent, SessionEventHook, SessionEventKind

__all__ = ["EventRelay"]

log = logging.getLogger("authpulse.session")


class EventRelay:
    """Sends a session's typed events to its hooks.

    The list of hooks is created with the first one: most sessions have none,
    and then an event is not even built. A hook that raises is logged and the
    others still run. Events never carry secrets.
    """

    __slots__ = ("_hooks", "name")

    def __init__(self, name: str) -> None:
        #: the session's name, for the log lines of a failing hook
        self.name = name
        self._hooks: list[SessionEventHook] | None = None

    def add(self, hook: SessionEventHook) -> None:
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(hook)

    @property
    def hooks(self) -> tuple[SessionEventHook, ...]:
        return tuple(self._hooks or ())

    def emit(
        self, kind: SessionEventKind, *, cause: type[BaseException] | None = None, **fields: Any
    ) -> None:
        """Send the event ``kind`` with ``fields`` (built only if a hook listens)."""
        if self._hooks:
            self.send(SessionEvent.of(kind, fields, cause))

    def send(self, event: SessionEvent) -> None:
        for fn in self._hooks or ():
            try:
                fn(event)
            except Exception:  # a listener must never break a refresh
                log.exception(
                    "authpulse listener failed on %s",
                    event.kind.value,
                    extra={
                        "authpulse_event": "listener_failed",
                        "authpulse_session": self.name,
                        "authpulse_kind": event.kind.value,
                    },
                )
