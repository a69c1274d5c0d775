"""``python -m bench ray`` still runs (at a tiny size, on the shared cluster); no figure is
judged here."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from bench_helpers import run_bench

if TYPE_CHECKING:
    from conftest import RayCluster

pytestmark = pytest.mark.usefixtures("bench_on_path")


@pytest.mark.timeout(240)
def test_the_ray_benchmark_runs(
    ray_cluster: RayCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--address", ray_cluster.address, "--tasks", "60", "--repeat", "1",
            "--time-scale", "0.01", "--scwt-rounds", "1", "--startup", "2"]  # fmt: skip
    out = run_bench("ray", argv, capsys)
    for key in ("plain_ray_median_per_s", "ray_median_per_s", "local_median_per_s",
                "scwt_local_s", "scwt_ray_s", "metaagent_start_s", "plain_start_s"):  # fmt: skip
        value = out[key]
        assert isinstance(value, float)
        assert value > 0
