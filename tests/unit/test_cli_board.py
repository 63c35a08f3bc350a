"""`kiosk board` against a board that loses answers, reboots or forgets (issue 15 req. 8).

Each test stages, with the minimal board peer on a real pty (tests/support/board_peer.py), one
defect the command had on today's protocol, and checks what a technician is told. The same
situations against the board emulator process are in tests/hil/test_cli_e2e.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kiosk import exitcodes
from kiosk.hardware.board import SerialBoard
from kiosk.hardware.cli_board import register
from kiosk.hardware.link import SerialLink
from kiosk.hardware.protocol import Command, Frame, Outcome
from tests.support.board_peer import WAIT, PeerBoard, PtyPeer, wait_until


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[PtyPeer]:
    p = PtyPeer(tmp_path / "board")
    yield p
    p.close()


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="kiosk")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS)
    register(parser.add_subparsers(dest="command"), common)
    args = parser.parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_status_survives_one_lost_answer_to_the_first_probe(
    peer: PtyPeer, capsys: pytest.CaptureFixture[str]
) -> None:
    # The first POLL's answer is lost on the wire. Before: the probe went out once and again
    # only 5 s later, so the default --connect-timeout 3 reported the board unreachable.
    peer.board.drop_replies[Command.POLL] = 1

    code, out, err = run_cli(capsys, "board", "status", "--port", str(peer.path), "--json")

    assert code == exitcodes.OK, out + err
    assert json.loads(out)["board"]["model"] == "PEER-1"
    assert peer.board.commands(Command.POLL) >= 2


def test_closing_the_link_during_a_background_identify_is_no_warning(
    peer: PtyPeer, caplog: pytest.LogCaptureFixture
) -> None:
    # `kiosk board` closes its link as soon as it has its answer. A board reset just before made
    # the callback thread start a new IDENTIFY; the close cut it short and that was logged as the
    # warning board.identify_failed, although the command's own identify had succeeded.
    link = SerialLink(str(peer.path), addresses=(0,))  # production timing, as the CLI has
    board = SerialBoard(link, 0)
    link.start()
    try:
        assert link.wait_online(WAIT)
        board.identify()
        peer.board.drop_requests[Command.IDENTIFY] = 1000  # the next IDENTIFY goes unanswered
        with peer.lock:
            peer.board.reboot()  # BOARD_RESET is the answer to the next POLL
        seen = peer.board.commands(Command.IDENTIFY)
        assert wait_until(lambda: peer.board.commands(Command.IDENTIFY) > seen)
    finally:
        with caplog.at_level(logging.DEBUG, logger="kiosk.hardware.board"):
            link.close()
    assert wait_until(lambda: "board.identify_skipped" in caplog.text)
    assert "board.identify_failed" not in caplog.text


def _reboot_after_first(command: int, memory_kept: bool) -> Callable[[PeerBoard, Frame], None]:
    """An `after_request` hook: the board reboots right after it handled the first `command`."""
    fired: list[int] = []

    def hook(board: PeerBoard, frame: Frame) -> None:
        if frame.command == command and not fired:
            fired.append(frame.seq)
            if not memory_kept:
                board.outcomes.clear()
            board.reboot(memory_kept=memory_kept)

    return hook


def test_vend_whose_answer_was_lost_in_a_reboot_asks_the_board(
    peer: PtyPeer, capsys: pytest.CaptureFixture[str]
) -> None:
    # VEND runs, its TX_REPLY is lost, the board reboots (memory kept) before the retransmission,
    # which is NAKed NOT_IDENTIFIED. The driver must not send the tx again. Before: the command
    # stopped there with "reachable": false, while the board answered and the item had dropped.
    peer.board.drop_replies[Command.VEND] = 1
    peer.board.after_request = _reboot_after_first(Command.VEND, memory_kept=True)

    code, out, err = run_cli(
        capsys, "board", "vend", "--port", str(peer.path), "--slot", "3", "--json"
    )

    assert code == exitcodes.OK, out + err
    obj = json.loads(out)
    assert (obj["ok"], obj["outcome"], obj["source"]) == (True, "DELIVERED", "query")
    assert "reachable" not in obj
    assert peer.board.executions[obj["tx"]] == 1  # asked, never sent again after the reboot
    assert peer.board.commands(Command.OUTCOME) >= 1


def test_vend_forgotten_in_a_reset_says_outcome_unknown(
    peer: PtyPeer, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same, but the reboot lost the board's memory: OUTCOME answers UNKNOWN_TX for a tx that
    # ran. Before: "the board has no record of this tx", which invites running the slot again.
    peer.board.drop_replies[Command.VEND] = 1
    peer.board.after_request = _reboot_after_first(Command.VEND, memory_kept=False)

    code, out, err = run_cli(capsys, "board", "vend", "--port", str(peer.path), "--slot", "4")

    assert code == exitcodes.FAIL, out + err
    line = out.strip().splitlines()[-1]
    assert "outcome unknown, check the pickup port" in line, line
    assert "has no record" not in line
    assert sum(peer.board.executions.values()) == 1


def test_vend_waits_for_a_board_that_stopped_answering_and_asks(
    peer: PtyPeer, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # The board goes quiet right after accepting the VEND (VEND_RESULT never fetched: the
    # driver gives up on the board). When it answers again, the command asks OUTCOME.
    peer.board.complete_vends = False
    caplog.set_level(logging.INFO, logger="kiosk.hardware.cli_board")
    results: list[tuple[int, str, str]] = []

    def technician() -> None:
        argv = ("board", "vend", "--port", str(peer.path), "--slot", "5", "--timeout", "120")
        results.append(run_cli(capsys, *argv))

    t = threading.Thread(target=technician, daemon=True)
    t.start()
    assert peer.board.accepted.wait(WAIT)
    with peer.lock:
        peer.board.silent = True
    # After all transmissions of a POLL (or of an OUTCOME) went unanswered the driver gives up
    # on the board. The command must then wait for the board and ask (before: it ended at once
    # with "cannot reach board", although the board came back and the item had dropped).
    assert wait_until(lambda: not t.is_alive() or "board.asking_outcome" in caplog.text, timeout=90)
    with peer.lock:
        [tx] = [tx for tx in peer.board.outcomes]
        peer.board.finish(tx, Outcome.DELIVERED)
        peer.board.silent = False
    t.join(60)
    assert not t.is_alive()
    code, out, err = results[0]
    assert code == exitcodes.OK, out + err
    assert f"DELIVERED (drop sensor confirmed) tx={tx}" in out
    assert peer.board.executions[tx] == 1


def test_without_port_or_config_says_which_to_give(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "kiosk.toml"
    monkeypatch.setenv("KIOSK_LANG", "en")
    code, out, err = run_cli(capsys, "board", "status", "--config", str(missing))
    assert code == exitcodes.USAGE
    assert f"no kiosk config at {missing}" in err and "--port" in err, out + err
    monkeypatch.setenv("KIOSK_LANG", "zh")
    code, out, err = run_cli(capsys, "board", "status", "--config", str(missing))
    assert code == exitcodes.USAGE
    assert f"{missing}：没有这台售货机的配置" in err and "--port" in err, out + err


def test_an_open_service_door_is_shown_and_is_not_a_fault(
    peer: PtyPeer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A technician tests with the service door open: `board status` says so plainly and,
    as its help says, exits 1 only on a fault the board reports (the door is none)."""
    with peer.lock:
        peer.board.service_door_open = True
    code, out, err = run_cli(capsys, "board", "status", "--port", str(peer.path))
    assert code == exitcodes.OK, out + err
    assert "service door: OPEN" in out and "faults: none" in out, out
