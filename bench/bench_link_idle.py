"""CPU the kiosk side spends on an idle link (docs/performance.md).

Starts `python -m kiosk.cli emulator --pty ...` in its own process, opens it with the real
SerialLink + SerialBoard (production LinkTiming: POLL every 150 ms), waits until the board is
identified, then measures this process's CPU time (time.process_time: user + system, all
threads) over a window of idle polling. The emulator's CPU is not counted: it is not the kiosk.

Goal: <= 0.5 % of one core. Baseline from the same run: the same process sleeping for the same
window with no link at all (the interpreter's own idle cost).

Run: .venv/bin/python bench/bench_link_idle.py [SECONDS]   (default 30)
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kiosk.hardware.board import SerialBoard  # noqa: E402
from kiosk.hardware.link import SerialLink  # noqa: E402

GOAL_PERCENT = 0.5


def cpu_percent(seconds: float) -> tuple[float, float]:
    """(CPU % of one core used by this process over ``seconds`` of wall time, wall seconds)."""
    c0, w0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    c1, w1 = time.process_time(), time.monotonic()
    return 100.0 * (c1 - c0) / (w1 - w0), w1 - w0


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    directory = Path(tempfile.mkdtemp(prefix="kbench-", dir="/tmp"))
    pty = directory / "board"
    baseline, _ = cpu_percent(min(seconds, 10.0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "kiosk.cli", "emulator", "--pty", str(pty), "--seed", "1"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while not pty.is_symlink():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("emulator did not start")
            time.sleep(0.01)
        link = SerialLink(str(pty), 115200)
        board = SerialBoard(link, 0)
        link.start()
        try:
            if not link.wait_online(10):
                raise RuntimeError(f"link did not come up: {link.last_error}")
            board.identify()
            time.sleep(1.0)  # let the start-up events (BOARD_RESET) and re-IDENTIFY settle
            before = link.counters()
            used, wall = cpu_percent(seconds)
            after = link.counters()
        finally:
            link.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        shutil.rmtree(directory, ignore_errors=True)
    polls = after["polls"] - before["polls"]
    ok = used <= GOAL_PERCENT
    print("link CPU while idle-polling (kiosk process only; emulator in its own process)")
    print(f"machine:  {platform.platform()} | {platform.machine()} | cpus={os.cpu_count()}")
    print(f"python:   {platform.python_implementation()} {platform.python_version()}")
    print(f"command:  {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"window:   {wall:.1f} s, {polls} POLLs ({polls / wall:.1f}/s), "
        f"retransmits {after['retransmits'] - before['retransmits']}"
    )
    print(f"figure:   {used:.3f} % of one core (process_time / wall time)")
    print(f"goal:     <= {GOAL_PERCENT} % of one core: {'met' if ok else 'MISSED'}")
    print(f"baseline: {baseline:.3f} % (same process, no link, sleeping {min(seconds, 10.0):g} s)")


if __name__ == "__main__":
    main()
