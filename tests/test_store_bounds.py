"""Store calls bounded by a refresh's deadline: the helper threads they run in."""

from __future__ import annotations

import functools
import logging
import threading

import pytest

from authpulse import StoreUnavailableError
from authpulse._stores import bounded


def _helpers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("authpulse-store-")]


def test_a_call_returns_its_value_and_raises_its_error() -> None:
    assert bounded.call_within(lambda: 42, 5.0, "read") == 42

    def boom() -> int:
        raise KeyError("k")

    with pytest.raises(KeyError):
        bounded.call_within(boom, 5.0, "read")


def test_helpers_are_reused_from_call_to_call() -> None:
    bounded.call_within(lambda: None, 5.0, "read")  # at least one helper exists now
    before = {t.ident for t in _helpers()}
    seen: set[int | None] = set()
    for _ in range(20):
        seen.add(bounded.call_within(lambda: threading.get_ident(), 5.0, "read"))
    assert seen <= before  # no new thread for any of the 20 calls


def test_a_stuck_call_holds_only_its_own_helper() -> None:
    release = threading.Event()
    with pytest.raises(StoreUnavailableError, match=r"within the 0\.05 s"):
        bounded.call_within(release.wait, 0.05, "read the token")
    try:
        # the stuck helper is busy; the next calls get another and finish
        for i in range(3):
            assert bounded.call_within(functools.partial(int, i), 5.0, "read") == i
    finally:
        release.set()


def test_no_time_left_starts_nothing() -> None:
    started = []
    with pytest.raises(StoreUnavailableError, match="no time left"):
        bounded.call_within(lambda: started.append(1), 0.0, "write")
    assert started == []


class _Heard(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self.arrived = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.arrived.set()


def test_a_forgotten_release_that_fails_is_logged() -> None:
    def release() -> None:
        raise ConnectionError("down")

    heard = _Heard()
    logger = logging.getLogger("authpulse.store")
    logger.addHandler(heard)
    try:
        bounded.start_and_forget(release, "release")
        assert heard.arrived.wait(5.0)
    finally:
        logger.removeHandler(heard)
    (record,) = heard.records
    assert "could not release (ConnectionError)" in record.getMessage()
    assert "down" not in record.getMessage()


def test_a_forked_child_starts_its_own_helpers() -> None:
    helpers = bounded._Helpers()
    helpers.run(lambda: None, "authpulse-store-test")
    helpers.forked()  # as in a child: the parent's helpers are not there
    ran = threading.Event()
    helpers.run(ran.set, "authpulse-store-test")
    assert ran.wait(5.0)
