"""The names the web dashboard's ``/metrics`` reads, from the modules that hold them.

The metrics package is laid out by what each module holds:

- :mod:`.catalogue`: :data:`METRICS`, one :class:`MetricSpec` per series;
- :mod:`.labels`: label values, and which counters an event moves;
- :mod:`.watch`: the session and manager watches, and the :class:`Sink` protocol;
- :mod:`.reading`: the observed metrics read at collection time (:class:`State`);
- :mod:`.hub`: the instrumented objects of one registry or meter provider;
- :mod:`.counts`: the in-memory counters and refresh-duration histogram;
- :mod:`.exposition`: what is published, and the Prometheus text format;
- :mod:`.handles` and :mod:`.extras`: ``Instrumentation`` and the optional-import guard.
"""

from __future__ import annotations

from .counts import Counts
from .exposition import exposition, families
from .labels import label_value
from .reading import State, read_breakers
from .watch import ManagerWatch

__all__ = [
    "Counts",
    "ManagerWatch",
    "State",
    "exposition",
    "families",
    "label_value",
    "read_breakers",
]
