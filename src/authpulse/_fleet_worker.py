"""The ONE worker of a manager: a thread (``start``) or a task (``astart``) that
runs a maintenance tick every ``tick_interval`` seconds, and the thread pool a
sync tick refreshes on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ._errors import UsageError

if TYPE_CHECKING:
    from ._fleet_plan import ManagerSettings

__all__ = ["Worker"]


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
