"""Tests for kiosk.hardware.link over a real OS pty, with a minimal board peer built on the codec.

The peer (``PtyPeer``) is deliberately small: it answers IDENTIFY / STATUS / PING / VEND / UNLOCK /
TEST_SLOT / OUTCOME / POLL per docs/serial-protocol.md, keeps the duplicate cache and the outcome
memory, and has a few fault knobs. It is not the board emulator (kiosk/sim), which these tests
must not depend on. It lives in tests/support/board_peer.py (test_board.py uses it too).
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import resource
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.hardware.link import (
    LinkClosed,
    LinkOffline,
    LinkTimeout,
    RttEstimator,
    SerialLink,
)
from kiosk.hardware.protocol import (
    Ack,
    Command,
    DoorEvent,
    ErrorCode,
    Frame,
    FrameDecoder,
    Identify,
    IdentifyReply,
    Nak,
    Outcome,
    Ping,
    Status,
    StatusReply,
    TxReply,
    VendRequest,
    VendResult,
    decode_message,
    encode,
    encode_frame,
)
from tests.support.board_peer import FAST, WAIT, PtyPeer, Recorder, wait_until


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[PtyPeer]:
    p = PtyPeer(tmp_path / "board")
    yield p
    p.close()


@contextlib.contextmanager
def started(link: SerialLink) -> Iterator[SerialLink]:
    link.start()
    try:
        yield link
    finally:
        link.close()


def make_link(peer: PtyPeer, **kw: object) -> SerialLink:
    kw.setdefault("timing", FAST)
    return SerialLink(str(peer.path), addresses=tuple(peer.boards), **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- RTO (pure)


def test_rto_before_first_sample_is_initial() -> None:
    assert RttEstimator(0.25, 0.025, 5.0).rto == 0.25


def test_rto_follows_rfc6298_and_is_clamped() -> None:
    est = RttEstimator(0.25, 0.025, 5.0)
    est.sample(0.1)
    assert est.srtt == pytest.approx(0.1)
    assert est.rttvar == pytest.approx(0.05)
    assert est.rto == pytest.approx(0.3)
    est.sample(0.1)
    assert est.rttvar == pytest.approx(0.0375)
    for _ in range(200):
        est.sample(0.0001)
    assert est.rto == 0.025
    for _ in range(200):
        est.sample(60.0)
    assert est.rto == 5.0


# --------------------------------------------------------------------------- request/response


def test_request_response_and_counters(peer: PtyPeer) -> None:
    with started(make_link(peer, poll_events=False)) as link:
        assert wait_until(lambda: link.port_open)
        assert not link.online  # nothing has answered yet (no polling in this test)
        reply = link.request(0, Identify())
        assert isinstance(reply, IdentifyReply)
        assert reply.serial == "SN0000"
        status = link.request(0, Status())
        assert isinstance(status, StatusReply)
        assert status.temperature_dc == 45
        assert link.online
        c = link.counters()
        assert c["frames_sent"] >= 2
        assert c["frames_received"] >= 2
        assert c["protocol_violations"] == 0
        for key in ("retransmits", "crc_errors", "resyncs", "reconnects", "timeouts"):
            assert key in c


def test_retransmit_when_request_lost(peer: PtyPeer) -> None:
    peer.board.drop_requests[Command.STATUS] = 1
    with started(make_link(peer, poll_events=False)) as link:
        assert link.port_open or wait_until(lambda: link.port_open)
        assert isinstance(link.request(0, Status()), StatusReply)
        assert link.counters()["retransmits"] >= 1
        assert peer.board.commands(Command.STATUS) >= 2
        first, second = [f for f in peer.board.received if f.command == Command.STATUS][:2]
        assert first == second  # same SEQ, same bytes


def test_retransmit_when_reply_lost_executes_once(peer: PtyPeer) -> None:
    peer.board.drop_replies[Command.VEND] = 1
    with started(make_link(peer, poll_events=False)) as link:
        wait_until(lambda: link.port_open)
        link.request(0, Identify())
        reply = link.request(0, VendRequest(3, 777))
        assert reply == TxReply(777, 3, Outcome.ACCEPTED)
        assert link.counters()["retransmits"] >= 1
        assert peer.board.commands(Command.VEND) >= 2
        assert peer.board.executions[777] == 1


def test_link_timeout_when_board_silent(peer: PtyPeer) -> None:
    peer.board.silent = True
    states = Recorder()
    with started(make_link(peer, poll_events=False, on_state=states)) as link:
        wait_until(lambda: link.port_open)
        t0 = time.monotonic()
        with pytest.raises(LinkTimeout) as ei:
            link.request(0, Status())
        assert time.monotonic() - t0 < 3.0
        assert ei.value.transmissions == FAST.max_transmissions
        assert peer.board.commands(Command.STATUS) == FAST.max_transmissions
        c = link.counters()
        assert c["timeouts"] == 1
        assert c["retransmits"] == FAST.max_transmissions - 1
        assert link.board_answering(0) is False
        # the board comes back: the next request works
        peer.board.silent = False
        assert isinstance(link.request(0, Status()), StatusReply)
        assert link.board_answering(0) is True


def test_request_to_unknown_address_or_non_request_is_rejected(peer: PtyPeer) -> None:
    link = make_link(peer)
    with pytest.raises(ValueError):
        link.request(5, Status())
    with pytest.raises(ValueError):
        link.request(0, Ack())


def test_request_before_port_open_raises_offline(tmp_path: Path) -> None:
    link = SerialLink(str(tmp_path / "nothing-here"), timing=FAST)
    with started(link):
        with pytest.raises(LinkOffline):
            link.request(0, Status())
        assert not link.wait_online(0.3)
        assert "nothing-here" in link.last_error


def test_concurrent_requests_are_serialized(peer: PtyPeer) -> None:
    errors: list[BaseException] = []
    with started(make_link(peer)) as link:
        assert link.wait_online(WAIT)

        def worker() -> None:
            try:
                for _ in range(15):
                    assert isinstance(link.request(0, Status()), StatusReply)
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT * 2)
        assert not errors
        assert link.counters()["protocol_violations"] == 0


# --------------------------------------------------------------------------- events


def test_poll_delivers_events_to_callback(peer: PtyPeer) -> None:
    events = Recorder()
    with peer.lock:
        peer.board.events.append(DoorEvent(11, True))
        peer.board.events.append(DoorEvent(11, False))
    with started(make_link(peer, on_event=events)) as link:
        assert events.wait_for(lambda calls: len(calls) >= 2)
        assert events.calls[:2] == [(0, DoorEvent(11, True)), (0, DoorEvent(11, False))]
        assert link.counters()["events"] >= 2
        assert wait_until(lambda: not peer.board.events)


def test_pushed_event_is_acked_and_deduplicated(peer: PtyPeer) -> None:
    events = Recorder()
    with started(make_link(peer, poll_events=False, on_event=events)) as link:
        wait_until(lambda: link.port_open)
        frame = encode(0, 0x41, VendResult(0x12345678, 11, Outcome.DELIVERED))
        peer.send_raw(frame)
        assert events.wait_for(lambda calls: len(calls) == 1)
        peer.send_raw(frame)  # the board did not see our ACK and repeats the event
        assert wait_until(lambda: link.counters()["duplicate_events"] == 1)

        def acks() -> list[Frame]:
            return [f for f in peer.board.received if f.command == Command.ACK]

        # the link counts the duplicate before its second ACK has crossed the pty: wait for it
        assert wait_until(lambda: len(acks()) >= 2)
        assert len(acks()) == 2
        assert all(f.seq == 0x41 for f in acks())
        assert events.calls == [(0, VendResult(0x12345678, 11, Outcome.DELIVERED))]


def test_undecodable_pushed_event_is_nakked_and_counted(peer: PtyPeer) -> None:
    with started(make_link(peer, poll_events=False)) as link:
        wait_until(lambda: link.port_open)
        peer.send_raw(encode_frame(Frame(0, 7, Command.DOOR, b"\x01")))  # too short
        assert wait_until(lambda: link.counters()["protocol_violations"] == 1)
        assert wait_until(lambda: any(f.command == Command.NAK for f in peer.board.received))
        nak = next(f for f in peer.board.received if f.command == Command.NAK)
        assert nak.seq == 7
        assert decode_message(nak) == Nak(ErrorCode.BAD_LENGTH, Command.DOOR)


# --------------------------------------------------------------------------- bad input


def test_garbage_between_frames_never_breaks_requests(peer: PtyPeer) -> None:
    rnd = random.Random(1234)

    def garbage() -> bytes:
        n = rnd.randrange(0, 40)
        data = bytearray(rnd.randrange(256) for _ in range(n))
        if n and rnd.random() < 0.5:
            data[rnd.randrange(n)] = 0x7E  # false sync bytes are the nasty case
        return bytes(data)

    peer.board.garbage = garbage
    with started(make_link(peer)) as link:
        assert link.wait_online(WAIT)
        for _ in range(40):
            assert isinstance(link.request(0, Status()), StatusReply)
        c = link.counters()
        assert c["resyncs"] > 0
        assert c["bytes_discarded"] > 0


def test_unexpected_frames_are_counted_not_fatal(peer: PtyPeer) -> None:
    with started(make_link(peer, poll_events=False)) as link:
        wait_until(lambda: link.port_open)
        assert isinstance(link.request(0, Status()), StatusReply)
        peer.send_raw(encode(9, 1, Ack()))  # unknown address
        peer.send_raw(encode_frame(Frame(0, 200, Command.STATUS_REPLY, b"\x00")))  # nobody asked
        peer.send_raw(encode(0, 3, Status()))  # a request code from the board
        assert wait_until(lambda: link.counters()["protocol_violations"] == 3)
        assert isinstance(link.request(0, Status()), StatusReply)


@dataclass(frozen=True)
class RawEvent:
    """An event this host does not know (say, from newer firmware)."""

    CODE: int
    data: bytes = b""

    def payload(self) -> bytes:
        return self.data


def test_undecodable_poll_answer_fails_that_poll_and_moves_on(peer: PtyPeer) -> None:
    events = Recorder()
    with peer.lock:
        peer.board.events.append(RawEvent(0xC7, b"\x01"))  # type: ignore[arg-type]
        peer.board.events.append(DoorEvent(11, True))
    with started(make_link(peer, on_event=events)) as link:
        assert events.wait_for(lambda calls: (0, DoorEvent(11, True)) in calls)
        assert link.counters()["protocol_violations"] == 1
        assert link.board_answering(0) is True
        assert link.online


def test_poll_whose_answers_were_all_lost_is_repeated_with_the_same_seq(peer: PtyPeer) -> None:
    # Spec 6.2: the board drops a handed-out event once it sees a *new* request. If every answer
    # to a POLL was lost, asking with a fresh SEQ would lose the event; the link repeats the POLL.
    events = Recorder()
    with peer.lock:
        peer.board.events.append(DoorEvent(10, True))
        peer.board.drop_replies[Command.POLL] = FAST.max_transmissions
    with started(make_link(peer, on_event=events)) as link:
        assert events.wait_for(lambda calls: (0, DoorEvent(10, True)) in calls)
        assert link.counters()["timeouts"] >= 1
        polls = [f for f in peer.board.received if f.command == Command.POLL]
        assert len(polls) > FAST.max_transmissions
        assert len(set(polls[: FAST.max_transmissions + 1])) == 1  # lost ones, then the repeat
        assert events.calls.count((0, DoorEvent(10, True))) == 1


class FakePort:
    """In-memory port: the test pushes rx bytes; writes are answered by ``responder``."""

    def __init__(self, responder: Callable[[bytes], bytes] | None = None) -> None:
        self.timeout: float | None = 0.1
        self.rx = bytearray()
        self.tx: list[bytes] = []
        self.cond = threading.Condition()
        self.responder = responder
        self.closed = False
        self.cancelled = False

    @property
    def in_waiting(self) -> int:
        with self.cond:
            return len(self.rx)

    def push(self, data: bytes) -> None:
        with self.cond:
            self.rx += data
            self.cond.notify_all()

    def read(self, size: int = 1) -> bytes:
        with self.cond:
            self.cond.wait_for(lambda: self.rx or self.closed or self.cancelled, self.timeout)
            self.cancelled = False
            out = bytes(self.rx[:size])
            del self.rx[:size]
            return out

    def write(self, data: bytes) -> int:
        self.tx.append(data)
        if self.responder is not None:
            self.push(self.responder(data))
        return len(data)

    def cancel_read(self) -> None:
        with self.cond:
            self.cancelled = True
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


def _ack_everything(data: bytes) -> bytes:
    dec = FrameDecoder()
    dec.feed(data)
    return b"".join(encode(f.address, f.seq, Ack()) for f in dec.frames())


_frames = st.builds(
    lambda a, s, c, p: encode_frame(Frame(a, s, c, p)),
    st.sampled_from([0, 0, 0, 1, 0x7E]),
    st.integers(0, 255),
    st.one_of(st.sampled_from(list(Command)), st.integers(0, 255)),
    st.binary(max_size=12),
)
_chunks = st.lists(st.one_of(st.binary(max_size=40), _frames), max_size=12)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=_chunks)
def test_receive_path_never_raises(chunks: list[bytes]) -> None:
    port = FakePort()
    link = SerialLink("fake://", addresses=(0, 1), timing=FAST, port_factory=lambda: port)
    assert link._install(port)
    for chunk in chunks:
        link._receive(chunk)
    link._line_idle()
    c = link.counters()
    assert c["frames_received"] <= sum(len(x) for x in chunks) // 7 + 1
    link.close()


@settings(max_examples=40, deadline=None)
@given(noise=st.lists(st.binary(min_size=1, max_size=60), min_size=1, max_size=4))
def test_random_bytes_from_board_never_wedge_the_link(noise: list[bytes]) -> None:
    port = FakePort(responder=_ack_everything)
    link = SerialLink("fake://", timing=FAST, poll_events=False, port_factory=lambda: port)
    with started(link):
        assert wait_until(lambda: link.port_open)
        for chunk in noise:
            port.push(chunk)
        assert link.request(0, Ping()) == Ack()
        assert link.request(0, Ping()) == Ack()


# --------------------------------------------------------------------------- disconnects


def test_unplug_goes_offline_and_heals_on_replug(tmp_path: Path) -> None:
    path = tmp_path / "board"
    first = PtyPeer(path)
    states = Recorder()
    link = SerialLink(str(path), timing=FAST, on_state=states)
    second: PtyPeer | None = None
    try:
        with started(link):
            assert states.wait_for(lambda calls: calls[-1:] and calls[-1][0] is True)
            first.close()  # USB unplug / emulator killed
            assert states.wait_for(lambda calls: calls[-1][0] is False)
            assert not link.online
            with pytest.raises(LinkOffline):
                link.request(0, Status())
            second = PtyPeer(path)  # replugged: a new pty at the same path
            assert states.wait_for(lambda calls: len(calls) >= 3 and calls[-1][0] is True)
            assert [c[0] for c in states.calls] == [True, False, True]
            assert isinstance(link.request(0, Status()), StatusReply)
            c = link.counters()
            assert c["reconnects"] == 1
            assert c["disconnects"] == 1
    finally:
        first.close()
        if second is not None:
            second.close()


def test_offline_while_waiting_fails_the_request_fast(peer: PtyPeer) -> None:
    peer.board.silent = True
    slow = dataclasses.replace(FAST, rto_initial=2.0, rto_max=4.0)
    with started(make_link(peer, poll_events=False, timing=slow)) as link:
        wait_until(lambda: link.port_open)
        result: list[BaseException] = []

        def ask() -> None:
            try:
                link.request(0, Status())
            except BaseException as e:
                result.append(e)

        t = threading.Thread(target=ask)
        t0 = time.monotonic()
        t.start()
        assert wait_until(lambda: peer.board.commands(Command.STATUS) >= 1)
        peer.close()
        t.join(WAIT)
        assert time.monotonic() - t0 < 2.0
        assert len(result) == 1
        assert isinstance(result[0], LinkOffline)


def test_close_stops_threads_promptly_and_fails_requests(peer: PtyPeer) -> None:
    link = make_link(peer, timing=dataclasses.replace(FAST, idle_read_timeout=5.0))
    link.start()
    assert link.wait_online(WAIT)
    t0 = time.monotonic()
    link.close()
    assert time.monotonic() - t0 < 1.0
    assert not [t for t in threading.enumerate() if t.name.startswith("kiosk-link-")]
    with pytest.raises(LinkClosed):
        link.request(0, Status())
    link.close()  # idempotent


def test_idle_polling_uses_little_cpu(peer: PtyPeer) -> None:
    # Default (not scaled-down) poll timing: an idle kiosk must not burn CPU.
    with started(SerialLink(str(peer.path))) as link:
        assert link.wait_online(WAIT)
        before = resource.getrusage(resource.RUSAGE_SELF)
        time.sleep(1.0)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        polls = link.counters()["polls"]
    assert cpu < 0.25, f"idle link used {cpu:.3f} s CPU in 1 s"
    assert 3 <= polls <= 20


def test_fast_poll_polls_more_often(peer: PtyPeer) -> None:
    with started(SerialLink(str(peer.path))) as link:
        assert link.wait_online(WAIT)
        p0 = link.counters()["polls"]
        with link.fast_poll(0):
            time.sleep(0.6)
        fast = link.counters()["polls"] - p0
    assert fast >= 8  # 50 ms apart instead of 150 ms
