from __future__ import annotations

import io

from authpulse._cli import main
from authpulse._demo import run_demo
from authpulse.testing import FakeClock


def test_demo_survives_outage_and_rotation_without_user_visible_failure() -> None:
    out = io.StringIO()
    summary = run_demo(20.0, clock=FakeClock(), out=out)
    assert summary.calls > 300
    assert summary.failed == 0
    assert summary.refresh_failures >= 1  # the outage was felt ...
    assert summary.lowest_score < 100  # ... and showed in the health score
    assert summary.final_score == 100  # ... and recovered from
    assert summary.replays_after_401 >= 1
    assert summary.reuse_detected == 0
    assert summary.ux_score is not None
    assert summary.ux_score == 100.0  # the last 100 calls (after the rotation) were clean
    text = out.getvalue()
    assert "summary:" in text
    assert text.count("\nt=") >= 18
    assert "degraded" in text  # the auth state column shows the outage


def test_cli_rejects_bad_duration(capsys: object) -> None:
    import pytest

    with pytest.raises(SystemExit) as exc:
        main(["demo", "--duration", "-1"])
    assert exc.value.code == 2
