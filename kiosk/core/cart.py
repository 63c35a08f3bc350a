"""The shopper's cart and checkout: from "2 x tea, 1 x pear paste" to an order with slots chosen.

Owns: cart limits, availability (stock minus reservations), slot choice and price freezing at
checkout. Pure: catalog, planogram, stock levels and reservations come in as values; the shell
commits the returned order and reservations together. Never lets a cart ask for more units than
are on the shelves and not already promised to another open order.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace

from kiosk.core.catalog import Catalog
from kiosk.core.payment import make_order_id
from kiosk.core.planogram import Planogram, Slot
from kiosk.core.sale import MAX_LINES, Line, Order, SaleRules

__all__ = [
    "DEFAULT_MAX_UNITS",
    "Cart",
    "CartError",
    "CartItem",
    "add_item",
    "alternatives_for",
    "available_units",
    "checkout",
    "remove_item",
]

DEFAULT_MAX_UNITS = 5


class CartError(ValueError):
    """The cart change or checkout is not possible. The message is for logs; `key` and
    `params` let a screen word it in its own language (`result.<key>` in the UI catalogs)."""

    def __init__(self, message: str, key: str = "cart_refused", **params: str | int) -> None:
        super().__init__(message)
        self.key = key
        self.params = params


@dataclass(frozen=True, slots=True)
class CartItem:
    product_id: str
    qty: int


@dataclass(frozen=True, slots=True)
class Cart:
    items: tuple[CartItem, ...] = ()
    max_units: int = DEFAULT_MAX_UNITS

    @property
    def units(self) -> int:
        return sum(i.qty for i in self.items)

    def qty_of(self, product_id: str) -> int:
        return sum(i.qty for i in self.items if i.product_id == product_id)


def _free(slot: Slot, stock_levels: Mapping[int, int], reserved: Mapping[int, int]) -> int:
    return max(0, stock_levels.get(slot.slot_no, 0) - reserved.get(slot.slot_no, 0))


def _usable_slots(
    product_id: str, planogram: Planogram, out_of_service: Collection[int]
) -> list[Slot]:
    return [s for s in planogram.slots_for(product_id) if s.slot_no not in out_of_service]


def available_units(
    product_id: str,
    planogram: Planogram,
    stock_levels: Mapping[int, int],
    reserved: Mapping[int, int],
    out_of_service: Collection[int] = frozenset(),
) -> int:
    """Units of a product that can still be sold: stock minus reservations, working slots only."""
    return sum(
        _free(s, stock_levels, reserved)
        for s in _usable_slots(product_id, planogram, out_of_service)
    )


def add_item(
    cart: Cart,
    product_id: str,
    catalog: Catalog,
    planogram: Planogram,
    stock_levels: Mapping[int, int],
    reserved: Mapping[int, int],
    qty: int = 1,
    out_of_service: Collection[int] = frozenset(),
) -> Cart:
    if qty < 1:
        raise CartError(f"quantity must be at least 1, got {qty}", "cart_qty", qty=qty)
    if product_id not in catalog:
        raise CartError(
            f"product {product_id!r} is not in the catalog", "cart_unknown", product=product_id
        )
    if cart.units + qty > cart.max_units:
        raise CartError(
            f"a cart holds at most {cart.max_units} items", "cart_full", max=cart.max_units
        )
    want = cart.qty_of(product_id) + qty
    have = available_units(product_id, planogram, stock_levels, reserved, out_of_service)
    if want > have:
        raise CartError(
            f"only {have} of {product_id!r} available, {want} asked",
            "cart_short",
            product=product_id,
            have=have,
            want=want,
        )
    items = list(cart.items)
    for n, it in enumerate(items):
        if it.product_id == product_id:
            items[n] = replace(it, qty=it.qty + qty)
            break
    else:
        items.append(CartItem(product_id, qty))
    return replace(cart, items=tuple(items))


def remove_item(cart: Cart, product_id: str, qty: int = 1) -> Cart:
    """Take `qty` units out (all of them if qty exceeds what is there)."""
    items: list[CartItem] = []
    for it in cart.items:
        if it.product_id == product_id:
            left = it.qty - qty
            if left > 0:
                items.append(replace(it, qty=left))
        else:
            items.append(it)
    return replace(cart, items=tuple(items))


def alternatives_for(
    product_id: str,
    planogram: Planogram,
    stock_levels: Mapping[int, int],
    reserved: Mapping[int, int],
    exclude: Collection[int] = (),
    out_of_service: Collection[int] = frozenset(),
) -> tuple[Slot, ...]:
    """Slots the shell passes in VendReported.alternatives: same product, free stock, fullest
    first. `reserved` may include the failing order's own reservations; those are on the slots
    already tried, which `exclude` removes."""
    slots = [
        s
        for s in _usable_slots(product_id, planogram, out_of_service)
        if s.slot_no not in exclude and _free(s, stock_levels, reserved) > 0
    ]
    slots.sort(key=lambda s: (-_free(s, stock_levels, reserved), s.slot_no))
    return tuple(slots)


def checkout(
    cart: Cart,
    catalog: Catalog,
    planogram: Planogram,
    stock_levels: Mapping[int, int],
    reserved: Mapping[int, int],
    *,
    kiosk_id: str,
    order_seq: int,
    store_epoch: str = "",
    rules: SaleRules | None = None,
    out_of_service: Collection[int] = frozenset(),
) -> tuple[Order, dict[int, int]]:
    """Freeze prices, choose a slot per unit, and reserve.

    Returns the order (state NEW; feed it `CheckoutStarted(now)` once committed) and the
    reservations it adds, slot_no -> units. Each unit takes the slot with the most free stock
    (ties: lowest slot number), which spreads wear and keeps a jammed slot from taking a whole
    cart.
    """
    if not cart.items:
        raise CartError("the cart is empty", "cart_empty")
    if cart.units > min(cart.max_units, MAX_LINES):
        raise CartError(
            f"a cart holds at most {cart.max_units} items", "cart_full", max=cart.max_units
        )
    taken: dict[int, int] = {}
    lines: list[Line] = []
    for item in cart.items:
        product = catalog.get(item.product_id)
        if product is None:
            raise CartError(
                f"product {item.product_id!r} is not in the catalog",
                "cart_unknown",
                product=item.product_id,
            )
        slots = _usable_slots(item.product_id, planogram, out_of_service)
        for _ in range(item.qty):
            best: Slot | None = None
            best_free = 0
            for s in slots:
                free = _free(s, stock_levels, reserved) - taken.get(s.slot_no, 0)
                if free > best_free:
                    best, best_free = s, free
            if best is None:
                raise CartError(
                    f"{item.product_id!r} is sold out ({item.qty} asked)",
                    "cart_sold_out",
                    product=item.product_id,
                    want=item.qty,
                )
            taken[best.slot_no] = taken.get(best.slot_no, 0) + 1
            lines.append(
                Line(
                    product_id=product.product_id,
                    name_zh=product.name_zh,
                    name_en=product.name_en,
                    certification_no=product.certification_no,
                    origin_county_zh=product.origin_county_zh,
                    origin_county_en=product.origin_county_en,
                    origin_area_code=product.origin_area_code,
                    price_fen=product.price_fen,
                    slot_no=best.slot_no,
                    slot_kind=best.kind,
                )
            )
    order = Order(
        order_id=make_order_id(kiosk_id, order_seq, store_epoch),
        kiosk_id=kiosk_id,
        order_seq=order_seq,
        lines=tuple(lines),
        rules=rules if rules is not None else SaleRules(),
    )
    return order, taken
