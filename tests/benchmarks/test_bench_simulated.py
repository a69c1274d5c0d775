"""The simulator benchmarks still run: each at a tiny size ends with its JSON line.

These guard against bit-rot only; the figures of runs this small mean nothing.
"""

from __future__ import annotations

import pytest
from bench_helpers import run_bench

pytestmark = pytest.mark.usefixtures("bench_on_path")


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("learning", ["--tasks", "300", "--worlds", "1", "--overclaim-tasks", "200"]),
        ("hetero", ["--dags", "3", "--max-tasks", "60", "--restarts", "2", "--redraws", "2"]),
        ("fairness", ["--big", "2000", "--slots", "8", "--at", "10"]),
        (
            "makespan",
            [
                "--tasks",
                "120",
                "--layers",
                "6",
                "--dags",
                "1",
                "--agents",
                "4",
                "--shape-sizes",
                "60",
            ],
        ),
        ("affinity", ["--groups", "60", "--seeds", "1"]),
        ("cost", ["--tasks", "150", "--seeds", "1", "--instances", "2"]),
    ],
)
def test_simulated_bench_runs(
    name: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    run_bench(name, argv, capsys)


def test_makespan_orders_meet_the_same_durations(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import makespan

    out = makespan.main(
        ["--tasks", "200", "--layers", "8", "--dags", "1", "--agents", "3", "--shape-sizes", "40"]
    )
    capsys.readouterr()
    ratios = out["mean_ratio"]
    assert isinstance(ratios, dict)
    assert all(r >= 1.0 - 1e-9 for r in ratios.values())  # nothing beats the lower bound
