"""The Prometheus collector; imported only once prometheus-client is known to be there."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from .._core.errors import ConfigurationError
from ._catalogue import METRICS, Labels, MetricSpec
from ._counts import Counts
from ._exposition import families
from ._hub import Hub

__all__ = ["AuthpulseCollector", "hub_for"]


class AuthpulseCollector(Counts, Hub, Collector):
    """Every authpulse metric of one :class:`~prometheus_client.CollectorRegistry`.

    Event counters are kept here, in plain dictionaries, as the events
    happen; everything else (health, breakers, caches, a manager's
    sessions) is read from the instrumented objects when the registry is
    scraped, and costs nothing in between. What is published is decided by
    :func:`~authpulse.metrics._exposition.families`, as for the dashboard's
    ``/metrics``.
    """

    integration = "prometheus"

    def __init__(self) -> None:
        Hub.__init__(self)
        Counts.__init__(self)

    def __repr__(self) -> str:
        return "<AuthpulseCollector>"

    # -- the Collector protocol ------------------------------------------------------

    def describe(self) -> Iterable[Metric]:
        for spec in METRICS:
            yield _family(spec, spec.labels)

    def collect(self) -> Iterable[Metric]:
        state = self.read()  # first: breaker transitions it notices are counted below
        counts, durations = self.counted()
        for fam in families(state, counts, durations, watching=self.watching):
            if fam.buckets is not None:
                hist = HistogramMetricFamily(fam.spec.name, fam.spec.help, labels=fam.labels)
                for labels, (buckets, total) in sorted(fam.buckets.items()):
                    hist.add_metric(list(labels), buckets, total)
                yield hist
            else:
                yield _filled(fam.spec, fam.labels, fam.values)


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
