"""The names the web dashboard's ``/metrics`` reads, from the modules that hold them.

The metrics package is laid out by what each module holds:

- :mod:`._catalogue`: :data:`METRICS`, one :class:`MetricSpec` per series;
- :mod:`._labels`: label values, and which counters an event moves;
- :mod:`._watch`: the session and manager watches, and the :class:`Sink` protocol;
- :mod:`._reading`: the observed metrics read at collection time (:class:`State`);
- :mod:`._hub`: the instrumented objects of one registry or meter provider;
- :mod:`._counts`: the in-memory counters and refresh-duration histogram;
- :mod:`._exposition`: what is published, and the Prometheus text format;
- :mod:`._handles` and :mod:`._extras`: ``Instrumentation`` and the optional-import guard.
"""

from __future__ import annotations

from ._counts import Counts
from ._exposition import exposition, families
from ._labels import label_value
from ._reading import State, read_breakers
from ._watch import ManagerWatch

__all__ = [
    "Counts",
    "ManagerWatch",
    "State",
    "exposition",
    "families",
    "label_value",
    "read_breakers",
]
