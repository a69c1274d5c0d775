"""``metaagent simulate`` and ``metaagent explain`` through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from metaagent import AgentSpec, AgentTask, AttemptContext, FunctionRunner, Orchestrator
from metaagent.cli.app import app
from metaagent.core.learning import ArmStats
from metaagent.journal.sqlite import SqliteJournal

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "simulate"
RELEASE = str(EXAMPLES / "release.yaml")
runner = CliRunner()


def sim(*args: str) -> dict[str, object]:
    result = runner.invoke(app, ["simulate", RELEASE, "--json", *args])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    data.pop("wall_s")
    return data


def test_simulate_prints_figures_as_json() -> None:
    data = sim()
    assert data["tasks"] == 12
    assert data["instances"] == 4
    assert data["states"] == {"succeeded": 12}
    assert isinstance(data["makespan_s"], float)
    assert set(data["queue_wait_s"]) >= {"p50", "p95", "p99"}  # type: ignore[arg-type]


def test_simulate_is_deterministic_and_seeded() -> None:
    assert sim() == sim()
    assert sim("--seed", "2")["makespan_s"] != sim("--seed", "3")["makespan_s"]


def test_simulate_with_another_pool_size() -> None:
    data = sim("--agents", "8")
    assert data["instances"] == 8
    assert data["by_agent"]["coder"]["instances"] == 2  # type: ignore[index]


def test_simulate_renders_a_table() -> None:
    result = runner.invoke(app, ["simulate", RELEASE])
    assert result.exit_code == 0, result.output
    for text in ("makespan", "utilisation", "queue wait", "route_task", "coder"):
        assert text in result.stdout


def test_deadline_finds_the_smallest_pool() -> None:
    result = runner.invoke(app, ["simulate", RELEASE, "--deadline", "7m30s", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["met"] is True
    assert data["result"]["makespan_s"] <= 450
    smaller = [t for t in data["tried"] if t["instances"] < data["instances"]]
    assert smaller
    assert all(t["makespan_s"] > 450 for t in smaller)


def test_an_unreachable_deadline_exits_1() -> None:
    result = runner.invoke(app, ["simulate", RELEASE, "--deadline", "1m"])
    assert result.exit_code == 1
    assert "no pool tried meets the deadline" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--deadline", "soon"], "--deadline: 'soon' is not a duration"),
        (["--agents", "2"], "--agents: 2 instances cannot cover 4 kinds of agent"),
    ],
)
def test_bad_options_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["simulate", RELEASE, *args])
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())


def test_a_bad_file_exits_2_naming_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nagents: [{name: a, capabilities: {code: 0.9}}]\n"
        "profiles: [{agent: nobody}]\ntasks: [{id: x, capability: code}]\n"
    )
    result = runner.invoke(app, ["simulate", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}: profiles[0].agent: unknown agent 'nobody'" in " ".join(result.stderr.split())
    missing = runner.invoke(app, ["simulate", str(tmp_path / "none.yaml")])
    assert missing.exit_code == 2
    assert "cannot read simulation" in missing.stderr


def test_learned_needs_statistics(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    SqliteJournal(db).close()
    result = runner.invoke(app, ["simulate", RELEASE, "--learned", "--db", str(db)])
    assert result.exit_code == 2
    assert "no learned statistics" in result.stderr


def test_learned_statistics_replace_the_file_profiles(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    journal = SqliteJournal(db)
    # The coder was seen to take 10 s per python task and never to fail.
    journal.save_stats([("coder", "python", ArmStats(50, 0, 50, 10.0))])
    journal.flush()
    journal.close()
    learned = sim("--learned", "--db", str(db))
    assert learned["makespan_s"] < sim()["makespan_s"]  # type: ignore[operator]


def test_the_real_entry_point_runs_a_simulation() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "metaagent.cli", "simulate", RELEASE, "--json", "--seed", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tasks"] == 12


# --- explain ------------------------------------------------------------------------------------


def ok(ctx: AttemptContext) -> str:
    return ctx.task.id


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    path = tmp_path / "j.db"
    journal = SqliteJournal(path)
    agents = [
        AgentSpec("strong", {"code": 0.9}, FunctionRunner(ok)),
        AgentSpec("weak", {"code": 0.5}, FunctionRunner(ok)),
    ]
    try:
        async with Orchestrator(agents, journal=journal) as orch:
            handle = await orch.submit([AgentTask("a", "code")], run_id="run-1")
            await handle.result()
    finally:
        journal.close()
    return path


def test_explain_renders_the_trail(db: Path) -> None:
    result = runner.invoke(app, ["explain", "run-1", "a", "--db", str(db)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "a (code) in run run-1: succeeded on strong" in out
    assert "route_task -> strong" in out
    assert "why: strong won with -1.429 over weak (-2.000)" in out
    assert "retry" in out
    assert "attempts" in out


def test_explain_as_json(db: Path) -> None:
    result = runner.invoke(app, ["explain", "run-1", "a", "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    route = data["decisions"][0]["route"]
    assert route["instance"] == "strong"
    assert route["runner_up"] == "weak"
    assert route["margin"] == pytest.approx(0.5714, abs=1e-3)
    assert [c["agent"] for c in route["candidates"]] == ["strong", "weak"]
    assert route["contributions"][0]["part"] == "retry"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run-9", "a"], "no run 'run-9'"),
        (["run-1", "zz"], "run 'run-1' has no task 'zz'; its tasks: a"),
    ],
)
def test_explain_unknown_run_or_task_exits_2(db: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["explain", *args, "--db", str(db)])
    assert result.exit_code == 2
    assert message in result.stderr


def test_explain_without_a_journal_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["explain", "r", "t", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 2
    assert "no journal there" in result.stderr
