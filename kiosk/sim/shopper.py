"""The scripted shopper and the test payment signer: the one shopper of the demo, the chaos
suite, `kiosk run --script buy3` and the tests.

Owns: `Shopper` (taps by posting the same intents the touchscreen posts, reads the views the
controller publishes, pays with a `TestPaymentSource`), `script_buy3` (the headless script
behind `kiosk run --script buy3`) and `TestPaymentSource`. Used by kiosk.sim.commands
(`kiosk run --test-payments / --script`), kiosk.sim.demo_script (the demo's three purchases),
kiosk.sim.chaos (the chaos child's sales) and tests/support/kiosk_app.py.

TEST ONLY: `TestPaymentSource` signs confirmations with a throwaway key (or the province
simulator's) that the kiosk is then told to trust; a field kiosk never uses it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk import contract as ui
from kiosk.clock import Clock, SystemClock
from kiosk.controller import Controller
from kiosk.core.payment import PaymentConfirmation, sign_confirmation
from kiosk.core.sale import Order, State
from kiosk.headless import changed, describe

__all__ = ["Shopper", "TestPaymentSource", "script_buy3"]

Say = Callable[[str], None]


class TestPaymentSource:
    """TEST ONLY: a stand-in province that signs payment confirmations with a throwaway key."""

    __test__ = False  # not a pytest class

    def __init__(self, private_key: bytes | None = None) -> None:
        key = (
            Ed25519PrivateKey.from_private_bytes(private_key)
            if private_key is not None
            else Ed25519PrivateKey.generate()
        )
        self._private = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        self.public_key = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._n = 0

    def confirm(
        self, kiosk_id: str, order_id: str, amount_fen: int, now: float, method: str = "wechat"
    ) -> PaymentConfirmation:
        self._n += 1
        c = PaymentConfirmation(
            kiosk_id=kiosk_id,
            order_id=order_id,
            amount_fen=amount_fen,
            method=method,
            provider_ref=f"test-{order_id}-{self._n}",
            paid_at=int(now),
            event_id=uuid.uuid4().hex,
        )
        return sign_confirmation(self._private, c)


class Shopper:
    """A shopper in front of `controller`: taps, waits for views, pays with `payments`."""

    def __init__(
        self,
        controller: Controller,
        payments: TestPaymentSource | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.controller = controller
        self.payments = payments
        self.clock = clock or SystemClock()

    def view(self) -> ui.ViewState:
        return self.controller.view()

    def wait(self, pred: Callable[[ui.ViewState], bool], timeout: float) -> ui.ViewState | None:
        """The first view matching `pred` within `timeout` seconds, or None."""
        return self.controller.wait_view(pred, timeout)

    def expect(
        self, pred: Callable[[ui.ViewState], bool], what: str, timeout: float
    ) -> ui.ViewState:
        """As `wait`, but a timeout raises RuntimeError naming `what`."""
        v = self.wait(pred, timeout)
        if v is None:
            raise RuntimeError(f"timed out waiting for {what}; kiosk shows {self.view().mode}")
        return v

    def fill_cart(
        self, product_ids: Iterable[str], *, start: bool = True, say: Say | None = None
    ) -> None:
        """Tap "start" (unless `start` is False), then add each product (`say` each one)."""
        if start:
            self.controller.post(ui.StartShopping())
        for pid in product_ids:
            self.controller.post(ui.AddToCart(pid))
            if say is not None:
                say(f"add {pid}")

    def cart_of(self, n: int, timeout: float) -> ui.ViewState | None:
        return self.wait(lambda v: v.cart_count == n, timeout)

    def checkout(self) -> None:
        self.controller.post(ui.Checkout())

    def back_to_idle(self, reason: Literal["timeout", "finished", "shopper"] = "finished") -> None:
        self.controller.post(ui.BackToIdle(reason))

    def awaiting_payment(self) -> list[Order]:
        return [o for o in self.controller.repo.unfinished() if o.state is State.AWAITING_PAYMENT]

    def pay(self, order: Order) -> PaymentConfirmation:
        """Pay `order` with the test payment source (its confirmation goes to the inbox)."""
        if self.payments is None:
            raise RuntimeError("no test payment source")
        c = self.payments.confirm(
            order.kiosk_id, order.order_id, order.total_fen, self.clock.time()
        )
        self.controller.submit_confirmation(c)
        return c


# --- `kiosk run --script buy3` ------------------------------------------------------------------


BUY3_PENDING = "script.buy3.known"  # settings key: the order ids that existed before this run


def script_buy3(
    controller: Controller,
    payments: TestPaymentSource | None,
    say: Say,
    *,
    timeout: float = 120.0,
    clock: Clock | None = None,
    pay_via_province: bool = False,
) -> int:
    """A scripted shopper: buy three items and pay with the test payment source, or with
    `pay_via_province` print the pay URL (`pay url <url>`) and wait for the province's real
    confirmation (someone scans the code and pays).

    Every run buys three items, except one that finds the order a previous run made and did
    not see closed (that run was killed; the order ids that existed before it are kept in the
    store under BUY3_PENDING until its order closed): it finishes that order instead.
    Returns 0 when the order closed and the ledger is intact, 1 otherwise, and 1 when nothing
    was bought (the kiosk was not ready, nothing in stock, the cart was refused).
    """
    s = Shopper(controller, payments, clock=clock)
    settings, repo = controller.store.settings, controller.repo
    raw = settings.get(BUY3_PENDING)
    known = set(json.loads(raw)) if raw else {o.order_id for o in repo.all()}
    if raw is None:  # on disk before the checkout: a killed run is resumed, never redone
        settings.set(BUY3_PENDING, json.dumps(sorted(known)))
    mine = [o.order_id for o in repo.all() if o.order_id not in known]
    if mine:
        say(f"resuming order {mine[-1]} (made by an earlier run that did not finish)")
    else:
        if _order_three(s, say, timeout):
            s.wait(lambda v: v.mode != "shopping", timeout)
        mine = [o.order_id for o in repo.all() if o.order_id not in known]
        if not mine:
            settings.delete(BUY3_PENDING)
            say(f"nothing bought ({describe(s.view())})")
            return 1
    if not _pay_open_orders(s, say, timeout, pay_via_province):
        return 1
    if not _wait_all_closed(s, say, timeout):
        say("timed out waiting for the order to close")
        return 1
    for order_id in mine:
        order = repo.get(order_id)
        assert order is not None
        refund = sum(r.amount_fen for r in repo.refunds(order_id))
        say(
            f"order {order_id}: {order.state.value}, paid {order.paid_fen} fen, "
            f"delivered {order.delivered_fen} fen, refund due {refund} fen"
        )
    settings.delete(BUY3_PENDING)
    problems = repo.verify_ledger()
    say(f"ledger: {len(repo.ledger())} records, {len(problems)} problems")
    s.back_to_idle()
    return 0 if not problems else 1


def _order_three(s: Shopper, say: Say, timeout: float) -> bool:
    """From the attract screen: two of the first product in stock, one of the second, checkout."""
    v = s.wait(lambda v: v.mode == "idle", timeout)
    if v is None:
        say(f"kiosk not ready: {describe(s.view())}")
        return False
    say(describe(v))
    picks = [p.product.product_id for p in v.products if p.stock_left > 0]
    if not picks:
        say("nothing to sell")
        return False
    s.fill_cart([picks[0], picks[0], picks[1 % len(picks)]], say=say)
    v = s.cart_of(3, 10)
    if v is None:
        say(f"cart refused: {s.view().service.last_result}")
        return False
    say(describe(v))
    s.checkout()
    return True


def _pay_open_orders(s: Shopper, say: Say, timeout: float, pay_via_province: bool) -> bool:
    """Pay every order waiting for payment, or print its pay URL (`pay_via_province`)."""
    for order in s.awaiting_payment():
        if s.payments is None and not pay_via_province:
            say(f"order {order.order_id} waits for payment; no test payment source")
            return False
        v = s.wait(lambda v: v.mode == "payment", timeout)
        if v is not None:
            say(describe(v))
        if s.payments is None:
            if v is not None and v.payment is not None:
                say(f"pay url {v.payment.pay_url}")
            continue  # the province's confirmation arrives over MQTT
        c = s.pay(order)
        say(f"pay {order.order_id}: {order.total_fen} fen ({c.provider_ref})")
    return True


def _wait_all_closed(s: Shopper, say: Say, timeout: float) -> bool:
    """Say each new view until no order is open and the screen left payment/dispensing."""
    last = ""
    deadline = s.clock.monotonic() + timeout
    while s.clock.monotonic() < deadline:
        v = s.view()
        text = describe(v)
        if text != last:
            say(text)
            last = text
        if not s.controller.repo.unfinished() and v.mode not in ("payment", "dispensing"):
            return True
        s.wait(changed(v.seq), 0.5)
    return False
