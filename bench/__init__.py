"""metaagent's benchmark suite: ``python -m bench NAME [options]``, ``python -m bench --list``.

Every benchmark measures the engine against a baseline taken in the same run, prints a table,
and ends its output with one line of JSON holding every figure and whether each target was met.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

BenchMain = Callable[[Sequence[str] | None], dict[str, object]]
"""A benchmark's entry point: parse ``argv``, run, print, and return the figures it printed."""


def _scwt(argv: Sequence[str] | None) -> dict[str, object]:
    from bench import scwt

    return scwt.main(argv)


def _throughput(argv: Sequence[str] | None) -> dict[str, object]:
    from bench import throughput

    return throughput.main(argv)


def _routing(argv: Sequence[str] | None) -> dict[str, object]:
    from bench import routing

    return routing.main(argv)


def _durable(argv: Sequence[str] | None) -> dict[str, object]:
    from bench import durable

    return durable.main(argv)


def _recovery(argv: Sequence[str] | None) -> dict[str, object]:
    from bench import recovery

    return recovery.main(argv)


def _scaling(argv: Sequence[str] | None) -> dict[str, object]:
    from bench import scaling

    return scaling.main(argv)


def _failover(argv: Sequence[str] | None) -> dict[str, object]:
    from bench import failover

    return failover.main(argv)


def _overload(argv: Sequence[str] | None) -> dict[str, object]:
    from bench import overload

    return overload.main(argv)


def _learning(argv: Sequence[str] | None) -> dict[str, object]:
    from bench import learning

    return learning.main(argv)


def _makespan(argv: Sequence[str] | None) -> dict[str, object]:
    from bench import makespan

    return makespan.main(argv)


def _affinity(argv: Sequence[str] | None) -> dict[str, object]:
    from bench import affinity

    return affinity.main(argv)


def _contention(argv: Sequence[str] | None) -> dict[str, object]:
    from bench import contention

    return contention.main(argv)


def _ray(argv: Sequence[str] | None) -> dict[str, object]:
    from bench import ray_backend

    return ray_backend.main(argv)


def _worktrees(argv: Sequence[str] | None) -> dict[str, object]:
    from bench import worktrees

    return worktrees.main(argv)


def _dashboard(argv: Sequence[str] | None) -> dict[str, object]:
    from bench import dashboard

    return dashboard.main(argv)


def _service(argv: Sequence[str] | None) -> dict[str, object]:
    from bench import service

    return service.main(argv)


def _mcp(argv: Sequence[str] | None) -> dict[str, object]:
    from bench import mcp

    return mcp.main(argv)


def _hetero(argv: Sequence[str] | None) -> dict[str, object]:
    from bench import hetero

    return hetero.main(argv)


def _fairness(argv: Sequence[str] | None) -> dict[str, object]:
    from bench import fairness

    return fairness.main(argv)


def _cost(argv: Sequence[str] | None) -> dict[str, object]:
    from bench import cost

    return cost.main(argv)


BENCHMARKS: dict[str, tuple[BenchMain, str]] = {
    "scwt": (
        _scwt,
        "SCWT Phase 2 workload: six LLM-bound agent processes, sequential vs metaagent",
    ),
    "throughput": (
        _throughput,
        "no-op tasks per second through the whole path vs bare asyncio.gather",
    ),
    "routing": (
        _routing,
        "p50/p99 latency of one routing decision at 50/1,000 agents x 1,000/100,000 queued",
    ),
    "durable": (
        _durable,
        "no-op tasks per second with the SQLite journal vs in-memory journal vs asyncio.gather",
    ),
    "recovery": (
        _recovery,
        "process start to first dispatch after a crash, 10,000 and 100,000 tasks journaled",
    ),
    "scaling": (
        _scaling,
        "elastic pool on a bursty workload: agents over time, utilisation at peak (virtual time)",
    ),
    "failover": (
        _failover,
        "100 SIGKILLs of agent processes mid-task: kill to re-routed start, p50/p99",
    ),
    "overload": (
        _overload,
        "submissions at 10x capacity for 30 s: peak RSS, nothing accepted lost, priority waits",
    ),
    "learning": (
        _learning,
        "learned routing vs random/round-robin/least-loaded/fixed weights/oracle (simulator)",
    ),
    "makespan": (
        _makespan,
        "random DAGs: makespan vs max(critical path, work/slots) for FIFO/priority/critical path",
    ),
    "affinity": (
        _affinity,
        "agent switches and dispatches per task of task groups, with and without affinity",
    ),
    "contention": (
        _contention,
        "heartbeat and timeout lateness while another writer locks the journal for 3 s",
    ),
    "ray": (
        _ray,
        "Ray backend: no-op throughput vs plain Ray actor calls, SCWT makespan vs local, start-up",
    ),
    "worktrees": (
        _worktrees,
        "git worktree creation + merge per coding task on a 10,000-file repository",
    ),
    "dashboard": (
        _dashboard,
        "dashboard first render of a 5,000-task run in Chromium (serve vs the HTML report)",
    ),
    "service": (
        _service,
        "metaagent serve: 10,000-task submit ack, WebSocket fan-out to 100 clients, idle RSS",
    ),
    "mcp": (
        _mcp,
        "MCP tool calls vs the REST call (in memory, stdio), big submit, wait_run's return lag",
    ),
    "hetero": (
        _hetero,
        "heterogeneous pools, scarce agents: makespan vs bound, searched reference, old router",
    ),
    "fairness": (
        _fairness,
        "a 5-task run submitted after a 100,000-task run: its makespan against alone",
    ),
    "cost": (
        _cost,
        "cost-aware routing (cheapest meeting a success target) vs always-strong, simulated",
    ),
}
"""Benchmarks by name; modules are imported only when their benchmark is chosen."""

__all__ = ["BENCHMARKS", "BenchMain"]
