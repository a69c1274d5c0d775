"""Stopping an orchestrator in order on SIGTERM or SIGINT, for the command line and services.

``async with stop_on_signals(orch):`` around the code that drives a run: on the first signal the
body is cancelled, every attempt in flight is recorded as ``lost`` in the journal (so a resumed
run routes it again, uncharged), the orchestrator is closed (attempts stopped, their process
groups killed, agent instances shut down, the journal committed, leases given up), what happened
and how to resume is printed, and the process exits 128 + the signal's number (143 for SIGTERM,
130 for SIGINT). A second signal while stopping kills every process group started here and exits
at once: the journal is crash-safe, so a forced exit loses nothing that was committed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
from typing import TYPE_CHECKING, TextIO

from metaagent.agents.process import kill_all_groups
from metaagent.core.tasks import Outcome, TaskState
from metaagent.journal.null import NullJournal

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from metaagent.runtime.orchestrator import Orchestrator

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)
RESUME_HINT = "metaagent resume {run_id}"


def exit_code(sig: signal.Signals) -> int:
    """The shell's exit status for death by ``sig``: 128 + its number (SIGTERM 143, SIGINT 130)."""
    return 128 + int(sig)


class StopOnSignals:
    """The async context manager of ``stop_on_signals``; ``received`` is the first signal caught
    (None while none was). With ``exit_process=False`` it does not raise ``SystemExit``: the body's
    cancellation is swallowed once the orchestrator is closed, and the caller reads ``received``.
    """

    __slots__ = (
        "_host",
        "_installed",
        "_loop",
        "_out",
        "_resume",
        "_signals",
        "exit_process",
        "lost",
        "orchestrator",
        "received",
    )

    def __init__(
        self,
        orchestrator: Orchestrator,
        *,
        out: TextIO | None = None,
        resume: str = RESUME_HINT,
        exit_process: bool = True,
        signals: Sequence[signal.Signals] = STOP_SIGNALS,
    ) -> None:
        self.orchestrator = orchestrator
        self.exit_process = exit_process
        self.received: signal.Signals | None = None
        self.lost = 0  # attempts recorded as lost by the stop
        self._out = out
        self._resume = resume
        self._signals = tuple(signals)
        self._installed: list[tuple[signal.Signals, object]] = []
        self._host: asyncio.Task[object] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> StopOnSignals:
        self._loop = asyncio.get_running_loop()
        self._host = asyncio.current_task()
        for sig in self._signals:
            previous = signal.getsignal(sig)
            self._loop.add_signal_handler(sig, self._caught, sig)
            self._installed.append((sig, previous))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        try:
            if self.received is None:
                return False
            if self._host is not None and isinstance(exc, asyncio.CancelledError):
                self._host.uncancel()  # our own cancel: the body stopped as asked
            await self._stop(self.received)
        finally:
            self._uninstall()
        if self.exit_process:
            raise SystemExit(exit_code(self.received))
        return exc is None or isinstance(exc, asyncio.CancelledError)

    # --- the signal and the stop --------------------------------------------------------------

    def _caught(self, sig: signal.Signals) -> None:
        if self.received is None:
            self.received = sig
            self._say(f"{sig.name}: stopping every attempt and the processes they started...")
            if self._host is not None:
                self._host.cancel()
            return
        # A second signal: the user (or the service manager) will not wait for the clean stop.
        groups = kill_all_groups()
        self._say(f"{sig.name} again: exiting now ({groups} process groups killed)")
        os._exit(exit_code(self.received))

    async def _stop(self, sig: signal.Signals) -> None:
        orch = self.orchestrator
        open_runs = [rid for rid, run in orch.scheduler.runs.items() if run.finished_at is None]
        self.lost = self._record_lost(sig)
        await orch.aclose()
        orch.journal.flush()  # already flushed by aclose, unless it had been closed before
        where = "" if self.lost == 1 else "s"
        self._say(f"stopped: {self.lost} attempt{where} in flight recorded as lost")
        if isinstance(orch.journal, NullJournal):
            if open_runs:
                self._say("the run was not journaled: it cannot be resumed")
            return
        for rid in open_runs:
            self._say("resume with: " + self._resume.format(run_id=rid))

    def _record_lost(self, sig: signal.Signals) -> int:
        return record_lost(
            self.orchestrator, f"the orchestrator was stopped by {sig.name} during this attempt"
        )

    def _uninstall(self) -> None:
        loop = self._loop
        for sig, previous in self._installed:
            if loop is not None:
                loop.remove_signal_handler(sig)
            if previous is not None:  # None: set outside Python, nothing to put back
                signal.signal(sig, previous)  # type: ignore[arg-type]
        self._installed.clear()

    def _say(self, message: str) -> None:
        out = self._out if self._out is not None else sys.stderr
        print(f"metaagent: {message}", file=out, flush=True)


def stop_on_signals(
    orchestrator: Orchestrator,
    *,
    out: TextIO | None = None,
    resume: str = RESUME_HINT,
    exit_process: bool = True,
) -> StopOnSignals:
    """Stop ``orchestrator`` in order on SIGTERM or SIGINT, then exit 143 or 130.

    ``out`` is where the messages go (standard error by default); ``resume`` is the command
    printed per unfinished run, with ``{run_id}`` in it (add ``--db PATH`` when the journal is
    not the default one). Only in the main thread of a process (signal handlers live there).
    """
    return StopOnSignals(orchestrator, out=out, resume=resume, exit_process=exit_process)


def record_lost(orch: Orchestrator, reason: str) -> int:
    """Journal every attempt in flight as lost, before the close commits the journal; how
    many. A copy is journaled: the scheduler's own records are not touched, and a run
    resumed from the journal routes these tasks again without charging the attempt."""
    now = orch.clock.now()
    count = 0
    for run in orch.scheduler.runs.values():
        if run.finished_at is not None:
            continue
        for rec in run.tasks.values():
            if rec.state is not TaskState.RUNNING or not rec.attempts:
                continue
            last = rec.attempts[-1]
            if last.finished_at is not None or last.number != rec.attempt:
                continue  # a decomposed task waiting on its sub-tasks, not an attempt
            ended = dataclasses.replace(
                last, finished_at=now - run.started_at, outcome=Outcome.LOST, error=reason
            )
            orch.journal.attempt_finished(run.id, rec.task.id, ended)
            count += 1
    return count
