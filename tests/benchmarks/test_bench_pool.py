"""The pool's benchmarks still run: each at a tiny size ends with its JSON line.

Guards against bit-rot only; no performance target is asserted (a run this small means nothing).
"""

from __future__ import annotations

import pytest
from bench_helpers import run_bench

pytestmark = pytest.mark.usefixtures("bench_on_path")


def test_scaling(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--phases", "20:0.5,30:10,30:0.5", "--idle-timeout", "10", "--real-scale", "0.02"]
    out = run_bench("scaling", argv, capsys)
    elastic = out["elastic"]
    assert isinstance(elastic, dict)
    assert elastic["peak_agents"] > 1  # it grew for the burst
    assert 0.0 < elastic["utilisation_at_peak"] <= 1.0
    assert isinstance(out["real"], dict)


def test_failover(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--kills", "4", "--backlog-kills", "2", "--agents", "4", "--concurrency", "3",
            "--task-s", "0.3", "--interval-s", "0.2"]  # fmt: skip
    out = run_bench("failover", argv, capsys)
    room = out["room"]
    assert isinstance(room, dict)
    assert room["kills"] == 4
    assert room["tasks_not_succeeded"] == 0


def test_overload(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--duration-s", "1.5", "--agents", "2", "--slots", "2", "--max-queued", "64",
            "--batch", "8", "--baseline-s", "0.5"]  # fmt: skip
    out = run_bench("overload", argv, capsys)
    run = out["run"]
    assert isinstance(run, dict)
    assert run["tasks_lost"] == 0
    assert run["peak_queued"] <= 64
    assert isinstance(out["baseline_unbounded"], dict)
