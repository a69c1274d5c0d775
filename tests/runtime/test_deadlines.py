"""One loop timer for every attempt's time limit: expiry cancels exactly the late ones, early
ends are dropped, and the heap stays about as large as what is running (virtual time)."""

from __future__ import annotations

import asyncio

from metaagent.backends.deadlines import Deadlines
from metaagent.clock import ManualClock
from metaagent.runtime.virtual import run_virtual


def test_only_the_attempts_past_their_limit_are_cancelled() -> None:
    clock = ManualClock()
    deadlines = Deadlines()
    ended: dict[str, str] = {}

    async def attempt(name: str, work_s: float, limit_s: float) -> None:
        this = asyncio.current_task()
        assert this is not None
        limit = deadlines.arm(asyncio.get_running_loop(), limit_s, this)
        try:
            await asyncio.sleep(work_s)
            ended[name] = "done"
        except asyncio.CancelledError:
            assert limit.expired
            this.uncancel()
            ended[name] = f"timeout at {clock.now():g}"
        finally:
            deadlines.disarm(limit)

    async def main() -> None:
        await asyncio.gather(
            attempt("quick", 1.0, 10.0), attempt("slow", 30.0, 10.0),
            attempt("late", 50.0, 40.0), attempt("exact", 5.0, 6.0),
        )  # fmt: skip

    run_virtual(main(), clock=clock)
    assert ended == {
        "quick": "done", "exact": "done", "slow": "timeout at 10", "late": "timeout at 40",
    }  # fmt: skip
    assert len(deadlines) == 0


def test_limits_that_end_early_do_not_pile_up() -> None:
    deadlines = Deadlines()

    async def main() -> int:
        loop = asyncio.get_running_loop()
        this = asyncio.current_task()
        assert this is not None
        biggest = 0
        for _ in range(10_000):
            limit = deadlines.arm(loop, 3600.0, this)
            deadlines.disarm(limit)
            biggest = max(biggest, len(deadlines._heap))
        deadlines.close()
        return biggest

    assert run_virtual(main()) <= 200  # compacted as it goes, not 10,000 entries for an hour
