"""Reading a token endpoint's answer: the body, bounded in size and time, and
the typed errors of a failed request.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from .._core.errors import ErrorClass, TokenEndpointError, TokenError, TokenResponseError
from .._core.tokens import Redacted, _num_claim, unverified_claims
from .._runtime.backend import TIMEOUT_ERRORS, TRANSPORT_ERRORS, httpx
from .._runtime.breakers import Permit
from .fetch import FetchContext, Fetched

__all__ = [
    "BodyReader",
    "abody_chunks",
    "body_chunks",
    "fetched_or_raise",
    "guarded",
    "iat_of",
    "request_error",
]


def fetched_or_raise(outcome: Fetched | TokenError) -> Fetched:
    if isinstance(outcome, TokenError):
        raise outcome
    return outcome


def body_chunks(response: httpx.Response, raw: bool) -> Iterator[bytes]:
    return iter(response.iter_raw() if raw else response.iter_bytes())


async def abody_chunks(response: httpx.Response, raw: bool) -> AsyncIterator[bytes]:
    return aiter(response.aiter_raw() if raw else response.aiter_bytes())


def iat_of(content: bytes) -> float | None:
    """The ``iat`` claim of a JWT access token in a token response body, if any
    (finite floats only: a huge or infinite iat must not become the skew)."""
    try:
        body = json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError, RecursionError):  # reported by the parser
        return None
    access = body.get("access_token") if isinstance(body, dict) else None
    claims = unverified_claims(access) if isinstance(access, str) else None
    return _num_claim(claims, "iat")


#: the encodings a token answer's body is inflated from by authpulse itself,
#: bounded by the size limit (zlib ``wbits``); others go through httpx's decoders
_INFLATE = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class BodyReader:
    """Collects a token endpoint answer's body, decoded, up to the size limit
    (``TokenRetry.max_response_bytes``) and while the deadline lasts.

    gzip and deflate bodies (the encodings the token request accepts) are
    inflated here, never producing more than the limit plus one byte, so a
    small compressed body that inflates to gigabytes is refused after at
    most one network read of it. :meth:`start` and :meth:`feed` return
    ``None`` to go on, or what ends the attempt (a typed error, or for
    :meth:`start` an answer already in memory); :meth:`finish` returns the
    body.
    """

    __slots__ = (
        "_chunks",
        "_clock",
        "_deadline",
        "_encoding",
        "_endpoint",
        "_inflater",
        "_limit",
        "_size",
        "_status",
        "raw",
    )

    def __init__(self, endpoint: str, ctx: FetchContext) -> None:
        self._endpoint = endpoint
        self._limit = ctx.retry.max_response_bytes
        self._deadline = ctx.retry.deadline
        self._clock = ctx.clock
        self._chunks: list[bytes] = []
        self._size = 0
        self._status: int | None = None
        self._encoding = ""
        self._inflater: Any = None
        #: read ``iter_raw()`` (identity, gzip, deflate) rather than ``iter_bytes()``
        self.raw = True

    def __repr__(self) -> str:
        return f"<BodyReader {self._size} bytes>"

    def too_large(self) -> TokenResponseError:
        return TokenResponseError(
            f"token endpoint {self._endpoint} answered with a body larger than the "
            f"{self._limit}-byte limit (TokenRetry.max_response_bytes)",
            status_code=self._status,
        )

    def timed_out(self) -> TokenEndpointError:
        return TokenEndpointError(
            f"token endpoint {self._endpoint} request timed out: the {self._deadline:g} s "
            "deadline (TokenRetry.deadline) passed before the answer was complete",
            error_class=ErrorClass.NETWORK,
            endpoint=self._endpoint,
        )

    def _undecodable(self) -> TokenResponseError:
        return TokenResponseError(
            f"token endpoint {self._endpoint} answered with a {self._encoding} body that "
            "could not be decoded",
            status_code=self._status,
        )

    def start(self, response: httpx.Response) -> bytes | TokenError | None:
        """``None`` to read the body, else the whole outcome: the body of an answer
        already in memory (``MockTransport``: decoded by httpx) or an error."""
        self._status = response.status_code
        if response.is_stream_consumed:
            body = response.content
            if len(body) > self._limit:
                return self.too_large()
            return body
        encoding = response.headers.get("content-encoding", "").strip().lower()
        self._encoding = encoding
        if encoding in _INFLATE:
            self._inflater = zlib.decompressobj(_INFLATE[encoding])
        self.raw = encoding in ("", "identity") or encoding in _INFLATE
        length = response.headers.get("content-length", "")
        # a declared size says enough, unless encoded (the decoded size is what counts)
        if length.isascii() and length.isdigit() and int(length) > self._limit and not encoding:
            return self.too_large()
        return None

    def _inflate(self, data: bytes) -> bytes | None:
        budget = self._limit - self._size + 1  # one byte more tells "too large"
        try:
            return bytes(self._inflater.decompress(data, budget))
        except zlib.error:
            if self._encoding == "deflate" and self._size == 0:
                # some servers send raw deflate without the zlib wrapper (as httpx allows)
                self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                try:
                    return bytes(self._inflater.decompress(data, budget))
                except zlib.error:
                    return None
            return None

    def feed(self, chunk: bytes, deadline: float) -> TokenError | None:
        if self._inflater is not None:
            inflated = self._inflate(chunk)
            if inflated is None:
                self._chunks.clear()
                return self._undecodable()
            chunk = inflated
        self._size += len(chunk)
        if self._size > self._limit:
            self._chunks.clear()
            return self.too_large()
        self._chunks.append(chunk)
        if self._clock.monotonic() >= deadline:
            self._chunks.clear()
            return self.timed_out()
        return None

    def finish(self) -> bytes | TokenError:
        if self._inflater is not None:
            try:
                rest = self._inflater.flush(self._limit - self._size + 1)
            except zlib.error:
                rest = None
            if rest is None:
                self._chunks.clear()
                return self._undecodable()
            self._size += len(rest)
            if self._size > self._limit:
                self._chunks.clear()
                return self.too_large()
            self._chunks.append(rest)
        body = b"".join(self._chunks)
        self._chunks.clear()
        return body


@contextlib.contextmanager
def guarded(permit: Permit | None) -> Iterator[None]:
    """Report one token endpoint attempt's outcome to the breaker's permit.

    OAuth errors are the client's problem (neutral for the breaker); network,
    5xx and throttling count as failures.
    """
    if permit is None:
        yield
        return
    try:
        yield
    except TokenError as exc:
        permit.failure(exc.error_class)
        raise
    except BaseException:
        permit.failure(ErrorClass.NETWORK)
        raise
    permit.success()


#: longest root-cause text quoted in a token endpoint error
_CAUSE_LIMIT = 160


def request_error(exc: BaseException, endpoint: str, secrets: Redacted) -> TokenError:
    """The typed error of an httpx error, naming the endpoint and the root cause
    (scrubbed, printable, bounded). Its ``__cause__`` is a copy of ``exc``
    without the request (which carries the credentials) or a traceback."""
    text = secrets.scrub(str(exc), _CAUSE_LIMIT).strip()
    why = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    err: TokenError
    if isinstance(exc, TRANSPORT_ERRORS):
        kind = "timed out" if isinstance(exc, TIMEOUT_ERRORS) else "failed"
        err = TokenEndpointError(
            f"token endpoint {endpoint} request {kind}: {why}",
            error_class=ErrorClass.NETWORK,
            endpoint=endpoint,
        )
    elif type(exc).__name__ == "DecodingError":
        err = TokenResponseError(f"token endpoint {endpoint} answer could not be decoded: {why}")
    else:  # too many redirects, an invalid URL: the request cannot work as configured
        err = TokenEndpointError(
            f"token endpoint {endpoint} request failed: {why}",
            error_class=ErrorClass.CLIENT,
            endpoint=endpoint,
        )
    try:
        err.__cause__ = type(exc)(text)
    except Exception:  # an exception class with another signature: no cause then
        err.__cause__ = None
    err.__suppress_context__ = True
    return err
