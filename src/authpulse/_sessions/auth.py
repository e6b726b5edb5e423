"""The httpx integration: one auth flow, driven by sync and async clients.

``_flow`` is a generator that yields two kinds of things: an ``Op`` for
the token (the driver answers with the current token, refreshing if
needed: ``sync_auth_flow`` runs its sync side, ``async_auth_flow`` awaits
its async side) and ``httpx.Request`` (httpx answers with the response);
``_flow.relay_sync`` and ``relay_async`` drive it.

``SessionAuth`` is an ``httpx.Auth`` and an ``httpx2.Auth`` at once (of
each installed one), so either library's client accepts it; the flow only
reads and sets headers, so the request may come from either.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn, cast, overload

from .._core.errors import ErrorClass, UsageError
from .._core.retry import classify_status
from .._core.tokens import NOT_APPLICABLE
from .._runtime.backend import (
    BYTE_STREAM_TYPES,
    REQUEST_NOT_READ_ERRORS,
    Httpx2Auth,
    HttpxAuth,
    httpx,
    origin_of,
)
from .._runtime.flow import Op, Relay, relay_async, relay_sync

if TYPE_CHECKING:
    import httpx2

    from .flight_state import _Current
    from .session import Session

__all__ = ["SessionAuth"]


def _replayable(request: httpx.Request) -> bool:
    """True when the request body can be sent a second time."""
    if isinstance(request.stream, BYTE_STREAM_TYPES):
        return True
    try:
        request.content  # noqa: B018 - raises if the body is a one-shot stream not yet read
    except REQUEST_NOT_READ_ERRORS:
        return False
    return True


class SessionAuth(HttpxAuth, Httpx2Auth):
    """Bearer auth from a :class:`Session`, with one refresh-and-replay on 401.

    Both an ``httpx.Auth`` and an ``httpx2.Auth`` (each that is installed).
    The flows take and give the request and response of whichever library
    drives them (typed by overloads, one per library).
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(
        self, session: Session, origins: frozenset[tuple[str, str, int | None]] | None
    ) -> None:
        self.session = session
        self.origins = origins
        self._token = Op(session._get_sync, session._get_async)
        self._seen: dict[tuple[str, bytes, int | None], bool] = {}

    def __repr__(self) -> str:
        return f"<SessionAuth session={self.session.name!r}>"

    def _allowed(self, url: httpx.URL) -> bool:
        if self.origins is None:
            return True
        key = (url.scheme, url.raw_host, url.port)  # cheaper than the netloc
        ok = self._seen.get(key)
        if ok is None:
            ok = origin_of(url) in self.origins
            if len(self._seen) < 1024:
                self._seen[key] = ok
        return ok

    def _flow(self, request: httpx.Request) -> Relay[httpx.Request]:
        """The flow, written once: it yields an :class:`Op` for the token (the
        driver answers with the current token, refreshing if needed) and the
        request for httpx to send (httpx answers with the response), and
        records what the request did on the session when it ends. A request
        to an origin not allowed goes out as it is."""
        if not self._allowed(request.url):
            yield request
            return
        session = self.session
        start = session.clock.monotonic()
        status: int | None = None
        waited = replayed = False
        try:
            cur = session._fresh()
            if cur is None:  # not FRESH: the driver gets it (a wait, or a background refresh)
                before = session._cur
                cur = cast("_Current", (yield self._token))
                waited = cur is not before
            if cur.token.token_type == NOT_APPLICABLE:
                _not_for_requests()
            request.headers["Authorization"] = cur.header
            response = cast(httpx.Response, (yield request))
            status = response.status_code
            if (
                status == 401
                and _replayable(request)
                # else the 401 came from a redirect target that never saw our token
                and response.request.headers.get("Authorization") == cur.header
            ):
                replayed = True
                fresh = cast("_Current", (yield self._after_401(cur.generation)))
                if fresh.generation != cur.generation:  # else hand the 401 to the caller
                    request.headers["Authorization"] = fresh.header
                    response = cast(httpx.Response, (yield request))  # the one replay: final
                    status = response.status_code
        except BaseException:  # includes GeneratorExit: httpx closes us when sending fails
            _record(session, start, None, waited, replayed)
            raise
        _record(session, start, status, waited, replayed)

    def _after_401(self, rejected: int) -> Op[_Current]:
        session = self.session
        return Op(
            partial(session._after_401_sync, rejected), partial(session._after_401_async, rejected)
        )

    @overload
    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]: ...
    @overload
    def sync_auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]: ...
    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        return relay_sync(self._flow(request))

    #: the sync flow too (what the library's ``Auth.sync_auth_flow`` would run)
    auth_flow = sync_auth_flow

    @overload
    def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]: ...
    @overload
    def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]: ...
    def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        return relay_async(self._flow(request))


def _record(
    session: Session, start: float, status: int | None, waited: bool, replayed: bool
) -> None:
    """Record what one request did on the session (``status`` is ``None`` if it raised).

    A request *succeeded* unless it raised, or its final status was 401,
    403, 429 or 5xx (a 404 is the caller's business, not the session's
    health). It reached the user *cleanly* (the user-experience score) if it
    succeeded without waiting for a refresh and without a 401 replay.
    """
    ok = status is not None and (status < 400 or classify_status(status) is ErrorClass.CLIENT)
    clean = ok and not waited and not replayed
    session._record_request(ok, session.clock.monotonic() - start, clean)


def _not_for_requests() -> NoReturn:
    raise UsageError(
        "the session's token is not an access token (token_type 'N_A', from a token "
        "exchange): it cannot authenticate HTTP requests"
    )
