"""`kiosk emulator`: run the board emulator as its own process, and `kiosk emulator ctl` to send
it one control command from a shell.

Owns: argument parsing for those two commands, signal handling and clean-up of the pty symlink
and control socket. It must never contain emulator behaviour (kiosk.sim.board_emulator) or
transport code (kiosk.sim.emulator_transports). The lead wires `register()` into kiosk/cli.py;
`python -m kiosk.sim.cli_emulator ...` runs it standalone.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from kiosk import exitcodes
from kiosk.sim import modbus_devices
from kiosk.sim.board_emulator import BoardModel, EmulatedBoard, Faults
from kiosk.sim.emulator_transports import (
    DEFAULT_PTY,
    Emulator,
    PtyTransport,
    TcpTransport,
    Transport,
    send_control,
)
from kiosk.sim.vmc_emulator import VmcEmulatedBoard, VmcFaults
from kiosk.textfile import os_reason, say

__all__ = ["build_emulator", "cmd_emulator", "cmd_emulator_ctl", "main", "register"]


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common_parent: argparse.ArgumentParser,
) -> None:
    """Add `emulator` (and `emulator ctl`) to the kiosk command's subparsers."""
    p = subparsers.add_parser(
        "emulator",
        help="run the cabinet control board emulator",
        parents=[common_parent],
        description="Board side of docs/serial-protocol.md over an emulated cabinet "
        "(see docs/emulator.md).",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--pty", metavar="PATH", help=f"pseudo-terminal behind this symlink (default {DEFAULT_PTY})"
    )
    where.add_argument("--tcp", metavar="PORT", type=int, help="listen on 127.0.0.1:PORT")
    p.add_argument(
        "--protocol",
        choices=("kiosk", "vmc"),
        default="kiosk",
        help="kiosk: docs/serial-protocol.md (default); vmc: a VMC that polls the kiosk "
        "(docs/boards/vmc.md, 57600 baud, spiral only)",
    )
    p.add_argument("--cabinet", choices=("spiral", "locker"), default="spiral")
    p.add_argument("--rows", type=int, help="rows (default 6 spiral, 4 locker)")
    p.add_argument("--cols", type=int, help="columns (default 10 spiral, 6 locker)")
    p.add_argument("--stock", type=int, default=5, help="products per slot (locker: 0 or 1)")
    p.add_argument("--chilled", action="store_true", help="chilled compartment with a sensor")
    p.add_argument(
        "--baud", type=int, help="wire speed for pacing (bits/s; default 115200, vmc 57600)"
    )
    p.add_argument(
        "--time-scale", type=float, default=1.0, help="physical time factor (0.01: 100x faster)"
    )
    p.add_argument("--memory-file", metavar="PATH", help="outcome memory file (survives restarts)")
    p.add_argument("--log", metavar="PATH", help="physical log, JSON lines (appended)")
    p.add_argument("--control", metavar="PATH|PORT", help="control channel: UNIX socket or PORT")
    p.add_argument("--seed", type=int, help="seed for every random choice")
    p.add_argument("--address", type=int, default=0, help="board address 0..15 (default 0)")
    p.add_argument("--serial", help="serial number reported by IDENTIFY (default derived)")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a fault knob at start (repeatable), e.g. jammed=12 drop_byte_ratio=0.01",
    )
    modbus_devices.add_arguments(p)
    p.set_defaults(func=cmd_emulator)
    sub = p.add_subparsers(dest="emulator_command", metavar="ACTION")
    ctl = sub.add_parser(
        "ctl", help="send one control command to a running emulator", parents=[common_parent]
    )
    ctl.add_argument("--control", metavar="PATH|PORT", required=True, dest="ctl_control")
    ctl.add_argument(
        "words", nargs="+", metavar="COMMAND", help="e.g. jam 12 / status / reset lose"
    )
    ctl.set_defaults(func=cmd_emulator_ctl)


def build_emulator(args: argparse.Namespace) -> Emulator:
    """Build (not start) the emulator described by parsed `kiosk emulator` arguments."""
    vmc = getattr(args, "protocol", "kiosk") == "vmc"
    faults = VmcFaults(seed=args.seed) if vmc else Faults(seed=args.seed)
    for item in args.fault:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--fault expects NAME=VALUE, got {item!r}")
        faults.set(name.strip(), value.strip())
    if args.cabinet == "locker":
        model = BoardModel.locker(
            args.rows or 4, args.cols or 6, stock=args.stock, chilled=args.chilled
        )
    else:
        model = BoardModel.spiral(
            args.rows or 6, args.cols or 10, stock=args.stock, chilled=args.chilled
        )
    transport: Transport
    if args.tcp is not None:
        transport = TcpTransport(args.tcp)
    else:
        transport = PtyTransport(args.pty or DEFAULT_PTY)
    if vmc:
        if args.cabinet != "spiral":
            raise ValueError("--protocol vmc emulates a spiral cabinet only")
        assert isinstance(faults, VmcFaults)
        vmc_board = VmcEmulatedBoard(
            model, faults=faults, time_scale=args.time_scale, physical_log=args.log
        )
        return Emulator(vmc_board, transport, baud=args.baud or 57600, control=args.control)
    board = EmulatedBoard(
        model,
        address=args.address,
        faults=faults,
        time_scale=args.time_scale,
        memory_file=args.memory_file,
        physical_log=args.log,
        serial=args.serial,
    )
    return Emulator(board, transport, baud=args.baud or 115200, control=args.control)


def cmd_emulator(args: argparse.Namespace) -> int:
    try:
        emu = build_emulator(args)
    except (ValueError, KeyError) as e:
        print(f"kiosk emulator: {e}", file=sys.stderr)
        return exitcodes.USAGE
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    modbus: modbus_devices.ModbusSim | None = None
    try:
        try:
            emu.start()
            modbus = modbus_devices.start_from_args(args)
        except (OSError, RuntimeError, ValueError) as e:
            print(f"kiosk emulator: {e}", file=sys.stderr)
            return exitcodes.FAIL
        control = f", control {emu.control.address}" if emu.control else ""
        m = emu.board.model
        what = "VMC emulator" if isinstance(emu.board, VmcEmulatedBoard) else "board emulator"
        print(
            f"{what} listening on {emu.describe()} ({m.kind.name.lower()} "
            f"{m.rows}x{m.cols}, address {emu.board.address}, {emu.baud} baud{control})",
            flush=True,
        )
        if modbus is not None:
            print(modbus.describe(), flush=True)
        while not stop.wait(0.5):
            pass
        return exitcodes.OK
    finally:
        if modbus is not None:
            modbus.stop()
        emu.stop()
        for s, h in previous.items():
            signal.signal(s, h)


def cmd_emulator_ctl(args: argparse.Namespace) -> int:
    try:
        reply = send_control(args.ctl_control, " ".join(args.words))
    except OSError as e:
        print(
            say("emulator_ctl_failed", file=args.ctl_control, reason=os_reason(e)), file=sys.stderr
        )
        return exitcodes.FAIL
    print(reply)
    return exitcodes.OK if reply.startswith("ok") else exitcodes.FAIL


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kiosk.sim.cli_emulator")
    common = argparse.ArgumentParser(add_help=False)
    register(parser.add_subparsers(dest="command", required=True), common)
    args = parser.parse_args(["emulator", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
