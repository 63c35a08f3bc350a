"""Trust at the edges, over a real broker: forged, unsigned, replayed and outdated messages are
rejected; a kiosk cannot publish as (or listen to) another kiosk; plaintext and unknown CAs are
refused."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kiosk.clock import SystemClock
from kiosk.sim.broker import Mosquitto, Pki
from kiosk.sim.province import ProvinceSimulator
from kiosk.sync.client import SyncClient, SyncConfigError
from kiosk.sync.signing import Keyring, TrustError, TrustPolicy, generate_keypair, key_id
from kiosk.sync.signing import sign_envelope as sign
from kiosk.sync.topics import PROVINCE_CATALOG, Topics, encode
from tests.support.kiosk_node import KIOSK_A, KIOSK_B, MakeKiosk, sync_config
from tests.support.mqtt_record import recording


def wait_for(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())


class Verdicts:
    """The kiosk side of trust: every downlink message through TrustPolicy, verdicts kept."""

    def __init__(self, policy: TrustPolicy) -> None:
        self.policy = policy
        self.items: list[tuple[str, str]] = []  # (what, "applied" | reason)
        self.lock = threading.Lock()

    def __call__(self, topic: str, env: dict[str, Any]) -> None:
        try:
            if topic == PROVINCE_CATALOG:
                what = "catalog"
                self.policy.accept_versioned("catalog", env)
            elif topic.endswith("/commands"):
                what = "command"
                self.policy.accept_command(env, time.time())
            elif "/desired/" in topic:
                what = topic.rsplit("/", 1)[1]
                self.policy.accept_versioned(what, env)
            else:
                return
            verdict = "applied"
        except TrustError as e:
            verdict = e.reason.value
        with self.lock:
            self.items.append((what, verdict))

    def wait(self, n: int, timeout: float = 10) -> list[tuple[str, str]]:
        assert wait_for(lambda: len(self.items) >= n, timeout), self.items
        return list(self.items)


def test_forged_unsigned_replayed_and_outdated_messages_are_rejected(
    mosquitto: Mosquitto, province: ProvinceSimulator, make_kiosk: MakeKiosk
) -> None:
    rec = recording(mosquitto)
    for topic in (PROVINCE_CATALOG, Topics(KIOSK_A).desired("prices"), Topics(KIOSK_A).commands):
        rec.tolerate(topic, "forged, unsigned, tampered and malformed messages, on purpose")
    node = make_kiosk(KIOSK_A)
    policy = TrustPolicy(Keyring([province.public_key]), node.store, kiosk_id=KIOSK_A)
    verdicts = Verdicts(policy)
    node.hook = verdicts
    assert node.client.wait_connected(10)
    topics = Topics(KIOSK_A)

    # 1. a genuine catalog v1 is applied
    province.publish_catalog({"products": []}, version=1)
    assert verdicts.wait(1)[-1] == ("catalog", "applied")
    # 2. forged: signed by another key under the province's key id -> bad signature
    rogue_priv, _ = generate_keypair()
    forged = sign(rogue_priv, province.kid, {"name": "catalog", "version": 2, "products": []})
    province.publish_raw(PROVINCE_CATALOG, encode(forged), retain=True)
    assert verdicts.wait(2)[-1] == ("catalog", "BAD_SIGNATURE")
    # 3. signed by a key the kiosk does not know
    rogue_pub_kid = key_id(generate_keypair()[1])
    unknown = sign(rogue_priv, rogue_pub_kid, {"name": "catalog", "version": 3})
    province.publish_raw(PROVINCE_CATALOG, encode(unknown), retain=True)
    assert verdicts.wait(3)[-1] == ("catalog", "UNKNOWN_KEY")
    # 4. tampered: a genuine envelope whose body was changed after signing
    good = province.sign({"name": "prices", "version": 5, "kiosk_id": KIOSK_A, "p001": 1000})
    good["body"]["p001"] = 1
    province.publish_raw(topics.desired("prices"), encode(good), retain=True)
    assert verdicts.wait(4)[-1] == ("prices", "BAD_SIGNATURE")
    # 5. unsigned: never reaches the policy, the client's schema check drops it and counts it
    bad_before = node.client.stats().bad_messages
    unsigned = {"kid": province.kid, "body": {"name": "catalog", "version": 9}}
    province.publish_raw(PROVINCE_CATALOG, encode(unsigned), retain=True)
    assert wait_for(lambda: node.client.stats().bad_messages > bad_before, 5)
    assert node.client.bad_message_reasons().get("MISSING_FIELD", 0) >= 1
    # 6. outdated: a genuine catalog v2 is applied, then a genuine v1 again is ignored
    province.publish_catalog({"products": []}, version=2)
    assert verdicts.wait(5)[-1] == ("catalog", "applied")
    province.publish_catalog({"products": []}, version=1)
    assert verdicts.wait(6)[-1] == ("catalog", "STALE_VERSION")
    # 7. commands: genuine applied; the same envelope replayed rejected; expired rejected;
    #    one for kiosk B sent to A rejected
    env = province.send_command(KIOSK_A, "lock_sales", ttl_s=60)
    assert verdicts.wait(7)[-1] == ("command", "applied")
    province.publish_raw(topics.commands, encode(env))
    assert verdicts.wait(8)[-1] == ("command", "REPLAYED")
    province.send_command(KIOSK_A, "unlock_sales", ttl_s=-5)
    assert verdicts.wait(9)[-1] == ("command", "EXPIRED")
    other = province.sign(
        {
            "kiosk_id": KIOSK_B,
            "command": "open_door",
            "nonce": "n" * 16,
            "issued_at": time.time(),
            "expires_at": time.time() + 60,
        }
    )
    province.publish_raw(topics.commands, encode(other))
    assert verdicts.wait(10)[-1] == ("command", "WRONG_KIOSK")
    # the replay survives a restart of the kiosk: the nonce is in the store
    node.client.stop()
    node2 = TrustPolicy(Keyring([province.public_key]), node.store, kiosk_id=KIOSK_A)
    with pytest.raises(TrustError) as e:
        node2.accept_command(env, time.time())
    assert e.value.reason.value == "REPLAYED"


def _raw_client(pki: Pki, name: str, port: int) -> tuple[mqtt.Client, dict[str, Any]]:
    seen: dict[str, Any] = {"pubacks": {}, "messages": [], "connected": threading.Event()}
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"raw-{name}", protocol=mqtt.MQTTv5)
    cert = pki.client(name)
    c.tls_set(ca_certs=str(pki.ca_file), certfile=str(cert.cert_file), keyfile=str(cert.key_file))
    c.on_connect = lambda *a: seen["connected"].set()
    c.on_publish = lambda cl, u, mid, rc, p: seen["pubacks"].__setitem__(mid, rc)
    c.on_message = lambda cl, u, m: seen["messages"].append(m.topic)
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert seen["connected"].wait(10)
    return c, seen


def test_kiosk_a_cannot_publish_as_kiosk_b(
    pki: Pki, mosquitto: Mosquitto, province: ProvinceSimulator, make_kiosk: MakeKiosk
) -> None:
    # A's certificate, B's topics: the broker refuses every PUBACK (0x87 not authorized); the
    # records are not counted as sent and stay in the outbox
    node = make_kiosk(KIOSK_B, cert_as=KIOSK_A)
    node.sell(5)
    assert wait_for(lambda: node.client.stats().puback_failures >= 5, 10)
    s = node.client.stats()
    assert s.published == 0 and node.pending() == 5
    assert province.event_count(KIOSK_B) == 0
    node.client.stop()

    # A's certificate, A's topic, but a payload claiming to be B: stored nowhere
    raw, seen = _raw_client(pki, KIOSK_A, mosquitto.port)
    try:
        body = {
            "kiosk_id": KIOSK_B,
            "seq": 1,
            "event_id": "forged-1",
            "kind": "sale",
            "priority": "critical",
            "kiosk_time": time.time(),
            "boot": 1,
            "body": {},
        }
        recording(mosquitto).tolerate(
            Topics(KIOSK_A).events("sale"), "a forged record, on purpose", encode(body)
        )
        info = raw.publish(Topics(KIOSK_A).events("sale"), encode(body), qos=1)
        info.wait_for_publish(5)
        assert wait_for(lambda: province.receipts(KIOSK_A)[2] == 1, 5)
        assert province.event_count() == 0

        # A listening in on B's tree gets nothing, although the broker grants the subscription
        raw.subscribe(f"kiosk/v1/{KIOSK_B}/#", qos=1)
        time.sleep(0.3)
        province.send_command(KIOSK_B, "lock_sales")
        province.ack(KIOSK_B, ["x"])
        time.sleep(0.5)
        assert seen["messages"] == []
    finally:
        raw.loop_stop()
        raw.disconnect()


def test_plaintext_is_refused_unless_allowed(pki: Pki) -> None:
    cfg = sync_config("mqtt://127.0.0.1:1883", None, None, None)
    with pytest.raises(SyncConfigError, match="plaintext"):
        SyncClient(cfg, KIOSK_A, None, Topics(KIOSK_A), SystemClock(), print, 1)  # type: ignore[arg-type]
    ok = sync_config("mqtt://127.0.0.1:1883", None, None, None, allow_plaintext=True)
    SyncClient(ok, KIOSK_A, None, Topics(KIOSK_A), SystemClock(), print, 1)  # type: ignore[arg-type]


def test_untrusted_broker_and_untrusted_client_are_refused(
    tmp_path: Path, pki: Pki, mosquitto: Mosquitto, make_kiosk: MakeKiosk
) -> None:
    # the kiosk does not trust a broker whose certificate another CA signed
    other = Pki(tmp_path / "other-pki")
    cert = pki.client(KIOSK_A)
    cfg = sync_config(mosquitto.url, other.ca_file, cert.cert_file, cert.key_file)
    from tests.support.kiosk_node import KioskNode

    node = KioskNode(KIOSK_A, tmp_path / "k1", cfg, backoff_base_s=0.05, backoff_cap_s=0.2)
    node.start()
    try:
        assert wait_for(lambda: node.client.stats().connect_failures >= 2, 10)
        assert not node.client.connected
    finally:
        node.close()
    # the broker does not accept a client certificate from a CA it does not know
    rogue = pki.rogue_client(KIOSK_A)
    cfg = sync_config(mosquitto.url, pki.ca_file, rogue.cert_file, rogue.key_file)
    node = KioskNode(KIOSK_A, tmp_path / "k2", cfg, backoff_base_s=0.05, backoff_cap_s=0.2)
    node.start()
    try:
        assert wait_for(lambda: node.client.stats().connect_failures >= 2, 10)
        assert not node.client.connected
    finally:
        node.close()
