"""Journals: where runs are recorded so that nothing is lost and a run can resume."""

from metaagent.journal.base import (
    DeferredPart,
    Durability,
    Journal,
    JournalError,
    RunInfo,
    StoredResult,
    StoredRun,
)
from metaagent.journal.memory import MemoryJournal
from metaagent.journal.migrations import MIGRATIONS, SCHEMA_VERSION
from metaagent.journal.sqlite import DEFAULT_PATH, SqliteJournal

__all__ = [
    "DEFAULT_PATH",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "DeferredPart",
    "Durability",
    "Journal",
    "JournalError",
    "MemoryJournal",
    "RunInfo",
    "SqliteJournal",
    "StoredResult",
    "StoredRun",
]
