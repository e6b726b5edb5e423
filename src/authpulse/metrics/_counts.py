"""Counting in memory: the :class:`Counts` sink keeps the event counters and the
refresh-duration :class:`Histogram` (the Prometheus collector and the dashboard's
``/metrics`` both count this way)."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Mapping
from typing import Any

from ._catalogue import DURATION_BUCKETS, Labels
from ._labels import label_value
from ._watch import SessionWatch

__all__ = ["Counts", "Durations", "Histogram"]


class Histogram:
    """Bucket counts and sums per label set (cumulated only when read)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self._series: dict[Labels, tuple[list[int], list[float]]] = {}

    def observe(self, labels: Labels, value: float) -> None:
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = ([0] * (len(self.bounds) + 1), [0.0])
        series[0][bisect.bisect_left(self.bounds, value)] += 1
        series[1][0] += value

    def snapshot(self) -> dict[Labels, tuple[list[tuple[str, float]], float]]:
        out: dict[Labels, tuple[list[tuple[str, float]], float]] = {}
        for labels, (counts, total) in self._series.items():
            running = 0
            buckets: list[tuple[str, float]] = []
            for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
                running += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
            out[labels] = (buckets, total[0])
        return out


#: event counters by key and labels, and refresh-duration buckets by labels
Durations = dict[Labels, tuple[list[tuple[str, float]], float]]


class Counts:
    """A :class:`Sink` that keeps the event counters and refresh durations in memory.

    The Prometheus collector and the dashboard's ``/metrics`` both count this way.
    """

    def __init__(self) -> None:
        self._counts_lock = threading.Lock()
        self._counts: dict[str, dict[Labels, float]] = {}
        self._durations = Histogram(DURATION_BUCKETS)

    def count(self, key: str, labels: Labels) -> None:
        with self._counts_lock:
            series = self._counts.setdefault(key, {})
            series[labels] = series.get(labels, 0.0) + 1.0

    def started(self, watch: SessionWatch, reason: str) -> object:
        return None

    def ended(
        self,
        watch: SessionWatch,
        outcome: str,
        fields: Mapping[str, Any],
        handle: object,
        duration: float | None,
    ) -> None:
        if duration is not None:
            with self._counts_lock:
                self._durations.observe((label_value(fields.get("reason")), outcome), duration)

    def retried(self, watch: SessionWatch, fields: Mapping[str, Any], handle: object) -> None:
        return None

    def counted(self) -> tuple[dict[str, dict[Labels, float]], Durations]:
        """A copy of the counters and of the duration buckets."""
        with self._counts_lock:
            return {k: dict(v) for k, v in self._counts.items()}, self._durations.snapshot()
