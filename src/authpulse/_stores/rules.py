"""The rules every session store follows, checked once for all of them.

Argument checks (pages, token writes, timeline limits) raise
:class:`~authpulse.ConfigurationError` naming the argument; :class:`RecordQuery`
is one ``query`` as every store answers it (filter, coercion, page).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, TypeVar

from .._core.errors import ConfigurationError
from .._core.model import SessionKind, SessionRecord, SessionStatus

__all__ = [
    "MAX_PAGE",
    "RecordQuery",
    "check_page",
    "check_timeline_limit",
    "check_token_put",
    "short_repr",
]


def check_timeline_limit(limit: object) -> int:
    """Validate a store's ``timeline_limit``: an int >= 1 (the events kept per session)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigurationError("timeline_limit must be an int >= 1")
    return limit


def check_token_put(skew: float, fence: int | None) -> tuple[float, int | None]:
    """Validate the ``skew`` and ``fence`` arguments of ``put_token``."""
    if isinstance(skew, bool) or not isinstance(skew, int | float) or not math.isfinite(skew):
        raise ConfigurationError("skew must be a finite number of seconds")
    if fence is not None and (isinstance(fence, bool) or not isinstance(fence, int) or fence < 0):
        raise ConfigurationError("fence must be a non-negative int or None")
    return float(skew), fence


#: The largest ``limit`` or ``offset`` a query takes (SQLite's integers are 64-bit).
MAX_PAGE: Final = 2**63 - 1


def check_page(
    limit: int | None, offset: int, *, min_limit: int = 0, max_limit: int = MAX_PAGE
) -> None:
    """Validate paging arguments, the one rule of every store's ``query``, the
    manager's ``list`` and the dashboard: :class:`ConfigurationError` naming the
    argument and its range."""
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or not min_limit <= limit <= max_limit
    ):
        raise ConfigurationError(f"limit must be an integer from {min_limit} to {max_limit}")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_PAGE:
        raise ConfigurationError(f"offset must be an integer from 0 to {MAX_PAGE}")


def short_repr(value: object) -> str:
    """``repr(value)`` cut to 40 characters, for naming a bad value in a message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


_E = TypeVar("_E", SessionStatus, SessionKind)


def _member(kind: type[_E], value: object, what: str) -> _E:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return kind(value)
    raise ConfigurationError(f"unknown session {what} {short_repr(value)}")


@dataclass(frozen=True, slots=True)
class RecordQuery:
    """One ``query``: its filter and page, checked and coerced once for every
    store. Statuses and kinds are taken as the enums or their values; an
    unknown one raises :class:`ConfigurationError`, as an out-of-range page does."""

    owner: str | None
    statuses: frozenset[SessionStatus] | None
    kind: SessionKind | None
    limit: int | None
    offset: int

    @classmethod
    def of(
        cls,
        owner: str | None,
        status: Iterable[SessionStatus] | None,
        kind: SessionKind | None,
        limit: int | None,
        offset: int,
    ) -> RecordQuery:
        check_page(limit, offset)
        statuses = (
            None
            if status is None
            else frozenset(_member(SessionStatus, s, "status") for s in status)
        )
        kinds = None if kind is None else _member(SessionKind, kind, "kind")
        return cls(owner, statuses, kinds, limit, offset)

    @property
    def empty(self) -> bool:
        """No record can be returned: an empty set of statuses, or ``limit=0``."""
        return (self.statuses is not None and not self.statuses) or self.limit == 0

    def matches(self, r: SessionRecord | None) -> bool:
        return (
            r is not None
            and (self.owner is None or r.owner == self.owner)
            and (self.statuses is None or r.status in self.statuses)
            and (self.kind is None or r.kind is self.kind)
        )
