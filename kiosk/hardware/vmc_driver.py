"""``BoardDriver`` for a VMC (off-the-shelf vending controller) over ``VmcLink``.

Owns: the vend flow on a protocol without transaction ids (check selection, one vend command,
wait for the dispensing status), the driver's own outcome memory (tx -> outcome, this run only),
mapping dispensing, selection and machine statuses to the sale machine's ``Outcome``s, slot
faults and out-of-service reasons, and planogram slot -> VMC selection numbers.

The exactly-once rules are docs/boards/vmc.md section 8 and 10; the central one: a vend whose
command may have reached the VMC is never sent again; if its result is not known it ends as
``Outcome.INTERRUPTED`` (and ``outcome(tx)`` answers INTERRUPTED in this run, UNKNOWN_TX after a
restart, with no anchor to prove anything), so the sale machine refunds it and raises an alarm.

Must never: touch bytes or resend (``VmcLink`` / ``UpperSession``), decide anything about a sale
(the caller does, from the outcome), or take check selection / machine status as proof of
delivery.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from kiosk.clock import Clock, SystemClock
from kiosk.hardware.board import (
    DEFAULT_TEST_TIMEOUT,
    DEFAULT_UNLOCK_TIMEOUT,
    DEFAULT_VEND_TIMEOUT,
    BoardEventListener,
    BoardInfo,
    BoardOffline,
    BoardProtocolError,
    BoardStatus,
    BoardVendResult,
    EventFanout,
    SlotCheck,
)
from kiosk.hardware.protocol import (
    BoardReset,
    CabinetKind,
    FaultCode,
    Outcome,
    ResetReason,
    SlotGroup,
    VendResult,
    WireSlotKind,
)
from kiosk.hardware.vmc_link import VmcLink
from kiosk.hardware.vmc_protocol import (
    BadValue,
    CheckSelection,
    CommandAcked,
    CommandGivenUp,
    CommandSent,
    DispenseClass,
    DispenseCode,
    DispensingStatus,
    DriveSelection,
    InfoSync,
    MachineStatusQuery,
    MachineStatusReply,
    Received,
    SelectionInfo,
    SelectionState,
    SelectionStatus,
    SelectToBuy,
    SessionEvent,
    Undecodable,
    UpperCommand,
    VmcCommand,
    VmcSilent,
)
from kiosk.log import log_event

__all__ = ["VmcBoard", "VmcCommandKind", "dispense_outcome", "selection_refusal"]

log = logging.getLogger("kiosk.hardware.vmc")

SYNC_TIMEOUT_S = 5.0  # the information sync at start must be ACKed within this
CHECK_TIMEOUT_S = 3.0  # check selection / machine status answer
MEMORY_SIZE = 4096
# After a vend ended unknown, the next vend waits until the VMC has said nothing about any
# dispensing for this long: a late status of the old vend must not be taken for the new one.
SETTLE_S = 3.0
# After a sync the VMC sends its selection info one frame per poll: identify waits until none
# came for this long (at most INFO_WAIT_S), so it reports every selection, not the first few.
INFO_QUIET_S = 1.0
INFO_WAIT_S = 10.0
_T = TypeVar("_T")


class VmcCommandKind(enum.StrEnum):
    SELECT = "select"  # 0x03 select to buy: the VMC's own drop-sensor setting
    DRIVE = "drive"  # 0x06 drive selection directly, drop sensor on, no elevator


def dispense_outcome(status: DispensingStatus) -> Outcome:
    """A final dispensing status in the sale machine's terms (docs/boards/vmc.md 6.1)."""
    cls = status.dispense_class
    if cls is DispenseClass.DELIVERED:
        return Outcome.DELIVERED
    if cls is DispenseClass.FAILED:
        return (
            Outcome.MOTOR_MISSING if status.known is DispenseCode.MOTOR_MISSING else Outcome.JAMMED
        )
    if cls is DispenseClass.RUNNING:
        return Outcome.IN_PROGRESS
    return Outcome.INTERRUPTED  # may or may not have dropped: refund + alarm


def selection_refusal(state: int) -> Outcome | None:
    """None when the selection is sellable, else the refusal (nothing ran)."""
    if state == SelectionState.NORMAL:
        return None
    if state == SelectionState.OUT_OF_STOCK:
        return Outcome.SLOT_EMPTY
    if state == SelectionState.ABSENT:
        return Outcome.INVALID_SLOT
    return Outcome.REFUSED_FAULT  # paused, elevator / door / combo faults, unpublished


def _state_name(state: int) -> str:
    try:
        return SelectionState(state).name.lower().replace("_", " ")
    except ValueError:
        return f"state 0x{state:02X}"


class _Stage(enum.Enum):
    QUEUED = "queued"  # not left yet: may be withdrawn
    SENT = "sent"  # may have reached the VMC
    ACKED = "acked"
    RUNNING = "running"  # a "dispensing" status came


@dataclass(slots=True)
class _Vend:
    tx: int
    slot: int
    selection: int
    handle: int
    stage: _Stage = _Stage.QUEUED
    result: Outcome | None = None
    source: str = "event"


class VmcBoard:
    """A VMC as one board (``address``) of a ``Cabinet``; board slot n is selection
    ``n + selection_offset``. Thread-safe; at most one vend is open at a time."""

    def __init__(
        self,
        link: VmcLink,
        address: int = 0,
        *,
        selection_offset: int = 1,
        command: VmcCommandKind = VmcCommandKind.SELECT,
        slots: Iterable[int] = (),
        clock: Clock | None = None,
    ) -> None:
        self.link = link
        self.address = address
        self.selection_offset = selection_offset
        self.command = command
        self._slots = tuple(sorted(set(slots)))
        self._clock: Clock = clock or SystemClock()
        self._cond = threading.Condition()
        self._vend_lock = threading.Lock()
        self._memory: collections.OrderedDict[int, Outcome] = collections.OrderedDict()
        self._open: _Vend | None = None
        self._synced = False
        self._sync_handle: int | None = None
        self._acked: set[int] = set()
        self._given_up: set[int] = set()
        self._selections: dict[int, tuple[int, SelectionStatus]] = {}
        self._machine: tuple[int, MachineStatusReply] | None = None
        self._info: dict[int, SelectionInfo] = {}
        self._info_at = 0.0  # monotonic time of the last selection info
        self._info_complete = False  # the report stopped coming before identify's wait ended
        self._seq = 0
        self._settle_until = 0.0
        self._listeners = EventFanout()
        link.add_listener(self._on_session)

    # ------------------------------------------------------------------ BoardDriver

    def identify(self) -> BoardInfo:
        """The board's slots are the planogram's (``slots``) when given: every one of them
        is checked and sold, whatever the VMC's selection report said. Only without them are
        the selections the VMC reported after the sync taken (``reported_selections``)."""
        self._ensure_synced()
        start = self._clock.monotonic()
        with self._cond:
            while True:  # the selection info that follows a sync: until it stops coming
                now = self._clock.monotonic()
                last = max(self._info_at, start)
                if now - last >= INFO_QUIET_S:
                    self._info_complete = True
                    break
                if now - start >= INFO_WAIT_S:
                    self._info_complete = False  # still coming: the rest is not counted
                    break
                self._cond.wait(0.1)
            known = sorted(s - self.selection_offset for s in self._info)
        slots = [s for s in (list(self._slots) or known) if s >= 0]
        return BoardInfo(
            address=self.address,
            model=f"VMC ({self.command.value} to buy, selection = slot + {self.selection_offset})",
            serial="",
            firmware=(0, 0, 0),
            protocol_version=3,
            cabinet=CabinetKind.SPIRAL,
            chilled=False,
            presence_sensing=False,
            nonvolatile_outcomes=False,
            outcome_memory=MEMORY_SIZE,
            slot_groups=_groups(slots),
        )

    def reported_selections(self) -> tuple[list[int], bool]:
        """The VMC's selection numbers in its selection info (0x11) since this driver started,
        and whether the report had stopped coming when ``identify`` stopped waiting (the report
        has no end marker: False means it may be incomplete)."""
        with self._cond:
            return sorted(self._info), self._info_complete

    def status(self) -> BoardStatus:
        if not self.link.online:
            raise BoardOffline(self.address, self.link.last_error)
        with self._cond:
            seen = self._seq
        reply = self._ask(MachineStatusQuery(), lambda: self._machine_after(seen), CHECK_TIMEOUT_S)
        if reply is None:  # polling, but no answer: some VMCs lack 0x51; keep the last one
            with self._cond:
                reply = self._machine[1] if self._machine else None
        with self._cond:
            busy = self._open is not None
        faults: set[FaultCode] = set()
        if reply is not None and reply.temperature_controller:
            faults.add(FaultCode.TEMP_SENSOR)
        return BoardStatus(
            busy=busy,
            service_door_open=bool(reply is not None and reply.door),
            temperature_c=None,
            faults=frozenset(faults),
            busy_tx=0,
            open_doors=frozenset(),
            present=None,
        )

    def vend(self, slot: int, tx: int, timeout: float = DEFAULT_VEND_TIMEOUT) -> BoardVendResult:
        return self._run(slot, tx, timeout, "VEND")

    def test_slot(
        self, slot: int, tx: int, timeout: float = DEFAULT_TEST_TIMEOUT
    ) -> BoardVendResult:
        return self._run(slot, tx, timeout, "TEST_SLOT")

    def unlock(
        self, slot: int, tx: int, timeout: float = DEFAULT_UNLOCK_TIMEOUT
    ) -> BoardVendResult:
        """A VMC drives spirals and belts only."""
        return BoardVendResult(tx, slot, Outcome.WRONG_SLOT_KIND, 0.0, "host")

    def outcome(self, tx: int) -> Outcome:
        """This run's record of ``tx``; UNKNOWN_TX for a tx never queued in this run (a VMC
        keeps no outcomes, so after a restart nothing is known and nothing can be proven)."""
        with self._cond:
            return self._memory.get(tx, Outcome.UNKNOWN_TX)

    def subscribe(self, listener: BoardEventListener) -> Callable[[], None]:
        return self._listeners.add(listener)

    def check_slots(
        self, slots: Sequence[int], timeout: float = CHECK_TIMEOUT_S
    ) -> list[SlotCheck]:
        """Check selection (0x01) for each slot: the VMC's own view of the selection (normal,
        out of stock, does not exist, paused, a fault). No motor runs; it proves nothing about
        the motor itself beyond what the VMC knows."""
        out: list[SlotCheck] = []
        with self._vend_lock:
            self._ensure_synced()
            for slot in slots:
                selection = slot + self.selection_offset
                if not 1 <= selection <= 0xFFFF:
                    out.append(SlotCheck(slot, Outcome.INVALID_SLOT.name, "no such selection"))
                    continue
                try:
                    state = self._selection_state(selection, timeout)
                except BoardOffline as e:
                    out.append(SlotCheck(slot, "NO_ANSWER", e.reason))
                    continue
                refusal = selection_refusal(state)
                name = _state_name(state)
                what = f"check selection {selection}: {name}; motor not run"
                out.append(SlotCheck(slot, "READY" if refusal is None else refusal.name, what))
        return out

    def _selection_state(self, selection: int, timeout: float) -> int:
        with self._cond:
            seen = self._seq
        reply = self._ask(
            CheckSelection(selection), lambda: self._selection_after(selection, seen), timeout
        )
        if reply is None:
            raise BoardOffline(self.address, f"no answer to check selection {selection}")
        return reply.state

    # ------------------------------------------------------------------ the vend

    def _run(self, slot: int, tx: int, timeout: float, what: str) -> BoardVendResult:
        start = self._clock.monotonic()
        with self._vend_lock:
            with self._cond:
                known = self._memory.get(tx)
            if known is not None:
                if known.is_final:  # never sent twice: answer from the record
                    return BoardVendResult(tx, slot, known, 0.0, "reply")
                raise BoardProtocolError(f"tx {tx} is already running", tx)
            selection = slot + self.selection_offset
            if not 1 <= selection <= 0xFFFF:
                return BoardVendResult(tx, slot, Outcome.INVALID_SLOT, 0.0, "host")
            before_send = start + timeout / 2  # leave the vend itself half the time
            self._ensure_synced(before_send)
            self._settle(before_send)
            refusal = self._check_selection(selection, before_send)
            if refusal is not None:
                log_event(
                    log, "vmc.refused", slot=slot, selection=selection, tx=tx, outcome=refusal.name
                )
                return BoardVendResult(tx, slot, refusal, self._clock.monotonic() - start, "reply")
            vend = self._queue_vend(slot, tx, selection)
            outcome, source = self._wait_vend(vend, start + timeout)
        log_event(
            log,
            "board.tx_done",
            address=self.address,
            cmd=what,
            slot=slot,
            selection=selection,
            tx=tx,
            outcome=outcome.name,
            source=source,
            seconds=round(self._clock.monotonic() - start, 3),
        )
        self._listeners.emit(self.address, VendResult(tx, slot, outcome))
        return BoardVendResult(tx, slot, outcome, self._clock.monotonic() - start, source)

    def _command(self, selection: int) -> UpperCommand:
        if self.command is VmcCommandKind.DRIVE:
            return DriveSelection(selection, drop_sensor=True, elevator=False)
        return SelectToBuy(selection)

    def _queue_vend(self, slot: int, tx: int, selection: int) -> _Vend:
        """Record the tx as running, then queue: from here the command may leave on any POLL."""
        with self._cond:
            self._remember(tx, Outcome.IN_PROGRESS)
            try:
                queued = self.link.queue(self._command(selection))
            except BadValue as e:
                self._memory.pop(tx, None)
                raise BoardOffline(self.address, f"cannot queue the vend: {e}") from e
            vend = _Vend(tx, slot, selection, queued.handle)
            self._open = vend
        log_event(log, "vmc.vend_queued", tx=tx, slot=slot, selection=selection, comm=queued.comm)
        return vend

    def _wait_vend(self, vend: _Vend, deadline: float) -> tuple[Outcome, str]:
        try:
            with self._cond:
                while vend.result is None:
                    left = deadline - self._clock.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(min(left, 0.5))
                if vend.result is not None:
                    self._remember(vend.tx, vend.result)
                    return vend.result, vend.source
                stage = vend.stage
            if stage is _Stage.QUEUED and self.link.cancel(vend.handle):
                with self._cond:  # never left: nothing ran, the tx is free again
                    self._memory.pop(vend.tx, None)
                raise BoardOffline(self.address, "the VMC did not poll for the vend")
            log_event(
                log,
                "vmc.vend_unknown",
                logging.WARNING,
                tx=vend.tx,
                stage=stage.value,
                why="no final dispensing status before the deadline",
            )
            with self._cond:
                self._remember(vend.tx, Outcome.INTERRUPTED)
                self._settle_until = self._clock.monotonic() + SETTLE_S
            return Outcome.INTERRUPTED, "host"
        finally:
            with self._cond:
                if self._open is vend:
                    self._open = None

    def _settle(self, deadline: float) -> None:
        """Wait out the quiet period after an unknown vend (nothing is sent before it)."""
        with self._cond:
            while self._clock.monotonic() < self._settle_until:
                if self._clock.monotonic() >= deadline:
                    raise BoardOffline(self.address, "the VMC still reports an earlier vend")
                self._cond.wait(0.1)

    def _remember(self, tx: int, outcome: Outcome) -> None:
        self._memory[tx] = outcome
        self._memory.move_to_end(tx)
        while len(self._memory) > MEMORY_SIZE:
            self._memory.popitem(last=False)  # oldest first, as the anchor rule assumes

    # ------------------------------------------------------------------ asking

    def _ensure_synced(self, until: float | None = None) -> None:
        """An information sync ACKed since the last start, give-up, silence or VMC reboot.
        Re-queued when given up, until ``until`` (default SYNC_TIMEOUT_S from now)."""
        end = self._clock.monotonic() + SYNC_TIMEOUT_S if until is None else until
        while True:
            with self._cond:
                if self._synced:
                    return
            left = end - self._clock.monotonic()
            if left <= 0:
                raise BoardOffline(self.address, self.link.last_error or "no sync with the VMC")
            if not self.link.wait_online(min(left, SYNC_TIMEOUT_S)):
                continue
            with self._cond:
                if not self._synced and self._sync_handle is None:
                    # one already on its way (the session's own at start or after the VMC
                    # asked) is waited for: a second would be sent after the first's ACK
                    pending = self.link.pending(InfoSync)
                    self._sync_handle = (
                        pending if pending is not None else self.link.queue(InfoSync()).handle
                    )
                while (
                    not self._synced
                    and self._sync_handle is not None
                    and self._clock.monotonic() < end
                ):
                    self._cond.wait(0.1)

    def _check_selection(self, selection: int, until: float) -> Outcome | None:
        """Check selection, asked again (a new command) while unanswered, until ``until``."""
        while True:
            with self._cond:
                seen = self._seq
            left = until - self._clock.monotonic()
            reply = self._ask(
                CheckSelection(selection),
                lambda: self._selection_after(selection, seen),  # noqa: B023 (called at once)
                max(0.5, min(CHECK_TIMEOUT_S, left)),
            )
            if reply is not None:
                return selection_refusal(reply.state)
            if self._clock.monotonic() >= until:
                raise BoardOffline(self.address, f"no answer to check selection {selection}")

    def _ask(
        self, message: UpperCommand, answer: Callable[[], _T | None], wait_s: float
    ) -> _T | None:
        """Queue a question and wait for its answer. Unanswered within ``wait_s``, a question
        that has not left yet is withdrawn (a later ask is a new command; the old one is never
        sent): questions do not pile up while the VMC sends data frames instead of POLLs. The
        same question still queued or awaiting its ACK is waited for, not asked twice."""
        try:
            handle = self.link.pending(message)
            if handle is None:
                handle = self.link.queue(message).handle
        except BadValue as e:
            raise BoardOffline(self.address, f"cannot queue {type(message).__name__}: {e}") from e
        deadline = self._clock.monotonic() + wait_s
        with self._cond:
            while True:
                found = answer()
                left = deadline - self._clock.monotonic()
                if found is not None:
                    return found
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.1))
        if self.link.cancel(handle):
            log_event(log, "vmc.ask_withdrawn", command=type(message).__name__, why="not polled")
        return None

    def _selection_after(self, selection: int, seen: int) -> SelectionStatus | None:
        got = self._selections.get(selection)
        return got[1] if got is not None and got[0] > seen else None

    def _machine_after(self, seen: int) -> MachineStatusReply | None:
        got = self._machine
        return got[1] if got is not None and got[0] > seen else None

    # ------------------------------------------------------------------ session events

    def _on_session(self, event: SessionEvent) -> None:
        reset: BoardReset | None = None
        with self._cond:
            if isinstance(event, CommandSent):
                self._on_sent(event)
            elif isinstance(event, CommandAcked):
                self._on_acked(event)
            elif isinstance(event, CommandGivenUp):
                self._on_given_up(event)
            elif isinstance(event, VmcSilent):
                self._synced = False
                self._sync_handle = None
                self._ambiguous("the VMC fell silent")
            elif isinstance(event, Received):
                reset = self._on_received(event)
            self._cond.notify_all()
        if reset is not None:
            self._listeners.emit(self.address, reset)

    def _on_sent(self, event: CommandSent) -> None:
        v = self._open
        if v is not None and v.handle == event.handle and v.stage is _Stage.QUEUED:
            v.stage = _Stage.SENT

    def _on_acked(self, event: CommandAcked) -> None:
        if isinstance(event.message, InfoSync):  # ours or the session's own at start
            self._synced = True
            if self._sync_handle is not None and event.handle != self._sync_handle:
                self.link.cancel(self._sync_handle)  # synced: ours need not leave any more
            self._sync_handle = None
        v = self._open
        if v is not None and v.handle == event.handle and v.stage is _Stage.SENT:
            v.stage = _Stage.ACKED

    def _on_given_up(self, event: CommandGivenUp) -> None:
        if event.handle == self._sync_handle:
            self._sync_handle = None
        self._synced = False  # the next command waits for a fresh sync
        v = self._open
        if v is not None and v.handle == event.handle:
            self._finish(v, Outcome.INTERRUPTED, f"vend command given up ({event.reason.value})")

    def _on_received(self, event: Received) -> BoardReset | None:
        msg = event.message
        self._seq += 1
        if isinstance(msg, DispensingStatus):
            self._on_dispensing(msg)
        elif isinstance(msg, SelectionStatus):
            self._selections[msg.selection] = (self._seq, msg)
        elif isinstance(msg, MachineStatusReply):
            self._machine = (self._seq, msg)
        elif isinstance(msg, SelectionInfo):
            self._info[msg.selection] = msg
            self._info_at = self._clock.monotonic()
        elif isinstance(msg, InfoSync):
            # The VMC (re)booted: it forgot the number it accepted last, and a motor it was
            # running may or may not have finished.
            self._synced = False
            v = self._open
            tx = v.tx if v is not None and v.stage is not _Stage.QUEUED else 0
            self._ambiguous("the VMC asked for a sync (it rebooted)")
            return BoardReset(ResetReason.OTHER, memory_kept=False, interrupted_tx=tx)
        elif isinstance(msg, Undecodable) and msg.command == VmcCommand.DISPENSING_STATUS:
            self._ambiguous(f"undecodable dispensing status: {msg.reason}")
        return None

    def _on_dispensing(self, msg: DispensingStatus) -> None:
        v = self._open
        if v is None or v.stage is _Stage.QUEUED or v.selection != msg.selection:
            # a status nobody waits for (an unknown vend's, late): quiet period again
            self._settle_until = self._clock.monotonic() + SETTLE_S
            log_event(
                log, "vmc.stray_status", logging.WARNING, selection=msg.selection, status=msg.status
            )
            return
        outcome = dispense_outcome(msg)
        if outcome is Outcome.IN_PROGRESS:
            v.stage = _Stage.RUNNING
            return
        self._finish(v, outcome, f"dispensing status 0x{msg.status:02X}", source="event")

    def _ambiguous(self, why: str) -> None:
        v = self._open
        if v is not None and v.stage is not _Stage.QUEUED:
            self._finish(v, Outcome.INTERRUPTED, why)

    def _finish(self, v: _Vend, outcome: Outcome, why: str, source: str = "host") -> None:
        if v.result is not None:
            return
        v.result, v.source = outcome, source
        if outcome is Outcome.INTERRUPTED:
            self._settle_until = self._clock.monotonic() + SETTLE_S
        level = logging.WARNING if outcome is Outcome.INTERRUPTED else logging.INFO
        log_event(log, "vmc.vend_result", level, tx=v.tx, outcome=outcome.name, why=why)


def _groups(slots: Iterable[int]) -> tuple[SlotGroup, ...]:
    groups: list[SlotGroup] = []
    for slot in sorted(set(slots)):
        if groups and groups[-1].first + groups[-1].count == slot:
            groups[-1] = dataclasses.replace(groups[-1], count=groups[-1].count + 1)
        else:
            groups.append(SlotGroup(slot, 1, WireSlotKind.SPIRAL))
    return tuple(groups)
