"""Technician actions from the service menu: restock, test vend / open a locker door, check a
slot without running it, lock sales, and the technician log (every action also goes to the
province as a record). A test vend that delivered takes the item off the count (TEST_VEND); a
check drops nothing and changes no count.

Owns: the last result shown in the service menu, the running test vend, the sales lock.
Never: starts a test vend while an order is open (the board serves one tx at a time), or
touches an order.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from kiosk import contract as ui
from kiosk.clock import Clock
from kiosk.controller.inbox import TestDone, TestJob
from kiosk.controller.persist import STORE_ERRORS, Persistence
from kiosk.core.planogram import Planogram
from kiosk.core.stock import StockChange, StockError, StockReason
from kiosk.log import log_event
from kiosk.store import Store
from kiosk.store.orders import OrderRepo
from kiosk.sync.outbox import Priority
from kiosk.sync.records import selftest_body, slot_result, slot_test_ok

log = logging.getLogger("kiosk.controller")

SALES_LOCKED = "sales.locked"  # settings key: "1" = the province (or a technician) locked sales

TechnicianIntent = ui.Restock | ui.TestVend | ui.CheckSlot | ui.OpenDoor | ui.LockSales


class Technician:
    def __init__(
        self,
        store: Store,
        repo: OrderRepo,
        persist: Persistence,
        clock: Clock,
        planogram: Callable[[], Planogram],
        orders_open: Callable[[], bool],
        put_job: Callable[[TestJob], None],
        who: Callable[[], str] = lambda: "",
    ) -> None:
        self.store = store
        self.repo = repo
        self.persist = persist
        self.clock = clock
        self._planogram = planogram
        self._orders_open = orders_open
        self._put_job = put_job
        self._who = who  # the technician logged in (kiosk.controller.access), "" if nobody
        self.last_result = ""
        self.result: ui.ServiceResult | None = None  # last_result, for the screen to word
        self.test_running: int | None = None
        self._test_started: tuple[str, float] | None = None  # (kind, kiosk time) of that test
        self.sales_locked = store.settings.get(SALES_LOCKED) == "1"

    def handle(self, it: TechnicianIntent) -> None:
        if isinstance(it, ui.Restock):
            self.restock(it.slot, it.count)
        elif isinstance(it, ui.TestVend | ui.OpenDoor):
            self.test_vend(it.slot, "unlock" if isinstance(it, ui.OpenDoor) else "test")
        elif isinstance(it, ui.CheckSlot):
            self.check_slot(it.slot)
        else:
            self.lock_sales(it.locked)

    def log(self, action: str, **fields: Any) -> None:
        """Every record carries `technician`: who is logged in (a login says whose PIN it was)."""
        fields = {"technician": self._who(), **fields}
        log_event(log, "technician", action=action, **fields)
        self.persist.append(
            "technician", {"action": action, **fields, "at": self.clock.time()}, Priority.HIGH
        )

    def _said(self, text: str, key: str, **params: str | int) -> None:
        """The last action's outcome: `text` for logs and tests, `key` + `params` for the
        screen (`result.<key>` in the UI catalogs)."""
        self.last_result = text
        self.result = ui.ServiceResult(key, params)

    def note(self, text: str, key: str = "", params: Mapping[str, str | int] | None = None) -> None:
        """A refused cart (from the session): `text` for logs, `key` + `params` for the screen
        to word (`result.<key>`); without a key the screen shows `text` as it is."""
        self.last_result = text
        self.result = ui.ServiceResult(key, dict(params or {})) if key else None

    def lock_sales(self, locked: bool) -> None:
        self.log("lock_sales", locked=locked)
        try:
            self.store.settings.set(SALES_LOCKED, "1" if locked else "0")
            self.sales_locked = locked
            self._said(
                "sales locked" if locked else "sales unlocked", "locked" if locked else "unlocked"
            )
        except STORE_ERRORS as e:
            self.persist.failed(e, "lock_sales")

    def reread_lock(self) -> None:
        """The province may have locked or unlocked sales (a settings write by sync)."""
        self.sales_locked = self.store.settings.get(SALES_LOCKED) == "1"

    def restock(self, slot: int, count: int | None) -> None:
        ref = f"restock-{int(self.clock.time())}"
        try:
            if count is None:
                level = self.store.stock.fill_to_capacity(slot, ref)
            else:
                level = self.store.stock.set_count(slot, count, ref)
        except (StockError, *STORE_ERRORS) as e:
            self._said(f"slot {slot}: {e}", "restock_failed", slot=slot, error=str(e))
            return
        self.persist.slot_back(slot)
        self.persist.pump_stock()
        self._said(f"slot {slot}: {level}", "restocked", slot=slot, level=level)
        self.log("restock", slot=slot, level=level)

    def _may_test(self, slot: int) -> bool:
        """No order or other test running, and the slot is in the planogram (else said why)."""
        if self._orders_open() or self.test_running is not None:
            self._said("busy: an order is running", "busy")
            return False
        if slot not in self._planogram().slots:
            self._said(f"slot {slot} is not in the planogram", "no_slot", slot=slot)
            return False
        return True

    def test_vend(self, slot: int, kind: str) -> None:
        if not self._may_test(slot):
            return
        try:
            tx = self.repo.start_test_vend(slot, kind, self.clock.time())
        except (ValueError, *STORE_ERRORS) as e:
            self._said(f"test vend refused: {e}", "test_refused", slot=slot, error=str(e))
            return
        self.test_running = tx
        self._test_started = (kind, self.clock.time())
        self.log("open_door" if kind == "unlock" else "test_vend", slot=slot, tx=tx, kind=kind)
        self._put_job(TestJob(tx, slot, kind))

    def check_slot(self, slot: int) -> None:
        """Look at a slot without running it (no tx, nothing drops, no count changes)."""
        if not self._may_test(slot):
            return
        self.test_running = 0
        self._test_started = ("check", self.clock.time())
        self.log("check_slot", slot=slot)
        self._put_job(TestJob(0, slot, "check"))

    def test_done(self, d: TestDone) -> None:
        self.test_running = None
        now = self.clock.time()
        if self._test_started is not None and self._test_started[0] == "check":
            self._said(
                f"slot {d.slot_no}: {d.outcome}", "checked", slot=d.slot_no, outcome=d.outcome
            )
            self.log("check_slot_done", slot=d.slot_no, outcome=d.outcome)
            self._report_test(d, now)
            return
        try:
            with self.store.transaction() as conn:
                self.repo.finish_test_vend(conn, d.tx, d.outcome, now)
                if d.delivered:
                    with contextlib.suppress(StockError):
                        self.store.stock.apply(
                            StockChange(d.slot_no, -1, StockReason.TEST_VEND, str(d.tx))
                        )
        except STORE_ERRORS as e:
            self.persist.failed(e, "test_vend")
        self.persist.pump_stock()
        self._said(
            f"slot {d.slot_no}: {d.outcome}", "tested", slot=d.slot_no, outcome=str(d.outcome)
        )
        self.log("test_vend_done", slot=d.slot_no, tx=d.tx, outcome=d.outcome)
        self._report_test(d, now)

    def _report_test(self, d: TestDone, now: float) -> None:
        """A slot test from the service menu (not a door opened for restocking) is a self test
        of that one slot for the province (`events/selftest`, source "service_menu")."""
        kind, started = self._test_started or ("test", now)
        self._test_started = None
        if kind == "check":
            ok = d.outcome == "READY"
            detail = f"checked without running: {d.outcome}"
        elif kind == "test":
            ok = slot_test_ok(d.outcome)
            detail = f"{d.outcome} (tx {d.tx})"
        else:
            return
        result = slot_result(d.outcome, ok)
        slot = {"slot_no": d.slot_no, "result": result, "detail": detail}
        body = selftest_body(
            source="service_menu", started_at=started, finished_at=now, slots=[slot]
        )
        self.persist.selftest(body)
