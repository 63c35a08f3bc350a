"""`kiosk board status|vend|outcome|selftest --config` on every protocol (issue 15 req. 7,
issue 17 req. 6): the kiosk's own cabinet from its config (kiosk.app.build_cabinet), slots named
by the planogram, a self test that drops nothing unless `--drop`, and each item dropped taken
off the kiosk's count as a test vend. Against the VMC emulator on a real pty and pymodbus's own
serial server behind a socat pty pair. One rig per protocol, every command on it."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk import exitcodes
from kiosk.cli import main as cli_main
from kiosk.core.planogram import Planogram, SlotKind
from kiosk.core.stock import StockReason
from kiosk.sim.board_emulator import BoardModel, EmulatedBoard
from kiosk.sim.emulator_transports import Emulator, PtyTransport
from kiosk.sim.modbus_devices import LockBoardModel, ModbusDevices, socat_pair
from kiosk.sim.vmc_emulator import VmcEmulatedBoard
from kiosk.store import open_store
from provisioning.cli import main as provision_main
from tests.support.config import kiosk_config, write_config, write_kiosk_config
from tests.support.store import seed_store

BAUD = 19200


@pytest.fixture(autouse=True)
def _root_handlers() -> Iterator[None]:
    """`kiosk` (cli_main) points the root logger at this test's captured stderr: put the
    handlers back, so later tests do not log into a closed stream."""
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    yield
    root.handlers[:] = saved
    root.setLevel(level)


def _run(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> tuple[int, str]:
    code = cli_main(["board", *argv, "--config", str(config), "--connect-timeout", "10"])
    out, err = capsys.readouterr()
    return code, out + err


def _provision_selftest(capsys: pytest.CaptureFixture[str], config: Path) -> dict[str, str]:
    """`kiosk-provision selftest` (no --drop): each board check's status by name."""
    skip = ["--skip", "broker", "--skip", "font", "--skip", "screen"]
    code = provision_main(["selftest", "--config", str(config), "--json", "--no-queue", *skip])
    report = json.loads(capsys.readouterr().out)
    assert code == exitcodes.OK, report
    return {c["name"]: c["detail"] for c in report["checks"]}


def _test_vends(data: Path) -> tuple[dict[int, int], list[int]]:
    store = open_store(data)
    try:
        log = [e.slot_no for e in store.stock.log() if e.reason is StockReason.TEST_VEND]
        return store.stock.levels(), log
    finally:
        store.close()


def test_board_commands_on_our_own_board_from_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --port: the kiosk's [hardware] port; `--slot 13` is the screen's 13号."""
    data = tmp_path / "data"
    levels0 = seed_store(data)  # demo planogram: slot 13 is board 0 address 3
    board = EmulatedBoard(BoardModel.spiral(6, 10, stock=5), time_scale=0.01)
    emu = Emulator(board, PtyTransport(tmp_path / "board")).start()
    config = tmp_path / "kiosk.toml"
    write_kiosk_config(config, tmp_path / "board", data)
    try:
        code, out = _run(capsys, config, "status")
        assert code == exitcodes.OK and "board 0 at " in out, out
        code, out = _run(capsys, config, "selftest", "--slots", "13", "--no-queue")
        assert code == exitcodes.OK, out
        assert "slot 13 (board 0 address 3): READY" in out and board.log.runs() == []
        code, out = _run(capsys, config, "vend", "--slot", "13")
        assert code == exitcodes.OK and "slot 13 (board 0 address 3): DELIVERED" in out, out
        assert f"count of slot 13 now {levels0[13] - 1}" in out
    finally:
        emu.stop()
    assert [r["slot"] for r in board.log.runs()] == [3]
    assert _test_vends(data)[1] == [13]


def test_board_commands_on_a_vmc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    # demo planogram: slot 11 is board 0 address 1 = selection 2; one row is enough (slots
    # 10-19): a VMC announces every selection after a sync, one per poll, and identify waits
    # for the last one; selftests check every planogram slot
    levels0 = seed_store(data, below=20)
    vmc = VmcEmulatedBoard(BoardModel.spiral(1, 10, stock=5), time_scale=0.05)
    emu = Emulator(vmc, PtyTransport(tmp_path / "vmc"), baud=57600).start()
    config = tmp_path / "kiosk.toml"
    write_kiosk_config(config, tmp_path / "vmc", data, hardware={"protocol": "vmc", "baud": 57600})
    try:
        code, out = _run(capsys, config, "status")
        assert code == exitcodes.OK, out
        assert "VMC at " in out and "outcome memory: none" in out
        assert "selections reported: 10 (VMC selections 1-10)" in out, out
        assert "slots (as on the screen): 10-19" in out and "may be incomplete" not in out

        code, out = _run(capsys, config, "selftest", "--slots", "11-12,99")
        assert code == exitcodes.FAIL, out  # 99 is not in the planogram
        assert "slot 11 (VMC selection 2): READY (check selection 2: normal; motor not run)" in out
        assert "slot 99: INVALID_SLOT" in out and "--drop" in out
        assert vmc.log.runs() == []  # nothing turned

        code, out = _run(
            capsys, config, "selftest", "--slots", "11", "--drop", "--yes", "--no-queue"
        )
        assert code == exitcodes.OK, out
        assert out.index("ONE ITEM DROPS") < out.index("DELIVERED")
        assert "slot 11 (VMC selection 2): DELIVERED (the VMC reported success (0x03" in out

        code, out = _run(capsys, config, "vend", "--slot", "12", "--tx", "4242", "--json")
        obj = json.loads(out.splitlines()[0])
        assert code == exitcodes.OK and (obj["outcome"], obj["slot_no"]) == ("DELIVERED", 12)
        assert obj["protocol"] == "vmc" and obj["count"] == levels0[12] - 1

        code, out = _run(capsys, config, "outcome", "--tx", "4242")
        assert code == exitcodes.FAIL and "a VMC keeps no record of vends" in out

        checks = _provision_selftest(capsys, config)
        assert checks["board0"].startswith("VMC: ")
        assert checks["board0.slots"].startswith("10/10 ready, checked without running"), checks

        # `kiosk-provision status` names the VMC too (the kiosk's own cabinet, not our protocol)
        code = provision_main(["status", "--config", str(config), "--timeout", "10", "--json"])
        board = json.loads(capsys.readouterr().out)["board"]
        assert code == exitcodes.OK and board.startswith("online at "), board
        assert "board 0 (vmc): " in board and "10 slots" in board, board
    finally:
        emu.stop()
    assert [r["slot"] for r in vmc.log.runs()] == [1, 2]  # board addresses: one run each
    levels, test_vends = _test_vends(data)
    assert sorted(test_vends) == [11, 12]
    assert (levels[11], levels[12]) == (levels0[11] - 1, levels0[12] - 1)


def test_board_commands_on_modbus_lock_boards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    levels0 = seed_store(data, SlotKind.LOCKER)
    stocked = next(n for n, lv in sorted(levels0.items()) if lv > 0)
    board = LockBoardModel(unit=1, locks=24, open_after_s=0.2, close_after_s=1.2)
    with socat_pair(tmp_path) as pair:
        devices = ModbusDevices(pair.device_end, [board], baud=BAUD).start()
        config = tmp_path / "kiosk.toml"
        write_kiosk_config(
            config,
            "/dev/null",
            data,
            hardware={"cabinet": "locker", "default_capacity": 1},
            modbus={
                "port": pair.kiosk_end,
                "baud": BAUD,
                "timeout_s": 0.5,
                "retries": 3,
                "locks": True,
                "locks_per_board": 24,
                "door_poll_s": 0.05,
            },
        )
        try:
            code, out = _run(capsys, config, "status")
            assert code == exitcodes.OK, out
            assert "lock board 0 (unit-1)" in out and "open doors: none" in out

            code, out = _run(capsys, config, "selftest")
            assert code == exitcodes.OK, out
            assert "READY (door input: closed; lock not released)" in out
            assert board.releases == []  # the check opens nothing

            code, out = _run(capsys, config, "vend", "--slot", str(stocked), "--timeout", "20")
            assert code == exitcodes.OK, out
            assert f"slot {stocked} (lock board 0 lock " in out and "DOOR_OPENED_AND_CLOSED" in out
            assert "releases the lock" in out
            assert len(board.releases) == 1

            code, out = _run(capsys, config, "outcome", "--tx", "5")
            assert code == exitcodes.FAIL and "lock board keeps no record" in out

            checks = _provision_selftest(capsys, config)
            assert checks["board0"].startswith("Modbus lock board: ")
            assert "checked without running" in checks["board0.slots"]
            assert len(board.releases) == 1  # the check released nothing
        finally:
            devices.stop()
    levels, test_vends = _test_vends(data)
    assert test_vends == [stocked] and levels[stocked] == levels0[stocked] - 1


def test_board_commands_on_a_vmc_and_our_board_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`[[board]]` tables: board 0 a VMC, board 1 our own board, each on its own pty; each
    board answers what its protocol can, in one command."""
    data = tmp_path / "data"
    seed_store(data)
    store = open_store(data)
    try:  # rows 4..6 of the demo planogram on board 1 (slot 67 among them)
        pg = store.planogram.load()
        moved = [
            dataclasses.replace(s, board=1, address=s.address - 30) if s.row >= 4 else s for s in pg
        ]
        store.planogram.replace(Planogram.of(pg.version + 1, moved))
    finally:
        store.close()
    vmc = VmcEmulatedBoard(BoardModel.spiral(1, 10, stock=5), time_scale=0.05)
    ours = EmulatedBoard(BoardModel.spiral(3, 10, stock=5), address=1, time_scale=0.01)
    vmc_emu = Emulator(vmc, PtyTransport(tmp_path / "vmc"), baud=57600).start()
    our_emu = Emulator(ours, PtyTransport(tmp_path / "board")).start()
    cfg = kiosk_config(port=tmp_path / "unused", data_dir=data)
    cfg["board"] = [  # type: ignore[assignment]  # an array of tables
        {"address": 0, "protocol": "vmc", "port": str(tmp_path / "vmc")},
        {"address": 1, "protocol": "kiosk", "port": str(tmp_path / "board")},
    ]
    config = write_config(tmp_path / "kiosk.toml", cfg)
    try:
        code, out = _run(capsys, config, "status")
        assert code == exitcodes.OK, out
        assert "VMC at " in out and "board 1 at " in out
        code, out = _run(capsys, config, "selftest", "--slots", "11,67", "--no-queue")
        assert code == exitcodes.OK, out
        assert "slot 11 (VMC selection 2): READY" in out
        assert "slot 67 (board 1 address " in out and "READY" in out
        code, out = _run(capsys, config, "outcome", "--tx", "77")
        assert code == exitcodes.FAIL and "tx 77: UNKNOWN_TX" in out, out  # our board answers
        assert "a VMC keeps no record of vends" in out  # and the VMC cannot
    finally:
        vmc_emu.stop()
        our_emu.stop()
    assert vmc.log.runs() == [] and ours.log.runs() == []
