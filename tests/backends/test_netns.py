"""Runs the Ray backend's tests (``test_ray_*.py``) on a real multi-node Ray cluster inside a
private network namespace with only ``lo`` (see ``conftest.py``)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent


@pytest.mark.timeout(420)
def test_the_ray_suite_passes_in_a_private_network_namespace() -> None:
    if os.environ.get("METAAGENT_RAY_NETNS") == "1":
        pytest.skip("this is the run inside the namespace")
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (pip install metaagent[ray])")
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs root with unshare and ip (iproute2) for a private network namespace")
    # Workers of the cluster unpickle the tests' agent functions: they import these modules.
    path = os.pathsep.join([str(HERE), str(TESTS), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "METAAGENT_RAY_NETNS": "1", "PYTHONPATH": path}
    script = 'ip link set lo up && exec "$0" -m pytest -q -p no:cacheprovider -x "$1"'
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", script, sys.executable, str(HERE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    summary = done.stdout[-6000:] + "\n--- stderr ---\n" + done.stderr[-3000:]
    assert done.returncode == 0, summary
    assert " passed" in done.stdout, summary
    assert " failed" not in done.stdout, summary
    print(done.stdout[-2000:])
