"""The exposition writer: which families are published (:func:`families`), and
the Prometheus text format 0.0.4 (:func:`exposition`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from ._catalogue import METRICS, Labels, MetricSpec
from ._counts import Durations
from ._reading import State

__all__ = ["Family", "exposition", "families"]


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family ready to expose: its spec, label names and samples.

    ``values`` maps label values to a number (counters, gauges); a histogram
    has ``buckets`` instead: label values to (cumulative buckets, sum).
    """

    spec: MetricSpec
    labels: Labels
    values: Mapping[Labels, float]
    buckets: Durations | None = None


def families(
    state: State,
    counts: Mapping[str, Mapping[Labels, float]],
    durations: Durations,
    *,
    watching: bool,
) -> Iterator[Family]:
    """The catalogue's families that have samples, in catalogue order.

    The one rule for what is published: observed metrics from ``state``,
    counted ones from ``counts``; an unlabelled counter is published at 0 as
    soon as something is watched; the histogram once it has an observation.
    """
    for spec in METRICS:
        if spec.type == "histogram":
            if durations:
                yield Family(spec, spec.labels, {}, durations)
            continue
        values = state.values.get(spec.key) if spec.observed else counts.get(spec.key)
        if not values and watching and not spec.observed and not spec.labels:
            values = {(): 0.0}  # unlabelled counters exist from the start
        if values:
            yield Family(spec, state.labels(spec.key), values)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _sample(name: str, names: Iterable[str], values: Iterable[str], value: float) -> str:
    labelled = sorted(zip(names, values, strict=True))  # by name, as prometheus-client does
    pairs = ",".join(f'{n}="{_escape(v)}"' for n, v in labelled)
    return f"{name}{{{pairs}}} {_number(value)}" if pairs else f"{name} {_number(value)}"


def exposition(fams: Iterable[Family]) -> str:
    """``fams`` in the Prometheus text format 0.0.4, named as prometheus-client names them.

    A counter ``authpulse_x`` is the family ``authpulse_x_total``.
    """
    lines: list[str] = []
    for fam in fams:
        spec = fam.spec
        name = f"{spec.name}_total" if spec.type == "counter" else spec.name
        help_text = spec.help.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {spec.type}")
        if fam.buckets is not None:
            for values, (buckets, total) in sorted(fam.buckets.items()):
                count = 0.0
                for le, n in buckets:
                    names = (*fam.labels, "le")
                    lines.append(_sample(f"{name}_bucket", names, (*values, le), n))
                    count = n
                lines.append(_sample(f"{name}_count", fam.labels, values, count))
                lines.append(_sample(f"{name}_sum", fam.labels, values, total))
            continue
        for values, value in sorted(fam.values.items()):
            lines.append(_sample(name, fam.labels, values, value))
    return "\n".join(lines) + "\n" if lines else ""
