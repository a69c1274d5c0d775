"""Sandboxes for agents' processes: ``bwrap`` (bubblewrap) and ``docker``, chosen per agent by
its ``sandbox:`` and checked at load (see ``base``)."""

from __future__ import annotations

from metaagent.sandbox.base import Prepared, Sandbox, SandboxSpec, SandboxUnavailable

__all__ = ["Prepared", "Sandbox", "SandboxSpec", "SandboxUnavailable", "make_sandbox"]


def make_sandbox(spec: SandboxSpec) -> Sandbox | None:
    """The sandbox ``spec`` asks for, checked (``SandboxUnavailable`` with the reason when it
    cannot be set up here); ``None`` for ``type: none``."""
    sandbox: Sandbox
    if spec.type == "none":
        return None
    if spec.type == "bwrap":
        from metaagent.sandbox.bwrap import BwrapSandbox

        sandbox = BwrapSandbox(spec)
    else:
        from metaagent.sandbox.docker import DockerSandbox

        sandbox = DockerSandbox(spec)
    sandbox.check()
    return sandbox
