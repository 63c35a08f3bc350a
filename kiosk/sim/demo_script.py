"""The demo's scripted shopper (`kiosk demo --headless`): three purchases against the real parts.

Owns: what the shopper does and what is checked along the way. The world around it (broker,
province simulator, pay page, board emulator) is built by kiosk.sim.demo and handed in as a
`DemoWorld`; the kiosk is a `kiosk.app.App` built in this process (headless is allowed to run
in-process) with its sync bridge, and the shopper is the one scripted shopper
(kiosk.sim.shopper.Shopper): it taps by posting the same intents the touchscreen posts.

1. a normal purchase, paid on the province's pay page exactly as a phone would (HTTP POST);
2. a purchase whose second product jams in the emulated motor (control channel `jam N`): the
   jammed line is refunded automatically;
3. a purchase paid by offline confirmation code while the broker is stopped; then the broker
   starts again and the sale record reaches the province.

Screenshots of the main screens go to `<workdir>/screens/`. Never fakes a result: every
number printed is read back from the kiosk's store or the province's database.
"""

from __future__ import annotations

import os
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from kiosk import contract as ui
from kiosk.app import App
from kiosk.core.payment import offline_code, parse_pay_url
from kiosk.sim.shopper import Shopper

__all__ = ["DemoWorld", "script_demo"]

Say = Callable[[str], None]


@dataclass
class DemoWorld:
    """What the shopper may touch outside the kiosk (built by kiosk.sim.demo)."""

    screens_dir: Path
    device_secret: bytes
    jam: Callable[[list[int]], str]  # jam these board addresses; returns the emulator's reply
    unjam: Callable[[list[int]], str]
    broker_stop: Callable[[], None]
    broker_start: Callable[[], None]
    sale_records: Callable[[], int]  # sale records the province has stored for this kiosk
    province_summary: Callable[[], str]
    chain_ok: Callable[[], tuple[bool, str]]
    screen_size: tuple[int, int] = (540, 960)
    language: str = "zh"
    timeout: float = 40.0
    shots: list[Path] = field(default_factory=list)


def _yuan(fen: int) -> str:
    return f"¥{fen // 100}.{fen % 100:02d}"


def _screen_for(v: ui.ViewState) -> str:
    return {
        "idle": "attract",
        "shopping": "cart" if v.cart else "catalog",
        "payment": "payment",
        "dispensing": "dispensing",
        "done": "done",
        "problem": "problem",
        "out_of_service": "out_of_service",
    }.get(v.mode, "attract")


class _Shopper(Shopper):
    """The shared shopper, plus screenshots and a phone that pays on the province's pay page."""

    def __init__(self, app: App, world: DemoWorld, say: Say) -> None:
        super().__init__(app.controller, clock=app.clock)
        self.app = app
        self.c = app.controller
        self.w = world
        self.say = say
        self.n = 0

    def shot(self, name: str, screen: str | None = None) -> None:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
        import pygame

        from kiosk.sim.render import render_once

        v = self.c.view()
        self.n += 1
        path = self.w.screens_dir / f"{self.n:02d}-{name}.png"
        name = screen or _screen_for(v)
        try:
            try:
                surf = render_once(name, self.w.screen_size, self.w.language, v)
            except KeyError as e:
                if v.problem is None:
                    raise
                # The controller's ProblemView lacks the counts the message needs
                # ({delivered}/{failed}/{count}); fill them from the order for the picture.
                v = self._with_counts(v)
                surf = render_once(name, self.w.screen_size, self.w.language, v)
                self.say(f"  (screenshot {path.name}: view lacked {e}; counts filled in)")
            pygame.image.save(surf, str(path))
            self.w.shots.append(path)
        except Exception as e:  # a screenshot is never worth failing the demo for
            self.say(f"  (screenshot {path.name} failed: {e!r})")

    def _with_counts(self, v: ui.ViewState) -> ui.ViewState:
        assert v.problem is not None
        order = next((o for o in self.c.repo.all() if o.order_id == v.problem.order_id), None)
        lines = order.lines if order is not None else ()
        delivered = sum(1 for ln in lines if ln.status.value == "delivered")
        failed = len(lines) - delivered
        params = {**v.problem.params, "delivered": delivered, "failed": failed, "count": failed}
        return replace(v, problem=replace(v.problem, params=params))

    def until(self, pred: Callable[[ui.ViewState], bool], what: str) -> ui.ViewState:
        return self.expect(pred, what, self.w.timeout)

    def idle(self) -> None:
        self.back_to_idle()
        self.until(lambda v: v.mode == "idle", "the attract screen")

    def buy(self, product_ids: list[str], label: str) -> ui.PaymentView:
        self.fill_cart(product_ids)
        n = len(product_ids)
        self.until(lambda v: v.cart_count == n, f"{n} items in the cart")
        self.shot(f"{label}-cart", "cart")
        self.checkout()
        v = self.until(lambda v: v.mode == "payment" and v.payment is not None, "the payment QR")
        assert v.payment is not None
        self.say(
            f"  order {v.payment.order_id}: {n} item(s), {_yuan(v.payment.amount_fen)}; "
            f"pay at {v.payment.pay_url}"
        )
        self.shot(f"{label}-payment")
        return v.payment

    def pay_on_phone(self, p: ui.PaymentView) -> None:
        """What the shopper's phone does: open the pay URL, press the WeChat Pay button."""
        with urllib.request.urlopen(p.pay_url, timeout=10) as r:
            page = r.read().decode("utf-8")
        assert "确认付款" in page, "the pay page did not show the order"
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(p.pay_url).query))
        form = urllib.parse.urlencode({**q, "method": "wechat"}).encode()
        base = p.pay_url.split("?", 1)[0]
        with urllib.request.urlopen(base, data=form, timeout=10) as r:
            done = r.read().decode("utf-8")
        assert "支付成功" in done, "the pay page did not confirm the payment"
        self.say("  phone: paid with WeChat Pay on the province's pay page")

    def settle(self, label: str) -> ui.ViewState:
        self.until(lambda v: v.mode in ("dispensing", "done", "problem"), "the dispense")
        v = self.c.view()
        if v.mode == "dispensing":
            self.shot(f"{label}-dispensing")
        v = self.until(lambda v: v.mode in ("done", "problem"), "the end of the order")
        self.shot(f"{label}-{v.mode}")
        if v.mode == "done" and v.done is not None:
            self.say(f"  kiosk: done, paid {_yuan(v.done.paid_fen)}")
        elif v.problem is not None:
            self.say(
                f"  kiosk: {v.problem.message_key}, refund {_yuan(v.problem.refund_fen)} "
                f"via {v.problem.refund_channel}"
            )
        return v


def _slot_addresses(app: App, product_id: str) -> list[int]:
    return sorted(s.address for s in app.store.planogram.load() if s.product_id == product_id)


def _wait(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


def script_demo(app: App, world: DemoWorld, say: Say = print) -> int:
    """Three purchases (paid / jam + refund / offline code while the broker is down).
    Returns 0 when all three closed as expected and the province has all the sale records."""
    s = _Shopper(app, world, say)
    world.screens_dir.mkdir(parents=True, exist_ok=True)
    v = s.until(lambda v: v.mode == "idle", "the kiosk to be ready")
    s.shot("attract")
    # Products from different slots, each with stock, in the catalog order.
    picks = [p.product.product_id for p in v.products if p.stock_left > 1]
    if len(picks) < 4:
        say(f"not enough products in stock ({len(picks)})")
        return 1
    s.fill_cart([])
    s.until(lambda v: v.mode == "shopping", "the catalog")
    s.shot("catalog", "catalog")
    s.back_to_idle("shopper")

    say("Purchase 1: paid on the phone")
    p1 = s.buy([picks[0]], "1")
    s.pay_on_phone(p1)
    r1 = s.settle("1")
    s.idle()

    say("Purchase 2: the second product's motor jams")
    jammed = _slot_addresses(app, picks[2])
    say(f"  emulator: jam {' '.join(map(str, jammed))} -> {world.jam(jammed)}")
    p2 = s.buy([picks[1], picks[2]], "2")
    s.pay_on_phone(p2)
    r2 = s.settle("2")
    say(f"  emulator: unjam -> {world.unjam(jammed)}")
    s.idle()

    say("Purchase 3: the broker is stopped; paid by offline confirmation code")
    _wait(lambda: world.sale_records() >= 2, world.timeout)
    before = world.sale_records()
    world.broker_stop()
    say("  broker stopped (the kiosk is offline)")
    p3 = s.buy([picks[3]], "3")
    params = parse_pay_url(p3.pay_url, {app.config.identity.kiosk_id: world.device_secret})
    assert params is not None
    code = offline_code(world.device_secret, params.order_id, params.amount_fen)
    say(f"  phone: the pay page shows the offline code {code[:4]} {code[4:]}; typed on the kiosk")
    s.shot("3-offline-code", "offline_code")
    s.controller.post(ui.EnterOfflineCode(code))
    r3 = s.settle("3")
    s.idle()
    time.sleep(1.0)
    offline_records = world.sale_records()
    say(f"  province sale records while offline: {offline_records} (before: {before})")
    world.broker_start()
    say("  broker started again")
    # the kiosk reconnects with its own jittered backoff (kiosk.sync.client), which may take a while
    reached = _wait(lambda: world.sale_records() >= 3, max(world.timeout, 60.0))
    say(f"  province sale records now: {world.sale_records()}")
    s.shot("attract-after", "attract")

    books_ok = _report(app, world, say)
    ok = r1.mode == "done" and r2.mode == "problem" and r3.mode == "done" and reached and books_ok
    return 0 if ok else 1


def _report(app: App, world: DemoWorld, say: Say) -> bool:
    """What happened, read back from the kiosk's store and the province; True when the chain is
    intact on both sides and the kiosk holds exactly three orders."""
    c = app.controller
    say("")
    say("Orders (kiosk store):")
    refunds = 0
    offline_paid = 0
    orders = c.repo.all()
    for o in orders:
        refund = sum(r.amount_fen for r in c.repo.refunds(o.order_id))
        refunds += 1 if refund else 0
        method = o.payment.method.value if o.payment is not None else "-"
        offline_paid += 1 if method == "offline-code" else 0
        say(
            f"  {o.order_id}  {o.state.value:<16} paid {_yuan(o.paid_fen):>8} "
            f"({method})  delivered {_yuan(o.delivered_fen):>8}  refund {_yuan(refund)}"
        )
    problems = c.repo.verify_ledger()
    say(f"Kiosk ledger: {len(c.repo.ledger())} records, {len(problems)} problems")
    say("Province:")
    say(world.province_summary())
    chain_ok, chain_text = world.chain_ok()
    say(chain_text)
    say(
        f"SUMMARY orders={len(orders)} refunds={refunds} offline_code_sales={offline_paid} "
        f"province_sale_records={world.sale_records()} chain={'OK' if chain_ok else 'BAD'} "
        f"screenshots={len(world.shots)}"
    )
    return chain_ok and not problems and len(orders) == 3
