"""Persistence of actions: everything a step decided goes to the store in ONE transaction.

Owns: the commit of a sale step (order, stock, reservations, ledger record, refund, alarm and
their outbox records, the board's anchor tx), the checkout transaction, alarms, the slots taken
out of service, and whether the store is writable. The outbox records of a step: `sale`,
`refund_due`, `alarm` (kiosk.sync.records.controller_alarm), `order` when the order entered
dispensing ("paid") or a final state, and `stock` for the stock log rows it wrote (the stock
feed, kiosk.sync.stockfeed, pumped inside the step's transaction; `pump_stock` on every tick
copies the rows other writers left). Calls `on_commit` after a transaction that
may have appended outbox records (the sync client's `wake`).

Never: carries out an action that is not a write (vends, queries and views are the shell's, and
only after this commit returned True); swallows a failed write silently (it marks the store
unwritable, which takes the kiosk out of service until a probe write works).
Crash tests (kiosk.controller.crashpoints) wrap `commit` and `checkout` of an instance.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from kiosk.clock import Clock
from kiosk.core import cart as cartlib
from kiosk.core import sale
from kiosk.core.catalog import Catalog
from kiosk.core.ledger import LedgerError, record_to_dict
from kiosk.core.planogram import Planogram
from kiosk.core.stock import StockError
from kiosk.log import log_event
from kiosk.store import Store, StoreError
from kiosk.store.orders import ORDER_SEQ_LIMIT, OrderRepo
from kiosk.sync.ledger_head import HeadSigner
from kiosk.sync.outbox import OutboxError, Priority
from kiosk.sync.records import RecordSink as RecordSink  # re-exported: kiosk.controller
from kiosk.sync.records import (
    append_selftest,
    controller_alarm,
    order_body,
    order_event_id,
)
from kiosk.sync.stockfeed import StockFeed

log = logging.getLogger("kiosk.controller")

BAD_SLOTS = "slots.out_of_service"  # settings key: JSON list of slots taken out by alarms
ANCHOR = "board.anchor_tx."  # settings key prefix + board address: last tx the board recorded
FEED_BATCHES_PER_TICK = 5
STORE_ERRORS = (StoreError, sqlite3.Error, OutboxError, OSError, LedgerError)

# The order states a province hears of (events/order): paid = entered dispensing.
_PAID_STATES = (sale.State.DISPENSING, sale.State.SUSPENDED)

# Actions carried out after the commit, not written by it.
_NOT_STORED = (sale.Vend, sale.Unlock, sale.QueryOutcome, sale.QueryPaymentStatus, sale.Show)


def writes(actions: list[sale.Action], anchor: tuple[int, int] | None) -> bool:
    """Does committing this step write anything?"""
    return anchor is not None or any(not isinstance(a, _NOT_STORED) for a in actions)


class Persistence:
    def __init__(
        self,
        store: Store,
        repo: OrderRepo,
        sink: RecordSink | None,
        clock: Clock,
        kiosk_id: str,
        on_commit: Callable[[], None] | None,
    ) -> None:
        self.store = store
        self.repo = repo
        self.sink = sink
        self.clock = clock
        self.kiosk_id = kiosk_id
        self.on_commit = on_commit
        self.writable = True
        self.bad_slots: set[int] = set(self._load_bad_slots())
        self.head_signer: HeadSigner | None = None  # signs sale records' heads (device key)
        self.stock_feed = StockFeed(store, sink, kiosk_id) if sink is not None else None
        self._feed_error = ""

    # --- a sale step --------------------------------------------------------------------

    def commit(
        self,
        order: sale.Order,
        actions: list[sale.Action],
        anchor: tuple[int, int] | None,
        before: sale.Order | None,
    ) -> bool:
        """Write every stored action of one step (and the anchor) in one transaction. `before`:
        the open order as it was before the step. False: nothing was written."""
        if not writes(actions, anchor):
            return True
        stored = [a for a in actions if not isinstance(a, _NOT_STORED)]
        now = self.clock.time()
        try:
            with self.store.transaction() as conn:
                for a in stored:
                    self._store_action(conn, a, now, before)
                if anchor is not None:
                    self._set(conn, f"{ANCHOR}{anchor[0]}", str(anchor[1]))
                if any(isinstance(a, sale.StockDelivered) for a in stored):
                    self._pump(conn)
        except STORE_ERRORS as e:
            self.failed(e, order.order_id)
            return False
        self.writable = True
        self.committed()
        return True

    def _store_action(
        self, conn: sqlite3.Connection, a: sale.Action, now: float, before: sale.Order | None
    ) -> None:
        if isinstance(a, sale.Persist):
            self._order_event(conn, a.order, now)
            self.repo.save(conn, a.order, now)
        elif isinstance(a, sale.StockDelivered):
            self._stock_delivered(conn, a, now, before)
        elif isinstance(a, sale.ReleaseReservation):
            self.repo.release(conn, a.order_id)
        elif isinstance(a, sale.RecordSale):
            known = conn.execute(
                "SELECT 1 FROM ledger WHERE order_id = ?", (a.order.order_id,)
            ).fetchone()
            rec = self.repo.append_ledger(conn, a.order, now)
            if known is None and self.sink is not None:
                body = record_to_dict(rec)
                self.sink.append(
                    "sale",
                    body if self.head_signer is None else self.head_signer.signed(body),
                    Priority.CRITICAL,
                    event_id=f"sale-{a.order.order_id}",
                    conn=conn,
                )
        elif isinstance(a, sale.RefundDue):
            self._refund_due(conn, a, now)
        elif isinstance(a, sale.Alarm):
            self.alarm(conn, a.kind.value, a.order_id, a.detail, a.slot_no)
            if a.slot_no is not None and a.kind is sale.AlarmKind.SLOT_FAULT:
                self.bad_slots.add(a.slot_no)
                self.save_bad_slots(conn)

    def _stock_delivered(
        self,
        conn: sqlite3.Connection,
        a: sale.StockDelivered,
        now: float,
        before: sale.Order | None,
    ) -> None:
        result = self.repo.stock_sale(conn, a.slot_no, a.tx, now)
        ln = before.lines[a.line_index] if before is not None else None
        first = [ln.tried_slots[0]] if ln is not None and ln.tried_slots else []
        self.repo.unreserve_one(conn, a.order_id, [a.slot_no, *first])
        if isinstance(result, StockError):
            detail = f"delivered from slot {a.slot_no} (tx {a.tx}) but stock says: {result}"
            self.alarm(conn, sale.AlarmKind.STOCK_MISMATCH.value, a.order_id, detail, None)

    def _order_event(self, conn: sqlite3.Connection, order: sale.Order, now: float) -> None:
        """An `order` record (CRITICAL) when this write moves the order into dispensing (paid)
        or into a final state; the state on disk before the write decides (a repeated write of
        the same state, e.g. on recovery, adds nothing)."""
        if self.sink is None:
            return
        row = conn.execute("SELECT state FROM orders WHERE order_id = ?", (order.order_id,))
        found = row.fetchone()
        old = None if found is None else str(found[0])
        if order.state in _PAID_STATES:
            if old in {s.value for s in _PAID_STATES}:
                return
            state, reason = "paid", ""
        elif order.state in sale.FINAL_STATES and old != order.state.value:
            state = order.state.value
            reason = ""
            if order.state is sale.State.CANCELLED and order.cancel_reason is not None:
                reason = order.cancel_reason.value
            elif order.state is not sale.State.COMPLETED and order.refund_reason is not None:
                reason = order.refund_reason.value
        else:
            return
        body = order_body(
            order_id=order.order_id,
            state=state,
            reason=reason,
            total_fen=order.total_fen,
            paid_fen=order.paid_fen,
            at=now,
        )
        event_id = order_event_id(order.order_id, state)
        self.sink.append("order", body, Priority.CRITICAL, event_id=event_id, conn=conn)

    def _refund_due(self, conn: sqlite3.Connection, a: sale.RefundDue, now: float) -> None:
        if not self.repo.add_refund(conn, a.order_id, a.amount_fen, a.reason, a.provider_ref, now):
            return
        key = a.provider_ref if a.reason is sale.RefundReason.DOUBLE_PAYMENT else ""
        if self.sink is not None:
            self.sink.append(
                "refund_due",
                {
                    "order_id": a.order_id,
                    "amount_fen": a.amount_fen,
                    "reason": a.reason.value,
                    "provider_ref": a.provider_ref,
                },
                Priority.CRITICAL,
                event_id=f"refund-{a.order_id}-{a.reason.value}-{key}",
                conn=conn,
            )

    # --- checkout -----------------------------------------------------------------------

    def checkout(
        self,
        cart: cartlib.Cart,
        catalog: Catalog,
        planogram: Planogram,
        rules: sale.SaleRules,
        now: float,
    ) -> tuple[sale.Order, list[sale.Action]] | None:
        """The cart becomes an order (number, reservations, AWAITING_PAYMENT) in one
        transaction. None: the store failed. Raises CartError (nothing written)."""
        try:
            with self.store.transaction() as conn:
                seq = self.repo.next_order_seq(conn)
                if seq > ORDER_SEQ_LIMIT:
                    raise StoreError(f"order sequence exhausted ({seq})")
                order, taken = cartlib.checkout(
                    cart,
                    catalog,
                    planogram,
                    self.store.stock.levels(),
                    self.repo.reserved(conn),
                    kiosk_id=self.kiosk_id,
                    order_seq=seq,
                    store_epoch=self.store.epoch,
                    rules=rules,
                    out_of_service=self.bad_slots,
                )
                new, actions = sale.step(order, sale.CheckoutStarted(now))
                self.repo.save(conn, new, now)
                self.repo.reserve(conn, new.order_id, taken)
        except STORE_ERRORS as e:
            self.failed(e, "checkout")
            return None
        return new, actions

    # --- alarms, slots, failures --------------------------------------------------------

    def alarm(
        self, conn: sqlite3.Connection, kind: str, order_id: str, detail: str, slot: int | None
    ) -> None:
        now = self.clock.time()
        n = self.repo.add_alarm(conn, kind, order_id, detail, slot, now)
        log_event(
            log, "alarm", logging.WARNING, kind=kind, order=order_id, slot=slot, detail=detail
        )
        if self.sink is not None:
            body = controller_alarm(kind, order_id, slot, detail)
            self.sink.append(
                "alarm", body, Priority.HIGH, event_id=self._alarm_event_id(n), conn=conn
            )

    def alarm_alone(self, kind: str, order_id: str, detail: str, slot: int | None) -> None:
        """An alarm in a transaction of its own."""
        try:
            with self.store.transaction() as conn:
                self.alarm(conn, kind, order_id, detail, slot)
        except STORE_ERRORS as e:
            self.failed(e, "alarm")
        self.committed()

    def _alarm_event_id(self, n: int) -> str:
        """`alarm-<kiosk>-<store epoch>-<n>`: alarm numbers restart with a new store, the epoch
        keeps the ids of two stores apart (the province deduplicates by event id)."""
        epoch = self.store.epoch
        return f"alarm-{self.kiosk_id}-{epoch}-{n}" if epoch else f"alarm-{self.kiosk_id}-{n}"

    # --- the stock feed -----------------------------------------------------------------

    def _pump(self, conn: sqlite3.Connection) -> None:
        """Copy the step's stock log rows inside its transaction. A refused copy (outbox full)
        leaves them for the next tick: the sale itself must not fail for a HIGH record."""
        if self.stock_feed is None:
            return
        try:
            self.stock_feed.pump(conn)
        except OutboxError as e:
            self._feed_failed(e)

    def pump_stock(self) -> None:
        """Copy stock log rows written by anyone (technician, a `kiosk` command in a shell,
        a planogram from the province) into the outbox, in a transaction of its own; then
        wake the sync client. Called on every tick and after a technician's stock change."""
        if self.stock_feed is None:
            return
        copied = 0
        try:
            for _ in range(FEED_BATCHES_PER_TICK):  # a long backlog: a few batches per tick
                if not self.stock_feed.pending():
                    break
                copied += self.stock_feed.pump()
        except STORE_ERRORS as e:
            self._feed_failed(e)
        else:
            self._feed_error = ""
        if copied:
            self.committed()

    def _feed_failed(self, e: BaseException) -> None:
        text = f"{type(e).__name__}: {e}"
        if text != self._feed_error:  # once per distinct problem, not on every tick
            self._feed_error = text
            log_event(log, "stock_feed.failed", logging.ERROR, error=text)

    def slot_back(self, slot: int) -> None:
        """A restocked slot is back in service."""
        if slot in self.bad_slots:
            self.bad_slots.discard(slot)
            with contextlib.suppress(*STORE_ERRORS), self.store.transaction() as conn:
                self.save_bad_slots(conn)

    def _load_bad_slots(self) -> list[int]:
        try:
            value = self.store.settings.get_json(BAD_SLOTS, [])
        except StoreError:
            return []
        return [int(s) for s in value] if isinstance(value, list) else []

    def save_bad_slots(self, conn: sqlite3.Connection) -> None:
        self._set(conn, BAD_SLOTS, json.dumps(sorted(self.bad_slots)))

    @staticmethod
    def _set(conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def failed(self, e: BaseException, what: str) -> None:
        self.writable = False
        log_event(
            log, "store.write_failed", logging.ERROR, what=what, error=f"{type(e).__name__}: {e}"
        )

    def committed(self) -> None:
        if self.on_commit is not None:
            try:
                self.on_commit()
            except Exception:
                log.exception("controller.on_commit_failed")

    def selftest(self, body: Mapping[str, Any]) -> bool:
        """A `selftest` record, numbered by the store, in a transaction of its own."""
        if self.sink is None:
            return False
        try:
            append_selftest(self.store, self.sink, self.kiosk_id, body)
        except STORE_ERRORS as e:
            self.failed(e, "selftest")
            return False
        self.committed()
        return True

    def append(self, kind: str, body: Mapping[str, Any], priority: Priority) -> bool:
        """One outbox record in a transaction of its own (technician actions)."""
        if self.sink is None:
            return False
        try:
            self.sink.append(kind, body, priority)
        except STORE_ERRORS as e:
            self.failed(e, kind)
            return False
        self.committed()
        return True
