"""The update state file and the supervisor: health-gated commit and automatic rollback.

Standard library only, and no import of the kiosk: the supervisor must work when the version it
tries is broken, so provisioning copies this file out of the package (`kiosk update
install-supervisor`) and systemd runs it with the system Python:

    python3 /opt/kiosk/supervisor.py --config /etc/kiosk/kiosk.toml -- run --config ...

Layout under the update root (`update.root`, default /opt/kiosk):

    versions/<version>/   one venv per installed version (bin/kiosk)
    current               symlink to the version that runs; replaced atomically
    state.json            the update state (below), written with write + fsync + rename
    backups/              the store as it was before a version that migrates it
    supervisor.py         this file

The state's `phase` says what to do next, and every step is idempotent, so a power cut (or
SIGKILL) at any point is finished or undone at the next start:

    idle        nothing pending; `running` runs
    staged      `pending` is installed and checked; the running kiosk switches when idle
    switching   the kiosk stopped for the switch: back up the store if `pending` migrates it,
                then trial
    trial       `current` -> pending; each start counts a boot (on disk before the start)
                and gets TRIAL_ENV=<version>: the kiosk then sells nothing until committed
                (kiosk/update/gate.py); READY and one healthy watchdog report within
                `health_timeout_s` commit it (phase idle, running = pending); a start that
                crashes, or a boot count of `max_boots`, or no health in time: rolling_back
    rolling_back  `current` -> previous, the store backup put back if the trial migrated it
                (its counters raised to the trial's first, kept in the state as
                `counter_floor`: no seq or id is handed out twice), then idle with
                `last_result` "rolled_back"

Health comes from the kiosk's own sd_notify messages: the supervisor is the kiosk's
$NOTIFY_SOCKET, and the kiosk pets its watchdog only while its UI loop, controller, board link
and store are healthy, and on trial its province link (kiosk.systemd, kiosk/app.py). To
systemd the supervisor says READY=1 itself when it runs, forwards the kiosk's WATCHDOG=1 and
STATUS= lines (a hung committed version is still restarted by WatchdogSec), and pets the
watchdog itself during a trial, which it judges.
Every step is also appended to `history`, which the kiosk sends as `events/update` records.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

__all__ = [
    "PHASES",
    "Supervisor",
    "add_step",
    "current_target",
    "load_state",
    "main",
    "save_state",
    "store_schema",
    "switch_link",
]

STATE = "state.json"
PHASES = ("idle", "staged", "switching", "trial", "rolling_back")
HISTORY_KEEP = 100
DB_FILENAME = "kiosk.db"  # kiosk/store/db.py
# (table, name column, value column) of the numbers a store hands out (kiosk/store/migrations.py)
RAISED = (("counters", "name", "value"), ("sqlite_sequence", "name", "seq"))
TRIAL_ENV = "KIOSK_UPDATE_TRIAL"  # kiosk/update/gate.py: the version started on trial
SUPERVISED_ENV = "KIOSK_UPDATE_SUPERVISED"  # kiosk/update/gate.py: only then does it switch
EXIT_CONFIG = 2


# --- the state file ---------------------------------------------------------------------------


def empty_state() -> dict[str, Any]:
    return {
        "phase": "idle",
        "running": None,
        "previous": None,
        "pending": None,
        "boots": 0,
        "last_result": None,
        "history": [],
        "next_seq": 1,
    }


def load_state(root: Path) -> dict[str, Any]:
    """The state (a fresh one when there is none). The file is only ever replaced whole, so
    it is the old or the new state, never half of one."""
    try:
        raw = json.loads((root / STATE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return empty_state()
    state = empty_state()
    if isinstance(raw, dict):
        state.update(raw)
    if state["phase"] not in PHASES:
        state["phase"] = "idle"
    return state


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_state(root: Path, state: dict[str, Any]) -> None:
    """write + fsync + rename + fsync of the directory: on disk before what it enables."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{STATE}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / STATE)
    _fsync_dir(root)


def add_step(state: dict[str, Any], step: str, version: str | None, **detail: Any) -> None:
    """Append one step to the history (`events/update` records are made from it)."""
    seq = int(state.get("next_seq", 1))
    state["next_seq"] = seq + 1
    entry = {"seq": seq, "at": round(time.time(), 3), "step": step, "version": version}
    entry.update(detail)
    state["history"] = [*state.get("history", []), entry][-HISTORY_KEEP:]


def current_target(root: Path) -> str | None:
    """The version directory `current` points at (its name), None without one."""
    try:
        return Path(os.readlink(root / "current")).name
    except OSError:
        return None


def switch_link(root: Path, version: str) -> None:
    """Point `current` at versions/<version>, atomically (symlink + rename), and fsync."""
    if current_target(root) == version:
        return
    tmp = root / f".current.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(Path("versions") / version, tmp)
    os.replace(tmp, root / "current")
    _fsync_dir(root)


def store_schema(data_dir: Path) -> int:
    """The store's schema version (0: no store yet), read without the kiosk's code."""
    db = data_dir / DB_FILENAME
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if row is None:
            return 0
        return int(
            conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
        )
    finally:
        conn.close()


def _backup_store(data_dir: Path, dest: Path) -> None:
    """A consistent copy of the stopped kiosk's store (SQLite's backup API), on disk."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    src = sqlite3.connect(data_dir / DB_FILENAME)
    try:
        out = sqlite3.connect(tmp)
        try:
            src.backup(out)
        finally:
            out.close()
    finally:
        src.close()
    os.chmod(tmp, 0o600)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dest)
    _fsync_dir(dest.parent)


def _counters(db: Path) -> dict[tuple[str, str], int]:
    """Every number the store hands out, {(table, name): value}: `counters` (outbox seq, boot,
    order seq, test vend tx, ...) and `sqlite_sequence` (AUTOINCREMENT ids: alarm numbers,
    stock log ids). Empty when the file cannot be read (a trial that broke it sent nothing)."""
    out: dict[tuple[str, str], int] = {}
    if not db.exists():
        return out
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    except sqlite3.Error:
        return out
    try:
        for table, name_col, value_col in RAISED:
            with contextlib.suppress(sqlite3.Error):
                for name, value in conn.execute(f"SELECT {name_col}, {value_col} FROM {table}"):
                    with contextlib.suppress(TypeError, ValueError):
                        out[(table, str(name))] = int(value)
    finally:
        conn.close()
    return out


def _raise_counters(db: Path, floor: dict[tuple[str, str], int]) -> None:
    """No number is ever handed out twice: a restored store's counters end at least where
    the tried version left them (it may have sent records with them). Repeatable."""
    if not floor:
        return
    conn = sqlite3.connect(db)
    try:
        with conn:
            for (table, name), value in sorted(floor.items()):
                _, name_col, value_col = next(r for r in RAISED if r[0] == table)
                with contextlib.suppress(sqlite3.Error):  # (a table the old schema lacks)
                    done = conn.execute(
                        f"UPDATE {table} SET {value_col} = ? WHERE {name_col} = ? "
                        f"AND {value_col} < ?",
                        (value, name, value),
                    ).rowcount
                    have = conn.execute(
                        f"SELECT 1 FROM {table} WHERE {name_col} = ?", (name,)
                    ).fetchone()
                    if not done and have is None:
                        conn.execute(
                            f"INSERT INTO {table} ({name_col}, {value_col}) VALUES (?, ?)",
                            (name, value),
                        )
    finally:
        conn.close()


def _restore_store(backup: Path, data_dir: Path, floor: dict[tuple[str, str], int]) -> None:
    """Put the backup back: WAL and SHM removed first (a stale WAL must never be replayed
    onto the restored file), then the copy renamed over kiosk.db. Repeatable. The copy's
    counters are raised to `floor` first (`_raise_counters`)."""
    tmp = data_dir / f".{DB_FILENAME}.restore"
    shutil.copyfile(backup, tmp)
    _raise_counters(tmp, floor)
    os.chmod(tmp, 0o600)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            (data_dir / (DB_FILENAME + suffix)).unlink()
    os.replace(tmp, data_dir / DB_FILENAME)
    _fsync_dir(data_dir)


def backup_path(root: Path, version: str) -> Path:
    return root / "backups" / f"store-before-{version}.db"


# --- the supervisor ---------------------------------------------------------------------------


class Supervisor:
    """Runs `<root>/current/bin/kiosk ARGS` and carries the update state forward."""

    def __init__(
        self,
        root: Path,
        args: list[str],
        *,
        data_dir: Path,
        health_timeout_s: float = 120.0,
        max_boots: int = 3,
        watchdog_usec: int = 10_000_000,
        restart_delay_s: float = 5.0,
    ) -> None:
        self.root, self.args, self.data_dir = root, args, data_dir
        self.health_timeout_s, self.max_boots = health_timeout_s, max_boots
        self.watchdog_usec, self.restart_delay_s = watchdog_usec, restart_delay_s
        self.stopping = False
        self.child: subprocess.Popen[bytes] | None = None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock_name = f"@kiosk-supervisor-{os.getpid()}-{secrets.token_hex(4)}"
        self.sock.bind("\0" + self.sock_name[1:])
        self.parent_notify = os.environ.get("NOTIFY_SOCKET", "")
        self.last_own_pet = 0.0

    def say(self, event: str, **kv: Any) -> None:
        fields = " ".join(f"{k}={v}" for k, v in kv.items())
        print(f"supervisor {event} {fields}".rstrip(), file=sys.stderr, flush=True)

    # -- steps (each idempotent, state on disk before the action it enables) --

    def prepare(self) -> dict[str, Any]:
        """Carry an interrupted step forward until the state says what to start."""
        state = load_state(self.root)
        if state["phase"] == "switching":
            self._switch(state)
        if state["phase"] == "trial" and int(state["boots"]) >= self.max_boots:
            self._begin_rollback(
                state, f"{state['boots']} boots without becoming healthy (crash loop)"
            )
        if state["phase"] == "rolling_back":
            self._finish_rollback(state)
        if state["phase"] == "trial":
            switch_link(self.root, state["pending"]["version"])
        elif state["running"] and state["phase"] in ("idle", "staged"):
            switch_link(self.root, state["running"])
        return state

    def _switch(self, state: dict[str, Any]) -> None:
        pending = state["pending"]
        version = pending["version"]
        if pending.get("migrates"):
            dest = backup_path(self.root, version)
            _backup_store(self.data_dir, dest)
            add_step(state, "backup", version, file=str(dest))
            self.say("store_backup", version=version, file=dest)
        # the first update of a cabinet provisioned by hand: what `current` runs now
        previous = state["running"] or current_target(self.root)
        state.update(phase="trial", boots=0, previous=previous, running=previous)
        add_step(state, "switch", version, previous=previous)
        save_state(self.root, state)
        switch_link(self.root, version)
        self.say("switched", version=version, previous=previous)

    def _begin_rollback(self, state: dict[str, Any], reason: str) -> None:
        state["phase"] = "rolling_back"
        state["rollback_reason"] = reason
        add_step(state, "rollback", state["pending"]["version"], reason=reason)
        save_state(self.root, state)
        self.say("rollback", version=state["pending"]["version"], reason=reason)

    def _finish_rollback(self, state: dict[str, Any]) -> None:
        pending = state["pending"]
        version, previous = pending["version"], state["previous"]
        if previous:
            switch_link(self.root, previous)
        restored = False
        if pending.get("migrates") and backup_path(self.root, version).exists():
            if "counter_floor" not in state:  # read once, before the trial's store is gone
                floor = _counters(self.data_dir / DB_FILENAME)
                state["counter_floor"] = [[t, n, v] for (t, n), v in sorted(floor.items())]
                save_state(self.root, state)
            floor = {(str(t), str(n)): int(v) for t, n, v in state["counter_floor"]}
            _restore_store(backup_path(self.root, version), self.data_dir, floor)
            restored = True
        state.pop("counter_floor", None)
        reason = state.pop("rollback_reason", "")
        state.update(
            phase="idle",
            running=previous,
            pending=None,
            boots=0,
            last_result={
                "version": version,
                "result": "rolled_back",
                "reason": reason,
                "at": round(time.time(), 3),
            },
        )
        add_step(
            state, "rolled_back", version, running=previous, store_restored=restored, reason=reason
        )
        save_state(self.root, state)
        self.say("rolled_back", version=version, running=previous, store_restored=restored)

    def _commit(self, state: dict[str, Any]) -> None:
        version = state["pending"]["version"]
        state.update(
            phase="idle",
            running=version,
            pending=None,
            boots=0,
            last_result={
                "version": version,
                "result": "committed",
                "reason": "",
                "at": round(time.time(), 3),
            },
        )
        add_step(state, "committed", version, previous=state["previous"])
        save_state(self.root, state)
        self.say("committed", version=version)

    # -- the child ---------------------------------------------------------------------

    def _start(self, state: dict[str, Any]) -> subprocess.Popen[bytes]:
        if state["phase"] == "trial":
            state["boots"] = int(state["boots"]) + 1
            add_step(state, "trial_boot", state["pending"]["version"], boot=state["boots"])
            save_state(self.root, state)  # counted before the start: a hang or a cut counts
        exe = self.root / "current" / "bin" / "kiosk"
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("WATCHDOG_PID", "WATCHDOG_USEC", TRIAL_ENV)
        }
        env.update(NOTIFY_SOCKET=self.sock_name, WATCHDOG_USEC=str(self.watchdog_usec))
        env[SUPERVISED_ENV] = "1"
        if state["phase"] == "trial":  # it sells nothing until committed (kiosk/update/gate.py)
            env[TRIAL_ENV] = str(state["pending"]["version"])
        self.say("start", exe=exe, target=current_target(self.root), phase=state["phase"])
        return subprocess.Popen([str(exe), *self.args], env=env)

    def _forward(self, message: str) -> None:
        """To systemd ($NOTIFY_SOCKET of the supervisor): the kiosk's watchdog pets and
        status lines (READY=1 is the supervisor's own, sent once it runs)."""
        wanted = [ln for ln in message.splitlines() if ln.startswith(("WATCHDOG=", "STATUS="))]
        if wanted:
            self.notify_parent("\n".join(wanted))

    def notify_parent(self, message: str) -> None:
        addr = self.parent_notify
        if not addr:
            return
        addr = "\0" + addr[1:] if addr.startswith("@") else addr
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(message.encode())

    def _stop_child(self, child: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(grace_s)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def _watch(self, child: subprocess.Popen[bytes], state: dict[str, Any]) -> None:
        """Until the child exits: read its notifications; in a trial, commit on READY plus a
        healthy watchdog report, or roll back when `health_timeout_s` passes without."""
        started = time.monotonic()
        ready = False
        self.sock.settimeout(0.25)
        while child.poll() is None:
            if self.stopping:
                self._stop_child(child)
                break
            try:
                message = self.sock.recv(4096).decode("utf-8", "replace")
            except TimeoutError:
                message = ""
            self._forward(message)
            if state["phase"] == "trial" and time.monotonic() - self.last_own_pet > 1.0:
                # a trial is the supervisor's to judge (health_timeout_s, max_boots): systemd's
                # watchdog must not kill it meanwhile
                self.last_own_pet = time.monotonic()
                self.notify_parent("WATCHDOG=1")
            lines = message.splitlines()
            ready = ready or "READY=1" in lines
            if state["phase"] != "trial":
                continue
            if ready and "WATCHDOG=1" in lines:
                self._commit(state)
            elif time.monotonic() - started > self.health_timeout_s:
                self._stop_child(child)
                self._begin_rollback(
                    state, f"not ready and healthy within {self.health_timeout_s:g} s"
                )

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.notify_parent("READY=1\nSTATUS=update supervisor running")
        while not self.stopping:
            state = self.prepare()
            if current_target(self.root) is None:
                self.say("no_current", root=self.root)
                return EXIT_CONFIG
            child = self.child = self._start(state)
            self._watch(child, state)
            code = child.wait()
            self.child = None
            self.say("exited", code=code, phase=load_state(self.root)["phase"])
            if self.stopping:
                break
            phase = load_state(self.root)["phase"]
            if code != 0 and phase not in ("trial", "switching", "rolling_back"):
                deadline = time.monotonic() + self.restart_delay_s
                while not self.stopping and time.monotonic() < deadline:
                    time.sleep(0.1)
        return 0

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)


# --- the command ------------------------------------------------------------------------------


def _settings(config: Path | None) -> dict[str, Any]:
    """[update] and store.data_dir from the kiosk's config (relative paths: to its folder)."""
    out: dict[str, Any] = {
        "root": Path("/opt/kiosk"),
        "data_dir": Path("/var/lib/kiosk"),
        "health_timeout_s": 120,
        "max_boots": 3,
    }
    if config is None:
        return out
    with open(config, "rb") as f:
        raw = tomllib.load(f)
    update, store = raw.get("update", {}), raw.get("store", {})
    for key, table, name in (("root", update, "root"), ("data_dir", store, "data_dir")):
        if name in table:
            p = Path(str(table[name])).expanduser()
            out[key] = p if p.is_absolute() else config.parent / p
    for key in ("health_timeout_s", "max_boots"):
        if key in update:
            out[key] = update[key]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="kiosk-supervisor",
        description="Run the kiosk's current version; commit or roll back a new one by health.",
    )
    p.add_argument("--config", type=Path, help="the kiosk config ([update], store.data_dir)")
    p.add_argument("--root", type=Path, help="update root (default: update.root)")
    p.add_argument("--data-dir", type=Path, help="store directory (default: store.data_dir)")
    p.add_argument("--health-timeout", type=float, help="seconds (default update.health_timeout_s)")
    p.add_argument("--max-boots", type=int, help="trial boots (default update.max_boots)")
    p.add_argument(
        "--watchdog-usec", type=int, default=10_000_000, help="the kiosk's pet period x2"
    )
    p.add_argument("--restart-delay", type=float, default=5.0, help="after a crash, seconds")
    p.add_argument("kiosk_args", nargs=argparse.REMAINDER, help="-- then `kiosk` arguments")
    a = p.parse_args(argv)
    try:
        s = _settings(a.config)
    except (OSError, tomllib.TOMLDecodeError) as e:
        print(f"kiosk-supervisor: {a.config}: {e}", file=sys.stderr)
        return EXIT_CONFIG
    args = a.kiosk_args[1:] if a.kiosk_args[:1] == ["--"] else a.kiosk_args
    sup = Supervisor(
        a.root or s["root"],
        args or ["run"],
        data_dir=a.data_dir or s["data_dir"],
        health_timeout_s=a.health_timeout or float(s["health_timeout_s"]),
        max_boots=a.max_boots or int(s["max_boots"]),
        watchdog_usec=a.watchdog_usec,
        restart_delay_s=a.restart_delay,
    )
    return sup.run()


if __name__ == "__main__":
    sys.exit(main())
