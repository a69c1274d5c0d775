"""The Ray backend's tests run on a real local Ray cluster (a head and two workers with custom
resources) inside a private network namespace that has only ``lo``, so no Ray process can listen
on or talk to anything but loopback.

The outer test run collects only ``test_netns.py``, which re-runs this folder under
``unshare -n`` (as root) with ``METAAGENT_RAY_NETNS=1``; that inner run collects the
``test_ray_*.py`` modules and shares one cluster between them. The cluster is stopped by its own
``shutdown`` (its processes, by pid); ``ray stop`` is never used.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ray.cluster_utils import Cluster

INSIDE = os.environ.get("METAAGENT_RAY_NETNS") == "1"
HERE = Path(__file__).resolve().parent

if not INSIDE:
    collect_ignore_glob = ["test_ray_*.py"]  # they run inside the namespace (test_netns.py)

# Fast failure detection, so that a removed node is noticed within seconds.
HEAD_CONFIG = {"health_check_period_ms": 500, "health_check_failure_threshold": 4}


@dataclass
class RayCluster:
    cluster: Cluster
    address: str

    def add_node(self, **kwargs: Any) -> Any:
        node = self.cluster.add_node(**kwargs)
        self.cluster.wait_for_nodes()
        return node

    def remove_node(self, node: Any) -> None:
        self.cluster.remove_node(node, allow_graceful=False)


def _only_loopback() -> None:
    links = sorted(name for _, name in socket.if_nameindex())  # of this network namespace
    assert links == ["lo"], f"not in a private network namespace: links {links}"


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """A head (1 CPU, no custom resources) and two workers (``box`` on both, ``left`` or
    ``right`` on one each), every node and this driver on 127.0.0.1."""
    _only_loopback()
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "_system_config": HEAD_CONFIG},
    )
    try:
        cluster.add_node(num_cpus=2, resources={"box": 8, "left": 4})
        cluster.add_node(num_cpus=2, resources={"box": 8, "right": 4})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace="metaagent-tests", log_to_driver=False)
        addresses = {n["NodeManagerAddress"] for n in ray.nodes()}
        assert addresses == {"127.0.0.1"}, addresses
        assert cluster.address.startswith("127.0.0.1:"), cluster.address
        yield RayCluster(cluster, cluster.address)
    finally:
        ray.shutdown()
        cluster.shutdown()
