"""The repeats learning counts (``core.routing.repeat``) are kept across runs in ``stats``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaagent.core.learning import ArmStats, Learning
from metaagent.journal.memory import MemoryJournal
from metaagent.journal.sqlite import SqliteJournal

if TYPE_CHECKING:
    from pathlib import Path


def test_repeats_survive_a_reopen_and_feed_the_next_runs_factor(tmp_path: Path) -> None:
    arm = ArmStats(7, 3, 10, 2.5, repeats=4, repeat_successes=1, repeat_expected=3.2)
    path = tmp_path / "j.db"
    journal = SqliteJournal(path)
    journal.save_stats([("alpha", "code", arm)])
    journal.flush()
    journal.close()
    again = SqliteJournal(path)
    loaded = again.load_stats()
    again.close()
    assert loaded == [("alpha", "code", arm)]
    mem = MemoryJournal()
    mem.save_stats([("alpha", "code", arm)])
    assert mem.load_stats() == loaded
    learning = Learning()
    for spec, cap, stats in loaded:
        learning.load(spec, cap, stats)
    pool = (1 + 2 * 0.5) / (3.2 + 2)
    assert learning.repeat_factor("alpha", "code") == ((1 + 2 * pool) / (3.2 + 2), 4)
