"""The running orders: feeding the sale machine (`kiosk.core.sale`) and carrying out its actions.

Owns: the open orders, the txs with a dispense job, recovery at start, board outcomes and
payment confirmations for orders. One step is: `sale.step`, then `Persistence.commit` of what
it decided, then (only if that committed) the rest: vend and query jobs, payment status
queries, what to show (told to the shopping session as `OrderShown` / `OrderStepped`).

Never: sends a vend before the step that decided it is committed; decides a transition itself;
trusts a payment it did not verify with the province's key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from kiosk.clock import Clock
from kiosk.controller.inbox import QueryJob, Reported, Unknown, VendJob
from kiosk.controller.persist import Persistence, writes
from kiosk.core import cart as cartlib
from kiosk.core import sale, session
from kiosk.core.catalog import Catalog
from kiosk.core.payment import (
    ConfirmationRejected,
    Payment,
    PaymentConfirmation,
    PaymentStatusQuery,
    PaymentStatusReply,
    RejectReason,
    confirmation_from_dict,
    verify_confirmation,
    verify_status_reply,
)
from kiosk.core.planogram import Planogram
from kiosk.hardware.protocol import Outcome
from kiosk.log import log_event
from kiosk.store import Store
from kiosk.store.orders import OrderRepo

log = logging.getLogger("kiosk.controller")


class Sales:
    def __init__(
        self,
        store: Store,
        repo: OrderRepo,
        persist: Persistence,
        clock: Clock,
        kiosk_id: str,
        province_public_key: bytes | None,
        planogram: Callable[[], Planogram],
        put_job: Callable[[VendJob | QueryJob], None],
        tell: Callable[[session.Input], None],
    ) -> None:
        self.store = store
        self.repo = repo
        self.persist = persist
        self.clock = clock
        self.kiosk_id = kiosk_id
        self.province_public_key = province_public_key
        self._planogram = planogram
        self._put_job = put_job
        self._tell = tell
        self.payment_query: Callable[[PaymentStatusQuery], None] | None = None
        # kiosk time -> the province's time (the sync layer's clock-offset estimate): what the
        # province checks the pay URL's expiry against, and what confirmations are fresh by,
        # so a kiosk whose clock is years off still sells. Identity until sync sets it.
        self.province_time: Callable[[float], float] = lambda t: t
        # the province signing keys confirmations are verified with: the sync layer's keyring
        # (changed only by root-signed key sets, so a retired key is dead here too); without
        # sync, or with an explicit trust key (test payments), `province_public_key` alone
        self.province_keys: Callable[[], list[bytes]] | None = None
        # a province message refused here: (what, reason, detail) -> the sync layer's count
        # and rate-limited SYNC_REJECTED alarm (kiosk.sync.rejections). None until sync sets it.
        self.payment_rejected: Callable[[str, str, str], None] | None = None
        self.orders: dict[str, sale.Order] = {}  # open orders
        self.inflight: set[int] = set()  # txs with a worker job

    def load(self, order_id: str) -> sale.Order | None:
        return self.orders.get(order_id) or self.repo.get(order_id)

    # --- stepping -----------------------------------------------------------------------

    def feed(
        self, order: sale.Order, inp: sale.Input, anchor: tuple[int, int] | None = None
    ) -> sale.Order:
        """One step: commit what it decided, then carry out the rest. Returns the new order
        (the old one when the step was refused or could not be committed)."""
        if isinstance(inp, sale.PaymentConfirmed | sale.OfflineCodeEntered):
            # goods stopped for temperature since checkout are not dispensed (refunded)
            inp = replace(inp, withheld=self.persist.chilled_slots)
        try:
            new, actions = sale.step(order, inp)
        except sale.SaleError as e:
            log_event(log, "sale.rejected", logging.WARNING, order=order.order_id, reason=str(e))
            return order
        before = self.orders.get(order.order_id)
        if not self.persist.commit(new, actions, anchor, before):
            return order
        if writes(actions, anchor):
            if new.state in sale.FINAL_STATES:
                self.orders.pop(new.order_id, None)
            else:
                self.orders[new.order_id] = new
        self._tell(session.OrderStepped(new.order_id, new.state))
        self.after(new, actions)
        return new

    def after(self, order: sale.Order, actions: list[sale.Action]) -> None:
        for a in actions:
            if isinstance(a, sale.Vend | sale.Unlock):
                self.inflight.add(a.tx)
                self._put_job(VendJob(a.order_id, a.slot_no, a.tx, isinstance(a, sale.Unlock)))
            elif isinstance(a, sale.QueryOutcome):
                if a.tx not in self.inflight:
                    self.inflight.add(a.tx)
                    slot = order.lines[a.line_index].slot_no
                    self._put_job(QueryJob(a.order_id, slot, a.tx))
            elif isinstance(a, sale.QueryPaymentStatus):
                q = PaymentStatusQuery(self.kiosk_id, a.order_id, int(self.clock.time()))
                if self.payment_query is not None:
                    try:
                        self.payment_query(q)
                    except Exception:
                        log.exception("controller.payment_query_failed")
            elif isinstance(a, sale.Show):
                self._tell(session.OrderShown(a.order.order_id, a.order.state, a.view))
                log_event(log, "sale.show", order=a.order.order_id, view=a.view.value)

    def feed_all(self, make: Callable[[float], sale.Input]) -> None:
        now = self.clock.time()
        for order in list(self.orders.values()):
            self.feed(order, make(now))

    def tick(self, board_online: bool | None) -> None:
        now = self.clock.time()
        for order in list(self.orders.values()):
            if order.state is sale.State.SUSPENDED and board_online:
                order = self.feed(order, sale.Recovery(now))
            self.feed(order, sale.Tick(now))

    def recover(self) -> None:
        """Resume every unfinished order (Recovery: awaiting payment -> keep waiting or expire;
        dispensing -> ask the board about the running tx, never vend it again). Closed orders
        need nothing: their record and refund were committed with their final state."""
        now = self.clock.time()
        orders = self.repo.unfinished()
        log_event(log, "controller.recovery", unfinished=len(orders))
        for order in orders:
            self.orders[order.order_id] = order
            self.feed(order, sale.Recovery(now))

    def checkout(
        self,
        cart: cartlib.Cart,
        catalog: Catalog,
        rules: sale.SaleRules,
    ) -> cartlib.CartError | None:
        """The session's PlaceOrder. Returns why the cart was refused (None: placed, or the
        store failed and is marked unwritable)."""
        try:
            placed = self.persist.checkout(
                cart, catalog, self._planogram(), rules, self.clock.time()
            )
        except cartlib.CartError as e:
            log_event(log, "cart.checkout_refused", reason=str(e))
            return e
        if placed is None:
            return None
        new, actions = placed
        log_event(log, "sale.checkout", order=new.order_id, total_fen=new.total_fen)
        self.orders[new.order_id] = new
        self._tell(session.OrderPlaced(new.order_id))
        self.after(new, actions)
        return None

    # --- board outcomes -----------------------------------------------------------------

    def on_reported(self, r: Reported) -> None:
        self.inflight.discard(r.tx)
        order = self.load(r.order_id)
        if order is None:
            log_event(log, "sale.report_for_unknown_order", logging.WARNING, tx=r.tx)
            return
        planogram = self._planogram()
        alternatives: tuple[Any, ...] = ()
        _seq, k, _a = sale.split_tx(r.tx)
        if k < len(order.lines):
            ln = order.lines[k]
            alternatives = cartlib.alternatives_for(
                ln.product_id,
                planogram,
                self.store.stock.levels(),
                self.repo.reserved(),
                exclude=ln.tried_slots,
                out_of_service=self.persist.bad_slots | self.persist.chilled_slots | {r.slot_no},
            )
        slot = planogram.slots.get(r.slot_no)
        anchor = (slot.board, r.tx) if r.recorded and slot is not None else None
        self.feed(
            order, sale.VendReported(r.tx, r.outcome, self.clock.time(), alternatives), anchor
        )

    def on_unknown(self, u: Unknown) -> None:
        self.inflight.discard(u.tx)
        order = self.orders.get(u.order_id)
        if order is not None:
            self.feed(order, sale.BoardWentOffline(self.clock.time()))

    def tx_in_use(self, job: VendJob, known: Outcome) -> None:
        """The board knew a tx before it was first sent: alarm, and retry the line."""
        detail = (
            f"the board already knew tx {job.tx} ({known.name}) before it was first sent; "
            "not sent, retried with a new tx"
        )
        self.persist.alarm_alone("tx_collision", job.order_id, detail, job.slot_no)
        self.on_reported(
            Reported(job.order_id, job.tx, job.slot_no, sale.VendOutcome.NOT_ACCEPTED, False)
        )

    # --- payments -----------------------------------------------------------------------

    def on_confirmation(self, raw: PaymentConfirmation | Mapping[str, Any]) -> None:
        c = raw if isinstance(raw, PaymentConfirmation) else confirmation_from_dict(raw)
        if isinstance(c, ConfirmationRejected):
            log_event(log, "payment.rejected", logging.WARNING, reason=c.reason.value)
            self._rejected("payment/confirm", c.reason.value, c.detail)
            return
        order = self.load(c.order_id)
        keys = self._trusted_keys()
        if not keys:
            log_event(log, "payment.rejected", logging.WARNING, reason="no province key")
            return
        amounts = {} if order is None else {order.order_id: order.total_fen}
        for key in keys:  # confirmations carry no key id: at most a few keys are valid at once
            result = verify_confirmation(
                c,
                province_public_key=key,
                kiosk_id=self.kiosk_id,
                order_amounts=amounts,
                now=self.province_time(self.clock.time()),
                order_created_at=self._created_in_province_time(order),
            )
            if not _bad_signature(result):
                break
        self._pay(order, result, c.order_id, "payment/confirm")

    def on_status_reply(self, reply: PaymentStatusReply) -> None:
        keys = self._trusted_keys()
        if not keys:
            return
        order = self.load(reply.order_id)
        amounts = {} if order is None else {order.order_id: order.total_fen}
        for key in keys:
            result = verify_status_reply(
                reply,
                province_public_key=key,
                kiosk_id=self.kiosk_id,
                order_amounts=amounts,
                now=self.province_time(self.clock.time()),
                order_created_at=self._created_in_province_time(order),
            )
            if not _bad_signature(result):
                break
        if result is not None:
            self._pay(order, result, reply.order_id, "orders/status/reply")

    def _rejected(self, what: str, reason: str, detail: str) -> None:
        if self.payment_rejected is not None:
            try:
                self.payment_rejected(what, reason, detail)
            except Exception:  # counting must never take the controller down
                log.exception("payment_rejected hook failed")

    def _trusted_keys(self) -> list[bytes]:
        if self.province_keys is not None:
            return self.province_keys()
        return [] if self.province_public_key is None else [self.province_public_key]

    def _created_in_province_time(self, order: sale.Order | None) -> float | None:
        if order is None or not order.created_at:
            return None
        return self.province_time(order.created_at)

    def _pay(
        self,
        order: sale.Order | None,
        result: Payment | ConfirmationRejected,
        order_id: str,
        what: str,
    ) -> None:
        if isinstance(result, ConfirmationRejected) or order is None:
            reason = result.reason.value if isinstance(result, ConfirmationRejected) else "?"
            log_event(log, "payment.rejected", logging.WARNING, order=order_id, reason=reason)
            detail = result.detail if isinstance(result, ConfirmationRejected) else ""
            self._rejected(what, reason if reason != "?" else "unknown_order", detail)
            return
        known = [p for p in (order.payment, *order.extra_payments) if p is not None]
        if any(p.provider_ref == result.provider_ref for p in known):
            # the province resends (and providers notify twice): the same payment, not a new one
            log_event(log, "payment.duplicate", order=order_id, ref=result.provider_ref)
        else:
            log_event(log, "payment.confirmed", order=order_id, ref=result.provider_ref)
        self.feed(order, sale.PaymentConfirmed(result, self.clock.time()))


def _bad_signature(result: object) -> bool:
    """A rejection for the signature alone: the next trusted key may still verify it."""
    return isinstance(result, ConfirmationRejected) and result.reason is RejectReason.BAD_SIGNATURE
