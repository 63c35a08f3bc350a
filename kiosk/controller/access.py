"""Service access: the PIN lockout kept in the store, its alarm, and who is logged in.

Owns: the lockout (`kiosk.core.pin.PinLockout`, kiosk wall-clock seconds) read from the store
at start and written on every counted attempt (settings key `service.pin_lockout`), the
PIN_LOCKOUT alarm (one `alarm` record per lockout step, in the same transaction as the
lockout it reports), the technician logged in (their id goes on every technician record), and
the `PinView` the UI reads before it checks a PIN.
Never: sees a PIN (the UI checks it against the configured hashes and reports the outcome);
forgets a lock because a write failed (the lock holds in memory until the next start).
"""

from __future__ import annotations

import logging

from kiosk import contract as ui
from kiosk.clock import Clock
from kiosk.controller.persist import STORE_ERRORS, Persistence
from kiosk.core.pin import FREE_FAILURES, PinLockout
from kiosk.log import log_event
from kiosk.sync.outbox import Priority

log = logging.getLogger("kiosk.controller")

PIN_LOCKOUT_KEY = "service.pin_lockout"  # settings key: {"failures": n, "locked_until": t|null}
PIN_LOCKOUT_CODE = "PIN_LOCKOUT"


class ServiceAccess:
    def __init__(self, persist: Persistence, clock: Clock, kiosk_id: str) -> None:
        self.persist = persist
        self.clock = clock
        self.kiosk_id = kiosk_id
        self.attempts = 0
        self.technician = ""  # the id logged in to the service menu ("" when nobody is)
        self.lock = self._load()

    def _load(self) -> PinLockout:
        try:
            raw = self.persist.store.settings.get_json(PIN_LOCKOUT_KEY, None)
        except STORE_ERRORS as e:
            raw = e
        if raw is None:
            return PinLockout()
        lock = PinLockout.from_json(raw)
        if lock is None:  # unreadable: the next wrong PIN costs a delay
            log_event(log, "service.pin_lockout_unreadable", logging.WARNING, value=str(raw))
            return PinLockout(failures=FREE_FAILURES - 1)
        return lock.normalized(self.clock.time())

    def login(self, it: ui.ServiceLogin) -> None:
        """A PIN attempt the UI checked (or refused because the menu is locked)."""
        self.attempts += 1
        if it.locked_out:
            return
        if it.ok:
            self.technician = it.technician
            if self.lock != PinLockout():
                self._save(PinLockout(), alarm=False)
            return
        self.technician = ""
        self._save(self.lock.failed(self.clock.time()), alarm=True)

    def logout(self) -> None:
        self.technician = ""

    def _save(self, new: PinLockout, *, alarm: bool) -> None:
        self.lock = new  # first: a failed write must not lift the lock
        locked = alarm and new.locked_until is not None
        store, sink = self.persist.store, self.persist.sink
        try:
            with store.transaction() as conn:
                store.settings.set_json(PIN_LOCKOUT_KEY, new.to_json())
                if locked and sink is not None:
                    sink.append(
                        "alarm",
                        self._alarm_body(new),
                        Priority.HIGH,
                        event_id=f"alarm-{self.kiosk_id}-pin-{store.epoch}-"
                        f"{new.failures}-{int((new.locked_until or 0) * 1000)}",
                        conn=conn,
                    )
        except STORE_ERRORS as e:
            self.persist.failed(e, "pin_lockout")
            return
        if locked:
            log_event(
                log,
                "alarm",
                logging.WARNING,
                kind=PIN_LOCKOUT_CODE,
                failures=new.failures,
                locked_until=new.locked_until,
            )
        self.persist.committed()

    def _alarm_body(self, lock: PinLockout) -> dict[str, object]:
        until = lock.locked_until or 0.0
        delay = round(lock.remaining_s(self.clock.time()))
        return {
            "code": PIN_LOCKOUT_CODE,
            "severity": "warning",
            "detail": f"{lock.failures} wrong service PINs in a row: "
            f"the service menu is locked for {delay} s",
            "context": {"failures": lock.failures, "locked_until": until},
        }

    def view(self, mono_offset: float) -> ui.PinView:
        """`mono_offset`: the UI's clock minus the kiosk's wall clock."""
        now = self.clock.time()
        lock = self.lock.normalized(now)
        until = lock.locked_until if lock.locked(now) else None
        return ui.PinView(
            ready=True,
            attempts=self.attempts,
            failures=lock.failures,
            locked_until=None if until is None else until + mono_offset,
            tries_left=lock.tries_left(now),
        )
