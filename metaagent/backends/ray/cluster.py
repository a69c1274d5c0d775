"""Reaching a Ray cluster, checking that a placement fits one of its nodes, and reaping the
actors a dead orchestrator left behind.

Every function here calls Ray; the module is imported only by the Ray backend.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from typing import TYPE_CHECKING, Any, cast

import ray

from metaagent.errors import BackendUnavailable

if TYPE_CHECKING:
    from collections.abc import Mapping

NAMESPACE = "metaagent"
"""The Ray namespace of every actor of metaagent (names are unique within a namespace)."""

PROBE_TIMEOUT_S = 5.0  # a HOST:PORT that does not accept a connection by then is unreachable
OWNER_TIMEOUT_S = 5.0  # a leftover actor that does not say who made it by then is reaped


def home_tag(workdir: str) -> str:
    """A short tag of the orchestrator's home (host and workdir): its actors' names begin with
    ``ma-<tag>-``, so a restarted orchestrator finds the ones its dead predecessor left."""
    home = f"{socket.gethostname()}\0{os.path.realpath(workdir)}"
    return hashlib.sha256(home.encode()).hexdigest()[:12]


def actor_name(tag: str, instance: str) -> str:
    return f"ma-{tag}-{instance}"


def _probe(address: str) -> None:
    """Raise ``BackendUnavailable`` unless ``HOST:PORT`` accepts a TCP connection now."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise BackendUnavailable(f"ray address {address!r}: expected auto or HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        raise BackendUnavailable(
            f"cannot reach the Ray cluster at {address}: {exc}. Start it (`ray start --head` "
            "on the head node) or fix the address (--ray-address / settings.ray_address)"
        ) from None


def connect(address: str | None) -> bool:
    """Connect this process to Ray (unless it already is); true when this call connected it.

    ``None`` starts a Ray instance on this machine when none is running (``RAY_ADDRESS`` in
    the environment is honoured); ``auto`` joins the one running on this machine; ``HOST:PORT``
    joins a cluster's head, checked first with a plain TCP connection so that a wrong address
    fails within seconds. Raises ``BackendUnavailable`` saying what to do.
    """
    if ray.is_initialized():
        return False
    if address not in (None, "auto"):
        _probe(address)
    try:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False,
                 logging_level=logging.WARNING)  # fmt: skip
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = "on this machine" if address in (None, "auto") else f"at {address}"
        raise BackendUnavailable(f"cannot connect to a Ray cluster {where}: {exc}") from None
    return True


def _fits(offer: Mapping[str, float], demand: Mapping[str, float]) -> bool:
    return all(offer.get(k, 0.0) >= v for k, v in demand.items())


def unmet(demand: Mapping[str, float]) -> str | None:
    """None when some live node of the cluster could hold ``demand``; else why none can."""
    every: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    nodes = [n for n in every if n.get("Alive")]
    if any(_fits(n.get("Resources", {}), demand) for n in nodes):
        return None
    offers = "; ".join(
        f"{n.get('NodeManagerAddress')}: " + ", ".join(
            f"{k}={v:g}" for k, v in sorted(n.get("Resources", {}).items())
            if not k.startswith(("node:", "object_store_memory"))
        )
        for n in nodes
    )  # fmt: skip
    asked = ", ".join(f"{k}={v:g}" for k, v in sorted(demand.items()))
    return f"no live node of the Ray cluster has {asked} (nodes: {offers or 'none'})"


def _dead_jobs() -> set[str]:
    """Ids of the cluster's jobs (driver processes) that have ended."""
    from ray._private import state  # the GCS job table; no dashboard needed

    jobs: list[dict[str, Any]] = state.jobs()  # type: ignore[no-untyped-call]
    return {str(j["JobID"]) for j in jobs if j.get("IsDead")}


def _owner_gone(owner: Mapping[str, object], dead_jobs: set[str]) -> bool:
    """Whether the orchestrator that made an actor is gone: its job ended, or its process
    (on this host) is dead."""
    if str(owner.get("job")) in dead_jobs:
        return True
    if owner.get("host") != socket.gethostname():
        return False
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def reap(tag: str) -> list[str]:
    """Kill the actors of this home (``ma-<tag>-``) whose orchestrator is gone; their names.

    A leftover that does not answer who made it within ``OWNER_TIMEOUT_S`` is killed too.
    """
    prefix = f"ma-{tag}-"
    named = [
        a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
        if a.get("namespace") == NAMESPACE and str(a.get("name", "")).startswith(prefix)
    ]  # fmt: skip
    if not named:
        return []
    dead_jobs = _dead_jobs()
    reaped = []
    for name in named:
        try:
            actor = ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            continue  # gone meanwhile
        try:
            owner: Mapping[str, object] | None = cast(
                "Mapping[str, object]", ray.get(actor.owner.remote(), timeout=OWNER_TIMEOUT_S)
            )
        except (ray.exceptions.RayError, TimeoutError):
            owner = None  # it cannot serve anyone: reap it
        if owner is None or _owner_gone(owner, dead_jobs):
            ray.kill(actor, no_restart=True)
            reaped.append(name)
    return reaped
