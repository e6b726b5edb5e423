"""Optional metrics integrations for authpulse; nothing optional is imported here.

- :mod:`authpulse.metrics.prometheus` (extra ``prometheus``): a collector
  per ``prometheus_client`` registry; ``instrument_session``,
  ``instrument_manager``, ``instrument_cache``, ``instrument_client``.
- :mod:`authpulse.metrics.otel` (extra ``otel``): OpenTelemetry counters,
  observable gauges and a span per token refresh; the same four functions.

:data:`METRICS` lists every metric with its Prometheus and OpenTelemetry
names and labels (docs/metrics.md is the table). A function called without
its package installed raises :class:`MissingExtraError`, a
:class:`~authpulse.ConfigurationError` naming the extra to install.
"""

from ._catalogue import METRICS, MetricSpec
from ._extras import MissingExtraError
from ._handles import Instrumentation

__all__ = ["METRICS", "Instrumentation", "MetricSpec", "MissingExtraError"]
