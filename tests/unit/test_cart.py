"""Unit tests for kiosk.core.cart: limits, availability, checkout (frozen prices, slot choice)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kiosk.core.cart import (
    Cart,
    CartError,
    add_item,
    alternatives_for,
    available_units,
    checkout,
    remove_item,
)
from kiosk.core.catalog import Catalog, Category, Product
from kiosk.core.payment import parse_order_id
from kiosk.core.planogram import Planogram, Slot, SlotKind
from kiosk.core.sale import CheckoutStarted, LineStatus, State, step


def product(pid: str, price: int) -> Product:
    return Product(
        product_id=pid,
        name_zh="六安瓜片" if pid == "tea" else "砀山梨膏",
        name_en="Lu'an Guapian tea" if pid == "tea" else "Dangshan pear paste",
        certification_no=f"AH-FP-2020-{pid}",
        origin_county_zh="金寨县",
        origin_county_en="Jinzhai",
        origin_area_code="341524",
        producer_zh="合作社",
        producer_en="Co-op",
        category=Category.TEA,
        price_fen=price,
        spec_zh="250克/罐",
        spec_en="250 g jar",
        shelf_life_days=365,
    )


CATALOG = Catalog.of(1, [product("tea", 3800), product("pear", 2500), product("nuts", 4200)])
PLANOGRAM = Planogram.of(
    1,
    [
        Slot(11, 1, 0, SlotKind.SPIRAL, 10, "tea"),
        Slot(12, 1, 1, SlotKind.SPIRAL, 10, "tea"),
        Slot(21, 1, 2, SlotKind.SPIRAL, 10, "pear"),
        Slot(31, 1, 3, SlotKind.LOCKER, 1, "nuts"),
        Slot(32, 1, 4, SlotKind.LOCKER, 1, "nuts"),
    ],
)
STOCK = {11: 2, 12: 3, 21: 1, 31: 1, 32: 1}


def add(cart: Cart, pid: str, qty: int = 1, reserved: dict[int, int] | None = None) -> Cart:
    return add_item(cart, pid, CATALOG, PLANOGRAM, STOCK, reserved or {}, qty)


def test_availability_counts_stock_minus_reservations() -> None:
    assert available_units("tea", PLANOGRAM, STOCK, {}) == 5
    assert available_units("tea", PLANOGRAM, STOCK, {11: 2, 12: 1}) == 2
    assert available_units("tea", PLANOGRAM, STOCK, {}, out_of_service={12}) == 2
    assert available_units("ghost", PLANOGRAM, STOCK, {}) == 0


def test_several_of_one_product_when_stock_allows() -> None:
    cart = add(add(Cart(), "tea", 2), "tea")
    assert cart.items[0].qty == 3 and cart.units == 3
    with pytest.raises(CartError, match="only 1"):
        add(Cart(), "pear", 2)


def test_cart_limit_counts_units() -> None:
    cart = add(add(Cart(), "tea", 4), "pear")
    assert cart.units == 5
    with pytest.raises(CartError, match="at most 5"):
        add(cart, "nuts")
    small = Cart(max_units=2)
    with pytest.raises(CartError):
        add(small, "tea", 3)


def test_reserved_stock_is_not_sold_twice() -> None:
    with pytest.raises(CartError):
        add(Cart(), "pear", reserved={21: 1})


def test_remove_item() -> None:
    cart = add(add(Cart(), "tea", 3), "pear")
    cart = remove_item(cart, "tea", 2)
    assert [(i.product_id, i.qty) for i in cart.items] == [("tea", 1), ("pear", 1)]
    cart = remove_item(cart, "tea", 5)
    assert [i.product_id for i in cart.items] == ["pear"]


def test_checkout_makes_one_line_per_unit_and_reserves() -> None:
    cart = add(add(add(Cart(), "tea", 3), "pear"), "nuts")
    order, reservations = checkout(
        cart, CATALOG, PLANOGRAM, STOCK, {}, kiosk_id="AH-340100-0001", order_seq=42
    )
    assert order.state is State.NEW
    assert len(order.lines) == 5
    assert all(ln.status is LineStatus.PENDING for ln in order.lines)
    assert order.total_fen == 3 * 3800 + 2500 + 4200
    # fullest slot first: 12 (3), then 11 (2) vs 12 (2) -> 11, then 12
    assert [ln.slot_no for ln in order.lines[:3]] == [12, 11, 12]
    assert order.lines[4].slot_kind is SlotKind.LOCKER
    assert reservations == {12: 2, 11: 1, 21: 1, 31: 1}
    assert sum(reservations.values()) == 5
    assert parse_order_id(order.order_id) == ("AH-340100-0001", 42)
    tea = order.lines[0]
    assert (tea.certification_no, tea.origin_area_code, tea.name_zh) == (
        "AH-FP-2020-tea",
        "341524",
        "六安瓜片",
    )


def test_price_change_after_checkout_does_not_change_the_order() -> None:
    cart = add(Cart(), "tea", 2)
    order, _ = checkout(cart, CATALOG, PLANOGRAM, STOCK, {}, kiosk_id="AH-1", order_seq=1)
    new_catalog = Catalog.of(2, [replace(CATALOG["tea"], price_fen=9900)])
    assert new_catalog["tea"].price_fen == 9900
    o, _ = step(order, CheckoutStarted(1_790_000_000.0))
    assert o.total_fen == 7600
    assert [ln.price_fen for ln in o.lines] == [3800, 3800]


def test_checkout_respects_other_reservations() -> None:
    cart = add(Cart(), "nuts")
    order, res = checkout(cart, CATALOG, PLANOGRAM, STOCK, {31: 1}, kiosk_id="AH-1", order_seq=2)
    assert order.lines[0].slot_no == 32 and res == {32: 1}
    with pytest.raises(CartError, match="sold out"):
        checkout(cart, CATALOG, PLANOGRAM, STOCK, {31: 1, 32: 1}, kiosk_id="AH-1", order_seq=3)


def test_checkout_rejects_empty_cart_and_unknown_product() -> None:
    with pytest.raises(CartError, match="empty"):
        checkout(Cart(), CATALOG, PLANOGRAM, STOCK, {}, kiosk_id="AH-1", order_seq=1)
    with pytest.raises(CartError):
        add(Cart(), "ghost")


def test_alternatives_for_a_failed_slot() -> None:
    alts = alternatives_for("tea", PLANOGRAM, STOCK, {}, exclude={11})
    assert [s.slot_no for s in alts] == [12]
    assert alternatives_for("tea", PLANOGRAM, {11: 1, 12: 0}, {}, exclude={11}) == ()
    assert [s.slot_no for s in alternatives_for("tea", PLANOGRAM, STOCK, {})] == [12, 11]
