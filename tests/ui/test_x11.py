"""End to end in a real X server: Xvfb + the UI in a subprocess, clicked with xdotool.

Xvfb and xdotool must be installed (the CI test command installs them); a missing tool is a
failure with the package to install, not a skip.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.xvfb import need as _need

ROOT = Path(__file__).resolve().parents[2]


class _Lines:
    def __init__(self, stream) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self.q.put(line.strip())

    def expect(self, wanted: str, timeout: float = 15.0) -> None:
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.q.get(timeout=0.1)
            except queue.Empty:
                continue
            seen.append(line)
            if line == wanted:
                return
        pytest.fail(f"did not see {wanted!r}; got {seen}")


def test_click_in_a_real_window_changes_screen(xvfb: str) -> None:
    xdotool = _need("xdotool", "xdotool")
    # SDL writes WM_NAME with type "UTF-8", which `xdotool search --name` does not read
    # (getwindowname does); the WM_CLASS set through SDL's hint is found reliably.
    env = dict(
        os.environ,
        DISPLAY=xvfb,
        SDL_VIDEODRIVER="x11",
        SDL_AUDIODRIVER="dummy",
        SDL_VIDEO_X11_WMCLASS="kiosk-ui",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    ui = subprocess.Popen(
        [sys.executable, "-m", "kiosk.sim.ui_demo", "--size", "800x480", "--windowed", "--trace"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        lines = _Lines(ui.stdout)
        lines.expect("screen=attract")
        wid = subprocess.run(
            [xdotool, "search", "--sync", "--class", "^kiosk-ui$"],
            env=env,
            capture_output=True,
            text=True,
            timeout=15,
            check=True,
        ).stdout.split()[0]
        title = subprocess.run(
            [xdotool, "getwindowname", wid],
            env=env,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        assert title == "kiosk-ui"
        subprocess.run(
            [xdotool, "mousemove", "--window", wid, "400", "300", "click", "1"],
            env=env,
            check=True,
            timeout=10,
        )
        lines.expect("screen=catalog")
        # the cart button sits at the bottom right of the catalog
        subprocess.run(
            [xdotool, "mousemove", "--window", wid, "770", "450", "click", "1"],
            env=env,
            check=True,
            timeout=10,
        )
        lines.expect("screen=cart")
    finally:
        ui.terminate()
        try:
            ui.wait(timeout=5)
        except subprocess.TimeoutExpired:
            ui.kill()
        err = ui.stderr.read() if ui.stderr else ""
    assert "Traceback" not in err, err
