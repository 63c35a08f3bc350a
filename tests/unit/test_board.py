"""Tests for kiosk.hardware.board: handshake, the vend flow, events, several boards on one bus.

Runs over a real pty with the minimal board peer from tests/support/board_peer.py (not the
kiosk/sim emulator).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kiosk import exitcodes
from kiosk.hardware.board import (
    BoardDriver,
    BoardEvent,
    BoardInfo,
    BoardOffline,
    BoardStatus,
    BoardVendResult,
    Cabinet,
    SerialBoard,
    VendTimeout,
)
from kiosk.hardware.cli_board import register
from kiosk.hardware.link import SerialLink
from kiosk.hardware.protocol import (
    BoardReset,
    CabinetKind,
    Command,
    DoorEvent,
    FaultCode,
    FaultEvent,
    Outcome,
    SlotGroup,
    WireSlotKind,
)
from tests.support.board_peer import FAST, WAIT, PtyPeer, Recorder, wait_until


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[PtyPeer]:
    p = PtyPeer(tmp_path / "board")
    yield p
    p.close()


@pytest.fixture
def link(peer: PtyPeer) -> Iterator[SerialLink]:
    lk = SerialLink(str(peer.path), addresses=tuple(peer.boards), timing=FAST)
    yield lk
    lk.close()


@pytest.fixture
def board(link: SerialLink) -> SerialBoard:
    b = SerialBoard(link, 0, outcome_check_interval=10.0)
    link.start()
    assert wait_until(lambda: b.identified), "no handshake on connect"
    return b


def run_in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def target() -> None:
        try:
            out.append(fn())
        except BaseException as e:  # handed to the test
            out.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, out


# ---------------------------------------------------------------------------- handshake


def test_identify_on_connect(board: SerialBoard, peer: PtyPeer) -> None:
    assert peer.board.identify_count == 1
    info = board.info
    assert info is not None
    assert (info.model, info.serial, info.firmware_version) == ("PEER-1", "SN0000", "1.4.2")
    assert info.protocol_version == 1
    assert info.chilled and info.nonvolatile_outcomes and not info.presence_sensing
    assert info.slot_count == 12
    assert info.slot_kind(3) is WireSlotKind.SPIRAL
    assert info.slot_kind(11) is WireSlotKind.LOCKER
    assert info.slot_kind(12) is None


def test_status(board: SerialBoard) -> None:
    st = board.status()
    assert st == BoardStatus(
        busy=False,
        service_door_open=False,
        temperature_c=4.5,
        faults=frozenset(),
        busy_tx=0,
        open_doors=frozenset(),
        present=None,
    )


def test_nak_not_identified_reidentifies_and_resends(board: SerialBoard, peer: PtyPeer) -> None:
    with peer.lock:
        peer.board.identified = False  # rebooted, and the BOARD_RESET never arrived
    result = board.vend(2, 501, timeout=WAIT)
    assert result.outcome is Outcome.DELIVERED
    assert peer.board.identify_count == 2
    assert peer.board.executions[501] == 1


def test_board_reset_event_reidentifies_and_is_delivered(board: SerialBoard, peer: PtyPeer) -> None:
    events = Recorder()
    board.subscribe(events)
    with peer.lock:
        peer.board.reboot()
    assert events.wait_for(lambda calls: any(isinstance(c[1], BoardReset) for c in calls))
    assert wait_until(lambda: peer.board.identify_count == 2 and board.identified)


# ---------------------------------------------------------------------------- vend flow


def test_vend_delivered_via_event(board: SerialBoard, peer: PtyPeer) -> None:
    result = board.vend(3, 1001, timeout=WAIT)
    assert (result.tx, result.slot, result.outcome, result.source) == (
        1001,
        3,
        Outcome.DELIVERED,
        "event",
    )
    assert result.delivered and not result.refused
    assert result.seconds < WAIT
    assert peer.board.executions[1001] == 1
    assert peer.board.commands(Command.OUTCOME) == 0


def test_unlock_locker(board: SerialBoard, peer: PtyPeer) -> None:
    result = board.unlock(11, 1002, timeout=WAIT)
    assert result.outcome is Outcome.DOOR_OPENED_AND_CLOSED
    assert result.delivered


def test_test_slot(board: SerialBoard, peer: PtyPeer) -> None:
    assert board.test_slot(10, 1003, timeout=WAIT).outcome is Outcome.DOOR_OPENED_AND_CLOSED
    assert board.test_slot(0, 1004, timeout=WAIT).outcome is Outcome.DELIVERED


def test_refusals_come_back_at_once(board: SerialBoard, peer: PtyPeer) -> None:
    wrong = board.vend(11, 1005, timeout=WAIT)
    assert (wrong.outcome, wrong.source) == (Outcome.WRONG_SLOT_KIND, "reply")
    assert wrong.refused
    assert board.vend(99, 1006, timeout=WAIT).outcome is Outcome.INVALID_SLOT
    assert not peer.board.executions


def test_repeat_of_finished_tx_does_not_run_again(board: SerialBoard, peer: PtyPeer) -> None:
    assert board.vend(4, 1007, timeout=WAIT).outcome is Outcome.DELIVERED
    again = board.vend(4, 1007, timeout=WAIT)
    assert (again.outcome, again.source) == (Outcome.DELIVERED, "reply")
    assert peer.board.executions[1007] == 1


def test_lost_vend_result_is_resolved_with_outcome_not_resend(
    board: SerialBoard, peer: PtyPeer
) -> None:
    peer.board.lose_vend_results = True
    result = board.vend(5, 1008, timeout=0.5)
    assert (result.outcome, result.source) == (Outcome.DELIVERED, "query")
    assert peer.board.commands(Command.OUTCOME) >= 1
    vends = [f for f in peer.board.received if f.command == Command.VEND]
    assert len({(f.seq, f.payload) for f in vends}) == 1  # only retransmissions, never a new VEND
    assert peer.board.executions[1008] == 1


def test_vend_still_running_at_deadline_raises_vend_timeout(
    board: SerialBoard, peer: PtyPeer
) -> None:
    peer.board.complete_vends = False
    with pytest.raises(VendTimeout) as ei:
        board.vend(6, 1009, timeout=0.3)
    assert (ei.value.tx, ei.value.outcome) == (1009, Outcome.IN_PROGRESS)
    assert board.outcome(1009) is Outcome.IN_PROGRESS
    with peer.lock:
        peer.board.finish(1009, Outcome.JAMMED)
    assert board.outcome(1009) is Outcome.JAMMED
    assert board.outcome(424242) is Outcome.UNKNOWN_TX


def test_board_reset_mid_vend_asks_outcome(board: SerialBoard, peer: PtyPeer) -> None:
    peer.board.complete_vends = False
    t, out = run_in_thread(lambda: board.vend(7, 1010, timeout=WAIT * 2))
    assert peer.board.accepted.wait(WAIT)
    with peer.lock:
        cmd, slot, _ = peer.board.outcomes[1010]
        peer.board.outcomes[1010] = (cmd, slot, Outcome.INTERRUPTED)
        peer.board.reboot(memory_kept=True, interrupted_tx=1010)
    t.join(WAIT)
    assert len(out) == 1
    result = out[0]
    assert isinstance(result, BoardVendResult)
    assert (result.outcome, result.source) == (Outcome.INTERRUPTED, "query")
    assert peer.board.executions[1010] == 1


def test_board_offline_mid_vend(board: SerialBoard, peer: PtyPeer) -> None:
    peer.board.complete_vends = False
    t, out = run_in_thread(lambda: board.vend(8, 1011, timeout=WAIT * 4))
    assert peer.board.accepted.wait(WAIT)
    t0 = time.monotonic()
    peer.close()  # USB unplugged while the motor turns
    t.join(WAIT)
    assert time.monotonic() - t0 < 3.0
    assert len(out) == 1
    err = out[0]
    assert isinstance(err, BoardOffline)
    assert err.tx == 1011
    assert wait_until(lambda: not board.identified)


def test_no_vend_sent_to_a_board_that_stopped_answering(board: SerialBoard, peer: PtyPeer) -> None:
    peer.board.silent = True
    assert wait_until(lambda: board.link.board_answering(0) is False)
    before = peer.board.commands(Command.VEND)
    with pytest.raises(BoardOffline) as ei:
        board.vend(1, 1012, timeout=WAIT)
    assert ei.value.tx is None  # nothing was sent: the tx certainly did not run
    assert peer.board.commands(Command.VEND) == before
    peer.board.silent = False  # power back: the poller's probe brings it back, re-identified
    assert wait_until(lambda: board.link.board_answering(0) is True and board.identified)
    assert board.vend(1, 1012, timeout=WAIT).outcome is Outcome.DELIVERED


# ---------------------------------------------------------------------------- events


def test_events_reach_subscribers_until_unsubscribed(board: SerialBoard, peer: PtyPeer) -> None:
    events = Recorder()
    unsubscribe = board.subscribe(events)
    with peer.lock:
        peer.board.events.append(DoorEvent(11, True))
        peer.board.events.append(FaultEvent(FaultCode.OVER_TEMPERATURE, True))
    assert events.wait_for(lambda calls: len(calls) >= 2)
    assert events.calls[:2] == [
        (0, DoorEvent(11, True)),
        (0, FaultEvent(FaultCode.OVER_TEMPERATURE, True)),
    ]
    unsubscribe()
    with peer.lock:
        peer.board.events.append(DoorEvent(11, False))
    assert wait_until(lambda: not peer.board.events)
    time.sleep(0.1)  # give a wrongly still-subscribed listener the chance to be called
    assert len(events.calls) == 2


# ---------------------------------------------------------------------------- several boards


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[tuple[PtyPeer, SerialLink, Cabinet]]:
    p = PtyPeer(tmp_path / "bus", 0, 1)
    link = SerialLink(str(p.path), addresses=(0, 1), timing=FAST)
    boards = {0: SerialBoard(link, 0), 1: SerialBoard(link, 1)}
    slot_map = {n + 1: (0, n) for n in range(10)}  # cabinet 1..10: main board spirals 0..9
    slot_map |= {100: (1, 10), 101: (1, 11)}  # cabinet 100, 101: lockers on expansion board 1
    cab = Cabinet(boards, slot_map)
    link.start()
    assert wait_until(lambda: all(b.identified for b in boards.values()))
    yield p, link, cab
    link.close()
    p.close()


def test_cabinet_routes_slots_to_boards(bus: tuple[PtyPeer, SerialLink, Cabinet]) -> None:
    p, _, cab = bus
    r = cab.vend(3, 2001, timeout=WAIT)
    assert (r.slot, r.outcome) == (3, Outcome.DELIVERED)
    assert p.boards[0].outcomes[2001][1] == 2  # board slot 2
    u = cab.unlock(100, 2002, timeout=WAIT)
    assert (u.slot, u.outcome) == (100, Outcome.DOOR_OPENED_AND_CLOSED)
    assert p.boards[1].executions[2002] == 1 and 2002 not in p.boards[0].executions
    assert cab.outcome(2002) is Outcome.DOOR_OPENED_AND_CLOSED
    fresh = Cabinet(cab.boards, {100: (1, 10)})  # e.g. after a restart: no tx -> board memory
    assert fresh.outcome(2002) is Outcome.DOOR_OPENED_AND_CLOSED
    assert fresh.outcome(999_999) is Outcome.UNKNOWN_TX
    nowhere = cab.vend(55, 2003, timeout=WAIT)
    assert (nowhere.outcome, nowhere.source) == (Outcome.INVALID_SLOT, "host")


def test_cabinet_identify_and_events_use_cabinet_slots(
    bus: tuple[PtyPeer, SerialLink, Cabinet],
) -> None:
    p, _, cab = bus
    info = cab.identify()
    assert info.cabinet is CabinetKind.MIXED
    assert info.slot_groups == (
        SlotGroup(1, 10, WireSlotKind.SPIRAL),
        SlotGroup(100, 2, WireSlotKind.LOCKER),
    )
    events = Recorder()
    cab.subscribe(events)
    with p.lock:
        p.boards[1].events.append(DoorEvent(11, True))
    assert events.wait_for(lambda calls: (1, DoorEvent(101, True)) in calls)
    st = cab.status()
    assert st.temperature_c == 4.5 and not st.busy


def test_cabinet_rejects_bad_maps() -> None:
    fake = FakeDriver()
    with pytest.raises(ValueError):
        Cabinet({0: fake, 1: FakeDriver()})  # two boards need a map
    with pytest.raises(ValueError):
        Cabinet({0: fake}, {1: (3, 0)})  # no board 3
    with pytest.raises(ValueError):
        Cabinet({0: fake}, {1: (0, 0), 2: (0, 0)})  # one board slot twice


class FakeDriver:
    """A second driver (think: a vendor's own protocol); callers cannot tell the difference."""

    def __init__(self) -> None:
        self.listeners: list[Callable[[int, BoardEvent], None]] = []

    def identify(self) -> BoardInfo:
        return BoardInfo(0, "V", "S", (1, 0, 0), 1, CabinetKind.SPIRAL, False, False, True, 64, ())

    def status(self) -> BoardStatus:
        return BoardStatus(False, False, None, frozenset(), 0, frozenset(), None)

    def vend(self, slot: int, tx: int, timeout: float = 30.0) -> BoardVendResult:
        return BoardVendResult(tx, slot, Outcome.DELIVERED, 0.0, "event")

    def unlock(self, slot: int, tx: int, timeout: float = 180.0) -> BoardVendResult:
        return BoardVendResult(tx, slot, Outcome.DOOR_OPENED_AND_CLOSED, 0.0, "event")

    def test_slot(self, slot: int, tx: int, timeout: float = 60.0) -> BoardVendResult:
        return self.vend(slot, tx, timeout)

    def outcome(self, tx: int) -> Outcome:
        return Outcome.UNKNOWN_TX

    def subscribe(self, listener: Callable[[int, BoardEvent], None]) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)


def test_a_second_driver_plugs_into_the_cabinet() -> None:
    driver: BoardDriver = FakeDriver()
    cab = Cabinet({7: driver}, {12: (7, 0)})
    assert cab.vend(12, 1, timeout=1).slot == 12
    assert cab.vend(12, 2).delivered


# ---------------------------------------------------------------------------- kiosk board CLI


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="kiosk")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS)
    register(parser.add_subparsers(dest="command"), common)
    args = parser.parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_status(peer: PtyPeer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "board", "status", "--port", str(peer.path))
    assert code == 0
    assert "PEER-1, serial SN0000, firmware 1.4.2" in out
    assert "cabinet: mixed, 12 slots, chilled" in out  # bus addresses only, labelled:
    assert "slots (board addresses, no planogram): 0-9 spiral, 10-11 locker" in out
    assert "temperature: 4.5 °C" in out
    code, out, _ = run_cli(capsys, "board", "status", "--port", str(peer.path), "--json")
    obj = json.loads(out)
    assert code == 0 and obj["ok"] is True
    assert obj["board"]["serial"] == "SN0000"
    assert obj["status"]["temperature_c"] == 4.5


def test_cli_status_and_selftest_in_chinese(
    peer: PtyPeer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """KIOSK_LANG=zh: the lines for people in Chinese (issue 17 review); JSON stays as is."""
    monkeypatch.setenv("KIOSK_LANG", "zh")
    code, out, _ = run_cli(capsys, "board", "status", "--port", str(peer.path))
    assert code == 0 and "货柜：混合（货道和格子柜），12 个货道，冷藏" in out, out
    assert "温度：4.5 °C" in out and "cabinet" not in out and "temperature" not in out, out
    code, out, _ = run_cli(capsys, "board", "selftest", "--port", str(peer.path), "--slots", "1,99")
    assert code == 1 and "1 号货道：READY（就绪" in out and "99 号货道：INVALID_SLOT" in out, out
    assert "自检：1/2 个货道正常" in out and "失败：99" in out, out
    assert "selftest" not in out and "FAIL" not in out and "our own" not in out, out


def test_cli_vend_unlock_outcome(peer: PtyPeer, capsys: pytest.CaptureFixture[str]) -> None:
    port = ("--port", str(peer.path))
    code, out, _ = run_cli(capsys, "board", "vend", *port, "--slot", "3")
    assert code == 0
    *_, line, note = out.strip().splitlines()
    assert "count was not changed" in note  # no kiosk store: nothing to count down
    m = re.fullmatch(r"slot 3: DELIVERED \(drop sensor confirmed\) tx=(\d+) in \d+\.\d s", line)
    assert m, line
    tx = int(m.group(1))
    assert abs(tx - (int(time.time() * 10) & 0xFFFFFFFF)) < 600 and peer.board.executions[tx] == 1
    code, out, _ = run_cli(capsys, "board", "outcome", *port, "--tx", str(tx), "--json")
    assert code == 0 and json.loads(out)["outcome"] == "DELIVERED"
    code, out, _ = run_cli(capsys, "board", "unlock", *port, "--slot", "3", "--tx", "77", "--json")
    obj = json.loads(out)
    assert code == 1 and (obj["ok"], obj["outcome"], obj["tx"]) == (False, "WRONG_SLOT_KIND", 77)
    code, out, _ = run_cli(capsys, "board", "outcome", *port, "--tx", "123")
    assert code == 1 and "tx 123: UNKNOWN_TX" in out


def test_cli_selftest(peer: PtyPeer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys,
        "board",
        "selftest",
        "--port",
        str(peer.path),
        "--slots",
        "0-1,11",
        "--drop",
        "--yes",
    )
    assert code == 0
    assert out.index("ONE ITEM DROPS") < out.index("DELIVERED")  # said before it starts
    assert out.count("DELIVERED") == 2 and "slot 11: DOOR_OPENED_AND_CLOSED" in out
    assert "selftest: 3/3 slots ok" in out
    code, out, _ = run_cli(
        capsys,
        "board",
        "selftest",
        "--port",
        str(peer.path),
        "--slots",
        "1,99",
        "--json",
        "--drop",
        "--yes",
    )
    obj = json.loads(out)
    assert code == 1 and obj["ok"] is False
    assert [(s["slot"], s["ok"]) for s in obj["slots"]] == [(1, True), (99, False)]
    txs = [s["tx"] for s in obj["slots"]]
    assert txs[0] < txs[1]
    code, out, _ = run_cli(capsys, "board", "selftest", "--port", str(peer.path), "--drop", "--yes")
    assert code == 0 and "selftest: 12/12 slots ok" in out
    runs = len(peer.board.executions)
    # without --drop: every slot checked, nothing runs
    code, out, _ = run_cli(capsys, "board", "selftest", "--port", str(peer.path))
    assert code == 0 and "selftest: 12/12 slots ok (checked without running" in out, out
    assert "slot 3: READY (no board fault; motor not run" in out
    assert len(peer.board.executions) == runs


def test_cli_unreachable(tmp_path: Path, peer: PtyPeer, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "ttyNOPE")
    code, _, err = run_cli(capsys, "board", "status", "--port", missing, "--connect-timeout", "0.3")
    assert code == exitcodes.UNREACHABLE
    assert missing in err and "does not exist" in err and "kiosk emulator" in err
    peer.board.silent = True  # port fine, board powered off
    code, out, _ = run_cli(
        capsys,
        "board",
        "vend",
        "--port",
        str(peer.path),
        "--slot",
        "1",
        "--json",
        "--connect-timeout",
        "0.3",
    )
    obj = json.loads(out)
    assert (
        code == exitcodes.UNREACHABLE
        and obj["reachable"] is False
        and "no board has answered" in obj["error"]
    )
    assert peer.board.commands(Command.VEND) == 0


def test_vend_fetches_its_result_right_after_the_tx_reply(peer: PtyPeer) -> None:
    # Issue 15 req. 9: the result of a short tx must not wait for the poll thread's next turn.
    # The poll thread here would POLL again only after an hour (and the driver would ask
    # OUTCOME only after an hour), so the vend can end only through the POLL the vend sends
    # itself right after the TX_REPLY. Before: the VEND_RESULT waited for that next turn.
    slow = dataclasses.replace(FAST, poll_idle=3600.0, poll_busy=3600.0)
    with SerialLink(str(peer.path), timing=slow) as link:
        board = SerialBoard(link, 0, outcome_check_interval=3600.0)
        assert link.wait_online(WAIT)
        t, out = run_in_thread(lambda: board.vend(3, 4242, timeout=3600.0))
        t.join(WAIT * 4)
        assert not t.is_alive(), "the VEND_RESULT was left waiting for the next POLL turn"
    [result] = out
    assert isinstance(result, BoardVendResult), result
    assert (result.outcome, result.source) == (Outcome.DELIVERED, "event")
    assert peer.board.executions[4242] == 1
