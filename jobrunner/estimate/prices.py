"""Prices per hardware SKU: a dated table shipped with jobrunner, overridable in jobrunner.yaml.

Estimates multiply a job's run time by its hardware's price per second. The numbers below are
Replicate's public list prices for its hardware SKUs (the names `GET /v1/hardware` returns and a
`Model`'s `hardware` takes), transcribed from https://replicate.com/pricing; they are **list
prices as of PRICES_AS_OF**, not read from any API (the reference documents in
shared/reference carry no prices), and providers change them. A workspace overrides or adds SKUs
in `jobrunner.yaml`:

    prices:
      gpu-a100-large: 0.0014   # USD per second
      my-private-sku: 0.002

`local` is the embedded platform's hardware (this machine): free, so local jobs still get durations
and count against `max_creates_per_apply` but cost nothing (override it to charge back).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

PRICES_AS_OF = "2025-06-01"
PRICES_SOURCE = f"list prices as of {PRICES_AS_OF}, override in jobrunner.yaml `prices:`"

# USD per second of run time, per hardware SKU.
LIST_PRICES: Mapping[str, float] = MappingProxyType({
    "local": 0.0,
    "cpu": 0.000100,
    "gpu-t4": 0.000225,
    "gpu-a40-small": 0.000575,
    "gpu-a40-large": 0.000725,
    "gpu-a40-large-2x": 0.001450,
    "gpu-a40-large-4x": 0.002900,
    "gpu-a40-large-8x": 0.005800,
    "gpu-l40s": 0.000975,
    "gpu-2x-l40s": 0.001950,  # Replicate's multi-GPU names are not uniform: 2x first for L40S ...
    "gpu-4x-l40s": 0.003900,
    "gpu-8x-l40s": 0.007800,
    "gpu-a100-large": 0.001400,
    "gpu-a100-large-2x": 0.002800,  # ... and last for A40, A100 and H100
    "gpu-a100-large-4x": 0.005600,
    "gpu-a100-large-8x": 0.011200,
    "gpu-h100": 0.001525,
    "gpu-h100-2x": 0.003050,
    "gpu-h100-4x": 0.006100,
    "gpu-h100-8x": 0.012200,
})


@dataclass(frozen=True)
class Price:
    """A SKU's price and where it came from (shown with every cost)."""

    sku: str
    usd_per_second: float
    source: str  # "list prices as of …" | "jobrunner.yaml prices"


@dataclass(frozen=True)
class PriceTable:
    """The shipped list prices with the workspace's overrides on top."""

    overrides: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def price(self, sku: str) -> Price | None:
        """The price of `sku`, or None when neither the table nor jobrunner.yaml knows it."""
        if sku in self.overrides:
            return Price(sku, float(self.overrides[sku]), "jobrunner.yaml prices")
        if sku in LIST_PRICES:
            return Price(sku, LIST_PRICES[sku], PRICES_SOURCE)
        return None


__all__ = ["LIST_PRICES", "PRICES_AS_OF", "PRICES_SOURCE", "Price", "PriceTable"]
