"""The journal: schema and migrations, terminal states recorded once, idempotency keys, parity of
the memory journal with SQLite, learned statistics across runs, and the history commands."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from metaagent import (
    AgentSpec,
    AgentTask,
    FunctionRunner,
    ManualClock,
    Orchestrator,
    OrchestratorConfig,
    RouteTask,
    TaskState,
    VerifySpec,
    WorkflowError,
)
from metaagent.core.learning import ArmStats
from metaagent.core.tasks import Attempt, Outcome
from metaagent.journal import (
    MIGRATIONS,
    SCHEMA_VERSION,
    JournalError,
    MemoryJournal,
    SqliteJournal,
)
from metaagent.journal.migrations import migrate

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from metaagent.agents.base import AttemptContext
    from metaagent.journal import Journal


@pytest.fixture(params=["memory", "sqlite"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Journal]:
    j: Journal = MemoryJournal() if request.param == "memory" else SqliteJournal(tmp_path / "j.db")
    yield j
    j.close()


def _tasks() -> list[AgentTask]:
    return [
        AgentTask("a", "code", prompt="write it", input={"n": 1}, priority=2, key="k-a"),
        AgentTask(
            "b", "test", depends_on=("a",), complexity=0.9, timeout_s=5.0, max_attempts=2,
            resources=("repo",), verify=VerifySpec(("true",), 3.0), metadata={"team": "x"},
        ),
    ]  # fmt: skip


# --- migrations --------------------------------------------------------------------------------


def test_an_old_file_is_brought_forward_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, upto=1) == 1
    # Rows as schema version 1 wrote them.
    conn.execute(
        "INSERT INTO runs (run_id, name, key, created_at, finished_at, source, workdir)"
        " VALUES ('r1', 'old run', 'wf:1', 1700000000.0, NULL, 'wf.yaml', '/w')"
    )
    conn.execute(
        "INSERT INTO tasks VALUES ('r1', 'a', 0, 'code', 'p', '{\"n\":1}', 1, '[]', 0.5, NULL, 3,"
        " '[]', NULL, NULL, 'key-a')"
    )
    conn.execute(
        "INSERT INTO tasks VALUES ('r1', 'b', 1, 'test', '', NULL, 0, '[\"a\"]', 0.25, 9.5, 2,"
        ' \'["db"]\', \'{"argv":["true"],"timeout_s":4.0}\', \'{"m":true}\', NULL)'
    )
    conn.execute(
        "INSERT INTO attempts VALUES ('r1', 'a', 1, 'ag', 'ag#1', 0.0, 1.5, 'succeeded', NULL)"
    )
    conn.execute("INSERT INTO attempts VALUES ('r1', 'b', 1, 'ag', 'ag#1', 1.5, NULL, NULL, NULL)")
    conn.execute("INSERT INTO results VALUES ('r1', 'a', 'succeeded', '[1,2]', NULL, 1.5)")
    conn.execute(
        "INSERT INTO decisions VALUES ('r1', 0, 'route_task', 'a', 'ag', 0.0, 'best',"
        ' \'{"type":"route_task","task_id":"a"}\')'
    )
    assert conn.execute("PRAGMA user_version").fetchone() == (1,)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'stats'").fetchone() is None
    conn.close()

    journal = SqliteJournal(path)
    assert journal.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
    assert journal.load_stats() == []  # the table added by migration 2 exists and is empty
    stored = journal.load_run("r1")
    assert stored.info.name == "old run"
    assert stored.info.key == "wf:1"
    assert stored.info.source == "wf.yaml"
    assert not stored.info.finished
    assert stored.tasks == [
        AgentTask("a", "code", "p", {"n": 1}, 1, (), 0.5, None, 3, (), None, {}, "key-a"),
        AgentTask("b", "test", "", None, 0, ("a",), 0.25, 9.5, 2, ("db",),
                  VerifySpec(("true",), 4.0), {"m": True}, None),
    ]  # fmt: skip
    assert stored.results["a"].state is TaskState.SUCCEEDED
    assert stored.results["a"].output == [1, 2]
    assert stored.attempts["a"] == [Attempt(1, "ag", "ag#1", 0.0, 1.5, Outcome.SUCCEEDED)]
    assert stored.attempts["b"] == [Attempt(1, "ag", "ag#1", 1.5)]
    assert stored.decisions == [{"type": "route_task", "task_id": "a"}]
    assert journal.find_unfinished("wf:1") == "r1"
    assert journal.find_task("key-a") == ("r1", "a")
    # And the migrated file takes new writes of every kind.
    journal.save_stats([("ag", "code", ArmStats(3, 1, 4, 0.5))])
    journal.task_finished("r1", "b", TaskState.FAILED, None, "boom", 2.0)
    journal.flush()
    journal.close()
    again = SqliteJournal(path)
    assert again.load_stats() == [("ag", "code", ArmStats(3, 1, 4, 0.5))]
    assert again.load_run("r1").results["b"].error == "boom"
    assert again.integrity_check() == "ok"
    again.close()


def test_tasks_read_the_same_from_the_run_document_and_from_the_rows(tmp_path: Path) -> None:
    """Runs journaled before schema version 3 have no task document: the rows serve instead."""
    odd = AgentTask("c", "code", input=(1, "two"), metadata={"when": {"a": [1]}}, complexity=1)
    journal = SqliteJournal(tmp_path / "j.db")
    journal.open_run("r1", "doc", [*_tasks(), odd])
    from_doc = journal.load_run("r1").tasks
    conn = sqlite3.connect(tmp_path / "j.db", isolation_level=None)
    conn.execute("DELETE FROM run_tasks")
    conn.close()
    from_rows = journal.load_run("r1").tasks
    journal.close()
    assert from_doc == from_rows
    assert from_doc[:2] == _tasks()
    assert from_doc[2].input == [1, "two"]  # JSON has no tuples, either way
    assert from_doc[2].metadata == {"when": {"a": [1]}}


def test_migrating_twice_changes_nothing_and_a_newer_file_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "j.db", isolation_level=None)
    assert migrate(conn) == SCHEMA_VERSION
    tables = conn.execute("SELECT name FROM sqlite_master ORDER BY name").fetchall()
    assert migrate(conn) == SCHEMA_VERSION
    assert conn.execute("SELECT name FROM sqlite_master ORDER BY name").fetchall() == tables
    with pytest.raises(ValueError, match="upto"):
        migrate(conn, upto=SCHEMA_VERSION + 1)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this metaagent"):
        SqliteJournal(tmp_path / "j.db")


def test_a_migration_that_fails_leaves_the_file_at_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metaagent.journal import migrations

    broken = (*MIGRATIONS, "CREATE TABLE extra (x INTEGER); CREATE TABLE extra (y INTEGER);")
    monkeypatch.setattr(migrations, "MIGRATIONS", broken)
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", len(broken))
    conn = sqlite3.connect(tmp_path / "j.db", isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        migrations.migrate(conn, upto=len(broken))
    assert conn.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'extra'").fetchone() is None
    assert not conn.in_transaction


# --- terminal states are recorded once ----------------------------------------------------------


def test_the_schema_refuses_a_second_terminal_state_and_any_change(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "j.db")
    journal.open_run("r1", "once", _tasks())
    journal.task_finished("r1", "a", TaskState.SUCCEEDED, 1, None, 1.0)
    journal.close()
    conn = sqlite3.connect(tmp_path / "j.db", isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        conn.execute("INSERT INTO results VALUES ('r1', 'a', 'failed', NULL, 'again', 2.0)")
    with pytest.raises(sqlite3.IntegrityError, match="a terminal state is final"):
        conn.execute("UPDATE results SET state = 'failed' WHERE task_id = 'a'")
    with pytest.raises(sqlite3.IntegrityError, match="a terminal state is final"):
        conn.execute("DELETE FROM results")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute("INSERT INTO results VALUES ('r1', 'b', 'running', NULL, NULL, 2.0)")
    assert conn.execute("SELECT state, output FROM results").fetchall() == [("succeeded", "1")]
    conn.close()


def test_recording_a_terminal_state_twice_is_an_error_not_an_overwrite(
    journal: Journal, tmp_path: Path
) -> None:
    journal.open_run("r1", "once", _tasks())
    journal.task_finished("r1", "a", TaskState.SUCCEEDED, "first", None, 1.0)
    journal.flush()

    def record_again() -> None:
        journal.task_finished("r1", "a", TaskState.FAILED, None, "second", 2.0)
        journal.flush()

    with pytest.raises(JournalError, match=r"final|UNIQUE"):
        record_again()
    if isinstance(journal, SqliteJournal):
        # The refused batch is kept, not dropped: every later flush says so again.
        with pytest.raises(JournalError, match="UNIQUE"):
            journal.flush()
        with pytest.raises(JournalError, match="UNIQUE"):
            journal.close()
        reader = SqliteJournal(tmp_path / "j.db")
        result = reader.load_run("r1").results["a"]
        reader.close()
    else:
        result = journal.load_run("r1").results["a"]
    assert (result.state, result.output, result.error) == (TaskState.SUCCEEDED, "first", None)


# --- idempotency keys ---------------------------------------------------------------------------


def test_a_known_idempotency_key_cannot_be_journaled_again(journal: Journal) -> None:
    journal.open_run("r1", "first", [AgentTask("a", "code", key="k1")])
    with pytest.raises(JournalError, match="k1"):
        journal.open_run("r2", "second", [AgentTask("x", "code", key="k1")])
    with pytest.raises(JournalError):
        journal.open_run("r3", "twice", [AgentTask("x", "code", key="k2"),
                                         AgentTask("y", "code", key="k2")])  # fmt: skip
    assert journal.find_task("k1") == ("r1", "a")
    assert journal.find_task("k2") is None  # nothing of a refused run was applied
    assert [r.run_id for r in journal.list_runs()] == ["r1"]


class Counting:
    """An agent body that counts its calls per task."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    async def __call__(self, ctx: AttemptContext) -> str:
        self.calls[ctx.task.id] = self.calls.get(ctx.task.id, 0) + 1
        return f"{ctx.task.id}:{sorted(ctx.upstream.items())}"


def _orch(journal: Journal, body: Counting, **config: object) -> Orchestrator:
    agent = AgentSpec("alpha", {"code": 0.9, "test": 0.9}, FunctionRunner(body), concurrency=2)
    return Orchestrator([agent], OrchestratorConfig(**config), journal=journal,  # type: ignore[arg-type]
                        clock=ManualClock())  # fmt: skip


def _keyed() -> list[AgentTask]:
    return [AgentTask("a", "code", key="job-a"),
            AgentTask("b", "test", depends_on=("a",), key="job-b")]  # fmt: skip


async def test_resubmitting_known_keys_returns_the_existing_run(journal: Journal) -> None:
    body = Counting()
    async with _orch(journal, body) as orch:
        first = await orch.submit(_keyed(), name="keyed")
        done = await first.result()
        again = await orch.submit(_keyed(), name="keyed")
        assert again is first  # the same run, not a copy
    assert done.ok
    assert body.calls == {"a": 1, "b": 1}
    # A new orchestrator on the same journal: still a no-op that returns the existing tasks.
    async with _orch(journal, body) as orch:
        third = await orch.submit(_keyed(), name="keyed")
        batch = await third.result()
    assert third.run_id == first.run_id
    assert body.calls == {"a": 1, "b": 1}
    assert [r.output for r in batch.results] == [r.output for r in done.results]
    assert [r.run_id for r in journal.list_runs()] == [first.run_id]


async def test_a_batch_mixing_known_and_new_keys_is_refused(journal: Journal) -> None:
    body = Counting()
    async with _orch(journal, body) as orch:
        await (await orch.submit(_keyed())).result()
        with pytest.raises(WorkflowError, match="some idempotency keys"):
            await orch.submit([AgentTask("a", "code", key="job-a"), AgentTask("c", "code")])
    assert len(journal.list_runs()) == 1


async def test_a_run_key_resumes_the_unfinished_run_and_not_a_finished_one(
    journal: Journal,
) -> None:
    tasks = [AgentTask("a", "code"), AgentTask("b", "test", depends_on=("a",))]
    journal.open_run("r-old", "wf", tasks, key="wf:1")
    journal.attempt_started("r-old", "a", Attempt(1, "alpha", "alpha", 0.0))
    journal.attempt_finished("r-old", "a", Attempt(1, "alpha", "alpha", 0.0, 1.0,
                                                   Outcome.SUCCEEDED))  # fmt: skip
    journal.task_finished("r-old", "a", TaskState.SUCCEEDED, "from before", None, 1.0)
    journal.flush()
    body = Counting()
    async with _orch(journal, body) as orch:
        handle = await orch.submit(tasks, name="wf", key="wf:1")
        batch = await handle.result()
        assert handle.run_id == "r-old"
        # Finished again with the same key: that is a new run of the workflow.
        fresh = await orch.submit(tasks, name="wf", key="wf:1")
        await fresh.result()
    assert fresh.run_id != "r-old"
    assert batch.result("a").output == "from before"
    assert batch.result("b").output == "b:[('a', 'from before')]"
    assert body.calls == {"b": 2, "a": 1}  # a ran only in the fresh run
    attempts = journal.load_run("r-old").attempts
    assert [a.number for a in attempts["b"]] == [1]


# --- the memory journal keeps the same contract --------------------------------------------------


def _script(j: Journal) -> None:
    """The same writes, in the order the runtime makes them."""
    j.open_run("r1", "parity", _tasks(), key="wf:p", source="wf.yaml", workdir="/w")
    j.attempt_started("r1", "a", Attempt(1, "alpha", "alpha#1", 0.0))
    j.attempt_finished("r1", "a", Attempt(1, "alpha", "alpha#1", 0.0, 0.5, Outcome.ERROR, "e"))
    j.attempt_started("r1", "a", Attempt(2, "beta", "beta#1", 0.75))
    j.attempt_finished("r1", "a", Attempt(2, "beta", "beta#1", 0.75, 1.0, Outcome.SUCCEEDED))
    j.task_finished("r1", "a", TaskState.SUCCEEDED, {"out": [1, "x"]}, None, 1.0)
    j.task_finished("r1", "b", TaskState.SKIPPED, None, "upstream", 1.5)
    j.save_stats([("beta", "code", ArmStats(1, 0, 1, 0.25))])
    j.flush()


def test_memory_and_sqlite_journals_read_back_the_same(tmp_path: Path) -> None:
    mem, lite = MemoryJournal(), SqliteJournal(tmp_path / "j.db")
    for j in (mem, lite):
        _script(j)
    m, s = mem.load_run("r1"), lite.load_run("r1")
    assert m.tasks == s.tasks == _tasks()
    assert m.results == s.results
    assert m.attempts == s.attempts
    assert len(m.attempts["a"]) == 2
    for field in ("run_id", "name", "key", "finished", "tasks", "counts", "source", "workdir"):
        assert getattr(m.info, field) == getattr(s.info, field), field
    assert m.info.counts == {"succeeded": 1, "skipped": 1}
    assert mem.load_stats() == lite.load_stats()
    assert mem.find_unfinished("wf:p") == lite.find_unfinished("wf:p") == "r1"
    for j in (mem, lite):
        j.run_finished("r1")
        j.flush()
    first = [mem.load_run("r1").info.finished_at, lite.load_run("r1").info.finished_at]
    for j in (mem, lite):
        j.run_finished("r1")  # a finished run keeps its first finish time
        j.flush()
    assert [mem.load_run("r1").info.finished_at, lite.load_run("r1").info.finished_at] == first
    assert mem.find_unfinished("wf:p") is lite.find_unfinished("wf:p") is None
    with pytest.raises(KeyError):
        mem.load_run("nope")
    with pytest.raises(KeyError):
        lite.load_run("nope")
    lite.close()


async def test_a_run_journals_the_same_in_memory_and_in_sqlite(tmp_path: Path) -> None:
    reports = []
    for journal in (MemoryJournal(), SqliteJournal(tmp_path / "j.db")):
        body = Counting()
        async with _orch(journal, body) as orch:
            handle = await orch.submit(_tasks(), name="same", run_id="r1")
            await handle.result()
        stored = journal.load_run("r1")
        reports.append(
            (stored.tasks, stored.results, stored.attempts,
             [(d["type"], d["task_id"]) for d in stored.decisions], stored.info.finished)
        )  # fmt: skip
        journal.close()
    assert reports[0] == reports[1]
    assert reports[0][4] is True


# --- learned statistics persist and route the next run ------------------------------------------


class FailsOn:
    """A body that fails on one agent and records where each attempt ran."""

    def __init__(self, bad: str) -> None:
        self.bad = bad
        self.agents: list[str] = []

    async def __call__(self, ctx: AttemptContext) -> str:
        self.agents.append(ctx.agent)
        if ctx.agent == self.bad:
            raise RuntimeError("flaky agent")
        return "ok"


def _pair(body: FailsOn) -> list[AgentSpec]:
    runner = FunctionRunner(body)
    return [AgentSpec("strong", {"code": 0.7}, runner), AgentSpec("steady", {"code": 0.6}, runner)]


async def test_learned_statistics_persist_and_route_the_next_run(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    config = OrchestratorConfig(max_concurrency=1)
    body = FailsOn("strong")
    journal = SqliteJournal(path)
    async with Orchestrator(_pair(body), config, journal=journal, clock=ManualClock()) as orch:
        tasks = [AgentTask(f"t{i}", "code", max_attempts=1) for i in range(6)]
        await (await orch.submit(tasks)).result()
        learned = {k: (a.successes, a.failures) for k, a in orch.scheduler.learning.arms.items()}
    journal.close()
    assert body.agents[0] == "strong"  # with no history the more proficient agent goes first
    assert learned[("strong", "code")][1] >= 1

    # Without that history a new orchestrator still starts on "strong" ...
    fresh = FailsOn("strong")
    async with Orchestrator(_pair(fresh), config, clock=ManualClock()) as orch:
        await (await orch.submit([AgentTask("x", "code", max_attempts=1)])).result()
    assert fresh.agents == ["strong"]

    # ... but one opened on the journal knows what the last run learned, and routes around it.
    body2 = FailsOn("strong")
    journal = SqliteJournal(path)
    async with Orchestrator(_pair(body2), config, journal=journal, clock=ManualClock()) as orch:
        loaded = {k: (a.successes, a.failures) for k, a in orch.scheduler.learning.arms.items()}
        assert loaded == learned
        handle = await orch.submit([AgentTask("x", "code", max_attempts=1)])
        batch = await handle.result()
    journal.close()
    assert body2.agents == ["steady"]
    assert batch.ok
    route = next(d for d in batch.decisions if isinstance(d, RouteTask))
    assert route.spec == "steady"


# --- the history commands, through the real command line ------------------------------------------

AGENTS_MODULE = """
import json, os

async def work(ctx):
    with open(os.environ["LEDGER"], "a") as fh:
        fh.write(json.dumps([ctx.task.id, ctx.attempt]) + "\\n")
    return {"task": ctx.task.id, "upstream": sorted(ctx.upstream)}
"""

WORKFLOW = """
name: history
settings: {max_concurrency: 1}
agents:
  - name: worker
    capabilities: {code: 0.9}
    runner: {type: function, function: "cli_agents:work"}
tasks:
  - {id: a, capability: code}
  - {id: b, capability: code, depends_on: [a]}
  - {id: c, capability: code, depends_on: [a]}
  - {id: d, capability: code, depends_on: [b, c]}
  - {id: e, capability: code, depends_on: [d]}
"""


def _cli(tmp: Path, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "METAAGENT_CRASH_AT"}
    env.update(LEDGER=str(tmp / "ledger.jsonl"), NO_COLOR="1", COLUMNS="200")
    if crash_at is not None:
        env["METAAGENT_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "metaagent.cli", *args, "--db", str(tmp / "j.db")],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _ledger(tmp: Path) -> list[tuple[str, int]]:
    lines = (tmp / "ledger.jsonl").read_text().splitlines()
    return [tuple(json.loads(line)) for line in lines]  # type: ignore[misc]


def test_runs_show_and_resume_on_a_real_journal(tmp_path: Path) -> None:
    (tmp_path / "cli_agents.py").write_text(AGENTS_MODULE)
    (tmp_path / "wf.yaml").write_text(WORKFLOW)

    # The orchestrator dies after its third result came in, before it was committed.
    crashed = _cli(tmp_path, "run", "wf.yaml", "-q", crash_at="after_result_before_commit:3")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    ran_before = _ledger(tmp_path)
    assert [t for t, _ in ran_before] == ["a", "b", "c"]

    listed = _cli(tmp_path, "runs")
    assert listed.returncode == 0, listed.stderr
    assert "unfinished" in listed.stdout
    conn = sqlite3.connect(tmp_path / "j.db")
    (run_id,) = conn.execute("SELECT run_id FROM runs").fetchone()
    committed = {t for (t,) in conn.execute("SELECT task_id FROM results")}
    conn.close()
    assert run_id in listed.stdout
    assert committed == {"a", "b"}  # c's result was lost with the process

    resumed = _cli(tmp_path, "resume", run_id, "-q", "--json", "resumed.json")
    assert resumed.returncode == 0, resumed.stderr
    ran = _ledger(tmp_path)[len(ran_before) :]
    # Finished tasks were not run again; the one in flight was, as a new attempt.
    assert [t for t, _ in ran] == ["c", "d", "e"]
    assert ran[0] == ("c", 2)

    shown = _cli(tmp_path, "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["run_id"] == run_id
    assert report["ok"] is True
    assert report["finished"] is True
    assert {t["id"]: t["state"] for t in report["tasks"]} == dict.fromkeys("abcde", "succeeded")
    by_id = {t["id"]: t for t in report["tasks"]}
    assert by_id["d"]["output"] == {"task": "d", "upstream": ["b", "c"]}
    assert [a["outcome"] for a in by_id["c"]["attempts"]] == ["lost", "succeeded"]

    # `show --json` has the shape of `run --json` (which `resume --json` writes too).
    ran_report = json.loads((tmp_path / "resumed.json").read_text())
    assert set(ran_report) <= set(report)
    assert ran_report["run_id"] == run_id
    assert set(ran_report["tasks"][0]) == set(report["tasks"][0])
    assert set(ran_report["tasks"][0]["attempts"][0]) == set(report["tasks"][0]["attempts"][0])
    assert [t["state"] for t in ran_report["tasks"]] == [t["state"] for t in report["tasks"]]

    listed = _cli(tmp_path, "runs")
    assert "finished" in listed.stdout
    assert "unfinished" not in listed.stdout
    assert "5 succeeded" in listed.stdout


def test_history_commands_report_a_missing_journal_or_run(tmp_path: Path) -> None:
    missing = _cli(tmp_path, "runs")
    assert missing.returncode == 2
    assert "no journal there" in missing.stderr
    SqliteJournal(tmp_path / "j.db").close()
    unknown = _cli(tmp_path, "show", "run-nope")
    assert unknown.returncode == 2
    assert "no run 'run-nope'" in unknown.stderr


# --- fencing, group commit and durability modes ------------------------------------------------


async def test_a_late_result_from_an_attempt_lost_in_a_crash_is_rejected(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "j.db")
    journal.open_run("r1", "fenced", [AgentTask("a", "code")])
    journal.attempt_started("r1", "a", Attempt(1, "alpha", "alpha", 0.0))
    journal.flush()  # the process "died" here, with attempt 1 in flight
    release = asyncio.Event()
    started = asyncio.Event()

    async def work(ctx: AttemptContext) -> str:
        started.set()
        await release.wait()
        return f"from attempt {ctx.attempt}"

    agent = AgentSpec("alpha", {"code": 0.9}, FunctionRunner(work))
    async with Orchestrator([agent], journal=journal, clock=ManualClock()) as orch:
        handle = await orch.resume("r1")
        await started.wait()
        # Attempt 1 reports after all (say, its agent outlived the orchestrator): rejected.
        stale = orch.scheduler.finish("r1", "a", 1, Outcome.SUCCEEDED, 0.0, output="stale")
        assert stale == []
        assert orch.scheduler.stale_results == 1
        release.set()
        batch = await handle.result()
    journal.close()
    assert batch.result("a").output == "from attempt 2"
    stored = SqliteJournal(tmp_path / "j.db").load_run("r1")
    assert stored.results["a"].output == "from attempt 2"
    assert [(a.number, a.outcome) for a in stored.attempts["a"]] == [
        (1, Outcome.LOST),
        (2, Outcome.SUCCEEDED),
    ]


async def test_writes_are_group_committed(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "j.db")
    n = 400
    agent = AgentSpec("wide", {"code": 0.9}, FunctionRunner(Counting()), concurrency=100)
    config = OrchestratorConfig(max_concurrency=100)
    async with Orchestrator([agent], config, journal=journal, clock=ManualClock()) as orch:
        await (await orch.submit([AgentTask(f"t{i}", "code") for i in range(n)])).result()
        commits = journal.commits
    journal.close()
    # Every attempt start, result and decision was journaled (at least 3 records a task) in
    # far fewer transactions: one per dispatch turn, not one per record.
    assert commits < n / 10
    stored = SqliteJournal(tmp_path / "j.db").load_run(_only_run(tmp_path))
    assert len(stored.results) == n
    assert sum(len(v) for v in stored.attempts.values()) == n


def _only_run(tmp: Path) -> str:
    conn = sqlite3.connect(tmp / "j.db")
    (run_id,) = conn.execute("SELECT run_id FROM runs").fetchone()
    conn.close()
    return str(run_id)


@pytest.mark.parametrize(("mode", "level"), [("normal", 1), ("full", 2)])
def test_durability_modes_set_sqlite_synchronous(tmp_path: Path, mode: str, level: int) -> None:
    journal = SqliteJournal(tmp_path / "j.db", durability=mode)  # type: ignore[arg-type]
    assert journal._conn.execute("PRAGMA synchronous").fetchone() == (level,)
    assert journal._conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    journal.close()
    with pytest.raises(ValueError, match="durability"):
        SqliteJournal(tmp_path / "k.db", durability="fast")  # type: ignore[arg-type]
