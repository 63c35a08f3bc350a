"""`kiosk board` against a board that loses answers, reboots or forgets (issue 15 req. 8).

Each test stages, with the minimal board peer on a real pty (tests/support/board_peer.py), one
defect the command had on today's protocol, and checks what a technician is told. The same
situations against the board emulator process are in tests/hil/test_cli_e2e.py.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk import exitcodes
from kiosk.hardware.board import SerialBoard
from kiosk.hardware.cli_board import register
from kiosk.hardware.link import SerialLink
from kiosk.hardware.protocol import Command
from tests.support.board_peer import WAIT, PtyPeer, wait_until


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
