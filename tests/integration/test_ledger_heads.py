"""Signed ledger heads (kiosk.sync.ledger_head; issue 14 req. 8), against the real broker,
province simulator and kiosk:

- a sale's record reaches the province with a head signature that verifies against the kiosk's
  client certificate; the kiosk keeps the head the province acknowledged;
- someone without the device key (a hostile broker operator; here a client publishing on the
  kiosk's topic) injects a sale record: the province refuses it (not stored, not acked) and
  raises `bad_head_signature`;
- someone with the disk rewrites an acknowledged record and re-chains the ledger: the chain
  check alone says intact, `kiosk ledger verify` does not (it checks the acknowledged head).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from kiosk.core.ledger import record_hash
from kiosk.core.payment import parse_pay_url
from kiosk.sim.broker import Pki
from kiosk.sim.province import ProvinceSimulator
from kiosk.store import open_store
from kiosk.store.orders import OrderRepo
from kiosk.sync.ledger_head import ACKED_HEAD, acked_head, verify_head
from kiosk.sync.topics import Topics, encode
from tests.support.child import run_kiosk
from tests.support.fixtures import KioskWorld
from tests.support.kiosk_node import DEMO_SECRET, KIOSK_A
from tests.support.paths import child_env


def _wait(cond: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


def _buy(cfg: Path, province: ProvinceSimulator) -> str:
    k = run_kiosk(cfg, "--script", "buy3", "--pay-via-province", "--timeout", "45")
    try:
        _, url_line = k.wait_line(lambda s: s.startswith("pay url "), 30)
        k.wait_line(lambda s: "sync.subscribed" in s or "sync.connected" in s, 20, err=True)
        params = parse_pay_url(url_line.split(" ", 2)[2], {KIOSK_A: DEMO_SECRET})
        assert params is not None
        province.confirm_payment(params, "wechat")
        assert k.proc.wait(60) == 0, k.dump()
        return params.order_id
    finally:
        k.stop()


def _ledger_verify(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kiosk.cli", "ledger", "verify", "--config", str(cfg)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _sales(province: ProvinceSimulator) -> list[dict[str, Any]]:
    return [e["body"] for e in province.events(KIOSK_A) if e["kind"] == "sale"]


def test_heads_are_signed_checked_and_anchored(
    kiosk_world: KioskWorld, province: ProvinceSimulator, pki: Pki
) -> None:
    province.heads.device_key = pki.client_public_key  # the province knows A's certificate
    order_id = _buy(kiosk_world.config, province)

    # the record at the province carries a head signature made with A's device key
    (sale,) = _sales(province)
    assert sale["order_id"] == order_id
    key = pki.client_public_key(KIOSK_A)
    assert key is not None and verify_head(key, KIOSK_A, sale)
    assert not verify_head(key, "AH-340100-0002", sale)  # bound to the kiosk id
    assert province.province_alarms(KIOSK_A) == []

    # the kiosk keeps the acknowledged head; the ledger matches it
    store = open_store(kiosk_world.data)
    try:
        assert acked_head(store.settings.get(ACKED_HEAD)) == (sale["seq"], sale["record_hash"])
    finally:
        store.close()
    out = _ledger_verify(kiosk_world.config)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"matches the province's acknowledged seq {sale['seq']}" in out.stdout

    # --- a record injected without the device key: refused at the province -----------------
    forged = {**sale, "seq": sale["seq"] + 1, "prev_hash": sale["record_hash"]}
    forged["order_id"] = order_id[:-1] + ("1" if order_id[-1] != "1" else "2")
    body = {k: v for k, v in forged.items() if k not in ("prev_hash", "record_hash", "head_sig")}
    forged["record_hash"] = record_hash(forged["prev_hash"], body)
    forged["head_sig"] = sale["head_sig"]  # a real signature, of another head
    record = {
        "kiosk_id": KIOSK_A,
        "seq": 10_000,
        "event_id": f"sale-{forged['order_id']}",
        "kind": "sale",
        "priority": "critical",
        "kiosk_time": time.time(),
        "clock_offset": None,
        "boot": 1,
        "body": forged,
    }
    cert = pki.client(KIOSK_A)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="injector", protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(pki.ca_file), certfile=str(cert.cert_file), keyfile=str(cert.key_file))
    c.connect("127.0.0.1", kiosk_world.broker.port)
    c.loop_start()
    try:
        # (the broker binds client id to the certificate: this client takes A's identity)
        c.publish(Topics(KIOSK_A).events("sale"), encode(record), qos=1).wait_for_publish(10)
        assert _wait(lambda: province.province_alarms(KIOSK_A))
    finally:
        c.disconnect()
        c.loop_stop()
    (alarm,) = province.province_alarms(KIOSK_A)
    assert alarm["kind"] == "bad_head_signature", alarm
    assert len(_sales(province)) == 1  # not stored (and so not acked)

    # --- the disk rewritten: record 1 changed and the chain recomputed ----------------------
    db = kiosk_world.data / "kiosk.db"
    conn = sqlite3.connect(db)
    try:
        (text,) = conn.execute("SELECT body FROM ledger WHERE seq = ?", (sale["seq"],)).fetchone()
        d = json.loads(text)
        d["payment_method"] = "cash" if d.get("payment_method") != "cash" else "wechat"
        body = {k: v for k, v in d.items() if k not in ("prev_hash", "record_hash")}
        d["record_hash"] = record_hash(d["prev_hash"], body)
        conn.execute(
            "UPDATE ledger SET body = ?, hash = ? WHERE seq = ?",
            (json.dumps(d, sort_keys=True, ensure_ascii=False), d["record_hash"], sale["seq"]),
        )
        conn.commit()
    finally:
        conn.close()
    store = open_store(kiosk_world.data)
    try:
        assert OrderRepo(store).verify_ledger() == []  # the chain alone cannot tell
    finally:
        store.close()
    out = _ledger_verify(kiosk_world.config)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "rewritten after it was sent" in out.stdout, out.stdout
