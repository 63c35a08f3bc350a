"""A real X server for the UI tests: Xvfb on a free display number (the `xvfb` fixture,
registered by tests/ui/conftest.py). A missing tool is a failure naming the package to install,
never a skip (scripts/test.sh installs xvfb and xdotool)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: sudo apt-get install {package}")
    return path


def free_display() -> int:
    for n in range(90, 190):
        if not Path(f"/tmp/.X{n}-lock").exists() and not Path(f"/tmp/.X11-unix/X{n}").exists():
            return n
    pytest.fail("no free X display number in :90-:189")


@pytest.fixture
def xvfb() -> Iterator[str]:
    exe = need("Xvfb", "xvfb")
    n = free_display()
    proc = subprocess.Popen(
        [exe, f":{n}", "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{n}").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"Xvfb :{n} did not start")
        time.sleep(0.05)
    try:
        yield f":{n}"
    finally:
        proc.terminate()
        proc.wait(timeout=5)
