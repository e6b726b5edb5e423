"""The tenacity set-up shared by the sync and the async token fetch.

The decisions (which answers are transient, how long to back off) are the
pure functions of :mod:`._retry`; this module binds them to tenacity, the
injected clock and a random source.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import tenacity

from .._core.errors import TokenEndpointError
from .._core.retry import TokenRetry, backoff
from .clock import Clock

__all__ = ["retrying_kwargs"]


def retrying_kwargs(
    policy: TokenRetry,
    *,
    clock: Clock,
    deadline: float,
    rng: random.Random,
    on_retry: Callable[[tenacity.RetryCallState], None] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.Retrying`` / ``AsyncRetrying``.

    ``deadline`` is a ``clock.monotonic()`` instant. The stop rule gives up
    when the attempts are spent or when the next sleep would reach past the
    deadline: we never sleep past it.
    """

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TokenEndpointError) and exc.retry_after is not None:
            return exc.retry_after
        return backoff(
            state.attempt_number, base=policy.backoff_base, cap=policy.backoff_max, u=rng.random()
        )

    def stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= policy.attempts:
            return True
        return clock.monotonic() + (state.upcoming_sleep or 0.0) >= deadline

    def retry(state: tenacity.RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        return (
            isinstance(exc, TokenEndpointError)
            and exc.error_class is not None
            and (exc.error_class.transient)
        )

    kwargs: dict[str, Any] = {"wait": wait, "stop": stop, "retry": retry, "reraise": True}
    if on_retry is not None:
        kwargs["before_sleep"] = on_retry
    return kwargs
