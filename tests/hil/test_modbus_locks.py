"""The Modbus lock board driver (kiosk.hardware.modbus_locks) against pymodbus's own serial
server over a real socat pty pair: the unlock flow, a door never opened, a board that goes
silent, lost and corrupted frames, and a Cabinet of lock boards."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.hardware.board import BoardOffline, Cabinet
from kiosk.hardware.modbus_locks import LockMap, ModbusLockBoard
from kiosk.hardware.protocol import CabinetKind, DoorEvent, Outcome
from kiosk.sim.modbus_devices import LockBoardModel, WireFaults
from tests.support.modbus import modbus_line

MAP = LockMap(unit=3, locks=8, door_poll_s=0.05)


def test_unlock_door_opened_and_closed(tmp_path: Path) -> None:
    model = LockBoardModel(unit=3, locks=8, open_after_s=0.2, close_after_s=1.5)
    with modbus_line(tmp_path, [model]) as line:
        board = ModbusLockBoard(line.bus, 0, MAP)
        info = board.identify()
        assert info.cabinet is CabinetKind.LOCKER and info.slot_count == 8
        assert board.outcome(501) is Outcome.UNKNOWN_TX
        r = board.unlock(5, 501, timeout=20)
        assert r.outcome is Outcome.DOOR_OPENED_AND_CLOSED and r.delivered
        assert model.releases == [5]
        assert board.outcome(501) is Outcome.DOOR_OPENED_AND_CLOSED
        again = board.unlock(5, 501, timeout=20)  # a known tx is answered, never released
        assert again.outcome is Outcome.DOOR_OPENED_AND_CLOSED and again.source == "reply"
        assert model.releases == [5]


def test_door_never_opened_and_door_left_open(tmp_path: Path) -> None:
    model = LockBoardModel(unit=3, locks=8, open_after_s=None)
    with modbus_line(tmp_path, [model]) as line:
        board = ModbusLockBoard(line.bus, 0, MAP)
        r = board.unlock(2, 600, timeout=1.0)
        assert r.outcome is Outcome.DOOR_NOT_OPENED and not r.delivered
        model.open_after_s, model.close_after_s = 0.1, None
        r = board.unlock(3, 601, timeout=1.0)
        assert r.outcome is Outcome.DOOR_NOT_CLOSED  # the shopper had the item: delivered
        events: list[DoorEvent] = []
        board.subscribe(lambda _a, ev: events.append(ev))  # type: ignore[arg-type]
        assert board.status().open_doors == {3}
        r = board.unlock(3, 602, timeout=1.0)  # that door is open: refused, nothing sent
        assert r.outcome is Outcome.REFUSED_FAULT and model.releases == [2, 3]


def test_lost_and_corrupted_frames_still_release_once(tmp_path: Path) -> None:
    faults = WireFaults(lose_requests=0.1, drop_replies=0.1, corrupt_replies=0.1, seed=3)
    model = LockBoardModel(unit=3, locks=8, open_after_s=0.2, close_after_s=2.5)
    with modbus_line(tmp_path, [model], faults=faults, timeout_s=0.1, retries=8) as line:
        board = ModbusLockBoard(line.bus, 0, MAP)
        for i, slot in enumerate((0, 4, 7)):
            r = board.unlock(slot, 700 + i, timeout=20)
            assert r.outcome is Outcome.DOOR_OPENED_AND_CLOSED
        assert model.releases == [0, 4, 7]  # a repeated coil write released nothing more
        assert sum(line.faults.counts.values()) > 0


def test_silent_board_is_offline_and_an_unanswered_release_is_unknown(tmp_path: Path) -> None:
    model = LockBoardModel(unit=3, locks=8, open_after_s=None)
    with modbus_line(tmp_path, [model], timeout_s=0.1, retries=1) as line:
        board = ModbusLockBoard(line.bus, 0, MAP)
        board.identify()
        line.faults.silent = True
        with pytest.raises(BoardOffline) as e:
            board.status()
        assert e.value.tx is None
        with pytest.raises(BoardOffline) as e:  # the door check fails: nothing was sent
            board.unlock(1, 800, timeout=1.0)
        assert e.value.tx is None and board.outcome(800) is Outcome.UNKNOWN_TX
        # silent only for replies: the release is carried out, its answer lost every time
        line.faults.silent = False
        line.faults.drop_replies = 1.0
        line.faults.seed = 1

        board2 = ModbusLockBoard(line.bus, 0, MAP)
        board2._doors = lambda: frozenset()  # type: ignore[method-assign]
        with pytest.raises(BoardOffline) as e:
            board2.unlock(1, 801, timeout=1.0)
        assert e.value.tx == 801
        assert board2.outcome(801) is Outcome.INTERRUPTED  # never sent again, unknown
        assert model.releases == [1]


def test_cabinet_of_two_lock_boards_routes_by_planogram(tmp_path: Path) -> None:
    a = LockBoardModel(unit=1, locks=4, open_after_s=0.1, close_after_s=1.5)
    b = LockBoardModel(unit=2, locks=4, open_after_s=0.1, close_after_s=1.5)
    with modbus_line(tmp_path, [a, b]) as line:
        boards = {
            0: ModbusLockBoard(line.bus, 0, LockMap(unit=1, locks=4, door_poll_s=0.05)),
            1: ModbusLockBoard(line.bus, 1, LockMap(unit=2, locks=4, door_poll_s=0.05)),
        }
        cab = Cabinet(boards, {1: (0, 0), 2: (0, 1), 5: (1, 0), 6: (1, 1)})  # type: ignore[arg-type]
        assert cab.identify().cabinet is CabinetKind.LOCKER
        assert cab.unlock(6, 900, timeout=20).outcome is Outcome.DOOR_OPENED_AND_CLOSED
        assert (a.releases, b.releases) == ([], [1])
        assert cab.outcome(900) is Outcome.DOOR_OPENED_AND_CLOSED
        assert cab.outcome(901) is Outcome.UNKNOWN_TX
