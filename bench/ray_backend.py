"""The Ray backend against plain Ray and against the local backend.

- **No-op throughput**: tasks per second through metaagent on Ray (every attempt an actor call,
  routed, journaled in memory, reported), through plain Ray actor calls with the same number of
  actors and the same number of calls in flight, and through metaagent's local backend.
  Target: metaagent on Ray at >= 50% of plain Ray.
- **SCWT-shaped makespan** (``bench/scwt.py``'s six agent processes and their DAG, at
  ``--time-scale``) on the Ray backend and on the local backend, each on a warm pool (the
  second of two batches; actor start-up is its own figure). Target: within 2% of local.
- **Actor start-up** (creation to first answer) and **memory per instance** (RSS of the actor's
  worker process), beside an empty Ray actor's.

Without ``--address`` it starts a local cluster (a head and two workers), and, run as root, it
first re-runs itself in a private network namespace that has only ``lo`` (every Ray process on
loopback). With ``--address HOST:PORT`` it uses that cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import scwt
from bench._table import print_json, print_table, stamp
from metaagent import AgentSpec, AgentTask, Orchestrator, OrchestratorConfig
from metaagent.testing import echo_runner

if TYPE_CHECKING:
    from collections.abc import Sequence

INSIDE = "METAAGENT_BENCH_NETNS"
TARGET_SHARE = 0.5
TARGET_SCWT_RATIO = 1.02
ROOT = Path(__file__).resolve().parent.parent


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        return None
    return None


def _plain_actor_class() -> Any:
    import ray

    class Plain:  # defined here, so Ray ships it by value: workers need not import bench
        async def call(self, x: object) -> object:
            return x

        def pid(self) -> int:
            return os.getpid()

    return ray.remote(Plain)


async def plain_ray(actors: int, in_flight: int, calls: int) -> float:
    """Calls per second of plain Ray actor calls, ``in_flight`` at once over ``actors``."""
    cls = _plain_actor_class()
    handles = [cls.options(num_cpus=0).remote() for _ in range(actors)]
    await asyncio.gather(*(h.call.remote(0) for h in handles))
    next_call = iter(range(calls))

    async def lane(k: int) -> None:
        for i in next_call:
            await handles[(k + i) % actors].call.remote(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(lane(k) for k in range(in_flight)))
    rate = calls / (time.perf_counter() - t0)
    import ray

    for h in handles:
        ray.kill(h)
    return rate


async def metaagent_noop(backend: str, actors: int, concurrency: int, calls: int,
                         repeat: int) -> list[float]:  # fmt: skip
    """Tasks per second of ``repeat`` no-op batches on a warm pool of ``actors`` instances."""
    spec = AgentSpec("noop", {"noop": 1.0}, echo_runner(), concurrency=concurrency,
                     min_instances=actors, max_instances=actors)  # fmt: skip
    config = OrchestratorConfig(backend=backend, max_concurrency=actors * concurrency,
                                max_queued=calls)  # fmt: skip
    rates = []
    async with Orchestrator([spec], config) as orch:
        warm = [AgentTask(id=f"w{i}", capability="noop") for i in range(actors * concurrency)]
        assert (await orch.execute_batch(warm)).ok
        for r in range(repeat):
            tasks = [AgentTask(id=f"r{r}-{i}", capability="noop") for i in range(calls)]
            t0 = time.perf_counter()
            batch = await orch.execute_batch(tasks)
            rates.append(calls / (time.perf_counter() - t0))
            assert batch.ok
            orch.forget(batch.run_id or "")
    return rates


WARM_SCALE = 0.01  # the warm-up batch: the same DAG with 0.15-0.3 s responses


async def scwt_makespan(backend: str, scale: float, workdir: Path) -> float:
    """Wall time of the SCWT batch on a warm pool (after a short batch that starts it)."""
    config = OrchestratorConfig(backend=backend, max_concurrency=16, workdir=str(workdir))
    async with Orchestrator(scwt.agents(), config) as orch:
        for round_, at in (("warm", WARM_SCALE), ("timed", scale)):
            tasks = [scwt.agent_task(t, at) for t in scwt.TASKS]
            tasks = [replace(t, id=f"{round_}-{t.id}",
                             depends_on=tuple(f"{round_}-{d}" for d in t.depends_on))
                     for t in tasks]  # fmt: skip
            t0 = time.perf_counter()
            batch = await orch.execute_batch(tasks, name=f"scwt-{round_}")
            wall = time.perf_counter() - t0
            assert batch.ok, [(r.task_id, r.error) for r in batch.results if not r.ok]
    return wall


def _runs(walls: list[float]) -> str:
    return ", ".join(f"{w:.2f}" for w in walls)


def startup(count: int) -> dict[str, float | None]:
    """Mean seconds from creating an actor to its first answer, and the RSS of its worker, for
    metaagent's instance actor and for an empty Ray actor; ``count`` of each, started at once."""
    import ray

    from metaagent.backends.ray.actor import InstanceActor
    from metaagent.core.health import HealthPolicy

    spec = AgentSpec("noop", {"noop": 1.0}, echo_runner())
    out: dict[str, float | None] = {}
    ours: Any = ray.remote(InstanceActor)
    plain = _plain_actor_class()
    for kind in ("metaagent", "plain"):
        t0 = time.perf_counter()
        if kind == "metaagent":
            handles = [ours.options(num_cpus=0).remote(spec, f"s{i}", ".", HealthPolicy(), {})
                       for i in range(count)]  # fmt: skip
        else:
            handles = [plain.options(num_cpus=0).remote() for _ in range(count)]
        if kind == "metaagent":
            infos = ray.get([h.start.remote() for h in handles])
            pids = [int(i["pid"]) for i in infos]
        else:
            pids = ray.get([h.pid.remote() for h in handles])
        wall = time.perf_counter() - t0
        out[f"{kind}_all_s"] = wall
        out[f"{kind}_start_s"] = wall / count
        rss = [m for m in (_rss_mb(p) for p in pids) if m is not None]
        out[f"{kind}_rss_mb"] = statistics.mean(rss) if rss else None
        for h in handles:
            ray.kill(h)
    return out


def _start_cluster() -> Any:
    import ray
    from ray.cluster_utils import Cluster

    # The workers import bench (for scwt's agent script path) and metaagent from this tree.
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False}
    )
    for _ in range(2):
        cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    addresses = {n["NodeManagerAddress"] for n in ray.nodes()}  # type: ignore[no-untyped-call]
    if addresses != {"127.0.0.1"}:
        raise SystemExit(f"the bench cluster is not on loopback only: {sorted(addresses)}")
    return cluster


def _reexec(argv: Sequence[str]) -> dict[str, object]:
    """Run this benchmark again inside a private network namespace (only ``lo``)."""
    script = 'ip link set lo up && exec "$0" -m bench ray "$@"'
    env = {**os.environ, INSIDE: "1"}
    command = ["unshare", "-n", "sh", "-c", script, sys.executable, *argv]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    sys.stdout.write(done.stdout)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(done.returncode)
    import json

    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m bench ray", description=__doc__)
    parser.add_argument("--address", help="an existing cluster's HOST:PORT (default: start one)")
    parser.add_argument("--tasks", type=int, default=2000, help="no-op tasks per batch (2000)")
    parser.add_argument("--actors", type=int, default=4, help="actors / instances (4)")
    parser.add_argument("--concurrency", type=int, default=4, help="calls in flight per actor")
    parser.add_argument("--repeat", type=int, default=3, help="no-op batches per path (3)")
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="SCWT response times (15-30 s) times this (1.0)")  # fmt: skip
    parser.add_argument(
        "--scwt-rounds",
        type=int,
        default=2,
        help="SCWT batches per backend, alternating; the median counts (2)",
    )
    parser.add_argument("--startup", type=int, default=8, help="actors started for start-up")
    args = parser.parse_args(argv)
    inside = os.environ.get(INSIDE) == "1"
    can_unshare = os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip")
    if args.address is None and not inside and can_unshare:
        return _reexec(list(argv or []))
    import ray

    cluster = None
    if args.address is None and not ray.is_initialized():
        cluster = _start_cluster()
    elif not ray.is_initialized():
        ray.init(address=args.address, log_to_driver=False)
    try:
        return _run(args)
    finally:
        if cluster is not None:
            ray.shutdown()
            cluster.shutdown()


def _run(args: argparse.Namespace) -> dict[str, object]:
    n, a, c, rep = args.tasks, args.actors, args.concurrency, args.repeat
    plain = [asyncio.run(plain_ray(a, a * c, n)) for _ in range(rep)]
    on_ray = asyncio.run(metaagent_noop("ray", a, c, n, rep))
    local = asyncio.run(metaagent_noop("local", a, c, n, rep))
    share = statistics.median(on_ray) / statistics.median(plain)
    walls: dict[str, list[float]] = {"local": [], "ray": []}
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        for i in range(args.scwt_rounds):  # alternating, so that both see the same machine
            for backend in walls:
                where = Path(tmp) / f"{backend}-{i}"
                where.mkdir()
                walls[backend].append(asyncio.run(scwt_makespan(backend, args.time_scale, where)))
    scwt_local, scwt_ray = statistics.median(walls["local"]), statistics.median(walls["ray"])
    ratio = scwt_ray / scwt_local
    up = startup(args.startup)
    print(f"Ray backend: {a} actors x {c} slots, {n} no-op tasks per batch, best of {rep}")
    print_table(
        "No-op throughput (tasks/s, median of the batches)",
        ["path", "median", "best", "share of plain Ray", "target", "met"],
        [
            ["plain Ray actor calls", statistics.median(plain), max(plain), 1.0, None, None],
            ["metaagent on Ray", statistics.median(on_ray), max(on_ray), share,
             f">= {TARGET_SHARE:g}", share >= TARGET_SHARE],
            ["metaagent local backend", statistics.median(local), max(local), None, None, None],
        ],
    )  # fmt: skip
    print_table(
        f"SCWT-shaped makespan (s), time-scale {args.time_scale:g}, warm pools, median of "
        f"{args.scwt_rounds}",
        ["backend", "makespan", "runs", "ratio to local", "target", "met"],
        [
            ["local", scwt_local, _runs(walls["local"]), 1.0, None, None],
            [
                "ray",
                scwt_ray,
                _runs(walls["ray"]),
                ratio,
                f"<= {TARGET_SCWT_RATIO:g}",
                ratio <= TARGET_SCWT_RATIO,
            ],
        ],
    )
    print_table(
        f"Actor start-up and memory ({args.startup} actors started at once)",
        ["actor", "all ready after (s)", "per actor (s)", "worker RSS (MB)"],
        [
            [
                "metaagent instance",
                up["metaagent_all_s"],
                up["metaagent_start_s"],
                up["metaagent_rss_mb"],
            ],
            ["empty Ray actor", up["plain_all_s"], up["plain_start_s"], up["plain_rss_mb"]],
        ],
    )
    result: dict[str, object] = {
        "bench": "ray",
        "date": stamp(),
        "tasks": n,
        "actors": a,
        "concurrency": c,
        "plain_ray_median_per_s": statistics.median(plain),
        "ray_median_per_s": statistics.median(on_ray),
        "local_median_per_s": statistics.median(local),
        "share_of_plain_ray": share,
        "scwt_time_scale": args.time_scale,
        "scwt_local_s": scwt_local,
        "scwt_ray_s": scwt_ray,
        "scwt_local_runs_s": walls["local"],
        "scwt_ray_runs_s": walls["ray"],
        "scwt_ratio": ratio,
        **up,
        "targets": {
            "share_of_plain_ray": {
                "target": f">= {TARGET_SHARE:g} of plain Ray's rate (median against median)",
                "value": round(share, 4),
                "target_met": share >= TARGET_SHARE,
            },
            "scwt_makespan_ratio": {
                "target": f"<= {TARGET_SCWT_RATIO:g} of the local backend's makespan",
                "value": round(ratio, 4),
                "target_met": ratio <= TARGET_SCWT_RATIO,
            },
        },
    }
    print_json(result)
    return result
