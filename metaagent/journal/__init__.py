"""Journals: where runs are recorded so that nothing is lost and a run can resume."""

from metaagent.journal.base import (
    DeferredPart,
    Durability,
    Journal,
    JournalError,
    KnownRun,
    RunInfo,
    StoredResult,
    StoredRun,
)
from metaagent.journal.leases import LEASE_RENEW_S, LEASE_TTL_S, Lease, Owner
from metaagent.journal.memory import MemoryJournal
from metaagent.journal.migrations import MIGRATIONS, SCHEMA_VERSION
from metaagent.journal.sqlite import DEFAULT_PATH, SqliteJournal

__all__ = [
    "DEFAULT_PATH",
    "LEASE_RENEW_S",
    "LEASE_TTL_S",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "DeferredPart",
    "Durability",
    "Journal",
    "JournalError",
    "KnownRun",
    "Lease",
    "MemoryJournal",
    "Owner",
    "RunInfo",
    "SqliteJournal",
    "StoredResult",
    "StoredRun",
]
