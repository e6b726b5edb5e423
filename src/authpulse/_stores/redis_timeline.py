"""The Redis store's timelines: one capped list of events per session.

Each operation is one flow of wire steps (``redis_wire``) that the store runs
on ``redis.Redis`` or on ``redis.asyncio.Redis``.
"""

from __future__ import annotations

from .._runtime.events import Event
from .codec import decode_event
from .redis_wire import Call, Flow, Keys, Pipe

__all__ = ["append_event", "read_events"]


def append_event(keys: Keys, limit: int, session_id: str, event: Event) -> Flow[None]:
    """Append ``event`` and keep the newest ``limit`` (one transaction)."""
    key = keys.of("ev", session_id)
    calls = [
        Call("rpush", (key, event.to_json())),
        Call("ltrim", (key, -limit, -1)),
    ]
    yield Pipe(calls, transaction=True)


def read_events(keys: Keys, session_id: str) -> Flow[list[Event]]:
    items = yield Call("lrange", (keys.of("ev", session_id), 0, -1))
    return [decode_event(session_id, item) for item in items]
