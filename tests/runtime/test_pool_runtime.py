"""The agent pool with real processes: the persistent agents' protocol, chaos (agents killed and
frozen mid-task while a run proceeds), late results, poison tasks, memory limits, and what the
CLI shows of the pool (the queue bound, per-agent utilisation).

Heartbeats are short here (0.2 s interval, 0.5 s timeout) so that a frozen agent is found out
quickly. Steps are ordered by state (a task started, an agent was lost), never by fixed sleeps.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from metaagent import (
    AgentCrash,
    AgentFailure,
    AgentSpec,
    AgentTask,
    FunctionRunner,
    Orchestrator,
    OrchestratorConfig,
    Outcome,
    ProcessLimits,
    RetryPolicy,
    SpawnAgent,
    TaskState,
    TerminateAgent,
    WorkflowError,
)
from metaagent.agents.base import AttemptContext
from metaagent.agents.persistent import PersistentCommandRunner
from metaagent.core.health import HealthPolicy
from metaagent.core.instances import AgentState
from metaagent.core.scaling import PoolPolicy
from metaagent.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parents[2]
AGENT = str(Path(__file__).resolve().parents[1] / "pool_agent.py")
HEALTH = HealthPolicy(
    heartbeat_interval_s=0.2,
    heartbeat_timeout_s=0.5,
    restart_backoff_s=0.1,
    restart_backoff_max_s=1.0,
    start_timeout_s=5.0,
)
FAST_RETRY = RetryPolicy(base_s=0.05, max_s=0.5, jitter=0.1)
STATE_S = 10.0  # how long ``wait_until`` waits here for a state: real processes start slowly


def persistent(
    *flags: str, memory_mb: int | None = 200, grace_s: float = 2.0
) -> PersistentCommandRunner:
    return PersistentCommandRunner(
        [sys.executable, AGENT, *flags],
        limits=ProcessLimits(memory_mb=memory_mb),
        stop_grace_s=grace_s,
    )


def pool_spec(
    name: str = "w", *, n: int = 2, hi: int | None = None, runner: object = None, **kw: object
) -> AgentSpec:
    return AgentSpec(
        name,
        {"work": 0.9},
        runner or persistent(),  # type: ignore[arg-type]
        min_instances=n,
        max_instances=hi or n,
        **kw,  # type: ignore[arg-type]
    )


def config(**kw: object) -> OrchestratorConfig:
    kw.setdefault("health", HEALTH)
    kw.setdefault("retry", FAST_RETRY)
    kw.setdefault("max_concurrency", 16)
    return OrchestratorConfig(**kw)  # type: ignore[arg-type]


def ctx(task: AgentTask, instance: str = "a", attempt: int = 1) -> AttemptContext:
    return AttemptContext(task, "run", attempt, "w", instance)


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped) counts as dead."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


# --- the persistent runner's protocol ------------------------------------------------------------


async def test_one_process_serves_many_attempts_and_answers_heartbeats() -> None:
    runner = persistent("--stray")
    exits: list[tuple[str, str]] = []
    await runner.open("a", ".", lambda i, why: exits.append((i, why)))
    pid = runner.pid("a")
    assert pid is not None
    assert await runner.ping("a", 2.0)
    outs = await asyncio.gather(
        *(runner.run(ctx(AgentTask(f"t{i}", "work", input={"seconds": 0.1}))) for i in range(4))
    )
    assert [o["task"] for o in outs] == ["t0", "t1", "t2", "t3"]  # type: ignore[index]
    assert {o["pid"] for o in outs} == {pid}  # type: ignore[index]
    with pytest.raises(AgentFailure, match="asked to fail: bad"):
        await runner.run(ctx(AgentTask("bad", "work", input={"fail": True})))
    assert runner.describe()["type"] == "persistent"
    t0 = time.monotonic()
    await runner.close("a")
    assert time.monotonic() - t0 < 1.5  # it left on the shutdown request, no signal needed
    assert not alive(pid)
    assert exits == []  # a requested stop is not reported as an exit
    assert not runner.alive("a")


async def test_an_agent_that_ignores_shutdown_and_sigterm_is_killed() -> None:
    runner = persistent("--ignore-shutdown", grace_s=0.3)
    await runner.open("a", ".")
    pid = runner.pid("a")
    assert pid is not None
    assert await runner.ping("a", 2.0)
    t0 = time.monotonic()
    await runner.close("a")
    assert 0.5 <= time.monotonic() - t0 < 3.0  # asked, then SIGTERM, then SIGKILL
    assert not alive(pid)


async def test_a_frozen_agent_misses_its_heartbeat_and_a_killed_one_reports_its_exit() -> None:
    runner = persistent()
    exits: list[tuple[str, str]] = []
    await runner.open("a", ".", lambda i, why: exits.append((i, why)))
    pid = runner.pid("a")
    assert pid is not None
    assert await runner.ping("a", 2.0)
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        assert not await runner.ping("a", 0.3)
        assert time.monotonic() - t0 < 1.0
        running = asyncio.ensure_future(runner.run(ctx(AgentTask("t", "work"))))
        await asyncio.sleep(0)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(AgentCrash, match="killed by SIGKILL"):
            await running
    finally:
        os.kill(pid, signal.SIGCONT) if alive(pid) else None
    assert exits == [("a", "agent process killed by SIGKILL")]
    with pytest.raises(AgentCrash, match="not running"):
        await runner.run(ctx(AgentTask("t2", "work")))
    await runner.close("a")  # already gone: nothing to do


# --- the orchestrator with real agent processes --------------------------------------------------


def busy_instances(orch: Orchestrator) -> list[str]:
    return sorted(
        i.id for i in orch.scheduler.agents.values() if i.running and i.state is AgentState.READY
    )


async def test_chaos_agents_killed_and_frozen_mid_task_every_task_still_ends_right() -> None:
    runner = persistent()
    spec = pool_spec(n=4, runner=runner)
    work = [
        AgentTask(f"t{i:02}", "work", input={"seconds": 0.4}, max_attempts=4) for i in range(24)
    ]
    pids: dict[str, int] = {}
    async with Orchestrator([spec], config()) as orch:
        handle = await orch.submit(work, name="chaos")
        await wait_until(lambda: len(busy_instances(orch)) == 4, timeout_s=STATE_S)
        for iid in orch.scheduler.agents:
            pid = runner.pid(iid)
            assert pid is not None
            pids[iid] = pid
        killed, frozen = busy_instances(orch)[:2], busy_instances(orch)[2:]
        for iid in killed:
            os.kill(pids[iid], signal.SIGKILL)
        for iid in frozen:
            os.kill(pids[iid], signal.SIGSTOP)
        batch = await asyncio.wait_for(handle.result(), 30.0)
        survivors = [runner.pid(i) for i in orch.scheduler.agents]
    assert batch.counts["succeeded"] == 24, batch.counts
    crashed = {
        a.agent_instance: a.error
        for r in batch.results
        for a in r.attempts
        if a.outcome is Outcome.CRASH
    }
    assert set(crashed) == set(killed) | set(frozen)
    for iid in killed:
        assert "killed by SIGKILL" in str(crashed[iid])
    for iid in frozen:
        assert "no heartbeat answer within 0.5s" in str(crashed[iid])
    for r in batch.results:
        # Every crashed attempt was routed again, to another instance, and that one finished it.
        last = r.attempts[-1]
        assert last.outcome is Outcome.SUCCEEDED
        assert all(a.agent_instance != last.agent_instance for a in r.attempts[:-1])
        assert r.output["attempt"] == last.number  # type: ignore[index]
    lost = [d for d in batch.decisions if isinstance(d, TerminateAgent) and d.lost]
    assert sorted(d.instance for d in lost) == sorted(killed + frozen)
    restarts = [d for d in batch.decisions if isinstance(d, SpawnAgent) and "restart" in d.reason]
    assert 1 <= len(restarts) <= 4
    # Nothing is left behind: the frozen agents were killed, every other one stopped on close.
    for pid in [*pids.values(), *survivors]:
        assert pid is None or not alive(pid)


class FakeLongLived:
    """A long-lived runner without processes whose instances can be made to stop answering
    heartbeats, and whose attempts finish only when told: a lost agent's result arrives late."""

    kind = "fake"

    def __init__(self) -> None:
        self.stuck: set[str] = set()
        self.release: dict[str, asyncio.Event] = {}
        self.started: list[str] = []

    async def open(
        self, instance: str, workdir: str, on_exit: Callable[[str, str], None] | None = None
    ) -> None:
        self.release[instance] = asyncio.Event()

    async def close(self, instance: str) -> None:
        self.release[instance].set()

    async def ping(self, instance: str, timeout_s: float) -> bool:
        if instance in self.stuck:
            await asyncio.sleep(timeout_s)
            return False
        return True

    def kill(self, instance: str, reason: str) -> None:
        """It ignores the kill: its attempt goes on and its result comes late."""

    def pid(self, instance: str) -> int | None:
        return None

    async def run(self, c: AttemptContext) -> object:
        self.started.append(c.instance)
        if c.attempt == 1:
            await self.release[c.instance].wait()
        return f"from {c.instance}"

    def describe(self) -> dict[str, object]:
        return {"type": self.kind}


async def test_a_late_result_from_a_lost_agent_is_rejected() -> None:
    fake = FakeLongLived()
    spec = pool_spec(n=2, runner=fake)
    async with Orchestrator([spec], config()) as orch:
        handle = await orch.submit([AgentTask("t", "work")])
        await wait_until(lambda: len(fake.started) == 1, timeout_s=STATE_S)
        (first,) = fake.started
        fake.stuck.add(first)  # it stops answering heartbeats, its attempt still running
        batch = await asyncio.wait_for(handle.result(), 10.0)
        (r,) = batch.results
        assert r.state is TaskState.SUCCEEDED
        assert [a.outcome for a in r.attempts] == [Outcome.CRASH, Outcome.SUCCEEDED]
        assert r.attempts[0].agent_instance == first
        assert r.output == f"from {r.attempts[1].agent_instance}"
        fake.release[first].set()  # now the lost agent answers: too late
        await wait_until(lambda: orch.scheduler.stale_results == 1, timeout_s=STATE_S)
        assert orch.batch_result(handle.run_id).results[0].output == r.output


async def test_a_poison_task_fails_after_max_attempts_and_spares_the_others() -> None:
    spec = pool_spec(n=2)
    poison = AgentTask("poison", "work", input={"exit": 7}, max_attempts=3)
    others = [AgentTask(f"ok{i}", "work", input={"seconds": 0.05}) for i in range(8)]
    async with Orchestrator([spec], config()) as orch:
        batch = await asyncio.wait_for(orch.execute_batch([poison, *others]), 30.0)
        spawns_at_end = len([d for d in batch.decisions if isinstance(d, SpawnAgent)])
    p = batch.result("poison")
    assert p.state is TaskState.FAILED
    assert [a.outcome for a in p.attempts] == [Outcome.CRASH] * 3
    assert len({a.agent_instance for a in p.attempts}) == 3  # it killed each agent it touched
    assert all("exited with 7" in str(a.error) for a in p.attempts)
    assert all(batch.result(t.id).state is TaskState.SUCCEEDED for t in others)
    fail = [d for d in batch.decisions if d.type == "fail_task"]
    assert [d.task_id for d in fail] == ["poison"]
    assert "all 3 attempts failed" in fail[0].reason
    # Two at the start, at most one restart per agent it killed: no respawn loop.
    assert spawns_at_end <= 2 + 3


async def test_an_agent_over_its_memory_limit_is_declared_lost() -> None:
    spec = pool_spec(n=1, hi=1, runner=persistent(memory_mb=64))
    hog = AgentTask("hog", "work", input={"memory_mb": 150, "hang": True, "only_attempt": 1})
    async with Orchestrator([spec], config()) as orch:
        batch = await asyncio.wait_for(orch.execute_batch([hog]), 30.0)
    (r,) = batch.results
    assert r.state is TaskState.SUCCEEDED
    first, second = r.attempts
    assert first.outcome is Outcome.CRASH
    assert "memory limit exceeded" in str(first.error)
    assert "> 64 MB" in str(first.error)
    assert second.agent_instance != first.agent_instance


async def test_an_agent_that_cannot_start_never_takes_a_task() -> None:
    broken = AgentSpec(
        "broken", {"work": 1.0}, persistent("--crash-on-start"), min_instances=1,
        max_instances=1,
    )  # fmt: skip
    good = pool_spec("good", n=1)
    tasks = [AgentTask(f"t{i}", "work", input={"seconds": 0.05}) for i in range(4)]
    async with Orchestrator([broken, good], config()) as orch:
        batch = await asyncio.wait_for(orch.execute_batch(tasks), 30.0)
    assert batch.ok
    assert {a.agent for r in batch.results for a in r.attempts} == {"good"}
    lost = [d for d in batch.decisions if isinstance(d, TerminateAgent) and d.spec == "broken"]
    assert lost
    assert "missing configuration" in lost[0].reason or "heartbeat" in lost[0].reason, lost[0]


async def test_tasks_wait_with_a_reason_while_no_agent_can_serve_them() -> None:
    runner = persistent()
    spec = pool_spec(n=1, runner=runner)
    health = HealthPolicy(
        heartbeat_interval_s=0.2, heartbeat_timeout_s=0.5, restart_backoff_s=1.0,
        restart_jitter=0.0,
    )  # fmt: skip
    async with Orchestrator([spec], config(health=health)) as orch:
        first = await orch.submit([AgentTask("a", "work", input={"seconds": 0.05})])
        await first.result()
        (iid,) = orch.scheduler.agents
        pid = runner.pid(iid)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: iid not in orch.scheduler.agents, timeout_s=STATE_S)
        handle = await orch.submit([AgentTask(f"b{i}", "work") for i in range(3)])
        await wait_until(lambda: bool(orch.scheduler.queue_depth()), timeout_s=STATE_S)
        reasons = orch.scheduler.waiting_reasons()
        assert reasons == {"work": "3 tasks wait: no live agent offers 'work' (none registered)"}
        batch = await asyncio.wait_for(handle.result(), 10.0)
    assert batch.ok  # they waited for the restart instead of failing


async def test_idle_instances_are_retired_and_their_processes_stopped() -> None:
    runner = persistent()
    spec = pool_spec(n=1, hi=4, runner=runner)
    pool = PoolPolicy(spawn_threshold=1, idle_timeout_s=0.5, cooldown_s=0.1)
    tasks = [AgentTask(f"t{i}", "work", input={"seconds": 0.3}) for i in range(10)]
    async with Orchestrator([spec], config(pool=pool)) as orch:
        batch = await asyncio.wait_for(orch.execute_batch(tasks), 30.0)
        grown = [d for d in batch.decisions if d.type == "scale_resources"]
        assert grown
        assert max(d.to_n for d in grown) > 1  # type: ignore[attr-defined]
        pids = {iid: runner.pid(iid) for iid in orch.scheduler.agents}
        # back to min_instances
        await wait_until(lambda: len(orch.scheduler.agents) == 1, timeout_s=STATE_S)
        retired = [iid for iid in pids if iid not in orch.scheduler.agents]
        assert retired
        await wait_until(
            lambda: all(not alive(p) for i, p in pids.items() if i in retired and p),
            timeout_s=STATE_S,
        )
    assert batch.ok
    per_agent = batch.agents
    assert set(per_agent) >= {a.agent_instance for r in batch.results for a in r.attempts}
    for fig in per_agent.values():
        assert 0.0 <= fig["utilisation"] <= 1.0
        assert fig["busy_s"] <= fig["available_s"] + 1e-6


async def test_a_finished_run_can_be_forgotten_an_open_one_cannot() -> None:
    gate = asyncio.Event()

    async def work(c: AttemptContext) -> str:
        if c.task.id == "b":
            await gate.wait()
        return c.task.id

    spec = pool_spec(n=1, runner=FunctionRunner(work))
    async with Orchestrator([spec], config()) as orch:
        done = await orch.submit([AgentTask("a", "work")])
        await done.result()
        blocked = await orch.submit([AgentTask("b", "work")])
        await wait_until(lambda: orch.scheduler.running == 1, timeout_s=STATE_S)
        with pytest.raises(WorkflowError, match="still has 1 open tasks"):
            orch.forget(blocked.run_id)
        orch.forget(done.run_id)
        assert done.run_id not in orch.scheduler.runs
        await blocked.cancel()


# --- the CLI --------------------------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "metaagent.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_refuses_a_workflow_over_the_queue_bound(tmp_path: Path) -> None:
    wf = ROOT / "examples" / "pool" / "workflow.yaml"
    done = cli("run", str(wf), "-q", "--no-journal", "--max-queued", "10", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "queue full" in done.stderr
    assert "the bound is 10" in done.stderr
    assert "a batch of 40 was refused" in done.stderr


def test_cli_run_json_has_utilisation_per_agent_and_instances(tmp_path: Path) -> None:
    wf = ROOT / "examples" / "pool" / "workflow.yaml"
    report = tmp_path / "report.json"
    done = cli(
        "run", str(wf), "-q", "--no-journal", "--json", str(report), "--spawn-threshold", "3",
        "--idle-timeout", "30", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "utilisation" in done.stdout
    data = json.loads(report.read_text())
    assert 0.0 < data["utilisation"] <= 1.0
    agents = data["agents"]
    assert len(agents) > 1  # the pool grew past its single starting instance
    for fig in agents.values():
        assert set(fig) >= {"busy_s", "available_s", "utilisation", "slots"}
    for task in data["tasks"]:
        assert task["agent_instance"] == task["attempts"][-1]["agent_instance"]
        assert task["agent_instance"] in agents
    kinds = {d["type"] for d in data["decisions"]}
    assert {"spawn_agent", "scale_resources", "route_task"} <= kinds
    scale = next(d for d in data["decisions"] if d["type"] == "scale_resources")
    assert "> spawn threshold 3" in scale["reason"]  # the CLI's flag beat the file's 5
