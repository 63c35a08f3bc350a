"""The chaos suite: N sales while the world misbehaves, then three independent books compared.

Owns: the chaos runner (`run_chaos`), its report (`ChaosReport`) and the chaos kiosk child
(`python -m kiosk.sim.chaos child ...`). Decides nothing about sales: the kiosk under test is
the real app (kiosk.app.build_app: store, outbox, serial link, board driver, controller) plus a
real SyncClient, running as a CHILD PROCESS so that SIGKILL is real; the board emulator runs in
its own process on a pty with its physical log (JSON lines); the province simulator and a real
Mosquitto (TLS, client certificates, ACL) run in the runner, the kiosk reaches the broker
through a TcpProxy the runner can cut.

Faults, at random times (seeded), with at least one of each kind in every run of >= 5 faults:
- `kill9`          SIGKILL the kiosk child, start it again on the same store;
- `broker`         restart Mosquitto (stop + start on the same port and persistence; every
                   other one a SIGKILL instead of a clean stop);
- `cut`            reset every TCP connection through the proxy;
- `serial`         corrupt serial bytes for a few seconds (emulator drop_byte_ratio and
                   bit_flip_ratio), then clean again;
- `reset`          reset the board (memory kept: a running tx is recorded as interrupted).

Payments: the child pays its own orders with kiosk.app.TestPaymentSource built on the PROVINCE
SIMULATOR's signing key (the same Ed25519 key `ProvinceSimulator.confirm_payment` signs with),
so confirmations are province-signed without a pay-page round trip (TEST ONLY).

At the end three records are compared:
- the province's received ledger (province.db, deduplicated by event id),
- the emulator's physical dispense log (what really left the cabinet),
- the kiosk's own ledger, orders and refunds (its SQLite store),
and the report gives: records lost, duplicates after dedupe, double dispenses, orders where
paid != delivered + refunded, hash-chain breaks (all goal 0) and sales completed per minute.

CLI: `python -m kiosk.sim.chaos --sales N --seed S [--workdir DIR] [--json]`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FAULT_KINDS", "ChaosReport", "child_main", "main", "run_chaos"]

ROOT = Path(__file__).resolve().parents[2]
KIOSK_ID = "AH-340100-0001"
SECRET_FILE = Path(__file__).resolve().parents[1] / "data" / "demo-device-secret"
FAULT_KINDS = ("kill9", "broker", "cut", "serial", "reset")
DONE_MARK = "CHAOS_DONE"


# --- the report -------------------------------------------------------------------------------


@dataclass
class ChaosReport:
    sales_target: int
    sales_completed: int = 0
    elapsed_s: float = 0.0
    faults: dict[str, int] = field(default_factory=dict)
    records_lost: int = 0
    duplicates_after_dedupe: int = 0
    double_dispenses: int = 0
    money_mismatches: int = 0
    chain_breaks: int = 0
    # context (not goals)
    kiosk_ledger_records: int = 0
    province_sale_records: int = 0
    province_duplicate_messages: int = 0  # republished messages the province dropped (fine)
    physical_drops: int = 0
    kiosk_delivered_lines: int = 0
    refunded_lines: int = 0
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
        )

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["sales_per_minute"] = round(self.sales_per_minute, 2)
        d["ok"] = self.ok
        return d

    def format(self) -> str:
        f = ", ".join(f"{k} x{v}" for k, v in sorted(self.faults.items())) or "none"
        lines = [
            f"chaos: {self.sales_completed}/{self.sales_target} sales in {self.elapsed_s:.1f} s "
            f"({'finished' if self.finished else 'NOT FINISHED'}); faults: {f}",
            f"  records lost                     : {self.records_lost} (goal 0)",
            f"  duplicates after dedupe          : {self.duplicates_after_dedupe} (goal 0)",
            f"  double dispenses                 : {self.double_dispenses} (goal 0)",
            f"  paid != delivered + refunded     : {self.money_mismatches} (goal 0)",
            f"  hash-chain breaks                : {self.chain_breaks} (goal 0)",
            f"  sales completed per minute       : {self.sales_per_minute:.1f}",
            f"  kiosk ledger {self.kiosk_ledger_records} records, province "
            f"{self.province_sale_records} sale records ({self.province_duplicate_messages} "
            f"republished messages dropped by dedupe), physical drops {self.physical_drops}, "
            f"kiosk delivered lines {self.kiosk_delivered_lines}, refunded lines "
            f"{self.refunded_lines}, kiosk starts {self.kiosk_restarts + 1}",
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

    from kiosk.app import TestPaymentSource, build_app
    from kiosk.config import load_config
    from kiosk.core.sale import State
    from kiosk.sync.client import SyncClient
    from kiosk.sync.topics import Topics
    from kiosk.ui import model as ui

    def say(text: str) -> None:
        print(text, flush=True)

    config = load_config(a.config)
    pay = TestPaymentSource(Path(a.pay_key).read_bytes())
    app = build_app(config, province_public_key=pay.public_key)
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
        backoff_base_s=0.1,
        backoff_cap_s=1.0,
        stable_after_s=2.0,
        poll_s=0.05,
    )
    rng = random.Random(a.seed * 7919 + os.getpid())
    app.start()
    sync.start()
    repo = app.controller.repo
    deadline = time.monotonic() + a.timeout

    def paid_orders() -> int:
        return sum(1 for o in repo.all() if o.paid_fen > 0)

    try:
        while time.monotonic() < deadline:
            unfinished = repo.unfinished()
            waiting = [o for o in unfinished if o.state is State.AWAITING_PAYMENT]
            for o in waiting:
                c = pay.confirm(kid, o.order_id, o.total_fen, app.clock.time())
                app.controller.submit_confirmation(c)
                say(f"PAY {o.order_id} {o.total_fen}")
            if unfinished:
                v = app.controller.view()
                app.controller.wait_view(lambda x, s=v.seq: x.seq != s, 0.3)
                continue
            if paid_orders() >= a.target:
                break
            time.sleep(rng.uniform(0.5, 1.5) * a.pace)
            mode = app.controller.view().mode
            if mode in ("done", "problem"):
                app.controller.post(ui.BackToIdle("chaos"))
            v = app.controller.wait_view(lambda x: x.mode == "idle", 5.0)
            if v is None:
                say(f"WAIT view={app.controller.view().mode}")
                continue
            picks = [pv.product.product_id for pv in v.products if pv.stock_left > 0]
            if not picks:
                say("SOLD OUT")
                return 3
            app.controller.post(ui.StartShopping())
            k = rng.choice((1, 1, 2))
            for _ in range(k):
                app.controller.post(ui.AddToCart(rng.choice(picks)))
            if app.controller.wait_view(lambda x, k=k: x.cart_count == k, 5.0) is None:
                app.controller.post(ui.BackToIdle("chaos"))
                continue
            app.controller.post(ui.Checkout())
            app.controller.wait_view(lambda x: x.mode != "shopping", 5.0)
        else:
            say("TIMEOUT selling")
            return 1
        say(f"SOLD {paid_orders()}")
        # everything to the province before we call it done; then wait for the runner's word
        # (it may still have faults to inject) and check again
        said = False
        while time.monotonic() < deadline:
            drained = sum(app.outbox.depth().values()) == 0 and not repo.unfinished()
            if drained and not said:
                say(DONE_MARK)
                said = True
            if drained and Path(a.stop_file).exists():
                return 0
            time.sleep(0.1)
        say("TIMEOUT draining")
        return 1
    finally:
        sync.stop(2.0)
        app.close()


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
    def __init__(self, d: Path, seed: int) -> None:
        self.pty, self.control, self.log = d / "board", d / "ctl.sock", d / "physical.jsonl"
        self.out = open(d / "emulator.out", "ab")  # noqa: SIM115
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
                "0.01",
                "--stock",
                "50",
                "--seed",
                str(seed),
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

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


def _write_config(path: Path, pty: Path, data: Path, url: str, pki: Any, cert: Any) -> None:
    path.write_text(
        f"""
[identity]
kiosk_id = "{KIOSK_ID}"
site_name = "chaos"
site_type = "hospital"
area_code = "340100"
[hardware]
port = "{pty}"
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


def _fault_plan(rng: random.Random, n: int) -> list[str]:
    """At least one of each kind (once n >= len(FAULT_KINDS)), the rest random, shuffled."""
    plan = list(FAULT_KINDS)[: max(n, 0)]
    plan += [rng.choice(FAULT_KINDS) for _ in range(n - len(plan))]
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
    say: Any = None,
) -> ChaosReport:
    """Run the chaos suite in `workdir` (created; left there for post-mortems)."""
    from kiosk.sim.board_emulator import read_physical_log
    from kiosk.sim.broker import Mosquitto, Pki, TcpProxy
    from kiosk.sim.province import BrokerSettings, ProvinceSimulator, load_device_secret
    from kiosk.store import open_store
    from kiosk.store.orders import OrderRepo
    from kiosk.sync.signing import generate_keypair

    def log(text: str) -> None:
        if say is not None:
            say(text)

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rep = ChaosReport(n_sales)
    n_faults = max(len(FAULT_KINDS), n_sales // 2) if n_faults is None else n_faults
    plan = _fault_plan(rng, n_faults)
    if fault_gap_s is None:  # spread the faults over the expected selling time
        mean = max(0.5, n_sales * (pace_s + 0.4) / (n_faults + 1))
        fault_gap_s = (0.5 * mean, 1.5 * mean)
    stop_file = workdir / "stop"
    stop_file.unlink(missing_ok=True)

    pki = Pki(workdir / "pki")
    broker = Mosquitto(workdir / "broker", pki, max_inflight=20)
    broker.start()
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
        emu = _Emulator(workdir, seed)
        cfg = workdir / "kiosk.toml"
        _write_config(
            cfg, emu.pty, data, f"mqtts://127.0.0.1:{proxy.port}", pki, pki.client(KIOSK_ID)
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
        next_fault = time.monotonic() + rng.uniform(*fault_gap_s)
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
                kind = plan.pop(0)
                rep.faults[kind] = rep.faults.get(kind, 0) + 1
                log(f"[{now - t0:6.1f} s] fault: {kind}")
                if kind == "kill9":
                    child.send_signal(signal.SIGKILL)
                    child.wait()
                    child = start_child()
                    rep.kiosk_restarts += 1
                elif kind == "broker":
                    if broker_kills % 2:
                        broker.kill()
                    else:
                        broker.stop()
                    broker_kills += 1
                    time.sleep(rng.uniform(0.2, 1.5))
                    broker.start()
                elif kind == "cut":
                    proxy.cut()
                elif kind == "serial":
                    emu.ctl("set", f"drop_byte_ratio={rng.choice((0.01, 0.03))}")
                    emu.ctl("set", f"bit_flip_ratio={rng.choice((0.002, 0.01))}")
                    serial_off_at = now + rng.uniform(1.0, 3.0)
                elif kind == "reset":
                    emu.ctl("reset", "keep")
                next_fault = time.monotonic() + rng.uniform(*fault_gap_s)
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
    rep.kiosk_delivered_lines = len(delivered)
    rep.refunded_lines = sum(
        1 for o in orders for ln in o.lines if ln.status.value in ("failed", "unknown")
    )
    extra = max(0, len(drops) - len(delivered))
    rep.double_dispenses = twice + extra
    if twice:
        rep.details.append(f"motor ran more than once for a tx: {twice}")
    if extra:
        rep.details.append(f"{extra} physical drops more than kiosk-delivered lines")
    dropped_tx = {e["tx"] for e in drops}
    missing = [ln for ln in delivered if ln.tx not in dropped_tx]
    if missing:
        rep.records_lost += len(missing)
        rep.details.append(f"{len(missing)} delivered lines without a physical drop")
    # money: paid = delivered + refunded, on the kiosk (orders + refund rows) and the province
    refund_by_order: Counter[str] = Counter()
    for r in refunds:
        refund_by_order[r.order_id] += r.amount_fen
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
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument("--json", action="store_true", help="print the report as JSON too")
    a = p.parse_args(argv)

    def on_term(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="kiosk-chaos-"))
    rep = run_chaos(a.sales, a.seed, workdir, n_faults=a.faults, timeout_s=a.timeout, say=print)
    print(rep.format())
    print(f"workdir: {workdir}")
    if a.json:
        print("CHAOS_JSON " + json.dumps(rep.as_dict()))
    return 0 if rep.ok else 1


if __name__ == "__main__":
    threading.current_thread().name = "chaos"
    sys.exit(main())
