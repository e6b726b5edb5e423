"""The Redis store's locks: a holder's id with a TTL on the server's clock, and a
fence counter per lock.

Each operation is one script (``redis_wire``), atomic on the server, yielded as
a flow that the store runs on ``redis.Redis`` or on ``redis.asyncio.Redis``.
"""

from __future__ import annotations

from .redis_wire import LOCK_RELEASE, LOCK_RENEW, LOCK_TRY, Eval, Flow, Keys, ttl_ms

__all__ = ["lock_release", "lock_renew", "lock_try"]


def lock_try(keys: Keys, name: str, holder: str, ttl: float) -> Flow[int | None]:
    """The new fence if ``holder`` took the lock, else ``None``."""
    names = [keys.of("lock", name), keys.of("lockfence", name)]
    return int((yield Eval(LOCK_TRY, names, [holder, ttl_ms(ttl)]))) or None


def lock_release(keys: Keys, name: str, holder: str) -> Flow[bool]:
    return bool((yield Eval(LOCK_RELEASE, [keys.of("lock", name)], [holder])))


def lock_renew(keys: Keys, name: str, holder: str, ttl: float) -> Flow[bool]:
    return bool((yield Eval(LOCK_RENEW, [keys.of("lock", name)], [holder, ttl_ms(ttl)])))
