"""Labelled crash points for durability tests.

``METAAGENT_CRASH_AT="label:n"`` makes the process kill itself (SIGKILL, no clean-up) the
``n``-th time execution passes ``hit(label)``. Unset, ``hit`` costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

_target: tuple[str, int] | None = None
_counts: dict[str, int] = {}


def _parse(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    label, _, n = spec.partition(":")
    return label, int(n or "1")


_target = _parse(os.environ.get("METAAGENT_CRASH_AT"))


def hit(label: str) -> None:
    """Pass crash point ``label``; die here if this is the configured hit."""
    if _target is None or _target[0] != label:
        return
    _counts[label] = _counts.get(label, 0) + 1
    if _counts[label] == _target[1]:
        os.kill(os.getpid(), signal.SIGKILL)
