"""The OpenTelemetry instruments and refresh spans; imported only once the API is there."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel_trace
from opentelemetry.metrics import (
    CallbackOptions,
    Counter,
    Histogram,
    Meter,
    MeterProvider,
    Observation,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider

from .._core.errors import ConfigurationError
from .._version import __version__
from ._catalogue import DURATION_BUCKETS, METRICS, SPECS, Labels
from ._hub import Hub
from ._labels import label_value as _label
from ._reading import State
from ._watch import SessionWatch

__all__ = ["OtelHub", "OtelSink", "hub_for", "tracer_for"]

_SCOPE = "authpulse"
#: a state read by one callback is reused by the others of the same collection
_STATE_REUSE = 5.0

AttributeValue = str | bool | int | float


class OtelHub(Hub):
    """The authpulse instruments of one meter provider, and what they observe."""

    integration = "otel"

    def __init__(self, meter: Meter) -> None:
        super().__init__()
        self._state_lock = threading.Lock()
        self._state: tuple[float, State] | None = None
        self.counters: dict[str, Counter] = {}
        first = True
        for spec in METRICS:
            if spec.type == "histogram":
                continue
            if not spec.observed:
                self.counters[spec.key] = meter.create_counter(
                    spec.otel, unit=spec.unit, description=spec.help
                )
                continue
            callback = self._callback(spec.key, refresh=first)
            first = False
            if spec.type == "gauge":
                meter.create_observable_gauge(
                    spec.otel, callbacks=[callback], unit=spec.unit, description=spec.help
                )
            else:
                meter.create_observable_counter(
                    spec.otel, callbacks=[callback], unit=spec.unit, description=spec.help
                )
        self.durations = _histogram(meter)

    def __repr__(self) -> str:
        return "<OtelHub>"

    def add(self, key: str, labels: Labels) -> None:
        self.counters[key].add(1, dict(zip(SPECS[key].labels, labels, strict=True)))

    def _callback(
        self, key: str, *, refresh: bool
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            state = self._current(refresh)
            names = state.labels(key)
            return [
                Observation(value, dict(zip(names, labels, strict=True)))
                for labels, value in state.values.get(key, {}).items()
            ]

        return observe

    def _current(self, refresh: bool) -> State:
        """The first instrument's callback reads the state; the others of the same
        collection reuse it (reading costs O(sessions))."""
        with self._state_lock:
            cached = self._state
            now = time.monotonic()
            if refresh or cached is None or now - cached[0] > _STATE_REUSE:
                cached = self._state = (now, self.read())
            return cached[1]


def _histogram(meter: Meter) -> Histogram:
    spec = SPECS["refresh_duration"]
    try:  # bucket advice: opentelemetry-api 1.30 and later
        return meter.create_histogram(
            spec.otel,
            unit=spec.unit,
            description=spec.help,
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
    except TypeError:  # pragma: no cover - older API
        return meter.create_histogram(spec.otel, unit=spec.unit, description=spec.help)


class OtelSink:
    """Counts into a hub's instruments and opens and closes refresh spans."""

    def __init__(self, hub: OtelHub, tracer: Tracer | None) -> None:
        self.hub = hub
        self.tracer = tracer

    def count(self, key: str, labels: Labels) -> None:
        self.hub.add(key, labels)

    def started(self, watch: SessionWatch, reason: str) -> object:
        if self.tracer is None:
            return None
        attributes: dict[str, AttributeValue] = {"authpulse.refresh.reason": reason}
        if watch.label is not None:
            attributes["authpulse.session"] = watch.label
        session = watch.session
        if session is not None:
            attributes["authpulse.token.previous_generation"] = session.generation
        return self.tracer.start_span(
            "authpulse.refresh", kind=SpanKind.INTERNAL, attributes=attributes
        )

    def ended(
        self,
        watch: SessionWatch,
        outcome: str,
        fields: Mapping[str, Any],
        handle: object,
        duration: float | None,
    ) -> None:
        reason = _label(fields.get("reason"))
        if duration is not None:
            self.hub.durations.record(duration, {"reason": reason, "outcome": outcome})
        if not isinstance(handle, Span):
            return
        attributes: dict[str, AttributeValue] = {"authpulse.refresh.outcome": outcome}
        session = watch.session
        if outcome == "success":
            _put(attributes, "authpulse.token.generation", fields.get("generation"), int)
            _put(attributes, "authpulse.fallback.level", fields.get("level"), int)
            _put(attributes, "authpulse.refresh.adopted", fields.get("adopted"), bool)
            _put(attributes, "authpulse.token.rotated", fields.get("rotated"), bool)
            _put(attributes, "authpulse.token.expires_in", fields.get("expires_in"), float)
        else:
            error_class = _label(fields.get("error_class"))
            error = _label(fields.get("error"), outcome)
            attributes["authpulse.error_class"] = error_class
            attributes["error.type"] = error
            _put(
                attributes,
                "authpulse.refresh.consecutive_failures",
                fields.get("consecutive_failures"),
                int,
            )
            if session is not None:
                attributes["authpulse.token.generation"] = session.generation
                attributes["authpulse.fallback.level"] = session.fallback_level
            handle.set_status(Status(StatusCode.ERROR, error))
        handle.set_attributes(attributes)
        handle.end()

    def retried(self, watch: SessionWatch, fields: Mapping[str, Any], handle: object) -> None:
        if not isinstance(handle, Span):
            return
        attributes: dict[str, AttributeValue] = {
            "authpulse.error_class": _label(fields.get("error_class")),
            "error.type": _label(fields.get("error")),
        }
        _put(attributes, "authpulse.retry.attempt", fields.get("attempt"), int)
        _put(attributes, "authpulse.retry.sleep", fields.get("sleep"), float)
        handle.add_event("authpulse.retry", attributes)


def _put(
    attributes: dict[str, AttributeValue],
    name: str,
    value: object,
    kind: type[int] | type[float] | type[bool],
) -> None:
    if isinstance(value, bool | int | float):
        attributes[name] = kind(value)


_HUBS: weakref.WeakKeyDictionary[MeterProvider, OtelHub] = weakref.WeakKeyDictionary()
_HUBS_LOCK = threading.Lock()


def hub_for(meter_provider: MeterProvider | None) -> OtelHub:
    """The hub of ``meter_provider`` (default: the global one), created once."""
    provider = otel_metrics.get_meter_provider() if meter_provider is None else meter_provider
    if not isinstance(provider, MeterProvider):
        raise ConfigurationError("meter_provider must be an opentelemetry MeterProvider")
    with _HUBS_LOCK:
        hub = _HUBS.get(provider)
        if hub is None:
            hub = _HUBS[provider] = OtelHub(provider.get_meter(_SCOPE, __version__))
    return hub


def tracer_for(tracer_provider: TracerProvider | None) -> Tracer:
    provider = otel_trace.get_tracer_provider() if tracer_provider is None else tracer_provider
    if not isinstance(provider, TracerProvider):
        raise ConfigurationError("tracer_provider must be an opentelemetry TracerProvider")
    return provider.get_tracer(_SCOPE, __version__)
