"""What a sandbox is: a spec checked at load, and per attempt a wrapped command plus clean-up.

A sandbox that was asked for and cannot be set up is ``SandboxUnavailable`` at load, with the
reason: never a silent run without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from metaagent.errors import MetaAgentError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["Prepared", "Sandbox", "SandboxSpec", "SandboxUnavailable", "safe_name"]

SandboxType = Literal["none", "bwrap", "docker"]


class SandboxUnavailable(MetaAgentError, RuntimeError):
    """The sandbox asked for cannot be set up here; the message says why."""


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    """An agent's ``sandbox:``. ``network`` false cuts every network (loopback of the host
    included); ``memory_mb`` and ``pids`` cap the sandbox as a whole; ``image`` is the Docker
    image; ``writable`` lists paths writable besides the task's work directory."""

    type: SandboxType = "none"
    network: bool = False
    memory_mb: int | None = None
    pids: int | None = None
    image: str | None = None
    writable: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "type": self.type,
            "network": self.network,
            "memory_mb": self.memory_mb,
            "pids": self.pids,
            "image": self.image,
            "writable": list(self.writable),
        }


@dataclass(slots=True)
class Prepared:
    """One attempt's sandbox: ``argv`` is the command to run in it; ``cleanup`` (awaited after
    the command is gone, also when it was stopped) removes what was made for it."""

    argv: list[str]
    cleanup_paths: list[str] = field(default_factory=list)  # cgroups to remove
    container: str | None = None  # a Docker container to remove


class Sandbox(Protocol):
    kind: str
    spec: SandboxSpec

    def check(self) -> None:
        """Raise ``SandboxUnavailable`` (with the reason) when it cannot be set up here."""
        ...

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
        """``argv`` wrapped to run in the sandbox with ``workdir`` writable (and its working
        directory), ``env`` given to it, ``read_only`` paths visible and ``writable`` ones
        writable (besides the spec's own)."""
        ...

    async def cleanup(self, prepared: Prepared) -> None: ...


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def safe_name(*parts: str) -> str:
    """A container or cgroup name from parts (ids, numbers)."""
    return "-".join(_UNSAFE.sub("_", p) for p in parts)[:200]
