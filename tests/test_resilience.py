"""Retry transports: classification, rules, deadline, budget, breaker, hooks; sync and async."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from email.utils import formatdate
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authpulse import (
    AsyncRetryTransport,
    AuthpulseError,
    BreakerPolicy,
    BreakerRegistry,
    BreakerState,
    BudgetRegistry,
    CircuitOpenError,
    ConfigurationError,
    ErrorClass,
    RequestFailedError,
    RetryBudget,
    RetryBudgetExhaustedError,
    RetryInfo,
    RetryPolicy,
    RetryTransport,
    is_testing,
    set_testing,
)
from authpulse._http.retry import (
    Failure,
    Plan,
    Step,
    classify_exception,
    classify_response,
    plan_retry,
)
from authpulse._runtime.backend import httpx
from authpulse.testing import FakeClock

URL = "https://api.test/v1/items"
UPSTREAM = "https://api.test:443"

Item = int | tuple[int, dict[str, str]] | type[httpx.TransportError]


class Tracked(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that remembers being closed."""

    def __init__(self) -> None:
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield b"{}"

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"{}"

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


class Upstream:
    """A scripted upstream: each call takes the next item (then answers ``default``).

    An item is a status, a ``(status, headers)`` pair, or an httpx exception
    class to raise. ``cost`` seconds pass on ``clock`` during each call.
    """

    def __init__(
        self,
        *script: Item,
        default: int = 200,
        clock: FakeClock | None = None,
        cost: float = 0.0,
    ) -> None:
        self.script: deque[Item] = deque(script)
        self.default = default
        self.clock = clock
        self.cost = cost
        self.requests: list[httpx.Request] = []
        self.timeouts: list[dict[str, float]] = []
        self.started_at: list[float] = []
        self.bodies: list[Tracked] = []

    @property
    def calls(self) -> int:
        return len(self.requests)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.timeouts.append(dict(request.extensions.get("timeout", {})))
        if self.clock is not None:
            self.started_at.append(self.clock.monotonic())
            self.clock.advance(self.cost)
        item = self.script.popleft() if self.script else self.default
        if isinstance(item, type):
            raise item("simulated failure", request=request)
        status, headers = item if isinstance(item, tuple) else (item, {})
        body = Tracked()
        self.bodies.append(body)
        return httpx.Response(status, headers=headers, stream=body)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


Events = list[tuple[str, dict[str, Any]]]


def make(
    upstream: Upstream, clock: FakeClock, events: Events | None = None, **kwargs: Any
) -> RetryTransport:
    kwargs.setdefault("seed", 7)
    if events is not None:
        kwargs["on_event"] = lambda kind, fields: events.append((kind, dict(fields)))
    return RetryTransport(upstream.transport(), clock=clock, **kwargs)


def amake(
    upstream: Upstream, clock: FakeClock, events: Events | None = None, **kwargs: Any
) -> AsyncRetryTransport:
    kwargs.setdefault("seed", 7)
    if events is not None:
        kwargs["on_event"] = lambda kind, fields: events.append((kind, dict(fields)))
    return AsyncRetryTransport(upstream.transport(), clock=clock, **kwargs)


def info(response: httpx.Response) -> RetryInfo:
    value = response.extensions["authpulse_retry"]
    assert isinstance(value, RetryInfo)
    return value


@pytest.fixture(autouse=True)
def _testing_mode_off() -> Iterator[None]:
    set_testing(False)
    yield
    set_testing(False)


# ---------------------------------------------------------------------------- policy


class TestPolicy:
    def test_defaults(self) -> None:
        p = RetryPolicy()
        assert (p.attempts, p.deadline, p.backoff_base, p.backoff_max, p.max_retry_after) == (
            4,
            30.0,
            0.25,
            8.0,
            60.0,
        )
        assert not p.retry_non_idempotent
        assert p.idempotency_header == "Idempotency-Key"

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"attempts": 0},
            {"attempts": 1.5},
            {"attempts": True},
            {"deadline": 0},
            {"deadline": float("inf")},
            {"backoff_base": -1},
            {"backoff_max": float("nan")},
            {"max_retry_after": -1},
            {"retry_non_idempotent": "yes"},
            {"idempotency_header": ""},
            {"idempotency_header": "Bad:Name"},
            {"idempotency_header": 3},
        ],
    )
    def test_invalid(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ConfigurationError):
            RetryPolicy(**kwargs)

    def test_max_retry_after_may_be_zero(self) -> None:
        assert RetryPolicy(max_retry_after=0).max_retry_after == 0

    def test_transport_refuses_a_non_policy(self) -> None:
        with pytest.raises(ConfigurationError):
            RetryTransport(httpx.MockTransport(Upstream()), policy=3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- pure parts


class TestClassification:
    @pytest.mark.parametrize(
        ("status", "headers", "error_class"),
        [
            (200, {}, None),
            (304, {}, None),
            (429, {}, ErrorClass.THROTTLED),
            (503, {"Retry-After": "3"}, ErrorClass.THROTTLED),
            (503, {}, ErrorClass.SERVER),
            (500, {}, ErrorClass.SERVER),
            (401, {}, ErrorClass.AUTH),
            (403, {}, ErrorClass.AUTH),
            (404, {}, ErrorClass.CLIENT),
            (400, {}, ErrorClass.CLIENT),
        ],
    )
    def test_responses(
        self, status: int, headers: dict[str, str], error_class: ErrorClass | None
    ) -> None:
        failure = classify_response(status, httpx.Headers(headers), now=0.0)
        assert (failure.error_class if failure else None) is error_class

    def test_retry_after_is_read_for_throttled_answers_only(self) -> None:
        now = 1_800_000_000.0
        f = classify_response(429, httpx.Headers({"retry-after": "12"}), now=now)
        assert f is not None
        assert f.retry_after == 12.0
        assert f.reason == "HTTP 429"
        date = formatdate(now + 30, usegmt=True)
        f = classify_response(503, httpx.Headers({"retry-after": date}), now=now)
        assert f is not None
        assert f.retry_after == 30.0
        f = classify_response(500, httpx.Headers({"retry-after": "12"}), now=now)
        assert f is not None
        assert f.retry_after is None
        f = classify_response(429, httpx.Headers({"retry-after": "soon"}), now=now)
        assert f is not None
        assert f.retry_after is None

    @pytest.mark.parametrize(
        ("exc", "sent", "timeout"),
        [
            (httpx.ConnectError, False, False),
            (httpx.ConnectTimeout, False, True),
            (httpx.PoolTimeout, False, True),
            (httpx.ReadTimeout, True, True),
            (httpx.WriteTimeout, True, True),
            (httpx.ReadError, True, False),
            (httpx.WriteError, True, False),
            (httpx.RemoteProtocolError, True, False),
            (httpx.ProxyError, True, False),
        ],
    )
    def test_network_exceptions(
        self, exc: type[httpx.TransportError], sent: bool, timeout: bool
    ) -> None:
        failure = classify_exception(exc("x"))
        assert failure == Failure(ErrorClass.NETWORK, exc.__name__, sent=sent, timeout=timeout)

    @pytest.mark.parametrize("exc", [httpx.UnsupportedProtocol, httpx.LocalProtocolError])
    def test_request_mistakes_are_client_errors(self, exc: type[httpx.TransportError]) -> None:
        failure = classify_exception(exc("x"))
        assert failure is not None
        assert failure.error_class is ErrorClass.CLIENT

    def test_other_exceptions_are_not_classified(self) -> None:
        assert classify_exception(KeyError("x")) is None
        assert classify_exception(CircuitOpenError("x", 1.0, BreakerState.OPEN)) is None
        assert (
            classify_exception(
                RetryBudgetExhaustedError("x", error_class=ErrorClass.SERVER, attempts=1)
            )
            is None
        )

    def test_a_nested_transport_failure_keeps_its_class(self) -> None:
        exc = RequestFailedError("x", error_class=ErrorClass.NETWORK, attempts=2, upstream="u")
        assert classify_exception(exc) == Failure(ErrorClass.NETWORK, "RequestFailedError")


def plan(failure: Failure | None, **kwargs: Any) -> Plan:
    args: dict[str, Any] = {
        "attempt": 1,
        "attempts": 4,
        "policy": RetryPolicy(),
        "method": "GET",
        "idempotency_key": False,
        "replayable": True,
        "remaining": 30.0,
        "u": 0.5,
    }
    return plan_retry(failure, **{**args, **kwargs})


SERVER = Failure(ErrorClass.SERVER, "HTTP 503", 503)
CONNECT = Failure(ErrorClass.NETWORK, "ConnectError", sent=False)
READ = Failure(ErrorClass.NETWORK, "ReadTimeout", timeout=True)
THROTTLED = Failure(ErrorClass.THROTTLED, "HTTP 429", 429, retry_after=5.0)


class TestPlan:
    def test_success(self) -> None:
        assert plan(None) == Plan(Step.DONE, why="success")

    @pytest.mark.parametrize("error_class", [ErrorClass.AUTH, ErrorClass.CLIENT])
    def test_not_transient(self, error_class: ErrorClass) -> None:
        assert plan(Failure(error_class, "HTTP 4xx", 400)).step is Step.DONE

    def test_backoff_is_full_jitter_exponential(self) -> None:
        assert plan(SERVER, attempt=1, u=0.5) == Plan(Step.RETRY, 0.125, "backoff")
        assert plan(SERVER, attempt=3, u=1.0).wait == 1.0
        assert plan(SERVER, attempt=3, u=0.0).wait == 0.0
        assert plan(SERVER, attempt=30, attempts=99, u=1.0).wait == 8.0  # backoff_max

    def test_retry_after(self) -> None:
        assert plan(THROTTLED) == Plan(Step.RETRY, 5.0, "retry_after")
        clamped = plan(THROTTLED, policy=RetryPolicy(max_retry_after=2))
        assert clamped == Plan(Step.RETRY, 2.0, "retry_after")
        assert plan(THROTTLED, remaining=5.0) == Plan(Step.GIVE_UP, 5.0, "deadline")

    def test_attempts(self) -> None:
        assert plan(SERVER, attempt=4).step is Step.GIVE_UP
        assert plan(SERVER, attempt=4).why == "attempts"

    @pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE", "get"])
    def test_idempotent_methods(self, method: str) -> None:
        assert plan(SERVER, method=method).step is Step.RETRY
        assert plan(READ, method=method).step is Step.RETRY

    @pytest.mark.parametrize("method", ["POST", "PATCH"])
    def test_non_idempotent_methods(self, method: str) -> None:
        assert plan(SERVER, method=method) == Plan(Step.DONE, why="not_idempotent")
        assert plan(READ, method=method).step is Step.DONE
        assert plan(CONNECT, method=method).step is Step.RETRY
        assert plan(THROTTLED, method=method).step is Step.RETRY
        assert plan(SERVER, method=method, idempotency_key=True).step is Step.RETRY
        allowed = RetryPolicy(retry_non_idempotent=True)
        assert plan(SERVER, method=method, policy=allowed).step is Step.RETRY

    def test_503_with_retry_after_keeps_the_method_rule(self) -> None:
        f = Failure(ErrorClass.THROTTLED, "HTTP 503", 503, retry_after=1.0)
        assert plan(f, method="POST").step is Step.DONE
        assert plan(f, method="GET").step is Step.RETRY

    def test_body_not_replayable(self) -> None:
        assert plan(CONNECT, replayable=False) == Plan(Step.DONE, why="body_not_replayable")


@given(
    error_class=st.sampled_from(list(ErrorClass)),
    retry_after=st.none() | st.floats(0, 1e6),
    attempt=st.integers(1, 100),
    attempts=st.integers(1, 10),
    remaining=st.floats(-10, 1e4),
    u=st.floats(0, 1),
    max_retry_after=st.floats(0, 100),
    method=st.sampled_from(["GET", "POST", "PATCH", "DELETE"]),
)
def test_plan_properties(
    error_class: ErrorClass,
    retry_after: float | None,
    attempt: int,
    attempts: int,
    remaining: float,
    u: float,
    max_retry_after: float,
    method: str,
) -> None:
    policy = RetryPolicy(max_retry_after=max_retry_after)
    failure = Failure(error_class, "x", retry_after=retry_after)
    p = plan(
        failure,
        attempt=attempt,
        attempts=attempts,
        remaining=remaining,
        u=u,
        method=method,
        policy=policy,
    )
    assert 0.0 <= p.wait <= max(max_retry_after, policy.backoff_max)
    if p.step is Step.RETRY:
        assert error_class.transient
        assert attempt < attempts
        assert p.wait < remaining
    if not error_class.transient:
        assert p.step is Step.DONE


# ---------------------------------------------------------------------------- the rules


SCENARIOS: list[tuple[str, str, dict[str, str], list[Item], int, int | type[Exception]]] = [
    ("get-503-then-200", "GET", {}, [503, 200], 2, 200),
    ("get-500-502-504-then-200", "GET", {}, [500, 502, 504, 200], 4, 200),
    ("put-503-then-200", "PUT", {}, [503, 200], 2, 200),
    ("delete-read-error", "DELETE", {}, [httpx.ReadError, 200], 2, 200),
    ("get-read-timeout", "GET", {}, [httpx.ReadTimeout, 200], 2, 200),
    ("get-dropped-connection", "GET", {}, [httpx.RemoteProtocolError, 200], 2, 200),
    ("post-503-not-retried", "POST", {}, [503, 200], 1, 503),
    ("patch-502-not-retried", "PATCH", {}, [502, 200], 1, 502),
    ("post-read-timeout-not-retried", "POST", {}, [httpx.ReadTimeout, 200], 1, RequestFailedError),
    ("post-connect-error-retried", "POST", {}, [httpx.ConnectError, 200], 2, 200),
    ("post-connect-timeout-retried", "POST", {}, [httpx.ConnectTimeout, 200], 2, 200),
    ("post-idempotency-key", "POST", {"Idempotency-Key": "k-1"}, [503, 503, 200], 3, 200),
    ("post-key-timeout", "POST", {"idempotency-key": "k"}, [httpx.ReadTimeout, 200], 2, 200),
    ("post-429-retried", "POST", {}, [(429, {"Retry-After": "1"}), 200], 2, 200),
    ("post-503-retry-after-not-retried", "POST", {}, [(503, {"Retry-After": "1"}), 200], 1, 503),
    ("get-401", "GET", {}, [401, 200], 1, 401),
    ("get-403", "GET", {}, [403, 200], 1, 403),
    ("get-404", "GET", {}, [404, 200], 1, 404),
    ("get-400", "GET", {}, [400, 200], 1, 400),
    ("get-attempts-exhausted", "GET", {}, [503] * 9, 4, 503),
    ("get-network-exhausted", "GET", {}, [httpx.ConnectError] * 9, 4, RequestFailedError),
    ("get-unsupported-protocol", "GET", {}, [httpx.UnsupportedProtocol], 1, RequestFailedError),
]
SCENARIO_IDS = [s[0] for s in SCENARIOS]


def check_outcome(
    outcome: httpx.Response | BaseException, upstream: Upstream, calls: int, expected: object
) -> None:
    assert upstream.calls == calls
    if isinstance(expected, int):
        assert isinstance(outcome, httpx.Response), outcome
        assert outcome.status_code == expected
        assert info(outcome).attempts == calls
        assert info(outcome).retried == (calls > 1)
        # every answer but the returned one was closed
        assert [b.closed for b in upstream.bodies] == [True] * (len(upstream.bodies) - 1) + [False]
    else:
        assert isinstance(outcome, RequestFailedError), outcome
        assert isinstance(outcome, httpx.TransportError)
        assert isinstance(outcome, AuthpulseError)
        assert outcome.attempts == calls
        assert outcome.upstream == UPSTREAM
        assert isinstance(outcome.__cause__, httpx.TransportError)
        assert all(b.closed for b in upstream.bodies)


@pytest.mark.parametrize(
    ("name", "method", "headers", "script", "calls", "expected"), SCENARIOS, ids=SCENARIO_IDS
)
def test_rules_sync(
    clock: FakeClock,
    name: str,
    method: str,
    headers: dict[str, str],
    script: list[Item],
    calls: int,
    expected: int | type[Exception],
) -> None:
    upstream = Upstream(*script)
    transport = make(upstream, clock)
    outcome: httpx.Response | BaseException
    try:
        outcome = transport.handle_request(httpx.Request(method, URL, headers=headers))
    except RequestFailedError as exc:
        outcome = exc
    check_outcome(outcome, upstream, calls, expected)
    assert len(clock.sleeps) == calls - 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("name", "method", "headers", "script", "calls", "expected"), SCENARIOS, ids=SCENARIO_IDS
)
async def test_rules_async(
    clock: FakeClock,
    name: str,
    method: str,
    headers: dict[str, str],
    script: list[Item],
    calls: int,
    expected: int | type[Exception],
) -> None:
    upstream = Upstream(*script)
    transport = amake(upstream, clock)
    outcome: httpx.Response | BaseException
    try:
        outcome = await transport.handle_async_request(httpx.Request(method, URL, headers=headers))
    except RequestFailedError as exc:
        outcome = exc
    check_outcome(outcome, upstream, calls, expected)
    assert len(clock.sleeps) == calls - 1


@pytest.mark.anyio
async def test_twins_make_the_same_decisions() -> None:
    script: list[Item] = [503, httpx.ConnectError, (429, {"Retry-After": "2"}), 502, 200]
    policy = RetryPolicy(attempts=6)
    sync_clock, async_clock = FakeClock(), FakeClock()
    sync_events: Events = []
    async_events: Events = []
    s = make(Upstream(*script), sync_clock, sync_events, policy=policy, seed=3)
    a = amake(Upstream(*script), async_clock, async_events, policy=policy, seed=3)
    r1 = s.handle_request(httpx.Request("GET", URL))
    r2 = await a.handle_async_request(httpx.Request("GET", URL))
    assert r1.status_code == r2.status_code == 200
    assert info(r1) == info(r2) == RetryInfo(5, None, True)
    assert sync_clock.sleeps == async_clock.sleeps
    assert sync_clock.sleeps[2] == 2.0
    assert sync_events == async_events


def test_success_carries_retry_info(clock: FakeClock) -> None:
    response = make(Upstream(), clock).handle_request(httpx.Request("GET", URL))
    assert info(response) == RetryInfo(attempts=1, error_class=None, retried=False)


def test_exhausted_status_returns_the_last_answer_with_info(clock: FakeClock) -> None:
    upstream = Upstream(500, 502, 503, 504)
    response = make(upstream, clock).handle_request(httpx.Request("GET", URL))
    assert response.status_code == 504
    assert info(response) == RetryInfo(attempts=4, error_class=ErrorClass.SERVER, retried=True)
    assert [b.closed for b in upstream.bodies] == [True, True, True, False]


def test_not_retried_answer_info(clock: FakeClock) -> None:
    response = make(Upstream(401), clock).handle_request(httpx.Request("GET", URL))
    assert info(response) == RetryInfo(attempts=1, error_class=ErrorClass.AUTH, retried=False)


def test_through_a_real_client(clock: FakeClock) -> None:
    upstream = Upstream(503, httpx.ReadError, 200)
    with httpx.Client(transport=make(upstream, clock)) as client:
        response = client.get(URL)
        assert response.json() == {}
        assert info(response).attempts == 3
    failing = Upstream(*[httpx.ConnectError] * 4)
    with (
        httpx.Client(transport=make(failing, clock)) as client,
        pytest.raises(httpx.TransportError) as caught,
    ):
        client.get(URL)
    assert isinstance(caught.value, RequestFailedError)
    assert caught.value.error_class is ErrorClass.NETWORK
    assert caught.value.request.url == URL


@pytest.mark.anyio
async def test_through_a_real_async_client(clock: FakeClock) -> None:
    upstream = Upstream(503, 200)
    async with httpx.AsyncClient(transport=amake(upstream, clock)) as client:
        response = await client.get(URL)
        assert response.status_code == 200
        assert info(response).attempts == 2
    failing = Upstream(*[httpx.ReadTimeout] * 4)
    async with httpx.AsyncClient(transport=amake(failing, clock)) as client:
        with pytest.raises(httpx.TransportError) as caught:
            await client.get(URL)
    assert isinstance(caught.value, RequestFailedError)
    assert caught.value.attempts == 4


def test_error_messages_hold_no_secrets(clock: FakeClock) -> None:
    upstream = Upstream(*[httpx.ConnectError] * 4)
    events: Events = []
    request = httpx.Request(
        "GET",
        "https://api.test/users/alice?access_token=qs-secret",
        headers={"Authorization": "Bearer hdr-secret", "Idempotency-Key": "key-secret"},
    )
    with pytest.raises(RequestFailedError) as caught:
        make(upstream, clock, events).handle_request(request)
    text = f"{caught.value} {caught.value!r} {events}"
    for secret in ("qs-secret", "hdr-secret", "key-secret", "alice", "Bearer"):
        assert secret not in text
    assert str(caught.value) == (
        "GET request to https://api.test:443 failed after 4 attempts: network (ConnectError)"
    )


def test_unexpected_exceptions_pass_through(clock: FakeClock) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise KeyError("bug")

    breakers = BreakerRegistry(BreakerPolicy(minimum_calls=1), clock)
    transport = RetryTransport(httpx.MockTransport(broken), clock=clock, breakers=breakers)
    with pytest.raises(KeyError):
        transport.handle_request(httpx.Request("GET", URL))
    snap = breakers.get(UPSTREAM).snapshot()
    assert (snap.calls, snap.state) == (0, BreakerState.CLOSED)  # the permit was given back


# ---------------------------------------------------------------------------- Retry-After


class TestRetryAfter:
    def test_seconds_are_honoured_exactly(self, clock: FakeClock) -> None:
        upstream = Upstream((429, {"Retry-After": "7"}), (503, {"Retry-After": "3"}), 200)
        response = make(upstream, clock).handle_request(httpx.Request("GET", URL))
        assert response.status_code == 200
        assert clock.sleeps == [7.0, 3.0]

    def test_http_date_is_honoured_exactly(self, clock: FakeClock) -> None:
        date = formatdate(clock.now() + 90, usegmt=True)
        upstream = Upstream((429, {"Retry-After": date}), 200)
        policy = RetryPolicy(deadline=120, max_retry_after=100)
        response = make(upstream, clock, policy=policy).handle_request(httpx.Request("GET", URL))
        assert response.status_code == 200
        assert clock.sleeps == [90.0]

    def test_clamped_to_max_retry_after(self, clock: FakeClock) -> None:
        upstream = Upstream((429, {"Retry-After": "600"}), 200)
        policy = RetryPolicy(max_retry_after=10)
        make(upstream, clock, policy=policy).handle_request(httpx.Request("GET", URL))
        assert clock.sleeps == [10.0]

    def test_longer_than_the_deadline_gives_up_without_sleeping(self, clock: FakeClock) -> None:
        upstream = Upstream((429, {"Retry-After": "45"}), 200)
        events: Events = []
        response = make(upstream, clock, events).handle_request(httpx.Request("GET", URL))
        assert response.status_code == 429
        assert clock.sleeps == []
        assert upstream.calls == 1
        assert info(response) == RetryInfo(1, ErrorClass.THROTTLED, False)
        assert events[-1] == (
            "gave_up",
            {
                "upstream": UPSTREAM,
                "method": "GET",
                "attempts": 1,
                "reason": "deadline",
                "error_class": "throttled",
                "status_code": 429,
            },
        )

    def test_unparseable_retry_after_falls_back_to_backoff(self, clock: FakeClock) -> None:
        upstream = Upstream((429, {"Retry-After": "later"}), 200)
        make(upstream, clock).handle_request(httpx.Request("GET", URL))
        assert len(clock.sleeps) == 1
        assert 0 <= clock.sleeps[0] <= 0.25

    @pytest.mark.anyio
    async def test_async_sleeps_on_the_clock(self, clock: FakeClock) -> None:
        upstream = Upstream((429, {"Retry-After": "4"}), (429, {"Retry-After": "6"}), 200)
        response = await amake(upstream, clock).handle_async_request(httpx.Request("GET", URL))
        assert response.status_code == 200
        assert clock.sleeps == [4.0, 6.0]


# ---------------------------------------------------------------------------- deadline


class TestDeadline:
    def test_attempt_timeouts_are_cut_to_what_is_left(self, clock: FakeClock) -> None:
        upstream = Upstream(503, 503, 503, clock=clock, cost=6.0)
        policy = RetryPolicy(deadline=20, attempts=10)
        request = httpx.Request(
            "GET", URL, extensions={"timeout": httpx.Timeout(10.0, connect=2.0).as_dict()}
        )
        make(upstream, clock, policy=policy).handle_request(request)
        assert upstream.calls >= 2
        for started, timeout in zip(upstream.started_at, upstream.timeouts, strict=True):
            left = 20 - started
            assert timeout["read"] == pytest.approx(min(10.0, left))
            assert timeout["connect"] == pytest.approx(min(2.0, left))
        # the caller's request gets its own timeout back
        assert request.extensions["timeout"] == httpx.Timeout(10.0, connect=2.0).as_dict()

    def test_no_timeout_becomes_the_deadline(self, clock: FakeClock) -> None:
        upstream = Upstream()
        request = httpx.Request("GET", URL, extensions={"timeout": httpx.Timeout(None).as_dict()})
        make(upstream, clock).handle_request(request)
        assert upstream.timeouts == [dict.fromkeys(("connect", "read", "write", "pool"), 30.0)]

    def test_slow_upstream_ends_at_the_deadline(self, clock: FakeClock) -> None:
        upstream = Upstream(*[503] * 10, clock=clock, cost=11.0)
        events: Events = []
        policy = RetryPolicy(attempts=10, deadline=30)
        response = make(upstream, clock, events, policy=policy).handle_request(
            httpx.Request("GET", URL)
        )
        assert response.status_code == 503
        assert clock.monotonic() - sum(clock.sleeps) == 11.0 * upstream.calls
        assert sum(clock.sleeps) + 11.0 * (upstream.calls - 1) < 30
        assert events[-1][1]["reason"] == "deadline"


# ---------------------------------------------------------------------------- budget


class TestBudget:
    def test_defaults_and_validation(self) -> None:
        b = RetryBudget()
        assert (b.capacity, b.retry_cost, b.timeout_retry_cost, b.success_refund) == (
            500,
            5,
            10,
            1,
        )
        assert b.available == 500
        assert repr(b) == "RetryBudget(500/500)"
        with pytest.raises(ConfigurationError):
            RetryBudget(0)
        with pytest.raises(ConfigurationError):
            BudgetRegistry(retry_cost=-1)

    def test_bucket_arithmetic(self) -> None:
        b = RetryBudget(22)
        assert b.try_acquire()
        assert b.try_acquire(timeout=True)
        assert b.available == 7
        assert b.try_acquire()
        assert not b.try_acquire()  # 2 left, a retry costs 5: nothing taken
        assert b.available == 2
        for _ in range(30):
            b.record_success()
        assert b.available == 22  # never above capacity

    def test_storm_exhausts_the_budget(self, clock: FakeClock) -> None:
        upstream = Upstream(default=503)
        budgets = BudgetRegistry(capacity=20)
        events: Events = []
        transport = make(upstream, clock, events, budgets=budgets, policy=RetryPolicy(attempts=100))
        with pytest.raises(RetryBudgetExhaustedError) as caught:
            transport.handle_request(httpx.Request("GET", URL))
        assert upstream.calls == 5  # the first try and 4 retries of 5 each
        assert budgets.levels() == {UPSTREAM: 0}
        err = caught.value
        assert isinstance(err, AuthpulseError)
        assert (err.upstream, err.error_class, err.attempts, err.status_code) == (
            UPSTREAM,
            ErrorClass.SERVER,
            5,
            503,
        )
        assert err.__cause__ is None
        assert all(b.closed for b in upstream.bodies)
        assert [k for k, _ in events].count("budget_exhausted") == 1
        assert events[-2] == (
            "budget_exhausted",
            {
                "upstream": UPSTREAM,
                "method": "GET",
                "attempts": 5,
                "error_class": "server",
                "available": 0,
            },
        )
        assert events[-1][0] == "gave_up"
        assert events[-1][1]["reason"] == "budget"
        # the next call fails fast after its first try
        with pytest.raises(RetryBudgetExhaustedError):
            transport.handle_request(httpx.Request("GET", URL))
        assert upstream.calls == 6

    def test_timeouts_cost_more(self, clock: FakeClock) -> None:
        upstream = Upstream(*[httpx.ReadTimeout] * 10)
        budgets = BudgetRegistry(capacity=25)
        transport = make(upstream, clock, budgets=budgets, policy=RetryPolicy(attempts=10))
        with pytest.raises(RetryBudgetExhaustedError) as caught:
            transport.handle_request(httpx.Request("GET", URL))
        assert upstream.calls == 3  # two retries of 10 each, then 5 left
        assert budgets.get(URL).available == 5
        assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
        assert caught.value.error_class is ErrorClass.NETWORK

    def test_successes_refund(self, clock: FakeClock) -> None:
        upstream = Upstream(503, 200, 200, 200)
        budgets = BudgetRegistry(capacity=20)
        transport = make(upstream, clock, budgets=budgets)
        transport.handle_request(httpx.Request("GET", URL))  # one retry (-5), one success (+1)
        assert budgets.levels() == {UPSTREAM: 16}
        transport.handle_request(httpx.Request("GET", URL))
        transport.handle_request(httpx.Request("GET", URL))
        assert budgets.levels() == {UPSTREAM: 18}

    def test_budgets_are_per_upstream(self, clock: FakeClock) -> None:
        upstream = Upstream(default=503)
        budgets = BudgetRegistry(capacity=5)
        transport = make(upstream, clock, budgets=budgets)
        with pytest.raises(RetryBudgetExhaustedError):
            transport.handle_request(httpx.Request("GET", "https://a.test/"))
        with pytest.raises(RetryBudgetExhaustedError):
            transport.handle_request(httpx.Request("GET", "https://b.test/"))
        assert budgets.levels() == {"https://a.test:443": 0, "https://b.test:443": 0}
        assert upstream.calls == 4
        assert "2 budgets" in repr(budgets)

    def test_transports_share_a_registry(self, clock: FakeClock) -> None:
        budgets = BudgetRegistry(capacity=10)
        one = make(Upstream(503, 200), clock, budgets=budgets)
        two = make(Upstream(503, 200), clock, budgets=budgets)
        one.handle_request(httpx.Request("GET", URL))
        two.handle_request(httpx.Request("GET", URL))
        assert budgets.get(UPSTREAM).available == 2

    def test_thread_safe(self) -> None:
        b = RetryBudget(5 * 100)
        barrier = threading.Barrier(8)
        granted: list[bool] = []

        def worker() -> None:
            barrier.wait()
            granted.extend(b.try_acquire() for _ in range(50))

        pool = [threading.Thread(target=worker) for _ in range(8)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        assert granted.count(True) == 100
        assert b.available == 0

    @pytest.mark.anyio
    async def test_async_storm(self, clock: FakeClock) -> None:
        upstream = Upstream(default=503)
        budgets = BudgetRegistry(capacity=10)
        transport = amake(upstream, clock, budgets=budgets, policy=RetryPolicy(attempts=50))
        with pytest.raises(RetryBudgetExhaustedError):
            await transport.handle_async_request(httpx.Request("GET", URL))
        assert upstream.calls == 3
        assert all(b.closed for b in upstream.bodies)


# ---------------------------------------------------------------------------- breaker


def breakers_for(clock: FakeClock, **policy: Any) -> BreakerRegistry:
    return BreakerRegistry(BreakerPolicy(**{"minimum_calls": 2, **policy}), clock)


class TestBreaker:
    def test_open_breaker_refuses_without_calling_upstream(self, clock: FakeClock) -> None:
        upstream = Upstream(default=503)
        breakers = breakers_for(clock)
        events: Events = []
        transport = make(upstream, clock, events, breakers=breakers)
        with pytest.raises(CircuitOpenError) as caught:
            transport.handle_request(httpx.Request("GET", URL))
        # two 503s opened it; the third attempt was refused, not retried
        assert upstream.calls == 2
        assert caught.value.upstream == UPSTREAM
        assert caught.value.retry_after == pytest.approx(30.0 - sum(clock.sleeps[1:]))
        assert all(b.closed for b in upstream.bodies)
        assert events[-1][1]["reason"] == "circuit_open"
        with pytest.raises(CircuitOpenError):
            transport.handle_request(httpx.Request("GET", URL))
        assert upstream.calls == 2
        assert breakers.states() == {UPSTREAM: BreakerState.OPEN}

    def test_probe_after_open_for_closes_it(self, clock: FakeClock) -> None:
        upstream = Upstream(503, 503)
        breakers = breakers_for(clock)
        transport = make(upstream, clock, breakers=breakers)
        with pytest.raises(CircuitOpenError):
            transport.handle_request(httpx.Request("GET", URL))
        clock.advance(30)
        response = transport.handle_request(httpx.Request("GET", URL))
        assert response.status_code == 200
        assert breakers.states() == {UPSTREAM: BreakerState.CLOSED}

    def test_auth_and_client_answers_are_neutral(self, clock: FakeClock) -> None:
        upstream = Upstream(401, 403, 404, 400, 401)
        breakers = breakers_for(clock)
        transport = make(upstream, clock, breakers=breakers)
        for _ in range(5):
            transport.handle_request(httpx.Request("GET", URL))
        snap = breakers.get(UPSTREAM).snapshot()
        assert (snap.state, snap.calls, snap.failures) == (BreakerState.CLOSED, 0, 0)

    def test_network_errors_count(self, clock: FakeClock) -> None:
        upstream = Upstream(httpx.ConnectError, httpx.ConnectError)
        breakers = breakers_for(clock)
        with pytest.raises(CircuitOpenError):
            make(upstream, clock, breakers=breakers).handle_request(httpx.Request("GET", URL))
        assert upstream.calls == 2

    def test_every_attempt_is_recorded(self, clock: FakeClock) -> None:
        breakers = breakers_for(clock, minimum_calls=100)
        make(Upstream(503, 502, 200), clock, breakers=breakers).handle_request(
            httpx.Request("GET", URL)
        )
        snap = breakers.get(UPSTREAM).snapshot()
        assert (snap.calls, snap.failures) == (3, 2)

    def test_a_slow_call_does_not_block_others(self, clock: FakeClock) -> None:
        """No lock is held across the call: events, not sleeps."""
        entered = threading.Event()
        release = threading.Event()

        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/slow":
                entered.set()
                release.wait()
            return httpx.Response(200)

        transport = RetryTransport(
            httpx.MockTransport(handler), clock=clock, breakers=breakers_for(clock)
        )
        results: dict[str, int] = {}
        fast_done = threading.Event()

        def call(path: str, done: threading.Event | None = None) -> None:
            response = transport.handle_request(httpx.Request("GET", f"https://api.test{path}"))
            results[path] = response.status_code
            if done is not None:
                done.set()

        slow = threading.Thread(target=call, args=("/slow",))
        slow.start()
        assert entered.wait(timeout=10)
        fast = threading.Thread(target=call, args=("/fast", fast_done))
        fast.start()
        assert fast_done.wait(timeout=10)  # a safety net: it finishes while /slow is blocked
        assert results == {"/fast": 200}
        release.set()
        slow.join()
        fast.join()
        assert results == {"/fast": 200, "/slow": 200}

    @pytest.mark.anyio
    async def test_async_open_breaker(self, clock: FakeClock) -> None:
        upstream = Upstream(default=503)
        breakers = breakers_for(clock)
        transport = amake(upstream, clock, breakers=breakers)
        with pytest.raises(CircuitOpenError):
            await transport.handle_async_request(httpx.Request("GET", URL))
        with pytest.raises(CircuitOpenError):
            await transport.handle_async_request(httpx.Request("GET", URL))
        assert upstream.calls == 2
        assert all(b.closed for b in upstream.bodies)


# ---------------------------------------------------------------------------- per request


class TestPerRequest:
    def test_disable(self, clock: FakeClock) -> None:
        upstream = Upstream(503, 200)
        request = httpx.Request("GET", URL, extensions={"authpulse_retry": False})
        response = make(upstream, clock).handle_request(request)
        assert response.status_code == 503
        assert upstream.calls == 1
        assert info(response) == RetryInfo(1, ErrorClass.SERVER, False)

    def test_disable_network(self, clock: FakeClock) -> None:
        upstream = Upstream(httpx.ConnectError, 200)
        request = httpx.Request("GET", URL, extensions={"authpulse_retry": False})
        with pytest.raises(RequestFailedError) as caught:
            make(upstream, clock).handle_request(request)
        assert caught.value.attempts == 1

    def test_policy_override(self, clock: FakeClock) -> None:
        upstream = Upstream(default=503)
        request = httpx.Request("GET", URL, extensions={"authpulse_retry": RetryPolicy(attempts=2)})
        response = make(upstream, clock).handle_request(request)
        assert upstream.calls == 2
        assert info(response).attempts == 2

    def test_override_allows_non_idempotent(self, clock: FakeClock) -> None:
        upstream = Upstream(503, httpx.ReadTimeout, 200)
        policy = RetryPolicy(retry_non_idempotent=True)
        request = httpx.Request("POST", URL, json={"a": 1}, extensions={"authpulse_retry": policy})
        response = make(upstream, clock).handle_request(request)
        assert response.status_code == 200
        assert upstream.calls == 3
        assert [r.content for r in upstream.requests] == [b'{"a":1}'] * 3

    def test_override_header_name(self, clock: FakeClock) -> None:
        upstream = Upstream(503, 200)
        policy = RetryPolicy(idempotency_header="X-Request-Id")
        request = httpx.Request(
            "POST", URL, headers={"x-request-id": "1"}, extensions={"authpulse_retry": policy}
        )
        assert make(upstream, clock).handle_request(request).status_code == 200

    def test_true_means_the_transport_policy(self, clock: FakeClock) -> None:
        upstream = Upstream(default=503)
        request = httpx.Request("GET", URL, extensions={"authpulse_retry": True})
        make(upstream, clock, policy=RetryPolicy(attempts=3)).handle_request(request)
        assert upstream.calls == 3

    def test_invalid_extension(self, clock: FakeClock) -> None:
        request = httpx.Request("GET", URL, extensions={"authpulse_retry": {"attempts": 2}})
        with pytest.raises(ConfigurationError):
            make(Upstream(), clock).handle_request(request)

    def test_through_a_client(self, clock: FakeClock) -> None:
        upstream = Upstream(503, 200)
        with httpx.Client(transport=make(upstream, clock)) as client:
            response = client.get(URL, extensions={"authpulse_retry": False})
        assert response.status_code == 503


# ---------------------------------------------------------------------------- testing mode


class TestTestingMode:
    def test_sleeps_become_zero(self, clock: FakeClock) -> None:
        assert not is_testing()
        set_testing()
        assert is_testing()
        upstream = Upstream(503, (429, {"Retry-After": "20"}), 200)
        response = make(upstream, clock).handle_request(httpx.Request("GET", URL))
        assert response.status_code == 200
        assert clock.sleeps == [0.0, 0.0]

    def test_cap_attempts(self, clock: FakeClock) -> None:
        set_testing(True, attempts=2)
        upstream = Upstream(default=503)
        response = make(upstream, clock, policy=RetryPolicy(attempts=10)).handle_request(
            httpx.Request("GET", URL)
        )
        assert upstream.calls == 2
        assert info(response).attempts == 2

    def test_decisions_are_unchanged(self, clock: FakeClock) -> None:
        set_testing()
        upstream = Upstream((429, {"Retry-After": "45"}), 200)
        response = make(upstream, clock).handle_request(httpx.Request("GET", URL))
        assert response.status_code == 429  # still does not fit in the deadline

    def test_off_again(self, clock: FakeClock) -> None:
        set_testing(True, attempts=1)
        set_testing(False)
        assert not is_testing()
        upstream = Upstream((429, {"Retry-After": "2"}), 200)
        make(upstream, clock).handle_request(httpx.Request("GET", URL))
        assert clock.sleeps == [2.0]

    def test_invalid(self) -> None:
        with pytest.raises(ConfigurationError):
            set_testing(True, attempts=0)

    @pytest.mark.anyio
    async def test_async(self, clock: FakeClock) -> None:
        set_testing()
        upstream = Upstream(503, httpx.ConnectError, 200)
        response = await amake(upstream, clock).handle_async_request(httpx.Request("GET", URL))
        assert response.status_code == 200
        assert clock.sleeps == [0.0, 0.0]


# ---------------------------------------------------------------------------- bodies


class TestBodies:
    def test_one_shot_stream_is_never_retried(self, clock: FakeClock) -> None:
        upstream = Upstream(httpx.ConnectError, 200)
        request = httpx.Request("PUT", URL, content=iter([b"chunk"]))
        with pytest.raises(RequestFailedError):
            make(upstream, clock).handle_request(request)
        assert upstream.calls == 1

    def test_one_shot_stream_status(self, clock: FakeClock) -> None:
        upstream = Upstream(503, 200)
        events: Events = []
        request = httpx.Request("PUT", URL, content=iter([b"chunk"]))
        response = make(upstream, clock, events).handle_request(request)
        assert response.status_code == 503
        assert upstream.calls == 1
        assert events[-1][1]["reason"] == "body_not_replayable"

    def test_bytes_are_replayed(self, clock: FakeClock) -> None:
        upstream = Upstream(503, 200)
        request = httpx.Request("PUT", URL, content=b"payload")
        assert make(upstream, clock).handle_request(request).status_code == 200
        assert [r.content for r in upstream.requests] == [b"payload", b"payload"]

    def test_a_read_stream_is_replayable(self, clock: FakeClock) -> None:
        upstream = Upstream(503, 200)
        request = httpx.Request("PUT", URL, content=iter([b"a", b"b"]))
        request.read()
        assert make(upstream, clock).handle_request(request).status_code == 200
        assert upstream.calls == 2

    @pytest.mark.anyio
    async def test_async_one_shot_stream(self, clock: FakeClock) -> None:
        async def body() -> AsyncIterator[bytes]:
            yield b"chunk"

        upstream = Upstream(503, 200)
        request = httpx.Request("PUT", URL, content=body())
        response = await amake(upstream, clock).handle_async_request(request)
        assert response.status_code == 503
        assert upstream.calls == 1


# ---------------------------------------------------------------------------- hooks


class TestHooks:
    def test_events_and_fields(self, clock: FakeClock) -> None:
        events: Events = []
        upstream = Upstream((503, {"Retry-After": "2"}), httpx.ConnectError, 200)
        make(upstream, clock, events).handle_request(httpx.Request("POST", URL))
        base = {"upstream": UPSTREAM, "method": "POST"}
        assert events[0] == ("attempt", {**base, "attempt": 1})
        # a 503 with Retry-After is throttled, but a POST that may have run is not retried
        assert events[1] == (
            "gave_up",
            {**base, "attempts": 1, "reason": "not_idempotent", "error_class": "throttled"}
            | {"status_code": 503},
        )
        assert len(events) == 2

    def test_retry_scheduled(self, clock: FakeClock) -> None:
        events: Events = []
        upstream = Upstream((503, {"Retry-After": "2"}), httpx.ConnectError, 200)
        make(upstream, clock, events).handle_request(httpx.Request("GET", URL))
        base = {"upstream": UPSTREAM, "method": "GET"}
        kinds = [k for k, _ in events]
        assert kinds == ["attempt", "retry_scheduled", "attempt", "retry_scheduled", "attempt"]
        assert events[1] == (
            "retry_scheduled",
            {
                **base,
                "attempt": 1,
                "wait": 2.0,
                "wait_from": "retry_after",
                "reason": "HTTP 503",
                "error_class": "throttled",
                "status_code": 503,
            },
        )
        second = events[3][1]
        assert (second["reason"], second["error_class"], second["wait_from"]) == (
            "ConnectError",
            "network",
            "backoff",
        )
        assert second["status_code"] is None
        assert second["wait"] == clock.sleeps[1]
        assert events[4] == ("attempt", {**base, "attempt": 3})

    def test_gave_up_after_attempts(self, clock: FakeClock) -> None:
        events: Events = []
        upstream = Upstream(*[httpx.ReadError] * 2)
        with pytest.raises(RequestFailedError):
            make(upstream, clock, events, policy=RetryPolicy(attempts=2)).handle_request(
                httpx.Request("GET", URL)
            )
        assert events[-1] == (
            "gave_up",
            {
                "upstream": UPSTREAM,
                "method": "GET",
                "attempts": 2,
                "reason": "attempts",
                "error_class": "network",
                "status_code": None,
            },
        )

    def test_fields_are_flat_scalars(self, clock: FakeClock) -> None:
        events: Events = []
        upstream = Upstream(503, 429, httpx.ReadTimeout, default=503)
        with pytest.raises(RetryBudgetExhaustedError):
            make(upstream, clock, events, budgets=BudgetRegistry(capacity=15)).handle_request(
                httpx.Request("GET", URL, headers={"authorization": "Bearer s3cret"})
            )
        assert {k for k, _ in events} == {
            "attempt",
            "retry_scheduled",
            "budget_exhausted",
            "gave_up",
        }
        for _, fields in events:
            for value in fields.values():
                assert value is None or isinstance(value, str | int | float | bool)
                assert "s3cret" not in str(value)

    def test_a_failing_hook_does_not_break_the_call(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        def hook(kind: str, fields: object) -> None:
            raise RuntimeError("hook bug")

        transport = RetryTransport(Upstream(503, 200).transport(), clock=clock, on_event=hook)
        assert transport.handle_request(httpx.Request("GET", URL)).status_code == 200
        assert "retry event hook failed" in caplog.text


# ---------------------------------------------------------------------------- lifecycle


def test_close_closes_the_inner_transport(clock: FakeClock) -> None:
    closed: list[str] = []

    class Inner(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200)

        def close(self) -> None:
            closed.append("sync")

    with RetryTransport(Inner(), clock=clock) as transport:
        transport.handle_request(httpx.Request("GET", URL))
    assert closed == ["sync"]


@pytest.mark.anyio
async def test_aclose_closes_the_inner_transport(clock: FakeClock) -> None:
    closed: list[str] = []

    class Inner(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200)

        async def aclose(self) -> None:
            closed.append("async")

    async with AsyncRetryTransport(Inner(), clock=clock) as transport:
        await transport.handle_async_request(httpx.Request("GET", URL))
    assert closed == ["async"]


# ---------------------------------------------------------------------------- wide inputs


STATUS = st.sampled_from([200, 201, 204, 400, 401, 403, 404, 429, 500, 502, 503, 504])
ANSWER: st.SearchStrategy[Item] = STATUS | st.tuples(
    st.sampled_from([429, 503]),
    st.fixed_dictionaries({"Retry-After": st.integers(0, 200).map(str)}),
)
EXCEPTION: st.SearchStrategy[Item] = st.sampled_from(
    [httpx.ConnectError, httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError]
)
WIDE = {
    "script": st.lists(ANSWER | EXCEPTION, min_size=1, max_size=12),
    "attempts": st.integers(1, 8),
    "deadline": st.floats(0.5, 120.0),
    "max_retry_after": st.floats(0.0, 100.0),
    "method": st.sampled_from(["GET", "POST", "PUT", "PATCH"]),
    "cost": st.sampled_from([0.0, 0.5, 3.0]),
}


def check_wide(
    outcome: httpx.Response | BaseException,
    upstream: Upstream,
    clock: FakeClock,
    policy: RetryPolicy,
    cost: float,
) -> None:
    assert 1 <= upstream.calls <= policy.attempts
    # every sleep ended before the deadline, and the clock moved only by sleeps and calls
    assert sum(clock.sleeps) < policy.deadline
    assert all(s >= 0 for s in clock.sleeps)
    assert len(clock.sleeps) == upstream.calls - 1
    assert sum(clock.sleeps) + cost * (upstream.calls - 1) < policy.deadline
    if isinstance(outcome, httpx.Response):
        assert info(outcome).attempts == upstream.calls
        assert sum(not b.closed for b in upstream.bodies) == 1
    else:
        assert isinstance(outcome, RequestFailedError)
        assert outcome.attempts == upstream.calls
        assert all(b.closed for b in upstream.bodies)


@settings(max_examples=200, deadline=None)
@given(**WIDE)
def test_wide_sync(
    script: list[Item],
    attempts: int,
    deadline: float,
    max_retry_after: float,
    method: str,
    cost: float,
) -> None:
    clock = FakeClock()
    policy = RetryPolicy(attempts=attempts, deadline=deadline, max_retry_after=max_retry_after)
    upstream = Upstream(*script, default=503, clock=clock, cost=cost)
    transport = make(upstream, clock, policy=policy)
    outcome: httpx.Response | BaseException
    try:
        outcome = transport.handle_request(httpx.Request(method, URL))
    except RequestFailedError as exc:
        outcome = exc
    check_wide(outcome, upstream, clock, policy, cost)


@settings(max_examples=100, deadline=None)
@given(**WIDE)
def test_wide_async(
    script: list[Item],
    attempts: int,
    deadline: float,
    max_retry_after: float,
    method: str,
    cost: float,
) -> None:
    clock = FakeClock()
    policy = RetryPolicy(attempts=attempts, deadline=deadline, max_retry_after=max_retry_after)
    upstream = Upstream(*script, default=503, clock=clock, cost=cost)
    transport = amake(upstream, clock, policy=policy)

    async def run() -> httpx.Response | BaseException:
        try:
            return await transport.handle_async_request(httpx.Request(method, URL))
        except RequestFailedError as exc:
            return exc

    outcome = anyio.run(run, backend="asyncio")
    check_wide(outcome, upstream, clock, policy, cost)


# ---------------------------------------------------------------------------- docs


def test_docs_list_every_policy_field_with_its_default() -> None:
    import dataclasses
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "resilience.md").read_text("utf-8")
    for policy in (RetryPolicy(), BreakerPolicy()):
        for field in dataclasses.fields(policy):
            rows = [line for line in text.splitlines() if line.startswith(f"| `{field.name}` |")]
            assert len(rows) == 1, field.name
            default = getattr(policy, field.name)
            shown = rows[0].split("|")[2].strip()
            if isinstance(default, bool | str):
                assert shown == f"`{default}`", field.name
            else:
                assert float(shown.removesuffix(" s")) == default, field.name
    for heading in ("## Retries", "## Circuit breaker", "## Fallback chain"):
        assert f"\n{heading}\n" in text
    assert "\n## Stale-while-revalidate cache\n" in text


# ---------------------------------------------- the deadline covers the answer's body


async def _get(url: str, mode: str, policy: RetryPolicy) -> httpx.Response:
    if mode == "sync":
        with httpx.Client(transport=RetryTransport(httpx.HTTPTransport(), policy=policy)) as c:
            return c.get(url)
    transport = AsyncRetryTransport(httpx.AsyncHTTPTransport(), policy=policy)
    async with httpx.AsyncClient(transport=transport) as ac:
        return await ac.get(url)


def _trickle() -> Iterator[bytes]:
    for _ in range(500):  # a byte every 0.2 s: 100 s in all
        yield b"x"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_trickling_body_cannot_escape_the_call_deadline(mode: str) -> None:
    """Each read gets a byte in time, so no read timeout fires; the body of the
    returned answer is still read within RetryPolicy.deadline."""
    import time

    from _support import StreamingServer

    policy = RetryPolicy(deadline=2.0)
    with StreamingServer(_trickle, interval=0.2) as server:
        started = time.monotonic()
        with pytest.raises(RequestFailedError) as caught:
            await _get(f"{server.url}/slow", mode, policy)
        elapsed = time.monotonic() - started
    exc = caught.value
    assert exc.error_class is ErrorClass.NETWORK
    assert "timed out" in str(exc)
    assert "2 s deadline" in str(exc)
    assert isinstance(exc, httpx.TransportError)
    assert elapsed < policy.deadline + 1.5
    assert server.requests == 1


def test_a_body_that_arrives_in_time_is_read_whole() -> None:
    from _support import StreamingServer

    with (
        StreamingServer(lambda: [b"a" * 1000] * 5) as server,
        httpx.Client(transport=RetryTransport(httpx.HTTPTransport())) as client,
    ):
        response = client.get(f"{server.url}/fast")
    assert response.content == b"a" * 5000
    assert response.extensions["authpulse_retry"].attempts == 1
