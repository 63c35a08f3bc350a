"""What `kiosk board` and `kiosk-provision selftest` talk to: the kiosk's cabinet, whatever its
protocol, with the planogram's slot numbers, and the kiosk's stock counts for test drops.

Owns: opening the target (from the kiosk config through the composition root's
``build_cabinet``, handed in by the caller because this layer may not import kiosk.app; or a
bare `--port` for a board of our own protocol), naming slots as the screen does ("slot 13",
the bus address only as a detail), the protocol of each board, and recording an item a
technician's test dropped as a TEST_VEND stock change (the kiosk sends it as `events/stock`).
Must never: decide an outcome (the drivers do), or change a count for an item that is not known
to have dropped (INTERRUPTED and unknown results change nothing).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kiosk.config import ConfigError, KioskConfig, load_config, resolve_config_path
from kiosk.core.planogram import Planogram
from kiosk.core.stock import StockChange, StockError, StockReason
from kiosk.hardware.board import BoardDriver, Cabinet, SerialBoard
from kiosk.hardware.cli_text import said
from kiosk.hardware.link import LinkTiming, SerialLink
from kiosk.hardware.modbus_locks import ModbusLockBoard
from kiosk.hardware.vmc_driver import VmcBoard
from kiosk.store import Store, open_store
from kiosk.textfile import say

__all__ = [
    "BuildCabinet",
    "PortMissing",
    "Target",
    "TargetError",
    "load_planogram",
    "missing_port",
    "open_target",
    "protocol_of",
    "record_drop",
]

# kiosk.app.build_cabinet(config, planogram, timing=...): (link, Cabinet)
BuildCabinet = Callable[..., tuple[Any, Cabinet]]

PROTOCOL_NAMES = {"kiosk": "our own board protocol", "vmc": "VMC", "modbus": "Modbus lock board"}


class TargetError(Exception):
    """The target cannot be opened (no port and no config, a broken config)."""


class PortMissing(TargetError):
    """A serial port the kiosk config names does not exist: said once, before any link is
    started (no retries logging the same errno, no wait for the connect timeout)."""

    def __init__(self, message: str, port: str) -> None:
        super().__init__(message)
        self.port = port


def _port_key(cfg: KioskConfig, port: str) -> str:
    """The config key that set `port`, for the technician to correct."""
    if port == cfg.hardware.port:
        return "[hardware] port"
    if port == cfg.modbus.port:
        return "[modbus] port"
    return "[[board]] port"


def missing_port(cfg: KioskConfig, port: str | None = None) -> PortMissing | None:
    """The first serial device the config (or `port` in place of `[hardware]`'s) names that
    does not exist (a pyserial URL such as socket:// is not checked), as the error to say."""
    ports = [port] if port else sorted({b.port for b in cfg.boards} or {ports_of(cfg)})
    for p in ports:
        if p and "://" not in p and not Path(p).exists():
            if port and port != cfg.hardware.port:  # the technician's --port
                return PortMissing(say("port_missing", port=p), p)
            key = _port_key(cfg, p)
            msg = say("port_missing_config", port=p, file=cfg.source, key=key)
            return PortMissing(msg, p)
    return None


def protocol_of(board: BoardDriver) -> str:
    """ "kiosk" (docs/serial-protocol.md), "vmc" or "modbus" (a lock board)."""
    if isinstance(board, VmcBoard):
        return "vmc"
    if isinstance(board, ModbusLockBoard):
        return "modbus"
    return "kiosk"


@dataclasses.dataclass
class Target:
    cabinet: Cabinet
    link: Any  # BoardLink | ModbusBus: start(), close(), maybe wait_online()
    where: str  # the port, for messages
    numbered: bool  # cabinet slots are the planogram's slot numbers
    store: Store | None = None  # the kiosk's store: counts of test drops
    config_path: Path | None = None
    error: str | None = dataclasses.field(default=None, init=False)  # why not online

    def protocol(self, address: int) -> str:
        return protocol_of(self.cabinet.boards[address])

    def protocols(self) -> set[str]:
        return {protocol_of(b) for b in self.cabinet.boards.values()}

    def ref(self, slot: int) -> tuple[int, int] | None:
        return self.cabinet.route(slot)

    def name(self, slot: int) -> str:
        """ "slot 13 (board 0 address 3)": the number on the screen, the bus place after it as
        a labelled detail (in the user's language)."""
        ref = self.cabinet.route(slot)
        if not self.numbered or ref is None:
            return said("slot", slot=slot)
        return said("slot_at", slot=slot, place=self.place(*ref))

    def place(self, address: int, index: int) -> str:
        board = self.cabinet.boards[address]
        if isinstance(board, VmcBoard):
            return said("place_vmc", n=index + board.selection_offset)
        if isinstance(board, ModbusLockBoard):
            return said("place_lock", address=address, index=index)
        return said("place_board", address=address, index=index)

    def wait_online(self, timeout: float) -> bool:
        self.error = wait_links(self.link, timeout)
        return self.error is None

    @property
    def last_error(self) -> str:
        return self.error or str(getattr(self.link, "last_error", "") or "no answer")

    def record_drop(self, slot: int, tx: int) -> tuple[int | None, str]:
        """A test that dropped an item from `slot`: one item off the kiosk's count."""
        if self.store is None or not self.numbered:
            return None, said("no_store")
        return record_drop(self.store, slot, tx)


def wait_links(link: Any, timeout: float) -> str | None:
    """Wait until every link that can say so is online (a `LinkGroup` of several ports: each
    of them; a Modbus line cannot: its first request tells). None, or why one is not."""
    deadline = time.monotonic() + timeout
    group = getattr(link, "links", None)
    for part in group.values() if isinstance(group, dict) else [link]:
        wait = getattr(part, "wait_online", None)
        if wait is not None and not wait(max(0.0, deadline - time.monotonic())):
            name = getattr(part, "port_name", "") or getattr(part, "port", "")
            error = str(getattr(part, "last_error", "") or "no answer")
            return f"{name}: {error}" if name and len(group or {}) > 1 else error
    return None


def ports_of(cfg: KioskConfig) -> str:
    """The port(s) of the kiosk's boards, for messages."""
    if cfg.boards:
        return ", ".join(sorted({b.port for b in cfg.boards}))
    return cfg.modbus.port if cfg.modbus.locks else cfg.hardware.port


def record_drop(store: Store, slot_no: int, tx: int) -> tuple[int | None, str]:
    """One item off slot `slot_no`'s count, logged as a TEST_VEND (ref: the tx), as the
    service menu's test vend does; returns (new level or None, a line for people)."""
    try:
        level = store.stock.apply(StockChange(slot_no, -1, StockReason.TEST_VEND, str(tx)))
    except StockError as e:
        return None, said("count_unchanged", error=e)
    return level, said("count_now", slot=slot_no, level=level)


def load_planogram(cfg: KioskConfig) -> tuple[Store | None, Planogram]:
    """The kiosk's store and planogram; (None, empty) when the data dir has no store yet."""
    if not cfg.store.data_dir.is_dir():
        return None, Planogram.of(0, [])
    store = open_store(cfg.store.data_dir)
    try:
        return store, store.planogram.load()
    except Exception:
        store.close()
        raise


def _config(args: Any) -> tuple[Path, KioskConfig | None]:
    """The kiosk config: required without --port; with --port only an explicit one must load."""
    explicit = getattr(args, "config", None)
    path = resolve_config_path(explicit)
    if not path.exists():
        if args.port is None or explicit is not None:
            raise TargetError(say("board_no_config", file=path))
        return path, None
    try:
        return path, load_config(path)
    except ConfigError as e:
        if args.port is None or explicit is not None:
            raise TargetError(str(e)) from e
        return path, None


@contextlib.contextmanager
def open_target(args: Any, build: BuildCabinet | None) -> Iterator[Target]:
    """The cabinet from the kiosk config (`build`: kiosk.app.build_cabinet), or with --port the
    board at --address of our own protocol; planogram numbers whenever the config's store has
    a planogram. Started; closed on exit (with the store)."""
    path, cfg = _config(args)
    if cfg is not None and args.port is None and build is not None:
        missing = missing_port(cfg)
        if missing is not None:
            raise missing
    store, planogram = load_planogram(cfg) if cfg is not None else (None, Planogram.of(0, []))
    window = max(LinkTiming().contact_window, args.connect_timeout)
    timing = LinkTiming(contact_window=window)
    try:
        if args.port is not None or build is None or cfg is None:
            port = args.port or (cfg.hardware.port if cfg is not None else "")
            target = _direct(args, port, planogram, timing)
        else:
            try:
                link, cab = build(cfg, planogram, timing=timing)
            except ConfigError as e:  # the planogram does not fit the [[board]] tables
                raise TargetError(str(e)) from e
            numbered = len(planogram) > 0
            if not numbered and len(cab.boards) == 1:
                cab = Cabinet(cab.boards, None)  # no planogram: the board's own numbers
            target = Target(cab, link, ports_of(cfg), numbered)
        target.store, target.config_path = store, path if cfg is not None else None
        target.link.start()
        try:
            yield target
        finally:
            target.link.close()
    finally:
        if store is not None:
            store.close()


def _direct(args: Any, port: str, planogram: Planogram, timing: LinkTiming) -> Target:
    link = SerialLink(port, args.baud, addresses=(args.address,), timing=timing)
    slot_map = {s.slot_no: (args.address, s.address) for s in planogram if s.board == args.address}
    boards: dict[int, BoardDriver] = {args.address: SerialBoard(link, args.address)}
    return Target(Cabinet(boards, slot_map or None), link, port, bool(slot_map))
