"""`kiosk run` stops cleanly on SIGTERM and on SIGINT, in every display mode (issue 16, req. 6).

A real `python -m kiosk.cli run` child against the board emulator on a pty (in this process):
full screen (`[ui] fullscreen = true`) and window on an Xvfb (the `xvfb` fixture of
tests/support/xvfb.py), and headless. The test waits until the kiosk is selling (the board link
is up and, with a screen, the UI loop turns), sends the signal and measures, with
time.monotonic, how long the process takes to exit; it must exit with code 0.

The goal is 5 s. The assertion is STOP_LIMIT_S (10 s) so that a loaded 2-core machine running
other suites beside this one cannot fail it on scheduling alone; the measured figures are in
docs/performance.md ("Stopping the kiosk") and every failure message carries the measured
seconds. Before the fix full screen never stopped (killed after 60 s).

A stop while a vend is running (slow motors): the kiosk leaves at once without waiting for the
motor; the next start recovers the order by asking the board for the outcome of the vend in
flight: every order closes, every vend ran its motor exactly once (the emulator's physical
log), the ledger chain is intact.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk.sim.board_emulator import BoardModel, EmulatedBoard
from kiosk.sim.emulator_transports import Emulator, PtyTransport
from tests.support.child import Child
from tests.support.config import kiosk_config, write_config
from tests.support.paths import child_env
from tests.support.store import seed_store

STOP_LIMIT_S = 10.0  # asserted; the goal (5 s) and the measured figures: docs/performance.md
KILL_AFTER_S = 30.0  # a kiosk that has not stopped by then is killed and the test fails
READY_S = 60.0
WMCLASS = "kiosk-stop"


class Board:
    """The board emulator on a pty in this process, with a physical log."""

    def __init__(self, tmp: Path, time_scale: float) -> None:
        self.pty = tmp / "board"
        self.log = tmp / "physical.jsonl"
        self.emu = Emulator(
            EmulatedBoard(
                BoardModel.spiral(6, 10, stock=5),
                time_scale=time_scale,
                memory_file=tmp / "board-memory",
                physical_log=self.log,
            ),
            PtyTransport(self.pty),
        ).start()

    def motor_runs(self) -> list[int]:
        if not self.log.exists():
            return []
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [e["tx"] for e in map(json.loads, lines) if e.get("event") == "motor_run"]


@pytest.fixture
def board(tmp_path: Path) -> Iterator[Board]:
    b = Board(tmp_path, time_scale=0.01)
    yield b
    b.emu.stop()


@pytest.fixture
def slow_board(tmp_path: Path) -> Iterator[Board]:
    b = Board(tmp_path, time_scale=3.0)  # a motor turn takes seconds: a stop lands mid-vend
    yield b
    b.emu.stop()


def _config(tmp: Path, board: Board, **ui: object) -> Path:
    data = tmp / "kiosk-data"
    if not data.exists():
        seed_store(data)
    cfg = kiosk_config(port=board.pty, data_dir=data, ui={"width": 540, "height": 960, **ui})
    return write_config(tmp / "kiosk.toml", cfg)


def _start(cfg: Path, *args: str, display: str | None = None) -> Child:
    extra = {}
    if display is not None:  # WM_CLASS: what `xdotool search` finds reliably (test_x11.py)
        extra = {"DISPLAY": display, "SDL_VIDEODRIVER": "x11", "SDL_VIDEO_X11_WMCLASS": WMCLASS}
    env = child_env("KIOSK_CRASH", "NOTIFY_", "SDL_", "DISPLAY", SDL_AUDIODRIVER="dummy", **extra)
    argv = [sys.executable, "-m", "kiosk.cli", "-v", "run", "--config", str(cfg), *args]
    return Child(argv, env, cfg.parent)


def _stop(child: Child, sig: signal.Signals) -> float:
    """Send `sig`, return the seconds until the process exited (killed after KILL_AFTER_S)."""
    t0 = time.monotonic()
    child.proc.send_signal(sig)
    try:
        child.proc.wait(timeout=KILL_AFTER_S)
    except subprocess.TimeoutExpired:
        child.proc.kill()
        child.proc.wait(5)
        pytest.fail(f"{sig.name}: still running after {KILL_AFTER_S:.0f} s; {child.dump()}")
    took = time.monotonic() - t0
    print(f"{sig.name}: exited in {took:.2f} s")
    return took


def _ready(child: Child, display: str | None) -> None:
    """Selling: the board link is up and (with a screen) the UI's window exists."""
    child.wait_line(lambda s: "link.online" in s, READY_S, err=True)
    if display is not None:
        xdotool = shutil.which("xdotool")
        if xdotool is None:
            pytest.fail("xdotool is not installed: sudo apt-get install xdotool")
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            found = subprocess.run(
                [xdotool, "search", "--class", f"^{WMCLASS}$"],
                env={"DISPLAY": display},
                capture_output=True,
                check=False,
            )
            if found.returncode == 0 and found.stdout.strip():
                break
            assert child.proc.poll() is None, child.dump()
            time.sleep(0.1)
        else:
            pytest.fail(f"no {WMCLASS} window; {child.dump()}")
    time.sleep(1.0)  # the UI loop asleep in pygame.event.wait, the usual state


MODES = {
    "fullscreen": {"fullscreen": True},
    "window": {"fullscreen": False},
}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("mode", ["fullscreen", "window", "headless"])
def test_signal_stops_kiosk_run(
    tmp_path: Path,
    board: Board,
    xvfb: str,  # the fixture (tests/support/xvfb.py, via tests/ui/conftest.py)
    mode: str,
    sig: signal.Signals,
) -> None:
    headless = mode == "headless"
    cfg = _config(tmp_path, board, **MODES.get(mode, {}))
    child = _start(cfg, *(["--headless"] if headless else []), display=xvfb)
    try:
        _ready(child, None if headless else xvfb)
        took = _stop(child, sig)
        assert child.proc.returncode == 0, f"{mode} {sig.name}: exit code; {child.dump()}"
        assert took <= STOP_LIMIT_S, (
            f"{mode} {sig.name}: stopped in {took:.2f} s (goal 5 s, limit {STOP_LIMIT_S} s)"
        )
    finally:
        child.stop()


def test_stop_during_a_vend_is_recovered_at_next_start(tmp_path: Path, slow_board: Board) -> None:
    cfg = _config(tmp_path, slow_board)
    buy = ["--headless", "--script", "buy3", "--test-payments", "--timeout", "90"]
    first = _start(cfg, *buy)
    try:
        first.wait_line(lambda s: s.startswith("pay "), READY_S)
        first.wait_line(lambda s: "dispensing" in s, READY_S)
        deadline = time.monotonic() + READY_S
        while not slow_board.emu.board.busy_tx and time.monotonic() < deadline:
            time.sleep(0.05)
        assert slow_board.emu.board.busy_tx, f"no motor turning; {first.dump()}"
        time.sleep(0.5)  # mid-turn
        took = _stop(first, signal.SIGTERM)
        assert first.proc.returncode == 0, first.dump()
        assert took <= STOP_LIMIT_S, f"stopped mid-vend in {took:.2f} s (goal 5 s)"
    finally:
        first.stop()

    second = _start(cfg, *buy)
    try:
        second.proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        second.proc.kill()
        pytest.fail(f"the resumed run did not finish; {second.dump()}")
    out = second.lines()
    # no province in this test (the config's broker does not answer): the sale went through and
    # its record waits in the outbox, so buy3 exits 3 (UNREACHABLE), README "Exit codes"
    assert second.proc.returncode == 3, second.dump()
    closed = [s for s in out if s.startswith("order ")]
    assert closed and all("refund due 0 fen" in s for s in closed), second.dump()
    assert any(s.startswith("ledger:") and s.endswith(" 0 problems") for s in out), out
    runs = slow_board.motor_runs()
    assert len(runs) == 3 and len(set(runs)) == 3, f"motor runs by tx: {runs}"
    recovered = [s for s in second.lines(err=True) if "event=controller.recovery" in s]
    assert recovered and "unfinished=0" not in recovered[0], second.dump()
