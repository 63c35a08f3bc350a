"""`[[board]]`: a protocol per board (docs/configuration.md). The tables' validation, each
problem naming its key; the planogram checked against them; `build_cabinet` making one link per
port (a `LinkGroup` over several) without opening anything; and the group's online state and
counters. Selling through two protocols at once: tests/hil/test_mixed_boards.py."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from kiosk.app import build_cabinet, build_sensor
from kiosk.config import ConfigError, KioskConfig, load_config, planogram_board_issues
from kiosk.core.planogram import Planogram, Slot, SlotKind
from kiosk.hardware.board import SerialBoard
from kiosk.hardware.link import SerialLink
from kiosk.hardware.link_group import LinkGroup
from kiosk.hardware.modbus_bus import ModbusBus
from kiosk.hardware.modbus_locks import ModbusLockBoard
from kiosk.hardware.vmc_driver import VmcBoard
from kiosk.hardware.vmc_link import VmcLink

GOOD = """
[identity]
kiosk_id = "AH-341524-0007"
site_name = "test"
site_type = "hospital"
area_code = "341524"

[sync]
broker_url = "mqtt://127.0.0.1:1883"
allow_plaintext = true
"""

MIXED = """
[modbus]
port = "/dev/ttyUSB1"
baud = 19200
locks_per_board = 24
sensor_unit = 10

[[board]]
address = 0
protocol = "vmc"
port = "/dev/ttyS1"
vmc_selection_offset = 11

[[board]]
address = 1
protocol = "kiosk"
port = "/dev/ttyUSB0"

[[board]]
address = 2
protocol = "kiosk"
port = "/dev/ttyUSB0"

[[board]]
address = 3
protocol = "modbus-locks"
door_open_value = 0
"""


def load(tmp_path: Path, extra: str) -> KioskConfig:
    p = tmp_path / "kiosk.toml"
    p.write_text(GOOD + textwrap.dedent(extra), encoding="utf-8")
    return load_config(p)


def issues_of(tmp_path: Path, extra: str) -> str:
    with pytest.raises(ConfigError) as ei:
        load(tmp_path, extra)
    return "\n".join(str(i) for i in ei.value.issues)


def test_board_tables_resolve_their_defaults_from_hardware_and_modbus(tmp_path: Path) -> None:
    cfg = load(tmp_path, MIXED)
    vmc, k1, k2, locks = cfg.boards
    assert (vmc.protocol, vmc.port, vmc.baud, vmc.vmc_selection_offset) == (
        "vmc",
        "/dev/ttyS1",
        57600,
        11,
    )
    assert vmc.vmc_command == "select"
    assert (k1.port, k1.baud, k2.port) == ("/dev/ttyUSB0", 115200, "/dev/ttyUSB0")
    assert (locks.port, locks.baud, locks.unit, locks.locks_per_board) == (
        "/dev/ttyUSB1",
        19200,
        4,  # modbus.lock_unit_base 1 + address 3
        24,
    )
    assert locks.door_open_value == 0
    assert load(tmp_path, "").boards == ()  # without [[board]]: [hardware] as before


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('[[board]]\nprotocol = "kiosk"', "board[1].address = (missing): required key"),
        (
            '[[board]]\naddress = 0\nprotocol = "mdb"',
            "board[1].protocol = 'mdb': must be one of kiosk, vmc, modbus-locks",
        ),
        ('[[board]]\naddress = 16\nprotocol = "kiosk"', "board[1].address = 16: must be between"),
        (
            '[[board]]\naddress = 0\nprotocol = "kiosk"\nunit = 3',
            "board[1].unit = 3: unknown key for protocol kiosk; allowed: address, protocol, "
            "port, baud",
        ),
        (
            '[[board]]\naddress = 0\nprotocol = "vmc"\nvmc_command = "x"',
            "board[1].vmc_command = 'x': must be one of select, drive",
        ),
        (
            '[[board]]\naddress = 0\nprotocol = "modbus-locks"',
            "board[1].port = (missing): required: the serial port of this board",
        ),
        ('[board]\naddress = 0\nprotocol = "kiosk"', "board = {"),
        (
            '[[board]]\naddress = 0\nprotocol = "vmc"\nbaud = 115200',
            "board[1].baud = 115200: a VMC speaks 57600 baud",
        ),
        (
            '[[board]]\naddress = 0\nprotocol = "kiosk"\n'
            '[[board]]\naddress = 0\nprotocol = "kiosk"',
            "board[2].address = 0: board[1] has this address already",
        ),
        (  # both default to hardware.port
            '[[board]]\naddress = 0\nprotocol = "vmc"\n[[board]]\naddress = 1\nprotocol = "kiosk"',
            "board[2].port = '/dev/ttyUSB0': board[1] (protocol vmc) is on this port already",
        ),
        (
            '[[board]]\naddress = 0\nprotocol = "vmc"\n[[board]]\naddress = 1\nprotocol = "vmc"',
            "board[2].port = '/dev/ttyUSB0': board[1] is a VMC on this port already",
        ),
        (
            '[[board]]\naddress = 0\nprotocol = "kiosk"\n'
            '[[board]]\naddress = 1\nprotocol = "kiosk"\nbaud = 9600',
            "board[2].port = '/dev/ttyUSB0': board[1] on this port runs at 115200 baud",
        ),
        (
            '[modbus]\nport = "/dev/ttyUSB1"\n'
            '[[board]]\naddress = 0\nprotocol = "modbus-locks"\nunit = 5\n'
            '[[board]]\naddress = 1\nprotocol = "modbus-locks"\nunit = 5',
            "board[2].unit = 5: board[1] on /dev/ttyUSB1 is Modbus unit 5 already",
        ),
        (
            '[hardware]\nprotocol = "vmc"\nbaud = 57600\n[[board]]\naddress = 0\nprotocol = "vmc"',
            "hardware.protocol = 'vmc': with [[board]] each board names its protocol",
        ),
        (
            '[modbus]\nport = "/dev/ttyUSB1"\nlocks = true\n'
            '[[board]]\naddress = 0\nprotocol = "modbus-locks"',
            "modbus.locks = True: with [[board]] lock boards are [[board]] protocol",
        ),
        (
            '[hardware]\nboards = [0, 1]\n[[board]]\naddress = 0\nprotocol = "kiosk"',
            "hardware.boards = [0, 1]: differs from the [[board]] addresses [0]",
        ),
        (
            '[modbus]\nport = "/dev/ttyUSB0"\nsensor_unit = 10\n'
            '[[board]]\naddress = 0\nprotocol = "kiosk"',
            "modbus.port = '/dev/ttyUSB0': the sensor's Modbus line is board 0's kiosk port",
        ),
    ],
)
def test_board_table_problems_name_their_key(tmp_path: Path, extra: str, expected: str) -> None:
    assert expected in issues_of(tmp_path, extra)


def _planogram(*slots: tuple[int, int, int, SlotKind]) -> Planogram:
    return Planogram.of(
        1, [Slot(n, b, a, k, 1 if k is SlotKind.LOCKER else 5, "P") for n, b, a, k in slots]
    )


def test_the_planogram_must_fit_the_board_tables(tmp_path: Path) -> None:
    cfg = load(tmp_path, MIXED)
    fits = _planogram(
        (10, 0, 0, SlotKind.SPIRAL), (20, 1, 0, SlotKind.SPIRAL), (30, 3, 0, SlotKind.LOCKER)
    )
    assert planogram_board_issues(cfg, fits) == []
    bad = _planogram(
        (10, 0, 0, SlotKind.LOCKER), (30, 3, 0, SlotKind.SPIRAL), (40, 7, 0, SlotKind.SPIRAL)
    )
    text = "\n".join(str(i) for i in planogram_board_issues(cfg, bad))
    assert "board = [7]: the planogram has slots on board(s) 7, which no [[board]]" in text
    assert "board[1].protocol = 'vmc': drives spiral slots only; the planogram's slots 10" in text
    assert "board[4].protocol = 'modbus-locks': drives locker slots only" in text
    with pytest.raises(ConfigError, match="no \\[\\[board\\]\\] table names"):
        build_cabinet(cfg, bad)


def test_build_cabinet_makes_one_link_per_port(tmp_path: Path) -> None:
    """Nothing is opened before `start`: the links and drivers are only built."""
    cfg = load(tmp_path, MIXED)
    pg = _planogram(
        (10, 0, 0, SlotKind.SPIRAL),
        (11, 0, 1, SlotKind.SPIRAL),
        (20, 1, 0, SlotKind.SPIRAL),
        (25, 2, 0, SlotKind.SPIRAL),
        (30, 3, 5, SlotKind.LOCKER),
    )
    link, cabinet = build_cabinet(cfg, pg)
    assert isinstance(link, LinkGroup)
    parts = link.links
    assert list(parts) == ["/dev/ttyS1", "/dev/ttyUSB0", "/dev/ttyUSB1"]
    assert isinstance(parts["/dev/ttyS1"], VmcLink)
    assert isinstance(parts["/dev/ttyUSB0"], SerialLink)
    assert isinstance(parts["/dev/ttyUSB1"], ModbusBus)
    b = cabinet.boards
    assert isinstance(b[0], VmcBoard) and b[0].selection_offset == 11 and b[0].address == 0
    assert isinstance(b[1], SerialBoard) and isinstance(b[2], SerialBoard)
    assert b[1].link is b[2].link  # two of our boards on one bus
    assert isinstance(b[3], ModbusLockBoard) and (b[3].map.unit, b[3].map.locks) == (4, 24)
    assert cabinet.route(30) == (3, 5) and cabinet.route(25) == (2, 0)
    sensor = build_sensor(cfg, link)  # the sensor shares the lock boards' line
    assert sensor is not None and sensor.bus is parts["/dev/ttyUSB1"]
    link.close()
    one_bus = load(
        tmp_path,
        '[[board]]\naddress = 0\nprotocol = "kiosk"\n[[board]]\naddress = 1\nprotocol = "kiosk"',
    )
    link, cabinet = build_cabinet(one_bus, _planogram((1, 0, 0, SlotKind.SPIRAL)))
    assert isinstance(link, SerialLink) and list(cabinet.boards) == [0, 1]  # no group of one


class _Link:
    def __init__(self, counters: dict[str, int]) -> None:
        self.online = False
        self.started = self.closed = False
        self._counters = counters
        self.listeners: list[Callable[[bool, str], None]] = []

    def start(self) -> None:
        self.started = True

    def close(self) -> None:
        self.closed = True

    def add_state_listener(self, fn: Callable[[bool, str], None]) -> None:
        self.listeners.append(fn)

    def counters(self) -> dict[str, int]:
        return self._counters

    def set(self, online: bool, reason: str = "") -> None:
        self.online = online
        for fn in self.listeners:
            fn(online, reason)


def test_a_link_group_is_online_only_while_every_link_is() -> None:
    a, b = _Link({"polls": 3, "rto_ms": 20}), _Link({"polls": 4, "frames_ok": 2, "rto_ms": 50})
    group = LinkGroup({"/dev/a": a, "/dev/b": b})
    seen: list[tuple[bool, str]] = []
    group.add_state_listener(lambda online, reason: seen.append((online, reason)))
    group.start()
    assert a.started and b.started and not group.online
    a.set(True)
    b.set(True)
    assert group.online and seen == [(False, "/dev/b: not started"), (True, "")]
    b.set(False, "no poll for 2 s")
    a.set(False, "port gone")  # still offline: no second change
    a.set(True)
    assert seen[2:] == [(False, "/dev/b: no poll for 2 s")] and not group.online
    b.set(True)
    assert seen[3:] == [(True, "")]
    assert group.counters() == {"polls": 7, "frames_ok": 2, "rto_ms": 50}
    group.close()
    assert a.closed and b.closed


def test_the_documented_example_is_valid(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    section = doc[doc.index("## [[board]]") : doc.index("## [chilled]")]
    example = section[section.index("```toml") + 7 : section.rindex("```")]
    cfg = load(tmp_path, example)
    assert [(b.address, b.protocol, b.port) for b in cfg.boards] == [
        (0, "vmc", "/dev/ttyS1"),
        (1, "kiosk", "/dev/ttyUSB0"),
        (2, "kiosk", "/dev/ttyUSB0"),
        (3, "modbus-locks", "/dev/ttyUSB1"),
    ]
    assert cfg.boards[3].unit == 4


def test_a_province_planogram_must_fit_the_board_tables(tmp_path: Path) -> None:
    """kiosk.sync.apply.apply_planogram with [[board]]: a board without a table, or a locker
    door on a VMC, is refused (the old planogram stays); a fitting one is applied."""
    from types import SimpleNamespace

    from kiosk.core.planogram import planogram_to_csv
    from kiosk.hardware.board import Cabinet
    from kiosk.sim.demo_data import demo_catalog
    from kiosk.store import open_store
    from kiosk.sync.apply import apply_planogram
    from kiosk.sync.signing import TrustError

    cfg = load(
        tmp_path,
        '[[board]]\naddress = 0\nprotocol = "vmc"\nport = "/dev/ttyS1"\n'
        '[[board]]\naddress = 1\nprotocol = "kiosk"\n',
    )
    store = open_store(tmp_path / "data")
    try:
        store.catalog.replace(demo_catalog())  # no planogram, no stock yet
        old = store.planogram.load()
        pid = next(iter(store.catalog.load().products))
        _, cabinet = build_cabinet(cfg, _planogram((1, 0, 0, SlotKind.SPIRAL)))
        kiosk = SimpleNamespace(config=cfg, store=store, board=cabinet)

        def body(*slots: tuple[int, int, int, SlotKind]) -> dict[str, object]:
            pg = Planogram.of(
                old.version + 1,
                [Slot(n, b, a, k, 1 if k is SlotKind.LOCKER else 5, pid) for n, b, a, k in slots],
            )
            return {"version": old.version + 1, "csv": planogram_to_csv(pg)}

        with pytest.raises(TrustError, match=r"unknown boards \[2\]"):
            apply_planogram(kiosk, body((1, 0, 0, SlotKind.SPIRAL), (2, 2, 0, SlotKind.SPIRAL)))
        with pytest.raises(TrustError, match=r"board\[1\]\.protocol drives spiral slots only"):
            apply_planogram(kiosk, body((1, 0, 0, SlotKind.LOCKER), (2, 1, 0, SlotKind.SPIRAL)))
        assert store.planogram.load() == old
        apply_planogram(kiosk, body((1, 0, 0, SlotKind.SPIRAL), (2, 1, 0, SlotKind.LOCKER)))
        assert store.planogram.load().version == old.version + 1
        assert isinstance(cabinet, Cabinet) and cabinet.route(2) == (1, 0)
    finally:
        store.close()
