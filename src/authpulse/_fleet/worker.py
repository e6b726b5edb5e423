"""The ONE worker of a manager: a thread (``start``) or a task (``astart``) that
runs a maintenance tick every ``tick_interval`` seconds, the thread pool a sync
tick refreshes on, and the tick itself, one flow for ``tick`` and ``atick``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .._core.errors import AuthpulseError, UsageError
from .._core.model import ErrorDetails, SessionStatus
from .._core.state import Guards
from .._runtime.events import EventKind
from .flow import Flow, one_step, run_all
from .plan import TickCounts, TickReport, lifecycle_step
from .probes import probe_async, probe_sync
from .residency import any_cold_due, consider, wake

if TYPE_CHECKING:
    from .managed import ManagedSession
    from .manager import SessionManager
    from .plan import ManagerSettings

__all__ = ["Worker", "tick"]

log = logging.getLogger("authpulse.manager")


class Worker:
    """Runs ``tick`` on one thread, or ``atick`` on one task; never two at once."""

    def __init__(
        self,
        tick: Callable[[], object],
        atick: Callable[[], Awaitable[object]],
        settings: ManagerSettings,
    ) -> None:
        self._tick = tick
        self._atick = atick
        self._settings = settings
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._astop: asyncio.Event | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def pool(self) -> concurrent.futures.ThreadPoolExecutor:
        """The refresh pool of sync ticks (``refresh_concurrency`` threads)."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=self._settings.refresh_concurrency,
                thread_name_prefix="authpulse-refresh",
            )
        return self._pool

    @property
    def running(self) -> bool:
        if self._thread is not None and self._thread.is_alive():
            return not self._stop.is_set()
        if self._task is not None and not self._task.done():
            return self._astop is None or not self._astop.is_set()
        return False

    def _refuse_second_worker(self) -> None:
        if self.running:
            raise UsageError("the worker is already running")
        if (self._thread is not None and self._thread.is_alive()) or (
            self._task is not None and not self._task.done()
        ):
            raise UsageError(
                "the previous worker is still finishing a tick that outlived stop()'s "
                "timeout (a refresh or probe that hangs); call stop() again to wait for it"
            )

    def start(self) -> None:
        self._refuse_second_worker()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="authpulse-worker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._settings.tick_interval):
            self._tick()

    def stop(self, timeout: float | None) -> None:
        self._stop.set()
        t = self._thread
        if t is not None:
            t.join(timeout)
            if not t.is_alive():
                self._thread = None
        pool, self._pool = self._pool, None
        if pool is not None:
            # the worker waits for its own refreshes; never wait for a hung one here
            pool.shutdown(wait=self._thread is None, cancel_futures=True)

    async def astart(self) -> None:
        self._refuse_second_worker()
        self._astop = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._arun(self._astop), name="authpulse-worker"
        )

    async def _arun(self, stop: asyncio.Event) -> None:
        while True:
            try:
                await asyncio.wait_for(stop.wait(), timeout=self._settings.tick_interval)
            except TimeoutError:
                await self._atick()
            else:
                return

    async def astop(self, timeout: float | None) -> None:  # noqa: ASYNC109 (as stop())
        if self._astop is not None:
            self._astop.set()
        task = self._task
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if task in done:
            self._task = None
            task.result()
        else:
            task.cancel()


# -- one maintenance tick, written once (sync: ``tick``, awaited: ``atick``)


def plan(m: SessionManager, now: float, counts: TickCounts) -> Flow[None]:
    """Pop what is due and apply the lifecycle rules; collect refreshes and probes."""
    for sid, kind in m._registry.deadlines.pop_due(now):
        counts.n["due"] += 1
        try:
            ms = m._registry.live.get(sid)
            if ms is None or (ms.record.status.terminal and kind != "evict"):
                continue
            if kind == "lifecycle":
                yield from apply_lifecycle(m, ms, now, counts)
            elif kind == "refresh":
                if ms.record.status is not SessionStatus.ACTIVE:
                    continue
                at = ms.session.refresh_at
                if at is not None and now + m.settings.refresh_lead < at:
                    m._registry.push(at - m.settings.refresh_lead, sid, "refresh")
                else:
                    counts.refresh.append(ms)
            elif kind == "heartbeat":
                if ms.record.status is SessionStatus.ACTIVE and ms.probe is not None:
                    counts.probe.append(ms)
                m._registry.push(now + m.settings.heartbeat_interval, sid, "heartbeat")
            elif kind == "stuck":
                yield from unstick(m, ms, now, counts)
            elif kind == "evict":
                yield from consider(m, ms, now, counts)
        except Exception as exc:  # one bad session never stops the tick
            counts.n["errors"] += 1
            log.exception(
                "maintenance of session %s failed (%s)",
                sid,
                type(exc).__name__,
                extra={
                    "authpulse_event": "maintenance_failed",
                    "authpulse_session": sid,
                    "authpulse_kind": kind,
                    "authpulse_error": type(exc).__name__,
                },
            )


def unstick(m: SessionManager, ms: ManagedSession, now: float, counts: TickCounts) -> Flow[None]:
    guards = Guards(token_valid=ms.session.freshness(now).value != "expired")
    with m._registry.lock:
        tr = ms.machine.recover(now, guards=guards)
    if tr is not None:
        counts.n["recovered"] += 1
        yield from m._timeline.publish(
            EventKind.STATE_CHANGED,
            ms.record,
            now,
            **{
                "from": tr.from_state.value,
                "to": tr.to_state.value,
                "event": "recover",
                "reason": "stuck",
            },
        )
        yield from m._timeline.publish(
            EventKind.RECOVERED, ms.record, now, reason=f"stuck in {tr.from_state.value}"
        )


def apply_lifecycle(
    m: SessionManager, ms: ManagedSession, now: float, counts: TickCounts
) -> Flow[None]:
    step = lifecycle_step(ms.record, ms.last_activity(), m.settings, now)
    if step is not None:
        error = ErrorDetails(step.error, "timeout", now) if step.error else None
        yield from m._timeline.set_status(ms, step.status, reason=step.reason, error=error, now=now)
        counts.n["timed_out" if step.status.terminal else "paused"] += 1
        if step.status.terminal:
            return
    m._registry.schedule_lifecycle(ms)


def refresh_one(m: SessionManager, ms: ManagedSession) -> Flow[bool]:
    if ms.record.status is not SessionStatus.ACTIVE:
        return True  # paused or closed by this very tick: nothing to refresh
    lead = m.settings.refresh_lead
    try:
        yield from one_step(
            lambda: ms.session.refresh_if_due(lead=lead),
            lambda: ms.session.arefresh_if_due(lead=lead),
        )
    except AuthpulseError:
        return False
    finally:
        m._registry.schedule_refresh(ms)
    return True


def probe_one(m: SessionManager, ms: ManagedSession, now: float) -> Flow[bool]:
    probe = ms.probe
    try:
        ok = probe is None or bool(
            (yield from one_step(lambda: probe_sync(probe, ms), lambda: probe_async(probe, ms)))
        )
    except Exception as exc:
        _heartbeat_raised(ms, exc)
        ok = False
    yield from heartbeat_done(m, ms, ok, now)
    return ok


def heartbeat_done(m: SessionManager, ms: ManagedSession, ok: bool, now: float) -> Flow[None]:
    ms.heartbeat_ok, ms.heartbeat_at = ok, now
    yield from m._timeline.publish(EventKind.HEARTBEAT, ms.record, now, ok=ok)


def finish(m: SessionManager, now: float, counts: TickCounts | None) -> TickReport:
    m.tick_count += 1
    if counts is not None and counts.n["errors"]:
        m.tick_errors += 1
        m._last_tick_error_at = now
    report = TickReport(now) if counts is None else counts.report(now)
    m.last_tick = report
    return report


def tick(m: SessionManager, now: float | None = None) -> Flow[TickReport]:
    """One maintenance pass at ``now`` (default: the clock's now).

    Idle sessions are paused, sessions past their lifetime or stale are
    closed as TIMEOUT, tokens due are refreshed (``refresh_concurrency``
    at a time), heartbeats due are probed, stuck states recovered. Errors
    are logged, counted and reflected in health; they never propagate.
    Awaited (:meth:`atick`), refreshes and probes run as coroutines."""
    t = m.clock.now() if now is None else now
    if not m._registry.deadlines.any_due(t) and not (yield from any_cold_due(m, t)):
        return finish(m, t, None)  # nothing due: no counters, no plan, no steps
    counts = TickCounts()
    try:
        yield from wake(m, t, counts)  # cold sessions due: their deadlines join the heap
        yield from plan(m, t, counts)
        if counts.refresh:
            results = yield from run_all(
                [refresh_one(m, ms) for ms in counts.refresh],
                m._worker.pool,
                m.settings.refresh_concurrency,
            )
            counts.n["refreshed"] = sum(results)
            counts.n["refresh_failures"] = len(results) - sum(results)
        if counts.probe:
            probes = yield from run_all(
                [probe_one(m, ms, t) for ms in counts.probe], None, len(counts.probe)
            )
            counts.n["heartbeats"] = len(probes)
            counts.n["heartbeat_failures"] = len(probes) - sum(probes)
    except Exception as exc:
        counts.n["errors"] += 1
        log.exception(
            "maintenance tick failed (%s)",
            type(exc).__name__,
            extra={"authpulse_event": "tick_failed", "authpulse_error": type(exc).__name__},
        )
    return finish(m, t, counts)


def _heartbeat_raised(ms: ManagedSession, exc: BaseException) -> None:
    log.warning(
        "heartbeat of %s raised %s",
        ms.id,
        type(exc).__name__,
        extra={
            "authpulse_event": "heartbeat_failed",
            "authpulse_session": ms.id,
            "authpulse_error": type(exc).__name__,
        },
    )
