"""The contract between the UI, the controller and the sync layer: views, intents, statuses.

Owns: the shapes of `ViewState` (published by the controller, drawn by the UI; the network and
board statuses in it are filled from the sync bridge and the cabinet), of every intent the UI
posts, and the `UiControllerPort` protocol. Holds no behaviour and never does I/O. It lives outside
`kiosk/ui/` so that the controller, `kiosk/degraded.py` and the sync bridge depend on this
module, not on the UI package (import-linter contracts in pyproject.toml; docs/architecture.md).

Who owns what:
- The controller owns orders, stock, the cart and the mode. The cart lives in the controller
  (the UI posts `AddToCart` / `SetQuantity` and draws `ViewState.cart`), so the per-order limits
  (`max_cart_items`, stock left) are enforced in one place and a cart survives a UI restart.
- The UI owns only presentation state: which product page or detail is open, the language,
  the keypad contents, the inactivity timer and the service-menu session. A product detail or
  the cart screen is UI navigation inside mode "shopping".
- `post()` never blocks: the controller queues the intent and later publishes a new snapshot,
  then calls the `notify` callback it was given, which posts a `VIEW_CHANGED` pygame event
  (thread-safe) so the UI loop wakes and reads `view()`.

Times: `expires_at` and similar deadlines are `Clock.monotonic()` seconds (same clock as the
UI's); `last_connection` / `last_ack` are wall-clock epoch seconds for display.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from kiosk.core.catalog import Product

__all__ = [
    "AddToCart",
    "BackToIdle",
    "BoardInfoView",
    "CancelOrder",
    "CartLine",
    "CheckSlot",
    "Checkout",
    "DispenseItem",
    "DispensingView",
    "DoneView",
    "EnterOfflineCode",
    "ExtendPayment",
    "Intent",
    "LockSales",
    "Mode",
    "NetworkInfo",
    "OpenDoor",
    "OutOfServiceView",
    "PaymentView",
    "PinView",
    "ProblemView",
    "ProductView",
    "Restock",
    "ServiceExit",
    "ServiceInfo",
    "ServiceLogin",
    "ServiceResult",
    "ServiceViewed",
    "SetQuantity",
    "SlotView",
    "StartShopping",
    "TestVend",
    "UiControllerPort",
    "ViewState",
]

Mode = Literal["idle", "shopping", "payment", "dispensing", "done", "problem", "out_of_service"]
DispenseStatus = Literal["pending", "vending", "delivered", "failed"]
RefundChannel = Literal["wechat", "alipay", "original"]
Priority = Literal["critical", "high", "normal", "low"]

#: Message keys the UI can show on the problem screen (`ProblemView.message_key`); each is in
#: both locale catalogs as `problem.<key>`.
PROBLEM_KEYS = (
    "vend_failed",
    "partly_delivered",
    "payment_timeout",
    "paid_after_cancel",
    "door_not_closed",
    "system_error",
)
#: Reasons for mode "out_of_service" (`OutOfServiceView.reason_key`), in catalogs as `oos.<key>`.
OUT_OF_SERVICE_KEYS = (
    "updating",
    "sales_locked",
    "sold_out",
    "board_offline",
    "storage_error",
    "network_down",
    "door_open",
    "starting",
    "temperature",
    "store_corrupt",
    "store_damaged",
    "disk_low",
)


# --- view state ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProductView:
    """A product on sale here, with the number of items left in all its slots."""

    product: Product
    stock_left: int
    # why it cannot be bought although it may have stock: "" or "too_warm" (a chilled product
    # stopped because the cabinet is too warm, kiosk.core.chilled); stock_left is then 0
    unavailable: str = ""

    @property
    def sold_out(self) -> bool:
        return self.stock_left <= 0


@dataclass(frozen=True, slots=True)
class CartLine:
    product_id: str
    qty: int
    price_fen: int  # unit price, frozen when added
    total_fen: int  # price_fen * qty


@dataclass(frozen=True, slots=True)
class PaymentView:
    order_id: str
    pay_url: str  # shown as a QR code
    amount_fen: int
    lines: tuple[CartLine, ...]
    expires_at: float  # monotonic seconds
    can_extend: bool
    extensions_left: int
    offline_code_tries_left: int
    code_entry_locked: bool
    last_code_rejected: bool = False  # the last offline code entered was wrong


@dataclass(frozen=True, slots=True)
class DispenseItem:
    """One unit being dispensed (a line with qty 3 is three items)."""

    product_id: str
    slot_no: int
    status: DispenseStatus
    door: int | None = None  # locker cabinets: the door that opens for this item


@dataclass(frozen=True, slots=True)
class DispensingView:
    order_id: str
    items: tuple[DispenseItem, ...]
    open_door: int | None = None  # a locker door is open now: tell the shopper which one


@dataclass(frozen=True, slots=True)
class DoneView:
    order_id: str
    receipt_url: str
    paid_fen: int


@dataclass(frozen=True, slots=True)
class ProblemView:
    message_key: str  # one of PROBLEM_KEYS
    params: Mapping[str, str | int] = field(default_factory=dict)
    refund_fen: int = 0  # 0: nothing is refunded (nothing was charged, or all delivered)
    refund_channel: RefundChannel = "original"
    order_id: str = ""
    failed: tuple[str, ...] = ()  # product id of every item not dispensed (named on screen)


@dataclass(frozen=True, slots=True)
class OutOfServiceView:
    reason_key: str  # one of OUT_OF_SERVICE_KEYS
    code: str = ""  # for the technician: a service code and what to run (shown small)


@dataclass(frozen=True, slots=True)
class SlotView:
    slot_no: int
    product_id: str | None
    kind: Literal["spiral", "locker"]
    capacity: int
    count: int


@dataclass(frozen=True, slots=True)
class BoardInfoView:
    connected: bool
    address: int = 0
    firmware: str = ""
    counters: Mapping[str, int] = field(default_factory=dict)  # link counters, e.g. retransmits


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    online: bool
    interface: str = ""
    address: str = ""
    broker: str = ""


@dataclass(frozen=True, slots=True)
class PinView:
    """The service PIN's lockout as the controller keeps it (in the store, across restarts).

    The UI checks a PIN only when `ready` (the controller has published its lockout) and not
    `locked`; after posting a `ServiceLogin` it waits until `attempts` has grown, so every
    attempt is counted before the next one is checked."""

    ready: bool = False
    attempts: int = 0  # ServiceLogin intents the controller has handled since it started
    failures: int = 0  # wrong PINs in a row
    locked_until: float | None = None  # on the UI's clock (`Clock.monotonic`)
    tries_left: int = 0  # wrong PINs still free of a delay


@dataclass(frozen=True, slots=True)
class ServiceResult:
    """The last service action's outcome for the screen to word in its language: `key` is
    `result.<key>` in the catalogs (`outcome`, when given, is a board `Outcome` name, worded as
    `outcome.<name>` when the catalogs know it)."""

    key: str
    params: Mapping[str, str | int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """What the technician's service menu shows."""

    kiosk_id: str = ""
    version: str = ""
    sales_locked: bool = False
    queue_depths: Mapping[str, int] = field(default_factory=dict)  # priority -> messages waiting
    last_connection: float | None = None  # wall-clock epoch seconds
    last_ack: float | None = None  # last end-to-end acknowledgement from the province
    boards: tuple[BoardInfoView, ...] = ()
    network: NetworkInfo = field(default_factory=lambda: NetworkInfo(online=False))
    slots: tuple[SlotView, ...] = ()
    last_result: str = ""  # short outcome of the last service action (English, for logs)
    result: ServiceResult | None = None  # the same, for the screen to word (None: show as is)
    update_history: tuple[str, ...] = ()  # "MM-DD HH:MM <version> <step>", newest first
    pin: PinView = field(default_factory=PinView)
    # the cabinet's temperature as chilled goods see it (None: no reading, or it is too old),
    # the humidity (Modbus sensor only) and the chilled products stopped for temperature
    temperature_c: float | None = None
    humidity_pct: float | None = None
    chilled_stopped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ViewState:
    """One immutable snapshot. `seq` grows with every snapshot so the UI can skip repeats."""

    seq: int
    mode: Mode
    products: tuple[ProductView, ...] = ()
    cart: tuple[CartLine, ...] = ()
    max_cart_items: int = 5
    service_phone: str = ""
    payment: PaymentView | None = None
    dispensing: DispensingView | None = None
    done: DoneView | None = None
    problem: ProblemView | None = None
    out_of_service: OutOfServiceView | None = None
    service: ServiceInfo = field(default_factory=ServiceInfo)
    #: The link to the province: True connected, False down (a payment is then confirmed only
    #: by the code the shopper's phone shows, typed on the kiosk), None unknown (no link set up).
    province_online: bool | None = None

    @property
    def offline(self) -> bool:
        """The province link is known to be down."""
        return self.province_online is False

    @property
    def cart_total_fen(self) -> int:
        return sum(line.total_fen for line in self.cart)

    @property
    def cart_count(self) -> int:
        return sum(line.qty for line in self.cart)

    def product(self, product_id: str) -> ProductView | None:
        for pv in self.products:
            if pv.product.product_id == product_id:
                return pv
        return None

    def qty_in_cart(self, product_id: str) -> int:
        return sum(line.qty for line in self.cart if line.product_id == product_id)


# --- intents ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartShopping:
    """The shopper touched the attract screen."""


@dataclass(frozen=True, slots=True)
class AddToCart:
    product_id: str


@dataclass(frozen=True, slots=True)
class SetQuantity:
    product_id: str
    qty: int  # 0 removes the line


@dataclass(frozen=True, slots=True)
class Checkout:
    """Freeze the cart into an order and start payment."""


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Cancel the order being paid (the shopper tapped cancel)."""


@dataclass(frozen=True, slots=True)
class ExtendPayment:
    """The shopper asked for more time on the payment screen."""


@dataclass(frozen=True, slots=True)
class EnterOfflineCode:
    code: str  # digits as typed


@dataclass(frozen=True, slots=True)
class BackToIdle:
    """Inactivity timeout or 'finish': drop the cart and show the attract screen."""

    reason: Literal["timeout", "finished", "shopper"] = "shopper"


@dataclass(frozen=True, slots=True)
class ServiceLogin:
    """A PIN attempt at the service menu (logged and sent up as an event)."""

    ok: bool
    locked_out: bool = False  # the attempt was refused because the menu is locked
    technician: str = ""  # the id whose PIN matched ("" when none did)


@dataclass(frozen=True, slots=True)
class ServiceExit:
    reason: Literal["exit", "timeout"] = "exit"


@dataclass(frozen=True, slots=True)
class ServiceViewed:
    """The technician opened a read-only panel (stock report, sync, board, network, version)."""

    panel: str


@dataclass(frozen=True, slots=True)
class Restock:
    slot: int
    count: int | None  # None: fill to capacity


@dataclass(frozen=True, slots=True)
class TestVend:
    slot: int


@dataclass(frozen=True, slots=True)
class CheckSlot:
    """Check a slot without running it (nothing drops; what the board can look at)."""

    slot: int


@dataclass(frozen=True, slots=True)
class OpenDoor:
    slot: int


@dataclass(frozen=True, slots=True)
class LockSales:
    locked: bool


Intent = (
    StartShopping
    | AddToCart
    | SetQuantity
    | Checkout
    | CancelOrder
    | ExtendPayment
    | EnterOfflineCode
    | BackToIdle
    | ServiceLogin
    | ServiceExit
    | ServiceViewed
    | Restock
    | TestVend
    | CheckSlot
    | OpenDoor
    | LockSales
)


class UiControllerPort(Protocol):
    """What the UI needs from the controller."""

    def post(self, intent: Intent) -> None:
        """Queue an intent; never blocks."""
        ...

    def view(self) -> ViewState:
        """The latest published snapshot; cheap, never blocks on I/O."""
        ...

    def set_notify(self, notify: Callable[[], None]) -> None:
        """Register the callback to call (from any thread) after publishing a new snapshot."""
        ...
