"""A VMC world for driver tests: the VMC emulator (kiosk.sim.vmc_emulator) on a real OS pty,
the kiosk's ``VmcLink`` on the other end and a ``VmcBoard`` over it, plus the physical-log
checks the exactly-once tests share."""

from __future__ import annotations

import contextlib
import os
import select
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk.hardware.vmc_driver import VmcBoard
from kiosk.hardware.vmc_link import VmcLink
from kiosk.hardware.vmc_protocol import ACK_FRAME, POLL_FRAME, VmcFrame, VmcFrameDecoder
from kiosk.sim.board_emulator import BoardModel
from kiosk.sim.emulator_transports import Emulator, PtyTransport
from kiosk.sim.vmc_emulator import VmcEmulatedBoard, VmcFaults
from tests.support.board_peer import WAIT

TIME_SCALE = 0.1  # motor turns of 0.15..0.3 s


@dataclass
class VmcWorld:
    emu: Emulator
    vmc: VmcEmulatedBoard
    link: VmcLink
    board: VmcBoard
    pty: Path

    def runs(self) -> list[dict[str, Any]]:
        return [e for e in self.emu.physical_log if e["event"] == "motor_run"]

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until no motor runs and no data frame waits (a run may outlive an unknown vend)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            snap = self.vmc.snapshot()
            if not snap["busy"] and not snap["pending_data_frames"]:
                return
            time.sleep(0.02)
        raise AssertionError(f"the VMC emulator stayed busy: {self.vmc.snapshot()}")

    def restart_kiosk(self) -> None:
        """The kiosk process restarts: a new link and driver on the same pty and VMC."""
        self.link.close()
        self.link = VmcLink(str(self.pty))
        self.board = VmcBoard(self.link, slots=range(self.vmc.model.slot_count))
        self.link.start()


@contextmanager
def vmc_world(
    tmp_path: Path, *, stock: int = 5, slots: range = range(10), **faults: Any
) -> Iterator[VmcWorld]:
    """The emulator has 10 selections (1-10); ``slots``: the planogram's board slots."""
    f = VmcFaults(seed=7)
    for name, value in faults.items():
        f.set(name, value)
    vmc = VmcEmulatedBoard(BoardModel.spiral(2, 5, stock=stock), faults=f, time_scale=TIME_SCALE)
    pty = tmp_path / "vmc"
    emu = Emulator(vmc, PtyTransport(pty), baud=57600).start()
    link = VmcLink(str(pty))
    board = VmcBoard(link, slots=slots)
    link.start()
    world = VmcWorld(emu, vmc, link, board, pty)
    try:
        yield world
    finally:
        world.link.close()
        emu.stop()


class ScriptedVmc:
    """The VMC's end of a real OS pty, driven frame by frame by a test (built on the codec,
    not the emulator): the test decides when a POLL or a data frame goes out and reads the
    kiosk's one answer to it. ``path`` is a symlink to the slave, for ``VmcLink``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        path.symlink_to(os.ttyname(self.slave))
        self._decoder = VmcFrameDecoder()

    def send(self, data: bytes) -> VmcFrame | None:
        """Write ``data``; the kiosk's answer (None when none is due: an ACK from the VMC)."""
        os.write(self.master, data)
        if data == ACK_FRAME:
            return None
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            frames = list(self._decoder.frames())
            if frames:
                assert len(frames) == 1, f"more than one answer: {frames}"
                return frames[0]
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                self._decoder.feed(os.read(self.master, 4096))
        raise AssertionError(f"no answer from the kiosk to {data.hex(' ')}")

    def poll(self) -> VmcFrame | None:
        return self.send(POLL_FRAME)

    def ack(self) -> None:
        self.send(ACK_FRAME)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)
