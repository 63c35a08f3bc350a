"""`kiosk-provision selftest`: everything a technician must see working before leaving a kiosk.

Owns: the list of checks (board identity and firmware, every slot's motor or lock one by one,
drop/door sensors and faults, temperature, broker TLS, clock, free disk, CJK font, screen), the
text progress bar, the report (a table for people, a JSON file in the data dir, and an
`events/selftest` record queued in the store's outbox for the province: source "provisioning",
one result per slot tested) and the exit status (1 when anything failed).
The board part is the kiosk's own cabinet (kiosk.app.build_cabinet: our board, a VMC or Modbus
lock boards). Slots are checked without running them by default (what each protocol can look
at: STATUS, check selection, door inputs); `--drop` runs each slot once (TEST_SLOT with a fresh
tx), says so before the first motor turns, and takes every item that dropped off the kiosk's
count as a TEST_VEND stock change (the kiosk sends it as `events/stock`). Never sells, never
touches an order.
A check that cannot run for a stated reason is "skip"; an unreachable device is a failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shutil
import socket
import ssl
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from kiosk import __version__, exitcodes
from kiosk.app import build_cabinet
from kiosk.clock import SystemClock
from kiosk.config import KioskConfig
from kiosk.hardware.board import (
    SUCCESSES,
    BoardDriver,
    BoardError,
    SlotCheck,
    SlotChecker,
    VendTimeout,
)
from kiosk.hardware.cli_board import confirmed, describe_run, hold_past, tx_from_clock
from kiosk.hardware.cli_target import (
    load_planogram,
    missing_port,
    ports_of,
    protocol_of,
    record_drop,
    wait_links,
)
from kiosk.hardware.cli_text import (
    kind_name,
    pad,
    protocol_name,
    reason_words,
    said,
    width,
)
from kiosk.hardware.link import LinkTiming
from kiosk.hardware.protocol import CabinetKind, FaultCode, Outcome, WireSlotKind
from kiosk.store import Store
from kiosk.sync.records import board_slot_results
from kiosk.textfile import os_reason, say, say_os_error
from provisioning.files import command_config

__all__ = [
    "CHECK_NAMES",
    "Check",
    "ProgressBar",
    "add_parser",
    "cmd_selftest",
    "run_checks",
]

CHECK_NAMES = ("board", "slots", "broker", "clock", "disk", "font", "screen")
OK, FAIL, SKIP, WARN = "ok", "fail", "skip", "warn"
_LOCKER_OK = SUCCESSES | {Outcome.DOOR_NOT_OPENED}  # the lock released: that is what we test


def drop_warning() -> str:
    """Said before the first motor turns (in the user's language)."""
    return said("drop_warning", what=said("drop_all"))


@dataclass
class Check:
    name: str
    status: str  # ok | fail | skip | warn
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


class ProgressBar:
    """`slots [#######.......]  7/20  slot 7: DELIVERED` on one line, redrawn in place."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None, width: int = 30):
        self.total = max(total, 1)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.done_n = 0

    def render(self, note: str = "") -> str:
        filled = round(self.width * self.done_n / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        return f"{self.label} [{bar}] {self.done_n:>3}/{self.total}  {note}"

    def update(self, note: str = "") -> None:
        self.done_n = min(self.done_n + 1, self.total)
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        line = self.render(note)
        self.stream.write(("\r" + line.ljust(self.width + 50)) if tty else line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if hasattr(self.stream, "isatty") and self.stream.isatty():
            self.stream.write("\n")
            self.stream.flush()


# --- board ----------------------------------------------------------------------------------


def board_checks(
    cfg: KioskConfig,
    port: str,
    baud: int,
    *,
    test_slots: bool = True,
    drop: bool = False,
    slot_timeout: float = 60.0,
    connect_timeout: float = 3.0,
    progress: TextIO | None = None,
    slot_map: Mapping[tuple[int, int], int] | None = None,
) -> list[Check]:
    """The kiosk's cabinet as `kiosk run` builds it (kiosk.app.build_cabinet: our board, a VMC
    or Modbus lock boards), `port`/`baud` in place of `[hardware]`'s. `slot_map`: (board,
    address) -> planogram slot number, what a technician reads on the screen and in the guide;
    results and lines name that number (and the address). Slots are checked without running
    them, unless `drop`: then each runs once and every item that dropped comes off the
    kiosk's count (a TEST_VEND stock change, as the service menu's test vend)."""
    hw = dataclasses.replace(cfg.hardware, port=port, baud=baud)
    several = bool(cfg.boards or cfg.modbus.locks)  # each [[board]] or lock line: own port
    missing = missing_port(cfg) if several else missing_port(cfg, port)
    if missing is not None:  # said once, at once: no link started, no retries
        return [Check("board", FAIL, str(missing), {"port": missing.port})]
    store, planogram = load_planogram(cfg)
    window = max(LinkTiming().contact_window, connect_timeout)
    link, cabinet = build_cabinet(
        dataclasses.replace(cfg, hardware=hw), planogram, timing=LinkTiming(contact_window=window)
    )
    where = port if not (cfg.boards or cfg.modbus.locks) else ports_of(cfg)
    clock = SystemClock()
    last_tx = 0
    link.start()
    try:
        error = wait_links(link, connect_timeout)
        if error is not None:
            text = say("board_unreachable", where=where, reason=reason_words(error))
            return [Check("board", FAIL, text, {"port": where})]
        checks: list[Check] = []
        for addr, board in cabinet.boards.items():
            numbers = {a: n for (b, a), n in (slot_map or {}).items() if b == addr}
            found, last_tx = _one_board(
                cfg,
                addr,
                board,
                test_slots,
                drop,
                slot_timeout,
                clock,
                last_tx,
                progress,
                numbers,
                store,
            )
            checks += found
        return checks
    finally:
        link.close()
        if store is not None:
            store.close()
        if last_tx:
            hold_past(clock, last_tx)


def _one_board(
    cfg: KioskConfig,
    addr: int,
    board: BoardDriver,
    test_slots: bool,
    drop: bool,
    slot_timeout: float,
    clock: SystemClock,
    last_tx: int,
    progress: TextIO | None,
    numbers: Mapping[int, int],
    store: Store | None,
) -> tuple[list[Check], int]:
    name = f"board{addr}"
    proto = protocol_of(board)
    try:
        info = board.identify()
        st = board.status()
    except BoardError as e:
        return [Check(name, FAIL, said("board_silent", address=addr, error=e))], last_tx
    want = CabinetKind.LOCKER if cfg.hardware.cabinet == "locker" else CabinetKind.SPIRAL
    ident = said(
        "ident",
        protocol=protocol_name(proto),
        model=info.model,
        serial=info.serial or "-",
        firmware=info.firmware_version,
        version=info.protocol_version,
        kind=kind_name(info.cabinet.name),
        n=info.slot_count,
    )
    ok = info.cabinet == want
    if proto == "vmc" and not numbers:
        ident += said("ident_vmc_no_planogram")
    checks = [
        Check(
            name,
            OK if ok else FAIL,
            ident if ok else ident + said("ident_config_says", cabinet=cfg.hardware.cabinet),
            {
                "protocol": proto,
                "model": info.model,
                "serial": info.serial,
                "firmware": info.firmware_version,
                "slots": info.slot_count,
            },
        )
    ]
    checks.extend(_sensor_checks(cfg, name, info.chilled, st, proto))
    if not test_slots:
        checks.append(Check(f"{name}.slots", SKIP, said("skipped", name="slots")))
    elif drop:
        chk, last_tx = _slot_check(
            board, name, info.slot_kinds, slot_timeout, clock, last_tx, progress, numbers, store
        )
        checks.append(chk)
    else:
        checks.append(_slot_look(board, name, info.slot_kinds, progress, numbers))
    return checks, last_tx


def _sensor_checks(
    cfg: KioskConfig, name: str, chilled: bool, st: Any, proto: str = "kiosk"
) -> list[Check]:
    out: list[Check] = []
    faults = sorted(f.name for f in st.faults)
    drop_bad = FaultCode.DROP_SENSOR in st.faults
    if proto == "kiosk":
        out.append(
            Check(
                f"{name}.drop_sensor",
                FAIL if drop_bad else OK,
                said("drop_sensor_bad" if drop_bad else "drop_sensor_ok"),
            )
        )
    else:
        what = said("drop_sensor_vmc" if proto == "vmc" else "drop_sensor_lock")
        out.append(Check(f"{name}.drop_sensor", SKIP, what))
    doors = sorted(st.open_doors)
    door_detail = said(
        "doors",
        state=said("open" if st.service_door_open else "closed"),
        lockers=said("doors_lockers", doors=", ".join(map(str, doors))) if doors else "",
    )
    out.append(
        Check(
            f"{name}.doors",
            WARN if st.service_door_open or doors else OK,
            door_detail,
            {"service_door_open": st.service_door_open, "open_doors": doors},
        )
    )
    other = [f for f in faults if f != "DROP_SENSOR"]
    out.append(Check(f"{name}.faults", FAIL if other else OK, ", ".join(other) or said("none")))
    t = st.temperature_c
    if cfg.hardware.chilled or chilled:
        limit = cfg.hardware.max_temperature_c
        if t is None:
            out.append(Check(f"{name}.temperature", FAIL, said("temp_no_reading")))
        else:
            out.append(
                Check(
                    f"{name}.temperature",
                    OK if t <= limit else FAIL,
                    said("temp_limit", t=f"{t:.1f}", limit=f"{limit:g}"),
                    {"celsius": t},
                )
            )
    else:
        out.append(
            Check(
                f"{name}.temperature",
                OK if t is not None else SKIP,
                said("temp_ambient", t=f"{t:.1f}") if t is not None else said("temp_none"),
                {"celsius": t},
            )
        )
    return out


def _slot_name(address: int, numbers: Mapping[int, int]) -> str:
    """ "slot 13 (address 3)": the planogram's number first; the bus address alone when the
    planogram does not know it."""
    n = numbers.get(address)
    if n is None:
        return said("address", address=address)
    return said("slot_address", slot=n, address=address)


def _failed_name(r: Mapping[str, Any]) -> str:
    """A failed slot in the summary: "13 JAMMED (address 3)", or "address 3 JAMMED"."""
    if r.get("slot_no") is None:
        return said("failed_address", address=r["slot"], outcome=r["outcome"])
    return said("failed_slot", slot=r["slot_no"], outcome=r["outcome"], address=r["slot"])


def _slot_look(
    board: BoardDriver,
    name: str,
    kinds: dict[int, WireSlotKind],
    progress: TextIO | None,
    numbers: Mapping[int, int],
) -> Check:
    """Every slot of one board checked without running it (what its protocol can look at)."""
    slots = sorted(kinds)
    bar = ProgressBar(len(slots), f"{name} slots", progress)
    if isinstance(board, SlotChecker):
        looked = board.check_slots(slots, 5.0)
    else:
        looked = [SlotCheck(s, "NO_ANSWER", "this board cannot check slots") for s in slots]
    results: list[dict[str, Any]] = []
    for c in looked:
        results.append(
            {
                "slot": c.slot,
                "slot_no": numbers.get(c.slot),
                "ok": c.ok,
                "outcome": c.state,
                "description": c.detail,
                "mode": "check",
            }
        )
        bar.update(f"{_slot_name(c.slot, numbers)}: {c.state}")
    bar.finish()
    failed = [r for r in results if not r["ok"]]
    detail = said("slots_ready", ok=len(results) - len(failed), n=len(results))
    if failed:
        detail += said("slots_failed", slots=", ".join(_failed_name(r) for r in failed))
    data = {"results": results, "failed": [r["slot"] for r in failed], "mode": "check"}
    return Check(f"{name}.slots", FAIL if failed else OK, detail, data)


def _slot_check(
    board: BoardDriver,
    name: str,
    kinds: dict[int, WireSlotKind],
    timeout: float,
    clock: SystemClock,
    last_tx: int,
    progress: TextIO | None,
    numbers: Mapping[int, int],
    store: Store | None = None,
) -> tuple[Check, int]:
    """Run every slot of one board once; `numbers`: address -> planogram slot number. Each
    item that dropped (or locker opened and closed) comes off the count of its slot."""
    slots = sorted(kinds)
    bar = ProgressBar(len(slots), f"{name} slots", progress)
    results: list[dict[str, Any]] = []
    tx = last_tx
    for slot in slots:
        tx = tx_from_clock(clock, after=tx)
        try:
            r = board.test_slot(slot, tx, timeout)
            outcome = r.outcome
        except VendTimeout as e:
            outcome = e.outcome
        except BoardError as e:
            results.append(
                {
                    "slot": slot,
                    "slot_no": numbers.get(slot),
                    "tx": tx,
                    "ok": False,
                    "outcome": "ERROR",
                    "description": str(e),
                }
            )
            bar.update(f"{_slot_name(slot, numbers)}: ERROR")
            continue
        good = _LOCKER_OK if kinds[slot] is WireSlotKind.LOCKER else SUCCESSES
        ok = outcome in good
        slot_no = numbers.get(slot)
        level: int | None = None
        if outcome in SUCCESSES and store is not None and slot_no is not None:
            level, _ = record_drop(store, slot_no, tx)
        results.append(
            {
                "slot": slot,
                "slot_no": slot_no,
                "tx": tx,
                "ok": ok,
                "outcome": outcome.name,
                "description": describe_run(outcome, board),
                "count": level,
                "mode": "drop",
            }
        )
        bar.update(f"{_slot_name(slot, numbers)}: {outcome.name}")
    bar.finish()
    failed = [r for r in results if not r["ok"]]
    detail = said("slots_ok", ok=len(results) - len(failed), n=len(results)) + (
        said("slots_failed", slots=", ".join(_failed_name(r) for r in failed)) if failed else ""
    )
    return (
        Check(
            f"{name}.slots",
            FAIL if failed else OK,
            detail,
            {"results": results, "failed": [r["slot"] for r in failed]},
        ),
        tx,
    )


# --- the rest -------------------------------------------------------------------------------


def check_clock(now: float | None = None) -> Check:
    t = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC)
    ok = t.year >= 2024
    return Check(
        "clock",
        OK if ok else FAIL,
        f"{t:%Y-%m-%d %H:%M:%S} UTC" + ("" if ok else said("clock_unset")),
    )


def check_disk(cfg: KioskConfig) -> Check:
    p = cfg.store.data_dir
    while not p.exists() and p != p.parent:
        p = p.parent
    free_mb = shutil.disk_usage(p).free // (1024 * 1024)
    need = cfg.store.min_free_mb
    return Check(
        "disk",
        OK if free_mb >= need else FAIL,
        said("disk", free=free_mb, path=p, need=need),
        {"free_mb": free_mb},
    )


def find_font(cfg: KioskConfig) -> Path:
    """The CJK font the kiosk would use (kiosk.ui.fonts); raises RuntimeError when none."""
    from kiosk.ui.fonts import find_cjk_font

    return find_cjk_font(cfg.ui.font_path)


def check_font(cfg: KioskConfig) -> Check:
    try:
        return Check("font", OK, str(find_font(cfg)))
    except (RuntimeError, ImportError) as e:
        return Check("font", FAIL, str(e))


def check_screen(cfg: KioskConfig, headless: bool) -> Check:
    driver = os.environ.get("SDL_VIDEODRIVER", "")
    if headless or driver in ("dummy", "offscreen"):
        return Check(
            "screen", SKIP, said("screen_headless", driver=driver or "unset", headless=headless)
        )
    try:
        import pygame

        pygame.display.init()
        try:
            info = pygame.display.Info()
            size = f"{info.current_w}x{info.current_h}"
            drv = pygame.display.get_driver()
        finally:
            pygame.display.quit()
    except Exception as e:
        return Check("screen", FAIL, said("screen_none", error=e))
    want = f"{cfg.ui.width}x{cfg.ui.height}"
    return Check("screen", OK, said("screen_ok", driver=drv, size=size, want=want), {"size": size})


def check_broker(cfg: KioskConfig, timeout: float = 5.0) -> Check:
    from kiosk.sync.client import SyncConfigError, broker_address, tls_context

    try:
        addr = broker_address(cfg.sync)
        ctx = tls_context(cfg.sync) if addr.tls else None
    except SyncConfigError as e:
        return Check("broker", FAIL, str(e))
    try:
        with socket.create_connection((addr.host, addr.port), timeout=timeout) as raw:
            if ctx is None:
                return Check("broker", OK, said("broker_plain", host=addr.host, port=addr.port))
            with ctx.wrap_socket(raw, server_hostname=addr.host) as tls:
                mutual = said("client_cert" if cfg.sync.cert_file else "no_client_cert")
                detail = said(
                    "broker_tls",
                    version=tls.version(),
                    host=addr.host,
                    port=addr.port,
                    mutual=mutual,
                )
                return Check("broker", OK, detail)
    except ssl.SSLError as e:
        error = e.reason or e
        return Check(
            "broker", FAIL, said("broker_tls_failed", host=addr.host, port=addr.port, error=error)
        )
    except OSError as e:
        return Check(
            "broker",
            FAIL,
            said("broker_unreachable", host=addr.host, port=addr.port, reason=os_reason(e)),
        )


def run_checks(
    cfg: KioskConfig,
    *,
    port: str,
    baud: int,
    skip: Sequence[str] = (),
    headless: bool = False,
    slot_timeout: float = 60.0,
    connect_timeout: float = 3.0,
    progress: TextIO | None = None,
    slot_map: Mapping[tuple[int, int], int] | None = None,
    drop: bool = False,
) -> list[Check]:
    checks: list[Check] = []
    if "board" in skip:
        checks.append(Check("board", SKIP, said("skipped", name="board")))
    else:
        checks.extend(
            board_checks(
                cfg,
                port,
                baud,
                test_slots="slots" not in skip,
                drop=drop,
                slot_timeout=slot_timeout,
                connect_timeout=connect_timeout,
                progress=progress,
                slot_map=slot_map,
            )
        )
    simple: list[tuple[str, Callable[[], Check]]] = [
        ("broker", lambda: check_broker(cfg)),
        ("clock", check_clock),
        ("disk", lambda: check_disk(cfg)),
        ("font", lambda: check_font(cfg)),
        ("screen", lambda: check_screen(cfg, headless)),
    ]
    for name, fn in simple:
        checks.append(Check(name, SKIP, said("skipped", name=name)) if name in skip else fn())
    return checks


def make_report(cfg: KioskConfig, checks: list[Check]) -> dict[str, Any]:
    failed = [c.name for c in checks if c.status == FAIL]
    failed_slots = [
        {
            "board": c.name.split(".")[0],
            "slot": r["slot"],
            "slot_no": r.get("slot_no"),
            "outcome": r["outcome"],
        }
        for c in checks
        if c.name.endswith(".slots")
        for r in c.data.get("results", [])
        if not r["ok"]
    ]
    return {
        "v": 1,
        "kiosk_id": cfg.identity.kiosk_id,
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "software": __version__,
        "ok": not failed,
        "failed": failed,
        "failed_slots": failed_slots,
        "checks": [asdict(c) for c in checks],
    }


def table(checks: list[Check]) -> str:
    """The report for people, headings and results in the user's language (the check names
    stay: they are the report's and the guide's keys)."""
    head = said("col_check"), said("col_result"), said("col_detail")
    w = max(width(head[0]), *(len(c.name) for c in checks))
    r = max(width(head[1]), *(width(said(f"res_{s}")) for s in (OK, FAIL, SKIP, WARN)))
    lines = [
        f"{pad(head[0], w)}  {pad(head[1], r)}  {head[2]}",
        f"{'-' * w}  {'-' * r}  {'-' * width(head[2])}",
    ]
    for c in checks:
        lines.append(f"{c.name:<{w}}  {pad(said(f'res_{c.status}'), r)}  {c.detail}")
    return "\n".join(lines)


def planogram_slots(cfg: KioskConfig) -> dict[tuple[int, int], int]:
    """(board, address) -> slot number from the kiosk's planogram; {} when the store has none
    yet (the self-test then names bus addresses)."""
    if not cfg.store.data_dir.is_dir():
        return {}
    try:
        from kiosk.store import open_store

        store = open_store(cfg.store.data_dir)
        try:
            return {(s.board, s.address): s.slot_no for s in store.planogram.load()}
        finally:
            store.close()
    except Exception:  # no store or no planogram yet: addresses only
        return {}


def selftest_slots(
    checks: list[Check], slot_map: dict[tuple[int, int], int]
) -> list[dict[str, Any]]:
    """The slot results of every board check as `events/selftest` slots
    (kiosk.sync.records.board_slot_results)."""
    out: list[dict[str, Any]] = []
    for c in checks:
        if c.name.endswith(".slots"):
            board = int(c.name.split(".")[0].removeprefix("board"))
            out += board_slot_results(board, c.data.get("results", []), slot_map)
    return out


def queue_event(
    cfg: KioskConfig,
    checks: list[Check],
    started_at: float,
    finished_at: float,
    technician: str = "",
) -> str:
    """Queue the result as a HIGH `events/selftest` record (source "provisioning") in the
    kiosk's store (kiosk.sync.records.append_selftest; the running kiosk, or its next start,
    sends it); returns a line for people."""
    try:
        from kiosk.store import open_store
        from kiosk.sync.outbox import Outbox
        from kiosk.sync.records import append_selftest, selftest_body
        from kiosk.sync.topics import Topics

        store = open_store(cfg.store.data_dir)
        try:
            slot_map = {(s.board, s.address): s.slot_no for s in store.planogram.load()}
            board_failed = any(
                c.status == FAIL and (c.name == "board" or c.name.removeprefix("board").isdigit())
                for c in checks
            )
            slots = selftest_slots(checks, slot_map)
            body = selftest_body(
                source="provisioning",
                started_at=started_at,
                finished_at=finished_at,
                slots=slots,
                technician=technician,
                ok=not board_failed and all(s["result"] == "ok" for s in slots),
            )
            outbox = Outbox(store, Topics(cfg.identity.kiosk_id), SystemClock())
            event_id = append_selftest(store, outbox, cfg.identity.kiosk_id, body)
        finally:
            store.close()
    except Exception as e:  # the report file is the fallback; say why it was not queued
        return said("not_queued", error=f"{type(e).__name__}: {e}")
    return said("queued", id=event_id)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "selftest",
        help="test board, slots, sensors, broker, clock, disk, font, "
        "screen (exit 1 on any failure)",
    )
    p.add_argument("--config", metavar="PATH")
    p.add_argument("--port", metavar="URL", help="serial port (default: hardware.port)")
    p.add_argument("--baud", type=int, help="default: hardware.baud")
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=CHECK_NAMES,
        help="leave a check out (repeatable)",
    )
    p.add_argument("--headless", action="store_true", help="no screen on this kiosk")
    p.add_argument(
        "--drop",
        action="store_true",
        help="run every slot once: one item drops from each spiral slot (each locker releases); "
        "every item dropped is taken off the kiosk's count (default: check without running)",
    )
    p.add_argument(
        "--yes",
        action="store_true",
        help="with --drop: do not ask for a confirmation (required when stdin is not a terminal)",
    )
    p.add_argument("--slot-timeout", type=float, default=60.0, metavar="S")
    p.add_argument("--connect-timeout", type=float, default=3.0, metavar="S")
    p.add_argument("--report", metavar="FILE", help="also write the JSON report here")
    p.add_argument("--json", action="store_true", help="print the JSON report, not the table")
    p.add_argument("--no-queue", action="store_true", help="do not queue the selftest event")
    p.add_argument("--technician", default="", help="who ran it (sent with the selftest event)")
    p.set_defaults(func=cmd_selftest)


def cmd_selftest(args: argparse.Namespace) -> int:
    loaded = command_config(args.config)
    if loaded is None:
        return exitcodes.USAGE
    cfg = loaded[1]
    if args.drop and "slots" not in args.skip and "board" not in args.skip:
        if not args.yes and not sys.stdin.isatty():
            print(said("drop_needs_yes"), file=sys.stderr)
            return exitcodes.USAGE
        print(drop_warning(), file=sys.stderr if args.json else sys.stdout, flush=True)
        if not args.yes and not confirmed():  # before the first motor turns
            print(said("drop_aborted"), file=sys.stderr)
            return exitcodes.USAGE
    started_at = time.time()
    checks = run_checks(
        cfg,
        port=args.port or cfg.hardware.port,
        baud=args.baud or cfg.hardware.baud,
        skip=args.skip,
        headless=args.headless,
        slot_timeout=args.slot_timeout,
        connect_timeout=args.connect_timeout,
        progress=sys.stderr,
        slot_map=planogram_slots(cfg),
        drop=args.drop,
    )
    finished_at = time.time()
    report = make_report(cfg, checks)
    text = json.dumps(report, ensure_ascii=False, indent=2)
    out_dir = cfg.store.data_dir / "selftest"
    notes = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"selftest-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(text, encoding="utf-8")
        (out_dir / "selftest-latest.json").write_text(text, encoding="utf-8")
        notes.append(said("report_saved", file=path))
    except OSError as e:
        notes.append(said("report_not_saved", dir=out_dir, reason=os_reason(e)))
    if args.report:
        try:
            Path(args.report).write_text(text, encoding="utf-8")
            notes.append(said("report_saved", file=args.report))
        except OSError as e:
            notes.append(say_os_error(e))
    if not args.no_queue:
        notes.append(queue_event(cfg, checks, started_at, finished_at, args.technician))
    if args.json:
        print(text)
    else:
        print(table(checks))
        print()
        kid = cfg.identity.kiosk_id
        failed = ", ".join(report["failed"])
        verdict = (
            said("verdict_pass", kiosk=kid)
            if report["ok"]
            else said("verdict_fail", kiosk=kid, failed=failed)
        )
        print(verdict)
    for n in notes:
        print(n, file=sys.stderr if args.json else sys.stdout)
    return 0 if report["ok"] else 1
