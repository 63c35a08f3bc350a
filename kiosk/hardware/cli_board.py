"""`kiosk board ...`: a technician's direct line to the cabinet's boards, whatever their protocol.

Owns: the ``board`` subcommand's arguments, its human and JSON output and its exit codes
(0 ok, 1 the board answered and says not ok, 2 no config / bad config, 3 the board cannot be
reached). The target is the kiosk's own cabinet from its config (our protocol, a VMC, Modbus
lock boards: kiosk/hardware/cli_target.py, built by the composition root's `build_cabinet`), or
with `--port` one board of our own protocol. Slots are the planogram's numbers, as on the
screen, whenever the kiosk's store has a planogram; each protocol answers what it can (a VMC
and a lock board keep no outcome memory: `outcome` says so). `selftest` checks slots without
running them; `selftest --drop` runs them, says first that items will drop, and takes every
item that dropped off the kiosk's count (a TEST_VEND stock change). After a tx whose
fate the driver could not learn (an answer lost, a reboot, a board that stopped answering) it
waits for the board and asks OUTCOME, never sends the tx again; a tx the board then has no record
of is reported as "outcome unknown, check the pickup port", never as "not run".
`selftest` hands its result to the `on_selftest` hook given to `register` (kiosk/cli.py queues
it as an `events/selftest` record in the kiosk's store: this layer knows no store nor outbox).
Must never: decide anything itself (it calls the ``BoardDriver`` API and reports what the board
said), reuse a tx (each vend gets a fresh one from the clock, printed before the motor turns), or
run while the kiosk service owns the port (the port is opened exclusively, so that fails loudly).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from kiosk import exitcodes
from kiosk.clock import Clock, SystemClock
from kiosk.hardware.board import (
    DEFAULT_TEST_TIMEOUT,
    DEFAULT_UNLOCK_TIMEOUT,
    DEFAULT_VEND_TIMEOUT,
    SUCCESSES,
    BoardDriver,
    BoardError,
    BoardInfo,
    BoardOffline,
    BoardStatus,
    BoardVendResult,
    SlotCheck,
    VendTimeout,
)
from kiosk.hardware.cli_target import (
    BuildCabinet,
    PortMissing,
    Target,
    TargetError,
    open_target,
)
from kiosk.hardware.cli_text import (
    describe_check,
    describe_outcome,
    kind_name,
    protocol_name,
    reason_words,
    said,
)
from kiosk.hardware.protocol import Outcome, WireSlotKind
from kiosk.hardware.vmc_driver import VmcBoard, VmcCommandKind
from kiosk.log import log_event
from kiosk.textfile import say

__all__ = ["SelftestHook", "board_lines", "confirmed", "describe", "describe_run", "register"]

log = logging.getLogger("kiosk.hardware.cli_board")

# (args, started_at, finished_at, results): results as in the JSON output (slot, outcome, ok,
# description); returns a line for people, or None when nothing was done.
SelftestHook = Callable[[argparse.Namespace, float, float, list[dict[str, Any]]], str | None]

_DESCRIPTIONS: dict[Outcome, str] = {
    Outcome.ACCEPTED: "started",
    Outcome.IN_PROGRESS: "still running",
    Outcome.DELIVERED: "drop sensor confirmed",
    Outcome.NOTHING_DROPPED: "motor turned, drop sensor saw nothing",
    Outcome.JAMMED: "motor stalled or did not reach its home switch",
    Outcome.MOTOR_MISSING: "no motor connected at this slot",
    Outcome.SLOT_EMPTY: "presence sensor says empty; motor not run",
    Outcome.DOOR_OPENED_AND_CLOSED: "door opened and closed again",
    Outcome.DOOR_NOT_OPENED: "unlocked, but the door was not opened; relocked",
    Outcome.DOOR_NOT_CLOSED: "door opened, still open at the board's timeout",
    Outcome.BUSY: "another transaction is running; not started",
    Outcome.UNKNOWN_TX: (
        "the board has no record of this tx: never run if the board kept its memory through "
        "every reset since, else unknown: check the pickup port"
    ),
    Outcome.INVALID_SLOT: "no such slot on this board",
    Outcome.WRONG_SLOT_KIND: "wrong slot kind (vend is for spiral/belt slots, unlock for lockers)",
    Outcome.TX_CONFLICT: "this tx was already used for another command or slot",
    Outcome.REFUSED_FAULT: "refused: the board has an active fault (service door open?)",
    Outcome.INTERRUPTED: (
        "how it ended is not known (a reset or a lost report): the item may or may not have "
        "dropped, check the pickup port"
    ),
    Outcome.LOCK_FAILED: "the lock did not release",
}
# How often an uncertain tx's OUTCOME is asked again while the board says IN_PROGRESS.
_ASK_AGAIN = 0.5
# A locker test passes when the lock released, whether or not someone opened the door.
_TEST_OK = SUCCESSES | {Outcome.DOOR_NOT_OPENED}


# What a protocol without outcome memory says to `kiosk board outcome`.
_NO_MEMORY = {
    "vmc": (
        "a VMC keeps no record of vends (its protocol has no transaction ids): "
        "`kiosk board outcome` cannot tell what tx {tx} did; check the pickup port"
    ),
    "modbus": (
        "a Modbus lock board keeps no record of releases: "
        "`kiosk board outcome` cannot tell what tx {tx} did; check the door"
    ),
}


def describe(outcome: Outcome) -> str:
    return _DESCRIPTIONS.get(outcome, outcome.name.lower())


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common_parent: argparse.ArgumentParser,
    on_selftest: SelftestHook | None = None,
    build_cabinet: BuildCabinet | None = None,
) -> None:
    """Add ``board`` with ``status|vend|unlock|outcome|selftest`` to the ``kiosk`` parser.
    `on_selftest`: given every finished selftest's result (kiosk/cli.py: the outbox record).
    `build_cabinet`: kiosk.app.build_cabinet (the kiosk's cabinet from its config); without
    it only `--port` works."""
    parents = [common_parent, _connection_options()]

    board = subparsers.add_parser(
        "board", help="talk to the cabinet's boards directly", parents=[common_parent]
    )
    board.set_defaults(build_cabinet=build_cabinet)
    sub = board.add_subparsers(dest="board_command", metavar="ACTION", required=True)

    st = sub.add_parser(
        "status",
        help="identity and status of each board; exit 1 when a board reports a fault (an open "
        "door is shown as OPEN but is not a fault: the technician has it open while testing)",
        parents=parents,
    )
    st.set_defaults(func=cmd_status)

    for name, helptext, default_timeout, handler in (
        (
            "vend",
            "run one slot: a spiral/belt drops one item, a locker releases its lock "
            "(exit 1 unless delivered)",
            DEFAULT_VEND_TIMEOUT,
            cmd_vend,
        ),
        (
            "unlock",
            "release one locker door (exit 1 unless opened and closed)",
            DEFAULT_UNLOCK_TIMEOUT,
            cmd_unlock,
        ),
    ):
        p = sub.add_parser(name, help=helptext, parents=parents)
        p.add_argument(
            "--slot",
            type=int,
            required=True,
            help="slot number as on the screen (the board's own number without a planogram)",
        )
        p.add_argument(
            "--tx", type=_tx, help="transaction id (default: a fresh one from the clock)"
        )
        p.add_argument(
            "--timeout",
            type=float,
            default=default_timeout,
            metavar="S",
            help=f"wait this long for the result (default {default_timeout:g} s)",
        )
        p.set_defaults(func=handler)

    oc = sub.add_parser(
        "outcome",
        help="what the board recorded for a tx (exit 1 unless delivered)",
        parents=parents,
    )
    oc.add_argument("--tx", type=_tx, required=True)
    oc.set_defaults(func=cmd_outcome)

    _selftest_parser(sub, parents, on_selftest)


def _selftest_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
    on_selftest: SelftestHook | None,
) -> None:
    stt = sub.add_parser(
        "selftest",
        help="check every slot (or --slots) without running it; --drop runs each once",
        parents=parents,
    )
    stt.add_argument("--slots", type=_slot_list, help="e.g. 10-19 or 1,3,5-7 (default: all)")
    stt.add_argument(
        "--drop",
        action="store_true",
        help="run each slot's motor (drops one item per slot) or lock; every item dropped "
        "is taken off the kiosk's count",
    )
    stt.add_argument(
        "--yes",
        action="store_true",
        help="with --drop: do not ask for a confirmation (required when stdin is not a terminal)",
    )
    stt.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TEST_TIMEOUT,
        metavar="S",
        help=f"per slot (default {DEFAULT_TEST_TIMEOUT:g} s)",
    )
    stt.add_argument(
        "--no-queue",
        action="store_true",
        help="do not queue the result for the province (default: queued in the store of the "
        "kiosk config, when there is one)",
    )
    stt.set_defaults(func=cmd_selftest, on_selftest=on_selftest)


def _connection_options() -> argparse.ArgumentParser:
    """--port, --baud, --address, --json, --connect-timeout: every ``board`` action has them."""
    conn = argparse.ArgumentParser(add_help=False)
    conn.add_argument(
        "--port",
        metavar="URL",
        help="a board of our own protocol at this serial device or pyserial URL: "
        "/dev/ttyUSB0, a pty path, socket://host:port (default: the kiosk's cabinet from "
        "its config, any protocol)",
    )
    conn.add_argument(
        "--baud", type=int, default=115200, help="with --port: baud rate (default 115200)"
    )
    conn.add_argument(
        "--address", type=_address, default=0, help="with --port: board address, 0 main, 1..15"
    )
    conn.add_argument("--json", action="store_true", help="print one JSON object")
    conn.add_argument(
        "--connect-timeout",
        type=float,
        default=3.0,
        metavar="S",
        help="how long to wait for the board to answer (default 3 s)",
    )
    return conn


# ---------------------------------------------------------------------------- argument types


def _address(text: str) -> int:
    value = int(text, 0)
    if not 0 <= value <= 15:
        raise argparse.ArgumentTypeError("board address must be 0..15")
    return value


def _tx(text: str) -> int:
    value = int(text, 0)
    if not 1 <= value <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError("tx must be 1..4294967295")
    return value


def _slot_list(text: str) -> list[int]:
    slots: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            first, last = int(lo), int(hi or lo)
            if first > last or first < 0 or last >= 0xFFFF:
                raise ValueError
            slots.extend(range(first, last + 1))
    except ValueError:
        msg = f"not a slot list: {text!r} (try 10-19 or 1,3,5-7)"
        raise argparse.ArgumentTypeError(msg) from None
    return slots


def tx_from_clock(clock: Clock, after: int = 0) -> int:
    """A tx that is new: tenths of a second since the epoch (mod 2**32), above ``after``."""
    tx = int(clock.time() * 10) & 0xFFFFFFFF
    if tx <= after:
        tx = after + 1
    return tx if 1 <= tx <= 0xFFFFFFFF else 1


def hold_past(clock: Clock, tx: int) -> None:
    """Return only once the clock is past ``tx``'s tenth of a second, so the next ``kiosk board``
    run cannot derive the same tx (usually < 0.1 s; a vend itself takes seconds)."""
    ahead = (tx + 1 - clock.time() * 10) % 2**32  # in tenths, modulo the tx wrap
    if ahead < 2**31:
        time.sleep(min(ahead / 10, 10.0))


# ---------------------------------------------------------------------------- plumbing


class _Unreachable(Exception):
    pass


# The links' own warnings (each retry's errno, in pyserial's English) under a command whose
# messages say the same once, in the user's words; shown with -v.
_LINK_LOGGERS = ("kiosk.hardware.link", "kiosk.hardware.vmc", "kiosk.hardware.modbus")


def _run(args: argparse.Namespace, body: Callable[[Target], int]) -> int:
    if getattr(args, "verbose", 0):
        return _run_quiet(args, body)
    loggers = [logging.getLogger(name) for name in _LINK_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        return _run_quiet(args, body)
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _run_quiet(args: argparse.Namespace, body: Callable[[Target], int]) -> int:
    if args.port is not None and "://" not in args.port and not os.path.exists(args.port):
        # said once, at once: no link started, no retries logging the same errno
        msg = say("port_missing", port=args.port)
        _emit(args, {"ok": False, "reachable": False, "port": args.port, "error": msg}, msg, True)
        return exitcodes.UNREACHABLE
    where = args.port or say("config_port")
    try:
        with open_target(args, getattr(args, "build_cabinet", None)) as target:
            where = target.where
            if not target.wait_online(args.connect_timeout):
                raise _Unreachable(target.last_error)
            return body(target)
    except PortMissing as e:
        obj = {"ok": False, "reachable": False, "port": e.port, "error": str(e)}
        _emit(args, obj, str(e), err=True)
        return exitcodes.UNREACHABLE
    except TargetError as e:
        _emit(args, {"ok": False, "error": str(e)}, say("error", error=e), err=True)
        return exitcodes.USAGE
    except (_Unreachable, BoardOffline) as e:
        reason = e.reason if isinstance(e, BoardOffline) else str(e)
        tx = e.tx if isinstance(e, BoardOffline) else None
        _unreachable(args, where, reason, tx)
        return exitcodes.UNREACHABLE
    except BoardError as e:
        _emit(args, {"ok": False, "error": str(e)}, say("error", error=e), err=True)
        return exitcodes.FAIL


def _unreachable(args: argparse.Namespace, where: str, reason: str, tx: int | None) -> None:
    lines = [say("board_unreachable", where=where, reason=reason_words(reason))]
    if tx is not None:
        lines.append(say("board_tx_unknown", tx=tx))
    if args.port is not None:
        lines.append(say("board_check", baud=args.baud, address=args.address))
    else:
        lines.append(say("board_check_config"))
    obj: dict[str, Any] = {"ok": False, "reachable": False, "port": where, "error": reason}
    if tx is not None:
        obj["tx"] = tx
    _emit(args, obj, "\n".join(lines), err=True)


def _emit(args: argparse.Namespace, obj: dict[str, Any], text: str, err: bool = False) -> None:
    if args.json:
        print(json.dumps(obj, ensure_ascii=False, sort_keys=True))
    else:
        print(text, file=sys.stderr if err else sys.stdout)


def _timed_out(t: Target, slot: int, tx: int, e: VendTimeout, timeout: float) -> str:
    """What a technician reads when a vend's outcome did not come within `timeout`."""
    return said(
        "tx_timeout", name=t.name(slot), outcome=e.outcome.name, seconds=f"{timeout:g}", tx=tx
    )


def _say(args: argparse.Namespace, text: str) -> None:
    """Progress for people (never in --json mode: that prints exactly one object)."""
    if not args.json:
        print(text, flush=True)


def _ranges(info: BoardInfo) -> str:
    parts = []
    for g in info.slot_groups:
        last = g.first + g.count - 1
        span = str(g.first) if g.count == 1 else f"{g.first}-{last}"
        parts.append(f"{span} {kind_name(g.kind.name)}")
    return ", ".join(parts) or said("no_slots")


def _info_json(info: BoardInfo) -> dict[str, Any]:
    return {
        "address": info.address,
        "model": info.model,
        "serial": info.serial,
        "firmware": info.firmware_version,
        "protocol": info.protocol_version,
        "cabinet": info.cabinet.name.lower(),
        "chilled": info.chilled,
        "presence_sensing": info.presence_sensing,
        "nonvolatile_outcomes": info.nonvolatile_outcomes,
        "outcome_memory": info.outcome_memory,
        "slot_count": info.slot_count,
        "slot_groups": [
            {"first": g.first, "count": g.count, "kind": g.kind.name.lower()}
            for g in info.slot_groups
        ],
    }


def _status_json(st: BoardStatus) -> dict[str, Any]:
    return {
        "busy": st.busy,
        "busy_tx": st.busy_tx,
        "service_door_open": st.service_door_open,
        "temperature_c": st.temperature_c,
        "faults": sorted(f.name.lower() for f in st.faults),
        "open_doors": sorted(st.open_doors),
        "present": None if st.present is None else sorted(st.present),
    }


# A tx this command sent that the board then has no record of: the board lost its memory in a
# reset (or never got the command). Whether the item dropped cannot be known from the board.
_FORGOTTEN = "outcome unknown, check the pickup port (the board lost its record of this tx)"


# DELIVERED from a VMC: what the VMC's success means depends on the command (vmc.md 6.1).
_VMC_DELIVERED = {
    VmcCommandKind.SELECT: (
        "the VMC reported success (0x03 select to buy: whether a drop sensor confirmed it "
        "is the VMC's own setting)"
    ),
    VmcCommandKind.DRIVE: "the VMC reported success with its drop sensor on (0x06)",
}


def describe_run(outcome: Outcome, board: BoardDriver | None = None) -> str:
    """`describe` for the result of a tx this command sent (vend, unlock, selftest) on
    `board` (what DELIVERED proved depends on the board and, on a VMC, the command)."""
    if outcome is Outcome.UNKNOWN_TX:
        return _FORGOTTEN
    if outcome is Outcome.DELIVERED and isinstance(board, VmcBoard):
        return _VMC_DELIVERED[board.command]
    return describe(outcome)


def _board_of(t: Target, slot: int) -> BoardDriver | None:
    ref = t.ref(slot)
    return None if ref is None else t.cabinet.boards.get(ref[0])


def _slot_json(t: Target, slot: int) -> dict[str, Any]:
    """Where a slot is: `slot` as typed, `slot_no` (planogram) and the bus place."""
    ref = t.ref(slot)
    where: dict[str, Any] = {"slot": slot, "slot_no": slot if t.numbered else None}
    if ref is not None:
        where.update(board=ref[0], address=ref[1], protocol=t.protocol(ref[0]))
    return where


def _result_json(t: Target, r: BoardVendResult) -> dict[str, Any]:
    return {
        **_slot_json(t, r.slot),
        "tx": r.tx,
        "outcome": r.outcome.name,
        "known": r.outcome is not Outcome.UNKNOWN_TX,
        "description": describe_run(r.outcome, _board_of(t, r.slot)),
        "seconds": round(r.seconds, 3),
        "source": r.source,
    }


def _result_line(t: Target, r: BoardVendResult) -> str:
    what = describe_outcome(r.outcome, describe_run(r.outcome, _board_of(t, r.slot)))
    return said(
        "tx_result",
        name=t.name(r.slot),
        outcome=r.outcome.name,
        what=what,
        tx=r.tx,
        seconds=f"{r.seconds:.1f}",
    )


def _counted(t: Target, r: BoardVendResult, obj: dict[str, Any]) -> str | None:
    """An item known to have left the slot comes off the kiosk's count (a test vend)."""
    if r.outcome not in SUCCESSES:
        return None
    level, note = t.record_drop(r.slot, r.tx)
    obj["count"] = level
    return note


# ---------------------------------------------------------------------------- status


def board_lines(t: Target, addr: int, info: BoardInfo, st: BoardStatus) -> list[str]:
    """Status of one board for people: slots by the numbers on the screen (the planogram's);
    the board's own addresses only without a planogram, and labelled so."""
    proto = t.protocol(addr)
    none = said("none")
    doors = sorted(st.open_doors)
    door_names = [t.name(t.cabinet.cabinet_slot(addr, d) or d) for d in doors]
    door_state = said("open") if st.service_door_open else said("closed")
    if proto == "vmc":
        lines = [
            said("st_vmc", where=t.where, model=info.model),
            _reported_line(t.cabinet.boards[addr]),
            said("st_vmc_memory"),
            said("st_vmc_temp"),
            said("st_door", state=door_state),
        ]
    elif proto == "modbus":
        lines = [
            said(
                "st_lock_board", address=addr, serial=info.serial, where=t.where, n=info.slot_count
            ),
            said("st_lock_memory"),
            said("st_open_doors", doors=", ".join(door_names) or none),
        ]
    else:
        temp = said("st_no_sensor") if st.temperature_c is None else f"{st.temperature_c:.1f} °C"
        memory = "st_memory_kept" if info.nonvolatile_outcomes else "st_memory_lost"
        lines = [
            said(
                "st_board",
                where=t.where,
                address=info.address,
                model=info.model,
                serial=info.serial,
                firmware=info.firmware_version,
                protocol=info.protocol_version,
            ),
            said(
                "st_cabinet",
                kind=kind_name(info.cabinet.name),
                n=info.slot_count,
                chilled=said("st_chilled") if info.chilled else "",
            ),
            said(memory, n=info.outcome_memory),
            said("st_temp", temp=temp),
            said("st_service_door", state=door_state),
            said("st_open_doors", doors=", ".join(door_names) or none),
        ]
        if st.present is not None:
            lines.append(_present_line(t, addr, st.present))
    busy = said("st_busy", tx=st.busy_tx) if st.busy else said("st_idle")
    lines.append(busy)
    lines.append(said("st_faults", faults=", ".join(sorted(f.name for f in st.faults)) or none))
    if t.numbered:
        mine = [s for s in _planogram_slots(t) if (r := t.ref(s)) is not None and r[0] == addr]
        lines.append(said("st_screen_slots", slots=_span(mine) or none))
    else:
        lines.append(said("st_bus_slots", slots=_ranges(info)))
    return lines


def _present_line(t: Target, addr: int, present: Any) -> str:
    """The slots a presence sensor says hold product: the screen's numbers with a planogram,
    else (labelled) the board's addresses."""
    if not t.numbered:
        return said("st_present_bus", slots=_span(sorted(present)) or said("none"))
    numbers = sorted(n for a in present if (n := t.cabinet.cabinet_slot(addr, a)) is not None)
    return said("st_present", slots=_span(numbers) or said("none"))


def _reported_line(board: BoardDriver) -> str:
    """What a VMC said in its selection report (0x11 after a sync), in its own numbers."""
    if not isinstance(board, VmcBoard):
        return said("st_not_vmc")
    selections, complete = board.reported_selections()
    if not selections:
        return said("st_reported_none")
    more = "" if complete else said("st_reported_more")
    return said("st_reported", n=len(selections), span=_span(selections), more=more)


def _reported_json(board: BoardDriver) -> dict[str, Any]:
    if not isinstance(board, VmcBoard):
        return {}
    selections, complete = board.reported_selections()
    return {"selections_reported": selections, "report_complete": complete}


def _planogram_slots(t: Target) -> list[int]:
    return sorted(t.cabinet.slot_map()) if t.numbered else []


def _span(numbers: list[int]) -> str:
    parts: list[str] = []
    for n in numbers:
        if parts and "-" not in parts[-1] and int(parts[-1]) == n - 1:
            parts[-1] = f"{parts[-1]}-{n}"
        elif parts and "-" in parts[-1] and int(parts[-1].split("-")[1]) == n - 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{n}"
        else:
            parts.append(str(n))
    return ", ".join(parts)


def cmd_status(args: argparse.Namespace) -> int:
    def body(t: Target) -> int:
        lines: list[str] = []
        boards: list[dict[str, Any]] = []
        ok = True
        for addr, drv in t.cabinet.boards.items():
            info, st = drv.identify(), drv.status()
            ok = ok and not st.faults
            lines += board_lines(t, addr, info, st)
            boards.append(
                {
                    "protocol": t.protocol(addr),
                    **_info_json(info),
                    **_reported_json(drv),
                    "status": _status_json(st),
                }
            )
        first = boards[0]
        obj = {
            "ok": ok,
            "port": t.where,
            "board": {k: v for k, v in first.items() if k != "status"},
            "status": first["status"],
            "boards": boards,
        }
        _emit(args, obj, "\n".join(lines))
        return exitcodes.OK if ok else exitcodes.FAIL

    return _run(args, body)


# ---------------------------------------------------------------------------- vend / unlock


def _cmd_tx(args: argparse.Namespace) -> int:
    clock = SystemClock()
    tx = args.tx or tx_from_clock(clock)
    try:
        return _run(args, functools.partial(_tx_body, args, tx))
    finally:
        if not args.tx:
            hold_past(clock, tx)


# A VMC drives spirals and belts only, a lock board lockers only: no need to ask them.
_KIND_BY_PROTOCOL = {"vmc": WireSlotKind.SPIRAL, "modbus": WireSlotKind.LOCKER}


def _slot_kind(t: Target, slot: int) -> WireSlotKind | None:
    ref = t.ref(slot)
    if ref is None:
        return None
    known = _KIND_BY_PROTOCOL.get(t.protocol(ref[0]))
    return known or t.cabinet.boards[ref[0]].identify().slot_kind(ref[1])


def _tx_body(args: argparse.Namespace, tx: int, t: Target) -> int:
    slot = args.slot
    if t.ref(slot) is None:
        msg = f"slot {slot} is not in the planogram (slots: {_span(_planogram_slots(t))})"
        text = said("not_in_planogram", slot=slot, slots=_span(_planogram_slots(t)))
        _emit(args, {"ok": False, "slot": slot, "error": msg}, text, err=True)
        return exitcodes.FAIL
    unlock = args.board_command == "unlock" or _slot_kind(t, slot) is WireSlotKind.LOCKER
    start = "tx_start_unlock" if unlock else "tx_start_vend"
    _say(args, said(start, name=t.name(slot), command=args.board_command, tx=tx))
    cab = t.cabinet
    try:
        result = _run_settled(
            args,
            t,
            slot,
            tx,
            args.timeout,
            functools.partial(cab.unlock if unlock else cab.vend, slot, tx, args.timeout),
        )
    except VendTimeout as e:
        _emit(
            args,
            {"ok": False, "slot": slot, "tx": tx, "outcome": e.outcome.name},
            _timed_out(t, slot, tx, e, args.timeout),
        )
        return exitcodes.FAIL
    ok = result.outcome in SUCCESSES
    obj = {"ok": ok, **_result_json(t, result)}
    note = _counted(t, result, obj)
    _emit(args, obj, _result_line(t, result) + (f"\n{note}" if note else ""))
    return exitcodes.OK if ok else exitcodes.FAIL


def _run_settled(
    args: argparse.Namespace,
    t: Target,
    slot: int,
    tx: int,
    timeout: float,
    run: Callable[[], BoardVendResult],
) -> BoardVendResult:
    """``run()`` the tx; if the driver could not learn its fate, ask the board (`_ask_outcome`)."""
    started = time.monotonic()
    try:
        return run()
    except BoardOffline as e:
        if e.tx is None:  # refused before anything was sent
            raise
        _say(args, said("tx_asking", name=t.name(slot), reason=e.reason, tx=tx))
        log_event(log, "board.asking_outcome", address=e.address, tx=tx, reason=e.reason)
        return _ask_outcome(t, tx, slot, started, started + timeout, args.connect_timeout)


def _ask_outcome(
    t: Target, tx: int, slot: int, started: float, deadline: float, patience: float
) -> BoardVendResult:
    """After a tx whose fate the driver could not learn (its answer lost, the board rebooted or
    stopped answering): wait for the board to answer again and ask OUTCOME(tx) (never send the
    tx again), until the outcome is final or ``deadline`` (the command's --timeout; at least
    ``patience``, the --connect-timeout, from now) has passed. Raises BoardOffline(tx) if the
    board could not be asked, VendTimeout if it still says IN_PROGRESS. (A VMC or a lock board
    answers from this run's own record of the tx.)"""
    until = max(deadline, time.monotonic() + patience)
    reason = "stopped answering"
    ref = t.ref(slot)
    address = ref[0] if ref is not None else 0
    while True:
        left = until - time.monotonic()
        if left <= 0:
            raise BoardOffline(address, reason, tx)
        if not t.wait_online(left):
            continue
        try:
            outcome = t.cabinet.outcome(tx)
        except BoardOffline as e:
            reason = e.reason
            time.sleep(min(_ASK_AGAIN, max(0.0, until - time.monotonic())))
            continue
        if outcome.is_final:
            return BoardVendResult(tx, slot, outcome, time.monotonic() - started, "query")
        if time.monotonic() + _ASK_AGAIN >= until:
            raise VendTimeout(address, tx, slot, outcome)
        time.sleep(_ASK_AGAIN)  # the board is still running it


def cmd_vend(args: argparse.Namespace) -> int:
    return _cmd_tx(args)


def cmd_unlock(args: argparse.Namespace) -> int:
    return _cmd_tx(args)


# ---------------------------------------------------------------------------- outcome


def cmd_outcome(args: argparse.Namespace) -> int:
    def body(t: Target) -> int:
        ours = [b for a, b in t.cabinet.boards.items() if t.protocol(a) == "kiosk"]
        if not ours:
            proto = sorted(t.protocols())[0]
            msg = _NO_MEMORY[proto].format(tx=args.tx)
            obj = {"ok": False, "tx": args.tx, "answerable": False, "protocol": proto}
            _emit(args, {**obj, "error": msg}, msg)
            return exitcodes.FAIL
        outcome = _ask_every(ours, args.tx)
        ok = outcome in SUCCESSES
        others = sorted(t.protocols() - {"kiosk"})
        what = describe_outcome(outcome, describe(outcome))
        text = said("outcome_line", tx=args.tx, outcome=outcome.name, what=what)
        if others and outcome is Outcome.UNKNOWN_TX:  # it may have been a tx on one of those
            text += "\n" + "\n".join(_NO_MEMORY[p].format(tx=args.tx) for p in others)
        _emit(
            args,
            {
                "ok": ok,
                "tx": args.tx,
                "outcome": outcome.name,
                "answerable": True,
                "description": describe(outcome),
            },
            text,
        )
        return exitcodes.OK if ok else exitcodes.FAIL

    return _run(args, body)


def _ask_every(boards: list[BoardDriver], tx: int) -> Outcome:
    for board in boards:
        found = board.outcome(tx)
        if found is not Outcome.UNKNOWN_TX:
            return found
    return Outcome.UNKNOWN_TX


# ---------------------------------------------------------------------------- selftest


def _selftest_slots(args: argparse.Namespace, t: Target) -> tuple[list[int], dict[int, Any]]:
    """--slots, else every planogram slot, else (no planogram) every slot the boards report:
    for a VMC that is its selection report, which may miss selections (said so)."""
    if args.slots is not None and "kiosk" not in t.protocols():
        return args.slots, {s: _slot_kind(t, s) for s in args.slots}
    kinds = t.cabinet.identify().slot_kinds
    if args.slots is not None:
        return args.slots, kinds
    if t.numbered:
        return _planogram_slots(t), kinds
    if "vmc" in t.protocols():
        _say(args, said("vmc_no_planogram", n=len(kinds)))
    return sorted(kinds), kinds


def _check_results(args: argparse.Namespace, t: Target, slots: list[int]) -> list[dict[str, Any]]:
    """Every slot looked at without running it (what each protocol can look at)."""
    protos = ", ".join(protocol_name(p) for p in sorted(t.protocols()))
    _say(args, said("checking", n=len(slots), protocols=protos))
    results: list[dict[str, Any]] = []
    for c in t.cabinet.check_slots(slots, args.connect_timeout):
        results.append(_check_json(t, c))
        detail = describe_check(c.state, c.detail)
        line = said("check_line", name=t.name(c.slot), state=c.state, detail=detail)
        _say(args, line + ("" if c.ok else said("fail_mark")))
    return results


def _check_json(t: Target, c: SlotCheck) -> dict[str, Any]:
    return {
        **_slot_json(t, c.slot),
        "ok": c.ok,
        "outcome": c.state,
        "description": c.detail,
        "mode": "check",
    }


def _drop_warning(t: Target, slots: list[int], kinds: dict[int, Any]) -> str:
    lockers = [s for s in slots if kinds.get(s) is WireSlotKind.LOCKER]
    spirals = [s for s in slots if s not in lockers]
    parts = []
    if spirals:
        parts.append(said("drop_spirals", n=len(spirals), span=_span(sorted(spirals))))
    if lockers:
        parts.append(said("drop_lockers", n=len(lockers), span=_span(sorted(lockers))))
    counted = "drop_counted" if t.store is not None and t.numbered else "drop_not_counted"
    return said("drop_warning", what=said("sep").join([*parts, said(counted)]))


def _drop_results(
    args: argparse.Namespace, t: Target, slots: list[int], kinds: dict[int, Any], clock: Clock
) -> tuple[list[dict[str, Any]], int]:
    results: list[dict[str, Any]] = []
    tx = 0
    for slot in slots:
        tx = tx_from_clock(clock, after=tx)
        try:
            r = _run_settled(
                args,
                t,
                slot,
                tx,
                args.timeout,
                functools.partial(t.cabinet.test_slot, slot, tx, args.timeout),
            )
        except VendTimeout as e:
            results.append({**_slot_json(t, slot), "tx": tx, "outcome": e.outcome.name})
            results[-1].update(ok=False, mode="drop")
            _say(args, _timed_out(t, slot, tx, e, args.timeout))
            continue
        ok = r.outcome in (_TEST_OK if kinds.get(slot) is WireSlotKind.LOCKER else SUCCESSES)
        obj = {"ok": ok, **_result_json(t, r), "mode": "drop"}
        note = _counted(t, r, obj)
        results.append(obj)
        line = _result_line(t, r) + ("" if ok else said("fail_mark"))
        _say(args, line + (said("sep") + note if note else ""))
    return results, tx


def cmd_selftest(args: argparse.Namespace) -> int:
    clock = SystemClock()
    last_tx = 0
    started_at = clock.time()

    def body(t: Target) -> int:
        nonlocal last_tx
        slots, kinds = _selftest_slots(args, t)
        if args.drop:
            warning = _drop_warning(t, slots, kinds)
            print(warning, file=sys.stderr if args.json else sys.stdout, flush=True)
            if not args.yes and not confirmed():  # before the first motor turns
                print(said("drop_aborted"), file=sys.stderr)
                return exitcodes.USAGE
            log_event(log, "board.selftest_drop", slots=len(slots))
            results, last_tx = _drop_results(args, t, slots, kinds, clock)
        else:
            results = _check_results(args, t, slots)
        failed = [r["slot"] for r in results if not r["ok"]]
        summary = said(
            "summary",
            ok=len(results) - len(failed),
            n=len(results),
            mode=said("mode_run" if args.drop else "mode_check"),
            failed=said("summary_failed", slots=", ".join(map(str, failed))) if failed else "",
        )
        obj = {
            "ok": not failed,
            "port": t.where,
            "address": args.address,
            "mode": "drop" if args.drop else "check",
            "slots": results,
        }
        if args.json:
            _emit(args, obj, summary)
        else:
            print(summary)
        hook: SelftestHook | None = getattr(args, "on_selftest", None)
        if hook is not None and not getattr(args, "no_queue", False):
            note = hook(args, started_at, clock.time(), results)
            if note:
                print(note, file=sys.stderr if args.json else sys.stdout)
        return exitcodes.FAIL if failed else exitcodes.OK

    if args.drop and not args.yes and not sys.stdin.isatty():
        print(said("drop_needs_yes"), file=sys.stderr)  # refused before connecting at all
        return exitcodes.USAGE
    try:
        return _run(args, body)
    finally:
        if last_tx:
            hold_past(clock, last_tx)


def confirmed() -> bool:
    """Ask on the terminal whether to go on with `--drop` (a `y` goes on; anything else, or
    the end of the input, aborts: nothing has run yet)."""
    print(said("drop_confirm"), end="", file=sys.stderr, flush=True)  # stdout: maybe JSON
    answer = sys.stdin.readline()  # "" at the end of the input: no
    return answer.strip().lower() in ("y", "yes", "是")
