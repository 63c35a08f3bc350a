"""A real X server for the UI tests: Xvfb on a free display number (the `xvfb` fixture,
registered by tests/ui/conftest.py). A missing tool is a failure naming the package to install,
never a skip (scripts/test.sh installs xvfb and xdotool)."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
from collections.abc import Iterator

import pytest


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: sudo apt-get install {package}")
    return path


@pytest.fixture
def xvfb() -> Iterator[str]:
    """Xvfb picks its own free display and tells us (`-displayfd`): no race with other test
    processes starting an X server at the same moment (two of them once took the same number,
    and the second's UI died with "x11 not available" when the first one's server stopped)."""
    exe = need("Xvfb", "xvfb")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [exe, "-displayfd", str(write_fd), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=(write_fd,),
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as r:
            ready, _, _ = select.select([r], [], [], 30)
            line = r.readline().strip() if ready else b""
        if not line.isdigit():
            proc.kill()
            pytest.fail("Xvfb did not start (no display number within 30 s)")
        n = int(line)
        yield f":{n}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
