"""One call through a retry transport, written once for both twins.

- ``_Call``: the state of one request (deadline, attempt count, breaker
  permit, last response) and the one tenacity configuration both twins use
  (``retry`` / ``stop`` / ``wait`` read the plan; ``before_sleep`` charges
  the retry budget);
- ``_retry_flow``: the call after its first attempt (which the transport
  runs inline) as a generator that yields its I/O (send, close, sleep; see
  ``_runtime/flow_http``);
- the process-wide testing mode (:func:`set_testing`), which every call reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import tenacity

from .._core.errors import ErrorClass
from .._core.signals import ApiEventKind
from .._runtime.backend import (
    BYTE_STREAM_TYPES,
    TRANSPORT_ERRORS,
    httpx,
)
from .._runtime.breakers import (
    CircuitBreaker,
    CircuitOpenError,
    Permit,
)
from .._runtime.flow_http import Close, Flow, Sleep
from .retry_policy import (
    _DONE,
    RETRY_EXTENSION,
    Failure,
    Plan,
    RequestFailedError,
    RetryBudgetExhaustedError,
    RetryInfo,
    RetryPolicy,
    Step,
    _integer,
    _Scalar,
    classify_exception,
    classify_response,
    plan_retry,
)

if TYPE_CHECKING:
    from .._runtime.breakers import BreakerRegistry
    from .retry import _RetryBase
    from .retry_policy import BudgetRegistry, RetryBudget

__all__ = ["is_testing", "set_testing"]

_log = logging.getLogger("authpulse.resilience")


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


# ------------------------------------------------------------------------ one call


_PHASES = ("connect", "read", "write", "pool")


class _Upstream(NamedTuple):
    """What a retry transport keeps per upstream: its key, breaker and budget
    (with the registries they came from)."""

    key: str
    breakers: BreakerRegistry | None
    breaker: CircuitBreaker | None
    budgets: BudgetRegistry
    budget: RetryBudget


#: the retry info of an answer to a first attempt that succeeded (immutable: shared)
_FIRST_TRY = RetryInfo(attempts=1, error_class=None, retried=False)


class _Call:
    """One request through a retry transport, from first attempt to answer."""

    __slots__ = (
        "_extensions",
        "_start",
        "attempt",
        "attempts",
        "base",
        "breaker",
        "budget",
        "clock",
        "concluded",
        "deadline",
        "failure",
        "method",
        "plan",
        "policy",
        "replayable",
        "request",
        "response",
        "testing",
        "upstream",
    )

    def __init__(self, base: _RetryBase[Any], request: httpx.Request, policy: RetryPolicy) -> None:
        self.base = base
        self.request = request
        self.policy = policy
        self.clock = clock = base.clock
        self.testing = testing = _testing
        cap = testing.attempts
        self.attempts = min(policy.attempts, cap) if cap is not None else policy.attempts
        self._start = start = clock.monotonic()
        self.deadline = start + policy.deadline
        self.method = request.method
        up = base._upstream(request.url)
        self.upstream = up.key
        self.breaker = up.breaker
        self.budget = up.budget
        # asked before the first send: a one-shot stream is consumed by it. Bytes, str,
        # form and JSON bodies (and any body already read) are a ByteStream; generators
        # and files are one-shot streams
        self.replayable = isinstance(request.stream, BYTE_STREAM_TYPES)
        self.attempt = 0
        self.failure: Failure | None = None
        self.plan = _DONE
        #: the last answer, until it is returned or closed
        self.response: httpx.Response | None = None
        self.concluded = False
        self._extensions = request.extensions

    @property
    def keyed(self) -> bool:
        """Whether the request carries an idempotency key (asked only to plan a retry)."""
        return self.policy.idempotency_header in self.request.headers

    # -- events

    def emit(self, kind: ApiEventKind, **fields: _Scalar) -> None:
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
                kind.value,
                extra={
                    "authpulse_event": "hook_failed",
                    "authpulse_hook": "on_event",
                    "authpulse_kind": kind.value,
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
            ApiEventKind.GAVE_UP,
            attempts=self.attempt,
            reason=why,
            error_class=failure.error_class.value,
            status_code=failure.status_code,
        )

    # -- one attempt

    def begin_attempt(self) -> Permit | None:
        """Count the attempt, ask the breaker, and cut the timeout to the deadline."""
        self.attempt = attempt = self.attempt + 1
        self.failure = None
        self.plan = _DONE  # whatever goes wrong before an answer is not retried
        base = self.base
        if base.on_event is not None and (
            base.event_kinds is None or ApiEventKind.ATTEMPT in base.event_kinds
        ):
            self.emit(ApiEventKind.ATTEMPT, attempt=attempt)
        permit = None
        breaker = self.breaker
        if breaker is not None:
            try:
                permit = breaker.before_call()
            except CircuitOpenError:
                self.concluded = True
                self.emit(
                    ApiEventKind.GAVE_UP,
                    attempts=self.attempt,
                    reason="circuit_open",
                    error_class=ErrorClass.SERVER.value,
                    status_code=None,
                )
                raise
        # the first attempt starts when the call does: the clock was just read
        now = self._start if attempt == 1 else self.clock.monotonic()
        remaining = max(self.deadline - now, 0.001)
        given = self._extensions.get("timeout") or {}
        values = given.values()
        if len(given) == 4 and None not in values and max(values) <= remaining:
            return permit  # every timeout already fits in what the deadline leaves
        timeout = {
            k: remaining if given.get(k) is None else min(given[k], remaining) for k in _PHASES
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
            self.budget.record_success()
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
        budget = self.budget
        if not budget.try_acquire(timeout=failure.timeout):
            self.emit(
                ApiEventKind.BUDGET_EXHAUSTED,
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
            ApiEventKind.RETRY_SCHEDULED,
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
        response.extensions[RETRY_EXTENSION] = (
            _FIRST_TRY
            if failure is None and self.attempt == 1
            else RetryInfo(
                attempts=self.attempt,
                error_class=failure.error_class if failure is not None else None,
                retried=self.attempt > 1,
            )
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

    def first_answered(
        self, permit: Permit | None, response: httpx.Response
    ) -> httpx.Response | None:
        """The first attempt got ``response``: the answer, or ``None`` (a retry is planned)."""
        if response.status_code < 400:  # a success: on_response() without the plan
            self.budget.record_success()
            if permit is not None:
                permit.success()
        else:
            self.on_response(permit, response)
            if self.plan.step is not Step.DONE:
                return None
        self.request.extensions = self._extensions  # as restore()
        return self.finish(response)

    def first_failed(self, permit: Permit | None, exc: BaseException) -> bool:
        """The first attempt raised ``exc``: whether the flow takes it (a transport error)."""
        self.on_exception(permit, exc)
        if isinstance(exc, TRANSPORT_ERRORS):
            return True
        self.restore()
        return False

    def restore(self) -> None:
        """Give the request its own extensions back (a replay starts afresh)."""
        self.request.extensions = self._extensions


def _attempt(call: _Call) -> Flow[httpx.Response]:
    """One attempt: close the answer being retried, ask the breaker, send, classify."""
    if call.response is not None:  # the answer we are retrying
        response, call.response = call.response, None
        yield Close(response)
    permit = call.begin_attempt()
    try:
        response = yield call.request
    except BaseException as exc:
        call.on_exception(permit, exc)
        raise
    return call.on_response(permit, response)


def _retry_flow(call: _Call, first: httpx.Response | BaseException) -> Flow[httpx.Response]:
    """A call through a retry transport after its first attempt, written once for
    both twins.

    The transport runs the first attempt inline (the fast path: a success
    needs no flow) and hands its outcome here when a retry is planned or it
    raised a transport error. Tenacity takes over with that outcome as its
    attempt 1, and its sleeps are yielded to the driver (the injected clock).
    """
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


# The public names defined here show the module they are imported from.
for _public in (
    is_testing,
    set_testing,
):
    _public.__module__ = "authpulse"
del _public
