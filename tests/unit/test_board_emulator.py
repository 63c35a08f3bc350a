"""Board emulator core (kiosk.sim.board_emulator), driven sans-I/O with a manual clock.

Every exchange goes through the real codec: encode a request, feed it, decode what comes out.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kiosk.clock import ManualClock
from kiosk.hardware.protocol import (
    NO_SLOT,
    SERVICE_DOOR,
    Ack,
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
    UnlockRequest,
    VendRequest,
    VendResult,
    WireSlotKind,
    decode_message,
    encode,
    encode_frame,
)
from kiosk.sim.board_emulator import (
    MEMORY_SIZE,
    BoardModel,
    EmulatedBoard,
    Faults,
    PhysicalLog,
    read_physical_log,
)

SCALE = 0.01  # a 1.5-3 s motor turn takes 15-30 ms of (manual) time


class Host:
    """A minimal host: numbered requests, decoded answers, manual time."""

    def __init__(self, board: EmulatedBoard, clock: ManualClock) -> None:
        self.board = board
        self.clock = clock
        self.seq = 0
        self.decoder = FrameDecoder()

    def frames(self) -> list[Frame]:
        self.decoder.feed(self.board.read_output())
        return list(self.decoder.frames())

    def send_raw(self, raw: bytes) -> list[Message]:
        self.board.receive(raw)
        return [decode_message(f) for f in self.frames()]

    def send(self, msg: Message, seq: int | None = None) -> list[Message]:
        if seq is None:
            self.seq = (self.seq + 1) & 0xFF
            seq = self.seq
        return self.send_raw(encode(self.board.address, seq, msg))

    def ask(self, msg: Message) -> Message:
        answers = self.send(msg)
        assert len(answers) == 1, answers
        return answers[0]

    def identify(self, push: bool = False) -> IdentifyReply:
        reply = self.ask(Identify(1, push))
        assert isinstance(reply, IdentifyReply)
        return reply

    def events(self) -> list[Message]:
        """POLL until the board answers ACK; return the events in order."""
        out: list[Message] = []
        for _ in range(100):
            msg = self.ask(Poll())
            if isinstance(msg, Ack):
                return out
            out.append(msg)
        raise AssertionError("event queue never drained")

    def run(self, seconds: float, step: float = 0.005) -> list[Frame]:
        """Advance time in small steps, collecting every frame the board sends."""
        got: list[Frame] = []
        t = 0.0
        while t < seconds:
            self.clock.advance(step)
            t += step
            got += self.frames()
        return got

    def vend_result(self, tx: int, seconds: float = 1.0) -> Outcome:
        self.run(seconds)
        results = [e for e in self.events() if isinstance(e, VendResult) and e.tx == tx]
        assert len(results) == 1, results
        return results[0].outcome


def make(
    model: BoardModel | None = None, *, identify: bool = True, **kw: object
) -> tuple[EmulatedBoard, Host]:
    clock = ManualClock()
    faults = kw.pop("faults", None) or Faults(seed=7)
    board = EmulatedBoard(model, clock=clock, time_scale=SCALE, faults=faults, **kw)  # type: ignore[arg-type]
    host = Host(board, clock)
    if identify:
        host.identify()
        assert isinstance(host.events()[0], BoardReset)
    return board, host


# --------------------------------------------------------------------------
# handshake, status, NAKs
# --------------------------------------------------------------------------


def test_identify_describes_the_cabinet() -> None:
    _board, host = make(BoardModel.spiral(6, 10, stock=3, chilled=True), identify=False)
    reply = host.identify()
    assert reply.protocol_version == 1
    assert reply.cabinet == CabinetKind.SPIRAL
    assert reply.slots == (SlotGroup(0, 60, WireSlotKind.SPIRAL),)
    assert reply.outcome_memory == MEMORY_SIZE >= 64
    assert IdentifyFlags.CHILLED in reply.flags
    assert IdentifyFlags.PRESENCE_SENSING in reply.flags
    assert IdentifyFlags.NONVOLATILE_OUTCOMES not in reply.flags  # no memory file


def test_vend_before_identify_is_not_identified_and_first_event_is_board_reset() -> None:
    board, host = make(identify=False)
    assert host.ask(VendRequest(1, 10)) == Nak(ErrorCode.NOT_IDENTIFIED, Command.VEND)
    assert host.ask(UnlockRequest(1, 10)) == Nak(ErrorCode.NOT_IDENTIFIED, Command.UNLOCK)
    assert host.ask(TestSlot(1, 10)) == Nak(ErrorCode.NOT_IDENTIFIED, Command.TEST_SLOT)
    assert host.ask(OutcomeQuery(10)) == OutcomeReply(10, NO_SLOT, Outcome.UNKNOWN_TX)
    assert host.ask(Ping()) == Ack()
    assert host.events() == [BoardReset(ResetReason.POWER_ON, False, 0)]
    assert board.log.runs() == []


def test_naks_and_foreign_addresses() -> None:
    _board, host = make()
    assert host.send_raw(encode_frame(Frame(0, 9, 0x3F))) == [Nak(ErrorCode.UNKNOWN_COMMAND, 0x3F)]
    assert host.send_raw(encode_frame(Frame(0, 10, Command.VEND, b"\x01\x00"))) == [
        Nak(ErrorCode.BAD_LENGTH, Command.VEND)
    ]
    tx0 = b"\x01\x00\x00\x00\x00\x00"
    assert host.send_raw(encode_frame(Frame(0, 11, Command.VEND, tx0))) == [
        Nak(ErrorCode.BAD_VALUE, Command.VEND)
    ]
    assert host.send_raw(encode_frame(Frame(0, 12, Command.IDENTIFY, b"\x00\x00"))) == [
        Nak(ErrorCode.UNSUPPORTED_VERSION, Command.IDENTIFY)
    ]
    assert host.send_raw(encode_frame(Frame(0, 13, Command.IDENTIFY, b"\x01\x02"))) == [
        Nak(ErrorCode.BAD_VALUE, Command.IDENTIFY)
    ]
    # a response code sent to the board is not a request
    assert host.send_raw(encode(0, 14, TxReply(1, 1, Outcome.ACCEPTED))) == [
        Nak(ErrorCode.UNKNOWN_COMMAND, Command.TX_REPLY)
    ]
    assert host.send_raw(encode(3, 15, Ping())) == []  # not our address: silence


def test_status_reports_presence_doors_and_busy() -> None:
    board, host = make(BoardModel.spiral(2, 3, stock=1))
    board.set_stock(4, 0)
    status = host.ask(Status())
    assert isinstance(status, StatusReply)
    assert status.present == frozenset({0, 1, 2, 3, 5})
    assert status.temperature_dc is None and not status.busy
    assert host.ask(VendRequest(2, 77)) == TxReply(77, 2, Outcome.ACCEPTED)
    status = host.ask(Status())
    assert isinstance(status, StatusReply)
    assert status.busy and status.busy_tx == 77


def test_idle_gap_drops_a_partial_frame() -> None:
    board, host = make()
    board.receive(b"\x7e\x00\xf0")  # a false sync claiming a long payload, then silence
    host.clock.advance(0.05)
    assert host.send(Ping()) == [Ack()]


# --------------------------------------------------------------------------
# vending outcomes and the physical log
# --------------------------------------------------------------------------


def test_vend_delivered_decrements_stock_and_logs_one_motor_run() -> None:
    board, host = make(BoardModel.spiral(stock=2))
    assert host.ask(VendRequest(12, 1001)) == TxReply(1001, 12, Outcome.ACCEPTED)
    assert host.ask(OutcomeQuery(1001)) == OutcomeReply(1001, 12, Outcome.IN_PROGRESS)
    assert host.vend_result(1001) == Outcome.DELIVERED
    assert board.model.stock[12] == 1
    assert host.ask(OutcomeQuery(1001)) == OutcomeReply(1001, 12, Outcome.DELIVERED)
    (run,) = board.log.runs(1001)
    assert run["event"] == "motor_run" and run["slot"] == 12 and run["cmd"] == "VEND"
    assert run["result"] == "DELIVERED" and run["dropped"] is True


def test_motor_turn_takes_realistic_scaled_time() -> None:
    board, host = make()
    host.ask(VendRequest(0, 5))
    host.run(0.014)  # 1.5 s x 0.01 has not passed yet
    assert board.busy_tx == 5
    host.run(0.03)
    assert board.busy_tx == 0


def test_jammed_slot() -> None:
    board, host = make()
    board.set_fault("jammed", {3})
    host.ask(VendRequest(3, 20))
    assert host.vend_result(20) == Outcome.JAMMED
    assert board.model.stock[3] == 5
    assert board.log.runs(20)[0]["result"] == "JAMMED"


def test_blind_drop_sensor_reports_nothing_dropped_but_product_fell() -> None:
    board, host = make()
    board.set_fault("blind_drop_sensor", True)
    host.ask(VendRequest(4, 21))
    assert host.vend_result(21) == Outcome.NOTHING_DROPPED
    assert board.model.stock[4] == 4
    (run,) = board.log.runs(21)
    assert run["dropped"] is True and run["result"] == "NOTHING_DROPPED"
    board.set_fault("blind_drop_sensor", "7")  # one slot only
    host.ask(VendRequest(5, 22))
    assert host.vend_result(22) == Outcome.DELIVERED


def test_missing_motor() -> None:
    board, host = make()
    board.set_fault("missing_motor", "9")
    host.ask(TestSlot(9, 23))
    assert host.vend_result(23) == Outcome.MOTOR_MISSING
    assert board.model.stock[9] == 5
    assert board.log.runs(23)[0]["cmd"] == "TEST_SLOT"


def test_refusals_are_not_recorded() -> None:
    board, host = make(BoardModel.spiral(stock=1))
    board.set_stock(8, 0)
    assert host.ask(VendRequest(8, 30)) == TxReply(30, 8, Outcome.SLOT_EMPTY)
    assert host.ask(VendRequest(60, 31)) == TxReply(31, 60, Outcome.INVALID_SLOT)
    assert host.ask(UnlockRequest(1, 32)) == TxReply(32, 1, Outcome.WRONG_SLOT_KIND)
    board.set_door(SERVICE_DOOR, True)
    assert host.ask(VendRequest(1, 33)) == TxReply(33, 1, Outcome.REFUSED_FAULT)
    board.set_door(SERVICE_DOOR, False)
    assert host.events() == [DoorEvent(SERVICE_DOOR, True), DoorEvent(SERVICE_DOOR, False)]
    for tx in (30, 31, 32, 33):
        assert host.ask(OutcomeQuery(tx)) == OutcomeReply(tx, NO_SLOT, Outcome.UNKNOWN_TX)
    assert board.log.runs() == []
    # the host may retry a refused tx later
    board.set_stock(8, 2)
    assert host.ask(VendRequest(8, 30)) == TxReply(30, 8, Outcome.ACCEPTED)
    assert host.ask(VendRequest(1, 34)) == TxReply(34, 1, Outcome.BUSY)
    assert host.vend_result(30) == Outcome.DELIVERED


def test_same_tx_again_answers_from_memory_and_never_runs_twice() -> None:
    board, host = make()
    host.ask(VendRequest(12, 40))
    assert host.ask(VendRequest(12, 40)) == TxReply(40, 12, Outcome.IN_PROGRESS)
    assert host.vend_result(40) == Outcome.DELIVERED
    assert host.ask(VendRequest(12, 40)) == TxReply(40, 12, Outcome.DELIVERED)
    assert host.ask(VendRequest(13, 40)) == TxReply(40, 13, Outcome.TX_CONFLICT)
    assert host.ask(TestSlot(12, 40)) == TxReply(40, 12, Outcome.TX_CONFLICT)
    host.run(0.1)
    assert len(board.log.runs(40)) == 1
    assert board.model.stock[12] == 4


def test_duplicate_seq_resends_the_cached_response() -> None:
    board, host = make()
    raw = encode(0, 99, VendRequest(2, 41))
    board.receive(raw)
    first = host.frames()
    board.receive(raw)  # a retransmission: same SEQ, CMD, payload
    second = host.frames()
    assert first == second
    assert decode_message(second[0]) == TxReply(41, 2, Outcome.ACCEPTED)  # not IN_PROGRESS
    assert board.stats["duplicate_requests"] == 1
    host.run(0.1)
    assert len(board.log.runs(41)) == 1


def test_outcome_memory_holds_the_last_memory_size_txs() -> None:
    _board, host = make(BoardModel.spiral(stock=100))
    txs = range(1000, 1000 + MEMORY_SIZE + 10)
    for i, tx in enumerate(txs):
        assert host.ask(VendRequest(i % 60, tx)) == TxReply(tx, i % 60, Outcome.ACCEPTED)
        host.run(0.035, step=0.035)
    for tx in txs[-MEMORY_SIZE:]:
        reply = host.ask(OutcomeQuery(tx))
        assert isinstance(reply, OutcomeReply) and reply.outcome == Outcome.DELIVERED
    assert host.ask(OutcomeQuery(txs[0])) == OutcomeReply(txs[0], NO_SLOT, Outcome.UNKNOWN_TX)


# --------------------------------------------------------------------------
# events: poll mode and push mode
# --------------------------------------------------------------------------


def test_poll_event_is_removed_only_by_the_next_new_request() -> None:
    board, host = make()
    board.set_door(SERVICE_DOOR, True)
    raw = encode(0, 50, Poll())
    assert host.send_raw(raw) == [DoorEvent(SERVICE_DOOR, True)]
    assert host.send_raw(raw) == [DoorEvent(SERVICE_DOOR, True)]  # lost answer: same event
    frame = host.frames()
    assert frame == []
    assert host.send(Poll(), seq=51) == [Ack()]


def test_push_mode_sends_events_with_board_seq_and_retransmits_until_acked() -> None:
    _board, host = make(identify=False)
    answers = host.send(Identify(1, True))
    assert isinstance(answers[0], IdentifyReply)
    pushed = answers[1:] or [decode_message(f) for f in host.run(0.01)]
    assert pushed == [BoardReset(ResetReason.POWER_ON, False, 0)]
    again = host.run(0.25)  # no ACK within 200 ms: the same frame again
    assert len(again) == 1 and again[0].seq == 0 and again[0].command == Command.BOARD_RESET
    host.send_raw(encode(0, 0, Ack()))
    assert host.run(3.0) == []
    host.ask(VendRequest(1, 60))
    frames = host.run(0.1)  # the turn ends within 34 ms; the first retransmission is at 200 ms
    assert [(f.seq, decode_message(f)) for f in frames] == [
        (1, VendResult(60, 1, Outcome.DELIVERED))
    ]
    host.send_raw(encode(0, 1, Ack()))
    assert host.run(1.0) == []


# --------------------------------------------------------------------------
# resets and outcome memory persistence
# --------------------------------------------------------------------------


def test_reset_keep_memory_mid_vend_reports_interrupted() -> None:
    board, host = make()
    host.ask(VendRequest(6, 70))
    host.run(0.005)
    board.reset(lose_memory=False)
    assert board.busy_tx == 0
    host.clock.advance(0.01)  # boot time
    assert host.ask(VendRequest(6, 71)) == Nak(ErrorCode.NOT_IDENTIFIED, Command.VEND)
    assert host.events() == [BoardReset(ResetReason.WATCHDOG, True, 70)]
    host.identify()
    assert host.ask(OutcomeQuery(70)) == OutcomeReply(70, 6, Outcome.INTERRUPTED)
    assert host.ask(VendRequest(6, 70)) == TxReply(70, 6, Outcome.INTERRUPTED)
    host.run(0.1)
    (run,) = board.log.runs(70)
    assert run["result"] == "INTERRUPTED"


def test_reset_losing_memory_forgets_every_tx() -> None:
    board, host = make()
    host.ask(VendRequest(6, 80))
    assert host.vend_result(80) == Outcome.DELIVERED
    host.ask(VendRequest(7, 81))
    board.reset(lose_memory=True)
    host.clock.advance(0.01)
    assert host.events() == [BoardReset(ResetReason.WATCHDOG, False, 0)]
    host.identify()
    for tx in (80, 81):
        assert host.ask(OutcomeQuery(tx)) == OutcomeReply(tx, NO_SLOT, Outcome.UNKNOWN_TX)


def test_reset_mid_vend_fault_is_one_shot_and_product_fell() -> None:
    board, host = make(faults=Faults(seed=1, reset_mid_vend="keep"))
    host.ask(VendRequest(10, 90))
    host.run(0.05)
    assert board.faults.reset_mid_vend is None
    assert board.model.stock[10] == 4
    assert host.events() == [BoardReset(ResetReason.WATCHDOG, True, 90)]
    host.identify()
    assert host.ask(OutcomeQuery(90)) == OutcomeReply(90, 10, Outcome.INTERRUPTED)
    (run,) = board.log.runs(90)
    assert run["dropped"] is True
    host.ask(VendRequest(10, 91))
    assert host.vend_result(91) == Outcome.DELIVERED


def test_reset_command_acks_then_reboots() -> None:
    board, host = make()
    assert host.ask(Reset()) == Ack()
    host.run(0.02)
    assert host.events() == [BoardReset(ResetReason.COMMAND, True, 0)]
    assert not board.identified


def test_memory_file_survives_a_new_emulator_instance(tmp_path: Path) -> None:
    mem = tmp_path / "outcomes.json"
    _board, host = make(memory_file=mem)
    assert IdentifyFlags.NONVOLATILE_OUTCOMES in host.identify().flags
    host.ask(VendRequest(1, 100))
    assert host.vend_result(100) == Outcome.DELIVERED
    host.ask(VendRequest(2, 101))  # the process "dies" with this one IN_PROGRESS
    assert json.loads(mem.read_text())["entries"][-1]["outcome"] == Outcome.IN_PROGRESS

    board2, host2 = make(memory_file=mem, identify=False)
    host2.identify()
    assert host2.events() == [BoardReset(ResetReason.POWER_ON, True, 101)]
    assert host2.ask(OutcomeQuery(100)) == OutcomeReply(100, 1, Outcome.DELIVERED)
    assert host2.ask(OutcomeQuery(101)) == OutcomeReply(101, 2, Outcome.INTERRUPTED)
    assert host2.ask(VendRequest(1, 100)) == TxReply(100, 1, Outcome.DELIVERED)
    assert board2.log.runs() == []
    assert not list(tmp_path.glob("*.tmp"))


# --------------------------------------------------------------------------
# lockers
# --------------------------------------------------------------------------


def test_locker_unlock_door_opened_and_closed() -> None:
    board, host = make(BoardModel.locker(4, 6))
    assert host.ask(VendRequest(3, 200)) == TxReply(200, 3, Outcome.WRONG_SLOT_KIND)
    assert host.ask(UnlockRequest(3, 201)) == TxReply(201, 3, Outcome.ACCEPTED)
    host.run(0.2)
    assert host.events() == [
        DoorEvent(3, True),
        DoorEvent(3, False),
        VendResult(201, 3, Outcome.DOOR_OPENED_AND_CLOSED),
    ]
    assert board.model.stock[3] == 0
    assert host.ask(UnlockRequest(3, 202)) == TxReply(202, 3, Outcome.SLOT_EMPTY)
    (run,) = board.log.runs(201)
    assert run["event"] == "lock_pulse" and run["dropped"] is True


def test_locker_door_left_open() -> None:
    board, host = make(BoardModel.locker(), faults=Faults(seed=3, door_left_open=True))
    host.ask(UnlockRequest(5, 210))
    host.run(0.4)
    assert host.events() == [DoorEvent(5, True), VendResult(210, 5, Outcome.DOOR_NOT_CLOSED)]
    status = host.ask(Status())
    assert isinstance(status, StatusReply) and status.open_doors == frozenset({5})
    board.set_door(5, False)  # a person closes it later
    assert host.events() == [DoorEvent(5, False)]


def test_locker_door_not_opened_and_lock_failed() -> None:
    board, host = make(BoardModel.locker(), faults=Faults(seed=3, door_not_opened=True))
    host.ask(UnlockRequest(1, 220))
    assert host.vend_result(220, seconds=0.3) == Outcome.DOOR_NOT_OPENED
    assert board.model.stock[1] == 1
    board.set_fault("missing_motor", {2})
    host.ask(UnlockRequest(2, 221))
    assert host.vend_result(221) == Outcome.LOCK_FAILED


# --------------------------------------------------------------------------
# chilled compartment
# --------------------------------------------------------------------------


def test_temperature_alarm_raises_and_clears() -> None:
    board, host = make(BoardModel.spiral(chilled=True))
    status = host.ask(Status())
    assert isinstance(status, StatusReply) and status.temperature_dc == 40
    board.set_fault("temperature_alarm", True)  # compressor fails: warms toward ambient
    host.run(1.5, step=0.01)
    events = host.events()
    assert FaultEvent(FaultCode.COMPRESSOR, True) in events
    assert FaultEvent(FaultCode.OVER_TEMPERATURE, True) in events
    alarm = [e for e in events if isinstance(e, TemperatureEvent)]
    assert alarm[0].reason == TemperatureReason.HIGH_ALARM and alarm[0].temperature_dc >= 80
    status = host.ask(Status())
    assert isinstance(status, StatusReply)
    assert FaultFlags.OVER_TEMPERATURE in status.faults and FaultFlags.COMPRESSOR in status.faults
    board.set_fault("temperature_alarm", False)
    board.set_temperature(5.0)
    events = host.events()
    assert TemperatureEvent(50, TemperatureReason.BACK_IN_RANGE) in events
    assert FaultEvent(FaultCode.OVER_TEMPERATURE, False) in events


# --------------------------------------------------------------------------
# wire faults
# --------------------------------------------------------------------------


def _wire_run(seed: int) -> tuple[bytes, dict[str, int]]:
    board, _host = make(faults=Faults(seed=seed))
    board.set_fault("bit_flip_ratio", 0.05)
    board.set_fault("drop_byte_ratio", 0.05)
    out = bytearray()
    for seq in range(20):
        board.receive(encode(0, seq, Status()))
        out += board.read_output()
    return bytes(out), dict(board.stats)


def test_drop_and_flip_faults_corrupt_bytes_repeatably() -> None:
    a, stats = _wire_run(5)
    b, _ = _wire_run(5)
    assert a == b  # seeded: the same damage every run
    assert stats["bits_flipped"] > 0 and stats["bytes_dropped"] > 0
    decoder = FrameDecoder()
    decoder.feed(a)
    assert decoder.pending < 20  # some responses did not survive


def test_missing_delayed_and_duplicated_responses() -> None:
    board, host = make()
    board.set_fault("drop_response_ratio", 1.0)
    assert host.send(VendRequest(1, 300)) == []  # executed, answer lost
    assert board.busy_tx == 300
    board.set_fault("drop_response_ratio", 0)
    board.set_fault("response_delay_s", 0.1)
    assert host.send(Ping()) == []
    host.clock.advance(0.1)
    assert [decode_message(f) for f in host.frames()] == [Ack()]
    board.set_fault("response_delay_s", 0)
    board.set_fault("duplicate_frame_ratio", 1.0)
    assert host.send(Ping()) == [Ack(), Ack()]
    board.set_fault("duplicate_frame_ratio", 0)
    board.set_fault("mute", True)
    assert host.send(Ping()) == []
    board.set_fault("mute", False)
    assert host.send(Ping()) == [Ack()]


def test_fault_knobs_parse_text_and_reject_unknown_names() -> None:
    f = Faults()
    f.set("jammed", "3, 7")
    f.set("blind_drop_sensor", "on")
    f.set("reset_mid_vend", "lose")
    f.set("drop_byte_ratio", "0.25")
    assert f.jammed == {3, 7} and f.blind_drop_sensor is True
    assert f.reset_mid_vend == "lose" and f.drop_byte_ratio == 0.25
    f.set("reset_mid_vend", "off")
    assert f.reset_mid_vend is None
    with pytest.raises(KeyError):
        f.set("no_such_knob", 1)
    with pytest.raises(ValueError):
        f.set("bit_flip_ratio", 2)


def test_physical_log_file_is_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "physical.jsonl"
    _board, host = make(physical_log=PhysicalLog(path))
    host.ask(VendRequest(0, 400))
    host.vend_result(400)
    entries = read_physical_log(path)
    assert [e["event"] for e in entries] == ["board_reset", "motor_run"]
    assert entries[1]["tx"] == 400 and entries[1]["result"] == "DELIVERED"
