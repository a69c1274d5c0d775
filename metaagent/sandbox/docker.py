"""Docker: each attempt is a ``docker run`` of the spec's image with the work directory mounted
at the same path, ``--network none`` unless ``network: true``, ``--memory`` and
``--pids-limit``, as the caller's uid; the container is removed afterwards (``--rm``, and
``docker rm -f`` when the attempt was stopped, since killing the client leaves it running).
The daemon is the one ``DOCKER_HOST`` names (the default socket otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import uuid
from typing import TYPE_CHECKING

from metaagent.sandbox.base import Prepared, SandboxSpec, SandboxUnavailable, safe_name

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["DockerSandbox"]


class DockerSandbox:
    kind = "docker"

    def __init__(self, spec: SandboxSpec) -> None:
        self.spec = spec
        self._program: str | None = None

    def _run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        assert self._program is not None
        try:
            return subprocess.run(
                [self._program, *args], capture_output=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SandboxUnavailable(f"docker {args[0]} cannot run: {exc}") from exc

    def check(self) -> None:
        if not self.spec.image:
            raise SandboxUnavailable("a docker sandbox needs `image`")
        self._program = shutil.which("docker")
        if self._program is None:
            raise SandboxUnavailable("the docker client is not installed (Debian: docker.io)")
        host = os.environ.get("DOCKER_HOST", "the default socket")
        done = self._run("version", "--format", "{{.Server.Version}}")
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip()[-300:]
            raise SandboxUnavailable(f"no Docker daemon answers at {host}: {said}")
        done = self._run("image", "inspect", "--format", "{{.Id}}", self.spec.image)
        if done.returncode != 0:
            raise SandboxUnavailable(
                f"image {self.spec.image!r} is not present on the daemon at {host} "
                "(pull or import it first)"
            )

    def prepare(
        self,
        argv: Sequence[str],
        *,
        name: str,
        workdir: str,
        env: Mapping[str, str],
        read_only: Sequence[str] = (),
        writable: Sequence[str] = (),
    ) -> Prepared:
        assert self._program is not None, "check() first"
        spec = self.spec
        assert spec.image is not None
        container = safe_name("metaagent", name, uuid.uuid4().hex[:8])
        cmd = [self._program, "run", "--rm", "-i", "--name", container,
               "--user", f"{os.getuid()}:{os.getgid()}", "-v", f"{workdir}:{workdir}",
               "-w", workdir]  # fmt: skip
        for path in read_only:
            cmd += ["-v", f"{path}:{path}:ro"]
        for path in (*spec.writable, *writable):
            cmd += ["-v", f"{path}:{path}"]
        if not spec.network:
            cmd += ["--network", "none"]
        if spec.memory_mb is not None:
            cmd += ["--memory", f"{spec.memory_mb}m", "--memory-swap", f"{spec.memory_mb}m"]
        if spec.pids is not None:
            cmd += ["--pids-limit", str(spec.pids)]
        for key, value in env.items():
            cmd += ["-e", f"{key}={value}"]
        cmd += [spec.image, *argv]
        return Prepared(cmd, container=container)

    async def cleanup(self, prepared: Prepared) -> None:
        """Remove the container if it is still there (the attempt was stopped)."""
        if prepared.container is None or self._program is None:
            return
        proc = await asyncio.create_subprocess_exec(
            self._program, "rm", "-f", prepared.container,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(proc.wait()), 30)
