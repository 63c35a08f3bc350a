"""The issue's "done when": `kiosk emulator --pty PATH` in one process, `kiosk board vend --port
PATH --slot 12` in another, prints DELIVERED and exits 0; `kiosk board status --json` parses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

from tests.support.hil import REPO, EmulatorProcess


def kiosk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kiosk.cli", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_board_vend_and_status_against_emulator_process(
    emulator_process: Callable[..., EmulatorProcess],
) -> None:
    emu = emulator_process(time_scale=0.01)

    vend = kiosk("board", "vend", "--port", str(emu.pty), "--slot", "12")

    assert vend.returncode == 0, vend.stdout + vend.stderr
    assert "DELIVERED" in vend.stdout, vend.stdout
    [run] = [e for e in emu.physical_log() if e["event"] == "motor_run"]
    assert run["slot"] == 12 and run["result"] == "DELIVERED"
    assert f"tx={run['tx']}" in vend.stdout

    status = kiosk("board", "status", "--port", str(emu.pty), "--json")

    assert status.returncode == 0, status.stdout + status.stderr
    obj = json.loads(status.stdout)
    assert obj["ok"] is True
    assert obj["board"]["model"] == "KB-EMU" and obj["board"]["slot_count"] == 60
    assert obj["status"]["busy"] is False and obj["status"]["faults"] == []
    assert 12 in obj["status"]["present"]
