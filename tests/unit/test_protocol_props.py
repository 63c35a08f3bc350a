"""Property-based tests for kiosk.hardware.protocol (hypothesis)."""

from __future__ import annotations

import contextlib
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from kiosk.hardware import protocol as p
from kiosk.hardware.protocol import (
    Ack,
    BoardReset,
    CabinetKind,
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
    ProtocolError,
    Reset,
    ResetReason,
    SlotGroup,
    Status,
    StatusReply,
    TemperatureEvent,
    TemperatureReason,
    TestSlot,
    TxReply,
    UnlockRequest,
    VendRequest,
    VendResult,
    WireSlotKind,
    crc16_ccitt_false,
    decode_message,
    encode,
)

FAST = settings(max_examples=150, deadline=None)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
slot = st.integers(0, 0xFFFE)
tx = st.integers(1, 0xFFFF_FFFF)
ascii_str = st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=32)
bitmap_set = st.frozensets(st.integers(0, 799), max_size=20)

messages: st.SearchStrategy[Message] = st.one_of(
    st.just(Ping()),
    st.just(Status()),
    st.just(Reset()),
    st.just(Poll()),
    st.just(Ack()),
    st.builds(Identify, u8, st.booleans()),
    st.builds(VendRequest, slot, tx),
    st.builds(UnlockRequest, slot, tx),
    st.builds(TestSlot, slot, tx),
    st.builds(OutcomeQuery, tx),
    st.builds(Nak, st.sampled_from(ErrorCode), u8),
    st.builds(TxReply, u32, u16, st.sampled_from(Outcome)),
    st.builds(OutcomeReply, u32, u16, st.sampled_from(Outcome)),
    st.builds(VendResult, u32, u16, st.sampled_from(Outcome)),
    st.builds(DoorEvent, u16, st.booleans()),
    st.builds(
        TemperatureEvent,
        st.integers(-0x8000, 0x7FFF),
        st.sampled_from(TemperatureReason),
    ),
    st.builds(FaultEvent, st.sampled_from(FaultCode), st.booleans(), u16),
    st.builds(BoardReset, st.sampled_from(ResetReason), st.booleans(), u32),
    st.builds(
        StatusReply,
        st.booleans(),
        st.booleans(),
        st.none() | st.integers(-0x7FFF, 0x7FFF),
        st.builds(FaultFlags, u16),
        u32,
        bitmap_set,
        st.none() | bitmap_set,
    ),
    st.builds(
        IdentifyReply,
        u8,
        st.tuples(u8, u8, u8),
        st.sampled_from(CabinetKind),
        st.builds(IdentifyFlags, st.integers(0, 7)),
        u16,
        ascii_str,
        ascii_str,
        st.lists(st.builds(SlotGroup, u16, u16, st.sampled_from(WireSlotKind)), max_size=10).map(
            tuple
        ),
    ),
)

addressed = st.tuples(u8, u8, messages)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for c in [*points, len(data)]:
        out.append(data[prev:c])
        prev = c
    return out


def decode_all(chunks: list[bytes]) -> tuple[list[tuple[int, int, Message]], FrameDecoder]:
    dec = FrameDecoder()
    got: list[tuple[int, int, Message]] = []
    for chunk in chunks:
        dec.feed(chunk)
        assert dec.buffered < p.MAX_FRAME
        got.extend((f.address, f.seq, decode_message(f)) for f in dec.frames())
    return got, dec


def crc_reference(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


@FAST
@given(st.binary(max_size=300))
def test_crc_matches_bitwise_reference(data: bytes) -> None:
    assert crc16_ccitt_false(data) == crc_reference(data)


@FAST
@given(addressed)
def test_round_trip(item: tuple[int, int, Message]) -> None:
    address, seq, msg = item
    wire = encode(address, seq, msg)
    assert len(wire) <= p.MAX_FRAME
    got, _ = decode_all([wire])
    assert got == [item]


@FAST
@given(st.lists(addressed, max_size=20), st.lists(st.integers(0, 10_000), max_size=30))
def test_arbitrary_chunking(items: list[tuple[int, int, Message]], cuts: list[int]) -> None:
    stream = b"".join(encode(a, s, m) for a, s, m in items)
    got, dec = decode_all(split(stream, cuts))
    assert got == items
    assert dec.crc_errors == dec.bytes_discarded == 0


no_sync_garbage = st.binary(max_size=60).map(lambda b: b.replace(b"\x7e", b"\x7d"))


@FAST
@given(
    st.lists(st.tuples(no_sync_garbage, addressed), max_size=12),
    no_sync_garbage,
    st.lists(st.integers(0, 10_000), max_size=20),
)
def test_garbage_without_sync_never_hides_a_frame(
    parts: list[tuple[bytes, tuple[int, int, Message]]],
    tail: bytes,
    cuts: list[int],
) -> None:
    stream = b"".join(g + encode(*item) for g, item in parts) + tail
    got, dec = decode_all(split(stream, cuts))
    assert got == [item for _, item in parts]
    assert dec.bytes_discarded == sum(len(g) for g, _ in parts) + len(tail)
    assert dec.buffered == 0


@FAST
@given(
    st.lists(st.binary(max_size=80), min_size=1, max_size=6),
    st.lists(addressed, min_size=1, max_size=8),
    st.lists(st.integers(0, 10_000), max_size=20),
)
def test_garbage_with_sync_bytes_then_gap(
    garbage: list[bytes], items: list[tuple[int, int, Message]], cuts: list[int]
) -> None:
    """Garbage full of sync bytes, an idle gap, then good frames: all found."""
    noise = b"\x7e".join(garbage)  # plenty of false sync bytes
    dec = FrameDecoder()
    junk: list[Frame] = []
    for chunk in split(noise, cuts):
        dec.feed(chunk)
        junk.extend(dec.frames())  # garbage may accidentally hold a frame
    # Idle line: abandon partial frames, as the spec's 20 ms gap rule says.
    while dec.buffered:
        dec.timeout()
        junk.extend(dec.frames())
    stream = b"".join(encode(*i) for i in items)
    got: list[tuple[int, int, Message]] = []
    for chunk in split(stream, cuts):
        dec.feed(chunk)
        got.extend((f.address, f.seq, decode_message(f)) for f in dec.frames())
    assert got == items


@FAST
@given(
    st.lists(st.binary(max_size=80), max_size=6),
    st.lists(addressed, min_size=1, max_size=8),
)
def test_garbage_with_sync_bytes_no_gap_keeps_all_frames_once_flushed(
    garbage: list[bytes], items: list[tuple[int, int, Message]]
) -> None:
    """Without a gap, frames after sync-laden garbage are still all found
    (possibly after the idle timeout), in order, as a suffix of the output."""
    wires = [encode(*i) for i in items]
    stream = b"\x7e".join(garbage) + b"".join(wires)
    dec = FrameDecoder()
    dec.feed(stream)
    frames = list(dec.frames())
    while dec.buffered:
        dec.timeout()
        frames.extend(dec.frames())
    expected = [Frame(a, s, m.CODE, w[5:-2]) for (a, s, m), w in zip(items, wires, strict=True)]
    assert frames[len(frames) - len(expected) :] == expected


@FAST
@given(
    st.lists(addressed, min_size=1, max_size=10),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 7)), min_size=1, max_size=8),
    st.lists(st.integers(0, 10_000), max_size=20),
)
def test_bit_flips_never_crash_and_rest_survives(
    items: list[tuple[int, int, Message]],
    flips: list[tuple[int, int]],
    cuts: list[int],
) -> None:
    wires = [encode(*i) for i in items]
    stream = bytearray(b"".join(wires))
    for pos, bit in flips:
        stream[pos % len(stream)] ^= 1 << bit
    dec = FrameDecoder()
    frames: list[Frame] = []
    for chunk in split(bytes(stream), cuts):
        dec.feed(chunk)
        assert dec.buffered < p.MAX_FRAME
        frames.extend(dec.frames())
    while dec.buffered:
        dec.timeout()
        frames.extend(dec.frames())
    # Every frame that comes out has a valid CRC by construction; frames whose
    # bytes were not touched must all come out (flip positions bound them).
    touched = {pos % len(stream) for pos, _ in flips}
    offset = 0
    intact: list[bytes] = []
    for w in wires:
        if not touched & set(range(offset, offset + len(w))):
            intact.append(w)
        offset += len(w)
    out = [p.encode_frame(f) for f in frames]
    for w in intact:
        assert w in out
    for f in frames:  # decode may reject, but never crash with anything else
        with contextlib.suppress(ProtocolError):
            decode_message(f)


@FAST
@given(addressed, st.integers(1, 50))
def test_truncation_never_yields_frame(item: tuple[int, int, Message], cut: int) -> None:
    wire = encode(*item)
    dec = FrameDecoder()
    dec.feed(wire[: max(0, len(wire) - cut)])
    assert dec.next_frame() is None
    while dec.buffered:
        dec.timeout()
        assert dec.next_frame() is None


@FAST
@given(st.binary(min_size=0, max_size=3000), st.lists(st.integers(0, 10_000), max_size=30))
def test_random_bytes_bounded_buffer(data: bytes, cuts: list[int]) -> None:
    dec = FrameDecoder()
    for chunk in split(data, cuts):
        dec.feed(chunk)
        assert dec.buffered < p.MAX_FRAME
        for f in dec.frames():
            with contextlib.suppress(ProtocolError):
                decode_message(f)


@FAST
@given(st.integers(p.MAX_PAYLOAD + 1, 255), addressed)
def test_absurd_length_skipped(length: int, item: tuple[int, int, Message]) -> None:
    dec = FrameDecoder()
    dec.feed(bytes([p.SYNC, 0, length, 0, 0]) + encode(*item))
    got = [(f.address, f.seq, decode_message(f)) for f in dec.frames()]
    assert got == [item]
    assert dec.oversize >= 1


# --------------------------------------------------------------------------
# Stop-and-wait link over a lossy channel
# --------------------------------------------------------------------------


class Board:
    """Minimal board: duplicate-seq cache plus tx outcome memory."""

    def __init__(self, address: int) -> None:
        self.address = address
        self.decoder = FrameDecoder()
        self.last_request: bytes | None = None
        self.last_response = b""
        self.outcomes: dict[int, tuple[int, Outcome]] = {}
        self.executions: dict[int, int] = {}

    def receive(self, data: bytes) -> list[bytes]:
        self.decoder.feed(data)
        self.decoder.timeout()  # each delivery is one burst followed by a gap
        out: list[bytes] = []
        for frame in self.decoder.frames():
            if frame.address != self.address:
                continue
            raw = p.encode_frame(frame)
            if raw == self.last_request:
                out.append(self.last_response)
                continue
            msg = decode_message(frame)
            reply: Message
            if isinstance(msg, VendRequest):
                known = self.outcomes.get(msg.tx)
                if known is None:
                    self.executions[msg.tx] = self.executions.get(msg.tx, 0) + 1
                    self.outcomes[msg.tx] = (msg.slot, Outcome.DELIVERED)
                    reply = TxReply(msg.tx, msg.slot, Outcome.ACCEPTED)
                elif known[0] != msg.slot:
                    reply = TxReply(msg.tx, msg.slot, Outcome.TX_CONFLICT)
                else:
                    reply = TxReply(msg.tx, msg.slot, known[1])
            else:
                reply = Nak(ErrorCode.UNKNOWN_COMMAND, frame.command)
            self.last_request = raw
            self.last_response = encode(self.address, frame.seq, reply)
            out.append(self.last_response)
        return out


class LossyLink(RuleBasedStateMachine):
    ADDRESS = 2

    @initialize(seq=u8)
    def setup(self, seq: int) -> None:
        self.board = Board(self.ADDRESS)
        self.decoder = FrameDecoder()
        self.seq = seq
        self.next_tx = 1000
        self.queue: list[VendRequest] = []
        self.outstanding: tuple[int, VendRequest, bytes] | None = None
        self.to_board: list[bytes] = []
        self.to_host: list[bytes] = []
        self.answered: dict[int, Outcome] = {}
        self.issued: list[int] = []

    # host side ------------------------------------------------------------
    def _send_next(self) -> None:
        if self.outstanding is None and self.queue:
            msg = self.queue.pop(0)
            self.seq = (self.seq + 1) & 0xFF
            wire = encode(self.ADDRESS, self.seq, msg)
            self.outstanding = (self.seq, msg, wire)
            self.to_board.append(wire)

    @rule(slot=st.integers(0, 20))
    def new_sale(self, slot: int) -> None:
        self.next_tx += 1
        self.issued.append(self.next_tx)
        self.queue.append(VendRequest(slot, self.next_tx))
        self._send_next()

    @precondition(lambda self: self.outstanding is not None)
    @rule()
    def retransmit_timeout(self) -> None:
        assert self.outstanding is not None
        self.to_board.append(self.outstanding[2])  # same seq, same bytes

    @precondition(lambda self: self.outstanding is not None)
    @rule(new_seq=u8)
    def host_restart(self, new_seq: int) -> None:
        """Host reboots: forgets seq, resends the in-flight tx as a new request."""
        assert self.outstanding is not None
        _, msg, _ = self.outstanding
        self.outstanding = None
        self.decoder = FrameDecoder()
        self.to_host.clear()  # the reboot outlasts every frame in flight
        self.to_board.clear()
        self.seq = new_seq
        self.queue.insert(0, msg)
        self._send_next()

    def _host_receive(self, data: bytes) -> None:
        self.decoder.feed(data)
        self.decoder.timeout()
        for frame in self.decoder.frames():
            if self.outstanding is None or frame.seq != self.outstanding[0]:
                continue  # stale duplicate response
            msg = decode_message(frame)
            assert isinstance(msg, TxReply)
            if msg.tx != self.outstanding[1].tx:
                continue  # stale answer that happens to share the seq
            assert msg.outcome in (Outcome.ACCEPTED, Outcome.DELIVERED)
            self.answered[msg.tx] = msg.outcome
            self.outstanding = None
            self._send_next()

    # channel ---------------------------------------------------------------
    @precondition(lambda self: bool(self.to_board))
    @rule(lose=st.booleans(), corrupt=st.integers(-1, 40))
    def deliver_to_board(self, lose: bool, corrupt: int) -> None:
        data = bytearray(self.to_board.pop(0))
        if lose:
            return
        if 0 <= corrupt < len(data):
            data[corrupt] ^= 0x10
        self.to_host.extend(self.board.receive(bytes(data)))

    @precondition(lambda self: bool(self.to_host))
    @rule(lose=st.booleans(), corrupt=st.integers(-1, 40))
    def deliver_to_host(self, lose: bool, corrupt: int) -> None:
        data = bytearray(self.to_host.pop(0))
        if lose:
            return
        if 0 <= corrupt < len(data):
            data[corrupt] ^= 0x10
        self._host_receive(bytes(data))

    @invariant()
    def at_most_once(self) -> None:
        assert all(n == 1 for n in self.board.executions.values())

    def teardown(self) -> None:
        # Keep going over a channel that loses half the frames: everything
        # must complete, each tx executed exactly once.
        rng = random.Random(1234)
        for _ in range(2000):
            if self.outstanding is None and not self.queue:
                break
            if self.outstanding is not None and not self.to_board and not self.to_host:
                self.retransmit_timeout()
            if self.to_board:
                data = self.to_board.pop(0)
                if rng.random() >= 0.5:
                    self.to_host.extend(self.board.receive(data))
            if self.to_host:
                data = self.to_host.pop(0)
                if rng.random() >= 0.5:
                    self._host_receive(data)
        assert self.outstanding is None and not self.queue
        assert set(self.answered) == set(self.issued)
        assert all(self.board.executions.get(t) == 1 for t in self.issued)


LossyLink.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLossyLink = LossyLink.TestCase
