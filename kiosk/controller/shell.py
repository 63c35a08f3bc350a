"""The controller: the thin imperative shell around the pure core.

Owns: the inbox and the controller thread that takes every input from it (UI intents, payment
confirmations, vend outcomes, board health, a 1 s tick) one at a time, the shopping session
(`kiosk.core.session`, stepped here, its commands carried out here), the catalog and planogram
in use, the board's health, and the published `ViewState` (built by `kiosk.controller.view`
from a snapshot, with the reasons of `kiosk.core.service`).

The jobs are split by module: `sales` (orders and the sale machine), `persist` (one transaction
per step), `dispense` (the worker thread: vends and queries), `technician` (service menu
actions), `monitor` (board status thread, disk, WAL checkpoint), `integrity` (start-up check).

Never: blocks its inbox on serial I/O; decides a transition itself (that is the core).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from kiosk import config as _config
from kiosk import contract as ui
from kiosk.clock import Clock
from kiosk.controller import inbox as ib
from kiosk.controller.access import ServiceAccess
from kiosk.controller.chilled import ChilledWatch
from kiosk.controller.dispense import DispenseWorker
from kiosk.controller.integrity import IntegrityCheck
from kiosk.controller.monitor import Upkeep, run_board_monitor, run_sensor_monitor
from kiosk.controller.persist import STORE_ERRORS, Persistence, RecordSink
from kiosk.controller.sales import Sales
from kiosk.controller.technician import Technician
from kiosk.controller.view import OrderScreen, Published, Snapshot, build_view
from kiosk.core import cart as cartlib
from kiosk.core import sale, session
from kiosk.core.catalog import Catalog
from kiosk.core.payment import PaymentConfirmation, PaymentStatusQuery, PaymentStatusReply
from kiosk.core.planogram import Planogram
from kiosk.core.service import ServiceFacts, out_of_service_reasons, sellable_units
from kiosk.hardware.board import BoardDriver, BoardEvent, BoardStatus
from kiosk.hardware.modbus_sensor import TemperatureSensor
from kiosk.hardware.protocol import BoardReset, DoorEvent
from kiosk.log import log_event
from kiosk.store import Store
from kiosk.store.orders import OrderRepo
from kiosk.sync.ledger_head import HeadSigner
from kiosk.update.gate import UpdateHistory

log = logging.getLogger("kiosk.controller")

TECHNICIAN_INPUTS = (
    ui.ServiceLogin,
    ui.Restock,
    ui.TestVend,
    ui.CheckSlot,
    ui.OpenDoor,
    ui.LockSales,
)
_CRASH_ENV = "KIOSK_CRASH_AT"  # kiosk.controller.crashpoints: the kill-at-every-step tests


class Controller:
    """See the module docstring. Implements `kiosk.contract.UiControllerPort` (post / view /
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
        province_keys: Callable[[], list[bytes]] | None = None,
        payment_rejected: Callable[[str, str, str], None] | None = None,
        province_online: Callable[[], bool] | None = None,
        tick_s: float = 1.0,
        status_every_s: float = 1.0,
        start_grace_s: float = 5.0,
        query_retry_s: float = 15.0,
        vend_timeout_s: float = 30.0,
        unlock_timeout_s: float = 180.0,
        sensor: TemperatureSensor | None = None,
    ) -> None:
        self.store, self.board, self.config, self.clock = store, board, config, clock
        self.sensor = sensor  # None: chilled goods go by the board status temperature
        self._secret = secret
        self.province_public_key = province_public_key
        self.sink = sink
        self.repo = OrderRepo(store)
        self.kiosk_id = config.identity.kiosk_id
        self._published = Published(clock.monotonic, publish_view)
        self.tick_s, self.status_every_s, self.start_grace_s = tick_s, status_every_s, start_grace_s
        p = config.payments
        self.rules = sale.SaleRules(
            payment_window_s=float(p.payment_window_s),
            max_extensions=p.max_extensions,
            payment_query_after_s=float(p.status_query_after_s),
        )
        self._inbox: queue.Queue[object] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._unsubscribe: Callable[[], None] | None = None
        # controller-thread state
        self.catalog: Catalog = store.catalog.load()
        self.planogram: Planogram = store.planogram.load()
        self.session = session.new_session(p.max_cart_items)
        self._board_online: bool | None = None
        self._board_status: BoardStatus | None = None
        self._open_doors: set[int] = set()
        self._started_mono = clock.monotonic()
        self._mono_offset = clock.monotonic() - clock.time()  # wall -> monotonic, for the UI
        self._wire(on_commit, vend_timeout_s, unlock_timeout_s, query_retry_s)
        self.chilled = ChilledWatch(
            self.persist, clock, config.chilled, sensor.name if sensor else "board"
        )
        self.payment_query = payment_query
        if province_time is not None:
            self.province_time = province_time
        self.sales.province_keys = province_keys  # confirmations follow the sync keyring
        self.sales.payment_rejected = payment_rejected  # (what, reason, detail): sync counts
        self.province_online = province_online  # the sync link's state, read for every view
        # a software update (kiosk/update/gate.py): no order, no technician; set before start
        # or on the controller thread (`call`)
        self.updating = False

    def _wire(
        self,
        on_commit: Callable[[], None] | None,
        vend_timeout_s: float,
        unlock_timeout_s: float,
        query_retry_s: float,
    ) -> None:
        """The parts of the shell, one per job."""
        post, planogram = self._inbox.put, lambda: self.planogram
        self.persist = Persistence(
            self.store, self.repo, self.sink, self.clock, self.kiosk_id, on_commit
        )
        self.persist.head_signer = _head_signer(self.config)
        self.upkeep = Upkeep(self.store, self.config)
        self.integrity = IntegrityCheck(
            self.store, self.repo, self.persist, self.clock, post, self._stop
        )
        self.sales = Sales(
            self.store,
            self.repo,
            self.persist,
            self.clock,
            self.kiosk_id,
            self.province_public_key,
            planogram,
            lambda job: self.worker.jobs.put(job),
            self._tell,
        )
        self.worker = DispenseWorker(
            self.board,
            self.store,
            self.clock,
            planogram,
            post,
            self.sales.tx_in_use,
            self._stop,
            vend_timeout_s=vend_timeout_s,
            unlock_timeout_s=unlock_timeout_s,
            query_retry_s=query_retry_s,
        )
        self.access = ServiceAccess(self.persist, self.clock, self.kiosk_id)
        self._updates = UpdateHistory(self.config.update.root)  # the service menu's version list
        self.tech = Technician(
            self.store,
            self.repo,
            self.persist,
            self.clock,
            planogram,
            lambda: bool(self.sales.orders),
            self.worker.jobs.put,
            who=lambda: self.access.technician,
        )
        if os.environ.get(_CRASH_ENV):  # testing only: kill-at-every-step
            from kiosk.controller import crashpoints

            crashpoints.install(self.persist, self.worker)

    # --- hooks the sync layer sets (also constructor parameters) ------------------------

    @property
    def on_commit(self) -> Callable[[], None] | None:
        """Called after a transaction that may have appended outbox records has committed
        (the sync client's `wake`, so a sale record leaves at once, not at the next poll)."""
        return self.persist.on_commit

    @on_commit.setter
    def on_commit(self, fn: Callable[[], None] | None) -> None:
        self.persist.on_commit = fn

    @property
    def province_time(self) -> Callable[[float], float]:
        """Kiosk time -> the province's time (the sync layer's clock-offset estimate)."""
        return self.sales.province_time

    @province_time.setter
    def province_time(self, fn: Callable[[float], float]) -> None:
        self.sales.province_time = fn

    @property
    def payment_query(self) -> Callable[[PaymentStatusQuery], None] | None:
        return self.sales.payment_query

    @payment_query.setter
    def payment_query(self, fn: Callable[[PaymentStatusQuery], None] | None) -> None:
        self.sales.payment_query = fn

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the threads; the first thing the controller thread does is recovery."""
        self._inbox.put(ib.Recover())
        self._unsubscribe = self.board.subscribe(lambda _a, ev: self._inbox.put(ib.Event(ev)))
        sensor = self.sensor
        threads: list[tuple[str, Callable[[], None]]] = [
            ("controller", self._run),
            ("dispense", self.worker.run),
            ("monitor", self._run_monitor),
        ]
        if sensor is not None:
            every = self.config.modbus.sensor_every_s
            threads.append(
                ("sensor", lambda: run_sensor_monitor(sensor, self._inbox.put, self._stop, every))
            )
        for name, target in threads:
            t = threading.Thread(target=target, name=f"kiosk-{name}", daemon=True)
            self._threads.append(t)
            t.start()

    def _run_monitor(self) -> None:
        run_board_monitor(self.board, self._inbox.put, self._stop, self.status_every_s)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the threads, waiting at most `timeout` seconds in all. A vend in flight is not
        waited for: its state is on disk before each step, so the next start's recovery asks
        the board for its outcome exactly as after a crash."""
        self._stop.set()
        self._inbox.put(ib.Stop())
        self.worker.jobs.put(None)
        if self._unsubscribe is not None:
            self._unsubscribe()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))

    # --- ui.Controller protocol and other inputs (any thread) ------------------------------

    def post(self, item: object) -> None:
        """Queue a UI intent (or any inbox item); never blocks."""
        self._inbox.put(item)

    def view(self) -> ui.ViewState:
        return self._published.get()

    def set_notify(self, notify: Callable[[], None]) -> None:
        self._published.notify = notify

    def submit_confirmation(self, c: PaymentConfirmation | Mapping[str, Any]) -> None:
        """A province payment confirmation (object or wire dict); verified on the inbox."""
        self._inbox.put(ib.Confirm(c))

    def submit_status_reply(self, reply: PaymentStatusReply) -> None:
        self._inbox.put(ib.PaymentStatusItem(reply))

    def board_state_changed(self, online: bool, reason: str = "") -> None:
        """Link listener hook (`SerialLink.add_state_listener`): faster than the status poll."""
        self._inbox.put(ib.Health(online, None, reason))

    def reload(self) -> None:
        """Catalog or planogram changed in the store (sync applied a new version)."""
        self._inbox.put(ib.Call(self._reload))

    def call(self, fn: Callable[[], object], timeout: float = 10.0) -> object:
        """Run `fn` on the controller thread and return its result (tests, tools)."""
        c = ib.Call(fn)
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
        return self._published.wait(predicate, timeout)

    # --- the controller thread ----------------------------------------------------------

    def _run(self) -> None:
        next_tick = self.clock.monotonic() + self.tick_s
        while True:
            wait = max(0.0, next_tick - self.clock.monotonic())
            try:
                item: object = self._inbox.get(timeout=wait)
            except queue.Empty:
                item = None
            if isinstance(item, ib.Stop):
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
        if isinstance(item, ib.Call):
            item.run()
        elif isinstance(item, ib.Recover):
            self.integrity.at_start()
            self.sales.recover()
        elif isinstance(item, ib.Reported):
            self.sales.on_reported(item)
        elif isinstance(item, ib.Unknown):
            self.sales.on_unknown(item)
        elif isinstance(item, ib.Health):
            self._on_health(item)
        elif isinstance(item, ib.Event):
            self._on_event(item.event)
        elif isinstance(item, ib.SensorPoll):
            self.chilled.reading(item.celsius, item.humidity_pct, item.error, self.catalog)
        elif isinstance(item, ib.Confirm):
            self.sales.on_confirmation(item.confirmation)
        elif isinstance(item, ib.PaymentStatusItem):
            self.sales.on_status_reply(item.reply)
        elif isinstance(item, ib.TestDone):
            self.tech.test_done(item)
        elif self.updating and isinstance(item, TECHNICIAN_INPUTS):
            self._refuse_for_update(item)
        elif isinstance(item, ui.Restock | ui.TestVend | ui.CheckSlot | ui.OpenDoor | ui.LockSales):
            self.tech.handle(item)
        elif isinstance(item, ui.ServiceLogin):
            self.access.login(item)  # the lockout (and its alarm) on disk first
            self._on_intent(item)
        elif isinstance(item, ui.ServiceExit):
            self._on_intent(item)  # logged with the technician's id
            self.access.logout()
        else:
            self._on_intent(item)

    def _refuse_for_update(self, item: object) -> None:
        """While updating, no technician session: a login is counted (the UI waits for the
        count) but opens nothing; the shopping session refuses orders by itself (the
        out-of-service reason `updating`)."""
        if isinstance(item, ui.ServiceLogin):
            self.access.attempts += 1
        log_event(log, "service.refused", logging.WARNING, kind=type(item).__name__, why="update")

    def _on_tick(self) -> None:
        self.sales.tick(self._board_online)
        self.persist.pump_stock()  # stock log rows of other writers -> events/stock
        self.chilled.tick(self.catalog)
        mono = self.clock.monotonic()
        idle = not self.sales.orders and not self.sales.inflight
        self.upkeep.checkpoint_when_idle(mono, idle and self.tech.test_running is None)
        if not self.upkeep.disk_due(mono):
            return
        try:
            self.tech.reread_lock()
            if not self.persist.writable:  # probe: does a write work again?
                self.store.settings.set("controller.probe", str(int(self.clock.time())))
                self.persist.writable = True
                self.sales.feed_all(sale.Recovery)
        except STORE_ERRORS as e:
            self.persist.failed(e, "probe")

    def _reload(self) -> None:
        self.catalog = self.store.catalog.load()
        self.planogram = self.store.planogram.load()

    # --- the board ----------------------------------------------------------------------

    def _on_health(self, h: ib.Health) -> None:
        if h.status is not None:
            self._board_status = h.status
            if self.sensor is None:  # the board's own compartment sensor (None: failed)
                self.chilled.reading(h.status.temperature_c, None, "", self.catalog)
        starting = self.clock.monotonic() - self._started_mono < self.start_grace_s
        if not h.online and self._board_online is None and starting:
            return  # still connecting
        was = self._board_online
        self._board_online = h.online
        if was is not False and not h.online:
            log_event(log, "board.offline", logging.WARNING, reason=h.reason)
            self.sales.feed_all(sale.BoardWentOffline)
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

    # --- the shopping session -----------------------------------------------------------

    def _on_intent(self, it: object) -> None:
        msg = session_input(it, self.clock.time(), self._secret, self._shelf)
        if msg is None:
            log_event(log, "controller.unknown_input", logging.WARNING, kind=type(it).__name__)
            return
        self._tell(msg)

    def _shelf(self) -> session.Shelf:
        return session.Shelf(
            self.catalog,
            self.planogram,
            self.store.stock.levels(),
            self.repo.reserved(),
            self.persist.bad_slots | self.persist.chilled_slots,
        )

    def _tell(self, msg: session.Input) -> None:
        """Step the session, then carry out its commands in order."""
        self.session, commands = session.step(self.session, msg)
        for c in commands:
            if isinstance(c, session.FeedShown):
                order = self.sales.load(c.order_id)
                if order is not None:
                    new = self.sales.feed(order, c.input)
                    self._tell(session.Fed(new.order_id, new.state))
            elif isinstance(c, session.PlaceOrder):
                self._place_order(c.cart)
            elif isinstance(c, session.Note):
                self.tech.note(c.text, c.key, dict(c.params))
                log_event(log, "cart.refused", reason=c.text)
            else:
                self.tech.log(c.action, **c.fields)

    def _place_order(self, cart: cartlib.Cart) -> None:
        self.upkeep.measure_disk()  # on every order, not only every few seconds
        if self.upkeep.disk_low:
            self.tech.note("disk below store.min_free_mb", "disk_low")
            return
        refused = self.sales.checkout(cart, self.catalog, self.rules)
        if refused is not None:
            self.tech.note(str(refused), refused.key, refused.params)

    # --- the view -----------------------------------------------------------------------

    def _facts(self, sellable: int, chilled_stopped: bool = False) -> ServiceFacts:
        hw = self.config.hardware
        st = self._board_status
        return ServiceFacts(
            board_online=self._board_online,
            store_writable=self.persist.writable,
            free_mb=self.upkeep.free_mb,
            min_free_mb=float(self.config.store.min_free_mb),
            sellable_units=sellable,
            store_damaged=bool(self.integrity.damage),
            service_door_open=bool(st and st.service_door_open),
            temperature_c=None if st is None else st.temperature_c,
            max_temperature_c=hw.max_temperature_c if hw.chilled else None,
            sales_locked=self.tech.sales_locked,
            chilled_stopped=chilled_stopped,
            updating=self.updating,
        )

    def _snapshot(self) -> Snapshot:
        levels = self.store.stock.levels()
        reserved = self.repo.reserved()
        available = sellable_units(
            self.catalog, self.planogram, levels, reserved, self.persist.bad_slots
        )
        stopped = self.chilled.blocked(self.catalog)
        self.persist.chilled_slots = self.chilled.blocked_slots(self.catalog, self.planogram)
        unavailable = {p: "too_warm" for p in stopped if available.get(p, 0) > 0}
        available = {p: 0 if p in stopped else n for p, n in available.items()}
        facts = self._facts(sum(available.values()), bool(unavailable))
        reasons = out_of_service_reasons(facts)
        if tuple(reasons) != self.session.reasons:
            self._tell(session.ServiceChanged(tuple(reasons)))
        s = self.session
        screen = OrderScreen(
            now=self.clock.time(),
            kiosk_id=self.kiosk_id,
            service_phone=self.config.ui.service_phone,
            pay_url_base=self.config.payments.pay_url_base,
            secret=self._secret,
            mono_offset=self._mono_offset,
            province_time=self.province_time,
            last_view=s.shown_view,
        )
        return Snapshot(
            catalog=self.catalog,
            planogram=self.planogram,
            levels=levels,
            available=available,
            unavailable=unavailable,
            temperature_c=self.chilled.celsius(),
            humidity_pct=self.chilled.humidity_pct,
            chilled_stopped=tuple(sorted(stopped)),
            reasons=reasons,
            session=s,
            shown=None if s.shown is None else self.sales.load(s.shown),
            screen=screen,
            sales_locked=self.tech.sales_locked,
            board_online=self._board_online,
            queue_depths=self._queue_depths(),
            last_result=self.tech.last_result,
            result=self.tech.result,
            pin=self.access.view(self._mono_offset),
            province_online=None if self.province_online is None else self.province_online(),
            update_history=self._updates.lines(),
        )

    def _queue_depths(self) -> dict[str, int]:
        depth_fn = getattr(self.sink, "depth", None)
        if callable(depth_fn):
            try:
                return {p.name.lower(): n for p, n in depth_fn().items()}
            except STORE_ERRORS:
                pass
        return {}

    def _publish(self) -> None:
        try:
            view = build_view(self._snapshot())
        except STORE_ERRORS as e:
            self.persist.failed(e, "view")
            return
        self._published.publish(view)


def session_input(
    it: object, now: float, secret: bytes, shelf: Callable[[], session.Shelf]
) -> session.Input | None:
    """A UI intent as an input of the shopping session (None: not one of its intents)."""
    if isinstance(it, ui.StartShopping):
        return session.Browse()
    if isinstance(it, ui.AddToCart):
        return session.AddOne(it.product_id, shelf())
    if isinstance(it, ui.SetQuantity):
        return session.SetQty(it.product_id, it.qty, shelf())
    if isinstance(it, ui.Checkout):
        return session.PressCheckout()
    if isinstance(it, ui.CancelOrder):
        return session.Cancel(now)
    if isinstance(it, ui.ExtendPayment):
        return session.Extend(now)
    if isinstance(it, ui.EnterOfflineCode):
        return session.OfflineCode(it.code, now, secret)
    if isinstance(it, ui.BackToIdle):
        return session.Leave(now)
    if isinstance(it, ui.ServiceLogin | ui.ServiceExit | ui.ServiceViewed):
        return session.ServiceMenu(type(it).__name__, dataclasses.asdict(it))
    return None


def _head_signer(config: _config.KioskConfig) -> HeadSigner | None:
    """Sale records carry a head signature made with the device key (kiosk.sync.ledger_head)
    when the kiosk has one (`[sync] key_file`); a key that cannot be used is logged, and the
    records go unsigned (the province then refuses them: the technician must fix the key)."""
    key_file = config.sync.key_file
    if key_file is None:
        return None
    try:
        return HeadSigner.from_key_file(key_file, config.identity.kiosk_id)
    except ValueError as e:
        log_event(log, "ledger.head_key_unusable", logging.ERROR, error=str(e))
        return None
