"""Retries as httpx transports, built on tenacity.

Layout (inside out):

- the rules (``retry_policy``, re-exported here): the policy, the errors,
  the budgets and the pure decisions (:func:`classify_response`,
  :func:`classify_exception`, :func:`plan_retry`);
- one call (``retry_call``): its state, the one tenacity configuration, the
  deadline-bound body and the flow, written once as a generator that yields
  its I/O, and the testing mode (:func:`set_testing`, re-exported here);
- :class:`RetryTransport` / :class:`AsyncRetryTransport`, here: thin twins
  that differ only in how they send (the first attempt inline, the rest by
  the driver of that flow) and the body wrapper.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from .._core.errors import ConfigurationError
from .._runtime.backend import (
    Httpx2AsyncBaseTransport,
    Httpx2BaseTransport,
    HttpxAsyncBaseTransport,
    HttpxBaseTransport,
    httpx,
)
from .._runtime.breakers import (
    BreakerRegistry,
    upstream_key,
)
from .._runtime.clock import Clock, SystemClock
from .._runtime.flow_http import adrive, drive, inner_is
from .retry_policy import (
    IDEMPOTENT_METHODS,
    RETRY_EXTENSION,
    BudgetRegistry,
    Failure,
    Plan,
    RequestFailedError,
    RetryBudget,
    RetryBudgetExhaustedError,
    RetryEventHook,
    RetryInfo,
    RetryPolicy,
    Step,
    classify_exception,
    classify_response,
    plan_retry,
)

if TYPE_CHECKING:
    import httpx2

    from .._runtime.backend import AnyAsyncTransport, AnyTransport  # noqa: F401 - the twins' quoted bases
from .retry_call import (
    _Call,
    _retry_flow,
    _Upstream,
    is_testing,
    set_testing,
)
from .retry_stream import _AsyncDeadlineStream, _SyncDeadlineStream

__all__ = [
    "IDEMPOTENT_METHODS",
    "RETRY_EXTENSION",
    "AsyncRetryTransport",
    "BudgetRegistry",
    "Failure",
    "Plan",
    "RequestFailedError",
    "RetryBudget",
    "RetryBudgetExhaustedError",
    "RetryEventHook",
    "RetryInfo",
    "RetryPolicy",
    "RetryTransport",
    "Step",
    "classify_exception",
    "classify_response",
    "is_testing",
    "plan_retry",
    "set_testing",
]


_Inner = TypeVar("_Inner")


class _RetryBase(Generic[_Inner]):
    """What the sync and async retry transports share: settings, the call set-up
    and the flow; the twins differ only in the driver and the body wrapper."""

    #: wraps the body of the answer returned, to read it within the deadline
    _deadline_stream: Callable[[Any, _Call], Any]

    def __init__(
        self,
        inner: _Inner,
        *,
        policy: RetryPolicy | None = None,
        clock: Clock | None = None,
        budgets: BudgetRegistry | None = None,
        breakers: BreakerRegistry | None = None,
        on_event: RetryEventHook | None = None,
        seed: int | None = None,
        events: Iterable[str] | None = None,
    ) -> None:
        if policy is not None and not isinstance(policy, RetryPolicy):
            raise ConfigurationError("policy must be a RetryPolicy")
        #: the wrapped transport (an httpx2 one takes and gives httpx2's requests and answers)
        self.inner = inner
        self.policy = policy or RetryPolicy()
        self.clock: Clock = clock or SystemClock()
        self.budgets = budgets if budgets is not None else BudgetRegistry()
        self.breakers = breakers
        self.on_event = on_event
        #: the event kinds passed to ``on_event`` (``None``: all of them)
        self.event_kinds: frozenset[str] | None = frozenset(events) if events is not None else None
        self.rng = random.Random(seed)  # noqa: S311 - jitter, not cryptography
        self._upstreams: dict[tuple[str, bytes, int | None], _Upstream] = {}

    def _upstream(self, url: httpx.URL) -> _Upstream:
        """The upstream of ``url``: its key, breaker and budget, cached by scheme, host
        and port (parsing and two registry look-ups are not free; registries never
        drop an entry, and a cached one is used only with the registries it came from)."""
        cache_key = (url.scheme, url.raw_host, url.port)  # cheaper than the netloc
        up = self._upstreams.get(cache_key)
        if up is None or up.breakers is not self.breakers or up.budgets is not self.budgets:
            key = upstream_key(url)
            breakers, budgets = self.breakers, self.budgets
            breaker = breakers.get(key) if breakers is not None else None
            up = _Upstream(key, breakers, breaker, budgets, budgets.get(key))
            if len(self._upstreams) < 256:
                self._upstreams[cache_key] = up
        return up

    def _call(self, request: httpx.Request) -> _Call:
        value = request.extensions.get(RETRY_EXTENSION)
        if value is None or value is True:
            policy = self.policy
        elif value is False:
            policy = dataclasses.replace(self.policy, attempts=1)
        elif isinstance(value, RetryPolicy):
            policy = value
        else:
            raise ConfigurationError(
                f'extensions["{RETRY_EXTENSION}"] must be a RetryPolicy, True or False'
            )
        return _Call(self, request, policy)


@inner_is("AnyTransport")
class RetryTransport(_RetryBase["AnyTransport"], HttpxBaseTransport, Httpx2BaseTransport):
    """An httpx transport that retries ``inner`` by the rules of :class:`RetryPolicy`.

    ``httpx.Client(transport=RetryTransport(httpx.HTTPTransport()))``; the
    same with httpx2 (a transport of either library: it passes the requests
    and answers of ``inner``'s library through).
    Each answer carries a :class:`RetryInfo` in
    ``response.extensions["authpulse_retry"]``; a request's own
    ``extensions={"authpulse_retry": RetryPolicy(...)}`` (or ``False``)
    overrides the policy. Transport errors end as
    :class:`RequestFailedError`; an open breaker (``breakers=``) raises
    :class:`~authpulse.CircuitOpenError`, a spent budget
    :class:`RetryBudgetExhaustedError`. ``seed`` makes the jitter
    reproducible.

    ``policy.deadline`` bounds the whole call, the returned answer's body
    included: reading it after the deadline raises :class:`RequestFailedError`
    (``NETWORK``, "timed out").
    """

    _deadline_stream = _SyncDeadlineStream

    @overload
    def handle_request(self, request: httpx.Request) -> httpx.Response: ...
    @overload
    def handle_request(self, request: httpx2.Request) -> httpx2.Response: ...
    def handle_request(self, request: Any) -> Any:
        """Send ``request`` (of ``inner``'s library) with retries; the answer is of that library."""
        call = self._call(request)
        permit = call.begin_attempt()
        try:  # the first attempt, inline: a success needs no flow
            response: Any = self.inner.handle_request(request)
        except BaseException as exc:
            if not call.first_failed(permit, exc):
                raise
            return drive(_retry_flow(call, exc), self.inner, self.clock)
        done = call.first_answered(permit, response)
        if done is not None:
            return done
        return drive(_retry_flow(call, response), self.inner, self.clock)

    def close(self) -> None:
        self.inner.close()


@inner_is("AnyAsyncTransport")
class AsyncRetryTransport(
    _RetryBase["AnyAsyncTransport"], HttpxAsyncBaseTransport, Httpx2AsyncBaseTransport
):
    """The async twin of :class:`RetryTransport` (same rules, same decisions, same flow)."""

    _deadline_stream = _AsyncDeadlineStream

    @overload
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response: ...
    @overload
    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response: ...
    async def handle_async_request(self, request: Any) -> Any:
        """Send ``request`` (of ``inner``'s library) with retries; the answer is of that library."""
        call = self._call(request)
        permit = call.begin_attempt()
        try:  # the first attempt, inline: a success needs no flow
            response: Any = await self.inner.handle_async_request(request)
        except BaseException as exc:
            if not call.first_failed(permit, exc):
                raise
            return await adrive(_retry_flow(call, exc), self.inner, self.clock)
        done = call.first_answered(permit, response)
        if done is not None:
            return done
        return await adrive(_retry_flow(call, response), self.inner, self.clock)

    async def aclose(self) -> None:
        await self.inner.aclose()


# The public names defined here show the module they are imported from.
for _public in (
    AsyncRetryTransport,
    RetryTransport,
):
    _public.__module__ = "authpulse"
del _public
