"""Board emulator core: the board side of docs/serial-protocol.md over an emulated cabinet.

Owns: the cabinet model (slots with stock, locker doors, service door, chilled compartment), the
board's protocol behaviour (handshake, duplicate-request cache, outcome memory, push and poll
events, resets), named fault knobs (`Faults`) and the physical log (one line per motor run or lock
pulse, the ground truth tests compare the kiosk's records with).

It must never do I/O other than its own two files (outcome memory and physical log): no ports,
sockets, threads or sleeping. Bytes come in through `receive()`, bytes go out through
`read_output()`, time comes from the injected clock, and `tick()` runs whatever is due. It must
never know a frame layout: all framing goes through kiosk.hardware.protocol.
Transports, pacing at the baud rate and the control channel live in kiosk.sim.emulator_transports.

Slot numbering: protocol slots are the board's own indices, 0..rows*cols-1, index = row*cols + col
(row and col 0-based). The kiosk planogram's `Slot.address` is that index.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import itertools
import json
import math
import os
import random
import tempfile
import threading
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, SupportsFloat, SupportsIndex, SupportsInt

from kiosk.clock import Clock, SystemClock
from kiosk.hardware.protocol import (
    NO_SLOT,
    NO_TX,
    PROTOCOL_VERSION,
    SERVICE_DOOR,
    Ack,
    BadLength,
    BadValue,
    BoardReset,
    CabinetKind,
    Command,
    DoorEvent,
    ErrorCode,
    FaultCode,
    FaultEvent,
    FaultFlags,
    Frame,
    FrameDecoder,
    Identify,
    IdentifyFlags,
    IdentifyReply,
    Message,
    Nak,
    Outcome,
    OutcomeQuery,
    OutcomeReply,
    ProtocolError,
    ResetReason,
    SlotGroup,
    StatusReply,
    TemperatureEvent,
    TemperatureReason,
    TestSlot,
    TxReply,
    UnknownCommand,
    UnlockRequest,
    VendRequest,
    VendResult,
    WireSlotKind,
    decode_message,
    encode,
)

__all__ = [
    "MEMORY_SIZE",
    "BoardModel",
    "EmulatedBoard",
    "Faults",
    "PhysicalLog",
    "parse_bool",
    "read_physical_log",
]

MEMORY_SIZE: Final = 256  # tx outcomes remembered (the spec asks for >= 64)
EVENT_QUEUE: Final = 32  # pending events kept (the spec asks for >= 16)
IDLE_GAP_S: Final = 0.020  # receiver drops a partial frame after 20 ms of silence
PUSH_RTO_S: Final = 0.200  # first event retransmission wait, doubled up to 2 s
PUSH_RTO_MAX_S: Final = 2.0
PERIODIC_TEMP_S: Final = 60.0  # periodic TEMPERATURE events at most once a minute (unscaled)
FIRMWARE: Final = (1, 4, 2)
MODEL: Final = "KB-EMU"

# Physical durations in seconds at time_scale 1.0 (multiplied by time_scale).
MOTOR_TURN_S: Final = (1.5, 3.0)
DROP_WINDOW_S: Final = 0.4  # the drop sensor keeps watching after the turn ends
MOTOR_MISSING_DETECT_S: Final = 0.05
JAM_AT: Final = (0.3, 0.7)  # fraction of the turn at which a jammed motor stalls
LOCK_PULSE_S: Final = 0.2
CUSTOMER_OPENS_S: Final = (1.0, 3.0)
CUSTOMER_CLOSES_S: Final = (2.0, 5.0)
DOOR_OPEN_TIMEOUT_S: Final = 20.0  # unlocked door not opened by then: relock, DOOR_NOT_OPENED
DOOR_CLOSE_TIMEOUT_S: Final = 30.0  # opened door still open by then: DOOR_NOT_CLOSED
BOOT_S: Final = 0.3  # deaf while booting
TEMP_STEP_S: Final = 1.0  # temperature model step
THERMAL_TAU_S: Final = 300.0

_REQUESTS: Final = frozenset(
    {
        Command.PING,
        Command.IDENTIFY,
        Command.STATUS,
        Command.VEND,
        Command.UNLOCK,
        Command.OUTCOME,
        Command.TEST_SLOT,
        Command.RESET,
        Command.POLL,
    }
)

ResetMode = Literal["keep", "lose"]
_RATIOS: Final = (
    "drop_byte_ratio",
    "bit_flip_ratio",
    "duplicate_frame_ratio",
    "drop_response_ratio",
)


# --------------------------------------------------------------------------
# Fault knobs
# --------------------------------------------------------------------------


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "on", "true", "yes", "y"):
        return True
    if text in ("0", "off", "false", "no", "n", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _parse_slots(value: object) -> set[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return {value}
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "none", "off", "-"):
            return set()
        return {int(part) for part in text.replace(" ", ",").split(",") if part}
    if isinstance(value, Iterable):
        return {int(v) for v in value}
    raise ValueError(f"not a slot set: {value!r}")


def _float(value: object) -> float:
    """`float(value)` for text and numbers; anything else is the TypeError float() raises."""
    if isinstance(value, str | bytes | bytearray | SupportsFloat | SupportsIndex):
        return float(value)
    raise TypeError(
        f"float() argument must be a string or a real number, not {type(value).__name__!r}"
    )


def _int(value: object) -> int:
    """`int(value)` for text and numbers; anything else is the TypeError int() raises."""
    if isinstance(value, str | bytes | bytearray | SupportsInt | SupportsIndex):
        return int(value)
    raise TypeError(
        "int() argument must be a string, a bytes-like object or a real number, "
        f"not {type(value).__name__!r}"
    )


def _parse_ratio(value: object) -> float:
    ratio = _float(value)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be 0..1, got {ratio}")
    return ratio


@dataclass
class Faults:
    """Named fault knobs, settable at start (constructor, `--fault NAME=VALUE`) and at run time
    (`EmulatedBoard.set_fault`, control channel). docs/emulator.md describes each one.
    """

    # wire (both directions unless noted)
    drop_byte_ratio: float = 0.0  # each byte lost with this probability
    bit_flip_ratio: float = 0.0  # each byte gets one random bit flipped with this probability
    duplicate_frame_ratio: float = 0.0  # board -> host: a frame is sent twice
    response_delay_s: float = 0.0  # responses leave this much later (unscaled)
    drop_response_ratio: float = 0.0  # request executed, response never sent
    mute: bool = False  # board hears nothing and says nothing (gone AWOL, powered)
    unplugged: bool = False  # the cable is out (transports also disconnect the client)
    # cabinet
    jammed: set[int] = field(default_factory=set)  # motor stalls -> JAMMED (locker: LOCK_FAILED)
    blind_drop_sensor: bool | set[int] = False  # product falls, sensor sees nothing
    missing_motor: set[int] = field(default_factory=set)  # -> MOTOR_MISSING (locker: LOCK_FAILED)
    reset_mid_vend: ResetMode | None = None  # one-shot: next vend resets the board mid-run
    door_left_open: bool = False  # locker customer opens and walks away -> DOOR_NOT_CLOSED
    door_not_opened: bool = False  # locker customer never opens -> DOOR_NOT_OPENED
    temperature_alarm: bool = False  # compressor failed: compartment warms toward ambient
    seed: int | None = None  # makes every random choice (wire faults, timings) repeatable

    def set(self, name: str, value: object) -> None:
        """Set one knob from a Python value or its text form ("0.05", "on", "3,7", "keep")."""
        if name not in {f.name for f in dataclasses.fields(self)}:
            raise KeyError(f"unknown fault {name!r}")
        parsed: object
        if name in _RATIOS:
            parsed = _parse_ratio(value)
        elif name == "response_delay_s":
            parsed = max(0.0, _float(value))
        elif name in ("jammed", "missing_motor"):
            parsed = _parse_slots(value)
        elif name == "blind_drop_sensor":
            try:
                parsed = parse_bool(value)
            except ValueError:
                parsed = _parse_slots(value)
        elif name == "reset_mid_vend":
            text = None if value is None else str(value).strip().lower()
            if text in (None, "", "none", "off", "no"):
                parsed = None
            elif text in ("keep", "lose"):
                parsed = text
            else:
                raise ValueError("reset_mid_vend must be keep, lose or off")
        elif name == "seed":
            parsed = None if value in (None, "", "none") else _int(value)
        else:
            parsed = parse_bool(value)
        setattr(self, name, parsed)

    def is_blind(self, slot: int) -> bool:
        if isinstance(self.blind_drop_sensor, bool):
            return self.blind_drop_sensor
        return slot in self.blind_drop_sensor

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = sorted(v) if isinstance(v, set) else v
        return out


# --------------------------------------------------------------------------
# Physical log
# --------------------------------------------------------------------------


class PhysicalLog:
    """Append-only record of what physically happened; JSON lines when backed by a file.

    Exactly one `motor_run` (spiral) or `lock_pulse` (locker) entry per executed tx:
    {"t", "event", "slot", "tx", "cmd", "result", "dropped"}; plus `board_reset` entries.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def append(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.entries.append(entry)
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(entry, separators=(",", ":")) + "\n")
                    f.flush()

    def runs(self, tx: int | None = None) -> list[dict[str, Any]]:
        """Motor runs and lock pulses, optionally only those for one tx."""
        with self._lock:
            return [
                e
                for e in self.entries
                if e["event"] in ("motor_run", "lock_pulse") and (tx is None or e["tx"] == tx)
            ]

    def tail(self, n: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.entries[-n:]) if n > 0 else []


def read_physical_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a physical log file written by PhysicalLog."""
    entries: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                entries.append(json.loads(line))
    return entries


# --------------------------------------------------------------------------
# Outcome memory
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    command: int
    slot: int
    outcome: Outcome


class _OutcomeMemory:
    """Ring of the last MEMORY_SIZE tx -> (command, slot, outcome); optionally in a file.

    The file is rewritten atomically (temp file, fsync, os.replace, fsync of the directory) on
    every change, so a crash leaves either the old or the new memory, never half of one.
    """

    def __init__(self, path: Path | None, size: int = MEMORY_SIZE) -> None:
        self.path = path
        self.size = size
        self.entries: OrderedDict[int, _Entry] = OrderedDict()

    def load(self) -> bool:
        """Load from the file; True when a memory was found and read."""
        self.entries.clear()
        if self.path is None or not self.path.exists():
            return False
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            for row in data["entries"]:
                self.entries[int(row["tx"])] = _Entry(
                    int(row["cmd"]), int(row["slot"]), Outcome(int(row["outcome"]))
                )
        except (OSError, ValueError, KeyError, TypeError):
            self.entries.clear()
            return False
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return True

    def get(self, tx: int) -> _Entry | None:
        return self.entries.get(tx)

    def put(self, tx: int, entry: _Entry) -> None:
        self.entries[tx] = entry
        self.entries.move_to_end(tx)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        self.save()

    def clear(self) -> None:
        self.entries.clear()
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        rows = [
            {"tx": tx, "cmd": e.command, "slot": e.slot, "outcome": int(e.outcome)}
            for tx, e in self.entries.items()
        ]
        text = json.dumps({"version": 1, "size": self.size, "entries": rows})
        directory = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


# --------------------------------------------------------------------------
# Cabinet model
# --------------------------------------------------------------------------


@dataclass
class BoardModel:
    """The physical cabinet behind one board.

    `kind` SPIRAL: rows x cols spiral slots; LOCKER: rows x cols locker compartments, each with a
    door. `stock[i]` is the number of products in slot i (a locker holds 0 or 1).
    """

    kind: CabinetKind = CabinetKind.SPIRAL
    rows: int = 6
    cols: int = 10
    stock: list[int] = field(default_factory=list)
    chilled: bool = False
    presence_sensing: bool = True
    open_doors: set[int] = field(default_factory=set)  # locker doors standing open
    service_door_open: bool = False
    temperature_c: float = 4.0
    setpoint_c: float = 4.0
    ambient_c: float = 25.0
    high_alarm_c: float = 8.0
    low_alarm_c: float = 0.0
    hysteresis_c: float = 0.5

    @classmethod
    def spiral(
        cls, rows: int = 6, cols: int = 10, stock: int = 5, chilled: bool = False
    ) -> BoardModel:
        return cls(CabinetKind.SPIRAL, rows, cols, [stock] * (rows * cols), chilled=chilled)

    @classmethod
    def locker(
        cls, rows: int = 4, cols: int = 6, stock: int = 1, chilled: bool = False
    ) -> BoardModel:
        return cls(CabinetKind.LOCKER, rows, cols, [min(stock, 1)] * (rows * cols), chilled=chilled)

    def __post_init__(self) -> None:
        if self.kind not in (CabinetKind.SPIRAL, CabinetKind.LOCKER):
            raise ValueError("the emulator models SPIRAL or LOCKER cabinets")
        if self.rows < 1 or self.cols < 1 or self.rows * self.cols > 2000:
            raise ValueError("rows x cols must be 1..2000 slots")
        if not self.stock:
            self.stock = [0] * self.slot_count
        if len(self.stock) != self.slot_count:
            raise ValueError("stock must have one entry per slot")

    @property
    def slot_count(self) -> int:
        return self.rows * self.cols

    @property
    def slot_kind(self) -> WireSlotKind:
        return WireSlotKind.LOCKER if self.kind == CabinetKind.LOCKER else WireSlotKind.SPIRAL

    def index(self, row: int, col: int) -> int:
        """Board slot index of (row, col), both 0-based."""
        return row * self.cols + col

    def present(self) -> frozenset[int]:
        return frozenset(i for i, n in enumerate(self.stock) if n > 0)


# --------------------------------------------------------------------------
# The board
# --------------------------------------------------------------------------


@dataclass
class _Job:
    """The one tx the board is running."""

    tx: int
    command: int
    slot: int
    generation: int
    phase: str = "running"  # locker: "unlocked" -> "opened"
    dropped: bool = False
    started_at: float = 0.0  # clock.monotonic() when it was accepted


@dataclass
class _Pending:
    """A queued event; `seq`/`frame` are set while it is in flight in push mode."""

    msg: Message
    seq: int | None = None
    frame: bytes = b""
    retransmit_at: float = 0.0
    rto: float = PUSH_RTO_S


class EmulatedBoard:
    """The board's protocol logic over a `BoardModel`, sans-I/O.

    Feed received bytes with `receive()`, call `tick()` (or `read_output()`, which ticks) at or
    after `next_deadline()`, and send what `read_output()` returns. Every public method is
    thread-safe (one re-entrant lock), so a runner thread and a test can share an instance.
    """

    def __init__(
        self,
        model: BoardModel | None = None,
        *,
        address: int = 0,
        faults: Faults | None = None,
        clock: Clock | None = None,
        time_scale: float = 1.0,
        memory_file: str | os.PathLike[str] | None = None,
        physical_log: PhysicalLog | str | os.PathLike[str] | None = None,
        serial: str | None = None,
    ) -> None:
        if not 0 <= address <= 0x0F:
            raise ValueError("board address must be 0..15")
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.model = model if model is not None else BoardModel.spiral()
        self.address = address
        self.faults = faults if faults is not None else Faults()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.time_scale = time_scale
        # stable across restarts (a real board keeps its serial): derived from the memory file
        where = os.path.abspath(memory_file) if memory_file is not None else "ram"
        self.serial = serial or f"EMU{address:02d}-{zlib.crc32(where.encode()) & 0xFFFF:04X}"
        if isinstance(physical_log, PhysicalLog):
            self.log = physical_log
        else:
            self.log = PhysicalLog(physical_log)
        self._memory = _OutcomeMemory(Path(memory_file) if memory_file is not None else None)
        self._lock = threading.RLock()
        self._wire_rng = random.Random(self.faults.seed)
        self._phys_rng = random.Random(None if self.faults.seed is None else self.faults.seed + 1)
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_ids = itertools.count()
        self._generation = 0
        self._outq: deque[tuple[float, bytes]] = deque()
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "frames_in",
                "frames_out",
                "duplicate_requests",
                "bytes_dropped",
                "bits_flipped",
                "frames_duplicated",
                "responses_dropped",
                "resets",
            ),
            0,
        )
        self._decoder = FrameDecoder()
        self._last_rx = 0.0
        self._deaf_until = 0.0
        self._identified = False
        self._push_mode = False
        self._event_seq = 0
        self._events: deque[_Pending] = deque()
        self._poll_event_out = False
        self._last_request: tuple[int, int, bytes] | None = None
        self._last_response: bytes | None = None
        self._job: _Job | None = None
        self._memory_kept_flag = True
        self._temp_state = "ok"
        self._temp_at = self.clock.monotonic()
        self._periodic_at = self._temp_at + PERIODIC_TEMP_S
        self._boot(ResetReason.POWER_ON, power_on=True)

    # -- public API ---------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Bytes arrived on the board's RX line."""
        with self._lock:
            now = self.clock.monotonic()
            if not data or self.faults.unplugged or self.faults.mute or now < self._deaf_until:
                return
            data = self._corrupt(data)
            if self._decoder.buffered and now - self._last_rx > IDLE_GAP_S:
                self._decoder.timeout()  # the line was idle mid-frame before these bytes
            self._last_rx = now
            self._decoder.feed(data)
            for frame in self._decoder.frames():
                self._on_frame(frame)

    def tick(self) -> None:
        """Run everything due by now: timers, the temperature model, push retransmission."""
        with self._lock:
            now = self.clock.monotonic()
            if self._decoder.buffered and now - self._last_rx > IDLE_GAP_S:
                self._decoder.timeout()
                for frame in self._decoder.frames():
                    self._on_frame(frame)
            while self._timers and self._timers[0][0] <= now:
                _, _, action = heapq.heappop(self._timers)
                action()
            if self.model.chilled:
                self._temperature_step(now)
            self._push(now)

    def read_output(self) -> bytes:
        """Bytes the board transmits now (after tick()); empty while unplugged or mute."""
        with self._lock:
            self.tick()
            now = self.clock.monotonic()
            out = bytearray()
            while self._outq and self._outq[0][0] <= now:
                out += self._outq.popleft()[1]
            if self.faults.unplugged or self.faults.mute:
                return b""
            return bytes(out)

    def next_deadline(self) -> float | None:
        """Monotonic time at which tick()/read_output() has something to do, or None."""
        with self._lock:
            times: list[float] = []
            if self._timers:
                times.append(self._timers[0][0])
            if self._outq:
                times.append(self._outq[0][0])
            if self._decoder.buffered:
                times.append(self._last_rx + IDLE_GAP_S + 0.001)
            if self._events and self._events[0].seq is not None:
                times.append(self._events[0].retransmit_at)
            elif self._events and self._push_mode and not self._poll_event_out:
                times.append(self.clock.monotonic())
            if self.model.chilled:
                times.append(self._temp_at + TEMP_STEP_S * self.time_scale)
                times.append(self._periodic_at)
            return min(times) if times else None

    def set_fault(self, name: str, value: object) -> None:
        """Change one fault knob while running (see `Faults`)."""
        with self._lock:
            before = getattr(self.faults, name, None)
            self.faults.set(name, value)
            after = getattr(self.faults, name)
            if name == "seed":
                self._wire_rng.seed(after)
                self._phys_rng.seed(None if after is None else after + 1)
            elif name == "temperature_alarm" and before != after and self.model.chilled:
                self._queue_event(FaultEvent(FaultCode.COMPRESSOR, bool(after)))
            elif name == "unplugged" and before and not after:
                self._decoder = FrameDecoder()

    def reset(self, lose_memory: bool = False, reason: ResetReason = ResetReason.WATCHDOG) -> None:
        """Emulate a board reset now. A running tx stops; with the memory kept it is recorded as
        INTERRUPTED and named in BOARD_RESET; with the memory lost OUTCOME answers UNKNOWN_TX."""
        with self._lock:
            self._reboot(reason, lose_memory)

    def set_stock(self, slot: int, count: int) -> None:
        with self._lock:
            self._check_slot(slot)
            if count < 0:
                raise ValueError("stock must be >= 0")
            self.model.stock[slot] = count

    def set_door(self, door: int, is_open: bool) -> None:
        """A person opens or closes a locker door (slot index) or the service door."""
        with self._lock:
            if door == SERVICE_DOOR:
                if self.model.service_door_open != is_open:
                    self.model.service_door_open = is_open
                    self._queue_event(DoorEvent(SERVICE_DOOR, is_open))
                return
            self._check_slot(door)
            if self.model.slot_kind != WireSlotKind.LOCKER:
                raise ValueError("this cabinet has no locker doors")
            if (door in self.model.open_doors) == is_open:
                return
            if is_open:
                self.model.open_doors.add(door)
            else:
                self.model.open_doors.discard(door)
            self._queue_event(DoorEvent(door, is_open))
            job = self._job
            if job is not None and job.slot == door:
                if is_open and job.phase == "unlocked":
                    self._door_opened(job)
                elif not is_open and job.phase == "opened":
                    self._door_closed(job)

    def set_temperature(self, celsius: float) -> None:
        """Force the sensor reading; the model drifts on from there."""
        with self._lock:
            if not self.model.chilled:
                raise ValueError("this cabinet has no chilled compartment")
            self.model.temperature_c = celsius
            self._check_thresholds()

    def outcome(self, tx: int) -> Outcome | None:
        """What the outcome memory holds for tx (None when unknown)."""
        with self._lock:
            entry = self._memory.get(tx)
            return entry.outcome if entry else None

    @property
    def busy_tx(self) -> int:
        with self._lock:
            return self._job.tx if self._job else NO_TX

    def busy(self) -> dict[str, Any]:
        """The tx the board is running right now (JSON-able): `busy_tx` (0 when idle) and, while
        busy, `cmd`, `slot`, `phase` and `running_s` (real seconds since it started)."""
        with self._lock:
            job = self._job
            if job is None:
                return {"busy_tx": NO_TX}
            return {
                "busy_tx": job.tx,
                "cmd": Command(job.command).name,
                "slot": job.slot,
                "phase": job.phase,
                "running_s": round(self.clock.monotonic() - job.started_at, 3),
            }

    @property
    def identified(self) -> bool:
        return self._identified

    @property
    def push_mode(self) -> bool:
        return self._push_mode

    def pending_events(self) -> list[Message]:
        with self._lock:
            return [p.msg for p in self._events]

    def snapshot(self) -> dict[str, Any]:
        """Everything a person or a test wants to see at once (JSON-able)."""
        with self._lock:
            m = self.model
            return {
                "address": self.address,
                "cabinet": m.kind.name.lower(),
                "rows": m.rows,
                "cols": m.cols,
                "identified": self._identified,
                "push_mode": self._push_mode,
                "busy_tx": self.busy_tx,
                "stock": list(m.stock),
                "open_doors": sorted(m.open_doors),
                "service_door_open": m.service_door_open,
                "temperature_c": round(m.temperature_c, 2) if m.chilled else None,
                "faults": self.faults.as_dict(),
                "active_faults": [c.name for c in FaultCode if self._fault_flags() & (1 << c)],
                "pending_events": len(self._events),
                "memory": len(self._memory.entries),
                "stats": dict(self.stats),
            }

    # -- boot / reset ---------------------------------------------------------------

    def _boot(self, reason: ResetReason, *, power_on: bool, interrupted: int = NO_TX) -> None:
        now = self.clock.monotonic()
        if power_on:
            kept = self._memory.load()
            for tx, entry in list(self._memory.entries.items()):
                if entry.outcome == Outcome.IN_PROGRESS:  # the process died mid-run
                    self._memory.entries[tx] = dataclasses.replace(
                        entry, outcome=Outcome.INTERRUPTED
                    )
                    interrupted = tx
            if interrupted:
                self._memory.save()
            memory_kept = kept
        else:
            memory_kept = self._memory_kept_flag
        self._decoder = FrameDecoder()
        self._last_rx = now
        self._identified = False
        self._push_mode = False
        self._event_seq = 0
        self._events = deque()
        self._poll_event_out = False
        self._last_request = None
        self._last_response = None
        self._job = None
        self._timers.clear()
        self._outq.clear()
        self._deaf_until = now if power_on else now + BOOT_S * self.time_scale
        self._queue_event(BoardReset(reason, memory_kept, interrupted))
        self.log.append(
            {
                "t": self.clock.time(),
                "event": "board_reset",
                "reason": reason.name,
                "memory_kept": memory_kept,
                "interrupted_tx": interrupted,
            }
        )

    def _reboot(self, reason: ResetReason, lose_memory: bool) -> None:
        self.stats["resets"] += 1
        self._generation += 1
        interrupted = NO_TX
        job = self._job
        if job is not None:
            self._job = None
            self._physical(job, Outcome.INTERRUPTED)
            if not lose_memory:
                self._memory.put(job.tx, _Entry(job.command, job.slot, Outcome.INTERRUPTED))
                interrupted = job.tx
        if lose_memory:
            self._memory.clear()
        self._memory_kept_flag = not lose_memory
        self._boot(reason, power_on=False, interrupted=interrupted)

    # -- frames ---------------------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        if frame.address != self.address:
            return
        self.stats["frames_in"] += 1
        cmd = frame.command
        if cmd in (Command.ACK, Command.NAK):
            head = self._events[0] if self._events else None
            if head is not None and head.seq is not None and head.seq == frame.seq:
                self._events.popleft()  # a NAK also counts as delivery
            return
        key = (frame.seq, cmd, frame.payload)
        if key == self._last_request and self._last_response is not None:
            self.stats["duplicate_requests"] += 1
            self._respond(self._last_response)
            return
        if self._poll_event_out:
            self._poll_event_out = False
            if self._events:
                self._events.popleft()
        response = self._execute(frame)
        raw = encode(self.address, frame.seq, response)
        self._last_request = key
        self._last_response = raw
        self._respond(raw)

    def _execute(self, frame: Frame) -> Message:
        cmd = frame.command
        if cmd not in _REQUESTS:
            return Nak(ErrorCode.UNKNOWN_COMMAND, cmd)
        try:
            msg = decode_message(frame)
        except UnknownCommand:
            return Nak(ErrorCode.UNKNOWN_COMMAND, cmd)
        except BadLength:
            return Nak(ErrorCode.BAD_LENGTH, cmd)
        except (BadValue, ProtocolError):
            return Nak(ErrorCode.BAD_VALUE, cmd)
        if isinstance(msg, Identify):
            if msg.protocol_version < 1:
                return Nak(ErrorCode.UNSUPPORTED_VERSION, cmd)
            self._identified = True
            self._push_mode = msg.push_events
            return self._identify_reply(min(msg.protocol_version, PROTOCOL_VERSION))
        if cmd == Command.PING:
            return Ack()
        if cmd == Command.STATUS:
            return self._status()
        if cmd == Command.RESET:
            self._after(0.01, lambda: self._reboot(ResetReason.COMMAND, False), scaled=False)
            return Ack()
        if cmd == Command.POLL:
            if self._events:
                self._poll_event_out = True
                return self._events[0].msg
            return Ack()
        if isinstance(msg, OutcomeQuery):
            entry = self._memory.get(msg.tx)
            if entry is None:
                return OutcomeReply(msg.tx, NO_SLOT, Outcome.UNKNOWN_TX)
            return OutcomeReply(msg.tx, entry.slot, entry.outcome)
        if isinstance(msg, VendRequest | UnlockRequest | TestSlot):
            if not self._identified:
                return Nak(ErrorCode.NOT_IDENTIFIED, cmd)
            return TxReply(msg.tx, msg.slot, self._start(cmd, msg.slot, msg.tx))
        return Nak(ErrorCode.INTERNAL, cmd)

    def _identify_reply(self, version: int) -> IdentifyReply:
        m = self.model
        flags = IdentifyFlags.NONE
        if m.chilled:
            flags |= IdentifyFlags.CHILLED
        if m.presence_sensing:
            flags |= IdentifyFlags.PRESENCE_SENSING
        if self._memory.path is not None:
            flags |= IdentifyFlags.NONVOLATILE_OUTCOMES
        return IdentifyReply(
            protocol_version=version,
            firmware=FIRMWARE,
            cabinet=m.kind,
            flags=flags,
            outcome_memory=self._memory.size,
            model=MODEL,
            serial=self.serial[:32],
            slots=(SlotGroup(0, m.slot_count, m.slot_kind),),
        )

    def _fault_flags(self) -> FaultFlags:
        flags = FaultFlags.NONE
        if self.model.chilled:
            if self.faults.temperature_alarm:
                flags |= FaultFlags.COMPRESSOR
            if self._temp_state == "high":
                flags |= FaultFlags.OVER_TEMPERATURE
            elif self._temp_state == "low":
                flags |= FaultFlags.UNDER_TEMPERATURE
        return flags

    def _status(self) -> StatusReply:
        m = self.model
        temp = round(m.temperature_c * 10) if m.chilled else None
        return StatusReply(
            busy=self._job is not None,
            service_door_open=m.service_door_open,
            temperature_dc=temp,
            faults=self._fault_flags(),
            busy_tx=self.busy_tx,
            open_doors=frozenset(m.open_doors),
            present=m.present() if m.presence_sensing else None,
        )

    # -- output ---------------------------------------------------------------------

    def _respond(self, raw: bytes) -> None:
        if self.faults.drop_response_ratio and self._wire_rng.random() < (
            self.faults.drop_response_ratio
        ):
            self.stats["responses_dropped"] += 1
            return
        self._send(raw, delay=self.faults.response_delay_s)

    def _send(self, raw: bytes, delay: float = 0.0) -> None:
        now = self.clock.monotonic()
        copies = 1
        if self.faults.duplicate_frame_ratio and self._wire_rng.random() < (
            self.faults.duplicate_frame_ratio
        ):
            copies = 2
            self.stats["frames_duplicated"] += 1
        due = now + delay
        if self._outq and self._outq[-1][0] > due:
            due = self._outq[-1][0]  # keep the wire order
        for _ in range(copies):
            self.stats["frames_out"] += 1
            self._outq.append((due, self._corrupt(raw)))

    def _corrupt(self, data: bytes) -> bytes:
        drop = self.faults.drop_byte_ratio
        flip = self.faults.bit_flip_ratio
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

    # -- events ---------------------------------------------------------------------

    def _queue_event(self, msg: Message) -> None:
        self._events.append(_Pending(msg))
        if len(self._events) > EVENT_QUEUE:
            self._drop_one_event()

    def _drop_one_event(self) -> None:
        busy_head = 1 if (self._events[0].seq is not None or self._poll_event_out) else 0
        candidates = list(itertools.islice(self._events, busy_head, None))
        for kinds in ((TemperatureEvent,), (DoorEvent, FaultEvent)):
            for p in candidates:
                if isinstance(p.msg, kinds):
                    self._events.remove(p)
                    return
        # only VEND_RESULT / BOARD_RESET left: never dropped, the queue grows

    def _push(self, now: float) -> None:
        if not self._push_mode or not self._events or self._poll_event_out:
            return
        head = self._events[0]
        if head.seq is None:
            head.seq = self._event_seq
            self._event_seq = (self._event_seq + 1) & 0xFF
            head.frame = encode(self.address, head.seq, head.msg)
            head.rto = PUSH_RTO_S
            head.retransmit_at = now + head.rto
            self._send(head.frame)
        elif now >= head.retransmit_at:
            head.rto = min(head.rto * 2, PUSH_RTO_MAX_S)
            head.retransmit_at = now + head.rto
            self._send(head.frame)

    # -- timers ---------------------------------------------------------------------

    def _after(self, seconds: float, action: Callable[[], None], scaled: bool = True) -> None:
        delay = seconds * self.time_scale if scaled else seconds
        gen = self._generation

        def guarded() -> None:
            if gen == self._generation:
                action()

        heapq.heappush(
            self._timers, (self.clock.monotonic() + delay, next(self._timer_ids), guarded)
        )

    # -- transactions ---------------------------------------------------------------

    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < self.model.slot_count:
            raise ValueError(f"no slot {slot} (0..{self.model.slot_count - 1})")

    def _start(self, cmd: int, slot: int, tx: int) -> Outcome:
        entry = self._memory.get(tx)
        if entry is not None:
            if entry.command == cmd and entry.slot == slot:
                return entry.outcome  # never run the motor again
            return Outcome.TX_CONFLICT
        m = self.model
        if not 0 <= slot < m.slot_count:
            return Outcome.INVALID_SLOT
        kind = m.slot_kind
        if (cmd == Command.VEND and kind == WireSlotKind.LOCKER) or (
            cmd == Command.UNLOCK and kind != WireSlotKind.LOCKER
        ):
            return Outcome.WRONG_SLOT_KIND
        if self._job is not None:
            return Outcome.BUSY
        if m.service_door_open:
            return Outcome.REFUSED_FAULT
        if m.presence_sensing and m.stock[slot] <= 0:
            return Outcome.SLOT_EMPTY
        # written as IN_PROGRESS before anything is energised
        self._memory.put(tx, _Entry(cmd, slot, Outcome.IN_PROGRESS))
        job = _Job(tx, cmd, slot, self._generation, started_at=self.clock.monotonic())
        self._job = job
        if kind == WireSlotKind.LOCKER:
            self._start_lock(job)
        else:
            self._start_motor(job)
        return Outcome.ACCEPTED

    def _start_motor(self, job: _Job) -> None:
        f = self.faults
        rng = self._phys_rng
        turn = rng.uniform(*MOTOR_TURN_S)
        if job.slot in f.missing_motor:
            self._after(MOTOR_MISSING_DETECT_S, lambda: self._finish(job, Outcome.MOTOR_MISSING))
        elif job.slot in f.jammed:
            self._after(turn * rng.uniform(*JAM_AT), lambda: self._finish(job, Outcome.JAMMED))
        elif f.reset_mid_vend is not None:
            lose = f.reset_mid_vend == "lose"
            f.reset_mid_vend = None  # one-shot

            def reset_now() -> None:
                self._drop_product(job)
                self._reboot(ResetReason.WATCHDOG, lose)

            self._after(turn * 0.9, reset_now)
        else:

            def done() -> None:
                self._drop_product(job)
                blind = f.is_blind(job.slot)
                self._finish(
                    job, Outcome.DELIVERED if job.dropped and not blind else Outcome.NOTHING_DROPPED
                )

            self._after(turn + DROP_WINDOW_S, done)

    def _drop_product(self, job: _Job) -> None:
        if self.model.stock[job.slot] > 0:
            self.model.stock[job.slot] -= 1
            job.dropped = True

    def _start_lock(self, job: _Job) -> None:
        f = self.faults
        rng = self._phys_rng
        if job.slot in f.missing_motor or job.slot in f.jammed:
            self._after(LOCK_PULSE_S, lambda: self._finish(job, Outcome.LOCK_FAILED))
            return
        job.phase = "unlocked"
        if job.slot in self.model.open_doors:  # already standing open: treat as opened now
            self._door_opened(job)
            return
        if f.reset_mid_vend is not None:
            lose = f.reset_mid_vend == "lose"
            f.reset_mid_vend = None

            def reset_now() -> None:
                self.set_door(job.slot, True)  # the customer got the door open
                self._reboot(ResetReason.WATCHDOG, lose)

            self._after(rng.uniform(*CUSTOMER_OPENS_S), reset_now)
            return
        if f.door_not_opened:
            self._after(DOOR_OPEN_TIMEOUT_S, lambda: self._finish(job, Outcome.DOOR_NOT_OPENED))
            return
        self._after(rng.uniform(*CUSTOMER_OPENS_S), lambda: self.set_door(job.slot, True))

    def _door_opened(self, job: _Job) -> None:
        job.phase = "opened"
        if self.model.stock[job.slot] > 0:
            self.model.stock[job.slot] = 0  # the customer takes the goods
            job.dropped = True
        if self.faults.door_left_open:
            self._after(DOOR_CLOSE_TIMEOUT_S, lambda: self._door_timeout(job))
        else:
            self._after(
                self._phys_rng.uniform(*CUSTOMER_CLOSES_S), lambda: self.set_door(job.slot, False)
            )

    def _door_timeout(self, job: _Job) -> None:
        if self._job is job and job.phase == "opened":
            self._finish(job, Outcome.DOOR_NOT_CLOSED)

    def _door_closed(self, job: _Job) -> None:
        self._finish(job, Outcome.DOOR_OPENED_AND_CLOSED)

    def _finish(self, job: _Job, outcome: Outcome) -> None:
        if self._job is not job:
            return
        self._job = None
        self._memory.put(job.tx, _Entry(job.command, job.slot, outcome))
        self._physical(job, outcome)
        self._queue_event(VendResult(job.tx, job.slot, outcome))

    def _physical(self, job: _Job, outcome: Outcome) -> None:
        locker = self.model.slot_kind == WireSlotKind.LOCKER
        self.log.append(
            {
                "t": self.clock.time(),
                "event": "lock_pulse" if locker else "motor_run",
                "slot": job.slot,
                "tx": job.tx,
                "cmd": Command(job.command).name,
                "result": outcome.name,
                "dropped": job.dropped,
            }
        )

    # -- temperature ----------------------------------------------------------------

    def _temperature_step(self, now: float) -> None:
        m = self.model
        step = TEMP_STEP_S * self.time_scale
        if now - self._temp_at >= step:
            dt = (now - self._temp_at) / self.time_scale
            self._temp_at = now
            target = m.ambient_c if self.faults.temperature_alarm else m.setpoint_c
            m.temperature_c = target + (m.temperature_c - target) * math.exp(-dt / THERMAL_TAU_S)
            self._check_thresholds()
        if now >= self._periodic_at:
            self._periodic_at = now + PERIODIC_TEMP_S
            self._queue_event(TemperatureEvent(round(m.temperature_c * 10)))

    def _check_thresholds(self) -> None:
        m = self.model
        t = m.temperature_c
        dc = round(t * 10)
        state = self._temp_state
        if state == "ok":
            if t > m.high_alarm_c:
                self._temp_state = "high"
                self._queue_event(TemperatureEvent(dc, TemperatureReason.HIGH_ALARM))
                self._queue_event(FaultEvent(FaultCode.OVER_TEMPERATURE, True))
            elif t < m.low_alarm_c:
                self._temp_state = "low"
                self._queue_event(TemperatureEvent(dc, TemperatureReason.LOW_ALARM))
                self._queue_event(FaultEvent(FaultCode.UNDER_TEMPERATURE, True))
        elif (state == "high" and t < m.high_alarm_c - m.hysteresis_c) or (
            state == "low" and t > m.low_alarm_c + m.hysteresis_c
        ):
            code = FaultCode.OVER_TEMPERATURE if state == "high" else FaultCode.UNDER_TEMPERATURE
            self._temp_state = "ok"
            self._queue_event(TemperatureEvent(dc, TemperatureReason.BACK_IN_RANGE))
            self._queue_event(FaultEvent(code, False))
            self._check_thresholds()  # a jump straight from high to low
