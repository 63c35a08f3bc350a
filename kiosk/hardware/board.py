"""The board driver API: everything the rest of the kiosk may ask of the cabinet's control boards.

Owns: the ``BoardDriver`` interface and its value types (``BoardInfo``, ``BoardStatus``,
``BoardVendResult``), the handshake (IDENTIFY on connect, after BOARD_RESET, after NAK
NOT_IDENTIFIED and after a board was unreachable), the blocking vend flow (VEND, wait for the
VEND_RESULT event, and on a deadline, a board reset or a lost event ask OUTCOME instead of
resending), and slot routing across several boards on one bus (``Cabinet``).

Must never: touch bytes, CRCs or retransmits (``link.py`` does), decide anything about a sale,
stock or refunds (the caller does, from the outcome), or turn "I do not know" into an outcome:
when the board cannot be asked, it raises ``BoardOffline`` / ``VendTimeout`` carrying the tx, and
the caller resolves that tx with ``outcome(tx)`` later.

A vendor's own protocol becomes a second ``BoardDriver`` implementation; callers only see
``BoardDriver`` (normally a ``Cabinet``).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias, runtime_checkable

from kiosk.clock import Clock, SystemClock
from kiosk.hardware.link import LinkClosed, LinkError, LinkProtocolError, SerialLink
from kiosk.hardware.protocol import (
    NO_SLOT,
    PROTOCOL_VERSION,
    SERVICE_DOOR,
    BoardReset,
    CabinetKind,
    DoorEvent,
    ErrorCode,
    FaultCode,
    FaultEvent,
    Identify,
    IdentifyFlags,
    IdentifyReply,
    Message,
    Nak,
    Outcome,
    OutcomeQuery,
    OutcomeReply,
    Poll,
    SlotGroup,
    Status,
    StatusReply,
    TemperatureEvent,
    TestSlot,
    TxReply,
    UnlockRequest,
    VendRequest,
    VendResult,
    WireSlotKind,
)
from kiosk.log import log_event

__all__ = [
    "DEFAULT_TEST_TIMEOUT",
    "DEFAULT_UNLOCK_TIMEOUT",
    "DEFAULT_VEND_TIMEOUT",
    "REFUSALS",
    "SUCCESSES",
    "BoardDriver",
    "BoardError",
    "BoardEvent",
    "BoardEventListener",
    "BoardInfo",
    "BoardLink",
    "BoardOffline",
    "BoardProtocolError",
    "BoardRejected",
    "BoardStatus",
    "BoardVendResult",
    "Cabinet",
    "EventFanout",
    "SerialBoard",
    "SlotCheck",
    "SlotChecker",
    "SlotRef",
    "VendTimeout",
]

log = logging.getLogger("kiosk.hardware.board")

DEFAULT_VEND_TIMEOUT = 30.0  # a spiral turn takes 2..10 s; jams are detected by the board
DEFAULT_UNLOCK_TIMEOUT = 180.0  # a shopper opens the door, takes the item, closes it
DEFAULT_TEST_TIMEOUT = 60.0

BoardEvent: TypeAlias = VendResult | DoorEvent | TemperatureEvent | FaultEvent | BoardReset
BoardEventListener = Callable[[int, BoardEvent], None]
"""``(board address, event)``. Runs on the link's callback thread: keep it short."""
SlotRef = tuple[int, int]
"""``(board address, slot number on that board)``."""

SUCCESSES = frozenset({Outcome.DELIVERED, Outcome.DOOR_OPENED_AND_CLOSED})
# Spec 4.5: nothing was executed, nothing recorded; the same tx may be retried later.
REFUSALS = frozenset(
    {
        Outcome.SLOT_EMPTY,
        Outcome.BUSY,
        Outcome.INVALID_SLOT,
        Outcome.WRONG_SLOT_KIND,
        Outcome.TX_CONFLICT,
        Outcome.REFUSED_FAULT,
    }
)


class BoardError(Exception):
    """A board request failed."""


class BoardOffline(BoardError):
    """The board cannot be reached now. If ``tx`` is set, its outcome is unknown: ask later."""

    def __init__(self, address: int, reason: str, tx: int | None = None) -> None:
        what = f"board {address} offline: {reason}"
        super().__init__(what if tx is None else f"{what} (tx {tx} outcome unknown)")
        self.address = address
        self.reason = reason
        self.tx = tx


class BoardRejected(BoardError):
    """The board NAKed the request (bad value, unsupported version, ...)."""

    def __init__(self, address: int, nak: Nak) -> None:
        super().__init__(f"board {address} rejected 0x{nak.command:02X}: {nak.code.name}")
        self.address = address
        self.code = nak.code
        self.command = nak.command


class BoardProtocolError(BoardError):
    """The board answered something that does not fit the request.

    If ``tx`` is set, the request was a VEND / UNLOCK / TEST_SLOT whose outcome is unknown.
    """

    def __init__(self, message: str, tx: int | None = None) -> None:
        super().__init__(message)
        self.tx = tx


class VendTimeout(BoardError):
    """The deadline passed and the board still reports the tx as running. Ask later."""

    def __init__(self, address: int, tx: int, slot: int, outcome: Outcome) -> None:
        super().__init__(f"board {address}: tx {tx} (slot {slot}) still {outcome.name}")
        self.address = address
        self.tx = tx
        self.slot = slot
        self.outcome = outcome


# ---------------------------------------------------------------------------- value types


@dataclass(frozen=True, slots=True)
class BoardInfo:
    """Who the board is and what it has (from IDENTIFY_REPLY)."""

    address: int
    model: str
    serial: str
    firmware: tuple[int, int, int]
    protocol_version: int
    cabinet: CabinetKind
    chilled: bool
    presence_sensing: bool
    nonvolatile_outcomes: bool
    outcome_memory: int
    slot_groups: tuple[SlotGroup, ...]

    @classmethod
    def from_reply(cls, address: int, r: IdentifyReply) -> BoardInfo:
        return cls(
            address=address,
            model=r.model,
            serial=r.serial,
            firmware=r.firmware,
            protocol_version=r.protocol_version,
            cabinet=r.cabinet,
            chilled=IdentifyFlags.CHILLED in r.flags,
            presence_sensing=IdentifyFlags.PRESENCE_SENSING in r.flags,
            nonvolatile_outcomes=IdentifyFlags.NONVOLATILE_OUTCOMES in r.flags,
            outcome_memory=r.outcome_memory,
            slot_groups=r.slots,
        )

    @property
    def firmware_version(self) -> str:
        return ".".join(str(p) for p in self.firmware)

    @property
    def slot_count(self) -> int:
        return sum(g.count for g in self.slot_groups)

    @property
    def slot_kinds(self) -> dict[int, WireSlotKind]:
        return {g.first + i: g.kind for g in self.slot_groups for i in range(g.count)}

    def slot_kind(self, slot: int) -> WireSlotKind | None:
        for g in self.slot_groups:
            if g.first <= slot < g.first + g.count:
                return g.kind
        return None


@dataclass(frozen=True, slots=True)
class BoardStatus:
    busy: bool
    service_door_open: bool
    temperature_c: float | None  # None: no sensor, or the sensor failed
    faults: frozenset[FaultCode]
    busy_tx: int  # 0: none
    open_doors: frozenset[int]
    present: frozenset[int] | None  # None: no presence sensing

    @classmethod
    def from_reply(cls, r: StatusReply) -> BoardStatus:
        return cls(
            busy=r.busy,
            service_door_open=r.service_door_open,
            temperature_c=None if r.temperature_dc is None else r.temperature_dc / 10,
            faults=frozenset(c for c in FaultCode if r.faults & (1 << c)),
            busy_tx=r.busy_tx,
            open_doors=r.open_doors,
            present=r.present,
        )


@dataclass(frozen=True, slots=True)
class BoardVendResult:
    """How a VEND / UNLOCK / TEST_SLOT ended.

    ``source``: "reply" (the immediate TX_REPLY was already final, e.g. a refusal or a repeat of
    a finished tx), "event" (VEND_RESULT), "query" (OUTCOME), "host" (refused before sending).
    """

    tx: int
    slot: int
    outcome: Outcome
    seconds: float
    source: str

    @property
    def delivered(self) -> bool:
        return self.outcome in SUCCESSES

    @property
    def refused(self) -> bool:
        """Nothing ran; the same tx may be tried again."""
        return self.outcome in REFUSALS


@dataclass(frozen=True, slots=True)
class SlotCheck:
    """A slot looked at without running its motor or lock (a self test that drops nothing).

    ``state``: READY, or why the slot could not sell: an ``Outcome`` name (SLOT_EMPTY,
    INVALID_SLOT, REFUSED_FAULT), DOOR_OPEN (a locker door stands open) or NO_ANSWER.
    ``detail``: what was looked at, in the protocol's own terms (English, for logs and the CLI).
    """

    slot: int
    state: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.state == "READY"


@runtime_checkable
class SlotChecker(Protocol):
    """A driver that can check slots without running them (every driver of this package)."""

    def check_slots(self, slots: Sequence[int], timeout: float) -> list[SlotCheck]:
        """One ``SlotCheck`` per slot, in order; nothing turns, nothing drops, nothing opens."""
        ...


class BoardDriver(Protocol):
    """What the kiosk needs from the cabinet's boards, whatever their protocol."""

    def identify(self) -> BoardInfo:
        """Handshake now and return who the board (or cabinet) is."""
        ...

    def status(self) -> BoardStatus: ...

    def vend(self, slot: int, tx: int, timeout: float = DEFAULT_VEND_TIMEOUT) -> BoardVendResult:
        """Run a spiral/belt slot once for ``tx``; block until the final outcome.

        Raises BoardOffline / VendTimeout (outcome unknown: call ``outcome(tx)`` later),
        BoardRejected, BoardProtocolError.
        """
        ...

    def unlock(
        self, slot: int, tx: int, timeout: float = DEFAULT_UNLOCK_TIMEOUT
    ) -> BoardVendResult:
        """Release a locker door for ``tx``; block until it was opened and closed (or not)."""
        ...

    def test_slot(
        self, slot: int, tx: int, timeout: float = DEFAULT_TEST_TIMEOUT
    ) -> BoardVendResult:
        """Technician test of one slot (no sale); same flow as ``vend``."""
        ...

    def outcome(self, tx: int) -> Outcome:
        """What the board recorded for ``tx`` (IN_PROGRESS, a final outcome, or UNKNOWN_TX)."""
        ...

    def subscribe(self, listener: BoardEventListener) -> Callable[[], None]:
        """Call ``listener`` for door, temperature, fault, reset and vend-result events.

        Returns a function that unsubscribes.
        """
        ...


class BoardLink(Protocol):
    """The wire under a cabinet's drivers, as the composition root starts, watches and closes
    it: ``SerialLink`` (the kiosk polls) or ``VmcLink`` (the VMC polls the kiosk)."""

    def start(self) -> None: ...

    def close(self) -> None: ...

    @property
    def online(self) -> bool: ...

    def add_state_listener(self, fn: Callable[[bool, str], None]) -> None: ...

    def counters(self) -> dict[str, int]: ...


class EventFanout:
    """Board event listeners: add, remove, emit (a failing listener is logged, not raised)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fns: list[BoardEventListener] = []

    def add(self, fn: BoardEventListener) -> Callable[[], None]:
        with self._lock:
            self._fns.append(fn)

        def remove() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._fns.remove(fn)

        return remove

    def emit(self, address: int, event: BoardEvent) -> None:
        with self._lock:
            fns = list(self._fns)
        for fn in fns:
            try:
                fn(address, event)
            except Exception:
                log.exception("board.listener_failed")


_BOARD_EVENTS = (VendResult, DoorEvent, TemperatureEvent, FaultEvent, BoardReset)


# ---------------------------------------------------------------------------- our protocol


class SerialBoard:
    """``BoardDriver`` for one board of docs/serial-protocol.md at ``address`` on ``link``.

    Thread-safe. Several ``SerialBoard``s may share one link (one per address on the bus).
    """

    def __init__(
        self,
        link: SerialLink,
        address: int = 0,
        *,
        push_events: bool = False,
        clock: Clock | None = None,
        outcome_check_interval: float = 5.0,
    ) -> None:
        self.link = link
        self.address = address
        self._push = push_events
        self._clock: Clock = clock or SystemClock()
        # While waiting for VEND_RESULT, also ask OUTCOME this often: a lost event then costs
        # seconds, not the whole deadline.
        self._check_interval = outcome_check_interval
        self._cond = threading.Condition()
        self._identify_lock = threading.Lock()
        self._info: BoardInfo | None = None
        self._identified = False
        self._disruptions = 0  # bumped when the board went away or rebooted
        self._waiting: collections.Counter[int] = collections.Counter()
        self._results: dict[int, VendResult] = {}
        self._listeners = EventFanout()
        link.add_event_listener(self._on_link_event)
        link.add_board_state_listener(self._on_board_state)
        link.add_state_listener(self._on_link_state)

    # -------------------------------------------------------------- BoardDriver

    @property
    def info(self) -> BoardInfo | None:
        """The last IDENTIFY answer (None before the first handshake)."""
        with self._cond:
            return self._info

    @property
    def identified(self) -> bool:
        with self._cond:
            return self._identified

    def identify(self) -> BoardInfo:
        with self._identify_lock:
            return self._identify()

    def status(self) -> BoardStatus:
        reply = self._request(Status())
        if not isinstance(reply, StatusReply):
            raise self._unexpected(reply, "STATUS")
        return BoardStatus.from_reply(reply)

    def vend(self, slot: int, tx: int, timeout: float = DEFAULT_VEND_TIMEOUT) -> BoardVendResult:
        return self._run_tx(VendRequest(slot, tx), timeout)

    def unlock(
        self, slot: int, tx: int, timeout: float = DEFAULT_UNLOCK_TIMEOUT
    ) -> BoardVendResult:
        return self._run_tx(UnlockRequest(slot, tx), timeout)

    def test_slot(
        self, slot: int, tx: int, timeout: float = DEFAULT_TEST_TIMEOUT
    ) -> BoardVendResult:
        return self._run_tx(TestSlot(slot, tx), timeout)

    def outcome(self, tx: int) -> Outcome:
        return self._outcome(tx, tx_for_errors=tx).outcome

    def subscribe(self, listener: BoardEventListener) -> Callable[[], None]:
        return self._listeners.add(listener)

    def check_slots(self, slots: Sequence[int], timeout: float = 0.0) -> list[SlotCheck]:
        """Our protocol has no motor test that drops nothing: a slot is checked from IDENTIFY
        (it exists) and one STATUS (board faults, presence sensors, open locker doors)."""
        info = self.info or self.identify()
        st = self.status()
        kinds = info.slot_kinds
        faults = ", ".join(sorted(f.name for f in st.faults))
        out: list[SlotCheck] = []
        for slot in slots:
            kind = kinds.get(slot)
            if kind is None:
                out.append(SlotCheck(slot, Outcome.INVALID_SLOT.name, "no such slot on the board"))
            elif faults:
                out.append(SlotCheck(slot, Outcome.REFUSED_FAULT.name, f"board faults: {faults}"))
            elif kind is WireSlotKind.LOCKER and slot in st.open_doors:
                out.append(SlotCheck(slot, "DOOR_OPEN", "the locker door is open"))
            elif st.present is not None and slot not in st.present:
                out.append(SlotCheck(slot, Outcome.SLOT_EMPTY.name, "presence sensor: empty"))
            else:
                seen = "presence sensor: product there, " if st.present is not None else ""
                out.append(
                    SlotCheck(
                        slot,
                        "READY",
                        f"{seen}no board fault; motor not run (this board has no motor "
                        "check that drops nothing)",
                    )
                )
        return out

    # -------------------------------------------------------------- internals

    def _request(self, msg: Message, tx: int | None = None) -> Message:
        return self._request_counted(msg, tx)[0]

    def _request_counted(self, msg: Message, tx: int | None = None) -> tuple[Message, int]:
        try:
            return self.link.request_counted(self.address, msg)
        except LinkProtocolError as e:
            raise BoardProtocolError(str(e), tx) from e
        except LinkError as e:
            raise BoardOffline(self.address, str(e), tx) from e

    def _unexpected(self, reply: Message, what: str) -> BoardError:
        if isinstance(reply, Nak):
            return BoardRejected(self.address, reply)
        return BoardProtocolError(f"board {self.address}: {type(reply).__name__} answers {what}")

    def _identify(self) -> BoardInfo:
        reply = self._request(Identify(PROTOCOL_VERSION, push_events=self._push))
        if not isinstance(reply, IdentifyReply):
            raise self._unexpected(reply, "IDENTIFY")
        if not 1 <= reply.protocol_version <= PROTOCOL_VERSION:
            raise BoardProtocolError(
                f"board {self.address} wants protocol {reply.protocol_version}, "
                f"host speaks 1..{PROTOCOL_VERSION}"
            )
        info = BoardInfo.from_reply(self.address, reply)
        with self._cond:
            self._info = info
            self._identified = True
        log_event(
            log,
            "board.identified",
            address=self.address,
            model=info.model,
            serial=info.serial,
            firmware=info.firmware_version,
            slots=info.slot_count,
        )
        return info

    def _ensure_identified(self) -> None:
        with self._identify_lock:
            with self._cond:
                if self._identified:
                    return
            self._identify()

    def _forget_identity(self) -> None:
        with self._cond:
            self._identified = False
            self._disruptions += 1
            self._cond.notify_all()

    def _tx_request(self, msg: VendRequest | UnlockRequest | TestSlot) -> TxReply:
        if self.link.board_answering(self.address) is False:
            # Spec 5: no VEND / UNLOCK / TEST_SLOT to a board that is down; nothing was sent.
            raise BoardOffline(self.address, self.link.last_error or "not answering")
        self._ensure_identified()
        reply, sends = self._request_counted(msg, msg.tx)
        if isinstance(reply, Nak) and reply.code is ErrorCode.NOT_IDENTIFIED:
            # The board rebooted unnoticed. The NAK proves only that the copy it answers did
            # not run. With one copy sent nothing ran: handshake and send again. With several,
            # an earlier copy may have run before the reboot (its reply lost with the board's
            # duplicate cache): never send again; the caller asks for the outcome instead.
            log_event(
                log, "board.not_identified", logging.WARNING, address=self.address, sends=sends
            )
            self._forget_identity()
            self._ensure_identified()
            if sends > 1:
                raise BoardOffline(
                    self.address, "board rebooted while the request was in flight", msg.tx
                )
            reply = self._request(msg, msg.tx)
        if not isinstance(reply, TxReply):
            raise self._unexpected(reply, msg.CODE.name)
        if reply.tx != msg.tx:
            raise BoardProtocolError(
                f"board {self.address}: TX_REPLY for tx {reply.tx}, asked tx {msg.tx}"
            )
        return reply

    def _outcome(self, tx: int, tx_for_errors: int | None) -> OutcomeReply:
        reply = self._request(OutcomeQuery(tx), tx_for_errors)
        if not isinstance(reply, OutcomeReply):
            raise self._unexpected(reply, "OUTCOME")
        if reply.tx != tx:
            raise BoardProtocolError(f"board {self.address}: OUTCOME_REPLY for tx {reply.tx}")
        return reply

    def _run_tx(
        self, msg: VendRequest | UnlockRequest | TestSlot, timeout: float
    ) -> BoardVendResult:
        start = self._clock.monotonic()
        deadline = start + timeout
        tx, slot = msg.tx, msg.slot

        def done(outcome: Outcome, source: str) -> BoardVendResult:
            result = BoardVendResult(tx, slot, outcome, self._clock.monotonic() - start, source)
            log_event(
                log,
                "board.tx_done",
                address=self.address,
                cmd=msg.CODE.name,
                slot=slot,
                tx=tx,
                outcome=outcome.name,
                source=source,
                seconds=round(result.seconds, 3),
            )
            return result

        with self._cond:
            self._waiting[tx] += 1
            self._results.pop(tx, None)
            seen = self._disruptions
        try:
            with self.link.fast_poll(self.address):
                reply = self._tx_request(msg)
                if reply.outcome.is_final:
                    return done(reply.outcome, "reply")
                early = self._poll_for(tx)
                if early is not None:
                    return done(early.outcome, "event")
                next_check = self._clock.monotonic() + self._check_interval
                while True:
                    with self._cond:
                        self._cond.wait_for(
                            functools.partial(self._woken, tx, seen),
                            max(0.0, min(deadline, next_check) - self._clock.monotonic()),
                        )
                        event = self._results.pop(tx, None)
                        disrupted = self._disruptions != seen
                        seen = self._disruptions
                    if event is not None:
                        return done(event.outcome, "event")
                    now = self._clock.monotonic()
                    if disrupted and not self.link.port_open:
                        raise BoardOffline(self.address, self.link.last_error, tx)
                    if disrupted and self.link.board_answering(self.address) is False:
                        raise BoardOffline(self.address, "stopped answering", tx)
                    if not (disrupted or now >= next_check or now >= deadline):
                        continue
                    # Deadline, a lost event or a reboot: ask instead of resending.
                    recorded = self._outcome(tx, tx).outcome
                    if recorded.is_final:
                        return done(recorded, "query")
                    if now >= deadline:
                        raise VendTimeout(self.address, tx, slot, recorded)
                    next_check = now + self._check_interval
        finally:
            with self._cond:
                self._waiting[tx] -= 1
                if self._waiting[tx] <= 0:
                    del self._waiting[tx]
                    self._results.pop(tx, None)

    def _poll_for(self, tx: int) -> VendResult | None:
        """One POLL right after the TX_REPLY, on this thread: a short tx's VEND_RESULT is then
        here one exchange later, not at the poll thread's next turn and after two thread hops
        (docs/performance.md, "Hardware link"). The answer also goes to the event listeners,
        as any POLL answer does. Anything else (ACK, another event, no answer): the poll
        thread's fast_poll cadence takes over."""
        if self._push or not self.link.poll_events:
            return None
        try:
            answer = self.link.request(self.address, Poll())
        except LinkError:
            return None  # counted and logged by the link; the wait loop sees any disruption
        if isinstance(answer, VendResult) and answer.tx == tx:
            self.link.poll_now(self.address)  # the board may hold more events
            return answer
        self.link.poll_now(self.address)
        return None

    def _woken(self, tx: int, seen: int) -> bool:
        return tx in self._results or self._disruptions != seen

    # -------------------------------------------------------------- link callbacks (cb thread)

    def _on_link_event(self, address: int, event: Message) -> None:
        if address != self.address or not isinstance(event, _BOARD_EVENTS):
            return
        if isinstance(event, BoardReset):
            log_event(
                log,
                "board.reset",
                logging.WARNING,
                address=address,
                reason=event.reason.name,
                memory_kept=event.memory_kept,
                interrupted_tx=event.interrupted_tx,
            )
            self._forget_identity()
            self._try_identify("board reset")
        elif isinstance(event, VendResult):
            with self._cond:
                if event.tx in self._waiting:
                    self._results[event.tx] = event
                    self._cond.notify_all()
        self._listeners.emit(address, event)

    def _on_board_state(self, address: int, online: bool, reason: str) -> None:
        if address != self.address:
            return
        if online:
            self._try_identify(reason)
        else:
            self._forget_identity()

    def _on_link_state(self, online: bool, reason: str) -> None:
        if not online:
            self._forget_identity()

    def _try_identify(self, why: str) -> None:
        try:
            self._ensure_identified()
        except BoardError as e:
            if isinstance(e.__cause__, LinkClosed):  # the owner closed the link: no failure
                log_event(log, "board.identify_skipped", logging.DEBUG, address=self.address)
                return
            log_event(log, "board.identify_failed", logging.WARNING, address=self.address, why=why)
            log.debug("identify failed: %s", e)


# ---------------------------------------------------------------------------- several boards


class Cabinet:
    """A ``BoardDriver`` over several boards on one bus: cabinet slot -> (address, board slot).

    With a single board and no slot map, cabinet slots are that board's slot numbers.
    Events are re-numbered into cabinet slots where the map knows the board slot.
    """

    def __init__(
        self,
        boards: Mapping[int, BoardDriver],
        slot_map: Mapping[int, SlotRef] | None = None,
    ) -> None:
        if not boards:
            raise ValueError("a cabinet needs at least one board")
        self.boards = dict(sorted(boards.items()))
        if slot_map is None and len(self.boards) > 1:
            raise ValueError("several boards need a slot map (cabinet slot -> (address, slot))")
        self._map: dict[int, SlotRef] | None = None
        self._reverse: dict[SlotRef, int] = {}
        if slot_map is not None:
            self.set_slot_map(slot_map)
        self._main = next(iter(self.boards))
        self._tx_board: collections.OrderedDict[int, int] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._listeners = EventFanout()
        for board in self.boards.values():
            board.subscribe(self._forward)

    def set_slot_map(self, slot_map: Mapping[int, SlotRef]) -> None:
        """Route cabinet slots by `slot_map` from now on (a new planogram was applied).
        Checked first (ValueError: a board that is not there, two slots on one board slot);
        on an error the old map stays."""
        forward = dict(slot_map)
        reverse: dict[SlotRef, int] = {}
        for cab_slot, (addr, idx) in forward.items():
            if addr not in self.boards:
                raise ValueError(f"slot {cab_slot} maps to board {addr}, which is not there")
            if (addr, idx) in reverse:
                raise ValueError(f"slots {reverse[addr, idx]} and {cab_slot} share {idx}")
            reverse[addr, idx] = cab_slot
        self._map, self._reverse = forward, reverse

    def slot_map(self) -> dict[int, SlotRef]:
        """Cabinet slot -> (address, board slot); {} without a map (board slots as they are)."""
        return dict(self._map or {})

    def route(self, slot: int) -> SlotRef | None:
        if self._map is None:
            return (self._main, slot)
        return self._map.get(slot)

    def cabinet_slot(self, address: int, board_slot: int) -> int | None:
        if self._map is None:
            return board_slot if address == self._main else None
        return self._reverse.get((address, board_slot))

    def identify(self) -> BoardInfo:
        infos = {a: b.identify() for a, b in self.boards.items()}
        main = infos[self._main]
        if self._map is None:
            return main
        kinds: dict[int, WireSlotKind] = {}
        for cab_slot, (addr, idx) in sorted(self._map.items()):
            kind = infos[addr].slot_kind(idx)
            if kind is not None:
                kinds[cab_slot] = kind
        lockers = {k is WireSlotKind.LOCKER for k in kinds.values()}
        cabinet = (
            CabinetKind.MIXED
            if len(lockers) > 1
            else CabinetKind.LOCKER
            if lockers == {True}
            else CabinetKind.SPIRAL
        )
        return dataclasses.replace(
            main,
            cabinet=cabinet,
            chilled=any(i.chilled for i in infos.values()),
            presence_sensing=all(i.presence_sensing for i in infos.values()),
            nonvolatile_outcomes=all(i.nonvolatile_outcomes for i in infos.values()),
            outcome_memory=min(i.outcome_memory for i in infos.values()),
            slot_groups=_groups(kinds),
        )

    def status(self) -> BoardStatus:
        parts = {a: b.status() for a, b in self.boards.items()}
        temps = [s.temperature_c for s in parts.values() if s.temperature_c is not None]
        presence = [s.present for s in parts.values()]
        return BoardStatus(
            busy=any(s.busy for s in parts.values()),
            service_door_open=any(s.service_door_open for s in parts.values()),
            temperature_c=temps[0] if temps else None,
            faults=frozenset().union(*(s.faults for s in parts.values())),
            busy_tx=next((s.busy_tx for s in parts.values() if s.busy_tx), 0),
            open_doors=self._mapped(parts, lambda s: s.open_doors),
            present=None
            if any(p is None for p in presence)
            else self._mapped(parts, lambda s: s.present or frozenset()),
        )

    def _mapped(
        self, parts: Mapping[int, BoardStatus], pick: Callable[[BoardStatus], frozenset[int]]
    ) -> frozenset[int]:
        out: set[int] = set()
        for addr, s in parts.items():
            for idx in pick(s):
                cab = self.cabinet_slot(addr, idx)
                if cab is not None:
                    out.add(cab)
        return frozenset(out)

    def vend(self, slot: int, tx: int, timeout: float = DEFAULT_VEND_TIMEOUT) -> BoardVendResult:
        return self._run(slot, tx, lambda b, idx: b.vend(idx, tx, timeout))

    def unlock(
        self, slot: int, tx: int, timeout: float = DEFAULT_UNLOCK_TIMEOUT
    ) -> BoardVendResult:
        return self._run(slot, tx, lambda b, idx: b.unlock(idx, tx, timeout))

    def test_slot(
        self, slot: int, tx: int, timeout: float = DEFAULT_TEST_TIMEOUT
    ) -> BoardVendResult:
        return self._run(slot, tx, lambda b, idx: b.test_slot(idx, tx, timeout))

    def _run(
        self, slot: int, tx: int, call: Callable[[BoardDriver, int], BoardVendResult]
    ) -> BoardVendResult:
        ref = self.route(slot)
        if ref is None:
            return BoardVendResult(tx, slot, Outcome.INVALID_SLOT, 0.0, "host")
        addr, idx = ref
        with self._lock:
            self._tx_board[tx] = addr
            while len(self._tx_board) > 4096:
                self._tx_board.popitem(last=False)
        result = call(self.boards[addr], idx)
        return dataclasses.replace(result, slot=slot)

    def outcome(self, tx: int) -> Outcome:
        with self._lock:
            addr = self._tx_board.get(tx)
        if addr is not None:
            return self.boards[addr].outcome(tx)
        for board in self.boards.values():  # a tx from before a restart: ask every board
            found = board.outcome(tx)
            if found is not Outcome.UNKNOWN_TX:
                return found
        return Outcome.UNKNOWN_TX

    def check_slots(self, slots: Sequence[int], timeout: float = 5.0) -> list[SlotCheck]:
        """Each cabinet slot checked by its board without running it (``SlotChecker``)."""
        by_board: dict[int, list[tuple[int, int]]] = {}
        found: dict[int, SlotCheck] = {}
        for slot in slots:
            ref = self.route(slot)
            if ref is None:
                found[slot] = SlotCheck(slot, Outcome.INVALID_SLOT.name, "not in the planogram")
            else:
                by_board.setdefault(ref[0], []).append((slot, ref[1]))
        for addr, pairs in by_board.items():
            board = self.boards[addr]
            if not isinstance(board, SlotChecker):
                for slot, _ in pairs:
                    found[slot] = SlotCheck(slot, "NO_ANSWER", "this board cannot check slots")
                continue
            try:
                checks = board.check_slots([idx for _, idx in pairs], timeout)
            except BoardOffline as e:
                checks = [SlotCheck(idx, "NO_ANSWER", e.reason) for _, idx in pairs]
            for (slot, _), c in zip(pairs, checks, strict=True):
                found[slot] = dataclasses.replace(c, slot=slot)
        return [found[s] for s in slots]

    def subscribe(self, listener: BoardEventListener) -> Callable[[], None]:
        return self._listeners.add(listener)

    def _forward(self, address: int, event: BoardEvent) -> None:
        def cab(board_slot: int) -> int:
            mapped = self.cabinet_slot(address, board_slot)
            return board_slot if mapped is None else mapped

        translated: BoardEvent = event
        if isinstance(event, VendResult) and event.slot != NO_SLOT:
            translated = dataclasses.replace(event, slot=cab(event.slot))
        elif isinstance(event, DoorEvent) and event.door != SERVICE_DOOR:
            translated = dataclasses.replace(event, door=cab(event.door))
        elif isinstance(event, FaultEvent) and event.slot != NO_SLOT:
            translated = dataclasses.replace(event, slot=cab(event.slot))
        self._listeners.emit(address, translated)


def _groups(kinds: Mapping[int, WireSlotKind]) -> tuple[SlotGroup, ...]:
    groups: list[SlotGroup] = []
    for slot in sorted(kinds):
        kind = kinds[slot]
        if groups and groups[-1].kind is kind and groups[-1].first + groups[-1].count == slot:
            groups[-1] = SlotGroup(groups[-1].first, groups[-1].count + 1, kind)
        else:
            groups.append(SlotGroup(slot, 1, kind))
    return tuple(groups)
