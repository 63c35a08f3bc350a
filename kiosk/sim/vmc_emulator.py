"""VMC emulator core: the VMC side of docs/boards/vmc.md over an emulated spiral cabinet.

Owns: the VMC's master behaviour (a POLL every ~200 ms, its own data frames resent up to 5
times until the kiosk ACKs them, the number of the last accepted command and the "ignore a
repeat" rule, forgetting it on reboot and asking for an information sync at boot), running
motors for select-to-buy / drive-selection with a physical log (one ``motor_run`` line per real
motor run), and the named fault knobs of today's emulator that make sense here, plus
``lose_status`` (the next vend's final dispensing status is never sent).

Same shape as ``kiosk.sim.board_emulator.EmulatedBoard`` (``receive``, ``read_output``,
``next_deadline``, ``set_fault``, ``reset``, ``log``, ``faults``, ``model``), so the runner,
transports and control channel of ``kiosk.sim.emulator_transports`` drive it unchanged.

It must never do I/O other than its physical log, nor know a byte layout (framing goes through
``kiosk.hardware.vmc_protocol``). Slot numbering: the model's slot index i is VMC selection
``i + selection_offset`` (default 1); the control channel speaks slot indices, as today.
"""

from __future__ import annotations

import heapq
import itertools
import os
import random
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from kiosk.clock import Clock, SystemClock
from kiosk.hardware.protocol import SERVICE_DOOR, ResetReason
from kiosk.hardware.vmc_protocol import (
    ACK_FRAME,
    POLL_FRAME,
    CheckSelection,
    DeliveryStatusQuery,
    DeliveryStatusReply,
    DispenseCode,
    DispensingStatus,
    DriveSelection,
    InfoSync,
    MachineStatusQuery,
    MachineStatusReply,
    Message,
    ProtocolError,
    SelectionInfo,
    SelectionState,
    SelectionStatus,
    SelectToBuy,
    SetPollInterval,
    VmcCommand,
    VmcFrame,
    VmcFrameDecoder,
    decode_message,
    encode,
    next_comm,
)
from kiosk.sim.board_emulator import (
    JAM_AT,
    MOTOR_MISSING_DETECT_S,
    MOTOR_TURN_S,
    BoardModel,
    Faults,
    PhysicalLog,
    _float,
)

__all__ = ["VmcEmulatedBoard", "VmcFaults"]

ANSWER_WAIT_S: Final = 0.15  # how long the VMC waits for an answer to a POLL or a data frame
DATA_GAP_S: Final = 0.01  # between consecutive data frames
BOOT_S: Final = 0.5  # silent while booting
MAX_RESENDS: Final = 5
IDLE_GAP_S: Final = 0.020


@dataclass
class VmcFaults(Faults):
    """Today's knobs (``Faults``) plus the VMC's own. On a VMC: ``response_delay_s`` delays
    its ACKs (slow ACK), ``drop_response_ratio`` loses the ACK of an executed command,
    ``duplicate_frame_ratio`` sends a data frame twice, ``reset_mid_vend`` reboots the VMC at
    90 % of the next motor turn (the product drops; "keep" and "lose" are the same: a VMC
    keeps nothing)."""

    lose_status: bool = False  # one-shot: the next vend's final status is never sent
    poll_interval_s: float = 0.2

    def set(self, name: str, value: object) -> None:
        if name == "poll_interval_s":
            interval = _float(value)
            if not 0.1 <= interval <= 2.0:
                raise ValueError("poll_interval_s must be 0.1..2.0")
            self.poll_interval_s = interval
            return
        super().set(name, value)


@dataclass
class _Job:
    comm: int
    command: str
    slot: int
    selection: int
    generation: int
    started_at: float = 0.0
    dropped: bool = False


@dataclass
class _Out:
    """A data frame the VMC sends until ACKed (or 1 + MAX_RESENDS times)."""

    message: Message
    comm: int
    frame: bytes
    sends: int = 0


class VmcEmulatedBoard:
    """The VMC's logic over a ``BoardModel``, sans-I/O; every public method is thread-safe."""

    def __init__(
        self,
        model: BoardModel | None = None,
        *,
        faults: VmcFaults | None = None,
        clock: Clock | None = None,
        time_scale: float = 1.0,
        physical_log: PhysicalLog | str | os.PathLike[str] | None = None,
        selection_offset: int = 1,
        address: int = 0,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.model = model if model is not None else BoardModel.spiral()
        if self.model.slot_kind.name != "SPIRAL":
            raise ValueError("a VMC drives spiral cabinets")
        self.faults = faults if faults is not None else VmcFaults()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.time_scale = time_scale
        self.selection_offset = selection_offset
        self.address = address
        self.serial = "VMC-EMU"
        self.log = (
            physical_log if isinstance(physical_log, PhysicalLog) else PhysicalLog(physical_log)
        )
        self._lock = threading.RLock()
        self._wire_rng = random.Random(self.faults.seed)
        self._phys_rng = random.Random(None if self.faults.seed is None else self.faults.seed + 1)
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_ids = itertools.count()
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "polls",
                "commands_accepted",
                "commands_ignored",
                "data_resends",
                "data_given_up",
                "acks_dropped",
                "bytes_dropped",
                "bits_flipped",
                "frames_duplicated",
                "statuses_lost",
                "resets",
                "bad_frames",
                "unanswered_polls",
            ),
            0,
        )
        self._generation = 0
        # seconds from each POLL's first byte queued to its answer decoded (wire both ways
        # included): what the 100 ms budget of docs/boards/vmc.md 3.1 is about
        self.answer_times: deque[float] = deque(maxlen=10_000)
        self._deaf_until = 0.0
        self._last_rx = 0.0
        self._next_action = 0.0
        self._last_accepted: int | None = None
        self._boot(first=True)

    # -- the runner's interface ---------------------------------------------------

    def receive(self, data: bytes) -> None:
        with self._lock:
            now = self.clock.monotonic()
            if not data or self.faults.unplugged or self.faults.mute or now < self._deaf_until:
                return
            data = self._corrupt(data)
            if self._decoder.buffered and now - self._last_rx > IDLE_GAP_S:
                self._decoder.timeout()
            self._last_rx = now
            self._decoder.feed(data)
            for frame in self._decoder.frames():
                self._on_frame(frame, now)

    def read_output(self) -> bytes:
        with self._lock:
            self._tick()
            now = self.clock.monotonic()
            out = bytearray()
            while self._outq and self._outq[0][0] <= now:
                out += self._outq.popleft()[1]
            if self.faults.unplugged or self.faults.mute:
                return b""
            return bytes(out)

    def next_deadline(self) -> float | None:
        with self._lock:
            times = [self._next_action]
            if self._timers:
                times.append(self._timers[0][0])
            if self._outq:
                times.append(self._outq[0][0])
            return min(times)

    def set_fault(self, name: str, value: object) -> None:
        with self._lock:
            self.faults.set(name, value)
            if name == "seed":
                seed = self.faults.seed
                self._wire_rng.seed(seed)
                self._phys_rng.seed(None if seed is None else seed + 1)
            elif name == "unplugged" and not self.faults.unplugged:
                self._decoder = VmcFrameDecoder()

    def reset(self, lose_memory: bool = False, reason: ResetReason = ResetReason.WATCHDOG) -> None:
        """Reboot the VMC now: a running motor stops (logged INTERRUPTED), the number of the
        last accepted command is forgotten, and it asks for a sync once booted."""
        with self._lock:
            self._reboot(reason.name)

    @property
    def last_accepted_comm(self) -> int | None:
        """The number of the last command the VMC accepted (None after a boot)."""
        with self._lock:
            return self._last_accepted

    @last_accepted_comm.setter
    def last_accepted_comm(self, comm: int | None) -> None:
        with self._lock:
            self._last_accepted = comm

    def set_stock(self, slot: int, count: int) -> None:
        with self._lock:
            self._check_slot(slot)
            if count < 0:
                raise ValueError("stock must be >= 0")
            self.model.stock[slot] = count

    def set_door(self, door: int, is_open: bool) -> None:
        if door != SERVICE_DOOR:
            raise ValueError("a VMC cabinet has only the service door")
        with self._lock:
            self.model.service_door_open = is_open

    def set_temperature(self, celsius: float) -> None:
        raise ValueError("the VMC emulator has no temperature model (use: alarm on|off)")

    def busy(self) -> dict[str, Any]:
        """As the board emulator's ``busy``, but ``busy_tx`` is the number (comm) of the
        command whose motor runs: a VMC has no tx. ``{"busy_tx": 0}`` when idle."""
        with self._lock:
            job = self._job
            if job is None:
                return {"busy_tx": 0}
            return {
                "busy_tx": job.comm,
                "cmd": job.command,
                "slot": job.slot,
                "selection": job.selection,
                "running_s": round(self.clock.monotonic() - job.started_at, 3),
            }

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            m = self.model
            return {
                "protocol": "vmc",
                "cabinet": "spiral",
                "rows": m.rows,
                "cols": m.cols,
                "selection_offset": self.selection_offset,
                "poll_interval_s": self.faults.poll_interval_s,
                "last_accepted_comm": self._last_accepted,
                "busy": self._job is not None,
                "stock": list(m.stock),
                "service_door_open": m.service_door_open,
                "faults": self.faults.as_dict(),
                "pending_data_frames": len(self._data),
                "poll_answer_ms": _quantiles(self.answer_times),
                "stats": dict(self.stats),
            }

    # -- boot -------------------------------------------------------------------

    def _boot(self, *, first: bool) -> None:
        now = self.clock.monotonic()
        self._decoder = VmcFrameDecoder()
        self._last_rx = now
        self._outq: deque[tuple[float, bytes]] = deque()
        self._data: deque[_Out] = deque()
        self._awaiting: str | None = None  # "poll" | "data"
        self._sent_at = now
        self._comm = 0  # the VMC's own data-frame numbers start again at 1
        self._last_accepted = None  # forgotten on every boot
        self._job: _Job | None = None
        self._lose_next_status = False
        self._timers.clear()
        self._deaf_until = now if first else now + BOOT_S * self.time_scale
        self._next_action = self._deaf_until
        self._queue_data(InfoSync())

    def _reboot(self, reason: str) -> None:
        self.stats["resets"] += 1
        self._generation += 1
        job = self._job
        if job is not None:
            self._physical(job, "INTERRUPTED")
        self.log.append(
            {
                "t": self.clock.time(),
                "event": "board_reset",
                "reason": reason,
                "interrupted_tx": 0 if job is None else job.comm,  # the comm: no tx on a VMC
            }
        )
        self._boot(first=False)

    # -- the master's cycle -------------------------------------------------------

    def _tick(self) -> None:
        now = self.clock.monotonic()
        if self._decoder.buffered and now - self._last_rx > IDLE_GAP_S:
            self._decoder.timeout()
            for frame in self._decoder.frames():
                self._on_frame(frame, now)
        while self._timers and self._timers[0][0] <= now:
            _, _, action = heapq.heappop(self._timers)
            action()
        if now < self._deaf_until:  # booting; unplugged or mute it talks into nothing
            self._next_action = self._deaf_until
            return
        if self._awaiting is not None and now - self._sent_at >= ANSWER_WAIT_S:
            if self._awaiting == "data":
                self._data_unanswered()
            else:
                self.stats["unanswered_polls"] += 1
            self._awaiting = None
        if self._awaiting is not None or now < self._next_action:
            return
        if self._data:
            out = self._data[0]
            out.sends += 1
            self._awaiting, self._sent_at = "data", now
            self._send(out.frame, duplicate_ok=True)
        else:
            self.stats["polls"] += 1
            self._awaiting, self._sent_at = "poll", now
            self._send(POLL_FRAME)
            self._next_action = now + self.faults.poll_interval_s

    def _data_unanswered(self) -> None:
        out = self._data[0]
        if out.sends > MAX_RESENDS:
            self._data.popleft()
            self.stats["data_given_up"] += 1
        else:
            self.stats["data_resends"] += 1

    def _on_frame(self, frame: VmcFrame, now: float) -> None:
        if frame.command == VmcCommand.ACK:
            if self._awaiting == "poll":
                self.answer_times.append(now - self._sent_at)
            if self._awaiting == "data" and self._data:
                self._data.popleft()
                self._next_action = min(self._next_action, now + DATA_GAP_S)
            self._awaiting = None
            return
        if frame.command == VmcCommand.POLL or frame.comm is None:
            return
        try:
            msg = decode_message(frame)
        except ProtocolError:
            self.stats["bad_frames"] += 1
            return  # not ACKed: the kiosk resends
        if self._awaiting == "poll":
            self.answer_times.append(now - self._sent_at)
            self._awaiting = None
        self._ack()
        if frame.comm == self._last_accepted:
            self.stats["commands_ignored"] += 1  # a resend of what already ran
            return
        self._last_accepted = frame.comm
        self.stats["commands_accepted"] += 1
        self._execute(msg, frame.comm)

    def _ack(self) -> None:
        f = self.faults
        if f.drop_response_ratio and self._wire_rng.random() < f.drop_response_ratio:
            self.stats["acks_dropped"] += 1
            return
        self._send(ACK_FRAME, delay=f.response_delay_s)

    # -- commands -------------------------------------------------------------------

    def _execute(self, msg: Message, comm: int) -> None:
        if isinstance(msg, SelectToBuy | DriveSelection):
            self._vend(msg, comm)
        elif isinstance(msg, CheckSelection):
            self._queue_data(SelectionStatus(self._selection_state(msg.selection), msg.selection))
        elif isinstance(msg, MachineStatusQuery):
            alarm = 1 if self.faults.temperature_alarm else 0
            door = 1 if self.model.service_door_open else 0
            self._queue_data(MachineStatusReply(0, 0, 0, alarm, door))
        elif isinstance(msg, DeliveryStatusQuery):
            self._queue_data(DeliveryStatusReply(0))
        elif isinstance(msg, InfoSync):
            for slot, stock in enumerate(self.model.stock):
                sel = slot + self.selection_offset
                self._queue_data(SelectionInfo(sel, 0, stock, max(stock, 10), 0, 0))
        elif isinstance(msg, SetPollInterval):
            self.faults.poll_interval_s = msg.interval_ms / 1000

    def _slot_of(self, selection: int) -> int | None:
        slot = selection - self.selection_offset
        return slot if 0 <= slot < self.model.slot_count else None

    def _selection_state(self, selection: int) -> int:
        slot = self._slot_of(selection)
        if slot is None:
            return SelectionState.ABSENT
        if self.model.stock[slot] <= 0:
            return SelectionState.OUT_OF_STOCK
        return SelectionState.NORMAL

    def _vend(self, msg: SelectToBuy | DriveSelection, comm: int) -> None:
        slot = self._slot_of(msg.selection)
        if self._job is not None:
            self._queue_data(DispensingStatus(DispenseCode.PURCHASE_TERMINATED, msg.selection))
            return
        if slot is None:
            self._queue_data(DispensingStatus(DispenseCode.MOTOR_MISSING, msg.selection))
            return
        job = _Job(
            comm, msg.CODE.name, slot, msg.selection, self._generation, self.clock.monotonic()
        )
        self._job = job
        self._queue_data(DispensingStatus(DispenseCode.DISPENSING, msg.selection))
        f, rng = self.faults, self._phys_rng
        self._lose_next_status = f.lose_status
        f.lose_status = False  # one-shot
        turn = rng.uniform(*MOTOR_TURN_S)
        if slot in f.missing_motor:
            self._after(
                MOTOR_MISSING_DETECT_S, lambda: self._finish(job, DispenseCode.MOTOR_MISSING)
            )
        elif slot in f.jammed:
            self._after(turn * rng.uniform(*JAM_AT), lambda: self._finish(job, DispenseCode.JAMMED))
        elif f.reset_mid_vend is not None:
            f.reset_mid_vend = None  # one-shot

            def reset_now() -> None:
                self._drop_product(job)
                self._reboot("reset_mid_vend")

            self._after(turn * 0.9, reset_now)
        else:

            def done() -> None:
                self._drop_product(job)
                seen = job.dropped and not f.is_blind(job.slot)
                self._finish(job, DispenseCode.SUCCESS if seen else DispenseCode.JAMMED)

            self._after(turn, done)

    def _finish(self, job: _Job, code: DispenseCode) -> None:
        if self._job is not job or job.generation != self._generation:
            return
        self._job = None
        self._physical(job, code.name)
        if self._lose_next_status:
            self._lose_next_status = False
            self.stats["statuses_lost"] += 1
            return
        self._queue_data(DispensingStatus(code, job.selection))

    def _drop_product(self, job: _Job) -> None:
        if self.model.stock[job.slot] > 0:
            self.model.stock[job.slot] -= 1
            job.dropped = True

    def _physical(self, job: _Job, result: str) -> None:
        self.log.append(
            {
                "t": self.clock.time(),
                "event": "motor_run",
                "slot": job.slot,
                "selection": job.selection,
                "tx": None,  # a VMC has no transaction ids
                "comm": job.comm,
                "cmd": job.command,
                "result": result,
                "dropped": job.dropped,
            }
        )

    # -- helpers ----------------------------------------------------------------------

    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < self.model.slot_count:
            raise ValueError(f"no slot {slot} (0..{self.model.slot_count - 1})")

    def _after(self, seconds: float, action: Callable[[], None]) -> None:
        generation = self._generation

        def guarded() -> None:
            if generation == self._generation:
                action()

        due = self.clock.monotonic() + seconds * self.time_scale
        heapq.heappush(self._timers, (due, next(self._timer_ids), guarded))

    def _queue_data(self, msg: Message) -> None:
        """A data frame goes out as soon as the wire is free (not at the next POLL slot)."""
        self._comm = next_comm(self._comm or None)
        self._data.append(_Out(msg, self._comm, encode(msg, self._comm)))
        soon = self.clock.monotonic() + DATA_GAP_S
        self._next_action = min(self._next_action, max(soon, self._deaf_until))

    def _send(self, raw: bytes, delay: float = 0.0, duplicate_ok: bool = False) -> None:
        copies = 1
        f = self.faults
        if (
            duplicate_ok
            and f.duplicate_frame_ratio
            and self._wire_rng.random() < f.duplicate_frame_ratio
        ):
            copies = 2
            self.stats["frames_duplicated"] += 1
        due = self.clock.monotonic() + delay
        if self._outq and self._outq[-1][0] > due:
            due = self._outq[-1][0]
        for _ in range(copies):
            self._outq.append((due, self._corrupt(raw)))

    def _corrupt(self, data: bytes) -> bytes:
        drop, flip = self.faults.drop_byte_ratio, self.faults.bit_flip_ratio
        if not drop and not flip:
            return data
        rng = self._wire_rng
        out = bytearray()
        for b in data:
            if drop and rng.random() < drop:
                self.stats["bytes_dropped"] += 1
                continue
            if flip and rng.random() < flip:
                b ^= 1 << rng.randrange(8)
                self.stats["bits_flipped"] += 1
            out.append(b)
        return bytes(out)


def _quantiles(values: deque[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"n": len(ordered), "p50": at(0.5), "p95": at(0.95), "max": at(1.0)}
