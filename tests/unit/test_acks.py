"""Signed acks, the signed-time high-water marks and the clock's inputs (kiosk.sync.acks; issue
14, requirement 3). Over the real broker: tests/integration/test_ack_security.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiosk import degraded
from kiosk.clock import ManualClock
from kiosk.sim.province_acks import AckSigner, foreign_order_owner
from kiosk.store import Store, open_store
from kiosk.sync.acks import (
    SIGNED_TIME_TOLERANCE_S,
    AckVerifier,
    SignedTime,
    ack_body,
    sign_ack,
)
from kiosk.sync.clockoffset import ClockOffset
from kiosk.sync.connection import SyncStats
from kiosk.sync.downlink import Downlink
from kiosk.sync.outbox import Outbox, Priority
from kiosk.sync.signing import (
    Keyring,
    TrustError,
    TrustPolicy,
    TrustReason,
    generate_keypair,
    key_id,
    public_key_pem,
    sign_envelope,
)
from kiosk.sync.topics import Topics, decode, encode
from tests.support.config import write_kiosk_config

KIOSK = "AH-341524-0007"
OTHER = "AH-341524-0008"
T0 = 1_790_000_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def store(tmp_path: Path, clock: ManualClock) -> Iterator[Store]:
    s = open_store(tmp_path, clock)
    yield s
    s.close()


@pytest.fixture
def keys() -> tuple[bytes, bytes, str]:
    priv, pub = generate_keypair()
    return priv, pub, key_id(pub)


class Rejections:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def __call__(self, what: str, err: TrustError) -> None:
        self.items.append((what, err.reason.value))


def verifier(store: Store | None, pub: bytes, rej: Rejections | None = None) -> AckVerifier:
    ring = Keyring([pub])
    return AckVerifier(KIOSK, lambda: ring, SignedTime(store), on_reject=rej)


def test_a_signed_ack_acks_exactly_its_event_id_seq_pairs(
    store: Store, clock: ManualClock, keys: tuple[bytes, bytes, str]
) -> None:
    priv, pub, kid = keys
    ob = Outbox(store, Topics(KIOSK), clock)
    recs = [ob.append("alarm", {"n": i}, Priority.HIGH) for i in range(3)]
    env = sign_ack(priv, kid, KIOSK, [(recs[0].event_id, recs[0].seq)], T0)
    acked = verifier(store, pub).verify(decode("ack", encode(env)))
    assert acked.records == [(recs[0].event_id, recs[0].seq)] and acked.issued_at == T0
    # a pair whose seq does not match removes nothing
    assert ob.ack_records([(recs[1].event_id, recs[2].seq), ("nope", recs[2].seq)]) == 0
    assert ob.ack_records(acked.records) == 1
    assert ob.ack_records(acked.records) == 0  # idempotent
    assert [r.seq for r in ob.records()] == [recs[1].seq, recs[2].seq]


def test_a_replayed_old_ack_does_not_ack_a_new_record_with_the_same_event_id(
    store: Store, clock: ManualClock, keys: tuple[bytes, bytes, str]
) -> None:
    priv, pub, kid = keys
    ob = Outbox(store, Topics(KIOSK), clock)
    first = ob.append("alarm", {"n": 1}, Priority.HIGH, event_id="alarm-store-abc")
    old = sign_ack(priv, kid, KIOSK, [(first.event_id, first.seq)], T0)
    v = verifier(store, pub)
    assert ob.ack_records(v.verify(old).records) == 1
    again = ob.append("alarm", {"n": 1}, Priority.HIGH, event_id="alarm-store-abc")
    assert again.seq > first.seq
    # the same signed ack, replayed (still fresh): it names the old seq, the new record stays
    assert ob.ack_records(v.verify(old).records) == 0
    assert ob.get("alarm-store-abc") is not None


def test_unsigned_forged_and_misaddressed_acks_are_refused_and_reported(
    store: Store, keys: tuple[bytes, bytes, str]
) -> None:
    priv, pub, kid = keys
    rej = Rejections()
    v = verifier(store, pub, rej)
    rogue = generate_keypair()[0]
    good = ack_body(KIOSK, [("e1", 1)], T0)
    tampered = sign_ack(priv, kid, KIOSK, [("e1", 1)], T0)
    tampered["body"]["records"] = [["e2", 2]]
    cases: list[tuple[Any, TrustReason]] = [
        ({"event_ids": ["e1"], "sent_at": T0}, TrustReason.MALFORMED),  # the old unsigned form
        ({"v": 1, "kid": kid, "body": good, "sig": ""}, TrustReason.BAD_SIGNATURE),
        (sign_envelope(rogue, kid, good), TrustReason.BAD_SIGNATURE),
        (sign_envelope(rogue, "0" * 16, good), TrustReason.UNKNOWN_KEY),
        (tampered, TrustReason.BAD_SIGNATURE),
        (sign_ack(priv, kid, OTHER, [("e1", 1)], T0), TrustReason.WRONG_KIOSK),
        (sign_envelope(priv, kid, {**good, "name": "prices"}), TrustReason.WRONG_NAME),
        (sign_envelope(priv, kid, {**good, "records": []}), TrustReason.MALFORMED),
        (sign_envelope(priv, kid, {**good, "records": [["e1", 0]]}), TrustReason.MALFORMED),
        (sign_envelope(priv, kid, {**good, "records": [["e1", True]]}), TrustReason.MALFORMED),
        (sign_envelope(priv, kid, {**good, "records": [["e1"]]}), TrustReason.MALFORMED),
        (sign_envelope(priv, kid, {**good, "records": [["e", 1]] * 1001}), TrustReason.MALFORMED),
        (sign_envelope(priv, kid, {**good, "issued_at": "now"}), TrustReason.MALFORMED),
        (sign_envelope(priv, kid, {**good, "issued_at": -1}), TrustReason.MALFORMED),
    ]
    for env, reason in cases:
        with pytest.raises(TrustError) as ei:
            v.verify(env)
        assert ei.value.reason is reason, (env, ei.value)
    assert rej.items == [("ack", r.value) for _e, r in cases]


def test_high_water_mark_per_key_tolerance_and_persistence(
    store: Store, keys: tuple[bytes, bytes, str]
) -> None:
    priv, pub, kid = keys
    v = verifier(store, pub)
    v.verify(sign_ack(priv, kid, KIOSK, [("e", 1)], T0 + 1000))
    # within the tolerance: out-of-order delivery, province nodes a little apart
    v.verify(sign_ack(priv, kid, KIOSK, [("e", 1)], T0 + 1000 - SIGNED_TIME_TOLERANCE_S))
    with pytest.raises(TrustError) as ei:
        v.verify(sign_ack(priv, kid, KIOSK, [("e", 1)], T0 + 999 - SIGNED_TIME_TOLERANCE_S))
    assert ei.value.reason is TrustReason.STALE_SIGNED_TIME
    # another key has its own mark
    priv2, pub2 = generate_keypair()
    ring = Keyring([pub, pub2])
    v2 = AckVerifier(KIOSK, lambda: ring, v.signed_time)
    v2.verify(sign_ack(priv2, key_id(pub2), KIOSK, [("e", 1)], T0))
    # the mark survives a restart (persisted in the store)
    v.signed_time.flush()
    again = SignedTime(store)
    assert again.high_water(kid) == T0 + 1000
    with pytest.raises(TrustError):
        again.check(kid, T0)


def test_commands_are_held_to_the_high_water_mark(
    store: Store, keys: tuple[bytes, bytes, str]
) -> None:
    priv, pub, kid = keys
    rej = Rejections()
    policy = TrustPolicy(Keyring([pub]), store, kiosk_id=KIOSK, on_reject=rej)
    policy.signed_time = SignedTime(store)
    v = AckVerifier(KIOSK, lambda: policy.keyring, policy.signed_time)
    v.verify(sign_ack(priv, kid, KIOSK, [("e", 1)], T0))

    def command(nonce: str, issued_at: float, **extra: Any) -> dict[str, Any]:
        body = {"kiosk_id": KIOSK, "command": "open_door", "nonce": nonce, "args": {"slot": 1}}
        body.update(issued_at=issued_at, expires_at=issued_at + 300, **extra)
        return sign_envelope(priv, kid, body)

    # a month-old command, even judged with a clock set back a month: refused by the mark
    month = 30 * 24 * 3600.0
    with pytest.raises(TrustError) as ei:
        policy.accept_command(command("month-old-1", T0 - month), T0 - month + 1)
    assert ei.value.reason is TrustReason.STALE_SIGNED_TIME
    assert rej.items == [("command:open_door", "STALE_SIGNED_TIME")]
    # without issued_at: malformed (the mark cannot be checked)
    env = sign_envelope(
        priv,
        kid,
        {"kiosk_id": KIOSK, "command": "resync", "nonce": "n" * 8, "expires_at": T0 + 60},
    )
    with pytest.raises(TrustError) as ei:
        policy.accept_command(env, T0)
    assert ei.value.reason is TrustReason.MALFORMED
    # a fresh one is accepted and raises the mark
    assert policy.accept_command(command("fresh-0001", T0 + 50), T0 + 51)["nonce"]
    assert policy.signed_time.high_water(kid) == T0 + 50


class _Outbox:
    def __init__(self) -> None:
        self.acked: list[tuple[str, int]] = []

    def due(self, limit: int, now: float) -> list[Any]:
        return []

    def mark_sent(self, seqs: Any, now: float) -> None:
        pass

    def ack(self, event_ids: Any) -> int:
        raise AssertionError("the kiosk acks by (event id, seq) only")

    def ack_records(self, records: Any) -> int:
        self.acked += list(records)
        return len(self.acked)


def test_the_clock_follows_signed_acks_only(
    clock: ManualClock, keys: tuple[bytes, bytes, str]
) -> None:
    priv, pub, kid = keys
    offset, outbox, delivered = ClockOffset(), _Outbox(), []
    ring = Keyring([pub])
    tp = Topics(KIOSK)
    down = Downlink(
        KIOSK,
        tp,
        outbox,
        clock,
        SyncStats(),
        threading.Lock(),
        lambda t, b: delivered.append(t),
        lambda: offset,
        AckVerifier(KIOSK, lambda: ring, SignedTime()),
    )
    month_ago = clock.time() - 30 * 24 * 3600
    forged_confirm = encode({"confirmation": {}, "sent_at": month_ago})
    for _ in range(3):  # unsigned stamps: delivered (the controller judges them), not believed
        down.handle(tp.payment_confirm, forged_confirm)
        down.handle(tp.acks, encode({"event_ids": ["x"], "sent_at": month_ago}))
    assert offset.offset() is None and outbox.acked == [] and len(delivered) == 3
    assert down.bad_message_reasons() == {"MISSING_FIELD": 3}
    down.handle(tp.acks, encode(sign_ack(priv, kid, KIOSK, [("e", 7)], clock.time() + 12)))
    assert offset.offset() == 12.0 and outbox.acked == [("e", 7)]
    # without a verifier no ack counts
    bare = Downlink(KIOSK, tp, outbox, clock, SyncStats(), threading.Lock(), print, lambda: offset)
    bare.handle(tp.acks, encode(sign_ack(priv, kid, KIOSK, [("f", 8)], clock.time())))
    assert outbox.acked == [("e", 7)] and bare.bad_message_reasons() == {"UNVERIFIED_ACK": 1}


def test_province_signs_batches_and_refuses_foreign_order_ids(
    keys: tuple[bytes, bytes, str],
) -> None:
    priv, pub, kid = keys
    signer = AckSigner(priv, kid, lambda: T0 + 0.7, batch=2)
    pairs = [(f"e{i}", i) for i in range(1, 6)]
    out = list(signer.payloads(KIOSK, pairs))
    assert [t for t, _p in out] == [Topics(KIOSK).acks] * 3
    v = verifier(None, pub)
    got = [v.verify(decode("ack", p)) for _t, p in out]
    assert [r for a in got for r in a.records] == pairs
    assert {a.issued_at for a in got} == {T0}  # whole seconds: one spelling under the signature

    def rec(order_id: object) -> dict[str, Any]:
        return {"kind": "sale", "body": {"order_id": order_id}}

    assert foreign_order_owner(KIOSK, rec(f"{OTHER}-7K2Q0001A")) == OTHER
    assert foreign_order_owner(KIOSK, rec(f"{KIOSK}-7K2Q0001A")) is None
    assert foreign_order_owner(KIOSK, rec(f"{KIOSK}-00001")) is None
    assert foreign_order_owner(KIOSK, rec("")) is None
    assert foreign_order_owner(KIOSK, rec(None)) is None
    assert foreign_order_owner(KIOSK, {"kind": "alarm", "body": {}}) is None


def test_the_degraded_kiosk_checks_acks_with_the_config_key(
    tmp_path: Path, keys: tuple[bytes, bytes, str]
) -> None:
    priv, pub, kid = keys
    pem = tmp_path / "province.pem"
    pem.write_bytes(public_key_pem(pub))
    sync = {"province_public_key": pem}
    cfg = write_kiosk_config(tmp_path / "k.toml", "/dev/null", tmp_path / "data", sync=sync)
    v = degraded._ack_verifier(cfg, cfg.identity.kiosk_id)
    assert v is not None
    env = sign_ack(priv, kid, cfg.identity.kiosk_id, [("alarm-x", 1)], T0)
    assert v.verify(env).records == [("alarm-x", 1)]
    with pytest.raises(TrustError):
        v.verify(sign_ack(generate_keypair()[0], kid, cfg.identity.kiosk_id, [("a", 1)], T0))
    # no key, or one that does not load: no ack is trusted
    bare = write_kiosk_config(tmp_path / "b.toml", "/dev/null", tmp_path / "data")
    assert degraded._ack_verifier(bare, bare.identity.kiosk_id) is None
    pem.write_text("not a key")
    assert degraded._ack_verifier(cfg, cfg.identity.kiosk_id) is None
