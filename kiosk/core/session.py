"""The shopping session: what one shopper at the screen is doing, from browsing to the result.

Owns: the cart, which order is on screen, and every rule about UI intents — which tap is taken
in which phase (browse, cart, checkout, payment wait, offline-code entry, leaving, the service
menu) and what it asks the shell to do. Like `kiosk.core.sale`, every rule lives in the
transition table `TRANSITIONS`, one entry per (phase, input type), rendered into
docs/architecture.md by `render_transition_table()`.

Pure (the Elm architecture): `step(session, input) -> (session, commands)`. The shell
(kiosk.controller) turns UI intents into inputs, tells the session what happened to orders
(`OrderShown`, `OrderStepped`, `OrderPlaced`, `Fed`) and whether sales may start
(`ServiceChanged`), and carries out the commands (`FeedShown`, `PlaceOrder`, `Note`,
`LogTechnician`). Never: steps an order itself (it asks the shell to feed the sale machine),
reads a store or a clock (stock arrives as a `Shelf` inside the input, time as `now`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, field, replace
from enum import StrEnum

from kiosk.core import cart as cartlib
from kiosk.core import sale
from kiosk.core.catalog import Catalog
from kiosk.core.planogram import Planogram

__all__ = [
    "INPUT_TYPES",
    "TRANSITIONS",
    "AddOne",
    "Browse",
    "Cancel",
    "Command",
    "Extend",
    "Fed",
    "FeedShown",
    "Input",
    "Leave",
    "LogTechnician",
    "Note",
    "OfflineCode",
    "OrderPlaced",
    "OrderShown",
    "OrderStepped",
    "Phase",
    "PlaceOrder",
    "PressCheckout",
    "ServiceChanged",
    "ServiceMenu",
    "Session",
    "SetQty",
    "Shelf",
    "new_session",
    "phase",
    "render_transition_table",
    "step",
]


class Phase(StrEnum):
    IDLE = "idle"  # nothing on screen, empty cart
    SHOPPING = "shopping"  # browsing, a cart (maybe empty)
    PAYING = "paying"  # the order on screen waits for payment: QR, extend, offline code
    DISPENSING = "dispensing"  # the order on screen is paid and running (or suspended)
    RESULT = "result"  # the order on screen is closed: done, problem, or cancelled


@dataclass(frozen=True, slots=True)
class Session:
    cart: cartlib.Cart
    prices: Mapping[str, int] = field(default_factory=dict)  # price_fen per product in the cart
    shopping: bool = False  # the shopper started shopping (kept under an order shown later)
    shown: str | None = None  # the order on screen (open or just finished)
    shown_state: sale.State | None = None
    shown_view: sale.View | None = None  # the last view the sale machine asked for it
    reasons: tuple[str, ...] = ()  # out-of-service reasons as last published
    leaving: bool = False  # Leave asked to cancel the shown order; waiting for `Fed`
    service_menu: bool = False  # a technician is logged in to the service menu


def new_session(max_units: int) -> Session:
    return Session(cart=cartlib.Cart(max_units=max_units))


def phase(s: Session) -> Phase:
    if s.shown_state is not None:
        if s.shown_state is sale.State.AWAITING_PAYMENT:
            return Phase.PAYING
        if s.shown_state not in sale.FINAL_STATES:
            return Phase.DISPENSING
        return Phase.RESULT
    return Phase.SHOPPING if s.shopping or s.cart.items else Phase.IDLE


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shelf:
    """What the cart rules look at: a snapshot the shell reads when the tap arrives."""

    catalog: Catalog
    planogram: Planogram
    levels: Mapping[int, int]
    reserved: Mapping[int, int]
    bad_slots: Set[int]


@dataclass(frozen=True, slots=True)
class Browse:  # StartShopping
    pass


@dataclass(frozen=True, slots=True)
class AddOne:  # AddToCart
    product_id: str
    shelf: Shelf


@dataclass(frozen=True, slots=True)
class SetQty:  # SetQuantity
    product_id: str
    qty: int
    shelf: Shelf


@dataclass(frozen=True, slots=True)
class PressCheckout:  # Checkout
    pass


@dataclass(frozen=True, slots=True)
class Cancel:  # CancelOrder
    now: float


@dataclass(frozen=True, slots=True)
class Extend:  # ExtendPayment
    now: float


@dataclass(frozen=True, slots=True)
class OfflineCode:  # EnterOfflineCode
    code: str
    now: float
    secret: bytes


@dataclass(frozen=True, slots=True)
class Leave:  # BackToIdle
    now: float


@dataclass(frozen=True, slots=True)
class ServiceMenu:  # ServiceLogin / ServiceExit / ServiceViewed
    action: str  # the intent's name, logged as the technician action
    fields: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class OrderPlaced:
    """The shell committed the checkout of the cart: a new order."""

    order_id: str


@dataclass(frozen=True, slots=True)
class OrderShown:
    """The sale machine asked to show `order_id` (a `sale.Show` action)."""

    order_id: str
    state: sale.State
    view: sale.View


@dataclass(frozen=True, slots=True)
class OrderStepped:
    """A step of `order_id` was committed; it is now in `state`."""

    order_id: str
    state: sale.State


@dataclass(frozen=True, slots=True)
class Fed:
    """The answer to `FeedShown`: the shown order's state after it (unchanged if refused)."""

    order_id: str
    state: sale.State


@dataclass(frozen=True, slots=True)
class ServiceChanged:
    """The out-of-service reasons of the view just published."""

    reasons: tuple[str, ...]


Input = (
    Browse
    | AddOne
    | SetQty
    | PressCheckout
    | Cancel
    | Extend
    | OfflineCode
    | Leave
    | ServiceMenu
    | OrderPlaced
    | OrderShown
    | OrderStepped
    | Fed
    | ServiceChanged
)
INPUT_TYPES: tuple[type[Input], ...] = (
    Browse,
    AddOne,
    SetQty,
    PressCheckout,
    Cancel,
    Extend,
    OfflineCode,
    Leave,
    ServiceMenu,
    OrderPlaced,
    OrderShown,
    OrderStepped,
    Fed,
    ServiceChanged,
)

# --- commands (what the shell carries out, in order) ----------------------------------------


@dataclass(frozen=True, slots=True)
class FeedShown:
    """Feed `input` to the sale machine for the shown order; answer with `Fed`."""

    order_id: str
    input: sale.Input


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """Check the cart out (disk check, order number, reservations) in one transaction; answer
    with `OrderPlaced` when it was committed."""

    cart: cartlib.Cart


@dataclass(frozen=True, slots=True)
class Note:
    """A refused cart change: shown to the technician as the last result, and logged.
    `key`/`params`: the screen's wording (`result.<key>`), "" for the text as it is."""

    text: str
    key: str = ""
    params: tuple[tuple[str, str | int], ...] = ()


@dataclass(frozen=True, slots=True)
class LogTechnician:
    action: str
    fields: Mapping[str, object]


Command = FeedShown | PlaceOrder | Note | LogTechnician
Result = tuple[Session, list[Command]]
Handler = Callable[[Session, Input], Result]

# --- handlers -------------------------------------------------------------------------------


def _nothing(s: Session, inp: Input) -> Result:
    return s, []


def _cleared(s: Session) -> Session:
    return replace(s, cart=cartlib.Cart(max_units=s.cart.max_units), prices={}, shopping=False)


def _browse(s: Session, inp: Input) -> Result:
    if s.reasons:
        return s, []
    return replace(s, shown=None, shown_state=None, shown_view=None, shopping=True), []


def _set(s: Session, product_id: str, qty: int, shelf: Shelf) -> Result:
    cart = cartlib.remove_item(s.cart, product_id, s.cart.qty_of(product_id))
    prices = {k: v for k, v in s.prices.items() if k != product_id}
    if qty <= 0:
        return replace(s, cart=cart, prices=prices), []
    try:
        cart = cartlib.add_item(
            cart,
            product_id,
            shelf.catalog,
            shelf.planogram,
            shelf.levels,
            shelf.reserved,
            qty,
            shelf.bad_slots,
        )
    except cartlib.CartError as e:
        return s, [Note(str(e), e.key, tuple(e.params.items()))]
    prices[product_id] = shelf.catalog.products[product_id].price_fen
    return replace(s, cart=cart, prices=prices), []


def _add_one(s: Session, inp: Input) -> Result:
    assert isinstance(inp, AddOne)
    if s.reasons:
        return s, []
    s, _ = _browse(s, inp)
    return _set(s, inp.product_id, s.cart.qty_of(inp.product_id) + 1, inp.shelf)


def _set_qty(s: Session, inp: Input) -> Result:
    assert isinstance(inp, SetQty)
    return _set(s, inp.product_id, inp.qty, inp.shelf)


def _checkout(s: Session, inp: Input) -> Result:
    if s.reasons or not s.cart.items:
        return s, []
    return s, [PlaceOrder(s.cart)]


def _extend(s: Session, inp: Input) -> Result:
    assert isinstance(inp, Extend) and s.shown is not None
    return s, [FeedShown(s.shown, sale.ExtendRequested(inp.now))]


def _code(s: Session, inp: Input) -> Result:
    assert isinstance(inp, OfflineCode) and s.shown is not None
    return s, [FeedShown(s.shown, sale.OfflineCodeEntered(inp.code, inp.now, inp.secret))]


def _cancel(s: Session, inp: Input) -> Result:
    assert isinstance(inp, Cancel | Leave) and s.shown is not None
    return replace(s, leaving=isinstance(inp, Leave)), [
        FeedShown(s.shown, sale.ShopperCancel(inp.now))
    ]


def _leave(s: Session, inp: Input) -> Result:
    return replace(_cleared(s), shown=None, shown_state=None, shown_view=None), []


def _service_menu(s: Session, inp: Input) -> Result:
    assert isinstance(inp, ServiceMenu)
    inside = {"ServiceLogin": True, "ServiceExit": False}.get(inp.action, s.service_menu)
    return replace(s, service_menu=inside), [LogTechnician(inp.action, inp.fields)]


def _placed(s: Session, inp: Input) -> Result:
    return _cleared(s), []


def _shown(s: Session, inp: Input) -> Result:
    assert isinstance(inp, OrderShown)
    return replace(s, shown=inp.order_id, shown_state=inp.state, shown_view=inp.view), []


def _stepped(s: Session, inp: Input) -> Result:
    assert isinstance(inp, OrderStepped | Fed)
    if inp.order_id == s.shown:
        s = replace(s, shown_state=inp.state)
    if not isinstance(inp, Fed) or not s.leaving:
        return s, []
    s = replace(s, leaving=False)
    if inp.state in sale.FINAL_STATES:  # cancelled (or closed meanwhile): back to idle
        return _leave(s, inp)
    return s, []


def _service_changed(s: Session, inp: Input) -> Result:
    assert isinstance(inp, ServiceChanged)
    return replace(s, reasons=inp.reasons), []


# --- the table (a data table: exempt from the function-length limit) ------------------------


@dataclass(frozen=True, slots=True)
class SessionRule:
    handler: Handler
    summary: str


def _r(handler: Handler, summary: str) -> SessionRule:
    return SessionRule(handler, summary)


_P = Phase
_IGNORED = _r(_nothing, "ignored")
_BUSY = _r(_nothing, "ignored: an order is running")
_FEED_EXTEND = _r(_extend, "feed ExtendRequested")
_FEED_CODE = _r(_code, "feed OfflineCodeEntered")
_BROWSE = _r(_browse, "if selling: start shopping (the cart is kept)")
_ADD = _r(_add_one, "if selling: start shopping, one more in the cart (or Note why not)")
_SET = _r(_set_qty, "set the quantity (or Note why not)")
_CHECKOUT = _r(_checkout, "if selling and the cart has items: PlaceOrder")
_LEAVE = _r(_leave, "empty the cart, nothing on screen")

_table: dict[tuple[Phase, type[Input]], SessionRule] = {}
for _ph in (_P.IDLE, _P.SHOPPING):
    _table |= {
        (_ph, Browse): _BROWSE,
        (_ph, AddOne): _ADD,
        (_ph, SetQty): _SET,
        (_ph, PressCheckout): _CHECKOUT,
        (_ph, Cancel): _r(_nothing, "ignored: no order on screen"),
        (_ph, Extend): _r(_nothing, "ignored: no order on screen"),
        (_ph, OfflineCode): _r(_nothing, "ignored: no order on screen"),
        (_ph, Leave): _LEAVE,
    }
_table |= {
    (_P.PAYING, Browse): _BUSY,
    (_P.PAYING, AddOne): _BUSY,
    (_P.PAYING, SetQty): _BUSY,
    (_P.PAYING, PressCheckout): _BUSY,
    (_P.PAYING, Cancel): _r(_cancel, "feed ShopperCancel"),
    (_P.PAYING, Extend): _FEED_EXTEND,
    (_P.PAYING, OfflineCode): _FEED_CODE,
    (_P.PAYING, Leave): _r(_cancel, "feed ShopperCancel; when Fed says closed: as IDLE"),
    (_P.DISPENSING, Browse): _BUSY,
    (_P.DISPENSING, AddOne): _BUSY,
    (_P.DISPENSING, SetQty): _BUSY,
    (_P.DISPENSING, PressCheckout): _BUSY,
    (_P.DISPENSING, Cancel): _r(_nothing, "ignored: paid, ends in delivery or refund"),
    (_P.DISPENSING, Extend): _FEED_EXTEND,  # the sale machine refuses it (logged)
    (_P.DISPENSING, OfflineCode): _FEED_CODE,  # the sale machine refuses it (logged)
    (_P.DISPENSING, Leave): _BUSY,
    (_P.RESULT, Browse): _BROWSE,
    (_P.RESULT, AddOne): _ADD,
    (_P.RESULT, SetQty): _SET,
    (_P.RESULT, PressCheckout): _CHECKOUT,
    (_P.RESULT, Cancel): _r(_nothing, "ignored: the order is closed"),
    (_P.RESULT, Extend): _FEED_EXTEND,  # the sale machine refuses it (logged)
    (_P.RESULT, OfflineCode): _FEED_CODE,  # the sale machine refuses it (logged)
    (_P.RESULT, Leave): _LEAVE,
}
for _ph in Phase:  # what the shell reports: taken in every phase
    _table |= {
        (_ph, ServiceMenu): _r(_service_menu, "log it; Login/Exit: in/out of the menu"),
        (_ph, OrderPlaced): _r(_placed, "empty the cart, stop shopping"),
        (_ph, OrderShown): _r(_shown, "show that order"),
        (_ph, OrderStepped): _r(_stepped, "the shown order's state"),
        (_ph, Fed): _r(_stepped, "the shown order's state; leaving and closed: as IDLE"),
        (_ph, ServiceChanged): _r(_service_changed, "selling or not"),
    }
TRANSITIONS: Mapping[tuple[Phase, type[Input]], SessionRule] = _table


def step(s: Session, inp: Input) -> Result:
    """Feed one input; returns the new session and the commands to carry out, in order."""
    return TRANSITIONS[(phase(s), type(inp))].handler(s, inp)


def render_transition_table() -> str:
    """Markdown table: one row per input type, one column per phase."""
    head = "| input | " + " | ".join(p.name for p in Phase) + " |"
    rows = [head, "|---" * (len(Phase) + 1) + "|"]
    for t in INPUT_TYPES:
        cells = [TRANSITIONS[(p, t)].summary for p in Phase]
        rows.append(f"| **{t.__name__}** | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # pragma: no cover - `python -m kiosk.core.session` prints the table
    print(render_transition_table())
