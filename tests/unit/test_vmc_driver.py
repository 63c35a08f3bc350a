"""The VMC driver (kiosk.hardware.vmc_driver) against the VMC emulator over a real pty.

Exactly once without transaction ids (docs/boards/vmc.md section 8): whatever the wire does,
one vend call runs the motor at most once, DELIVERED is only ever reported for a real run
that dropped a product, and a vend whose result is not known ends INTERRUPTED (the sale
machine refunds it and raises an alarm), never sent again.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from kiosk.app import build_cabinet
from kiosk.core.planogram import SlotKind
from kiosk.hardware.board import BoardOffline, BoardVendResult, SerialBoard
from kiosk.hardware.link import SerialLink
from kiosk.hardware.protocol import BoardReset, Outcome, VendResult
from kiosk.hardware.vmc_driver import VmcBoard, dispense_outcome, selection_refusal
from kiosk.hardware.vmc_link import VmcLink
from kiosk.hardware.vmc_protocol import (
    DispenseCode,
    DispensingStatus,
    SelectionInfo,
    SelectionState,
    SessionConfig,
    VmcCommand,
    VmcFrame,
    encode,
)
from kiosk.sim.demo_data import demo_planogram
from tests.support.board_peer import wait_until as wait_for
from tests.support.config import write_kiosk_config
from tests.support.vmc import ScriptedVmc, VmcWorld, vmc_world

UNKNOWN_TIMEOUT = 8.0  # the vend deadline in the tests where the final status never comes


def vend_once(
    w: VmcWorld, slot: int, tx: int, timeout: float = 30.0
) -> tuple[BoardVendResult | None, list[dict[str, object]]]:
    """One vend call, and the motor runs it caused (waiting until the VMC is idle again)."""
    before = len(w.runs())
    try:
        result: BoardVendResult | None = w.board.vend(slot, tx, timeout)
    except BoardOffline:
        result = None
    w.wait_idle()
    return result, w.runs()[before:]


def check_exactly_once(result: BoardVendResult | None, runs: list[dict[str, object]]) -> None:
    assert len(runs) <= 1, f"one vend call ran the motor {len(runs)} times: {runs}"
    if result is None:  # BoardOffline: the vend never left
        assert runs == []
        return
    if result.outcome is Outcome.DELIVERED:
        assert len(runs) == 1 and runs[0]["dropped"] is True
    if result.outcome in (Outcome.SLOT_EMPTY, Outcome.INVALID_SLOT, Outcome.REFUSED_FAULT):
        assert runs == []


def test_status_tables_map_to_sale_outcomes() -> None:
    def o(code: int) -> Outcome:
        return dispense_outcome(DispensingStatus(code, 11))

    assert o(DispenseCode.SUCCESS) is Outcome.DELIVERED
    assert o(DispenseCode.JAMMED) is Outcome.JAMMED
    assert o(DispenseCode.MOTOR_MISSING) is Outcome.MOTOR_MISSING
    assert o(DispenseCode.DISPENSING) is Outcome.IN_PROGRESS
    for code in (DispenseCode.MOTOR_DID_NOT_STOP, DispenseCode.PURCHASE_TERMINATED, 0x77):
        assert o(code) is Outcome.INTERRUPTED
    assert selection_refusal(SelectionState.NORMAL) is None
    assert selection_refusal(SelectionState.OUT_OF_STOCK) is Outcome.SLOT_EMPTY
    assert selection_refusal(SelectionState.ABSENT) is Outcome.INVALID_SLOT
    assert selection_refusal(SelectionState.PAUSED) is Outcome.REFUSED_FAULT


def test_vend_delivers_once_and_is_remembered(tmp_path: Path) -> None:
    with vmc_world(tmp_path) as w:
        info = w.board.identify()
        assert info.slot_count == 10
        assert w.board.outcome(101) is Outcome.UNKNOWN_TX  # fresh: may be sent
        events: list[object] = []
        w.board.subscribe(lambda _a, ev: events.append(ev))
        result, runs = vend_once(w, 3, 101)
        assert result is not None and result.outcome is Outcome.DELIVERED
        check_exactly_once(result, runs)
        assert runs[0]["selection"] == 4  # slot 3 is selection 4 (offset 1)
        assert w.board.outcome(101) is Outcome.DELIVERED
        assert any(isinstance(e, VendResult) and e.tx == 101 for e in events)
        again, runs = vend_once(w, 3, 101)  # the same tx again: answered from the record
        assert again is not None and again.source == "reply" and runs == []


def test_refusals_and_failures_run_nothing_twice(tmp_path: Path) -> None:
    with vmc_world(tmp_path, jammed="5", missing_motor="6") as w:
        w.vmc.set_stock(2, 0)
        result, runs = vend_once(w, 2, 201)
        assert result is not None and result.outcome is Outcome.SLOT_EMPTY and runs == []
        assert w.board.outcome(201) is Outcome.UNKNOWN_TX  # refused: nothing ran, tx is free
        result, runs = vend_once(w, 5, 202)
        assert result is not None and result.outcome is Outcome.JAMMED and len(runs) == 1
        result, runs = vend_once(w, 6, 203)
        assert result is not None and result.outcome is Outcome.MOTOR_MISSING
        assert w.board.unlock(1, 204).outcome is Outcome.WRONG_SLOT_KIND
        assert w.board.status().service_door_open is False
        w.vmc.set_door(0xFFFF, True)
        assert w.board.status().service_door_open is True


def test_lost_status_makes_the_vend_unknown_and_it_is_never_resent(tmp_path: Path) -> None:
    with vmc_world(tmp_path, lose_status="on") as w:
        w.board.identify()  # the start-up sync is done
        result, runs = vend_once(w, 1, 301, timeout=UNKNOWN_TIMEOUT)
        assert result is not None and result.outcome is Outcome.INTERRUPTED
        assert len(runs) == 1 and runs[0]["dropped"] is True  # it did drop: refund + alarm
        assert w.board.outcome(301) is Outcome.INTERRUPTED
        # one motor run: the vend went once (a loaded machine may ask the check selection
        # again before it, docs/boards/vmc.md steps 2-3, so commands are not counted exactly)
        accepted = w.vmc.stats["commands_accepted"]
        again, runs = vend_once(w, 1, 301)
        assert again is not None and again.outcome is Outcome.INTERRUPTED and runs == []
        assert w.vmc.stats["commands_accepted"] == accepted  # nothing sent for it after that


def test_vmc_reset_mid_vend_is_unknown_with_one_motor_run(tmp_path: Path) -> None:
    with vmc_world(tmp_path, reset_mid_vend="keep") as w:
        resets: list[BoardReset] = []
        w.board.subscribe(lambda _a, ev: resets.append(ev) if isinstance(ev, BoardReset) else None)
        result, runs = vend_once(w, 4, 401)
        assert result is not None and result.outcome is Outcome.INTERRUPTED
        assert len(runs) == 1 and runs[0]["result"] == "INTERRUPTED"
        assert [r.interrupted_tx for r in resets][-1] == 401  # (the first: its power-on)
        result, runs = vend_once(w, 4, 402)  # after the VMC's reboot and a new sync
        assert result is not None and result.outcome is Outcome.DELIVERED and len(runs) == 1


@pytest.mark.parametrize(
    "faults",
    [
        {"drop_byte_ratio": 0.01, "bit_flip_ratio": 0.005},
        {"duplicate_frame_ratio": 1.0},
        {"drop_response_ratio": 0.4},
        {"response_delay_s": 0.7},
    ],
    ids=["loss+corruption", "duplicates", "lost-acks", "slow-ack"],
)
def test_hostile_wire_never_runs_a_vend_twice(tmp_path: Path, faults: dict[str, object]) -> None:
    with vmc_world(tmp_path, stock=20) as w:
        w.board.identify()  # synced on a clean wire; then the wire turns hostile
        for name, value in faults.items():
            w.emu.set_fault(name, value)
        outcomes: list[Outcome | None] = []
        ran = 0
        n = 2 if "response_delay_s" in faults else 4  # each slow-ACK vend costs ~5 s
        for i in range(n):
            result, runs = vend_once(w, i % 10, 500 + i, timeout=8.0)
            check_exactly_once(result, runs)
            outcomes.append(None if result is None else result.outcome)
            ran += len(runs)
        assert ran >= 1, outcomes  # the wire let some vends through: the rules were exercised
        stats = w.link.counters()
        if "duplicate_frame_ratio" in faults:
            assert stats["duplicates"] > 0
            assert outcomes.count(Outcome.DELIVERED) == n
        if "drop_response_ratio" in faults or "response_delay_s" in faults:
            assert stats["resends"] > 0  # the same number again ...
            assert w.vmc.stats["commands_ignored"] > 0  # ... which the VMC did not run twice


def test_kiosk_restart_does_not_lose_its_first_command(tmp_path: Path) -> None:
    """The new session's first number is 1; a VMC whose last accepted number is 1 ignores
    that command. The start-up sync burns it, so the first vend still runs."""
    with vmc_world(tmp_path) as w:
        result, _ = vend_once(w, 0, 601)
        assert result is not None and result.outcome is Outcome.DELIVERED
        w.link.close()
        w.vmc.last_accepted_comm = 1
        ignored = w.vmc.stats["commands_ignored"]
        w.restart_kiosk()
        assert w.board.outcome(601) is Outcome.UNKNOWN_TX  # nothing known after a restart
        result, runs = vend_once(w, 0, 602)
        assert result is not None and result.outcome is Outcome.DELIVERED and len(runs) == 1
        assert w.vmc.stats["commands_ignored"] == ignored + 1  # the sync, not the vend


def test_a_late_status_of_an_unknown_vend_is_not_taken_for_the_next(tmp_path: Path) -> None:
    """The first vend's deadline passes while its motor still turns (-> INTERRUPTED); its
    SUCCESS comes later. The next vend on the same selection waits until the VMC is quiet, so
    that SUCCESS cannot be read as its own: it is reported only for its own motor run."""
    with vmc_world(tmp_path) as w:
        w.board.identify()
        w.vmc.time_scale = 3.0  # turns of 4.5..9 s, longer than the first vend's deadline
        first = w.board.vend(7, 701, timeout=4.0)
        assert first.outcome is Outcome.INTERRUPTED
        w.vmc.time_scale = 0.1
        second, _ = vend_once(w, 7, 702, timeout=60.0)
        assert second is not None and second.outcome is Outcome.DELIVERED
        assert len(w.runs()) == 2, w.runs()  # each vend ran its own motor
        assert w.board.outcome(701) is Outcome.INTERRUPTED  # the late SUCCESS changed nothing


def test_the_config_picks_the_driver_and_nothing_above_the_cabinet_changes(
    tmp_path: Path,
) -> None:
    planogram = demo_planogram(SlotKind.SPIRAL)
    some = next(iter(planogram))
    vmc_cfg = write_kiosk_config(
        tmp_path / "vmc.toml",
        tmp_path / "tty",
        tmp_path / "data",
        hardware={"protocol": "vmc", "baud": 57600, "vmc_selection_offset": 11},
    )
    link, cabinet = build_cabinet(vmc_cfg, planogram)
    assert isinstance(link, VmcLink)
    vmc = cabinet.boards[0]
    assert isinstance(vmc, VmcBoard) and vmc.selection_offset == 11
    assert cabinet.route(some.slot_no) == (0, some.address)
    own_cfg = write_kiosk_config(tmp_path / "own.toml", tmp_path / "tty", tmp_path / "data")
    link2, cabinet2 = build_cabinet(own_cfg, planogram)
    assert isinstance(link2, SerialLink) and isinstance(cabinet2.boards[0], SerialBoard)


def test_unplugged_cable_is_offline_and_nothing_is_sent_until_it_is_back(tmp_path: Path) -> None:
    with vmc_world(tmp_path) as w:
        w.board.identify()
        w.emu.unplug()
        assert wait_for(lambda: not w.link.online, 10.0)
        with pytest.raises(BoardOffline):
            w.board.status()
        result, runs = vend_once(w, 2, 801)
        assert result is None and runs == []  # BoardOffline before anything left
        assert w.board.outcome(801) is Outcome.UNKNOWN_TX
        w.emu.replug()
        assert wait_for(lambda: w.link.online, 15.0)
        result, runs = vend_once(w, 2, 802)
        assert result is not None and result.outcome is Outcome.DELIVERED and len(runs) == 1


def _scripted(tmp_path: Path) -> tuple[ScriptedVmc, VmcLink, VmcBoard]:
    vmc = ScriptedVmc(tmp_path / "vmc")
    link = VmcLink(str(vmc.path))
    board = VmcBoard(link, slots=range(10))
    link.start()
    assert wait_for(lambda: link.port_open)
    return vmc, link, board


def _sync(vmc: ScriptedVmc) -> None:
    frame = vmc.poll()
    assert frame is not None and frame.command == VmcCommand.INFO_SYNC
    vmc.ack()
    assert vmc.poll() == VmcFrame(VmcCommand.ACK, None)  # the ACK was taken: nothing queued


def test_an_unanswered_question_that_never_left_is_withdrawn(tmp_path: Path) -> None:
    """The VMC stops polling for a while (it sends data frames, or nothing): the check
    selections asked meanwhile never left, and none of them goes out later in a burst."""
    vmc, link, board = _scripted(tmp_path)
    try:
        _sync(vmc)
        checks = board.check_slots([4, 5], timeout=0.3)
        assert [c.state for c in checks] == ["NO_ANSWER", "NO_ANSWER"]
        with pytest.raises(BoardOffline):  # the vend's check selection, asked again: unanswered
            board.vend(3, 77, timeout=1.5)
        assert board.outcome(77) is Outcome.UNKNOWN_TX  # the vend never left: free again
        assert vmc.poll() == VmcFrame(VmcCommand.ACK, None)  # nothing of it was kept
        assert link.counters()["given_up"] == 0
        assert board.reported_selections() == ([], False)  # no report came: none, not 10
    finally:
        link.close()
        vmc.close()


def test_one_sync_when_the_first_was_resent_or_stale_frames_came_first(tmp_path: Path) -> None:
    """docs/boards/vmc.md section 10 step 2: only a sync that was given up is sent again."""
    vmc, link, board = _scripted(tmp_path)
    try:
        stale = SelectionInfo(7, 300, 4, 10, 17)  # a report from the VMC's earlier session
        assert vmc.send(encode(stale, 9)) == VmcFrame(VmcCommand.ACK, None)
        done = threading.Event()
        threading.Thread(target=lambda: (board.identify(), done.set()), daemon=True).start()
        assert wait_for(lambda: board._sync_handle is not None)  # identify waits for a sync
        first = vmc.poll()
        assert first is not None and first.command == VmcCommand.INFO_SYNC
        again = vmc.poll()  # the first send was lost: the same frame again
        assert again == first
        vmc.ack()
        assert vmc.poll() == VmcFrame(VmcCommand.ACK, None)  # no second sync
        while not done.wait(0.2):  # identify waits for the report to stop: keep polling
            assert vmc.poll() == VmcFrame(VmcCommand.ACK, None)
        assert board.reported_selections() == ([7], True)
    finally:
        link.close()
        vmc.close()


def test_every_planogram_slot_is_a_slot_whatever_the_vmc_reported(tmp_path: Path) -> None:
    """The planogram has 12 slots, the VMC announces 10 selections: all 12 are checked (the
    2 it lacks fail), and the report is told apart from the planogram."""
    with vmc_world(tmp_path, slots=range(12)) as w:
        info = w.board.identify()
        assert sorted(info.slot_kinds) == list(range(12))
        selections, complete = w.board.reported_selections()
        assert (selections, complete) == (list(range(1, 11)), True)
        checks = w.board.check_slots(sorted(info.slot_kinds))
        assert [c.slot for c in checks if not c.ok] == [10, 11]
        assert all(c.state == "INVALID_SLOT" for c in checks if not c.ok)


def test_offline_reason_names_the_rule_no_frame_for_the_silence_timeout(tmp_path: Path) -> None:
    """docs/boards/vmc.md 3.1: no frame (not only no POLL) for the silence timeout."""
    vmc = ScriptedVmc(tmp_path / "vmc")
    link = VmcLink(str(vmc.path), session_config=SessionConfig(silence_timeout=0.5))
    link.start()
    try:
        assert wait_for(lambda: link.port_open)
        vmc.send(encode(SelectionInfo(7, 300, 4, 10, 17), 9))  # a data frame, then nothing
        assert wait_for(lambda: "silent" in link.last_error)
        assert link.last_error == "VMC silent (no frame for 0.5 s)" and not link.online
    finally:
        link.close()
        vmc.close()
