"""One refresh across processes and hosts, through a shared store.

The protocol, run by the in-process leader of a refresh:

1. take the store lock for the session (its TTL renewed while the refresh runs);
2. re-read the token set from the store — a peer may have refreshed already;
   if the stored set is not due, adopt it: no IdP call;
3. otherwise refresh with the NEWEST refresh token (the store's or ours);
4. write the new set, with the rotated refresh token, fenced by the lock,
   before releasing the lock.

If the IdP answers ``invalid_grant``, the store is read again before failing:
a peer may have rotated the token between our read and our request. If the
store is unavailable, the refresh goes ahead process-locally (single flight
still holds within the process) and the session reports it in its health.

The decisions are pure functions shared by the sync and async shells.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ._errors import OAuthError
from ._policy import Freshness, RefreshPolicy, freshness
from ._sources import Fetched
from ._store import FencingError, SessionStore, StoredToken, StoreError, StoreLock
from ._tokens import TokenSet

if TYPE_CHECKING:
    from ._clock import Clock

__all__ = ["Coordinator", "newest", "stored_is_usable"]

log = logging.getLogger("authpulse.coordination")

Reason = Literal["expired", "stale", "forced", "rejected", "initial"]


def stored_is_usable(
    stored: StoredToken | None,
    *,
    reason: Reason,
    known_version: int | None,
    rejected_access: str | None,
    now: float,
    policy: RefreshPolicy,
) -> bool:
    """Whether the stored token set can be adopted instead of refreshing.

    It must not be due (FRESH by our policy). For a forced refresh it must
    also be newer than what we last saw (a peer refreshed after we asked);
    after a 401 it must not be the token the API rejected.
    """
    if stored is None:
        return False
    if freshness(stored.token, now, policy, skew=stored.skew) is not Freshness.FRESH:
        return False
    if reason == "forced" and stored.version == known_version:
        return False
    return not (
        rejected_access is not None
        and stored.token.access_token.get_secret_value() == rejected_access
    )


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
    operation worked (for health and events).
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
    ) -> None:
        self.store = store
        self.key = key
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
            log.warning("store unavailable (%s); refreshing process-locally", type(exc).__name__)
            self._on_store_state(False, type(exc).__name__)

    def _worked(self) -> None:
        if not self.store_ok:
            self.store_ok = True
            log.info("store available again")
            self._on_store_state(True, None)

    def _skip_store(self) -> bool:
        return not self.store_ok and self.clock.monotonic() < self._retry_store_at

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
            return _Outcome(fetch(local), False, None)
        try:
            lock: StoreLock = store.lock(f"refresh:{self.key}", ttl=self.lock_ttl)
            acquired = lock.acquire(timeout=self.wait)
        except StoreError as exc:
            self._failed(exc)
            return _Outcome(fetch(local), False, None)
        if not acquired:
            self._failed(StoreError("timed out waiting for the refresh lock"))
            return _Outcome(fetch(local), False, None)
        with _renewing(lock, self.lock_ttl):
            try:
                try:
                    stored = store.get_token(self.key)
                    self._worked()
                except StoreError as exc:
                    self._failed(exc)
                    return _Outcome(fetch(local), False, None)
                now = self.clock.now()
                if stored is not None and stored_is_usable(
                    stored,
                    reason=reason,
                    known_version=self.known_version,
                    rejected_access=rejected_access,
                    now=now,
                    policy=self.policy,
                ):
                    self.known_version = stored.version
                    return _Outcome(Fetched(stored.token, stored.skew), True, stored.version)
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
            again = self.store.get_token(self.key)
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
            return _Outcome(await fetch(local), False, None)
        try:
            lock: StoreLock = store.lock(f"refresh:{self.key}", ttl=self.lock_ttl)
            acquired = await lock.aacquire(timeout=self.wait)
        except StoreError as exc:
            self._failed(exc)
            return _Outcome(await fetch(local), False, None)
        if not acquired:
            self._failed(StoreError("timed out waiting for the refresh lock"))
            return _Outcome(await fetch(local), False, None)
        renew = asyncio.get_running_loop().create_task(_arenew(lock, self.lock_ttl))
        try:
            try:
                stored = await store.aget_token(self.key)
                self._worked()
            except StoreError as exc:
                self._failed(exc)
                return _Outcome(await fetch(local), False, None)
            if stored is not None and stored_is_usable(
                stored,
                reason=reason,
                known_version=self.known_version,
                rejected_access=rejected_access,
                now=self.clock.now(),
                policy=self.policy,
            ):
                self.known_version = stored.version
                return _Outcome(Fetched(stored.token, stored.skew), True, stored.version)
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
                again = await store.aget_token(self.key)
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
