"""The processes of `kiosk fleet-sim`: kiosk workers, the province, and the parent's handles.

The fleet is spread over several processes (multiprocessing, `spawn`) so that N kiosks do not
share one interpreter lock: each kiosk worker holds a slice of the simulated kiosks
(kiosk.sim.fleet_kiosk: real store, Outbox, SyncClient, own client certificate), the province
simulator runs alone in its own process. The parent (kiosk.sim.fleet_world) owns the broker and
talks to every process over a pipe: one command, one reply (a dict; {"error": ...} on failure).

Kiosk worker commands: `build`, `start` (connects paced: kiosk k starts at its offset; a
failure retries with the client's own jittered backoff), `load` (Poisson sales + telemetry for
a duration, on the worker's loop), `status` (counts), `report` (per-kiosk measurements), `close`.
Province commands: `start`, `stop` (a province outage: the simulator disconnects, its broker
session keeps queueing), `status`, `verify` (loss and duplicates against what kiosks sold),
`close`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import random
import resource
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk.sim.fleet_kiosk import ClientTuning, KioskSpec, SimKiosk, kiosk_id_of
from kiosk.sim.fleet_update import SimUpdates

if TYPE_CHECKING:
    from kiosk.sync.shared_loop import SyncLoop

__all__ = ["ProcHandle", "ProvinceSpec", "WorkerSpec", "province_main", "worker_main"]


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _preload() -> None:
    """Import what a kiosk needs, so an idle worker's RSS (the per-kiosk baseline) holds it."""
    import kiosk.store
    import kiosk.sync.acks
    import kiosk.sync.client
    import kiosk.sync.outbox  # noqa: F401


@dataclass(frozen=True)
class WorkerSpec:
    kiosks: list[KioskSpec]
    ca_file: Path
    url: str
    province_key: bytes
    tune: ClientTuning = field(default_factory=ClientTuning)
    log_file: Path | None = None
    updates: SimUpdates | None = None  # take install_release commands (kiosk.sim.fleet_update)
    loops: int = 4  # shared loop threads (kiosk.sync.shared_loop) per worker


class _KioskWorker:
    """A slice of the fleet on a few shared loops (kiosk.sync.shared_loop, `WorkerSpec.loops`;
    kiosk k on loop k mod loops): each kiosk's SyncClient, its paced start and its sales and
    telemetry run on its loop's thread, so a worker has a handful of threads however many
    kiosks it holds. More than one loop because every outbox write is a SQLite commit with an
    fsync (synchronous=FULL): a loop waits for it, the other loops run meanwhile."""

    def __init__(self, spec: WorkerSpec) -> None:
        from kiosk.sync.shared_loop import SyncLoop

        self.spec = spec
        self.nodes: list[SimKiosk] = []
        self.load_done = True
        self._stop = threading.Event()
        self._load_stop = threading.Event()
        self.loops = [SyncLoop(f"fleet-loop-{j}") for j in range(max(1, spec.loops))]
        self._chains = 0  # load schedules (one per loop) still running
        self._chains_lock = threading.Lock()

    def handle(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        if cmd == "hello":
            _preload()
            return {"pid": os.getpid(), "rss_kib": _rss_kib()}
        if cmd == "build":
            s = self.spec
            self.nodes = [
                SimKiosk(k, s.ca_file, s.url, s.province_key, s.tune, s.updates) for k in s.kiosks
            ]
            for loop in self.loops:
                loop.start()
            return {"built": len(self.nodes), "rss_kib": _rss_kib()}
        if cmd == "start":
            self._start_paced(list(args["offsets"]))
            return {}
        if cmd == "load":
            self.load_done = False
            self._load_stop.clear()
            self._load(args)
            return {}
        if cmd == "load_stop":  # end the running load now
            self._load_stop.set()
            return {}
        if cmd == "status":
            return self.status()
        if cmd == "report":
            return {"kiosks": [n.report() for n in self.nodes]}
        if cmd == "close":
            self._stop.set()
            closers = [threading.Thread(target=n.close, daemon=True) for n in self.nodes]
            for c in closers:  # at once: each says "offline" and waits (bounded) for its PUBACK
                c.start()
            for c in closers:
                c.join(30)
            for loop in self.loops:
                loop.close()
            return {}
        raise ValueError(f"unknown worker command {cmd!r}")

    def _start_paced(self, offsets: list[float]) -> None:
        """Kiosk k connects at its offset (seconds from now), on its loop."""
        t0 = time.monotonic()
        for i, off in enumerate(offsets):
            self._loop(i).call_at(t0 + off, functools.partial(self._start_one, i))

    def _loop(self, i: int) -> SyncLoop:
        return self.loops[i % len(self.loops)]

    def _start_one(self, i: int) -> None:
        if not self._stop.is_set():
            self.nodes[i].start(self._loop(i))

    def _load(self, a: dict[str, Any]) -> None:
        """Poisson sales and periodic telemetry for every kiosk, run from its loop's timers
        (one timer per loop at a time: each event schedules the next)."""
        duration, rate = float(a["duration"]), float(a["sale_rate"]) / 60.0
        tele_s = float(a["telemetry_s"])
        rng = random.Random(int(a["seed"]))
        per_loop: list[list[tuple[float, int, bool]]] = [[] for _ in self.loops]
        for i in range(len(self.nodes)):
            events = per_loop[i % len(self.loops)]
            t = rng.expovariate(rate) if rate > 0 else duration + 1
            while t < duration:
                events.append((t, i, True))
                t += rng.expovariate(rate)
            t = rng.uniform(0, tele_s)
            while t < duration:
                events.append((t, i, False))
                t += tele_s
        t0 = time.monotonic()
        self._chains = len(self.loops)
        for loop, events in zip(self.loops, per_loop, strict=True):
            events.sort(reverse=True)  # popped from the end: earliest first
            loop.call_soon(functools.partial(self._next_event, loop, events, t0))

    def _next_event(self, loop: SyncLoop, events: list[tuple[float, int, bool]], t0: float) -> None:
        while events and not (self._stop.is_set() or self._load_stop.is_set()):
            t, i, sale = events[-1]
            if t0 + t > time.monotonic():
                loop.call_at(t0 + t, functools.partial(self._next_event, loop, events, t0))
                return
            events.pop()
            if sale:
                self.nodes[i].sell()
            else:
                self.nodes[i].tele()
        with self._chains_lock:
            self._chains -= 1
            if self._chains <= 0:
                self.load_done = True

    def status(self) -> dict[str, Any]:
        oldest = [o for o in (n.oldest_unacked() for n in self.nodes) if o is not None]
        return {
            "kiosks": len(self.nodes),
            "started": sum(1 for n in self.nodes if n.started),
            "connected": sum(1 for n in self.nodes if n.connected()),
            "pending": sum(n.pending() for n in self.nodes),
            "unacked_sales": sum(len(n.created) for n in self.nodes),
            "oldest_unacked": min(oldest) if oldest else None,
            "sold": sum(n.sold for n in self.nodes),
            "acked": sum(n.acked for n in self.nodes),
            "load_done": self.load_done,
            "rss_kib": _rss_kib(),
            "cpu_s": _cpu_s(),
            "threads": threading.active_count(),
            "loop_steps": sum(loop.steps for loop in self.loops),
        }


def _log_to(path: Path | None) -> None:
    """Warnings and worse of this process go to `path` (not to the parent's terminal: a
    storm logs one sync.connect_failed per kiosk per attempt)."""
    handler: logging.Handler = (
        logging.FileHandler(path, encoding="utf-8") if path is not None else logging.NullHandler()
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def _serve(conn: Connection, handler: Any) -> None:
    while True:
        try:
            cmd, args = conn.recv()
        except EOFError:  # the parent went away
            return
        try:
            reply = handler(cmd, args)
        except Exception as e:  # reported to the parent, which raises it
            reply = {"error": f"{cmd}: {type(e).__name__}: {e}"}
        conn.send(reply)
        if cmd == "close":
            return


def worker_main(conn: Connection, spec: WorkerSpec) -> None:
    """A kiosk worker process (spawn target)."""
    _log_to(spec.log_file)
    _serve(conn, _KioskWorker(spec).handle)


@dataclass(frozen=True)
class ProvinceSpec:
    url: str
    ca_file: Path
    cert_file: Path
    key_file: Path
    data_dir: Path
    signing_key: bytes
    log_file: Path | None = None
    rollout_tick_s: float | None = None  # tick <data>/rollout.json as `province-sim run` does


class _ProvinceWorker:
    def __init__(self, spec: ProvinceSpec) -> None:
        self.spec = spec
        self.sim: Any = None
        self.rollouts: Any = None

    def handle(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        from kiosk.sim.province import BrokerSettings, ProvinceSimulator

        s = self.spec
        if cmd == "start":
            self.sim = ProvinceSimulator(
                BrokerSettings(
                    url=s.url, ca_file=s.ca_file, cert_file=s.cert_file, key_file=s.key_file
                ),
                s.data_dir,
                {},
                s.signing_key,
            )
            self.sim.start()
            if not self.sim.wait_connected(float(args.get("timeout", 30))):
                raise RuntimeError("province simulator did not connect")
            if s.rollout_tick_s is not None:
                from kiosk.sim.rollout_shell import RolloutDriver

                self.rollouts = RolloutDriver(self.sim, s.data_dir, s.rollout_tick_s).start()
            return {"public_key": self.sim.public_key, "pid": os.getpid()}
        if cmd in ("stop", "close"):
            if self.rollouts is not None:
                self.rollouts.stop()
                self.rollouts = None
            if self.sim is not None:
                self.sim.stop()
                self.sim = None
            return {}
        if cmd == "status":
            return {"running": self.sim is not None, "cpu_s": _cpu_s(), "rss_kib": _rss_kib()}
        if cmd == "verify":
            return verify_province_db(s.data_dir, dict(args["sold"]))
        raise ValueError(f"unknown province command {cmd!r}")


def verify_province_db(data_dir: Path, sold: dict[str, int]) -> dict[str, Any]:
    """Against the province database: sale records lost (sold by a kiosk, `sale-<kiosk>-1..n`,
    not stored), duplicate rows after dedupe (must be 0), duplicates received and dropped by the
    dedupe, records stored."""
    from kiosk.sim.province import DB_FILENAME

    db = sqlite3.connect(data_dir / DB_FILENAME, timeout=30)
    try:
        held: dict[str, set[str]] = {}
        for kid, eid in db.execute("SELECT kiosk_id, event_id FROM events WHERE kind = 'sale'"):
            held.setdefault(kid, set()).add(eid)
        lost = 0
        lost_kiosks = 0
        for kid, n in sold.items():
            have = held.get(kid, set())
            missing = sum(1 for k in range(1, n + 1) if f"sale-{kid}-{k}" not in have)
            lost += missing
            lost_kiosks += 1 if missing else 0
        rows, distinct = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT kiosk_id || '/' || event_id) FROM events"
        ).fetchone()
        dup_received = db.execute("SELECT COALESCE(SUM(duplicates), 0) FROM receipts").fetchone()
    finally:
        db.close()
    return {
        "lost": lost,
        "lost_kiosks": lost_kiosks,
        "stored": int(rows),
        "duplicates_after_dedupe": int(rows) - int(distinct),
        "duplicates_received": int(dup_received[0]),
    }


def province_main(conn: Connection, spec: ProvinceSpec) -> None:
    """The province process (spawn target)."""
    _log_to(spec.log_file)
    _serve(conn, _ProvinceWorker(spec).handle)


class ProcHandle:
    """The parent's end of one fleet process: `call()` sends a command and waits for its reply;
    `send()`/`reply()` let the parent talk to every process at once."""

    def __init__(self, name: str, target: Any, spec: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.name = name
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(child, spec), name=name, daemon=True)
        self.proc.start()
        child.close()
        self.last_cmd = ""

    @property
    def pid(self) -> int:
        return int(self.proc.pid or 0)

    def send(self, cmd: str, **args: Any) -> None:
        self.last_cmd = cmd
        self.conn.send((cmd, args))

    def _closed(self) -> bool:
        return self.last_cmd == "close"

    def reply(self, timeout: float) -> dict[str, Any]:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"{self.name}: no reply within {timeout:.0f} s")
        r: dict[str, Any] = self.conn.recv()
        if "error" in r:
            raise RuntimeError(f"{self.name}: {r['error']}")
        return r

    def call(self, cmd: str, timeout: float = 60.0, **args: Any) -> dict[str, Any]:
        self.send(cmd, **args)
        return self.reply(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Ask the process to close (unless it already replied to a `close`), then end it."""
        if self.proc.is_alive() and not self._closed():
            with contextlib.suppress(OSError, EOFError, TimeoutError, RuntimeError):
                self.call("close", timeout)
            self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()


def kiosk_ids(n: int) -> list[str]:
    return [kiosk_id_of(i) for i in range(n)]
