"""`kiosk board ...`: a technician's direct line to a cabinet control board.

Owns: the ``board`` subcommand's arguments, its human and JSON output and its exit codes
(0 ok, 1 the board answered and says not ok, 2 the board cannot be reached).
`selftest` hands its result to the `on_selftest` hook given to `register` (kiosk/cli.py queues
it as an `events/selftest` record in the kiosk's store: this layer knows no store nor outbox).
Must never: decide anything itself (it calls the ``BoardDriver`` API and reports what the board
said), reuse a tx (each vend gets a fresh one from the clock, printed before the motor turns), or
run while the kiosk service owns the port (the port is opened exclusively, so that fails loudly).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from kiosk import exitcodes
from kiosk.clock import Clock, SystemClock
from kiosk.hardware.board import (
    DEFAULT_TEST_TIMEOUT,
    DEFAULT_UNLOCK_TIMEOUT,
    DEFAULT_VEND_TIMEOUT,
    SUCCESSES,
    BoardError,
    BoardInfo,
    BoardOffline,
    BoardStatus,
    BoardVendResult,
    SerialBoard,
    VendTimeout,
)
from kiosk.hardware.link import SerialLink
from kiosk.hardware.protocol import Outcome, WireSlotKind
from kiosk.textfile import say

__all__ = ["SelftestHook", "describe", "register"]

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
    Outcome.UNKNOWN_TX: "the board has no record of this tx",
    Outcome.INVALID_SLOT: "no such slot on this board",
    Outcome.WRONG_SLOT_KIND: "wrong slot kind (vend is for spiral/belt slots, unlock for lockers)",
    Outcome.TX_CONFLICT: "this tx was already used for another command or slot",
    Outcome.REFUSED_FAULT: "refused: the board has an active fault (service door open?)",
    Outcome.INTERRUPTED: "the board reset while running: the item may or may not have dropped",
    Outcome.LOCK_FAILED: "the lock did not release",
}
# A locker test passes when the lock released, whether or not someone opened the door.
_TEST_OK = SUCCESSES | {Outcome.DOOR_NOT_OPENED}


def describe(outcome: Outcome) -> str:
    return _DESCRIPTIONS.get(outcome, outcome.name.lower())


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common_parent: argparse.ArgumentParser,
    on_selftest: SelftestHook | None = None,
) -> None:
    """Add ``board`` with ``status|vend|unlock|outcome|selftest`` to the ``kiosk`` parser.
    `on_selftest`: given every finished selftest's result (kiosk/cli.py: the outbox record)."""
    parents = [common_parent, _connection_options()]

    board = subparsers.add_parser(
        "board", help="talk to a cabinet control board directly", parents=[common_parent]
    )
    sub = board.add_subparsers(dest="board_command", metavar="ACTION", required=True)

    st = sub.add_parser(
        "status", help="identity and status of the board (exit 1 on faults)", parents=parents
    )
    st.set_defaults(func=cmd_status)

    for name, helptext, default_timeout, handler in (
        (
            "vend",
            "run one spiral/belt slot (exit 1 unless delivered)",
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
        p.add_argument("--slot", type=int, required=True, help="slot number on the board")
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

    stt = sub.add_parser(
        "selftest", help="test-run every slot (or --slots) and report each", parents=parents
    )
    stt.add_argument("--slots", type=_slot_list, help="e.g. 10-19 or 1,3,5-7 (default: all)")
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
        required=True,
        metavar="URL",
        help="serial device or pyserial URL: /dev/ttyUSB0, a pty path, socket://host:port",
    )
    conn.add_argument("--baud", type=int, default=115200, help="baud rate (default 115200)")
    conn.add_argument(
        "--address", type=_address, default=0, help="board address: 0 main, 1..15 expansion"
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


@contextlib.contextmanager
def _connect(args: argparse.Namespace) -> Iterator[SerialBoard]:
    link = SerialLink(args.port, args.baud, addresses=(args.address,))
    board = SerialBoard(link, args.address)
    link.start()
    try:
        if not link.wait_online(args.connect_timeout):
            raise _Unreachable(link.last_error)
        yield board
    finally:
        link.close()


def _run(args: argparse.Namespace, body: Callable[[SerialBoard], int]) -> int:
    if "://" not in args.port and not os.path.exists(args.port):
        # said once, at once: no link started, no retries logging the same errno
        msg = say("port_missing", port=args.port)
        _emit(args, {"ok": False, "reachable": False, "port": args.port, "error": msg}, msg, True)
        return exitcodes.UNREACHABLE
    try:
        with _connect(args) as board:
            return body(board)
    except (_Unreachable, BoardOffline) as e:
        reason = e.reason if isinstance(e, BoardOffline) else str(e)
        tx = e.tx if isinstance(e, BoardOffline) else None
        _unreachable(args, reason, tx)
        return exitcodes.UNREACHABLE
    except BoardError as e:
        _emit(args, {"ok": False, "error": str(e)}, f"error: {e}", err=True)
        return exitcodes.FAIL


def _unreachable(args: argparse.Namespace, reason: str, tx: int | None) -> None:
    lines = [f"cannot reach board {args.address} at {args.port}: {reason}"]
    if tx is not None:
        lines.append(
            f"tx={tx} may or may not have run: check with "
            f"`kiosk board outcome --port {args.port} --address {args.address} --tx {tx}`"
        )
    lines.append(
        "check: the cable and the board's power; the baud rate (--baud, now "
        f"{args.baud}) matches the board; the board address (--address, now {args.address}); "
        "nothing else holds the port (stop the kiosk service first); "
        "for a simulated board: is `kiosk emulator` running?"
    )
    obj: dict[str, Any] = {"ok": False, "reachable": False, "port": args.port, "error": reason}
    if tx is not None:
        obj["tx"] = tx
    _emit(args, obj, "\n".join(lines), err=True)


def _emit(args: argparse.Namespace, obj: dict[str, Any], text: str, err: bool = False) -> None:
    if args.json:
        print(json.dumps(obj, ensure_ascii=False, sort_keys=True))
    else:
        print(text, file=sys.stderr if err else sys.stdout)


def _say(args: argparse.Namespace, text: str) -> None:
    """Progress for people (never in --json mode: that prints exactly one object)."""
    if not args.json:
        print(text, flush=True)


def _ranges(info: BoardInfo) -> str:
    parts = []
    for g in info.slot_groups:
        last = g.first + g.count - 1
        span = str(g.first) if g.count == 1 else f"{g.first}-{last}"
        parts.append(f"{span} {g.kind.name.lower()}")
    return ", ".join(parts) or "no slots"


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


def _result_json(r: BoardVendResult) -> dict[str, Any]:
    return {
        "slot": r.slot,
        "tx": r.tx,
        "outcome": r.outcome.name,
        "description": describe(r.outcome),
        "seconds": round(r.seconds, 3),
        "source": r.source,
    }


def _result_line(r: BoardVendResult) -> str:
    return f"slot {r.slot}: {r.outcome.name} ({describe(r.outcome)}) tx={r.tx} in {r.seconds:.1f} s"


# ---------------------------------------------------------------------------- actions


def cmd_status(args: argparse.Namespace) -> int:
    def body(board: SerialBoard) -> int:
        info = board.identify()
        st = board.status()
        ok = not st.faults
        temp = "no sensor" if st.temperature_c is None else f"{st.temperature_c:.1f} °C"
        lines = [
            f"board {info.address} at {args.port}: {info.model}, serial {info.serial}, "
            f"firmware {info.firmware_version}, protocol {info.protocol_version}",
            f"cabinet: {info.cabinet.name.lower()}, {info.slot_count} slots ({_ranges(info)})"
            + (", chilled" if info.chilled else ""),
            f"outcome memory: {info.outcome_memory} tx, "
            + ("kept across reboots" if info.nonvolatile_outcomes else "lost on reboot"),
            f"temperature: {temp}",
            f"service door: {'OPEN' if st.service_door_open else 'closed'}",
            f"busy: {f'yes, tx={st.busy_tx}' if st.busy else 'no'}",
            "faults: " + (", ".join(sorted(f.name for f in st.faults)) or "none"),
            "open doors: " + (", ".join(str(d) for d in sorted(st.open_doors)) or "none"),
        ]
        if st.present is not None:
            lines.append(
                "slots with product: " + (", ".join(map(str, sorted(st.present))) or "none")
            )
        obj = {
            "ok": ok,
            "port": args.port,
            "board": _info_json(info),
            "status": _status_json(st),
        }
        _emit(args, obj, "\n".join(lines))
        return exitcodes.OK if ok else exitcodes.FAIL

    return _run(args, body)


def _cmd_tx(
    args: argparse.Namespace, run: Callable[[SerialBoard, int, int], BoardVendResult]
) -> int:
    clock = SystemClock()
    tx = args.tx or tx_from_clock(clock)
    try:
        return _cmd_tx_body(args, run, tx)
    finally:
        if not args.tx:
            hold_past(clock, tx)


def _cmd_tx_body(
    args: argparse.Namespace, run: Callable[[SerialBoard, int, int], BoardVendResult], tx: int
) -> int:

    def body(board: SerialBoard) -> int:
        _say(args, f"slot {args.slot}: {args.board_command} with tx={tx}")
        try:
            result = run(board, args.slot, tx)
        except VendTimeout as e:
            _emit(
                args,
                {"ok": False, "slot": args.slot, "tx": tx, "outcome": e.outcome.name},
                f"slot {args.slot}: {e.outcome.name} after {args.timeout:g} s, tx={tx}: "
                f"ask again later with `kiosk board outcome --port {args.port} --tx {tx}`",
            )
            return exitcodes.FAIL
        ok = result.outcome in SUCCESSES
        _emit(args, {"ok": ok, **_result_json(result)}, _result_line(result))
        return exitcodes.OK if ok else exitcodes.FAIL

    return _run(args, body)


def cmd_vend(args: argparse.Namespace) -> int:
    return _cmd_tx(args, lambda b, slot, tx: b.vend(slot, tx, args.timeout))


def cmd_unlock(args: argparse.Namespace) -> int:
    return _cmd_tx(args, lambda b, slot, tx: b.unlock(slot, tx, args.timeout))


def cmd_outcome(args: argparse.Namespace) -> int:
    def body(board: SerialBoard) -> int:
        outcome = board.outcome(args.tx)
        ok = outcome in SUCCESSES
        _emit(
            args,
            {
                "ok": ok,
                "tx": args.tx,
                "outcome": outcome.name,
                "description": describe(outcome),
            },
            f"tx {args.tx}: {outcome.name} ({describe(outcome)})",
        )
        return exitcodes.OK if ok else exitcodes.FAIL

    return _run(args, body)


def cmd_selftest(args: argparse.Namespace) -> int:
    clock = SystemClock()
    last_tx = 0
    started_at = clock.time()

    def body(board: SerialBoard) -> int:
        nonlocal last_tx
        info = board.identify()
        kinds = info.slot_kinds
        slots = args.slots if args.slots is not None else sorted(kinds)
        results: list[dict[str, Any]] = []
        tx = 0
        for slot in slots:
            tx = last_tx = tx_from_clock(clock, after=tx)
            try:
                r = board.test_slot(slot, tx, args.timeout)
            except VendTimeout as e:
                results.append({"slot": slot, "tx": tx, "outcome": e.outcome.name, "ok": False})
                _say(args, f"slot {slot}: {e.outcome.name} after {args.timeout:g} s tx={tx}")
                continue
            ok = r.outcome in (_TEST_OK if kinds.get(slot) is WireSlotKind.LOCKER else SUCCESSES)
            results.append({"ok": ok, **_result_json(r)})
            _say(args, _result_line(r) + ("" if ok else "  <-- FAIL"))
        failed = [r["slot"] for r in results if not r["ok"]]
        summary = f"selftest: {len(results) - len(failed)}/{len(results)} slots ok" + (
            f", failed: {', '.join(map(str, failed))}" if failed else ""
        )
        obj = {"ok": not failed, "port": args.port, "address": args.address, "slots": results}
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

    try:
        return _run(args, body)
    finally:
        if last_tx:
            hold_past(clock, last_tx)
