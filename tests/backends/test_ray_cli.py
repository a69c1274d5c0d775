"""``metaagent run --backend ray --ray-address HOST:PORT`` on the real cluster: the contract
workflow of the core issue gives the same report as on the local backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from contract import CONTRACT

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import RayCluster

CLI = [sys.executable, "-m", "metaagent.cli"]


def _run(tmp_path: Path, name: str, *flags: str) -> tuple[dict[str, object], str]:
    (tmp_path / "contract.yaml").write_text(CONTRACT)
    done = subprocess.run(
        [*CLI, "run", "contract.yaml", "--json", f"{name}.json", "--db", f"{name}.db", *flags],
        cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False,
        env={**os.environ, "COLUMNS": "200"},  # the agents table whole, its node column too
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, object] = json.loads((tmp_path / f"{name}.json").read_text())
    return report, done.stdout


def _shape(report: dict[str, object]) -> dict[str, object]:
    """What must be the same on every backend: everything but times and ids."""
    tasks = report["tasks"]
    assert isinstance(tasks, list)
    decisions = report["decisions"]
    assert isinstance(decisions, list)
    return {
        "name": report["name"],
        "counts": report["counts"],
        "peak_parallelism": report["peak_parallelism"],
        "tasks": sorted(
            (t["id"], t["state"], t["agent"], t["output"], [a["outcome"] for a in t["attempts"]])
            for t in tasks
        ),
        "routes": sorted(
            (d["task_id"], d["agent"]) for d in decisions if d["type"] == "route_task"
        ),
        "order": _started_after_deps(tasks),
    }


def _started_after_deps(tasks: list[dict[str, object]]) -> bool:
    by_id = {t["id"]: t for t in tasks}

    def first(task_id: str, key: str) -> float:
        attempts = by_id[task_id]["attempts"]
        assert isinstance(attempts, list)
        return float(attempts[0][key])

    return first("tests", "started_at") >= max(first(d, "finished_at") for d in ("api", "db"))


@pytest.mark.timeout(300)
def test_the_contract_workflow_gives_the_same_report_on_ray_as_on_local(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    local, _ = _run(tmp_path, "local")
    on_ray, table = _run(tmp_path, "ray", "--backend", "ray", "--ray-address", ray_cluster.address)
    assert _shape(on_ray) == _shape(local)
    # Where each instance ran: in the report (only on a cluster backend) and the agents table.
    assert "nodes" not in local
    nodes = on_ray["nodes"]
    assert isinstance(nodes, dict)
    assert set(nodes) == set(on_ray["agents"])  # type: ignore[arg-type]
    assert all(str(n).startswith("127.0.0.1 ") for n in nodes.values())
    assert "node" in table
    assert str(next(iter(nodes.values()))) in table
    assert _shape(on_ray)["counts"] == {"succeeded": 3, "failed": 0, "skipped": 0, "cancelled": 0}
    assert _shape(on_ray)["peak_parallelism"] == 2
    assert _shape(on_ray)["order"] is True
