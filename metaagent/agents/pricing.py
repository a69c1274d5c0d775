"""The default price table (``pricing.yaml``, shipped with the package and dated) and the
merge of a workflow's ``settings: {pricing: ...}`` over it."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

import yaml

from metaagent.core.budget import Price

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["PriceTable", "default_pricing", "pricing_date"]

PriceTable = dict[str, Price]


@cache
def _shipped() -> tuple[str, dict[str, Price]]:
    text = resources.files("metaagent.agents").joinpath("pricing.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    models = {
        str(name): Price(float(p["input_per_mtok_usd"]), float(p["output_per_mtok_usd"]))
        for name, p in data["models"].items()
    }
    return str(data["as_of"]), models


def default_pricing() -> PriceTable:
    """The shipped table: model name -> price (a fresh dict: callers may extend it)."""
    return dict(_shipped()[1])


def pricing_date() -> str:
    """The date the shipped prices were taken (YYYY-MM-DD)."""
    return _shipped()[0]


def merged_pricing(overrides: Mapping[str, Price]) -> PriceTable:
    """The shipped table with ``overrides`` (a workflow's) put over it, model by model."""
    return {**default_pricing(), **overrides}
