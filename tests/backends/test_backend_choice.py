"""Choosing the Ray backend without a cluster: the workflow fields, the flags, errors that say
what is wrong, and Ray imported only when chosen. (The backend itself is tested on a real
cluster: ``test_netns.py``.)"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from metaagent.core.placement import Placement
from metaagent.errors import WorkflowError
from metaagent.workflow.build import parse_workflow
from metaagent.workflow.settings import Overrides, orchestrator_config

if TYPE_CHECKING:
    from pathlib import Path

CLI = [sys.executable, "-m", "metaagent.cli"]
HAS_RAY = importlib.util.find_spec("ray") is not None


def _workflow(agent: dict[str, object] | None = None, **settings: object) -> dict[str, object]:
    spec = {
        "name": "a",
        "capabilities": {"c": 0.9},
        "runner": {"type": "command", "argv": ["echo"]},
    }
    return {
        "name": "w",
        "settings": settings,
        "agents": [{**spec, **(agent or {})}],
        "tasks": [{"id": "t", "capability": "c"}],
    }


def test_backend_address_and_placement_come_from_the_workflow_and_flags(tmp_path: Path) -> None:
    raw = _workflow(
        {"ray": {"num_cpus": 1, "num_gpus": 0.5, "memory_mb": 512, "resources": {"gpu_box": 1},
                 "runtime_env": {"env_vars": {"A": "1"}}}},
        backend="ray", ray_address="head:6379",
    )  # fmt: skip
    wf = parse_workflow(raw)
    (spec,) = wf.agents
    assert spec.placement == Placement(1, 0.5, 512, {"gpu_box": 1}, {"env_vars": {"A": "1"}})
    assert spec.placement.demand() == {
        "CPU": 1,
        "GPU": 0.5,
        "memory": 512 * 1024 * 1024,
        "gpu_box": 1,
    }
    config = orchestrator_config(wf.settings, workdir=tmp_path, task_count=1)
    assert (config.backend, config.ray_address) == ("ray", "head:6379")
    flags = Overrides(backend="local", ray_address="auto")
    config = orchestrator_config(wf.settings, flags, workdir=tmp_path, task_count=1)
    assert (config.backend, config.ray_address) == ("local", "auto")
    plain = parse_workflow(_workflow())
    assert plain.agents[0].placement is None
    assert orchestrator_config(plain.settings, workdir=tmp_path, task_count=1).backend == "local"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            _workflow({"ray": {"num_gpus": -1}}),
            "agents[0] (name 'a').ray.num_gpus: Input should be greater",
        ),
        (_workflow({"ray": {"resources": {"box": 0}}}), "agents[0] (name 'a').ray.resources.box"),
        (_workflow({"ray": {"cpus": 1}}), "agents[0] (name 'a').ray.cpus"),
        (_workflow(backend="dask"), "settings.backend"),
    ],
)
def test_bad_ray_fields_are_refused_with_their_place(raw: dict[str, object], message: str) -> None:
    with pytest.raises(WorkflowError) as caught:
        parse_workflow(raw, source="wf.yaml")
    assert str(caught.value).startswith("wf.yaml: ")
    assert message in str(caught.value)


def test_an_address_for_the_local_backend_exits_2(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        "name: w\nagents:\n"
        "  - {name: a, capabilities: {c: 0.9}, runner: {type: command, argv: [echo]}}\n"
        "tasks:\n  - {id: t, capability: c}\n"
    )
    done = subprocess.run([*CLI, "run", "wf.yaml", "--no-journal", "--ray-address", "auto"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert "backend 'local' takes no address" in done.stderr


@pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (pip install metaagent[ray])")
@pytest.mark.timeout(60)
def test_an_unreachable_cluster_is_a_clear_error_at_start_not_a_hang(tmp_path: Path) -> None:
    # Port 1 of loopback: nothing listens there, so the connection is refused at once.
    (tmp_path / "wf.yaml").write_text(
        "name: w\nagents:\n"
        "  - {name: a, capabilities: {c: 0.9}, runner: {type: command, argv: [echo]}}\n"
        "tasks:\n  - {id: t, capability: c}\n"
    )
    args = ["run", "wf.yaml", "--no-journal", "--backend", "ray", "--ray-address", "127.0.0.1:1"]
    done = subprocess.run([*CLI, *args], cwd=tmp_path, capture_output=True, text=True, timeout=50)
    assert done.returncode == 2, done.stderr
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in done.stderr
    assert "ray start --head" in done.stderr
    assert "Traceback" not in done.stderr


def test_ray_is_imported_only_when_chosen(tmp_path: Path) -> None:
    script = (
        "import asyncio, sys\n"
        "from metaagent import AgentTask, Orchestrator\n"
        "from metaagent.testing import agent_spec\n"
        "import metaagent.cli.app\n"
        "async def main():\n"
        "    async with Orchestrator([agent_spec('a', {'c': 0.9})]) as orch:\n"
        "        assert (await orch.execute_batch([AgentTask(id='t', capability='c')])).ok\n"
        "asyncio.run(main())\n"
        "print('ray' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    assert done.stdout.strip() == "False"
