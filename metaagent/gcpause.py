"""Holding the cyclic garbage collector during a bulk build of objects.

Building many long-lived records at once (a run's tasks, its results, a dispatch turn's
attempts) triggers collection after collection, each walking every object built so far. Paused
for the build, the collector runs once afterwards instead: same memory, a fraction of the time.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextmanager
def paused_gc() -> Iterator[None]:
    """Hold the cyclic garbage collector for the ``with`` block (no user code runs in it).

    Nested uses are fine: the collector is re-enabled only by the outermost one.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
