"""Run leases: the one process that executes a run holds its lease in the journal.

A lease names its owner (a random id per orchestrator, its pid, host and node), when it was taken
and when it expires. The owner renews it every ``LEASE_RENEW_S`` seconds and every flush renews
it too; another process may take a run over only once its lease has expired (``LEASE_TTL_S``
after the last renewal) or its owner is known to be dead (same node, no such process). Times
are wall-clock seconds since the epoch: leases are compared across processes.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Final

from metaagent.errors import RunOwned

LEASE_RENEW_S: Final = 2.0
"""How often the owner of a run renews its lease (seconds)."""

LEASE_TTL_S: Final = 3 * LEASE_RENEW_S
"""How long a lease lasts after its last renewal (seconds): three renewals may be missed."""


@cache
def this_node() -> str:
    """Where a pid names a process: the machine's boot and this process's pid namespace.

    Two leases on the same node with the same pid are the same process (pids are not reused
    while it lives), so a lease whose pid is gone from this node is dead at once.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
        pidns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return f"host:{socket.gethostname()}"  # no /proc: the pid check is by host name
    return f"{boot}:{pidns}"


@dataclass(frozen=True, slots=True)
class Owner:
    """The process that holds leases: a random id per orchestrator, with where it runs."""

    id: str
    pid: int
    host: str
    node: str

    @classmethod
    def here(cls) -> Owner:
        """A new owner id for this process."""
        return cls(uuid.uuid4().hex[:12], os.getpid(), socket.gethostname(), this_node())

    def describe(self) -> str:
        return f"owner {self.id} (pid {self.pid} on {self.host})"


@dataclass(frozen=True, slots=True)
class Lease:
    """A run's lease as the journal holds it (wall-clock times)."""

    run_id: str
    owner: Owner
    since: float
    heartbeat_at: float
    expires_at: float

    def live(self, now: float) -> bool:
        """Whether this lease still bars others from the run at wall time ``now``: it has not
        expired, and its owner is not known to be dead."""
        return now < self.expires_at and not _dead(self.owner)

    def describe(self, now: float) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return (
            f"{self.owner.describe()} since {since}, last heartbeat "
            f"{max(0.0, now - self.heartbeat_at):.1f} s ago"
        )


def refuse(lease: Lease, now: float) -> RunOwned:
    """The error for a run whose live lease another owner holds."""
    left = max(0.0, lease.expires_at - now)
    return RunOwned(
        f"run {lease.run_id!r} is being executed by another process: {lease.describe(now)}; "
        f"it can be taken over only if that process stops (its lease expires in {left:.1f} s "
        "without a heartbeat)",
        run_id=lease.run_id,
        owner=lease.owner.describe(),
    )


def lost_message(run_id: str, lease: Lease | None, now: float) -> str:
    """Why a stale owner may not write a run any more."""
    if lease is None:
        return f"run {run_id!r} is not leased by this process (never acquired here, or released)"
    return (
        f"run {run_id!r} was taken over by {lease.describe(now)}: this process lost its "
        "lease and wrote nothing more of it"
    )


def _dead(owner: Owner) -> bool:
    """Whether the owner is known to be gone: on this node, and no process has its pid.

    Off this node nothing is known (wait for the lease to expire); a zombie is dead.
    """
    if owner.node != this_node() or owner.pid == os.getpid():
        return False
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # a process of another user has that pid
    try:
        with open(f"/proc/{owner.pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False
