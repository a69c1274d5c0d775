"""bubblewrap: an agent that tries to write outside its worktree, to reach a server this test
runs on 127.0.0.1 and to fork past its pids limit fails each time, while the task's own work
succeeds. The same agent without a sandbox does all three: the probes are real."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from coding_support import FAKES, git, make_repo

from metaagent.core.tasks import TaskState
from metaagent.runtime.orchestrator import Orchestrator
from metaagent.sandbox.cgroups import CgroupLimits, cgroup_problem
from metaagent.workflow.build import parse_workflow_text
from metaagent.workflow.settings import orchestrator_config

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.timeout(120)


def _bwrap_problem() -> str | None:
    if shutil.which("bwrap") is None:
        return "bwrap is not installed (scripts/setup installs bubblewrap when run as root)"
    done = subprocess.run(
        ["bwrap", "--ro-bind", "/", "/", "--unshare-pid", "--unshare-net", "true"],
        capture_output=True, check=False, timeout=30,
    )  # fmt: skip
    if done.returncode != 0:
        return f"bwrap cannot create namespaces here: {done.stderr.decode().strip()}"
    return None


problem = _bwrap_problem()
needs_bwrap = pytest.mark.skipif(problem is not None, reason=problem or "")
no_cgroups = None if problem else cgroup_problem(CgroupLimits(memory_mb=128, pids=16))
needs_cgroups = pytest.mark.skipif(
    no_cgroups is not None, reason=f"the pids and memory limits need cgroups: {no_cgroups}"
)


class Server:
    """A TCP server on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)  # so that the thread sees ``close`` soon
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nhi")
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


@pytest.fixture
def outside() -> Iterator[Path]:
    """A path on the machine's read-only root (not under /tmp, which the sandbox makes private)."""
    path = Path.home() / f"metaagent-escape-{uuid.uuid4().hex[:8]}"
    yield path
    path.unlink(missing_ok=True)


def workflow(sandbox: str, server: Server, outside: Path, tmp: Path) -> str:
    prompt = "\\n".join([
        "@write work.txt=done", f"@escape {outside}", f"@escape {tmp / 'host-tmp.txt'}",
        f"@connect {server.port}", "@fork 40", "@alloc 300",
    ])  # fmt: skip
    return f"""
name: sandboxed
workspace: {{repo: repo, base: main}}
agents:
  - name: boxed
    capabilities: {{code: 1.0}}
    runner: {{type: coding, tool: claude}}
    sandbox: {sandbox}
tasks:
  - {{id: job, capability: code, max_attempts: 1, prompt: "{prompt}"}}
"""


async def run(tmp: Path, text: str) -> tuple[TaskState, str, dict[str, object]]:
    wf = parse_workflow_text(text, base_dir=tmp)
    cfg = orchestrator_config(wf.settings, workdir=tmp, task_count=1)
    async with Orchestrator(wf.agents, cfg) as orch:
        batch = await orch.execute_batch(wf.tasks)
    assert wf.workspace is not None
    wf.workspace.close()
    (r,) = batch.results
    assert isinstance(r.output, dict), r.error
    return r.state, git(tmp / "repo", "show", f"metaagent/{batch.run_id}:probe.txt"), r.output


@pytest.fixture(autouse=True)
def fakes_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")


@needs_bwrap
@needs_cgroups
def test_the_sandbox_stops_escape_network_and_fork_bomb(
    tmp_path: Path, server: Server, outside: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    text = workflow("{type: bwrap, pids: 16, memory_mb: 128}", server, outside, tmp_path)
    state, probe, out = asyncio.run(run(tmp_path, text))
    assert state is TaskState.SUCCEEDED
    assert out["files"] == ["probe.txt", "work.txt"]
    assert git(repo, "show", f"{out['run_branch']}:work.txt") == "done"  # its own work
    lines = probe.splitlines()
    assert lines[0] == f"escape {outside}: denied: [Errno 30] Read-only file system: '{outside}'"
    assert not outside.exists()
    # /tmp is the sandbox's own: the write lands there, never in the machine's /tmp
    assert lines[1].startswith(f"escape {tmp_path / 'host-tmp.txt'}: ")
    assert not (tmp_path / "host-tmp.txt").exists()
    assert lines[2].startswith(f"connect {server.port}: denied")
    assert server.accepted == 0
    assert lines[3].startswith("fork 40: stopped after ")
    assert int(lines[3].split()[4].rstrip(":")) < 16
    assert lines[4] in ("alloc 300: status -9", "alloc 300: status 1")  # OOM-killed, or refused
    assert not list(Path("/sys/fs/cgroup").glob("**/metaagent/*job*"))  # its cgroups removed


@needs_bwrap
def test_without_the_sandbox_the_same_probes_succeed(
    tmp_path: Path, server: Server, outside: Path
) -> None:
    make_repo(tmp_path / "repo")
    state, probe, _ = asyncio.run(
        run(tmp_path, workflow("{type: none}", server, outside, tmp_path))
    )
    assert state is TaskState.SUCCEEDED
    lines = probe.splitlines()
    assert lines[0] == f"escape {outside}: written"
    assert lines[2] == f"connect {server.port}: connected"
    assert lines[3] == "fork 40: all 40 started"
    assert lines[4] == "alloc 300: status 0"
    assert server.accepted == 1


@needs_bwrap
def test_network_true_lets_the_agent_reach_the_server(
    tmp_path: Path, server: Server, outside: Path
) -> None:
    make_repo(tmp_path / "repo")
    text = workflow("{type: bwrap, network: true}", server, outside, tmp_path)
    _, probe, _ = asyncio.run(run(tmp_path, text))
    assert probe.splitlines()[2] == f"connect {server.port}: connected"
    assert not outside.exists()
