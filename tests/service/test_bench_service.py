"""``python -m bench service`` still runs: at a tiny size it ends with its JSON line (no figure
is asserted: a run this small, on a shared machine, means nothing)."""

from __future__ import annotations

import pytest
from bench_helpers import run_bench

pytestmark = [pytest.mark.usefixtures("bench_on_path"), pytest.mark.timeout(300)]


def test_service_bench_runs(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--tasks", "40", "--clients", "3", "--repeat", "2", "--paced-tasks", "20",
            "--dashboard-tasks", "0"]  # fmt: skip
    out = run_bench("service", argv, capsys)
    assert set(out["targets"]) == {"submit_under_1s", "fanout_rate", "fanout_p99", "idle_rss"}
    fanout = out["fanout"]
    assert isinstance(fanout, dict)
    # Each client saw the whole run (the first run also carries the pool's spawn of its agent).
    assert fanout["clients"]["events_per_client"] >= fanout["one_client"]["events_per_client"] > 0
