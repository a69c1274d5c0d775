"""Leftovers of a dead orchestrator: the processes its agents started, stopped by the next.

An orchestrator killed with ``kill -9`` cannot stop what its attempts started. The leaders of
attempts' process groups die with it (they are started with a parent-death signal), but what
those started in turn (a ``sleep`` in the background, a server, a build) lives on, its parent
now init. Every process metaagent starts carries the starting process's pid in
``METAAGENT_SPAWNER`` (``agents.process.spawn_env``), and children inherit it.

So, before an orchestrator dispatches anything on a journal, it looks at the journal's leases:
one whose owner ran on this node (same boot, same pid namespace) and is no longer alive names
a dead orchestrator. Every process whose environment carries that pid as its spawner is
killed (SIGKILL), repeated until none is left (a process may fork meanwhile). Pid reuse
cannot make this kill an innocent process: a process is reaped only when no process with the
dead owner's pid exists now, so whatever carries that pid as its spawner was started by a
process that is dead. A process that scrubbed its environment escapes; one that runs as
another user cannot be read and is left alone (named in what is returned, not killed).
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from metaagent.agents.process import SPAWNER_ENV
from metaagent.journal.leases import this_node

if TYPE_CHECKING:
    from metaagent.journal.base import Journal

__all__ = ["Reaped", "dead_spawners", "reap_leftovers"]

_PROC = Path("/proc")
_ROUNDS = 5


@dataclass(slots=True)
class Reaped:
    """What a reaping found: the dead owners' pids and the processes killed."""

    spawners: list[int] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)

    def describe(self) -> str:
        owners = ", ".join(str(p) for p in self.spawners)
        return (
            f"stopped {len(self.killed)} process{'es' if len(self.killed) != 1 else ''} left "
            f"running by a dead orchestrator (pid {owners})"
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def dead_spawners(journal: Journal) -> list[int]:
    """Pids of the journal's lease owners that ran on this node and are gone."""
    node = this_node()
    pids = {lease.owner.pid for lease in journal.leases() if lease.owner.node == node}
    return sorted(p for p in pids if p != os.getpid() and not _alive(p))


def _tagged(spawners: set[int]) -> list[int]:
    """Processes whose environment names one of ``spawners`` as the process that started it."""
    wanted = {f"{SPAWNER_ENV}={p}".encode() for p in spawners}
    me = os.getpid()
    found: list[int] = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone, or not ours to read
        if any(var in wanted for var in env.split(b"\0")):
            found.append(int(entry.name))
    return found


def reap_leftovers(journal: Journal) -> Reaped:
    """Kill what dead orchestrators of this journal left running on this node."""
    reaped = Reaped(dead_spawners(journal))
    if not reaped.spawners or not _PROC.is_dir():
        return reaped
    spawners = set(reaped.spawners)
    for _ in range(_ROUNDS):
        pids = _tagged(spawners)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                reaped.killed.append(pid)
    reaped.killed = sorted(set(reaped.killed))
    return reaped
