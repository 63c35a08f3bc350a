"""Fixtures for the hardware-in-the-loop tests (the harness itself is tests/support/hil.py).

- `wire`: parameter, one of clean / lossy / bytewise / delayed (tests/support/hil.py says
  what each exercises); every test that takes `make_rig` runs once per wire.
- `make_rig(**emulator_options)`: starts `python -m kiosk.cli emulator` in its own process
  behind a pty (plus the byte relay for `bytewise`), opens it with SerialLink + SerialBoard.
- `emulator_process(**options)`: just the emulator process, for tests that bring their own
  kiosk side (the CLI and raw-peer tests).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.hil import WIRES, EmulatorProcess, Rig


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory under /tmp (UNIX socket paths are limited to ~107 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="khil-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=WIRES)
def wire(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_rig(short_dir: Path, wire: str) -> Iterator[Callable[..., Rig]]:
    """``make_rig(time_scale=..., stock=..., faults=[...])``: emulator + kiosk over ``wire``."""
    rigs: list[Rig] = []

    def make(**opts: Any) -> Rig:
        rig = Rig(short_dir, wire, **opts)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


@pytest.fixture
def emulator_process(short_dir: Path) -> Iterator[Callable[..., EmulatorProcess]]:
    """``emulator_process(**opts)``: a started emulator process, stopped at the end."""
    procs: list[EmulatorProcess] = []

    def make(**opts: Any) -> EmulatorProcess:
        p = EmulatorProcess(short_dir, **opts).start()
        procs.append(p)
        return p

    yield make
    for p in procs:
        p.stop()
