"""The Ray backend on a real cluster: every runner type inside actors on the nodes their
placement asks for, time limits, cancellation, output caps, and clear errors."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import ray
import ray_agents

from metaagent import AgentSpec, AgentTask, CommandRunner, FunctionRunner, Orchestrator
from metaagent.agents.llm import LlmConfig, LlmRunner
from metaagent.agents.persistent import PersistentCommandRunner
from metaagent.backends.base import pending_of
from metaagent.backends.ray.cluster import NAMESPACE, home_tag
from metaagent.core.placement import Placement
from metaagent.core.scaling import PoolPolicy
from metaagent.core.tasks import TaskState
from metaagent.errors import BackendUnavailable
from metaagent.runtime.config import OrchestratorConfig
from metaagent.testing import wait_until

if TYPE_CHECKING:
    from conftest import RayCluster

    from metaagent.backends.ray.backend import RayBackend

pytestmark = pytest.mark.timeout(120)

CONFIG = OrchestratorConfig(backend="ray")
POOL_AGENT = Path(__file__).resolve().parent.parent / "pool_agent.py"


def _node_with(resource: str) -> str:
    (node,) = [n["NodeID"] for n in ray.nodes() if n["Alive"] and resource in n["Resources"]]
    return str(node)


def _backend(orch: Orchestrator) -> RayBackend:
    backend = orch._backend  # the tests look at where the backend put each instance
    assert backend.name == "ray"
    return backend  # type: ignore[return-value]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


async def test_every_runner_type_runs_inside_an_actor_on_the_node_it_asks_for(
    ray_cluster: RayCluster,
) -> None:
    specs = [
        AgentSpec("sync-left", {"where": 0.9}, FunctionRunner(ray_agents.where),
                  placement=Placement(resources={"left": 1})),
        AgentSpec("async-any", {"echo": 0.9}, FunctionRunner(ray_agents.echo), concurrency=2),
        AgentSpec("cmd-right", {"ppid": 0.9}, CommandRunner(["sh", "-c", "echo $PPID"]),
                  placement=Placement(resources={"right": 1}, num_cpus=0.5)),
        AgentSpec("persistent", {"long": 0.9},
                  PersistentCommandRunner([sys.executable, str(POOL_AGENT)])),
    ]  # fmt: skip
    tasks = [
        AgentTask(id="w", capability="where"),
        AgentTask(id="e", capability="echo", input={"n": 1}, depends_on=["w"]),
        AgentTask(id="p", capability="ppid"),
        AgentTask(id="l", capability="long", input={"seconds": 0.01}),
    ]
    async with Orchestrator(specs, CONFIG) as orch:
        batch = await orch.execute_batch(tasks)
        backend = _backend(orch)
        assert batch.ok, [(r.task_id, r.error) for r in batch.results]
        out = {r.task_id: r.output for r in batch.results}
        by_agent = {r.task_id: r.attempts[-1].agent_instance for r in batch.results}
        workers = dict(backend.workers)
        nodes = dict(backend.nodes)
    assert isinstance(out["w"], dict)
    assert out["w"]["node"] == _node_with("left")
    assert out["w"]["pid"] == workers[by_agent["w"]] != os.getpid()
    assert out["e"] == {"id": "e", "upstream": {"w": out["w"]}, "input": {"n": 1}}
    # The command's process is a child of the actor's worker, on the node with "right".
    assert out["p"] == str(workers[by_agent["p"]])
    assert nodes[by_agent["p"]].split()[1] == _node_with("right")[:8]
    assert isinstance(out["l"], dict)
    assert out["l"]["pid"] != os.getpid()
    assert set(nodes) >= set(by_agent.values())


async def test_time_limits_cancellation_and_output_caps_hold_inside_the_actor(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    sleeper = CommandRunner(["sh", "-c", f'echo $$ >> {pids}/"$0"; exec sleep 60', "{task_id}"])
    loud = CommandRunner(
        [sys.executable, "-c", "print('x' * 200_000)"], max_output_mb=0.01, max_log_mb=0.01
    )
    pids.mkdir()
    specs = [
        AgentSpec("sleeper", {"sleep": 0.9}, sleeper, concurrency=2),
        AgentSpec("loud", {"loud": 0.9}, loud),
    ]
    tasks = [
        AgentTask(id="slow", capability="sleep", timeout_s=1.0, max_attempts=1),
        AgentTask(id="stopped", capability="sleep", max_attempts=1),
        AgentTask(id="big", capability="loud"),
    ]
    async with Orchestrator(specs, CONFIG) as orch:
        handle = await orch.submit(tasks)
        written = pids / "stopped"
        await wait_until(
            lambda: written.exists() and written.read_text().endswith("\n"), timeout_s=60
        )
        stopped_pid = int((pids / "stopped").read_text())
        await orch.cancel(handle.run_id, ["stopped"])
        batch = await handle.result()
    res = {r.task_id: r for r in batch.results}
    assert res["slow"].state is TaskState.FAILED
    assert res["slow"].attempts[0].outcome.value == "timeout"
    assert "timed out after 1s" in (res["slow"].error or "")
    assert res["stopped"].state is TaskState.CANCELLED
    await wait_until(lambda: (pids / "slow").read_text().endswith("\n"), timeout_s=5)
    slow_pid = int((pids / "slow").read_text())
    await wait_until(lambda: not _alive(slow_pid) and not _alive(stopped_pid), timeout_s=20)
    big = res["big"].output
    assert isinstance(big, str)
    assert "bytes of output dropped: limit 10,485 bytes" in big
    assert len(big) < 20_000


async def test_a_placement_no_node_can_hold_is_a_clear_error_at_start(
    ray_cluster: RayCluster,
) -> None:
    spec = AgentSpec("needs-unobtainium", {"x": 0.9}, FunctionRunner(ray_agents.noop),
                     placement=Placement(resources={"unobtainium": 1}, num_gpus=2))  # fmt: skip
    async with Orchestrator([spec], CONFIG) as orch:
        with pytest.raises(BackendUnavailable) as caught:
            await orch.submit([AgentTask(id="t", capability="x")])
    text = str(caught.value)
    assert "agent 'needs-unobtainium' cannot be placed" in text
    assert "GPU=2, unobtainium=1" in text
    assert "127.0.0.1: CPU=2" in text  # what the nodes offer


async def test_an_actor_killed_mid_attempt_is_lost_its_attempt_rerouted_and_replaced(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    log, gate = tmp_path / "log", tmp_path / "gate"
    spec = AgentSpec("gated", {"g": 0.9}, FunctionRunner(ray_agents.gated),
                     min_instances=2, max_instances=2)  # fmt: skip
    tasks = [
        AgentTask(id=f"t{i}", capability="g", max_attempts=3,
                  input={"log": str(log), "gate": str(gate), "gate_from": 0, "index": i})
        for i in range(2)
    ]  # fmt: skip
    async with Orchestrator([spec], CONFIG) as orch:
        handle = await orch.submit(tasks)
        await wait_until(lambda: log.exists() and log.read_text().count("start") == 2, timeout_s=60)
        backend = _backend(orch)
        victim = next(r for r in orch.scheduler.agents.values() if r.running)
        ray.kill(backend._actors[victim.id].handle, no_restart=True)
        await wait_until(lambda: victim.id not in orch.scheduler.agents, timeout_s=30)
        await wait_until(lambda: log.read_text().count("start") == 3, timeout_s=60)
        gate.touch()
        batch = await handle.result()
        replacements = set(backend.nodes) - {victim.id}
    assert batch.ok
    # As for local agents: an attempt on an instance that was lost ends ``crash`` (an agent
    # fault), saying the instance was lost and why, and the task is routed again.
    lost = [a for r in batch.results for a in r.attempts if a.outcome.value == "crash"]
    assert len(lost) == 1, [
        (a.agent_instance, a.outcome, a.error) for r in batch.results for a in r.attempts
    ]
    assert lost[0].agent_instance == victim.id
    assert f"agent {victim.id} lost: its Ray actor died" in (lost[0].error or "")
    assert {r.attempts[-1].outcome.value for r in batch.results} == {"succeeded"}
    assert len(replacements) >= 2  # the other instance and the victim's replacement


async def _chat_server(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[dict[str, object]]
) -> None:
    """An OpenAI-style chat endpoint on loopback: answers every request with the prompt seen."""
    while line := await reader.readline():
        assert line.startswith(b"POST ")
        length = 0
        while (raw := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = raw.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        request = json.loads(await reader.readexactly(length))
        seen.append(request)
        text = f"answered: {request['messages'][-1]['content'].split()[-1]}"
        body = json.dumps({"id": "c1", "object": "chat.completion", "model": "m",
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": text}}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                     "total_tokens": 2}}).encode()  # fmt: skip
        head = f"HTTP/1.1 200 OK\r\ncontent-length: {len(body)}\r\ncontent-type: application/json"
        writer.write(head.encode() + b"\r\n\r\n" + body)
        await writer.drain()
    writer.close()


async def test_an_llm_agent_calls_its_model_from_inside_its_actor(
    ray_cluster: RayCluster,
) -> None:
    seen: list[dict[str, object]] = []
    server = await asyncio.start_server(lambda r, w: _chat_server(r, w, seen), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    llm = LlmRunner(LlmConfig("openai", "m", base_url=f"http://127.0.0.1:{port}/v1"), env={})
    spec = AgentSpec("llm", {"write": 0.9}, llm, placement=Placement(resources={"left": 1}))
    try:
        async with Orchestrator([spec], CONFIG) as orch:
            batch = await orch.execute_batch(
                [AgentTask(id="w", capability="write", prompt="write the summary")]
            )
            node = _backend(orch).nodes[batch.results[0].attempts[0].agent_instance]
    finally:
        server.close()
        await server.wait_closed()
    assert batch.ok, batch.results[0].error
    assert batch.results[0].output == "answered: summary"
    assert len(seen) == 1
    assert node.split()[1] == _node_with("left")[:8]


def _named_actors(prefix: str) -> set[str]:
    return {
        a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == NAMESPACE and a["name"].startswith(prefix)
    }  # fmt: skip


async def test_the_pool_grows_and_retires_actors(ray_cluster: RayCluster, tmp_path: Path) -> None:
    spec = AgentSpec("napper", {"nap": 0.9}, FunctionRunner(ray_agents.nap),
                     min_instances=1, max_instances=3)  # fmt: skip
    pool = PoolPolicy(spawn_threshold=1, scale_up_window_s=0, cooldown_s=0, idle_timeout_s=0.5,
                      target_utilisation=0)  # fmt: skip
    config = OrchestratorConfig(backend="ray", pool=pool, workdir=str(tmp_path))
    prefix = f"ma-{home_tag(str(tmp_path))}-"
    async with Orchestrator([spec], config) as orch:
        tasks = [AgentTask(id=f"n{i}", capability="nap", input=1.0) for i in range(9)]
        batch = await orch.execute_batch(tasks)
        grown = len({r.output for r in batch.results})
        assert batch.ok
        # Idle past idle_timeout_s: the pool goes back to min_instances; the actors go too.
        await wait_until(lambda: len(orch.scheduler.agents) == 1, timeout_s=60)
        await wait_until(lambda: len(_named_actors(prefix)) == 1, timeout_s=60)
    assert grown == 3
    await wait_until(lambda: not _named_actors(prefix), timeout_s=30)  # closed: none left


async def test_a_placement_no_node_holds_when_the_pool_grows_is_a_pending_state_with_its_reason(
    ray_cluster: RayCluster,
) -> None:
    # min_instances 0: the instance is spawned when work arrives, not when the run starts.
    spec = AgentSpec("ghost", {"haunt": 0.9}, FunctionRunner(ray_agents.noop),
                     min_instances=0, max_instances=1,
                     placement=Placement(resources={"nowhere": 1}))  # fmt: skip
    async with Orchestrator([spec], CONFIG) as orch:
        handle = await orch.submit([AgentTask(id="t", capability="haunt")])
        backend = _backend(orch)
        await wait_until(lambda: "ghost" in backend.pending, timeout_s=30)
        reasons = {**orch.waiting(), **pending_of(backend)}
        await orch.cancel(handle.run_id)
        batch = await handle.result()
    assert "no live agent offers 'haunt'" in reasons["haunt"]
    assert reasons["agent ghost"].startswith("agent 'ghost' cannot be placed: no live node")
    assert "nowhere=1" in reasons["agent ghost"]
    assert batch.results[0].state is TaskState.CANCELLED
