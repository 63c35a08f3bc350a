"""A version on trial sells nothing, and its rollback with the store put back loses nothing and
reuses no number (issue 16 req. 3 and 4): the real kiosk under the real supervisor, no pip.

The versions are this source tree behind small `bin/kiosk` wrappers (tests/support/releases.py
`source_version_root`), so nothing is built or installed: `A` runs as provisioned; `B` is the
same code with its watchdog off (its one difference: it says READY but never reports
healthy), staged as a version that migrates the store, so the supervisor
backs the store up before it and puts it back after it.

1. A sale on A (`--script buy3`), then the supervisor runs A headless, connected.
2. B is staged; A, idle, shows "out of service: updating" and stops for the switch; B starts on
   trial: "out of service: updating" and nothing else (no order can start), yet it connects
   and sends `reported` records (phase trial) that the province stores with their seqs.
3. B crashes before it is healthy (SIGKILL; `max_boots` 1): rolled back, the store put back.
   A starts again, not on trial, and opens; its update steps reach the province under seqs
   above every seq B used (the restored store's outbox counter was raised to B's): no seq at
   the province names two records. The sale before is there, the ledger verifies.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kiosk.sim.province import ProvinceSimulator
from kiosk.update.supervisor import add_step, current_target, load_state, save_state
from tests.support.child import Child
from tests.support.fixtures import KioskWorld
from tests.support.kiosk_node import KIOSK_A
from tests.support.paths import ROOT, child_env
from tests.support.releases import source_version_root


def wait_for(what: str, cond: Callable[[], bool], timeout: float, dump: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{dump()}")


def env() -> dict[str, str]:
    return child_env("KIOSK_CRASH", "NOTIFY_", "WATCHDOG_")


def orders(data: Path) -> int:
    conn = sqlite3.connect(data / "kiosk.db")
    try:
        return int(conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0])
    finally:
        conn.close()


def silent_watchdog_version(root: Path, name: str, out: Path) -> None:
    """This source tree without a watchdog (WATCHDOG_USEC=0): READY, but never a pet, so
    never committed; its output to `out`, its pid to `out`.pid."""
    exe = root / "versions" / name / "bin" / "kiosk"
    exe.parent.mkdir(parents=True)
    exe.write_text(
        f"#!/bin/sh\necho $$ >{out}.pid\nexec env WATCHDOG_USEC=0 PYTHONPATH={ROOT} "
        f'{sys.executable} -m kiosk.cli "$@" >{out} 2>&1\n'
    )
    exe.chmod(0o755)


def trial_seqs(province: ProvinceSimulator) -> list[int]:
    """Seqs of the `reported` records the version on trial sent."""
    return [
        int(e["seq"])
        for e in province.events(KIOSK_A)
        if e["kind"] == "reported" and (e["body"].get("update") or {}).get("phase") == "trial"
    ]


@pytest.mark.timeout(600)
def test_a_trial_sells_nothing_and_its_rollback_loses_and_reuses_nothing(
    kiosk_world: KioskWorld, province: ProvinceSimulator, tmp_path: Path
) -> None:
    world = kiosk_world
    root = tmp_path / "opt-kiosk"
    source_version_root(root, "A")
    b_out = tmp_path / "b.out"
    silent_watchdog_version(root, "B", b_out)
    with world.config.open("a") as f:
        f.write(f'\n[update]\nroot = "{root}"\n')

    # 1. a sale before, then A under the supervisor, connected
    buy = Child(
        [
            *(sys.executable, "-m", "kiosk.cli", "run", "--headless"),
            *("--config", str(world.config), "--script", "buy3", "--test-payments"),
            *("--timeout", "90"),
        ],
        env(),
        world.config.parent,
    )
    try:
        assert buy.proc.wait(300) == 0, buy.dump()
    finally:
        buy.stop()
    before = orders(world.data)
    sales = province.event_count(KIOSK_A, "sale")
    assert before >= 1 and sales >= 1
    sup = Child(
        [
            *(sys.executable, "-I", str(ROOT / "kiosk" / "update" / "supervisor.py")),
            *("--config", str(world.config), "--health-timeout", "300", "--max-boots", "1"),
            *("--watchdog-usec", "2000000", "--restart-delay", "1", "--"),
            *("run", "--headless", "--config", str(world.config)),
        ],
        env(),
        world.config.parent,
    )
    try:
        reported0 = province.event_count(KIOSK_A, "reported")
        sup.wait_line(lambda s: s.startswith("idle:"), 120)
        wait_for(
            "A connected",
            lambda: province.event_count(KIOSK_A, "reported") > reported0,
            120,
            sup.dump,
        )

        # 2. B staged as a version that migrates the store: A closes and switches
        state = load_state(root)
        state.update(phase="staged", pending={"version": "B", "migrates": True})
        add_step(state, "staged", "B", migrates=True)
        save_state(root, state)
        n, _ = sup.wait_line(lambda s: s == "out of service: updating", 60)
        wait_for("B on trial", lambda: load_state(root)["phase"] == "trial", 60, sup.dump)
        assert load_state(root)["pending"]["gate_province"] is True  # A was connected
        assert (root / "backups" / "store-before-B.db").exists()
        wait_for("B's reported records", lambda: bool(trial_seqs(province)), 60, sup.dump)

        # 3. B crashes (SIGKILL) before it is healthy: with max_boots 1 that is a crash loop;
        # rolled back, the store put back; A opens again
        os.kill(int(Path(f"{b_out}.pid").read_text()), signal.SIGKILL)
        wait_for(
            "the rollback",
            lambda: (load_state(root)["last_result"] or {}).get("result") == "rolled_back",
            120,
            sup.dump,
        )
        state = load_state(root)
        assert current_target(root) == "A" and state["phase"] == "idle", state
        assert "crash loop" in state["last_result"]["reason"]
        assert state["history"][-1]["store_restored"] is True
        sup.wait_line(lambda s: s.startswith("idle:"), 120, start=n + 1)
        wait_for(
            "A's rolled_back step at the province",
            lambda: any(
                e["kind"] == "update" and e["body"]["step"] == "rolled_back"
                for e in province.events(KIOSK_A)
            ),
            120,
            sup.dump,
        )
    finally:
        sup.stop()
    assert sup.proc.returncode == 0, sup.dump()

    # B showed only the updating screen: no order could start
    seen = b_out.read_text(encoding="utf-8")
    lines = seen.splitlines()
    assert "out of service: updating" in lines, seen
    assert not any(v.startswith(("idle:", "shopping:", "payment:")) for v in lines), seen
    # nothing sold was lost, no number was handed out twice
    events = province.events(KIOSK_A)
    by_seq: dict[int, set[str]] = {}
    for e in events:
        by_seq.setdefault(int(e["seq"]), set()).add(e["event_id"])
    assert not {s: ids for s, ids in by_seq.items() if len(ids) > 1}
    after_rollback = [
        int(e["seq"])
        for e in events
        if e["kind"] == "update" and e["body"]["step"] == "rolled_back"
    ]
    assert min(after_rollback) > max(trial_seqs(province))
    assert orders(world.data) == before
    assert province.event_count(KIOSK_A, "sale") == sales
    verify = Child(
        [sys.executable, "-m", "kiosk.cli", "ledger", "verify", "--config", str(world.config)],
        env(),
        world.config.parent,
    )
    assert verify.proc.wait(120) == 0, verify.dump()
