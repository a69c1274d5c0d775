"""Make a git repository from ``sample/`` next to a copy of the workflow, ready to run.

    python examples/feature/prepare.py DIR
    metaagent run DIR/workflow.yaml

DIR must not exist yet (or be empty).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def prepare(target: Path) -> Path:
    """Create ``target/repo`` (one commit of ``sample/`` on branch main) and
    ``target/workflow.yaml``; return the workflow's path."""
    if target.exists() and any(target.iterdir()):
        raise SystemExit(f"{target} exists and is not empty")
    repo = target / "repo"
    shutil.copytree(HERE / "sample", repo)
    ident = ["-c", "user.name=metaagent example", "-c", "user.email=example@localhost"]
    for args in (["init", "-q", "-b", "main"], ["add", "--all"],
                 ["commit", "-q", "-m", "stockroom: the sample before the feature"]):  # fmt: skip
        subprocess.run(["git", *ident, *args], cwd=repo, check=True)
    workflow = target / "workflow.yaml"
    shutil.copy(HERE / "workflow.yaml", workflow)
    return workflow


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(prepare(Path(sys.argv[1])))
