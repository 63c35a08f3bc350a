"""VMC protocol timing over a real pty (docs/boards/vmc.md, docs/performance.md).

Starts `python -m kiosk.cli emulator --protocol vmc --pty ... --time-scale 0.0001` (the motor
takes ~0.2 ms) as its own process, opens it with the real VmcLink + VmcBoard and runs N vends.
Measures:

* POLL -> answer (ACK or a command), seen by the VMC emulator: from the POLL queued on its
  wire to the answer decoded, both wire times included. Goal: every answer (max) within the
  protocol's 100 ms budget.
* vend command left -> final dispensing status, seen by the kiosk (session events): the
  command (8 bytes), the VMC's ACK (5), "dispensing" and "success" (9 each) and the kiosk's two
  ACKs (5 each) = 41 bytes on a 57600 8N1 wire, plus the emulator's 10 ms gap between two data
  frames: that is the floor. Goal: median <= 1.5x floor.
* vend queued -> final status: the same plus the wait for the next POLL (reported, no goal:
  it depends on when the VMC polls, at most one poll interval).

Run: .venv/bin/python bench/bench_vmc.py [N]   (N vends, default 60)
"""

from __future__ import annotations

import json
import logging
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kiosk.hardware.vmc_driver import VmcBoard  # noqa: E402
from kiosk.hardware.vmc_link import VmcLink  # noqa: E402
from kiosk.hardware.vmc_protocol import (  # noqa: E402
    CommandSent,
    DispensingStatus,
    Received,
    SelectToBuy,
    SessionEvent,
)
from kiosk.sim.emulator_transports import send_control  # noqa: E402

BAUD = 57600
POLL_S = 0.2
DATA_GAP_S = 0.010
WIRE_BYTES = 8 + 5 + 9 + 5 + 9 + 5
GOAL_RATIO = 1.5


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    d = Path(tempfile.mkdtemp(prefix="bench-vmc-"))
    pty, ctl = d / "vmc", d / "ctl.sock"
    emu = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kiosk.cli",
            "emulator",
            "--protocol",
            "vmc",
            "--pty",
            str(pty),
            "--control",
            str(ctl),
            "--time-scale",
            "0.0001",
            "--stock",
            "50",
            "--rows",
            "2",
            "--cols",
            "5",
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not (pty.exists() and ctl.exists()):
            if time.monotonic() > deadline or emu.poll() is not None:
                raise RuntimeError("emulator did not start")
            time.sleep(0.05)
        return measure(pty, ctl, n)
    finally:
        emu.send_signal(signal.SIGTERM)
        emu.wait(10)


def measure(pty: Path, ctl: Path, n: int) -> int:
    logging.getLogger("kiosk.hardware.vmc").setLevel(logging.ERROR)  # vends bypass the driver
    link = VmcLink(str(pty))
    board = VmcBoard(link, slots=range(10))
    marks: dict[str, float] = {}
    done = threading.Event()
    left: list[float] = []
    queued: list[float] = []

    def on_event(ev: SessionEvent) -> None:
        now = time.monotonic()
        if isinstance(ev, CommandSent) and isinstance(ev.message, SelectToBuy):
            marks.setdefault("left", now)
        elif (
            isinstance(ev, Received)
            and isinstance(ev.message, DispensingStatus)
            and ev.message.is_final
            and "left" in marks
        ):
            left.append(now - marks["left"])
            queued.append(now - marks["queued"])
            done.set()

    link.add_listener(on_event)
    link.start()
    try:
        board.identify()
        for i in range(n):
            marks.clear()
            done.clear()
            # the driver's own step 5 (docs/boards/vmc.md 10), timed from the queue
            marks["queued"] = time.monotonic()
            link.queue(SelectToBuy(i % 10 + 1))
            if not done.wait(10):
                raise RuntimeError("no final status")
        snap = json.loads(send_control(str(ctl), "status")[3:])
    finally:
        link.close()
    report(left, queued, snap["poll_answer_ms"])
    return 0


def report(left: list[float], queued: list[float], answers: dict[str, float]) -> None:
    wire = WIRE_BYTES * 10 / BAUD
    floor = wire + DATA_GAP_S
    med = statistics.median(left)
    p95 = sorted(left)[int(0.95 * len(left))]
    qmed = statistics.median(queued)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(
        f"POLL -> answer (VMC's view, {answers['n']} POLLs): p50 {answers['p50']} ms, "
        f"p95 {answers['p95']} ms, max {answers['max']} ms; budget 100 ms: "
        f"{'met' if answers['max'] <= 100 else 'MISSED'}"
    )
    print(
        f"vend command left -> final status (median of {len(left)}; p95 {p95 * 1000:.2f} ms): "
        f"{med * 1000:.2f} ms = {med / floor:.2f}x floor {floor * 1000:.2f} ms "
        f"({WIRE_BYTES} bytes {wire * 1000:.2f} ms + VMC data gap {DATA_GAP_S * 1000:.0f} ms); "
        f"goal <= {GOAL_RATIO}x: {'met' if med <= GOAL_RATIO * floor else 'MISSED'}"
    )
    print(
        f"vend queued -> final status (median, no goal): {qmed * 1000:.2f} ms (queued right "
        f"after check selection's answer; the VMC polls again {DATA_GAP_S * 1000:.0f} ms after "
        f"its last data frame, else every {POLL_S * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    sys.exit(main())
