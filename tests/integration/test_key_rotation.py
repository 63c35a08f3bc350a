"""Key rotation against the real broker, the province simulator and `kiosk run` (issue 14,
requirement 4): a leaked old signing key cannot change the key set, jump a version or open a
door, before or after the root rotates it out; after the rotation the old key is dead, across a
restart too, for payment confirmations too, and the new key works. `province-sim rotate-keys`
publishes root-signed sets; a kiosk without a pinned root keeps its keys frozen.

Pieces: the `kiosk_world` fixture (Mosquitto with the project's ACL, the simulator holding the
root key, the board emulator on a pty, a config pinning the root key), `kiosk run --headless`
as a child.
"""

from __future__ import annotations

import base64
import signal
import time
import tomllib
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

from kiosk.core.payment import (
    PaymentConfirmation,
    confirmation_to_dict,
    parse_pay_url,
    sign_confirmation,
)
from kiosk.sim.broker import Mosquitto, Pki
from kiosk.sim.cli_province import main as province_cli
from kiosk.sim.province import ProvinceSimulator, load_or_create_signing_key
from kiosk.sim.province_keys import ROOT_PUBLIC_FILE, raw_public
from kiosk.sync.keyset import parse_key_set, verify_key_set
from kiosk.sync.signing import (
    Keyring,
    generate_keypair,
    key_id,
    load_public_key_pem,
    sign_envelope,
)
from kiosk.sync.topics import PROVINCE_CATALOG, PROVINCE_KEYS, Topics, encode
from tests.support.child import Child
from tests.support.fixtures import KioskWorld
from tests.support.kiosk_node import DEMO_SECRET, KIOSK_A, MakeKiosk
from tests.support.mqtt_record import recording


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def wait_until(cond: Callable[[], bool], timeout: float, what: str, k: Child) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    assert cond(), f"timed out waiting for {what}\n{k.dump()}"


def alarms(province: ProvinceSimulator) -> Counter[tuple[str, str]]:
    """(what, reason) -> how many messages the kiosk's SYNC_REJECTED alarms counted (they are
    rate-limited: one alarm per pair per window, carrying a count; kiosk.sync.rejections).
    Acks are left out: around a rotation an ack signed by the new key can arrive before the
    kiosk applied the set, or one by the old key after; those records are simply sent again."""
    out: Counter[tuple[str, str]] = Counter()
    for e in province.events(KIOSK_A):
        body = e["body"]
        if e["kind"] == "alarm" and body.get("code") == "SYNC_REJECTED":
            c = body["context"]
            if c["what"] != "acks":
                out[(str(c["what"]), str(c["reason"]))] += int(c["count"])
    return out


def short_alarm_window(world: KioskWorld) -> None:
    """One SYNC_REJECTED alarm per pair per second: every count arrives within the test."""
    raw = tomllib.loads(world.config.read_text(encoding="utf-8"))
    raw["sync"]["rejection_alarm_every_s"] = 1
    world.config.write_text(tomli_w.dumps(raw), encoding="utf-8")


def door_openings(province: ProvinceSimulator) -> int:
    return sum(
        1
        for e in province.events(KIOSK_A)
        if e["kind"] == "technician" and e["body"].get("kind") == "unlock"
    )


def open_door(private: bytes, kid: str) -> dict[str, Any]:
    now = time.time()
    body = {
        "kiosk_id": KIOSK_A,
        "command": "open_door",
        "args": {"slot": 11},
        "nonce": uuid.uuid4().hex,
        "issued_at": int(now),
        "expires_at": int(now) + 120,
    }
    return sign_envelope(private, kid, body)


def test_a_leaked_old_key_is_dead_after_the_root_rotates_it_out(
    province: ProvinceSimulator, kiosk_world: KioskWorld
) -> None:
    assert province.key_sets is not None
    old_private, old_kid = province.signing_key, province.kid
    commands = Topics(KIOSK_A).commands
    short_alarm_window(kiosk_world)
    k = kiosk_world.run()
    try:
        k.wait_line(lambda s: s.startswith("idle:"), 30)
        k.wait_line(lambda s: "sync.connected" in s, 20, err=True)
        province.publish_catalog({"products": []}, version=10)
        k.wait_line(lambda s: "trust.applied" in s and "catalog" in s, 20, err=True)

        # 1. while the old key is still trusted, it tries to take over the key set (the issue's
        #    attack: retire everything else, version 2^63-1) and to jump the catalog's version
        attacker_pub = generate_keypair()[1]
        takeover = {"name": "keys", "version": 2**63 - 1, "add": [b64(attacker_pub)]}
        takeover["retire"] = [old_kid]
        bad_keys = encode(sign_envelope(old_private, old_kid, takeover))
        jump = {"name": "catalog", "version": 2**63 - 1, "products": []}
        bad_catalog = encode(sign_envelope(old_private, old_kid, jump))
        # off the contract on purpose (deltas, a version past 2^53-1): the recorder lets them by
        tape = recording(kiosk_world.broker)
        tape.tolerate(PROVINCE_KEYS, "the takeover attack, on purpose", bad_keys)
        tape.tolerate(PROVINCE_CATALOG, "the version jump attack, on purpose", bad_catalog)
        province.publish_raw(PROVINCE_KEYS, bad_keys, retain=True)
        full_set = {"name": "keys", "version": 2, "keys": [b64(attacker_pub)], "issued_at": 0}
        province.publish_raw(
            PROVINCE_KEYS, encode(sign_envelope(old_private, old_kid, full_set)), retain=True
        )
        province.publish_raw(PROVINCE_CATALOG, bad_catalog, retain=True)
        want = Counter({("province/keys", "NOT_ROOT_SIGNED"): 2})
        want[("province/catalog", "VERSION_JUMP")] = 1
        wait_until(lambda: alarms(province) == want, 20, "three refusals", k)

        # 2. the root rotates the key: the set {new}, and the simulator signs with the new key
        new_kid, version = province.key_sets.rotate()
        assert new_kid != old_kid and version == 1
        k.wait_line(lambda s: "trust.keys_rotated" in s and new_kid in s, 20, err=True)
        province.publish_catalog({"products": []})  # re-signed by the new key, v11

        # 3. the old key, after the rotation: a door, a catalog, a key set; all refused
        province.publish_raw(commands, encode(open_door(old_private, old_kid)))
        old_catalog = {"name": "catalog", "version": 12, "products": []}
        province.publish_raw(
            PROVINCE_CATALOG, encode(sign_envelope(old_private, old_kid, old_catalog)), retain=True
        )
        back = {"name": "keys", "version": 2, "keys": [b64(attacker_pub)], "issued_at": 0}
        province.publish_raw(
            PROVINCE_KEYS, encode(sign_envelope(old_private, old_kid, back)), retain=True
        )
        want[("commands", "UNKNOWN_KEY")] += 1
        want[("province/catalog", "UNKNOWN_KEY")] += 1
        want[("province/keys", "NOT_ROOT_SIGNED")] += 1
        wait_until(lambda: alarms(province) == want, 20, "three more refusals", k)

        # 4. the new key works: a genuine lock_sales takes the kiosk out of service
        n = len(k.lines())
        province.send_command(KIOSK_A, "lock_sales")
        k.wait_line(lambda s: s == "out of service: sales_locked", 15, start=n)
        k.proc.send_signal(signal.SIGTERM)
        assert k.proc.wait(30) == 0, k.dump()
    finally:
        k.stop()
    assert door_openings(province) == 0

    # 5. after a restart the old key is still dead, and the new one still trusted
    province.key_sets.publish([province.public_key])  # the retained set: root-signed again, v2
    k = kiosk_world.run()
    try:
        k.wait_line(lambda s: "sync.connected" in s, 30, err=True)
        k.wait_line(lambda s: "trust.keys_rotated" in s and "version=2" in s, 20, err=True)
        before = alarms(province)[("commands", "UNKNOWN_KEY")]
        province.publish_raw(commands, encode(open_door(old_private, old_kid)))
        wait_until(
            lambda: alarms(province)[("commands", "UNKNOWN_KEY")] > before,
            20,
            "the old key's door refused after the restart",
            k,
        )
        n = len(k.lines(err=True))
        province.send_command(KIOSK_A, "unlock_sales")
        k.wait_line(lambda s: "sync.command" in s and "unlock_sales" in s, 15, start=n, err=True)
        k.proc.send_signal(signal.SIGTERM)
        assert k.proc.wait(30) == 0, k.dump()
    finally:
        k.stop()
    assert door_openings(province) == 0
    assert key_id(province.public_key) == new_kid


def test_province_sim_rotate_keys_publishes_root_signed_sets(
    tmp_path: Path, pki: Pki, mosquitto: Mosquitto, make_kiosk: MakeKiosk
) -> None:
    """`kiosk province-sim rotate-keys --keep-old`, then `--retire-old`: two root-signed sets
    on the retained topic; the data dir's signing key is the new one, the old kept aside."""
    data = tmp_path / "province"
    old_pub = raw_public(load_or_create_signing_key(data))
    cert = pki.backend_client()
    broker = ["--broker", mosquitto.province_url, "--ca", str(pki.ca_file)]
    broker += ["--cert", str(cert.cert_file), "--key", str(cert.key_file)]
    base = ["province-sim", "rotate-keys", "--data-dir", str(data), *broker]
    assert province_cli([*base, "--keep-old"]) == 0
    new_pub = raw_public(load_or_create_signing_key(data))
    assert new_pub != old_pub
    assert (data / f"province-signing.{key_id(old_pub)}.retired").exists()
    assert province_cli([*base, "--retire-old"]) == 0

    root = load_public_key_pem(data / ROOT_PUBLIC_FILE)
    node = make_kiosk(KIOSK_A)  # subscribes to the province topics: gets the retained set
    assert node.client.wait_connected(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not node.received("/province/keys"):
        time.sleep(0.05)
    (env,) = node.received("/province/keys")
    body = verify_key_set(env, root, Keyring())
    assert body["version"] == 2
    assert parse_key_set(body, root).ids() == [key_id(new_pub)]


def test_after_a_rotation_the_old_key_cannot_confirm_a_payment(
    province: ProvinceSimulator, kiosk_world: KioskWorld
) -> None:
    """Payment confirmations follow the keyring: the retired key's confirmation is refused,
    the new key's (the simulator signs with it after the rotation) completes the sale."""
    assert province.key_sets is not None
    old_private = province.signing_key
    province.key_sets.rotate()  # retained: the kiosk applies it when it connects
    k = kiosk_world.run("--script", "buy3", "--pay-via-province", "--timeout", "45")
    try:
        _, url_line = k.wait_line(lambda s: s.startswith("pay url "), 30)
        k.wait_line(lambda s: "trust.keys_rotated" in s, 20, err=True)
        params = parse_pay_url(url_line.split(" ", 2)[2], {KIOSK_A: DEMO_SECRET})
        assert params is not None
        forged = sign_confirmation(
            old_private,
            PaymentConfirmation(
                kiosk_id=KIOSK_A,
                order_id=params.order_id,
                amount_fen=params.amount_fen,
                method="wechat",
                provider_ref="wx-forged-by-the-old-key",
                paid_at=int(time.time()),
                event_id=uuid.uuid4().hex,
            ),
        )
        payload = {"confirmation": confirmation_to_dict(forged), "sent_at": time.time()}
        province.publish_raw(Topics(KIOSK_A).payment_confirm, encode(payload))
        k.wait_line(
            lambda s: "payment.rejected" in s and "bad_signature" in s and params.order_id in s,
            20,
            err=True,
        )
        province.confirm_payment(params, "wechat")
        assert k.proc.wait(60) == 0, k.dump()
    finally:
        k.stop()
    sales = [e["body"] for e in province.events(KIOSK_A) if e["kind"] == "sale"]
    assert [s["order_id"] for s in sales] == [params.order_id]
    assert sales[0]["provider_ref"] != "wx-forged-by-the-old-key"


def test_a_kiosk_without_a_root_key_keeps_its_keys_frozen(
    province: ProvinceSimulator, kiosk_world: KioskWorld
) -> None:
    """Migration: a kiosk provisioned before root keys (no sync.province_root_key) refuses
    every key set, even the root's (NO_ROOT_KEY alarm), and keeps working with its keys."""
    assert province.key_sets is not None
    raw = tomllib.loads(kiosk_world.config.read_text(encoding="utf-8"))
    del raw["sync"]["province_root_key"]
    kiosk_world.config.write_text(tomli_w.dumps(raw), encoding="utf-8")
    province.key_sets.publish([generate_keypair()[1]])  # root-signed, retained
    k = kiosk_world.run()
    try:
        k.wait_line(lambda s: "sync.no_root_key" in s, 30, err=True)
        want = Counter({("province/keys", "NO_ROOT_KEY"): 1})
        wait_until(lambda: alarms(province) == want, 20, "NO_ROOT_KEY", k)
        n = len(k.lines())
        province.send_command(KIOSK_A, "lock_sales")  # the provisioned key still signs
        k.wait_line(lambda s: s == "out of service: sales_locked", 15, start=n)
        k.proc.send_signal(signal.SIGTERM)
        assert k.proc.wait(30) == 0, k.dump()
    finally:
        k.stop()
