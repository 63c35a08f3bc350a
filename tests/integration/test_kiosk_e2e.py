"""The whole kiosk on the network: `kiosk run` as a child process against a real Mosquitto.

Pieces (the `kiosk_world` fixture, tests/support/fixtures.py): Mosquitto with TLS, client
certificates and the ACL, the province simulator in this process, the board emulator in this
process behind a pty, and `python -m kiosk.cli run --headless ...` as a child with a config
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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiosk.clock import SystemClock
from kiosk.core.payment import parse_pay_url
from kiosk.sim.broker import Mosquitto, Pki
from kiosk.sim.province import ProvinceSimulator
from kiosk.store import open_store
from kiosk.sync.outbox import Outbox
from kiosk.sync.signing import generate_keypair, sign_envelope
from kiosk.sync.topics import Topics, decode, encode
from tests.support.child import Child
from tests.support.child import run_kiosk as kiosk
from tests.support.fixtures import KioskWorld
from tests.support.kiosk_node import DEMO_SECRET, KIOSK_A
from tests.support.paths import SECRET_FILE, child_env


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
    province: ProvinceSimulator,
    kiosk_world: KioskWorld,
    watcher: Child,
) -> None:
    cfg, data = kiosk_world.config, kiosk_world.data
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
    province: ProvinceSimulator, kiosk_world: KioskWorld
) -> None:
    from kiosk.core.payment import order_epoch

    cfg, data = kiosk_world.config, kiosk_world.data
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
            a for a in _alarms(province) if a["body"].get("code") == "STORE_CORRUPT"
        ]:
            time.sleep(0.1)
        alarm = [a for a in _alarms(province) if a["body"].get("code") == "STORE_CORRUPT"]
        assert alarm and "kiosk store recover" in alarm[0]["body"]["detail"], k.dump()
        assert alarm[0]["body"]["severity"] == "critical"  # the one alarm shape
        assert alarm[0]["body"]["context"] == {
            "reason": "store_corrupt",
            "action": "kiosk store recover",
        }
        assert alarm[0]["event_id"].startswith(f"alarm-{KIOSK_A}-store-")
        reported = [e for e in province.events(KIOSK_A) if e["kind"] == "reported"]
        assert any(r["body"]["out_of_service_reason"] == "store_corrupt" for r in reported)
        assert k.proc.poll() is None  # still up: no crash loop under systemd
        k.proc.send_signal(signal.SIGTERM)
        assert k.proc.wait(15) == 0, k.dump()
        assert not any("Traceback" in ln for ln in k.lines(err=True)), k.dump()
    finally:
        k.stop()

    # --- the technician recovers: rows carried forward, a new epoch, counters re-based ------
    env = child_env()
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


# --- `kiosk run --script buy3`: its exit codes (README "Exit codes") -------------------------


def test_buy3_exits_3_when_the_province_does_not_acknowledge(
    kiosk_world: KioskWorld, province: ProvinceSimulator
) -> None:
    """Bought and paid, but the province stores nothing and acks nothing: after --ack-wait the
    script says how many records are left and exits 3 (UNREACHABLE), not 0."""
    province.auto_ack = False
    k = kiosk(
        kiosk_world.config,
        *("--script", "buy3", "--pay-via-province", "--timeout", "45", "--ack-wait", "3"),
    )
    try:
        _, url_line = k.wait_line(lambda s: s.startswith("pay url "), 30)
        k.wait_line(lambda s: "sync.subscribed" in s or "sync.connected" in s, 20, err=True)
        params = parse_pay_url(url_line.split(" ", 2)[2], {KIOSK_A: DEMO_SECRET})
        assert params is not None
        province.confirm_payment(params, "wechat")
        assert k.proc.wait(60) == 3, k.dump()
        _, left = k.wait_line(lambda s: s.startswith("outbox: "), 5)
        assert int(left.split()[1]) > 0 and "not acknowledged by the province" in left, left
        assert any(s.startswith(f"order {params.order_id}: completed") for s in k.lines()), k.dump()
    finally:
        k.stop()
    assert outbox_depth(kiosk_world.data) > 0  # kept for the next start, nothing lost


def test_buy3_exits_1_when_nothing_was_bought(kiosk_world: KioskWorld) -> None:
    """Nothing in stock: the script buys nothing and says so; exit 1, no order made."""
    store = open_store(kiosk_world.data)
    try:
        from kiosk.core.stock import StockChange, StockReason

        for slot, level in store.stock.levels().items():
            if level:
                store.stock.apply(StockChange(slot, -level, StockReason.REMOVAL, "test"))
    finally:
        store.close()
    # (nothing to sell: the kiosk never becomes idle; the script gives up after --timeout)
    k = kiosk(kiosk_world.config, "--script", "buy3", "--pay-via-province", "--timeout", "8")
    try:
        assert k.proc.wait(60) == 1, k.dump()
        assert any(s.startswith("nothing bought") for s in k.lines()), k.dump()
    finally:
        k.stop()
    store = open_store(kiosk_world.data)
    try:
        from kiosk.store.orders import OrderRepo

        assert OrderRepo(store).all() == []
    finally:
        store.close()
