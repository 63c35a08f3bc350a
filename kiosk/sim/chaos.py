"""The chaos suite: N sales while the world misbehaves, then three independent books compared.

Owns: the chaos runner (`run_chaos`), its report (`ChaosReport`) and the chaos kiosk child
(`python -m kiosk.sim.chaos child ...`). Decides nothing about sales: the kiosk under test is
the real app (kiosk.app.build_app: store, outbox, serial link, board driver, controller) plus a
real SyncClient, running as a CHILD PROCESS so that SIGKILL is real; the board emulator runs in
its own process on a pty with its physical log (JSON lines); the province simulator and a real
Mosquitto (TLS, client certificates, ACL) run in the runner, the kiosk reaches the broker
through a TcpProxy the runner can cut.

Faults, at random times (seeded), with at least one of each kind in every run with at least
as many faults as kinds (`--fault-kinds` picks the kinds; default all of FAULT_KINDS):
- `kill9`          SIGKILL the kiosk child, start it again on the same store;
- `broker`         restart Mosquitto (stop + start on the same port and persistence; every
                   other one a SIGKILL instead of a clean stop);
- `cut`            reset every TCP connection through the proxy;
- `serial`         corrupt serial bytes for a few seconds (emulator drop_byte_ratio and
                   bit_flip_ratio), then clean again;
- `reset`          reset the board (memory kept: a running tx is recorded as interrupted);
- `store`          corrupt the store and recover it: at a moment without an open order SIGKILL
                   the child, overwrite one index b-tree page of kiosk.db with garbage (page 1
                   and every table page intact, so `PRAGMA quick_check` fails but every row
                   stays readable), start the child (its open_store moves the file aside and
                   writes STORE_CORRUPT; it must not sell), run the real
                   `kiosk store recover --config ...` (it salvages every readable row into a
                   fresh store with a new epoch) and start the child again; the books must still
                   agree, the kiosk's own coming from the salvaged store.

Aiming: `kill9` and `reset` are aimed at running vends. The emulator runs its motors at
`--time-scale` TIME_SCALE (a turn is 0.3-0.6 s) and, for about half of the faults of each of
those kinds, the runner polls the emulator's `busy` control command until a motor runs (bounded
wait), then fires at a random point of the turn. Whether a fault really hit a running vend is
measured, not assumed: for `kill9` the board is still busy right after the kiosk died, for
`reset` the BOARD_RESET entry of the physical log names an interrupted tx. The report counts
those per kind (`faults_during_vend`).

Payments: the child (its sales made by the one scripted shopper, kiosk.sim.shopper.Shopper)
pays its own orders with kiosk.sim.shopper.TestPaymentSource built on the PROVINCE
SIMULATOR's signing key (the same Ed25519 key `ProvinceSimulator.confirm_payment` signs with),
so confirmations are province-signed without a pay-page round trip (TEST ONLY).

At the end three records are compared:
- the province's received ledger (province.db, deduplicated by event id),
- the emulator's physical dispense log (what really left the cabinet),
- the kiosk's own ledger, orders and refunds (its SQLite store),
and the report gives: records lost, duplicates after dedupe, double dispenses, orders where
paid != delivered + refunded, hash-chain breaks (all goal 0) and sales completed per minute.

CLI: `python -m kiosk.sim.chaos --sales N --seed S [--fault-kinds kill9,reset,store,...]
[--time-scale X] [--workdir DIR] [--json] [--protocol kiosk|vmc]`.

`--protocol vmc` runs the same suite on the VMC emulator (docs/boards/vmc.md). A VMC's log has
no tx, so double dispenses are counted per slot (drops beyond the lines delivered or left
unknown there, motor runs beyond the vends issued); a vend a SIGKILL or reset made unknown is
refunded and may have dropped, so physical drops may exceed delivered lines by those.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kiosk.app import App
    from kiosk.sim.shopper import Shopper

__all__ = ["FAULT_KINDS", "ChaosReport", "child_main", "main", "run_chaos"]

ROOT = Path(__file__).resolve().parents[2]
KIOSK_ID = "AH-340100-0001"
SECRET_FILE = Path(__file__).resolve().parents[1] / "data" / "demo-device-secret"
FAULT_KINDS = ("kill9", "broker", "cut", "serial", "reset", "store")  # the default rotation
AIMED_KINDS = ("kill9", "reset")  # fired while a motor runs (about half of them)
TIME_SCALE = 0.2  # emulator physical time: a motor turn 0.3-0.6 s, the drop window 80 ms
AIM_WAIT_S = 15.0  # bounded wait for a motor to start before an aimed fault fires anyway
DONE_MARK = "CHAOS_DONE"


# --- the report -------------------------------------------------------------------------------


@dataclass
class ChaosReport:
    sales_target: int
    sales_completed: int = 0
    elapsed_s: float = 0.0
    faults: dict[str, int] = field(default_factory=dict)
    faults_during_vend: dict[str, int] = field(default_factory=dict)  # hit a running vend
    faults_aimed: dict[str, int] = field(default_factory=dict)  # waited for a running motor
    records_lost: int = 0
    duplicates_after_dedupe: int = 0
    double_dispenses: int = 0
    money_mismatches: int = 0
    chain_breaks: int = 0
    sold_while_corrupt: int = 0  # motor runs while the store was marked corrupt (goal 0)
    # context (not goals)
    kiosk_ledger_records: int = 0
    province_sale_records: int = 0
    province_duplicate_messages: int = 0  # republished messages the province dropped (fine)
    physical_drops: int = 0
    kiosk_delivered_lines: int = 0
    refunded_lines: int = 0
    refunded_fen: int = 0
    store_recoveries: int = 0  # `store` faults that went corrupt -> recover -> selling again
    corrupt_start_tracebacks: int = 0  # kiosk starts on a corrupt store that died with one
    kiosk_restarts: int = 0
    finished: bool = False
    details: list[str] = field(default_factory=list)

    @property
    def sales_per_minute(self) -> float:
        return self.sales_completed / (self.elapsed_s / 60.0) if self.elapsed_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.finished and not (
            self.records_lost
            or self.duplicates_after_dedupe
            or self.double_dispenses
            or self.money_mismatches
            or self.chain_breaks
            or self.sold_while_corrupt
            or self.corrupt_start_tracebacks
        )

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["sales_per_minute"] = round(self.sales_per_minute, 2)
        d["ok"] = self.ok
        return d

    def format(self) -> str:
        f = ", ".join(f"{k} x{v}" for k, v in sorted(self.faults.items())) or "none"
        hit = (
            ", ".join(
                f"{k} {self.faults_during_vend.get(k, 0)}/{n}"
                + (f" ({self.faults_aimed.get(k, 0)} aimed)" if k in AIMED_KINDS else "")
                for k, n in sorted(self.faults.items())
                if k != "store"
            )
            or "none"
        )
        n_hit = sum(self.faults_during_vend.values())
        lines = [
            f"chaos: {self.sales_completed}/{self.sales_target} sales in {self.elapsed_s:.1f} s "
            f"({'finished' if self.finished else 'NOT FINISHED'}); faults: {f}",
            f"  records lost                     : {self.records_lost} (goal 0)",
            f"  duplicates after dedupe          : {self.duplicates_after_dedupe} (goal 0)",
            f"  double dispenses                 : {self.double_dispenses} (goal 0)",
            f"  paid != delivered + refunded     : {self.money_mismatches} (goal 0)",
            f"  hash-chain breaks                : {self.chain_breaks} (goal 0)",
            f"  sold while the store was corrupt : {self.sold_while_corrupt} (goal 0)",
            f"  tracebacks on a corrupt store    : {self.corrupt_start_tracebacks} (goal 0)",
            f"  sales completed per minute       : {self.sales_per_minute:.1f}",
            f"  faults on a running vend         : {n_hit} of {sum(self.faults.values())} ({hit})",
            f"  lines refunded                   : {self.refunded_lines} "
            f"({self.refunded_fen / 100:.2f} yuan); store recoveries {self.store_recoveries}",
            f"  kiosk ledger {self.kiosk_ledger_records} records, province "
            f"{self.province_sale_records} sale records ({self.province_duplicate_messages} "
            f"republished messages dropped by dedupe), physical drops {self.physical_drops}, "
            f"kiosk delivered lines {self.kiosk_delivered_lines}, kiosk starts "
            f"{self.kiosk_restarts + 1}",
        ]
        lines += [f"  ! {d}" for d in self.details]
        lines.append("  RESULT: " + ("all goals met" if self.ok else "GOALS MISSED"))
        return "\n".join(lines)


# --- the kiosk child --------------------------------------------------------------------------


def child_main(argv: Sequence[str]) -> int:
    """The kiosk under test: real app + SyncClient; sells until `--target` paid orders exist,
    waits until the province acknowledged everything, prints CHAOS_DONE and exits 0.
    Resumable after SIGKILL: pays an order left awaiting payment, lets recovery finish the rest.
    """
    p = argparse.ArgumentParser(prog="kiosk.sim.chaos child")
    p.add_argument("--config", required=True)
    p.add_argument("--pay-key", required=True, help="file with the raw Ed25519 private key")
    p.add_argument("--target", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--pace", type=float, default=1.0, help="mean shopper gap between sales, s")
    p.add_argument("--stop-file", required=True, help="exit 0 once this exists and all is acked")
    a = p.parse_args(argv)

    from kiosk.app import build_app
    from kiosk.config import load_config
    from kiosk.headless import changed
    from kiosk.sim.shopper import Shopper, TestPaymentSource
    from kiosk.store import StoreError
    from kiosk.sync.acks import AckVerifier
    from kiosk.sync.client import SyncClient
    from kiosk.sync.topics import Topics

    def say(text: str) -> None:
        print(text, flush=True)

    config = load_config(a.config)
    pay = TestPaymentSource(Path(a.pay_key).read_bytes())
    try:
        app = build_app(config, province_public_key=pay.public_key)
    except (StoreError, sqlite3.Error, OSError) as e:  # what `kiosk run` does: out of service
        from kiosk.degraded import run_degraded

        return run_degraded(config, e, True, say)
    app.outbox.ack_timeout_s = 5.0
    kid = config.identity.kiosk_id

    def on_message(topic: str, body: dict[str, Any]) -> None:
        if topic.endswith("/payment"):
            with contextlib.suppress(Exception):
                app.controller.submit_confirmation(body)

    sync = SyncClient(
        config.sync,
        kid,
        app.outbox,
        Topics(kid),
        app.clock,
        on_message,
        app.store.counters.current("boot"),
        acks=AckVerifier.for_key(kid, pay.public_key, app.store),
        backoff_base_s=0.1,
        backoff_cap_s=1.0,
        stable_after_s=2.0,
        poll_s=0.05,
    )
    rng = random.Random(a.seed * 7919 + os.getpid())
    app.start()
    sync.start()
    shopper = Shopper(app.controller, pay, clock=app.clock)
    repo = app.controller.repo
    deadline = time.monotonic() + a.timeout

    def paid_orders() -> int:
        return sum(1 for o in repo.all() if o.paid_fen > 0)

    try:
        while time.monotonic() < deadline:
            unfinished = repo.unfinished()
            for o in shopper.awaiting_payment():
                shopper.pay(o)
                say(f"PAY {o.order_id} {o.total_fen}")
            if unfinished:
                shopper.wait(changed(shopper.view().seq), 0.3)
                continue
            if paid_orders() >= a.target:
                break
            time.sleep(rng.uniform(0.5, 1.5) * a.pace)
            if not _chaos_sale(shopper, rng, say):
                return 3
        else:
            say("TIMEOUT selling")
            return 1
        say(f"SOLD {paid_orders()}")
        return _drain(app, Path(a.stop_file), deadline, say)
    finally:
        sync.stop(2.0)
        app.close()


def _drain(app: App, stop_file: Path, deadline: float, say: Callable[[str], None]) -> int:
    """Everything to the province before the child calls it done; then wait for the runner's
    word (`stop_file`: it may still have faults to inject) and check again."""
    said = False
    while time.monotonic() < deadline:
        drained = sum(app.outbox.depth().values()) == 0 and not app.controller.repo.unfinished()
        if drained and not said:
            say(DONE_MARK)
            said = True
        if drained and stop_file.exists():
            return 0
        time.sleep(0.1)
    say("TIMEOUT draining")
    return 1


def _chaos_sale(shopper: Shopper, rng: random.Random, say: Callable[[str], None]) -> bool:
    """One shopper at the kiosk: back to the attract screen, one or two random products in
    stock, checkout (payment comes on the next turn of the child's loop). False: sold out."""
    if shopper.view().mode in ("done", "problem"):
        shopper.back_to_idle("shopper")
    idle = shopper.wait(lambda x: x.mode == "idle", 5.0)
    if idle is None:
        say(f"WAIT view={shopper.view().mode}")
        return True
    picks = [pv.product.product_id for pv in idle.products if pv.stock_left > 0]
    if not picks:
        say("SOLD OUT")
        return False
    k = rng.choice((1, 1, 2))
    shopper.fill_cart([rng.choice(picks) for _ in range(k)])
    if shopper.cart_of(k, 5.0) is None:
        shopper.back_to_idle("shopper")
        return True
    shopper.checkout()
    shopper.wait(lambda x: x.mode != "shopping", 5.0)
    return True


# --- the runner -------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK_CRASH")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _seed_store(data_dir: Path) -> None:
    from kiosk.core.planogram import SlotKind
    from kiosk.core.stock import StockChange, StockReason
    from kiosk.sim.demo_data import demo_catalog, demo_planogram, demo_stock
    from kiosk.store import open_store

    s = open_store(data_dir)
    try:
        s.catalog.replace(demo_catalog())
        pg = demo_planogram(SlotKind.SPIRAL)
        s.planogram.replace(pg)
        for n, lv in demo_stock(pg).items():
            if lv:
                s.stock.apply(StockChange(n, lv, StockReason.RESTOCK, "seed"))
    finally:
        s.close()


class _Emulator:
    def __init__(
        self, d: Path, seed: int, time_scale: float = TIME_SCALE, protocol: str = "kiosk"
    ) -> None:
        self.pty, self.control, self.log = d / "board", d / "ctl.sock", d / "physical.jsonl"
        self.out = open(d / "emulator.out", "ab")  # noqa: SIM115
        self._conn: tuple[socket.socket, Any] | None = None
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kiosk.sim.cli_emulator",
                "--pty",
                str(self.pty),
                "--control",
                str(self.control),
                "--log",
                str(self.log),
                "--memory-file",
                str(d / "mem.json"),
                "--time-scale",
                str(time_scale),
                "--stock",
                "50",
                "--seed",
                str(seed),
                "--protocol",
                protocol,
            ],
            env=_env(),
            stdout=self.out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while not (self.pty.exists() and self.control.exists()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("emulator did not start (see emulator.out)")
            time.sleep(0.05)

    def ctl(self, *words: str) -> None:
        from kiosk.sim.emulator_transports import send_control

        send_control(str(self.control), " ".join(words))

    def query(self, *words: str) -> Any:
        """One control command over a kept connection (cheap enough to poll); its JSON reply."""
        line = " ".join(words)
        for attempt in (0, 1):
            try:
                if self._conn is None:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.settimeout(5.0)
                    s.connect(str(self.control))
                    self._conn = (s, s.makefile("rwb"))
                _s, f = self._conn
                f.write(line.encode() + b"\n")
                f.flush()
                reply = f.readline().decode("utf-8", "replace").strip()
                break
            except OSError:
                self._drop_conn()
                if attempt:
                    raise
        if not reply.startswith("ok"):
            raise RuntimeError(f"emulator control {line!r}: {reply!r}")
        return json.loads(reply[2:]) if reply[2:].strip() else None

    def busy_tx(self) -> int:
        """The tx the board is running right now (0: idle)."""
        return int(self.query("busy")["busy_tx"])

    def _drop_conn(self) -> None:
        if self._conn is not None:
            s, f = self._conn
            self._conn = None
            with contextlib.suppress(OSError):
                f.close()
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        self._drop_conn()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


def _write_config(
    path: Path, pty: Path, data: Path, url: str, pki: Any, cert: Any, protocol: str = "kiosk"
) -> None:
    baud = 57600 if protocol == "vmc" else 115200
    path.write_text(
        f"""
[identity]
kiosk_id = "{KIOSK_ID}"
site_name = "chaos"
site_type = "hospital"
area_code = "340100"
[hardware]
port = "{pty}"
protocol = "{protocol}"
baud = {baud}
[sync]
broker_url = "{url}"
ca_file = "{pki.ca_file}"
cert_file = "{cert.cert_file}"
key_file = "{cert.key_file}"
keepalive_s = 5
[payments]
device_secret_file = "{SECRET_FILE}"
[store]
data_dir = "{data}"
""",
        encoding="utf-8",
    )


def _store_counts(db: Path, *, readonly: bool = True) -> tuple[int, int] | None:
    """(orders, open orders) in the kiosk's store; read-only while the kiosk runs. None when it
    cannot be read right now."""
    from kiosk.store.orders import OPEN_STATES

    if not db.exists():
        return None
    try:
        conn = sqlite3.connect(
            f"file:{db}?mode=ro" if readonly else f"file:{db}", uri=True, timeout=2.0
        )
    except sqlite3.Error:
        return None
    try:
        marks = ",".join("?" * len(OPEN_STATES))
        (n,) = conn.execute("SELECT count(*) FROM orders NOT INDEXED").fetchone()
        (k,) = conn.execute(
            f"SELECT count(*) FROM orders NOT INDEXED WHERE state IN ({marks})", OPEN_STATES
        ).fetchone()
        return int(n), int(k)
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _corrupt_index_page(db: Path, rng: random.Random) -> str:
    """Damage `db` (closed by everyone else) so that `PRAGMA quick_check` fails while every
    table row stays readable: the WAL is checkpointed into the file, then the root page of one
    index b-tree (never page 1, never a table page) is overwritten with garbage. Says what."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
        indexes = conn.execute(
            "SELECT name, tbl_name, rootpage FROM sqlite_schema WHERE type = 'index' "
            "AND sql IS NOT NULL AND rootpage > 1 ORDER BY name"
        ).fetchall()
        tables = [
            str(r[0])
            for r in conn.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND rootpage > 1 "
                "AND name NOT LIKE 'sqlite_%'"
            )
        ]
    finally:
        conn.close()  # the last connection: the WAL is gone, the file holds everything
    if not indexes:
        raise RuntimeError(f"{db}: no index to damage")
    name, table, root = rng.choice(indexes)
    garbage = bytearray(rng.randbytes(int(page_size)))
    garbage[0] = 0xFF  # no b-tree page type
    with open(db, "r+b") as f:
        f.seek((int(root) - 1) * int(page_size))
        f.write(garbage)
        f.flush()
        os.fsync(f.fileno())
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        check = [str(r[0]) for r in conn.execute("PRAGMA quick_check")]
        rows = sum(len(conn.execute(f'SELECT * FROM "{t}" NOT INDEXED').fetchall()) for t in tables)
    finally:
        conn.close()
    if check == ["ok"]:
        raise RuntimeError(f"{db}: quick_check still passes after damaging index {name}")
    return (
        f"index {name} on {table} (page {root}); quick_check: {' '.join(check[0].split())[:80]}; "
        f"{rows} rows in {len(tables)} tables still readable"
    )


def _empty_store(data_dir: Path) -> bool:
    """True when the store has no planogram (a fresh store nothing was carried into)."""
    from kiosk.store import open_store

    s = open_store(data_dir)
    try:
        with s.read() as c:
            (n,) = c.execute("SELECT count(*) FROM planogram_slot").fetchone()
    finally:
        s.close()
    return int(n) == 0


def _fault_plan(rng: random.Random, n: int, kinds: Sequence[str] = FAULT_KINDS) -> list[str]:
    """At least one of each kind (once n >= len(kinds)), the rest random, shuffled."""
    plan = list(kinds)[: max(n, 0)]
    plan += [rng.choice(kinds) for _ in range(n - len(plan))]
    rng.shuffle(plan)
    return plan


def run_chaos(
    n_sales: int,
    seed: int,
    workdir: Path,
    *,
    n_faults: int | None = None,
    fault_gap_s: tuple[float, float] | None = None,
    pace_s: float = 1.0,
    timeout_s: float = 600.0,
    fault_kinds: Sequence[str] = FAULT_KINDS,
    time_scale: float = TIME_SCALE,
    say: Any = None,
    protocol: str = "kiosk",
    record_mqtt: list[Any] | None = None,
) -> ChaosReport:
    """Run the chaos suite in `workdir` (created; left there for post-mortems).

    `record_mqtt`: a list that receives every MQTT message that crossed the broker
    (kiosk.sim.mqtt_tap.TappedMessage, a read-only audit subscriber on #; it reconnects after
    each broker restart, so what the broker lost in a SIGKILL it does not see either).

    `fault_gap_s` None: the gaps spread what is left of the plan over the sales still to come.
    """
    from kiosk.sim.board_emulator import DROP_WINDOW_S, MOTOR_TURN_S, read_physical_log
    from kiosk.sim.broker import Mosquitto, Pki, TcpProxy
    from kiosk.sim.mqtt_tap import AUDIT_USER, BrokerTap
    from kiosk.sim.province import BrokerSettings, ProvinceSimulator, load_device_secret
    from kiosk.store import CORRUPT_MARKER, DB_FILENAME, open_store
    from kiosk.store.orders import OrderRepo
    from kiosk.sync.signing import generate_keypair

    def log(text: str) -> None:
        if say is not None:
            say(text)

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rep = ChaosReport(n_sales)
    kinds = tuple(fault_kinds)
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if unknown or not kinds:
        raise ValueError(f"fault kinds {unknown or '(none)'}: choose from {FAULT_KINDS}")
    n_faults = max(len(kinds), n_sales // 2) if n_faults is None else n_faults
    plan = _fault_plan(rng, n_faults, kinds)
    stop_file = workdir / "stop"
    stop_file.unlink(missing_ok=True)

    pki = Pki(workdir / "pki")
    audit = (AUDIT_USER,) if record_mqtt is not None else ()
    broker = Mosquitto(workdir / "broker", pki, max_inflight=20, audit_identities=audit)
    broker.start()
    tap = None
    if record_mqtt is not None:
        acert = pki.backend_client(AUDIT_USER)
        assert broker.backend_port is not None
        tap = BrokerTap(broker.backend_port, pki.ca_file, acert.cert_file, acert.key_file).start()
    proxy = TcpProxy(broker.port)
    private, _public = generate_keypair()
    pay_key = workdir / "province-signing.key"
    pay_key.write_bytes(private)
    pcert = pki.backend_client()
    province = ProvinceSimulator(
        BrokerSettings(
            url=broker.province_url,
            ca_file=pki.ca_file,
            cert_file=pcert.cert_file,
            key_file=pcert.key_file,
        ),
        workdir / "province",
        {KIOSK_ID: load_device_secret(SECRET_FILE)},
        private,
    )
    province.start()
    emu: _Emulator | None = None
    child: subprocess.Popen[bytes] | None = None
    child_out = open(workdir / "kiosk.out", "ab")  # noqa: SIM115
    t0 = time.monotonic()
    try:
        if not province.wait_connected(15):
            raise RuntimeError("province simulator did not connect")
        data = workdir / "kiosk-data"
        _seed_store(data)
        em = _Emulator(workdir, seed, time_scale, protocol)
        emu = em
        cfg = workdir / "kiosk.toml"
        _write_config(
            cfg,
            emu.pty,
            data,
            f"mqtts://127.0.0.1:{proxy.port}",
            pki,
            pki.client(KIOSK_ID),
            protocol,
        )

        started_at = [0]

        def done_since_start() -> bool:
            text = (workdir / "kiosk.out").read_bytes()[started_at[0] :]
            return DONE_MARK.encode() in text

        def start_child() -> subprocess.Popen[bytes]:
            child_out.flush()
            started_at[0] = (workdir / "kiosk.out").stat().st_size
            child_out.write(f"--- kiosk start at {time.monotonic() - t0:.2f} s ---\n".encode())
            child_out.flush()
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kiosk.sim.chaos",
                    "child",
                    "--config",
                    str(cfg),
                    "--pay-key",
                    str(pay_key),
                    "--target",
                    str(n_sales),
                    "--seed",
                    str(seed),
                    "--timeout",
                    str(timeout_s),
                    "--pace",
                    str(pace_s),
                    "--stop-file",
                    str(stop_file),
                ],
                env=_env(),
                cwd=workdir,
                stdout=child_out,
                stderr=subprocess.STDOUT,
            )

        child = start_child()
        db = data / DB_FILENAME
        marker = data / CORRUPT_MARKER
        aim_rng = random.Random(seed * 31 + 1)  # timing-dependent draws stay off the plan's rng
        vend_s = sum(MOTOR_TURN_S) / 2 + DROP_WINDOW_S
        per_sale_s = pace_s + 0.4 + 4 / 3 * vend_s * time_scale

        def sales_so_far() -> int:
            counts = _store_counts(db)
            return counts[0] if counts else 0

        def next_gap() -> float:
            if fault_gap_s is not None:
                return rng.uniform(*fault_gap_s)
            # spread what is left of the plan over the sales still to come, at the pace seen
            done = sales_so_far()
            rate = per_sale_s if done < 3 else max(per_sale_s, (time.monotonic() - t0) / done)
            left = n_sales - done
            return rng.uniform(0.5, 1.5) * max(0.5, left * rate / (len(plan) + 1))

        sold = [False]

        def selling_over() -> bool:
            if not sold[0]:
                sold[0] = b"\nSOLD " in (workdir / "kiosk.out").read_bytes()
            return sold[0]

        def board_busy() -> int:
            try:
                return em.busy_tx()
            except (OSError, RuntimeError, ValueError, KeyError):
                return 0

        # fire within the first 70 % of the shortest turn: the motor still runs then
        fire_within_s = 0.7 * MOTOR_TURN_S[0] * time_scale

        def wait_motor(kiosk: subprocess.Popen[bytes], limit_s: float) -> int:
            """Poll the board until a motor starts, then sleep to a random point early in its
            turn and return its tx; 0 after limit_s or when no more vends will come."""
            end = time.monotonic() + limit_s
            while time.monotonic() < end and kiosk.poll() is None and not selling_over():
                with contextlib.suppress(OSError, RuntimeError, ValueError, KeyError):
                    b = em.query("busy")
                    running = float(b.get("running_s", 0.0))
                    if b["busy_tx"] and running < 0.8 * fire_within_s:  # early in its turn
                        time.sleep(aim_rng.uniform(0.0, fire_within_s - running))
                        return int(b["busy_tx"])
                time.sleep(0.02)
            return 0

        def physical_runs() -> int:
            return sum(1 for e in read_physical_log(em.log) if e.get("event") == "motor_run")

        def store_fault(kiosk: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
            """Corrupt the store at a moment without an open order and recover it."""
            for _attempt in range(5):
                end = time.monotonic() + 20.0
                while time.monotonic() < end:  # an idle moment: no open order, no motor
                    c = _store_counts(db)
                    if c is not None and c[1] == 0 and board_busy() == 0:
                        break
                    time.sleep(0.05)
                kiosk.send_signal(signal.SIGKILL)
                kiosk.wait()
                c = _store_counts(db, readonly=False)  # nobody writes now
                if c is not None and c[1] == 0:
                    break
                log(f"  store: {c[1] if c else '?'} open order(s) at the kill; again later")
                kiosk = start_child()
                rep.kiosk_restarts += 1
            else:
                rep.details.append("store fault: no moment without an open order; not injected")
                return kiosk
            what = _corrupt_index_page(db, rng)
            log(f"  store: damaged {what}")
            runs_before = physical_runs()
            kiosk = start_child()
            rep.kiosk_restarts += 1
            end = time.monotonic() + 30.0
            seen: float | None = None
            while time.monotonic() < end:
                if seen is None and marker.exists():
                    seen = time.monotonic()
                if kiosk.poll() is not None or (seen is not None and time.monotonic() > seen + 3):
                    break
                time.sleep(0.1)
            rc = kiosk.poll()
            if rc is None:  # stayed up (out of service, one hopes): stop it for the technician
                kiosk.send_signal(signal.SIGKILL)
                kiosk.wait()
            sold_blind = physical_runs() - runs_before
            rep.sold_while_corrupt += sold_blind
            text = (workdir / "kiosk.out").read_bytes()[started_at[0] :]
            log(
                f"  store: kiosk on the damaged store: marker {'yes' if marker.exists() else 'NO'}"
                f", {'exited ' + str(rc) if rc is not None else 'stayed up'}"
                f"{' with a traceback' if b'Traceback' in text else ''}, motor runs {sold_blind}"
            )
            rep.corrupt_start_tracebacks += b"Traceback" in text
            if not marker.exists():
                rep.details.append("store fault: no STORE_CORRUPT marker after the damaged start")
            if sold_blind:
                rep.details.append(f"store fault: {sold_blind} motor runs on a corrupt store")
            r = subprocess.run(
                [sys.executable, "-m", "kiosk.cli", "store", "recover", "--config", str(cfg)],
                env=_env(),
                cwd=workdir,
                capture_output=True,
                text=True,
                timeout=300,
            )
            with open(workdir / "store-recover.out", "a", encoding="utf-8") as f:
                f.write(f"--- rc {r.returncode}\n{r.stdout}{r.stderr}")
            last = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
            log(f"  store: kiosk store recover -> {r.returncode}: {last}")
            if r.returncode != 0 or marker.exists():
                rep.details.append(
                    f"store fault: `kiosk store recover` exited {r.returncode}, marker "
                    f"{'still there' if marker.exists() else 'cleared'} (see store-recover.out)"
                )
            elif _empty_store(data):
                # recover without salvage: a fresh, empty store (the books cannot agree then)
                _seed_store(data)
                rep.details.append(
                    "store fault: recover left an empty store (nothing salvaged); re-seeded the "
                    "demo catalog so the kiosk can sell"
                )
            else:
                rep.store_recoveries += 1
            kiosk = start_child()
            rep.kiosk_restarts += 1
            return kiosk

        next_fault = time.monotonic() + next_gap()
        broker_kills = 0
        serial_off_at: float | None = None
        deadline = t0 + timeout_s
        while time.monotonic() < deadline:
            rc = child.poll()
            if rc is not None:
                if rc == 0:
                    rep.finished = True
                    break
                if rc == -signal.SIGKILL:  # ours
                    child = start_child()
                    rep.kiosk_restarts += 1
                    continue
                rep.details.append(f"kiosk exited with {rc} (see {workdir / 'kiosk.out'})")
                break
            now = time.monotonic()
            if not plan and serial_off_at is None and done_since_start():
                stop_file.touch()
            if serial_off_at is not None and now >= serial_off_at:
                with contextlib.suppress(Exception):
                    emu.ctl("set", "drop_byte_ratio=0")
                    emu.ctl("set", "bit_flip_ratio=0")
                serial_off_at = None
            if plan and now >= next_fault:
                if n_sales - sales_so_far() <= 2:  # last chance to aim: a kind that never hit
                    for i, k in enumerate(plan):
                        if k in AIMED_KINDS and not rep.faults_during_vend.get(k):
                            plan.insert(0, plan.pop(i))
                            break
                kind = plan.pop(0)
                rep.faults[kind] = rep.faults.get(kind, 0) + 1
                hits = rep.faults_during_vend.get(kind, 0)
                # aim until about half of this kind's faults hit a running vend
                aimed = kind in AIMED_KINDS and 2 * hits < rep.faults[kind]
                note = ""
                if aimed:
                    rep.faults_aimed[kind] = rep.faults_aimed.get(kind, 0) + 1
                    tx = wait_motor(child, AIM_WAIT_S)
                    note = f" (aimed: {'motor running, tx ' + str(tx) if tx else 'no vend came'})"
                hit = False
                if kind == "kill9":
                    child.send_signal(signal.SIGKILL)
                    child.wait()
                    hit = board_busy() != 0  # the board still dispenses for the dead kiosk
                    child = start_child()
                    rep.kiosk_restarts += 1
                elif kind == "broker":
                    hit = board_busy() != 0
                    if broker_kills % 2:
                        broker.kill()
                    else:
                        broker.stop()
                    broker_kills += 1
                    time.sleep(rng.uniform(0.2, 1.5))
                    broker.start()
                elif kind == "cut":
                    hit = board_busy() != 0
                    proxy.cut()
                elif kind == "serial":
                    hit = board_busy() != 0
                    emu.ctl("set", f"drop_byte_ratio={rng.choice((0.01, 0.03))}")
                    emu.ctl("set", f"bit_flip_ratio={rng.choice((0.002, 0.01))}")
                    serial_off_at = time.monotonic() + rng.uniform(1.0, 3.0)
                elif kind == "reset":
                    emu.ctl("reset", "keep")
                    boots = [e for e in emu.query("log", "4") if e.get("event") == "board_reset"]
                    hit = bool(boots and boots[-1].get("interrupted_tx"))
                elif kind == "store":
                    child = store_fault(child)
                if hit:
                    rep.faults_during_vend[kind] = hits + 1
                log(
                    f"[{now - t0:6.1f} s] fault: {kind}{note}"
                    f"{' -> hit a running vend' if hit else ''}"
                )
                next_fault = time.monotonic() + next_gap()
            time.sleep(0.05)
        else:
            rep.details.append(f"timed out after {timeout_s:.0f} s")
        rep.elapsed_s = time.monotonic() - t0
        if child.poll() is None:
            child.kill()
            child.wait()
        # late acks: give the province a moment to commit what it has
        time.sleep(0.5)

        # --- the three books ---------------------------------------------------------------
        store = open_store(data)
        try:
            repo = OrderRepo(store)
            orders = repo.all()
            ledger = repo.ledger()
            problems = repo.verify_ledger()
            refunds = repo.refunds()
            board_slot = {n: sl.address for n, sl in store.planogram.load().slots.items()}
        finally:
            store.close()
        prov_events = [e for e in province.events(KIOSK_ID) if e["kind"] == "sale"]
        chains = [c for c in province.chain_reports() if c.kiosk_id == KIOSK_ID]
        _received, dups, _rejected = province.receipts(KIOSK_ID)
        physical = read_physical_log(emu.log)
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        child_out.close()
        if emu is not None:
            emu.close()
        province.stop()
        proxy.close()
        if tap is not None and record_mqtt is not None:
            if broker.running:
                tap.drain()
            tap.stop()
            record_mqtt.extend(tap.messages())
        broker.stop()

    paid = [o for o in orders if o.paid_fen > 0]
    rep.sales_completed = sum(1 for o in paid if o.state.value in _CLOSED)
    rep.kiosk_ledger_records = len(ledger)
    rep.province_sale_records = len(prov_events)
    rep.province_duplicate_messages = dups

    # records lost: a kiosk ledger record the province does not hold (by record hash), a paid
    # and closed order without a ledger record, a ledger record without an order
    prov_hashes = Counter(str(e["body"].get("record_hash")) for e in prov_events)
    for r in ledger:
        if prov_hashes[r.record_hash] == 0:
            rep.records_lost += 1
            rep.details.append(f"ledger seq {r.seq} ({r.order_id}) never reached the province")
    ledger_orders = Counter(r.order_id for r in ledger)
    for o in paid:
        if o.state.value in _CLOSED and ledger_orders[o.order_id] == 0:
            rep.records_lost += 1
            rep.details.append(f"order {o.order_id} closed without a ledger record")
    # duplicates after dedupe: the same record (hash, seq or order) stored twice by the province,
    # or one order in the kiosk's ledger twice
    prov_seqs = Counter(int(e["body"].get("seq", -1)) for e in prov_events)
    prov_orders = Counter(str(e["body"].get("order_id")) for e in prov_events)
    rep.duplicates_after_dedupe = (
        sum(n - 1 for n in prov_hashes.values() if n > 1)
        + sum(n - 1 for n in prov_seqs.values() if n > 1)
        + sum(n - 1 for n in prov_orders.values() if n > 1)
        + sum(n - 1 for n in ledger_orders.values() if n > 1)
    )
    # double dispenses: a tx whose motor ran twice; more physical drops than delivered lines
    runs = [e for e in physical if e.get("event") == "motor_run"]
    per_tx = Counter(e["tx"] for e in runs)
    twice = sum(n - 1 for n in per_tx.values() if n > 1)
    drops = [e for e in runs if e.get("dropped")]
    rep.physical_drops = len(drops)
    delivered = [ln for o in orders for ln in o.lines if ln.status.value == "delivered"]
    if protocol == "vmc":  # no tx in a VMC's log: match by slot (see _vmc_dispense_check)
        vmc_twice, vmc_missing, vmc_details = _vmc_dispense_check(runs, orders, board_slot)
        rep.double_dispenses = vmc_twice
        rep.records_lost += vmc_missing
        rep.details += vmc_details
        per_tx, twice, drops = Counter(), 0, []
    rep.kiosk_delivered_lines = len(delivered)
    rep.refunded_lines = sum(
        1 for o in orders for ln in o.lines if ln.status.value in ("failed", "unknown")
    )
    rep.refunded_fen = sum(x.amount_fen for x in refunds)
    extra = max(0, len(drops) - len(delivered)) if protocol != "vmc" else 0
    rep.double_dispenses += twice + extra
    if twice:
        rep.details.append(f"motor ran more than once for a tx: {twice}")
    if extra:
        rep.details.append(f"{extra} physical drops more than kiosk-delivered lines")
    dropped_tx = {e["tx"] for e in drops}
    missing = [ln for ln in delivered if ln.tx not in dropped_tx] if protocol != "vmc" else []
    if missing:
        rep.records_lost += len(missing)
        rep.details.append(f"{len(missing)} delivered lines without a physical drop")
    # money: paid = delivered + refunded, on the kiosk (orders + refund rows) and the province
    refund_by_order: Counter[str] = Counter()
    for rf in refunds:
        refund_by_order[rf.order_id] += rf.amount_fen
    for o in paid:
        if o.state.value not in _CLOSED:
            continue
        extra_paid = sum(p.amount_fen for p in o.extra_payments)
        if o.paid_fen + extra_paid != o.delivered_fen + refund_by_order[o.order_id]:
            rep.money_mismatches += 1
            rep.details.append(
                f"order {o.order_id}: paid {o.paid_fen}+{extra_paid} != delivered "
                f"{o.delivered_fen} + refunded {refund_by_order[o.order_id]}"
            )
    for e in prov_events:
        b = e["body"]
        if int(b.get("paid_fen", 0)) != int(b.get("delivered_fen", 0)) + int(
            b.get("refund_due_fen", 0)
        ):
            rep.money_mismatches += 1
            rep.details.append(f"province record {b.get('order_id')}: paid != delivered + refund")
    # hash chain: the kiosk's own check, the province's check and its sequence gaps
    rep.chain_breaks = len(problems) + sum(len(c.problems) for c in chains)
    gaps = sum(b - a + 1 for c in chains for a, b in c.outbox_gaps)
    if problems or any(c.problems for c in chains):
        rep.details.append(
            f"chain problems: kiosk {problems}, province {[c.problems for c in chains]}"
        )
    if gaps:
        rep.details.append(f"province sees {gaps} missing outbox seqs (non-sale records)")
    return rep


_CLOSED = frozenset({"completed", "partly_delivered", "refund_due", "cancelled"})


def _vmc_dispense_check(
    runs: list[dict[str, Any]], orders: list[Any], board_slot: dict[int, int]
) -> tuple[int, int, list[str]]:
    """Double dispenses and delivered lines without a drop, for a VMC's physical log (no tx:
    a VMC has none). Per slot, products that dropped may not exceed the lines delivered or left
    unknown there (an unknown line is refunded, and may have dropped: docs/boards/vmc.md 8);
    in all, motor runs may not exceed the vends the kiosk issued (one per line attempt).
    ``board_slot``: planogram slot number -> the emulator's slot (the planogram address)."""
    lines = [ln for o in orders for ln in o.lines]
    drops = Counter(e["slot"] for e in runs if e.get("dropped"))
    may_drop = Counter(
        board_slot.get(ln.slot_no, -1)
        for ln in lines
        if ln.status.value in ("delivered", "unknown")
    )
    delivered = Counter(
        board_slot.get(ln.slot_no, -1) for ln in lines if ln.status.value == "delivered"
    )
    attempts = sum(ln.attempts for ln in lines)
    extra = sum(max(0, n - may_drop[slot]) for slot, n in drops.items())
    over_runs = max(0, len(runs) - attempts)
    missing = sum(max(0, n - drops[slot]) for slot, n in delivered.items())
    details = []
    if extra:
        details.append(f"{extra} physical drops more than delivered or unknown lines on a slot")
    if over_runs:
        details.append(f"{len(runs)} motor runs for {attempts} vend attempts")
    if missing:
        details.append(f"{missing} delivered lines without a physical drop on their slot")
    return extra + over_runs, missing, details


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["child"]:
        return child_main(argv[1:])
    p = argparse.ArgumentParser(
        prog="python -m kiosk.sim.chaos", description=__doc__.split("\n")[0]
    )
    p.add_argument("--sales", type=int, default=12)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--faults", type=int, default=None, help="number of faults (default sales/2)")
    p.add_argument(
        "--fault-kinds",
        default=",".join(FAULT_KINDS),
        help=f"comma-separated fault kinds (default all: {','.join(FAULT_KINDS)})",
    )
    p.add_argument(
        "--time-scale",
        type=float,
        default=TIME_SCALE,
        help=f"emulator physical time factor (default {TIME_SCALE}: a motor turn 0.3-0.6 s)",
    )
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument(
        "--protocol", choices=("kiosk", "vmc"), default="kiosk", help="the emulated board"
    )
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument("--json", action="store_true", help="print the report as JSON too")
    a = p.parse_args(argv)

    def on_term(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="kiosk-chaos-"))
    kinds = [k.strip() for k in a.fault_kinds.split(",") if k.strip()]
    rep = run_chaos(
        a.sales,
        a.seed,
        workdir,
        n_faults=a.faults,
        timeout_s=a.timeout,
        fault_kinds=kinds,
        time_scale=a.time_scale,
        say=print,
        protocol=a.protocol,
    )
    print(rep.format())
    print(f"workdir: {workdir}")
    if a.json:
        print("CHAOS_JSON " + json.dumps(rep.as_dict()))
    return 0 if rep.ok else 1


if __name__ == "__main__":
    threading.current_thread().name = "chaos"
    sys.exit(main())
