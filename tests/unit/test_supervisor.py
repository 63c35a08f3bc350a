"""The update supervisor (issue 16 req. 4): health-gated commit, automatic rollback, the store
put back when the tried version had migrated it, and a state that survives SIGKILL at every step.

The supervisor is kiosk/update/supervisor.py run as a file with `python -I` (it imports no
kiosk code). The versions it runs are small stand-in `bin/kiosk` programs (Python scripts
using only the standard library) that speak the same sd_notify protocol as `kiosk run`: a
healthy one sends READY=1 then WATCHDOG=1 every half second, a crashing one exits 1, a hung
one never says READY, and a migrating one writes a row into the store's schema_version table
(as a new version's migration would) before it crashes. The real kiosk under the supervisor,
with real releases, is tests/integration/test_update_rollback.py.
"""

from __future__ import annotations

import ast
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kiosk.update import supervisor as sup_mod
from kiosk.update.supervisor import add_step, current_target, load_state, save_state
from tests.support.child import Child

SUPERVISOR = Path(sup_mod.__file__)

FAKE = """#!{python}
import os, socket, sys, time, sqlite3
BEHAVIOUR = {behaviour!r}
DATA = {data!r}
def notify(msg):
    addr = os.environ["NOTIFY_SOCKET"]
    addr = "\\0" + addr[1:] if addr.startswith("@") else addr
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(addr); s.sendall(msg.encode())
print("fake kiosk {version} " + BEHAVIOUR, flush=True)
print("trial=" + os.environ.get("KIOSK_UPDATE_TRIAL", ""), flush=True)
print("supervised=" + os.environ.get("KIOSK_UPDATE_SUPERVISED", ""), flush=True)
if BEHAVIOUR == "migrate_then_crash":
    c = sqlite3.connect(DATA + "/kiosk.db")
    c.execute("INSERT OR REPLACE INTO schema_version VALUES (99, 0, 'new version migrated')")
    # it handed out numbers (boot, outbox seq, an alarm id) in records it may have sent
    c.execute("UPDATE counters SET value = value + 100")
    c.execute("INSERT INTO counters VALUES ('selftest_seq', 7)")
    c.execute("INSERT INTO alarms (kind) VALUES ('trial')")
    c.commit(); c.close()
    sys.exit(1)
if BEHAVIOUR == "crash":
    sys.exit(1)
if BEHAVIOUR == "healthy":
    notify("READY=1")
running = True
import signal
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    if BEHAVIOUR == "healthy":
        notify("WATCHDOG=1")
    time.sleep(0.5)
"""


def fake_version(root: Path, version: str, behaviour: str, data: Path) -> None:
    exe = root / "versions" / version / "bin" / "kiosk"
    exe.parent.mkdir(parents=True)
    exe.write_text(
        FAKE.format(python=sys.executable, behaviour=behaviour, data=str(data), version=version)
    )
    exe.chmod(0o755)


def make_store(data: Path, schema: int = 5) -> None:
    data.mkdir(parents=True, exist_ok=True)
    c = sqlite3.connect(data / "kiosk.db")
    c.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at, description)")
    c.executemany("INSERT INTO schema_version VALUES (?, 0, 'v')", [(v,) for v in range(1, 6)])
    c.execute("CREATE TABLE sales (n INTEGER)")
    c.execute("INSERT INTO sales VALUES (42)")
    c.execute("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    c.executemany("INSERT INTO counters VALUES (?, ?)", [("boot", 3), ("outbox_seq", 40)])
    c.execute("CREATE TABLE alarms (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT)")
    c.execute("INSERT INTO alarms (kind) VALUES ('before')")
    c.commit()
    c.close()


def stage(root: Path, version: str, *, migrates: bool = False, phase: str = "switching") -> None:
    state = load_state(root)
    state.update(phase=phase, pending={"version": version, "migrates": migrates})
    add_step(state, "staged", version)
    save_state(root, state)


def start(root: Path, data: Path, health_s: float = 20, boots: int = 3, notify: str = "") -> Child:
    return Child(
        [
            *(sys.executable, "-I", str(SUPERVISOR), "--root", str(root)),
            *("--data-dir", str(data), "--health-timeout", str(health_s)),
            *("--max-boots", str(boots), "--restart-delay", "0.2", "--", "run"),
        ],
        {
            **{k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))},
            **({"NOTIFY_SOCKET": notify} if notify else {}),
        },
        root,
    )


def wait_for(what: str, cond: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def stop(p: Child) -> str:
    p.stop()
    return p.dump()


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    root, data = tmp_path / "opt", tmp_path / "data"
    root.mkdir()
    make_store(data)
    fake_version(root, "1.0", "healthy", data)
    (root / "current").symlink_to(Path("versions") / "1.0")
    return root, data


def test_the_supervisor_imports_nothing_of_the_kiosk() -> None:
    tree = ast.parse(SUPERVISOR.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top == "__future__", name


def test_a_healthy_version_is_committed(world: tuple[Path, Path]) -> None:
    root, data = world
    fake_version(root, "2.0", "healthy", data)
    stage(root, "2.0")
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"@test-systemd-{os.getpid()}-{time.monotonic_ns()}"
    systemd.bind("\0" + name[1:])
    systemd.settimeout(30)
    p = start(root, data, notify=name)
    try:
        wait_for("commit", lambda: load_state(root)["running"] == "2.0")
        # systemd hears the supervisor's READY, then the kiosk's watchdog pets forwarded
        said = [systemd.recv(4096).decode() for _ in range(3)]
        assert said[0].startswith("READY=1") and "WATCHDOG=1" in said[1:], said
        state = load_state(root)
        assert state["phase"] == "idle" and state["last_result"]["result"] == "committed"
        assert state["previous"] == "1.0" and current_target(root) == "2.0"
        assert [h["step"] for h in state["history"]][-3:] == ["switch", "trial_boot", "committed"]
        p.wait_line(lambda s: s == "trial=2.0", 30)  # started on trial: sells nothing yet
        p.wait_line(lambda s: s == "supervised=1", 30)  # (its gate switches: someone will)
    finally:
        out = stop(p)
    assert p.proc.returncode == 0, out
    p = start(root, data)  # a plain restart of the committed version is no trial
    try:
        p.wait_line(lambda s: s == "trial=", 30)
        assert "trial=2.0" not in p.lines()
    finally:
        stop(p)


def test_a_crash_loop_rolls_back_and_restores_the_migrated_store(
    world: tuple[Path, Path],
) -> None:
    root, data = world
    fake_version(root, "2.0", "migrate_then_crash", data)
    stage(root, "2.0", migrates=True)
    p = start(root, data, boots=2)
    try:
        wait_for(
            "rollback",
            lambda: (load_state(root)["last_result"] or {}).get("result") == "rolled_back",
        )
        state = load_state(root)
        assert state["running"] == "1.0" and current_target(root) == "1.0"
        assert "crash loop" in state["last_result"]["reason"]
        steps = [h["step"] for h in state["history"]]
        assert steps.count("trial_boot") == 2 and "backup" in steps
        assert state["history"][-1]["store_restored"] is True
        c = sqlite3.connect(data / "kiosk.db")
        assert c.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == 5
        assert c.execute("SELECT n FROM sales").fetchall() == [(42,)]
        # no number the trial handed out is handed out again by the restored store
        counters = dict(c.execute("SELECT name, value FROM counters").fetchall())
        assert counters == {"boot": 103, "outbox_seq": 140, "selftest_seq": 7}, counters
        assert c.execute("SELECT kind FROM alarms").fetchall() == [("before",)]
        c.execute("INSERT INTO alarms (kind) VALUES ('after')")
        assert c.execute("SELECT MAX(id) FROM alarms").fetchone()[0] == 3
        c.close()
        p.wait_line(lambda s: s == "fake kiosk 1.0 healthy", 30)
        p.wait_line(lambda s: s == "trial=2.0", 30)  # the trial was told it is one
    finally:
        stop(p)


def test_no_health_within_the_time_rolls_back(world: tuple[Path, Path]) -> None:
    root, data = world
    fake_version(root, "2.0", "hang", data)
    stage(root, "2.0")
    p = start(root, data, health_s=2)
    try:
        wait_for(
            "rollback",
            lambda: (load_state(root)["last_result"] or {}).get("result") == "rolled_back",
        )
        assert "within 2 s" in load_state(root)["last_result"]["reason"]
        assert current_target(root) == "1.0"
    finally:
        stop(p)


@pytest.mark.parametrize("step", ["switch", "trial_boot", "rollback", "backup"])
def test_sigkill_at_any_step_ends_in_a_working_version(world: tuple[Path, Path], step: str) -> None:
    """The supervisor is killed (SIGKILL, like a power cut) right after a step is on disk; a
    new supervisor finishes the job: the cabinet runs a working version, the store is whole."""
    root, data = world
    fake_version(root, "2.0", "migrate_then_crash" if step != "trial_boot" else "crash", data)
    stage(root, "2.0", migrates=True)
    p = start(root, data, boots=2)
    wait_for(step, lambda: step in [h["step"] for h in load_state(root)["history"]])
    p.proc.kill()
    p.proc.wait()
    p = start(root, data, boots=2)
    try:
        wait_for(
            "rollback",
            lambda: (load_state(root)["last_result"] or {}).get("result") == "rolled_back",
        )
        assert current_target(root) == "1.0" and load_state(root)["phase"] == "idle"
        c = sqlite3.connect(data / "kiosk.db")
        assert c.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == 5
        assert c.execute("SELECT n FROM sales").fetchall() == [(42,)]
        c.close()
        p.wait_line(lambda s: s == "fake kiosk 1.0 healthy", 30)
    finally:
        stop(p)
