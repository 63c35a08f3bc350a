"""kill -9 in the middle of writing: the database stays consistent and nothing acknowledged is
lost.

A child process applies stock changes in a tight loop, each one together with a counter
increment in one transaction, and prints a line after each commit. The parent SIGKILLs it at
random moments, then reopens the store and checks it.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import kiosk
from kiosk.core.planogram import Planogram, Slot, SlotKind
from kiosk.store import CORRUPT_MARKER, DB_FILENAME, open_store

CAPACITY = 10

CHILD = """
import random, sys
from pathlib import Path
from kiosk.core.stock import StockChange, StockReason
from kiosk.store import open_store

store = open_store(Path(sys.argv[1]))
rng = random.Random(int(sys.argv[2]))
slots = sorted(store.stock.levels())
print("ready", flush=True)
while True:
    slot = rng.choice(slots)
    with store.transaction():
        tx = store.counters.next_value("tx")
        level = store.stock.level(slot)
        if level == 0 or (level < CAP and rng.random() < 0.4):
            delta = rng.randint(1, CAP - level)
            change = StockChange(slot, delta, StockReason.RESTOCK, f"tx{tx}")
        else:
            change = StockChange(slot, -1, StockReason.SALE, f"tx{tx}")
        store.stock.apply(change)
    print(f"ok {tx}", flush=True)
""".replace("CAP", str(CAPACITY))


def _run_and_kill(data: Path, seed: int, rng: random.Random) -> int:
    """Run the child until it acknowledged a random number of commits, kill -9 it a random
    moment later, and return how many commits it acknowledged in all."""
    env = dict(os.environ)
    root = str(Path(kiosk.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data), str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    try:
        first = child.stdout.readline()
        assert first == "ready\n", first + child.communicate(timeout=10)[1]
        want = rng.randint(1, 400)
        acked = 0
        while acked < want:
            line = child.stdout.readline()
            assert line.startswith("ok "), line + child.communicate(timeout=10)[1]
            acked += 1
        time.sleep(rng.uniform(0, 0.02))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        # read through the same buffered file: communicate() would skip what readline() buffered
        rest = child.stdout.read()
        err = child.stderr.read() if child.stderr else ""
    finally:
        if child.poll() is None:  # pragma: no cover - only when an assert above failed
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, err
    return acked + sum(1 for line in rest.splitlines() if line.startswith("ok "))


def _check(data: Path, acked_total: int, kills: int) -> None:
    assert not (data / CORRUPT_MARKER).exists()
    with open_store(data) as store:
        with store.read() as conn:
            assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
            sums = dict(conn.execute("SELECT slot_no, SUM(delta) FROM stock_log GROUP BY 1"))
            last_after = dict(
                conn.execute(
                    "SELECT slot_no, level_after FROM stock_log WHERE id IN "
                    "(SELECT MAX(id) FROM stock_log GROUP BY slot_no)"
                )
            )
            (rows,) = conn.execute("SELECT COUNT(*) FROM stock_log").fetchone()
        levels = store.stock.levels()
        tx = store.counters.current("tx")
    for slot_no, level in levels.items():
        assert 0 <= level <= CAPACITY
        assert sums.get(slot_no, 0) == level, (slot_no, level, sums)
        assert last_after.get(slot_no, 0) == level
    # nothing acknowledged is lost; at most one unacknowledged commit per kill
    assert acked_total <= rows <= acked_total + kills
    # the counter and the stock change were committed together, or not at all
    assert tx == rows


def test_kill_9_leaves_a_consistent_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with open_store(data) as store:
        store.planogram.replace(
            Planogram.of(1, [Slot(n, 1, n, SlotKind.SPIRAL, CAPACITY, None) for n in range(1, 5)])
        )
    rng = random.Random(20240521)
    acked_total = 0
    kills = 8
    for round_no in range(kills):
        acked_total += _run_and_kill(data, seed=round_no, rng=rng)
        _check(data, acked_total, round_no + 1)
    assert acked_total >= kills


def test_kill_9_with_wal_left_behind(tmp_path: Path) -> None:
    """After a kill the WAL file is still there; opening it directly with sqlite3 agrees."""
    data = tmp_path / "data"
    with open_store(data) as store:
        store.planogram.replace(Planogram.of(1, [Slot(1, 1, 0, SlotKind.SPIRAL, CAPACITY, None)]))
    acked = _run_and_kill(data, seed=99, rng=random.Random(7))
    assert (data / (DB_FILENAME + "-wal")).exists()
    conn = sqlite3.connect(data / DB_FILENAME)
    try:
        (rows,) = conn.execute("SELECT COUNT(*) FROM stock_log").fetchone()
    finally:
        conn.close()
    assert acked <= rows <= acked + 1
    _check(data, acked, 1)
