"""The Prometheus collector; imported only once prometheus-client is known to be there."""

from __future__ import annotations

import bisect
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from .._errors import ConfigurationError
from ._core import DURATION_BUCKETS, METRICS, Hub, Labels, MetricSpec, SessionWatch
from ._core import label_value as _label

__all__ = ["AuthpulseCollector", "hub_for"]


class _Histogram:
    """Bucket counts and sums per label set (cumulated only when collected)."""

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


class AuthpulseCollector(Hub, Collector):
    """Every authpulse metric of one :class:`~prometheus_client.CollectorRegistry`.

    Event counters are kept here, in plain dictionaries, as the events
    happen; everything else (health, breakers, caches, a manager's
    sessions) is read from the instrumented objects when the registry is
    scraped, and costs nothing in between.
    """

    integration = "prometheus"

    def __init__(self) -> None:
        super().__init__()
        self._counts_lock = threading.Lock()
        self._counts: dict[str, dict[Labels, float]] = {}
        self._durations = _Histogram(DURATION_BUCKETS)

    def __repr__(self) -> str:
        return "<AuthpulseCollector>"

    # -- the Sink protocol (called from session listeners) -------------------------

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
                self._durations.observe((_label(fields.get("reason")), outcome), duration)

    def retried(self, watch: SessionWatch, fields: Mapping[str, Any], handle: object) -> None:
        return None

    # -- the Collector protocol ------------------------------------------------------

    def describe(self) -> Iterable[Metric]:
        for spec in METRICS:
            yield _family(spec, spec.labels)

    def collect(self) -> Iterable[Metric]:
        state = self.read()  # first: breaker transitions it notices are counted below
        with self._counts_lock:
            counts = {k: dict(v) for k, v in self._counts.items()}
            durations = self._durations.snapshot()
        watching = self.watching
        for spec in METRICS:
            if spec.type == "histogram":
                if durations:
                    hist = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
                    for labels, (buckets, total) in sorted(durations.items()):
                        hist.add_metric(list(labels), buckets, total)
                    yield hist
                continue
            values = state.values.get(spec.key) if spec.observed else counts.get(spec.key)
            if not values and watching and not spec.observed and not spec.labels:
                values = {(): 0.0}  # unlabelled counters exist from the start
            if values:
                yield _filled(spec, state.labels(spec.key), values)


def _family(spec: MetricSpec, labels: Iterable[str]) -> Metric:
    if spec.type == "counter":
        return CounterMetricFamily(spec.name, spec.help, labels=list(labels))
    if spec.type == "gauge":
        return GaugeMetricFamily(spec.name, spec.help, labels=list(labels))
    return HistogramMetricFamily(spec.name, spec.help, labels=list(labels))


def _filled(spec: MetricSpec, labels: Labels, values: Mapping[Labels, float]) -> Metric:
    family: CounterMetricFamily | GaugeMetricFamily
    if spec.type == "counter":
        family = CounterMetricFamily(spec.name, spec.help, labels=list(labels))
    else:
        family = GaugeMetricFamily(spec.name, spec.help, labels=list(labels))
    for label_values, value in sorted(values.items()):
        family.add_metric(list(label_values), value)
    return family


_HUBS: weakref.WeakKeyDictionary[CollectorRegistry, AuthpulseCollector] = (
    weakref.WeakKeyDictionary()
)
_HUBS_LOCK = threading.Lock()


def hub_for(registry: CollectorRegistry | None) -> AuthpulseCollector:
    """The collector of ``registry`` (default: the global ``REGISTRY``), registered once."""
    reg = REGISTRY if registry is None else registry
    if not isinstance(reg, CollectorRegistry):
        raise ConfigurationError("registry must be a prometheus_client.CollectorRegistry")
    with _HUBS_LOCK:
        hub = _HUBS.get(reg)
        if hub is None:
            hub = AuthpulseCollector()
            try:
                reg.register(hub)
            except ValueError as exc:
                raise ConfigurationError(
                    f"cannot register the authpulse collector: {exc} "
                    "(another collector already exports authpulse_* metrics)"
                ) from None
            _HUBS[reg] = hub
    return hub
