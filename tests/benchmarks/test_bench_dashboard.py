"""The dashboard benchmark at a tiny size (a 200-task run, one page load each), so that it
cannot rot; no performance target is asserted here (bench/ measures them)."""

from __future__ import annotations

import json

import pytest

from bench import dashboard


@pytest.mark.skipif(dashboard.chromium_path() is None, reason="chromium is not installed")
@pytest.mark.timeout(180)
def test_dashboard(capsys: pytest.CaptureFixture[str]) -> None:
    result = dashboard.main(["--tasks", "200", "--repeats", "1"])
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1]) == result
    assert result["bench"] == "dashboard"
    assert result["tasks"] == 200
    for key in ("dashboard_ms_best", "dashboard_ms_median", "report_ms_best", "report_ms_median"):
        assert isinstance(result[key], float)
        assert result[key] > 0
    assert result["report_bytes"] > 0  # type: ignore[operator]
    assert isinstance(result["ok"], bool)
