"""Example-based tests for kiosk.hardware.protocol and docs/serial-protocol.md."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from kiosk.hardware import protocol as p
from kiosk.hardware.protocol import (
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
    Ping,
    Poll,
    Reset,
    ResetReason,
    SlotGroup,
    Status,
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
    crc16_ccitt_false,
    decode_message,
    encode,
    encode_frame,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "serial-protocol.md"
TX = 0x12345678


def crc_reference(data: bytes) -> int:
    """Bit-by-bit CRC-16/CCITT-FALSE, transcribed from the C code in the doc."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


# name -> (address, seq, message); every ```hex NAME block in the doc must be here.
DOC_EXAMPLES: dict[str, tuple[int, int, Message]] = {
    "identify_request": (0, 1, Identify(1, push_events=True)),
    "identify_response": (
        0,
        1,
        IdentifyReply(
            protocol_version=1,
            firmware=(1, 4, 2),
            cabinet=CabinetKind.SPIRAL,
            flags=IdentifyFlags.CHILLED | IdentifyFlags.NONVOLATILE_OUTCOMES,
            outcome_memory=64,
            model="KB-100",
            serial="SN0001234",
            slots=(SlotGroup(0, 60, WireSlotKind.SPIRAL),),
        ),
    ),
    "status_request": (0, 2, Status()),
    "status_response": (
        0,
        2,
        StatusReply(busy=False, service_door_open=False, temperature_dc=45),
    ),
    "vend_request": (0, 3, VendRequest(slot=11, tx=TX)),
    "vend_accepted": (0, 3, TxReply(TX, 11, Outcome.ACCEPTED)),
    "vend_busy": (0, 7, TxReply(TX + 1, 12, Outcome.BUSY)),
    "vend_result_event": (0, 0x41, VendResult(TX, 11, Outcome.DELIVERED)),
    "vend_result_ack": (0, 0x41, Ack()),
    "outcome_request": (0, 4, OutcomeQuery(TX)),
    "outcome_response": (0, 4, OutcomeReply(TX, 11, Outcome.DELIVERED)),
    "outcome_unknown": (0, 5, OutcomeReply(0xDEADBEEF, p.NO_SLOT, Outcome.UNKNOWN_TX)),
    "nak_unknown_command": (0, 6, Nak(ErrorCode.UNKNOWN_COMMAND, 0x3F)),
    "unlock_request": (1, 0x10, UnlockRequest(slot=3, tx=0x102)),
    "door_event": (1, 0x22, DoorEvent(3, is_open=True)),
    "board_reset_event": (0, 0, BoardReset(ResetReason.POWER_ON, memory_kept=True)),
}


def doc_hex_blocks() -> dict[str, bytes]:
    text = DOC.read_text(encoding="utf-8")
    blocks: dict[str, bytes] = {}
    for name, body in re.findall(r"^```hex (\w+)\n(.*?)^```", text, re.S | re.M):
        assert name not in blocks, f"duplicate example name {name}"
        blocks[name] = bytes.fromhex(body)
    return blocks


def test_crc_check_value() -> None:
    assert crc16_ccitt_false(b"123456789") == 0x29B1 == p.CRC_CHECK_VALUE
    assert crc_reference(b"123456789") == 0x29B1
    assert crc16_ccitt_false(b"") == 0xFFFF


def test_doc_examples_cover_the_required_set() -> None:
    blocks = doc_hex_blocks()
    assert set(blocks) == set(DOC_EXAMPLES)
    assert len(blocks) >= 6


@pytest.mark.parametrize("name", sorted(DOC_EXAMPLES))
def test_doc_example_byte_for_byte(name: str) -> None:
    wire = doc_hex_blocks()[name]
    address, seq, msg = DOC_EXAMPLES[name]
    assert encode(address, seq, msg) == wire
    # Independent check of framing against the spec text, not the codec.
    assert wire[0] == 0x7E
    assert wire[2] == len(wire) - 7
    assert struct.unpack("<H", wire[-2:])[0] == crc_reference(wire[1:-2])
    dec = FrameDecoder()
    dec.feed(wire)
    frames = list(dec.frames())
    assert frames == [Frame(address, seq, msg.CODE, wire[5:-2])]
    assert decode_message(frames[0]) == msg


def test_doc_examples_as_one_stream() -> None:
    blocks = doc_hex_blocks()
    dec = FrameDecoder()
    dec.feed(b"".join(blocks.values()))
    got = [decode_message(f) for f in dec.frames()]
    assert got == [DOC_EXAMPLES[n][2] for n in blocks]
    assert dec.crc_errors == 0 and dec.bytes_discarded == 0


ALL_MESSAGES: list[Message] = [
    Ping(),
    Identify(),
    Identify(7, push_events=True),
    Status(),
    VendRequest(0, 1),
    VendRequest(0xFFFE, 0xFFFFFFFF),
    UnlockRequest(3, 99),
    OutcomeQuery(5),
    TestSlot(9, 10),
    Reset(),
    Poll(),
    Ack(),
    Nak(ErrorCode.BAD_LENGTH, Command.VEND),
    IdentifyReply(
        1,
        (0, 0, 1),
        CabinetKind.MIXED,
        IdentifyFlags.PRESENCE_SENSING,
        128,
        "",
        "X" * 32,
        (SlotGroup(0, 10, WireSlotKind.SPIRAL), SlotGroup(100, 24, WireSlotKind.LOCKER)),
    ),
    StatusReply(
        busy=True,
        service_door_open=True,
        temperature_dc=-25,
        faults=FaultFlags.MOTOR_DRIVER | FaultFlags.OTHER,
        busy_tx=77,
        open_doors=frozenset({0, 7, 8, 100}),
        present=frozenset(),
    ),
    StatusReply(False, False, None, present=frozenset({1, 2, 3})),
    TxReply(1, 2, Outcome.IN_PROGRESS),
    OutcomeReply(1, 2, Outcome.INTERRUPTED),
    VendResult(1, 2, Outcome.JAMMED),
    DoorEvent(p.SERVICE_DOOR, is_open=False),
    TemperatureEvent(-400, TemperatureReason.HIGH_ALARM),
    FaultEvent(FaultCode.OVER_TEMPERATURE, active=True),
    BoardReset(ResetReason.WATCHDOG, memory_kept=False, interrupted_tx=42),
]


def test_every_command_code_has_a_sample() -> None:
    assert {m.CODE for m in ALL_MESSAGES} == set(Command)


@pytest.mark.parametrize("msg", ALL_MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: Message) -> None:
    wire = encode(3, 200, msg)
    dec = FrameDecoder()
    dec.feed(wire)
    frame = dec.next_frame()
    assert frame is not None and dec.next_frame() is None
    assert (frame.address, frame.seq, frame.command) == (3, 200, msg.CODE)
    assert decode_message(frame) == msg


def test_unknown_command() -> None:
    with pytest.raises(UnknownCommand) as exc:
        decode_message(Frame(0, 0, 0x3F, b""))
    assert exc.value.command == 0x3F


@pytest.mark.parametrize(
    ("command", "payload"),
    [
        (Command.PING, b"\x00"),
        (Command.VEND, b"\x01\x00\x01\x00\x00"),
        (Command.VEND, b"\x01\x00\x01\x00\x00\x00\x00"),
        (Command.OUTCOME_REPLY, b""),
        (Command.IDENTIFY_REPLY, b"\x01\x01\x00\x00\x01\x00\x40\x00\x05AB"),
        (Command.STATUS_REPLY, b"\x00\x2d\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
    ],
)
def test_bad_length(command: int, payload: bytes) -> None:
    with pytest.raises(BadLength):
        decode_message(Frame(0, 0, command, payload))


@pytest.mark.parametrize(
    ("command", "payload"),
    [
        (Command.VEND, b"\x01\x00\x00\x00\x00\x00"),  # tx 0
        (Command.VEND, b"\xff\xff\x01\x00\x00\x00"),  # slot 0xFFFF
        (Command.TX_REPLY, b"\x01\x00\x00\x00\x01\x00\xee"),  # outcome 0xEE
        (Command.IDENTIFY, b"\x01\x02"),  # reserved flag
        (Command.DOOR, b"\x01\x00\x02"),
        (Command.NAK, b"\x99\x04"),
        (Command.STATUS_REPLY, b"\x00\x2d\x00\x00\x00\x00\x00\x00\x00\x00\x01\x01"),
    ],
)
def test_bad_value(command: int, payload: bytes) -> None:
    with pytest.raises(BadValue):
        decode_message(Frame(0, 0, command, payload))


def test_encode_rejects_out_of_range() -> None:
    with pytest.raises(BadValue):
        encode(0, 0, VendRequest(1, 0))
    with pytest.raises(BadValue):
        encode(0, 256, Ping())
    with pytest.raises(BadValue):
        encode(
            0, 0, IdentifyReply(1, (1, 0, 0), CabinetKind.SPIRAL, IdentifyFlags.NONE, 64, "é", "")
        )
    with pytest.raises(BadLength):
        encode_frame(Frame(0, 0, 1, bytes(p.MAX_PAYLOAD + 1)))
    assert len(encode_frame(Frame(0, 0, 1, bytes(p.MAX_PAYLOAD)))) == p.MAX_FRAME


def test_outcome_finality() -> None:
    assert not Outcome.ACCEPTED.is_final and not Outcome.IN_PROGRESS.is_final
    assert Outcome.DELIVERED.is_final and Outcome.DOOR_OPENED_AND_CLOSED.is_final


def test_identify_reply_helpers() -> None:
    reply = DOC_EXAMPLES["identify_response"][2]
    assert isinstance(reply, IdentifyReply)
    assert reply.slot_count == 60 and reply.chilled


def test_sync_byte_inside_crc_does_not_confuse_decoder() -> None:
    wire = doc_hex_blocks()["vend_accepted"]
    assert wire[-1] == p.SYNC
    dec = FrameDecoder()
    for b in wire + wire:
        dec.feed(bytes([b]))
    assert len(list(dec.frames())) == 2


def test_bad_crc_is_dropped_and_following_frame_found() -> None:
    good = encode(0, 1, VendRequest(1, 2))
    bad = bytearray(good)
    bad[6] ^= 0x01
    dec = FrameDecoder()
    dec.feed(bytes(bad) + good)
    assert [decode_message(f) for f in dec.frames()] == [VendRequest(1, 2)]
    assert dec.crc_errors == 1 and dec.frames_ok == 1
    assert dec.bytes_discarded == len(good)


def test_absurd_length_counts_oversize() -> None:
    good = encode(0, 1, Ping())
    dec = FrameDecoder()
    dec.feed(bytes([p.SYNC, 0, 0xF1, 0, 0]) + good)
    assert [f.command for f in dec.frames()] == [Command.PING]
    assert dec.oversize == 1


def test_false_sync_at_end_of_burst_recovered_by_timeout() -> None:
    good = encode(0, 1, Ping())
    dec = FrameDecoder()
    # A false sync claiming a 200-byte payload swallows the good frame.
    dec.feed(bytes([p.SYNC, 0, 200, 0, 0]) + good)
    assert dec.next_frame() is None
    dec.timeout()
    assert dec.next_frame() == Frame(0, 1, Command.PING, b"")
    assert dec.buffered == 0


def test_truncated_frame_then_good_frame() -> None:
    good = encode(0, 9, VendRequest(5, 6))
    dec = FrameDecoder()
    dec.feed(good[:8] + good)
    # The truncated head claims 6 payload bytes; CRC fails, rescans, finds good.
    assert [decode_message(f) for f in dec.frames()] == [VendRequest(5, 6)]


def test_garbage_only_keeps_buffer_empty() -> None:
    dec = FrameDecoder()
    dec.feed(bytes(range(0x7E)) * 100)
    assert dec.buffered == 0
    assert dec.bytes_discarded == 0x7E * 100
