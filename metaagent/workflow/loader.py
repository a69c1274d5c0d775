"""A YAML loader with budgets: nesting depth, nodes (aliases counted as what they expand to) and
duplicate keys are checked while the document is composed, before anything is built from it.

A billion-laughs alias bomb is refused at its first alias past the budget, in microseconds: an
alias adds the size of the node it names, which is known once that node is composed. JSON is
read by the same loader (JSON is YAML's flow style), with JSON's number forms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, ScalarNode
from yaml.resolver import Resolver

from metaagent.errors import brief

if TYPE_CHECKING:
    from yaml.nodes import Node

__all__ = ["Budget", "load_text"]

try:  # libyaml scans and parses; composing stays here, where the budgets are kept
    from yaml._yaml import CParser as _Parser

    _FAST = True
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser as _Parser  # type: ignore[assignment]

    _FAST = False

_MERGE = "tag:yaml.org,2002:merge"


@dataclass(frozen=True, slots=True)
class Budget:
    """What one file may hold. ``max_nodes`` counts every value as if aliases were expanded."""

    max_bytes: int = 16 * 1024 * 1024
    max_nodes: int = 1_000_000
    max_depth: int = 64


class _BudgetComposer(Composer):
    """Composes nodes as PyYAML does, counting them and refusing what exceeds the budget."""

    budget: Budget

    def _start_budget(self, budget: Budget) -> None:
        self.budget = budget
        self._nodes = 0
        self._depth = 0
        self._sizes: dict[str, int] = {}  # an anchor's node: how many nodes it expands to

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()  # type: ignore[attr-defined]  # the parser's, in the loader
        if isinstance(event, AliasEvent):
            size = self._sizes.get(event.anchor or "")
            if size is None and event.anchor in self.anchors:
                raise ComposerError(
                    None, None, f"alias *{event.anchor} refers to a node that contains it",
                    _mark(event),
                )  # fmt: skip
            self._count(size or 0, event)
            return super().compose_node(parent, index)
        if self._depth >= self.budget.max_depth:
            raise ComposerError(
                None, None, f"nested deeper than {self.budget.max_depth} levels", _mark(event)
            )
        before = self._nodes
        self._count(1, event)
        self._depth += 1
        node = super().compose_node(parent, index)
        self._depth -= 1
        if event.anchor is not None:
            self._sizes[event.anchor] = self._nodes - before
        return node

    def _count(self, n: int, event: yaml.Event) -> None:
        self._nodes += n
        if self._nodes > self.budget.max_nodes:
            raise ComposerError(
                None, None,
                f"more than {self.budget.max_nodes:,} values (aliases counted as expanded)",
                _mark(event),
            )  # fmt: skip


def _mark(event: yaml.Event) -> yaml.Mark | None:
    """The event's start (libyaml's marks have the same fields as PyYAML's)."""
    mark: yaml.Mark | None = event.start_mark  # type: ignore[assignment]
    return mark


class _StrictConstructor(SafeConstructor):
    """Safe construction; a key given twice in one mapping is an error, as is a bad value."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[object, object]:
        if isinstance(node, MappingNode):
            _check_duplicates(self, node)
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node: Node, deep: bool = False) -> object:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError) as exc:  # a date 2024-13-45, a huge int
            raise ConstructorError(None, None, f"invalid value: {exc}", node.start_mark) from exc


def _check_duplicates(constructor: SafeConstructor, node: MappingNode) -> None:
    seen: set[object] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE:
            continue  # a merge (<<) may be overridden; a complex key is refused when built
        key = constructor.construct_object(key_node)
        if key in seen:
            raise ConstructorError(
                None, None, f"duplicate key {brief(key)} in one mapping", key_node.start_mark
            )
        seen.add(key)


class _Loader(_Parser, _BudgetComposer, _StrictConstructor, Resolver):
    def __init__(self, text: str, budget: Budget) -> None:
        if _FAST:
            _Parser.__init__(self, text)
        else:  # pragma: no cover - pure-Python PyYAML: the reader and scanner come along
            yaml.reader.Reader.__init__(self, text)  # type: ignore[arg-type]
            yaml.scanner.Scanner.__init__(self)  # type: ignore[arg-type]
            _Parser.__init__(self)  # type: ignore[call-arg,unused-ignore]
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._start_budget(budget)

    # libyaml's parser brings its own composer; these put the budgeted one back in charge
    get_single_node = Composer.get_single_node
    get_node = Composer.get_node
    check_node = Composer.check_node


class _JsonLoader(_Loader):
    """JSON's numbers (``1e5`` is a float there, a string in YAML 1.1)."""


_JsonLoader.yaml_implicit_resolvers = {
    k: list(v) for k, v in _Loader.yaml_implicit_resolvers.items()
}
_JsonLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?[eE][-+]?[0-9]+$"),
    list("-0123456789"),
)


def load_text(text: str, *, json: bool = False, budget: Budget | None = None) -> object:
    """One YAML (or JSON) document as Python data.

    Raises ``yaml.YAMLError`` (with a mark where the parser has one) for invalid input, input
    over the ``budget``, a duplicate key or a value that cannot be built.
    """
    loader = (_JsonLoader if json else _Loader)(text, budget or Budget())
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
