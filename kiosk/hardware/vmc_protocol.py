"""Sans-I/O codec and upper-computer session for the VMC "upper computer" protocol.

This module owns the byte layout of the protocol spoken by off-the-shelf Chinese vending
machine controllers (VMC) to an Android "upper computer", the meaning of every dispensing
status, and the slave-side session rules (answer POLLs, resend, communication numbers,
duplicates). The specification in the project's own words is ``docs/boards/vmc.md``; its
worked hex examples are checked byte for byte by ``tests/unit/test_vmc_protocol.py``.

It must never do I/O: no serial ports, sockets, files, threads, sleeping, logging, and no
clock reads. Time comes in as the ``now`` argument (monotonic seconds). Callers feed bytes
and get messages and events back, or queue commands and get the bytes to write back.

The VMC is the bus MASTER: it polls; the kiosk (the "upper computer") is the SLAVE and may
only speak in answer to a VMC frame. Frame::

    STX(FA FB) CMD LEN [COMM TEXT...] XOR

``LEN`` counts COMM plus TEXT (0 for POLL and ACK, which carry no COMM). ``XOR`` is the XOR
of every preceding byte, STX included. Multi-byte integers are big-endian.

Based on: the public "VMC - Upper Computer Communication Protocol" description (v3 family:
57600 8N1, POLL ``FA FB 41 00 40``, ACK ``FA FB 42 00 43``, poll every 200 ms, answer within
100 ms, resend up to 5 times, communication number 1..255), cross-checked against three
independent public Python host implementations, all of which compute LEN as 1 + len(text)
and pack selection numbers with ``struct.pack('>H', n)``.

Readings taken where public descriptions disagree (each also in docs/boards/vmc.md):

* LEN is always what the field list adds up to (COMM + TEXT). Where a description's stated
  length contradicts its own field list (check selection 0x01 "4" for 3 bytes; 0x54 "1"
  for COMM + status; 0x04 "5 or 3"), the field list wins.
* Dispensing status 0x04: LEN 4 (COMM, status, selection u16) or LEN 5 (plus one trailing
  byte, the "microwave number" of combo machines, kept as ``extra``). LEN 3 does not match
  any field list and is rejected (the frame is still ACKed, and reported as undecodable, so
  the vend it belonged to becomes unknown, never delivered).
* Selection numbers are one 16-bit big-endian integer, the VMC's selection number as shown
  on its keypad (e.g. 11 = tray 1, column 1 on a 10-per-tray numbering), never two bytes of
  row and column. Mapping planogram slots to selection numbers is the driver's job.
* The two directions number their frames independently: the kiosk numbers its commands,
  the VMC numbers its data frames; a VMC data frame is a duplicate when it repeats the last
  data frame's number and content within ``duplicate_window``.
* "Resend up to 5 times" means at most 5 retransmissions after the first send (6 sends).
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar, Final, TypeAlias

from kiosk.hardware.protocol import BadLength, BadValue, ProtocolError, UnknownCommand

__all__ = [
    "ACK_FRAME",
    "BAUD_RATE",
    "MAX_LEN",
    "MAX_RESENDS",
    "POLL_ANSWER_BUDGET",
    "POLL_FRAME",
    "STX",
    "BadLength",
    "BadValue",
    "CheckSelection",
    "CommandAcked",
    "CommandGivenUp",
    "CommandSent",
    "DeliveryState",
    "DeliveryStatusQuery",
    "DeliveryStatusReply",
    "DispenseClass",
    "DispenseCode",
    "DispensingStatus",
    "DriveSelection",
    "GiveUpReason",
    "InfoSync",
    "MachineStatusQuery",
    "MachineStatusReply",
    "Message",
    "Output",
    "ProtocolError",
    "Queued",
    "Received",
    "SelectToBuy",
    "SelectionInfo",
    "SelectionState",
    "SelectionStatus",
    "SessionConfig",
    "SessionEvent",
    "SetPollInterval",
    "Undecodable",
    "UnknownCommand",
    "UpperCommand",
    "UpperSession",
    "VmcAck",
    "VmcCommand",
    "VmcFrame",
    "VmcFrameDecoder",
    "VmcPoll",
    "VmcResumed",
    "VmcSilent",
    "classify_dispense",
    "decode_message",
    "encode",
    "encode_frame",
    "next_comm",
    "xor8",
]

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

STX: Final = b"\xfa\xfb"
HEADER_SIZE: Final = 4  # FA FB CMD LEN
BAUD_RATE: Final = 57600
# Longest frame any implemented command needs is 0x52 (LEN 40). A candidate header claiming
# more is taken for a false start, so line noise cannot stall the receiver for seconds.
MAX_LEN: Final = 64
MAX_RESENDS: Final = 5
POLL_ANSWER_BUDGET: Final = 0.100  # seconds from the end of a POLL to our answer
DEFAULT_POLL_INTERVAL: Final = 0.200
COMM_MIN: Final = 1
COMM_MAX: Final = 255
_U16: Final = 0xFFFF
_U32: Final = 0xFFFF_FFFF


def xor8(data: bytes | bytearray) -> int:
    """The frame check: XOR of all bytes."""
    out = 0
    for b in data:
        out ^= b
    return out


def next_comm(comm: int | None) -> int:
    """The communication number after ``comm``: 1..255, wrapping 255 -> 1, never 0."""
    if comm is None:
        return COMM_MIN
    _check(comm, COMM_MIN, COMM_MAX, "comm")
    return comm % COMM_MAX + 1


def _check(value: int, lo: int, hi: int, name: str) -> int:
    if not lo <= value <= hi:
        raise BadValue(f"{name}={value} out of range {lo}..{hi}")
    return value


def _need(text: bytes, sizes: tuple[int, ...], name: str) -> None:
    if len(text) not in sizes:
        want = " or ".join(str(s) for s in sizes)
        raise BadLength(f"{name}: text is {len(text)} bytes, expected {want}")


def _flag(value: int, name: str) -> bool:
    if value > 1:
        raise BadValue(f"{name} must be 0 or 1, got {value}")
    return bool(value)


# --------------------------------------------------------------------------
# Command codes and status tables
# --------------------------------------------------------------------------


class VmcCommand(enum.IntEnum):
    """Implemented command codes (direction in brackets)."""

    CHECK_SELECTION = 0x01  # kiosk -> VMC
    SELECTION_STATUS = 0x02  # VMC -> kiosk, answer to 0x01
    SELECT_TO_BUY = 0x03  # kiosk -> VMC
    DISPENSING_STATUS = 0x04  # VMC -> kiosk
    DRIVE_SELECTION = 0x06  # kiosk -> VMC
    SELECTION_INFO = 0x11  # VMC -> kiosk
    SET_POLL_INTERVAL = 0x16  # kiosk -> VMC
    INFO_SYNC = 0x31  # both
    POLL = 0x41  # VMC -> kiosk
    ACK = 0x42  # both
    MACHINE_STATUS_QUERY = 0x51  # kiosk -> VMC
    MACHINE_STATUS = 0x52  # VMC -> kiosk
    DELIVERY_STATUS_QUERY = 0x53  # kiosk -> VMC
    DELIVERY_STATUS = 0x54  # VMC -> kiosk


class SelectionState(enum.IntEnum):
    """Answer to check selection (0x02). Codes as published (0x10 follows 0x09)."""

    NORMAL = 0x01
    OUT_OF_STOCK = 0x02
    ABSENT = 0x03
    PAUSED = 0x04
    PRODUCT_IN_ELEVATOR = 0x05
    DELIVERY_DOOR_UNLOCKED = 0x06
    ELEVATOR_ERROR = 0x07
    ELEVATOR_SELF_CHECK_FAULT = 0x08
    MICROWAVE_DELIVERY_DOOR_CLOSE_ERROR = 0x09
    MICROWAVE_INLET_DOOR_OPEN_ERROR = 0x10
    MICROWAVE_INLET_DOOR_CLOSE_ERROR = 0x11
    NO_LUNCH_BOX = 0x12
    LUNCH_BOX_HEATING = 0x13
    MICROWAVE_DELIVERY_DOOR_OPEN_ERROR = 0x14
    TAKE_OUT_LUNCH_BOX = 0x15
    STAYPOLE_RETURN_ERROR = 0x16
    MAIN_MOTOR_FAULT = 0x17
    TRANSLATION_MOTOR_FAULT = 0x18
    STAYPOLE_PUSH_ERROR = 0x19
    ELEVATOR_ENTER_MICROWAVE_ERROR = 0x20
    ELEVATOR_EXIT_MICROWAVE_ERROR = 0x21
    PUSHROD_PUSH_ERROR = 0x22
    PUSHROD_RETURN_ERROR = 0x23


class DispenseCode(enum.IntEnum):
    """Dispensing status codes (0x04) as published."""

    DISPENSING = 0x01
    SUCCESS = 0x02
    JAMMED = 0x03
    MOTOR_DID_NOT_STOP = 0x04
    MOTOR_MISSING = 0x06
    ELEVATOR_ERROR = 0x07
    ELEVATOR_ASCENDING = 0x10
    ELEVATOR_DESCENDING = 0x11
    ELEVATOR_ASCEND_ERROR = 0x12
    ELEVATOR_DESCEND_ERROR = 0x13
    MICROWAVE_DELIVERY_DOOR_CLOSING = 0x14
    MICROWAVE_DELIVERY_DOOR_CLOSE_ERROR = 0x15
    MICROWAVE_INLET_DOOR_OPENING = 0x16
    MICROWAVE_INLET_DOOR_OPEN_ERROR = 0x17
    PUSHING_INTO_MICROWAVE = 0x18
    MICROWAVE_INLET_DOOR_CLOSING = 0x19
    MICROWAVE_INLET_DOOR_CLOSE_ERROR = 0x20
    NO_LUNCH_BOX_IN_MICROWAVE = 0x21
    HEATING = 0x22
    HEATING_TIME_LEFT = 0x23
    TAKE_OUT_LUNCH_BOX = 0x24
    STAYPOLE_RETURN_ERROR = 0x25
    MICROWAVE_DELIVERY_DOOR_OPENING = 0x26
    STAYPOLE_PUSH_ERROR = 0x28
    ELEVATOR_ENTER_MICROWAVE_ERROR = 0x29
    ELEVATOR_EXIT_MICROWAVE_ERROR = 0x30
    PUSHROD_PUSH_ERROR = 0x31
    PUSHROD_RETURN_ERROR = 0x32
    PURCHASE_TERMINATED = 0xFF


class DispenseClass(enum.StrEnum):
    """What a dispensing status says about the vend, in the sale machine's terms."""

    RUNNING = "running"  # not final: more statuses follow
    DELIVERED = "delivered"
    FAILED = "failed"  # certainly not delivered: the motor did not run, or stalled
    UNKNOWN = "unknown"  # may or may not have been delivered: refund + technician alarm


_C = DispenseCode
_K = DispenseClass
# Every published code. Rule: DELIVERED only on an explicit success; FAILED only where the
# code itself says the product cannot have left; anything that may have moved goods is
# UNKNOWN. Codes not in this table (unpublished) are UNKNOWN too.
DISPENSE_CLASS: Final[dict[DispenseCode, DispenseClass]] = {
    _C.DISPENSING: _K.RUNNING,
    _C.SUCCESS: _K.DELIVERED,
    _C.JAMMED: _K.FAILED,  # same reading as our own board's JAMMED (motor stalled)
    _C.MOTOR_DID_NOT_STOP: _K.UNKNOWN,  # ran past its cycle: 0, 1 or 2 items may have dropped
    _C.MOTOR_MISSING: _K.FAILED,
    _C.ELEVATOR_ERROR: _K.UNKNOWN,  # the product may sit in the elevator
    _C.ELEVATOR_ASCENDING: _K.RUNNING,
    _C.ELEVATOR_DESCENDING: _K.RUNNING,
    _C.ELEVATOR_ASCEND_ERROR: _K.UNKNOWN,
    _C.ELEVATOR_DESCEND_ERROR: _K.UNKNOWN,
    _C.MICROWAVE_DELIVERY_DOOR_CLOSING: _K.RUNNING,
    _C.MICROWAVE_DELIVERY_DOOR_CLOSE_ERROR: _K.UNKNOWN,
    _C.MICROWAVE_INLET_DOOR_OPENING: _K.RUNNING,
    _C.MICROWAVE_INLET_DOOR_OPEN_ERROR: _K.UNKNOWN,
    _C.PUSHING_INTO_MICROWAVE: _K.RUNNING,
    _C.MICROWAVE_INLET_DOOR_CLOSING: _K.RUNNING,
    _C.MICROWAVE_INLET_DOOR_CLOSE_ERROR: _K.UNKNOWN,
    _C.NO_LUNCH_BOX_IN_MICROWAVE: _K.UNKNOWN,  # it left the slot but never arrived
    _C.HEATING: _K.RUNNING,
    _C.HEATING_TIME_LEFT: _K.RUNNING,
    _C.TAKE_OUT_LUNCH_BOX: _K.DELIVERED,  # published as "successful purchase"
    _C.STAYPOLE_RETURN_ERROR: _K.UNKNOWN,
    _C.MICROWAVE_DELIVERY_DOOR_OPENING: _K.RUNNING,
    _C.STAYPOLE_PUSH_ERROR: _K.UNKNOWN,
    _C.ELEVATOR_ENTER_MICROWAVE_ERROR: _K.UNKNOWN,
    _C.ELEVATOR_EXIT_MICROWAVE_ERROR: _K.UNKNOWN,
    _C.PUSHROD_PUSH_ERROR: _K.UNKNOWN,
    _C.PUSHROD_RETURN_ERROR: _K.UNKNOWN,
    # Published only as "purchase terminated", without saying whether a motor had run.
    _C.PURCHASE_TERMINATED: _K.UNKNOWN,
}


def classify_dispense(status: int) -> DispenseClass:
    """Class of a raw dispensing status byte; unpublished codes are UNKNOWN."""
    try:
        return DISPENSE_CLASS[DispenseCode(status)]
    except ValueError:
        return DispenseClass.UNKNOWN


class DeliveryState(enum.IntEnum):
    """Answer to 0x53 (0x54)."""

    NORMAL = 0x00
    PRODUCT_IN_ELEVATOR = 0x01
    DELIVERY_DOOR_OPEN = 0x02
    ELEVATOR_ERROR = 0x03
    ELEVATOR_SELF_CHECK_ERROR = 0x04


# --------------------------------------------------------------------------
# Messages. ``text()`` is what follows COMM; ``decode(text)`` is its inverse.
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VmcPoll:
    """VMC -> kiosk: "anything for me?" Answer with ACK or one command within 100 ms."""

    CODE: ClassVar[VmcCommand] = VmcCommand.POLL
    HAS_COMM: ClassVar[bool] = False

    def text(self) -> bytes:
        return b""


@dataclass(frozen=True, slots=True)
class VmcAck:
    """Both ways: the last frame arrived. Carries no communication number."""

    CODE: ClassVar[VmcCommand] = VmcCommand.ACK
    HAS_COMM: ClassVar[bool] = False

    def text(self) -> bytes:
        return b""


def _selection(value: int) -> bytes:
    return struct.pack(">H", _check(value, 1, _U16, "selection"))


def _u16(text: bytes) -> int:
    v: int = struct.unpack(">H", text)[0]
    return v


@dataclass(frozen=True, slots=True)
class CheckSelection:
    """Kiosk -> VMC: is ``selection`` usable? The VMC answers with SelectionStatus."""

    CODE: ClassVar[VmcCommand] = VmcCommand.CHECK_SELECTION
    HAS_COMM: ClassVar[bool] = True
    selection: int

    def text(self) -> bytes:
        return _selection(self.selection)

    @classmethod
    def decode(cls, text: bytes) -> CheckSelection:
        _need(text, (2,), "CHECK_SELECTION")
        return cls(_u16(text))


@dataclass(frozen=True, slots=True)
class SelectionStatus:
    """VMC -> kiosk: state of a selection (raw byte kept; ``known`` is the enum)."""

    CODE: ClassVar[VmcCommand] = VmcCommand.SELECTION_STATUS
    HAS_COMM: ClassVar[bool] = True
    state: int
    selection: int

    @property
    def known(self) -> SelectionState | None:
        try:
            return SelectionState(self.state)
        except ValueError:
            return None

    @property
    def sellable(self) -> bool:
        return self.state == SelectionState.NORMAL

    def text(self) -> bytes:
        return bytes([_check(self.state, 0, 0xFF, "state")]) + struct.pack(">H", self.selection)

    @classmethod
    def decode(cls, text: bytes) -> SelectionStatus:
        _need(text, (3,), "SELECTION_STATUS")
        return cls(text[0], _u16(text[1:3]))


@dataclass(frozen=True, slots=True)
class SelectToBuy:
    """Kiosk -> VMC: vend one item from ``selection`` (VMC's own drop-sensor setting)."""

    CODE: ClassVar[VmcCommand] = VmcCommand.SELECT_TO_BUY
    HAS_COMM: ClassVar[bool] = True
    selection: int

    def text(self) -> bytes:
        return _selection(self.selection)

    @classmethod
    def decode(cls, text: bytes) -> SelectToBuy:
        _need(text, (2,), "SELECT_TO_BUY")
        return cls(_u16(text))


@dataclass(frozen=True, slots=True)
class DriveSelection:
    """Kiosk -> VMC: run ``selection``'s motor, choosing drop sensor and elevator use."""

    CODE: ClassVar[VmcCommand] = VmcCommand.DRIVE_SELECTION
    HAS_COMM: ClassVar[bool] = True
    selection: int
    drop_sensor: bool = True
    elevator: bool = False

    def text(self) -> bytes:
        return bytes([int(self.drop_sensor), int(self.elevator)]) + _selection(self.selection)

    @classmethod
    def decode(cls, text: bytes) -> DriveSelection:
        _need(text, (4,), "DRIVE_SELECTION")
        drop = _flag(text[0], "drop_sensor")
        elevator = _flag(text[1], "elevator")
        return cls(_u16(text[2:4]), drop, elevator)


@dataclass(frozen=True, slots=True)
class DispensingStatus:
    """VMC -> kiosk: progress or result of a vend. ``extra``: optional 5th byte (microwave)."""

    CODE: ClassVar[VmcCommand] = VmcCommand.DISPENSING_STATUS
    HAS_COMM: ClassVar[bool] = True
    status: int
    selection: int
    extra: int | None = None

    @property
    def known(self) -> DispenseCode | None:
        try:
            return DispenseCode(self.status)
        except ValueError:
            return None

    @property
    def dispense_class(self) -> DispenseClass:
        return classify_dispense(self.status)

    @property
    def is_final(self) -> bool:
        return self.dispense_class is not DispenseClass.RUNNING

    def text(self) -> bytes:
        out = bytes([_check(self.status, 0, 0xFF, "status")])
        out += struct.pack(">H", _check(self.selection, 0, _U16, "selection"))
        if self.extra is not None:
            out += bytes([_check(self.extra, 0, 0xFF, "extra")])
        return out

    @classmethod
    def decode(cls, text: bytes) -> DispensingStatus:
        _need(text, (3, 4), "DISPENSING_STATUS")
        return cls(text[0], _u16(text[1:3]), text[3] if len(text) == 4 else None)


_SELECTION_INFO = struct.Struct(">HIBBHB")


@dataclass(frozen=True, slots=True)
class SelectionInfo:
    """VMC -> kiosk (after an information sync): one selection's configuration."""

    CODE: ClassVar[VmcCommand] = VmcCommand.SELECTION_INFO
    HAS_COMM: ClassVar[bool] = True
    selection: int
    price: int  # in the VMC's smallest unit (its decimal-point setting); not authoritative
    inventory: int
    capacity: int
    product_id: int
    status: int = 0  # 0 normal, 1 paused

    @property
    def paused(self) -> bool:
        return self.status == 1

    def text(self) -> bytes:
        _check(self.selection, 0, _U16, "selection")
        _check(self.price, 0, _U32, "price")
        _check(self.inventory, 0, 0xFF, "inventory")
        _check(self.capacity, 0, 0xFF, "capacity")
        _check(self.product_id, 0, _U16, "product_id")
        _check(self.status, 0, 0xFF, "status")
        return _SELECTION_INFO.pack(
            self.selection, self.price, self.inventory, self.capacity, self.product_id, self.status
        )

    @classmethod
    def decode(cls, text: bytes) -> SelectionInfo:
        _need(text, (_SELECTION_INFO.size,), "SELECTION_INFO")
        return cls(*(int(v) for v in _SELECTION_INFO.unpack(text)))


@dataclass(frozen=True, slots=True)
class SetPollInterval:
    """Kiosk -> VMC: poll every ``interval_ms`` (100..2000, in steps of 100)."""

    CODE: ClassVar[VmcCommand] = VmcCommand.SET_POLL_INTERVAL
    HAS_COMM: ClassVar[bool] = True
    interval_ms: int

    def text(self) -> bytes:
        if self.interval_ms % 100:
            raise BadValue("interval_ms must be a multiple of 100")
        return bytes([_check(self.interval_ms // 100, 1, 20, "interval (x100 ms)")])

    @classmethod
    def decode(cls, text: bytes) -> SetPollInterval:
        _need(text, (1,), "SET_POLL_INTERVAL")
        return cls(_check(text[0], 1, 20, "interval (x100 ms)") * 100)


@dataclass(frozen=True, slots=True)
class InfoSync:
    """Both ways. From the VMC: "sync with me" (typically after its boot). From the kiosk:
    "send me your configuration" (the VMC answers with SelectionInfo frames)."""

    CODE: ClassVar[VmcCommand] = VmcCommand.INFO_SYNC
    HAS_COMM: ClassVar[bool] = True

    def text(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, text: bytes) -> InfoSync:
        _need(text, (0,), "INFO_SYNC")
        return cls()


@dataclass(frozen=True, slots=True)
class MachineStatusQuery:
    """Kiosk -> VMC: request the machine status (0x52)."""

    CODE: ClassVar[VmcCommand] = VmcCommand.MACHINE_STATUS_QUERY
    HAS_COMM: ClassVar[bool] = True

    def text(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, text: bytes) -> MachineStatusQuery:
        _need(text, (0,), "MACHINE_STATUS_QUERY")
        return cls()


@dataclass(frozen=True, slots=True)
class MachineStatusReply:
    """VMC -> kiosk. The five one-byte device statuses are decoded (0 = normal); the
    published tail (change amounts, machine id, temperature, humidity) has no agreed byte
    layout and is kept raw in ``tail``."""

    CODE: ClassVar[VmcCommand] = VmcCommand.MACHINE_STATUS
    HAS_COMM: ClassVar[bool] = True
    bill_acceptor: int
    coin_acceptor: int
    card_reader: int
    temperature_controller: int
    door: int
    tail: bytes = b""

    @property
    def all_normal(self) -> bool:
        return not (self.temperature_controller or self.door)

    def text(self) -> bytes:
        head = (
            self.bill_acceptor,
            self.coin_acceptor,
            self.card_reader,
            self.temperature_controller,
            self.door,
        )
        for v in head:
            _check(v, 0, 0xFF, "machine status byte")
        return bytes(head) + self.tail

    @classmethod
    def decode(cls, text: bytes) -> MachineStatusReply:
        if len(text) < 5:
            raise BadLength(f"MACHINE_STATUS: text is {len(text)} bytes, expected >= 5")
        return cls(text[0], text[1], text[2], text[3], text[4], bytes(text[5:]))


@dataclass(frozen=True, slots=True)
class DeliveryStatusQuery:
    """Kiosk -> VMC: request the elevator / delivery-door state (0x54)."""

    CODE: ClassVar[VmcCommand] = VmcCommand.DELIVERY_STATUS_QUERY
    HAS_COMM: ClassVar[bool] = True

    def text(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, text: bytes) -> DeliveryStatusQuery:
        _need(text, (0,), "DELIVERY_STATUS_QUERY")
        return cls()


@dataclass(frozen=True, slots=True)
class DeliveryStatusReply:
    """VMC -> kiosk: elevator / delivery-door state; further bytes, if any, kept raw."""

    CODE: ClassVar[VmcCommand] = VmcCommand.DELIVERY_STATUS
    HAS_COMM: ClassVar[bool] = True
    state: int
    tail: bytes = b""

    @property
    def known(self) -> DeliveryState | None:
        try:
            return DeliveryState(self.state)
        except ValueError:
            return None

    def text(self) -> bytes:
        return bytes([_check(self.state, 0, 0xFF, "state")]) + self.tail

    @classmethod
    def decode(cls, text: bytes) -> DeliveryStatusReply:
        if not text:
            raise BadLength("DELIVERY_STATUS: empty text")
        return cls(text[0], bytes(text[1:]))


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A VMC data frame that was ACKed but is not understood (unimplemented command, or a
    layout this codec does not accept). Reported so nothing is silently lost."""

    command: int
    text: bytes
    reason: str


Message: TypeAlias = (
    VmcPoll
    | VmcAck
    | CheckSelection
    | SelectionStatus
    | SelectToBuy
    | DispensingStatus
    | DriveSelection
    | SelectionInfo
    | SetPollInterval
    | InfoSync
    | MachineStatusQuery
    | MachineStatusReply
    | DeliveryStatusQuery
    | DeliveryStatusReply
)

# What the kiosk may queue for the VMC.
UpperCommand: TypeAlias = (
    CheckSelection
    | SelectToBuy
    | DriveSelection
    | SetPollInterval
    | InfoSync
    | MachineStatusQuery
    | DeliveryStatusQuery
)
_UPPER_COMMANDS: Final = (
    CheckSelection,
    SelectToBuy,
    DriveSelection,
    SetPollInterval,
    InfoSync,
    MachineStatusQuery,
    DeliveryStatusQuery,
)


def _empty(cls: type[VmcPoll] | type[VmcAck]) -> Callable[[bytes], Message]:
    def decode(text: bytes) -> Message:
        _need(text, (0,), cls.CODE.name)
        return cls()

    return decode


_DECODERS: Final[dict[int, Callable[[bytes], Message]]] = {
    VmcCommand.POLL: _empty(VmcPoll),
    VmcCommand.ACK: _empty(VmcAck),
    VmcCommand.CHECK_SELECTION: CheckSelection.decode,
    VmcCommand.SELECTION_STATUS: SelectionStatus.decode,
    VmcCommand.SELECT_TO_BUY: SelectToBuy.decode,
    VmcCommand.DISPENSING_STATUS: DispensingStatus.decode,
    VmcCommand.DRIVE_SELECTION: DriveSelection.decode,
    VmcCommand.SELECTION_INFO: SelectionInfo.decode,
    VmcCommand.SET_POLL_INTERVAL: SetPollInterval.decode,
    VmcCommand.INFO_SYNC: InfoSync.decode,
    VmcCommand.MACHINE_STATUS_QUERY: MachineStatusQuery.decode,
    VmcCommand.MACHINE_STATUS: MachineStatusReply.decode,
    VmcCommand.DELIVERY_STATUS_QUERY: DeliveryStatusQuery.decode,
    VmcCommand.DELIVERY_STATUS: DeliveryStatusReply.decode,
}


# --------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VmcFrame:
    """One frame: command code, communication number (None when LEN is 0), text."""

    command: int
    comm: int | None
    text: bytes = b""


def encode_frame(frame: VmcFrame) -> bytes:
    """Serialize a frame: STX, CMD, LEN, COMM, TEXT, XOR."""
    _check(frame.command, 0, 0xFF, "command")
    if frame.comm is None:
        if frame.text:
            raise BadValue("a frame with text needs a communication number")
        body = STX + bytes([frame.command, 0])
    else:
        _check(frame.comm, 0, 0xFF, "comm")
        length = 1 + len(frame.text)
        if length > MAX_LEN:
            raise BadLength(f"LEN {length} exceeds MAX_LEN={MAX_LEN}")
        body = STX + bytes([frame.command, length, frame.comm]) + frame.text
    return body + bytes([xor8(body)])


def encode(msg: Message, comm: int | None = None) -> bytes:
    """Serialize a message. POLL and ACK take no ``comm``; every other message needs one."""
    if msg.HAS_COMM:
        if comm is None:
            raise BadValue(f"{msg.CODE.name} needs a communication number")
        _check(comm, COMM_MIN, COMM_MAX, "comm")
    elif comm is not None:
        raise BadValue(f"{msg.CODE.name} carries no communication number")
    return encode_frame(VmcFrame(msg.CODE, comm, msg.text()))


POLL_FRAME: Final = encode(VmcPoll())  # FA FB 41 00 40
ACK_FRAME: Final = encode(VmcAck())  # FA FB 42 00 43


def decode_message(frame: VmcFrame) -> Message:
    """Decode a frame's text. Raises UnknownCommand, BadLength or BadValue."""
    decoder = _DECODERS.get(frame.command)
    if decoder is None:
        raise UnknownCommand(frame.command)
    if frame.command in (VmcCommand.POLL, VmcCommand.ACK):
        if frame.comm is not None:
            raise BadLength(f"{VmcCommand(frame.command).name} must have LEN 0")
    elif frame.comm is None:
        raise BadLength(f"{VmcCommand(frame.command).name}: LEN 0, no communication number")
    return decoder(frame.text)


class VmcFrameDecoder:
    """Incremental, resynchronising frame parser: feed bytes, take XOR-checked frames.

    Never raises on line noise. A candidate start whose LEN is above MAX_LEN, a POLL or ACK
    header with LEN other than 0, or a frame whose XOR does not match, is a bad frame: only
    its first STX byte is dropped and the hunt restarts there, so a real frame beginning
    inside the bad bytes is still found. A partial frame waits for more bytes; the caller
    calls ``timeout()`` when the line has been idle mid-frame (a false STX near the end of
    a burst). The one-byte XOR lets about 1 in 256 random candidate frames through; the
    session's rules (docs/boards/vmc.md) assume the link can lie that way.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._ready: deque[VmcFrame] = deque()
        self.frames_ok = 0
        self.xor_errors = 0
        self.false_starts = 0  # impossible LEN
        self.resyncs = 0
        self.bytes_discarded = 0

    @property
    def bad_frames(self) -> int:
        return self.xor_errors + self.false_starts

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        if data:
            self._buf += data
            self._parse()

    def timeout(self) -> None:
        """The line went idle mid-frame: drop the partial frame's first byte and re-hunt."""
        if self._buf:
            self._drop(1)
            self._parse()

    def frames(self) -> Iterator[VmcFrame]:
        """Yield (and remove) every complete frame received so far."""
        while self._ready:
            yield self._ready.popleft()

    def _drop(self, n: int) -> None:
        del self._buf[:n]
        self.bytes_discarded += n
        self.resyncs += 1

    def _parse(self) -> None:
        buf = self._buf
        pos, end = 0, len(buf)
        while True:
            start = buf.find(STX, pos)
            if start < 0:
                # keep a trailing FA: it may be the first half of the next STX
                keep = 1 if end > pos and buf[end - 1] == STX[0] else 0
                if end - keep > pos:
                    self.bytes_discarded += end - keep - pos
                    self.resyncs += 1
                pos = end - keep
                break
            if start > pos:
                self.bytes_discarded += start - pos
                self.resyncs += 1
                pos = start
            if end - pos < HEADER_SIZE:
                break
            command, length = buf[pos + 2], buf[pos + 3]
            if length > MAX_LEN or (command in (VmcCommand.POLL, VmcCommand.ACK) and length):
                self.false_starts += 1
                self.bytes_discarded += 1
                self.resyncs += 1
                pos += 1
                continue
            total = HEADER_SIZE + length + 1
            if end - pos < total:
                break
            if xor8(buf[pos : pos + total - 1]) != buf[pos + total - 1]:
                self.xor_errors += 1
                self.bytes_discarded += 1
                self.resyncs += 1
                pos += 1
                continue
            comm = buf[pos + 4] if length else None
            text = bytes(buf[pos + 5 : pos + total - 1])
            self._ready.append(VmcFrame(command, comm, text))
            self.frames_ok += 1
            pos += total
        if pos:
            del buf[:pos]


# --------------------------------------------------------------------------
# The upper-computer session (kiosk = slave)
# --------------------------------------------------------------------------


class GiveUpReason(enum.StrEnum):
    NO_ACK = "no_ack"  # sent 1 + max_resends times, never ACKed
    VMC_SILENT = "vmc_silent"  # the VMC stopped polling while the command awaited its ACK
    VMC_RESYNC = "vmc_resync"  # the VMC asked for an information sync: it may have rebooted


@dataclass(frozen=True, slots=True)
class Queued:
    """Receipt for a queued command: its handle and the communication number it will use."""

    handle: int
    comm: int


@dataclass(frozen=True, slots=True)
class CommandSent:
    """A command left in answer to a POLL (attempt 1) or was resent (attempt > 1).
    From attempt 1 on, it may have reached the VMC."""

    handle: int
    comm: int
    message: UpperCommand
    attempt: int


@dataclass(frozen=True, slots=True)
class CommandAcked:
    handle: int
    comm: int
    message: UpperCommand
    sends: int


@dataclass(frozen=True, slots=True)
class CommandGivenUp:
    """No ACK came: the command may or may not have reached (and run on) the VMC.
    It is never sent again; a vend in this state is an unknown outcome."""

    handle: int
    comm: int
    message: UpperCommand
    sends: int
    reason: GiveUpReason


@dataclass(frozen=True, slots=True)
class Received:
    """A VMC data frame, reported once (resent duplicates are ACKed, not reported)."""

    comm: int | None
    message: Message | Undecodable
    reused_number: bool = False  # same number as the previous data frame, other content


@dataclass(frozen=True, slots=True)
class VmcSilent:
    """No frame from the VMC for ``silence_timeout`` seconds (off, unplugged, rebooting)."""

    last_heard: float


@dataclass(frozen=True, slots=True)
class VmcResumed:
    at: float


SessionEvent: TypeAlias = (
    CommandSent | CommandAcked | CommandGivenUp | Received | VmcSilent | VmcResumed
)


@dataclass(frozen=True, slots=True)
class Output:
    """What one step produced: bytes to write now, events, and the last communication
    number assigned (persist it whenever it changes, before the next step)."""

    send: bytes
    events: tuple[SessionEvent, ...]
    last_comm: int


@dataclass(frozen=True, slots=True)
class SessionConfig:
    max_resends: int = MAX_RESENDS
    ack_window: float = 0.5  # an ACK later than this after our send is not ours
    silence_timeout: float = 3.0  # longer than the slowest poll interval (2 s)
    duplicate_window: float = 3.0  # a repeat within this is a resend, not a new frame
    idle_gap: float = 0.020  # line idle this long mid-frame: the partial frame is garbage
    max_queue: int = 32  # keeps queued numbers far from wrapping onto a sent one


@dataclass(slots=True)
class _Pending:
    handle: int
    comm: int
    message: UpperCommand
    frame: bytes
    sends: int = 0
    last_sent: float = 0.0


@dataclass(slots=True)
class _Stats:
    polls: int = 0
    resends: int = 0
    acked: int = 0
    given_up: int = 0
    stray_acks: int = 0
    duplicates: int = 0
    reused_numbers: int = 0
    undecodable: int = 0


class UpperSession:
    """The kiosk's side of the VMC link, as a pure state machine.

    Stop and wait: at most one command awaits its ACK. A POLL is answered with that command
    again (same bytes, same number) while it is un-ACKed and resends remain; else with the
    next queued command; else with ACK. Every VMC data frame is ACKed. Numbers are assigned
    at queue time, advance by one per command (1..255, wrapping) and are never reused for a
    new command; ``last_comm`` given at construction is the last number a previous run
    assigned, so the first new one differs from anything the VMC may have accepted. When
    that is unknown (None) the session first queues an InfoSync as a harmless command to
    burn the one number the VMC might ignore.
    """

    def __init__(self, last_comm: int | None, config: SessionConfig | None = None) -> None:
        self.config = config or SessionConfig()
        self.decoder = VmcFrameDecoder()
        self.stats = _Stats()
        self._queue: deque[_Pending] = deque()
        self._inflight: _Pending | None = None
        self._last_comm = last_comm if last_comm is not None else COMM_MAX
        self._next_handle = 1
        self._last_rx: float | None = None
        self._last_heard: float | None = None
        self._silent = False
        self._last_data: tuple[tuple[int | None, int, bytes], float] | None = None
        if last_comm is None:
            self.queue(InfoSync())
        else:
            _check(last_comm, COMM_MIN, COMM_MAX, "last_comm")

    # ---------------------------------------------------------------- queries

    @property
    def last_comm(self) -> int:
        """The last communication number assigned (persist it; pass it after a restart)."""
        return self._last_comm

    @property
    def awaiting_ack(self) -> int | None:
        """Handle of the command sent and not yet ACKed, if any."""
        return self._inflight.handle if self._inflight else None

    @property
    def queued(self) -> tuple[int, ...]:
        """Handles of commands not yet sent, in order."""
        return tuple(p.handle for p in self._queue)

    def pending(self, kind: type[UpperCommand] | UpperCommand) -> int | None:
        """Handle of a command of this kind (a class), or equal to this command, that is
        queued or awaits its ACK (the oldest), else None: lets a caller wait for one already
        on its way instead of adding another."""

        def same(p: _Pending) -> bool:
            if isinstance(kind, type):
                return isinstance(p.message, kind)
            return p.message == kind

        if self._inflight is not None and same(self._inflight):
            return self._inflight.handle
        return next((p.handle for p in self._queue if same(p)), None)

    # ---------------------------------------------------------------- inputs

    def queue(self, message: UpperCommand) -> Queued:
        """Queue a command for the next POLL. Raises BadValue for a VMC-only message or a
        full queue. The number is fixed now, so it can be persisted with the intent."""
        if not isinstance(message, _UPPER_COMMANDS):
            raise BadValue(f"{type(message).__name__} is not a command the kiosk sends")
        if len(self._queue) >= self.config.max_queue:
            raise BadValue(f"command queue full ({self.config.max_queue})")
        comm = next_comm(self._last_comm)
        frame = encode(message, comm)
        self._last_comm = comm
        pending = _Pending(self._next_handle, comm, message, frame)
        self._next_handle += 1
        self._queue.append(pending)
        return Queued(pending.handle, comm)

    def cancel(self, handle: int) -> bool:
        """Withdraw a queued command. False when it already left (it may have reached the
        VMC) or is unknown; its number stays burnt either way."""
        for p in self._queue:
            if p.handle == handle:
                self._queue.remove(p)
                return True
        return False

    def receive_data(self, data: bytes, now: float) -> Output:
        """Bytes from the VMC, read at ``now``. Write ``Output.send`` at once."""
        self._last_rx = now
        self.decoder.feed(data)
        return self._drain(now, [])

    def tick(self, now: float) -> Output:
        """Time passed without bytes: flush a stale partial frame, notice a silent VMC."""
        events: list[SessionEvent] = []
        out = b""
        rx = self._last_rx
        if self.decoder.buffered and rx is not None and now - rx >= self.config.idle_gap:
            self.decoder.timeout()
            out = self._drain(now, events).send
        if self._last_heard is None:
            self._last_heard = now  # silence counts from the first tick
        if not self._silent and now - self._last_heard > self.config.silence_timeout:
            self._silent = True
            events.append(VmcSilent(self._last_heard))
            self._give_up(GiveUpReason.VMC_SILENT, events)
        return Output(out, tuple(events), self._last_comm)

    # ---------------------------------------------------------------- internals

    def _drain(self, now: float, events: list[SessionEvent]) -> Output:
        out = bytearray()
        for frame in self.decoder.frames():
            if self._silent:
                self._silent = False
                events.append(VmcResumed(now))
            self._last_heard = now
            if frame.command == VmcCommand.POLL:
                self.stats.polls += 1
                out += self._answer_poll(now, events)
            elif frame.command == VmcCommand.ACK:
                self._on_ack(now, events)
            else:
                out += ACK_FRAME
                self._on_data(frame, now, events)
        return Output(bytes(out), tuple(events), self._last_comm)

    def _answer_poll(self, now: float, events: list[SessionEvent]) -> bytes:
        p = self._inflight
        if p is not None:
            if p.sends > self.config.max_resends:
                self._give_up(GiveUpReason.NO_ACK, events)
            elif now - p.last_sent > self.config.silence_timeout:
                # the VMC may have rebooted meanwhile and forgotten p's number: a resend
                # could run p twice, so it is given up instead
                self._give_up(GiveUpReason.VMC_SILENT, events)
            else:
                self.stats.resends += 1
                return self._transmit(p, now, events)
        if self._queue:
            p = self._queue.popleft()
            self._inflight = p
            return self._transmit(p, now, events)
        return ACK_FRAME

    def _transmit(self, p: _Pending, now: float, events: list[SessionEvent]) -> bytes:
        p.sends += 1
        p.last_sent = now
        events.append(CommandSent(p.handle, p.comm, p.message, p.sends))
        return p.frame

    def _on_ack(self, now: float, events: list[SessionEvent]) -> None:
        p = self._inflight
        if p is None or now - p.last_sent > self.config.ack_window:
            self.stats.stray_acks += 1
            return
        self._inflight = None
        self.stats.acked += 1
        events.append(CommandAcked(p.handle, p.comm, p.message, p.sends))

    def _give_up(self, reason: GiveUpReason, events: list[SessionEvent]) -> None:
        p = self._inflight
        if p is None:
            return
        self._inflight = None
        self.stats.given_up += 1
        events.append(CommandGivenUp(p.handle, p.comm, p.message, p.sends, reason))

    def _on_data(self, frame: VmcFrame, now: float, events: list[SessionEvent]) -> None:
        key = (frame.comm, frame.command, frame.text)
        last = self._last_data
        self._last_data = (key, now)
        reused = False
        if frame.comm is not None and last is not None and last[0][0] == frame.comm:
            if last[0] == key and now - last[1] <= self.config.duplicate_window:
                self.stats.duplicates += 1
                return
            reused = last[0] != key
            self.stats.reused_numbers += int(reused)
        message: Message | Undecodable
        try:
            message = decode_message(frame)
        except ProtocolError as exc:
            self.stats.undecodable += 1
            message = Undecodable(frame.command, frame.text, str(exc))
        events.append(Received(frame.comm, message, reused))
        if isinstance(message, InfoSync):
            # The VMC asks for a sync when it boots: it may have forgotten the number of a
            # command awaiting its ACK, so that command must not be resent.
            self._give_up(GiveUpReason.VMC_RESYNC, events)
            already = any(isinstance(p.message, InfoSync) for p in self._queue)
            if not already and len(self._queue) < self.config.max_queue:
                self.queue(InfoSync())
