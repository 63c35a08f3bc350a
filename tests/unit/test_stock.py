"""The rules of stock arithmetic, and the demo fill levels."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk.core.planogram import SlotKind
from kiosk.core.stock import StockChange, StockError, StockReason, apply_change
from kiosk.sim.demo_data import demo_planogram, demo_stock

SALE, RESTOCK, CORRECTION, REMOVAL, TEST_VEND = (
    StockReason.SALE,
    StockReason.RESTOCK,
    StockReason.COUNT_CORRECTION,
    StockReason.REMOVAL,
    StockReason.TEST_VEND,
)


def change(delta: int, reason: StockReason, slot_no: int = 23) -> StockChange:
    return StockChange(slot_no, delta, reason, "ref-1")


@pytest.mark.parametrize(
    ("level", "capacity", "delta", "reason", "new"),
    [
        (5, 10, -1, SALE, 4),
        (1, 10, -1, SALE, 0),
        (1, 1, -1, SALE, 0),  # locker door
        (0, 10, 10, RESTOCK, 10),
        (3, 10, 7, RESTOCK, 10),
        (3, 10, 2, RESTOCK, 5),
        (3, 10, 5, CORRECTION, 8),
        (3, 10, -3, CORRECTION, 0),
        (3, 10, 0, CORRECTION, 3),  # counted, the number was right
        (3, 10, -2, REMOVAL, 1),
        (3, 10, -1, TEST_VEND, 2),
        (12, 10, -1, SALE, 11),  # capacity reduced by a new planogram: selling down is fine
        (12, 10, -4, REMOVAL, 8),
    ],
)
def test_allowed_changes(
    level: int, capacity: int, delta: int, reason: StockReason, new: int
) -> None:
    assert apply_change(level, capacity, change(delta, reason)) == new


@pytest.mark.parametrize(
    ("level", "delta", "reason"),
    [(0, -1, SALE), (2, -3, REMOVAL), (0, -1, TEST_VEND), (4, -5, CORRECTION)],
)
def test_never_below_zero(level: int, delta: int, reason: StockReason) -> None:
    with pytest.raises(StockError) as info:
        apply_change(level, 10, change(delta, reason))
    text = str(info.value)
    assert text.startswith("slot 23: ")
    assert reason.value in text and str(delta) in text and f"level {level}" in text
    assert "below zero" in text


@pytest.mark.parametrize(
    ("level", "delta", "reason"), [(8, 3, RESTOCK), (0, 11, RESTOCK), (10, 1, CORRECTION)]
)
def test_restock_and_correction_never_overfill(level: int, delta: int, reason: StockReason) -> None:
    with pytest.raises(
        StockError, match=rf"^slot 23: level {level + delta} would exceed capacity 10$"
    ):
        apply_change(level, 10, change(delta, reason))


@pytest.mark.parametrize("reason", [SALE, RESTOCK, REMOVAL, TEST_VEND])
def test_zero_delta_rejected_except_for_correction(reason: StockReason) -> None:
    with pytest.raises(StockError, match=rf"slot 23: a {reason.value} of 0 items changes nothing"):
        apply_change(4, 10, change(0, reason))


def test_stock_error_is_a_value_error() -> None:
    assert issubclass(StockError, ValueError)


def test_change_defaults() -> None:
    c = StockChange(10, -1, SALE)
    assert c.ref == ""
    assert StockReason("count_correction") is CORRECTION


@given(
    capacity=st.integers(1, 50),
    level=st.integers(0, 50),
    delta=st.integers(-60, 60),
    reason=st.sampled_from(StockReason),
)
def test_level_never_negative_and_fills_bounded(
    capacity: int, level: int, delta: int, reason: StockReason
) -> None:
    try:
        new = apply_change(level, capacity, change(delta, reason))
    except StockError:
        return
    assert new == level + delta
    assert new >= 0
    if reason in (RESTOCK, CORRECTION):
        assert new <= capacity


@pytest.mark.parametrize("reason", [SALE, REMOVAL, TEST_VEND])
def test_outgoing_reasons_cannot_add_stock(reason: StockReason) -> None:
    with pytest.raises(StockError):
        apply_change(10, 10, change(5, reason))


# --- demo stock -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(SlotKind))
def test_demo_stock(kind: SlotKind) -> None:
    p = demo_planogram(kind)
    levels = demo_stock(p)
    assert set(levels) == set(p.slots)
    for s in p:
        assert 0 <= levels[s.slot_no] <= s.capacity
        if s.product_id is None:
            assert levels[s.slot_no] == 0
    stocked = [s for s in p if s.product_id]
    full = [s for s in stocked if levels[s.slot_no] == s.capacity]
    empty = [s for s in stocked if levels[s.slot_no] == 0]
    assert len(full) >= 0.75 * len(stocked)  # mostly full
    assert 1 <= len(empty) <= 3  # a couple empty
    # at least one product is sold out everywhere, so the sold-out state can be shown
    sold_out = {
        pid for pid in p.product_ids() if all(levels[s.slot_no] == 0 for s in p.slots_for(pid))
    }
    assert sold_out
    assert demo_stock(p) == levels  # deterministic


def test_demo_stock_applies_as_count_corrections() -> None:
    p = demo_planogram(SlotKind.SPIRAL)
    for slot_no, level in demo_stock(p).items():
        if level:
            cap = p.slots[slot_no].capacity
            assert apply_change(0, cap, StockChange(slot_no, level, CORRECTION, "seed")) == level
