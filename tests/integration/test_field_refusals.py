"""Attack (issue 14 finding LOW / req. 10, 11): `kiosk run --test-payments` on a field config.

Before: a kiosk whose config pointed at the real province still took `--test-payments`, trusted
a throwaway key, dispensed goods and recorded them as WeChat payments; the published demo device
secret was taken too. Now the real `kiosk run` is run as a technician would type it:

- on the rehearsal config (`kiosk_world`: broker, province simulator and board on this machine)
  the test signer sells, and the province records the sales: the attack is real;
- the same config with the broker named as the province's host is refused before anything
  starts (exit 2, the problem named): no shopper step, no new order and so no payment in the
  store, no sale at the province;
- the same field config without `--test-payments` but with the published demo secret is
  refused the same way.
"""

from __future__ import annotations

import sqlite3
import tomllib
from pathlib import Path

from kiosk.sim.province import ProvinceSimulator
from tests.support.config import write_config
from tests.support.fixtures import KioskWorld
from tests.support.kiosk_node import KIOSK_A
from tests.support.paths import SECRET_FILE

FIELD_HOST = "mqtt.kiosk.ah.example"


def orders(data: Path) -> list[str]:
    with sqlite3.connect(data / "kiosk.db") as db:
        return [str(r[0]) for r in db.execute("SELECT body FROM orders")]


def field_config(world: KioskWorld, tmp_path: Path, secret: Path) -> Path:
    raw = tomllib.loads(world.config.read_text(encoding="utf-8"))
    raw["sync"]["broker_url"] = f"mqtts://{FIELD_HOST}:{world.broker.port}"
    raw["payments"]["device_secret_file"] = str(secret)
    return write_config(tmp_path / "field" / "kiosk.toml", raw)


def test_test_payments_and_demo_secret_refused_on_a_field_config(
    kiosk_world: KioskWorld, province: ProvinceSimulator, tmp_path: Path
) -> None:
    # the rehearsal: the throwaway signer's "payments" are sold and reported
    rehearsal = kiosk_world.run("--script", "buy3", "--test-payments", "--timeout", "90")
    try:
        assert rehearsal.proc.wait(150) == 0, rehearsal.dump()
    finally:
        rehearsal.stop()
    sold = orders(kiosk_world.data)
    assert sold and any('"wechat"' in body for body in sold), sold
    sales_at_province = province.event_count(KIOSK_A, "sale")
    assert sales_at_province >= 1

    # the field: own secret, real province host, --test-payments -> refused, nothing started
    own_secret = tmp_path / "device-secret"
    own_secret.write_bytes(b"f" * 64)
    field = field_config(kiosk_world, tmp_path, own_secret)
    attack = KioskWorld(
        kiosk_world.pki, kiosk_world.broker, province, kiosk_world.board, field, kiosk_world.data
    ).run("--script", "buy3", "--test-payments", "--timeout", "30")
    try:
        assert attack.proc.wait(60) == 2, attack.dump()
    finally:
        attack.stop()
    err = "\n".join(attack.lines(err=True))
    assert "sync.broker_url" in err and "--test-payments is refused" in err, err
    assert not any(s.startswith(("add ", "pay ", "order ")) for s in attack.lines())
    assert "TEST PAYMENTS" not in err  # refused before the test signer was made
    assert orders(kiosk_world.data) == sold  # no new order, so no payment recorded

    # the published demo secret in the field config: refused without any test flag
    demo = field_config(kiosk_world, tmp_path, SECRET_FILE)
    plain = KioskWorld(
        kiosk_world.pki, kiosk_world.broker, province, kiosk_world.board, demo, kiosk_world.data
    ).run()
    try:
        assert plain.proc.wait(60) == 2, plain.dump()
    finally:
        plain.stop()
    err = "\n".join(plain.lines(err=True))
    assert "payments.device_secret_file" in err and "published demo secret" in err, err
    assert orders(kiosk_world.data) == sold
    assert province.event_count(KIOSK_A, "sale") == sales_at_province
