"""``python -m bench mcp`` still runs, at a tiny size (no performance target asserted)."""

from __future__ import annotations

import pytest
from bench_helpers import run_bench

pytestmark = [pytest.mark.usefixtures("bench_on_path"), pytest.mark.timeout(120)]


def test_mcp(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_bench("mcp", ["--calls", "5", "--tasks", "50", "--waits", "1"], capsys)
    assert out["bench"] == "mcp"
    assert out["tasks"] == 50
    for key in ("rest_p50_ms", "memory_p50_ms", "stdio_p50_ms", "submit_mcp_ms"):
        value = out[key]
        assert isinstance(value, float)
        assert value > 0
    assert isinstance(out["wait_lag_p50_s"], float)
