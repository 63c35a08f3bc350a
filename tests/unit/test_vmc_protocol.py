"""Tests for kiosk.hardware.vmc_protocol and docs/boards/vmc.md (no ports, no sleeps)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.hardware import vmc_protocol as v
from kiosk.hardware.vmc_protocol import (
    ACK_FRAME,
    POLL_FRAME,
    BadLength,
    BadValue,
    CheckSelection,
    CommandAcked,
    CommandGivenUp,
    CommandSent,
    DeliveryStatusQuery,
    DeliveryStatusReply,
    DispenseClass,
    DispenseCode,
    DispensingStatus,
    DriveSelection,
    GiveUpReason,
    InfoSync,
    MachineStatusQuery,
    MachineStatusReply,
    Message,
    Received,
    SelectionInfo,
    SelectionStatus,
    SelectToBuy,
    SessionConfig,
    SetPollInterval,
    Undecodable,
    UnknownCommand,
    UpperSession,
    VmcAck,
    VmcFrame,
    VmcFrameDecoder,
    VmcPoll,
    VmcResumed,
    VmcSilent,
    classify_dispense,
    decode_message,
    encode,
    encode_frame,
    next_comm,
    xor8,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "boards" / "vmc.md"
FAST = settings(max_examples=150, deadline=None)

# name -> (comm, message); every ```hex NAME block in the doc must be here and vice versa.
DOC_EXAMPLES: dict[str, tuple[int | None, Message]] = {
    "poll": (None, VmcPoll()),
    "ack": (None, VmcAck()),
    "check_selection": (0x05, CheckSelection(11)),
    "selection_status_normal": (0x21, SelectionStatus(0x01, 11)),
    "selection_status_out_of_stock": (0x22, SelectionStatus(0x02, 12)),
    "select_to_buy": (0x06, SelectToBuy(11)),
    "drive_selection": (0x07, DriveSelection(258, drop_sensor=True, elevator=False)),
    "dispensing_running": (0x23, DispensingStatus(0x01, 11)),
    "dispensing_success": (0x24, DispensingStatus(0x02, 11)),
    "dispensing_jammed": (0x25, DispensingStatus(0x03, 258)),
    "dispensing_terminated_extra": (0x26, DispensingStatus(0xFF, 11, extra=0)),
    "selection_info": (0x30, SelectionInfo(11, 1990, 5, 10, 101, 0)),
    "set_poll_interval": (0x08, SetPollInterval(200)),
    "info_sync_from_vmc": (0x01, InfoSync()),
    "info_sync_from_kiosk": (0x09, InfoSync()),
    "machine_status_query": (0x0A, MachineStatusQuery()),
    "machine_status": (0x27, MachineStatusReply(0, 0, 0, 0, 1)),
    "delivery_status_query": (0x0B, DeliveryStatusQuery()),
    "delivery_status_door_open": (0x28, DeliveryStatusReply(0x02)),
}


def doc_hex_blocks() -> dict[str, bytes]:
    text = DOC.read_text(encoding="utf-8")
    blocks: dict[str, bytes] = {}
    for name, body in re.findall(r"^```hex (\w+)\n(.*?)^```", text, re.S | re.M):
        assert name not in blocks, f"duplicate example name {name}"
        blocks[name] = bytes.fromhex(body)
    return blocks


def xor_reference(data: bytes) -> int:
    """Independent of the codec: fold XOR from the doc's definition."""
    acc = 0
    for i in range(len(data)):
        acc = acc ^ data[i]
    return acc


# --------------------------------------------------------------------------
# The document's worked examples, byte for byte
# --------------------------------------------------------------------------


def test_every_doc_example_is_checked_and_every_check_is_in_the_doc() -> None:
    assert set(doc_hex_blocks()) == set(DOC_EXAMPLES)


@pytest.mark.parametrize("name", sorted(DOC_EXAMPLES))
def test_doc_example_decodes_byte_for_byte(name: str) -> None:
    raw = doc_hex_blocks()[name]
    comm, message = DOC_EXAMPLES[name]
    # layout by hand, from section 2 of the doc
    assert raw[:2] == b"\xfa\xfb"
    assert raw[2] == message.CODE
    assert raw[3] == len(raw) - 5
    assert raw[-1] == xor_reference(raw[:-1])
    if comm is None:
        assert raw[3] == 0
    else:
        assert raw[4] == comm
    # the decoder agrees
    dec = VmcFrameDecoder()
    dec.feed(raw)
    frames = list(dec.frames())
    assert len(frames) == 1
    assert frames[0].comm == comm
    assert decode_message(frames[0]) == message
    # and the encoder reproduces the exact bytes
    assert encode(message, comm) == raw


def test_poll_and_ack_constants() -> None:
    assert bytes.fromhex("FA FB 41 00 40") == POLL_FRAME
    assert bytes.fromhex("FA FB 42 00 43") == ACK_FRAME
    assert xor8(b"\xfa\xfb") == 0x01


def test_doc_states_implemented_commands_and_ambiguity_section() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "## 8. Where a vend becomes ambiguous" in text
    for phrase in ("57600", "Not implemented", "never sent again", "never** proof"):
        assert phrase in text
    for code in v.VmcCommand:
        assert f"| 0x{code:02X} |" in text, f"command 0x{code:02X} missing from the table"


def test_doc_dispense_table_matches_the_code() -> None:
    text = DOC.read_text(encoding="utf-8")
    rows = re.findall(r"^\| (0x[0-9A-F]{2}(?:[,.\s0-9A-Fx]*)) \| [^|]+ \| (\w+)", text, re.M)
    seen: set[int] = set()
    for codes, cls in rows:
        if cls not in {c.value for c in DispenseClass}:
            continue
        for lo, hi in re.findall(r"0x([0-9A-F]{2})(?:\.\.0x([0-9A-F]{2}))?", codes):
            for code in DispenseCode:
                if int(lo, 16) <= code <= int(hi or lo, 16):
                    assert classify_dispense(code) == DispenseClass(cls), hex(code)
                    seen.add(code)
    assert seen == set(DispenseCode)


# --------------------------------------------------------------------------
# Codec
# --------------------------------------------------------------------------


def test_dispense_classes() -> None:
    assert classify_dispense(0x01) is DispenseClass.RUNNING
    assert classify_dispense(0x02) is DispenseClass.DELIVERED
    assert classify_dispense(0x03) is DispenseClass.FAILED
    assert classify_dispense(0x06) is DispenseClass.FAILED
    assert classify_dispense(0x04) is DispenseClass.UNKNOWN
    assert classify_dispense(0xFF) is DispenseClass.UNKNOWN
    assert classify_dispense(0x05) is DispenseClass.UNKNOWN  # unpublished
    assert DispensingStatus(0x02, 11).is_final
    assert not DispensingStatus(0x01, 11).is_final
    assert set(v.DISPENSE_CLASS) == set(DispenseCode)


def test_dispensing_status_lengths() -> None:
    assert DispensingStatus.decode(b"\x02\x00\x0b") == DispensingStatus(2, 11)
    assert DispensingStatus.decode(b"\x02\x00\x0b\x07") == DispensingStatus(2, 11, 7)
    with pytest.raises(BadLength):
        DispensingStatus.decode(b"\x02\x0b")  # LEN 3: no field list fits


def test_selection_is_big_endian_u16() -> None:
    assert SelectToBuy(0x0102).text() == b"\x01\x02"
    assert DriveSelection(0x0102, drop_sensor=False, elevator=True).text() == b"\x00\x01\x01\x02"
    with pytest.raises(BadValue):
        SelectToBuy(0).text()
    with pytest.raises(BadValue):
        SelectToBuy(0x10000).text()


def test_decode_rejections() -> None:
    with pytest.raises(UnknownCommand):
        decode_message(VmcFrame(0x21, 3, b"\x01\x00\x00\x00\x10"))
    with pytest.raises(BadLength):
        decode_message(VmcFrame(v.VmcCommand.SELECT_TO_BUY, None))
    with pytest.raises(BadLength):
        decode_message(VmcFrame(v.VmcCommand.SELECT_TO_BUY, 1, b"\x00"))
    with pytest.raises(BadValue):
        decode_message(VmcFrame(v.VmcCommand.DRIVE_SELECTION, 1, b"\x02\x00\x00\x0b"))
    with pytest.raises(BadValue):
        decode_message(VmcFrame(v.VmcCommand.SET_POLL_INTERVAL, 1, b"\x15"))


def test_encode_rejections() -> None:
    with pytest.raises(BadValue):
        encode(SelectToBuy(1))  # needs a number
    with pytest.raises(BadValue):
        encode(SelectToBuy(1), 0)  # 0 is never a communication number
    with pytest.raises(BadValue):
        encode(VmcPoll(), 3)
    with pytest.raises(BadValue):
        SetPollInterval(250).text()
    with pytest.raises(BadLength):
        encode_frame(VmcFrame(0x52, 1, bytes(64)))


def test_next_comm_wraps_and_skips_zero() -> None:
    assert next_comm(None) == 1
    assert next_comm(1) == 2
    assert next_comm(254) == 255
    assert next_comm(255) == 1
    seen = [1]
    for _ in range(300):
        seen.append(next_comm(seen[-1]))
    assert 0 not in seen and max(seen) == 255


# --------------------------------------------------------------------------
# Round trips and the resynchronising receiver (hypothesis)
# --------------------------------------------------------------------------

selections = st.integers(1, 0xFFFF)
bytes8 = st.integers(0, 0xFF)
messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(CheckSelection, selections),
    st.builds(SelectionStatus, bytes8, st.integers(0, 0xFFFF)),
    st.builds(SelectToBuy, selections),
    st.builds(DriveSelection, selections, st.booleans(), st.booleans()),
    st.builds(DispensingStatus, bytes8, st.integers(0, 0xFFFF), st.none() | bytes8),
    st.builds(
        SelectionInfo,
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFF_FFFF),
        bytes8,
        bytes8,
        st.integers(0, 0xFFFF),
        bytes8,
    ),
    st.builds(SetPollInterval, st.integers(1, 20).map(lambda n: n * 100)),
    st.just(InfoSync()),
    st.just(MachineStatusQuery()),
    st.builds(MachineStatusReply, bytes8, bytes8, bytes8, bytes8, bytes8, st.binary(max_size=35)),
    st.just(DeliveryStatusQuery()),
    st.builds(DeliveryStatusReply, bytes8, st.binary(max_size=4)),
)
comms = st.integers(1, 255)


@FAST
@given(messages, comms)
def test_message_round_trip(message: Message, comm: int) -> None:
    raw = encode(message, comm)
    dec = VmcFrameDecoder()
    dec.feed(raw)
    (frame,) = dec.frames()
    assert frame.comm == comm
    assert decode_message(frame) == message
    assert raw[-1] == xor_reference(raw[:-1])


def _clean(frame: VmcFrame) -> bool:
    """No 0xFA anywhere: the frame cannot hide a false start (XOR passes 1 in 256)."""
    return 0xFA not in encode_frame(frame)[2:]


frames_st = st.builds(
    VmcFrame,
    st.integers(0, 0xFF).filter(lambda c: c not in (0x41, 0x42)),
    st.integers(1, 255),
    st.binary(max_size=20),
).filter(_clean) | st.sampled_from([VmcFrame(0x41, None), VmcFrame(0x42, None)])
garbage = st.binary(max_size=12).map(lambda b: bytes(x for x in b if x != 0xFA))


@FAST
@given(st.lists(st.tuples(garbage, frames_st), max_size=8), garbage)
def test_garbage_between_frames_is_skipped(
    pairs: list[tuple[bytes, VmcFrame]], tail: bytes
) -> None:
    stream = b"".join(g + encode_frame(f) for g, f in pairs) + tail
    dec = VmcFrameDecoder()
    dec.feed(stream)
    assert list(dec.frames()) == [f for _, f in pairs]
    assert dec.bytes_discarded == sum(len(g) for g, _ in pairs) + len(tail)


@FAST
@given(st.lists(frames_st, min_size=1, max_size=6), st.data())
def test_byte_at_a_time_equals_all_at_once(frames: list[VmcFrame], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(f) for f in frames)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(stream)), max_size=len(stream))))
    dec = VmcFrameDecoder()
    got: list[VmcFrame] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        dec.feed(stream[prev:cut])
        got.extend(dec.frames())
        prev = cut
    assert got == frames
    dec1 = VmcFrameDecoder()
    for b in stream:
        dec1.feed(bytes([b]))
    assert list(dec1.frames()) == frames
    assert dec1.buffered == 0


@FAST
@given(frames_st, st.lists(frames_st, min_size=1, max_size=4), st.data())
def test_resync_after_corrupted_frame(
    bad: VmcFrame, good: list[VmcFrame], data: st.DataObject
) -> None:
    raw = bytearray(encode_frame(bad))
    raw[-1] ^= data.draw(st.integers(1, 0xFF).filter(lambda x: raw[-1] ^ x != 0xFA))
    dec = VmcFrameDecoder()
    dec.feed(bytes(raw) + b"".join(encode_frame(f) for f in good))
    assert list(dec.frames()) == good
    assert dec.xor_errors == 1
    assert dec.bad_frames == 1


def test_frame_starting_inside_a_truncated_frame_is_found() -> None:
    # a dispensing status cut short by line loss; its LEN makes it reach into the POLL
    truncated = encode(DispensingStatus(0x02, 11), 0x24)[:6]
    stream = truncated + POLL_FRAME + encode(SelectionStatus(1, 11), 0x25)
    dec = VmcFrameDecoder()
    dec.feed(stream)
    assert list(dec.frames()) == [VmcFrame(0x41, None), VmcFrame(0x02, 0x25, b"\x01\x00\x0b")]
    assert dec.xor_errors == 1
    assert dec.bytes_discarded == len(truncated)


def test_false_start_with_huge_length_does_not_swallow_frames() -> None:
    dec = VmcFrameDecoder()
    dec.feed(b"\xfa\xfb\x04\xf0" + POLL_FRAME)
    assert list(dec.frames()) == [VmcFrame(0x41, None)]
    assert dec.false_starts == 1


def test_partial_false_start_recovered_by_timeout() -> None:
    dec = VmcFrameDecoder()
    # false start claiming LEN 30, then a real POLL: waits for 35 bytes
    dec.feed(b"\xfa\xfb\x04\x1e" + POLL_FRAME)
    assert list(dec.frames()) == []
    dec.timeout()
    assert list(dec.frames()) == [VmcFrame(0x41, None)]


def test_split_stx_is_kept() -> None:
    dec = VmcFrameDecoder()
    dec.feed(b"\x00\x13\xfa")
    assert dec.buffered == 1
    dec.feed(POLL_FRAME[1:])
    assert list(dec.frames()) == [VmcFrame(0x41, None)]


# --------------------------------------------------------------------------
# The upper-computer session
# --------------------------------------------------------------------------


class Vmc:
    """Test double for the VMC side: builds its frames with its own counter."""

    def __init__(self) -> None:
        self.comm = 0x40

    def data(self, message: Message) -> bytes:
        self.comm = next_comm(self.comm)
        return encode(message, self.comm)


def events_of(out: v.Output, kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in out.events if isinstance(e, kind)]


def test_idle_poll_is_answered_with_ack() -> None:
    s = UpperSession(last_comm=10)
    out = s.receive_data(POLL_FRAME, now=0.0)
    assert out.send == ACK_FRAME
    assert out.events == ()


def test_poll_command_ack() -> None:
    s = UpperSession(last_comm=10)
    q = s.queue(SelectToBuy(11))
    assert q.comm == 11
    out = s.receive_data(POLL_FRAME, now=1.0)
    assert out.send == encode(SelectToBuy(11), 11)
    assert events_of(out, CommandSent) == [CommandSent(q.handle, 11, SelectToBuy(11), 1)]
    out = s.receive_data(ACK_FRAME, now=1.01)
    assert out.send == b""  # the ACK ends the exchange
    assert out.events == (CommandAcked(q.handle, 11, SelectToBuy(11), 1),)
    assert s.awaiting_ack is None
    assert s.receive_data(POLL_FRAME, now=1.2).send == ACK_FRAME


def test_one_command_per_poll_in_order() -> None:
    s = UpperSession(last_comm=1)
    a = s.queue(CheckSelection(11))
    b = s.queue(SelectToBuy(11))
    assert (a.comm, b.comm) == (2, 3)
    assert s.receive_data(POLL_FRAME, 0.0).send == encode(CheckSelection(11), 2)
    s.receive_data(ACK_FRAME, 0.01)
    assert s.receive_data(POLL_FRAME, 0.2).send == encode(SelectToBuy(11), 3)


def test_resend_up_to_five_times_then_give_up() -> None:
    s = UpperSession(last_comm=20)
    q = s.queue(SelectToBuy(7))
    frame = encode(SelectToBuy(7), 21)
    t = 0.0
    for attempt in range(1, 7):  # first send + 5 resends, same bytes and number
        out = s.receive_data(POLL_FRAME, t)
        assert out.send == frame
        assert events_of(out, CommandSent)[0].attempt == attempt
        t += 0.2
    out = s.receive_data(POLL_FRAME, t)
    assert out.send == ACK_FRAME  # never a 7th send
    assert events_of(out, CommandGivenUp) == [
        CommandGivenUp(q.handle, 21, SelectToBuy(7), 6, GiveUpReason.NO_ACK)
    ]
    assert s.stats.resends == 5
    # the next command gets a new number
    assert s.queue(SelectToBuy(8)).comm == 22


def test_given_up_command_is_followed_by_next_on_same_poll() -> None:
    s = UpperSession(last_comm=5, config=SessionConfig(max_resends=0))
    s.queue(SelectToBuy(1))
    s.queue(CheckSelection(2))
    s.receive_data(POLL_FRAME, 0.0)
    out = s.receive_data(POLL_FRAME, 0.2)
    assert out.send == encode(CheckSelection(2), 7)
    assert [type(e) for e in out.events] == [CommandGivenUp, CommandSent]


def test_late_ack_after_resend_counts_once() -> None:
    s = UpperSession(last_comm=1)
    s.queue(SelectToBuy(3))
    s.receive_data(POLL_FRAME, 0.0)
    s.receive_data(POLL_FRAME, 0.2)  # resend
    out = s.receive_data(ACK_FRAME, 0.21)
    assert events_of(out, CommandAcked)[0].sends == 2
    out = s.receive_data(ACK_FRAME, 0.22)  # a second ACK (of the first send) is stray
    assert out.events == ()
    assert s.stats.stray_acks == 1


def test_ack_outside_window_is_not_ours() -> None:
    s = UpperSession(last_comm=1)
    s.queue(SelectToBuy(3))
    s.receive_data(POLL_FRAME, 0.0)
    out = s.receive_data(ACK_FRAME, 0.9)
    assert out.events == ()
    assert s.awaiting_ack is not None


def test_data_frames_are_acked_and_duplicates_reported_once() -> None:
    s = UpperSession(last_comm=1)
    vmc = Vmc()
    status = vmc.data(DispensingStatus(0x02, 11))
    out = s.receive_data(status, 5.0)
    assert out.send == ACK_FRAME
    assert out.events == (Received(vmc.comm, DispensingStatus(0x02, 11)),)
    out = s.receive_data(status, 5.2)  # our ACK was lost: the VMC resends
    assert out.send == ACK_FRAME
    assert out.events == ()
    assert s.stats.duplicates == 1
    # a new frame with a new number is reported
    out = s.receive_data(vmc.data(DispensingStatus(0x02, 12)), 5.4)
    assert events_of(out, Received)[0].message == DispensingStatus(0x02, 12)


def test_identical_frame_after_duplicate_window_is_new() -> None:
    s = UpperSession(last_comm=1)
    sync = encode(InfoSync(), 1)
    assert events_of(s.receive_data(sync, 0.0), Received)
    assert events_of(s.receive_data(sync, 60.0), Received)  # the VMC rebooted again


def test_same_number_other_content_is_reported_as_reused() -> None:
    s = UpperSession(last_comm=1)
    s.receive_data(encode(DispensingStatus(0x01, 11), 9), 0.0)
    out = s.receive_data(encode(DispensingStatus(0x02, 11), 9), 0.1)
    assert events_of(out, Received) == [Received(9, DispensingStatus(0x02, 11), True)]
    assert s.stats.reused_numbers == 1


def test_unknown_and_bad_data_frames_are_acked_and_reported() -> None:
    s = UpperSession(last_comm=1)
    out = s.receive_data(encode_frame(VmcFrame(0x21, 3, b"\x01\x00\x00\x00\x64")), 0.0)
    assert out.send == ACK_FRAME
    (ev,) = events_of(out, Received)
    assert isinstance(ev.message, Undecodable) and ev.message.command == 0x21
    out = s.receive_data(encode_frame(VmcFrame(0x04, 4, b"\x02\x0b")), 0.1)  # LEN 3
    (ev,) = events_of(out, Received)
    assert isinstance(ev.message, Undecodable)
    assert s.stats.undecodable == 2


def test_check_selection_result_is_reported() -> None:
    s = UpperSession(last_comm=1)
    s.queue(CheckSelection(11))
    s.receive_data(POLL_FRAME, 0.0)
    out = s.receive_data(ACK_FRAME + encode(SelectionStatus(0x02, 11), 0x30), 0.01)
    assert out.send == ACK_FRAME
    assert [type(e) for e in out.events] == [CommandAcked, Received]
    msg = out.events[1].message  # type: ignore[union-attr]
    assert isinstance(msg, SelectionStatus) and not msg.sellable


def test_comm_numbers_wrap_and_skip_zero() -> None:
    s = UpperSession(last_comm=254)
    got = []
    for i in range(3):
        q = s.queue(SelectToBuy(1))
        got.append(q.comm)
        s.receive_data(POLL_FRAME, i)
        s.receive_data(ACK_FRAME, i + 0.01)
    assert got == [255, 1, 2]
    assert s.last_comm == 2


@FAST
@given(st.integers(1, 255), st.integers(0, 40))
def test_restart_never_reuses_the_last_number(last: int, cancelled: int) -> None:
    s = UpperSession(last_comm=last)
    for _ in range(cancelled % 32):
        s.cancel(s.queue(SelectToBuy(1)).handle)
    assert s.queue(SelectToBuy(1)).comm != last
    # and a restarted session continues after what the first one assigned
    s2 = UpperSession(last_comm=s.last_comm)
    first = s2.queue(SelectToBuy(2)).comm
    assert first == next_comm(s.last_comm)
    assert first != s.last_comm


def test_unknown_last_number_burns_one_on_info_sync() -> None:
    s = UpperSession(last_comm=None)
    vend = s.queue(SelectToBuy(11))
    out = s.receive_data(POLL_FRAME, 0.0)
    assert out.send == encode(InfoSync(), 1)  # harmless if the VMC ignores number 1
    s.receive_data(ACK_FRAME, 0.01)
    assert s.receive_data(POLL_FRAME, 0.2).send == encode(SelectToBuy(11), vend.comm)
    assert vend.comm == 2


def test_output_reports_last_comm_for_persistence() -> None:
    s = UpperSession(last_comm=40)
    out = s.receive_data(encode(InfoSync(), 7), 0.0)  # VMC asks for a sync
    assert out.last_comm == 41  # the automatic answer already has its number
    assert s.receive_data(POLL_FRAME, 0.2).send == encode(InfoSync(), 41)


def test_vmc_sync_gives_up_awaiting_vend_instead_of_resending() -> None:
    s = UpperSession(last_comm=1)
    q = s.queue(SelectToBuy(11))
    s.receive_data(POLL_FRAME, 0.0)  # sent, no ACK
    out = s.receive_data(encode(InfoSync(), 1), 0.1)  # the VMC rebooted?
    assert out.send == ACK_FRAME
    given = events_of(out, CommandGivenUp)
    assert given == [CommandGivenUp(q.handle, 2, SelectToBuy(11), 1, GiveUpReason.VMC_RESYNC)]
    assert s.receive_data(POLL_FRAME, 0.3).send == encode(InfoSync(), 3)  # not the vend


def test_silence_gives_up_and_reports() -> None:
    s = UpperSession(last_comm=1)
    q = s.queue(SelectToBuy(11))
    s.receive_data(POLL_FRAME, 0.0)
    assert s.tick(2.0).events == ()
    out = s.tick(3.5)
    assert out.events == (
        VmcSilent(0.0),
        CommandGivenUp(q.handle, 2, SelectToBuy(11), 1, GiveUpReason.VMC_SILENT),
    )
    assert s.tick(4.0).events == ()  # reported once
    out = s.receive_data(POLL_FRAME, 10.0)
    assert out.events == (VmcResumed(10.0),)
    assert out.send == ACK_FRAME  # the vend is not resent


def test_long_gap_before_next_poll_gives_up_without_tick() -> None:
    s = UpperSession(last_comm=1)
    s.queue(SelectToBuy(11))
    s.receive_data(POLL_FRAME, 0.0)
    out = s.receive_data(POLL_FRAME, 5.0)
    assert events_of(out, CommandGivenUp)[0].reason is GiveUpReason.VMC_SILENT
    assert out.send == ACK_FRAME


def test_tick_flushes_stale_partial_frame_and_answers() -> None:
    s = UpperSession(last_comm=1)
    assert s.receive_data(b"\xfa\xfb\x04\x1e" + POLL_FRAME, 0.0).send == b""
    assert s.tick(0.01).send == b""  # not idle long enough
    assert s.tick(0.03).send == ACK_FRAME


def test_cancel_only_before_sending() -> None:
    s = UpperSession(last_comm=1)
    a = s.queue(SelectToBuy(1))
    b = s.queue(SelectToBuy(2))
    assert s.cancel(b.handle)
    assert s.queued == (a.handle,)
    s.receive_data(POLL_FRAME, 0.0)
    assert not s.cancel(a.handle)  # it left: it may have reached the VMC
    assert s.awaiting_ack == a.handle


def test_queue_rejects_vmc_messages_and_overflow() -> None:
    s = UpperSession(last_comm=1, config=SessionConfig(max_queue=2))
    with pytest.raises(BadValue):
        s.queue(DispensingStatus(2, 1))  # type: ignore[arg-type]
    s.queue(SelectToBuy(1))
    s.queue(SelectToBuy(2))
    with pytest.raises(BadValue):
        s.queue(SelectToBuy(3))


def test_malformed_poll_is_not_answered() -> None:
    s = UpperSession(last_comm=1)
    # 0x41 with LEN 1 is a false start for the receiver
    out = s.receive_data(encode_frame(VmcFrame(0x41, 1)), 0.0)
    assert out.send == b""
    assert s.decoder.false_starts == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["ack", "lose_cmd", "lose_ack"]), min_size=1, max_size=30))
def test_session_against_lossy_vmc(script: list[str]) -> None:
    """A model VMC that deduplicates by number: each command runs at most once, and every
    command is either ACKed or given up, never both, never neither."""
    s = UpperSession(last_comm=200)
    handles = [s.queue(SelectToBuy(i + 1)).handle for i in range(min(len(script), 30))]
    vmc_last: int | None = None
    runs: dict[int, int] = {}
    t = 0.0
    settled: dict[int, str] = {}
    for step in script + ["ack"] * 8 * len(handles):
        out = s.receive_data(POLL_FRAME, t)
        for e in out.events:
            if isinstance(e, CommandGivenUp | CommandAcked):
                assert e.handle not in settled
                settled[e.handle] = type(e).__name__
        t += 0.01
        if out.send != ACK_FRAME and step != "lose_cmd":
            dec = VmcFrameDecoder()
            dec.feed(out.send)
            (frame,) = dec.frames()
            if frame.comm != vmc_last:
                vmc_last = frame.comm
                msg = decode_message(frame)
                assert isinstance(msg, SelectToBuy)
                runs[msg.selection] = runs.get(msg.selection, 0) + 1
            if step != "lose_ack":
                for e in s.receive_data(ACK_FRAME, t).events:
                    assert isinstance(e, CommandAcked) and e.handle not in settled
                    settled[e.handle] = "CommandAcked"
        t += 0.19
    assert all(n == 1 for n in runs.values())
    assert set(settled) == set(handles)
    for h, verdict in settled.items():
        if verdict == "CommandAcked":
            assert runs.get(h) == 1  # handle i+1 queued selection i+1


def test_pending_finds_a_command_on_its_way_and_cancel_keeps_it_from_ever_leaving() -> None:
    """The driver waits for a sync or question already queued or awaiting its ACK instead of
    adding another, and withdraws an unanswered one that never left (docs/boards/vmc.md 3.2)."""
    s = UpperSession(None)  # queues its own start sync
    sync = s.pending(InfoSync)
    assert sync is not None and s.pending(InfoSync()) == sync
    q = s.queue(CheckSelection(5))
    assert s.pending(CheckSelection(5)) == q.handle and s.pending(CheckSelection(6)) is None
    assert s.receive_data(POLL_FRAME, 0.0).send[2] == v.VmcCommand.INFO_SYNC
    assert s.pending(InfoSync) == sync  # awaiting its ACK: still on its way
    s.receive_data(ACK_FRAME, 0.01)
    assert s.pending(InfoSync) is None
    assert s.cancel(q.handle) and s.pending(CheckSelection) is None
    assert s.receive_data(POLL_FRAME, 0.2).send == ACK_FRAME  # the withdrawn one never leaves
