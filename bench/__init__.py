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
}
"""Benchmarks by name; modules are imported only when their benchmark is chosen."""

__all__ = ["BENCHMARKS", "BenchMain"]
