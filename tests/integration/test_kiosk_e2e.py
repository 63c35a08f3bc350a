"""The whole kiosk on the network: `kiosk run` as a child process against a real Mosquitto.

Pieces: Mosquitto with TLS, client certificates and the ACL (conftest `mosquitto`), the province
simulator in this process (conftest `province`), the board emulator in this process behind a
pty, and `python -m kiosk.cli_run run --headless ...` as a child with a generated config
(mqtts://, the kiosk's client certificate, the CA, the simulator's public key, the demo device
secret the simulator also knows). A `mosquitto_sub` with the province certificate watches
`kiosk/v1/#`.

1. `--script buy3 --pay-via-province`: the script prints the pay URL; while the order waits
   for payment the province publishes a new price list (signed, versioned); then it pays
   (`confirm_payment(parse_pay_url(url))`). The sale record arrives on `events/sale` with the
   price frozen at checkout, the ledger chain is clean at the province, and the kiosk's outbox
   is empty when it exits (acknowledged end to end); the new price is in force afterwards.
2. `--headless` (no script) on the same store: a signed `lock_sales` command takes the kiosk
   out of service (`sales_locked`), `unlock_sales` puts it back.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kiosk_node import DEMO_SECRET, KIOSK_A

from kiosk.clock import SystemClock
from kiosk.core.payment import parse_pay_url
from kiosk.sim.board_emulator import BoardModel, EmulatedBoard
from kiosk.sim.broker import Mosquitto, Pki
from kiosk.sim.emulator_transports import Emulator, PtyTransport
from kiosk.sim.province import ProvinceSimulator
from kiosk.store import open_store
from kiosk.sync.outbox import Outbox
from kiosk.sync.signing import generate_keypair, public_key_pem, sign_envelope
from kiosk.sync.topics import Topics, decode, encode
from tests.unit.test_controller import SECRET_FILE, seed_store

ROOT = Path(__file__).resolve().parents[2]


class Child:
    """A child process whose stdout and stderr lines are collected by threads."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._lock = threading.Lock()
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()

    def _pump(self, stream: object, sink: list[str]) -> None:
        assert stream is not None
        for line in stream:  # type: ignore[attr-defined]
            with self._lock:
                sink.append(line.rstrip("\n"))

    def lines(self, err: bool = False) -> list[str]:
        with self._lock:
            return list(self.err if err else self.out)

    def wait_line(
        self, pred: Callable[[str], bool], timeout: float, *, err: bool = False, start: int = 0
    ) -> tuple[int, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, line in enumerate(self.lines(err)[start:], start):
                if pred(line):
                    return i, line
            if self.proc.poll() is not None and not any(map(pred, self.lines(err)[start:])):
                break
            time.sleep(0.05)
        raise AssertionError(f"no matching line; {self.dump()}")

    def dump(self) -> str:
        return (
            f"exit={self.proc.poll()}\n--- stdout ---\n"
            + "\n".join(self.lines())
            + "\n--- stderr (tail) ---\n"
            + "\n".join(self.lines(err=True)[-60:])
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def board(tmp_path: Path) -> Iterator[Path]:
    pty = tmp_path / "board"
    emu = Emulator(
        EmulatedBoard(BoardModel.spiral(6, 10, stock=5), time_scale=0.01),
        PtyTransport(pty),
    ).start()
    yield pty
    emu.stop()


@pytest.fixture
def watcher(tmp_path: Path, pki: Pki, mosquitto: Mosquitto) -> Iterator[Child]:
    cert = pki.backend_client()
    assert mosquitto.backend_port is not None
    child = Child(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(mosquitto.backend_port),
            "--cafile",
            str(pki.ca_file),
            "--cert",
            str(cert.cert_file),
            "--key",
            str(cert.key_file),
            "-V",
            "mqttv5",
            "-i",
            "e2e-watcher",
            "-q",
            "1",
            "-t",
            "kiosk/v1/#",
            "-v",
        ],
        dict(os.environ),
        tmp_path,
    )
    yield child
    child.stop()


def write_config(
    tmp_path: Path, pki: Pki, mosquitto: Mosquitto, province: ProvinceSimulator, pty: Path
) -> Path:
    cert = pki.client(KIOSK_A)
    pub = tmp_path / "province-public.pem"
    pub.write_bytes(public_key_pem(province.public_key))
    data = tmp_path / "kiosk-data"
    seed_store(data)
    cfg = tmp_path / "kiosk.toml"
    cfg.write_text(
        f"""
[identity]
kiosk_id = "{KIOSK_A}"
site_name = "e2e"
site_type = "hospital"
area_code = "340100"
[hardware]
port = "{pty}"
[sync]
broker_url = "mqtts://127.0.0.1:{mosquitto.port}"
ca_file = "{pki.ca_file}"
cert_file = "{cert.cert_file}"
key_file = "{cert.key_file}"
province_public_key = "{pub}"
keepalive_s = 10
[payments]
pay_url_base = "http://127.0.0.1:9/pay"
device_secret_file = "{SECRET_FILE}"
[store]
data_dir = "{data}"
""",
        encoding="utf-8",
    )
    return cfg


def kiosk(cfg: Path, *args: str) -> Child:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIOSK_CRASH", "NOTIFY_"))}
    env["PYTHONPATH"] = str(ROOT)
    return Child(
        [sys.executable, "-m", "kiosk.cli_run", "run", "--headless", "--config", str(cfg), *args],
        env,
        cfg.parent,
    )


def outbox_depth(data: Path) -> int:
    store = open_store(data)
    try:
        return sum(Outbox(store, Topics(KIOSK_A), SystemClock()).depth().values())
    finally:
        store.close()


def catalog_price(data: Path, product_id: str) -> int:  # (the kiosk must not be running)
    store = open_store(data)
    try:
        return store.catalog.load().products[product_id].price_fen
    finally:
        store.close()


def test_kiosk_on_the_network(
    tmp_path: Path,
    pki: Pki,
    mosquitto: Mosquitto,
    province: ProvinceSimulator,
    board: Path,
    watcher: Child,
) -> None:
    cfg = write_config(tmp_path, pki, mosquitto, province, board)
    data = tmp_path / "kiosk-data"
    assert SECRET_FILE.read_bytes() == DEMO_SECRET  # the simulator and the kiosk agree

    store = open_store(data)
    prices0 = {p.product_id: p.price_fen for p in store.catalog.load()}
    store.close()

    # --- 1. a sale paid through the province, with a price change while it waits ----------
    k = kiosk(cfg, "--script", "buy3", "--pay-via-province", "--timeout", "45")
    try:
        _, url_line = k.wait_line(lambda s: s.startswith("pay url "), 30)
        added = [s.split()[1] for s in k.lines() if s.startswith("add ")]
        assert len(added) == 3, k.dump()
        product = added[0]
        # a new price list while the order waits for payment
        k.wait_line(lambda s: "sync.connected" in s, 20, err=True)
        pay = re.search(r"a=(\d+)", url_line)
        assert pay is not None
        amount = int(pay.group(1))
        province.publish_desired(KIOSK_A, "prices", {"prices": {product: 4321}})
        k.wait_line(lambda s: "trust.applied" in s and "prices" in s, 20, err=True)
        params = parse_pay_url(url_line.split(" ", 2)[2], {KIOSK_A: DEMO_SECRET})
        assert params is not None and params.amount_fen == amount
        province.confirm_payment(params, "wechat")
        assert k.proc.wait(60) == 0, k.dump()
        k.wait_line(lambda s: s.startswith("outbox: 0 "), 5)
    finally:
        k.stop()

    # the sale record went over the broker on the kiosk's own topic
    sale_topic = Topics(KIOSK_A).events("sale")
    _, sale_line = watcher.wait_line(lambda s: s.startswith(sale_topic + " "), 10)
    record = decode("event", sale_line.split(" ", 1)[1].encode())
    sale = record["body"]
    assert sale["order_id"] == params.order_id
    assert sale["paid_fen"] == amount
    frozen = [ln["price_fen"] for ln in sale["lines"] if ln["product_id"] == product]
    assert frozen and all(p == prices0[product] != 4321 for p in frozen), sale  # frozen
    # the province has it, chained and clean; the kiosk's outbox is empty (acked end to end)
    assert province.event_count(KIOSK_A, "sale") == 1
    reports = province.chain_reports()
    assert reports and all(r.ok for r in reports), reports
    assert outbox_depth(data) == 0
    assert catalog_price(data, product) == 4321  # the new price is in force afterwards

    # --- 2. lock and unlock sales by signed command ------------------------------------------
    k = kiosk(cfg)
    try:
        k.wait_line(lambda s: s.startswith("idle:"), 30)
        k.wait_line(lambda s: "sync.connected" in s, 20, err=True)
        n = len(k.lines())
        lock = province.send_command(KIOSK_A, "lock_sales")
        k.wait_line(lambda s: s == "out of service: sales_locked", 15, start=n)
        n = len(k.lines())
        province.send_command(KIOSK_A, "unlock_sales")
        k.wait_line(lambda s: s.startswith("idle:"), 15, start=n)
        # a command signed by a key the kiosk does not trust: refused, and an alarm goes up
        forged = sign_envelope(generate_keypair()[0], "0" * 16, {**lock["body"], "nonce": "f" * 16})
        province.publish_raw(Topics(KIOSK_A).commands, encode(forged))
        province.send_command(KIOSK_A, "upload_logs", {"lines": 20})
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (
            _alarms(province) and _actions(province).count("upload_logs")
        ):
            time.sleep(0.05)
        assert [a["body"]["context"]["reason"] for a in _alarms(province)] == ["UNKNOWN_KEY"]
        assert "out of service: sales_locked" not in k.lines()[n:]
        k.proc.send_signal(signal.SIGTERM)
        assert k.proc.wait(30) == 0, k.dump()
    finally:
        k.stop()
    assert outbox_depth(data) == 0
    assert _actions(province).count("lock_sales") == 2  # locked, unlocked (technician events)
    logs = [e for e in province.events(KIOSK_A) if e["body"].get("action") == "upload_logs"]
    assert logs and 0 < len(logs[0]["body"]["lines"]) <= 20
    assert province.event_count(KIOSK_A, "reported") >= 2  # on each connect


def _alarms(province: ProvinceSimulator) -> list[dict[str, Any]]:
    return [e for e in province.events(KIOSK_A) if e["kind"] == "alarm"]


def _actions(province: ProvinceSimulator) -> list[str]:
    return [
        str(e["body"].get("action")) for e in province.events(KIOSK_A) if e["kind"] == "technician"
    ]


# --- store integrity: a corrupt store at start, and selling again after `kiosk store recover` --


def _smash_an_index_page(db: Path) -> None:
    """Damage that PRAGMA quick_check finds while every table row stays readable."""
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        (page,) = conn.execute(
            "SELECT pageno FROM dbstat WHERE name = 'outbox_due' ORDER BY pageno LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    data = bytearray(db.read_bytes())
    data[(page - 1) * 4096 : page * 4096] = b"\xde\xad" * 2048
    db.write_bytes(data)


def _buy_one_round(cfg: Path, province: ProvinceSimulator) -> str:
    """`kiosk run --script buy3 --pay-via-province`, paid at the province; returns the order id."""
    k = kiosk(cfg, "--script", "buy3", "--pay-via-province", "--timeout", "45")
    try:
        _, url_line = k.wait_line(lambda s: s.startswith("pay url "), 30)
        k.wait_line(lambda s: "sync.subscribed" in s or "sync.connected" in s, 20, err=True)
        params = parse_pay_url(url_line.split(" ", 2)[2], {KIOSK_A: DEMO_SECRET})
        assert params is not None
        province.confirm_payment(params, "wechat")
        assert k.proc.wait(60) == 0, k.dump()
        k.wait_line(lambda s: s.startswith("outbox: 0 "), 5)
        assert not any("Traceback" in ln for ln in k.lines(err=True)), k.dump()
        return params.order_id
    finally:
        k.stop()


def _sales(province: ProvinceSimulator) -> list[dict[str, Any]]:
    return [e["body"] for e in province.events(KIOSK_A) if e["kind"] == "sale"]


def test_corrupt_store_then_recover_then_sell(
    tmp_path: Path, pki: Pki, mosquitto: Mosquitto, province: ProvinceSimulator, board: Path
) -> None:
    from kiosk.core.payment import order_epoch

    cfg = write_config(tmp_path, pki, mosquitto, province, board)
    data = tmp_path / "kiosk-data"
    first = _buy_one_round(cfg, province)
    old_sale = _sales(province)[0]
    old_txs = {ln["tx"] for ln in old_sale["lines"]}

    # --- the store is damaged: the kiosk stays up, out of service, and says so -------------
    _smash_an_index_page(data / "kiosk.db")
    k = kiosk(cfg)
    try:
        k.wait_line(lambda s: s.startswith("OUT OF SERVICE (STORE_CORRUPT)"), 30)
        k.wait_line(lambda s: "kiosk store recover" in s, 5)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not [
            a for a in _alarms(province) if a["body"].get("kind") == "store_corrupt"
        ]:
            time.sleep(0.1)
        alarm = [a for a in _alarms(province) if a["body"].get("kind") == "store_corrupt"]
        assert alarm and "kiosk store recover" in alarm[0]["body"]["detail"], k.dump()
        reported = [e for e in province.events(KIOSK_A) if e["kind"] == "reported"]
        assert any(r["body"]["out_of_service_reason"] == "store_corrupt" for r in reported)
        assert k.proc.poll() is None  # still up: no crash loop under systemd
        k.proc.send_signal(signal.SIGTERM)
        assert k.proc.wait(15) == 0, k.dump()
        assert not any("Traceback" in ln for ln in k.lines(err=True)), k.dump()
    finally:
        k.stop()

    # --- the technician recovers: rows carried forward, a new epoch, counters re-based ------
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rec = subprocess.run(
        [sys.executable, "-m", "kiosk.cli", "store", "recover", "--config", str(cfg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert "carried forward:" in rec.stdout and "orders 1" in rec.stdout, rec.stdout

    # --- and sells again: no order id or tx of the first life is reused ---------------------
    second = _buy_one_round(cfg, province)
    assert second != first and order_epoch(second) != order_epoch(first)
    sales = _sales(province)
    assert [s["order_id"] for s in sales] == [first, second]  # stored, not dropped as a dupe
    new_sale = sales[1]
    assert {ln["status"] for ln in new_sale["lines"]} == {"delivered"}
    assert not old_txs & {ln["tx"] for ln in new_sale["lines"]}
    assert min(ln["tx"] for ln in new_sale["lines"]) > max(old_txs)
    assert new_sale["seq"] == old_sale["seq"] + 1  # the ledger chain goes on
    reports = province.chain_reports()
    assert reports and all(r.ok for r in reports), reports
