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
token on their own would trip the IdP's reuse detection).

A stored set that cannot be read is not an outage either:

- encrypted with keys we do not have (:class:`DecryptionError`): a
  configuration error; the refresh fails with it and the IdP is not asked
  (overwriting the set would destroy what correctly configured peers read);
- corrupt, or plaintext in an encrypted store (:class:`CorruptRecordError`,
  :class:`UnauthenticatedRecordError`): the record is unusable. The source is
  asked afresh — ``FetchContext.afresh`` says why, ``current`` is ``None`` —
  and the new set overwrites the record. A source that cannot start afresh
  (a refresh token grant: the refresh token the record held is lost) answers
  :class:`NoRefreshTokenError`, which becomes :class:`LoginRequiredError`
  naming the record's problem.

Every store call of a refresh is bounded by the refresh's deadline (the
session's ``TokenRetry.deadline``): the time spent in store calls adds up,
and once it reaches the deadline the store counts as unavailable, as above.
Time spent asking the IdP or waiting for a live peer's lock is not store
time. A store that answers late, or never, cannot hold a refresh past it.

The protocol is written once, as a flow (:mod:`authpulse._runtime.flow`) that
yields its store calls, sleeps and IdP call; the session's sync or async
driver does them. The decisions are pure functions (:mod:`.stored_records`);
the store calls, each bounded by the deadline, and the store's availability
are its base, :class:`~.store_calls.StoreCalls`; the lock's renewal is in
:mod:`.lock_renewal`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from pydantic import SecretStr

from .._core.errors import NoRefreshTokenError, OAuthError
from .._core.model import check_id
from .._core.policy import Freshness, RefreshPolicy, freshness
from .._core.tokens import TokenSet
from .._runtime.flow import Flow, Op, call
from .._stores.base import (
    MAX_LOCK_NAME,
    CorruptRecordError,
    FencingError,
    MemoryStore,
    SessionStore,
    StoredToken,
    StoreError,
    StoreLock,
)
from .._stores.bounded import call_within
from . import lock_renewal
from .fetch import Fetched
from .store_calls import StoreCalls
from .stored_records import (
    REVOKED_REASON,
    Outcome,
    Reason,
    access_of,
    afresh_reason,
    defer_local_refresh,
    is_revoked,
    login_required_after_revocation,
    login_required_for,
    newest,
    raise_if_unreadable,
    stored_is_usable,
)

if TYPE_CHECKING:
    from .._runtime.clock import Clock

__all__ = [
    "MAX_KEY_LENGTH",
    "Coordinator",
    "FetchFlow",
    "newest",
    "stored_is_usable",
]

log = logging.getLogger("authpulse.coordination")


#: ``fetch(current, afresh)``: the flow of the session's call of its source; ``afresh``
#: is the reason the stored set is unusable (then ``current`` is ``None``), else ``None``
FetchFlow = Callable[[TokenSet | None, str | None], Flow[Fetched]]
#: the refresh lock of a store key is named LOCK_PREFIX + key
LOCK_PREFIX = "refresh:"
#: the longest store key: its lock name must fit the store's limit
MAX_KEY_LENGTH = MAX_LOCK_NAME - len(LOCK_PREFIX)

#: polling of a busy refresh lock (seconds of the clock, doubling), as StoreLock.acquire does
_POLL_MIN = 0.005
_POLL_MAX = 0.1


class Coordinator(StoreCalls):
    """Runs the protocol for one session against one store.

    :meth:`flow` is the protocol; ``fetch(current, afresh)`` gives the flow of
    the actual IdP call (the session passes it in). ``store_ok`` tells whether the last store
    operation worked (for health and events). ``deadline`` bounds the time a
    run spends in store calls (``None``: unbounded); a run is never
    concurrent with another of the same coordinator (the session's single
    flight), so the time spent is kept on the instance. ``key`` must make a
    lock name (:func:`~authpulse._core.model.check_id`, at most
    :data:`MAX_KEY_LENGTH` characters): a key the lock would refuse is
    refused here, named as ``what``, rather than at every refresh.
    """

    __slots__ = ("_renew", "known_version", "lock_ttl", "policy", "wait")

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
        deadline: float | None = None,
        what: str = "store key",
    ) -> None:
        in_process = isinstance(store, MemoryStore)
        # the store calls, each within what the deadline leaves (the base); an
        # in-process store cannot hang: its calls need no helper thread or task
        super().__init__(
            store,
            check_id(key, what, MAX_KEY_LENGTH),
            clock=clock,
            budget=None if in_process else deadline,
            on_store_state=on_store_state,
        )
        self.policy = policy
        self.lock_ttl = lock_ttl
        self.wait = wait
        self.known_version: int | None = None
        # nor can its lock expire under a live holder: the holder is in this
        # process and releases it when the refresh ends, so it needs no renewal
        self._renew = not in_process

    def _read(self) -> Flow[tuple[StoredToken | None, CorruptRecordError | None]]:
        """The stored set, or ``None`` and why it cannot be used."""
        try:
            stored = yield from call(self.get_op())
        except CorruptRecordError as exc:
            return None, self.unusable(exc)
        return stored, None

    def _peek(self) -> Flow[StoredToken | None]:
        """The stored set while waiting for the lock (an unusable one is none:
        the holder may be replacing it)."""
        try:
            return (yield from call(self.get_op()))
        except CorruptRecordError:
            return None

    def put(self, token: TokenSet, skew: float) -> None:
        """Write a set obtained outside a refresh (a new login) to the store,
        unfenced: it is the live grant now. A store failure is reported, not raised."""
        try:
            saved = call_within(
                lambda: self.store.put_token(self.key, token, skew=skew),
                self.budget,
                "write the token",
            )
        except StoreError as exc:
            self.failed(exc)
            return
        self.worked()
        self.known_version = saved.version

    # -- the protocol -------------------------------------------------------

    def flow(
        self,
        reason: Reason,
        local: TokenSet | None,
        rejected_access: SecretStr | None,
        fetch: FetchFlow,
    ) -> Flow[Outcome]:
        """One coordinated refresh (see the module's docstring), for the sync or
        the async driver."""
        self.spent = 0.0
        if self.skip_store():
            defer_local_refresh(reason, local, None)
            return Outcome((yield from fetch(local, None)), False, None)
        try:
            lock: StoreLock = self.store.lock(LOCK_PREFIX + self.key, ttl=self.lock_ttl)
            acquired = yield from self._acquire(lock, reason, local, rejected_access)
        except StoreError as exc:
            raise_if_unreadable(exc)
            self.failed(exc)
            defer_local_refresh(reason, local, exc)
            return Outcome((yield from fetch(local, None)), False, None)
        if isinstance(acquired, Outcome):
            return acquired  # a peer refreshed while we waited for the lock
        if not acquired:
            self.failed(StoreError("timed out waiting for the refresh lock"))
            defer_local_refresh(reason, local, None)
            return Outcome((yield from fetch(local, None)), False, None)
        stop_renewal: Callable[[], None] | None = None
        if self._renew:
            stop_renewal = yield from call(
                Op(
                    partial(lock_renewal.start_renewal, lock, self.lock_ttl, self.clock),
                    partial(lock_renewal.astart_renewal, lock, self.lock_ttl, self.clock),
                )
            )
        try:
            return (yield from self._locked(lock, reason, local, rejected_access, fetch))
        finally:
            if stop_renewal is not None:
                stop_renewal()  # not joined: a renewal stuck on a silent store must not wait
            yield Op(partial(self.release, lock), partial(self.arelease, lock))

    def _locked(
        self,
        lock: StoreLock,
        reason: Reason,
        local: TokenSet | None,
        rejected_access: SecretStr | None,
        fetch: FetchFlow,
    ) -> Flow[Outcome]:
        """Steps 2 to 4, under the lock."""
        try:
            stored, unusable = yield from self._read()
            self.worked()
        except StoreError as exc:
            raise_if_unreadable(exc)
            self.failed(exc)
            defer_local_refresh(reason, local, exc)
            return Outcome((yield from fetch(local, None)), False, None)
        if unusable is not None:
            try:
                fetched = yield from fetch(None, afresh_reason(unusable))
            except NoRefreshTokenError:
                raise login_required_for(unusable) from None
            out = yield from self._write(fetched, lock.fence)
            if not out.adopted:
                out.discarded = unusable
            return out
        if stored is not None and is_revoked(stored.token):
            # a peer revoked the grant: a source that can start afresh (client
            # credentials, a fallback chain) does; a refresh token grant cannot
            try:
                fetched = yield from fetch(None, REVOKED_REASON)
            except NoRefreshTokenError:
                raise login_required_after_revocation() from None
            return (yield from self._write(fetched, lock.fence))
        adopted = self._usable(stored, reason, local, rejected_access)
        if adopted is not None:
            return adopted
        current = newest(stored.token if stored else None, local)
        try:
            fetched = yield from fetch(current, None)
        except OAuthError as exc:
            again = yield from self._reread_after_invalid_grant(exc, stored)
            if again is not None:
                return again
            raise
        return (yield from self._write(fetched, lock.fence))

    def _usable(
        self,
        stored: StoredToken | None,
        reason: Reason,
        local: TokenSet | None,
        rejected_access: SecretStr | None,
    ) -> Outcome | None:
        """Adopt ``stored`` if :func:`stored_is_usable` says so."""
        if stored is None or not stored_is_usable(
            stored,
            reason=reason,
            known_version=self.known_version,
            rejected_access=rejected_access,
            now=self.clock.now(),
            policy=self.policy,
            held_access=access_of(local),
        ):
            return None
        self.known_version = stored.version
        return Outcome(Fetched(stored.token, stored.skew), True, stored.version)

    def _acquire(
        self,
        lock: StoreLock,
        reason: Reason,
        local: TokenSet | None,
        rejected_access: SecretStr | None,
    ) -> Flow[bool | Outcome]:
        """Take ``lock`` within ``self.wait`` seconds (True / False), or return the
        set a peer stored meanwhile. Waiters read the store between tries, so
        that N processes adopt the new set together instead of taking the lock
        one after the other just to read it."""
        clock = self.clock
        deadline = clock.monotonic() + self.wait
        delay = _POLL_MIN
        take = Op(partial(self.try_lock, lock), partial(self.atry_lock, lock))
        while not (yield from call(take)):
            adopted = self._usable((yield from self._peek()), reason, local, rejected_access)
            if adopted is not None:
                self.worked()
                return adopted
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                return False
            pause = min(delay, remaining)
            yield Op(partial(clock.sleep, pause), partial(clock.asleep, pause))
            delay = min(delay * 2, _POLL_MAX)
        return True

    def _reread_after_invalid_grant(
        self, exc: OAuthError, before: StoredToken | None
    ) -> Flow[Outcome | None]:
        if exc.error != "invalid_grant":
            return None
        try:
            again = yield from call(self.get_op())
        except StoreError:
            return None
        return self._adopt_if_newer(again, before)

    def _adopt_if_newer(
        self, again: StoredToken | None, before: StoredToken | None
    ) -> Outcome | None:
        if again is None or (before is not None and again.version == before.version):
            return None
        if freshness(again.token, self.clock.now(), self.policy, skew=again.skew) is (
            Freshness.EXPIRED
        ):
            return None
        self.known_version = again.version
        return Outcome(Fetched(again.token, again.skew), True, again.version)

    def _write(self, fetched: Fetched, fence: int) -> Flow[Outcome]:
        store, key = self.store, self.key
        skew = fetched.skew or 0.0
        put = self.op(
            partial(store.put_token, key, fetched.token, skew=skew, fence=fence),
            partial(store.aput_token, key, fetched.token, skew=skew, fence=fence),
            "write the token",
        )
        try:
            saved = yield from call(put)
        except FencingError:
            # our lock expired and a newer holder wrote: theirs is the live grant
            try:
                again = yield from call(self.get_op())
            except StoreError:
                again = None  # keep the set we fetched rather than lose it
            adopted = self._adopt_if_newer(again, None)
            if adopted is not None:
                return adopted
            return Outcome(fetched, False, None)
        except StoreError as exc:
            self.failed(exc)  # keep the new token in memory; the store catches up later
            return Outcome(fetched, False, None)
        self.known_version = saved.version
        return Outcome(fetched, False, saved.version)
