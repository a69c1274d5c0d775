"""Workspaces in a real git repository, driven by the CLI with the fake coding tools: a worktree
per task, dependents seeing upstream files, merges into the run branch in dependency order, a
conflict retried with its diff, worktrees gone afterwards, and kill -9 then resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from coding_support import (
    CLI,
    cli,
    fake_env,
    git,
    make_repo,
    report,
    run_id_of,
    tasks_of,
    worktrees,
)

pytestmark = pytest.mark.timeout(180)

AGENTS = """
agents:
  - name: coder
    capabilities: {code: 1.0}
    concurrency: 3
    runner: {type: coding, tool: claude}
"""

DAG = """
  - {id: a, capability: code, prompt: "@write a.txt=from a"}
  - id: b
    capability: code
    depends_on: [a]
    prompt: "@write b.txt=from b"
    verify: {argv: [sh, -c, "test -f a.txt && test -f b.txt"]}
  - id: c
    capability: code
    depends_on: [a]
    prompt: "@write c.txt=from c"
    verify: {argv: [sh, -c, "test -f a.txt && test ! -f b.txt"]}
  - id: d
    capability: code
    depends_on: [b, c]
    prompt: "{d_prompt}"
    verify: {argv: [sh, -c, "test -f b.txt && test -f c.txt && test -f d.txt"]}
  - {id: e, capability: code, depends_on: [d], prompt: "@write e.txt=from e"}
"""


def workflow(tmp: Path, tasks: str, *, extra: str = "") -> Path:
    wf = tmp / "wf.yaml"
    wf.write_text(
        f"name: ws\nworkspace: {{repo: repo, base: main{extra}}}\n{AGENTS}\ntasks:\n{tasks}"
    )
    return wf


def commit_of(repo: Path, branch: str) -> str:
    return git(repo, "rev-parse", branch)


def is_ancestor(repo: Path, a: str, b: str) -> bool:
    done = subprocess.run(["git", "merge-base", "--is-ancestor", a, b], cwd=repo, check=False)
    return done.returncode == 0


def check_dag_result(repo: Path, run: str, tasks: dict[str, dict[str, object]]) -> None:
    branch = f"metaagent/{run}"
    for name in "abcde":
        assert git(repo, "show", f"{branch}:{name}.txt") == f"from {name}"
    commits = {t: str(tasks[t]["output"]["commit"]) for t in "abcde"}  # type: ignore[index]
    for up, down in [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "e")]:
        assert is_ancestor(repo, commits[up], commits[down]), (up, down)
    for c in commits.values():
        assert is_ancestor(repo, c, branch)
    assert worktrees(repo) == []
    assert not (repo / ".metaagent" / "worktrees").exists()
    assert git(repo, "status", "--porcelain") == ""  # the main checkout is untouched
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"


def test_five_task_dag_each_in_its_own_worktree(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    logs = tmp_path / "logs"
    logs.mkdir()
    workflow(tmp_path, DAG.replace("{d_prompt}", "@write d.txt=from d"))
    done = cli("run", "wf.yaml", "--json", "out.json", cwd=tmp_path,
               env=fake_env(FAKE_LOG_DIR=str(logs)))  # fmt: skip
    assert done.returncode == 0, done.stderr
    rep = report(tmp_path / "out.json")
    run = str(rep["run_id"])
    tasks = tasks_of(rep)
    check_dag_result(repo, run, tasks)
    cwds = {t: json.loads((logs / f"{t}-1.json").read_text())["cwd"] for t in "abcde"}
    for t, cwd in cwds.items():
        assert Path(cwd) == (repo / ".metaagent" / "worktrees" / run / t).resolve()
    assert tasks["a"]["output"]["files"] == ["a.txt"]  # type: ignore[index]
    assert tasks["d"]["output"]["branch"] == f"metaagent/{run}--d"  # type: ignore[index]
    # usage per attempt, the run's total cost
    usage = [a["usage"] for t in tasks.values() for a in t["attempts"]]  # type: ignore[attr-defined]
    assert all(u["input_tokens"] > 1000 and u["cost_usd"] > 0 for u in usage)
    assert rep["cost_usd"] == pytest.approx(sum(u["cost_usd"] for u in usage), abs=1e-5)
    assert f"cost ${rep['cost_usd']:.4f}" in " ".join(done.stdout.split())  # the summary


def test_a_conflict_is_retried_with_its_diff_from_the_run_branch(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"shared.txt": "base\n"})
    logs = tmp_path / "logs"
    logs.mkdir()
    workflow(tmp_path, """
  - {id: x, capability: code, prompt: "@write shared.txt=from x"}
  - {id: y, capability: code, prompt: "@write shared.txt=from y"}
""")  # fmt: skip
    done = cli("run", "wf.yaml", "--json", "out.json", cwd=tmp_path,
               env=fake_env(FAKE_LOG_DIR=str(logs)))  # fmt: skip
    assert done.returncode == 0, done.stderr
    rep = report(tmp_path / "out.json")
    tasks = tasks_of(rep)
    retried = [t for t, r in tasks.items() if len(r["attempts"]) == 2]  # type: ignore[arg-type]
    assert len(retried) == 1
    (late,) = retried
    early = "y" if late == "x" else "x"
    first = tasks[late]["attempts"][0]  # type: ignore[index]
    assert first["outcome"] == "verify_failed"
    assert "merge conflict in shared.txt" in first["error"]
    prompt = json.loads((logs / f"{late}-2.json").read_text())["prompt"]
    assert "merge conflict in shared.txt" in prompt
    assert f"+from {early}" in prompt  # both sides of the diff
    assert f"+from {late}" in prompt
    run = str(rep["run_id"])
    # the retry started from the run branch: it holds the other change, then its own
    assert git(repo, "show", f"metaagent/{run}:shared.txt") == f"from {late}"
    assert is_ancestor(repo, str(tasks[early]["output"]["commit"]), f"metaagent/{run}")  # type: ignore[index]
    assert worktrees(repo) == []


def test_a_failed_worktree_is_kept_only_when_asked(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    tasks = '  - {id: f, capability: code, max_attempts: 1, prompt: "@write f.txt=x\\n@fail"}\n'
    workflow(tmp_path, tasks)
    done = cli("run", "wf.yaml", "-q", cwd=tmp_path)
    assert done.returncode == 1
    assert worktrees(repo) == []
    assert "--f" not in git(repo, "branch", "--list", "metaagent/*")

    done = cli("run", "wf.yaml", "-q", "--keep-worktrees", cwd=tmp_path)
    assert done.returncode == 1
    run = run_id_of(done)
    kept = repo / ".metaagent" / "worktrees" / run / "f"
    assert [Path(p) for p in worktrees(repo)] == [kept]
    assert (kept / "f.txt").read_text() == "x\n"  # what the failed attempt wrote


def _wait(predicate: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_kill_9_mid_run_then_resume_leaves_no_stale_worktree_and_loses_nothing(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo")
    logs = tmp_path / "logs"
    logs.mkdir()
    go = tmp_path / "go"
    workflow(tmp_path, DAG.replace("{d_prompt}", f"@write d.txt=from d\\n@wait-for {go}"))
    env = fake_env(FAKE_LOG_DIR=str(logs))
    proc = subprocess.Popen([*CLI, "run", "wf.yaml", "-q"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        _wait(lambda: (logs / "d-1.json").exists())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    run = next(ln.split()[1] for ln in err.decode().splitlines() if ln.startswith("run "))
    stale = repo / ".metaagent" / "worktrees" / run / "d"
    assert stale.is_dir()  # left behind by the killed run, with d's change uncommitted
    assert (stale / "d.txt").exists()

    go.touch()
    done = cli("resume", run, "--json", "out.json", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    tasks = tasks_of(report(tmp_path / "out.json"))
    assert {t["state"] for t in tasks.values()} == {"succeeded"}
    assert [a["outcome"] for a in tasks["d"]["attempts"]] == ["lost", "succeeded"]  # type: ignore[index]
    check_dag_result(repo, run, tasks)


def test_a_run_kept_with_keep_worktrees_resumes_without_the_flag(tmp_path: Path) -> None:
    make_repo(tmp_path / "repo")
    go = tmp_path / "go"
    workflow(tmp_path, f'  - {{id: w, capability: code, prompt: "@wait-for {go}"}}\n')
    argv = [*CLI, "run", "wf.yaml", "-q", "--keep-worktrees"]
    proc = subprocess.Popen(argv, cwd=tmp_path, env=fake_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    repo = tmp_path / "repo"
    try:
        _wait(lambda: len(worktrees(repo)) == 1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    run = next(ln.split()[1] for ln in err.decode().splitlines() if ln.startswith("run "))
    go.touch()
    done = cli("resume", run, "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr  # the same identity: not refused
    assert worktrees(repo) == []
