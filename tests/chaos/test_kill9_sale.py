"""kill -9 the kiosk at every persisted step of a 3-item order, restart it, and check the books.

The board emulator runs in its own process on a pty (outcome memory in a file, physical log in
JSON lines). The kiosk runs headless (`python -m kiosk.cli run --headless --script buy3
--test-payments`) in a child process with KIOSK_CRASH_AT=<point>:<n>, which SIGKILLs itself:
- commit:n       right after the n-th order commit (checkout, paid + line 0, each line result)
- vend_result:n  after the n-th vend's outcome came back, before it is committed
- vend_sent:n    a few ms after the n-th vend was started (motor may be running)
Then the kiosk restarts without the hook and must finish. Checks: at most one motor run per tx,
delivered + refunded lines = 3, kiosk deliveries = physical drops, stock right, exactly one
ledger record with an intact chain, refunds = paid - delivered, no vend after an unknown line.
Variant: the board resets and loses its memory while the kiosk is down (line unknown, refunded,
alarm). Six of the points again on a VMC (`kiosk emulator --protocol vmc`, docs/boards/vmc.md):
no tx in its log, so runs are checked per slot and against the vends issued, and a line in
flight at the kill ends unknown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kiosk.core.sale import LineStatus, State
from kiosk.sim.board_emulator import read_physical_log
from kiosk.store import open_store
from kiosk.store.orders import OrderRepo
from tests.support.config import write_kiosk_config
from tests.support.store import seed_store

ROOT = Path(__file__).parents[2]
CHILD_TIMEOUT = 60.0
N_COMMITS = 5  # checkout, paid + line 0 vending, line 0 / 1 / 2 settled (the last one closes)
# The rig has no province (the config's broker does not answer): the sale record stays in the
# outbox and buy3 exits 3 (UNREACHABLE) after the sale went through, not 0 (README "Exit codes").
SOLD_NOT_ACKED = 3


@dataclass
class Rig:
    dir: Path
    config: Path
    pty: Path
    control: Path
    physical: Path
    emulator: subprocess.Popen[bytes]
    levels0: dict[int, int]

    def kiosk(self, crash_at: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK_CRASH")}
        env["PYTHONPATH"] = str(ROOT)
        if crash_at is not None:
            env["KIOSK_CRASH_AT"] = crash_at
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "kiosk.cli",
                "run",
                "--headless",
                "--script",
                "buy3",
                "--test-payments",
                "--timeout",
                "40",
                "--config",
                str(self.config),
            ],
            env=env,
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
        )

    def ctl(self, command: str) -> str:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "kiosk.sim.cli_emulator",
                "ctl",
                "--control",
                str(self.control),
                *command.split(),
            ],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout


@pytest.fixture
def rig(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Rig]:
    """Our own board; with the indirect parameter "vmc", a VMC (docs/boards/vmc.md)."""
    protocol: str = getattr(request, "param", "kiosk")
    data = tmp_path / "data"
    levels0 = seed_store(data)
    pty, control = tmp_path / "board", tmp_path / "ctl.sock"
    physical = tmp_path / "physical.jsonl"
    emu = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kiosk.sim.cli_emulator",
            "--pty",
            str(pty),
            "--control",
            str(control),
            "--log",
            str(physical),
            "--memory-file",
            str(tmp_path / "mem.json"),
            "--time-scale",
            "0.01",
            "--stock",
            "5",
            "--seed",
            "1",
            "--protocol",
            protocol,
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while not (pty.exists() and control.exists()):
        assert emu.poll() is None, emu.stdout.read().decode() if emu.stdout else ""
        assert time.monotonic() < deadline, "emulator did not start"
        time.sleep(0.05)
    cfg = tmp_path / "kiosk.toml"
    hardware = {"protocol": "vmc", "baud": 57600} if protocol == "vmc" else {}
    write_kiosk_config(cfg, pty, data, hardware=hardware)
    try:
        yield Rig(tmp_path, cfg, pty, control, physical, emu, levels0)
    finally:
        emu.send_signal(signal.SIGTERM)
        try:
            emu.wait(10)
        except subprocess.TimeoutExpired:
            emu.kill()
            emu.wait()


# What recovery must make of the commit points (deterministic): after commit 2 the vend of line 0
# may not have been sent and the board has no older tx of ours to prove its memory intact, so
# line 0 is unknown (refunded); after commits 3 and 4 line 0's tx is that proof, so the board's
# UNKNOWN_TX means "never accepted" and the line is vended again with a new tx.
EXPECTED = {
    "commit:2": [("unknown", 1), ("delivered", 1), ("delivered", 1)],
    "commit:3": [("delivered", 1), ("delivered", 2), ("delivered", 1)],
    "commit:4": [("delivered", 1), ("delivered", 1), ("delivered", 2)],
}


def _lines(rig: Rig) -> list[tuple[str, int]]:
    store = open_store(rig.dir / "data")
    try:
        (order,) = OrderRepo(store).all()
        return [(ln.status.value, ln.attempts) for ln in order.lines]
    finally:
        store.close()


def _check_books(rig: Rig, *, memory_lost: bool = False, vmc: bool = False) -> None:
    store = open_store(rig.dir / "data")
    try:
        repo = OrderRepo(store)
        orders = repo.all()
        assert len(orders) == 1, orders
        (order,) = orders
        assert order.state in (State.COMPLETED, State.PARTLY_DELIVERED, State.REFUND_DUE)
        assert len(order.lines) == 3
        delivered = [ln for ln in order.lines if ln.status is LineStatus.DELIVERED]
        refunded = [
            ln for ln in order.lines if ln.status in (LineStatus.FAILED, LineStatus.UNKNOWN)
        ]
        assert len(delivered) + len(refunded) == 3
        # money: paid = delivered + refund due, one refund record for it
        assert order.paid_fen == order.total_fen
        assert order.refund_due_fen == sum(ln.price_fen for ln in refunded)
        refunds = repo.refunds(order.order_id)
        assert sum(r.amount_fen for r in refunds) == order.refund_due_fen
        assert len(refunds) == (1 if refunded else 0)
        # ledger: exactly one record, chain intact
        (rec,) = repo.ledger()
        assert rec.order_id == order.order_id and repo.verify_ledger() == []
        assert rec.delivered_fen + rec.refund_due_fen == rec.paid_fen
        # stock: dropped once per delivered line, from the slot it came out of
        expected = dict(rig.levels0)
        for ln in delivered:
            expected[ln.slot_no] -= 1
        assert store.stock.levels() == expected
        assert repo.reserved() == {}
        alarms = {a.kind for a in repo.alarms()}
        if any(ln.status is LineStatus.UNKNOWN for ln in order.lines):
            assert "unknown_outcome" in alarms
        address = {n: sl.address for n, sl in store.planogram.load().slots.items()}
    finally:
        store.close()
    runs = [e for e in read_physical_log(rig.physical) if e["event"] == "motor_run"]
    if vmc:  # no tx in a VMC's log: per slot, and never more runs than vends issued
        assert len(runs) <= sum(ln.attempts for ln in order.lines), runs
        drops = Counter(e["slot"] for e in runs if e["dropped"])
        for ln in order.lines:
            slot = address[ln.slot_no]
            if ln.status is LineStatus.DELIVERED:
                assert drops[slot] >= 1, (ln, runs)
            if ln.status is LineStatus.FAILED:  # refunded as certainly not delivered
                assert drops[slot] == 0 or ln.slot_no in {d.slot_no for d in delivered}, runs
        may_drop = Counter(
            address[ln.slot_no]
            for ln in order.lines
            if ln.status in (LineStatus.DELIVERED, LineStatus.UNKNOWN)
        )
        assert all(n <= may_drop[slot] for slot, n in drops.items()), (drops, may_drop)
        return
    per_tx = Counter(e["tx"] for e in runs)
    assert all(n == 1 for n in per_tx.values()), per_tx  # never vended twice
    order_txs = {ln.tx for ln in order.lines}
    dropped = [e for e in runs if e["dropped"]]
    if memory_lost:
        assert len(delivered) <= len(dropped) <= 3
    else:
        assert len(dropped) == len(delivered)  # the kiosk knows exactly what left the cabinet
        for ln in delivered:
            assert any(e["tx"] == ln.tx and e["dropped"] for e in runs)
    # no line was vended again after it was settled as unknown
    for ln in order.lines:
        if ln.status is LineStatus.UNKNOWN:
            assert ln.tx in order_txs


def _run(rig: Rig, crash_at: str | None, *, expect_crash: bool = True) -> None:
    first = rig.kiosk(crash_at)
    if expect_crash:
        assert first.returncode == -signal.SIGKILL, first.stdout + first.stderr[-3000:]
        assert f"KIOSK_CRASH {crash_at}" in first.stderr
        second = rig.kiosk(None)
        assert second.returncode == SOLD_NOT_ACKED, second.stdout + second.stderr[-3000:]
    else:
        assert first.returncode == SOLD_NOT_ACKED, first.stdout + first.stderr[-3000:]


def test_no_crash_has_exactly_the_enumerated_commits(rig: Rig) -> None:
    _run(rig, f"commit:{N_COMMITS + 1}", expect_crash=False)
    _check_books(rig)
    store = open_store(rig.dir / "data")
    try:
        (order,) = OrderRepo(store).all()
        assert order.state is State.COMPLETED
    finally:
        store.close()
    out = subprocess.run(
        [sys.executable, "-m", "kiosk.cli", "ledger", "verify", "--config", str(rig.config)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and "1 records, chain intact" in out.stdout


POINTS = [
    *(f"commit:{n}" for n in range(1, N_COMMITS + 1)),
    *(f"vend_result:{n}" for n in (1, 2, 3)),
    *(f"vend_sent:{n}" for n in (1, 2, 3)),
]


@pytest.mark.parametrize("crash_at", POINTS)
def test_kill9_and_restart(rig: Rig, crash_at: str) -> None:
    _run(rig, crash_at)
    _check_books(rig)
    if crash_at in EXPECTED:
        assert _lines(rig) == EXPECTED[crash_at]


# On a VMC nothing survives a kiosk restart (a VMC keeps no outcomes, the driver's memory is
# per run): a line whose vend may have left when the kiosk died is refunded as unknown, never
# vended again; the lines before it stay delivered, the ones after it are vended normally.
VMC_EXPECTED = {
    "commit:3": [LineStatus.DELIVERED, LineStatus.UNKNOWN, LineStatus.DELIVERED],
    "vend_result:2": [LineStatus.DELIVERED, LineStatus.UNKNOWN, LineStatus.DELIVERED],
    "vend_sent:3": [LineStatus.DELIVERED, LineStatus.DELIVERED, LineStatus.UNKNOWN],
}


# The VMC's points: before and after the order is created and paid, a vend whose command left
# and one whose status was being recorded, and the last commit (the order closed). The other
# points of POINTS differ from these only in which line they hit (kept to the suite's time).
VMC_POINTS = ["commit:1", "commit:2", "commit:3", f"commit:{N_COMMITS}", "vend_result:2"]
VMC_POINTS.append("vend_sent:3")


@pytest.mark.parametrize("rig", ["vmc"], indirect=True)
@pytest.mark.parametrize("crash_at", VMC_POINTS)
def test_kill9_and_restart_on_a_vmc(rig: Rig, crash_at: str) -> None:
    _run(rig, crash_at)
    _check_books(rig, vmc=True)
    if crash_at in VMC_EXPECTED:
        store = open_store(rig.dir / "data")
        try:
            (order,) = OrderRepo(store).all()
            assert [ln.status for ln in order.lines] == VMC_EXPECTED[crash_at]
        finally:
            store.close()


def test_board_loses_memory_while_kiosk_is_down(rig: Rig) -> None:
    first = rig.kiosk("vend_result:2")  # line 1 dropped, outcome not committed
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    rig.ctl("reset lose")
    second = rig.kiosk(None)
    assert second.returncode == SOLD_NOT_ACKED, second.stdout + second.stderr[-3000:]
    _check_books(rig, memory_lost=True)
    store = open_store(rig.dir / "data")
    try:
        repo = OrderRepo(store)
        (order,) = repo.all()
        statuses = [ln.status for ln in order.lines]
        assert statuses == [LineStatus.DELIVERED, LineStatus.UNKNOWN, LineStatus.DELIVERED]
        assert order.state is State.PARTLY_DELIVERED
        assert order.refund_due_fen == order.lines[1].price_fen
        assert "unknown_outcome" in {a.kind for a in repo.alarms()}
    finally:
        store.close()
