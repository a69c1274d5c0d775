"""The public names: every one in ``__all__`` exists, is importable, and is listed once."""

from __future__ import annotations

import importlib
import inspect
from collections import Counter

import metaagent


def test_all_has_no_duplicates() -> None:
    dupes = [name for name, n in Counter(metaagent.__all__).items() if n > 1]
    assert dupes == []


def test_every_exported_name_exists() -> None:
    missing = [name for name in metaagent.__all__ if not hasattr(metaagent, name)]
    assert missing == []


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from metaagent import *", namespace)
    exported = {k for k in namespace if k != "__builtins__"}
    assert exported == set(metaagent.__all__)


def test_exported_objects_come_from_the_package() -> None:
    for name in metaagent.__all__:
        obj = getattr(metaagent, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__.startswith("metaagent"), (name, obj.__module__)
            # Importable from the module that defines it, under the same name.
            home = importlib.import_module(obj.__module__)
            assert getattr(home, obj.__name__) is obj, name


def test_version_is_a_string() -> None:
    assert isinstance(metaagent.__version__, str)
    assert metaagent.__version__.count(".") >= 1
