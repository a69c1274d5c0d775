import pytest
from stockroom.store import Store


def test_adding_twice_adds_the_quantities() -> None:
    store = Store()
    store.add("bolt", 2, 0.25)
    store.add("bolt", 3, 0.25)
    assert [(i.name, i.quantity) for i in store.items()] == [("bolt", 5)]


def test_a_quantity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        Store().add("nut", 0, 0.1)
