"""A real ``metaagent serve`` in a child process on 127.0.0.1 (port chosen by the kernel), and
workflows to submit to it. Shared by the service's tests (API, events, load, faults, dashboard)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

HERE = Path(__file__).resolve().parent
TOKEN = "test-token-rw"
READ_TOKEN = "test-token-ro"
START_TIMEOUT_S = 30.0


@dataclass
class Server:
    """A running server: its URL, token, journal and process (stopped by pid only)."""

    url: str
    db: Path
    proc: subprocess.Popen[str]
    token: str = TOKEN
    lines: list[str] = field(default_factory=list)  # its standard error so far
    _reader: threading.Thread = field(default_factory=threading.Thread)

    def client(self, token: str | None = TOKEN, timeout_s: float = 30.0) -> httpx.Client:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/v1/events"

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        """Send ``sig`` and wait for the exit; its return code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout_s)
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return code

    def stderr(self) -> str:
        return "".join(self.lines)


def start_server(
    tmp: Path,
    *,
    db: Path | None = None,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    token: str | None = TOKEN,
    read_token: str | None = READ_TOKEN,
    port: int = 0,
) -> Server:
    """Start ``metaagent serve`` on 127.0.0.1 with its journal in ``tmp``; returns once it
    listens (raises with its output if it does not)."""
    db = db or tmp / "journal.db"
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    full_env.pop("METAAGENT_TOKEN", None)
    full_env.pop("METAAGENT_READ_TOKEN", None)
    if token is not None:
        full_env["METAAGENT_TOKEN"] = token
    if read_token is not None:
        full_env["METAAGENT_READ_TOKEN"] = read_token
    full_env.update(env or {})
    cmd = [sys.executable, "-m", "metaagent.cli", "serve", "--host", "127.0.0.1",
           "--port", str(port), "--db", str(db), "--workdir", str(tmp), *args]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=tmp, env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    ready = threading.Event()
    url: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "listening on " in line and not url:
                url.append(line.split("listening on ", 1)[1].split()[0])
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ready.wait(START_TIMEOUT_S)
    if not url:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)
        reader.join(5)
        if proc.stderr is not None:
            proc.stderr.close()
        raise RuntimeError(f"the server did not start: {''.join(lines)[-3000:]}")
    return Server(url[0], db, proc, token or "", lines, reader)


@contextlib.contextmanager
def running_server(tmp: Path, **kwargs: Any) -> Iterator[Server]:
    server = start_server(tmp, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def workflow(
    tasks: int = 3,
    *,
    agent: str = "quick",
    name: str = "wf",
    chain: bool = False,
    slots: int = 4,
    input_: object = None,
    spec: str | None = None,
) -> dict[str, Any]:
    """A workflow document of ``tasks`` tasks on one function agent of ``service_agents``
    (its spec named after the function unless ``spec`` is given). The capability is the
    function's name: the server's agents are one pool, and a task goes to any agent of it that
    offers its capability."""
    items: list[dict[str, Any]] = []
    for i in range(tasks):
        t: dict[str, Any] = {"id": f"t{i}", "capability": agent}
        if chain and i:
            t["depends_on"] = [f"t{i - 1}"]
        if input_ is not None:
            t["input"] = input_
        items.append(t)
    return {
        "name": name,
        "agents": [{
            "name": spec or agent, "capabilities": {agent: 0.9}, "concurrency": slots,
            "runner": {"type": "function", "function": f"service_agents:{agent}"},
        }],
        "tasks": items,
    }  # fmt: skip


def wait_for_state(
    client: httpx.Client, run_id: str, states: Sequence[str], timeout_s: float = 60.0
) -> dict[str, Any]:
    """Poll the run until its state is one of ``states``; its report."""
    deadline = time.monotonic() + timeout_s
    while True:
        report: dict[str, Any] = client.get(f"/v1/runs/{run_id}").json()
        if report.get("state") in states:
            return report
        if time.monotonic() > deadline:
            raise AssertionError(
                f"run {run_id} still {report.get('state')!r}: {json.dumps(report)[:500]}"
            )
        time.sleep(0.1)
