"""The retry transports' rules, without I/O: the policy, the errors, the budgets,
and the pure decisions.

:func:`classify_response` / :func:`classify_exception` turn one attempt's
result into a :class:`Failure` (computed once), and :func:`plan_retry` turns
a failure into a :class:`Plan` (done, retry after ``wait`` seconds, or give
up) from the policy, the method, the body and what the deadline leaves.
:class:`RetryBudget` is a thread-safe token bucket per upstream. The
transports that apply them are in ``_resilience``.
"""

from __future__ import annotations

import enum
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .._core.errors import AuthpulseError, ConfigurationError, ErrorClass
from .._core.retry import backoff, classify_status, parse_retry_after
from .._runtime.backend import TIMEOUT_ERRORS, TRANSPORT_ERRORS, TransportErrorBase, every, httpx
from .._runtime.upstreams import _UpstreamRegistry

__all__ = [
    "IDEMPOTENT_METHODS",
    "RETRY_EXTENSION",
    "BudgetRegistry",
    "Failure",
    "Plan",
    "RequestFailedError",
    "RetryBudget",
    "RetryBudgetExhaustedError",
    "RetryEventHook",
    "RetryInfo",
    "RetryPolicy",
    "Step",
    "classify_exception",
    "classify_response",
    "plan_retry",
]

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


# The public names defined here show the module they are imported from.
for _public in (
    BudgetRegistry,
    RequestFailedError,
    RetryBudget,
    RetryBudgetExhaustedError,
    RetryInfo,
    RetryPolicy,
):
    _public.__module__ = "authpulse"
del _public
