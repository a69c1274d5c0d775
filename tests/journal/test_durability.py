"""Durability: a run survives its orchestrator being killed at any instant.

The kill battery and the crash points drive ``durability_worker.py`` in a child process, kill it
(SIGKILL from outside, or from inside at a labelled crash point) and restart it until the run
completes; then the journal and the ledger the task bodies wrote are checked against each other.
The journal-fault tests inject "database is locked" and disk I/O errors in process.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from bench_helpers import run_bench

from metaagent import AgentSpec, AgentTask, FunctionRunner, Orchestrator, TaskState
from metaagent.core.tasks import Attempt
from metaagent.journal import JournalError, SqliteJournal

if TYPE_CHECKING:
    from collections.abc import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from durability_worker import build_dag

WORKER = Path(__file__).resolve().parents[1] / "durability_worker.py"
CHILD_LIMIT_S = 60.0  # a worker that neither reaches its trigger nor exits by then is hung


@dataclass
class Battery:
    """One durable run driven through kills: the child's files and what was seen at each kill."""

    tmp: Path
    seed: int
    tasks: int
    work_ms: float = 10.0
    offset: int = 0
    lines: list[dict[str, object]] = field(default_factory=list)
    kills: int = 0
    inflight_kills: Counter[str] = field(default_factory=Counter)

    @property
    def db(self) -> Path:
        return self.tmp / "journal.db"

    @property
    def ledger(self) -> Path:
        return self.tmp / "ledger.jsonl"

    def spawn(self, crash_at: str | None = None) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.pop("METAAGENT_CRASH_AT", None)
        if crash_at is not None:
            env["METAAGENT_CRASH_AT"] = crash_at
        argv = [
            sys.executable, str(WORKER), "--db", str(self.db), "--ledger", str(self.ledger),
            "--seed", str(self.seed), "--tasks", str(self.tasks), "--work-ms", str(self.work_ms),
        ]  # fmt: skip
        return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def read_new(self) -> list[dict[str, object]]:
        """Ledger lines appended since the last call (a line is written by one ``write``)."""
        if not self.ledger.exists():
            return []
        with self.ledger.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        new = [json.loads(line) for line in data[:end].splitlines()]
        self.lines.extend(new)
        return new

    def after_kill(self) -> None:
        """The child is dead: the journal must be sound; note which tasks it had in flight."""
        self.kills += 1
        with sqlite3.connect(self.db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            # In flight, as the journal saw it: an attempt was recorded, no terminal state was.
            inflight = conn.execute(
                "SELECT DISTINCT a.task_id FROM attempts a LEFT JOIN results r"
                " ON r.run_id = a.run_id AND r.task_id = a.task_id"
                " WHERE a.finished_at IS NULL AND r.task_id IS NULL"
            ).fetchall()
        conn.close()
        self.inflight_kills.update(tid for (tid,) in inflight)
        self.read_new()

    def finished_tasks(self) -> int:
        if not self.db.exists():
            return 0
        with sqlite3.connect(self.db) as conn:
            try:
                (n,) = conn.execute("SELECT COUNT(*) FROM results").fetchone()
            except sqlite3.OperationalError:  # killed before the schema was created
                n = 0
        conn.close()
        return int(n)


def wait_until(
    proc: subprocess.Popen[bytes], battery: Battery, met: Callable[[list[dict[str, object]]], bool]
) -> bool:
    """Poll the ledger until ``met(new lines)`` holds (True) or the child exits (False)."""
    deadline = time.monotonic() + CHILD_LIMIT_S
    seen: list[dict[str, object]] = []
    while True:
        seen.extend(battery.read_new())
        if met(seen):
            return True
        if proc.poll() is not None:
            seen.extend(battery.read_new())
            return False
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"worker {proc.pid} hung: no progress in {CHILD_LIMIT_S:.0f}s")
        time.sleep(0.002)  # polling a child process, not ordering steps


def finish(proc: subprocess.Popen[bytes], battery: Battery) -> None:
    """Let the worker run to the end; it must succeed."""
    try:
        _, err = proc.communicate(timeout=CHILD_LIMIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("the last worker did not finish")
    assert proc.returncode == 0, err.decode()
    battery.read_new()


def task_lines(battery: Battery) -> list[dict[str, object]]:
    return [line for line in battery.lines if "t" in line]


def verify(battery: Battery) -> None:
    """Every assertion of the battery, from the journal and the ledger together."""
    dag = build_dag(battery.seed, battery.tasks)
    ids = {t.id for t in dag}
    with sqlite3.connect(battery.db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        runs = conn.execute("SELECT run_id, finished_at FROM runs").fetchall()
        # One run, resumed each time: a restart never started the workflow afresh.
        assert len(runs) == 1
        assert runs[0][1] is not None
        results = conn.execute("SELECT task_id, state FROM results").fetchall()
        attempts = conn.execute("SELECT task_id, number, outcome FROM attempts").fetchall()
        routes = conn.execute(
            "SELECT task_id, data FROM decisions WHERE type = 'route_task'"
        ).fetchall()
    conn.close()

    # Exactly one terminal state per task; none lost; all succeeded.
    by_task = Counter(tid for tid, _ in results)
    assert set(by_task) == ids
    assert max(by_task.values()) == 1
    assert {state for _, state in results} == {"succeeded"}

    # Every attempt was journaled with its routing decision, each number once per task.
    journaled = {(tid, n) for tid, n, _ in attempts}
    assert len(journaled) == len(attempts)
    assert {(tid, json.loads(d)["attempt"]) for tid, d in routes} == journaled
    winners = Counter(tid for tid, _, outcome in attempts if outcome == "succeeded")
    assert set(winners) == ids
    assert max(winners.values()) == 1

    lines = task_lines(battery)
    ran = Counter(str(line["t"]) for line in lines)
    # Each body ran only for a journaled attempt (journaled before launch), once per number.
    assert Counter((str(line["t"]), line["a"]) for line in lines).most_common(1)[0][1] == 1
    assert {(str(line["t"]), line["a"]) for line in lines} <= journaled
    assert set(ran) == ids
    over = {t: (n, battery.inflight_kills[t]) for t, n in ran.items()
            if n > 1 + battery.inflight_kills[t]}  # fmt: skip
    assert not over, f"bodies ran more often than 1 + kills in flight: {over}"

    # No task started before all its dependencies succeeded, and their outputs reached it.
    deps = {t.id: t.depends_on for t in dag}
    first_run: dict[str, int] = {}
    for i, line in enumerate(lines):
        tid = str(line["t"])
        first_run.setdefault(tid, i)
        assert line["up"] is True, f"{tid} started without its dependencies' outputs"
        late = [d for d in deps[tid] if first_run.get(d, i) >= i]
        assert not late, f"{tid} started before {late} had run"


def _marker(event: str) -> Callable[[list[dict[str, object]]], bool]:
    def met(new: list[dict[str, object]]) -> bool:
        return any(x.get("ev") == event for x in new)

    return met


def _started(k: int) -> Callable[[list[dict[str, object]]], bool]:
    def met(new: list[dict[str, object]]) -> bool:
        return sum(1 for x in new if "t" in x) >= k

    return met


def kill_battery(tmp: Path, *, tasks: int, kills: int, seed: int) -> Battery:
    """SIGKILL the worker at ``kills`` random instants, restarting it each time, then finish."""
    rng = random.Random(seed)
    battery = Battery(tmp, seed, tasks)
    while battery.kills < kills:
        left = kills - battery.kills
        remaining = tasks - battery.finished_tasks()
        assert remaining > 0, "the run finished before every kill was made"
        roll = rng.random()
        proc = battery.spawn()
        if roll < 0.1:
            met = _marker("open")  # kill while the journal is opened and the run recovered
        elif roll < 0.2:
            met = _marker("resumed")  # kill as dispatching begins again
        else:
            # Kill after a random share of what is left has started, leaving work for the rest.
            met = _started(rng.randint(1, max(1, 2 * remaining // (left + 2))))
        if not wait_until(proc, battery, met):
            _, err = proc.communicate()
            pytest.fail(f"worker exited ({proc.returncode}) before its kill: {err.decode()}")
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        battery.after_kill()
    finish(battery.spawn(), battery)
    return battery


def test_kill_battery_small(tmp_path: Path) -> None:
    battery = kill_battery(tmp_path, tasks=200, kills=10, seed=11)
    verify(battery)
    assert battery.kills == 10
    # Some kills found work in flight, so the bound on re-runs was actually exercised.
    assert sum(battery.inflight_kills.values()) > 0


@pytest.mark.timeout(600)
def test_kill_battery_2000_tasks_50_kills(tmp_path: Path) -> None:
    battery = kill_battery(tmp_path, tasks=2000, kills=50, seed=2024)
    verify(battery)
    assert battery.kills == 50
    assert len(battery.inflight_kills) > 0
    reruns = sum(n - 1 for n in Counter(str(x["t"]) for x in task_lines(battery)).values())
    assert reruns > 0  # at-least-once was visible: some bodies ran again after a kill


# --- crash points ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "label", ["after_commit_before_dispatch", "after_result_before_commit", "inside_transaction"]
)
def test_crash_point_at_each_successive_hit(tmp_path: Path, label: str) -> None:
    battery = Battery(tmp_path, seed=7, tasks=100, work_ms=2.0)
    n = 1
    while True:
        proc = battery.spawn(crash_at=f"{label}:{n}")
        _, err = proc.communicate(timeout=CHILD_LIMIT_S)
        if proc.returncode == 0:
            battery.read_new()
            break
        assert proc.returncode == -signal.SIGKILL, err.decode()
        battery.after_kill()
        n += 1
    assert battery.kills >= 3  # the point was reached and crashed at several successive hits
    verify(battery)


# --- journal faults ----------------------------------------------------------------------------


def _attempt(n: int = 1) -> Attempt:
    return Attempt(n, "alpha", "alpha", 0.0)


def _open(tmp: Path, **kw: object) -> SqliteJournal:
    j = SqliteJournal(tmp / "j.db", retry_delay_s=0.0, **kw)  # type: ignore[arg-type]
    j.open_run("r1", "faults", [AgentTask("a", "code"), AgentTask("b", "code")])
    return j


def test_locked_database_retries_a_bounded_number_of_times_then_says_so(tmp_path: Path) -> None:
    journal = _open(tmp_path, retries=3, busy_timeout_ms=20)
    journal.attempt_started("r1", "a", _attempt())
    journal.task_finished("r1", "a", TaskState.SUCCEEDED, {"x": 1}, None, 1.0)
    holder = sqlite3.connect(tmp_path / "j.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(JournalError, match=r"gave up after 3 tries: database is locked"):
            journal.flush()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # Nothing was applied; the batch is still pending and goes in, once, when the lock is gone.
    assert journal.pending == 2
    journal.flush()
    assert journal.pending == 0
    journal.flush()
    stored = journal.load_run("r1")
    assert stored.results["a"].output == {"x": 1}
    assert [a.number for a in stored.attempts["a"]] == [1]
    journal.close()


def test_transient_faults_are_retried_and_applied_once(tmp_path: Path) -> None:
    labels: list[str] = []

    def fault(label: str) -> None:
        labels.append(label)
        if len(labels) <= 3:  # the open_run commit, then two failed tries of the flush
            if len(labels) == 1:
                return
            raise sqlite3.OperationalError("database is locked" if len(labels) == 2 else
                                           "disk I/O error")  # fmt: skip

    journal = _open(tmp_path, retries=5, fault=fault)
    journal.attempt_started("r1", "a", _attempt())
    journal.attempt_finished("r1", "a", Attempt(1, "alpha", "alpha", 0.0, 1.0))
    journal.task_finished("r1", "a", TaskState.SUCCEEDED, "ok", None, 1.0)
    commits = journal.commits
    journal.flush()
    assert labels == ["open_run", "flush", "flush", "flush"]
    assert journal.commits == commits + 1
    with sqlite3.connect(tmp_path / "j.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM attempts").fetchone() == (1,)
        assert conn.execute("SELECT COUNT(*) FROM results").fetchone() == (1,)
    conn.close()
    journal.close()


def test_disk_io_errors_that_persist_fail_clearly_and_apply_nothing(tmp_path: Path) -> None:
    broken = False

    def fault(label: str) -> None:
        if broken:
            raise sqlite3.OperationalError("disk I/O error")

    journal = _open(tmp_path, retries=4, fault=fault)
    journal.attempt_started("r1", "a", _attempt())
    journal.task_finished("r1", "a", TaskState.SUCCEEDED, "ok", None, 1.0)
    broken = True
    with pytest.raises(JournalError, match=r"gave up after 4 tries: disk I/O error") as info:
        journal.flush()
    assert "nothing of this batch was applied" in str(info.value)
    with sqlite3.connect(tmp_path / "j.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM attempts").fetchone() == (0,)
        assert conn.execute("SELECT COUNT(*) FROM results").fetchone() == (0,)
    conn.close()
    broken = False
    journal.flush()
    journal.flush()
    assert journal.load_run("r1").results["a"].state is TaskState.SUCCEEDED
    journal.close()


def test_a_permanent_error_is_not_retried(tmp_path: Path) -> None:
    tries: list[str] = []

    def fault(label: str) -> None:
        tries.append(label)
        if label == "flush":
            raise sqlite3.OperationalError("no such table: nowhere")

    journal = _open(tmp_path, retries=5, fault=fault)
    journal.task_finished("r1", "a", TaskState.SUCCEEDED, "ok", None, 1.0)
    with pytest.raises(JournalError, match="no such table"):
        journal.flush()
    assert tries == ["open_run", "flush"]


async def test_a_journal_that_cannot_be_written_fails_the_run(tmp_path: Path) -> None:
    """Retries spent while running: the run's result raises the journal's error; no hang."""
    broken = False

    def fault(label: str) -> None:
        if broken:
            raise sqlite3.OperationalError("disk I/O error")

    journal = SqliteJournal(tmp_path / "j.db", retries=2, retry_delay_s=0.0, fault=fault)

    async def work(ctx: object) -> str:
        nonlocal broken
        broken = True
        return "done"

    agent = AgentSpec("alpha", {"code": 1.0}, FunctionRunner(work))
    async with Orchestrator([agent], journal=journal) as orch:
        handle = await orch.submit(
            [AgentTask("a", "code"), AgentTask("b", "code", depends_on=("a",))]
        )
        with pytest.raises(JournalError, match="disk I/O error"):
            await handle.result()
    broken = False
    journal.close()


# --- the benchmarks still run (tiny sizes: these guard against bit-rot, not performance) --------

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("durable", ["--tasks", "300", "--repeat", "1"]),
        ("recovery", ["--sizes", "200", "--repeat", "1"]),
    ],
)
def test_bench_runs_and_ends_with_its_json_line(
    name: str, argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.syspath_prepend(str(ROOT))
    printed = run_bench(name, [*argv, "--dir", str(tmp_path)], capsys)
    targets = printed["targets"]
    assert isinstance(targets, dict)
    assert list(tmp_path.iterdir()) == []  # journal files were cleaned up
    if name == "durable":
        assert printed["sqlite_normal_median_per_s"] > 0
        assert printed["commits_normal"] < 300  # group commit: far fewer commits than tasks
    else:
        (cell,) = printed["cells"]
        assert cell["journal_tasks"] == 200
        assert 0 < cell["journal_finished"] < 200  # the build crashed halfway, as planned
        assert cell["first_dispatch_median_s"] > 0
        assert targets["first_dispatch_100k"]["target_met"] is False  # too small to judge
