"""Running a benchmark in-process at a tiny size, for the tests that guard it against bit-rot.

They check the output contract only (a table, then one JSON line with every figure and a
``target_met`` per target), never a performance figure: the runs are too small to mean any.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pytest


def run_bench(
    name: str, argv: Sequence[str], capsys: pytest.CaptureFixture[str]
) -> dict[str, object]:
    """Run benchmark ``name``; check its last printed line is its JSON; return that JSON."""
    from bench import BENCHMARKS

    returned = BENCHMARKS[name][0](list(argv))
    lines = capsys.readouterr().out.strip().splitlines()
    printed = json.loads(lines[-1])
    assert isinstance(printed, dict)
    assert printed["bench"] == name
    assert printed == json.loads(json.dumps(returned, allow_nan=False))
    targets = printed["targets"]
    assert isinstance(targets, dict)
    assert targets
    for target in targets.values():
        assert isinstance(target["target_met"], bool)
    assert len(lines) > 1  # a table came before the JSON line
    return printed
