"""The CLI against a server (``--server`` / ``METAAGENT_SERVER`` and ``METAAGENT_TOKEN``):
run, runs, show, logs, watch, cancel and retry talk to a real ``metaagent serve``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
import yaml
from server_helpers import HERE, TOKEN, Server, running_server, wait_for_state, workflow

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("cli")) as s:
        yield s


def cli(
    *args: str, server: Server | None, token: str = TOKEN, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "METAAGENT_TOKEN": token, "COLUMNS": "200"}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), *sys.path])
    if server is not None:
        env["METAAGENT_SERVER"] = server.url
    return subprocess.run(
        [sys.executable, "-m", "metaagent.cli", *args], env=env, cwd=cwd,
        capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_run_then_runs_show_and_logs(server: Server, tmp_path: Path) -> None:
    doc = {
        "name": "remote",
        "agents": [{
            "name": "sayer", "capabilities": {"say": 0.9},
            "runner": {"type": "command", "argv": ["sh", "-c", "echo said-it >&2; echo out"]},
        }],
        "tasks": [{"id": "a", "capability": "say"}, {"id": "b", "capability": "say",
                                                      "depends_on": ["a"]}],
    }  # fmt: skip
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump(doc))
    done = cli("run", str(wf), "--json", str(tmp_path / "r.json"), server=server)
    assert done.returncode == 0, done.stderr
    first = done.stderr.splitlines()[0]
    assert first.startswith("run run-")
    rid = first.split()[1]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["run_id"] == rid
    assert report["state"] == "succeeded"
    listed = cli("runs", "--json", "--state", "succeeded", server=server)
    assert rid in [r["run_id"] for r in json.loads(listed.stdout)]
    shown = cli("show", rid, "--json", server=server)
    assert json.loads(shown.stdout)["tasks"][1]["output"] == "out"
    logs = cli("logs", rid, "b", server=server)
    assert logs.returncode == 0
    assert logs.stdout == "said-it\n"
    assert "attempt 1 on sayer" in logs.stderr
    # The same commands with --server given as an option.
    again = cli("show", rid, "--server", server.url, server=None)
    assert again.returncode == 0
    assert "succeeded" in again.stdout


def test_cancel_watch_and_retry(server: Server, tmp_path: Path) -> None:
    with server.client() as c:
        doc = workflow(2, agent="slow", input_=60, chain=True, name="remote-cancel")
        rid = c.post("/v1/runs", json={"workflow": doc}).json()["run_id"]
        deadline = time.monotonic() + 30
        while c.get(f"/v1/runs/{rid}/tasks/t0").json()["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    watcher = subprocess.Popen(
        [sys.executable, "-m", "metaagent.cli", "watch", rid],
        env={**os.environ, "METAAGENT_TOKEN": TOKEN, "METAAGENT_SERVER": server.url},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    done = cli("cancel", rid, server=server)
    assert done.returncode == 0, done.stderr
    assert f"cancel of run {rid} requested" in done.stdout
    out, errs = watcher.communicate(timeout=60)
    assert watcher.returncode == 1, errs
    assert f"run {rid} finished: cancelled" in out
    assert "t0 running" in errs
    with server.client() as c:
        wait_for_state(c, rid, ["cancelled"])
    retried = subprocess.Popen(
        [sys.executable, "-m", "metaagent.cli", "retry", rid, "-q"],
        env={**os.environ, "METAAGENT_TOKEN": TOKEN, "METAAGENT_SERVER": server.url},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    with server.client() as c:
        deadline = time.monotonic() + 30
        while True:
            runs = c.get("/v1/runs", params={"state": "running"}).json()["runs"]
            mine = [r for r in runs if r["retry_of"] == rid]
            if mine:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        c.post(f"/v1/runs/{mine[0]['run_id']}/cancel")
    out, errs = retried.communicate(timeout=60)
    assert retried.returncode == 1
    assert f"retrying run {rid} as run {mine[0]['run_id']}: 2 tasks run again" in errs


def test_a_wrong_token_or_no_server_exits_2(server: Server) -> None:
    done = cli("runs", server=server, token="wrong")
    assert done.returncode == 2
    assert "401" in done.stderr
    assert "METAAGENT_TOKEN" in done.stderr
    nobody = cli("runs", "--server", "http://127.0.0.1:9", server=None)
    assert nobody.returncode == 2
    assert "--server http://127.0.0.1:9" in nobody.stderr
    missing = cli("show", "run-nope", server=server)
    assert missing.returncode == 2
    assert "no run 'run-nope'" in missing.stderr
