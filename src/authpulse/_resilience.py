"""Retries as httpx transports, built on tenacity.

Layout (inside out):

- pure decisions: :func:`classify_response` / :func:`classify_exception`
  turn one attempt's result into a :class:`Failure` (computed once), and
  :func:`plan_retry` turns a failure into a :class:`Plan` (done, retry
  after ``wait`` seconds, or give up) from the policy, the method, the
  body and what the deadline leaves;
- ``_Call``: the state of one request through a retry transport (deadline,
  attempt count, breaker permit, last response) and the one tenacity
  configuration both twins use (``retry`` / ``stop`` / ``wait`` read the
  plan; ``before_sleep`` charges the retry budget);
- :class:`RetryTransport` / :class:`AsyncRetryTransport`: thin twins that
  differ only in how they send, close and sleep.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import random
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import tenacity

from ._breaker import (
    BreakerRegistry,
    CircuitBreaker,
    CircuitOpenError,
    Permit,
    _UpstreamRegistry,
    upstream_key,
)
from ._clock import Clock, SystemClock
from ._errors import AuthpulseError, ConfigurationError, ErrorClass
from ._flow_http import Close, Flow, Send, Sleep, adrive, drive, inner_is
from ._http import (
    BYTE_STREAM_TYPES,
    TIMEOUT_ERRORS,
    TRANSPORT_ERRORS,
    Httpx2AsyncBaseTransport,
    Httpx2BaseTransport,
    HttpxAsyncBaseTransport,
    HttpxBaseTransport,
    TransportErrorBase,
    bases,
    every,
    httpx,
)
from ._retry import backoff, classify_status, parse_retry_after

if TYPE_CHECKING:
    import httpx2

    from ._http import AnyAsyncTransport, AnyTransport  # noqa: F401 - the twins' quoted bases

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

_log = logging.getLogger("authpulse.resilience")

#: the request extension that configures retries, and the response extension with the outcome
RETRY_EXTENSION = "authpulse_retry"

#: methods that may be repeated without changing the result (RFC 9110 §9.2.2)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

_Scalar = str | int | float | bool | None

#: ``on_event(kind, fields)``; ``fields`` are flat scalars, never a header or a token
RetryEventHook = Callable[[str, Mapping[str, _Scalar]], None]


def _positive(owner: str, name: str, value: object, *, zero: bool = False) -> None:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (value >= 0 if zero else value > 0)
    )
    if not ok:
        kind = "a non-negative" if zero else "a positive"
        raise ConfigurationError(f"{owner}.{name} must be {kind} number")


def _integer(owner: str, name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{owner}.{name} must be an integer of at least {minimum}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a retry transport retries one call.

    ``attempts`` counts the first try. ``deadline`` bounds the whole call:
    each attempt's timeout is cut to what is left, and a retry whose wait
    would not end before it is not made. Backoff is full-jitter
    exponential (``backoff_base × 2^(n-1)``, at most ``backoff_max``);
    ``Retry-After`` is honoured up to ``max_retry_after`` seconds.
    Non-idempotent methods are retried after a failure that may have
    reached the server only with ``retry_non_idempotent`` or when the
    request carries ``idempotency_header``.
    """

    attempts: int = 4
    deadline: float = 30.0
    backoff_base: float = 0.25
    backoff_max: float = 8.0
    max_retry_after: float = 60.0
    retry_non_idempotent: bool = False
    idempotency_header: str = "Idempotency-Key"

    def __post_init__(self) -> None:
        _integer("RetryPolicy", "attempts", self.attempts, minimum=1)
        for name in ("deadline", "backoff_base", "backoff_max"):
            _positive("RetryPolicy", name, getattr(self, name))
        _positive("RetryPolicy", "max_retry_after", self.max_retry_after, zero=True)
        if not isinstance(self.retry_non_idempotent, bool):
            raise ConfigurationError("RetryPolicy.retry_non_idempotent must be a boolean")
        header = self.idempotency_header
        if not isinstance(header, str) or not header or not header.isascii() or ":" in header:
            raise ConfigurationError("RetryPolicy.idempotency_header must be a header name")


@dataclass(frozen=True, slots=True)
class RetryInfo:
    """What a retry transport did; in ``response.extensions["authpulse_retry"]``.

    ``error_class`` is the class of the returned response (``None`` for a
    success); ``attempts`` counts every try, the first included.
    """

    attempts: int
    error_class: ErrorClass | None
    retried: bool


# ------------------------------------------------------------------------ testing mode


@dataclass(frozen=True, slots=True)
class _TestingMode:
    enabled: bool = False
    attempts: int | None = None


_testing = _TestingMode()


def set_testing(enabled: bool = True, *, attempts: int | None = None) -> None:
    """Turn testing mode on (or off): retries still happen, but never wait.

    Decisions are unchanged (a ``Retry-After`` that does not fit in the
    deadline still ends the call); only the sleeps become zero.
    ``attempts``, if given, caps every policy's attempts.
    """
    global _testing  # one process-wide switch, as stamina has
    if attempts is not None:
        _integer("set_testing", "attempts", attempts, minimum=1)
    _testing = _TestingMode(bool(enabled), attempts if enabled else None)


def is_testing() -> bool:
    """Whether :func:`set_testing` turned testing mode on."""
    return _testing.enabled


# ------------------------------------------------------------------------ errors


class RequestFailedError(AuthpulseError, TransportErrorBase):
    """A request failed at the transport level, after any retries.

    Also an ``httpx.TransportError`` and an ``httpx2.TransportError`` (of
    each installed library), so ``except httpx.TransportError`` (or
    ``httpx.RequestError``, or httpx2's) keeps working. ``__cause__`` is the last httpx
    exception. The message names the method, the upstream origin and the
    exception type: never a path, a query, a header or a body.
    """

    def __init__(
        self,
        message: str,
        *,
        error_class: ErrorClass,
        attempts: int,
        upstream: str,
        request: httpx.Request | None = None,
    ) -> None:
        self.error_class = error_class
        self.attempts = attempts
        self.upstream = upstream
        TransportErrorBase.__init__(self, message, request=request)


class RetryBudgetExhaustedError(AuthpulseError):
    """A retry was due but the upstream's retry budget is spent: failing fast.

    The budget refills as calls to the upstream succeed. ``__cause__`` is
    the last httpx exception, if the failure was one.
    """

    def __init__(
        self,
        upstream: str,
        *,
        error_class: ErrorClass,
        attempts: int,
        status_code: int | None = None,
    ) -> None:
        self.upstream = upstream
        self.error_class = error_class
        self.attempts = attempts
        self.status_code = status_code
        what = f"HTTP {status_code}" if status_code is not None else error_class.value
        super().__init__(
            f"retry budget for {upstream} is exhausted; not retrying after {what} "
            f"({attempts} attempt{'s' if attempts != 1 else ''})"
        )


# ------------------------------------------------------------------------ retry budget


class RetryBudget:
    """A token bucket of retries for one upstream, as botocore's standard mode.

    It starts full at ``capacity``; a retry withdraws ``retry_cost``
    (``timeout_retry_cost`` after a timeout) and is refused when the bucket
    cannot pay; each success puts back ``success_refund``, up to capacity.
    A storm of failures therefore stops retrying after ``capacity /
    retry_cost`` retries, and resumes as the upstream recovers. Thread-safe.
    """

    def __init__(
        self,
        capacity: int = 500,
        *,
        retry_cost: int = 5,
        timeout_retry_cost: int = 10,
        success_refund: int = 1,
    ) -> None:
        _integer("RetryBudget", "capacity", capacity, minimum=1)
        _integer("RetryBudget", "retry_cost", retry_cost, minimum=0)
        _integer("RetryBudget", "timeout_retry_cost", timeout_retry_cost, minimum=0)
        _integer("RetryBudget", "success_refund", success_refund, minimum=0)
        self.capacity = capacity
        self.retry_cost = retry_cost
        self.timeout_retry_cost = timeout_retry_cost
        self.success_refund = success_refund
        self._available = capacity
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RetryBudget({self._available}/{self.capacity})"

    @property
    def available(self) -> int:
        """What is left in the bucket."""
        return self._available

    def try_acquire(self, *, timeout: bool = False) -> bool:
        """Pay for one retry; ``False`` (nothing taken) when the bucket cannot."""
        cost = self.timeout_retry_cost if timeout else self.retry_cost
        with self._lock:
            if cost > self._available:
                return False
            self._available -= cost
            return True

    def record_success(self) -> None:
        """A call succeeded: refund ``success_refund``, up to capacity."""
        if self._available >= self.capacity:  # the common case: nothing to refund
            return
        with self._lock:
            self._available = min(self._available + self.success_refund, self.capacity)


class BudgetRegistry(_UpstreamRegistry[RetryBudget]):
    """One :class:`RetryBudget` per upstream (origin), created on first use. Thread-safe."""

    def __init__(
        self,
        capacity: int = 500,
        *,
        retry_cost: int = 5,
        timeout_retry_cost: int = 10,
        success_refund: int = 1,
    ) -> None:
        super().__init__()
        #: the settings of every budget, checked now rather than on first use
        self._template = RetryBudget(
            capacity,
            retry_cost=retry_cost,
            timeout_retry_cost=timeout_retry_cost,
            success_refund=success_refund,
        )

    def __repr__(self) -> str:
        return f"BudgetRegistry({len(self)} budgets)"

    def _make(self, key: str) -> RetryBudget:
        t = self._template
        return RetryBudget(
            t.capacity,
            retry_cost=t.retry_cost,
            timeout_retry_cost=t.timeout_retry_cost,
            success_refund=t.success_refund,
        )

    def levels(self) -> dict[str, int]:
        """What is left in each budget, by upstream."""
        return {k: b.available for k, b in self._snapshot().items()}


# ------------------------------------------------------------------------ pure decisions


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed attempt, classified once.

    ``reason`` is a short label (``"HTTP 503"``, ``"ConnectError"``);
    ``retry_after`` the server's requested wait in seconds (throttled
    answers only); ``sent`` is ``False`` when the request certainly never
    reached the server (connect errors); ``timeout`` marks timeouts (a
    retry after one costs more budget).
    """

    error_class: ErrorClass
    reason: str
    status_code: int | None = None
    retry_after: float | None = None
    sent: bool = True
    timeout: bool = False


class Step(enum.Enum):
    """What to do after an attempt."""

    DONE = "done"  #: a success, or a failure the rules never retry
    RETRY = "retry"  #: wait ``Plan.wait`` seconds, then try again
    GIVE_UP = "give_up"  #: retryable, but out of attempts or of time


@dataclass(frozen=True, slots=True)
class Plan:
    """The decision after one attempt; ``why`` is a short label for events."""

    step: Step
    wait: float = 0.0
    why: str = ""


_DONE = Plan(Step.DONE)
# the classes of every installed backend (httpx, httpx2)
_NOT_SENT = every("ConnectError", "ConnectTimeout", "PoolTimeout")
_NETWORK = every("TimeoutException", "NetworkError", "RemoteProtocolError", "ProxyError")


def classify_response(
    status_code: int, headers: Mapping[str, str], *, now: float
) -> Failure | None:
    """The failure an HTTP answer is, or ``None`` for a success (< 400).

    ``now`` is wall-clock time, to read a ``Retry-After`` HTTP date (measured
    from the answer's ``Date`` instead when it has one: the server's clock).
    """
    error_class = classify_status(status_code, headers)
    if error_class is None:
        return None
    retry_after = None
    if error_class is ErrorClass.THROTTLED:
        retry_after = parse_retry_after(
            headers.get("retry-after"), now=now, date=headers.get("date")
        )
    return Failure(error_class, f"HTTP {status_code}", status_code, retry_after)


def classify_exception(exc: BaseException) -> Failure | None:
    """The failure an exception from a transport is, or ``None`` if not an HTTP failure.

    Connect errors, timeouts, read/write errors, dropped connections and
    proxy errors are ``NETWORK``; other httpx transport errors (an
    unsupported scheme, a malformed request) are ``CLIENT``. Anything else
    (including :class:`~authpulse.CircuitOpenError` and
    :class:`RetryBudgetExhaustedError` from a nested transport) is not
    retried and passes through unchanged.
    """
    name = type(exc).__name__
    if isinstance(exc, _NETWORK):
        return Failure(
            ErrorClass.NETWORK,
            name,
            sent=not isinstance(exc, _NOT_SENT),
            timeout=isinstance(exc, TIMEOUT_ERRORS),
        )
    if isinstance(exc, RequestFailedError) and exc.error_class is not None:
        return Failure(exc.error_class, name)  # from a nested retry transport
    if isinstance(exc, TRANSPORT_ERRORS):
        return Failure(ErrorClass.CLIENT, name)
    return None


def _method_allows(failure: Failure, *, method: str, keyed: bool, policy: RetryPolicy) -> bool:
    if failure.status_code == 429 or not failure.sent:
        return True  # refused before any work was done
    return policy.retry_non_idempotent or keyed or method.upper() in IDEMPOTENT_METHODS


def plan_retry(
    failure: Failure | None,
    *,
    attempt: int,
    attempts: int,
    policy: RetryPolicy,
    method: str,
    idempotency_key: bool,
    replayable: bool,
    remaining: float,
    u: float,
) -> Plan:
    """Whether and when to try again after attempt number ``attempt`` (from 1).

    ``attempts`` is the effective limit; ``remaining`` the seconds the
    deadline leaves; ``u`` a uniform draw in [0, 1) for the jitter. Pure.
    """
    if failure is None:
        return Plan(Step.DONE, why="success")
    if not failure.error_class.transient:
        return Plan(Step.DONE, why="not_transient")
    if not replayable:
        return Plan(Step.DONE, why="body_not_replayable")
    if not _method_allows(failure, method=method, keyed=idempotency_key, policy=policy):
        return Plan(Step.DONE, why="not_idempotent")
    if failure.retry_after is not None:
        wait, source = min(failure.retry_after, policy.max_retry_after), "retry_after"
    else:
        wait = backoff(attempt, base=policy.backoff_base, cap=policy.backoff_max, u=u)
        source = "backoff"
    if attempt >= attempts:
        return Plan(Step.GIVE_UP, wait, "attempts")
    if wait >= remaining:
        return Plan(Step.GIVE_UP, wait, "deadline")
    return Plan(Step.RETRY, wait, source)


# ------------------------------------------------------------------------ one call


def _is_replayable(request: httpx.Request) -> bool:
    # bytes, str, form and JSON bodies (and any body already read) are a ByteStream;
    # generators and files are one-shot streams
    return isinstance(request.stream, BYTE_STREAM_TYPES)


_PHASES = ("connect", "read", "write", "pool")


class _Call:
    """One request through a retry transport, from first attempt to answer."""

    def __init__(self, base: _RetryBase[Any], request: httpx.Request, policy: RetryPolicy) -> None:
        self.base = base
        self.request = request
        self.policy = policy
        self.clock = base.clock
        self.testing = _testing
        cap = self.testing.attempts
        self.attempts = min(policy.attempts, cap) if cap is not None else policy.attempts
        self.deadline = self.clock.monotonic() + policy.deadline
        self.method = request.method
        self.upstream = base._upstream(request.url)
        # asked before the first send: a one-shot stream is consumed by it
        self.replayable = _is_replayable(request)
        self.breaker: CircuitBreaker | None = (
            base.breakers.get(self.upstream) if base.breakers is not None else None
        )
        self.attempt = 0
        self.failure: Failure | None = None
        self.plan = Plan(Step.DONE)
        #: the last answer, until it is returned or closed
        self.response: httpx.Response | None = None
        self.concluded = False
        self._extensions = request.extensions

    @property
    def keyed(self) -> bool:
        """Whether the request carries an idempotency key (asked only to plan a retry)."""
        return self.policy.idempotency_header in self.request.headers

    # -- events

    def emit(self, kind: str, **fields: _Scalar) -> None:
        hook = self.base.on_event
        if hook is None:
            return
        kinds = self.base.event_kinds
        if kinds is not None and kind not in kinds:
            return
        fields = {"upstream": self.upstream, "method": self.method, **fields}
        try:
            hook(kind, fields)
        except Exception:
            _log.exception(
                "retry event hook failed on %r",
                kind,
                extra={
                    "authpulse_event": "hook_failed",
                    "authpulse_hook": "on_event",
                    "authpulse_kind": kind,
                    "authpulse_upstream": self.upstream,
                },
            )

    def give_up(self, why: str) -> None:
        """Report (once) a call that ends on a transient failure."""
        failure = self.failure
        if self.concluded or failure is None or not failure.error_class.transient:
            return
        self.concluded = True
        self.emit(
            "gave_up",
            attempts=self.attempt,
            reason=why,
            error_class=failure.error_class.value,
            status_code=failure.status_code,
        )

    # -- one attempt

    def begin_attempt(self) -> Permit | None:
        """Count the attempt, ask the breaker, and cut the timeout to the deadline."""
        self.attempt += 1
        self.failure = None
        self.plan = _DONE  # whatever goes wrong before an answer is not retried
        self.emit("attempt", attempt=self.attempt)
        permit = None
        if self.breaker is not None:
            try:
                permit = self.breaker.before_call()
            except CircuitOpenError:
                self.concluded = True
                self.emit(
                    "gave_up",
                    attempts=self.attempt,
                    reason="circuit_open",
                    error_class=ErrorClass.SERVER.value,
                    status_code=None,
                )
                raise
        remaining = max(self.deadline - self.clock.monotonic(), 0.001)
        base = self._extensions.get("timeout") or {}
        if len(base) == 4 and None not in base.values() and max(base.values()) <= remaining:
            return permit  # every timeout already fits in what the deadline leaves
        timeout = {
            k: remaining if base.get(k) is None else min(base[k], remaining) for k in _PHASES
        }
        self.request.extensions = {**self._extensions, "timeout": timeout}
        return permit

    def _decide(self, failure: Failure | None) -> None:
        self.failure = failure
        if failure is None:
            self.plan = _DONE  # a success: nothing to plan
            return
        self.plan = plan_retry(
            failure,
            attempt=self.attempt,
            attempts=self.attempts,
            policy=self.policy,
            method=self.method,
            idempotency_key=self.keyed,
            replayable=self.replayable,
            remaining=self.deadline - self.clock.monotonic(),
            u=self.base.rng.random(),
        )
        if self.plan.step is not Step.RETRY:
            self.give_up(self.plan.why)

    def on_response(self, permit: Permit | None, response: httpx.Response) -> httpx.Response:
        self.response = response
        status = response.status_code
        # a success (< 400) needs neither the headers nor the wall clock
        failure = (
            None
            if status < 400
            else classify_response(status, response.headers, now=self.clock.now())
        )
        if failure is None:
            self.base.budgets.get(self.upstream).record_success()
            if permit is not None:
                permit.success()
        elif permit is not None:
            permit.failure(failure.error_class)
        self._decide(failure)
        return response

    def on_exception(self, permit: Permit | None, exc: BaseException) -> None:
        failure = classify_exception(exc)
        if permit is not None:
            if failure is None:
                permit.cancel()
            else:
                permit.failure(failure.error_class)
        if failure is None:
            self.plan = Plan(Step.DONE, why="unexpected")
            return
        self._decide(failure)

    # -- the tenacity configuration (the same for both twins)

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        failure = self.failure
        if failure is None:  # pragma: no cover - only failures are retried
            return
        budget = self.base.budgets.get(self.upstream)
        if not budget.try_acquire(timeout=failure.timeout):
            self.emit(
                "budget_exhausted",
                attempts=self.attempt,
                error_class=failure.error_class.value,
                available=budget.available,
            )
            self.give_up("budget")
            exc = state.outcome.exception() if state.outcome is not None else None
            raise RetryBudgetExhaustedError(
                self.upstream,
                error_class=failure.error_class,
                attempts=self.attempt,
                status_code=failure.status_code,
            ) from exc
        self.emit(
            "retry_scheduled",
            attempt=self.attempt,
            wait=self.plan.wait,
            wait_from=self.plan.why,
            reason=failure.reason,
            error_class=failure.error_class.value,
            status_code=failure.status_code,
        )

    def _wait(self, state: tenacity.RetryCallState) -> float:
        return 0.0 if self.testing.enabled else self.plan.wait

    def tenacity_kwargs(self) -> dict[str, Any]:
        """``retry``/``stop``/``wait`` read the plan; ``before_sleep`` pays the budget."""
        return {
            "retry": lambda state: self.plan.step is not Step.DONE,
            "stop": lambda state: self.plan.step is Step.GIVE_UP,
            "wait": self._wait,
            "before_sleep": self._before_sleep,
            # out of attempts or time: the last answer (or the last exception) stands
            "retry_error_callback": lambda state: state.outcome.result(),
            "reraise": True,
        }

    # -- the end

    def finish(self, response: httpx.Response) -> httpx.Response:
        failure = self.failure
        response.extensions[RETRY_EXTENSION] = RetryInfo(
            attempts=self.attempt,
            error_class=failure.error_class if failure is not None else None,
            retried=self.attempt > 1,
        )
        self.response = None
        if not response.is_stream_consumed:  # a body still to come: read within the deadline
            response.stream = self.base._deadline_stream(response.stream, self)
        return response

    def late(self) -> RequestFailedError:
        """The error of a response body still arriving when the deadline passed."""
        return RequestFailedError(
            f"{self.method} request to {self.upstream} timed out: the "
            f"{self.policy.deadline:g} s deadline (RetryPolicy.deadline) passed while the "
            "response body was being read",
            error_class=ErrorClass.NETWORK,
            attempts=self.attempt,
            upstream=self.upstream,
            request=self.request,
        )

    def failed(self, exc: httpx.TransportError) -> RequestFailedError:
        failure = self.failure or classify_exception(exc)
        error_class = failure.error_class if failure is not None else ErrorClass.NETWORK
        n = self.attempt
        return RequestFailedError(
            f"{self.method} request to {self.upstream} failed after {n} "
            f"attempt{'s' if n != 1 else ''}: {error_class.value} ({type(exc).__name__})",
            error_class=error_class,
            attempts=n,
            upstream=self.upstream,
            request=self.request,
        )

    def settled(self, first: httpx.Response | BaseException) -> httpx.Response | None:
        """After the first attempt (run outside tenacity): the finished answer if no
        retry is planned, else ``None`` (tenacity takes over)."""
        if self.plan.step is Step.DONE and not isinstance(first, BaseException):
            self.restore()
            return self.finish(first)
        return None

    def restore(self) -> None:
        """Give the request its own extensions back (a replay starts afresh)."""
        self.request.extensions = self._extensions


_SyncStreamBase, _Sync2StreamBase = bases("SyncByteStream")
_AsyncStreamBase, _Async2StreamBase = bases("AsyncByteStream")


class _DeadlineStream:
    """The returned answer's body, read within the call's deadline.

    A server that trickles a body a few bytes at a time never trips a read
    timeout; the deadline is checked between chunks, and each read is bounded
    by its timeout (cut to what the deadline left when the attempt began).
    """

    __slots__ = ("_call", "_inner")

    def __init__(self, inner: Any, call: _Call) -> None:
        self._inner = inner
        self._call = call

    def _check(self) -> None:
        if self._call.clock.monotonic() >= self._call.deadline:
            raise self._call.late()


class _SyncDeadlineStream(_DeadlineStream, _SyncStreamBase, _Sync2StreamBase):  # type: ignore[misc,valid-type]
    __slots__ = ()

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._check()
            yield chunk

    def close(self) -> None:
        self._inner.close()


class _AsyncDeadlineStream(_DeadlineStream, _AsyncStreamBase, _Async2StreamBase):  # type: ignore[misc,valid-type]
    __slots__ = ()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._check()
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def _attempt(call: _Call) -> Flow[httpx.Response]:
    """One attempt: close the answer being retried, ask the breaker, send, classify."""
    if call.response is not None:  # the answer we are retrying
        response, call.response = call.response, None
        yield Close(response)
    permit = call.begin_attempt()
    try:
        response = yield Send(call.request)
    except BaseException as exc:
        call.on_exception(permit, exc)
        raise
    return call.on_response(permit, response)


def _retry_flow(call: _Call) -> Flow[httpx.Response]:
    """A call through a retry transport, written once for both twins.

    The first attempt runs outside tenacity (the fast path); tenacity takes
    over only when a retry is planned, with the first outcome as its
    attempt 1, and its sleeps are yielded to the driver (the injected clock).
    """
    first: httpx.Response | BaseException
    try:
        first = yield from _attempt(call)
    except TRANSPORT_ERRORS as exc:
        first = exc
    except BaseException:
        call.restore()
        raise
    done = call.settled(first)
    if done is not None:
        return done
    retrying = tenacity.Retrying(**call.tenacity_kwargs())
    retrying.begin()
    state = tenacity.RetryCallState(retrying, fn=None, args=(), kwargs={})
    try:
        while True:
            do = retrying.iter(state)
            if isinstance(do, tenacity.DoAttempt):
                if state.attempt_number == 1:
                    outcome: httpx.Response | BaseException = first
                else:
                    try:
                        outcome = yield from _attempt(call)
                    except BaseException as exc:
                        outcome = exc
                if isinstance(outcome, BaseException):
                    state.set_exception((type(outcome), outcome, outcome.__traceback__))
                else:
                    state.set_result(outcome)
            elif isinstance(do, tenacity.DoSleep):
                state.prepare_for_next_attempt()
                yield Sleep(do)
            else:
                return call.finish(do)
    except TRANSPORT_ERRORS as exc:
        raise call.failed(exc) from exc
    finally:
        call.restore()
        if call.response is not None:
            yield Close(call.response)


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
        self._upstreams: dict[tuple[str, bytes], str] = {}

    def _upstream(self, url: httpx.URL) -> str:
        """The upstream key of ``url``, cached by scheme and netloc (parsing is not free)."""
        cache_key = (url.scheme, url.netloc)
        key = self._upstreams.get(cache_key)
        if key is None:
            key = upstream_key(url)
            if len(self._upstreams) < 256:
                self._upstreams[cache_key] = key
        return key

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
        return drive(_retry_flow(self._call(request)), self.inner, self.clock)

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
        return await adrive(_retry_flow(self._call(request)), self.inner, self.clock)

    async def aclose(self) -> None:
        await self.inner.aclose()
