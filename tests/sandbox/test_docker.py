"""Docker: this test starts its own private ``dockerd`` (no iptables, no bridge, data root and
socket in a temporary directory, stopped by its pid), makes a tiny image without a registry
(``docker import`` of a rootfs holding Debian's static busybox), and runs an agent in it with no
network and a memory limit. Skipped only when that daemon cannot start, saying why."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from metaagent.core.tasks import TaskState
from metaagent.errors import WorkflowError
from metaagent.runtime.orchestrator import Orchestrator
from metaagent.workflow.build import parse_workflow_text
from metaagent.workflow.settings import orchestrator_config

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.timeout(240)

IMAGE = "metaagent-busybox:test"
BUSYBOX = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if Path(p).is_file()), None)
APPLETS = ("sh", "cat", "echo", "ls", "mkdir", "test", "sleep", "wget", "tr")


def _rootfs_tar() -> bytes:
    """A root file system of one static busybox and its applets, as a tar stream."""
    assert BUSYBOX is not None
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "tmp", "etc", "proc", "sys", "dev"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, "bin/busybox")
        for name in APPLETS:
            link = tarfile.TarInfo(f"bin/{name}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buf.getvalue()


class Daemon:
    """A private dockerd; ``host`` is its socket as a DOCKER_HOST value."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mad-", dir="/tmp"))  # a short socket path
        self.host = f"unix://{self.dir}/d.sock"
        self.log = self.dir / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def docker(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["docker", "-H", self.host, *args], input=stdin, capture_output=True,
            timeout=120, check=False,
        )  # fmt: skip

    def start(self) -> str | None:
        """Start it; the reason when it cannot start."""
        if os.geteuid() != 0:
            return "dockerd needs root here (no rootless setup)"
        for program in ("dockerd", "docker"):
            if shutil.which(program) is None:
                return f"{program} is not installed (scripts/setup installs docker.io as root)"
        if BUSYBOX is None:
            return "busybox-static is not installed (scripts/setup installs it as root)"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none",
                 "--data-root", str(self.dir / "data"), "--exec-root", str(self.dir / "exec"),
                 "--pidfile", str(self.dir / "d.pid"), "--host", self.host,
                 "--storage-driver", "vfs"],
                stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"dockerd exited {self.proc.returncode}: {self._tail()}"
            if self.docker("version").returncode == 0:
                return None
            time.sleep(0.25)
        return f"dockerd did not answer within 60 s: {self._tail()}"

    def _tail(self) -> str:
        return " ".join(self.log.read_text(errors="replace").split()[-40:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)  # by pid: only the daemon this test started
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    d = Daemon()
    try:
        why = d.start()
        if why is not None:
            pytest.skip(f"no private Docker daemon: {why}")
        made = d.docker("import", "-", IMAGE, stdin=_rootfs_tar())
        assert made.returncode == 0, made.stderr
        yield d
    finally:
        d.stop()


AGENT = """
name: docker
agents:
  - name: boxed
    capabilities: {{code: 1.0}}
    runner:
      type: command
      argv: [sh, -c, "{script}"]
    sandbox: {{type: docker, image: {image}, memory_mb: 64, pids: 32}}
tasks:
  - {{id: job, capability: code, max_attempts: 1}}
"""

SCRIPT = (
    "echo in-container > made.txt; ls /sys/class/net | tr '\\\\n' ' ' > net.txt; "
    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max "
    "> mem.txt 2>/dev/null; wget -q -T 3 -O - http://1.1.1.1/ > /dev/null 2> wget.txt; "
    "echo $? > wget-status.txt; echo ok"
)


def test_an_agent_runs_in_the_image_with_no_network_and_a_memory_cap(
    daemon: Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", daemon.host)
    work = tmp_path / "work"
    work.mkdir()
    wf = parse_workflow_text(AGENT.format(script=SCRIPT, image=IMAGE), base_dir=tmp_path)
    cfg = orchestrator_config(wf.settings, workdir=work, task_count=1)

    async def go() -> object:
        async with Orchestrator(wf.agents, cfg) as orch:
            return await orch.execute_batch(wf.tasks)

    batch = asyncio.run(go())
    (r,) = batch.results  # type: ignore[attr-defined]
    assert r.state is TaskState.SUCCEEDED, r.error
    assert r.output == "ok"
    assert (work / "made.txt").read_text() == "in-container\n"  # the mounted work directory
    assert (work / "net.txt").read_text().split() == ["lo"]  # --network none
    assert int((work / "mem.txt").read_text().split()[0]) == 64 * 1024 * 1024
    assert (work / "wget-status.txt").read_text().strip() != "0"
    assert daemon.docker("ps", "-aq").stdout.strip() == b""  # the container is gone


def test_a_missing_image_or_daemon_is_a_load_error_naming_the_agent(
    daemon: Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", daemon.host)
    text = AGENT.format(script="true", image="no-such-image:1")
    with pytest.raises(WorkflowError) as err:
        parse_workflow_text(text, base_dir=tmp_path)
    message = str(err.value)
    assert "agent 'boxed' asks for a docker sandbox" in message
    assert "image 'no-such-image:1' is not present" in message
    assert "agents[0]" in message

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    with pytest.raises(WorkflowError, match="no Docker daemon answers at unix://"):
        parse_workflow_text(AGENT.format(script="true", image=IMAGE), base_dir=tmp_path)
