"""Out of service: the one place that decides whether the kiosk may start a new order.

Owns: `ServiceFacts` (what the decision looks at) and `out_of_service_reasons` (every reason,
most important first), plus `sellable_units`, the count the `sold_out` reason is made of.

Pure: no I/O. The shell (kiosk.controller) gathers the facts (board health, store, disk,
settings) and shows the first reason; the shopping session refuses to start while any holds.
Never: decides anything about an order already running (that is `kiosk.core.sale`).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

from kiosk.core import cart as cartlib
from kiosk.core.catalog import Catalog
from kiosk.core.planogram import Planogram

__all__ = ["ServiceFacts", "disk_low", "out_of_service_reasons", "sellable_units"]


@dataclass(frozen=True, slots=True)
class ServiceFacts:
    """What the out-of-service decision looks at."""

    board_online: bool | None  # None: not known yet (starting)
    store_writable: bool = True
    free_mb: float | None = None
    min_free_mb: float = 0.0
    sellable_units: int = 1
    service_door_open: bool = False
    temperature_c: float | None = None
    max_temperature_c: float | None = None  # None: not a chilled cabinet
    sales_locked: bool = False
    store_damaged: bool = False  # the start-up integrity check found a damaged record
    chilled_stopped: bool = False  # chilled products with stock are stopped for temperature
    updating: bool = False  # a software update: switching, or a new version on trial


def out_of_service_reasons(f: ServiceFacts) -> list[str]:
    """Every reason not to start a new order, most important first (`ui.OUT_OF_SERVICE_KEYS`)."""
    out: list[str] = []
    if f.updating:
        out.append("updating")
    if f.sales_locked:
        out.append("sales_locked")
    if f.store_damaged:
        out.append("store_damaged")
    if not f.store_writable:
        out.append("storage_error")
    elif disk_low(f):
        out.append("disk_low")
    if f.board_online is None:
        out.append("starting")
    elif not f.board_online:
        out.append("board_offline")
    if f.service_door_open:
        out.append("door_open")
    if (
        f.max_temperature_c is not None
        and f.temperature_c is not None
        and f.temperature_c > f.max_temperature_c
    ):
        out.append("temperature")
    if f.sellable_units <= 0:
        # nothing to sell because the chilled goods are too warm: say that, not "sold out"
        out.append("temperature" if f.chilled_stopped else "sold_out")
    return list(dict.fromkeys(out))  # "temperature" once


def disk_low(f: ServiceFacts) -> bool:
    return f.free_mb is not None and f.free_mb < f.min_free_mb


def sellable_units(
    catalog: Catalog,
    planogram: Planogram,
    levels: Mapping[int, int],
    reserved: Mapping[int, int],
    bad_slots: Set[int],
) -> dict[str, int]:
    """Units a shopper could still buy, per product in both the planogram and the catalog."""
    return {
        pid: cartlib.available_units(pid, planogram, levels, reserved, bad_slots)
        for pid in sorted(planogram.product_ids())
        if pid in catalog.products
    }
