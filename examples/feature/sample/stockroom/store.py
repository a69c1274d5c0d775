"""Items in stock: a name, a quantity and a unit price."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    name: str
    quantity: int
    price: float


class Store:
    """Items by name; adding an item that is there already adds to its quantity."""

    def __init__(self) -> None:
        self._items: dict[str, Item] = {}

    def add(self, name: str, quantity: int, price: float) -> None:
        if quantity <= 0:
            raise ValueError(f"quantity of {name!r} must be positive, got {quantity}")
        old = self._items.get(name)
        total = quantity + (old.quantity if old else 0)
        self._items[name] = Item(name, total, price)

    def items(self) -> list[Item]:
        return sorted(self._items.values(), key=lambda i: i.name)
