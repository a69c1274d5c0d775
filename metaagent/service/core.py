"""The service's state: one long-lived orchestrator over the journal, its event log, and the
operations the API offers (submit, cancel, retry), each journaled before it is acknowledged.

Reads (reports, task details) go through a second journal connection in worker threads, so a
large report never stalls the loop that runs the attempts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from metaagent.errors import CapacityError, MetaAgentError, RunOwned, WorkflowError
from metaagent.journal.sqlite import SqliteJournal
from metaagent.runtime.journaled import open_retry, retry_plan
from metaagent.service.eventlog import EventLog
from metaagent.service.events import Announcer
from metaagent.service.pool import ServiceOrchestrator
from metaagent.service.store import ServiceRun, ServiceStore
from metaagent.workflow.build import load_workflow, parse_workflow, parse_workflow_text
from metaagent.workflow.identity import identity_change

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from metaagent.core.tasks import AgentTask
    from metaagent.journal.base import StoredRun
    from metaagent.runtime.config import OrchestratorConfig
    from metaagent.workflow.build import Workflow

__all__ = [
    "CapacityError", "Conflict", "NotFound", "RunOwned", "Service", "Submission", "Submitted",
]  # fmt: skip

_T = TypeVar("_T")


class NotFound(MetaAgentError, LookupError):
    """No such run (or task): 404."""


class Conflict(MetaAgentError, RuntimeError):
    """The run is not in a state that allows this (finished, unfinished, nothing to retry):
    409."""


@dataclasses.dataclass(frozen=True, slots=True)
class Submission:
    """A workflow as a client submitted it."""

    text: str  # YAML or JSON text of the workflow document
    is_json: bool
    idempotency_key: str | None = None
    priority: int = 0
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    doc: object = None  # the JSON document already parsed from ``text``, if it is one


class Submitted(NamedTuple):
    run_id: str
    state: str
    tasks: int
    created: bool  # False: the idempotency key's earlier run


def _unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in pairs:
        if k in out:
            raise WorkflowError(f"duplicate key {k!r}", where="<request>")
        out[k] = v
    return out


def loads_document(data: str | bytes) -> object:
    """A JSON document, duplicate keys refused; ``WorkflowError`` naming what is wrong."""
    try:
        return json.loads(data, object_pairs_hook=_unique)
    except RecursionError:
        raise WorkflowError("nested too deeply", where="<request>") from None
    except UnicodeDecodeError as exc:
        raise WorkflowError(f"not UTF-8 ({exc.reason})", where="<request>") from None
    except json.JSONDecodeError as exc:
        raise WorkflowError(
            f"invalid JSON: {exc.msg}", where=f"<request>:{exc.lineno}:{exc.colno}"
        ) from None


def _with_priority(tasks: list[AgentTask], priority: int) -> list[AgentTask]:
    if not priority:
        return tasks
    return [dataclasses.replace(t, priority=t.priority + priority) for t in tasks]


class Service:
    """What ``metaagent serve`` serves. ``start`` then ``aclose``, on one event loop."""

    def __init__(self, db: Path, config: OrchestratorConfig, *, durability: str = "normal") -> None:
        self.db = db
        self.config = config
        self.workdir = Path(config.workdir)
        self._here = str(self.workdir.resolve())
        self.journal = SqliteJournal(db, durability="full" if durability == "full" else "normal")
        self._side = SqliteJournal(db)  # reads and admin writes, in worker threads
        self._side_lock = threading.Lock()
        self.store = ServiceStore(db)
        self.events = EventLog(db.with_name(db.name + "-events"))
        self.orch = ServiceOrchestrator((), config, journal=self.journal)
        self.announce = Announcer(self.events, self.orch)
        self._submit_lock = asyncio.Lock()
        self.resumed: list[str] = []
        self.skipped: dict[str, str] = {}  # open runs not resumed, with why

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the event log, then resume every open run of the journal this server can."""
        await asyncio.to_thread(self.events.prune, self.db)
        self.events.start()
        await asyncio.to_thread(self.store.clear_orphans)
        for run_id, source, workdir in await asyncio.to_thread(self.store.open_runs):
            try:
                await self._resume(run_id, source, workdir)
            except (MetaAgentError, KeyError, OSError) as exc:
                self.skipped[run_id] = str(exc)
                print(f"metaagent serve: run {run_id} not resumed: {exc}", file=sys.stderr)

    async def _resume(self, run_id: str, source: str | None, workdir: str | None) -> None:
        wf = await self._workflow_of(run_id, source, workdir)
        self.orch.add_agents(wf.agents)
        listener = self.announce.listener(run_id, "resumed")
        handle = await self.orch.resume(run_id, on_event=listener)
        listener.announce(handle)
        self.resumed.append(run_id)

    async def _workflow_of(self, run_id: str, source: str | None, workdir: str | None) -> Workflow:
        """The workflow a run came from: its submitted document, or (a run the CLI started in
        this server's workdir) its file, unchanged since."""
        sub = await asyncio.to_thread(self.store.get, run_id)
        if sub is not None:
            return await asyncio.to_thread(self._parse, sub.text, sub.is_json)
        if source is None:
            raise WorkflowError(f"run {run_id!r} came from neither this server nor a file")
        here = self._here
        if workdir is not None and await asyncio.to_thread(os.path.realpath, workdir) != here:
            raise WorkflowError(f"run {run_id!r} works in {workdir}, not in this server's {here}")
        wf = await asyncio.to_thread(load_workflow, source)
        info = (await self.side(lambda j: j.load_run(run_id, decisions=False, lazy=True))).info

        def recorded() -> tuple[str, list[AgentTask]]:
            return info.name, self._side.load_run(run_id, decisions=False).tasks

        changed = await asyncio.to_thread(identity_change, info.key, wf, here, recorded)
        if changed is not None:
            raise WorkflowError(f"the workflow file {source} changed since ({changed})")
        return wf

    def _parse(self, text: str, is_json: bool, doc: object = None) -> Workflow:
        """A submitted workflow: YAML text through the workflow reader (budgets, duplicate
        keys), a JSON document (its duplicate keys refused when it was parsed) validated as
        it is."""
        base = Path(self._here)
        if not is_json:
            return parse_workflow_text(text, source="<request>", base_dir=base)
        if doc is None:
            doc = loads_document(text)
        return parse_workflow(doc, source="<request>", base_dir=base)

    async def aclose(self) -> None:
        """Stop every attempt (journaled lost: resumed at the next start), then the log."""
        from metaagent.runtime.signals import record_lost

        lost = record_lost(self.orch, "the server was stopped during this attempt")
        if lost:
            print(f"metaagent serve: {lost} attempts in flight recorded as lost; the next start "
                  "resumes their runs", file=sys.stderr, flush=True)  # fmt: skip
        try:
            await self.orch.aclose()
        finally:
            await asyncio.to_thread(self.events.close)
            self.store.close()
            with self._side_lock:
                self._side.close()
            self.journal.close()

    async def side(self, work: Callable[[SqliteJournal], _T]) -> _T:
        """``work`` on the reading connection, in a worker thread."""

        def call() -> _T:
            with self._side_lock:
                return work(self._side)

        return await asyncio.to_thread(call)

    # --- submitting ------------------------------------------------------------------------

    async def submit(self, sub: Submission) -> Submitted:
        """Validate, journal and start a run. ``WorkflowError`` (422), ``CapacityError``
        (429); the same idempotency key again: the earlier run."""
        wf = await asyncio.to_thread(self._parse, sub.text, sub.is_json, sub.doc)
        tasks = _with_priority(wf.tasks, sub.priority)
        async with self._submit_lock:
            key = sub.idempotency_key
            if key is not None:
                known = await asyncio.to_thread(self.store.by_key, key)
                if known is not None:
                    row = await asyncio.to_thread(self.store.row, known)
                    state = row.state if row is not None else "running"
                    return Submitted(known, state, row.tasks if row else len(tasks), False)
            self.orch.check_agents(wf.agents)
            run_id = f"run-{uuid.uuid4().hex[:10]}"
            record = ServiceRun(run_id, sub.text, sub.is_json, sub.priority, sub.labels, key)
            await asyncio.to_thread(self.store.add, record)  # first: a journaled run is resumable
            try:
                self.orch.add_agents(wf.agents)
                listener = self.announce.listener(
                    run_id, "submitted", name=wf.name, labels=sub.labels, priority=sub.priority
                )
                handle = await self.orch.submit(
                    tasks, name=wf.name, run_id=run_id, on_event=listener, priority=sub.priority
                )
            except BaseException:
                await asyncio.to_thread(self.store.drop, run_id)
                raise
            listener.announce(handle)
            return Submitted(run_id, "running", len(tasks), True)

    # --- cancel and retry ------------------------------------------------------------------

    async def cancel(self, run_id: str, task_ids: Sequence[str] | None) -> list[str] | None:
        """Cancel a run (or some tasks); applied at once when this server executes it, else
        through the journal by its owner. ``NotFound``, ``Conflict`` (finished)."""
        row = await asyncio.to_thread(self.store.row, run_id)
        if row is None:
            raise NotFound(f"no run {run_id!r}")
        if row.finished_at is not None:
            raise Conflict(f"run {run_id!r} has finished: nothing to cancel")
        states = self.orch.task_states(run_id) if run_id in self.orch.scheduler.runs else None
        if states is not None and self._runs_here(run_id):
            unknown = [t for t in task_ids or () if t not in states]
            if unknown:
                raise WorkflowError(f"run {run_id!r} has no task {unknown[0]!r}")
            await self.orch.cancel(run_id, task_ids)
        else:
            try:
                await self.side(lambda j: j.request_cancel(run_id, task_ids or None))
            except (KeyError, ValueError) as exc:
                raise WorkflowError(str(exc.args[0])) from None
        ids = None if task_ids is None else list(task_ids)
        self.announce.run_event(run_id, "cancel_requested", task_ids=ids)
        return ids

    def _runs_here(self, run_id: str) -> bool:
        return self.orch.executes(run_id)

    async def retry(self, run_id: str) -> dict[str, object]:
        """A new run of a finished run's workflow: the tasks that did not succeed (and what
        depends on them) run again, the others keep their results."""
        row = await asyncio.to_thread(self.store.row, run_id)
        if row is None:
            raise NotFound(f"no run {run_id!r}")
        if row.finished_at is None:
            raise Conflict(f"run {run_id!r} has not finished: cancel it, or wait")
        stored: StoredRun = await self.side(lambda j: j.load_run(run_id, decisions=False))
        wf = await self._workflow_of(run_id, stored.info.source, stored.info.workdir)
        sub = await asyncio.to_thread(self.store.get, run_id)
        priority = 0 if sub is None else sub.priority
        tasks = _with_priority(wf.tasks, priority)
        plan = retry_plan(stored, tasks)
        if not plan.rerun:
            raise Conflict(f"nothing to retry: every task of run {run_id} succeeded")
        new_id = f"run-{uuid.uuid4().hex[:10]}"
        if sub is not None:  # a run the CLI started resumes from its file, as the old one did
            new = ServiceRun(new_id, sub.text, sub.is_json, priority, sub.labels, None, run_id)
            await asyncio.to_thread(self.store.add, new)
        self.orch.add_agents(wf.agents)
        await self.side(
            lambda j: open_retry(
                j, new_id, wf.name, tasks, plan.kept, key=None, source=stored.info.source,
                workdir=self._here,
            )
        )  # fmt: skip
        listener = self.announce.listener(new_id, "resumed", retry_of=run_id)
        handle = await self.orch.resume(new_id, on_event=listener)
        listener.announce(handle)
        return {"run_id": new_id, "retry_of": run_id, "rerun": plan.rerun, "kept": list(plan.kept)}
