"""One refresh across processes and hosts, through a shared store.

The protocol, run by the in-process leader of a refresh:

1. take the store lock for the session (its TTL renewed while the refresh runs);
   while it is busy, keep reading the store: once the holder has written a
   set we can use, adopt it without waiting for our turn at the lock;
2. re-read the token set from the store — a peer may have refreshed already;
   if the stored set is not due, adopt it: no IdP call;
3. otherwise refresh with the NEWEST refresh token (the store's or ours);
4. write the new set, with the rotated refresh token, fenced by the lock,
   before releasing the lock.

If the IdP answers ``invalid_grant``, the store is read again before failing:
a peer may have rotated the token between our read and our request. If the
store is unavailable, the refresh goes ahead process-locally (single flight
still holds within the process) and the session reports it in its health —
unless the token is only STALE: then the still-valid token is kept and the
refresh waits for the store (peers refreshing the same single-use refresh
token on their own would trip the IdP's reuse detection). A stored set that
cannot be read (wrong encryption key, corrupt data) is not an outage: the
refresh fails with that error and the IdP is not asked.

The decisions are pure functions shared by the sync and async shells.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ._crypto import DecryptionError
from ._errors import OAuthError
from ._model import check_id
from ._policy import Freshness, RefreshPolicy, freshness
from ._sources import Fetched
from ._store import (
    MAX_LOCK_NAME,
    CorruptRecordError,
    FencingError,
    SessionStore,
    StoredToken,
    StoreError,
    StoreLock,
    StoreUnavailableError,
)
from ._tokens import TokenSet

if TYPE_CHECKING:
    from ._clock import Clock

__all__ = ["MAX_KEY_LENGTH", "Coordinator", "newest", "stored_is_usable"]

log = logging.getLogger("authpulse.coordination")

Reason = Literal["expired", "stale", "forced", "rejected", "initial"]

#: the refresh lock of a store key is named LOCK_PREFIX + key
LOCK_PREFIX = "refresh:"
#: the longest store key: its lock name must fit the store's limit
MAX_KEY_LENGTH = MAX_LOCK_NAME - len(LOCK_PREFIX)

#: polling of a busy refresh lock (real seconds, doubling), as StoreLock.acquire does
_POLL_MIN = 0.005
_POLL_MAX = 0.1


def stored_is_usable(
    stored: StoredToken | None,
    *,
    reason: Reason,
    known_version: int | None,
    rejected_access: str | None,
    now: float,
    policy: RefreshPolicy,
    held_access: str | None = None,
) -> bool:
    """Whether the stored token set can be adopted instead of refreshing.

    It must not be due (FRESH by our policy). For a forced refresh it must
    also be newer than what we last saw (a peer refreshed after we asked);
    for a STALE refresh it must not be the set we already hold
    (``held_access``: our schedule, jitter included, says that one is due);
    after a 401 it must not be the token the API rejected.
    """
    if stored is None:
        return False
    if freshness(stored.token, now, policy, skew=stored.skew) is not Freshness.FRESH:
        return False
    if reason == "forced" and stored.version == known_version:
        return False
    if (
        reason == "stale"
        and held_access is not None
        and stored.token.access_token.get_secret_value() == held_access
    ):
        return False
    return not (
        rejected_access is not None
        and stored.token.access_token.get_secret_value() == rejected_access
    )


def _access(token: TokenSet | None) -> str | None:
    return token.access_token.get_secret_value() if token is not None else None


def newest(a: TokenSet | None, b: TokenSet | None) -> TokenSet | None:
    """The more recently issued of two token sets (its refresh token is the live one)."""
    if a is None:
        return b
    if b is None:
        return a
    return a if a.issued_at >= b.issued_at else b


@dataclass
class _Outcome:
    fetched: Fetched
    adopted: bool
    version: int | None


class Coordinator:
    """Runs the protocol for one session against one store.

    ``fetch(current)`` / ``afetch(current)`` do the actual IdP call; the
    session passes them in. ``store_ok`` tells whether the last store
    operation worked (for health and events). ``key`` must make a lock name
    (:func:`~authpulse._model.check_id`, at most :data:`MAX_KEY_LENGTH`
    characters): a key the lock would refuse is refused here, named as
    ``what``, rather than at every refresh.
    """

    __slots__ = (
        "_on_store_state",
        "_retry_store_at",
        "clock",
        "key",
        "known_version",
        "lock_ttl",
        "policy",
        "store",
        "store_ok",
        "wait",
    )

    def __init__(
        self,
        store: SessionStore,
        key: str,
        *,
        clock: Clock,
        policy: RefreshPolicy,
        lock_ttl: float,
        wait: float,
        on_store_state: Callable[[bool, str | None], None],
        what: str = "store key",
    ) -> None:
        self.store = store
        self.key = check_id(key, what, MAX_KEY_LENGTH)
        self.clock = clock
        self.policy = policy
        self.lock_ttl = lock_ttl
        self.wait = wait
        self.known_version: int | None = None
        self.store_ok = True
        self._on_store_state = on_store_state
        self._retry_store_at = float("-inf")

    # -- bookkeeping --------------------------------------------------------

    def _failed(self, exc: BaseException) -> None:
        self._retry_store_at = self.clock.monotonic() + 5.0
        if self.store_ok:
            self.store_ok = False
            log.warning(
                "store unavailable (%s); refreshing process-locally",
                type(exc).__name__,
                extra={
                    "authpulse_event": "store_unavailable",
                    "authpulse_store_key": self.key,
                    "authpulse_error": type(exc).__name__,
                },
            )
            self._on_store_state(False, type(exc).__name__)

    def _worked(self) -> None:
        if not self.store_ok:
            self.store_ok = True
            log.info(
                "store available again",
                extra={"authpulse_event": "store_recovered", "authpulse_store_key": self.key},
            )
            self._on_store_state(True, None)

    def _skip_store(self) -> bool:
        return not self.store_ok and self.clock.monotonic() < self._retry_store_at

    @staticmethod
    def _raise_if_unreadable(exc: StoreError) -> None:
        """A stored set we cannot read (wrong encryption key, corrupt data) is no
        outage: refreshing alone, maybe with an already rotated refresh token,
        could get the grant revoked. The refresh fails with the store's error."""
        if isinstance(exc, DecryptionError | CorruptRecordError):
            raise exc

    @staticmethod
    def _defer(reason: Reason, local: TokenSet | None, cause: BaseException | None) -> None:
        """Raise instead of refreshing process-locally while our token is still valid.

        Peers that cannot reach the store either would each refresh the same
        single-use refresh token, and the IdP would revoke the grant. A STALE
        token is still good: keep it, and let the session retry later.
        """
        if reason == "stale" and local is not None:
            raise StoreUnavailableError(
                "the shared store is unavailable; the still-valid token is kept and the "
                "refresh will be retried"
            ) from cause

    # -- sync ---------------------------------------------------------------

    def run(
        self,
        reason: Reason,
        local: TokenSet | None,
        rejected_access: str | None,
        fetch: Callable[[TokenSet | None], Fetched],
    ) -> _Outcome:
        store = self.store
        if self._skip_store():
            self._defer(reason, local, None)
            return _Outcome(fetch(local), False, None)
        try:
            lock: StoreLock = store.lock(LOCK_PREFIX + self.key, ttl=self.lock_ttl)
            acquired = self._acquire(lock, reason, local, rejected_access)
        except StoreError as exc:
            self._raise_if_unreadable(exc)
            self._failed(exc)
            self._defer(reason, local, exc)
            return _Outcome(fetch(local), False, None)
        if isinstance(acquired, _Outcome):
            return acquired  # a peer refreshed while we waited for the lock
        if not acquired:
            self._failed(StoreError("timed out waiting for the refresh lock"))
            self._defer(reason, local, None)
            return _Outcome(fetch(local), False, None)
        with _renewing(lock, self.lock_ttl):
            try:
                try:
                    stored = store.get_token(self.key)
                    self._worked()
                except StoreError as exc:
                    self._raise_if_unreadable(exc)
                    self._failed(exc)
                    self._defer(reason, local, exc)
                    return _Outcome(fetch(local), False, None)
                adopted = self._usable(stored, reason, local, rejected_access)
                if adopted is not None:
                    return adopted
                current = newest(stored.token if stored else None, local)
                try:
                    fetched = fetch(current)
                except OAuthError as exc:
                    again = self._reread_after_invalid_grant(exc, stored)
                    if again is not None:
                        return again
                    raise
                return self._write(fetched, lock.fence)
            finally:
                with contextlib.suppress(StoreError):
                    lock.release()

    def _usable(
        self,
        stored: StoredToken | None,
        reason: Reason,
        local: TokenSet | None,
        rejected_access: str | None,
    ) -> _Outcome | None:
        """Adopt ``stored`` if :func:`stored_is_usable` says so."""
        if stored is None or not stored_is_usable(
            stored,
            reason=reason,
            known_version=self.known_version,
            rejected_access=rejected_access,
            now=self.clock.now(),
            policy=self.policy,
            held_access=_access(local),
        ):
            return None
        self.known_version = stored.version
        return _Outcome(Fetched(stored.token, stored.skew), True, stored.version)

    def _acquire(
        self,
        lock: StoreLock,
        reason: Reason,
        local: TokenSet | None,
        rejected_access: str | None,
    ) -> bool | _Outcome:
        """Take ``lock`` within ``self.wait`` seconds (True / False), or return the
        set a peer stored meanwhile. Waiters read the store between tries, so
        that N processes adopt the new set together instead of taking the lock
        one after the other just to read it."""
        deadline = time.monotonic() + self.wait
        delay = _POLL_MIN
        while not lock.acquire(timeout=0):
            adopted = self._usable(self.store.get_token(self.key), reason, local, rejected_access)
            if adopted is not None:
                self._worked()
                return adopted
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, _POLL_MAX)
        return True

    async def _aacquire(
        self,
        lock: StoreLock,
        reason: Reason,
        local: TokenSet | None,
        rejected_access: str | None,
    ) -> bool | _Outcome:
        """Async :meth:`_acquire`."""
        deadline = time.monotonic() + self.wait
        delay = _POLL_MIN
        while not await lock.aacquire(timeout=0):
            stored = await self.store.aget_token(self.key)
            adopted = self._usable(stored, reason, local, rejected_access)
            if adopted is not None:
                self._worked()
                return adopted
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, _POLL_MAX)
        return True

    def _reread_after_invalid_grant(
        self, exc: OAuthError, before: StoredToken | None
    ) -> _Outcome | None:
        if exc.error != "invalid_grant":
            return None
        try:
            again = self.store.get_token(self.key)
        except StoreError:
            return None
        return self._adopt_if_newer(again, before)

    def _adopt_if_newer(
        self, again: StoredToken | None, before: StoredToken | None
    ) -> _Outcome | None:
        if again is None or (before is not None and again.version == before.version):
            return None
        if freshness(again.token, self.clock.now(), self.policy, skew=again.skew) is (
            Freshness.EXPIRED
        ):
            return None
        self.known_version = again.version
        return _Outcome(Fetched(again.token, again.skew), True, again.version)

    def _write(self, fetched: Fetched, fence: int) -> _Outcome:
        try:
            saved = self.store.put_token(
                self.key, fetched.token, skew=fetched.skew or 0.0, fence=fence
            )
        except FencingError:
            # our lock expired and a newer holder wrote: theirs is the live grant
            try:
                again = self.store.get_token(self.key)
            except StoreError:
                again = None  # keep the set we fetched rather than lose it
            adopted = self._adopt_if_newer(again, None)
            if adopted is not None:
                return adopted
            return _Outcome(fetched, False, None)
        except StoreError as exc:
            self._failed(exc)  # keep the new token in memory; the store catches up later
            return _Outcome(fetched, False, None)
        self.known_version = saved.version
        return _Outcome(fetched, False, saved.version)

    # -- async --------------------------------------------------------------

    async def arun(
        self,
        reason: Reason,
        local: TokenSet | None,
        rejected_access: str | None,
        fetch: Callable[[TokenSet | None], Awaitable[Fetched]],
    ) -> _Outcome:
        store = self.store
        if self._skip_store():
            self._defer(reason, local, None)
            return _Outcome(await fetch(local), False, None)
        try:
            lock: StoreLock = store.lock(LOCK_PREFIX + self.key, ttl=self.lock_ttl)
            acquired = await self._aacquire(lock, reason, local, rejected_access)
        except StoreError as exc:
            self._raise_if_unreadable(exc)
            self._failed(exc)
            self._defer(reason, local, exc)
            return _Outcome(await fetch(local), False, None)
        if isinstance(acquired, _Outcome):
            return acquired  # a peer refreshed while we waited for the lock
        if not acquired:
            self._failed(StoreError("timed out waiting for the refresh lock"))
            self._defer(reason, local, None)
            return _Outcome(await fetch(local), False, None)
        renew = asyncio.get_running_loop().create_task(_arenew(lock, self.lock_ttl))
        try:
            try:
                stored = await store.aget_token(self.key)
                self._worked()
            except StoreError as exc:
                self._raise_if_unreadable(exc)
                self._failed(exc)
                self._defer(reason, local, exc)
                return _Outcome(await fetch(local), False, None)
            adopted = self._usable(stored, reason, local, rejected_access)
            if adopted is not None:
                return adopted
            current = newest(stored.token if stored else None, local)
            try:
                fetched = await fetch(current)
            except OAuthError as exc:
                if exc.error == "invalid_grant":
                    try:
                        again = await store.aget_token(self.key)
                    except StoreError:
                        again = None
                    adopted = self._adopt_if_newer(again, stored)
                    if adopted is not None:
                        return adopted
                raise
            try:
                saved = await store.aput_token(
                    self.key, fetched.token, skew=fetched.skew or 0.0, fence=lock.fence
                )
            except FencingError:
                try:
                    again = await store.aget_token(self.key)
                except StoreError:
                    again = None  # keep the set we fetched rather than lose it
                adopted = self._adopt_if_newer(again, None)
                return adopted if adopted is not None else _Outcome(fetched, False, None)
            except StoreError as exc:
                self._failed(exc)
                return _Outcome(fetched, False, None)
            self.known_version = saved.version
            return _Outcome(fetched, False, saved.version)
        finally:
            renew.cancel()
            with contextlib.suppress(StoreError, asyncio.CancelledError):
                await renew
            with contextlib.suppress(StoreError):
                await lock.arelease()


@contextlib.contextmanager
def _renewing(lock: StoreLock, ttl: float) -> Iterator[None]:
    """Renew ``lock`` every third of its TTL (in a helper thread) while the body runs."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(ttl / 3):
            try:
                if not lock.renew():
                    return
            except StoreError:
                return

    t = threading.Thread(target=loop, name="authpulse-lock-renew", daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


async def _arenew(lock: StoreLock, ttl: float) -> None:
    while True:
        await asyncio.sleep(ttl / 3)
        if not await lock.arenew():
            return
