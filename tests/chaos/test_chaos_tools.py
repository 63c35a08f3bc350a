"""The chaos suite's tools, fast and without processes: the emulator's `busy` query the faults
are aimed with, and the store damage of the `store` fault (quick_check fails, every table row
stays readable, the kiosk's open_store moves the file aside and refuses).
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from kiosk.clock import ManualClock
from kiosk.hardware.protocol import FrameDecoder, Identify, Poll, VendRequest, encode
from kiosk.sim.board_emulator import BoardModel, EmulatedBoard, Faults
from kiosk.sim.chaos import (
    FAULT_KINDS,
    ChaosReport,
    _corrupt_index_page,
    _fault_plan,
    _seed_store,
    _store_counts,
)
from kiosk.store import CORRUPT_MARKER, DB_FILENAME, StoreCorrupt, open_store


def test_busy_names_the_running_tx_until_the_turn_ends() -> None:
    clock = ManualClock()
    board = EmulatedBoard(
        BoardModel.spiral(2, 2, stock=3), clock=clock, time_scale=0.01, faults=Faults(seed=1)
    )
    decoder = FrameDecoder()

    def send(seq: int, msg: object) -> None:
        board.receive(encode(board.address, seq, msg))  # type: ignore[arg-type]
        decoder.feed(board.read_output())

    send(1, Identify(1, False))
    send(2, Poll())
    assert board.busy() == {"busy_tx": 0}
    send(3, VendRequest(2, 300))
    clock.advance(0.01)
    b = board.busy()
    assert b["busy_tx"] == 300 and b["slot"] == 2 and b["cmd"] == "VEND"
    assert 0.0 < b["running_s"] < 0.05
    for _ in range(10):  # a turn is at most 30 ms + the 4 ms drop window at scale 0.01
        clock.advance(0.01)
        board.read_output()
    assert board.busy() == {"busy_tx": 0}


def test_store_damage_fails_quick_check_keeps_rows_and_open_store_refuses(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    _seed_store(data)
    db = data / DB_FILENAME
    assert _store_counts(db) == (0, 0)
    with sqlite3.connect(db) as c:
        before = {
            t: c.execute(f'SELECT count(*) FROM "{t}" NOT INDEXED').fetchone()[0]
            for (t,) in c.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            ).fetchall()
        }
    c.close()
    what = _corrupt_index_page(db, random.Random(1))
    assert "quick_check" in what and "still readable" in what
    with pytest.raises(StoreCorrupt):
        open_store(data)
    assert (data / CORRUPT_MARKER).exists()
    assert not db.exists()
    (moved,) = [p for p in data.iterdir() if p.name.startswith(DB_FILENAME + ".corrupt-")]
    c = sqlite3.connect(moved)
    try:
        assert [r[0] for r in c.execute("PRAGMA quick_check")] != ["ok"]
        (page1,) = c.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        assert page1 > 0
        for t, n in before.items():
            assert c.execute(f'SELECT count(*) FROM "{t}" NOT INDEXED').fetchone()[0] == n, t
    finally:
        c.close()


def test_fault_plan_and_report_fields() -> None:
    plan = _fault_plan(random.Random(3), 7)
    assert set(plan) == set(FAULT_KINDS) and "store" in plan and len(plan) == 7
    assert set(_fault_plan(random.Random(3), 20, ("kill9", "reset"))) == {"kill9", "reset"}
    rep = ChaosReport(3, faults={"kill9": 2, "reset": 1}, faults_during_vend={"kill9": 1})
    rep.refunded_lines = 1
    d = rep.as_dict()
    assert d["faults_during_vend"] == {"kill9": 1} and d["refunded_lines"] == 1
    text = rep.format()
    assert "faults on a running vend         : 1 of 3" in text
    assert "kill9 1/2" in text and "reset 0/1" in text and "lines refunded" in text
