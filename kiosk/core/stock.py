"""Stock levels per slot and the rules for changing them.

Owns: the arithmetic of stock. Pure. Every change carries a reason; a level never goes negative
and never exceeds the slot's capacity. The store logs each change applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["StockChange", "StockError", "StockReason", "apply_change"]


class StockError(ValueError):
    """A stock change would make a level negative or overfill a slot."""


class StockReason(StrEnum):
    SALE = "sale"  # confirmed delivery (drop sensor / door cycle)
    RESTOCK = "restock"  # technician filled the slot
    COUNT_CORRECTION = "count_correction"  # technician counted and set the real number
    REMOVAL = "removal"  # technician took items out (expired, damaged)
    TEST_VEND = "test_vend"  # technician test vend that delivered an item


_OUTGOING = frozenset({StockReason.SALE, StockReason.REMOVAL, StockReason.TEST_VEND})


@dataclass(frozen=True, slots=True)
class StockChange:
    slot_no: int
    delta: int
    reason: StockReason
    ref: str = ""  # order id, transaction id or technician action id


def apply_change(level: int, capacity: int, change: StockChange) -> int:
    """Return the new level or raise StockError naming the slot and the numbers."""
    if change.delta == 0 and change.reason is not StockReason.COUNT_CORRECTION:
        raise StockError(
            f"slot {change.slot_no}: a {change.reason.value} of 0 items changes nothing"
        )
    if change.reason in _OUTGOING and change.delta >= 0:
        raise StockError(
            f"slot {change.slot_no}: a {change.reason.value} takes items out; delta must be "
            f"negative, got {change.delta}"
        )
    if change.reason is StockReason.RESTOCK and change.delta <= 0:
        raise StockError(
            f"slot {change.slot_no}: a restock adds items; delta must be positive, "
            f"got {change.delta}"
        )
    new = level + change.delta
    if new < 0:
        raise StockError(
            f"slot {change.slot_no}: {change.reason.value} of {change.delta} from level {level} "
            "would go below zero"
        )
    if new > capacity and change.reason in (StockReason.RESTOCK, StockReason.COUNT_CORRECTION):
        raise StockError(f"slot {change.slot_no}: level {new} would exceed capacity {capacity}")
    return new
