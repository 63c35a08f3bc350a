"""The controller: the imperative shell around the sale machine (`kiosk.core.sale`).

Owns: the orders while they run, the shopper's cart, the out-of-service decision, the technician
actions (restock, test vend, lock sales) and the published `ViewState`. One thread takes every
input from one inbox (UI intents, payment confirmations, vend outcomes, board health, a 1 s
tick), feeds it to `sale.step`, commits everything the step decided (order, stock, reservations,
ledger record, refund, alarm and their outbox records) in ONE store transaction, and only then
carries out the rest (vend, query, show). Vends and outcome queries run on a dispense worker
thread so the inbox stays responsive; a monitor thread reads the board status.

Never: sends a vend before the step that decided it is committed; resends a vend (an unknown
outcome is asked with OUTCOME); calls a tx "never accepted" without proof (the board still
remembers an older tx of ours, so its memory was not lost since); decides a transition itself
(that is the core); blocks its inbox on serial I/O.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import shutil
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import kiosk
from kiosk import config as _config
from kiosk import contract as ui
from kiosk.clock import Clock
from kiosk.core import cart as cartlib
from kiosk.core import sale
from kiosk.core.catalog import Catalog
from kiosk.core.ledger import LedgerError, record_to_dict
from kiosk.core.payment import (
    ConfirmationRejected,
    Payment,
    PaymentConfirmation,
    PaymentMethod,
    PaymentStatusQuery,
    PaymentStatusReply,
    confirmation_from_dict,
    pay_url,
    verify_confirmation,
    verify_status_reply,
)
from kiosk.core.planogram import Planogram, SlotKind
from kiosk.core.stock import StockChange, StockError, StockReason
from kiosk.hardware.board import (
    BoardDriver,
    BoardError,
    BoardEvent,
    BoardOffline,
    BoardProtocolError,
    BoardRejected,
    BoardStatus,
    VendTimeout,
)
from kiosk.hardware.protocol import BoardReset, DoorEvent, Outcome
from kiosk.log import log_event
from kiosk.store import Store, StoreError
from kiosk.store.orders import ORDER_SEQ_LIMIT, IntegrityMark, OrderRepo
from kiosk.sync.outbox import OutboxError, Priority

__all__ = [
    "CRASH_ENV",
    "Controller",
    "RecordSink",
    "ServiceFacts",
    "crash_point",
    "out_of_service_reasons",
]

log = logging.getLogger("kiosk.controller")

CRASH_ENV = "KIOSK_CRASH_AT"  # test hook: "<point>:<n>" kills the process at the n-th point
CRASH_DELAY_ENV = "KIOSK_CRASH_DELAY_MS"  # for "vend_sent": how long after the send starts
SALES_LOCKED = "sales.locked"  # settings key: "1" = the province (or a technician) locked sales
BAD_SLOTS = "slots.out_of_service"  # settings key: JSON list of slots taken out by alarms
VERIFIED_THROUGH = "store.verified_through"  # settings key: IntegrityMark of the last check
ACCEPTED_DAMAGE = "store.accepted_damage"  # settings key: JSON list of problems a technician
# accepted with `kiosk store check --accept` (they no longer stop sales; new ones do)
WAL_HEADROOM_BYTES = 4 * 1024 * 1024  # SQLite's automatic checkpoint (1000 pages of 4 KiB)
CHECKPOINT_EVERY_S = 60.0  # fold the WAL back and truncate it at most this often, when idle
ANCHOR = "board.anchor_tx."  # settings key prefix + board address: last tx the board recorded

_STORE_ERRORS = (StoreError, sqlite3.Error, OutboxError, OSError, LedgerError)
_RUNNING = frozenset({Outcome.ACCEPTED, Outcome.IN_PROGRESS})
_RECORDED = frozenset(
    {
        Outcome.DELIVERED,
        Outcome.NOTHING_DROPPED,
        Outcome.JAMMED,
        Outcome.MOTOR_MISSING,
        Outcome.DOOR_OPENED_AND_CLOSED,
        Outcome.DOOR_NOT_OPENED,
        Outcome.DOOR_NOT_CLOSED,
        Outcome.INTERRUPTED,
        Outcome.LOCK_FAILED,
    }
)


# --- the crash hook (tests/chaos) -----------------------------------------------------------

_crash_lock = threading.Lock()
_crash_counts: dict[str, int] = {}


def _crash_plan() -> tuple[str, int] | None:
    text = os.environ.get(CRASH_ENV, "")
    name, sep, n = text.partition(":")
    if not sep or not n.isdigit():
        return None
    return name, int(n)


def _die(why: str) -> None:
    print(f"KIOSK_CRASH {why}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def crash_point(name: str) -> bool:
    """Count a persisted step; SIGKILL ourselves at the planned one. True when it is the one
    (only for points that kill later, e.g. "vend_sent")."""
    plan = _crash_plan()
    if plan is None:
        return False
    with _crash_lock:
        _crash_counts[name] = _crash_counts.get(name, 0) + 1
        hit = plan == (name, _crash_counts[name])
    if hit and name != "vend_sent":
        _die(f"{name}:{plan[1]}")
    return hit


# --- out of service -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceFacts:
    """What the out-of-service decision looks at."""

    board_online: bool | None  # None: not known yet (starting)
    store_writable: bool = True
    free_mb: float | None = None
    min_free_mb: float = 0.0
    sellable_units: int = 1
    service_door_open: bool = False
    temperature_c: float | None = None
    max_temperature_c: float | None = None  # None: not a chilled cabinet
    sales_locked: bool = False
    store_damaged: bool = False  # the start-up integrity check found a damaged record


def out_of_service_reasons(f: ServiceFacts) -> list[str]:
    """Every reason not to start a new order, most important first (`ui.OUT_OF_SERVICE_KEYS`)."""
    out: list[str] = []
    if f.sales_locked:
        out.append("sales_locked")
    if f.store_damaged:
        out.append("store_damaged")
    if not f.store_writable:
        out.append("storage_error")
    elif disk_low(f):
        out.append("disk_low")
    if f.board_online is None:
        out.append("starting")
    elif not f.board_online:
        out.append("board_offline")
    if f.service_door_open:
        out.append("door_open")
    if (
        f.max_temperature_c is not None
        and f.temperature_c is not None
        and f.temperature_c > f.max_temperature_c
    ):
        out.append("temperature")
    if f.sellable_units <= 0:
        out.append("sold_out")
    return out


def disk_low(f: ServiceFacts) -> bool:
    return f.free_mb is not None and f.free_mb < f.min_free_mb


# --- collaborators --------------------------------------------------------------------------


class RecordSink(Protocol):
    """Where records for the province go (the sync outbox); `conn` joins our transaction."""

    def append(
        self,
        kind: str,
        body: Mapping[str, Any],
        priority: Priority,
        *,
        event_id: str | None = None,
        conn: sqlite3.Connection | None = None,
    ) -> object: ...


# --- inbox items ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Confirm:
    confirmation: PaymentConfirmation | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class _StatusReply:
    reply: PaymentStatusReply


@dataclass(frozen=True, slots=True)
class _Reported:
    order_id: str
    tx: int
    slot_no: int
    outcome: sale.VendOutcome
    recorded: bool  # the board keeps this tx in its outcome memory (anchor candidate)


@dataclass(frozen=True, slots=True)
class _Unknown:
    """The board could not be asked about `tx` (offline): suspend, ask again later."""

    order_id: str
    tx: int


@dataclass(frozen=True, slots=True)
class _Health:
    online: bool
    status: BoardStatus | None
    reason: str


@dataclass(frozen=True, slots=True)
class _Event:
    event: BoardEvent


@dataclass(frozen=True, slots=True)
class _TestDone:
    tx: int
    slot_no: int
    outcome: str
    delivered: bool


@dataclass(slots=True)
class _Call:
    fn: Callable[[], object]
    done: threading.Event = field(default_factory=threading.Event)
    result: object = None
    error: BaseException | None = None


class _Recover:
    pass


class _Stop:
    pass


# --- worker jobs ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _VendJob:
    order_id: str
    slot_no: int
    tx: int
    locker: bool


@dataclass(frozen=True, slots=True)
class _QueryJob:
    order_id: str
    slot_no: int
    tx: int


@dataclass(frozen=True, slots=True)
class _TestJob:
    tx: int
    slot_no: int
    kind: str  # "test" (test_slot) or "unlock" (open a locker door)


_Job = _VendJob | _QueryJob | _TestJob


def _core_outcome(o: Outcome) -> sale.VendOutcome:
    return sale.VendOutcome(o.name)


# --- the controller -------------------------------------------------------------------------


class Controller:
    """See the module docstring. Implements `kiosk.contract.Controller` (post / view /
    set_notify). Start with `start()` (runs recovery), stop with `stop()`."""

    def __init__(
        self,
        store: Store,
        board: BoardDriver,
        config: _config.KioskConfig,
        clock: Clock,
        secret: bytes,
        province_public_key: bytes | None,
        sink: RecordSink | None,
        publish_view: Callable[[ui.ViewState], None] | None = None,
        *,
        payment_query: Callable[[PaymentStatusQuery], None] | None = None,
        on_commit: Callable[[], None] | None = None,
        province_time: Callable[[float], float] | None = None,
        tick_s: float = 1.0,
        status_every_s: float = 1.0,
        start_grace_s: float = 5.0,
        query_retry_s: float = 15.0,
        vend_timeout_s: float = 30.0,
        unlock_timeout_s: float = 180.0,
    ) -> None:
        self.store = store
        self.board = board
        self.config = config
        self.clock = clock
        self._secret = secret
        self.province_public_key = province_public_key
        self.sink = sink
        self.repo = OrderRepo(store)
        self.kiosk_id = config.identity.kiosk_id
        self.payment_query = payment_query
        # called after a transaction that may have appended outbox records has committed
        # (the sync client's `wake`, so a sale record leaves at once instead of at the next poll)
        self.on_commit = on_commit
        # kiosk time -> the province's time (the sync layer's clock-offset estimate): what the
        # province checks the pay URL's expiry against, and what confirmations are fresh by,
        # so a kiosk whose clock is years off still sells. Identity until sync sets it.
        self.province_time: Callable[[float], float] = province_time or (lambda t: t)
        self._publish_cb = publish_view
        self._notify: Callable[[], None] | None = None
        self.tick_s = tick_s
        self.status_every_s = status_every_s
        self.start_grace_s = start_grace_s
        self.query_retry_s = query_retry_s
        self.vend_timeout_s = vend_timeout_s
        self.unlock_timeout_s = unlock_timeout_s
        p = config.payments
        self.rules = sale.SaleRules(
            payment_window_s=float(p.payment_window_s),
            max_extensions=p.max_extensions,
            payment_query_after_s=float(p.status_query_after_s),
        )
        self._inbox: queue.Queue[object] = queue.Queue()
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._unsubscribe: Callable[[], None] | None = None
        # controller-thread state
        self.catalog: Catalog = store.catalog.load()
        self.planogram: Planogram = store.planogram.load()
        self._orders: dict[str, sale.Order] = {}  # open orders
        self._shown: str | None = None  # the order on screen (open or just finished)
        self._last_view: dict[str, sale.View] = {}
        self._inflight: set[int] = set()  # txs with a worker job
        self._cart = cartlib.Cart(max_units=config.payments.max_cart_items)
        self._cart_prices: dict[str, int] = {}
        self._shopping = False
        self._board_online: bool | None = None
        self._board_status: BoardStatus | None = None
        self._started_mono = clock.monotonic()
        self._mono_offset = clock.monotonic() - clock.time()  # wall -> monotonic, for the UI
        self._store_writable = True
        self._free_mb: float | None = None
        self._disk_low = False
        self._next_disk_check = 0.0
        self._next_checkpoint = 0.0
        self._measure_disk()  # before the first sale, not at the first tick
        self._sales_locked = store.settings.get(SALES_LOCKED) == "1"
        self._bad_slots: set[int] = set(self._load_bad_slots())
        self._open_doors: set[int] = set()
        self._last_result = ""
        self._test_running: int | None = None
        self._reasons: list[str] = []
        self._damage: list[str] = []  # start-up integrity problems not accepted
        # published state
        self._view_lock = threading.Condition()
        self._seq = 0
        self._view = ui.ViewState(seq=0, mode="out_of_service")

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the threads; the first thing the controller thread does is recovery."""
        self._inbox.put(_Recover())
        self._unsubscribe = self.board.subscribe(lambda _a, ev: self._inbox.put(_Event(ev)))
        for name, target in (
            ("controller", self._run),
            ("dispense", self._run_worker),
            ("monitor", self._run_monitor),
        ):
            t = threading.Thread(target=target, name=f"kiosk-{name}", daemon=True)
            self._threads.append(t)
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._inbox.put(_Stop())
        self._jobs.put(None)
        if self._unsubscribe is not None:
            self._unsubscribe()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)

    # --- ui.Controller protocol and other inputs (any thread) ------------------------------

    def post(self, item: object) -> None:
        """Queue a UI intent (or any inbox item); never blocks."""
        self._inbox.put(item)

    def view(self) -> ui.ViewState:
        with self._view_lock:
            return self._view

    def set_notify(self, notify: Callable[[], None]) -> None:
        self._notify = notify

    def submit_confirmation(self, c: PaymentConfirmation | Mapping[str, Any]) -> None:
        """A province payment confirmation (object or wire dict); verified on the inbox."""
        self._inbox.put(_Confirm(c))

    def submit_status_reply(self, reply: PaymentStatusReply) -> None:
        self._inbox.put(_StatusReply(reply))

    def board_state_changed(self, online: bool, reason: str = "") -> None:
        """Link listener hook (`SerialLink.add_state_listener`): faster than the status poll."""
        self._inbox.put(_Health(online, None, reason))

    def reload(self) -> None:
        """Catalog or planogram changed in the store (sync applied a new version)."""
        self._inbox.put(_Call(self._reload))

    def call(self, fn: Callable[[], object], timeout: float = 10.0) -> object:
        """Run `fn` on the controller thread and return its result (tests, tools)."""
        c = _Call(fn)
        self._inbox.put(c)
        if not c.done.wait(timeout):
            raise TimeoutError("controller did not answer")
        if c.error is not None:
            raise c.error
        return c.result

    def wait_view(
        self, predicate: Callable[[ui.ViewState], bool], timeout: float
    ) -> ui.ViewState | None:
        """Block until a published view satisfies `predicate` (None on timeout)."""
        deadline = self.clock.monotonic() + timeout
        with self._view_lock:
            while not predicate(self._view):
                left = deadline - self.clock.monotonic()
                if left <= 0:
                    return None
                self._view_lock.wait(min(left, 0.2))
            return self._view

    def open_orders(self) -> list[sale.Order]:
        result = self.call(lambda: list(self._orders.values()))
        assert isinstance(result, list)
        return result

    # --- the controller thread ----------------------------------------------------------

    def _run(self) -> None:
        next_tick = self.clock.monotonic() + self.tick_s
        while True:
            wait = max(0.0, next_tick - self.clock.monotonic())
            try:
                item: object = self._inbox.get(timeout=wait)
            except queue.Empty:
                item = None
            if isinstance(item, _Stop):
                return
            try:
                if item is None:
                    next_tick = self.clock.monotonic() + self.tick_s
                    self._on_tick()
                else:
                    self._handle(item)
            except Exception:  # invariant 7: log it, keep running
                log.exception("controller.failed item=%s", type(item).__name__)
            if item is not None and self.clock.monotonic() >= next_tick:
                next_tick = self.clock.monotonic() + self.tick_s
                try:
                    self._on_tick()
                except Exception:
                    log.exception("controller.tick_failed")
            self._publish()

    def _handle(self, item: object) -> None:
        if isinstance(item, _Call):
            try:
                item.result = item.fn()
            except BaseException as e:
                item.error = e
            finally:
                item.done.set()
        elif isinstance(item, _Recover):
            self._recover()
        elif isinstance(item, _Reported):
            self._on_reported(item)
        elif isinstance(item, _Unknown):
            self._inflight.discard(item.tx)
            order = self._orders.get(item.order_id)
            if order is not None:
                self._feed(order, sale.BoardOffline(self.clock.time()))
        elif isinstance(item, _Health):
            self._on_health(item)
        elif isinstance(item, _Event):
            self._on_event(item.event)
        elif isinstance(item, _Confirm):
            self._on_confirmation(item.confirmation)
        elif isinstance(item, _StatusReply):
            self._on_status_reply(item.reply)
        elif isinstance(item, _TestDone):
            self._on_test_done(item)
        else:
            self._on_intent(item)

    # --- recovery -----------------------------------------------------------------------

    def _recover(self) -> None:
        """Resume every unfinished order (Recovery: awaiting payment -> keep waiting or expire;
        dispensing -> ask the board about the running tx, never vend it again). Closed orders
        need nothing: their record and refund were committed with their final state."""
        now = self.clock.time()
        self._check_integrity()
        orders = self.repo.unfinished()
        log_event(log, "controller.recovery", unfinished=len(orders))
        for order in orders:
            self._orders[order.order_id] = order
            self._feed(order, sale.Recovery(now))

    def _check_integrity(self) -> None:
        """Before the first sale: the books since the last verified mark (the ledger chain and
        every paid order's money rules; the whole store the first time). A damaged record stops
        sales (out of service `store_damaged`) with an alarm, instead of selling on top of it;
        `kiosk store check` shows it, `--accept` lets the kiosk sell again. A full check then
        runs in the background in small chunks, for damage older than the mark."""
        t0 = self.clock.monotonic()
        try:
            recovered = self.store.identity().get("origin") == "recovered"
            mark = IntegrityMark.from_json(self.store.settings.get(VERIFIED_THROUGH))
            result = self.repo.check_integrity(mark, from_first_row=recovered)
        except _STORE_ERRORS as e:
            self._store_failed(e, "integrity_check")
            return
        log_event(
            log,
            "store.integrity_checked",
            scope="since mark" if mark is not None else "full",
            problems=len(result.problems),
            ms=round((self.clock.monotonic() - t0) * 1000),
        )
        self._integrity_found(result.problems)
        if not self._damage:
            with contextlib.suppress(*_STORE_ERRORS):
                self.store.settings.set(VERIFIED_THROUGH, result.mark.to_json())
        if mark is not None:
            threading.Thread(
                target=self._full_check, args=(recovered,), name="kiosk-integrity", daemon=True
            ).start()

    def _full_check(self, recovered: bool) -> None:
        try:
            problems = self.repo.check_integrity(
                from_first_row=recovered, pause=lambda: self._stop.wait(0.02)
            ).problems
        except Exception:  # the store went away (stop) or failed: the next start checks again
            log.exception("store.full_check_failed")
            return
        log_event(log, "store.full_check_done", problems=len(problems))
        if problems:
            self._inbox.put(_Call(lambda: self._integrity_found(problems)))

    def _integrity_found(self, problems: list[str]) -> None:
        try:
            accepted = self.store.settings.get_json(ACCEPTED_DAMAGE, [])
        except _STORE_ERRORS:
            accepted = []
        known = set(accepted) if isinstance(accepted, list) else set()
        new = [p for p in problems if p not in known and p not in self._damage]
        if not new:
            return
        self._damage.extend(new)
        log_event(
            log,
            "store.damaged",
            logging.ERROR,
            first=new[0],
            problems=len(self._damage),
            action="kiosk store check",
        )
        detail = f"{len(new)} damaged record(s), first: {new[0]}"
        try:
            with self.store.transaction() as conn:
                self._alarm(conn, "store_damaged", "", detail, None)
        except _STORE_ERRORS as e:
            self._store_failed(e, "alarm")
        self._committed()

    # --- stepping the core --------------------------------------------------------------

    def _load(self, order_id: str) -> sale.Order | None:
        return self._orders.get(order_id) or self.repo.get(order_id)

    def _feed(
        self, order: sale.Order, inp: sale.Input, anchor: tuple[int, int] | None = None
    ) -> sale.Order:
        """One step: commit what it decided, then carry out the rest. Returns the new order
        (the old one when the step was refused or could not be committed)."""
        try:
            new, actions = sale.step(order, inp)
        except sale.SaleError as e:
            log_event(log, "sale.rejected", logging.WARNING, order=order.order_id, reason=str(e))
            return order
        if not self._commit(new, actions, anchor):
            return order
        self._after(new, actions)
        return new

    def _commit(
        self, order: sale.Order, actions: list[sale.Action], anchor: tuple[int, int] | None
    ) -> bool:
        stored = [
            a
            for a in actions
            if not isinstance(
                a, sale.Vend | sale.Unlock | sale.QueryOutcome | sale.QueryPaymentStatus | sale.Show
            )
        ]
        if not stored and anchor is None:
            return True
        now = self.clock.time()
        try:
            with self.store.transaction() as conn:
                for a in stored:
                    self._store_action(conn, a, now)
                if anchor is not None:
                    conn.execute(
                        "INSERT INTO settings (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (f"{ANCHOR}{anchor[0]}", str(anchor[1])),
                    )
        except _STORE_ERRORS as e:
            self._store_failed(e, order.order_id)
            return False
        self._store_writable = True
        self._committed()
        if any(isinstance(a, sale.Persist) for a in stored):
            crash_point("commit")
        if order.state in sale.FINAL_STATES:
            self._orders.pop(order.order_id, None)
        else:
            self._orders[order.order_id] = order
        return True

    def _store_action(self, conn: sqlite3.Connection, a: sale.Action, now: float) -> None:
        if isinstance(a, sale.Persist):
            self.repo.save(conn, a.order, now)
        elif isinstance(a, sale.StockDelivered):
            result = self.repo.stock_sale(conn, a.slot_no, a.tx, now)
            order = self._orders.get(a.order_id)
            ln = order.lines[a.line_index] if order is not None else None
            first = [ln.tried_slots[0]] if ln is not None and ln.tried_slots else []
            self.repo.unreserve_one(conn, a.order_id, [a.slot_no, *first])
            if isinstance(result, StockError):
                detail = f"delivered from slot {a.slot_no} (tx {a.tx}) but stock says: {result}"
                self._alarm(conn, sale.AlarmKind.STOCK_MISMATCH.value, a.order_id, detail, None)
        elif isinstance(a, sale.ReleaseReservation):
            self.repo.release(conn, a.order_id)
        elif isinstance(a, sale.RecordSale):
            known = conn.execute(
                "SELECT 1 FROM ledger WHERE order_id = ?", (a.order.order_id,)
            ).fetchone()
            rec = self.repo.append_ledger(conn, a.order, now)
            if known is None and self.sink is not None:
                self.sink.append(
                    "sale",
                    record_to_dict(rec),
                    Priority.CRITICAL,
                    event_id=f"sale-{a.order.order_id}",
                    conn=conn,
                )
        elif isinstance(a, sale.RefundDue):
            if self.repo.add_refund(conn, a.order_id, a.amount_fen, a.reason, a.provider_ref, now):
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
        elif isinstance(a, sale.Alarm):
            self._alarm(conn, a.kind.value, a.order_id, a.detail, a.slot_no)
            if a.slot_no is not None and a.kind is sale.AlarmKind.SLOT_FAULT:
                self._bad_slots.add(a.slot_no)
                self._save_bad_slots(conn)

    def _alarm(
        self, conn: sqlite3.Connection, kind: str, order_id: str, detail: str, slot: int | None
    ) -> None:
        now = self.clock.time()
        n = self.repo.add_alarm(conn, kind, order_id, detail, slot, now)
        log_event(
            log, "alarm", logging.WARNING, kind=kind, order=order_id, slot=slot, detail=detail
        )
        if self.sink is not None:
            body = {"kind": kind, "order_id": order_id, "slot_no": slot, "detail": detail}
            self.sink.append(
                "alarm", body, Priority.HIGH, event_id=self._alarm_event_id(n), conn=conn
            )

    def _alarm_event_id(self, n: int) -> str:
        """`alarm-<kiosk>-<store epoch>-<n>`: alarm numbers restart with a new store, the epoch
        keeps the ids of two stores apart (the province deduplicates by event id)."""
        epoch = self.store.epoch
        return f"alarm-{self.kiosk_id}-{epoch}-{n}" if epoch else f"alarm-{self.kiosk_id}-{n}"

    def _after(self, order: sale.Order, actions: list[sale.Action]) -> None:
        for a in actions:
            if isinstance(a, sale.Vend | sale.Unlock):
                self._inflight.add(a.tx)
                self._jobs.put(_VendJob(a.order_id, a.slot_no, a.tx, isinstance(a, sale.Unlock)))
            elif isinstance(a, sale.QueryOutcome):
                if a.tx not in self._inflight:
                    self._inflight.add(a.tx)
                    slot = order.lines[a.line_index].slot_no
                    self._jobs.put(_QueryJob(a.order_id, slot, a.tx))
            elif isinstance(a, sale.QueryPaymentStatus):
                q = PaymentStatusQuery(self.kiosk_id, a.order_id, int(self.clock.time()))
                if self.payment_query is not None:
                    try:
                        self.payment_query(q)
                    except Exception:
                        log.exception("controller.payment_query_failed")
            elif isinstance(a, sale.Show):
                self._shown = a.order.order_id
                self._last_view[a.order.order_id] = a.view
                log_event(log, "sale.show", order=a.order.order_id, view=a.view.value)

    def _store_failed(self, e: BaseException, what: str) -> None:
        self._store_writable = False
        log_event(
            log, "store.write_failed", logging.ERROR, what=what, error=f"{type(e).__name__}: {e}"
        )

    # --- board outcomes -----------------------------------------------------------------

    def _on_reported(self, r: _Reported) -> None:
        self._inflight.discard(r.tx)
        order = self._load(r.order_id)
        if order is None:
            log_event(log, "sale.report_for_unknown_order", logging.WARNING, tx=r.tx)
            return
        alternatives: tuple[Any, ...] = ()
        _seq, k, _a = sale.split_tx(r.tx)
        if k < len(order.lines):
            ln = order.lines[k]
            levels = self.store.stock.levels()
            reserved = self.repo.reserved()
            alternatives = cartlib.alternatives_for(
                ln.product_id,
                self.planogram,
                levels,
                reserved,
                exclude=ln.tried_slots,
                out_of_service=self._bad_slots | {r.slot_no},
            )
        board_no = self._board_of(r.slot_no)
        anchor = (board_no, r.tx) if r.recorded and board_no is not None else None
        self._feed(
            order, sale.VendReported(r.tx, r.outcome, self.clock.time(), alternatives), anchor
        )

    def _board_of(self, slot_no: int) -> int | None:
        s = self.planogram.slots.get(slot_no)
        return None if s is None else s.board

    def _on_health(self, h: _Health) -> None:
        if h.status is not None:
            self._board_status = h.status
        starting = self.clock.monotonic() - self._started_mono < self.start_grace_s
        if not h.online and self._board_online is None and starting:
            return  # still connecting
        was = self._board_online
        self._board_online = h.online
        if was is not False and not h.online:
            log_event(log, "board.offline", logging.WARNING, reason=h.reason)
            now = self.clock.time()
            for order in list(self._orders.values()):
                self._feed(order, sale.BoardOffline(now))
        elif was is not True and h.online:
            log_event(log, "board.online")

    def _on_event(self, ev: BoardEvent) -> None:
        if isinstance(ev, DoorEvent):
            (self._open_doors.add if ev.is_open else self._open_doors.discard)(ev.door)
        elif isinstance(ev, BoardReset):
            # Logged only: whether a lost memory matters is known when an OUTCOME answers
            # UNKNOWN_TX, and then the core raises the UNKNOWN_OUTCOME alarm for that line.
            level = logging.INFO if ev.memory_kept else logging.WARNING
            log_event(
                log,
                "board.reset_seen",
                level,
                reason=ev.reason.name,
                memory_kept=ev.memory_kept,
                interrupted_tx=ev.interrupted_tx,
            )

    # --- payments -----------------------------------------------------------------------

    def _on_confirmation(self, raw: PaymentConfirmation | Mapping[str, Any]) -> None:
        c = raw if isinstance(raw, PaymentConfirmation) else confirmation_from_dict(raw)
        if isinstance(c, ConfirmationRejected):
            log_event(log, "payment.rejected", logging.WARNING, reason=c.reason.value)
            return
        order = self._load(c.order_id)
        if self.province_public_key is None:
            log_event(log, "payment.rejected", logging.WARNING, reason="no province key")
            return
        amounts = {} if order is None else {order.order_id: order.total_fen}
        result = verify_confirmation(
            c,
            province_public_key=self.province_public_key,
            kiosk_id=self.kiosk_id,
            order_amounts=amounts,
            now=self.province_time(self.clock.time()),
            order_created_at=self._created_in_province_time(order),
        )
        self._pay(order, result, c.order_id)

    def _on_status_reply(self, reply: PaymentStatusReply) -> None:
        if self.province_public_key is None:
            return
        order = self._load(reply.order_id)
        amounts = {} if order is None else {order.order_id: order.total_fen}
        result = verify_status_reply(
            reply,
            province_public_key=self.province_public_key,
            kiosk_id=self.kiosk_id,
            order_amounts=amounts,
            now=self.province_time(self.clock.time()),
            order_created_at=self._created_in_province_time(order),
        )
        if result is not None:
            self._pay(order, result, reply.order_id)

    def _created_in_province_time(self, order: sale.Order | None) -> float | None:
        if order is None or not order.created_at:
            return None
        return self.province_time(order.created_at)

    def _pay(
        self, order: sale.Order | None, result: Payment | ConfirmationRejected, order_id: str
    ) -> None:
        if isinstance(result, ConfirmationRejected) or order is None:
            reason = result.reason.value if isinstance(result, ConfirmationRejected) else "?"
            log_event(log, "payment.rejected", logging.WARNING, order=order_id, reason=reason)
            return
        known = [p for p in (order.payment, *order.extra_payments) if p is not None]
        if any(p.provider_ref == result.provider_ref for p in known):
            # the province resends (and providers notify twice): the same payment, not a new one
            log_event(log, "payment.duplicate", order=order_id, ref=result.provider_ref)
        else:
            log_event(log, "payment.confirmed", order=order_id, ref=result.provider_ref)
        self._feed(order, sale.PaymentConfirmed(result, self.clock.time()))

    # --- tick ---------------------------------------------------------------------------

    def _measure_disk(self) -> None:
        """Free space in the data directory, less what the WAL may still grow by before its
        automatic checkpoint; logs when it crosses `store.min_free_mb` either way."""
        try:
            free = shutil.disk_usage(self.store.data_dir).free
            free -= max(0, WAL_HEADROOM_BYTES - self.store.wal_bytes())
            self._free_mb = free / 1e6
        except OSError:
            self._free_mb = None
        low = self._free_mb is not None and self._free_mb < self.config.store.min_free_mb
        if low != self._disk_low:
            self._disk_low = low
            log_event(
                log,
                "store.disk_low" if low else "store.disk_ok",
                logging.ERROR if low else logging.INFO,
                free_mb=None if self._free_mb is None else round(self._free_mb, 1),
                min_free_mb=self.config.store.min_free_mb,
                data_dir=str(self.store.data_dir),
            )

    def _checkpoint_when_idle(self, mono: float) -> None:
        if mono < self._next_checkpoint or self._orders or self._inflight:
            return
        if self._test_running is not None:
            return
        self._next_checkpoint = mono + CHECKPOINT_EVERY_S
        try:
            self.store.checkpoint()
        except _STORE_ERRORS as e:
            log_event(log, "store.checkpoint_failed", logging.WARNING, error=str(e))

    def _on_tick(self) -> None:
        now = self.clock.time()
        for order in list(self._orders.values()):
            if order.state is sale.State.SUSPENDED and self._board_online:
                order = self._feed(order, sale.Recovery(now))
            self._feed(order, sale.Tick(now))
        mono = self.clock.monotonic()
        self._checkpoint_when_idle(mono)
        if mono >= self._next_disk_check:
            self._next_disk_check = mono + 5.0
            self._measure_disk()
            try:
                self._sales_locked = self.store.settings.get(SALES_LOCKED) == "1"
                if not self._store_writable:  # probe: does a write work again?
                    self.store.settings.set("controller.probe", str(int(now)))
                    self._store_writable = True
                    for order in list(self._orders.values()):
                        self._feed(order, sale.Recovery(now))
            except _STORE_ERRORS as e:
                self._store_failed(e, "probe")

    # --- intents ------------------------------------------------------------------------

    def _shown_order(self) -> sale.Order | None:
        return None if self._shown is None else self._load(self._shown)

    def _on_intent(self, it: object) -> None:
        now = self.clock.time()
        shown = self._shown_order()
        busy = shown is not None and shown.state not in sale.FINAL_STATES
        if isinstance(it, ui.StartShopping):
            if not self._reasons and not busy:
                self._shown = None
                self._shopping = True
        elif isinstance(it, ui.AddToCart):
            if not busy and not self._reasons:
                self._shown = None
                self._shopping = True
                self._set_qty(it.product_id, self._cart.qty_of(it.product_id) + 1)
        elif isinstance(it, ui.SetQuantity):
            if not busy:
                self._set_qty(it.product_id, it.qty)
        elif isinstance(it, ui.Checkout):
            if not busy:
                self._checkout(now)
        elif isinstance(it, ui.CancelOrder):
            if shown is not None and shown.state is sale.State.AWAITING_PAYMENT:
                self._feed(shown, sale.ShopperCancel(now))
        elif isinstance(it, ui.ExtendPayment):
            if shown is not None:
                self._feed(shown, sale.ExtendRequested(now))
        elif isinstance(it, ui.EnterOfflineCode):
            if shown is not None:
                self._feed(shown, sale.OfflineCodeEntered(it.code, now, self._secret))
        elif isinstance(it, ui.BackToIdle):
            if shown is not None and shown.state is sale.State.AWAITING_PAYMENT:
                shown = self._feed(shown, sale.ShopperCancel(now))
            if shown is None or shown.state in sale.FINAL_STATES:
                self._shown = None
                self._cart = cartlib.Cart(max_units=self._cart.max_units)
                self._cart_prices.clear()
                self._shopping = False
        elif isinstance(it, ui.Restock):
            self._restock(it.slot, it.count)
        elif isinstance(it, ui.TestVend | ui.OpenDoor):
            self._test_vend(it.slot, "unlock" if isinstance(it, ui.OpenDoor) else "test")
        elif isinstance(it, ui.LockSales):
            self._technician("lock_sales", locked=it.locked)
            try:
                self.store.settings.set(SALES_LOCKED, "1" if it.locked else "0")
                self._sales_locked = it.locked
                self._last_result = "sales locked" if it.locked else "sales unlocked"
            except _STORE_ERRORS as e:
                self._store_failed(e, "lock_sales")
        elif isinstance(it, ui.ServiceLogin | ui.ServiceExit | ui.ServiceViewed):
            self._technician(type(it).__name__, **dataclasses.asdict(it))
        else:
            log_event(log, "controller.unknown_input", logging.WARNING, kind=type(it).__name__)

    def _set_qty(self, product_id: str, qty: int) -> None:
        before, prices = self._cart, dict(self._cart_prices)
        self._cart = cartlib.remove_item(self._cart, product_id, self._cart.qty_of(product_id))
        self._cart_prices.pop(product_id, None)
        if qty <= 0:
            return
        try:
            self._cart = cartlib.add_item(
                self._cart,
                product_id,
                self.catalog,
                self.planogram,
                self.store.stock.levels(),
                self.repo.reserved(),
                qty,
                self._bad_slots,
            )
            self._cart_prices[product_id] = self.catalog.products[product_id].price_fen
        except cartlib.CartError as e:
            self._cart, self._cart_prices = before, prices
            self._last_result = str(e)
            log_event(log, "cart.refused", reason=str(e))

    def _checkout(self, now: float) -> None:
        if self._reasons or not self._cart.items:
            return
        self._measure_disk()  # on every order, not only every few seconds
        if self._disk_low:
            self._last_result = "disk below store.min_free_mb"
            return
        try:
            with self.store.transaction() as conn:
                seq = self.repo.next_order_seq(conn)
                if seq > ORDER_SEQ_LIMIT:
                    raise StoreError(f"order sequence exhausted ({seq})")
                order, taken = cartlib.checkout(
                    self._cart,
                    self.catalog,
                    self.planogram,
                    self.store.stock.levels(),
                    self.repo.reserved(conn),
                    kiosk_id=self.kiosk_id,
                    order_seq=seq,
                    store_epoch=self.store.epoch,
                    rules=self.rules,
                    out_of_service=self._bad_slots,
                )
                new, actions = sale.step(order, sale.Checkout(now))
                self.repo.save(conn, new, now)
                self.repo.reserve(conn, new.order_id, taken)
        except cartlib.CartError as e:
            self._last_result = str(e)
            log_event(log, "cart.checkout_refused", reason=str(e))
            return
        except _STORE_ERRORS as e:
            self._store_failed(e, "checkout")
            return
        crash_point("commit")
        log_event(log, "sale.checkout", order=new.order_id, total_fen=new.total_fen)
        self._orders[new.order_id] = new
        self._cart = cartlib.Cart(max_units=self._cart.max_units)
        self._cart_prices.clear()
        self._shopping = False
        self._after(new, actions)

    # --- technician ---------------------------------------------------------------------

    def _technician(self, action: str, **fields: Any) -> None:
        log_event(log, "technician", action=action, **fields)
        if self.sink is None:
            return
        try:
            self.sink.append(
                "technician",
                {"action": action, **fields, "at": self.clock.time()},
                Priority.HIGH,
            )
        except _STORE_ERRORS as e:
            self._store_failed(e, "technician")
            return
        self._committed()

    def _committed(self) -> None:
        if self.on_commit is not None:
            try:
                self.on_commit()
            except Exception:
                log.exception("controller.on_commit_failed")

    def _restock(self, slot: int, count: int | None) -> None:
        ref = f"restock-{int(self.clock.time())}"
        try:
            if count is None:
                level = self.store.stock.fill_to_capacity(slot, ref)
            else:
                level = self.store.stock.set_count(slot, count, ref)
        except (StockError, *_STORE_ERRORS) as e:
            self._last_result = f"slot {slot}: {e}"
            return
        if slot in self._bad_slots:
            self._bad_slots.discard(slot)
            with contextlib.suppress(*_STORE_ERRORS), self.store.transaction() as conn:
                self._save_bad_slots(conn)
        self._last_result = f"slot {slot}: {level}"
        self._technician("restock", slot=slot, level=level)

    def _test_vend(self, slot: int, kind: str) -> None:
        if self._orders or self._test_running is not None:
            self._last_result = "busy: an order is running"
            return
        if slot not in self.planogram.slots:
            self._last_result = f"slot {slot} is not in the planogram"
            return
        try:
            tx = self.repo.start_test_vend(slot, kind, self.clock.time())
        except (ValueError, *_STORE_ERRORS) as e:
            self._last_result = f"test vend refused: {e}"
            return
        self._test_running = tx
        self._technician("test_vend", slot=slot, tx=tx, kind=kind)
        self._jobs.put(_TestJob(tx, slot, kind))

    def _on_test_done(self, d: _TestDone) -> None:
        self._test_running = None
        now = self.clock.time()
        try:
            with self.store.transaction() as conn:
                self.repo.finish_test_vend(conn, d.tx, d.outcome, now)
                if d.delivered:
                    with contextlib.suppress(StockError):
                        self.store.stock.apply(
                            StockChange(d.slot_no, -1, StockReason.TEST_VEND, str(d.tx))
                        )
        except _STORE_ERRORS as e:
            self._store_failed(e, "test_vend")
        self._last_result = f"slot {d.slot_no}: {d.outcome}"
        self._technician("test_vend_done", slot=d.slot_no, tx=d.tx, outcome=d.outcome)

    def _load_bad_slots(self) -> list[int]:
        try:
            value = self.store.settings.get_json(BAD_SLOTS, [])
        except StoreError:
            return []
        return [int(s) for s in value] if isinstance(value, list) else []

    def _save_bad_slots(self, conn: sqlite3.Connection) -> None:
        import json

        conn.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (BAD_SLOTS, json.dumps(sorted(self._bad_slots))),
        )

    def _reload(self) -> None:
        self.catalog = self.store.catalog.load()
        self.planogram = self.store.planogram.load()

    # --- the dispense worker ------------------------------------------------------------

    def _run_worker(self) -> None:
        while not self._stop.is_set():
            job = self._jobs.get()
            if job is None:
                return
            try:
                if isinstance(job, _VendJob):
                    self._do_vend(job)
                elif isinstance(job, _QueryJob):
                    self._do_query(job.order_id, job.slot_no, job.tx)
                else:
                    self._do_test(job)
            except Exception:
                log.exception("dispense.failed")
                if isinstance(job, _VendJob | _QueryJob):
                    self._inbox.put(_Unknown(job.order_id, job.tx))

    def _do_vend(self, job: _VendJob) -> None:
        if crash_point("vend_sent"):
            delay = float(os.environ.get(CRASH_DELAY_ENV, "10")) / 1000
            plan = _crash_plan()
            threading.Timer(delay, _die, (f"vend_sent:{plan[1] if plan else '?'}",)).start()
        if not self._tx_is_fresh(job):
            return
        try:
            if job.locker:
                r = self.board.unlock(job.slot_no, job.tx, self.unlock_timeout_s)
            else:
                r = self.board.vend(job.slot_no, job.tx, self.vend_timeout_s)
        except BoardRejected as e:
            log_event(log, "dispense.rejected", logging.WARNING, tx=job.tx, error=str(e))
            self._inbox.put(
                _Reported(job.order_id, job.tx, job.slot_no, sale.VendOutcome.REFUSED_FAULT, False)
            )
            return
        except (VendTimeout, BoardProtocolError) as e:
            log_event(log, "dispense.unknown", logging.WARNING, tx=job.tx, error=str(e))
            self._do_query(job.order_id, job.slot_no, job.tx)
            return
        except BoardOffline as e:
            log_event(log, "dispense.offline", logging.WARNING, tx=job.tx, error=str(e))
            self._inbox.put(_Unknown(job.order_id, job.tx))
            return
        crash_point("vend_result")
        recorded = r.outcome in _RECORDED
        self._inbox.put(
            _Reported(job.order_id, job.tx, job.slot_no, _core_outcome(r.outcome), recorded)
        )

    def _tx_is_fresh(self, job: _VendJob) -> bool:
        """Before a tx first leaves: the board must not already know it. A board remembers the
        tx ids of earlier stores (and of another cabinet, if it was swapped in); a VEND with such
        an id would be answered from that memory without running a motor. The store epoch and
        counter re-basing make this practically impossible; this check makes it certain. A
        known tx is never sent: the line is retried with its next tx and an alarm is raised."""
        try:
            known = self.board.outcome(job.tx)
        except BoardError as e:
            log_event(log, "dispense.offline", logging.WARNING, tx=job.tx, error=str(e))
            self._inbox.put(_Unknown(job.order_id, job.tx))
            return False
        if known is Outcome.UNKNOWN_TX:
            return True
        log_event(log, "dispense.tx_known_to_board", logging.ERROR, tx=job.tx, outcome=known.name)
        self._inbox.put(_Call(lambda: self._tx_in_use(job, known)))
        return False

    def _tx_in_use(self, job: _VendJob, known: Outcome) -> None:
        detail = (
            f"the board already knew tx {job.tx} ({known.name}) before it was first sent; "
            "not sent, retried with a new tx"
        )
        try:
            with self.store.transaction() as conn:
                self._alarm(conn, "tx_collision", job.order_id, detail, job.slot_no)
        except _STORE_ERRORS as e:
            self._store_failed(e, "alarm")
        self._committed()
        self._on_reported(
            _Reported(job.order_id, job.tx, job.slot_no, sale.VendOutcome.NOT_ACCEPTED, False)
        )

    def _do_query(self, order_id: str, slot_no: int, tx: int) -> None:
        """OUTCOME(tx) until it is final (or a running answer after the vend timeout)."""
        deadline = self.clock.monotonic() + self.vend_timeout_s
        offline_since: float | None = None
        while not self._stop.is_set():
            try:
                found = self.board.outcome(tx)
                offline_since = None
            except BoardError as e:
                now = self.clock.monotonic()
                offline_since = now if offline_since is None else offline_since
                if now - offline_since >= self.query_retry_s:
                    log_event(log, "dispense.query_offline", logging.WARNING, tx=tx, error=str(e))
                    self._inbox.put(_Unknown(order_id, tx))
                    return
                self._stop.wait(0.5)
                continue
            if found in _RUNNING and self.clock.monotonic() < deadline:
                self._stop.wait(0.25)
                continue
            verdict = _core_outcome(found)
            if found is Outcome.UNKNOWN_TX and self._memory_proves_never_accepted(slot_no):
                verdict = sale.VendOutcome.NOT_ACCEPTED
            log_event(log, "dispense.queried", tx=tx, outcome=found.name, verdict=verdict.value)
            self._inbox.put(_Reported(order_id, tx, slot_no, verdict, found in _RECORDED))
            return

    def _memory_proves_never_accepted(self, slot_no: int) -> bool:
        """The board answered UNKNOWN_TX. It is "never accepted" only if the board still knows
        our anchor: a tx it recorded before this tx was even committed. Outcome memories drop
        oldest first, so a memory that still holds the anchor holds everything after it."""
        s = self.planogram.slots.get(slot_no)
        if s is None:
            return False
        try:
            text = self.store.settings.get(f"{ANCHOR}{s.board}")
            if text is None:
                return False
            return self.board.outcome(int(text)) is not Outcome.UNKNOWN_TX
        except (BoardError, ValueError, *_STORE_ERRORS):
            return False

    def _do_test(self, job: _TestJob) -> None:
        try:
            if job.kind == "unlock":
                r = self.board.unlock(job.slot_no, job.tx, self.unlock_timeout_s)
            else:
                r = self.board.test_slot(job.slot_no, job.tx, self.vend_timeout_s)
            outcome, delivered = r.outcome.name, r.delivered
        except BoardError as e:
            outcome, delivered = f"error: {e}", False
        self._inbox.put(_TestDone(job.tx, job.slot_no, outcome, delivered))

    # --- the monitor --------------------------------------------------------------------

    def _run_monitor(self) -> None:
        while not self._stop.is_set():
            try:
                st = self.board.status()
                self._inbox.put(_Health(True, st, ""))
            except BoardError as e:
                self._inbox.put(_Health(False, None, str(e)))
            except Exception:
                log.exception("monitor.failed")
            self._stop.wait(self.status_every_s)

    # --- the view -----------------------------------------------------------------------

    def _facts(self, sellable: int) -> ServiceFacts:
        hw = self.config.hardware
        st = self._board_status
        return ServiceFacts(
            board_online=self._board_online,
            store_writable=self._store_writable,
            free_mb=self._free_mb,
            min_free_mb=float(self.config.store.min_free_mb),
            sellable_units=sellable,
            store_damaged=bool(self._damage),
            service_door_open=bool(st and st.service_door_open),
            temperature_c=None if st is None else st.temperature_c,
            max_temperature_c=hw.max_temperature_c if hw.chilled else None,
            sales_locked=self._sales_locked,
        )

    def _publish(self) -> None:
        try:
            view = self._build_view()
        except _STORE_ERRORS as e:
            self._store_failed(e, "view")
            return
        with self._view_lock:
            if _same(view, self._view):
                return
            self._seq += 1
            self._view = replace(view, seq=self._seq)
            published = self._view
            self._view_lock.notify_all()
        if self._publish_cb is not None:
            self._publish_cb(published)
        if self._notify is not None:
            self._notify()

    def _build_view(self) -> ui.ViewState:
        levels = self.store.stock.levels()
        reserved = self.repo.reserved()
        products: list[ui.ProductView] = []
        sellable = 0
        for pid in sorted(self.planogram.product_ids()):
            product = self.catalog.products.get(pid)
            if product is None:
                continue
            left = cartlib.available_units(pid, self.planogram, levels, reserved, self._bad_slots)
            sellable += left
            products.append(ui.ProductView(product, left))
        self._reasons = out_of_service_reasons(self._facts(sellable))
        cart_lines = tuple(
            ui.CartLine(
                i.product_id,
                i.qty,
                self._cart_prices.get(i.product_id, 0),
                self._cart_prices.get(i.product_id, 0) * i.qty,
            )
            for i in self._cart.items
        )
        base = ui.ViewState(
            seq=0,
            mode="idle",
            products=tuple(products),
            cart=cart_lines,
            max_cart_items=self._cart.max_units,
            service_phone=self.config.ui.service_phone,
            service=self._service_info(levels),
        )
        shown = self._shown_order()
        if shown is not None:
            v = self._order_view(base, shown)
            if v is not None:
                return v
        if self._reasons:
            return replace(
                base, mode="out_of_service", out_of_service=ui.OutOfServiceView(self._reasons[0])
            )
        return replace(base, mode="shopping" if self._shopping or self._cart.items else "idle")

    def _order_view(self, base: ui.ViewState, o: sale.Order) -> ui.ViewState | None:
        st = o.state
        if st is sale.State.AWAITING_PAYMENT:
            now = self.clock.time()
            url = pay_url(
                self.config.payments.pay_url_base,
                self.kiosk_id,
                o.order_id,
                o.total_fen,
                self.province_time(o.expires_at),
                self._secret,
            )
            lines: dict[str, tuple[int, int]] = {}
            for ln in o.lines:
                q, _ = lines.get(ln.product_id, (0, ln.price_fen))
                lines[ln.product_id] = (q + 1, ln.price_fen)
            pv = ui.PaymentView(
                order_id=o.order_id,
                pay_url=url,
                amount_fen=o.total_fen,
                lines=tuple(ui.CartLine(p, q, f, q * f) for p, (q, f) in lines.items()),
                expires_at=o.expires_at + self._mono_offset,
                can_extend=o.extensions < o.rules.max_extensions and now < o.expires_at,
                extensions_left=o.rules.max_extensions - o.extensions,
                offline_code_tries_left=max(0, o.rules.max_code_tries - o.code_tries),
                code_entry_locked=o.code_locked,
                last_code_rejected=self._last_view.get(o.order_id)
                in (sale.View.CODE_WRONG, sale.View.CODE_LOCKED),
            )
            return replace(base, mode="payment", payment=pv)
        if st in (sale.State.DISPENSING, sale.State.SUSPENDED):
            items = tuple(
                ui.DispenseItem(
                    ln.product_id,
                    ln.slot_no,
                    _item_status(ln.status),
                    ln.slot_no if ln.slot_kind is SlotKind.LOCKER else None,
                )
                for ln in o.lines
            )
            k = o.vending_line
            door = None
            if k is not None and o.lines[k].slot_kind is SlotKind.LOCKER:
                door = o.lines[k].slot_no
            return replace(
                base, mode="dispensing", dispensing=ui.DispensingView(o.order_id, items, door)
            )
        if st is sale.State.COMPLETED:
            receipt = f"{self.config.payments.pay_url_base}?receipt={o.order_id}"
            return replace(base, mode="done", done=ui.DoneView(o.order_id, receipt, o.paid_fen))
        if st in (sale.State.PARTLY_DELIVERED, sale.State.REFUND_DUE):
            key = "partly_delivered" if st is sale.State.PARTLY_DELIVERED else "vend_failed"
            if o.refund_reason is sale.RefundReason.LATE_PAYMENT:
                key = "paid_after_cancel"
            delivered = sum(1 for ln in o.lines if ln.status is sale.LineStatus.DELIVERED)
            failed = len(o.lines) - delivered
            pv2 = ui.ProblemView(
                key,
                {
                    "phone": self.config.ui.service_phone,
                    "delivered": delivered,
                    "failed": failed,
                    "count": failed,
                },
                refund_fen=o.refund_due_fen,
                refund_channel=_channel(o.payment),
                order_id=o.order_id,
            )
            return replace(base, mode="problem", problem=pv2)
        if st is sale.State.CANCELLED and o.cancel_reason is sale.CancelReason.TIMEOUT:
            return replace(
                base, mode="problem", problem=ui.ProblemView("payment_timeout", order_id=o.order_id)
            )
        return None  # shopper cancelled / board offline: idle or out of service

    def _service_info(self, levels: Mapping[int, int]) -> ui.ServiceInfo:
        depths: dict[str, int] = {}
        depth_fn = getattr(self.sink, "depth", None)
        if callable(depth_fn):
            with contextlib.suppress(*_STORE_ERRORS):
                depths = {p.name.lower(): n for p, n in depth_fn().items()}
        slots = tuple(
            ui.SlotView(
                s.slot_no,
                s.product_id,
                "locker" if s.kind is SlotKind.LOCKER else "spiral",
                s.capacity,
                levels.get(s.slot_no, 0),
            )
            for s in self.planogram
        )
        return ui.ServiceInfo(
            kiosk_id=self.kiosk_id,
            version=kiosk.__version__,
            sales_locked=self._sales_locked,
            queue_depths=depths,
            boards=(ui.BoardInfo(connected=bool(self._board_online)),),
            slots=slots,
            last_result=self._last_result,
        )


def _same(a: ui.ViewState, b: ui.ViewState) -> bool:
    return replace(a, seq=0) == replace(b, seq=0)


def _item_status(s: sale.LineStatus) -> ui.DispenseStatus:
    if s is sale.LineStatus.DELIVERED:
        return "delivered"
    if s is sale.LineStatus.VENDING:
        return "vending"
    if s is sale.LineStatus.PENDING:
        return "pending"
    return "failed"


def _channel(p: Payment | None) -> ui.RefundChannel:
    if p is not None and p.method is PaymentMethod.WECHAT:
        return "wechat"
    if p is not None and p.method is PaymentMethod.ALIPAY:
        return "alipay"
    return "original"
