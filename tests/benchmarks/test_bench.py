"""The benchmarks still run: each main function at a tiny size ends with its JSON line.

These guard against bit-rot only. They never assert a performance target: the figures of a run
this small, on a shared machine, mean nothing.
"""

from __future__ import annotations

import pytest
from bench_helpers import run_bench

pytestmark = pytest.mark.usefixtures("bench_on_path")


def test_list_names_every_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.__main__ import main

    assert main(["--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    from bench import BENCHMARKS

    assert listed == list(BENCHMARKS)
    assert listed[:3] == ["scwt", "throughput", "routing"]


def test_unknown_benchmark_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.__main__ import main

    assert main(["nope"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


def test_throughput(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_bench("throughput", ["--tasks", "500", "--repeat", "1", "--layers", "5"], capsys)
    assert out["tasks"] == 500
    for key in (
        "gather_best_per_s",
        "gather_median_per_s",
        "metaagent_best_per_s",
        "metaagent_median_per_s",
        "share_median",
        "layered_metaagent_median_per_s",
        "layered_gather_median_per_s",
    ):
        value = out[key]
        assert isinstance(value, float)
        assert value > 0


def test_routing(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--decisions", "100", "--warmup", "10", "--agents", "20,60", "--queued", "300,2000"]
    out = run_bench("routing", argv, capsys)
    cells = out["cells"]
    assert isinstance(cells, list)
    assert {(c["agents"], c["queued"], c["pool"]) for c in cells} == {
        (a, q, p) for a in (20, 60) for q in (300, 2000) for p in ("idle", "saturated")
    }
    for cell in cells:
        assert 0 < cell["p50_us"] <= cell["p99_us"] <= cell["max_us"]


def test_scwt(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_bench("scwt", ["--time-scale", "0.01"], capsys)
    assert out["time_scale"] == 0.01
    assert out["tasks"] == 6
    for key in (
        "sequential_s",
        "makespan_s",
        "time_reduction_pct",
        "success_pct",
        "peak_parallelism",
        "utilisation",
        "critical_path_bound_s",
        "measured_bound_s",
        "makespan_over_bound",
    ):
        assert isinstance(out[key], int | float)
    per_task = out["per_task"]
    assert isinstance(per_task, dict)
    assert set(per_task) == {
        "backend_auth_api",
        "security_audit",
        "auth_test_suite",
        "login_form",
        "query_optimisation",
        "api_docs",
    }
    targets = out["targets"]
    assert isinstance(targets, dict)
    assert {"time_reduction", "success_rate", "makespan_vs_critical_path"} <= set(targets)


def test_worktrees(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_bench("worktrees", ["--files", "200", "--tasks", "6", "--width", "2"], capsys)
    assert out["files"] == 200
    assert out["run_branch_complete"] is True
    phases = out["phases"]
    assert isinstance(phases, dict)
    assert set(phases) == {"create", "commit", "merge", "release", "create+merge",
                           "create+merge, reused"}  # fmt: skip
