"""Operating runs from the command line: the run id, ``runs --json``, ``--json -``, the report
path checked first, ``--version``, help at 80 columns, ``watch``, a run another process owns."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
import typer.main
from contract import CONTRACT  # tests/ is on the path (rootdir conftest)
from typer.core import TyperGroup

from metaagent import __version__
from metaagent.cli.app import app
from metaagent.journal.sqlite import SqliteJournal

if TYPE_CHECKING:
    from pathlib import Path

CLI = [sys.executable, "-m", "metaagent.cli"]
RUN_LINE = re.compile(r"^run (run-\w+) \(journal (.+)\)$")


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "NO_COLOR": "1", **env},
    )  # fmt: skip


def workflow(tmp: Path, name: str, *, exit_code: int = 0, gated: bool = False) -> str:
    """A two-task workflow file; ``gated``: its first task waits for a file ``go`` to appear."""
    wait = "while [ ! -e go ]; do sleep 0.02; done; " if gated else ""
    (tmp / f"{name}.yaml").write_text(
        f"name: {name}\n"
        "agents:\n"
        "  - name: a\n"
        "    capabilities: {code: 0.9}\n"
        f"    runner: {{type: command, argv: [sh, -c, '{wait}echo ok; exit {exit_code}']}}\n"
        "tasks:\n"
        "  - {id: first, capability: code}\n"
        "  - {id: second, capability: code, depends_on: [first]}\n"
    )
    return f"{name}.yaml"


def start_run(tmp: Path, wf: str, db: str = "j.db") -> tuple[subprocess.Popen[str], str]:
    """Start ``run`` in another process; return it and its run id, once the run is journaled."""
    proc = subprocess.Popen(
        [*CLI, "run", wf, "--db", db, "-q"], cwd=tmp, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert proc.stderr is not None
    match = RUN_LINE.match(proc.stderr.readline().rstrip("\n"))
    assert match is not None
    return proc, match[1]


def journaled_runs(db: Path) -> list[str]:
    if not db.exists():
        return []
    store = SqliteJournal(db)
    try:
        return [i.run_id for i in store.list_runs()]
    finally:
        store.close()


def test_run_prints_its_id_first(tmp_path: Path) -> None:
    (tmp_path / "contract.yaml").write_text(CONTRACT)
    done = cli("run", "contract.yaml", "--json", "out.json", "--db", "j.db", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    match = RUN_LINE.match(done.stderr.splitlines()[0])
    assert match is not None, done.stderr
    assert match[2] == "j.db"
    assert match[1] == json.loads((tmp_path / "out.json").read_text())["run_id"]
    assert journaled_runs(tmp_path / "j.db") == [match[1]]
    done = cli("run", "contract.yaml", "--no-journal", "-q", cwd=tmp_path)
    assert re.match(r"run run-\w+ \(not journaled\)$", done.stderr.splitlines()[0])


def test_json_dash_writes_only_the_report_to_stdout(tmp_path: Path) -> None:
    (tmp_path / "contract.yaml").write_text(CONTRACT)
    done = cli("run", "contract.yaml", "--json", "-", "--db", "j.db", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # all of stdout is the report
    assert report["counts"]["succeeded"] == 3
    assert f"run {report['run_id']} " in done.stderr
    assert "contract-example: 3 succeeded" in done.stderr  # the summary went to stderr
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize(
    ("target", "problem"),
    [(".", "is a directory"), ("wf.yaml/out.json", "is not a directory"),
     ("sub/wf.yaml/deeper/out.json", "is not a directory")],
)  # fmt: skip
def test_a_bad_json_path_fails_before_the_run(tmp_path: Path, target: str, problem: str) -> None:
    wf = workflow(tmp_path, "wf")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "wf.yaml").write_text("")
    done = cli("run", wf, "--json", target, "--db", "j.db", cwd=tmp_path)
    assert done.returncode == 2
    assert f"error: --json {target}: " in done.stderr
    assert problem in done.stderr
    assert "Traceback" not in done.stderr
    assert journaled_runs(tmp_path / "j.db") == []  # no run was made
    done = cli("resume", "run-0123456789", "--json", target, "--db", "j.db", cwd=tmp_path)
    assert done.returncode == 2
    assert f"error: --json {target}: " in done.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_json_path_in_a_read_only_directory_fails_before_the_run(tmp_path: Path) -> None:
    wf = workflow(tmp_path, "wf")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        done = cli("run", wf, "--json", "locked/new/out.json", "--db", "j.db", cwd=tmp_path)
    finally:
        locked.chmod(0o700)
    assert done.returncode == 2
    assert "permission denied" in done.stderr
    assert journaled_runs(tmp_path / "j.db") == []


def test_runs_as_json_by_state_and_limit(tmp_path: Path) -> None:
    ok, bad, gated = (
        workflow(tmp_path, "ok"),
        workflow(tmp_path, "bad", exit_code=3),
        workflow(tmp_path, "gated", gated=True),
    )
    ids = {}
    for wf, code in ((ok, 0), (bad, 1)):
        done = cli("run", wf, "--db", "j.db", "-q", cwd=tmp_path)
        assert done.returncode == code, done.stderr
        ids[wf] = done.stderr.split()[1]
    proc, ids[gated] = start_run(tmp_path, gated)
    try:

        def listed(*args: str) -> list[str]:
            done = cli("runs", "--db", "j.db", "--json", *args, cwd=tmp_path)
            assert done.returncode == 0, done.stderr
            return [r["run_id"] for r in json.loads(done.stdout)]

        assert listed() == [ids[gated], ids[bad], ids[ok]]  # newest first
        assert listed("--limit", "2") == [ids[gated], ids[bad]]
        assert listed("--state", "unfinished") == [ids[gated]]
        assert listed("--state", "finished") == [ids[bad], ids[ok]]
        assert listed("--state", "finished", "--limit", "1") == [ids[bad]]
        assert listed("--state", "succeeded") == [ids[ok]]
        assert listed("--state", "failed") == [ids[bad]]
        done = cli("runs", "--db", "j.db", "--json", cwd=tmp_path)
        first = json.loads(done.stdout)[-1]
        assert first["name"] == "ok"
        assert (first["finished"], first["failed"], first["tasks"]) == (True, False, 2)
        assert first["counts"] == {"succeeded": 2}
        done = cli("runs", "--db", "j.db", "--state", "running", cwd=tmp_path)
        assert done.returncode == 2
    finally:
        (tmp_path / "go").touch()
        proc.communicate(timeout=60)
    assert proc.returncode == 0


def test_runs_never_wraps_an_id_when_piped(tmp_path: Path) -> None:
    wf = workflow(tmp_path, "a-workflow-with-a-rather-long-name-that-takes-room")
    run_ids = [cli("run", wf, "--db", "j.db", "-q", cwd=tmp_path).stderr.split()[1]]
    for columns in ("40", "80"):
        done = cli("runs", "--db", "j.db", cwd=tmp_path, COLUMNS=columns)
        assert done.returncode == 0, done.stderr
        (row,) = [line for line in done.stdout.splitlines() if run_ids[0] in line]
        assert "finished" in row
        assert "a-workflow-with-a-rather-long-name-that-takes-room" in row


def test_version(tmp_path: Path) -> None:
    done = cli("--version", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout == f"metaagent {__version__}\n"


def test_help_at_80_columns_shows_every_option_whole(tmp_path: Path) -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    for name, command in group.commands.items():
        done = cli(name, "--help", cwd=tmp_path, COLUMNS="80")
        assert done.returncode == 0, done.stderr
        assert max(map(len, done.stdout.splitlines())) <= 80, done.stdout
        for param in command.params:
            for opt in (*param.opts, *param.secondary_opts):
                if opt.startswith("-"):
                    assert re.search(rf"(^|[\s,/]){re.escape(opt)}(?![\w-])", done.stdout), (
                        name, opt, done.stdout,
                    )  # fmt: skip
    done = cli("--help", cwd=tmp_path, COLUMNS="80")
    assert "--version" in done.stdout
    assert "watch" in done.stdout


@pytest.mark.parametrize(("exit_code", "watched"), [(0, 0), (3, 1)])
def test_watch_follows_a_run_of_another_process(
    tmp_path: Path, exit_code: int, watched: int
) -> None:
    proc, run_id = start_run(tmp_path, workflow(tmp_path, "wf", exit_code=exit_code, gated=True))
    watch = subprocess.Popen(
        [*CLI, "watch", run_id, "--db", "j.db", "--interval", "0.1"], cwd=tmp_path, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    try:
        assert watch.stdout is not None
        assert watch.stdout.readline().startswith("0/2 done: ")  # read while the run waits
        (tmp_path / "go").touch()
        rest, errors = watch.communicate(timeout=60)
    finally:
        (tmp_path / "go").touch()
        proc.communicate(timeout=60)
        watch.kill()
    assert watch.returncode == watched, errors
    assert proc.returncode == watched
    assert f"run {run_id} finished: " in rest
    state = "succeeded" if watched == 0 else "failed"
    assert f"first {state}" in rest


def test_watch_of_an_unknown_run_or_journal_exits_2(tmp_path: Path) -> None:
    done = cli("watch", "run-nope", "--db", "j.db", cwd=tmp_path)
    assert done.returncode == 2
    assert "no journal there" in done.stderr
    cli("run", workflow(tmp_path, "wf"), "--db", "j.db", "-q", cwd=tmp_path)
    done = cli("watch", "run-nope", "--db", "j.db", "--interval", "0.1", cwd=tmp_path)
    assert done.returncode == 2
    assert "no run 'run-nope'" in done.stderr


def test_a_run_another_process_owns_exits_2_with_its_message(tmp_path: Path) -> None:
    # A real owner: the first ``run`` holds the run's lease while its first task waits.
    wf = workflow(tmp_path, "wf", gated=True)
    owner, run_id = start_run(tmp_path, wf)
    try:
        for args in (["run", wf], ["resume", run_id]):
            refused = cli(*args, "--db", "j.db", "-q", cwd=tmp_path)
            assert refused.returncode == 2, refused.stderr
            assert f"pid {owner.pid} on" in refused.stderr
            assert "Traceback" not in refused.stderr
        assert owner.poll() is None  # the owner goes on, untouched
    finally:
        (tmp_path / "go").touch()
        owner.communicate(timeout=60)
    assert owner.returncode == 0
    assert journaled_runs(tmp_path / "j.db") == [run_id]  # no other run was made


def test_validate_refuses_more_initial_instances_than_max_agents(tmp_path: Path) -> None:
    (tmp_path / "big.yaml").write_text(
        "name: big\n"
        "agents:\n"
        "  - {name: worker, capabilities: {code: 0.9}, min_instances: 60, max_instances: 60,\n"
        "     runner: {type: command, argv: [sh, -c, 'echo ok']}}\n"
        "tasks:\n"
        "  - {id: t, capability: code}\n"
    )
    done = cli("validate", "big.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert "min_instances 60" in done.stderr
    assert "max_agents 50" in done.stderr
    assert "Traceback" not in done.stderr
