"""The simulator benchmarks still run: each at a tiny size ends with its JSON line.

These guard against bit-rot only; the figures of runs this small mean nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _bench_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("learning", ["--tasks", "300", "--worlds", "1"]),
        ("makespan", ["--tasks", "120", "--layers", "6", "--dags", "1", "--agents", "4"]),
        ("affinity", ["--groups", "60", "--seeds", "1"]),
    ],
)
def test_simulated_bench_runs(
    name: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from bench import BENCHMARKS

    returned = BENCHMARKS[name][0](argv)
    lines = capsys.readouterr().out.strip().splitlines()
    printed = json.loads(lines[-1])
    assert printed["bench"] == name
    assert printed == json.loads(json.dumps(returned))
    assert printed["targets"]
    for target in printed["targets"].values():
        assert isinstance(target["target_met"], bool)
    assert len(lines) > 3  # a table came first


def test_makespan_orders_meet_the_same_durations(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import makespan

    out = makespan.main(["--tasks", "200", "--layers", "8", "--dags", "1", "--agents", "3"])
    capsys.readouterr()
    ratios = out["mean_ratio"]
    assert isinstance(ratios, dict)
    assert all(r >= 1.0 - 1e-9 for r in ratios.values())  # nothing beats the lower bound
