"""A locker lock-control board on the Modbus line, as a ``BoardDriver`` for locker slots.

Owns: the board's register map (`LockMap`: coil n releases lock n, discrete input n is door n,
which input value means open), the unlock flow (door closed first, release, watch the door open
and close or the deadline pass, relock), the outcomes of this process's unlocks (the only
outcome memory there is: Modbus boards keep none) and door events from the status poll.

Rules (docs/boards/modbus.md, "What happens on loss"):
- a release that may have reached the board is never written again for the same tx; if the
  write got no answer, the tx is INTERRUPTED (unknown: the sale refunds and alarms);
- a door never seen open, sampled closed at least every `max_sample_gap_s` for the whole
  wait, is DOOR_NOT_OPENED (the item is still there, locked again); with a longer gap (polls
  lost or slow) an opening may have been missed: INTERRUPTED;
- after a restart every earlier tx is UNKNOWN_TX: nothing is persisted, so the sale machine's
  rule for unknown outcomes applies (never re-vended, refunded, alarmed).

Must never: build Modbus frames or retry on its own (kiosk.hardware.modbus_bus, pymodbus).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kiosk.clock import Clock, SystemClock
from kiosk.hardware.board import (
    DEFAULT_TEST_TIMEOUT,
    DEFAULT_UNLOCK_TIMEOUT,
    DEFAULT_VEND_TIMEOUT,
    BoardEventListener,
    BoardInfo,
    BoardOffline,
    BoardStatus,
    BoardVendResult,
    SlotCheck,
)
from kiosk.hardware.modbus_bus import ModbusBus, ModbusError, ModbusRefused
from kiosk.hardware.protocol import CabinetKind, DoorEvent, Outcome, SlotGroup, WireSlotKind
from kiosk.log import log_event

__all__ = ["LockMap", "ModbusLockBoard"]

log = logging.getLogger("kiosk.hardware.modbus")
OUTCOME_MEMORY = 256


@dataclass(frozen=True, slots=True)
class LockMap:
    unit: int = 1
    locks: int = 16
    coil_base: int = 0  # coil of lock 0; lock n is coil_base + n
    door_base: int = 0  # discrete input of door 0
    door_open_value: bool = True  # the input reads this when the door is open
    door_poll_s: float = 0.2
    # DOOR_NOT_OPENED only if the door was sampled closed at least this often for the whole
    # wait; a longer gap (a lossy line) could hide an opening: the outcome is then unknown
    max_sample_gap_s: float = 1.0


class ModbusLockBoard:
    """``BoardDriver`` for one lock board (planogram board `address`, Modbus unit
    `lock_map.unit`). Thread-safe; one unlock at a time per board."""

    def __init__(
        self,
        bus: ModbusBus,
        address: int,
        lock_map: LockMap,
        *,
        clock: Clock | None = None,
        wait: Callable[[float], object] | None = None,
    ) -> None:
        self.bus, self.address, self.map = bus, address, lock_map
        self._clock: Clock = clock or SystemClock()
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._run_lock = threading.Lock()
        self._lock = threading.Lock()
        self._running: dict[int, int] = {}  # tx -> slot
        self._outcomes: collections.OrderedDict[int, Outcome] = collections.OrderedDict()
        self._listeners: list[BoardEventListener] = []
        self._open: frozenset[int] | None = None

    # --- BoardDriver ------------------------------------------------------------------------

    def identify(self) -> BoardInfo:
        self._doors()  # proves the board answers
        return BoardInfo(
            address=self.address,
            model="modbus-lock",
            serial=f"unit-{self.map.unit}",
            firmware=(0, 0, 0),
            protocol_version=0,
            cabinet=CabinetKind.LOCKER,
            chilled=False,
            presence_sensing=False,
            nonvolatile_outcomes=False,
            outcome_memory=0,
            slot_groups=(SlotGroup(0, self.map.locks, WireSlotKind.LOCKER),),
        )

    def status(self) -> BoardStatus:
        open_doors = self._doors()
        with self._lock:
            busy = next(iter(self._running), 0)
            before, self._open = self._open, open_doors
        if before is not None:
            for door in sorted(before ^ open_doors):
                self._emit(DoorEvent(door, door in open_doors))
        return BoardStatus(
            busy=bool(busy),
            service_door_open=False,
            temperature_c=None,
            faults=frozenset(),
            busy_tx=busy,
            open_doors=open_doors,
            present=None,
        )

    def vend(self, slot: int, tx: int, timeout: float = DEFAULT_VEND_TIMEOUT) -> BoardVendResult:
        return BoardVendResult(tx, slot, Outcome.WRONG_SLOT_KIND, 0.0, "host")

    def unlock(
        self, slot: int, tx: int, timeout: float = DEFAULT_UNLOCK_TIMEOUT
    ) -> BoardVendResult:
        with self._run_lock:
            return self._unlock(slot, tx, timeout)

    def test_slot(
        self, slot: int, tx: int, timeout: float = DEFAULT_TEST_TIMEOUT
    ) -> BoardVendResult:
        """A lock's test is a release watched like a sale (the technician opens and closes)."""
        return self.unlock(slot, tx, timeout)

    def outcome(self, tx: int) -> Outcome:
        with self._lock:
            if tx in self._running:
                return Outcome.IN_PROGRESS
            return self._outcomes.get(tx, Outcome.UNKNOWN_TX)

    def subscribe(self, listener: BoardEventListener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def check_slots(self, slots: Sequence[int], timeout: float = 0.0) -> list[SlotCheck]:
        """The door inputs, read once: a lock board has nothing else to ask; no lock opens."""
        open_doors = self._doors()
        out: list[SlotCheck] = []
        for slot in slots:
            if not 0 <= slot < self.map.locks:
                out.append(SlotCheck(slot, Outcome.INVALID_SLOT.name, "no such lock"))
            elif slot in open_doors:
                out.append(SlotCheck(slot, "DOOR_OPEN", "door input: open"))
            else:
                out.append(SlotCheck(slot, "READY", "door input: closed; lock not released"))
        return out

    def close(self) -> None:
        """Stop a running unlock's door watch (at shutdown)."""
        self._stop.set()

    # --- the unlock flow --------------------------------------------------------------------

    def _unlock(self, slot: int, tx: int, timeout: float) -> BoardVendResult:
        start = self._clock.monotonic()
        with self._lock:
            known = self._outcomes.get(tx)
        if known is not None:
            return self._result(tx, slot, known, start, "reply")
        if not 0 <= slot < self.map.locks:
            return self._result(tx, slot, Outcome.INVALID_SLOT, start, "host")
        if slot in self._doors():  # open already (BoardOffline: nothing was sent either)
            return self._result(tx, slot, Outcome.REFUSED_FAULT, start, "host")
        with self._lock:
            self._running[tx] = slot
        try:
            outcome = self._release_and_watch(slot, tx, start + timeout)
        except BaseException:  # the release may have gone out: never again for this tx
            self._remember(tx, Outcome.INTERRUPTED)
            raise
        finally:
            with self._lock:
                self._running.pop(tx, None)
        self._remember(tx, outcome)
        if outcome is Outcome.INTERRUPTED:
            raise BoardOffline(self.address, self.bus.last_error or "no answer", tx)
        return self._result(tx, slot, outcome, start, "event")

    def _release_and_watch(self, slot: int, tx: int, deadline: float) -> Outcome:
        coil = self.map.coil_base + slot
        try:
            self.bus.write_coil(self.map.unit, coil, True)
        except ModbusRefused as e:
            log_event(log, "modbus.release_refused", logging.ERROR, tx=tx, slot=slot, error=str(e))
            return Outcome.LOCK_FAILED
        except ModbusError as e:
            # It may have released: never written again for this tx (unknown outcome).
            log_event(log, "modbus.release_unanswered", logging.WARNING, tx=tx, error=str(e))
            self._remember(tx, Outcome.INTERRUPTED)
            return Outcome.INTERRUPTED
        seen_open, blind = False, False
        last_sample = self._clock.monotonic()
        while self._clock.monotonic() < deadline:
            if self._stop.is_set() or self.bus.closed:  # shutting down mid-wait: unknown
                self._relock(coil, tx)
                return Outcome.INTERRUPTED
            try:
                is_open = slot in self._doors()
            except BoardOffline:
                is_open = None
            now = self._clock.monotonic()
            if is_open is not None:
                # a door may open and close unseen between two samples further apart than this
                blind = blind or now - last_sample > self.map.max_sample_gap_s
                last_sample = now
            if is_open:
                seen_open = True
            elif is_open is False and seen_open:
                return Outcome.DOOR_OPENED_AND_CLOSED
            self._wait(self.map.door_poll_s)
        self._relock(coil, tx)
        if seen_open:
            return Outcome.DOOR_NOT_CLOSED
        end = self._clock.monotonic()
        blind = blind or end - last_sample > self.map.max_sample_gap_s
        return Outcome.INTERRUPTED if blind else Outcome.DOOR_NOT_OPENED

    def _relock(self, coil: int, tx: int) -> None:
        """Boards that latch the coil keep the lock open until it is written 0."""
        try:
            self.bus.write_coil(self.map.unit, coil, False)
        except ModbusError as e:
            log_event(log, "modbus.relock_failed", logging.WARNING, tx=tx, error=str(e))

    def _doors(self) -> frozenset[int]:
        m = self.map
        try:
            bits = self.bus.read_discrete_inputs(m.unit, m.door_base, m.locks)
        except ModbusError as e:
            raise BoardOffline(self.address, str(e)) from e
        return frozenset(i for i, b in enumerate(bits) if b == m.door_open_value)

    def _remember(self, tx: int, outcome: Outcome) -> None:
        with self._lock:
            self._outcomes[tx] = outcome
            self._outcomes.move_to_end(tx)
            while len(self._outcomes) > OUTCOME_MEMORY:
                self._outcomes.popitem(last=False)

    def _result(
        self, tx: int, slot: int, outcome: Outcome, start: float, source: str
    ) -> BoardVendResult:
        seconds = self._clock.monotonic() - start
        log_event(
            log,
            "board.tx_done",
            address=self.address,
            cmd="MODBUS_UNLOCK",
            slot=slot,
            tx=tx,
            outcome=outcome.name,
            source=source,
            seconds=round(seconds, 3),
        )
        return BoardVendResult(tx, slot, outcome, seconds, source)

    def _emit(self, event: DoorEvent) -> None:
        with self._lock:
            fns = list(self._listeners)
        for fn in fns:
            try:
                fn(self.address, event)
            except Exception:
                log.exception("board.listener_failed")
