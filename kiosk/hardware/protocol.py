"""Sans-I/O codec for the kiosk <-> cabinet control board serial protocol.

This module owns the byte-level frame layout, the CRC, the command codes and
the payload layout of every message (the specification is
``docs/serial-protocol.md``; this is the only code that knows the layout).

It must never do I/O: no serial ports, sockets, files, threads, clocks,
sleeping or logging. Callers feed it bytes and get frames/messages back, or
give it messages and get bytes back. Timing, retransmission and the link
state machine live in the caller.

Frame (all multi-byte integers little-endian)::

    SYNC(0x7E) ADDR LEN SEQ CMD PAYLOAD[LEN] CRC16

``CRC16`` is CRC-16/CCITT-FALSE over ``ADDR .. PAYLOAD`` (not the sync byte).
"""

from __future__ import annotations

import binascii
import enum
import struct
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar, Final, TypeAlias, TypeVar

__all__ = [
    "CRC_CHECK_VALUE",
    "HEADER_SIZE",
    "MAX_FRAME",
    "MAX_PAYLOAD",
    "MAX_STRING",
    "NO_SLOT",
    "NO_TEMPERATURE",
    "NO_TX",
    "PROTOCOL_VERSION",
    "SERVICE_DOOR",
    "SYNC",
    "Ack",
    "BadLength",
    "BadValue",
    "BoardReset",
    "CabinetKind",
    "Command",
    "DoorEvent",
    "ErrorCode",
    "FaultCode",
    "FaultEvent",
    "FaultFlags",
    "Frame",
    "FrameDecoder",
    "Identify",
    "IdentifyFlags",
    "IdentifyReply",
    "Message",
    "Nak",
    "Outcome",
    "OutcomeQuery",
    "OutcomeReply",
    "Ping",
    "Poll",
    "ProtocolError",
    "Reset",
    "ResetReason",
    "SlotGroup",
    "Status",
    "StatusReply",
    "TemperatureEvent",
    "TemperatureReason",
    "TestSlot",
    "TxReply",
    "UnknownCommand",
    "UnlockRequest",
    "VendRequest",
    "VendResult",
    "WireSlotKind",
    "crc16_ccitt_false",
    "decode_message",
    "encode",
    "encode_frame",
    "is_event",
    "is_response",
]

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

SYNC: Final = 0x7E
PROTOCOL_VERSION: Final = 1
HEADER_SIZE: Final = 5  # SYNC ADDR LEN SEQ CMD
CRC_SIZE: Final = 2
MAX_PAYLOAD: Final = 240
MAX_FRAME: Final = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE  # 247
MAX_STRING: Final = 32
CRC_CHECK_VALUE: Final = 0x29B1  # crc16_ccitt_false(b"123456789")

NO_TX: Final = 0  # tx id 0 is reserved: "no transaction"
NO_SLOT: Final = 0xFFFF  # slot "none" / unknown
SERVICE_DOOR: Final = 0xFFFF  # door id of the main service door
NO_TEMPERATURE: Final = -0x8000  # i16 sentinel: no sensor / sensor failed

_U8: Final = 0xFF
_U16: Final = 0xFFFF
_U32: Final = 0xFFFF_FFFF


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no xorout."""
    return binascii.crc_hqx(data, 0xFFFF)


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class ProtocolError(Exception):
    """A frame or message violates the protocol."""


class UnknownCommand(ProtocolError):
    """The command code is not defined by this protocol version."""

    def __init__(self, command: int) -> None:
        super().__init__(f"unknown command 0x{command:02X}")
        self.command = command


class BadLength(ProtocolError):
    """The payload length is wrong for the command."""


class BadValue(ProtocolError, ValueError):
    """A field is out of range (on decode or on encode)."""


# --------------------------------------------------------------------------
# Enums
# --------------------------------------------------------------------------


class Command(enum.IntEnum):
    # host -> board requests
    PING = 0x01
    IDENTIFY = 0x02
    STATUS = 0x03
    VEND = 0x04
    UNLOCK = 0x05
    OUTCOME = 0x06
    TEST_SLOT = 0x07
    RESET = 0x08
    POLL = 0x09
    # link level, both directions
    ACK = 0x70
    NAK = 0x71
    # board -> host responses (0x80 | request)
    IDENTIFY_REPLY = 0x82
    STATUS_REPLY = 0x83
    TX_REPLY = 0x84  # answer to VEND, UNLOCK and TEST_SLOT
    OUTCOME_REPLY = 0x86
    # board -> host unsolicited events
    VEND_RESULT = 0xC1
    DOOR = 0xC2
    TEMPERATURE = 0xC3
    FAULT = 0xC4
    BOARD_RESET = 0xC5


def is_response(command: int) -> bool:
    """True for board responses (0x80..0xBF)."""
    return 0x80 <= command <= 0xBF


def is_event(command: int) -> bool:
    """True for unsolicited board events (0xC0..0xDF)."""
    return 0xC0 <= command <= 0xDF


class Outcome(enum.IntEnum):
    """Result of VEND / UNLOCK / TEST_SLOT (immediate answer or final outcome)."""

    ACCEPTED = 0x00  # immediate: started, final outcome follows
    IN_PROGRESS = 0x01  # tx known and still running
    DELIVERED = 0x02  # spiral: drop sensor confirmed
    NOTHING_DROPPED = 0x03  # motor ran a full turn, no drop seen
    JAMMED = 0x04  # motor stalled / over-current
    MOTOR_MISSING = 0x05  # no motor connected at this slot
    SLOT_EMPTY = 0x06  # presence sensor says empty; motor not run
    DOOR_OPENED_AND_CLOSED = 0x07  # locker: delivered
    DOOR_NOT_OPENED = 0x08  # locker: unlocked, customer never opened
    DOOR_NOT_CLOSED = 0x09  # locker: opened, still open at timeout
    BUSY = 0x0A  # immediate: another tx running; not started
    UNKNOWN_TX = 0x0B  # OUTCOME: tx not in the outcome memory
    INVALID_SLOT = 0x0C  # no such slot on this board
    WRONG_SLOT_KIND = 0x0D  # e.g. VEND on a locker slot
    TX_CONFLICT = 0x0E  # tx known, but for another command/slot
    REFUSED_FAULT = 0x0F  # board in a fault state (e.g. service door open)
    INTERRUPTED = 0x10  # board reset while running: may or may not have run
    LOCK_FAILED = 0x11  # locker: lock did not release

    @property
    def is_final(self) -> bool:
        """True when the tx is finished (no VEND_RESULT will follow)."""
        return self not in (Outcome.ACCEPTED, Outcome.IN_PROGRESS)


class ErrorCode(enum.IntEnum):
    """NAK reasons."""

    UNKNOWN_COMMAND = 0x01
    BAD_LENGTH = 0x02
    BAD_VALUE = 0x03
    UNSUPPORTED_VERSION = 0x04
    NOT_IDENTIFIED = 0x05
    INTERNAL = 0x7F


class WireSlotKind(enum.IntEnum):
    SPIRAL = 0x01
    BELT = 0x02
    LOCKER = 0x03


class CabinetKind(enum.IntEnum):
    SPIRAL = 0x01
    LOCKER = 0x02
    MIXED = 0x03


class IdentifyFlags(enum.IntFlag):
    NONE = 0
    CHILLED = 0x01  # has a chilled compartment / temperature sensor
    PRESENCE_SENSING = 0x02  # can report slot presence in STATUS
    NONVOLATILE_OUTCOMES = 0x04  # outcome memory survives reboot


class FaultCode(enum.IntEnum):
    """Fault codes; in STATUS fault flags, bit n means code n is active."""

    MOTOR_DRIVER = 0
    DROP_SENSOR = 1
    TEMP_SENSOR = 2
    OVER_TEMPERATURE = 3
    UNDER_TEMPERATURE = 4
    SUPPLY_VOLTAGE = 5
    LOCK_DRIVER = 6
    OUTCOME_MEMORY = 7
    COMPRESSOR = 8
    OTHER = 15


class FaultFlags(enum.IntFlag):
    NONE = 0
    MOTOR_DRIVER = 1 << FaultCode.MOTOR_DRIVER
    DROP_SENSOR = 1 << FaultCode.DROP_SENSOR
    TEMP_SENSOR = 1 << FaultCode.TEMP_SENSOR
    OVER_TEMPERATURE = 1 << FaultCode.OVER_TEMPERATURE
    UNDER_TEMPERATURE = 1 << FaultCode.UNDER_TEMPERATURE
    SUPPLY_VOLTAGE = 1 << FaultCode.SUPPLY_VOLTAGE
    LOCK_DRIVER = 1 << FaultCode.LOCK_DRIVER
    OUTCOME_MEMORY = 1 << FaultCode.OUTCOME_MEMORY
    COMPRESSOR = 1 << FaultCode.COMPRESSOR
    OTHER = 1 << FaultCode.OTHER


class TemperatureReason(enum.IntEnum):
    PERIODIC = 0x00
    HIGH_ALARM = 0x01
    LOW_ALARM = 0x02
    BACK_IN_RANGE = 0x03


class ResetReason(enum.IntEnum):
    POWER_ON = 0x00
    WATCHDOG = 0x01
    BROWN_OUT = 0x02
    COMMAND = 0x03
    OTHER = 0xFF


# --------------------------------------------------------------------------
# Field helpers
# --------------------------------------------------------------------------


def _check(value: int, lo: int, hi: int, name: str) -> int:
    if not lo <= value <= hi:
        raise BadValue(f"{name}={value} out of range {lo}..{hi}")
    return value


_E = TypeVar("_E", bound=enum.IntEnum)


def _enum(cls: type[_E], value: int) -> _E:
    try:
        return cls(value)
    except ValueError:
        raise BadValue(f"invalid {cls.__name__} value 0x{value:02X}") from None


def _need(payload: bytes, size: int, name: str) -> None:
    if len(payload) != size:
        raise BadLength(f"{name}: payload is {len(payload)} bytes, expected {size}")


def _bitmap(slots: frozenset[int]) -> bytes:
    if not slots:
        return b""
    top = max(slots)
    if min(slots) < 0 or top >= 8 * _U8:
        raise BadValue("bitmap slot out of range 0..2039")
    out = bytearray(top // 8 + 1)
    for s in slots:
        out[s >> 3] |= 1 << (s & 7)
    return bytes(out)


def _unbitmap(data: bytes) -> frozenset[int]:
    return frozenset(i * 8 + b for i, byte in enumerate(data) for b in range(8) if byte >> b & 1)


def _string(value: str, name: str) -> bytes:
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        raise BadValue(f"{name} must be ASCII") from None
    if len(raw) > MAX_STRING:
        raise BadValue(f"{name} longer than {MAX_STRING} bytes")
    return bytes([len(raw)]) + raw


class _Reader:
    """Bounds-checked cursor over a payload; raises BadLength on overrun."""

    __slots__ = ("data", "name", "pos")

    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.pos = 0
        self.name = name

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise BadLength(f"{self.name}: payload truncated")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        v: int = struct.unpack("<H", self.take(2))[0]
        return v

    def string(self) -> str:
        raw = self.take(self.u8())
        if len(raw) > MAX_STRING:
            raise BadValue(f"{self.name}: string longer than {MAX_STRING}")
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise BadValue(f"{self.name}: string is not ASCII") from None

    def end(self) -> None:
        if self.pos != len(self.data):
            raise BadLength(f"{self.name}: {len(self.data) - self.pos} trailing bytes")


# --------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Empty:
    """Base for messages with an empty payload."""

    CODE: ClassVar[Command]

    def payload(self) -> bytes:
        return b""


@dataclass(frozen=True, slots=True)
class Ping(_Empty):
    """Liveness check; answered with ACK."""

    CODE: ClassVar[Command] = Command.PING


@dataclass(frozen=True, slots=True)
class Status(_Empty):
    CODE: ClassVar[Command] = Command.STATUS


@dataclass(frozen=True, slots=True)
class Reset(_Empty):
    """Reboot the board; answered with ACK, then BOARD_RESET later."""

    CODE: ClassVar[Command] = Command.RESET


@dataclass(frozen=True, slots=True)
class Poll(_Empty):
    """Fetch the oldest pending event (multi-drop bus); ACK when none."""

    CODE: ClassVar[Command] = Command.POLL


@dataclass(frozen=True, slots=True)
class Ack(_Empty):
    """Acknowledges the frame with the same SEQ (both directions)."""

    CODE: ClassVar[Command] = Command.ACK


@dataclass(frozen=True, slots=True)
class Identify:
    """Handshake. ``push_events``: board may transmit events unsolicited."""

    CODE: ClassVar[Command] = Command.IDENTIFY
    protocol_version: int = PROTOCOL_VERSION
    push_events: bool = False

    def payload(self) -> bytes:
        _check(self.protocol_version, 0, _U8, "protocol_version")
        return bytes([self.protocol_version, 0x01 if self.push_events else 0x00])

    @classmethod
    def decode(cls, p: bytes) -> Identify:
        _need(p, 2, "IDENTIFY")
        if p[1] & ~0x01:
            raise BadValue("IDENTIFY: reserved flag bits set")
        return cls(p[0], bool(p[1] & 0x01))


@dataclass(frozen=True, slots=True)
class SlotGroup:
    """``count`` consecutive slots starting at ``first``, all of ``kind``."""

    first: int
    count: int
    kind: WireSlotKind


@dataclass(frozen=True, slots=True)
class IdentifyReply:
    CODE: ClassVar[Command] = Command.IDENTIFY_REPLY
    protocol_version: int
    firmware: tuple[int, int, int]
    cabinet: CabinetKind
    flags: IdentifyFlags
    outcome_memory: int  # how many tx outcomes the board remembers (>= 64)
    model: str
    serial: str
    slots: tuple[SlotGroup, ...] = ()

    @property
    def slot_count(self) -> int:
        return sum(g.count for g in self.slots)

    @property
    def chilled(self) -> bool:
        return IdentifyFlags.CHILLED in self.flags

    def payload(self) -> bytes:
        _check(self.protocol_version, 0, _U8, "protocol_version")
        for part in self.firmware:
            _check(part, 0, _U8, "firmware")
        _check(self.outcome_memory, 0, _U16, "outcome_memory")
        _check(len(self.slots), 0, _U8, "slot groups")
        out = bytearray(
            struct.pack(
                "<BBBBBBH",
                self.protocol_version,
                *self.firmware,
                self.cabinet,
                self.flags,
                self.outcome_memory,
            )
        )
        out += _string(self.model, "model")
        out += _string(self.serial, "serial")
        out.append(len(self.slots))
        for g in self.slots:
            _check(g.first, 0, _U16, "slot group first")
            _check(g.count, 0, _U16, "slot group count")
            out += struct.pack("<HHB", g.first, g.count, g.kind)
        return bytes(out)

    @classmethod
    def decode(cls, p: bytes) -> IdentifyReply:
        r = _Reader(p, "IDENTIFY_REPLY")
        ver, fa, fb, fc, cab, flags, mem = struct.unpack("<BBBBBBH", r.take(8))
        if flags & ~0x07:
            raise BadValue("IDENTIFY_REPLY: reserved flag bits set")
        model = r.string()
        serial = r.string()
        groups = []
        for _ in range(r.u8()):
            first, count, kind = struct.unpack("<HHB", r.take(5))
            groups.append(SlotGroup(first, count, _enum(WireSlotKind, kind)))
        r.end()
        return cls(
            ver,
            (fa, fb, fc),
            _enum(CabinetKind, cab),
            IdentifyFlags(flags),
            mem,
            model,
            serial,
            tuple(groups),
        )


_TX_SLOT = struct.Struct("<HI")


@dataclass(frozen=True, slots=True)
class _SlotTx:
    """Base for VEND / UNLOCK / TEST_SLOT: slot u16, tx u32."""

    CODE: ClassVar[Command]
    slot: int
    tx: int

    def payload(self) -> bytes:
        _check(self.slot, 0, _U16 - 1, "slot")
        _check(self.tx, 1, _U32, "tx")
        return _TX_SLOT.pack(self.slot, self.tx)

    @classmethod
    def _fields(cls, p: bytes) -> tuple[int, int]:
        _need(p, 6, cls.CODE.name)
        slot, tx = _TX_SLOT.unpack(p)
        _check(slot, 0, _U16 - 1, "slot")
        _check(tx, 1, _U32, "tx")
        return int(slot), int(tx)


@dataclass(frozen=True, slots=True)
class VendRequest(_SlotTx):
    """Spiral/belt: run the motor of ``slot`` once for transaction ``tx``."""

    CODE: ClassVar[Command] = Command.VEND

    @classmethod
    def decode(cls, p: bytes) -> VendRequest:
        return cls(*cls._fields(p))


@dataclass(frozen=True, slots=True)
class UnlockRequest(_SlotTx):
    """Locker: release the lock of ``slot`` for transaction ``tx``."""

    CODE: ClassVar[Command] = Command.UNLOCK

    @classmethod
    def decode(cls, p: bytes) -> UnlockRequest:
        return cls(*cls._fields(p))


@dataclass(frozen=True, slots=True)
class TestSlot(_SlotTx):
    """Technician test of a slot (motor turn or unlock) without a sale."""

    __test__: ClassVar[bool] = False  # not a pytest test class
    CODE: ClassVar[Command] = Command.TEST_SLOT

    @classmethod
    def decode(cls, p: bytes) -> TestSlot:
        return cls(*cls._fields(p))


@dataclass(frozen=True, slots=True)
class OutcomeQuery:
    CODE: ClassVar[Command] = Command.OUTCOME
    tx: int

    def payload(self) -> bytes:
        _check(self.tx, 1, _U32, "tx")
        return struct.pack("<I", self.tx)

    @classmethod
    def decode(cls, p: bytes) -> OutcomeQuery:
        _need(p, 4, "OUTCOME")
        (tx,) = struct.unpack("<I", p)
        return cls(_check(tx, 1, _U32, "tx"))


_TX_RESULT = struct.Struct("<IHB")


@dataclass(frozen=True, slots=True)
class _TxResult:
    """Base for TX_REPLY / OUTCOME_REPLY / VEND_RESULT: tx u32, slot u16, outcome u8."""

    CODE: ClassVar[Command]
    tx: int
    slot: int
    outcome: Outcome

    def payload(self) -> bytes:
        _check(self.tx, 0, _U32, "tx")
        _check(self.slot, 0, _U16, "slot")
        return _TX_RESULT.pack(self.tx, self.slot, self.outcome)

    @classmethod
    def _fields(cls, p: bytes) -> tuple[int, int, Outcome]:
        _need(p, 7, cls.CODE.name)
        tx, slot, outcome = _TX_RESULT.unpack(p)
        return int(tx), int(slot), _enum(Outcome, outcome)


@dataclass(frozen=True, slots=True)
class TxReply(_TxResult):
    """Immediate answer to VEND / UNLOCK / TEST_SLOT."""

    CODE: ClassVar[Command] = Command.TX_REPLY

    @classmethod
    def decode(cls, p: bytes) -> TxReply:
        return cls(*cls._fields(p))


@dataclass(frozen=True, slots=True)
class OutcomeReply(_TxResult):
    """Answer to OUTCOME; slot is NO_SLOT when the tx is UNKNOWN_TX."""

    CODE: ClassVar[Command] = Command.OUTCOME_REPLY

    @classmethod
    def decode(cls, p: bytes) -> OutcomeReply:
        return cls(*cls._fields(p))


@dataclass(frozen=True, slots=True)
class VendResult(_TxResult):
    """Event: final outcome of a VEND / UNLOCK / TEST_SLOT."""

    CODE: ClassVar[Command] = Command.VEND_RESULT

    @classmethod
    def decode(cls, p: bytes) -> VendResult:
        return cls(*cls._fields(p))


_STATUS_HEAD = struct.Struct("<BhHI")


@dataclass(frozen=True, slots=True)
class StatusReply:
    """Board status. ``temperature_dc`` in 0.1 degC, None without sensor.

    ``present`` is None when the board has no presence sensing.
    """

    CODE: ClassVar[Command] = Command.STATUS_REPLY
    busy: bool
    service_door_open: bool
    temperature_dc: int | None
    faults: FaultFlags = FaultFlags.NONE
    busy_tx: int = NO_TX
    open_doors: frozenset[int] = field(default_factory=frozenset)
    present: frozenset[int] | None = None

    def payload(self) -> bytes:
        flags = (
            (0x01 if self.busy else 0)
            | (0x02 if self.service_door_open else 0)
            | (0x04 if self.present is not None else 0)
        )
        if self.temperature_dc is None:
            temp = NO_TEMPERATURE
        else:
            temp = _check(self.temperature_dc, NO_TEMPERATURE + 1, 0x7FFF, "temperature")
        _check(self.busy_tx, 0, _U32, "busy_tx")
        doors = _bitmap(self.open_doors)
        present = _bitmap(self.present or frozenset())
        out = _STATUS_HEAD.pack(flags, temp, self.faults, self.busy_tx)
        return out + bytes([len(doors)]) + doors + bytes([len(present)]) + present

    @classmethod
    def decode(cls, p: bytes) -> StatusReply:
        r = _Reader(p, "STATUS_REPLY")
        flags, temp, faults, busy_tx = _STATUS_HEAD.unpack(r.take(_STATUS_HEAD.size))
        if flags & ~0x07:
            raise BadValue("STATUS_REPLY: reserved flag bits set")
        doors = _unbitmap(r.take(r.u8()))
        present_raw = r.take(r.u8())
        r.end()
        has_presence = bool(flags & 0x04)
        if present_raw and not has_presence:
            raise BadValue("STATUS_REPLY: presence bitmap without presence flag")
        return cls(
            busy=bool(flags & 0x01),
            service_door_open=bool(flags & 0x02),
            temperature_dc=None if temp == NO_TEMPERATURE else int(temp),
            faults=FaultFlags(faults),
            busy_tx=int(busy_tx),
            open_doors=doors,
            present=_unbitmap(present_raw) if has_presence else None,
        )


@dataclass(frozen=True, slots=True)
class Nak:
    """Error answer: ``code`` and the command code that was rejected."""

    CODE: ClassVar[Command] = Command.NAK
    code: ErrorCode
    command: int

    def payload(self) -> bytes:
        _check(self.command, 0, _U8, "command")
        return bytes([self.code, self.command])

    @classmethod
    def decode(cls, p: bytes) -> Nak:
        _need(p, 2, "NAK")
        return cls(_enum(ErrorCode, p[0]), p[1])


@dataclass(frozen=True, slots=True)
class DoorEvent:
    """Event: door ``door`` (a locker slot, or SERVICE_DOOR) opened/closed."""

    CODE: ClassVar[Command] = Command.DOOR
    door: int
    is_open: bool

    def payload(self) -> bytes:
        _check(self.door, 0, _U16, "door")
        return struct.pack("<HB", self.door, 1 if self.is_open else 0)

    @classmethod
    def decode(cls, p: bytes) -> DoorEvent:
        _need(p, 3, "DOOR")
        door, state = struct.unpack("<HB", p)
        if state > 1:
            raise BadValue("DOOR: state must be 0 or 1")
        return cls(int(door), bool(state))


@dataclass(frozen=True, slots=True)
class TemperatureEvent:
    CODE: ClassVar[Command] = Command.TEMPERATURE
    temperature_dc: int
    reason: TemperatureReason = TemperatureReason.PERIODIC

    def payload(self) -> bytes:
        _check(self.temperature_dc, -0x8000, 0x7FFF, "temperature_dc")
        return struct.pack("<hB", self.temperature_dc, self.reason)

    @classmethod
    def decode(cls, p: bytes) -> TemperatureEvent:
        _need(p, 3, "TEMPERATURE")
        temp, reason = struct.unpack("<hB", p)
        return cls(int(temp), _enum(TemperatureReason, reason))


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """Event: fault ``code`` raised (active) or cleared; slot or NO_SLOT."""

    CODE: ClassVar[Command] = Command.FAULT
    code: FaultCode
    active: bool
    slot: int = NO_SLOT

    def payload(self) -> bytes:
        _check(self.slot, 0, _U16, "slot")
        return struct.pack("<BBH", self.code, 1 if self.active else 0, self.slot)

    @classmethod
    def decode(cls, p: bytes) -> FaultEvent:
        _need(p, 4, "FAULT")
        code, active, slot = struct.unpack("<BBH", p)
        if active > 1:
            raise BadValue("FAULT: active must be 0 or 1")
        return cls(_enum(FaultCode, code), bool(active), int(slot))


@dataclass(frozen=True, slots=True)
class BoardReset:
    """Event: the board rebooted. First event after every boot."""

    CODE: ClassVar[Command] = Command.BOARD_RESET
    reason: ResetReason
    memory_kept: bool  # outcome memory survived the reboot
    interrupted_tx: int = NO_TX  # tx that was running at reset, if known

    def payload(self) -> bytes:
        _check(self.interrupted_tx, 0, _U32, "interrupted_tx")
        return struct.pack("<BBI", self.reason, 1 if self.memory_kept else 0, self.interrupted_tx)

    @classmethod
    def decode(cls, p: bytes) -> BoardReset:
        _need(p, 6, "BOARD_RESET")
        reason, kept, tx = struct.unpack("<BBI", p)
        if kept > 1:
            raise BadValue("BOARD_RESET: memory_kept must be 0 or 1")
        return cls(_enum(ResetReason, reason), bool(kept), int(tx))


Message: TypeAlias = (
    Ping
    | Identify
    | Status
    | VendRequest
    | UnlockRequest
    | OutcomeQuery
    | TestSlot
    | Reset
    | Poll
    | Ack
    | Nak
    | IdentifyReply
    | StatusReply
    | TxReply
    | OutcomeReply
    | VendResult
    | DoorEvent
    | TemperatureEvent
    | FaultEvent
    | BoardReset
)


_M = TypeVar("_M", bound="_Empty")


def _empty(cls: type[_M]) -> Callable[[bytes], _M]:
    def decode(p: bytes) -> _M:
        _need(p, 0, cls.CODE.name)
        return cls()

    return decode


_DECODERS: Final[dict[int, Callable[[bytes], Message]]] = {
    Command.PING: _empty(Ping),
    Command.IDENTIFY: Identify.decode,
    Command.STATUS: _empty(Status),
    Command.VEND: VendRequest.decode,
    Command.UNLOCK: UnlockRequest.decode,
    Command.OUTCOME: OutcomeQuery.decode,
    Command.TEST_SLOT: TestSlot.decode,
    Command.RESET: _empty(Reset),
    Command.POLL: _empty(Poll),
    Command.ACK: _empty(Ack),
    Command.NAK: Nak.decode,
    Command.IDENTIFY_REPLY: IdentifyReply.decode,
    Command.STATUS_REPLY: StatusReply.decode,
    Command.TX_REPLY: TxReply.decode,
    Command.OUTCOME_REPLY: OutcomeReply.decode,
    Command.VEND_RESULT: VendResult.decode,
    Command.DOOR: DoorEvent.decode,
    Command.TEMPERATURE: TemperatureEvent.decode,
    Command.FAULT: FaultEvent.decode,
    Command.BOARD_RESET: BoardReset.decode,
}


# --------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: board address, sequence number, command code, raw payload."""

    address: int
    seq: int
    command: int
    payload: bytes = b""


_HEAD: Final = struct.Struct("<BBBBB")


def encode_frame(frame: Frame) -> bytes:
    """Serialize a frame (sync, header, payload, CRC)."""
    _check(frame.address, 0, _U8, "address")
    _check(frame.seq, 0, _U8, "seq")
    _check(frame.command, 0, _U8, "command")
    n = len(frame.payload)
    if n > MAX_PAYLOAD:
        raise BadLength(f"payload {n} bytes exceeds MAX_PAYLOAD={MAX_PAYLOAD}")
    body = _HEAD.pack(SYNC, frame.address, n, frame.seq, frame.command) + frame.payload
    return body + struct.pack("<H", binascii.crc_hqx(body[1:], 0xFFFF))


def encode(address: int, seq: int, msg: Message) -> bytes:
    """Serialize a message into a complete frame."""
    return encode_frame(Frame(address, seq, msg.CODE, msg.payload()))


def decode_message(frame: Frame) -> Message:
    """Decode a frame's payload.

    Raises UnknownCommand, BadLength or BadValue (all ProtocolError).
    """
    decoder = _DECODERS.get(frame.command)
    if decoder is None:
        raise UnknownCommand(frame.command)
    return decoder(frame.payload)


class FrameDecoder:
    """Incremental frame parser: feed bytes, take complete, CRC-checked frames.

    Never raises on line noise. After a bad CRC or an absurd length it drops
    only the candidate sync byte and hunts for the next one, so a good frame
    starting inside a bad region is still found. The unparsed buffer never
    exceeds MAX_FRAME - 1 bytes after ``feed`` returns.

    A partial frame that never completes (e.g. a false sync byte claiming a
    long payload at the end of a burst) waits for more bytes; a caller that
    sees an inter-byte gap longer than the spec's limit calls ``timeout()``.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._ready: deque[Frame] = deque()
        self.frames_ok = 0
        self.crc_errors = 0
        self.resyncs = 0
        self.bytes_discarded = 0
        self.oversize = 0

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)

    @property
    def pending(self) -> int:
        """Complete frames not yet taken."""
        return len(self._ready)

    def feed(self, data: bytes) -> None:
        if data:
            self._buf += data
            self._parse()

    def timeout(self) -> None:
        """The line went idle mid-frame: drop the partial frame's sync byte."""
        if self._buf:
            self._discard(1)
            self._parse()

    def next_frame(self) -> Frame | None:
        return self._ready.popleft() if self._ready else None

    def frames(self) -> Iterator[Frame]:
        """Yield (and remove) every complete frame received so far."""
        while self._ready:
            yield self._ready.popleft()

    def _discard(self, n: int) -> None:
        del self._buf[:n]
        self.bytes_discarded += n
        self.resyncs += 1

    def _parse(self) -> None:
        buf = self._buf
        pos = 0
        end = len(buf)
        crc = binascii.crc_hqx
        ready = self._ready
        while True:
            start = buf.find(SYNC, pos)
            if start < 0:
                if pos < end:
                    self.bytes_discarded += end - pos
                    self.resyncs += 1
                pos = end
                break
            if start > pos:
                self.bytes_discarded += start - pos
                self.resyncs += 1
                pos = start
            if end - pos < HEADER_SIZE:
                break
            length = buf[pos + 2]
            if length > MAX_PAYLOAD:
                self.oversize += 1
                self.bytes_discarded += 1
                self.resyncs += 1
                pos += 1
                continue
            total = HEADER_SIZE + length + CRC_SIZE
            if end - pos < total:
                break
            crc_at = pos + total - CRC_SIZE
            if crc(buf[pos + 1 : crc_at], 0xFFFF) != buf[crc_at] | buf[crc_at + 1] << 8:
                self.crc_errors += 1
                self.bytes_discarded += 1
                self.resyncs += 1
                pos += 1
                continue
            ready.append(
                Frame(
                    buf[pos + 1],
                    buf[pos + 3],
                    buf[pos + 4],
                    bytes(buf[pos + 5 : crc_at]),
                )
            )
            self.frames_ok += 1
            pos += total
        if pos:
            del buf[:pos]
