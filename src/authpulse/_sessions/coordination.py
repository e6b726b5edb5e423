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
driver does them. The decisions are pure functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Literal, TypeVar

from pydantic import SecretStr

from .._core.errors import LoginRequiredError, NoRefreshTokenError, OAuthError
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
    StoreUnavailableError,
)
from .._stores.bounded import acall_within, call_within, start_and_forget
from .._stores.crypto import DecryptionError
from .fetch import Fetched

if TYPE_CHECKING:
    from .._runtime.clock import Clock

__all__ = [
    "MAX_KEY_LENGTH",
    "Coordinator",
    "FetchOp",
    "newest",
    "stored_is_usable",
]

log = logging.getLogger("authpulse.coordination")

Reason = Literal["expired", "stale", "forced", "rejected", "initial"]

T = TypeVar("T")
#: ``fetch(current, afresh)``: the op of the session's call of its source; ``afresh``
#: is the reason the stored set is unusable (then ``current`` is ``None``), else ``None``
FetchOp = Callable[[TokenSet | None, str | None], Op[Fetched]]
#: the refresh lock of a store key is named LOCK_PREFIX + key
LOCK_PREFIX = "refresh:"
#: the longest store key: its lock name must fit the store's limit
MAX_KEY_LENGTH = MAX_LOCK_NAME - len(LOCK_PREFIX)

#: polling of a busy refresh lock (seconds of the clock, doubling), as StoreLock.acquire does
_POLL_MIN = 0.005
_POLL_MAX = 0.1


def stored_is_usable(
    stored: StoredToken | None,
    *,
    reason: Reason,
    known_version: int | None,
    rejected_access: SecretStr | None,
    now: float,
    policy: RefreshPolicy,
    held_access: SecretStr | None = None,
) -> bool:
    """Whether the stored token set can be adopted instead of refreshing.

    It must not be due (FRESH by our policy). For a forced refresh it must
    also be newer than what we last saw (a peer refreshed after we asked);
    for a STALE refresh it must not be the set we already hold
    (``held_access``: our schedule, jitter included, says that one is due);
    after a 401 it must not be the token the API rejected. Tokens stay
    wrapped, so no frame of a refresh holds one in clear.
    """
    if stored is None:
        return False
    if freshness(stored.token, now, policy, skew=stored.skew) is not Freshness.FRESH:
        return False
    if reason == "forced" and stored.version == known_version:
        return False
    if reason == "stale" and held_access is not None and stored.token.access_token == held_access:
        return False
    return not (rejected_access is not None and stored.token.access_token == rejected_access)


def _access(token: TokenSet | None) -> SecretStr | None:
    return token.access_token if token is not None else None


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
    #: the unusable stored record this outcome replaced (or tried to: ``version``
    #: is ``None`` when the write did not reach the store)
    discarded: CorruptRecordError | None = None


def afresh_reason(exc: CorruptRecordError) -> str:
    """Why a source is asked afresh: the record's problem, never its contents."""
    return f"the stored token set is unusable ({exc.reason})"


def _login_required(exc: CorruptRecordError) -> LoginRequiredError:
    """The end of a source that cannot start afresh (raised ``from None``: the
    store's error and its frames, which held the record, are not chained)."""
    return LoginRequiredError(
        None,
        reason=f"{afresh_reason(exc)} and the refresh token it held is lost; sign in again",
    )


class Coordinator:
    """Runs the protocol for one session against one store.

    :meth:`flow` is the protocol; ``fetch(current, afresh)`` gives the op of
    the actual IdP call (the session passes it in). ``store_ok`` tells whether the last store
    operation worked (for health and events). ``deadline`` bounds the time a
    run spends in store calls (``None``: unbounded); a run is never
    concurrent with another of the same coordinator (the session's single
    flight), so the time spent is kept on the instance. ``key`` must make a
    lock name (:func:`~authpulse._core.model.check_id`, at most
    :data:`MAX_KEY_LENGTH` characters): a key the lock would refuse is
    refused here, named as ``what``, rather than at every refresh.
    """

    __slots__ = (
        "_budget",
        "_on_store_state",
        "_renew",
        "_retry_store_at",
        "_spent",
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
        deadline: float | None = None,
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
        in_process = isinstance(store, MemoryStore)
        # an in-process store cannot hang: its calls need no helper thread or task
        self._budget = None if in_process else deadline
        # nor can its lock expire under a live holder: the holder is in this
        # process and releases it when the refresh ends, so it needs no renewal
        self._renew = not in_process
        self._spent = 0.0

    # -- store calls within the deadline -------------------------------------

    def _left(self) -> float | None:
        return None if self._budget is None else self._budget - self._spent

    def _call(self, fn: Callable[[], T], what: str) -> T:
        if self._budget is None:
            return fn()
        began = self.clock.monotonic()
        try:
            return call_within(fn, self._budget - self._spent, what)
        finally:
            self._spent += self.clock.monotonic() - began

    async def _acall(self, make: Callable[[], Awaitable[T]], what: str) -> T:
        if self._budget is None:
            return await make()
        began = self.clock.monotonic()
        try:
            return await acall_within(make, self._budget - self._spent, what)
        finally:
            self._spent += self.clock.monotonic() - began

    def _try_lock(self, lock: StoreLock) -> bool:
        """One try at ``lock``; a try that answers after we gave up on it lets go."""
        gave_up = threading.Event()

        def take() -> bool:
            taken = lock.acquire(timeout=0)
            if taken and gave_up.is_set():
                lock.release()
                return False
            return taken

        try:
            return self._call(take, "take the refresh lock")
        except StoreUnavailableError:
            gave_up.set()
            raise

    async def _atry_lock(self, lock: StoreLock) -> bool:
        """Async :meth:`_try_lock` (a cancelled try may leave the lock to its TTL)."""
        return await self._acall(lambda: lock.aacquire(timeout=0), "take the refresh lock")

    def _release(self, lock: StoreLock) -> None:
        left = self._left()
        if left is not None and left <= 0:
            start_and_forget(lock.release, "release")  # else the lock expires by its TTL
            return
        with contextlib.suppress(StoreError):
            self._call(lock.release, "release the refresh lock")

    async def _arelease(self, lock: StoreLock) -> None:
        left = self._left()
        if left is not None and left <= 0:
            task = asyncio.ensure_future(lock.arelease())
            _RELEASING.add(task)
            task.add_done_callback(_released)
            return
        with contextlib.suppress(StoreError):
            await self._acall(lock.arelease, "release the refresh lock")

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
        """A stored set encrypted with keys we lack is no outage but a
        configuration error: refreshing alone, maybe with an already rotated
        refresh token, could get the grant revoked, and overwriting it would
        destroy what correctly configured peers can read. The refresh fails
        with the store's error."""
        if isinstance(exc, DecryptionError):
            raise exc

    def _unusable(self, exc: CorruptRecordError) -> CorruptRecordError:
        """Log ``exc`` and keep it without its traceback (the store's frames held
        the record)."""
        exc = exc.with_traceback(None)
        exc.__context__ = None
        log.warning(
            "stored token set unusable (%s: %s); asking the source afresh",
            type(exc).__name__,
            exc.reason,
            extra={
                "authpulse_event": "token_record_unusable",
                "authpulse_store_key": self.key,
                "authpulse_error": type(exc).__name__,
            },
        )
        return exc

    def _op(self, sync: Callable[[], T], make: Callable[[], Awaitable[T]], what: str) -> Op[T]:
        """A store call within the deadline, blocking or awaited."""
        return Op(partial(self._call, sync, what), partial(self._acall, make, what))

    def _get_op(self) -> Op[StoredToken | None]:
        store, key = self.store, self.key
        return self._op(
            partial(store.get_token, key), partial(store.aget_token, key), "read the token"
        )

    def _read(self) -> Flow[tuple[StoredToken | None, CorruptRecordError | None]]:
        """The stored set, or ``None`` and why it cannot be used."""
        try:
            stored = yield from call(self._get_op())
        except CorruptRecordError as exc:
            return None, self._unusable(exc)
        return stored, None

    def _peek(self) -> Flow[StoredToken | None]:
        """The stored set while waiting for the lock (an unusable one is none:
        the holder may be replacing it)."""
        try:
            return (yield from call(self._get_op()))
        except CorruptRecordError:
            return None

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

    def put(self, token: TokenSet, skew: float) -> None:
        """Write a set obtained outside a refresh (a new login) to the store,
        unfenced: it is the live grant now. A store failure is reported, not raised."""
        try:
            saved = call_within(
                lambda: self.store.put_token(self.key, token, skew=skew),
                self._budget,
                "write the token",
            )
        except StoreError as exc:
            self._failed(exc)
            return
        self._worked()
        self.known_version = saved.version

    # -- the protocol -------------------------------------------------------

    def flow(
        self,
        reason: Reason,
        local: TokenSet | None,
        rejected_access: SecretStr | None,
        fetch: FetchOp,
    ) -> Flow[_Outcome]:
        """One coordinated refresh (see the module's docstring), for the sync or
        the async driver."""
        self._spent = 0.0
        if self._skip_store():
            self._defer(reason, local, None)
            return _Outcome((yield from call(fetch(local, None))), False, None)
        try:
            lock: StoreLock = self.store.lock(LOCK_PREFIX + self.key, ttl=self.lock_ttl)
            acquired = yield from self._acquire(lock, reason, local, rejected_access)
        except StoreError as exc:
            self._raise_if_unreadable(exc)
            self._failed(exc)
            self._defer(reason, local, exc)
            return _Outcome((yield from call(fetch(local, None))), False, None)
        if isinstance(acquired, _Outcome):
            return acquired  # a peer refreshed while we waited for the lock
        if not acquired:
            self._failed(StoreError("timed out waiting for the refresh lock"))
            self._defer(reason, local, None)
            return _Outcome((yield from call(fetch(local, None))), False, None)
        stop_renewal: Callable[[], None] | None = None
        if self._renew:
            stop_renewal = yield from call(
                Op(
                    partial(_start_renewal, lock, self.lock_ttl, self.clock),
                    partial(_astart_renewal, lock, self.lock_ttl, self.clock),
                )
            )
        try:
            return (yield from self._locked(lock, reason, local, rejected_access, fetch))
        finally:
            if stop_renewal is not None:
                stop_renewal()  # not joined: a renewal stuck on a silent store must not wait
            yield Op(partial(self._release, lock), partial(self._arelease, lock))

    def _locked(
        self,
        lock: StoreLock,
        reason: Reason,
        local: TokenSet | None,
        rejected_access: SecretStr | None,
        fetch: FetchOp,
    ) -> Flow[_Outcome]:
        """Steps 2 to 4, under the lock."""
        try:
            stored, unusable = yield from self._read()
            self._worked()
        except StoreError as exc:
            self._raise_if_unreadable(exc)
            self._failed(exc)
            self._defer(reason, local, exc)
            return _Outcome((yield from call(fetch(local, None))), False, None)
        if unusable is not None:
            try:
                fetched = yield from call(fetch(None, afresh_reason(unusable)))
            except NoRefreshTokenError:
                raise _login_required(unusable) from None
            out = yield from self._write(fetched, lock.fence)
            if not out.adopted:
                out.discarded = unusable
            return out
        adopted = self._usable(stored, reason, local, rejected_access)
        if adopted is not None:
            return adopted
        current = newest(stored.token if stored else None, local)
        try:
            fetched = yield from call(fetch(current, None))
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
        rejected_access: SecretStr | None,
    ) -> Flow[bool | _Outcome]:
        """Take ``lock`` within ``self.wait`` seconds (True / False), or return the
        set a peer stored meanwhile. Waiters read the store between tries, so
        that N processes adopt the new set together instead of taking the lock
        one after the other just to read it."""
        clock = self.clock
        deadline = clock.monotonic() + self.wait
        delay = _POLL_MIN
        take = Op(partial(self._try_lock, lock), partial(self._atry_lock, lock))
        while not (yield from call(take)):
            adopted = self._usable((yield from self._peek()), reason, local, rejected_access)
            if adopted is not None:
                self._worked()
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
    ) -> Flow[_Outcome | None]:
        if exc.error != "invalid_grant":
            return None
        try:
            again = yield from call(self._get_op())
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

    def _write(self, fetched: Fetched, fence: int) -> Flow[_Outcome]:
        store, key = self.store, self.key
        skew = fetched.skew or 0.0
        put = self._op(
            partial(store.put_token, key, fetched.token, skew=skew, fence=fence),
            partial(store.aput_token, key, fetched.token, skew=skew, fence=fence),
            "write the token",
        )
        try:
            saved = yield from call(put)
        except FencingError:
            # our lock expired and a newer holder wrote: theirs is the live grant
            try:
                again = yield from call(self._get_op())
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


#: lock releases sent when no time was left, kept referenced until they land
_RELEASING: set[asyncio.Future[None]] = set()


def _released(task: asyncio.Future[None]) -> None:
    _RELEASING.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: the lock expires by its TTL if the release failed


#: how often a lock renewal looks at the clock (real seconds, at most)
_RENEW_TICK = 0.05


def _renew_due(clock: Clock, ttl: float) -> Callable[[], bool]:
    """Whether the next renewal of a lock with ``ttl`` is due: a third of the TTL
    has passed on ``clock`` (the store's TTLs run on it) or in real seconds.

    Real time counts too, on purpose: Redis runs its TTLs on the server's own
    clock, whatever clock the caller injected. The renewal only looks at the
    clock and never sleeps on it, because a :class:`~authpulse.testing.FakeClock`
    moves when slept on and a renewal running beside a refresh must not move it.
    """
    period = ttl / 3
    state = [clock.monotonic(), time.monotonic()]

    def due() -> bool:
        clock_now, real_now = clock.monotonic(), time.monotonic()
        if clock_now - state[0] < period and real_now - state[1] < period:
            return False
        state[0], state[1] = clock_now, real_now
        return True

    return due


def _start_renewal(lock: StoreLock, ttl: float, clock: Clock) -> Callable[[], None]:
    """Renew ``lock`` every third of its TTL (see :func:`_renew_due`) in a helper
    thread, until the function returned is called."""
    stop = threading.Event()
    due = _renew_due(clock, ttl)
    tick = min(ttl / 3, _RENEW_TICK)

    def loop() -> None:
        while not stop.wait(tick):
            if not due():
                continue
            try:
                if not lock.renew():
                    return
            except StoreError:
                return

    threading.Thread(target=loop, name="authpulse-lock-renew", daemon=True).start()
    return stop.set


async def _astart_renewal(lock: StoreLock, ttl: float, clock: Clock) -> Callable[[], None]:
    """:func:`_start_renewal` as a task; the function returned cancels it
    (without awaiting it: a silent store may never let it unwind)."""
    task = asyncio.get_running_loop().create_task(_arenew(lock, ttl, clock))

    def stop() -> None:
        task.cancel()

    return stop


@contextlib.contextmanager
def _renewing(lock: StoreLock, ttl: float, clock: Clock, renew: bool = True) -> Iterator[None]:
    """Renew ``lock`` while the body runs (see :func:`_start_renewal`); with
    ``renew`` false, no thread."""
    stop = _start_renewal(lock, ttl, clock) if renew else None
    try:
        yield
    finally:
        if stop is not None:
            stop()


async def _arenew(lock: StoreLock, ttl: float, clock: Clock) -> None:
    due = _renew_due(clock, ttl)
    tick = min(ttl / 3, _RENEW_TICK)
    with contextlib.suppress(StoreError):
        while True:
            await asyncio.sleep(tick)  # real ticks: see _renew_due
            if due() and not await lock.arenew():
                return
