"""The revalidation of a stale cache entry: the conditional request, what to do
with the answer, and the flow both twins drive in the background."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._core.retry import classify_status
from .._core.signals import ApiEventKind
from .._runtime.backend import (
    backend_for,
    httpx,
)
from .._runtime.flow_http import Close, Flow, Read
from .cache_policy import (
    _delta_seconds,
    _Entry,
    _failure_class,
    _make_entry,
    _merge_not_modified,
    _response_verdict,
    _Windows,
)

if TYPE_CHECKING:
    from .._runtime.backend import AnyAsyncTransport, AnyTransport  # noqa: F401 - the twins' quoted bases
from .cache_core import _CacheCore, _Inner, _log

_REVALIDATION_FAILED = {"authpulse_event": "revalidation_failed"}


class _RevalidatingCache(_CacheCore[_Inner]):
    """:class:`_CacheCore` with the revalidation of a stale entry (one request per
    key, claimed by the caller of ``_start_revalidation``)."""

    def _revalidation_request(self, request: httpx.Request, entry: _Entry) -> httpx.Request:
        hx = backend_for(request)
        headers = hx.Headers(request.headers)
        etag = entry.header(b"etag")
        modified = entry.header(b"last-modified")
        if etag is not None:
            headers["If-None-Match"] = etag.decode("latin-1")
        if modified is not None:
            headers["If-Modified-Since"] = modified.decode("latin-1")
        return hx.Request(
            request.method, request.url, headers=headers, extensions=dict(request.extensions)
        )

    def _revalidation_plan(
        self, entry: _Entry, request: httpx.Request, response: httpx.Response
    ) -> _Windows | str:
        """Windows to store the new answer for, or one of
        ``"not_modified"``, ``"failed"``, ``"removed"``."""
        status = response.status_code
        if status == 304 and (
            "if-none-match" in request.headers or "if-modified-since" in request.headers
        ):
            return "not_modified"
        if status >= 500 or status in (304, 429):
            return "failed"
        verdict = _response_verdict(self.policy, request.url.path, status, response.headers)
        if isinstance(verdict, str):
            return "removed"
        length = _delta_seconds(response.headers.get("content-length"))
        if length is not None and length > self.cache.max_bytes:
            return "removed"
        return verdict

    def _revalidation_done(
        self,
        entry: _Entry,
        request: httpx.Request,
        response: httpx.Response,
        plan: _Windows | str,
        content: bytes,
    ) -> None:
        status = response.status_code
        if plan == "failed":
            self._revalidation_failed(entry, status=status)
            return
        outcome = "updated"
        names = entry.key[3]
        if isinstance(plan, _Windows):
            self._store(entry.key[:3], request, response, content, plan)
        elif plan == "not_modified":
            merged = _merge_not_modified(entry.headers, response.headers.raw)
            verdict = _response_verdict(
                self.policy, request.url.path, entry.status, httpx.Headers(merged)
            )
            if isinstance(verdict, _Windows):
                fresh = _make_entry(
                    entry.key,
                    entry.status,
                    merged,
                    entry.content,
                    now=self.clock.monotonic(),
                    windows=verdict,
                )
                self.cache._put(fresh, tuple(n for n, _ in names))
                outcome = "not_modified"
            else:
                self.cache._remove(entry.key, only=entry)
                outcome = "removed"
        else:
            self.cache._count("not_cached")
            self.cache._remove(entry.key, only=entry)
            outcome = "removed"
        self._emit(ApiEventKind.REVALIDATED, self._payload(entry, outcome=outcome, status=status))

    def _revalidation_failed(
        self, entry: _Entry, *, status: int | None = None, exc: BaseException | None = None
    ) -> None:
        self.cache._count("revalidation_errors")
        if exc is not None:
            cls = _failure_class(exc)
            if cls is None:
                _log.warning(
                    "cache revalidation failed unexpectedly",
                    exc_info=exc,
                    extra=_REVALIDATION_FAILED,
                )
        else:
            cls = classify_status(status) if status is not None else None
        self._emit(
            ApiEventKind.REVALIDATION_FAILED,
            self._payload(
                entry,
                status=status,
                error_class=cls.value if cls is not None else None,
                error=type(exc).__name__ if exc is not None else None,
            ),
        )

    def _revalidation_flow(self, request: httpx.Request, entry: _Entry) -> Flow[None]:
        """Revalidate ``entry`` (claimed by the caller; released here, whatever happens)."""
        try:
            req = self._revalidation_request(request, entry)
            try:
                response = yield req
            except Exception as exc:
                self._revalidation_failed(entry, exc=exc)
                return
            try:
                plan = self._revalidation_plan(entry, req, response)
                content = (yield Read(response)) if isinstance(plan, _Windows) else b""
            except Exception as exc:
                self._revalidation_failed(entry, exc=exc)
                return
            finally:
                yield Close(response)
            self._revalidation_done(entry, req, response, plan, content)
        except Exception:
            _log.exception("cache revalidation failed", extra=_REVALIDATION_FAILED)
        finally:
            self.cache._release(entry.key)
