"""Faults on a real cluster: a worker node removed mid-run, and actors a dead orchestrator left
behind, reaped by name when the next one connects."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from typing import TYPE_CHECKING

import pytest
import ray
import ray_agents

from metaagent import AgentSpec, AgentTask, FunctionRunner, Orchestrator
from metaagent.backends.ray.actor import InstanceActor
from metaagent.backends.ray.cluster import NAMESPACE, actor_name, home_tag
from metaagent.core.health import HealthPolicy
from metaagent.core.placement import Placement
from metaagent.core.tasks import TaskState
from metaagent.journal.sqlite import SqliteJournal
from metaagent.runtime.config import OrchestratorConfig
from metaagent.testing import wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import RayCluster

    from metaagent.backends.ray.backend import RayBackend

TASKS = 60
GATE_FROM = 30  # tasks from this index on wait for the gate: they are running at the loss


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def _log_lines(log: Path, kind: str) -> list[tuple[str, int, str]]:
    out = []
    for line in log.read_text().splitlines():
        word, task, attempt, instance, _pid = line.split()
        if word == kind:
            out.append((task, int(attempt), instance))
    return out


@pytest.mark.timeout(240)
async def test_a_worker_node_removed_mid_run_loses_its_instances_and_every_task_succeeds_once(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    doomed = ray_cluster.add_node(num_cpus=2, resources={"spot": 4})
    log, gate = tmp_path / "log", tmp_path / "gate"
    spec = AgentSpec("spot-worker", {"work": 0.9}, FunctionRunner(ray_agents.gated),
                     concurrency=2, min_instances=4, max_instances=4,
                     placement=Placement(resources={"spot": 1}))  # fmt: skip
    tasks = [
        AgentTask(id=f"t{i:02d}", capability="work", max_attempts=5,
                  input={"log": str(log), "gate": str(gate), "gate_from": GATE_FROM, "index": i})
        for i in range(TASKS)
    ]  # fmt: skip
    journal = SqliteJournal(tmp_path / "journal.db")
    config = OrchestratorConfig(backend="ray", max_concurrency=8)
    try:
        async with Orchestrator([spec], config, journal=journal) as orch:
            handle = await orch.submit(tasks, name="node-loss")
            backend: RayBackend = orch._backend  # type: ignore[assignment]
            states = orch.task_states
            # The first 30 finish; the next 8 are running, waiting for the gate, on the node.
            await wait_until(
                lambda: sum(s is TaskState.SUCCEEDED for s in states(handle.run_id).values())
                >= GATE_FROM and sum(s is TaskState.RUNNING for s in states(handle.run_id).values())
                == 8,
                timeout_s=120,
            )  # fmt: skip
            first = {i: backend.nodes[i] for i in list(orch.scheduler.agents)}
            assert len(first) == 4
            assert len({n.split()[1] for n in first.values()}) == 1  # all on the spot node
            ray_cluster.add_node(num_cpus=2, resources={"spot": 4})  # where replacements go
            ray_cluster.remove_node(doomed)
            await wait_until(lambda: not set(first) & set(orch.scheduler.agents), timeout_s=60)
            # The pool replaces them (after its restart back-off), within max_instances.
            await wait_until(
                lambda: len(orch.scheduler.agents) == 4 and set(backend.nodes) >= set(
                    orch.scheduler.agents), timeout_s=90
            )  # fmt: skip
            gate.touch()
            batch = await handle.result()
            replaced = {i: backend.nodes[i] for i in orch.scheduler.agents}
    finally:
        journal.close()
    # Every task ended succeeded, exactly once in the report.
    assert batch.ok
    assert sorted(r.task_id for r in batch.results) == sorted(t.id for t in tasks)
    assert all(r.state is TaskState.SUCCEEDED for r in batch.results)
    # The attempts that were running on the lost node are listed, lost, and ran again.
    lost = [(r.task_id, a) for r in batch.results for a in r.attempts if a.outcome is not None
            and a.outcome.value == "crash"]  # fmt: skip
    assert len(lost) == 8
    assert all("lost: its Ray actor died" in (a.error or "") for _, a in lost)
    assert {a.agent_instance for _, a in lost} <= set(first)
    assert {t for t, _ in lost} <= {f"t{i:02d}" for i in range(GATE_FROM, TASKS)}
    # Nothing ran after it was recorded as succeeded: each task's successful attempt is its
    # last, and no execution of a task has a later attempt number.
    succeeded = {r.task_id: r.attempts[-1] for r in batch.results}
    assert all(a.outcome is not None and a.outcome.value == "succeeded" for a in succeeded.values())
    starts = _log_lines(log, "start")
    assert all(n <= succeeded[t].number for t, n, _ in starts)
    done = Counter(t for t, _, _ in _log_lines(log, "done"))
    assert set(done) == set(succeeded)
    # The pool replaced the lost instances, on the node that still has the resource.
    assert len(replaced) == 4
    assert not set(replaced) & set(first)
    assert len({n.split()[1] for n in replaced.values()} - {n.split()[1] for n in first.values()})
    # The journal has the same story.
    again = SqliteJournal(tmp_path / "journal.db")
    try:
        stored = again.load_run(handle.run_id, decisions=False)
    finally:
        again.close()
    assert stored.info.finished
    assert stored.info.counts == {"succeeded": TASKS}


def test_actors_left_by_a_dead_orchestrator_are_reaped_by_name_on_restart(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    tag = home_tag(str(tmp_path))
    # A driver process that made an actor of this home and died, leaving it behind (detached,
    # so that Ray itself does not end it with its owner's job).
    script = (
        "import ray, sys\n"
        "from metaagent.backends.ray.actor import InstanceActor\n"
        "from metaagent.core.health import HealthPolicy\n"
        "from metaagent.testing import agent_spec\n"
        f"ray.init(address={ray_cluster.address!r}, log_to_driver=False)\n"
        "job = ray.get_runtime_context().get_job_id()\n"
        "owner = {'host': 'elsewhere', 'pid': 1, 'job': job}\n"
        f"a = ray.remote(InstanceActor).options(name={actor_name(tag, 'old-x#1')!r}, "
        f"namespace={NAMESPACE!r}, lifetime='detached', num_cpus=0).remote("
        f"agent_spec('x', {{'c': 0.9}}), 'x#1', {str(tmp_path)!r}, HealthPolicy(), owner)\n"
        "ray.get(a.owner.remote())\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    name = actor_name(tag, "old-x#1")
    assert ray.get_actor(name, namespace=NAMESPACE) is not None
    # An actor of another home is left alone.
    other = ray.remote(InstanceActor).options(
        name=actor_name("0" * 12, "y#1"), namespace=NAMESPACE, num_cpus=0
    ).remote(AgentSpec("y", {"c": 0.9}, FunctionRunner(ray_agents.noop)), "y#1", ".",
             HealthPolicy(), {"host": "elsewhere", "pid": 1, "job": "none"})  # fmt: skip
    ray.get(other.owner.remote())

    async def restart() -> list[str]:
        spec = AgentSpec("x", {"c": 0.9}, FunctionRunner(ray_agents.noop))
        config = OrchestratorConfig(backend="ray", workdir=str(tmp_path))
        async with Orchestrator([spec], config) as orch:
            batch = await orch.execute_batch([AgentTask(id="t", capability="c")])
            assert batch.ok
            backend: RayBackend = orch._backend  # type: ignore[assignment]
            return backend.reaped

    import asyncio

    assert asyncio.run(restart()) == [name]

    def gone() -> bool:
        try:
            ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            return True
        return False

    asyncio.run(wait_until(gone, timeout_s=30))
    assert ray.get(other.owner.remote())["pid"] == 1
    ray.kill(other)


AGENT_SH = """\
echo "start $1 $$" >> log
while [ ! -e gate ]; do sleep 0.05; done
echo "done $1" >> log
echo "$1"
"""
RESUMABLE = """\
name: resumable
settings: {backend: ray}
agents:
  - name: gated
    capabilities: {work: 0.9}
    concurrency: 2
    ray: {resources: {box: 1}}
    runner: {type: command, argv: [sh, agent.sh, "{task_id}"]}
tasks:
  - {id: a, capability: work}
  - {id: b, capability: work}
  - {id: c, capability: work, depends_on: [a, b]}
"""


@pytest.mark.timeout(240)
def test_a_killed_orchestrator_resumes_from_its_journal_with_new_actors(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    import os
    import signal
    import time

    (tmp_path / "wf.yaml").write_text(RESUMABLE)
    (tmp_path / "agent.sh").write_text(AGENT_SH)
    log = tmp_path / "log"
    cli = [sys.executable, "-m", "metaagent.cli", "run", "wf.yaml", "-q",
           "--ray-address", ray_cluster.address]  # fmt: skip

    def starts(n: int, proc: subprocess.Popen[str]) -> list[int]:
        """Wait until the log has ``n`` starts; the pids of the agents' shells."""
        deadline = time.monotonic() + 120
        while not (log.exists() and log.read_text().count("start") >= n):
            assert proc.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return [int(line.split()[2]) for line in log.read_text().splitlines()
                if line.startswith("start")]  # fmt: skip

    first = subprocess.Popen(cli, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        old = starts(2, first)
    finally:
        os.kill(first.pid, signal.SIGKILL)  # the orchestrator's machine dies, say
        _, err = first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL
    found = re.search(r"^run (run-\w+) \(journal", err, re.MULTILINE)
    assert found is not None, err
    run_id = found[1]
    again = subprocess.Popen([*cli, "--json", "out.json"], cwd=tmp_path,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        starts(4, again)  # a and b started again, on new actors
        # The dead orchestrator's attempts stop with their actors (ended by Ray with its job,
        # or reaped by name when the new one connected): their shells are gone.
        deadline = time.monotonic() + 60
        while any(_running(pid) for pid in old):
            assert time.monotonic() < deadline, old
            time.sleep(0.05)
        (tmp_path / "gate").touch()
        _, err = again.communicate(timeout=180)
    finally:
        if again.poll() is None:
            again.kill()
    assert again.returncode == 0, err[-3000:]
    import json

    report = json.loads((tmp_path / "out.json").read_text())
    assert report["run_id"] == run_id  # the same run, resumed
    assert report["counts"]["succeeded"] == 3
    assert {t["id"]: t["output"] for t in report["tasks"]} == {"a": "a", "b": "b", "c": "c"}
    # a and b ran again on new actors; the killed run's attempts never finished.
    done = [line.split()[1] for line in log.read_text().splitlines() if line.startswith("done")]
    assert sorted(done) == ["a", "b", "c"]
    prefix = f"ma-{home_tag(str(tmp_path))}-"
    left = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(prefix)}  # fmt: skip
    assert left == set()  # none of either process's actors is left
